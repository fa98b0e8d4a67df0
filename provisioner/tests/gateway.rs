//! The app's stable HTTPS address (issue 10) through the real binary against moto: the HTTP
//! API's wiring (integration over the VPC link to the Cloud Map `api` service, `$default`
//! route and stage with throttling and JSON access logs), the SRV records and the ECS
//! registration, the API port open only to the VPC link's group, `--api-count` kept through
//! `stop`/`start`, the custom domain and its DNS record, bad input refused before any AWS call,
//! a same-named resource without the app's tags left alone, and an `up` cut off in the middle
//! of the gateway finished by the next one.
//!
//! moto takes the management calls only: nothing is routed through the execute-api URL, a VPC
//! link is AVAILABLE at once and holds no network interfaces (the proxy stands in for their
//! hold on the link's group, `support::aws_rules`), and its ECS registers no task in Cloud Map.

use crate::support::{Data, Moto, Proxy, Run, Sdk, TestAccount, assert_nothing_left, seed_image};

const CERTIFICATE: &str = "arn:aws:acm:eu-north-1:123456789012:certificate/0a1b2c3d";

fn tagged(tags: Option<&std::collections::HashMap<String, String>>, app: &str) -> bool {
    let tags = tags.expect("tags");
    tags.get("app").map(String::as_str) == Some(app)
        && tags.get("managed-by").map(String::as_str) == Some("provisioner")
}

/// `run` failed on `foreign`, a resource of the app's name without its tags: named, and
/// neither adopted nor deleted.
fn assert_refused_as_foreign(run: &Run, foreign: &str) {
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(foreign) && run.stderr.contains("neither adopted nor deleted"),
        "{}",
        run.stderr
    );
}

