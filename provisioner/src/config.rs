//! What a deployment consists of, before any AWS call: the resource names derived from the
//! app name, and the task-definition and policy files, read, checked and rendered.
//!
//! Files are JSON with `${NAME}` placeholders inside string values only, so a file is valid
//! JSON as written and every error can name its line and column. All files are validated by
//! [`Templates::load`] before the first AWS call, so bad input creates nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::taskdef::TaskDefinitionSpec;

/// Tag key naming the app a resource belongs to.
pub const TAG_APP: &str = "app";
/// Tag key marking resources this tool manages.
pub const TAG_MANAGED_BY: &str = "managed-by";
/// Value of [`TAG_MANAGED_BY`].
pub const MANAGED_BY: &str = "provisioner";

/// The placeholders filled in task-definition and policy files.
pub const PLACEHOLDERS: &[&str] = &[
    "APP",
    "ACCOUNT_ID",
    "REGION",
    "PARTITION",
    "EXECUTION_ROLE_ARN",
    "API_TASK_ROLE_ARN",
    "API_IMAGE",
    "REDIS_IMAGE",
    "LOG_GROUP",
    "NAMESPACE",
    "REDIS_HOST",
    // Race data and secrets (issue 6): see `resources::efs` and `resources::secrets`.
    "REDIS_TASK_ROLE_ARN",
    "EFS_FILE_SYSTEM_ID",
    "EFS_FILE_SYSTEM_ARN",
    "EFS_ACCESS_POINT_ID",
    "EFS_ACCESS_POINT_ARN",
    "API_TOKEN_PARAMETER_ARN",
    // Named write tokens (issue 11): see `resources::tokens`.
    "API_TOKENS_PARAMETER_ARN",
    "REDIS_PASSWORD_PARAMETER_ARN",
    "REDIS_URL_PARAMETER_ARN",
];

/// Names of every resource of one app. Everything is derived from the app name, so the
/// state of a deployment can always be found again from AWS alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// The app name.
    pub app: String,
    /// ECS cluster.
    pub cluster: String,
    /// CloudWatch log group.
    pub log_group: String,
    /// ECR repository of the service image.
    pub repository: String,
    /// ECR repository of the mirrored Redis image (`--mirror-redis`).
    pub redis_repository: String,
    /// Role ECS uses to pull images and write logs.
    pub execution_role: String,
    /// Role the API's containers run with.
    pub api_task_role: String,
    /// Security group of the API tasks.
    pub api_security_group: String,
    /// Security group of the Redis task.
    pub redis_security_group: String,
    /// Cloud Map private DNS namespace.
    pub namespace: String,
    /// Cloud Map service (DNS name `redis.<namespace>`).
    pub discovery_service: String,
    /// Cloud Map service of the API tasks (SRV records `api.<namespace>`), API Gateway's target.
    pub api_discovery_service: String,
    /// Security group of the VPC link's network interfaces; the API port admits only it.
    pub vpc_link_security_group: String,
    /// API Gateway VPC link (v2) into the app's subnets.
    pub vpc_link: String,
    /// API Gateway HTTP API: the app's stable HTTPS address.
    pub http_api: String,
    /// ECS service of the API.
    pub api_service: String,
    /// ECS service of Redis.
    pub redis_service: String,
    /// Role the Redis container runs with (mounts the data file system).
    pub redis_task_role: String,
    /// EFS file system of Redis's data: its creation token and `Name` tag.
    pub file_system: String,
    /// EFS access point Redis mounts (its `Name` tag).
    pub access_point: String,
    /// Security group of the file system's mount targets.
    pub efs_security_group: String,
    /// SSM parameter holding the API write token.
    pub api_token_parameter: String,
    /// SSM parameter holding the named write tokens, `name:token,...` (`provisioner token
    /// --name`), when there are any.
    pub api_tokens_parameter: String,
    /// SSM parameter holding the Redis password (`--redis-password`).
    pub redis_password_parameter: String,
    /// SSM parameter holding the API's `REDIS_URL` with the password (`--redis-password`).
    pub redis_url_parameter: String,
    /// Managed policy that is the permissions boundary of every role of the app.
    pub task_role_boundary: String,
}

