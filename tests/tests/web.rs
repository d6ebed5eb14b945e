//! The web page as HTTP serves it, and the browser's way in, against the real `aifactory-http`
//! and `aifactoryd`: the page and its hashed assets (caching, compression, the CSP, the size
//! budget), the one-time login link, the session cookie and the Origin rule for what it may
//! change. What the page does in a browser is in the Chromium suite.

use std::time::Duration;

use aifactory_tests::{Http, Sandbox};
use reqwest::header::{self, HeaderMap};
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};

/// A liveness bound for a loaded 2-core machine, not a speed target.
const TIMEOUT: Duration = Duration::from_secs(30);

fn client() -> Client {
    Client::builder().timeout(TIMEOUT).build().unwrap()
}

fn header(headers: &HeaderMap, name: header::HeaderName) -> &str {
    headers
        .get(&name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or_else(|| panic!("no {name} header in {headers:#?}"))
}

/// The `/assets/...` paths the page's HTML refers to.
fn referenced_assets(html: &str) -> Vec<String> {
    html.split(['"', '\''])
        .filter(|part| part.starts_with("/assets/"))
        .map(str::to_string)
        .collect()
}

async fn error_code(response: Response) -> (StatusCode, String, String) {
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    (
        status,
        body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_served_with_hashed_cached_compressed_assets_under_a_strict_csp() {
    let sandbox = Sandbox::new();
    let _daemon = sandbox.daemon().start();
    let shim = sandbox.http().start();
    let http = client();

    let page = http.get(shim.url("/")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let headers = page.headers().clone();
    assert!(header(&headers, header::CONTENT_TYPE).starts_with("text/html"));
    assert_eq!(header(&headers, header::CACHE_CONTROL), "no-cache");
    let csp = header(&headers, header::CONTENT_SECURITY_POLICY);
    for rule in [
        "default-src 'self'",
        "script-src 'self';",
        "connect-src 'self'",
        "object-src 'none'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(rule), "{rule} missing from {csp}");
    }
    assert!(!csp.contains("unsafe-eval"), "{csp}");
    let html = page.text().await.unwrap();
    assert!(
        !html.contains(&shim.token),
        "the token is never in the page"
    );
    assert!(
        !html.contains("<script>") && !html.contains("style=\""),
        "no inline script or style attribute: {html}"
    );

    // Every route of the page's own is the same page; the API keeps its JSON 404.
    for route in [
        "/tasks/t-123",
        "/sessions",
        "/doctor",
        "/login",
        "/hosts",
        "/hosts/b1/tasks/t-123",
        "/hosts/b1/sessions/s-1/console",
    ] {
        let other = http.get(shim.url(route)).send().await.unwrap();
        assert_eq!(other.status(), StatusCode::OK, "{route}");
        assert_eq!(other.text().await.unwrap(), html, "{route}");
    }
    let (status, code, _) =
        error_code(http.get(shim.url("/api/v1/nothing")).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (StatusCode::NOT_FOUND, "no_route"));

    let assets = referenced_assets(&html);
    assert!(
        assets.iter().any(|a| a.ends_with(".js")) && assets.iter().any(|a| a.ends_with(".css")),
        "the page loads a script and a stylesheet: {assets:?}"
    );
    let mut compressed_total = html.len();
    for asset in &assets {
        let name = asset.rsplit('/').next().unwrap();
        let (stem, _) = name.rsplit_once('.').unwrap();
        let hash = stem.rsplit('-').next().unwrap();
        assert!(hash.len() >= 8, "{asset} is named by its content hash");

        let plain = http.get(shim.url(asset)).send().await.unwrap();
        assert_eq!(plain.status(), StatusCode::OK, "{asset}");
        assert_eq!(
            header(plain.headers(), header::CACHE_CONTROL),
            "public, max-age=31536000, immutable",
            "{asset}"
        );
        assert!(plain.headers().get(header::CONTENT_ENCODING).is_none());
        let plain_len = plain.bytes().await.unwrap().len();

        let mut smallest = plain_len;
        for coding in ["gzip", "br"] {
            let packed = http
                .get(shim.url(asset))
                .header(header::ACCEPT_ENCODING, coding)
                .send()
                .await
                .unwrap();
            assert_eq!(packed.status(), StatusCode::OK);
            if let Some(used) = packed.headers().get(header::CONTENT_ENCODING) {
                assert_eq!(used, coding, "{asset}");
                assert_eq!(
                    header(packed.headers(), header::VARY),
                    "accept-encoding",
                    "{asset}"
                );
                let len = packed.bytes().await.unwrap().len();
                assert!(len < plain_len, "{asset}: {coding} {len} >= {plain_len}");
                smallest = smallest.min(len);
            }
        }
        if plain_len > 4096 {
            assert!(
                smallest < plain_len,
                "{asset} ({plain_len} B) is compressed"
            );
        }
        compressed_total += smallest;
    }
    assert!(
        compressed_total < 500 * 1024,
        "the whole page is {compressed_total} bytes compressed"
    );

    let stale = http
        .get(shim.url("/assets/app-0123456789abcdef.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::NOT_FOUND);
    assert!(stale.text().await.unwrap().contains("reload the page"));
}

/// Logs in with a fresh one-time link; returns the `Cookie` header to send.
async fn log_in(http: &Client, shim: &Http) -> String {
    let url = shim.login_url();
    let code = url
        .split_once("/login#code=")
        .unwrap_or_else(|| panic!("a login URL with the code in its fragment: {url}"))
        .1;
    assert!(url.starts_with(&shim.base), "{url} is on {}", shim.base);
    let login = http
        .post(shim.url("/api/v1/login"))
        .json(&json!({ "code": code }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::NO_CONTENT);
    let set = header(login.headers(), header::SET_COOKIE).to_string();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(set.contains(attribute), "{attribute} missing: {set}");
    }
    set.split(';').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_link_works_once_and_its_cookie_changes_nothing_without_the_pages_origin() {
    let sandbox = Sandbox::new();
    let _daemon = sandbox.daemon().start();
    let mut shim = sandbox.http().start();
    let http = client();

    let url = shim.login_url();
    let code = url.split_once("#code=").unwrap().1.to_string();
    assert!(!url.contains(&shim.token), "the token is not in the link");
    let redeem = || {
        http.post(shim.url("/api/v1/login"))
            .json(&json!({ "code": code }))
            .send()
    };
    assert_eq!(redeem().await.unwrap().status(), StatusCode::NO_CONTENT);
    let (status, error, message) = error_code(redeem().await.unwrap()).await;
    assert_eq!(
        (status, error.as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_code")
    );
    assert!(message.contains("used already") && message.contains("--print-url"));

    let forged = http
        .post(shim.url("/api/v1/login"))
        .json(&json!({ "code": "4102444800.00.00" }))
        .send()
        .await
        .unwrap();
    let (status, error, _) = error_code(forged).await;
    assert_eq!(
        (status, error.as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_code")
    );
    let wrong = http
        .post(shim.url("/api/v1/login"))
        .json(&json!({ "token": "0".repeat(64) }))
        .send()
        .await
        .unwrap();
    let (status, error, message) = error_code(wrong).await;
    assert_eq!(
        (status, error.as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_token")
    );
    assert!(message.contains("--print-token"), "{message}");
    let by_token = http
        .post(shim.url("/api/v1/login"))
        .json(&json!({ "token": shim.token }))
        .send()
        .await
        .unwrap();
    assert_eq!(by_token.status(), StatusCode::NO_CONTENT);

    // The cookie reads; it changes things only from a page that says where it is.
    let cookie = log_in(&http, &shim).await;
    let status = http
        .get(shim.url("/api/v1/status"))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), StatusCode::OK);
    let start = |origin: Option<&str>| {
        let mut request = http
            .post(shim.url("/api/v1/tasks/t-nothing/start"))
            .header(header::COOKIE, &cookie);
        if let Some(origin) = origin {
            request = request.header(header::ORIGIN, origin);
        }
        request.send()
    };
    let (status, error, message) = error_code(start(None).await.unwrap()).await;
    assert_eq!(
        (status, error.as_str()),
        (StatusCode::FORBIDDEN, "origin_required")
    );
    assert!(message.contains("Bearer"), "{message}");
    let (status, error, _) = error_code(start(Some("http://evil.example")).await.unwrap()).await;
    assert_eq!(
        (status, error.as_str()),
        (StatusCode::FORBIDDEN, "origin_not_allowed")
    );
    let (status, error, _) = error_code(start(Some(&shim.base)).await.unwrap()).await;
    assert_eq!(
        (status, error.as_str()),
        (StatusCode::NOT_FOUND, "not_found"),
        "from the page's own origin the request reaches the daemon"
    );

    let logout = http.post(shim.url("/api/v1/logout")).send().await.unwrap();
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    assert!(header(logout.headers(), header::SET_COOKIE).contains("Max-Age=0"));

    // Rotating the token revokes every login.
    shim.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(shim.wait_exit(TIMEOUT).is_some(), "the shim stops");
    std::fs::remove_file(sandbox.state_dir().join("http-token")).unwrap();
    let shim = sandbox.http().log_name("http-rotated").start();
    let old = http
        .get(shim.url("/api/v1/status"))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    let (status, error, message) = error_code(old).await;
    assert_eq!(
        (status, error.as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_login")
    );
    assert!(message.contains("log in again"), "{message}");

    let logs = ["http.log", "http-rotated.log"]
        .map(|log| std::fs::read_to_string(sandbox.path().join(log)).unwrap())
        .join("\n");
    assert!(
        !logs.contains(&code) && !logs.contains(&shim.token),
        "no code or token in the shim's log:\n{logs}"
    );
}
