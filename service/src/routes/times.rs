//! `/api/v1/competitors/{bib}/times` and `/status`: a competitor's times and race status.
//!
//! Times of day are written `hh:mm:ss.SSS` (the legacy `hh:mm:ss:SSS` is accepted too, hours up
//! to 99). Reading gives, for every checkpoint in race order, the time of day, the elapsed time
//! from the competitor's own start and the leg time from the previous checkpoint (null when
//! either time is missing); a time earlier than the one it is measured from crossed midnight.

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, put},
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    auth::Actor,
    error::{ApiError, ApiPath, ApiQuery, JsonBody, JsonObject},
    live::{self, Freshness, WaitQuery},
    model::{Bib, Status, elapsed_ms, format_ms, parse_time_of_day},
    routes::query::{bib_in_path, not_found, written},
    state::AppState,
    store::Scope,
};

/// The time and status routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/competitors/{bib}/times",
            get(get_times).patch(set_times),
        )
        .route(
            "/api/v1/competitors/{bib}/times/{checkpoint}",
            put(set_time).delete(clear_time),
        )
        .route("/api/v1/competitors/{bib}/status", put(set_status))
}

/// One checkpoint of a competitor's times.
#[derive(Serialize)]
struct CheckpointTime {
    checkpoint: String,
    time_of_day: Option<String>,
    /// Whether the time is manual (overrides the reads) rather than derived from them.
    manual: bool,
    /// Net time (the ranking default): from the competitor's own start, from the wave's gun
    /// time without a start.
    elapsed_ms: Option<u64>,
    elapsed: Option<String>,
    net_ms: Option<u64>,
    net: Option<String>,
    /// From the wave's gun time (null without one).
    gun_ms: Option<u64>,
    gun: Option<String>,
    leg_ms: Option<u64>,
    leg: Option<String>,
    /// Rank in the whole field at this checkpoint (null at the start, without a time, or
    /// out of the race).
    rank: Option<u64>,
}

/// A competitor's times.
#[derive(Serialize)]
struct TimesView {
    bib: String,
    status: Option<Status>,
    wave: Option<String>,
    /// The wave's gun time of day.
    gun_time: Option<String>,
    checkpoints: Vec<CheckpointTime>,
}

/// `GET /api/v1/competitors/{bib}/times`.
async fn get_times(
    State(state): State<AppState>,
    ApiPath(bib): ApiPath<String>,
    request: HeaderMap,
    ApiQuery(query): ApiQuery<WaitQuery>,
) -> Result<Response, ApiError> {
    let bib = bib_in_path(&bib)?;
    // Any change may be this competitor's: the version of scope `all`. The read returns the
    // version its content is at, which is the ETag; a conditional request is first answered
    // 304 (or waits) on the version alone.
    let wait = query.wait()?;
    if live::conditional(&request) {
        let freshness = state
            .freshness(&Scope::All.live_name(), "json", &request, wait)
            .await?;
        if let Freshness::Answer(response) = freshness {
            return Ok(response);
        }
    }
    let record = state
        .store
        .competitor_times(&bib)
        .await?
        .ok_or_else(|| not_found(&bib))?;
    let etag = live::etag(record.version, "json");
    let times = &record.times;
    let gun = record.gun_ms;
    let start = state
        .race
        .checkpoints
        .first()
        .and_then(|c| times.get(c))
        .copied();
    let mut previous = None;
    let checkpoints = state
        .race
        .checkpoints
        .iter()
        .enumerate()
        .map(|(i, checkpoint)| {
            let rank = record.ranks.get(i).copied().flatten();
            let time = times.get(checkpoint).copied();
            let since = |from: Option<u64>| from.zip(time).map(|(f, t)| elapsed_ms(f, t));
            let (net, gun, leg) = (since(start.or(gun)), since(gun), since(previous));
            previous = time;
            let text = |ms: Option<u64>| ms.map(|ms| format_ms(ms, '.'));
            CheckpointTime {
                checkpoint: checkpoint.clone(),
                time_of_day: text(time),
                manual: record.manual.contains(checkpoint),
                elapsed_ms: net,
                elapsed: text(net),
                net_ms: net,
                net: text(net),
                gun_ms: gun,
                gun: text(gun),
                leg_ms: leg,
                leg: text(leg),
                rank,
            }
        })
        .collect();
    let view = TimesView {
        bib: bib.to_string(),
        status: record.status,
        wave: record.wave.clone(),
        gun_time: gun.map(|ms| format_ms(ms, '.')),
        checkpoints,
    };
    Ok((live::headers(&etag), Json(view)).into_response())
}

