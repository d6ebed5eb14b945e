//! `aifactoryctl --host ssh://…` against real remote hosts: network namespaces with their own
//! sshd and daemon (`aifactory_tests::hosts`), reached through the system ssh and the remote
//! `aifactoryctl dial-stdio`. Every command, the errors of each layer, the multiplexed master,
//! and the named hosts of `hosts add|list|remove`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use aifactory_common::PROTOCOL_VERSION;
use aifactory_tests::git::committed_repo;
use aifactory_tests::hosts::{Host, Hosts};
use aifactory_tests::process::child_output_within;
use aifactory_tests::tmux::Tmux;
use aifactory_tests::wait::wait_for;
use aifactory_tests::{Sandbox, bin, skip};
use tokio::io::AsyncWriteExt;

const TIMEOUT: Duration = Duration::from_secs(60);

/// A daemon config whose default agent prints where it ran and ends.
const AGENT_CONFIG: &str = "default_agent = \"fake\"\n[agents.fake]\nkind = \"custom\"\n\
     command = [\"sh\", \"-c\", \"echo agent-ran-in-$(basename $(dirname $(dirname $(dirname $(dirname $PWD)))))\"]\n";

/// `status`, sessions and tasks on each of three hosts, each answering with its own daemon.
#[test]
fn every_command_works_on_each_of_three_hosts() {
    let Some(hosts) = Hosts::start_or_skip(
        "every_command_works_on_each_of_three_hosts",
        3,
        AGENT_CONFIG,
    ) else {
        return;
    };
    for host in &hosts.hosts {
        let status = hosts.ctl_on(host, &["status", "--json"]).assert_ok().json();
        assert_eq!(status["pid"], host.daemon().pid(), "{}", host.name);
        assert_eq!(status["protocol"], PROTOCOL_VERSION);
        assert_eq!(
            status["socket"],
            host.sandbox.socket().display().to_string()
        );

        // A session: new, then its output through tail.
        let cwd = host.sandbox.path().display().to_string();
        let marker = format!("hello-from-{}", host.name);
        let s = hosts
            .ctl_on(
                host,
                &[
                    "sessions",
                    "new",
                    "--json",
                    "--cwd",
                    &cwd,
                    "--",
                    "sh",
                    "-c",
                    &format!("echo {marker}"),
                ],
            )
            .assert_ok()
            .json();
        let id = s["id"].as_str().unwrap().to_string();
        wait_for("the session's output over ssh", TIMEOUT, || {
            let out = hosts.ctl_on(host, &["sessions", "tail", &id]);
            if out.code == Some(0) && out.stdout.contains(&marker) {
                Ok(())
            } else {
                Err(format!("{out:?}"))
            }
        });
        // The daemon that ran it is this host's: its output is in this host's sandbox.
        let pane_dir = Path::new(s["pane_dir"].as_str().unwrap());
        assert!(pane_dir.starts_with(host.sandbox.path()), "{pane_dir:?}");

        // A task: a project on that host, created, started, its logs followed to the end.
        let repo = committed_repo(&host.sandbox.path().join(&host.name));
        hosts
            .ctl_on(
                host,
                &["projects", "add", repo.to_str().unwrap(), "--name", "demo"],
            )
            .assert_ok();
        let t = hosts
            .ctl_on(
                host,
                &[
                    "tasks",
                    "create",
                    "--project",
                    "demo",
                    "--spec",
                    "001-remote",
                    "--json",
                ],
            )
            .assert_ok()
            .json();
        let task = t["id"].as_str().unwrap().to_string();
        hosts.ctl_on(host, &["tasks", "start", &task]).assert_ok();
        let logs = hosts.ctl_on(host, &["tasks", "logs", "-f", &task]);
        assert_eq!(logs.code, Some(0), "{logs:?}");
        assert!(
            logs.stdout.contains(&format!("agent-ran-in-{}", host.name)),
            "{logs:?}"
        );
        let list = hosts
            .ctl_on(host, &["tasks", "list", "--json"])
            .assert_ok()
            .json();
        assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    }
}

