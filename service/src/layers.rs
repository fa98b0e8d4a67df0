//! Cross-cutting middleware: one log line per request, and a bound on each request's time.
//!
//! The log line (target `timing_service::request`) carries `method`, `route` (the matched
//! route pattern such as `/api/v1/competitors/{bib}`, so logs can be grouped by route), `status`
//! and `latency_ms`, plus `error` with the hidden detail of a 5xx answer
//! (`crate::error::ErrorDetail`).

use std::time::{Duration, Instant};

use axum::{
    extract::{MatchedPath, Request},
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::error::{ApiError, ErrorDetail};

/// Upper bound of a request, body upload included: past it the client gets 503.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Middleware: bounds the request and logs it.
pub async fn log_and_bound(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "<unmatched>".to_owned(), |p| p.as_str().to_owned());
    let response = match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Unavailable(format!(
            "request not finished within {} s",
            REQUEST_TIMEOUT.as_secs()
        ))
        .into_response(),
    };
    let status = response.status().as_u16();
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    match response.extensions().get::<ErrorDetail>() {
        Some(ErrorDetail(error)) => tracing::warn!(
            target: "timing_service::request",
            %method, %route, status, latency_ms, %error, "request"
        ),
        None => tracing::info!(
            target: "timing_service::request",
            %method, %route, status, latency_ms, "request"
        ),
    }
    response
}
