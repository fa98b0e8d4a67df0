//! The race definition: checkpoints in order, competitor fields, genders and categories.
//!
//! It is read at start-up from two files in the original's shapes, named by environment
//! variables (see `crate::config`):
//!
//! - `RACE_DB_FILE`: `{"allowed_checkpoints": ["start", "split1", "split2", "finish"]}`
//! - `RACE_COMPETITOR_FILE`: `{"competitor_info": {"allowed_keys": [...],
//!   "allowed_genders": [...], "allowed_categories": [...]}}`
//!
//! A file that is not set uses the original's values ([`Race::default`]). A file that is
//! unreadable or invalid stops the service with one [`RaceError`] naming the file and the problem.
//! The first checkpoint is the start every elapsed time is measured from.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::model::{Bib, Invalid};

/// An invalid race definition file.
#[derive(Debug, thiserror::Error)]
#[error("invalid race definition file `{}`: {problem}", path.display())]
pub struct RaceError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub problem: String,
}

/// What results are ranked by when the query does not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RankBy {
    /// From each competitor's own start read (the wave's gun time without one).
    #[default]
    Net,
    /// From the competitor's wave's gun time.
    Gun,
}

impl RankBy {
    /// `net` or `gun`, as in the query string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Net => "net",
            Self::Gun => "gun",
        }
    }
}

/// How chip reads become times (USATF 165.4 / 245.1; the way RACE RESULT and RUFUS work).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReadRules {
    /// At the start, the last read from the wave's gun time to this long after it counts.
    pub start_window_ms: u64,
    /// At each checkpoint (race order; the start's entry unused), the first read at least
    /// this long after the competitor's start counts.
    pub min_time_ms: Vec<u64>,
}

/// Default start window: 30 minutes (the back of a big wave crosses the mat minutes late).
pub const DEFAULT_START_WINDOW_MS: u64 = 30 * 60_000;
/// Default minimum time from the start to any later checkpoint: 1 minute (a finish mat beside
/// the start sees runners at the start).
pub const DEFAULT_MIN_TIME_MS: u64 = 60_000;

/// A read up to this long before its reference (the wave's gun time, the competitor's start) is
/// before it; anything else is after it, crossing midnight if need be, so races up to 18 hours
/// (the rules in `store/timing.lua` and `store/passings.rs`).
pub const BEFORE_MS: u64 = 6 * 3_600_000;

/// Competitor fields that may be omitted even when the definition lists them: `wave` (no
/// wave) and `chip` (no chip).
pub const OPTIONAL_FIELDS: [&str; 2] = ["wave", "chip"];

/// The validated race definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Race {
    /// Checkpoint names in race order; the first is the start.
    pub checkpoints: Vec<String>,
    /// Results' default ranking.
    pub rank_by: RankBy,
    /// The chip-read rules.
    pub rules: ReadRules,
    /// The fields of a competitor record; always contains `bib`, `gender` and `category`.
    pub fields: Vec<String>,
    /// Allowed values of `gender`.
    pub genders: Vec<String>,
    /// Allowed values of `category`.
    pub categories: Vec<String>,
}

/// A competitor record that passed [`Race::validate_competitor`].
#[derive(Debug, Clone)]
pub struct ValidCompetitor {
    /// The bib, when the record carries one.
    pub bib: Option<Bib>,
    /// The fields in definition order, `bib` as text.
    pub fields: Vec<(String, String)>,
}

/// `db.json`: the original's checkpoint list, and optionally the ranking default and the
/// read rules (times as `hh:mm:ss.SSS`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DbFile {
    allowed_checkpoints: Vec<String>,
    #[serde(default)]
    rank_by: RankBy,
    start_window: Option<String>,
    #[serde(default)]
    min_times: std::collections::BTreeMap<String, String>,
}

/// `competitor.json`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CompetitorFile {
    competitor_info: CompetitorInfo,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CompetitorInfo {
    allowed_keys: Vec<String>,
    allowed_genders: Vec<String>,
    allowed_categories: Vec<String>,
}

/// Longest accepted value of a free-text competitor field, in characters.
const MAX_FIELD_CHARS: usize = 200;

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

impl Default for Race {
    /// The original proof of concept's `db.json` and `competitor.json`.
    fn default() -> Self {
        Self {
            checkpoints: strings(&["start", "split1", "split2", "finish"]),
            rank_by: RankBy::Net,
            rules: ReadRules {
                start_window_ms: DEFAULT_START_WINDOW_MS,
                min_time_ms: vec![DEFAULT_MIN_TIME_MS; 4],
            },
            fields: strings(&[
                "bib",
                "first_name",
                "last_name",
                "gender",
                "country",
                "category",
            ]),
            genders: strings(&["male", "female", "na"]),
            categories: strings(&[
                "men20", "men30", "men40", "men50+", "women20", "women30", "women40", "women50+",
            ]),
        }
    }
}

