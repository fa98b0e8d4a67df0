//! One repository of one registry, through `oci-client`: authentication, existence checks,
//! blob and manifest pushes, manifest and blob pulls, with bounded retries and errors that name
//! the registry, the repository and the request.
//!
//! # Authentication, and where credentials go
//! [`Registry::connect`] asks `GET /v2/` once, anonymously. A `401` carries a
//! `WWW-Authenticate` challenge (parsed with `http-auth`):
//! - `Basic` (ECR, htpasswd registries): the credentials are tried on a second `GET /v2/`, so
//!   wrong ones fail before any data is sent; every later request carries them.
//! - `Bearer` (token-auth registries, Docker Hub): `oci-client` gets a token for
//!   `repository:<name>:pull[,push]` from the challenge's `realm`. The credentials go with that
//!   request only when the realm has the registry's own origin (scheme, host and port): a
//!   registry that names another host as its realm is refused
//!   ([`ImageError::CredentialsWithheld`]) instead of handing that host the password.
//!   Without credentials the token is asked for anonymously, which is how public images are
//!   pulled. (`oci-client` reads the challenge again itself; a registry that answered the
//!   two reads differently could only send the credentials to a host of its choosing, which
//!   it can as well by naming itself, so the check guards against a foreign realm, not against
//!   the registry itself.)
//!
//! An expired token (its known expiry has passed) is refused before any request is sent.
//!
//! # Pushes
//! A blob is checked with `HEAD /v2/<name>/blobs/<digest>` and skipped when the registry has
//! it. Otherwise it goes in one `POST` + `PUT ?digest=` (oci-client's monolithic push: ECR
//! refuses chunks under 5 MiB and answers a chunk's `PATCH` with 201, so one request per blob
//! is the portable choice for images of a few MiB). A cut transfer is retried, bounded, from
//! the start of that blob; a partial upload is not resumed, neither within a run nor across
//! runs.

use std::fmt;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciEnvelope, OciErrorCode};
use oci_client::secrets::RegistryAuth as OciAuth;
use oci_client::{Client, Reference, RegistryOperation};
use reqwest::header::{HeaderValue, WWW_AUTHENTICATE};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use super::error::{ImageError, chain};
use super::oci::{Blob, MANIFEST_TYPES, OCI_INDEX, OCI_MANIFEST, sha256_digest};
use super::progress::{BlobOutcome, Progress};
use super::reference::Endpoint;

