//! The one harness every end-to-end test and benchmark uses: it starts the real `aifactoryd`
//! in a private temporary directory (its own socket, state, runtime and config dirs, and a
//! `NOTIFY_SOCKET` owned by the test), waits for `READY=1`, and drives it through the
//! `aifactory-common` client and the real `aifactoryctl` binary.
//!
//! Tests that need more than the toolchain call [`skip`], which prints why and returns, or
//! fails the test when `AIFACTORY_REQUIRE_ALL=1`. [`systemd`] boots a real systemd in private
//! namespaces and builds the Debian package, for the systemd suite.

pub mod bench;
pub mod notify;
pub mod raw;
pub mod systemd;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use aifactory_common::{Client, ClientOptions};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

pub use notify::NotifyListener;

/// How long a daemon may take to say READY=1 on a loaded machine.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether tests that need root, tmux, chromium or systemd must run instead of skipping.
pub fn require_all() -> bool {
    std::env::var("AIFACTORY_REQUIRE_ALL").is_ok_and(|v| v == "1")
}

/// Reports a skipped test. Returns normally (the caller returns) unless
/// `AIFACTORY_REQUIRE_ALL=1`, where a skip is a failure.
pub fn skip(test: &str, reason: &str) {
    assert!(
        !require_all(),
        "{test}: cannot be skipped under AIFACTORY_REQUIRE_ALL=1: {reason}"
    );
    eprintln!("SKIPPED {test}: {reason}");
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

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
        other => vec![other],
    }
}

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

/// Gives a tree to another user (tests that run the daemon as someone else).
pub fn chown_tree(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).expect("chown");
    if fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
        for entry in fs::read_dir(path).expect("read dir") {
            chown_tree(&entry.expect("dir entry").path(), uid, gid);
        }
    }
}

/// How long one [`Sandbox::ctl`] call may take. A wedged daemon then fails the test, whose
/// sandbox cleans up as it unwinds, instead of hanging it until someone kills it.
pub const CTL_TIMEOUT: Duration = Duration::from_secs(120);

/// What a sandbox's guardian does (`$1` is the sandbox): it waits on a pipe from the test
/// process. `done` means the sandbox cleaned up itself; end of file without it means the test
/// process died without unwinding (SIGKILL, or a SIGTERM/SIGINT such as `timeout` or Ctrl-C
/// send to its whole process group), and the guardian kills what it left: the daemons first,
/// so they start nothing new, then every session's process group and monitor. Monitors are
/// built to outlive their daemon (own session, SIGTERM and SIGHUP ignored), so without this
/// they would run on forever. A monitor pid is trusted only while its start time matches.
const GUARDIAN: &str = r#"
trap '' HUP INT TERM PIPE
read -r word
[ "$word" = done ] && exit 0
cd "$1" || exit 0
started() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f20; }
for f in pids/daemon.*; do
    [ -e "$f" ] && kill -KILL "${f##*.}" 2>/dev/null
done
for meta in panes/*/meta.json run/aifactory-rmux/panes/*/meta.json; do
    [ -e "$meta" ] || continue
    json=$(cat "$meta")
    pgid=$(printf %s "$json" | sed -n 's/.*"pgid":\([0-9]*\).*/\1/p')
    mon=$(printf %s "$json" | sed -n 's/.*"monitor_pid":\([0-9]*\).*/\1/p')
    mon_start=$(printf %s "$json" | sed -n 's/.*"monitor_start_time":\([0-9]*\).*/\1/p')
    [ -n "$pgid" ] && kill -KILL -- "-$pgid" 2>/dev/null
    [ -n "$mon" ] && [ "$(started "$mon")" = "$mon_start" ] && kill -KILL "$mon" 2>/dev/null
done
exit 0
"#;

