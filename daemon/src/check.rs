//! `aifactoryd check --json`: what a daemon started the same way would find on this machine —
//! its config and agent profiles, its state directory, its database's migrations and the panes
//! root it would use — for `aifactoryctl doctor` when the daemon does not run (or to compare
//! the installed binary with the running one). Nothing is changed beyond the probe file a
//! starting daemon also writes.

use std::path::Path;

use aifactory_common::diagnose::LocalFacts;

use crate::config::{Config, ConfigFile, Overrides};
use crate::{agents, migrate, panes, storage};

/// `known`: the migrations this binary knows (fewer under a test build's hooks).
pub fn local_facts(overrides: &Overrides, known: migrate::Known) -> LocalFacts {
    let (config, config_error) = match Config::load(overrides) {
        Ok(config) => (Some(config), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let config = match config {
        Some(config) => config,
        None => {
            let env = aifactory_common::paths::process_env;
            match Config::resolve(
                ConfigFile::default(),
                None,
                overrides,
                &env,
                aifactory_common::paths::is_root(),
            ) {
                Ok(config) => config,
                Err(e) => {
                    return LocalFacts {
                        config_file: overrides.config.clone(),
                        config_error: Some(format!(
                            "{}; and the defaults: {e}",
                            config_error.unwrap_or_default()
                        )),
                        state_dir: Default::default(),
                        state_dir_error: None,
                        agents: Vec::new(),
                        migrations: Err("no state directory".into()),
                        panes_root: Err("no config".into()),
                        panes_skipped: Vec::new(),
                        test_agent_cmd: None,
                    };
                }
            }
        }
    };
    let agents = agents::check_all(
        &config.agents,
        agents::CheckContext {
            test_agent_cmd: config.test_agent_cmd.as_deref(),
            default_agent: &config.default_agent,
            stall_after_s: config.stall_after.as_secs(),
        },
    );
    let (panes_root, panes_skipped) = match panes::choose(&panes::candidates(
        config.panes_dir.as_deref(),
        &aifactory_common::paths::process_env,
    )) {
        Ok(root) => (Ok(root.path), root.skipped),
        Err(e) => (Err(e.to_string()), Vec::new()),
    };
    LocalFacts {
        config_file: config.config_file.clone(),
        config_error,
        state_dir_error: probe_state_dir(&config.state_dir),
        migrations: migrate::report::status(&config.state_dir, known)
            .map(|report| report.status)
            .map_err(|e| e.to_string()),
        state_dir: config.state_dir.clone(),
        agents,
        panes_root,
        panes_skipped,
        test_agent_cmd: config.test_agent_cmd.clone(),
    }
}

/// Why the state directory does not take a file (a missing one is created by the daemon).
fn probe_state_dir(dir: &Path) -> Option<String> {
    if !dir.exists() {
        return None;
    }
    let probe = dir.join(format!(".doctor-probe-{}", std::process::id()));
    match std::fs::write(&probe, b"probe").and_then(|()| std::fs::remove_file(&probe)) {
        Ok(()) => None,
        Err(e) => Some(storage::refusal(dir, &e)),
    }
}
