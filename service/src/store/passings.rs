//! Chip-read batches, applied in calls of up to [`READS_PER_CALL`] reads, each one atomic step
//! in Redis for each of its competitors.
//!
//! The reads at a split or the finish of competitors with a times index entry (`index`) are
//! decided here, as the library's `apply_later_reads` decides them, and written with plain
//! commands in one `MULTI`/`EXEC` on the chip-read lane (`lane`): a call reads, under `WATCH`,
//! whether its ids are new, its competitors' entries, the waves' gun times and its chips'
//! holders; decides its reads from them; and sends the writes that follow (the raw reads, each
//! competitor's appended reads, the changed times, rank entries and entries, and the change
//! announced). If anything it read changed before the `EXEC`, Redis runs none of it, and the
//! call is read and decided again (at most [`PLANNED_ROUNDS`] times). The rest of a call
//! (start reads, unknown bibs and chips, competitors whose entry does not say enough, and
//! reads still undecided after the rounds) goes to `timing_passings`, which applies the rules
//! in Lua.
//!
//! Why: Redis has one thread for every client. Deciding in Lua cost it some 70,000
//! instructions per read the rules keep and 160,000 per read that changes a time; deciding here
//! and having a function check and write cost some 32,000 a read, two thirds of them the
//! function's own (its arguments made Lua strings, each `redis.call`, the interpreter, the
//! collector); plain commands in a transaction cost a fraction of that (callgrind; see the
//! service README).

use std::{
    borrow::Borrow,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
};

// (foldhash's seeded hasher, not SipHash: a call hashes each read's id and bib several times,
// and SipHash took 8% of the service's instructions per read, callgrind.)
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use redis::Value;

