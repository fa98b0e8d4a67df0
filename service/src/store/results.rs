//! Reading a ranking page: the rank set's timed rows, the untimed set, the rank set's
//! out-of-race rows, with every row's fields from one `HMGET`; one snapshot, whatever writes
//! arrive meanwhile.
//!
//! A ranking score is the elapsed time in ms from the competitor's own start ([`UNTIMED`]
//! without both times, [`OUT`] + 1/2/3 with a DNF/DSQ/DNS status), so `ZRANGE` returns
//! finishers by time, then those without a time, then those out of the race. A competitor with
//! neither a time nor a status (every new one) is in the untimed set of each of their scopes
//! instead of in any rank set. A ranking is then the rank set below [`OUT`], the untimed set,
//! the rank set from [`OUT`] on: three ranges whose bounds come from `ZCARD`s and one `ZCOUNT`,
//! so a page costs O(log N + page size). Equal times share a rank: a row's rank is
//! `1 + ZCOUNT(-inf, (score)`, the first row's its position less the tied members just before
//! it when fewer than [`TIE_WINDOW`] are.
//!
//! # One snapshot
//!
//! Redis runs one client's pipelined reads back to back, so the first round trip (sizes, the
//! page's part of the rank set and the members just before it) is one snapshot by itself, and
//! most pages need no other. A page read in more round trips could skip or repeat a competitor
//! at the boundary between the parts, or give the first row a rank that does not match the
//! rows, if a write landed between them. Every write script bumps the version of each scope it
//! changes (`live:version`, in the same atomic step), so such a read takes the scope's version
//! first and again last (only the rows version when the later trip read rows alone): equal,
//! nothing changed in between and the reads are one snapshot; different, the page is read
//! again. After [`OPTIMISTIC_READS`] such reads (writes
//! to this scope arriving faster than a page is read), `results.lua` reads the page in one
//! atomic step. (Measured, `INFO cpu` of Redis per page of 50 rows out of 10,000: the
//! pipelined read about 160 µs, the script about 250 µs: the script copies every reply into
//! Lua and back, so it is the fallback, not the rule.)
//!
//! A ranking read often while it does not change is read whole once and kept
//! ([`Store::results_at`], `rankings`): its pages are then sliced from memory.

use std::{
    borrow::Cow,
    collections::HashMap,
    sync::{Arc, LazyLock},
};

use redis::{Script, Value};

use super::{
    OwnedScope, Scope, Store, StoreError,
    connection::Connection,
    keys,
    rankings::{Decision, RankedEntry},
};
use crate::model::Status;

/// `results.lua`: a page read in one atomic step (the fallback).
static RESULTS: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("results.lua")));

/// (bib, score) pairs of a page, in ranking order.
type Scored = Vec<(String, f64)>;
/// The row JSON of a page's bibs (`None` for a record without one), shared with the kept
/// rows: a page takes a reference to each, not a copy.
type RowsJson = Vec<Option<Arc<str>>>;

/// The start lags (net behind gun, ms) of a page's bibs.
type Lags = Vec<Option<u64>>;

/// A page's first round trip: (scope version, rows version), the rank set's size and its
/// members in the race, the untimed set's size, the page's part of the rank set, whether any
/// start lag exists, the scope version again.
type First = (
    (Option<u64>, Option<u64>),
    u64,
    u64,
    u64,
    Scored,
    bool,
    Option<u64>,
);

/// A page as read: (bib, score) pairs in ranking order, and their row JSON and start lags.
struct Page {
    page: Scored,
    rows: RowsJson,
    lags: Lags,
}

/// Results rows kept between pages: bib → row JSON (`None`: no row), under the version of the
/// rows (`live:version` field `rows`, bumped by every write of a row) they were read at. A
/// page reads only the rows it does not find here (on race day, with a start list imported,
/// all rows are soon kept, and a page reads its ranks and times only).
#[derive(Debug, Default)]
pub(super) struct RowCache {
    version: u64,
    rows: HashMap<String, Option<Arc<str>>>,
}

/// Past this many kept rows (some 10 MB) the cache starts again.
const MAX_KEPT_ROWS: usize = 50_000;

