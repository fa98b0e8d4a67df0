//! The access point Redis mounts. Access points cannot be changed: one whose owner or
//! directory differs from what is wanted is replaced by a new one, which gives the Redis task
//! definition a new revision. The old one is kept, and still allowed by the policies, until
//! that revision is stable ([`retire_access_points`]): the Redis task running on it must not
//! lose its storage while its replacement starts (or if the deployment rolls back).

use aws_sdk_efs::types::{
    AccessPointDescription, CreationInfo, LifeCycleState, PosixUser, RootDirectory,
};

use super::volume::{
    AccessPointIds, FILE_SYSTEM_LIMIT, POLL_INTERVAL, POSIX_GID, POSIX_UID, ROOT_DIRECTORY,
    ROOT_PERMISSIONS, not_found, tags,
};
use crate::error::{Error, Result};
use crate::plan::{Action, Deployment, KNOWN_AFTER_APPLY};
use crate::resources::ownership::{self, Tags};
use crate::resources::poll_until;

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

fn access_point_ids(ap: &AccessPointDescription) -> Option<AccessPointIds> {
    Some((
        ap.access_point_id()?.to_owned(),
        ap.access_point_arn()?.to_owned(),
    ))
}

/// The app's access points on the file system (found by `Name` tag and app tags).
pub(super) async fn find_access_points(
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
            ownership::is_ours(&d.names, ap.tags().pairs())
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

/// Creates the access point if missing or different; returns it and the app's other access
/// points, which stay until [`retire_access_points`].
pub async fn ensure_access_point(
    d: &Deployment,
    file_system_id: &str,
) -> Result<(AccessPointIds, Vec<AccessPointIds>)> {
    let name = &d.names.access_point;
    let resource = format!("EFS access point {name}");
    let live = if file_system_id == KNOWN_AFTER_APPLY {
        Vec::new()
    } else {
        find_access_points(d, file_system_id).await?
    };
    let wanted = live.iter().find(|ap| wanted_access_point(ap));
    let others: Vec<AccessPointIds> = live
        .iter()
        .filter(|ap| !wanted_access_point(ap))
        .filter_map(access_point_ids)
        .collect();
    if let Some(ids) = wanted.and_then(access_point_ids) {
        d.record(
            "efs-access-point",
            name.as_str(),
            Action::Unchanged,
            Some(ids.0.clone()),
        );
        return Ok((ids, others));
    }
    let detail =
        format!("uid {POSIX_UID}, gid {POSIX_GID}, {ROOT_DIRECTORY} mode {ROOT_PERMISSIONS}");
    let action = if live.is_empty() {
        Action::Create
    } else {
        Action::Update
    };
    if !d.record("efs-access-point", name.as_str(), action, Some(detail)) {
        let planned = (KNOWN_AFTER_APPLY.to_owned(), KNOWN_AFTER_APPLY.to_owned());
        return Ok((planned, others));
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
    poll_until(
        &format!("{resource} ({}) to become available", ids.0),
        d.limit(FILE_SYSTEM_LIMIT),
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
    Ok((ids, others))
}

/// Deletes access points the Redis task no longer uses (replaced ones, once the revision that
/// mounts the new one is stable).
pub async fn retire_access_points(d: &Deployment, retired: &[AccessPointIds]) -> Result<()> {
    for (id, _) in retired {
        if d.record(
            "efs-access-point",
            id.as_str(),
            Action::Delete,
            Some("replaced, no longer mounted".into()),
        ) {
            delete_access_point(d, id).await?;
        }
    }
    Ok(())
}

pub(super) async fn delete_access_point(d: &Deployment, id: &str) -> Result<()> {
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
