//! How a wait fails, and the exit code and JSON each failure maps to.
//!
//! The exit codes are part of the command-line interface (documented in `docs/ci.md`), so CI
//! scripts can tell "took too long" (3) from "ECS rolled it back / tasks crash" (4) from "could
//! not even ask AWS" (1).

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::model::{Goal, ServiceState, StoppedTask, ser_secs};

/// Exit code of a wait that timed out.
pub const EXIT_TIMEOUT: i32 = 3;
/// Exit code of a deployment that ECS rolled back or whose tasks keep failing.
pub const EXIT_DEPLOYMENT_FAILED: i32 = 4;
/// Exit code of any other error (AWS call failed, service missing).
pub const EXIT_ERROR: i32 = 1;

/// Boxed source error (SDK errors are large; boxing keeps `Result`s small).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a wait did not reach its goal.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The goal was not reached within the timeout.
    #[error(
        "timed out after {} waiting for services to be {goal} (limit {}); re-run with a longer `--timeout`, or see `provisioner status`",
        human(.waited),
        human(.timeout)
    )]
    TimedOut {
        /// How long we waited.
        waited: Duration,
        /// The limit.
        timeout: Duration,
        /// What we waited for.
        goal: Goal,
        /// Each service's last observed state.
        services_state: Vec<ServiceState>,
        /// Failed tasks seen while waiting, with their last log lines.
        stopped_tasks: Vec<StoppedTask>,
    },
    /// The deployment circuit breaker rolled the deployment back.
    #[error("ECS rolled back the deployment of service `{service}`: {reason}")]
    RolledBack {
        /// The service.
        service: String,
        /// Why, as ECS says it.
        reason: String,
        /// Each service's last observed state.
        services_state: Vec<ServiceState>,
        /// Failed tasks of the rolled-back deployment, with their last log lines.
        stopped_tasks: Vec<StoppedTask>,
    },
    /// Tasks of the new deployment keep stopping with errors.
    #[error(
        "tasks of the new deployment of service `{service}` keep failing ({} stopped): {}",
        .stopped_tasks.len(),
        last_summary(.stopped_tasks)
    )]
    TasksFailing {
        /// The service.
        service: String,
        /// Each service's last observed state.
        services_state: Vec<ServiceState>,
        /// The failed tasks, oldest first, with their last log lines.
        stopped_tasks: Vec<StoppedTask>,
    },
    /// A service to wait for to become stable does not exist.
    #[error(
        "service `{service}` does not exist in cluster `{cluster}`; run `provisioner up` first"
    )]
    ServiceMissing {
        /// The cluster.
        cluster: String,
        /// The service.
        service: String,
    },
    /// An AWS call failed (after the SDK's own retries).
    #[error("{operation} failed for `{resource}`: {message}")]
    Aws {
        /// The API operation, e.g. `DescribeServices`.
        operation: &'static str,
        /// What it was about (cluster, service, task).
        resource: String,
        /// The SDK error with its context (code and message).
        message: String,
        /// The SDK error.
        #[source]
        source: BoxError,
    },
}

/// A duration in whole seconds, as users read a limit (`9m 59s`, not `9m 59s 145ms 961us`).
pub(crate) fn human(d: &Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

fn last_summary(tasks: &[StoppedTask]) -> String {
    tasks.last().map(StoppedTask::summary).unwrap_or_default()
}

/// The JSON shape of a failed wait (see `docs/ci.md`).
#[derive(Serialize)]
struct ErrorJson<'a> {
    kind: &'static str,
    exit_code: i32,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    service: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    goal: Option<Goal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    waited_seconds: Option<Secs>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout_seconds: Option<Secs>,
    #[serde(skip_serializing_if = "Option::is_none")]
    services: Option<&'a [ServiceState]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stopped_tasks: Option<&'a [StoppedTask]>,
}

