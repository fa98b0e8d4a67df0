//! What `up` compares with what it wants, judged as AWS means it: policies AWS gives back in
//! another form are not drift; security-group rules of every kind (IPv6 ranges, prefix lists)
//! converge exactly; a network the app cannot use or move to is refused before any write.

use aws_sdk_ec2::types::{IpPermission, Ipv6Range, PrefixListId};
use serde_json::Value;

use crate::support::{Sdk, TestAccount};

/// A policy as AWS may give it back: one-element lists as plain strings, one statement as an
/// object instead of a list, and other white space.
fn another_form(document: &Value) -> String {
    fn collapse(value: &Value) -> Value {
        match value {
            Value::Array(items) if items.len() == 1 => collapse(&items[0]),
            Value::Array(items) => Value::Array(items.iter().map(collapse).collect()),
            Value::Object(map) => {
                Value::Object(map.iter().map(|(k, v)| (k.clone(), collapse(v))).collect())
            }
            other => other.clone(),
        }
    }
    serde_json::to_string_pretty(&collapse(document)).unwrap()
}

#[tokio::test]
async fn policies_given_back_in_another_form_are_not_drift() {
    let TestAccount {
        moto, proxy, image, ..
    } = TestAccount::start().await;
    proxy
        .provisioner(&["up", "--image", &image, "--no-wait"])
        .expect(0)
        .await;

    let sdk = Sdk::new(&moto).await;
    let iam = &sdk.iam;
    let parse = |text: &str| provisioner::policy::parse_document(text).unwrap();
    for (role, policy) in [
        ("timing-task-execution", "secrets"),
        ("timing-redis-task", "efs"),
    ] {
        let live = sdk.role_policy(role, policy).await;
        iam.put_role_policy()
            .role_name(role)
            .policy_name(policy)
            .policy_document(another_form(&live))
            .send()
            .await
            .unwrap();
        let trust = iam.get_role().role_name(role).send().await.unwrap();
        let trust = parse(trust.role().unwrap().assume_role_policy_document().unwrap());
        iam.update_assume_role_policy()
            .role_name(role)
            .policy_document(another_form(&trust))
            .send()
            .await
            .unwrap();
    }
    let efs = &sdk.efs;
    let fs = sdk.file_systems().await[0].file_system_id().to_owned();
    let policy = efs
        .describe_file_system_policy()
        .file_system_id(&fs)
        .send()
        .await
        .unwrap();
    efs.put_file_system_policy()
        .file_system_id(&fs)
        .policy(another_form(&parse(policy.policy().unwrap())))
        .send()
        .await
        .unwrap();
    let ecr = &sdk.ecr;
    let lifecycle = ecr
        .get_lifecycle_policy()
        .repository_name("timing/api")
        .send()
        .await
        .unwrap();
    ecr.put_lifecycle_policy()
        .repository_name("timing/api")
        // ECR's schema wants `rules` a list: only the layout differs here.
        .lifecycle_policy_text(
            serde_json::to_string_pretty(&parse(lifecycle.lifecycle_policy_text().unwrap()))
                .unwrap(),
        )
        .send()
        .await
        .unwrap();

    proxy.clear();
    proxy.provisioner(&["plan", "--keep-image"]).expect(0).await;
    proxy
        .provisioner(&["up", "--keep-image", "--no-wait"])
        .expect(0)
        .await;
    assert_eq!(proxy.mutating(), Vec::<String>::new());
}

fn rules_of(group: &aws_sdk_ec2::types::SecurityGroup) -> Vec<String> {
    let mut rules = Vec::new();
    for p in group.ip_permissions() {
        let ports = format!("{:?}-{:?}", p.from_port(), p.to_port());
        rules.extend(
            p.ip_ranges()
                .iter()
                .map(|r| format!("{ports} {}", r.cidr_ip().unwrap())),
        );
        rules.extend(
            p.ipv6_ranges()
                .iter()
                .map(|r| format!("{ports} {}", r.cidr_ipv6().unwrap())),
        );
        rules.extend(
            p.prefix_list_ids()
                .iter()
                .map(|l| format!("{ports} {}", l.prefix_list_id().unwrap())),
        );
        rules.extend(
            p.user_id_group_pairs()
                .iter()
                .map(|g| format!("{ports} {}", g.group_id().unwrap())),
        );
    }
    rules.sort();
    rules
}

