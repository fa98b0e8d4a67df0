//! Secrets of the deployment, kept out of task definitions: SSM Parameter Store
//! `SecureString` parameters that ECS reads at task start and injects as environment
//! variables (the task definitions' `secrets`, `valueFrom` = the parameter's ARN).
//!
//! - `/<app>/api-token`: the API's write token (`TIMING_API_TOKEN`). `up` generates it on the
//!   first deploy (32 random bytes from the OS, URL-safe base64 without padding: 43
//!   characters) and never overwrites it; [`rotate_token`] replaces it; [`read_token`] is the
//!   only way the value leaves AWS (the `provisioner token` command). It is never logged.
//! - `/<app>/api-tokens`: the named write tokens (`TIMING_API_TOKENS`), made and changed only
//!   by `provisioner token --name`; see [`crate::resources::tokens`].
//! - `/<app>/redis-password` and `/<app>/redis-url` (`--redis-password`): Redis's `requirepass`
//!   and the API's `REDIS_URL` with that password in it. The service reads one `REDIS_URL`
//!   and has no separate password variable, so the URL itself is the secret.
//!
//! The parameters use the AWS managed key `alias/aws/ssm`. The execution role may call
//! `ssm:GetParameters` on exactly these ARNs (`policies/task-execution-secrets.json`,
//! `policies/task-execution-redis-auth.json`); it needs no `kms:Decrypt`, because ECS's
//! documentation requires that only for a customer managed key.
//!
//! `down` deletes the parameters always: they hold no race data, and a later `up` makes a
//! new token (clients must be given the new one: `provisioner token`).

use aws_sdk_ssm::types::{Parameter, ParameterType, ResourceTypeForTagging, Tag};

use crate::error::{Error, Result, absent_when};
use crate::plan::{Action, Deployment};
use crate::resources::ownership;
use crate::taskdef::{NameValue, SecretSpec, TaskDefinitionSpec};

/// The environment variable the service reads its write token from.
pub const API_TOKEN_ENV: &str = "TIMING_API_TOKEN";
/// The variable the Redis container gets its password in: `redis-cli` (the health check)
/// authenticates with it on its own, and the command passes it to `--requirepass`.
pub const REDIS_PASSWORD_ENV: &str = "REDISCLI_AUTH";

/// The ARN of the SSM parameter `name` (which starts with `/`).
pub fn parameter_arn(region: &str, account: &str, name: &str) -> String {
    let partition = crate::aws::partition_of(region);
    let name = name.trim_start_matches('/');
    format!("arn:{partition}:ssm:{region}:{account}:parameter/{name}")
}

/// 32 random bytes from the operating system, URL-safe base64 without padding.
pub fn generate_secret() -> Result<String> {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| Error::Request {
        resource: "a random secret".into(),
        message: format!("the operating system's random source failed: {e}"),
    })?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

fn tags(d: &Deployment) -> Result<Vec<Tag>> {
    ownership::sdk_tags(&d.names, |k, v| Tag::builder().key(k).value(v).build())
        .map_err(Error::request("SSM parameter tags"))
}

/// Stops unless the existing parameter `name` carries the app's tags.
async fn check_ours(d: &Deployment, name: &str) -> Result<()> {
    let resource = || format!("SSM parameter {name}");
    let out = d
        .clients
        .ssm
        .list_tags_for_resource()
        .resource_type(ResourceTypeForTagging::Parameter)
        .resource_id(name)
        .send()
        .await
        .map_err(|e| Error::aws("ListTagsForResource", resource(), e))?;
    ownership::check_tags(d, resource, out.tag_list())
}

/// The parameter `name` (its value decrypted when `decrypt`), or `None` when it does not
/// exist: the one `GetParameter` of the app's parameters.
async fn get(d: &Deployment, name: &str, decrypt: bool) -> Result<Option<Parameter>> {
    let out = d
        .clients
        .ssm
        .get_parameter()
        .name(name)
        .with_decryption(decrypt)
        .send()
        .await;
    let resource = || format!("SSM parameter {name}");
    let found = absent_when(
        out,
        |e| e.is_parameter_not_found(),
        "GetParameter",
        resource(),
    )?;
    found
        .map(|out| {
            out.parameter
                .ok_or_else(|| Error::missing(resource(), "Parameter"))
        })
        .transpose()
}

