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
//! no seat or VT to manage. [`Systemd::shutdown`] checks that nothing of the package reached
//! the host.
//!
//! Cgroups: the namespace gets a cgroup of its own below the caller's in each hierarchy it
//! sees (`aifactory-e2e-PID-N`, the root of its cgroup namespace there), removed at the end.
//! Where the host's cgroup2 has the controllers (a pure v2 host), `/sys/fs/cgroup` is a bare
//! cgroup2 mount and systemd runs unified (as it also does where no v1 hierarchy can take
//! over). Where it has no memory controller but v1 hierarchies hold memory, pids and
//! `name=systemd` (a hybrid host), `/sys/fs/cgroup` is laid out as systemd lays out a hybrid
//! host: a read-only tmpfs with the host's v1 hierarchies of the controllers systemd manages
//! (cpu, cpuacct, blkio, memory, devices, pids, each under the host's name for it, co-mounted
//! or not), `name=systemd` at `systemd/` and cgroup2 at `unified/`; systemd then runs hybrid
//! and its limits (`MemoryMax=`, `TasksMax=`) hold, which a bare cgroup2 without controllers
//! could not enforce.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Runs inside the new namespaces as `sh -c BOOT boot SCRATCH [NAME:OPTIONS...]`, one
/// `NAME:OPTIONS` per cgroup v1 hierarchy in hybrid mode (none: unified); ends by exec'ing
/// systemd.
const BOOT: &str = r#"
set -eu
scratch=$1
shift
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
if [ $# -eq 0 ]; then
    mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
else
    # Hybrid, as systemd lays it out on such a host: the v1 hierarchies (NAME:OPTIONS) in a
    # tmpfs, cgroup2 at unified/. The tmpfs ends read-only, so systemd mounts no other
    # hierarchy (one whose cgroup namespace root would be the host's root cgroup).
    mount -t tmpfs -o mode=0755,nosuid,nodev,noexec tmpfs /sys/fs/cgroup
    for hierarchy; do
        name=${hierarchy%%:*}
        mkdir "/sys/fs/cgroup/$name"
        mount -t cgroup -o "nosuid,nodev,noexec,${hierarchy#*:}" cgroup "/sys/fs/cgroup/$name"
        case $name in *,*)
            IFS=,
            for controller in $name; do ln -s "$name" "/sys/fs/cgroup/$controller"; done
            unset IFS
        esac
    done
    mkdir /sys/fs/cgroup/unified
    mount -t cgroup2 -o nosuid,nodev,noexec,nsdelegate cgroup2 /sys/fs/cgroup/unified
    mount -o remount,ro /sys/fs/cgroup
fi

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
    if let Err(e) = cgroup_layout() {
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

/// The v1 controllers systemd 252 manages in hybrid mode; with its own `name=systemd`
/// hierarchy, the v1 hierarchies a hybrid namespace gets.
const V1_CONTROLLERS: [&str; 6] = ["cpu", "cpuacct", "blkio", "memory", "devices", "pids"];

/// How the namespace's systemd gets its cgroups.
struct CgroupLayout {
    /// This process's cgroup on the host's cgroup2 mount.
    v2: PathBuf,
    /// Empty on a host whose cgroup2 has the controllers: systemd runs unified. Else the v1
    /// hierarchies, and systemd runs hybrid, as on the host.
    v1: Vec<V1Hierarchy>,
}

/// A cgroup v1 hierarchy of the host, mounted again in a hybrid namespace.
struct V1Hierarchy {
    /// Its directory in /sys/fs/cgroup, the host's name for it: `memory`, `cpu,cpuacct`.
    name: String,
    /// Its mount options: `memory`, `cpu,cpuacct`, `none,name=systemd`.
    options: String,
    /// This process's cgroup in it, on the host.
    own: PathBuf,
}

/// The cgroups this process is in and the host's mounts of them; fails if there is no cgroup2.
fn cgroup_layout() -> Result<CgroupLayout, String> {
    let read =
        |path: &str| std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"));
    let (mountinfo, own) = (read("/proc/self/mountinfo")?, read("/proc/self/cgroup")?);
    // Mount point, file system type and super options of each mount.
    let mounts: Vec<(&str, &str, &str)> = mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mut right = right.split_whitespace();
            let fstype = right.next()?;
            let options = right.nth(1)?;
            Some((left.split_whitespace().nth(4)?, fstype, options))
        })
        .collect();
    let v2_mount = mounts
        .iter()
        .find(|(_, fstype, _)| *fstype == "cgroup2")
        .map(|(point, _, _)| PathBuf::from(point))
        .ok_or("no cgroup2 file system is mounted: systemd needs the unified cgroup hierarchy")?;
    let own_path = |hierarchy: &str| {
        own.lines().find_map(|l| {
            let (_, rest) = l.split_once(':')?;
            let (controllers, path) = rest.split_once(':')?;
            (controllers == hierarchy).then(|| path.trim_start_matches('/').to_string())
        })
    };
    let v2 = v2_mount
        .join(own_path("").ok_or("this process has no cgroup v2 path in /proc/self/cgroup")?);
    let v2_controllers = std::fs::read_to_string(v2_mount.join("cgroup.controllers"))
        .map_err(|e| format!("cannot read {}/cgroup.controllers: {e}", v2_mount.display()))?;
    if v2_controllers.split_whitespace().any(|c| c == "memory") {
        return Ok(CgroupLayout { v2, v1: vec![] });
    }
    // The kernel's controller names, to tell them from the other mount options (rw, xattr).
    let kernel: Vec<String> = read("/proc/cgroups")?
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    let mut v1: Vec<V1Hierarchy> = vec![];
    for (point, fstype, options) in mounts {
        if fstype != "cgroup" {
            continue;
        }
        let controllers: Vec<&str> = options
            .split(',')
            .filter(|o| o.starts_with("name=") || kernel.iter().any(|k| k == o))
            .collect();
        let wanted = controllers
            .iter()
            .any(|c| *c == "name=systemd" || V1_CONTROLLERS.contains(c));
        // /proc/self/cgroup names a hierarchy by its controllers, in the kernel's order, which
        // the mount options share.
        let hierarchy = controllers.join(",");
        let (Some(name), Some(path)) = (Path::new(point).file_name(), own_path(&hierarchy)) else {
            continue;
        };
        let seen = v1
            .iter()
            .any(|h| h.options.trim_start_matches("none,") == hierarchy);
        if !wanted || seen {
            continue;
        }
        v1.push(V1Hierarchy {
            name: name.to_string_lossy().into_owned(),
            options: if controllers.iter().all(|c| c.starts_with("name=")) {
                format!("none,{hierarchy}")
            } else {
                hierarchy
            },
            own: Path::new(point).join(path),
        });
    }
    let has = |options: &str| {
        v1.iter()
            .any(|h| h.options.split(',').any(|o| o == options))
    };
    if !(has("memory") && has("pids") && has("name=systemd")) {
        // Neither layout limits anything; unified is what the harness always did.
        v1.clear();
    }
    Ok(CgroupLayout { v2, v1 })
}

