//! IAM roles of the tasks: the execution role (ECS pulls images and writes logs with it:
//! AmazonECSTaskExecutionRolePolicy) and the API's task role (what the service's own code may
//! do in AWS: nothing unless `policies/api-task-role.json` says so, because Redis is found by
//! DNS, not through the AWS API). Trust and permission documents come from `policies/`.
//!
//! A role is converged exactly: trust policy, permissions boundary, attached managed policies
//! and inline policies are compared with the wanted ones and only differences are changed.
//!
//! Every role carries the permissions boundary `<app>-task-boundary`
//! (`policies/task-role-boundary.json`), a managed policy with the most any of the app's roles
//! may do, whatever its own policies say. The deploying role may create and change roles only
//! with that boundary (`policies/deployer.json`), and cannot change the boundary itself: so
//! a push that rewrites a role's policy cannot turn a task into an account administrator. The
//! provisioner creates the boundary when it is missing (with an administrator's rights; CI's
//! setup creates it once, `docs/ci.md`) and updates it when it differs and the caller may.

use std::collections::BTreeSet;

use aws_sdk_iam::operation::list_attached_role_policies::ListAttachedRolePoliciesOutput;
use aws_sdk_iam::operation::list_role_policies::ListRolePoliciesOutput;
use aws_sdk_iam::types::Tag;
use serde_json::Value;

use aws_sdk_iam::error::ProvideErrorMetadata;

use crate::error::{Error, Result, absent_when};
use crate::plan::{Action, Deployment};
use crate::policy::{parse_document, same_meaning};
use crate::resources::ownership;

/// The AWS managed policy every ECS task execution role needs.
pub fn execution_role_policy_arn(partition: &str) -> String {
    format!("arn:{partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy")
}

/// What a role should be.
#[derive(Debug, Clone)]
pub struct RoleSpec {
    /// Role name.
    pub name: String,
    /// Shown in the console.
    pub description: String,
    /// Who may assume it.
    pub trust_policy: Value,
    /// ARNs of managed policies to attach.
    pub managed_policies: Vec<String>,
    /// Inline policies by name.
    pub inline_policies: Vec<(String, Value)>,
    /// ARN of the managed policy that bounds what the role may do ([`ensure_boundary`]).
    pub permissions_boundary: String,
}

/// The ARN of the role `name` in `account`, in `region`'s partition.
pub fn role_arn(region: &str, account: &str, name: &str) -> String {
    let partition = crate::aws::partition_of(region);
    format!("arn:{partition}:iam::{account}:role/{name}")
}

/// The ARN of the app's permissions boundary policy.
pub fn boundary_arn(d: &Deployment) -> String {
    format!(
        "arn:{}:iam::{}:policy/{}",
        crate::aws::partition_of(d.region()),
        d.account,
        d.names.task_role_boundary
    )
}

