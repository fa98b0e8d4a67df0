//! Redis's data on EFS, so competitors and times survive `stop`/`start`, deploys and the
//! replacement of the Redis task:
//!
//! - a file system, encrypted at rest, found again by its creation token `<app>-redis-data`
//!   (and tagged `Name`, `app`, `managed-by`); bursting throughput, so the frequent small
//!   writes of the AOF and the snapshots cost nothing beyond the stored bytes;
//! - a security group `<app>-efs` allowing NFS (2049) from the `redis` group only;
//! - one mount target per availability zone of the task subnets (EFS allows one per zone; a
//!   task in another subnet of the same zone uses that zone's mount target), in that group;
//! - an access point `<app>-redis` that makes every NFS operation run as the official Alpine
//!   Redis image's `redis` user (uid 999, gid 1000) under `/redis`, created on first use with
//!   mode 0750, so the container needs no root and sees nothing else of the file system;
//! - the Redis task role (`policies/redis-task-role.json`): `ClientMount` and `ClientWrite`
//!   on this file system only through this access point. The task definition mounts it with
//!   transit encryption (TLS) and IAM authorisation.
//! - a file system policy (`policies/efs-file-system.json`) allowing NFS clients only as that
//!   role, through that access point, over TLS: without one, EFS lets any client that reaches
//!   a mount target mount the file system, and the role's own policy would restrict nothing.
//!
//! `down` deletes the mount targets and the security group (they reference the `redis` group,
//! which `down` deletes) and keeps the file system and its access point, so a later `up`
//! finds them by creation token and Redis starts on the same data. `down --delete-data`
//! deletes the access point and the file system too, after the mount targets are gone (AWS
//! refuses the other order). Mount targets take about 90 s to create or delete on AWS: both
//! are polled, bounded.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_sdk_ec2::types::SecurityGroup;
use aws_sdk_efs::operation::create_file_system::CreateFileSystemError;
use aws_sdk_efs::types::{
    AccessPointDescription, CreationInfo, FileSystemDescription, LifeCycleState,
    MountTargetDescription, PerformanceMode, PosixUser, RootDirectory, Tag, ThroughputMode,
};
use serde_json::Value;

use crate::config::{MANAGED_BY, TAG_APP, TAG_MANAGED_BY, Templates};
use crate::error::{Error, Result};
use crate::plan::{Action, Deployment, KNOWN_AFTER_APPLY};
use crate::resources::iam::RoleSpec;
use crate::resources::network::{self, Network, Rule, Source};
use crate::resources::{poll_until, retry_bounded};

/// Owner of every file Redis writes: the `redis` user of the official Alpine image.
pub const POSIX_UID: i64 = 999;
/// Group of that user in the Alpine image (the Debian image uses 999; the access point
/// enforces this identity whatever the container runs as, so either image works).
pub const POSIX_GID: i64 = 1000;
/// The directory of the file system Redis sees as its `/data`.
pub const ROOT_DIRECTORY: &str = "/redis";
/// Mode of that directory when EFS creates it.
pub const ROOT_PERMISSIONS: &str = "750";
/// NFS.
pub const NFS_PORT: i32 = 2049;

const FILE_SYSTEM_LIMIT: Duration = Duration::from_secs(300);
const MOUNT_TARGET_LIMIT: Duration = Duration::from_secs(600);
const POLL_INTERVAL: Duration = Duration::from_secs(3);

/// The file system and access point the Redis task mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataVolume {
    /// `fs-…`.
    pub file_system_id: String,
    /// Its ARN (the task role's policy resource).
    pub file_system_arn: String,
    /// `fsap-…`.
    pub access_point_id: String,
    /// Its ARN (the task role's policy condition).
    pub access_point_arn: String,
}

