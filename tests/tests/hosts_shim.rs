//! One board for every host: the real `aifactory-http` over `[[hosts]]` (ssh:// to hosts in
//! network namespaces with their own sshd and daemon, `aifactory_tests::hosts`). Lists that
//! gather every host, actions on one host, the merged event stream resumed across a shim
//! restart, a remote console byte for byte, a host that vanishes and comes back, and this
//! machine's daemon as a `unix://` host beside an ssh one.
//!
//! One file past 600 lines on purpose: it is one feature's end-to-end suite, built as one test
//! binary (its REST, event-stream and console clients are its own, as in http.rs: reqwest and
//! tungstenite are dev-dependencies the harness cannot use); the hosts and the shim over them
//! live in the harness (`aifactory_tests::hosts`).

use std::time::Duration;

use aifactory_common::PROTOCOL_VERSION;
use aifactory_common::pane::OUTPUT_LOG;
use aifactory_tests::Http;
use aifactory_tests::console_ws::{self, Ws};
use aifactory_tests::git::committed_repo;
use aifactory_tests::hosts::{Hosts, ShimHost};
use aifactory_tests::rest::Api;
use aifactory_tests::session::new_session;
use aifactory_tests::sse::{Sse, SseReader, positions};
use aifactory_tests::wait::POLL_INTERVAL;
use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// A liveness bound for a loaded 2-core machine and ssh, not a speed target.
const TIMEOUT: Duration = Duration::from_secs(60);

/// A daemon config whose default agent keeps working (until the test ends it).
const LONG_AGENT_CONFIG: &str =
    "default_agent = \"slow\"\n[agents.slow]\nkind = \"custom\"\ncommand = [\"sleep\", \"300\"]\n";

