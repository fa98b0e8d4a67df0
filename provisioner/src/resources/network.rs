//! EC2 networking: which VPC and subnets the tasks run in (the default VPC unless given),
//! and the app's four security groups: `<app>-api` (the service port open to the VPC link's
//! group only, and to `--allow-cidr` when given), `<app>-vpc-link` (on the network interfaces
//! of API Gateway's VPC link; no ingress), `<app>-redis` (6379 from the API group only) and
//! `<app>-efs` (NFS from the Redis group only, on the mount targets of Redis's data). Ingress
//! rules are converged exactly, whatever their source (IPv4 or IPv6 range, prefix list,
//! group): a rule someone added by hand to these groups is revoked, so neither Redis nor the
//! API tasks end up open.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_sdk_ec2::types::{
    Filter, IpPermission, IpRange, Ipv6Range, PrefixListId, ResourceType, SecurityGroup, Tag,
    TagSpecification, UserIdGroupPair, VpcAttributeName,
};

use crate::config::TAG_APP;
use crate::error::{Error, Result};
use crate::plan::{Action, Deployment, KNOWN_AFTER_APPLY};
use crate::resources::{ownership, retry_bounded};

/// Where the tasks run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    /// The VPC.
    pub vpc_id: String,
    /// The subnets the services place tasks in.
    pub subnet_ids: Vec<String>,
    /// Availability zone → the first of those subnets in it (where EFS puts a mount target).
    pub zones: BTreeMap<String, String>,
}

/// Availability zone → the first (by ID) of `subnet_ids` in that zone.
fn zones_of(
    subnets: &[aws_sdk_ec2::types::Subnet],
    subnet_ids: &[String],
) -> BTreeMap<String, String> {
    let mut pairs: Vec<(String, String)> = subnets
        .iter()
        .filter_map(|s| Some((s.availability_zone()?.to_owned(), s.subnet_id()?.to_owned())))
        .filter(|(_, id)| subnet_ids.contains(id))
        .collect();
    pairs.sort();
    let mut zones = BTreeMap::new();
    for (zone, subnet) in pairs {
        zones.entry(zone).or_insert(subnet);
    }
    zones
}

/// The IDs of the app's two security groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityGroups {
    /// Attached to the API tasks.
    pub api: String,
    /// Attached to the Redis task.
    pub redis: String,
}

pub(crate) fn filter(name: &str, values: &[&str]) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values.iter().map(|v| (*v).to_owned()).collect()))
        .build()
}

