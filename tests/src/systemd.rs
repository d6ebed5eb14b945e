//! A real systemd as PID 1 in private namespaces, for the systemd suite
//! (`tests/tests/systemd_e2e.rs`), and the Debian package it installs there.
//!
//! [`Systemd::boot`] runs `unshare --pid --fork --mount --propagation private --mount-proc`
//! (plus UTS, IPC, network and cgroup namespaces) and, inside, mounts tmpfs on `/run`, `/tmp`
//! and `/var/log/journal`, sets `container=other` and execs `/lib/systemd/systemd --system
//! --unit=multi-user.target`. Commands reach it through `nsenter`; [`Systemd::shutdown`] ends it
//! with `systemctl exit`.
//!
//! The host must come out untouched, so everything the namespace writes lands in memory:
//! `/usr`, `/var`, `/home`, `/srv`, `/root` and `/opt` are overlays whose upper layers live in
//! a tmpfs of the namespace, and `/etc` and `/var/lib/dpkg` are copies in it (dpkg,
//! systemd-sysusers and journald write there); `/dev`
//! is a fresh tmpfs with the basic nodes and a private devpts; `/proc/sys` and `/sys` are
//! read-only; the units the host enabled are hidden (an empty `/etc/systemd/system`), and the
//! units that would reach the kernel or the console (modules, sysctl, binfmt, gettys) are
//! masked. D-Bus and logind run (user managers need them); with a private `/dev` logind finds
//! no seat or VT to manage. The namespace gets a cgroup of its own below the caller's, removed at the end.
//! [`Systemd::shutdown`] checks that nothing of the package reached the host.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Runs inside the new namespaces as `sh -c BOOT boot SCRATCH`; ends by exec'ing systemd.
const BOOT: &str = r#"
set -eu
scratch=$1
mount -t tmpfs -o mode=0755 aifactory-e2e "$scratch"
for d in usr var home srv root opt; do
    mkdir -p "$scratch/upper/$d" "$scratch/work/$d"
    mount -t overlay overlay -o "lowerdir=/$d,upperdir=$scratch/upper/$d,workdir=$scratch/work/$d" "/$d"
done
# Copied, not overlaid: the host's apt may change these while a test runs, and an overlay's
# lower layer must not change under it (dpkg then fails with ESTALE).
for d in /etc /var/lib/dpkg; do
    mkdir -p "$scratch/copy$d"
    cp -a "$d/." "$scratch/copy$d/"
    mount --bind "$scratch/copy$d" "$d"
done
# A container image's "start no services" switch; a real machine has none.
rm -f /usr/sbin/policy-rc.d
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /tmp
mkdir -p /var/log/journal
mount -t tmpfs -o mode=2755 tmpfs /var/log/journal
mount -t tmpfs -o mode=0755 tmpfs /etc/systemd/system

dev=$scratch/dev
mkdir -p "$dev"
mount -t tmpfs -o mode=0755,nosuid tmpfs "$dev"
for node in null zero full random urandom tty; do
    touch "$dev/$node"
    mount --bind "/dev/$node" "$dev/$node"
done
mkdir -p "$dev/pts" "$dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts "$dev/pts"
ln -s pts/ptmx "$dev/ptmx"
ln -s /proc/self/fd "$dev/fd"
ln -s /proc/self/fd/0 "$dev/stdin"
ln -s /proc/self/fd/1 "$dev/stdout"
ln -s /proc/self/fd/2 "$dev/stderr"
mount -t tmpfs -o mode=1777 tmpfs "$dev/shm"
mount --move "$dev" /dev

mount --bind /proc/sys /proc/sys
mount -o remount,bind,ro /proc/sys
mount --rbind /sys /sys
mount -o remount,bind,ro /sys
umount -R /sys/fs/cgroup 2>/dev/null || true
mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup

