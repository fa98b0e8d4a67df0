//! `/api/v1/passings`: chip and bib reads from the timing mats, uploaded in batches.
//!
//! `POST /api/v1/passings` takes `{"passings": [{"id", "checkpoint", "bib" | "chip", "time",
//! "source"}]}` (up to [`MAX_BATCH`] reads) and answers one outcome per read, in order:
//! `applied` (it is now the checkpoint's time), `kept` (stored, without effect: a better read
//! counts, a manual time overrides, or the competitor is DNS/DSQ), `duplicate` (its id was
//! received before; nothing changes), `ignored` (before the gun, outside the start window, or
//! earlier than the checkpoint's minimum time), `unmatched` (no competitor has this chip or
//! bib; stored for `POST /api/v1/passings/{id}/assign`), `rejected` (the read itself is
//! invalid; the reason says why). The rules and the storage are in `store/timing.lua`; raw
//! reads are never changed. A malformed batch (not an object with a `passings` array, over
//! the limit) is refused as a whole.

use std::collections::HashSet;

use axum::{
    Json, Router,
    extract::{DefaultBodyLimit, State},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{
    auth::Actor,
    error::{ApiError, ApiPath, ApiQuery, JsonBody, JsonBytes, json_error},
    model::{Bib, format_ms, parse_time_of_day},
    routes::query::{bib_in_path, not_found, page},
    state::AppState,
    store::{Assigned, Read},
};

mod batch;

use batch::{Batch, Field, ReadInput};

/// Most reads in one batch.
pub const MAX_BATCH: usize = 1000;
/// Body limit of a batch: 1,000 reads of up to about 500 bytes each.
pub const BATCH_BODY_LIMIT: usize = 512 * 1024;

/// The passing routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/passings",
            post(ingest)
                .get(list_passings)
                .layer(DefaultBodyLimit::max(BATCH_BODY_LIMIT)),
        )
        .route("/api/v1/passings/{id}/assign", post(assign))
        .route(
            "/api/v1/competitors/{bib}/passings",
            get(competitor_passings),
        )
}

/// A read id or a chip code: 1 to 64 characters of `A-Za-z0-9._:-` (no spaces: the store
/// separates a read's fields by them).
fn valid_code(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

/// Validates one read; `Err((id, reason))` rejects it alone.
fn read(
    state: &AppState,
    input: &ReadInput<'_>,
    received_at: &str,
) -> Result<Read, (Option<String>, String)> {
    let fields = match input {
        ReadInput::Fields(fields) => fields,
        ReadInput::NotAnObject(value) => {
            return Err((None, format!("a read must be an object, got {value}")));
        }
    };
    let id = match fields.id.text("id") {
        Ok(Some(id)) if valid_code(id) => id.to_owned(),
        Ok(Some(id)) => {
            return Err((
                None,
                format!(
                    "invalid id `{id}`: expected 1 to 64 characters of A-Z, a-z, 0-9, `_`, `.`, `:` or `-`"
                ),
            ));
        }
        Ok(None) => return Err((None, "missing `id`".into())),
        Err(e) => return Err((None, e)),
    };
    let fail = |reason: String| (Some(id.clone()), reason);
    // (The first in name order, as when a read was a map.)
    if let Some(unknown) = fields.unknown.iter().min() {
        return Err(fail(format!(
            "unknown field `{unknown}`; a read has id, checkpoint, bib or chip, time, source"
        )));
    }
    let checkpoint = fields
        .checkpoint
        .text("checkpoint")
        .map_err(&fail)?
        .ok_or_else(|| fail("missing `checkpoint`".into()))?;
    let index = state
        .race
        .checkpoint_index(checkpoint)
        .map_err(|e| fail(e.0))?;
    let time = fields
        .time
        .text("time")
        .map_err(&fail)?
        .ok_or_else(|| fail("missing `time`".into()))?;
    let ms = parse_time_of_day(time).map_err(|e| fail(e.0))?;
    let bib = match &fields.bib {
        Field::Absent | Field::Null => None,
        Field::Text(text) => Some(Bib::parse(text).map_err(|e| fail(e.0))?),
        Field::Other(value) => Some(Bib::from_json(value).map_err(|e| fail(e.0))?),
    };
    let chip = fields.chip.text("chip").map_err(&fail)?;
    if let Some(chip) = chip.filter(|c| !valid_code(c)) {
        return Err(fail(format!(
            "invalid chip `{chip}`: expected 1 to 64 characters of A-Z, a-z, 0-9, `_`, `.`, `:` or `-`"
        )));
    }
    let source = fields.source.text("source").map_err(&fail)?;
    if source.is_some_and(|s| s.chars().count() > 64) {
        return Err(fail("`source` is longer than 64 characters".into()));
    }
    let (bib, chip) = match (bib, chip) {
        (Some(_), Some(_)) => return Err(fail("give `bib` or `chip`, not both".into())),
        (None, None) => return Err(fail("missing `bib` or `chip`".into())),
        (bib, chip) => (bib, chip.map(str::to_owned)),
    };
    let raw = StoredRead {
        bib: bib.as_ref().map(Bib::as_str),
        checkpoint,
        chip: chip.as_deref(),
        id: &id,
        received_at,
        source,
        time: &format_ms(ms, '.'),
    };
    let raw = serde_json::to_string(&raw).map_err(|e| fail(e.to_string()))?;
    Ok(Read {
        id,
        checkpoint: index,
        ms,
        bib,
        chip,
        raw,
    })
}

/// A read as stored ([`Read::raw`]): as received, its time written out in full, and when it
/// arrived. Serialized straight from the request's strings (a `serde_json::Map` built per read
/// was a fifth of the service's CPU per batch); the keys stay in the order the stored reads
/// have always had (alphabetical), `bib` or `chip` whichever the read has.
#[derive(Serialize)]
struct StoredRead<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    bib: Option<&'a str>,
    checkpoint: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    chip: Option<&'a str>,
    id: &'a str,
    received_at: &'a str,
    source: Option<&'a str>,
    time: &'a str,
}

