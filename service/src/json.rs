//! What makes a request body JSON for this service: its declared media type, and object keys
//! that appear once. Used by `crate::error::JsonBody`, the one extractor every route reads its
//! body with, so every route answers the same way.
//!
//! - **Media type** (RFC 9110 §8.3.1): `Content-Type` is parsed, not searched for "json".
//!   `application/json` and the structured-syntax suffix `application/<name>+json` (RFC 6838
//!   §4.2.8, e.g. `application/problem+json`, `application/merge-patch+json`: JSON by
//!   registration) are JSON; a `charset` other than UTF-8 is not (RFC 8259 §8.1: JSON
//!   exchanged between systems is UTF-8); other parameters are ignored. `text/plain;
//!   note=json` is not JSON.
//! - **Duplicate keys** (RFC 8259 §4 says names SHOULD be unique; parsers disagree which value
//!   wins): an object with a repeated key, at any depth, is refused as the body is read
//!   ([`unique_value`]), before it is interpreted, so no route silently keeps the last value.
//!   The chip-read batch, the one large body, is parsed once by its own types, which refuse
//!   repeats themselves with [`Key`] and [`UniqueValue`].

use std::{borrow::Cow, fmt};

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Whether a `Content-Type` value declares a JSON body.
pub fn is_json_media_type(content_type: &str) -> bool {
    let Ok(media) = content_type.parse::<mime::Mime>() else {
        return false;
    };
    let json_syntax = media.type_() == mime::APPLICATION
        && (media.subtype() == mime::JSON || media.suffix() == Some(mime::JSON));
    let utf8 = media
        .get_param(mime::CHARSET)
        .is_none_or(|charset| charset == mime::UTF_8);
    json_syntax && utf8
}

/// A JSON document as a [`Value`], refusing a repeated key in any object ([`UniqueValue`]):
/// one pass over the body, which the caller turns into its own type (`serde_json::from_value`).
pub fn unique_value(body: &[u8]) -> Result<Value, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = UniqueValue.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

/// The error of an object whose key `key` is repeated, the same in every body.
pub fn repeated_key<E: de::Error>(key: &str) -> E {
    E::custom(format_args!("duplicate key `{key}`"))
}

/// An object key, borrowed from the document unless it has escapes.
pub struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E>(self, key: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(key))
    }

    fn visit_str<E>(self, key: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(key.to_owned()))
    }
}

/// Any JSON value as a [`Value`], failing on an object with a repeated key: every body
/// ([`unique_value`]), and the values inside the chip-read batch, whose reads may hold
/// anything.
#[derive(Clone, Copy)]
pub struct UniqueValue;

impl<'de> DeserializeSeed<'de> for UniqueValue {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for UniqueValue {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key_seed(Key)? {
            if object.contains_key(key.as_ref()) {
                return Err(repeated_key(&key));
            }
            let value = map.next_value_seed(self)?;
            object.insert(key.into_owned(), value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types() {
        for json in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "application/json;charset=\"UTF-8\"",
            "application/problem+json",
            "application/merge-patch+json",
            "application/json; version=1",
        ] {
            assert!(is_json_media_type(json), "{json} is JSON");
        }
        for other in [
            "text/plain; note=json",
            "text/json",
            "application/jsonx",
            "application/x-json-stream",
            "application/json-patch",
            "multipart/form-data; boundary=json",
            "application/json; charset=latin1",
            "json",
            "",
            "application/",
        ] {
            assert!(!is_json_media_type(other), "{other} is not JSON");
        }
    }

    #[test]
    fn duplicate_keys_at_any_depth() {
        assert!(unique_value(br#"{"a": 1, "b": {"a": 2}, "c": [{"a": 3}]}"#).is_ok());
        assert!(unique_value(br#"[1, "x", null, true, 1.5, -3]"#).is_ok());
        for (body, key) in [
            (r#"{"a": 1, "a": 2}"#, "a"),
            (r#"{"x": {"b": 1, "b": 1}}"#, "b"),
            (r#"[{"c": 1, "c": 2}]"#, "c"),
            (r#"{"\u0064": 1, "d": 2}"#, "d"),
        ] {
            let err = unique_value(body.as_bytes()).err();
            assert!(
                err.as_ref()
                    .is_some_and(|e| e.to_string().contains(&format!("duplicate key `{key}`"))),
                "{body}: {err:?}"
            );
        }
        assert!(unique_value(b"{\"a\": 1").is_err());
    }

    /// Small and large objects: each repeat is found wherever it falls.
    #[test]
    fn duplicate_keys_in_small_and_large_objects() {
        for size in [2, 16, 100] {
            let keys: Vec<String> = (0..size).map(|k| format!("\"k{k}\": {k}")).collect();
            let body = format!("{{{}}}", keys.join(", "));
            assert!(unique_value(body.as_bytes()).is_ok(), "{body}");
            for repeat in [0, size / 2, size - 1] {
                let body = format!("{{{}, \"k{repeat}\": 0}}", keys.join(", "));
                let err = unique_value(body.as_bytes()).err();
                assert!(
                    err.as_ref().is_some_and(|e| e
                        .to_string()
                        .contains(&format!("duplicate key `k{repeat}`"))),
                    "{size} keys, k{repeat} again: {err:?}"
                );
            }
        }
    }
}
