//! A small client for the OCI distribution API: authentication, blob checks, resumable
//! chunked uploads, manifests, and blob downloads (for mirroring).
//!
//! # Authentication
//! [`Registry::connect`] pings `GET /v2/` once. A `401` carries a `WWW-Authenticate` challenge:
//! `Basic` (ECR, htpasswd registries) sends the credentials on every request; `Bearer` (Docker
//! Hub, token-auth registries) fetches a token from the challenge's `realm` for
//! `repository:<name>:pull[,push]`, with the credentials when there are any (anonymous
//! otherwise). The ping is repeated with the credentials, so wrong ones fail before any data is
//! sent. A `401` later (an expired token) re-authenticates once, then fails with
//! [`ImageError::Unauthorized`] naming the registry and repository.
//!
//! # Uploads
//! A blob is first checked with `HEAD /v2/<name>/blobs/<digest>`; existing blobs are skipped.
//! A blob no larger than one chunk goes as `POST` + one `PUT ?digest=` carrying the body.
//! Larger blobs go as `POST` + `PATCH` per chunk (`Content-Range: start-end`) + `PUT ?digest=`.
//! After every chunk the upload's `Location` and the offset the registry reports in `Range` are
//! saved (in memory, and in `UploadOptions::state_dir` when set). When a transfer is cut,
//! the next attempt — a bounded in-process retry, or the next run — asks the registry where the
//! upload stands (`GET <location>` → `Range`) and continues from there, so acknowledged chunks
//! are not sent twice. The offset always comes from the registry, never from the client's own
//! count, because a registry may keep part of a chunk that was cut. The CNCF registry (2.8)
//! discards an upload whose last request was cut mid-body (its saved state no longer matches);
//! the client then starts that blob again, which is the only case where bytes are re-sent.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderValue, LOCATION,
    WWW_AUTHENTICATE,
};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt;

use super::error::{ImageError, chain};
use super::oci::{Blob, MANIFEST_ACCEPT, sha256_digest};
use super::progress::{BlobOutcome, Progress};
use super::reference::Endpoint;

/// Credentials for a registry: ECR's `AWS` + token, or a user and password.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryAuth {
    /// User name (`AWS` for ECR).
    pub username: String,
    /// Password or token. Never printed (see the `Debug` impl).
    pub password: String,
    /// When the token stops working, if known (ECR tokens last 12 hours).
    pub expires_at: Option<SystemTime>,
}

impl RegistryAuth {
    /// Credentials that do not expire.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        RegistryAuth {
            username: username.into(),
            password: password.into(),
            expires_at: None,
        }
    }
}

impl fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// How uploads are done.
#[derive(Debug, Clone)]
pub struct UploadOptions {
    /// Bytes per `PATCH`. Blobs no larger than this go in one request. ECR needs at least
    /// 5 MiB per chunk except the last.
    pub chunk_size: u64,
    /// Attempts per blob (and per request outside uploads) when the connection fails or the
    /// registry answers 5xx; each retry resumes where the registry says the upload stands.
    pub attempts: u32,
    /// Time limit of one HTTP request (one chunk).
    pub request_timeout: Duration,
    /// Time limit to connect.
    pub connect_timeout: Duration,
    /// Where partial uploads are remembered so the next run resumes them (`None`: only
    /// within this run).
    pub state_dir: Option<PathBuf>,
}

impl Default for UploadOptions {
    fn default() -> Self {
        UploadOptions {
            chunk_size: 8 * 1024 * 1024,
            attempts: 3,
            request_timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(10),
            state_dir: None,
        }
    }
}

/// What a push or mirror transferred.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TransferStats {
    /// Blob bytes sent to the registry in this run.
    pub bytes_uploaded: u64,
    /// Blobs sent.
    pub blobs_uploaded: u32,
    /// Blobs the registry already had.
    pub blobs_skipped: u32,
    /// Whether the manifest was written (false when the tag already named the same digest).
    pub manifest_uploaded: bool,
}