/// Rules added by hand, of every source kind, are revoked (the VPC link's group stays the one
/// source of the API port); an IPv6 `--allow-cidr` is written as an IPv6 range beside it; and
/// once converged a second `up` changes no rule.
#[tokio::test]
async fn security_group_rules_converge_with_ipv6_ranges_and_prefix_lists() {
    let TestAccount {
        moto, proxy, image, ..
    } = TestAccount::start().await;
    proxy
        .provisioner(&["up", "--image", &image, "--no-wait"])
        .expect(0)
        .await;

    let sdk = Sdk::new(&moto).await;
    let ec2 = &sdk.ec2;
    let api_group = || async { sdk.group("timing-api").await.unwrap() };
    let group_id = api_group().await.group_id().unwrap().to_owned();
    // Issue 10: the API port's one wanted rule admits the VPC link's group.
    let link_group = sdk
        .group("timing-vpc-link")
        .await
        .unwrap()
        .group_id()
        .unwrap()
        .to_owned();
    let from_link = format!("Some(8080)-Some(8080) {link_group}");
    let prefix_list = ec2
        .create_managed_prefix_list()
        .prefix_list_name("office")
        .max_entries(5)
        .address_family("IPv4")
        .send()
        .await
        .unwrap()
        .prefix_list()
        .unwrap()
        .prefix_list_id()
        .unwrap()
        .to_owned();
    let by_hand = |port: i32| {
        IpPermission::builder()
            .ip_protocol("tcp")
            .from_port(port)
            .to_port(port)
    };
    ec2.authorize_security_group_ingress()
        .group_id(&group_id)
        .ip_permissions(
            by_hand(22)
                .ipv6_ranges(Ipv6Range::builder().cidr_ipv6("::/0").build())
                .build(),
        )
        .ip_permissions(
            by_hand(8080)
                .prefix_list_ids(PrefixListId::builder().prefix_list_id(&prefix_list).build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(rules_of(&api_group().await).len(), 3);

    proxy
        .provisioner(&["up", "--keep-image", "--no-wait"])
        .expect(0)
        .await;
    assert_eq!(
        rules_of(&api_group().await),
        std::slice::from_ref(&from_link)
    );

    proxy
        .provisioner(&["up", "--keep-image", "--no-wait", "--allow-cidr", "::/0"])
        .expect(0)
        .await;
    assert_eq!(
        rules_of(&api_group().await),
        ["Some(8080)-Some(8080) ::/0".to_owned(), from_link]
    );
    proxy.clear();
    proxy
        .provisioner(&["up", "--keep-image", "--no-wait", "--allow-cidr", "::/0"])
        .expect(0)
        .await;
    assert_eq!(proxy.mutating(), Vec::<String>::new());
}

/// Moving a deployed app to another VPC or to other subnets, or deploying into a VPC without
/// DNS hostnames, is refused with what to do instead, before any write.
#[tokio::test]
async fn a_network_the_app_cannot_use_or_move_to_is_refused() {
    let TestAccount {
        moto, proxy, image, ..
    } = TestAccount::start().await;
    proxy
        .provisioner(&["up", "--image", &image, "--no-wait"])
        .expect(0)
        .await;
    let sdk = Sdk::new(&moto).await;
    let (vpc, subnets) = sdk.create_vpc("10.30", true, &["eu-north-1a"]).await;
    let (no_dns_vpc, no_dns_subnets) = sdk.create_vpc("10.40", false, &["eu-north-1a"]).await;
    let default_subnet = sdk
        .service("api")
        .await
        .network_configuration()
        .unwrap()
        .awsvpc_configuration()
        .unwrap()
        .subnets()[0]
        .clone();

    proxy.clear();
    let cases: [(Vec<&str>, &str); 3] = [
        (
            vec!["--vpc", &vpc, "--subnets", &subnets[0]],
            "is deployed in VPC",
        ),
        (vec!["--subnets", &default_subnet], "runs in subnets"),
        (
            vec![
                "--app",
                "other",
                "--vpc",
                &no_dns_vpc,
                "--subnets",
                &no_dns_subnets[0],
            ],
            "enableDnsHostnames off",
        ),
    ];
    for (flags, why) in cases {
        let mut args = vec!["up", "--keep-image", "--no-wait"];
        args.extend(flags.iter().copied());
        let refused = proxy.provisioner(&args).run().await;
        assert_eq!(refused.code, 1, "{args:?}: {}", refused.stderr);
        assert!(refused.stderr.contains(why), "{args:?}: {}", refused.stderr);
        assert_eq!(proxy.mutating(), Vec::<String>::new(), "{args:?}");
    }
}
