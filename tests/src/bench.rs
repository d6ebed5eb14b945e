//! What the benchmarks share: sample statistics, machine load, finding tools, and the warning
//! that the release binaries are older than their sources (`cargo bench` builds neither).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::{bin, bin_dir};

/// Sorted samples.
#[derive(Clone)]
pub struct Latency {
    samples: Vec<Duration>,
}

impl Latency {
    pub fn new(mut samples: Vec<Duration>) -> Latency {
        assert!(!samples.is_empty(), "no samples");
        samples.sort_unstable();
        Latency { samples }
    }

    pub fn median(&self) -> Duration {
        let s = &self.samples;
        let n = s.len();
        if n % 2 == 1 {
            s[n / 2]
        } else {
            (s[n / 2 - 1] + s[n / 2]) / 2
        }
    }

    /// Nearest-rank 99th percentile.
    pub fn p99(&self) -> Duration {
        let n = self.samples.len();
        self.samples[(n * 99).div_ceil(100) - 1]
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    pub fn min(&self) -> Duration {
        self.samples[0]
    }

    pub fn max(&self) -> Duration {
        self.samples[self.samples.len() - 1]
    }
}

/// The 1, 5 and 15 minute load averages, for the report.
pub fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

pub fn find_in_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_string_lossy()
        .split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|candidate| candidate.is_file())
}

/// Warns when one of `binaries` is older than a source file it is built from.
pub fn warn_if_stale(binaries: &[&str]) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let newest_source = ["common", "daemon", "ctl"]
        .iter()
        .filter_map(|krate| newest_mtime(&root.join(krate)))
        .max();
    for name in binaries {
        let path = bin(name);
        let built = fs::metadata(&path).and_then(|m| m.modified()).ok();
        if let (Some(built), Some(source)) = (built, newest_source)
            && built < source
        {
            eprintln!(
                "WARNING: {} is older than the newest source: rebuild with `cargo build --release -p aifactoryd -p aifactoryctl`",
                path.display()
            );
        }
    }
    eprintln!("binaries from {}", bin_dir().display());
}

fn newest_mtime(dir: &Path) -> Option<SystemTime> {
    fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let path = entry.path();
            let meta = entry.metadata().ok()?;
            if meta.is_dir() {
                newest_mtime(&path)
            } else if path
                .extension()
                .is_some_and(|e| e == "rs" || e == "toml" || e == "sql")
            {
                meta.modified().ok()
            } else {
                None
            }
        })
        .max()
}
