//! `/api/v1/audit`: the audit trail, newest first. Every change that affects results appends an
//! entry `{"at", "actor", "action", "bib", "before", "after"}` in the same atomic step as the
//! change (`store/timing.lua`); `actor` is the name of the write credential used.

use axum::{Json, Router, extract::State, routing::get};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    error::{ApiError, ApiQuery},
    routes::query::{bib_in_path, page},
    state::AppState,
};

/// The audit route.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/audit", get(audit))
}

/// Query of the audit trail.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    bib: Option<String>,
    offset: Option<u64>,
    limit: Option<u64>,
}

/// `GET /api/v1/audit?bib=&offset=&limit=`: `{"total", "offset", "limit", "entries": [...]}`.
async fn audit(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<Value>, ApiError> {
    let (offset, limit) = page(query.offset, query.limit)?;
    let bib = query.bib.as_deref().map(bib_in_path).transpose()?;
    let page = state.store.audit(bib.as_ref(), offset, limit).await?;
    let entries: Vec<Value> = page
        .entries
        .iter()
        .map(|entry| serde_json::from_str(entry).unwrap_or(Value::Null))
        .collect();
    Ok(Json(json!({
        "total": page.total,
        "offset": offset,
        "limit": limit,
        "entries": entries,
    })))
}
