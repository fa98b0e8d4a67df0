//! `token`: the API's write tokens.
//!
//! Without `--name`, the single token (the SSM SecureString the API tasks get as
//! `TIMING_API_TOKEN`, known to the service as `default`): printed, or with `--rotate`
//! replaced, and the API tasks restarted to use it.
//!
//! With `--name` (issue 11), one of the named tokens the API also accepts (`TIMING_API_TOKENS`,
//! stored as described in [`crate::resources::tokens`]), so that each timer writes with its own
//! and the audit trail tells them apart: `--create` (an existing one is kept), print, `--rotate`
//! (it must exist), `--revoke` (nothing to do if it is gone); `--list` lists the names. A change
//! is one read of everything it depends on, then, in this order:
//!
//! 1. when the API's task definition must gain the `TIMING_API_TOKENS` secret (the first named
//!    token), the execution role converged as `up` does, so it may read the parameter;
//! 2. the parameter written (unless the last token is being revoked);
//! 3. the secret added to or removed from the revision the API service runs (nothing else of it
//!    changes: a token change deploys no other change), registered only when it differs;
//! 4. the API service moved to that revision, or its tasks replaced so they read the new value;
//! 5. the parameter deleted, when the last token was revoked: only once no new task needs it.
//!
//! Each step reads before it writes, so running the same command again after an interruption
//! finishes the job; a list written after the API's current deployment began (a run cut off
//! before its restart) restarts the tasks even when the command itself changes nothing.
//! `--dry-run` records what would change and changes nothing. A value is printed only by the
//! forms that read one (`token`, `token --name NAME`), never after a change, so a CI log of
//! creating or rotating a token holds no secret.

use std::fmt;

use serde::Serialize;

use crate::aws::CallSummary;
use crate::cli::TokenArgs;
use crate::commands::{ReportHeader, up};
use crate::config::Templates;
use crate::error::{Error, Result};
use crate::plan::{Action, Change, Deployment};
use crate::resources::tokens::{self, TokenList};
use crate::resources::{iam, secrets, services, task_definitions};

/// What to do with a named token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamedAction {
    /// Print it.
    Show,
    /// Create it unless it exists.
    Create,
    /// Replace it.
    Rotate,
    /// Remove it.
    Revoke,
}

/// What `token` was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRequest {
    /// Print the single token.
    Show,
    /// Replace the single token.
    Rotate,
    /// List the named tokens' names.
    List,
    /// One named token.
    Named {
        /// Its name, valid for the service.
        name: String,
        /// What to do.
        action: NamedAction,
    },
}

impl TokenRequest {
    /// What the flags ask for. A name the service would refuse (or `default`) is refused here,
    /// before any AWS call; which flags go together clap has already checked.
    pub fn from_args(args: &TokenArgs) -> Result<Self> {
        let Some(name) = &args.name else {
            return Ok(if args.list {
                TokenRequest::List
            } else if args.rotate {
                TokenRequest::Rotate
            } else {
                TokenRequest::Show
            });
        };
        tokens::check_name(name).map_err(|reason| Error::InvalidTokenName {
            name: name.clone(),
            reason,
        })?;
        let action = if args.create {
            NamedAction::Create
        } else if args.rotate {
            NamedAction::Rotate
        } else if args.revoke {
            NamedAction::Revoke
        } else {
            NamedAction::Show
        };
        Ok(TokenRequest::Named {
            name: name.clone(),
            action,
        })
    }

    /// Whether it may change anything (what `--dry-run` applies to).
    pub fn changes(&self) -> bool {
        match self {
            TokenRequest::Show | TokenRequest::List => false,
            TokenRequest::Rotate => true,
            TokenRequest::Named { action, .. } => *action != NamedAction::Show,
        }
    }
}

/// What `token` prints. `token` is absent after a change: printing a fresh secret into a CI
/// log by default would defeat rotating it.
#[derive(Debug, Clone, Serialize)]
pub struct TokenReport {
    /// Schema, command (`token`), app, region, account.
    #[serde(flatten)]
    pub header: ReportHeader,
    /// True when nothing was changed on purpose (`--dry-run`).
    pub dry_run: bool,
    /// The named token the run was about; absent for the single token and `--list`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Whether this run replaced the token.
    pub rotated: bool,
    /// Whether anything was (or, in a dry run, would be) changed.
    pub changed: bool,
    /// Every resource's outcome, in order.
    pub changes: Vec<Change>,
    /// The token, when printing one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// `--list`: the names of the named tokens, in the order they were created.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub names: Option<Vec<String>>,
    /// AWS calls made.
    pub aws_calls: CallSummary,
    /// What the user should know.
    pub notes: Vec<String>,
}

