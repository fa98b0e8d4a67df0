//! Where the watcher's progress goes: a live view on a terminal, plain timestamped lines
//! otherwise.
//!
//! Both write to stderr by default (stdout carries the command's result and `--output json`).
//! [`stderr_sink`] picks one with [`crate::console::live`]. The live view is a few `indicatif`
//! spinners in the process's one display ([`crate::console::display`]): a header with the
//! elapsed time and one line per service, redrawn in place and cut to the terminal's width, with
//! events printed above them. The plain sink prints one line per poll and per event, each
//! starting with an RFC 3339 UTC timestamp, so CI logs read in order and can be grepped. Output
//! errors (a closed stderr) are ignored: progress must never fail a deployment.

use std::fmt;
use std::io::Write;
use std::time::{Duration, SystemTime};

use indicatif::{MultiProgress, ProgressBar};

use super::model::{ServiceState, WaitStart, WatchEvent, rfc3339};
use crate::console;

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

/// The sink for stderr that fits the environment (see [`console::live`]).
pub fn stderr_sink() -> Box<dyn WatchSink + Send> {
    if console::live() {
        Box::new(LiveSink::new(console::display().clone()))
    } else {
        Box::new(PlainSink::new(Box::new(std::io::stderr())))
    }
}

fn elapsed_text(d: Duration) -> String {
    let s = d.as_secs();
    format!("{:02}:{:02}", s / 60, s % 60)
}

/// The line both sinks print when the wait begins.
impl fmt::Display for WaitStart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "waiting for {} to be {} (timeout {})",
            self.services.join(", "),
            self.goal,
            super::error::human(&self.timeout)
        )
    }
}

/// The line both sinks end with.
fn finished_text(elapsed: Duration, ok: bool, summary: &str) -> String {
    let mark = if ok { "done" } else { "failed" };
    format!("{mark} after {}: {summary}", elapsed_text(elapsed))
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
        let _ = writeln!(self.out, "{}", console::timestamped((self.clock)(), text));
        let _ = self.out.flush();
    }
}

impl WatchSink for PlainSink {
    fn event(&mut self, e: &WatchEvent) {
        match e {
            WatchEvent::Started(start) => self.line(&start.to_string()),
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
            } => self.line(&finished_text(*elapsed, *ok, summary)),
        }
    }
}

/// A live view for terminals: a header spinner with the elapsed time and one line per
/// service, redrawn in place by indicatif, with events and stopped tasks printed above them.
pub struct LiveSink {
    multi: MultiProgress,
    header: Option<ProgressBar>,
    services: Vec<ProgressBar>,
}

impl LiveSink {
    /// Draws into `multi` (the process's display, or a test terminal).
    pub fn new(multi: MultiProgress) -> Self {
        Self {
            multi,
            header: None,
            services: Vec::new(),
        }
    }

    /// Prints a line above the spinners.
    fn above(&self, text: &str) {
        let _ = self.multi.println(text);
    }

    fn draw(&mut self, elapsed: Duration, services: &[ServiceState]) {
        let header = self
            .header
            .get_or_insert_with(|| console::spinner(&self.multi));
        header.set_message(format!("{} elapsed", elapsed_text(elapsed)));
        header.tick();
        while self.services.len() < services.len() {
            let line = console::spinner(&self.multi);
            line.set_style(
                indicatif::ProgressStyle::with_template("  {wide_msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            self.services.push(line);
        }
        for (line, state) in self.services.iter().zip(services) {
            line.set_message(state.summary());
        }
    }
}

impl WatchSink for LiveSink {
    fn event(&mut self, e: &WatchEvent) {
        match e {
            WatchEvent::Started(start) => self.above(&start.to_string()),
            WatchEvent::Progress { elapsed, services } => self.draw(*elapsed, services),
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
                // The service lines stay on screen as the final state, the header gives way to
                // the outcome.
                if let Some(header) = self.header.take() {
                    header.finish_and_clear();
                }
                for line in self.services.drain(..) {
                    line.finish();
                }
                let outcome = console::spinner(&self.multi);
                outcome.finish_with_message(finished_text(*elapsed, *ok, summary));
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
        sink.event(&WatchEvent::Started(WaitStart {
            goal: Goal::Stable,
            services: vec!["redis".into(), "api".into()],
            timeout: Duration::from_secs(600),
        }));
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

    /// The columns a line takes on a terminal (escape sequences take none).
    fn columns(line: &str) -> usize {
        let mut count = 0;
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                // Skip a CSI sequence up to its final byte.
                chars.next();
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            } else {
                count += 1;
            }
        }
        count
    }

    /// A terminal `width` columns wide that keeps every line indicatif writes.
    #[derive(Clone, Debug, Default)]
    struct Term {
        width: u16,
        lines: Arc<Mutex<Vec<String>>>,
    }

    impl indicatif::TermLike for Term {
        fn width(&self) -> u16 {
            self.width
        }
        fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> std::io::Result<()> {
            self.lines.lock().unwrap().push(s.to_owned());
            Ok(())
        }
        fn write_str(&self, s: &str) -> std::io::Result<()> {
            self.write_line(s)
        }
        fn clear_line(&self) -> std::io::Result<()> {
            Ok(())
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A service line far wider than the terminal is cut to its width, so the block keeps its
    /// height and the redraw stays in place; the final state and the outcome stay on screen.
    #[test]
    fn live_view_cuts_long_lines_to_the_terminal_width() {
        let term = Term {
            width: 40,
            ..Term::default()
        };
        let multi = MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::term_like(
            Box::new(term.clone()),
        ));
        let mut sink = LiveSink::new(multi);
        let mut long = ServiceState::missing("api");
        long.status = "DRAINING".into();
        long.rollout_state = Some("IN_PROGRESS ".repeat(20));
        sink.event(&WatchEvent::Progress {
            elapsed: Duration::from_secs(5),
            services: vec![long],
        });
        sink.event(&WatchEvent::ServiceEvent(ServiceEventRecord {
            service: "api".into(),
            id: "1".into(),
            at: Some(fixed()),
            message: "(service api) has started 1 tasks".into(),
        }));
        sink.event(&progress());
        sink.event(&WatchEvent::Finished {
            elapsed: Duration::from_secs(70),
            ok: true,
            summary: "stable".into(),
        });
        let lines = term.lines.lock().unwrap().clone();
        let drawn: Vec<&String> = lines.iter().filter(|l| l.contains("api:")).collect();
        assert!(!drawn.is_empty(), "{lines:#?}");
        for line in &drawn {
            assert!(
                columns(line) <= 40,
                "a service line wider than the terminal: {line:?}"
            );
        }
        assert!(
            lines.iter().any(|l| l.contains("done after 01:10: stable")),
            "{lines:#?}"
        );
        assert!(
            lines.iter().any(|l| l.contains("has started 1 tasks")),
            "{lines:#?}"
        );
    }
}