fn poisoned() -> StoreError {
    StoreError::Internal("the results rows lock is poisoned".into())
}

/// The last reply of a pipeline, converted.
fn take<T: redis::FromRedisValue>(replies: &mut Vec<Value>) -> Result<T, StoreError> {
    let value = replies
        .pop()
        .ok_or_else(|| StoreError::Internal("a reply is missing".into()))?;
    redis::from_redis_value(value).map_err(super::parse_err)
}

/// Members read before a page: a first row tied with fewer of them gets its rank without a
/// count in Redis.
const TIE_WINDOW: u64 = 4;

/// Rows per round trip of a whole ranking read to be kept (see [`Store::read_whole`]).
const WHOLE_CHUNK: u64 = 250;

/// The name of a ranking in the kept rankings: checkpoint, scope, net or gun.
fn ranking_key(query: PageQuery<'_>) -> String {
    let by = if query.by_gun { "gun" } else { "net" };
    format!("{} {} {by}", query.checkpoint, query.scope.live_name())
}

/// Version-checked pipelined reads of a page before the atomic fallback.
pub const OPTIMISTIC_READS: usize = 3;

/// Ranking score of a competitor without a time at the checkpoint (or without a start).
pub const UNTIMED: u64 = 1_000_000_000_000;
/// Base ranking score of a competitor with a status (DNF 1, DSQ 2, DNS 3 are added).
pub const OUT: u64 = 2_000_000_000_000;

/// Which page of which ranking a read asks for.
#[derive(Debug, Clone, Copy)]
pub struct PageQuery<'a> {
    /// The checkpoint ranked at.
    pub checkpoint: &'a str,
    /// Everyone, or one gender, category or country.
    pub scope: Scope<'a>,
    /// Ranked by gun time (else by net time).
    pub by_gun: bool,
    /// Rows skipped.
    pub offset: u64,
    /// Rows wanted at most.
    pub limit: u64,
}

/// A ranking (checkpoint, scope, net or gun) owning its names, for work that outlives the
/// request that asked for it: a page render other requests share, a streamed export's later
/// blocks, a whole read to keep.
#[derive(Debug, Clone)]
pub struct Ranking {
    /// The checkpoint ranked at.
    pub checkpoint: String,
    /// Everyone, or one gender or category.
    pub scope: OwnedScope,
    /// Ranked by gun time (else by net time).
    pub by_gun: bool,
}

impl Ranking {
    /// The ranking at `checkpoint` of `scope`, by gun time or net.
    pub fn new(checkpoint: &str, scope: Scope<'_>, by_gun: bool) -> Self {
        Self {
            checkpoint: checkpoint.to_owned(),
            scope: OwnedScope::new(scope),
            by_gun,
        }
    }

    /// The ranking `query` reads a page of.
    pub fn of(query: PageQuery<'_>) -> Self {
        Self::new(query.checkpoint, query.scope, query.by_gun)
    }

    /// Its page of at most `limit` rows after the first `offset`.
    pub fn page(&self, offset: u64, limit: u64) -> PageQuery<'_> {
        PageQuery {
            checkpoint: &self.checkpoint,
            scope: self.scope.scope(),
            by_gun: self.by_gun,
            offset,
            limit,
        }
    }
}

/// A competitor's fields in a results row, as `competitor_rows` holds them (JSON): written by
/// a create or an import here (`writes`), by the library's `row_of` otherwise, and copied into
/// results pages unparsed (`crate::routes::results`) or read by the CSV export. Absent fields
/// are null. (The order of the fields is the one the README and the export use.)
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct ResultsRow<'a> {
    pub first_name: Option<Cow<'a, str>>,
    pub last_name: Option<Cow<'a, str>>,
    pub gender: Option<Cow<'a, str>>,
    pub category: Option<Cow<'a, str>>,
    pub country: Option<Cow<'a, str>>,
}

