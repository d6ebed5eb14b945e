//! Where an agent's API key comes from, and the checks that keep it secret.
//!
//! A profile names its source: a systemd credential (`credential = "NAME"`, the file
//! `$CREDENTIALS_DIRECTORY/NAME` holding the bare key), an `env_file` (lines `KEY=value`, mode
//! 0600 and owned by aifactoryd's user), or nothing, in which case the key may come from the
//! daemon's own environment or from the CLI's own login in the daemon user's home. The config
//! itself never holds a key: it is a conffile other users may read.
//!
//! The same [`resolve`] serves the profile check (at load, on SIGHUP, in `agents check` and the
//! doctor) and the start of each attempt, which passes what it read to the agent only through
//! its environment. [`SecretEnv`] never prints a value, so a key cannot reach a log by `{:?}`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use aifactory_common::protocol::{AgentKind, ProfileProblem};

/// Suffixes of variable names that hold a secret; such a variable with a value in the config's
/// `env` is a key written in the config.
const SECRET_SUFFIXES: [&str; 3] = ["_API_KEY", "_TOKEN", "_SECRET"];

/// What the checks read of the daemon's process: its environment and effective uid.
pub struct Host<'a> {
    /// A variable of the daemon's environment, `None` when unset or empty.
    pub var: &'a dyn Fn(&str) -> Option<OsString>,
    pub euid: u32,
}

impl Host<'static> {
    /// This process.
    pub fn current() -> Host<'static> {
        Host {
            var: &aifactory_common::paths::process_env,
            euid: nix::unistd::geteuid().as_raw(),
        }
    }
}

/// What a profile says about its key.
#[derive(Debug, Clone, Copy)]
pub struct KeySettings<'a> {
    pub profile: &'a str,
    pub kind: AgentKind,
    pub api_key_env: Option<&'a str>,
    pub credential: Option<&'a str>,
    pub env_file: Option<&'a Path>,
    /// The profile's `env`, as written in the config.
    pub env: &'a BTreeMap<String, String>,
}

/// Where a profile's key was found; what the journal says at each start (never the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Credential {
        name: String,
    },
    EnvFile {
        path: PathBuf,
    },
    /// The profile's `env`, which is a problem of its own ([`ProfileProblem::KeyInConfig`]).
    Config {
        variable: String,
    },
    /// The daemon's own environment has the variable.
    DaemonEnv {
        variable: String,
    },
    /// The CLI's own login file in the daemon user's home.
    Login {
        path: PathBuf,
    },
    /// The profile needs no key (a `custom` or `gemini-cli` agent).
    NotNeeded,
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Credential { name } => write!(f, "systemd credential `{name}`"),
            KeySource::EnvFile { path } => write!(f, "env_file {}", path.display()),
            KeySource::Config { variable } => write!(f, "{variable} in the config's env"),
            KeySource::DaemonEnv { variable } => {
                write!(f, "{variable} in aifactoryd's environment")
            }
            KeySource::Login { path } => write!(f, "the CLI's login in {}", path.display()),
            KeySource::NotNeeded => f.write_str("none needed"),
        }
    }
}

/// Variables for the agent that hold secrets. Its `Debug` names the variables only.
#[derive(Default, Clone, PartialEq, Eq)]
pub struct SecretEnv(Vec<(String, String)>);

impl SecretEnv {
    pub fn push(&mut self, name: &str, value: &str) {
        self.0.push((name.to_string(), value.to_string()));
    }

    pub fn into_pairs(self) -> Vec<(String, String)> {
        self.0
    }
}

impl fmt::Debug for SecretEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(k, _)| format!("{k}=<secret>")))
            .finish()
    }
}

/// A profile's key, found and read.
#[derive(Debug)]
pub struct Resolved {
    pub source: KeySource,
    pub env: SecretEnv,
}

