//! The commands. Each returns a [`Report`]: what it did, printed as text or JSON. The
//! helpers more than one command uses live here: the wait for the services ([`watch`]) and
//! the ports read from the task-definition templates ([`api_port`]).

pub mod down;
pub mod ready;
pub mod render;
pub mod scale;
pub mod status;
pub mod token;
pub mod up;

use std::fmt;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::aws::CallSummary;
use crate::config::{TaskDefinitionTemplate, Templates};
use crate::error::Result;
use crate::plan::{Action, Change, Deployment};
use crate::watch::{Goal, WatchReport, WatchSpec};

const REDIS_PORT_FALLBACK: i32 = 6379;
const API_PORT_FALLBACK: i32 = 8080;

/// The first container port of the service's container in a task-definition template.
fn container_port(template: &TaskDefinitionTemplate, fallback: i32) -> i32 {
    template
        .as_written
        .container(&template.service)
        .and_then(|c| c.port_mappings.as_ref())
        .and_then(|p| p.first())
        .map(|p| p.container_port)
        .unwrap_or(fallback)
}

/// The API's port, from `task-definitions/api.json`.
pub fn api_port(templates: &Templates) -> i32 {
    container_port(&templates.api, API_PORT_FALLBACK)
}

/// Redis's port, from `task-definitions/redis.json`.
pub fn redis_port(templates: &Templates) -> i32 {
    container_port(&templates.redis, REDIS_PORT_FALLBACK)
}

/// Follows the services until they reach `goal`, showing progress on stderr, for at most
/// `limit` and never past the command's `--timeout`. `settling`: how long stops that a
/// fresh account's setup explains are waited out (see [`WatchSpec::settling`]).
pub async fn watch(
    d: &Deployment,
    services: Vec<String>,
    goal: Goal,
    limit: Duration,
    started_at: SystemTime,
    settling: Duration,
) -> Result<WatchReport> {
    let mut spec = WatchSpec::new(&d.names.cluster, services, goal, &d.names.log_group);
    spec.timeout = d.limit(limit);
    spec.started_at = started_at;
    spec.settling = settling;
    // The watcher's view replaces the resource spinner rather than drawing beside it.
    d.steps_done();
    let mut sink = crate::watch::stderr_sink();
    Ok(crate::watch::watch_services(&d.clients.ecs, &d.clients.logs, &spec, sink.as_mut()).await?)
}

/// One thing that is billed, with a rough monthly figure (US list prices; they vary a little
/// by region): what `stop` says still costs money, what `start` says running costs.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Cost {
    /// What is billed.
    pub item: String,
    /// Rough US dollars per month.
    pub usd_per_month: f64,
    /// How the figure was made.
    pub basis: String,
}

/// What every command's JSON report opens with: the schema, the command and where it ran.
#[derive(Debug, Clone, Serialize)]
pub struct ReportHeader {
    /// Version of this JSON schema (`docs/output.md`).
    pub schema_version: u32,
    /// `up`, `plan`, `down`, `stop`, `start`, `status`, `token`.
    pub command: &'static str,
    /// The app.
    pub app: String,
    /// The region.
    pub region: String,
    /// The account.
    pub account: String,
}

impl ReportHeader {
    /// The header of `command` run on `d`.
    pub fn of(d: &Deployment, command: &'static str) -> Self {
        Self {
            schema_version: 1,
            command,
            app: d.names.app.clone(),
            region: d.region().to_owned(),
            account: d.account.clone(),
        }
    }
}

/// The result of a command, on stdout. Its JSON form is the documented, stable schema
/// (`schema_version` changes when a field changes meaning or disappears).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Schema, command, app, region, account.
    #[serde(flatten)]
    pub header: ReportHeader,
    /// True when nothing was changed on purpose (`plan`, `--dry-run`).
    pub dry_run: bool,
    /// Whether anything was (or, in a dry run, would be) changed.
    pub changed: bool,
    /// Every resource's outcome, in order.
    pub changes: Vec<Change>,
    /// The app's HTTPS URL (the HTTP API's), once it exists; the same across stop/start.
    pub endpoint: Option<String>,
    /// The custom domain of the HTTPS URL and the DNS record it needs, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_domain: Option<crate::resources::gateway::CustomDomain>,
    /// How the wait for the services ended, when the command waited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait: Option<crate::watch::WatchReport>,
    /// AWS calls made.
    pub aws_calls: CallSummary,
    /// What is billed (stop: what still costs money; start: what running costs).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub costs: Vec<Cost>,
    /// Things the user should know (kept stopped, data kept, …).
    pub notes: Vec<String>,
}

impl fmt::Display for ReportHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "app `{}` in {} (account {})",
            self.app, self.region, self.account
        )
    }
}

impl Report {
    /// The report of `command`: what `d` recorded and the AWS calls it made so far.
    pub fn new(d: &Deployment, command: &'static str) -> Self {
        let changes = d.changes();
        Self {
            header: ReportHeader::of(d, command),
            dry_run: d.dry_run,
            changed: changes.iter().any(|c| c.action.is_change()),
            changes,
            endpoint: None,
            custom_domain: None,
            wait: None,
            costs: Vec::new(),
            aws_calls: d.clients.calls.summary(),
            notes: Vec::new(),
        }
    }

    fn count(&self, action: Action) -> usize {
        self.changes.iter().filter(|c| c.action == action).count()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A plan changes nothing in AWS; its header says what it shows, not "nothing changed"
        // (which reads as "no changes" above a list of 25 creations).
        let mode = if self.dry_run {
            " (dry run: what `up` would do; AWS is left as it is)"
        } else {
            ""
        };
        writeln!(f, "{} {}{mode}", self.header.command, self.header)?;
        for change in &self.changes {
            writeln!(f, "  {change}")?;
        }
        let (create, update, delete) = (
            self.count(Action::Create),
            self.count(Action::Update),
            self.count(Action::Delete),
        );
        let unchanged = self.count(Action::Unchanged) + self.count(Action::Absent);
        let calls = &self.aws_calls;
        if self.changed {
            let verb = if self.dry_run { "would" } else { "did" };
            writeln!(
                f,
                "{verb}: {create} to create, {update} to update, {delete} to delete, {unchanged} unchanged"
            )?;
        } else if self.header.command == "down" {
            writeln!(
                f,
                "nothing left to remove: app `{}` has no resources",
                self.header.app
            )?;
        } else {
            writeln!(f, "no changes: the deployment matches the files")?;
        }
        writeln!(
            f,
            "AWS calls: {} read, {} mutating",
            calls.read, calls.mutating
        )?;
        if let Some(wait) = &self.wait {
            let states: Vec<String> = wait.services.iter().map(|s| s.summary()).collect();
            writeln!(
                f,
                "services {} after {:.0}s: {}",
                wait.goal,
                wait.waited.as_secs_f64(),
                states.join("; ")
            )?;
        }
        if let Some(endpoint) = &self.endpoint {
            writeln!(f, "HTTPS URL: {endpoint}")?;
        }
        if let Some(domain) = &self.custom_domain {
            writeln!(f, "{domain}")?;
        }
        for cost in &self.costs {
            writeln!(
                f,
                "cost: ~${:.2}/month  {} ({})",
                cost.usd_per_month, cost.item, cost.basis
            )?;
        }
        for note in &self.notes {
            writeln!(f, "note: {note}")?;
        }
        Ok(())
    }
}
