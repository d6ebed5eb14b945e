//! The agent profiles the limits tests run (`tests/tests/limits.rs` on this machine,
//! `systemd_e2e.rs` under the packaged unit): each one a program that meets one limit.

/// Profiles `idle` (sleeps), `hog` (300 MB against `memory_max = 64M`), `spin` (2 s of CPU
/// against `cpu_max = 20%`) and `bomb` (forks until `tasks_max = 40` stops it). `idle_marker`
/// and `bomb_marker` go into their command lines, so each test finds its own processes.
pub fn agent_profiles(idle_marker: u32, bomb_marker: u32) -> String {
    format!(
        r#"[agents.idle]
kind = "custom"
command = ["sh", "-c", "exec sleep {idle_marker}"]
[agents.hog]
kind = "custom"
command = ["python3", "-c", "import time; b = bytearray(300 << 20); time.sleep(30)"]
memory_max = "64M"
[agents.spin]
kind = "custom"
command = ["python3", "-c", "import time\nend = time.monotonic() + 2\nwhile time.monotonic() < end:\n    pass\n"]
cpu_max = "20%"
[agents.bomb]
kind = "custom"
command = ["python3", "-c", "import os, time  # bomb{bomb_marker}\nwhile True:\n    try:\n        if os.fork() == 0:\n            time.sleep(1000)\n            os._exit(0)\n    except OSError:\n        time.sleep(0.001)\n"]
tasks_max = 40
"#
    )
}