/// `sessions attach` over ssh, on a real terminal: keys reach the remote program, its output
/// the screen, and attach exits with the session's status.
#[test]
fn attach_works_over_ssh() {
    let test = "attach_works_over_ssh";
    if Command::new("tmux").arg("-V").output().is_err() {
        return skip(test, "tmux is not installed");
    }
    let Some(hosts) = Hosts::start_or_skip(test, 1, "") else {
        return;
    };
    let host = &hosts.hosts[0];
    let cwd = host.sandbox.path().display().to_string();
    let script = "echo ready; while IFS= read -r line; do case \"$line\" in quit) exit 3;; *) echo \"got:$line\";; esac; done";
    let s = hosts
        .ctl_on(
            host,
            &[
                "sessions", "new", "--json", "--cwd", &cwd, "--", "sh", "-c", script,
            ],
        )
        .assert_ok()
        .json();
    let id = s["id"].as_str().unwrap().to_string();
    let env: Vec<String> = [
        ("PATH", std::env::var("PATH").unwrap_or_default()),
        ("HOME", hosts.runtime_dir().display().to_string()),
        ("XDG_RUNTIME_DIR", hosts.runtime_dir().display().to_string()),
        (
            "AIFACTORY_SSH_CONFIG",
            hosts.ssh_config().display().to_string(),
        ),
        ("AIFACTORY_HOST", host.url()),
        ("PS1", "$ ".into()),
    ]
    .iter()
    .map(|(k, v)| format!("{k}={v}"))
    .collect();
    let mut args = vec!["-s", "t", "-x", "100", "-y", "30", "env", "-i"];
    args.extend(env.iter().map(String::as_str));
    args.push("sh");
    let tmux = Tmux::start(Path::new("tmux"), &args).unwrap_or_else(|e| panic!("{e}"));
    let screen = || tmux.ok_text(&["capture-pane", "-p", "-J", "-S", "-", "-t", "t"]);
    let type_line = |text: &str| {
        tmux.ok(&["send-keys", "-t", "t", "-l", text]);
        tmux.ok(&["send-keys", "-t", "t", "Enter"]);
    };
    let ctl = bin("aifactoryctl").display().to_string();
    type_line(&format!("{ctl} sessions attach {id}; echo \"rc=$?\""));
    // Attached: the remote session takes the pane's size.
    wait_for("attach sets the remote session's size", TIMEOUT, || {
        let s = hosts
            .ctl_on(host, &["sessions", "show", &id, "--json"])
            .assert_ok()
            .json();
        if s["cols"] == 100 && s["rows"] == 30 {
            Ok(())
        } else {
            Err(format!("{s}\n{}", screen()))
        }
    });
    type_line("over-ssh");
    let shows = |what: &str| {
        let text = screen();
        if text.contains(what) {
            Ok(())
        } else {
            Err(text)
        }
    };
    wait_for(
        "the typed line comes back from the remote program",
        TIMEOUT,
        || shows("got:over-ssh"),
    );
    type_line("quit");
    wait_for("attach exits with the session's status", TIMEOUT, || {
        shows("rc=3")
    });
}

/// A key the host does not know: ssh's own words, exit 3.
#[test]
fn a_wrong_key_is_refused_with_ssh_s_words() {
    let Some(hosts) = Hosts::start_or_skip("a_wrong_key_is_refused_with_ssh_s_words", 1, "") else {
        return;
    };
    let host = &hosts.hosts[0];
    let wrong = hosts.write_ssh_config("wrong_config", &hosts.stranger_key());
    let out = hosts.ctl_with(&["--host", &host.url(), "status"], |cmd| {
        cmd.env("AIFACTORY_SSH_CONFIG", &wrong);
    });
    assert_eq!(out.code, Some(3), "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            "root@{}: Permission denied (publickey)",
            host.addr
        )),
        "{out:?}"
    );
    assert!(out.stderr.contains("authorized_keys"), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
}

/// No sshd on that port: exit 3 naming the host.
#[test]
fn an_unreachable_host_is_named() {
    let Some(hosts) = Hosts::start_or_skip("an_unreachable_host_is_named", 1, "") else {
        return;
    };
    let host = &hosts.hosts[0];
    let url = format!("ssh://root@{}:2222", host.addr);
    let out = hosts.ctl(&["--host", &url, "status"]);
    assert_eq!(out.code, Some(3), "{out:?}");
    assert!(
        out.stderr
            .contains(&format!("host {} is unreachable over ssh", host.addr)),
        "{out:?}"
    );
    assert!(out.stderr.contains("Connection refused"), "{out:?}");
}

