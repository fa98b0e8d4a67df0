//! `/api/v1/results`: rankings by elapsed time from each competitor's own start.
//!
//! `GET /api/v1/results?category=|gender=&checkpoint=&offset=&limit=` answers
//! `{"total", "checkpoint", "offset", "limit", "results": [...]}`: finishers first (equal times
//! share a rank: 1, 2, 2, 4), then those without a time at the checkpoint, then those with a
//! DNF / DSQ / DNS status, both unranked (`rank` null). `checkpoint` defaults to the last one
//! and may be any checkpoint after the start (split rankings). Rankings are read from Redis
//! sorted sets kept up to date by every write (`crate::store`), so a page costs
//! O(log N + page size) whatever the number of competitors.

use axum::{Json, Router, extract::State, routing::get};
use serde::{Deserialize, Serialize};

use crate::{
    AppState,
    error::{ApiError, ApiQuery},
    model::{Status, format_ms},
    routes::competitors::{known, page},
    store::Scope,
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
}

/// The competitor fields a row carries (null when the definition has no such field).
const ROW_FIELDS: [&str; 5] = ["first_name", "last_name", "gender", "category", "country"];

/// One row of the results.
#[derive(Serialize)]
struct Row {
    rank: Option<u64>,
    bib: String,
    first_name: Option<String>,
    last_name: Option<String>,
    gender: Option<String>,
    category: Option<String>,
    country: Option<String>,
    elapsed_ms: Option<u64>,
    elapsed: Option<String>,
    status: Option<Status>,
}

/// A page of results.
#[derive(Serialize)]
struct Results {
    total: u64,
    checkpoint: String,
    offset: u64,
    limit: u64,
    results: Vec<Row>,
}

async fn results(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ResultsQuery>,
) -> Result<Json<Results>, ApiError> {
    let (offset, limit) = page(query.offset, query.limit)?;
    let race = &state.race;
    let checkpoint = query.checkpoint.as_deref().unwrap_or(race.finish());
    if !race.has_checkpoint(checkpoint) {
        return Err(ApiError::Unprocessable(format!(
            "unknown checkpoint `{checkpoint}`; the checkpoints are: {}",
            race.checkpoints.join(", ")
        )));
    }
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
    let (total, entries) = state
        .store
        .results(checkpoint, scope, offset, limit, &ROW_FIELDS)
        .await?;
    let results = entries
        .into_iter()
        .map(|entry| {
            let mut fields = entry.fields.into_iter();
            let mut next = || fields.next().flatten();
            Row {
                rank: entry.rank,
                bib: entry.bib,
                first_name: next(),
                last_name: next(),
                gender: next(),
                category: next(),
                country: next(),
                elapsed_ms: entry.elapsed_ms,
                elapsed: entry.elapsed_ms.map(|ms| format_ms(ms, '.')),
                status: entry.status,
            }
        })
        .collect();
    Ok(Json(Results {
        total,
        checkpoint: checkpoint.to_owned(),
        offset,
        limit,
        results,
    }))
}
