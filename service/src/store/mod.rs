//! All Redis access: one method per query or write. No other module builds a key or sends a
//! command.
//!
//! - `keys`: every key name, defined once (and handed to the functions library);
//! - `connection`: the connection that survives Redis restarts and moves, bounded in time;
//! - `functions`: the Redis Functions library `timing.lua`, loaded once, called by `FCALL`;
//! - `writes`: every write, one atomic function call each (record, raw reads, manual and
//!   derived times, rankings and the audit entry change together);
//! - `passings`: chip-read batches, in calls planned in the service from the times index
//!   entries (`index`) where the rules allow, else decided by the library;
//! - `timing`: reading waves, raw reads, a competitor's times with their split ranks (one
//!   atomic read, a function of the library) and the audit trail;
//! - `results`: reading a ranking page;
//! - `rankings`: whole rankings kept in memory while they do not change, read whole once
//!   their pages are read often enough;
//! - `import`: writing a start list, new bibs in batches (the library's `timing_import`);
//! - `versions`: the scope versions behind ETags and the change channel behind long polls.
//!
//! A results page is one pipelined round trip when the service keeps its rows already: `ZCARD`s,
//! a `ZCOUNT` and a `ZRANGE` of the rank set; else one more for `HMGET` of `competitor_rows`
//! (rows are kept under their version, see `results`), the start lags or a long tie's
//! `ZCOUNT`. The results route copies the rows' JSON into its answer without parsing it (a page
//! reaching past the timed rows reads its untimed and out-of-race parts in one more round trip).
//!
//! Chip-read batches and imports use a second connection (`bulk`): answers on one multiplexed
//! connection come in order, and a results page must not queue behind a batch's calls.

mod connection;
mod functions;
pub mod keys;
mod rankings;
mod results;
// Issue 12: the start-list import; scope versions and the change channel of live reads.
mod import;
// Chip-read batches: the times index entries read in the service, and calls planned from them.
mod index;
mod passings;
mod timing;
mod versions;
mod writes;

use std::{collections::BTreeMap, sync::Arc};

use redis::Value;

use self::connection::Connection;
pub use self::{
    connection::OP_TIMEOUT,
    import::{ImportCounts, ImportRecord},
    passings::Read,
    rankings::{DEFAULT_KEPT_RANKING_ROWS, RankedEntry},
    results::{OUT, PageQuery, Ranking, ResultsRow, UNTIMED},
    timing::{AuditPage, CompetitorPassings, CompetitorTimes, Wave},
    versions::{Change, Subscription},
    writes::Assigned,
};
use crate::{
    model::{Bib, Status},
    race::Race,
};

/// A failed store operation (`Clone`: one failed read can answer every request that shared it).
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// Redis cannot be reached or did not answer in time (HTTP 503).
    #[error("redis unavailable: {0}")]
    Unavailable(String),
    /// Redis answered with an error or an unexpected value (HTTP 500).
    #[error("redis error: {0}")]
    Internal(String),
}

