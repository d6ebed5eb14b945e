//! The HTTP shim end to end: real HTTP (reqwest) and WebSocket (tokio-tungstenite) clients, and
//! a real headless Chromium, against the real `aifactory-http` and `aifactoryd`.
//!
//! One file past 600 lines on purpose: it is one feature's end-to-end suite, built as one test
//! binary; what its tests share beyond this file lives in the harness (`tests/src`).

use std::path::PathBuf;
use std::time::Duration;

use aifactory_tests::browser::{Browser, CookieSameSite, Served, TIMEOUT as BROWSER_TIMEOUT};
use aifactory_tests::git::{committed_repo, init_repo};
use aifactory_tests::http::host_entry;
use aifactory_tests::rest::Api;
use aifactory_tests::session::new_session;
use aifactory_tests::sse::{Sse, SseReader, positions};
use aifactory_tests::{Daemon, Http, Sandbox};
use futures::{SinkExt, StreamExt};
use nix::sys::signal::Signal;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A liveness bound for a loaded 2-core machine, not a speed target.
const TIMEOUT: Duration = Duration::from_secs(30);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A git repository with one commit on `main`.
fn repo(sandbox: &Sandbox, name: &str) -> PathBuf {
    committed_repo(&sandbox.path().join("repos").join(name))
}

/// A config whose default agent `fake` runs `sleep 300`.
fn fake_agent_config(sandbox: &Sandbox) {
    sandbox.write_config(
        "default_agent = \"fake\"\n[agents.fake]\nkind = \"custom\"\ncommand = [\"sleep\", \"300\"]\n",
    );
}