impl<'a> ResultsRow<'a> {
    /// The row of a record's fields (name, value), borrowed from them.
    pub fn of(fields: &[&'a (String, String)]) -> Self {
        let get = |field: &str| {
            fields
                .iter()
                .find(|(name, _)| name == field)
                .map(|(_, value)| Cow::Borrowed(value.as_str()))
        };
        Self {
            first_name: get("first_name"),
            last_name: get("last_name"),
            gender: get("gender"),
            category: get("category"),
            country: get("country"),
        }
    }
}

impl Store {
    /// A page of the ranking of `scope` at `checkpoint` with the rows' fields, and the number
    /// of competitors in the scope, O(log N + page size), read as one snapshot (see the module
    /// documentation).
    ///
    /// The ranking is the rank set's members below [`OUT`] (finishers by time, then those
    /// with some time but none at this checkpoint), then the untimed set (no time, no status;
    /// in entry order), then the rank set's members from [`OUT`] on (DNF, DSQ, DNS).
    pub async fn results(
        &self,
        query: PageQuery<'_>,
    ) -> Result<(u64, Vec<RankedEntry>), StoreError> {
        let (_, total, entries) = self.results_read(query).await?;
        Ok((total, entries))
    }

    /// [`Store::results`] when the scope is known to be at `version` (read just before, for
    /// the ETag): a page of a ranking kept whole at that version is sliced from it without a
    /// Redis read, and page reads count towards keeping the ranking (see `rankings`).
    pub async fn results_at(
        &self,
        query: PageQuery<'_>,
        version: u64,
    ) -> Result<(u64, Vec<RankedEntry>), StoreError> {
        let ranking = ranking_key(query);
        let decision = self.rankings.lock().map_err(|_| poisoned())?.decide(
            &ranking,
            version,
            query.offset,
            query.limit,
        );
        match decision {
            Decision::Kept(total, entries) => return Ok((total, entries)),
            // This request reads its page as any other meanwhile (it waited for the whole
            // read before: 20-36 ms for 10,000 rows, against about 1 ms for a page).
            Decision::ReadWhole => self.keep_whole_in_background(query, ranking.clone(), version),
            Decision::ReadPage => {}
        }
        let (read_at, total, entries) = self.results_read(query).await?;
        if let Some(read_at) = read_at {
            self.rankings
                .lock()
                .map_err(|_| poisoned())?
                .page_read(&ranking, read_at, total);
        }
        Ok((total, entries))
    }

    /// Reads the ranking of `query` whole in a task of its own and keeps it, after
    /// [`Decision::ReadWhole`] for the ranking named `key` at `version`; gives it up (its
    /// pages are counted again) when a write changed the scope during the read, or the read
    /// failed.
    fn keep_whole_in_background(&self, query: PageQuery<'_>, key: String, version: u64) {
        let store = self.clone();
        let ranking = Ranking::of(query);
        tokio::spawn(async move {
            let whole = store.read_whole(ranking.page(0, 0)).await;
            let Ok(mut rankings) = store.rankings.lock() else {
                return;
            };
            match whole {
                Ok(Some((read_at, entries))) => rankings.keep(&key, read_at, entries),
                Ok(None) => rankings.abandon(&key, version),
                Err(err) => {
                    rankings.abandon(&key, version);
                    tracing::warn!(%err, ranking = key, "could not read a ranking whole to keep it");
                }
            }
        });
    }

    /// The whole ranking of `query` (its offset and limit aside), read in pages of
    /// [`WHOLE_CHUNK`] rows on the bulk connection, with the scope version they were all read
    /// at; `None` when a write changed the scope in between (or there is no version yet).
    /// Each page is one snapshot at its version and every change bumps the version, so pages
    /// read at one version are one snapshot together. In pages, because Redis answers nothing
    /// else while it reads: 10,000 rows at once held every other client for some 22 ms, pages
    /// of 1,000 for 1.2-1.5 ms each (and the service's one worker thread while it parsed
    /// them); of 250, a results page read meanwhile waits little longer than behind a
    /// chip-read call. On the bulk connection, because the pages read meanwhile must not
    /// queue behind them.
    async fn read_whole(
        &self,
        query: PageQuery<'_>,
    ) -> Result<Option<(u64, Vec<RankedEntry>)>, StoreError> {
        let mut entries = Vec::new();
        let mut version = None;
        loop {
            let chunk = PageQuery {
                offset: entries.len() as u64,
                limit: WHOLE_CHUNK,
                ..query
            };
            let Some((Some(read_at), total, part)) =
                self.results_pipelined(chunk, &self.bulk).await?
            else {
                return Ok(None);
            };
            if version.is_some_and(|version| version != read_at) {
                return Ok(None);
            }
            version = Some(read_at);
            let last = (part.len() as u64) < WHOLE_CHUNK;
            entries.extend(part);
            if last || entries.len() as u64 >= total {
                return Ok(Some((read_at, entries)));
            }
        }
    }

