//! Writing a validated start list (the import route, `crate::routes::import`): new bibs by the
//! `timing` library's `timing_import` in chunks, each chunk one call that batches its set
//! entries and writes each new competitor's audit entry and the scope versions; bibs that exist
//! (or have times or a status already, or carry a `wave` or `chip`, whose indexes `timing_put`
//! keeps) through the ordinary upsert, many at once on the store's connection for bulk writes
//! (pipelined, not one round trip after another; results pages do not queue behind them).

use std::collections::HashSet;

use futures::{StreamExt, TryStreamExt};

use super::{Outcome, PutMode, Store, StoreError, functions::now_rfc3339, keys, parse_err};
use crate::model::{Bib, Status};

/// Competitors per `timing_import` call: a call holds Redis for about 5 ms, so other requests
/// wait at most that long behind one.
const CREATE_CHUNK: usize = 500;
/// Upserts of existing competitors in flight at once.
const UPSERTS_IN_FLIGHT: usize = 64;

/// One validated row of a start list.
#[derive(Debug, Clone)]
pub struct ImportRecord {
    /// The bib.
    pub bib: Bib,
    /// The fields in definition order (`bib` included), as `Race::validate_competitor` gives.
    pub fields: Vec<(String, String)>,
    /// `Some` when the file has a `status` column: the status to set (`None` clears it).
    pub status: Option<Option<Status>>,
}

/// What an import wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportCounts {
    /// Competitors created.
    pub created: usize,
    /// Existing competitors replaced (times and status kept unless the file has a status).
    pub updated: usize,
}

impl Store {
    /// Upserts `records` (bibs unique, fields validated, every record with the same field
    /// names in the same order). Not one transaction: a failure part-way leaves the rows
    /// before it written, and importing the file again completes it (upserts are idempotent).
    pub async fn import(
        &self,
        actor: &str,
        records: &[ImportRecord],
    ) -> Result<ImportCounts, StoreError> {
        let Some(first) = records.first() else {
            return Ok(ImportCounts::default());
        };
        let names: Vec<&str> = first.fields.iter().map(|(name, _)| name.as_str()).collect();
        // Bibs left to the ordinary upsert.
        let mut existing: HashSet<&str> = HashSet::new();
        for chunk in records.chunks(CREATE_CHUNK) {
            let at = now_rfc3339();
            let count = names.len().to_string();
            let orders: Vec<String> = chunk
                .iter()
                .map(|r| r.bib.order_score().to_string())
                .collect();
            let mut args: Vec<&str> = vec![actor, &at, &count];
            args.extend(&names);
            for (record, order) in chunk.iter().zip(&orders) {
                args.push(record.bib.as_str());
                args.push(order);
                args.extend(record.fields.iter().map(|(_, value)| value.as_str()));
            }
            let reply = self.fcall_on(&self.bulk, "timing_import", &args).await?;
            let skipped: HashSet<String> = redis::from_redis_value(reply).map_err(parse_err)?;
            existing.extend(
                chunk
                    .iter()
                    .map(|r| r.bib.as_str())
                    .filter(|bib| skipped.contains(*bib)),
            );
        }
        // Plain loops building the futures first: closures over borrowed records in a stream
        // would not be `Send` for every lifetime, which axum's handlers need.
        let mut upserts = Vec::with_capacity(existing.len());
        for record in records {
            if existing.contains(record.bib.as_str()) {
                upserts.push(self.put_competitor_on(
                    &self.bulk,
                    actor,
                    PutMode::Upsert,
                    &record.bib,
                    &record.fields,
                ));
            }
        }
        let outcomes: Vec<Outcome> = futures::stream::iter(upserts)
            .buffer_unordered(UPSERTS_IN_FLIGHT)
            .try_collect()
            .await?;
        // What the upserts did: replaced a record (`Done`), created one, or neither (an unknown
        // wave, a chip taken).
        let upserted = |outcome: Outcome| outcomes.iter().filter(|o| **o == outcome).count();
        let counts = ImportCounts {
            created: records.len() - existing.len() + upserted(Outcome::Created),
            updated: upserted(Outcome::Done),
        };
        // A new competitor has no status: only setting one, or clearing an existing one's,
        // is a write.
        let mut statuses = Vec::new();
        for record in records {
            let status = match record.status {
                Some(Some(status)) => Some(status),
                Some(None) if existing.contains(record.bib.as_str()) => None,
                _ => continue,
            };
            statuses.push(self.set_status(actor, &record.bib, status));
        }
        futures::stream::iter(statuses)
            .buffer_unordered(UPSERTS_IN_FLIGHT)
            .try_collect::<Vec<_>>()
            .await?;
        // The import as a whole, beside each competitor's own entry.
        let entry = serde_json::json!({
            "at": now_rfc3339(),
            "actor": actor,
            "action": "import",
            "bib": null,
            "before": null,
            "after": {"created": counts.created, "updated": counts.updated},
        });
        let mut pipe = redis::pipe();
        pipe.lpush(keys::audit(None), entry.to_string()).ignore();
        self.conn.query::<()>(&pipe).await?;
        Ok(counts)
    }
}
