//! Remote hosts for the `--host ssh://…` tests: each one a network namespace and a mount
//! namespace of this test, with a running `sshd` (Debian's openssh-server) and its own real
//! `aifactoryd`, reached over a veth link from the test's own network namespace.
//!
//! [`Hosts::start`] makes, per host, a holder process (`unshare --net --mount --propagation
//! private`) that mounts a tmpfs on `/run` (sshd's `/run/sshd` lives there), binds a copy of
//! `/etc/passwd` in which `nobody` has a shell (for the "user outside the group" test), brings
//! up loopback, and then waits on its stdin. A veth pair links it to the test's namespace with a
//! private /30 of `10.77.X.0/24` (X chosen free of any address this machine has, so parallel
//! runs do not meet); sshd and the daemon are started in the holder's namespaces with
//! `nsenter`. The remote `aifactoryctl` is on the host's PATH through sshd's `SetEnv`
//! (`PATH=<host bin dir>:…`, `AIFACTORY_SOCKET=<that host's daemon socket>`).
//!
//! Keys are made per run with ssh-keygen: one host key per host, written to a test
//! `known_hosts` (so `StrictHostKeyChecking yes` holds), and one client key in each host's
//! `authorized_keys`. [`Hosts::ctl`] runs the real `aifactoryctl` with
//! `AIFACTORY_SSH_CONFIG` pointing at the test's ssh_config and a private `XDG_RUNTIME_DIR`
//! holding the ssh control sockets. [`Hosts::shim`] starts the real `aifactory-http` over
//! some of the hosts (a config with `[[hosts]]`), in that same client environment.
//! [`Host::stop_sshd`] makes a host vanish (every sshd process of its namespace killed, so
//! masters drop too) and [`Host::start_sshd`] brings it back on the same address and keys.
//!
//! Teardown, also on a panic or when the test process dies: closing a holder's stdin makes it
//! SIGKILL every process in its network namespace (sshd and its sessions, the daemon, its
//! sessions' programs) and exit, which removes the namespaces and the veth pair; the ssh
//! masters of this run (found by their control path) are killed first.
//!
//! One file past 600 lines on purpose: the hosts, the client side that reaches them and the
//! shim over them share one temporary tree and its keys, config and control sockets.

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::http::host_entry;
use crate::sandbox::{CTL_TIMEOUT, CtlOutput};
use crate::wait::wait_until;
use crate::{Daemon, Http, Sandbox, bin, is_root, output_within, shared_bin};

const SSHD: &str = "/usr/sbin/sshd";

/// Runs in the new namespaces as `sh -c HOLDER holder PASSWD`: sets up the host, says `ready`,
/// waits for its stdin to close, then ends every process of its network namespace.
const HOLDER: &str = r#"
set -eu
mount -t tmpfs -o mode=0755 aifactory-host /run
mkdir -m 0755 /run/sshd
mount --bind "$1" /etc/passwd
ip link set lo up
echo ready
read -r _ || true
me=$(readlink /proc/$$/ns/net)
for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    [ "$pid" = "$$" ] && continue
    [ "$(readlink "$p/ns/net" 2>/dev/null)" = "$me" ] && kill -9 "$pid" 2>/dev/null
done
exit 0
"#;

