//! What the watcher observes and reports, in plain serialisable types.
//!
//! The SDK's types have no `serde` support and carry far more than a deployment report needs,
//! so `observe.rs` converts them into these once per poll; `judge.rs` decides on these alone
//! (which keeps the decisions unit-testable without any SDK), and the sinks and the JSON output
//! print them. Field names are the documented JSON schema of `docs/ci.md`: change them only
//! together with that document.

use std::fmt;
use std::time::{Duration, SystemTime};

use serde::{Serialize, Serializer};

/// What a wait waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Goal {
    /// Every service runs its desired count of tasks of one deployment, and the rollout (if ECS
    /// reports one) is `COMPLETED`. Used by `up` and `start`.
    Stable,
    /// No task runs or is pending in any service. Used by `stop`.
    Drained,
}

impl fmt::Display for Goal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Goal::Stable => "stable",
            Goal::Drained => "drained",
        })
    }
}

/// The state of one ECS service at one poll.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceState {
    /// Service name.
    pub service: String,
    /// `ACTIVE`, `DRAINING`, `INACTIVE`, or `MISSING` when ECS does not know it.
    pub status: String,
    /// Desired task count.
    pub desired: i32,
    /// Running task count.
    pub running: i32,
    /// Pending task count.
    pub pending: i32,
    /// Rollout state of the PRIMARY deployment (`IN_PROGRESS`, `COMPLETED`, `FAILED`), when
    /// ECS reports one (only with the ECS deployment controller and circuit breaker).
    pub rollout_state: Option<String>,
    /// Why the rollout is in that state, as ECS says it.
    pub rollout_reason: Option<String>,
    /// Task definition of the PRIMARY deployment as `family:revision`.
    pub task_definition: Option<String>,
    /// Number of deployments (1 when nothing is being replaced).
    pub deployments: usize,
}

impl ServiceState {
    /// The state of a service ECS does not know (never created, or deleted).
    pub fn missing(service: &str) -> Self {
        Self {
            service: service.to_owned(),
            status: "MISSING".to_owned(),
            desired: 0,
            running: 0,
            pending: 0,
            rollout_state: None,
            rollout_reason: None,
            task_definition: None,
            deployments: 0,
        }
    }

    /// One line for humans: `api: 1/1 running, 0 pending, rollout COMPLETED, timing-api:7`.
    pub fn summary(&self) -> String {
        let mut line = format!(
            "{}: {}/{} running, {} pending",
            self.service, self.running, self.desired, self.pending
        );
        if self.status != "ACTIVE" {
            line.push_str(&format!(", {}", self.status));
        }
        if let Some(state) = &self.rollout_state {
            line.push_str(&format!(", rollout {state}"));
        }
        if self.deployments > 1 {
            line.push_str(&format!(", {} deployments", self.deployments));
        }
        if let Some(td) = &self.task_definition {
            line.push_str(&format!(", {td}"));
        }
        line
    }
}

/// How one container of a stopped task ended, with the end of its log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerExit {
    /// Container name.
    pub name: String,
    /// Exit code, when the container ran at all.
    pub exit_code: Option<i32>,
    /// ECS's reason for the container (e.g. `CannotPullContainerError: ...`).
    pub reason: Option<String>,
    /// CloudWatch Logs stream of the container (`<prefix>/<container>/<task-id>`).
    pub log_stream: String,
    /// Last lines of that stream, oldest first; empty when not fetched or empty.
    pub log_lines: Vec<String>,
    /// Why there are no lines, when there are none (stream missing, logs not read, ...).
    pub log_note: Option<String>,
}

/// A task that stopped while we waited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoppedTask {
    /// Service the task belonged to.
    pub service: String,
    /// Task id (last part of the task ARN).
    pub task_id: String,
    /// Task definition as `family:revision`.
    pub task_definition: String,
    /// When ECS stopped it (RFC 3339).
    #[serde(serialize_with = "ser_opt_time")]
    pub stopped_at: Option<SystemTime>,
    /// ECS's stop reason (e.g. `Essential container in task exited`).
    pub stopped_reason: Option<String>,
    /// ECS's stop code (e.g. `TaskFailedToStart`, `EssentialContainerExited`).
    pub stop_code: Option<String>,
    /// Whether the stop counts as a failure (see `judge::is_failure`), as opposed to a normal
    /// scale-in or replacement.
    pub failed: bool,
    /// The task's containers.
    pub containers: Vec<ContainerExit>,
    /// Deployment (`startedBy`) that started the task, when known.
    #[serde(skip)]
    pub started_by: Option<String>,
    /// Full task definition ARN, to match the task with a deployment.
    #[serde(skip)]
    pub task_definition_arn: String,
}

