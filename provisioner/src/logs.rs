//! `provisioner logs`: the CloudWatch logs of the `api` or `redis` containers.
//!
//! Both services log through the awslogs driver into the app's log group, in streams named
//! `<prefix>/<container>/<task-id>` with the service name as prefix (see `task-definitions/`),
//! so one FilterLogEvents with `logStreamNamePrefix = "<service>/"` reads every task of a
//! service, old and new. Each line printed is `<RFC 3339 UTC time> <task-id> <message>`.
//!
//! Without `--follow` it reads from `now - since` to now, page by page (bounded by
//! [`LogsOptions::max_pages`], with a warning on stderr if the bound cut it short). With
//! `--follow` it then polls every [`LogsOptions::poll_interval`] from a little before the newest
//! event seen ([`FOLLOW_LOOKBACK`], for events that CloudWatch ingests late), printing only
//! events not printed before (by `eventId`), until the caller drops the future (Ctrl-C) — it
//! only reads, so that is always safe. A log group that does not exist means the app is not
//! deployed: [`LogsError::NotDeployed`].

use std::collections::HashSet;
use std::fmt;
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_cloudwatchlogs::Client;

/// Time before the newest event seen that each follow poll reads again.
pub const FOLLOW_LOOKBACK: Duration = Duration::from_secs(10);

/// Which service's containers to read (usable directly as a clap argument).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Service {
    /// The timing API.
    Api,
    /// Its Redis.
    Redis,
}

impl Service {
    /// The `awslogs-stream-prefix` of the service's containers.
    pub fn stream_prefix(self) -> &'static str {
        match self {
            Service::Api => "api",
            Service::Redis => "redis",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.stream_prefix())
    }
}

/// Why logs could not be shown.
#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    /// The log group does not exist.
    #[error(
        "log group `{log_group}` does not exist: the app is not deployed (run `provisioner up`)"
    )]
    NotDeployed {
        /// The log group.
        log_group: String,
    },
    /// A CloudWatch Logs call failed (after the SDK's retries).
    #[error("{operation} failed for log group `{log_group}`: {message}")]
    Aws {
        /// The API operation.
        operation: &'static str,
        /// The log group.
        log_group: String,
        /// The SDK error with its context.
        message: String,
        /// The SDK error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// Writing the output failed (a closed pipe, for example).
    #[error("cannot write the logs: {0}")]
    Write(#[from] std::io::Error),
}

impl LogsError {
    /// The output was closed (e.g. `provisioner logs | head`): not worth an error message.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, LogsError::Write(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

/// How [`fetch_logs`] reads; the command uses the defaults but for `json`.
#[derive(Debug, Clone)]
pub struct LogsOptions {
    /// Time between follow polls.
    pub poll_interval: Duration,
    /// Most FilterLogEvents pages read by one poll (or by the whole read without follow).
    pub max_pages: usize,
    /// Stop following after this many polls (`None`: until cancelled). For tests.
    pub max_polls: Option<usize>,
    /// The clock (tests fix it).
    pub now: fn() -> SystemTime,
    /// One JSON object per event and line (`--output json`) instead of text lines.
    pub json: bool,
}

impl Default for LogsOptions {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(2),
            max_pages: 100,
            max_polls: None,
            now: SystemTime::now,
            json: false,
        }
    }
}

/// Prints the logs of `service` from the last `since` to `out`, read as `opts` says; with
/// `follow`, keeps printing new ones until the future is dropped.
pub async fn fetch_logs(
    logs: &Client,
    log_group: &str,
    service: Service,
    since: Duration,
    follow: bool,
    out: &mut impl Write,
    opts: &LogsOptions,
) -> Result<(), LogsError> {
    let prefix = format!("{}/", service.stream_prefix());
    let mut from_ms =
        millis((opts.now)()).saturating_sub(i64::try_from(since.as_millis()).unwrap_or(i64::MAX));
    let mut printed: HashSet<String> = HashSet::new();
    let mut polls = 0usize;
    loop {
        let batch = read_window(logs, log_group, &prefix, from_ms, opts.max_pages).await?;
        if batch.truncated {
            tracing::warn!(
                log_group,
                pages = opts.max_pages,
                "more log events than {} pages; showing the first ones (narrow `--since`)",
                opts.max_pages
            );
        }
        let mut newest = None;
        for ev in &batch.events {
            newest = newest.max(Some(ev.timestamp));
            if !printed.insert(ev.id.clone()) {
                continue;
            }
            if opts.json {
                writeln!(out, "{}", ev.json_line(service))?;
            } else {
                writeln!(out, "{}", ev.line())?;
            }
        }
        out.flush()?;
        polls += 1;
        if !follow || opts.max_polls.is_some_and(|m| polls >= m) {
            return Ok(());
        }
        if let Some(newest) = newest {
            let lookback = i64::try_from(FOLLOW_LOOKBACK.as_millis()).unwrap_or(0);
            from_ms = from_ms.max(newest - lookback);
        }
        // Forget ids that the next window can no longer return, so memory stays bounded.
        let keep: HashSet<&str> = batch
            .events
            .iter()
            .filter(|e| e.timestamp >= from_ms)
            .map(|e| e.id.as_str())
            .collect();
        printed.retain(|id| keep.contains(id.as_str()));
        tokio::time::sleep(opts.poll_interval).await;
    }
}

