//! [`Http`]: the real HTTP shim (`aifactory-http`) in front of a sandbox's daemon, on an
//! ephemeral loopback port; killed when dropped.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::bins::{bin, shared_bin};
use crate::daemon::READY_TIMEOUT;
use crate::sandbox::Sandbox;

impl Sandbox {
    /// The HTTP shim (`aifactory-http`) for this sandbox's daemon: its socket, its state
    /// directory (so its token file), an ephemeral loopback port.
    pub fn http(&self) -> HttpBuilder<'_> {
        HttpBuilder {
            sandbox: self,
            args: Vec::new(),
            log_name: "http",
            user: None,
            hosts: None,
        }
    }
}

pub struct HttpBuilder<'a> {
    sandbox: &'a Sandbox,
    args: Vec<String>,
    log_name: &'static str,
    /// Another user to run as, and the state directory (its token file) it owns.
    user: Option<(u32, u32, PathBuf)>,
    /// `[[hosts]]` entries for its config file, instead of the sandbox's socket.
    hosts: Option<String>,
}

/// One `[[hosts]]` entry of the shim's config.
pub fn host_entry(name: &str, url: &str) -> String {
    format!("[[hosts]]\nname = {name:?}\nurl = {url:?}\n")
}

impl HttpBuilder<'_> {
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Serves these hosts (`[[hosts]]` entries, see [`host_entry`]) from a config file written
    /// into the sandbox, instead of the sandbox's own daemon.
    pub fn hosts(mut self, entries: &str) -> Self {
        self.hosts = Some(entries.into());
        self
    }

    /// Names the log file, for sandboxes that run several shims.
    pub fn log_name(mut self, name: &'static str) -> Self {
        self.log_name = name;
        self
    }

    /// Runs the shim as another user (from a copy every user can run), with `state_dir` (which
    /// that user must own) for its token file instead of the daemon's; the caller must be root,
    /// and the daemon's socket must let that user in.
    pub fn as_user(mut self, uid: u32, gid: u32, state_dir: &Path) -> Self {
        self.user = Some((uid, gid, state_dir.to_path_buf()));
        self
    }

    /// Starts the shim and waits until it listens.
    pub fn start(self) -> Http {
        let (mut cmd, state_dir) = match &self.user {
            Some((uid, gid, state_dir)) => {
                let mut cmd = Command::new(shared_bin("aifactory-http"));
                // The test's working directory may be closed to that user.
                cmd.uid(*uid).gid(*gid).current_dir(self.sandbox.path());
                (cmd, state_dir.clone())
            }
            None => (
                Command::new(bin("aifactory-http")),
                self.sandbox.state_dir(),
            ),
        };
        self.sandbox.apply_env(&mut cmd);
        match &self.hosts {
            Some(entries) => {
                let config = self
                    .sandbox
                    .path()
                    .join(format!("{}-hosts.toml", self.log_name));
                fs::write(&config, entries).expect("write the shim's config");
                cmd.arg("--config").arg(config);
            }
            None => {
                cmd.arg("--socket").arg(self.sandbox.socket());
            }
        }
        cmd.arg("--state-dir")
            .arg(&state_dir)
            .arg("--log")
            .arg("stderr");
        if !self.args.iter().any(|a| a == "--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        cmd.args(&self.args);
        let log = self.sandbox.path().join(format!("{}.log", self.log_name));
        Http::spawn(cmd, log, state_dir)
    }
}

/// A running `aifactory-http`; killed when dropped.
pub struct Http {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub token: String,
    pub log: PathBuf,
    state_dir: PathBuf,
}

impl Http {
    /// Starts `cmd` (an `aifactory-http` command line, its environment set) with its output in
    /// `log`, waits until it listens, and reads its token from `state_dir`.
    pub fn spawn(mut cmd: Command, log: PathBuf, state_dir: PathBuf) -> Http {
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
            state_dir,
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
        http.token = fs::read_to_string(http.state_dir.join("http-token"))
            .expect("read the shim's token file")
            .trim()
            .to_string();
        http
    }

    /// SIGKILL, as a crash: nothing of it is left to close its streams politely.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

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

    /// A one-time login URL for this shim, as `aifactory-http --print-url` prints it.
    pub fn login_url(&self) -> String {
        let listen = self.base.trim_start_matches("http://");
        let out = Command::new(bin("aifactory-http"))
            .args(["--print-url", "--listen", listen, "--state-dir"])
            .arg(&self.state_dir)
            .output()
            .expect("run aifactory-http --print-url");
        assert!(out.status.success(), "--print-url failed: {out:?}");
        String::from_utf8(out.stdout)
            .expect("the URL is UTF-8")
            .trim()
            .to_string()
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
