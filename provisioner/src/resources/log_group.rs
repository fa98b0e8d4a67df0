//! The CloudWatch log group both containers write to (`/ecs/<app>`, streams `api/…` and
//! `redis/…`), with a retention so logs do not cost money forever.

use aws_sdk_cloudwatchlogs::types::LogGroup;

use crate::error::{Error, Result, absent_when};
use crate::plan::{Action, Deployment};
use crate::resources::ownership;

/// The app's log group as it is now; `None` when it does not exist; an error when a group of
/// that name is not the app's.
pub async fn find_log_group(d: &Deployment) -> Result<Option<LogGroup>> {
    let name = &d.names.log_group;
    let found = d
        .clients
        .logs
        .describe_log_groups()
        .log_group_name_prefix(name)
        .send()
        .await
        .map_err(|e| Error::aws("DescribeLogGroups", format!("log group {name}"), e))?;
    let Some(group) = found
        .log_groups()
        .iter()
        .find(|g| g.log_group_name() == Some(name.as_str()))
        .cloned()
    else {
        return Ok(None);
    };
    // `logGroupArn` is the ARN tagging takes; `arn` ends in `:*` (its streams).
    let arn = group
        .log_group_arn()
        .or_else(|| group.arn().map(|a| a.trim_end_matches(":*")))
        .ok_or_else(|| Error::missing(format!("log group {name}"), "logGroupArn"))?;
    let tags = d
        .clients
        .logs
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .map_err(|e| Error::aws("ListTagsForResource", format!("log group {name}"), e))?;
    ownership::check_tags(
        d,
        || format!("log group {name}"),
        &tags.tags().cloned().unwrap_or_default(),
    )?;
    Ok(Some(group))
}

/// Creates the group or converges its retention.
pub async fn ensure_log_group(d: &Deployment, retention_days: i32) -> Result<()> {
    let logs = &d.clients.logs;
    let name = &d.names.log_group;
    let resource = format!("log group {name}");
    let live = find_log_group(d).await?;
    match live {
        Some(group) if group.retention_in_days() == Some(retention_days) => {
            d.record("log-group", name, Action::Unchanged, None);
            return Ok(());
        }
        Some(group) => {
            let detail = format!(
                "retention {:?} → {retention_days} days",
                group.retention_in_days()
            );
            if !d.record("log-group", name, Action::Update, Some(detail)) {
                return Ok(());
            }
        }
        None => {
            if !d.record(
                "log-group",
                name,
                Action::Create,
                Some(format!("retention {retention_days} days")),
            ) {
                return Ok(());
            }
            let created = logs
                .create_log_group()
                .log_group_name(name)
                .set_tags(Some(
                    d.names
                        .tags()
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect(),
                ))
                .send()
                .await;
            match created {
                Ok(_) => {}
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_resource_already_exists_exception()) => {}
                Err(e) => return Err(Error::aws("CreateLogGroup", resource, e)),
            }
        }
    }
    logs.put_retention_policy()
        .log_group_name(name)
        .retention_in_days(retention_days)
        .send()
        .await
        .map_err(|e| Error::aws("PutRetentionPolicy", resource, e))?;
    Ok(())
}

/// Deletes the group and its logs.
pub async fn delete_log_group(d: &Deployment) -> Result<()> {
    let name = &d.names.log_group;
    if find_log_group(d).await?.is_none() {
        d.record("log-group", name, Action::Absent, None);
        return Ok(());
    }
    let out = d
        .clients
        .logs
        .delete_log_group()
        .log_group_name(name)
        .send()
        .await;
    let deleted = absent_when(
        out,
        |e| e.is_resource_not_found_exception(),
        "DeleteLogGroup",
        format!("log group {name}"),
    )?;
    d.record(
        "log-group",
        name,
        Action::of_deletion(deleted.is_some()),
        None,
    );
    Ok(())
}
