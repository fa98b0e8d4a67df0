//! All Redis access: the key schema, the connection that survives Redis restarts and moves, and
//! one method per query. No other module builds a key or sends a command.
//!
//! # Key schema
//!
//! | key | type | content |
//! | --- | --- | --- |
//! | `competitor:<bib>` | hash | the competitor's fields, all strings (the original's key) |
//! | `race:<bib>` | sorted set | member = checkpoint, score = time of day in ms (the original's key) |
//! | `competitor_status` | hash | bib → `DNS` / `DNF` / `DSQ` |
//! | `competitor_rows` | hash | bib → JSON object of the results-row fields (`first_name`, `last_name`, `gender`, `category`, `country`; null when absent) |
//! | `rank:<checkpoint>:all` | sorted set | competitors with a time or a status, score = ranking score at that checkpoint |
//! | `rank:<checkpoint>:gender:<g>` | sorted set | the same, for one gender |
//! | `rank:<checkpoint>:category:<c>` | sorted set | the same, for one category |
//! | `untimed:all`, `untimed:{gender,category}:<v>` | sorted set | competitors with neither a time nor a status, score = entry order (from `untimed_seq`) |
//! | `untimed_seq` | string | counter scoring the untimed sets, so entries are appended rather than inserted |
//! | `competitors:all`, `competitors:{gender,category,country}:<v>` | sorted set | bibs for listings, score = [`Bib::order_score`] |
//!
//! Rank sets exist for every checkpoint after the start. A ranking score is the elapsed time in
//! ms from the competitor's own start ([`UNTIMED`] without both times, [`OUT`] + 1/2/3 with a
//! DNF/DSQ/DNS status), so `ZRANGE` returns finishers by time, then those without a time, then
//! those out of the race. A competitor with neither a time nor a status (every new one) is
//! in the untimed set of each of their scopes instead of in any rank set, so creating a
//! competitor writes 3 ranking entries rather than 3 per checkpoint; their first time or status
//! moves them into the rank sets. A ranking is then the rank set below [`OUT`], the untimed
//! set, the rank set from [`OUT`] on: three ranges whose bounds come from `ZCARD`s and one
//! `ZCOUNT`, so a page costs O(log N + page size). Equal times share a rank: a row's rank is
//! `1 + ZCOUNT(-inf, (score)`.
//!
//! Every write goes through the Lua script `store/mutate.lua`, which changes the record or the
//! times and the ranking entries in one atomic step. A results page is two pipelined round
//! trips: `ZCARD`s, a `ZCOUNT` and a `ZRANGE` of the rank set, then `ZCOUNT` + one `HMGET` of
//! `competitor_rows` for all the page's rows, whose JSON the results route copies into its
//! answer without parsing it (a page reaching past the timed rows reads its untimed and
//! out-of-race parts in one more round trip between them). (Measured: one `HMGET` per row,
//! or the page read in a Lua script, cost Redis, the single-threaded bottleneck, about twice
//! the time per page.)
//!
//! # Connection
//!
//! One multiplexed [`ConnectionManager`] serves all requests. It reconnects by itself after an
//! I/O error, resolving the host name again (on Fargate, Redis comes back at a new address under
//! the same DNS name). A peer that vanished without closing the socket only shows as timeouts,
//! which the manager does not treat as fatal, so after a timeout the store replaces the manager
//! with a fresh one. Every operation is bounded by [`OP_TIMEOUT`]: with Redis down, requests
//! answer 503 quickly instead of hanging.

use std::{
    collections::BTreeMap,
    future::Future,
    sync::{Arc, RwLock},
    time::Duration,
};

use redis::{
    Client, RedisResult, Script, Value,
    aio::{ConnectionManager, ConnectionManagerConfig},
};

use crate::{
    model::{Bib, Status},
    race::Race,
};

/// Upper bound of one store operation, connection included.
pub const OP_TIMEOUT: Duration = Duration::from_secs(2);
/// Ranking score of a competitor without a time at the checkpoint (or without a start).
pub const UNTIMED: u64 = 1_000_000_000_000;
/// Base ranking score of a competitor with a status (DNF 1, DSQ 2, DNS 3 are added).
pub const OUT: u64 = 2_000_000_000_000;

