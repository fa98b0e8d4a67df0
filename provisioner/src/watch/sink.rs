//! Where the watcher's progress goes: a live view on a terminal, plain timestamped lines
//! otherwise.
//!
//! Both write to stderr by default (stdout carries the command's result and `--output json`).
//! [`stderr_sink`] picks one: the live view only when stderr is a terminal, `CI` is unset (or
//! `false`/`0`) and `TERM` is not `dumb`. The live view redraws a block of status lines (one per
//! service) with ANSI escapes and prints events above it; the plain sink prints one line per
//! poll and per event, each starting with an RFC 3339 UTC timestamp, so CI logs read in order
//! and can be grepped. Output errors (a closed stderr) are ignored: progress must never fail a
//! deployment.

use std::io::{IsTerminal, Write};
use std::time::{Duration, SystemTime};

use super::model::{ServiceState, WatchEvent, rfc3339};

/// Receives the watcher's events as they happen.
pub trait WatchSink {
    /// Called for every event, in order.
    fn event(&mut self, e: &WatchEvent);
}

/// A sink that drops everything (for `--quiet` or tests).
#[derive(Debug, Default)]
pub struct NullSink;

impl WatchSink for NullSink {
    fn event(&mut self, _e: &WatchEvent) {}
}

/// Whether progress should be drawn live: stderr is a terminal, not in CI, not a dumb terminal.
pub fn use_live_view() -> bool {
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
    std::io::stderr().is_terminal() && !ci && !dumb
}

/// The sink for stderr that fits the environment (see [`use_live_view`]).
pub fn stderr_sink() -> Box<dyn WatchSink + Send> {
    if use_live_view() {
        Box::new(LiveSink::new(Box::new(std::io::stderr())))
    } else {
        Box::new(PlainSink::new(Box::new(std::io::stderr())))
    }
}

fn elapsed_text(d: Duration) -> String {
    let s = d.as_secs();
    format!("{:02}:{:02}", s / 60, s % 60)
}

/// Plain lines, each prefixed with an RFC 3339 UTC timestamp (for CI and pipes).
pub struct PlainSink {
    out: Box<dyn Write + Send>,
    clock: fn() -> SystemTime,
}

impl PlainSink {
    /// Writes to `out` (usually stderr).
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        Self {
            out,
            clock: SystemTime::now,
        }
    }

    /// Same, with a fixed clock (tests).
    pub fn with_clock(out: Box<dyn Write + Send>, clock: fn() -> SystemTime) -> Self {
        Self { out, clock }
    }

    fn line(&mut self, text: &str) {
        let now = rfc3339((self.clock)());
        let _ = writeln!(self.out, "{now} {text}");
        let _ = self.out.flush();
    }
}

impl WatchSink for PlainSink {
    fn event(&mut self, e: &WatchEvent) {
        match e {
            WatchEvent::Started {
                goal,
                services,
                timeout,
            } => self.line(&format!(
                "waiting for {} to be {goal} (timeout {})",
                services.join(", "),
                humantime::format_duration(*timeout)
            )),
            WatchEvent::Progress { elapsed, services } => {
                let states: Vec<String> = services.iter().map(ServiceState::summary).collect();
                self.line(&format!(
                    "[{}] {}",
                    elapsed_text(*elapsed),
                    states.join(" | ")
                ));
            }
            WatchEvent::ServiceEvent(ev) => {
                let at = ev.at.map(rfc3339).unwrap_or_default();
                self.line(&format!("event {} {at} {}", ev.service, ev.message));
            }
            WatchEvent::TaskStopped(t) => self.line(&t.summary()),
            WatchEvent::Finished {
                elapsed,
                ok,
                summary,
            } => self.line(&format!(
                "{} after {}: {summary}",
                if *ok { "done" } else { "failed" },
                elapsed_text(*elapsed)
            )),
        }
    }
}

/// A live view for terminals: a redrawn block of one status line per service, with events
/// and stopped tasks printed above it as they come.
pub struct LiveSink {
    out: Box<dyn Write + Send>,
    /// Lines of the status block currently on screen (below the cursor's line start).
    drawn: usize,
    /// The last status block, redrawn after an event line.
    block: Vec<String>,
    spinner: usize,
}

const SPINNER: [char; 4] = ['|', '/', '-', '\\'];
const CLEAR_LINE: &str = "\x1b[2K";

