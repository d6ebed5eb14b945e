//! What the running daemon tells the checks: its status, agents (with their cages), tasks,
//! sessions, projects and stray processes, asked on one connection within [`bounds::DAEMON`];
//! then, on the same connection within [`bounds::DAEMON_VIEW`], what it sees of its own paths
//! and processes ([`DoctorFacts`]), which may be missing while the rest is there.

use std::time::Duration;

use aifactory_common::protocol::{
    AgentInfo, DoctorFacts, ProjectInfo, SandboxInfo, SessionInfo, StatusInfo, StrayProcess,
    TaskInfo,
};
use aifactory_common::{Client, ClientError, ClientOptions};

use crate::bounds;

/// What the running daemon told us, when it answered.
pub struct Online {
    pub status: StatusInfo,
    pub agents: Vec<AgentInfo>,
    pub tasks: Vec<TaskInfo>,
    pub sessions: Vec<SessionInfo>,
    pub projects: Vec<ProjectInfo>,
    /// Processes of the daemon's sessions that no live session accounts for.
    pub strays: Vec<StrayProcess>,
    /// Each profile's cage (`None`: a daemon too old to say).
    pub sandboxes: Option<Vec<(String, SandboxInfo)>>,
    /// What the daemon sees of its own paths and processes, or why it did not say: the checks
    /// about them judge these, never what the caller sees.
    pub view: Result<DoctorFacts, OnlineError>,
}

/// Why the daemon's answers are missing.
#[derive(Debug, thiserror::Error)]
pub enum OnlineError {
    #[error(transparent)]
    Client(#[from] ClientError),
    /// It accepted the connection but did not answer everything in time (a wedged daemon).
    #[error("no answer within {} s", .0.as_secs())]
    TimedOut(Duration),
}

impl OnlineError {
    /// The daemon runs but refuses this user.
    pub fn is_permission_denied(&self) -> bool {
        matches!(self, OnlineError::Client(e) if e.is_permission_denied())
    }
}

/// Connects with `opts` and asks everything the checks need, within [`bounds::DAEMON`]; then
/// the daemon's view of its own paths and processes within [`bounds::DAEMON_VIEW`].
pub async fn ask(opts: &ClientOptions) -> Result<Online, OnlineError> {
    let asked = async {
        let client = Client::connect(opts).await?;
        let answers = ask_on(&client).await?;
        Ok::<_, ClientError>((client, answers))
    };
    let (client, answers) = match tokio::time::timeout(bounds::DAEMON, asked).await {
        Ok(answer) => answer.map_err(OnlineError::Client)?,
        Err(_) => return Err(OnlineError::TimedOut(bounds::DAEMON)),
    };
    let view = match tokio::time::timeout(bounds::DAEMON_VIEW, client.doctor_facts()).await {
        Ok(answer) => answer.map_err(OnlineError::Client),
        Err(_) => Err(OnlineError::TimedOut(bounds::DAEMON_VIEW)),
    };
    Ok(answers.with_view(view))
}

/// The daemon's answers but its view.
struct Answers {
    status: StatusInfo,
    agents: Vec<AgentInfo>,
    tasks: Vec<TaskInfo>,
    sessions: Vec<SessionInfo>,
    projects: Vec<ProjectInfo>,
    strays: Vec<StrayProcess>,
    sandboxes: Option<Vec<(String, SandboxInfo)>>,
}

impl Answers {
    fn with_view(self, view: Result<DoctorFacts, OnlineError>) -> Online {
        Online {
            status: self.status,
            agents: self.agents,
            tasks: self.tasks,
            sessions: self.sessions,
            projects: self.projects,
            strays: self.strays,
            sandboxes: self.sandboxes,
            view,
        }
    }
}

async fn ask_on(client: &Client) -> Result<Answers, ClientError> {
    let status = client.status().await?;
    let agents = client.agent_list().await?;
    let tasks = client.task_list(None).await?;
    let sessions = client.session_list().await?;
    let projects = client.project_list().await?;
    let strays = client.session_strays().await?;
    let mut sandboxes = Some(Vec::new());
    for agent in &agents {
        match client.agent_show(agent.name.as_str()).await {
            Ok(detail) => {
                if let Some(list) = sandboxes.as_mut() {
                    list.push((agent.name.clone(), detail.sandbox));
                }
            }
            Err(_) => sandboxes = None,
        }
    }
    Ok(Answers {
        status,
        agents,
        tasks,
        sessions,
        projects,
        strays,
        sandboxes,
    })
}