/// A host without the package: the fix names it.
#[test]
fn aifactoryctl_missing_on_the_remote_says_install_the_package() {
    let Some(hosts) = Hosts::start_or_skip(
        "aifactoryctl_missing_on_the_remote_says_install_the_package",
        1,
        "",
    ) else {
        return;
    };
    let host = &hosts.hosts[0];
    host.uninstall_ctl();
    let out = hosts.ctl_on(host, &["status"]);
    assert_eq!(out.code, Some(3), "{out:?}");
    assert!(
        out.stderr
            .contains(&format!("install the aifactory package on {}", host.addr)),
        "{out:?}"
    );
}

/// The remote user may log in but not use the daemon's socket: exit 5, naming the group to
/// join there (the remote `dial-stdio` reports it; ssh carries its status back).
#[test]
fn a_remote_user_outside_the_daemon_s_group_gets_exit_5_naming_it() {
    let Some(hosts) = Hosts::start_or_skip(
        "a_remote_user_outside_the_daemon_s_group_gets_exit_5_naming_it",
        1,
        "",
    ) else {
        return;
    };
    let host = &hosts.hosts[0];
    let group = {
        use std::os::unix::fs::MetadataExt;
        let gid = std::fs::metadata(host.sandbox.socket()).unwrap().gid();
        nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid))
            .unwrap()
            .unwrap()
            .name
    };
    let out = hosts.ctl(&["--host", &host.url_as("nobody"), "status"]);
    assert_eq!(out.code, Some(5), "{out:?}");
    assert!(
        out.stderr.contains(&format!("on {}:", host.addr)),
        "{out:?}"
    );
    assert!(
        out.stderr
            .contains(&format!("sudo usermod -aG {group} $USER")),
        "{out:?}"
    );
}

/// A remote daemon one protocol behind: the message says to upgrade the package there.
/// The real daemon speaks only its own version, so a tiny fake daemon answers the handshake on
/// the host's socket (as tests/tests/protocol.rs does locally).
#[tokio::test(flavor = "multi_thread")]
async fn an_old_remote_protocol_says_who_upgrades() {
    let Some(mut hosts) = Hosts::start_or_skip("an_old_remote_protocol_says_who_upgrades", 1, "")
    else {
        return;
    };
    let host: &mut Host = &mut hosts.hosts[0];
    host.stop_daemon();
    let older = PROTOCOL_VERSION - 1;
    let listener = tokio::net::UnixListener::bind(host.sandbox.socket()).unwrap();
    let fake = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = aifactory_common::handshake::send(&mut stream, older).await;
            let _ = aifactory_common::handshake::receive(&mut stream).await;
            let _ = stream.shutdown().await;
        }
    });
    let addr = hosts.hosts[0].addr;
    let url = hosts.hosts[0].url();
    let out = tokio::task::spawn_blocking(move || {
        let out = hosts.ctl(&["--host", &url, "status"]);
        drop(hosts);
        out
    })
    .await
    .unwrap();
    fake.abort();
    assert_eq!(out.code, Some(1), "{out:?}");
    let want = format!(
        "aifactoryctl speaks protocol {PROTOCOL_VERSION}, the daemon on {addr} speaks {older}: upgrade the aifactory package on {addr}"
    );
    assert!(out.stderr.contains(&want), "expected `{want}` in {out:?}");
}

/// A hundred commands in a row ride one multiplexed master: one ssh login in sshd's log.
#[test]
fn a_hundred_commands_share_one_master() {
    let Some(hosts) = Hosts::start_or_skip("a_hundred_commands_share_one_master", 1, "") else {
        return;
    };
    let host = &hosts.hosts[0];
    assert!(!hosts.master_running(host, "root"));
    for i in 0..100 {
        let out = hosts.ctl_on(host, &["status", "--json"]);
        assert_eq!(out.code, Some(0), "command {i}: {out:?}");
    }
    assert!(
        hosts.master_running(host, "root"),
        "`ssh -O check` finds no master"
    );
    assert_eq!(host.accepted_logins(), 1, "{}", host.sshd_log());
}

/// A daemon config whose default agent keeps working (until the test ends it).
const LONG_AGENT_CONFIG: &str =
    "default_agent = \"slow\"\n[agents.slow]\nkind = \"custom\"\ncommand = [\"sleep\", \"300\"]\n";

