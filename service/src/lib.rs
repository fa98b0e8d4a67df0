//! The race-timing HTTP service: competitors, times and rankings in Redis, behind the legacy
//! proof of concept's routes and a versioned JSON API under `/api/v1`.
//!
//! # Layout
//!
//! - `config`: command line and environment variables;
//! - `race`: the race definition (checkpoints, fields, genders, categories) and its files;
//! - `model`: bibs, times of day, elapsed times, statuses;
//! - `store`: the only module that talks to Redis; documents the key schema;
//! - `routes`: one module per route group;
//! - `live`: ETags, 304s and long polls woken through Redis pub/sub;
//! - `error`: the error type every route answers with, and the extractors that produce it;
//! - `json`: what a JSON request body is (media type, unique keys);
//! - `auth`, `layers`: bearer-token check, request log line and time bound;
//! - `healthcheck`: the `healthcheck` subcommand used as the container health check.
//!
//! `main.rs` only reads the configuration and calls [`serve`]; tests call [`app`] / [`serve`]
//! with their own listener, Redis and shutdown future.

pub mod auth;
pub mod config;
pub mod error;
pub mod healthcheck;
pub mod json;
pub mod layers;
pub mod live;
pub mod model;
pub mod race;
pub mod routes;
pub mod store;

use std::{future::Future, io, sync::Arc, time::Duration};

use axum::{
    Router,
    extract::{DefaultBodyLimit, Request},
    middleware,
};
use tokio::net::TcpListener;

use crate::{error::ApiError, live::Live, race::Race, store::Store};

/// State shared by every handler; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The Redis store.
    pub store: Store,
    /// The race definition.
    pub race: Arc<Race>,
    /// The bearer token writes need, if any.
    pub token: Option<Arc<str>>,
    /// The long polls of this process and their change subscription.
    pub live: Live,
}

impl AppState {
    /// Builds the state; an empty token counts as none. Inside a tokio runtime, it starts the
    /// process's subscription to Redis's change announcements (see `live`).
    pub fn new(
        redis_url: &str,
        race: Race,
        token: Option<String>,
    ) -> Result<Self, redis::RedisError> {
        let race = Arc::new(race);
        let store = Store::new(redis_url, race.clone())?;
        let live = Live::new(&race, live::DEFAULT_MAX_WAITERS);
        live.start(store.clone());
        Ok(Self {
            store,
            race,
            token: token.filter(|t| !t.is_empty()).map(Arc::from),
            live,
        })
    }

    /// Sets the limit of long polls waiting at once in this process.
    pub fn with_max_waiters(self, max_waiters: usize) -> Self {
        self.live.set_max_waiters(max_waiters);
        self
    }
}

async fn no_route(request: Request) -> ApiError {
    ApiError::NotFound(format!(
        "no route for {} {}",
        request.method(),
        request.uri().path()
    ))
}

async fn wrong_method(request: Request) -> ApiError {
    ApiError::MethodNotAllowed(format!(
        "{} is not allowed on {}",
        request.method(),
        request.uri().path()
    ))
}

/// The whole application: routes, body limit, auth, request log and time bound.
pub fn app(state: AppState) -> Router {
    routes::router()
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(error::BODY_LIMIT))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .layer(middleware::from_fn(layers::log_and_bound))
        .with_state(state)
}

/// How long in-flight requests may take to finish once the service stops accepting (ECS waits
/// `stopTimeout` after SIGTERM before SIGKILL: the task definition leaves room for the drain
/// period, see [`after_drain`], and this).
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

/// Serves `app` on `listener` until `shutdown` completes, then stops accepting and lets
/// in-flight requests finish (at most [`DRAIN_TIMEOUT`]).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.await;
        tracing::info!("shutting down: no new connections, finishing in-flight requests");
        let _ = signalled_tx.send(());
    });
    let drain_bound = async move {
        if signalled_rx.await.is_ok() {
            tokio::time::sleep(DRAIN_TIMEOUT).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        result = server => result,
        () = drain_bound => {
            tracing::warn!("in-flight requests not finished within {} s; exiting", DRAIN_TIMEOUT.as_secs());
            Ok(())
        }
    }
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