/// The app's parameter `name` ([`get`]), or `None` when it does not exist; an error when one
/// exists that does not carry the app's tags.
pub(crate) async fn get_ours(
    d: &Deployment,
    name: &str,
    decrypt: bool,
) -> Result<Option<Parameter>> {
    let found = get(d, name, decrypt).await?;
    if found.is_some() {
        check_ours(d, name).await?;
    }
    Ok(found)
}

/// Creates the SecureString parameter `name` with `value()` if it does not exist. An existing
/// parameter is never overwritten (a token already given to timing clients stays valid); one
/// that is not a SecureString is refused.
async fn ensure_secure_parameter(
    d: &Deployment,
    name: &str,
    description: &str,
    value: impl FnOnce() -> Result<String>,
) -> Result<()> {
    let Some(live) = get_ours(d, name, false).await? else {
        return create_secure(d, name, description, value).await;
    };
    match live.r#type {
        Some(ParameterType::SecureString) => {
            d.record("ssm-parameter", name, Action::Unchanged, None);
            Ok(())
        }
        Some(other) => Err(Error::Aws {
            operation: "GetParameter",
            resource: format!("SSM parameter {name}"),
            code: None,
            message: format!(
                "it is a {} parameter, not a SecureString: delete it (`aws ssm delete-parameter --name {name}`) and run `up` again",
                other.as_str()
            ),
        }),
        None => Err(Error::missing(
            format!("SSM parameter {name}"),
            "Parameter.Type",
        )),
    }
}

/// Creates the SecureString parameter `name`, which a read found missing, with `value()`,
/// `description` and the app's tags.
async fn create_secure(
    d: &Deployment,
    name: &str,
    description: &str,
    value: impl FnOnce() -> Result<String>,
) -> Result<()> {
    if !d.record(
        "ssm-parameter",
        name,
        Action::Create,
        Some("SecureString, generated".into()),
    ) {
        return Ok(());
    }
    // A concurrent run that created it first (`None`): theirs is kept.
    put_secure(d, name, value()?, Put::Create(description)).await?;
    Ok(())
}

/// How [`put_secure`] writes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Put<'a> {
    /// A new parameter, with this description and the app's tags.
    Create(&'a str),
    /// Over the existing one, which keeps its tags (they cannot be sent with Overwrite).
    Overwrite,
}

/// Writes `value` to the SecureString `name`: the one `PutParameter` of the app's parameters.
/// Returns the version SSM gave it, or `None` when [`Put::Create`] found the parameter
/// already there (another run created it after this one's read).
pub(crate) async fn put_secure(
    d: &Deployment,
    name: &str,
    value: String,
    put: Put<'_>,
) -> Result<Option<i64>> {
    let request = d
        .clients
        .ssm
        .put_parameter()
        .name(name)
        .value(value)
        .r#type(ParameterType::SecureString);
    let request = match put {
        Put::Create(description) => request
            .description(description)
            .overwrite(false)
            .set_tags(Some(tags(d)?)),
        Put::Overwrite => request.overwrite(true),
    };
    match request.send().await {
        Ok(out) => Ok(Some(out.version())),
        Err(e)
            if matches!(put, Put::Create(_))
                && e.as_service_error()
                    .is_some_and(|e| e.is_parameter_already_exists()) =>
        {
            Ok(None)
        }
        Err(e) => Err(Error::aws(
            "PutParameter",
            format!("SSM parameter {name}"),
            e,
        )),
    }
}

fn api_token_description(d: &Deployment) -> String {
    format!(
        "write token of the timing API of app {} ({API_TOKEN_ENV})",
        d.names.app
    )
}

/// Creates the API token parameter on the first deploy; leaves an existing one as it is.
pub async fn ensure_api_token(d: &Deployment) -> Result<()> {
    ensure_secure_parameter(
        d,
        &d.names.api_token_parameter,
        &api_token_description(d),
        generate_secret,
    )
    .await
}

/// The API token, decrypted. For `provisioner token`: the one place the value is shown.
pub async fn read_token(d: &Deployment) -> Result<String> {
    let name = &d.names.api_token_parameter;
    get(d, name, true)
        .await?
        .ok_or_else(|| Error::NotDeployed {
            app: d.names.app.clone(),
            region: d.region().to_owned(),
        })?
        .value
        .ok_or_else(|| Error::missing(format!("SSM parameter {name}"), "Parameter.Value"))
}

