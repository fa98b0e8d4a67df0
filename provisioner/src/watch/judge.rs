//! The watcher's decisions, as pure functions of what one poll observed.
//!
//! Nothing here calls AWS: `observe.rs` turns DescribeServices/DescribeTasks answers into
//! [`Snapshot`]s and [`StoppedTask`]s, and these functions say whether a service reached the
//! goal, was rolled back by the deployment circuit breaker, or whether a stopped task counts as
//! a failure. The rules, and why:
//!
//! - **Stable** (as the ECS `services_stable` waiter, plus the rollout state): one deployment
//!   only, its rollout state (when ECS reports one) `COMPLETED`, `runningCount ==
//!   desiredCount` and `pendingCount == 0`. `COMPLETED` alone is not enough: `start` changes
//!   only the desired count, which leaves the old, completed deployment PRIMARY while no task
//!   runs yet.
//! - **Drained**: `runningCount == 0 && pendingCount == 0`, or the service is gone.
//! - **Rolled back**: a deployment updated since the wait began is `FAILED`; or the PRIMARY
//!   deployment is no longer the one we started with and runs another task definition (the
//!   circuit breaker's rollback deployment); or a new service event says "rolling back".
//! - **Failure of a task**: a stop reason naming a known start/run error, a failing stop code,
//!   or a non-zero exit, unless the stop was a normal scale-in or a user's stop.

use std::time::SystemTime;

use super::model::{Goal, ServiceEventRecord, ServiceState, StoppedTask};

/// A deployment of a service, as one poll saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentView {
    /// ECS deployment id (`ecs-svc/...`).
    pub id: String,
    /// `PRIMARY`, `ACTIVE` or `INACTIVE`.
    pub status: String,
    /// Task definition ARN.
    pub task_definition: String,
    /// `IN_PROGRESS`, `COMPLETED`, `FAILED`, when reported.
    pub rollout_state: Option<String>,
    /// ECS's reason for the rollout state.
    pub rollout_reason: Option<String>,
    /// Last update of the deployment.
    pub updated_at: Option<SystemTime>,
}

/// One service at one poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Counts, status, rollout of the PRIMARY deployment.
    pub state: ServiceState,
    /// All deployments, PRIMARY first when there is one.
    pub deployments: Vec<DeploymentView>,
    /// The service's events (any order; the watcher filters and deduplicates them).
    pub events: Vec<ServiceEventRecord>,
}

impl Snapshot {
    /// A service DescribeServices did not find.
    pub fn missing(name: &str) -> Self {
        Snapshot {
            state: ServiceState::missing(name),
            deployments: vec![],
            events: vec![],
        }
    }

    /// The service does not exist (DescribeServices `failures[]` MISSING, or status INACTIVE).
    pub fn is_gone(&self) -> bool {
        matches!(self.state.status.as_str(), "MISSING" | "INACTIVE")
    }

    /// The PRIMARY deployment, if any.
    pub fn primary(&self) -> Option<&DeploymentView> {
        self.deployments.iter().find(|d| d.status == "PRIMARY")
    }
}

/// The deployment the wait is about: the PRIMARY one at the first poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OurDeployment {
    /// ECS deployment id.
    pub id: String,
    /// Task definition ARN it deploys.
    pub task_definition: String,
}

/// What one service's snapshot means for the wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceVerdict {
    /// The service reached the goal.
    Done,
    /// Not yet.
    Waiting,
    /// ECS rolled the deployment back; the reason as ECS (or the observation) tells it.
    RolledBack(String),
}

/// Decides for one service. `ours` is the deployment recorded at the first poll; `new_events`
/// are the events not seen before and written since the wait began.
pub fn judge(
    goal: Goal,
    snap: &Snapshot,
    ours: Option<&OurDeployment>,
    new_events: &[ServiceEventRecord],
    started_at: SystemTime,
) -> ServiceVerdict {
    match goal {
        Goal::Drained => {
            if snap.is_gone() || (snap.state.running == 0 && snap.state.pending == 0) {
                ServiceVerdict::Done
            } else {
                ServiceVerdict::Waiting
            }
        }
        Goal::Stable => {
            if let Some(reason) = rollback_reason(snap, ours, new_events, started_at) {
                return ServiceVerdict::RolledBack(reason);
            }
            if is_stable(snap) {
                ServiceVerdict::Done
            } else {
                ServiceVerdict::Waiting
            }
        }
    }
}

