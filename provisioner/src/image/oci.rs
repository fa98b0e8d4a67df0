//! OCI image content: the deterministic layer, the image config, the manifest, and digests.
//!
//! Everything here is pure: the same binary gives the same layer, config and manifest digests
//! (sorted entries, fixed mtimes, uid/gid 0, fixed modes, no timestamps in the gzip header,
//! epoch `created`), so a deploy of an unchanged service finds every blob and the manifest
//! already in the registry and the task definition keeps the same image digest.
//!
//! The documents themselves (manifest, index, config) are `oci-client`'s types; Docker's v2
//! schema 2 manifests have the same shape and read the same way.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use flate2::Compression;
use flate2::write::GzEncoder;
pub use oci_client::config::{Architecture, Config, ConfigFile, History, Os, Rootfs};
pub use oci_client::manifest::{
    ImageIndexEntry, OciDescriptor, OciImageIndex, OciImageManifest, Platform,
};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::error::ImageError;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = oci_client::manifest::OCI_IMAGE_MEDIA_TYPE;
/// OCI image index (multi-platform).
pub const OCI_INDEX: &str = oci_client::manifest::OCI_IMAGE_INDEX_MEDIA_TYPE;
/// OCI image config.
pub const OCI_CONFIG: &str = oci_client::manifest::IMAGE_CONFIG_MEDIA_TYPE;
/// OCI gzip'd tar layer.
pub const OCI_LAYER_GZIP: &str = oci_client::manifest::IMAGE_LAYER_GZIP_MEDIA_TYPE;
/// Docker v2 schema 2 manifest.
pub const DOCKER_MANIFEST: &str = oci_client::manifest::IMAGE_MANIFEST_MEDIA_TYPE;
/// Docker manifest list (multi-platform).
pub const DOCKER_MANIFEST_LIST: &str = oci_client::manifest::IMAGE_MANIFEST_LIST_MEDIA_TYPE;

/// Every manifest media type this client reads.
pub const MANIFEST_TYPES: [&str; 4] = [
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
];

/// Where the service binary lives in the image, and its entrypoint.
pub const BINARY_PATH_IN_IMAGE: &str = "/timing-service";
/// The port the service listens on (the task definition's containerPort).
pub const SERVICE_PORT: u16 = 8080;
/// The non-root user and group the container runs as ("nonroot" in distroless images).
pub const IMAGE_USER: &str = "65532:65532";
/// `PATH` of the image, as in Docker's default.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Every timestamp in the image (tar mtimes, config `created`) is the Unix epoch, so the
/// content depends on the binary alone.
const EPOCH: chrono::DateTime<chrono::Utc> = chrono::DateTime::UNIX_EPOCH;

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Where a blob's bytes are: in memory (small blobs, the native layer) or in a file (blobs
/// copied from another registry).
#[derive(Debug, Clone)]
pub enum BlobData {
    /// Bytes in memory.
    Memory(Arc<Vec<u8>>),
    /// A file holding exactly the blob.
    File(PathBuf),
}

/// A blob to push: its descriptor and where its bytes are.
#[derive(Debug, Clone)]
pub struct Blob {
    /// Media type, digest and size.
    pub descriptor: OciDescriptor,
    /// The bytes.
    pub data: BlobData,
    /// Short label for progress output ("layer", "config").
    pub label: String,
}

impl Blob {
    /// A blob held in memory.
    pub fn in_memory(media_type: &str, bytes: Vec<u8>, label: &str) -> Self {
        Blob {
            descriptor: OciDescriptor {
                media_type: media_type.to_string(),
                digest: sha256_digest(&bytes),
                size: i64::try_from(bytes.len()).unwrap_or(i64::MAX),
                urls: None,
                annotations: None,
            },
            data: BlobData::Memory(Arc::new(bytes)),
            label: label.to_string(),
        }
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        u64::try_from(self.descriptor.size).unwrap_or_default()
    }

