//! aifactoryctl's command line without a daemon: help, completions, unreachable daemon.

use std::process::Command;

fn ctl() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aifactoryctl"));
    cmd.env_remove("AIFACTORY_SOCKET");
    cmd
}

#[test]
fn help_documents_exit_codes() {
    let out = ctl().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for line in [
        "0  ok",
        "1  failed",
        "2  usage error",
        "3  daemon unreachable",
        "4  not found",
        "5  permission denied",
    ] {
        assert!(text.contains(line), "missing `{line}` in:\n{text}");
    }
}

#[test]
fn usage_error_exits_2() {
    let out = ctl().arg("no-such-command").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn completions_for_each_shell() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef aifactoryctl"),
        ("fish", "complete -c aifactoryctl"),
    ] {
        let out = ctl().args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(marker), "{shell} completion lacks `{marker}`");
        assert!(
            text.contains("status"),
            "{shell} completion lacks subcommands"
        );
    }
}

#[test]
fn unreachable_daemon_exits_3_with_the_path_and_how_to_start_it() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("none.sock");
    let out = ctl()
        .arg("--socket")
        .arg(&socket)
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&socket.display().to_string()), "{err}");
    assert!(err.contains("systemctl start aifactoryd"), "{err}");
    assert!(err.contains("aifactoryd"), "{err}");
}

#[test]
fn socket_path_follows_the_shared_resolution_order() {
    let dir = tempfile::tempdir().unwrap();
    // $RUNTIME_DIRECTORY (set by systemd) wins over both the root and the user default.
    let out = ctl()
        .env("RUNTIME_DIRECTORY", dir.path())
        .env("XDG_RUNTIME_DIR", "/nonexistent-xdg")
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    let expected = dir.path().join("aifactoryd.sock");
    assert!(err.contains(&expected.display().to_string()), "{err}");

    if nix::unistd::geteuid().is_root() {
        return;
    }
    // A user with no runtime directory at all gets the list of what was tried.
    let out = ctl()
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("RUNTIME_DIRECTORY")
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("XDG_RUNTIME_DIR (unset)"), "{err}");
}
