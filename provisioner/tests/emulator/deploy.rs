//! What a cold `up` creates, checked through the SDK one part at a time (each test deploys on
//! an emulator of its own), and what a second `up` or a changed task-definition file does.

use std::collections::BTreeSet;

use super::{has_app_tags, tag_map};
use crate::support::{ACCOUNT, Sdk, TestAccount, copy_of_files};

const REPOSITORY_URI: &str = "123456789012.dkr.ecr.eu-north-1.amazonaws.com/timing/api";

/// `plan` on an empty account lists changes (exit 2) and makes no mutating call; `up` then
/// reports the account, a change, every resource kind created, and the repository the image
/// was pushed to as updated (it existed: `up` converged it).
#[tokio::test]
async fn plan_mutates_nothing_and_up_reports_every_resource_it_creates() {
    let aws = TestAccount::start().await;
    let proxy = &aws.proxy;

    let plan = aws.provisioner(&["plan"]).json().expect(2).await;
    assert!(plan.json()["changed"].as_bool().unwrap());
    assert!(
        proxy.mutating().is_empty(),
        "plan mutated: {:?}",
        proxy.mutating()
    );

    let up = aws
        .provisioner(&["up", "--image", &aws.image, "--timeout", "60s"])
        .json()
        .expect(0)
        .await;
    let report = up.json();
    assert_eq!(report["account"], ACCOUNT);
    assert!(report["changed"].as_bool().unwrap());
    let created: BTreeSet<&str> = report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["action"] == "create")
        .map(|c| c["kind"].as_str().unwrap())
        .collect();
    let repository_change = report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "ecr-repository");
    assert_eq!(repository_change.unwrap()["action"], "update", "{report:#}");
    for kind in [
        "security-group",
        "ingress-rules",
        "iam-role",
        "log-group",
        "ecs-cluster",
        "dns-namespace",
        "discovery-service",
        "task-definition",
        "ecs-service",
        "vpc-link",
        "http-api",
        "api-integration",
        "api-route",
        "api-stage",
    ] {
        assert!(created.contains(kind), "{kind} not created: {report:#}");
    }
}

/// Network: the groups in the default VPC; `api` open on 8080 to the VPC link's group only
/// (no CIDR without `--allow-cidr`), `redis` on 6379 from the `api` group only and to no CIDR.
#[tokio::test]
async fn the_api_is_open_on_8080_to_the_vpc_link_only_and_redis_only_to_the_api() {
    let aws = TestAccount::start().await;
    aws.deploy().await;
    let sdk = Sdk::new(&aws.moto).await;

    let api_group = sdk.app_group("timing-api").await;
    let redis_group = sdk.app_group("timing-redis").await;
    assert_eq!(api_group.vpc_id(), Some(sdk.default_vpc().await.as_str()));
    let api_rules = api_group.ip_permissions();
    assert_eq!(api_rules.len(), 1);
    assert_eq!(
        (
            api_rules[0].ip_protocol(),
            api_rules[0].from_port(),
            api_rules[0].to_port()
        ),
        (Some("tcp"), Some(8080), Some(8080))
    );
    assert!(
        api_rules[0].ip_ranges().is_empty() && api_rules[0].ipv6_ranges().is_empty(),
        "no CIDR without --allow-cidr"
    );
    let link_group = sdk.group("timing-vpc-link").await.unwrap();
    assert_eq!(
        api_rules[0].user_id_group_pairs()[0].group_id(),
        link_group.group_id()
    );
    let redis_rules = redis_group.ip_permissions();
    assert_eq!(redis_rules.len(), 1);
    assert_eq!(
        (redis_rules[0].from_port(), redis_rules[0].to_port()),
        (Some(6379), Some(6379))
    );
    assert!(
        redis_rules[0].ip_ranges().is_empty(),
        "redis must not be open to any CIDR"
    );
    assert_eq!(
        redis_rules[0].user_id_group_pairs()[0].group_id(),
        api_group.group_id()
    );
}

