//! `/api/v1/results`: rankings by elapsed time from each competitor's own start.
//!
//! `GET /api/v1/results?category=|gender=&checkpoint=&offset=&limit=` answers
//! `{"total", "checkpoint", "offset", "limit", "results": [...]}`: finishers first (equal times
//! share a rank: 1, 2, 2, 4), then those without a time at the checkpoint, then those with a
//! DNF / DSQ / DNS status, both unranked (`rank` null). `checkpoint` defaults to the last one
//! and may be any checkpoint after the start (split rankings). Rankings are read from Redis
//! sorted sets kept up to date by every write (`crate::store`), so a page costs
//! O(log N + page size) whatever the number of competitors.

use std::fmt::Write;

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde::Deserialize;

use crate::{
    error::{ApiError, ApiQuery},
    live::{self, Freshness},
    model::write_ms,
    race::RankBy,
    routes::{
        export,
        query::{ListingRead, known},
    },
    state::AppState,
    store::{PageQuery, RankedEntry, Ranking, Scope, StoreError},
};

/// The results route.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/results", get(results))
}

/// Query of the results.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResultsQuery {
    category: Option<String>,
    gender: Option<String>,
    checkpoint: Option<String>,
    offset: Option<u64>,
    limit: Option<u64>,
    /// `net` (from each competitor's own start) or `gun` (from their wave's gun time); the
    /// race definition's `rank_by` when absent.
    by: Option<RankBy>,
    /// Long poll: with a matching `If-None-Match`, wait up to this long for a change.
    wait: Option<String>,
    /// `csv` or `json` (default: `json`, or CSV when `Accept` lists `text/csv`).
    format: Option<String>,
}

/// A row's competitor fields when their JSON is missing (a record written before
/// `competitor_rows` existed).
const NULL_FIELDS: &str =
    r#""first_name":null,"last_name":null,"gender":null,"category":null,"country":null"#;

/// Appends one row: `{"rank", "bib", <row fields>, "elapsed_ms", "elapsed", "gun_ms", "gun",
/// "net_ms", "net", "status"}`. The row fields are the JSON object `timing.lua` stored, copied
/// without parsing, and everything is written straight into `out` without a string per
/// value: parsing and re-serialising 50 records, then the small allocations, were most of
/// the route's CPU.
fn write_row(out: &mut String, entry: &RankedEntry, by: RankBy) {
    let fields = entry
        .row_json
        .as_deref()
        .and_then(|json| json.strip_prefix('{')?.strip_suffix('}'))
        .filter(|inner| !inner.trim().is_empty())
        .unwrap_or(NULL_FIELDS);
    let (gun, net) = entry.gun_and_net(by == RankBy::Gun);
    out.push_str(r#"{"rank":"#);
    write_number(out, entry.rank);
    out.push_str(r#","bib":"#);
    write_json_string(out, &entry.bib);
    out.push(',');
    out.push_str(fields);
    for (name, value) in [("elapsed", entry.elapsed_ms), ("gun", gun), ("net", net)] {
        out.push_str(",\"");
        out.push_str(name);
        out.push_str("_ms\":");
        write_number(out, value);
        out.push_str(",\"");
        out.push_str(name);
        out.push_str("\":");
        match value {
            Some(ms) => {
                out.push('"');
                write_ms(out, ms, '.');
                out.push('"');
            }
            None => out.push_str("null"),
        }
    }
    out.push_str(r#","status":"#);
    match entry.status {
        Some(status) => {
            out.push('"');
            out.push_str(status.as_str());
            out.push('"');
        }
        None => out.push_str("null"),
    }
    out.push('}');
}

fn write_number(out: &mut String, n: Option<u64>) {
    match n {
        Some(n) => out.push_str(itoa::Buffer::new().format(n)),
        None => out.push_str("null"),
    }
}

/// A JSON string. Text without a quote, a backslash or a control character (every bib and
/// checkpoint name) is written as it is, as serde_json would write it; anything else goes
/// through serde_json.
fn write_json_string(out: &mut String, text: &str) {
    if text.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.push_str(&serde_json::to_string(text).unwrap_or_else(|_| "null".to_owned()));
    } else {
        out.push('"');
        out.push_str(text);
        out.push('"');
    }
}

async fn results(
    State(state): State<AppState>,
    request: HeaderMap,
    ApiQuery(query): ApiQuery<ResultsQuery>,
) -> Result<Response, ApiError> {
    let (wait, format) = (query.wait.as_deref(), query.format.as_deref());
    let read = ListingRead::parse(query.offset, query.limit, wait, format, &request)?;
    let (offset, limit) = (read.offset, read.limit);
    let race = &state.race;
    let checkpoint = race.checkpoint(query.checkpoint.as_deref().unwrap_or(race.finish()))?;
    if race.checkpoints.first().is_some_and(|c| c == checkpoint) {
        return Err(ApiError::Unprocessable(format!(
            "`{checkpoint}` is the start; rankings exist at the later checkpoints"
        )));
    }
    let gender = known("gender", query.gender.as_deref(), &race.genders)?;
    let category = known("category", query.category.as_deref(), &race.categories)?;
    let scope = match (gender, category) {
        (None, None) => Scope::All,
        (Some(g), None) => Scope::Gender(g),
        (None, Some(c)) => Scope::Category(c),
        (Some(_), Some(_)) => {
            return Err(ApiError::Unprocessable(
                "give `gender` or `category`, not both".into(),
            ));
        }
    };
    let variant = if read.csv { "csv" } else { "json" };
    let (etag, version) = match state
        .freshness(&scope.live_name(), variant, &request, read.wait)
        .await?
    {
        Freshness::Answer(response) => return Ok(response),
        Freshness::Read { etag, version } => (etag, version),
    };
    let by = query.by.unwrap_or(race.rank_by);
    if read.csv {
        // The whole ranking unless a page is asked for.
        let span = export::Span {
            offset,
            limit: query.limit,
        };
        let by_gun = by == RankBy::Gun;
        return export::results(&state, checkpoint, scope, by_gun, span, &etag, version).await;
    }
    // Rendered once per change of the scope, however many read it.
    let key = format!(
        "{checkpoint} {} {offset} {limit} {}",
        scope.live_name(),
        by.as_str()
    );
    let body = state
        .live
        .render_once(key, &etag, || {
            // Owned, for a render that other requests may share after this one is gone.
            let state = state.clone();
            let ranking = Ranking::new(checkpoint, scope, by == RankBy::Gun);
            async move {
                render(&state, ranking.page(offset, limit), version)
                    .await
                    .map(Bytes::from)
            }
        })
        .await?;
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        live::headers(&etag),
        body,
    )
        .into_response())
}

/// The JSON of a results page, the scope being at `version`.
async fn render(
    state: &AppState,
    query: PageQuery<'_>,
    version: u64,
) -> Result<String, StoreError> {
    let PageQuery {
        checkpoint,
        by_gun,
        offset,
        limit,
        ..
    } = query;
    let by = if by_gun { RankBy::Gun } else { RankBy::Net };
    let (total, entries) = state.store.results_at(query, version).await?;
    let mut body = String::with_capacity(128 + entries.len() * 224);
    let _ = write!(body, r#"{{"total":{total},"checkpoint":"#);
    write_json_string(&mut body, checkpoint);
    let _ = write!(
        body,
        r#","by":"{}","offset":{offset},"limit":{limit},"results":["#,
        by.as_str()
    );
    for (i, entry) in entries.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        write_row(&mut body, entry, by);
    }
    body.push_str("]}");
    Ok(body)
}
