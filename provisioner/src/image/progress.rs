//! Progress of builds and transfers: a spinner per blob on a terminal, plain timestamped
//! lines elsewhere.
//!
//! The registry client reports through the [`Progress`] trait so the library never decides
//! where output goes. [`ConsoleProgress::auto`] draws into the process's one live display
//! ([`crate::console`]) when stderr is a terminal and prints timestamped lines otherwise, so CI
//! logs stay readable. [`SilentProgress`] is for tests and `--quiet`.

use std::collections::HashMap;
use std::sync::Mutex;

use indicatif::ProgressBar;

use crate::console;

/// How one blob ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobOutcome {
    /// The registry already had it: nothing was sent.
    Skipped,
    /// It was uploaded; `sent` bytes went over the wire in this run.
    Uploaded {
        /// Bytes of the accepted upload.
        sent: u64,
    },
    /// It was downloaded (the source side of a mirror).
    Pulled {
        /// Bytes received.
        bytes: u64,
    },
}

/// Receives progress events. Implementations must be cheap.
pub trait Progress: Send + Sync {
    /// A free-form step ("building timing-service", "pushing manifest").
    fn step(&self, message: &str);
    /// A blob upload (or download, when mirroring) of `total` bytes starts.
    fn blob_started(&self, label: &str, digest: &str, total: u64);
    /// The blob is finished (or was found in the registry: then no `blob_started` came first).
    fn blob_finished(&self, label: &str, digest: &str, outcome: BlobOutcome);
}

/// Prints nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct SilentProgress;

impl Progress for SilentProgress {
    fn step(&self, _: &str) {}
    fn blob_started(&self, _: &str, _: &str, _: u64) {}
    fn blob_finished(&self, _: &str, _: &str, _: BlobOutcome) {}
}

/// Progress on stderr through [`crate::console`]: a spinner per blob in its live display on a
/// terminal, its timestamped lines in CI or when piped.
#[derive(Debug)]
pub struct ConsoleProgress {
    /// Whether blobs get spinners (else plain lines).
    live: bool,
    /// The spinner of each blob in flight, by digest.
    spinners: Mutex<HashMap<String, ProgressBar>>,
}

impl ConsoleProgress {
    /// Spinners when stderr is a terminal (see [`console::live`]); plain lines otherwise.
    pub fn auto() -> Self {
        ConsoleProgress {
            live: console::live(),
            spinners: Mutex::default(),
        }
    }

    /// Always plain lines.
    pub fn lines() -> Self {
        ConsoleProgress {
            live: false,
            spinners: Mutex::default(),
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
        console::line(message);
    }

    fn blob_started(&self, label: &str, digest: &str, total: u64) {
        let text = format!(
            "{label} {}: transferring {}",
            short_digest(digest),
            human_bytes(total)
        );
        if self.live {
            let spinner = console::spinner(console::display());
            spinner.set_message(text);
            spinner.enable_steady_tick(console::TICK);
            if let Ok(mut spinners) = self.spinners.lock() {
                spinners.insert(digest.to_string(), spinner);
            }
        } else {
            console::line(&text);
        }
    }

    fn blob_finished(&self, label: &str, digest: &str, outcome: BlobOutcome) {
        let what = match outcome {
            BlobOutcome::Skipped => "already in the registry".to_string(),
            BlobOutcome::Uploaded { sent } => format!("pushed ({} sent)", human_bytes(sent)),
            BlobOutcome::Pulled { bytes } => format!("pulled ({})", human_bytes(bytes)),
        };
        let text = format!("{label} {}: {what}", short_digest(digest));
        let spinner = self.spinners.lock().ok().and_then(|mut s| s.remove(digest));
        match spinner {
            Some(spinner) => spinner.finish_with_message(text),
            None => console::line(&text),
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
