//! The record of what a command did or would do: one [`Change`] per resource, in the order
//! they were decided, and the context every resource step shares ([`Deployment`]), which
//! knows whether this run applies changes or only plans them.

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use serde::Serialize;

use crate::aws::Clients;
use crate::config::Names;

/// What happened, or would happen, to one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Did not exist; created.
    Create,
    /// Existed but differed; updated.
    Update,
    /// Existed as wanted; nothing done.
    Unchanged,
    /// Existed; removed.
    Delete,
    /// Did not exist; nothing to remove.
    Absent,
}

impl Action {
    /// The outcome of a delete call: `Delete` when the resource was there to delete,
    /// `Absent` when AWS answered that it was not.
    pub fn of_deletion(was_there: bool) -> Self {
        if was_there {
            Action::Delete
        } else {
            Action::Absent
        }
    }

    /// Whether this action changes AWS.
    pub fn is_change(self) -> bool {
        matches!(self, Action::Create | Action::Update | Action::Delete)
    }
}

/// One resource's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// Kind of resource, e.g. `ecs-service`.
    pub kind: &'static str,
    /// Its name.
    pub name: String,
    /// What was or would be done.
    pub action: Action,
    /// Why (what differed), when it is not obvious.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let symbol = match self.action {
            Action::Create => "+",
            Action::Update => "~",
            Action::Delete => "-",
            Action::Unchanged | Action::Absent => " ",
        };
        let action = format!("{:?}", self.action).to_lowercase();
        write!(f, "{symbol} {:<10} {:<22} {}", action, self.kind, self.name)?;
        if let Some(detail) = &self.detail {
            write!(f, "  ({detail})")?;
        }
        Ok(())
    }
}

/// The value shown for an ID that only exists once the plan is applied.
pub const KNOWN_AFTER_APPLY: &str = "(known after up)";

/// What every resource step of one run shares.
#[derive(Debug)]
pub struct Deployment {
    /// The AWS clients.
    pub clients: Clients,
    /// Resource names of the app.
    pub names: Names,
    /// The account ID.
    pub account: String,
    /// When true, steps only read and record what they would do.
    pub dry_run: bool,
    /// When the command's `--timeout` runs out: every wait of every step ends by then.
    deadline: Option<Instant>,
    changes: Mutex<Vec<Change>>,
    /// The spinner naming the resource at hand (on a terminal).
    steps: crate::console::Steps,
}

impl Deployment {
    /// A context for one run.
    pub fn new(clients: Clients, names: Names, account: String, dry_run: bool) -> Self {
        Self {
            clients,
            names,
            account,
            dry_run,
            deadline: None,
            changes: Mutex::new(Vec::new()),
            steps: crate::console::Steps::new(),
        }
    }

    /// Bounds every wait of the run: they all end by `deadline` (the command's start plus its
    /// `--timeout`).
    pub fn with_deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// What a wait that would take at most `own` may take: `own`, or less when the command's
    /// `--timeout` runs out sooner.
    pub fn limit(&self, own: Duration) -> Duration {
        match self.deadline {
            Some(deadline) => own.min(deadline.saturating_duration_since(Instant::now())),
            None => own,
        }
    }

    /// The region.
    pub fn region(&self) -> &str {
        &self.clients.region
    }

    /// Records a resource's outcome; returns whether the step should now mutate AWS.
    pub fn record(
        &self,
        kind: &'static str,
        name: impl Into<String>,
        action: Action,
        detail: Option<String>,
    ) -> bool {
        let change = Change {
            kind,
            name: name.into(),
            action,
            detail,
        };
        // On a terminal the spinner names the resource and the report lists it once; without
        // one, each change is also a log line.
        let shown = self.steps.show(&format!("{} {}", change.kind, change.name));
        if action.is_change() && !shown {
            let verb = if self.dry_run { "would" } else { "will" };
            tracing::info!("{verb} {change}");
        } else {
            tracing::debug!("{change}");
        }
        match self.changes.lock() {
            Ok(mut changes) => changes.push(change),
            Err(poisoned) => poisoned.into_inner().push(change),
        }
        action.is_change() && !self.dry_run
    }

    /// Removes the resource spinner (before the watcher's view or the report).
    pub fn steps_done(&self) {
        self.steps.done();
    }

    /// Every outcome recorded so far.
    pub fn changes(&self) -> Vec<Change> {
        match self.changes.lock() {
            Ok(changes) => changes.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}
