//! The process's log output: formatted lines gathered in a buffer in memory and written out by
//! a thread of its own every [`FLUSH_EVERY`], all of them with one system call.
//!
//! Why not `tracing_appender::non_blocking`, which this replaces: its worker takes each line
//! from a channel whose receive spins and calls `sched_yield` before it sleeps, so under load
//! it woke and yielded about once per request. That was 10-11% of the service's CPU while it
//! took creates (`perf record`, the log thread's share; 0.2% now), and each wake-up was a
//! system call of the request that logged. Here a request's line costs a lock and a copy:
//! `perf stat` over 4 s of creates from wrk counted 26.0 and 26.1 µs of the service's CPU per
//! create before, 22.9 and 22.7 after.
//! A line waits at most [`FLUSH_EVERY`] (each carries its own time). A buffer that fills up
//! is written out by the thread that filled it, under the lock: a stalled stderr slows the
//! requests that log instead of losing their lines, as the channel did when it was full.

use std::{
    io::{self, BufWriter, Write},
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        mpsc::{self, RecvTimeoutError},
    },
    thread,
    time::Duration,
};

use tracing_subscriber::fmt::MakeWriter;

/// How long a line waits in the buffer at most.
pub const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// Bytes of lines written with one system call at most.
pub const BUFFER_BYTES: usize = 64 * 1024;

/// What the log subscriber writes its lines into: each line is written under the buffer's
/// lock, so lines are never interleaved.
pub struct LogWriter<W: Write>(Arc<Mutex<BufWriter<W>>>);

/// One line's hold on the buffer.
pub struct LockedBuffer<'a, W: Write>(MutexGuard<'a, BufWriter<W>>);

impl<'a, W: Write + 'a> MakeWriter<'a> for LogWriter<W> {
    type Writer = LockedBuffer<'a, W>;

    fn make_writer(&'a self) -> Self::Writer {
        LockedBuffer(lock(&self.0))
    }
}

impl<W: Write> Write for LockedBuffer<'_, W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.write(bytes)
    }

    /// Nothing: the thread writes the buffer out (a flush per line would be a system call
    /// per line again).
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn lock<W: Write>(buffer: &Mutex<BufWriter<W>>) -> MutexGuard<'_, BufWriter<W>> {
    // A thread that panicked while holding the lock left whole lines or a partial one: the
    // lines after it are still worth writing.
    buffer.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Buffers lines for `out`, written every `every` by a thread named `timing-service-log`, or
/// when `capacity` bytes are waiting. Lines still buffered are written when the guard is
/// dropped: keep it to the end of `main`.
pub fn buffered<W: Write + Send + 'static>(
    out: W,
    every: Duration,
    capacity: usize,
) -> io::Result<(LogWriter<W>, FlushGuard)> {
    let writer = Arc::new(Mutex::new(BufWriter::with_capacity(capacity, out)));
    let (stop, stopped) = mpsc::channel::<()>();
    let flushed = Arc::clone(&writer);
    let thread = thread::Builder::new()
        .name("timing-service-log".into())
        .spawn(move || {
            // Ends when the guard drops its sender (or sends, which it does not).
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                flush(&flushed);
            }
            flush(&flushed);
        })?;
    Ok((
        LogWriter(writer),
        FlushGuard {
            stop: Some(stop),
            thread: Some(thread),
        },
    ))
}

/// Writes what is buffered. A log line that cannot be written has nowhere to be reported, so
/// a failed write is dropped (the next flush tries with the lines after it).
fn flush<W: Write>(writer: &Mutex<BufWriter<W>>) {
    let _ = lock(writer).flush();
}

/// Stops the log thread and writes the lines still buffered when dropped.
pub struct FlushGuard {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    /// An output that records what reaches it and in how many writes.
    #[derive(Clone, Default)]
    struct Recorded(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Recorded {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            let mut recorded = self.0.lock().unwrap();
            recorded.0.extend_from_slice(bytes);
            recorded.1 += 1;
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Recorded {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().0.clone()).unwrap()
        }
        fn writes(&self) -> usize {
            self.0.lock().unwrap().1
        }
    }

    fn log(writer: &LogWriter<Recorded>, line: &str) {
        let mut line_writer = writer.make_writer();
        line_writer.write_all(line.as_bytes()).unwrap();
        line_writer.flush().unwrap();
    }

    fn lines(from: usize, to: usize) -> String {
        (from..to).map(|n| format!("line {n}\n")).collect()
    }

    #[test]
    fn lines_are_written_together_by_the_thread_within_the_interval() {
        let out = Recorded::default();
        let (writer, _guard) =
            buffered(out.clone(), Duration::from_millis(20), BUFFER_BYTES).unwrap();
        let started = Instant::now();
        for n in 0..100 {
            log(&writer, &format!("line {n}\n"));
        }
        while out.text().is_empty() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "nothing was written"
            );
            thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(out.text(), lines(0, 100));
        assert_eq!(out.writes(), 1, "one write for all the lines waiting");
    }

    #[test]
    fn dropping_the_guard_writes_what_is_buffered() {
        let out = Recorded::default();
        let (writer, guard) =
            buffered(out.clone(), Duration::from_secs(3600), BUFFER_BYTES).unwrap();
        log(&writer, "first\n");
        log(&writer, "second\n");
        assert_eq!(out.text(), "", "lines wait for the interval");
        drop(guard);
        assert_eq!(out.text(), "first\nsecond\n");
    }

    #[test]
    fn a_full_buffer_is_written_by_the_line_that_fills_it() {
        let out = Recorded::default();
        let (writer, _guard) = buffered(out.clone(), Duration::from_secs(3600), 64).unwrap();
        let text = lines(0, 20);
        for line in text.split_inclusive('\n') {
            log(&writer, line);
        }
        let written = out.text();
        assert!(written.len() > 64 - 8, "written: {written:?}");
        assert!(text.starts_with(&written), "whole lines, in order");
        assert!(out.writes() < 20, "lines gathered, not written one by one");
    }

    #[test]
    fn a_subscriber_s_events_reach_the_output_whole_and_together() {
        let out = Recorded::default();
        let (writer, guard) =
            buffered(out.clone(), Duration::from_secs(3600), BUFFER_BYTES).unwrap();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(writer)
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            for n in 0..50 {
                tracing::info!(n, "request");
            }
        });
        drop(guard);
        let text = out.text();
        assert_eq!(text.lines().count(), 50, "{text}");
        assert!(text.lines().all(|line| line.contains("request")), "{text}");
        assert_eq!(out.writes(), 1, "no write per line");
    }
}
