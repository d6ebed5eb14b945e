//! Sessions started through the client, for tests and benchmarks that drive the daemon's
//! protocol directly.

use aifactory_common::Client;
use aifactory_common::protocol::{Reply, Request, SessionInfo, SessionSpec};

use crate::sandbox::Sandbox;

/// Starts `sh -c script` in a new session, in the sandbox; fails the test if refused.
pub async fn new_session(client: &Client, sandbox: &Sandbox, script: &str) -> SessionInfo {
    let spec = SessionSpec {
        name: None,
        command: vec!["sh".into(), "-c".into(), script.into()],
        cwd: sandbox.path().to_path_buf(),
        env: Vec::new(),
        cols: None,
        rows: None,
    };
    match client.request(Request::SessionNew(spec)).await {
        Ok(Reply::Session(s)) => s,
        other => panic!("sessions new failed: {other:?}"),
    }
}
