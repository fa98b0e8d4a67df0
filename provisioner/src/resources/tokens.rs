//! Named write tokens (issue 11). The service accepts `TIMING_API_TOKENS=name:token,...` beside
//! the single `TIMING_API_TOKEN` (named `default`) and records the name of the token a write
//! used in its audit trail, so two timers are told apart; `provisioner token --name` manages
//! them (`commands::token`).
//!
//! Storage: one SSM SecureString `/<app>/api-tokens` holding exactly that variable's value,
//! `name:token,name:token`, in the order the tokens were created. One parameter and not one
//! per token, because ECS injects a secret's value into one variable as it is and cannot join
//! several parameters into one: the parameter *is* the variable, so once the first named token
//! exists, adding, rotating or revoking one changes no task definition (the tasks only need
//! replacing to read the new value). The parameter exists only while there is at least one
//! named token: SSM refuses an empty value, and a task whose secret's parameter is missing
//! cannot start. The api container's `secrets` name it exactly while it exists ([`apply`]);
//! the execution role may always read it (`policies/task-execution-secrets.json`), so no token
//! change waits for IAM. It is tagged and checked like the app's other parameters: a parameter
//! of that name without the app's tags is neither read, changed, injected nor deleted.
//!
//! A change rewrites the whole list. SSM has no conditional write, so two runs changing it at
//! once could lose one of the changes; the version number the write returns shows that another
//! write came in between, and the run stops and says so ([`Error::ConcurrentChange`]).
//!
//! Names follow the service's rule (`service/src/auth.rs`): 1 to 64 of `A-Za-z0-9_.-`, unique;
//! `default` is the single token's. Tokens are made like the single one
//! ([`secrets::generate_secret`]: 43 URL-safe characters, so never `,` or `:`). A standard
//! parameter holds 4 KB: about 37 tokens with the longest names, more with shorter ones.

use std::fmt;

use aws_sdk_ecs::types::Service;
use aws_sdk_ssm::types::ParameterType;
use aws_smithy_types::DateTime;

use crate::error::{Error, Result};
use crate::plan::{Action, Deployment};
use crate::resources::secrets::{self, Put};
use crate::taskdef::{SecretSpec, TaskDefinitionSpec};

/// The variable the service reads the named tokens from.
pub const API_TOKENS_ENV: &str = "TIMING_API_TOKENS";
/// The name of the single token (`TIMING_API_TOKEN`), which no named token may take: the
/// service refuses a name given twice.
pub const RESERVED_NAME: &str = "default";
/// The most a standard-tier SSM parameter holds (the advanced tier would cost money).
const MAX_VALUE_BYTES: usize = 4096;

/// Why `name` cannot be a named token's name, if it cannot.
pub fn check_name(name: &str) -> std::result::Result<(), String> {
    if name == RESERVED_NAME {
        return Err(format!(
            "`{RESERVED_NAME}` is the name of the single token (TIMING_API_TOKEN): leave out --name to print or rotate that one"
        ));
    }
    if is_valid_name(name) {
        Ok(())
    } else {
        Err("a token name is 1 to 64 letters (A-Z, a-z), digits, `_`, `.` or `-`, as the service accepts".into())
    }
}

/// The service's rule for credential names.
fn is_valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// The named tokens, in the order they were created. Its `Debug` shows the names only, so a
/// token cannot reach a log through it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TokenList {
    entries: Vec<(String, String)>,
}

impl fmt::Debug for TokenList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl TokenList {
    /// Reads `name:token,...` as the service does (entries and their parts trimmed, empty
    /// entries skipped), refusing what the service would refuse at start. Messages name
    /// entries by position and names, never a token.
    pub fn parse(value: &str) -> std::result::Result<Self, String> {
        let mut list = Self::default();
        let entries = value.split(',').map(str::trim).filter(|e| !e.is_empty());
        for (index, entry) in entries.enumerate() {
            let Some((name, token)) = entry.split_once(':') else {
                return Err(format!("entry {} has no `:`", index + 1));
            };
            let (name, token) = (name.trim(), token.trim());
            if !is_valid_name(name) || name == RESERVED_NAME {
                return Err(format!(
                    "entry {} has the name `{name}`, which the service refuses",
                    index + 1
                ));
            }
            if token.is_empty() {
                return Err(format!("`{name}` has an empty token"));
            }
            if list.get(name).is_some() {
                return Err(format!("`{name}` is given twice"));
            }
            if list.entries.iter().any(|(_, t)| t == token) {
                return Err(format!("`{name}` has the same token as another entry"));
            }
            list.entries.push((name.to_owned(), token.to_owned()));
        }
        Ok(list)
    }

