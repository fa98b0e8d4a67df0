//! The images `up` deploys: the service image (given with `--image` and checked to exist,
//! kept with `--keep-image`, or built from the workspace and pushed), and Redis (the public
//! image, or with `--mirror-redis` a copy in the app's own ECR repository). Both end up
//! referred to by digest where they are the app's, so an unchanged image gives an unchanged
//! task definition.

use std::path::Path;

use crate::cli::{Builder, DeployArgs};
use crate::error::{Error, Result};
use crate::image::{
    self, ConsoleProgress, Destination, Endpoint, ImageRef, ImageSource, MirrorSource,
    PublishOptions, RegistryAuth, UploadOptions,
};
use crate::plan::{Deployment, KNOWN_AFTER_APPLY};
use crate::resources::ecr;

/// The images to render into the task definitions.
#[derive(Debug, Clone)]
pub struct Images {
    /// `${API_IMAGE}`.
    pub api: String,
    /// `${REDIS_IMAGE}`.
    pub redis: String,
    /// What the user should know (built, pushed, not built in a plan).
    pub notes: Vec<String>,
}

/// Decides both images; builds, pushes or mirrors unless this is a dry run.
pub async fn service_images(
    d: &Deployment,
    args: &DeployArgs,
    root: &Path,
    repository_uri: &str,
    live_image: Option<String>,
) -> Result<Images> {
    let mut notes = Vec::new();
    let mut registry = RegistryAccess::default();
    let api = match (&args.image, args.keep_image) {
        (Some(given), _) => given_image(d, given, repository_uri).await?,
        (None, true) => live_image.ok_or_else(|| Error::InvalidArgument {
            flag: "--keep-image",
            message: "no API is deployed yet: pass --image, or leave both out to build the image"
                .into(),
        })?,
        (None, false) if d.dry_run => {
            notes.push("the service image is built and pushed by `up`, not by a plan; the plan assumes the running image".into());
            live_image.unwrap_or_else(|| KNOWN_AFTER_APPLY.to_owned())
        }
        (None, false) => {
            let destination = registry
                .destination(d, args, &d.names.repository, repository_uri)
                .await?;
            let source = match args.builder {
                Builder::Auto => image::detect_builder().await,
                Builder::Docker => ImageSource::Docker,
                Builder::Native => ImageSource::Native,
            };
            let published = image::publish_service_image(
                &PublishOptions::new(root, source, destination),
                &ConsoleProgress::auto(),
            )
            .await?;
            notes.push(format!(
                "service image {} ({} build, tag {}): {} bytes uploaded, {} blob(s) already in the registry",
                published.digest,
                published.builder,
                published.tag.as_deref().unwrap_or("-"),
                published.transfer.bytes_uploaded,
                published.transfer.blobs_skipped,
            ));
            published.reference_by_digest
        }
    };
    let redis = if args.mirror_redis {
        let uri = ecr::ensure_repository(d, &d.names.redis_repository, args.keep_images).await?;
        if d.dry_run {
            KNOWN_AFTER_APPLY.to_owned()
        } else {
            let destination = registry
                .destination(d, args, &d.names.redis_repository, &uri)
                .await?;
            let mirrored = image::mirror_image(
                &MirrorSource::public(&args.redis_image),
                &destination,
                &UploadOptions::default(),
                &ConsoleProgress::auto(),
            )
            .await?;
            notes.push(format!(
                "Redis mirrored from {} as {}",
                args.redis_image, mirrored.reference_by_digest
            ));
            mirrored.reference_by_digest
        }
    } else {
        args.redis_image.clone()
    };
    Ok(Images { api, redis, notes })
}

/// `--image`: an image in the app's own repository is checked with the ECR API (no registry
/// access needed) and pinned by digest; any other is checked at its registry anonymously.
async fn given_image(d: &Deployment, given: &str, repository_uri: &str) -> Result<String> {
    let reference = ImageRef::parse(given)?;
    let own = repository_uri != KNOWN_AFTER_APPLY && reference.name() == repository_uri;
    if own {
        let wanted = reference.manifest_reference();
        return match ecr::image_digest(d, &d.names.repository, wanted).await? {
            Some(digest) => Ok(format!("{repository_uri}@{digest}")),
            None => Err(Error::ImageNotFound {
                image: given.to_owned(),
                repository: repository_uri.to_owned(),
            }),
        };
    }
    if d.dry_run && reference.repository == d.names.repository {
        // The app's repository does not exist yet, so neither does the image: `up` will say so.
        return Ok(given.to_owned());
    }
    match image::resolve_image(given, None, None).await? {
        Some(digest) => Ok(format!("{}@{digest}", reference.name())),
        None => Err(Error::ImageNotFound {
            image: given.to_owned(),
            repository: reference.name(),
        }),
    }
}

/// The registry credentials, fetched once and only when something is pushed.
#[derive(Default)]
struct RegistryAccess {
    auth: Option<(RegistryAuth, String)>,
}

impl RegistryAccess {
    async fn destination(
        &mut self,
        d: &Deployment,
        args: &DeployArgs,
        repository: &str,
        repository_uri: &str,
    ) -> Result<Destination> {
        let (auth, proxy_endpoint) = match &self.auth {
            Some(auth) => auth.clone(),
            None => {
                let fetched = image::ecr_auth(&d.clients.ecr).await?;
                self.auth = Some(fetched.clone());
                fetched
            }
        };
        let endpoint =
            Endpoint::parse(args.registry_endpoint.as_deref().unwrap_or(&proxy_endpoint))?;
        Ok(Destination {
            endpoint,
            repository: repository.to_owned(),
            public_repository_uri: repository_uri.to_owned(),
            auth: Some(auth),
        })
    }
}
