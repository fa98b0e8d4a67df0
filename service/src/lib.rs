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
//! - `state`: what every handler shares (store, race, credentials, long polls);
//! - `auth`, `layers`: bearer-token check, request log line, time bound, unread bodies;
//! - `log_output`: the log lines' buffer and the thread that writes it to stderr;
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
pub mod log_output;
pub mod model;
pub mod race;
pub mod routes;
pub mod server;
pub mod state;
pub mod store;

pub use server::{DRAIN_TIMEOUT, ServeOptions, after_drain, serve, serve_with, shutdown_signal};
pub use state::AppState;

use axum::{
    Router,
    extract::{DefaultBodyLimit, Request},
    middleware,
};

use crate::error::ApiError;

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
            state.credentials.clone(),
            auth::require_token,
        ))
        .layer(middleware::from_fn_with_state(
            state.request_timeout,
            layers::log_and_bound,
        ))
        .with_state(state)
}
