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

use crate::json::{Key, UniqueKeys, UniqueValue};

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
                "passings" if passings.is_some() => return Err(repeated(&key)),
                "passings" => passings = Some(map.next_value()?),
                other => return Err(de::Error::unknown_field(other, &["passings"])),
            }
        }
        let passings = passings.ok_or_else(|| de::Error::missing_field("passings"))?;
        Ok(Batch { passings })
    }
}

fn repeated<E: de::Error>(key: &str) -> E {
    E::custom(format_args!("duplicate key `{key}`"))
}

/// One read as sent: its fields, or what it was instead of an object.
#[expect(
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
    id: Field<'a>,
    checkpoint: Field<'a>,
    bib: Field<'a>,
    chip: Field<'a>,
    time: Field<'a>,
    source: Field<'a>,
    /// The names of fields a read does not have.
    pub unknown: Vec<Cow<'a, str>>,
}

impl<'a> ReadFields<'a> {
    /// The field `name` (one of a read's).
    pub fn get(&self, name: &str) -> &Field<'a> {
        match name {
            "id" => &self.id,
            "checkpoint" => &self.checkpoint,
            "bib" => &self.bib,
            "chip" => &self.chip,
            "time" => &self.time,
            "source" => &self.source,
            _ => &Field::Absent,
        }
    }
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
                        return Err(repeated(&key));
                    }
                    map.next_value_seed(UniqueKeys)?;
                    fields.unknown.push(key);
                    continue;
                }
            };
            if !matches!(field, Field::Absent) {
                return Err(repeated(&key));
            }
            *field = map.next_value_seed(FieldVisitor)?;
        }
        Ok(ReadInput::Fields(fields))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        UniqueValue.visit_seq(seq).map(ReadInput::NotAnObject)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(ReadInput::NotAnObject(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(ReadInput::NotAnObject(Value::from(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(ReadInput::NotAnObject(Value::from(v)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(ReadInput::NotAnObject(Value::from(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(ReadInput::NotAnObject(Value::String(v.to_owned())))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(ReadInput::NotAnObject(Value::Null))
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
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Field::Other(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Field::Other(Value::from(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Field::Other(Value::from(v)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Field::Other(Value::from(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        UniqueValue.visit_seq(seq).map(Field::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        UniqueValue.visit_map(map).map(Field::Other)
    }
}
