//! Cross-cutting middleware: one log line per request, and a bound on each request's time.
//!
//! The log line (target `timing_service::request`) carries `method`, `route` (the matched
//! route pattern such as `/api/v1/competitors/{bib}`, so logs can be grouped by route), `status`
//! and `latency_us` (microseconds), plus `error` with the hidden detail of a 5xx answer
//! (`crate::error::ErrorDetail`).

use std::time::{Duration, Instant};

use axum::{
    extract::{MatchedPath, Request},
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::error::{ApiError, ErrorDetail};

/// Upper bound of a request, body upload included: past it the client gets 503 (a long poll
/// gets `crate::live::MAX_WAIT` more).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Whether the request is a long poll (`?wait=`): its bound is longer by the longest wait.
fn long_poll(request: &Request) -> bool {
    request
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|pair| pair.starts_with("wait=")))
}

/// Middleware: bounds the request and logs it.
pub async fn log_and_bound(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let bound = if long_poll(&request) {
        REQUEST_TIMEOUT + crate::live::MAX_WAIT
    } else {
        REQUEST_TIMEOUT
    };
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "<unmatched>".to_owned(), |p| p.as_str().to_owned());
    let response = match tokio::time::timeout(bound, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            ApiError::Unavailable(format!("request not finished within {} s", bound.as_secs()))
                .into_response()
        }
    };
    let status = response.status().as_u16();
    let latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    match response.extensions().get::<ErrorDetail>() {
        Some(ErrorDetail(error)) => tracing::warn!(
            target: "timing_service::request",
            %method, %route, status, latency_us, %error, "request"
        ),
        None => tracing::info!(
            target: "timing_service::request",
            %method, %route, status, latency_us, "request"
        ),
    }
    response
}
