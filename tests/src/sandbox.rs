//! [`Sandbox`]: a private directory tree for one daemon (or several sharing it), the
//! environment of every process started in it, `aifactoryctl` runs against it, and the cleanup
//! (on drop, or by its guardian when the test process dies) of every session it still holds.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use aifactory_common::procfs;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::bins::{bin, shared_bin};
use crate::process::output_within;

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

    /// Runs the real `aifactoryctl` against this sandbox's socket.
    /// A git repository with one commit on `main` at `<sandbox>/<name>`, registered as
    /// project `name`.
    pub fn add_project(&self, name: &str) -> PathBuf {
        let path = crate::git::committed_repo(&self.path().join(name));
        let text = path.to_str().expect("a UTF-8 sandbox path");
        self.ctl(&["projects", "add", text, "--name", name])
            .assert_ok();
        path
    }

    /// Creates a task for `spec` in `project` (`aifactoryctl tasks create`, with `extra`
    /// arguments such as `--agent`); returns its id.
    pub fn create_task(&self, project: &str, spec: &str, extra: &[&str]) -> String {
        let mut args = vec![
            "tasks",
            "create",
            "--project",
            project,
            "--spec",
            spec,
            "--json",
        ];
        args.extend_from_slice(extra);
        let created = self.ctl(&args).assert_ok().json();
        created["id"]
            .as_str()
            .unwrap_or_else(|| panic!("tasks create answered without an id: {created}"))
            .to_string()
    }

    /// Task `id` as `aifactoryctl tasks show ID --json` prints it.
    pub fn show_task(&self, id: &str) -> serde_json::Value {
        self.ctl(&["tasks", "show", id, "--json"])
            .assert_ok()
            .json()
    }

    /// An executable shell script `<sandbox>/bin/<name>` running `body`.
    pub fn script(&self, name: &str, body: &str) -> PathBuf {
        let dir = self.path().join("bin");
        fs::create_dir_all(&dir).expect("create the sandbox's bin dir");
        let path = dir.join(name);
        fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write a script");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod a script");
        path
    }

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
                ) && procfs::is_same_process(monitor as u32, started)
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
