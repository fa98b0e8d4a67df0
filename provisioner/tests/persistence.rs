//! Redis with the persistence settings of `task-definitions/redis.json` (AOF with `appendfsync
//! everysec`, snapshots `save 20 1`) keeps the race: the real `timing-service` binary writes
//! timing points through its HTTP API into a real `redis-server`, which is stopped and started
//! again on the same directory, as a Fargate task is on EFS.
//!
//! - SIGTERM (how ECS stops a task; the task definition's `stopTimeout` of 120 s gives Redis
//!   time for its final write): every acknowledged write is there after the restart.
//! - SIGKILL (what happens when `stopTimeout` runs out): every write acknowledged more than
//!   1 s before the kill is there. Locally the loss is measured as 0, because Redis hands each
//!   write to the kernel (`write(2)` to the AOF) before it replies, and a killed process does
//!   not lose the kernel's page cache; `appendfsync everysec` bounds the loss to about 1 s
//!   only when the machine itself goes (power, kernel, a Fargate micro-VM torn down before
//!   the NFS client flushed). That bound is what the test asserts.
//!
//! The Redis arguments are read from `task-definitions/redis.json` (only `--dir` is replaced
//! by a temporary directory, and a loopback port added), so the test follows the file.
//!
//! The service crate is another engineer's; this test only spawns its binary. It is built
//! once with `cargo build -p timing-service` into `<target>/persistence-service` (a target
//! directory of its own: the outer `cargo test` holds the lock of the main one), unless
//! `TIMING_SERVICE_BIN` names a binary. `redis-server` must be installed
//! (`apt-get install -y redis-server`); without it the test fails, it is not skipped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::process::{Child, Command};

use crate::support::{free_port, repo_root};

const TOKEN: &str = "persistence-test-token";
const CHECKPOINTS: [&str; 4] = ["start", "split1", "split2", "finish"];
/// Competitors of the first phase: 4 timing points each, 10,000 in all.
const COMPETITORS: usize = 2_500;
const IN_FLIGHT: usize = 32;

/// The service binary: `TIMING_SERVICE_BIN`, else built (debug) into a target dir of its own.
fn service_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("TIMING_SERVICE_BIN") {
        return PathBuf::from(path);
    }
    // <target>/debug/deps/persistence-<hash>
    let exe = std::env::current_exe().unwrap();
    let target = exe
        .ancestors()
        .nth(3)
        .map_or_else(|| repo_root().join("target"), Path::to_path_buf)
        .join("persistence-service");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let started = Instant::now();
    let status = std::process::Command::new(cargo)
        .args(["build", "-p", "timing-service", "--target-dir"])
        .arg(&target)
        .current_dir(repo_root())
        .status()
        .expect("cargo runs");
    assert!(status.success(), "cargo build -p timing-service failed");
    eprintln!(
        "timing-service built in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    target.join("debug").join("timing-service")
}

/// `redis-server` arguments of the task definition, with `--dir` replaced.
fn redis_arguments(dir: &Path, port: u16) -> Vec<String> {
    let text = std::fs::read_to_string(repo_root().join("task-definitions/redis.json")).unwrap();
    let task: serde_json::Value = serde_json::from_str(&text).unwrap();
    let command: Vec<String> = task["containerDefinitions"][0]["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(command[0], "redis-server");
    let mut args: Vec<String> = command[1..].to_vec();
    let at = args.iter().position(|a| a == "--dir").expect("--dir");
    args[at + 1] = dir.display().to_string();
    for setting in ["--appendonly yes", "--appendfsync everysec", "--save 20 1"] {
        assert!(args.join(" ").contains(setting), "{args:?} lacks {setting}");
    }
    args.extend([
        "--port".into(),
        port.to_string(),
        "--bind".into(),
        "127.0.0.1".into(),
    ]);
    args
}

struct Redis {
    child: Child,
}

impl Redis {
    async fn start(dir: &Path, port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(redis_arguments(dir, port))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server ({e}): install it with `apt-get install -y redis-server`")
            });
        let redis = Self { child };
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return redis;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server did not listen on {port} within 5 s");
    }

    /// SIGTERM, then wait (bounded) for the exit; returns how long the shutdown took.
    async fn terminate(mut self) -> Duration {
        let pid = self.child.id().unwrap().to_string();
        let started = Instant::now();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("redis-server exits within 60 s of SIGTERM")
            .unwrap();
        assert!(exit.success(), "redis-server exited with {exit} on SIGTERM");
        started.elapsed()
    }

    /// SIGKILL: no chance to write anything more.
    async fn kill(mut self) {
        self.child.kill().await.unwrap();
    }

    async fn restart(dir: &Path, port: u16) -> Self {
        Self::start(dir, port).await
    }
}

struct Service {
    _child: Child,
    url: String,
    client: reqwest::Client,
}

