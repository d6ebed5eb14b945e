//! Named hosts, in the manner of `docker context`: `$XDG_CONFIG_HOME/aifactory/hosts.toml`
//! (else `~/.config/aifactory/hosts.toml`) maps a NAME to a host URL and, optionally, the
//! ssh_config file its ssh uses. Read for `--host NAME`, written (atomically: a temporary file
//! renamed over the old one) by `hosts add` and `hosts remove`.
//!
//! ```toml
//! [hosts.build1]
//! url = "ssh://ann@build1.example:2222"
//! ssh_config = "/home/ann/.ssh/aifactory_config"   # optional
//! ```

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use aifactory_common::host::HostUrl;
use serde::{Deserialize, Serialize};

use crate::exit::{FAILED, Failure, NOT_FOUND};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostsFile {
    #[serde(default)]
    pub hosts: BTreeMap<String, HostEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostEntry {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_config: Option<PathBuf>,
}

/// Where the contexts live for this user.
pub fn file() -> Result<PathBuf, Failure> {
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
            Some(home) => PathBuf::from(home).join(".config"),
            None => {
                return Err(Failure {
                    code: FAILED,
                    message: "neither XDG_CONFIG_HOME nor HOME is set, so there is no hosts.toml: set one of them".into(),
                });
            }
        },
    };
    Ok(base.join("aifactory/hosts.toml"))
}

/// A context name: letters, digits, `-`, `_` and `.`, not starting with `-`; never `://`, so
/// a name and a URL cannot be confused.
pub fn check_name(name: &str) -> Result<(), Failure> {
    let ok = !name.is_empty()
        && !name.starts_with(['-', '.'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Failure {
            code: FAILED,
            message: format!(
                "`{name}` is not a host name for a context: use letters, digits, `-`, `_` and `.`"
            ),
        })
    }
}

pub fn load(path: &Path) -> Result<HostsFile, Failure> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HostsFile::default()),
        Err(e) => {
            return Err(Failure {
                code: FAILED,
                message: format!("cannot read {}: {e}", path.display()),
            });
        }
    };
    let file: HostsFile = toml::from_str(&text).map_err(|e| Failure {
        code: FAILED,
        message: format!(
            "{} is not a valid hosts file: {}; fix it or remove the bad entry with `aifactoryctl hosts remove NAME`",
            path.display(),
            e.to_string().trim()
        ),
    })?;
    for (name, entry) in &file.hosts {
        entry.url.parse::<HostUrl>().map_err(|e| Failure {
            code: FAILED,
            message: format!("{}: host `{name}`: {e}", path.display()),
        })?;
    }
    Ok(file)
}

/// Writes `file` to `path` through a temporary file in the same directory, renamed over it.
pub fn save(path: &Path, file: &HostsFile) -> Result<(), Failure> {
    let fail = |what: &str, e: &dyn std::fmt::Display| Failure {
        code: FAILED,
        message: format!("cannot {what} {}: {e}", path.display()),
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| fail("create the directory of", &e))?;
    let text = toml::to_string(file).map_err(|e| fail("encode", &e))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| fail("write", &e))?;
    tmp.write_all(text.as_bytes())
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| fail("write", &e))?;
    tmp.persist(path).map_err(|e| fail("replace", &e.error))?;
    Ok(())
}

/// The context called `name`.
pub fn lookup(name: &str) -> Result<HostEntry, Failure> {
    let path = file()?;
    let file = load(&path)?;
    file.hosts.get(name).cloned().ok_or_else(|| Failure {
        code: NOT_FOUND,
        message: format!(
            "no host called `{name}` in {}: add it with `aifactoryctl hosts add {name} ssh://[user@]host[:port]`, or give a URL",
            path.display()
        ),
    })
}