/// A private directory tree for one daemon (or several sharing it).
pub struct Sandbox {
    dir: tempfile::TempDir,
    /// Directories of this sandbox outside it (see [`Sandbox::panes_under`]).
    elsewhere: Vec<tempfile::TempDir>,
    /// The guardian process and the pipe it waits on (see [`GUARDIAN`]).
    guardian: Option<(Child, std::process::ChildStdin)>,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix("aifactory-test-")
            .tempdir()
            .expect("create a temporary directory");
        for sub in ["run", "state", "home", "config"] {
            fs::create_dir_all(dir.path().join(sub)).expect("create sandbox dirs");
        }
        fs::set_permissions(dir.path().join("run"), fs::Permissions::from_mode(0o700))
            .expect("chmod run dir");
        // Its own process group: a signal to the test's group must not end it too.
        let mut guardian = Command::new("sh")
            .arg("-c")
            .arg(GUARDIAN)
            .arg("aifactory-sandbox-guardian")
            .arg(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start the sandbox's guardian (sh)");
        // std made our end of the pipe close-on-exec: no daemon or CLI inherits it.
        let pipe = guardian.stdin.take().expect("the guardian's stdin");
        Sandbox {
            dir,
            elsewhere: Vec::new(),
            guardian: Some((guardian, pipe)),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn socket(&self) -> PathBuf {
        self.path().join("run/aifactoryd.sock")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.path().join("state")
    }

    pub fn config_file(&self) -> PathBuf {
        self.path().join("config/aifactoryd.toml")
    }

    /// Writes the daemon's config. Unless it names `panes_dir`, the panes live in the sandbox
    /// (`<sandbox>/panes`), so tests never share `/run/aifactory/panes`.
    pub fn write_config(&self, toml: &str) {
        let text = if toml.contains("panes_dir") {
            toml.to_string()
        } else {
            format!(
                "panes_dir = {:?}\n{toml}",
                self.panes_dir().display().to_string()
            )
        };
        fs::write(self.config_file(), text).expect("write config");
    }

    /// Where this sandbox's pane directories live by default.
    pub fn panes_dir(&self) -> PathBuf {
        self.path().join("panes")
    }

    /// Puts this sandbox's pane directories in a new private directory under `parent` (e.g. a
    /// tmpfs, as `/run` is in production) instead, and writes the config that says so. The
    /// directory is linked as [`Sandbox::panes_dir`], so the sandbox's cleanup finds its
    /// sessions there too, and is removed with the sandbox.
    pub fn panes_under(&mut self, parent: &Path, config: &str) -> PathBuf {
        let dir = tempfile::Builder::new()
            .prefix("aifactory-panes-")
            .tempdir_in(parent)
            .unwrap_or_else(|e| panic!("create a pane root under {}: {e}", parent.display()));
        let root = dir.path().join("panes");
        std::os::unix::fs::symlink(&root, self.panes_dir()).expect("link the pane root");
        self.write_config(&format!(
            "panes_dir = {:?}\n{config}",
            root.display().to_string()
        ));
        self.elsewhere.push(dir);
        root
    }

    /// Lets other users traverse the sandbox (for tests that connect as another uid).
    pub fn open_to_others(&self) {
        for dir in [self.path().to_path_buf(), self.path().join("run")] {
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod");
        }
    }

    /// The environment every process of this sandbox gets: nothing from the caller's
    /// environment leaks in except PATH.
    pub fn apply_env(&self, cmd: &mut Command) {
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.path().join("home"))
            .env("XDG_RUNTIME_DIR", self.path().join("run"))
            .env("XDG_STATE_HOME", self.path().join("state-home"))
            .env("XDG_CONFIG_HOME", self.path().join("config-home"));
    }

    pub fn daemon(&self) -> DaemonBuilder<'_> {
        DaemonBuilder {
            sandbox: self,
            socket: self.socket(),
            env: Vec::new(),
            args: Vec::new(),
            wrapper: Vec::new(),
            log_name: "daemon",
            user: None,
            program: None,
        }
    }

    /// Runs the real `aifactoryctl` against this sandbox's socket.
    pub fn ctl(&self, args: &[&str]) -> CtlOutput {
        self.ctl_with(args, |_| {})
    }

    /// Runs `aifactoryctl` with a chance to adjust the command (uid, env). Fails the test if
    /// it takes longer than [`CTL_TIMEOUT`].
    pub fn ctl_with(&self, args: &[&str], adjust: impl FnOnce(&mut Command)) -> CtlOutput {
        let mut cmd = self.ctl_command(args);
        adjust(&mut cmd);
        output_within(cmd, CTL_TIMEOUT)
            .unwrap_or_else(|partial| {
                panic!("aifactoryctl {args:?} did not finish within {CTL_TIMEOUT:?}: {partial:?}")
            })
            .into()
    }

