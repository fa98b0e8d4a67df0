//! Cross-cutting middleware: one log line per request, a bound on each request's time, and
//! `Connection: close` on an answer given before the request's body was read.
//!
//! The log line (target `timing_service::request`) carries `method`, `route` (the matched
//! route pattern such as `/api/v1/competitors/{bib}`, so logs can be grouped by route), `status`
//! and `latency_us` (microseconds), plus `error` with the hidden detail of a 5xx answer
//! (`crate::error::ErrorDetail`).
//!
//! The request's body is watched ([`WatchedBody`]) to know whether it was read to its end:
//! - when the time bound ends while the body is still arriving, the client stalled its upload:
//!   `408 Request Timeout`, not `503` (the store was never asked);
//! - an answer given before the body was read (a `401`, `413`, `415`, a bad path, an unknown
//!   route) says `Connection: close`: the rest of the body is still on the wire, hyper will not
//!   read it to reuse the connection, and the client must not send its next request there.

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::{
    body::{Body, Bytes, HttpBody},
    extract::{MatchedPath, Request, State},
    http::{HeaderValue, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::error::{ApiError, ErrorDetail};

/// Upper bound of a request, body upload included: past it the client gets 408 while its body
/// is still arriving, 503 otherwise (a long poll gets `crate::live::MAX_WAIT` more).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Whether the request is a long poll (`?wait=`): its bound is longer by the longest wait.
fn long_poll(request: &Request) -> bool {
    request
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|pair| pair.starts_with("wait=")))
}

/// A request body that records when it has been read to its end.
struct WatchedBody {
    inner: Body,
    finished: Arc<AtomicBool>,
}

impl HttpBody for WatchedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let frame = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(frame, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.finished.store(true, Ordering::Relaxed);
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Middleware: bounds the request, marks answers given before the body was read, and logs.
pub async fn log_and_bound(
    State(request_timeout): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let limit = if long_poll(&request) {
        request_timeout + crate::live::MAX_WAIT
    } else {
        request_timeout
    };
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "<unmatched>".to_owned(), |p| p.as_str().to_owned());
    let (parts, body) = request.into_parts();
    let finished = Arc::new(AtomicBool::new(body.is_end_stream()));
    let body = Body::new(WatchedBody {
        inner: body,
        finished: finished.clone(),
    });
    let request = Request::from_parts(parts, body);
    let mut response = match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) if !finished.load(Ordering::Relaxed) => ApiError::RequestTimeout(format!(
            "the request body did not arrive within {} ms",
            limit.as_millis()
        ))
        .into_response(),
        Err(_) => ApiError::Unavailable(format!(
            "request not finished within {} ms",
            limit.as_millis()
        ))
        .into_response(),
    };
    if !finished.load(Ordering::Relaxed) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
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
