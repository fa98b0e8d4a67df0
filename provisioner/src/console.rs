//! Where progress goes, for every command: on a terminal one `indicatif` display on stderr
//! (spinners and bars redrawn in place, lines printed above them); elsewhere plain lines, each
//! starting with an RFC 3339 UTC timestamp, so CI logs read in order and can be grepped.
//!
//! The resource steps of `plan`/`up`/`down` ([`Steps`]), the image upload bars and the
//! deployment watcher's live view all draw into the one [`MultiProgress`] of [`display`], and
//! log lines are written through [`LogWriter`], which hides the display while it writes:
//! nothing writes to the terminal behind indicatif's back, and indicatif cuts every line to the
//! terminal's width (`{wide_msg}`), so a long line never breaks the redraw. Output errors (a
//! closed stderr) are ignored: progress must never fail a command.

use std::io::{IsTerminal, Write};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often spinners turn.
pub const TICK: Duration = Duration::from_millis(120);

/// Whether progress is drawn live: stderr is a terminal, not in CI (`CI` unset, empty,
/// `false` or `0`), and `TERM` is not `dumb`.
pub fn live() -> bool {
    static LIVE: OnceLock<bool> = OnceLock::new();
    *LIVE.get_or_init(|| {
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
        let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
        std::io::stderr().is_terminal() && !ci && !dumb
    })
}

/// The process's one live display on stderr (hidden when not [`live`]).
pub fn display() -> &'static MultiProgress {
    static DISPLAY: OnceLock<MultiProgress> = OnceLock::new();
    DISPLAY.get_or_init(|| {
        if live() {
            MultiProgress::with_draw_target(ProgressDrawTarget::stderr())
        } else {
            MultiProgress::with_draw_target(ProgressDrawTarget::hidden())
        }
    })
}

/// `text` after an RFC 3339 UTC timestamp of `at` (a plain progress line).
pub fn timestamped(at: SystemTime, text: &str) -> String {
    format!("{} {text}", humantime::format_rfc3339_millis(at))
}

/// One progress line: above the live display on a terminal, timestamped otherwise.
pub fn line(text: &str) {
    if live() {
        if display().println(text).is_err() {
            eprintln!("{text}");
        }
    } else {
        eprintln!("{}", timestamped(SystemTime::now(), text));
    }
}

/// A spinner with a message cut to the terminal's width, in `multi`.
pub fn spinner(multi: &MultiProgress) -> ProgressBar {
    let bar = multi.add(ProgressBar::new_spinner());
    if let Ok(style) = ProgressStyle::with_template("{spinner} {wide_msg}") {
        bar.set_style(style);
    }
    bar
}

/// The resource steps of one run, shown on a terminal as one spinner naming the resource being
/// read or changed; the command's report then lists each resource once. Without a terminal
/// every change is a log line (as the report may not be read until the end).
#[derive(Debug)]
pub struct Steps {
    bar: Option<ProgressBar>,
}

impl Steps {
    /// A spinner on a terminal, nothing otherwise.
    pub fn new() -> Self {
        let bar = live().then(|| {
            let bar = spinner(display());
            bar.enable_steady_tick(TICK);
            bar
        });
        Steps { bar }
    }

    /// Shows the resource now handled; false when there is no spinner (log it instead).
    pub fn show(&self, text: &str) -> bool {
        if let Some(bar) = &self.bar {
            bar.set_message(text.to_owned());
        }
        self.bar.is_some()
    }

    /// Removes the spinner (before the watcher's view or the report).
    pub fn done(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Default for Steps {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Steps {
    fn drop(&mut self) {
        self.done();
    }
}

/// A `tracing` writer for stderr that hides the live display while a log line is written, so
/// log lines appear above it instead of through it.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogWriter;

/// One log event's bytes, written to stderr when dropped.
#[derive(Debug, Default)]
pub struct LogLine(Vec<u8>);

impl Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        let bytes = std::mem::take(&mut self.0);
        let write = move || {
            let _ = std::io::stderr().write_all(&bytes);
        };
        if live() {
            display().suspend(write);
        } else {
            write();
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogLine;

    fn make_writer(&'a self) -> Self::Writer {
        LogLine::default()
    }
}