/// Polls `GET /api/v1/hosts` until `done` holds for its answer; returns that answer.
async fn wait_hosts(api: &Api<'_>, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let answer = api.get("/api/v1/hosts").await;
        let list = answer
            .expect(200)
            .body
            .as_array()
            .expect("a host list")
            .clone();
        if done(&list) {
            return list;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {TIMEOUT:?} waiting for {what}; /api/v1/hosts says {list:#?}\n{}",
            api.shim.logs()
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

async fn wait_all_up(api: &Api<'_>, hosts: &Hosts) -> Vec<Value> {
    let names: Vec<String> = hosts.hosts.iter().map(|h| h.name.clone()).collect();
    wait_hosts(api, "every host up", |list| {
        list.len() == names.len()
            && list
                .iter()
                .zip(&names)
                .all(|(h, name)| h["name"] == name.as_str() && h["state"] == "up")
    })
    .await
}

fn entry<'v>(list: &'v [Value], name: &str) -> &'v Value {
    list.iter()
        .find(|h| h["name"] == name)
        .unwrap_or_else(|| panic!("{name} missing from {list:#?}"))
}

/// Projects `demo` and a task `spec` on `host` through the shim; the task's id.
async fn project_and_task(api: &Api<'_>, hosts: &Hosts, index: usize, spec: &str) -> String {
    let host = &hosts.hosts[index];
    let repo = committed_repo(&host.sandbox.path().join("repo"));
    let project = api
        .post(
            "/api/v1/projects",
            json!({"host": host.name, "path": repo, "name": "demo"}),
        )
        .await;
    assert_eq!(project.expect(201).body["host"], host.name.as_str());
    let project_id = project.body["id"].as_str().expect("project id");
    assert_eq!(
        project.location(),
        Some(format!("/api/v1/hosts/{}/projects/{project_id}", host.name).as_str()),
        "{project:#?}"
    );
    let task = api
        .post(
            "/api/v1/tasks",
            json!({"host": host.name, "project": "demo", "spec_id": spec}),
        )
        .await;
    let body = &task.expect(201).body;
    assert_eq!(body["host"], host.name.as_str(), "{task:#?}");
    assert_eq!(body["phase"], "backlog", "{task:#?}");
    let id = body["id"].as_str().expect("task id").to_string();
    assert_eq!(
        task.location(),
        Some(format!("/api/v1/hosts/{}/tasks/{id}", host.name).as_str()),
        "{task:#?}"
    );
    id
}

/// A task's phase as its own host's daemon tells `aifactoryctl --host` (not the shim).
fn phase_on_host(hosts: &Hosts, index: usize, id: &str) -> String {
    let list = hosts
        .ctl_on(&hosts.hosts[index], &["tasks", "list", "--json"])
        .assert_ok()
        .json();
    list.as_array()
        .expect("a task list")
        .iter()
        .find(|t| t["id"] == id)
        .unwrap_or_else(|| panic!("task {id} missing on host{index}: {list}"))["phase"]
        .as_str()
        .expect("a phase")
        .to_string()
}

/// A task on each of three hosts: every list has all of them, each with its host; the hosts
/// page has all three up with their daemon's version and load; an action named by host acts
/// on that host only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_gather_every_host_and_a_hosted_action_acts_on_that_host_only() {
    let Some(hosts) = Hosts::start_or_skip(
        "lists_gather_every_host_and_a_hosted_action_acts_on_that_host_only",
        3,
        LONG_AGENT_CONFIG,
    ) else {
        return;
    };
    let shim = hosts.shim_for_all();
    let api = Api::new(&shim, TIMEOUT);
    wait_all_up(&api, &hosts).await;

    let mut ids = Vec::new();
    for (i, host) in hosts.hosts.iter().enumerate() {
        ids.push(project_and_task(&api, &hosts, i, &format!("001-on-{}", host.name)).await);
    }

    // Every list gathers the three hosts, in config order, each object with its host.
    let tasks = api.get("/api/v1/tasks").await;
    let tasks = tasks
        .expect(200)
        .body
        .as_array()
        .expect("a task list")
        .clone();
    assert_eq!(tasks.len(), 3, "{tasks:#?}");
    for (i, host) in hosts.hosts.iter().enumerate() {
        let mine: Vec<&Value> = tasks
            .iter()
            .filter(|t| t["host"] == host.name.as_str())
            .collect();
        assert_eq!(mine.len(), 1, "{}: {tasks:#?}", host.name);
        assert_eq!(mine[0]["id"], ids[i].as_str(), "{tasks:#?}");
        assert_eq!(
            mine[0]["spec_id"],
            format!("001-on-{}", host.name).as_str(),
            "{tasks:#?}"
        );
    }
    let projects = api.get("/api/v1/projects").await;
    let projects = projects
        .expect(200)
        .body
        .as_array()
        .expect("a list")
        .clone();
    let owners: Vec<&str> = projects.iter().filter_map(|p| p["host"].as_str()).collect();
    assert_eq!(owners, ["host0", "host1", "host2"], "{projects:#?}");
    let only = api.get("/api/v1/tasks?host=host2").await;
    let only = only.expect(200).body.as_array().expect("a list").clone();
    assert_eq!(only.len(), 1, "{only:#?}");
    assert_eq!(only[0]["id"], ids[2].as_str());

    // With several hosts, a route must name one.
    api.get(&format!("/api/v1/tasks/{}", ids[0]))
        .await
        .expect_error(400, "host_required");
    api.get(&format!("/api/v1/hosts/nowhere/tasks/{}", ids[0]))
        .await
        .expect_error(404, "unknown_host");
    let unnamed = api
        .post(
            "/api/v1/tasks",
            json!({"project": "demo", "spec_id": "002-unnamed"}),
        )
        .await;
    assert_eq!(unnamed.status, StatusCode::BAD_REQUEST, "{unnamed:#?}");

    // The hosts page: three, up, in config order, with their daemon's version and load.
    let list = wait_all_up(&api, &hosts).await;
    for (h, host) in list.iter().zip(&hosts.hosts) {
        assert_eq!(h["url"], host.url().as_str(), "{h:#}");
        assert_eq!(h["reason"], Value::Null, "{h:#}");
        assert!(h["since_ms"].as_u64().is_some_and(|t| t > 0), "{h:#}");
        assert_eq!(h["version"], env!("CARGO_PKG_VERSION"), "{h:#}");
        assert_eq!(h["protocol"], PROTOCOL_VERSION, "{h:#}");
        assert_eq!(h["load"]["tasks_running"], 0, "{h:#}");
        assert!(h["load"]["cpus"].as_u64().is_some_and(|c| c >= 1), "{h:#}");
        let memory = &h["load"]["memory"];
        let total = memory["total_bytes"].as_u64().expect("total memory");
        assert!(
            memory["available_bytes"]
                .as_u64()
                .is_some_and(|a| a <= total),
            "{h:#}"
        );
        // Its status is that host's daemon's.
        assert_eq!(h["status"]["pid"], host.daemon().pid(), "{h:#}");
    }
    let one = api.get("/api/v1/hosts/host1").await;
    assert_eq!(one.expect(200).body["name"], "host1", "{one:#?}");
    api.get("/api/v1/hosts/nowhere")
        .await
        .expect_error(404, "unknown_host");

    // An action named by host: host1's task starts, the others stay in the backlog, as each
    // host's own daemon says.
    let started = api
        .post_empty(&format!("/api/v1/hosts/host1/tasks/{}/start", ids[1]))
        .await;
    let body = &started.expect(200).body;
    assert_eq!(body["host"], "host1", "{started:#?}");
    assert_eq!(body["id"], ids[1].as_str(), "{started:#?}");
    assert_ne!(body["phase"], "backlog", "{started:#?}");
    assert_ne!(phase_on_host(&hosts, 1, &ids[1]), "backlog");
    assert_eq!(phase_on_host(&hosts, 0, &ids[0]), "backlog");
    assert_eq!(phase_on_host(&hosts, 2, &ids[2]), "backlog");
    let fetched = api
        .get(&format!("/api/v1/hosts/host1/tasks/{}", ids[1]))
        .await;
    assert_eq!(
        fetched.expect(200).body["phase"],
        body["phase"],
        "{fetched:#?}"
    );
    // The same id on another host is not that task.
    let elsewhere = api
        .get(&format!("/api/v1/hosts/host0/tasks/{}", ids[1]))
        .await;
    if ids[0] != ids[1] {
        assert_eq!(elsewhere.status, StatusCode::NOT_FOUND, "{elsewhere:#?}");
    }
    wait_hosts(&api, "host1's running task in its load", |list| {
        entry(list, "host1")["load"]["tasks_running"] == 1
            && entry(list, "host0")["load"]["tasks_running"] == 0
            && entry(list, "host2")["load"]["tasks_running"] == 0
    })
    .await;
    api.post_empty(&format!("/api/v1/hosts/host1/tasks/{}/stop", ids[1]))
        .await
        .expect(200);
}