/// Checks a list: not empty, no duplicates, every name within `max` characters of `valid`.
fn check_list(
    what: &str,
    list: &[String],
    min: usize,
    valid: impl Fn(char) -> bool,
) -> Result<(), String> {
    if list.len() < min {
        return Err(format!(
            "`{what}` needs at least {min} entries, has {}",
            list.len()
        ));
    }
    let mut seen = HashSet::new();
    for name in list {
        if name.is_empty() || name.chars().count() > 64 || !name.chars().all(&valid) {
            return Err(format!(
                "`{what}` entry `{name}` is not 1 to 64 characters of letters, digits, `_`, `-` or `+`"
            ));
        }
        if !seen.insert(name) {
            return Err(format!("`{what}` lists `{name}` twice"));
        }
    }
    Ok(())
}

fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+')
}

fn read(path: &Path) -> Result<String, RaceError> {
    std::fs::read_to_string(path).map_err(|err| RaceError {
        path: path.to_owned(),
        problem: format!("cannot read it: {err}"),
    })
}

impl Race {
    /// Loads the definition, each file falling back to the original's values when not given.
    pub fn load(db_file: Option<&Path>, competitor_file: Option<&Path>) -> Result<Self, RaceError> {
        let mut race = Self::default();
        if let Some(path) = db_file {
            let fail = |problem: String| RaceError {
                path: path.to_owned(),
                problem,
            };
            let file: DbFile =
                serde_json::from_str(&read(path)?).map_err(|e| fail(e.to_string()))?;
            check_list("allowed_checkpoints", &file.allowed_checkpoints, 2, |c| {
                c.is_ascii_alphanumeric() || matches!(c, '_' | '-')
            })
            .map_err(fail)?;
            let duration = |what: &str, text: &str| {
                crate::model::parse_time_of_day(text).map_err(|e| fail(format!("`{what}`: {e}")))
            };
            race.rules.start_window_ms = match &file.start_window {
                Some(text) => duration("start_window", text)?,
                None => DEFAULT_START_WINDOW_MS,
            };
            race.rules.min_time_ms = vec![DEFAULT_MIN_TIME_MS; file.allowed_checkpoints.len()];
            for (checkpoint, text) in &file.min_times {
                let Some(i) = file
                    .allowed_checkpoints
                    .iter()
                    .position(|c| c == checkpoint)
                else {
                    return Err(fail(format!(
                        "`min_times` names `{checkpoint}`, which is not in `allowed_checkpoints`"
                    )));
                };
                race.rules.min_time_ms[i] = duration("min_times", text)?;
            }
            race.rank_by = file.rank_by;
            race.checkpoints = file.allowed_checkpoints;
        }
        if let Some(path) = competitor_file {
            let fail = |problem: String| RaceError {
                path: path.to_owned(),
                problem,
            };
            let file: CompetitorFile =
                serde_json::from_str(&read(path)?).map_err(|e| fail(e.to_string()))?;
            let info = file.competitor_info;
            check_list("allowed_keys", &info.allowed_keys, 3, name_char).map_err(fail)?;
            for required in ["bib", "gender", "category"] {
                if !info.allowed_keys.iter().any(|k| k == required) {
                    return Err(fail(format!("`allowed_keys` must contain `{required}`")));
                }
            }
            if info.allowed_keys.iter().any(|k| k == "status") {
                return Err(fail(
                    "`allowed_keys` must not contain `status`: the service reserves it for DNS/DNF/DSQ"
                        .into(),
                ));
            }
            check_list("allowed_genders", &info.allowed_genders, 1, name_char).map_err(fail)?;
            check_list("allowed_categories", &info.allowed_categories, 1, name_char)
                .map_err(fail)?;
            race.fields = info.allowed_keys;
            race.genders = info.allowed_genders;
            race.categories = info.allowed_categories;
        }
        Ok(race)
    }

    /// Whether `name` is a checkpoint of this race.
    pub fn has_checkpoint(&self, name: &str) -> bool {
        self.checkpoints.iter().any(|c| c == name)
    }