/// Creates the permissions boundary policy when it is missing, or makes `document` its
/// default version when it means something else; returns its ARN.
pub async fn ensure_boundary(d: &Deployment, document: &Value) -> Result<String> {
    let iam = &d.clients.iam;
    let name = &d.names.task_role_boundary;
    let arn = boundary_arn(d);
    let resource = format!("IAM policy {name}");
    let live = absent_when(
        iam.get_policy().policy_arn(&arn).send().await,
        no_such_entity,
        "GetPolicy",
        &resource,
    )?
    .and_then(|out| out.policy);
    let Some(policy) = live else {
        if !d.record(
            "iam-policy",
            name.as_str(),
            Action::Create,
            Some("permissions boundary of the app's roles".into()),
        ) {
            return Ok(arn);
        }
        let tags = ownership::sdk_tags(&d.names, |k, v| Tag::builder().key(k).value(v).build())
            .map_err(Error::request(resource.clone()))?;
        let created = iam
            .create_policy()
            .policy_name(name)
            .description(format!(
                "the most any role of app {} may do (its permissions boundary)",
                d.names.app
            ))
            .policy_document(document.to_string())
            .set_tags(Some(tags))
            .send()
            .await;
        return match created {
            Ok(_) => Ok(arn),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_entity_already_exists_exception()) =>
            {
                Ok(arn)
            }
            Err(e) => Err(Error::aws("CreatePolicy", resource, e)),
        };
    };
    ownership::check_tags(d, || resource.clone(), policy.tags())?;
    let version = policy.default_version_id().unwrap_or("v1");
    let live_document = iam
        .get_policy_version()
        .policy_arn(&arn)
        .version_id(version)
        .send()
        .await
        .map_err(|e| Error::aws("GetPolicyVersion", resource.clone(), e))?
        .policy_version
        .and_then(|v| v.document);
    if crate::policy::matches_live(live_document.as_deref(), document) {
        d.record("iam-policy", name.as_str(), Action::Unchanged, None);
        return Ok(arn);
    }
    if !d.record(
        "iam-policy",
        name.as_str(),
        Action::Update,
        Some("policies/task-role-boundary.json changed".into()),
    ) {
        return Ok(arn);
    }
    // A managed policy keeps at most five versions: the oldest other one makes room.
    let versions = iam
        .list_policy_versions()
        .policy_arn(&arn)
        .send()
        .await
        .map_err(|e| Error::aws("ListPolicyVersions", resource.clone(), e))?;
    if versions.versions().len() >= 5
        && let Some(oldest) = versions
            .versions()
            .iter()
            .filter(|v| !v.is_default_version())
            .min_by_key(|v| v.create_date().map(|d| d.secs()))
            .and_then(|v| v.version_id())
    {
        iam.delete_policy_version()
            .policy_arn(&arn)
            .version_id(oldest)
            .send()
            .await
            .map_err(|e| Error::aws("DeletePolicyVersion", resource.clone(), e))?;
    }
    iam.create_policy_version()
        .policy_arn(&arn)
        .policy_document(document.to_string())
        .set_as_default(true)
        .send()
        .await
        .map_err(|e| Error::aws("CreatePolicyVersion", resource, e))?;
    Ok(arn)
}

/// The policies of a role as they are now: attached managed policy ARNs, and inline policies
/// by name with their documents.
type LivePolicies = (BTreeSet<String>, Vec<(String, Option<Value>)>);

/// IAM's "not found" (its errors are mostly unmodeled: matched by code).
fn no_such_entity<E: ProvideErrorMetadata>(err: &E) -> bool {
    err.code() == Some("NoSuchEntity")
}

/// A role's attached managed policies and inline policy names, both read at once; `None`
/// when the role does not exist.
async fn policy_lists(
    d: &Deployment,
    name: &str,
) -> Result<Option<(ListAttachedRolePoliciesOutput, ListRolePoliciesOutput)>> {
    let iam = &d.clients.iam;
    let resource = format!("IAM role {name}");
    let (attached, inline) = tokio::try_join!(
        async {
            let out = iam
                .list_attached_role_policies()
                .role_name(name)
                .send()
                .await;
            absent_when(out, no_such_entity, "ListAttachedRolePolicies", &resource)
        },
        async {
            let out = iam.list_role_policies().role_name(name).send().await;
            absent_when(out, no_such_entity, "ListRolePolicies", &resource)
        },
    )?;
    Ok(attached.zip(inline))
}

/// Reads a role's policies: the two lists at once, then every inline document at once.
/// `None` when the role does not exist.
async fn live_policies(d: &Deployment, name: &str) -> Result<Option<LivePolicies>> {
    let iam = &d.clients.iam;
    let resource = format!("IAM role {name}");
    let Some((attached, inline_names)) = policy_lists(d, name).await? else {
        return Ok(None);
    };
    let attached: BTreeSet<String> = attached
        .attached_policies()
        .iter()
        .filter_map(|p| p.policy_arn().map(str::to_owned))
        .collect();
    let inline = futures::future::try_join_all(inline_names.policy_names().iter().map(|policy| {
        let resource = &resource;
        async move {
            let document = iam
                .get_role_policy()
                .role_name(name)
                .policy_name(policy)
                .send()
                .await
                .map_err(|e| {
                    Error::aws("GetRolePolicy", format!("{resource} policy {policy}"), e)
                })?;
            Ok::<_, Error>((policy.clone(), parse_document(document.policy_document())))
        }
    }))
    .await?;
    Ok(Some((attached, inline)))
}