impl Names {
    /// The names for `app`.
    pub fn new(app: &str) -> Self {
        Self {
            app: app.to_owned(),
            cluster: app.to_owned(),
            log_group: format!("/ecs/{app}"),
            repository: format!("{app}/api"),
            redis_repository: format!("{app}/redis"),
            execution_role: format!("{app}-task-execution"),
            api_task_role: format!("{app}-api-task"),
            api_security_group: format!("{app}-api"),
            redis_security_group: format!("{app}-redis"),
            namespace: format!("{app}.local"),
            discovery_service: "redis".to_owned(),
            api_discovery_service: "api".to_owned(),
            vpc_link_security_group: format!("{app}-vpc-link"),
            vpc_link: app.to_owned(),
            http_api: app.to_owned(),
            api_service: "api".to_owned(),
            redis_service: "redis".to_owned(),
            redis_task_role: format!("{app}-redis-task"),
            file_system: format!("{app}-redis-data"),
            access_point: format!("{app}-redis"),
            efs_security_group: format!("{app}-efs"),
            api_token_parameter: format!("/{app}/api-token"),
            api_tokens_parameter: format!("/{app}/api-tokens"),
            redis_password_parameter: format!("/{app}/redis-password"),
            redis_url_parameter: format!("/{app}/redis-url"),
            task_role_boundary: format!("{app}-task-boundary"),
        }
    }

    /// The DNS name the API reaches Redis by.
    pub fn redis_host(&self) -> String {
        format!("{}.{}", self.discovery_service, self.namespace)
    }

    /// The DNS name of the API tasks' SRV records.
    pub fn api_host(&self) -> String {
        format!("{}.{}", self.api_discovery_service, self.namespace)
    }

    /// The tags every resource of the app carries.
    pub fn tags(&self) -> Vec<(&'static str, String)> {
        vec![
            (TAG_APP, self.app.clone()),
            (TAG_MANAGED_BY, MANAGED_BY.to_owned()),
        ]
    }
}

/// A JSON file with placeholders, checked and ready to render.
#[derive(Debug, Clone)]
pub struct Template {
    /// Where it came from (for error messages).
    pub path: PathBuf,
    value: Value,
}

impl Template {
    /// Reads and checks a file: valid JSON, only known placeholders.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ReadFile {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Checks text as if read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        let value: Value = serde_json::from_str(text).map_err(|e| parse_error(path, &e))?;
        check_placeholders(path, text)?;
        Ok(Self {
            path: path.to_owned(),
            value,
        })
    }

    /// The document with every placeholder replaced from `values`.
    pub fn render(&self, values: &BTreeMap<&'static str, String>) -> Value {
        let mut value = self.value.clone();
        fill(&mut value, values);
        value
    }
}

