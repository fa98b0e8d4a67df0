//! Reading what the timing model keeps besides records and rankings: waves, raw reads, a
//! competitor's times with their origin and split ranks, and the audit trail.

use std::collections::{BTreeMap, HashSet};

use super::{Store, StoreError, keys, parse_err};
use crate::model::{Bib, Status};

/// A wave and its gun time.
#[derive(Debug, Clone)]
pub struct Wave {
    /// Its name.
    pub name: String,
    /// Gun time of day in ms.
    pub start_ms: u64,
    /// How many competitors are in it.
    pub competitors: u64,
}

/// A competitor's times with what they are measured from.
#[derive(Debug, Clone)]
pub struct CompetitorTimes {
    /// The version of scope `all` they were read at (the ETag of the times route).
    pub version: u64,
    /// (checkpoint, time of day in ms) for every checkpoint with a time.
    pub times: BTreeMap<String, u64>,
    /// The checkpoints whose time is manual (overrides the reads).
    pub manual: Vec<String>,
    /// DNS / DNF / DSQ, if set.
    pub status: Option<Status>,
    /// The competitor's wave, if any.
    pub wave: Option<String>,
    /// That wave's gun time, if it has one.
    pub gun_ms: Option<u64>,
    /// Rank in the whole field (net) at each of the race's checkpoints, in its order: `None`
    /// without a time there or out of the race. Equal times share a rank.
    pub ranks: Vec<Option<u64>>,
}

/// A competitor's raw reads with the times they may count for.
#[derive(Debug, Clone)]
pub struct CompetitorPassings {
    /// The raw reads (JSON as received), in order received.
    pub raw: Vec<String>,
    /// (checkpoint, time of day in ms) for every checkpoint with a time.
    pub times: BTreeMap<String, u64>,
    /// The checkpoints whose time is manual (overrides the reads).
    pub manual: Vec<String>,
}

/// A page of audit entries (JSON objects as stored), newest first.
#[derive(Debug, Clone)]
pub struct AuditPage {
    /// Entries in the list.
    pub total: u64,
    /// The page.
    pub entries: Vec<String>,
}

impl Store {
    /// The names of the waves (one `HKEYS`), for checking references to them.
    pub async fn wave_names(&self) -> Result<HashSet<String>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.hkeys(keys::WAVES);
        let (names,): (HashSet<String>,) = self.conn.query(&pipe).await?;
        Ok(names)
    }

    /// Every wave, by name.
    pub async fn waves(&self) -> Result<Vec<Wave>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.hgetall(keys::WAVES);
        let (waves,): (BTreeMap<String, u64>,) = self.conn.query(&pipe).await?;
        if waves.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for name in waves.keys() {
            pipe.scard(keys::wave_members(name));
        }
        let counts: Vec<u64> = self.conn.query(&pipe).await?;
        Ok(waves
            .into_iter()
            .zip(counts)
            .map(|((name, start_ms), competitors)| Wave {
                name,
                start_ms,
                competitors,
            })
            .collect())
    }

    /// A competitor's times, what they come from, their rank in the whole field at each of
    /// the race's checkpoints and the version of scope `all` they were read at; `None` when
    /// the competitor does not exist. One atomic read (the library's
    /// `timing_competitor_times`), so the ranks are those of these times and the version that
    /// of both.
    pub async fn competitor_times(&self, bib: &Bib) -> Result<Option<CompetitorTimes>, StoreError> {
        const FUNCTION: &str = "timing_competitor_times";
        type Times = (
            Option<String>,
            Option<u64>,
            Option<String>,
            Vec<(String, f64)>,
            Vec<String>,
            Vec<Option<u64>>,
        );
        let reply = self.fcall(FUNCTION, &[bib.as_str()]).await?;
        let (version, times): (u64, Option<Times>) = redis::from_redis_value(reply)
            .map_err(|err| parse_err(format!("{FUNCTION}: {err}")))?;
        let Some((wave, gun_ms, status, times, manual, ranks)) = times else {
            return Ok(None);
        };
        Ok(Some(CompetitorTimes {
            version,
            times: times.into_iter().map(|(c, ms)| (c, ms as u64)).collect(),
            manual,
            status: status.as_deref().and_then(Status::from_stored),
            wave,
            gun_ms,
            ranks,
        }))
    }

    /// A competitor's raw reads (JSON as stored, in order received) with their times and
    /// which are manual; `None` when the competitor does not exist. One atomic read (the
    /// library's `timing_competitor_passings`), so the reads and times agree.
    pub async fn competitor_passings(
        &self,
        bib: &Bib,
    ) -> Result<Option<CompetitorPassings>, StoreError> {
        const FUNCTION: &str = "timing_competitor_passings";
        type Reply = Option<(Vec<String>, Vec<(String, f64)>, Vec<String>)>;
        let reply = self.fcall(FUNCTION, &[bib.as_str()]).await?;
        let reply: Reply = redis::from_redis_value(reply)
            .map_err(|err| parse_err(format!("{FUNCTION}: {err}")))?;
        Ok(reply.map(|(raw, times, manual)| CompetitorPassings {
            raw,
            times: times.into_iter().map(|(c, ms)| (c, ms as u64)).collect(),
            manual,
        }))
    }

    async fn raw_reads(&self, ids: &[&str]) -> Result<Vec<String>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        pipe.cmd("HMGET").arg(keys::PASSINGS).arg(ids);
        let (raw,): (Vec<Option<String>>,) = self.conn.query(&pipe).await?;
        Ok(raw.into_iter().flatten().collect())
    }

    /// A page of the reads that matched no competitor (oldest first), and their number.
    pub async fn unmatched_passings(
        &self,
        offset: u64,
        limit: u64,
    ) -> Result<(u64, Vec<String>), StoreError> {
        let mut pipe = redis::pipe();
        pipe.zcard(keys::UNMATCHED).zrange(
            keys::UNMATCHED,
            offset as isize,
            (offset + limit) as isize - 1,
        );
        let (total, ids): (u64, Vec<String>) = self.conn.query(&pipe).await?;
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        Ok((total, self.raw_reads(&ids).await?))
    }

    /// One raw read by id.
    pub async fn passing(&self, id: &str) -> Result<Option<String>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.hget(keys::PASSINGS, id);
        let (raw,): (Option<String>,) = self.conn.query(&pipe).await?;
        Ok(raw)
    }

    /// A page of the audit trail, of one competitor or of everything, newest first.
    pub async fn audit(
        &self,
        bib: Option<&Bib>,
        offset: u64,
        limit: u64,
    ) -> Result<AuditPage, StoreError> {
        let key = keys::audit(bib.map(Bib::as_str));
        let mut pipe = redis::pipe();
        pipe.llen(&key)
            .lrange(&key, offset as isize, (offset + limit) as isize - 1);
        let (total, entries): (u64, Vec<String>) = self.conn.query(&pipe).await?;
        Ok(AuditPage { total, entries })
    }
}
