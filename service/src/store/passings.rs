//! Chip-read batches, applied in calls of up to [`READS_PER_CALL`] reads, each one atomic step
//! of the functions library.
//!
//! The reads at a split or the finish of competitors with a times index entry (`index`) are
//! decided here: from what the rules need as this process last saw it (the entries and the
//! gun times of their waves, see [`Seen`]; the ids taken as new), the service applies the rules
//! as the library's `apply_later_reads` does and sends `timing_passings_planned` the writes
//! that follow, which the library makes for each competitor whose entry is still as planned
//! (answering the others' entries, whose reads are decided again from them), and for none if
//! an id, gun time or chip holder changed (then the service reads them and tries once more).
//! The rest of a call (start reads, unknown bibs and chips, competitors whose entry does not
//! say enough) and reads still undecided after [`PLANNED_ROUNDS`] go to `timing_passings`,
//! which applies the rules in Lua. Why: Redis has one thread for every
//! client, and deciding in Lua cost it some 70,000 instructions per read the rules keep and
//! 160,000 per read that changes a time, most of it the interpreter rather than the
//! commands (callgrind; `bench/NOTES.md` has what planned calls cost).

use std::sync::{
    Mutex, MutexGuard, PoisonError,
    atomic::{AtomicBool, AtomicU64, Ordering},
};

// (foldhash's seeded hasher, not SipHash: a call hashes each read's id and bib several times,
// and SipHash took 8% of the service's instructions per read, callgrind.)
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use super::{
    Scope, Store, StoreError,
    functions::{Library, now_rfc3339},
    index::{Entry, Record},
    keys, parse_err,
};
use crate::{
    model::{Bib, DAY_MS, Status},
    race::{BEFORE_MS, Race},
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
/// 89,300, and 81,300 in calls of 50). With the calls planned here, a call of 25 costs Redis
/// some 0.3-0.37 ms; calls of 50 (0.54 ms) ingested about as much (0.55 of `SET` against
/// 0.51-0.68 in five runs with 25) and brought the pages' p99 while ingesting flat out to
/// 9.7 ms (3.9-7.7 with 25).
const READS_PER_CALL: usize = 25;

/// A read's outcome and its reason, as the API answers them.
type Answer = (String, String);

/// The reasons the library gives (`timing.lua`); the planned reads give the same.
const DUPLICATE: &str = "a read with this id was received before";
const EARLIER_COUNTS: &str = "an earlier read counts";
const MANUAL_OVERRIDES: &str = "a manual time overrides the reads";

/// Whether chip-read calls are planned in the service (on unless switched off, to compare),
/// how many reads were decided here, and left to the library, since the start, and what was
/// last seen of the entries and gun times.
#[derive(Debug)]
pub(super) struct Planning {
    on: AtomicBool,
    planned: AtomicU64,
    left: AtomicU64,
    seen: Mutex<Seen>,
}

impl Default for Planning {
    fn default() -> Self {
        Self {
            on: AtomicBool::new(true),
            planned: AtomicU64::new(0),
            left: AtomicU64::new(0),
            seen: Mutex::default(),
        }
    }
}

impl Planning {
    /// What was seen (a panic elsewhere while it was held leaves it as consistent as ever:
    /// every value in it is checked before use).
    fn seen(&self) -> MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// At most this many planned calls decide one call's reads: the first, and those for
/// competitors whose entry another call changed meanwhile; reads still undecided after them
/// go to the library.
const PLANNED_ROUNDS: usize = 3;

/// At most this many entries are remembered (some 100 bytes each); past it they are
/// forgotten and read again.
const MAX_SEEN_ENTRIES: usize = 100_000;

/// The competitors' entries and the waves' gun times as this process last read or wrote
/// them. A call is planned from them without reading them first, and its ids taken as new:
/// the library checks all of these before it writes anything, so what changed since (another
/// process's call, a manual time, a status) costs a second try after reading them, never a
/// wrong write. That saves every call a round trip, and Redis two lookups per read.
#[derive(Debug, Default)]
struct Seen {
    entries: HashMap<String, String>,
    guns: HashMap<String, String>,
}

impl Seen {
    /// Remembers `value` of `name` in `map` (one of this one's), or forgets it if `None`.
    fn remember(map: &mut HashMap<String, String>, name: &str, value: Option<String>) {
        match value {
            Some(value) => {
                if map.len() >= MAX_SEEN_ENTRIES {
                    map.clear();
                }
                map.insert(name.to_owned(), value);
            }
            None => {
                map.remove(name);
            }
        }
    }
}

/// Of `names` (repeats counted once), copies into `found` the values `remembered` holds,
/// unless `fresh`, and returns the others: those to read.
fn take_remembered<'n>(
    names: impl IntoIterator<Item = &'n str>,
    remembered: &HashMap<String, String>,
    fresh: bool,
    found: &mut HashMap<String, String>,
) -> Vec<&'n str> {
    let mut unread = Vec::new();
    for name in names {
        if found.contains_key(name) || unread.contains(&name) {
            continue;
        }
        match remembered.get(name).filter(|_| !fresh) {
            Some(value) => {
                found.insert(name.to_owned(), value.clone());
            }
            None => unread.push(name),
        }
    }
    unread
}

