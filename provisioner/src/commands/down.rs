//! `down`: removes everything `up` created for the app, in the order AWS requires, going on
//! past a failure so one stuck resource does not leave the rest running up a bill; every
//! failure is reported at the end. It finds everything by name and tag, so it works after a
//! partial `up`, after an interrupted `down`, and twice in a row.
//!
//! Order: services (scaled to 0, deleted, drained) and, at the same time, the HTTP API's
//! custom domain (mapping first) and the API (its stage, route and integration go with it),
//! then the VPC link (waiting until its network interfaces are gone) → Cloud Map instances, services, namespace
//! → cluster → task-definition revisions and, at the same time, EFS mount targets and their
//! security group (the file system too with `--delete-data`) → then, concurrently as they
//! depend on nothing left: security groups (cross-references first), log group, ECR
//! repositories, SSM parameters, IAM roles (policies first).
//!
//! Nothing that is not the app's (see [`crate::resources::ownership`]) is deleted: a resource
//! of one of the app's names without its tags is a failure of its step. Redis's storage (mount
//! targets, access point, file system) is never removed while the services could not be: a
//! Redis task may still run on it.

use std::time::Duration;

use crate::commands::Report;
use crate::config::Templates;
use crate::error::{Error, Result};
use crate::plan::Deployment;
use crate::resources::{
    cluster, discovery, ecr, efs, gateway, iam, log_group, network, secrets, services,
    task_definitions, vpc_link,
};

/// Runs `down`. Redis's data (the EFS file system) is kept unless `delete_data`.
pub async fn down(
    d: &Deployment,
    templates: &Templates,
    limit: Duration,
    delete_data: bool,
) -> Result<Report> {
    let names = &d.names;
    let mut failures: Vec<String> = Vec::new();
    let note = |failures: &mut Vec<String>, step: &str, result: Result<()>| {
        if let Err(err) = result {
            tracing::warn!("{step}: {err}");
            failures.push(format!("{step}: {err}"));
        }
    };
    let service_names = [names.api_service.as_str(), names.redis_service.as_str()];
    let (services_gone, gateway_gone) =
        tokio::join!(services::delete_services(d, &service_names, limit), async {
            // The link goes even when the API could not (say, a same-named API that is not
            // the app's): its group cannot be deleted while it exists.
            let api = gateway::delete(d).await;
            let link = vpc_link::delete(d, limit).await;
            api.and(link)
        },);
    let services_ok = services_gone.is_ok();
    note(&mut failures, "services", services_gone);
    note(&mut failures, "HTTP API and VPC link", gateway_gone);
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
    let api_family = templates.api.family(&names.app);
    let redis_family = templates.redis.family(&names.app);
    // Redis's storage goes only once no Redis task can be running on it: while its service
    // could not be removed (or is still draining), a task may still write to the mount
    // targets and the access point. They stay, and a later `down` removes them.
    // The mount targets' security group references `redis`: it goes before the groups.
    let (api_family, redis_family, data) = tokio::join!(
        task_definitions::delete_family(d, &api_family),
        task_definitions::delete_family(d, &redis_family),
        async {
            if services_ok {
                efs::delete_data(d, delete_data, limit).await
            } else {
                Err(Error::StorageInUse {
                    app: names.app.clone(),
                })
            }
        },
    );
    note(&mut failures, "task definitions", api_family);
    note(&mut failures, "task definitions", redis_family);
    let data_note = match data {
        Ok(kept) => kept,
        Err(err) => {
            note(&mut failures, "EFS data", Err(err));
            None
        }
    };
    // What is left depends on nothing above or on each other: remove it concurrently.
    let (
        groups,
        logs,
        repository,
        redis_repository,
        parameters,
        api_role,
        redis_role,
        execution_role,
    ) = tokio::join!(
        network::delete_security_groups(d, limit),
        log_group::delete_log_group(d),
        ecr::delete_repository(d, &names.repository),
        ecr::delete_repository(d, &names.redis_repository),
        secrets::delete_parameters(d),
        // A role is deleted after its policies, inside delete_role.
        iam::delete_role(d, &names.api_task_role),
        iam::delete_role(d, &names.redis_task_role),
        iam::delete_role(d, &names.execution_role),
    );
    for (step, result) in [
        ("security groups", groups),
        ("log group", logs),
        ("ECR repository", repository),
        ("ECR repository", redis_repository),
        ("SSM parameters", parameters),
        ("IAM role", api_role),
        ("IAM role", redis_role),
        ("IAM role", execution_role),
    ] {
        note(&mut failures, step, result);
    }
    if !failures.is_empty() {
        return Err(Error::Incomplete { failures });
    }
    let mut report = Report::new(d, "down");
    report.notes.extend(data_note);
    report.notes.push(format!(
        "the permissions boundary policy {} is kept: it is the account's limit on the app's roles, which the deploying role may not change (`aws iam delete-policy --policy-arn {}` removes it)",
        names.task_role_boundary,
        crate::resources::iam::boundary_arn(d)
    ));
    Ok(report)
}
