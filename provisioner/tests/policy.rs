//! `policies/deployer.json`, the least-privilege policy of the role CI deploys with, against
//! what the provisioner really calls: every AWS request of a whole lifecycle (plan, cold and
//! no-op `up`, Redis AUTH, status, logs, token rotation, stop, start, `down --delete-data`),
//! as the recording proxy saw it, must be an action some Allow statement of the policy grants.
//!
//! This checks actions, not resources or conditions: moto evaluates no IAM policy, so whether
//! the ARNs and tag conditions of each statement match what the calls touch is written down
//! in the policy's statement IDs and reviewed by hand.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::support::{self, Moto, Proxy, repo_root, run, seed_image};

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

/// Every call of a whole lifecycle is granted by `policies/deployer.json`.
#[tokio::test]
async fn the_deployer_policy_grants_every_call_of_a_whole_lifecycle() {
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
    ];
    for (args, code) in steps {
        let done = run(&proxy.url, &root, args).await;
        assert_eq!(
            done.code, *code,
            "{args:?}\nstdout:\n{}\nstderr:\n{}",
            done.stdout, done.stderr
        );
    }

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
