//! Every Redis key name of the service, defined here once. Rust builds keys with these
//! functions; the Functions library (`timing.lua`) gets the same names from [`lua_prelude`],
//! inserted into its source when the store loads it, so Lua never spells a key name of its own.
//!
//! | key | type | content |
//! | --- | --- | --- |
//! | `competitor:<bib>` | hash | the competitor's fields, all strings (the original's key) |
//! | `race:<bib>` | sorted set | member = checkpoint, score = time of day in ms (the original's key) |
//! | `competitor_status` | hash | bib → `DNS` / `DNF` / `DSQ` |
//! | `competitor_rows` | hash | bib → JSON object of the results-row fields (`first_name`, `last_name`, `gender`, `category`, `country`; null when absent) |
//! | `rank:<checkpoint>:all` | sorted set | competitors with a time or a status, score = ranking score at that checkpoint |
//! | `rank:<checkpoint>:gender:<g>` | sorted set | the same, for one gender |
//! | `rank:<checkpoint>:category:<c>` | sorted set | the same, for one category |
//! | `untimed:all`, `untimed:{gender,category}:<v>` | sorted set | competitors with neither a time nor a status, score = entry order (the number of the write from `live:seq`) |
//! | `competitors:all` | sorted set | bibs for listings, score = `Bib::order_score` |
//! | `competitors:country:<v>` | sorted set | a country's bibs, score = entry order (listings sort them by `competitors:all`'s scores; a listing by gender or category reads the scope's untimed and rank sets) |
//! | `live:version` | hash | scope (`all`, `gender:<g>`, `category:<c>`) → version of its last change (ETags, long polls); field `rows` → version of the last change of any results row |
//! | `live:seq` | string | the counter every write takes its number from: versions and entry order (never below the clock in µs at a library load's first write) |
//!
//! Channel `live:changes`: one message per change, `<version> <scope> <scope> ...`.
//! | `gunrank:<checkpoint>:<scope>` | sorted set | like `rank:`, scored by gun time (from the wave's gun time) |
//! | `start_lags` | hash | bib → ms from the wave's gun time to the competitor's start (0 without a start read); absent without a wave gun time |
//! | `manual:<bib>` | hash | checkpoint → manual time of day in ms (overrides the reads) |
//! | `reads:<bib>` | list | the competitor's raw reads as `<checkpoint index> <ms> <id>`, in order received |
//! | `times_index:<checkpoints>` | hash | bib → what a chip read needs of the competitor, in one string: the derived times, which are manual, the status (see `timing.lua`); the checkpoints joined by `,` in the name |
//! | `passings` | hash | read id → the raw read as received (JSON), never changed |
//! | `passings_unmatched` | sorted set | ids of reads that matched no competitor, score = order received |
//! | `chips` | hash | chip → bib |
//! | `waves` | hash | wave name → gun time of day in ms |
//! | `wave:<name>` | set | the wave's bibs |
//! | `audit`, `audit:<bib>` | list | audit entries (JSON), newest first; all, and one competitor's |

use std::fmt::Write;

use super::{OUT, Scope, UNTIMED};

/// Prefix of a competitor's record hash.
const COMPETITOR: &str = "competitor:";
/// Prefix of a competitor's times sorted set.
const TIMES: &str = "race:";
/// Hash bib → status.
pub const STATUS: &str = "competitor_status";
/// Hash bib → JSON of the results-row fields.
pub const ROWS: &str = "competitor_rows";
/// Prefix of the rank sets (`rank:<checkpoint>:<scope>`).
const RANK: &str = "rank:";
/// Prefix of the untimed sets (`untimed:<scope>`).
const UNTIMED_SETS: &str = "untimed:";
/// Prefix of the listing sets (`competitors:<scope>`).
const LISTING: &str = "competitors:";
/// Hash scope → version of its last change.
pub const LIVE_VERSION: &str = "live:version";
/// Counter the versions are taken from.
const LIVE_SEQ: &str = "live:seq";
/// Field of [`LIVE_VERSION`] (not a scope) holding the version of the last change of any
/// results row ([`ROWS`]): a service keeps the rows it read while it is unchanged.
pub const ROWS_VERSION: &str = "rows";
/// Channel every change is announced on.
pub const LIVE_CHANGES: &str = "live:changes";
/// Prefix of the gun-time rank sets (`gunrank:<checkpoint>:<scope>`).
const GUN_RANK: &str = "gunrank:";
/// Hash bib → start lag behind the wave's gun time.
pub const LAGS: &str = "start_lags";
/// Prefix of a competitor's manual times.
const MANUAL: &str = "manual:";
/// Prefix of a competitor's read index.
const READS: &str = "reads:";
/// Prefix of the times index (the race's checkpoints complete its name).
const TIMES_INDEX: &str = "times_index:";
/// Hash read id → raw read.
pub const PASSINGS: &str = "passings";
/// Sorted set of unmatched read ids.
pub const UNMATCHED: &str = "passings_unmatched";
/// Hash chip → bib.
pub const CHIPS: &str = "chips";
/// Hash wave → gun time.
pub const WAVES: &str = "waves";
/// Prefix of a wave's member set.
const WAVE_MEMBERS: &str = "wave:";
/// The audit list.
pub const AUDIT: &str = "audit";
/// Prefix of one competitor's audit list.
const AUDIT_OF: &str = "audit:";
/// Scope suffixes.
const ALL: &str = "all";
const GENDER: &str = "gender:";
const CATEGORY: &str = "category:";
const COUNTRY: &str = "country:";

