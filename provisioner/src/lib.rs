//! The provisioner: deploys the timing service and its Redis to AWS ECS Fargate with one
//! command, and removes them with another.
//!
//! # Layout
//! - [`cli`]: commands and flags.
//! - [`aws`]: the one place that builds the AWS configuration and clients.
//! - [`config`]: resource names and the task-definition and policy files.
//! - [`taskdef`]: the serde mirror of a task definition and its comparison with AWS.
//! - [`plan`]: the record of what a run changed, and the context every step shares.
//! - [`policy`]: policy documents compared by meaning (AWS returns them reformatted).
//! - [`resources`]: one module per AWS resource kind, each `ensure_*` and `delete_*`.
//! - [`commands`]: `up`/`plan`, `down`, `render`, each producing a [`commands::Report`].
//! - [`console`]: the one progress display on stderr (indicatif on a terminal, timestamped
//!   lines otherwise).
//! - [`watch`]: follows a deployment until it is stable, drained, rolled back or failing.
//! - [`logs`]: reads the containers' CloudWatch logs.
//! - [`image`]: builds the service image (natively or with Docker) and pushes it to a registry.
//! - [`error`]: the error type and exit codes.
//!
//! There is no state file: every run reads the live state from AWS by name and tag.

pub mod aws;
pub mod cli;
pub mod commands;
pub mod config;
pub mod console;
pub mod error;
pub mod image;
pub mod logs;
pub mod plan;
pub mod policy;
pub mod resources;
pub mod taskdef;
pub mod watch;

use std::io::{IsTerminal, Write};
use std::time::Duration;

use cli::{Cli, Command, OutputFormat};
use commands::Report;
use config::{Names, Templates};
use error::{Error, Result};
use plan::Deployment;
use serde_json::json;

/// What a command produced, for the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done.
    Done,
    /// `plan` (or a `--dry-run`) found changes (exit 2).
    PlanHasChanges,
}

impl Outcome {
    /// The process exit code.
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Done => 0,
            Outcome::PlanHasChanges => 2,
        }
    }
}

/// Runs one command line; writes the result to `out`.
pub async fn run(cli: Cli, out: &mut dyn Write) -> Result<Outcome> {
    let names = Names::new(&cli.app);
    // Every file is checked before the first AWS call, so bad input creates nothing.
    let templates = Templates::load(&cli.root)?;
    match cli.command {
        Command::Render(args) => {
            let region = cli
                .aws
                .region
                .clone()
                .unwrap_or_else(|| "eu-north-1".into());
            let role_arn = |name: &str| resources::iam::role_arn(&region, &args.account, name);
            let values = commands::render::RenderValues {
                execution_role_arn: role_arn(&names.execution_role),
                api_task_role_arn: role_arn(&names.api_task_role),
                account: args.account.clone(),
                region: region.clone(),
                api_image: args.image.clone(),
                redis_image: cli::DeployArgs::default_redis_image(),
            };
            let rendered = commands::render::render(&templates, &names, &values)?;
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&rendered).unwrap_or_default()
            )?;
            Ok(Outcome::Done)
        }
        Command::Up(args) => {
            let options = commands::up::UpOptions {
                deploy: args.deploy,
                wait: (!args.no_wait).then_some(args.timeout),
                start: args.start,
                root: cli.root.clone(),
            };
            let deployment = connect(
                &cli.aws,
                names,
                args.dry_run,
                Some(args.timeout),
                |region| options.deploy.check(region),
            )
            .await?;
            let report = commands::up::up(&deployment, &templates, &options).await?;
            deployment.steps_done();
            emit(out, cli.output, &report)?;
            Ok(plan_outcome(&report))
        }
        Command::Plan(deploy) => {
            let options = commands::up::UpOptions {
                deploy,
                wait: None,
                start: false,
                root: cli.root.clone(),
            };
            let deployment = connect(&cli.aws, names, true, None, |region| {
                options.deploy.check(region)
            })
            .await?;
            let report = commands::up::up(&deployment, &templates, &options).await?;
            deployment.steps_done();
            emit(out, cli.output, &report)?;
            Ok(plan_outcome(&report))
        }
        Command::Down(args) => {
            confirm_down(&cli.app, args.yes)?;
            let deployment =
                connect(&cli.aws, names, false, Some(args.timeout), |_| Ok(())).await?;
            let report =
                commands::down::down(&deployment, &templates, args.timeout, args.delete_data)
                    .await?;
            deployment.steps_done();
            emit(out, cli.output, &report)?;
            Ok(Outcome::Done)
        }
        Command::Stop(args) => {
            let deployment =
                connect(&cli.aws, names, false, Some(args.timeout), |_| Ok(())).await?;
            let report =
                commands::scale::stop(&deployment, (!args.no_wait).then_some(args.timeout)).await?;
            deployment.steps_done();
            emit(out, cli.output, &report)?;
            Ok(Outcome::Done)
        }
        Command::Start(args) => {
            let deployment = connect(
                &cli.aws,
                names,
                false,
                Some(args.wait.timeout),
                |_| match args.api_count {
                    Some(count) => cli::check_api_count(count),
                    None => Ok(()),
                },
            )
            .await?;
            let wait = (!args.wait.no_wait).then_some(args.wait.timeout);
            let report = commands::scale::start(&deployment, args.api_count, wait).await?;
            deployment.steps_done();
            emit(out, cli.output, &report)?;
            Ok(Outcome::Done)
        }
        Command::Status(args) => {
            let deployment = connect(&cli.aws, names, false, None, |_| Ok(())).await?;
            let report = commands::status::status(&deployment, args.events, args.since).await?;
            deployment.steps_done();
            emit(out, cli.output, &report)?;
            Ok(Outcome::Done)
        }
        Command::Token(args) => {
            // A bad name is refused before any AWS call.
            let request = commands::token::TokenRequest::from_args(&args)?;
            let dry_run = args.dry_run && request.changes();
            let deployment = connect(&cli.aws, names, dry_run, None, |_| Ok(())).await?;
            let report = commands::token::token(&deployment, &templates, &request).await?;
            deployment.steps_done();
            emit(out, cli.output, &report)?;
            Ok(if report.dry_run && report.changed {
                Outcome::PlanHasChanges
            } else {
                Outcome::Done
            })
        }
        Command::Logs(args) => {
            let clients = aws::Clients::load(&cli.aws).await?;
            let mut writer = out;
            let options = logs::LogsOptions {
                json: cli.output == OutputFormat::Json,
                ..logs::LogsOptions::default()
            };
            let fetch = logs::fetch_logs(
                &clients.logs,
                &names.log_group,
                args.service,
                args.since,
                args.follow,
                &mut writer,
                &options,
            );
            fetch.await?;
            Ok(Outcome::Done)
        }
    }
}

