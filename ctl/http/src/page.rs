//! The web page: the files `web/build.mjs` made, embedded at build time (see build.rs), served
//! with their content hashes in their names and cached for a year, precompressed when the
//! browser takes it, under a Content-Security-Policy that allows nothing but the shim itself.
//! Every path outside `/api/`, `/assets/` and `/healthz` is the page, which routes itself.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// One embedded file.
pub struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
    pub gzip: Option<&'static [u8]>,
    pub br: Option<&'static [u8]>,
    /// Named by its content hash, so it may be cached for good.
    pub immutable: bool,
}

include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));

/// Scripts, styles, fonts and connections from the shim only; nothing inline, no frames.
/// (xterm.js's DOM renderer would write `<style>` elements and `style` attributes, which this
/// refuses; the page routes them through the CSSOM instead: web/src/xterm-csp.js.)
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self' data:; font-src 'self'; style-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// The page itself is checked on every load, so a new release's assets are picked up at once.
const REVALIDATE: &str = "no-cache";

/// Where the page's routes start: `/` and everything else not taken by the API.
const INDEX: &str = "/";

fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.path == path)
}

/// The encodings a request accepts, best first, among those we keep.
fn accepts(headers: &HeaderMap, coding: &str) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|item| {
            let mut parts = item.split(';');
            let name = parts.next()?.trim();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q == 0.0))
            });
            (!refused).then_some(name)
        })
        .any(|name| name.eq_ignore_ascii_case(coding))
}

/// The asset's response: the smallest encoding the client takes, with its caching.
fn serve(asset: &'static Asset, headers: &HeaderMap, head: bool) -> Response {
    let (body, encoding) = match (asset.br, asset.gzip) {
        (Some(br), _) if accepts(headers, "br") => (br, Some("br")),
        (_, Some(gzip)) if accepts(headers, "gzip") => (gzip, Some("gzip")),
        _ => (asset.body, None),
    };
    let mut response = if head {
        let mut r = ().into_response();
        if let Ok(length) = HeaderValue::from_str(&body.len().to_string()) {
            r.headers_mut().insert(header::CONTENT_LENGTH, length);
        }
        r
    } else {
        body.into_response()
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if asset.immutable {
            IMMUTABLE
        } else {
            REVALIDATE
        }),
    );
    if asset.gzip.is_some() || asset.br.is_some() {
        h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    if let Some(encoding) = encoding {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding));
    }
    protect(h);
    response
}

/// The headers every page response carries.
pub fn protect(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

/// Serves an embedded asset, or the page for any route of its own; the API's JSON 404 for
/// everything else.
pub async fn fallback(req: Request) -> Response {
    let path = req.uri().path();
    let head = req.method() == Method::HEAD;
    if req.method() != Method::GET && !head || path.starts_with("/api/") || path == "/api" {
        return ApiError::no_route(req.method(), path).into_response();
    }
    if let Some(asset) = find(path) {
        return serve(asset, req.headers(), head);
    }
    if path.starts_with("/assets/") {
        // An asset of another release: the page that asks for it is stale.
        let mut response = (
            StatusCode::NOT_FOUND,
            "no such asset in this aifactory-http: reload the page\n",
        )
            .into_response();
        protect(response.headers_mut());
        return response;
    }
    match find(INDEX) {
        Some(index) => serve(index, req.headers(), head),
        None => {
            ApiError::internal("this aifactory-http was built without its web page").into_response()
        }
    }
}

/// The page's total size as served compressed, for the size check.
#[cfg(test)]
fn compressed_size() -> usize {
    ASSETS
        .iter()
        .map(|a| a.br.or(a.gzip).unwrap_or(a.body).len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(accept: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(accept));
        h
    }

    #[test]
    fn encodings_are_read_with_their_weights() {
        assert!(accepts(&headers("gzip, deflate, br, zstd"), "br"));
        assert!(accepts(&headers("gzip;q=0.5"), "gzip"));
        assert!(!accepts(&headers("gzip;q=0, br"), "gzip"));
        assert!(!accepts(&headers("identity"), "gzip"));
        assert!(!accepts(&HeaderMap::new(), "gzip"));
    }

    #[test]
    fn the_page_is_embedded_with_hashed_immutable_assets() {
        let index = find(INDEX).expect("the build embeds index.html at /");
        assert!(!index.immutable);
        let html = std::str::from_utf8(index.body).unwrap();
        let assets: Vec<_> = ASSETS.iter().filter(|a| a.path != INDEX).collect();
        assert!(assets.iter().any(|a| a.path.ends_with(".js")));
        for asset in assets {
            assert!(asset.immutable, "{}", asset.path);
            assert!(asset.path.starts_with("/assets/"), "{}", asset.path);
        }
        assert!(!html.contains("<script>"), "no inline script");
        assert!(compressed_size() < 500 * 1024, "{}", compressed_size());
    }
}
