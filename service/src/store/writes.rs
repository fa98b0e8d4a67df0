//! Every write but chip reads (`passings`): one `FCALL` of the `timing` library per change,
//! which changes the data, the derived times, the rankings and the audit entry in one atomic
//! step. `actor` is the name of the credential that made the change.

use std::collections::BTreeMap;

use redis::Value;
use serde::Serialize;

use super::{
    Outcome, PutMode, ResultsRow, Store, StoreError, connection::Connection,
    functions::now_rfc3339, parse_err,
};
use crate::{
    model::{Bib, Status},
    race::OPTIONAL_FIELDS,
};

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

/// The audit entry of a created competitor (`crate::routes::audit` reads it back): `after`
/// is the record, its keys sorted.
#[derive(Serialize)]
struct CreatedEntry<'a> {
    at: &'a str,
    actor: &'a str,
    action: &'static str,
    bib: &'a str,
    before: Option<()>,
    after: BTreeMap<&'a str, &'a str>,
}

/// JSON text written straight from borrowed values (no `serde_json::Value` built): this is on
/// the path of every create.
fn json_text(value: &impl Serialize) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|err| StoreError::Internal(format!("encoding JSON: {err}")))
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
            (
                json_text(&ResultsRow::of(&fields))?,
                json_text(&CreatedEntry {
                    at: &at,
                    actor,
                    action: "competitor.created",
                    bib: bib.as_str(),
                    before: None,
                    after: fields
                        .iter()
                        .map(|(name, value)| (name.as_str(), value.as_str()))
                        .collect(),
                })?,
            )
        };
        // A create is a function of its own (`timing_create`), without put's mode, and its
        // actor and time are in its entry; the other modes may change a competitor, whose
        // audit entry the library builds from what it reads (an argument costs a call some
        // 870 instructions).
        let (function, mode_arg) = mode.function();
        let mut args = vec![bib.as_str(), &order];
        args.extend(mode_arg);
        args.push(&row_json);
        args.push(&created_entry);
        if mode_arg.is_some() {
            args.push(actor);
            args.push(&at);
        }
        // The record's `bib` is the first argument's: the library writes it, so it is not sent
        // twice.
        for (name, value) in fields.iter().filter(|(name, _)| name != "bib") {
            args.push(name);
            args.push(value);
        }
        outcome(self.fcall_on(conn, function, &args).await?)
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
