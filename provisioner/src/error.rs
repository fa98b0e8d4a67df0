//! The provisioner's error type: one enum, each variant carrying the resource, file or
//! operation it is about, so the one line printed at the top says what failed and where.

use std::path::PathBuf;
use std::time::Duration;

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// Everything that can stop a command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A task-definition or policy file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },

    /// A file is not valid JSON, or not of the expected shape.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
        /// What is wrong (serde's words: unknown field, missing field, wrong type).
        message: String,
    },

    /// A `${NAME}` placeholder that the provisioner does not fill.
    #[error(
        "{}:{line}:{column}: unknown placeholder `${{{name}}}`; the provisioner fills only {known} (check the spelling)",
        path.display()
    )]
    UnknownPlaceholder {
        /// The file.
        path: PathBuf,
        /// 1-based line of the string holding the placeholder.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The unknown name.
        name: String,
        /// The names that are filled.
        known: String,
    },

    /// A file exists but does not describe what the provisioner needs.
    #[error("{}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },

    /// A command-line value is not usable.
    #[error("invalid {flag}: {message}")]
    InvalidArgument {
        /// The flag.
        flag: &'static str,
        /// What is wrong.
        message: String,
    },

    /// A token name the service would refuse, or the reserved `default`; refused before any
    /// AWS call.
    #[error("invalid --name `{name}`: {reason}")]
    InvalidTokenName {
        /// The name given.
        name: String,
        /// What is wrong.
        reason: String,
    },

    /// No named token of that name (`provisioner token --name NAME`).
    #[error(
        "app `{app}` has no token named `{name}` ({})",
        known_tokens(known, name)
    )]
    UnknownToken {
        /// The app.
        app: String,
        /// The name asked for.
        name: String,
        /// The names that exist.
        known: Vec<String>,
    },

    /// The named-token parameter holds something other than `name:token,...` (edited by hand).
    #[error(
        "SSM parameter {parameter} is not a list of `name:token` entries: {message}; fix it with `aws ssm put-parameter --overwrite` or delete it"
    )]
    TokenList {
        /// The parameter.
        parameter: String,
        /// What is wrong (never a token).
        message: String,
    },

    /// Another run wrote the same parameter between this run's read and its write.
    #[error(
        "{resource} was changed by another run between this run's read and its write, so one of the two changes may be lost: check with `provisioner token --list` and run the command again"
    )]
    ConcurrentChange {
        /// The resource.
        resource: String,
    },

    /// No region in the flags, the environment or the profile.
    #[error("no AWS region configured: set AWS_REGION or pass --region")]
    NoRegion,

    /// The credential chain found nothing.
    #[error(
        "no AWS credentials found ({detail}): set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run in an environment with a role"
    )]
    NoCredentials {
        /// What the credential chain said.
        detail: String,
    },

    /// The account has no default VPC in the region and none was given.
    #[error("no default VPC in {region}: pass --vpc VPC_ID and --subnets SUBNET_ID,SUBNET_ID")]
    NoDefaultVpc {
        /// The region.
        region: String,
    },

    /// An AWS call failed for a reason the provisioner does not handle itself.
    #[error("{operation} on {resource} failed: {message}")]
    Aws {
        /// The API operation, e.g. `CreateService`.
        operation: &'static str,
        /// The resource it was about, e.g. `ECS service api`.
        resource: String,
        /// The AWS error code, when AWS sent one.
        code: Option<String>,
        /// AWS's message, or the transport error in full.
        message: String,
    },

    /// An AWS response lacked a field the provisioner relies on.
    #[error("AWS response for {resource} has no {field}")]
    MissingField {
        /// The resource.
        resource: String,
        /// The field, e.g. `repository.repositoryUri`.
        field: &'static str,
    },

    /// A request could not be built: a required field was missing (a bug in the provisioner).
    #[error("cannot build the request for {resource}: {message}")]
    Request {
        /// The resource.
        resource: String,
        /// The SDK's words.
        message: String,
    },

    /// A bounded wait ran out.
    #[error("timed out after {} waiting for {what}", humantime::format_duration(*waited))]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        waited: Duration,
    },

    /// A resource of that name exists but was not created by the provisioner for this app.
    #[error(
        "{resource} exists but is not app `{app}`'s (it lacks the tags app={app} and managed-by=provisioner), so it is neither adopted nor deleted: remove or rename it yourself, or deploy under another --app; if it is this app's, add those two tags and run the command again"
    )]
    NotOurs {
        /// The resource.
        resource: String,
        /// The app.
        app: String,
    },

    /// `down` kept Redis's storage because its services are still there.
    #[error(
        "mount targets and access point of app `{app}` kept: its services could not be removed, so a Redis task may still run on them; run `down` again once they are gone (`provisioner status` shows them)"
    )]
    StorageInUse {
        /// The app.
        app: String,
    },

    /// `down` was refused because nobody confirmed it.
    #[error("refusing to delete app `{app}` without confirmation: pass --yes")]
    NotConfirmed {
        /// The app.
        app: String,
    },

    /// Teardown could not remove everything; each failure is listed.
    #[error("{} resource(s) could not be removed:\n  {}", failures.len(), failures.join("\n  "))]
    Incomplete {
        /// One line per failure.
        failures: Vec<String>,
    },

    /// Nothing of the app is deployed.
    #[error("app `{app}` is not deployed in {region} (no cluster `{app}`)")]
    NotDeployed {
        /// The app.
        app: String,
        /// The region.
        region: String,
    },

    /// A wait for the services ended without reaching its goal (timeout, rollback, failing
    /// tasks); carries the services' states and the stopped tasks' reasons and logs.
    #[error(transparent)]
    Watch(#[from] crate::watch::WatchError),

    /// Building, checking or pushing an image failed.
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),

    /// Reading the logs failed.
    #[error(transparent)]
    Logs(#[from] crate::logs::LogsError),

    /// The given image is not in the registry.
    #[error(
        "image `{image}` does not exist in {repository}: push it first, or leave out --image to build it"
    )]
    ImageNotFound {
        /// The reference given.
        image: String,
        /// The repository looked in.
        repository: String,
    },

    /// Ctrl-C; AWS carries on with what was asked.
    #[error(
        "interrupted; AWS carries on with the changes already made: `provisioner status` shows where they stand, and running `provisioner {command}` again continues from there"
    )]
    Interrupted {
        /// The command to run again.
        command: &'static str,
    },

    /// Writing the output failed.
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

