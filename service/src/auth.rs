//! Bearer-token authentication of writes.
//!
//! When `TIMING_API_TOKEN` is set, every request that is not `GET`, `HEAD` or `OPTIONS` needs
//! `Authorization: Bearer <token>` (the scheme in any case); the comparison runs in constant time (`subtle`) so response
//! timing does not reveal how much of a guess was right. Reads stay public. Unset, writes are
//! open (the service logs a warning at start).

use axum::{
    extract::{Request, State},
    http::{Method, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use subtle::ConstantTimeEq;

use crate::{AppState, error::ApiError};

/// Whether the request may write. The scheme is matched case-insensitively (`bearer`,
/// `BEARER`: RFC 9110 §11.1) and may be followed by several spaces; the credentials are compared
/// exactly.
fn authorized(expected: &[u8], request: &Request) -> bool {
    let Some((scheme, credentials)) = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
    else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer") && credentials.trim().as_bytes().ct_eq(expected).into()
}

/// Middleware: 401 for a write without the configured token.
pub async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    match &state.token {
        Some(token) if !safe && !authorized(token.as_bytes(), &request) => {
            ApiError::Unauthorized.into_response()
        }
        _ => next.run(request).await,
    }
}
