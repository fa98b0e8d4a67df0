//! Task-definition revisions. `RegisterTaskDefinition` always makes a new revision, so the
//! rendered file is compared with the family's latest active revision first and a revision is
//! registered only when they differ.

use aws_sdk_ecs::types::{Tag, TaskDefinitionField, TaskDefinitionStatus};

use crate::error::{Error, Result, absent_when};
use crate::plan::{Action, Deployment, KNOWN_AFTER_APPLY};
use crate::resources::ownership;
use crate::taskdef::TaskDefinitionSpec;

/// The latest active revision of a family: its ARN and contents.
#[derive(Debug, Clone)]
pub struct LiveTaskDefinition {
    /// ARN with revision.
    pub arn: String,
    /// Revision number.
    pub revision: i32,
    /// Contents, read back into the mirror type.
    pub spec: TaskDefinitionSpec,
}

/// The latest active revision of `family` (or the revision a `family:revision` or an ARN
/// names), if any; an error when that revision is not the app's (a family of the same name
/// registered by someone else).
pub async fn latest(d: &Deployment, family: &str) -> Result<Option<LiveTaskDefinition>> {
    let out = d
        .clients
        .ecs
        .describe_task_definition()
        .task_definition(family)
        .include(TaskDefinitionField::Tags)
        .send()
        .await;
    // ECS answers a ClientException for a family it does not know.
    let found = absent_when(
        out,
        |e| e.is_client_exception(),
        "DescribeTaskDefinition",
        format!("task definition {family}"),
    )?;
    if let Some(out) = &found {
        ownership::check_tags(d, || format!("task definition family {family}"), out.tags())?;
    }
    Ok(found.and_then(|out| {
        out.task_definition()
            .filter(|t| t.status() == Some(&TaskDefinitionStatus::Active))
            .and_then(|t| {
                Some(LiveTaskDefinition {
                    arn: t.task_definition_arn()?.to_owned(),
                    revision: t.revision(),
                    spec: TaskDefinitionSpec::from_live(t),
                })
            })
    }))
}

/// Registers a revision when the latest differs from `spec`; returns the ARN to deploy.
pub async fn ensure_task_definition(
    d: &Deployment,
    spec: &TaskDefinitionSpec,
    live: Option<&LiveTaskDefinition>,
) -> Result<String> {
    let family = &spec.family;
    let action = match live {
        Some(live) if spec.matches(&live.spec) => {
            d.record(
                "task-definition",
                format!("{family}:{}", live.revision),
                Action::Unchanged,
                None,
            );
            return Ok(live.arn.clone());
        }
        Some(live) => {
            let detail = describe_difference(spec, &live.spec);
            (
                Action::Update,
                format!("{family}:{} → {}", live.revision, live.revision + 1),
                Some(detail),
            )
        }
        None => (Action::Create, format!("{family}:1"), None),
    };
    if !d.record("task-definition", action.1, action.0, action.2) {
        return Ok(KNOWN_AFTER_APPLY.to_owned());
    }
    let tags = ownership::app_tags(&d.names, |k, v| Tag::builder().key(k).value(v).build());
    let out = spec
        .register_request(&d.clients.ecs)?
        .set_tags(Some(tags))
        .send()
        .await
        .map_err(|e| {
            Error::aws(
                "RegisterTaskDefinition",
                format!("task definition {family}"),
                e,
            )
        })?;
    out.task_definition()
        .and_then(|t| t.task_definition_arn())
        .map(str::to_owned)
        .ok_or_else(|| Error::missing(format!("task definition {family}"), "taskDefinitionArn"))
}

/// Which top-level parts of the definition differ, for the plan output.
fn describe_difference(wanted: &TaskDefinitionSpec, live: &TaskDefinitionSpec) -> String {
    let (wanted, live) = (wanted.normalized(), live.normalized());
    let mut parts = Vec::new();
    for container in &wanted.container_definitions {
        match live.container(&container.name) {
            Some(other) if other == container => {}
            Some(other) => {
                let (a, b) = (serde_json::to_value(container), serde_json::to_value(other));
                if let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) = (a, b)
                {
                    let mut keys: Vec<String> = a
                        .iter()
                        .filter(|(k, v)| b.get(*k) != Some(v))
                        .map(|(k, _)| k.clone())
                        .collect();
                    keys.extend(b.keys().filter(|k| !a.contains_key(*k)).cloned());
                    parts.push(format!("container {}: {}", container.name, keys.join(", ")));
                }
            }
            None => parts.push(format!("container {} added", container.name)),
        }
    }
    let mut wanted_top = wanted.clone();
    let mut live_top = live.clone();
    wanted_top.container_definitions.clear();
    live_top.container_definitions.clear();
    if wanted_top != live_top {
        parts.push("task settings".into());
    }
    if parts.is_empty() {
        "containers reordered".into()
    } else {
        parts.join("; ")
    }
}

/// Deregisters every active revision of `family` (exactly that family, not others sharing
/// its prefix).
pub async fn delete_family(d: &Deployment, family: &str) -> Result<()> {
    let ecs = &d.clients.ecs;
    let mut arns = Vec::new();
    let mut pages = ecs
        .list_task_definitions()
        .family_prefix(family)
        .status(TaskDefinitionStatus::Active)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| {
            Error::aws(
                "ListTaskDefinitions",
                format!("task definition family {family}"),
                e,
            )
        })?;
        arns.extend(
            page.task_definition_arns()
                .iter()
                .filter(|arn| family_of(arn) == Some(family))
                .cloned(),
        );
    }
    if arns.is_empty() {
        d.record("task-definition", family, Action::Absent, None);
        return Ok(());
    }
    // Every revision the provisioner registers is tagged: the latest one answers for the family.
    latest(d, family).await?;
    d.record(
        "task-definition",
        family,
        Action::Delete,
        Some(format!("{} revision(s)", arns.len())),
    );
    for arn in arns {
        let out = ecs
            .deregister_task_definition()
            .task_definition(&arn)
            .send()
            .await;
        // ECS answers a ClientException for a revision already gone.
        absent_when(
            out,
            |e| e.is_client_exception(),
            "DeregisterTaskDefinition",
            arn,
        )?;
    }
    Ok(())
}

/// `arn:aws:ecs:region:account:task-definition/family:3` → `family`.
pub fn family_of(arn: &str) -> Option<&str> {
    arn.rsplit_once(":task-definition/")?
        .1
        .rsplit_once(':')
        .map(|(family, _)| family)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_is_read_from_the_arn() {
        assert_eq!(
            family_of("arn:aws:ecs:eu-north-1:123456789012:task-definition/timing-api:3"),
            Some("timing-api")
        );
        assert_eq!(
            family_of("arn:aws:ecs:eu-north-1:123456789012:task-definition/timing-api-x:1"),
            Some("timing-api-x")
        );
        assert_eq!(family_of("nonsense"), None);
    }
}
