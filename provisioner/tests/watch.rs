//! The deployment watcher and the logs reader against replayed AWS answers.
//!
//! moto runs no containers (no tasks ever start, stop or log), so the waiting and failure logic
//! is driven here by `aws-smithy-mocks` in `RuleMode::Sequential`: each test lists, in order,
//! the DescribeServices / ListTasks / DescribeTasks (ECS client) and GetLogEvents /
//! FilterLogEvents (Logs client) answers one real deployment would produce, and a call out of
//! that order fails the test. Waits run on tokio's paused clock (`start_paused`), so the polls'
//! sleeps and the timeouts take no real time; no test asserts on timing.
//!
//! The one test against a real server, `fetch_logs_reads_a_real_log_group_from_moto`, starts
//! `moto_server` on a free loopback port (installed by `scripts/install-deps`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::time::{Duration, SystemTime};

use aws_sdk_cloudwatchlogs::operation::filter_log_events::{
    FilterLogEventsError, FilterLogEventsOutput,
};
use aws_sdk_cloudwatchlogs::operation::get_log_events::{GetLogEventsError, GetLogEventsOutput};
use aws_sdk_cloudwatchlogs::types::{FilteredLogEvent, OutputLogEvent};
use aws_sdk_ecs::operation::describe_services::DescribeServicesOutput;
use aws_sdk_ecs::operation::describe_tasks::DescribeTasksOutput;
use aws_sdk_ecs::operation::list_tasks::ListTasksOutput;
use aws_sdk_ecs::types::{
    Container, Deployment, DeploymentRolloutState, Service as EcsService, ServiceEvent, Task,
    TaskStopCode,
};
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use aws_smithy_types::DateTime;
use provisioner::logs::{LogsError, LogsOptions, Service, fetch_logs};
use provisioner::watch::{
    Goal, WatchError, WatchEvent, WatchSink, WatchSpec, recent_stopped_tasks, service_views,
    watch_services,
};

// ---------------------------------------------------------------------------------------------
// Building the replayed answers
// ---------------------------------------------------------------------------------------------

const T0: i64 = 1_700_000_000;
const TD5: &str = "arn:aws:ecs:eu-west-1:123456789012:task-definition/timing-api:5";
pub(crate) const TD6: &str = "arn:aws:ecs:eu-west-1:123456789012:task-definition/timing-api:6";
const REDIS_TD: &str = "arn:aws:ecs:eu-west-1:123456789012:task-definition/timing-redis:3";

pub(crate) fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(T0 as u64)
}

pub(crate) fn at(secs_after_t0: i64) -> DateTime {
    DateTime::from_secs(T0 + secs_after_t0)
}

fn deployment(id: &str, status: &str, td: &str, rollout: DeploymentRolloutState) -> Deployment {
    Deployment::builder()
        .id(id)
        .status(status)
        .task_definition(td)
        .rollout_state(rollout)
        .created_at(at(1))
        .updated_at(at(2))
        .build()
}

/// A service with one deployment and the given counts.
pub(crate) fn service(
    name: &str,
    td: &str,
    rollout: DeploymentRolloutState,
    counts: (i32, i32, i32),
) -> EcsService {
    let (desired, running, pending) = counts;
    EcsService::builder()
        .service_name(name)
        .status("ACTIVE")
        .desired_count(desired)
        .running_count(running)
        .pending_count(pending)
        .task_definition(td)
        .deployments(deployment(
            &format!("ecs-svc/{name}-new"),
            "PRIMARY",
            td,
            rollout,
        ))
        .build()
}

fn event(id: &str, secs_after_t0: i64, message: &str) -> ServiceEvent {
    ServiceEvent::builder()
        .id(id)
        .created_at(at(secs_after_t0))
        .message(message)
        .build()
}

pub(crate) fn describe(services: Vec<EcsService>) -> Rule {
    mock!(aws_sdk_ecs::Client::describe_services).then_output(move || {
        DescribeServicesOutput::builder()
            .set_services(Some(services.clone()))
            .build()
    })
}

/// DescribeServices while the api service rolls out TD6: one task wanted, none running yet.
pub(crate) fn api_rolling_out() -> Rule {
    describe(vec![service(
        "api",
        TD6,
        DeploymentRolloutState::InProgress,
        (1, 0, 1),
    )])
}

