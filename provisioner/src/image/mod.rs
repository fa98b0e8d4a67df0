//! The service image: built (natively or with Docker), or given; pushed to ECR (or any OCI
//! registry) and referred to by digest. Also copies Redis between registries.
//!
//! # Where the image comes from ([`ImageSource`])
//! - `--image URI` → [`ImageSource::Given`]: checked to exist (`HEAD` of its manifest) and
//!   resolved to a digest *before* anything is deployed; nothing is built or pushed.
//! - Docker, when a daemon answers ([`detect_builder`]): `docker build --platform linux/amd64 -f
//!   service/Dockerfile` ([`prepare_docker_image`], before any write to AWS), then `docker tag`,
//!   `docker login --password-stdin`, `docker push` ([`push_docker_image`]).
//! - Otherwise the native builder: a static `timing-service` binary packed into a one-layer OCI
//!   image (`/timing-service`, entrypoint, port 8080/tcp, user 65532:65532) and pushed over the
//!   OCI distribution API — no daemon, reproducible (same binary → same digest).
//!
//! # Publishing ([`publish_service_image`])
//! The tag is the git commit (`<40-hex sha>`, `-dirty` when the tree has changes; see
//! [`git`]). The manifest under the tag is checked first, then each blob; only what the
//! registry lacks is sent (see [`registry`], which speaks the OCI distribution protocol through
//! `oci-client`; a blob cut off mid-upload is sent again whole). The result's [`PublishedImage::reference_by_digest`]
//! (`<repository URI>@sha256:...`) goes into the task definition, so an unchanged image gives
//! an unchanged task definition.
//!
//! # Endpoint versus repository URI ([`Destination`])
//! Requests go to `Destination::endpoint` — the registry host of the app's ECR repository URI,
//! or `--registry-endpoint` for a private mirror or a test registry on loopback (plain `http`
//! only for loopback). The ECR token goes only there ([`Destination::for_ecr`]): not to the
//! proxy endpoint `GetAuthorizationToken` names, nor to a token realm on another host. The task
//! definition gets `Destination::public_repository_uri`, the ECR URI.
//!
//! # Wiring into `provisioner up`
//! Flags: `--image URI` → `ImageSource::Given`; `--builder auto|docker|native` (default `auto`
//! = [`detect_builder`]); `--registry-endpoint URL` → `Destination::endpoint` (default: the
//! registry host of the app's repository URI, not the proxy endpoint [`ecr_auth`] returns);
//! `--mirror-redis` → [`mirror_image`] into the app's Redis repository, whose
//! `reference_by_digest` replaces the public Redis image.
//! ```text
//! let dest = Destination::for_ecr(repository, public_repository_uri, image::ecr_auth(&clients.ecr).await?,
//!     args.registry_endpoint.as_deref())?;
//! let source = match args.image { Some(uri) => ImageSource::Given(uri), None => detect_builder().await };
//! // Before any service is touched: a missing --image fails here (ImageError::NotFound).
//! let api = publish_service_image(&PublishOptions::new(root, source, dest.clone()), &progress).await?;
//! // api.reference_by_digest → ${API_IMAGE} of task-definitions/api.json
//! // --mirror-redis: mirror_image(&MirrorSource::public(REDIS), &redis_dest, &UploadOptions::default(), &progress)
//! // --dry-run: prepare_native_image(&NativeBuild::service(root), &progress) gives tag + digest, pushes nothing
//! ```

pub mod build;
mod ecr;
pub mod error;
pub mod git;
pub mod mirror;
pub mod oci;
pub mod progress;
pub mod reference;
pub mod registry;

use std::path::PathBuf;

use serde::Serialize;

pub use build::{DockerBuild, NativeBuild, build_native, docker_available};

pub use ecr::ecr_auth;
pub use error::ImageError;
pub use mirror::{MirrorSource, mirror_image};
pub use oci::ImageContent;
pub use progress::{BlobOutcome, ConsoleProgress, Progress, SilentProgress};
pub use reference::{Endpoint, ImageRef};
pub use registry::{Registry, RegistryAuth, TransferStats, UploadOptions};

/// Where the service image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// An image built elsewhere (`--image URI`), used as given after checking it exists.
    Given(String),
    /// Build and push with the Docker daemon.
    Docker,
    /// Build a static binary and push an OCI image without a daemon.
    Native,
}

