//! The machine's load as `status` reports it: the kernel's load average and memory, read from
//! `/proc` at each request (two small files; no sampling loop), and the CPUs this daemon may
//! use. The parsers take the files' text so that they are tested on samples.

use std::path::Path;

use aifactory_common::protocol::{HostLoad, LoadAverage, MemoryInfo};

/// Reads the load now; `tasks_running` comes from the supervisor, which owns the runners.
pub fn read(tasks_running: u32) -> HostLoad {
    HostLoad {
        tasks_running,
        cpus: cpus(),
        load_average: read_file(Path::new("/proc/loadavg")).and_then(|t| parse_loadavg(&t)),
        memory: read_file(Path::new("/proc/meminfo")).and_then(|t| parse_meminfo(&t)),
    }
}

/// A missing or unreadable file (no procfs, a hardened mount) means "unknown", not an error:
/// status must answer anyway.
fn read_file(path: &Path) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) => {
            tracing::debug!(path = %path.display(), error = %e, "cannot read the load");
            None
        }
    }
}

/// The CPUs the daemon may run on: its affinity mask, which a cgroup or `taskset` narrows
/// (the figure that matters for the agents it starts).
fn cpus() -> u32 {
    std::thread::available_parallelism()
        .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
        .unwrap_or(1)
}

/// `/proc/loadavg`: "0.52 0.58 0.59 2/1234 5678"; the first three fields.
pub fn parse_loadavg(text: &str) -> Option<LoadAverage> {
    let mut fields = text.split_ascii_whitespace();
    let mut next = || fields.next()?.parse::<f64>().ok().filter(|v| v.is_finite());
    Some(LoadAverage {
        one: next()?,
        five: next()?,
        fifteen: next()?,
    })
}

/// `/proc/meminfo`: "MemTotal:  16318480 kB" lines; `MemTotal` and `MemAvailable`, in bytes.
pub fn parse_meminfo(text: &str) -> Option<MemoryInfo> {
    let mut total = None;
    let mut available = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let slot = match key {
            "MemTotal" => &mut total,
            "MemAvailable" => &mut available,
            _ => continue,
        };
        let mut parts = value.split_ascii_whitespace();
        let number = parts.next()?.parse::<u64>().ok()?;
        let bytes = match parts.next() {
            Some("kB") => number.checked_mul(1024)?,
            None => number,
            Some(_) => return None,
        };
        *slot = Some(bytes);
    }
    Some(MemoryInfo {
        total_bytes: total?,
        available_bytes: available?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loadavg_sample() {
        let load = parse_loadavg("0.52 1.08 12.00 2/1234 5678\n").unwrap();
        assert_eq!(
            load,
            LoadAverage {
                one: 0.52,
                five: 1.08,
                fifteen: 12.0
            }
        );
    }

    #[test]
    fn loadavg_refuses_short_or_garbled_text() {
        assert_eq!(parse_loadavg(""), None);
        assert_eq!(parse_loadavg("0.52 1.08"), None);
        assert_eq!(parse_loadavg("0.52 x 1.0 1/2 3"), None);
        assert_eq!(parse_loadavg("NaN 1.0 1.0 1/2 3"), None);
    }

    #[test]
    fn meminfo_sample() {
        let text = "MemTotal:       16318480 kB\nMemFree:          812344 kB\n\
                    MemAvailable:    9123456 kB\nBuffers:          345672 kB\n\
                    HugePages_Total:       0\n";
        let mem = parse_meminfo(text).unwrap();
        assert_eq!(mem.total_bytes, 16_318_480 * 1024);
        assert_eq!(mem.available_bytes, 9_123_456 * 1024);
    }

    #[test]
    fn meminfo_without_available_is_unknown() {
        // Kernels before 3.14 have no MemAvailable: no guess from MemFree.
        assert_eq!(parse_meminfo("MemTotal: 1024 kB\nMemFree: 512 kB\n"), None);
        assert_eq!(parse_meminfo("MemTotal: x kB\nMemAvailable: 1 kB\n"), None);
        assert_eq!(parse_meminfo(""), None);
    }

    #[test]
    fn this_machine_reads() {
        // Where /proc exists (every Linux this runs on), the figures are plausible.
        let load = read(3);
        assert_eq!(load.tasks_running, 3);
        assert!(load.cpus >= 1);
        if Path::new("/proc/meminfo").exists() {
            let mem = load.memory.unwrap();
            assert!(mem.available_bytes <= mem.total_bytes && mem.total_bytes > 0);
            assert!(load.load_average.unwrap().one >= 0.0);
        }
    }
}
