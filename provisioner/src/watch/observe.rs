//! The watcher's AWS reads, and their conversion into the plain types of `model.rs`/`judge.rs`.
//!
//! Only read-only calls live here: DescribeServices, ListTasks and DescribeTasks (ECS) and
//! GetLogEvents (CloudWatch Logs). That is what makes the watcher cancel-safe: dropping it at
//! any `.await` leaves nothing behind in AWS. Every list is bounded (one page of at most 100
//! stopped tasks per service and poll; at most `log_lines` log events per container).

use std::time::SystemTime;

use aws_sdk_cloudwatchlogs::Client as LogsClient;
use aws_sdk_ecs::Client as EcsClient;
use aws_sdk_ecs::types::{DesiredStatus, Service, Task};

use super::error::WatchError;
use super::judge::{DeploymentView, Snapshot};
use super::model::{
    ContainerExit, ServiceEventRecord, ServiceState, StoppedTask, short_task_definition, task_id,
};

/// DescribeServices takes at most 10 services per call.
const DESCRIBE_SERVICES_MAX: usize = 10;
/// ListTasks page size (its maximum); one page per service and poll.
const LIST_TASKS_MAX: i32 = 100;

fn time(t: Option<&aws_smithy_types::DateTime>) -> Option<SystemTime> {
    t.and_then(|t| SystemTime::try_from(*t).ok())
}

/// One snapshot per requested service, in the requested order. A missing cluster makes every
/// service MISSING (the caller decides whether that is fine: it is for `Drained`).
pub async fn describe_services(
    ecs: &EcsClient,
    cluster: &str,
    services: &[String],
) -> Result<Vec<Snapshot>, WatchError> {
    let mut found: Vec<Service> = Vec::new();
    for chunk in services.chunks(DESCRIBE_SERVICES_MAX) {
        let resp = ecs
            .describe_services()
            .cluster(cluster)
            .set_services(Some(chunk.to_vec()))
            .send()
            .await;
        match resp {
            Ok(out) => found.extend(out.services().iter().cloned()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_cluster_not_found_exception()) => {}
            Err(e) => return Err(WatchError::aws("DescribeServices", cluster, e)),
        }
    }
    Ok(services
        .iter()
        .map(|name| {
            match found
                .iter()
                .find(|s| s.service_name() == Some(name.as_str()))
            {
                Some(s) => snapshot(name, s),
                None => Snapshot::missing(name),
            }
        })
        .collect())
}

/// Converts one DescribeServices entry.
pub fn snapshot(name: &str, s: &Service) -> Snapshot {
    let mut deployments: Vec<DeploymentView> = s
        .deployments()
        .iter()
        .map(|d| DeploymentView {
            id: d.id().unwrap_or_default().to_owned(),
            status: d.status().unwrap_or_default().to_owned(),
            task_definition: d.task_definition().unwrap_or_default().to_owned(),
            rollout_state: d.rollout_state().map(|r| r.as_str().to_owned()),
            rollout_reason: d.rollout_state_reason().map(str::to_owned),
            updated_at: time(d.updated_at()),
        })
        .collect();
    deployments.sort_by_key(|d| d.status != "PRIMARY");
    let primary = deployments.first().filter(|d| d.status == "PRIMARY");
    let state = ServiceState {
        service: name.to_owned(),
        status: s.status().unwrap_or("ACTIVE").to_owned(),
        desired: s.desired_count(),
        running: s.running_count(),
        pending: s.pending_count(),
        rollout_state: primary.and_then(|d| d.rollout_state.clone()),
        rollout_reason: primary.and_then(|d| d.rollout_reason.clone()),
        task_definition: primary
            .map(|d| d.task_definition.as_str())
            .or(s.task_definition())
            .map(short_task_definition),
        deployments: deployments.len(),
    };
    let events = s
        .events()
        .iter()
        .map(|e| ServiceEventRecord {
            service: name.to_owned(),
            id: e.id().unwrap_or_default().to_owned(),
            at: time(e.created_at()),
            message: e.message().unwrap_or_default().to_owned(),
        })
        .collect();
    Snapshot {
        state,
        deployments,
        events,
    }
}