impl LiveSink {
    /// Writes to `out` (a terminal).
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        Self {
            out,
            drawn: 0,
            block: Vec::new(),
            spinner: 0,
        }
    }

    /// Moves the cursor to the start of the block and clears it.
    fn erase(&mut self) {
        if self.drawn > 0 {
            let _ = write!(self.out, "\x1b[{}A\r\x1b[J", self.drawn);
        }
        self.drawn = 0;
    }

    fn draw(&mut self) {
        for line in &self.block {
            let _ = writeln!(self.out, "{CLEAR_LINE}{line}");
        }
        self.drawn = self.block.len();
        let _ = self.out.flush();
    }

    /// Prints a line above the block, keeping the block below it.
    fn above(&mut self, text: &str) {
        self.erase();
        let _ = writeln!(self.out, "{CLEAR_LINE}{text}");
        self.draw();
    }
}

impl WatchSink for LiveSink {
    fn event(&mut self, e: &WatchEvent) {
        match e {
            WatchEvent::Started {
                goal,
                services,
                timeout,
            } => self.above(&format!(
                "waiting for {} to be {goal} (timeout {})",
                services.join(", "),
                humantime::format_duration(*timeout)
            )),
            WatchEvent::Progress { elapsed, services } => {
                self.spinner = (self.spinner + 1) % SPINNER.len();
                let mut block = vec![format!(
                    "{} {} elapsed",
                    SPINNER[self.spinner],
                    elapsed_text(*elapsed)
                )];
                block.extend(services.iter().map(|s| format!("  {}", s.summary())));
                self.erase();
                self.block = block;
                self.draw();
            }
            WatchEvent::ServiceEvent(ev) => {
                let at = ev.at.map(rfc3339).unwrap_or_default();
                self.above(&format!("  {at} {}", ev.message));
            }
            WatchEvent::TaskStopped(t) => self.above(&format!("  ! {}", t.summary())),
            WatchEvent::Finished {
                elapsed,
                ok,
                summary,
            } => {
                self.erase();
                self.block.retain(|l| l.starts_with("  "));
                let mark = if *ok { "done" } else { "failed" };
                self.block.push(format!(
                    "{mark} after {}: {summary}",
                    elapsed_text(*elapsed)
                ));
                self.draw();
                // The block stays on screen as the final state; nothing is redrawn after this.
                self.drawn = 0;
                self.block.clear();
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::watch::model::{Goal, ServiceEventRecord};

    /// A `Write` whose bytes the test can read afterwards.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    fn fixed() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn progress() -> WatchEvent {
        let mut s = ServiceState::missing("api");
        s.status = "ACTIVE".into();
        s.desired = 1;
        s.pending = 1;
        WatchEvent::Progress {
            elapsed: Duration::from_secs(65),
            services: vec![s],
        }
    }

    #[test]
    fn plain_lines_start_with_an_rfc3339_timestamp() {
        let buf = Shared::default();
        let mut sink = PlainSink::with_clock(Box::new(buf.clone()), fixed);
        sink.event(&WatchEvent::Started {
            goal: Goal::Stable,
            services: vec!["redis".into(), "api".into()],
            timeout: Duration::from_secs(600),
        });
        sink.event(&progress());
        sink.event(&WatchEvent::ServiceEvent(ServiceEventRecord {
            service: "api".into(),
            id: "1".into(),
            at: Some(fixed()),
            message: "(service api) has started 1 tasks".into(),
        }));
        let text = buf.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines
                .iter()
                .all(|l| l.starts_with("2023-11-14T22:13:20.000Z ")),
            "{text}"
        );
        assert!(
            lines[0].contains("redis, api to be stable (timeout 10m)"),
            "{text}"
        );
        assert!(
            lines[1].contains("[01:05] api: 0/1 running, 1 pending"),
            "{text}"
        );
        assert!(!text.contains('\x1b'), "no escapes in plain output");
    }

    #[test]
    fn live_view_redraws_its_block_in_place() {
        let buf = Shared::default();
        let mut sink = LiveSink::new(Box::new(buf.clone()));
        sink.event(&progress());
        sink.event(&progress());
        let text = buf.text();
        // The second draw moves up over the two lines of the first.
        assert!(text.contains("\x1b[2A"), "{text:?}");
        sink.event(&WatchEvent::Finished {
            elapsed: Duration::from_secs(70),
            ok: true,
            summary: "stable".into(),
        });
        assert!(
            buf.text().ends_with("done after 01:10: stable\n"),
            "{:?}",
            buf.text()
        );
    }
}
