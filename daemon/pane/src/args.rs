//! The monitor's command line. Only the daemon starts a monitor, so this is an internal
//! interface, parsed by hand to keep the monitor's start cheap (no clap), but still checked:
//! every problem is an error that names the argument.
//!
//! `aifactory-pane --dir DIR --session ID [--name NAME] --cwd DIR --cols N --rows N
//! --log-max BYTES [--cage MODE [--cage-rw PATH]... [--cage-ro PATH]... [--cage-net limited
//! [--cage-port N]...]] [--cgroup DIR]... -- PROGRAM [ARGS...]`; the program's environment is
//! the monitor's own, with `--cage` it runs confined ([`Cage`]), and with `--cgroup` in its
//! task's cgroup.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::cage::{self, Cage};

/// What a monitor is started with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorArgs {
    /// The pane directory, created (0700) by the daemon; must not hold an output.log yet.
    pub dir: PathBuf,
    /// The session's id.
    pub session: String,
    /// The session's display name.
    pub name: Option<String>,
    /// The program's working directory.
    pub cwd: PathBuf,
    /// Terminal size, at least 1x1.
    pub cols: u16,
    pub rows: u16,
    /// Size at which output.log is rotated (one older segment is kept); at least 1.
    pub log_max: u64,
    /// The program and its arguments (after `--`).
    pub command: Vec<String>,
    /// The Landlock rules the program runs under; `None`: not confined.
    pub cage: Option<Cage>,
    /// Cgroup directories the program's process joins before it executes (`--cgroup DIR`,
    /// one per hierarchy): its task's, where its limits hold.
    pub cgroups: Vec<PathBuf>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ArgsError {
    #[error("unknown argument `{0}`")]
    Unknown(String),
    #[error("{0} needs a value")]
    MissingValue(&'static str),
    #[error("{0} given twice")]
    Repeated(&'static str),
    #[error("{flag} `{value}` is not {what}")]
    Invalid {
        flag: &'static str,
        value: String,
        what: &'static str,
    },
    #[error("{0} is required")]
    Missing(&'static str),
    #[error("no program given: pass it after `--`")]
    NoCommand,
    #[error(
        "the --cage flags do not describe a cage (a mode of required or best-effort, paths, ports of 1 to 65535 after --cage-net limited)"
    )]
    BadCage,
}

impl ArgsError {
    /// The whole message for stderr: what is wrong, and that the daemon is the one to fix it.
    pub fn explain(&self) -> String {
        format!(
            "{self}; usage: aifactory-pane --dir DIR --session ID [--name NAME] --cwd DIR --cols N --rows N --log-max BYTES [--cage MODE ...] -- PROGRAM [ARGS...] (the pane monitor is started by aifactoryd, not by hand: an aifactoryd and aifactory-pane from different builds may disagree, so install both from one package)"
        )
    }
}

fn utf8(flag: &'static str, value: OsString) -> Result<String, ArgsError> {
    value.into_string().map_err(|v| ArgsError::Invalid {
        flag,
        value: v.to_string_lossy().into_owned(),
        what: "valid UTF-8",
    })
}

fn positive<T: std::str::FromStr + PartialOrd + From<u8>>(
    flag: &'static str,
    value: OsString,
    what: &'static str,
) -> Result<T, ArgsError> {
    let text = utf8(flag, value)?;
    match text.parse::<T>() {
        Ok(n) if n >= T::from(1) => Ok(n),
        _ => Err(ArgsError::Invalid {
            flag,
            value: text,
            what,
        }),
    }
}

fn set<T>(slot: &mut Option<T>, flag: &'static str, value: T) -> Result<(), ArgsError> {
    if slot.replace(value).is_some() {
        return Err(ArgsError::Repeated(flag));
    }
    Ok(())
}

impl MonitorArgs {
    /// Parses the arguments after the program name.
    pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<MonitorArgs, ArgsError> {
        let mut args = args.into_iter();
        let (mut dir, mut session, mut name, mut cwd) = (None, None, None, None);
        let (mut cols, mut rows, mut log_max) = (None, None, None);
        let mut command = None;
        let mut cage_args = Vec::new();
        let mut cgroups = Vec::new();
        while let Some(arg) = args.next() {
            if let Some(flag) = cage::flag(&arg) {
                let value = args.next().ok_or(ArgsError::MissingValue(flag))?;
                cage_args.extend([arg, value]);
                continue;
            }
            let flag: &'static str = match arg.to_str() {
                Some("--") => {
                    let rest = args
                        .by_ref()
                        .map(|a| utf8("the program's arguments", a))
                        .collect::<Result<Vec<_>, _>>()?;
                    command = Some(rest);
                    break;
                }
                Some("--dir") => "--dir",
                Some("--session") => "--session",
                Some("--name") => "--name",
                Some("--cwd") => "--cwd",
                Some("--cols") => "--cols",
                Some("--rows") => "--rows",
                Some("--log-max") => "--log-max",
                Some("--cgroup") => {
                    let dir = args.next().ok_or(ArgsError::MissingValue("--cgroup"))?;
                    cgroups.push(PathBuf::from(dir));
                    continue;
                }
                _ => return Err(ArgsError::Unknown(arg.to_string_lossy().into_owned())),
            };
            let value = args.next().ok_or(ArgsError::MissingValue(flag))?;
            match flag {
                "--dir" => set(&mut dir, flag, PathBuf::from(value))?,
                "--session" => set(&mut session, flag, utf8(flag, value)?)?,
                "--name" => set(&mut name, flag, utf8(flag, value)?)?,
                "--cwd" => set(&mut cwd, flag, PathBuf::from(value))?,
                "--cols" => set(
                    &mut cols,
                    flag,
                    positive(flag, value, "a width of 1 to 65535")?,
                )?,
                "--rows" => set(
                    &mut rows,
                    flag,
                    positive(flag, value, "a height of 1 to 65535")?,
                )?,
                _ => set(
                    &mut log_max,
                    flag,
                    positive(flag, value, "a size of at least 1 byte")?,
                )?,
            }
        }
        let args = MonitorArgs {
            dir: dir.ok_or(ArgsError::Missing("--dir"))?,
            session: session.ok_or(ArgsError::Missing("--session"))?,
            name,
            cwd: cwd.ok_or(ArgsError::Missing("--cwd"))?,
            cols: cols.ok_or(ArgsError::Missing("--cols"))?,
            rows: rows.ok_or(ArgsError::Missing("--rows"))?,
            log_max: log_max.ok_or(ArgsError::Missing("--log-max"))?,
            command: command.unwrap_or_default(),
            cage: match cage_args.is_empty() {
                true => None,
                false => Some(Cage::from_args(&cage_args).ok_or(ArgsError::BadCage)?),
            },
            cgroups,
        };
        if args.command.first().is_none_or(String::is_empty) {
            return Err(ArgsError::NoCommand);
        }
        Ok(args)
    }

    /// The arguments that [`parse`](Self::parse) reads back as `self`.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut out: Vec<OsString> = vec![
            "--dir".into(),
            self.dir.clone().into(),
            "--session".into(),
            self.session.clone().into(),
        ];
        if let Some(name) = &self.name {
            out.extend(["--name".into(), name.into()]);
        }
        out.extend([
            "--cwd".into(),
            self.cwd.clone().into(),
            "--cols".into(),
            self.cols.to_string().into(),
            "--rows".into(),
            self.rows.to_string().into(),
            "--log-max".into(),
            self.log_max.to_string().into(),
        ]);
        if let Some(cage) = &self.cage {
            out.extend(cage.to_args());
        }
        for dir in &self.cgroups {
            out.extend(["--cgroup".into(), dir.clone().into()]);
        }
        out.push("--".into());
        out.extend(self.command.iter().map(OsString::from));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<MonitorArgs, ArgsError> {
        MonitorArgs::parse(args.iter().map(OsString::from))
    }

    fn sample() -> MonitorArgs {
        MonitorArgs {
            dir: "/run/p/s-1".into(),
            session: "s-1".into(),
            name: Some("an agent -- with dashes".into()),
            cwd: "/work tree".into(),
            cols: 120,
            rows: 40,
            log_max: 64 << 20,
            command: vec!["sh".into(), "-c".into(), "echo --dir".into()],
            cage: None,
            cgroups: Vec::new(),
        }
    }

    #[test]
    fn round_trips() {
        let args = sample();
        assert_eq!(MonitorArgs::parse(args.to_args()), Ok(args.clone()));
        let unnamed = MonitorArgs { name: None, ..args };
        assert_eq!(MonitorArgs::parse(unnamed.to_args()), Ok(unnamed.clone()));
        let caged = MonitorArgs {
            cage: Some(Cage {
                mode: crate::cage::CageMode::Required,
                read_write: vec!["/w".into()],
                read_only: vec!["/usr".into(), "/etc".into()],
                connect_ports: Some(vec![443]),
            }),
            ..unnamed
        };
        assert_eq!(MonitorArgs::parse(caged.to_args()), Ok(caged));
    }

    #[test]
    fn everything_after_the_separator_is_the_program() {
        let args = parse(&[
            "--dir",
            "d",
            "--session",
            "s",
            "--cwd",
            "c",
            "--cols",
            "1",
            "--rows",
            "1",
            "--log-max",
            "1",
            "--",
            "--cols",
            "--",
        ])
        .unwrap();
        assert_eq!(args.command, ["--cols", "--"]);
    }

    #[test]
    fn refuses_what_is_wrong_by_name() {
        let base = [
            "--dir",
            "d",
            "--session",
            "s",
            "--cwd",
            "c",
            "--cols",
            "80",
            "--rows",
            "24",
            "--log-max",
            "9",
        ];
        let with = |extra: &[&str]| {
            let mut all = base.to_vec();
            all.extend_from_slice(extra);
            parse(&all)
        };
        assert_eq!(with(&["--", "true"]).map(|a| a.cols), Ok(80));
        assert_eq!(with(&[]), Err(ArgsError::NoCommand));
        assert_eq!(with(&["--"]), Err(ArgsError::NoCommand));
        assert_eq!(
            with(&["--bogus", "x", "--", "true"]),
            Err(ArgsError::Unknown("--bogus".into()))
        );
        assert_eq!(
            with(&["--cols", "5", "--", "true"]),
            Err(ArgsError::Repeated("--cols"))
        );
        assert_eq!(with(&["--name"]), Err(ArgsError::MissingValue("--name")));
        let zero = parse(&[
            "--dir",
            "d",
            "--session",
            "s",
            "--cwd",
            "c",
            "--cols",
            "0",
            "--rows",
            "24",
            "--log-max",
            "9",
            "--",
            "true",
        ]);
        assert!(
            matches!(zero, Err(ArgsError::Invalid { flag: "--cols", ref value, .. }) if value == "0"),
            "{zero:?}"
        );
        let huge = parse(&[
            "--dir",
            "d",
            "--session",
            "s",
            "--cwd",
            "c",
            "--cols",
            "1",
            "--rows",
            "70000",
            "--log-max",
            "9",
            "--",
            "true",
        ]);
        assert!(matches!(
            huge,
            Err(ArgsError::Invalid { flag: "--rows", .. })
        ));
        assert_eq!(
            parse(&["--session", "s", "--", "true"]),
            Err(ArgsError::Missing("--dir"))
        );
        let message = ArgsError::Missing("--dir").explain();
        assert!(message.starts_with("--dir is required; usage: aifactory-pane"));
    }
}
