//! Each running task's cgroup, as the supervisor uses it: made with the profile's limits
//! before an attempt starts, read for `tasks show` while it runs, emptied and read for the
//! last time when the attempt ends (its figures stored with the task and told in the
//! `TaskExited` event), and what an OOM kill in it means as a failure.

use std::time::Duration;

use aifactory_common::protocol::{Failure, FailureKind, ResourceUsage, TaskInfo};
use aifactory_common::sync::lock;

use super::Supervisor;
use crate::cgroups::{CgroupError, Limits, TaskGroup};
use crate::tasks;

/// How long the processes an ended attempt left in its cgroup get to go after SIGKILL.
const EMPTY_WITHIN: Duration = Duration::from_secs(5);

impl Supervisor {
    /// The task's cgroup for a new attempt, with `limits`; `Ok(None)` when tasks get no
    /// cgroups here (status says why).
    pub(super) async fn open_group(
        &self,
        task_id: &str,
        limits: Limits,
    ) -> Result<Option<TaskGroup>, CgroupError> {
        if self.cgroups.available().is_err() {
            return Ok(None);
        }
        let group = self.cgroups.create(task_id, limits).await?;
        lock(&self.groups).insert(task_id.to_string(), group.clone());
        Ok(Some(group))
    }

    /// The task with what its running attempt uses now.
    pub(super) fn with_live_usage(&self, mut task: TaskInfo) -> TaskInfo {
        if let Some(group) = lock(&self.groups).get(&task.id) {
            task.resources = Some(group.usage());
        }
        task
    }

    /// Ends what the attempt left in its cgroup and removes it; what the attempt used, also
    /// stored with the task. `None`: it had no cgroup.
    pub(super) async fn close_group(&self, task_id: &str) -> Option<ResourceUsage> {
        let group = lock(&self.groups)
            .remove(task_id)
            .or_else(|| self.cgroups.existing(task_id))?;
        let usage = group.usage();
        let left = group.kill_all(EMPTY_WITHIN).await;
        if !left.is_empty() {
            tracing::error!(task_id = %task_id, pids = ?left, "processes of the task's cgroup survived SIGKILL; its cgroup stays");
        } else {
            group.remove().await;
        }
        let (id, stored) = (task_id.to_string(), usage.clone());
        if let Err(e) = self
            .store
            .write(move |tx| tasks::set_resources(tx, &id, Some(&stored)))
            .await
        {
            tracing::error!(task_id = %task_id, "cannot record what the attempt used: {e}");
        }
        tracing::info!(task_id = %task_id, cpu_usec = usage.cpu_usec, memory_peak_bytes = usage.memory_peak_bytes, oom_kills = usage.oom_kills, "attempt's resources");
        Some(usage)
    }

    /// A re-adopted task's cgroup, as the last daemon made it.
    pub(super) fn adopt_group(&self, task_id: &str) {
        if let Some(group) = self.cgroups.existing(task_id) {
            lock(&self.groups).insert(task_id.to_string(), group);
        }
    }
}

/// The attempt's failure once its usage is known: an OOM kill in its cgroup explains it
/// better than the exit it caused.
pub(super) fn with_oom(
    failure: Option<Failure>,
    usage: Option<&ResourceUsage>,
    profile: &str,
) -> Option<Failure> {
    let failure = failure?;
    let Some(usage) = usage.filter(|u| u.oom_kills > 0) else {
        return Some(failure);
    };
    let mib = |b: u64| format!("{} MiB", b >> 20);
    let limit = usage.memory_max.map_or("its memory limit".into(), mib);
    let peak = usage
        .memory_peak_bytes
        .map_or(String::new(), |p| format!(" (peak {})", mib(p)));
    Some(Failure {
        kind: FailureKind::Oom,
        message: format!(
            "the kernel's OOM killer ended {} process(es) of the agent at memory_max = {limit}{peak}",
            usage.oom_kills
        ),
        fix: format!(
            "raise memory_max in [agents.{profile}] (or [limits]) of the daemon's config, or give the task less to hold in memory; `aifactoryctl tasks show ID` shows what it used"
        ),
        retry_after_ms: None,
    })
}