/// Creates or converges a role; returns its ARN. The role and its policies are read
/// concurrently: a converged role costs two round trips, not one per call.
pub async fn ensure_role(d: &Deployment, spec: &RoleSpec) -> Result<String> {
    let iam = &d.clients.iam;
    let resource = format!("IAM role {}", spec.name);
    let (live, policies) = tokio::try_join!(
        async {
            let out = iam.get_role().role_name(&spec.name).send().await;
            absent_when(out, no_such_entity, "GetRole", &resource)
        },
        live_policies(d, &spec.name),
    )?;
    let live = live.and_then(|out| out.role);
    if let Some(role) = &live {
        ownership::check_tags(d, || resource.clone(), role.tags())?;
    }
    let Some(role) = live else {
        if !d.record("iam-role", &spec.name, Action::Create, None) {
            return Ok(role_arn(d.region(), &d.account, &spec.name));
        }
        let tags = ownership::sdk_tags(&d.names, |k, v| Tag::builder().key(k).value(v).build())
            .map_err(Error::request(resource.clone()))?;
        let created = match iam
            .create_role()
            .role_name(&spec.name)
            .description(&spec.description)
            .assume_role_policy_document(spec.trust_policy.to_string())
            .permissions_boundary(&spec.permissions_boundary)
            .set_tags(Some(tags))
            .send()
            .await
        {
            Ok(out) => out.role,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_entity_already_exists_exception()) =>
            {
                None
            }
            Err(e) => return Err(Error::aws("CreateRole", resource, e)),
        };
        let arn = match created {
            Some(role) => role.arn,
            // Created since the read (by a concurrent run, or by someone else): its policies
            // are set only if it is the app's.
            None => {
                let role = iam
                    .get_role()
                    .role_name(&spec.name)
                    .send()
                    .await
                    .map_err(|e| Error::aws("GetRole", resource.clone(), e))?
                    .role
                    .ok_or_else(|| Error::missing(resource.clone(), "Role"))?;
                ownership::check_tags(d, || resource.clone(), role.tags())?;
                role.arn
            }
        };
        converge_policies(d, spec, &BTreeSet::new(), &[]).await?;
        return Ok(arn);
    };

    let arn = role.arn.clone();
    let trust_matches = role
        .assume_role_policy_document()
        .and_then(parse_document)
        .is_some_and(|live| same_meaning(&live, &spec.trust_policy));

    let boundary_matches = role
        .permissions_boundary()
        .and_then(|b| b.permissions_boundary_arn())
        == Some(spec.permissions_boundary.as_str());

    // The role was deleted between the reads (a concurrent `down`): its policies read as none.
    let (attached, inline) = policies.unwrap_or_default();

    let wanted_managed: BTreeSet<String> = spec.managed_policies.iter().cloned().collect();
    let inline_matches = inline.len() == spec.inline_policies.len()
        && spec.inline_policies.iter().all(|(name, doc)| {
            inline
                .iter()
                .any(|(n, d)| n == name && d.as_ref().is_some_and(|d| same_meaning(d, doc)))
        });
    if trust_matches && boundary_matches && attached == wanted_managed && inline_matches {
        d.record("iam-role", &spec.name, Action::Unchanged, None);
        return Ok(arn);
    }
    let mut differences = Vec::new();
    if !trust_matches {
        differences.push("trust policy");
    }
    if !boundary_matches {
        differences.push("permissions boundary");
    }
    if attached != wanted_managed {
        differences.push("managed policies");
    }
    if !inline_matches {
        differences.push("inline policies");
    }
    if !d.record(
        "iam-role",
        &spec.name,
        Action::Update,
        Some(differences.join(", ")),
    ) {
        return Ok(arn);
    }
    if !trust_matches {
        iam.update_assume_role_policy()
            .role_name(&spec.name)
            .policy_document(spec.trust_policy.to_string())
            .send()
            .await
            .map_err(|e| Error::aws("UpdateAssumeRolePolicy", resource.clone(), e))?;
    }
    // The boundary first: the deployer may change a role's policies only once it has it.
    if !boundary_matches {
        iam.put_role_permissions_boundary()
            .role_name(&spec.name)
            .permissions_boundary(&spec.permissions_boundary)
            .send()
            .await
            .map_err(|e| Error::aws("PutRolePermissionsBoundary", resource.clone(), e))?;
    }
    converge_policies(d, spec, &attached, &inline).await?;
    Ok(arn)
}

