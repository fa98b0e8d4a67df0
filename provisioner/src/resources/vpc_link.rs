//! The API Gateway VPC link (v2) `<app>` into the app's subnets. API Gateway reaches the API
//! tasks through the link's network interfaces, which carry the `<app>-vpc-link` security
//! group; the API tasks' group admits their port from it (both groups are in
//! [`crate::resources::network`]).
//!
//! VPC link names are not unique: the app's link is the one of its name carrying the app's
//! tags ([`ownership`]); one of its name without them is someone else's and stops the command.
//! A new link is PENDING for minutes on AWS while it places its interfaces: `up` waits until it
//! is AVAILABLE, within the command's `--timeout`. A link cannot move to other subnets or
//! groups: a live one that differs is refused before any write, not half-changed. On deletion
//! its interfaces go some time after the link; the group is deleted only once they are gone
//! (AWS refuses it while they hold it), also within `--timeout`.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::time::Duration;

use aws_sdk_apigatewayv2::types::{VpcLink, VpcLinkStatus};

use crate::error::{Error, Result, absent_when};
use crate::plan::{Action, Deployment, KNOWN_AFTER_APPLY};
use crate::resources::network::{self, Network};
use crate::resources::ownership::{self, Tags};
use crate::resources::poll_until;

/// How often a VPC link's status is read while waiting.
const POLL_INTERVAL: Duration = Duration::from_secs(5);
/// How long a new link may stay PENDING, or a deleted one (and its network interfaces) take
/// to go, before the provisioner gives up; AWS documents a few minutes.
pub const LINK_LIMIT: Duration = Duration::from_secs(15 * 60);

/// The app's tags as API Gateway takes them.
pub(crate) fn gateway_tags(d: &Deployment) -> HashMap<String, String> {
    d.names
        .tags()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
}

/// Whether API Gateway tags (absent: none) mark a resource as the app's.
pub(crate) fn is_ours(d: &Deployment, tags: Option<&HashMap<String, String>>) -> bool {
    ownership::is_ours(&d.names, tags.map(Tags::pairs).unwrap_or_default())
}

/// [`ownership::check`] for API Gateway tags (absent: none).
pub(crate) fn check_ours(
    d: &Deployment,
    resource: impl FnOnce() -> String,
    tags: Option<&HashMap<String, String>>,
) -> Result<()> {
    ownership::check(d, resource, tags.map(Tags::pairs).unwrap_or_default())
}

/// Every item of a paged API Gateway list (the SDK has no paginator for these): `page` reads
/// the page after a token and answers its items and the next token.
pub(crate) async fn all_pages<T, F, Fut>(mut page: F) -> Result<Vec<T>>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, Option<String>)>>,
{
    let mut items = Vec::new();
    let mut token = None;
    loop {
        let (found, next) = page(token).await?;
        items.extend(found);
        match next {
            Some(next) if !next.is_empty() => token = Some(next),
            _ => return Ok(items),
        }
    }
}

/// The app's one of `named`, the API Gateway resources of one of its names (API Gateway does
/// not keep names unique): the first carrying the app's tags. Without one, a resource of the
/// name is someone else's and the command stops naming it (`describe`).
pub(crate) fn the_apps<T>(
    d: &Deployment,
    named: Vec<T>,
    tags: impl Fn(&T) -> Option<&HashMap<String, String>>,
    describe: impl FnOnce(&T) -> String,
) -> Result<Option<T>> {
    let Some(found) = named.into_iter().min_by_key(|t| !is_ours(d, tags(t))) else {
        return Ok(None);
    };
    check_ours(d, || describe(&found), tags(&found))?;
    Ok(Some(found))
}

/// The app's VPC link, if it exists (one being deleted is gone for this purpose). A link of
/// the app's name without the app's tags is someone else's: the command stops and names it.
pub async fn find(d: &Deployment) -> Result<Option<VpcLink>> {
    let name = &d.names.vpc_link;
    let links = all_pages(|token| async move {
        let out = d
            .clients
            .apigateway
            .get_vpc_links()
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| Error::aws("GetVpcLinks", format!("VPC link {name}"), e))?;
        Ok::<_, Error>((out.items.unwrap_or_default(), out.next_token))
    })
    .await?;
    let named: Vec<VpcLink> = links
        .into_iter()
        .filter(|link| {
            link.name() == Some(name.as_str())
                && link.vpc_link_status() != Some(&VpcLinkStatus::Deleting)
        })
        .collect();
    the_apps(d, named, VpcLink::tags, |link| {
        format!(
            "API Gateway VPC link {name} ({})",
            link.vpc_link_id().unwrap_or_default()
        )
    })
}

