//! Command-line interface: the commands, their flags, and the flags every AWS command shares.
//! Help texts come from the doc comments.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Deploys the timing service and its Redis to AWS ECS Fargate, and removes them again.
///
/// Every run derives the state from AWS by name and tags: there is no local state file, so a
/// laptop and CI can take turns. Exit codes: 0 ok, 1 error, 2 `plan` found changes,
/// 3 timed out, 4 deployment rolled back or failing.
#[derive(Debug, Parser)]
#[command(name = "provisioner", version, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,

    /// AWS settings shared by every command.
    #[command(flatten)]
    pub aws: AwsArgs,

    /// App name: prefix of every resource name and value of the `app` tag.
    #[arg(long, global = true, env = "PROVISIONER_APP", default_value = "timing", value_parser = parse_app_name)]
    pub app: String,

    /// Output format of the result on stdout (progress goes to stderr).
    #[arg(long, global = true, env = "PROVISIONER_OUTPUT", value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,

    /// Directory holding `task-definitions/` and `policies/` (default: the current directory).
    #[arg(long, global = true, env = "PROVISIONER_ROOT", default_value = ".")]
    pub root: PathBuf,

    /// More log output on stderr (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// Region, profile and endpoint; anything not given comes from the standard AWS chain.
#[derive(Debug, Clone, Default, Args)]
pub struct AwsArgs {
    /// AWS region (default: AWS_REGION, then the profile's region).
    #[arg(long, global = true)]
    pub region: Option<String>,

    /// Named profile from ~/.aws/config (default: AWS_PROFILE, then `default`).
    #[arg(long, global = true)]
    pub profile: Option<String>,

    /// Send every AWS call to this endpoint instead (an emulator, a VPC endpoint).
    /// AWS_ENDPOINT_URL works too.
    #[arg(long, global = true)]
    pub endpoint_url: Option<String>,
}

/// The result format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Human-readable lines.
    Text,
    /// One JSON document (schema in the README).
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create what is missing and update what differs, then wait until the services are stable.
    Up(UpArgs),
    /// Show what `up` would create or change; exit 2 if anything would change, 0 if not.
    Plan(DeployArgs),
    /// Remove everything `up` created for the app.
    Down(DownArgs),
    /// Check the task-definition and policy files and print the rendered task definitions,
    /// without calling AWS.
    Render(RenderArgs),
    /// Run the services again after `stop`: redis, then the API; wait until they are stable
    /// and healthy in Cloud Map (and `/ready` answers through the HTTPS URL when it can be
    /// reached from here); the URL is the same as before the stop.
    Start(StartArgs),
    /// Stop billing for tasks: desired count 0 for every service (API first), wait until no
    /// task runs, and say what still costs money.
    Stop(WaitArgs),
    /// Show what runs and where: per service counts, rollout, revision, image; the endpoint;
    /// recent events; why recent tasks stopped.
    Status(StatusArgs),
    /// Print the containers' CloudWatch logs.
    Logs(LogsArgs),
    /// Print the API's write token (`Authorization: Bearer <token>`), or replace it; with
    /// `--name`, create, print, rotate or revoke a named one (`--list` lists their names).
    Token(TokenArgs),
}

/// Flags of `token`. Without `--name` it is about the single token (`TIMING_API_TOKEN`, which
/// the service knows as `default`); with it, about one of the named tokens the service also
/// accepts (`TIMING_API_TOKENS`), whose name the audit trail records as the writer.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// A named token: 1-64 letters, digits, `_`, `.` or `-` (`default` is the single token's).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// Create the named token, or keep it if it exists; the API tasks are restarted to accept
    /// it. The value is not printed: `token --name NAME` prints it.
    #[arg(long, requires = "name", conflicts_with_all = ["rotate", "revoke", "list"])]
    pub create: bool,

    /// Generate a new token, store it, and restart the API tasks so they use it
    /// (`--rotate-token` is the same). With `--name`, the named token, which must exist.
    #[arg(long, alias = "rotate-token", conflicts_with_all = ["revoke", "list"])]
    pub rotate: bool,

    /// Remove the named token (nothing to do if it is gone) and restart the API tasks, which
    /// then refuse it.
    #[arg(long, requires = "name", conflicts_with = "list")]
    pub revoke: bool,

    /// List the names of the named tokens (never their values).
    #[arg(long, conflicts_with = "name")]
    pub list: bool,

    /// Only show what `--create`, `--rotate` or `--revoke` would change; exit 2 if anything
    /// would.
    #[arg(long)]
    pub dry_run: bool,
}

