//! Each task's agent in a cgroup of its own: where those cgroups can live (found once, at
//! start), the limits written into them, the accounting read back, an OOM kill told apart,
//! and a stop that ends every process of the cgroup at once.
//!
//! The daemon writes the cgroup file system itself, below its own cgroup: under systemd the
//! service's cgroup is delegated to it (`Delegate=yes`, see systemd/README.md for why not a
//! transient unit per task); without systemd, its own cgroup when its user may write there.
//! Both kernel interfaces are spoken: the unified hierarchy (v2), and the per-controller
//! hierarchies of v1 (memory, pids, cpu; cpuacct and blkio for accounting), to which hosts in
//! hybrid mode still bind the controllers. A task's cgroup is `task-<task id>` in each.
//!
//! The pane monitor moves the agent's process into the cgroup before its program executes
//! (`aifactory-pane --cgroup DIR`), so the agent and everything it starts are inside: a limit
//! hit contains the task alone, and nothing of it escapes the stop.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aifactory_common::protocol::ResourceUsage;

/// What a task's agent may use. `None`: no limit of that kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// Bytes of memory (and of swap: an agent past it is killed, not swapped out slowly).
    pub memory_max: Option<u64>,
    /// Relative CPU weight, 1 to 10000 (100 is everyone's default).
    pub cpu_weight: Option<u32>,
    /// CPU time per wall-clock time, in percent of one CPU (150: one and a half CPUs).
    pub cpu_max_percent: Option<u32>,
    /// Processes (and threads).
    pub tasks_max: Option<u64>,
}

impl Limits {
    /// Each limit this leaves out taken from `defaults`.
    pub fn or(self, defaults: Limits) -> Limits {
        Limits {
            memory_max: self.memory_max.or(defaults.memory_max),
            cpu_weight: self.cpu_weight.or(defaults.cpu_weight),
            cpu_max_percent: self.cpu_max_percent.or(defaults.cpu_max_percent),
            tasks_max: self.tasks_max.or(defaults.tasks_max),
        }
    }

    /// `memory_max = 512M, tasks_max = 200`, or `none`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(m) = self.memory_max {
            parts.push(format!("memory_max = {}", format_size(m)));
        }
        if let Some(w) = self.cpu_weight {
            parts.push(format!("cpu_weight = {w}"));
        }
        if let Some(p) = self.cpu_max_percent {
            parts.push(format!("cpu_max = {p}%"));
        }
        if let Some(t) = self.tasks_max {
            parts.push(format!("tasks_max = {t}"));
        }
        match parts.is_empty() {
            true => "no limits".into(),
            false => parts.join(", "),
        }
    }
}

/// `512M`, `2G`, `1048576`: bytes, with an optional K, M, G or T suffix (powers of 1024).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, shift) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => {
                    return Err(format!(
                        "`{text}` has an unknown unit: write bytes, or a number with K, M, G or T"
                    ));
                }
            };
            (&text[..i], shift)
        }
        _ => (text, 0),
    };
    let n: u64 = digits.trim().parse().map_err(|_| {
        format!("`{text}` is not a size: write bytes, or a number with K, M, G or T (e.g. 512M)")
    })?;
    n.checked_mul(1 << shift)
        .filter(|b| *b >= 1 << 20)
        .ok_or_else(|| format!("`{text}` is out of range: at least 1M, at most 16E"))
}

/// `150%`: percent of one CPU, 1 to 100 times the CPUs a machine could have.
pub fn parse_cpu_max(text: &str) -> Result<u32, String> {
    text.trim()
        .strip_suffix('%')
        .and_then(|n| n.trim().parse::<u32>().ok())
        .filter(|n| (1..=100_000).contains(n))
        .ok_or_else(|| format!("`{text}` is not a CPU quota: write a percentage of one CPU, e.g. \"150%\" for one and a half"))
}