/// Events until `SessionCreated` of every `(host, session)` has come; all of them.
async fn until_created(reader: &mut SseReader, sessions: &[(String, String)]) -> Vec<Sse> {
    let mut seen: Vec<Sse> = Vec::new();
    while !sessions.iter().all(|(host, id)| {
        seen.iter()
            .any(|e| e.host() == host.as_str() && created(e, id))
    }) {
        seen.push(reader.next().await);
    }
    seen
}

fn created(event: &Sse, session: &str) -> bool {
    event.event == "SessionCreated" && event.data["kind"]["SessionCreated"]["session_id"] == session
}

/// Every event with an id carries its host, and the id's position for that host is the
/// event's own seq.
#[track_caller]
fn assert_ids_match(events: &[Sse]) {
    for e in events.iter().filter(|e| e.id.is_some()) {
        let id = e.id.as_deref().unwrap_or_default();
        let host = e.data["host"].as_str().unwrap_or_else(|| panic!("{e:?}"));
        assert_eq!(
            positions(id).get(host).copied(),
            e.data["seq"].as_u64(),
            "{e:?}"
        );
    }
}

/// The events of every host read through the shim; it is killed, events happen on every
/// host meanwhile, and a new shim resumed at the last id seen delivers each host's events
/// exactly once: its seqs consecutive across both streams, none missing, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_merged_event_stream_resumes_across_a_shim_restart_with_no_gap_or_duplicate() {
    let Some(hosts) = Hosts::start_or_skip(
        "the_merged_event_stream_resumes_across_a_shim_restart_with_no_gap_or_duplicate",
        3,
        "",
    ) else {
        return;
    };
    let mut clients = Vec::new();
    for host in &hosts.hosts {
        clients.push(host.daemon().client().await);
    }
    // A session on every host, by its own daemon; `(host, session)` for each.
    let sessions_everywhere = async |clients: &[aifactory_common::Client]| {
        let mut made = Vec::new();
        for (host, client) in hosts.hosts.iter().zip(clients) {
            let s = new_session(client, &host.sandbox, "sleep 300").await;
            made.push((host.name.clone(), s.id));
        }
        made
    };

    let shim = hosts.shim_for_all();
    let api = Api::new(&shim, TIMEOUT);
    wait_all_up(&api, &hosts).await;
    let mut live = SseReader::open(&shim, None).await;
    let mut all = Vec::new();
    for _ in 0..2 {
        let made = sessions_everywhere(&clients).await;
        all.extend(until_created(&mut live, &made).await);
    }
    assert_ids_match(&all);
    // What a browser resumes with: the last `id:` received, with or without data.
    let last_id = live.last_id.clone().expect("an id on the stream");
    assert_eq!(
        positions(&last_id).keys().collect::<Vec<_>>(),
        ["host0", "host1", "host2"],
        "every host has a position in the id: {last_id}"
    );
    drop(live);
    drop(api);

    // The shim dies; the hosts go on.
    shim.kill();
    let mut missed = Vec::new();
    for _ in 0..3 {
        missed.extend(sessions_everywhere(&clients).await);
    }

    // Resumed at once, while the new shim may still be connecting to the hosts: a host's
    // position waits for its link.
    let shim = hosts.shim_for_all();
    let mut resumed = SseReader::open(&shim, Some(&last_id)).await;
    let api = Api::new(&shim, TIMEOUT);
    wait_all_up(&api, &hosts).await;
    let after = sessions_everywhere(&clients).await;
    let mut wanted = missed.clone();
    wanted.extend(after);
    let replay = until_created(&mut resumed, &wanted).await;
    assert_ids_match(&replay);
    let before = positions(&last_id);
    for host in &hosts.hosts {
        let seqs: Vec<u64> = replay
            .iter()
            .filter(|e| e.id.is_some() && e.data["host"] == host.name.as_str())
            .filter_map(|e| e.data["seq"].as_u64())
            .collect();
        let from = before[&host.name];
        let expected: Vec<u64> = (from + 1..from + 1 + seqs.len() as u64).collect();
        assert_eq!(
            seqs, expected,
            "{}: the resumed stream goes on right after {from}, with no gap or duplicate",
            host.name
        );
        // And across both streams, every seq of this host once.
        let mut both: Vec<u64> = all
            .iter()
            .chain(&replay)
            .filter(|e| e.id.is_some() && e.data["host"] == host.name.as_str())
            .filter_map(|e| e.data["seq"].as_u64())
            .collect();
        let first = both[0];
        let n = both.len() as u64;
        both.dedup();
        assert_eq!(
            both,
            (first..first + n).collect::<Vec<_>>(),
            "{}: every event exactly once",
            host.name
        );
    }
    // The sessions made while the shim was down came after the restart, each once.
    for (host, id) in &missed {
        let n = replay
            .iter()
            .filter(|e| e.data["host"] == host.as_str() && created(e, id))
            .count();
        assert_eq!(n, 1, "{host}'s session {id} made while the shim was down");
    }
}

