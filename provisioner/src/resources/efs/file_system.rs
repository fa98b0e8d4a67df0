//! The file system: found by creation token, created encrypted, and its resource policy.

use std::collections::BTreeMap;

use aws_sdk_efs::operation::create_file_system::CreateFileSystemError;
use aws_sdk_efs::types::{FileSystemDescription, LifeCycleState, PerformanceMode, ThroughputMode};

use super::volume::{DataVolume, FILE_SYSTEM_LIMIT, POLL_INTERVAL, not_found, tags};
use crate::config::Templates;
use crate::error::{Error, Result};
use crate::plan::{Action, Deployment, KNOWN_AFTER_APPLY};
use crate::policy::matches_live;
use crate::resources::{ownership, poll_until};

/// The app's file system, if it exists (and is not being deleted); an error when a file
/// system of that creation token is not the app's.
pub(super) async fn find_file_system(d: &Deployment) -> Result<Option<FileSystemDescription>> {
    let token = &d.names.file_system;
    let out = d
        .clients
        .efs
        .describe_file_systems()
        .creation_token(token)
        .send()
        .await
        .map_err(|e| Error::aws("DescribeFileSystems", format!("EFS file system {token}"), e))?;
    let found = out
        .file_systems()
        .iter()
        .find(|fs| {
            !matches!(
                fs.life_cycle_state(),
                LifeCycleState::Deleted | LifeCycleState::Deleting
            )
        })
        .cloned();
    if let Some(fs) = &found {
        ownership::check_tags(
            d,
            || format!("EFS file system {} ({token})", fs.file_system_id()),
            fs.tags(),
        )?;
    }
    Ok(found)
}

/// Bytes of race data stored (EFS `SizeInBytes.Value`, metered periodically by EFS, not live), or
/// `None` when the app has no file system. For `status`.
pub async fn data_size(d: &Deployment) -> Result<Option<i64>> {
    Ok(find_file_system(d)
        .await?
        .and_then(|fs| fs.size_in_bytes().map(|s| s.value())))
}

fn file_system_arn(d: &Deployment, fs: &FileSystemDescription) -> String {
    fs.file_system_arn().map(str::to_owned).unwrap_or_else(|| {
        format!(
            "arn:{}:elasticfilesystem:{}:{}:file-system/{}",
            crate::aws::partition_of(d.region()),
            d.region(),
            d.account,
            fs.file_system_id()
        )
    })
}

/// Creates the file system if missing and waits until it is available; returns its ID and
/// ARN (placeholders in a dry run that would create it).
pub async fn ensure_file_system(d: &Deployment) -> Result<(String, String)> {
    let token = &d.names.file_system;
    let resource = format!("EFS file system {token}");
    let efs = &d.clients.efs;
    let id = match find_file_system(d).await? {
        Some(fs) => {
            let detail = (fs.encrypted() != Some(true)).then(|| {
                "not encrypted at rest (EFS cannot change that; copy the data to a new file system)"
                    .to_owned()
            });
            if let Some(detail) = &detail {
                tracing::warn!("{resource}: {detail}");
            }
            d.record(
                "efs-file-system",
                token.as_str(),
                Action::Unchanged,
                Some(fs.file_system_id().to_owned()).or(detail),
            );
            if *fs.life_cycle_state() == LifeCycleState::Available {
                return Ok((fs.file_system_id().to_owned(), file_system_arn(d, &fs)));
            }
            fs.file_system_id().to_owned()
        }
        None => {
            if !d.record(
                "efs-file-system",
                token.as_str(),
                Action::Create,
                Some("encrypted".into()),
            ) {
                return Ok((KNOWN_AFTER_APPLY.to_owned(), KNOWN_AFTER_APPLY.to_owned()));
            }
            let created = efs
                .create_file_system()
                .creation_token(token)
                .encrypted(true)
                .performance_mode(PerformanceMode::GeneralPurpose)
                .throughput_mode(ThroughputMode::Bursting)
                .set_tags(Some(tags(d, token)?))
                .send()
                .await;
            match created {
                Ok(out) => out.file_system_id().to_owned(),
                // A concurrent run (or a retried request) created it: use that one.
                Err(e) => match e.as_service_error() {
                    Some(CreateFileSystemError::FileSystemAlreadyExists(exists)) => {
                        exists.file_system_id().to_owned()
                    }
                    _ => return Err(Error::aws("CreateFileSystem", resource, e)),
                },
            }
        }
    };
    if d.dry_run {
        return Ok((id, KNOWN_AFTER_APPLY.to_owned()));
    }
    poll_until(
        &format!("{resource} ({id}) to become available"),
        d.limit(FILE_SYSTEM_LIMIT),
        POLL_INTERVAL,
        || async {
            let out = efs
                .describe_file_systems()
                .file_system_id(&id)
                .send()
                .await
                .map_err(|e| Error::aws("DescribeFileSystems", resource.clone(), e))?;
            let Some(fs) = out.file_systems().first() else {
                return Ok(None);
            };
            match fs.life_cycle_state() {
                LifeCycleState::Available => Ok(Some((id.clone(), file_system_arn(d, fs)))),
                LifeCycleState::Error => Err(Error::Aws {
                    operation: "DescribeFileSystems",
                    resource: resource.clone(),
                    code: None,
                    message: format!("file system {id} is in state `error`"),
                }),
                _ => Ok(None),
            }
        },
    )
    .await
}

/// Puts the file system policy when it means something else than
/// `policies/efs-file-system.json`. Run after the Redis task role exists (the policy names
/// it). While a replaced access point is kept, the policy allows it too.
pub async fn ensure_file_system_policy(
    d: &Deployment,
    templates: &Templates,
    values: &BTreeMap<&'static str, String>,
    data: &DataVolume,
) -> Result<()> {
    let wanted = data.render(&templates.file_system_policy, values);
    let id = &data.file_system_id;
    let resource = format!("EFS file system policy of {}", d.names.file_system);
    let live = if id == KNOWN_AFTER_APPLY {
        None
    } else {
        match d
            .clients
            .efs
            .describe_file_system_policy()
            .file_system_id(id)
            .send()
            .await
        {
            Ok(out) => Some(out.policy().map(str::to_owned)),
            Err(e) if not_found(&e, "PolicyNotFound") => None,
            Err(e) => return Err(Error::aws("DescribeFileSystemPolicy", resource, e)),
        }
    };
    let action = match &live {
        Some(live) if matches_live(live.as_deref(), &wanted) => {
            d.record(
                "efs-policy",
                d.names.file_system.as_str(),
                Action::Unchanged,
                None,
            );
            return Ok(());
        }
        Some(_) => Action::Update,
        None => Action::Create,
    };
    if !d.record("efs-policy", d.names.file_system.as_str(), action, None) {
        return Ok(());
    }
    d.clients
        .efs
        .put_file_system_policy()
        .file_system_id(id)
        .policy(wanted.to_string())
        .send()
        .await
        .map_err(|e| Error::aws("PutFileSystemPolicy", resource, e))?;
    Ok(())
}