fn format_size(bytes: u64) -> String {
    for (shift, unit) in [(40, 'T'), (30, 'G'), (20, 'M'), (10, 'K')] {
        if bytes >= 1 << shift && bytes % (1 << shift) == 0 {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

/// Why a task's cgroup could not be made with its limits.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("tasks get no cgroup here: {0}")]
    Unavailable(String),
    #[error(
        "cannot create the task's cgroup {}: {source}: a cgroup left there by an earlier attempt still holds processes, or the daemon may no longer write its cgroup (see `aifactoryctl status`, limits)",
        dir.display()
    )]
    Create {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot set {} to {value}: {source}: check the limit's value in the profile or [limits]", path.display())]
    Limit {
        path: PathBuf,
        value: String,
        source: std::io::Error,
    },
    #[error(
        "the limit {file} needs the {controller} controller, which has no hierarchy the daemon may write here: remove the limit from the profile (or [limits]), or give the daemon that controller (under systemd: CPUAccounting=yes)"
    )]
    NoController {
        file: &'static str,
        controller: &'static str,
    },
    #[error("the cgroup's setup did not finish: {0}")]
    Setup(#[from] tokio::task::JoinError),
}

/// Which kernel interface, and the directories the tasks' cgroups go below.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Layout {
    /// The unified hierarchy: one directory, with memory, pids and cpu handed down to it.
    V2 { base: PathBuf },
    /// Per-controller hierarchies: the daemon's own cgroup in each that matters (memory and
    /// pids always; cpu, cpuacct, blkio and systemd's own, where `systemd-cgls` finds names,
    /// when mounted), memory's first.
    V1 { hierarchies: Vec<Hierarchy> },
}

/// A directory in a v1 hierarchy and the controllers bound to that hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hierarchy {
    dir: PathBuf,
    controllers: Vec<String>,
}

impl Hierarchy {
    fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

/// Where the tasks' cgroups can be made, or why they cannot.
#[derive(Debug, Clone)]
pub struct Cgroups {
    layout: Result<Layout, String>,
}

/// One task's cgroup: a directory in each hierarchy (one for v2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskGroup {
    v2: bool,
    /// Every directory, the memory one first (v1; v2 has one, with no controller list).
    dirs: Vec<Hierarchy>,
    limits: Limits,
}

impl Cgroups {
    /// Finds where this process may make cgroups, from `/proc/self/mountinfo` and
    /// `/proc/self/cgroup`, and hands the controllers down (v2).
    pub fn probe() -> Cgroups {
        let layout = std::fs::read_to_string("/proc/self/mountinfo")
            .and_then(|m| Ok((m, std::fs::read_to_string("/proc/self/cgroup")?)))
            .map_err(|e| format!("cannot read this process's cgroups from /proc: {e}"))
            .and_then(|(mounts, own)| find_layout(&mounts, &own))
            .and_then(prepare);
        if let Err(reason) = &layout {
            tracing::warn!("per-task limits and accounting unavailable: {reason}");
        }
        Cgroups { layout }
    }

    /// `Err`: why tasks get no cgroup of their own (with what would give them one).
    pub fn available(&self) -> Result<(), &str> {
        self.layout.as_ref().map(|_| ()).map_err(String::as_str)
    }

    /// What status says: the interface and where, or why not.
    pub fn describe(&self) -> String {
        match &self.layout {
            Ok(Layout::V2 { base }) => format!(
                "each task in its own cgroup (v2) below {}: memory_max, cpu_weight, cpu_max and tasks_max are enforced",
                base.display()
            ),
            Ok(Layout::V1 { hierarchies }) => {
                let cpu = hierarchies.iter().any(|h| h.has("cpu"));
                format!(
                    "each task in its own cgroup (v1 memory, pids{}) below {}: memory_max, {}tasks_max are enforced",
                    if cpu { ", cpu" } else { "" },
                    hierarchies[0].dir.display(),
                    if cpu { "cpu_weight, cpu_max, " } else { "" }
                )
            }
            Err(reason) => format!("unavailable: {reason}"),
        }
    }

