//! Task definitions: a serde mirror of the `RegisterTaskDefinition` input (the format of
//! `aws ecs register-task-definition --cli-input-json`, so the same files work with the AWS
//! CLI), its conversion to the SDK's builders, and the comparison with a live revision that
//! decides whether a new revision is needed.
//!
//! The SDK's types have no serde support, hence the mirror. `deny_unknown_fields` makes a
//! typo in a file an error naming the field instead of a silently ignored setting. Only the
//! fields below are supported; anything else is refused when the files are loaded.

use std::collections::BTreeMap;

use aws_sdk_ecs::types as ecs;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A task definition as written in `task-definitions/*.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct TaskDefinitionSpec {
    pub family: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires_compatibilities: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_platform: Option<RuntimePlatformSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_role_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_role_arn: Option<String>,
    pub container_definitions: Vec<ContainerSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<Vec<VolumeSpec>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RuntimePlatformSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_architecture: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operating_system_family: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub essential: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_reservation: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_point: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<Vec<NameValue>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<Vec<SecretSpec>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_mappings: Option<Vec<PortMappingSpec>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheckSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readonly_root_filesystem: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_timeout: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_directory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_configuration: Option<LogConfigurationSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_points: Option<Vec<MountPointSpec>>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct NameValue {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct SecretSpec {
    pub name: String,
    pub value_from: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct PortMappingSpec {
    pub container_port: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct HealthCheckSpec {
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct LogConfigurationSpec {
    pub log_driver: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct MountPointSpec {
    pub source_volume: String,
    pub container_path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct VolumeSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub efs_volume_configuration: Option<EfsVolumeSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct EfsVolumeSpec {
    pub file_system_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_directory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transit_encryption: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_config: Option<EfsAuthorizationSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct EfsAuthorizationSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_point_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iam: Option<String>,
}

fn non_empty<T>(items: Vec<T>) -> Option<Vec<T>> {
    if items.is_empty() { None } else { Some(items) }
}

impl TaskDefinitionSpec {
    /// The container of that name.
    pub fn container(&self, name: &str) -> Option<&ContainerSpec> {
        self.container_definitions.iter().find(|c| c.name == name)
    }

    /// The container of that name, to change.
    pub fn container_mut(&mut self, name: &str) -> Option<&mut ContainerSpec> {
        self.container_definitions
            .iter_mut()
            .find(|c| c.name == name)
    }

    /// The same definition with the defaults AWS fills in made explicit and lists that AWS
    /// may reorder sorted, so a file and the live revision it produced compare equal.
    pub fn normalized(&self) -> Self {
        let mut spec = self.clone();
        spec.requires_compatibilities = spec.requires_compatibilities.take().and_then(|mut c| {
            c.sort();
            non_empty(c)
        });
        spec.volumes = spec.volumes.take().and_then(non_empty);
        for container in &mut spec.container_definitions {
            container.essential = Some(container.essential.unwrap_or(true));
            // ECS reports a container-level cpu of 0 when none was given.
            if container.cpu == Some(0) {
                container.cpu = None;
            }
            container.environment = container.environment.take().and_then(|mut env| {
                env.sort();
                non_empty(env)
            });
            container.secrets = container.secrets.take().and_then(|mut secrets| {
                secrets.sort();
                non_empty(secrets)
            });
            container.command = container.command.take().and_then(non_empty);
            container.entry_point = container.entry_point.take().and_then(non_empty);
            container.mount_points = container.mount_points.take().and_then(non_empty);
            container.port_mappings = container.port_mappings.take().and_then(|mut ports| {
                for port in &mut ports {
                    // In awsvpc mode the host port is the container port.
                    if port.host_port == Some(port.container_port) {
                        port.host_port = None;
                    }
                    port.protocol = Some(port.protocol.take().unwrap_or_else(|| "tcp".into()));
                }
                non_empty(ports)
            });
            if let Some(check) = &mut container.health_check {
                // ECS's documented defaults.
                check.interval = Some(check.interval.unwrap_or(30));
                check.timeout = Some(check.timeout.unwrap_or(5));
                check.retries = Some(check.retries.unwrap_or(3));
                check.start_period = Some(check.start_period.unwrap_or(0));
            }
        }
        spec
    }

    /// Whether the live revision already is this definition.
    pub fn matches(&self, live: &TaskDefinitionSpec) -> bool {
        self.normalized() == live.normalized()
    }

    /// The SDK request registering this definition.
    pub fn register_request(
        &self,
        client: &aws_sdk_ecs::Client,
    ) -> Result<aws_sdk_ecs::operation::register_task_definition::builders::RegisterTaskDefinitionFluentBuilder>
    {
        let resource = format!("task definition {}", self.family);
        let build_error = |e: aws_smithy_types::error::operation::BuildError| Error::Invalid {
            path: format!("task definition {}", self.family).into(),
            message: e.to_string(),
        };
        let mut request = client
            .register_task_definition()
            .family(&self.family)
            .set_network_mode(self.network_mode.as_deref().map(ecs::NetworkMode::from))
            .set_requires_compatibilities(self.requires_compatibilities.as_ref().map(|c| {
                c.iter()
                    .map(|c| ecs::Compatibility::from(c.as_str()))
                    .collect()
            }))
            .set_cpu(self.cpu.clone())
            .set_memory(self.memory.clone())
            .set_execution_role_arn(self.execution_role_arn.clone())
            .set_task_role_arn(self.task_role_arn.clone());
        if let Some(platform) = &self.runtime_platform {
            request = request.runtime_platform(
                ecs::RuntimePlatform::builder()
                    .set_cpu_architecture(
                        platform
                            .cpu_architecture
                            .as_deref()
                            .map(ecs::CpuArchitecture::from),
                    )
                    .set_operating_system_family(
                        platform
                            .operating_system_family
                            .as_deref()
                            .map(ecs::OsFamily::from),
                    )
                    .build(),
            );
        }
        for volume in self.volumes.iter().flatten() {
            let efs = match &volume.efs_volume_configuration {
                Some(efs) => Some(
                    ecs::EfsVolumeConfiguration::builder()
                        .file_system_id(&efs.file_system_id)
                        .set_root_directory(efs.root_directory.clone())
                        .set_transit_encryption(
                            efs.transit_encryption
                                .as_deref()
                                .map(ecs::EfsTransitEncryption::from),
                        )
                        .set_authorization_config(efs.authorization_config.as_ref().map(|auth| {
                            ecs::EfsAuthorizationConfig::builder()
                                .set_access_point_id(auth.access_point_id.clone())
                                .set_iam(
                                    auth.iam
                                        .as_deref()
                                        .map(ecs::EfsAuthorizationConfigIam::from),
                                )
                                .build()
                        }))
                        .build()
                        .map_err(build_error)?,
                ),
                None => None,
            };
            request = request.volumes(
                ecs::Volume::builder()
                    .name(&volume.name)
                    .set_efs_volume_configuration(efs)
                    .build(),
            );
        }
        for container in &self.container_definitions {
            request = request.container_definitions(container.to_sdk().map_err(build_error)?);
        }
        tracing::debug!(%resource, "register request built");
        Ok(request)
    }

    /// Reads a live revision back into the mirror, for comparison and display.
    pub fn from_live(live: &ecs::TaskDefinition) -> Self {
        Self {
            family: live.family().unwrap_or_default().to_owned(),
            network_mode: live.network_mode().map(|m| m.as_str().to_owned()),
            requires_compatibilities: non_empty(
                live.requires_compatibilities()
                    .iter()
                    .map(|c| c.as_str().to_owned())
                    .collect(),
            ),
            cpu: live.cpu().map(str::to_owned),
            memory: live.memory().map(str::to_owned),
            runtime_platform: live.runtime_platform().map(|p| RuntimePlatformSpec {
                cpu_architecture: p.cpu_architecture().map(|a| a.as_str().to_owned()),
                operating_system_family: p.operating_system_family().map(|f| f.as_str().to_owned()),
            }),
            execution_role_arn: live.execution_role_arn().map(str::to_owned),
            task_role_arn: live.task_role_arn().map(str::to_owned),
            container_definitions: live
                .container_definitions()
                .iter()
                .map(ContainerSpec::from_live)
                .collect(),
            volumes: non_empty(
                live.volumes()
                    .iter()
                    .map(|v| VolumeSpec {
                        name: v.name().unwrap_or_default().to_owned(),
                        efs_volume_configuration: v.efs_volume_configuration().map(|efs| {
                            EfsVolumeSpec {
                                file_system_id: efs.file_system_id().to_owned(),
                                root_directory: efs.root_directory().map(str::to_owned),
                                transit_encryption: efs
                                    .transit_encryption()
                                    .map(|t| t.as_str().to_owned()),
                                authorization_config: efs.authorization_config().map(|a| {
                                    EfsAuthorizationSpec {
                                        access_point_id: a.access_point_id().map(str::to_owned),
                                        iam: a.iam().map(|i| i.as_str().to_owned()),
                                    }
                                }),
                            }
                        }),
                    })
                    .collect(),
            ),
        }
    }
}

fn strings(items: &[String]) -> Option<Vec<String>> {
    non_empty(items.to_vec())
}

impl ContainerSpec {
    /// The value of an environment variable of this container.
    pub fn env(&self, name: &str) -> Option<&str> {
        self.environment
            .iter()
            .flatten()
            .find(|e| e.name == name)
            .map(|e| e.value.as_str())
    }

    fn to_sdk(
        &self,
    ) -> std::result::Result<ecs::ContainerDefinition, aws_smithy_types::error::operation::BuildError>
    {
        let health_check = match &self.health_check {
            Some(check) => Some(
                ecs::HealthCheck::builder()
                    .set_command(Some(check.command.clone()))
                    .set_interval(check.interval)
                    .set_timeout(check.timeout)
                    .set_retries(check.retries)
                    .set_start_period(check.start_period)
                    .build()?,
            ),
            None => None,
        };
        let log_configuration = match &self.log_configuration {
            Some(log) => Some(
                ecs::LogConfiguration::builder()
                    .log_driver(ecs::LogDriver::from(log.log_driver.as_str()))
                    .set_options(
                        log.options
                            .as_ref()
                            .map(|o| o.clone().into_iter().collect()),
                    )
                    .build()?,
            ),
            None => None,
        };
        let secrets = match &self.secrets {
            Some(secrets) => Some(
                secrets
                    .iter()
                    .map(|s| {
                        ecs::Secret::builder()
                            .name(&s.name)
                            .value_from(&s.value_from)
                            .build()
                    })
                    .collect::<std::result::Result<Vec<_>, _>>()?,
            ),
            None => None,
        };
        Ok(ecs::ContainerDefinition::builder()
            .name(&self.name)
            .image(&self.image)
            .set_essential(self.essential)
            .set_cpu(self.cpu)
            .set_memory(self.memory)
            .set_memory_reservation(self.memory_reservation)
            .set_command(self.command.clone())
            .set_entry_point(self.entry_point.clone())
            .set_environment(self.environment.as_ref().map(|env| {
                env.iter()
                    .map(|e| {
                        ecs::KeyValuePair::builder()
                            .name(&e.name)
                            .value(&e.value)
                            .build()
                    })
                    .collect()
            }))
            .set_secrets(secrets)
            .set_port_mappings(self.port_mappings.as_ref().map(|ports| {
                ports
                    .iter()
                    .map(|p| {
                        ecs::PortMapping::builder()
                            .container_port(p.container_port)
                            .set_host_port(p.host_port)
                            .set_protocol(p.protocol.as_deref().map(ecs::TransportProtocol::from))
                            .set_name(p.name.clone())
                            .set_app_protocol(
                                p.app_protocol
                                    .as_deref()
                                    .map(ecs::ApplicationProtocol::from),
                            )
                            .build()
                    })
                    .collect()
            }))
            .set_health_check(health_check)
            .set_readonly_root_filesystem(self.readonly_root_filesystem)
            .set_stop_timeout(self.stop_timeout)
            .set_start_timeout(self.start_timeout)
            .set_user(self.user.clone())
            .set_working_directory(self.working_directory.clone())
            .set_log_configuration(log_configuration)
            .set_mount_points(self.mount_points.as_ref().map(|mounts| {
                mounts
                    .iter()
                    .map(|m| {
                        ecs::MountPoint::builder()
                            .source_volume(&m.source_volume)
                            .container_path(&m.container_path)
                            .set_read_only(m.read_only)
                            .build()
                    })
                    .collect()
            }))
            .build())
    }

    fn from_live(c: &ecs::ContainerDefinition) -> Self {
        Self {
            name: c.name().unwrap_or_default().to_owned(),
            image: c.image().unwrap_or_default().to_owned(),
            essential: c.essential(),
            cpu: Some(c.cpu()),
            memory: c.memory(),
            memory_reservation: c.memory_reservation(),
            command: strings(c.command()),
            entry_point: strings(c.entry_point()),
            environment: non_empty(
                c.environment()
                    .iter()
                    .map(|e| NameValue {
                        name: e.name().unwrap_or_default().to_owned(),
                        value: e.value().unwrap_or_default().to_owned(),
                    })
                    .collect(),
            ),
            secrets: non_empty(
                c.secrets()
                    .iter()
                    .map(|s| SecretSpec {
                        name: s.name().to_owned(),
                        value_from: s.value_from().to_owned(),
                    })
                    .collect(),
            ),
            port_mappings: non_empty(
                c.port_mappings()
                    .iter()
                    .map(|p| PortMappingSpec {
                        container_port: p.container_port().unwrap_or_default(),
                        host_port: p.host_port(),
                        protocol: p.protocol().map(|p| p.as_str().to_owned()),
                        name: p.name().map(str::to_owned),
                        app_protocol: p.app_protocol().map(|p| p.as_str().to_owned()),
                    })
                    .collect(),
            ),
            health_check: c.health_check().map(|h| HealthCheckSpec {
                command: h.command().to_vec(),
                interval: h.interval(),
                timeout: h.timeout(),
                retries: h.retries(),
                start_period: h.start_period(),
            }),
            readonly_root_filesystem: c.readonly_root_filesystem(),
            stop_timeout: c.stop_timeout(),
            start_timeout: c.start_timeout(),
            user: c.user().map(str::to_owned),
            working_directory: c.working_directory().map(str::to_owned),
            log_configuration: c.log_configuration().map(|l| LogConfigurationSpec {
                log_driver: l.log_driver().as_str().to_owned(),
                options: l.options().map(|o| o.clone().into_iter().collect()),
            }),
            mount_points: non_empty(
                c.mount_points()
                    .iter()
                    .map(|m| MountPointSpec {
                        source_volume: m.source_volume().unwrap_or_default().to_owned(),
                        container_path: m.container_path().unwrap_or_default().to_owned(),
                        read_only: m.read_only(),
                    })
                    .collect(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> TaskDefinitionSpec {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn defaults_filled_by_aws_do_not_count_as_a_change() {
        let file = spec(serde_json::json!({
            "family": "f",
            "containerDefinitions": [{"name": "api", "image": "i",
                "portMappings": [{"containerPort": 8080}],
                "environment": [{"name": "B", "value": "2"}, {"name": "A", "value": "1"}],
                "healthCheck": {"command": ["CMD", "true"]}}]
        }));
        let live = spec(serde_json::json!({
            "family": "f",
            "containerDefinitions": [{"name": "api", "image": "i", "essential": true, "cpu": 0,
                "portMappings": [{"containerPort": 8080, "hostPort": 8080, "protocol": "tcp"}],
                "environment": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                "command": [], "mountPoints": [],
                "healthCheck": {"command": ["CMD", "true"], "interval": 30, "timeout": 5, "retries": 3, "startPeriod": 0}}]
        }));
        assert!(file.matches(&live));
    }

    #[test]
    fn a_changed_value_is_a_change() {
        let a = spec(
            serde_json::json!({"family": "f", "containerDefinitions": [{"name": "api", "image": "i:1"}]}),
        );
        let b = spec(
            serde_json::json!({"family": "f", "containerDefinitions": [{"name": "api", "image": "i:2"}]}),
        );
        assert!(!a.matches(&b));
    }

    #[test]
    fn the_register_request_round_trips_through_the_sdk_types() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../task-definitions/api.json"
        ))
        .unwrap();
        let file: TaskDefinitionSpec = serde_json::from_str(&text).unwrap();
        let client = aws_sdk_ecs::Client::from_conf(
            aws_sdk_ecs::Config::builder()
                .behavior_version(aws_sdk_ecs::config::BehaviorVersion::latest())
                .build(),
        );
        let request = file.register_request(&client).unwrap();
        let input = request.as_input();
        let live = ecs::TaskDefinition::builder()
            .family(input.get_family().clone().unwrap())
            .set_network_mode(input.get_network_mode().clone())
            .set_requires_compatibilities(input.get_requires_compatibilities().clone())
            .set_cpu(input.get_cpu().clone())
            .set_memory(input.get_memory().clone())
            .set_runtime_platform(input.get_runtime_platform().clone())
            .set_execution_role_arn(input.get_execution_role_arn().clone())
            .set_task_role_arn(input.get_task_role_arn().clone())
            .set_container_definitions(input.get_container_definitions().clone())
            .build();
        assert!(file.matches(&TaskDefinitionSpec::from_live(&live)));
    }
}