/// One log event, as printed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Event {
    id: String,
    timestamp: i64,
    stream: String,
    message: String,
}

impl Event {
    fn at(&self) -> String {
        let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(self.timestamp).unwrap_or(0));
        crate::watch::rfc3339(at)
    }

    /// `api/api/<task-id>` → `<task-id>`: the prefix is the same for every line.
    fn task(&self) -> &str {
        self.stream.rsplit('/').next().unwrap_or(&self.stream)
    }

    fn line(&self) -> String {
        format!("{} {} {}", self.at(), self.task(), self.message.trim_end())
    }

    /// The event as one line of JSON (`docs/output.md`, `logs`).
    fn json_line(&self, service: Service) -> String {
        serde_json::json!({
            "at": self.at(),
            "service": service.stream_prefix(),
            "task": self.task(),
            "stream": self.stream,
            "message": self.message.trim_end(),
        })
        .to_string()
    }
}

struct Window {
    events: Vec<Event>,
    truncated: bool,
}

/// Every event from `from_ms` on, in time order, reading at most `max_pages` pages.
async fn read_window(
    logs: &Client,
    log_group: &str,
    prefix: &str,
    from_ms: i64,
    max_pages: usize,
) -> Result<Window, LogsError> {
    let mut events = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..max_pages.max(1) {
        let resp = logs
            .filter_log_events()
            .log_group_name(log_group)
            .log_stream_name_prefix(prefix)
            .start_time(from_ms)
            .set_next_token(token.clone())
            .send()
            .await;
        let out = match resp {
            Ok(out) => out,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                return Err(LogsError::NotDeployed {
                    log_group: log_group.to_owned(),
                });
            }
            Err(e) => {
                return Err(LogsError::Aws {
                    operation: "FilterLogEvents",
                    log_group: log_group.to_owned(),
                    message: aws_smithy_types::error::display::DisplayErrorContext(&e).to_string(),
                    source: Box::new(e),
                });
            }
        };
        // AWS filters by prefix already; moto ignores `logStreamNamePrefix`, so filter again.
        let ours = out
            .events()
            .iter()
            .filter(|e| e.log_stream_name().is_some_and(|s| s.starts_with(prefix)));
        events.extend(ours.map(|e| Event {
            id: e.event_id().unwrap_or_default().to_owned(),
            timestamp: e.timestamp().unwrap_or_default(),
            stream: e.log_stream_name().unwrap_or_default().to_owned(),
            message: e.message().unwrap_or_default().to_owned(),
        }));
        match out.next_token() {
            // A repeated token would loop forever: treat it as the end.
            Some(t) if !t.is_empty() && Some(t) != token.as_deref() => token = Some(t.to_owned()),
            _ => {
                events.sort_by(|a, b| (a.timestamp, &a.id).cmp(&(b.timestamp, &b.id)));
                return Ok(Window {
                    events,
                    truncated: false,
                });
            }
        }
    }
    events.sort_by(|a, b| (a.timestamp, &a.id).cmp(&(b.timestamp, &b.id)));
    Ok(Window {
        events,
        truncated: true,
    })
}

fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_time_task_and_message() {
        let e = Event {
            id: "1".into(),
            timestamp: 1_700_000_000_123,
            stream: "api/api/0123abcd".into(),
            message: "listening on 0.0.0.0:8080\n".into(),
        };
        assert_eq!(
            e.line(),
            "2023-11-14T22:13:20.123Z 0123abcd listening on 0.0.0.0:8080"
        );
    }

    #[test]
    fn prefixes_are_the_task_definitions_ones() {
        assert_eq!(Service::Api.stream_prefix(), "api");
        assert_eq!(Service::Redis.to_string(), "redis");
    }
}
