//! Issue 6 end to end, against moto through the recording proxy: Redis's data on EFS and the
//! secrets in SSM Parameter Store, checked through the SDK after each command.
//!
//! moto runs no containers, so nothing here mounts the file system or reads a secret at
//! task start: these tests show the resources, their links (security group rules, task
//! role condition, task-definition volume and `secrets`) and the lifecycle (`up` twice,
//! `down` keeping the data, `up` reattaching it, `down --delete-data`). moto's EFS makes file
//! systems and mount targets `available` at once (AWS: seconds and about 90 s), reports a
//! size of 0, and, like AWS, refuses to delete a file system that has mount targets.
//! That Redis with these settings keeps every acknowledged write is `tests/persistence.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::collections::BTreeSet;

use support::{ACCOUNT, IMAGE_TAG, REGION, Sdk, TestAccount, seed_image};

const TOKEN_PARAMETER: &str = "/timing/api-token";

fn token_arn() -> String {
    format!("arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/timing/api-token")
}

fn change<'a>(report: &'a serde_json::Value, kind: &str) -> Vec<&'a serde_json::Value> {
    report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == kind)
        .collect()
}

/// The default VPC's default subnets' zones (the tasks' subnets).
async fn task_zones(aws: &Sdk) -> BTreeSet<String> {
    aws.default_subnets()
        .await
        .iter()
        .map(|s| s.availability_zone().unwrap().to_owned())
        .collect()
}

