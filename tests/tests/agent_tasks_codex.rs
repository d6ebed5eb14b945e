//! The real Codex CLI (0.171, `tests/agents/install`) run by the daemon as a task's agent,
//! offline: an `openai-compatible` profile with its built-in command (codex with a provider of
//! its own, its retries off) pointed at the scripted Responses API of
//! `aifactory_tests::openai_api`. The key comes from the daemon's environment or an `env_file`;
//! the profile's `env` gives codex a private `CODEX_HOME` and points every other host at the
//! egress trap, which must see nothing. Success, 401, overloaded, resume by hand, and a hang
//! that stalls (then ends when the server answers) or is restarted into the same thread.
//!
//! One piece past 600 lines: every scenario shares the rig (daemon, scripted server, trap,
//! event log) and the readers of what the server received; split, they would be repeated.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aifactory_common::protocol::{Event, EventKind, FailureKind, Request, StreamItem};
use aifactory_tests::codex_cli::MODEL;
use aifactory_tests::egress::EgressTrap;
use aifactory_tests::git::committed_repo;
use aifactory_tests::openai_api::{
    CACHED_TOKENS, INPUT_TOKENS, OUTPUT_TOKENS, OpenAiApi, Recorded, Turn,
};
use aifactory_tests::wait::wait_for;
use aifactory_tests::{Daemon, Sandbox, skip};
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(40);
const KEY_ENV: &str = "AIFACTORY_TEST_OPENAI_KEY";
const KEY: &str = "sk-scripted-task-key-0123456789";

/// Where the profile's key comes from.
enum KeyFrom {
    /// The daemon's own environment.
    DaemonEnv,
    /// An `env_file` of mode 0600.
    EnvFile,
}

/// The kind of the profile.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// `openai-compatible`: codex with a provider of its own (`base_url`, `api_key_env`), its
    /// retries off.
    OpenaiCompatible,
    /// `codex`: codex's built-in OpenAI provider, pointed at the server by `openai_base_url` in
    /// the private `CODEX_HOME`'s config.toml (codex 0.171 ignores `OPENAI_BASE_URL`); the key
    /// in `CODEX_API_KEY`.
    Codex,
}

/// A daemon with one codex profile, the scripted server, the egress trap and a task.
struct Rig {
    kind: Kind,
    sandbox: Sandbox,
    api: OpenAiApi,
    trap: EgressTrap,
    daemon: Daemon,
    id: String,
    events: Arc<Mutex<Vec<Event>>>,
}

impl Rig {
    /// `None` (after reporting the skip) when codex is not installed. `profile` adds lines to
    /// the profile's table (restart policy, stall settings).
    async fn start(test: &str, script: Vec<Turn>, profile: &str, key: KeyFrom) -> Option<Rig> {
        Rig::start_kind(test, Kind::OpenaiCompatible, script, profile, key).await
    }

