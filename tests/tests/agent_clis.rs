//! The real agent CLIs, run offline against the scripted model APIs of the harness: what they
//! print (stream-json lines), what they send, and how they fail. Each run also checks that no
//! host but the loopback API was contacted (the egress trap saw nothing).
//!
//! `AIFACTORY_BLESS=1` saves each scenario's stdout as `tests/fixtures/agents/<cli>-<name>.jsonl`,
//! the agent-output parser's test input. Findings are summarised in `tests/agents/README.md`.
//! One file past 600 lines on purpose: one module per CLI, each a list of short scenarios over
//! one shared setup, read side by side.
//! Tests may unwrap: a panic is how a test fails.

/// Claude Code 2.1.332: `claude -p --output-format stream-json --verbose`.
mod claude {
    use std::path::{Path, PathBuf};
    use std::process::{Command, Output, Stdio};
    use std::time::Duration;

    use aifactory_tests::agent_clis::{self, FAKE_API_KEY};
    use aifactory_tests::anthropic_api::{AnthropicApi, INPUT_TOKENS, OUTPUT_TOKENS, Turn};
    use aifactory_tests::egress::EgressTrap;
    use aifactory_tests::wait::{wait_file, wait_until};
    use aifactory_tests::{is_root, output_within, skip};
    use serde_json::{Value, json};

    const RUN_TIMEOUT: Duration = Duration::from_secs(120);
    const BYPASS: &[&str] = &[
        "-p",
        "--output-format",
        "stream-json",
        "--verbose",
        "--permission-mode",
        "bypassPermissions",
    ];
    const ROOT_REFUSAL: &str = "--dangerously-skip-permissions cannot be used with root/sudo privileges for security reasons";

    /// One scenario's world: the scripted API, the egress trap, a private home and a git
    /// working directory.
    struct World {
        claude: PathBuf,
        api: AnthropicApi,
        egress: EgressTrap,
        home: tempfile::TempDir,
        work: tempfile::TempDir,
    }

    struct Run {
        code: Option<i32>,
        stdout: String,
        stderr: String,
        lines: Vec<Value>,
    }

    impl Run {
        fn of(test: &str, output: Output) -> Self {
            let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
            let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
            let lines = stdout
                .lines()
                .map(|line| {
                    serde_json::from_str(line.trim_end_matches('\r')).unwrap_or_else(|e| {
                        panic!("{test}: a stdout line is not JSON ({e}): {line}\nstderr: {stderr}")
                    })
                })
                .collect();
            Self {
                code: output.status.code(),
                stdout,
                stderr,
                lines,
            }
        }

        fn of_type<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
            self.lines.iter().filter(move |l| l["type"] == kind)
        }

        fn system(&self, subtype: &str) -> Vec<&Value> {
            self.of_type("system")
                .filter(|l| l["subtype"] == subtype)
                .collect()
        }

        fn result(&self) -> &Value {
            let last = self.lines.last().unwrap_or_else(|| {
                panic!("no output lines; stderr: {}", self.stderr);
            });
            assert_eq!(
                last["type"], "result",
                "the last line is the result: {last}"
            );
            last
        }

        /// Every content block of the given type in the messages of lines of `kind`.
        fn blocks(&self, kind: &str, block: &str) -> Vec<Value> {
            self.of_type(kind)
                .filter_map(|l| l["message"]["content"].as_array())
                .flatten()
                .filter(|b| b["type"] == block)
                .cloned()
                .collect()
        }

