//! The tests' own reads of what the binary left in moto, each written once: [`Sdk`] holds a
//! client per AWS service and looks up an ECS service or task definition of the app `timing`,
//! a security group by name, the file system of Redis's data, an SSM parameter and its tags,
//! a role's inline policy, a Cloud Map service or namespace, the default VPC and its subnets;
//! and makes a VPC of the test's own.

use super::{Moto, ec2_filter};

/// The app the lookups are about: the one the tests deploy.
const APP: &str = "timing";

/// One client per AWS service the tests read or change behind the binary's back.
#[derive(Clone)]
pub struct Sdk {
    pub apigateway: aws_sdk_apigatewayv2::Client,
    pub discovery: aws_sdk_servicediscovery::Client,
    pub ec2: aws_sdk_ec2::Client,
    pub ecr: aws_sdk_ecr::Client,
    pub ecs: aws_sdk_ecs::Client,
    pub efs: aws_sdk_efs::Client,
    pub iam: aws_sdk_iam::Client,
    pub logs: aws_sdk_cloudwatchlogs::Client,
    pub ssm: aws_sdk_ssm::Client,
}

impl Sdk {
    /// Clients straight to moto: their calls are not recorded by the proxy.
    pub async fn new(moto: &Moto) -> Self {
        Self::from_config(&moto.sdk_config().await)
    }

    /// Clients on `config` (e.g. through the proxy, to meet its rules).
    pub fn from_config(config: &aws_config::SdkConfig) -> Self {
        Self {
            apigateway: aws_sdk_apigatewayv2::Client::new(config),
            discovery: aws_sdk_servicediscovery::Client::new(config),
            ec2: aws_sdk_ec2::Client::new(config),
            ecr: aws_sdk_ecr::Client::new(config),
            ecs: aws_sdk_ecs::Client::new(config),
            efs: aws_sdk_efs::Client::new(config),
            iam: aws_sdk_iam::Client::new(config),
            logs: aws_sdk_cloudwatchlogs::Client::new(config),
            ssm: aws_sdk_ssm::Client::new(config),
        }
    }

    /// The app's ECS services `names`, in that order (one DescribeServices).
    pub async fn services(&self, names: &[&str]) -> Vec<aws_sdk_ecs::types::Service> {
        let out = self
            .ecs
            .describe_services()
            .cluster(APP)
            .set_services(Some(names.iter().map(|n| (*n).to_owned()).collect()))
            .send()
            .await
            .unwrap();
        names
            .iter()
            .map(|name| {
                out.services()
                    .iter()
                    .find(|s| s.service_name() == Some(*name))
                    .unwrap_or_else(|| panic!("no ECS service {name}: {out:?}"))
                    .clone()
            })
            .collect()
    }

    /// The app's ECS service `name`.
    pub async fn service(&self, name: &str) -> aws_sdk_ecs::types::Service {
        self.services(&[name]).await.remove(0)
    }

    /// The desired counts of the services `api` and `redis`, in that order.
    pub async fn desired_counts(&self) -> (i32, i32) {
        let services = self.services(&["api", "redis"]).await;
        (services[0].desired_count(), services[1].desired_count())
    }

    /// A task definition by family (its latest revision), `family:revision` or ARN.
    pub async fn task_definition(&self, name: &str) -> aws_sdk_ecs::types::TaskDefinition {
        self.ecs
            .describe_task_definition()
            .task_definition(name)
            .send()
            .await
            .unwrap()
            .task_definition()
            .unwrap()
            .clone()
    }

    /// The security group `name`, if there is one.
    pub async fn group(&self, name: &str) -> Option<aws_sdk_ec2::types::SecurityGroup> {
        self.ec2
            .describe_security_groups()
            .filters(ec2_filter("group-name", name))
            .send()
            .await
            .unwrap()
            .security_groups()
            .first()
            .cloned()
    }

    /// The app's security group `name`, found by the app's tag as well as by its name (so an
    /// untagged group fails the test).
    pub async fn app_group(&self, name: &str) -> aws_sdk_ec2::types::SecurityGroup {
        self.ec2
            .describe_security_groups()
            .filters(ec2_filter("tag:app", APP))
            .filters(ec2_filter("group-name", name))
            .send()
            .await
            .unwrap()
            .security_groups()
            .first()
            .unwrap_or_else(|| panic!("no security group {name} tagged app={APP}"))
            .clone()
    }

    /// The file systems of Redis's data (by the app's creation token).
    pub async fn file_systems(&self) -> Vec<aws_sdk_efs::types::FileSystemDescription> {
        self.efs
            .describe_file_systems()
            .creation_token(format!("{APP}-redis-data"))
            .send()
            .await
            .unwrap()
            .file_systems()
            .to_vec()
    }

    /// The mount targets of the file system `fs`.
    pub async fn mount_targets(&self, fs: &str) -> Vec<aws_sdk_efs::types::MountTargetDescription> {
        self.efs
            .describe_mount_targets()
            .file_system_id(fs)
            .send()
            .await
            .unwrap()
            .mount_targets()
            .to_vec()
    }