    /// Keeps at most `rows` results rows in whole rankings from now on (0: none).
    pub fn set_kept_ranking_rows(&self, rows: usize) {
        if let Ok(mut rankings) = self.rankings.lock() {
            rankings.set_limit(rows);
        }
    }

    /// Rows held by the whole rankings kept now (a ranking is read whole in the background,
    /// after the page read that decided it: tests wait for it here).
    pub fn kept_ranking_rows(&self) -> usize {
        self.rankings
            .lock()
            .map(|rankings| rankings.kept_rows())
            .unwrap_or(0)
    }

    /// The page, with the scope version it was read at when known (not after the fallback).
    async fn results_read(
        &self,
        query: PageQuery<'_>,
    ) -> Result<(Option<u64>, u64, Vec<RankedEntry>), StoreError> {
        for _ in 0..OPTIMISTIC_READS {
            if let Some(page) = self.results_pipelined(query, &self.conn).await? {
                return Ok(page);
            }
        }
        let (total, entries) = self.results_atomic(query).await?;
        Ok((None, total, entries))
    }

    /// The page read in pipelined round trips, `None` when a write changed what it read
    /// meanwhile. The first round trip reads the scope's version and that of the results
    /// rows, the sizes, whether any start lag exists, the page's part of the rank set (all
    /// of it when the page lies among the timed rows, the usual case) with the member before
    /// it ([`TIE_WINDOW`] members), and the scope version again: Redis runs one client's
    /// pipelined reads back to back, so it is one snapshot by itself. The first row's rank is
    /// its position less the members before it with the same score (a tie across the page's
    /// edge), counted in Redis when all those read tie with it. A page whose rows are
    /// all kept from earlier pages, without start lags and ties, is read in that one round
    /// trip: while chip reads are ingested the scope changes many times a second, and a page
    /// read over several round trips had to start again ever so often. Otherwise a second
    /// round trip reads what is missing: the rows not kept (one `HMGET` of
    /// `competitor_rows`), the start lags, the count of better scores for a tie, and the
    /// versions again (the rows version suffices when only rows were read: rows change only
    /// with it); a page reaching past the rank set's timed rows takes one round trip between
    /// them for the untimed and out-of-race parts.
    async fn results_pipelined(
        &self,
        query: PageQuery<'_>,
        conn: &Connection,
    ) -> Result<Option<(Option<u64>, u64, Vec<RankedEntry>)>, StoreError> {
        let PageQuery {
            checkpoint,
            scope,
            by_gun,
            offset,
            limit,
        } = query;
        let key = keys::rank(checkpoint, scope, by_gun);
        let untimed = keys::untimed(scope);
        let scope_name = keys::scope_suffix(scope);
        let out_bound = format!("({OUT}");
        // The members just before the page: whether, and with how many, the first row ties.
        let before = offset.min(TIE_WINDOW);
        let mut pipe = redis::pipe();
        pipe.cmd("HMGET")
            .arg(keys::LIVE_VERSION)
            .arg(&scope_name)
            .arg(keys::ROWS_VERSION)
            .zcard(&key)
            .zcount(&key, "-inf", &out_bound)
            .zcard(&untimed)
            .zrange_withscores(
                &key,
                (offset - before) as isize,
                (offset + limit) as isize - 1,
            )
            .exists(keys::LAGS)
            .hget(keys::LIVE_VERSION, &scope_name);
        let (versions, ranked, in_race, untimed_count, mut page, any_lag, version_after): First =
            conn.query(&pipe).await?;
        let (version, rows_version) = versions;
        if version != version_after {
            return Ok(None);
        }
        let total = ranked + untimed_count;
        let end = (offset + limit).min(total);
        // The members before the page (as many as Redis returned of them) count when they
        // are in the race (offset - 1 < in_race).
        let returned_before = (before as usize).min(page.len());
        let previous: Vec<(String, f64)> = page.drain(..returned_before).collect();
        let previous_in_race = offset <= in_race && returned_before == before as usize;
        // The rank set's rows below OUT come first: keep the page's part among them.
        page.truncate(in_race.min(end).saturating_sub(offset) as usize);
        // Then the untimed set, at positions in_race .. in_race + untimed_count, then the
        // rest of the rank set.
        let untimed_range = (
            offset.max(in_race) - in_race,
            end.min(in_race + untimed_count).saturating_sub(in_race),
        );
        let out_range = (
            offset.max(in_race + untimed_count) - untimed_count,
            end.saturating_sub(untimed_count),
        );
        let beyond_timed = untimed_range.0 < untimed_range.1 || out_range.0 < out_range.1;
        if beyond_timed {
            let mut pipe = redis::pipe();
            pipe.zrange(
                &untimed,
                untimed_range.0 as isize,
                untimed_range.1 as isize - 1,
            )
            .zrange_withscores(&key, out_range.0 as isize, out_range.1 as isize - 1);
            let (bibs, out): (Vec<String>, Vec<(String, f64)>) = conn.query(&pipe).await?;
            if untimed_range.0 < untimed_range.1 {
                page.extend(bibs.into_iter().map(|bib| (bib, UNTIMED as f64)));
            }
            if out_range.0 < out_range.1 {
                page.extend(out);
            }
        }
        let Some(&(_, first_score)) = page.first() else {
            // Only the first round trip was read, or a write changed the scope since.
            return Ok((!beyond_timed).then(|| (version, total, Vec::new())));
        };
        let first_score = first_score as u64;
        // Rank of the first row = 1 + the number of strictly better scores: its position less
        // the members before it with the same score, when a better score is among those read
        // (or they reach the top); else counted in Redis.
        let tied_before = if previous_in_race {
            previous
                .iter()
                .rev()
                .take_while(|(_, score)| *score as u64 == first_score)
                .count() as u64
        } else {
            0
        };
        let tie = first_score < UNTIMED && tied_before == before && before < offset;

        // Rows kept from earlier pages under the same rows version need no read.
        // Per row: Some(row JSON or None) once known.
        let mut rows: Vec<Option<Option<Arc<str>>>> = {
            let cache = self.rows.lock().map_err(|_| poisoned())?;
            page.iter()
                .map(|(bib, _)| match rows_version {
                    Some(v) if cache.version == v => cache.rows.get(bib).cloned(),
                    _ => None,
                })
                .collect()
        };
        let missing: Vec<&str> = page
            .iter()
            .zip(&rows)
            .filter(|(_, row)| row.is_none())
            .map(|((bib, _), _)| bib.as_str())
            .collect();
        let mut better = None;
        let mut lags: Lags = vec![None; page.len()];
        if tie || any_lag || beyond_timed || !missing.is_empty() {
            let mut pipe = redis::pipe();
            if tie {
                pipe.zcount(&key, "-inf", format!("({first_score}"));
            }
            if !missing.is_empty() {
                pipe.cmd("HMGET").arg(keys::ROWS).arg(&missing);
            }
            if any_lag {
                let bibs: Vec<&str> = page.iter().map(|(bib, _)| bib.as_str()).collect();
                pipe.cmd("HMGET").arg(keys::LAGS).arg(&bibs);
            }
            pipe.cmd("HMGET")
                .arg(keys::LIVE_VERSION)
                .arg(&scope_name)
                .arg(keys::ROWS_VERSION);
            let mut replies: Vec<Value> = conn.query(&pipe).await?;
            let (version_last, rows_version_last): (Option<u64>, Option<u64>) = take(&mut replies)?;
            // Rows change only with the rows version; everything else with the scope's.
            let unchanged = if tie || any_lag || beyond_timed {
                version_last == version
            } else {
                rows_version_last == rows_version
            };
            if !unchanged {
                return Ok(None);
            }
            if any_lag {
                lags = take(&mut replies)?;
            }
            if !missing.is_empty() {
                let mut fetched = take::<Vec<Option<String>>>(&mut replies)?.into_iter();
                let mut cache = self.rows.lock().map_err(|_| poisoned())?;
                // Rows read at the rows version of the first round trip, as checked above.
                // (Without a rows version yet, nothing is kept.)
                let keep = rows_version.is_some_and(|v| {
                    if v > cache.version || cache.rows.len() >= MAX_KEPT_ROWS {
                        cache.version = v;
                        cache.rows.clear();
                    }
                    cache.version == v
                });
                for ((bib, _), row) in page.iter().zip(rows.iter_mut()) {
                    if row.is_none() {
                        let json = fetched.next().flatten().map(Arc::from);
                        if keep {
                            cache.rows.insert(bib.clone(), json.clone());
                        }
                        *row = Some(json);
                    }
                }
            }
            if tie {
                better = Some(take::<u64>(&mut replies)?);
            }
        }
        let first_rank = (first_score < UNTIMED).then(|| match better {
            Some(better) => better + 1,
            None => offset - tied_before + 1,
        });
        let rows = rows.into_iter().map(Option::flatten).collect();
        let page = Page { page, rows, lags };
        Ok(Some((
            version,
            total,
            page.entries(offset, first_rank, by_gun),
        )))
    }

