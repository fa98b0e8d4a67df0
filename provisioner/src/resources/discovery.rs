//! Cloud Map: the private DNS namespace `<app>.local` in the VPC and two discovery services
//! in it. ECS registers the Redis task's address in `redis` (`serviceRegistries`), so the API
//! reaches Redis as `redis.<app>.local` whatever its address, with no AWS API rights; and each
//! API task's address and port in `api` (SRV records, as API Gateway's private integration
//! needs), with ECS reporting the tasks' health (custom health check), so API Gateway sends
//! requests only to healthy API tasks.
//!
//! Namespace creation and deletion are asynchronous operations in Cloud Map (about 40 s on
//! AWS): they are polled to completion with a bound.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_servicediscovery::types::{
    DnsConfig, DnsConfigChange, DnsRecord, FilterCondition, HealthCheckCustomConfig,
    NamespaceFilter, NamespaceFilterName, NamespaceType, OperationStatus, OperationTargetType,
    RecordType, RoutingPolicy, ServiceChange, Tag,
};

use crate::error::{Error, Result, absent_when};
use crate::plan::{Action, Deployment, KNOWN_AFTER_APPLY};
use crate::resources::{ownership, poll_until, retry_bounded};

/// TTL of the records: short, so a replaced task is found within seconds.
pub const RECORD_TTL_SECONDS: i64 = 10;

/// One of the app's discovery services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discovered {
    /// `redis`: an A record of the Redis task, for the API's `REDIS_URL`.
    Redis,
    /// `api`: SRV records (address and port) of the API tasks, for API Gateway.
    Api,
}

impl Discovered {
    fn name(self, d: &Deployment) -> &str {
        match self {
            Discovered::Redis => &d.names.discovery_service,
            Discovered::Api => &d.names.api_discovery_service,
        }
    }

    /// The DNS name, e.g. `redis.timing.local`: how the service is named in messages.
    fn qualified(self, d: &Deployment) -> String {
        match self {
            Discovered::Redis => d.names.redis_host(),
            Discovered::Api => d.names.api_host(),
        }
    }

    fn record_type(self) -> RecordType {
        match self {
            Discovered::Redis => RecordType::A,
            Discovered::Api => RecordType::Srv,
        }
    }
}

/// How long a Cloud Map operation may take before the provisioner gives up.
pub const OPERATION_LIMIT: Duration = Duration::from_secs(300);

/// The discovery service as ECS needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryService {
    /// Cloud Map service ID.
    pub id: String,
    /// Its ARN, for the ECS service's `serviceRegistries`.
    pub arn: String,
}

impl From<&aws_sdk_servicediscovery::types::Service> for DiscoveryService {
    fn from(service: &aws_sdk_servicediscovery::types::Service) -> Self {
        Self {
            id: service.id().unwrap_or_default().to_owned(),
            arn: service.arn().unwrap_or_default().to_owned(),
        }
    }
}

fn tags(d: &Deployment) -> Result<Vec<Tag>> {
    ownership::sdk_tags(&d.names, |k, v| Tag::builder().key(k).value(v).build())
        .map_err(Error::request("Cloud Map tags"))
}

/// Stops unless the Cloud Map resource `arn` (described as `resource`) carries the app's tags.
async fn check_ours(d: &Deployment, arn: Option<&str>, resource: &str) -> Result<()> {
    let arn = arn.ok_or_else(|| Error::missing(resource.to_owned(), "Arn"))?;
    let out = d
        .clients
        .discovery
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .map_err(|e| Error::aws("ListTagsForResource", resource.to_owned(), e))?;
    ownership::check_tags(d, || resource.to_owned(), out.tags())
}

/// The app's namespace ID, if it exists; an error when a namespace of that name is not the
/// app's.
pub async fn find_namespace(d: &Deployment) -> Result<Option<String>> {
    let name = &d.names.namespace;
    let filter = NamespaceFilter::builder()
        .name(NamespaceFilterName::Type)
        .values(NamespaceType::DnsPrivate.as_str())
        .condition(FilterCondition::Eq)
        .build()
        .map_err(Error::request(format!("namespace {name}")))?;
    let mut pages = d
        .clients
        .discovery
        .list_namespaces()
        .filters(filter)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page =
            page.map_err(|e| Error::aws("ListNamespaces", format!("namespace {name}"), e))?;
        if let Some(found) = page
            .namespaces()
            .iter()
            .find(|n| n.name() == Some(name.as_str()))
        {
            check_ours(d, found.arn(), &format!("Cloud Map namespace {name}")).await?;
            return Ok(found.id().map(str::to_owned));
        }
    }
    Ok(None)
}

