//! Helpers shared by several route groups: paths and query strings (bibs in a path, pages,
//! filters by a known value, long-poll waits, CSV or JSON) and the v1 "no such competitor"
//! answer.

use std::time::Duration;

use axum::http::{HeaderMap, header};

use crate::{error::ApiError, live, model::Bib, store::Outcome};

/// Default page size of listings and results.
pub const DEFAULT_LIMIT: u64 = 50;
/// Largest page size of listings and results.
pub const MAX_LIMIT: u64 = 500;

/// A bib from a path segment: 400 when malformed (in a body the same error is a 422).
pub fn bib_in_path(text: &str) -> Result<Bib, ApiError> {
    Bib::parse(text).map_err(|err| ApiError::BadRequest(err.0))
}

/// 404 for an unknown bib (v1 routes; the legacy routes keep the original's wording).
pub fn not_found(bib: &Bib) -> ApiError {
    ApiError::NotFound(format!("no competitor with bib `{bib}`"))
}

/// Checks `limit` (1 to [`MAX_LIMIT`], default [`DEFAULT_LIMIT`]) and `offset`.
pub fn page(offset: Option<u64>, limit: Option<u64>) -> Result<(u64, u64), ApiError> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::Unprocessable(format!(
            "`limit` must be between 1 and {MAX_LIMIT}, got {limit}"
        )));
    }
    let offset = offset.unwrap_or(0);
    if offset > i32::MAX as u64 {
        return Err(ApiError::Unprocessable(format!(
            "`offset` must be at most {}",
            i32::MAX
        )));
    }
    Ok((offset, limit))
}

/// What a listing read asks for besides its filters: the page, a long poll's wait, and CSV
/// or JSON.
#[derive(Debug, Clone, Copy)]
pub struct ListingRead {
    /// Rows skipped.
    pub offset: u64,
    /// Rows at most.
    pub limit: u64,
    /// Long poll: how long to wait for a change (`?wait=`).
    pub wait: Option<Duration>,
    /// Whether the answer is CSV.
    pub csv: bool,
}

impl ListingRead {
    /// Checks the query's `offset`, `limit`, `wait` and `format` (the request's `Accept`
    /// without a `format`).
    pub fn parse(
        offset: Option<u64>,
        limit: Option<u64>,
        wait: Option<&str>,
        format: Option<&str>,
        request: &HeaderMap,
    ) -> Result<Self, ApiError> {
        let (offset, limit) = page(offset, limit)?;
        Ok(Self {
            offset,
            limit,
            wait: wait.map(live::parse_wait).transpose()?,
            csv: wants_csv(format, request)?,
        })
    }
}

/// Whether the request asks for CSV: `?format=csv` (or `json`), else an `Accept` listing
/// `text/csv`.
pub fn wants_csv(format: Option<&str>, request: &HeaderMap) -> Result<bool, ApiError> {
    match format {
        Some("csv") => Ok(true),
        Some("json") => Ok(false),
        Some(other) => Err(ApiError::Unprocessable(format!(
            "unknown format `{other}`; use `json` or `csv`"
        ))),
        None => Ok(request
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|range| {
                let mut parts = range.split(';').map(str::trim);
                let media = parts.next().unwrap_or_default();
                let refused = parts.any(|p| p.replace(' ', "") == "q=0");
                media.eq_ignore_ascii_case("text/csv") && !refused
            })),
    }
}

/// Checks that `value` is one of `allowed`.
pub fn known<'a>(
    what: &str,
    value: Option<&'a str>,
    allowed: &[String],
) -> Result<Option<&'a str>, ApiError> {
    match value {
        Some(v) if !allowed.iter().any(|a| a == v) => Err(ApiError::Unprocessable(format!(
            "unknown {what} `{v}`; allowed: {} (encode `+` as %2B in a URL)",
            allowed.join(", ")
        ))),
        other => Ok(other),
    }
}

/// A competitor write's outcome as an answer: `Ok` when done, the v1 error otherwise (404 no
/// such competitor, 409 bib or chip taken, 422 unknown wave).
pub fn written(outcome: Outcome, bib: &Bib) -> Result<Outcome, ApiError> {
    match outcome {
        Outcome::Missing => Err(not_found(bib)),
        Outcome::Exists => Err(ApiError::Conflict(format!(
            "a competitor with bib `{bib}` already exists"
        ))),
        Outcome::UnknownWave(wave) => Err(ApiError::Unprocessable(format!(
            "unknown wave `{wave}`; create it first with PUT /api/v1/waves/{wave}"
        ))),
        Outcome::ChipTaken(holder) => Err(ApiError::Conflict(format!(
            "the chip is already competitor `{holder}`'s"
        ))),
        done => Ok(done),
    }
}
