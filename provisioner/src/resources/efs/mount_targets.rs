//! One mount target per availability zone of the task subnets (EFS allows one per zone; a
//! task in another subnet of the same zone uses that zone's mount target), in the `<app>-efs`
//! security group. Mount targets take about 90 s to create or delete on AWS: both are polled,
//! bounded by the command's `--timeout`.

use std::time::Duration;

use aws_sdk_efs::types::{LifeCycleState, MountTargetDescription};

use super::volume::{MOUNT_TARGET_LIMIT, POLL_INTERVAL, not_found};
use crate::error::{Error, Result};
use crate::plan::{Action, Deployment, KNOWN_AFTER_APPLY};
use crate::resources::network::Network;
use crate::resources::poll_until;

pub(super) async fn live_mount_targets(
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

pub(super) fn zone_of(mt: &MountTargetDescription) -> String {
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
        wait_mount_targets_gone(d, file_system_id, d.limit(MOUNT_TARGET_LIMIT)).await?;
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
        d.limit(MOUNT_TARGET_LIMIT),
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

pub(super) async fn delete_mount_target(d: &Deployment, id: &str) -> Result<()> {
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