/// Finds the VPC and subnets: the ones given, else the default VPC and its default subnets.
pub async fn resolve(d: &Deployment, vpc: Option<&str>, subnets: &[String]) -> Result<Network> {
    let ec2 = &d.clients.ec2;
    if !subnets.is_empty() {
        let found = ec2
            .describe_subnets()
            .set_subnet_ids(Some(subnets.to_vec()))
            .send()
            .await
            .map_err(|e| {
                Error::aws(
                    "DescribeSubnets",
                    format!("subnets {}", subnets.join(",")),
                    e,
                )
            })?;
        let vpcs: BTreeSet<&str> = found.subnets().iter().filter_map(|s| s.vpc_id()).collect();
        let vpc_id = match (vpc, vpcs.len()) {
            (Some(vpc), _) if vpcs.iter().all(|v| *v == vpc) => vpc.to_owned(),
            (None, 1) => vpcs
                .iter()
                .next()
                .map(|v| (*v).to_owned())
                .unwrap_or_default(),
            _ => {
                return Err(Error::InvalidArgument {
                    flag: "--subnets",
                    message: format!(
                        "the subnets must all be in one VPC{}",
                        vpc.map(|v| format!(" ({v})")).unwrap_or_default()
                    ),
                });
            }
        };
        return Ok(Network {
            vpc_id,
            zones: zones_of(found.subnets(), subnets),
            subnet_ids: subnets.to_vec(),
        });
    }

    let vpc_id = match vpc {
        Some(vpc) => vpc.to_owned(),
        None => {
            let vpcs = ec2
                .describe_vpcs()
                .filters(filter("isDefault", &["true"]))
                .send()
                .await
                .map_err(|e| Error::aws("DescribeVpcs", "the default VPC", e))?;
            vpcs.vpcs()
                .first()
                .and_then(|v| v.vpc_id())
                .map(str::to_owned)
                .ok_or_else(|| Error::NoDefaultVpc {
                    region: d.region().to_owned(),
                })?
        }
    };
    let all = ec2
        .describe_subnets()
        .filters(filter("vpc-id", &[&vpc_id]))
        .send()
        .await
        .map_err(|e| Error::aws("DescribeSubnets", format!("subnets of {vpc_id}"), e))?;
    let defaults: Vec<String> = all
        .subnets()
        .iter()
        .filter(|s| s.default_for_az() == Some(true))
        .filter_map(|s| s.subnet_id().map(str::to_owned))
        .collect();
    let mut subnet_ids = if defaults.is_empty() {
        all.subnets()
            .iter()
            .filter_map(|s| s.subnet_id().map(str::to_owned))
            .collect()
    } else {
        defaults
    };
    subnet_ids.sort();
    if subnet_ids.is_empty() {
        return Err(Error::InvalidArgument {
            flag: "--vpc",
            message: format!("VPC {vpc_id} has no subnets"),
        });
    }
    let zones = zones_of(all.subnets(), &subnet_ids);
    Ok(Network {
        vpc_id,
        subnet_ids,
        zones,
    })
}

/// Refuses a network the app cannot use or move to, before anything is written:
/// - a VPC without DNS support or DNS hostnames: the private DNS namespace Redis is found by
///   needs both;
/// - another VPC than the one the app is deployed in (its security groups are there): the
///   namespace is tied to its VPC and the mount targets serve a running Redis, so moving is
///   `down` (the data is kept) then `up`, never half done.
pub async fn check_unchanged(d: &Deployment, network: &Network) -> Result<()> {
    let vpc = &network.vpc_id;
    let names = &d.names;
    let attribute = |name: VpcAttributeName| async move {
        let out = d
            .clients
            .ec2
            .describe_vpc_attribute()
            .vpc_id(vpc)
            .attribute(name.clone())
            .send()
            .await
            .map_err(|e| Error::aws("DescribeVpcAttribute", format!("VPC {vpc}"), e))?;
        let value = match name {
            VpcAttributeName::EnableDnsHostnames => out.enable_dns_hostnames(),
            _ => out.enable_dns_support(),
        };
        Ok::<_, Error>(value.and_then(|v| v.value()).unwrap_or(false))
    };
    let group_names = [
        names.api_security_group.as_str(),
        names.redis_security_group.as_str(),
        names.efs_security_group.as_str(),
        names.vpc_link_security_group.as_str(),
    ];
    let (support, hostnames, groups) = tokio::try_join!(
        attribute(VpcAttributeName::EnableDnsSupport),
        attribute(VpcAttributeName::EnableDnsHostnames),
        find_groups(d, None, &group_names),
    )?;
    let missing: Vec<&str> = [
        ("enableDnsSupport", support),
        ("enableDnsHostnames", hostnames),
    ]
    .into_iter()
    .filter(|(_, on)| !on)
    .map(|(name, _)| name)
    .collect();
    if !missing.is_empty() {
        return Err(Error::InvalidArgument {
            flag: "--vpc",
            message: format!(
                "VPC {vpc} has {} off; the private DNS namespace {} that the API finds Redis by needs DNS support and DNS hostnames: turn them on (`aws ec2 modify-vpc-attribute --vpc-id {vpc} --enable-dns-support` and `--enable-dns-hostnames`, one call each) or deploy into another VPC",
                missing.join(" and "),
                names.namespace
            ),
        });
    }
    if let Some(elsewhere) = groups.iter().find_map(|g| g.vpc_id().filter(|v| *v != vpc)) {
        return Err(Error::InvalidArgument {
            flag: "--vpc",
            message: format!(
                "app `{}` is deployed in VPC {elsewhere}, not {vpc}: its namespace and the mount targets of its running Redis are there. To move it, run `down` (the race data is kept) and then `up` with the new --vpc/--subnets; to stay, pass --vpc {elsewhere}",
                names.app
            ),
        });
    }
    Ok(())
}