/// One booted systemd; killed with everything in it when dropped.
pub struct Systemd {
    unshare: Child,
    /// systemd's pid on the host.
    pub pid: i32,
    /// Whether systemd runs with v1 controllers (hybrid) rather than unified.
    pub hybrid: bool,
    /// The namespace's cgroup in each hierarchy, on the host.
    cgroups: Vec<PathBuf>,
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
        // Everything that may fail the test comes before the cgroups, which are ours to remove.
        let console = std::fs::File::create(dir.path().join("console.log")).expect("console log");
        let console_out = console.try_clone().expect("dup console");
        let host_marks = host_marks();
        let layout = cgroup_layout().unwrap_or_else(|e| panic!("{e}"));
        // The namespace's cgroup in each hierarchy it sees: a cgroup namespace's root is, in
        // each hierarchy, the cgroup of the process that made it.
        let name = format!("aifactory-e2e-{}-{n}", std::process::id());
        let mut cgroups = vec![];
        for parent in std::iter::once(&layout.v2).chain(layout.v1.iter().map(|h| &h.own)) {
            let cgroup = parent.join(&name);
            if let Err(e) = std::fs::create_dir(&cgroup) {
                cgroups.iter().for_each(|c: &PathBuf| remove_cgroup(c));
                panic!("cannot create the cgroup {}: {e}", cgroup.display());
            }
            cgroups.push(cgroup);
        }
        let v1: Vec<String> = layout
            .v1
            .iter()
            .map(|h| format!("{}:{}", h.name, h.options))
            .collect();
        // The wrapper moves itself into the new cgroups, then becomes unshare, whose child
        // (systemd) starts a cgroup namespace rooted there.
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(
                r#"boot=$1 scratch=$2 v1=$3
shift 3
for cgroup; do echo $$ > "$cgroup/cgroup.procs" || exit 1; done
exec unshare --pid --fork --mount --propagation private --mount-proc --uts --ipc --net --cgroup /bin/sh -c "$boot" boot "$scratch" $v1"#,
            )
            .arg("wrapper")
            .arg(BOOT)
            .arg(&scratch)
            .arg(v1.join(" "))
            .args(&cgroups)
            .env_clear()
            .env("PATH", PATH)
            .stdin(Stdio::null())
            .stdout(console_out)
            .stderr(console)
            .process_group(0);
        let unshare = cmd.spawn().unwrap_or_else(|e| {
            cgroups.iter().for_each(|c| remove_cgroup(c));
            panic!("cannot run sh and unshare: {e}")
        });
        let mut systemd = Systemd {
            pid: 0,
            unshare,
            hybrid: !layout.v1.is_empty(),
            cgroups,
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

    /// Stops systemd (`systemctl exit`), removes the namespace's cgroups, and checks that the
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
        for cgroup in &self.cgroups {
            remove_cgroup(cgroup);
        }
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
