//! `down`: removes everything `up` created for the app, in the order AWS requires, going on
//! past a failure so one stuck resource does not leave the rest running up a bill; every
//! failure is reported at the end. It finds everything by name and tag, so it works after a
//! partial `up`, after an interrupted `down`, and twice in a row.
//!
//! Order: services (scaled to 0, deleted, drained) → Cloud Map instances, service, namespace
//! → cluster → then, concurrently as they depend on nothing left: task-definition revisions,
//! security groups (cross-references first), log group, ECR repositories, IAM roles (policies
//! first).

use std::time::Duration;

use crate::commands::Report;
use crate::config::Templates;
use crate::error::{Error, Result};
use crate::plan::Deployment;
use crate::resources::{
    cluster, discovery, ecr, iam, log_group, network, services, task_definitions,
};

/// Runs `down`.
pub async fn down(d: &Deployment, templates: &Templates, limit: Duration) -> Result<Report> {
    let names = &d.names;
    let mut failures: Vec<String> = Vec::new();
    let note = |failures: &mut Vec<String>, step: &str, result: Result<()>| {
        if let Err(err) = result {
            tracing::warn!("{step}: {err}");
            failures.push(format!("{step}: {err}"));
        }
    };
    let services_gone =
        services::delete_services(d, &[&names.api_service, &names.redis_service], limit).await;
    let services_ok = services_gone.is_ok();
    note(&mut failures, "services", services_gone);
    // Cloud Map refuses to delete a service that still has instances; ECS deregisters them
    // as the tasks stop, which the drain above waited for.
    note(
        &mut failures,
        "service discovery",
        discovery::delete_discovery(d, limit).await,
    );
    if services_ok {
        note(&mut failures, "cluster", cluster::delete_cluster(d).await);
    } else {
        failures.push(
            "cluster: kept, because its services could not be removed; run `down` again".to_owned(),
        );
    }
    // What is left depends on nothing above or on each other: remove it concurrently.
    let api_family = templates
        .api
        .as_written
        .family
        .replace("${APP}", &names.app);
    let redis_family = templates
        .redis
        .as_written
        .family
        .replace("${APP}", &names.app);
    let (
        api_family,
        redis_family,
        groups,
        logs,
        repository,
        redis_repository,
        api_role,
        execution_role,
    ) = tokio::join!(
        task_definitions::delete_family(d, &api_family),
        task_definitions::delete_family(d, &redis_family),
        network::delete_security_groups(d, limit),
        log_group::delete_log_group(d),
        ecr::delete_repository(d, &names.repository),
        ecr::delete_repository(d, &names.redis_repository),
        // A role is deleted after its policies, inside delete_role.
        iam::delete_role(d, &names.api_task_role),
        iam::delete_role(d, &names.execution_role),
    );
    for (step, result) in [
        ("task definitions", api_family),
        ("task definitions", redis_family),
        ("security groups", groups),
        ("log group", logs),
        ("ECR repository", repository),
        ("ECR repository", redis_repository),
        ("IAM role", api_role),
        ("IAM role", execution_role),
    ] {
        note(&mut failures, step, result);
    }
    if !failures.is_empty() {
        return Err(Error::Incomplete { failures });
    }
    Ok(Report::new(
        "down",
        &names.app,
        d.region(),
        &d.account,
        false,
        d.changes(),
        d.clients.calls.summary(),
    ))
}
