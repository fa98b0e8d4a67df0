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
//! - `auth`, `layers`: bearer-token check, request log line, time bound, unread bodies;
//! - `server`: the HTTP/1.1 accept loop, its timeouts and connection limit, graceful shutdown;
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
pub mod server;
pub mod store;

pub use server::{DRAIN_TIMEOUT, ServeOptions, after_drain, serve, serve_with, shutdown_signal};

use std::{sync::Arc, time::Duration};

use axum::{
    Router,
    extract::{DefaultBodyLimit, Request},
    middleware,
};

use crate::{error::ApiError, live::Live, race::Race, store::Store};

/// State shared by every handler; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The Redis store.
    pub store: Store,
    /// The race definition.
    pub race: Arc<Race>,
    /// The write credentials (none: writes are open).
    pub credentials: Arc<auth::Credentials>,
    /// The long polls of this process and their change subscription.
    pub live: Live,
    /// Upper bound of a request, body upload included ([`layers::REQUEST_TIMEOUT`] unless a
    /// test shortens it).
    pub request_timeout: Duration,
}

impl AppState {
    /// Builds the state with one write token (named `default`; empty counts as none). Inside a tokio runtime, it starts the
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
            credentials: Arc::new(
                auth::Credentials::parse(token.as_deref(), None).unwrap_or_default(),
            ),
            live,
            request_timeout: layers::REQUEST_TIMEOUT,
        })
    }

    /// Replaces the write credentials (`TIMING_API_TOKEN` and `TIMING_API_TOKENS`).
    pub fn with_credentials(mut self, credentials: auth::Credentials) -> Self {
        self.credentials = Arc::new(credentials);
        self
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
        .layer(middleware::from_fn_with_state(
            state.clone(),
            layers::log_and_bound,
        ))
        .with_state(state)
}
