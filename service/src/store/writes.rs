//! Every write: one `FCALL` of the `timing` library per change (per chunk of reads for a
//! batch), which changes the data, the derived times, the rankings and the audit entry in one
//! atomic step. `actor` is the name of the credential that made the change.

use std::collections::HashMap;

use redis::Value;

use super::{
    Outcome, PutMode, Store, StoreError,
    connection::Connection,
    functions::{fcall_command, now_rfc3339},
    keys, parse_err,
};
use crate::{
    model::{Bib, Status},
    race::OPTIONAL_FIELDS,
};

/// One chip or bib read of a batch, validated.
#[derive(Debug, Clone)]
pub struct Read {
    /// Unique per read from its device.
    pub id: String,
    /// Index of the checkpoint in race order.
    pub checkpoint: usize,
    /// Time of day in ms.
    pub ms: u64,
    /// Given by bib, or
    pub bib: Option<Bib>,
    /// by chip.
    pub chip: Option<String>,
    /// The read as stored (JSON).
    pub raw: String,
}

/// At most this many reads go to Redis in one atomic call (a competitor's reads are never
/// split), one call at a time: a results page waits at most for the call Redis is running in
/// each of its round trips. Measured before the times index (`bench/service.sh`'s rows while
/// ingesting 1,000 reads/s, 10,000 competitors): calls of 50 reads, some 2.6 ms each, gave
/// pages a p99 of 31 ms; of 25, 19-22 ms; of 10, 15-17 ms. With the index a call of 25 costs
/// Redis 0.55-0.75 ms, and pages kept a p99 of 6.3-9.6 ms in three runs (calls of 10: 5.8-8.5
/// ms in two); it ingests 30,000-40,000 reads/s against 27,000 in calls of 10 (fewer round
/// trips; in instructions per read a call of 25 saves only 6%: callgrind 83,700 against
/// 89,300, and 81,300 in calls of 50).
const READS_PER_CALL: usize = 25;

fn outcome(reply: Value) -> Result<Outcome, StoreError> {
    let text: String = redis::from_redis_value(reply).map_err(parse_err)?;
    Ok(match text.as_str() {
        "ok" => Outcome::Done,
        "created" => Outcome::Created,
        "missing" => Outcome::Missing,
        "exists" => Outcome::Exists,
        other => match other.split_once(':') {
            Some(("no_wave", wave)) => Outcome::UnknownWave(wave.to_owned()),
            Some(("chip_taken", bib)) => Outcome::ChipTaken(bib.to_owned()),
            Some(("in_use", n)) => Outcome::InUse(n.parse().unwrap_or(0)),
            _ => return Err(parse_err(format!("the timing library answered `{other}`"))),
        },
    })
}

impl Store {
    /// Writes a competitor record (validated by the caller, fields in definition order).
    pub async fn put_competitor(
        &self,
        actor: &str,
        mode: PutMode,
        bib: &Bib,
        fields: &[(String, String)],
    ) -> Result<Outcome, StoreError> {
        self.put_competitor_on(&self.conn, actor, mode, bib, fields)
            .await
    }

    /// [`Store::put_competitor`] on `conn` (`self.bulk` for an import).
    pub(super) async fn put_competitor_on(
        &self,
        conn: &Connection,
        actor: &str,
        mode: PutMode,
        bib: &Bib,
        fields: &[(String, String)],
    ) -> Result<Outcome, StoreError> {
        // An empty optional field (`wave`, `chip`) is an absent one.
        let fields: Vec<&(String, String)> = fields
            .iter()
            .filter(|(name, value)| !(value.is_empty() && OPTIONAL_FIELDS.contains(&name.as_str())))
            .collect();
        let (order, at) = (bib.order_score().to_string(), now_rfc3339());
        // The results row, and the audit entry should the bib be new, as JSON for the library
        // to store as they are: Redis neither encodes them nor builds the entry. (A patch
        // merges into the stored record, so the library encodes those itself.)
        let (row_json, created_entry) = if mode == PutMode::Patch {
            (String::new(), String::new())
        } else {
            let get = |field: &str| {
                fields
                    .iter()
                    .find(|(name, _)| name == field)
                    .map(|(_, value)| value.as_str())
            };
            let row = serde_json::json!({
                "first_name": get("first_name"),
                "last_name": get("last_name"),
                "gender": get("gender"),
                "category": get("category"),
                "country": get("country"),
            });
            let record: serde_json::Map<String, serde_json::Value> = fields
                .iter()
                .map(|(name, value)| (name.clone(), serde_json::Value::from(value.as_str())))
                .collect();
            let text = |s: &str| serde_json::Value::from(s).to_string();
            (
                row.to_string(),
                format!(
                    r#"{{"at":{},"actor":{},"action":"competitor.created","bib":{},"before":null,"after":{}}}"#,
                    text(&at),
                    text(actor),
                    text(bib.as_str()),
                    serde_json::Value::Object(record),
                ),
            )
        };
        let mut args = vec![
            bib.as_str(),
            &order,
            mode.as_str(),
            actor,
            &at,
            &row_json,
            &created_entry,
        ];
        // The record's `bib` is the first argument's: the library writes it, so it is not sent
        // twice.
        for (name, value) in fields.iter().filter(|(name, _)| name != "bib") {
            args.push(name);
            args.push(value);
        }
        outcome(self.fcall_on(conn, "timing_put", &args).await?)
    }