    /// The `aifactoryctl` command run as another user (from a copy every user can run).
    pub fn ctl_command_as(&self, uid: u32, gid: u32, args: &[&str]) -> Command {
        let mut cmd = Command::new(shared_bin("aifactoryctl"));
        self.apply_env(&mut cmd);
        cmd.arg("--socket").arg(self.socket()).args(args);
        // Relative paths (and sessions' default working directory) stay in the sandbox.
        cmd.current_dir(self.path());
        cmd.stdin(Stdio::null()).uid(uid).gid(gid);
        cmd
    }

    /// The `aifactoryctl` command [`Sandbox::ctl`] runs, for callers that spawn it themselves
    /// (e.g. to know its pid).
    pub fn ctl_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin("aifactoryctl"));
        self.apply_env(&mut cmd);
        cmd.arg("--socket").arg(self.socket()).args(args);
        // Relative paths (and sessions' default working directory) stay in the sandbox.
        cmd.current_dir(self.path());
        cmd.stdin(Stdio::null());
        cmd
    }
}

/// Sessions outlive their daemon by design, so a sandbox ends every session it still holds:
/// no test leaves programs running, whatever it asserted. (A test process that dies without
/// unwinding leaves that to the guardian.)
impl Drop for Sandbox {
    fn drop(&mut self) {
        for root in [
            self.panes_dir(),
            self.path().join("run/aifactory-rmux/panes"),
        ] {
            let Ok(entries) = fs::read_dir(&root) else {
                continue;
            };
            for entry in entries.flatten() {
                let Ok(text) = fs::read_to_string(entry.path().join("meta.json")) else {
                    continue;
                };
                let Ok(meta) = serde_json::from_str::<serde_json::Value>(&text) else {
                    continue;
                };
                // A group id is not reused while any member lives.
                if let Some(pgid) = meta["pgid"].as_i64() {
                    let _ = kill(Pid::from_raw(-(pgid as i32)), Signal::SIGKILL);
                }
                // A monitor that ended long ago may have had its pid reused.
                if let (Some(monitor), Some(started)) = (
                    meta["monitor_pid"].as_u64(),
                    meta["monitor_start_time"].as_u64(),
                ) && process_start_time(monitor as u32) == Some(started)
                {
                    let _ = kill(Pid::from_raw(monitor as i32), Signal::SIGKILL);
                }
            }
        }
        if let Some((mut guardian, mut pipe)) = self.guardian.take() {
            use std::io::Write;
            let _ = pipe.write_all(b"done\n");
            drop(pipe);
            let _ = guardian.wait();
        }
    }
}

/// Start time of a process in clock ticks since boot (`/proc/<pid>/stat` field 22).
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Runs `cmd` to completion, capturing its output, or kills it after `timeout` and returns
/// what it printed until then as the error.
pub fn output_within(mut cmd: Command, timeout: Duration) -> Result<Output, Output> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().expect("spawn a command");
    let pid = Pid::from_raw(child.id() as i32);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(output) => Ok(output.expect("wait for a command")),
        Err(_) => {
            // The waiter has not returned, so the command is running or at most just reaped.
            let _ = kill(pid, Signal::SIGKILL);
            Err(rx
                .recv()
                .expect("the waiter thread")
                .expect("wait for a killed command"))
        }
    }
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