/// Replaces the API token with a new random one. Running API tasks keep the old token until
/// they are replaced: the caller restarts the api service (`force_new_deployment`).
pub async fn rotate_token(d: &Deployment) -> Result<()> {
    let name = &d.names.api_token_parameter;
    if get_ours(d, name, false).await?.is_none() {
        // Nothing to replace (deleted by hand): a new one, as `up` makes it.
        return create_secure(d, name, &api_token_description(d), generate_secret).await;
    }
    if !d.record(
        "ssm-parameter",
        name.as_str(),
        Action::Update,
        Some("new random token".into()),
    ) {
        return Ok(());
    }
    put_secure(d, name, generate_secret()?, Put::Overwrite).await?;
    Ok(())
}

/// The Redis password parameter when Redis AUTH is on (it exists), checked to be the app's;
/// its value decrypted except in a dry run. Read once by `up`, before its first write, and
/// handed to [`ensure_redis_password`].
pub async fn live_redis_password(d: &Deployment) -> Result<Option<Parameter>> {
    get_ours(d, &d.names.redis_password_parameter, !d.dry_run).await
}

/// Whether Redis AUTH is on: the password parameter exists.
pub async fn redis_password_enabled(d: &Deployment) -> Result<bool> {
    Ok(live_redis_password(d).await?.is_some())
}

/// Creates the Redis password and the matching `REDIS_URL` parameters if missing
/// (`--redis-password`). Once created they stay, and AUTH stays on, until `down`. `existing`:
/// what [`live_redis_password`] read (the URL is derived from the password, so an existing
/// one is read decrypted to (re)build it; not in a dry run, which builds nothing).
pub async fn ensure_redis_password(
    d: &Deployment,
    redis_port: i32,
    existing: Option<Parameter>,
) -> Result<()> {
    let names = &d.names;
    let password_name = &names.redis_password_parameter;
    let url_name = &names.redis_url_parameter;
    let password = match &existing {
        Some(_) if d.dry_run => None,
        Some(existing) => Some(existing.value.clone().ok_or_else(|| {
            Error::missing(format!("SSM parameter {password_name}"), "Parameter.Value")
        })?),
        None => {
            let password = generate_secret()?;
            create_secure(
                d,
                password_name,
                &format!("requirepass of the Redis of app {}", names.app),
                || Ok(password.clone()),
            )
            .await?;
            Some(password)
        }
    };
    if existing.is_some() {
        d.record(
            "ssm-parameter",
            password_name.as_str(),
            Action::Unchanged,
            None,
        );
    }
    let host = names.redis_host();
    ensure_secure_parameter(
        d,
        url_name,
        &format!(
            "REDIS_URL of the API of app {}, with the password",
            names.app
        ),
        || {
            let password =
                password.ok_or_else(|| Error::missing(password_name.clone(), "value"))?;
            Ok(format!("redis://:{password}@{host}:{redis_port}"))
        },
    )
    .await
}

/// Turns the rendered task definitions into their Redis AUTH form:
/// - Redis: the password in `REDISCLI_AUTH` (from the parameter), and the command run through
///   a shell so `--requirepass "$REDISCLI_AUTH"` is expanded; the shell execs the image's
///   entrypoint, which still drops root for the `redis` user as it does for `redis-server`.
/// - API: `REDIS_URL` no longer in `environment` but in `secrets`, from the URL parameter.
pub fn apply_redis_auth(
    redis: &mut TaskDefinitionSpec,
    redis_container: &str,
    api: &mut TaskDefinitionSpec,
    api_container: &str,
    password_arn: &str,
    url_arn: &str,
) {
    if let Some(container) = redis.container_mut(redis_container) {
        let args = container.command.take().unwrap_or_default();
        let mut line = String::from("exec docker-entrypoint.sh");
        for arg in &args {
            line.push(' ');
            line.push_str(&shell_quote(arg));
        }
        line.push_str(&format!(" --requirepass \"${REDIS_PASSWORD_ENV}\""));
        container.command = Some(vec!["sh".into(), "-c".into(), line]);
        container
            .secrets
            .get_or_insert_with(Vec::new)
            .push(SecretSpec {
                name: REDIS_PASSWORD_ENV.into(),
                value_from: password_arn.into(),
            });
    }
    if let Some(container) = api.container_mut(api_container) {
        if let Some(env) = &mut container.environment {
            env.retain(|e: &NameValue| e.name != "REDIS_URL");
        }
        container
            .secrets
            .get_or_insert_with(Vec::new)
            .push(SecretSpec {
                name: "REDIS_URL".into(),
                value_from: url_arn.into(),
            });
    }
}