    /// All of the blob's bytes (a push sends a blob in one request).
    pub fn read_all(&self) -> Result<Vec<u8>, ImageError> {
        match &self.data {
            BlobData::Memory(bytes) => Ok(bytes.to_vec()),
            BlobData::File(path) => {
                std::fs::read(path).map_err(|e| ImageError::io("reading blob", path, e))
            }
        }
    }
}

/// A complete image ready to push: blobs (config + layers) and the manifest bytes.
#[derive(Debug, Clone)]
pub struct ImageContent {
    /// The config blob.
    pub config: Blob,
    /// Layer blobs in order.
    pub layers: Vec<Blob>,
    /// Media type of the manifest.
    pub manifest_media_type: String,
    /// The manifest exactly as pushed (its digest is the image digest).
    pub manifest: Vec<u8>,
}

impl ImageContent {
    /// The image digest (sha256 of the manifest bytes).
    pub fn digest(&self) -> String {
        sha256_digest(&self.manifest)
    }

    /// Config then layers: every blob the manifest refers to.
    pub fn blobs(&self) -> impl Iterator<Item = &Blob> {
        std::iter::once(&self.config).chain(self.layers.iter())
    }

    /// Compressed size of the image (config + layers).
    pub fn size(&self) -> u64 {
        self.blobs().map(Blob::size).sum()
    }
}

/// A writer that hashes what passes through it (the uncompressed tar → its diff_id).
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A packed layer: gzip'd tar bytes, plus the digest of the uncompressed tar (its diff_id).
#[derive(Debug, Clone)]
pub struct PackedLayer {
    /// The layer blob.
    pub blob: Blob,
    /// `sha256:` of the uncompressed tar.
    pub diff_id: String,
}

/// What one layer entry holds.
#[derive(Debug, Clone)]
pub enum EntrySource {
    /// A directory.
    Dir,
    /// A file copied from disk.
    File(PathBuf),
    /// A file with these bytes.
    Bytes(Vec<u8>),
}

/// One entry of a layer: where it goes, what it holds, its permission bits.
#[derive(Debug, Clone)]
pub struct LayerEntry {
    /// Absolute path in the image (`/timing-service`, `/etc/`).
    pub path: String,
    /// Contents.
    pub source: EntrySource,
    /// Permission bits (0o755, 0o644).
    pub mode: u32,
}

/// `/etc/nsswitch.conf` of the service image: host names from `/etc/hosts` first, then DNS
/// (as distroless images do), so the static glibc binary does not depend on glibc's
/// built-in default order.
pub const NSSWITCH_CONF: &str = "hosts: files dns\n";

/// Packs entries into one deterministic gzip'd tar layer.
///
/// Entries are sorted by path, owned by 0:0, mtime 0, with no user or group names, so equal
/// inputs give equal digests whatever the files' own times and owners.
pub fn pack_layer(entries: &[LayerEntry]) -> Result<PackedLayer, ImageError> {
    let mut sorted: Vec<&LayerEntry> = entries.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let label = PathBuf::from(sorted.last().map_or("", |e| e.path.as_str()));
    let gz = GzEncoder::new(Vec::new(), Compression::default());
    let hashing = HashingWriter {
        inner: gz,
        hasher: Sha256::new(),
    };
    let mut tar = tar::Builder::new(hashing);
    tar.mode(tar::HeaderMode::Deterministic);
    for entry in sorted {
        let name = entry.path.trim_start_matches('/');
        let mut header = tar::Header::new_ustar();
        header.set_mode(entry.mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        let added = match &entry.source {
            EntrySource::Dir => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                tar.append_data(&mut header, name, io::empty())
            }
            EntrySource::Bytes(bytes) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(bytes.len() as u64);
                tar.append_data(&mut header, name, &bytes[..])
            }
            EntrySource::File(path) => {
                let file = File::open(path).map_err(|e| ImageError::io("opening", path, e))?;
                let size = file
                    .metadata()
                    .map_err(|e| ImageError::io("reading metadata of", path, e))?
                    .len();
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(size);
                tar.append_data(&mut header, name, file)
            }
        };
        added.map_err(|e| ImageError::io("adding to the layer tar", &entry.path, e))?;
    }
    let hashing = tar
        .into_inner()
        .map_err(|e| ImageError::io("finishing the layer tar with", &label, e))?;
    let diff_id = format!("sha256:{}", hex::encode(hashing.hasher.finalize()));
    let compressed = hashing
        .inner
        .finish()
        .map_err(|e| ImageError::io("compressing the layer with", &label, e))?;
    Ok(PackedLayer {
        blob: Blob::in_memory(OCI_LAYER_GZIP, compressed, "layer"),
        diff_id,
    })
}

