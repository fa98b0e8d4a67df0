//! `/api/v1/openapi.json` (the API's OpenAPI 3.1 document, kept beside this file) and
//! `/api/v1/race` (the race definition in use).

use axum::{Json, Router, extract::State, http::header, response::IntoResponse, routing::get};

use crate::{race::Race, state::AppState};

/// The OpenAPI document, checked by a test to be valid JSON that lists every v1 route.
pub const OPENAPI: &str = include_str!("openapi.json");

/// The documentation routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/race", get(race))
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

/// `GET /api/v1/race`: checkpoints, competitor fields, genders and categories.
async fn race(State(state): State<AppState>) -> Json<Race> {
    Json(Race::clone(&state.race))
}
