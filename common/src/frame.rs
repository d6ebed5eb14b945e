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

/// Writes one frame (length prefix, then payload) without an intermediate buffer, for writers
/// that keep many idle connections and so cannot afford a framing buffer each.
pub async fn write_frame<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut W,
    payload: &[u8],
) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let len = u32::try_from(payload.len()).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "a frame of {} bytes does not fit the 4-byte length prefix",
                payload.len()
            ),
        )
    })?;
    w.write_all(&len.to_be_bytes()).await?;
    w.write_all(payload).await
}

/// Bytes a reader starts with; its buffer grows only when a larger frame arrives.
pub const INITIAL_READ_BUFFER: usize = 512;

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use tokio_util::codec::FramedRead;

    #[tokio::test]
    async fn write_frame_matches_the_codec() {
        let mut out = Vec::new();
        write_frame(&mut out, b"hello").await.unwrap();
        write_frame(&mut out, b"").await.unwrap();
        assert_eq!(&out[..9], b"\x00\x00\x00\x05hello");
        let mut frames = FramedRead::new(&out[..], length_codec(DEFAULT_MAX_FRAME_BYTES));
        assert_eq!(&frames.next().await.unwrap().unwrap()[..], b"hello");
        assert_eq!(&frames.next().await.unwrap().unwrap()[..], b"");
        assert!(frames.next().await.is_none());
    }
}
