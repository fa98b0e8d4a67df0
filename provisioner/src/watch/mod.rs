//! The deployment watcher: waits, bounded, until ECS services are stable or drained, and tells
//! why when they are not.
//!
//! `up`, `start` and `stop` call [`watch_services`] after their mutating calls. It polls
//! DescribeServices every [`WatchSpec::poll_interval`] and, while waiting for `Stable`, the
//! services' stopped tasks (ListTasks `desiredStatus=STOPPED` + DescribeTasks), and ends with:
//!
//! | outcome | when | exit code |
//! | --- | --- | --- |
//! | `Ok(WatchReport)` | every service reached the goal ([`Goal::Stable`]: one deployment, rollout `COMPLETED` or unreported, running == desired, none pending; [`Goal::Drained`]: nothing running or pending) | 0 |
//! | [`WatchError::RolledBack`] | the circuit breaker failed the deployment (rollout `FAILED`, PRIMARY back on the previous task definition, or a "rolling back" event) | 4 |
//! | [`WatchError::TasksFailing`] | [`WatchSpec::failed_tasks_limit`] tasks of the new deployment stopped with an error (CannotPullContainerError, ResourceInitializationError, essential container exited, failed health checks, non-zero exit) — without waiting for the circuit breaker; stops of a setup still propagating count only after [`WatchSpec::settling`] | 4 |
//! | [`WatchError::TimedOut`] | [`WatchSpec::timeout`] passed | 3 |
//! | [`WatchError::ServiceMissing`], [`WatchError::Aws`] | a service to stabilise does not exist; an AWS call failed | 1 |
//!
//! The failures carry the stopped tasks (id, task definition revision, stop reason and code,
//! each container's exit code and reason) with the last lines of each container's CloudWatch
//! log stream (`<prefix>/<container>/<task-id>`, the awslogs driver's naming). The whole wait,
//! AWS calls and reading those logs included, ends within the timeout: polling stops a tenth of
//! it (at most [`LOG_FETCH_LIMIT`]) early, and the logs are read in what is left.
//!
//! Progress goes to a [`WatchSink`] as it happens: a line per poll, each new service event
//! (events written since [`WatchSpec::started_at`], deduplicated by id), each stopped task.
//! [`stderr_sink`] picks a live view on a terminal and timestamped lines otherwise.
//!
//! **Cancel safety.** The watcher only reads. Dropping its future at any point (Ctrl-C in a
//! `tokio::select!`) leaves nothing to clean up, in AWS or locally; the deployment carries on
//! in ECS and a later `provisioner status` (or the same command again) picks it up.
//!
//! ```no_run
//! # async fn f(ecs: aws_sdk_ecs::Client, logs: aws_sdk_cloudwatchlogs::Client) {
//! use provisioner::watch::{Goal, WatchSpec, stderr_sink, watch_services};
//! let spec = WatchSpec::new("timing", vec!["redis".into(), "api".into()], Goal::Stable, "/ecs/timing");
//! let mut sink = stderr_sink();
//! match watch_services(&ecs, &logs, &spec, sink.as_mut()).await {
//!     Ok(report) => println!("{}", serde_json::to_string(&report).unwrap_or_default()),
//!     Err(e) => std::process::exit(e.exit_code()),
//! }
//! # }
//! ```

mod error;
mod judge;
mod model;
mod observe;
mod sink;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

pub use error::{BoxError, EXIT_DEPLOYMENT_FAILED, EXIT_ERROR, EXIT_TIMEOUT, WatchError};
pub use model::{
    ContainerExit, Goal, ServiceEventRecord, ServiceState, StoppedTask, WaitStart, WatchEvent,
    WatchReport, rfc3339,
};
pub use sink::{LiveSink, NullSink, PlainSink, WatchSink, stderr_sink};

use judge::{OurDeployment, ServiceVerdict, Snapshot};

/// Default limit of a wait.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// Default time between polls (the ECS waiters use 15 s; 5 s keeps the view lively at ~1
/// DescribeServices + 1 ListTasks per service and poll).
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(5);
/// Default number of failed tasks of the new deployment that ends the wait.
pub const DEFAULT_FAILED_TASKS_LIMIT: usize = 3;
/// Default number of log lines kept per container of a failed task.
pub const DEFAULT_LOG_LINES: usize = 20;
/// Limit for reading the logs of failed tasks once the wait has failed.
pub const LOG_FETCH_LIMIT: Duration = Duration::from_secs(20);