/// How long a command waits.
#[derive(Debug, Clone, Args)]
pub struct WaitArgs {
    /// How long to wait, with a unit: `90s`, `10m`.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Return once AWS accepted the change, without waiting.
    #[arg(long)]
    pub no_wait: bool,
}

/// Flags of `start`.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// Waiting.
    #[command(flatten)]
    pub wait: WaitArgs,

    /// Number of API tasks (default: the number `up` or the last `start` set, else 1).
    #[arg(long)]
    pub api_count: Option<i32>,
}

/// Flags of `status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// How many recent service events to show per service.
    #[arg(long, default_value_t = 5)]
    pub events: usize,

    /// How far back to look for stopped tasks, with a unit.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub since: Duration,
}

/// Flags of `logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Whose logs.
    #[arg(value_enum, default_value = "api")]
    pub service: crate::logs::Service,

    /// From how long ago, with a unit.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub since: Duration,

    /// Keep printing new lines until interrupted.
    #[arg(long, short)]
    pub follow: bool,
}

/// How `up` gets the service image when `--image` is not given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Builder {
    /// Docker when a daemon answers, else native.
    Auto,
    /// `docker build` and `docker push`.
    Docker,
    /// A static binary packed into an OCI image and pushed without a daemon.
    Native,
}

/// Flags of `up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// What the deployment is made of.
    #[command(flatten)]
    pub deploy: DeployArgs,

    /// Only show what would change (same as `plan`).
    #[arg(long)]
    pub dry_run: bool,

    /// Return once AWS accepted the changes, without waiting for stable services.
    #[arg(long)]
    pub no_wait: bool,

    /// How long to wait for stable services, with a unit: `90s`, `10m`.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Start services that are stopped (by default a deploy keeps a stopped app stopped).
    #[arg(long)]
    pub start: bool,
}

/// What a deployment is made of: shared by `up` and `plan`.
#[derive(Debug, Clone, Args)]
pub struct DeployArgs {
    /// Image of the service, built elsewhere (e.g. `<account>.dkr.ecr.<region>.amazonaws.com/timing/api:<tag>`).
    /// It must exist; it is deployed by digest. Default: build the image from this workspace
    /// and push it to the app's ECR repository.
    #[arg(long, conflicts_with = "keep_image")]
    pub image: Option<String>,

    /// Deploy the image the API runs now (no build): for changes to everything but the code.
    #[arg(long)]
    pub keep_image: bool,

    /// How to build the image when `--image` is not given.
    #[arg(long, value_enum, default_value_t = Builder::Auto)]
    pub builder: Builder,

    /// Send registry requests (pushes, checks) to this endpoint instead of ECR's, e.g. a pull-through
    /// mirror or a local registry (`http://` only for loopback). The task definition still names ECR.
    #[arg(long)]
    pub registry_endpoint: Option<String>,

    /// Copy the Redis image into the app's ECR repository `<app>/redis` and run it from there,
    /// so tasks do not depend on a public registry at start.
    #[arg(long)]
    pub mirror_redis: bool,

    /// Image of Redis (the official image, from a public registry).
    #[arg(long, default_value = DEFAULT_REDIS_IMAGE)]
    pub redis_image: String,

    /// VPC to deploy into (default: the account's default VPC).
    #[arg(long)]
    pub vpc: Option<String>,

    /// Subnets for the tasks, comma-separated (default: the VPC's default subnets, else all of its subnets).
    #[arg(long, value_delimiter = ',')]
    pub subnets: Vec<String>,

    /// Also let this CIDR reach the API tasks' port directly, beside the VPC link (off unless
    /// given: by default only API Gateway's VPC link reaches the tasks).
    #[arg(long)]
    pub allow_cidr: Option<String>,

    /// Days CloudWatch keeps the logs.
    #[arg(long, default_value_t = 7)]
    pub log_retention_days: i32,

    /// How many images ECR keeps in the service repository.
    #[arg(long, default_value_t = 10)]
    pub keep_images: u32,

    /// Number of API tasks when running, 1 to 10 (default: as deployed, else 1).
    #[arg(long)]
    pub api_count: Option<i32>,

    /// Steady requests per second the HTTP API lets through (the `$default` stage's throttling),
    /// so a runaway client cannot run up the per-request bill; above it clients get 429.
    #[arg(long, default_value_t = DEFAULT_THROTTLE_RATE)]
    pub throttle_rate: f64,