/// One ingress rule, in a form that compares.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Rule {
    protocol: String,
    from_port: i32,
    to_port: i32,
    source: Source,
}

/// Where a rule lets traffic come from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Source {
    /// An IPv4 range.
    Cidr(String),
    /// An IPv6 range.
    Ipv6(String),
    /// A managed prefix list (`pl-…`).
    PrefixList(String),
    /// Another security group.
    Group(String),
}

impl Source {
    /// An IPv4 or IPv6 range, told apart by its form.
    pub(crate) fn range(cidr: &str) -> Self {
        if cidr.contains(':') {
            Source::Ipv6(cidr.to_owned())
        } else {
            Source::Cidr(cidr.to_owned())
        }
    }
}

impl Rule {
    pub(crate) fn tcp(port: i32, source: Source) -> Self {
        Self {
            protocol: "tcp".into(),
            from_port: port,
            to_port: port,
            source,
        }
    }

    fn to_permission(&self, description: &str) -> IpPermission {
        let builder = IpPermission::builder()
            .ip_protocol(&self.protocol)
            .from_port(self.from_port)
            .to_port(self.to_port);
        match &self.source {
            Source::Cidr(cidr) => builder.ip_ranges(
                IpRange::builder()
                    .cidr_ip(cidr)
                    .description(description)
                    .build(),
            ),
            Source::Ipv6(cidr) => builder.ipv6_ranges(
                Ipv6Range::builder()
                    .cidr_ipv6(cidr)
                    .description(description)
                    .build(),
            ),
            Source::PrefixList(id) => builder.prefix_list_ids(
                PrefixListId::builder()
                    .prefix_list_id(id)
                    .description(description)
                    .build(),
            ),
            Source::Group(group) => builder.user_id_group_pairs(
                UserIdGroupPair::builder()
                    .group_id(group)
                    .description(description)
                    .build(),
            ),
        }
        .build()
    }
}

pub(crate) fn live_rules(group: &SecurityGroup) -> BTreeSet<Rule> {
    let mut rules = BTreeSet::new();
    for permission in group.ip_permissions() {
        let protocol = permission.ip_protocol().unwrap_or("-1").to_owned();
        let from_port = permission.from_port().unwrap_or(-1);
        let to_port = permission.to_port().unwrap_or(-1);
        let rule = |source| Rule {
            protocol: protocol.clone(),
            from_port,
            to_port,
            source,
        };
        for range in permission.ip_ranges() {
            if let Some(cidr) = range.cidr_ip() {
                rules.insert(rule(Source::Cidr(cidr.to_owned())));
            }
        }
        for range in permission.ipv6_ranges() {
            if let Some(cidr) = range.cidr_ipv6() {
                rules.insert(rule(Source::Ipv6(cidr.to_owned())));
            }
        }
        for list in permission.prefix_list_ids() {
            if let Some(id) = list.prefix_list_id() {
                rules.insert(rule(Source::PrefixList(id.to_owned())));
            }
        }
        for pair in permission.user_id_group_pairs() {
            if let Some(group) = pair.group_id() {
                rules.insert(rule(Source::Group(group.to_owned())));
            }
        }
    }
    rules
}

