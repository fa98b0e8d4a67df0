//! Whole rankings kept in memory at the scope version they were read at: while a ranking does
//! not change, any page of it is a slice of what is kept and costs no Redis read (beyond the
//! version its ETag needs, read anyway).
//!
//! Keeping a ranking costs one read of all of it per change of its scope. That pays when the
//! ranking is read more often than it changes (spectators paging through the results of a
//! finished race, or between finishers), and not while chip reads arrive (every call changes
//! the scopes it touches). So a ranking is read whole only once its pages have been read, at
//! one version, as many times as it has pages: the rule for renting or buying skis. Keeping
//! then costs at most about the Redis work of the page reads before it, and a ranking that
//! changes sooner is never read whole. The rankings kept hold at most a set number of rows
//! together ([`DEFAULT_KEPT_RANKING_ROWS`] unless configured); the least recently read one is
//! given up first.
//!
//! Also the row of a ranking ([`RankedEntry`]), which pages read from Redis (`results`) and
//! kept rankings share.

use std::{collections::HashMap, sync::Arc};

use crate::model::Status;

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
    pub row_json: Option<Arc<str>>,
}

impl RankedEntry {
    /// The gun and the net time, from the time ranked by and the other, in a ranking by gun
    /// time (`by_gun`) or by net time.
    pub fn gun_and_net(&self, by_gun: bool) -> (Option<u64>, Option<u64>) {
        if by_gun {
            (self.elapsed_ms, self.other_ms)
        } else {
            (self.other_ms, self.elapsed_ms)
        }
    }
}

/// Rows of all kept rankings together by default (some 110 bytes each besides their row
/// JSON, which the results rows kept share).
pub const DEFAULT_KEPT_RANKING_ROWS: usize = 100_000;

/// What is known of one ranking.
#[derive(Debug)]
enum Known {
    /// `reads` pages read at `version`, of a ranking of `total` rows.
    Counting {
        version: u64,
        reads: u64,
        total: u64,
    },
    /// Being read whole by a task of its own (pages are read from Redis meanwhile).
    Reading,
    /// Read whole at `version`: every row, in ranking order.
    Whole {
        version: u64,
        entries: Arc<[RankedEntry]>,
    },
}

/// What a page read should do.
#[derive(Debug)]
pub(super) enum Decision {
    /// Answer this: the total and the page, sliced from the kept ranking.
    Kept(u64, Vec<RankedEntry>),
    /// Read the whole ranking and keep it (then [`Rankings::keep`] or [`Rankings::abandon`]).
    ReadWhole,
    /// Read the page from Redis (then [`Rankings::page_read`]).
    ReadPage,
}

/// The kept rankings and the page reads counted towards keeping others, by ranking (its
/// checkpoint, scope, and net or gun, as a string).
#[derive(Debug)]
pub(super) struct Rankings {
    known: HashMap<String, (Known, u64)>,
    /// Most rows kept together.
    limit: usize,
    /// Bumped by every use of a ranking: the second field of `known` is its last use.
    clock: u64,
}

/// Rows `offset .. offset + limit` of a whole ranking.
fn slice(entries: &[RankedEntry], offset: u64, limit: u64) -> Vec<RankedEntry> {
    let from = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(entries.len());
    let to = usize::try_from(offset.saturating_add(limit))
        .unwrap_or(usize::MAX)
        .min(entries.len());
    entries[from..to].to_vec()
}

impl Default for Rankings {
    fn default() -> Self {
        Self {
            known: HashMap::new(),
            limit: DEFAULT_KEPT_RANKING_ROWS,
            clock: 0,
        }
    }
}