fn parse_error(path: &Path, e: &serde_json::Error) -> Error {
    Error::Parse {
        path: path.to_owned(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    }
}

/// Every `${NAME}` in the text must be one the provisioner fills.
fn check_placeholders(path: &Path, text: &str) -> Result<()> {
    for (line_index, line) in text.lines().enumerate() {
        let mut rest = line;
        let mut offset = 0;
        while let Some(start) = rest.find("${") {
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else { break };
            let name = &after[..end];
            if !PLACEHOLDERS.contains(&name) {
                return Err(Error::UnknownPlaceholder {
                    path: path.to_owned(),
                    line: line_index + 1,
                    column: offset + start + 1,
                    name: name.to_owned(),
                    known: PLACEHOLDERS.join(", "),
                });
            }
            offset += start + 2 + end + 1;
            rest = &after[end + 1..];
        }
    }
    Ok(())
}

fn fill(value: &mut Value, values: &BTreeMap<&'static str, String>) {
    match value {
        Value::String(text) if text.contains("${") => {
            for (name, replacement) in values {
                *text = text.replace(&format!("${{{name}}}"), replacement);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| fill(item, values)),
        Value::Object(map) => map.values_mut().for_each(|item| fill(item, values)),
        _ => {}
    }
}

/// A task-definition file: the ECS service it is for is the file's stem (`api.json` → `api`).
#[derive(Debug, Clone)]
pub struct TaskDefinitionTemplate {
    /// The ECS service this task definition runs as.
    pub service: String,
    /// The checked file.
    pub template: Template,
    /// The file as written, placeholders unfilled (for ports and the family name).
    pub as_written: TaskDefinitionSpec,
}

impl TaskDefinitionTemplate {
    /// The family this template registers for `app` (a family may use `${APP}` only, which
    /// loading checks), known without rendering the rest.
    pub fn family(&self, app: &str) -> String {
        self.as_written.family.replace("${APP}", app)
    }

    /// Renders the file and converts it to a task-definition spec.
    pub fn render(&self, values: &BTreeMap<&'static str, String>) -> Result<TaskDefinitionSpec> {
        serde_json::from_value(self.template.render(values)).map_err(|e| Error::Invalid {
            path: self.template.path.clone(),
            message: e.to_string(),
        })
    }
}

/// Every file a deployment is made from.
#[derive(Debug, Clone)]
pub struct Templates {
    /// `task-definitions/api.json`.
    pub api: TaskDefinitionTemplate,
    /// `task-definitions/redis.json`.
    pub redis: TaskDefinitionTemplate,
    /// `policies/ecs-tasks-trust.json`: who may assume the task roles.
    pub task_trust: Template,
    /// `policies/api-task-role.json`, if present: what the API's containers may do in AWS.
    pub api_task_policy: Option<Template>,
    /// `policies/redis-task-role.json`: Redis may mount its data access point, nothing else.
    pub redis_task_policy: Template,
    /// `policies/efs-file-system.json`: the data file system's own policy (who may mount it).
    pub file_system_policy: Template,
    /// `policies/task-execution-secrets.json`: ECS may read the API token parameters (the
    /// single token and the named ones).
    pub execution_secrets_policy: Template,
    /// `policies/task-execution-redis-auth.json`: ECS may read the Redis password parameters
    /// (only with `--redis-password`).
    pub execution_redis_auth_policy: Template,
    /// `policies/task-role-boundary.json`: the most any role of the app may do (its
    /// permissions boundary).
    pub task_role_boundary: Template,
}

impl Templates {
    /// Reads and checks every file under `root` (`task-definitions/`, `policies/`).
    pub fn load(root: &Path) -> Result<Self> {
        let task_definitions = root.join("task-definitions");
        let policies = root.join("policies");
        let api = load_task_definition(&task_definitions.join("api.json"), "api")?;
        let redis = load_task_definition(&task_definitions.join("redis.json"), "redis")?;
        let task_trust = load_policy(&policies.join("ecs-tasks-trust.json"))?;
        let api_policy_path = policies.join("api-task-role.json");
        let api_task_policy = if api_policy_path.exists() {
            Some(load_policy(&api_policy_path)?)
        } else {
            None
        };
        let redis_task_policy = load_policy(&policies.join("redis-task-role.json"))?;
        let file_system_policy = load_policy(&policies.join("efs-file-system.json"))?;
        let execution_secrets_policy = load_policy(&policies.join("task-execution-secrets.json"))?;
        let execution_redis_auth_policy =
            load_policy(&policies.join("task-execution-redis-auth.json"))?;
        let task_role_boundary = load_policy(&policies.join("task-role-boundary.json"))?;
        Ok(Self {
            api,
            redis,
            task_trust,
            api_task_policy,
            redis_task_policy,
            file_system_policy,
            execution_secrets_policy,
            execution_redis_auth_policy,
            task_role_boundary,
        })
    }
}

fn load_task_definition(path: &Path, service: &str) -> Result<TaskDefinitionTemplate> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    let template = Template::parse(path, &text)?;
    // Deserialize the file as written (placeholders are inside strings, so they parse) to
    // report unknown fields and wrong types with their line and column.
    let spec: TaskDefinitionSpec =
        serde_json::from_str(&text).map_err(|e| parse_error(path, &e))?;
    let container_names: Vec<&str> = spec
        .container_definitions
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    if !container_names.contains(&service) {
        return Err(Error::Invalid {
            path: path.to_owned(),
            message: format!(
                "needs a container named `{service}` (found: {})",
                container_names.join(", ")
            ),
        });
    }
    let family_placeholders = spec.family.replace("${APP}", "");
    if family_placeholders.contains("${") {
        return Err(Error::Invalid {
            path: path.to_owned(),
            message: format!("the family `{}` may use ${{APP}} only", spec.family),
        });
    }
    Ok(TaskDefinitionTemplate {
        service: service.to_owned(),
        template,
        as_written: spec,
    })
}

fn load_policy(path: &Path) -> Result<Template> {
    let template = Template::load(path)?;
    let document = &template.value;
    if document.get("Version").is_none() || !document.get("Statement").is_some_and(Value::is_array)
    {
        return Err(Error::Invalid {
            path: path.to_owned(),
            message: "an IAM policy document needs \"Version\" and a \"Statement\" array".into(),
        });
    }
    Ok(template)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    #[test]
    fn the_repository_files_are_valid() {
        let templates = Templates::load(&repo_root()).unwrap();
        assert_eq!(templates.api.service, "api");
        assert_eq!(templates.redis.service, "redis");
    }

    /// The service keeps answering for `SHUTDOWN_DRAIN` after SIGTERM, then lets in-flight
    /// requests finish (at most 20 s, the service's `DRAIN_TIMEOUT`): ECS must not SIGKILL the
    /// API container before both are over.
    #[test]
    fn the_api_stop_timeout_leaves_room_for_the_drain_and_in_flight_requests() {
        let templates = Templates::load(&repo_root()).unwrap();
        let api = templates
            .api
            .as_written
            .container(&templates.api.service)
            .unwrap();
        let drain = api
            .environment
            .iter()
            .flatten()
            .find(|e| e.name == "SHUTDOWN_DRAIN")
            .map(|e| humantime::parse_duration(&e.value).unwrap())
            .expect("the API task definition sets SHUTDOWN_DRAIN");
        let in_flight = 20;
        let stop_timeout = api.stop_timeout.expect("stopTimeout is set");
        assert!(
            u64::try_from(stop_timeout).unwrap() >= drain.as_secs() + in_flight,
            "stopTimeout {stop_timeout}s < drain {drain:?} + {in_flight}s"
        );
        assert!(stop_timeout <= 120, "Fargate allows at most 120 s");
    }

    #[test]
    fn malformed_json_names_line_and_column() {
        let err = Template::parse(Path::new("x.json"), "{\n  \"a\": 1,\n  oops\n}").unwrap_err();
        match err {
            Error::Parse { line, column, .. } => assert_eq!((line, column), (3, 3)),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn unknown_placeholder_is_named_with_its_position() {
        let text = "{\n  \"image\": \"${API_IMAGE}\",\n  \"x\": \"a-${ACOUNT_ID}\"\n}";
        let err = Template::parse(Path::new("t.json"), text).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("t.json:3:11"), "{message}");
        assert!(message.contains("${ACOUNT_ID}"), "{message}");
    }

    #[test]
    fn render_fills_every_placeholder() {
        let template = Template::parse(
            Path::new("t.json"),
            r#"{"a": ["${APP}-x", {"b": "${REGION}/${APP}"}], "n": 3}"#,
        )
        .unwrap();
        let values = BTreeMap::from([
            ("APP", "timing".to_owned()),
            ("REGION", "eu-north-1".to_owned()),
        ]);
        assert_eq!(
            template.render(&values),
            serde_json::json!({"a": ["timing-x", {"b": "eu-north-1/timing"}], "n": 3})
        );
    }

    #[test]
    fn unknown_task_definition_field_names_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.json");
        std::fs::write(
            &path,
            "{\n \"family\": \"x\",\n \"containerDefinitions\": [{\"name\": \"api\", \"image\": \"i\",\n  \"portMapings\": []}]\n}",
        )
        .unwrap();
        let message = load_task_definition(&path, "api").unwrap_err().to_string();
        assert!(message.contains("api.json:4:"), "{message}");
        assert!(message.contains("unknown field `portMapings`"), "{message}");
    }

    #[test]
    fn task_definition_needs_the_service_container() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.json");
        std::fs::write(
            &path,
            r#"{"family": "x", "containerDefinitions": [{"name": "web", "image": "i"}]}"#,
        )
        .unwrap();
        let message = load_task_definition(&path, "api").unwrap_err().to_string();
        assert!(message.contains("container named `api`"), "{message}");
    }
}
