//! The service image against real programs: the CNCF registry (Debian `docker-registry`),
//! redis-server, moto, git and cargo — no mocks.
//!
//! The native release build of `timing-service` runs once per test binary (a shared fixture)
//! into `<target>/image-native`; every other test uses small synthetic images. Each test starts
//! its own registry on a free loopback port and kills it at the end. Run with
//! `cargo test -p provisioner --test integration image::`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::image_support as support;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crate::support::process::{KillOnDrop, free_port};
use flate2::read::GzDecoder;
use provisioner::image::oci::{
    self, Architecture, ConfigFile, DOCKER_MANIFEST, OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP,
    OCI_MANIFEST, OciImageManifest, Os,
};
use provisioner::image::{
    ConsoleProgress, Destination, Endpoint, ImageContent, ImageError, ImageSource, MirrorSource,
    NativeBuild, PublishOptions, Registry, RegistryAuth, SilentProgress, UploadOptions, git,
    image_exists, mirror_image, publish_service_image, push_image, resolve_image,
};
use support::proxy::{Cut, Proxy};
use support::token::TokenServer;
use support::{TestRedis, TestRegistry, index_bytes, synthetic_image};
use tokio::sync::OnceCell;

/// moto's ECR password for its dummy account.
const MOTO_PASSWORD: &str = "123456789012-auth-token";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// `<target>/image-native`, next to the test binary's own target directory.
fn native_target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // <target>/debug/deps/image-<hash>
    let target = exe
        .ancestors()
        .nth(3)
        .map_or_else(|| workspace_root().join("target"), Path::to_path_buf);
    target.join("image-native")
}

struct Built {
    build: NativeBuild,
    binary: PathBuf,
    image: ImageContent,
    seconds: f64,
}

static NATIVE: OnceCell<Built> = OnceCell::const_new();

/// The real service, built once (release, static) and packed.
async fn native() -> &'static Built {
    NATIVE
        .get_or_init(|| async {
            let build = NativeBuild {
                target_dir: native_target_dir(),
                ..NativeBuild::service(&workspace_root())
            };
            let started = Instant::now();
            let binary = provisioner::image::build_native(&build, &SilentProgress)
                .await
                .unwrap_or_else(|e| panic!("native build failed: {e}"));
            let seconds = started.elapsed().as_secs_f64();
            let image = oci::service_image(&binary).unwrap();
            eprintln!(
                "native build: {seconds:.1} s, binary {} bytes, image {} bytes ({})",
                std::fs::metadata(&binary).unwrap().len(),
                image.size(),
                image.digest()
            );
            Built {
                build,
                binary,
                image,
                seconds,
            }
        })
        .await
}

fn endpoint(url: &str) -> Endpoint {
    Endpoint::parse(url).unwrap()
}

fn dest(url: &str, repository: &str, auth: Option<RegistryAuth>) -> Destination {
    Destination {
        endpoint: endpoint(url),
        repository: repository.to_string(),
        public_repository_uri: format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/{repository}"),
        auth,
    }
}

fn aws_auth() -> Option<RegistryAuth> {
    Some(RegistryAuth::new("AWS", MOTO_PASSWORD))
}

async fn pull_blob(registry: &Registry, digest: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blob");
    registry
        .download_blob(digest, &path, &SilentProgress, "blob", 0)
        .await
        .unwrap();
    std::fs::read(path).unwrap()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Starts `/timing-service` from an unpacked image root. As root it runs in a chroot of
/// exactly the layer's files as user 65532, with the /etc/hosts and /etc/resolv.conf a
/// container runtime would provide; otherwise it runs the unpacked binary directly.
fn service_command(rootfs: &Path, args: &[&str], listen_port: u16, redis_port: u16) -> Command {
    let mut cmd = if is_root() {
        let etc = rootfs.join("etc");
        std::fs::create_dir_all(&etc).unwrap();
        for file in ["hosts", "resolv.conf"] {
            let _ = std::fs::copy(Path::new("/etc").join(file), etc.join(file));
        }
        let mut cmd = Command::new("chroot");
        cmd.arg("--userspec=65532:65532")
            .arg(rootfs)
            .arg(oci::BINARY_PATH_IN_IMAGE);
        cmd
    } else {
        eprintln!("not root: running the unpacked binary without a chroot");
        Command::new(rootfs.join("timing-service"))
    };
    cmd.args(args)
        .env_clear()
        .env("PATH", oci::DEFAULT_PATH.trim_start_matches("PATH="))
        .env("LISTEN_ADDR", format!("127.0.0.1:{listen_port}"))
        // A host name, not an address: the static binary must resolve it.
        .env("REDIS_URL", format!("redis://localhost:{redis_port}"))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null());
    cmd
}

