//! Logging a browser in without the token ever being in a URL or the page: one-time login codes
//! (`aifactory-http --print-url`, a URL whose fragment the page trades for a cookie) and the
//! session cookie itself (`HttpOnly`, `SameSite=Strict`, expiring).
//!
//! Both are `<expiry>.<nonce>.<mac>`: an HMAC-SHA256 keyed by the API token over what the value
//! is for, its expiry and a random nonce. So nothing is stored, a separate `--print-url` process
//! can mint codes the running shim accepts, and rotating the token revokes every code and
//! cookie at once. A code is also spent on first use: the shim remembers the nonces it has
//! taken until they expire (a shim restarted within a code's lifetime would take it once more).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::token::{Token, hex};

/// The cookie's name.
pub const COOKIE: &str = "aifactory_session";
/// How long a login lasts.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// How long a one-time login URL may wait to be opened.
pub const CODE_LIFETIME: Duration = Duration::from_secs(10 * 60);

const NONCE_BYTES: usize = 16;

/// What a signed value is for; part of what the MAC covers, so one is never taken for the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Code,
    Session,
}

impl Purpose {
    fn label(self) -> &'static str {
        match self {
            Purpose::Code => "aifactory-http login code v1",
            Purpose::Session => "aifactory-http session v1",
        }
    }
}

/// Why a code or cookie was not taken; the text is for the person at the login page.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    #[error(
        "this login link is not one aifactory-http made, or its token has been rotated since: run `aifactory-http --print-url` for a new one"
    )]
    Forged,
    #[error("this login link expired: run `aifactory-http --print-url` for a new one")]
    Expired,
    #[error(
        "this login link was used already (each works once): run `aifactory-http --print-url` for a new one"
    )]
    Spent,
    #[error("the OS gave no random bytes: {0}")]
    Random(String),
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn mac(token: &Token, purpose: Purpose, expiry: u64, nonce: &str) -> Hmac<Sha256> {
    // HMAC takes a key of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(token.as_str().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    mac.update(purpose.label().as_bytes());
    mac.update(b"|");
    mac.update(expiry.to_string().as_bytes());
    mac.update(b"|");
    mac.update(nonce.as_bytes());
    mac
}

fn sign(token: &Token, purpose: Purpose, lifetime: Duration) -> Result<String, LoginError> {
    let mut nonce = [0u8; NONCE_BYTES];
    getrandom::fill(&mut nonce).map_err(|e| LoginError::Random(e.to_string()))?;
    let nonce = hex(&nonce);
    let expiry = now().saturating_add(lifetime.as_secs());
    let tag = mac(token, purpose, expiry, &nonce).finalize().into_bytes();
    Ok(format!("{expiry}.{nonce}.{}", hex(&tag)))
}

/// The expiry and nonce of a value signed for `purpose`, if the signature holds and it has not
/// expired.
fn verify(token: &Token, purpose: Purpose, value: &str) -> Result<(u64, String), LoginError> {
    let mut parts = value.trim().splitn(3, '.');
    let (Some(expiry), Some(nonce), Some(tag)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(LoginError::Forged);
    };
    let expiry: u64 = expiry.parse().map_err(|_| LoginError::Forged)?;
    let tag = unhex(tag).ok_or(LoginError::Forged)?;
    mac(token, purpose, expiry, nonce)
        .verify_slice(&tag)
        .map_err(|_| LoginError::Forged)?;
    if expiry <= now() {
        return Err(LoginError::Expired);
    }
    Ok((expiry, nonce.to_string()))
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A new one-time login code.
pub fn new_code(token: &Token) -> Result<String, LoginError> {
    sign(token, Purpose::Code, CODE_LIFETIME)
}

/// A new session cookie's value.
pub fn new_session(token: &Token) -> Result<String, LoginError> {
    sign(token, Purpose::Session, SESSION_LIFETIME)
}

/// Whether a session cookie's value is one of ours and still valid.
pub fn session_is_valid(token: &Token, value: &str) -> bool {
    verify(token, Purpose::Session, value).is_ok()
}

/// The `Set-Cookie` value that logs the browser in.
pub fn set_cookie(value: &str) -> String {
    format!(
        "{COOKIE}={value}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict",
        SESSION_LIFETIME.as_secs()
    )
}

/// The `Set-Cookie` value that logs the browser out.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict")
}

/// The session cookie among a request's `Cookie` headers.
pub fn cookie<'a>(headers: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    headers
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// The codes taken so far, each kept until it expires.
#[derive(Debug, Clone, Default)]
pub struct SpentCodes(Arc<Mutex<HashMap<String, u64>>>);

impl SpentCodes {
    /// Takes a one-time code: valid, unexpired and not taken before.
    pub fn redeem(&self, token: &Token, code: &str) -> Result<(), LoginError> {
        let (expiry, nonce) = verify(token, Purpose::Code, code)?;
        let mut spent = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = now();
        spent.retain(|_, until| *until > now);
        if spent.insert(nonce, expiry).is_some() {
            return Err(LoginError::Spent);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(text: &str) -> Token {
        Token::for_tests(text)
    }

    #[test]
    fn a_code_logs_in_once() {
        let t = token(&"a".repeat(64));
        let spent = SpentCodes::default();
        let code = new_code(&t).unwrap();
        assert_eq!(spent.redeem(&t, &code), Ok(()));
        assert_eq!(spent.redeem(&t, &code), Err(LoginError::Spent));
        assert_eq!(
            spent.redeem(&t, &new_code(&t).unwrap()),
            Ok(()),
            "another code still works"
        );
    }

    #[test]
    fn rotating_the_token_revokes_codes_and_cookies() {
        let old = token(&"a".repeat(64));
        let new = token(&"b".repeat(64));
        let code = new_code(&old).unwrap();
        assert_eq!(
            SpentCodes::default().redeem(&new, &code),
            Err(LoginError::Forged)
        );
        let session = new_session(&old).unwrap();
        assert!(session_is_valid(&old, &session));
        assert!(!session_is_valid(&new, &session));
    }

    #[test]
    fn a_code_is_not_a_cookie_and_tampering_shows() {
        let t = token(&"a".repeat(64));
        let code = new_code(&t).unwrap();
        assert!(!session_is_valid(&t, &code), "a code is not a session");
        let session = new_session(&t).unwrap();
        let (expiry, rest) = session.split_once('.').unwrap();
        let later = format!("{}.{rest}", expiry.parse::<u64>().unwrap() + 3600);
        assert!(
            !session_is_valid(&t, &later),
            "a moved expiry breaks the MAC"
        );
        for junk in ["", "1.2", "x.y.z", "1.2.zz", "99999999999.n.00"] {
            assert!(!session_is_valid(&t, junk), "{junk:?}");
        }
    }

    #[test]
    fn an_expired_value_is_refused_as_expired() {
        let t = token(&"a".repeat(64));
        let expiry = now() - 1;
        let tag = mac(&t, Purpose::Code, expiry, "n").finalize().into_bytes();
        let code = format!("{expiry}.n.{}", hex(&tag));
        assert_eq!(
            SpentCodes::default().redeem(&t, &code),
            Err(LoginError::Expired)
        );
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let headers = ["a=1; aifactory_session=v.w.x", "b=2"];
        assert_eq!(cookie(headers.into_iter()), Some("v.w.x"));
        assert_eq!(cookie(["aifactory_sessionx=1"].into_iter()), None);
        let set = set_cookie("v");
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"));
    }
}
