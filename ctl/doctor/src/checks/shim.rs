//! The HTTP shim: its token file, whether it answers, and whether its console refuses a
//! WebSocket without the token and accepts one with it (from the answers [`crate::shim::probe`]
//! gathered).

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use aifactory_common::diagnose::Check;

use crate::http::HttpError;
use crate::shim::read_token;
use crate::{Facts, fail, ok, skip, warn};

pub(super) fn http_token(f: &Facts) -> Check {
    let name = "http-token";
    let Some(file) = &f.shim.token_file else {
        return skip(
            name,
            "the state directory is unknown: the daemon does not answer and `aifactoryd check` gives no report",
            Some("start the daemon, or pass --state-dir DIR".into()),
        );
    };
    match std::fs::metadata(file) {
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
        Ok(meta) if meta.uid() != nix::unistd::geteuid().as_raw() && read_token(Some(file)).is_none() => {
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

pub(super) fn http_shim(f: &Facts) -> Check {
    let name = "http-shim";
    let addr = &f.shim.addr;
    match &f.shim.health {
        Ok(r) if r.status == 200 => {
            let health = serde_json::from_str::<serde_json::Value>(&r.body).ok();
            let daemon = health
                .as_ref()
                .and_then(|v| v.get("daemon").or_else(|| v.get("status")))
                .map(|d| d.to_string())
                .unwrap_or_else(|| "?".into());
            ok(
                name,
                format!("aifactory-http answers on {} (daemon: {daemon})", addr),
            )
        }
        Ok(r) => fail(
            name,
            format!("{} answered /healthz with HTTP {}: {:.200}", addr, r.status, r.body),
            "look at the shim's log (`journalctl -u aifactory-http`)".into(),
        ),
        Err(e @ HttpError::Answer(_)) => fail(
            name,
            format!("something listens on {} but is not aifactory-http: {e}", addr),
            "find what listens there (`ss -ltnp`), stop it and start aifactory-http, or pass --http ADDR:PORT where the shim listens".into(),
        ),
        Err(e @ HttpError::Connect(_)) => warn(
            name,
            format!("aifactory-http does not answer on {}: {e}", addr),
            "start it: `systemctl start aifactory-http` (or run `aifactory-http`); pass --http ADDR:PORT if it listens elsewhere".into(),
        ),
    }
}

pub(super) fn console_auth(f: &Facts) -> Check {
    let name = "console-auth";
    let addr = &f.shim.addr;
    // Anything but a 401 to a console without a token, an answer that is not HTTP included,
    // may let anyone on this machine type into agents' terminals.
    let refuse = "run the aifactory-http that ships with this aifactoryctl (it refuses tokenless consoles), and nothing else on that address".to_string();
    match &f.shim.tokenless_console {
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
                    addr
                ),
                refuse,
            );
        }
        Err(HttpError::Connect(_)) => {
            return skip(
                name,
                &format!("aifactory-http does not answer on {}", addr),
                Some("start it: `systemctl start aifactory-http` (or run `aifactory-http`); pass --http ADDR:PORT if it listens elsewhere".into()),
            );
        }
    }
    let Some(with_token) = &f.shim.console_with_token else {
        return ok(name, "a console without a token is refused (401); the token file cannot be read here to check the other half".into());
    };
    match with_token {
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
