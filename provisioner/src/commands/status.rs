//! `status`: what runs and where. Read-only: per service the counts, rollout state,
//! task-definition revision and image (digest); the app's HTTPS URL (and custom domain);
//! recent service events; for tasks that stopped recently, why (stop reason, exit codes); and
//! what the app costs running (with its API task count) and stopped.

use std::fmt;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::aws::CallSummary;
use crate::commands::{Cost, ReportHeader, scale};
use crate::error::{Error, Result};
use crate::plan::Deployment;
use crate::resources::gateway::{self, CustomDomain};
use crate::resources::{cluster, services};
use crate::watch::{ServiceEventRecord, ServiceState, StoppedTask, WatchSpec};

/// The result of `status`. Its JSON form is part of the documented schema.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    /// Schema, command (`status`), app, region, account.
    #[serde(flatten)]
    pub header: ReportHeader,
    /// Whether the app's cluster exists.
    pub deployed: bool,
    /// One entry per service.
    pub services: Vec<ServiceStatus>,
    /// The app's HTTPS URL (the HTTP API's), when it exists; the same across stop/start.
    pub endpoint: Option<String>,
    /// The custom domain of the HTTPS URL and the DNS record it needs, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_domain: Option<CustomDomain>,
    /// API tasks when running (`--api-count`, kept on the API's service), when deployed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_count: Option<i32>,
    /// What running costs (with `api_count` API tasks), when deployed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub running_costs: Vec<Cost>,
    /// What is billed while stopped, when deployed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stopped_costs: Vec<Cost>,
    /// Size of the race data on EFS (metered by EFS, updated about hourly), when it exists.
    pub data_bytes: Option<i64>,
    /// AWS calls made.
    pub aws_calls: CallSummary,
}

/// One service.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceStatus {
    /// Counts, status, rollout, task definition (`family:revision`).
    #[serde(flatten)]
    pub state: ServiceState,
    /// The image the task definition runs.
    pub image: Option<String>,
    /// Its digest, when the image is referred to by digest.
    pub image_digest: Option<String>,
    /// The most recent service events, newest first.
    pub events: Vec<ServiceEventRecord>,
    /// Tasks that stopped within `--since`, oldest first, with reasons and exit codes.
    pub stopped_tasks: Vec<StoppedTask>,
}

/// Runs `status`.
pub async fn status(d: &Deployment, events: usize, since: Duration) -> Result<StatusReport> {
    let names = &d.names;
    let mut report = StatusReport {
        header: ReportHeader::of(d, "status"),
        deployed: cluster::cluster_is_active(d).await?,
        services: Vec::new(),
        endpoint: None,
        custom_domain: None,
        api_count: None,
        running_costs: Vec::new(),
        stopped_costs: Vec::new(),
        data_bytes: None,
        aws_calls: CallSummary::default(),
    };
    if report.deployed {
        let service_names = vec![names.redis_service.clone(), names.api_service.clone()];
        // One DescribeServices, with the tags the API's remembered count is read from.
        let live = services::describe(d, &[&names.redis_service, &names.api_service]).await?;
        let views: Vec<_> = service_names
            .iter()
            .map(|name| crate::watch::service_view(name, live.get(name)))
            .collect();
        let mut spec = WatchSpec::new(
            &names.cluster,
            service_names,
            crate::watch::Goal::Stable,
            &names.log_group,
        );
        spec.started_at = SystemTime::now()
            .checked_sub(since)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        spec.log_lines = 5;
        for view in views {
            let (image, image_digest) = match &view.state.task_definition {
                Some(task_definition) => image_of(d, task_definition, &view.state.service).await?,
                None => (None, None),
            };
            let stopped_tasks = if view.state.status == "MISSING" {
                Vec::new()
            } else {
                crate::watch::recent_stopped_tasks(
                    &d.clients.ecs,
                    &d.clients.logs,
                    &spec,
                    &view.state.service,
                )
                .await?
            };
            report.services.push(ServiceStatus {
                image,
                image_digest,
                events: view.events.into_iter().take(events).collect(),
                stopped_tasks,
                state: view.state,
            });
        }
        if let Some(gateway) = gateway::describe(d).await? {
            report.endpoint = Some(gateway.url);
            report.custom_domain = gateway.domain;
        }
        let api_count = live
            .get(&names.api_service)
            .map(|s| {
                services::remembered_count(s)
                    .unwrap_or(s.desired_count())
                    .max(1)
            })
            .unwrap_or(1);
        report.api_count = Some(api_count);
        report.running_costs = scale::running_costs(d, api_count);
        report.data_bytes = crate::resources::efs::data_size(d).await?;
        report.stopped_costs =
            scale::still_billed(d, report.data_bytes.unwrap_or_default()).await?;
    }
    report.aws_calls = d.clients.calls.summary();
    Ok(report)
}