/// Native build → push → manifest and config read back → layer unpacked → the binary from
/// the layer serves `/health`, reaches a real Redis by host name (`/ready`), and its
/// `healthcheck` exits 0.
#[tokio::test]
async fn native_image_is_pushed_read_back_and_runs() {
    let built = native().await;
    let registry = TestRegistry::start_with_auth("AWS", MOTO_PASSWORD);
    let mut opts = PublishOptions::new(
        workspace_root(),
        ImageSource::Native,
        dest(&registry.url(), "timing-api", aws_auth()),
    );
    opts.native = built.build.clone();
    let started = Instant::now();
    // Plain progress lines (as in CI) go to the captured stderr.
    let published = publish_service_image(&opts, &ConsoleProgress::lines())
        .await
        .unwrap();
    let push_secs = started.elapsed().as_secs_f64();
    eprintln!(
        "first push (incl. no-op cargo build): {push_secs:.1} s, {} bytes uploaded; initial build {:.1} s",
        published.transfer.bytes_uploaded, built.seconds
    );

    let expected_tag = git::image_tag(&workspace_root()).await.unwrap();
    assert_eq!(published.tag.as_deref(), Some(expected_tag.as_str()));
    assert_eq!(
        published.digest,
        built.image.digest(),
        "same binary, same digest"
    );
    assert_eq!(
        published.reference_by_digest,
        format!(
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/timing-api@{}",
            published.digest
        )
    );
    assert_eq!(published.transfer.blobs_uploaded, 2);
    assert_eq!(published.transfer.blobs_skipped, 0);
    assert_eq!(published.transfer.bytes_uploaded, built.image.size());
    assert!(published.transfer.manifest_uploaded);

    // Read the manifest and config back through the registry.
    let reader = Registry::connect(
        &endpoint(&registry.url()),
        "timing-api",
        aws_auth().as_ref(),
        false,
        &UploadOptions::default(),
    )
    .await
    .unwrap();
    let (media_type, bytes) = reader.get_manifest(&expected_tag).await.unwrap().unwrap();
    assert_eq!(media_type, OCI_MANIFEST);
    assert_eq!(oci::sha256_digest(&bytes), published.digest);
    let manifest: OciImageManifest = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(manifest.config.media_type, OCI_CONFIG);
    assert_eq!(manifest.layers.len(), 1);
    assert_eq!(manifest.layers[0].media_type, OCI_LAYER_GZIP);
    let config: ConfigFile =
        serde_json::from_slice(&pull_blob(&reader, &manifest.config.digest).await).unwrap();
    assert_eq!(config.architecture, Architecture::Amd64);
    assert_eq!(config.os, Os::Linux);
    let run = config.config.clone().expect("the config's `config`");
    assert_eq!(run.entrypoint, Some(vec!["/timing-service".to_string()]));
    assert_eq!(run.user.as_deref(), Some("65532:65532"));
    assert!(
        run.exposed_ports
            .as_ref()
            .is_some_and(|p| p.contains("8080/tcp"))
    );
    assert!(
        run.env
            .as_ref()
            .is_some_and(|e| e.iter().any(|v| v.starts_with("PATH=")))
    );

    // The layer: its diff_id is the sha256 of the uncompressed tar; the binary (0755) and
    // /etc/nsswitch.conf, root-owned, mtime 0, in sorted order.
    let layer = pull_blob(&reader, &manifest.layers[0].digest).await;
    let mut tar_bytes = Vec::new();
    GzDecoder::new(&layer[..])
        .read_to_end(&mut tar_bytes)
        .unwrap();
    assert_eq!(config.rootfs.diff_ids, vec![oci::sha256_digest(&tar_bytes)]);
    let rootfs = tempfile::tempdir().unwrap();
    let mut archive = tar::Archive::new(&tar_bytes[..]);
    let mut names = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let header = entry.header().clone();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mode = if name == "etc/nsswitch.conf" {
            0o644
        } else {
            0o755
        };
        assert_eq!(header.mode().unwrap(), mode, "{name}");
        names.push(name);
        assert_eq!((header.uid().unwrap(), header.gid().unwrap()), (0, 0));
        assert_eq!(header.mtime().unwrap(), 0);
        entry.unpack_in(rootfs.path()).unwrap();
    }
    assert_eq!(names, vec!["etc/", "etc/nsswitch.conf", "timing-service"]);
    assert_eq!(
        std::fs::read_to_string(rootfs.path().join("etc/nsswitch.conf")).unwrap(),
        oci::NSSWITCH_CONF
    );
    assert_eq!(
        std::fs::read(rootfs.path().join("timing-service")).unwrap(),
        std::fs::read(&built.binary).unwrap()
    );

    // Run it from the unpacked layer against a real Redis, reached by host name.
    let redis = TestRedis::start();
    let port = free_port();
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = service_command(rootfs.path(), &[], port, redis.port);
    cmd.stdout(log.reopen().unwrap())
        .stderr(log.reopen().unwrap());
    let _service = KillOnDrop(cmd.spawn().expect("start the service from the layer"));
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/health");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        match http.get(&url).send().await {
            Ok(resp) => break resp.status(),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!(
                "the service from the image never answered {url}: {e}; its log:\n{}",
                std::fs::read_to_string(log.path()).unwrap_or_default()
            ),
        }
    };
    assert_eq!(
        status,
        200,
        "GET /health; service log:\n{}",
        std::fs::read_to_string(log.path()).unwrap_or_default()
    );
    // /ready pings Redis: REDIS_URL names `localhost`, so this proves the static binary
    // resolved a host name (through the image's nsswitch.conf and /etc/hosts).
    let ready_url = format!("http://127.0.0.1:{port}/ready");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let status = http.get(&ready_url).send().await.map(|r| r.status());
        if matches!(status, Ok(s) if s == 200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "GET /ready never answered 200 ({status:?}); service log:\n{}",
            std::fs::read_to_string(log.path()).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let health = service_command(rootfs.path(), &["healthcheck"], port, redis.port)
        .output()
        .expect("run healthcheck");
    assert!(
        health.status.success(),
        "`/timing-service healthcheck` failed: {health:?}"
    );
}