/// What `aifactoryctl` did.
#[derive(Debug)]
pub struct CtlOutput {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for CtlOutput {
    fn from(o: Output) -> Self {
        CtlOutput {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl CtlOutput {
    /// Parses stdout as JSON, failing the test with both streams if it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    pub fn assert_ok(&self) -> &Self {
        assert_eq!(self.code, Some(0), "aifactoryctl failed: {self:?}");
        self
    }
}

pub struct DaemonBuilder<'a> {
    sandbox: &'a Sandbox,
    socket: PathBuf,
    env: Vec<(String, String)>,
    args: Vec<String>,
    wrapper: Vec<String>,
    log_name: &'static str,
    user: Option<(u32, u32)>,
    program: Option<PathBuf>,
}

impl DaemonBuilder<'_> {
    /// Runs this daemon binary instead of the workspace's (e.g. a copy in a directory of its
    /// own).
    pub fn program(mut self, path: &Path) -> Self {
        self.program = Some(path.to_path_buf());
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Runs the daemon through a wrapper that ends by exec'ing it, so the pid stays the
    /// daemon's: `argv` comes first, then the daemon's path and arguments, e.g.
    /// `["sh", "-c", "export LISTEN_PID=$$; exec \"$0\" \"$@\""]`.
    pub fn wrapper(mut self, argv: &[&str]) -> Self {
        self.wrapper = argv.iter().map(|a| a.to_string()).collect();
        self
    }

    /// Runs the daemon as another user (the caller must be root and give it the sandbox,
    /// e.g. with [`chown_tree`]).
    pub fn as_user(mut self, uid: u32, gid: u32) -> Self {
        self.user = Some((uid, gid));
        self
    }

    fn daemon_bin(&self) -> PathBuf {
        match (&self.program, self.user) {
            (Some(program), _) => program.clone(),
            (None, Some(_)) => shared_bin("aifactoryd"),
            (None, None) => bin("aifactoryd"),
        }
    }

    /// Names the log file, for sandboxes that run several daemons.
    pub fn log_name(mut self, name: &'static str) -> Self {
        self.log_name = name;
        self
    }

    /// The command that would be run, for callers that spawn it themselves (socket
    /// activation).
    pub fn command(&self) -> (Command, PathBuf) {
        let mut cmd = match self.wrapper.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(self.daemon_bin());
                cmd
            }
            None => Command::new(self.daemon_bin()),
        };
        self.sandbox.apply_env(&mut cmd);
        if !self.sandbox.config_file().exists() {
            self.sandbox.write_config("");
        }
        cmd.arg("--config")
            .arg(self.sandbox.config_file())
            .arg("--socket")
            .arg(&self.socket)
            .arg("--state-dir")
            .arg(self.sandbox.state_dir())
            .arg("--log")
            .arg("stderr")
            .args(&self.args);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if let Some((uid, gid)) = self.user {
            cmd.uid(uid).gid(gid);
        }
        let log = self.sandbox.path().join(format!("{}.log", self.log_name));
        let file = fs::File::create(&log).expect("create daemon log");
        cmd.stdin(Stdio::null())
            .stdout(file.try_clone().expect("dup log"))
            .stderr(file);
        (cmd, log)
    }

    /// Starts the daemon without waiting for it to be ready.
    pub fn spawn(self) -> Daemon {
        self.spawn_with(|_| {})
    }

    /// Starts the daemon after a last adjustment of its command (e.g. a `pre_exec` that
    /// passes a socket as fd 3), without waiting for it to be ready.
    pub fn spawn_with(self, adjust: impl FnOnce(&mut Command)) -> Daemon {
        let notify = NotifyListener::bind(
            &self
                .sandbox
                .path()
                .join(format!("{}.notify", self.log_name)),
        );
        if self.user.is_some() {
            // Sending to a datagram socket needs write permission on it.
            fs::set_permissions(notify.path(), fs::Permissions::from_mode(0o666))
                .expect("open the notify socket to the daemon's user");
        }
        let (mut cmd, log) = self.command();
        cmd.env("NOTIFY_SOCKET", notify.path());
        adjust(&mut cmd);
        let child = cmd.spawn().expect("spawn aifactoryd");
        // For the sandbox's guardian, until the daemon is reaped.
        let pids = self.sandbox.path().join("pids");
        fs::create_dir_all(&pids).expect("create the sandbox's pid directory");
        let pid_file = pids.join(format!("daemon.{}", child.id()));
        fs::write(&pid_file, "").expect("record the daemon's pid");
        Daemon {
            child,
            pid_file,
            socket: self.socket,
            log,
            notify,
            exit: None,
        }
    }

    /// Starts the daemon and waits for `READY=1`.
    pub fn start(self) -> Daemon {
        let mut daemon = self.spawn();
        daemon.wait_ready();
        daemon
    }
}

