//! The program's cage: the Landlock rules the daemon decided for a task's agent, carried to the
//! monitor in its arguments ([`Cage::to_args`], read back by [`super::MonitorArgs::parse`]) and
//! to the program's process in its zygote request, where [`Cage::apply`] enforces them after
//! the `chdir` and before the `exec`, so the program and everything it starts run confined.
//!
//! What the rules are is the daemon's business (its `cage` module builds them from the task and
//! the agent's profile); this module only applies them: file-system access is handled entirely
//! (every right of [`ABI`] `V6`, which this kernel generation has), so whatever no rule grants
//! is refused; outgoing TCP is limited to `connect_ports` when the daemon gives a list; signals
//! to processes outside the cage and connections to abstract Unix sockets outside it are
//! refused (Landlock scopes). A pathname Unix socket's `connect` is not something Landlock
//! refuses before ABI 9: the daemon refuses caged peers on its socket itself.

use std::ffi::OsString;
use std::os::fd::AsFd;
use std::path::PathBuf;

use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, NetPort, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope,
};

/// The Landlock ABI whose rights the cage handles: file rights up to `IoctlDev` (5), TCP
/// connect (4) and the signal and abstract-socket scopes (6).
const CAGE_ABI: ABI = ABI::V6;

/// How strictly a cage must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CageMode {
    /// The program does not start unless Landlock enforces the rules.
    Required,
    /// The program starts confined as far as the kernel can (the daemon reported what is
    /// missing before it asked).
    BestEffort,
}

impl CageMode {
    pub fn as_str(self) -> &'static str {
        match self {
            CageMode::Required => "required",
            CageMode::BestEffort => "best-effort",
        }
    }

    fn parse(text: &str) -> Option<CageMode> {
        match text {
            "required" => Some(CageMode::Required),
            "best-effort" => Some(CageMode::BestEffort),
            _ => None,
        }
    }
}

/// The rules of one program's cage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cage {
    pub mode: CageMode,
    /// Read, write, create, remove beneath each (files: read and write).
    pub read_write: Vec<PathBuf>,
    /// Read and execute beneath each.
    pub read_only: Vec<PathBuf>,
    /// `Some`: outgoing TCP only to these ports; `None`: TCP is not limited.
    pub connect_ports: Option<Vec<u16>>,
}

/// Why a cage could not be applied. The stub reports it to the monitor as an errno.
#[derive(Debug, thiserror::Error)]
pub enum CageError {
    #[error("Landlock refused the ruleset: {0}")]
    Ruleset(#[from] landlock::RulesetError),
    #[error("Landlock is not enforced by this kernel")]
    NotEnforced,
}

impl CageError {
    /// The errno the stub reports for this failure: what the daemon turns into a sentence.
    pub fn errno(&self) -> nix::Error {
        match self {
            CageError::Ruleset(_) => nix::Error::EPERM,
            CageError::NotEnforced => nix::Error::EOPNOTSUPP,
        }
    }
}

/// The monitor's flags that carry a cage (see [`Cage::to_args`]).
pub(crate) const FLAG_MODE: &str = "--cage";
pub(crate) const FLAG_RW: &str = "--cage-rw";
pub(crate) const FLAG_RO: &str = "--cage-ro";
pub(crate) const FLAG_PORT: &str = "--cage-port";
/// Given (and only then) when TCP is limited: a cage whose port list is empty allows none.
pub(crate) const FLAG_NET: &str = "--cage-net";

/// `arg` when it is one of the cage's flags.
pub(crate) fn flag(arg: &std::ffi::OsStr) -> Option<&'static str> {
    [FLAG_MODE, FLAG_RW, FLAG_RO, FLAG_PORT, FLAG_NET]
        .into_iter()
        .find(|f| arg == *f)
}