    /// The page read by `results.lua` in one atomic step. Public for the test that checks it
    /// reads the same pages as [`Store::results`].
    pub async fn results_atomic(
        &self,
        query: PageQuery<'_>,
    ) -> Result<(u64, Vec<RankedEntry>), StoreError> {
        let mut call = RESULTS.prepare_invoke();
        call.key(keys::rank(query.checkpoint, query.scope, query.by_gun))
            .key(keys::untimed(query.scope))
            .key(keys::ROWS)
            .key(keys::LAGS)
            .arg(query.offset)
            .arg(query.limit)
            .arg(OUT)
            .arg(UNTIMED);
        type Reply = (u64, u64, Scored, Vec<Option<String>>, Lags);
        let (total, better, page, rows, lags): Reply = self
            .conn
            .run(|mut conn| async move { call.invoke_async(&mut conn).await })
            .await?;
        let first_rank = page
            .first()
            .and_then(|&(_, score)| ((score as u64) < UNTIMED).then_some(better + 1));
        let rows = rows.into_iter().map(|row| row.map(Arc::from)).collect();
        let page = Page { page, rows, lags };
        Ok((total, page.entries(query.offset, first_rank, query.by_gun)))
    }
}

impl Page {
    /// The page's rows, given the first row's rank (when it is timed).
    fn entries(self, offset: u64, first_rank: Option<u64>, by_gun: bool) -> Vec<RankedEntry> {
        let mut out = Vec::with_capacity(self.page.len());
        let mut previous: Option<(u64, u64)> = None; // (score, rank) of the previous row
        for (i, (((bib, score), row_json), lag)) in self
            .page
            .into_iter()
            .zip(self.rows)
            .zip(self.lags)
            .enumerate()
        {
            let position = offset + i as u64 + 1;
            let score = score as u64;
            let (rank, elapsed_ms, status) = if score < UNTIMED {
                // Equal scores share the rank of the first of them; the page's first row
                // gets its rank from the count of better scores.
                let rank = match previous {
                    Some((prev_score, prev_rank)) if prev_score == score => prev_rank,
                    Some(_) => position,
                    None => first_rank.unwrap_or(position),
                };
                previous = Some((score, rank));
                (Some(rank), Some(score), None)
            } else if score >= OUT {
                let status = match score - OUT {
                    1 => Status::Dnf,
                    2 => Status::Dsq,
                    _ => Status::Dns,
                };
                (None, None, Some(status))
            } else {
                (None, None, None)
            };
            // The start's lag behind the gun links the two times (net falls back to gun).
            let other_ms = elapsed_ms.zip(lag).map(|(ranked, lag)| {
                if by_gun {
                    ranked.saturating_sub(lag)
                } else {
                    ranked + lag
                }
            });
            out.push(RankedEntry {
                bib,
                rank,
                elapsed_ms,
                other_ms,
                status,
                row_json,
            });
        }
        out
    }
}