/// Stable: one deployment, rollout COMPLETED (or not reported), running == desired, none pending.
pub fn is_stable(snap: &Snapshot) -> bool {
    let s = &snap.state;
    if snap.is_gone() || snap.deployments.len() != 1 {
        return false;
    }
    let rollout_done = match snap.primary().and_then(|d| d.rollout_state.as_deref()) {
        None | Some("COMPLETED") => true,
        Some(_) => false,
    };
    rollout_done && s.running == s.desired && s.pending == 0
}

/// Why the service counts as rolled back, if it does.
fn rollback_reason(
    snap: &Snapshot,
    ours: Option<&OurDeployment>,
    new_events: &[ServiceEventRecord],
    started_at: SystemTime,
) -> Option<String> {
    // A deployment the circuit breaker failed during this wait.
    let failed = snap.deployments.iter().find(|d| {
        d.rollout_state.as_deref() == Some("FAILED") && d.updated_at.is_none_or(|t| t >= started_at)
    });
    if let Some(d) = failed {
        return Some(format!(
            "deployment {} ({}) failed: {}",
            d.id,
            super::model::short_task_definition(&d.task_definition),
            d.rollout_reason.as_deref().unwrap_or("no reason given")
        ));
    }
    // Our deployment was replaced by one running another task definition.
    if let (Some(ours), Some(primary)) = (ours, snap.primary())
        && primary.id != ours.id
        && primary.task_definition != ours.task_definition
    {
        return Some(format!(
            "deployment {} ({}) was replaced by {} running the previous task definition {}",
            ours.id,
            super::model::short_task_definition(&ours.task_definition),
            primary.id,
            super::model::short_task_definition(&primary.task_definition)
        ));
    }
    // ECS says so in an event.
    new_events
        .iter()
        .find(|e| {
            let m = e.message.to_ascii_lowercase();
            m.contains("rolling back") || m.contains("rolled back")
        })
        .map(|e| e.message.clone())
}

/// Stop reasons (substrings) that always mean the task failed, even when the scheduler
/// stopped it (unhealthy tasks are stopped with `ServiceSchedulerInitiated`).
const FAILURE_REASONS: &[&str] = &[
    "CannotPullContainerError",
    "CannotStartContainerError",
    "CannotInspectContainerError",
    "CannotCreateVolumeError",
    "ResourceInitializationError",
    "ContainerRuntimeError",
    "ContainerRuntimeTimeoutError",
    "OutOfMemoryError",
    "Essential container in task exited",
    "failed container health checks",
    "failed ELB health checks",
    "Timeout waiting for network interface",
];

/// Stop reasons (substrings, compared without case) of a setup that is not ready yet rather
/// than of a broken deployment: IAM has not propagated a new role to ECS, a new EFS mount
/// target's DNS name does not resolve yet, ECS is still creating its service-linked role. A
/// fresh account's first deploy sees these for a minute or two ([`WatchSpec::settling`]).
///
/// [`WatchSpec::settling`]: super::WatchSpec::settling
const SETUP_NOT_READY_REASONS: &[&str] = &[
    "resourceinitializationerror",
    "unable to assume",
    "service-linked role",
    "service linked role",
];

/// Whether a stopped task failed the way a setup still being created makes tasks fail (and
/// not for an image, a crash or a health check).
pub fn is_setup_not_ready(task: &StoppedTask) -> bool {
    let explained = reasons(task)
        .map(str::to_ascii_lowercase)
        .any(|reason| SETUP_NOT_READY_REASONS.iter().any(|r| reason.contains(r)));
    explained && !exited_with_error(task)
}

/// The task's stop reason, then each container's.
fn reasons(task: &StoppedTask) -> impl Iterator<Item = &str> {
    std::iter::once(task.stopped_reason.as_deref().unwrap_or(""))
        .chain(task.containers.iter().filter_map(|c| c.reason.as_deref()))
}

/// Whether a container of the task exited with a non-zero code.
fn exited_with_error(task: &StoppedTask) -> bool {
    task.containers
        .iter()
        .any(|c| c.exit_code.is_some_and(|e| e != 0))
}

/// Stop reasons (prefixes) of normal operation: scale-in, replacement by a deployment.
const BENIGN_REASONS: &[&str] = &["Scaling activity initiated by", "Task stopped by user"];

/// Whether a stopped task counts as a failure of its deployment.
pub fn is_failure(task: &StoppedTask) -> bool {
    if reasons(task).any(|r| FAILURE_REASONS.iter().any(|f| r.contains(f))) {
        return true;
    }
    let reason = task.stopped_reason.as_deref().unwrap_or("");
    let code = task.stop_code.as_deref();
    if BENIGN_REASONS.iter().any(|b| reason.starts_with(b))
        || matches!(
            code,
            Some("UserInitiated" | "SpotInterruption" | "TerminationNotice")
        )
    {
        return false;
    }
    matches!(code, Some("TaskFailedToStart" | "EssentialContainerExited"))
        || exited_with_error(task)
}