/// The variable a kind's CLI reads its key from: `api_key_env` when the profile sets one,
/// else claude-code `ANTHROPIC_API_KEY` and codex `CODEX_API_KEY` (what `codex exec` reads;
/// codex 0.171 takes `OPENAI_API_KEY` only through `codex login --with-api-key`).
pub fn key_variable(kind: AgentKind, api_key_env: Option<&str>) -> Option<String> {
    if let Some(name) = api_key_env.filter(|n| !n.is_empty()) {
        return Some(name.to_string());
    }
    match kind {
        AgentKind::ClaudeCode => Some("ANTHROPIC_API_KEY".into()),
        AgentKind::Codex => Some("CODEX_API_KEY".into()),
        AgentKind::OpenaiCompatible | AgentKind::GeminiCli | AgentKind::Custom => None,
    }
}

/// Other variables the kind's CLI takes instead of its key: a Claude Code subscription's
/// long-lived token (`claude setup-token`).
fn alternatives(kind: AgentKind) -> &'static [&'static str] {
    match kind {
        AgentKind::ClaudeCode => &["CLAUDE_CODE_OAUTH_TOKEN"],
        _ => &[],
    }
}

/// The file where the kind's CLI keeps its own login, under the daemon user's home.
fn login_file(kind: AgentKind, host: &Host<'_>) -> Option<PathBuf> {
    let home = PathBuf::from((host.var)("HOME")?);
    match kind {
        AgentKind::ClaudeCode => Some(home.join(".claude/.credentials.json")),
        AgentKind::Codex => Some(
            (host.var)("CODEX_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| home.join(".codex"))
                .join("auth.json"),
        ),
        _ => None,
    }
}

/// Whether `name` holds a secret by its name.
pub fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    SECRET_SUFFIXES.iter().any(|s| upper.ends_with(s))
}

/// Keys written in the profile's `env` (any `*_API_KEY`, `*_TOKEN`, `*_SECRET` with a value).
pub fn keys_in_config(env: &BTreeMap<String, String>) -> Vec<ProfileProblem> {
    env.iter()
        .filter(|(k, v)| is_secret_name(k) && !v.is_empty())
        .map(|(k, _)| ProfileProblem::KeyInConfig {
            variable: k.clone(),
        })
        .collect()
}

/// Finds and reads the profile's key, or says what keeps it from being found.
pub fn resolve(s: &KeySettings<'_>, host: &Host<'_>) -> Result<Resolved, ProfileProblem> {
    let variable = key_variable(s.kind, s.api_key_env);
    if let Some(name) = s.credential {
        // An openai-compatible profile without `api_key_env` is reported as such already.
        let Some(variable) = variable else {
            return Err(ProfileProblem::NoApiKeyEnv);
        };
        let (name, key) = read_credential(name, host)?;
        return Ok(Resolved {
            source: KeySource::Credential { name },
            env: SecretEnv(vec![(variable, key)]),
        });
    }
    if let Some(path) = s.env_file {
        let pairs = read_env_file(path, host.euid)?;
        if let Some(variable) = &variable {
            let found = pairs
                .iter()
                .any(|(k, v)| !v.is_empty() && accepts(s.kind, variable, k));
            if !found {
                return Err(ProfileProblem::KeyFileUnreadable {
                    path: path.display().to_string(),
                    error: format!("it has no line {variable}=..."),
                });
            }
        }
        return Ok(Resolved {
            source: KeySource::EnvFile {
                path: path.to_path_buf(),
            },
            env: SecretEnv(pairs),
        });
    }
    let Some(variable) = variable else {
        return Ok(Resolved {
            source: KeySource::NotNeeded,
            env: SecretEnv::default(),
        });
    };
    let names = std::iter::once(variable.as_str()).chain(alternatives(s.kind).iter().copied());
    for name in names.clone() {
        if s.env.get(name).is_some_and(|v| !v.is_empty()) {
            return Ok(Resolved {
                source: KeySource::Config {
                    variable: name.to_string(),
                },
                env: SecretEnv::default(),
            });
        }
    }
    for name in names {
        if let Some(value) = (host.var)(name) {
            // The daemon passes only a few of its variables to sessions: this one explicitly.
            return Ok(Resolved {
                source: KeySource::DaemonEnv {
                    variable: name.to_string(),
                },
                env: SecretEnv(vec![(
                    name.to_string(),
                    value.to_string_lossy().into_owned(),
                )]),
            });
        }
    }
    if let Some(path) = login_file(s.kind, host).filter(|p| p.is_file()) {
        return Ok(Resolved {
            source: KeySource::Login { path },
            env: SecretEnv::default(),
        });
    }
    Err(ProfileProblem::NoKeySource {
        profile: s.profile.to_string(),
        variable,
    })
}

