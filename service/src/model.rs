//! Domain values shared by the routes and the store: bibs, times of day, elapsed times and
//! statuses, with their validation and formatting rules.
//!
//! Times of day are kept as milliseconds since midnight (`hh` may go up to 99, as in the
//! original). An elapsed time is `to - from`; when `to` is earlier than `from` the race crossed
//! midnight, so whole days are added until it is not negative (start 23:50, finish 00:10 →
//! 20 minutes). The functions library `store/timing.lua` applies the same rule.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A value that breaks a domain rule (a bib, a time of day); the message names the value and
/// the rule. The HTTP layer decides the status code (400 in a path, 422 in a body).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

/// Milliseconds in a day.
pub const DAY_MS: u64 = 86_400_000;

/// A competitor's bib: 1 to 16 characters of `[A-Za-z0-9_-]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bib(String);

impl Bib {
    /// Validates a bib given as text.
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        let valid = (1..=16).contains(&text.len())
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if valid {
            Ok(Self(text.to_owned()))
        } else {
            Err(Invalid(format!(
                "invalid bib `{text}`: expected 1 to 16 characters of A-Z, a-z, 0-9, `_` or `-`"
            )))
        }
    }

    /// Validates a bib from a JSON body, where the legacy API also accepts a whole number.
    pub fn from_json(value: &Value) -> Result<Self, Invalid> {
        match value {
            Value::String(text) => Self::parse(text),
            Value::Number(n) if n.is_u64() || n.is_i64() => Self::parse(&n.to_string()),
            other => Err(Invalid(format!(
                "invalid bib {other}: expected a string or a whole number"
            ))),
        }
    }

    /// The bib as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The score that orders competitor listings: numeric bibs by value, then the others
    /// (equal scores are ordered by Redis lexicographically).
    pub fn order_score(&self) -> u64 {
        const NON_NUMERIC: u64 = 1_000_000_000_000_000;
        if self.0.len() <= 15 && self.0.bytes().all(|b| b.is_ascii_digit()) {
            self.0.parse().unwrap_or(NON_NUMERIC)
        } else {
            NON_NUMERIC
        }
    }
}