/// The result of a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done (an existing thing changed).
    Done,
    /// Done, and it did not exist before.
    Created,
    /// No competitor (or wave) with this name.
    Missing,
    /// A create found the bib taken.
    Exists,
    /// The competitor names a wave that does not exist.
    UnknownWave(String),
    /// The chip belongs to this other competitor.
    ChipTaken(String),
    /// The wave still has this many competitors.
    InUse(u64),
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
    /// The library function that writes in this mode, and the mode argument it takes:
    /// `timing_create` for a create, `timing_put` with its mode for the others.
    fn function(self) -> (&'static str, Option<&'static str>) {
        match self {
            Self::Create => ("timing_create", None),
            Self::Replace => ("timing_put", Some("replace")),
            Self::Upsert => ("timing_put", Some("upsert")),
            Self::Patch => ("timing_put", Some("patch")),
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

/// A [`Scope`] owning its name, for work that outlives the request that named it (a render
/// shared by other requests, a streamed export).
#[derive(Debug, Clone)]
pub enum OwnedScope {
    /// Everyone.
    All,
    /// One gender.
    Gender(String),
    /// One category.
    Category(String),
}

impl OwnedScope {
    /// `scope`, owned.
    pub fn new(scope: Scope<'_>) -> Self {
        match scope {
            Scope::All => Self::All,
            Scope::Gender(g) => Self::Gender(g.to_owned()),
            Scope::Category(c) => Self::Category(c.to_owned()),
        }
    }

    /// The scope, borrowed.
    pub fn scope(&self) -> Scope<'_> {
        match self {
            Self::All => Scope::All,
            Self::Gender(g) => Scope::Gender(g),
            Self::Category(c) => Scope::Category(c),
        }
    }
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

impl ListFilter<'_> {
    /// Whether it lets every competitor through.
    pub fn is_none(&self) -> bool {
        self.gender.is_none() && self.category.is_none() && self.country.is_none()
    }
}

/// The Redis store; cheap to clone: its clones share one [`Shared`] (every request clones
/// the service's state, and one reference count to change is cheaper than one a part).
#[derive(Clone)]
pub struct Store(Arc<Shared>);

/// What the clones of a [`Store`] share: its connections, caches and settings.
pub struct Shared {
    conn: Connection,
    /// A second connection for bulk work (chip-read batches, imports, whole rankings read to
    /// be kept): requests on one
    /// multiplexed connection are answered in order, so a results page queued behind a batch's
    /// calls would wait for all of them; on its own connection it waits at most for the call
    /// Redis is running.
    bulk: Connection,
    /// The functions library of this race and version.
    library: functions::Library,
    /// Results rows kept between pages (see `results`).
    rows: std::sync::Mutex<results::RowCache>,
    /// Whole rankings kept while they do not change (see `rankings`).
    rankings: std::sync::Mutex<rankings::Rankings>,
    /// The race: its checkpoints and read rules (see `passings`), and its last checkpoint,
    /// whose rank sets the listing by gender or category reads.
    race: Arc<Race>,
    /// Whether chip-read calls are planned in the service (see `passings`).
    planning: passings::Planning,
}

impl std::ops::Deref for Store {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

fn parse_err(err: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(format!("unexpected reply: {err}"))
}

impl Store {
    /// Creates the store without connecting: the first request connects, so the service starts
    /// (and answers `/health`) while Redis is still coming up.
    pub fn new(redis_url: &str, race: Arc<Race>) -> Result<Self, redis::RedisError> {
        Ok(Self(Arc::new(Shared {
            conn: Connection::new(redis_url)?,
            bulk: Connection::new(redis_url)?,
            library: functions::Library::for_race(&race),
            rows: std::sync::Mutex::default(),
            rankings: std::sync::Mutex::default(),
            race,
            planning: passings::Planning::default(),
        })))
    }

    /// Answers when Redis answers `PING`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.cmd("PING");
        let _: (String,) = self.conn.query(&pipe).await?;
        Ok(())
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

    /// A page of competitors (ordered by bib) matching `filter`, and the number matching.
    pub async fn list_competitors(
        &self,
        filter: ListFilter<'_>,
        offset: u64,
        limit: u64,
    ) -> Result<(u64, Vec<Competitor>), StoreError> {
        let (total, bibs) = self.listed_bibs(filter, offset, limit).await?;
        Ok((total, self.competitors_of(&bibs).await?))
    }

    /// The bibs of a page of the listing (ordered by bib) matching `filter`, and the number
    /// matching.
    pub async fn listed_bibs(
        &self,
        filter: ListFilter<'_>,
        offset: u64,
        limit: u64,
    ) -> Result<(u64, Vec<String>), StoreError> {
        if filter.is_none() {
            let mut pipe = redis::pipe();
            pipe.zcard(keys::LISTING_ALL).zrange(
                keys::LISTING_ALL,
                offset as isize,
                (offset + limit) as isize - 1,
            );
            return self.conn.query(&pipe).await;
        }
        let all = self.filtered_bibs(filter).await?;
        let page = all
            .iter()
            .skip(offset as usize)
            .take(limit as usize)
            .cloned()
            .collect();
        Ok((all.len() as u64, page))
    }

    /// Every bib matching `filter`, in listing order (read once by an export that lists them
    /// all, instead of once per block).
    pub async fn filtered_bibs(&self, filter: ListFilter<'_>) -> Result<Vec<String>, StoreError> {
        let all = self.filtered(filter).await?;
        Ok(all.into_iter().map(|(bib, _)| bib).collect())
    }

    /// The competitors of `bibs`, in that order (one pipelined round trip); a bib deleted
    /// meanwhile is left out.
    pub async fn competitors_of(&self, bibs: &[String]) -> Result<Vec<Competitor>, StoreError> {
        if bibs.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for bib in bibs {
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
        Ok(out)
    }

    /// Every competitor matching a filter, with their listing scores, ordered by bib (O(N) in
    /// the scope: listing is not a race-day hot path, and creates stay cheap without a listing
    /// set per gender and category). A competitor of a scope is in its untimed set or, once they
    /// have a time or a status, in its rank sets (at every checkpoint after the start): the
    /// filter is `competitors:all` ∩ (untimed sets ∪ rank sets at the finish) ∩ the country's
    /// listing, read as two `ZINTER`s in one transaction: the untimed sets of all the filter's
    /// scopes, and their rank sets (a competitor is in all of their scopes' untimed sets or in
    /// all of their rank sets, never in a mix).
    async fn filtered(&self, filter: ListFilter<'_>) -> Result<Vec<(String, f64)>, StoreError> {
        let scopes: Vec<Scope<'_>> = [
            filter.gender.map(Scope::Gender),
            filter.category.map(Scope::Category),
        ]
        .into_iter()
        .flatten()
        .collect();
        let country = filter.country.map(keys::country_listing);
        let groups: Vec<Vec<String>> = if scopes.is_empty() {
            vec![Vec::new()]
        } else {
            vec![
                scopes.iter().map(|&scope| keys::untimed(scope)).collect(),
                scopes
                    .iter()
                    .map(|&scope| keys::rank(self.race.finish(), scope, false))
                    .collect(),
            ]
        };
        let mut pipe = redis::pipe();
        pipe.atomic();
        for group in &groups {
            let mut sets: Vec<&str> = vec![keys::LISTING_ALL];
            sets.extend(group.iter().map(String::as_str));
            sets.extend(country.as_deref());
            // Scores are `competitors:all`'s (weight 1; the others 0).
            let weights: Vec<u32> = (0..sets.len()).map(|i| u32::from(i == 0)).collect();
            pipe.cmd("ZINTER")
                .arg(sets.len())
                .arg(&sets)
                .arg("WEIGHTS")
                .arg(&weights)
                .arg("WITHSCORES");
        }
        let parts: Vec<Vec<(String, f64)>> = self.conn.query(&pipe).await?;
        // In the order of `competitors:all`: by score, then by bib as Redis orders equal scores.
        let mut all: Vec<(String, f64)> = parts.into_iter().flatten().collect();
        all.sort_by(|(a, x), (b, y)| x.total_cmp(y).then_with(|| a.as_bytes().cmp(b.as_bytes())));
        Ok(all)
    }
}