pub(crate) fn list_stopped(service: &'static str, arns: &[&str]) -> Rule {
    let arns: Vec<String> = arns.iter().map(|a| a.to_string()).collect();
    mock!(aws_sdk_ecs::Client::list_tasks)
        .match_requests(move |r| {
            r.service_name() == Some(service)
                && r.desired_status() == Some(&aws_sdk_ecs::types::DesiredStatus::Stopped)
        })
        .then_output(move || {
            ListTasksOutput::builder()
                .set_task_arns(Some(arns.clone()))
                .build()
        })
}

pub(crate) fn describe_tasks(tasks: Vec<Task>) -> Rule {
    mock!(aws_sdk_ecs::Client::describe_tasks).then_output(move || {
        DescribeTasksOutput::builder()
            .set_tasks(Some(tasks.clone()))
            .build()
    })
}

pub(crate) fn task_arn(id: &str) -> String {
    format!("arn:aws:ecs:eu-west-1:123456789012:task/timing/{id}")
}

/// A stopped task of the api service.
pub(crate) fn stopped_task(
    id: &str,
    td: &str,
    started_by: &str,
    reason: &str,
    code: TaskStopCode,
    exit: Option<i32>,
) -> Task {
    let container = Container::builder()
        .name("api")
        .last_status("STOPPED")
        .set_exit_code(exit);
    let container = match exit {
        None => container.reason(reason),
        Some(_) => container,
    };
    Task::builder()
        .task_arn(task_arn(id))
        .task_definition_arn(td)
        .last_status("STOPPED")
        .desired_status("STOPPED")
        .started_by(started_by)
        .stopped_reason(reason)
        .stop_code(code)
        .created_at(at(3))
        .stopped_at(at(20))
        .containers(container.build())
        .build()
}

/// A task of the new api deployment (TD6) whose essential container exited with `exit`.
pub(crate) fn crashed(id: &str, exit: i32) -> Task {
    stopped_task(
        id,
        TD6,
        "ecs-svc/api-new",
        "Essential container in task exited",
        TaskStopCode::EssentialContainerExited,
        Some(exit),
    )
}

fn log_lines(stream: &'static str, lines: &[&str]) -> Rule {
    let events: Vec<OutputLogEvent> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            OutputLogEvent::builder()
                .timestamp((T0 + 10) * 1000 + i as i64)
                .message(*l)
                .build()
        })
        .collect();
    mock!(aws_sdk_cloudwatchlogs::Client::get_log_events)
        .match_requests(move |r| {
            r.log_stream_name() == Some(stream)
                && r.log_group_name() == Some("/ecs/timing")
                && r.start_from_head() == Some(false)
        })
        .then_output(move || {
            GetLogEventsOutput::builder()
                .set_events(Some(events.clone()))
                .build()
        })
}

pub(crate) fn log_stream_missing(stream: &'static str) -> Rule {
    mock!(aws_sdk_cloudwatchlogs::Client::get_log_events)
        .match_requests(move |r| r.log_stream_name() == Some(stream))
        .then_error(|| {
            GetLogEventsError::ResourceNotFoundException(
                aws_sdk_cloudwatchlogs::types::error::ResourceNotFoundException::builder()
                    .message("The specified log stream does not exist.")
                    .build(),
            )
        })
}

pub(crate) fn ecs_client(rules: &[Rule]) -> aws_sdk_ecs::Client {
    mock_client!(aws_sdk_ecs, RuleMode::Sequential, rules)
}

pub(crate) fn logs_client(rules: &[Rule]) -> aws_sdk_cloudwatchlogs::Client {
    mock_client!(aws_sdk_cloudwatchlogs, RuleMode::Sequential, rules)
}

pub(crate) fn spec(services: &[&str], goal: Goal) -> WatchSpec {
    let mut spec = WatchSpec::new(
        "timing",
        services.iter().map(|s| s.to_string()).collect(),
        goal,
        "/ecs/timing",
    );
    spec.started_at = t0();
    spec.poll_interval = Duration::from_secs(5);
    spec.timeout = Duration::from_secs(300);
    spec
}

/// Keeps every event the watcher emits.
#[derive(Default)]
pub(crate) struct Recorder(Vec<WatchEvent>);