/// Named hosts: add, list with reachability, version, counts and load, use by name, remove; a
/// bad file is refused with its path and the fix.
#[test]
fn hosts_add_list_use_and_remove() {
    let Some(hosts) = Hosts::start_or_skip("hosts_add_list_use_and_remove", 3, LONG_AGENT_CONFIG)
    else {
        return;
    };
    let (a, b, c) = (&hosts.hosts[0], &hosts.hosts[1], &hosts.hosts[2]);
    hosts.ctl(&["hosts", "add", "alpha", &a.url()]).assert_ok();
    hosts.ctl(&["hosts", "add", "beta", &b.url()]).assert_ok();
    hosts.ctl(&["hosts", "add", "gamma", &c.url()]).assert_ok();
    let down = format!("ssh://root@{}:2222", a.addr);
    hosts.ctl(&["hosts", "add", "gone", &down]).assert_ok();
    let dup = hosts.ctl(&["hosts", "add", "alpha", &b.url()]);
    assert_eq!(dup.code, Some(1), "{dup:?}");
    assert!(dup.stderr.contains("exists already"), "{dup:?}");
    let bad = hosts.ctl(&["hosts", "add", "bad", "http://x"]);
    assert_eq!(bad.code, Some(1), "{bad:?}");

    // A session on beta shows in its counts, and --host NAME reaches it.
    let cwd = b.sandbox.path().display().to_string();
    hosts
        .ctl(&[
            "--host", "beta", "sessions", "new", "--cwd", &cwd, "--", "sleep", "300",
        ])
        .assert_ok();
    // A task on gamma whose agent keeps running: gamma's load counts it, the others' do not.
    let repo = committed_repo(&c.sandbox.path().join("gamma-repo"));
    hosts
        .ctl(&[
            "--host",
            "gamma",
            "projects",
            "add",
            repo.to_str().unwrap(),
            "--name",
            "demo",
        ])
        .assert_ok();
    let t = hosts
        .ctl(&[
            "--host",
            "gamma",
            "tasks",
            "create",
            "--project",
            "demo",
            "--spec",
            "001-load",
            "--json",
        ])
        .assert_ok()
        .json();
    let task = t["id"].as_str().unwrap().to_string();
    hosts
        .ctl(&["--host", "gamma", "tasks", "start", &task])
        .assert_ok();
    wait_for("gamma's running task in its status", TIMEOUT, || {
        let json = hosts
            .ctl(&["--host", "gamma", "status", "--json"])
            .assert_ok()
            .json();
        if json["load"]["tasks_running"] == 1 {
            Ok(())
        } else {
            Err(format!("{json}"))
        }
    });

    let list = hosts.ctl(&["hosts", "list", "--json"]).assert_ok().json();
    let entry = |name: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|h| h["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing from {list}"))
            .clone()
    };
    assert_eq!(entry("alpha")["reachable"], true, "{list}");
    assert_eq!(entry("alpha")["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(entry("alpha")["sessions"], 0, "{list}");
    assert_eq!(entry("beta")["sessions"], 1, "{list}");
    assert_eq!(entry("beta")["sessions_running"], 1, "{list}");
    for (name, running) in [("alpha", 0), ("beta", 0), ("gamma", 1)] {
        let h = entry(name);
        assert_eq!(h["reachable"], true, "{list}");
        assert_eq!(h["tasks_running"], running, "{name}: {list}");
        assert!(h["cpus"].as_u64().unwrap() >= 1, "{name}: {list}");
        let load = &h["load_average"];
        for window in ["one", "five", "fifteen"] {
            assert!(load[window].as_f64().unwrap() >= 0.0, "{name}: {list}");
        }
        let total = h["memory"]["total_bytes"].as_u64().unwrap();
        let available = h["memory"]["available_bytes"].as_u64().unwrap();
        assert!(total > 0 && available <= total, "{name}: {list}");
    }
    assert_eq!(entry("gone")["reachable"], false, "{list}");
    assert!(
        entry("gone")["error"]
            .as_str()
            .unwrap()
            .contains("Connection refused"),
        "{list}"
    );
    let text = hosts.ctl(&["hosts", "list"]).assert_ok().stdout.clone();
    assert!(text.contains("DOWN"), "{text}");
    assert!(text.contains("1 tasks running, load "), "{text}");
    assert_eq!(text.matches("0 tasks running, load ").count(), 2, "{text}");
    assert!(
        text.contains(" CPUs, memory ") && text.contains(" GiB available of "),
        "{text}"
    );
    let status = hosts
        .ctl(&["--host", "gamma", "status"])
        .assert_ok()
        .stdout
        .clone();
    assert!(
        status.contains("load         1 tasks running, load "),
        "{status}"
    );
    // Stopped, the task no longer counts.
    hosts
        .ctl(&["--host", "gamma", "tasks", "stop", &task])
        .assert_ok();
    wait_for("gamma's stopped task gone from its load", TIMEOUT, || {
        let json = hosts
            .ctl(&["--host", "gamma", "status", "--json"])
            .assert_ok()
            .json();
        if json["load"]["tasks_running"] == 0 {
            Ok(())
        } else {
            Err(format!("{json}"))
        }
    });

    let status = hosts
        .ctl(&["--host", "alpha", "status", "--json"])
        .assert_ok()
        .json();
    assert_eq!(status["pid"], a.daemon().pid());
    let via_env = hosts.ctl_with(&["status", "--json"], |cmd| {
        cmd.env("AIFACTORY_HOST", "beta");
    });
    assert_eq!(via_env.assert_ok().json()["pid"], b.daemon().pid());

    hosts.ctl(&["hosts", "remove", "alpha"]).assert_ok();
    let gone = hosts.ctl(&["--host", "alpha", "status"]);
    assert_eq!(gone.code, Some(4), "{gone:?}");
    assert!(gone.stderr.contains("hosts add alpha"), "{gone:?}");

    // A file broken by hand: its path and the fix.
    let file = hosts.config_home().join("aifactory/hosts.toml");
    std::fs::write(&file, "[hosts.x]\nurl = 3\n").unwrap();
    let broken = hosts.ctl(&["hosts", "list"]);
    assert_eq!(broken.code, Some(1), "{broken:?}");
    assert!(
        broken.stderr.contains(&file.display().to_string())
            && broken.stderr.contains("not a valid hosts file"),
        "{broken:?}"
    );
}

/// `dial-stdio` on this machine: a request written to its stdin, then stdin closed; the
/// daemon's hello and its reply still come back byte for byte (the write half was shut down,
/// not the connection), then the relay ends by itself. Nothing else reaches stdout.
#[test]
fn dial_stdio_relays_byte_for_byte_and_half_closes() {
    use std::io::Write;
    use std::process::Stdio;

    use aifactory_common::codec;
    use aifactory_common::handshake::hello;
    use aifactory_common::protocol::{ClientFrame, Reply, Request, ServerFrame};

    let sandbox = Sandbox::new();
    let daemon = sandbox.daemon().start();
    let mut child = sandbox
        .ctl_command(&["dial-stdio"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let frame = codec::encode(&ClientFrame {
        id: 7,
        request: Request::Status,
    })
    .unwrap();
    let mut input = hello(PROTOCOL_VERSION).to_vec();
    input.extend_from_slice(&(frame.len() as u32).to_be_bytes());
    input.extend_from_slice(&frame);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&input).unwrap();
    drop(stdin);
    let out = child_output_within(child, TIMEOUT).expect("dial-stdio ends after the daemon closes");
    assert!(out.status.success(), "{out:?}");
    assert!(out.stderr.is_empty(), "{out:?}");
    let stdout = out.stdout;
    assert_eq!(&stdout[..10], &hello(PROTOCOL_VERSION), "{stdout:?}");
    let len = u32::from_be_bytes(stdout[10..14].try_into().unwrap()) as usize;
    assert_eq!(stdout.len(), 14 + len, "one reply frame and nothing else");
    match codec::decode::<ServerFrame>(&stdout[14..]).unwrap() {
        ServerFrame::Reply {
            id: 7,
            result: Ok(Reply::Status(status)),
        } => assert_eq!(status.pid, daemon.pid()),
        other => panic!("unexpected frame {other:?}"),
    }
}

/// `dial-stdio` with no daemon: exit 3 and the usual message on stderr, nothing on stdout.
#[test]
fn dial_stdio_without_a_daemon_exits_3_and_prints_nothing_on_stdout() {
    let sandbox = Sandbox::new();
    let out = sandbox.ctl(&["dial-stdio"]);
    assert_eq!(out.code, Some(3), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(out.stderr.contains("cannot reach aifactoryd at"), "{out:?}");
}

/// `doctor --host` runs the remote host's own doctor: its report is about that host's daemon.
#[test]
fn doctor_runs_on_the_remote_host() {
    let Some(hosts) = Hosts::start_or_skip("doctor_runs_on_the_remote_host", 1, "") else {
        return;
    };
    let host = &hosts.hosts[0];
    let out = hosts.ctl_on(host, &["doctor", "--json"]);
    assert!(matches!(out.code, Some(0 | 1 | 6)), "{out:?}");
    let report = out.json();
    let daemon = report
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "daemon")
        .unwrap_or_else(|| panic!("no daemon check in {report}"));
    assert_eq!(daemon["status"], "ok", "{report}");
    assert!(
        daemon["message"]
            .as_str()
            .unwrap()
            .contains(&host.daemon().pid().to_string()),
        "the remote doctor saw that host's daemon: {report}"
    );
}

/// `projects clone --host B --from A PROJECT`: the origin of the project as A knows it is
/// cloned by B's daemon into the given path and registered there; a project without an origin
/// and a path that exists are refused with the reason.
#[test]
fn projects_clone_puts_a_project_s_origin_on_another_host() {
    let Some(hosts) = Hosts::start_or_skip(
        "projects_clone_puts_a_project_s_origin_on_another_host",
        2,
        "",
    ) else {
        return;
    };
    let (a, b) = (&hosts.hosts[0], &hosts.hosts[1]);
    // The origin: a bare repository on the file system both hosts share (only /run is theirs).
    let work = committed_repo(&a.sandbox.path().join("work"));
    let bare = a.sandbox.path().join("origin.git");
    aifactory_tests::git::git(
        &[
            "clone",
            "-q",
            "--bare",
            work.to_str().unwrap(),
            bare.to_str().unwrap(),
        ],
        a.sandbox.path(),
    );
    aifactory_tests::git::git(&["remote", "add", "origin", bare.to_str().unwrap()], &work);
    hosts
        .ctl_on(
            a,
            &["projects", "add", work.to_str().unwrap(), "--name", "demo"],
        )
        .assert_ok();
    let lonely = committed_repo(&a.sandbox.path().join("lonely"));
    hosts
        .ctl_on(a, &["projects", "add", lonely.to_str().unwrap()])
        .assert_ok();

    let dest = b.sandbox.path().join("clones/demo");
    let dest_arg = dest.display().to_string();
    let a_url = a.url();
    let cloned = hosts
        .ctl_on(
            b,
            &[
                "projects", "clone", "demo", "--from", &a_url, "--path", &dest_arg, "--json",
            ],
        )
        .assert_ok()
        .json();
    assert_eq!(cloned["name"], "demo", "{cloned}");
    assert_eq!(cloned["origin_url"], bare.display().to_string(), "{cloned}");
    let canonical = dest.canonicalize().unwrap();
    assert_eq!(cloned["path"], canonical.display().to_string(), "{cloned}");
    assert_eq!(
        std::fs::read_to_string(dest.join("README")).unwrap(),
        "hello\n"
    );

    let on_b = hosts
        .ctl_on(b, &["projects", "list", "--json"])
        .assert_ok()
        .json();
    let names: Vec<&str> = on_b
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, ["demo"], "{on_b}");
    let text = hosts
        .ctl_on(b, &["projects", "list"])
        .assert_ok()
        .stdout
        .clone();
    assert!(text.contains("demo") && text.contains(&dest_arg), "{text}");

    // Nothing to clone from: the reason and the fix, and nothing registered.
    let other = b.sandbox.path().join("clones/lonely").display().to_string();
    let refused = hosts.ctl_on(
        b,
        &[
            "projects", "clone", "lonely", "--from", &a_url, "--path", &other,
        ],
    );
    assert_eq!(refused.code, Some(1), "{refused:?}");
    assert!(
        refused.stderr.contains("has no origin remote")
            && refused.stderr.contains("git remote add origin"),
        "{refused:?}"
    );
    // The path taken: refused by B's daemon before git runs.
    let again = hosts.ctl_on(
        b,
        &[
            "projects", "clone", "demo", "--from", &a_url, "--path", &dest_arg,
        ],
    );
    assert_ne!(again.code, Some(0), "{again:?}");
    assert!(again.stderr.contains("exists already"), "{again:?}");
    let on_b = hosts
        .ctl_on(b, &["projects", "list", "--json"])
        .assert_ok()
        .json();
    assert_eq!(on_b.as_array().map(Vec::len), Some(1), "{on_b}");
}
