//! Policy documents compared by meaning, not by bytes. AWS gives back what it was sent in
//! another form: IAM URL-encodes documents and may reorder or reformat them, ECR and EFS
//! reformat theirs, and the policy grammar lets a one-element list be written as a plain
//! string (`"Action": "s3:GetObject"` is `"Action": ["s3:GetObject"]`). Comparing the parsed,
//! [`normalize`]d forms is what keeps a second `up` on AWS from rewriting every policy and
//! `plan` from reporting a change forever.

use serde_json::{Map, Value};

/// Parses a document as AWS returns it: JSON, or URL-encoded JSON (IAM).
pub fn parse_document(text: &str) -> Option<Value> {
    serde_json::from_str(text)
        .ok()
        .or_else(|| serde_json::from_str(&percent_decode(text)).ok())
}

fn percent_decode(text: &str) -> String {
    // application/x-www-form-urlencoded writes a space as `+`; JSON text has no other `+`
    // outside strings, and IAM encodes a `+` inside one as `%2B`.
    percent_encoding::percent_decode_str(&text.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// Keys whose value may be one element or a list of them, in IAM, EFS and ECR policies.
const LIST_KEYS: &[&str] = &[
    "Statement",
    "Action",
    "NotAction",
    "Resource",
    "NotResource",
];

/// The canonical form of a policy document: every place that takes "one or a list" holds a
/// sorted list without repeats (statements, actions, resources, each principal kind, each
/// condition's values). Object keys are unordered in [`Value`] already.
pub fn normalize(document: &Value) -> Value {
    normalize_at(None, document)
}

fn normalize_at(key: Option<&str>, value: &Value) -> Value {
    let one_or_list = key.is_some_and(|k| LIST_KEYS.contains(&k));
    match value {
        Value::Array(items) => {
            let items: Vec<Value> = items.iter().map(|v| normalize_at(None, v)).collect();
            if one_or_list {
                as_set(&Value::Array(items))
            } else {
                Value::Array(items)
            }
        }
        one if one_or_list => as_set(&Value::Array(vec![normalize_at(None, one)])),
        Value::Object(map) => {
            let normalized: Map<String, Value> = map
                .iter()
                .map(|(k, v)| {
                    let v = match k.as_str() {
                        // { kind: one-or-list }
                        "Principal" | "NotPrincipal" => each_value(v, as_set),
                        // { operator: { key: one-or-list } }
                        "Condition" => each_value(v, |keys| each_value(keys, as_set)),
                        _ => normalize_at(Some(k), v),
                    };
                    (k.clone(), v)
                })
                .collect();
            Value::Object(normalized)
        }
        scalar => scalar.clone(),
    }
}

/// An object with `f` applied to each of its values; anything else as it is.
fn each_value(value: &Value, f: impl Fn(&Value) -> Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), f(v))).collect()),
        other => other.clone(),
    }
}

/// One element or a list of them, as a sorted list without repeats.
fn as_set(value: &Value) -> Value {
    let mut items = match value {
        Value::Array(items) => items.clone(),
        one => vec![one.clone()],
    };
    items.sort_by_key(|v| v.to_string());
    items.dedup();
    Value::Array(items)
}

/// Whether two documents mean the same.
pub fn same_meaning(a: &Value, b: &Value) -> bool {
    normalize(a) == normalize(b)
}

/// Whether a document as AWS returned it (`live`, any of its forms) means `wanted`.
pub fn matches_live(live: Option<&str>, wanted: &Value) -> bool {
    live.and_then(parse_document)
        .is_some_and(|live| same_meaning(&live, wanted))
}

/// Makes every place of `document` that names exactly `current` also allow each of `also`
/// (a string becomes a list of all of them). For a transition: a policy that must keep
/// allowing the old access point until the new one is in use.
pub fn allow_also(document: &mut Value, current: &str, also: &[String]) {
    if also.is_empty() {
        return;
    }
    match document {
        Value::String(s) if s == current => {
            let mut all = vec![Value::String(current.to_owned())];
            all.extend(also.iter().cloned().map(Value::String));
            *document = Value::Array(all);
        }
        Value::Array(items) => {
            if items.iter().any(|v| v.as_str() == Some(current)) {
                items.extend(also.iter().cloned().map(Value::String));
            } else {
                items.iter_mut().for_each(|v| allow_also(v, current, also));
            }
        }
        Value::Object(map) => map.values_mut().for_each(|v| allow_also(v, current, also)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_url_encoded_documents() {
        let encoded = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%5D%7D";
        assert_eq!(
            parse_document(encoded),
            Some(json!({"Version": "2012-10-17", "Statement": []}))
        );
        assert_eq!(parse_document(r#"{"a": 1}"#), Some(json!({"a": 1})));
    }

    #[test]
    fn the_forms_aws_gives_back_mean_the_same() {
        let wanted = json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"Service": "ecs-tasks.amazonaws.com"},
                "Action": ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"],
                "Resource": "arn:aws:elasticfilesystem:eu-north-1:123456789012:file-system/fs-1",
                "Condition": {"StringEquals": {"elasticfilesystem:AccessPointArn": "arn:ap"}}
            }]
        });
        // Reordered, reformatted, a statement object instead of a list, one-element lists as
        // strings and strings as one-element lists, then URL-encoded as IAM returns it.
        let returned = r#"{ "Statement": { "Condition": { "StringEquals":
            { "elasticfilesystem:AccessPointArn": ["arn:ap"] } },
            "Resource": ["arn:aws:elasticfilesystem:eu-north-1:123456789012:file-system/fs-1"],
            "Action": ["elasticfilesystem:ClientWrite", "elasticfilesystem:ClientMount"],
            "Principal": { "Service": ["ecs-tasks.amazonaws.com"] }, "Effect": "Allow" },
            "Version": "2012-10-17" }"#;
        let encoded: String = returned
            .bytes()
            .map(|b| match b {
                b'{' | b'}' | b'"' | b':' | b',' | b'[' | b']' | b'/' => format!("%{b:02X}"),
                b' ' | b'\n' => "+".to_owned(),
                other => (other as char).to_string(),
            })
            .collect();
        assert!(matches_live(Some(returned), &wanted));
        assert!(matches_live(Some(&encoded), &wanted));
    }

    #[test]
    fn a_real_change_is_still_a_difference() {
        let wanted = json!({"Statement": [{"Effect": "Allow", "Action": "ecs:ListTasks"}]});
        let other = json!({"Statement": [{"Effect": "Allow", "Action": "ecs:*"}]});
        assert!(!same_meaning(&wanted, &other));
        let more =
            json!({"Statement": [{"Effect": "Allow", "Action": ["ecs:ListTasks", "ecs:*"]}]});
        assert!(!same_meaning(&wanted, &more));
        assert!(!matches_live(None, &wanted));
        assert!(!matches_live(Some("not json"), &wanted));
    }

    #[test]
    fn allowing_also_the_old_value_widens_exactly_that_value() {
        let mut policy =
            json!({"Statement": [{"Condition": {"StringEquals": {"k": "new"}}, "Resource": "fs"}]});
        allow_also(&mut policy, "new", &["old".to_owned()]);
        assert_eq!(
            policy,
            json!({"Statement": [{"Condition": {"StringEquals": {"k": ["new", "old"]}}, "Resource": "fs"}]})
        );
    }
}
