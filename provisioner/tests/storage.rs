//! Redis's storage is never pulled out from under a running Redis: `down` keeps the mount
//! targets and the access point while the services are not gone, a replaced access point
//! stays until the new Redis revision is stable; and every wait of a command ends within its
//! `--timeout`. moto deletes services and creates mount targets at once, so the proxy answers
//! as AWS does while a service drains or a mount target is being created.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Sdk, TestAccount};

/// DescribeServices answers as while the Redis service drains: still there, one task running.
fn redis_never_drains(body: &str) -> String {
    let mut answer: Value = serde_json::from_str(body).unwrap();
    let draining = serde_json::json!({
        "serviceName": "redis", "status": "DRAINING", "desiredCount": 0,
        "runningCount": 1, "pendingCount": 0,
        "serviceArn": "arn:aws:ecs:eu-north-1:123456789012:service/timing/redis"
    });
    let services = answer["services"].as_array_mut().unwrap();
    services.retain(|s| s["serviceName"] != "redis");
    services.push(draining);
    if let Some(failures) = answer["failures"].as_array_mut() {
        failures.retain(|f| !f["arn"].as_str().unwrap_or("").ends_with("/redis"));
    }
    answer.to_string()
}

/// `(1, its mount targets, its access points)` while the file system of Redis's data exists,
/// `(0, 0, 0)` once it is gone.
async fn efs_state(sdk: &Sdk) -> (usize, usize, usize) {
    let Some(fs) = sdk.file_systems().await.into_iter().next() else {
        return (0, 0, 0);
    };
    let id = fs.file_system_id();
    (
        1,
        sdk.mount_targets(id).await.len(),
        sdk.access_points(id).await.len(),
    )
}

/// `down` (with or without `--delete-data`) while Redis's service will not drain: the run
/// fails within its `--timeout`, saying why, and the file system, its mount targets and its
/// access point all stay; once the service is gone, a later `down` removes them.
#[tokio::test]
async fn down_keeps_redis_storage_while_its_service_is_not_gone() {
    let TestAccount {
        moto, proxy, image, ..
    } = TestAccount::start().await;
    proxy
        .provisioner(&["up", "--image", &image, "--no-wait"])
        .expect(0)
        .await;
    let sdk = Sdk::new(&moto).await;
    let (_, mount_targets, access_points) = efs_state(&sdk).await;
    assert!(mount_targets > 0 && access_points == 1);

    proxy.rewrite("DescribeServices", redis_never_drains);
    for extra in [None, Some("--delete-data")] {
        let mut args = vec!["down", "--yes", "--timeout", "3s"];
        args.extend(extra);
        let started = Instant::now();
        let down = proxy.provisioner(&args).run().await;
        // Bounded by --timeout, not by a wait of its own (the drain wait alone was 10 min).
        assert!(started.elapsed() < Duration::from_secs(60));
        assert_eq!(down.code, 1, "{args:?}\n{}", down.stderr);
        assert!(
            down.stderr.contains("timed out")
                && down
                    .stderr
                    .contains("mount targets and access point of app `timing` kept"),
            "{}",
            down.stderr
        );
        assert_eq!(
            efs_state(&sdk).await,
            (1, mount_targets, access_points),
            "{args:?} removed storage under a running Redis"
        );
    }

    proxy.stop_rewriting();
    proxy
        .provisioner(&["down", "--yes", "--delete-data"])
        .expect(0)
        .await;
    assert_eq!(efs_state(&sdk).await, (0, 0, 0));
}

/// A replaced access point (another owner here) stays, and the Redis role and the file
/// system policy keep allowing it, until an `up` that waits has seen the new revision stable.
#[tokio::test]
async fn a_replaced_access_point_stays_until_the_new_redis_revision_is_stable() {
    let TestAccount {
        moto, proxy, image, ..
    } = TestAccount::start().await;
    proxy
        .provisioner(&["up", "--image", &image, "--no-wait"])
        .expect(0)
        .await;

    // The access point as an older provisioner made it: root's files, under `/`.
    let sdk = Sdk::new(&moto).await;
    let efs = &sdk.efs;
    let fs = sdk.file_systems().await[0].file_system_id().to_owned();
    let current = sdk.access_points(&fs).await[0]
        .access_point_id()
        .unwrap()
        .to_owned();
    efs.delete_access_point()
        .access_point_id(&current)
        .send()
        .await
        .unwrap();
    let tag = |k: &str, v: &str| {
        aws_sdk_efs::types::Tag::builder()
            .key(k)
            .value(v)
            .build()
            .unwrap()
    };
    let old = efs
        .create_access_point()
        .file_system_id(&fs)
        .posix_user(
            aws_sdk_efs::types::PosixUser::builder()
                .uid(0)
                .gid(0)
                .build()
                .unwrap(),
        )
        .tags(tag("app", "timing"))
        .tags(tag("managed-by", "provisioner"))
        .tags(tag("Name", "timing-redis"))
        .send()
        .await
        .unwrap();
    let (old_id, old_arn) = (
        old.access_point_id().unwrap().to_owned(),
        old.access_point_arn().unwrap().to_owned(),
    );
    let access_points = || async {
        sdk.access_points(&fs)
            .await
            .iter()
            .map(|ap| ap.access_point_arn().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let redis_policy = || async {
        sdk.role_policy("timing-redis-task", "efs")
            .await
            .to_string()
    };

    // Not waiting: the new access point is made, the old one kept and still allowed.
    let up = proxy
        .provisioner(&["up", "--image", &image, "--no-wait", "--output", "json"])
        .expect(0)
        .await;
    let arns = access_points().await;
    assert_eq!(arns.len(), 2, "{arns:?}");
    let new_arn = arns.iter().find(|a| **a != old_arn).unwrap().clone();
    let policy = redis_policy().await;
    assert!(
        policy.contains(&old_arn) && policy.contains(&new_arn),
        "{policy}"
    );
    let notes = up.json()["notes"].to_string();
    assert!(notes.contains(&old_id), "{notes}");

    // Waiting: once Redis is stable on the new one, the old one and its permission go.
    proxy
        .provisioner(&["up", "--image", &image])
        .expect(0)
        .await;
    assert_eq!(access_points().await, std::slice::from_ref(&new_arn));
    let policy = redis_policy().await;
    assert!(
        !policy.contains(&old_arn) && policy.contains(&new_arn),
        "{policy}"
    );
}

/// `up --timeout 3s` while the mount targets stay `creating` (AWS takes about 90 s; moto
/// none) ends within that limit with exit 3, instead of its own 10-minute wait.
#[tokio::test]
async fn up_ends_within_a_timeout_of_seconds() {
    // `moto` is kept by name: a field left to `..` would be dropped (and moto stopped) here.
    let TestAccount {
        moto: _moto,
        proxy,
        image,
        ..
    } = TestAccount::start().await;
    proxy.rewrite("DescribeMountTargets", |body| {
        body.replace("\"available\"", "\"creating\"")
    });

    let started = Instant::now();
    let up = proxy
        .provisioner(&["up", "--image", &image, "--timeout", "3s"])
        .run()
        .await;

    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(up.code, 3, "{}", up.stderr);
    assert!(up.stderr.contains("mount targets"), "{}", up.stderr);
}
