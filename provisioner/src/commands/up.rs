//! `up` and `plan`: converge AWS to the files, in dependency order, with independent steps
//! running concurrently. Everything that can refuse the run comes before the first write:
//! the reads (network and whether the app may use it, what runs now, the repository, each
//! resource's ownership) and the service image (built, or the given one checked).
//!
//! ```text
//! reads, checks ─ image built ─ boundary ─┬─ network ─┬─ security groups ─ EFS data ─ redis role ─┐
//!                                         │           └─ namespace ── discovery services ──────────┤
//!                                         ├─ IAM roles, SSM parameters ─────────────────────────────┤
//!                                         └─ log group, ECR repository, cluster ────────────────────┘
//!     ┌─ VPC link ─ HTTP API (integration, route, stage, custom domain) ────────────────┐
//!   ──┤                                                                                 ├─ wait ─ replaced access points removed ─ ready
//!     └─ image pushed ─ task definitions ─ redis ─ api ─────────────────────────────────┘
//! ```
//!
//! The security groups include the VPC link's, which the API tasks' group admits; the
//! discovery services are `redis` (A) and `api` (SRV, API Gateway's target). The VPC link and
//! the HTTP API (and the custom domain, when one is asked for) are read with the other resources
//! before the first write, so one of the app's names that is not the app's, or a link in other
//! subnets, stops the run before it changes anything.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::cli::DeployArgs;
use crate::commands::render::{RenderValues, placeholder_values};
use crate::commands::{self, Report};
use crate::config::Templates;
use crate::error::{Error, Result};
use crate::plan::{Action, Deployment};
use crate::watch::Goal;

mod images;
use crate::resources::discovery::Discovered;
use crate::resources::gateway::GatewaySpec;
use crate::resources::iam::{RoleSpec, execution_role_policy_arn};
use crate::resources::services::{Registry, ServiceSpec};
use crate::resources::{
    cluster, discovery, ecr, efs, gateway, iam, log_group, network, secrets, services,
    task_definitions, tokens, vpc_link,
};

/// How `up` runs.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// What to deploy.
    pub deploy: DeployArgs,
    /// Wait for stable services, at most this long; `None`: don't wait.
    pub wait: Option<Duration>,
    /// Start services that are stopped.
    pub start: bool,
    /// Workspace root: the files, and the service's sources for a build.
    pub root: PathBuf,
}

/// How long, at most, a deploy that created the task roles or the mount targets waits out
/// task stops a fresh setup explains (see [`crate::watch::WatchSpec::settling`]): IAM takes
/// seconds to propagate a new role, a new mount target's DNS name a minute or two to resolve,
/// and ECS's service-linked role is created on first use.
const FRESH_SETUP_SETTLING: Duration = Duration::from_secs(5 * 60);

/// Whether this run created something a task's start depends on and that takes time to be
/// usable everywhere: an IAM role (task or execution role) or an EFS mount target.
fn created_what_tasks_wait_for(d: &Deployment) -> bool {
    d.changes()
        .iter()
        .any(|c| c.action == Action::Create && matches!(c.kind, "iam-role" | "efs-mount-target"))
}

/// The values the policy documents are rendered with, all known before any call.
pub(crate) fn policy_values(d: &Deployment, redis_image: &str) -> BTreeMap<&'static str, String> {
    placeholder_values(
        &d.names,
        &RenderValues {
            account: d.account.clone(),
            region: d.region().to_owned(),
            execution_role_arn: String::new(),
            api_task_role_arn: String::new(),
            api_image: String::new(),
            redis_image: redis_image.to_owned(),
        },
    )
}

