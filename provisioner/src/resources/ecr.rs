//! The ECR repository of the service image (`<app>/api`): scanned on push, with a lifecycle
//! policy that keeps the last N images so storage does not grow without bound.

use aws_sdk_ecr::types::{ImageIdentifier, ImageScanningConfiguration, Repository, Tag};
use serde_json::{Value, json};

use crate::error::{Error, Result, absent_when};
use crate::plan::{Action, Deployment, KNOWN_AFTER_APPLY};
use crate::policy::{parse_document, same_meaning};
use crate::resources::ownership;

/// The lifecycle policy keeping the newest `keep` images.
pub fn lifecycle_policy(keep: u32) -> Value {
    json!({
        "rules": [{
            "rulePriority": 1,
            "description": format!("keep the last {keep} images"),
            "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": keep},
            "action": {"type": "expire"}
        }]
    })
}

/// The repository as it is now; `None` when it does not exist; an error when it is not the
/// app's.
async fn find_repository(d: &Deployment, name: &str) -> Result<Option<Repository>> {
    let out = d
        .clients
        .ecr
        .describe_repositories()
        .repository_names(name)
        .send()
        .await;
    let found = absent_when(
        out,
        |e| e.is_repository_not_found_exception(),
        "DescribeRepositories",
        format!("ECR repository {name}"),
    )?;
    let Some(repository) = found.and_then(|out| out.repositories().first().cloned()) else {
        return Ok(None);
    };
    let resource = || format!("ECR repository {name}");
    let arn = repository
        .repository_arn()
        .ok_or_else(|| Error::missing(resource(), "repository.repositoryArn"))?;
    let tags = d
        .clients
        .ecr
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .map_err(|e| Error::aws("ListTagsForResource", resource(), e))?;
    ownership::check_tags(d, resource, tags.tags())?;
    Ok(Some(repository))
}

/// The URI of the app's repository `name`, when it exists (read only).
pub async fn existing_repository_uri(d: &Deployment, name: &str) -> Result<Option<String>> {
    Ok(find_repository(d, name)
        .await?
        .and_then(|r| r.repository_uri().map(str::to_owned)))
}

/// Creates the repository or converges its settings; returns its URI.
pub async fn ensure_repository(d: &Deployment, name: &str, keep_images: u32) -> Result<String> {
    let ecr = &d.clients.ecr;
    let resource = format!("ECR repository {name}");
    let live = find_repository(d, name).await?;
    let wanted_policy = lifecycle_policy(keep_images);

    let Some(repository) = live else {
        if !d.record(
            "ecr-repository",
            name,
            Action::Create,
            Some(format!("scan on push, keep {keep_images} images")),
        ) {
            return Ok(KNOWN_AFTER_APPLY.to_owned());
        }
        let tags = ownership::sdk_tags(&d.names, |k, v| Tag::builder().key(k).value(v).build())
            .map_err(Error::request(resource.clone()))?;
        let created = ecr
            .create_repository()
            .repository_name(name)
            .image_scanning_configuration(
                ImageScanningConfiguration::builder()
                    .scan_on_push(true)
                    .build(),
            )
            .set_tags(Some(tags))
            .send()
            .await;
        let uri = match created {
            Ok(out) => out
                .repository()
                .and_then(|r| r.repository_uri())
                .map(str::to_owned),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_repository_already_exists_exception()) =>
            {
                None
            }
            Err(e) => return Err(Error::aws("CreateRepository", resource, e)),
        };
        // Created since the read (by a concurrent run, or by someone else): read like any
        // existing one, so its policy is set only if it is the app's.
        let uri = match uri {
            Some(uri) => uri,
            None => existing_repository_uri(d, name)
                .await?
                .ok_or_else(|| Error::missing(resource, "repository.repositoryUri"))?,
        };
        put_lifecycle_policy(d, name, &wanted_policy).await?;
        return Ok(uri);
    };

    let uri = repository
        .repository_uri()
        .map(str::to_owned)
        .ok_or_else(|| Error::missing(resource.clone(), "repository.repositoryUri"))?;
    let scan_on_push = repository
        .image_scanning_configuration()
        .is_some_and(|c| c.scan_on_push());
    let out = ecr
        .get_lifecycle_policy()
        .repository_name(name)
        .send()
        .await;
    let live_policy = absent_when(
        out,
        |e| e.is_lifecycle_policy_not_found_exception(),
        "GetLifecyclePolicy",
        &resource,
    )?
    .and_then(|out| out.lifecycle_policy_text().and_then(parse_document));
    let policy_matches = live_policy
        .as_ref()
        .is_some_and(|live| same_meaning(live, &wanted_policy));
    if scan_on_push && policy_matches {
        d.record("ecr-repository", name, Action::Unchanged, None);
        return Ok(uri);
    }
    let mut detail = Vec::new();
    if !scan_on_push {
        detail.push("scan on push".to_owned());
    }
    if !policy_matches {
        detail.push(format!("lifecycle: keep {keep_images} images"));
    }
    if !d.record(
        "ecr-repository",
        name,
        Action::Update,
        Some(detail.join(", ")),
    ) {
        return Ok(uri);
    }
    if !scan_on_push {
        ecr.put_image_scanning_configuration()
            .repository_name(name)
            .image_scanning_configuration(
                ImageScanningConfiguration::builder()
                    .scan_on_push(true)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| Error::aws("PutImageScanningConfiguration", resource, e))?;
    }
    if !policy_matches {
        put_lifecycle_policy(d, name, &wanted_policy).await?;
    }
    Ok(uri)
}

