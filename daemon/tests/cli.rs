//! The daemon's command line without a running daemon: version, --print-config, config errors.

use std::process::Command;

fn aifactoryd() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aifactoryd"));
    cmd.env_remove("AIFACTORY_SOCKET")
        .env_remove("AIFACTORY_STATE_DIR")
        .env_remove("RUST_LOG");
    cmd
}

#[test]
fn version_names_package_and_protocol() {
    let out = aifactoryd().arg("--version").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.trim(),
        format!(
            "aifactoryd {} (protocol {})",
            env!("CARGO_PKG_VERSION"),
            aifactory_common::PROTOCOL_VERSION
        )
    );
}

#[test]
fn print_config_shows_overrides_and_file_values() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("d.toml");
    std::fs::write(&config, "max_connections = 12\nsocket_mode = \"0640\"\n").unwrap();
    let out = aifactoryd()
        .arg("--config")
        .arg(&config)
        .args([
            "--socket",
            "/x/y.sock",
            "--state-dir",
            "/x/state",
            "--print-config",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("max_connections = 12"), "{text}");
    assert!(text.contains("socket_mode = \"0640\""), "{text}");
    assert!(text.contains("socket = \"/x/y.sock\""), "{text}");
    assert!(text.contains("state_dir = \"/x/state\""), "{text}");
    assert!(text.contains(&config.display().to_string()), "{text}");
}

#[test]
fn unknown_key_names_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("d.toml");
    std::fs::write(&config, "max_conections = 12\n").unwrap();
    let out = aifactoryd()
        .arg("--config")
        .arg(&config)
        .arg("--print-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("max_conections"), "{err}");
    assert!(err.contains(&config.display().to_string()), "{err}");
}

#[test]
fn missing_explicit_config_is_an_error() {
    let out = aifactoryd()
        .args(["--config", "/nonexistent/aifactoryd.toml", "--print-config"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/aifactoryd.toml"), "{err}");
}

#[test]
fn unwritable_state_dir_is_a_clear_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    // A regular file where the state directory should be cannot be fixed by permissions alone,
    // so this fails as root too.
    let state = dir.path().join("state");
    std::fs::write(&state, "not a dir").unwrap();
    let out = aifactoryd()
        .arg("--socket")
        .arg(dir.path().join("s.sock"))
        .arg("--state-dir")
        .arg(&state)
        .args(["--log", "stderr"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot use state directory"), "{err}");
    assert!(err.contains(&state.display().to_string()), "{err}");
    assert!(
        !dir.path().join("s.sock").exists(),
        "no socket may be left behind"
    );
}
