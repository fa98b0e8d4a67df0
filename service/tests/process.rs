//! The real binary (`CARGO_BIN_EXE_timing-service`): graceful SIGTERM with a request in flight
//! and with requests arriving during the drain period,
//! the `healthcheck` subcommand, start-up refusal of an invalid race definition, and Redis
//! followed by its DNS name when it comes back at another address.

use std::{
    io::Read,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{Redis, free_port};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_timing-service");

/// The service as a child process, with its stderr collected; killed on drop.
pub(crate) struct Service {
    pub(crate) child: Child,
    pub(crate) port: u16,
    stderr: Arc<Mutex<String>>,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn collect_stderr(child: &mut Child) -> Arc<Mutex<String>> {
    let log = Arc::new(Mutex::new(String::new()));
    if let Some(mut stderr) = child.stderr.take() {
        let log = log.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut log) = log.lock() {
                    log.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
    }
    log
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

async fn start_service(redis: &Redis) -> Service {
    start_service_with(Command::new(BIN), &redis.url()).await
}

/// Starts `command` (the binary, or a wrapper that ends by running it) as the service on a
/// free loopback port, and waits for `/health`.
pub(crate) async fn start_service_with(mut command: Command, redis_url: &str) -> Service {
    let port = free_port();
    let mut child = command
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("REDIS_URL", redis_url)
        .env("RUST_LOG", "info")
        .env_remove("TIMING_API_TOKEN")
        .env_remove("RACE_DB_FILE")
        .env_remove("RACE_COMPETITOR_FILE")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run the timing-service binary");
    let stderr = collect_stderr(&mut child);
    let service = Service {
        child,
        port,
        stderr,
    };
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let url = format!("http://127.0.0.1:{port}/health");
        if client
            .get(url)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            return service;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the service did not answer /health within 10 s: {:?}",
        service.stderr.lock().map(|s| s.clone())
    );
}

/// The Redis host name of the DNS test: only the service's own `/etc/hosts` knows it.
const REDIS_NAME: &str = "redis.timing-dns-test.internal";
/// A loopback address where nothing listens: connections to it are refused at once.
const NOBODY: &str = "127.0.0.9";

/// Points [`REDIS_NAME`] at `address` in the hosts file the service sees. Rewritten in place
/// (same inode), so the bind mount in the service's namespace shows the new content.
fn point_redis_name(hosts: &std::path::Path, address: &str) {
    std::fs::write(
        hosts,
        format!("127.0.0.1 localhost\n{address} {REDIS_NAME}\n"),
    )
    .expect("write the test's hosts file");
}

async fn ready_status(port: u16) -> u16 {
    let url = format!("http://127.0.0.1:{port}/ready");
    match reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
    {
        Ok(response) => response.status().as_u16(),
        Err(err) => panic!("/ready did not answer: {err}"),
    }
}

/// Polls `/ready` until it answers 200, at most 15 s.
async fn becomes_ready(port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if ready_status(port).await == 200 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// `unshare` arguments giving the service a mount namespace of its own whose `/etc/hosts` is
/// the test's file. `--user --map-root-user` makes this work without root wherever
/// unprivileged user namespaces are allowed (the service runs as root of its namespace only).
const UNSHARE: [&str; 8] = [
    "--user",
    "--map-root-user",
    "--mount",
    "--",
    "sh",
    "-c",
    r#"mount --bind "$1" /etc/hosts && exec "$2""#,
    "sh",
];

/// Checks that this machine lets the test build its namespace, naming what is missing if not.
fn require_private_hosts_file(hosts: &std::path::Path) {
    let probe = Command::new("unshare")
        .args(UNSHARE)
        .arg(hosts)
        .arg("true")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    match probe {
        Ok(output) if output.status.success() => {}
        Ok(output) => panic!(
            "this test runs the service with its own /etc/hosts through `unshare --user \
             --map-root-user --mount`, which failed here: {}\nIt needs unprivileged user \
             namespaces: `sysctl user.max_user_namespaces` above 0, on Debian \
             `sysctl kernel.unprivileged_userns_clone=1`, on Ubuntu 23.10+ \
             `sysctl kernel.apparmor_restrict_unprivileged_userns=0`; inside a container, one \
             started without a seccomp profile that blocks `unshare` (or run the tests as root).",
            String::from_utf8_lossy(&output.stderr).trim()
        ),
        Err(err) => {
            panic!("this test needs `unshare` (util-linux: `apt-get install -y util-linux`): {err}")
        }
    }
}

/// Redis replaced at another address under the same DNS name (a new Fargate task): the
/// service follows the name on every reconnect, with no restart.
///
/// The service runs in a mount namespace of its own ([`UNSHARE`]; as a user without root
/// this needs unprivileged user namespaces, [`require_private_hosts_file`] says so otherwise)
/// whose `/etc/hosts` is a file of this test, so the test can move the name. Only 127.0.0.1
/// has a listener: the name moves between 127.0.0.1 (Redis) and 127.0.0.9 (nobody). The proof
/// that the name, not a remembered address, is followed: with Redis back up on 127.0.0.1 but
/// the name still on 127.0.0.9, the service stays unready; it recovers only once the name
/// points at 127.0.0.1 again.
#[tokio::test]
async fn redis_is_followed_by_its_dns_name_across_address_changes() {
    let mut redis = Redis::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let hosts = dir.path().join("hosts");
    point_redis_name(&hosts, NOBODY);
    require_private_hosts_file(&hosts);

    let mut command = Command::new("unshare");
    command.args(UNSHARE).arg(&hosts).arg(BIN);
    let redis_url = format!("redis://{REDIS_NAME}:{}", redis.port);
    let service = start_service_with(command, &redis_url).await;
    let port = service.port;
    let log = || service.stderr.lock().map(|s| s.clone()).unwrap_or_default();

    // Started while the name points where nothing runs yet (Redis's task still starting).
    assert_eq!(ready_status(port).await, 503, "{}", log());
    point_redis_name(&hosts, "127.0.0.1");
    assert!(
        becomes_ready(port).await,
        "not ready after the name appeared: {}",
        log()
    );
    let client = reqwest::Client::new();
    let create = |bib: &str| {
        client
            .post(format!("http://127.0.0.1:{port}/api/v1/competitors"))
            .json(
                &serde_json::json!({"bib": bib, "first_name": "Ada", "last_name": "Lovelace",
                "gender": "female", "country": "GBR", "category": "women30"}),
            )
            .send()
    };
    assert_eq!(create("7").await.expect("create").status(), 201);

    // The task is replaced: the name moves away and the old Redis dies; then a Redis answers
    // at the old address again, which the service must not use while the name says otherwise.
    point_redis_name(&hosts, NOBODY);
    redis.stop();
    assert_eq!(ready_status(port).await, 503, "{}", log());
    assert!(redis.restart(), "redis did not restart on its port");
    for _ in 0..10 {
        assert_eq!(
            ready_status(port).await,
            503,
            "ready although its name points at {NOBODY}: the address was remembered"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The name now points at the new task: the same process recovers.
    point_redis_name(&hosts, "127.0.0.1");
    assert!(
        becomes_ready(port).await,
        "not ready after the name moved: {}",
        log()
    );
    assert_eq!(create("8").await.expect("create").status(), 201);
}

/// SIGTERM while a request body is still arriving: the request completes (201), the process
/// exits 0, and the log has the open-writes warning and one line per request.
#[tokio::test]
async fn sigterm_finishes_in_flight_request_and_exits_0() {
    let redis = Redis::start();
    let mut service = start_service(&redis).await;

    let body = br#"{"bib": "123", "first_name": "Ellen", "last_name": "Ripley", "gender": "female", "country": "USA", "category": "women40"}"#;
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", service.port))
        .await
        .expect("connect");
    // `Expect: 100-continue`: the server answers `100 Continue` when the handler starts reading
    // the body, which tells the test the request is in flight (no sleep to guess it).
    let head = format!(
        "POST /competitor HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("send head");
    let mut interim = [0u8; 25];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut interim))
        .await
        .expect("no `100 Continue` within 10 s")
        .expect("read `100 Continue`");
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    stream
        .write_all(&body[..20])
        .await
        .expect("send start of body");

    let killed = Command::new("kill")
        .args(["-TERM", &service.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    // Wait until the service has taken the signal, then check it is still there.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !service
        .stderr
        .lock()
        .is_ok_and(|log| log.contains("shutting down"))
    {
        assert!(
            Instant::now() < deadline,
            "no `shutting down` log line within 10 s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        service.child.try_wait().expect("try_wait").is_none(),
        "exited with a request in flight"
    );

    stream
        .write_all(&body[20..])
        .await
        .expect("send rest of body");
    let mut response = Vec::new();
    let read =
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await;
    assert!(read.is_ok(), "no complete response within 10 s");
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    assert!(response.contains("OK. Competitor created ok"), "{response}");

    let status =
        wait_exit(&mut service.child, Duration::from_secs(10)).expect("did not exit within 10 s");
    assert!(status.success(), "exit status {status:?}");
    let log = service.stderr.lock().map(|s| s.clone()).unwrap_or_default();
    assert!(log.contains("TIMING_API_TOKEN is not set"), "{log}");
    assert!(log.contains("shutting down"), "{log}");
    let line = log
        .lines()
        .find(|l| l.contains("route=/competitor"))
        .unwrap_or_else(|| panic!("no request line: {log}"));
    for field in ["method=POST", "status=201", "latency_us="] {
        assert!(line.contains(field), "`{line}` lacks {field}");
    }
}

/// SIGTERM with a drain period (`SHUTDOWN_DRAIN`, as the task definition sets it): requests
/// that arrive after the signal, on new connections, are still answered (as those API Gateway
/// routes from a Cloud Map answer read just before ECS deregistered the task), a write among
/// them; then the service stops accepting and exits 0.
#[tokio::test]
async fn sigterm_keeps_answering_new_requests_through_the_drain_period() {
    let redis = Redis::start();
    let mut command = Command::new(BIN);
    command.env("SHUTDOWN_DRAIN", "3s");
    let mut service = start_service_with(command, &redis.url()).await;

    let killed = Command::new("kill")
        .args(["-TERM", &service.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    // The signal has been taken once the drain is logged.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !service
        .stderr
        .lock()
        .map(|log| log.contains("draining"))
        .unwrap_or(false)
    {
        assert!(Instant::now() < deadline, "no drain logged within 5 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A fresh client: new connections, as from another gateway node.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let base = format!("http://127.0.0.1:{}", service.port);
    let created = client
        .post(format!("{base}/competitor"))
        .json(&serde_json::json!({"bib": "7", "first_name": "Ada", "last_name": "Byron", "gender": "female", "country": "GBR", "category": "women40"}))
        .send()
        .await
        .expect("a request during the drain is answered");
    assert_eq!(created.status(), 201);
    let health = client
        .get(format!("{base}/health"))
        .send()
        .await
        .expect("health during the drain");
    assert_eq!(health.status(), 200);
    assert!(
        service.child.try_wait().expect("try_wait").is_none(),
        "exited during the drain"
    );

    let status =
        wait_exit(&mut service.child, Duration::from_secs(15)).expect("did not exit within 15 s");
    assert!(status.success(), "exit status {status:?}");
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", service.port))
            .await
            .is_err(),
        "still accepting after the drain"
    );
    let log = service.stderr.lock().map(|s| s.clone()).unwrap_or_default();
    let drained = log.find("draining").expect("drain logged");
    let shut = log.find("shutting down").expect("shutdown logged");
    assert!(drained < shut, "{log}");
}

/// `timing-service healthcheck` exits 0 against a healthy service (listening on 0.0.0.0 is
/// probed on loopback) and 1 when nothing answers.
#[tokio::test]
async fn healthcheck_subcommand() {
    let redis = Redis::start();
    let service = start_service(&redis).await;
    let run = |listen: String| {
        let mut child = Command::new(BIN)
            .arg("healthcheck")
            .env("LISTEN_ADDR", listen)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run healthcheck");
        let status = wait_exit(&mut child, Duration::from_secs(10)).expect("healthcheck hung");
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            let _ = pipe.read_to_string(&mut stderr);
        }
        (status.code(), stderr)
    };
    assert_eq!(
        run(format!("0.0.0.0:{}", service.port)),
        (Some(0), String::new())
    );
    let (code, stderr) = run(format!("0.0.0.0:{}", free_port()));
    assert_eq!(code, Some(1));
    assert!(stderr.contains("cannot connect"), "{stderr}");
}

/// An invalid race definition stops the service at start with one message naming the file and
/// the problem, and a non-zero exit.
#[tokio::test]
async fn invalid_definition_file_stops_the_service() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("db.json");
    std::fs::write(&db, r#"{"allowed_checkpoints": ["start"]}"#).expect("write");
    let mut child = Command::new(BIN)
        .env("LISTEN_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("RACE_DB_FILE", &db)
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run");
    let status = wait_exit(&mut child, Duration::from_secs(10)).expect("did not exit");
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    assert!(!status.success());
    let expected = format!(
        "invalid race definition file `{}`: `allowed_checkpoints` needs at least 2 entries",
        db.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
}