/// Docker when a daemon answers `docker info` within 5 s, the native builder otherwise.
pub async fn detect_builder() -> ImageSource {
    if docker_available().await {
        ImageSource::Docker
    } else {
        ImageSource::Native
    }
}

/// Where an image is pushed, and the name the task definition uses for it.
#[derive(Debug, Clone)]
pub struct Destination {
    /// Where the registry requests go (the repository's registry or `--registry-endpoint`).
    pub endpoint: Endpoint,
    /// Repository name in the registry (`timing-api`).
    pub repository: String,
    /// `<registry host>/<repository>` as the task definition names it (the ECR URI).
    pub public_repository_uri: String,
    /// Credentials (ECR: `AWS` + token).
    pub auth: Option<RegistryAuth>,
}

impl Destination {
    /// `<public repository URI>@<digest>`.
    pub fn reference_by_digest(&self, digest: &str) -> String {
        format!("{}@{digest}", self.public_repository_uri)
    }

    /// A connection to the repository at the endpoint, with the destination's credentials
    /// (for pull and push when `push`).
    async fn registry(&self, push: bool, upload: &UploadOptions) -> Result<Registry, ImageError> {
        Registry::connect(
            &self.endpoint,
            &self.repository,
            self.auth.as_ref(),
            push,
            upload,
        )
        .await
    }

    /// The registry host of the public repository URI.
    fn public_host(&self) -> &str {
        self.public_repository_uri
            .split_once('/')
            .map_or(self.public_repository_uri.as_str(), |(h, _)| h)
    }

    /// A repository of the app's ECR registry, with the ECR credentials from [`ecr_auth`].
    ///
    /// Requests (and so the token) go to `registry_endpoint` when the user named one
    /// (`--registry-endpoint`: a mirror, a test registry), else to the registry host of
    /// `repository_uri` itself. The proxy endpoint that came with the token is not used: it is
    /// whatever the ECR API (or an endpoint override) answered, and the token belongs to the
    /// account's registry only.
    pub fn for_ecr(
        repository: &str,
        repository_uri: &str,
        (auth, proxy_endpoint): (RegistryAuth, String),
        registry_endpoint: Option<&str>,
    ) -> Result<Self, ImageError> {
        let uri = ImageRef::parse(repository_uri)?;
        let endpoint = match registry_endpoint {
            Some(explicit) => Endpoint::parse(explicit)?,
            None => Endpoint::for_registry(&uri.registry)?,
        };
        if registry_endpoint.is_none()
            && Endpoint::parse(&proxy_endpoint).ok() != Some(endpoint.clone())
        {
            tracing::debug!(%proxy_endpoint, %endpoint, "ECR proxy endpoint differs from the repository's registry; using the registry");
        }
        Ok(Destination {
            endpoint,
            repository: repository.to_owned(),
            public_repository_uri: repository_uri.to_owned(),
            auth: Some(auth),
        })
    }
}

/// Everything [`publish_service_image`] needs.
#[derive(Debug, Clone)]
pub struct PublishOptions {
    /// Where the image comes from.
    pub source: ImageSource,
    /// Where it goes.
    pub destination: Destination,
    /// The native build (workspace root, its own target directory).
    pub native: NativeBuild,
    /// The Docker build (context and Dockerfile).
    pub docker: DockerBuild,
    /// Retries and time limits.
    pub upload: UploadOptions,
}

impl PublishOptions {
    /// Defaults for the service of the workspace at `workspace_root`: native target directory
    /// `target/image-native`, Dockerfile `service/Dockerfile`.
    pub fn new(
        workspace_root: impl Into<PathBuf>,
        source: ImageSource,
        destination: Destination,
    ) -> Self {
        let root = workspace_root.into();
        PublishOptions {
            source,
            destination,
            native: NativeBuild::service(&root),
            docker: DockerBuild::service(&root),
            upload: UploadOptions::default(),
        }
    }
}

/// The image the task definition should use, and what it took to get it there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublishedImage {
    /// `<repository URI>@sha256:...` — what goes into the task definition.
    pub reference_by_digest: String,
    /// The tag written (git commit for the service, source tag for a mirror), if any.
    pub tag: Option<String>,
    /// `sha256:...` of the manifest.
    pub digest: String,
    /// `native`, `docker`, `given` or `mirror`.
    pub builder: &'static str,
    /// Compressed size of config + layers, when known (not for Docker or given images).
    pub image_size: Option<u64>,
    /// Bytes and blobs sent or skipped (all zero for Docker, which does not report them, and
    /// for given images).
    #[serde(flatten)]
    pub transfer: TransferStats,
}

