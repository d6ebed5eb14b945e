//! Payload encoding: the only module that names the serialisation format.
//!
//! Everything else calls [`encode`] and [`decode`], so the format can be swapped in one place
//! (with a protocol version bump). Today it is bincode 2 over serde, with a decode limit so a
//! hostile length prefix inside a payload cannot make the reader allocate without bound.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Largest number of bytes a single decoded payload may claim; above any allowed frame size.
pub const DECODE_LIMIT_BYTES: usize = 64 << 20;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<DECODE_LIMIT_BYTES>()
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("cannot encode message: {0}")]
    Encode(String),
    #[error("cannot decode message: {0}")]
    Decode(String),
    #[error("message has {0} trailing bytes after a complete value")]
    TrailingBytes(usize),
}

/// Encodes one message payload.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    bincode::serde::encode_to_vec(value, config()).map_err(|e| CodecError::Encode(e.to_string()))
}

/// Decodes exactly one message payload; trailing bytes are an error, not ignored.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, used) = bincode::serde::decode_from_slice(bytes, config())
        .map_err(|e| CodecError::Decode(e.to_string()))?;
    if used != bytes.len() {
        return Err(CodecError::TrailingBytes(bytes.len() - used));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ClientFrame, Request};

    #[test]
    fn round_trip() {
        let frame = ClientFrame {
            id: 7,
            request: Request::Status,
        };
        let bytes = encode(&frame).unwrap();
        assert_eq!(decode::<ClientFrame>(&bytes).unwrap(), frame);
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut bytes = encode(&ClientFrame {
            id: 1,
            request: Request::Status,
        })
        .unwrap();
        bytes.push(0);
        assert!(matches!(
            decode::<ClientFrame>(&bytes),
            Err(CodecError::TrailingBytes(1))
        ));
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(decode::<ClientFrame>(&[0xff; 3]).is_err());
    }
}