mkdir -p /run/systemd/system
for unit in systemd-modules-load.service systemd-sysctl.service systemd-binfmt.service \
        proc-sys-fs-binfmt_misc.automount systemd-firstboot.service systemd-repart.service \
        systemd-pcrphase.service systemd-pcrphase-sysinit.service systemd-tmpfiles-setup-dev.service \
        getty.target console-getty.service; do
    ln -s /dev/null "/run/systemd/system/$unit"
done
# dpkg's man-db trigger would rebuild the whole man database at every install.
rm -f /var/lib/man-db/auto-update
export container=other
exec /lib/systemd/systemd --system --unit=multi-user.target
"#;

const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const BOOT_TIMEOUT: Duration = Duration::from_secs(60);
/// What the package creates that the host must not get: a file and a line that must not
/// appear in it. (Other processes may change these files meanwhile, e.g. the host's apt.)
const HOST_MARKS: [(&str, &str); 5] = [
    ("/etc/passwd", "aifactory:"),
    ("/etc/group", "aifactory:"),
    ("/var/lib/dpkg/status", "Package: aifactory\n"),
    ("/lib/systemd/system/aifactoryd.service", ""),
    ("/etc/aifactory/aifactoryd.toml", ""),
];

/// Why this machine cannot run the suite, if it cannot.
pub fn unavailable() -> Option<String> {
    if !crate::is_root() {
        return Some("needs root (unshare, mounts and a systemd as PID 1)".into());
    }
    for tool in ["unshare", "nsenter"] {
        if crate::bench::find_in_path(tool).is_none() {
            return Some(format!("`{tool}` is not installed (util-linux)"));
        }
    }
    if !Path::new("/lib/systemd/systemd").exists() {
        return Some("/lib/systemd/systemd is missing: install the systemd package".into());
    }
    if let Err(e) = cgroup2_parent() {
        return Some(e);
    }
    let probe = Command::new("unshare")
        .args(["--pid", "--fork", "--mount", "--cgroup", "true"])
        .stdin(Stdio::null())
        .output();
    match probe {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!(
            "`unshare --pid --fork --mount --cgroup` fails here: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Some(format!("cannot run unshare: {e}")),
    }
}

/// The cgroup v2 directory this process is in, on the host's cgroup2 mount.
fn cgroup2_parent() -> Result<PathBuf, String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
    let mount = mountinfo
        .lines()
        .find_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            (right.split_whitespace().next()? == "cgroup2")
                .then(|| left.split_whitespace().nth(4).map(PathBuf::from))?
        })
        .ok_or("no cgroup2 file system is mounted: systemd needs the unified cgroup hierarchy")?;
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
    let path = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or("this process has no cgroup v2 path in /proc/self/cgroup")?;
    Ok(mount.join(path.trim_start_matches('/')))
}

/// One booted systemd; killed with everything in it when dropped.
pub struct Systemd {
    unshare: Child,
    /// systemd's pid on the host.
    pub pid: i32,
    cgroup: PathBuf,
    dir: tempfile::TempDir,
    /// The host marks that were there before the boot (not ours to check).
    host_marks: Vec<bool>,
    done: bool,
}

fn host_marks() -> Vec<bool> {
    HOST_MARKS
        .iter()
        .map(|(path, line)| std::fs::read_to_string(path).is_ok_and(|text| text.contains(line)))
        .collect()
}

