//! The faults a real account produces, injected by the test proxy (`support/proxy.rs`):
//! throttling and internal errors on a few percent of calls, and the provisioner process
//! SIGKILLed at any point of an `up` or a `down`. The promise: the commands succeed through
//! the first (the SDK's retries absorb them), and the next run converges after the second,
//! a `down` then leaving nothing.

use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::support::{
    self, Data, Faults, IMAGE_TAG, Injected, Provisioner, TestAccount, assert_nothing_left,
    leftovers::leftovers, seed_image,
};

/// Each protocol's injected answers read to the SDK as that service's own errors: the
/// throttling code it retries with back-off, and HTTP 500 (checked with retries off, so the
/// first answer is the one seen).
#[tokio::test]
async fn injected_faults_read_as_each_services_own_throttling_and_internal_errors() {
    let aws = TestAccount::start().await;
    let config = support::sdk_config_at(&aws.proxy.url, support::REGION)
        .await
        .into_builder()
        .retry_config(aws_smithy_types::retry::RetryConfig::disabled())
        .build();
    let ecs = aws_sdk_ecs::Client::new(&config);
    let iam = aws_sdk_iam::Client::new(&config);
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let efs = aws_sdk_efs::Client::new(&config);

    for (faults, expected) in [
        (
            Faults {
                throttled: 1.0,
                server_errors: 0.0,
                seed: 1,
            },
            [
                "ThrottlingException",
                "Throttling",
                "RequestLimitExceeded",
                "ThrottlingException",
            ],
        ),
        (
            Faults {
                throttled: 0.0,
                server_errors: 1.0,
                seed: 1,
            },
            [
                "InternalFailure",
                "ServiceFailure",
                "InternalError",
                "InternalServerError",
            ],
        ),
    ] {
        aws.proxy.inject(faults);
        let codes = [
            code(ecs.list_clusters().send().await),
            code(iam.list_roles().send().await),
            code(ec2.describe_vpcs().send().await),
            code(efs.describe_file_systems().send().await),
        ];
        assert_eq!(codes, expected.map(|c| Some(c.to_owned())), "{faults:?}");
    }
    aws.proxy.heal();
    assert!(iam.list_roles().send().await.is_ok());
    assert_eq!(aws.proxy.injected().len(), 8);
}

/// The error code of a failed call (`None` if it succeeded).
fn code<T, E: ProvideErrorMetadata>(result: Result<T, E>) -> Option<String> {
    result.err().and_then(|e| e.code().map(str::to_owned))
}

/// With 3% of calls throttled and 2% answered HTTP 500 (seed fixed, so the same calls are
/// hit on every run), a cold `up`, a no-op `up` (still no mutating call) and `down
/// --delete-data` all succeed, and nothing is left.
#[tokio::test]
async fn up_and_down_succeed_while_a_few_percent_of_calls_are_throttled_or_fail() {
    let aws = TestAccount::start().await;
    let proxy = &aws.proxy;
    proxy.inject(Faults {
        throttled: 0.03,
        server_errors: 0.02,
        seed: 2026,
    });

    aws.provisioner(&["up", "--image", &aws.image, "--timeout", "5m"])
        .expect(0)
        .await;
    proxy.clear();
    let again = aws
        .provisioner(&["up", "--keep-image", "--timeout", "5m"])
        .json()
        .expect(0)
        .await;
    assert_eq!(again.json()["changed"], false);
    assert_eq!(proxy.mutating(), Vec::<String>::new());
    aws.provisioner(&["down", "--yes", "--delete-data", "--timeout", "5m"])
        .expect(0)
        .await;

    let injected = proxy.injected();
    for kind in [Injected::Throttled, Injected::ServerError] {
        assert!(
            injected.iter().any(|(_, k)| *k == kind),
            "no {kind:?} injected: {injected:?}"
        );
    }
    proxy.heal();
    assert_nothing_left(&aws.moto, "timing", Data::Deleted).await;
}

/// The request numbers (counted from the first request of the run, from 1) of the mutating
/// calls of one run of `args` that is not interrupted, and the number of requests it made.
async fn mutating_call_numbers(aws: &TestAccount, args: &[&str]) -> (Vec<usize>, usize) {
    let base = aws.proxy.received();
    aws.proxy.clear();
    aws.provisioner(args).expect(0).await;
    let numbers = aws
        .proxy
        .calls()
        .iter()
        .filter(|c| c.is_mutating())
        .map(|c| c.number - base)
        .collect();
    (numbers, aws.proxy.received() - base)
}

/// About `count` of `points`, evenly spread, always with the first and the last.
fn sample(points: &[usize], count: usize) -> Vec<usize> {
    if points.len() <= count || count < 2 {
        return points.to_vec();
    }
    (0..count)
        .map(|i| points[i * (points.len() - 1) / (count - 1)])
        .collect()
}

