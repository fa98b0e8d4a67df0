//! A competitor's rank at each checkpoint (split ranks, for the results page's competitor
//! view): two pipelined round trips, the scores then the counts of better scores.

use super::{Scope, Store, StoreError, UNTIMED, keys};
use crate::model::Bib;

impl Store {
    /// The competitor's rank in the whole field at each of `checkpoints` (`None` where they
    /// have no time there, or are out of the race). Equal times share a rank.
    pub async fn split_ranks(
        &self,
        bib: &Bib,
        checkpoints: &[String],
    ) -> Result<Vec<Option<u64>>, StoreError> {
        let mut pipe = redis::pipe();
        for checkpoint in checkpoints {
            pipe.zscore(keys::rank(checkpoint, Scope::All, false), bib.as_str());
        }
        let scores: Vec<Option<f64>> = self.conn.query(&pipe).await?;
        let ranked: Vec<(usize, u64)> = scores
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.map(|s| (i, s as u64)))
            .filter(|(_, score)| *score < UNTIMED)
            .collect();
        let mut ranks = vec![None; checkpoints.len()];
        if ranked.is_empty() {
            return Ok(ranks);
        }
        let mut pipe = redis::pipe();
        for (i, score) in &ranked {
            pipe.zcount(
                keys::rank(&checkpoints[*i], Scope::All, false),
                "-inf",
                format!("({score}"),
            );
        }
        let better: Vec<u64> = self.conn.query(&pipe).await?;
        for ((i, _), better) in ranked.into_iter().zip(better) {
            ranks[i] = Some(better + 1);
        }
        Ok(ranks)
    }
}