/// `plan` → `up` → `up` (no mutating call, same token) → `down` (data kept, parameter gone)
/// → `up` (the same file system reattached) → `down --delete-data` (nothing left).
#[tokio::test]
async fn race_data_survives_down_and_secrets_stay_out_of_task_definitions() {
    let account = TestAccount::start().await;
    let (proxy, image) = (&account.proxy, account.image.as_str());
    let aws = Sdk::new(&account.moto).await;

    // `plan` on an empty account lists the data and the token, and creates nothing.
    let plan = proxy
        .provisioner(&["plan", "--output", "json"])
        .expect(2)
        .await;
    let plan = plan.json();
    assert_eq!(change(&plan, "efs-file-system")[0]["action"], "create");
    assert_eq!(change(&plan, "efs-access-point")[0]["action"], "create");
    assert!(!change(&plan, "efs-mount-target").is_empty());
    assert_eq!(change(&plan, "ssm-parameter")[0]["action"], "create");
    assert!(proxy.mutating().is_empty(), "{:?}", proxy.mutating());

    let up = proxy
        .provisioner(&["up", "--image", image, "--output", "json", "--no-wait"])
        .expect(0)
        .await;

    // The file system: encrypted, tagged, one mount target per zone of the task subnets,
    // each in the `timing-efs` group.
    let file_systems = aws.file_systems().await;
    assert_eq!(file_systems.len(), 1);
    let fs = &file_systems[0];
    let fs_id = fs.file_system_id().to_owned();
    assert_eq!(fs.encrypted(), Some(true));
    let tags: BTreeSet<(&str, &str)> = fs.tags().iter().map(|t| (t.key(), t.value())).collect();
    for tag in [
        ("app", "timing"),
        ("managed-by", "provisioner"),
        ("Name", "timing-redis-data"),
    ] {
        assert!(tags.contains(&tag), "{tags:?}");
    }
    let efs_group = aws.group("timing-efs").await.expect("the efs group");
    let redis_group = aws.group("timing-redis").await.unwrap();
    let mount_targets = aws.mount_targets(&fs_id).await;
    let zones: BTreeSet<String> = mount_targets
        .iter()
        .map(|mt| mt.availability_zone_name().unwrap().to_owned())
        .collect();
    assert_eq!(zones, task_zones(&aws).await);
    assert_eq!(
        mount_targets.len(),
        zones.len(),
        "one mount target per zone"
    );
    for mt in &mount_targets {
        let groups = aws
            .efs
            .describe_mount_target_security_groups()
            .mount_target_id(mt.mount_target_id())
            .send()
            .await
            .unwrap();
        assert_eq!(
            groups.security_groups(),
            [efs_group.group_id().unwrap().to_owned()]
        );
    }

    // NFS from the Redis tasks only.
    let rules = efs_group.ip_permissions();
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert_eq!(
        (
            rules[0].ip_protocol(),
            rules[0].from_port(),
            rules[0].to_port()
        ),
        (Some("tcp"), Some(2049), Some(2049))
    );
    assert!(rules[0].ip_ranges().is_empty() && rules[0].ipv6_ranges().is_empty());
    let sources: Vec<&str> = rules[0]
        .user_id_group_pairs()
        .iter()
        .map(|p| p.group_id().unwrap())
        .collect();
    assert_eq!(sources, [redis_group.group_id().unwrap()]);

    // The access point: Redis's user, its own directory.
    let access_points = aws.access_points(&fs_id).await;
    assert_eq!(access_points.len(), 1);
    let ap = &access_points[0];
    let ap_id = ap.access_point_id().unwrap().to_owned();
    let user = ap.posix_user().unwrap();
    assert_eq!((user.uid(), user.gid()), (999, 1000));
    let root_directory = ap.root_directory().unwrap();
    assert_eq!(root_directory.path(), Some("/redis"));
    let creation = root_directory.creation_info().unwrap();
    assert_eq!(
        (
            creation.owner_uid(),
            creation.owner_gid(),
            creation.permissions()
        ),
        (999, 1000, "750")
    );

    // The Redis task definition: the volume through the access point with TLS and IAM, the
    // mount on /data, AOF + snapshots, time for a final write on SIGTERM, its own role.
    let redis_task = aws.task_definition("timing-redis").await;
    let volume = &redis_task.volumes()[0];
    let efs_volume = volume.efs_volume_configuration().unwrap();
    assert_eq!(efs_volume.file_system_id(), fs_id);
    assert_eq!(
        efs_volume.transit_encryption(),
        Some(&aws_sdk_ecs::types::EfsTransitEncryption::Enabled)
    );
    let authorization = efs_volume.authorization_config().unwrap();
    assert_eq!(authorization.access_point_id(), Some(ap_id.as_str()));
    assert_eq!(
        authorization.iam(),
        Some(&aws_sdk_ecs::types::EfsAuthorizationConfigIam::Enabled)
    );
    let redis_container = &redis_task.container_definitions()[0];
    let mount = &redis_container.mount_points()[0];
    assert_eq!(
        (mount.source_volume(), mount.container_path()),
        (volume.name(), Some("/data"))
    );
    let command = redis_container.command().join(" ");
    for setting in [
        "--dir /data",
        "--appendonly yes",
        "--appendfsync everysec",
        "--save 20 1",
    ] {
        assert!(command.contains(setting), "{command}");
    }
    assert_eq!(redis_container.stop_timeout(), Some(120));
    assert_eq!(
        redis_task.task_role_arn(),
        Some(format!("arn:aws:iam::{ACCOUNT}:role/timing-redis-task").as_str())
    );

    // The Redis task role may mount this file system through this access point, nothing else.
    let policy = aws.role_policy("timing-redis-task", "efs").await;
    let statements = policy["Statement"].as_array().unwrap();
    assert_eq!(statements.len(), 1, "{policy:#}");
    let statement = &statements[0];
    assert_eq!(
        statement["Action"],
        serde_json::json!([
            "elasticfilesystem:ClientMount",
            "elasticfilesystem:ClientWrite"
        ])
    );
    assert_eq!(statement["Resource"], fs.file_system_arn().unwrap());
    assert_eq!(
        statement["Condition"]["StringEquals"]["elasticfilesystem:AccessPointArn"],
        ap.access_point_arn().unwrap()
    );

    // The file system's own policy: NFS clients only as that role, through that access
    // point, over TLS (without a policy EFS lets any client that reaches it mount it).
    let fs_policy = aws
        .efs
        .describe_file_system_policy()
        .file_system_id(&fs_id)
        .send()
        .await
        .unwrap();
    let fs_policy: serde_json::Value = serde_json::from_str(fs_policy.policy().unwrap()).unwrap();
    let condition = &fs_policy["Statement"][0]["Condition"];
    assert_eq!(
        condition["ArnEquals"]["aws:PrincipalArn"],
        format!("arn:aws:iam::{ACCOUNT}:role/timing-redis-task")
    );
    assert_eq!(
        condition["StringEquals"]["elasticfilesystem:AccessPointArn"],
        ap.access_point_arn().unwrap()
    );
    assert_eq!(condition["Bool"]["aws:SecureTransport"], "true");

    // The token: a SecureString, tagged, injected by ARN, in no task definition and no output.
    // (`secure_string` checks that it is a SecureString.)
    let token = aws
        .secure_string(TOKEN_PARAMETER)
        .await
        .expect("the token parameter");
    assert_eq!(token.len(), 43);
    assert!(
        aws.parameter_tags(TOKEN_PARAMETER)
            .await
            .contains(&("app".to_owned(), "timing".to_owned()))
    );
    let api_task = aws.task_definition("timing-api").await;
    let api_container = &api_task.container_definitions()[0];
    let secrets: Vec<(&str, &str)> = api_container
        .secrets()
        .iter()
        .map(|s| (s.name(), s.value_from()))
        .collect();
    assert_eq!(secrets, [("TIMING_API_TOKEN", token_arn().as_str())]);
    assert!(
        api_container
            .environment()
            .iter()
            .all(|e| e.name() != Some("TIMING_API_TOKEN"))
    );
    for shown in [
        format!("{api_task:?}"),
        format!("{redis_task:?}"),
        up.stdout.clone(),
        up.stderr.clone(),
    ] {
        assert!(!shown.contains(&token), "the token leaked");
    }
    for call in proxy.calls() {
        if call.operation == "RegisterTaskDefinition" {
            assert!(
                !call.body.contains(&token),
                "the token leaked into a task definition"
            );
        }
    }

    // The execution role may read exactly that parameter and the named tokens' (issue 11:
    // granted before they exist, so creating one changes no role).
    let policy = aws.role_policy("timing-task-execution", "secrets").await;
    assert_eq!(
        policy["Statement"],
        serde_json::json!([{
            "Sid": "ReadTheApiTokenParametersOnly",
            "Effect": "Allow",
            "Action": "ssm:GetParameters",
            "Resource": [
                token_arn(),
                format!("arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/timing/api-tokens")
            ],
        }])
    );

    // A second `up`: no mutating call, the same token.
    proxy.clear();
    let again = proxy
        .provisioner(&["up", "--keep-image", "--output", "json", "--no-wait"])
        .expect(0)
        .await;
    assert_eq!(proxy.mutating(), Vec::<String>::new());
    assert_eq!(again.json()["changed"], false);
    assert_eq!(aws.secure_string(TOKEN_PARAMETER).await.unwrap(), token);

    // A mount target removed by hand is put back, and only that changes.
    let victim = &mount_targets[0];
    aws.efs
        .delete_mount_target()
        .mount_target_id(victim.mount_target_id())
        .send()
        .await
        .unwrap();
    proxy.clear();
    proxy
        .provisioner(&["up", "--keep-image", "--no-wait"])
        .expect(0)
        .await;
    assert_eq!(proxy.mutating(), ["CreateMountTarget"]);
    let zones_now: BTreeSet<String> = aws
        .mount_targets(&fs_id)
        .await
        .iter()
        .map(|mt| mt.availability_zone_name().unwrap().to_owned())
        .collect();
    assert_eq!(zones_now, zones);

    // `down` keeps the data and says so; the token and the role go, so do the mount targets
    // and their group (they reference the `redis` group, which goes).
    let down = proxy
        .provisioner(&["down", "--yes", "--output", "json"])
        .expect(0)
        .await;
    let down = down.json();
    let notes = down["notes"].to_string();
    assert!(
        notes.contains("race data kept") && notes.contains(&fs_id),
        "{down:#}"
    );
    assert_eq!(change(&down, "efs-file-system")[0]["action"], "unchanged");
    let kept = aws.file_systems().await;
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].file_system_id(), fs_id);
    assert!(aws.mount_targets(&fs_id).await.is_empty());
    assert!(aws.group("timing-efs").await.is_none());
    assert!(aws.group("timing-redis").await.is_none());
    assert!(
        aws.secure_string(TOKEN_PARAMETER).await.is_none(),
        "the token parameter is left"
    );
    assert!(
        aws.iam
            .get_role()
            .role_name("timing-redis-task")
            .send()
            .await
            .is_err()
    );

    // `up` again reattaches the same file system and access point.
    let (image, _) = seed_image(&account.moto, "timing", IMAGE_TAG).await;
    let up = proxy
        .provisioner(&["up", "--image", &image, "--output", "json", "--no-wait"])
        .expect(0)
        .await;
    let up = up.json();
    assert_eq!(change(&up, "efs-file-system")[0]["action"], "unchanged");
    assert_eq!(change(&up, "efs-access-point")[0]["action"], "unchanged");
    let file_systems = aws.file_systems().await;
    assert_eq!(file_systems.len(), 1);
    assert_eq!(file_systems[0].file_system_id(), fs_id);
    let redis_task = aws.task_definition("timing-redis").await;
    let efs_volume = redis_task.volumes()[0].efs_volume_configuration().unwrap();
    assert_eq!(efs_volume.file_system_id(), fs_id);
    assert_eq!(
        efs_volume.authorization_config().unwrap().access_point_id(),
        Some(ap_id.as_str())
    );
    assert_eq!(aws.mount_targets(&fs_id).await.len(), zones.len());
    let new_token = aws.secure_string(TOKEN_PARAMETER).await.unwrap();
    assert_ne!(
        new_token, token,
        "a new deploy after `down` has a new token"
    );

    // `down --delete-data`: mount targets first (moto refuses the other order, as AWS
    // does), then the access point and the file system.
    let down = proxy
        .provisioner(&["down", "--yes", "--delete-data", "--output", "json"])
        .expect(0)
        .await;
    let down = down.json();
    assert_eq!(change(&down, "efs-file-system")[0]["action"], "delete");
    assert!(!down["notes"].to_string().contains("race data kept"));
    assert!(aws.file_systems().await.is_empty());
    let all = aws.efs.describe_file_systems().send().await.unwrap();
    assert!(all.file_systems().is_empty());
    let access_points = aws.efs.describe_access_points().send().await.unwrap();
    assert!(access_points.access_points().is_empty());
    let calls: Vec<String> = proxy.calls().into_iter().map(|c| c.operation).collect();
    let last_mount_target_delete = calls
        .iter()
        .rposition(|c| c == "DeleteMountTarget")
        .unwrap();
    let file_system_delete = calls.iter().rposition(|c| c == "DeleteFileSystem").unwrap();
    assert!(last_mount_target_delete < file_system_delete);

    // And once more: nothing left, success.
    let again = proxy
        .provisioner(&["down", "--yes", "--output", "json"])
        .expect(0)
        .await;
    let again = again.json();
    assert_eq!(again["changed"], false, "{again:#}");
    assert_eq!(change(&again, "efs-file-system")[0]["action"], "absent");
}

