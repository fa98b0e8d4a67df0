//! Progress of builds and uploads: a bar per blob on a terminal, plain lines elsewhere.
//!
//! The registry client reports through the [`Progress`] trait so the library never decides
//! where output goes. [`ConsoleProgress::auto`] draws indicatif bars (bytes per layer) on
//! stderr when it is a terminal and `CI` is unset, and prints plain lines (start, every 25 %,
//! done) otherwise, so CI logs stay readable. [`SilentProgress`] is for tests and `--quiet`.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How one blob ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobOutcome {
    /// The registry already had it: nothing was sent.
    Skipped,
    /// It was uploaded; `sent` bytes went over the wire in this run.
    Uploaded {
        /// Bytes sent in this run (less than the size when an earlier upload was resumed).
        sent: u64,
    },
    /// It was downloaded (the source side of a mirror).
    Pulled {
        /// Bytes received.
        bytes: u64,
    },
}

/// Receives progress events. Implementations must be cheap: they are called per chunk.
pub trait Progress: Send + Sync {
    /// A free-form step ("building timing-service", "pushing manifest").
    fn step(&self, message: &str);
    /// A blob upload (or download, when mirroring) starts; `done` bytes are already there.
    fn blob_started(&self, label: &str, digest: &str, total: u64, done: u64);
    /// `done` of the blob's bytes are now at the registry.
    fn blob_advanced(&self, digest: &str, done: u64);
    /// The blob is finished (or was found in the registry: then no `blob_started` came first).
    fn blob_finished(&self, label: &str, digest: &str, outcome: BlobOutcome);
}

/// Prints nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct SilentProgress;

impl Progress for SilentProgress {
    fn step(&self, _: &str) {}
    fn blob_started(&self, _: &str, _: &str, _: u64, _: u64) {}
    fn blob_advanced(&self, _: &str, _: u64) {}
    fn blob_finished(&self, _: &str, _: &str, _: BlobOutcome) {}
}

/// Progress on stderr: bars on a terminal, plain lines in CI or when piped.
#[derive(Debug)]
pub struct ConsoleProgress {
    mode: Mode,
}

#[derive(Debug)]
enum Mode {
    Bars {
        multi: MultiProgress,
        bars: Mutex<HashMap<String, ProgressBar>>,
    },
    Lines {
        /// Per digest: (label, total, last quarter printed).
        blobs: Mutex<HashMap<String, (String, u64, u64)>>,
    },
}

impl ConsoleProgress {
    /// Bars when stderr is a terminal and `CI` is not set; plain lines otherwise.
    pub fn auto() -> Self {
        let tty = std::io::stderr().is_terminal() && std::env::var_os("CI").is_none();
        if tty { Self::bars() } else { Self::lines() }
    }

    /// Always plain lines.
    pub fn lines() -> Self {
        ConsoleProgress {
            mode: Mode::Lines {
                blobs: Mutex::new(HashMap::new()),
            },
        }
    }

    /// Always bars (on stderr).
    pub fn bars() -> Self {
        ConsoleProgress {
            mode: Mode::Bars {
                multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                bars: Mutex::new(HashMap::new()),
            },
        }
    }
}

/// `sha256:0123456789ab` — enough of a digest to tell blobs apart in output.
pub fn short_digest(digest: &str) -> &str {
    let end = digest.len().min("sha256:".len() + 12);
    &digest[..end]
}

/// Bytes in human units (`4.2 MiB`).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

impl Progress for ConsoleProgress {
    fn step(&self, message: &str) {
        match &self.mode {
            Mode::Bars { multi, .. } => {
                // println on MultiProgress keeps the line above the bars.
                if multi.println(message).is_err() {
                    eprintln!("{message}");
                }
            }
            Mode::Lines { .. } => eprintln!("{message}"),
        }
    }

