//! `DoctorFacts`: what the daemon sees of its own paths and processes, for the doctor's
//! checks. A [`DoctorError`] becomes the wire's `ErrorReply` here, and only here.

use aifactory_common::protocol::{ErrorCode, ErrorReply, Reply};

use crate::context::ConnContext;
use crate::doctor::{self, DoctorError};

fn code(e: &DoctorError) -> ErrorCode {
    match e {
        DoctorError::Busy | DoctorError::Unfinished { .. } => ErrorCode::Unavailable,
        DoctorError::Projects(e) => super::projects::code(e),
        DoctorError::Tasks(e) => super::tasks::supervisor_code(e),
        DoctorError::Sessions(e) => super::sessions::code(e),
    }
}

impl From<DoctorError> for ErrorReply {
    fn from(e: DoctorError) -> ErrorReply {
        ErrorReply::new(code(&e), e.to_string())
    }
}

pub async fn facts(ctx: &ConnContext) -> Result<Reply, ErrorReply> {
    match doctor::gather(&ctx.daemon).await {
        Ok(facts) => Ok(Reply::DoctorFacts(Box::new(facts))),
        Err(e) => {
            tracing::warn!(peer_uid = ctx.peer.uid, error = %e, "cannot give the doctor's facts");
            Err(e.into())
        }
    }
}