fn shell_quote(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c))
    {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// Deletes the parameter `name`; whether it was there to delete.
pub(crate) async fn delete(d: &Deployment, name: &str) -> Result<bool> {
    let out = d.clients.ssm.delete_parameter().name(name).send().await;
    let deleted = absent_when(
        out,
        |e| e.is_parameter_not_found(),
        "DeleteParameter",
        format!("SSM parameter {name}"),
    )?;
    Ok(deleted.is_some())
}

/// Deletes the app's parameters (the token and, if any, the named tokens and the Redis
/// password and URL). Which exist is read first, in one call, so a `down` with nothing left
/// changes nothing.
pub async fn delete_parameters(d: &Deployment) -> Result<()> {
    let names = &d.names;
    let all = [
        &names.api_token_parameter,
        &names.api_tokens_parameter,
        &names.redis_password_parameter,
        &names.redis_url_parameter,
    ];
    // Without decryption: only whether they exist matters here.
    let found = d
        .clients
        .ssm
        .get_parameters()
        .set_names(Some(all.iter().map(|n| (*n).clone()).collect()))
        .send()
        .await
        .map_err(|e| {
            Error::aws(
                "GetParameters",
                format!("SSM parameters /{}/*", names.app),
                e,
            )
        })?;
    let existing: Vec<&str> = found.parameters().iter().filter_map(|p| p.name()).collect();
    if !existing.contains(&names.api_token_parameter.as_str()) {
        d.record(
            "ssm-parameter",
            names.api_token_parameter.as_str(),
            Action::Absent,
            None,
        );
    }
    // A parameter that is not the app's is left and reported once the app's own are gone (a
    // foreign `/<app>/api-tokens` must not keep the Redis password in place).
    let mut foreign = None;
    for name in all.into_iter().filter(|n| existing.contains(&n.as_str())) {
        match check_ours(d, name).await {
            Ok(()) => {}
            Err(err @ Error::NotOurs { .. }) => {
                foreign.get_or_insert(err);
                continue;
            }
            Err(err) => return Err(err),
        }
        if delete(d, name).await? {
            d.record("ssm-parameter", name.as_str(), Action::Delete, None);
        } else if name == &names.api_token_parameter {
            // Only the token is always expected; absent named tokens and Redis AUTH
            // parameters are normal.
            d.record("ssm-parameter", name.as_str(), Action::Absent, None);
        }
    }
    foreign.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_43_url_safe_characters_and_differ() {
        let a = generate_secret().unwrap();
        let b = generate_secret().unwrap();
        assert_eq!(a.len(), 43);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "{a}"
        );
        assert_ne!(a, b);
    }

    #[test]
    fn parameter_arns_have_one_slash_after_parameter() {
        assert_eq!(
            parameter_arn("eu-north-1", "123456789012", "/timing/api-token"),
            "arn:aws:ssm:eu-north-1:123456789012:parameter/timing/api-token"
        );
        assert_eq!(
            parameter_arn("cn-north-1", "1", "/a/b"),
            "arn:aws-cn:ssm:cn-north-1:1:parameter/a/b"
        );
    }

    #[test]
    fn redis_auth_moves_the_url_to_secrets_and_wraps_the_command() {
        let mut redis: TaskDefinitionSpec = serde_json::from_value(serde_json::json!({
            "family": "r", "containerDefinitions": [{"name": "redis", "image": "redis",
                "command": ["redis-server", "--save", "20 1", "--appendonly", "yes"]}]
        }))
        .unwrap();
        let mut api: TaskDefinitionSpec = serde_json::from_value(serde_json::json!({
            "family": "a", "containerDefinitions": [{"name": "api", "image": "api",
                "environment": [{"name": "REDIS_URL", "value": "redis://h:6379"}, {"name": "X", "value": "1"}]}]
        }))
        .unwrap();
        apply_redis_auth(&mut redis, "redis", &mut api, "api", "arn:pw", "arn:url");
        let redis = &redis.container_definitions[0];
        assert_eq!(
            redis.command.as_deref().unwrap(),
            [
                "sh",
                "-c",
                "exec docker-entrypoint.sh redis-server --save '20 1' --appendonly yes --requirepass \"$REDISCLI_AUTH\""
            ]
        );
        assert_eq!(redis.secrets.as_ref().unwrap()[0].value_from, "arn:pw");
        let api = &api.container_definitions[0];
        assert_eq!(api.env("REDIS_URL"), None);
        assert_eq!(api.env("X"), Some("1"));
        assert_eq!(api.secrets.as_ref().unwrap()[0].name, "REDIS_URL");
    }
}