/// A second push of the same image sends nothing: every blob and the manifest are found.
/// Checked by the returned counters and by the registry's own access log.
#[tokio::test]
async fn second_push_uploads_nothing() {
    let built = native().await;
    let registry = TestRegistry::start_with_auth("AWS", MOTO_PASSWORD);
    let d = dest(&registry.url(), "timing-api", aws_auth());
    let first = push_image(
        &d,
        &built.image,
        "v1",
        &UploadOptions::default(),
        &SilentProgress,
    )
    .await
    .unwrap();
    assert_eq!(first.transfer.bytes_uploaded, built.image.size());
    let uploads_after_first = registry.upload_requests();
    assert!(uploads_after_first >= 2, "{:?}", registry.request_lines());

    let started = Instant::now();
    let second = push_image(
        &d,
        &built.image,
        "v1",
        &UploadOptions::default(),
        &SilentProgress,
    )
    .await
    .unwrap();
    eprintln!(
        "second push: {:.2} s, {} bytes uploaded",
        started.elapsed().as_secs_f64(),
        second.transfer.bytes_uploaded
    );
    assert_eq!(second.digest, first.digest);
    assert_eq!(second.transfer.bytes_uploaded, 0);
    assert_eq!(second.transfer.blobs_uploaded, 0);
    assert_eq!(second.transfer.blobs_skipped, 2);
    assert!(!second.transfer.manifest_uploaded);

    // Same content under a new tag (a new commit with the same binary): blobs are found by
    // HEAD, only the manifest is written.
    let third = push_image(
        &d,
        &built.image,
        "v2",
        &UploadOptions::default(),
        &SilentProgress,
    )
    .await
    .unwrap();
    assert_eq!(third.digest, first.digest);
    assert_eq!(third.transfer.bytes_uploaded, 0);
    assert_eq!(third.transfer.blobs_skipped, 2);
    assert!(third.transfer.manifest_uploaded);

    let uploads_after_all = registry.upload_requests();
    assert_eq!(
        uploads_after_all,
        uploads_after_first,
        "no upload request after the first push: {:?}",
        registry.request_lines()
    );
    assert_eq!(registry.requests("PUT", "/manifests/v1"), 1);
    assert_eq!(registry.requests("PUT", "/manifests/v2"), 1);
}