/// The service layer: `/timing-service` (0755) and `/etc/nsswitch.conf` (0644).
pub fn service_layer(binary: &Path) -> Result<PackedLayer, ImageError> {
    pack_layer(&[
        LayerEntry {
            path: "/etc/".into(),
            source: EntrySource::Dir,
            mode: 0o755,
        },
        LayerEntry {
            path: "/etc/nsswitch.conf".into(),
            source: EntrySource::Bytes(NSSWITCH_CONF.as_bytes().to_vec()),
            mode: 0o644,
        },
        LayerEntry {
            path: BINARY_PATH_IN_IMAGE.into(),
            source: EntrySource::File(binary.to_path_buf()),
            mode: 0o755,
        },
    ])
}

/// The image config of the service image: linux/amd64, entrypoint `/timing-service`, port
/// 8080/tcp, user 65532:65532, a default `PATH`, and the layer's diff_id.
pub fn service_config(diff_id: &str) -> ConfigFile {
    ConfigFile {
        created: Some(EPOCH),
        architecture: Architecture::Amd64,
        os: Os::Linux,
        config: Some(Config {
            user: Some(IMAGE_USER.to_string()),
            exposed_ports: Some(HashSet::from([format!("{SERVICE_PORT}/tcp")])),
            env: Some(vec![DEFAULT_PATH.to_string()]),
            entrypoint: Some(vec![BINARY_PATH_IN_IMAGE.to_string()]),
            working_dir: Some("/".to_string()),
            ..Config::default()
        }),
        rootfs: Rootfs {
            r#type: "layers".to_string(),
            diff_ids: vec![diff_id.to_string()],
        },
        history: Some(vec![History {
            created: Some(EPOCH),
            created_by: Some("provisioner native builder: static timing-service binary".into()),
            ..History::default()
        }]),
        ..ConfigFile::default()
    }
}

/// Packs the service binary into a one-layer OCI image (config + manifest).
pub fn service_image(binary: &Path) -> Result<ImageContent, ImageError> {
    let layer = service_layer(binary)?;
    let config = service_config(&layer.diff_id);
    let config_bytes = to_json(&config, "image config")?;
    let config = Blob::in_memory(OCI_CONFIG, config_bytes, "config");
    image_from_parts(config, vec![layer.blob])
}

/// Assembles an OCI manifest for a config and layers.
pub fn image_from_parts(config: Blob, layers: Vec<Blob>) -> Result<ImageContent, ImageError> {
    let manifest = OciImageManifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.to_string()),
        config: config.descriptor.clone(),
        layers: layers.iter().map(|l| l.descriptor.clone()).collect(),
        ..OciImageManifest::default()
    };
    let manifest = to_json(&manifest, "image manifest")?;
    Ok(ImageContent {
        config,
        layers,
        manifest_media_type: OCI_MANIFEST.to_string(),
        manifest,
    })
}

fn to_json<T: Serialize>(value: &T, what: &str) -> Result<Vec<u8>, ImageError> {
    serde_json::to_vec(value).map_err(|e| {
        ImageError::io(
            "serializing",
            what,
            io::Error::new(io::ErrorKind::InvalidData, e),
        )
    })
}

/// Whether a media type is a multi-platform index.
pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

/// The digest of the linux/amd64 manifest of an index (Fargate's `X86_64`), ignoring other
/// platforms and attestation entries.
pub fn amd64_manifest(index: &OciImageIndex) -> Option<String> {
    oci_client::client::linux_amd64_resolver(&index.manifests)
}

