//! A competitor's times index entry (`keys::times_index`), read as the functions library
//! writes it (`timing.lua`, INDEX): the derived times in checkpoint order (8 digits each,
//! `--------` without), one manual flag per checkpoint (`1`: a manual time overrides the
//! reads), the status (`F` DNF, `Q` DSQ, `S` DNS, `-` without), then, when the writer knew
//! them, the gender, category and wave, each after a byte 0x1F (empty when absent).

use crate::model::Status;

/// Digits of one time.
const WIDTH: usize = 8;
/// Separator before each record field.
const SEP: char = '\u{1f}';

/// What an entry says of its competitor's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Record<'a> {
    pub gender: Option<&'a str>,
    pub category: Option<&'a str>,
    pub wave: Option<&'a str>,
}

impl<'a> Record<'a> {
    /// What the entry `text` of a race with `checkpoints` checkpoints says of the record, read
    /// alone (to find the competitor's wave without parsing their times): after the fixed
    /// part, a separator, then gender, category and wave between further separators (the
    /// library reads them so, without checking the first).
    pub fn of(text: &'a str, checkpoints: usize) -> Option<Self> {
        let fixed = WIDTH * checkpoints + checkpoints + 1;
        let mut fields = text.get(fixed + 1..)?.splitn(3, SEP);
        let present = |v: &'a str| (!v.is_empty()).then_some(v);
        Some(Record {
            gender: present(fields.next()?),
            category: present(fields.next()?),
            wave: present(fields.next()?),
        })
    }
}

/// An entry, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry<'a> {
    /// As stored.
    pub text: &'a str,
    /// Per checkpoint, in race order.
    pub times: Vec<Option<u64>>,
    /// Per checkpoint: a manual time overrides the reads.
    pub manual: Vec<bool>,
    pub status: Option<Status>,
    /// `None` when the writer did not know the record.
    pub record: Option<Record<'a>>,
}

impl<'a> Entry<'a> {
    /// The entry of a race with `checkpoints` checkpoints; `None` when `text` is not one (the
    /// library reads what it wrote; anything else is left to it).
    pub fn parse(text: &'a str, checkpoints: usize) -> Option<Self> {
        let fixed = WIDTH * checkpoints + checkpoints + 1;
        let bytes = text.as_bytes();
        if bytes.len() < fixed {
            return None;
        }
        let times = bytes[..WIDTH * checkpoints]
            .chunks(WIDTH)
            .map(|digits| match digits {
                [b'-', ..] => Some(None),
                _ if digits.iter().all(u8::is_ascii_digit) => Some(Some(
                    digits.iter().fold(0, |ms, d| ms * 10 + u64::from(d - b'0')),
                )),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?;
        let manual = bytes[WIDTH * checkpoints..fixed - 1]
            .iter()
            .map(|&flag| flag == b'1')
            .collect();
        let status = match bytes[fixed - 1] {
            b'F' => Some(Status::Dnf),
            b'Q' => Some(Status::Dsq),
            b'S' => Some(Status::Dns),
            _ => None,
        };
        Some(Self {
            text,
            times,
            manual,
            status,
            record: Record::of(text, checkpoints),
        })
    }

    /// Whether any checkpoint has a time.
    pub fn timed(&self) -> bool {
        self.times.iter().any(Option::is_some)
    }

    /// The entry with the times at `changes` (checkpoint, ms) replaced.
    pub fn with_times(&self, changes: &[(usize, u64)]) -> String {
        let mut text = self.text.to_owned();
        for &(checkpoint, ms) in changes {
            let at = WIDTH * checkpoint;
            text.replace_range(at..at + WIDTH, &format!("{ms:08}"));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_the_library_writes() {
        let text = "32400000--------36000000--------0010F\u{1f}male\u{1f}\u{1f}w1";
        let entry = Entry::parse(text, 4).expect("entry");
        assert_eq!(
            entry.times,
            [Some(32_400_000), None, Some(36_000_000), None]
        );
        assert_eq!(entry.manual, [false, false, true, false]);
        assert_eq!(entry.status, Some(Status::Dnf));
        assert_eq!(
            entry.record,
            Some(Record {
                gender: Some("male"),
                category: None,
                wave: Some("w1"),
            })
        );
        assert!(entry.timed());
        assert_eq!(
            entry.with_times(&[(1, 33_000_000), (3, 5)]),
            "32400000330000003600000000000005\
             0010F\u{1f}male\u{1f}\u{1f}w1"
        );
    }

    #[test]
    fn an_entry_without_the_record_or_status() {
        let entry = Entry::parse("----------------00-", 2).expect("entry");
        assert_eq!(entry.times, [None, None]);
        assert_eq!(entry.status, None);
        assert_eq!(entry.record, None);
        assert!(!entry.timed());
        // A record part cut short is no record, as the library reads it.
        let entry = Entry::parse("----------------00-\u{1f}male\u{1f}", 2).expect("entry");
        assert_eq!(entry.record, None);
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        assert_eq!(Entry::parse("--------00-", 2), None);
        assert_eq!(Entry::parse("1234567x--------00-", 2), None);
    }
}
