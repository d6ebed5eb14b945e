//! The frame layer under every payload: a 4-byte big-endian length, then the payload.

use tokio_util::codec::LengthDelimitedCodec;

/// Default largest frame either side accepts (`max_frame_bytes` in the daemon's config).
pub const DEFAULT_MAX_FRAME_BYTES: usize = 4 << 20;

/// The codec both sides wrap their socket halves in.
pub fn length_codec(max_frame_bytes: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(4)
        .max_frame_length(max_frame_bytes)
        .new_codec()
}

/// Whether an I/O error from [`length_codec`] means the peer sent a frame over the limit.
pub fn is_frame_too_large(err: &std::io::Error) -> bool {
    err.get_ref()
        .is_some_and(|inner| inner.is::<tokio_util::codec::LengthDelimitedCodecError>())
}