/// Opens a host's session console through the shim with the token as the subprotocol.
async fn console(shim: &Http, host: &str, session: &str, from: u64) -> Ws {
    console_ws::open(
        shim,
        &format!("/api/v1/hosts/{host}/sessions/{session}/console?from={from}"),
    )
    .await
}

/// Reads a console to its close frame: the bytes, and the close's code and reason.
async fn read_to_close(ws: &mut Ws) -> (Vec<u8>, Option<(u16, String)>) {
    let mut data = Vec::new();
    loop {
        let message = tokio::time::timeout(TIMEOUT, ws.next())
            .await
            .unwrap_or_else(|_| {
                panic!("console silent for {TIMEOUT:?} after {} bytes", data.len())
            });
        match message {
            Some(Ok(Message::Binary(bytes))) => data.extend_from_slice(&bytes),
            Some(Ok(Message::Close(frame))) => {
                return (
                    data,
                    frame.map(|f| (u16::from(f.code), f.reason.to_string())),
                );
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("console read failed after {} bytes: {e}", data.len()),
            None => return (data, None),
        }
    }
}

/// A remote session prints a few MB of a known pattern after input typed through the shim's
/// console: the console carries every byte of the host's output.log, in order, then closes
/// with the exit status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_console_through_the_shim_is_byte_exact() {
    let Some(hosts) =
        Hosts::start_or_skip("a_remote_console_through_the_shim_is_byte_exact", 2, "")
    else {
        return;
    };
    let shim = hosts.shim_for_all();
    let api = Api::new(&shim, TIMEOUT);
    wait_all_up(&api, &hosts).await;
    let host = &hosts.hosts[1];
    let client = host.daemon().client().await;
    let s = new_session(
        &client,
        &host.sandbox,
        "read go; seq 1 500000; echo END-OF-OUTPUT",
    )
    .await;
    let mut ws = console(&shim, &host.name, &s.id, 0).await;
    ws.send(Message::Binary(b"go\n".to_vec().into()))
        .await
        .expect("type into the console");
    let (data, close) = read_to_close(&mut ws).await;
    let log = std::fs::read(s.pane_dir.join(OUTPUT_LOG)).expect("the host's output.log");
    assert!(log.len() > 3_000_000, "{} bytes", log.len());
    assert_eq!(
        data.len(),
        log.len(),
        "as many bytes as the host's output.log"
    );
    assert!(data == log, "the same bytes as the host's output.log");
    let text = String::from_utf8_lossy(&data);
    assert!(
        text.contains("\r\n250000\r\n") && text.ends_with("END-OF-OUTPUT\r\n"),
        "the pattern"
    );
    assert_eq!(close, Some((1000, "exited 0".to_string())), "{close:?}");
    // The other host knows no such session.
    let other = api
        .get(&format!(
            "/api/v1/hosts/{}/sessions/{}",
            hosts.hosts[0].name, s.id
        ))
        .await;
    assert_eq!(other.status, StatusCode::NOT_FOUND, "{other:#?}");
}