/// Cold `up`: every part of the address exists, tagged, wired as API Gateway's private
/// integration to Cloud Map needs it; `status` and `up` print the same HTTPS URL.
#[tokio::test]
async fn up_wires_the_https_url_over_a_vpc_link_to_the_cloud_map_api_service() {
    let TestAccount {
        moto, proxy, image, ..
    } = TestAccount::start().await;

    let plan = proxy
        .provisioner(&["plan", "--output", "json"])
        .run()
        .await
        .expect_code(2)
        .json();
    let planned: Vec<&str> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["action"] == "create")
        .map(|c| c["kind"].as_str().unwrap())
        .collect();
    for kind in [
        "vpc-link",
        "http-api",
        "api-integration",
        "api-route",
        "api-stage",
    ] {
        assert!(planned.contains(&kind), "plan lacks {kind}: {planned:?}");
    }

    let up = proxy
        .provisioner(&["up", "--image", &image, "--output", "json"])
        .run()
        .await
        .expect_code(0)
        .json();

    let sdk = Sdk::new(&moto).await;
    let apigateway = &sdk.apigateway;

    // Cloud Map `api`: SRV records with a short TTL, health reported by ECS.
    let api_discovery = sdk.discovery_service("api").await;
    let record = &api_discovery.dns_config().unwrap().dns_records()[0];
    assert_eq!(
        (record.r#type(), record.ttl()),
        (&aws_sdk_servicediscovery::types::RecordType::Srv, 10)
    );
    let api_discovery = sdk
        .discovery
        .get_service()
        .id(api_discovery.id().unwrap())
        .send()
        .await
        .unwrap();
    let api_discovery = api_discovery.service().unwrap();
    assert!(api_discovery.health_check_custom_config().is_some());
    let discovery_arn = api_discovery.arn().unwrap();

    // ECS registers the API tasks there by container and port.
    let api_service = sdk.service("api").await;
    let registry = &api_service.service_registries()[0];
    assert_eq!(
        (
            registry.registry_arn(),
            registry.container_name(),
            registry.container_port()
        ),
        (Some(discovery_arn), Some("api"), Some(8080))
    );

    // The VPC link: the app's subnets, its own group, tagged, AVAILABLE.
    let links = apigateway.get_vpc_links().send().await.unwrap();
    let link = links
        .items()
        .iter()
        .find(|l| l.name() == Some("timing"))
        .expect("VPC link timing");
    assert!(tagged(link.tags(), "timing"));
    assert_eq!(
        link.vpc_link_status(),
        Some(&aws_sdk_apigatewayv2::types::VpcLinkStatus::Available)
    );
    let link_group = sdk
        .app_group("timing-vpc-link")
        .await
        .group_id()
        .unwrap()
        .to_owned();
    assert_eq!(link.security_group_ids(), std::slice::from_ref(&link_group));
    let mut expected: Vec<String> = sdk
        .default_subnets()
        .await
        .iter()
        .map(|s| s.subnet_id().unwrap().to_owned())
        .collect();
    let mut subnets = link.subnet_ids().to_vec();
    expected.sort();
    subnets.sort();
    assert_eq!(subnets, expected);

    // The API port admits the link's group only: no CIDR.
    let api_group = sdk.app_group("timing-api").await;
    let sources: Vec<(Option<&str>, Option<i32>)> = api_group
        .ip_permissions()
        .iter()
        .flat_map(|p| {
            p.user_id_group_pairs()
                .iter()
                .map(move |pair| (pair.group_id(), p.from_port()))
        })
        .collect();
    assert_eq!(sources, [(Some(link_group.as_str()), Some(8080))]);
    assert!(
        api_group
            .ip_permissions()
            .iter()
            .all(|p| p.ip_ranges().is_empty())
    );

    // The HTTP API: HTTP_PROXY over the link to the Cloud Map service, `$default` route and
    // an auto-deployed `$default` stage with throttling and JSON access logs.
    let apis = apigateway.get_apis().send().await.unwrap();
    let api = apis
        .items()
        .iter()
        .find(|a| a.name() == Some("timing"))
        .expect("HTTP API timing");
    assert!(tagged(api.tags(), "timing"));
    let api_id = api.api_id().unwrap();
    let url = api.api_endpoint().unwrap();
    assert_eq!(
        url,
        format!("https://{api_id}.execute-api.eu-north-1.amazonaws.com")
    );
    let integrations = apigateway
        .get_integrations()
        .api_id(api_id)
        .send()
        .await
        .unwrap();
    let [integration] = integrations.items() else {
        panic!("{integrations:?}")
    };
    assert_eq!(
        integration.integration_type(),
        Some(&aws_sdk_apigatewayv2::types::IntegrationType::HttpProxy)
    );
    assert_eq!(
        integration.connection_type(),
        Some(&aws_sdk_apigatewayv2::types::ConnectionType::VpcLink)
    );
    assert_eq!(integration.connection_id(), link.vpc_link_id());
    assert_eq!(integration.integration_uri(), Some(discovery_arn));
    let routes = apigateway.get_routes().api_id(api_id).send().await.unwrap();
    let [route] = routes.items() else {
        panic!("{routes:?}")
    };
    assert_eq!(route.route_key(), Some("$default"));
    assert_eq!(
        route.target().map(str::to_owned),
        Some(format!(
            "integrations/{}",
            integration.integration_id().unwrap()
        ))
    );
    let stages = apigateway.get_stages().api_id(api_id).send().await.unwrap();
    let [stage] = stages.items() else {
        panic!("{stages:?}")
    };
    assert_eq!(stage.stage_name(), Some("$default"));
    assert_eq!(stage.auto_deploy(), Some(true));
    let throttling = stage.default_route_settings().unwrap();
    assert_eq!(
        (
            throttling.throttling_rate_limit(),
            throttling.throttling_burst_limit()
        ),
        (Some(25.0), Some(50))
    );
    let logs = stage.access_log_settings().unwrap();
    assert_eq!(
        logs.destination_arn(),
        Some("arn:aws:logs:eu-north-1:123456789012:log-group:/ecs/timing")
    );
    let format: serde_json::Value =
        serde_json::from_str(&logs.format().unwrap().replace("$context.", "")).unwrap();
    assert!(format.get("status").is_some(), "{format}");

    // The URL in `up` and `status`, as JSON and text.
    assert_eq!(up["endpoint"], url);
    let status = proxy
        .provisioner(&["status", "--output", "json"])
        .run()
        .await
        .expect_code(0)
        .json();
    assert_eq!(status["endpoint"], url);
    assert_eq!(status["api_count"], 1);
    let running: Vec<&str> = status["running_costs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["basis"].as_str().unwrap())
        .collect();
    assert!(
        running.iter().any(|b| b.contains("per million requests")),
        "{running:?}"
    );
    assert!(!status["stopped_costs"].as_array().unwrap().is_empty());
    let text = proxy
        .provisioner(&["status"])
        .run()
        .await
        .expect_code(0)
        .stdout;
    assert!(text.contains(&format!("HTTPS URL: {url}")), "{text}");
    assert!(
        text.contains("cost running") && text.contains("cost stopped"),
        "{text}"
    );
}

/// `--api-count 3` runs three API tasks and is kept on the service: `stop` takes them to 0,
/// a `start` without the flag brings back three (Redis one), `status` reports it, and the URL
/// does not change; `--allow-cidr` opens the port directly only when asked.
#[tokio::test]
async fn the_api_count_survives_stop_and_start_and_the_url_stays() {
    let TestAccount {
        moto, proxy, image, ..
    } = TestAccount::start().await;
    let up = proxy
        .provisioner(&[
            "up",
            "--image",
            &image,
            "--api-count",
            "3",
            "--allow-cidr",
            "203.0.113.0/24",
            // moto reports one running task whatever the desired count: no stable wait.
            "--no-wait",
            "--output",
            "json",
        ])
        .run()
        .await
        .expect_code(0)
        .json();
    let url = up["endpoint"].as_str().unwrap().to_owned();
    let sdk = Sdk::new(&moto).await;
    assert_eq!(sdk.desired_counts().await, (3, 1));
    let api_group = sdk.group("timing-api").await.unwrap();
    let cidrs: Vec<&str> = api_group
        .ip_permissions()
        .iter()
        .flat_map(|p| p.ip_ranges())
        .filter_map(|r| r.cidr_ip())
        .collect();
    assert_eq!(cidrs, ["203.0.113.0/24"]);

    // A deploy without --api-count keeps three (and, without --allow-cidr, closes the port).
    proxy
        .provisioner(&["up", "--keep-image", "--no-wait"])
        .run()
        .await
        .expect_code(0);
    assert_eq!(sdk.desired_counts().await, (3, 1));

    proxy.provisioner(&["stop"]).run().await.expect_code(0);
    assert_eq!(sdk.desired_counts().await, (0, 0));
    let status = proxy
        .provisioner(&["status", "--output", "json"])
        .run()
        .await
        .expect_code(0)
        .json();
    assert_eq!(status["api_count"], 3);
    assert_eq!(status["endpoint"], url.as_str());

    let start = proxy
        .provisioner(&["start", "--no-wait", "--output", "json"])
        .run()
        .await
        .expect_code(0)
        .json();
    assert_eq!(sdk.desired_counts().await, (3, 1));
    assert_eq!(start["endpoint"], url.as_str());
    assert!(
        start["costs"][0]["item"]
            .as_str()
            .unwrap()
            .contains("3 API"),
        "{start:#}"
    );
    let text = proxy
        .provisioner(&["start", "--api-count", "2", "--no-wait"])
        .run()
        .await
        .expect_code(0)
        .stdout;
    assert!(text.contains(&format!("HTTPS URL: {url}")), "{text}");
    assert!(!text.contains("changes on every start"), "{text}");
    assert_eq!(sdk.desired_counts().await, (2, 1));
    proxy.provisioner(&["stop"]).run().await.expect_code(0);
    proxy
        .provisioner(&["start", "--no-wait"])
        .run()
        .await
        .expect_code(0);
    assert_eq!(sdk.desired_counts().await, (2, 1));
}

/// `--domain` with `--certificate-arn`: a regional custom domain mapped to the `$default`
/// stage, its DNS record printed; a second `up` changes nothing; `down` removes it.
#[tokio::test]
async fn a_custom_domain_is_mapped_and_its_dns_record_printed() {
    let TestAccount {
        moto, proxy, image, ..
    } = TestAccount::start().await;
    let domain_flags = [
        "--domain",
        "timing.example.org",
        "--certificate-arn",
        CERTIFICATE,
    ];
    let mut args = vec!["up", "--image", &image];
    args.extend(domain_flags);
    let up = proxy.provisioner(&args).run().await.expect_code(0).stdout;
    assert!(
        up.contains("custom domain: https://timing.example.org (DNS record to create: timing.example.org. CNAME"),
        "{up}"
    );
    let config = moto.sdk_config().await;
    let apigateway = aws_sdk_apigatewayv2::Client::new(&config);
    let domain = apigateway
        .get_domain_name()
        .domain_name("timing.example.org")
        .send()
        .await
        .unwrap();
    assert_eq!(
        domain.domain_name_configurations()[0].certificate_arn(),
        Some(CERTIFICATE)
    );
    let mappings = apigateway
        .get_api_mappings()
        .domain_name("timing.example.org")
        .send()
        .await
        .unwrap();
    let apis = apigateway.get_apis().send().await.unwrap();
    let api_id = apis.items()[0].api_id().unwrap();
    assert_eq!(mappings.items()[0].api_id(), Some(api_id));
    assert_eq!(mappings.items()[0].stage(), Some("$default"));

    proxy.clear();
    let mut args = vec!["up", "--keep-image", "--output", "json"];
    args.extend(domain_flags);
    let again = proxy.provisioner(&args).run().await.expect_code(0).json();
    assert_eq!(proxy.mutating(), Vec::<String>::new());
    assert_eq!(again["custom_domain"]["name"], "timing.example.org");
    let status = proxy
        .provisioner(&["status", "--output", "json"])
        .run()
        .await
        .expect_code(0)
        .json();
    assert_eq!(status["custom_domain"]["url"], "https://timing.example.org");

    proxy
        .provisioner(&["down", "--yes"])
        .run()
        .await
        .expect_code(0);
    assert!(
        apigateway
            .get_domain_name()
            .domain_name("timing.example.org")
            .send()
            .await
            .is_err()
    );
}

/// Each bad combination is one clear error naming the flag, exit 1, before any AWS call.
#[tokio::test]
async fn bad_gateway_input_is_refused_before_any_aws_call() {
    let moto = Moto::start().await;
    let proxy = Proxy::start(&moto).await;
    let elsewhere = "arn:aws:acm:us-east-1:123456789012:certificate/0a1b2c3d";
    let cases: &[(&[&str], &str)] = &[
        (&["up", "--domain", "timing.example.org"], "--domain"),
        (
            &["up", "--certificate-arn", CERTIFICATE],
            "--certificate-arn",
        ),
        (
            &[
                "up",
                "--domain",
                "timing.example.org",
                "--certificate-arn",
                elsewhere,
            ],
            "us-east-1",
        ),
        (&["up", "--api-count", "0"], "--api-count"),
        (&["plan", "--api-count", "11"], "--api-count"),
        (&["start", "--api-count", "0"], "--api-count"),
        (&["up", "--throttle-rate", "0"], "--throttle-rate"),
        (&["up", "--throttle-burst=-1"], "--throttle-burst"),
    ];
    for (args, named) in cases {
        let refused = proxy.provisioner(args).run().await;
        assert_eq!(refused.code, 1, "{args:?}: {}", refused.stderr);
        let errors: Vec<&str> = refused
            .stderr
            .lines()
            .filter(|l| l.starts_with("error:"))
            .collect();
        assert_eq!(errors.len(), 1, "{args:?}: {}", refused.stderr);
        assert!(errors[0].contains(named), "{args:?}: {}", errors[0]);
    }
    assert!(proxy.calls().is_empty(), "{:?}", proxy.calls());
}

/// An HTTP API, a VPC link or a Cloud Map service of the app's name without the app's tags
/// is someone else's: `up` stops and names it, `down` does not delete it.
#[tokio::test]
async fn same_named_resources_without_the_app_tags_are_named_and_left_alone() {
    let TestAccount {
        moto, proxy, image, ..
    } = TestAccount::start().await;
    let sdk = Sdk::new(&moto).await;
    let apigateway = &sdk.apigateway;

    let foreign = apigateway
        .create_api()
        .name("timing")
        .protocol_type(aws_sdk_apigatewayv2::types::ProtocolType::Http)
        .send()
        .await
        .unwrap();
    let foreign_id = foreign.api_id().unwrap();
    proxy.clear();
    let refused = proxy.provisioner(&["up", "--image", &image]).run().await;
    assert_refused_as_foreign(&refused, &format!("HTTP API timing ({foreign_id})"));
    // Read with everything else before the first write: nothing was changed.
    assert_eq!(proxy.mutating(), Vec::<String>::new());
    let down = proxy.provisioner(&["down", "--yes"]).run().await;
    assert_eq!(down.code, 1, "{}", down.stderr);
    assert!(apigateway.get_api().api_id(foreign_id).send().await.is_ok());
    apigateway
        .delete_api()
        .api_id(foreign_id)
        .send()
        .await
        .unwrap();
    // `down` removed the repository with the image: push it again.
    let (image, _) = seed_image(&moto, "timing", "0a1b2c3").await;

    let subnets = sdk.default_subnets().await;
    let foreign_link = apigateway
        .create_vpc_link()
        .name("timing")
        .subnet_ids(subnets[0].subnet_id().unwrap())
        .send()
        .await
        .unwrap();
    let link_id = foreign_link.vpc_link_id().unwrap();
    proxy.clear();
    let refused = proxy.provisioner(&["up", "--image", &image]).run().await;
    assert_refused_as_foreign(&refused, &format!("VPC link timing ({link_id})"));
    assert_eq!(proxy.mutating(), Vec::<String>::new());
    let down = proxy.provisioner(&["down", "--yes"]).run().await;
    assert_eq!(down.code, 1, "{}", down.stderr);
    assert!(
        apigateway
            .get_vpc_link()
            .vpc_link_id(link_id)
            .send()
            .await
            .is_ok(),
        "down deleted a VPC link that is not the app's"
    );
    apigateway
        .delete_vpc_link()
        .vpc_link_id(link_id)
        .send()
        .await
        .unwrap();
    let (image, _) = seed_image(&moto, "timing", "0a1b2c3").await;

    // A Cloud Map `api` without the tags, in the app's namespace.
    proxy
        .provisioner(&["up", "--image", &image])
        .run()
        .await
        .expect_code(0);
    let discovery = &sdk.discovery;
    let ours = sdk.discovery_service("api").await;
    let namespace_id = discovery
        .get_service()
        .id(ours.id().unwrap())
        .send()
        .await
        .unwrap()
        .service()
        .unwrap()
        .namespace_id()
        .unwrap()
        .to_owned();
    discovery
        .delete_service()
        .id(ours.id().unwrap())
        .send()
        .await
        .unwrap();
    let record = aws_sdk_servicediscovery::types::DnsRecord::builder()
        .r#type(aws_sdk_servicediscovery::types::RecordType::Srv)
        .ttl(60)
        .build()
        .unwrap();
    let theirs = discovery
        .create_service()
        .name("api")
        .namespace_id(&namespace_id)
        .dns_config(
            aws_sdk_servicediscovery::types::DnsConfig::builder()
                .dns_records(record)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let theirs_id = theirs.service().unwrap().id().unwrap().to_owned();
    let refused = proxy.provisioner(&["up", "--keep-image"]).run().await;
    assert_refused_as_foreign(&refused, "Cloud Map service api.timing.local");
    let down = proxy.provisioner(&["down", "--yes"]).run().await;
    assert_eq!(down.code, 1, "{}", down.stderr);
    assert!(
        discovery.get_service().id(&theirs_id).send().await.is_ok(),
        "down deleted a Cloud Map service that is not the app's"
    );
}

/// An `up` cut off while the gateway is being built fails; the next `up` converges on one
/// VPC link and one HTTP API (not one per attempt), a no-op `up` after it makes no mutating
/// call, and `down` leaves nothing. Cut twice by SIGKILL right after a create reached the
/// emulator (the link or the API exists, the provisioner never learnt its ID: the next run
/// must find it by name and tags), once by an outage at the integration's create.
#[tokio::test]
async fn an_up_cut_off_in_the_gateway_converges_on_the_next_run() {
    // Where the gateway's creating calls fall in a cold `up`, from one recorded on a
    // throw-away account (independent steps run concurrently: the points are approximate).
    let scout = TestAccount::start().await;
    scout.deploy().await;
    let calls = scout.proxy.calls();
    drop(scout);
    let position = |operation: &str| {
        calls
            .iter()
            .position(|c| c.operation == operation)
            .unwrap_or_else(|| panic!("no {operation} in a cold up"))
    };

    for (operation, kill) in [
        ("CreateVpcLink", true),
        ("CreateApi", true),
        ("CreateIntegration", false),
    ] {
        // Each cut on an account of its own: a first attempt shifts every later position.
        let aws = TestAccount::start().await;
        let proxy = &aws.proxy;
        let at = position(operation);
        if kill {
            proxy.kill_after(at + 1);
        } else {
            proxy.fail_after(at);
        }
        let mut up = aws.provisioner(&["up", "--image", &aws.image]);
        if !kill {
            up = up.one_attempt_per_call();
        }
        let cut = up.run().await;
        assert_ne!(cut.code, 0, "{operation}: {}\n{}", cut.stdout, cut.stderr);
        proxy.heal();

        aws.deploy().await;
        proxy.clear();
        aws.provisioner(&["up", "--keep-image"]).expect(0).await;
        assert_eq!(proxy.mutating(), Vec::<String>::new(), "after {operation}");
        let apigateway = aws_sdk_apigatewayv2::Client::new(&aws.sdk_config().await);
        let apis = apigateway.get_apis().send().await.unwrap();
        assert_eq!(apis.items().len(), 1, "after {operation}: one HTTP API");
        let links = apigateway.get_vpc_links().send().await.unwrap();
        assert_eq!(links.items().len(), 1, "after {operation}: one VPC link");

        aws.provisioner(&["down", "--yes"]).expect(0).await;
        assert_nothing_left(&aws.moto, "timing", Data::Kept).await;
        assert!(proxy.refusals().is_empty(), "{:#?}", proxy.refusals());
    }
}
