//! End to end: `provisioner up` gets the service image into the task definition through the
//! real binary. AWS calls go to moto through the recording proxy of `support/`; registry
//! calls go to a local CNCF registry (`image_support/`) via `--registry-endpoint`, which
//! accepts exactly the ECR token moto hands out (user `AWS`, password
//! `123456789012-auth-token`), as ECR would.
//!
//! The native release build of `timing-service` (static, into `<root>/target/image-native`,
//! the directory `up` uses and the image tests share) is done once by this test binary before
//! `up` runs, so the binary's own build is a no-op and `up` stays within `run`'s time limit on
//! a cold cache. Only one test builds; the others deploy a seeded image with `--image`.
//!
//! The tag `up` writes is the workspace's git commit (`-dirty` with uncommitted files), so it
//! is read from `up`'s note, not computed here: other work may commit in between. The
//! service's sources must not change while the test runs (the digests are compared with the
//! pre-build's). `Provisioner::run` gives the binary an empty HOME, so the toolchain and crate
//! cache locations are passed to it explicitly. Run with
//! `cargo test -p provisioner --test integration deploy_image::`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::{image_support, support};

use std::path::{Path, PathBuf};
use std::time::Instant;

use image_support::{TestRegistry, index_bytes, synthetic_image};
use provisioner::image::oci::{self, OCI_INDEX, OCI_MANIFEST, OciImageManifest};
use provisioner::image::{
    Destination, Endpoint, ImageContent, NativeBuild, Registry, RegistryAuth, SilentProgress,
    UploadOptions, build_native, push_image,
};
use support::{ACCOUNT, Moto, Provisioner, Proxy, REGION, Run, Sdk, repo_root, seed_image};

/// moto's ECR password for its dummy account (what GetAuthorizationToken decodes to).
const MOTO_PASSWORD: &str = "123456789012-auth-token";

fn ecr_uri(repository: &str) -> String {
    format!("{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{repository}")
}

fn aws_auth() -> RegistryAuth {
    RegistryAuth::new("AWS", MOTO_PASSWORD)
}

/// The environment `cargo` needs inside the binary, which `Provisioner::run` starts with an
/// empty environment and an empty HOME: the toolchain (rustup) and the crate cache of this
/// machine, and the same cargo and flags as the pre-build, so the binary's build is fresh.
fn build_env() -> Vec<(String, String)> {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let mut env = vec![
        ("AWS_ACCESS_KEY_ID".to_owned(), "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY".to_owned(), "test".to_owned()),
        ("AWS_REGION".to_owned(), REGION.to_owned()),
        (
            "CARGO_HOME".to_owned(),
            std::env::var("CARGO_HOME").unwrap_or_else(|_| format!("{home}/.cargo")),
        ),
        (
            "RUSTUP_HOME".to_owned(),
            std::env::var("RUSTUP_HOME").unwrap_or_else(|_| format!("{home}/.rustup")),
        ),
    ];
    for key in ["CARGO", "RUSTUP_TOOLCHAIN", "RUSTFLAGS"] {
        if let Ok(value) = std::env::var(key) {
            env.push((key.to_owned(), value));
        }
    }
    env
}

/// Runs the binary against `endpoint` from the workspace root, able to build.
async fn up(endpoint: &str, args: &[&str]) -> Run {
    build_env()
        .iter()
        .fold(Provisioner::new(endpoint, args), |run, (key, value)| {
            run.env(key, value)
        })
        .run()
        .await
}

/// The real service built statically into `<root>/target/image-native` (what `up` uses) and
/// packed: the digest `up` must deploy.
async fn prebuild_service() -> ImageContent {
    let build = NativeBuild::service(&repo_root());
    let started = Instant::now();
    let binary: PathBuf = build_native(&build, &SilentProgress)
        .await
        .unwrap_or_else(|e| panic!("native build failed: {e}"));
    let image = oci::service_image(&binary).unwrap();
    eprintln!(
        "native pre-build: {:.1} s, image {} ({} bytes)",
        started.elapsed().as_secs_f64(),
        image.digest(),
        image.size()
    );
    image
}

