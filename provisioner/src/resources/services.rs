//! The ECS services `redis` and `api` on Fargate: created or updated to the wanted task
//! definition, network and Cloud Map registry; scaled; deleted and drained; and the IDs of
//! the tasks that run.
//!
//! A service that is stopped (desired count 0, see `provisioner stop`) stays stopped through
//! an `up`: a deploy must never silently restart billing.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, DeploymentCircuitBreaker, DeploymentConfiguration,
    DesiredStatus, LaunchType, NetworkConfiguration, PropagateTags, Service, ServiceField,
    ServiceRegistry, Tag,
};

use crate::error::{Error, Result, absent_when};
use crate::plan::{Action, Deployment, KNOWN_AFTER_APPLY};
use crate::resources::network::Network;
use crate::resources::{ownership, poll_until, retry_bounded};

/// Tag on the API's ECS service holding its number of tasks when running (`--api-count`), so
/// `start` after a `stop` (desired count 0) and `status` know it without a state file.
pub const TAG_API_COUNT: &str = "api-count";

/// How long ECS may take to accept a newly created IAM role ("unable to assume role").
const ROLE_PROPAGATION_LIMIT: Duration = Duration::from_secs(90);
/// How long a deleted service may take to drain before one of its name can be created again.
const DRAIN_LIMIT: Duration = Duration::from_secs(600);

/// What one ECS service should be.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    /// Service name in the cluster.
    pub name: String,
    /// Task definition ARN to run.
    pub task_definition: String,
    /// Tasks to run when started.
    pub desired_count: i32,
    /// Subnets for the tasks.
    pub subnets: Vec<String>,
    /// Security groups of the tasks.
    pub security_groups: Vec<String>,
    /// Cloud Map service to register tasks in.
    pub registry: Option<Registry>,
    /// The number of tasks when running, kept in the [`TAG_API_COUNT`] tag (the API's service).
    pub remembered_count: Option<i32>,
    /// Deployment limits: Redis has no shared storage, so it must never run twice.
    pub minimum_healthy_percent: i32,
    /// Deployment limits.
    pub maximum_percent: i32,
}

/// A Cloud Map service the tasks are registered in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    /// The Cloud Map service's ARN.
    pub arn: String,
    /// Container and port to register: SRV records carry the port, so ECS needs them.
    pub container: Option<(String, i32)>,
}

impl Registry {
    fn to_ecs(&self) -> ServiceRegistry {
        let builder = ServiceRegistry::builder().registry_arn(&self.arn);
        match &self.container {
            Some((name, port)) => builder.container_name(name).container_port(*port),
            None => builder,
        }
        .build()
    }

    fn of_live(live: &ServiceRegistry) -> Option<Self> {
        Some(Self {
            arn: live.registry_arn()?.to_owned(),
            container: live
                .container_name()
                .map(|name| (name.to_owned(), live.container_port().unwrap_or_default())),
        })
    }
}

/// The number of tasks the service runs when started, from its [`TAG_API_COUNT`] tag.
pub fn remembered_count(service: &Service) -> Option<i32> {
    service
        .tags()
        .iter()
        .find(|t| t.key() == Some(TAG_API_COUNT))
        .and_then(|t| t.value())
        .and_then(|v| v.parse().ok())
}

/// Records `count` in the service's [`TAG_API_COUNT`] tag.
pub async fn remember_count(d: &Deployment, service: &Service, count: i32) -> Result<()> {
    let name = service.service_name().unwrap_or_default();
    let arn = service
        .service_arn()
        .ok_or_else(|| Error::missing(format!("ECS service {name}"), "serviceArn"))?;
    d.clients
        .ecs
        .tag_resource()
        .resource_arn(arn)
        .tags(
            Tag::builder()
                .key(TAG_API_COUNT)
                .value(count.to_string())
                .build(),
        )
        .send()
        .await
        .map_err(|e| Error::aws("TagResource", format!("ECS service {name}"), e))?;
    Ok(())
}

