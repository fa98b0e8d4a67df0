//! `stop` and `start`: the billing switch. ECS has no "stop service", so the services' desired
//! counts go to 0 (API first, so it never runs without Redis) and back (Redis first, so the
//! API finds it when it starts; the API to its kept `--api-count`). Each waits until the change
//! has taken effect, bounded. The HTTP API stays: it costs nothing without requests, and its
//! URL stays the same.

use std::time::{Duration, SystemTime};

use crate::commands::watch;
use crate::commands::{Cost, Report};
use crate::error::{Error, Result};
use crate::plan::{Action, Deployment};
use crate::resources::discovery::{self, Discovered};
use crate::resources::{cluster, ecr, efs, gateway, log_group, services};
use crate::watch::Goal;

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
/// ECR storage, per GB-month.
const ECR_USD_PER_GB_MONTH: f64 = 0.10;
/// EFS Standard storage, per GB-month.
const EFS_USD_PER_GB_MONTH: f64 = 0.30;
/// CloudWatch Logs storage, per GB-month.
const LOGS_USD_PER_GB_MONTH: f64 = 0.03;
/// A Route 53 hosted zone (the private namespace has one), per month.
const HOSTED_ZONE_USD_PER_MONTH: f64 = 0.50;
/// One Fargate task of 0.25 vCPU and 0.5 GB on Linux/x86, per hour.
const FARGATE_SMALL_TASK_USD_PER_HOUR: f64 = 0.25 * 0.04048 + 0.5 * 0.004445;
/// One public IPv4 address, per hour.
const PUBLIC_IPV4_USD_PER_HOUR: f64 = 0.005;
const HOURS_PER_MONTH: f64 = 730.0;
/// API Gateway HTTP API requests, per million (the first 300 million a month); its VPC link
/// has no charge of its own.
const HTTP_API_USD_PER_MILLION_REQUESTS: f64 = 1.00;

/// What the API Gateway part costs: nothing by the hour, per request only.
fn per_request_cost(d: &Deployment) -> Cost {
    Cost {
        item: format!(
            "API Gateway HTTP API {} and VPC link {}",
            d.names.http_api, d.names.vpc_link
        ),
        usd_per_month: 0.0,
        basis: format!(
            "per request: ${HTTP_API_USD_PER_MILLION_REQUESTS:.2} per million requests, nothing while none arrive; the VPC link has no charge"
        ),
    }
}

/// What running costs with `api_count` API tasks and the one Redis task.
pub fn running_costs(d: &Deployment, api_count: i32) -> Vec<Cost> {
    let tasks = 1 + api_count;
    vec![
        Cost {
            item: format!(
                "{tasks} Fargate task(s) of 0.25 vCPU / 0.5 GB ({api_count} API, 1 Redis), each with a public IPv4"
            ),
            usd_per_month: round_cents(
                f64::from(tasks)
                    * (FARGATE_SMALL_TASK_USD_PER_HOUR + PUBLIC_IPV4_USD_PER_HOUR)
                    * HOURS_PER_MONTH,
            ),
            basis: "while running; `provisioner stop` ends it".into(),
        },
        per_request_cost(d),
    ]
}

fn round_cents(usd: f64) -> f64 {
    (usd * 100.0).round() / 100.0
}

/// What `bytes` stored at `usd_per_gb_month` cost a month; `more` ends the basis.
fn storage_cost(item: String, bytes: i64, usd_per_gb_month: f64, more: &str) -> Cost {
    Cost {
        item,
        usd_per_month: round_cents(bytes as f64 / GIB * usd_per_gb_month),
        basis: format!("{bytes} bytes at ${usd_per_gb_month}/GB-month{more}"),
    }
}

/// The services of the app as they are now; an error when the app is not deployed.
async fn deployed_services(
    d: &Deployment,
) -> Result<std::collections::BTreeMap<String, aws_sdk_ecs::types::Service>> {
    let names = &d.names;
    let not_deployed = || Error::NotDeployed {
        app: names.app.clone(),
        region: d.region().to_owned(),
    };
    if !cluster::cluster_is_active(d).await? {
        return Err(not_deployed());
    }
    let live = services::describe(d, &[&names.api_service, &names.redis_service]).await?;
    if live.is_empty() {
        Err(not_deployed())
    } else {
        Ok(live)
    }
}

/// Sets `name` to `count` tasks unless it already is; records the outcome.
async fn set_count(
    d: &Deployment,
    live: Option<&aws_sdk_ecs::types::Service>,
    name: &str,
    count: i32,
) -> Result<()> {
    let Some(service) = live else {
        return Err(Error::NotDeployed {
            app: d.names.app.clone(),
            region: d.region().to_owned(),
        });
    };
    let current = service.desired_count();
    if current == count {
        d.record(
            "ecs-service",
            name,
            Action::Unchanged,
            Some(format!("desired count {count}")),
        );
        return Ok(());
    }
    d.record(
        "ecs-service",
        name,
        Action::Update,
        Some(format!("desired count {current} → {count}")),
    );
    services::scale(d, name, count).await
}

