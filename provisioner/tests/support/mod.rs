//! Test fixtures for driving the real `provisioner` binary against moto in server mode.
//!
//! - [`Moto`]: a `moto_server` on a free loopback port, started with the two settings it
//!   needs (managed IAM policies loaded, ECS services reported running), killed on drop.
//! - [`Proxy`]: an HTTP proxy between the binary and moto that records every AWS call (so the
//!   tests count mutating calls independently of the provisioner's own counter) and can be
//!   told to fail every request after the first N (an interrupted `up`). It also refuses the
//!   teardown orders AWS refuses and moto allows ([`aws_rules`]), and can rewrite the answers
//!   to one operation ([`Proxy::rewrite`]) into what AWS would say where moto differs.
//! - [`run`]: runs the binary with dummy credentials and returns its exit code and output.
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

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

pub const REGION: &str = "eu-north-1";
pub const ACCOUNT: &str = "123456789012";

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A moto server of this test's own.
pub struct Moto {
    child: std::process::Child,
    pub url: String,
}

impl Moto {
    // The child is killed and waited for in `Drop`.
    #[allow(clippy::zombie_processes)]
    pub async fn start() -> Self {
        let port = free_port();
        let child = std::process::Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
            .env("MOTO_ECS_SERVICE_RUNNING", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start moto_server ({e}): install it with `pip install 'moto[server]'` or run scripts/install-deps")
            });
        let url = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(response) = client.get(format!("{url}/moto-api/data.json")).send().await
                && response.status().is_success()
            {
                return Self { child, url };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("moto_server did not answer on {url} within 20 s");
    }

    /// SDK configuration pointing straight at moto, for checking what the binary did.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        sdk_config_at(&self.url).await
    }
}