/// Wrong password: a 401 error naming the registry and repository; nothing is uploaded.
#[tokio::test]
async fn wrong_password_is_refused_clearly() {
    let registry = TestRegistry::start_with_auth("AWS", MOTO_PASSWORD);
    let image = synthetic_image("amd64", 1000, 1);
    let d = dest(
        &registry.url(),
        "timing-api",
        Some(RegistryAuth::new("AWS", "not-the-token")),
    );
    let err = push_image(&d, &image, "v1", &UploadOptions::default(), &SilentProgress)
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, ImageError::Unauthorized { .. }), "{err:?}");
    assert!(message.contains(&registry.host()), "{message}");
    assert!(message.contains("timing-api"), "{message}");
    assert!(message.contains("401"), "{message}");
    assert_eq!(registry.requests("POST", "/blobs/uploads/"), 0);

    // No credentials at all: says so.
    let d = dest(&registry.url(), "timing-api", None);
    let err = push_image(&d, &image, "v1", &UploadOptions::default(), &SilentProgress)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ImageError::CredentialsRequired { .. }),
        "{err:?}"
    );
}

/// An expired token is refused before any request is sent.
#[tokio::test]
async fn expired_token_is_refused_before_any_request() {
    let registry = TestRegistry::start_with_auth("AWS", MOTO_PASSWORD);
    let mut auth = RegistryAuth::new("AWS", MOTO_PASSWORD);
    auth.expires_at = Some(SystemTime::now() - Duration::from_secs(120));
    let image = synthetic_image("amd64", 1000, 2);
    let err = push_image(
        &dest(&registry.url(), "timing-api", Some(auth)),
        &image,
        "v1",
        &UploadOptions::default(),
        &SilentProgress,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ImageError::TokenExpired { .. }), "{err:?}");
    assert!(err.to_string().contains(&registry.host()), "{err}");
    assert!(registry.request_lines().is_empty());
}

/// A push cut off (retries used up) fails with an error naming registry and blob; the next
/// run sends only what the registry lacks: the blob that was cut, again from its start (an
/// interrupted upload is not resumed, see `image::registry`).
#[tokio::test]
async fn interrupted_upload_fails_clearly_and_the_next_run_completes_it() {
    let registry = TestRegistry::start();
    let proxy = Proxy::start(registry.port);
    let image = synthetic_image("amd64", 3 * 1024 * 1024 + 500_000, 3);
    let layer = &image.layers[0].descriptor;
    let upload = UploadOptions {
        attempts: 1,
        ..UploadOptions::default()
    };
    let d = dest(&proxy.url(), "timing-api", None);

    // The config arrives; the connection drops when the layer is sent.
    proxy.arm(Cut {
        nth_upload: 2,
        after_body_bytes: None,
    });
    let err = push_image(&d, &image, "v1", &upload, &SilentProgress)
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, ImageError::Interrupted { .. }), "{err:?}");
    assert!(message.contains(&layer.digest), "{message}");
    assert!(
        message.contains(&format!("127.0.0.1:{}", proxy.port)),
        "{message}"
    );
    assert_eq!(
        registry.requests("PUT", "/manifests/"),
        0,
        "no manifest without its layer"
    );

    // Re-run: the config is found, the layer is sent whole.
    let second = push_image(&d, &image, "v1", &upload, &SilentProgress)
        .await
        .unwrap();
    assert_eq!(second.digest, image.digest());
    assert_eq!(second.transfer.blobs_skipped, 1, "the config was kept");
    assert_eq!(second.transfer.bytes_uploaded, image.layers[0].size());
    let reader = Registry::connect(
        &endpoint(&registry.url()),
        "timing-api",
        None,
        false,
        &UploadOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        oci::sha256_digest(&pull_blob(&reader, &layer.digest).await),
        layer.digest
    );
}