/// Builds (or checks) the service image and pushes it; see the module docs.
pub async fn publish_service_image(
    opts: &PublishOptions,
    progress: &dyn Progress,
) -> Result<PublishedImage, ImageError> {
    let dest = &opts.destination;
    match &opts.source {
        ImageSource::Given(reference) => resolve_given(reference, dest, &opts.upload).await,
        ImageSource::Native => {
            let (tag, image) = prepare_native_image(&opts.native, progress).await?;
            progress.step(&format!(
                "image {} ({}), pushing to {}/{}:{tag}",
                image.digest(),
                progress::human_bytes(image.size()),
                dest.endpoint,
                dest.repository
            ));
            push_image(dest, &image, &tag, &opts.upload, progress).await
        }
        ImageSource::Docker => {
            let image = prepare_docker_image(&opts.docker, progress).await?;
            push_docker_image(dest, &image, &opts.upload, progress).await
        }
    }
}

/// A service image Docker built and keeps locally, not pushed yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerImage {
    /// The tag it is pushed under (the git commit).
    pub tag: String,
    /// Its local name ([`build::docker_local_image`]).
    pub local: String,
}

/// Builds the service image with Docker without pushing it (so `up` can build before its first
/// write to AWS); [`push_docker_image`] pushes it.
pub async fn prepare_docker_image(
    build: &DockerBuild,
    progress: &dyn Progress,
) -> Result<DockerImage, ImageError> {
    let tag = git::image_tag(&build.workspace_root).await?;
    let local = build::docker_local_image(&tag);
    build::docker_build(build, &local, progress).await?;
    Ok(DockerImage { tag, local })
}

/// Pushes what [`prepare_docker_image`] built and checks that the registry serves the digest
/// Docker reported.
pub async fn push_docker_image(
    dest: &Destination,
    image: &DockerImage,
    upload: &UploadOptions,
    progress: &dyn Progress,
) -> Result<PublishedImage, ImageError> {
    let digest = build::docker_push(
        &image.local,
        &dest.endpoint,
        &dest.repository,
        &image.tag,
        dest.auth.as_ref(),
        progress,
    )
    .await?;
    // Trust but verify: the registry must serve the digest docker reported.
    let registry = dest.registry(false, upload).await?;
    if registry.manifest_digest(&digest).await?.is_none() {
        return Err(ImageError::NotFound {
            registry: registry.host(),
            reference: format!("{}@{digest} (reported by docker push)", dest.repository),
        });
    }
    Ok(PublishedImage {
        reference_by_digest: dest.reference_by_digest(&digest),
        tag: Some(image.tag.clone()),
        digest,
        builder: "docker",
        image_size: None,
        transfer: TransferStats::default(),
    })
}

/// Builds and packs the native image without pushing it (for `--dry-run`): its tag and content
/// (`ImageContent::digest` is what a push would deploy).
pub async fn prepare_native_image(
    build: &NativeBuild,
    progress: &dyn Progress,
) -> Result<(String, ImageContent), ImageError> {
    let tag = git::image_tag(&build.workspace_root).await?;
    let binary = build_native(build, progress).await?;
    Ok((tag, oci::service_image(&binary)?))
}

/// Pushes built image content under `tag`: manifest checked first, then each blob; only what
/// the registry lacks is sent. The digest is read back from the registry and compared.
pub async fn push_image(
    dest: &Destination,
    image: &ImageContent,
    tag: &str,
    upload: &UploadOptions,
    progress: &dyn Progress,
) -> Result<PublishedImage, ImageError> {
    let registry = dest.registry(true, upload).await?;
    let digest = image.digest();
    let mut stats = TransferStats::default();
    if registry.manifest_digest(tag).await?.as_deref() == Some(digest.as_str()) {
        stats.blobs_skipped = image.blobs().count() as u32;
        progress.step(&format!("{}:{tag} is already {digest}", dest.repository));
    } else {
        for blob in image.blobs() {
            stats.record(registry.push_blob(blob, progress).await?);
        }
        registry
            .put_manifest(tag, &image.manifest_media_type, &image.manifest)
            .await?;
        stats.manifest_uploaded = true;
        let read_back = registry.manifest_digest(tag).await?;
        if read_back.as_deref() != Some(digest.as_str()) {
            return Err(ImageError::DigestMismatch {
                registry: registry.host(),
                repository: dest.repository.clone(),
                what: format!("manifest `{tag}` read back"),
                expected: digest,
                actual: read_back.unwrap_or_else(|| "nothing".into()),
            });
        }
    }
    Ok(PublishedImage {
        reference_by_digest: dest.reference_by_digest(&digest),
        tag: Some(tag.to_string()),
        digest,
        builder: "native",
        image_size: Some(image.size()),
        transfer: stats,
    })
}

