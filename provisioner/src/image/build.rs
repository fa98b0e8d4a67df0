//! The two builders: the native (daemonless) cargo build of a static binary, and Docker.
//!
//! Native: `cargo build --release -p timing-service --target x86_64-unknown-linux-gnu` with
//! `-C target-feature=+crt-static`, in its own target directory (so the flags do not
//! invalidate the workspace's normal build). Static glibc is used because no musl target can
//! be installed on this project's machines; glibc ≥ 2.34 has its `files` and `dns` name
//! services inside libc, so a static binary still resolves host names (ECS service discovery
//! names, `localhost`) from `/etc/hosts` and `/etc/resolv.conf`, which the container runtime
//! provides. The result is checked to have no ELF interpreter before it is packed.
//!
//! Docker: `docker build --platform linux/amd64 -f service/Dockerfile` under a local name first
//! (before anything is written to AWS), then once the repository exists `docker tag`, `docker
//! login --password-stdin` (the token never appears on a command line) into a throw-away
//! `DOCKER_CONFIG`, `docker push`, digest read from the push output.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::error::ImageError;
use super::oci::elf_has_interpreter;
use super::progress::Progress;
use super::reference::Endpoint;
use super::registry::RegistryAuth;

/// The only platform the service image is built for (Fargate X86_64).
pub const TARGET_TRIPLE: &str = "x86_64-unknown-linux-gnu";

/// How long `docker info` may take before Docker counts as absent.
const DOCKER_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Inputs of the native build.
#[derive(Debug, Clone)]
pub struct NativeBuild {
    /// The workspace root (holds `Cargo.toml`).
    pub workspace_root: PathBuf,
    /// A target directory for this build only (e.g. `target/image-native`).
    pub target_dir: PathBuf,
    /// Cargo package to build.
    pub package: String,
    /// Binary of the package.
    pub binary: String,
}

impl NativeBuild {
    /// The service's native build with its target directory under `target/image-native`.
    pub fn service(workspace_root: &Path) -> Self {
        NativeBuild {
            workspace_root: workspace_root.to_path_buf(),
            target_dir: workspace_root.join("target").join("image-native"),
            package: "timing-service".to_string(),
            binary: "timing-service".to_string(),
        }
    }

    /// Where cargo leaves the binary.
    pub fn binary_path(&self) -> PathBuf {
        self.target_dir
            .join(TARGET_TRIPLE)
            .join("release")
            .join(&self.binary)
    }
}

/// Builds the static binary; on a compile failure returns the compiler's errors and a hint.
pub async fn build_native(
    build: &NativeBuild,
    progress: &dyn Progress,
) -> Result<PathBuf, ImageError> {
    if !(cfg!(target_os = "linux") && cfg!(target_arch = "x86_64")) {
        return Err(ImageError::Build {
            package: build.package.clone(),
            compiler_output: String::new(),
            hint: "the native builder runs on x86_64 Linux only; start a Docker daemon or pass \
                   `--image URI`"
                .into(),
        });
    }
    progress.step(&format!(
        "building {} (release, static, {TARGET_TRIPLE}) in {}",
        build.package,
        build.target_dir.display()
    ));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut rustflags = std::env::var("RUSTFLAGS").unwrap_or_default();
    if !rustflags.contains("crt-static") {
        rustflags.push_str(" -C target-feature=+crt-static");
    }
    let output = Command::new(&cargo)
        .current_dir(&build.workspace_root)
        .args(["build", "--release", "--target", TARGET_TRIPLE, "-p"])
        .arg(&build.package)
        .arg("--bin")
        .arg(&build.binary)
        .arg("--manifest-path")
        .arg(build.workspace_root.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &build.target_dir)
        .env("RUSTFLAGS", rustflags.trim())
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| ImageError::Tool {
            program: format!("{} build", cargo.to_string_lossy()),
            detail: format!("cannot start it: {e}"),
        })?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(ImageError::Build {
            package: build.package.clone(),
            compiler_output: compiler_errors(&stderr),
            hint: build_hint(&stderr),
        });
    }
    let binary = build.binary_path();
    if !binary.is_file() {
        return Err(ImageError::Tool {
            program: "cargo build".into(),
            detail: format!("it succeeded but `{}` does not exist", binary.display()),
        });
    }
    if elf_has_interpreter(&binary)? {
        return Err(ImageError::NotStatic { path: binary });
    }
    Ok(binary)
}