/// A connection cut in the middle of a blob's upload is retried within the same run and the
/// image arrives intact (the blob is sent again from its start).
#[tokio::test]
async fn upload_cut_mid_chunk_is_retried_in_the_same_run() {
    let registry = TestRegistry::start();
    let proxy = Proxy::start(registry.port);
    let image = synthetic_image("amd64", 2 * 1024 * 1024 + 10_000, 4);
    let layer = &image.layers[0].descriptor;
    proxy.arm(Cut {
        nth_upload: 2,
        after_body_bytes: Some(300_000),
    });
    let d = dest(&proxy.url(), "timing-api", None);
    let published = push_image(&d, &image, "v1", &UploadOptions::default(), &SilentProgress)
        .await
        .unwrap();
    assert_eq!(published.digest, image.digest());
    assert!(published.transfer.bytes_uploaded >= image.size());
    assert!(proxy.requests().iter().any(|r| r.cut));
    eprintln!(
        "mid-upload cut: {} blob bytes sent for a {} byte image; requests: {:?}",
        published.transfer.bytes_uploaded,
        image.size(),
        proxy
            .requests()
            .iter()
            .map(|r| format!(
                "{} {} {}{}",
                r.method,
                r.path,
                r.body_forwarded,
                if r.cut { " CUT" } else { "" }
            ))
            .collect::<Vec<_>>()
    );
    let reader = Registry::connect(
        &endpoint(&registry.url()),
        "timing-api",
        None,
        false,
        &UploadOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        oci::sha256_digest(&pull_blob(&reader, &layer.digest).await),
        layer.digest
    );
}

/// Pushes a synthetic image's blobs and its manifest by digest (to build an index on top).
async fn seed_platform(registry: &Registry, image: &ImageContent) {
    for blob in image.blobs() {
        registry.push_blob(blob, &SilentProgress).await.unwrap();
    }
    registry
        .put_manifest(&image.digest(), OCI_MANIFEST, &image.manifest)
        .await
        .unwrap();
}

/// `--mirror-redis`: an amd64+arm64 index in one local registry; the amd64 image is copied
/// to another (authenticated) registry byte for byte; a second mirror copies nothing.
#[tokio::test]
async fn mirror_copies_the_amd64_image_between_registries() {
    let source = TestRegistry::start();
    let target = TestRegistry::start_with_auth("AWS", MOTO_PASSWORD);
    let amd64 = synthetic_image("amd64", 300_000, 5);
    let arm64 = synthetic_image("arm64", 200_000, 6);
    let seed = Registry::connect(
        &endpoint(&source.url()),
        "library/redis",
        None,
        true,
        &UploadOptions::default(),
    )
    .await
    .unwrap();
    seed_platform(&seed, &amd64).await;
    seed_platform(&seed, &arm64).await;
    let index = index_bytes(&[(&arm64, "arm64"), (&amd64, "amd64")]);
    seed.put_manifest("7.4-alpine", OCI_INDEX, &index)
        .await
        .unwrap();

    let d = dest(&target.url(), "timing-redis", aws_auth());
    let src = MirrorSource::public(format!("{}/library/redis:7.4-alpine", source.host()));
    let mirrored = mirror_image(
        &src,
        &d,
        &UploadOptions::default(),
        &ConsoleProgress::lines(),
    )
    .await
    .unwrap();
    assert_eq!(
        mirrored.digest,
        amd64.digest(),
        "the amd64 manifest, unchanged"
    );
    assert_eq!(mirrored.tag.as_deref(), Some("7.4-alpine"));
    assert_eq!(
        mirrored.reference_by_digest,
        format!(
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/timing-redis@{}",
            amd64.digest()
        )
    );
    assert_eq!(mirrored.transfer.blobs_uploaded, 2);
    assert_eq!(mirrored.transfer.bytes_uploaded, amd64.size());

    let reader = Registry::connect(
        &endpoint(&target.url()),
        "timing-redis",
        aws_auth().as_ref(),
        false,
        &UploadOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        reader.manifest_digest("7.4-alpine").await.unwrap(),
        Some(amd64.digest())
    );
    for blob in amd64.blobs() {
        assert!(reader.blob_exists(&blob.descriptor.digest).await.unwrap());
    }
    for blob in arm64.blobs() {
        assert!(!reader.blob_exists(&blob.descriptor.digest).await.unwrap());
    }

    let again = mirror_image(&src, &d, &UploadOptions::default(), &SilentProgress)
        .await
        .unwrap();
    assert_eq!(again.digest, amd64.digest());
    assert_eq!(again.transfer.bytes_uploaded, 0);
    assert!(!again.transfer.manifest_uploaded);
    assert_eq!(target.requests("PUT", "/manifests/"), 1);

    // A single-platform Docker v2 source is copied as is too.
    let docker_style = {
        let mut m: OciImageManifest = serde_json::from_slice(&arm64.manifest).unwrap();
        m.media_type = Some(DOCKER_MANIFEST.into());
        serde_json::to_vec(&m).unwrap()
    };
    seed.put_manifest("docker-style", DOCKER_MANIFEST, &docker_style)
        .await
        .unwrap();
    let src = MirrorSource::public(format!("{}/library/redis:docker-style", source.host()));
    let copied = mirror_image(&src, &d, &UploadOptions::default(), &SilentProgress)
        .await
        .unwrap();
    assert_eq!(copied.digest, oci::sha256_digest(&docker_style));
}