/// The end of a wait kept for reading the logs of failed tasks, so that the wait, logs
/// included, ends within its timeout: a tenth of the timeout, at most [`LOG_FETCH_LIMIT`].
fn log_reserve(timeout: Duration) -> Duration {
    (timeout / 10).min(LOG_FETCH_LIMIT)
}

/// What to wait for, and how.
#[derive(Debug, Clone)]
pub struct WatchSpec {
    /// ECS cluster name.
    pub cluster: String,
    /// Services to watch, in the order they are reported.
    pub services: Vec<String>,
    /// Stable or drained.
    pub goal: Goal,
    /// Limit of the whole wait.
    pub timeout: Duration,
    /// Time between polls.
    pub poll_interval: Duration,
    /// CloudWatch log group of the services' containers.
    pub log_group: String,
    /// When the command began changing things: service events and stopped tasks older than
    /// this are not reported. Take it just before the first mutating call. It is compared with
    /// AWS's timestamps: a local clock running ahead of AWS's hides the events of those seconds
    /// (NTP keeps that well under a second).
    pub started_at: SystemTime,
    /// Failed tasks of the new deployment of one service that end the wait with
    /// [`WatchError::TasksFailing`].
    pub failed_tasks_limit: usize,
    /// Log lines kept per container of a failed task.
    pub log_lines: usize,
    /// `awslogs-stream-prefix` per service, when it is not the service's name.
    pub stream_prefixes: BTreeMap<String, String>,
    /// For this long after the wait began, a task that stopped the way a setup still being
    /// created makes tasks stop (`ResourceInitializationError`, "unable to assume role", the
    /// ECS service-linked role) is reported but not counted as a failure: set when the
    /// command created the roles or the mount targets those tasks need. A crash, a failed
    /// health check or an image that cannot be pulled counts at once.
    pub settling: Duration,
}

impl WatchSpec {
    /// A spec with the defaults: [`DEFAULT_TIMEOUT`], [`DEFAULT_POLL_INTERVAL`], started now,
    /// [`DEFAULT_FAILED_TASKS_LIMIT`], [`DEFAULT_LOG_LINES`], stream prefix = service name.
    pub fn new(
        cluster: impl Into<String>,
        services: Vec<String>,
        goal: Goal,
        log_group: impl Into<String>,
    ) -> Self {
        Self {
            cluster: cluster.into(),
            services,
            goal,
            timeout: DEFAULT_TIMEOUT,
            poll_interval: DEFAULT_POLL_INTERVAL,
            log_group: log_group.into(),
            started_at: SystemTime::now(),
            failed_tasks_limit: DEFAULT_FAILED_TASKS_LIMIT,
            log_lines: DEFAULT_LOG_LINES,
            stream_prefixes: BTreeMap::new(),
            settling: Duration::ZERO,
        }
    }

    /// The `awslogs-stream-prefix` of a service's containers.
    pub fn stream_prefix<'a>(&'a self, service: &'a str) -> &'a str {
        self.stream_prefixes
            .get(service)
            .map_or(service, String::as_str)
    }
}

/// What the loop remembers between polls.
#[derive(Default)]
struct Tracker {
    /// The PRIMARY deployment of each service at the first poll that had one.
    ours: HashMap<String, OurDeployment>,
    seen_events: HashSet<String>,
    events: Vec<ServiceEventRecord>,
    /// Task ARNs already reported (or too old to report).
    seen_tasks: HashSet<String>,
    stopped: Vec<StoppedTask>,
    /// Failed tasks of our deployment, per service, oldest first.
    failures: HashMap<String, Vec<StoppedTask>>,
    states: Vec<ServiceState>,
}

/// How one poll ended.
enum Poll {
    Done,
    Waiting,
    RolledBack { service: String, reason: String },
    Failing { service: String },
}