/// ARNs of the service's stopped tasks (one bounded page).
pub async fn list_stopped_tasks(
    ecs: &EcsClient,
    cluster: &str,
    service: &str,
) -> Result<Vec<String>, WatchError> {
    let out = ecs
        .list_tasks()
        .cluster(cluster)
        .service_name(service)
        .desired_status(DesiredStatus::Stopped)
        .max_results(LIST_TASKS_MAX)
        .send()
        .await;
    match out {
        Ok(out) => Ok(out.task_arns().to_vec()),
        // The service or cluster went away meanwhile: no tasks to report.
        Err(e)
            if e.as_service_error().is_some_and(|e| {
                e.is_cluster_not_found_exception() || e.is_service_not_found_exception()
            }) =>
        {
            Ok(vec![])
        }
        Err(e) => Err(WatchError::aws("ListTasks", service, e)),
    }
}

/// Describes tasks (at most 100 ARNs, which is what one ListTasks page gives).
pub async fn describe_tasks(
    ecs: &EcsClient,
    cluster: &str,
    service: &str,
    arns: &[String],
) -> Result<Vec<Task>, WatchError> {
    if arns.is_empty() {
        return Ok(vec![]);
    }
    let out = ecs
        .describe_tasks()
        .cluster(cluster)
        .set_tasks(Some(arns.to_vec()))
        .send()
        .await
        .map_err(|e| WatchError::aws("DescribeTasks", service, e))?;
    Ok(out.tasks().to_vec())
}

/// Converts a described task; `stream_prefix` is the container's `awslogs-stream-prefix`.
pub fn stopped_task(service: &str, stream_prefix: &str, t: &Task) -> StoppedTask {
    let id = task_id(t.task_arn().unwrap_or_default());
    let containers = t
        .containers()
        .iter()
        .map(|c| {
            let name = c.name().unwrap_or_default().to_owned();
            ContainerExit {
                log_stream: format!("{stream_prefix}/{name}/{id}"),
                name,
                exit_code: c.exit_code(),
                reason: c.reason().map(str::to_owned),
                log_lines: vec![],
                log_note: None,
            }
        })
        .collect();
    let td_arn = t.task_definition_arn().unwrap_or_default().to_owned();
    StoppedTask {
        service: service.to_owned(),
        task_id: id,
        task_definition: short_task_definition(&td_arn),
        stopped_at: time(t.stopped_at()),
        stopped_reason: t.stopped_reason().map(str::to_owned),
        stop_code: t.stop_code().map(|c| c.as_str().to_owned()),
        failed: false,
        containers,
        started_by: t.started_by().map(str::to_owned),
        task_definition_arn: td_arn,
    }
}

/// When the task stopped (or, lacking that, was created), to compare with the wait's start.
pub fn task_time(t: &Task) -> Option<SystemTime> {
    time(t.stopped_at().or(t.stopping_at()).or(t.created_at()))
}

/// Fills each container's `log_lines` with the last `lines` lines of its stream. Never fails:
/// a missing stream or a failed read is recorded in `log_note` instead.
pub async fn fetch_log_tails(
    logs: &LogsClient,
    log_group: &str,
    lines: usize,
    tasks: &mut [StoppedTask],
) {
    let limit = i32::try_from(lines).unwrap_or(i32::MAX).max(1);
    for task in tasks.iter_mut() {
        for c in task.containers.iter_mut() {
            let out = logs
                .get_log_events()
                .log_group_name(log_group)
                .log_stream_name(&c.log_stream)
                .start_from_head(false)
                .limit(limit)
                .send()
                .await;
            match out {
                Ok(out) => {
                    c.log_lines = out
                        .events()
                        .iter()
                        .filter_map(|e| e.message())
                        .map(|m| m.trim_end().to_owned())
                        .collect();
                    if c.log_lines.is_empty() {
                        c.log_note = Some("the log stream is empty".to_owned());
                    }
                }
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_resource_not_found_exception()) =>
                {
                    c.log_note = Some(format!(
                        "no log stream `{}` in `{log_group}` (the container never started or logs elsewhere)",
                        c.log_stream
                    ));
                }
                Err(e) => {
                    c.log_note = Some(format!(
                        "could not read the log: {}",
                        aws_smithy_types::error::display::DisplayErrorContext(&e)
                    ));
                }
            }
        }
    }
}