    async fn start_kind(
        test: &str,
        kind: Kind,
        script: Vec<Turn>,
        profile: &str,
        key: KeyFrom,
    ) -> Option<Rig> {
        let codex = match aifactory_tests::agent_clis::codex() {
            Ok(codex) => codex,
            Err(e) => {
                skip(test, &e.to_string());
                return None;
            }
        };
        let sandbox = Sandbox::new();
        let api = OpenAiApi::start(
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind the scripted API"),
            script,
        );
        let trap = EgressTrap::start();
        let codex_home = sandbox.path().join("codex-home");
        std::fs::create_dir_all(&codex_home).unwrap();
        let key_env = match kind {
            Kind::OpenaiCompatible => KEY_ENV,
            Kind::Codex => "CODEX_API_KEY",
        };
        let provider = match kind {
            Kind::OpenaiCompatible => format!(
                "kind = \"openai-compatible\"\nbase_url = {:?}\napi_key_env = {KEY_ENV:?}\n",
                api.base_url()
            ),
            Kind::Codex => {
                std::fs::write(
                    codex_home.join("config.toml"),
                    format!("openai_base_url = {:?}\n", api.base_url()),
                )
                .unwrap();
                "kind = \"codex\"\n".to_string()
            }
        };
        let mut env = vec![format!("CODEX_HOME = {:?}", codex_home.to_str().unwrap())];
        env.extend(trap.env().into_iter().map(|(k, v)| format!("{k} = {v:?}")));
        let key_source = match key {
            KeyFrom::DaemonEnv => String::new(),
            KeyFrom::EnvFile => {
                let file = sandbox.path().join("codex.env");
                std::fs::write(&file, format!("{key_env}={KEY}\n")).unwrap();
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
                format!("env_file = {:?}\n", file.to_str().unwrap())
            }
        };
        sandbox.write_config(&format!(
            "default_agent = \"codex\"\n[agents.codex]\n{provider}\
             program = {program:?}\nmodel = {MODEL:?}\n{key_source}{profile}\n\
             env = {{ {env} }}\n",
            program = codex.to_str().unwrap(),
            env = env.join(", "),
        ));
        let mut builder = sandbox.daemon();
        if matches!(key, KeyFrom::DaemonEnv) {
            builder = builder.env(key_env, KEY);
        }
        let daemon = builder.start();

        let repo = committed_repo(&sandbox.path().join("demo"));
        sandbox
            .ctl(&["projects", "add", repo.to_str().unwrap(), "--name", "demo"])
            .assert_ok();
        let created = sandbox
            .ctl(&[
                "tasks",
                "create",
                "--project",
                "demo",
                "--spec",
                "001-hello",
                "--title",
                "Write hello.txt",
                "--json",
            ])
            .assert_ok()
            .json();
        let id = created["id"].as_str().unwrap().to_string();

        // Every event from now on, for the restarts and stalls the task goes through.
        let events = Arc::new(Mutex::new(Vec::new()));
        let client = daemon.client().await;
        let mut stream = client
            .subscribe(Request::SubscribeEvents { after: None })
            .await
            .expect("subscribe to events");
        let heard = Arc::clone(&events);
        tokio::spawn(async move {
            // The subscription lives as long as its client's connection.
            let _client = client;
            while let Some(item) = stream.next().await {
                if let StreamItem::Event(e) = item {
                    heard.lock().unwrap().push(e);
                }
            }
        });
        Some(Rig {
            kind,
            sandbox,
            api,
            trap,
            daemon,
            id,
            events,
        })
    }

    fn ctl(&self, args: &[&str]) -> Value {
        self.sandbox.ctl(args).assert_ok().json()
    }

    fn show(&self) -> Value {
        self.ctl(&["tasks", "show", &self.id, "--json"])
    }

    fn start_task(&self) {
        self.sandbox.ctl(&["tasks", "start", &self.id]).assert_ok();
    }

    /// The task once it is in `phase`, having made `requests` model requests in all.
    fn wait_phase(&self, phase: &str, requests: usize) -> Value {
        wait_for(
            &format!("task {} {phase} after {requests} requests", self.id),
            TIMEOUT,
            || {
                let task = self.show();
                if task["phase"] == phase && posts(&self.api).len() == requests {
                    Ok(task)
                } else {
                    Err(format!(
                        "{task:#}\nrequests: {}\ndaemon log:\n{}",
                        posts(&self.api).len(),
                        self.daemon.logs()
                    ))
                }
            },
        )
    }

    fn worktree(&self) -> PathBuf {
        PathBuf::from(self.show()["worktree"].as_str().unwrap())
    }

    /// The `TaskExited` events of this task: (restart_in_ms, failure kind).
    fn exits(&self) -> Vec<(Option<u64>, Option<FailureKind>)> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::TaskExited {
                    task_id,
                    restart_in_ms,
                    failure,
                    ..
                } if *task_id == self.id => {
                    Some((*restart_in_ms, failure.as_ref().map(|f| f.kind)))
                }
                _ => None,
            })
            .collect()
    }

    /// The argv of the task's current session: codex resuming `thread` (`exec ... resume
    /// THREAD -- PROMPT`), the key nowhere in it.
    fn assert_resumes(&self, thread: &str) {
        let task = self.show();
        let session = task["session_id"].as_str().unwrap();
        let info = self.ctl(&["sessions", "show", session, "--json"]);
        let argv: Vec<&str> = info["command"]
            .as_array()
            .unwrap_or_else(|| panic!("no command: {info:#}"))
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(argv[1], "exec", "{argv:?}");
        let at = argv.iter().position(|a| *a == "resume").expect("resumed");
        assert_eq!(argv[at + 1..at + 3], [thread, "--"], "{argv:?}");
        assert!(!argv.concat().contains(KEY), "the key stays out of argv");
    }

    /// Nothing tried to reach a host other than the scripted server.
    fn assert_offline(&self) {
        assert_eq!(self.trap.attempts(), Vec::<String>::new(), "traffic left");
        for r in self.api.requests() {
            let websocket = self.kind == Kind::Codex && r.method == "GET";
            assert!(
                r.path == "/v1/responses" && (r.method == "POST" || websocket),
                "{} {}",
                r.method,
                r.path
            );
        }
    }
}

