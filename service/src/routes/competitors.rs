//! `/api/v1/competitors`: create, read, replace, patch, delete and list competitors.
//!
//! A competitor is the definition's fields (all strings) plus `status` (`DNS`, `DNF`, `DSQ` or
//! null, set through `/competitors/{bib}/status`, see `crate::routes::times`).

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::{
    auth::Actor,
    error::{ApiError, ApiPath, ApiQuery, JsonObject},
    live::{self, Freshness},
    model::Bib,
    routes::{
        export,
        query::{ListingRead, bib_in_path, known, not_found, written},
    },
    state::AppState,
    store::{Competitor, ListFilter, PutMode, Scope},
};

/// The competitor routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/competitors",
            get(list_competitors).post(create_competitor),
        )
        .route(
            "/api/v1/competitors/{bib}",
            get(get_competitor)
                .put(replace_competitor)
                .patch(patch_competitor)
                .delete(delete_competitor),
        )
}

/// The JSON of a competitor: its fields and `status`.
fn view(competitor: Competitor) -> Value {
    let mut map: Map<String, Value> = competitor
        .fields
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    map.insert(
        "status".into(),
        competitor
            .status
            .map_or(Value::Null, |s| Value::String(s.as_str().into())),
    );
    Value::Object(map)
}

/// The JSON of a record just created from validated fields.
fn created(fields: Vec<(String, String)>) -> Value {
    view(Competitor {
        fields: fields.into_iter().collect(),
        status: None,
    })
}

/// The body with the path's bib: the body may omit `bib` but not contradict it.
fn with_path_bib(mut body: Map<String, Value>, bib: &Bib) -> Result<Map<String, Value>, ApiError> {
    if let Some(given) = body.get("bib") {
        let given = Bib::from_json(given)?;
        if &given != bib {
            return Err(ApiError::Unprocessable(format!(
                "the body's bib `{given}` differs from the path's `{bib}`; a bib cannot be changed"
            )));
        }
    }
    body.insert("bib".into(), Value::String(bib.to_string()));
    Ok(body)
}

/// `POST /api/v1/competitors`: 201, or 409 when the bib exists.
async fn create_competitor(
    State(state): State<AppState>,
    actor: Actor,
    JsonObject(body): JsonObject,
) -> Result<(StatusCode, HeaderMap, Json<Value>), ApiError> {
    let valid = state.race.validate_competitor(&body, false)?;
    let fields = valid.fields;
    let bib = valid
        .bib
        .ok_or_else(|| ApiError::Unprocessable("missing field `bib`".into()))?;
    let outcome = state
        .store
        .put_competitor(actor.as_str(), PutMode::Create, &bib, &fields)
        .await?;
    written(outcome, &bib)?;
    let mut headers = HeaderMap::new();
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/competitors/{bib}")) {
        headers.insert(header::LOCATION, location);
    }
    Ok((StatusCode::CREATED, headers, Json(created(fields))))
}

/// `GET /api/v1/competitors/{bib}`.
async fn get_competitor(
    State(state): State<AppState>,
    ApiPath(bib): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    read(&state, &bib_in_path(&bib)?).await
}

/// The competitor's JSON, 404 when absent.
async fn read(state: &AppState, bib: &Bib) -> Result<Json<Value>, ApiError> {
    let competitor = state.store.competitor(bib).await?;
    competitor
        .map(|c| Json(view(c)))
        .ok_or_else(|| not_found(bib))
}

/// `PUT /api/v1/competitors/{bib}`: replaces every field of an existing competitor (times and
/// status are kept).
async fn replace_competitor(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(bib): ApiPath<String>,
    JsonObject(body): JsonObject,
) -> Result<Json<Value>, ApiError> {
    update(&state, &actor, &bib, body, PutMode::Replace).await
}

/// `PATCH /api/v1/competitors/{bib}`: changes the given fields only.
async fn patch_competitor(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(bib): ApiPath<String>,
    JsonObject(body): JsonObject,
) -> Result<Json<Value>, ApiError> {
    update(&state, &actor, &bib, body, PutMode::Patch).await
}

/// Replaces or patches an existing competitor and answers the stored result.
async fn update(
    state: &AppState,
    actor: &Actor,
    bib: &str,
    body: Map<String, Value>,
    mode: PutMode,
) -> Result<Json<Value>, ApiError> {
    let bib = bib_in_path(bib)?;
    let body = with_path_bib(body, &bib)?;
    let partial = mode == PutMode::Patch;
    let fields = state.race.validate_competitor(&body, partial)?.fields;
    let outcome = state
        .store
        .put_competitor(actor.as_str(), mode, &bib, &fields)
        .await?;
    written(outcome, &bib)?;
    read(state, &bib).await
}

/// `DELETE /api/v1/competitors/{bib}`: removes the competitor, their times and rankings.
async fn delete_competitor(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(bib): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let bib = bib_in_path(&bib)?;
    written(
        state.store.delete_competitor(actor.as_str(), &bib).await?,
        &bib,
    )?;
    Ok(StatusCode::NO_CONTENT)
}

/// Query of the competitor listing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    category: Option<String>,
    gender: Option<String>,
    country: Option<String>,
    offset: Option<u64>,
    limit: Option<u64>,
    /// Long poll: with a matching `If-None-Match`, wait up to this long for a change.
    wait: Option<String>,
    /// `csv` or `json` (default: `json`, or CSV when `Accept` lists `text/csv`).
    format: Option<String>,
}

/// `GET /api/v1/competitors?category=&gender=&country=&offset=&limit=`: ordered by bib.
async fn list_competitors(
    State(state): State<AppState>,
    request: HeaderMap,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    let (wait, format) = (query.wait.as_deref(), query.format.as_deref());
    let read = ListingRead::parse(query.offset, query.limit, wait, format, &request)?;
    let (offset, limit) = (read.offset, read.limit);
    let filter = ListFilter {
        gender: known("gender", query.gender.as_deref(), &state.race.genders)?,
        category: known(
            "category",
            query.category.as_deref(),
            &state.race.categories,
        )?,
        country: query.country.as_deref(),
    };
    // Every change bumps scope `all`; a listing changes with any competitor.
    let variant = if read.csv { "csv" } else { "json" };
    let etag = match state
        .freshness(&Scope::All.live_name(), variant, &request, read.wait)
        .await?
    {
        Freshness::Answer(response) => return Ok(response),
        Freshness::Read { etag, .. } => etag,
    };
    if read.csv {
        let owned = export::OwnedFilter {
            gender: filter.gender.map(str::to_owned),
            category: filter.category.map(str::to_owned),
            country: filter.country.map(str::to_owned),
        };
        let span = export::Span {
            offset,
            limit: query.limit,
        };
        return export::competitors(&state, owned, span, &etag).await;
    }
    let (total, competitors) = state.store.list_competitors(filter, offset, limit).await?;
    let body = serde_json::json!({
        "total": total,
        "offset": offset,
        "limit": limit,
        "competitors": competitors.into_iter().map(view).collect::<Vec<_>>(),
    });
    Ok((live::headers(&etag), Json(body)).into_response())
}