/// The harness's vanishing host, which the test below relies on: stopping sshd ends the ssh
/// master's connection too (not only new logins), and starting it again lets ssh back in.
#[test]
fn stopping_sshd_drops_the_master_and_starting_it_lets_ssh_back() {
    let Some(mut hosts) = Hosts::start_or_skip(
        "stopping_sshd_drops_the_master_and_starting_it_lets_ssh_back",
        1,
        "",
    ) else {
        return;
    };
    hosts.ctl_on(&hosts.hosts[0], &["status"]).assert_ok();
    assert!(hosts.master_running(&hosts.hosts[0], "root"));
    assert!(!hosts.hosts[0].sshd_pids().is_empty());
    hosts.hosts[0].stop_sshd();
    assert!(hosts.hosts[0].sshd_pids().is_empty());
    aifactory_tests::wait::wait_until("the master ends", TIMEOUT, || {
        !hosts.master_running(&hosts.hosts[0], "root")
    });
    let refused = hosts.ctl_on(&hosts.hosts[0], &["status"]);
    assert_eq!(refused.code, Some(3), "{refused:?}");
    assert!(refused.stderr.contains("Connection refused"), "{refused:?}");
    hosts.hosts[0].start_sshd();
    let status = hosts
        .ctl_on(&hosts.hosts[0], &["status", "--json"])
        .assert_ok()
        .json();
    assert_eq!(status["pid"], hosts.hosts[0].daemon().pid());
}