/// The app's security groups named `group_names` as they are now, in one call. In a VPC
/// (`up`) every group of those names is read, and one without the app's tags stops the
/// command: group names are unique per VPC, so it could be neither created nor adopted. Without
/// a VPC (`down`) only groups tagged with the app are read, so a same-named group of someone
/// else's in another VPC is left alone; one tagged with the app but not `managed-by` stops it.
pub(crate) async fn find_groups(
    d: &Deployment,
    vpc_id: Option<&str>,
    group_names: &[&str],
) -> Result<Vec<SecurityGroup>> {
    let names = &d.names;
    let mut request = d
        .clients
        .ec2
        .describe_security_groups()
        .filters(filter("group-name", group_names));
    request = match vpc_id {
        Some(vpc_id) => request.filters(filter("vpc-id", &[vpc_id])),
        None => request.filters(filter(&format!("tag:{TAG_APP}"), &[&names.app])),
    };
    let out = request.send().await.map_err(|e| {
        Error::aws(
            "DescribeSecurityGroups",
            format!("security groups of {}", names.app),
            e,
        )
    })?;
    for group in out.security_groups() {
        ownership::check_tags(
            d,
            || {
                format!(
                    "security group {} ({} in {})",
                    group.group_name().unwrap_or_default(),
                    group.group_id().unwrap_or_default(),
                    group.vpc_id().unwrap_or_default()
                )
            },
            group.tags(),
        )?;
    }
    Ok(out.security_groups().to_vec())
}

/// The app's groups in `network` as they are now: `api`, `redis`, the EFS mount targets' and
/// the VPC link's group (read together, as `up` needs all four).
pub async fn live_groups(d: &Deployment, network: &Network) -> Result<Vec<SecurityGroup>> {
    let names = &d.names;
    find_groups(
        d,
        Some(&network.vpc_id),
        &[
            &names.api_security_group,
            &names.redis_security_group,
            &names.efs_security_group,
            &names.vpc_link_security_group,
        ],
    )
    .await
}

/// Creates the groups if missing and converges their ingress rules; `live` is what
/// [`live_groups`] found.
pub async fn ensure_security_groups(
    d: &Deployment,
    network: &Network,
    live: &[SecurityGroup],
    api_port: i32,
    redis_port: i32,
    vpc_link_group: &str,
    allow_cidr: Option<&str>,
) -> Result<SecurityGroups> {
    let names = &d.names;
    let (api_id, api_live) = ensure_group(
        d,
        network,
        live,
        &names.api_security_group,
        "timing API tasks",
    )
    .await?;
    let (redis_id, redis_live) = ensure_group(
        d,
        network,
        live,
        &names.redis_security_group,
        "Redis task, reachable from the API only",
    )
    .await?;

    // Issue 10: API Gateway's VPC link is the way in; a direct range only when asked for.
    let api_rules: BTreeSet<Rule> = std::iter::once(Source::Group(vpc_link_group.to_owned()))
        .chain(allow_cidr.map(Source::range))
        .map(|source| Rule::tcp(api_port, source))
        .collect();
    let redis_rules = BTreeSet::from([Rule::tcp(redis_port, Source::Group(api_id.clone()))]);
    converge_rules(
        d,
        &names.api_security_group,
        &api_id,
        &api_live,
        &api_rules,
        "API port",
    )
    .await?;
    converge_rules(
        d,
        &names.redis_security_group,
        &redis_id,
        &redis_live,
        &redis_rules,
        "Redis from the API tasks",
    )
    .await?;
    Ok(SecurityGroups {
        api: api_id,
        redis: redis_id,
    })
}

/// The group `name` among `live_groups` (the app's groups in the VPC as they are now), created
/// without rules if missing: its ID and its ingress rules, for [`converge_rules`].
async fn ensure_group(
    d: &Deployment,
    network: &Network,
    live_groups: &[SecurityGroup],
    name: &str,
    description: &str,
) -> Result<(String, BTreeSet<Rule>)> {
    match live_groups.iter().find(|g| g.group_name() == Some(name)) {
        Some(group) => Ok((group_id(group)?, live_rules(group))),
        None => Ok((
            create_group(d, name, description, &network.vpc_id).await?,
            BTreeSet::new(),
        )),
    }
}

pub(crate) fn group_id(group: &SecurityGroup) -> Result<String> {
    group
        .group_id()
        .map(str::to_owned)
        .ok_or_else(|| Error::missing("security group", "GroupId"))
}

