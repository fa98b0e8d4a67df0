//! CSV exports of the results and of the start list: `GET /api/v1/results` and
//! `GET /api/v1/competitors` with `?format=csv` or `Accept: text/csv`.
//!
//! The whole list (or the `offset`/`limit` page when given) in one download, streamed: the
//! body is written 500 rows at a time as they are read, so a list of any length costs the
//! service one block of memory. Columns are stable (documented in the service README):
//!
//! - results: `rank,bib,first_name,last_name,gender,category,country,elapsed,elapsed_ms,gun,
//!   gun_ms,net,net_ms,status` (`elapsed` is the time ranked by, net or gun; `rank` and the times
//!   empty when unranked or unknown, times `hh:mm:ss.SSS`);
//! - competitors: the race definition's fields in its order, then `status`; the same columns
//!   the import reads, so an export imports back unchanged.
//!
//! Each block is one consistent read; a download taken while times arrive may show a
//! competitor who moved between blocks twice or not at all (take the final export after the
//! last write).

use std::borrow::Cow;

use axum::{
    body::{Body, Bytes},
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use futures::StreamExt;

use crate::{
    error::ApiError,
    live,
    model::format_ms,
    state::AppState,
    store::{Competitor, ListFilter, RankedEntry, Ranking, ResultsRow, Scope, Store, StoreError},
};

/// Rows read and written per block.
const BLOCK: u64 = 500;
/// Columns of the results export.
pub const RESULT_COLUMNS: [&str; 14] = [
    "rank",
    "bib",
    "first_name",
    "last_name",
    "gender",
    "category",
    "country",
    "elapsed",
    "elapsed_ms",
    "gun",
    "gun_ms",
    "net",
    "net_ms",
    "status",
];

/// The rows to export: `offset` (default 0) and `limit` (default all).
#[derive(Debug, Clone, Copy)]
pub struct Span {
    /// First row.
    pub offset: u64,
    /// Rows at most.
    pub limit: Option<u64>,
}

impl Span {
    /// The next block to read after `done` rows, `None` when the span is read.
    fn block(self, done: u64) -> Option<(u64, u64)> {
        let left = self.limit.map_or(BLOCK, |limit| limit.saturating_sub(done));
        (left > 0).then(|| (self.offset + done, left.min(BLOCK)))
    }
}

/// One CSV line per record, quoted where needed.
fn csv_block<I, R>(records: I) -> Bytes
where
    I: IntoIterator<Item = R>,
    R: IntoIterator,
    R::Item: AsRef<[u8]>,
{
    let mut writer = csv::Writer::from_writer(Vec::with_capacity(64 * 1024));
    for record in records {
        // Writing to a Vec cannot fail.
        let _ = writer.write_record(record);
    }
    Bytes::from(writer.into_inner().unwrap_or_default())
}

/// A results row as CSV cells; `by_gun`: the ranking is by gun time (so `elapsed_ms` is the
/// gun time and `other_ms` the net time).
fn result_record(entry: &RankedEntry, by_gun: bool) -> [String; 14] {
    let fields: ResultsRow<'_> = entry
        .row_json
        .as_deref()
        .and_then(|json| serde_json::from_str(json).ok())
        .unwrap_or_default();
    let text = |field: Option<Cow<'_, str>>| field.map(Cow::into_owned).unwrap_or_default();
    let number = |n: Option<u64>| n.map(|n| n.to_string()).unwrap_or_default();
    let time = |n: Option<u64>| n.map(|ms| format_ms(ms, '.')).unwrap_or_default();
    let (gun, net) = entry.gun_and_net(by_gun);
    [
        number(entry.rank),
        entry.bib.clone(),
        text(fields.first_name),
        text(fields.last_name),
        text(fields.gender),
        text(fields.category),
        text(fields.country),
        time(entry.elapsed_ms),
        number(entry.elapsed_ms),
        time(gun),
        number(gun),
        time(net),
        number(net),
        entry
            .status
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default(),
    ]
}

fn competitor_record(fields: &[String], competitor: &Competitor) -> Vec<String> {
    fields
        .iter()
        .map(|f| competitor.fields.get(f).cloned().unwrap_or_default())
        .chain([competitor
            .status
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default()])
        .collect()
}

/// A listing filter owned by the stream.
#[derive(Debug, Clone, Default)]
pub struct OwnedFilter {
    /// Only this gender.
    pub gender: Option<String>,
    /// Only this category.
    pub category: Option<String>,
    /// Only this country.
    pub country: Option<String>,
}

/// What an export lists.
enum Source {
    Results {
        /// Owned by the stream: blocks are read after the handler returned.
        ranking: Ranking,
        /// The scope's version in the ETag: while the ranking is kept whole at it, blocks are
        /// sliced from it (`Store::results_at`); after a write, read from Redis.
        version: u64,
    },
    Competitors {
        fields: Vec<String>,
        filter: OwnedFilter,
        /// With a filter, the matching bibs, read at the first block: a filtered listing
        /// reads the whole scope, which once per block would make an export quadratic.
        matching: Option<Vec<String>>,
    },
}

impl Source {
    /// The CSV lines of rows `offset .. offset + limit` and their number.
    async fn block(
        &mut self,
        store: &Store,
        offset: u64,
        limit: u64,
    ) -> Result<(Bytes, u64), StoreError> {
        match self {
            Self::Results { ranking, version } => {
                let query = ranking.page(offset, limit);
                let (_, entries) = store.results_at(query, *version).await?;
                Ok((
                    csv_block(entries.iter().map(|e| result_record(e, ranking.by_gun))),
                    entries.len() as u64,
                ))
            }
            Self::Competitors {
                fields,
                filter,
                matching,
            } => {
                let list = ListFilter {
                    gender: filter.gender.as_deref(),
                    category: filter.category.as_deref(),
                    country: filter.country.as_deref(),
                };
                let bibs = if list.is_none() {
                    store.listed_bibs(list, offset, limit).await?.1
                } else {
                    if matching.is_none() {
                        *matching = Some(store.filtered_bibs(list).await?);
                    }
                    let all = matching.as_deref().unwrap_or_default();
                    let start = usize::try_from(offset).unwrap_or(usize::MAX).min(all.len());
                    let end = start.saturating_add(limit as usize).min(all.len());
                    all[start..end].to_vec()
                };
                let page = store.competitors_of(&bibs).await?;
                // Rows of the listing read, not written: a competitor deleted meanwhile
                // must not end the export early.
                Ok((
                    csv_block(page.iter().map(|c| competitor_record(fields, c))),
                    bibs.len() as u64,
                ))
            }
        }
    }
}

/// Where a streamed export is.
struct Progress {
    store: Store,
    source: Source,
    span: Span,
    /// Rows written.
    done: u64,
    /// The last block was short: nothing follows.
    finished: bool,
}

impl Progress {
    /// The next block, `None` at the end.
    async fn next(mut self) -> Result<Option<(Bytes, Self)>, StoreError> {
        let Some((offset, limit)) = self.span.block(self.done).filter(|_| !self.finished) else {
            return Ok(None);
        };
        let (block, rows) = self.source.block(&self.store, offset, limit).await?;
        if rows == 0 {
            return Ok(None);
        }
        self.done += rows;
        self.finished = rows < limit;
        Ok(Some((block, self)))
    }
}

/// A streamed CSV answer: the header line and the first block are read before answering (so
/// a store failure is still a proper 503), the rest block by block as the client reads.
async fn export(
    state: &AppState,
    name: &str,
    header: &[&str],
    source: Source,
    span: Span,
    etag: &str,
) -> Result<Response, ApiError> {
    let progress = Progress {
        store: state.store.clone(),
        source,
        span,
        done: 0,
        finished: false,
    };
    let mut first = csv_block([header]).to_vec();
    let rest = match progress.next().await? {
        Some((block, progress)) => {
            first.extend_from_slice(&block);
            Some(progress)
        }
        None => None,
    };
    let rest = futures::stream::try_unfold(rest, |progress| async move {
        match progress {
            Some(progress) => Ok(progress.next().await?.map(|(b, p)| (b, Some(p)))),
            None => Ok(None),
        }
    });
    let body =
        futures::stream::once(async move { Ok::<_, StoreError>(Bytes::from(first)) }).chain(rest);
    let mut response = Body::from_stream(body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(disposition) = HeaderValue::from_str(&format!("attachment; filename=\"{name}.csv\""))
    {
        headers.insert(header::CONTENT_DISPOSITION, disposition);
    }
    for (name, value) in live::headers(etag) {
        headers.insert(name, value);
    }
    Ok(response)
}

/// The results of `scope` at `checkpoint` as CSV, the scope being at `version` (in `etag`).
pub async fn results(
    state: &AppState,
    checkpoint: &str,
    scope: Scope<'_>,
    by_gun: bool,
    span: Span,
    etag: &str,
    version: u64,
) -> Result<Response, ApiError> {
    let source = Source::Results {
        ranking: Ranking::new(checkpoint, scope, by_gun),
        version,
    };
    let name = format!("results-{checkpoint}");
    export(state, &name, &RESULT_COLUMNS, source, span, etag).await
}

/// The competitor list as CSV: the definition's fields, then `status`.
pub async fn competitors(
    state: &AppState,
    filter: OwnedFilter,
    span: Span,
    etag: &str,
) -> Result<Response, ApiError> {
    let header: Vec<&str> = state
        .race
        .fields
        .iter()
        .map(String::as_str)
        .chain(["status"])
        .collect();
    let source = Source::Competitors {
        fields: state.race.fields.clone(),
        filter,
        matching: None,
    };
    export(state, "competitors", &header, source, span, etag).await
}