/// The live services of the app that exist (ACTIVE or DRAINING), by name, with their tags.
pub async fn describe(d: &Deployment, names: &[&str]) -> Result<BTreeMap<String, Service>> {
    let cluster = &d.names.cluster;
    let out = d
        .clients
        .ecs
        .describe_services()
        .cluster(cluster)
        .set_services(Some(names.iter().map(|n| (*n).to_owned()).collect()))
        .include(ServiceField::Tags)
        .send()
        .await;
    let Some(out) = absent_when(
        out,
        |e| e.is_cluster_not_found_exception(),
        "DescribeServices",
        format!("services of cluster {cluster}"),
    )?
    else {
        return Ok(BTreeMap::new());
    };
    Ok(out
        .services()
        .iter()
        .filter(|s| s.status() != Some("INACTIVE"))
        .filter_map(|s| Some((s.service_name()?.to_owned(), s.clone())))
        .collect())
}

/// Refuses to move running services to other subnets: the EFS mount targets of the zones
/// left would be removed under a Redis task still running there. Moving is `down` (the data
/// is kept) then `up`.
pub fn check_network(live: &BTreeMap<String, Service>, network: &Network) -> Result<()> {
    let wanted: BTreeSet<&str> = network.subnet_ids.iter().map(String::as_str).collect();
    for (name, service) in live.iter().filter(|(_, s)| s.status() == Some("ACTIVE")) {
        let Some(vpc) = service
            .network_configuration()
            .and_then(|n| n.awsvpc_configuration())
        else {
            continue;
        };
        let running: BTreeSet<&str> = vpc.subnets().iter().map(String::as_str).collect();
        if running != wanted {
            let list = |s: &BTreeSet<&str>| s.iter().copied().collect::<Vec<_>>().join(",");
            return Err(Error::InvalidArgument {
                flag: "--subnets",
                message: format!(
                    "service {name} runs in subnets {}, this run would move it to {}: the mount targets of Redis's data are per zone and serve the running task. Pass --subnets {} to keep them, or run `down` (the race data is kept) and then `up` with the new subnets",
                    list(&running),
                    list(&wanted),
                    list(&running)
                ),
            });
        }
    }
    Ok(())
}

fn network(spec: &ServiceSpec) -> Result<NetworkConfiguration> {
    Ok(NetworkConfiguration::builder()
        .awsvpc_configuration(
            AwsVpcConfiguration::builder()
                .set_subnets(Some(spec.subnets.clone()))
                .set_security_groups(Some(spec.security_groups.clone()))
                // A public IP so the task can pull images and read its secrets without a NAT
                // gateway; the security groups decide who may connect (the VPC link only,
                // unless --allow-cidr).
                .assign_public_ip(AssignPublicIp::Enabled)
                .build()
                .map_err(Error::request(format!("ECS service {}", spec.name)))?,
        )
        .build())
}

fn deployment_configuration(spec: &ServiceSpec) -> DeploymentConfiguration {
    DeploymentConfiguration::builder()
        .deployment_circuit_breaker(
            DeploymentCircuitBreaker::builder()
                .enable(true)
                .rollback(true)
                .build(),
        )
        .minimum_healthy_percent(spec.minimum_healthy_percent)
        .maximum_percent(spec.maximum_percent)
        .build()
}

/// What differs between the live service and the spec (empty: nothing).
fn differences(live: &Service, spec: &ServiceSpec, desired: i32) -> Vec<String> {
    let mut out = Vec::new();
    if live.task_definition() != Some(spec.task_definition.as_str()) {
        out.push(format!(
            "task definition → {}",
            short_arn(&spec.task_definition)
        ));
    }
    if live.desired_count() != desired {
        out.push(format!(
            "desired count {} → {desired}",
            live.desired_count()
        ));
    }
    let vpc = live
        .network_configuration()
        .and_then(|n| n.awsvpc_configuration());
    let set = |items: &[String]| items.iter().cloned().collect::<BTreeSet<_>>();
    if vpc.map(|v| set(v.subnets())) != Some(set(&spec.subnets)) {
        out.push("subnets".into());
    }
    if vpc.map(|v| set(v.security_groups())) != Some(set(&spec.security_groups)) {
        out.push("security groups".into());
    }
    let registries: Vec<Registry> = live
        .service_registries()
        .iter()
        .filter_map(Registry::of_live)
        .collect();
    if registries != spec.registry.iter().cloned().collect::<Vec<_>>() {
        out.push("service registry".into());
    }
    if let Some(count) = spec.remembered_count
        && remembered_count(live) != Some(count)
    {
        out.push(format!("{TAG_API_COUNT} tag → {count}"));
    }
    // Some ECS implementations omit the deployment configuration; only a present one that
    // differs is a difference.
    if let Some(config) = live.deployment_configuration() {
        let breaker = config.deployment_circuit_breaker();
        if breaker.is_some_and(|b| !(b.enable() && b.rollback())) {
            out.push("circuit breaker".into());
        }
    }
    out
}