    /// Requests the HTTP API lets through at once above the steady rate (burst).
    #[arg(long, default_value_t = DEFAULT_THROTTLE_BURST)]
    pub throttle_burst: i32,

    /// A custom domain for the HTTP API (e.g. `timing.example.org`); needs --certificate-arn.
    /// `up` prints the DNS record to create for it.
    #[arg(long)]
    pub domain: Option<String>,

    /// ACM certificate for --domain, in the deployment's region.
    #[arg(long)]
    pub certificate_arn: Option<String>,

    /// Require a password for Redis (AUTH), generated and kept in SSM Parameter Store. Once
    /// enabled it stays on for later deploys until `down`.
    #[arg(long)]
    pub redis_password: bool,
}

/// Most API tasks `--api-count` accepts: a guard against a typo running up the Fargate bill.
pub const MAX_API_COUNT: i32 = 10;
/// Default `--throttle-rate`: 25 requests/s, far above a race's timing devices and results
/// pages, and a ceiling of about $65/month of requests if a client loops for a month.
pub const DEFAULT_THROTTLE_RATE: f64 = 25.0;
/// Default `--throttle-burst`.
pub const DEFAULT_THROTTLE_BURST: i32 = 50;

/// Checks `--api-count` before any AWS call.
pub fn check_api_count(count: i32) -> Result<(), crate::error::Error> {
    if (1..=MAX_API_COUNT).contains(&count) {
        Ok(())
    } else {
        Err(crate::error::Error::InvalidArgument {
            flag: "--api-count",
            message: format!(
                "{count}: run 1 to {MAX_API_COUNT} API tasks (`provisioner stop` takes them to 0)"
            ),
        })
    }
}

/// The official Redis image, from ECR Public (no Docker Hub pull limits).
pub const DEFAULT_REDIS_IMAGE: &str = "public.ecr.aws/docker/library/redis:7.4-alpine";

impl DeployArgs {
    /// The default Redis image.
    pub fn default_redis_image() -> String {
        DEFAULT_REDIS_IMAGE.to_owned()
    }

    /// Checks the flags that only make sense together or in the region, before any AWS call.
    pub fn check(&self, region: &str) -> Result<(), crate::error::Error> {
        use crate::error::Error;
        if let Some(count) = self.api_count {
            check_api_count(count)?;
        }
        if !(self.throttle_rate.is_finite() && self.throttle_rate > 0.0) {
            return Err(Error::InvalidArgument {
                flag: "--throttle-rate",
                message: format!(
                    "{}: give a positive number of requests per second",
                    self.throttle_rate
                ),
            });
        }
        if self.throttle_burst <= 0 {
            return Err(Error::InvalidArgument {
                flag: "--throttle-burst",
                message: format!(
                    "{}: give a positive number of requests",
                    self.throttle_burst
                ),
            });
        }
        match (&self.domain, &self.certificate_arn) {
            (None, None) => Ok(()),
            (Some(domain), None) => Err(Error::InvalidArgument {
                flag: "--domain",
                message: format!(
                    "{domain} needs --certificate-arn: an ACM certificate for it in {region}"
                ),
            }),
            (None, Some(_)) => Err(Error::InvalidArgument {
                flag: "--certificate-arn",
                message: "a certificate is only used with --domain NAME".into(),
            }),
            (Some(domain), Some(arn)) => {
                check_domain(domain)?;
                check_certificate_arn(arn, region)
            }
        }
    }
}

fn check_domain(domain: &str) -> Result<(), crate::error::Error> {
    let labels: Vec<&str> = domain.split('.').collect();
    let valid = labels.len() >= 2
        && domain.len() <= 253
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        });
    if valid {
        Ok(())
    } else {
        Err(crate::error::Error::InvalidArgument {
            flag: "--domain",
            message: format!("`{domain}`: give a lowercase DNS name such as timing.example.org"),
        })
    }
}

/// A regional API Gateway domain needs an ACM certificate of the same region:
/// `arn:<partition>:acm:<region>:<account>:certificate/<id>`.
fn check_certificate_arn(arn: &str, region: &str) -> Result<(), crate::error::Error> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let message = match parts.as_slice() {
        ["arn", _, "acm", cert_region, _, resource] if resource.starts_with("certificate/") => {
            if *cert_region == region {
                return Ok(());
            }
            format!(
                "{arn} is in {cert_region}, the app in {region}: a regional API Gateway domain needs a certificate from ACM in {region}"
            )
        }
        _ => format!(
            "`{arn}` is not an ACM certificate ARN (arn:aws:acm:{region}:ACCOUNT:certificate/ID)"
        ),
    };
    Err(crate::error::Error::InvalidArgument {
        flag: "--certificate-arn",
        message,
    })
}

