//! Exit codes (documented in `--help`) and how a failure is reported.

use std::process::ExitCode;

use aifactory_common::ClientError;
use aifactory_common::protocol::{ErrorCode, ProcessEntry};

pub const FAILED: u8 = 1;
pub const UNREACHABLE: u8 = 3;
pub const NOT_FOUND: u8 = 4;
pub const PERMISSION_DENIED: u8 = 5;
/// `doctor`: no check failed, but some could not run.
pub const INCOMPLETE: u8 = 6;

/// A failed command: what to print and which code to exit with.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    /// Processes of `what` (e.g. "session `s-1`") that outlived a stop's SIGKILL, or `Ok` when
    /// none did: a stop that leaves processes behind has failed.
    pub fn survivors(what: &str, survivors: &[ProcessEntry]) -> Result<(), Failure> {
        if survivors.is_empty() {
            return Ok(());
        }
        Err(Failure {
            code: FAILED,
            message: format!(
                "{} processes of {what} survived SIGKILL: {}; check `ps -o pid,stat,wchan -p PID` (state D is stuck in the kernel)",
                survivors.len(),
                survivors
                    .iter()
                    .map(|p| format!("{} ({})", p.pid, p.command))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
    }
}

impl Failure {
    pub fn report(self) -> ExitCode {
        eprintln!("aifactoryctl: error: {}", self.message);
        ExitCode::from(self.code)
    }
}

impl From<aifactory_common::ssh::SshError> for Failure {
    fn from(err: aifactory_common::ssh::SshError) -> Self {
        use aifactory_common::ssh::SshErrorKind;
        let code = match err.kind {
            SshErrorKind::Unreachable => UNREACHABLE,
            SshErrorKind::PermissionDenied => PERMISSION_DENIED,
            SshErrorKind::Failed => FAILED,
        };
        Failure {
            code,
            message: err.message,
        }
    }
}

impl From<ClientError> for Failure {
    fn from(err: ClientError) -> Self {
        let code = if err.is_unreachable() {
            UNREACHABLE
        } else if err.is_permission_denied() {
            PERMISSION_DENIED
        } else if err.code() == Some(ErrorCode::NotFound) {
            NOT_FOUND
        } else {
            FAILED
        };
        Failure {
            code,
            message: err.to_string(),
        }
    }
}