/// `arn:…:task-definition/timing-api:3` → `timing-api:3`.
pub fn short_arn(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// Creates or updates one service. `start` lifts a stopped service to its desired count.
pub async fn ensure_service(
    d: &Deployment,
    live: Option<&Service>,
    spec: &ServiceSpec,
    start: bool,
) -> Result<()> {
    let cluster = &d.names.cluster;
    let resource = format!("ECS service {}", spec.name);
    let ecs = &d.clients.ecs;
    match live {
        Some(live) if live.status() == Some("ACTIVE") => {
            let stopped = live.desired_count() == 0;
            let desired = if stopped && !start {
                0
            } else {
                spec.desired_count
            };
            let diff = differences(live, spec, desired);
            let mut detail = diff.join(", ");
            if stopped && !start {
                detail.push_str(if detail.is_empty() {
                    "stopped; kept stopped (pass --start)"
                } else {
                    "; kept stopped (pass --start)"
                });
            }
            let action = if diff.is_empty() {
                Action::Unchanged
            } else {
                Action::Update
            };
            if !d.record(
                "ecs-service",
                &spec.name,
                action,
                (!detail.is_empty()).then_some(detail),
            ) {
                return Ok(());
            }
            let mut request = ecs
                .update_service()
                .cluster(cluster)
                .service(&spec.name)
                .task_definition(&spec.task_definition)
                .desired_count(desired)
                .network_configuration(network(spec)?)
                .deployment_configuration(deployment_configuration(spec));
            request = match &spec.registry {
                Some(registry) => request.service_registries(registry.to_ecs()),
                None => request.set_service_registries(Some(Vec::new())),
            };
            request
                .send()
                .await
                .map_err(|e| Error::aws("UpdateService", resource, e))?;
            if let Some(count) = spec.remembered_count
                && remembered_count(live) != Some(count)
            {
                remember_count(d, live, count).await?;
            }
            Ok(())
        }
        other => {
            // Deleted a moment ago and still draining: a new one can only be created once the
            // old one is gone.
            if other.is_some() && !d.dry_run {
                wait_until_gone(d, &[spec.name.as_str()], DRAIN_LIMIT).await?;
            }
            if !d.record(
                "ecs-service",
                &spec.name,
                Action::Create,
                Some(format!("{} task(s)", spec.desired_count)),
            ) {
                return Ok(());
            }
            if spec.task_definition == KNOWN_AFTER_APPLY {
                return Err(Error::missing(resource, "task definition ARN"));
            }
            let tag = |k, v| Tag::builder().key(k).value(v).build();
            let mut tags = ownership::app_tags(&d.names, tag);
            tags.extend(
                spec.remembered_count
                    .map(|n| tag(TAG_API_COUNT, n.to_string())),
            );
            retry_bounded(
                &format!("creating {resource}"),
                d.limit(ROLE_PROPAGATION_LIMIT),
                is_role_not_ready,
                || async {
                    let mut request = ecs
                        .create_service()
                        .cluster(cluster)
                        .service_name(&spec.name)
                        .task_definition(&spec.task_definition)
                        .desired_count(spec.desired_count)
                        .launch_type(LaunchType::Fargate)
                        .network_configuration(network(spec)?)
                        .deployment_configuration(deployment_configuration(spec))
                        .propagate_tags(PropagateTags::Service)
                        .enable_ecs_managed_tags(true)
                        .set_tags(Some(tags.clone()));
                    if let Some(registry) = &spec.registry {
                        request = request.service_registries(registry.to_ecs());
                    }
                    request
                        .send()
                        .await
                        .map_err(|e| Error::aws("CreateService", resource.clone(), e))?;
                    Ok(())
                },
            )
            .await
        }
    }
}

/// ECS checks that it can assume the task's roles; right after they are created IAM may
/// not have propagated them yet.
fn is_role_not_ready(err: &Error) -> bool {
    matches!(err, Error::Aws { code: Some(code), message, .. }
        if code == "InvalidParameterException" && message.to_lowercase().contains("assume"))
}

/// Sets a service's desired count.
pub async fn scale(d: &Deployment, name: &str, count: i32) -> Result<()> {
    d.clients
        .ecs
        .update_service()
        .cluster(&d.names.cluster)
        .service(name)
        .desired_count(count)
        .send()
        .await
        .map_err(|e| Error::aws("UpdateService", format!("ECS service {name}"), e))?;
    Ok(())
}

/// Replaces a service's tasks: with tasks of `task_definition` when given (a revision that
/// adds or removes a secret), else with new ones of the same definition (ECS reads a secret's
/// value only when a task starts, so a changed value needs new tasks).
pub async fn restart(d: &Deployment, name: &str, task_definition: Option<&str>) -> Result<()> {
    let detail = match task_definition {
        Some(arn) => format!("new deployment of {}", short_arn(arn)),
        None => "new deployment".to_owned(),
    };
    if !d.record("ecs-service", name, Action::Update, Some(detail)) {
        return Ok(());
    }
    d.clients
        .ecs
        .update_service()
        .cluster(&d.names.cluster)
        .service(name)
        .set_task_definition(task_definition.map(str::to_owned))
        .force_new_deployment(true)
        .send()
        .await
        .map_err(|e| Error::aws("UpdateService", format!("ECS service {name}"), e))?;
    Ok(())
}

/// Waits until none of the services exists any more (INACTIVE or missing), at most `limit`
/// and not past the command's `--timeout`.
pub async fn wait_until_gone(d: &Deployment, names: &[&str], limit: Duration) -> Result<()> {
    let what = format!("services {} to drain and be deleted", names.join(", "));
    poll_until(&what, d.limit(limit), Duration::from_secs(5), || async {
        Ok(describe(d, names).await?.is_empty().then_some(()))
    })
    .await
}

/// Scales each service to 0 and deletes it, in the order given, then waits until they are
/// drained.
pub async fn delete_services(d: &Deployment, names: &[&str], limit: Duration) -> Result<()> {
    let live = describe(d, names).await?;
    let ecs = &d.clients.ecs;
    for name in names {
        let Some(service) = live.get(*name) else {
            d.record("ecs-service", *name, Action::Absent, None);
            continue;
        };
        d.record(
            "ecs-service",
            *name,
            Action::Delete,
            Some(format!("{} running", service.running_count())),
        );
        if service.status() == Some("ACTIVE") && service.desired_count() > 0 {
            scale(d, name, 0).await?;
        }
        let out = ecs
            .delete_service()
            .cluster(&d.names.cluster)
            .service(*name)
            .force(true)
            .send()
            .await;
        absent_when(
            out,
            |e| e.is_service_not_found_exception(),
            "DeleteService",
            format!("ECS service {name}"),
        )?;
    }
    if !live.is_empty() {
        wait_until_gone(d, names, limit).await?;
    }
    Ok(())
}

/// The IDs of the service's tasks ECS reports RUNNING (for ECS-registered Cloud Map
/// instances, the instance IDs); empty when the cluster or service does not exist.
pub async fn running_task_ids(d: &Deployment, service: &str) -> Result<Vec<String>> {
    let ecs = &d.clients.ecs;
    let cluster = &d.names.cluster;
    let out = ecs
        .list_tasks()
        .cluster(cluster)
        .service_name(service)
        .desired_status(DesiredStatus::Running)
        .send()
        .await;
    let tasks = absent_when(
        out,
        |e| e.is_cluster_not_found_exception() || e.is_service_not_found_exception(),
        "ListTasks",
        format!("tasks of ECS service {service}"),
    )?
    .map(|out| out.task_arns().to_vec())
    .unwrap_or_default();
    if tasks.is_empty() {
        return Ok(Vec::new());
    }
    let described = ecs
        .describe_tasks()
        .cluster(cluster)
        .set_tasks(Some(tasks))
        .send()
        .await
        .map_err(|e| {
            Error::aws(
                "DescribeTasks",
                format!("tasks of ECS service {service}"),
                e,
            )
        })?;
    Ok(described
        .tasks()
        .iter()
        .filter(|t| t.last_status() == Some("RUNNING"))
        .filter_map(|t| t.task_arn())
        .map(|arn| short_arn(arn).to_owned())
        .collect())
}
