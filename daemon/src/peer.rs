//! Who may talk to the daemon: its own uid, root, and members of the configured group, judged
//! from the peer's kernel credentials (SO_PEERCRED), never from anything the peer says.

use std::ffi::CString;

use aifactory_common::protocol::{ErrorCode, ErrorReply};
use nix::unistd::{Gid, Group, Uid, User};

/// The credentials the kernel reports for a connected peer.
#[derive(Debug, Clone, Copy)]
pub struct PeerCred {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
}

#[derive(Debug, Clone)]
pub struct PeerPolicy {
    daemon_uid: u32,
    group_name: String,
    /// `None` when the group does not exist on this host.
    group: Option<Gid>,
}

impl PeerPolicy {
    pub fn new(group_name: &str) -> PeerPolicy {
        let group = match Group::from_name(group_name) {
            Ok(Some(group)) => Some(group.gid),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(group = group_name, error = %e, "cannot look up the socket group");
                None
            }
        };
        PeerPolicy {
            daemon_uid: Uid::effective().as_raw(),
            group_name: group_name.to_string(),
            group,
        }
    }

    pub fn group_gid(&self) -> Option<Gid> {
        self.group
    }

    pub fn group_name(&self) -> &str {
        &self.group_name
    }

    pub fn check(&self, peer: &PeerCred) -> Result<(), ErrorReply> {
        if peer.uid == self.daemon_uid || peer.uid == 0 {
            return Ok(());
        }
        if let Some(gid) = self.group
            && is_member(peer, gid)
        {
            return Ok(());
        }
        let advice = match self.group {
            Some(_) => format!(
                "join group `{g}` (`sudo usermod -aG {g} <user>`, then log in again)",
                g = self.group_name
            ),
            None => format!(
                "group `{g}` does not exist on this host: create it (`groupadd --system {g}`) and join it, or set socket_group in the daemon's config",
                g = self.group_name
            ),
        };
        Err(ErrorReply::new(
            ErrorCode::PermissionDenied,
            format!(
                "permission denied: uid {} may not use aifactoryd (allowed: uid {}, root, and members of group `{}`): {advice}",
                peer.uid, self.daemon_uid, self.group_name
            ),
        ))
    }
}

/// Primary group, or a supplementary group in the account database.
fn is_member(peer: &PeerCred, gid: Gid) -> bool {
    if peer.gid == gid.as_raw() {
        return true;
    }
    let Ok(Some(user)) = User::from_uid(Uid::from_raw(peer.uid)) else {
        return false;
    };
    let Ok(name) = CString::new(user.name) else {
        return false;
    };
    nix::unistd::getgrouplist(&name, user.gid).is_ok_and(|groups| groups.contains(&gid))
}