impl WatchSink for Recorder {
    fn event(&mut self, e: &WatchEvent) {
        self.0.push(e.clone());
    }
}

impl Recorder {
    fn progress_polls(&self) -> usize {
        self.0
            .iter()
            .filter(|e| matches!(e, WatchEvent::Progress { .. }))
            .count()
    }
    fn service_events(&self) -> Vec<String> {
        self.0
            .iter()
            .filter_map(|e| match e {
                WatchEvent::ServiceEvent(ev) => Some(ev.message.clone()),
                _ => None,
            })
            .collect()
    }
    fn finished(&self) -> Option<(bool, String)> {
        self.0.iter().rev().find_map(|e| match e {
            WatchEvent::Finished { ok, summary, .. } => Some((*ok, summary.clone())),
            _ => None,
        })
    }
}

use DeploymentRolloutState::{Completed, Failed, InProgress};

// ---------------------------------------------------------------------------------------------
// Watcher
// ---------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn stable_after_some_polls_with_events_deduplicated() {
    let old = event("e0", -60, "(service api) has reached a steady state.");
    let started = event("e1", 2, "(service api) has started 1 tasks: (task aaa).");
    let steady = event("e2", 30, "(service api) has reached a steady state.");
    let redis_steady = event("r1", 10, "(service redis) has reached a steady state.");
    let mut api1 = service("api", TD6, InProgress, (1, 0, 1));
    api1.events = Some(vec![started.clone(), old.clone()]);
    let mut api2 = service("api", TD6, InProgress, (1, 0, 1));
    api2.events = Some(vec![started.clone(), old.clone()]);
    let mut api3 = service("api", TD6, Completed, (1, 1, 0));
    api3.events = Some(vec![steady, started, old]);
    let redis1 = service("redis", REDIS_TD, InProgress, (1, 0, 1));
    let mut redis2 = service("redis", REDIS_TD, Completed, (1, 1, 0));
    redis2.events = Some(vec![redis_steady]);

    let old_task = {
        let mut t = stopped_task(
            "old",
            TD5,
            "ecs-svc/api-old",
            "Scaling activity initiated by (deployment ecs-svc/api-new)",
            TaskStopCode::ServiceSchedulerInitiated,
            Some(143),
        );
        t.stopped_at = Some(at(-300));
        t
    };
    let ecs = ecs_client(&[
        // poll 1: both in progress; redis then api stopped tasks: an old one, from before the wait.
        describe(vec![redis1, api1]),
        list_stopped("redis", &[]),
        list_stopped("api", &[&task_arn("old")]),
        describe_tasks(vec![old_task]),
        // poll 2: redis done; api still pending; the old task is not described again.
        describe(vec![redis2.clone(), api2]),
        list_stopped("api", &[&task_arn("old")]),
        // poll 3: both stable.
        describe(vec![redis2, api3]),
    ]);
    let logs = logs_client(&[]);
    let mut sink = Recorder::default();

    let report = watch_services(
        &ecs,
        &logs,
        &spec(&["redis", "api"], Goal::Stable),
        &mut sink,
    )
    .await
    .unwrap();

    assert_eq!(report.goal, Goal::Stable);
    assert_eq!(report.services.len(), 2);
    assert!(
        report
            .services
            .iter()
            .all(|s| s.running == 1 && s.pending == 0),
        "{report:?}"
    );
    assert_eq!(
        report.services[1].task_definition.as_deref(),
        Some("timing-api:6")
    );
    assert!(
        report.stopped_tasks.is_empty(),
        "the task stopped before the wait is not reported"
    );
    assert_eq!(sink.progress_polls(), 3);
    // Each event once, oldest first per poll; the one from before the wait never.
    assert_eq!(
        sink.service_events(),
        vec![
            "(service api) has started 1 tasks: (task aaa).",
            "(service redis) has reached a steady state.",
            "(service api) has reached a steady state.",
        ]
    );
    assert_eq!(report.events.len(), 3);
    assert_eq!(
        sink.finished(),
        Some((true, "redis, api stable".to_owned()))
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["goal"], "stable");
    assert_eq!(json["services"][1]["rollout_state"], "COMPLETED");
}

