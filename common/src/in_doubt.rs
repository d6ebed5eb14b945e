//! Which requests leave their outcome in doubt when the connection closes before the reply,
//! and how the user can find out: a request that changes state may have completed although
//! its reply never came (the daemon died or restarted after acting on it).

use crate::protocol::Request;

/// A state-changing request whose reply was lost: what it was and the command that shows
/// whether it happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InDoubt {
    /// The request as the CLI names it, e.g. `sessions new`.
    pub request: &'static str,
    /// The `aifactoryctl` command that shows its outcome.
    pub check: &'static str,
}

/// `None` for requests that only read: repeating them is always safe.
pub fn in_doubt(request: &Request) -> Option<InDoubt> {
    const PROJECTS: &str = "aifactoryctl projects list";
    const SESSIONS: &str = "aifactoryctl sessions list";
    const TASKS: &str = "aifactoryctl tasks list";
    let (request, check) = match request {
        Request::ProjectAdd(_) => ("projects add", PROJECTS),
        Request::ProjectRemove { .. } => ("projects remove", PROJECTS),
        Request::ProjectImportLegacy { .. } => ("projects import-legacy", PROJECTS),
        Request::ProjectClone { .. } => ("projects clone", PROJECTS),
        Request::SessionNew(_) => ("sessions new", SESSIONS),
        Request::SessionInput { .. } => ("sessions send", "aifactoryctl sessions tail SESSION"),
        Request::SessionResize { .. } => ("sessions resize", SESSIONS),
        Request::SessionKill { .. } => ("sessions kill", SESSIONS),
        Request::SessionRemove { .. } => ("sessions remove", SESSIONS),
        Request::TaskCreate(_) => ("tasks create", TASKS),
        Request::TaskStart { .. } => ("tasks start", TASKS),
        Request::TaskStop { .. } => ("tasks stop", TASKS),
        Request::TaskRestart { .. } => ("tasks restart", TASKS),
        Request::TaskRemove { .. } => ("tasks remove", TASKS),
        Request::Status
        | Request::SubscribeEvents { .. }
        | Request::Unsubscribe { .. }
        | Request::ProjectList
        | Request::ProjectShow { .. }
        | Request::SessionList
        | Request::SessionShow { .. }
        | Request::SessionWait { .. }
        | Request::SessionTail { .. }
        | Request::TaskList { .. }
        | Request::TaskShow { .. }
        | Request::AgentList
        | Request::AgentShow { .. }
        | Request::TaskTranscript { .. }
        | Request::TaskAttempts { .. }
        | Request::SessionStrays
        | Request::DoctorFacts => return None,
    };
    Some(InDoubt { request, check })
}