/// Every route of the OpenAPI document with its placeholders filled, as (METHOD, path).
fn documented_routes(doc: &Value) -> Vec<(String, String)> {
    let mut routes = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            if ["get", "post", "delete", "put", "patch"].contains(&method.as_str()) {
                routes.push((
                    method.to_uppercase(),
                    path.replace("{id}", "no-such-thing")
                        .replace("{host}", "no-such-host"),
                ));
            }
        }
    }
    routes.sort();
    routes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_needs_the_token_and_the_document_matches_the_routes() {
    let sandbox = Sandbox::new();
    let _daemon = sandbox.daemon().start();
    let shim = sandbox.http().start();
    let api = Api::new(&shim, TIMEOUT);

    let health = api.get("/healthz").await;
    health.expect(200);
    assert_eq!(health.body["status"], "ok", "{health:#?}");
    assert_eq!(health.body["daemon"]["answers"], true);

    let doc = api.get("/api/v1/openapi.json").await;
    doc.expect(200);
    assert!(
        doc.body["openapi"].as_str().unwrap_or("").starts_with("3."),
        "{:#}",
        doc.body
    );
    let routes = documented_routes(&doc.body);
    let names: Vec<String> = routes.iter().map(|(m, p)| format!("{m} {p}")).collect();
    for want in [
        "GET /healthz",
        "POST /api/v1/login",
        "POST /api/v1/logout",
        "GET /api/v1/status",
        "GET /api/v1/doctor",
        "GET /api/v1/openapi.json",
        "GET /api/v1/events",
        "GET /api/v1/hosts",
        "GET /api/v1/hosts/no-such-host",
        "GET /api/v1/projects",
        "POST /api/v1/projects",
        "GET /api/v1/hosts/no-such-host/projects/no-such-thing",
        "DELETE /api/v1/hosts/no-such-host/projects/no-such-thing",
        "GET /api/v1/tasks",
        "POST /api/v1/tasks",
        "GET /api/v1/hosts/no-such-host/tasks/no-such-thing",
        "DELETE /api/v1/hosts/no-such-host/tasks/no-such-thing",
        "POST /api/v1/hosts/no-such-host/tasks/no-such-thing/start",
        "POST /api/v1/hosts/no-such-host/tasks/no-such-thing/stop",
        "POST /api/v1/hosts/no-such-host/tasks/no-such-thing/restart",
        "GET /api/v1/hosts/no-such-host/tasks/no-such-thing/transcript",
        "GET /api/v1/hosts/no-such-host/tasks/no-such-thing/attempts",
        "GET /api/v1/sessions",
        "GET /api/v1/hosts/no-such-host/sessions/no-such-thing",
        "DELETE /api/v1/hosts/no-such-host/sessions/no-such-thing",
        "GET /api/v1/hosts/no-such-host/sessions/no-such-thing/console",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} is not documented: {names:#?}"
        );
    }
    assert_eq!(
        names.len(),
        26,
        "an undocumented route crept in: {names:#?}"
    );

    let plain = reqwest::Client::builder().timeout(TIMEOUT).build().unwrap();
    for (method, path) in &routes {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let url = shim.url(path);
        // Every documented route exists: with the token, none answers "no route" or 405.
        let with_token = api.send(api.request(method.clone(), path)).await;
        assert_ne!(
            with_token.code(),
            "no_route",
            "{method} {path}: {with_token:#?}"
        );
        assert_ne!(
            with_token.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert_ne!(
            with_token.status,
            StatusCode::UNAUTHORIZED,
            "{method} {path}"
        );
        // Open to all: health, and the page's way in.
        if ["/healthz", "/api/v1/login", "/api/v1/logout"].contains(&path.as_str()) {
            continue;
        }
        // Every /api route refuses a missing, a wrong and a malformed token, saying which.
        let missing = api.send(plain.request(method.clone(), &url)).await;
        missing.expect_error(401, "missing_token");
        assert!(
            missing.message().contains("Authorization: Bearer"),
            "{missing:#?}"
        );
        assert!(missing.headers.contains_key("www-authenticate"));
        let wrong = api
            .send(
                plain
                    .request(method.clone(), &url)
                    .bearer_auth("0".repeat(64)),
            )
            .await;
        wrong.expect_error(401, "invalid_token");
        assert!(wrong.message().contains("--print-token"), "{wrong:#?}");
        let basic = api
            .send(
                plain
                    .request(method.clone(), &url)
                    .basic_auth("me", Some(&shim.token)),
            )
            .await;
        basic.expect_error(401, "invalid_token");
        // A token in the query counts only where browsers cannot set headers.
        let query = api
            .send(plain.request(method.clone(), format!("{url}?token={}", shim.token)))
            .await;
        if path.ends_with("/events") {
            assert_eq!(query.status, StatusCode::OK, "{method} {path}");
        } else {
            query.expect_error(401, "missing_token");
        }
    }

    api.get("/api/v1/nothing-here")
        .await
        .expect_error(404, "no_route");
    api.send(api.request(Method::PUT, "/api/v1/projects"))
        .await
        .expect_error(405, "method_not_allowed");
    api.get("/api/v1/sessions/no-such-thing/console")
        .await
        .expect_error(426, "websocket_required");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projects_tasks_and_sessions_over_rest() {
    let sandbox = Sandbox::new();
    fake_agent_config(&sandbox);
    let daemon = sandbox.daemon().start();
    let shim = sandbox.http().start();
    let api = Api::new(&shim, TIMEOUT);
    let client = daemon.client().await;

    let status = api.get("/api/v1/status").await;
    status.expect(200);
    assert_eq!(status.body["pid"], daemon.pid());
    assert_eq!(status.body["protocol"], aifactory_common::PROTOCOL_VERSION);

    // Projects.
    let path = repo(&sandbox, "demo");
    let created = api
        .post("/api/v1/projects", json!({"path": path, "name": "demo"}))
        .await;
    created.expect(201);
    let id = created.body["id"].as_str().unwrap().to_string();
    assert_eq!(created.body["name"], "demo");
    let location = created.headers["location"].to_str().unwrap().to_string();
    let host = created.body["host"].as_str().unwrap().to_string();
    assert_eq!(location, format!("/api/v1/hosts/{host}/projects/{id}"));
    let fetched = api.get(&location).await;
    fetched.expect(200);
    assert_eq!(fetched.body, created.body);
    api.get("/api/v1/projects/demo").await.expect(200);
    let list = api.get("/api/v1/projects").await;
    list.expect(200);
    assert_eq!(list.body.as_array().map(Vec::len), Some(1), "{list:#?}");
    api.post("/api/v1/projects", json!({"path": path, "name": "demo"}))
        .await
        .expect_error(409, "conflict");
    let relative = api
        .post("/api/v1/projects", json!({"path": "repos/demo"}))
        .await;
    relative.expect_error(400, "invalid");
    assert!(relative.message().contains("not absolute"), "{relative:#?}");
    api.post("/api/v1/projects", json!({"path": path, "nmae": "typo"}))
        .await
        .expect_error(400, "invalid");
    api.post(
        "/api/v1/projects",
        json!({"path": path, "provider": "sourceforge"}),
    )
    .await
    .expect_error(400, "invalid");
    let not_json = api
        .send(
            api.request(Method::POST, "/api/v1/projects")
                .header("content-type", "application/json")
                .body("{\"path\": "),
        )
        .await;
    not_json.expect_error(400, "invalid");
    let no_type = api
        .send(api.request(Method::POST, "/api/v1/projects").body("{}"))
        .await;
    no_type.expect_error(400, "invalid");
    assert!(no_type.message().contains("Content-Type"), "{no_type:#?}");
    api.post(
        "/api/v1/projects",
        json!({"path": sandbox.path().join("nowhere")}),
    )
    .await
    .expect_error(404, "not_found");
    api.get("/api/v1/projects/nope")
        .await
        .expect_error(404, "not_found");

    // Tasks.
    let task = api
        .post(
            "/api/v1/tasks",
            json!({"project": "demo", "spec_id": "001-login"}),
        )
        .await;
    task.expect(201);
    let task_id = task.body["id"].as_str().unwrap().to_string();
    assert_eq!(task.body["phase"], "backlog");
    assert_eq!(
        task.headers["location"].to_str().unwrap(),
        format!("/api/v1/hosts/{host}/tasks/{task_id}")
    );
    api.get(&format!("/api/v1/tasks/{task_id}"))
        .await
        .expect(200);
    let listed = api.get("/api/v1/tasks?project=demo").await;
    listed.expect(200);
    assert_eq!(listed.body[0]["id"], task_id.as_str());
    api.get("/api/v1/tasks?project=nope")
        .await
        .expect_error(404, "not_found");
    api.get("/api/v1/tasks?projet=demo")
        .await
        .expect_error(400, "invalid");
    api.post(
        "/api/v1/tasks",
        json!({"project": "demo", "spec_id": "001-login"}),
    )
    .await
    .expect_error(409, "conflict");
    api.post(
        "/api/v1/tasks",
        json!({"project": "demo", "spec_id": "Bad Spec"}),
    )
    .await
    .expect_error(400, "invalid");
    api.post("/api/v1/tasks", json!({"project": "nope", "spec_id": "x"}))
        .await
        .expect_error(404, "not_found");
    // A project with tasks is not removed.
    api.delete(&format!("/api/v1/projects/{id}"))
        .await
        .expect_error(409, "conflict");

    let started = api
        .post_empty(&format!("/api/v1/tasks/{task_id}/start"))
        .await;
    started.expect(200);
    assert_eq!(started.body["phase"], "planning");
    let session_id = started.body["session_id"].as_str().unwrap().to_string();
    api.post_empty(&format!("/api/v1/tasks/{task_id}/start"))
        .await
        .expect_error(409, "conflict");
    let session = api.get(&format!("/api/v1/sessions/{session_id}")).await;
    session.expect(200);
    assert_eq!(session.body["state"], "running");
    assert_eq!(session.body["cwd"], started.body["worktree"]);
    let restarted = api
        .post_empty(&format!("/api/v1/tasks/{task_id}/restart?grace=1"))
        .await;
    restarted.expect(200);
    assert_ne!(restarted.body["session_id"], session_id.as_str());
    api.post_empty(&format!("/api/v1/tasks/{task_id}/stop?grace=99999"))
        .await
        .expect_error(400, "invalid");
    api.post_empty(&format!("/api/v1/tasks/{task_id}/stop?gracee=1"))
        .await
        .expect_error(400, "invalid");
    let stopped = api
        .post_empty(&format!("/api/v1/tasks/{task_id}/stop?grace=1"))
        .await;
    stopped.expect(200);
    assert_eq!(stopped.body["task"]["phase"], "stopped");
    assert_eq!(stopped.body["survivors"], json!([]));
    // The daemon calls stopping a task that does not run an invalid request.
    let again = api
        .post_empty(&format!("/api/v1/tasks/{task_id}/stop"))
        .await;
    again.expect_error(400, "invalid");
    assert!(again.message().contains("nothing to stop"), "{again:#?}");
    api.post_empty("/api/v1/tasks/nope/start")
        .await
        .expect_error(404, "not_found");

    // Sessions.
    let s = new_session(&client, &sandbox, "sleep 300").await;
    let sessions = api.get("/api/v1/sessions").await;
    sessions.expect(200);
    assert!(
        sessions
            .body
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["id"] == s.id.as_str()),
        "{sessions:#?}"
    );
    let shown = api.get(&format!("/api/v1/sessions/{}", s.id)).await;
    shown.expect(200);
    assert_eq!(shown.body["state"], "running");
    let killed = api
        .delete(&format!("/api/v1/sessions/{}?grace=1", s.id))
        .await;
    killed.expect(200);
    assert_eq!(killed.body["state"], "exited");
    assert!(killed.body["exit"].is_object(), "{killed:#?}");
    // The whole tree's report comes with it: the program was signalled, nothing survived.
    assert!(
        killed.body["signalled"]
            .as_array()
            .is_some_and(|signalled| signalled
                .iter()
                .any(|p| p["command"].as_str().is_some_and(|c| c.contains("sleep")))),
        "{killed:#?}"
    );
    assert_eq!(killed.body["survivors"], json!([]), "{killed:#?}");
    api.delete("/api/v1/sessions/nope")
        .await
        .expect_error(404, "not_found");
    api.get("/api/v1/sessions/nope")
        .await
        .expect_error(404, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_project_is_found_right_after_one_hundred_times_in_a_row() {
    let sandbox = Sandbox::new();
    let _daemon = sandbox.daemon().start();
    let shim = sandbox.http().start();
    let api = Api::new(&shim, TIMEOUT);
    for i in 0..100 {
        let path = init_repo(
            &sandbox.path().join("many").join(format!("p{i}")),
            "main",
            None,
        );
        let created = api
            .post(
                "/api/v1/projects",
                json!({"path": path, "name": format!("p{i}")}),
            )
            .await;
        created.expect(201);
        let location = created.headers["location"].to_str().unwrap().to_string();
        let fetched = api.get(&location).await;
        assert_eq!(
            fetched.status,
            StatusCode::OK,
            "round {i}: GET {location} right after 201: {fetched:#?}"
        );
        assert_eq!(fetched.body["id"], created.body["id"], "round {i}");
    }
    let list = api.get("/api/v1/projects").await;
    assert_eq!(list.body.as_array().map(Vec::len), Some(100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absent_daemon_is_503_naming_the_socket_and_how_to_start_it() {
    let sandbox = Sandbox::new();
    let mut daemon = sandbox.daemon().start();
    let shim = sandbox.http().start();
    let api = Api::new(&shim, TIMEOUT);
    api.get("/api/v1/status").await.expect(200);
    daemon.signal(Signal::SIGTERM);
    daemon.wait_exit(TIMEOUT).expect("daemon stops");
    let socket = sandbox.socket().display().to_string();
    for path in [
        "/api/v1/status",
        "/api/v1/projects",
        "/api/v1/sessions/x",
        "/api/v1/events",
    ] {
        let down = api.get(path).await;
        down.expect_error(503, "daemon_unavailable");
        assert!(down.message().contains(&socket), "{path}: {down:#?}");
        assert!(down.message().contains("aifactoryd"), "{path}: {down:#?}");
        assert!(
            down.message().contains("systemctl start"),
            "{path}: {down:#?}"
        );
    }
    let health = api.get("/healthz").await;
    health.expect(200);
    assert_eq!(health.body["status"], "degraded");
    assert_eq!(health.body["daemon"]["answers"], false);
    assert!(
        health.body["daemon"]["error"]
            .as_str()
            .unwrap()
            .contains(&socket),
        "{health:#?}"
    );
    // The daemon comes back: the shim needs no restart.
    let _daemon = sandbox.daemon().start();
    api.get("/api/v1/status").await.expect(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origins_outside_the_allow_list_are_refused() {
    let sandbox = Sandbox::new();
    let _daemon = sandbox.daemon().start();
    let config = sandbox.path().join("http.toml");
    std::fs::write(&config, "allowed_origins = [\"http://app.example:3000\"]\n").unwrap();
    let shim = sandbox
        .http()
        .arg("--config")
        .arg(config.to_str().unwrap())
        .arg("--allow-origin")
        .arg("http://other.example")
        .start();
    let api = Api::new(&shim, TIMEOUT);
    let refused = api
        .send(
            api.request(Method::GET, "/api/v1/status")
                .header("origin", "http://evil.example"),
        )
        .await;
    refused.expect_error(403, "origin_not_allowed");
    assert!(refused.message().contains("--allow-origin"), "{refused:#?}");
    for origin in ["http://app.example:3000", "http://other.example"] {
        let allowed = api
            .send(
                api.request(Method::GET, "/api/v1/status")
                    .header("origin", origin),
            )
            .await;
        allowed.expect(200);
        assert_eq!(allowed.headers["access-control-allow-origin"], origin);
    }
    // The browser's preflight for an authorized POST.
    let preflight = api
        .send(
            api.http
                .request(Method::OPTIONS, shim.url("/api/v1/projects"))
                .header("origin", "http://app.example:3000")
                .header("access-control-request-method", "POST")
                .header(
                    "access-control-request-headers",
                    "authorization, content-type",
                ),
        )
        .await;
    assert!(preflight.status.is_success(), "{preflight:#?}");
    let allowed_headers = preflight.headers["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(allowed_headers.contains("authorization"), "{preflight:#?}");
}

/// The one host's position in an event's `id:` (this file's shims serve one host).
fn seq_of(event: &Sse) -> Option<u64> {
    let positions = positions(event.id.as_deref()?);
    assert_eq!(positions.len(), 1, "one host: {event:?}");
    positions.into_values().next()
}

fn assert_consecutive(events: &[Sse], after: u64) {
    let ids: Vec<u64> = events.iter().filter_map(seq_of).collect();
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(
            *id,
            after + 1 + i as u64,
            "a gap or a duplicate: {ids:?} after {after}"
        );
    }
    for event in events.iter().filter(|e| e.id.is_some()) {
        assert_eq!(event.seq(), seq_of(event), "{event:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stream_with_ids_resumes_with_last_event_id_and_survives_a_daemon_restart() {
    let sandbox = Sandbox::new();
    let mut daemon = sandbox.daemon().start();
    let shim = sandbox.http().start();
    let api = Api::new(&shim, TIMEOUT);
    let client = daemon.client().await;

    let mut live = SseReader::open(api.shim, None).await;
    let first = new_session(&client, &sandbox, "sleep 300").await;
    let seen = live.until_session("SessionCreated", &first.id).await;
    let base = seq_of(seen.last().unwrap()).unwrap();
    let mut all = seen.clone();

    // Resume after a number: everything after it, nothing twice.
    let second = new_session(&client, &sandbox, "sleep 300").await;
    let mut resumed = SseReader::open(api.shim, Some(&(base - 1).to_string())).await;
    let replay = resumed.until_session("SessionCreated", &second.id).await;
    assert_eq!(seq_of(&replay[0]), Some(base), "{replay:?}");
    assert_consecutive(&replay, base - 1);
    drop(resumed);
    all.extend(live.until_session("SessionCreated", &second.id).await);

    api.send(
        api.request(Method::GET, "/api/v1/events")
            .header("last-event-id", "yesterday"),
    )
    .await
    .expect_error(400, "invalid");

    // A daemon crash under an open stream: the shim reconnects from the last number it sent.
    drop(client);
    daemon.signal(Signal::SIGKILL);
    daemon.wait_exit(TIMEOUT).expect("daemon killed");
    let daemon = sandbox.daemon().start();
    let client = daemon.client().await;
    let third = new_session(&client, &sandbox, "sleep 300").await;
    all.extend(live.until_session("SessionCreated", &third.id).await);
    assert_consecutive(&all, base - 1);
    let kinds: Vec<&str> = all.iter().map(|e| e.event.as_str()).collect();
    assert!(kinds.contains(&"SessionCreated"), "{kinds:?}");
}

/// Opens a console with the token offered as a subprotocol.
async fn console(shim: &Http, session: &str, from: Option<u64>) -> Ws {
    let mut path = format!("/api/v1/sessions/{session}/console");
    if let Some(from) = from {
        path.push_str(&format!("?from={from}"));
    }
    let mut request = shim.ws_url(&path).into_client_request().unwrap();
    let protocol = format!("aifactory.token.{}", shim.token);
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_str(&protocol).unwrap(),
    );
    let (ws, response) = tokio::time::timeout(TIMEOUT, tokio_tungstenite::connect_async(request))
        .await
        .expect("console handshake in time")
        .expect("console handshake");
    assert_eq!(
        response.headers()["sec-websocket-protocol"],
        protocol.as_str(),
        "the chosen subprotocol is echoed"
    );
    ws
}

/// What a console delivered.
#[derive(Debug, Default)]
struct Console {
    data: Vec<u8>,
    notices: Vec<Value>,
    close: Option<(u16, String)>,
}

impl Console {
    /// Reads until `done` holds for the output, or the server closes.
    async fn read_until(&mut self, ws: &mut Ws, what: &str, done: impl Fn(&[u8]) -> bool) {
        while !done(&self.data) {
            let message = tokio::time::timeout(TIMEOUT, ws.next())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "no {what} within {TIMEOUT:?}; got {} bytes: {:?}; notices {:?}",
                        self.data.len(),
                        String::from_utf8_lossy(&self.data[self.data.len().saturating_sub(200)..]),
                        self.notices
                    )
                });
            match message {
                Some(Ok(Message::Binary(bytes))) => self.data.extend_from_slice(&bytes),
                Some(Ok(Message::Text(text))) => self
                    .notices
                    .push(serde_json::from_str(text.as_str()).expect("JSON notice")),
                Some(Ok(Message::Close(frame))) => {
                    self.close = frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                    return;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("console read failed: {e}; {self:?}"),
                None => return,
            }
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_bytes_round_trip_exactly_resize_reaches_stty_and_the_end_closes_with_the_status() {
    let sandbox = Sandbox::new();
    let daemon = sandbox.daemon().start();
    let shim = sandbox.http().start();
    let client = daemon.client().await;

    // Raw mode, no echo: every byte typed comes back as it is.
    let echo = new_session(
        &client,
        &sandbox,
        "stty raw -echo -iexten; printf READY; exec cat",
    )
    .await;
    let mut ws = console(&shim, &echo.id, None).await;
    let mut got = Console::default();
    got.read_until(&mut ws, "READY", |d| d.ends_with(b"READY"))
        .await;
    let ready = got.data.len();
    let mut sent = Vec::new();
    for round in 0..64u32 {
        // Every byte value, in a different order each time, in frames of varied size.
        let chunk: Vec<u8> = (0..=255u8)
            .cycle()
            .skip(round as usize * 7)
            .take(256 + round as usize * 13)
            .collect();
        sent.extend_from_slice(&chunk);
        ws.send(Message::Binary(chunk.into())).await.unwrap();
    }
    got.read_until(&mut ws, "the echo", |d| d.len() >= ready + sent.len())
        .await;
    assert_eq!(got.data.len(), ready + sent.len(), "no byte more");
    assert!(got.data[ready..] == sent[..], "the bytes come back exactly");
    assert!(got.notices.is_empty(), "{:?}", got.notices);
    // A client that closes gets the close answered.
    ws.close(None).await.unwrap();
    let reply = tokio::time::timeout(TIMEOUT, ws.next())
        .await
        .expect("a close reply in time");
    assert!(
        matches!(reply, Some(Ok(Message::Close(_)))),
        "the server answers the client's close: {reply:?}"
    );

    // Resize, then ask the program: it sees the new size.
    let sized = new_session(
        &client,
        &sandbox,
        "stty -echo; echo READY; while read x; do [ \"$x\" = q ] && exit 3; stty size; done",
    )
    .await;
    let mut ws = console(&shim, &sized.id, None).await;
    let mut got = Console::default();
    got.read_until(&mut ws, "READY", |d| contains(d, b"READY"))
        .await;
    ws.send(Message::Text(
        r#"{"resize": {"cols": 91, "rows": 37}}"#.into(),
    ))
    .await
    .unwrap();
    ws.send(Message::Binary(b"\n"[..].into())).await.unwrap();
    got.read_until(&mut ws, "stty size", |d| contains(d, b"37 91"))
        .await;
    // A text frame that is not a resize gets an error notice; the console goes on.
    ws.send(Message::Text(r#"{"resize": {"cols": "wide"}}"#.into()))
        .await
        .unwrap();
    ws.send(Message::Text(
        r#"{"resize": {"cols": 100, "rows": 20}}"#.into(),
    ))
    .await
    .unwrap();
    ws.send(Message::Binary(b"\n"[..].into())).await.unwrap();
    got.read_until(&mut ws, "the second size", |d| contains(d, b"20 100"))
        .await;
    assert_eq!(got.notices.len(), 1, "{:?}", got.notices);
    assert_eq!(got.notices[0]["error"]["code"], "invalid");
    // The program ends: the console closes with its exit status.
    ws.send(Message::Binary(b"q\n"[..].into())).await.unwrap();
    got.read_until(&mut ws, "the close", |_| false).await;
    assert_eq!(got.close, Some((1000, "exited 3".to_string())), "{got:?}");

    // An ended session's console replays its output and closes the same way.
    let mut ws = console(&shim, &sized.id, Some(0)).await;
    let mut again = Console::default();
    again.read_until(&mut ws, "the close", |_| false).await;
    assert_eq!(again.close, Some((1000, "exited 3".to_string())));
    assert_eq!(again.data, got.data, "the replay is the same bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_token_missing_wrong_or_right_on_the_websocket() {
    let sandbox = Sandbox::new();
    let daemon = sandbox.daemon().start();
    let shim = sandbox
        .http()
        .arg("--allow-origin")
        .arg("http://app.example")
        .start();
    let client = daemon.client().await;
    let s = new_session(&client, &sandbox, "echo MARK; sleep 300").await;
    let path = format!("/api/v1/sessions/{}/console", s.id);

    async fn refused(request: tungstenite::handshake::client::Request) -> (u16, Value) {
        match tokio_tungstenite::connect_async(request).await {
            Err(tungstenite::Error::Http(response)) => {
                let body = response.body().clone().unwrap_or_default();
                (
                    response.status().as_u16(),
                    serde_json::from_slice(&body).unwrap_or(Value::Null),
                )
            }
            Err(e) => panic!("expected an HTTP refusal, got {e}"),
            Ok(_) => panic!("the handshake succeeded without the right token"),
        }
    }

    let (status, body) = refused(shim.ws_url(&path).into_client_request().unwrap()).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "missing_token", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("aifactory.token."),
        "{body}"
    );

    let mut wrong = shim.ws_url(&path).into_client_request().unwrap();
    wrong.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("aifactory.token.0000000000000000000000000000000000000000"),
    );
    let (status, body) = refused(wrong).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "invalid_token", "{body}");

    let wrong_query = shim
        .ws_url(&format!("{path}?token=nope"))
        .into_client_request()
        .unwrap();
    let (status, body) = refused(wrong_query).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("invalid_token"))
    );

    let mut evil = shim
        .ws_url(&format!("{path}?token={}", shim.token))
        .into_client_request()
        .unwrap();
    evil.headers_mut()
        .insert("origin", HeaderValue::from_static("http://evil.example"));
    let (status, body) = refused(evil).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("origin_not_allowed"))
    );

    let gone = shim
        .ws_url(&format!(
            "/api/v1/sessions/nope/console?token={}",
            shim.token
        ))
        .into_client_request()
        .unwrap();
    let (status, body) = refused(gone).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );

    // Right as a subprotocol (echoed; checked in `console`), and right as a query parameter
    // from an allowed origin.
    let mut ws = console(&shim, &s.id, None).await;
    let mut got = Console::default();
    got.read_until(&mut ws, "MARK", |d| contains(d, b"MARK"))
        .await;
    let mut by_query = shim
        .ws_url(&format!("{path}?token={}", shim.token))
        .into_client_request()
        .unwrap();
    by_query
        .headers_mut()
        .insert("origin", HeaderValue::from_static("http://app.example"));
    let (mut ws, response) = tokio_tungstenite::connect_async(by_query).await.unwrap();
    assert!(!response.headers().contains_key("sec-websocket-protocol"));
    let mut got = Console::default();
    got.read_until(&mut ws, "MARK", |d| contains(d, b"MARK"))
        .await;

    // The shim stops: open consoles are closed with 1001 and where to resume.
    shim.signal(Signal::SIGTERM);
    got.read_until(&mut ws, "the close", |_| false).await;
    let (code, reason) = got.close.clone().expect("a close frame");
    assert_eq!(code, 1001, "{reason}");
    assert!(reason.contains("from="), "{reason}");
    let mut shim = shim;
    let status = shim
        .wait_exit(TIMEOUT)
        .expect("the shim exits after SIGTERM");
    assert!(status.success(), "{status}");
}

/// `0\r\n1\r\n2\r\n...` as a terminal shows `echo $i`: checks that the complete lines count up
/// by one from `first`, and returns how many there are.
#[track_caller]
fn assert_counting(bytes: &[u8], first: u64) -> u64 {
    let text = String::from_utf8_lossy(bytes);
    let mut expect = first;
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    for line in complete.split('\n') {
        let line = line.trim_end_matches('\r');
        assert_eq!(
            line,
            expect.to_string(),
            "a gap or a duplicate after {} lines",
            expect - first
        );
        expect += 1;
    }
    expect - first
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_replay_from_any_offset_has_no_gap_or_duplicate() {
    let sandbox = Sandbox::new();
    let daemon = sandbox.daemon().start();
    let shim = sandbox.http().start();
    let client = daemon.client().await;
    let s = new_session(
        &client,
        &sandbox,
        "i=0; while [ $i -lt 20000 ]; do echo $i; i=$((i+1)); done; echo END; sleep 300",
    )
    .await;
    let mut ws = console(&shim, &s.id, Some(0)).await;
    let mut full = Console::default();
    full.read_until(&mut ws, "END", |d| contains(d, b"END\r\n"))
        .await;
    drop(ws);
    let all = full.data;
    assert_eq!(assert_counting(&all[..all.len() - 5], 0), 20000);
    for from in [
        0,
        1,
        2,
        4095,
        4096,
        65_536,
        65_537,
        all.len() as u64 - 7,
        all.len() as u64,
    ] {
        let mut ws = console(&shim, &s.id, Some(from)).await;
        let mut part = Console::default();
        let want = all.len() - from as usize;
        part.read_until(&mut ws, "the rest", |d| d.len() >= want)
            .await;
        assert_eq!(
            part.data.len(),
            want,
            "from {from}: no byte more, none less"
        );
        assert!(
            part.data == all[from as usize..],
            "from {from}: the same bytes"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_loses_no_byte_across_a_daemon_sigkill_and_restart() {
    let sandbox = Sandbox::new();
    let mut daemon: Daemon = sandbox.daemon().start();
    let shim = sandbox.http().start();
    let client = daemon.client().await;
    let s = new_session(
        &client,
        &sandbox,
        "i=0; while :; do echo $i; i=$((i+1)); if [ $((i % 20)) = 0 ]; then sleep 0.01; fi; done",
    )
    .await;
    drop(client);
    // A: stays connected through the crash; the shim reconnects by itself.
    let mut a_ws = console(&shim, &s.id, Some(0)).await;
    let mut a = Console::default();
    a.read_until(&mut a_ws, "5000 bytes", |d| d.len() >= 5000)
        .await;
    // B: leaves before the crash and comes back with its offset.
    let mut b_ws = console(&shim, &s.id, Some(0)).await;
    let mut b = Console::default();
    b.read_until(&mut b_ws, "3000 bytes", |d| d.len() >= 3000)
        .await;
    drop(b_ws);
    let b_offset = b.data.len() as u64;

    daemon.signal(Signal::SIGKILL);
    daemon.wait_exit(TIMEOUT).expect("daemon killed");
    let _daemon = sandbox.daemon().start();
    // A gets everything written so far, which includes output made after the restart: that
    // can only come through a new daemon connection the shim opened by itself.
    let written = std::fs::metadata(s.pane_dir.join(aifactory_common::pane::OUTPUT_LOG))
        .unwrap()
        .len() as usize;
    a.read_until(&mut a_ws, "the output written after the restart", |d| {
        d.len() >= written + 10_000
    })
    .await;
    assert!(a.close.is_none(), "{:?}", a.close);
    assert!(
        shim.logs()
            .contains("console stream from aifactoryd ended; re-opening it"),
        "the bytes after the crash came through a new daemon connection:\n{}",
        shim.logs()
    );
    let lines = assert_counting(&a.data, 0);
    assert!(lines > 1000, "{lines}");

    let mut b_ws = console(&shim, &s.id, Some(b_offset)).await;
    b.read_until(&mut b_ws, "100000 more bytes after reconnecting", |d| {
        d.len() as u64 >= b_offset + 100_000
    })
    .await;
    assert_counting(&b.data, 0);
    let common = a.data.len().min(b.data.len());
    assert!(
        a.data[..common] == b.data[..common],
        "both saw the same bytes"
    );
    Api::new(&shim, TIMEOUT)
        .delete(&format!("/api/v1/sessions/{}?grace=1", s.id))
        .await
        .expect(200);
    a.read_until(&mut a_ws, "the close after the kill", |_| false)
        .await;
    let (code, reason) = a.close.expect("closed when the session ended");
    assert_eq!(code, 1000);
    assert!(
        reason.starts_with("killed by signal") || reason.starts_with("exited"),
        "{reason}"
    );
}

/// A console page: it opens the WebSocket named in its address's fragment (`ws`, with the
/// token from `token` offered as the subprotocol), shows the output in `#out`, and sends what
/// is typed (keydown) as input.
const CONSOLE_PAGE: &str = r#"<!doctype html><html><head><title>console</title></head>
<body><pre id="out"></pre><script>
const params = new URLSearchParams(location.hash.slice(1));
const out = document.getElementById('out');
const ws = new WebSocket(params.get('ws'), ['aifactory.token.' + params.get('token')]);
ws.binaryType = 'arraybuffer';
const decoder = new TextDecoder();
const encoder = new TextEncoder();
let closed = null;
ws.onmessage = (event) => {
  if (typeof event.data === 'string') { console.log('notice', event.data); return; }
  out.textContent += decoder.decode(new Uint8Array(event.data), {stream: true});
};
ws.onclose = (event) => { closed = event.code + ' ' + event.reason; };
document.addEventListener('keydown', (event) => {
  const data = event.key === 'Enter' ? '\r' : event.key.length === 1 ? event.key : null;
  if (data !== null && ws.readyState === WebSocket.OPEN) {
    ws.send(encoder.encode(data));
    event.preventDefault();
  }
});
</script></body></html>"#;

/// `text` as one URL query or fragment component.
fn url_component(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_browser_opens_the_console_with_the_token_and_shows_the_output() {
    const TEST: &str = "a_real_browser_opens_the_console_with_the_token_and_shows_the_output";
    let sandbox = Sandbox::new();
    let Some(browser) = Browser::launch_or_skip(TEST, sandbox.path()).await else {
        return;
    };
    let daemon = sandbox.daemon().start();
    let served = Served::start(CONSOLE_PAGE.to_string(), &[]);
    let shim = sandbox
        .http()
        .arg("--allow-origin")
        .arg(&served.origin)
        .start();
    let client = daemon.client().await;
    // Built by the shell, so the marker is only in the output, never in the page; then each
    // line typed comes back shouted by the session's program, not just echoed by the terminal.
    let s = new_session(
        &client,
        &sandbox,
        "printf 'hello from the session: %s-%s\\n' browser-marker 4711; \
         while IFS= read -r line; do printf 'shouted: %s\\n' \"$line\" | tr a-z A-Z; done",
    )
    .await;
    let page = browser.new_page().await;
    let ws_url = shim.ws_url(&format!("/api/v1/sessions/{}/console?from=0", s.id));
    page.goto(&format!(
        "{}#ws={}&token={}",
        served.url(),
        url_component(&ws_url),
        url_component(&shim.token)
    ))
    .await;
    // Or the console's end, which fails at once with what the browser said.
    page.wait_until(
        "closed !== null || document.getElementById('out').textContent.includes('browser-marker-4711')",
        "the session's output in the page",
        BROWSER_TIMEOUT,
    )
    .await;
    let closed: Option<String> = page.eval("closed").await;
    if let Some(closed) = closed {
        panic!(
            "the page's console closed ({closed}) before it showed the output\n{}",
            page.report().await
        );
    }
    let protocol: String = page.eval("ws.protocol").await;
    assert_eq!(
        protocol,
        format!("aifactory.token.{}", shim.token),
        "the browser accepted the echoed subprotocol"
    );

    page.type_text("typed in the browser\n").await;
    page.wait_until(
        "closed !== null || document.getElementById('out').textContent.includes('SHOUTED: TYPED IN THE BROWSER')",
        "the session's answer to what was typed",
        BROWSER_TIMEOUT,
    )
    .await;
    let closed: Option<String> = page.eval("closed").await;
    assert_eq!(closed, None, "the console stays open");
    let shown: String = page.eval("document.getElementById('out').innerText").await;
    assert!(
        shown.contains("hello from the session: browser-marker-4711"),
        "the page shows what the session printed: {shown:?}"
    );
    let console = page.console();
    assert!(
        !console.iter().any(|line| line.starts_with("[exception]")),
        "no script error on the page: {console:#?}"
    );
    drop(page);
    browser.close();
}

/// The driver itself against a page of its own: keys, the viewport, a screenshot, an
/// HttpOnly cookie, the page's console and exceptions, and a failed wait's message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_driver_types_resizes_screenshots_reads_cookies_and_reports_the_console() {
    const TEST: &str =
        "the_browser_driver_types_resizes_screenshots_reads_cookies_and_reports_the_console";
    let sandbox = Sandbox::new();
    let Some(browser) = Browser::launch_or_skip(TEST, sandbox.path()).await else {
        return;
    };
    let served = Served::start(
        r#"<!doctype html><html><body><input id="in"><script>
const keys = [];
document.addEventListener('keydown', (e) => keys.push((e.ctrlKey ? 'C-' : '') + e.key));
console.log('page says', 6 * 7);
setTimeout(() => { throw new Error('thrown on' + ' purpose'); }, 0);
</script></body></html>"#
            .to_string(),
        &["Set-Cookie: probe=1; Path=/; HttpOnly; SameSite=Strict"],
    );
    let page = browser.new_page().await;
    page.goto(&served.url()).await;

    page.wait_for_console("the page's log line", BROWSER_TIMEOUT, |l| {
        l == "[console.log] page says 42"
    })
    .await;
    page.wait_for_console("the page's uncaught exception", BROWSER_TIMEOUT, |l| {
        l.starts_with("[exception]") && l.contains("thrown on purpose")
    })
    .await;

    page.set_viewport(640, 480).await;
    let size: (u32, u32) = page.eval("[window.innerWidth, window.innerHeight]").await;
    assert_eq!(size, (640, 480), "the viewport is emulated");
    let shot = sandbox.path().join("page.png");
    page.screenshot(&shot).await;
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!((width, height), (640, 480), "of the viewport");

    let _: () = page.eval("document.getElementById('in').focus()").await;
    page.type_text("Hi there, 42!").await;
    page.press("Control+c").await;
    page.press("Backspace").await;
    page.wait_until(
        "document.getElementById('in').value === 'Hi there, 42'",
        "the typed text, less the character Backspace took",
        BROWSER_TIMEOUT,
    )
    .await;
    let keys: Vec<String> = page.eval("keys").await;
    assert_eq!(
        keys.iter().rev().take(2).rev().collect::<Vec<_>>(),
        ["C-c", "Backspace"],
        "{keys:?}"
    );
    assert_eq!(keys.len(), "Hi there, 42!".len() + 2, "{keys:?}");

    let cookies = page.cookies().await;
    let probe = cookies
        .iter()
        .find(|c| c.name == "probe")
        .unwrap_or_else(|| panic!("the page's cookie: {cookies:?}"));
    assert!(probe.http_only, "{probe:?}");
    assert_eq!(probe.same_site, Some(CookieSameSite::Strict), "{probe:?}");
    let script_sees: String = page.eval("document.cookie").await;
    assert!(!script_sees.contains("probe"), "HttpOnly: {script_sees:?}");

    let thrown = page
        .try_eval::<Value>("(() => { throw new Error('evaluated and thrown'); })()")
        .await
        .unwrap_err();
    assert!(thrown.contains("evaluated and thrown"), "{thrown}");
    let awaited: u32 = page
        .eval("new Promise((resolve) => setTimeout(() => resolve(7), 10))")
        .await;
    assert_eq!(awaited, 7, "a promise is awaited");

    // A wait that never ends says what it waited for and what the page logged.
    let failed = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(page.wait_until(
        "false",
        "a condition that never holds",
        Duration::from_secs(1),
    )))
    .await
    .unwrap_err();
    let message = failed.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.contains("waiting for a condition that never holds")
            && message.contains("[console.log] page says 42")
            && message.contains("thrown on purpose"),
        "{message}"
    );
    drop(page);
    browser.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_without_the_token_says_only_ok_or_unavailable() {
    let sandbox = Sandbox::new();
    let mut daemon = sandbox.daemon().start();
    let shim = sandbox.http().start();
    let api = Api::new(&shim, TIMEOUT);
    let plain = reqwest::Client::builder().timeout(TIMEOUT).build().unwrap();
    let socket = sandbox.socket().display().to_string();

    let brief = api.send(plain.get(shim.url("/healthz"))).await;
    brief.expect(200);
    assert_eq!(brief.body, json!({"status": "ok"}), "{brief:#?}");
    // The holder of the token still gets the details.
    let full = api.get("/healthz").await;
    full.expect(200);
    assert_eq!(full.body["daemon"]["pid"], daemon.pid(), "{full:#?}");
    assert_eq!(full.body["daemon"]["socket"], socket.as_str(), "{full:#?}");
    // A wrong token is no token.
    let wrong = api
        .send(plain.get(shim.url("/healthz")).bearer_auth("0".repeat(64)))
        .await;
    assert_eq!(wrong.body, json!({"status": "ok"}), "{wrong:#?}");

    daemon.signal(Signal::SIGTERM);
    daemon.wait_exit(TIMEOUT).expect("daemon stops");
    let down = api.send(plain.get(shim.url("/healthz"))).await;
    down.expect(200);
    assert_eq!(down.body, json!({"status": "unavailable"}), "{down:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_percent_escape_or_an_over_long_url_gets_the_json_error_shape() {
    let sandbox = Sandbox::new();
    let _daemon = sandbox.daemon().start();
    let shim = sandbox.http().start();
    let api = Api::new(&shim, TIMEOUT);
    let mut wrong = Vec::new();
    for path in [
        "/api/v1/sessions/%FF",
        "/api/v1/sessions/%ZZ",
        "/api/v1/sessions/%",
        "/api/v1/projects/a%C3%28b",
        "/api/v1/tasks/%E2%82/start",
        "/api/v1/sessions/%FF/console",
    ] {
        let method = if path.ends_with("/start") {
            Method::POST
        } else {
            Method::GET
        };
        let response = api
            .request(method, path)
            .send()
            .await
            .expect("HTTP request");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status != 400 || body["error"]["code"] != "invalid" {
            wrong.push(format!("{path}: {status} {text:?}"));
        }
    }
    assert!(wrong.is_empty(), "not a JSON 400 `invalid`: {wrong:#?}");
    // Past hyper's limit (65,534 bytes), which answers before any route or middleware runs.
    // Over raw TCP: reqwest refuses to send such a URL.
    let path = format!("/api/v1/sessions/{}", "a".repeat(70_000));
    let mut tcp = TcpStream::connect(shim.base.trim_start_matches("http://"))
        .await
        .unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\r\n",
        shim.token
    );
    // The shim may answer and close before it has read everything.
    let _ = tokio::io::AsyncWriteExt::write_all(&mut tcp, request.as_bytes()).await;
    let mut raw = Vec::new();
    tokio::time::timeout(
        TIMEOUT,
        tokio::io::AsyncReadExt::read_to_end(&mut tcp, &mut raw),
    )
    .await
    .expect("an answer to an over-long URL")
    .unwrap_or_default();
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    assert!(head.starts_with("HTTP/1.1 414 "), "{text}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{text}"
    );
    let body: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(body["error"]["code"], "uri_too_long", "{text}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("shorter"),
        "{text}"
    );
    // The shim still serves.
    api.get("/api/v1/status").await.expect(200);
}

/// `TaskCreated` of `spec` on `host`.
fn created(event: &Sse, host: &str, spec: &str) -> bool {
    event.event == "TaskCreated"
        && event.host() == host
        && event.data["kind"]["TaskCreated"]["spec_id"] == spec
}

/// Every host's events in `events` follow its position in `from` one by one: no gap, no
/// duplicate.
fn assert_consecutive_per_host(events: &[Sse], from: &std::collections::BTreeMap<String, u64>) {
    let mut next = from.clone();
    for event in events.iter().filter(|e| e.id.is_some()) {
        let position = next.entry(event.host().to_string()).or_insert(0);
        assert_eq!(
            event.seq(),
            Some(*position + 1),
            "a gap or a duplicate on {}: {events:#?}",
            event.host()
        );
        *position += 1;
        assert_eq!(
            positions(event.id.as_deref().unwrap_or_default()).get(event.host()),
            Some(&*position),
            "the id carries the event's position: {event:?}"
        );
    }
}

/// One shim, two daemons as two hosts (`[[hosts]]` with `unix://` URLs): lists gathered with
/// `host` on every object, objects addressed by host, the merged event stream resumed exactly
/// per host across a shim restart, and a host whose daemon stops marked down with the reason
/// while the other goes on, then back by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shim_serves_two_daemons_as_two_hosts() {
    let a = Sandbox::new();
    let b = Sandbox::new();
    fake_agent_config(&a);
    fake_agent_config(&b);
    let _daemon_a = a.daemon().start();
    let mut daemon_b = b.daemon().start();
    let hosts = [("a", &a), ("b", &b)]
        .iter()
        .map(|(name, s)| host_entry(name, &format!("unix://{}", s.socket().display())))
        .collect::<String>();
    let mut shim = a.http().hosts(&hosts).start();
    let api = Api::new(&shim, TIMEOUT);

    let listed = api.get("/api/v1/hosts").await;
    listed.expect(200);
    let names: Vec<&str> = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b"], "{listed:#?}");
    for host in listed.body.as_array().unwrap() {
        assert_eq!(host["state"], "up", "{host:#}");
        assert_eq!(host["version"], env!("CARGO_PKG_VERSION"), "{host:#}");
        assert!(host["load"]["cpus"].as_u64() >= Some(1), "{host:#}");
    }

    // Projects: the body names the host; without it, with two hosts, the answer says so.
    let (alpha, beta) = (repo(&a, "alpha"), repo(&b, "beta"));
    api.post("/api/v1/projects", json!({"path": alpha}))
        .await
        .expect_error(400, "host_required");
    api.post("/api/v1/projects", json!({"host": "zz", "path": alpha}))
        .await
        .expect_error(404, "unknown_host");
    let project = api
        .post("/api/v1/projects", json!({"host": "a", "path": alpha}))
        .await;
    project.expect(201);
    assert_eq!(project.body["host"], "a");
    let location = project.headers["location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with("/api/v1/hosts/a/projects/p-"),
        "{location}"
    );
    api.get(&location).await.expect(200);
    api.post("/api/v1/projects", json!({"host": "b", "path": beta}))
        .await
        .expect(201);

    let mut events = SseReader::open(api.shim, None).await;
    for (host, project, spec) in [("a", "alpha", "001-a"), ("b", "beta", "001-b")] {
        let task = api
            .post(
                "/api/v1/tasks",
                json!({"host": host, "project": project, "spec_id": spec}),
            )
            .await;
        task.expect(201);
        assert_eq!(task.body["host"], host);
    }
    let all = api.get("/api/v1/tasks").await;
    all.expect(200);
    let on: Vec<(&str, &str)> = all
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["host"].as_str().unwrap(), t["spec_id"].as_str().unwrap()))
        .collect();
    assert_eq!(on, [("a", "001-a"), ("b", "001-b")], "{all:#?}");
    let only_b = api.get("/api/v1/tasks?host=b").await;
    assert_eq!(only_b.body.as_array().map(Vec::len), Some(1), "{only_b:#?}");
    api.get("/api/v1/tasks/001-a")
        .await
        .expect_error(400, "host_required");
    let shown = api.get("/api/v1/hosts/b/tasks/001-b").await;
    shown.expect(200);
    assert_eq!(shown.body["host"], "b");
    api.get("/api/v1/hosts/a/tasks/001-b")
        .await
        .expect_error(404, "not_found");
    api.get("/api/v1/hosts/zz/tasks/001-b")
        .await
        .expect_error(404, "unknown_host");

    let mut seen = Vec::new();
    for (host, spec) in [("a", "001-a"), ("b", "001-b")] {
        if !seen.iter().any(|e| created(e, host, spec)) {
            seen.extend(events.until(|e| created(e, host, spec)).await);
        }
    }
    let resume = events.last_id.clone().expect("an id");
    assert_eq!(
        positions(&resume).keys().collect::<Vec<_>>(),
        ["a", "b"],
        "{resume}"
    );
    drop(events);

    // The shim restarts while both hosts make events: resuming loses and repeats none.
    drop(api);
    shim.signal(Signal::SIGTERM);
    shim.wait_exit(TIMEOUT).expect("the shim stops");
    for (sandbox, project, spec) in [(&a, "alpha", "002-a"), (&b, "beta", "002-b")] {
        sandbox
            .ctl(&["tasks", "create", "--project", project, "--spec", spec])
            .assert_ok();
    }
    let shim = a.http().hosts(&hosts).log_name("http-2").start();
    let api = Api::new(&shim, TIMEOUT);
    let mut events = SseReader::open(api.shim, Some(&resume)).await;
    let mut resumed = events.until(|e| created(e, "a", "002-a")).await;
    if !resumed.iter().any(|e| created(e, "b", "002-b")) {
        resumed.extend(events.until(|e| created(e, "b", "002-b")).await);
    }
    assert_consecutive_per_host(&resumed, &positions(&resume));

    // Host b's daemon stops: b is down with the reason, a goes on.
    daemon_b.signal(Signal::SIGTERM);
    daemon_b.wait_exit(TIMEOUT).expect("daemon b stops");
    let down = events
        .until(|e| e.event == "daemon" && e.host() == "b")
        .await;
    let notice = &down[down.len() - 1].data;
    assert_eq!(notice["daemon"], "unavailable", "{notice:#}");
    let socket_b = b.socket().display().to_string();
    assert!(
        notice["message"].as_str().unwrap_or("").contains(&socket_b),
        "{notice:#}"
    );
    let listed = api.get("/api/v1/hosts").await;
    assert_eq!(listed.body[1]["state"], "down", "{listed:#?}");
    assert!(
        listed.body[1]["reason"]
            .as_str()
            .unwrap_or("")
            .contains(&socket_b),
        "{listed:#?}"
    );
    assert_eq!(listed.body[0]["state"], "up", "{listed:#?}");
    let left = api.get("/api/v1/tasks").await;
    left.expect(200);
    assert!(
        left.body
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["host"] == "a"),
        "{left:#?}"
    );
    api.get("/api/v1/hosts/b/tasks/001-b")
        .await
        .expect_error(503, "daemon_unavailable");
    api.post(
        "/api/v1/tasks",
        json!({"host": "a", "project": "alpha", "spec_id": "003-a"}),
    )
    .await
    .expect(201);
    events.until(|e| created(e, "a", "003-a")).await;

    // Back: b rejoins by itself.
    let _daemon_b = b.daemon().start();
    let back = events
        .until(|e| e.event == "daemon" && e.host() == "b")
        .await;
    assert_eq!(back[back.len() - 1].data["daemon"], "available");
    let listed = api.get("/api/v1/hosts").await;
    assert_eq!(listed.body[1]["state"], "up", "{listed:#?}");
    let again = api.get("/api/v1/tasks?host=b").await;
    assert_eq!(again.body.as_array().map(Vec::len), Some(2), "{again:#?}");
}