/// Cloud Map: a private DNS namespace in the default VPC (moto keeps no VPC on the zone, so
/// the VPC is checked in the request) and `redis` with a short-TTL A record.
#[tokio::test]
async fn redis_has_a_short_lived_dns_name_in_a_private_namespace_of_the_vpc() {
    let aws = TestAccount::start().await;
    aws.deploy().await;
    let sdk = Sdk::new(&aws.moto).await;
    let default_vpc = sdk.default_vpc().await;

    let namespace = sdk.namespace("timing.local").await;
    assert_eq!(
        namespace.r#type(),
        Some(&aws_sdk_servicediscovery::types::NamespaceType::DnsPrivate)
    );
    let create_namespace = aws
        .proxy
        .calls()
        .into_iter()
        .find(|c| c.operation == "CreatePrivateDnsNamespace")
        .unwrap();
    assert!(
        create_namespace
            .body
            .contains(&format!("\"Vpc\":\"{default_vpc}\"")),
        "{}",
        create_namespace.body
    );
    let redis_discovery = sdk.discovery_service("redis").await;
    let record = &redis_discovery.dns_config().unwrap().dns_records()[0];
    assert_eq!(
        (record.r#type(), record.ttl()),
        (&aws_sdk_servicediscovery::types::RecordType::A, 10)
    );
}

/// ECS: a tagged cluster; both services on Fargate, one task each, with public IPs and their
/// own security group; both registered in Cloud Map (the API's in `api`, by container and
/// port: see gateway.rs).
#[tokio::test]
async fn both_services_run_on_fargate_in_a_tagged_cluster_with_their_own_groups() {
    let aws = TestAccount::start().await;
    aws.deploy().await;
    let sdk = Sdk::new(&aws.moto).await;
    let api_group = sdk.app_group("timing-api").await;
    let redis_group = sdk.app_group("timing-redis").await;
    let redis_discovery = sdk.discovery_service("redis").await;

    let clusters = sdk
        .ecs
        .describe_clusters()
        .clusters("timing")
        .include(aws_sdk_ecs::types::ClusterField::Tags)
        .send()
        .await
        .unwrap();
    let cluster = &clusters.clusters()[0];
    assert_eq!(cluster.status(), Some("ACTIVE"));
    assert!(has_app_tags(
        &tag_map(
            cluster
                .tags()
                .iter()
                .map(|t| (t.key().unwrap(), t.value().unwrap()))
        ),
        "timing"
    ));
    let services = sdk.services(&["redis", "api"]).await;
    let (redis, api) = (&services[0], &services[1]);
    assert_eq!(
        redis.service_registries()[0].registry_arn(),
        redis_discovery.arn()
    );
    assert_eq!(api.service_registries().len(), 1);
    for (svc, group) in [(redis, &redis_group), (api, &api_group)] {
        assert_eq!(
            svc.launch_type(),
            Some(&aws_sdk_ecs::types::LaunchType::Fargate)
        );
        assert_eq!(svc.desired_count(), 1);
        let vpc = svc
            .network_configuration()
            .unwrap()
            .awsvpc_configuration()
            .unwrap();
        assert_eq!(
            vpc.assign_public_ip(),
            Some(&aws_sdk_ecs::types::AssignPublicIp::Enabled)
        );
        assert_eq!(
            vpc.security_groups(),
            [group.group_id().unwrap().to_owned()]
        );
    }
}

/// Task definitions: the API's image by digest (so the revision changes exactly when the
/// image does), Redis reached by its DNS name, the roles filled in; Redis's persistence
/// command and its log group.
#[tokio::test]
async fn task_definitions_name_the_image_by_digest_and_redis_by_its_dns_name() {
    let aws = TestAccount::start().await;
    aws.deploy().await;
    let sdk = Sdk::new(&aws.moto).await;

    let api_task = sdk.task_definition("timing-api").await;
    let container = &api_task.container_definitions()[0];
    assert_eq!(
        container.image(),
        Some(format!("{REPOSITORY_URI}@{}", aws.digest).as_str())
    );
    let env: Vec<(&str, &str)> = container
        .environment()
        .iter()
        .map(|e| (e.name().unwrap(), e.value().unwrap()))
        .collect();
    assert!(
        env.contains(&("REDIS_URL", "redis://redis.timing.local:6379")),
        "{env:?}"
    );
    assert_eq!(
        api_task.execution_role_arn(),
        Some(format!("arn:aws:iam::{ACCOUNT}:role/timing-task-execution").as_str())
    );
    assert_eq!(
        api_task.task_role_arn(),
        Some(format!("arn:aws:iam::{ACCOUNT}:role/timing-api-task").as_str())
    );
    let redis_task = sdk.task_definition("timing-redis").await;
    let redis_container = &redis_task.container_definitions()[0];
    assert_eq!(
        redis_container.command(),
        [
            "redis-server",
            "--dir",
            "/data",
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "20",
            "1",
            "--protected-mode",
            "no"
        ]
    );
    assert_eq!(
        redis_container
            .log_configuration()
            .unwrap()
            .options()
            .unwrap()["awslogs-group"],
        "/ecs/timing"
    );
}

/// IAM: the execution role has exactly the managed execution policy; the API's role has no
/// policy at all (Redis is found by DNS, so none of the original's ECS/EC2/Cloud Map rights),
/// carries the app's tags and trusts ECS tasks only.
#[tokio::test]
async fn the_execution_role_has_only_the_managed_policy_and_the_api_role_none() {
    let aws = TestAccount::start().await;
    aws.deploy().await;
    let iam = aws_sdk_iam::Client::new(&aws.sdk_config().await);

    let attached = iam
        .list_attached_role_policies()
        .role_name("timing-task-execution")
        .send()
        .await
        .unwrap();
    let attached: Vec<&str> = attached
        .attached_policies()
        .iter()
        .map(|p| p.policy_arn().unwrap())
        .collect();
    assert_eq!(
        attached,
        ["arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"]
    );
    assert!(
        iam.list_attached_role_policies()
            .role_name("timing-api-task")
            .send()
            .await
            .unwrap()
            .attached_policies()
            .is_empty()
    );
    assert!(
        iam.list_role_policies()
            .role_name("timing-api-task")
            .send()
            .await
            .unwrap()
            .policy_names()
            .is_empty()
    );
    let role = iam
        .get_role()
        .role_name("timing-api-task")
        .send()
        .await
        .unwrap();
    let role = role.role().unwrap();
    assert!(has_app_tags(
        &tag_map(role.tags().iter().map(|t| (t.key(), t.value()))),
        "timing"
    ));
    let trust = role.assume_role_policy_document().unwrap();
    assert!(trust.contains("ecs-tasks.amazonaws.com"), "{trust}");
}

/// Logs are kept 7 days and tagged; the image repository scans on push and prunes old images
/// by a lifecycle policy.
#[tokio::test]
async fn logs_are_kept_a_week_and_images_are_scanned_and_pruned() {
    let aws = TestAccount::start().await;
    aws.deploy().await;
    let config = aws.sdk_config().await;
    let logs = aws_sdk_cloudwatchlogs::Client::new(&config);
    let ecr = aws_sdk_ecr::Client::new(&config);

    let groups = logs
        .describe_log_groups()
        .log_group_name_prefix("/ecs/timing")
        .send()
        .await
        .unwrap();
    assert_eq!(groups.log_groups()[0].retention_in_days(), Some(7));
    // moto implements the older ListTagsLogGroup, not ListTagsForResource.
    #[allow(deprecated)]
    let log_tags = logs
        .list_tags_log_group()
        .log_group_name("/ecs/timing")
        .send()
        .await
        .unwrap();
    assert!(has_app_tags(
        &tag_map(
            log_tags
                .tags()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
        ),
        "timing"
    ));
    let repos = ecr
        .describe_repositories()
        .repository_names("timing/api")
        .send()
        .await
        .unwrap();
    assert!(
        repos.repositories()[0]
            .image_scanning_configuration()
            .unwrap()
            .scan_on_push()
    );
    let lifecycle = ecr
        .get_lifecycle_policy()
        .repository_name("timing/api")
        .send()
        .await
        .unwrap();
    assert!(
        lifecycle
            .lifecycle_policy_text()
            .unwrap()
            .contains("imageCountMoreThan")
    );
}

/// A second `up` changes nothing, makes no mutating call (seen by the proxy and counted by
/// the binary), and says so; `plan` then exits 0.
#[tokio::test]
async fn a_second_up_makes_no_mutating_call_and_says_so() {
    let aws = TestAccount::start().await;
    aws.deploy().await;
    let proxy = &aws.proxy;

    proxy.clear();
    let again = aws
        .provisioner(&["up", "--keep-image"])
        .json()
        .expect(0)
        .await;
    assert_eq!(proxy.mutating(), Vec::<String>::new());
    let again = again.json();
    assert_eq!(again["changed"], false);
    assert_eq!(again["aws_calls"]["mutating"], 0);
    let text = aws.provisioner(&["up", "--keep-image"]).expect(0).await;
    assert!(text.stdout.contains("no changes"), "{}", text.stdout);
    aws.provisioner(&["plan"]).expect(0).await;
}

/// A changed task-definition file gives exactly one new revision and one service update.
#[tokio::test]
async fn a_changed_task_definition_makes_one_revision_and_one_service_update() {
    let aws = TestAccount::start().await;
    let files = copy_of_files();
    aws.provisioner(&["up", "--image", &aws.image])
        .root(files.path())
        .expect(0)
        .await;

    let path = files.path().join("task-definitions/api.json");
    let changed = std::fs::read_to_string(&path).unwrap().replace(
        "\"RUST_LOG\", \"value\": \"info\"",
        "\"RUST_LOG\", \"value\": \"debug\"",
    );
    std::fs::write(&path, changed).unwrap();
    let plan = aws
        .provisioner(&["plan"])
        .root(files.path())
        .expect(2)
        .await;
    assert!(plan.stdout.contains("timing-api:1 → 2"), "{}", plan.stdout);

    aws.proxy.clear();
    aws.provisioner(&["up", "--keep-image"])
        .root(files.path())
        .expect(0)
        .await;
    let mut mutating = aws.proxy.mutating();
    mutating.sort();
    assert_eq!(mutating, ["RegisterTaskDefinition", "UpdateService"]);
    let services = Sdk::new(&aws.moto).await.services(&["api", "redis"]).await;
    assert!(
        services[0]
            .task_definition()
            .unwrap()
            .ends_with("timing-api:2")
    );
    assert!(
        services[1]
            .task_definition()
            .unwrap()
            .ends_with("timing-redis:1")
    );
}