/// Polls a Cloud Map operation until it succeeds; returns the ID of `target` it reports.
async fn wait_for_operation(
    d: &Deployment,
    operation_id: &str,
    what: &str,
    target: OperationTargetType,
) -> Result<Option<String>> {
    let discovery = &d.clients.discovery;
    poll_until(
        what,
        d.limit(OPERATION_LIMIT),
        Duration::from_secs(2),
        || async {
            let out = discovery
                .get_operation()
                .operation_id(operation_id)
                .send()
                .await
                .map_err(|e| Error::aws("GetOperation", what.to_owned(), e))?;
            let Some(operation) = out.operation() else {
                return Ok(None);
            };
            match operation.status() {
                Some(OperationStatus::Success) => Ok(Some(
                    operation.targets().and_then(|t| t.get(&target)).cloned(),
                )),
                Some(OperationStatus::Fail) => Err(Error::Aws {
                    operation: "GetOperation",
                    resource: what.to_owned(),
                    code: operation.error_code().map(str::to_owned),
                    message: operation
                        .error_message()
                        .unwrap_or("the operation failed")
                        .to_owned(),
                }),
                _ => Ok(None),
            }
        },
    )
    .await
}

/// Creates the namespace in the VPC if missing; returns its ID.
pub async fn ensure_namespace(d: &Deployment, vpc_id: &str) -> Result<String> {
    let name = &d.names.namespace;
    if let Some(id) = find_namespace(d).await? {
        d.record("dns-namespace", name, Action::Unchanged, None);
        return Ok(id);
    }
    if !d.record(
        "dns-namespace",
        name,
        Action::Create,
        Some(format!("private, in {vpc_id}")),
    ) {
        return Ok(KNOWN_AFTER_APPLY.to_owned());
    }
    let created = d
        .clients
        .discovery
        .create_private_dns_namespace()
        .name(name)
        .vpc(vpc_id)
        .description(format!("service discovery of app {}", d.names.app))
        .creator_request_id(creator_request_id(name))
        .set_tags(Some(tags(d)?))
        .send()
        .await;
    let operation_id = match created {
        Ok(out) => out.operation_id().map(str::to_owned),
        Err(e) => match e.as_service_error() {
            // A concurrent run created it: the error carries its ID.
            Some(aws_sdk_servicediscovery::operation::create_private_dns_namespace::CreatePrivateDnsNamespaceError::NamespaceAlreadyExists(exists)) => {
                if let Some(id) = exists.namespace_id() {
                    return Ok(id.to_owned());
                }
                None
            }
            _ => return Err(Error::aws("CreatePrivateDnsNamespace", format!("namespace {name}"), e)),
        },
    };
    if let Some(operation_id) = operation_id {
        let what = format!("namespace {name} to be created");
        if let Some(id) =
            wait_for_operation(d, &operation_id, &what, OperationTargetType::Namespace).await?
        {
            return Ok(id);
        }
    }
    find_namespace(d)
        .await?
        .ok_or_else(|| Error::missing(format!("namespace {name}"), "Id"))
}

/// A unique request ID: Cloud Map refuses a reused one, and a namespace may be created again
/// after `down`.
fn creator_request_id(name: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    format!("{name}-{now}")
}

/// The app's discovery service `which`, if it and the namespace exist.
pub async fn find(d: &Deployment, which: Discovered) -> Result<Option<DiscoveryService>> {
    let Some(namespace_id) = find_namespace(d).await? else {
        return Ok(None);
    };
    Ok(find_service(d, &namespace_id, which)
        .await?
        .as_ref()
        .map(DiscoveryService::from))
}

/// The health Cloud Map holds for each registered instance of a service, by instance ID (for
/// ECS-registered instances, the task ID): `HEALTHY`, `UNHEALTHY` or `UNKNOWN`.
pub async fn instance_health(
    d: &Deployment,
    service: &DiscoveryService,
) -> Result<std::collections::BTreeMap<String, String>> {
    let mut pages = d
        .clients
        .discovery
        .get_instances_health_status()
        .service_id(&service.id)
        .into_paginator()
        .send();
    let mut health = std::collections::BTreeMap::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| {
            Error::aws(
                "GetInstancesHealthStatus",
                format!("discovery service {}", service.id),
                e,
            )
        })?;
        for (instance, state) in page.status.unwrap_or_default() {
            health.insert(instance, state.as_str().to_owned());
        }
    }
    Ok(health)
}

