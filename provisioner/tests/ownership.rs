//! Resources of the app's names that are not the app's (no `app`/`managed-by` tags: made by
//! hand, by another tool) are neither adopted by `up` nor deleted by `down`: the command stops
//! and names them.

use crate::support::{Moto, Proxy, Sdk, TestAccount};

const TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ecs-tasks.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;

/// Makes, straight in moto and without the app's tags, the role `timing-api-task`.
async fn foreign_role(sdk: &Sdk) {
    sdk.iam
        .create_role()
        .role_name("timing-api-task")
        .assume_role_policy_document(TRUST)
        .send()
        .await
        .unwrap();
}

/// Makes, straight in moto and without the app's tags, the ECR repository `timing/api`.
async fn foreign_repository(sdk: &Sdk) {
    sdk.ecr
        .create_repository()
        .repository_name("timing/api")
        .send()
        .await
        .unwrap();
}

/// Makes, straight in moto and without the app's tags, one resource of each kind `down`
/// deletes by name; returns how each is named in the provisioner's messages.
async fn foreign_resources(sdk: &Sdk) -> Vec<&'static str> {
    foreign_role(sdk).await;
    sdk.logs
        .create_log_group()
        .log_group_name("/ecs/timing")
        .send()
        .await
        .unwrap();
    sdk.ssm
        .put_parameter()
        .name("/timing/api-token")
        .value("someone else's")
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .unwrap();
    sdk.ecs
        .create_cluster()
        .cluster_name("timing")
        .send()
        .await
        .unwrap();
    foreign_repository(sdk).await;
    vec![
        "IAM role timing-api-task",
        "log group /ecs/timing",
        "SSM parameter /timing/api-token",
        "ECS cluster timing",
        "ECR repository timing/api",
    ]
}

/// `down` with foreign resources of every name it deletes: each is named, none is touched,
/// and the run fails.
#[tokio::test]
async fn down_deletes_nothing_that_is_not_the_apps() {
    let moto = Moto::start().await;
    let proxy = Proxy::start(&moto).await;
    let sdk = Sdk::new(&moto).await;
    let foreign = foreign_resources(&sdk).await;

    let down = proxy.provisioner(&["down", "--yes"]).run().await;

    assert_eq!(down.code, 1, "{}\n{}", down.stdout, down.stderr);
    for resource in &foreign {
        assert!(
            down.stderr.contains(resource) && down.stderr.contains("neither adopted nor deleted"),
            "{resource} not named:\n{}",
            down.stderr
        );
    }
    assert_eq!(proxy.mutating(), Vec::<String>::new(), "down touched them");
    assert!(
        sdk.iam
            .get_role()
            .role_name("timing-api-task")
            .send()
            .await
            .is_ok()
    );
    assert!(
        sdk.ecr
            .describe_repositories()
            .repository_names("timing/api")
            .send()
            .await
            .is_ok()
    );
}

/// `up` adopts no foreign resource: a foreign repository stops it before its first write; a
/// foreign role stops it without one change to that role.
#[tokio::test]
async fn up_adopts_nothing_that_is_not_the_apps() {
    let moto = Moto::start().await;
    let proxy = Proxy::start(&moto).await;
    foreign_repository(&Sdk::new(&moto).await).await;
    let image = "123456789012.dkr.ecr.eu-north-1.amazonaws.com/timing/api:1";
    let up = proxy.provisioner(&["up", "--image", image]).run().await;
    assert_eq!(up.code, 1, "{}", up.stderr);
    assert!(
        up.stderr
            .contains("ECR repository timing/api exists but is not app `timing`'s"),
        "{}",
        up.stderr
    );
    assert_eq!(proxy.mutating(), Vec::<String>::new());

    // Another account state: the app's own image, and someone else's role of the app's name.
    let TestAccount {
        moto, proxy, image, ..
    } = TestAccount::start().await;
    let sdk = Sdk::new(&moto).await;
    foreign_role(&sdk).await;
    let up = proxy.provisioner(&["up", "--image", &image]).run().await;
    assert_eq!(up.code, 1, "{}", up.stderr);
    assert!(
        up.stderr.contains("IAM role timing-api-task"),
        "{}",
        up.stderr
    );
    let touched: Vec<String> = proxy
        .calls()
        .into_iter()
        .filter(|c| c.is_mutating() && c.body.contains("RoleName=timing-api-task"))
        .map(|c| c.operation)
        .collect();
    assert_eq!(
        touched,
        Vec::<String>::new(),
        "the foreign role was changed"
    );
    let role = sdk
        .iam
        .get_role()
        .role_name("timing-api-task")
        .send()
        .await
        .unwrap();
    assert!(role.role().unwrap().tags().is_empty());
}