impl TransferStats {
    /// Counts one blob's outcome.
    pub fn record(&mut self, outcome: BlobOutcome) {
        match outcome {
            BlobOutcome::Skipped => self.blobs_skipped += 1,
            BlobOutcome::Uploaded { sent } => {
                self.blobs_uploaded += 1;
                self.bytes_uploaded += sent;
            }
            BlobOutcome::Pulled { .. } => {}
        }
    }
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Challenge {
    /// `basic` or `bearer` (lowercased).
    pub scheme: String,
    /// `realm`, `service`, `scope`, ... (keys lowercased).
    pub params: HashMap<String, String>,
}

/// Parses `Scheme key="value", key2=value2` (quoted values may hold commas).
pub(crate) fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    if scheme.is_empty() {
        return None;
    }
    let mut params = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.trim().is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek() {
                if *c == ',' {
                    break;
                }
                value.push(*c);
                chars.next();
            }
        }
        params.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    Some(Challenge {
        scheme: scheme.to_ascii_lowercase(),
        params,
    })
}

/// A saved upload: where it continues and how much the registry had.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct UploadSession {
    registry: String,
    repository: String,
    digest: String,
    location: String,
    offset: u64,
}

/// A connection to one repository of one registry.
pub struct Registry {
    http: reqwest::Client,
    endpoint: Endpoint,
    repository: String,
    auth: Option<RegistryAuth>,
    push: bool,
    options: UploadOptions,
    /// The `Authorization` header value in use (Basic or Bearer), if the registry wants one.
    authorization: Mutex<Option<String>>,
    /// The last challenge, to refresh a Bearer token.
    challenge: Mutex<Option<Challenge>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("endpoint", &self.endpoint.as_str())
            .field("repository", &self.repository)
            .field("push", &self.push)
            .finish_non_exhaustive()
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(250u64.saturating_mul(1 << attempt.min(6)))
}

impl Registry {
    /// Connects to `repository` at `endpoint`: pings `/v2/`, authenticates as the registry
    /// asks (for pull, or pull and push), and checks the credentials are accepted.
    pub async fn connect(
        endpoint: &Endpoint,
        repository: &str,
        auth: Option<&RegistryAuth>,
        push: bool,
        options: &UploadOptions,
    ) -> Result<Self, ImageError> {
        let http = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .timeout(options.request_timeout)
            .user_agent(concat!("timing-provisioner/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ImageError::Transport {
                registry: endpoint.host(),
                operation: "building the HTTP client".into(),
                cause: chain(&e),
            })?;
        let registry = Registry {
            http,
            endpoint: endpoint.clone(),
            repository: repository.to_string(),
            auth: auth.cloned(),
            push,
            options: options.clone(),
            authorization: Mutex::new(None),
            challenge: Mutex::new(None),
        };
        registry.check_expiry()?;
        registry.ping().await?;
        Ok(registry)
    }

    /// The registry host (for messages).
    pub fn host(&self) -> String {
        self.endpoint.host()
    }