fn accepts(kind: AgentKind, variable: &str, name: &str) -> bool {
    name == variable || alternatives(kind).contains(&name)
}

/// The credential `name` from `$CREDENTIALS_DIRECTORY`: its name and the key, without the
/// final newline `systemd-creds` keeps from the input.
fn read_credential(name: &str, host: &Host<'_>) -> Result<(String, String), ProfileProblem> {
    let Some(dir) = (host.var)("CREDENTIALS_DIRECTORY").map(PathBuf::from) else {
        return Err(ProfileProblem::CredentialMissing {
            name: name.to_string(),
            dir: None,
        });
    };
    let missing = || ProfileProblem::CredentialMissing {
        name: name.to_string(),
        dir: Some(dir.display().to_string()),
    };
    // A credential is a plain name; anything else would read outside the directory.
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return Err(missing());
    }
    let path = dir.join(name);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(missing()),
        Err(e) => {
            return Err(ProfileProblem::KeyFileUnreadable {
                path: path.display().to_string(),
                error: e.to_string(),
            });
        }
    };
    let key = text.trim_end_matches(['\n', '\r']);
    if key.is_empty() || key.contains(['\n', '\0']) {
        return Err(ProfileProblem::KeyFileUnreadable {
            path: path.display().to_string(),
            error: "it must hold the bare key on one line".into(),
        });
    }
    Ok((name.to_string(), key.to_string()))
}

/// The `KEY=value` lines of an env file that only `euid` may read and write.
fn read_env_file(path: &Path, euid: u32) -> Result<Vec<(String, String)>, ProfileProblem> {
    let unreadable = |error: String| ProfileProblem::KeyFileUnreadable {
        path: path.display().to_string(),
        error,
    };
    let mut file = std::fs::File::open(path).map_err(|e| unreadable(e.to_string()))?;
    // The descriptor's own metadata: the file checked is the file read.
    let meta = file.metadata().map_err(|e| unreadable(e.to_string()))?;
    if !meta.is_file() {
        return Err(unreadable("it is not a regular file".into()));
    }
    if meta.mode() & 0o077 != 0 || meta.uid() != euid {
        return Err(ProfileProblem::KeyFileOpen {
            path: path.display().to_string(),
            mode: meta.mode() & 0o7777,
        });
    }
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| unreadable(e.to_string()))?;
    parse_env(&text).map_err(|line| {
        // The line itself is not repeated: it may hold a key.
        unreadable(format!(
            "line {line} is not KEY=value (blank lines and # comments are allowed)"
        ))
    })
}