    /// The task's cgroup, made afresh with `limits` (one left by an earlier attempt goes
    /// first).
    pub async fn create(&self, task_id: &str, limits: Limits) -> Result<TaskGroup, CgroupError> {
        let group = self.group(task_id, limits)?;
        let made = group.clone();
        tokio::task::spawn_blocking(move || made.make()).await??;
        Ok(group)
    }

    /// The task's cgroup, as an earlier attempt or daemon made it (nothing is created), with
    /// the memory and process limits read back from it.
    pub fn existing(&self, task_id: &str) -> Option<TaskGroup> {
        let mut group = self.group(task_id, Limits::default()).ok()?;
        if !group.dirs[0].dir.is_dir() {
            return None;
        }
        let (memory, pids) = match group.v2 {
            true => ("memory.max", "pids.max"),
            false => ("memory.limit_in_bytes", "pids.max"),
        };
        let read = |controller: &str, file: &str| {
            let h = group.dirs.iter().find(|h| group.v2 || h.has(controller))?;
            // "max" (v2, pids) or a number near 2^63 (v1 memory) is no limit.
            let n: u64 = std::fs::read_to_string(h.dir.join(file))
                .ok()?
                .trim()
                .parse()
                .ok()?;
            (n < 1 << 62).then_some(n)
        };
        group.limits.memory_max = read("memory", memory);
        group.limits.tasks_max = read("pids", pids);
        Some(group)
    }

    fn group(&self, task_id: &str, limits: Limits) -> Result<TaskGroup, CgroupError> {
        let name = format!("task-{task_id}");
        let layout = self
            .layout
            .as_ref()
            .map_err(|why| CgroupError::Unavailable(why.clone()))?;
        match layout {
            Layout::V2 { base } => Ok(TaskGroup {
                v2: true,
                dirs: vec![Hierarchy {
                    dir: base.join(&name),
                    controllers: Vec::new(),
                }],
                limits,
            }),
            Layout::V1 { hierarchies } => Ok(TaskGroup {
                v2: false,
                dirs: hierarchies
                    .iter()
                    .map(|h| Hierarchy {
                        dir: h.dir.join(&name),
                        controllers: h.controllers.clone(),
                    })
                    .collect(),
                limits,
            }),
        }
    }
}