/// `POST /api/v1/passings`: stores and applies a batch; 200 with one outcome per read.
async fn ingest(
    State(state): State<AppState>,
    body: Result<JsonBytes, ApiError>,
) -> Result<Response, ApiError> {
    let JsonBytes(bytes) = body.map_err(|err| match err {
        ApiError::PayloadTooLarge { .. } => ApiError::PayloadTooLarge {
            limit: BATCH_BODY_LIMIT,
        },
        other => other,
    })?;
    let batch: Batch<'_> = serde_json::from_slice(&bytes).map_err(json_error)?;
    if batch.passings.len() > MAX_BATCH {
        return Err(ApiError::Unprocessable(format!(
            "a batch has at most {MAX_BATCH} reads, this one {}; split it",
            batch.passings.len()
        )));
    }
    let received_at = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    // Each read in order: valid (its index in `valid`) or rejected (its id if it has a valid
    // one, and why).
    let mut slots: Vec<Result<usize, (Option<String>, String)>> =
        Vec::with_capacity(batch.passings.len());
    let mut valid = Vec::with_capacity(batch.passings.len());
    for input in &batch.passings {
        slots.push(read(&state, input, &received_at).map(|read| {
            valid.push(read);
            valid.len() - 1
        }));
    }
    let outcomes = if valid.is_empty() {
        Vec::new()
    } else {
        state.store.ingest(&valid).await?
    };
    let results = slots
        .iter()
        .map(|slot| match slot {
            Ok(k) => {
                let (outcome, reason) = outcomes.get(*k).ok_or_else(|| {
                    ApiError::Internal(format!(
                        "the store answered {} outcomes for {} reads",
                        outcomes.len(),
                        valid.len()
                    ))
                })?;
                Ok(ReadResult {
                    id: Some(&valid[*k].id),
                    outcome,
                    reason: (!reason.is_empty()).then_some(reason),
                })
            }
            Err((id, reason)) => Ok(ReadResult {
                id: id.as_deref(),
                outcome: "rejected",
                reason: Some(reason),
            }),
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    // (Serialized here: the results borrow the reads and outcomes.)
    Ok(Json(IngestAnswer { results }).into_response())
}

/// The answer of `POST /api/v1/passings`: one result per read, in order.
#[derive(Serialize)]
struct IngestAnswer<'a> {
    results: Vec<ReadResult<'a>>,
}

/// What became of one read (`reason` null when it was applied).
#[derive(Serialize)]
struct ReadResult<'a> {
    id: Option<&'a str>,
    outcome: &'a str,
    reason: Option<&'a str>,
}