/// Refuses, before any write, a live link in other subnets than `network`'s: a VPC link
/// cannot be moved, and replacing it would cut the app's address off.
pub fn check_network(d: &Deployment, live: Option<&VpcLink>, network: &Network) -> Result<()> {
    let Some(link) = live else {
        return Ok(());
    };
    let live_subnets: BTreeSet<&str> = link.subnet_ids().iter().map(String::as_str).collect();
    let subnets: BTreeSet<&str> = network.subnet_ids.iter().map(String::as_str).collect();
    if live_subnets == subnets {
        return Ok(());
    }
    Err(Error::InvalidArgument {
        flag: "--subnets",
        message: format!(
            "VPC link {} ({}) is in subnets {}, this run would need it in {}: a VPC link cannot be moved. Pass --subnets {} to keep it, or run `down` (the race data is kept) and then `up` with the new subnets",
            d.names.vpc_link,
            link.vpc_link_id().unwrap_or_default(),
            join(&live_subnets),
            join(&subnets),
            join(&live_subnets),
        ),
    })
}

/// Creates the link in the app's subnets with its group if missing (`live`: what [`find`]
/// read), and waits until it is AVAILABLE, within the command's `--timeout`; returns its ID.
pub async fn ensure(
    d: &Deployment,
    live: Option<&VpcLink>,
    net: &Network,
    group_id: &str,
) -> Result<String> {
    let name = &d.names.vpc_link;
    if let Some(link) = live {
        let id = link
            .vpc_link_id()
            .ok_or_else(|| Error::missing(format!("VPC link {name}"), "vpcLinkId"))?
            .to_owned();
        check_network(d, Some(link), net)?;
        let live_groups: BTreeSet<&str> = link
            .security_group_ids()
            .iter()
            .map(String::as_str)
            .collect();
        if group_id != KNOWN_AFTER_APPLY && live_groups != BTreeSet::from([group_id]) {
            return Err(Error::InvalidArgument {
                flag: "--vpc",
                message: format!(
                    "VPC link {name} ({id}) has security groups {}, the app's link group is {group_id}: a VPC link's groups cannot be changed. `provisioner down` then `up` rebuilds it",
                    join(&live_groups),
                ),
            });
        }
        let status = link.vpc_link_status().cloned();
        d.record(
            "vpc-link",
            name,
            Action::Unchanged,
            status
                .as_ref()
                .filter(|s| **s != VpcLinkStatus::Available)
                .map(|s| s.as_str().to_owned()),
        );
        if !d.dry_run && !serves(status.as_ref()) {
            wait_available(d, &id).await?;
        }
        return Ok(id);
    }
    if !d.record(
        "vpc-link",
        name,
        Action::Create,
        Some(format!("in {} subnet(s)", net.subnet_ids.len())),
    ) {
        return Ok(KNOWN_AFTER_APPLY.to_owned());
    }
    let created = d
        .clients
        .apigateway
        .create_vpc_link()
        .name(name)
        .set_subnet_ids(Some(net.subnet_ids.clone()))
        .security_group_ids(group_id)
        .set_tags(Some(gateway_tags(d)))
        .send()
        .await
        .map_err(|e| Error::aws("CreateVpcLink", format!("VPC link {name}"), e))?;
    let id = created
        .vpc_link_id()
        .ok_or_else(|| Error::missing(format!("VPC link {name}"), "vpcLinkId"))?
        .to_owned();
    if !serves(created.vpc_link_status()) {
        wait_available(d, &id).await?;
    }
    Ok(id)
}

/// AVAILABLE serves, and so does INACTIVE: an idle link AWS rebuilds on its next use.
fn serves(status: Option<&VpcLinkStatus>) -> bool {
    matches!(
        status,
        Some(VpcLinkStatus::Available | VpcLinkStatus::Inactive)
    )
}

fn join(items: &BTreeSet<&str>) -> String {
    items.iter().copied().collect::<Vec<_>>().join(",")
}

/// Polls the link until it serves, within [`LINK_LIMIT`] and the command's `--timeout`; a
/// FAILED link is reported with AWS's reason.
async fn wait_available(d: &Deployment, id: &str) -> Result<()> {
    let name = &d.names.vpc_link;
    let what = format!("VPC link {name} ({id}) to become AVAILABLE");
    poll_until(&what, d.limit(LINK_LIMIT), POLL_INTERVAL, || async {
        let link = d
            .clients
            .apigateway
            .get_vpc_link()
            .vpc_link_id(id)
            .send()
            .await
            .map_err(|e| Error::aws("GetVpcLink", format!("VPC link {name}"), e))?;
        match link.vpc_link_status() {
            Some(VpcLinkStatus::Failed) => Err(Error::Aws {
                operation: "GetVpcLink",
                resource: format!("VPC link {name} ({id})"),
                code: Some("FAILED".into()),
                message: link
                    .vpc_link_status_message()
                    .unwrap_or("the VPC link failed")
                    .to_owned(),
            }),
            status => Ok(serves(status).then_some(())),
        }
    })
    .await
}