/// Whether an ELF file asks for a dynamic loader (`PT_INTERP`): such a binary cannot start in
/// an image without libc. Reads only the ELF and program headers.
pub fn elf_has_interpreter(path: &Path) -> Result<bool, ImageError> {
    let read = || -> io::Result<bool> {
        let mut file = File::open(path)?;
        let mut ident = [0u8; 64];
        file.read_exact(&mut ident)?;
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
        if &ident[..4] != b"\x7fELF" || ident[4] != 2 || ident[5] != 1 {
            return Err(bad("not a 64-bit little-endian ELF file"));
        }
        let u16_at = |o: usize| u16::from_le_bytes([ident[o], ident[o + 1]]);
        let mut off = [0u8; 8];
        off.copy_from_slice(&ident[0x20..0x28]);
        let phoff = u64::from_le_bytes(off);
        let phentsize = u64::from(u16_at(0x36));
        let phnum = u64::from(u16_at(0x38));
        for i in 0..phnum {
            file.seek(SeekFrom::Start(phoff + i * phentsize))?;
            let mut p_type = [0u8; 4];
            file.read_exact(&mut p_type)?;
            if u32::from_le_bytes(p_type) == 3 {
                return Ok(true);
            }
        }
        Ok(false)
    };
    read().map_err(|e| ImageError::io("reading ELF headers of", path, e))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn layer_is_deterministic_and_config_names_its_diff_id() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::write(&bin, b"#!/bin/sh\necho hi\n").unwrap();
        let a = service_image(&bin).unwrap();
        // Touch the file: a different mtime must not change anything.
        std::fs::write(&bin, b"#!/bin/sh\necho hi\n").unwrap();
        let b = service_image(&bin).unwrap();
        assert_eq!(a.digest(), b.digest());
        assert_eq!(a.layers[0].descriptor.digest, b.layers[0].descriptor.digest);

        let manifest: OciImageManifest = serde_json::from_slice(&a.manifest).unwrap();
        assert_eq!(manifest.media_type.as_deref(), Some(OCI_MANIFEST));
        assert_eq!(manifest.config.digest, a.config.descriptor.digest);
        let BlobData::Memory(config) = &a.config.data else {
            panic!("config is in memory")
        };
        let config: ConfigFile = serde_json::from_slice(config).unwrap();
        assert_eq!(config.config.unwrap().user.as_deref(), Some(IMAGE_USER));
        assert!(config.rootfs.diff_ids[0].starts_with("sha256:"));
        assert_ne!(config.rootfs.diff_ids[0], a.layers[0].descriptor.digest);
    }

    #[test]
    fn finds_amd64_in_an_index() {
        let index: OciImageIndex = serde_json::from_str(
            r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",
            "manifests":[
             {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:aa","size":1,
              "platform":{"architecture":"arm64","os":"linux","variant":"v8"}},
             {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:bb","size":1,
              "platform":{"architecture":"amd64","os":"linux"}},
             {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:cc","size":1,
              "platform":{"architecture":"unknown","os":"unknown"}}]}"#,
        )
        .unwrap();
        assert_eq!(amd64_manifest(&index).as_deref(), Some("sha256:bb"));
        let only_arm = OciImageIndex {
            manifests: index.manifests[..1].to_vec(),
            ..index
        };
        assert_eq!(amd64_manifest(&only_arm), None);
    }

    #[test]
    fn blob_bytes_from_memory_and_file() {
        let blob = Blob::in_memory(OCI_LAYER_GZIP, (0u8..100).collect(), "layer");
        assert_eq!(blob.read_all().unwrap(), (0u8..100).collect::<Vec<_>>());
        assert_eq!(blob.size(), 100);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        std::fs::write(&path, [1u8, 2, 3]).unwrap();
        let file_blob = Blob {
            data: BlobData::File(path),
            ..blob
        };
        assert_eq!(file_blob.read_all().unwrap(), vec![1, 2, 3]);
    }
}
