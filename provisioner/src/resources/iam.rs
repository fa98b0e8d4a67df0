//! IAM roles of the tasks: the execution role (ECS pulls images and writes logs with it:
//! AmazonECSTaskExecutionRolePolicy) and the API's task role (what the service's own code may
//! do in AWS: nothing unless `policies/api-task-role.json` says so, because Redis is found by
//! DNS, not through the AWS API). Trust and permission documents come from `policies/`.
//!
//! A role is converged exactly: trust policy, attached managed policies and inline policies
//! are compared with the wanted ones and only differences are changed.

use std::collections::BTreeSet;

use aws_sdk_iam::operation::list_attached_role_policies::ListAttachedRolePoliciesOutput;
use aws_sdk_iam::operation::list_role_policies::ListRolePoliciesOutput;
use aws_sdk_iam::types::Tag;
use serde_json::Value;

use aws_sdk_iam::error::{ProvideErrorMetadata, SdkError};

use crate::error::{Error, Result, absent_when, code_of};
use crate::plan::{Action, Deployment};

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
}

/// IAM returns policy documents URL-encoded; this reads either form.
pub fn parse_document(text: &str) -> Option<Value> {
    serde_json::from_str(text)
        .ok()
        .or_else(|| serde_json::from_str(&percent_decode(text)).ok())
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| text.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        if let Some(byte) = escaped {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The policies of a role as they are now: attached managed policy ARNs, and inline policies
/// by name with their documents.
type LivePolicies = (BTreeSet<String>, Vec<(String, Option<Value>)>);

/// IAM's "not found" (its errors are mostly unmodeled: matched by code).
fn no_such_entity<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    code_of(err) == Some("NoSuchEntity")
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
    let Some(role) = live else {
        if !d.record("iam-role", &spec.name, Action::Create, None) {
            return Ok(format!("arn:aws:iam::{}:role/{}", d.account, spec.name));
        }
        let tags: Vec<Tag> = d
            .names
            .tags()
            .into_iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::Invalid {
                path: resource.clone().into(),
                message: e.to_string(),
            })?;
        let created = match iam
            .create_role()
            .role_name(&spec.name)
            .description(&spec.description)
            .assume_role_policy_document(spec.trust_policy.to_string())
            .set_tags(Some(tags))
            .send()
            .await
        {
            Ok(out) => out.role,
            // Created by a concurrent run between our read and this call: converge it below.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_entity_already_exists_exception()) =>
            {
                None
            }
            Err(e) => return Err(Error::aws("CreateRole", resource, e)),
        };
        converge_policies(d, spec, &BTreeSet::new(), &[]).await?;
        return match created {
            Some(role) => Ok(role.arn),
            None => Ok(iam
                .get_role()
                .role_name(&spec.name)
                .send()
                .await
                .map_err(|e| Error::aws("GetRole", format!("IAM role {}", spec.name), e))?
                .role
                .map(|r| r.arn)
                .ok_or_else(|| Error::missing(format!("IAM role {}", spec.name), "Role"))?),
        };
    };

    let arn = role.arn.clone();
    let trust_matches = role
        .assume_role_policy_document()
        .and_then(parse_document)
        .as_ref()
        == Some(&spec.trust_policy);

    // The role was deleted between the reads (a concurrent `down`): its policies read as none.
    let (attached, inline) = policies.unwrap_or_default();

    let wanted_managed: BTreeSet<String> = spec.managed_policies.iter().cloned().collect();
    let inline_matches = inline.len() == spec.inline_policies.len()
        && spec.inline_policies.iter().all(|(name, doc)| {
            inline
                .iter()
                .any(|(n, d)| n == name && d.as_ref() == Some(doc))
        });
    if trust_matches && attached == wanted_managed && inline_matches {
        d.record("iam-role", &spec.name, Action::Unchanged, None);
        return Ok(arn);
    }
    let mut differences = Vec::new();
    if !trust_matches {
        differences.push("trust policy");
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
            .any(|(n, live)| n == name && live.as_ref() == Some(document));
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

/// Deletes a role after its policies (IAM refuses the other order).
pub async fn delete_role(d: &Deployment, name: &str) -> Result<()> {
    let iam = &d.clients.iam;
    let resource = format!("IAM role {name}");
    let Some((attached, inline)) = policy_lists(d, name).await? else {
        d.record("iam-role", name, Action::Absent, None);
        return Ok(());
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_url_encoded_documents() {
        let encoded = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%5D%7D";
        assert_eq!(
            parse_document(encoded),
            Some(serde_json::json!({"Version": "2012-10-17", "Statement": []}))
        );
        assert_eq!(
            parse_document(r#"{"a": 1}"#),
            Some(serde_json::json!({"a": 1}))
        );
    }
}