#[derive(Serialize)]
struct Secs(#[serde(serialize_with = "ser_secs")] Duration);

impl WatchError {
    /// The process exit code for this failure: 3 timeout, 4 rolled back or tasks failing,
    /// 1 anything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            WatchError::TimedOut { .. } => EXIT_TIMEOUT,
            WatchError::RolledBack { .. } | WatchError::TasksFailing { .. } => {
                EXIT_DEPLOYMENT_FAILED
            }
            WatchError::ServiceMissing { .. } | WatchError::Aws { .. } => EXIT_ERROR,
        }
    }

    /// Short machine name of the failure: `timed_out`, `rolled_back`, `tasks_failing`,
    /// `service_missing`, `aws`.
    pub fn kind(&self) -> &'static str {
        match self {
            WatchError::TimedOut { .. } => "timed_out",
            WatchError::RolledBack { .. } => "rolled_back",
            WatchError::TasksFailing { .. } => "tasks_failing",
            WatchError::ServiceMissing { .. } => "service_missing",
            WatchError::Aws { .. } => "aws",
        }
    }

    /// The stopped tasks the failure carries (with their last log lines).
    pub fn stopped_tasks(&self) -> &[StoppedTask] {
        match self {
            WatchError::TimedOut { stopped_tasks, .. }
            | WatchError::RolledBack { stopped_tasks, .. }
            | WatchError::TasksFailing { stopped_tasks, .. } => stopped_tasks,
            WatchError::ServiceMissing { .. } | WatchError::Aws { .. } => &[],
        }
    }

    /// The failure as the `error` object of `--output json` (schema in `docs/ci.md`).
    pub fn to_json(&self) -> Value {
        let mut j = ErrorJson {
            kind: self.kind(),
            exit_code: self.exit_code(),
            message: self.to_string(),
            service: None,
            reason: None,
            goal: None,
            waited_seconds: None,
            timeout_seconds: None,
            services: None,
            stopped_tasks: None,
        };
        match self {
            WatchError::TimedOut {
                waited,
                timeout,
                goal,
                services_state,
                stopped_tasks,
            } => {
                j.goal = Some(*goal);
                j.waited_seconds = Some(Secs(*waited));
                j.timeout_seconds = Some(Secs(*timeout));
                j.services = Some(services_state);
                j.stopped_tasks = Some(stopped_tasks);
            }
            WatchError::RolledBack {
                service,
                reason,
                services_state,
                stopped_tasks,
            } => {
                j.service = Some(service);
                j.reason = Some(reason);
                j.services = Some(services_state);
                j.stopped_tasks = Some(stopped_tasks);
            }
            WatchError::TasksFailing {
                service,
                services_state,
                stopped_tasks,
            } => {
                j.service = Some(service);
                j.services = Some(services_state);
                j.stopped_tasks = Some(stopped_tasks);
            }
            WatchError::ServiceMissing { service, .. } => j.service = Some(service),
            WatchError::Aws { .. } => {}
        }
        serde_json::to_value(j).unwrap_or(Value::Null)
    }

    /// Builds an [`WatchError::Aws`] from an SDK error, keeping its code and message.
    pub(crate) fn aws<E>(operation: &'static str, resource: impl Into<String>, err: E) -> Self
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let message = aws_smithy_types::error::display::DisplayErrorContext(&err).to_string();
        WatchError::Aws {
            operation,
            resource: resource.into(),
            message,
            source: Box::new(err),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_the_documented_ones() {
        let timed_out = WatchError::TimedOut {
            waited: Duration::from_secs(600),
            timeout: Duration::from_secs(600),
            goal: Goal::Stable,
            services_state: vec![],
            stopped_tasks: vec![],
        };
        assert_eq!(timed_out.exit_code(), 3);
        let rolled_back = WatchError::RolledBack {
            service: "api".into(),
            reason: "r".into(),
            services_state: vec![],
            stopped_tasks: vec![],
        };
        assert_eq!(rolled_back.exit_code(), 4);
        let failing = WatchError::TasksFailing {
            service: "api".into(),
            services_state: vec![],
            stopped_tasks: vec![],
        };
        assert_eq!(failing.exit_code(), 4);
        let missing = WatchError::ServiceMissing {
            cluster: "c".into(),
            service: "api".into(),
        };
        assert_eq!(missing.exit_code(), 1);
    }

    #[test]
    fn timeout_json_has_kind_code_limit_and_state() {
        let e = WatchError::TimedOut {
            waited: Duration::from_millis(600_250),
            timeout: Duration::from_secs(600),
            goal: Goal::Drained,
            services_state: vec![ServiceState::missing("redis")],
            stopped_tasks: vec![],
        };
        let j = e.to_json();
        assert_eq!(j["kind"], "timed_out");
        assert_eq!(j["exit_code"], 3);
        assert_eq!(j["goal"], "drained");
        assert_eq!(j["waited_seconds"], 600.25);
        assert_eq!(j["timeout_seconds"], 600.0);
        assert_eq!(j["services"][0]["status"], "MISSING");
        assert!(
            j["message"].as_str().is_some_and(|m| m.contains("10m")),
            "{j}"
        );
        assert!(j.get("service").is_none());
    }
}