/// Attaches and puts what is wanted, detaches and deletes what is not.
async fn converge_policies(
    d: &Deployment,
    spec: &RoleSpec,
    attached: &BTreeSet<String>,
    live_inline: &[(String, Option<Value>)],
) -> Result<()> {
    let iam = &d.clients.iam;
    let resource = format!("IAM role {}", spec.name);
    for arn in spec
        .managed_policies
        .iter()
        .filter(|arn| !attached.contains(*arn))
    {
        iam.attach_role_policy()
            .role_name(&spec.name)
            .policy_arn(arn)
            .send()
            .await
            .map_err(|e| Error::aws("AttachRolePolicy", format!("{resource} ({arn})"), e))?;
    }
    for arn in attached
        .iter()
        .filter(|arn| !spec.managed_policies.contains(*arn))
    {
        iam.detach_role_policy()
            .role_name(&spec.name)
            .policy_arn(arn)
            .send()
            .await
            .map_err(|e| Error::aws("DetachRolePolicy", format!("{resource} ({arn})"), e))?;
    }
    for (name, _) in live_inline
        .iter()
        .filter(|(name, _)| !spec.inline_policies.iter().any(|(n, _)| n == name))
    {
        iam.delete_role_policy()
            .role_name(&spec.name)
            .policy_name(name)
            .send()
            .await
            .map_err(|e| Error::aws("DeleteRolePolicy", format!("{resource} policy {name}"), e))?;
    }
    for (name, document) in &spec.inline_policies {
        let up_to_date = live_inline
            .iter()
            .any(|(n, live)| n == name && live.as_ref().is_some_and(|l| same_meaning(l, document)));
        if !up_to_date {
            iam.put_role_policy()
                .role_name(&spec.name)
                .policy_name(name)
                .policy_document(document.to_string())
                .send()
                .await
                .map_err(|e| Error::aws("PutRolePolicy", format!("{resource} policy {name}"), e))?;
        }
    }
    Ok(())
}

/// Deletes a role of the app after its policies (IAM refuses the other order).
pub async fn delete_role(d: &Deployment, name: &str) -> Result<()> {
    let iam = &d.clients.iam;
    let resource = format!("IAM role {name}");
    let (role, lists) = tokio::try_join!(
        async {
            let out = iam.get_role().role_name(name).send().await;
            absent_when(out, no_such_entity, "GetRole", &resource)
        },
        policy_lists(d, name),
    )?;
    let (Some(role), Some((attached, inline))) = (role.and_then(|out| out.role), lists) else {
        d.record("iam-role", name, Action::Absent, None);
        return Ok(());
    };
    ownership::check_tags(d, || resource.clone(), role.tags())?;
    d.record("iam-role", name, Action::Delete, None);
    for policy in attached.attached_policies() {
        if let Some(arn) = policy.policy_arn() {
            iam.detach_role_policy()
                .role_name(name)
                .policy_arn(arn)
                .send()
                .await
                .map_err(|e| Error::aws("DetachRolePolicy", format!("{resource} ({arn})"), e))?;
        }
    }
    for policy in inline.policy_names() {
        iam.delete_role_policy()
            .role_name(name)
            .policy_name(policy)
            .send()
            .await
            .map_err(|e| {
                Error::aws("DeleteRolePolicy", format!("{resource} policy {policy}"), e)
            })?;
    }
    absent_when(
        iam.delete_role().role_name(name).send().await,
        no_such_entity,
        "DeleteRole",
        &resource,
    )
    .map(|_| ())
}