impl fmt::Display for Bib {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses a time of day `hh:mm:ss:SSS` (legacy) or `hh:mm:ss.SSS`, hours 00–99, into
/// milliseconds since midnight.
pub fn parse_time_of_day(text: &str) -> Result<u64, Invalid> {
    let err = || {
        Invalid(format!(
            "invalid time `{text}`: expected hh:mm:ss:SSS or hh:mm:ss.SSS (hours 00-99)"
        ))
    };
    let b = text.as_bytes();
    if b.len() != 12 || b[2] != b':' || b[5] != b':' || !(b[8] == b':' || b[8] == b'.') {
        return Err(err());
    }
    let num = |range: std::ops::Range<usize>| -> Option<u64> {
        b[range].iter().try_fold(0u64, |acc, &d| {
            d.is_ascii_digit().then(|| acc * 10 + u64::from(d - b'0'))
        })
    };
    let (Some(h), Some(m), Some(s), Some(ms)) = (num(0..2), num(3..5), num(6..8), num(9..12))
    else {
        return Err(err());
    };
    if m > 59 || s > 59 {
        return Err(err());
    }
    Ok(((h * 60 + m) * 60 + s) * 1000 + ms)
}

/// Formats milliseconds as `hh:mm:ss<sep>SSS` (`sep` is `:` for the legacy API, `.` for v1).
pub fn format_ms(ms: u64, sep: char) -> String {
    let mut out = String::with_capacity(12);
    write_ms(&mut out, ms, sep);
    out
}

/// [`format_ms`] into `out` (a results page writes hundreds of times without a string each).
pub fn write_ms(out: &mut String, ms: u64, sep: char) {
    let (h, rest) = (ms / 3_600_000, ms % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let (s, milli) = (rest / 1000, rest % 1000);
    // Digits pushed one by one: `write!` with padding was a tenth of a results page's CPU.
    if h < 10 {
        out.push('0');
    }
    out.push_str(itoa::Buffer::new().format(h));
    out.push(':');
    push_digits(out, m, 2);
    out.push(':');
    push_digits(out, s, 2);
    out.push(sep);
    push_digits(out, milli, 3);
}

/// The last `width` decimal digits of `n`, zero-padded.
fn push_digits(out: &mut String, n: u64, width: u32) {
    for place in (0..width).rev() {
        let digit = (n / 10u64.pow(place)) % 10;
        out.push(char::from(b'0' + digit as u8));
    }
}

/// Elapsed milliseconds from one time of day to a later one, crossing midnight when `to` is
/// earlier than `from`.
pub fn elapsed_ms(from: u64, to: u64) -> u64 {
    if to >= from {
        to - from
    } else {
        let behind = from - to;
        behind.div_ceil(DAY_MS) * DAY_MS - behind
    }
}

/// A competitor who is out of the ranking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// Did not start.
    #[serde(rename = "DNS")]
    Dns,
    /// Did not finish.
    #[serde(rename = "DNF")]
    Dnf,
    /// Disqualified.
    #[serde(rename = "DSQ")]
    Dsq,
}

impl Status {
    /// The text stored in Redis and shown in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dns => "DNS",
            Self::Dnf => "DNF",
            Self::Dsq => "DSQ",
        }
    }

    /// Reads the stored text back.
    pub fn from_stored(text: &str) -> Option<Self> {
        match text {
            "DNS" => Some(Self::Dns),
            "DNF" => Some(Self::Dnf),
            "DSQ" => Some(Self::Dsq),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_separators_and_hours_to_99() {
        assert_eq!(parse_time_of_day("12:15:00:000"), Ok(44_100_000));
        assert_eq!(parse_time_of_day("12:15:00.250"), Ok(44_100_250));
        assert_eq!(parse_time_of_day("99:59:59:999"), Ok(359_999_999));
        for bad in [
            "",
            "1:00:00:000",
            "12:60:00:000",
            "12:00:60:000",
            "12-00-00-000",
            "12:00:00:00",
            "aa:00:00:000",
            "12:00:00,000",
            "+1:00:00:000",
        ] {
            assert!(parse_time_of_day(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn formats_round_trip() {
        assert_eq!(format_ms(44_100_250, ':'), "12:15:00:250");
        assert_eq!(format_ms(359_999_999, '.'), "99:59:59.999");
        assert_eq!(format_ms(0, '.'), "00:00:00.000");
        assert_eq!(format_ms(360_000_000 + 61_001, '.'), "100:01:01.001");
        assert_eq!(format_ms(3_600_000 + 9, '.'), "01:00:00.009");
    }

    #[test]
    fn elapsed_crosses_midnight() {
        let t = |s| parse_time_of_day(s).unwrap_or(u64::MAX);
        assert_eq!(
            elapsed_ms(t("23:50:00:000"), t("00:10:00:000")),
            20 * 60_000
        );
        assert_eq!(elapsed_ms(t("09:00:00:000"), t("10:30:00:500")), 5_400_500);
        assert_eq!(
            elapsed_ms(t("23:50:00:000"), t("24:10:00:000")),
            20 * 60_000
        );
        // Two days behind (hours above 24 on the start): still the smallest non-negative value.
        assert_eq!(
            elapsed_ms(t("50:00:00:000"), t("01:00:00:000")),
            23 * 3_600_000
        );
    }

    #[test]
    fn bibs() {
        assert!(Bib::parse("123").is_ok());
        assert!(Bib::parse("A-b_9").is_ok());
        assert!(Bib::parse("abcdefghijklmnop").is_ok());
        assert!(Bib::parse("abcdefghijklmnopq").is_err());
        assert!(Bib::parse("").is_err());
        assert!(Bib::parse("12 3").is_err());
        assert!(Bib::parse("é").is_err());
        assert_eq!(
            Bib::from_json(&serde_json::json!(123)).map(|b| b.0).ok(),
            Some("123".into())
        );
        assert!(Bib::from_json(&serde_json::json!(1.5)).is_err());
        assert!(Bib::from_json(&serde_json::json!(null)).is_err());
    }
}