/// Cargo's stderr without its progress lines, at most the last 120 lines.
fn compiler_errors(stderr: &str) -> String {
    const STATUS: [&str; 12] = [
        "Compiling",
        "Checking",
        "Downloading",
        "Downloaded",
        "Updating",
        "Locking",
        "Adding",
        "Blocking",
        "Fresh",
        "Finished",
        "Running",
        "Building",
    ];
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| {
            let t = l.trim_start();
            !STATUS.iter().any(|s| t.starts_with(s))
        })
        .collect();
    let start = lines.len().saturating_sub(120);
    lines[start..].join("\n")
}

fn build_hint(stderr: &str) -> String {
    if stderr.contains("can't find crate for `std`")
        || stderr.contains("target may not be installed")
    {
        format!("install the target: `rustup target add {TARGET_TRIPLE}`")
    } else if stderr.contains("cannot find -lc") || stderr.contains("cannot find -lpthread") {
        "a static glibc build needs the C library's static archives (Debian/Ubuntu: \
         `apt-get install libc6-dev`)"
            .into()
    } else {
        "fix the error above and re-run, or deploy an image built elsewhere with `--image URI`; \
         nothing was pushed"
            .into()
    }
}

/// Whether a Docker daemon answers: `docker info` exits 0 within 5 seconds.
pub async fn docker_available() -> bool {
    let probe = Command::new("docker")
        .arg("info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .status();
    matches!(
        tokio::time::timeout(DOCKER_PROBE_TIMEOUT, probe).await,
        Ok(Ok(status)) if status.success()
    )
}

/// Inputs of the Docker build.
#[derive(Debug, Clone)]
pub struct DockerBuild {
    /// The build context (the workspace root).
    pub workspace_root: PathBuf,
    /// The Dockerfile, relative to the workspace root (`service/Dockerfile`).
    pub dockerfile: PathBuf,
}

impl DockerBuild {
    /// `service/Dockerfile` with the workspace as context.
    pub fn service(workspace_root: &Path) -> Self {
        DockerBuild {
            workspace_root: workspace_root.to_path_buf(),
            dockerfile: PathBuf::from("service").join("Dockerfile"),
        }
    }
}

/// The name a Docker build is kept under locally until it is pushed: no registry host, so
/// nothing is sent anywhere by the build itself.
pub fn docker_local_image(tag: &str) -> String {
    format!("timing-service-build:{tag}")
}

/// Builds with Docker for linux/amd64 under `local_image` ([`docker_local_image`]). Done
/// before the first write to AWS, so a failed build leaves the account as it was.
pub async fn docker_build(
    build: &DockerBuild,
    local_image: &str,
    progress: &dyn Progress,
) -> Result<(), ImageError> {
    let dockerfile = build.workspace_root.join(&build.dockerfile);
    progress.step(&format!(
        "docker build --platform linux/amd64 -t {local_image}"
    ));
    let mut cmd = Command::new("docker");
    cmd.args(["build", "--platform", "linux/amd64", "-f"])
        .arg(&dockerfile)
        .args(["-t", local_image])
        .arg(&build.workspace_root);
    run_docker(cmd, "build", local_image, None).await?;
    Ok(())
}

/// Tags the image [`docker_build`] made as `<endpoint host>/<repository>:<tag>`, logs in
/// (token on stdin), pushes, and returns the digest the registry reported.
pub async fn docker_push(
    local_image: &str,
    endpoint: &Endpoint,
    repository: &str,
    tag: &str,
    auth: Option<&RegistryAuth>,
    progress: &dyn Progress,
) -> Result<String, ImageError> {
    let image = format!("{}/{repository}:{tag}", endpoint.host());
    let mut cmd = Command::new("docker");
    cmd.args(["tag", local_image, &image]);
    run_docker(cmd, "tag", &image, None).await?;

    // Credentials go to a throw-away config dir, so the token does not outlive this run.
    let config =
        tempfile::tempdir().map_err(|e| ImageError::io("creating", "a DOCKER_CONFIG dir", e))?;
    if let Some(auth) = auth {
        progress.step(&format!("docker login {}", endpoint.host()));
        let mut cmd = Command::new("docker");
        cmd.env("DOCKER_CONFIG", config.path())
            .args(["login", "--username", &auth.username, "--password-stdin"])
            .arg(endpoint.host());
        run_docker(cmd, "login", &image, Some(&auth.password)).await?;
    }
    progress.step(&format!("docker push {image}"));
    let mut cmd = Command::new("docker");
    cmd.env("DOCKER_CONFIG", config.path())
        .args(["push", &image]);
    let out = run_docker(cmd, "push", &image, None).await?;
    if let Some(digest) = digest_in_push_output(&out) {
        return Ok(digest);
    }
    let mut cmd = Command::new("docker");
    cmd.args([
        "inspect",
        "--format",
        "{{join .RepoDigests \"\\n\"}}",
        &image,
    ]);
    let out = run_docker(cmd, "inspect", &image, None).await?;
    let prefix = format!("{}/{repository}@", endpoint.host());
    out.lines()
        .find_map(|l| l.trim().strip_prefix(&prefix).map(str::to_string))
        .ok_or_else(|| ImageError::Docker {
            step: "inspect",
            image: image.clone(),
            detail: "neither `docker push` nor `docker inspect` reported a digest".into(),
        })
}

/// `latest: digest: sha256:... size: 1234` → the digest.
fn digest_in_push_output(out: &str) -> Option<String> {
    out.lines().find_map(|line| {
        let (_, rest) = line.split_once("digest: ")?;
        let digest = rest.split_whitespace().next()?;
        (digest.starts_with("sha256:") && digest.len() == 71).then(|| digest.to_string())
    })
}

async fn run_docker(
    mut cmd: Command,
    step: &'static str,
    image: &str,
    stdin: Option<&str>,
) -> Result<String, ImageError> {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    let fail = |detail: String| ImageError::Docker {
        step,
        image: image.to_string(),
        detail,
    };
    let mut child = cmd
        .spawn()
        .map_err(|e| fail(format!("cannot start docker: {e}")))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .await
            .map_err(|e| fail(format!("writing to docker's stdin: {e}")))?;
        drop(pipe);
    }
    let output = child
        .wait_with_output()
        .await
        .map_err(|e| fail(format!("waiting for docker: {e}")))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(fail(format!("{}: {}", output.status, tail.join("\n"))));
    }
    Ok(stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_digest_in_push_output() {
        let out = "The push refers to repository [127.0.0.1:5000/api]\n\
                   5f70bf18a086: Pushed\n\
                   abc: digest: sha256:0123456789012345678901234567890123456789012345678901234567890123 size: 528\n";
        assert_eq!(
            digest_in_push_output(out).as_deref(),
            Some("sha256:0123456789012345678901234567890123456789012345678901234567890123")
        );
        assert_eq!(digest_in_push_output("nothing"), None);
    }

    #[test]
    fn keeps_compiler_errors_and_drops_progress_lines() {
        let stderr =
            "   Compiling foo v0.1.0\nerror[E0425]: cannot find value `x`\n --> src/main.rs:1:1\n";
        let kept = compiler_errors(stderr);
        assert!(kept.starts_with("error[E0425]"));
        assert!(!kept.contains("Compiling"));
        assert!(build_hint(stderr).contains("--image"));
        assert!(build_hint("error: cannot find -lc").contains("libc6-dev"));
    }
}