    fn blob_started(&self, label: &str, digest: &str, total: u64, done: u64) {
        match &self.mode {
            Mode::Bars { multi, bars } => {
                let bar = multi.add(ProgressBar::new(total));
                let style = ProgressStyle::with_template(
                    "{prefix:>8} {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .map(|s| s.progress_chars("=> "))
                .unwrap_or_else(|_| ProgressStyle::default_bar());
                bar.set_style(style);
                bar.set_prefix(label.to_string());
                bar.set_message(short_digest(digest).to_string());
                bar.set_position(done);
                if let Ok(mut bars) = bars.lock() {
                    bars.insert(digest.to_string(), bar);
                }
            }
            Mode::Lines { blobs } => {
                let resumed = if done > 0 {
                    format!(" (resuming at {})", human_bytes(done))
                } else {
                    String::new()
                };
                eprintln!(
                    "{label} {}: transferring {}{resumed}",
                    short_digest(digest),
                    human_bytes(total)
                );
                if let Ok(mut blobs) = blobs.lock() {
                    blobs.insert(digest.to_string(), (label.to_string(), total, 0));
                }
            }
        }
    }

    fn blob_advanced(&self, digest: &str, done: u64) {
        match &self.mode {
            Mode::Bars { bars, .. } => {
                if let Some(bar) = bars.lock().ok().and_then(|b| b.get(digest).cloned()) {
                    bar.set_position(done);
                }
            }
            Mode::Lines { blobs } => {
                let Ok(mut blobs) = blobs.lock() else { return };
                if let Some((label, total, printed)) = blobs.get_mut(digest) {
                    let quarter = done.saturating_mul(4) / (*total).max(1);
                    if quarter > *printed && quarter < 4 {
                        *printed = quarter;
                        eprintln!(
                            "{label} {}: {} of {} ({}%)",
                            short_digest(digest),
                            human_bytes(done),
                            human_bytes(*total),
                            quarter * 25
                        );
                    }
                }
            }
        }
    }

    fn blob_finished(&self, label: &str, digest: &str, outcome: BlobOutcome) {
        match &self.mode {
            Mode::Bars { multi, bars } => {
                let bar = bars.lock().ok().and_then(|mut b| b.remove(digest));
                match (bar, outcome) {
                    (Some(bar), BlobOutcome::Uploaded { sent }) => {
                        bar.finish_with_message(format!(
                            "{} pushed ({} sent)",
                            short_digest(digest),
                            human_bytes(sent)
                        ));
                    }
                    (Some(bar), BlobOutcome::Skipped) => {
                        bar.finish_with_message(format!("{} exists", short_digest(digest)));
                    }
                    (None, BlobOutcome::Skipped) => {
                        let line =
                            format!("{label} {}: already in the registry", short_digest(digest));
                        if multi.println(&line).is_err() {
                            eprintln!("{line}");
                        }
                    }
                    (Some(bar), BlobOutcome::Pulled { bytes }) => {
                        bar.finish_with_message(format!(
                            "{} pulled ({})",
                            short_digest(digest),
                            human_bytes(bytes)
                        ));
                    }
                    (None, _) => {}
                }
            }
            Mode::Lines { blobs } => {
                if let Ok(mut blobs) = blobs.lock() {
                    blobs.remove(digest);
                }
                match outcome {
                    BlobOutcome::Skipped => {
                        eprintln!("{label} {}: already in the registry", short_digest(digest));
                    }
                    BlobOutcome::Uploaded { sent } => eprintln!(
                        "{label} {}: pushed ({} sent)",
                        short_digest(digest),
                        human_bytes(sent)
                    ),
                    BlobOutcome::Pulled { bytes } => eprintln!(
                        "{label} {}: pulled ({})",
                        short_digest(digest),
                        human_bytes(bytes)
                    ),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_sizes_and_digests() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(5 * 1024 * 1024 + 512 * 1024), "5.5 MiB");
        assert_eq!(
            short_digest("sha256:0123456789abcdef0123"),
            "sha256:0123456789ab"
        );
        assert_eq!(short_digest("short"), "short");
    }
}