/// Query of `GET /api/v1/passings`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    unmatched: Option<bool>,
    offset: Option<u64>,
    limit: Option<u64>,
}

/// `GET /api/v1/passings?unmatched=true&offset=&limit=`: the reads no competitor matched,
/// oldest first.
async fn list_passings(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    if query.unmatched != Some(true) {
        return Err(ApiError::Unprocessable(
            "give `unmatched=true` (a competitor's reads are at /api/v1/competitors/{bib}/passings)"
                .into(),
        ));
    }
    let (offset, limit) = page(query.offset, query.limit)?;
    let (total, raw) = state.store.unmatched_passings(offset, limit).await?;
    Ok(Json(json!({
        "total": total,
        "offset": offset,
        "limit": limit,
        "passings": parse_all(&raw),
    })))
}

fn parse_all(raw: &[String]) -> Vec<Value> {
    raw.iter()
        .map(|r| serde_json::from_str(r).unwrap_or(Value::Null))
        .collect()
}

/// `GET /api/v1/competitors/{bib}/passings`: the competitor's raw reads in order received,
/// each with `counts`: whether its checkpoint's time is this read's (and not manual).
async fn competitor_passings(
    State(state): State<AppState>,
    ApiPath(bib): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let bib = bib_in_path(&bib)?;
    let stored = state
        .store
        .competitor_passings(&bib)
        .await?
        .ok_or_else(|| not_found(&bib))?;
    let mut counted = HashSet::new();
    let passings: Vec<Value> = parse_all(&stored.raw)
        .into_iter()
        .map(|mut read| {
            let checkpoint = read["checkpoint"].as_str().unwrap_or_default().to_owned();
            let time = read["time"]
                .as_str()
                .and_then(|t| parse_time_of_day(t).ok());
            // The first read with the checkpoint's time is the one it comes from.
            let counts = !stored.manual.contains(&checkpoint)
                && time.is_some()
                && stored.times.get(&checkpoint).copied() == time
                && counted.insert(checkpoint);
            if let Value::Object(map) = &mut read {
                map.insert("counts".into(), json!(counts));
            }
            read
        })
        .collect();
    Ok(Json(json!({ "bib": bib.as_str(), "passings": passings })))
}

/// Body of the assign route.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AssignBody {
    bib: Value,
}

/// `POST /api/v1/passings/{id}/assign` with `{"bib": "101"}`: gives an unmatched read to a
/// competitor and applies it by the rules (audited). 404 unknown read, 409 a read that is not
/// unmatched, 422 unknown competitor.
async fn assign(
    State(state): State<AppState>,
    actor: Actor,
    ApiPath(id): ApiPath<String>,
    JsonBody(body): JsonBody<AssignBody>,
) -> Result<Json<Value>, ApiError> {
    let bib = Bib::from_json(&body.bib)?;
    let raw = state
        .store
        .passing(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no read with id `{id}`")))?;
    let read: Value = serde_json::from_str(&raw)
        .map_err(|e| ApiError::Internal(format!("stored read `{id}` is not JSON: {e}")))?;
    let checkpoint = read["checkpoint"].as_str().unwrap_or_default();
    let index = state.race.checkpoint_index(checkpoint).map_err(|_| {
        ApiError::Unprocessable(format!(
            "read `{id}` is at `{checkpoint}`, not a checkpoint of this race"
        ))
    })?;
    let ms = read["time"]
        .as_str()
        .and_then(|t| parse_time_of_day(t).ok())
        .ok_or_else(|| ApiError::Internal(format!("stored read `{id}` has no valid time")))?;
    match state
        .store
        .assign(actor.as_str(), &id, &bib, index, ms)
        .await?
    {
        Assigned::Applied { outcome, reason } => Ok(Json(json!({
            "id": id,
            "bib": bib.as_str(),
            "outcome": outcome,
            "reason": (!reason.is_empty()).then_some(reason),
        }))),
        Assigned::NoRead => Err(ApiError::NotFound(format!("no read with id `{id}`"))),
        Assigned::AlreadyMatched => Err(ApiError::Conflict(format!(
            "read `{id}` is not unmatched: it already belongs to a competitor"
        ))),
        Assigned::NoCompetitor => Err(ApiError::Unprocessable(format!(
            "no competitor with bib `{bib}`"
        ))),
    }
}