/// `image_exists` / `--image`: true for a pushed tag or digest, false otherwise; a missing
/// `--image` is an error before anything else happens.
#[tokio::test]
async fn image_exists_and_given_images() {
    let registry = TestRegistry::start_with_auth("AWS", MOTO_PASSWORD);
    let image = synthetic_image("amd64", 5000, 7);
    let d = dest(&registry.url(), "timing-api", aws_auth());
    push_image(&d, &image, "v1", &UploadOptions::default(), &SilentProgress)
        .await
        .unwrap();
    let auth = aws_auth();
    let host = registry.host();
    let yes = [
        format!("{host}/timing-api:v1"),
        format!("{host}/timing-api@{}", image.digest()),
    ];
    for reference in &yes {
        assert!(
            image_exists(reference, None, auth.as_ref()).await.unwrap(),
            "{reference}"
        );
    }
    let no = [
        format!("{host}/timing-api:v2"),
        format!("{host}/timing-api@sha256:{}", "1".repeat(64)),
        format!("{host}/other-repo:v1"),
    ];
    for reference in &no {
        assert!(
            !image_exists(reference, None, auth.as_ref()).await.unwrap(),
            "{reference}"
        );
    }
    assert_eq!(
        resolve_image(&yes[0], None, auth.as_ref()).await.unwrap(),
        Some(image.digest())
    );

    // --image in the app's own (ECR) registry goes through the destination endpoint.
    let given = |reference: &str| {
        PublishOptions::new(
            workspace_root(),
            ImageSource::Given(reference.to_string()),
            d.clone(),
        )
    };
    let ok = publish_service_image(
        &given(&format!("{}:v1", d.public_repository_uri)),
        &SilentProgress,
    )
    .await
    .unwrap();
    assert_eq!(ok.digest, image.digest());
    assert_eq!(
        ok.reference_by_digest,
        d.reference_by_digest(&image.digest())
    );
    assert_eq!(ok.transfer.bytes_uploaded, 0);
    let missing = format!("{}:does-not-exist", d.public_repository_uri);
    let err = publish_service_image(&given(&missing), &SilentProgress)
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::NotFound { .. }), "{err:?}");
    assert!(err.to_string().contains(&missing), "{err}");
}

fn git_in(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {out:?}");
}

/// The tag is the full commit id, `-dirty` with changed or untracked files.
#[tokio::test]
async fn tag_is_the_commit_and_dirty_when_changed() {
    let dir = tempfile::tempdir().unwrap();
    git_in(dir.path(), &["init", "-q"]);
    std::fs::write(dir.path().join("a.txt"), "a").unwrap();
    std::fs::write(dir.path().join(".gitignore"), "target/\n").unwrap();
    git_in(dir.path(), &["add", "."]);
    git_in(dir.path(), &["commit", "-q", "-m", "one"]);
    let head = Command::new("git")
        .arg("-C")
        .arg(dir.path())
        .args(["rev-parse", "HEAD"])
        .output()
        .unwrap();
    let head = String::from_utf8(head.stdout).unwrap().trim().to_string();
    assert_eq!(head.len(), 40);
    assert_eq!(git::image_tag(dir.path()).await.unwrap(), head);

    // Ignored files do not count.
    std::fs::create_dir(dir.path().join("target")).unwrap();
    std::fs::write(dir.path().join("target/x"), "x").unwrap();
    assert_eq!(git::image_tag(dir.path()).await.unwrap(), head);

    std::fs::write(dir.path().join("a.txt"), "changed").unwrap();
    assert_eq!(
        git::image_tag(dir.path()).await.unwrap(),
        format!("{head}-dirty")
    );
    git_in(dir.path(), &["checkout", "-q", "--", "a.txt"]);
    std::fs::write(dir.path().join("new.txt"), "n").unwrap();
    assert_eq!(
        git::image_tag(dir.path()).await.unwrap(),
        format!("{head}-dirty")
    );

    let not_git = tempfile::tempdir().unwrap();
    let err = git::image_tag(not_git.path()).await.unwrap_err();
    assert!(matches!(err, ImageError::Git { .. }), "{err:?}");
}