pub(crate) async fn create_group(
    d: &Deployment,
    name: &str,
    description: &str,
    vpc_id: &str,
) -> Result<String> {
    if !d.record("security-group", name, Action::Create, None) {
        return Ok(KNOWN_AFTER_APPLY.to_owned());
    }
    let mut tags = ownership::app_tags(&d.names, |k, v| Tag::builder().key(k).value(v).build());
    tags.push(Tag::builder().key("Name").value(name).build());
    let out = d
        .clients
        .ec2
        .create_security_group()
        .group_name(name)
        .description(description)
        .vpc_id(vpc_id)
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::SecurityGroup)
                .set_tags(Some(tags))
                .build(),
        )
        .send()
        .await
        .map_err(|e| Error::aws("CreateSecurityGroup", format!("security group {name}"), e))?;
    out.group_id()
        .map(str::to_owned)
        .ok_or_else(|| Error::missing(format!("security group {name}"), "GroupId"))
}

pub(crate) async fn converge_rules(
    d: &Deployment,
    name: &str,
    group_id: &str,
    live: &BTreeSet<Rule>,
    wanted: &BTreeSet<Rule>,
    description: &str,
) -> Result<()> {
    let missing: Vec<&Rule> = wanted.difference(live).collect();
    let extra: Vec<&Rule> = live.difference(wanted).collect();
    if missing.is_empty() && extra.is_empty() {
        d.record("ingress-rules", name, Action::Unchanged, None);
        return Ok(());
    }
    let detail = format!("{} to add, {} to revoke", missing.len(), extra.len());
    let action = if live.is_empty() {
        Action::Create
    } else {
        Action::Update
    };
    if !d.record("ingress-rules", name, action, Some(detail)) {
        return Ok(());
    }
    let ec2 = &d.clients.ec2;
    if !extra.is_empty() {
        ec2.revoke_security_group_ingress()
            .group_id(group_id)
            .set_ip_permissions(Some(
                extra.iter().map(|r| r.to_permission(description)).collect(),
            ))
            .send()
            .await
            .map_err(|e| {
                Error::aws(
                    "RevokeSecurityGroupIngress",
                    format!("security group {name}"),
                    e,
                )
            })?;
    }
    if !missing.is_empty() {
        let result = ec2
            .authorize_security_group_ingress()
            .group_id(group_id)
            .set_ip_permissions(Some(
                missing
                    .iter()
                    .map(|r| r.to_permission(description))
                    .collect(),
            ))
            .send()
            .await;
        match result {
            Ok(_) => {}
            // A concurrent run added it first: the state is what we want.
            Err(e) if crate::error::code_of(&e) == Some("InvalidPermission.Duplicate") => {}
            Err(e) => {
                return Err(Error::aws(
                    "AuthorizeSecurityGroupIngress",
                    format!("security group {name}"),
                    e,
                ));
            }
        }
    }
    Ok(())
}

/// Deletes the app's security groups: first the rules that reference another group (AWS
/// refuses to delete a group another group's rule points at), then the groups, retrying
/// while network interfaces of stopped tasks (or of a VPC link being deleted) still hold them.
pub async fn delete_security_groups(d: &Deployment, limit: Duration) -> Result<()> {
    let names = &d.names;
    let all = [
        &names.api_security_group,
        &names.redis_security_group,
        &names.vpc_link_security_group,
    ];
    let groups = find_groups(d, None, &all.map(String::as_str)).await?;
    let ec2 = &d.clients.ec2;
    for name in all {
        if !groups.iter().any(|g| g.group_name() == Some(name.as_str())) {
            d.record("security-group", name.as_str(), Action::Absent, None);
        }
    }
    for group in &groups {
        let referencing: Vec<IpPermission> = group
            .ip_permissions()
            .iter()
            .filter(|p| !p.user_id_group_pairs().is_empty())
            .cloned()
            .collect();
        if !referencing.is_empty() {
            ec2.revoke_security_group_ingress()
                .group_id(group_id(group)?)
                .set_ip_permissions(Some(referencing))
                .send()
                .await
                .map_err(|e| {
                    Error::aws(
                        "RevokeSecurityGroupIngress",
                        format!("security group {}", group.group_name().unwrap_or_default()),
                        e,
                    )
                })?;
        }
    }
    // Redis first: nothing references it.
    let mut ordered = groups.clone();
    ordered.sort_by_key(|g| g.group_name() != Some(names.redis_security_group.as_str()));
    for group in &ordered {
        let name = group.group_name().unwrap_or_default().to_owned();
        let id = group_id(group)?;
        delete_group(d, &name, &id, limit).await?;
    }
    Ok(())
}