/// `KEY=value` lines, with blank lines, `# comments`, an optional `export ` and quotes around
/// the value; `Err` is the 1-based number of the first line that is none of these.
fn parse_env(text: &str) -> Result<Vec<(String, String)>, usize> {
    let mut pairs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err(i + 1);
        };
        let key = key.trim();
        let valid = !key.is_empty()
            && !key.starts_with(|c: char| c.is_ascii_digit())
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid || value.contains('\0') {
            return Err(i + 1);
        }
        let value = value.trim();
        let value = [('"', '"'), ('\'', '\'')]
            .iter()
            .find_map(|(open, close)| {
                value
                    .strip_prefix(*open)
                    .and_then(|v| v.strip_suffix(*close))
            })
            .unwrap_or(value);
        pairs.push((key.to_string(), value.to_string()));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn host<'a>(vars: &'a dyn Fn(&str) -> Option<OsString>) -> Host<'a> {
        Host {
            var: vars,
            euid: nix::unistd::geteuid().as_raw(),
        }
    }

    fn settings<'a>(kind: AgentKind, env: &'a BTreeMap<String, String>) -> KeySettings<'a> {
        KeySettings {
            profile: "p",
            kind,
            api_key_env: None,
            credential: None,
            env_file: None,
            env,
        }
    }

    fn write(path: &Path, text: &str, mode: u32) {
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn each_kind_names_its_variable() {
        assert_eq!(
            key_variable(AgentKind::ClaudeCode, None).as_deref(),
            Some("ANTHROPIC_API_KEY")
        );
        assert_eq!(
            key_variable(AgentKind::Codex, None).as_deref(),
            Some("CODEX_API_KEY")
        );
        assert_eq!(key_variable(AgentKind::OpenaiCompatible, None), None);
        assert_eq!(
            key_variable(AgentKind::OpenaiCompatible, Some("GEMINI_API_KEY")).as_deref(),
            Some("GEMINI_API_KEY")
        );
        assert_eq!(key_variable(AgentKind::Custom, None), None);
    }

    #[test]
    fn no_source_is_a_problem_naming_the_variable_and_the_fix() {
        let env = BTreeMap::new();
        let none = |_: &str| None;
        let problem = resolve(&settings(AgentKind::ClaudeCode, &env), &host(&none)).unwrap_err();
        assert_eq!(
            problem,
            ProfileProblem::NoKeySource {
                profile: "p".into(),
                variable: "ANTHROPIC_API_KEY".into()
            }
        );
        let sentence = problem.to_string();
        assert!(
            sentence.contains("credential") && sentence.contains("env_file"),
            "{sentence}"
        );
        // custom and gemini-cli need no key.
        for kind in [AgentKind::Custom, AgentKind::GeminiCli] {
            let found = resolve(&settings(kind, &env), &host(&none)).unwrap();
            assert_eq!(found.source, KeySource::NotNeeded);
        }
    }

    #[test]
    fn the_daemon_environment_and_the_cli_login_are_sources() {
        let env = BTreeMap::new();
        let with_key = |k: &str| (k == "CODEX_API_KEY").then(|| OsString::from("sk-daemon"));
        let found = resolve(&settings(AgentKind::Codex, &env), &host(&with_key)).unwrap();
        assert_eq!(
            found.source,
            KeySource::DaemonEnv {
                variable: "CODEX_API_KEY".into()
            }
        );
        assert_eq!(
            found.env.clone().into_pairs(),
            [("CODEX_API_KEY".to_string(), "sk-daemon".to_string())]
        );
        assert!(!format!("{found:?}").contains("sk-daemon"));

        let home = tempfile::tempdir().unwrap();
        let home_var = |k: &str| (k == "HOME").then(|| home.path().as_os_str().to_owned());
        let claude = settings(AgentKind::ClaudeCode, &env);
        assert!(resolve(&claude, &host(&home_var)).is_err());
        std::fs::create_dir_all(home.path().join(".claude")).unwrap();
        write(&home.path().join(".claude/.credentials.json"), "{}", 0o600);
        let found = resolve(&claude, &host(&home_var)).unwrap();
        assert!(
            matches!(&found.source, KeySource::Login { path } if path.ends_with(".claude/.credentials.json")),
            "{found:?}"
        );
        assert!(found.env.into_pairs().is_empty());
    }

    #[test]
    fn an_env_file_must_be_private_and_hold_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.env");
        let env = BTreeMap::new();
        let none = |_: &str| None;
        let s = KeySettings {
            env_file: Some(&path),
            ..settings(AgentKind::ClaudeCode, &env)
        };
        assert!(matches!(
            resolve(&s, &host(&none)),
            Err(ProfileProblem::KeyFileUnreadable { .. })
        ));
        write(
            &path,
            "# keys\nexport ANTHROPIC_API_KEY=\"sk-file\"\n\nOTHER=x\n",
            0o640,
        );
        assert_eq!(
            resolve(&s, &host(&none)).unwrap_err(),
            ProfileProblem::KeyFileOpen {
                path: path.display().to_string(),
                mode: 0o640
            }
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let found = resolve(&s, &host(&none)).unwrap();
        assert_eq!(
            found.env.into_pairs(),
            [
                ("ANTHROPIC_API_KEY".to_string(), "sk-file".to_string()),
                ("OTHER".to_string(), "x".to_string())
            ]
        );
        // Owned by another uid.
        let other = Host {
            var: &none,
            euid: nix::unistd::geteuid().as_raw() + 1,
        };
        assert!(matches!(
            resolve(&s, &other),
            Err(ProfileProblem::KeyFileOpen { mode: 0o600, .. })
        ));
        write(&path, "OTHER=x\n", 0o600);
        let missing = resolve(&s, &host(&none)).unwrap_err().to_string();
        assert!(missing.contains("no line ANTHROPIC_API_KEY="), "{missing}");
        write(&path, "ANTHROPIC_API_KEY sk-secret-line\n", 0o600);
        let garbled = resolve(&s, &host(&none)).unwrap_err().to_string();
        assert!(garbled.contains("line 1 is not KEY=value"), "{garbled}");
        assert!(!garbled.contains("sk-secret-line"), "{garbled}");
    }

    #[test]
    fn a_credential_is_read_from_the_credentials_directory() {
        let dir = tempfile::tempdir().unwrap();
        let env = BTreeMap::new();
        let s = KeySettings {
            credential: Some("anthropic-key"),
            ..settings(AgentKind::ClaudeCode, &env)
        };
        let none = |_: &str| None;
        let unset = resolve(&s, &host(&none)).unwrap_err();
        assert_eq!(
            unset,
            ProfileProblem::CredentialMissing {
                name: "anthropic-key".into(),
                dir: None
            }
        );
        assert!(unset.to_string().contains("LoadCredentialEncrypted"));
        let creds = |k: &str| (k == "CREDENTIALS_DIRECTORY").then(|| dir.path().into());
        assert!(matches!(
            resolve(&s, &host(&creds)),
            Err(ProfileProblem::CredentialMissing { dir: Some(_), .. })
        ));
        write(&dir.path().join("anthropic-key"), "sk-cred\n", 0o400);
        let found = resolve(&s, &host(&creds)).unwrap();
        assert_eq!(
            found.env.into_pairs(),
            [("ANTHROPIC_API_KEY".to_string(), "sk-cred".to_string())]
        );
        let outside = KeySettings {
            credential: Some("../anthropic-key"),
            ..s
        };
        assert!(resolve(&outside, &host(&creds)).is_err());
    }

    #[test]
    fn keys_written_in_the_config_are_found_by_name() {
        let env = BTreeMap::from([
            ("ANTHROPIC_API_KEY".to_string(), "sk-x".to_string()),
            ("GITHUB_TOKEN".to_string(), "t".to_string()),
            ("client_secret".to_string(), "s".to_string()),
            ("EMPTY_TOKEN".to_string(), String::new()),
            ("IS_SANDBOX".to_string(), "1".to_string()),
        ]);
        let found: Vec<String> = keys_in_config(&env)
            .iter()
            .map(|p| match p {
                ProfileProblem::KeyInConfig { variable } => variable.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            found,
            ["ANTHROPIC_API_KEY", "GITHUB_TOKEN", "client_secret"]
        );
        // A key in the config is a problem of its own, not also a missing source.
        let none = |_: &str| None;
        let found = resolve(&settings(AgentKind::ClaudeCode, &env), &host(&none)).unwrap();
        assert!(matches!(found.source, KeySource::Config { .. }));
    }
}
