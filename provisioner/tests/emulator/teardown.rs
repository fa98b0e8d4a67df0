//! `down`: everything of one app goes and nothing of another, in the order AWS enforces, and
//! an interrupted `up` or `down` is finished by the next run.

use crate::support::{self, Data, Sdk, TestAccount, assert_nothing_left, seed_image};

/// `down` removes everything of one app and nothing of another deployed beside it (in
/// its own VPC, given with --vpc/--subnets); a second `down` succeeds, says nothing is left
/// and makes no mutating call.
#[tokio::test]
async fn down_removes_one_app_and_leaves_the_other() {
    let aws = TestAccount::start().await;
    let proxy = &aws.proxy;
    // The other app's VPC: DNS hostnames on (its private DNS namespace needs them), a subnet
    // in each of two zones.
    let (vpc_id, subnets) = Sdk::new(&aws.moto)
        .await
        .create_vpc("10.20", true, &["eu-north-1a", "eu-north-1b"])
        .await;

    aws.deploy().await;
    let subnet_list = subnets.join(",");
    let (other_image, _) = seed_image(&aws.moto, "other", support::IMAGE_TAG).await;
    let other_network = ["--vpc", vpc_id.as_str(), "--subnets", subnet_list.as_str()];
    aws.provisioner(&["up", "--image", &other_image])
        .app("other")
        .args(&other_network)
        .expect(0)
        .await;

    let down = aws.provisioner(&["down", "--yes"]).json().expect(0).await;
    assert_eq!(down.json()["changed"], true);
    assert_nothing_left(&aws.moto, "timing", Data::Kept).await;

    // The other app is whole: a plan for it finds nothing to do.
    let plan = aws
        .provisioner(&["plan"])
        .app("other")
        .args(&other_network)
        .run()
        .await;
    assert_eq!(plan.code, 0, "other app damaged:\n{}", plan.stdout);

    proxy.clear();
    let again = aws.provisioner(&["down", "--yes"]).expect(0).await;
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
    let aws = TestAccount::start().await;
    let proxy = &aws.proxy;
    aws.deploy().await;

    // Through the proxy, which refuses what AWS refuses.
    let sdk = Sdk::from_config(&support::sdk_config_at(&proxy.url, support::REGION).await);
    let (ecs, ec2, discovery) = (&sdk.ecs, &sdk.ec2, &sdk.discovery);
    let code = |e: &dyn aws_smithy_types::error::metadata::ProvideErrorMetadata| {
        e.code().map(str::to_owned)
    };

    let cluster = ecs.delete_cluster().cluster("timing").send().await;
    assert_eq!(
        code(&cluster.unwrap_err()).as_deref(),
        Some("ClusterContainsServicesException")
    );

    let api_group = sdk.group("timing-api").await.unwrap();
    let group = ec2
        .delete_security_group()
        .group_id(api_group.group_id().unwrap())
        .send()
        .await;
    assert_eq!(
        code(&group.unwrap_err()).as_deref(),
        Some("DependencyViolation"),
        "timing-redis allows 6379 from timing-api"
    );

    let namespace = sdk.namespace("timing.local").await;
    let deleted = discovery
        .delete_namespace()
        .id(namespace.id().unwrap())
        .send()
        .await;
    assert_eq!(
        code(&deleted.unwrap_err()).as_deref(),
        Some("ResourceInUse")
    );

    let redis = sdk.discovery_service("redis").await;
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
    // The VPC link's network interfaces hold its group (moto has none: the proxy stands in).
    let link_group = sdk.group("timing-vpc-link").await.unwrap();
    let group = ec2
        .delete_security_group()
        .group_id(link_group.group_id().unwrap())
        .send()
        .await;
    assert_eq!(
        code(&group.unwrap_err()).as_deref(),
        Some("DependencyViolation"),
        "the VPC link uses timing-vpc-link"
    );
    assert_eq!(proxy.refusals().len(), 5, "{:#?}", proxy.refusals());
    assert!(
        proxy.refusals()[4].contains("VPC link"),
        "{:#?}",
        proxy.refusals()
    );

    let down = aws.provisioner(&["down", "--yes"]).run().await;
    assert_eq!(down.code, 0, "{}\n{}", down.stdout, down.stderr);
    assert_eq!(
        proxy.refusals().len(),
        5,
        "down made a request AWS would refuse: {:#?}",
        &proxy.refusals()[5..]
    );
    assert_nothing_left(&aws.moto, "timing", Data::Kept).await;
}

/// An `up` cut off part-way (the emulator starts failing after some calls) fails with a
/// clear error; the next `up` converges, and `down` cleans everything up. (A process killed
/// at every point of `up` and `down` is `faults.rs`.) The cut-off runs make one attempt per
/// call: retries would only wait out their back-off.
#[tokio::test]
async fn an_interrupted_up_is_finished_by_the_next_one() {
    let aws = TestAccount::start().await;
    let proxy = &aws.proxy;
    for cut in [8, 20] {
        proxy.fail_after(cut);
        let failed = aws
            .provisioner(&["up", "--image", &aws.image])
            .one_attempt_per_call()
            .run()
            .await;
        assert_eq!(failed.code, 1, "{}\n{}", failed.stdout, failed.stderr);
        assert!(
            failed.stderr.contains("error:") && failed.stderr.contains("failed"),
            "{}",
            failed.stderr
        );
        proxy.heal();
    }
    let finished = aws
        .provisioner(&["up", "--image", &aws.image])
        .json()
        .expect(0)
        .await;
    assert_eq!(finished.json()["changed"], true);
    proxy.clear();
    aws.provisioner(&["up", "--keep-image"]).expect(0).await;
    assert_eq!(proxy.mutating(), Vec::<String>::new());

    proxy.fail_after(10);
    let failed = aws
        .provisioner(&["down", "--yes"])
        .one_attempt_per_call()
        .run()
        .await;
    assert_eq!(failed.code, 1);
    proxy.heal();
    aws.provisioner(&["down", "--yes"]).expect(0).await;
    assert_nothing_left(&aws.moto, "timing", Data::Kept).await;
}
