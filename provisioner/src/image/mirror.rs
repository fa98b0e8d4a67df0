//! Registry-to-registry copies (`--mirror-redis`), without Docker.
//!
//! The source manifest is read; a multi-platform index is resolved to its linux/amd64 entry
//! (Fargate's `X86_64`). The destination is checked first: when the tag already names the same
//! digest nothing is transferred. Otherwise each blob the destination lacks is downloaded to a
//! temporary file (its digest checked) and pushed the same way as the native image, then the
//! platform manifest is put unchanged — byte for byte, so its digest is the
//! upstream digest and provenance can be checked against the public registry.

use serde::Deserialize;

use super::error::ImageError;
use super::oci::{
    Blob, BlobData, DOCKER_MANIFEST, OCI_MANIFEST, OciImageIndex, OciImageManifest, amd64_manifest,
    is_index, sha256_digest,
};
use super::progress::{BlobOutcome, Progress};
use super::reference::{Endpoint, ImageRef};
use super::registry::{Registry, RegistryAuth, TransferStats, UploadOptions};
use super::{Destination, PublishedImage};

/// The platform picked from multi-platform images.
pub const MIRROR_OS: &str = "linux";
/// The architecture picked from multi-platform images.
pub const MIRROR_ARCH: &str = "amd64";

/// Where to copy from.
#[derive(Debug, Clone)]
pub struct MirrorSource {
    /// Image reference (`redis:7.4-alpine`, `public.ecr.aws/docker/library/redis:7.4`).
    pub reference: String,
    /// Where to send the requests instead of the reference's own registry (tests, mirrors).
    pub endpoint: Option<Endpoint>,
    /// Credentials for the source, if it needs any (anonymous Bearer tokens need none).
    pub auth: Option<RegistryAuth>,
}

impl MirrorSource {
    /// A public image, pulled anonymously from its own registry.
    pub fn public(reference: impl Into<String>) -> Self {
        MirrorSource {
            reference: reference.into(),
            endpoint: None,
            auth: None,
        }
    }
}

/// Copies the linux/amd64 image of `source` into `dest` under the source's tag.
pub async fn mirror_image(
    source: &MirrorSource,
    dest: &Destination,
    upload: &UploadOptions,
    progress: &dyn Progress,
) -> Result<PublishedImage, ImageError> {
    let src_ref = ImageRef::parse(&source.reference)?;
    let src_endpoint = match &source.endpoint {
        Some(e) => e.clone(),
        None => Endpoint::for_registry(&src_ref.registry)?,
    };
    progress.step(&format!(
        "mirroring {src_ref} ({MIRROR_OS}/{MIRROR_ARCH}) to {}",
        dest.public_repository_uri
    ));
    let src = Registry::connect(
        &src_endpoint,
        &src_ref.repository,
        source.auth.as_ref(),
        false,
        upload,
    )
    .await?;
    let reference = src_ref.manifest_reference().to_string();
    let (media_type, bytes) =
        src.get_manifest(&reference)
            .await?
            .ok_or_else(|| ImageError::NotFound {
                registry: src.host(),
                reference: src_ref.to_string(),
            })?;
    let (media_type, bytes) = if is_index(&media_type) {
        let index: OciImageIndex = parse(&bytes, &src, &reference)?;
        let platform_digest = amd64_manifest(&index).ok_or_else(|| ImageError::BadManifest {
            registry: src.host(),
            reference: src_ref.to_string(),
            reason: format!("the index has no {MIRROR_OS}/{MIRROR_ARCH} manifest"),
        })?;
        let (media_type, bytes) =
            src.get_manifest(&platform_digest)
                .await?
                .ok_or_else(|| ImageError::NotFound {
                    registry: src.host(),
                    reference: format!("{}@{platform_digest}", src_ref.name()),
                })?;
        (media_type, bytes)
    } else {
        (media_type, bytes)
    };
    if media_type != OCI_MANIFEST && media_type != DOCKER_MANIFEST {
        return Err(ImageError::BadManifest {
            registry: src.host(),
            reference: src_ref.to_string(),
            reason: format!("unsupported manifest media type `{media_type}`"),
        });
    }
    let manifest: OciImageManifest = parse(&bytes, &src, &reference)?;
    let digest = sha256_digest(&bytes);
    let tag = src_ref.tag.clone();
    let dest_reference = tag.clone().unwrap_or_else(|| digest.clone());

    let dst = dest.registry(true, upload).await?;
    let all_blobs: Vec<_> = std::iter::once(&manifest.config)
        .chain(manifest.layers.iter())
        .collect();
    let size = all_blobs
        .iter()
        .map(|d| u64::try_from(d.size).unwrap_or_default())
        .sum();
    let mut stats = TransferStats::default();
    if dst.manifest_digest(&dest_reference).await?.as_deref() == Some(digest.as_str()) {
        stats.blobs_skipped = all_blobs.len() as u32;
        progress.step(&format!(
            "{}:{dest_reference} is already {digest}",
            dest.public_repository_uri
        ));
    } else {
        let tmp = tempfile::tempdir()
            .map_err(|e| ImageError::io("creating", "a temporary directory for blobs", e))?;
        for (i, desc) in all_blobs.iter().enumerate() {
            let label = if i == 0 {
                "config".to_string()
            } else {
                format!("layer {i}")
            };
            if dst.blob_exists(&desc.digest).await? {
                stats.blobs_skipped += 1;
                progress.blob_finished(&label, &desc.digest, BlobOutcome::Skipped);
                continue;
            }
            let path = tmp.path().join(desc.digest.replace(':', "-"));
            let blob_size = u64::try_from(desc.size).unwrap_or_default();
            src.download_blob(&desc.digest, &path, progress, &label, blob_size)
                .await?;
            let blob = Blob {
                descriptor: (*desc).clone(),
                data: BlobData::File(path.clone()),
                label,
            };
            // Checked missing just above: upload without asking again.
            stats.record(dst.upload_blob(&blob, progress).await?);
            // Keep disk use to one blob at a time.
            let _ = std::fs::remove_file(&path);
        }
        dst.put_manifest(&dest_reference, &media_type, &bytes)
            .await?;
        stats.manifest_uploaded = true;
    }
    Ok(PublishedImage {
        reference_by_digest: dest.reference_by_digest(&digest),
        tag,
        digest,
        builder: "mirror",
        image_size: Some(size),
        transfer: stats,
    })
}

fn parse<'a, T: Deserialize<'a>>(
    bytes: &'a [u8],
    registry: &Registry,
    reference: &str,
) -> Result<T, ImageError> {
    serde_json::from_slice(bytes).map_err(|e| ImageError::BadManifest {
        registry: registry.host(),
        reference: format!("{}:{reference}", registry.repository()),
        reason: e.to_string(),
    })
}