/// Why these tests cannot run here, if they cannot.
pub fn unavailable() -> Option<String> {
    if !is_root() {
        return Some("needs root (network and mount namespaces, veth links, sshd)".into());
    }
    if !Path::new(SSHD).exists() {
        return Some(format!(
            "{SSHD} is missing: install Debian's openssh-server (`apt-get install openssh-server`)"
        ));
    }
    for tool in ["ssh", "ssh-keygen", "ip", "unshare", "nsenter"] {
        if Command::new(tool).arg("-V").output().is_err()
            && Command::new(tool).arg("--version").output().is_err()
        {
            return Some(format!(
                "`{tool}` is missing (openssh-client, iproute2, util-linux)"
            ));
        }
    }
    let probe = Command::new("unshare")
        .args(["--net", "--mount", "true"])
        .output();
    match probe {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!(
            "`unshare --net --mount` fails here: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Some(format!("cannot run unshare: {e}")),
    }
}

/// One remote host.
pub struct Host {
    pub name: String,
    pub addr: Ipv4Addr,
    dir: PathBuf,
    holder: Option<(Child, ChildStdin)>,
    sshd: Option<Child>,
    daemon: Option<Daemon>,
    // Declared last: dropped after the daemon, whose sessions it ends.
    pub sandbox: Sandbox,
}

impl Host {
    /// `ssh://root@ADDR`.
    pub fn url(&self) -> String {
        self.url_as("root")
    }

    pub fn url_as(&self, user: &str) -> String {
        format!("ssh://{user}@{}", self.addr)
    }

    pub fn daemon(&self) -> &Daemon {
        self.daemon.as_ref().expect("the host's daemon")
    }

    /// Stops this host's daemon (for tests that put something else on its socket).
    pub fn stop_daemon(&mut self) {
        self.daemon = None;
        let _ = fs::remove_file(self.sandbox.socket());
    }

    /// What sshd logged (`-e`: to its stderr, kept in a file).
    pub fn sshd_log(&self) -> String {
        fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }

    /// How many sessions sshd accepted (its `Accepted publickey` lines).
    pub fn accepted_logins(&self) -> usize {
        self.sshd_log()
            .lines()
            .filter(|l| l.contains("Accepted publickey"))
            .count()
    }

    /// The directory on the remote PATH that holds `aifactoryctl`.
    pub fn bin_dir(&self) -> PathBuf {
        self.dir.join("bin")
    }

    /// Takes `aifactoryctl` off the remote PATH (as a host without the package).
    pub fn uninstall_ctl(&self) {
        fs::remove_file(self.bin_dir().join("aifactoryctl"))
            .expect("remove the remote aifactoryctl");
    }

    /// Runs `script` with `sh -c` inside this host's namespaces.
    pub fn sh(&self, script: &str) -> std::process::Output {
        let pid = self.holder_pid();
        Command::new("nsenter")
            .arg(format!("--net=/proc/{pid}/ns/net"))
            .arg(format!("--mount=/proc/{pid}/ns/mnt"))
            .args(["--", "sh", "-c", script])
            .output()
            .expect("run nsenter")
    }

    /// Starts sshd in this host's namespaces (its log appended to `sshd.log`) and waits until
    /// it listens.
    fn spawn_sshd(&mut self) -> Result<(), String> {
        let listening = format!("Server listening on {} port 22", self.addr);
        let before = self.sshd_log().matches(&listening).count();
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("sshd.log"))
            .expect("sshd log");
        let nsenter = self.nsenter();
        let mut cmd = Command::new(&nsenter[0]);
        cmd.args(&nsenter[1..])
            .args([SSHD, "-D", "-e", "-f"])
            .arg(self.dir.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log);
        // nsenter execs sshd (no pid namespace to fork into): this child is the listener.
        self.sshd = Some(cmd.spawn().map_err(|e| format!("cannot start sshd: {e}"))?);
        wait_until(
            &format!("{}'s sshd listens", self.name),
            Duration::from_secs(30),
            || self.sshd_log().matches(&listening).count() > before,
        );
        Ok(())
    }

    /// Stops sshd on this host entirely, as a host that vanished: the listener and every
    /// per-connection sshd (so an ssh master's connection really drops, not just new logins
    /// fail). Every sshd process in the host's network namespace is SIGKILLed; the programs
    /// of the ssh sessions (`aifactoryctl dial-stdio`) are left to see their end of file.
    pub fn stop_sshd(&mut self) {
        for pid in self.sshd_pids() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if let Some(mut sshd) = self.sshd.take() {
            let _ = sshd.kill();
            let _ = sshd.wait();
        }
        wait_until(
            &format!("every sshd of {} gone", self.name),
            Duration::from_secs(30),
            || self.sshd_pids().is_empty(),
        );
    }

    /// Starts sshd again after [`Host::stop_sshd`]: the same address, keys and config.
    pub fn start_sshd(&mut self) {
        assert!(self.sshd.is_none(), "{}'s sshd runs already", self.name);
        self.spawn_sshd()
            .unwrap_or_else(|e| panic!("restart {}'s sshd: {e}", self.name));
    }

    /// The live sshd processes (listener and per-connection ones) in this host's network
    /// namespace. A zombie has no namespace links, so it is not counted.
    pub fn sshd_pids(&self) -> Vec<i32> {
        let netns = |pid: &str| fs::read_link(format!("/proc/{pid}/ns/net")).ok();
        let Some(mine) = netns(&self.holder_pid().to_string()) else {
            return Vec::new();
        };
        crate::process::pids()
            .into_iter()
            .filter(|pid| {
                let pid = pid.to_string();
                fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|comm| comm.trim_end().starts_with("sshd"))
                    && netns(&pid).as_ref() == Some(&mine)
            })
            .map(|pid| pid as i32)
            .collect()
    }

    fn holder_pid(&self) -> u32 {
        self.holder.as_ref().expect("the host's holder").0.id()
    }

    fn nsenter(&self) -> Vec<String> {
        let pid = self.holder_pid();
        vec![
            "nsenter".into(),
            format!("--net=/proc/{pid}/ns/net"),
            format!("--mount=/proc/{pid}/ns/mnt"),
            "--".into(),
        ]
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // The daemon stops by itself first (its Drop), then the holder ends everything left.
        self.daemon = None;
        if let Some(mut sshd) = self.sshd.take() {
            let _ = sshd.kill();
            let _ = sshd.wait();
        }
        if let Some((mut holder, stdin)) = self.holder.take() {
            drop(stdin);
            let _ = holder.wait();
        }
    }
}

