//! A whole lifecycle against the emulator (plan, cold and no-op `up`, Redis AUTH, status, logs,
//! token and its rotation, stop, start, `down --delete-data`, and a command on a missing app),
//! each step with `--output json`, checked two ways:
//!
//! - every document printed matches `docs/output.schema.json` (no undocumented field, no
//!   missing one, the documented types);
//! - every AWS request, as the recording proxy saw it, is an action that some Allow statement
//!   of `policies/deployer.json` grants: the least-privilege policy CI deploys with covers what
//!   the provisioner really calls. This checks actions, not resources or conditions: moto
//!   evaluates no IAM policy, so whether the ARNs and tag conditions of each statement match
//!   what the calls touch is written down in the statements' IDs and reviewed by hand.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::support::{self, Moto, Proxy, assert_matches_output_schema, repo_root, run, seed_image};

/// The actions the Allow statements of a policy document grant (wildcards kept).
fn allowed_actions(policy: &Value) -> Vec<String> {
    let statements = match &policy["Statement"] {
        Value::Array(statements) => statements.clone(),
        single => vec![single.clone()],
    };
    statements
        .iter()
        .filter(|s| s["Effect"] == "Allow")
        .flat_map(|s| match &s["Action"] {
            Value::String(action) => vec![action.clone()],
            Value::Array(actions) => actions
                .iter()
                .filter_map(|a| a.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        })
        .collect()
}

/// IAM's action matching: case-insensitive, `*` any run of characters, `?` one character.
fn action_matches(pattern: &str, action: &str) -> bool {
    fn matches(p: &[u8], a: &[u8]) -> bool {
        match (p.first(), a.first()) {
            (None, None) => true,
            (Some(b'*'), _) => matches(&p[1..], a) || (!a.is_empty() && matches(p, &a[1..])),
            (Some(b'?'), Some(_)) => matches(&p[1..], &a[1..]),
            (Some(x), Some(y)) if x.eq_ignore_ascii_case(y) => matches(&p[1..], &a[1..]),
            _ => false,
        }
    }
    matches(pattern.as_bytes(), action.as_bytes())
}

#[test]
fn action_matching_follows_iam() {
    assert!(action_matches("ecs:Describe*", "ecs:DescribeServices"));
    assert!(action_matches(
        "ECS:describeservices",
        "ecs:DescribeServices"
    ));
    assert!(action_matches("ecs:*", "ecs:CreateService"));
    assert!(!action_matches("ecs:Describe*", "ecs:DeleteService"));
    assert!(!action_matches("ecs:CreateService", "ecs:CreateServices"));
    assert!(!action_matches("ecr:*", "ecs:CreateService"));
}

/// The schema is strict where it matters: an undocumented field, a missing one, a wrong
/// type or an unknown enum value is a mismatch.
#[test]
fn the_output_schema_rejects_what_is_not_documented() {
    let status = serde_json::json!({
        "schema_version": 1, "command": "status", "app": "timing", "region": "eu-north-1",
        "account": "123456789012", "deployed": false, "services": [], "endpoint": null,
        "data_bytes": null, "aws_calls": {"read": 2, "mutating": 0, "mutating_operations": {}}
    });
    assert_eq!(support::output_schema_errors(&status), Vec::<String>::new());
    let broken = |edit: fn(&mut Value)| {
        let mut document = status.clone();
        edit(&mut document);
        support::output_schema_errors(&document)
    };
    assert!(!broken(|d| d["surprise"] = 1.into()).is_empty());
    assert!(!broken(|d| d["deployed"] = "no".into()).is_empty());
    assert!(!broken(|d| d["schema_version"] = 2.into()).is_empty());
    assert!(
        !broken(|d| {
            d.as_object_mut().unwrap().remove("aws_calls");
        })
        .is_empty()
    );
    let report = serde_json::json!({
        "schema_version": 1, "command": "up", "app": "timing", "region": "eu-north-1",
        "account": "123456789012", "dry_run": false, "changed": true,
        "changes": [{"kind": "ecs-cluster", "name": "timing", "action": "explode"}],
        "endpoint": null, "aws_calls": {"read": 1, "mutating": 1, "mutating_operations": {}},
        "notes": []
    });
    assert!(!support::output_schema_errors(&report).is_empty());
}

/// Every JSON document of a whole lifecycle matches the schema, and every call it makes is
/// granted by `policies/deployer.json`.
#[tokio::test]
async fn a_whole_lifecycle_prints_documented_json_and_calls_only_what_the_deployer_policy_grants() {
    let moto = Moto::start().await;
    let proxy = Proxy::start(&moto).await;
    let (image, _) = seed_image(&moto, "timing", "0a1b2c3").await;
    let root = repo_root();

    let steps: &[(&[&str], i32)] = &[
        (&["plan"], 2),
        (&["up", "--image", &image], 0),
        (&["up", "--keep-image"], 0),
        (&["up", "--keep-image", "--redis-password", "--no-wait"], 0),
        (&["status"], 0),
        (&["logs", "api", "--since", "5m"], 0),
        (&["token"], 0),
        (&["token", "--rotate"], 0),
        (&["stop"], 0),
        (&["start"], 0),
        (&["down", "--yes", "--delete-data"], 0),
        (&["start", "--app", "ghost"], 1),
        (&["status", "--app", "ghost"], 0),
    ];
    let mut commands_seen = BTreeSet::new();
    for (args, code) in steps {
        let mut args = args.to_vec();
        args.extend(["--output", "json"]);
        let done = run(&proxy.url, &root, &args).await;
        assert_eq!(
            done.code, *code,
            "{args:?}\nstdout:\n{}\nstderr:\n{}",
            done.stdout, done.stderr
        );
        if args[0] == "logs" {
            // JSON Lines; moto holds no log events of tasks it never ran (operations.rs
            // checks lines of events put there).
            for line in done.stdout.lines() {
                assert_matches_output_schema(&serde_json::from_str(line).unwrap());
            }
            continue;
        }
        let document = done.json();
        assert_matches_output_schema(&document);
        commands_seen.insert(document["command"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        commands_seen,
        ["down", "plan", "start", "status", "stop", "token", "up"]
            .map(str::to_owned)
            .into(),
    );

    let text = std::fs::read_to_string(root.join("policies/deployer.json")).unwrap();
    let policy: Value = serde_json::from_str(&text).unwrap();
    let allowed = allowed_actions(&policy);
    let called: BTreeSet<String> = proxy.calls().iter().map(support::Call::action).collect();
    assert!(called.len() > 60, "too few distinct calls: {called:?}");
    assert!(
        called.iter().all(|a| !a.starts_with("unknown:")),
        "a call without a signed service: {called:?}"
    );
    let denied: Vec<&String> = called
        .iter()
        .filter(|action| !allowed.iter().any(|p| action_matches(p, action)))
        .collect();
    assert!(
        denied.is_empty(),
        "policies/deployer.json does not grant {denied:#?}"
    );
}