/// Flags of `down`.
#[derive(Debug, Args)]
pub struct DownArgs {
    /// Do not ask for confirmation (required when there is no terminal, as in CI).
    #[arg(long, short = 'y')]
    pub yes: bool,

    /// How long to wait for services to drain and namespaces to go, with a unit.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Delete Redis's data too (the EFS file system with every competitor and time). Without
    /// it the data is kept, and the next `up` starts Redis on it again.
    #[arg(long)]
    pub delete_data: bool,
}

/// Flags of `render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// Account ID to render with.
    #[arg(long, default_value = "123456789012")]
    pub account: String,

    /// Image of the service to render with.
    #[arg(long, default_value = "example.invalid/timing/api:latest")]
    pub image: String,
}

/// Parses `90s`, `10m`, `1h 30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("`{text}`: {e} (write a unit, e.g. 90s or 10m)"))
}

/// App names become parts of resource names (roles, security groups, namespaces, log groups),
/// so they are restricted to what every one of those accepts.
pub fn parse_app_name(text: &str) -> Result<String, String> {
    let valid = !text.is_empty()
        && text.len() <= 20
        && text.starts_with(|c: char| c.is_ascii_lowercase())
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !text.ends_with('-');
    if valid {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "`{text}`: use 1-20 lowercase letters, digits and dashes, starting with a letter"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_units() {
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("10").is_err());
    }

    fn deploy_args(extra: &[&str]) -> DeployArgs {
        let mut argv = vec!["provisioner", "plan"];
        argv.extend(extra);
        match Cli::try_parse_from(argv)
            .unwrap_or_else(|e| panic!("{e}"))
            .command
        {
            Command::Plan(args) => args,
            other => panic!("{other:?}"),
        }
    }

    fn refused_flag(extra: &[&str]) -> &'static str {
        match deploy_args(extra).check("eu-north-1") {
            Err(crate::error::Error::InvalidArgument { flag, .. }) => flag,
            other => panic!("{extra:?}: {other:?}"),
        }
    }

    #[test]
    fn bad_gateway_input_is_refused_naming_the_flag() {
        let cert = "arn:aws:acm:eu-north-1:123456789012:certificate/abc";
        assert!(deploy_args(&[]).check("eu-north-1").is_ok());
        assert!(
            deploy_args(&["--domain", "timing.example.org", "--certificate-arn", cert])
                .check("eu-north-1")
                .is_ok()
        );
        assert_eq!(
            refused_flag(&["--domain", "timing.example.org"]),
            "--domain"
        );
        assert_eq!(
            refused_flag(&["--certificate-arn", cert]),
            "--certificate-arn"
        );
        let elsewhere = "arn:aws:acm:us-east-1:123456789012:certificate/abc";
        assert_eq!(
            refused_flag(&[
                "--domain",
                "timing.example.org",
                "--certificate-arn",
                elsewhere
            ]),
            "--certificate-arn"
        );
        assert_eq!(
            refused_flag(&["--domain", "Timing..org", "--certificate-arn", cert]),
            "--domain"
        );
        assert_eq!(refused_flag(&["--api-count", "0"]), "--api-count");
        assert_eq!(refused_flag(&["--api-count", "11"]), "--api-count");
        assert_eq!(refused_flag(&["--throttle-rate", "0"]), "--throttle-rate");
        assert_eq!(refused_flag(&["--throttle-rate=-5"]), "--throttle-rate");
        assert_eq!(refused_flag(&["--throttle-rate", "NaN"]), "--throttle-rate");
        assert_eq!(refused_flag(&["--throttle-burst", "0"]), "--throttle-burst");
    }

    #[test]
    fn app_names_are_restricted() {
        assert!(parse_app_name("timing").is_ok());
        assert!(parse_app_name("timing-staging2").is_ok());
        for bad in [
            "",
            "Timing",
            "9lives",
            "a_b",
            "x-",
            "a-very-long-name-over-twenty",
        ] {
            assert!(parse_app_name(bad).is_err(), "{bad} accepted");
        }
    }
}