impl Systemd {
    /// Boots systemd and waits until it finished starting up; fails the test with systemd's
    /// console output if it does not.
    pub fn boot() -> Systemd {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = tempfile::Builder::new()
            .prefix("aifactory-systemd-")
            .tempdir()
            .expect("create a temporary directory");
        let scratch = dir.path().join("ns");
        std::fs::create_dir(&scratch).expect("create the namespace's scratch directory");
        let parent = cgroup2_parent().unwrap_or_else(|e| panic!("{e}"));
        let cgroup = parent.join(format!("aifactory-e2e-{}-{n}", std::process::id()));
        std::fs::create_dir(&cgroup)
            .unwrap_or_else(|e| panic!("cannot create the cgroup {}: {e}", cgroup.display()));
        let console = std::fs::File::create(dir.path().join("console.log")).expect("console log");
        let host_marks = host_marks();
        // The wrapper moves itself into the new cgroup, then becomes unshare, whose child
        // (systemd) starts a cgroup namespace rooted there.
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(
                r#"echo $$ > "$1/cgroup.procs" && exec unshare --pid --fork --mount --propagation private --mount-proc --uts --ipc --net --cgroup /bin/sh -c "$2" boot "$3""#,
            )
            .arg("wrapper")
            .arg(&cgroup)
            .arg(BOOT)
            .arg(&scratch)
            .env_clear()
            .env("PATH", PATH)
            .stdin(Stdio::null())
            .stdout(console.try_clone().expect("dup console"))
            .stderr(console)
            .process_group(0);
        let unshare = cmd.spawn().unwrap_or_else(|e| {
            remove_cgroup(&cgroup);
            panic!("cannot run sh and unshare: {e}")
        });
        let mut systemd = Systemd {
            pid: 0,
            unshare,
            cgroup,
            dir,
            host_marks,
            done: false,
        };
        systemd.pid = systemd.find_init();
        systemd.wait_running();
        systemd
    }

