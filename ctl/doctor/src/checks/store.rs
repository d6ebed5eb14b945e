//! The store: whether the state directory and database take writes, and the database's
//! migrations and migration lock.

use aifactory_common::diagnose::Check;
use aifactory_common::protocol::StoreHealth;

use crate::{Facts, fail, ok, skip, warn};

pub(super) fn state_dir(f: &Facts) -> Check {
    let name = "state-dir";
    if let Some(online) = f.online() {
        return match &online.status.store {
            StoreHealth::Writable => ok(
                name,
                format!(
                    "{} and its database take writes",
                    online.status.state_dir.display()
                ),
            ),
            StoreHealth::ReadOnly { reason } | StoreHealth::WriteFailed { reason } => fail(
                name,
                format!("the database does not take writes: {reason}"),
                format!(
                    "make {} and aifactory.db writable by the daemon's user, free disk space, then restart the daemon",
                    online.status.state_dir.display()
                ),
            ),
        };
    }
    match &f.local {
        Ok(l) => match &l.state_dir_error {
            None => ok(name, format!("{} takes writes", l.state_dir.display())),
            Some(e) => fail(
                name,
                e.clone(),
                format!(
                    "make {} writable by the daemon's user",
                    l.state_dir.display()
                ),
            ),
        },
        Err(e) => skip(
            name,
            &format!("the daemon does not answer and `aifactoryd check` gives no report: {e}"),
            Some("start the daemon, or install aifactoryd next to aifactoryctl".into()),
        ),
    }
}

pub(super) fn migrations(f: &Facts) -> Check {
    let name = "migrations";
    let m = match &f.local {
        Ok(l) => match &l.migrations {
            Ok(m) => m,
            Err(e) => {
                return fail(
                    name,
                    format!("the database's migrations cannot be read: {e}"),
                    "run `aifactoryd migrate --status` as the daemon's user for details".into(),
                );
            }
        },
        Err(e) => {
            return skip(
                name,
                &format!("`aifactoryd check` gives no report: {e}"),
                Some("install aifactoryd next to aifactoryctl".into()),
            );
        }
    };
    let backup = m
        .newest_backup
        .as_ref()
        .map(|b| b.display().to_string())
        .unwrap_or_else(|| "none".into());
    let lock = if m.lock.held {
        format!("; the migration lock is {}", m.lock)
    } else {
        String::new()
    };
    let summary = format!(
        "schema version {} of {} known by this aifactoryd; newest backup: {backup}{lock}",
        m.schema_version, m.known_version
    );
    if !m.checksum_mismatch.is_empty() || !m.unknown_applied.is_empty() {
        return fail(
            name,
            format!(
                "{summary}; changed migrations: {:?}; applied by a newer aifactoryd: {:?}",
                m.checksum_mismatch, m.unknown_applied
            ),
            format!(
                "install the aifactoryd that made this database, or restore the backup {backup}"
            ),
        );
    }
    if !m.pending.is_empty() || m.lock.held {
        let fix = if m.lock.held && m.lock.holder_alive {
            format!(
                "wait for pid {} to finish; if it is stuck, `kill {}` (the kernel frees the lock), then `aifactoryd migrate`",
                m.lock.holder_pid.unwrap_or(0),
                m.lock.holder_pid.unwrap_or(0)
            )
        } else {
            "run `aifactoryd migrate` as the daemon's user (or restart the daemon, which migrates at boot)".into()
        };
        let pending = if m.pending.is_empty() {
            String::new()
        } else {
            format!("; pending: {}", m.pending.join(", "))
        };
        return warn(name, format!("{summary}{pending}"), fix);
    }
    ok(name, summary)
}
