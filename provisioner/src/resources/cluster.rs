//! The ECS cluster of the app (named after it). Fargate needs no instances, so the cluster
//! itself costs nothing; it is the namespace of the app's services.

use aws_sdk_ecs::types::{ClusterField, Tag};

use crate::error::{Error, Result, absent_when};
use crate::plan::{Action, Deployment};
use crate::resources::ownership;

/// Whether the cluster exists and is active; an error when a cluster of that name is not the
/// app's.
pub async fn cluster_is_active(d: &Deployment) -> Result<bool> {
    let name = &d.names.cluster;
    let out = d
        .clients
        .ecs
        .describe_clusters()
        .clusters(name)
        .include(ClusterField::Tags)
        .send()
        .await
        .map_err(|e| Error::aws("DescribeClusters", format!("ECS cluster {name}"), e))?;
    let Some(cluster) = out
        .clusters()
        .iter()
        .find(|c| c.cluster_name() == Some(name.as_str()) && c.status() == Some("ACTIVE"))
    else {
        return Ok(false);
    };
    ownership::check_tags(d, || format!("ECS cluster {name}"), cluster.tags())?;
    Ok(true)
}

/// Creates the cluster when it is missing or inactive.
pub async fn ensure_cluster(d: &Deployment) -> Result<()> {
    let name = &d.names.cluster;
    if cluster_is_active(d).await? {
        d.record("ecs-cluster", name, Action::Unchanged, None);
        return Ok(());
    }
    if !d.record("ecs-cluster", name, Action::Create, None) {
        return Ok(());
    }
    d.clients
        .ecs
        .create_cluster()
        .cluster_name(name)
        .set_tags(Some(ownership::app_tags(&d.names, |k, v| {
            Tag::builder().key(k).value(v).build()
        })))
        .send()
        .await
        .map_err(|e| Error::aws("CreateCluster", format!("ECS cluster {name}"), e))?;
    Ok(())
}

/// Deletes the cluster (its services must be gone first).
pub async fn delete_cluster(d: &Deployment) -> Result<()> {
    let name = &d.names.cluster;
    if !cluster_is_active(d).await? {
        d.record("ecs-cluster", name, Action::Absent, None);
        return Ok(());
    }
    d.record("ecs-cluster", name, Action::Delete, None);
    let out = d.clients.ecs.delete_cluster().cluster(name).send().await;
    absent_when(
        out,
        |e| e.is_cluster_not_found_exception(),
        "DeleteCluster",
        format!("ECS cluster {name}"),
    )?;
    Ok(())
}