/// Deletes one security group, retrying while network interfaces of stopped tasks or mount
/// targets still hold it (AWS releases them asynchronously); a group already gone is fine.
pub(crate) async fn delete_group(
    d: &Deployment,
    name: &str,
    id: &str,
    limit: Duration,
) -> Result<()> {
    d.record("security-group", name, Action::Delete, Some(id.to_owned()));
    let ec2 = &d.clients.ec2;
    retry_bounded(
        &format!("deleting security group {name}"),
        d.limit(limit),
        |e| e.aws_code() == Some("DependencyViolation"),
        || async {
            match ec2.delete_security_group().group_id(id).send().await {
                Ok(_) => Ok(()),
                Err(e) if crate::error::code_of(&e) == Some("InvalidGroup.NotFound") => Ok(()),
                Err(e) => Err(Error::aws(
                    "DeleteSecurityGroup",
                    format!("security group {name}"),
                    e,
                )),
            }
        },
    )
    .await
}

/// Creates the VPC link's group `<app>-vpc-link` if missing. It has no ingress rule: the link
/// only sends, and its (default) egress reaches the API tasks, whose group admits it.
/// `live_groups`: the app's groups in the VPC as they are now ([`live_groups`]).
pub async fn ensure_vpc_link_security_group(
    d: &Deployment,
    network: &Network,
    live_groups: &[SecurityGroup],
) -> Result<String> {
    let name = &d.names.vpc_link_security_group;
    let (id, live_rules) = ensure_group(
        d,
        network,
        live_groups,
        name,
        "API Gateway VPC link to the API tasks",
    )
    .await?;
    converge_rules(d, name, &id, &live_rules, &BTreeSet::new(), "none").await?;
    Ok(id)
}

/// NFS.
pub const NFS_PORT: i32 = 2049;

/// Creates the EFS mount targets' group `<app>-efs` if missing; its only ingress rule is NFS
/// from `redis`. `live_groups`: the app's groups in the VPC as they are now ([`live_groups`]).
pub async fn ensure_efs_security_group(
    d: &Deployment,
    network: &Network,
    live_groups: &[SecurityGroup],
    redis_group: &str,
) -> Result<String> {
    let name = &d.names.efs_security_group;
    let (id, live_rules) = ensure_group(
        d,
        network,
        live_groups,
        name,
        "EFS mount targets of Redis's data, NFS from the Redis task only",
    )
    .await?;
    let wanted = BTreeSet::from([Rule::tcp(NFS_PORT, Source::Group(redis_group.to_owned()))]);
    converge_rules(
        d,
        name,
        &id,
        &live_rules,
        &wanted,
        "NFS from the Redis task",
    )
    .await?;
    Ok(id)
}

/// Deletes `<app>-efs` (after the mount targets), retrying while their network interfaces
/// still hold it.
pub async fn delete_efs_security_group(d: &Deployment, limit: Duration) -> Result<()> {
    let name = &d.names.efs_security_group;
    let found = find_groups(d, None, &[name]).await?;
    let Some(group) = found.first() else {
        d.record("security-group", name.as_str(), Action::Absent, None);
        return Ok(());
    };
    let id = group_id(group)?;
    delete_group(d, name, &id, limit).await
}
