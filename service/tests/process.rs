//! The real binary (`CARGO_BIN_EXE_timing-service`): graceful SIGTERM with a request in flight,
//! the `healthcheck` subcommand, and start-up refusal of an invalid race definition.

use std::{
    io::Read,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{Redis, free_port};

const BIN: &str = env!("CARGO_BIN_EXE_timing-service");

/// The service as a child process, with its stderr collected; killed on drop.
struct Service {
    child: Child,
    port: u16,
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
    let port = free_port();
    let mut child = Command::new(BIN)
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("REDIS_URL", redis.url())
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
    let head = format!(
        "POST /competitor HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("send head");
    stream
        .write_all(&body[..20])
        .await
        .expect("send start of body");
    tokio::time::sleep(Duration::from_millis(300)).await;

    let killed = Command::new("kill")
        .args(["-TERM", &service.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    tokio::time::sleep(Duration::from_millis(300)).await;
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
    for field in ["method=POST", "status=201", "latency_ms="] {
        assert!(line.contains(field), "`{line}` lacks {field}");
    }
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