/// A running `aifactoryd`; killed (SIGKILL) when dropped if still running.
pub struct Daemon {
    child: Child,
    pid_file: PathBuf,
    pub socket: PathBuf,
    pub log: PathBuf,
    pub notify: NotifyListener,
    exit: Option<ExitStatus>,
}

impl Daemon {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for `READY=1`; fails with the daemon's log if it exits or times out first.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if self
                .notify
                .wait_for("READY=1", Duration::from_millis(50))
                .is_some()
            {
                return;
            }
            if let Some(status) = self.try_exit() {
                panic!(
                    "aifactoryd exited ({status}) before READY=1:\n{}",
                    self.logs()
                );
            }
        }
        panic!(
            "aifactoryd sent no READY=1 within {READY_TIMEOUT:?}:\n{}",
            self.logs()
        );
    }

    pub fn logs(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.logs().contains(needle) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).expect("signal aifactoryd");
    }

    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().expect("try_wait aifactoryd");
            if self.exit.is_some() {
                let _ = fs::remove_file(&self.pid_file);
            }
        }
        self.exit
    }

    /// Waits for the daemon to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub async fn client(&self) -> Client {
        Client::connect(&self.client_options())
            .await
            .unwrap_or_else(|e| panic!("connect to aifactoryd: {e}\n{}", self.logs()))
    }

    pub fn client_options(&self) -> ClientOptions {
        ClientOptions::new(&self.socket, "aifactory-tests")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.try_exit().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            let _ = fs::remove_file(&self.pid_file);
        }
    }
}

impl Sandbox {
    /// The HTTP shim (`aifactory-http`) for this sandbox's daemon: its socket, its state
    /// directory (so its token file), an ephemeral loopback port.
    pub fn http(&self) -> HttpBuilder<'_> {
        HttpBuilder {
            sandbox: self,
            args: Vec::new(),
            log_name: "http",
        }
    }
}

pub struct HttpBuilder<'a> {
    sandbox: &'a Sandbox,
    args: Vec<String>,
    log_name: &'static str,
}

impl HttpBuilder<'_> {
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Names the log file, for sandboxes that run several shims.
    pub fn log_name(mut self, name: &'static str) -> Self {
        self.log_name = name;
        self
    }

    /// Starts the shim and waits until it listens.
    pub fn start(self) -> Http {
        let mut cmd = Command::new(bin("aifactory-http"));
        self.sandbox.apply_env(&mut cmd);
        cmd.arg("--socket")
            .arg(self.sandbox.socket())
            .arg("--state-dir")
            .arg(self.sandbox.state_dir())
            .arg("--log")
            .arg("stderr");
        if !self.args.iter().any(|a| a == "--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        cmd.args(&self.args);
        let log = self.sandbox.path().join(format!("{}.log", self.log_name));
        let file = fs::File::create(&log).expect("create the shim's log");
        cmd.stdin(Stdio::null())
            .stdout(file.try_clone().expect("dup log"))
            .stderr(file);
        let child = cmd.spawn().expect("spawn aifactory-http");
        let mut http = Http {
            child,
            base: String::new(),
            token: String::new(),
            log,
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let logs = http.logs();
            if let Some(at) = logs.find("listening on http://") {
                let rest = &logs[at + "listening on ".len()..];
                let end = rest.find(|c: char| c.is_whitespace()).unwrap_or(rest.len());
                http.base = rest[..end].to_string();
                break;
            }
            if let Ok(Some(status)) = http.child.try_wait() {
                panic!("aifactory-http exited ({status}) before listening:\n{logs}");
            }
            assert!(
                Instant::now() < deadline,
                "aifactory-http did not listen within {READY_TIMEOUT:?}:\n{logs}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        http.token = fs::read_to_string(self.sandbox.state_dir().join("http-token"))
            .expect("read the shim's token file")
            .trim()
            .to_string();
        http
    }
}

/// A running `aifactory-http`; killed when dropped.
pub struct Http {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub token: String,
    pub log: PathBuf,
}

impl Http {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The same URL with the `ws` scheme.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws{}{path}", self.base.trim_start_matches("http"))
    }

    pub fn logs(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).expect("signal aifactory-http");
    }

    /// Waits for the shim to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait aifactory-http") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