/// What a call is planned from: remembered (see [`Seen`]) or read just before.
struct Known {
    /// Per read of the call, whether its id was received before.
    received: Vec<bool>,
    /// Bib -> times index entry, for the call's competitors.
    entries: HashMap<String, String>,
    /// Wave -> gun time, as stored.
    guns: HashMap<String, String>,
}

/// A call planned: the answers of the reads decided here, the library call that makes their
/// writes (none when there are none), and the reads left to the library.
struct Plan {
    answers: Vec<Option<Answer>>,
    call: Option<redis::Cmd>,
    left: Vec<usize>,
    /// Each competitor decided here: bib, entry once the call is written, and their reads.
    competitors: Vec<(String, String, Vec<usize>)>,
    /// How many new reads were decided here.
    decided: usize,
    /// Reads of competitors whose entry was not as planned: the call wrote the others, and
    /// these are to be decided again (their answers are `None`).
    stale: Vec<usize>,
}

impl Plan {
    /// The call was written but for the competitors `stale` names (bib, entry as it is, the
    /// library's answer; none when it answered `ok`): the others' new entries are remembered,
    /// and so is what Redis holds of the stale ones, whose reads go to `stale`, unanswered.
    fn written_but(&mut self, stale: &[Option<String>], seen: &mut Seen) {
        let mut stale_bibs = HashSet::new();
        for pair in stale.chunks(2) {
            if let [Some(bib), entry] = pair {
                Seen::remember(&mut seen.entries, bib, entry.clone());
                stale_bibs.insert(bib.as_str());
            }
        }
        for (bib, entry, reads) in self.competitors.drain(..) {
            if stale_bibs.contains(bib.as_str()) {
                for k in reads {
                    self.answers[k] = None;
                    self.stale.push(k);
                }
            } else {
                Seen::remember(&mut seen.entries, &bib, Some(entry));
            }
        }
        self.decided = self.decided.saturating_sub(self.stale.len());
        self.stale.sort_unstable();
    }
}

/// One competitor's new reads in a call, decided here.
struct Decided<'a> {
    bib: &'a str,
    /// Their entry as read, and as it becomes ('' when unchanged).
    entry: &'a str,
    new_entry: String,
    /// Their reads as their list of reads holds them.
    listed: Vec<String>,
    /// (read, answer) per read.
    answers: Vec<(usize, Answer)>,
    /// The wave whose gun time the decision used, with that time as read.
    wave: Option<(&'a str, &'a str)>,
    /// The changed times, (time of day, checkpoint) for `race:<bib>`: present when
    /// `new_entry` is.
    times: Vec<(String, String)>,
    /// (key, score, member) of each rank write: the member is the bib.
    ranks: Vec<(String, String, String)>,
    /// Scopes whose rankings change.
    scopes: Vec<Scope<'a>>,
}