    /// Deletes a competitor with their times, status and ranking entries (raw reads stay).
    pub async fn delete_competitor(&self, actor: &str, bib: &Bib) -> Result<Outcome, StoreError> {
        let at = now_rfc3339();
        outcome(
            self.fcall("timing_delete", &[bib.as_str(), actor, &at])
                .await?,
        )
    }

    /// Sets (`Some(ms)`) or clears (`None`) manual times, all at once; the times are derived
    /// again (a cleared one falls back to the reads) and the competitor re-ranked.
    pub async fn set_times(
        &self,
        actor: &str,
        bib: &Bib,
        changes: &[(&str, Option<u64>)],
    ) -> Result<Outcome, StoreError> {
        let at = now_rfc3339();
        let values: Vec<String> = changes
            .iter()
            .map(|(_, ms)| ms.map(|ms| ms.to_string()).unwrap_or_default())
            .collect();
        let mut args = vec![bib.as_str(), actor, &at];
        for ((checkpoint, _), value) in changes.iter().zip(&values) {
            args.push(checkpoint);
            args.push(value);
        }
        outcome(self.fcall("timing_times", &args).await?)
    }

    /// Sets or clears a competitor's status and re-ranks them.
    pub async fn set_status(
        &self,
        actor: &str,
        bib: &Bib,
        status: Option<Status>,
    ) -> Result<Outcome, StoreError> {
        let at = now_rfc3339();
        let status = status.map_or("", Status::as_str);
        outcome(
            self.fcall("timing_status", &[bib.as_str(), actor, &at, status])
                .await?,
        )
    }

    /// Sets a wave's gun time (creating the wave) and re-ranks its competitors at once.
    pub async fn set_wave(&self, actor: &str, name: &str, ms: u64) -> Result<Outcome, StoreError> {
        let (at, ms) = (now_rfc3339(), ms.to_string());
        outcome(
            self.fcall("timing_wave_set", &[name, &ms, actor, &at])
                .await?,
        )
    }

    /// Deletes a wave nobody is in.
    pub async fn delete_wave(&self, actor: &str, name: &str) -> Result<Outcome, StoreError> {
        let at = now_rfc3339();
        outcome(
            self.fcall("timing_wave_delete", &[name, actor, &at])
                .await?,
        )
    }