/// Deletes the app's link and waits until it and the network interfaces it held in its
/// security group are gone, so that the group can be deleted next; every wait ends within
/// `limit` and the command's `--timeout`.
pub async fn delete(d: &Deployment, limit: Duration) -> Result<()> {
    let name = &d.names.vpc_link;
    let apigateway = &d.clients.apigateway;
    match find(d).await? {
        None => {
            d.record("vpc-link", name, Action::Absent, None);
        }
        Some(link) => {
            let id = link.vpc_link_id().unwrap_or_default().to_owned();
            d.record("vpc-link", name, Action::Delete, Some(id.clone()));
            let out = apigateway.delete_vpc_link().vpc_link_id(&id).send().await;
            let resource = format!("VPC link {name}");
            absent_when(
                out,
                |e| e.is_not_found_exception(),
                "DeleteVpcLink",
                &resource,
            )?;
            let what = format!("VPC link {name} ({id}) to be deleted");
            poll_until(&what, d.limit(limit), POLL_INTERVAL, || async {
                let out = apigateway.get_vpc_link().vpc_link_id(&id).send().await;
                // Done once the link is gone.
                let live =
                    absent_when(out, |e| e.is_not_found_exception(), "GetVpcLink", &resource)?;
                Ok(live.is_none().then_some(()))
            })
            .await?;
        }
    }
    wait_interfaces_gone(d, limit).await
}

/// Waits until no network interface is in the link's group any more (the group's own
/// ownership is checked by [`network::find_groups`]).
async fn wait_interfaces_gone(d: &Deployment, limit: Duration) -> Result<()> {
    let group = &d.names.vpc_link_security_group;
    let Some(group_id) = network::find_groups(d, None, &[group.as_str()])
        .await?
        .first()
        .and_then(|g| g.group_id().map(str::to_owned))
    else {
        return Ok(());
    };
    let what = format!("the VPC link's network interfaces to leave security group {group}");
    poll_until(&what, d.limit(limit), POLL_INTERVAL, || async {
        let out = d
            .clients
            .ec2
            .describe_network_interfaces()
            .filters(network::filter("group-id", &[&group_id]))
            .send()
            .await
            .map_err(|e| {
                Error::aws(
                    "DescribeNetworkInterfaces",
                    format!("network interfaces in {group}"),
                    e,
                )
            })?;
        Ok(out.network_interfaces().is_empty().then_some(()))
    })
    .await
}