fn plan_outcome(report: &Report) -> Outcome {
    if report.dry_run && report.changed {
        Outcome::PlanHasChanges
    } else {
        Outcome::Done
    }
}

/// The AWS clients and the run's context. `check` runs on the region before any AWS call
/// (flags that depend on it are refused first); `timeout` (the command's `--timeout`) bounds
/// every wait of the run from now on.
async fn connect(
    args: &cli::AwsArgs,
    names: Names,
    dry_run: bool,
    timeout: Option<Duration>,
    check: impl FnOnce(&str) -> Result<()>,
) -> Result<Deployment> {
    let started = tokio::time::Instant::now();
    let clients = aws::Clients::load(args).await?;
    check(&clients.region)?;
    let account = clients.account_id().await?;
    let deployment = Deployment::new(clients, names, account, dry_run);
    Ok(match timeout {
        Some(timeout) => deployment.with_deadline(started + timeout),
        None => deployment,
    })
}

fn emit<R: std::fmt::Display + serde::Serialize>(
    out: &mut dyn Write,
    format: OutputFormat,
    report: &R,
) -> Result<()> {
    match format {
        OutputFormat::Text => write!(out, "{report}")?,
        OutputFormat::Json => {
            let json = serde_json::to_string_pretty(report).map_err(std::io::Error::other)?;
            writeln!(out, "{json}")?;
        }
    }
    Ok(())
}

/// The JSON written to stdout when a command fails with `--output json`: the command, the
/// app and an `error` object (see [`Error::to_json`]), so CI can read why.
pub fn error_json(cli_command: &str, app: &str, err: &Error) -> serde_json::Value {
    json!({ "schema_version": 1, "command": cli_command, "app": app, "error": err.to_json() })
}

/// `down` deletes data: it asks on a terminal, and without one (CI) it needs `--yes`.
fn confirm_down(app: &str, yes: bool) -> Result<()> {
    if yes {
        return Ok(());
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() || std::env::var_os("CI").is_some() {
        return Err(Error::NotConfirmed {
            app: app.to_owned(),
        });
    }
    eprint!(
        "This deletes every resource of app `{app}`, its logs and images (race data on EFS is kept unless --delete-data). Type the app name to confirm: "
    );
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    stdin.read_line(&mut answer)?;
    if answer.trim() == app {
        Ok(())
    } else {
        Err(Error::NotConfirmed {
            app: app.to_owned(),
        })
    }
}