/// No Docker and the native build fails: the compiler's error and a hint; nothing is pushed.
#[tokio::test]
async fn failed_native_build_shows_the_compiler_error_and_pushes_nothing() {
    let registry = TestRegistry::start();
    let ws = tempfile::tempdir().unwrap();
    std::fs::write(
        ws.path().join("Cargo.toml"),
        "[workspace]\nmembers = [\"svc\"]\nresolver = \"2\"\n",
    )
    .unwrap();
    std::fs::create_dir_all(ws.path().join("svc/src")).unwrap();
    std::fs::write(
        ws.path().join("svc/Cargo.toml"),
        "[package]\nname = \"timing-service\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    )
    .unwrap();
    std::fs::write(
        ws.path().join("svc/src/main.rs"),
        "fn main() { let port: u16 = \"8080\"; println!(\"{port}\"); }\n",
    )
    .unwrap();
    std::fs::write(ws.path().join(".gitignore"), "target/\n").unwrap();
    git_in(ws.path(), &["init", "-q"]);
    git_in(ws.path(), &["add", "."]);
    git_in(ws.path(), &["commit", "-q", "-m", "broken"]);

    let opts = PublishOptions::new(
        ws.path(),
        ImageSource::Native,
        dest(&registry.url(), "timing-api", None),
    );
    let err = publish_service_image(&opts, &SilentProgress)
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, ImageError::Build { .. }), "{err:?}");
    assert!(message.contains("error[E0308]"), "{message}");
    assert!(message.contains("mismatched types"), "{message}");
    assert!(message.contains("hint:"), "{message}");
    assert!(message.contains("nothing was pushed"), "{message}");
    assert!(
        registry.request_lines().is_empty(),
        "nothing reached the registry: {:?}",
        registry.request_lines()
    );
}

/// End to end with the AWS emulator: `ecr_auth` gets moto's token and proxy endpoint, the
/// push goes to a local registry that accepts exactly that token (`--registry-endpoint`),
/// and the task-definition reference uses the ECR repository URI.
#[tokio::test]
async fn ecr_token_from_moto_pushes_to_the_registry_endpoint() {
    let moto = crate::support::Moto::start().await;
    let config = crate::support::sdk_config_at(&moto.url, "us-east-1").await;
    let ecr = aws_sdk_ecr::Client::new(&config);
    let repo = ecr
        .create_repository()
        .repository_name("timing-api")
        .send()
        .await
        .unwrap();
    let repo_uri = repo
        .repository()
        .and_then(|r| r.repository_uri())
        .unwrap()
        .to_string();
    let (auth, proxy_endpoint) = provisioner::image::ecr_auth(&ecr).await.unwrap();
    assert_eq!(auth.username, "AWS");
    assert!(proxy_endpoint.starts_with("https://"), "{proxy_endpoint}");
    assert!(!format!("{auth:?}").contains(&auth.password));
    // The proxy endpoint is a fake host: it must at least be a valid endpoint.
    Endpoint::parse(&proxy_endpoint).unwrap();

    let registry = TestRegistry::start_with_auth("AWS", &auth.password);
    // Without `--registry-endpoint` the token would go to the repository's own (fake) host,
    // never to the proxy endpoint; with it, to the registry named.
    let at_ecr = Destination::for_ecr(
        "timing-api",
        &repo_uri,
        (auth.clone(), proxy_endpoint.clone()),
        None,
    )
    .unwrap();
    assert_eq!(at_ecr.endpoint.host(), repo_uri.split('/').next().unwrap());
    let d = Destination::for_ecr(
        "timing-api",
        &repo_uri,
        (auth, proxy_endpoint),
        Some(&registry.url()),
    )
    .unwrap();
    let image = synthetic_image("amd64", 50_000, 8);
    let published = push_image(
        &d,
        &image,
        "abc",
        &UploadOptions::default(),
        &SilentProgress,
    )
    .await
    .unwrap();
    assert_eq!(
        published.reference_by_digest,
        format!("{repo_uri}@{}", image.digest())
    );
    // `--image <ecr uri>:abc` resolves through the same endpoint and token.
    let given = publish_service_image(
        &PublishOptions::new(
            workspace_root(),
            ImageSource::Given(format!("{repo_uri}:abc")),
            d.clone(),
        ),
        &SilentProgress,
    )
    .await
    .unwrap();
    assert_eq!(given.digest, image.digest());
}