    /// The repository this connection is for.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    fn check_expiry(&self) -> Result<(), ImageError> {
        if let Some(expires) = self.auth.as_ref().and_then(|a| a.expires_at)
            && let Ok(ago) = SystemTime::now().duration_since(expires)
        {
            return Err(ImageError::TokenExpired {
                registry: self.host(),
                ago_secs: ago.as_secs(),
            });
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), ImageError> {
        let url = self.endpoint.join("/v2/")?;
        let operation = "GET /v2/";
        let resp = self
            .with_retries(operation, || async {
                self.http
                    .get(url.clone())
                    .send()
                    .await
                    .map_err(|e| self.transport(operation, &e))
            })
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(()),
            StatusCode::UNAUTHORIZED => {
                let challenge = self.challenge_of(&resp, operation)?;
                self.authenticate(&challenge).await?;
                // Prove the credentials work before any data is sent.
                let resp = self.send(operation, |c| c.get(url.clone())).await?;
                if resp.status().is_success() {
                    Ok(())
                } else {
                    Err(self.unexpected(operation, resp).await)
                }
            }
            _ => Err(self.unexpected(operation, resp).await),
        }
    }

    fn challenge_of(&self, resp: &Response, operation: &str) -> Result<Challenge, ImageError> {
        resp.headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_challenge)
            .ok_or_else(|| ImageError::Unauthorized {
                registry: self.host(),
                repository: self.repository.clone(),
                operation: operation.to_string(),
                detail: ": the 401 answer has no usable WWW-Authenticate challenge".into(),
            })
    }

    /// Sets the `Authorization` header for a challenge (Basic: the credentials; Bearer: a token
    /// from the realm).
    async fn authenticate(&self, challenge: &Challenge) -> Result<(), ImageError> {
        if let Ok(mut c) = self.challenge.lock() {
            *c = Some(challenge.clone());
        }
        let header = match challenge.scheme.as_str() {
            "basic" => {
                let auth = self
                    .auth
                    .as_ref()
                    .ok_or_else(|| ImageError::CredentialsRequired {
                        registry: self.host(),
                        repository: self.repository.clone(),
                        scheme: "Basic".into(),
                    })?;
                basic_header(auth)
            }
            "bearer" => format!("Bearer {}", self.fetch_token(challenge).await?),
            other => {
                return Err(ImageError::Unauthorized {
                    registry: self.host(),
                    repository: self.repository.clone(),
                    operation: "authentication".into(),
                    detail: format!(": unsupported authentication scheme `{other}`"),
                });
            }
        };
        if let Ok(mut a) = self.authorization.lock() {
            *a = Some(header);
        }
        Ok(())
    }

    async fn fetch_token(&self, challenge: &Challenge) -> Result<String, ImageError> {
        let operation = "GET token";
        let realm = challenge
            .params
            .get("realm")
            .ok_or_else(|| ImageError::Unauthorized {
                registry: self.host(),
                repository: self.repository.clone(),
                operation: operation.into(),
                detail: ": the Bearer challenge has no realm".into(),
            })?;
        let mut url = Url::parse(realm).map_err(|e| ImageError::InvalidEndpoint {
            endpoint: realm.clone(),
            reason: format!("token realm: {e}"),
        })?;
        if url.scheme() == "http" {
            // Re-use the endpoint rule: plain HTTP only on loopback.
            Endpoint::parse(&format!("http://{}", url.host_str().unwrap_or_default()))?;
        }
        let actions = if self.push { "pull,push" } else { "pull" };
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = challenge.params.get("service") {
                query.append_pair("service", service);
            }
            query.append_pair(
                "scope",
                &format!("repository:{}:{actions}", self.repository),
            );
        }
        let resp = self
            .with_retries(operation, || async {
                let mut req = self.http.get(url.clone());
                if let Some(auth) = &self.auth {
                    req = req.header(AUTHORIZATION, basic_header(auth));
                }
                req.send().await.map_err(|e| self.transport(operation, &e))
            })
            .await?;
        match resp.status() {
            s if s.is_success() => {}
            StatusCode::UNAUTHORIZED => {
                let detail = error_detail(resp).await;
                return Err(ImageError::Unauthorized {
                    registry: self.host(),
                    repository: self.repository.clone(),
                    operation: operation.into(),
                    detail,
                });
            }
            _ => return Err(self.unexpected(operation, resp).await),
        }
        #[derive(Deserialize)]
        struct TokenAnswer {
            token: Option<String>,
            access_token: Option<String>,
        }
        let answer: TokenAnswer = resp
            .json()
            .await
            .map_err(|e| self.transport(operation, &e))?;
        answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ImageError::Unauthorized {
                registry: self.host(),
                repository: self.repository.clone(),
                operation: operation.into(),
                detail: ": the token answer holds no token".into(),
            })
    }

    fn transport(&self, operation: &str, err: &reqwest::Error) -> ImageError {
        ImageError::Transport {
            registry: self.host(),
            operation: operation.to_string(),
            cause: chain(err),
        }
    }

    async fn unexpected(&self, operation: &str, resp: Response) -> ImageError {
        let status = resp.status();
        let detail = error_detail(resp).await;
        match status {
            StatusCode::UNAUTHORIZED => ImageError::Unauthorized {
                registry: self.host(),
                repository: self.repository.clone(),
                operation: operation.to_string(),
                detail,
            },
            StatusCode::FORBIDDEN => ImageError::Denied {
                registry: self.host(),
                repository: self.repository.clone(),
                operation: operation.to_string(),
                detail,
            },
            _ => ImageError::UnexpectedStatus {
                registry: self.host(),
                repository: self.repository.clone(),
                operation: operation.to_string(),
                status: status.as_u16(),
                detail,
            },
        }
    }

    /// Runs `attempt` up to `options.attempts` times while it fails transiently.
    async fn with_retries<T, F, Fut>(&self, operation: &str, attempt: F) -> Result<T, ImageError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, ImageError>>,
    {
        let attempts = self.options.attempts.max(1);
        let mut n = 0;
        loop {
            n += 1;
            match attempt().await {
                Err(e) if e.is_transient() && n < attempts => {
                    tracing::debug!(operation, attempt = n, error = %e, "retrying");
                    tokio::time::sleep(backoff(n)).await;
                }
                Err(e) if e.is_transient() && attempts > 1 => {
                    return Err(ImageError::RetriesExhausted {
                        registry: self.host(),
                        repository: self.repository.clone(),
                        operation: operation.to_string(),
                        attempts,
                        last: Box::new(e),
                    });
                }
                other => return other,
            }
        }
    }

    /// Sends one request with the current authorization; on a `401` re-authenticates once
    /// (a Bearer token may have expired) and sends it again.
    async fn send<F>(&self, operation: &str, make: F) -> Result<Response, ImageError>
    where
        F: Fn(&reqwest::Client) -> RequestBuilder,
    {
        self.check_expiry()?;
        let mut reauthenticated = false;
        loop {
            let mut request = make(&self.http)
                .build()
                .map_err(|e| self.transport(operation, &e))?;
            // Credentials go only to the registry itself, never to another host a Location
            // header may point at (the way reqwest drops them on cross-host redirects).
            let header = self.authorization.lock().ok().and_then(|a| a.clone());
            if let Some(header) = header
                && self.same_origin(request.url())
                && let Ok(value) = HeaderValue::from_str(&header)
            {
                request.headers_mut().insert(AUTHORIZATION, value);
            }
            let resp = self
                .http
                .execute(request)
                .await
                .map_err(|e| self.transport(operation, &e))?;
            if resp.status() != StatusCode::UNAUTHORIZED || reauthenticated {
                return Ok(resp);
            }
            let challenge = self.challenge_of(&resp, operation)?;
            let was_basic = challenge.scheme == "basic"
                && self
                    .authorization
                    .lock()
                    .ok()
                    .is_some_and(|a| a.as_deref().is_some_and(|h| h.starts_with("Basic ")));
            if was_basic {
                // The same credentials would be refused again.
                return Ok(resp);
            }
            self.authenticate(&challenge).await?;
            reauthenticated = true;
        }
    }

    /// [`Self::send`] with bounded retries on transport errors and 5xx answers.
    async fn send_retrying<F>(&self, operation: &str, make: F) -> Result<Response, ImageError>
    where
        F: Fn(&reqwest::Client) -> RequestBuilder,
    {
        self.with_retries(operation, || async {
            let resp = self.send(operation, &make).await?;
            if resp.status().is_server_error() || resp.status() == StatusCode::TOO_MANY_REQUESTS {
                return Err(self.unexpected(operation, resp).await);
            }
            Ok(resp)
        })
        .await
    }

    fn same_origin(&self, url: &Url) -> bool {
        self.endpoint
            .join("/")
            .is_ok_and(|base| base.origin() == url.origin())
    }

    fn url(&self, path: &str) -> Result<Url, ImageError> {
        self.endpoint
            .join(&format!("/v2/{}/{path}", self.repository))
    }

    /// Whether the registry has a blob (`HEAD /v2/<name>/blobs/<digest>`).
    pub async fn blob_exists(&self, digest: &str) -> Result<bool, ImageError> {
        let url = self.url(&format!("blobs/{digest}"))?;
        let operation = format!("HEAD /v2/{}/blobs/{digest}", self.repository);
        let resp = self
            .send_retrying(&operation, |c| c.head(url.clone()))
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.unexpected(&operation, resp).await),
        }
    }

    /// The digest a tag or digest reference points to, or `None` when there is no such
    /// manifest (`HEAD /v2/<name>/manifests/<reference>`).
    pub async fn manifest_digest(&self, reference: &str) -> Result<Option<String>, ImageError> {
        let url = self.url(&format!("manifests/{reference}"))?;
        let operation = format!("HEAD /v2/{}/manifests/{reference}", self.repository);
        let resp = self
            .send_retrying(&operation, |c| {
                c.head(url.clone()).header(ACCEPT, MANIFEST_ACCEPT)
            })
            .await?;
        match resp.status() {
            s if s.is_success() => {
                let header = resp
                    .headers()
                    .get("docker-content-digest")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                match header {
                    Some(digest) => Ok(Some(digest)),
                    // Some registries omit the header on HEAD: hash the manifest itself.
                    None => Ok(self
                        .get_manifest(reference)
                        .await?
                        .map(|(_, bytes)| sha256_digest(&bytes))),
                }
            }
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.unexpected(&operation, resp).await),
        }
    }

    /// A manifest's media type and exact bytes, or `None` when it does not exist. When the
    /// reference is a digest, the bytes are checked against it.
    pub async fn get_manifest(
        &self,
        reference: &str,
    ) -> Result<Option<(String, Vec<u8>)>, ImageError> {
        let url = self.url(&format!("manifests/{reference}"))?;
        let operation = format!("GET /v2/{}/manifests/{reference}", self.repository);
        let resp = self
            .send_retrying(&operation, |c| {
                c.get(url.clone()).header(ACCEPT, MANIFEST_ACCEPT)
            })
            .await?;
        match resp.status() {
            s if s.is_success() => {}
            StatusCode::NOT_FOUND => return Ok(None),
            _ => return Err(self.unexpected(&operation, resp).await),
        }
        let header_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_string());
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| self.transport(&operation, &e))?
            .to_vec();
        if reference.starts_with("sha256:") {
            let actual = sha256_digest(&bytes);
            if actual != reference {
                return Err(ImageError::DigestMismatch {
                    registry: self.host(),
                    repository: self.repository.clone(),
                    what: "manifest".into(),
                    expected: reference.to_string(),
                    actual,
                });
            }
        }
        // The document's own mediaType wins over a generic Content-Type.
        #[derive(Deserialize)]
        struct Typed {
            #[serde(rename = "mediaType")]
            media_type: Option<String>,
        }
        let media_type = serde_json::from_slice::<Typed>(&bytes)
            .ok()
            .and_then(|t| t.media_type)
            .or(header_type)
            .unwrap_or_default();
        Ok(Some((media_type, bytes)))
    }

    /// Writes a manifest under a tag (or digest) and returns the digest the registry reports.
    pub async fn put_manifest(
        &self,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<String, ImageError> {
        let url = self.url(&format!("manifests/{reference}"))?;
        let operation = format!("PUT /v2/{}/manifests/{reference}", self.repository);
        let body = bytes.to_vec();
        let resp = self
            .send_retrying(&operation, |c| {
                c.put(url.clone())
                    .header(CONTENT_TYPE, media_type)
                    .body(body.clone())
            })
            .await?;
        if !resp.status().is_success() {
            return Err(self.unexpected(&operation, resp).await);
        }
        let expected = sha256_digest(bytes);
        let reported = digest_header(resp.headers()).unwrap_or_else(|| expected.clone());
        if reported != expected {
            return Err(ImageError::DigestMismatch {
                registry: self.host(),
                repository: self.repository.clone(),
                what: format!("manifest `{reference}`"),
                expected,
                actual: reported,
            });
        }
        Ok(reported)
    }

    /// Downloads a blob into `dest`, checking its digest; returns its size.
    pub async fn download_blob(
        &self,
        digest: &str,
        dest: &Path,
        progress: &dyn Progress,
        label: &str,
        total: u64,
    ) -> Result<u64, ImageError> {
        let url = self.url(&format!("blobs/{digest}"))?;
        let operation = format!("GET /v2/{}/blobs/{digest}", self.repository);
        self.with_retries(&operation, || async {
            let mut resp = self.send(&operation, |c| c.get(url.clone())).await?;
            match resp.status() {
                s if s.is_success() => {}
                StatusCode::NOT_FOUND => {
                    return Err(ImageError::NotFound {
                        registry: self.host(),
                        reference: format!("{}@{digest}", self.repository),
                    });
                }
                _ => return Err(self.unexpected(&operation, resp).await),
            }
            let mut file = tokio::fs::File::create(dest)
                .await
                .map_err(|e| ImageError::io("creating", dest, e))?;
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            progress.blob_started(label, digest, total, 0);
            while let Some(chunk) = resp
                .chunk()
                .await
                .map_err(|e| self.transport(&operation, &e))?
            {
                hasher.update(&chunk);
                size += chunk.len() as u64;
                file.write_all(&chunk)
                    .await
                    .map_err(|e| ImageError::io("writing", dest, e))?;
                progress.blob_advanced(digest, size);
            }
            file.flush()
                .await
                .map_err(|e| ImageError::io("writing", dest, e))?;
            let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
            if actual != digest {
                return Err(ImageError::DigestMismatch {
                    registry: self.host(),
                    repository: self.repository.clone(),
                    what: "blob".into(),
                    expected: digest.to_string(),
                    actual,
                });
            }
            progress.blob_finished(label, digest, BlobOutcome::Pulled { bytes: size });
            Ok(size)
        })
        .await
    }

    /// Pushes a blob unless the registry has it. `Uploaded { sent }` counts the bytes the
    /// registry acknowledged in this run (less than the size when an upload was resumed).
    pub async fn push_blob(
        &self,
        blob: &Blob,
        progress: &dyn Progress,
    ) -> Result<BlobOutcome, ImageError> {
        let digest = &blob.descriptor.digest;
        if self.blob_exists(digest).await? {
            self.forget_session(digest);
            progress.blob_finished(&blob.label, digest, BlobOutcome::Skipped);
            return Ok(BlobOutcome::Skipped);
        }
        let attempts = self.options.attempts.max(1);
        let mut session = self.load_session(digest);
        let mut sent = 0u64;
        let mut n = 0;
        loop {
            n += 1;
            match self
                .upload_attempt(blob, &mut session, &mut sent, progress)
                .await
            {
                Ok(()) => break,
                Err(e) if e.is_transient() && n < attempts => {
                    tracing::debug!(digest = %digest, attempt = n, error = %e, "upload cut; resuming");
                    progress.step(&format!(
                        "{} {}: {e}; retrying ({n}/{attempts})",
                        blob.label,
                        super::progress::short_digest(digest)
                    ));
                    tokio::time::sleep(backoff(n)).await;
                }
                Err(e) => return Err(e),
            }
        }
        self.forget_session(digest);
        let outcome = BlobOutcome::Uploaded { sent };
        progress.blob_finished(&blob.label, digest, outcome);
        Ok(outcome)
    }

    /// One attempt: continue the saved upload (or start one), send the rest, commit.
    async fn upload_attempt(
        &self,
        blob: &Blob,
        session: &mut Option<UploadSession>,
        sent: &mut u64,
        progress: &dyn Progress,
    ) -> Result<(), ImageError> {
        let digest = &blob.descriptor.digest;
        let total = blob.descriptor.size;
        let resumed = match session.take() {
            Some(saved) => self.upload_status(&saved.location).await?,
            None => None,
        };
        let (mut location, mut offset) = match resumed {
            Some((location, offset)) if offset <= total => (location, offset),
            Some((location, _)) => {
                // The registry holds more than the blob: that upload is useless.
                self.cancel_upload(&location).await;
                self.start_upload().await?
            }
            None => self.start_upload().await?,
        };
        self.remember(session, digest, &location, offset);
        progress.blob_started(&blob.label, digest, total, offset);

        let interrupted = |offset: u64, e: ImageError| match e {
            ImageError::Transport { cause, .. } => ImageError::Interrupted {
                registry: self.host(),
                repository: self.repository.clone(),
                digest: digest.clone(),
                sent: offset,
                total,
                cause,
            },
            other => other,
        };

        if offset == 0 && total <= self.options.chunk_size {
            // Small blob: the body goes with the closing PUT.
            let body = blob.read_range(0, total)?;
            let url = with_digest(&location, digest);
            let operation = format!("PUT {} (blob {digest})", self.upload_path(&location));
            let resp = self
                .send(&operation, |c| {
                    c.put(url.clone())
                        .header(CONTENT_TYPE, "application/octet-stream")
                        .header(CONTENT_LENGTH, total)
                        .body(body.clone())
                })
                .await
                .map_err(|e| interrupted(0, e))?;
            self.finish_upload(resp, &operation, digest).await?;
            *sent += total;
            return Ok(());
        }

        while offset < total {
            let len = self.options.chunk_size.min(total - offset);
            let chunk = blob.read_range(offset, len)?;
            let end = offset + len - 1;
            let operation = format!("PATCH {} (blob {digest})", self.upload_path(&location));
            let url = location.clone();
            let resp = self
                .send(&operation, |c| {
                    c.request(Method::PATCH, url.clone())
                        .header(CONTENT_TYPE, "application/octet-stream")
                        .header("Content-Range", format!("{offset}-{end}"))
                        .header(CONTENT_LENGTH, len)
                        .body(chunk.clone())
                })
                .await
                .map_err(|e| interrupted(offset, e))?;
            if resp.status() != StatusCode::ACCEPTED && !resp.status().is_success() {
                return Err(self.unexpected(&operation, resp).await);
            }
            // Counted once acknowledged: a cut chunk is not "uploaded".
            *sent += len;
            location = self.location_of(&resp, &operation)?;
            // The registry's Range is the truth; our own count only fills in when it is absent.
            offset = range_end(resp.headers()).map_or(offset + len, |end| end + 1);
            self.remember(session, digest, &location, offset);
            progress.blob_advanced(digest, offset);
        }

        let url = with_digest(&location, digest);
        let operation = format!("PUT {} (blob {digest})", self.upload_path(&location));
        let resp = self
            .send(&operation, |c| c.put(url.clone()).header(CONTENT_LENGTH, 0))
            .await
            .map_err(|e| interrupted(offset, e))?;
        self.finish_upload(resp, &operation, digest).await
    }

    async fn finish_upload(
        &self,
        resp: Response,
        operation: &str,
        digest: &str,
    ) -> Result<(), ImageError> {
        if !resp.status().is_success() {
            return Err(self.unexpected(operation, resp).await);
        }
        if let Some(reported) = digest_header(resp.headers())
            && reported != digest
        {
            return Err(ImageError::DigestMismatch {
                registry: self.host(),
                repository: self.repository.clone(),
                what: "uploaded blob".into(),
                expected: digest.to_string(),
                actual: reported,
            });
        }
        Ok(())
    }

    /// `POST /v2/<name>/blobs/uploads/` → the upload's location, at offset 0.
    async fn start_upload(&self) -> Result<(Url, u64), ImageError> {
        let url = self.url("blobs/uploads/")?;
        let operation = format!("POST /v2/{}/blobs/uploads/", self.repository);
        let resp = self
            .send_retrying(&operation, |c| {
                c.post(url.clone()).header(CONTENT_LENGTH, 0)
            })
            .await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(self.unexpected(&operation, resp).await);
        }
        Ok((self.location_of(&resp, &operation)?, 0))
    }

    /// Where a saved upload stands: its new location and the offset to continue at, or `None`
    /// when the registry no longer knows it (expired, cancelled, or its state is stale).
    async fn upload_status(&self, location: &str) -> Result<Option<(Url, u64)>, ImageError> {
        let Ok(url) = Url::parse(location) else {
            return Ok(None);
        };
        let operation = format!("GET {}", self.upload_path(&url));
        let resp = self
            .send_retrying(&operation, |c| c.get(url.clone()))
            .await?;
        if resp.status() == StatusCode::NO_CONTENT || resp.status().is_success() {
            let location = self.location_of(&resp, &operation)?;
            let offset = range_end(resp.headers()).map_or(0, |end| end + 1);
            return Ok(Some((location, offset)));
        }
        if resp.status().is_client_error() {
            tracing::debug!(status = %resp.status(), "saved upload is gone; starting again");
            return Ok(None);
        }
        Err(self.unexpected(&operation, resp).await)
    }

    async fn cancel_upload(&self, location: &Url) {
        let operation = format!("DELETE {}", self.upload_path(location));
        // Best effort: the registry purges abandoned uploads anyway.
        let _ = self.send(&operation, |c| c.delete(location.clone())).await;
    }

    fn location_of(&self, resp: &Response, operation: &str) -> Result<Url, ImageError> {
        let location = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ImageError::UnexpectedStatus {
                registry: self.host(),
                repository: self.repository.clone(),
                operation: operation.to_string(),
                status: resp.status().as_u16(),
                detail: ": the answer has no Location header".into(),
            })?;
        resp.url()
            .join(location)
            .map_err(|e| ImageError::UnexpectedStatus {
                registry: self.host(),
                repository: self.repository.clone(),
                operation: operation.to_string(),
                status: resp.status().as_u16(),
                detail: format!(": bad Location `{location}`: {e}"),
            })
    }

    /// The path of an upload URL without its (long, opaque) query, for messages.
    fn upload_path(&self, url: &Url) -> String {
        url.path().to_string()
    }

    fn session_file(&self, digest: &str) -> Option<PathBuf> {
        let dir = self.options.state_dir.as_ref()?;
        let key = sha256_digest(format!("{}|{}|{digest}", self.host(), self.repository).as_bytes());
        let key = key.trim_start_matches("sha256:");
        Some(dir.join(format!("upload-{}.json", &key[..24])))
    }

    fn load_session(&self, digest: &str) -> Option<UploadSession> {
        let path = self.session_file(digest)?;
        let text = std::fs::read(&path).ok()?;
        let session: UploadSession = serde_json::from_slice(&text).ok()?;
        (session.digest == digest
            && session.repository == self.repository
            && session.registry == self.host())
        .then_some(session)
    }

    fn remember(
        &self,
        session: &mut Option<UploadSession>,
        digest: &str,
        location: &Url,
        offset: u64,
    ) {
        let saved = UploadSession {
            registry: self.host(),
            repository: self.repository.clone(),
            digest: digest.to_string(),
            location: location.to_string(),
            offset,
        };
        if let Some(path) = self.session_file(digest) {
            // Best effort: without the file only a later run loses the ability to resume.
            let write = || -> std::io::Result<()> {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let tmp = path.with_extension("json.tmp");
                std::fs::write(&tmp, serde_json::to_vec(&saved).unwrap_or_default())?;
                std::fs::rename(&tmp, &path)
            };
            if let Err(e) = write() {
                tracing::warn!(path = %path.display(), error = %e, "cannot save upload state");
            }
        }
        *session = Some(saved);
    }

    fn forget_session(&self, digest: &str) {
        if let Some(path) = self.session_file(digest) {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn basic_header(auth: &RegistryAuth) -> String {
    let raw = format!("{}:{}", auth.username, auth.password);
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

fn with_digest(location: &Url, digest: &str) -> Url {
    let mut url = location.clone();
    url.query_pairs_mut().append_pair("digest", digest);
    url
}

fn digest_header(headers: &HeaderMap) -> Option<String> {
    headers
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The end of `Range: 0-<end>` (or `bytes=0-<end>`). `0-0` means nothing received yet (the
/// CNCF registry reports an empty upload so).
fn range_end(headers: &HeaderMap) -> Option<u64> {
    let value = headers.get("range")?.to_str().ok()?;
    let value = value.trim().trim_start_matches("bytes=");
    let (_, end) = value.split_once('-')?;
    let end: u64 = end.trim().parse().ok()?;
    // `0-0` cannot tell "0 bytes" from "1 byte"; chunks are large, so it means 0.
    (end > 0).then_some(end)
}

/// The registry's error body as `: CODE message; ...`, or a short text excerpt.
async fn error_detail(resp: Response) -> String {
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(Deserialize)]
    struct ErrorEntry {
        code: Option<String>,
        message: Option<String>,
    }
    let Ok(body) = resp.bytes().await else {
        return String::new();
    };
    if let Ok(errors) = serde_json::from_slice::<Errors>(&body) {
        let parts: Vec<String> = errors
            .errors
            .iter()
            .map(|e| {
                format!(
                    "{} {}",
                    e.code.as_deref().unwrap_or(""),
                    e.message.as_deref().unwrap_or("")
                )
                .trim()
                .to_string()
            })
            .collect();
        if !parts.is_empty() {
            return format!(": {}", parts.join("; "));
        }
    }
    let text = String::from_utf8_lossy(&body);
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        format!(": {}", text.chars().take(300).collect::<String>())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenge_with_commas_in_scope() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/redis:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.docker.io/token");
        assert_eq!(c.params["service"], "registry.docker.io");
        assert_eq!(c.params["scope"], "repository:library/redis:pull,push");
    }

    #[test]
    fn parses_basic_challenge() {
        let c = parse_challenge(r#"Basic realm="https://1.dkr.ecr.us-east-1.amazonaws.com/",service="ecr.amazonaws.com""#).unwrap();
        assert_eq!(c.scheme, "basic");
        assert_eq!(c.params["service"], "ecr.amazonaws.com");
        assert_eq!(parse_challenge("Basic").unwrap().params.len(), 0);
    }

    #[test]
    fn reads_ranges() {
        let mut h = HeaderMap::new();
        h.insert("range", "0-1048575".parse().unwrap());
        assert_eq!(range_end(&h), Some(1_048_575));
        h.insert("range", "bytes=0-9".parse().unwrap());
        assert_eq!(range_end(&h), Some(9));
        h.insert("range", "0-0".parse().unwrap());
        assert_eq!(range_end(&h), None);
    }

    #[test]
    fn auth_debug_hides_the_password() {
        let auth = RegistryAuth::new("AWS", "secret-token");
        assert!(!format!("{auth:?}").contains("secret-token"));
    }
}