impl fmt::Display for TokenReport {
    /// A token or the names alone, one a line, so the text is usable in a script as it is;
    /// after a change, what changed and the notes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(token) = &self.token {
            writeln!(f, "{token}")?;
        }
        for name in self.names.iter().flatten() {
            writeln!(f, "{name}")?;
        }
        for change in &self.changes {
            writeln!(f, "  {change}")?;
        }
        for note in &self.notes {
            writeln!(f, "{note}")?;
        }
        Ok(())
    }
}

/// Runs `token` as `request` asks.
pub async fn token(
    d: &Deployment,
    templates: &Templates,
    request: &TokenRequest,
) -> Result<TokenReport> {
    let mut report = TokenReport {
        header: ReportHeader::of(d, "token"),
        dry_run: d.dry_run,
        name: None,
        rotated: false,
        changed: false,
        changes: Vec::new(),
        token: None,
        names: None,
        aws_calls: CallSummary::default(),
        notes: Vec::new(),
    };
    match request {
        TokenRequest::Show => report.token = Some(secrets::read_token(d).await?),
        TokenRequest::Rotate => {
            secrets::rotate_token(d).await?;
            services::restart(d, &d.names.api_service, None).await?;
            report.rotated = !d.dry_run;
            report.notes.push("token rotated; the API tasks are being replaced to use it (`provisioner token` prints it)".into());
        }
        TokenRequest::List => {
            let stored = tokens::read(d).await?;
            report.names = Some(stored.map(|s| s.list.names()).unwrap_or_default());
        }
        TokenRequest::Named { name, action } => {
            report.name = Some(name.clone());
            if *action == NamedAction::Show {
                let list = tokens::read(d).await?.map(|s| s.list).unwrap_or_default();
                let token = list.get(name).ok_or_else(|| unknown(d, name, &list))?;
                report.token = Some(token.to_owned());
            } else {
                let note = change_named(d, templates, name, *action).await?;
                report.rotated = *action == NamedAction::Rotate && !d.dry_run;
                report.notes.extend(note);
            }
        }
    }
    if d.dry_run {
        report.notes = vec!["dry run: nothing was changed".into()];
    }
    report.changes = d.changes();
    report.changed = report.changes.iter().any(|c| c.action.is_change());
    report.aws_calls = d.clients.calls.summary();
    Ok(report)
}

fn unknown(d: &Deployment, name: &str, list: &TokenList) -> Error {
    Error::UnknownToken {
        app: d.names.app.clone(),
        name: name.to_owned(),
        known: list.names(),
    }
}