/// One host's sshd dies entirely: it turns `down` with ssh's reason and the stream says
/// `unavailable`; the other host goes on working; sshd comes back and so does the host, its
/// `available` event and its objects in the lists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_vanishes_is_down_the_others_work_and_it_comes_back() {
    let Some(mut hosts) = Hosts::start_or_skip(
        "a_host_that_vanishes_is_down_the_others_work_and_it_comes_back",
        2,
        LONG_AGENT_CONFIG,
    ) else {
        return;
    };
    let shim = hosts.shim_for_all();
    let api = Api::new(&shim, TIMEOUT);
    wait_all_up(&api, &hosts).await;
    let gone = project_and_task(&api, &hosts, 0, "001-gone").await;
    let stays = project_and_task(&api, &hosts, 1, "001-stays").await;
    let mut events = SseReader::open(&shim, None).await;

    hosts.hosts[0].stop_sshd();
    // Down, with ssh's words once the shim tries again (the first reason may be the end of
    // the old link's stream).
    let addr = hosts.hosts[0].addr.to_string();
    let list = wait_hosts(&api, "host0 down with ssh's reason", |list| {
        let h = entry(list, "host0");
        h["state"] == "down"
            && h["reason"]
                .as_str()
                .is_some_and(|r| r.contains(&addr) && r.contains("Connection refused"))
    })
    .await;
    let down = entry(&list, "host0");
    let down_since = down["since_ms"].as_u64().expect("since_ms");
    assert_eq!(down["version"], Value::Null, "{down:#}");
    assert_eq!(down["load"], Value::Null, "{down:#}");
    assert_eq!(entry(&list, "host1")["state"], "up", "{list:#?}");
    let seen = events
        .until(|e| e.event == "daemon" && e.data["host"] == "host0")
        .await;
    let unavailable = &seen[seen.len() - 1].data;
    assert_eq!(unavailable["daemon"], "unavailable", "{unavailable}");
    assert!(
        unavailable["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{unavailable}"
    );

    // Down: its objects are out of the lists, its routes say so; the other host works.
    let tasks = api.get("/api/v1/tasks").await;
    let tasks = tasks.expect(200).body.as_array().expect("a list").clone();
    assert_eq!(tasks.len(), 1, "{tasks:#?}");
    assert_eq!(tasks[0]["host"], "host1", "{tasks:#?}");
    api.get(&format!("/api/v1/hosts/host0/tasks/{gone}"))
        .await
        .expect_error(503, "host_unavailable");
    let started = api
        .post_empty(&format!("/api/v1/hosts/host1/tasks/{stays}/start"))
        .await;
    assert_ne!(started.expect(200).body["phase"], "backlog", "{started:#?}");
    let moved = api.get(&format!("/api/v1/hosts/host1/tasks/{stays}")).await;
    assert_ne!(moved.expect(200).body["phase"], "backlog", "{moved:#?}");
    assert_ne!(phase_on_host(&hosts, 1, &stays), "backlog");

    // Back.
    hosts.hosts[0].start_sshd();
    let list = wait_hosts(&api, "host0 up again", |list| {
        entry(list, "host0")["state"] == "up"
    })
    .await;
    let up = entry(&list, "host0");
    assert!(
        up["since_ms"].as_u64().is_some_and(|t| t >= down_since),
        "up since it came back, not since it went down: {up:#}"
    );
    assert_eq!(up["reason"], Value::Null, "{up:#}");
    assert_eq!(up["version"], env!("CARGO_PKG_VERSION"), "{up:#}");
    let seen = events
        .until(|e| e.event == "daemon" && e.data["host"] == "host0")
        .await;
    let available = &seen[seen.len() - 1].data;
    assert_eq!(available["daemon"], "available", "{available}");
    let tasks = api.get("/api/v1/tasks").await;
    let tasks = tasks.expect(200).body.as_array().expect("a list").clone();
    let owners: Vec<(&str, &str)> = tasks
        .iter()
        .filter_map(|t| Some((t["host"].as_str()?, t["id"].as_str()?)))
        .collect();
    assert_eq!(
        owners,
        [("host0", gone.as_str()), ("host1", stays.as_str())],
        "{tasks:#?}"
    );
    api.get(&format!("/api/v1/hosts/host0/tasks/{gone}"))
        .await
        .expect(200);
    api.post_empty(&format!("/api/v1/hosts/host1/tasks/{stays}/stop"))
        .await
        .expect(200);
}