const STATUS_KEY: &str = "competitor_status";
const ROWS_KEY: &str = "competitor_rows";

/// A failed store operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis cannot be reached or did not answer in time (HTTP 503).
    #[error("redis unavailable: {0}")]
    Unavailable(String),
    /// Redis answered with an error or an unexpected value (HTTP 500).
    #[error("redis error: {0}")]
    Internal(String),
}

/// The result of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done.
    Done,
    /// No competitor with this bib.
    Missing,
    /// A create found the bib taken.
    Exists,
}

/// How a competitor record is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutMode {
    /// Only if the bib is free.
    Create,
    /// Only if the bib exists; the record is replaced.
    Replace,
    /// Create or replace (the legacy `POST /competitor`).
    Upsert,
    /// Only if the bib exists; the given fields are merged into the record.
    Patch,
}

impl PutMode {
    fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Replace => "replace",
            Self::Upsert => "upsert",
            Self::Patch => "patch",
        }
    }
}

/// A stored competitor: fields (sorted by name) and status.
#[derive(Debug, Clone)]
pub struct Competitor {
    /// The stored fields, all strings.
    pub fields: BTreeMap<String, String>,
    /// DNS / DNF / DSQ, if set.
    pub status: Option<Status>,
}

/// A ranking filter.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// Everyone.
    All,
    /// One gender.
    Gender(&'a str),
    /// One category.
    Category(&'a str),
}

/// Filters of a competitor listing (all optional, combined with AND).
#[derive(Debug, Default, Clone, Copy)]
pub struct ListFilter<'a> {
    /// Only this gender.
    pub gender: Option<&'a str>,
    /// Only this category.
    pub category: Option<&'a str>,
    /// Only this country.
    pub country: Option<&'a str>,
}

/// One row of a ranking page, before formatting.
#[derive(Debug, Clone)]
pub struct RankedEntry {
    /// The competitor.
    pub bib: String,
    /// Rank within the scope, `None` when unranked.
    pub rank: Option<u64>,
    /// Elapsed ms from the competitor's start, when ranked.
    pub elapsed_ms: Option<u64>,
    /// DNS / DNF / DSQ, if set.
    pub status: Option<Status>,
    /// The row fields as a JSON object, as written by `mutate.lua`.
    pub row_json: Option<String>,
}

#[derive(Clone)]
struct Conn {
    generation: u64,
    manager: ConnectionManager,
}

struct Inner {
    client: Client,
    config: ConnectionManagerConfig,
    conn: RwLock<Conn>,
    mutate: Script,
    race: Arc<Race>,
}

/// The Redis store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

fn competitor_key(bib: &str) -> String {
    format!("competitor:{bib}")
}

fn times_key(bib: &str) -> String {
    format!("race:{bib}")
}

/// The rank set of `scope` at `checkpoint`.
fn rank_key(checkpoint: &str, scope: Scope<'_>) -> String {
    match scope {
        Scope::All => format!("rank:{checkpoint}:all"),
        Scope::Gender(g) => format!("rank:{checkpoint}:gender:{g}"),
        Scope::Category(c) => format!("rank:{checkpoint}:category:{c}"),
    }
}

/// The untimed set of `scope`: its competitors with neither a time nor a status.
fn untimed_key(scope: Scope<'_>) -> String {
    match scope {
        Scope::All => "untimed:all".to_owned(),
        Scope::Gender(g) => format!("untimed:gender:{g}"),
        Scope::Category(c) => format!("untimed:category:{c}"),
    }
}

fn parse_err(err: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(format!("unexpected reply: {err}"))
}