    /// `name` if it is a checkpoint of this race, else the error naming the checkpoints.
    pub fn checkpoint<'a>(&self, name: &'a str) -> Result<&'a str, Invalid> {
        self.checkpoint_index(name).map(|_| name)
    }

    /// The position of checkpoint `name` in race order, else the error naming the checkpoints.
    pub fn checkpoint_index(&self, name: &str) -> Result<usize, Invalid> {
        self.checkpoints
            .iter()
            .position(|c| c == name)
            .ok_or_else(|| {
                Invalid(format!(
                    "unknown checkpoint `{name}`; the checkpoints are: {}",
                    self.checkpoints.join(", ")
                ))
            })
    }

    /// The checkpoint results are ranked at by default: the last one.
    pub fn finish(&self) -> &str {
        self.checkpoints.last().map_or("", String::as_str)
    }

    /// Checks the text value of a competitor field (the bib is checked by `Bib::parse`): at
    /// most 200 characters; a gender or category the definition allows.
    pub fn check_value(&self, field: &str, text: &str) -> Result<(), Invalid> {
        if text.chars().count() > MAX_FIELD_CHARS {
            return Err(Invalid(format!(
                "field `{field}` is longer than {MAX_FIELD_CHARS} characters"
            )));
        }
        // An optional field may be empty (absent); given, it is a name.
        if OPTIONAL_FIELDS.contains(&field)
            && !text.is_empty()
            && (text.len() > 64 || !text.chars().all(name_char))
        {
            return Err(Invalid(format!(
                "invalid {field} `{text}`: expected 1 to 64 characters of letters, digits, `_`, `-` or `+`"
            )));
        }
        for (name, allowed) in [("gender", &self.genders), ("category", &self.categories)] {
            if field == name && !allowed.iter().any(|a| a == text) {
                return Err(Invalid(format!(
                    "unknown {name} `{text}`; allowed: {}",
                    allowed.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// Validates a competitor record against the definition and returns its fields in
    /// definition order (`bib` as text). With `partial`, a subset of the fields is accepted
    /// (a PATCH); otherwise every field must be present. Unknown fields, non-string values,
    /// unknown genders and categories are refused with a message naming them.
    pub fn validate_competitor(
        &self,
        body: &Map<String, Value>,
        partial: bool,
    ) -> Result<ValidCompetitor, Invalid> {
        let invalid = |msg: String| Err(Invalid(msg));
        if let Some(unknown) = body.keys().find(|k| !self.fields.contains(k)) {
            return invalid(format!(
                "unknown field `{unknown}`; the competitor fields are: {}",
                self.fields.join(", ")
            ));
        }
        let mut bib = None;
        let mut out = Vec::with_capacity(self.fields.len());
        for field in &self.fields {
            let Some(value) = body.get(field) else {
                if partial || OPTIONAL_FIELDS.contains(&field.as_str()) {
                    continue;
                }
                return invalid(format!("missing field `{field}`"));
            };
            let text = if field == "bib" {
                let parsed = Bib::from_json(value)?;
                let text = parsed.as_str().to_owned();
                bib = Some(parsed);
                text
            } else {
                let Value::String(text) = value else {
                    return invalid(format!("field `{field}` must be a string, got {value}"));
                };
                text.clone()
            };
            self.check_value(field, &text)?;
            out.push((field.clone(), text));
        }
        Ok(ValidCompetitor { bib, fields: out })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap_or_else(|e| panic!("{e}"));
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        f
    }

    fn problem(db: &str, competitor: &str) -> String {
        let (db, competitor) = (file(db), file(competitor));
        match Race::load(Some(db.path()), Some(competitor.path())) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    const DB: &str = r#"{"allowed_checkpoints": ["start", "split1", "split2", "finish"]}"#;
    const COMPETITOR: &str = r#"{"competitor_info": {
        "allowed_keys": ["bib", "first_name", "last_name", "gender", "country", "category"],
        "allowed_genders": ["male", "female", "na"],
        "allowed_categories": ["men20", "men30", "men40", "men50+", "women20", "women30", "women40", "women50+"]}}"#;

    #[test]
    fn the_original_files_equal_the_default() {
        let (db, competitor) = (file(DB), file(COMPETITOR));
        let race = Race::load(Some(db.path()), Some(competitor.path())).ok();
        assert_eq!(race, Some(Race::default()));
    }

    #[test]
    fn invalid_files_name_file_and_problem() {
        let p = problem("", COMPETITOR);
        assert!(
            p.starts_with("invalid race definition file `") && p.contains("EOF"),
            "{p}"
        );
        let p = problem(r#"{"allowed_checkpoints": []}"#, COMPETITOR);
        assert!(p.contains("at least 2"), "{p}");
        let p = problem(r#"{"allowed_checkpoints": ["a", "a"]}"#, COMPETITOR);
        assert!(p.contains("twice"), "{p}");
        let p = problem(r#"{"allowed_checkpoint": ["a", "b"]}"#, COMPETITOR);
        assert!(p.contains("unknown field"), "{p}");
        let p = problem(
            DB,
            r#"{"competitor_info": {"allowed_keys": ["bib", "first_name", "gender"], "allowed_genders": ["x"], "allowed_categories": ["y"]}}"#,
        );
        assert!(p.contains("must contain `category`"), "{p}");
        let missing = Race::load(Some(Path::new("/nonexistent/db.json")), None);
        assert!(matches!(missing, Err(e) if e.to_string().contains("/nonexistent/db.json")));
    }

    #[test]
    fn validates_competitors() {
        let race = Race::default();
        let body = |v: Value| v.as_object().cloned().unwrap_or_default();
        let ok = body(
            serde_json::json!({"bib": 123, "first_name": "Ellen", "last_name": "Ripley",
            "gender": "female", "country": "USA", "category": "women40"}),
        );
        let valid = race
            .validate_competitor(&ok, false)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(valid.bib.map(|b| b.to_string()), Some("123".into()));
        assert_eq!(valid.fields.len(), 6);
        let mut extra = ok.clone();
        extra.insert("age".into(), "40".into());
        assert!(race.validate_competitor(&extra, false).is_err());
        let mut missing = ok.clone();
        missing.remove("country");
        assert!(race.validate_competitor(&missing, false).is_err());
        assert!(race.validate_competitor(&missing, true).is_ok());
        let mut gender = ok;
        gender.insert("gender".into(), "robot".into());
        assert!(race.validate_competitor(&gender, false).is_err());
    }
}