        fn save_fixture(&self, name: &str) {
            save_fixture(&format!("claude-{name}.jsonl"), &self.stdout);
        }
    }

    /// Saves `content` under tests/fixtures/agents with `AIFACTORY_BLESS=1`; it never holds
    /// the API key.
    fn save_fixture(file: &str, content: &str) {
        assert!(
            !content.contains(FAKE_API_KEY),
            "the API key must not reach the output"
        );
        if std::env::var("AIFACTORY_BLESS").is_ok_and(|v| v == "1") {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/agents");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(file), content).unwrap();
        }
    }

    impl World {
        fn new(test: &str, turns: Vec<Turn>) -> Option<Self> {
            let claude = match agent_clis::claude() {
                Ok(path) => path,
                Err(e) => {
                    skip(test, &e.to_string());
                    return None;
                }
            };
            let work = tempfile::tempdir().unwrap();
            aifactory_tests::git::git(&["init", "-q", "."], work.path());
            Some(Self {
                claude,
                api: AnthropicApi::start(turns),
                egress: EgressTrap::start(),
                home: tempfile::tempdir().unwrap(),
                work,
            })
        }

        fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
            let mut cmd = agent_clis::claude_command(
                &self.claude,
                &self.api,
                &self.egress,
                self.home.path(),
                self.work.path(),
            );
            cmd.args(args)
                .envs(env.iter().copied())
                .stdin(Stdio::null());
            cmd
        }

        /// Runs claude to its end; as root, with `IS_SANDBOX=1` so bypassPermissions is allowed.
        fn run(&self, test: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
            let mut env = env.to_vec();
            if is_root() {
                env.push(("IS_SANDBOX", "1"));
            }
            self.run_exactly(test, args, &env)
        }

        fn run_exactly(&self, test: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
            let output = output_within(self.command(args, env), RUN_TIMEOUT)
                .unwrap_or_else(|out| panic!("{test}: claude did not end: {out:?}"));
            let run = Run::of(test, output);
            self.assert_offline(test);
            run
        }

        fn assert_offline(&self, test: &str) {
            assert_eq!(
                self.egress.attempts(),
                Vec::<String>::new(),
                "{test}: claude contacted a host other than the scripted API"
            );
        }

        fn path(&self, name: &str) -> PathBuf {
            self.work.path().join(name)
        }
    }

    fn prompt_args<'a>(base: &[&'a str], prompt: &'a str) -> Vec<&'a str> {
        let mut args = base.to_vec();
        args.push(prompt);
        args
    }

    #[test]
    fn tool_calls_write_files_and_the_result_reports_usage_and_cost() {
        let test = "claude tool_calls_write_files_and_the_result_reports_usage_and_cost";
        let Some(world) = World::new(test, Vec::new()) else {
            return;
        };
        let hello = world.path("hello.txt");
        world.api.push(Turn::tools(
            "Writing the file and the progress line.",
            &[
                (
                    "Write",
                    json!({"file_path": hello, "content": "hello from the agent\n"}),
                ),
                (
                    "Bash",
                    json!({"command": "echo 'progress: 50' >> progress.md",
                           "description": "Append a progress line"}),
                ),
            ],
        ));
        world.api.push(Turn::text("Done: hello.txt written."));
        let run = world.run(test, &prompt_args(BYPASS, "Write hello.txt"), &[]);
        run.save_fixture("success");

        assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
        assert_eq!(
            std::fs::read_to_string(&hello).unwrap(),
            "hello from the agent\n"
        );
        assert_eq!(
            std::fs::read_to_string(world.path("progress.md")).unwrap(),
            "progress: 50\n"
        );

        let init = &run.lines[0];
        assert_eq!(
            (&init["type"], &init["subtype"]),
            (&json!("system"), &json!("init"))
        );
        let session_id = init["session_id"].as_str().unwrap();
        assert!(!session_id.is_empty());
        assert_eq!(init["permissionMode"], "bypassPermissions");
        assert_eq!(init["apiKeySource"], "ANTHROPIC_API_KEY");
        assert_eq!(init["claude_code_version"], "2.1.332");
        assert!(init["tools"].as_array().unwrap().contains(&json!("Bash")));

        let calls = run.blocks("assistant", "tool_use");
        let names: Vec<&str> = calls.iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["Write", "Bash"]);
        let results = run.blocks("user", "tool_result");
        assert_eq!(results.len(), 2, "one tool_result per call: {results:?}");
        for (call, result) in calls.iter().zip(&results) {
            assert_eq!(result["tool_use_id"], call["id"]);
            assert_ne!(result["is_error"], true, "{result}");
        }

        let result = run.result();
        assert_eq!(result["subtype"], "success");
        assert_eq!(result["is_error"], false);
        assert_eq!(result["session_id"], session_id);
        assert_eq!(result["result"], "Done: hello.txt written.");
        assert_eq!(result["usage"]["input_tokens"], 2 * INPUT_TOKENS);
        assert_eq!(result["usage"]["output_tokens"], 2 * OUTPUT_TOKENS);
        assert!(result["total_cost_usd"].as_f64().unwrap() > 0.0, "{result}");
        assert_eq!(result["permission_denials"], json!([]));

        // Only message requests: no count_tokens, no model list.
        let paths: Vec<String> = world.api.requests().into_iter().map(|r| r.path).collect();
        assert_eq!(paths, ["/v1/messages?beta=true"; 2]);
        // The second request carried the tool results back to the model.
        let requests = world.api.message_requests();
        assert_eq!(requests.len(), 2);
        let last_user = requests[1]["messages"].as_array().unwrap().last().unwrap();
        let sent: Vec<&Value> = last_user["content"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["type"] == "tool_result")
            .collect();
        assert_eq!(sent.len(), 2, "{last_user}");
    }

    #[test]
    fn a_rejected_key_ends_the_run_with_an_auth_error() {
        let test = "claude a_rejected_key_ends_the_run_with_an_auth_error";
        let Some(world) = World::new(test, Vec::new()) else {
            return;
        };
        world.api.when_exhausted(Turn::unauthorized());
        let run = world.run(
            test,
            &prompt_args(BYPASS, "Say hello"),
            &[("CLAUDE_CODE_MAX_RETRIES", "0")],
        );
        run.save_fixture("401");

        assert_eq!(run.code, Some(1), "stderr: {}", run.stderr);
        assert_eq!(world.api.message_requests().len(), 1, "no retry at 0");
        let result = run.result();
        assert_eq!(result["is_error"], true);
        assert_eq!(result["api_error_status"], 401);
        assert_eq!(result["api_error_type"], "authentication_error");
        assert_eq!(result["terminal_reason"], "api_error");
        assert_eq!(result["result"], "Invalid API key · Fix external API key");
        let message = run.of_type("assistant").last().unwrap();
        assert_eq!(message["error"], "authentication_failed");
        assert_eq!(message["is_api_error_message"], true);
    }

    #[test]
    fn overloaded_twice_is_retried_by_the_cli_itself() {
        let test = "claude overloaded_twice_is_retried_by_the_cli_itself";
        let Some(world) = World::new(
            test,
            vec![
                Turn::overloaded(),
                Turn::overloaded(),
                Turn::text("Recovered."),
            ],
        ) else {
            return;
        };
        let run = world.run(test, &prompt_args(BYPASS, "Say hello"), &[]);
        run.save_fixture("overloaded-then-success");

        assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
        let retries = run.system("api_retry");
        let seen: Vec<(&Value, &Value, &Value)> = retries
            .iter()
            .map(|r| (&r["attempt"], &r["error_status"], &r["error"]))
            .collect();
        assert_eq!(
            seen,
            [
                (&json!(1), &json!(529), &json!("overloaded")),
                (&json!(2), &json!(529), &json!("overloaded"))
            ]
        );
        assert_eq!(retries[0]["max_retries"], 10, "the CLI's default");
        assert_eq!(run.result()["result"], "Recovered.");
        assert_eq!(world.api.message_requests().len(), 3);
    }

    #[test]
    fn overloaded_for_good_gives_up_after_the_bounded_retries() {
        let test = "claude overloaded_for_good_gives_up_after_the_bounded_retries";
        let Some(world) = World::new(test, Vec::new()) else {
            return;
        };
        world.api.when_exhausted(Turn::overloaded());
        let run = world.run(
            test,
            &prompt_args(BYPASS, "Say hello"),
            &[("CLAUDE_CODE_MAX_RETRIES", "1")],
        );
        run.save_fixture("overloaded");

        assert_eq!(run.code, Some(1), "stderr: {}", run.stderr);
        assert_eq!(world.api.message_requests().len(), 2, "one try, one retry");
        assert_eq!(run.system("api_retry")[0]["max_retries"], 1);
        let result = run.result();
        assert_eq!(result["is_error"], true);
        assert_eq!(result["api_error_status"], 529);
        assert_eq!(result["api_error_type"], "overloaded_error");
        assert!(
            result["result"]
                .as_str()
                .unwrap()
                .starts_with("API Error: 529 Overloaded."),
            "{result}"
        );
    }

    #[test]
    fn rate_limited_waits_as_long_as_retry_after_says() {
        let test = "claude rate_limited_waits_as_long_as_retry_after_says";
        let Some(world) = World::new(test, Vec::new()) else {
            return;
        };
        world.api.when_exhausted(Turn::rate_limited(2));
        let run = world.run(
            test,
            &prompt_args(BYPASS, "Say hello"),
            &[("CLAUDE_CODE_MAX_RETRIES", "1")],
        );
        run.save_fixture("429");

        assert_eq!(run.code, Some(1), "stderr: {}", run.stderr);
        let retry = run.system("api_retry")[0];
        assert_eq!(retry["error_status"], 429);
        assert_eq!(retry["error"], "rate_limit");
        // The reported delay, not a measured one: retry-after 2 is honoured.
        assert!(retry["retry_delay_ms"].as_u64().unwrap() >= 2000, "{retry}");
        let result = run.result();
        assert_eq!(result["api_error_status"], 429);
        assert_eq!(result["api_error_type"], "rate_limit_error");
        assert!(
            result["result"]
                .as_str()
                .unwrap()
                .starts_with("API Error: Request rejected (429)"),
            "{result}"
        );
    }

    #[test]
    fn max_turns_ends_the_run_with_error_max_turns() {
        let test = "claude max_turns_ends_the_run_with_error_max_turns";
        let bash = || {
            (
                "Bash",
                json!({"command": "true", "description": "Do nothing"}),
            )
        };
        let Some(world) = World::new(
            test,
            vec![
                Turn::tools("Step one.", &[bash()]),
                Turn::tools("Step two.", &[bash()]),
                Turn::text("Never reached."),
            ],
        ) else {
            return;
        };
        let mut args = BYPASS.to_vec();
        args.extend(["--max-turns", "1", "Loop"]);
        let run = world.run(test, &args, &[]);
        run.save_fixture("max-turns");

        assert_eq!(run.code, Some(1), "stderr: {}", run.stderr);
        assert_eq!(world.api.message_requests().len(), 1);
        let result = run.result();
        assert_eq!(result["subtype"], "error_max_turns");
        assert_eq!(result["is_error"], true);
        assert_eq!(result["terminal_reason"], "max_turns");
        assert_eq!(
            result["errors"],
            json!(["Reached maximum number of turns (1)"])
        );
        assert!(result.get("result").is_none(), "{result}");
    }

    #[test]
    fn a_too_long_prompt_is_reported_as_prompt_too_long() {
        let test = "claude a_too_long_prompt_is_reported_as_prompt_too_long";
        let Some(world) = World::new(
            test,
            vec![Turn::error(
                400,
                "invalid_request_error",
                "prompt is too long: 250000 tokens > 200000 maximum",
                None,
            )],
        ) else {
            return;
        };
        let run = world.run(test, &prompt_args(BYPASS, "Say hello"), &[]);
        run.save_fixture("prompt-too-long");

        assert_eq!(run.code, Some(1), "stderr: {}", run.stderr);
        assert_eq!(
            world.api.message_requests().len(),
            1,
            "a 400 is not retried"
        );
        let result = run.result();
        assert_eq!(result["is_error"], true);
        assert_eq!(result["terminal_reason"], "prompt_too_long");
        assert_eq!(result["api_error_status"], 400);
        assert!(
            result["result"]
                .as_str()
                .unwrap()
                .starts_with("Prompt is too long"),
            "{result}"
        );
    }

    #[test]
    fn an_unreachable_api_is_a_connection_failure() {
        let test = "claude an_unreachable_api_is_a_connection_failure";
        let Some(world) = World::new(test, Vec::new()) else {
            return;
        };
        // Nothing listens on the discard port on loopback.
        let run = world.run(
            test,
            &prompt_args(BYPASS, "Say hello"),
            &[
                ("ANTHROPIC_BASE_URL", "http://127.0.0.1:9"),
                ("CLAUDE_CODE_MAX_RETRIES", "0"),
            ],
        );
        run.save_fixture("connection-refused");

        assert_eq!(run.code, Some(1), "stderr: {}", run.stderr);
        let result = run.result();
        assert_eq!(result["is_error"], true);
        assert_eq!(result["terminal_reason"], "api_error");
        assert_eq!(result["api_error"], "connection_failed");
        assert_eq!(result["api_error_status"], Value::Null);
    }

    #[test]
    fn resume_sends_the_earlier_turns() {
        let test = "claude resume_sends_the_earlier_turns";
        let Some(world) = World::new(
            test,
            vec![
                Turn::text("First answer: remembered-token-7."),
                Turn::text("Second answer."),
            ],
        ) else {
            return;
        };
        let first = world.run(test, &prompt_args(BYPASS, "first prompt"), &[]);
        assert_eq!(first.code, Some(0), "stderr: {}", first.stderr);
        let session_id = first.result()["session_id"].as_str().unwrap().to_owned();

        let mut args = BYPASS.to_vec();
        args.extend(["--resume", &session_id, "second prompt"]);
        let second = world.run(test, &args, &[]);
        second.save_fixture("resume");
        assert_eq!(second.code, Some(0), "stderr: {}", second.stderr);
        assert_eq!(
            second.lines[0]["session_id"],
            session_id.as_str(),
            "same session"
        );
        assert_eq!(second.result()["session_id"], session_id.as_str());

        let requests = world.api.message_requests();
        assert_eq!(requests.len(), 2);
        let texts: Vec<(String, String)> = requests[1]["messages"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|m| {
                let role = m["role"].as_str().unwrap().to_owned();
                let texts: Vec<String> = match &m["content"] {
                    Value::String(s) => vec![s.clone()],
                    Value::Array(blocks) => blocks
                        .iter()
                        .filter_map(|b| b["text"].as_str().map(str::to_owned))
                        .collect(),
                    _ => Vec::new(),
                };
                texts.into_iter().map(move |t| (role.clone(), t))
            })
            .collect();
        let has = |role: &str, text: &str| texts.iter().any(|(r, t)| r == role && t == text);
        assert!(has("user", "first prompt"), "{texts:?}");
        assert!(
            has("assistant", "First answer: remembered-token-7."),
            "{texts:?}"
        );
        assert!(has("user", "second prompt"), "{texts:?}");
    }

    #[test]
    fn as_root_bypass_without_is_sandbox_is_refused() {
        let test = "claude as_root_bypass_without_is_sandbox_is_refused";
        if !is_root() {
            skip(test, "claude refuses bypassPermissions only as root");
            return;
        }
        let Some(world) = World::new(test, vec![Turn::text("never asked")]) else {
            return;
        };
        let run = world.run_exactly(test, &prompt_args(BYPASS, "Say hello"), &[]);
        save_fixture("claude-root-refused.stderr", &run.stderr);
        assert_eq!(run.code, Some(1));
        assert_eq!(run.stderr.trim_end(), ROOT_REFUSAL);
        assert_eq!(run.stdout, "", "nothing on stdout, not even the init line");
        assert!(
            world.api.requests().is_empty(),
            "refused before any request"
        );
    }

    #[test]
    fn without_bypass_the_bash_tool_is_denied() {
        let test = "claude without_bypass_the_bash_tool_is_denied";
        let Some(world) = World::new(
            test,
            vec![
                Turn::tools(
                    "Appending the progress line.",
                    &[(
                        "Bash",
                        json!({"command": "echo 'progress: 50' >> progress.md",
                               "description": "Append a progress line"}),
                    )],
                ),
                Turn::text("I could not append the progress line."),
            ],
        ) else {
            return;
        };
        let args = ["-p", "--output-format", "stream-json", "--verbose", "Go"];
        let run = world.run_exactly(test, &args, &[]);
        run.save_fixture("denied");

        assert_eq!(run.code, Some(0), "a denial does not fail the run");
        assert!(!world.path("progress.md").exists());
        let denied = run.system("permission_denied");
        assert_eq!(denied.len(), 1, "{:?}", run.lines);
        assert_eq!(denied[0]["tool_name"], "Bash");
        assert!(
            denied[0]["message"]
                .as_str()
                .unwrap()
                .contains("needs approval"),
            "{}",
            denied[0]
        );
        let results = run.blocks("user", "tool_result");
        assert_eq!(results[0]["is_error"], true);
        assert_eq!(results[0]["tool_use_id"], denied[0]["tool_use_id"]);
        let result = run.result();
        assert_eq!(result["is_error"], false);
        let denials = result["permission_denials"].as_array().unwrap();
        assert_eq!(denials.len(), 1);
        assert_eq!(denials[0]["tool_name"], "Bash");
        assert_eq!(
            denials[0]["tool_input"]["command"],
            "echo 'progress: 50' >> progress.md"
        );
    }

    #[test]
    fn a_hung_stream_prints_nothing_until_it_is_released() {
        let test = "claude a_hung_stream_prints_nothing_until_it_is_released";
        let Some(world) = World::new(test, vec![Turn::hang("Thinking about it")]) else {
            return;
        };
        let out = tempfile::NamedTempFile::new().unwrap();
        let mut cmd = world.command(
            &prompt_args(BYPASS, "Say hello"),
            if is_root() {
                &[("IS_SANDBOX", "1")]
            } else {
                &[]
            },
        );
        cmd.stdout(out.reopen().unwrap()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        wait_until("the scripted stream to hang", RUN_TIMEOUT, || {
            world.api.hanging() == 1
        });
        // stdout holds only the init line while the stream hangs: an assistant message is
        // printed whole, when its content block ends.
        let printed = wait_file(out.path(), RUN_TIMEOUT, |b| b.ends_with(b"\n"));
        let printed = String::from_utf8(printed).unwrap();
        let types: Vec<String> = printed
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["type"].to_string())
            .collect();
        assert_eq!(types, ["\"system\""], "{printed}");
        assert!(
            child.try_wait().unwrap().is_none(),
            "claude waits on the stream"
        );

        world.api.release_hangs();
        let output = output_within_child(child);
        assert_eq!(output.status.code(), Some(0));
        let run = Run::of(test, read_stdout(out.path(), output));
        world.assert_offline(test);
        run.save_fixture("hang-released");
        assert_eq!(run.result()["result"], "Thinking about it");
    }

    fn output_within_child(child: std::process::Child) -> Output {
        let pid = child.id();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        rx.recv_timeout(RUN_TIMEOUT)
            .unwrap_or_else(|_| panic!("claude (pid {pid}) did not end after the release"))
            .unwrap()
    }

    fn read_stdout(path: &Path, mut output: Output) -> Output {
        output.stdout = std::fs::read(path).unwrap();
        output
    }

    #[test]
    fn in_a_pty_the_lines_are_the_same_json_ending_in_crlf() {
        let test = "claude in_a_pty_the_lines_are_the_same_json_ending_in_crlf";
        if Command::new("script").arg("--version").output().is_err() {
            skip(test, "script(1) from util-linux is not installed");
            return;
        }
        let Some(world) = World::new(test, vec![Turn::text("Hello from a terminal.")]) else {
            return;
        };
        // script(1) gives claude a PTY as stdin, stdout and stderr, as the daemon does.
        let command_line = format!("{} {}", world.claude.display(), BYPASS.join(" "));
        let mut cmd = agent_clis::claude_command(
            Path::new("script"),
            &world.api,
            &world.egress,
            world.home.path(),
            world.work.path(),
        );
        cmd.args(["-qec", &format!("{command_line} 'Say hello'"), "/dev/null"])
            .env("TERM", "xterm-256color")
            .stdin(Stdio::null());
        if is_root() {
            cmd.env("IS_SANDBOX", "1");
        }
        let output = output_within(cmd, RUN_TIMEOUT).unwrap();
        world.assert_offline(test);
        assert_eq!(output.status.code(), Some(0));
        let stdout = String::from_utf8(output.stdout).unwrap();
        save_fixture("claude-pty.raw", &stdout);
        // The terminal turns each \n into \r\n; after the last line claude shows the cursor.
        let (lines, tail) = stdout.rsplit_once("\r\n").unwrap();
        assert_eq!(tail, "\x1b[?25h", "what follows the last line");
        let lines: Vec<Value> = lines
            .split("\r\n")
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
            .collect();
        assert_eq!(lines[0]["subtype"], "init");
        assert_eq!(lines.last().unwrap()["result"], "Hello from a terminal.");
    }

    #[test]
    fn without_the_quiet_switches_the_egress_trap_catches_claude() {
        let test = "claude without_the_quiet_switches_the_egress_trap_catches_claude";
        let Some(world) = World::new(test, vec![Turn::text("Hello.")]) else {
            return;
        };
        let mut cmd = world.command(&prompt_args(BYPASS, "Say hello"), &[]);
        for (name, _) in agent_clis::CLAUDE_QUIET_ENV {
            cmd.env_remove(name);
        }
        if is_root() {
            cmd.env("IS_SANDBOX", "1");
        }
        let output = output_within(cmd, RUN_TIMEOUT).unwrap();
        assert_eq!(output.status.code(), Some(0));
        // Proof that the trap in every other test can fail.
        wait_until(
            "claude's nonessential traffic to reach the trap",
            RUN_TIMEOUT,
            || !world.egress.attempts().is_empty(),
        );
        assert!(
            world
                .egress
                .attempts()
                .iter()
                .all(|a| a.starts_with("CONNECT api.anthropic.com:443 ")),
            "{:?}",
            world.egress.attempts()
        );
    }
}
