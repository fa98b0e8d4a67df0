//! The one error type of the HTTP layer, and the extractors that turn every rejection into it.
//!
//! Every error answers `{"error": "<what is wrong>", "code": "<machine code>"}`; the `error` key is
//! the legacy service's shape, `code` is added. Client errors name the problem; server errors
//! (500, 503) hide their detail from the client and stash it in the response extensions so the
//! request-log middleware (`crate::layers`) writes it in the request's log line.

use axum::{
    Json,
    body::Bytes,
    extract::{
        FromRequest, FromRequestParts, Request,
        rejection::{BytesRejection, PathRejection, QueryRejection},
    },
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::{model::Invalid, store::StoreError};

/// Everything a handler can answer besides success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the body is not JSON, or a path or query parameter is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// 401: a write without a valid `Authorization: Bearer` token while one is configured.
    #[error("this write needs the header `Authorization: Bearer <TIMING_API_TOKEN>`")]
    Unauthorized,
    /// 404: no such competitor, checkpoint or times.
    #[error("{0}")]
    NotFound(String),
    /// 405: a known path with a method it does not support.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 409: creating a competitor whose bib is taken.
    #[error("{0}")]
    Conflict(String),
    /// 408: the request body did not arrive in full within the request's time bound.
    #[error("{0}")]
    RequestTimeout(String),
    /// 413: a body over the 64 KiB limit.
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// 415: a body sent with a content type other than JSON.
    #[error("expected a JSON body (`Content-Type: application/json`), got `{0}`")]
    UnsupportedMediaType(String),
    /// 422: well-formed JSON whose content is invalid (unknown field, bad time, bad bib…).
    #[error("{0}")]
    Unprocessable(String),
    /// 503: Redis does not answer in time, or the request took too long; the detail is logged.
    #[error("the timing store is unavailable, retry shortly")]
    Unavailable(String),
    /// 500: anything unexpected; the detail is logged, not returned.
    #[error("internal error")]
    Internal(String),
}

/// The hidden detail of a 5xx answer, read by the request-log middleware.
#[derive(Debug, Clone)]
pub struct ErrorDetail(pub String);

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::Unauthorized => "unauthorized",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::Conflict(_) => "conflict",
            Self::RequestTimeout(_) => "request_timeout",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::Unprocessable(_) => "invalid",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.to_string(), "code": self.code() });
        let mut response = (self.status(), Json(body)).into_response();
        match self {
            Self::Unavailable(detail) | Self::Internal(detail) => {
                response.extensions_mut().insert(ErrorDetail(detail));
            }
            Self::Unauthorized => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(detail) => Self::Unavailable(detail),
            StoreError::Internal(detail) => Self::Internal(detail),
        }
    }
}

/// A domain value that breaks its rule, read from a body: 422 (a path segment answers 400,
/// see `crate::routes::query::bib_in_path`).
impl From<Invalid> for ApiError {
    fn from(err: Invalid) -> Self {
        Self::Unprocessable(err.0)
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::BadRequest(format!("invalid path: {}", rejection.body_text()))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::BadRequest(format!("invalid query string: {}", rejection.body_text()))
    }
}

/// The request body limit (64 KiB), applied with `DefaultBodyLimit` in `crate::app`.
pub const BODY_LIMIT: usize = 64 * 1024;

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::PayloadTooLarge { limit: BODY_LIMIT }
        } else {
            Self::BadRequest(format!(
                "could not read the body: {}",
                rejection.body_text()
            ))
        }
    }
}

/// `axum::extract::Path` answering [`ApiError`] on rejection.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// `axum::extract::Query` answering [`ApiError`] on rejection.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// A JSON body: syntax errors answer 400, content errors 422, naming serde's problem and
/// position; an object with a repeated key is refused (422) on every route
/// ([`crate::json::unique_value`]). A request without a `Content-Type` is read as
/// JSON (the legacy curl scripts do not always send one); a declared type that is not JSON
/// ([`crate::json::is_json_media_type`]) is refused with 415.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let JsonBytes(bytes) = JsonBytes::from_request(req, state).await?;
        parse_body(&bytes, |value| serde_json::from_value(value).ok()).map(JsonBody)
    }
}

/// A body as [`JsonBody`] and [`JsonObject`] read it: one pass into a value (refusing
/// repeated keys), then `convert` into `T`; only when that fails is the body parsed again as
/// `T`, for serde's message with what was given, line and column.
fn parse_body<T: DeserializeOwned>(
    bytes: &[u8],
    convert: impl FnOnce(Value) -> Option<T>,
) -> Result<T, ApiError> {
    let value = crate::json::unique_value(bytes).map_err(json_error)?;
    match convert(value) {
        Some(body) => Ok(body),
        None => serde_json::from_slice(bytes).map_err(json_error),
    }
}

/// A JSON object body, checked as [`JsonBody`] checks one, kept as the map
/// [`crate::json::unique_value`] builds: the routes whose fields come from the race
/// definition take their body this way, without `JsonBody`'s second pass from the value into
/// a map (some 3,000 instructions of a create's 99,000, callgrind).
#[derive(Debug)]
pub struct JsonObject(pub Map<String, Value>);

impl<S> FromRequest<S> for JsonObject
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let JsonBytes(bytes) = JsonBytes::from_request(req, state).await?;
        let object = |value| match value {
            Value::Object(map) => Some(map),
            _ => None,
        };
        parse_body(&bytes, object).map(JsonObject)
    }
}

/// The bytes of a JSON body (the media type checked as [`JsonBody`] checks it), for a route
/// that parses them itself into types that borrow from them; [`json_error`] says what went
/// wrong as [`JsonBody`] does.
#[derive(Debug)]
pub struct JsonBytes(pub Bytes);

impl<S> FromRequest<S> for JsonBytes
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(content_type) = req.headers().get(header::CONTENT_TYPE) {
            let text = String::from_utf8_lossy(content_type.as_bytes());
            if !crate::json::is_json_media_type(&text) {
                return Err(ApiError::UnsupportedMediaType(text.into_owned()));
            }
        }
        Ok(Self(Bytes::from_request(req, state).await?))
    }
}

/// A JSON body's parse error: 400 for its syntax, 422 for its content.
pub fn json_error(err: serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match err.classify() {
        Category::Data => ApiError::Unprocessable(format!("invalid body: {err}")),
        Category::Syntax | Category::Eof | Category::Io => {
            ApiError::BadRequest(format!("malformed JSON: {err}"))
        }
    }
}