async fn put_lifecycle_policy(d: &Deployment, name: &str, policy: &Value) -> Result<()> {
    d.clients
        .ecr
        .put_lifecycle_policy()
        .repository_name(name)
        .lifecycle_policy_text(policy.to_string())
        .send()
        .await
        .map_err(|e| Error::aws("PutLifecyclePolicy", format!("ECR repository {name}"), e))?;
    Ok(())
}

/// The digest of an image in one of the app's repositories, by tag or digest; `None` when
/// the repository or the image does not exist. Uses the ECR API, so it needs no registry access.
pub async fn image_digest(
    d: &Deployment,
    repository: &str,
    reference: &str,
) -> Result<Option<String>> {
    let id = if reference.starts_with("sha256:") {
        ImageIdentifier::builder().image_digest(reference).build()
    } else {
        ImageIdentifier::builder().image_tag(reference).build()
    };
    let out = d
        .clients
        .ecr
        .describe_images()
        .repository_name(repository)
        .image_ids(id)
        .send()
        .await;
    let found = absent_when(
        out,
        |e| e.is_image_not_found_exception() || e.is_repository_not_found_exception(),
        "DescribeImages",
        format!("image {repository}:{reference}"),
    )?;
    Ok(found.and_then(|out| {
        out.image_details()
            .first()
            .and_then(|i| i.image_digest())
            .map(str::to_owned)
    }))
}

/// Total size of the images stored in a repository (for `stop`'s cost note).
pub async fn stored_bytes(d: &Deployment, repository: &str) -> Result<i64> {
    let mut total = 0;
    let mut pages = d
        .clients
        .ecr
        .describe_images()
        .repository_name(repository)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let Some(page) = absent_when(
            page,
            |e| e.is_repository_not_found_exception(),
            "DescribeImages",
            format!("ECR repository {repository}"),
        )?
        else {
            return Ok(0);
        };
        total += page
            .image_details()
            .iter()
            .filter_map(|i| i.image_size_in_bytes())
            .sum::<i64>();
    }
    Ok(total)
}

/// Deletes a repository of the app with every image in it.
pub async fn delete_repository(d: &Deployment, name: &str) -> Result<()> {
    if find_repository(d, name).await?.is_none() {
        d.record("ecr-repository", name, Action::Absent, None);
        return Ok(());
    }
    let out = d
        .clients
        .ecr
        .delete_repository()
        .repository_name(name)
        .force(true)
        .send()
        .await;
    let deleted = absent_when(
        out,
        |e| e.is_repository_not_found_exception(),
        "DeleteRepository",
        format!("ECR repository {name}"),
    )?;
    d.record(
        "ecr-repository",
        name,
        Action::of_deletion(deleted.is_some()),
        None,
    );
    Ok(())
}