/// Whether a stopped task belongs to `ours` (by `startedBy`, else by task definition).
pub fn belongs_to(task: &StoppedTask, ours: Option<&OurDeployment>) -> bool {
    match ours {
        None => true,
        Some(ours) => match &task.started_by {
            Some(by) if by.starts_with("ecs-svc/") => *by == ours.id,
            _ => task.task_definition_arn == ours.task_definition,
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::watch::model::ContainerExit;

    const TD5: &str = "arn:aws:ecs:eu-west-1:1:task-definition/timing-api:5";
    const TD6: &str = "arn:aws:ecs:eu-west-1:1:task-definition/timing-api:6";

    fn t0() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn dep(id: &str, status: &str, td: &str, rollout: Option<&str>) -> DeploymentView {
        DeploymentView {
            id: id.into(),
            status: status.into(),
            task_definition: td.into(),
            rollout_state: rollout.map(Into::into),
            rollout_reason: None,
            updated_at: Some(t0() + Duration::from_secs(5)),
        }
    }

    fn snap(desired: i32, running: i32, pending: i32, deps: Vec<DeploymentView>) -> Snapshot {
        Snapshot {
            state: ServiceState {
                service: "api".into(),
                status: "ACTIVE".into(),
                desired,
                running,
                pending,
                rollout_state: deps.first().and_then(|d| d.rollout_state.clone()),
                rollout_reason: None,
                task_definition: None,
                deployments: deps.len(),
            },
            deployments: deps,
            events: vec![],
        }
    }

    fn stopped(reason: &str, code: Option<&str>, exit: Option<i32>) -> StoppedTask {
        StoppedTask {
            service: "api".into(),
            task_id: "t1".into(),
            task_definition: "timing-api:6".into(),
            stopped_at: None,
            stopped_reason: Some(reason.into()),
            stop_code: code.map(Into::into),
            failed: false,
            containers: vec![ContainerExit {
                name: "api".into(),
                exit_code: exit,
                reason: None,
                log_stream: "api/api/t1".into(),
                log_lines: vec![],
                log_note: None,
            }],
            started_by: Some("ecs-svc/6".into()),
            task_definition_arn: TD6.into(),
        }
    }

    #[test]
    fn completed_rollout_with_all_tasks_running_is_stable() {
        let s = snap(
            1,
            1,
            0,
            vec![dep("ecs-svc/6", "PRIMARY", TD6, Some("COMPLETED"))],
        );
        assert!(is_stable(&s));
    }

    #[test]
    fn completed_rollout_without_running_tasks_is_not_stable() {
        // `start`: desired count raised, the old deployment stays PRIMARY and COMPLETED.
        let s = snap(
            1,
            0,
            1,
            vec![dep("ecs-svc/6", "PRIMARY", TD6, Some("COMPLETED"))],
        );
        assert!(!is_stable(&s));
    }

    #[test]
    fn no_rollout_state_falls_back_to_counts_and_one_deployment() {
        assert!(is_stable(&snap(
            2,
            2,
            0,
            vec![dep("d", "PRIMARY", TD6, None)]
        )));
        let two = vec![
            dep("d6", "PRIMARY", TD6, None),
            dep("d5", "ACTIVE", TD5, None),
        ];
        assert!(!is_stable(&snap(2, 2, 0, two)));
    }

    #[test]
    fn failed_rollout_is_a_rollback_with_its_reason() {
        let mut d = dep("ecs-svc/6", "ACTIVE", TD6, Some("FAILED"));
        d.rollout_reason = Some("ECS deployment circuit breaker: tasks failed to start.".into());
        let s = snap(
            1,
            1,
            0,
            vec![dep("ecs-svc/7", "PRIMARY", TD5, Some("IN_PROGRESS")), d],
        );
        let ours = OurDeployment {
            id: "ecs-svc/6".into(),
            task_definition: TD6.into(),
        };
        match judge(Goal::Stable, &s, Some(&ours), &[], t0()) {
            ServiceVerdict::RolledBack(r) => {
                assert!(r.contains("circuit breaker"), "{r}");
                assert!(r.contains("timing-api:6"), "{r}");
            }
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn failed_rollout_from_before_the_wait_is_ignored() {
        let mut d = dep("ecs-svc/4", "ACTIVE", TD5, Some("FAILED"));
        d.updated_at = Some(t0() - Duration::from_secs(60));
        let s = snap(
            1,
            0,
            1,
            vec![dep("ecs-svc/6", "PRIMARY", TD6, Some("IN_PROGRESS")), d],
        );
        assert_eq!(
            judge(Goal::Stable, &s, None, &[], t0()),
            ServiceVerdict::Waiting
        );
    }

    #[test]
    fn primary_back_on_the_previous_task_definition_is_a_rollback() {
        let s = snap(
            1,
            1,
            0,
            vec![dep("ecs-svc/7", "PRIMARY", TD5, Some("COMPLETED"))],
        );
        let ours = OurDeployment {
            id: "ecs-svc/6".into(),
            task_definition: TD6.into(),
        };
        assert!(matches!(
            judge(Goal::Stable, &s, Some(&ours), &[], t0()),
            ServiceVerdict::RolledBack(r) if r.contains("timing-api:5")
        ));
    }

    #[test]
    fn rolling_back_event_is_a_rollback() {
        let s = snap(
            1,
            0,
            1,
            vec![dep("ecs-svc/6", "PRIMARY", TD6, Some("IN_PROGRESS"))],
        );
        let e = ServiceEventRecord {
            service: "api".into(),
            id: "e1".into(),
            at: None,
            message: "(service api) rolling back to deployment ecs-svc/5.".into(),
        };
        assert!(matches!(
            judge(Goal::Stable, &s, None, &[e], t0()),
            ServiceVerdict::RolledBack(r) if r.contains("rolling back")
        ));
    }

    #[test]
    fn drained_when_nothing_runs_or_the_service_is_gone() {
        let d = vec![dep("d", "PRIMARY", TD6, Some("COMPLETED"))];
        assert_eq!(
            judge(Goal::Drained, &snap(0, 0, 0, d.clone()), None, &[], t0()),
            ServiceVerdict::Done
        );
        assert_eq!(
            judge(Goal::Drained, &snap(0, 1, 0, d), None, &[], t0()),
            ServiceVerdict::Waiting
        );
        let mut gone = snap(0, 0, 0, vec![]);
        gone.state = ServiceState::missing("api");
        assert_eq!(
            judge(Goal::Drained, &gone, None, &[], t0()),
            ServiceVerdict::Done
        );
    }

    #[test]
    fn failures_are_told_from_normal_stops() {
        let pull = "CannotPullContainerError: pull image manifest has been retried 5 time(s)";
        assert!(is_failure(&stopped(pull, Some("TaskFailedToStart"), None)));
        assert!(is_failure(&stopped(
            "Essential container in task exited",
            Some("EssentialContainerExited"),
            Some(1)
        )));
        assert!(is_failure(&stopped(
            "Task failed container health checks",
            Some("ServiceSchedulerInitiated"),
            Some(137)
        )));
        assert!(!is_failure(&stopped(
            "Scaling activity initiated by (deployment ecs-svc/6)",
            Some("ServiceSchedulerInitiated"),
            Some(143)
        )));
        assert!(!is_failure(&stopped(
            "Task stopped by user",
            Some("UserInitiated"),
            Some(0)
        )));
        assert!(is_failure(&stopped("something new", None, Some(2))));
    }

    #[test]
    fn a_setup_not_ready_is_told_from_a_broken_image_or_a_crash() {
        let role = "ResourceInitializationError: unable to pull secrets or registry auth: unable to assume role";
        assert!(is_setup_not_ready(&stopped(
            role,
            Some("TaskFailedToStart"),
            None
        )));
        let dns = "ResourceInitializationError: failed to invoke EFS utils commands to set up EFS volumes: Failed to resolve \"fs-1.efs.eu-north-1.amazonaws.com\"";
        assert!(is_setup_not_ready(&stopped(
            dns,
            Some("TaskFailedToStart"),
            None
        )));
        let pull = "CannotPullContainerError: pull image manifest has been retried 5 time(s)";
        assert!(!is_setup_not_ready(&stopped(
            pull,
            Some("TaskFailedToStart"),
            None
        )));
        assert!(!is_setup_not_ready(&stopped(
            "Essential container in task exited",
            Some("EssentialContainerExited"),
            Some(1)
        )));
    }

    #[test]
    fn tasks_are_matched_to_our_deployment() {
        let ours = OurDeployment {
            id: "ecs-svc/6".into(),
            task_definition: TD6.into(),
        };
        let mut t = stopped("x", None, None);
        assert!(belongs_to(&t, Some(&ours)));
        t.started_by = Some("ecs-svc/5".into());
        assert!(!belongs_to(&t, Some(&ours)));
        t.started_by = None;
        assert!(belongs_to(&t, Some(&ours)));
        t.task_definition_arn = TD5.into();
        assert!(!belongs_to(&t, Some(&ours)));
        assert!(belongs_to(&t, None));
    }
}
