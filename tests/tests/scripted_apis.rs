//! The harness's scripted model APIs, checked over plain HTTP without any agent CLI: the wire
//! format the CLIs rely on (SSE event order, tool input deltas, error bodies, `retry-after`),
//! the hang and its release, and the request log. Tests may unwrap: a panic is how a test fails.

/// `aifactory_tests::anthropic_api`: the Anthropic Messages API.
mod anthropic {
    use std::time::Duration;

    use aifactory_tests::anthropic_api::{AnthropicApi, INPUT_TOKENS, OUTPUT_TOKENS, Turn};
    use aifactory_tests::wait::wait_until_async;
    use serde_json::{Value, json};

    const TIMEOUT: Duration = Duration::from_secs(30);

    fn request(stream: bool) -> Value {
        json!({"model": "claude-test", "max_tokens": 100, "stream": stream,
               "messages": [{"role": "user", "content": "hi"}]})
    }

    async fn post(api: &AnthropicApi, path: &str, body: &Value) -> reqwest::Response {
        reqwest::Client::new()
            .post(format!("{}{path}", api.base_url()))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// The `(event, data)` pairs of an SSE body.
    fn events(body: &str) -> Vec<(String, Value)> {
        body.split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| {
                let (name, data) = e.split_once('\n').unwrap();
                (
                    name.strip_prefix("event: ").unwrap().to_owned(),
                    serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap(),
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn a_streamed_reply_has_the_event_order_of_the_real_api() {
        let input = json!({"file_path": "/tmp/x", "content": "a \"quoted\" line\n"});
        let api = AnthropicApi::start([Turn::tools("Writing.", &[("Write", input.clone())])]);
        let response = post(&api, "/v1/messages?beta=true", &request(true)).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let events = events(&response.text().await.unwrap());
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        for (name, data) in &events {
            assert_eq!(
                &data["type"],
                name.as_str(),
                "data.type repeats the event name"
            );
        }
        assert_eq!(events[0].1["message"]["model"], "claude-test");
        assert_eq!(
            events[0].1["message"]["usage"]["input_tokens"],
            INPUT_TOKENS
        );
        assert_eq!(events[2].1["delta"]["text"], "Writing.");
        let tool = &events[4].1["content_block"];
        assert_eq!(
            (&tool["type"], &tool["name"]),
            (&json!("tool_use"), &json!("Write"))
        );
        let delta = &events[5].1["delta"];
        assert_eq!(delta["type"], "input_json_delta");
        let partial: Value = serde_json::from_str(delta["partial_json"].as_str().unwrap()).unwrap();
        assert_eq!(partial, input);
        assert_eq!(events[7].1["delta"]["stop_reason"], "tool_use");
        assert_eq!(events[7].1["usage"]["output_tokens"], OUTPUT_TOKENS);

        let recorded = api.requests();
        assert_eq!(recorded.len(), 1);
        assert_eq!(
            (recorded[0].method.as_str(), recorded[0].path.as_str()),
            ("POST", "/v1/messages?beta=true")
        );
        assert_eq!(api.message_requests(), [request(true)]);
    }

    #[tokio::test]
    async fn a_request_without_stream_gets_the_whole_message() {
        let api = AnthropicApi::start([Turn::text("Hello.")]);
        let response = post(&api, "/v1/messages", &request(false)).await;
        assert_eq!(response.status(), 200);
        let message: Value = response.json().await.unwrap();
        assert_eq!(
            message["content"],
            json!([{"type": "text", "text": "Hello."}])
        );
        assert_eq!(message["stop_reason"], "end_turn");
        assert_eq!(message["usage"]["output_tokens"], OUTPUT_TOKENS);
    }

    #[tokio::test]
    async fn queued_turns_come_first_then_the_responder_answers_from_the_request() {
        let api = AnthropicApi::start([Turn::text("Queued.")]);
        api.answer_with(|request| {
            let turns = request["messages"].as_array().map_or(0, Vec::len);
            Turn::text(&format!("{turns} messages"))
        });
        let text = |message: Value| message["content"][0]["text"].as_str().unwrap().to_owned();
        let short = request(false);
        let mut long = request(false);
        long["messages"] = json!([
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "again"}
        ]);
        let answers = [
            text(
                post(&api, "/v1/messages", &short)
                    .await
                    .json()
                    .await
                    .unwrap(),
            ),
            text(
                post(&api, "/v1/messages", &long)
                    .await
                    .json()
                    .await
                    .unwrap(),
            ),
            text(
                post(&api, "/v1/messages", &short)
                    .await
                    .json()
                    .await
                    .unwrap(),
            ),
        ];
        assert_eq!(answers, ["Queued.", "3 messages", "1 messages"]);
        assert_eq!(api.message_requests(), [short.clone(), long, short]);
    }

    #[tokio::test]
    async fn errors_carry_the_error_json_and_retry_after_then_the_script_runs_out() {
        let api = AnthropicApi::start([Turn::rate_limited(3), Turn::unauthorized()]);
        let limited = post(&api, "/v1/messages", &request(true)).await;
        assert_eq!(limited.status(), 429);
        assert_eq!(limited.headers()["retry-after"], "3");
        let body: Value = limited.json().await.unwrap();
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], "rate_limit_error");

        let unauthorized = post(&api, "/v1/messages", &request(true)).await;
        assert_eq!(unauthorized.status(), 401);
        assert!(unauthorized.headers().get("retry-after").is_none());
        let body: Value = unauthorized.json().await.unwrap();
        assert_eq!(body["error"]["type"], "authentication_error");

        let exhausted = post(&api, "/v1/messages", &request(true)).await;
        assert_eq!(exhausted.status(), 400, "a status the CLIs do not retry");
        api.when_exhausted(Turn::overloaded());
        let overloaded = post(&api, "/v1/messages", &request(true)).await;
        assert_eq!(overloaded.status(), 529);
        assert_eq!(api.message_requests().len(), 4);
    }

    #[tokio::test]
    async fn other_routes_are_answered_and_recorded() {
        let api = AnthropicApi::start([]);
        let counted = post(&api, "/v1/messages/count_tokens", &request(false)).await;
        assert_eq!(counted.status(), 200);
        let counted: Value = counted.json().await.unwrap();
        assert_eq!(counted["input_tokens"], INPUT_TOKENS);
        let unknown = post(&api, "/v1/files", &json!({})).await;
        assert_eq!(unknown.status(), 404);
        let body: Value = unknown.json().await.unwrap();
        assert_eq!(body["error"]["type"], "not_found_error");
        let paths: Vec<String> = api.requests().into_iter().map(|r| r.path).collect();
        assert_eq!(paths, ["/v1/messages/count_tokens", "/v1/files"]);
        assert!(
            api.message_requests().is_empty(),
            "neither is a message request"
        );
    }

    #[tokio::test]
    async fn a_hang_holds_the_stream_until_released() {
        let api = AnthropicApi::start([Turn::hang("Partial")]);
        let mut response = post(&api, "/v1/messages", &request(true)).await;
        let mut seen = String::new();
        while !seen.contains("\"Partial\"") {
            let chunk = tokio::time::timeout(TIMEOUT, response.chunk())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            seen.push_str(std::str::from_utf8(&chunk).unwrap());
        }
        wait_until_async("the stream to count as hanging", TIMEOUT, async || {
            api.hanging() == 1
        })
        .await;
        api.release_hangs();
        while let Some(chunk) = tokio::time::timeout(TIMEOUT, response.chunk())
            .await
            .unwrap()
            .unwrap()
        {
            seen.push_str(std::str::from_utf8(&chunk).unwrap());
        }
        let names: Vec<String> = events(&seen).into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        wait_until_async("the hang to end", TIMEOUT, async || api.hanging() == 0).await;
    }

    #[tokio::test]
    async fn a_hang_ends_when_the_client_goes_away() {
        let api = AnthropicApi::start([Turn::hang("Partial")]);
        let response = post(&api, "/v1/messages", &request(true)).await;
        wait_until_async("the stream to hang", TIMEOUT, async || api.hanging() == 1).await;
        drop(response);
        wait_until_async("the hang to end with its client", TIMEOUT, async || {
            api.hanging() == 0
        })
        .await;
    }
}