/// `competitor:<bib>`.
pub fn competitor(bib: &str) -> String {
    format!("{COMPETITOR}{bib}")
}

/// `race:<bib>`.
pub fn times(bib: &str) -> String {
    format!("{TIMES}{bib}")
}

/// A scope's suffix in rank and untimed keys, and its name in versions and change messages.
pub fn scope_suffix(scope: Scope<'_>) -> String {
    match scope {
        Scope::All => ALL.to_owned(),
        Scope::Gender(g) => format!("{GENDER}{g}"),
        Scope::Category(c) => format!("{CATEGORY}{c}"),
    }
}

/// The rank set of `scope` at `checkpoint`, by net time (or by gun time with `gun`).
pub fn rank(checkpoint: &str, scope: Scope<'_>, gun: bool) -> String {
    let prefix = if gun { GUN_RANK } else { RANK };
    format!("{prefix}{checkpoint}:{}", scope_suffix(scope))
}

/// `reads:<bib>`.
pub fn reads(bib: &str) -> String {
    format!("{READS}{bib}")
}

/// `manual:<bib>`.
pub fn manual(bib: &str) -> String {
    format!("{MANUAL}{bib}")
}

/// The times index of a race with `checkpoints` (`times_index:<checkpoints joined by ,>`):
/// a change of the checkpoints leaves the old entries behind, under another name. (The
/// library gets it whole, in its race table: `functions::Library::for_race`.)
pub fn times_index(checkpoints: &[String]) -> String {
    format!("{TIMES_INDEX}{}", checkpoints.join(","))
}

/// `wave:<name>`.
pub fn wave_members(name: &str) -> String {
    format!("{WAVE_MEMBERS}{name}")
}

/// The audit list of one competitor (`audit:<bib>`), or of everything.
pub fn audit(bib: Option<&str>) -> String {
    bib.map_or_else(|| AUDIT.to_owned(), |bib| format!("{AUDIT_OF}{bib}"))
}

/// The untimed set of `scope`: its competitors with neither a time nor a status.
pub fn untimed(scope: Scope<'_>) -> String {
    format!("{UNTIMED_SETS}{}", scope_suffix(scope))
}

/// `competitors:all`: every competitor, scored by `Bib::order_score` (ties by bib).
pub const LISTING_ALL: &str = "competitors:all";

/// `competitors:country:<c>`: a country's competitors, appended in the order they were
/// written (the listing sorts them by bib with [`LISTING_ALL`]'s scores).
pub fn country_listing(country: &str) -> String {
    format!("{LISTING}{COUNTRY}{country}")
}

/// A Lua string literal (key names are plain ASCII; quotes and backslashes escaped anyway).
pub fn lua_string(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The Lua table `K` the Functions library builds every key from, with the same names as above,
/// and the ranking scores [`UNTIMED`] and [`OUT`].
pub fn lua_prelude() -> String {
    let mut out = String::from("-- generated from store/keys.rs\nlocal K = {\n");
    for (name, value) in [
        ("competitor", COMPETITOR),
        ("times", TIMES),
        ("status", STATUS),
        ("rows", ROWS),
        ("rank", RANK),
        ("untimed", UNTIMED_SETS),
        ("listing", LISTING),
        ("all", ALL),
        ("gender", GENDER),
        ("category", CATEGORY),
        ("country", COUNTRY),
        ("live_version", LIVE_VERSION),
        ("live_seq", LIVE_SEQ),
        ("live_changes", LIVE_CHANGES),
        ("rows_version", ROWS_VERSION),
        ("gun_rank", GUN_RANK),
        ("lags", LAGS),
        ("manual", MANUAL),
        ("reads", READS),
        ("passings", PASSINGS),
        ("unmatched", UNMATCHED),
        ("chips", CHIPS),
        ("waves", WAVES),
        ("wave_members", WAVE_MEMBERS),
        ("audit", AUDIT),
        ("audit_of", AUDIT_OF),
    ] {
        let _ = writeln!(out, "  {name} = {},", lua_string(value));
    }
    let _ = writeln!(out, "  UNTIMED = {UNTIMED},\n  OUT = {OUT},");
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(competitor("7"), "competitor:7");
        assert_eq!(
            rank("finish", Scope::Gender("male"), false),
            "rank:finish:gender:male"
        );
        assert_eq!(rank("finish", Scope::All, true), "gunrank:finish:all");
        assert_eq!(untimed(Scope::All), "untimed:all");
        assert_eq!(
            times_index(&["start".into(), "finish".into()]),
            "times_index:start,finish"
        );
        assert_eq!(LISTING_ALL, format!("{LISTING}{ALL}"));
        assert_eq!(country_listing("FI"), "competitors:country:FI");
        assert!(lua_prelude().contains("  rank = 'rank:',\n"));
    }
}