/// Exit codes, documented in the README: 0 ok, 1 error, 2 plan has changes, 3 timeout,
/// 4 deployment rolled back or failing.
impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Timeout { .. } => 3,
            Error::Watch(watch) => u8::try_from(watch.exit_code()).unwrap_or(1),
            Error::Interrupted { .. } => 130,
            _ => 1,
        }
    }

    /// The `error` object of the JSON output: the watcher's detailed form for a failed wait,
    /// `kind`/`exit_code`/`message` otherwise.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Error::Watch(watch) => watch.to_json(),
            other => serde_json::json!({
                "kind": match other {
                    Error::Timeout { .. } => "timed_out",
                    Error::Aws { .. } => "aws",
                    Error::Interrupted { .. } => "interrupted",
                    Error::NotDeployed { .. } => "not_deployed",
                    Error::UnknownToken { .. } => "unknown_token",
                    Error::ReadFile { .. } | Error::Parse { .. } | Error::UnknownPlaceholder { .. } | Error::Invalid { .. } | Error::InvalidTokenName { .. } | Error::InvalidArgument { .. } => "bad_input",
                    _ => "error",
                },
                "exit_code": other.exit_code(),
                "message": other.to_string(),
            }),
        }
    }

    /// The output was closed (`provisioner logs | head`): the reader has what it wanted.
    pub fn is_broken_pipe(&self) -> bool {
        match self {
            Error::Output(e) => e.kind() == std::io::ErrorKind::BrokenPipe,
            Error::Logs(e) => e.is_broken_pipe(),
            _ => false,
        }
    }

    /// Wraps an SDK error with the operation and the resource it was about.
    pub fn aws<E, R>(
        operation: &'static str,
        resource: impl Into<String>,
        err: SdkError<E, R>,
    ) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        let (code, message) = match err.as_service_error() {
            Some(service_error) => (
                service_error.code().map(str::to_owned),
                service_error
                    .message()
                    .map(str::to_owned)
                    .unwrap_or_else(|| DisplayErrorContext(&err).to_string()),
            ),
            None => (None, DisplayErrorContext(&err).to_string()),
        };
        let message = match &code {
            Some(code) => format!("{code}: {message}"),
            None => message,
        };
        Error::Aws {
            operation,
            resource: resource.into(),
            code,
            message,
        }
    }

    /// The AWS error code, if this is an AWS error that carried one.
    pub fn aws_code(&self) -> Option<&str> {
        match self {
            Error::Aws { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// Maps an SDK builder error (a missing required field) for `resource`.
    pub fn request(
        resource: impl Into<String>,
    ) -> impl FnOnce(aws_smithy_types::error::operation::BuildError) -> Self {
        let resource = resource.into();
        move |e| Error::Request {
            resource,
            message: e.to_string(),
        }
    }

    /// Shorthand for a missing response field.
    pub fn missing(resource: impl Into<String>, field: &'static str) -> Self {
        Error::MissingField {
            resource: resource.into(),
            field,
        }
    }
}

/// The known names for [`Error::UnknownToken`]'s message, with what to do when there are none.
fn known_tokens(known: &[String], name: &str) -> String {
    if known.is_empty() {
        format!("it has no named tokens; `provisioner token --name {name} --create` makes one")
    } else {
        format!("its named tokens: {}", known.join(", "))
    }
}

/// The error code of an SDK error, when the service sent one (EC2 and IAM errors are
/// mostly unmodeled, so matching on the code is how "already exists"/"not found" are seen).
pub fn code_of<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> Option<&str> {
    err.as_service_error().and_then(ProvideErrorMetadata::code)
}

/// `Ok(None)` when `is_absent` recognises the service's error as its "not found", the normal
/// answer about a resource not created yet or already deleted; any other error names
/// `operation` and `resource`.
pub fn absent_when<T, E, R>(
    result: std::result::Result<T, SdkError<E, R>>,
    is_absent: impl FnOnce(&E) -> bool,
    operation: &'static str,
    resource: impl Into<String>,
) -> Result<Option<T>>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match result {
        Ok(out) => Ok(Some(out)),
        Err(e) if e.as_service_error().is_some_and(is_absent) => Ok(None),
        Err(e) => Err(Error::aws(operation, resource, e)),
    }
}

/// Result alias for the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