#[tokio::test(start_paused = true)]
async fn start_waits_for_running_tasks_even_when_the_rollout_is_already_completed() {
    // `start` only raises the desired count: the PRIMARY deployment stays COMPLETED.
    let ecs = ecs_client(&[
        describe(vec![service("api", TD6, Completed, (1, 0, 0))]),
        list_stopped("api", &[]),
        describe(vec![service("api", TD6, Completed, (1, 0, 1))]),
        list_stopped("api", &[]),
        describe(vec![service("api", TD6, Completed, (1, 1, 0))]),
    ]);
    let mut sink = Recorder::default();
    let report = watch_services(
        &ecs,
        &logs_client(&[]),
        &spec(&["api"], Goal::Stable),
        &mut sink,
    )
    .await
    .unwrap();
    assert_eq!(report.services[0].running, 1);
    assert_eq!(sink.progress_polls(), 3);
}

#[tokio::test(start_paused = true)]
async fn drained_when_no_task_runs_or_pends() {
    let ecs = ecs_client(&[
        describe(vec![
            service("api", TD6, Completed, (0, 1, 0)),
            service("redis", REDIS_TD, Completed, (0, 1, 0)),
        ]),
        describe(vec![
            service("api", TD6, Completed, (0, 0, 0)),
            service("redis", REDIS_TD, Completed, (0, 1, 0)),
        ]),
        // A service that is gone counts as drained.
        describe(vec![service("api", TD6, Completed, (0, 0, 0))]),
    ]);
    let mut sink = Recorder::default();
    let report = watch_services(
        &ecs,
        &logs_client(&[]),
        &spec(&["api", "redis"], Goal::Drained),
        &mut sink,
    )
    .await
    .unwrap();
    assert_eq!(report.goal, Goal::Drained);
    assert_eq!(report.services[1].status, "MISSING");
    assert_eq!(sink.progress_polls(), 3);
}

#[tokio::test(start_paused = true)]
async fn circuit_breaker_rollback_ends_with_rolled_back_reasons_and_logs() {
    let crash = crashed("t1", 1);
    let mut rolled_back = EcsService::builder()
        .service_name("api")
        .status("ACTIVE")
        .desired_count(1)
        .running_count(1)
        .pending_count(0)
        .deployments(deployment(
            "ecs-svc/api-rollback",
            "PRIMARY",
            TD5,
            InProgress,
        ))
        .deployments(
            Deployment::builder()
                .id("ecs-svc/api-new")
                .status("ACTIVE")
                .task_definition(TD6)
                .rollout_state(Failed)
                .rollout_state_reason("ECS deployment circuit breaker: tasks failed to start.")
                .updated_at(at(40))
                .build(),
        )
        .build();
    rolled_back.events = Some(vec![event(
        "e9",
        40,
        "(service api) (deployment ecs-svc/api-new) deployment failed: tasks failed to start.",
    )]);
    let ecs = ecs_client(&[
        api_rolling_out(),
        list_stopped("api", &[&task_arn("t1")]),
        describe_tasks(vec![crash]),
        describe(vec![rolled_back]),
    ]);
    let logs = logs_client(&[log_lines(
        "api/api/t1",
        &["starting", "error: REDIS_URL unreachable"],
    )]);
    let mut sink = Recorder::default();

    let err = watch_services(&ecs, &logs, &spec(&["api"], Goal::Stable), &mut sink)
        .await
        .unwrap_err();

    assert_eq!(err.exit_code(), 4);
    let WatchError::RolledBack {
        service,
        reason,
        stopped_tasks,
        ..
    } = &err
    else {
        panic!("expected RolledBack, got {err:?}");
    };
    assert_eq!(service, "api");
    assert!(
        reason.contains("circuit breaker: tasks failed to start"),
        "{reason}"
    );
    assert_eq!(stopped_tasks.len(), 1);
    let t = &stopped_tasks[0];
    assert_eq!(
        (t.task_id.as_str(), t.task_definition.as_str()),
        ("t1", "timing-api:6")
    );
    assert_eq!(t.containers[0].exit_code, Some(1));
    assert_eq!(
        t.containers[0].log_lines,
        vec!["starting", "error: REDIS_URL unreachable"]
    );
    assert!(sink.service_events()[0].contains("deployment failed"));
    assert_eq!(sink.finished().map(|f| f.0), Some(false));
    let json = err.to_json();
    assert_eq!(json["kind"], "rolled_back");
    assert_eq!(
        json["stopped_tasks"][0]["containers"][0]["log_lines"][1],
        "error: REDIS_URL unreachable"
    );
}