/// `stop`: every service to 0 tasks, API first; waits until none runs.
pub async fn stop(d: &Deployment, wait: Option<Duration>) -> Result<Report> {
    let names = &d.names;
    let started_at = SystemTime::now();
    let live = deployed_services(d).await?;
    set_count(d, live.get(&names.api_service), &names.api_service, 0).await?;
    set_count(d, live.get(&names.redis_service), &names.redis_service, 0).await?;
    let mut report = Report::new(d, "stop");
    if let Some(limit) = wait {
        let services = vec![names.api_service.clone(), names.redis_service.clone()];
        report.wait = Some(
            watch(
                d,
                services,
                Goal::Drained,
                limit,
                started_at,
                Duration::ZERO,
            )
            .await?,
        );
        report.notes.push(
            "no task runs: task billing (Fargate vCPU, memory, public IPv4) has stopped".into(),
        );
    } else {
        report
            .notes
            .push("tasks are stopping (--no-wait); task billing ends when none runs".into());
    }
    report.costs = still_billed(d, efs::data_size(d).await?.unwrap_or_default()).await?;
    report.notes.push(format!(
        "still billed while stopped: about ${:.2}/month (see costs); `provisioner down` removes it all",
        report.costs.iter().map(|c| c.usd_per_month).sum::<f64>()
    ));
    report.aws_calls = d.clients.calls.summary();
    Ok(report)
}

/// What costs money while no task runs; `data_bytes`: the race data on EFS
/// ([`efs::data_size`], read by the caller: `status` reports it too).
pub async fn still_billed(d: &Deployment, data_bytes: i64) -> Result<Vec<Cost>> {
    let names = &d.names;
    let mut image_bytes = 0;
    for repository in [&names.repository, &names.redis_repository] {
        image_bytes += ecr::stored_bytes(d, repository).await?;
    }
    let log_bytes = log_group::find_log_group(d)
        .await?
        .and_then(|g| g.stored_bytes())
        .unwrap_or_default();
    Ok(vec![
        per_request_cost(d),
        storage_cost(
            format!("EFS race data ({})", names.file_system),
            data_bytes,
            EFS_USD_PER_GB_MONTH,
            " (Standard storage, metered by EFS about hourly); kept by `down`, deleted by `down --delete-data`",
        ),
        storage_cost(
            format!(
                "ECR images ({}, {})",
                names.repository, names.redis_repository
            ),
            image_bytes,
            ECR_USD_PER_GB_MONTH,
            "",
        ),
        storage_cost(
            format!("CloudWatch logs ({})", names.log_group),
            log_bytes,
            LOGS_USD_PER_GB_MONTH,
            ", until the retention expires them",
        ),
        Cost {
            item: format!(
                "Cloud Map namespace {} (a Route 53 private hosted zone)",
                names.namespace
            ),
            usd_per_month: HOSTED_ZONE_USD_PER_MONTH,
            basis: "per hosted zone".into(),
        },
    ])
}

/// `start`: Redis to 1 task and stable, then the API to its count (`api_count`, else the count
/// kept on the service, else 1) and stable and healthy in Cloud Map, then `/ready` through the
/// HTTPS URL when it can be reached. The URL is the one the app had before `stop`.
pub async fn start(
    d: &Deployment,
    api_count: Option<i32>,
    wait: Option<Duration>,
) -> Result<Report> {
    let names = &d.names;
    let started_at = SystemTime::now();
    let live = deployed_services(d).await?;
    let live_api = live.get(&names.api_service);
    let count = api_count
        .or_else(|| live_api.and_then(services::remembered_count))
        .unwrap_or(1);
    set_count(d, live.get(&names.redis_service), &names.redis_service, 1).await?;
    let mut waits = Vec::new();
    if let Some(limit) = wait {
        waits.push(
            watch(
                d,
                vec![names.redis_service.clone()],
                Goal::Stable,
                limit,
                started_at,
                Duration::ZERO,
            )
            .await?,
        );
    }
    set_count(d, live_api, &names.api_service, count).await?;
    if let Some(service) = live_api
        && services::remembered_count(service) != Some(count)
    {
        services::remember_count(d, service, count).await?;
    }
    let gateway = gateway::describe(d).await?;
    let mut report = Report::new(d, "start");
    report.endpoint = gateway.as_ref().map(|g| g.url.clone());
    report.custom_domain = gateway.as_ref().and_then(|g| g.domain.clone());
    report.costs = running_costs(d, count);
    if gateway.is_none() {
        report
            .notes
            .push("the app has no HTTP API yet: `provisioner up` creates its HTTPS URL".into());
    }
    let Some(limit) = wait else {
        report.notes.push(
            "not waiting (--no-wait): `provisioner status` shows when the API tasks run".into(),
        );
        report.aws_calls = d.clients.calls.summary();
        return Ok(report);
    };
    let api_wait = watch(
        d,
        vec![names.api_service.clone()],
        Goal::Stable,
        limit,
        started_at,
        Duration::ZERO,
    )
    .await?;
    report.wait = Some(api_wait);
    let url = gateway.as_ref().map(|g| g.url.as_str());
    let registry = discovery::find(d, Discovered::Api).await?;
    let ready = crate::commands::ready::wait_ready(d, registry.as_ref(), url, limit).await?;
    report.notes.extend(ready);
    if let Some(url) = url {
        report
            .notes
            .push(format!("{url} is the app's address, as before the stop"));
    }
    report.aws_calls = d.clients.calls.summary();
    Ok(report)
}