/// `args` killed (SIGKILL) by the proxy right after its request number `cut` reached moto.
async fn killed_at(aws: &TestAccount, args: &[&str], cut: usize) {
    aws.proxy.kill_after(cut);
    let run = aws.provisioner(args).run().await;
    aws.proxy.heal();
    assert!(
        run.killed,
        "{args:?} was not killed at request {cut}: exit {}\n{}\n{}",
        run.code, run.stdout, run.stderr
    );
}

/// A cold `up` and a `down --delete-data`, each SIGKILLed right after one of its mutating
/// calls reached moto (the write done, its answer never read), and each followed by the same
/// command, which must succeed, after which `plan` finds nothing to do (after `up`) or
/// nothing is left (after `down`).
///
/// Why the mutating calls: the provisioner keeps no state of its own, so a run killed after
/// a read leaves AWS exactly as one killed after the write before that read; cutting after
/// each write reaches every state a kill can leave. By default the test takes 8 of those
/// cut points of each command, evenly spread with the first and the last (a cut point of
/// `up` and one of `down` per round, on one emulator, which the round's `down` empties
/// again); with `PROVISIONER_FULL_SWEEP=1` it takes all of them. The runs are counted
/// without faults first, so a cut point is a request number of the same sequence.
#[tokio::test]
async fn up_and_down_killed_after_any_write_converge_on_the_next_run() {
    let aws = TestAccount::start().await;
    let up = ["up", "--image", aws.image.as_str(), "--timeout", "60s"];
    let down = ["down", "--yes", "--delete-data", "--timeout", "60s"];

    let (up_writes, up_requests) = mutating_call_numbers(&aws, &up).await;
    let (down_writes, down_requests) = mutating_call_numbers(&aws, &down).await;
    assert!(up_writes.len() > 20, "{up_writes:?} of {up_requests}");
    assert!(down_writes.len() > 10, "{down_writes:?} of {down_requests}");
    let full = std::env::var_os("PROVISIONER_FULL_SWEEP").is_some();
    let count = if full { usize::MAX } else { 8 };
    let up_cuts = sample(&up_writes, count);
    let down_cuts = sample(&down_writes, count);
    eprintln!(
        "cold up: {} writes in {up_requests} requests, cut after {up_cuts:?}; \
         down: {} writes in {down_requests} requests, cut after {down_cuts:?}",
        up_writes.len(),
        down_writes.len()
    );

    for round in 0..up_cuts.len().max(down_cuts.len()) {
        // `down` removed the repository with the image: put it back for a cold `up`.
        seed_image(&aws.moto, "timing", IMAGE_TAG).await;
        if let Some(&cut) = up_cuts.get(round) {
            killed_at(&aws, &up, cut).await;
        }
        aws.provisioner(&up).expect(0).await;
        aws.provisioner(&["plan"]).expect(0).await;

        if let Some(&cut) = down_cuts.get(round) {
            killed_at(&aws, &down, cut).await;
        }
        aws.provisioner(&down).expect(0).await;
        let left = leftovers(&aws.moto, "timing", Data::Deleted).await;
        assert!(
            left.is_empty(),
            "round {round} (up cut {:?}, down cut {:?}) left:\n{}",
            up_cuts.get(round),
            down_cuts.get(round),
            left.join("\n")
        );
    }
}

/// A plain `down` (data kept) killed after any of its writes is finished by the next one,
/// which leaves nothing but the data; the data then goes with `down --delete-data`.
/// Sampled as the sweep above (4 cut points; all with `PROVISIONER_FULL_SWEEP=1`).
#[tokio::test]
async fn down_keeping_the_data_killed_after_any_write_converges_on_the_next_down() {
    let aws = TestAccount::start().await;
    let up = ["up", "--image", aws.image.as_str(), "--no-wait"];
    let down = ["down", "--yes"];
    aws.provisioner(&up).expect(0).await;
    let (writes, requests) = mutating_call_numbers(&aws, &down).await;
    assert!(writes.len() > 10, "{writes:?} of {requests}");
    let full = std::env::var_os("PROVISIONER_FULL_SWEEP").is_some();
    let cuts = sample(&writes, if full { usize::MAX } else { 4 });
    eprintln!(
        "down: {} writes in {requests} requests, cut after {cuts:?}",
        writes.len()
    );
    for cut in cuts {
        seed_image(&aws.moto, "timing", IMAGE_TAG).await;
        aws.provisioner(&up).expect(0).await;
        killed_at(&aws, &down, cut).await;
        aws.provisioner(&down).expect(0).await;
        let left = leftovers(&aws.moto, "timing", Data::Kept).await;
        assert!(left.is_empty(), "cut {cut} left:\n{}", left.join("\n"));
    }
    Provisioner::new(&aws.proxy.url, &["down", "--yes", "--delete-data"])
        .expect(0)
        .await;
    assert_nothing_left(&aws.moto, "timing", Data::Deleted).await;
}