    /// The value stored and injected: `name:token,name:token`.
    pub fn value(&self) -> String {
        self.entries
            .iter()
            .map(|(name, token)| format!("{name}:{token}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The names, in order.
    pub fn names(&self) -> Vec<String> {
        self.entries.iter().map(|(name, _)| name.clone()).collect()
    }

    /// The token of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, token)| token.as_str())
    }

    /// Gives `name` the token `token`: replaced in place, or added at the end.
    pub fn set(&mut self, name: &str, token: String) {
        match self.entries.iter_mut().find(|(n, _)| n == name) {
            Some(entry) => entry.1 = token,
            None => self.entries.push((name.to_owned(), token)),
        }
    }

    /// Removes `name`; whether it was there.
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.entries.len();
        self.entries.retain(|(n, _)| n != name);
        self.entries.len() != before
    }

    /// Whether there is no named token.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Refuses a list the parameter cannot hold.
    pub fn check_size(&self, parameter: &str) -> Result<()> {
        let bytes = self.value().len();
        if bytes <= MAX_VALUE_BYTES {
            return Ok(());
        }
        Err(Error::TokenList {
            parameter: parameter.to_owned(),
            message: format!(
                "{} tokens would take {bytes} bytes, over the {MAX_VALUE_BYTES} a standard parameter holds: revoke one, or use shorter names",
                self.entries.len()
            ),
        })
    }
}

/// The parameter as read.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The tokens.
    pub list: TokenList,
    /// SSM's version of the parameter (1 when created, one more with each write).
    pub version: i64,
    /// When it was last written.
    pub modified: Option<DateTime>,
}

/// The ARN the api container's `secrets` name.
pub fn parameter_arn(d: &Deployment) -> String {
    secrets::parameter_arn(d.region(), &d.account, &d.names.api_tokens_parameter)
}

fn resource(d: &Deployment) -> String {
    format!("SSM parameter {}", d.names.api_tokens_parameter)
}

/// The named tokens, decrypted, or `None` when the app has none (no parameter). A parameter
/// that is not the app's, not a SecureString, or not a list the service would accept stops the
/// command.
pub async fn read(d: &Deployment) -> Result<Option<Stored>> {
    let name = &d.names.api_tokens_parameter;
    let Some(parameter) = secrets::get_ours(d, name, true).await? else {
        return Ok(None);
    };
    if let Some(other) = parameter
        .r#type()
        .filter(|t| **t != ParameterType::SecureString)
    {
        return Err(Error::TokenList {
            parameter: name.clone(),
            message: format!("it is a {} parameter, not a SecureString", other.as_str()),
        });
    }
    let value = parameter
        .value()
        .ok_or_else(|| Error::missing(resource(d), "Parameter.Value"))?;
    let list = TokenList::parse(value).map_err(|message| Error::TokenList {
        parameter: name.clone(),
        message,
    })?;
    Ok(Some(Stored {
        list,
        version: parameter.version(),
        modified: parameter.last_modified_date().copied(),
    }))
}

/// Whether the app has named tokens, for `up`, which keeps them injected: the parameter
/// exists and is the app's (checked before `up`'s first write, so a foreign one stops it
/// before anything changed). Recorded as unchanged: `up` never writes it.
pub async fn exist(d: &Deployment) -> Result<bool> {
    let name = &d.names.api_tokens_parameter;
    if secrets::get_ours(d, name, false).await?.is_none() {
        return Ok(false);
    }
    d.record(
        "ssm-parameter",
        name.as_str(),
        Action::Unchanged,
        Some("named write tokens".into()),
    );
    Ok(true)
}

/// Stores `list` (not empty) in place of what `before` read (`None`: the parameter is created,
/// with the app's tags); records the change with `detail`. Fails with
/// [`Error::ConcurrentChange`] when another write came between the read and this one.
pub async fn write(
    d: &Deployment,
    before: Option<&Stored>,
    list: &TokenList,
    detail: String,
) -> Result<()> {
    let name = &d.names.api_tokens_parameter;
    let description = format!(
        "named write tokens of the timing API of app {} ({API_TOKENS_ENV})",
        d.names.app
    );
    let (action, put) = match before {
        Some(_) => (Action::Update, Put::Overwrite),
        None => (Action::Create, Put::Create(&description)),
    };
    if !d.record("ssm-parameter", name.as_str(), action, Some(detail)) {
        return Ok(());
    }
    // `None`: another run created it after this one found none.
    let written = secrets::put_secure(d, name, list.value(), put).await?;
    let read = before.map_or(0, |stored| stored.version);
    if written != Some(read + 1) {
        return Err(Error::ConcurrentChange {
            resource: resource(d),
        });
    }
    Ok(())
}

/// Deletes the parameter (the last named token was revoked); records it with `detail`.
pub async fn delete(d: &Deployment, detail: String) -> Result<()> {
    let name = &d.names.api_tokens_parameter;
    if !d.record("ssm-parameter", name.as_str(), Action::Delete, Some(detail)) {
        return Ok(());
    }
    secrets::delete(d, name).await?;
    Ok(())
}

