//! End to end: the real `provisioner` binary against moto in server mode, through a proxy
//! that records every AWS call. Each test has its own emulator (moto allows one private DNS
//! namespace per VPC, and tests run in parallel). What moto cannot show is listed in
//! `support/mod.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::collections::BTreeSet;

use support::{ACCOUNT, Moto, Proxy, REGION, copy_of_files, repo_root, run, seed_image};

const REPOSITORY_URI: &str = "123456789012.dkr.ecr.eu-north-1.amazonaws.com/timing/api";

fn tag_map<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> BTreeSet<(String, String)> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn has_app_tags(tags: &BTreeSet<(String, String)>, app: &str) -> bool {
    tags.contains(&("app".to_owned(), app.to_owned()))
        && tags.contains(&("managed-by".to_owned(), "provisioner".to_owned()))
}

/// `up` on an empty account creates every resource with its key settings; a second `up`
/// makes no mutating call and says so; `plan` then exits 0.
#[tokio::test]
async fn up_creates_everything_and_a_second_up_changes_nothing() {
    let moto = Moto::start().await;
    let proxy = Proxy::start(&moto).await;
    let (image, digest) = seed_image(&moto, "timing", "0a1b2c3").await;
    let root = repo_root();

    let plan = run(&proxy.url, &root, &["plan", "--output", "json"])
        .await
        .expect_code(2);
    assert!(plan.json()["changed"].as_bool().unwrap());
    assert!(
        proxy.mutating().is_empty(),
        "plan mutated: {:?}",
        proxy.mutating()
    );

    let up = run(
        &proxy.url,
        &root,
        &[
            "up",
            "--image",
            &image,
            "--output",
            "json",
            "--timeout",
            "60s",
        ],
    )
    .await
    .expect_code(0);
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
    // The repository existed already (the image had been pushed to it): `up` converged it.
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
    ] {
        assert!(created.contains(kind), "{kind} not created: {report:#}");
    }

    let config = moto.sdk_config().await;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let ecs = aws_sdk_ecs::Client::new(&config);
    let iam = aws_sdk_iam::Client::new(&config);
    let logs = aws_sdk_cloudwatchlogs::Client::new(&config);
    let ecr = aws_sdk_ecr::Client::new(&config);
    let discovery = aws_sdk_servicediscovery::Client::new(&config);

    // Network: the default VPC; `api` open on 8080 to the world, `redis` on 6379 from `api` only.
    let default_vpc = ec2
        .describe_vpcs()
        .filters(support::ec2_filter("isDefault", "true"))
        .send()
        .await
        .unwrap()
        .vpcs()[0]
        .vpc_id()
        .unwrap()
        .to_owned();
    let groups = ec2
        .describe_security_groups()
        .filters(support::ec2_filter("tag:app", "timing"))
        .send()
        .await
        .unwrap();
    let group = |name: &str| {
        groups
            .security_groups()
            .iter()
            .find(|g| g.group_name() == Some(name))
            .unwrap()
            .clone()
    };
    let (api_group, redis_group) = (group("timing-api"), group("timing-redis"));
    assert_eq!(api_group.vpc_id(), Some(default_vpc.as_str()));
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
    assert_eq!(api_rules[0].ip_ranges()[0].cidr_ip(), Some("0.0.0.0/0"));
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

    // Cloud Map: a private DNS namespace in the default VPC (moto keeps no VPC on the zone,
    // so the VPC is checked in the request) and `redis` with a short-TTL A record.
    let namespaces = discovery.list_namespaces().send().await.unwrap();
    let namespace = namespaces
        .namespaces()
        .iter()
        .find(|n| n.name() == Some("timing.local"))
        .unwrap();
    assert_eq!(
        namespace.r#type(),
        Some(&aws_sdk_servicediscovery::types::NamespaceType::DnsPrivate)
    );
    let create_namespace = proxy
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
    let discovery_services = discovery.list_services().send().await.unwrap();
    let redis_discovery = discovery_services
        .services()
        .iter()
        .find(|s| s.name() == Some("redis"))
        .unwrap();
    let record = &redis_discovery.dns_config().unwrap().dns_records()[0];
    assert_eq!(
        (record.r#type(), record.ttl()),
        (&aws_sdk_servicediscovery::types::RecordType::A, 10)
    );

    // ECS: cluster with tags; redis registered in Cloud Map; both on Fargate with public IPs.
    let clusters = ecs
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
    let services = ecs
        .describe_services()
        .cluster("timing")
        .services("redis")
        .services("api")
        .send()
        .await
        .unwrap();
    let service = |name: &str| {
        services
            .services()
            .iter()
            .find(|s| s.service_name() == Some(name))
            .unwrap()
            .clone()
    };
    let (redis, api) = (service("redis"), service("api"));
    assert_eq!(
        redis.service_registries()[0].registry_arn(),
        redis_discovery.arn()
    );
    assert!(api.service_registries().is_empty());
    for (svc, group) in [(&redis, &redis_group), (&api, &api_group)] {
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

    // Task definitions: the API reaches Redis by its DNS name; images and roles filled in.
    let api_task = ecs
        .describe_task_definition()
        .task_definition("timing-api")
        .send()
        .await
        .unwrap();
    let api_task = api_task.task_definition().unwrap();
    let container = &api_task.container_definitions()[0];
    // Deployed by digest, so the revision changes exactly when the image does.
    assert_eq!(
        container.image(),
        Some(format!("{REPOSITORY_URI}@{digest}").as_str())
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
    let redis_task = ecs
        .describe_task_definition()
        .task_definition("timing-redis")
        .send()
        .await
        .unwrap();
    let redis_container = &redis_task
        .task_definition()
        .unwrap()
        .container_definitions()[0];
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

    // IAM: the execution role has exactly the managed execution policy; the API role nothing
    // (Redis is found by DNS, so none of the original's ECS/EC2/Cloud Map rights).
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

    // Logs: retention and tags. ECR: scan on push and a lifecycle policy.
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

    // A second `up` changes nothing, makes no mutating call (seen by the proxy), and says so.
    proxy.clear();
    let again = run(
        &proxy.url,
        &root,
        &["up", "--keep-image", "--output", "json"],
    )
    .await
    .expect_code(0);
    assert_eq!(proxy.mutating(), Vec::<String>::new());
    let again = again.json();
    assert_eq!(again["changed"], false);
    assert_eq!(again["aws_calls"]["mutating"], 0);
    let text = run(&proxy.url, &root, &["up", "--keep-image"])
        .await
        .expect_code(0);
    assert!(text.stdout.contains("no changes"), "{}", text.stdout);
    run(&proxy.url, &root, &["plan"]).await.expect_code(0);
}

/// A changed task-definition file gives exactly one new revision and one service update.
#[tokio::test]
async fn a_changed_task_definition_makes_one_revision_and_one_service_update() {
    let moto = Moto::start().await;
    let proxy = Proxy::start(&moto).await;
    let (image, _) = seed_image(&moto, "timing", "0a1b2c3").await;
    let files = copy_of_files();
    run(&proxy.url, files.path(), &["up", "--image", &image])
        .await
        .expect_code(0);

    let path = files.path().join("task-definitions/api.json");
    let changed = std::fs::read_to_string(&path).unwrap().replace(
        "\"RUST_LOG\", \"value\": \"info\"",
        "\"RUST_LOG\", \"value\": \"debug\"",
    );
    std::fs::write(&path, changed).unwrap();
    let plan = run(&proxy.url, files.path(), &["plan"])
        .await
        .expect_code(2);
    assert!(plan.stdout.contains("timing-api:1 → 2"), "{}", plan.stdout);

    proxy.clear();
    run(&proxy.url, files.path(), &["up", "--keep-image"])
        .await
        .expect_code(0);
    let mut mutating = proxy.mutating();
    mutating.sort();
    assert_eq!(mutating, ["RegisterTaskDefinition", "UpdateService"]);
    let config = moto.sdk_config().await;
    let ecs = aws_sdk_ecs::Client::new(&config);
    let api = ecs
        .describe_services()
        .cluster("timing")
        .services("api")
        .send()
        .await
        .unwrap();
    assert!(
        api.services()[0]
            .task_definition()
            .unwrap()
            .ends_with("timing-api:2")
    );
    let redis = ecs
        .describe_services()
        .cluster("timing")
        .services("redis")
        .send()
        .await
        .unwrap();
    assert!(
        redis.services()[0]
            .task_definition()
            .unwrap()
            .ends_with("timing-redis:1")
    );
}

/// The names and tags that prove a resource of `app` is gone, checked through the SDK.
async fn assert_nothing_left(moto: &Moto, app: &str) {
    let config = moto.sdk_config().await;
    let ecs = aws_sdk_ecs::Client::new(&config);
    let clusters = ecs.describe_clusters().clusters(app).send().await.unwrap();
    assert!(
        clusters
            .clusters()
            .iter()
            .all(|c| c.status() != Some("ACTIVE")),
        "cluster {app} left"
    );
    let families = ecs
        .list_task_definitions()
        .family_prefix(format!("{app}-"))
        .status(aws_sdk_ecs::types::TaskDefinitionStatus::Active)
        .send()
        .await
        .unwrap();
    assert!(
        families.task_definition_arns().is_empty(),
        "{:?}",
        families.task_definition_arns()
    );
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let groups = ec2
        .describe_security_groups()
        .filters(support::ec2_filter("tag:app", app))
        .send()
        .await
        .unwrap();
    assert!(
        groups.security_groups().is_empty(),
        "security groups of {app} left"
    );
    let iam = aws_sdk_iam::Client::new(&config);
    for role in [format!("{app}-task-execution"), format!("{app}-api-task")] {
        assert!(
            iam.get_role().role_name(&role).send().await.is_err(),
            "role {role} left"
        );
    }
    let logs = aws_sdk_cloudwatchlogs::Client::new(&config);
    let groups = logs
        .describe_log_groups()
        .log_group_name_prefix(format!("/ecs/{app}"))
        .send()
        .await
        .unwrap();
    assert!(
        groups
            .log_groups()
            .iter()
            .all(|g| g.log_group_name() != Some(&format!("/ecs/{app}")))
    );
    let ecr = aws_sdk_ecr::Client::new(&config);
    assert!(
        ecr.describe_repositories()
            .repository_names(format!("{app}/api"))
            .send()
            .await
            .is_err()
    );
    let discovery = aws_sdk_servicediscovery::Client::new(&config);
    let namespaces = discovery.list_namespaces().send().await.unwrap();
    assert!(
        namespaces
            .namespaces()
            .iter()
            .all(|n| n.name() != Some(&format!("{app}.local")))
    );
}

/// `down` removes everything of one app and nothing of another deployed beside it (in
/// its own VPC, given with --vpc/--subnets); a second `down` succeeds, says nothing is left
/// and makes no mutating call.
#[tokio::test]
async fn down_removes_one_app_and_leaves_the_other() {
    let moto = Moto::start().await;
    let proxy = Proxy::start(&moto).await;
    let (image, _) = seed_image(&moto, "timing", "0a1b2c3").await;
    let root = repo_root();
    let config = moto.sdk_config().await;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.20.0.0/16")
        .send()
        .await
        .unwrap();
    let vpc_id = vpc.vpc().unwrap().vpc_id().unwrap().to_owned();
    // A private DNS namespace needs DNS hostnames (a default VPC has them on, a new one not).
    ec2.modify_vpc_attribute()
        .vpc_id(&vpc_id)
        .enable_dns_hostnames(
            aws_sdk_ec2::types::AttributeBooleanValue::builder()
                .value(true)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let mut subnets = Vec::new();
    for (cidr, zone) in [
        ("10.20.1.0/24", "eu-north-1a"),
        ("10.20.2.0/24", "eu-north-1b"),
    ] {
        let subnet = ec2
            .create_subnet()
            .vpc_id(&vpc_id)
            .cidr_block(cidr)
            .availability_zone(zone)
            .send()
            .await
            .unwrap();
        subnets.push(subnet.subnet().unwrap().subnet_id().unwrap().to_owned());
    }

    run(&proxy.url, &root, &["up", "--image", &image])
        .await
        .expect_code(0);
    let subnet_list = subnets.join(",");
    let (other_image, _) = seed_image(&moto, "other", "0a1b2c3").await;
    run(
        &proxy.url,
        &root,
        &[
            "up",
            "--app",
            "other",
            "--image",
            &other_image,
            "--vpc",
            &vpc_id,
            "--subnets",
            &subnet_list,
        ],
    )
    .await
    .expect_code(0);

    let down = run(&proxy.url, &root, &["down", "--yes", "--output", "json"])
        .await
        .expect_code(0);
    assert_eq!(down.json()["changed"], true);
    assert_nothing_left(&moto, "timing").await;

    // The other app is whole: a plan for it finds nothing to do.
    let plan = run(
        &proxy.url,
        &root,
        &[
            "plan",
            "--app",
            "other",
            "--vpc",
            &vpc_id,
            "--subnets",
            &subnet_list,
        ],
    )
    .await;
    assert_eq!(plan.code, 0, "other app damaged:\n{}", plan.stdout);

    proxy.clear();
    let again = run(&proxy.url, &root, &["down", "--yes"])
        .await
        .expect_code(0);
    assert!(
        again.stdout.contains("nothing left to remove"),
        "{}",
        again.stdout
    );
    // It read that nothing is left, and so changed nothing.
    assert_eq!(proxy.mutating(), Vec::<String>::new());
}

/// The teardown orders AWS refuses and moto lets pass are refused by the test proxy (see
/// `support::aws_rules`): shown here request by request, then `down` gets through all of them
/// without one refusal, including a Cloud Map instance registered as ECS registers a running
/// Redis task (moto runs no tasks, so nothing else would register it).
#[tokio::test]
async fn down_follows_the_teardown_order_aws_enforces() {
    let moto = Moto::start().await;
    let proxy = Proxy::start(&moto).await;
    let (image, _) = seed_image(&moto, "timing", "0a1b2c3").await;
    let root = repo_root();
    run(&proxy.url, &root, &["up", "--image", &image])
        .await
        .expect_code(0);

    let config = support::sdk_config_at(&proxy.url).await;
    let ecs = aws_sdk_ecs::Client::new(&config);
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let discovery = aws_sdk_servicediscovery::Client::new(&config);
    let code = |e: &dyn aws_smithy_types::error::metadata::ProvideErrorMetadata| {
        e.code().map(str::to_owned)
    };

    let cluster = ecs.delete_cluster().cluster("timing").send().await;
    assert_eq!(
        code(&cluster.unwrap_err()).as_deref(),
        Some("ClusterContainsServicesException")
    );

    let groups = ec2
        .describe_security_groups()
        .filters(support::ec2_filter("group-name", "timing-api"))
        .send()
        .await
        .unwrap();
    let api_group = groups.security_groups()[0].group_id().unwrap().to_owned();
    let group = ec2
        .delete_security_group()
        .group_id(&api_group)
        .send()
        .await;
    assert_eq!(
        code(&group.unwrap_err()).as_deref(),
        Some("DependencyViolation"),
        "timing-redis allows 6379 from timing-api"
    );

    let namespaces = discovery.list_namespaces().send().await.unwrap();
    let namespace = namespaces
        .namespaces()
        .iter()
        .find(|n| n.name() == Some("timing.local"))
        .unwrap();
    let deleted = discovery
        .delete_namespace()
        .id(namespace.id().unwrap())
        .send()
        .await;
    assert_eq!(
        code(&deleted.unwrap_err()).as_deref(),
        Some("ResourceInUse")
    );

    let services = discovery.list_services().send().await.unwrap();
    let redis = services
        .services()
        .iter()
        .find(|s| s.name() == Some("redis"))
        .unwrap();
    discovery
        .register_instance()
        .service_id(redis.id().unwrap())
        .instance_id("0123456789abcdef0123456789abcdef")
        .attributes("AWS_INSTANCE_IPV4", "10.0.1.17")
        .send()
        .await
        .unwrap();
    let deleted = discovery
        .delete_service()
        .id(redis.id().unwrap())
        .send()
        .await;
    assert_eq!(
        code(&deleted.unwrap_err()).as_deref(),
        Some("ResourceInUse")
    );
    assert_eq!(proxy.refusals().len(), 4, "{:#?}", proxy.refusals());

    let down = run(&proxy.url, &root, &["down", "--yes"]).await;
    assert_eq!(down.code, 0, "{}\n{}", down.stdout, down.stderr);
    assert_eq!(
        proxy.refusals().len(),
        4,
        "down made a request AWS would refuse: {:#?}",
        &proxy.refusals()[4..]
    );
    assert_nothing_left(&moto, "timing").await;
}

/// An `up` cut off part-way (the emulator starts failing after some calls) fails with a
/// clear error; the next `up` converges, and `down` cleans everything up.
#[tokio::test]
async fn an_interrupted_up_is_finished_by_the_next_one() {
    let moto = Moto::start().await;
    let proxy = Proxy::start(&moto).await;
    let (image, _) = seed_image(&moto, "timing", "0a1b2c3").await;
    let root = repo_root();
    for cut in [8, 20] {
        proxy.fail_after(cut);
        let failed = run(&proxy.url, &root, &["up", "--image", &image]).await;
        assert_eq!(failed.code, 1, "{}\n{}", failed.stdout, failed.stderr);
        assert!(
            failed.stderr.contains("error:") && failed.stderr.contains("failed"),
            "{}",
            failed.stderr
        );
        proxy.heal();
    }
    let finished = run(
        &proxy.url,
        &root,
        &["up", "--image", &image, "--output", "json"],
    )
    .await
    .expect_code(0);
    assert_eq!(finished.json()["changed"], true);
    proxy.clear();
    run(&proxy.url, &root, &["up", "--keep-image"])
        .await
        .expect_code(0);
    assert_eq!(proxy.mutating(), Vec::<String>::new());

    proxy.fail_after(10);
    let failed = run(&proxy.url, &root, &["down", "--yes"]).await;
    assert_eq!(failed.code, 1);
    proxy.heal();
    run(&proxy.url, &root, &["down", "--yes"])
        .await
        .expect_code(0);
    assert_nothing_left(&moto, "timing").await;
}

/// Bad files are refused with file, line and column before any AWS call.
#[tokio::test]
async fn bad_files_are_refused_before_any_aws_call() {
    let moto = Moto::start().await;
    let proxy = Proxy::start(&moto).await;
    let (image, _) = seed_image(&moto, "timing", "0a1b2c3").await;
    let cases = [
        (
            "task-definitions/api.json",
            "\"essential\": true,",
            "\"essential\": true,,",
            "api.json:14:",
        ),
        (
            "task-definitions/api.json",
            "${API_IMAGE}",
            "${API_IMAGES}",
            "unknown placeholder `${API_IMAGES}`",
        ),
        (
            "task-definitions/redis.json",
            "\"stopTimeout\"",
            "\"stopTimeOut\"",
            "unknown field `stopTimeOut`",
        ),
        (
            "policies/ecs-tasks-trust.json",
            "\"Statement\"",
            "\"Statements\"",
            "\"Statement\" array",
        ),
    ];
    for (file, from, to, message) in cases {
        let files = copy_of_files();
        let path = files.path().join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{file} lacks {from}");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
        let run = run(&proxy.url, files.path(), &["up", "--image", &image])
            .await
            .expect_code(1);
        assert!(
            run.stderr.contains(message),
            "{file}: expected `{message}` in:\n{}",
            run.stderr
        );
        assert!(
            run.stderr.contains(file.rsplit('/').next().unwrap()),
            "{}",
            run.stderr
        );
    }
    assert!(
        proxy.calls().is_empty(),
        "AWS was called: {:?}",
        proxy.calls()
    );
}

/// Without a terminal `down` never prompts: it refuses unless --yes is given.
#[tokio::test]
async fn down_without_yes_refuses_when_there_is_no_terminal() {
    let moto = Moto::start().await;
    let proxy = Proxy::start(&moto).await;
    let (image, _) = seed_image(&moto, "timing", "0a1b2c3").await;
    let root = repo_root();
    run(&proxy.url, &root, &["up", "--image", &image])
        .await
        .expect_code(0);
    proxy.clear();
    let refused = run(&proxy.url, &root, &["down"]).await.expect_code(1);
    assert!(refused.stderr.contains("--yes"), "{}", refused.stderr);
    assert!(proxy.mutating().is_empty());
}

/// Missing region, credentials or default VPC: one line saying what to set.
#[tokio::test]
async fn missing_region_credentials_or_default_vpc_are_one_line_each() {
    let moto = Moto::start().await;
    let root = repo_root();
    let no_region = support::run_with_env(
        Some(&moto.url),
        &root,
        &["plan"],
        &[
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
        ],
    )
    .await
    .expect_code(1);
    assert!(
        no_region
            .stderr
            .contains("no AWS region configured: set AWS_REGION or pass --region"),
        "{}",
        no_region.stderr
    );
    let no_credentials =
        support::run_with_env(Some(&moto.url), &root, &["plan"], &[("AWS_REGION", REGION)])
            .await
            .expect_code(1);
    assert!(
        no_credentials.stderr.contains("no AWS credentials found"),
        "{}",
        no_credentials.stderr
    );
    assert_eq!(
        no_credentials
            .stderr
            .trim()
            .lines()
            .filter(|l| l.starts_with("error"))
            .count(),
        1
    );

    // A region whose default VPC was deleted.
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&moto.url)
        .region(aws_config::Region::new("eu-west-3"))
        .credentials_provider(aws_credential_types::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .load()
        .await;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let vpcs = ec2.describe_vpcs().send().await.unwrap();
    for vpc in vpcs.vpcs() {
        let vpc_id = vpc.vpc_id().unwrap();
        let subnets = ec2
            .describe_subnets()
            .filters(support::ec2_filter("vpc-id", vpc_id))
            .send()
            .await
            .unwrap();
        for subnet in subnets.subnets() {
            ec2.delete_subnet()
                .subnet_id(subnet.subnet_id().unwrap())
                .send()
                .await
                .unwrap();
        }
        ec2.delete_vpc().vpc_id(vpc_id).send().await.unwrap();
    }
    let no_vpc = support::run_with_env(
        Some(&moto.url),
        &root,
        &["plan", "--region", "eu-west-3"],
        &[
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
        ],
    )
    .await
    .expect_code(1);
    assert!(
        no_vpc
            .stderr
            .contains("no default VPC in eu-west-3: pass --vpc"),
        "{}",
        no_vpc.stderr
    );
}