/// The image of the service's container in a task definition, and its digest.
async fn image_of(
    d: &Deployment,
    task_definition: &str,
    container: &str,
) -> Result<(Option<String>, Option<String>)> {
    let out = d
        .clients
        .ecs
        .describe_task_definition()
        .task_definition(task_definition)
        .send()
        .await
        .map_err(|e| {
            Error::aws(
                "DescribeTaskDefinition",
                format!("task definition {task_definition}"),
                e,
            )
        })?;
    let image = out
        .task_definition()
        .and_then(|t| {
            t.container_definitions()
                .iter()
                .find(|c| c.name() == Some(container))
        })
        .and_then(|c| c.image())
        .map(str::to_owned);
    let digest = image
        .as_deref()
        .and_then(|i| i.split_once('@'))
        .map(|(_, digest)| digest.to_owned());
    Ok((image, digest))
}

impl fmt::Display for StatusReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.header)?;
        if !self.deployed {
            return writeln!(
                f,
                "not deployed: no cluster `{}`; `provisioner up` deploys it",
                self.header.app
            );
        }
        for service in &self.services {
            let state = &service.state;
            writeln!(
                f,
                "  {:<6} {:<8} desired {} running {} pending {}  rollout {}  {}",
                state.service,
                state.status,
                state.desired,
                state.running,
                state.pending,
                state.rollout_state.as_deref().unwrap_or("-"),
                state.task_definition.as_deref().unwrap_or("-"),
            )?;
            if let Some(image) = &service.image {
                writeln!(f, "         image {image}")?;
            }
            for event in &service.events {
                let at = event.at.map(crate::watch::rfc3339).unwrap_or_default();
                writeln!(f, "         event {at} {}", event.message)?;
            }
            for task in &service.stopped_tasks {
                writeln!(f, "         stopped {}", task.summary())?;
            }
        }
        match &self.endpoint {
            Some(endpoint) => writeln!(f, "HTTPS URL: {endpoint}")?,
            None => writeln!(
                f,
                "HTTPS URL: none (no HTTP API: `provisioner up` creates it)"
            )?,
        }
        if let Some(domain) = &self.custom_domain {
            writeln!(f, "{domain}")?;
        }
        if let Some(count) = self.api_count {
            writeln!(f, "API tasks when running: {count}")?;
        }
        let sum = |costs: &[Cost]| costs.iter().map(|c| c.usd_per_month).sum::<f64>();
        if !self.running_costs.is_empty() {
            writeln!(
                f,
                "cost running: ~${:.2}/month (the lines below, plus what is billed stopped)",
                sum(&self.running_costs) + sum(&self.stopped_costs)
            )?;
        }
        for (when, costs) in [
            ("running adds", &self.running_costs),
            ("stopped", &self.stopped_costs),
        ] {
            if costs.is_empty() {
                continue;
            }
            writeln!(f, "cost {when}: ~${:.2}/month", sum(costs))?;
            for cost in costs.iter() {
                writeln!(
                    f,
                    "  ~${:.2}/month  {} ({})",
                    cost.usd_per_month, cost.item, cost.basis
                )?;
            }
        }
        if let Some(bytes) = self.data_bytes {
            writeln!(f, "race data on EFS: {bytes} bytes")?;
        }
        if self.services.iter().all(|s| s.state.desired == 0) {
            writeln!(
                f,
                "stopped: no task is billed; `provisioner start` runs the services"
            )?;
        }
        Ok(())
    }
}