impl TaskGroup {
    /// The directories the agent's process joins (each one's `cgroup.procs`).
    pub fn dirs(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|h| h.dir.clone()).collect()
    }

    fn make(&self) -> Result<(), CgroupError> {
        self.remove_now();
        for h in &self.dirs {
            std::fs::create_dir(&h.dir).map_err(|source| CgroupError::Create {
                dir: h.dir.clone(),
                source,
            })?;
        }
        let l = self.limits;
        let mut writes: Vec<(&'static str, String)> = Vec::new();
        if self.v2 {
            if let Some(m) = l.memory_max {
                writes.push(("memory.max", m.to_string()));
                writes.push(("memory.swap.max", "0".into()));
            }
            if let Some(t) = l.tasks_max {
                writes.push(("pids.max", t.to_string()));
            }
            if let Some(w) = l.cpu_weight {
                writes.push(("cpu.weight", w.to_string()));
            }
            if let Some(p) = l.cpu_max_percent {
                writes.push(("cpu.max", format!("{} 100000", u64::from(p) * 1000)));
            }
            return write_all(&self.dirs[0].dir, &writes);
        }
        // v1 limit files are named after their controller: `pids.max`, `cpu.shares`.
        let controller_of = |file: &'static str| file.split('.').next().unwrap_or_default();
        if let Some(m) = l.memory_max {
            writes.push(("memory.limit_in_bytes", m.to_string()));
            writes.push(("memory.memsw.limit_in_bytes", m.to_string()));
        }
        if let Some(t) = l.tasks_max {
            writes.push(("pids.max", t.to_string()));
        }
        if let Some(w) = l.cpu_weight {
            // systemd's mapping of CPUWeight= to cpu.shares: 100 is the default 1024.
            writes.push(("cpu.shares", (u64::from(w) * 1024 / 100).max(2).to_string()));
        }
        if let Some(p) = l.cpu_max_percent {
            writes.push(("cpu.cfs_period_us", "100000".into()));
            writes.push(("cpu.cfs_quota_us", (u64::from(p) * 1000).to_string()));
        }
        for (file, value) in writes {
            let controller = controller_of(file);
            let Some(h) = self.dirs.iter().find(|h| h.has(controller)) else {
                return Err(CgroupError::NoController { file, controller });
            };
            write_all(&h.dir, &[(file, value)])?;
        }
        Ok(())
    }

    /// What the task's processes used: read now, from the kernel's counters.
    pub fn usage(&self) -> ResourceUsage {
        let read = |dir: &Path, file: &str| std::fs::read_to_string(dir.join(file)).ok();
        let number =
            |dir: &Path, file: &str| read(dir, file).and_then(|t| t.trim().parse::<u64>().ok());
        let mut u = ResourceUsage {
            memory_max: self.limits.memory_max,
            tasks_max: self.limits.tasks_max,
            ..ResourceUsage::default()
        };
        if self.v2 {
            let dir = &self.dirs[0].dir;
            u.memory_bytes = number(dir, "memory.current").unwrap_or_default();
            u.memory_peak_bytes = number(dir, "memory.peak");
            u.processes = number(dir, "pids.current").unwrap_or_default();
            u.cpu_usec = read(dir, "cpu.stat")
                .and_then(|t| keyed(&t, "usage_usec"))
                .unwrap_or_default();
            u.oom_kills = read(dir, "memory.events")
                .and_then(|t| keyed(&t, "oom_kill"))
                .unwrap_or_default();
            u.io_write_bytes = read(dir, "io.stat").map(|t| {
                t.split_whitespace()
                    .filter_map(|f| f.strip_prefix("wbytes="))
                    .filter_map(|n| n.parse::<u64>().ok())
                    .sum()
            });
            return u;
        }
        for h in &self.dirs {
            let dir = &h.dir;
            if h.has("memory") {
                u.memory_bytes = number(dir, "memory.usage_in_bytes").unwrap_or_default();
                u.memory_peak_bytes = number(dir, "memory.max_usage_in_bytes");
                u.oom_kills = read(dir, "memory.oom_control")
                    .and_then(|t| keyed(&t, "oom_kill"))
                    .unwrap_or_default();
            }
            if h.has("pids") {
                u.processes = number(dir, "pids.current").unwrap_or_default();
            }
            if h.has("cpuacct") {
                u.cpu_usec = number(dir, "cpuacct.usage").unwrap_or_default() / 1000;
            }
            if h.has("blkio") {
                u.io_write_bytes = read(dir, "blkio.throttle.io_service_bytes").map(|t| {
                    t.lines()
                        .filter_map(|l| {
                            let mut f = l.split_whitespace();
                            let (_, op, n) = (f.next()?, f.next()?, f.next()?);
                            (op == "Write").then(|| n.parse::<u64>().ok()).flatten()
                        })
                        .sum()
                });
            }
        }
        u
    }

    /// The processes in the cgroup now.
    pub fn pids(&self) -> Vec<u32> {
        let Some(h) = self.dirs.iter().find(|h| self.v2 || h.has("pids")) else {
            return Vec::new();
        };
        std::fs::read_to_string(h.dir.join("cgroup.procs"))
            .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// SIGKILL to every process in the cgroup, until none is left or `within` passed; the
    /// processes still there then.
    pub async fn kill_all(&self, within: Duration) -> Vec<u32> {
        let group = self.clone();
        tokio::task::spawn_blocking(move || group.kill_now(within))
            .await
            .unwrap_or_default()
    }

    fn kill_now(&self, within: Duration) -> Vec<u32> {
        let deadline = std::time::Instant::now() + within;
        // v2 (Linux 5.14+): the kernel kills the whole cgroup at once, forks in flight included.
        let killed_at_once =
            self.v2 && std::fs::write(self.dirs[0].dir.join("cgroup.kill"), "1").is_ok();
        loop {
            let left = self.pids();
            if left.is_empty() || std::time::Instant::now() >= deadline {
                return left;
            }
            if !killed_at_once {
                // v1: a process forked between the read and the kill is found on the next
                // round; the pids limit keeps the rounds few.
                for pid in &left {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(*pid as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
            // The killed leave the cgroup once they are reaped (by the pane monitor). A short
            // sleep, not an event: v1 tells a cgroup's emptying to root's release agent only,
            // and this runs only at an attempt's end or a stop, for a few rounds.
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Removes the cgroup; it must hold no process any more. Failures are logged.
    pub async fn remove(&self) {
        let group = self.clone();
        let _ = tokio::task::spawn_blocking(move || group.remove_now()).await;
    }

    fn remove_now(&self) {
        for h in &self.dirs {
            match std::fs::remove_dir(&h.dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!("cannot remove the task's cgroup {}: {e}", h.dir.display())
                }
            }
        }
    }
}

fn write_all(dir: &Path, writes: &[(&str, String)]) -> Result<(), CgroupError> {
    for (file, value) in writes {
        let path = dir.join(file);
        // Swap limits exist only where swap is accounted: nothing to hold back otherwise.
        if (file.contains("swap") || file.contains("memsw")) && !path.exists() {
            continue;
        }
        std::fs::write(&path, value).map_err(|source| CgroupError::Limit {
            path,
            value: value.clone(),
            source,
        })?;
    }
    Ok(())
}

/// `oom_kill 3` in a `key value` file.
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// One mounted cgroup hierarchy: its kind, its controllers (v1), its root and mount point.
struct Mount<'a> {
    v2: bool,
    controllers: Vec<&'a str>,
    root: &'a str,
    point: &'a str,
}

fn mounts(mountinfo: &str) -> Vec<Mount<'_>> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mut l = left.split_whitespace();
            let (root, point) = (l.nth(3)?, l.next()?);
            let mut r = right.split_whitespace();
            let (fstype, _source, options) = (r.next()?, r.next()?, r.next().unwrap_or(""));
            match fstype {
                "cgroup2" => Some(Mount {
                    v2: true,
                    controllers: Vec::new(),
                    root,
                    point,
                }),
                "cgroup" => Some(Mount {
                    v2: false,
                    controllers: options
                        .split(',')
                        .filter(|o| !matches!(*o, "rw" | "ro"))
                        .collect(),
                    root,
                    point,
                }),
                _ => None,
            }
        })
        .collect()
}

/// The directory of this process's cgroup `path` on `mount`.
fn dir_on(mount: &Mount, path: &str) -> PathBuf {
    let relative = path
        .strip_prefix(mount.root.trim_end_matches('/'))
        .unwrap_or(path)
        .trim_start_matches('/');
    // Mount points in mountinfo escape spaces and the like as \040; cgroup mounts have none.
    Path::new(mount.point).join(relative)
}

fn find_layout(mountinfo: &str, own: &str) -> Result<Layout, String> {
    let mounts = mounts(mountinfo);
    // `4:memory:/a/b`, `0::/a/b`.
    let path_of = |controller: &str| {
        own.lines().find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, list, path) = (f.next()?, f.next()?, f.next()?);
            let found = match controller {
                "" => list.is_empty(),
                c => list.split(',').any(|x| x == c),
            };
            found.then_some(path)
        })
    };
    let v1 = |controller: &str| {
        let mount = mounts
            .iter()
            .find(|m| !m.v2 && m.controllers.contains(&controller))?;
        Some(Hierarchy {
            dir: dir_on(mount, path_of(controller)?),
            controllers: mount.controllers.iter().map(|c| c.to_string()).collect(),
        })
    };
    if let (Some(memory), Some(_)) = (v1("memory"), v1("pids")) {
        let mut hierarchies = vec![memory];
        for c in ["pids", "cpu", "cpuacct", "blkio", "name=systemd"] {
            // Co-mounted controllers (cpu,cpuacct) share one directory.
            if let Some(h) = v1(c).filter(|h| !hierarchies.iter().any(|k| k.dir == h.dir)) {
                hierarchies.push(h);
            }
        }
        // Hybrid: systemd tracks processes, and systemd-cgls names them, in the unified
        // hierarchy, which has no controllers.
        if let (Some(unified), Some(path)) = (mounts.iter().find(|m| m.v2), path_of("")) {
            hierarchies.push(Hierarchy {
                dir: dir_on(unified, path),
                controllers: vec![UNIFIED.to_string()],
            });
        }
        return Ok(Layout::V1 { hierarchies });
    }
    let unified = mounts.iter().find(|m| m.v2).ok_or(
        "no cgroup file system is mounted here (neither the unified hierarchy nor v1 memory and pids)",
    )?;
    let own = dir_on(
        unified,
        path_of("").ok_or("this process has no cgroup v2 path in /proc/self/cgroup")?,
    );
    // A process may not stay in a cgroup whose memory it hands down to others: the daemon must
    // start in a leaf of the cgroup it was given, which systemd 254+ makes with
    // DelegateSubgroup=daemon.
    match (own.file_name().and_then(|n| n.to_str()), own.parent()) {
        (Some("daemon"), Some(base)) => Ok(Layout::V2 {
            base: base.to_path_buf(),
        }),
        _ => Err(format!(
            "on cgroup v2 the daemon must run in a sub-cgroup named `daemon` of a cgroup delegated to it, and it runs in {}: under systemd 254 or later add Delegate=yes and DelegateSubgroup=daemon to its unit (systemd/README.md, \"Limits\")",
            own.display()
        )),
    }
}

