//! Named write tokens (issue 11) end to end, the real binary against moto through the
//! recording proxy: `token --name NAME --create`, printing, `--rotate`, `--revoke`, `--list`
//! and `--dry-run`; what each stores in `/timing/api-tokens`, what the API's task definition
//! injects, and how the API's tasks are restarted; `up` keeping the tokens without a call that
//! changes anything, `down` removing them, an interrupted change finished by the next run, a
//! concurrent write reported; bad names refused before any AWS call, and a parameter of that
//! name without the app's tags neither used, changed nor deleted. Every `--output json`
//! document is checked against `docs/output.schema.json`.

use serde_json::{Value, json};

use crate::support::{
    self, ACCOUNT, Data, Moto, Proxy, REGION, Sdk, TestAccount, assert_matches_output_schema,
};

const PARAMETER: &str = "/timing/api-tokens";

fn tokens_arn() -> String {
    format!("arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/timing/api-tokens")
}

fn token_arn() -> String {
    format!("arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/timing/api-token")
}

/// The stored list as `(name, token)` pairs; `None` when the parameter does not exist.
async fn stored_tokens(sdk: &Sdk) -> Option<Vec<(String, String)>> {
    let list = sdk.secure_string(PARAMETER).await?;
    Some(
        list.split(',')
            .map(|entry| {
                let (name, token) = entry.split_once(':').unwrap();
                (name.to_owned(), token.to_owned())
            })
            .collect(),
    )
}

/// The revision the api service runs (`timing-api:N`) and its api container's secrets,
/// sorted.
async fn api_task(sdk: &Sdk) -> (String, Vec<(String, String)>) {
    let service = sdk.service("api").await;
    let definition = sdk
        .task_definition(service.task_definition().unwrap())
        .await;
    let mut secrets: Vec<(String, String)> = definition.container_definitions()[0]
        .secrets()
        .iter()
        .map(|s| (s.name().to_owned(), s.value_from().to_owned()))
        .collect();
    secrets.sort();
    (
        format!("{}:{}", definition.family().unwrap(), definition.revision()),
        secrets,
    )
}

fn names(entries: &[(String, String)]) -> Vec<&str> {
    entries.iter().map(|(name, _)| name.as_str()).collect()
}

fn token_of<'a>(entries: &'a [(String, String)], name: &str) -> &'a str {
    &entries.iter().find(|(n, _)| n == name).unwrap().1
}

/// The secrets the api container has with named tokens.
fn with_named_tokens() -> Vec<(String, String)> {
    vec![
        ("TIMING_API_TOKEN".to_owned(), token_arn()),
        ("TIMING_API_TOKENS".to_owned(), tokens_arn()),
    ]
}

/// `provisioner ARGS --output json`, which must exit with `code`: its document, checked
/// against the schema.
async fn json(proxy: &Proxy, args: &[&str], code: i32) -> Value {
    let document = proxy.provisioner(args).json().expect(code).await.json();
    assert_matches_output_schema(&document);
    document
}

/// The recorded UpdateService calls: `(taskDefinition, forceNewDeployment)` each, all on `api`.
fn api_updates(proxy: &Proxy) -> Vec<(Option<String>, bool)> {
    proxy
        .json_bodies("UpdateService")
        .into_iter()
        .map(|body| {
            assert_eq!(body["service"], "api", "{body}");
            (
                body["taskDefinition"].as_str().map(|arn| {
                    arn.rsplit('/').next().unwrap().to_owned() // timing-api:N
                }),
                body["forceNewDeployment"] == true,
            )
        })
        .collect()
}

fn notes(document: &Value) -> String {
    document["notes"].to_string()
}