/// Waits until every service of `spec` reaches `spec.goal`, reporting progress to `sink`.
/// See the module documentation for the rules, the errors and their exit codes.
pub async fn watch_services(
    ecs: &aws_sdk_ecs::Client,
    logs: &aws_sdk_cloudwatchlogs::Client,
    spec: &WatchSpec,
    sink: &mut dyn WatchSink,
) -> Result<WatchReport, WatchError> {
    let start = Instant::now();
    let deadline = start + spec.timeout;
    let polls_end = deadline - log_reserve(spec.timeout);
    sink.event(&WatchEvent::Started(WaitStart {
        goal: spec.goal,
        services: spec.services.clone(),
        timeout: spec.timeout,
    }));
    let mut tr = Tracker {
        states: spec
            .services
            .iter()
            .map(|s| ServiceState::missing(s))
            .collect(),
        ..Tracker::default()
    };
    let result = loop {
        let polled =
            tokio::time::timeout_at(polls_end, poll(ecs, spec, &mut tr, sink, start)).await;
        match polled {
            Ok(Ok(Poll::Done)) => {
                break Ok(WatchReport {
                    goal: spec.goal,
                    waited: start.elapsed(),
                    services: tr.states.clone(),
                    stopped_tasks: tr.stopped.clone(),
                    events: tr.events.clone(),
                });
            }
            Ok(Ok(Poll::Waiting)) => {}
            Ok(Ok(Poll::RolledBack { service, reason })) => {
                let stopped_tasks =
                    failures_with_logs(logs, spec, &tr, Some(&service), deadline).await;
                break Err(WatchError::RolledBack {
                    service,
                    reason,
                    services_state: tr.states.clone(),
                    stopped_tasks,
                });
            }
            Ok(Ok(Poll::Failing { service })) => {
                let stopped_tasks =
                    failures_with_logs(logs, spec, &tr, Some(&service), deadline).await;
                break Err(WatchError::TasksFailing {
                    service,
                    services_state: tr.states.clone(),
                    stopped_tasks,
                });
            }
            Ok(Err(e)) => break Err(e),
            // The deadline passed during the poll's AWS calls.
            Err(_) => break Err(timed_out(logs, spec, &tr, start, deadline).await),
        }
        let now = Instant::now();
        if now >= polls_end {
            break Err(timed_out(logs, spec, &tr, start, deadline).await);
        }
        tokio::time::sleep_until((now + spec.poll_interval).min(polls_end)).await;
    };
    sink.event(&WatchEvent::Finished {
        elapsed: start.elapsed(),
        ok: result.is_ok(),
        summary: match &result {
            Ok(_) => format!("{} {}", spec.services.join(", "), spec.goal),
            Err(e) => e.to_string(),
        },
    });
    result
}

async fn timed_out(
    logs: &aws_sdk_cloudwatchlogs::Client,
    spec: &WatchSpec,
    tr: &Tracker,
    start: Instant,
    deadline: Instant,
) -> WatchError {
    let stopped_tasks = failures_with_logs(logs, spec, tr, None, deadline).await;
    WatchError::TimedOut {
        waited: start.elapsed(),
        timeout: spec.timeout,
        goal: spec.goal,
        services_state: tr.states.clone(),
        stopped_tasks,
    }
}

/// The last `failed_tasks_limit` failed tasks of one service (or of all), oldest first.
fn last_failures(tr: &Tracker, service: Option<&str>, spec: &WatchSpec) -> Vec<StoppedTask> {
    let all: Vec<&StoppedTask> = match service {
        Some(s) => tr
            .failures
            .get(s)
            .map(|v| v.iter().collect())
            .unwrap_or_default(),
        None => tr.stopped.iter().filter(|t| t.failed).collect(),
    };
    let skip = all.len().saturating_sub(spec.failed_tasks_limit.max(1));
    all.into_iter().skip(skip).cloned().collect()
}

