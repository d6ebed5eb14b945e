//! Whether the daemon answers, speaks this aifactoryctl's protocol, and lets this user in.

use aifactory_common::PROTOCOL_VERSION;
use aifactory_common::diagnose::Check;

use crate::{Facts, fail, ok, skip};

pub(super) fn daemon(f: &Facts) -> Check {
    let name = "daemon";
    match &f.online {
        Ok(o) if o.status.protocol == PROTOCOL_VERSION => ok(
            name,
            format!(
                "aifactoryd {} (pid {}, protocol {}) answers on {}",
                o.status.version,
                o.status.pid,
                o.status.protocol,
                o.status.socket.display()
            ),
        ),
        Ok(o) => fail(
            name,
            format!(
                "aifactoryd speaks protocol {}, this aifactoryctl {PROTOCOL_VERSION}",
                o.status.protocol
            ),
            "install matching versions of aifactoryd and aifactoryctl (the same package), then restart the daemon".into(),
        ),
        Err(e) if e.is_permission_denied() => ok(
            name,
            "aifactoryd runs but refuses this user (see socket-access)".into(),
        ),
        Err(e) => fail(
            name,
            format!("aifactoryd does not answer: {e}"),
            "start it: `systemctl start aifactoryd` (system), `systemctl --user start aifactoryd`, or `aifactoryd` in a terminal".into(),
        ),
    }
}

pub(super) fn socket_access(f: &Facts) -> Check {
    let name = "socket-access";
    let uid = nix::unistd::getuid();
    match &f.online {
        Ok(_) => ok(name, format!("uid {uid} may use the daemon")),
        Err(e) if e.is_permission_denied() => fail(
            name,
            format!("uid {uid} is refused: {e}"),
            "sudo usermod -aG aifactory \"$USER\" (then log in again), or run your own user-mode daemon".into(),
        ),
        Err(_) => skip(name, "the daemon does not answer (see the daemon check)", None),
    }
}