#[tokio::test(start_paused = true)]
async fn primary_back_on_previous_task_definition_is_a_rollback() {
    let mut back = service("api", TD5, Completed, (1, 1, 0));
    back.deployments = Some(vec![deployment(
        "ecs-svc/api-rollback",
        "PRIMARY",
        TD5,
        Completed,
    )]);
    let ecs = ecs_client(&[
        api_rolling_out(),
        list_stopped("api", &[]),
        describe(vec![back]),
    ]);
    let err = watch_services(
        &ecs,
        &logs_client(&[]),
        &spec(&["api"], Goal::Stable),
        &mut Recorder::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, WatchError::RolledBack { reason, .. } if reason.contains("previous task definition timing-api:5")),
        "{err:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn cannot_pull_image_fails_fast_with_reason_and_missing_log_streams() {
    let pull = "CannotPullContainerError: pull image manifest has been retried 5 time(s): failed to resolve ref 123456789012.dkr.ecr.eu-west-1.amazonaws.com/timing/api:nope: not found";
    let failed = |id: &str| {
        stopped_task(
            id,
            TD6,
            "ecs-svc/api-new",
            pull,
            TaskStopCode::TaskFailedToStart,
            None,
        )
    };
    let ecs = ecs_client(&[
        api_rolling_out(),
        list_stopped("api", &[&task_arn("p1"), &task_arn("p2")]),
        describe_tasks(vec![failed("p1"), failed("p2")]),
        api_rolling_out(),
        list_stopped("api", &[&task_arn("p1"), &task_arn("p2"), &task_arn("p3")]),
        describe_tasks(vec![failed("p3")]),
    ]);
    // A task that never started has no log stream.
    let logs = logs_client(&[
        log_stream_missing("api/api/p1"),
        log_stream_missing("api/api/p2"),
        log_stream_missing("api/api/p3"),
    ]);
    let mut sink = Recorder::default();

    let err = watch_services(&ecs, &logs, &spec(&["api"], Goal::Stable), &mut sink)
        .await
        .unwrap_err();

    assert_eq!(err.exit_code(), 4);
    let WatchError::TasksFailing {
        service,
        stopped_tasks,
        ..
    } = &err
    else {
        panic!("expected TasksFailing, got {err:?}");
    };
    assert_eq!(service, "api");
    assert_eq!(
        stopped_tasks
            .iter()
            .map(|t| t.task_id.as_str())
            .collect::<Vec<_>>(),
        ["p1", "p2", "p3"]
    );
    let t = &stopped_tasks[2];
    assert_eq!(t.stop_code.as_deref(), Some("TaskFailedToStart"));
    assert!(
        t.stopped_reason
            .as_deref()
            .is_some_and(|r| r.starts_with("CannotPullContainerError"))
    );
    assert!(
        t.containers[0]
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("not found"))
    );
    assert!(t.containers[0].log_lines.is_empty());
    assert!(
        t.containers[0]
            .log_note
            .as_deref()
            .is_some_and(|n| n.contains("no log stream `api/api/p3`")),
        "{t:?}"
    );
    assert!(
        err.to_string().contains("CannotPullContainerError"),
        "{err}"
    );
    // Two polls, not a wait for the circuit breaker.
    assert_eq!(sink.progress_polls(), 2);
    assert_eq!(
        sink.0
            .iter()
            .filter(|e| matches!(e, WatchEvent::TaskStopped(_)))
            .count(),
        3
    );
}