    /// The competitors `chips` belong to (one `HMGET`); a chip nobody has is left out.
    pub async fn chip_holders<'c>(
        &self,
        chips: &[&'c str],
    ) -> Result<HashMap<&'c str, String>, StoreError> {
        if chips.is_empty() {
            return Ok(HashMap::new());
        }
        let mut pipe = redis::pipe();
        pipe.cmd("HMGET").arg(keys::CHIPS).arg(chips);
        let (found,): (Vec<Option<String>>,) = self.conn.query(&pipe).await?;
        Ok(chips
            .iter()
            .zip(found)
            .filter_map(|(chip, bib)| Some((*chip, bib?)))
            .collect())
    }

    /// Stores and applies a batch of reads; answers (outcome, reason) per read, in order.
    ///
    /// Chips are resolved first (one `HMGET`) so that the reads of one competitor, by bib or
    /// by chip, go to Redis in the same atomic call; calls of up to [`READS_PER_CALL`] reads
    /// go one after the other. (The library resolves chips again itself, so a chip
    /// reassigned in between still lands on its current holder.)
    pub async fn ingest(&self, reads: &[Read]) -> Result<Vec<(String, String)>, StoreError> {
        let chips: Vec<&str> = reads.iter().filter_map(|r| r.chip.as_deref()).collect();
        let holders = self.chip_holders(&chips).await?;
        // Group by competitor (or by unknown chip), in order of first appearance.
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut group_of: HashMap<String, usize> = HashMap::new();
        for (index, read) in reads.iter().enumerate() {
            let key = match (&read.bib, &read.chip) {
                (Some(bib), _) => bib.as_str().to_owned(),
                (None, Some(chip)) => holders
                    .get(chip.as_str())
                    .cloned()
                    .unwrap_or_else(|| format!("\0{chip}")),
                (None, None) => String::new(),
            };
            let group = *group_of.entry(key).or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
            groups[group].push(index);
        }
        let mut calls: Vec<Vec<usize>> = vec![Vec::new()];
        for group in groups {
            if calls
                .last()
                .is_some_and(|call| !call.is_empty() && call.len() + group.len() > READS_PER_CALL)
            {
                calls.push(Vec::new());
            }
            if let Some(call) = calls.last_mut() {
                call.extend(group);
            }
        }
        let at = now_rfc3339();
        let mut out = vec![(String::new(), String::new()); reads.len()];
        // One call after the other, not pipelined: Redis runs a client's pipelined commands
        // back to back, so a pipeline of the batch's calls held every results read for the
        // whole batch; one at a time, a read waits for one call at most.
        for call in &calls {
            let mut command = fcall_command("timing_passings");
            command.arg("").arg(&at);
            for &index in call {
                let read = &reads[index];
                // The library numbers checkpoints from 1.
                command
                    .arg(&read.id)
                    .arg(read.checkpoint + 1)
                    .arg(read.ms)
                    .arg(read.bib.as_ref().map_or("", Bib::as_str))
                    .arg(read.chip.as_deref().unwrap_or(""))
                    .arg(&read.raw);
            }
            let reply = self.fcall_command_on(&self.bulk, command).await?;
            let flat: Vec<String> = redis::from_redis_value(reply).map_err(parse_err)?;
            for (&index, pair) in call.iter().zip(flat.chunks(2)) {
                if let [outcome, reason] = pair {
                    out[index] = (outcome.clone(), reason.clone());
                }
            }
        }
        Ok(out)
    }

    /// Gives an unmatched read to a competitor and applies it (audited). `None` when the read
    /// does not exist or is not unmatched (see [`Assigned`]).
    pub async fn assign(
        &self,
        actor: &str,
        id: &str,
        bib: &Bib,
        checkpoint: usize,
        ms: u64,
    ) -> Result<Assigned, StoreError> {
        let at = now_rfc3339();
        let (checkpoint, ms) = ((checkpoint + 1).to_string(), ms.to_string());
        let reply = self
            .fcall(
                "timing_assign",
                &[id, bib.as_str(), actor, &at, &checkpoint, &ms],
            )
            .await?;
        let reply: Vec<String> = redis::from_redis_value(reply).map_err(parse_err)?;
        Ok(match reply.as_slice() {
            [one] if one == "no_read" => Assigned::NoRead,
            [one] if one == "matched" => Assigned::AlreadyMatched,
            [one] if one == "missing" => Assigned::NoCompetitor,
            [outcome, reason] => Assigned::Applied {
                outcome: outcome.clone(),
                reason: reason.clone(),
            },
            other => return Err(parse_err(format!("timing_assign answered {other:?}"))),
        })
    }
}

/// The answer of [`Store::assign`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assigned {
    /// Applied to the competitor, with the read's outcome.
    Applied {
        /// `applied`, `kept` or `ignored`.
        outcome: String,
        /// Why, for `kept` and `ignored`.
        reason: String,
    },
    /// No read with this id.
    NoRead,
    /// The read is not unmatched (it matched a competitor, or was assigned already).
    AlreadyMatched,
    /// No competitor with this bib.
    NoCompetitor,
}