/// The test's hosts and the client side: keys, known_hosts, ssh_config, control sockets.
pub struct Hosts {
    pub hosts: Vec<Host>,
    dir: tempfile::TempDir,
}

static NEXT: AtomicU32 = AtomicU32::new(0);
/// Numbers this process's shims, for their config and log file names.
static SHIMS: AtomicU32 = AtomicU32::new(0);

impl Hosts {
    /// [`Hosts::start`] for test `test`; `None` once it has said why it skipped (a failure
    /// under `AIFACTORY_REQUIRE_ALL=1`).
    pub fn start_or_skip(test: &str, n: usize, config: &str) -> Option<Hosts> {
        match Hosts::start(n, config) {
            Ok(hosts) => Some(hosts),
            Err(why) => {
                crate::skip(test, &why);
                None
            }
        }
    }

    /// Starts `n` hosts, each with a daemon whose config is `config` (see
    /// [`Sandbox::write_config`]). `Err` says why these tests cannot run here.
    pub fn start(n: usize, config: &str) -> Result<Hosts, String> {
        if let Some(why) = unavailable() {
            return Err(why);
        }
        let dir = tempfile::Builder::new()
            .prefix("aifactory-hosts-")
            .tempdir()
            .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
        // nobody (the "outside the group" user) must reach its PATH through it.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        let root = dir.path();
        keygen(&root.join("id_ed25519"));
        let client_pub = fs::read_to_string(root.join("id_ed25519.pub")).expect("client key");
        fs::create_dir(root.join("home")).expect("home");
        fs::create_dir(root.join("config")).expect("config");
        fs::create_dir(root.join("xdg")).expect("xdg");
        fs::set_permissions(root.join("xdg"), fs::Permissions::from_mode(0o700)).expect("chmod");
        // nobody gets a shell inside the hosts only.
        let passwd = fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
        let passwd: String = passwd
            .lines()
            .map(|l| {
                if l.starts_with("nobody:") {
                    let mut fields: Vec<&str> = l.split(':').collect();
                    if let Some(shell) = fields.last_mut() {
                        *shell = "/bin/sh";
                    }
                    fields.join(":") + "\n"
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        fs::write(root.join("passwd"), passwd).expect("write passwd");
        fs::set_permissions(root.join("passwd"), fs::Permissions::from_mode(0o644)).expect("chmod");

        let subnet = free_subnet()?;
        let mut hosts = Hosts {
            hosts: Vec::new(),
            dir,
        };
        let mut known = String::new();
        for i in 0..n {
            let host = hosts.start_host(i, subnet, config, &client_pub)?;
            let key = fs::read_to_string(host.dir.join("hostkey.pub")).expect("host key");
            known.push_str(&format!("{} {}", host.addr, key));
            hosts.hosts.push(host);
        }
        let root = hosts.dir.path();
        fs::write(root.join("known_hosts"), known).expect("write known_hosts");
        hosts.write_ssh_config("ssh_config", &root.join("id_ed25519"));
        Ok(hosts)
    }

    fn start_host(
        &self,
        i: usize,
        subnet: u8,
        config: &str,
        client_pub: &str,
    ) -> Result<Host, String> {
        let root = self.dir.path();
        let name = format!("host{i}");
        let dir = root.join(&name);
        fs::create_dir_all(dir.join("bin")).expect("host dir");
        for d in [&dir, &dir.join("bin")] {
            fs::set_permissions(d, fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        std::os::unix::fs::symlink(shared_bin("aifactoryctl"), dir.join("bin/aifactoryctl"))
            .expect("link the remote aifactoryctl");
        let mut holder = Command::new("unshare")
            .args([
                "--net",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                HOLDER,
                "holder",
            ])
            .arg(root.join("passwd"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot run unshare: {e}"))?;
        let stdin = holder.stdin.take().expect("holder stdin");
        let mut line = String::new();
        let ready = holder
            .stdout
            .take()
            .map(|out| BufReader::new(out).read_line(&mut line).is_ok() && line.trim() == "ready")
            .unwrap_or(false);
        let octet = (i as u8) * 4;
        let mut host = Host {
            name,
            addr: Ipv4Addr::new(10, 77, subnet, octet + 2),
            dir: dir.clone(),
            holder: Some((holder, stdin)),
            sshd: None,
            daemon: None,
            sandbox: Sandbox::new(),
        };
        assert!(ready, "host{i}'s namespaces did not come up (see stderr)");
        let pid = host.holder_pid();
        // Interface names are at most 15 bytes; the subnet tells this run's hosts apart.
        let link = format!("aif{}s{subnet}h{i}", std::process::id() % 10_000);
        let near = Ipv4Addr::new(10, 77, subnet, octet + 1);
        run(&[
            "ip",
            "link",
            "add",
            &link,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &pid.to_string(),
        ]);
        run(&["ip", "addr", "add", &format!("{near}/30"), "dev", &link]);
        run(&["ip", "link", "set", &link, "up"]);
        let inside = host.sh(&format!(
            "ip addr add {}/30 dev eth0 && ip link set eth0 up",
            host.addr
        ));
        assert!(
            inside.status.success(),
            "configure eth0 in {}: {inside:?}",
            host.name
        );

        // The daemon, in the host's namespaces.
        host.sandbox.write_config(config);
        host.sandbox.open_to_others();
        let nsenter = host.nsenter();
        let argv: Vec<&str> = nsenter.iter().map(String::as_str).collect();
        host.daemon = Some(host.sandbox.daemon().wrapper(&argv).start());

        // sshd.
        keygen(&dir.join("hostkey"));
        fs::write(dir.join("authorized_keys"), client_pub).expect("authorized_keys");
        fs::write(
            dir.join("sshd_config"),
            format!(
                "ListenAddress {addr}\nPort 22\nHostKey {dir}/hostkey\nAuthorizedKeysFile {dir}/authorized_keys\n\
                 StrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\nPidFile none\nMaxStartups 100\nMaxSessions 200\n\
                 SetEnv PATH={dir}/bin:/usr/bin:/bin AIFACTORY_SOCKET={socket}\n",
                addr = host.addr,
                dir = dir.display(),
                socket = host.sandbox.socket().display(),
            ),
        )
        .expect("sshd_config");
        host.spawn_sshd()?;
        Ok(host)
    }

    /// Writes an ssh_config for this run using `key`, and returns its path.
    pub fn write_ssh_config(&self, name: &str, key: &Path) -> PathBuf {
        let root = self.dir.path();
        let path = root.join(name);
        fs::write(
            &path,
            format!(
                "Host *\n  IdentityFile {key}\n  IdentitiesOnly yes\n  UserKnownHostsFile {known}\n  \
                 GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n  ConnectTimeout 20\n",
                key = key.display(),
                known = root.join("known_hosts").display(),
            ),
        )
        .expect("write ssh_config");
        path
    }

    /// A fresh key no host knows.
    pub fn stranger_key(&self) -> PathBuf {
        let key = self.dir.path().join("stranger_ed25519");
        if !key.exists() {
            keygen(&key);
        }
        key
    }

    pub fn ssh_config(&self) -> PathBuf {
        self.dir.path().join("ssh_config")
    }

    /// The private runtime directory of the client (its ssh control sockets are below).
    pub fn runtime_dir(&self) -> PathBuf {
        self.dir.path().join("xdg")
    }

    pub fn control_dir(&self) -> PathBuf {
        self.runtime_dir().join("aifactory/ssh")
    }

    /// Where `hosts add` keeps its file.
    pub fn config_home(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    /// The client's `aifactoryctl` command, with this run's ssh_config and private dirs.
    pub fn ctl_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin("aifactoryctl"));
        self.apply_env(&mut cmd);
        cmd.args(args).stdin(Stdio::null());
        cmd
    }

    /// The client environment: nothing of the caller's but PATH.
    pub fn apply_env(&self, cmd: &mut Command) {
        let root = self.dir.path();
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", root.join("home"))
            .env("XDG_RUNTIME_DIR", self.runtime_dir())
            .env("XDG_CONFIG_HOME", self.config_home())
            .env("AIFACTORY_SSH_CONFIG", self.ssh_config())
            .current_dir(root);
    }

    pub fn ctl(&self, args: &[&str]) -> CtlOutput {
        self.ctl_with(args, |_| {})
    }

    pub fn ctl_with(&self, args: &[&str], adjust: impl FnOnce(&mut Command)) -> CtlOutput {
        let mut cmd = self.ctl_command(args);
        adjust(&mut cmd);
        output_within(cmd, CTL_TIMEOUT)
            .unwrap_or_else(|partial| {
                panic!("aifactoryctl {args:?} did not finish within {CTL_TIMEOUT:?}: {partial:?}")
            })
            .into()
    }

    /// `aifactoryctl --host URL ARGS...`.
    pub fn ctl_on(&self, host: &Host, args: &[&str]) -> CtlOutput {
        let url = host.url();
        let mut all = vec!["--host", url.as_str()];
        all.extend_from_slice(args);
        self.ctl(&all)
    }

    /// `ssh -O check` against this run's master for `host`: whether one runs.
    pub fn master_running(&self, host: &Host, user: &str) -> bool {
        Command::new("ssh")
            .arg("-F")
            .arg(self.ssh_config())
            .arg("-o")
            .arg(format!("ControlPath={}/%C", self.control_dir().display()))
            .args(["-O", "check"])
            .arg(format!("{user}@{}", host.addr))
            .stdin(Stdio::null())
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// Ends this run's master for `user@host` (`ssh -O exit`), if one runs.
    pub fn end_master(&self, host: &Host, user: &str) {
        let _ = Command::new("ssh")
            .arg("-F")
            .arg(self.ssh_config())
            .arg("-o")
            .arg(format!("ControlPath={}/%C", self.control_dir().display()))
            .args(["-O", "exit"])
            .arg(format!("{user}@{}", host.addr))
            .stdin(Stdio::null())
            .output();
    }

    /// Pids of this run's ssh masters (their title names the control path).
    fn masters(&self) -> Vec<i32> {
        let needle = self.control_dir().display().to_string();
        crate::process::pids()
            .into_iter()
            .filter(|pid| {
                fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&needle))
            })
            .map(|pid| pid as i32)
            .collect()
    }
}

/// One `[[hosts]]` entry of a shim's config.
#[derive(Debug, Clone)]
pub struct ShimHost {
    pub name: String,
    /// `ssh://…` or `unix:///…`.
    pub url: String,
    pub ssh_config: Option<PathBuf>,
}

impl ShimHost {
    /// This machine's daemon on `socket`, over `unix://`.
    pub fn unix(name: &str, socket: &Path) -> ShimHost {
        ShimHost {
            name: name.into(),
            url: format!("unix://{}", socket.display()),
            ssh_config: None,
        }
    }
}

impl Hosts {
    /// Every host of this run as a shim's `[[hosts]]` entry, named as the host, over ssh with
    /// this run's ssh_config.
    pub fn shim_hosts(&self) -> Vec<ShimHost> {
        self.hosts
            .iter()
            .map(|h| ShimHost {
                name: h.name.clone(),
                url: h.url(),
                ssh_config: Some(self.ssh_config()),
            })
            .collect()
    }

    /// Starts the real `aifactory-http` serving `hosts` (its `--config` lists them), on an
    /// ephemeral loopback port, with this run's client environment (`HOME`,
    /// `XDG_RUNTIME_DIR`, whose `aifactory/ssh` holds the ssh control sockets it shares with
    /// [`Hosts::ctl`]); waits until it listens. Every shim of a run keeps its token in the
    /// same state directory, so a restarted shim takes the same token.
    pub fn shim(&self, hosts: &[ShimHost]) -> Http {
        let root = self.dir.path();
        let n = SHIMS.fetch_add(1, Ordering::Relaxed);
        let state_dir = root.join("shim-state");
        fs::create_dir_all(&state_dir).expect("the shim's state dir");
        fs::set_permissions(&state_dir, fs::Permissions::from_mode(0o700)).expect("chmod");
        let config = root.join(format!("http-{n}.toml"));
        let mut text = String::new();
        for h in hosts {
            text.push_str(&host_entry(&h.name, &h.url));
            if let Some(cfg) = &h.ssh_config {
                text.push_str(&format!("ssh_config = {:?}\n", cfg.display().to_string()));
            }
        }
        fs::write(&config, text).expect("write the shim's config");
        let log = root.join(format!("http-{n}.log"));
        let mut cmd = Command::new(bin("aifactory-http"));
        self.apply_env(&mut cmd);
        cmd.arg("--config")
            .arg(&config)
            .arg("--state-dir")
            .arg(&state_dir)
            .args(["--listen", "127.0.0.1:0", "--log", "stderr"]);
        Http::spawn(cmd, log, state_dir)
    }

    /// A shim serving every host of this run ([`Hosts::shim_hosts`]).
    pub fn shim_for_all(&self) -> Http {
        self.shim(&self.shim_hosts())
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for pid in self.masters() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        self.hosts.clear();
    }
}

fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "aifactory-test",
            "-f",
        ])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .expect("run ssh-keygen");
    assert!(out.status.success(), "ssh-keygen: {out:?}");
}

fn run(argv: &[&str]) {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .unwrap_or_else(|e| panic!("run {argv:?}: {e}"));
    assert!(out.status.success(), "{argv:?}: {out:?}");
}

/// A third octet for `10.77.X.0/24` that no address of this machine's namespace uses yet.
fn free_subnet() -> Result<u8, String> {
    let out = Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    let used = String::from_utf8_lossy(&out.stdout).into_owned();
    let start = std::process::id() + NEXT.fetch_add(1, Ordering::Relaxed) * 7;
    (0..250u32)
        .map(|k| ((start + k) % 250 + 1) as u8)
        .find(|x| !used.contains(&format!("10.77.{x}.")))
        .ok_or_else(|| "every 10.77.X.0/24 is in use on this machine".into())
}
