//! All Redis access: one method per query or write. No other module builds a key or sends a
//! command.
//!
//! - `keys`: every key name, defined once (and handed to the write script);
//! - `connection`: the connection that survives Redis restarts and moves, bounded in time;
//! - `results`: reading a ranking page;
//! - `import` (with `import.lua`): writing a start list, new bibs in batches;
//! - `splits`: a competitor's rank at each checkpoint;
//! - `versions`: the scope versions behind ETags and the change channel behind long polls;
//! - `mutate.lua`: the one write script, which changes a competitor's record or times and all
//!   their ranking and listing entries in one atomic step (a results page never sees a time
//!   without its ranking score).
//!
//! A results page is two pipelined round trips: `ZCARD`s, a `ZCOUNT` and a `ZRANGE` of the rank
//! set, then `ZCOUNT` + one `HMGET` of `competitor_rows` for all the page's rows, whose JSON the
//! results route copies into its answer without parsing it (a page reaching past the timed rows
//! reads its untimed and out-of-race parts in one more round trip between them).

mod connection;
pub mod keys;
mod results;
// Issue 12: the start-list import; scope versions and the change channel of live reads.
mod import;
mod splits;
mod versions;

use std::{collections::BTreeMap, sync::Arc};

use redis::{Script, Value};

use self::connection::Connection;
pub use self::{
    connection::OP_TIMEOUT,
    import::{ImportCounts, ImportRecord},
    results::{OUT, RankedEntry, UNTIMED},
    versions::{Change, Subscription},
};
use crate::{
    model::{Bib, Status},
    race::Race,
};

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

/// The Redis store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Connection>,
    mutate: Arc<Script>,
    race: Arc<Race>,
}

fn parse_err(err: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(format!("unexpected reply: {err}"))
}

impl Store {
    /// Creates the store without connecting: the first request connects, so the service starts
    /// (and answers `/health`) while Redis is still coming up.
    pub fn new(redis_url: &str, race: Arc<Race>) -> Result<Self, redis::RedisError> {
        let source = format!("{}{}", keys::lua_prelude(), include_str!("mutate.lua"));
        Ok(Self {
            conn: Arc::new(Connection::new(redis_url)?),
            mutate: Arc::new(Script::new(&source)),
            race,
        })
    }

    /// Runs `mutate.lua` with the op, the bib, its order score, the checkpoints and the op's
    /// arguments.
    async fn mutate(&self, op: &str, bib: &Bib, args: &[&str]) -> Result<Outcome, StoreError> {
        let mut call = self.mutate.prepare_invoke();
        call.arg(op)
            .arg(bib.as_str())
            .arg(bib.order_score())
            .arg(self.race.checkpoints.len());
        for checkpoint in &self.race.checkpoints {
            call.arg(checkpoint);
        }
        for arg in args {
            call.arg(*arg);
        }
        let reply: String = self
            .conn
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
        let _: (String,) = self.conn.query(&pipe).await?;
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
        pipe.hgetall(keys::competitor(bib.as_str()))
            .hget(keys::STATUS, bib.as_str());
        let (fields, status): (BTreeMap<String, String>, Option<String>) =
            self.conn.query(&pipe).await?;
        Ok((!fields.is_empty()).then(|| Competitor {
            fields,
            status: status.as_deref().and_then(Status::from_stored),
        }))
    }

    /// A competitor's times of day (checkpoint, ms), as stored, in time order.
    pub async fn times(&self, bib: &Bib) -> Result<Vec<(String, u64)>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.zrange_withscores(keys::times(bib.as_str()), 0, -1);
        let (times,): (Vec<(String, f64)>,) = self.conn.query(&pipe).await?;
        Ok(times.into_iter().map(|(c, ms)| (c, ms as u64)).collect())
    }

    /// A competitor's times and status; `None` when the competitor does not exist.
    pub async fn competitor_times(
        &self,
        bib: &Bib,
    ) -> Result<Option<(Vec<(String, u64)>, Option<Status>)>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.exists(keys::competitor(bib.as_str()))
            .zrange_withscores(keys::times(bib.as_str()), 0, -1)
            .hget(keys::STATUS, bib.as_str());
        let (exists, times, status): (bool, Vec<(String, f64)>, Option<String>) =
            self.conn.query(&pipe).await?;
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
        let mut keys = keys::listings(filter);
        let (total, bibs): (u64, Vec<String>) = match keys.as_slice() {
            [] | [_] => {
                let key = keys.pop().unwrap_or_default();
                let mut pipe = redis::pipe();
                pipe.zcard(&key)
                    .zrange(&key, offset as isize, (offset + limit) as isize - 1);
                self.conn.query(&pipe).await?
            }
            _ => {
                // Several filters: intersect (O(N), listing is not a race-day hot path).
                let mut pipe = redis::pipe();
                pipe.cmd("ZINTER")
                    .arg(keys.len())
                    .arg(&keys)
                    .arg("AGGREGATE")
                    .arg("MIN");
                let (all,): (Vec<String>,) = self.conn.query(&pipe).await?;
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
            pipe.hgetall(keys::competitor(bib)).hget(keys::STATUS, bib);
        }
        let replies: Vec<Value> = self.conn.query(&pipe).await?;
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
}