/// `to` relative to `from`: negative when up to [`BEFORE_MS`] earlier, else the time elapsed,
/// crossing midnight if need be (the library's `offset`).
fn offset(from: u64, to: u64) -> i64 {
    let (day, before) = (DAY_MS as i64, BEFORE_MS as i64);
    let d = (to as i64 - from as i64).rem_euclid(day);
    if d > day - before { d - day } else { d }
}

/// The time from `from` to `to`, crossing midnight if need be (the library's `elapsed`).
fn elapsed(from: u64, to: u64) -> i64 {
    (to as i64 - from as i64).rem_euclid(DAY_MS as i64)
}

/// The rank writes of a call, grouped by key in order of first use (one `ZADD` each).
#[derive(Default)]
struct SortedSetWrites {
    order: Vec<String>,
    members: HashMap<String, Vec<(String, String)>>,
}

impl SortedSetWrites {
    fn add(&mut self, key: String, score: String, member: String) {
        let members = self.members.entry(key.clone()).or_insert_with(|| {
            self.order.push(key);
            Vec::new()
        });
        members.push((score, member));
    }
}

/// Decides the new reads `group` (indexes into `reads`, none at the start) of competitor
/// `bib` from what was read, as the library's `apply_later_reads` would: `None` when the
/// library must (no entry; a time changes and the entry lacks the record, or the competitor
/// is a DNF or has no time at all, which the library's whole re-ranking handles; no
/// reference to measure from).
fn decide<'a>(
    race: &'a Race,
    reads: &[&'a Read],
    bib: &'a str,
    group: &[usize],
    known: &'a Known,
) -> Option<Decided<'a>> {
    let checkpoints = race.checkpoints.len();
    let text = known.entries.get(bib)?;
    let entry = Entry::parse(text, checkpoints)?;
    let mut decided = Decided {
        bib,
        entry: text,
        new_entry: String::new(),
        listed: group
            .iter()
            .map(|&k| {
                format!(
                    "{} {} {}",
                    reads[k].checkpoint + 1,
                    reads[k].ms,
                    reads[k].id
                )
            })
            .collect(),
        answers: Vec::with_capacity(group.len()),
        wave: None,
        times: Vec::new(),
        ranks: Vec::new(),
        scopes: Vec::new(),
    };
    if let Some(status @ (Status::Dns | Status::Dsq)) = entry.status {
        let why = format!(
            "the competitor has status {}; the read has no effect",
            status.as_str()
        );
        decided.answers = group
            .iter()
            .map(|&k| (k, ("kept".into(), why.clone())))
            .collect();
        return Some(decided);
    }
    let record = entry.record.as_ref();
    let gun = match record.and_then(|r| r.wave) {
        Some(wave) => {
            let (name, gun) = known.guns.get_key_value(wave)?;
            decided.wave = Some((name, gun));
            Some(gun.parse::<u64>().ok()?)
        }
        None => None,
    };
    if entry.times[0].is_none() && record.is_none() {
        return None; // (the gun time, if any, is in the record)
    }
    let reference = entry.times[0].or(gun)?;
    let min_time = |i: usize| race.rules.min_time_ms[i] as i64;
    let mut times = entry.times.clone();
    let mut from: Vec<Option<&str>> = vec![None; checkpoints];
    for &k in group {
        let (i, ms) = (reads[k].checkpoint, reads[k].ms);
        let d = offset(reference, ms);
        if !entry.manual[i]
            && d >= min_time(i)
            && times[i].is_none_or(|now| d < offset(reference, now))
        {
            times[i] = Some(ms);
            from[i] = Some(&reads[k].id);
        }
    }
    for &k in group {
        let (i, read) = (reads[k].checkpoint, reads[k]);
        let answer = if offset(reference, read.ms) < min_time(i) {
            (
                "ignored".into(),
                format!(
                    "earlier than the minimum time after the start at {}",
                    race.checkpoints[i]
                ),
            )
        } else if entry.manual[i] {
            ("kept".into(), MANUAL_OVERRIDES.into())
        } else if from[i] == Some(read.id.as_str()) {
            ("applied".into(), String::new())
        } else {
            ("kept".into(), EARLIER_COUNTS.into())
        };
        decided.answers.push((k, answer));
    }
    let changes: Vec<(usize, u64)> = (0..checkpoints)
        .filter_map(|i| {
            times[i]
                .filter(|&ms| entry.times[i] != Some(ms))
                .map(|ms| (i, ms))
        })
        .collect();
    if changes.is_empty() {
        return Some(decided);
    }
    let record = record?;
    if entry.status.is_some() || !entry.timed() {
        return None;
    }
    decided.scopes.push(Scope::All);
    decided.scopes.extend(record.gender.map(Scope::Gender));
    decided.scopes.extend(record.category.map(Scope::Category));
    for &(i, ms) in &changes {
        let checkpoint = &race.checkpoints[i];
        decided.times.push((ms.to_string(), checkpoint.clone()));
        for &scope in &decided.scopes {
            let net = elapsed(reference, ms).to_string();
            decided
                .ranks
                .push((keys::rank(checkpoint, scope, false), net, bib.to_owned()));
            if let Some(gun) = gun {
                let gun = elapsed(gun, ms).to_string();
                decided
                    .ranks
                    .push((keys::rank(checkpoint, scope, true), gun, bib.to_owned()));
            }
        }
    }
    decided.new_entry = entry.with_times(&changes);
    Some(decided)
}
/// Plans a call of `reads` (by bib, or by a chip whose holder `bibs` gives; `None` for a chip
/// nobody has) from what was read: duplicates are answered, each competitor's new reads are
/// decided here where [`decide`] can, and the rest are left to the library. The writes go in
/// one `timing_passings_planned` call (its arguments are described in `timing.lua`); sorted
/// sets written for several competitors get one `ZADD` each.
fn plan<'a>(
    library: &Library,
    race: &'a Race,
    reads: &[&'a Read],
    bibs: &[Option<&'a str>],
    known: &'a Known,
) -> Plan {
    let mut answers = vec![None; reads.len()];
    let mut left = Vec::new();
    // New reads by competitor, in order of first appearance (the library's order).
    let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
    let mut ids: HashSet<&str> = HashSet::new();
    for (k, read) in reads.iter().enumerate() {
        if known.received[k] || !ids.insert(&read.id) {
            answers[k] = Some(("duplicate".into(), DUPLICATE.into()));
            continue;
        }
        match (
            bibs[k],
            groups.iter_mut().find(|(bib, _)| Some(*bib) == bibs[k]),
        ) {
            (Some(_), Some((_, group))) => group.push(k),
            (Some(bib), None) => groups.push((bib, vec![k])),
            (None, _) => left.push(k),
        }
    }
    let mut decided = Vec::new();
    for (bib, group) in &groups {
        // (A start read derives everything again: the library's apply_reads.)
        let at_start = group.iter().any(|&k| reads[k].checkpoint == 0);
        let decision = if at_start {
            None
        } else {
            decide(race, reads, bib, group, known)
        };
        match decision {
            Some(competitor) => decided.push(competitor),
            None => left.extend(group),
        }
    }
    left.sort_unstable();
    if decided.is_empty() {
        return Plan {
            answers,
            call: None,
            left,
            competitors: Vec::new(),
            decided: 0,
            stale: Vec::new(),
        };
    }
    // (Grouped by competitor, in competitor order: the library relies on it.)
    let fresh: Vec<usize> = decided
        .iter()
        .flat_map(|d| d.answers.iter().map(|(k, _)| *k))
        .collect();
    let competitors = decided
        .iter()
        .map(|d| {
            let after = if d.new_entry.is_empty() {
                d.entry
            } else {
                &d.new_entry
            };
            let reads = d.answers.iter().map(|(k, _)| *k).collect();
            (d.bib.to_owned(), after.to_owned(), reads)
        })
        .collect();
    let chips: Vec<(&str, &str)> = fresh
        .iter()
        .filter_map(|&k| Some((reads[k].chip.as_deref()?, bibs[k]?)))
        .collect();
    let mut waves: Vec<(&str, &str)> = Vec::new();
    let mut touched: Vec<String> = Vec::new();
    let mut writes = SortedSetWrites::default();
    for competitor in &mut decided {
        if let Some(wave) = competitor.wave.filter(|wave| !waves.contains(wave)) {
            waves.push(wave);
        }
        for scope in &competitor.scopes {
            let name = keys::scope_suffix(*scope);
            if !touched.contains(&name) {
                touched.push(name);
            }
        }
        for (key, score, member) in competitor.ranks.drain(..) {
            writes.add(key, score, member);
        }
        for (k, answer) in competitor.answers.drain(..) {
            answers[k] = Some(answer);
        }
    }
    let mut call = library.call("timing_passings_planned");
    call.arg(fresh.len())
        .arg(waves.len())
        .arg(chips.len())
        .arg(decided.len())
        .arg(writes.order.len())
        .arg(touched.len());
    for &k in &fresh {
        call.arg(&reads[k].id).arg(&reads[k].raw);
    }
    for (name, value) in waves.iter().chain(&chips) {
        call.arg(*name).arg(*value);
    }
    for competitor in &decided {
        // (Its shape: twice its count of reads, plus one when its entry changes.)
        let changed = !competitor.new_entry.is_empty();
        call.arg(competitor.bib)
            .arg(competitor.entry)
            .arg(2 * competitor.listed.len() + usize::from(changed))
            .arg(&competitor.listed);
        if changed {
            call.arg(&competitor.new_entry).arg(competitor.times.len());
            for (ms, checkpoint) in &competitor.times {
                call.arg(ms).arg(checkpoint);
            }
        }
    }
    for key in &writes.order {
        let members = &writes.members[key];
        call.arg(key).arg(members.len());
        for (score, member) in members {
            call.arg(score).arg(member);
        }
    }
    call.arg(&touched);
    Plan {
        answers,
        call: Some(call),
        left,
        competitors,
        decided: fresh.len(),
        stale: Vec::new(),
    }
}

impl Store {
    /// Switches planning chip-read calls in the service on or off (off: the library decides
    /// every read, as a comparison for tests and the benchmark).
    pub fn set_planned_reads(&self, on: bool) {
        self.planning.on.store(on, Ordering::Relaxed);
    }

    /// New chip reads since the start: decided in the service, and left to the library.
    pub fn reads_decided(&self) -> (u64, u64) {
        (
            self.planning.planned.load(Ordering::Relaxed),
            self.planning.left.load(Ordering::Relaxed),
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
        let (found,): (Vec<Option<String>>,) = self.bulk.query(&pipe).await?;
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
    /// go one after the other. (The library checks the chips again itself, so a chip
    /// reassigned in between still lands on its current holder.)
    pub async fn ingest(&self, reads: &[Read]) -> Result<Vec<Answer>, StoreError> {
        let chips: Vec<&str> = reads.iter().filter_map(|r| r.chip.as_deref()).collect();
        let holders = self.chip_holders(&chips).await?;
        // Each read's competitor (`None` for a chip nobody has), then the reads grouped by
        // competitor (or by unknown chip), in order of first appearance.
        let bibs: Vec<Option<&str>> = reads
            .iter()
            .map(|read| match (&read.bib, &read.chip) {
                (Some(bib), _) => Some(bib.as_str()),
                (None, Some(chip)) => holders.get(chip.as_str()).map(String::as_str),
                (None, None) => None,
            })
            .collect();
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut group_of: HashMap<(Option<&str>, Option<&str>), usize> = HashMap::new();
        for (index, read) in reads.iter().enumerate() {
            let key = match bibs[index] {
                Some(bib) => (Some(bib), None),
                None => (None, read.chip.as_deref()),
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
        // Ids are taken as new until a call finds otherwise: then the batch was sent before
        // (in part, say by a second reader), and its other calls read them first.
        let mut ids_new = true;
        for call in &calls {
            let call_reads: Vec<&Read> = call.iter().map(|&index| &reads[index]).collect();
            let call_bibs: Vec<Option<&str>> = call.iter().map(|&index| bibs[index]).collect();
            let answers = self
                .apply_call(&call_reads, &call_bibs, &at, &mut ids_new)
                .await?;
            for (&index, answer) in call.iter().zip(answers) {
                out[index] = answer;
            }
        }
        Ok(out)
    }

    /// Applies a call's reads (of competitors `bibs`, see [`plan`]): those decided here with
    /// one library call that checks and writes (again for competitors whose entry changed
    /// meanwhile, from their entry as the call found it, up to [`PLANNED_ROUNDS`] calls), then
    /// the rest with one that decides.
    async fn apply_call(
        &self,
        reads: &[&Read],
        bibs: &[Option<&str>],
        at: &str,
        ids_new: &mut bool,
    ) -> Result<Vec<Answer>, StoreError> {
        let mut answers = vec![None; reads.len()];
        let mut left = Vec::new();
        // Positions in `reads` still to decide.
        let mut pending: Vec<usize> = (0..reads.len()).collect();
        for _ in 0..PLANNED_ROUNDS {
            if pending.is_empty() {
                break;
            }
            let round_reads: Vec<&Read> = pending.iter().map(|&k| reads[k]).collect();
            let round_bibs: Vec<Option<&str>> = pending.iter().map(|&k| bibs[k]).collect();
            let Some(plan) = self
                .planned_call(&round_reads, &round_bibs, ids_new)
                .await?
            else {
                break;
            };
            self.planning
                .planned
                .fetch_add(plan.decided as u64, Ordering::Relaxed);
            for (j, answer) in plan.answers.into_iter().enumerate() {
                if answer.is_some() {
                    answers[pending[j]] = answer;
                }
            }
            left.extend(plan.left.iter().map(|&j| pending[j]));
            pending = plan.stale.iter().map(|&j| pending[j]).collect();
        }
        left.append(&mut pending);
        left.sort_unstable();
        if !left.is_empty() {
            self.planning
                .left
                .fetch_add(left.len() as u64, Ordering::Relaxed);
            let left_reads: Vec<&Read> = left.iter().map(|&k| reads[k]).collect();
            self.forget_entries(left.iter().filter_map(|&k| bibs[k]));
            let decided = self.library_call(&left_reads, at).await?;
            for (&k, answer) in left.iter().zip(decided) {
                answers[k] = Some(answer);
            }
        }
        answers
            .into_iter()
            .map(|answer| {
                answer.ok_or_else(|| StoreError::Internal("a read without an answer".into()))
            })
            .collect()
    }

    /// A call planned here, its writes made by `timing_passings_planned` (the plan's `call`
    /// taken); `None` when planning is off, or what the plan was made from changed before the
    /// library ran it twice. The first try plans from what was seen before (see [`Seen`]),
    /// with the ids taken as new if `ids_new`; if that was not so, the second reads it all
    /// first (and `ids_new` is cleared: the batch has reads Redis had).
    async fn planned_call(
        &self,
        reads: &[&Read],
        bibs: &[Option<&str>],
        ids_new: &mut bool,
    ) -> Result<Option<Plan>, StoreError> {
        if !self.planning.on.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let tries: &[bool] = if *ids_new { &[false, true] } else { &[true] };
        for &fresh in tries {
            let known = self.known(reads, bibs, fresh).await?;
            if fresh && known.received.iter().any(|&received| received) {
                *ids_new = false;
            }
            let mut plan = plan(&self.library, &self.race, reads, bibs, &known);
            let Some(call) = plan.call.take() else {
                return Ok(Some(plan));
            };
            let reply = self.fcall_command_on(&self.bulk, call).await?;
            // The stale competitors' bibs and entries; none when all was written.
            let stale: Vec<Option<String>> = if let redis::Value::Array(_) = reply {
                redis::from_redis_value(reply).map_err(parse_err)?
            } else {
                let answer: String = redis::from_redis_value(reply).map_err(parse_err)?;
                match answer.as_str() {
                    "ok" => Vec::new(),
                    "changed" => continue,
                    other => {
                        return Err(parse_err(format!(
                            "timing_passings_planned answered `{other}`"
                        )));
                    }
                }
            };
            plan.written_but(&stale, &mut self.planning.seen());
            return Ok(Some(plan));
        }
        Ok(None)
    }

    /// What a call of `reads` is planned from: whether their ids were received before, the
    /// entries of competitors `bibs` and the gun times of their waves. Read from Redis when
    /// `fresh`, else taken from what was seen (the ids as new; what was never seen is read).
    async fn known(
        &self,
        reads: &[&Read],
        bibs: &[Option<&str>],
        fresh: bool,
    ) -> Result<Known, StoreError> {
        let mut entries = HashMap::new();
        let unseen = take_remembered(
            bibs.iter().flatten().copied(),
            &self.planning.seen().entries,
            fresh,
            &mut entries,
        );
        let mut pipe = redis::pipe();
        if fresh {
            let ids: Vec<&str> = reads.iter().map(|r| r.id.as_str()).collect();
            pipe.cmd("HMGET").arg(keys::PASSINGS).arg(&ids);
        }
        if !unseen.is_empty() {
            pipe.cmd("HMGET")
                .arg(keys::times_index(&self.race.checkpoints))
                .arg(&unseen);
        }
        let mut replies: Vec<Vec<Option<String>>> = if fresh || !unseen.is_empty() {
            self.bulk.query(&pipe).await?
        } else {
            Vec::new()
        };
        let received = if fresh && !replies.is_empty() {
            replies.remove(0).iter().map(Option::is_some).collect()
        } else {
            vec![false; reads.len()]
        };
        if let Some(found) = replies.pop() {
            let mut seen = self.planning.seen();
            for (bib, entry) in unseen.iter().zip(found) {
                Seen::remember(&mut seen.entries, bib, entry.clone());
                if let Some(entry) = entry {
                    entries.insert((*bib).to_owned(), entry);
                }
            }
        }
        // The gun times of the entries' waves, if any: remembered, or read.
        let checkpoints = self.race.checkpoints.len();
        let mut guns = HashMap::new();
        let waves = entries
            .values()
            .filter_map(|text| Record::of(text, checkpoints)?.wave);
        let unread = take_remembered(waves, &self.planning.seen().guns, fresh, &mut guns);
        if !unread.is_empty() {
            let mut pipe = redis::pipe();
            pipe.cmd("HMGET").arg(keys::WAVES).arg(&unread);
            let (found,): (Vec<Option<String>>,) = self.bulk.query(&pipe).await?;
            let mut seen = self.planning.seen();
            for (wave, gun) in unread.iter().zip(found) {
                Seen::remember(&mut seen.guns, wave, gun.clone());
                if let Some(gun) = gun {
                    guns.insert((*wave).to_owned(), gun);
                }
            }
        }
        Ok(Known {
            received,
            entries,
            guns,
        })
    }

    /// Forgets the entries of competitors `bibs` (the library changes them as it decides).
    fn forget_entries<'b>(&self, bibs: impl Iterator<Item = &'b str>) {
        let mut seen = self.planning.seen();
        for bib in bibs {
            seen.entries.remove(bib);
        }
    }

    /// A call decided by the library's rules (`timing_passings`).
    async fn library_call(&self, reads: &[&Read], at: &str) -> Result<Vec<Answer>, StoreError> {
        let mut command = self.library.call("timing_passings");
        command.arg("").arg(at);
        for read in reads {
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
        let mut answers = Vec::with_capacity(reads.len());
        for pair in flat.chunks(2) {
            if let [outcome, reason] = pair {
                answers.push((outcome.clone(), reason.clone()));
            }
        }
        if answers.len() != reads.len() {
            return Err(parse_err(format!(
                "timing_passings answered {} outcomes for {} reads",
                answers.len(),
                reads.len()
            )));
        }
        Ok(answers)
    }
}
