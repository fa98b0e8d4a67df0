//! Reading a ranking page: the rank set's timed rows, the untimed set, the rank set's
//! out-of-race rows, with every row's fields from one `HMGET`.
//!
//! A ranking score is the elapsed time in ms from the competitor's own start ([`UNTIMED`]
//! without both times, [`OUT`] + 1/2/3 with a DNF/DSQ/DNS status), so `ZRANGE` returns
//! finishers by time, then those without a time, then those out of the race. A competitor with
//! neither a time nor a status (every new one) is in the untimed set of each of their scopes
//! instead of in any rank set. A ranking is then the rank set below [`OUT`], the untimed set,
//! the rank set from [`OUT`] on: three ranges whose bounds come from `ZCARD`s and one `ZCOUNT`,
//! so a page costs O(log N + page size). Equal times share a rank: a row's rank is
//! `1 + ZCOUNT(-inf, (score)`. (Measured: one `HMGET` per row, or the page read in a Lua
//! script, cost Redis, the single-threaded bottleneck, about twice the time per page.)

use super::{Scope, Store, StoreError, keys};
use crate::model::Status;

/// Ranking score of a competitor without a time at the checkpoint (or without a start).
pub const UNTIMED: u64 = 1_000_000_000_000;
/// Base ranking score of a competitor with a status (DNF 1, DSQ 2, DNS 3 are added).
pub const OUT: u64 = 2_000_000_000_000;

/// One row of a ranking page, before formatting.
#[derive(Debug, Clone)]
pub struct RankedEntry {
    /// The competitor.
    pub bib: String,
    /// Rank within the scope, `None` when unranked.
    pub rank: Option<u64>,
    /// The time ranked by (net or gun), when ranked.
    pub elapsed_ms: Option<u64>,
    /// The other time: gun when ranked by net, net when ranked by gun (null without a wave
    /// gun time).
    pub other_ms: Option<u64>,
    /// DNS / DNF / DSQ, if set.
    pub status: Option<Status>,
    /// The row fields as a JSON object, as written by `timing.lua`.
    pub row_json: Option<String>,
}

impl Store {
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
        by_gun: bool,
        offset: u64,
        limit: u64,
    ) -> Result<(u64, Vec<RankedEntry>), StoreError> {
        let key = keys::rank(checkpoint, scope, by_gun);
        let untimed = keys::untimed(scope);
        let out_bound = format!("({OUT}");
        let mut pipe = redis::pipe();
        pipe.zcard(&key)
            .zcount(&key, "-inf", &out_bound)
            .zcard(&untimed)
            .zrange_withscores(&key, offset as isize, (offset + limit) as isize - 1);
        let (ranked, in_race, untimed_count, mut page): (u64, u64, u64, Vec<(String, f64)>) =
            self.conn.query(&pipe).await?;
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
            let (bibs, out): (Vec<String>, Vec<(String, f64)>) = self.conn.query(&pipe).await?;
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
        let bibs: Vec<&str> = page.iter().map(|(bib, _)| bib.as_str()).collect();
        pipe.zcount(&key, "-inf", score_bound)
            .cmd("HMGET")
            .arg(keys::ROWS)
            .arg(&bibs)
            .cmd("HMGET")
            .arg(keys::LAGS)
            .arg(&bibs);
        let (better, rows, lags): (u64, Vec<Option<String>>, Vec<Option<u64>>) =
            self.conn.query(&pipe).await?;
        let first_rank = (first_score < UNTIMED).then_some(better + 1);

        let mut out = Vec::with_capacity(page.len());
        let mut previous: Option<(u64, u64)> = None; // (score, rank) of the previous row
        for (i, (((bib, score), row_json), lag)) in page.into_iter().zip(rows).zip(lags).enumerate()
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
        Ok((total, out))
    }
}
