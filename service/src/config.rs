//! Command line and environment: every setting is an environment variable (ECS task
//! definitions set those), with a matching flag for local runs.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Parser, Subcommand};

/// Race-timing HTTP API on axum and Redis.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// Address and port to listen on.
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0:8080")]
    pub listen_addr: SocketAddr,

    /// Redis URL; the host name is resolved again on every reconnect.
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,

    /// Bearer token required by every write; unset (or empty), writes are open.
    #[arg(long, env = "TIMING_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,

    /// Named write tokens, `name:token,name:token`: the name of the one used is the write's
    /// actor in the audit trail (beside TIMING_API_TOKEN, which is named `default`).
    #[arg(long, env = "TIMING_API_TOKENS", hide_env_values = true)]
    pub api_tokens: Option<String>,

    /// Checkpoints file in the original's `db.json` shape; unset, the original's checkpoints.
    #[arg(long, env = "RACE_DB_FILE")]
    pub race_db_file: Option<PathBuf>,

    /// Competitor definition in the original's `competitor.json` shape; unset, the original's.
    #[arg(long, env = "RACE_COMPETITOR_FILE")]
    pub race_competitor_file: Option<PathBuf>,

    /// Log format: `text` (default) or `json` (one JSON object per line).
    #[arg(long, env = "LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,

    /// After SIGTERM, keep accepting and answering for this long before stopping, so requests
    /// routed from a stale service-discovery answer (API Gateway's view of Cloud Map lags a
    /// stopping task) still succeed. With a unit: `10s`; at most 60s; `0s` stops at once.
    #[arg(long, env = "SHUTDOWN_DRAIN", default_value = "0s", value_parser = parse_drain)]
    pub shutdown_drain: Duration,

    /// Time a request head may take to arrive in full; also how long an idle keep-alive
    /// connection stays open (`10s`, `1m`).
    #[arg(long, env = "HEADER_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_read_timeout: Duration,

    /// Most connections open at once; more wait in the listen backlog until one closes.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = crate::server::MAX_CONNECTIONS, value_parser = clap::value_parser!(usize))]
    pub max_connections: usize,

    /// Most long polls (`?wait=`) waiting at once in this process; past it a long poll
    /// answers 503 with `Retry-After` at once.
    #[arg(long, env = "MAX_WAITERS", default_value_t = crate::live::DEFAULT_MAX_WAITERS, value_parser = clap::value_parser!(usize))]
    pub max_waiters: usize,

    /// Most results rows kept in memory as whole rankings that do not change, so their pages
    /// need no Redis read (some 110 bytes a row); 0 keeps none.
    #[arg(long, env = "KEPT_RANKING_ROWS", default_value_t = crate::store::DEFAULT_KEPT_RANKING_ROWS, value_parser = clap::value_parser!(usize))]
    pub kept_ranking_rows: usize,

    /// Whether chip-read calls at a split or the finish are decided in this process and only
    /// checked and written by Redis (`true`), or every read is decided by the functions
    /// library's rules in Redis (`false`: half as much Redis time again per read, less of the
    /// service's; kept for comparison).
    #[arg(long, env = "PLANNED_READS", default_value_t = true, action = clap::ArgAction::Set)]
    pub planned_reads: bool,

    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Exit 0 if `GET /health` on the port of LISTEN_ADDR answers 200 within 2 s, 1 otherwise
    /// (the container health check: the image has no curl).
    Healthcheck,
}

/// The longest drain accepted: ECS allows a task at most 120 s between SIGTERM and SIGKILL,
/// and in-flight requests need their own time after the drain.
pub const MAX_SHUTDOWN_DRAIN: Duration = Duration::from_secs(60);

/// Parses `SHUTDOWN_DRAIN` (`10s`, `1m`), at most [`MAX_SHUTDOWN_DRAIN`].
fn parse_drain(text: &str) -> Result<Duration, String> {
    let drain = humantime::parse_duration(text)
        .map_err(|e| format!("`{text}`: {e} (write a unit, e.g. 10s)"))?;
    if drain > MAX_SHUTDOWN_DRAIN {
        return Err(format!(
            "`{text}`: at most {}s",
            MAX_SHUTDOWN_DRAIN.as_secs()
        ));
    }
    Ok(drain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drain_needs_a_unit_and_stays_short() {
        assert_eq!(parse_drain("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_drain("0s"), Ok(Duration::ZERO));
        assert!(parse_drain("10").is_err());
        assert!(parse_drain("2m").is_err());
    }
}