/// This machine's daemon over `unix://` beside a host over ssh: its objects are listed with
/// its name; when that daemon stops it is down with the socket's reason and an `unavailable`
/// event, the ssh host still answers, and a new daemon on the socket brings it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unix_host_beside_an_ssh_host_goes_down_with_its_daemon_and_comes_back() {
    let Some(hosts) = Hosts::start_or_skip(
        "a_unix_host_beside_an_ssh_host_goes_down_with_its_daemon_and_comes_back",
        1,
        "",
    ) else {
        return;
    };
    let local = aifactory_tests::Sandbox::new();
    let daemon = local.daemon().start();
    let mut entries = hosts.shim_hosts();
    entries.push(ShimHost::unix("local", &local.socket()));
    let shim = hosts.shim(&entries);
    let api = Api::new(&shim, TIMEOUT);
    wait_hosts(&api, "both hosts up", |list| {
        list.len() == 2 && list.iter().all(|h| h["state"] == "up")
    })
    .await;
    let client = daemon.client().await;
    let mine = new_session(&client, &local, "sleep 300").await;
    let remote_client = hosts.hosts[0].daemon().client().await;
    let theirs = new_session(&remote_client, &hosts.hosts[0].sandbox, "sleep 300").await;
    let sessions = api.get("/api/v1/sessions").await;
    let listed: Vec<(String, String)> = sessions
        .expect(200)
        .body
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|s| Some((s["host"].as_str()?.into(), s["id"].as_str()?.into())))
        .collect();
    assert_eq!(
        listed,
        [
            ("host0".to_string(), theirs.id.clone()),
            ("local".to_string(), mine.id.clone())
        ],
        "{sessions:#?}"
    );
    let mut events = SseReader::open(&shim, None).await;

    drop(client);
    drop(daemon);
    let list = wait_hosts(&api, "local down", |list| {
        entry(list, "local")["state"] == "down"
    })
    .await;
    let down = entry(&list, "local");
    assert!(
        down["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{down:#}"
    );
    let seen = events
        .until(|e| e.event == "daemon" && e.data["host"] == "local")
        .await;
    assert_eq!(
        seen[seen.len() - 1].data["daemon"],
        "unavailable",
        "{seen:?}"
    );
    let remote = api
        .get(&format!("/api/v1/hosts/host0/sessions/{}", theirs.id))
        .await;
    assert_eq!(remote.expect(200).body["state"], "running", "{remote:#?}");

    let _daemon = local.daemon().start();
    wait_hosts(&api, "local up again", |list| {
        entry(list, "local")["state"] == "up"
    })
    .await;
    let seen = events
        .until(|e| e.event == "daemon" && e.data["host"] == "local")
        .await;
    assert_eq!(seen[seen.len() - 1].data["daemon"], "available", "{seen:?}");
    let again = api
        .get(&format!("/api/v1/hosts/local/sessions/{}", mine.id))
        .await;
    assert_eq!(again.expect(200).body["host"], "local", "{again:#?}");
}