    /// The access points of the file system `fs`.
    pub async fn access_points(&self, fs: &str) -> Vec<aws_sdk_efs::types::AccessPointDescription> {
        self.efs
            .describe_access_points()
            .file_system_id(fs)
            .send()
            .await
            .unwrap()
            .access_points()
            .to_vec()
    }

    /// The value of the SSM parameter `name`, which must be a SecureString; `None` when the
    /// parameter does not exist.
    pub async fn secure_string(&self, name: &str) -> Option<String> {
        let out = self
            .ssm
            .get_parameter()
            .name(name)
            .with_decryption(true)
            .send()
            .await;
        let out = match out {
            Ok(out) => out,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_parameter_not_found()) =>
            {
                return None;
            }
            Err(e) => panic!("{e:?}"),
        };
        let parameter = out.parameter().unwrap();
        assert_eq!(
            parameter.r#type(),
            Some(&aws_sdk_ssm::types::ParameterType::SecureString)
        );
        Some(parameter.value().unwrap().to_owned())
    }

    /// The tags of the SSM parameter `name`, sorted.
    pub async fn parameter_tags(&self, name: &str) -> Vec<(String, String)> {
        let out = self
            .ssm
            .list_tags_for_resource()
            .resource_type(aws_sdk_ssm::types::ResourceTypeForTagging::Parameter)
            .resource_id(name)
            .send()
            .await
            .unwrap();
        let mut tags: Vec<(String, String)> = out
            .tag_list()
            .iter()
            .map(|t| (t.key().to_owned(), t.value().to_owned()))
            .collect();
        tags.sort();
        tags
    }

    /// The inline policy `policy` of the role `role`, parsed (IAM gives it back URL-encoded).
    pub async fn role_policy(&self, role: &str, policy: &str) -> serde_json::Value {
        let out = self
            .iam
            .get_role_policy()
            .role_name(role)
            .policy_name(policy)
            .send()
            .await
            .unwrap();
        provisioner::policy::parse_document(out.policy_document()).unwrap()
    }

    /// The Cloud Map service `name`.
    pub async fn discovery_service(
        &self,
        name: &str,
    ) -> aws_sdk_servicediscovery::types::ServiceSummary {
        let services = self.discovery.list_services().send().await.unwrap();
        services
            .services()
            .iter()
            .find(|s| s.name() == Some(name))
            .unwrap_or_else(|| panic!("no Cloud Map service {name}"))
            .clone()
    }

    /// The Cloud Map namespace `name`.
    pub async fn namespace(&self, name: &str) -> aws_sdk_servicediscovery::types::NamespaceSummary {
        let namespaces = self.discovery.list_namespaces().send().await.unwrap();
        namespaces
            .namespaces()
            .iter()
            .find(|n| n.name() == Some(name))
            .unwrap_or_else(|| panic!("no Cloud Map namespace {name}"))
            .clone()
    }

    /// The ID of the region's default VPC.
    pub async fn default_vpc(&self) -> String {
        self.ec2
            .describe_vpcs()
            .filters(ec2_filter("isDefault", "true"))
            .send()
            .await
            .unwrap()
            .vpcs()[0]
            .vpc_id()
            .unwrap()
            .to_owned()
    }

    /// The default VPC's default subnets (where the tasks run unless told otherwise).
    pub async fn default_subnets(&self) -> Vec<aws_sdk_ec2::types::Subnet> {
        self.ec2
            .describe_subnets()
            .filters(ec2_filter("default-for-az", "true"))
            .send()
            .await
            .unwrap()
            .subnets()
            .to_vec()
    }

    /// A new VPC `{prefix}.0.0/16` with a subnet `{prefix}.N.0/24` in the N-th of `zones` (from
    /// 1), with DNS hostnames on (as `--vpc` needs them) when `dns_hostnames`: its ID and its
    /// subnets' IDs.
    pub async fn create_vpc(
        &self,
        prefix: &str,
        dns_hostnames: bool,
        zones: &[&str],
    ) -> (String, Vec<String>) {
        let vpc = self
            .ec2
            .create_vpc()
            .cidr_block(format!("{prefix}.0.0/16"))
            .send()
            .await
            .unwrap()
            .vpc()
            .unwrap()
            .vpc_id()
            .unwrap()
            .to_owned();
        if dns_hostnames {
            // A default VPC has them on, a new one not.
            self.ec2
                .modify_vpc_attribute()
                .vpc_id(&vpc)
                .enable_dns_hostnames(
                    aws_sdk_ec2::types::AttributeBooleanValue::builder()
                        .value(true)
                        .build(),
                )
                .send()
                .await
                .unwrap();
        }
        let mut subnets = Vec::new();
        for (n, zone) in zones.iter().enumerate() {
            let subnet = self
                .ec2
                .create_subnet()
                .vpc_id(&vpc)
                .cidr_block(format!("{prefix}.{}.0/24", n + 1))
                .availability_zone(*zone)
                .send()
                .await
                .unwrap();
            subnets.push(subnet.subnet().unwrap().subnet_id().unwrap().to_owned());
        }
        (vpc, subnets)
    }
}
