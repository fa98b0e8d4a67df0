//! The `provisioner` binary: parses the command line, sets up logging on stderr, runs the
//! command and turns its outcome into an exit code (0 ok, 1 error, 2 plan has changes,
//! 3 timeout, 4 rolled back or failing, 130 interrupted by Ctrl-C); a closed stdout (a pipe
//! into `head`) ends a command quietly with 0.

use std::process::ExitCode;

use clap::Parser;
use provisioner::cli::{Cli, OutputFormat};
use provisioner::error::Error;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.verbose {
        0 => "provisioner=info",
        1 => "provisioner=debug",
        _ => "provisioner=trace,aws_smithy_runtime=debug",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level)),
        )
        // Through the live display, so a log line never breaks its redraw.
        .with_writer(provisioner::console::LogWriter)
        .with_ansi(
            std::env::var_os("NO_COLOR").is_none()
                && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        )
        .with_target(false)
        .without_time()
        .init();

    let (output, app) = (cli.output, cli.app.clone());
    let command = command_name(&cli);
    let mut stdout = std::io::stdout();
    // Ctrl-C ends every command with 130. Dropping the command's future is safe: every step
    // reads before it writes, so running the command again continues where it stopped.
    let result = tokio::select! {
        result = provisioner::run(cli, &mut stdout) => result,
        _ = tokio::signal::ctrl_c() => Err(Error::Interrupted { command }),
    };
    match result {
        Ok(outcome) => ExitCode::from(outcome.exit_code()),
        // `provisioner logs | head`: the reader has what it wanted.
        Err(err) if err.is_broken_pipe() => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            if output == OutputFormat::Json {
                println!("{:#}", provisioner::error_json(command, &app, &err));
            }
            ExitCode::from(err.exit_code())
        }
    }
}

fn command_name(cli: &Cli) -> &'static str {
    use provisioner::cli::Command;
    match cli.command {
        Command::Up(_) => "up",
        Command::Plan(_) => "plan",
        Command::Down(_) => "down",
        Command::Render(_) => "render",
        Command::Start(_) => "start",
        Command::Stop(_) => "stop",
        Command::Status(_) => "status",
        Command::Logs(_) => "logs",
        Command::Token(_) => "token",
    }
}
