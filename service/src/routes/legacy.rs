//! The proof of concept's routes, kept path for path and body for body (`shared/legacy-api.md`).
//!
//! Differences, all deliberate: errors use standard 4xx codes instead of 555 (400 malformed JSON,
//! 404 unknown bib, 415 non-JSON content type, 422 invalid content), `POST /settimes` needs the
//! competitor to exist, and every write also updates the rankings of `/api/v1/results`.

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    routing::{get, post},
};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::{
    auth::Actor,
    error::{ApiError, ApiPath, JsonBody, JsonObject},
    model::{Bib, format_ms, parse_time_of_day},
    routes::query::bib_in_path,
    state::AppState,
    store::{Competitor, Outcome, PutMode},
};

/// The legacy routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/competitor", post(create_competitor))
        .route("/getcompetitor/{bib}", get(get_competitor))
        .route("/check_competitor/{bib}", get(check_competitor))
        .route("/settimes", post(set_times))
        .route("/gettimes/{bib}", get(get_times))
        .route("/checkpoints/{bib}", get(checkpoints))
}

fn not_found(bib: &Bib) -> ApiError {
    ApiError::NotFound(format!("Competitor with BIB {bib} not found"))
}

fn message(text: String) -> Json<Value> {
    Json(json!({ "message": text }))
}

/// `POST /competitor`: creates or overwrites a competitor; the body has exactly the
/// definition's fields.
async fn create_competitor(
    State(state): State<AppState>,
    actor: Actor,
    JsonObject(body): JsonObject,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let valid = state.race.validate_competitor(&body, false)?;
    let fields = valid.fields;
    let bib = valid
        .bib
        .ok_or_else(|| ApiError::Unprocessable("missing field `bib`".into()))?;
    match state
        .store
        .put_competitor(actor.as_str(), PutMode::Upsert, &bib, &fields)
        .await?
    {
        Outcome::UnknownWave(wave) => {
            return Err(ApiError::Unprocessable(format!("unknown wave `{wave}`")));
        }
        Outcome::ChipTaken(holder) => {
            return Err(ApiError::Conflict(format!(
                "the chip is already competitor `{holder}`'s"
            )));
        }
        _ => {}
    }
    Ok((
        StatusCode::CREATED,
        message("OK. Competitor created ok".into()),
    ))
}

/// The stored competitor, 404 with the original's message when absent.
async fn stored(state: &AppState, bib: &str) -> Result<(Bib, Competitor), ApiError> {
    let bib = bib_in_path(bib)?;
    match state.store.competitor(&bib).await? {
        Some(competitor) => Ok((bib, competitor)),
        None => Err(not_found(&bib)),
    }
}

/// `GET /getcompetitor/{bib}`: the stored record.
async fn get_competitor(
    State(state): State<AppState>,
    ApiPath(bib): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let (_, competitor) = stored(&state, &bib).await?;
    Ok(Json(json!(competitor.fields)))
}

/// `GET /check_competitor/{bib}`: whether the stored record still matches the definition.
async fn check_competitor(
    State(state): State<AppState>,
    ApiPath(bib): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let (bib, competitor) = stored(&state, &bib).await?;
    let record: Map<String, Value> = competitor
        .fields
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    state
        .race
        .validate_competitor(&record, false)
        .map_err(|err| {
            ApiError::Unprocessable(format!("Competitor data for BIB {bib} is invalid: {err}"))
        })?;
    Ok(message("Competitor data OK".into()))
}

/// The body of `POST /settimes`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetTimes {
    bib: Value,
    settimes: Map<String, Value>,
}

/// `POST /settimes`: every checkpoint must be given; `-1` leaves one unchanged.
async fn set_times(
    State(state): State<AppState>,
    actor: Actor,
    JsonBody(body): JsonBody<SetTimes>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let bib = Bib::from_json(&body.bib)?;
    for checkpoint in body.settimes.keys() {
        state.race.checkpoint(checkpoint)?;
    }
    let mut changes = Vec::with_capacity(body.settimes.len());
    for checkpoint in &state.race.checkpoints {
        let Some(value) = body.settimes.get(checkpoint) else {
            return Err(ApiError::Unprocessable(format!(
                "missing checkpoint `{checkpoint}` in `settimes` (give -1 to leave it unchanged)"
            )));
        };
        match value {
            Value::Number(n) if n.as_i64() == Some(-1) => {}
            Value::String(s) if s == "-1" => {}
            Value::String(s) => {
                let ms = parse_time_of_day(s).map_err(|e| {
                    ApiError::Unprocessable(format!("checkpoint `{checkpoint}`: {e}"))
                })?;
                changes.push((checkpoint.as_str(), Some(ms)));
            }
            other => {
                return Err(ApiError::Unprocessable(format!(
                    "checkpoint `{checkpoint}`: expected a time \"hh:mm:ss:SSS\" or -1, got {other}"
                )));
            }
        }
    }
    match state
        .store
        .set_times(actor.as_str(), &bib, &changes)
        .await?
    {
        Outcome::Missing => Err(not_found(&bib)),
        _ => Ok((
            StatusCode::CREATED,
            message(format!("Times updated for {bib}")),
        )),
    }
}

/// The stored times as `{"checkpoint": "hh:mm:ss:SSS"}`, 404 `No data found` when none.
async fn stored_times(state: &AppState, bib: &str) -> Result<Map<String, Value>, ApiError> {
    let bib = bib_in_path(bib)?;
    let times = state.store.times(&bib).await?;
    if times.is_empty() {
        return Err(ApiError::NotFound("No data found".into()));
    }
    Ok(times
        .into_iter()
        .map(|(checkpoint, ms)| (checkpoint, Value::String(format_ms(ms, ':'))))
        .collect())
}

/// `GET /gettimes/{bib}`: every checkpoint set so far.
async fn get_times(
    State(state): State<AppState>,
    ApiPath(bib): ApiPath<String>,
) -> Result<Json<Map<String, Value>>, ApiError> {
    stored_times(&state, &bib).await.map(Json)
}

/// `GET /checkpoints/{bib}`: like `/gettimes`, but every checkpoint of the definition must be
/// set (404 otherwise) and no other may be stored (422).
async fn checkpoints(
    State(state): State<AppState>,
    ApiPath(bib): ApiPath<String>,
) -> Result<Json<Map<String, Value>>, ApiError> {
    let times = stored_times(&state, &bib).await?;
    if let Some(unknown) = times.keys().find(|k| !state.race.has_checkpoint(k)) {
        return Err(ApiError::Unprocessable(format!(
            "BIB {bib} has a time at `{unknown}`, which is not a checkpoint of this race"
        )));
    }
    if let Some(missing) = state
        .race
        .checkpoints
        .iter()
        .find(|c| !times.contains_key(*c))
    {
        return Err(ApiError::NotFound(format!(
            "BIB {bib} has no time at checkpoint `{missing}`"
        )));
    }
    Ok(Json(times))
}