use super::{
    Scope, Store, StoreError,
    functions::{fcall_command, is_function_missing, now_rfc3339},
    index::{Entry, Record},
    keys,
    lane::LaneGuard,
    parse_err,
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

/// At most this many reads are decided in one planned call (a competitor's reads are never
/// split): one round trip reads what they are planned from, one writes them in a transaction.
/// Calls go one at a time on the lane, so their round trips are paid per call, and Redis
/// parses and runs a call's writes in some 5-6 µs a read: a call of 250 holds results reads
/// for some 1.4 ms (see the service README for what calls of 25, 100, 250 and 500 ingested).
const READS_PER_CALL: usize = 250;

/// At most this many reads go to the library in one function call (`timing_passings`): Lua
/// decides a read in 70,000 to 160,000 instructions, so its calls stay short, since a results
/// read waits for the call Redis is running. Measured with every read decided in Lua
/// (`bench/service.sh`'s rows while ingesting 1,000 reads/s, 10,000 competitors): calls of 50
/// reads, some 2.6 ms each, gave pages a p99 of 31 ms; of 25, 19-22 ms; of 10, 15-17 ms.
const LIBRARY_READS_PER_CALL: usize = 25;

/// A read's outcome and its reason, as the API answers them.
type Answer = (String, String);

/// The reasons the library gives (`timing.lua`); the planned reads give the same.
const DUPLICATE: &str = "a read with this id was received before";
const EARLIER_COUNTS: &str = "an earlier read counts";
const MANUAL_OVERRIDES: &str = "a manual time overrides the reads";

/// Whether chip-read calls are planned in the service (on unless switched off, to compare),
/// and since the start: how many reads were decided here, and left to the library; how many
/// planned transactions Redis did not run because what they were planned from changed.
#[derive(Debug)]
pub(super) struct Planning {
    on: AtomicBool,
    planned: AtomicU64,
    left: AtomicU64,
    aborted: AtomicU64,
}

impl Default for Planning {
    fn default() -> Self {
        Self {
            on: AtomicBool::new(true),
            planned: AtomicU64::new(0),
            left: AtomicU64::new(0),
            aborted: AtomicU64::new(0),
        }
    }
}

/// At most this many times a call's reads are read and decided here: again when another
/// client changed what the last try read before its transaction ran; reads still undecided
/// after them go to the library.
const PLANNED_ROUNDS: usize = 3;

/// What a call is planned from, read under `WATCH`.
struct Known {
    /// Per read of the call, whether its id was received before.
    received: Vec<bool>,
    /// Bib -> times index entry, for the call's competitors that have one.
    entries: HashMap<String, String>,
    /// Wave -> gun time, as stored.
    guns: HashMap<String, String>,
}

/// A call planned: the answers of the reads decided here, the transaction that makes their
/// writes (none when there are none), and the reads left to the library.
struct Plan {
    answers: Vec<Option<Answer>>,
    writes: Option<redis::Pipeline>,
    left: Vec<usize>,
    /// How many new reads were decided here.
    decided: usize,
    /// The scopes whose rankings the writes change (announced by the transaction).
    touched: Vec<String>,
}

/// One competitor's new reads in a call, decided here.
struct Decided<'a> {
    bib: &'a str,
    /// Their entry as it becomes ('' when unchanged).
    new_entry: String,
    /// Their reads as their list of reads holds them.
    listed: Vec<String>,
    /// (read, answer) per read.
    answers: Vec<(usize, Answer)>,
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
        Some(wave) => Some(known.guns.get(wave)?.parse::<u64>().ok()?),
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
/// one transaction; sorted sets written for several competitors get one `ZADD` each.
fn plan<'a>(
    race: &'a Race,
    reads: &[&'a Read],
    bibs: &[Option<&'a str>],
    known: &'a Known,
) -> Plan {
    let mut answers = vec![None; reads.len()];
    let mut left = Vec::new();
    // New reads by competitor, in order of first appearance (the library's order).
    // (A map from bib to group, not a search of the groups: a call has up to
    // READS_PER_CALL competitors.)
    let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
    let mut group_of: HashMap<&str, usize> = HashMap::with_capacity(reads.len());
    let mut ids: HashSet<&str> = HashSet::with_capacity(reads.len());
    for (k, read) in reads.iter().enumerate() {
        if known.received[k] || !ids.insert(&read.id) {
            answers[k] = Some(("duplicate".into(), DUPLICATE.into()));
            continue;
        }
        let Some(bib) = bibs[k] else {
            left.push(k);
            continue;
        };
        let group = *group_of.entry(bib).or_insert_with(|| {
            groups.push((bib, Vec::new()));
            groups.len() - 1
        });
        groups[group].1.push(k);
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
    let fresh: Vec<usize> = decided
        .iter()
        .flat_map(|d| d.answers.iter().map(|(k, _)| *k))
        .collect();
    if fresh.is_empty() {
        return Plan {
            answers,
            writes: None,
            left,
            decided: 0,
            touched: Vec::new(),
        };
    }
    let mut writes = redis::pipe();
    writes.atomic();
    let mut raw = redis::cmd("HSET");
    raw.arg(keys::PASSINGS);
    for &k in &fresh {
        raw.arg(&reads[k].id).arg(&reads[k].raw);
    }
    writes.add_command(raw);
    let mut entries = redis::cmd("HSET");
    entries.arg(keys::times_index(&race.checkpoints));
    let mut entries_changed = false;
    let mut touched: Vec<String> = Vec::new();
    let mut ranks = SortedSetWrites::default();
    for competitor in &mut decided {
        writes
            .cmd("RPUSH")
            .arg(keys::reads(competitor.bib))
            .arg(&competitor.listed);
        if !competitor.new_entry.is_empty() {
            let mut times = redis::cmd("ZADD");
            times.arg(keys::times(competitor.bib));
            for (ms, checkpoint) in &competitor.times {
                times.arg(ms).arg(checkpoint);
            }
            writes.add_command(times);
            entries.arg(competitor.bib).arg(&competitor.new_entry);
            entries_changed = true;
        }
        for scope in &competitor.scopes {
            let name = keys::scope_suffix(*scope);
            if !touched.contains(&name) {
                touched.push(name);
            }
        }
        for (key, score, member) in competitor.ranks.drain(..) {
            ranks.add(key, score, member);
        }
        for (k, answer) in competitor.answers.drain(..) {
            answers[k] = Some(answer);
        }
    }
    if entries_changed {
        writes.add_command(entries);
    }
    for key in &ranks.order {
        let mut zadd = redis::cmd("ZADD");
        zadd.arg(key);
        for (score, member) in &ranks.members[key] {
            zadd.arg(score).arg(member);
        }
        writes.add_command(zadd);
    }
    if !touched.is_empty() {
        writes.add_command(touch_command(&touched));
    }
    Plan {
        answers,
        writes: Some(writes),
        left,
        decided: fresh.len(),
        touched,
    }
}

/// The call that bumps the versions of the scopes `names` and announces the change (in the
/// library: the next number of the change counter is read and written in one step there).
fn touch_command(names: &[String]) -> redis::Cmd {
    let mut touch = fcall_command("timing_touch_planned");
    touch.arg(names);
    touch
}

/// `those` (indexes into `reads`, of competitors `bibs`) in calls of at most `limit` reads,
/// grouped by competitor (or by unknown chip) in order of first appearance: a competitor's
/// reads are never split, so each call is atomic for each of its competitors.
fn calls_of<R: Borrow<Read>>(
    reads: &[R],
    bibs: &[Option<&str>],
    those: &[usize],
    limit: usize,
) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut group_of: HashMap<(Option<&str>, Option<&str>), usize> = HashMap::new();
    for &index in those {
        let key = match bibs[index] {
            Some(bib) => (Some(bib), None),
            None => (None, reads[index].borrow().chip.as_deref()),
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
            .is_some_and(|call| !call.is_empty() && call.len() + group.len() > limit)
        {
            calls.push(Vec::new());
        }
        if let Some(call) = calls.last_mut() {
            call.extend(group);
        }
    }
    calls
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

    /// Planned transactions that Redis did not run since the start, because another client
    /// changed what they were planned from first (their reads were decided again).
    pub fn planned_aborted(&self) -> u64 {
        self.planning.aborted.load(Ordering::Relaxed)
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
    /// go one after the other. (A planned call reads the chips' holders again under `WATCH`,
    /// and the library reads them itself, so a chip reassigned in between still lands on its
    /// current holder.)
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
        let all: Vec<usize> = (0..reads.len()).collect();
        let calls = calls_of(reads, &bibs, &all, READS_PER_CALL);
        let at = now_rfc3339();
        let mut out = vec![(String::new(), String::new()); reads.len()];
        // One call after the other, not pipelined: Redis runs a client's pipelined commands
        // back to back, so a pipeline of the batch's calls held every results read for the
        // whole batch; one at a time, a read waits for one call at most.
        for call in &calls {
            let call_reads: Vec<&Read> = call.iter().map(|&index| &reads[index]).collect();
            let call_bibs: Vec<Option<&str>> = call.iter().map(|&index| bibs[index]).collect();
            let answers = self.apply_call(&call_reads, &call_bibs, &at).await?;
            for (&index, answer) in call.iter().zip(answers) {
                out[index] = answer;
            }
        }
        Ok(out)
    }

    /// Applies a call's reads (of competitors `bibs`, see [`plan`]): those decided here in one
    /// transaction on the chip-read lane, then the rest in library calls that decide them, on
    /// the bulk connection (they check what they read themselves, and calls of several batches
    /// go there one after the other without waiting for each other's round trips).
    async fn apply_call(
        &self,
        reads: &[&Read],
        bibs: &[Option<&str>],
        at: &str,
    ) -> Result<Vec<Answer>, StoreError> {
        let mut answers = vec![None; reads.len()];
        let left = match self.planned_call(reads, bibs).await? {
            Some(plan) => {
                self.planning
                    .planned
                    .fetch_add(plan.decided as u64, Ordering::Relaxed);
                for (k, answer) in plan.answers.into_iter().enumerate() {
                    if answer.is_some() {
                        answers[k] = answer;
                    }
                }
                plan.left
            }
            None => (0..reads.len()).collect(),
        };
        if !left.is_empty() {
            self.planning
                .left
                .fetch_add(left.len() as u64, Ordering::Relaxed);
            for call in calls_of(reads, bibs, &left, LIBRARY_READS_PER_CALL) {
                let call_reads: Vec<&Read> = call.iter().map(|&k| reads[k]).collect();
                let decided = self.library_call(&call_reads, at).await?;
                for (&k, answer) in call.iter().zip(decided) {
                    answers[k] = Some(answer);
                }
            }
        }
        answers
            .into_iter()
            .map(|answer| {
                answer.ok_or_else(|| StoreError::Internal("a read without an answer".into()))
            })
            .collect()
    }

    /// A call planned here and its transaction run on the lane; `None` when planning is off,
    /// the call has nothing to plan, a chip changed holder since the batch read it, or Redis
    /// ran none of [`PLANNED_ROUNDS`] transactions (another client kept changing what they
    /// were planned from). (A plan without writes leaves the lane watching: the next call's
    /// read ends that first.)
    async fn planned_call(
        &self,
        reads: &[&Read],
        bibs: &[Option<&str>],
    ) -> Result<Option<Plan>, StoreError> {
        // (Start reads and reads of nobody are the library's: nothing to read for them.)
        let plannable = |(read, bib): (&&Read, &Option<&str>)| read.checkpoint > 0 && bib.is_some();
        if !self.planning.on.load(Ordering::Relaxed) || !reads.iter().zip(bibs).any(plannable) {
            return Ok(None);
        }
        let mut lane = self.lane.lock().await;
        let lane = &mut lane;
        for _ in 0..PLANNED_ROUNDS {
            let Some(known) = self.watched(lane, reads, bibs).await? else {
                return Ok(None);
            };
            let mut plan = plan(&self.race, reads, bibs, &known);
            let Some(writes) = plan.writes.take() else {
                return Ok(Some(plan));
            };
            match lane.query::<Option<Vec<Value>>>(&writes).await {
                Ok(Some(_)) => return Ok(Some(plan)),
                Ok(None) => {
                    self.planning.aborted.fetch_add(1, Ordering::Relaxed);
                }
                Err(err) if is_function_missing(&err) => {
                    // The transaction ran but for its announcement (a transaction is not
                    // undone by a failed command): load the library and announce.
                    let mut touch = redis::pipe();
                    touch.add_command(touch_command(&plan.touched));
                    self.fcall_pipe_on(&self.bulk, &touch).await?;
                    return Ok(Some(plan));
                }
                Err(err) => return Err(err),
            }
        }
        Ok(None)
    }

    /// What a call of `reads` (of competitors `bibs`) is planned from, read on the lane after
    /// `WATCH` of the keys it comes from (and `UNWATCH` of what the lane watched before): whether the ids were received before, the
    /// competitors' entries and the chips' holders in one round trip, the gun times of the
    /// entries' waves (if any) in a second. `None` when a chip's holder is not `bibs`' (the
    /// library reads them).
    async fn watched(
        &self,
        lane: &mut LaneGuard<'_>,
        reads: &[&Read],
        bibs: &[Option<&str>],
    ) -> Result<Option<Known>, StoreError> {
        let index = keys::times_index(&self.race.checkpoints);
        let ids: Vec<&str> = reads.iter().map(|r| r.id.as_str()).collect();
        let mut competitors: Vec<&str> = Vec::new();
        let mut listed: HashSet<&str> = HashSet::with_capacity(bibs.len());
        for &bib in bibs.iter().flatten() {
            if listed.insert(bib) {
                competitors.push(bib);
            }
        }
        let chips: Vec<(&str, Option<&str>)> = reads
            .iter()
            .zip(bibs)
            .filter_map(|(read, bib)| Some((read.chip.as_deref()?, *bib)))
            .collect();
        let mut pipe = unwatch();
        pipe.ignore()
            .cmd("WATCH")
            .arg(keys::PASSINGS)
            .arg(&index)
            .arg(keys::WAVES)
            .arg(keys::CHIPS)
            .ignore();
        pipe.cmd("HMGET").arg(keys::PASSINGS).arg(&ids);
        if !competitors.is_empty() {
            pipe.cmd("HMGET").arg(&index).arg(&competitors);
        }
        if !chips.is_empty() {
            pipe.cmd("HMGET")
                .arg(keys::CHIPS)
                .arg(chips.iter().map(|(chip, _)| *chip).collect::<Vec<_>>());
        }
        let replies: Vec<Value> = lane.query(&pipe).await?;
        let mut replies = replies.into_iter();
        let mut next = || replies.next().ok_or_else(|| parse_err("too few replies"));
        let received: Vec<Option<Value>> = redis::from_redis_value(next()?).map_err(parse_err)?;
        let mut entries = HashMap::new();
        if !competitors.is_empty() {
            let found: Vec<Option<String>> = redis::from_redis_value(next()?).map_err(parse_err)?;
            for (bib, entry) in competitors.iter().zip(found) {
                if let Some(entry) = entry {
                    entries.insert((*bib).to_owned(), entry);
                }
            }
        }
        if !chips.is_empty() {
            let holders: Vec<Option<String>> =
                redis::from_redis_value(next()?).map_err(parse_err)?;
            if chips
                .iter()
                .zip(&holders)
                .any(|((_, bib), holder)| *bib != holder.as_deref())
            {
                return Ok(None);
            }
        }
        // The gun times of the entries' waves, if any, in a second round trip (still watched).
        let checkpoints = self.race.checkpoints.len();
        let mut waves: Vec<&str> = Vec::new();
        for entry in entries.values() {
            if let Some(wave) = Record::of(entry, checkpoints).and_then(|record| record.wave)
                && !waves.contains(&wave)
            {
                waves.push(wave);
            }
        }
        let mut guns = HashMap::new();
        if !waves.is_empty() {
            let mut pipe = redis::pipe();
            pipe.cmd("HMGET").arg(keys::WAVES).arg(&waves);
            let (found,): (Vec<Option<String>>,) = lane.query(&pipe).await?;
            for (wave, gun) in waves.iter().zip(found) {
                if let Some(gun) = gun {
                    guns.insert((*wave).to_owned(), gun);
                }
            }
        }
        Ok(Some(Known {
            received: received.iter().map(Option::is_some).collect(),
            entries,
            guns,
        }))
    }

    /// A call decided by the library's rules (`timing_passings`).
    async fn library_call(&self, reads: &[&Read], at: &str) -> Result<Vec<Answer>, StoreError> {
        let mut command = fcall_command("timing_passings");
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

/// A pipeline that starts with `UNWATCH`.
fn unwatch() -> redis::Pipeline {
    let mut pipe = redis::pipe();
    pipe.cmd("UNWATCH");
    pipe
}