/// `--redis-password`: the password and the API's REDIS_URL in SSM, the Redis command and
/// the API's URL from `secrets`, the execution role reading those two parameters only; it
/// stays on for later `up`s without the flag; `down` removes the parameters.
#[tokio::test]
async fn redis_password_is_a_secret_of_both_containers() {
    let account = TestAccount::start().await;
    let (proxy, image) = (&account.proxy, account.image.as_str());
    let aws = Sdk::new(&account.moto).await;
    let up = proxy
        .provisioner(&["up", "--image", image, "--redis-password", "--no-wait"])
        .expect(0)
        .await;

    let password = aws.secure_string("/timing/redis-password").await.unwrap();
    let url = aws.secure_string("/timing/redis-url").await.unwrap();
    assert_eq!(url, format!("redis://:{password}@redis.timing.local:6379"));
    assert!(!up.stdout.contains(&password) && !up.stderr.contains(&password));

    let arn = |name: &str| format!("arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/timing/{name}");
    let redis_task = aws.task_definition("timing-redis").await;
    let redis = &redis_task.container_definitions()[0];
    assert_eq!(redis.command()[..2], ["sh", "-c"]);
    assert!(
        redis.command()[2].starts_with("exec docker-entrypoint.sh redis-server --dir /data")
            && redis.command()[2].ends_with("--requirepass \"$REDISCLI_AUTH\""),
        "{:?}",
        redis.command()
    );
    let secrets: Vec<(&str, &str)> = redis
        .secrets()
        .iter()
        .map(|s| (s.name(), s.value_from()))
        .collect();
    assert_eq!(secrets, [("REDISCLI_AUTH", arn("redis-password").as_str())]);
    let api_task = aws.task_definition("timing-api").await;
    let api = &api_task.container_definitions()[0];
    assert!(
        api.environment()
            .iter()
            .all(|e| e.name() != Some("REDIS_URL"))
    );
    let mut secrets: Vec<(&str, &str)> = api
        .secrets()
        .iter()
        .map(|s| (s.name(), s.value_from()))
        .collect();
    secrets.sort();
    assert_eq!(
        secrets,
        [
            ("REDIS_URL", arn("redis-url").as_str()),
            ("TIMING_API_TOKEN", token_arn().as_str())
        ]
    );
    for shown in [format!("{api_task:?}"), format!("{redis_task:?}")] {
        assert!(!shown.contains(&password));
    }
    let policy = aws.role_policy("timing-task-execution", "redis-auth").await;
    assert_eq!(
        policy["Statement"][0]["Resource"],
        serde_json::json!([arn("redis-password"), arn("redis-url")])
    );

    // Without the flag it stays on, and nothing changes.
    proxy.clear();
    proxy
        .provisioner(&["up", "--keep-image", "--no-wait"])
        .expect(0)
        .await;
    assert_eq!(proxy.mutating(), Vec::<String>::new());
    assert_eq!(
        aws.secure_string("/timing/redis-password").await.unwrap(),
        password
    );

    proxy
        .provisioner(&["down", "--yes", "--delete-data"])
        .expect(0)
        .await;
    for name in [
        "/timing/redis-password",
        "/timing/redis-url",
        TOKEN_PARAMETER,
    ] {
        assert!(
            aws.ssm.get_parameter().name(name).send().await.is_err(),
            "{name} left"
        );
    }
}
