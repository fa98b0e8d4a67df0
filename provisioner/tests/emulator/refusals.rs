//! What the provisioner refuses before it changes anything: bad files, a `down` without
//! `--yes` and no terminal, a missing region, credentials or default VPC.

use crate::support::{self, Moto, Provisioner, TestAccount, copy_of_files};

/// Bad files are refused with file, line and column before any AWS call.
#[tokio::test]
async fn bad_files_are_refused_before_any_aws_call() {
    let aws = TestAccount::start().await;
    let cases = [
        (
            "task-definitions/api.json",
            "\"essential\": true,",
            "\"essential\": true,,",
            "api.json:14:",
        ),
        (
            "task-definitions/api.json",
            "${API_IMAGE}",
            "${API_IMAGES}",
            "unknown placeholder `${API_IMAGES}`",
        ),
        (
            "task-definitions/redis.json",
            "\"stopTimeout\"",
            "\"stopTimeOut\"",
            "unknown field `stopTimeOut`",
        ),
        (
            "policies/ecs-tasks-trust.json",
            "\"Statement\"",
            "\"Statements\"",
            "\"Statement\" array",
        ),
    ];
    for (file, from, to, message) in cases {
        let files = copy_of_files();
        let path = files.path().join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{file} lacks {from}");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
        let run = aws
            .provisioner(&["up", "--image", &aws.image])
            .root(files.path())
            .expect(1)
            .await;
        assert!(
            run.stderr.contains(message),
            "{file}: expected `{message}` in:\n{}",
            run.stderr
        );
        assert!(
            run.stderr.contains(file.rsplit('/').next().unwrap()),
            "{}",
            run.stderr
        );
    }
    assert!(
        aws.proxy.calls().is_empty(),
        "AWS was called: {:?}",
        aws.proxy.calls()
    );
}

/// Without a terminal `down` never prompts: it refuses unless --yes is given.
#[tokio::test]
async fn down_without_yes_refuses_when_there_is_no_terminal() {
    let aws = TestAccount::start().await;
    aws.deploy().await;
    aws.proxy.clear();
    let refused = aws.provisioner(&["down"]).expect(1).await;
    assert!(refused.stderr.contains("--yes"), "{}", refused.stderr);
    assert!(aws.proxy.mutating().is_empty());
}

/// Missing region, credentials or default VPC: one line saying what to set.
#[tokio::test]
async fn missing_region_credentials_or_default_vpc_are_one_line_each() {
    let moto = Moto::start().await;
    let no_region = Provisioner::new(&moto.url, &["plan"])
        .without_env("AWS_REGION")
        .expect(1)
        .await;
    assert!(
        no_region
            .stderr
            .contains("no AWS region configured: set AWS_REGION or pass --region"),
        "{}",
        no_region.stderr
    );
    let no_credentials = Provisioner::new(&moto.url, &["plan"])
        .without_env("AWS_ACCESS_KEY_ID")
        .without_env("AWS_SECRET_ACCESS_KEY")
        .expect(1)
        .await;
    assert!(
        no_credentials.stderr.contains("no AWS credentials found"),
        "{}",
        no_credentials.stderr
    );
    assert_eq!(
        no_credentials
            .stderr
            .trim()
            .lines()
            .filter(|l| l.starts_with("error"))
            .count(),
        1
    );

    // A region whose default VPC was deleted.
    let config = support::sdk_config_at(&moto.url, "eu-west-3").await;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let vpcs = ec2.describe_vpcs().send().await.unwrap();
    for vpc in vpcs.vpcs() {
        let vpc_id = vpc.vpc_id().unwrap();
        let subnets = ec2
            .describe_subnets()
            .filters(support::ec2_filter("vpc-id", vpc_id))
            .send()
            .await
            .unwrap();
        for subnet in subnets.subnets() {
            ec2.delete_subnet()
                .subnet_id(subnet.subnet_id().unwrap())
                .send()
                .await
                .unwrap();
        }
        ec2.delete_vpc().vpc_id(vpc_id).send().await.unwrap();
    }
    let no_vpc = Provisioner::new(&moto.url, &["plan", "--region", "eu-west-3"])
        .without_env("AWS_REGION")
        .expect(1)
        .await;
    assert!(
        no_vpc
            .stderr
            .contains("no default VPC in eu-west-3: pass --vpc"),
        "{}",
        no_vpc.stderr
    );
}