/// Creates, rotates or revokes the named token `name` and gets the API tasks onto the new list
/// (the steps in the module's documentation); returns what the user should know.
async fn change_named(
    d: &Deployment,
    templates: &Templates,
    name: &str,
    action: NamedAction,
) -> Result<Vec<String>> {
    let names = &d.names;
    let parameter = names.api_tokens_parameter.as_str();

    // Everything is read, and the request checked, before the first write.
    let api_service = [names.api_service.as_str()];
    let (stored, live_services) =
        tokio::try_join!(tokens::read(d), services::describe(d, &api_service))?;
    let not_deployed = || Error::NotDeployed {
        app: names.app.clone(),
        region: d.region().to_owned(),
    };
    let service = live_services
        .get(&names.api_service)
        .filter(|s| s.status() == Some("ACTIVE"))
        .ok_or_else(not_deployed)?;
    // The revision the service runs: the secret is added to or removed from exactly that one,
    // so a token change deploys nothing else (not a revision a rollback left behind). Should
    // it be gone (deregistered by hand), the family's latest.
    let family = templates.api.family(&names.app);
    let running = match service.task_definition() {
        Some(arn) => task_definitions::latest(d, arn).await?,
        None => None,
    };
    let current = match running {
        Some(current) => current,
        None => task_definitions::latest(d, &family)
            .await?
            .ok_or_else(not_deployed)?,
    };

    let before = stored.as_ref().map(|s| s.list.clone()).unwrap_or_default();
    let mut after = before.clone();
    let (detail, mut notes) = match action {
        NamedAction::Create if before.get(name).is_some() => (
            format!("`{name}` kept"),
            vec![format!(
                "token `{name}` exists and was kept (`--rotate` replaces it); `provisioner token --name {name}` prints it"
            )],
        ),
        NamedAction::Create => {
            after.set(name, secrets::generate_secret()?);
            (
                format!("`{name}` added"),
                vec![format!(
                    "token `{name}` created; `provisioner token --name {name}` prints it"
                )],
            )
        }
        NamedAction::Rotate if before.get(name).is_none() => {
            return Err(unknown(d, name, &before));
        }
        NamedAction::Rotate => {
            after.set(name, secrets::generate_secret()?);
            (
                format!("`{name}` replaced"),
                vec![format!(
                    "token `{name}` rotated; `provisioner token --name {name}` prints it"
                )],
            )
        }
        NamedAction::Revoke if after.remove(name) => (
            format!("`{name}` removed"),
            vec![format!("token `{name}` revoked")],
        ),
        NamedAction::Revoke => (
            format!("no `{name}`"),
            vec![format!(
                "app `{}` has no token named `{name}`: nothing to revoke",
                names.app
            )],
        ),
        NamedAction::Show => return Ok(Vec::new()),
    };
    after.check_size(parameter)?;
    let value_changed = after != before;

    let mut wanted = current.spec.clone();
    let arn = tokens::parameter_arn(d);
    tokens::apply(
        &mut wanted,
        &templates.api.service,
        (!after.is_empty()).then_some(arn.as_str()),
    );
    let adds_secret = !after.is_empty() && !wanted.matches(&current.spec);

    // 1. The execution role may read the parameter (`up` grants it; a deployment made before
    //    named tokens existed gets the grant now).
    if adds_secret {
        let redis_auth = secrets::redis_password_enabled(d).await?;
        let values = up::policy_values(d, crate::cli::DEFAULT_REDIS_IMAGE);
        iam::ensure_role(
            d,
            &up::execution_role_spec(d, templates, &values, redis_auth),
        )
        .await?;
    }
    // 2. The parameter, unless the last token goes (step 5): from here on a task that starts
    //    reads it.
    if !value_changed {
        let action = if stored.is_some() {
            Action::Unchanged
        } else {
            Action::Absent
        };
        d.record("ssm-parameter", parameter, action, Some(detail.clone()));
    } else if !after.is_empty() {
        tokens::write(d, stored.as_ref(), &after, detail.clone()).await?;
    }
    // 3. The revision with or without the secret.
    let revision = task_definitions::ensure_task_definition(d, &wanted, Some(&current)).await?;
    // 4. The API's tasks onto it, or onto the new value.
    let moved = service.task_definition() != Some(revision.as_str());
    let stale = !value_changed
        && stored
            .as_ref()
            .is_some_and(|s| tokens::newer_than_deployment(s, service));
    let runs = service.desired_count() > 0;
    if moved || (runs && (value_changed || stale)) {
        services::restart(d, &names.api_service, moved.then_some(revision.as_str())).await?;
        if runs && value_changed {
            notes.push("the API tasks are being replaced to pick up the change (`provisioner status` shows the rollout)".into());
        }
    }
    if stale && runs {
        notes.push("the API tasks started before the named tokens' last change (an earlier run was cut off before it replaced them): they are being replaced".into());
    }
    if !runs {
        notes.push(
            "the API is stopped: its tasks get the named tokens when `provisioner start` runs them"
                .into(),
        );
    }
    // 5. The parameter of the last token, now that no new task reads it.
    if value_changed && after.is_empty() {
        tokens::delete(d, detail).await?;
    }
    Ok(notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(name: Option<&str>) -> TokenArgs {
        TokenArgs {
            name: name.map(str::to_owned),
            create: false,
            rotate: false,
            revoke: false,
            list: false,
            dry_run: false,
        }
    }

    #[test]
    fn requests_follow_the_flags() {
        assert_eq!(
            TokenRequest::from_args(&args(None)).unwrap(),
            TokenRequest::Show
        );
        let rotate = TokenArgs {
            rotate: true,
            ..args(None)
        };
        assert_eq!(
            TokenRequest::from_args(&rotate).unwrap(),
            TokenRequest::Rotate
        );
        let list = TokenArgs {
            list: true,
            ..args(None)
        };
        assert_eq!(TokenRequest::from_args(&list).unwrap(), TokenRequest::List);
        let create = TokenArgs {
            create: true,
            ..args(Some("timer-1"))
        };
        let request = TokenRequest::from_args(&create).unwrap();
        assert_eq!(
            request,
            TokenRequest::Named {
                name: "timer-1".into(),
                action: NamedAction::Create
            }
        );
        assert!(request.changes());
        assert!(!TokenRequest::from_args(&args(Some("t"))).unwrap().changes());
    }

    #[test]
    fn bad_and_reserved_names_are_bad_input() {
        for name in ["default", "a b", ""] {
            let err = TokenRequest::from_args(&args(Some(name))).unwrap_err();
            assert!(matches!(err, Error::InvalidTokenName { .. }), "{err}");
            assert_eq!(err.to_json()["kind"], "bad_input");
        }
    }
}