#[tokio::test(start_paused = true)]
async fn crash_looping_container_reports_exit_code_and_last_log_lines() {
    // A scale-in stop of the previous deployment is not a failure of ours.
    let scale_in = stopped_task(
        "old",
        TD5,
        "ecs-svc/api-old",
        "Scaling activity initiated by (deployment ecs-svc/api-new)",
        TaskStopCode::ServiceSchedulerInitiated,
        Some(143),
    );
    let ecs = ecs_client(&[
        api_rolling_out(),
        list_stopped("api", &[&task_arn("old"), &task_arn("c1")]),
        describe_tasks(vec![scale_in, crashed("c1", 101)]),
        api_rolling_out(),
        list_stopped("api", &[&task_arn("old"), &task_arn("c1"), &task_arn("c2")]),
        describe_tasks(vec![crashed("c2", 101)]),
    ]);
    let logs = logs_client(&[
        log_lines(
            "api/api/c1",
            &[
                "thread 'main' panicked at src/main.rs:10:5:",
                "REDIS_URL: invalid URL",
            ],
        ),
        log_lines(
            "api/api/c2",
            &[
                "thread 'main' panicked at src/main.rs:10:5:",
                "REDIS_URL: invalid URL",
            ],
        ),
    ]);
    let mut spec = spec(&["api"], Goal::Stable);
    spec.failed_tasks_limit = 2;

    let err = watch_services(&ecs, &logs, &spec, &mut Recorder::default())
        .await
        .unwrap_err();

    let WatchError::TasksFailing { stopped_tasks, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(stopped_tasks.len(), 2);
    for t in stopped_tasks {
        assert_eq!(t.containers[0].exit_code, Some(101));
        assert_eq!(
            t.containers[0].log_lines.last().map(String::as_str),
            Some("REDIS_URL: invalid URL")
        );
    }
    let json = err.to_json();
    assert_eq!(json["kind"], "tasks_failing");
    assert_eq!(json["exit_code"], 4);
    assert_eq!(json["stopped_tasks"][1]["containers"][0]["exit_code"], 101);
}

#[tokio::test(start_paused = true)]
async fn times_out_with_the_last_state_and_exit_code_3() {
    let mut spec = spec(&["api"], Goal::Stable);
    spec.timeout = Duration::from_secs(60);
    spec.poll_interval = Duration::from_secs(10);
    // Polls at 0, 10, ..., 60 s: seven, then the deadline. More answers than needed are fine.
    let mut rules = Vec::new();
    for _ in 0..10 {
        rules.push(api_rolling_out());
        rules.push(list_stopped("api", &[]));
    }
    let ecs = ecs_client(&rules);
    let mut sink = Recorder::default();

    let err = watch_services(&ecs, &logs_client(&[]), &spec, &mut sink)
        .await
        .unwrap_err();

    assert_eq!(err.exit_code(), 3);
    let WatchError::TimedOut {
        goal,
        services_state,
        timeout,
        ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(*goal, Goal::Stable);
    assert_eq!(*timeout, Duration::from_secs(60));
    assert_eq!(
        (services_state[0].running, services_state[0].pending),
        (0, 1)
    );
    assert!(err.to_string().contains("limit 1m"), "{err}");
    let json = err.to_json();
    assert_eq!(json["kind"], "timed_out");
    assert_eq!(json["services"][0]["rollout_state"], "IN_PROGRESS");
    assert!(sink.progress_polls() >= 2);
}

#[tokio::test(start_paused = true)]
async fn a_missing_service_cannot_become_stable() {
    let ecs = ecs_client(&[describe(vec![])]);
    let err = watch_services(
        &ecs,
        &logs_client(&[]),
        &spec(&["api"], Goal::Stable),
        &mut Recorder::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, WatchError::ServiceMissing { .. }), "{err:?}");
    assert_eq!(err.exit_code(), 1);
}

fn keys(v: &serde_json::Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort_unstable();
    k
}

#[tokio::test(start_paused = true)]
async fn failed_wait_json_has_the_documented_fields() {
    // docs/ci.md documents these names; a change here is a change of the CLI's JSON schema.
    let ecs = ecs_client(&[
        api_rolling_out(),
        list_stopped("api", &[&task_arn("c1")]),
        describe_tasks(vec![crashed("c1", 1)]),
    ]);
    let logs = logs_client(&[log_lines("api/api/c1", &["boom"])]);
    let mut spec = spec(&["api"], Goal::Stable);
    spec.failed_tasks_limit = 1;
    let err = provisioner::error::Error::from(
        watch_services(&ecs, &logs, &spec, &mut Recorder::default())
            .await
            .unwrap_err(),
    );
    // The whole document a failed command prints matches docs/output.schema.json.
    crate::support::assert_matches_output_schema(&provisioner::error_json("up", "timing", &err));
    let json = err.to_json();
    assert_eq!(
        keys(&json),
        [
            "exit_code",
            "kind",
            "message",
            "service",
            "services",
            "stopped_tasks"
        ]
    );
    assert_eq!(
        keys(&json["services"][0]),
        [
            "deployments",
            "desired",
            "pending",
            "rollout_reason",
            "rollout_state",
            "running",
            "service",
            "status",
            "task_definition"
        ]
    );
    assert_eq!(
        keys(&json["stopped_tasks"][0]),
        [
            "containers",
            "failed",
            "service",
            "stop_code",
            "stopped_at",
            "stopped_reason",
            "task_definition",
            "task_id"
        ]
    );
    assert_eq!(
        keys(&json["stopped_tasks"][0]["containers"][0]),
        [
            "exit_code",
            "log_lines",
            "log_note",
            "log_stream",
            "name",
            "reason"
        ]
    );
    assert_eq!(
        json["stopped_tasks"][0]["stopped_at"],
        "2023-11-14T22:13:40.000Z"
    );
}

#[tokio::test]
async fn status_helpers_read_states_events_and_recent_stopped_tasks() {
    let mut api = service("api", TD6, Completed, (1, 1, 0));
    api.events = Some(vec![event(
        "e2",
        30,
        "(service api) has reached a steady state.",
    )]);
    let old = {
        let mut t = stopped_task(
            "old",
            TD5,
            "ecs-svc/api-old",
            "Task stopped by user",
            TaskStopCode::UserInitiated,
            Some(0),
        );
        t.stopped_at = Some(at(-7200));
        t
    };
    let crash = crashed("c1", 2);
    let ecs = ecs_client(&[
        describe(vec![api]),
        list_stopped("api", &[&task_arn("old"), &task_arn("c1")]),
        describe_tasks(vec![old, crash]),
    ]);
    let logs = logs_client(&[log_lines("api/api/c1", &["panic: boom"])]);

    let views = service_views(&ecs, "timing", &["api".to_owned(), "redis".to_owned()])
        .await
        .unwrap();
    assert_eq!(views[0].state.running, 1);
    assert_eq!(
        views[0].events[0].message,
        "(service api) has reached a steady state."
    );
    assert_eq!(views[1].state.status, "MISSING");
    let json = serde_json::to_value(&views[0]).unwrap();
    assert_eq!(json["running"], 1, "state fields are flattened: {json}");

    let mut spec = WatchSpec::new("timing", vec!["api".into()], Goal::Stable, "/ecs/timing");
    spec.started_at = t0() - Duration::from_secs(3600);
    let stopped = recent_stopped_tasks(&ecs, &logs, &spec, "api")
        .await
        .unwrap();
    assert_eq!(
        stopped.len(),
        1,
        "the task stopped two hours ago is left out: {stopped:?}"
    );
    assert!(stopped[0].failed);
    assert_eq!(stopped[0].containers[0].exit_code, Some(2));
    assert_eq!(stopped[0].containers[0].log_lines, ["panic: boom"]);
}

// ---------------------------------------------------------------------------------------------
// Logs
// ---------------------------------------------------------------------------------------------

fn filtered(id: &str, ms_after_t0: i64, task: &str, message: &str) -> FilteredLogEvent {
    FilteredLogEvent::builder()
        .event_id(id)
        .timestamp(T0 * 1000 + ms_after_t0)
        .log_stream_name(format!("api/api/{task}"))
        .message(message)
        .build()
}

fn filter_page(events: Vec<FilteredLogEvent>, next: Option<&'static str>) -> Rule {
    mock!(aws_sdk_cloudwatchlogs::Client::filter_log_events)
        .match_requests(|r| {
            r.log_stream_name_prefix() == Some("api/") && r.log_group_name() == Some("/ecs/timing")
        })
        .then_output(move || {
            FilterLogEventsOutput::builder()
                .set_events(Some(events.clone()))
                .set_next_token(next.map(str::to_owned))
                .build()
        })
}

fn fixed_now() -> SystemTime {
    t0() + Duration::from_secs(60)
}

#[tokio::test(start_paused = true)]
async fn follow_prints_each_event_once_across_pages_and_polls() {
    let logs = logs_client(&[
        // poll 1: two pages
        filter_page(
            vec![
                filtered("1", 1000, "aaa", "booting"),
                filtered("2", 2000, "aaa", "listening"),
            ],
            Some("page2"),
        ),
        filter_page(vec![filtered("3", 3000, "bbb", "GET /ready 200")], None),
        // poll 2: the window overlaps what was printed
        filter_page(
            vec![
                filtered("2", 2000, "aaa", "listening"),
                filtered("3", 3000, "bbb", "GET /ready 200"),
                filtered("4", 3000, "bbb", "GET /results 200"),
            ],
            None,
        ),
        // poll 3: nothing new
        filter_page(vec![filtered("4", 3000, "bbb", "GET /results 200")], None),
    ]);
    let opts = LogsOptions {
        max_polls: Some(3),
        now: fixed_now,
        ..LogsOptions::default()
    };
    let mut out = Vec::new();
    fetch_logs(
        &logs,
        "/ecs/timing",
        Service::Api,
        Duration::from_secs(600),
        true,
        &mut out,
        &opts,
    )
    .await
    .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        [
            "2023-11-14T22:13:21.000Z aaa booting",
            "2023-11-14T22:13:22.000Z aaa listening",
            "2023-11-14T22:13:23.000Z bbb GET /ready 200",
            "2023-11-14T22:13:23.000Z bbb GET /results 200",
        ]
    );
}

