//! How commands end when the user or the machine ends them: Ctrl-C is exit 130 for every
//! command, a closed stdout (`provisioner logs | head`) is a quiet exit 0, and a failed image
//! build (or a given image that does not exist) leaves AWS untouched.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::support::{Moto, Provisioner, Proxy, REGION, TestAccount, copy_of_files};

/// HOME for a spawned command: nothing of the developer's is read.
const NO_HOME: &str = "/nonexistent";

/// Waits until the proxy has seen `operation` `times` times (the command is where the test
/// wants it), for at most a minute.
async fn until_called(proxy: &Proxy, operation: &str, times: usize) {
    for _ in 0..600 {
        if proxy
            .calls()
            .iter()
            .filter(|c| c.operation == operation)
            .count()
            >= times
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{operation} was not called {times} times within a minute");
}

/// SIGINT (what Ctrl-C sends) to a running command: exit 130 and one line saying how to
/// continue, for a command that follows logs and for `up` waiting for mount targets.
#[tokio::test]
async fn ctrl_c_ends_every_command_with_130() {
    let TestAccount {
        moto, proxy, image, ..
    } = TestAccount::start().await;
    // The app's log group (tagged as `up` tags it, which then adopts it).
    aws_sdk_cloudwatchlogs::Client::new(&moto.sdk_config().await)
        .create_log_group()
        .log_group_name("/ecs/timing")
        .tags("app", "timing")
        .tags("managed-by", "provisioner")
        .send()
        .await
        .unwrap();
    // AWS takes about 90 s to make a mount target available; here, for ever.
    proxy.rewrite("DescribeMountTargets", |body| {
        body.replace("\"available\"", "\"creating\"")
    });
    let cases: [(&[&str], &str); 2] = [
        (&["logs", "api", "--follow"], "FilterLogEvents"),
        (&["up", "--image", &image], "DescribeMountTargets"),
    ];
    for (args, busy_with) in cases {
        let child = proxy
            .provisioner(args)
            .command(Path::new(NO_HOME))
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        until_called(&proxy, busy_with, 2).await;
        let pid = child.id().unwrap().to_string();
        let kill = std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap();
        assert!(kill.success());
        let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("the command did not end on SIGINT")
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(130), "{args:?}: {stderr}");
        assert!(stderr.contains("interrupted"), "{stderr}");
        proxy.clear();
    }
}

/// A reader that stops reading (`| head`, `| grep -m1`) ends the command with 0 and no error
/// line, whether it prints a report (`render`) or log lines (`logs`).
#[tokio::test]
async fn a_closed_stdout_ends_quietly_with_0() {
    let moto = Moto::start().await;
    let logs = aws_sdk_cloudwatchlogs::Client::new(&moto.sdk_config().await);
    logs.create_log_group()
        .log_group_name("/ecs/timing")
        .send()
        .await
        .unwrap();
    logs.create_log_stream()
        .log_group_name("/ecs/timing")
        .log_stream_name("api/api/task1")
        .send()
        .await
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let events = (0..50).map(|i| {
        aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
            .timestamp(now + i)
            .message(format!("line {i}"))
            .build()
            .unwrap()
    });
    logs.put_log_events()
        .log_group_name("/ecs/timing")
        .log_stream_name("api/api/task1")
        .set_log_events(Some(events.collect()))
        .send()
        .await
        .unwrap();

    for args in [&["render"][..], &["logs", "api", "--since", "10m"]] {
        let mut child = Provisioner::new(&moto.url, args)
            .command(Path::new(NO_HOME))
            .spawn()
            .unwrap();
        // The reader goes away before the first line is written.
        drop(child.stdout.take());
        let output = child.wait_with_output().await.unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("error"), "{args:?}: {stderr}");
    }
}

/// The image is built (or the given one checked) before the first mutating call: a build that
/// fails, or a given image that is not there, leaves the account as it was.
#[tokio::test]
async fn a_failed_build_or_a_missing_image_makes_no_aws_write() {
    let moto = Moto::start().await;
    let proxy = Proxy::start(&moto).await;
    // The files without the service's sources: the native build cannot succeed.
    let files = copy_of_files();
    let build = proxy
        .provisioner(&["up", "--builder", "native", "--timeout", "60s"])
        .root(files.path())
        .run()
        .await;
    assert_eq!(build.code, 1, "{}", build.stderr);
    assert_eq!(proxy.mutating(), Vec::<String>::new(), "{}", build.stderr);

    // The Docker builder too: a daemon that answers but whose build fails (a stand-in
    // `docker` first on PATH; no daemon runs here) writes nothing either.
    let bin = tempfile::tempdir().unwrap();
    let docker = bin.path().join("docker");
    std::fs::write(
        &docker,
        "#!/bin/sh\ncase \"$1\" in\n  info) exit 0 ;;\n  build) echo 'step 3/9: cargo build failed' >&2; exit 1 ;;\n  *) echo \"unexpected: docker $*\" >&2; exit 1 ;;\nesac\n",
    )
    .unwrap();
    std::fs::set_permissions(&docker, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let docker_build = proxy
        .provisioner(&["up", "--builder", "docker", "--timeout", "60s"])
        .env("PATH", &path)
        .run()
        .await;
    assert_eq!(docker_build.code, 1, "{}", docker_build.stderr);
    assert!(
        docker_build.stderr.contains("cargo build failed"),
        "{}",
        docker_build.stderr
    );
    assert!(
        !docker_build.stderr.contains("unexpected"),
        "{}",
        docker_build.stderr
    );
    assert_eq!(
        proxy.mutating(),
        Vec::<String>::new(),
        "{}",
        docker_build.stderr
    );

    let missing = format!("123456789012.dkr.ecr.{REGION}.amazonaws.com/timing/api:not-pushed");
    let given = proxy.provisioner(&["up", "--image", &missing]).run().await;
    assert_eq!(given.code, 1, "{}", given.stderr);
    assert!(given.stderr.contains("not-pushed"), "{}", given.stderr);
    assert_eq!(proxy.mutating(), Vec::<String>::new());
}
