//! `/api/v1/waves`: start waves and their gun times. A competitor is in a wave through its
//! `wave` field; changing a wave's gun time re-derives and re-ranks its competitors at once.

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, put},
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    auth::Actor,
    error::{ApiError, ApiPath, JsonBody},
    model::{format_ms, parse_time_of_day},
    state::AppState,
    store::{Outcome, Wave},
};

/// The wave routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/waves", get(list_waves))
        .route("/api/v1/waves/{name}", put(set_wave).delete(delete_wave))
}

fn view(wave: &Wave) -> Value {
    json!({
        "name": wave.name,
        "start": format_ms(wave.start_ms, '.'),
        "start_ms": wave.start_ms,
        "competitors": wave.competitors,
    })
}

/// A wave name from the path: 1 to 64 characters of letters, digits, `_`, `-`, `+` (400).
fn wave_in_path(name: &str) -> Result<&str, ApiError> {
    let valid = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'+'));
    if valid {
        Ok(name)
    } else {
        Err(ApiError::BadRequest(format!(
            "invalid wave name `{name}`: expected 1 to 64 characters of A-Z, a-z, 0-9, `_`, `-` or `+`"
        )))
    }
}

/// `GET /api/v1/waves`: every wave with its gun time and number of competitors.
async fn list_waves(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let waves = state.store.waves().await?;
    Ok(Json(
        json!({ "waves": waves.iter().map(view).collect::<Vec<_>>() }),
    ))
}

/// Body of `PUT /api/v1/waves/{name}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetWave {
    start: String,
}

/// `PUT /api/v1/waves/{name}` with `{"start": "hh:mm:ss.SSS"}`: 201 when created, 200 when
/// its gun time changed (its competitors re-ranked).
async fn set_wave(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(name): ApiPath<String>,
    JsonBody(body): JsonBody<SetWave>,
) -> Result<Response, ApiError> {
    let name = wave_in_path(&name)?;
    let ms = parse_time_of_day(&body.start)?;
    let outcome = state.store.set_wave(actor.as_str(), name, ms).await?;
    let status = if outcome == Outcome::Created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let waves = state.store.waves().await?;
    let wave = waves
        .iter()
        .find(|w| w.name == name)
        .map_or_else(|| json!({"name": name, "start": format_ms(ms, '.')}), view);
    Ok((status, Json(wave)).into_response())
}

/// `DELETE /api/v1/waves/{name}`: 204; 404 when absent, 409 while competitors are in it.
async fn delete_wave(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let name = wave_in_path(&name)?;
    match state.store.delete_wave(actor.as_str(), name).await? {
        Outcome::Missing => Err(ApiError::NotFound(format!("no wave `{name}`"))),
        Outcome::InUse(n) => Err(ApiError::Conflict(format!(
            "wave `{name}` still has {n} competitor(s); move them to another wave first"
        ))),
        _ => Ok(StatusCode::NO_CONTENT),
    }
}
