//! The systemd unit: loaded, active, watched by a watchdog, logging to the journal.

use std::path::Path;

use aifactory_common::diagnose::Check;

use crate::{ok, skip, warn};

pub(super) async fn systemd() -> Check {
    let name = "systemd";
    if !Path::new("/run/systemd/system").is_dir() {
        return ok(
            name,
            "systemd is not this machine's init: nothing to check".into(),
        );
    }
    let show = tokio::process::Command::new("systemctl")
        .args([
            "show",
            "aifactoryd",
            "-p",
            "ActiveState",
            "-p",
            "WatchdogUSec",
            "-p",
            "LoadState",
        ])
        .kill_on_drop(true)
        .output()
        .await;
    let out = match show {
        Ok(out) => out,
        Err(e) => {
            return skip(
                name,
                &format!("systemd runs, but systemctl cannot be run: {e}"),
                Some("put systemctl on PATH".into()),
            );
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")).map(str::to_string))
            .unwrap_or_default()
    };
    if value("LoadState") != "loaded" {
        return ok(
            name,
            "aifactoryd is not installed as a systemd unit (user mode or by hand)".into(),
        );
    }
    if value("ActiveState") != "active" {
        return warn(
            name,
            format!("aifactoryd.service is {}", value("ActiveState")),
            "systemctl start aifactoryd.socket aifactoryd.service; see `journalctl -u aifactoryd -e`".into(),
        );
    }
    let watchdog = value("WatchdogUSec");
    if watchdog.is_empty() || watchdog == "0" || watchdog == "infinity" {
        return warn(
            name,
            "aifactoryd.service runs without a watchdog: a wedged daemon would not be restarted".into(),
            "set WatchdogSec=30 in the unit (`systemctl edit aifactoryd`), then `systemctl daemon-reload && systemctl restart aifactoryd`".into(),
        );
    }
    let journal = tokio::process::Command::new("journalctl")
        .args(["-u", "aifactoryd", "-n", "1", "-o", "cat", "--no-pager"])
        .kill_on_drop(true)
        .output()
        .await;
    let logged = journal.is_ok_and(|o| !o.stdout.is_empty());
    if !logged {
        return warn(
            name,
            "the journal holds no line of aifactoryd".into(),
            "check that systemd-journald runs (`systemctl status systemd-journald`) and that you may read the journal (group systemd-journal)".into(),
        );
    }
    ok(
        name,
        format!("aifactoryd.service is active, watchdog {watchdog}, the journal receives its logs"),
    )
}
