//! The OpenAPI document is exact: requests generated from the served `openapi.json` (proptest,
//! for every route, within and across each documented bound) get only the statuses the document
//! lists for their route, with bodies that validate against the documented schema (jsonschema);
//! a request the schema forbids is never accepted, and one it allows is never refused as
//! invalid, except for the refusals the schema cannot know of (state on disk or in the daemon),
//! named below.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aifactory_common::protocol::SessionSpec;
use aifactory_tests::Sandbox;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use reqwest::Method;
use serde_json::{Value, json};

/// A liveness bound for a loaded 2-core machine, not a speed target.
const TIMEOUT: Duration = Duration::from_secs(30);
/// Requests per route: enough to cross each bound, few enough to stay well under a minute.
const CASES: usize = 20;

fn git(args: &[&str], dir: &Path) {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.org"])
        .args(args)
        .output()
        .expect("git");
    assert!(out.status.success(), "git {args:?}: {out:?}");
}

/// The document's object at a `#/...` reference.
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value["$ref"].as_str() {
        Some(reference) => {
            let target = doc
                .pointer(reference.trim_start_matches('#'))
                .unwrap_or_else(|| panic!("dangling reference {reference}"));
            resolve(doc, target)
        }
        None => value,
    }
}

/// A validator for `schema`, whose references point into the document's components.
fn validator(doc: &Value, schema: &Value) -> jsonschema::Validator {
    let root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": doc["components"],
        "allOf": [schema],
    });
    jsonschema::validator_for(&root).unwrap_or_else(|e| panic!("schema {schema}: {e}"))
}

/// Values the test knows exist, offered besides generated ones so that requests reach real
/// resources (and their 2xx bodies get checked) as well as missing ones.
#[derive(Clone)]
struct Known {
    /// Ids and names of the route's kind of resource (every kind's outside a resource).
    ids: Vec<String>,
    projects: Vec<String>,
    tasks: Vec<String>,
    sessions: Vec<String>,
    /// The hosts the shim serves.
    hosts: Vec<String>,
    repo: PathBuf,
    not_a_repo: PathBuf,
}

impl Known {
    /// What this route's `{id}` and `project` are drawn from.
    fn for_route(&self, template: &str) -> Known {
        let ids = if template.contains("/projects") {
            self.projects.clone()
        } else if template.contains("/tasks/") {
            self.tasks.clone()
        } else if template.contains("/sessions") {
            self.sessions.clone()
        } else {
            self.projects.clone()
        };
        Known {
            ids,
            ..self.clone()
        }
    }
}