const USER_AGENT: &str = concat!("timing-provisioner/", env!("CARGO_PKG_VERSION"));

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

    fn basic(&self) -> OciAuth {
        OciAuth::Basic(self.username.clone(), self.password.clone())
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

/// How registry requests are made.
#[derive(Debug, Clone)]
pub struct UploadOptions {
    /// Attempts per blob (and per request outside uploads) when the connection fails or the
    /// registry answers 5xx or 429.
    pub attempts: u32,
    /// Time limit of one HTTP request of this client's own (`GET /v2/`, blob `HEAD`), and of
    /// each read of oci-client's requests.
    pub request_timeout: Duration,
    /// Time limit to connect.
    pub connect_timeout: Duration,
}

impl Default for UploadOptions {
    fn default() -> Self {
        UploadOptions {
            attempts: 3,
            request_timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(10),
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

/// The challenge of a `401` to `GET /v2/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    Basic,
    Bearer { realm: String },
    Other(String),
}

/// The first challenge of a `WWW-Authenticate` value this client can answer (or the first one).
pub(crate) fn parse_challenge(header: &str) -> Option<Challenge> {
    let mut first = None;
    for challenge in http_auth::ChallengeParser::new(header).flatten() {
        let parsed = if challenge.scheme.eq_ignore_ascii_case("basic") {
            Challenge::Basic
        } else if challenge.scheme.eq_ignore_ascii_case("bearer") {
            let realm = challenge
                .params
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("realm"))
                .map(|(_, v)| v.to_unescaped())?;
            Challenge::Bearer { realm }
        } else {
            Challenge::Other(challenge.scheme.to_string())
        };
        if !matches!(parsed, Challenge::Other(_)) {
            return Some(parsed);
        }
        first.get_or_insert(parsed);
    }
    first
}

/// A connection to one repository of one registry.
pub struct Registry {
    client: Client,
    http: reqwest::Client,
    endpoint: Endpoint,
    repository: String,
    credentials: Option<RegistryAuth>,
    /// What oci-client authenticates with (the credentials, or anonymous).
    auth: OciAuth,
    operation: RegistryOperation,
    options: UploadOptions,
    /// The Bearer token for this client's own `HEAD` requests, when the registry uses tokens.
    bearer: Mutex<Option<String>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("endpoint", &self.endpoint.as_str())
            .field("repository", &self.repository)
            .field("operation", &self.operation)
            .finish_non_exhaustive()
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(250u64.saturating_mul(1 << attempt.min(6)))
}

impl Registry {
    /// Connects to `repository` at `endpoint`: asks how the registry authenticates, checks the
    /// credentials (for pull, or pull and push) before anything else is sent.
    pub async fn connect(
        endpoint: &Endpoint,
        repository: &str,
        auth: Option<&RegistryAuth>,
        push: bool,
        options: &UploadOptions,
    ) -> Result<Self, ImageError> {
        let building = |cause: String| ImageError::Transport {
            registry: endpoint.host(),
            operation: "building the HTTP client".into(),
            cause,
        };
        let http = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .timeout(options.request_timeout)
            .user_agent(USER_AGENT)
            .build()
            .map_err(|e| building(chain(&e)))?;
        let config = ClientConfig {
            protocol: if endpoint.is_plain_http() {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            use_monolithic_push: true,
            read_timeout: Some(options.request_timeout),
            connect_timeout: Some(options.connect_timeout),
            user_agent: USER_AGENT,
            ..ClientConfig::default()
        };
        let client = Client::try_from(config).map_err(|e| building(chain(&e)))?;
        let mut registry = Registry {
            client,
            http,
            endpoint: endpoint.clone(),
            repository: repository.to_string(),
            credentials: auth.cloned(),
            auth: OciAuth::Anonymous,
            operation: if push {
                RegistryOperation::Push
            } else {
                RegistryOperation::Pull
            },
            options: options.clone(),
            bearer: Mutex::new(None),
        };
        registry.check_expiry()?;
        registry.authenticate().await?;
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
        if let Some(expires) = self.credentials.as_ref().and_then(|a| a.expires_at)
            && let Ok(ago) = SystemTime::now().duration_since(expires)
        {
            return Err(ImageError::TokenExpired {
                registry: self.host(),
                ago_secs: ago.as_secs(),
            });
        }
        Ok(())
    }

    /// `GET /v2/`, then whatever its challenge asks for; see the module docs.
    async fn authenticate(&mut self) -> Result<(), ImageError> {
        let url = self.endpoint.join("/v2/")?;
        let operation = "GET /v2/";
        let resp = self
            .with_retries(operation, || async {
                let resp = self
                    .http
                    .get(url.clone())
                    .send()
                    .await
                    .map_err(|e| self.transport(operation, &e))?;
                self.fail_transient(operation, resp).await
            })
            .await?;
        if resp.status().is_success() {
            // An open registry: nothing to send.
            return self.remember_auth(OciAuth::Anonymous).await;
        }
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Err(self.status_error(operation, resp).await);
        }
        let header = resp
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        match parse_challenge(header) {
            Some(Challenge::Basic) => {
                let credentials =
                    self.credentials
                        .clone()
                        .ok_or_else(|| ImageError::CredentialsRequired {
                            registry: self.host(),
                            repository: self.repository.clone(),
                            scheme: "Basic".into(),
                        })?;
                // Prove the credentials work before any data is sent.
                let resp = self
                    .http
                    .get(url)
                    .basic_auth(&credentials.username, Some(&credentials.password))
                    .send()
                    .await
                    .map_err(|e| self.transport(operation, &e))?;
                if !resp.status().is_success() {
                    return Err(self.status_error(operation, resp).await);
                }
                self.remember_auth(credentials.basic()).await
            }
            Some(Challenge::Bearer { realm }) => self.bearer_token(&realm).await,
            Some(Challenge::Other(scheme)) => Err(ImageError::Unauthorized {
                registry: self.host(),
                repository: self.repository.clone(),
                operation: operation.into(),
                detail: format!(": unsupported authentication scheme `{scheme}`"),
            }),
            None => Err(ImageError::Unauthorized {
                registry: self.host(),
                repository: self.repository.clone(),
                operation: operation.into(),
                detail: ": the 401 answer has no usable WWW-Authenticate challenge".into(),
            }),
        }
    }

    /// A token from `realm`: with the credentials only when the realm is the registry's own
    /// origin.
    async fn bearer_token(&mut self, realm: &str) -> Result<(), ImageError> {
        let realm_url = Url::parse(realm).map_err(|e| ImageError::InvalidEndpoint {
            endpoint: realm.to_string(),
            reason: format!("token realm: {e}"),
        })?;
        if realm_url.scheme() == "http" {
            // The endpoint rule: plain HTTP only on loopback.
            Endpoint::parse(&realm_url.origin().ascii_serialization())?;
        }
        let auth = match &self.credentials {
            Some(credentials) if self.endpoint.same_origin(&realm_url) => credentials.basic(),
            Some(_) => {
                return Err(ImageError::CredentialsWithheld {
                    registry: self.host(),
                    realm: realm_url.origin().ascii_serialization(),
                });
            }
            None => OciAuth::Anonymous,
        };
        self.auth = auth;
        self.refresh_token().await
    }

    /// Asks oci-client for a token (it caches it for its own requests) and keeps a copy for
    /// the blob `HEAD`s.
    async fn refresh_token(&self) -> Result<(), ImageError> {
        let token = self
            .client
            .auth(&self.reference("latest"), &self.auth, self.operation)
            .await
            .map_err(|e| self.oci_error("GET token", e))?;
        if let Ok(mut bearer) = self.bearer.lock() {
            *bearer = token;
        }
        Ok(())
    }

    async fn remember_auth(&mut self, auth: OciAuth) -> Result<(), ImageError> {
        self.client.store_auth_if_needed(&self.host(), &auth).await;
        self.auth = auth;
        Ok(())
    }

    /// A reference into this repository (`reference` is a tag or a digest), at the endpoint.
    fn reference(&self, reference: &str) -> Reference {
        if reference.starts_with("sha256:") {
            Reference::with_digest(self.host(), self.repository.clone(), reference.into())
        } else {
            Reference::with_tag(self.host(), self.repository.clone(), reference.into())
        }
    }

    fn transport(&self, operation: &str, err: &reqwest::Error) -> ImageError {
        ImageError::Transport {
            registry: self.host(),
            operation: operation.to_string(),
            cause: chain(err),
        }
    }

    /// An error for an HTTP status: 401, 403, or anything else unexpected.
    fn status(&self, operation: &str, status: u16, detail: String) -> ImageError {
        let (registry, repository, operation) =
            (self.host(), self.repository.clone(), operation.to_string());
        match status {
            401 => ImageError::Unauthorized {
                registry,
                repository,
                operation,
                detail,
            },
            403 => ImageError::Denied {
                registry,
                repository,
                operation,
                detail,
            },
            status => ImageError::UnexpectedStatus {
                registry,
                repository,
                operation,
                status,
                detail,
            },
        }
    }

    async fn status_error(&self, operation: &str, resp: reqwest::Response) -> ImageError {
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        self.status(operation, status, error_detail(&body))
    }

    /// A 5xx or 429 answer as an error (so that it is retried), anything else as it is.
    async fn fail_transient(
        &self,
        operation: &str,
        resp: reqwest::Response,
    ) -> Result<reqwest::Response, ImageError> {
        if resp.status().is_server_error() || resp.status() == StatusCode::TOO_MANY_REQUESTS {
            return Err(self.status_error(operation, resp).await);
        }
        Ok(resp)
    }

    /// oci-client's error as this module's, naming the registry, repository and request.
    fn oci_error(&self, operation: &str, err: OciDistributionError) -> ImageError {
        match err {
            OciDistributionError::RequestError(e) => self.transport(operation, &e),
            OciDistributionError::UnauthorizedError { .. } => {
                self.status(operation, 401, String::new())
            }
            OciDistributionError::AuthenticationFailure(reason) => {
                self.status(operation, 401, error_detail(&reason))
            }
            OciDistributionError::ServerError { code, message, .. } => {
                self.status(operation, code, error_detail(&message))
            }
            OciDistributionError::RegistryError { envelope, .. } => {
                let code = |wanted: OciErrorCode| envelope.errors.iter().any(|e| e.code == wanted);
                let status = if code(OciErrorCode::Unauthorized) {
                    401
                } else if code(OciErrorCode::Denied) {
                    403
                } else if code(OciErrorCode::Toomanyrequests) {
                    429
                } else {
                    400
                };
                self.status(operation, status, envelope_detail(&envelope))
            }
            OciDistributionError::DigestError(e) => ImageError::DigestMismatch {
                registry: self.host(),
                repository: self.repository.clone(),
                what: operation.to_string(),
                expected: String::new(),
                actual: e.to_string(),
            },
            other => ImageError::Protocol {
                registry: self.host(),
                repository: self.repository.clone(),
                operation: operation.to_string(),
                detail: other.to_string(),
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

    /// Whether the registry has a blob (`HEAD /v2/<name>/blobs/<digest>`).
    ///
    /// Written here because oci-client 0.15 has no blob check (0.16 has one, but needs
    /// reqwest 0.13); it uses the same credentials or token as oci-client's requests.
    pub async fn blob_exists(&self, digest: &str) -> Result<bool, ImageError> {
        let url = self
            .endpoint
            .join(&format!("/v2/{}/blobs/{digest}", self.repository))?;
        let operation = format!("HEAD /v2/{}/blobs/{digest}", self.repository);
        let head = || async {
            let mut request = self.http.head(url.clone());
            let bearer = self.bearer.lock().ok().and_then(|b| b.clone());
            request = match (&self.auth, bearer) {
                (_, Some(token)) => request.bearer_auth(token),
                (OciAuth::Basic(user, password), None) => request.basic_auth(user, Some(password)),
                _ => request,
            };
            let resp = request
                .send()
                .await
                .map_err(|e| self.transport(&operation, &e))?;
            self.fail_transient(&operation, resp).await
        };
        let mut resp = self.with_retries(&operation, head).await?;
        if resp.status() == StatusCode::UNAUTHORIZED
            && self.bearer.lock().is_ok_and(|b| b.is_some())
        {
            // The token expired: a new one, once.
            self.refresh_token().await?;
            resp = self.with_retries(&operation, head).await?;
        }
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.status_error(&operation, resp).await),
        }
    }

    /// The digest a tag or digest reference points to, or `None` when there is no such
    /// manifest (`HEAD /v2/<name>/manifests/<reference>`).
    pub async fn manifest_digest(&self, reference: &str) -> Result<Option<String>, ImageError> {
        let image = self.reference(reference);
        let operation = format!("HEAD /v2/{}/manifests/{reference}", self.repository);
        self.with_retries(&operation, || async {
            match self.client.fetch_manifest_digest(&image, &self.auth).await {
                Ok(digest) => Ok(Some(digest)),
                Err(e) if is_not_found(&e) => Ok(None),
                Err(e) => Err(self.oci_error(&operation, e)),
            }
        })
        .await
    }

    /// A manifest's media type and exact bytes, or `None` when it does not exist. When the
    /// reference is a digest, oci-client checks the bytes against it.
    pub async fn get_manifest(
        &self,
        reference: &str,
    ) -> Result<Option<(String, Vec<u8>)>, ImageError> {
        let image = self.reference(reference);
        let operation = format!("GET /v2/{}/manifests/{reference}", self.repository);
        let pulled = self
            .with_retries(&operation, || async {
                match self
                    .client
                    .pull_manifest_raw(&image, &self.auth, &MANIFEST_TYPES)
                    .await
                {
                    Ok((bytes, _digest)) => Ok(Some(bytes)),
                    Err(e) if is_not_found(&e) => Ok(None),
                    Err(e) => Err(self.oci_error(&operation, e)),
                }
            })
            .await?;
        Ok(pulled.map(|bytes| (media_type_of(&bytes), bytes)))
    }

    /// Writes a manifest, byte for byte, under a tag (or digest); returns its digest.
    pub async fn put_manifest(
        &self,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<String, ImageError> {
        let image = self.reference(reference);
        let operation = format!("PUT /v2/{}/manifests/{reference}", self.repository);
        let content_type = HeaderValue::from_str(media_type).map_err(|e| ImageError::Protocol {
            registry: self.host(),
            repository: self.repository.clone(),
            operation: operation.clone(),
            detail: format!("media type `{media_type}`: {e}"),
        })?;
        self.with_retries(&operation, || async {
            self.client
                .push_manifest_raw(&image, bytes.to_vec(), content_type.clone())
                .await
                .map_err(|e| self.oci_error(&operation, e))
        })
        .await?;
        Ok(sha256_digest(bytes))
    }

    /// Downloads a blob into `dest`; oci-client checks its digest. Returns its size.
    pub async fn download_blob(
        &self,
        digest: &str,
        dest: &Path,
        progress: &dyn Progress,
        label: &str,
        total: u64,
    ) -> Result<u64, ImageError> {
        let image = self.reference("latest");
        let operation = format!("GET /v2/{}/blobs/{digest}", self.repository);
        self.with_retries(&operation, || async {
            let mut file = tokio::fs::File::create(dest)
                .await
                .map_err(|e| ImageError::io("creating", dest, e))?;
            progress.blob_started(label, digest, total);
            self.client
                .pull_blob(&image, digest, &mut file)
                .await
                .map_err(|e| match e {
                    e if is_not_found(&e) => ImageError::NotFound {
                        registry: self.host(),
                        reference: format!("{}@{digest}", self.repository),
                    },
                    e => self.oci_error(&operation, e),
                })?;
            file.flush()
                .await
                .map_err(|e| ImageError::io("writing", dest, e))?;
            let size = file
                .metadata()
                .await
                .map_err(|e| ImageError::io("reading metadata of", dest, e))?
                .len();
            progress.blob_finished(label, digest, BlobOutcome::Pulled { bytes: size });
            Ok(size)
        })
        .await
    }

    /// Pushes a blob unless the registry has it. `Uploaded { sent }` is the blob's size: the
    /// bytes of the attempt the registry accepted.
    pub async fn push_blob(
        &self,
        blob: &Blob,
        progress: &dyn Progress,
    ) -> Result<BlobOutcome, ImageError> {
        let digest = &blob.descriptor.digest;
        if self.blob_exists(digest).await? {
            progress.blob_finished(&blob.label, digest, BlobOutcome::Skipped);
            return Ok(BlobOutcome::Skipped);
        }
        self.upload_blob(blob, progress).await
    }

    /// Uploads a blob the caller found missing ([`Registry::blob_exists`]), retrying a cut
    /// transfer from the blob's start; returns `Uploaded { sent }` with the blob's size.
    pub(crate) async fn upload_blob(
        &self,
        blob: &Blob,
        progress: &dyn Progress,
    ) -> Result<BlobOutcome, ImageError> {
        let digest = &blob.descriptor.digest;
        let data = blob.read_all()?;
        let total = blob.size();
        let image = self.reference("latest");
        let operation = format!("PUT /v2/{}/blobs/uploads/ (blob {digest})", self.repository);
        let attempts = self.options.attempts.max(1);
        progress.blob_started(&blob.label, digest, total);
        for n in 1.. {
            let pushed = self.client.push_blob(&image, &data, digest).await;
            let err = match pushed {
                Ok(_) => break,
                Err(OciDistributionError::RequestError(e)) => ImageError::Interrupted {
                    registry: self.host(),
                    repository: self.repository.clone(),
                    digest: digest.clone(),
                    total,
                    cause: chain(&e),
                },
                Err(e) => self.oci_error(&operation, e),
            };
            if !(err.is_transient() && n < attempts) {
                return Err(err);
            }
            progress.step(&format!(
                "{} {}: {err}; retrying ({n}/{attempts})",
                blob.label,
                super::progress::short_digest(digest)
            ));
            tokio::time::sleep(backoff(n)).await;
        }
        let outcome = BlobOutcome::Uploaded { sent: total };
        progress.blob_finished(&blob.label, digest, outcome);
        Ok(outcome)
    }
}

/// Whether oci-client's error means "there is no such manifest, blob or repository".
fn is_not_found(err: &OciDistributionError) -> bool {
    match err {
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
            matches!(
                e.code,
                OciErrorCode::ManifestUnknown
                    | OciErrorCode::BlobUnknown
                    | OciErrorCode::NameUnknown
                    | OciErrorCode::NotFound
            )
        }),
        OciDistributionError::ServerError { code, .. } => *code == 404,
        _ => false,
    }
}

/// A manifest's media type: its own `mediaType`, else what its shape says.
fn media_type_of(bytes: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Shape {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde::de::IgnoredAny>,
    }
    match serde_json::from_slice::<Shape>(bytes) {
        Ok(Shape {
            media_type: Some(media_type),
            ..
        }) => media_type,
        Ok(Shape {
            manifests: Some(_), ..
        }) => OCI_INDEX.to_string(),
        _ => OCI_MANIFEST.to_string(),
    }
}

fn envelope_detail(envelope: &OciEnvelope) -> String {
    let parts: Vec<String> = envelope
        .errors
        .iter()
        .map(|e| {
            let code = serde_json::to_value(&e.code)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            format!("{code} {}", e.message).trim().to_string()
        })
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(": {}", parts.join("; "))
    }
}

/// A registry's error body as `: CODE message; ...`, or a short excerpt of its text.
fn error_detail(body: &str) -> String {
    if let Ok(envelope) = serde_json::from_str::<OciEnvelope>(body) {
        return envelope_detail(&envelope);
    }
    let text = body.trim();
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
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "https://auth.docker.io/token".into()
            }
        );
    }

    #[test]
    fn parses_basic_challenge() {
        let c = parse_challenge(r#"Basic realm="https://1.dkr.ecr.us-east-1.amazonaws.com/",service="ecr.amazonaws.com""#).unwrap();
        assert_eq!(c, Challenge::Basic);
        assert_eq!(parse_challenge("Basic").unwrap(), Challenge::Basic);
        assert_eq!(
            parse_challenge(r#"Negotiate, Basic realm="x""#).unwrap(),
            Challenge::Basic
        );
        assert!(parse_challenge("").is_none());
    }

    #[test]
    fn reads_error_bodies() {
        assert_eq!(
            error_detail(r#"{"errors":[{"code":"DENIED","message":"no push"}]}"#),
            ": DENIED no push"
        );
        assert_eq!(error_detail("  "), "");
        assert_eq!(error_detail("bad gateway"), ": bad gateway");
    }

    #[test]
    fn media_type_from_the_document() {
        assert_eq!(
            media_type_of(
                br#"{"mediaType":"application/vnd.docker.distribution.manifest.v2+json"}"#
            ),
            "application/vnd.docker.distribution.manifest.v2+json"
        );
        assert_eq!(media_type_of(br#"{"manifests":[]}"#), OCI_INDEX);
        assert_eq!(media_type_of(br#"{"layers":[]}"#), OCI_MANIFEST);
    }

    #[test]
    fn auth_debug_hides_the_password() {
        let auth = RegistryAuth::new("AWS", "secret-token");
        assert!(!format!("{auth:?}").contains("secret-token"));
    }
}
