//! The HTTP/1.1 server loop: accepting connections, the limits that keep slow or idle clients
//! from holding the task's file descriptors, and graceful shutdown.
//!
//! `axum::serve` sets no timeout on reading a request head and keeps idle keep-alive
//! connections open for ever, so a few thousand clients that send half a request (or nothing)
//! would hold a file descriptor each until the task runs out. This loop serves the same
//! [`Router`] with hyper directly and bounds both:
//!
//! - **Header read timeout** ([`ServeOptions::header_read_timeout`], `HEADER_READ_TIMEOUT`,
//!   default 10 s): a request head (request line and headers) must arrive in full within it,
//!   or the connection is closed (hyper answers `408` first when it can). Hyper starts this
//!   timer whenever it waits for a request head, so it is also the **idle timeout** of a
//!   keep-alive connection: one that carries no new request within it is closed.
//! - **Connection limit** ([`ServeOptions::max_connections`], `MAX_CONNECTIONS`, default
//!   10,000): at the limit the loop stops accepting until a connection ends (new ones wait in
//!   the kernel's listen backlog), so open connections, and their file descriptors, never
//!   exceed it (the Fargate `nofile` limit is 65,535). With the header timeout, each slow
//!   client frees its slot within that time. The default leaves room for the thousands of
//!   long-polling readers one task is meant to hold.
//!
//! Bodies are bounded elsewhere: the whole request, upload included, by the request timeout
//! of `crate::layers` (a stalled upload gets `408`), and the size by `crate::error::BODY_LIMIT`.
//!
//! # Shutdown
//!
//! When `shutdown` completes (SIGTERM from ECS, or Ctrl-C: [`shutdown_signal`], after the
//! `SHUTDOWN_DRAIN` period of [`after_drain`] during which the loop goes on accepting) it stops
//! accepting and closes the listener; then every connection is told to finish: an idle
//! keep-alive connection closes at once, one with a request in flight closes after answering
//! it. The server returns when all have closed, or after [`DRAIN_TIMEOUT`].

use std::{future::Future, io, sync::Arc, time::Duration};

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
    service::TowerToHyperService,
};
use tokio::{net::TcpListener, sync::Semaphore};

/// How long in-flight requests may take to finish once the service stops accepting (ECS waits
/// `stopTimeout` after SIGTERM before SIGKILL: the task definition leaves room for the drain
/// period, see [`after_drain`], and this).
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

/// Default of [`ServeOptions::header_read_timeout`].
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Default of [`ServeOptions::max_connections`].
pub const MAX_CONNECTIONS: usize = 10_000;

/// How long the loop waits before accepting again after an accept error that is not the
/// client's (such as `EMFILE`: out of file descriptors), so it does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// Limits of the server loop (see the module documentation).
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// Time a request head may take to arrive in full; also the keep-alive idle timeout.
    pub header_read_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            header_read_timeout: HEADER_READ_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
        }
    }
}

/// [`serve_with`] with the default [`ServeOptions`].
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve_with(listener, app, shutdown, ServeOptions::default()).await
}

/// Serves `app` on `listener` until `shutdown` completes, then stops accepting and lets
/// in-flight requests finish (at most [`DRAIN_TIMEOUT`]).
pub async fn serve_with(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    options: ServeOptions,
) -> io::Result<()> {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout);
    let slots = Arc::new(Semaphore::new(options.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);

    // Accept until the shutdown signal: one task per connection, each holding a slot.
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot,
            () = &mut shutdown => break,
        };
        let Ok(slot) = slot else { break }; // the semaphore is never closed
        let stream = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match stream {
            Ok((stream, _peer)) => stream,
            Err(err) if is_connection_error(&err) => continue,
            Err(err) => {
                tracing::error!(%err, "cannot accept a connection; pausing");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                // Header timeouts, resets, malformed heads: the client's doing, not an error
                // of the service.
                tracing::debug!(%err, "connection ended");
            }
            drop(slot);
        });
    }

    // Drain: no new connections; idle ones close now, busy ones after their answer.
    drop(listener);
    tracing::info!("shutting down: no new connections, finishing in-flight requests");
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "in-flight requests not finished within {} s; exiting",
            DRAIN_TIMEOUT.as_secs()
        );
    }
    Ok(())
}

/// Accept errors about one client's connection (it went away before being accepted).
fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Completes `drain` after `signal` does. Passed to [`serve`] as its shutdown future, the
/// service goes on accepting and answering during the drain: a stopping task is removed from
/// Cloud Map first, but API Gateway may still route to it from an answer it read just before.
pub async fn after_drain(signal: impl Future<Output = ()>, drain: Duration) {
    signal.await;
    if !drain.is_zero() {
        tracing::info!(
            "draining: still answering for {} s before shutting down",
            drain.as_secs_f64()
        );
        tokio::time::sleep(drain).await;
    }
}

/// Completes on SIGTERM (how ECS stops a task) or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(%err, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