/// Values for a schema: inside its bounds, on them, and across them; whether each is valid is
/// decided by the schema itself, not here.
fn values(doc: &Value, schema: &Value, name: &str, known: &Known) -> BoxedStrategy<Value> {
    let schema = resolve(doc, schema);
    if let Some(branches) = schema["oneOf"].as_array() {
        let strategies: Vec<BoxedStrategy<Value>> = branches
            .iter()
            .map(|branch| values(doc, branch, name, known))
            .collect();
        return proptest::strategy::Union::new(strategies).boxed();
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let mut out: Vec<BoxedStrategy<Value>> = vec![
        // The wrong type, whatever the schema says.
        Just(json!(true)).boxed(),
    ];
    if types.contains(&"null") {
        out.push(Just(Value::Null).boxed());
    }
    if types.contains(&"integer") {
        let min = schema["minimum"].as_u64().unwrap_or(0);
        let max = schema["maximum"].as_u64().unwrap_or(u64::MAX);
        let within = (min..=max).prop_map(Value::from);
        out.extend(std::iter::repeat_n(within.boxed(), 3));
        out.push(Just(Value::from(max)).boxed());
        out.push(Just(Value::from(-1)).boxed());
        // One past the maximum, which may not fit a u64.
        out.push(
            Just(
                max.checked_add(1)
                    .map_or_else(|| json!(2f64.powi(64)), Value::from),
            )
            .boxed(),
        );
        out.push(Just(json!("five")).boxed());
    }
    if types.contains(&"boolean") {
        // `true` is offered above already.
        out.push(Just(json!(false)).boxed());
        out.push(Just(json!("yes")).boxed());
    }
    if types.contains(&"string") {
        if let Some(variants) = schema["enum"].as_array() {
            out.push(proptest::sample::select(variants.clone()).boxed());
            out.push(Just(json!("sourceforge")).boxed());
        } else {
            let pattern = schema["pattern"].as_str().unwrap_or("^.{0,12}$");
            // proptest generates from the regex without anchors and look-arounds; the
            // schema still judges the result whole.
            let generated = pattern
                .trim_start_matches('^')
                .trim_end_matches('$')
                .replace("(?!p-[0-9a-fA-F]{8}$)", "");
            let generated = generated.replace(".{0,12}", "[a-z0-9 é-]{0,12}");
            if let Ok(strategy) = proptest::string::string_regex(&generated) {
                let matching = strategy.prop_map(Value::from);
                out.extend(std::iter::repeat_n(matching.boxed(), 3));
            }
            let mut edges = vec![
                String::new(),
                "  ".into(),
                "a\u{7}b".into(),
                "Bad Spec".into(),
                "p-0123abcd".into(),
                "\u{feff}".into(),
                "é".repeat(100),
                "é".repeat(101),
                "t".repeat(201),
                "x".repeat(64),
                "x".repeat(65),
            ];
            match name {
                "path" => edges.extend(
                    [&known.repo, &known.not_a_repo]
                        .map(|p| p.to_string_lossy().into_owned())
                        .into_iter()
                        .chain(["/no/such/dir".into(), "relative/dir".into()]),
                ),
                "agent" => edges.extend(["fake".into(), "fake".into()]),
                "host" => edges.extend(known.hosts.iter().cloned()),
                _ => edges.extend(known.ids.iter().cloned()),
            }
            out.push(
                proptest::sample::select(edges)
                    .prop_map(Value::from)
                    .boxed(),
            );
            if name == "id" || name == "project" {
                // Mostly real ones, so that requests get past "not found".
                let ids = proptest::sample::select(known.ids.clone()).prop_map(Value::from);
                out.extend(std::iter::repeat_n(ids.boxed(), 4));
            }
            if name == "host" {
                let hosts = proptest::sample::select(known.hosts.clone()).prop_map(Value::from);
                out.extend(std::iter::repeat_n(hosts.boxed(), 6));
            }
        }
    }
    if types.contains(&"object") {
        let required: Vec<String> = schema["required"]
            .as_array()
            .map(|r| {
                r.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let mut fields: Vec<BoxedStrategy<Option<(String, Value)>>> = Vec::new();
        for (field, field_schema) in schema["properties"].as_object().into_iter().flatten() {
            let present = if required.contains(field) { 0.95 } else { 0.6 };
            let field = field.clone();
            let inner = values(doc, field_schema, &field, known);
            fields.push(
                proptest::option::weighted(present, inner)
                    .prop_map(move |v| v.map(|v| (field.clone(), v)))
                    .boxed(),
            );
        }
        let extra = proptest::option::weighted(0.1, Just(("nmae".to_string(), json!("typo"))));
        return (fields, extra)
            .prop_map(|(fields, extra)| {
                Value::Object(fields.into_iter().flatten().chain(extra).collect())
            })
            .boxed();
    }
    proptest::strategy::Union::new(out).boxed()
}

/// A query, path or header value as text, with the JSON value its schema judges.
fn as_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The JSON value a parameter's text stands for: a boolean or a number when it is one, else
/// the text.
fn as_json(text: &str) -> Value {
    if let Ok(b) = text.parse::<bool>() {
        return Value::Bool(b);
    }
    if let Ok(n) = text.parse::<u64>() {
        return Value::from(n);
    }
    if let Ok(n) = text.parse::<i64>() {
        return Value::from(n);
    }
    if let Ok(n) = text.parse::<f64>()
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b'e' || b == b'+')
    {
        return json!(n);
    }
    Value::from(text)
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// One generated request.
#[derive(Debug)]
struct Case {
    path: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Option<Value>,
    /// Whether the document allows it.
    valid: bool,
    /// What the test substituted for `{id}`.
    id: Option<String>,
}

struct Operation {
    method: String,
    template: String,
    item: Value,
}

fn operations(doc: &Value) -> Vec<Operation> {
    let mut ops = Vec::new();
    for (template, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            ops.push(Operation {
                method: method.to_uppercase(),
                template: template.clone(),
                item: op.clone(),
            });
        }
    }
    ops
}

/// `CASES` requests for an operation, each judged by the document.
fn cases(doc: &Value, op: &Operation, known: &Known, runner: &mut TestRunner) -> Vec<Case> {
    let known = &known.for_route(&op.template);
    let params: Vec<Value> = op.item["parameters"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut param_strategies: Vec<BoxedStrategy<Option<(Value, String)>>> = Vec::new();
    for param in &params {
        let name = param["name"].as_str().unwrap_or_default().to_string();
        let required = param["required"].as_bool().unwrap_or(false);
        // The auth layer, not the document's schema, reads a token parameter: leave it out.
        if name == "token" {
            continue;
        }
        let strategy = values(doc, &param["schema"], &name, known)
            .prop_filter("a header value is visible ASCII", {
                let header = param["in"] == "header";
                move |v| !header || as_text(v).bytes().all(|b| (0x20..0x7f).contains(&b))
            })
            .prop_map({
                let param = param.clone();
                move |v| (param.clone(), as_text(&v))
            });
        let strategy = if required {
            strategy.prop_map(Some).boxed()
        } else {
            proptest::option::weighted(0.7, strategy).boxed()
        };
        param_strategies.push(strategy);
    }
    // An unknown query parameter now and then, where the route takes query parameters (the
    // document says those routes refuse unknown ones; the others ignore the query).
    let takes_query = params.iter().any(|p| p["in"] == "query");
    let stray = proptest::option::weighted(0.1, Just(("gracee".to_string(), "1".to_string())))
        .prop_map(move |stray| stray.filter(|_| takes_query));
    let body_schema = op.item["requestBody"]["content"]["application/json"]["schema"].clone();
    let body = if body_schema.is_null() {
        Just(None).boxed()
    } else {
        values(doc, &body_schema, "body", known)
            .prop_map(Some)
            .boxed()
    };
    let strategy = (param_strategies, stray, body);
    let mut out = Vec::new();
    for _ in 0..CASES {
        let (params, stray, body) = strategy
            .new_tree(runner)
            .expect("generate a request")
            .current();
        let mut case = Case {
            path: op.template.clone(),
            query: Vec::new(),
            headers: Vec::new(),
            body: body.clone(),
            valid: true,
            id: None,
        };
        for (param, text) in params.into_iter().flatten() {
            let name = param["name"].as_str().unwrap_or_default().to_string();
            let judged = if param["schema"]["type"] == "string" {
                Value::from(text.clone())
            } else {
                as_json(&text)
            };
            case.valid &= validator(doc, &param["schema"]).is_valid(&judged);
            match param["in"].as_str() {
                Some("path") => {
                    case.path = case
                        .path
                        .replace(&format!("{{{name}}}"), &percent_encode(&text));
                    case.id = Some(text);
                }
                Some("query") => case.query.push((name, text)),
                Some("header") => case.headers.push((name, text)),
                other => panic!("parameter in {other:?}"),
            }
        }
        if let Some((name, value)) = stray {
            case.valid = false;
            case.query.push((name, value));
        }
        if let Some(body) = &body {
            case.valid &= validator(doc, &body_schema).is_valid(body);
        }
        out.push(case);
    }
    out
}

/// Refusals as `invalid` that the schema cannot foresee, by route: they depend on the disk or on
/// the daemon's state and config.
fn refused_for_state(op: &Operation, case: &Case, known: &Known) -> bool {
    let body = case.body.as_ref();
    match (op.method.as_str(), op.template.as_str()) {
        // An existing directory that is not a git work tree.
        ("POST", "/api/v1/projects") => body
            .and_then(|b| b["path"].as_str())
            .is_some_and(|p| Path::new(p).exists()),
        // An agent profile the config does not have.
        ("POST", "/api/v1/tasks") => body
            .and_then(|b| b["agent"].as_str())
            .is_some_and(|a| a != "fake"),
        // A task that exists but does not run: nothing to stop.
        ("POST", "/api/v1/hosts/{host}/tasks/{id}/stop") => {
            case.id.as_ref().is_some_and(|id| known.tasks.contains(id))
        }
        // `force` without `prune` (documented: it means nothing alone).
        ("DELETE", "/api/v1/hosts/{host}/tasks/{id}") => {
            let given = |name: &str| case.query.iter().any(|(k, v)| k == name && v == "true");
            given("force") && !given("prune")
        }
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_requests_get_only_documented_statuses_and_bodies() {
    let sandbox = Sandbox::new();
    sandbox.write_config(
        "default_agent = \"fake\"\n[agents.fake]\nkind = \"custom\"\ncommand = [\"sleep\", \"300\"]\n",
    );
    let daemon = sandbox.daemon().start();
    let shim = sandbox.http().start();
    let http = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .expect("reqwest client");

    // Something for the requests to find: a project, a task, a session.
    let repo = sandbox.path().join("repos").join("demo");
    std::fs::create_dir_all(&repo).unwrap();
    git(&["init", "-q", "-b", "main"], &repo);
    std::fs::write(repo.join("README"), "hello\n").unwrap();
    git(&["add", "README"], &repo);
    git(&["commit", "-q", "-m", "init"], &repo);
    let client = daemon.client().await;
    let project = client
        .project_add(aifactory_common::protocol::ProjectAdd {
            path: repo.clone(),
            name: Some("demo".into()),
            provider: None,
        })
        .await
        .expect("add the project");
    let task = client
        .task_create(aifactory_common::protocol::TaskCreate {
            project: "demo".into(),
            spec_id: "001-login".into(),
            title: None,
            agent: None,
        })
        .await
        .expect("create the task");
    let session = client
        .session_new(SessionSpec {
            name: Some("shell".into()),
            command: vec!["sleep".into(), "300".into()],
            cwd: sandbox.path().to_path_buf(),
            env: Vec::new(),
            cols: None,
            rows: None,
        })
        .await
        .expect("start a session");
    let projects = vec![project.id, "demo".into()];
    let tasks = vec![task.id, "001-login".into()];
    let sessions = vec![session.id, "shell".into()];
    let hosts: Vec<String> = http
        .get(shim.url("/api/v1/hosts"))
        .bearer_auth(&shim.token)
        .send()
        .await
        .expect("GET /api/v1/hosts")
        .json::<Value>()
        .await
        .expect("the hosts are JSON")
        .as_array()
        .expect("a list of hosts")
        .iter()
        .filter_map(|h| h["name"].as_str().map(String::from))
        .collect();
    assert_eq!(
        hosts.len(),
        1,
        "a shim without [[hosts]] serves its machine's daemon"
    );
    let known = Known {
        ids: [projects.clone(), tasks.clone(), sessions.clone()].concat(),
        projects,
        tasks,
        sessions,
        hosts,
        repo,
        not_a_repo: sandbox.path().to_path_buf(),
    };

    let doc: Value = http
        .get(shim.url("/api/v1/openapi.json"))
        .bearer_auth(&shim.token)
        .send()
        .await
        .expect("GET openapi.json")
        .json()
        .await
        .expect("the document is JSON");
    let mut ops = operations(&doc);
    assert_eq!(ops.len(), 26, "every route is generated for");
    // What deletes goes last, so the known task, project and session serve every other route.
    ops.sort_by_key(|op| op.method == "DELETE");

    let mut runner = TestRunner::deterministic();
    let mut seen: BTreeMap<String, Vec<u16>> = BTreeMap::new();
    for op in &ops {
        let responses = op.item["responses"].as_object().expect("responses");
        for case in cases(&doc, op, &known, &mut runner) {
            let method = Method::from_bytes(op.method.as_bytes()).unwrap();
            let query: Vec<String> = case
                .query
                .iter()
                .map(|(k, v)| format!("{k}={}", percent_encode(v)))
                .collect();
            let url = if query.is_empty() {
                shim.url(&case.path)
            } else {
                format!("{}?{}", shim.url(&case.path), query.join("&"))
            };
            let mut request = http.request(method, url).bearer_auth(&shim.token);
            for (name, value) in &case.headers {
                request = request.header(name, value);
            }
            if let Some(body) = &case.body {
                request = request.json(body);
            }
            let response = request.send().await.expect("HTTP request");
            let status = response.status().as_u16();
            let what = format!("{} {} -> {status}\n{case:#?}", op.method, op.template);
            seen.entry(format!("{} {}", op.method, op.template))
                .or_default()
                .push(status);
            let documented = responses
                .get(&status.to_string())
                .unwrap_or_else(|| panic!("undocumented status: {what}"));
            let documented = resolve(&doc, documented);
            let streaming = response
                .headers()
                .get("content-type")
                .is_some_and(|t| t.to_str().unwrap_or("").starts_with("text/event-stream"));
            if streaming {
                assert!(
                    documented["content"]["text/event-stream"].is_object(),
                    "an undocumented stream: {what}"
                );
            } else {
                let bytes = response.bytes().await.expect("HTTP body");
                let schema = &documented["content"]["application/json"]["schema"];
                if !schema.is_null() {
                    let body: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                        panic!("{what}: the body is not JSON ({e}): {bytes:?}")
                    });
                    if let Err(e) = validator(&doc, schema).validate(&body) {
                        panic!("{what}: the body does not match the document ({e}):\n{body:#}");
                    }
                }
            }
            if case.valid {
                assert!(
                    status != 400 || refused_for_state(op, &case, &known),
                    "a request the document allows was refused: {what}"
                );
            } else {
                assert!(
                    !(200..300).contains(&status) && status != 101,
                    "a request the document forbids was accepted: {what}"
                );
            }
        }
    }
    // The generation reached past the refusals: most routes answered some request with 2xx.
    let succeeded = seen
        .values()
        .filter(|statuses| statuses.iter().any(|s| (200..300).contains(s)))
        .count();
    assert!(succeeded >= 14, "too few routes succeeded: {seen:#?}");
}
