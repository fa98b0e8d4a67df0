//! The one error type of the image module.
//!
//! Every variant names what it is about — the registry (host), the repository, the blob digest
//! or the file — so a message read in a CI log is enough to know where to look, and most say
//! what to do next. Large sources are boxed so `Result<_, ImageError>` stays small
//! (`clippy::result_large_err`).

use std::path::PathBuf;

/// What went wrong while building, checking, pushing or mirroring an image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The native (daemonless) build of the service did not compile; nothing was pushed.
    #[error(
        "native build of `{package}` failed (nothing was pushed):\n{compiler_output}\nhint: {hint}"
    )]
    Build {
        /// Cargo package that was built.
        package: String,
        /// The compiler's error lines (the tail of cargo's stderr).
        compiler_output: String,
        /// What the user can do about it.
        hint: String,
    },

    /// The built binary is dynamically linked, so it would not start in an image without libc.
    #[error(
        "`{path}` is dynamically linked (it has an ELF interpreter); the image has no libc, so the \
         native builder needs a static binary (`-C target-feature=+crt-static`)"
    )]
    NotStatic {
        /// The binary that was checked.
        path: PathBuf,
    },

    /// An external program (cargo, docker, git) could not be started or failed.
    #[error("`{program}` failed: {detail}")]
    Tool {
        /// Command line (without secrets) that failed.
        program: String,
        /// Exit status and the tail of its output, or why it could not start.
        detail: String,
    },

    /// A local file could not be read or written.
    #[error("{action} `{path}`: {source}")]
    Io {
        /// What was being done ("reading", "writing", ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The registry endpoint is not usable (bad URL, or plain HTTP to a non-loopback host).
    #[error("invalid registry endpoint `{endpoint}`: {reason}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// Why it was refused.
        reason: String,
    },

    /// An image reference could not be parsed.
    #[error("invalid image reference `{reference}`: {reason}")]
    InvalidReference {
        /// The reference as given.
        reference: String,
        /// Why it was refused.
        reason: String,
    },

    /// The registry refused the credentials (HTTP 401 after authenticating).
    #[error(
        "registry `{registry}` refused the credentials for repository `{repository}` (HTTP 401 on \
         {operation}){detail}; if this is ECR the authorization token may have expired (it lasts \
         12 hours) or belongs to another account: re-run to fetch a new one"
    )]
    Unauthorized {
        /// Registry host.
        registry: String,
        /// Repository the request was for.
        repository: String,
        /// The request that was refused.
        operation: String,
        /// The registry's own error text, prefixed with ": " when present.
        detail: String,
    },

    /// The registry wants credentials and none were given.
    #[error(
        "registry `{registry}` requires credentials for repository `{repository}` ({scheme} \
         challenge) and none were given"
    )]
    CredentialsRequired {
        /// Registry host.
        registry: String,
        /// Repository the request was for.
        repository: String,
        /// The authentication scheme the registry asked for.
        scheme: String,
    },

    /// The registry token's expiry time has passed before it was used.
    #[error(
        "the token for registry `{registry}` expired {ago_secs} s ago; re-run to fetch a new one \
         (ECR tokens last 12 hours)"
    )]
    TokenExpired {
        /// Registry host.
        registry: String,
        /// Seconds since expiry.
        ago_secs: u64,
    },

    /// The registry answered 403: the credentials are valid but lack the permission.
    #[error(
        "registry `{registry}` denied {operation} on repository `{repository}` (HTTP 403){detail}"
    )]
    Denied {
        /// Registry host.
        registry: String,
        /// Repository.
        repository: String,
        /// The request that was denied.
        operation: String,
        /// The registry's error text, prefixed with ": " when present.
        detail: String,
    },

    /// A blob upload was cut off (after the bounded retries).
    #[error(
        "upload of blob `{digest}` ({total} bytes) to `{registry}/{repository}` was interrupted: \
         {cause}; re-run to send it again (blobs the registry already has are not sent twice)"
    )]
    Interrupted {
        /// Registry host.
        registry: String,
        /// Repository.
        repository: String,
        /// Digest of the blob being uploaded.
        digest: String,
        /// Size of the blob.
        total: u64,
        /// The transport error.
        cause: String,
    },

    /// A registry in token mode names a token server on another origin: the credentials are
    /// not sent there.
    #[error(
        "registry `{registry}` asks for its token at `{realm}`, another host: the registry \
         credentials are sent only to the registry itself; push through an endpoint that serves \
         its own tokens, or use a registry with Basic authentication"
    )]
    CredentialsWithheld {
        /// Registry host.
        registry: String,
        /// Origin of the `WWW-Authenticate` realm.
        realm: String,
    },

    /// The registry answered something the OCI distribution protocol does not allow.
    #[error("{operation} on `{registry}/{repository}`: {detail}")]
    Protocol {
        /// Registry host.
        registry: String,
        /// Repository.
        repository: String,
        /// The request (method and path).
        operation: String,
        /// What was wrong.
        detail: String,
    },

    /// The registry could not be reached or the connection failed outside a blob upload.
    #[error("{operation} on `{registry}` failed: {cause}")]
    Transport {
        /// Registry host.
        registry: String,
        /// The request (method and path).
        operation: String,
        /// The transport error, with its chain.
        cause: String,
    },

    /// The registry answered with a status this client does not expect.
    #[error("{operation} on `{registry}/{repository}` answered HTTP {status}{detail}")]
    UnexpectedStatus {
        /// Registry host.
        registry: String,
        /// Repository.
        repository: String,
        /// The request (method and path).
        operation: String,
        /// HTTP status code.
        status: u16,
        /// The registry's error text, prefixed with ": " when present.
        detail: String,
    },

    /// A manifest or blob named by a reference does not exist.
    #[error("`{reference}` does not exist in registry `{registry}`")]
    NotFound {
        /// Registry host.
        registry: String,
        /// The image reference or `repository@digest` of the blob.
        reference: String,
    },

    /// Content read back from a registry does not match its digest.
    #[error(
        "digest mismatch for {what} in `{registry}/{repository}`: expected `{expected}`, got \
         `{actual}`"
    )]
    DigestMismatch {
        /// Registry host.
        registry: String,
        /// Repository.
        repository: String,
        /// What was checked (blob, manifest).
        what: String,
        /// The digest that was asked for.
        expected: String,
        /// The digest of what arrived.
        actual: String,
    },

    /// A manifest or index had a shape this client cannot use.
    #[error("manifest `{reference}` from `{registry}`: {reason}")]
    BadManifest {
        /// Registry host.
        registry: String,
        /// The reference that was read.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A bounded retry loop gave up.
    #[error(
        "gave up on {operation} for `{registry}/{repository}` after {attempts} attempts: {last}"
    )]
    RetriesExhausted {
        /// Registry host.
        registry: String,
        /// Repository.
        repository: String,
        /// What was retried.
        operation: String,
        /// How many attempts were made.
        attempts: u32,
        /// The last error.
        last: Box<ImageError>,
    },

    /// The Docker builder failed at one of its steps.
    #[error("docker {step} failed for `{image}`: {detail}")]
    Docker {
        /// build, login, push or inspect.
        step: &'static str,
        /// The image reference being built or pushed.
        image: String,
        /// Exit status and output tail.
        detail: String,
    },

    /// An ECR API call failed.
    #[error("ECR {operation} failed: {detail}")]
    Ecr {
        /// The API operation.
        operation: &'static str,
        /// The SDK error with its context.
        detail: String,
    },

    /// Git could not tell the commit of the work tree.
    #[error(
        "cannot read the git commit of `{dir}` (the image tag): {detail}; build from a git work \
         tree or pass `--image URI`"
    )]
    Git {
        /// The work tree.
        dir: PathBuf,
        /// What git said.
        detail: String,
    },
}

impl ImageError {
    /// Whether retrying the same operation may succeed (transport failures and 5xx answers).
    pub fn is_transient(&self) -> bool {
        match self {
            ImageError::Transport { .. } | ImageError::Interrupted { .. } => true,
            ImageError::UnexpectedStatus { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        ImageError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// Formats an error with its whole source chain on one line (reqwest's `Display` alone says
/// only "error sending request").
pub(crate) fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        next = e.source();
    }
    out
}