/// Deregisters the service's instances (ECS does as its tasks stop; this is for what is left
/// after an interruption), waits until Cloud Map lists none, then deletes the service: Cloud
/// Map refuses to delete a service with instances. Every wait ends within `limit` and the
/// command's `--timeout`.
async fn delete_service(
    d: &Deployment,
    namespace_id: &str,
    which: Discovered,
    limit: Duration,
) -> Result<()> {
    let discovery = &d.clients.discovery;
    let qualified = which.qualified(d);
    let Some(service) = find_service(d, namespace_id, which).await? else {
        d.record("discovery-service", &qualified, Action::Absent, None);
        return Ok(());
    };
    let id = service.id().unwrap_or_default().to_owned();
    d.record("discovery-service", &qualified, Action::Delete, None);
    for instance_id in instance_ids(d, &id, &qualified).await? {
        let out = discovery
            .deregister_instance()
            .service_id(&id)
            .instance_id(&instance_id)
            .send()
            .await;
        let out = absent_when(
            out,
            |e| e.is_instance_not_found(),
            "DeregisterInstance",
            format!("instance {instance_id} of {qualified}"),
        )?;
        if let Some(operation) = out.as_ref().and_then(|out| out.operation_id()) {
            let what = format!("instance {instance_id} of {qualified} to be deregistered");
            wait_for_operation(d, operation, &what, OperationTargetType::Instance).await?;
        }
    }
    // A deregistration ECS started for a task that was still stopping can list the instance a
    // little longer than its operation takes.
    poll_until(
        &format!("the instances of Cloud Map service {qualified} to be gone"),
        d.limit(limit),
        Duration::from_secs(2),
        || async {
            Ok(instance_ids(d, &id, &qualified)
                .await?
                .is_empty()
                .then_some(()))
        },
    )
    .await?;
    retry_bounded(
        &format!("deleting discovery service {qualified}"),
        d.limit(limit),
        |e| e.aws_code() == Some("ResourceInUse"),
        || async {
            let out = discovery.delete_service().id(&id).send().await;
            absent_when(
                out,
                |e| e.is_service_not_found(),
                "DeleteService",
                format!("discovery service {qualified}"),
            )
            .map(|_| ())
        },
    )
    .await
}

/// The IDs of the instances registered in the discovery service `id`, every page.
async fn instance_ids(d: &Deployment, id: &str, qualified: &str) -> Result<Vec<String>> {
    let mut pages = d
        .clients
        .discovery
        .list_instances()
        .service_id(id)
        .into_paginator()
        .send();
    let mut ids = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| {
            Error::aws("ListInstances", format!("discovery service {qualified}"), e)
        })?;
        ids.extend(
            page.instances()
                .iter()
                .filter_map(|i| i.id().map(str::to_owned)),
        );
    }
    Ok(ids)
}

/// The discovery service of that name in the namespace, if any. ListServices' namespace
/// filter is not honoured by every implementation, so each candidate's namespace is checked.
async fn find_service(
    d: &Deployment,
    namespace_id: &str,
    which: Discovered,
) -> Result<Option<aws_sdk_servicediscovery::types::Service>> {
    let name = which.name(d);
    let discovery = &d.clients.discovery;
    let filter = aws_sdk_servicediscovery::types::ServiceFilter::builder()
        .name(aws_sdk_servicediscovery::types::ServiceFilterName::NamespaceId)
        .values(namespace_id)
        .condition(FilterCondition::Eq)
        .build()
        .map_err(Error::request(format!("discovery service {name}")))?;
    let mut pages = discovery
        .list_services()
        .filters(filter)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page =
            page.map_err(|e| Error::aws("ListServices", format!("discovery service {name}"), e))?;
        for summary in page.services().iter().filter(|s| s.name() == Some(name)) {
            let Some(id) = summary.id() else { continue };
            let service = discovery
                .get_service()
                .id(id)
                .send()
                .await
                .map_err(|e| Error::aws("GetService", format!("discovery service {name}"), e))?
                .service;
            if let Some(service) = service.filter(|s| s.namespace_id() == Some(namespace_id)) {
                // Named as its DNS name (e.g. `api.timing.local`): what the user can look up.
                let resource = format!("Cloud Map service {}", which.qualified(d));
                check_ours(d, service.arn(), &resource).await?;
                return Ok(Some(service));
            }
        }
    }
    Ok(None)
}

fn record(which: Discovered) -> Result<DnsRecord> {
    DnsRecord::builder()
        .r#type(which.record_type())
        .ttl(RECORD_TTL_SECONDS)
        .build()
        .map_err(Error::request("DNS record"))
}