/// The name a hybrid host's unified hierarchy goes by among the v1 ones.
const UNIFIED: &str = "unified";

/// Checks the daemon may make cgroups there (v1: the hierarchies that only name or count
/// are left out where it may not), and hands the controllers down (v2).
fn prepare(layout: Layout) -> Result<Layout, String> {
    let writable = |dir: &Path| {
        nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK).map_err(|e| {
            format!(
                "the daemon's cgroup {} is not writable by its user (uid {}): {e}; run it under systemd, whose unit delegates its cgroup to it (Delegate=yes), or as root",
                dir.display(),
                nix::unistd::getuid()
            )
        })
    };
    match layout {
        Layout::V1 { hierarchies } => {
            let mut kept = Vec::new();
            for h in hierarchies {
                if h.has("memory") || h.has("pids") {
                    writable(&h.dir)?;
                } else if let Err(e) = writable(&h.dir) {
                    tracing::info!("tasks' cgroups leave out {}: {e}", h.dir.display());
                    continue;
                }
                kept.push(h);
            }
            Ok(Layout::V1 { hierarchies: kept })
        }
        Layout::V2 { base } => {
            writable(&base)?;
            let have = std::fs::read_to_string(base.join("cgroup.controllers")).map_err(|e| {
                format!(
                    "cannot read {}: {e}",
                    base.join("cgroup.controllers").display()
                )
            })?;
            for needed in ["memory", "pids"] {
                if !have.split_whitespace().any(|c| c == needed) {
                    return Err(format!(
                        "the {needed} controller is not handed down to {} (it has: {}): give the unit Delegate=yes",
                        base.display(),
                        have.trim()
                    ));
                }
            }
            let wanted: Vec<String> = ["memory", "pids", "cpu", "io"]
                .into_iter()
                .filter(|c| have.split_whitespace().any(|h| h == *c))
                .map(|c| format!("+{c}"))
                .collect();
            std::fs::write(base.join("cgroup.subtree_control"), wanted.join(" ")).map_err(|e| {
                format!(
                    "cannot hand the controllers down in {}: {e}",
                    base.display()
                )
            })?;
            Ok(Layout::V2 { base })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
30 23 0:26 / /sys/fs/cgroup rw,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
32 30 0:28 / /sys/fs/cgroup/systemd rw,nosuid - cgroup cgroup rw,xattr,name=systemd
35 30 0:31 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
36 30 0:32 / /sys/fs/cgroup/pids rw,nosuid - cgroup cgroup rw,pids
37 30 0:33 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
";
    const HYBRID_OWN: &str = "\
9:name=systemd:/system.slice/aifactoryd.service
7:cpu,cpuacct:/system.slice/aifactoryd.service
5:pids:/system.slice/aifactoryd.service
4:memory:/system.slice/aifactoryd.service
0::/system.slice/aifactoryd.service
";

    #[test]
    fn v1_controllers_win_where_the_host_binds_them_there() {
        let Layout::V1 { hierarchies } = find_layout(HYBRID, HYBRID_OWN).unwrap() else {
            panic!("not v1");
        };
        let svc = "system.slice/aifactoryd.service";
        let found: Vec<(PathBuf, String)> = hierarchies
            .into_iter()
            .map(|h| (h.dir, h.controllers.join(",")))
            .collect();
        assert_eq!(
            found,
            [
                (
                    PathBuf::from("/sys/fs/cgroup/memory").join(svc),
                    "memory".into()
                ),
                (
                    PathBuf::from("/sys/fs/cgroup/pids").join(svc),
                    "pids".into()
                ),
                (
                    PathBuf::from("/sys/fs/cgroup/cpu,cpuacct").join(svc),
                    "cpu,cpuacct".into()
                ),
                (
                    PathBuf::from("/sys/fs/cgroup/systemd").join(svc),
                    "xattr,name=systemd".into()
                ),
                (
                    PathBuf::from("/sys/fs/cgroup/unified").join(svc),
                    "unified".into()
                ),
            ]
        );
    }

    #[test]
    fn v2_needs_the_daemon_in_a_daemon_leaf() {
        let mounts = "31 23 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            find_layout(mounts, "0::/system.slice/aifactoryd.service/daemon\n").unwrap(),
            Layout::V2 {
                base: PathBuf::from("/sys/fs/cgroup/system.slice/aifactoryd.service")
            }
        );
        let refused = find_layout(mounts, "0::/user.slice/session-2.scope\n").unwrap_err();
        assert!(refused.contains("DelegateSubgroup=daemon"), "{refused}");
    }

    #[test]
    fn a_mount_rooted_below_the_top_is_followed() {
        let mounts = "31 23 0:27 /ns /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let own = "0::/ns/svc/daemon\n";
        assert_eq!(
            find_layout(mounts, own).unwrap(),
            Layout::V2 {
                base: PathBuf::from("/sys/fs/cgroup/svc")
            }
        );
    }

    #[test]
    fn groups_name_the_task_in_every_hierarchy() {
        let cgroups = Cgroups {
            layout: find_layout(HYBRID, HYBRID_OWN),
        };
        let group = cgroups.group("t-1a2b", Limits::default()).unwrap();
        assert!(
            group
                .dirs()
                .iter()
                .all(|d| d.ends_with("aifactoryd.service/task-t-1a2b"))
        );
        assert!(group.dirs[0].has("memory") && group.dirs[2].has("cpuacct"));
    }

    #[test]
    fn sizes_and_quotas_read_as_systemd_writes_them() {
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert!(parse_size("12").unwrap_err().contains("at least 1M"));
        assert!(parse_size("5X").unwrap_err().contains("unknown unit"));
        assert_eq!(parse_cpu_max("150%"), Ok(150));
        assert!(parse_cpu_max("1.5").is_err());
        assert_eq!(format_size(512 << 20), "512M");
        assert_eq!(
            Limits {
                memory_max: Some(1 << 30),
                tasks_max: Some(64),
                ..Limits::default()
            }
            .describe(),
            "memory_max = 1G, tasks_max = 64"
        );
    }

    #[test]
    fn counters_are_read_by_key() {
        assert_eq!(
            keyed("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n", "oom_kill"),
            Some(2)
        );
        assert_eq!(
            keyed("usage_usec 1500\nuser_usec 1000\n", "usage_usec"),
            Some(1500)
        );
        assert_eq!(keyed("low 0\n", "oom_kill"), None);
    }
}