#[tokio::test]
async fn logs_of_an_app_that_is_not_deployed_say_so() {
    let logs = logs_client(&[
        mock!(aws_sdk_cloudwatchlogs::Client::filter_log_events).then_error(|| {
            FilterLogEventsError::ResourceNotFoundException(
                aws_sdk_cloudwatchlogs::types::error::ResourceNotFoundException::builder()
                    .message("The specified log group does not exist.")
                    .build(),
            )
        }),
    ]);
    let mut out = Vec::new();
    let err = api_logs_of_the_last_ten_minutes(&logs, &mut out)
        .await
        .unwrap_err();
    assert!(matches!(err, LogsError::NotDeployed { .. }), "{err:?}");
    assert!(err.to_string().contains("not deployed"), "{err}");
    assert!(out.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Logs against a real moto server
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn fetch_logs_reads_a_real_log_group_from_moto() {
    let moto = crate::support::Moto::start().await;
    let logs = aws_sdk_cloudwatchlogs::Client::new(&moto.sdk_config().await);

    // Not deployed yet.
    let mut out = Vec::new();
    let err = api_logs_of_the_last_ten_minutes(&logs, &mut out)
        .await
        .unwrap_err();
    assert!(matches!(err, LogsError::NotDeployed { .. }), "{err:?}");

    logs.create_log_group()
        .log_group_name("/ecs/timing")
        .send()
        .await
        .unwrap();
    let now_ms = i64::try_from(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    for (stream, lines) in [
        ("api/api/task1", vec!["api started", "GET /ready 200"]),
        ("redis/redis/task2", vec!["Ready to accept connections tcp"]),
    ] {
        logs.create_log_stream()
            .log_group_name("/ecs/timing")
            .log_stream_name(stream)
            .send()
            .await
            .unwrap();
        let events = lines.iter().enumerate().map(|(i, m)| {
            aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                .timestamp(now_ms - 5_000 + i as i64)
                .message(*m)
                .build()
                .unwrap()
        });
        logs.put_log_events()
            .log_group_name("/ecs/timing")
            .log_stream_name(stream)
            .set_log_events(Some(events.collect()))
            .send()
            .await
            .unwrap();
    }

    let mut out = Vec::new();
    api_logs_of_the_last_ten_minutes(&logs, &mut out)
        .await
        .unwrap();
    out.flush().unwrap();
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].ends_with(" task1 api started"), "{text}");
    assert!(lines[1].ends_with(" task1 GET /ready 200"), "{text}");
    assert!(
        !text.contains("Ready to accept"),
        "redis lines are not api lines: {text}"
    );
    drop(moto);
}

/// The API's logs of the last ten minutes, read once with the default options.
async fn api_logs_of_the_last_ten_minutes(
    logs: &aws_sdk_cloudwatchlogs::Client,
    out: &mut Vec<u8>,
) -> Result<(), LogsError> {
    let last_ten_minutes = Duration::from_secs(600);
    fetch_logs(
        logs,
        "/ecs/timing",
        Service::Api,
        last_ten_minutes,
        false,
        out,
        &LogsOptions::default(),
    )
    .await
}
