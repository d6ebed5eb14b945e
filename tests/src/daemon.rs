//! [`Daemon`]: a real `aifactoryd` started in a [`Sandbox`], with its log, its
//! `NOTIFY_SOCKET` and a client connection; killed when dropped.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use aifactory_common::{Client, ClientOptions};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::bins::{HOOKED_DAEMON, bin, shared_bin};
use crate::notify::NotifyListener;
use crate::sandbox::Sandbox;

/// How long a daemon may take to say READY=1 on a loaded machine.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

impl Sandbox {
    /// A daemon for this sandbox, to configure and start.
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
            hooked: false,
        }
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
    hooked: bool,
}

impl DaemonBuilder<'_> {
    /// Runs this daemon binary instead of the workspace's (e.g. a copy in a directory of its
    /// own).
    pub fn program(mut self, path: &Path) -> Self {
        self.program = Some(path.to_path_buf());
        self
    }

    /// Runs the test suite's [`HOOKED_DAEMON`] instead of the shipped `aifactoryd`, for a test
    /// that needs a hook (a migration limit or pause, forced progress polling, the SIGUSR2
    /// wedge); its switches are environment variables ([`DaemonBuilder::env`]).
    pub fn hooked(mut self) -> Self {
        self.hooked = true;
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
        let name = if self.hooked {
            HOOKED_DAEMON
        } else {
            "aifactoryd"
        };
        match (&self.program, self.user) {
            (Some(program), _) => program.clone(),
            (None, Some(_)) => shared_bin(name),
            (None, None) => bin(name),
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
