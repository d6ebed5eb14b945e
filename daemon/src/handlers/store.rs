//! The wire form of a state-database failure, which any request that reads or writes the
//! store can meet.

use aifactory_common::protocol::{ErrorCode, ErrorReply};

use crate::store::StoreError;

/// A write that did not happen can be retried; a SQLite error is the daemon's fault.
pub(super) fn code(e: &StoreError) -> ErrorCode {
    match e {
        StoreError::WriteFailed(_) | StoreError::Gone => ErrorCode::Unavailable,
        StoreError::Sqlite { .. } => ErrorCode::Internal,
    }
}

impl From<StoreError> for ErrorReply {
    fn from(e: StoreError) -> Self {
        ErrorReply::new(code(&e), e.to_string())
    }
}
