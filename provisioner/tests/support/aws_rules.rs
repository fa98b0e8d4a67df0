//! The teardown orders that AWS refuses and moto lets pass (measured, `shared/emulator-notes.md`),
//! checked by the test proxy in front of moto, so that a `down` in the wrong order fails these
//! tests as it would fail against AWS:
//!
//! | request | refused while | AWS's error |
//! |---|---|---|
//! | ECS `DeleteCluster` | a service of the cluster is not INACTIVE | `ClusterContainsServicesException` |
//! | Cloud Map `DeleteNamespace` | a service is in the namespace | `ResourceInUse` |
//! | Cloud Map `DeleteService` | an instance is registered | `ResourceInUse` |
//! | EC2 `DeleteSecurityGroup` | another group's rule references it | `DependencyViolation` |
//! | EC2 `DeleteSecurityGroup` | an API Gateway VPC link (its network interfaces) uses it | `DependencyViolation` |
//!
//! The orders moto already enforces (IAM roles with policies, non-empty ECR repositories, EFS
//! file systems with mount targets, services with a desired count) are left to moto. Each check
//! reads moto's state straight from moto, before the request is forwarded.

use aws_sdk_ec2::types::SecurityGroup;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::moto::Moto;
use super::protocol::{Protocol, form_field};

/// Clients straight to moto, for reading the state a request would change.
#[derive(Clone)]
pub struct AwsRules {
    ecs: aws_sdk_ecs::Client,
    discovery: aws_sdk_servicediscovery::Client,
    ec2: aws_sdk_ec2::Client,
    apigateway: aws_sdk_apigatewayv2::Client,
}

/// Why AWS would refuse a request, answered in the error shape of the service's protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    protocol: Protocol,
    code: &'static str,
    message: String,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        self.protocol
            .error(StatusCode::BAD_REQUEST, self.code, &self.message)
    }
}

/// A string field of a JSON request body.
fn json_field(body: &str, field: &str) -> Option<String> {
    serde_json::from_str::<Value>(body)
        .ok()?
        .get(field)?
        .as_str()
        .map(str::to_owned)
}

fn references(group: &SecurityGroup, id: &str) -> bool {
    group
        .ip_permissions()
        .iter()
        .chain(group.ip_permissions_egress())
        .flat_map(|permission| permission.user_id_group_pairs())
        .any(|pair| pair.group_id() == Some(id))
}

impl AwsRules {
    pub async fn new(moto: &Moto) -> Self {
        let config = moto.sdk_config().await;
        Self {
            ecs: aws_sdk_ecs::Client::new(&config),
            discovery: aws_sdk_servicediscovery::Client::new(&config),
            ec2: aws_sdk_ec2::Client::new(&config),
            apigateway: aws_sdk_apigatewayv2::Client::new(&config),
        }
    }

    /// Whether AWS would refuse this request in moto's current state. `target` is the
    /// `X-Amz-Target` header (JSON protocols), `operation` the operation's name.
    pub async fn refusal(
        &self,
        target: Option<&str>,
        operation: &str,
        body: &str,
    ) -> Option<Refusal> {
        let service = target.and_then(|t| t.split('.').next()).unwrap_or_default();
        match (service, operation) {
            (s, "DeleteCluster") if s.starts_with("AmazonEC2ContainerService") => {
                self.cluster_in_use(&json_field(body, "cluster")?).await
            }
            (s, "DeleteNamespace") if s.starts_with("Route53AutoNaming") => {
                self.namespace_in_use(&json_field(body, "Id")?).await
            }
            (s, "DeleteService") if s.starts_with("Route53AutoNaming") => {
                self.discovery_service_in_use(&json_field(body, "Id")?)
                    .await
            }
            ("", "DeleteSecurityGroup") => {
                self.security_group_in_use(&form_field(body, "GroupId")?)
                    .await
            }
            _ => None,
        }
    }

    async fn cluster_in_use(&self, cluster: &str) -> Option<Refusal> {
        let listed = self
            .ecs
            .list_services()
            .cluster(cluster)
            .send()
            .await
            .ok()?;
        if listed.service_arns().is_empty() {
            return None;
        }
        let described = self
            .ecs
            .describe_services()
            .cluster(cluster)
            .set_services(Some(listed.service_arns().to_vec()))
            .send()
            .await
            .ok()?;
        let active: Vec<&str> = described
            .services()
            .iter()
            .filter(|s| s.status() != Some("INACTIVE"))
            .filter_map(|s| s.service_name())
            .collect();
        (!active.is_empty()).then(|| Refusal {
            protocol: Protocol::Json,
            code: "ClusterContainsServicesException",
            message: format!(
                "The Cluster cannot be deleted while Services are active ({}).",
                active.join(", ")
            ),
        })
    }

    async fn namespace_in_use(&self, namespace_id: &str) -> Option<Refusal> {
        // moto ignores ListServices' NAMESPACE_ID filter: read each service's namespace.
        let listed = self.discovery.list_services().send().await.ok()?;
        for summary in listed.services() {
            let Some(id) = summary.id() else { continue };
            let service = self.discovery.get_service().id(id).send().await.ok()?;
            if service.service().and_then(|s| s.namespace_id()) == Some(namespace_id) {
                return Some(Refusal {
                    protocol: Protocol::Json,
                    code: "ResourceInUse",
                    message: format!("Namespace {namespace_id} has associated services ({id})"),
                });
            }
        }
        None
    }

    async fn discovery_service_in_use(&self, service_id: &str) -> Option<Refusal> {
        let instances = self
            .discovery
            .list_instances()
            .service_id(service_id)
            .send()
            .await
            .ok()?;
        (!instances.instances().is_empty()).then(|| Refusal {
            protocol: Protocol::Json,
            code: "ResourceInUse",
            message: format!("Service {service_id} has registered instances"),
        })
    }

    async fn security_group_in_use(&self, group_id: &str) -> Option<Refusal> {
        // On AWS a VPC link holds network interfaces in its groups until some time after it
        // is deleted; moto creates none, so the link itself stands for them.
        let links = self.apigateway.get_vpc_links().send().await.ok();
        if let Some(link) = links
            .iter()
            .flat_map(|out| out.items())
            .find(|l| l.security_group_ids().iter().any(|g| g == group_id))
        {
            return Some(Refusal {
                protocol: Protocol::Ec2,
                code: "DependencyViolation",
                message: format!(
                    "resource {group_id} has a dependent object (network interfaces of VPC link {})",
                    link.vpc_link_id().unwrap_or_default()
                ),
            });
        }
        let groups = self.ec2.describe_security_groups().send().await.ok()?;
        let referencing = groups
            .security_groups()
            .iter()
            .find(|g| g.group_id() != Some(group_id) && references(g, group_id))?;
        Some(Refusal {
            protocol: Protocol::Ec2,
            code: "DependencyViolation",
            message: format!(
                "resource {group_id} has a dependent object ({})",
                referencing.group_id().unwrap_or_default()
            ),
        })
    }
}