/// The Docker builder runs only where a Docker daemon answers.
#[tokio::test]
async fn docker_builder_when_a_daemon_answers() {
    if !provisioner::image::docker_available().await {
        println!(
            "SKIPPED docker_builder_when_a_daemon_answers: no Docker daemon answers `docker info` \
             on this machine, so the Docker builder cannot run here"
        );
        return;
    }
    let registry = TestRegistry::start();
    let opts = PublishOptions::new(
        workspace_root(),
        ImageSource::Docker,
        dest(&registry.url(), "timing-api", None),
    );
    let published = publish_service_image(&opts, &SilentProgress).await.unwrap();
    assert_eq!(published.builder, "docker");
    assert!(published.digest.starts_with("sha256:"));
    let tag = published.tag.clone().unwrap();
    assert!(
        image_exists(&format!("{}/timing-api:{tag}", registry.host()), None, None)
            .await
            .unwrap()
    );
}

/// A registry in token mode whose token server answers at the registry's own origin (as
/// GHCR and most hosted registries): the client follows the Bearer challenge, gets a token for
/// exactly `repository:<name>:pull,push` (or `pull`) with its credentials, and pushes; wrong
/// credentials are refused at the token server.
#[tokio::test]
async fn bearer_token_registry_push_and_pull() {
    let tokens = TokenServer::start("AWS", MOTO_PASSWORD);
    let front = Proxy::start_unbound();
    front.route("/token", tokens.port);
    let registry = TestRegistry::start_with_token_at(&tokens, &format!("{}/token", front.url()));
    front.set_upstream(registry.port);
    let image = synthetic_image("amd64", 40_000, 9);
    let d = dest(&front.url(), "timing-api", aws_auth());
    let published = push_image(&d, &image, "v1", &UploadOptions::default(), &SilentProgress)
        .await
        .unwrap();
    assert_eq!(published.digest, image.digest());
    assert!(
        tokens
            .scopes()
            .contains(&"repository:timing-api:pull,push".to_string()),
        "{:?}",
        tokens.scopes()
    );
    assert!(
        image_exists(
            &format!("{}/timing-api:v1", front.host()),
            None,
            aws_auth().as_ref()
        )
        .await
        .unwrap()
    );
    assert_eq!(
        tokens.scopes().last().map(String::as_str),
        Some("repository:timing-api:pull")
    );

    let wrong = dest(
        &front.url(),
        "timing-api",
        Some(RegistryAuth::new("AWS", "wrong")),
    );
    let err = push_image(
        &wrong,
        &image,
        "v2",
        &UploadOptions::default(),
        &SilentProgress,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ImageError::Unauthorized { .. }), "{err:?}");
    assert!(err.to_string().contains("GET token"), "{err}");
    assert_eq!(registry.requests("PUT", "/manifests/v2"), 0);
}

/// Credentials go only to the registry: when its Bearer challenge names a token realm on
/// another origin (here another loopback port), the push stops with a message naming that
/// realm, and the token server never receives the credentials (nor anything else). Without
/// credentials (a public image) the realm is asked anonymously.
#[tokio::test]
async fn credentials_are_not_sent_to_a_token_realm_on_another_origin() {
    let tokens = TokenServer::start("AWS", MOTO_PASSWORD);
    let registry = TestRegistry::start_with_token(&tokens);
    let image = synthetic_image("amd64", 1000, 10);
    let d = dest(&registry.url(), "timing-api", aws_auth());
    let err = push_image(&d, &image, "v1", &UploadOptions::default(), &SilentProgress)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ImageError::CredentialsWithheld { .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains(&format!("127.0.0.1:{}", tokens.port)),
        "{message}"
    );
    assert!(message.contains(&registry.host()), "{message}");
    assert_eq!(
        tokens.requests(),
        (0, 0),
        "nothing reached the token server"
    );
    assert_eq!(registry.requests("POST", "/blobs/uploads/"), 0);

    // Anonymous: the realm is asked without an Authorization header (and refuses).
    let err = image_exists(&format!("{}/timing-api:v1", registry.host()), None, None)
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::Unauthorized { .. }), "{err:?}");
    assert_eq!(tokens.requests(), (1, 0));
}