/// Creates the discovery service (A or SRV records, short TTL, health reported by ECS) or
/// converges its TTL. Cloud Map cannot change a service's record type: a live one of another
/// type is reported, not replaced.
pub async fn ensure_discovery_service(
    d: &Deployment,
    namespace_id: &str,
    which: Discovered,
) -> Result<DiscoveryService> {
    let name = which.name(d);
    let qualified = which.qualified(d);
    let wanted_type = which.record_type();
    let planned = DiscoveryService {
        id: KNOWN_AFTER_APPLY.into(),
        arn: KNOWN_AFTER_APPLY.into(),
    };
    let live = if namespace_id == KNOWN_AFTER_APPLY {
        None
    } else {
        find_service(d, namespace_id, which).await?
    };
    if let Some(service) = live {
        let found = DiscoveryService::from(&service);
        let live_record = service.dns_config().and_then(|c| c.dns_records().first());
        if let Some(live_type) = live_record.map(|r| r.r#type())
            && *live_type != wanted_type
        {
            return Err(Error::Aws {
                operation: "GetService",
                resource: format!("discovery service {qualified}"),
                code: None,
                message: format!(
                    "it has {} records, the app needs {}; Cloud Map cannot change a record type: `provisioner down` and `up` recreate it",
                    live_type.as_str(),
                    wanted_type.as_str()
                ),
            });
        }
        let ttl = live_record.map(|r| r.ttl());
        if ttl == Some(RECORD_TTL_SECONDS) {
            d.record("discovery-service", &qualified, Action::Unchanged, None);
            return Ok(found);
        }
        if d.record(
            "discovery-service",
            &qualified,
            Action::Update,
            Some(format!("TTL {ttl:?} → {RECORD_TTL_SECONDS}")),
        ) {
            let change = ServiceChange::builder()
                .dns_config(
                    DnsConfigChange::builder()
                        .dns_records(record(which)?)
                        .build()
                        .map_err(Error::request("DNS config"))?,
                )
                .build();
            d.clients
                .discovery
                .update_service()
                .id(&found.id)
                .service(change)
                .send()
                .await
                .map_err(|e| {
                    Error::aws("UpdateService", format!("discovery service {qualified}"), e)
                })?;
        }
        return Ok(found);
    }
    if !d.record(
        "discovery-service",
        &qualified,
        Action::Create,
        Some(format!(
            "{} records, TTL {RECORD_TTL_SECONDS}s, health from ECS",
            wanted_type.as_str()
        )),
    ) {
        return Ok(planned);
    }
    let dns = DnsConfig::builder()
        .routing_policy(RoutingPolicy::Multivalue)
        .dns_records(record(which)?)
        .build()
        .map_err(Error::request("DNS config"))?;
    let created = d
        .clients
        .discovery
        .create_service()
        .name(name)
        .namespace_id(namespace_id)
        .dns_config(dns)
        .health_check_custom_config(HealthCheckCustomConfig::builder().build())
        .creator_request_id(creator_request_id(&qualified))
        .set_tags(Some(tags(d)?))
        .send()
        .await;
    match created {
        Ok(out) => {
            let service = out.service.ok_or_else(|| {
                Error::missing(format!("discovery service {qualified}"), "Service")
            })?;
            Ok(DiscoveryService {
                id: service.id.ok_or_else(|| {
                    Error::missing(format!("discovery service {qualified}"), "Service.Id")
                })?,
                arn: service.arn.ok_or_else(|| {
                    Error::missing(format!("discovery service {qualified}"), "Service.Arn")
                })?,
            })
        }
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_service_already_exists()) =>
        {
            let service = find_service(d, namespace_id, which).await?.ok_or_else(|| {
                Error::missing(format!("discovery service {qualified}"), "Service")
            })?;
            Ok(DiscoveryService::from(&service))
        }
        Err(e) => Err(Error::aws(
            "CreateService",
            format!("discovery service {qualified}"),
            e,
        )),
    }
}

/// Deregisters every instance, deletes the discovery services, then the namespace, in the
/// order Cloud Map requires.
pub async fn delete_discovery(d: &Deployment, limit: Duration) -> Result<()> {
    let discovery = &d.clients.discovery;
    let namespace = &d.names.namespace;
    let Some(namespace_id) = find_namespace(d).await? else {
        for which in [Discovered::Api, Discovered::Redis] {
            d.record(
                "discovery-service",
                which.qualified(d),
                Action::Absent,
                None,
            );
        }
        d.record("dns-namespace", namespace, Action::Absent, None);
        return Ok(());
    };
    for which in [Discovered::Api, Discovered::Redis] {
        delete_service(d, &namespace_id, which, limit).await?;
    }
    d.record("dns-namespace", namespace, Action::Delete, None);
    let deleted = retry_bounded(
        &format!("deleting namespace {namespace}"),
        d.limit(limit),
        |e| e.aws_code() == Some("ResourceInUse"),
        || async {
            let out = discovery.delete_namespace().id(&namespace_id).send().await;
            let out = absent_when(
                out,
                |e| e.is_namespace_not_found(),
                "DeleteNamespace",
                format!("namespace {namespace}"),
            )?;
            Ok(out.and_then(|out| out.operation_id().map(str::to_owned)))
        },
    )
    .await?;
    if let Some(operation) = deleted {
        let what = format!("namespace {namespace} to be deleted");
        wait_for_operation(d, &operation, &what, OperationTargetType::Namespace).await?;
    }
    Ok(())
}
