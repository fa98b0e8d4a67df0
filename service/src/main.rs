//! `timing-service`: reads the configuration, then serves (or runs the `healthcheck`
//! subcommand). Everything else lives in the library (`lib.rs`).

use std::{io::IsTerminal, process::ExitCode};

use clap::Parser;
use timing_service::{
    AppState, ServeOptions, after_drain, app,
    auth::Credentials,
    config::{Cli, Command},
    healthcheck,
    log_output::{self, FlushGuard},
    race::Race,
    serve_with, shutdown_signal,
};
use tracing_subscriber::EnvFilter;

/// mimalloc rather than glibc's malloc: under load, glibc's arena locks and free-list
/// consolidation took a fifth of the service's CPU per results page (`perf record`); with
/// mimalloc a random page costs 157-163 µs of service CPU instead of 218-227, at the same RSS
/// (built without transparent huge pages, see the workspace's Cargo.toml).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Healthcheck) = cli.command {
        return healthcheck_main(&cli);
    }
    // Kept to the end of `main`: dropping it writes out the log lines still buffered.
    let _log_writer = match init_tracing(&cli.log_format) {
        Ok(guard) => guard,
        Err(err) => {
            eprintln!("timing-service: cannot start the log writer thread: {err}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("timing-service: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cli))
}

fn healthcheck_main(cli: &Cli) -> ExitCode {
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| rt.block_on(healthcheck::run(cli.listen_addr)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("timing-service healthcheck: {err}");
            ExitCode::FAILURE
        }
    }
}

/// How often the service deletes other versions' Functions libraries (a deploy's old task
/// loads its own again until it stops: the deploy is over within minutes).
const LIBRARY_TIDY_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// Logs to stderr, lines buffered and written by a thread of their own (`log_output`): a
/// request's log line is not a system call of the request's own (one per request was some 5%
/// of a 304's CPU).
fn init_tracing(format: &str) -> std::io::Result<FlushGuard> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = log_output::buffered(
        std::io::stderr(),
        log_output::FLUSH_EVERY,
        log_output::BUFFER_BYTES,
    )?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
    Ok(guard)
}

async fn run(cli: Cli) -> ExitCode {
    let race = match Race::load(
        cli.race_db_file.as_deref(),
        cli.race_competitor_file.as_deref(),
    ) {
        Ok(race) => race,
        Err(err) => {
            tracing::error!("{err}");
            eprintln!("timing-service: {err}");
            return ExitCode::from(2);
        }
    };
    tracing::info!(checkpoints = ?race.checkpoints, "race definition loaded");
    let credentials = match Credentials::parse(cli.api_token.as_deref(), cli.api_tokens.as_deref())
    {
        Ok(credentials) => credentials,
        Err(err) => {
            eprintln!("timing-service: {err}");
            return ExitCode::from(2);
        }
    };
    let state = match AppState::new(&cli.redis_url, race, None) {
        Ok(state) => state
            .with_max_waiters(cli.max_waiters)
            .with_kept_ranking_rows(cli.kept_ranking_rows)
            .with_planned_reads(cli.planned_reads)
            .with_credentials(credentials),
        Err(err) => {
            eprintln!("timing-service: invalid REDIS_URL: {err}");
            return ExitCode::from(2);
        }
    };
    if state.credentials.is_open() {
        tracing::warn!(
            "TIMING_API_TOKEN is not set: writes are open to anyone who can reach the port"
        );
    } else {
        tracing::info!(credentials = ?state.credentials.names(), "writes need one of these tokens");
    }
    // The functions library is loaded now when Redis is up, else by the first write; other
    // versions' libraries are deleted now and every LIBRARY_TIDY_EVERY (store/functions.rs).
    if let Err(err) = state.store.load_functions().await {
        tracing::warn!(%err, "redis is not answering yet; requests answer 503 until it does");
    }
    state.store.spawn_library_tidying(LIBRARY_TIDY_EVERY);
    let listener = match tokio::net::TcpListener::bind(cli.listen_addr).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!(
                "timing-service: cannot listen on {}: {err}",
                cli.listen_addr
            );
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(addr = %cli.listen_addr, "listening");
    let live = state.live.clone();
    let drain = cli.shutdown_drain;
    let shutdown = async move {
        after_drain(shutdown_signal(), drain).await;
        // Waiting long polls answer now instead of holding the stop for up to 25 s.
        live.release_all();
    };
    let options = ServeOptions {
        header_read_timeout: cli.header_read_timeout,
        max_connections: cli.max_connections,
    };
    match serve_with(listener, app(state), shutdown, options).await {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(err) => {
            tracing::error!(%err, "server error");
            ExitCode::FAILURE
        }
    }
}