impl Store {
    /// Creates the store without connecting: the first request connects, so the service starts
    /// (and answers `/health`) while Redis is still coming up.
    pub fn new(redis_url: &str, race: Arc<Race>) -> Result<Self, redis::RedisError> {
        let client = Client::open(redis_url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), config.clone())?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                config,
                conn: RwLock::new(Conn {
                    generation: 0,
                    manager,
                }),
                mutate: Script::new(include_str!("store/mutate.lua")),
                race,
            }),
        })
    }

    fn connection(&self) -> Conn {
        match self.inner.conn.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the connection manager of `generation` with a fresh one (if nobody did yet).
    fn renew(&self, generation: u64) {
        let mut guard = match self.inner.conn.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if guard.generation != generation {
            return;
        }
        match ConnectionManager::new_lazy_with_config(
            self.inner.client.clone(),
            self.inner.config.clone(),
        ) {
            Ok(manager) => {
                tracing::warn!("redis timed out; reconnecting");
                *guard = Conn {
                    generation: generation + 1,
                    manager,
                };
            }
            Err(err) => tracing::error!(%err, "cannot create a new redis connection"),
        }
    }

    /// Runs one operation on the shared connection, bounded by [`OP_TIMEOUT`].
    async fn run<T, F, Fut>(&self, op: F) -> Result<T, StoreError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let Conn {
            generation,
            manager,
        } = self.connection();
        match tokio::time::timeout(OP_TIMEOUT, op(manager)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => {
                if err.is_timeout() {
                    self.renew(generation);
                }
                if err.is_io_error()
                    || err.is_timeout()
                    || err.is_connection_dropped()
                    || err.is_connection_refusal()
                    || err.is_unrecoverable_error()
                {
                    Err(StoreError::Unavailable(err.to_string()))
                } else {
                    Err(StoreError::Internal(err.to_string()))
                }
            }
            Err(_) => {
                self.renew(generation);
                Err(StoreError::Unavailable(format!(
                    "no answer within {} ms",
                    OP_TIMEOUT.as_millis()
                )))
            }
        }
    }

    async fn query<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<T, StoreError> {
        self.run(|mut conn| async move { pipe.query_async(&mut conn).await })
            .await
    }

    /// Runs `mutate.lua` with the op, the bib, its order score, the checkpoints and the op's
    /// arguments.
    async fn mutate(&self, op: &str, bib: &Bib, args: &[&str]) -> Result<Outcome, StoreError> {
        let mut call = self.inner.mutate.prepare_invoke();
        call.arg(op)
            .arg(bib.as_str())
            .arg(bib.order_score())
            .arg(self.inner.race.checkpoints.len());
        for checkpoint in &self.inner.race.checkpoints {
            call.arg(checkpoint);
        }
        for arg in args {
            call.arg(*arg);
        }
        let reply: String = self
            .run(|mut conn| async move { call.invoke_async(&mut conn).await })
            .await?;
        match reply.as_str() {
            "ok" => Ok(Outcome::Done),
            "missing" => Ok(Outcome::Missing),
            "exists" => Ok(Outcome::Exists),
            other => Err(parse_err(format!("mutate.lua answered `{other}`"))),
        }
    }

    /// Answers when Redis answers `PING`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.cmd("PING");
        let _: (String,) = self.query(&pipe).await?;
        Ok(())
    }

    /// Writes a competitor record (validated by the caller, fields in definition order).
    pub async fn put_competitor(
        &self,
        mode: PutMode,
        bib: &Bib,
        fields: &[(String, String)],
    ) -> Result<Outcome, StoreError> {
        let mut args = vec![mode.as_str()];
        for (name, value) in fields {
            args.push(name);
            args.push(value);
        }
        self.mutate("put", bib, &args).await
    }

    /// Deletes a competitor with their times, status and ranking entries.
    pub async fn delete_competitor(&self, bib: &Bib) -> Result<Outcome, StoreError> {
        self.mutate("delete", bib, &[]).await
    }

    /// Sets (`Some(ms)`) or clears (`None`) times, all at once, and re-ranks the competitor.
    pub async fn set_times(
        &self,
        bib: &Bib,
        changes: &[(&str, Option<u64>)],
    ) -> Result<Outcome, StoreError> {
        let values: Vec<String> = changes
            .iter()
            .map(|(_, ms)| ms.map(|ms| ms.to_string()).unwrap_or_default())
            .collect();
        let mut args = Vec::with_capacity(changes.len() * 2);
        for ((checkpoint, _), value) in changes.iter().zip(&values) {
            args.push(*checkpoint);
            args.push(value.as_str());
        }
        self.mutate("times", bib, &args).await
    }

    /// Sets or clears a competitor's status and re-ranks them.
    pub async fn set_status(
        &self,
        bib: &Bib,
        status: Option<Status>,
    ) -> Result<Outcome, StoreError> {
        self.mutate("status", bib, &[status.map_or("", Status::as_str)])
            .await
    }

    /// A competitor's record and status.
    pub async fn competitor(&self, bib: &Bib) -> Result<Option<Competitor>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.hgetall(competitor_key(bib.as_str()))
            .hget(STATUS_KEY, bib.as_str());
        let (fields, status): (BTreeMap<String, String>, Option<String>) =
            self.query(&pipe).await?;
        Ok((!fields.is_empty()).then(|| Competitor {
            fields,
            status: status.as_deref().and_then(Status::from_stored),
        }))
    }

    /// A competitor's times of day (checkpoint, ms), as stored, in time order.
    pub async fn times(&self, bib: &Bib) -> Result<Vec<(String, u64)>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.zrange_withscores(times_key(bib.as_str()), 0, -1);
        let (times,): (Vec<(String, f64)>,) = self.query(&pipe).await?;
        Ok(times.into_iter().map(|(c, ms)| (c, ms as u64)).collect())
    }

    /// A competitor's times and status; `None` when the competitor does not exist.
    pub async fn competitor_times(
        &self,
        bib: &Bib,
    ) -> Result<Option<(Vec<(String, u64)>, Option<Status>)>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.exists(competitor_key(bib.as_str()))
            .zrange_withscores(times_key(bib.as_str()), 0, -1)
            .hget(STATUS_KEY, bib.as_str());
        let (exists, times, status): (bool, Vec<(String, f64)>, Option<String>) =
            self.query(&pipe).await?;
        Ok(exists.then(|| {
            (
                times.into_iter().map(|(c, ms)| (c, ms as u64)).collect(),
                status.as_deref().and_then(Status::from_stored),
            )
        }))
    }

    /// A page of competitors (ordered by bib) matching `filter`, and the number matching.
    pub async fn list_competitors(
        &self,
        filter: ListFilter<'_>,
        offset: u64,
        limit: u64,
    ) -> Result<(u64, Vec<Competitor>), StoreError> {
        let mut keys = Vec::new();
        if let Some(g) = filter.gender {
            keys.push(format!("competitors:gender:{g}"));
        }
        if let Some(c) = filter.category {
            keys.push(format!("competitors:category:{c}"));
        }
        if let Some(c) = filter.country {
            keys.push(format!("competitors:country:{c}"));
        }
        let (total, bibs): (u64, Vec<String>) = match keys.as_slice() {
            [] | [_] => {
                let key = keys.pop().unwrap_or_else(|| "competitors:all".to_owned());
                let mut pipe = redis::pipe();
                pipe.zcard(&key)
                    .zrange(&key, offset as isize, (offset + limit) as isize - 1);
                self.query(&pipe).await?
            }
            _ => {
                // Several filters: intersect (O(N), listing is not a race-day hot path).
                let mut pipe = redis::pipe();
                pipe.cmd("ZINTER")
                    .arg(keys.len())
                    .arg(&keys)
                    .arg("AGGREGATE")
                    .arg("MIN");
                let (all,): (Vec<String>,) = self.query(&pipe).await?;
                let page = all
                    .iter()
                    .skip(offset as usize)
                    .take(limit as usize)
                    .cloned()
                    .collect();
                (all.len() as u64, page)
            }
        };
        if bibs.is_empty() {
            return Ok((total, Vec::new()));
        }
        let mut pipe = redis::pipe();
        for bib in &bibs {
            pipe.hgetall(competitor_key(bib)).hget(STATUS_KEY, bib);
        }
        let replies: Vec<Value> = self.query(&pipe).await?;
        let mut out = Vec::with_capacity(bibs.len());
        let mut replies = replies.into_iter();
        while let (Some(fields), Some(status)) = (replies.next(), replies.next()) {
            let fields: BTreeMap<String, String> =
                redis::from_redis_value(fields).map_err(parse_err)?;
            let status: Option<String> = redis::from_redis_value(status).map_err(parse_err)?;
            if !fields.is_empty() {
                out.push(Competitor {
                    fields,
                    status: status.as_deref().and_then(Status::from_stored),
                });
            }
        }
        Ok((total, out))
    }

    /// A page of the ranking of `scope` at `checkpoint` with the rows' fields, and the number
    /// of competitors in the scope, O(log N + page size).
    ///
    /// The ranking is the rank set's members below [`OUT`] (finishers by time, then those
    /// with some time but none at this checkpoint), then the untimed set (no time, no status;
    /// in entry order), then the rank set's members from [`OUT`] on (DNF, DSQ, DNS). The first round
    /// trip reads the sizes and the page's part of the rank set (all of it when the page lies
    /// among the timed rows, the usual case), the last reads the first row's rank (`ZCOUNT`)
    /// and all rows' fields (one `HMGET` of `competitor_rows`); a page reaching past the
    /// rank set's timed rows takes one round trip between them for the untimed and
    /// out-of-race parts.
    pub async fn results(
        &self,
        checkpoint: &str,
        scope: Scope<'_>,
        offset: u64,
        limit: u64,
    ) -> Result<(u64, Vec<RankedEntry>), StoreError> {
        let key = rank_key(checkpoint, scope);
        let untimed = untimed_key(scope);
        let out_bound = format!("({OUT}");
        let mut pipe = redis::pipe();
        pipe.zcard(&key)
            .zcount(&key, "-inf", &out_bound)
            .zcard(&untimed)
            .zrange_withscores(&key, offset as isize, (offset + limit) as isize - 1);
        let (ranked, in_race, untimed_count, mut page): (u64, u64, u64, Vec<(String, f64)>) =
            self.query(&pipe).await?;
        let total = ranked + untimed_count;
        let end = (offset + limit).min(total);
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
        if untimed_range.0 < untimed_range.1 || out_range.0 < out_range.1 {
            let mut pipe = redis::pipe();
            pipe.zrange(
                &untimed,
                untimed_range.0 as isize,
                untimed_range.1 as isize - 1,
            )
            .zrange_withscores(&key, out_range.0 as isize, out_range.1 as isize - 1);
            let (bibs, out): (Vec<String>, Vec<(String, f64)>) = self.query(&pipe).await?;
            if untimed_range.0 < untimed_range.1 {
                page.extend(bibs.into_iter().map(|bib| (bib, UNTIMED as f64)));
            }
            if out_range.0 < out_range.1 {
                page.extend(out);
            }
        }
        let Some(&(_, first_score)) = page.first() else {
            return Ok((total, Vec::new()));
        };
        let first_score = first_score as u64;

        let mut pipe = redis::pipe();
        // Rank of the first row = 1 + the number of strictly better scores.
        let score_bound = if first_score < UNTIMED {
            format!("({first_score}")
        } else {
            "-inf".to_owned()
        };
        pipe.zcount(&key, "-inf", score_bound)
            .cmd("HMGET")
            .arg(ROWS_KEY);
        for (bib, _) in &page {
            pipe.arg(bib);
        }
        let (better, rows): (u64, Vec<Option<String>>) = self.query(&pipe).await?;
        let first_rank = (first_score < UNTIMED).then_some(better + 1);

        let mut out = Vec::with_capacity(page.len());
        let mut previous: Option<(u64, u64)> = None; // (score, rank) of the previous row
        for (i, ((bib, score), row_json)) in page.into_iter().zip(rows).enumerate() {
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
            out.push(RankedEntry {
                bib,
                rank,
                elapsed_ms,
                status,
                row_json,
            });
        }
        Ok((total, out))
    }
}
