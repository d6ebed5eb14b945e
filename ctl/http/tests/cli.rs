//! aifactory-http's command line without a daemon: help, the token file, refusals at start.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

fn shim(dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aifactory-http"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env("XDG_RUNTIME_DIR", dir.join("run"))
        .arg("--state-dir")
        .arg(dir.join("state"));
    cmd
}

#[test]
fn help_names_the_token_and_the_flags() {
    let dir = tempfile::tempdir().unwrap();
    let out = shim(dir.path()).arg("--help").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--listen",
        "--allow-remote",
        "--allow-origin",
        "--socket",
        "--print-token",
        "Authorization: Bearer",
    ] {
        assert!(text.contains(needle), "help lacks `{needle}`:\n{text}");
    }
}

#[test]
fn print_token_makes_a_private_token_once() {
    let dir = tempfile::tempdir().unwrap();
    let first = shim(dir.path()).arg("--print-token").output().unwrap();
    assert!(first.status.success(), "{first:?}");
    let token = String::from_utf8_lossy(&first.stdout).trim().to_string();
    assert_eq!(token.len(), 64, "256 bits, hex: {token}");
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
    let file = dir.path().join("state/http-token");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let again = shim(dir.path()).arg("--print-token").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&again.stdout).trim(), token);
    // Another state directory, another token.
    let other = tempfile::tempdir().unwrap();
    let third = shim(other.path()).arg("--print-token").output().unwrap();
    assert_ne!(String::from_utf8_lossy(&third.stdout).trim(), token);
}

#[test]
fn a_non_loopback_address_needs_allow_remote() {
    let dir = tempfile::tempdir().unwrap();
    let out = shim(dir.path())
        .args(["--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a loopback address") && err.contains("--allow-remote"),
        "{err}"
    );
}

#[test]
fn a_bad_config_is_refused_naming_the_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("http.toml");
    std::fs::write(&config, "allowed_origin = [\"http://x\"]\n").unwrap();
    let out = shim(dir.path())
        .arg("--config")
        .arg(&config)
        .arg("--print-token")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("allowed_origin") && err.contains(config.to_str().unwrap()),
        "{err}"
    );
    std::fs::write(&config, "allowed_origins = [\"localhost:3000\"]\n").unwrap();
    let out = shim(dir.path())
        .arg("--config")
        .arg(&config)
        .arg("--print-token")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("scheme://host"),
        "{out:?}"
    );
}

#[test]
fn a_port_in_use_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = shim(dir.path())
        .args(["--listen", &addr, "--log", "stderr"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&addr) && err.contains("--listen"), "{err}");
}