/// The last failed tasks of `service` (or of all), with their containers' last log lines read
/// within [`LOG_FETCH_LIMIT`] and before `deadline` (the wait's own end).
async fn failures_with_logs(
    logs: &aws_sdk_cloudwatchlogs::Client,
    spec: &WatchSpec,
    tr: &Tracker,
    service: Option<&str>,
    deadline: Instant,
) -> Vec<StoppedTask> {
    let mut tasks = last_failures(tr, service, spec);
    let limit = deadline
        .saturating_duration_since(Instant::now())
        .min(LOG_FETCH_LIMIT);
    let fetch = observe::fetch_log_tails(logs, &spec.log_group, spec.log_lines, &mut tasks);
    if tokio::time::timeout(limit, fetch).await.is_err() {
        for c in tasks.iter_mut().flat_map(|t| t.containers.iter_mut()) {
            if c.log_lines.is_empty() && c.log_note.is_none() {
                let limit = error::human(&limit);
                c.log_note = Some(format!("log not read: reading logs took more than {limit}"));
            }
        }
    }
    tasks
}

/// One round of observation and judgement.
async fn poll(
    ecs: &aws_sdk_ecs::Client,
    spec: &WatchSpec,
    tr: &mut Tracker,
    sink: &mut dyn WatchSink,
    start: Instant,
) -> Result<Poll, WatchError> {
    let snaps = observe::describe_services(ecs, &spec.cluster, &spec.services).await?;
    let mut verdicts = Vec::with_capacity(snaps.len());
    for snap in &snaps {
        let name = &snap.state.service;
        if spec.goal == Goal::Stable && snap.is_gone() {
            return Err(WatchError::ServiceMissing {
                cluster: spec.cluster.clone(),
                service: name.clone(),
            });
        }
        if let Some(p) = snap.primary()
            && !tr.ours.contains_key(name)
        {
            let ours = OurDeployment {
                id: p.id.clone(),
                task_definition: p.task_definition.clone(),
            };
            tr.ours.insert(name.clone(), ours);
        }
        let new_events = new_events(snap, spec.started_at, &mut tr.seen_events);
        for e in &new_events {
            sink.event(&WatchEvent::ServiceEvent(e.clone()));
        }
        let verdict = judge::judge(
            spec.goal,
            snap,
            tr.ours.get(name),
            &new_events,
            spec.started_at,
        );
        tr.events.extend(new_events);
        verdicts.push(verdict);
    }
    tr.states = snaps.iter().map(|s| s.state.clone()).collect();
    sink.event(&WatchEvent::Progress {
        elapsed: start.elapsed(),
        services: tr.states.clone(),
    });

    for (snap, verdict) in snaps.iter().zip(&verdicts) {
        if let ServiceVerdict::RolledBack(reason) = verdict {
            return Ok(Poll::RolledBack {
                service: snap.state.service.clone(),
                reason: reason.clone(),
            });
        }
    }
    if spec.goal == Goal::Stable {
        for (snap, verdict) in snaps.iter().zip(&verdicts) {
            if *verdict == ServiceVerdict::Done {
                continue;
            }
            let service = &snap.state.service;
            let settling = start.elapsed() < spec.settling;
            check_stopped_tasks(ecs, spec, tr, sink, service, settling).await?;
            let failed = tr.failures.get(service).map_or(0, Vec::len);
            if failed >= spec.failed_tasks_limit.max(1) {
                return Ok(Poll::Failing {
                    service: service.clone(),
                });
            }
        }
    }
    if verdicts.iter().all(|v| *v == ServiceVerdict::Done) {
        Ok(Poll::Done)
    } else {
        Ok(Poll::Waiting)
    }
}

/// Events of the snapshot written since `started_at` and not seen before, oldest first.
fn new_events(
    snap: &Snapshot,
    started_at: SystemTime,
    seen: &mut HashSet<String>,
) -> Vec<ServiceEventRecord> {
    let mut fresh: Vec<ServiceEventRecord> = snap
        .events
        .iter()
        .filter(|e| e.at.is_none_or(|t| t >= started_at))
        .filter(|e| seen.insert(format!("{}/{}", e.service, e.id)))
        .cloned()
        .collect();
    fresh.sort_by_key(|e| e.at);
    fresh
}

