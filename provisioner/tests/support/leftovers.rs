//! What is left of an app in moto after a `down`, read through the SDK by the names and tags
//! the provisioner gives its resources (spelled out here, not taken from the provisioner, so
//! a wrong name there shows up as something left).

use super::{Moto, Sdk};

/// Whether Redis's data (the EFS file system and its access point) counts as left over:
/// `down` keeps it, `down --delete-data` removes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Data {
    Kept,
    Deleted,
}

/// Every resource of `app` still in moto, one line each (empty: nothing left).
pub async fn leftovers(moto: &Moto, app: &str, data: Data) -> Vec<String> {
    let sdk = Sdk::new(moto).await;
    let mut left = Vec::new();

    let ecs = &sdk.ecs;
    let clusters = ecs.describe_clusters().clusters(app).send().await.unwrap();
    if clusters
        .clusters()
        .iter()
        .any(|c| c.status() == Some("ACTIVE"))
    {
        left.push(format!("ECS cluster {app}"));
    }
    let families = ecs
        .list_task_definitions()
        .family_prefix(format!("{app}-"))
        .status(aws_sdk_ecs::types::TaskDefinitionStatus::Active)
        .send()
        .await
        .unwrap();
    left.extend(
        families
            .task_definition_arns()
            .iter()
            .map(|arn| format!("task definition {arn}")),
    );

    let ec2 = &sdk.ec2;
    let groups = ec2.describe_security_groups().send().await.unwrap();
    let names = [
        format!("{app}-api"),
        format!("{app}-redis"),
        format!("{app}-efs"),
        format!("{app}-vpc-link"),
    ];
    for group in groups.security_groups() {
        let tagged = group
            .tags()
            .iter()
            .any(|t| t.key() == Some("app") && t.value() == Some(app));
        let named = names.iter().any(|n| group.group_name() == Some(n.as_str()));
        if tagged || named {
            left.push(format!(
                "security group {} ({})",
                group.group_name().unwrap_or_default(),
                group.group_id().unwrap_or_default()
            ));
        }
    }

    let iam = &sdk.iam;
    for role in ["task-execution", "api-task", "redis-task"] {
        let role = format!("{app}-{role}");
        if iam.get_role().role_name(&role).send().await.is_ok() {
            left.push(format!("IAM role {role}"));
        }
    }

    let logs = &sdk.logs;
    let log_group = format!("/ecs/{app}");
    let groups = logs
        .describe_log_groups()
        .log_group_name_prefix(&log_group)
        .send()
        .await
        .unwrap();
    if groups
        .log_groups()
        .iter()
        .any(|g| g.log_group_name() == Some(&log_group))
    {
        left.push(format!("log group {log_group}"));
    }

    let ecr = &sdk.ecr;
    for repository in [format!("{app}/api"), format!("{app}/redis")] {
        let found = ecr
            .describe_repositories()
            .repository_names(&repository)
            .send()
            .await;
        if found.is_ok() {
            left.push(format!("ECR repository {repository}"));
        }
    }

    let discovery = &sdk.discovery;
    let namespaces = discovery.list_namespaces().send().await.unwrap();
    let namespace_ids: Vec<&str> = namespaces
        .namespaces()
        .iter()
        .filter_map(|n| n.id())
        .collect();
    let own_namespace = namespaces
        .namespaces()
        .iter()
        .find(|n| n.name() == Some(&format!("{app}.local")));
    if let Some(namespace) = own_namespace {
        left.push(format!(
            "Cloud Map namespace {app}.local ({})",
            namespace.id().unwrap_or_default()
        ));
    }
    // A discovery service in the app's namespace, or in none that still exists.
    let services = discovery.list_services().send().await.unwrap();
    for summary in services.services() {
        let Some(id) = summary.id() else { continue };
        let service = discovery.get_service().id(id).send().await.unwrap();
        let namespace = service.service().and_then(|s| s.namespace_id());
        let orphan = namespace.is_none_or(|ns| !namespace_ids.contains(&ns));
        if orphan || namespace == own_namespace.and_then(|n| n.id()) {
            left.push(format!(
                "Cloud Map service {} ({id})",
                summary.name().unwrap_or_default()
            ));
        }
    }

    // The HTTPS address: the HTTP API and VPC link of the app's name, custom domains tagged
    // with it (their stages, routes, integrations and mappings go with them).
    let apigateway = &sdk.apigateway;
    let apis = apigateway.get_apis().send().await.unwrap();
    left.extend(
        apis.items()
            .iter()
            .filter(|a| a.name() == Some(app))
            .map(|a| format!("HTTP API {app} ({})", a.api_id().unwrap_or_default())),
    );
    let links = apigateway.get_vpc_links().send().await.unwrap();
    left.extend(
        links
            .items()
            .iter()
            .filter(|l| l.name() == Some(app))
            .map(|l| format!("VPC link {app} ({})", l.vpc_link_id().unwrap_or_default())),
    );
    let domains = apigateway.get_domain_names().send().await.unwrap();
    left.extend(
        domains
            .items()
            .iter()
            .filter(|d| d.tags().and_then(|t| t.get("app")).map(String::as_str) == Some(app))
            .map(|d| format!("custom domain {}", d.domain_name().unwrap_or_default())),
    );

    let ssm = &sdk.ssm;
    for parameter in ["api-token", "api-tokens", "redis-password", "redis-url"] {
        let name = format!("/{app}/{parameter}");
        if ssm.get_parameter().name(&name).send().await.is_ok() {
            left.push(format!("SSM parameter {name}"));
        }
    }

    let efs = &sdk.efs;
    let file_systems = efs
        .describe_file_systems()
        .creation_token(format!("{app}-redis-data"))
        .send()
        .await
        .unwrap();
    for fs in file_systems.file_systems() {
        let id = fs.file_system_id();
        left.extend(
            sdk.mount_targets(id)
                .await
                .iter()
                .map(|mt| format!("EFS mount target {} of {id}", mt.mount_target_id())),
        );
        if data == Data::Deleted {
            left.push(format!("EFS file system {id}"));
            left.extend(sdk.access_points(id).await.iter().map(|ap| {
                format!(
                    "EFS access point {} of {id}",
                    ap.access_point_id().unwrap_or_default()
                )
            }));
        }
    }
    left
}

/// Panics, naming each, unless nothing of `app` is left but (with `Data::Kept`) its data.
pub async fn assert_nothing_left(moto: &Moto, app: &str, data: Data) {
    let left = leftovers(moto, app, data).await;
    assert!(left.is_empty(), "left of {app}:\n{}", left.join("\n"));
}
