//! A first deploy on a fresh account: new IAM roles take seconds to reach ECS, a new EFS
//! mount target's name a while to resolve, and ECS may still be creating its service-linked
//! role, so the first tasks can stop with `ResourceInitializationError` or "unable to assume
//! role" although nothing is wrong. When the run created those (`WatchSpec::settling`), such
//! stops are waited out; a crash loop is still a failed deployment (exit 4). Replayed with
//! aws-smithy-mocks (moto runs no tasks), on tokio's paused clock.

use std::time::Duration;

use aws_sdk_ecs::types::{DeploymentRolloutState, Task, TaskStopCode};
use provisioner::watch::{Goal, WatchError, watch_services};

use crate::watch::{
    Recorder, TD6, api_rolling_out, crashed, describe, describe_tasks, ecs_client, list_stopped,
    log_stream_missing, logs_client, service, spec, stopped_task, task_arn,
};

const NOT_ASSUMABLE: &str = "ResourceInitializationError: unable to pull secrets or registry auth: execution resource retrieval failed: unable to retrieve secret from asm: service call has been retried 1 time(s): failed to fetch secret: unable to assume role";

/// A task of the new deployment that could not start because the setup was not ready.
fn not_ready(id: &str) -> Task {
    stopped_task(
        id,
        TD6,
        "ecs-svc/api-new",
        NOT_ASSUMABLE,
        TaskStopCode::TaskFailedToStart,
        None,
    )
}

/// Polls at 0, 5, 10 s each see one more such stop; at 15 s the service is stable.
fn three_setup_stops_then_stable() -> Vec<aws_smithy_mocks::Rule> {
    vec![
        api_rolling_out(),
        list_stopped("api", &[&task_arn("s1")]),
        describe_tasks(vec![not_ready("s1")]),
        api_rolling_out(),
        list_stopped("api", &[&task_arn("s1"), &task_arn("s2")]),
        describe_tasks(vec![not_ready("s2")]),
        api_rolling_out(),
        list_stopped("api", &[&task_arn("s1"), &task_arn("s2"), &task_arn("s3")]),
        describe_tasks(vec![not_ready("s3")]),
        describe(vec![service(
            "api",
            TD6,
            DeploymentRolloutState::Completed,
            (1, 1, 0),
        )]),
    ]
}

#[tokio::test(start_paused = true)]
async fn stops_of_a_setup_still_propagating_are_waited_out() {
    let ecs = ecs_client(&three_setup_stops_then_stable());
    let mut spec = spec(&["api"], Goal::Stable);
    spec.failed_tasks_limit = 2;
    spec.settling = Duration::from_secs(60);

    let report = watch_services(&ecs, &logs_client(&[]), &spec, &mut Recorder::default())
        .await
        .unwrap();

    assert_eq!(report.services[0].running, 1);
    // They are still reported, as what happened.
    assert_eq!(report.stopped_tasks.len(), 3);
}

#[tokio::test(start_paused = true)]
async fn without_settling_the_same_stops_fail_the_deployment() {
    let ecs = ecs_client(&three_setup_stops_then_stable());
    let logs = logs_client(&[
        log_stream_missing("api/api/s1"),
        log_stream_missing("api/api/s2"),
    ]);
    let mut spec = spec(&["api"], Goal::Stable);
    spec.failed_tasks_limit = 2;

    let err = watch_services(&ecs, &logs, &spec, &mut Recorder::default())
        .await
        .unwrap_err();

    assert!(matches!(err, WatchError::TasksFailing { .. }), "{err:?}");
    assert_eq!(err.exit_code(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_crash_loop_fails_the_deployment_even_while_settling() {
    let ecs = ecs_client(&[
        api_rolling_out(),
        list_stopped("api", &[&task_arn("c1")]),
        describe_tasks(vec![crashed("c1", 101)]),
        api_rolling_out(),
        list_stopped("api", &[&task_arn("c1"), &task_arn("c2")]),
        describe_tasks(vec![crashed("c2", 101)]),
    ]);
    let logs = logs_client(&[
        log_stream_missing("api/api/c1"),
        log_stream_missing("api/api/c2"),
    ]);
    let mut spec = spec(&["api"], Goal::Stable);
    spec.failed_tasks_limit = 2;
    spec.settling = Duration::from_secs(300);

    let err = watch_services(&ecs, &logs, &spec, &mut Recorder::default())
        .await
        .unwrap_err();

    let WatchError::TasksFailing { stopped_tasks, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(stopped_tasks[1].containers[0].exit_code, Some(101));
    assert_eq!(err.exit_code(), 4);
}

#[tokio::test(start_paused = true)]
async fn setup_stops_count_once_the_settling_time_is_over() {
    let mut rules = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for i in 1..=4 {
        let id = format!("s{i}");
        seen.push(task_arn(&id));
        let arns: Vec<&str> = seen.iter().map(String::as_str).collect();
        rules.push(api_rolling_out());
        rules.push(list_stopped("api", &arns));
        rules.push(describe_tasks(vec![not_ready(&id)]));
    }
    let ecs = ecs_client(&rules);
    let logs = logs_client(&[
        log_stream_missing("api/api/s3"),
        log_stream_missing("api/api/s4"),
    ]);
    let mut spec = spec(&["api"], Goal::Stable);
    spec.failed_tasks_limit = 2;
    // Polls at 0 and 5 s are within it; those at 10 and 15 s are not.
    spec.settling = Duration::from_secs(7);

    let err = watch_services(&ecs, &logs, &spec, &mut Recorder::default())
        .await
        .unwrap_err();

    let WatchError::TasksFailing { stopped_tasks, .. } = &err else {
        panic!("{err:?}")
    };
    let ids: Vec<&str> = stopped_tasks.iter().map(|t| t.task_id.as_str()).collect();
    assert_eq!(ids, ["s3", "s4"]);
}