/// Two timers' tokens, one parameter: created (the first adds the secret in a new revision and
/// moves the API to it, the second only replaces the tasks), kept when created again, printed,
/// kept by a no-op `up`, one rotated without touching the other, listed by name only, an
/// unknown one refused naming the known ones, revoked one by one (the last one takes the
/// secret out before the parameter goes), and a dry run changing nothing.
#[tokio::test]
async fn two_timers_tokens_are_created_rotated_listed_and_revoked_by_name() {
    let aws = TestAccount::start().await;
    let proxy = &aws.proxy;
    aws.deploy().await;
    let sdk = Sdk::new(&aws.moto).await;
    assert_eq!(
        api_task(&sdk).await,
        (
            "timing-api:1".to_owned(),
            vec![("TIMING_API_TOKEN".to_owned(), token_arn())]
        )
    );
    let listed = json(proxy, &["token", "--list"], 0).await;
    assert_eq!(listed["names"], json!([]));

    // The first named token: the parameter created with the app's tags, the secret added to a
    // new revision, the API moved onto it.
    proxy.clear();
    let created = json(proxy, &["token", "--name", "timer-1", "--create"], 0).await;
    assert_eq!(
        (
            &created["name"],
            &created["changed"],
            &created["rotated"],
            created.get("token")
        ),
        (&json!("timer-1"), &json!(true), &json!(false), None),
        "{created:#}"
    );
    let stored = stored_tokens(&sdk).await.unwrap();
    assert_eq!(names(&stored), ["timer-1"]);
    let timer_1 = token_of(&stored, "timer-1").to_owned();
    assert_eq!(timer_1.len(), 43);
    assert_eq!(
        sdk.parameter_tags(PARAMETER).await,
        [
            ("app".to_owned(), "timing".to_owned()),
            ("managed-by".to_owned(), "provisioner".to_owned())
        ]
    );
    assert_eq!(
        api_task(&sdk).await,
        ("timing-api:2".to_owned(), with_named_tokens())
    );
    assert_eq!(
        api_updates(proxy),
        [(Some("timing-api:2".to_owned()), true)]
    );
    // The value reached no output and no request but the one that stored it.
    assert!(!created.to_string().contains(&timer_1));
    for call in proxy.calls() {
        if call.operation != "PutParameter" {
            assert!(!call.body.contains(&timer_1), "{} sent it", call.operation);
        }
    }

    // The second: in the same parameter; the revision has the secret, so the tasks are only
    // replaced.
    proxy.clear();
    proxy
        .provisioner(&["token", "--name", "timer-2", "--create"])
        .expect(0)
        .await;
    let stored = stored_tokens(&sdk).await.unwrap();
    assert_eq!(names(&stored), ["timer-1", "timer-2"]);
    assert_eq!(token_of(&stored, "timer-1"), timer_1);
    let timer_2 = token_of(&stored, "timer-2").to_owned();
    assert_ne!(timer_2, timer_1);
    assert_eq!(api_updates(proxy), [(None, true)]);
    assert!(
        !proxy
            .mutating()
            .contains(&"RegisterTaskDefinition".to_owned())
    );
    assert_eq!(api_task(&sdk).await.0, "timing-api:2");

    // Created again: kept as it is, nothing changes.
    proxy.clear();
    let kept = json(proxy, &["token", "--name", "timer-1", "--create"], 0).await;
    assert_eq!(kept["changed"], false);
    assert!(notes(&kept).contains("kept"), "{kept:#}");
    assert_eq!(proxy.mutating(), Vec::<String>::new());
    assert_eq!(stored_tokens(&sdk).await.unwrap(), stored);

    // Printed by name, in text alone on its line, in JSON with its name.
    let printed = proxy
        .provisioner(&["token", "--name", "timer-1"])
        .expect(0)
        .await;
    assert_eq!(printed.stdout, format!("{timer_1}\n"));
    let printed = json(proxy, &["token", "--name", "timer-2"], 0).await;
    assert_eq!(
        (&printed["name"], &printed["token"]),
        (&json!("timer-2"), &json!(timer_2))
    );

    // `up` keeps them: nothing to change, not one mutating call.
    proxy.clear();
    proxy
        .provisioner(&["up", "--keep-image", "--no-wait"])
        .expect(0)
        .await;
    assert_eq!(proxy.mutating(), Vec::<String>::new());
    assert_eq!(
        api_task(&sdk).await,
        ("timing-api:2".to_owned(), with_named_tokens())
    );
    let plan = json(proxy, &["plan", "--keep-image"], 0).await;
    assert!(
        plan["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == PARAMETER && c["action"] == "unchanged"),
        "{plan:#}"
    );

    // Rotating one: its value changes, the other's not; the tasks replaced.
    proxy.clear();
    let rotated = json(proxy, &["token", "--name", "timer-1", "--rotate"], 0).await;
    assert_eq!(rotated["rotated"], true);
    assert!(rotated.get("token").is_none());
    let stored = stored_tokens(&sdk).await.unwrap();
    assert_eq!(names(&stored), ["timer-1", "timer-2"]);
    assert_ne!(token_of(&stored, "timer-1"), timer_1);
    assert_eq!(token_of(&stored, "timer-2"), timer_2);
    assert_eq!(api_updates(proxy), [(None, true)]);
    assert_eq!(proxy.mutating(), ["PutParameter", "UpdateService"]);

    // Listed: the names, never a value.
    let listed = proxy.provisioner(&["token", "--list"]).expect(0).await;
    assert_eq!(listed.stdout, "timer-1\ntimer-2\n");
    let listed = json(proxy, &["token", "--list"], 0).await;
    assert_eq!(listed["names"], json!(["timer-1", "timer-2"]));
    for (_, token) in &stored {
        assert!(!listed.to_string().contains(token.as_str()));
    }

    // An unknown name: exit 1 naming the known ones; nothing changes.
    proxy.clear();
    let missing = proxy
        .provisioner(&["token", "--name", "timer-9"])
        .expect(1)
        .await;
    assert!(
        missing.stderr.contains(
            "app `timing` has no token named `timer-9` (its named tokens: timer-1, timer-2)"
        ),
        "{}",
        missing.stderr
    );
    let missing = json(proxy, &["token", "--name", "timer-9", "--rotate"], 1).await;
    assert_eq!(missing["error"]["kind"], "unknown_token");
    assert_eq!(proxy.mutating(), Vec::<String>::new());

    // A dry run: exit 2 with what would change, and nothing changed.
    proxy.clear();
    let dry = json(
        proxy,
        &["token", "--name", "timer-1", "--revoke", "--dry-run"],
        2,
    )
    .await;
    assert_eq!(
        (&dry["dry_run"], &dry["changed"]),
        (&json!(true), &json!(true))
    );
    assert_eq!(proxy.mutating(), Vec::<String>::new());
    assert_eq!(stored_tokens(&sdk).await.unwrap(), stored);

    // Revoked: out of the list, the tasks replaced; revoked again: nothing to do.
    proxy.clear();
    proxy
        .provisioner(&["token", "--name", "timer-1", "--revoke"])
        .expect(0)
        .await;
    assert_eq!(names(&stored_tokens(&sdk).await.unwrap()), ["timer-2"]);
    assert_eq!(api_updates(proxy), [(None, true)]);
    proxy.clear();
    let again = json(proxy, &["token", "--name", "timer-1", "--revoke"], 0).await;
    assert_eq!(again["changed"], false);
    assert!(notes(&again).contains("nothing to revoke"), "{again:#}");
    assert_eq!(proxy.mutating(), Vec::<String>::new());

    // The last one: a revision without the secret, the API moved onto it, and only then the
    // parameter deleted.
    proxy.clear();
    proxy
        .provisioner(&["token", "--name", "timer-2", "--revoke"])
        .expect(0)
        .await;
    assert_eq!(stored_tokens(&sdk).await, None);
    assert_eq!(
        api_task(&sdk).await,
        (
            "timing-api:3".to_owned(),
            vec![("TIMING_API_TOKEN".to_owned(), token_arn())]
        )
    );
    assert_eq!(
        proxy.mutating(),
        ["RegisterTaskDefinition", "UpdateService", "DeleteParameter"]
    );
    assert_eq!(
        json(proxy, &["token", "--list"], 0).await["names"],
        json!([])
    );
    proxy.clear();
    proxy
        .provisioner(&["up", "--keep-image", "--no-wait"])
        .expect(0)
        .await;
    assert_eq!(proxy.mutating(), Vec::<String>::new());
}

/// A run cut off between its write and the restart leaves tasks on the old list: the next
/// change, even one that changes nothing, replaces them. A write that another run's write came
/// before is reported. A stopped API is moved to the new revision and stays stopped. `down`
/// removes the parameter.
#[tokio::test]
async fn an_interrupted_change_is_finished_a_concurrent_one_reported_and_down_removes_them() {
    let aws = TestAccount::start().await;
    let proxy = &aws.proxy;
    aws.deploy().await;
    let sdk = Sdk::new(&aws.moto).await;
    proxy
        .provisioner(&["token", "--name", "timer-1", "--create"])
        .expect(0)
        .await;

    // As a rotation cut off after its write would leave it: a new value, the old tasks.
    let rotated = format!("timer-1:{}", "r".repeat(43));
    sdk.ssm
        .put_parameter()
        .name(PARAMETER)
        .value(&rotated)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .overwrite(true)
        .send()
        .await
        .unwrap();
    proxy.clear();
    let healed = json(proxy, &["token", "--name", "timer-1", "--create"], 0).await;
    assert_eq!(api_updates(proxy), [(None, true)]);
    assert_eq!(healed["changed"], true);
    assert!(notes(&healed).contains("cut off"), "{healed:#}");
    proxy.clear();
    proxy
        .provisioner(&["token", "--name", "timer-1", "--create"])
        .expect(0)
        .await;
    assert_eq!(proxy.mutating(), Vec::<String>::new());

    // Another run's write between this run's read and its own: SSM's version skips one.
    proxy.rewrite("PutParameter", |body| {
        let mut answer: Value = serde_json::from_str(body).unwrap();
        answer["Version"] = (answer["Version"].as_i64().unwrap() + 1).into();
        answer.to_string()
    });
    let concurrent = proxy
        .provisioner(&["token", "--name", "timer-2", "--create"])
        .expect(1)
        .await;
    assert!(
        concurrent
            .stderr
            .contains("SSM parameter /timing/api-tokens was changed by another run"),
        "{}",
        concurrent.stderr
    );
    proxy.stop_rewriting();
    // Its write stands; running it again replaces the tasks it did not get to.
    proxy.clear();
    proxy
        .provisioner(&["token", "--name", "timer-2", "--create"])
        .expect(0)
        .await;
    assert_eq!(api_updates(proxy), [(None, true)]);

    // A stopped API: moved to the revision without the secret, still stopped.
    for name in ["timer-1", "timer-2"] {
        proxy
            .provisioner(&["token", "--name", name, "--revoke"])
            .expect(0)
            .await;
    }
    proxy.provisioner(&["stop", "--no-wait"]).expect(0).await;
    proxy.clear();
    let stopped = json(proxy, &["token", "--name", "timer-3", "--create"], 0).await;
    assert!(notes(&stopped).contains("stopped"), "{stopped:#}");
    assert_eq!(
        api_task(&sdk).await,
        ("timing-api:4".to_owned(), with_named_tokens())
    );
    assert_eq!(
        api_updates(proxy),
        [(Some("timing-api:4".to_owned()), true)]
    );
    assert_eq!(sdk.service("api").await.desired_count(), 0);

    // `down` deletes it with everything else.
    let down = json(proxy, &["down", "--yes", "--delete-data"], 0).await;
    assert!(
        down["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == PARAMETER && c["action"] == "delete"),
        "{down:#}"
    );
    assert_eq!(stored_tokens(&sdk).await, None);
    support::assert_nothing_left(&aws.moto, "timing", Data::Deleted).await;
}

/// Names the service would refuse, `default`, and flags that do not go together are refused
/// before any AWS call; a change on an app that is not deployed changes nothing.
#[tokio::test]
async fn bad_token_requests_are_refused_before_any_aws_call() {
    let moto = Moto::start().await;
    let proxy = Proxy::start(&moto).await;
    let too_long = "x".repeat(65);
    for name in [
        "",
        "timer 1",
        "timer:1",
        "a,b",
        "zürich",
        "t/1",
        too_long.as_str(),
    ] {
        for action in [&["--create"][..], &["--rotate"], &["--revoke"], &[]] {
            let refused = proxy
                .provisioner(&["token", "--name", name])
                .args(action)
                .json()
                .expect(1)
                .await;
            assert!(
                refused.stderr.contains("invalid --name")
                    && refused.stderr.contains("1 to 64 letters"),
                "{name:?} {action:?}: {}",
                refused.stderr
            );
            let document = refused.json();
            assert_matches_output_schema(&document);
            assert_eq!(document["error"]["kind"], "bad_input");
        }
    }
    let reserved = proxy
        .provisioner(&["token", "--name", "default", "--create"])
        .expect(1)
        .await;
    assert!(
        reserved.stderr.contains("single token"),
        "{}",
        reserved.stderr
    );
    for flags in [
        &["token", "--create"][..],
        &["token", "--revoke"],
        &["token", "--list", "--name", "a"],
        &["token", "--name", "a", "--create", "--revoke"],
        &["token", "--name", "a", "--rotate", "--create"],
    ] {
        let usage = proxy.provisioner(flags).expect(2).await;
        assert!(
            usage.stderr.contains("Usage"),
            "{flags:?}: {}",
            usage.stderr
        );
    }
    assert!(
        proxy.calls().is_empty(),
        "AWS was called: {:?}",
        proxy.calls()
    );

    let absent = json(&proxy, &["token", "--name", "timer-1", "--create"], 1).await;
    assert_eq!(absent["error"]["kind"], "not_deployed");
    assert_eq!(proxy.mutating(), Vec::<String>::new());
}

/// A `/timing/api-tokens` without the app's tags is someone else's: no `token` form reads,
/// changes or injects it, `up` stops before its first write, `down` leaves it and says so.
#[tokio::test]
async fn a_foreign_tokens_parameter_is_neither_adopted_nor_deleted() {
    let aws = TestAccount::start().await;
    let proxy = &aws.proxy;
    aws.deploy().await;
    let sdk = Sdk::new(&aws.moto).await;
    let theirs = format!("someone:{}", "s".repeat(43));
    sdk.ssm
        .put_parameter()
        .name(PARAMETER)
        .value(&theirs)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .unwrap();
    let refusal = "SSM parameter /timing/api-tokens exists but is not app `timing`'s";

    proxy.clear();
    for args in [
        &["token", "--name", "timer-1", "--create"][..],
        &["token", "--name", "someone"],
        &["token", "--name", "someone", "--rotate"],
        &["token", "--name", "someone", "--revoke"],
        &["token", "--list"],
        &["up", "--keep-image", "--no-wait"],
    ] {
        let refused = proxy.provisioner(args).expect(1).await;
        assert!(
            refused.stderr.contains(refusal),
            "{args:?}: {}",
            refused.stderr
        );
        assert!(!refused.stdout.contains(&theirs) && !refused.stderr.contains(&theirs));
    }
    assert_eq!(proxy.mutating(), Vec::<String>::new());
    assert_eq!(api_task(&sdk).await.0, "timing-api:1");

    let down = proxy.provisioner(&["down", "--yes"]).expect(1).await;
    assert!(down.stderr.contains(refusal), "{}", down.stderr);
    let deleted: Vec<String> = proxy
        .calls()
        .into_iter()
        .filter(|c| c.operation == "DeleteParameter")
        .map(|c| c.body)
        .collect();
    assert!(
        deleted.iter().all(|body| !body.contains("api-tokens")),
        "{deleted:?}"
    );
    assert_eq!(
        stored_tokens(&sdk).await,
        Some(vec![("someone".to_owned(), "s".repeat(43))])
    );
}