impl DataVolume {
    /// The placeholders of `task-definitions/redis.json` and `policies/redis-task-role.json`
    /// that only exist once the file system does.
    pub fn placeholder_values(&self) -> [(&'static str, String); 4] {
        [
            ("EFS_FILE_SYSTEM_ID", self.file_system_id.clone()),
            ("EFS_FILE_SYSTEM_ARN", self.file_system_arn.clone()),
            ("EFS_ACCESS_POINT_ID", self.access_point_id.clone()),
            ("EFS_ACCESS_POINT_ARN", self.access_point_arn.clone()),
        ]
    }
}

fn tags(d: &Deployment, name: &str) -> Result<Vec<Tag>> {
    d.names
        .tags()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .chain([("Name".to_owned(), name.to_owned())])
        .map(|(k, v)| {
            Tag::builder()
                .key(k)
                .value(v)
                .build()
                .map_err(Error::request(format!("EFS tags of {name}")))
        })
        .collect()
}

fn is_ours(d: &Deployment, tags: &[Tag]) -> bool {
    let has = |key: &str, value: &str| tags.iter().any(|t| t.key() == key && t.value() == value);
    has(TAG_APP, &d.names.app) && has(TAG_MANAGED_BY, MANAGED_BY)
}

fn not_found<E: aws_smithy_types::error::metadata::ProvideErrorMetadata, R>(
    e: &aws_smithy_runtime_api::client::result::SdkError<E, R>,
    code: &str,
) -> bool {
    crate::error::code_of(e) == Some(code)
}

/// The app's file system, if it exists (and is not being deleted).
async fn find_file_system(d: &Deployment) -> Result<Option<FileSystemDescription>> {
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
    if let Some(fs) = &found
        && !is_ours(d, fs.tags())
    {
        return Err(Error::NotOurs {
            resource: format!("EFS file system {} ({token})", fs.file_system_id()),
            app: d.names.app.clone(),
        });
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
        FILE_SYSTEM_LIMIT,
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

/// What the access point must be.
fn wanted_access_point(ap: &AccessPointDescription) -> bool {
    let user = ap.posix_user().is_some_and(|u| {
        u.uid() == POSIX_UID && u.gid() == POSIX_GID && u.secondary_gids().is_empty()
    });
    let root = ap.root_directory().is_some_and(|r| {
        r.path() == Some(ROOT_DIRECTORY)
            && r.creation_info().is_some_and(|c| {
                c.owner_uid() == POSIX_UID
                    && c.owner_gid() == POSIX_GID
                    && c.permissions().trim_start_matches('0') == ROOT_PERMISSIONS
            })
    });
    user && root
}

fn access_point_ids(ap: &AccessPointDescription) -> Option<(String, String)> {
    Some((
        ap.access_point_id()?.to_owned(),
        ap.access_point_arn()?.to_owned(),
    ))
}

/// The app's access points on the file system (found by `Name` tag and app tags).
async fn find_access_points(
    d: &Deployment,
    file_system_id: &str,
) -> Result<Vec<AccessPointDescription>> {
    let name = &d.names.access_point;
    let out = d
        .clients
        .efs
        .describe_access_points()
        .file_system_id(file_system_id)
        .send()
        .await
        .map_err(|e| {
            Error::aws(
                "DescribeAccessPoints",
                format!("EFS access point {name}"),
                e,
            )
        })?;
    Ok(out
        .access_points()
        .iter()
        .filter(|ap| {
            is_ours(d, ap.tags())
                && ap
                    .tags()
                    .iter()
                    .any(|t| t.key() == "Name" && t.value() == name.as_str())
                && !matches!(
                    ap.life_cycle_state(),
                    Some(LifeCycleState::Deleted | LifeCycleState::Deleting)
                )
        })
        .cloned()
        .collect())
}

/// Creates the access point if missing. Access points cannot be changed: one that differs
/// (another owner or directory) is replaced, which gives the task definition a new revision.
pub async fn ensure_access_point(d: &Deployment, file_system_id: &str) -> Result<(String, String)> {
    let name = &d.names.access_point;
    let resource = format!("EFS access point {name}");
    let live = if file_system_id == KNOWN_AFTER_APPLY {
        Vec::new()
    } else {
        find_access_points(d, file_system_id).await?
    };
    if let Some(ids) = live
        .iter()
        .find(|ap| wanted_access_point(ap))
        .and_then(access_point_ids)
    {
        d.record(
            "efs-access-point",
            name.as_str(),
            Action::Unchanged,
            Some(ids.0.clone()),
        );
        return Ok(ids);
    }
    let detail =
        format!("uid {POSIX_UID}, gid {POSIX_GID}, {ROOT_DIRECTORY} mode {ROOT_PERMISSIONS}");
    let action = if live.is_empty() {
        Action::Create
    } else {
        Action::Update
    };
    if !d.record("efs-access-point", name.as_str(), action, Some(detail)) {
        return Ok((KNOWN_AFTER_APPLY.to_owned(), KNOWN_AFTER_APPLY.to_owned()));
    }
    let efs = &d.clients.efs;
    let out = efs
        .create_access_point()
        .file_system_id(file_system_id)
        .posix_user(
            PosixUser::builder()
                .uid(POSIX_UID)
                .gid(POSIX_GID)
                .build()
                .map_err(Error::request(resource.clone()))?,
        )
        .root_directory(
            RootDirectory::builder()
                .path(ROOT_DIRECTORY)
                .creation_info(
                    CreationInfo::builder()
                        .owner_uid(POSIX_UID)
                        .owner_gid(POSIX_GID)
                        .permissions(ROOT_PERMISSIONS)
                        .build()
                        .map_err(Error::request(resource.clone()))?,
                )
                .build(),
        )
        .set_tags(Some(tags(d, name)?))
        .send()
        .await
        .map_err(|e| Error::aws("CreateAccessPoint", resource.clone(), e))?;
    let ids = match (out.access_point_id(), out.access_point_arn()) {
        (Some(id), Some(arn)) => (id.to_owned(), arn.to_owned()),
        _ => return Err(Error::missing(resource, "AccessPointId")),
    };
    // The old ones go; the task definition now names the new one.
    for old in live.iter().filter_map(|ap| ap.access_point_id()) {
        delete_access_point(d, old).await?;
    }
    poll_until(
        &format!("{resource} ({}) to become available", ids.0),
        FILE_SYSTEM_LIMIT,
        POLL_INTERVAL,
        || async {
            let out = efs
                .describe_access_points()
                .access_point_id(&ids.0)
                .send()
                .await
                .map_err(|e| Error::aws("DescribeAccessPoints", resource.clone(), e))?;
            let available = out.access_points().first().is_some_and(|ap| {
                matches!(
                    ap.life_cycle_state(),
                    None | Some(LifeCycleState::Available)
                )
            });
            Ok(available.then_some(()))
        },
    )
    .await?;
    Ok(ids)
}

async fn delete_access_point(d: &Deployment, id: &str) -> Result<()> {
    match d
        .clients
        .efs
        .delete_access_point()
        .access_point_id(id)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if not_found(&e, "AccessPointNotFound") => Ok(()),
        Err(e) => Err(Error::aws(
            "DeleteAccessPoint",
            format!("EFS access point {id}"),
            e,
        )),
    }
}

/// Creates the mount targets' group if missing; its only ingress rule is NFS from `redis`.
/// `live_groups`: the app's groups in the VPC as they are now.
pub async fn ensure_security_group(
    d: &Deployment,
    network: &Network,
    live_groups: &[SecurityGroup],
    redis_group: &str,
) -> Result<String> {
    let name = &d.names.efs_security_group;
    let live = live_groups
        .iter()
        .find(|g| g.group_name() == Some(name.as_str()));
    let id = match live {
        Some(group) => network::group_id(group)?,
        None => {
            network::create_group(
                d,
                name,
                "EFS mount targets of Redis's data, NFS from the Redis task only",
                &network.vpc_id,
            )
            .await?
        }
    };
    let wanted = BTreeSet::from([Rule::tcp(NFS_PORT, Source::Group(redis_group.to_owned()))]);
    let live_rules = live.map(network::live_rules).unwrap_or_default();
    network::converge_rules(
        d,
        name,
        &id,
        &live_rules,
        &wanted,
        "NFS from the Redis task",
    )
    .await?;
    Ok(id)
}

async fn live_mount_targets(
    d: &Deployment,
    file_system_id: &str,
) -> Result<Vec<MountTargetDescription>> {
    let out = d
        .clients
        .efs
        .describe_mount_targets()
        .file_system_id(file_system_id)
        .send()
        .await
        .map_err(|e| {
            Error::aws(
                "DescribeMountTargets",
                format!("mount targets of {file_system_id}"),
                e,
            )
        })?;
    Ok(out.mount_targets().to_vec())
}

fn zone_of(mt: &MountTargetDescription) -> String {
    mt.availability_zone_name().unwrap_or_default().to_owned()
}

/// One mount target per zone of the task subnets, in the VPC, in the `<app>-efs` group;
/// mount targets elsewhere (another VPC, a zone no longer used) are removed. Waits until
/// every mount target is available (Redis cannot start before).
pub async fn ensure_mount_targets(
    d: &Deployment,
    file_system_id: &str,
    network: &Network,
    group_id: &str,
) -> Result<()> {
    // Availability zone → the subnet its mount target goes in (the first task subnet there).
    let wanted = &network.zones;
    let live = if file_system_id == KNOWN_AFTER_APPLY {
        Vec::new()
    } else {
        live_mount_targets(d, file_system_id).await?
    };
    let gone = |mt: &MountTargetDescription| {
        matches!(
            mt.life_cycle_state(),
            LifeCycleState::Deleting | LifeCycleState::Deleted
        )
    };

    // Remove what is not wanted first: a file system's mount targets must all be in one VPC.
    let mut removed = Vec::new();
    for mt in live.iter().filter(|mt| !gone(mt)) {
        let in_vpc = mt.vpc_id() == Some(network.vpc_id.as_str());
        if in_vpc && wanted.contains_key(&zone_of(mt)) {
            continue;
        }
        let detail = format!(
            "{} in {}: {}",
            mt.mount_target_id(),
            mt.subnet_id(),
            if in_vpc {
                "zone no longer used"
            } else {
                "another VPC"
            }
        );
        if d.record(
            "efs-mount-target",
            zone_of(mt),
            Action::Delete,
            Some(detail),
        ) {
            delete_mount_target(d, mt.mount_target_id()).await?;
            removed.push(mt.mount_target_id().to_owned());
        }
    }
    if !removed.is_empty() || live.iter().any(gone) {
        wait_mount_targets_gone(d, file_system_id, MOUNT_TARGET_LIMIT).await?;
    }

    // Each zone's mount target converges on its own, concurrently.
    let zones = wanted.iter().map(|(zone, subnet)| {
        let live = &live;
        async move {
            let existing = live.iter().find(|mt| {
                !gone(mt) && &zone_of(mt) == zone && mt.vpc_id() == Some(network.vpc_id.as_str())
            });
            converge_mount_target(d, file_system_id, zone, subnet, existing, group_id).await
        }
    });
    let created = futures::future::try_join_all(zones)
        .await?
        .into_iter()
        .any(|created| created);
    let pending = live
        .iter()
        .any(|mt| *mt.life_cycle_state() == LifeCycleState::Creating);
    if d.dry_run || !(created || pending) {
        return Ok(());
    }
    poll_until(
        &format!("the mount targets of {file_system_id} to become available"),
        MOUNT_TARGET_LIMIT,
        POLL_INTERVAL,
        || async {
            let live = live_mount_targets(d, file_system_id).await?;
            if let Some(failed) = live
                .iter()
                .find(|mt| *mt.life_cycle_state() == LifeCycleState::Error)
            {
                return Err(Error::Aws {
                    operation: "DescribeMountTargets",
                    resource: format!("mount target {}", failed.mount_target_id()),
                    code: None,
                    message: "the mount target is in state `error`".into(),
                });
            }
            let ready = wanted.keys().all(|zone| {
                live.iter().any(|mt| {
                    &zone_of(mt) == zone && *mt.life_cycle_state() == LifeCycleState::Available
                })
            });
            Ok(ready.then_some(()))
        },
    )
    .await
}

/// One zone's mount target: checks the security groups of an existing one, else creates
/// one; returns whether it created one.
async fn converge_mount_target(
    d: &Deployment,
    file_system_id: &str,
    zone: &str,
    subnet: &str,
    existing: Option<&MountTargetDescription>,
    group_id: &str,
) -> Result<bool> {
    let efs = &d.clients.efs;
    let Some(mt) = existing else {
        if !d.record(
            "efs-mount-target",
            zone,
            Action::Create,
            Some(subnet.to_owned()),
        ) {
            return Ok(false);
        }
        let result = efs
            .create_mount_target()
            .file_system_id(file_system_id)
            .subnet_id(subnet)
            .security_groups(group_id)
            .send()
            .await;
        return match result {
            Ok(_) => Ok(true),
            // A concurrent run created the zone's mount target first.
            Err(e) if not_found(&e, "MountTargetConflict") => Ok(true),
            Err(e) => Err(Error::aws(
                "CreateMountTarget",
                format!("mount target of {file_system_id} in {subnet}"),
                e,
            )),
        };
    };
    let id = mt.mount_target_id();
    let groups = efs
        .describe_mount_target_security_groups()
        .mount_target_id(id)
        .send()
        .await
        .map_err(|e| {
            Error::aws(
                "DescribeMountTargetSecurityGroups",
                format!("mount target {id}"),
                e,
            )
        })?;
    if groups.security_groups() == [group_id.to_owned()] {
        d.record(
            "efs-mount-target",
            zone,
            Action::Unchanged,
            Some(mt.subnet_id().to_owned()),
        );
        return Ok(false);
    }
    let detail = format!(
        "security groups {:?} → [{group_id}]",
        groups.security_groups()
    );
    if d.record("efs-mount-target", zone, Action::Update, Some(detail)) {
        efs.modify_mount_target_security_groups()
            .mount_target_id(id)
            .security_groups(group_id)
            .send()
            .await
            .map_err(|e| {
                Error::aws(
                    "ModifyMountTargetSecurityGroups",
                    format!("mount target {id}"),
                    e,
                )
            })?;
    }
    Ok(false)
}

async fn delete_mount_target(d: &Deployment, id: &str) -> Result<()> {
    match d
        .clients
        .efs
        .delete_mount_target()
        .mount_target_id(id)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if not_found(&e, "MountTargetNotFound") => Ok(()),
        Err(e) => Err(Error::aws(
            "DeleteMountTarget",
            format!("EFS mount target {id}"),
            e,
        )),
    }
}

async fn wait_mount_targets_gone(
    d: &Deployment,
    file_system_id: &str,
    limit: Duration,
) -> Result<()> {
    poll_until(
        &format!("the removed mount targets of {file_system_id} to be deleted"),
        limit,
        POLL_INTERVAL,
        || async {
            let live = live_mount_targets(d, file_system_id).await?;
            let deleting = live
                .iter()
                .any(|mt| matches!(mt.life_cycle_state(), LifeCycleState::Deleting));
            Ok((!deleting).then_some(()))
        },
    )
    .await
}

/// The rest of the data volume once the file system (`ensure_file_system`: ID and ARN) is
/// there: its access point beside its security group and mount targets.
pub async fn ensure_data(
    d: &Deployment,
    network: &Network,
    (file_system_id, file_system_arn): (String, String),
    live_groups: &[SecurityGroup],
    redis_group: &str,
) -> Result<DataVolume> {
    let ((access_point_id, access_point_arn), ()) =
        tokio::try_join!(ensure_access_point(d, &file_system_id), async {
            let group = ensure_security_group(d, network, live_groups, redis_group).await?;
            ensure_mount_targets(d, &file_system_id, network, &group).await
        })?;
    Ok(DataVolume {
        file_system_id,
        file_system_arn,
        access_point_id,
        access_point_arn,
    })
}

/// The Redis task role: trusted by ECS tasks, allowed to mount only `data`'s access point.
pub fn redis_task_role(
    d: &Deployment,
    templates: &Templates,
    values: &BTreeMap<&'static str, String>,
    trust: Value,
    data: &DataVolume,
) -> RoleSpec {
    let mut values = values.clone();
    values.extend(data.placeholder_values());
    RoleSpec {
        name: d.names.redis_task_role.clone(),
        description: format!(
            "the Redis container of app {} mounts its data access point",
            d.names.app
        ),
        trust_policy: trust,
        managed_policies: Vec::new(),
        inline_policies: vec![(
            "efs".to_owned(),
            templates.redis_task_policy.render(&values),
        )],
    }
}

/// Puts the file system policy when it differs from `policies/efs-file-system.json`. Run
/// after the Redis task role exists (the policy names it).
pub async fn ensure_file_system_policy(
    d: &Deployment,
    templates: &Templates,
    values: &BTreeMap<&'static str, String>,
    data: &DataVolume,
) -> Result<()> {
    let mut values = values.clone();
    values.extend(data.placeholder_values());
    let wanted = templates.file_system_policy.render(&values);
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
            Ok(out) => out
                .policy()
                .and_then(|text| serde_json::from_str::<Value>(text).ok()),
            Err(e) if not_found(&e, "PolicyNotFound") => None,
            Err(e) => return Err(Error::aws("DescribeFileSystemPolicy", resource, e)),
        }
    };
    let action = match &live {
        Some(live) if *live == wanted => {
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

/// `down`'s part: mount targets (waited for), then the security group; the file system and
/// its access point only when `delete_data`. Returns the note for the report when the data
/// is kept.
pub async fn delete_data(
    d: &Deployment,
    delete_data: bool,
    limit: Duration,
) -> Result<Option<String>> {
    let token = &d.names.file_system;
    let fs = find_file_system(d).await?;
    let efs = &d.clients.efs;
    if let Some(fs) = &fs {
        let id = fs.file_system_id();
        let live = live_mount_targets(d, id).await?;
        for mt in &live {
            d.record(
                "efs-mount-target",
                zone_of(mt),
                Action::Delete,
                Some(mt.mount_target_id().to_owned()),
            );
            delete_mount_target(d, mt.mount_target_id()).await?;
        }
        if !live.is_empty() {
            poll_until(
                &format!("the mount targets of {id} to be deleted"),
                limit,
                POLL_INTERVAL,
                || async { Ok(live_mount_targets(d, id).await?.is_empty().then_some(())) },
            )
            .await?;
        }
    }
    delete_security_group(d, limit).await?;

    let Some(fs) = fs else {
        d.record("efs-file-system", token.as_str(), Action::Absent, None);
        return Ok(None);
    };
    let id = fs.file_system_id().to_owned();
    let size = fs.size_in_bytes().map(|s| s.value()).unwrap_or_default();
    if !delete_data {
        d.record(
            "efs-file-system",
            token.as_str(),
            Action::Unchanged,
            Some(format!("{id} kept, {size} bytes")),
        );
        return Ok(Some(format!(
            "race data kept: EFS file system {id} ({token}, {size} bytes) and its access point; the next `up` reattaches it, `down --delete-data` deletes it"
        )));
    }
    for ap in find_access_points(d, &id).await? {
        if let Some(ap_id) = ap.access_point_id() {
            d.record("efs-access-point", ap_id, Action::Delete, None);
            delete_access_point(d, ap_id).await?;
        }
    }
    d.record(
        "efs-file-system",
        token.as_str(),
        Action::Delete,
        Some(id.clone()),
    );
    let resource = format!("EFS file system {id}");
    retry_bounded(
        &format!("deleting {resource}"),
        limit,
        |e| e.aws_code() == Some("FileSystemInUse"),
        || async {
            match efs.delete_file_system().file_system_id(&id).send().await {
                Ok(_) => Ok(()),
                Err(e) if not_found(&e, "FileSystemNotFound") => Ok(()),
                Err(e) => Err(Error::aws("DeleteFileSystem", resource.clone(), e)),
            }
        },
    )
    .await?;
    poll_until(
        &format!("{resource} to be deleted"),
        limit,
        POLL_INTERVAL,
        || async {
            match efs.describe_file_systems().file_system_id(&id).send().await {
                Ok(out) => Ok(out
                    .file_systems()
                    .iter()
                    .all(|fs| *fs.life_cycle_state() == LifeCycleState::Deleted)
                    .then_some(())),
                Err(e) if not_found(&e, "FileSystemNotFound") => Ok(Some(())),
                Err(e) => Err(Error::aws("DescribeFileSystems", resource.clone(), e)),
            }
        },
    )
    .await
    .map(|()| None)
}

/// Deletes `<app>-efs`, retrying while the mount targets' network interfaces still hold it.
async fn delete_security_group(d: &Deployment, limit: Duration) -> Result<()> {
    let name = &d.names.efs_security_group;
    let found = network::find_groups(d, None, &[name]).await?;
    let Some(group) = found.first() else {
        d.record("security-group", name.as_str(), Action::Absent, None);
        return Ok(());
    };
    let id = network::group_id(group)?;
    network::delete_group(d, name, &id, limit).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access_point(uid: i64, path: &str, mode: &str) -> AccessPointDescription {
        AccessPointDescription::builder()
            .posix_user(
                PosixUser::builder()
                    .uid(uid)
                    .gid(POSIX_GID)
                    .build()
                    .unwrap(),
            )
            .root_directory(
                RootDirectory::builder()
                    .path(path)
                    .creation_info(
                        CreationInfo::builder()
                            .owner_uid(uid)
                            .owner_gid(POSIX_GID)
                            .permissions(mode)
                            .build()
                            .unwrap(),
                    )
                    .build(),
            )
            .build()
    }

    #[test]
    fn an_access_point_matches_only_with_owner_directory_and_mode() {
        assert!(wanted_access_point(&access_point(999, "/redis", "750")));
        assert!(wanted_access_point(&access_point(999, "/redis", "0750")));
        assert!(!wanted_access_point(&access_point(0, "/redis", "750")));
        assert!(!wanted_access_point(&access_point(999, "/", "750")));
        assert!(!wanted_access_point(&access_point(999, "/redis", "777")));
    }
}
