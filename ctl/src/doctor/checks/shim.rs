//! The HTTP shim: its token file, whether it answers, and whether its console refuses a
//! WebSocket without the token and accepts one with it.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;

use aifactory_common::diagnose::Check;

use super::state_dir_path;
use crate::doctor::http::HttpError;
use crate::doctor::{Facts, fail, http, ok, skip, warn};

const HTTP_TOKEN_FILE: &str = "http-token";

fn token_file(f: &Facts) -> Option<PathBuf> {
    state_dir_path(f).map(|d| d.join(HTTP_TOKEN_FILE))
}

fn read_token(f: &Facts) -> Option<String> {
    let text = std::fs::read_to_string(token_file(f)?).ok()?;
    Some(text.trim().to_string()).filter(|t| !t.is_empty())
}

pub(super) fn http_token(f: &Facts) -> Check {
    let name = "http-token";
    let Some(file) = token_file(f) else {
        return skip(
            name,
            "the state directory is unknown: the daemon does not answer and `aifactoryd check` gives no report",
            Some("start the daemon, or pass --state-dir DIR".into()),
        );
    };
    match std::fs::metadata(&file) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => warn(
            name,
            format!(
                "{} does not exist: aifactory-http has never run, so web clients and the Live Console cannot connect",
                file.display()
            ),
            "start the shim: `systemctl start aifactory-http` (or run `aifactory-http`); it creates the token".into(),
        ),
        Err(e) => fail(
            name,
            format!("{} cannot be read: {e}", file.display()),
            format!("chmod 0600 {} and chown it to the daemon's user", file.display()),
        ),
        Ok(meta) if meta.permissions().mode() & 0o077 != 0 => fail(
            name,
            format!(
                "{} has mode {:04o}: others can read the token",
                file.display(),
                meta.permissions().mode() & 0o777
            ),
            format!("chmod 0600 {}", file.display()),
        ),
        Ok(meta) if meta.uid() != nix::unistd::geteuid().as_raw() && read_token(f).is_none() => {
            warn(
                name,
                format!(
                    "{} is owned by uid {} and this user cannot read it",
                    file.display(),
                    meta.uid()
                ),
                "run the doctor as the daemon's user (or root) to check the console's authentication".into(),
            )
        }
        Ok(_) => ok(name, format!("{} exists with mode 0600", file.display())),
    }
}

pub(super) async fn http_shim(f: &Facts) -> Check {
    let name = "http-shim";
    // Without the token /healthz says only ok or unavailable; with it, the daemon's details.
    let bearer = read_token(f).map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = bearer
        .as_deref()
        .map(|b| vec![("Authorization", b)])
        .unwrap_or_default();
    match http::get(&f.http, "/healthz", &headers).await {
        Ok(r) if r.status == 200 => {
            let health = serde_json::from_str::<serde_json::Value>(&r.body).ok();
            let daemon = health
                .as_ref()
                .and_then(|v| v.get("daemon").or_else(|| v.get("status")))
                .map(|d| d.to_string())
                .unwrap_or_else(|| "?".into());
            ok(
                name,
                format!("aifactory-http answers on {} (daemon: {daemon})", f.http),
            )
        }
        Ok(r) => fail(
            name,
            format!("{} answered /healthz with HTTP {}: {:.200}", f.http, r.status, r.body),
            "look at the shim's log (`journalctl -u aifactory-http`)".into(),
        ),
        Err(e @ HttpError::Answer(_)) => fail(
            name,
            format!("something listens on {} but is not aifactory-http: {e}", f.http),
            "find what listens there (`ss -ltnp`), stop it and start aifactory-http, or pass --http ADDR:PORT where the shim listens".into(),
        ),
        Err(e @ HttpError::Connect(_)) => warn(
            name,
            format!("aifactory-http does not answer on {}: {e}", f.http),
            "start it: `systemctl start aifactory-http` (or run `aifactory-http`); pass --http ADDR:PORT if it listens elsewhere".into(),
        ),
    }
}

pub(super) async fn console_auth(f: &Facts) -> Check {
    let name = "console-auth";
    let path = "/api/v1/sessions/doctor-check/console";
    // Anything but a 401 to a console without a token, an answer that is not HTTP included,
    // may let anyone on this machine type into agents' terminals.
    let refuse = "run the aifactory-http that ships with this aifactoryctl (it refuses tokenless consoles), and nothing else on that address".to_string();
    match http::get(&f.http, path, &http::upgrade_headers()).await {
        Ok(r) if r.status == 401 => {}
        Ok(r) => {
            return fail(
                name,
                format!(
                    "a console WebSocket without a token got HTTP {}, not 401: anyone on this machine could type into agents' terminals",
                    r.status
                ),
                refuse,
            );
        }
        Err(e @ HttpError::Answer(_)) => {
            return fail(
                name,
                format!(
                    "a console WebSocket without a token on {} was not refused with 401 ({e}): whatever listens there does not guard the console",
                    f.http
                ),
                refuse,
            );
        }
        Err(HttpError::Connect(_)) => {
            return skip(
                name,
                &format!("aifactory-http does not answer on {}", f.http),
                Some("start it: `systemctl start aifactory-http` (or run `aifactory-http`); pass --http ADDR:PORT if it listens elsewhere".into()),
            );
        }
    }
    let Some(token) = read_token(f) else {
        return ok(name, "a console without a token is refused (401); the token file cannot be read here to check the other half".into());
    };
    let protocol = format!("aifactory.token.{token}");
    let mut headers = http::upgrade_headers();
    headers.push(("Sec-WebSocket-Protocol", &protocol));
    match http::get(&f.http, path, &headers).await {
        Ok(r) if r.status == 401 => fail(
            name,
            "a console WebSocket with the token from the token file is refused (401): web clients stay on \"Connecting...\"".into(),
            "restart aifactory-http so it reads the current token file, and have clients send the token as the subprotocol `aifactory.token.<token>` or `?token=`".into(),
        ),
        Ok(r) => ok(
            name,
            format!("a console without a token is refused (401), one with the token is let through (HTTP {})", r.status),
        ),
        Err(e) => warn(
            name,
            format!("the console handshake with the token failed: {e}"),
            "look at the shim's log (`journalctl -u aifactory-http`)".into(),
        ),
    }
}
