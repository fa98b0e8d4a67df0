//! One module per kind of AWS resource. Each exposes `ensure_*` (observe the live state,
//! then create or update only what differs, recording the outcome) and `delete_*` (remove
//! it, treating "not found" as the normal case it is). Names come from [`crate::config::Names`];
//! what may be adopted or deleted by those names is decided once, in [`ownership`]. Every
//! wait ([`retry_bounded`], [`poll_until`]) is given a limit already cut to what is left of
//! the command's `--timeout` ([`crate::plan::Deployment::limit`]).

pub mod cluster;
pub mod discovery;
pub mod ecr;
pub mod efs;
pub mod gateway;
pub mod iam;
pub mod log_group;
pub mod network;
pub mod ownership;
pub mod secrets;
pub mod services;
pub mod task_definitions;
pub mod tokens;
pub mod vpc_link;

use std::future::Future;
use std::time::Duration;

use crate::error::{Error, Result};

/// Retries `operation` while `retryable` says so, with a growing pause, until `limit` has
/// passed; the last error is returned with what was awaited. Used for AWS's eventual
/// consistency: new IAM roles, network interfaces being released, Cloud Map operations.
pub async fn retry_bounded<T, F, Fut>(
    what: &str,
    limit: Duration,
    retryable: impl Fn(&Error) -> bool,
    mut operation: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let started = tokio::time::Instant::now();
    let mut pause = Duration::from_secs(1);
    loop {
        match operation().await {
            Ok(value) => return Ok(value),
            Err(err) if retryable(&err) && started.elapsed() + pause <= limit => {
                tracing::info!("{what}: {err}; retrying in {}s", pause.as_secs());
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(15));
            }
            Err(err) => return Err(err),
        }
    }
}

/// Polls `check` every `interval` until it answers `Some`, for at most `limit`.
pub async fn poll_until<T, F, Fut>(
    what: &str,
    limit: Duration,
    interval: Duration,
    mut check: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let started = tokio::time::Instant::now();
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if started.elapsed() >= limit {
            return Err(Error::Timeout {
                what: what.to_owned(),
                waited: limit,
            });
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn retry_stops_at_the_limit_with_the_last_error() {
        let attempts = AtomicU32::new(0);
        let result: Result<()> = retry_bounded(
            "thing",
            Duration::from_secs(10),
            |_| true,
            || async {
                attempts.fetch_add(1, Ordering::SeqCst);
                Err(Error::NoRegion)
            },
        )
        .await;
        assert!(matches!(result, Err(Error::NoRegion)));
        // 1 + 2 + 4 seconds of pauses fit in 10 s; the next (8 s) would not.
        assert_eq!(attempts.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_returns_at_once_on_other_errors() {
        let attempts = AtomicU32::new(0);
        let result: Result<()> = retry_bounded(
            "thing",
            Duration::from_secs(60),
            |_| false,
            || async {
                attempts.fetch_add(1, Ordering::SeqCst);
                Err(Error::NoRegion)
            },
        )
        .await;
        assert!(result.is_err());
        assert_eq!(attempts.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn poll_times_out_naming_what_it_waited_for() {
        let result: Result<()> = poll_until(
            "the namespace",
            Duration::from_secs(5),
            Duration::from_secs(1),
            || async { Ok(None) },
        )
        .await;
        assert!(result.unwrap_err().to_string().contains("the namespace"));
    }
}
