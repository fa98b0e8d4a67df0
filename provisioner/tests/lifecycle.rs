//! A whole lifecycle against the emulator (plan, cold and no-op `up`, Redis AUTH, status, logs,
//! token and its rotation, named tokens, stop, start, `down --delete-data`, and a command on a
//! missing app),
//! each step with `--output json`, checked two ways:
//!
//! - every document printed matches `docs/output.schema.json` (no undocumented field, no
//!   missing one, the documented types);
//! - every AWS request, as the recording proxy saw it, is an action that some Allow statement
//!   of `policies/deployer.json` grants: the least-privilege policy CI deploys with covers what
//!   the provisioner really calls. This checks actions, not resources or conditions: moto
//!   evaluates no IAM policy, so whether the ARNs and tag conditions of each statement match
//!   what the calls touch is written down in the statements' IDs and reviewed by hand;
//! - one condition is checked call by call, because it is what stops a push to `main` from
//!   becoming account administrator: every statement that lets the deployer create a role or
//!   change a role's permissions requires the app's permissions boundary
//!   (`iam:PermissionsBoundary`), every `CreateRole` of the lifecycle sends exactly that
//!   boundary, and every policy change is on a role created with it.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::support::protocol::form_field;
use crate::support::{self, Moto, TestAccount, assert_matches_output_schema, repo_root};

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
    let aws = TestAccount::start().await;
    let image = aws.image.as_str();
    let boundary = create_the_boundary_as_the_ci_setup_does(&aws.moto).await;

    let steps: &[(&[&str], i32)] = &[
        (&["plan"], 2),
        // With a custom domain, so its calls are checked against the policy too.
        (
            &[
                "up",
                "--image",
                image,
                "--domain",
                "timing.example.org",
                "--certificate-arn",
                "arn:aws:acm:eu-north-1:123456789012:certificate/0a1b2c3d",
            ],
            0,
        ),
        (&["up", "--keep-image"], 0),
        (&["up", "--keep-image", "--redis-password", "--no-wait"], 0),
        (&["status"], 0),
        (&["logs", "api", "--since", "5m"], 0),
        (&["token"], 0),
        (&["token", "--rotate"], 0),
        // Named tokens (issue 11): every form, a dry run and an unknown name; one is left
        // for `down` to delete.
        (&["token", "--list"], 0),
        (&["token", "--name", "timer-1", "--create"], 0),
        (&["token", "--name", "timer-1"], 0),
        (&["token", "--name", "timer-1", "--rotate", "--dry-run"], 2),
        (&["token", "--name", "timer-1", "--rotate"], 0),
        (&["token", "--name", "timer-2", "--create"], 0),
        (&["token", "--list"], 0),
        (&["token", "--name", "timer-9"], 1),
        (&["token", "--name", "timer-1", "--revoke"], 0),
        (&["stop"], 0),
        (&["start"], 0),
        (&["down", "--yes", "--delete-data"], 0),
        (&["start", "--app", "ghost"], 1),
        (&["status", "--app", "ghost"], 0),
    ];
    let mut commands_seen = BTreeSet::new();
    for (args, code) in steps {
        let done = aws.provisioner(args).json().run().await;
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

    let text = std::fs::read_to_string(repo_root().join("policies/deployer.json")).unwrap();
    let policy: Value = serde_json::from_str(&text).unwrap();
    let allowed = allowed_actions(&policy);
    let called: BTreeSet<String> = aws
        .proxy
        .calls()
        .iter()
        .map(support::Call::action)
        .collect();
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
    assert_roles_are_created_and_changed_only_within(&policy, &boundary, &aws.proxy.calls());
}

/// `policies/task-role-boundary.json` made a managed policy, as `docs/ci.md` has the
/// administrator do once (the deploying role may not create or change it); its ARN.
async fn create_the_boundary_as_the_ci_setup_does(moto: &Moto) -> String {
    let text = std::fs::read_to_string(repo_root().join("policies/task-role-boundary.json"))
        .unwrap()
        .replace("${PARTITION}", "aws")
        .replace("${REGION}", support::REGION)
        .replace("${ACCOUNT_ID}", support::ACCOUNT)
        .replace("${LOG_GROUP}", "/ecs/timing")
        .replace("${APP}", "timing");
    let tag = |k: &str, v: &str| {
        aws_sdk_iam::types::Tag::builder()
            .key(k)
            .value(v)
            .build()
            .unwrap()
    };
    let iam = aws_sdk_iam::Client::new(&moto.sdk_config().await);
    iam.create_policy()
        .policy_name("timing-task-boundary")
        .policy_document(text)
        .tags(tag("app", "timing"))
        .tags(tag("managed-by", "provisioner"))
        .send()
        .await
        .unwrap()
        .policy()
        .unwrap()
        .arn()
        .unwrap()
        .to_owned()
}

/// Every Allow statement granting a role creation or permission change requires the boundary
/// `boundary` (the deployer policy's `${...}` filled for this account), and the calls of the
/// lifecycle meet that condition: each `CreateRole` sends it, each other change is on a role
/// created with it.
fn assert_roles_are_created_and_changed_only_within(
    policy: &Value,
    boundary: &str,
    calls: &[support::Call],
) {
    const NEEDS_BOUNDARY: &[&str] = &[
        "iam:CreateRole",
        "iam:PutRolePolicy",
        "iam:DeleteRolePolicy",
        "iam:AttachRolePolicy",
        "iam:DetachRolePolicy",
        "iam:PutRolePermissionsBoundary",
    ];
    let filled = |text: &str| {
        text.replace("${PARTITION}", "aws")
            .replace("${ACCOUNT_ID}", support::ACCOUNT)
            .replace("${APP}", "timing")
    };
    let statements = policy["Statement"].as_array().unwrap();
    for action in NEEDS_BOUNDARY {
        let granting: Vec<&Value> = statements
            .iter()
            .filter(|s| s["Effect"] == "Allow")
            .filter(|s| {
                allowed_actions(&serde_json::json!({"Statement": [s]}))
                    .iter()
                    .any(|p| action_matches(p, action))
            })
            .collect();
        assert!(!granting.is_empty(), "{action} is not granted at all");
        for statement in granting {
            let required = statement["Condition"]["StringEquals"]["iam:PermissionsBoundary"]
                .as_str()
                .map(filled);
            assert_eq!(
                required.as_deref(),
                Some(boundary),
                "statement {} grants {action} without the boundary condition",
                statement["Sid"]
            );
        }
    }
    let mut bounded_roles = BTreeSet::new();
    let mut created = 0;
    for call in calls.iter().filter(|c| c.service == "iam") {
        let role = form_field(&call.body, "RoleName");
        match call.operation.as_str() {
            "CreateRole" => {
                created += 1;
                assert_eq!(
                    form_field(&call.body, "PermissionsBoundary").as_deref(),
                    Some(boundary),
                    "role {role:?} created without the boundary"
                );
                bounded_roles.insert(role.unwrap());
            }
            "PutRolePermissionsBoundary" => {
                assert_eq!(
                    form_field(&call.body, "PermissionsBoundary").as_deref(),
                    Some(boundary)
                );
                bounded_roles.insert(role.unwrap());
            }
            operation if NEEDS_BOUNDARY.contains(&format!("iam:{operation}").as_str()) => {
                let role = role.unwrap();
                assert!(
                    bounded_roles.contains(&role),
                    "{operation} on {role}, which was not given the boundary"
                );
            }
            _ => {}
        }
    }
    assert_eq!(created, 3, "the lifecycle creates the three task roles");
}