impl StoppedTask {
    /// One line for humans: the task, its reason, and each container's exit.
    pub fn summary(&self) -> String {
        let mut line = format!(
            "{} task {} ({}) stopped: {}",
            self.service,
            self.task_id,
            self.task_definition,
            self.stopped_reason.as_deref().unwrap_or("no reason given")
        );
        if let Some(code) = &self.stop_code {
            line.push_str(&format!(" [{code}]"));
        }
        for c in &self.containers {
            match (c.exit_code, &c.reason) {
                (Some(code), Some(reason)) => {
                    line.push_str(&format!("; {} exited {code}: {reason}", c.name))
                }
                (Some(code), None) => line.push_str(&format!("; {} exited {code}", c.name)),
                (None, Some(reason)) => line.push_str(&format!("; {}: {reason}", c.name)),
                (None, None) => {}
            }
        }
        line
    }
}

/// A service event (the `events[]` of DescribeServices), as ECS wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceEventRecord {
    /// Service name.
    pub service: String,
    /// ECS's event id (events are deduplicated by it).
    pub id: String,
    /// When ECS wrote it (RFC 3339).
    #[serde(serialize_with = "ser_opt_time")]
    pub at: Option<SystemTime>,
    /// The message, e.g. `(service api) has reached a steady state.`.
    pub message: String,
}

/// The beginning of a wait, as the sinks tell it.
#[derive(Debug, Clone)]
pub struct WaitStart {
    /// What we wait for.
    pub goal: Goal,
    /// The services waited on.
    pub services: Vec<String>,
    /// The limit of the wait.
    pub timeout: Duration,
}

/// What the watcher tells its sink, as it happens.
#[derive(Debug, Clone)]
pub enum WatchEvent {
    /// The wait begins.
    Started(WaitStart),
    /// One poll's view of every service.
    Progress {
        /// Time since the wait began.
        elapsed: Duration,
        /// One entry per service, in the order of the spec.
        services: Vec<ServiceState>,
    },
    /// A new service event from ECS.
    ServiceEvent(ServiceEventRecord),
    /// A task of a watched service stopped.
    TaskStopped(StoppedTask),
    /// The wait ended.
    Finished {
        /// Time since the wait began.
        elapsed: Duration,
        /// Whether the goal was reached.
        ok: bool,
        /// One line saying how it ended.
        summary: String,
    },
}

/// The result of a wait that reached its goal.
#[derive(Debug, Clone, Serialize)]
pub struct WatchReport {
    /// The goal reached.
    pub goal: Goal,
    /// How long the wait took.
    #[serde(rename = "waited_seconds", serialize_with = "ser_secs")]
    pub waited: Duration,
    /// The final state of each service.
    pub services: Vec<ServiceState>,
    /// Tasks that stopped while waiting (failed ones first fetched with their logs only on
    /// failure; here they carry no log lines).
    pub stopped_tasks: Vec<StoppedTask>,
    /// Service events seen while waiting, oldest first.
    pub events: Vec<ServiceEventRecord>,
}

/// Serialises a duration as seconds with millisecond precision.
pub(crate) fn ser_secs<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_millis() as f64) / 1000.0)
}

/// Serialises an optional time as RFC 3339 UTC.
pub(crate) fn ser_opt_time<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&rfc3339(*t)),
        None => s.serialize_none(),
    }
}

/// RFC 3339 UTC with milliseconds, e.g. `2026-05-01T10:00:00.123Z`.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// `arn:aws:ecs:r:a:task-definition/timing-api:7` → `timing-api:7` (anything else unchanged).
pub(crate) fn short_task_definition(arn: &str) -> String {
    arn.rsplit_once('/')
        .map_or(arn, |(_, tail)| tail)
        .to_owned()
}

/// `arn:aws:ecs:r:a:task/cluster/0123abcd` → `0123abcd` (anything else unchanged).
pub(crate) fn task_id(arn: &str) -> String {
    arn.rsplit_once('/')
        .map_or(arn, |(_, tail)| tail)
        .to_owned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn arns_shorten_to_what_people_read() {
        assert_eq!(
            short_task_definition("arn:aws:ecs:eu-west-1:1:task-definition/timing-api:7"),
            "timing-api:7"
        );
        assert_eq!(
            task_id("arn:aws:ecs:eu-west-1:1:task/timing/0123abcd"),
            "0123abcd"
        );
        assert_eq!(task_id("plain"), "plain");
    }

    #[test]
    fn summary_names_counts_rollout_and_revision() {
        let s = ServiceState {
            service: "api".into(),
            status: "ACTIVE".into(),
            desired: 1,
            running: 0,
            pending: 1,
            rollout_state: Some("IN_PROGRESS".into()),
            rollout_reason: None,
            task_definition: Some("timing-api:7".into()),
            deployments: 2,
        };
        assert_eq!(
            s.summary(),
            "api: 0/1 running, 1 pending, rollout IN_PROGRESS, 2 deployments, timing-api:7"
        );
    }

    #[test]
    fn times_are_rfc3339_utc() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20.123Z");
    }
}