/// `(digest, tag, bytes uploaded)` from `up`'s note on the service image.
fn service_image_note(report: &serde_json::Value) -> (String, String, u64) {
    let note = report["notes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n.as_str())
        .find(|n| n.starts_with("service image "))
        .unwrap_or_else(|| panic!("no note on the service image: {report:#}"));
    let digest = note["service image ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .to_owned();
    let tag = note
        .split_once(", tag ")
        .and_then(|(_, rest)| rest.split_once("):"))
        .map(|(tag, _)| tag.to_owned())
        .unwrap_or_else(|| panic!("no tag in `{note}`"));
    let bytes = note
        .split_once("): ")
        .and_then(|(_, rest)| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no byte count in `{note}`"));
    (digest, tag, bytes)
}

/// The container image and revision of the latest task definition of `family`.
async fn task_image(sdk: &Sdk, family: &str) -> (String, i32) {
    let task = sdk.task_definition(family).await;
    (
        task.container_definitions()[0].image().unwrap().to_owned(),
        task.revision(),
    )
}

async fn service_names(ecs: &aws_sdk_ecs::Client) -> Vec<String> {
    match ecs.list_services().cluster("timing").send().await {
        Ok(out) => out
            .service_arns()
            .iter()
            .map(|arn| arn.rsplit('/').next().unwrap().to_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The calls that register a task definition or create or update an ECS service (Cloud
/// Map's CreateService and UpdateService, with capitalised fields, are not these).
fn ecs_deploy_calls(proxy: &Proxy) -> Vec<String> {
    proxy
        .calls()
        .into_iter()
        .filter(|c| match c.operation.as_str() {
            "RegisterTaskDefinition" => true,
            "CreateService" | "UpdateService" => c.body.contains("\"cluster\""),
            _ => false,
        })
        .map(|c| c.operation)
        .collect()
}

fn is_commit_tag(tag: &str) -> bool {
    let commit = tag.strip_suffix("-dirty").unwrap_or(tag);
    commit.len() == 40 && commit.chars().all(|c| c.is_ascii_hexdigit())
}

fn commit_exists(root: &Path, tag: &str) -> bool {
    let commit = tag.strip_suffix("-dirty").unwrap_or(tag);
    std::process::Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["cat-file", "-e", &format!("{commit}^{{commit}}")])
        .status()
        .is_ok_and(|s| s.success())
}

/// No `--image`: `up --builder native` builds the real service, pushes it with moto's ECR
/// token to the registry endpoint, and deploys `<ECR repo URI>@<digest>` of what the registry
/// holds under the commit tag. A second `up` uploads nothing, calls nothing mutating and
/// registers no revision. Then `--image` naming a missing tag of the app's own repository
/// fails before touching the services.
#[tokio::test]
async fn native_build_is_pushed_and_deployed_by_digest_and_a_second_up_changes_nothing() {
    let expected = prebuild_service().await;
    let registry = TestRegistry::start_with_auth("AWS", MOTO_PASSWORD);
    let moto = Moto::start().await;
    let proxy = Proxy::start(&moto).await;
    let registry_url = registry.url();
    let build_args = [
        "up",
        "--builder",
        "native",
        "--registry-endpoint",
        registry_url.as_str(),
        "--output",
        "json",
        "--timeout",
        "60s",
    ];

    let started = Instant::now();
    let first = up(&proxy.url, &build_args).await.expect_code(0);
    eprintln!("first up: {:.1} s", started.elapsed().as_secs_f64());
    let report = first.json();
    let (digest, tag, bytes) = service_image_note(&report);
    assert_eq!(
        digest,
        expected.digest(),
        "the image of the service as built"
    );
    assert_eq!(bytes, expected.size(), "every blob uploaded once");
    assert!(is_commit_tag(&tag), "tag `{tag}` is not a commit");
    assert!(commit_exists(&repo_root(), &tag), "no commit `{tag}`");
    assert!(
        first.stderr.contains("building timing-service"),
        "{}",
        first.stderr
    );
    assert!(
        proxy
            .calls()
            .iter()
            .any(|c| c.operation == "GetAuthorizationToken"),
        "the push used the ECR token"
    );
    let mut deployed = ecs_deploy_calls(&proxy);
    deployed.sort();
    assert_eq!(
        deployed,
        [
            "CreateService",
            "CreateService",
            "RegisterTaskDefinition",
            "RegisterTaskDefinition"
        ]
    );

    // What the registry holds under the commit tag is what the task definition names.
    let reader = Registry::connect(
        &Endpoint::parse(&registry_url).unwrap(),
        "timing/api",
        Some(&aws_auth()),
        false,
        &UploadOptions::default(),
    )
    .await
    .unwrap();
    let read_back = reader.manifest_digest(&tag).await.unwrap();
    assert_eq!(read_back.as_deref(), Some(digest.as_str()));
    let (media_type, bytes) = reader.get_manifest(&digest).await.unwrap().unwrap();
    assert_eq!(media_type, OCI_MANIFEST);
    let manifest: OciImageManifest = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(manifest.layers.len(), 1);
    for blob in std::iter::once(&manifest.config).chain(&manifest.layers) {
        assert!(reader.blob_exists(&blob.digest).await.unwrap(), "{blob:?}");
    }

    let sdk = Sdk::new(&moto).await;
    let (api_image, revision) = task_image(&sdk, "timing-api").await;
    assert_eq!(api_image, format!("{}@{digest}", ecr_uri("timing/api")));
    let api = sdk.service("api").await;
    assert_eq!(api.status(), Some("ACTIVE"));
    assert!(
        api.task_definition()
            .unwrap()
            .ends_with(&format!("timing-api:{revision}")),
        "{api:?}"
    );

    // Again: nothing to upload, nothing to change.
    proxy.clear();
    let uploads_before = registry.upload_requests();
    let manifests_before = registry.requests("PUT", "/manifests/");
    let second = up(&proxy.url, &build_args).await.expect_code(0);
    let report = second.json();
    assert!(!report["changed"].as_bool().unwrap(), "{report:#}");
    let (again, again_tag, bytes) = service_image_note(&report);
    assert_eq!(again, digest);
    assert_eq!(bytes, 0, "{report:#}");
    assert_eq!(
        registry.upload_requests(),
        uploads_before,
        "no blob upload: {:?}",
        registry.request_lines()
    );
    if again_tag == tag {
        assert_eq!(registry.requests("PUT", "/manifests/"), manifests_before);
    }
    assert!(
        proxy.mutating().is_empty(),
        "mutated: {:?}",
        proxy.mutating()
    );
    assert_eq!(
        task_image(&sdk, "timing-api").await,
        (api_image.clone(), revision)
    );

    // `--image` in the app's own repository with a tag ECR does not have: an error naming
    // it, before any task definition or service is touched.
    proxy.clear();
    let missing = format!("{}:does-not-exist", ecr_uri("timing/api"));
    let failed = up(&proxy.url, &["up", "--image", &missing])
        .await
        .expect_code(1);
    assert!(failed.stderr.contains(&missing), "{}", failed.stderr);
    assert!(
        proxy
            .calls()
            .iter()
            .any(|c| c.operation == "DescribeImages"),
        "checked with ECR: {:?}",
        proxy.calls()
    );
    assert!(
        proxy.mutating().is_empty(),
        "mutated: {:?}",
        proxy.mutating()
    );
    assert!(ecs_deploy_calls(&proxy).is_empty());
    assert_eq!(task_image(&sdk, "timing-api").await, (api_image, revision));
}

/// `--image <own repo>:does-not-exist` on an empty account: exit 1 naming the image, and no
/// task definition or service is created.
#[tokio::test]
async fn missing_image_in_the_own_repository_creates_no_service() {
    let moto = Moto::start().await;
    let proxy = Proxy::start(&moto).await;
    let missing = format!("{}:does-not-exist", ecr_uri("timing/api"));
    let failed = up(&proxy.url, &["up", "--image", &missing, "--output", "json"])
        .await
        .expect_code(1);
    assert!(failed.stderr.contains(&missing), "{}", failed.stderr);
    assert!(
        failed.json().to_string().contains(&missing),
        "{}",
        failed.stdout
    );
    let touched = ecs_deploy_calls(&proxy);
    assert!(touched.is_empty(), "{touched:?}");
    let ecs = aws_sdk_ecs::Client::new(&moto.sdk_config().await);
    assert!(service_names(&ecs).await.is_empty());
}

/// A public-registry-like source: `library/redis:7.4` is an amd64+arm64 index; returns the
/// amd64 image (what a mirror copies).
async fn seed_redis_source(source: &TestRegistry) -> (ImageContent, ImageContent) {
    let amd64 = synthetic_image("amd64", 200_000, 11);
    let arm64 = synthetic_image("arm64", 150_000, 12);
    let anonymous = Destination {
        endpoint: Endpoint::parse(&source.url()).unwrap(),
        repository: "library/redis".into(),
        public_repository_uri: format!("{}/library/redis", source.host()),
        auth: None,
    };
    for (image, tag) in [(&amd64, "amd64"), (&arm64, "arm64")] {
        push_image(
            &anonymous,
            image,
            tag,
            &UploadOptions::default(),
            &SilentProgress,
        )
        .await
        .unwrap();
    }
    let index = index_bytes(&[(&arm64, "arm64"), (&amd64, "amd64")]);
    let seed = Registry::connect(
        &anonymous.endpoint,
        "library/redis",
        None,
        true,
        &UploadOptions::default(),
    )
    .await
    .unwrap();
    seed.put_manifest("7.4", OCI_INDEX, &index).await.unwrap();
    (amd64, arm64)
}

/// `--mirror-redis`: the amd64 image of `--redis-image` is copied from a second local
/// registry into `<app>/redis` at the registry endpoint, and the redis task definition names
/// it in ECR by digest; a second `up` copies and changes nothing.
#[tokio::test]
async fn mirror_redis_deploys_the_copy_in_the_app_repository_by_digest() {
    let source = TestRegistry::start();
    let (amd64, arm64) = seed_redis_source(&source).await;
    let target = TestRegistry::start_with_auth("AWS", MOTO_PASSWORD);
    let moto = Moto::start().await;
    let proxy = Proxy::start(&moto).await;
    let (api, api_digest) = seed_image(&moto, "timing", "0a1b2c3").await;
    let redis_image = format!("{}/library/redis:7.4", source.host());
    let target_url = target.url();
    let args = [
        "up",
        "--image",
        api.as_str(),
        "--mirror-redis",
        "--redis-image",
        redis_image.as_str(),
        "--registry-endpoint",
        target_url.as_str(),
        "--output",
        "json",
        "--timeout",
        "60s",
    ];

    let first = up(&proxy.url, &args).await.expect_code(0);
    let report = first.json();
    let expected = format!("{}@{}", ecr_uri("timing/redis"), amd64.digest());
    assert!(
        report["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().unwrap().contains(&expected)),
        "{report:#}"
    );
    let sdk = Sdk::new(&moto).await;
    let (redis_task_image, redis_revision) = task_image(&sdk, "timing-redis").await;
    assert_eq!(redis_task_image, expected);
    let (api_task_image, _) = task_image(&sdk, "timing-api").await;
    assert_eq!(
        api_task_image,
        format!("{}@{api_digest}", ecr_uri("timing/api"))
    );
    // The app's ECR repository for the copy exists (the task definition names it).
    let repos = sdk
        .ecr
        .describe_repositories()
        .repository_names("timing/redis")
        .send()
        .await
        .unwrap();
    assert_eq!(
        repos.repositories()[0].repository_uri(),
        Some(ecr_uri("timing/redis").as_str())
    );

    // The amd64 image arrived, byte for byte, under the source tag; arm64 did not.
    let reader = Registry::connect(
        &Endpoint::parse(&target_url).unwrap(),
        "timing/redis",
        Some(&aws_auth()),
        false,
        &UploadOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        reader.manifest_digest("7.4").await.unwrap(),
        Some(amd64.digest())
    );
    for blob in amd64.blobs() {
        assert!(reader.blob_exists(&blob.descriptor.digest).await.unwrap());
    }
    for blob in arm64.blobs() {
        assert!(!reader.blob_exists(&blob.descriptor.digest).await.unwrap());
    }
    let uploads = target.upload_requests();
    assert!(uploads >= 2, "{:?}", target.request_lines());

    // Again: nothing copied, nothing changed.
    proxy.clear();
    let second = up(&proxy.url, &args).await.expect_code(0);
    assert!(
        !second.json()["changed"].as_bool().unwrap(),
        "{}",
        second.stdout
    );
    assert_eq!(
        target.upload_requests(),
        uploads,
        "{:?}",
        target.request_lines()
    );
    assert_eq!(target.requests("PUT", "/manifests/"), 1);
    assert!(
        proxy.mutating().is_empty(),
        "mutated: {:?}",
        proxy.mutating()
    );
    assert_eq!(
        task_image(&sdk, "timing-redis").await,
        (expected, redis_revision)
    );
}
