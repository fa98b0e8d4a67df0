//! The images `up` deploys: the service image (given with `--image` and checked to exist,
//! kept with `--keep-image`, or built from the workspace and pushed), and Redis (the public
//! image, or with `--mirror-redis` a copy in the app's own ECR repository). Both end up
//! referred to by digest where they are the app's, so an unchanged image gives an unchanged
//! task definition.
//!
//! It runs in two phases around `up`'s writes: [`prepare`] before the first mutating AWS call
//! (a given image is checked, a native image is built), so that a failed build or a missing
//! image leaves AWS untouched; [`publish`] once the repositories exist (push, mirror).

use std::path::Path;

use crate::cli::{Builder, DeployArgs};
use crate::error::{Error, Result};
use crate::image::{
    self, ConsoleProgress, Destination, DockerBuild, DockerImage, ImageContent, ImageRef,
    ImageSource, MirrorSource, NativeBuild, PublishedImage, RegistryAuth, UploadOptions,
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

/// The service image as decided before anything is written.
pub enum ServiceImage {
    /// Deploy this reference (given and checked, kept, or what a plan assumes).
    Ready(String),
    /// Built natively here; pushed by [`publish`].
    Built {
        /// The tag to push it under.
        tag: String,
        /// Its content (boxed: it is large beside a reference).
        image: Box<ImageContent>,
    },
    /// Built here by Docker, kept locally; pushed by [`publish`].
    Docker(DockerImage),
}

/// Decides the service image before the first mutating AWS call: a given image is checked
/// (in the app's own repository through the ECR API, anywhere else at its registry), a native
/// image is built. `live_image`: the image the API runs now; `repository_uri`: the app's
/// repository, when it exists. Returns notes for the report too.
pub async fn prepare(
    d: &Deployment,
    args: &DeployArgs,
    root: &Path,
    live_image: Option<String>,
    repository_uri: Option<&str>,
) -> Result<(ServiceImage, Vec<String>)> {
    let mut notes = Vec::new();
    let image = match (&args.image, args.keep_image) {
        (Some(given), _) => ServiceImage::Ready(given_image(d, given, repository_uri).await?),
        (None, true) => ServiceImage::Ready(live_image.ok_or_else(|| Error::InvalidArgument {
            flag: "--keep-image",
            message:
                "no API is deployed yet: pass --image, or leave both out to build the image".into(),
        })?),
        (None, false) if d.dry_run => {
            notes.push("the service image is built and pushed by `up`, not by a plan; the plan assumes the running image".into());
            ServiceImage::Ready(live_image.unwrap_or_else(|| KNOWN_AFTER_APPLY.to_owned()))
        }
        (None, false) => {
            let source = match args.builder {
                Builder::Auto => image::detect_builder().await,
                Builder::Docker => ImageSource::Docker,
                Builder::Native => ImageSource::Native,
            };
            if matches!(source, ImageSource::Docker) {
                ServiceImage::Docker(
                    image::prepare_docker_image(
                        &DockerBuild::service(root),
                        &ConsoleProgress::auto(),
                    )
                    .await?,
                )
            } else {
                let (tag, image) = image::prepare_native_image(
                    &NativeBuild::service(root),
                    &ConsoleProgress::auto(),
                )
                .await?;
                ServiceImage::Built {
                    tag,
                    image: Box::new(image),
                }
            }
        }
    };
    Ok((image, notes))
}

/// Pushes what [`prepare`] built and decides Redis's image (mirrored with `--mirror-redis`),
/// once the repositories exist; a dry run pushes nothing.
pub async fn publish(
    d: &Deployment,
    args: &DeployArgs,
    service: ServiceImage,
    mut notes: Vec<String>,
    repository_uri: &str,
) -> Result<Images> {
    let mut registry = RegistryAccess::default();
    let progress = ConsoleProgress::auto();
    let upload = UploadOptions::default();
    let api = match service {
        ServiceImage::Ready(reference) => reference,
        ServiceImage::Built { tag, image } => {
            let destination = registry
                .destination(d, args, &d.names.repository, repository_uri)
                .await?;
            let published =
                image::push_image(&destination, &image, &tag, &upload, &progress).await?;
            pushed(&mut notes, published)
        }
        ServiceImage::Docker(image) => {
            let destination = registry
                .destination(d, args, &d.names.repository, repository_uri)
                .await?;
            let published =
                image::push_docker_image(&destination, &image, &upload, &progress).await?;
            pushed(&mut notes, published)
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
                &upload,
                &progress,
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

/// Notes what was pushed; returns the reference by digest to deploy.
fn pushed(notes: &mut Vec<String>, published: PublishedImage) -> String {
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

/// `--image`: an image in the app's own repository is checked with the ECR API (no registry
/// access needed) and pinned by digest; any other is checked at its registry anonymously.
async fn given_image(d: &Deployment, given: &str, repository_uri: Option<&str>) -> Result<String> {
    let reference = ImageRef::parse(given)?;
    if let Some(repository_uri) = repository_uri
        && reference.name() == repository_uri
    {
        let wanted = reference.manifest_reference();
        return match ecr::image_digest(d, &d.names.repository, wanted).await? {
            Some(digest) => Ok(format!("{repository_uri}@{digest}")),
            None => Err(Error::ImageNotFound {
                image: given.to_owned(),
                repository: repository_uri.to_owned(),
            }),
        };
    }
    if repository_uri.is_none() && reference.repository == d.names.repository {
        // The app's repository does not exist yet, so neither does the image.
        if d.dry_run {
            return Ok(given.to_owned());
        }
        return Err(Error::ImageNotFound {
            image: given.to_owned(),
            repository: reference.name(),
        });
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
        let auth = match &self.auth {
            Some(auth) => auth.clone(),
            None => {
                let fetched = image::ecr_auth(&d.clients.ecr).await?;
                self.auth = Some(fetched.clone());
                fetched
            }
        };
        // The token goes to the repository's own registry, or to the mirror the user named.
        Ok(Destination::for_ecr(
            repository,
            repository_uri,
            auth,
            args.registry_endpoint.as_deref(),
        )?)
    }
}