/// Makes the `container` of `api` get the named tokens as `TIMING_API_TOKENS` from the
/// parameter `arn`, or (`None`) not at all; its other secrets stay as they are.
pub fn apply(api: &mut TaskDefinitionSpec, container: &str, arn: Option<&str>) {
    let Some(container) = api.container_mut(container) else {
        return;
    };
    let mut secrets = container.secrets.take().unwrap_or_default();
    secrets.retain(|s| s.name != API_TOKENS_ENV);
    if let Some(arn) = arn {
        secrets.push(SecretSpec {
            name: API_TOKENS_ENV.into(),
            value_from: arn.into(),
        });
    }
    container.secrets = (!secrets.is_empty()).then_some(secrets);
}

/// Whether the service's tasks may hold an older list than the one stored: it was written
/// after the service's current deployment began. That is a run cut off between its write and
/// the restart; the next change (even one that changes nothing) restarts the tasks then.
pub fn newer_than_deployment(stored: &Stored, service: &Service) -> bool {
    let started = service
        .deployments()
        .iter()
        .find(|deployment| deployment.status() == Some("PRIMARY"))
        .and_then(|deployment| deployment.created_at());
    matches!((stored.modified, started), (Some(written), Some(started)) if written > *started)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_services_rule_and_default_is_reserved() {
        for good in ["timer-1", "a", "A.b_c-9", "x".repeat(64).as_str()] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "a b",
            "a:b",
            "a,b",
            "ü",
            "timer/1",
            "x".repeat(65).as_str(),
        ] {
            assert!(check_name(bad).is_err(), "{bad} accepted");
        }
        assert!(check_name("default").unwrap_err().contains("single token"));
    }

    #[test]
    fn lists_parse_as_the_service_does_and_round_trip() {
        let list = TokenList::parse(" a:t1 , b.2:t2,,").unwrap();
        assert_eq!(list.names(), ["a", "b.2"]);
        assert_eq!(list.get("b.2"), Some("t2"));
        assert_eq!(list.value(), "a:t1,b.2:t2");
        assert_eq!(TokenList::parse(&list.value()).unwrap(), list);
        assert!(TokenList::parse("").unwrap().is_empty());
        for (bad, why) in [
            ("secret-without-name", "no `:`"),
            ("a:t1,a:t2", "twice"),
            ("a:t1,b:t1", "same token"),
            ("default:t", "refuses"),
            ("a:", "empty token"),
            ("a b:t", "refuses"),
        ] {
            let message = TokenList::parse(bad).unwrap_err();
            assert!(message.contains(why), "{bad}: {message}");
            assert!(!message.contains("t1"), "a token in the message: {message}");
        }
    }

    #[test]
    fn set_replaces_in_place_remove_says_whether_it_was_there() {
        let mut list = TokenList::parse("a:1,b:2").unwrap();
        list.set("a", "3".into());
        list.set("c", "4".into());
        assert_eq!(list.value(), "a:3,b:2,c:4");
        assert!(list.remove("b"));
        assert!(!list.remove("b"));
        assert_eq!(list.value(), "a:3,c:4");
        assert_eq!(format!("{list:?}"), r#"["a", "c"]"#);
    }

    #[test]
    fn a_list_over_four_kilobytes_is_refused() {
        let mut list = TokenList::default();
        for i in 0..37 {
            list.set(&format!("{i:0>64}"), "t".repeat(43));
        }
        assert!(list.check_size("/timing/api-tokens").is_ok());
        list.set(&"y".repeat(64), "t".repeat(43));
        let message = list
            .check_size("/timing/api-tokens")
            .unwrap_err()
            .to_string();
        assert!(message.contains("4096"), "{message}");
    }

    #[test]
    fn apply_adds_replaces_and_removes_only_its_secret() {
        let mut api: TaskDefinitionSpec = serde_json::from_value(serde_json::json!({
            "family": "a", "containerDefinitions": [{"name": "api", "image": "i",
                "secrets": [{"name": "TIMING_API_TOKEN", "valueFrom": "arn:one"}]}]
        }))
        .unwrap();
        let secrets = |api: &TaskDefinitionSpec| {
            api.container_definitions[0]
                .secrets
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|s| (s.name, s.value_from))
                .collect::<Vec<_>>()
        };
        apply(&mut api, "api", Some("arn:many"));
        apply(&mut api, "api", Some("arn:many"));
        assert_eq!(
            secrets(&api),
            [
                ("TIMING_API_TOKEN".to_owned(), "arn:one".to_owned()),
                ("TIMING_API_TOKENS".to_owned(), "arn:many".to_owned())
            ]
        );
        apply(&mut api, "api", None);
        assert_eq!(
            secrets(&api),
            [("TIMING_API_TOKEN".to_owned(), "arn:one".to_owned())]
        );
    }
}
