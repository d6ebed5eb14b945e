//! The API token: 256 random bits from the OS, kept hex-encoded in `<state dir>/http-token`
//! (mode 0600), made on first start. Candidates are compared in constant time.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use subtle::ConstantTimeEq;

/// Random bytes in a token.
const TOKEN_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot create the directory {} for the token file: {source}", dir.display())]
    Dir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the token file {}: {source}; fix its permissions, or remove it to get a new token", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the token file {}: {source}; pass --state-dir DIR to keep it elsewhere", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the token file {} has mode {mode:04o}, so other users can read the token: run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    Exposed { path: PathBuf, mode: u32 },
    #[error(
        "the token file {} does not hold a token (at least 32 characters from [A-Za-z0-9._~-]): remove it and start aifactory-http again to get a new one",
        path.display()
    )]
    Invalid { path: PathBuf },
    #[error("the OS gave no random bytes for a new token: {0}")]
    Random(String),
}

#[derive(Clone)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    #[cfg(test)]
    pub fn for_tests(text: &str) -> Token {
        Token(text.to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `candidate` is the token, in time that does not depend on where they differ.
    pub fn matches(&self, candidate: &str) -> bool {
        self.0.as_bytes().ct_eq(candidate.as_bytes()).into()
    }
}

/// Characters a token may hold: those that survive a header, a subprotocol name and a query
/// string unescaped.
fn valid(token: &str) -> bool {
    token.len() >= 32
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'))
}

/// Reads the token file, making it first when there is none.
pub fn load_or_create(path: &Path) -> Result<Token, TokenError> {
    match read(path) {
        Err(TokenError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            create(path)
        }
        other => other,
    }
}

fn read(path: &Path) -> Result<Token, TokenError> {
    let read_error = |source| TokenError::Read {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_error)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(TokenError::Exposed {
            path: path.to_path_buf(),
            mode,
        });
    }
    let text = std::fs::read_to_string(path).map_err(read_error)?;
    let token = text.trim();
    if !valid(token) {
        return Err(TokenError::Invalid {
            path: path.to_path_buf(),
        });
    }
    Ok(Token(token.to_string()))
}

/// Lower-case hex, the form of the token and of the login codes signed with it.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn create(path: &Path) -> Result<Token, TokenError> {
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| TokenError::Dir {
                dir: dir.to_path_buf(),
                source,
            })?;
    }
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| TokenError::Random(e.to_string()))?;
    let token = hex(&bytes);
    // create_new: two shims starting at once must not each write a different token; the
    // loser reads the winner's.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    let mut file = match file {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return read(path),
        Err(source) => {
            return Err(TokenError::Write {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let written = file
        .write_all(format!("{token}\n").as_bytes())
        .and_then(|()| file.sync_all());
    if let Err(source) = written {
        // Half a token would lock everyone out at the next start.
        let _ = std::fs::remove_file(path);
        return Err(TokenError::Write {
            path: path.to_path_buf(),
            source,
        });
    }
    tracing::info!(file = %path.display(), "made a new API token");
    Ok(Token(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_then_read_back_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/http-token");
        let first = load_or_create(&path).unwrap();
        assert_eq!(first.as_str().len(), 64);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = load_or_create(&path).unwrap();
        assert_eq!(first.as_str(), again.as_str());
        assert!(first.matches(again.as_str()));
        assert!(!first.matches(&again.as_str()[1..]));
        assert!(!first.matches(""));
    }

    #[test]
    fn a_readable_or_empty_file_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("http-token");
        std::fs::write(&path, "x".repeat(64)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_or_create(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        std::fs::write(&path, "\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = load_or_create(&path).unwrap_err().to_string();
        assert!(err.contains("remove it"), "{err}");
    }
}
