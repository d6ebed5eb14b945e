//! Where the workspace's built binaries are (the shipped ones, and the test suite's
//! [`HOOKED_DAEMON`]), and copies of them every user can run.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The directory holding the workspace's built binaries (`target/<profile>`), or
/// `$AIFACTORY_BIN_DIR`.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("AIFACTORY_BIN_DIR") {
        return PathBuf::from(dir);
    }
    // Test and bench executables live in target/<profile>/deps.
    let exe = std::env::current_exe().unwrap_or_default();
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The binaries that must sit beside `name`: the daemon starts its pane monitor from its own
/// directory.
pub fn companions(name: &str) -> Vec<&str> {
    match name {
        "aifactoryd" => vec!["aifactoryd", "aifactory-pane"],
        HOOKED_DAEMON => vec![HOOKED_DAEMON, "aifactory-pane"],
        other => vec![other],
    }
}

/// The test suite's daemon with the test hooks (`tests/hooked`), for the tests that need one;
/// every other test runs the shipped `aifactoryd`.
pub const HOOKED_DAEMON: &str = "aifactoryd-hooked";

/// A workspace binary; fails with the command that builds it when it (or a binary it needs
/// beside it) is missing.
pub fn bin(name: &str) -> PathBuf {
    let dir = bin_dir();
    for needed in companions(name) {
        let path = dir.join(needed);
        assert!(
            path.exists(),
            "{} is missing: build the workspace first (`cargo build --workspace`), or set AIFACTORY_BIN_DIR to a directory holding {}",
            path.display(),
            companions(name).join(" and ")
        );
    }
    dir.join(name)
}

/// A copy of a workspace binary (with its [`companions`] beside it) that every user can run,
/// for tests that run a process as another uid: the build directory (and the checkout above
/// it) may not be searchable by others. Copies are keyed by the binaries' sizes and mtimes,
/// so test processes share them.
pub fn shared_bin(name: &str) -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let originals: Vec<(&str, PathBuf)> = companions(name)
        .into_iter()
        .map(|n| (n, bin_dir().join(n)))
        .collect();
    bin(name);
    let key: Vec<String> = originals
        .iter()
        .map(|(_, path)| {
            let meta = fs::metadata(path).expect("stat binary");
            format!(
                "{}-{}",
                meta.size(),
                meta.mtime_nsec() + meta.mtime() * 1_000_000_000
            )
        })
        .collect();
    let root = std::env::temp_dir().join("aifactory-shared-bin");
    fs::create_dir_all(&root).expect("create the shared binary directory");
    fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).expect("chmod shared bin dir");
    let dir = root.join(format!("{name}-{}", key.join("-")));
    if !dir.exists() {
        // Filled under a unique name, then renamed: concurrent tests never see half a set.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = root.join(format!(".{name}-{}-{n}", std::process::id()));
        fs::create_dir_all(&tmp).expect("create a shared binary directory");
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).expect("chmod binary dir");
        for (n, original) in &originals {
            // `cp` writes it, not this process: a write fd held here could be inherited by a
            // concurrent fork and make exec of the copy fail with ETXTBSY.
            let copy = tmp.join(n);
            let copied = Command::new("cp")
                .arg(original)
                .arg(&copy)
                .status()
                .expect("run cp");
            assert!(
                copied.success(),
                "cp {} {} failed",
                original.display(),
                copy.display()
            );
            fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).expect("chmod binary");
        }
        if fs::rename(&tmp, &dir).is_err() {
            // Another test published the same set first.
            assert!(dir.exists(), "cannot publish {}", dir.display());
            let _ = fs::remove_dir_all(&tmp);
        }
    }
    dir.join(name)
}
