//! Day-to-day operation through the real binary against moto: `stop`/`start` change and
//! report desired counts in the right order, `status` shows them, `up` keeps a stopped app
//! stopped, `logs` prints a service's lines, and every command on an app that does not exist
//! answers in one line. (moto runs no containers: there is no endpoint or `/ready` to reach;
//! the waiting logic itself is tested with replayed responses in tests/watch.rs.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use support::{Moto, Provisioner, Proxy, Sdk, TestAccount};

/// The services named in the recorded UpdateService calls, in order.
fn updated_services(proxy: &Proxy) -> Vec<String> {
    proxy
        .json_bodies("UpdateService")
        .iter()
        .map(|body| body["service"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn stop_start_and_status_control_and_report_the_desired_counts() {
    let aws = TestAccount::start().await;
    let proxy = &aws.proxy;
    aws.deploy().await;
    let sdk = Sdk::new(&aws.moto).await;

    let status = proxy
        .provisioner(&["status", "--output", "json"])
        .expect(0)
        .await
        .json();
    assert_eq!(status["schema_version"], 1);
    assert_eq!(status["deployed"], true);
    let services = status["services"].as_array().unwrap();
    let api = services.iter().find(|s| s["service"] == "api").unwrap();
    assert_eq!(
        (api["desired"].as_i64(), api["running"].as_i64()),
        (Some(1), Some(1))
    );
    assert_eq!(api["task_definition"], "timing-api:1");
    assert_eq!(api["image_digest"], aws.digest.as_str());
    assert!(api["events"].is_array() && api["stopped_tasks"].is_array());
    assert!(
        services
            .iter()
            .any(|s| s["service"] == "redis" && s["desired"] == 1)
    );

    // stop: API first, then Redis; both at 0; what still costs money is listed.
    proxy.clear();
    let stop = proxy
        .provisioner(&["stop", "--output", "json"])
        .expect(0)
        .await
        .json();
    assert_eq!(updated_services(proxy), ["api", "redis"]);
    assert_eq!(sdk.desired_counts().await, (0, 0));
    assert_eq!(stop["wait"]["goal"], "drained");
    let costs: Vec<&str> = stop["costs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["item"].as_str().unwrap())
        .collect();
    assert!(
        costs.iter().any(|c| c.starts_with("ECR images"))
            && costs.iter().any(|c| c.starts_with("Cloud Map"))
            && costs.iter().any(|c| c.starts_with("EFS race data")),
        "{costs:?}"
    );
    let text = proxy.provisioner(&["status"]).expect(0).await.stdout;
    assert!(text.contains("stopped: no task is billed"), "{text}");

    // A deploy never restarts billing by itself; a second stop changes nothing.
    proxy.clear();
    let up = proxy
        .provisioner(&["up", "--keep-image", "--output", "json"])
        .expect(0)
        .await
        .json();
    assert_eq!(sdk.desired_counts().await, (0, 0));
    assert!(
        up["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().unwrap().contains("kept stopped")),
        "{up:#}"
    );
    assert_eq!(proxy.mutating(), Vec::<String>::new());
    proxy.provisioner(&["stop"]).expect(0).await;
    assert_eq!(proxy.mutating(), Vec::<String>::new());

    // start: Redis first, then the API.
    proxy.clear();
    let start = proxy
        .provisioner(&["start", "--output", "json"])
        .expect(0)
        .await
        .json();
    assert_eq!(updated_services(proxy), ["redis", "api"]);
    assert_eq!(sdk.desired_counts().await, (1, 1));
    assert_eq!(start["wait"]["goal"], "stable");
    assert!(start["costs"][0]["usd_per_month"].as_f64().unwrap() > 0.0);

    // up --start lifts a stopped app.
    proxy.provisioner(&["stop", "--no-wait"]).expect(0).await;
    assert_eq!(sdk.desired_counts().await, (0, 0));
    proxy
        .provisioner(&["up", "--keep-image", "--start"])
        .expect(0)
        .await;
    assert_eq!(sdk.desired_counts().await, (1, 1));
}

#[tokio::test]
async fn commands_on_an_app_that_does_not_exist_say_so() {
    let moto = Moto::start().await;
    for command in ["start", "stop"] {
        let refused = Provisioner::new(&moto.url, &[command, "--app", "ghost"])
            .expect(1)
            .await;
        assert!(
            refused
                .stderr
                .contains("app `ghost` is not deployed in eu-north-1"),
            "{}",
            refused.stderr
        );
    }
    let json = Provisioner::new(&moto.url, &["start", "--app", "ghost", "--output", "json"])
        .expect(1)
        .await
        .json();
    assert_eq!(json["error"]["kind"], "not_deployed");
    assert_eq!(json["error"]["exit_code"], 1);

    let status = Provisioner::new(&moto.url, &["status", "--app", "ghost"])
        .expect(0)
        .await;
    assert!(status.stdout.contains("not deployed"), "{}", status.stdout);
    let status = Provisioner::new(&moto.url, &["status", "--app", "ghost", "--output", "json"])
        .expect(0)
        .await
        .json();
    assert_eq!(
        (
            status["deployed"].as_bool(),
            status["services"].as_array().map(Vec::len)
        ),
        (Some(false), Some(0))
    );

    let logs = Provisioner::new(&moto.url, &["logs", "--app", "ghost"])
        .expect(1)
        .await;
    assert!(logs.stderr.contains("/ecs/ghost"), "{}", logs.stderr);
}

#[tokio::test]
async fn logs_prints_the_lines_of_one_service() {
    let aws = TestAccount::start().await;
    let moto = &aws.moto;
    Provisioner::new(&moto.url, &["up", "--image", &aws.image, "--no-wait"])
        .expect(0)
        .await;

    let config = moto.sdk_config().await;
    let logs = aws_sdk_cloudwatchlogs::Client::new(&config);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for (stream, message) in [
        ("api/api/task1", "api says hello"),
        ("redis/redis/task2", "redis says hello"),
    ] {
        logs.create_log_stream()
            .log_group_name("/ecs/timing")
            .log_stream_name(stream)
            .send()
            .await
            .unwrap();
        logs.put_log_events()
            .log_group_name("/ecs/timing")
            .log_stream_name(stream)
            .log_events(
                aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                    .timestamp(now)
                    .message(message)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
    }
    let api = Provisioner::new(&moto.url, &["logs", "api", "--since", "5m"])
        .expect(0)
        .await;
    assert!(
        api.stdout.contains("api says hello") && !api.stdout.contains("redis says hello"),
        "{}",
        api.stdout
    );
    let redis = Provisioner::new(&moto.url, &["logs", "redis"])
        .expect(0)
        .await;
    assert!(
        redis.stdout.contains("redis says hello"),
        "{}",
        redis.stdout
    );

    // `--output json`: one documented object per event and line.
    let json = Provisioner::new(
        &moto.url,
        &["logs", "api", "--since", "5m", "--output", "json"],
    )
    .expect(0)
    .await;
    let events: Vec<serde_json::Value> = json
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(events.len(), 1, "{}", json.stdout);
    support::assert_matches_output_schema(&events[0]);
    assert_eq!(events[0]["service"], "api");
    assert_eq!(events[0]["task"], "task1");
    assert_eq!(events[0]["stream"], "api/api/task1");
    assert_eq!(events[0]["message"], "api says hello");
}

/// `token` prints the API's write token (never printed by `up`); `token --rotate` replaces it
/// and restarts the API tasks so they read the new one.
#[tokio::test]
async fn token_prints_and_rotates_the_write_token() {
    let aws = TestAccount::start().await;
    let proxy = &aws.proxy;
    let up = aws.deploy().await;
    let token = proxy
        .provisioner(&["token"])
        .expect(0)
        .await
        .stdout
        .trim()
        .to_owned();
    assert_eq!(token.len(), 43, "{token}");
    assert!(!up.stdout.contains(&token) && !up.stderr.contains(&token));

    proxy.clear();
    proxy.provisioner(&["token", "--rotate"]).expect(0).await;
    let restarts = proxy.json_bodies("UpdateService");
    let body = &restarts[0];
    assert_eq!(
        (
            body["service"].as_str(),
            body["forceNewDeployment"].as_bool()
        ),
        (Some("api"), Some(true))
    );
    let rotated = proxy
        .provisioner(&["token"])
        .expect(0)
        .await
        .stdout
        .trim()
        .to_owned();
    assert_eq!(rotated.len(), 43);
    assert_ne!(rotated, token);

    // The spelling, `--rotate-token`, does the same.
    proxy
        .provisioner(&["token", "--rotate-token"])
        .expect(0)
        .await;
    let again = proxy
        .provisioner(&["token"])
        .expect(0)
        .await
        .stdout
        .trim()
        .to_owned();
    assert_ne!(again, rotated);
}
