//! Real processes for the image tests: the CNCF registry, redis-server, and a TCP proxy that
//! counts requests and can cut an upload (moto is `support::Moto`).
//!
//! Every process binds 127.0.0.1 on a free port (`support::process`), writes its log into a
//! temporary directory and is killed when its handle drops. A missing program is a test failure that says how to
//! install it (the Docker builder is the only test allowed to skip).

#![allow(dead_code)]

pub mod proxy;
pub mod token;

use std::process::{Command, Stdio};

use tempfile::TempDir;

use crate::support::process::{KillOnDrop, require_program, spawn_listening};

/// The CNCF distribution registry (Debian package `docker-registry`) on a loopback port.
pub struct TestRegistry {
    // Field order: the registry is killed before its directory goes.
    _child: KillOnDrop,
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: TempDir,
}

impl TestRegistry {
    /// Starts a registry without authentication.
    pub fn start() -> Self {
        Self::start_inner(None)
    }

    /// Starts a registry that wants `user`/`password` (htpasswd, bcrypt).
    pub fn start_with_auth(user: &str, password: &str) -> Self {
        Self::start_inner(Some((user, password)))
    }

    /// Starts a registry in token mode: Bearer tokens from `server`, at the server's own
    /// address (another origin than the registry's).
    pub fn start_with_token(server: &token::TokenServer) -> Self {
        Self::start_with_token_at(server, &server.realm())
    }

    /// Starts a registry in token mode whose challenges name `realm` (`server` reached through
    /// a proxy, say).
    pub fn start_with_token_at(server: &token::TokenServer, realm: &str) -> Self {
        let section = format!(
            "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
            realm,
            token::SERVICE,
            token::ISSUER,
            server.cert().display()
        );
        let dir = tempfile::tempdir().expect("tempdir");
        Self::launch(dir, section)
    }

    fn start_inner(auth: Option<(&str, &str)>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let auth_section = match auth {
            Some((user, password)) => {
                let htpasswd = require_program("htpasswd", "apache2-utils");
                let out = Command::new(htpasswd)
                    .args(["-Bbn", user, password])
                    .output()
                    .expect("run htpasswd");
                assert!(out.status.success(), "htpasswd failed: {out:?}");
                let path = dir.path().join("htpasswd");
                std::fs::write(&path, &out.stdout).expect("write htpasswd");
                format!(
                    "auth:\n  htpasswd:\n    realm: test-registry\n    path: {}\n",
                    path.display()
                )
            }
            None => String::new(),
        };
        Self::launch(dir, auth_section)
    }

    fn launch(dir: TempDir, auth_section: String) -> Self {
        let program = require_program("docker-registry", "docker-registry");
        let log_path = dir.path().join("registry.log");
        let (child, port) = spawn_listening("docker-registry", &log_path, |port| {
            let config = format!(
                "version: 0.1\n\
                 log:\n  level: info\n  formatter: text\n\
                 storage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\n  \
                 maintenance:\n    uploadpurging:\n      enabled: false\n\
                 http:\n  addr: 127.0.0.1:{port}\n  secret: image-tests-secret\n\
                 {auth_section}",
                root = dir.path().join("data").display(),
            );
            let config_path = dir.path().join("config.yml");
            std::fs::write(&config_path, config).expect("write registry config");
            let log = std::fs::File::create(&log_path).expect("create registry log");
            let mut cmd = Command::new(&program);
            cmd.arg("serve")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone log handle"))
                .stderr(log);
            cmd
        });
        TestRegistry {
            _child: KillOnDrop(child),
            port,
            dir,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The registry's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// How many requests the access log shows with this method whose path contains `part`.
    pub fn requests(&self, method: &str, part: &str) -> usize {
        let prefix = format!("\"{method} ");
        self.log()
            .lines()
            .filter_map(|l| l.split_once(&prefix).map(|(_, rest)| rest))
            .filter(|rest| {
                rest.split(' ')
                    .next()
                    .is_some_and(|path| path.contains(part))
            })
            .count()
    }

    /// Upload requests (start, chunk, finish) in the access log.
    pub fn upload_requests(&self) -> usize {
        ["POST", "PATCH", "PUT"]
            .iter()
            .map(|m| self.requests(m, "/blobs/uploads/"))
            .sum()
    }

    /// Every request line of the access log (`METHOD /path`).
    pub fn request_lines(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter_map(|l| {
                let start = l.find("] \"")? + 3;
                let rest = &l[start..];
                let end = rest.find(" HTTP/")?;
                Some(rest[..end].to_string())
            })
            .collect()
    }
}

/// redis-server on a loopback port, no persistence.
pub struct TestRedis {
    // Field order: the server is killed before its directory goes.
    _child: KillOnDrop,
    /// Its port on 127.0.0.1.
    pub port: u16,
    _dir: TempDir,
}

impl TestRedis {
    /// Starts redis-server.
    pub fn start() -> Self {
        let program = require_program("redis-server", "redis-server");
        let dir = tempfile::tempdir().expect("tempdir");
        let log_path = dir.path().join("redis.log");
        let (child, port) = spawn_listening("redis-server", &log_path, |port| {
            let mut cmd = Command::new(&program);
            cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .arg("--dir")
                .arg(dir.path())
                .arg("--logfile")
                .arg(&log_path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            cmd
        });
        TestRedis {
            _child: KillOnDrop(child),
            port,
            _dir: dir,
        }
    }
}

/// Deterministic pseudo-random bytes (incompressible enough, no extra dependency).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A synthetic single-platform image: a config for `arch` and one layer of `layer_len` bytes.
pub fn synthetic_image(
    arch: &str,
    layer_len: usize,
    seed: u64,
) -> provisioner::image::oci::ImageContent {
    use provisioner::image::oci::{self, Blob};
    let layer = Blob::in_memory(oci::OCI_LAYER_GZIP, noise(layer_len, seed), "layer");
    let config = serde_json::json!({
        "architecture": arch,
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", "0".repeat(64))]},
    });
    let config = Blob::in_memory(
        oci::OCI_CONFIG,
        serde_json::to_vec(&config).unwrap(),
        "config",
    );
    oci::image_from_parts(config, vec![layer]).unwrap()
}

/// An OCI index of single-platform images (`(image, architecture)`, linux; arm64 as `v8`).
pub fn index_bytes(images: &[(&provisioner::image::oci::ImageContent, &str)]) -> Vec<u8> {
    use provisioner::image::oci::{
        ImageIndexEntry, OCI_INDEX, OCI_MANIFEST, OciImageIndex, Platform,
    };
    let manifests = images
        .iter()
        .map(|(image, arch)| ImageIndexEntry {
            media_type: OCI_MANIFEST.into(),
            digest: image.digest(),
            size: image.manifest.len() as i64,
            platform: Some(Platform {
                architecture: (*arch).into(),
                os: "linux".into(),
                os_version: None,
                os_features: None,
                variant: (*arch == "arm64").then(|| "v8".to_string()),
                features: None,
            }),
            annotations: None,
        })
        .collect();
    let index = OciImageIndex {
        schema_version: 2,
        media_type: Some(OCI_INDEX.into()),
        manifests,
        artifact_type: None,
        annotations: None,
    };
    serde_json::to_vec(&index).unwrap()
}
