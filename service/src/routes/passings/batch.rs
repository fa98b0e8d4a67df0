//! The body of `POST /api/v1/passings`, parsed in one pass by types of its own: each read's
//! fields as sent (texts borrowed from the body where they have no escapes), or what a read
//! was instead of an object, so that a read of the wrong shape is rejected alone with its
//! reason while the rest of the batch is applied. Repeated keys are refused here, anywhere in
//! the body, as `crate::json` refuses them in every other body.

use std::{borrow::Cow, fmt};

use serde::{
    Deserialize, Deserializer,
    de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor},
};
use serde_json::Value;

use crate::json::{Key, UniqueValue, repeated_key};

/// The body of `POST /api/v1/passings`, parsed in one pass: the reads' texts are borrowed
/// from the body where they have no escapes, and repeated keys are refused here as
/// `crate::json` refuses them in every other body (checking them first cost as much as
/// parsing again: the two passes took a third of the service's instructions per read).
pub(super) struct Batch<'a> {
    pub passings: Vec<ReadInput<'a>>,
}

impl<'de> Deserialize<'de> for Batch<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(BatchVisitor)
    }
}

struct BatchVisitor;

impl<'de> Visitor<'de> for BatchVisitor {
    type Value = Batch<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object with a `passings` array")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Batch<'de>, A::Error> {
        let mut passings = None;
        while let Some(key) = map.next_key_seed(Key)? {
            match key.as_ref() {
                "passings" if passings.is_some() => return Err(repeated_key(&key)),
                "passings" => passings = Some(map.next_value()?),
                other => return Err(de::Error::unknown_field(other, &["passings"])),
            }
        }
        let passings = passings.ok_or_else(|| de::Error::missing_field("passings"))?;
        Ok(Batch { passings })
    }
}

/// One read as sent: its fields, or what it was instead of an object.
// (`allow`, not `expect`: the lint fires only in a build of the whole workspace, where
// serde_json's `preserve_order`, which the AWS SDK turns on, makes a `Value`, and so each of
// the six fields, larger.)
#[allow(
    clippy::large_enum_variant,
    reason = "nearly every read is the large variant: boxing it would allocate once per read"
)]
pub(super) enum ReadInput<'a> {
    Fields(ReadFields<'a>),
    NotAnObject(Value),
}

/// A read's fields as sent.
#[derive(Default)]
pub(super) struct ReadFields<'a> {
    pub id: Field<'a>,
    pub checkpoint: Field<'a>,
    pub bib: Field<'a>,
    pub chip: Field<'a>,
    pub time: Field<'a>,
    pub source: Field<'a>,
    /// The names of fields a read does not have.
    pub unknown: Vec<Cow<'a, str>>,
}

/// One field of a read as sent.
#[derive(Default)]
pub(super) enum Field<'a> {
    #[default]
    Absent,
    Null,
    Text(Cow<'a, str>),
    /// Anything but a string or null.
    Other(Value),
}

impl Field<'_> {
    /// The field as text: `None` when absent or null; why not when it is something else
    /// (`name` is the field's).
    pub fn text(&self, name: &str) -> Result<Option<&str>, String> {
        match self {
            Field::Absent | Field::Null => Ok(None),
            Field::Text(text) => Ok(Some(text)),
            Field::Other(other) => Err(format!("`{name}` must be a string, got {other}")),
        }
    }
}

/// The visits of what a read or a field was instead of what it should be, kept whole as a
/// [`Value`] (built, repeated keys refused, by [`UniqueValue`]) for the reason given, in
/// `$wrap`.
macro_rules! visit_as_value {
    ($de:lifetime, $wrap:path) => {
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            UniqueValue.visit_bool(v).map($wrap)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            UniqueValue.visit_i64(v).map($wrap)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            UniqueValue.visit_u64(v).map($wrap)
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            UniqueValue.visit_f64(v).map($wrap)
        }
        fn visit_seq<A: SeqAccess<$de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            UniqueValue.visit_seq(seq).map($wrap)
        }
    };
}

impl<'de> Deserialize<'de> for ReadInput<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ReadVisitor)
    }
}

struct ReadVisitor;

impl<'de> Visitor<'de> for ReadVisitor {
    type Value = ReadInput<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a read")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = ReadFields::default();
        while let Some(key) = map.next_key_seed(Key)? {
            let field = match key.as_ref() {
                "id" => &mut fields.id,
                "checkpoint" => &mut fields.checkpoint,
                "bib" => &mut fields.bib,
                "chip" => &mut fields.chip,
                "time" => &mut fields.time,
                "source" => &mut fields.source,
                _ => {
                    if fields.unknown.contains(&key) {
                        return Err(repeated_key(&key));
                    }
                    // (Its value only for repeated keys: the read is rejected.)
                    map.next_value_seed(UniqueValue)?;
                    fields.unknown.push(key);
                    continue;
                }
            };
            if !matches!(field, Field::Absent) {
                return Err(repeated_key(&key));
            }
            *field = map.next_value_seed(FieldVisitor)?;
        }
        Ok(ReadInput::Fields(fields))
    }

    visit_as_value!('de, ReadInput::NotAnObject);
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        UniqueValue.visit_str(v).map(ReadInput::NotAnObject)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        UniqueValue.visit_unit().map(ReadInput::NotAnObject)
    }
}

struct FieldVisitor;

impl<'de> DeserializeSeed<'de> for FieldVisitor {
    type Value = Field<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FieldVisitor {
    type Value = Field<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a read's field")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Field::Text(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Field::Text(Cow::Owned(v.to_owned())))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Field::Null)
    }
    visit_as_value!('de, Field::Other);
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        UniqueValue.visit_map(map).map(Field::Other)
    }
}