/// The digest an image reference resolves to, or `None` when it does not exist.
///
/// Requests go to `endpoint` when given (a mirror, a test registry), else to the reference's
/// own registry.
pub async fn resolve_image(
    reference: &str,
    endpoint: Option<&Endpoint>,
    auth: Option<&RegistryAuth>,
) -> Result<Option<String>, ImageError> {
    let image = ImageRef::parse(reference)?;
    let endpoint = match endpoint {
        Some(e) => e.clone(),
        None => Endpoint::for_registry(&image.registry)?,
    };
    let options = UploadOptions::default();
    let registry = Registry::connect(&endpoint, &image.repository, auth, false, &options).await?;
    let digest = registry.manifest_digest(image.manifest_reference()).await?;
    match (&image.digest, digest) {
        // A digest reference resolves to itself when present.
        (Some(wanted), Some(_)) => Ok(Some(wanted.clone())),
        (_, found) => Ok(found),
    }
}

/// Whether an image reference exists (`HEAD` of its manifest); see [`resolve_image`].
pub async fn image_exists(
    reference: &str,
    endpoint: Option<&Endpoint>,
    auth: Option<&RegistryAuth>,
) -> Result<bool, ImageError> {
    Ok(resolve_image(reference, endpoint, auth).await?.is_some())
}

/// `--image`: an image in the destination's own registry is checked through the destination
/// endpoint with its credentials; any other registry anonymously at its own endpoint.
async fn resolve_given(
    reference: &str,
    dest: &Destination,
    upload: &UploadOptions,
) -> Result<PublishedImage, ImageError> {
    let image = ImageRef::parse(reference)?;
    let own_registry = image.registry == dest.public_host();
    let (endpoint, auth) = if own_registry {
        (dest.endpoint.clone(), dest.auth.clone())
    } else {
        (Endpoint::for_registry(&image.registry)?, None)
    };
    let registry =
        Registry::connect(&endpoint, &image.repository, auth.as_ref(), false, upload).await?;
    let digest = registry
        .manifest_digest(image.manifest_reference())
        .await?
        .ok_or_else(|| ImageError::NotFound {
            registry: endpoint.host(),
            reference: reference.to_string(),
        })?;
    let digest = image.digest.clone().unwrap_or(digest);
    Ok(PublishedImage {
        reference_by_digest: format!("{}@{digest}", image.name()),
        tag: image.tag.clone(),
        digest,
        builder: "given",
        image_size: None,
        transfer: TransferStats::default(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const REPOSITORY_URI: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com/timing/api";

    /// The ECR token goes to the repository's registry, not to the proxy endpoint the token
    /// came with (which an endpoint override or a proxy may have made anything).
    #[test]
    fn ecr_token_goes_to_the_repository_registry_or_the_named_mirror() {
        let auth = RegistryAuth::new("AWS", "token");
        let elsewhere = (auth.clone(), "https://collector.example.com".to_owned());
        let dest =
            Destination::for_ecr("timing/api", REPOSITORY_URI, elsewhere.clone(), None).unwrap();
        assert_eq!(
            dest.endpoint.as_str(),
            "https://123456789012.dkr.ecr.us-east-1.amazonaws.com"
        );
        assert_eq!(dest.repository, "timing/api");
        let mirror = Destination::for_ecr(
            "timing/api",
            REPOSITORY_URI,
            elsewhere,
            Some("http://127.0.0.1:5000"),
        )
        .unwrap();
        assert_eq!(mirror.endpoint.as_str(), "http://127.0.0.1:5000");
        assert_eq!(mirror.public_repository_uri, REPOSITORY_URI);
    }
}
