//! Redis's data on EFS, so competitors and times survive `stop`/`start`, deploys and the
//! replacement of the Redis task:
//!
//! - a file system, encrypted at rest, found again by its creation token `<app>-redis-data`
//!   (and tagged `Name`, `app`, `managed-by`); bursting throughput, so the frequent small
//!   writes of the AOF and the snapshots cost nothing beyond the stored bytes;
//! - a security group `<app>-efs` allowing NFS (2049) from the `redis` group only (owned, with
//!   the other groups, by [`network`]);
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

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_ec2::types::SecurityGroup;
use aws_sdk_efs::types::LifeCycleState;
use serde_json::Value;

use crate::config::Templates;
use crate::error::{Error, Result};
use crate::plan::{Action, Deployment};
use crate::resources::iam::RoleSpec;
use crate::resources::network::{self, Network};
use crate::resources::{poll_until, retry_bounded};

mod access_point;
mod file_system;
mod mount_targets;
mod volume;

pub use access_point::ensure_access_point;
pub use file_system::{data_size, ensure_file_system, ensure_file_system_policy};
pub use mount_targets::ensure_mount_targets;

pub use volume::{
    AccessPointIds, DataVolume, POSIX_GID, POSIX_UID, ROOT_DIRECTORY, ROOT_PERMISSIONS,
};

use access_point::{delete_access_point, find_access_points};
use file_system::find_file_system;
use mount_targets::{delete_mount_target, live_mount_targets, zone_of};
use volume::{POLL_INTERVAL, not_found};

/// The rest of the data volume once the file system (`ensure_file_system`: ID and ARN) is
/// there: its access point beside its security group and mount targets.
pub async fn ensure_data(
    d: &Deployment,
    network: &Network,
    (file_system_id, file_system_arn): (String, String),
    live_groups: &[SecurityGroup],
    redis_group: &str,
) -> Result<DataVolume> {
    let (((access_point_id, access_point_arn), replaced), ()) =
        tokio::try_join!(ensure_access_point(d, &file_system_id), async {
            let group =
                network::ensure_efs_security_group(d, network, live_groups, redis_group).await?;
            ensure_mount_targets(d, &file_system_id, network, &group).await
        })?;
    Ok(DataVolume {
        file_system_id,
        file_system_arn,
        access_point_id,
        access_point_arn,
        replaced,
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
    RoleSpec {
        name: d.names.redis_task_role.clone(),
        description: format!(
            "the Redis container of app {} mounts its data access point",
            d.names.app
        ),
        trust_policy: trust,
        managed_policies: Vec::new(),
        permissions_boundary: crate::resources::iam::boundary_arn(d),
        inline_policies: vec![(
            "efs".to_owned(),
            data.render(&templates.redis_task_policy, values),
        )],
    }
}

/// Once the Redis revision that mounts the new access point is stable: the policies allow
/// only it, and the access points it replaced are deleted.
pub async fn retire_replaced(
    d: &Deployment,
    templates: &Templates,
    values: &BTreeMap<&'static str, String>,
    trust: Value,
    data: &DataVolume,
) -> Result<()> {
    if data.replaced.is_empty() {
        return Ok(());
    }
    let settled = DataVolume {
        replaced: Vec::new(),
        ..data.clone()
    };
    crate::resources::iam::ensure_role(d, &redis_task_role(d, templates, values, trust, &settled))
        .await?;
    ensure_file_system_policy(d, templates, values, &settled).await?;
    access_point::retire_access_points(d, &data.replaced).await
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
                d.limit(limit),
                POLL_INTERVAL,
                || async { Ok(live_mount_targets(d, id).await?.is_empty().then_some(())) },
            )
            .await?;
        }
    }
    network::delete_efs_security_group(d, limit).await?;

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
        d.limit(limit),
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
        d.limit(limit),
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
