//! The raw handshake both sides send before any frame. Its layout never changes, so any two
//! versions of aifactory can always tell each other which protocol they speak:
//! 8 magic bytes `AIFCTRL\0`, then the protocol version as a big-endian u16.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub const MAGIC: [u8; 8] = *b"AIFCTRL\0";
pub const HELLO_LEN: usize = MAGIC.len() + 2;

/// Encodes our hello.
pub fn hello(version: u16) -> [u8; HELLO_LEN] {
    let mut out = [0u8; HELLO_LEN];
    out[..MAGIC.len()].copy_from_slice(&MAGIC);
    out[MAGIC.len()..].copy_from_slice(&version.to_be_bytes());
    out
}

/// What the peer's hello said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerHello {
    /// An aifactory peer speaking this protocol version.
    Version(u16),
    /// The first bytes were not our magic: not an aifactory peer at all.
    NotAifactory,
}

/// Parses the peer's hello.
pub fn parse(bytes: &[u8; HELLO_LEN]) -> PeerHello {
    if bytes[..MAGIC.len()] != MAGIC {
        return PeerHello::NotAifactory;
    }
    PeerHello::Version(u16::from_be_bytes([
        bytes[MAGIC.len()],
        bytes[MAGIC.len() + 1],
    ]))
}

/// Sends our hello.
pub async fn send<W: AsyncWrite + Unpin>(w: &mut W, version: u16) -> std::io::Result<()> {
    w.write_all(&hello(version)).await?;
    w.flush().await
}

/// Reads the peer's hello (the caller bounds it with a timeout).
pub async fn receive<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<PeerHello> {
    let mut buf = [0u8; HELLO_LEN];
    r.read_exact(&mut buf).await?;
    Ok(parse(&buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_fixed() {
        assert_eq!(&hello(1), b"AIFCTRL\0\x00\x01");
        assert_eq!(parse(&hello(513)), PeerHello::Version(513));
        assert_eq!(parse(b"GET / HTTP"), PeerHello::NotAifactory);
    }
}