/// moto answers AVAILABLE at once; AWS keeps a new link PENDING for minutes, or FAILED: the
/// wait is shown here against replayed answers (virtual time, no real sleeping).
#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_apigatewayv2::operation::create_vpc_link::CreateVpcLinkOutput;
    use aws_sdk_apigatewayv2::operation::get_vpc_link::GetVpcLinkOutput;
    use aws_sdk_apigatewayv2::operation::get_vpc_links::GetVpcLinksOutput;
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};

    /// A deployment whose API Gateway answers by `rules`, and whose `--timeout` is `timeout`.
    fn deployment(rules: &[&Rule], timeout: Duration) -> Deployment {
        let config = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("eu-north-1"))
            .build();
        let mut clients = crate::aws::Clients::from_sdk_config(&config, "eu-north-1".into());
        clients.apigateway = mock_client!(aws_sdk_apigatewayv2, RuleMode::Sequential, rules);
        Deployment::new(
            clients,
            crate::config::Names::new("timing"),
            "123456789012".into(),
            false,
        )
        .with_deadline(tokio::time::Instant::now() + timeout)
    }

    fn network() -> Network {
        Network {
            vpc_id: "vpc-1".into(),
            subnet_ids: vec!["subnet-a".into(), "subnet-b".into()],
            zones: Default::default(),
        }
    }

    fn none_yet() -> Rule {
        mock!(aws_sdk_apigatewayv2::Client::get_vpc_links)
            .then_output(|| GetVpcLinksOutput::builder().build())
    }

    fn created_pending() -> Rule {
        mock!(aws_sdk_apigatewayv2::Client::create_vpc_link).then_output(|| {
            CreateVpcLinkOutput::builder()
                .vpc_link_id("abc123")
                .vpc_link_status(VpcLinkStatus::Pending)
                .build()
        })
    }

    fn status(status: VpcLinkStatus) -> GetVpcLinkOutput {
        GetVpcLinkOutput::builder()
            .vpc_link_id("abc123")
            .vpc_link_status(status)
            .vpc_link_status_message("subnet-b: no free addresses")
            .build()
    }

    async fn ensure_new(d: &Deployment) -> Result<String> {
        let live = find(d).await?;
        ensure(d, live.as_ref(), &network(), "sg-1").await
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_link_is_waited_for_until_it_is_available() {
        let polls = mock!(aws_sdk_apigatewayv2::Client::get_vpc_link)
            .sequence()
            .output(|| status(VpcLinkStatus::Pending))
            .times(3)
            .output(|| status(VpcLinkStatus::Available))
            .build();
        let (list, create) = (none_yet(), created_pending());
        let d = deployment(&[&list, &create, &polls], Duration::from_secs(600));
        assert_eq!(ensure_new(&d).await.unwrap(), "abc123");
        assert_eq!(polls.num_calls(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_link_is_reported_with_aws_reason() {
        let polls = mock!(aws_sdk_apigatewayv2::Client::get_vpc_link)
            .then_output(|| status(VpcLinkStatus::Failed));
        let (list, create) = (none_yet(), created_pending());
        let d = deployment(&[&list, &create, &polls], Duration::from_secs(600));
        let err = ensure_new(&d).await.unwrap_err();
        assert!(err.to_string().contains("no free addresses"), "{err}");
    }

    /// The wait ends with the command's `--timeout` (60 s here), well before the link's own
    /// limit of 15 minutes.
    #[tokio::test(start_paused = true)]
    async fn a_link_pending_past_the_commands_timeout_is_a_timeout_naming_it() {
        let polls = mock!(aws_sdk_apigatewayv2::Client::get_vpc_link)
            .sequence()
            .output(|| status(VpcLinkStatus::Pending))
            .repeatedly()
            .build();
        let (list, create) = (none_yet(), created_pending());
        let d = deployment(&[&list, &create, &polls], Duration::from_secs(60));
        let started = tokio::time::Instant::now();
        let err = ensure_new(&d).await.unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
        assert!(err.to_string().contains("VPC link timing"), "{err}");
        assert_eq!(err.exit_code(), 3);
        assert!(started.elapsed() <= Duration::from_secs(60 + POLL_INTERVAL.as_secs()));
    }

    /// `down` waits for a deleted link to go (its network interfaces hold its group), but not
    /// past the command's `--timeout` (60 s here), whatever `limit` the caller gives.
    #[tokio::test(start_paused = true)]
    async fn a_link_still_deleting_at_the_commands_timeout_is_a_timeout_naming_it() {
        let list = mock!(aws_sdk_apigatewayv2::Client::get_vpc_links).then_output(|| {
            GetVpcLinksOutput::builder()
                .items(
                    VpcLink::builder()
                        .name("timing")
                        .vpc_link_id("abc123")
                        .tags("app", "timing")
                        .tags("managed-by", "provisioner")
                        .build(),
                )
                .build()
        });
        let deleted = mock!(aws_sdk_apigatewayv2::Client::delete_vpc_link).then_output(|| {
            aws_sdk_apigatewayv2::operation::delete_vpc_link::DeleteVpcLinkOutput::builder().build()
        });
        let polls = mock!(aws_sdk_apigatewayv2::Client::get_vpc_link)
            .sequence()
            .output(|| status(VpcLinkStatus::Deleting))
            .repeatedly()
            .build();
        let d = deployment(&[&list, &deleted, &polls], Duration::from_secs(60));
        let started = tokio::time::Instant::now();
        let err = delete(&d, Duration::from_secs(600)).await.unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
        assert!(err.to_string().contains("to be deleted"), "{err}");
        assert!(started.elapsed() <= Duration::from_secs(60 + POLL_INTERVAL.as_secs()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_same_named_link_without_the_apps_tags_is_refused_naming_it() {
        let list = mock!(aws_sdk_apigatewayv2::Client::get_vpc_links).then_output(|| {
            GetVpcLinksOutput::builder()
                .items(
                    VpcLink::builder()
                        .name("timing")
                        .vpc_link_id("xyz789")
                        .tags("app", "timing")
                        .build(),
                )
                .build()
        });
        let d = deployment(&[&list], Duration::from_secs(60));
        let err = find(&d).await.unwrap_err();
        assert!(matches!(err, Error::NotOurs { .. }), "{err}");
        assert!(
            err.to_string().contains("VPC link timing (xyz789)"),
            "{err}"
        );
    }
}