    fn console(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("console.log")).unwrap_or_default()
    }

    /// The pid of unshare's only child: systemd.
    fn find_init(&mut self) -> i32 {
        let parent = self.unshare.id();
        let children = format!("/proc/{parent}/task/{parent}/children");
        let deadline = Instant::now() + BOOT_TIMEOUT;
        loop {
            if let Some(pid) = std::fs::read_to_string(&children)
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse().ok())
            {
                // The child first runs the boot script; it is systemd once it exec'd.
                if std::fs::read_link(format!("/proc/{pid}/exe"))
                    .is_ok_and(|exe| exe.ends_with("systemd"))
                {
                    return pid;
                }
            }
            if let Ok(Some(status)) = self.unshare.try_wait() {
                panic!(
                    "the namespace setup failed ({status}) before systemd started:\n{}",
                    self.console()
                );
            }
            assert!(
                Instant::now() < deadline,
                "systemd did not start within {BOOT_TIMEOUT:?}:\n{}",
                self.console()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_running(&self) {
        let deadline = Instant::now() + BOOT_TIMEOUT;
        loop {
            // Fails until systemd's private socket exists; `--wait` then waits for start-up.
            let out = self.sh("systemctl is-system-running --wait");
            let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
            match state.as_str() {
                "running" => return,
                "degraded" => {
                    eprintln!(
                        "systemd in the namespace is degraded (not our units, which are not installed yet):\n{}",
                        self.text("systemctl --failed --no-pager")
                    );
                    return;
                }
                _ => {}
            }
            assert!(
                Instant::now() < deadline,
                "systemd did not finish starting within {BOOT_TIMEOUT:?} (state `{state}`):\n{}\n{}",
                String::from_utf8_lossy(&out.stderr),
                self.console()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs a shell script inside the namespaces, as root.
    pub fn sh(&self, script: &str) -> Output {
        self.command(script).output().expect("run nsenter")
    }

    /// The command [`Systemd::sh`] runs, for callers that adjust it.
    pub fn command(&self, script: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.args([
            "-t",
            &self.pid.to_string(),
            "-m",
            "-p",
            "-u",
            "-i",
            "-n",
            "--wd=/",
        ])
        .args(["--", "sh", "-c", script])
        .env_clear()
        .env("PATH", PATH)
        .env("HOME", "/root")
        .env("LANG", "C.UTF-8")
        .env("SYSTEMD_PAGER", "")
        .env("SYSTEMD_COLORS", "0")
        .env("TERM", "dumb")
        .stdin(Stdio::null());
        cmd
    }

    /// Runs a script that must succeed; returns its stdout.
    pub fn ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(
            out.status.success(),
            "`{script}` failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a script whatever its outcome; returns stdout and stderr, trimmed.
    pub fn text(&self, script: &str) -> String {
        let out = self.sh(script);
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        text.trim().to_string()
    }

    /// A unit property (`systemctl show -P`).
    pub fn property(&self, unit: &str, property: &str) -> String {
        self.ok(&format!("systemctl show -P {property} {unit}"))
            .trim()
            .to_string()
    }

    /// Waits until `done` holds, checking every 50 ms; fails with `what` and the unit's journal.
    pub fn wait_for(&self, what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !done() {
            assert!(
                Instant::now() < deadline,
                "{what}: not within {timeout:?}\n{}",
                self.text("journalctl -u aifactoryd -u aifactoryd.socket --no-pager -n 60")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops systemd (`systemctl exit`), removes the namespace's cgroup, and checks that the
    /// host's user and package databases are as they were.
    pub fn shutdown(mut self) {
        let _ = self.sh("systemctl exit");
        let deadline = Instant::now() + Duration::from_secs(30);
        let exited = loop {
            if let Ok(Some(status)) = self.unshare.try_wait() {
                break Some(status);
            }
            if Instant::now() >= deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.kill();
        assert!(
            exited.is_some(),
            "systemd did not exit within 30 s of `systemctl exit`:\n{}",
            self.console()
        );
        self.done = true;
        for (((path, line), before), after) in
            HOST_MARKS.iter().zip(&self.host_marks).zip(host_marks())
        {
            assert!(
                *before || !after,
                "the host got {path}{} while systemd ran in the namespace",
                if line.is_empty() {
                    String::new()
                } else {
                    format!(" line {line:?}")
                }
            );
        }
    }

    fn kill(&mut self) {
        if self.unshare.try_wait().ok().flatten().is_none() {
            // systemd is init of its PID namespace: killing it ends everything in there.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = self.unshare.wait();
        }
        remove_cgroup(&self.cgroup);
    }
}

impl Drop for Systemd {
    fn drop(&mut self) {
        if !self.done {
            self.kill();
        }
    }
}

/// Removes a cgroup and the ones systemd made below it, deepest first. Processes leave a
/// cgroup's `cgroup.procs` only once they are reaped, so an rmdir may need a moment.
fn remove_cgroup(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup(&entry.path());
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while let Err(e) = std::fs::remove_dir(dir) {
        if e.kind() == std::io::ErrorKind::NotFound || Instant::now() >= deadline {
            if e.kind() != std::io::ErrorKind::NotFound {
                eprintln!("cannot remove the test cgroup {}: {e}", dir.display());
            }
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The workspace's root directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Builds the Debian package once per test process (`packaging/build-deb`: release builds of
/// the shipped binaries) and returns its path, or why it cannot be built here.
pub fn deb() -> Result<PathBuf, String> {
    static DEB: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DEB.get_or_init(|| {
        let probe = Command::new("cargo")
            .args(["deb", "--version"])
            .stdin(Stdio::null())
            .output();
        if !probe.is_ok_and(|o| o.status.success()) {
            return Err(
                "cargo-deb is not installed: `cargo install cargo-deb --locked --version 3.8.0`"
                    .into(),
            );
        }
        if crate::bench::find_in_path("jq").is_none() {
            return Err("jq is not installed (packaging/build-deb needs it)".into());
        }
        let out = Command::new(workspace_root().join("packaging/build-deb"))
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run packaging/build-deb: {e}"))?;
        assert!(
            out.status.success(),
            "packaging/build-deb failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        assert!(
            path.extension().is_some_and(|e| e == "deb") && path.exists(),
            "packaging/build-deb printed no .deb path: {:?}",
            String::from_utf8_lossy(&out.stdout)
        );
        Ok(path)
    })
    .clone()
}
