//! Test fixtures for driving the real `provisioner` binary against moto in server mode.
//!
//! - [`process`]: free loopback ports and starting the real programs the tests drive (moto,
//!   redis-server, docker-registry) on them, with a clear failure when one is not installed.
//! - [`Moto`]: a `moto_server` of the test's own, with the settings the provisioner needs.
//! - [`Proxy`]: an HTTP proxy between the binary and moto that records every AWS call, refuses
//!   the teardown orders AWS refuses and moto allows ([`aws_rules`]), and injects faults:
//!   throttling and 5xx answers at a seeded rate, an outage, a SIGKILL after the n-th call.
//! - [`Provisioner`]: one run of the binary (arguments, app, files, environment), and [`Run`],
//!   its exit code and output.
//! - [`TestAccount`]: the start of most end-to-end tests, a fresh account (moto and the proxy)
//!   holding the app's image, and [`assert_nothing_left`] for their end.
//! - [`Sdk`]: the tests' own clients and their reads of what the binary left in moto (a
//!   service, a security group, a parameter, ...), each written once.
//!
//! What moto does not emulate, and these tests therefore cannot show: it runs no containers
//! (no tasks, no network interfaces, no public IPs, nothing registered in Cloud Map by ECS),
//! its deployments never roll out or roll back, Cloud Map operations finish at once, and it
//! keeps no VPC on a private namespace's hosted zone. The waiting and failure logic is tested
//! with aws-smithy-mocks instead. It lets some teardown orders pass that AWS refuses (a
//! cluster with services, a namespace with services, a Cloud Map service with instances, a
//! security group referenced by another): the proxy adds those checks.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod aws_rules;
pub mod leftovers;
pub mod moto;
pub mod process;
pub mod protocol;
pub mod proxy;
pub mod run;
pub mod sdk;

use std::path::{Path, PathBuf};

pub use leftovers::{Data, assert_nothing_left};
pub use moto::Moto;
pub use process::free_port;
pub use proxy::{Call, Faults, Injected, Proxy};
pub use run::{Provisioner, Run};
pub use sdk::Sdk;

pub const REGION: &str = "eu-north-1";
pub const ACCOUNT: &str = "123456789012";
/// The tag of the image [`TestAccount`] seeds.
pub const IMAGE_TAG: &str = "0a1b2c3";

/// SDK configuration with dummy credentials for the endpoint at `url` (moto, or the proxy)
/// in `region`.
pub async fn sdk_config_at(url: &str, region: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(url)
        .region(aws_config::Region::new(region.to_owned()))
        .credentials_provider(aws_credential_types::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .load()
        .await
}

/// A fresh AWS account for one test: its own moto, the recording proxy in front of it, and
/// the app `timing`'s image already in the app's ECR repository (as a push would leave it).
pub struct TestAccount {
    pub moto: Moto,
    pub proxy: Proxy,
    /// The seeded image by tag, `<repository URI>:0a1b2c3`.
    pub image: String,
    /// Its digest as ECR reports it.
    pub digest: String,
}

impl TestAccount {
    pub async fn start() -> Self {
        let moto = Moto::start().await;
        let proxy = Proxy::start(&moto).await;
        let (image, digest) = seed_image(&moto, "timing", IMAGE_TAG).await;
        Self {
            moto,
            proxy,
            image,
            digest,
        }
    }

    /// `provisioner ARGS` through the proxy.
    pub fn provisioner(&self, args: &[&str]) -> Provisioner {
        self.proxy.provisioner(args)
    }

    /// `up --image <the seeded image>`, which must succeed: the app deployed.
    pub async fn deploy(&self) -> Run {
        self.provisioner(&["up", "--image", &self.image])
            .expect(0)
            .await
    }

    /// SDK configuration straight to moto (calls made with it are not recorded).
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        self.moto.sdk_config().await
    }
}

/// The repository root (task-definitions/, policies/).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A copy of the repository's task-definition and policy files, to modify.
pub fn copy_of_files() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["task-definitions", "policies"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        for entry in std::fs::read_dir(repo_root().join(sub)).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.path().join(sub).join(entry.file_name())).unwrap();
        }
    }
    dir
}

/// Puts a small image into moto's ECR repository `<app>/api` (created, tagged as the
/// provisioner would), since moto's registry accepts no layer pushes; returns the image URI
/// by tag and the digest ECR reports.
pub async fn seed_image(moto: &Moto, app: &str, tag: &str) -> (String, String) {
    let config = moto.sdk_config().await;
    let ecr = aws_sdk_ecr::Client::new(&config);
    let repository = format!("{app}/api");
    let tags = [("app", app), ("managed-by", "provisioner")]
        .into_iter()
        .map(|(k, v)| {
            aws_sdk_ecr::types::Tag::builder()
                .key(k)
                .value(v)
                .build()
                .unwrap()
        });
    let created = ecr
        .create_repository()
        .repository_name(&repository)
        .set_tags(Some(tags.collect()))
        .send()
        .await;
    let uri = match created {
        Ok(out) => out
            .repository()
            .unwrap()
            .repository_uri()
            .unwrap()
            .to_owned(),
        Err(_) => ecr
            .describe_repositories()
            .repository_names(&repository)
            .send()
            .await
            .unwrap()
            .repositories()[0]
            .repository_uri()
            .unwrap()
            .to_owned(),
    };
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 2, "digest": format!("sha256:{:0>64}", tag)},
        "layers": []
    });
    let put = ecr
        .put_image()
        .repository_name(&repository)
        .image_manifest(manifest.to_string())
        .image_tag(tag)
        .send()
        .await
        .unwrap();
    let digest = put
        .image()
        .unwrap()
        .image_id()
        .unwrap()
        .image_digest()
        .unwrap()
        .to_owned();
    (format!("{uri}:{tag}"), digest)
}

/// `docs/output.schema.json`, compiled once.
fn output_schema() -> &'static jsonschema::Validator {
    static VALIDATOR: std::sync::OnceLock<jsonschema::Validator> = std::sync::OnceLock::new();
    VALIDATOR.get_or_init(|| {
        let path = repo_root().join("docs/output.schema.json");
        let text = std::fs::read_to_string(&path).unwrap();
        let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
        jsonschema::validator_for(&schema)
            .unwrap_or_else(|e| panic!("{} is not a valid JSON Schema: {e}", path.display()))
    })
}

/// Where and how `document` (one `--output json` document, or one line of
/// `logs --output json`) breaks `docs/output.schema.json`; empty when it matches.
pub fn output_schema_errors(document: &serde_json::Value) -> Vec<String> {
    output_schema()
        .iter_errors(document)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

/// Panics, naming each violation and where, unless `document` matches
/// `docs/output.schema.json`.
pub fn assert_matches_output_schema(document: &serde_json::Value) {
    let errors = output_schema_errors(document);
    assert!(
        errors.is_empty(),
        "does not match docs/output.schema.json:\n{}\n{}",
        errors.join("\n"),
        serde_json::to_string_pretty(document).unwrap()
    );
}

/// An EC2 filter with one value, for the tests' own describe calls.
pub fn ec2_filter(name: &str, value: impl Into<String>) -> aws_sdk_ec2::types::Filter {
    aws_sdk_ec2::types::Filter::builder()
        .name(name)
        .values(value)
        .build()
}