/// The model requests the server got (the built-in OpenAI provider first tries a WebSocket
/// upgrade, a `GET` answered 404, before it falls back to `POST`).
fn posts(api: &OpenAiApi) -> Vec<Recorded> {
    api.requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect()
}

/// The texts of the `input_text`/`output_text` parts of request `n`'s input, by role.
fn said(api: &OpenAiApi, n: usize) -> Vec<(String, String)> {
    let body = &posts(api)[n].body;
    body["input"]
        .as_array()
        .unwrap_or_else(|| panic!("request {n} has no input: {body:#}"))
        .iter()
        .filter(|item| item["type"] == "message")
        .flat_map(|item| {
            let role = item["role"].as_str().unwrap_or("").to_string();
            item["content"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(move |part| {
                    part["text"].as_str().map(|t| (role.clone(), t.to_string()))
                })
        })
        .collect()
}

/// The user's messages in request `n`, without codex's own context messages.
fn user_prompts(api: &OpenAiApi, n: usize) -> Vec<String> {
    said(api, n)
        .into_iter()
        .filter(|(role, text)| role == "user" && text.contains("# Task: "))
        .map(|(_, text)| text)
        .collect()
}

/// The task's transcript as `tasks transcript --json` prints it (an entry a line): the
/// entries' events.
fn transcript(rig: &Rig) -> Vec<Value> {
    let out = rig.sandbox.ctl(&["tasks", "transcript", &rig.id, "--json"]);
    out.assert_ok()
        .stdout
        .lines()
        .map(|line| {
            let entry: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON entry ({e}): {line}"));
            entry["event"].clone()
        })
        .collect()
}

/// The shell command that writes the file and reports progress.
const WORK: &str = "printf 'hello from codex\\n' > hello.txt && \
                    printf 'phase: coding\\nprogress: 50\\n' >> \"$AIFACTORY_PROGRESS_FILE\"";

fn success_script() -> Vec<Turn> {
    vec![Turn::shell(WORK), Turn::text("Wrote hello.txt.")]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_writes_the_file_reports_progress_and_leaves_a_transcript() {
    success(
        "codex_writes_the_file_reports_progress_and_leaves_a_transcript",
        Kind::OpenaiCompatible,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_codex_kind_does_the_same_through_its_openai_provider() {
    success(
        "the_codex_kind_does_the_same_through_its_openai_provider",
        Kind::Codex,
    )
    .await;
}

/// A task's run: the shell tool writes the file and the progress, then the answer.
async fn success(test: &str, kind: Kind) {
    let Some(rig) = Rig::start_kind(
        test,
        kind,
        success_script(),
        "restart = \"never\"",
        KeyFrom::DaemonEnv,
    )
    .await
    else {
        return;
    };
    rig.start_task();
    let task = rig.wait_phase("done", 2);
    let worktree = rig.worktree();
    assert_eq!(
        std::fs::read_to_string(worktree.join("hello.txt")).unwrap(),
        "hello from codex\n"
    );
    assert_eq!(task["progress"]["percent"], 50, "{task:#}");

    // The prompt the model got names the task and its progress file.
    let prompts = user_prompts(&rig.api, 0);
    assert_eq!(prompts.len(), 1, "{:#?}", said(&rig.api, 0));
    let progress_file = task["progress_file"].as_str().unwrap_or_default();
    assert!(
        prompts[0].contains("# Task: Write hello.txt"),
        "{}",
        prompts[0]
    );
    assert!(
        !progress_file.is_empty() && prompts[0].contains(progress_file),
        "{progress_file} in {}",
        prompts[0]
    );

    // Codex's thread id, and the thread's usage (two requests; cached tokens apart).
    let thread = task["agent_session_id"].as_str().unwrap_or_default();
    assert_eq!(thread.len(), 36, "a UUID: {task:#}");
    assert_eq!(posts(&rig.api)[0].body["prompt_cache_key"], thread);
    assert_eq!(
        task["usage"]["input_tokens"],
        2 * (INPUT_TOKENS - CACHED_TOKENS),
        "{task:#}"
    );
    assert_eq!(task["usage"]["cache_read_tokens"], 2 * CACHED_TOKENS);
    assert_eq!(task["usage"]["output_tokens"], 2 * OUTPUT_TOKENS);
    assert!(task["failure"].is_null(), "{task:#}");

    // The transcript names the shell tool call and its result, then the answer.
    let events = transcript(&rig);
    let call = events
        .iter()
        .find(|e| e["tool_call"]["tool"] == "command_execution")
        .unwrap_or_else(|| panic!("no command_execution call in {events:#?}"));
    assert!(
        call["tool_call"]["summary"]
            .as_str()
            .unwrap()
            .contains("hello.txt"),
        "{call:#}"
    );
    let result = events
        .iter()
        .find(|e| e["tool_result"]["tool"] == "command_execution")
        .unwrap_or_else(|| panic!("no command_execution result in {events:#?}"));
    assert_eq!(result["tool_result"]["ok"], true, "{result:#}");
    assert!(
        events
            .iter()
            .any(|e| e["message"]["text"] == "Wrote hello.txt."),
        "{events:#?}"
    );
    assert_eq!(events[0]["started"]["agent_session_id"], thread);
    // The key stays out of the transcript.
    assert!(!serde_json::to_string(&events).unwrap().contains(KEY));
    rig.assert_offline();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_key_fails_as_auth_and_is_not_retried() {
    let Some(rig) = Rig::start(
        "a_rejected_key_fails_as_auth_and_is_not_retried",
        vec![Turn::error(401, "Incorrect API key provided", None)],
        "restart = \"on-failure\"\nmax_attempts = 3",
        KeyFrom::EnvFile,
    )
    .await
    else {
        return;
    };
    rig.start_task();
    let task = rig.wait_phase("failed", 1);
    assert_eq!(task["failure"]["kind"], "auth", "{task:#}");
    assert!(
        task["failure"]["message"].as_str().unwrap().contains("401"),
        "{task:#}"
    );
    assert_eq!(task["attempts"], 1, "{task:#}");
    // The run's one exit, with its failure and no restart to come.
    let exits = wait_for("the task's exit event", TIMEOUT, || {
        let exits = rig.exits();
        if exits.is_empty() {
            Err("no TaskExited yet")
        } else {
            Ok(exits)
        }
    });
    assert_eq!(exits, [(None, Some(FailureKind::Auth))]);
    assert_eq!(posts(&rig.api).len(), 1);
    // The key was sent to the server, from the env_file, and never shown.
    assert!(!task.to_string().contains(KEY));
    rig.assert_offline();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overloaded_server_is_retried_after_backoff_until_done() {
    let Some(rig) = Rig::start(
        "an_overloaded_server_is_retried_after_backoff_until_done",
        vec![
            Turn::error(503, "The server is overloaded", None),
            Turn::error(529, "Overloaded", None),
            Turn::text("Done at last."),
        ],
        "restart = \"on-failure\"\nmax_attempts = 3",
        KeyFrom::DaemonEnv,
    )
    .await
    else {
        return;
    };
    rig.start_task();
    let task = rig.wait_phase("done", 3);
    assert_eq!(task["attempts"], 3, "{task:#}");
    let exits = rig.exits();
    let restarts: Vec<_> = exits.iter().filter(|(r, _)| r.is_some()).collect();
    assert_eq!(restarts.len(), 2, "{exits:?}");
    for (restart_in_ms, kind) in restarts {
        assert!(restart_in_ms.unwrap() >= 1000, "{exits:?}");
        assert_eq!(*kind, Some(FailureKind::Overloaded), "{exits:?}");
    }
    // Each new attempt continued the same thread, saying why it was restarted.
    let thread = task["agent_session_id"].as_str().unwrap().to_string();
    for n in 1..3 {
        let body = &posts(&rig.api)[n].body;
        assert_eq!(body["prompt_cache_key"], thread.as_str(), "request {n}");
        let prompts = user_prompts(&rig.api, n);
        assert!(
            prompts
                .last()
                .unwrap()
                .contains("why it was restarted: attempt"),
            "{prompts:#?}"
        );
        assert!(
            prompts.last().unwrap().contains("overloaded"),
            "{prompts:#?}"
        );
    }
    rig.assert_offline();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_by_hand_resumes_the_thread_with_its_earlier_turns() {
    let mut script = success_script();
    script.push(Turn::text("Nothing left to do."));
    let Some(rig) = Rig::start(
        "a_restart_by_hand_resumes_the_thread_with_its_earlier_turns",
        script,
        "restart = \"never\"",
        KeyFrom::DaemonEnv,
    )
    .await
    else {
        return;
    };
    rig.start_task();
    let first = rig.wait_phase("done", 2);
    let thread = first["agent_session_id"].as_str().unwrap().to_string();
    rig.sandbox.ctl(&["tasks", "restart", &rig.id]).assert_ok();
    let task = rig.wait_phase("done", 3);
    assert_eq!(task["agent_session_id"], thread.as_str(), "{task:#}");
    rig.assert_resumes(&thread);

    // The new request carries the first run: its prompt, its tool call, its answer.
    let request = &posts(&rig.api)[2].body;
    assert_eq!(request["prompt_cache_key"], thread.as_str());
    let prompts = user_prompts(&rig.api, 2);
    assert_eq!(prompts.len(), 2, "{prompts:#?}");
    assert!(!prompts[0].contains("restarted"), "{}", prompts[0]);
    assert!(prompts[1].contains("restarted by hand"), "{}", prompts[1]);
    assert!(
        said(&rig.api, 2)
            .iter()
            .any(|(role, text)| role == "assistant" && text == "Wrote hello.txt."),
        "{:#?}",
        said(&rig.api, 2)
    );
    assert!(
        request["input"]
            .as_array()
            .unwrap()
            .iter()
            .any(|item| item["type"] == "function_call_output"),
        "the tool call's result is in the resumed input"
    );
    // Codex's usage is the thread's running total: the task counts each request once.
    assert_eq!(
        task["usage"]["output_tokens"],
        3 * OUTPUT_TOKENS,
        "{task:#}"
    );
    let events = transcript(&rig);
    assert!(
        events
            .iter()
            .any(|e| e["message"]["text"] == "Nothing left to do."),
        "{events:#?}"
    );
    rig.assert_offline();
}

/// Stall evidence of this task from the event stream, once there is some.
fn wait_stalled(rig: &Rig) -> Value {
    wait_for("a TaskStalled event", TIMEOUT, || {
        let events = rig.events.lock().unwrap();
        events
            .iter()
            .find_map(|e| match &e.kind {
                EventKind::TaskStalled { task_id, evidence } if *task_id == rig.id => {
                    Some(serde_json::to_value(evidence).unwrap())
                }
                _ => None,
            })
            .ok_or_else(|| format!("{} events, none a stall", events.len()))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_stream_stalls_the_task_with_evidence_until_the_server_answers() {
    let Some(rig) = Rig::start(
        "a_hung_stream_stalls_the_task_with_evidence_until_the_server_answers",
        vec![Turn::HangMidStream("Thinking it over".into())],
        "restart = \"never\"\nstall_after = 2",
        KeyFrom::DaemonEnv,
    )
    .await
    else {
        return;
    };
    rig.start_task();
    let task = rig.wait_phase("stalled", 1);
    let stall = &task["stall"];
    assert_eq!(stall["stall_after_s"], 2, "{task:#}");
    assert!(stall["detected_at"].is_string(), "{task:#}");
    assert!(stall["pid"].is_u64(), "the agent is still there: {task:#}");
    let evidence = wait_stalled(&rig);
    assert_eq!(evidence["stall_after_s"], 2);

    rig.api.release();
    let task = rig.wait_phase("done", 1);
    assert!(task["stall"].is_null(), "{task:#}");
    assert_eq!(task["attempts"], 1);
    rig.assert_offline();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_stream_with_on_stall_restart_resumes_the_thread() {
    let Some(rig) = Rig::start(
        "a_hung_stream_with_on_stall_restart_resumes_the_thread",
        vec![
            Turn::HangMidStream("Thinking it over".into()),
            Turn::text("Back and done."),
        ],
        // More attempts than needed: on a loaded machine a resumed codex can be silent for
        // stall_after while it starts, which is one more stall, not a failure of the feature.
        "restart = \"on-failure\"\nmax_attempts = 5\nstall_after = 2\non_stall = \"restart\"",
        KeyFrom::DaemonEnv,
    )
    .await
    else {
        return;
    };
    rig.start_task();
    let evidence = wait_stalled(&rig);
    assert_eq!(evidence["stall_after_s"], 2, "{evidence:#}");
    let task = rig.wait_phase("done", 2);
    assert!(task["attempts"].as_u64().unwrap() >= 2, "{task:#}");
    let thread = task["agent_session_id"].as_str().unwrap();
    rig.assert_resumes(thread);
    let requests = posts(&rig.api);
    assert_eq!(requests[0].body["prompt_cache_key"], thread);
    assert_eq!(
        requests[1].body["prompt_cache_key"], thread,
        "the same thread"
    );
    // The first prompt, then the new attempt's, which says it stalled.
    let prompts = user_prompts(&rig.api, 1);
    assert!(prompts.len() >= 2, "{prompts:#?}");
    assert!(!prompts[0].contains("restarted"), "{}", prompts[0]);
    let last = prompts.last().unwrap();
    assert!(last.contains("stalled"), "{last}");
    let events = transcript(&rig);
    assert!(
        events
            .iter()
            .any(|e| e["message"]["text"] == "Back and done."),
        "{events:#?}"
    );
    rig.assert_offline();
}