/// Parses a time from a JSON value, naming the checkpoint in the error.
fn time_value(checkpoint: &str, value: &Value) -> Result<Option<u64>, ApiError> {
    match value {
        Value::Null => Ok(None),
        Value::String(text) => parse_time_of_day(text)
            .map(Some)
            .map_err(|e| ApiError::Unprocessable(format!("checkpoint `{checkpoint}`: {e}"))),
        other => Err(ApiError::Unprocessable(format!(
            "checkpoint `{checkpoint}`: expected a time \"hh:mm:ss.SSS\" or null, got {other}"
        ))),
    }
}

/// Applies validated manual times; 404 when the competitor does not exist.
async fn apply(
    state: &AppState,
    actor: &Actor,
    bib: &Bib,
    changes: &[(&str, Option<u64>)],
) -> Result<StatusCode, ApiError> {
    written(
        state.store.set_times(actor.as_str(), bib, changes).await?,
        bib,
    )?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PATCH /api/v1/competitors/{bib}/times` with `{"checkpoint": "hh:mm:ss.SSS" | null, ...}`:
/// sets (or with null clears) several checkpoints at once, all or nothing.
async fn set_times(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(bib): ApiPath<String>,
    JsonObject(body): JsonObject,
) -> Result<StatusCode, ApiError> {
    let bib = bib_in_path(&bib)?;
    if body.is_empty() {
        return Err(ApiError::Unprocessable(
            "no checkpoint given; send {\"checkpoint\": \"hh:mm:ss.SSS\" or null, ...}".into(),
        ));
    }
    let mut changes = Vec::with_capacity(body.len());
    for (checkpoint, value) in &body {
        state.race.checkpoint(checkpoint)?;
        changes.push((checkpoint.as_str(), time_value(checkpoint, value)?));
    }
    apply(&state, &actor, &bib, &changes).await
}

/// Body of `PUT .../times/{checkpoint}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetTime {
    time: String,
}

/// Validates the path of a single-checkpoint route (404 for an unknown checkpoint).
fn checkpoint_path(state: &AppState, bib: &str, checkpoint: &str) -> Result<Bib, ApiError> {
    let bib = bib_in_path(bib)?;
    if !state.race.has_checkpoint(checkpoint) {
        return Err(ApiError::NotFound(format!(
            "no checkpoint `{checkpoint}`; the checkpoints are: {}",
            state.race.checkpoints.join(", ")
        )));
    }
    Ok(bib)
}

/// `PUT /api/v1/competitors/{bib}/times/{checkpoint}` with `{"time": "hh:mm:ss.SSS"}`.
async fn set_time(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath((bib, checkpoint)): ApiPath<(String, String)>,
    JsonBody(body): JsonBody<SetTime>,
) -> Result<StatusCode, ApiError> {
    let bib = checkpoint_path(&state, &bib, &checkpoint)?;
    let ms = time_value(&checkpoint, &Value::String(body.time))?;
    apply(&state, &actor, &bib, &[(checkpoint.as_str(), ms)]).await
}

/// `DELETE /api/v1/competitors/{bib}/times/{checkpoint}`: clears one checkpoint.
async fn clear_time(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath((bib, checkpoint)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let bib = checkpoint_path(&state, &bib, &checkpoint)?;
    apply(&state, &actor, &bib, &[(checkpoint.as_str(), None)]).await
}

/// `PUT /api/v1/competitors/{bib}/status` with `{"status": "DNS" | "DNF" | "DSQ" | null}`
/// (null clears it; the field is required so an empty body cannot clear by accident).
async fn set_status(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(bib): ApiPath<String>,
    JsonObject(mut body): JsonObject,
) -> Result<StatusCode, ApiError> {
    let bib = bib_in_path(&bib)?;
    let value = body
        .remove("status")
        .ok_or_else(|| ApiError::Unprocessable("missing field `status`".into()))?;
    if let Some(unknown) = body.keys().next() {
        return Err(ApiError::Unprocessable(format!(
            "unknown field `{unknown}`; expected only `status`"
        )));
    }
    let status: Option<Status> = serde_json::from_value(value).map_err(|e| {
        ApiError::Unprocessable(format!(
            "invalid status: {e}; expected \"DNS\", \"DNF\", \"DSQ\" or null"
        ))
    })?;
    written(
        state.store.set_status(actor.as_str(), &bib, status).await?,
        &bib,
    )?;
    Ok(StatusCode::NO_CONTENT)
}