impl Cage {
    /// The monitor's arguments for this cage: `--cage MODE`, then `--cage-rw PATH`,
    /// `--cage-ro PATH`, `--cage-net limited` and `--cage-port N`, each repeated as needed.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut out: Vec<OsString> = vec![FLAG_MODE.into(), self.mode.as_str().into()];
        for path in &self.read_write {
            out.extend([FLAG_RW.into(), path.clone().into()]);
        }
        for path in &self.read_only {
            out.extend([FLAG_RO.into(), path.clone().into()]);
        }
        if let Some(ports) = &self.connect_ports {
            out.extend([FLAG_NET.into(), "limited".into()]);
            for port in ports {
                out.extend([FLAG_PORT.into(), port.to_string().into()]);
            }
        }
        out
    }

    /// Reads back what [`to_args`](Self::to_args) wrote (the flags in any order); `None` when
    /// a flag is unknown or a value wrong.
    pub(crate) fn from_args(args: &[OsString]) -> Option<Cage> {
        let mut mode = None;
        let mut cage = Cage {
            mode: CageMode::BestEffort,
            read_write: Vec::new(),
            read_only: Vec::new(),
            connect_ports: None,
        };
        let mut ports = Vec::new();
        let mut limited = false;
        for pair in args.chunks(2) {
            let [flag, value] = pair else { return None };
            match flag.to_str()? {
                FLAG_MODE => mode = Some(CageMode::parse(value.to_str()?)?),
                FLAG_RW => cage.read_write.push(PathBuf::from(value)),
                FLAG_RO => cage.read_only.push(PathBuf::from(value)),
                FLAG_NET if value == "limited" => limited = true,
                FLAG_PORT => ports.push(value.to_str()?.parse::<u16>().ok()?),
                _ => return None,
            }
        }
        cage.mode = mode?;
        if limited {
            cage.connect_ports = Some(ports);
        } else if !ports.is_empty() {
            return None;
        }
        Some(cage)
    }

    /// Confines this process (and everything it will start) to the cage. Only in the program's
    /// process, single-threaded, right before its exec. A path that does not exist is left
    /// out (the daemon gave only existing ones; one removed since grants nothing).
    pub fn apply(&self) -> Result<(), CageError> {
        let all = AccessFs::from_all(CAGE_ABI);
        let read = AccessFs::from_read(CAGE_ABI);
        let mut ruleset = Ruleset::default()
            .handle_access(all)?
            .scope(Scope::Signal | Scope::AbstractUnixSocket)?;
        if self.connect_ports.is_some() {
            ruleset = ruleset.handle_access(AccessNet::ConnectTcp)?;
        }
        let mut created = ruleset.create()?;
        for (paths, access) in [(&self.read_only, read), (&self.read_write, all)] {
            for path in paths {
                let Ok(fd) = PathFd::new(path) else { continue };
                let access = for_file_or_dir(&fd, access);
                created = created.add_rule(PathBeneath::new(fd, access))?;
            }
        }
        for port in self.connect_ports.iter().flatten() {
            created = created.add_rule(NetPort::new(*port, AccessNet::ConnectTcp))?;
        }
        let status = created.restrict_self()?;
        if self.mode == CageMode::Required && status.ruleset == RulesetStatus::NotEnforced {
            return Err(CageError::NotEnforced);
        }
        Ok(())
    }
}

/// `access` as far as it applies to what `fd` is: a file takes only the rights of files.
fn for_file_or_dir(fd: &PathFd, access: BitFlags<AccessFs>) -> BitFlags<AccessFs> {
    let is_dir = nix::sys::stat::fstat(fd.as_fd()).is_ok_and(|st| {
        nix::sys::stat::SFlag::from_bits_truncate(st.st_mode)
            .contains(nix::sys::stat::SFlag::S_IFDIR)
    });
    if is_dir {
        access
    } else {
        access & AccessFs::from_file(CAGE_ABI)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cage_round_trips_through_the_monitors_arguments() {
        let cage = Cage {
            mode: CageMode::Required,
            read_write: vec!["/w t".into(), "/home/x/.cache".into()],
            read_only: vec!["/usr".into()],
            connect_ports: Some(vec![443, 8080]),
        };
        assert_eq!(Cage::from_args(&cage.to_args()), Some(cage.clone()));
        let closed = Cage {
            connect_ports: Some(vec![]),
            ..cage.clone()
        };
        assert_eq!(Cage::from_args(&closed.to_args()), Some(closed));
        let open = Cage {
            mode: CageMode::BestEffort,
            connect_ports: None,
            ..cage
        };
        assert_eq!(Cage::from_args(&open.to_args()), Some(open));
        let bad: Vec<OsString> = vec!["--cage".into(), "sometimes".into()];
        assert_eq!(Cage::from_args(&bad), None);
        let stray_port: Vec<OsString> = ["--cage", "required", "--cage-port", "1"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(Cage::from_args(&stray_port), None);
    }
}