/// SDK configuration with dummy credentials for the endpoint at `url` (moto, or the proxy).
pub async fn sdk_config_at(url: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(url)
        .region(aws_config::Region::new(REGION))
        .credentials_provider(aws_credential_types::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .load()
        .await
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One AWS call seen by the proxy.
#[derive(Debug, Clone)]
pub struct Call {
    /// The service's signing name, which is its IAM prefix, e.g. `ecs`.
    pub service: String,
    /// Operation name, e.g. `CreateService`.
    pub operation: String,
    /// Request body as text.
    pub body: String,
}

impl Call {
    /// The IAM action the call needs, e.g. `ecs:CreateService`.
    pub fn action(&self) -> String {
        format!("{}:{}", self.service, self.operation)
    }

    pub fn is_mutating(&self) -> bool {
        ![
            "Describe",
            "List",
            "Get",
            "BatchGet",
            "BatchCheck",
            "Filter",
        ]
        .iter()
        .any(|p| self.operation.starts_with(p))
    }
}

#[derive(Clone)]
struct ProxyState {
    upstream: String,
    client: reqwest::Client,
    calls: Arc<Mutex<Vec<Call>>>,
    answered: Arc<AtomicUsize>,
    fail_after: Arc<AtomicUsize>,
    rules: aws_rules::AwsRules,
    refusals: Arc<Mutex<Vec<String>>>,
    rewrites: Arc<Mutex<Vec<(String, Rewrite)>>>,
}

/// Turns the body of a successful answer into another (what AWS would answer where moto
/// answers otherwise: a service that will not drain, a mount target still being created).
pub type Rewrite = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// A recording, fault-injecting proxy in front of moto.
pub struct Proxy {
    state: ProxyState,
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

/// The operation of an AWS request: JSON protocols name it in `X-Amz-Target`, query
/// protocols (IAM, EC2, STS) in the `Action` form field.
fn operation_of(method: &Method, uri: &Uri, headers: &HeaderMap, body: &str) -> String {
    if let Some(target) = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        return target.rsplit('.').next().unwrap_or(target).to_owned();
    }
    body.split('&')
        .find_map(|pair| pair.strip_prefix("Action="))
        .map(str::to_owned)
        .unwrap_or_else(|| rest_operation(method, uri.path()))
}

/// The signing name of a request (`Credential=KEY/DATE/REGION/SERVICE/aws4_request`).
fn service_of(headers: &HeaderMap) -> String {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|auth| auth.split("Credential=").nth(1))
        .and_then(|credential| credential.split('/').nth(3))
        .unwrap_or("unknown")
        .to_owned()
}

/// REST protocols (EFS) name the operation by method and path only: EFS's operations, as the
/// API reference maps them (`GET /2015-02-01/file-systems` → `DescribeFileSystems`,
/// `PUT /2015-02-01/mount-targets/{id}/security-groups` → `ModifyMountTargetSecurityGroups`).
fn rest_operation(method: &Method, path: &str) -> String {
    let segments: Vec<&str> = path
        .trim_start_matches("/2015-02-01/")
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let known = match (method.as_str(), segments.as_slice()) {
        ("GET", ["file-systems"]) => "DescribeFileSystems",
        ("POST", ["file-systems"]) => "CreateFileSystem",
        ("PUT", ["file-systems", _]) => "UpdateFileSystem",
        ("DELETE", ["file-systems", _]) => "DeleteFileSystem",
        ("GET", ["file-systems", _, "policy"]) => "DescribeFileSystemPolicy",
        ("PUT", ["file-systems", _, "policy"]) => "PutFileSystemPolicy",
        ("DELETE", ["file-systems", _, "policy"]) => "DeleteFileSystemPolicy",
        ("GET", ["file-systems", _, "lifecycle-configuration"]) => "DescribeLifecycleConfiguration",
        ("PUT", ["file-systems", _, "lifecycle-configuration"]) => "PutLifecycleConfiguration",
        ("GET", ["file-systems", _, "backup-policy"]) => "DescribeBackupPolicy",
        ("PUT", ["file-systems", _, "backup-policy"]) => "PutBackupPolicy",
        ("GET", ["access-points"]) => "DescribeAccessPoints",
        ("POST", ["access-points"]) => "CreateAccessPoint",
        ("DELETE", ["access-points", _]) => "DeleteAccessPoint",
        ("GET", ["mount-targets"]) => "DescribeMountTargets",
        ("POST", ["mount-targets"]) => "CreateMountTarget",
        ("DELETE", ["mount-targets", _]) => "DeleteMountTarget",
        ("GET", ["mount-targets", _, "security-groups"]) => "DescribeMountTargetSecurityGroups",
        ("PUT", ["mount-targets", _, "security-groups"]) => "ModifyMountTargetSecurityGroups",
        ("GET", ["resource-tags", _]) => "ListTagsForResource",
        ("POST", ["resource-tags", _]) => "TagResource",
        ("DELETE", ["resource-tags", _]) => "UntagResource",
        _ => "",
    };
    if !known.is_empty() {
        return known.to_owned();
    }
    generic_rest_operation(method, path)
}

/// Any other REST call: a name in the same verb-first style from method and path.
fn generic_rest_operation(method: &Method, path: &str) -> String {
    let verb = match *method {
        Method::GET | Method::HEAD => "Describe",
        Method::POST => "Create",
        Method::PUT | Method::PATCH => "Modify",
        Method::DELETE => "Delete",
        _ => "Unknown",
    };
    // The resource: the last path segment that is not an ID or a version date.
    let resource = path
        .split('/')
        .rfind(|s| !s.is_empty() && !s.chars().any(|c| c.is_ascii_digit()))
        .unwrap_or("Unknown");
    let resource: String = resource
        .split('-')
        .map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect();
    format!("{verb}{resource}")
}

async fn forward(
    State(state): State<ProxyState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let text = String::from_utf8_lossy(&body).into_owned();
    let operation = operation_of(&method, &uri, &headers, &text);
    let seen = state.answered.fetch_add(1, Ordering::SeqCst);
    if seen >= state.fail_after.load(Ordering::SeqCst) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "injected fault: the emulator stopped answering",
        )
            .into_response();
    }
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok());
    let refusal = state.rules.refusal(target, &operation, &text).await;
    state.calls.lock().unwrap().push(Call {
        service: service_of(&headers),
        operation: operation.clone(),
        body: text,
    });
    if let Some(refusal) = refusal {
        state
            .refusals
            .lock()
            .unwrap()
            .push(format!("{operation}: {refusal:?}"));
        return refusal.into_response();
    }
    let url = format!(
        "{}{}",
        state.upstream,
        uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
    );
    let mut request = state.client.request(method, url).body(body);
    for (name, value) in &headers {
        if name != "host" && name != "content-length" {
            request = request.header(name, value);
        }
    }
    match request.send().await {
        Ok(upstream) => {
            let status = upstream.status();
            let mut response_headers = HeaderMap::new();
            for (name, value) in upstream.headers() {
                if name != "content-length" && name != "transfer-encoding" && name != "connection" {
                    response_headers.insert(name.clone(), value.clone());
                }
            }
            let mut bytes = upstream.bytes().await.unwrap_or_default();
            let rewrite = state
                .rewrites
                .lock()
                .unwrap()
                .iter()
                .find(|(op, _)| *op == operation)
                .map(|(_, rewrite)| rewrite.clone());
            if let Some(rewrite) = rewrite.filter(|_| status.is_success()) {
                bytes = Bytes::from(rewrite(&String::from_utf8_lossy(&bytes)));
            }
            (status, response_headers, bytes).into_response()
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

impl Proxy {
    pub async fn start(moto: &Moto) -> Self {
        let state = ProxyState {
            upstream: moto.url.clone(),
            client: reqwest::Client::new(),
            calls: Arc::default(),
            answered: Arc::default(),
            fail_after: Arc::new(AtomicUsize::new(usize::MAX)),
            rules: aws_rules::AwsRules::new(moto).await,
            refusals: Arc::default(),
            rewrites: Arc::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { state, url, task }
    }

    /// Every call recorded so far.
    pub fn calls(&self) -> Vec<Call> {
        self.state.calls.lock().unwrap().clone()
    }

    /// The requests refused for AWS's teardown-order rules, `Operation: why`.
    pub fn refusals(&self) -> Vec<String> {
        self.state.refusals.lock().unwrap().clone()
    }

    /// Forgets the calls recorded so far.
    pub fn clear(&self) {
        self.state.calls.lock().unwrap().clear();
    }

    /// Mutating operations recorded so far.
    pub fn mutating(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(Call::is_mutating)
            .map(|c| c.operation)
            .collect()
    }

    /// From now on, answer only `n` more requests, then fail every one.
    pub fn fail_after(&self, n: usize) {
        let answered = self.state.answered.load(Ordering::SeqCst);
        self.state.fail_after.store(answered + n, Ordering::SeqCst);
    }

    /// From now on, the successful answers to `operation` pass through `rewrite`.
    pub fn rewrite(
        &self,
        operation: &str,
        rewrite: impl Fn(&str) -> String + Send + Sync + 'static,
    ) {
        self.state
            .rewrites
            .lock()
            .unwrap()
            .push((operation.to_owned(), Arc::new(rewrite)));
    }

    /// Answers are passed on as moto gives them again.
    pub fn stop_rewriting(&self) {
        self.state.rewrites.lock().unwrap().clear();
    }

    /// Answer every request again.
    pub fn heal(&self) {
        self.state.fail_after.store(usize::MAX, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
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

/// What one run of the binary produced.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// stdout parsed as the JSON report.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// Panics with the output unless the exit code is `code`.
    pub fn expect_code(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// Runs the provisioner with dummy credentials against `endpoint`, files from `root`.
pub async fn run(endpoint: &str, root: &Path, args: &[&str]) -> Run {
    run_with_env(
        Some(endpoint),
        root,
        args,
        &[
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", REGION),
        ],
    )
    .await
}

/// Runs the provisioner with exactly the environment given (plus PATH and an empty HOME).
pub async fn run_with_env(
    endpoint: Option<&str>,
    root: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> Run {
    let home = tempfile::tempdir().unwrap();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_provisioner"));
    command
        .args(args)
        .arg("--root")
        .arg(root)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("AWS_CONFIG_FILE", home.path().join("config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            home.path().join("credentials"),
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if let Some(endpoint) = endpoint {
        command.env("AWS_ENDPOINT_URL", endpoint);
    }
    for (key, value) in env {
        command.env(key, value);
    }
    let output = tokio::time::timeout(Duration::from_secs(300), command.output())
        .await
        .expect("the provisioner ran for over 5 minutes")
        .unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
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
