//! `render`: checks every file and prints the rendered task definitions, without AWS.

use std::collections::BTreeMap;

use crate::config::{Names, Templates};
use crate::error::Result;
use crate::plan::KNOWN_AFTER_APPLY;

/// The placeholder values of a deployment.
#[derive(Debug, Clone)]
pub struct RenderValues {
    /// Account ID.
    pub account: String,
    /// Region.
    pub region: String,
    /// ARN of the execution role.
    pub execution_role_arn: String,
    /// ARN of the API task role.
    pub api_task_role_arn: String,
    /// The service image.
    pub api_image: String,
    /// The Redis image.
    pub redis_image: String,
}

/// The map filling every placeholder of [`crate::config::PLACEHOLDERS`].
pub fn placeholder_values(names: &Names, values: &RenderValues) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("APP", names.app.clone()),
        ("ACCOUNT_ID", values.account.clone()),
        ("REGION", values.region.clone()),
        (
            "PARTITION",
            crate::aws::partition_of(&values.region).to_owned(),
        ),
        ("EXECUTION_ROLE_ARN", values.execution_role_arn.clone()),
        ("API_TASK_ROLE_ARN", values.api_task_role_arn.clone()),
        ("API_IMAGE", values.api_image.clone()),
        ("REDIS_IMAGE", values.redis_image.clone()),
        ("LOG_GROUP", names.log_group.clone()),
        ("NAMESPACE", names.namespace.clone()),
        ("REDIS_HOST", names.redis_host()),
        // Race data and secrets (issue 6). The parameter and role ARNs follow from the names;
        // the EFS IDs exist only once `up` created them: `up` replaces these with
        // `resources::efs::DataVolume::placeholder_values`.
        (
            "REDIS_TASK_ROLE_ARN",
            crate::resources::iam::role_arn(
                &values.region,
                &values.account,
                &names.redis_task_role,
            ),
        ),
        ("EFS_FILE_SYSTEM_ID", KNOWN_AFTER_APPLY.to_owned()),
        ("EFS_FILE_SYSTEM_ARN", KNOWN_AFTER_APPLY.to_owned()),
        ("EFS_ACCESS_POINT_ID", KNOWN_AFTER_APPLY.to_owned()),
        ("EFS_ACCESS_POINT_ARN", KNOWN_AFTER_APPLY.to_owned()),
        (
            "API_TOKEN_PARAMETER_ARN",
            parameter_arn(values, &names.api_token_parameter),
        ),
        (
            "API_TOKENS_PARAMETER_ARN",
            parameter_arn(values, &names.api_tokens_parameter),
        ),
        (
            "REDIS_PASSWORD_PARAMETER_ARN",
            parameter_arn(values, &names.redis_password_parameter),
        ),
        (
            "REDIS_URL_PARAMETER_ARN",
            parameter_arn(values, &names.redis_url_parameter),
        ),
    ])
}

fn parameter_arn(values: &RenderValues, name: &str) -> String {
    crate::resources::secrets::parameter_arn(&values.region, &values.account, name)
}

/// The rendered task definitions as one JSON document `{ "api": …, "redis": … }`.
pub fn render(
    templates: &Templates,
    names: &Names,
    values: &RenderValues,
) -> Result<serde_json::Value> {
    let map = placeholder_values(names, values);
    Ok(serde_json::json!({
        "api": templates.api.render(&map)?,
        "redis": templates.redis.render(&map)?,
    }))
}