/// The execution role as `up` converges it: ECS pulls images, writes logs and reads the API
/// token parameters with it, and the Redis password parameters when AUTH is on. `token` uses
/// it too, before it adds a secret to the API's task definition.
pub(crate) fn execution_role_spec(
    d: &Deployment,
    templates: &Templates,
    policy_values: &BTreeMap<&'static str, String>,
    redis_auth: bool,
) -> RoleSpec {
    let mut inline = vec![(
        "secrets".to_owned(),
        templates.execution_secrets_policy.render(policy_values),
    )];
    if redis_auth {
        inline.push((
            "redis-auth".to_owned(),
            templates.execution_redis_auth_policy.render(policy_values),
        ));
    }
    RoleSpec {
        name: d.names.execution_role.clone(),
        description: format!("ECS pulls images and writes logs for app {}", d.names.app),
        trust_policy: templates.task_trust.render(policy_values),
        managed_policies: vec![execution_role_policy_arn(crate::aws::partition_of(
            d.region(),
        ))],
        inline_policies: inline,
        permissions_boundary: iam::boundary_arn(d),
    }
}

/// Runs `up` (or `plan` when the deployment is a dry run).
pub async fn up(d: &Deployment, templates: &Templates, options: &UpOptions) -> Result<Report> {
    let args = &options.deploy;
    let names = &d.names;
    // Events and stopped tasks older than this are not this run's.
    let started_at = SystemTime::now();
    let api_port = commands::api_port(templates);
    let redis_port = commands::redis_port(templates);

    let policy_values = policy_values(d, &args.redis_image);
    let trust = templates.task_trust.render(&policy_values);
    // Issue 6: Redis AUTH, once enabled, stays on (its parameter exists) until `down`.
    // Issue 11: the named write tokens stay injected while their parameter exists (`token
    // --name`); a parameter of that name that is not the app's stops the run here.
    let (live_redis_password, named_tokens) =
        tokio::try_join!(secrets::live_redis_password(d), tokens::exist(d))?;
    let redis_auth = args.redis_password || live_redis_password.is_some();
    let execution_role = execution_role_spec(d, templates, &policy_values, redis_auth);
    let redis_trust = trust.clone();
    let api_task_role = RoleSpec {
        name: names.api_task_role.clone(),
        description: format!("what the API containers of app {} may do in AWS", names.app),
        trust_policy: trust,
        managed_policies: Vec::new(),
        inline_policies: templates
            .api_task_policy
            .iter()
            .map(|t| ("api".to_owned(), t.render(&policy_values)))
            .collect(),
        permissions_boundary: iam::boundary_arn(d),
    };

    // Everything that can refuse the run is read and decided before the first write: the
    // network (and whether it is the app's), what runs now, the HTTPS address's VPC link, HTTP
    // API and custom domain (and whether they are the app's), and the service image (built, or
    // the given one checked). A failed build or a missing image leaves AWS as it was.
    let api_family = templates.api.family(&names.app);
    let redis_family = templates.redis.family(&names.app);
    let service_names = [names.redis_service.as_str(), names.api_service.as_str()];
    let ((net, live_groups), live_api, live_services, repository_uri, live_link, live_gateway) = tokio::try_join!(
        async {
            let net = network::resolve(d, args.vpc.as_deref(), &args.subnets).await?;
            // The app's groups in the VPC: a group of one of their names there that is not the
            // app's stops the run here.
            let ((), live_groups) = tokio::try_join!(
                network::check_unchanged(d, &net),
                network::live_groups(d, &net),
            )?;
            Ok::<_, Error>((net, live_groups))
        },
        task_definitions::latest(d, &api_family),
        services::describe(d, &service_names),
        ecr::existing_repository_uri(d, &names.repository),
        vpc_link::find(d),
        gateway::read(d, args.domain.as_deref()),
    )?;
    services::check_network(&live_services, &net)?;
    vpc_link::check_network(d, live_link.as_ref(), &net)?;
    let live_image = live_api
        .as_ref()
        .and_then(|live| live.spec.container(&templates.api.service))
        .map(|c| c.image.clone());
    let (service_image, image_notes) = images::prepare(
        d,
        args,
        &options.root,
        live_image,
        repository_uri.as_deref(),
    )
    .await?;

    // The first write: the roles are created with it.
    iam::ensure_boundary(d, &templates.task_role_boundary.render(&policy_values)).await?;

    let network_steps = async {
        let net = &net;
        let live_groups = &live_groups;
        let ((groups, data), registries) = tokio::try_join!(
            async {
                // Issue 6: Redis's data on EFS (its file system needs no network), and the
                // role that may mount it.
                let (groups, file_system) = tokio::try_join!(
                    async {
                        // Issue 10: the VPC link's group first: the API tasks' group admits it.
                        let link_group =
                            network::ensure_vpc_link_security_group(d, net, live_groups).await?;
                        let groups = network::ensure_security_groups(
                            d,
                            net,
                            live_groups,
                            api_port,
                            redis_port,
                            &link_group,
                            args.allow_cidr.as_deref(),
                        )
                        .await?;
                        Ok::<_, Error>((groups, link_group))
                    },
                    efs::ensure_file_system(d),
                )?;
                let data =
                    efs::ensure_data(d, net, file_system, live_groups, &groups.0.redis).await?;
                let role =
                    efs::redis_task_role(d, templates, &policy_values, redis_trust.clone(), &data);
                iam::ensure_role(d, &role).await?;
                efs::ensure_file_system_policy(d, templates, &policy_values, &data).await?;
                Ok::<_, Error>((groups, data))
            },
            async {
                let namespace = discovery::ensure_namespace(d, &net.vpc_id).await?;
                tokio::try_join!(
                    discovery::ensure_discovery_service(d, &namespace, Discovered::Redis),
                    discovery::ensure_discovery_service(d, &namespace, Discovered::Api),
                )
            }
        )?;
        Ok::<_, Error>((groups, data, registries))
    };
    let (
        network_state,
        execution_role_arn,
        api_task_role_arn,
        (),
        repository_uri,
        (),
        live_redis,
        (),
    ) = tokio::try_join!(
        network_steps,
        iam::ensure_role(d, &execution_role),
        iam::ensure_role(d, &api_task_role),
        log_group::ensure_log_group(d, args.log_retention_days),
        ecr::ensure_repository(d, &names.repository, args.keep_images),
        cluster::ensure_cluster(d),
        task_definitions::latest(d, &redis_family),
        async {
            secrets::ensure_api_token(d).await?;
            if redis_auth {
                secrets::ensure_redis_password(d, redis_port, live_redis_password).await?;
            }
            Ok(())
        },
    )?;
    let ((groups, link_group), data, (registry, api_registry)) = network_state;

    // Issue 10: the number of API tasks is kept on the API's service (a tag), so a deploy
    // without --api-count keeps what runs, or what ran before a stop.
    let live_api_service = live_services.get(&names.api_service);
    let api_count = args
        .api_count
        .or_else(|| {
            live_api_service.and_then(|s| (s.desired_count() > 0).then_some(s.desired_count()))
        })
        .or_else(|| live_api_service.and_then(services::remembered_count))
        .unwrap_or(1);
    // The HTTP API goes up while the image is pushed and the services roll out: a new VPC
    // link takes minutes on AWS.
    let gateway_steps = async {
        let link = vpc_link::ensure(d, live_link.as_ref(), &net, &link_group).await?;
        gateway::ensure(
            d,
            &live_gateway,
            &GatewaySpec {
                vpc_link_id: link,
                discovery_arn: api_registry.arn.clone(),
                log_group_arn: gateway::log_group_arn(d),
                throttle_rate: args.throttle_rate,
                throttle_burst: args.throttle_burst,
                domain: args.domain.clone().zip(args.certificate_arn.clone()),
            },
        )
        .await
    };
    let service_steps = async {
        let images = images::publish(d, args, service_image, image_notes, &repository_uri).await?;
        let mut values = placeholder_values(
            names,
            &RenderValues {
                account: d.account.clone(),
                region: d.region().to_owned(),
                execution_role_arn,
                api_task_role_arn,
                api_image: images.api,
                redis_image: images.redis,
            },
        );
        values.extend(data.placeholder_values());
        let mut api_spec = templates.api.render(&values)?;
        let mut redis_spec = templates.redis.render(&values)?;
        if named_tokens {
            tokens::apply(
                &mut api_spec,
                &templates.api.service,
                Some(&values["API_TOKENS_PARAMETER_ARN"]),
            );
        }
        if redis_auth {
            secrets::apply_redis_auth(
                &mut redis_spec,
                &templates.redis.service,
                &mut api_spec,
                &templates.api.service,
                &values["REDIS_PASSWORD_PARAMETER_ARN"],
                &values["REDIS_URL_PARAMETER_ARN"],
            );
        }
        let (api_task_definition, redis_task_definition) = tokio::try_join!(
            task_definitions::ensure_task_definition(d, &api_spec, live_api.as_ref()),
            task_definitions::ensure_task_definition(d, &redis_spec, live_redis.as_ref()),
        )?;

        let redis_service = ServiceSpec {
            name: names.redis_service.clone(),
            task_definition: redis_task_definition,
            desired_count: 1,
            subnets: net.subnet_ids.clone(),
            security_groups: vec![groups.redis.clone()],
            registry: Some(Registry {
                arn: registry.arn.clone(),
                container: None,
            }),
            remembered_count: None,
            minimum_healthy_percent: 0,
            maximum_percent: 100,
        };
        let api_service = ServiceSpec {
            name: names.api_service.clone(),
            task_definition: api_task_definition,
            desired_count: api_count,
            subnets: net.subnet_ids.clone(),
            security_groups: vec![groups.api.clone()],
            // SRV records carry the port: ECS registers each task's address with it.
            registry: Some(Registry {
                arn: api_registry.arn.clone(),
                container: Some((templates.api.service.clone(), api_port)),
            }),
            remembered_count: Some(api_count),
            minimum_healthy_percent: 100,
            maximum_percent: 200,
        };
        // Redis first: the API needs it to become ready.
        services::ensure_service(
            d,
            live_services.get(&names.redis_service),
            &redis_service,
            options.start,
        )
        .await?;
        services::ensure_service(d, live_api_service, &api_service, options.start).await?;
        Ok::<_, Error>(images.notes)
    };
    let (gateway, image_notes) = tokio::try_join!(gateway_steps, service_steps)?;

    let mut report = Report::new(d, if d.dry_run { "plan" } else { "up" });
    let kept_stopped = live_services.values().any(|s| s.desired_count() == 0) && !options.start;
    if kept_stopped {
        report.notes.push("the services are stopped and were kept stopped; `provisioner start` or `up --start` runs them".into());
    }
    // The URL exists as soon as the API does, whether or not a task runs behind it.
    if !d.dry_run {
        report.endpoint = Some(gateway.url.clone());
    }
    report.custom_domain = gateway.domain.clone();
    if d.dry_run || kept_stopped {
        return Ok(report);
    }
    report.notes.extend(image_notes);
    if let Some(limit) = options.wait {
        let services = vec![names.redis_service.clone(), names.api_service.clone()];
        let settling = if created_what_tasks_wait_for(d) {
            FRESH_SETUP_SETTLING
        } else {
            Duration::ZERO
        };
        let watched =
            commands::watch(d, services, Goal::Stable, limit, started_at, settling).await?;
        report.wait = Some(watched);
        // Redis runs on the new access point now: the ones it replaced can go.
        efs::retire_replaced(d, templates, &policy_values, redis_trust, &data).await?;
        report.changes = d.changes();
        report.changed = report.changes.iter().any(|c| c.action.is_change());
        let ready =
            commands::ready::wait_ready(d, Some(&api_registry), Some(&gateway.url), limit).await?;
        report.notes.extend(ready);
    } else {
        report.notes.push(
            "not waiting (--no-wait): `provisioner status` shows when the services are stable"
                .into(),
        );
        if !data.replaced.is_empty() {
            report.notes.push(format!(
                "the replaced EFS access point(s) {} stay (Redis may still run on them) until an `up` that waits sees the new Redis revision stable",
                data.replaced.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>().join(", ")
            ));
        }
    }
    report.aws_calls = d.clients.calls.summary();
    Ok(report)
}