impl Rankings {
    /// Keeps at most `limit` rows from now on (0: none), giving up rankings beyond it.
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
        self.make_room(0, "");
    }

    /// Gives up the least recently read kept rankings other than `ranking` until `rows` more
    /// fit under the limit (or none is left).
    fn make_room(&mut self, rows: usize, ranking: &str) {
        while self.kept_rows() + rows > self.limit {
            let oldest = self
                .known
                .iter()
                .filter(|(name, (known, _))| {
                    name.as_str() != ranking && matches!(known, Known::Whole { .. })
                })
                .min_by_key(|(_, (_, used))| *used)
                .map(|(name, _)| name.clone());
            let Some(oldest) = oldest else { break };
            self.known.remove(&oldest);
        }
    }

    /// How to read a page of `ranking` whose scope is at `version` (read just before).
    pub fn decide(&mut self, ranking: &str, version: u64, offset: u64, limit: u64) -> Decision {
        self.clock += 1;
        let clock = self.clock;
        let Some((known, used)) = self.known.get_mut(ranking) else {
            return Decision::ReadPage;
        };
        match known {
            Known::Whole {
                version: kept,
                entries,
            } if *kept == version => {
                *used = clock;
                Decision::Kept(entries.len() as u64, slice(entries, offset, limit))
            }
            Known::Counting {
                version: counted,
                reads,
                total,
            } if *counted == version
                && *reads >= total.div_ceil(limit.max(1)).max(1)
                && self.limit > 0
                && usize::try_from(*total).is_ok_and(|total| total <= self.limit) =>
            {
                *used = clock;
                *known = Known::Reading;
                Decision::ReadWhole
            }
            _ => Decision::ReadPage,
        }
    }

    /// Counts a page of `ranking` read from Redis at `version`, the ranking having `total`
    /// rows; a page read at a newer version than the one kept gives the kept one up.
    pub fn page_read(&mut self, ranking: &str, version: u64, total: u64) {
        self.clock += 1;
        let counting = Known::Counting {
            version,
            reads: 1,
            total,
        };
        let Some((known, used)) = self.known.get_mut(ranking) else {
            self.known
                .insert(ranking.to_owned(), (counting, self.clock));
            return;
        };
        *used = self.clock;
        match known {
            Known::Counting {
                version: counted,
                reads,
                total: counted_total,
            } if *counted == version => {
                *reads += 1;
                *counted_total = total;
            }
            // Being read whole: that read decides. Read at an older version: nothing to count.
            Known::Reading => {}
            Known::Counting { version: newer, .. } | Known::Whole { version: newer, .. }
                if *newer >= version => {}
            _ => *known = counting,
        }
    }

    /// Keeps `entries`, the whole of `ranking` read at `version` after [`Decision::ReadWhole`],
    /// giving up the least recently read rankings beyond the limit.
    pub fn keep(&mut self, ranking: &str, version: u64, entries: Vec<RankedEntry>) {
        if entries.len() > self.limit {
            self.abandon(ranking, version);
            return;
        }
        self.make_room(entries.len(), ranking);
        self.clock += 1;
        let whole = Known::Whole {
            version,
            entries: entries.into(),
        };
        self.known.insert(ranking.to_owned(), (whole, self.clock));
    }

    /// Gives up reading `ranking` whole (the read failed, or a write landed during it): its
    /// pages are counted again from none, at `version` (the last known; the next page read
    /// tells the ranking's size).
    pub fn abandon(&mut self, ranking: &str, version: u64) {
        if let Some((known, _)) = self.known.get_mut(ranking) {
            *known = Known::Counting {
                version,
                reads: 0,
                total: 0,
            };
        }
    }

    /// Rows held by the kept rankings.
    pub fn kept_rows(&self) -> usize {
        self.known
            .values()
            .map(|(known, _)| match known {
                Known::Whole { entries, .. } => entries.len(),
                _ => 0,
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(n: u64) -> Vec<RankedEntry> {
        (0..n)
            .map(|i| RankedEntry {
                bib: i.to_string(),
                rank: Some(i + 1),
                elapsed_ms: Some(1_000 * i),
                other_ms: None,
                status: None,
                row_json: None,
            })
            .collect()
    }

    fn is_page(decision: &Decision) -> bool {
        matches!(decision, Decision::ReadPage)
    }

    #[test]
    fn a_ranking_is_read_whole_after_as_many_page_reads_as_it_has_pages() {
        let mut rankings = Rankings::default();
        // 120 rows in pages of 50: three pages.
        for read in 0..3 {
            assert!(
                is_page(&rankings.decide("finish all net", 7, 0, 50)),
                "{read}"
            );
            rankings.page_read("finish all net", 7, 120);
        }
        assert!(matches!(
            rankings.decide("finish all net", 7, 0, 50),
            Decision::ReadWhole
        ));
        // Only one request reads it whole; the others read their pages meanwhile.
        assert!(is_page(&rankings.decide("finish all net", 7, 50, 50)));
        rankings.keep("finish all net", 7, entries(120));
        match rankings.decide("finish all net", 7, 100, 50) {
            Decision::Kept(total, page) => {
                assert_eq!(total, 120);
                let bibs: Vec<_> = page.iter().map(|e| e.bib.as_str()).collect();
                assert_eq!(bibs, (100..120).map(|i| i.to_string()).collect::<Vec<_>>());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(rankings.kept_rows(), 120);
    }

    #[test]
    fn a_change_of_the_scope_gives_the_kept_ranking_up() {
        let mut rankings = Rankings::default();
        // 10 rows: one page, so one page read at a version is enough.
        rankings.page_read("finish all net", 7, 10);
        assert!(matches!(
            rankings.decide("finish all net", 7, 0, 50),
            Decision::ReadWhole
        ));
        rankings.keep("finish all net", 7, entries(10));
        assert_eq!(rankings.kept_rows(), 10);
        // The scope changed: the kept ranking is not used, and a page read at the new
        // version gives it up.
        assert!(is_page(&rankings.decide("finish all net", 8, 0, 50)));
        rankings.page_read("finish all net", 8, 11);
        assert_eq!(rankings.kept_rows(), 0);
        // A page read at an older version counts for nothing.
        rankings.page_read("finish all net", 7, 10);
        assert!(matches!(
            rankings.decide("finish all net", 8, 0, 50),
            Decision::ReadWhole
        ));
        // A whole read given up counts the pages again from none.
        rankings.abandon("finish all net", 8);
        assert!(is_page(&rankings.decide("finish all net", 8, 0, 50)));
    }

    #[test]
    fn a_ranking_that_changes_between_its_page_reads_is_never_read_whole() {
        let mut rankings = Rankings::default();
        for version in 1..1_000 {
            assert!(is_page(&rankings.decide("finish all net", version, 0, 50)));
            rankings.page_read("finish all net", version, 10_000);
        }
    }

    #[test]
    fn the_least_recently_read_ranking_goes_first_beyond_the_bound() {
        let mut rankings = Rankings::default();
        let half = (DEFAULT_KEPT_RANKING_ROWS / 2) as u64;
        for name in ["a", "b", "c"] {
            rankings.page_read(name, 1, half);
            for _ in 0..half.div_ceil(1_000) {
                rankings.page_read(name, 1, half);
            }
            assert!(matches!(
                rankings.decide(name, 1, 0, 1_000),
                Decision::ReadWhole
            ));
            rankings.keep(name, 1, entries(half));
            if name == "b" {
                // "a" read again: "b" is now the least recently read.
                assert!(matches!(rankings.decide("a", 1, 0, 10), Decision::Kept(..)));
            }
        }
        assert_eq!(rankings.kept_rows(), DEFAULT_KEPT_RANKING_ROWS);
        assert!(matches!(rankings.decide("a", 1, 0, 10), Decision::Kept(..)));
        assert!(is_page(&rankings.decide("b", 1, 0, 10)));
        assert!(matches!(rankings.decide("c", 1, 0, 10), Decision::Kept(..)));
    }
}