impl Service {
    async fn start(binary: &Path, redis_port: u16) -> Self {
        let port = free_port();
        let child = Command::new(binary)
            .env_clear()
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("REDIS_URL", format!("redis://127.0.0.1:{redis_port}"))
            .env("TIMING_API_TOKEN", TOKEN)
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} ({e})", binary.display()));
        let service = Self {
            _child: child,
            url: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap(),
        };
        service.wait_ready(Duration::from_secs(30)).await;
        service
    }

    /// Until `/ready` (Redis answers PING, so it has loaded its data) is 200.
    async fn wait_ready(&self, limit: Duration) -> Duration {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Ok(response) = self.client.get(format!("{}/ready", self.url)).send().await
                && response.status() == 200
            {
                return started.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the service was not ready within {limit:?}");
    }

    async fn create(&self, bib: usize) -> bool {
        let body = serde_json::json!({
            "bib": bib.to_string(), "first_name": "Runner", "last_name": format!("N{bib}"),
            "gender": if bib.is_multiple_of(2) { "female" } else { "male" }, "country": "Finland",
            "category": if bib.is_multiple_of(2) { "women30" } else { "men30" },
        });
        matches!(
            self.client
                .post(format!("{}/api/v1/competitors", self.url))
                .bearer_auth(TOKEN)
                .json(&body)
                .send()
                .await,
            Ok(r) if r.status() == 201
        )
    }

    async fn set_time(&self, bib: usize, checkpoint: &str, time: &str) -> bool {
        matches!(
            self.client
                .put(format!(
                    "{}/api/v1/competitors/{bib}/times/{checkpoint}",
                    self.url
                ))
                .bearer_auth(TOKEN)
                .json(&serde_json::json!({ "time": time }))
                .send()
                .await,
            Ok(r) if r.status() == 204
        )
    }

    /// Checkpoint → time of day stored for `bib` (`None`: no such competitor).
    async fn times(&self, bib: usize) -> Option<Vec<(String, Option<String>)>> {
        let response = self
            .client
            .get(format!("{}/api/v1/competitors/{bib}/times", self.url))
            .send()
            .await
            .unwrap();
        if response.status() == 404 {
            return None;
        }
        assert_eq!(response.status(), 200, "GET times of {bib}");
        let view: serde_json::Value = response.json().await.unwrap();
        Some(
            view["checkpoints"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    (
                        c["checkpoint"].as_str().unwrap().to_owned(),
                        c["time_of_day"].as_str().map(str::to_owned),
                    )
                })
                .collect(),
        )
    }
}

/// A deterministic time of day for a competitor at a checkpoint.
fn time_of(bib: usize, checkpoint: usize) -> String {
    let ms = 9 * 3_600_000 + checkpoint * 900_000 + (bib * 7_919) % 600_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1_000 % 60,
        ms % 1_000
    )
}

/// One acknowledged write: competitor `bib`'s checkpoint (`None`: the competitor record).
#[derive(Debug, Clone)]
struct Ack {
    bib: usize,
    checkpoint: Option<usize>,
    at: Instant,
}