/// Looks for tasks of `service` that stopped since the wait began; reports and classifies them.
async fn check_stopped_tasks(
    ecs: &aws_sdk_ecs::Client,
    spec: &WatchSpec,
    tr: &mut Tracker,
    sink: &mut dyn WatchSink,
    service: &str,
    settling: bool,
) -> Result<(), WatchError> {
    let arns = observe::list_stopped_tasks(ecs, &spec.cluster, service).await?;
    let new: Vec<String> = arns
        .into_iter()
        .filter(|a| !tr.seen_tasks.contains(a))
        .collect();
    let mut tasks = observe::describe_tasks(ecs, &spec.cluster, service, &new).await?;
    tasks.sort_by_key(observe::task_time);
    for task in tasks {
        let Some(arn) = task.task_arn() else { continue };
        // Still stopping: its containers' exit codes are not known yet; look again next poll.
        if task.last_status() != Some("STOPPED") {
            continue;
        }
        tr.seen_tasks.insert(arn.to_owned());
        if observe::task_time(&task).is_some_and(|t| t < spec.started_at) {
            continue;
        }
        let mut stopped = observe::stopped_task(service, spec.stream_prefix(service), &task);
        stopped.failed = judge::is_failure(&stopped);
        sink.event(&WatchEvent::TaskStopped(stopped.clone()));
        let waited_out = settling && judge::is_setup_not_ready(&stopped);
        if stopped.failed && !waited_out && judge::belongs_to(&stopped, tr.ours.get(service)) {
            tr.failures
                .entry(service.to_owned())
                .or_default()
                .push(stopped.clone());
        }
        tr.stopped.push(stopped);
    }
    Ok(())
}

/// One service as `status` shows it: its state and its events (newest first, as ECS lists
/// them), from one DescribeServices call.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServiceView {
    /// Counts, status, rollout, task definition.
    #[serde(flatten)]
    pub state: ServiceState,
    /// The service's recent events (ECS keeps the last 100).
    pub events: Vec<ServiceEventRecord>,
}

/// The services' current states and events, for `status` (read-only; a missing cluster or
/// service comes back with status `MISSING`).
pub async fn service_views(
    ecs: &aws_sdk_ecs::Client,
    cluster: &str,
    services: &[String],
) -> Result<Vec<ServiceView>, WatchError> {
    let snaps = observe::describe_services(ecs, cluster, services).await?;
    Ok(snaps.into_iter().map(ServiceView::from).collect())
}

/// The view of a service its caller has described already (`None`: not found), for `status`,
/// which reads the services with their tags anyway.
pub fn service_view(name: &str, service: Option<&aws_sdk_ecs::types::Service>) -> ServiceView {
    ServiceView::from(match service {
        Some(service) => observe::snapshot(name, service),
        None => Snapshot::missing(name),
    })
}

impl From<Snapshot> for ServiceView {
    fn from(snapshot: Snapshot) -> Self {
        ServiceView {
            state: snapshot.state,
            events: snapshot.events,
        }
    }
}

/// Tasks of `service` that stopped since `spec.started_at` (one ListTasks page; ECS keeps
/// stopped tasks for about an hour), oldest first, classified (`failed`), with the last
/// `spec.log_lines` lines of each container's log (none when 0). For `status`: build the spec
/// with [`WatchSpec::new`] and set `started_at` to how far back to look.
pub async fn recent_stopped_tasks(
    ecs: &aws_sdk_ecs::Client,
    logs: &aws_sdk_cloudwatchlogs::Client,
    spec: &WatchSpec,
    service: &str,
) -> Result<Vec<StoppedTask>, WatchError> {
    let arns = observe::list_stopped_tasks(ecs, &spec.cluster, service).await?;
    let mut tasks = observe::describe_tasks(ecs, &spec.cluster, service, &arns).await?;
    tasks.sort_by_key(observe::task_time);
    let prefix = spec.stream_prefix(service);
    let mut stopped: Vec<StoppedTask> = tasks
        .iter()
        .filter(|t| observe::task_time(t).is_none_or(|at| at >= spec.started_at))
        .map(|t| {
            let mut s = observe::stopped_task(service, prefix, t);
            s.failed = judge::is_failure(&s);
            s
        })
        .collect();
    if spec.log_lines > 0 {
        let fetch = observe::fetch_log_tails(logs, &spec.log_group, spec.log_lines, &mut stopped);
        // Logs are a courtesy in `status`: a slow read leaves them empty rather than hanging.
        let _ = tokio::time::timeout(LOG_FETCH_LIMIT, fetch).await;
    }
    Ok(stopped)
}