/// Writes competitors `bibs` and their four times; returns the acknowledged writes.
/// Writes of one competitor are in order; competitors are written `IN_FLIGHT` at a time.
/// Stops early (keeping what was acknowledged) once `stop` is set.
async fn write_race(
    service: &Service,
    bibs: impl Iterator<Item = usize>,
    stop: Option<Arc<Mutex<bool>>>,
) -> Vec<Ack> {
    let acks: Vec<Vec<Ack>> = futures::stream::iter(bibs)
        .map(|bib| {
            let stop = stop.clone();
            async move {
                let stopped = || stop.as_ref().is_some_and(|s| *s.lock().unwrap());
                let mut acks = Vec::new();
                if stopped() || !service.create(bib).await {
                    return acks;
                }
                acks.push(Ack {
                    bib,
                    checkpoint: None,
                    at: Instant::now(),
                });
                for (index, checkpoint) in CHECKPOINTS.iter().enumerate() {
                    if stopped()
                        || !service
                            .set_time(bib, checkpoint, &time_of(bib, index))
                            .await
                    {
                        break;
                    }
                    acks.push(Ack {
                        bib,
                        checkpoint: Some(index),
                        at: Instant::now(),
                    });
                }
                acks
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    acks.into_iter().flatten().collect()
}

/// The acknowledged writes that are missing now.
async fn missing(service: &Service, acks: &[Ack]) -> Vec<Ack> {
    let mut by_bib: std::collections::BTreeMap<usize, Vec<&Ack>> = Default::default();
    for ack in acks {
        by_bib.entry(ack.bib).or_default().push(ack);
    }
    let checks: Vec<Vec<Ack>> = futures::stream::iter(by_bib)
        .map(|(bib, acks)| async move {
            let stored = service.times(bib).await;
            acks.into_iter()
                .filter(|ack| match (&stored, ack.checkpoint) {
                    (None, _) => true,
                    (Some(_), None) => false,
                    (Some(times), Some(index)) => {
                        times[index] != (CHECKPOINTS[index].to_owned(), Some(time_of(bib, index)))
                    }
                })
                .cloned()
                .collect()
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    checks.into_iter().flatten().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_keeps_every_acknowledged_write_across_sigterm_and_loses_at_most_a_second_on_sigkill()
{
    let binary = tokio::task::spawn_blocking(service_binary).await.unwrap();
    let test = async {
        let data = tempfile::tempdir().unwrap();
        let port = free_port();
        let redis = Redis::start(data.path(), port).await;
        let service = Service::start(&binary, port).await;

        // Phase 1: 10,000 timing points (and the 2,500 competitors), then SIGTERM.
        let started = Instant::now();
        let acks = write_race(&service, 1..=COMPETITORS, None).await;
        let write_seconds = started.elapsed().as_secs_f64();
        let points = acks.iter().filter(|a| a.checkpoint.is_some()).count();
        assert_eq!(
            points,
            COMPETITORS * CHECKPOINTS.len(),
            "every write is acknowledged"
        );
        let shutdown = redis.terminate().await;
        let aof = std::fs::read_dir(data.path().join("appendonlydir"))
            .expect("Redis wrote its AOF directory")
            .count();
        assert!(aof >= 2, "AOF base and increment files");
        let redis = Redis::restart(data.path(), port).await;
        let ready = service.wait_ready(Duration::from_secs(60)).await;
        let lost = missing(&service, &acks).await;
        assert!(
            lost.is_empty(),
            "{} acknowledged writes lost across SIGTERM, e.g. {:?}",
            lost.len(),
            &lost[..lost.len().min(5)]
        );
        eprintln!(
            "SIGTERM: {points} timing points + {COMPETITORS} competitors written in {write_seconds:.1} s \
             ({:.0}/s); Redis stopped in {:.0} ms; service ready {:.0} ms after the restart; lost 0",
            acks.len() as f64 / write_seconds,
            shutdown.as_secs_f64() * 1e3,
            ready.as_secs_f64() * 1e3
        );

        // Phase 2: writes going on while Redis is killed with SIGKILL.
        let stop = Arc::new(Mutex::new(false));
        let writer = {
            let stop = stop.clone();
            let service = &service;
            async move { write_race(service, 100_000..200_000, Some(stop)).await }
        };
        let killer = async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            redis.kill().await;
            let killed_at = Instant::now();
            // Writes fail (503) for a while, then stop.
            tokio::time::sleep(Duration::from_millis(500)).await;
            *stop.lock().unwrap() = true;
            killed_at
        };
        let (acks, killed_at) = tokio::join!(writer, killer);
        let acked_before_kill = acks.iter().filter(|a| a.at <= killed_at).count();
        let _redis = Redis::restart(data.path(), port).await;
        service.wait_ready(Duration::from_secs(60)).await;
        let lost = missing(&service, &acks).await;
        let lost_older_than_a_second: Vec<&Ack> = lost
            .iter()
            .filter(|a| killed_at.saturating_duration_since(a.at) > Duration::from_secs(1))
            .collect();
        let oldest_lost_ms = lost
            .iter()
            .map(|a| killed_at.saturating_duration_since(a.at).as_millis())
            .max();
        eprintln!(
            "SIGKILL: {} writes acknowledged ({acked_before_kill} before the kill), {} lost \
             (oldest acknowledged {oldest_lost_ms:?} ms before the kill)",
            acks.len(),
            lost.len()
        );
        assert!(acked_before_kill > 100, "the writer ran before the kill");
        assert!(
            lost_older_than_a_second.is_empty(),
            "{} writes acknowledged over 1 s before SIGKILL were lost: {:?}",
            lost_older_than_a_second.len(),
            &lost_older_than_a_second[..lost_older_than_a_second.len().min(5)]
        );
        // The first phase is still whole after the kill.
        assert!(
            missing(&service, &write_race_acks_of_phase_one())
                .await
                .is_empty()
        );
    };
    tokio::time::timeout(Duration::from_secs(300), test)
        .await
        .expect("the persistence test ran for over 5 minutes");
}

/// Phase one's writes, rebuilt (every one was acknowledged).
fn write_race_acks_of_phase_one() -> Vec<Ack> {
    let now = Instant::now();
    (1..=COMPETITORS)
        .flat_map(|bib| {
            std::iter::once(None)
                .chain((0..CHECKPOINTS.len()).map(Some))
                .map(move |checkpoint| Ack {
                    bib,
                    checkpoint,
                    at: now,
                })
        })
        .collect()
}
