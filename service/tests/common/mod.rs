//! Test helpers: a real `redis-server` per test on a free loopback port, the service on
//! `127.0.0.1:0`, and a small JSON client.

#![allow(dead_code)]

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use reqwest::Method;
use serde_json::Value;
use timing_service::{
    AppState, ServeOptions, app, live::Live, race::Race, serve_with, store::Store,
};

/// A `redis-server` child process, killed on drop.
pub struct Redis {
    child: Option<Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

/// Raises this test process's open-files limit to its hard limit, once. All the tests run in
/// one process, and some hold thousands of sockets at once (2,000 half-sent clients against the
/// connection cap, 5,000 long polls): more than the 1,024 a developer's login allows by
/// default, after which every other test fails with "Too many open files" (cargo-nextest
/// raises the limit the same way).
pub fn raise_open_files_limit() {
    static RAISED: std::sync::Once = std::sync::Once::new();
    RAISED.call_once(|| {
        // Up to the hard limit; where that is low the test that needs more fails on its own.
        let _ = rlimit::increase_nofile_limit(u64::MAX);
    });
}

/// A free TCP port on 127.0.0.1 (free when this returns; tests tolerate the small race).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot find a free port")
}

fn spawn_redis(port: u16, more: &[&str]) -> Child {
    Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(more)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `redis-server` ({e}); the tests need a real Redis: install it with \
                 `apt-get install -y redis-server` (or run scripts/install-deps)"
            )
        })
}

/// The `process_id` of the Redis answering on `port`, from `INFO server`; `None` while nothing
/// answers. Comparing it with our child's id tells our server from another test's that took
/// the port first.
fn server_pid(port: u16) -> Option<u32> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .ok()?;
    stream.write_all(b"INFO server\r\n").ok()?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    // A bulk string `$<len>\r\n<text>\r\n`: read until the whole text is in.
    loop {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        reply.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&reply);
        let Some((len, rest)) = text.strip_prefix('$').and_then(|t| t.split_once("\r\n")) else {
            if reply.len() > 64 {
                return None; // not a bulk string (an error reply while loading)
            }
            continue;
        };
        if rest.len() < len.parse::<usize>().ok()? {
            continue;
        }
        return rest
            .lines()
            .find_map(|line| line.strip_prefix("process_id:"))
            .and_then(|pid| pid.trim().parse().ok());
    }
}

impl Redis {
    /// Starts a fresh, empty Redis on a free port (another port when a concurrent test took
    /// the first one between our probe and the server's bind).
    pub fn start() -> Self {
        raise_open_files_limit();
        for _ in 0..5 {
            let mut redis = Self {
                child: None,
                port: free_port(),
            };
            if redis.restart() {
                return redis;
            }
        }
        panic!("redis-server did not start on any of 5 free ports");
    }

    /// (Re)starts Redis on its port; `false` when our server does not answer within 5 s, for
    /// example because it exited on finding the port taken (then whatever answers there is
    /// someone else's Redis, which must not be used).
    pub fn restart(&mut self) -> bool {
        self.stop();
        let mut child = spawn_redis(self.port, &[]);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return false; // exited: port taken
            }
            if server_pid(self.port) == Some(child.id()) {
                self.child = Some(child);
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// Restarts Redis on its port with `more` arguments (a data directory to load, say),
    /// without waiting for it: for a Redis that is still starting.
    pub fn restart_with(&mut self, more: &[&str]) {
        self.stop();
        self.child = Some(spawn_redis(self.port, more));
    }

    /// Freezes (`SIGSTOP`) or thaws (`SIGCONT`) the server: frozen, it keeps its sockets open
    /// and the kernel still accepts connections, but nothing answers (as a peer that vanished
    /// without closing the socket looks). Unlike `CLIENT PAUSE` there is no duration to outlast.
    pub fn freeze(&self, frozen: bool) {
        let pid = self
            .child
            .as_ref()
            .map(Child::id)
            .expect("redis is not running");
        let signal = if frozen { "-STOP" } else { "-CONT" };
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} {pid} failed");
    }

    /// Kills Redis (no save).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A connection of the test's own, to look at or change what the service stored.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .expect("redis client")
            .get_multiplexed_async_connection()
            .await
            .expect("redis connection")
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The service on a loopback port with its own Redis.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// Its Redis.
    pub redis: Redis,
    /// Token sent by [`TestApp::call`] when set.
    pub token: Option<String>,
    /// The process's long-poll hub (to wait until a long poll is parked).
    pub live: Live,
    /// The process's store (to wait until a ranking is kept).
    pub store: Store,
    client: reqwest::Client,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A store of `race` that never connects (a store connects when first used): the names its
/// Functions library and functions carry.
pub fn unconnected_store(race: Race) -> Store {
    Store::new("redis://127.0.0.1:1", std::sync::Arc::new(race)).expect("store")
}

/// Starts the service with the original race definition and no token.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(Race::default(), None).await
}

/// Starts the service with a race definition and an optional API token.
pub async fn spawn_app_with(race: Race, token: Option<&str>) -> TestApp {
    let redis = Redis::start();
    let state = AppState::new(&redis.url(), race, token.map(str::to_owned)).expect("state");
    spawn_app_on(redis, state).await
}

/// Starts the service with its request time bound (if given) and server limits set.
pub async fn spawn_app_limited(
    race: Race,
    token: Option<&str>,
    request_timeout: Option<Duration>,
    options: ServeOptions,
) -> TestApp {
    let redis = Redis::start();
    let mut state = AppState::new(&redis.url(), race, token.map(str::to_owned)).expect("state");
    if let Some(limit) = request_timeout {
        state.request_timeout = limit;
    }
    spawn_app_on_with(redis, state, options).await
}

/// A second service process (another API task) on a [`TestApp`]'s Redis; stops on drop.
pub struct Peer {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn serve_state(
    state: AppState,
    options: ServeOptions,
) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let server = tokio::spawn(async move {
        let _ = serve_with(listener, app(state), std::future::pending(), options).await;
    });
    (base, server)
}

/// Starts the service with `state` (built on `redis`).
pub async fn spawn_app_on(redis: Redis, state: AppState) -> TestApp {
    spawn_app_on_with(redis, state, ServeOptions::default()).await
}

/// Starts the service with `state` (built on `redis`) and server limits.
pub async fn spawn_app_on_with(redis: Redis, state: AppState, options: ServeOptions) -> TestApp {
    let token = state.credentials.first_token().map(str::to_owned);
    let (live, store) = (state.live.clone(), state.store.clone());
    let (base, server) = serve_state(state, options).await;
    TestApp {
        base,
        redis,
        token,
        live,
        store,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client"),
        server,
    }
}

/// Waits (up to 10 s) until `read` gives `expected`, checking every 10 ms; fails saying what
/// it gave (`what`) otherwise.
async fn wait_until(read: impl Fn() -> usize, expected: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = read();
        if now == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{now} {what}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

impl TestApp {
    /// Starts another service process on this app's Redis, with the default race.
    pub async fn peer(&self) -> Peer {
        self.peer_with(|url, token| AppState::new(url, Race::default(), token).expect("state"))
            .await
    }

    /// Starts another service process on this app's Redis, with the state `state` makes of
    /// the Redis URL and this app's token.
    pub async fn peer_with(&self, state: impl FnOnce(&str, Option<String>) -> AppState) -> Peer {
        let state = state(&self.redis.url(), self.token.clone());
        let (base, server) = serve_state(state, ServeOptions::default()).await;
        Peer { base, server }
    }

    /// Waits (up to 10 s) until `n` long polls are parked in this process.
    pub async fn waiters(&self, n: usize) {
        wait_until(|| self.live.waiters(), n, "long polls waiting").await;
    }

    /// Waits (up to 10 s) until this process keeps `n` rows of whole rankings (a ranking is
    /// read whole in the background after the page read that decided it).
    pub async fn kept_rows(&self, n: usize) {
        wait_until(
            || self.store.kept_ranking_rows(),
            n,
            "rows of rankings kept",
        )
        .await;
    }

    /// Sends a request (JSON body if given, the app's token if set) and returns the status and
    /// the JSON answer (`Null` for an empty body).
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        self.send(request).await
    }

    /// Sends a prepared request and returns status and JSON.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        let response = request.send().await.expect("request failed");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
        };
        (status, json)
    }

    /// A raw request builder (no token, no body).
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(Method::PUT, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.call(Method::DELETE, path, None).await
    }

    /// Creates a competitor through v1, asserting 201.
    pub async fn competitor(&self, bib: &str, gender: &str, category: &str) {
        let (status, body) = self
            .post(
                "/api/v1/competitors",
                serde_json::json!({"bib": bib, "first_name": format!("First{bib}"),
                    "last_name": format!("Last{bib}"), "gender": gender, "country": "Finland",
                    "category": category}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }

    /// Sets times through v1 (`{"start": "...", ...}`), asserting 204.
    pub async fn times(&self, bib: &str, times: Value) {
        let (status, body) = self
            .patch(&format!("/api/v1/competitors/{bib}/times"), times)
            .await;
        assert_eq!(status, 204, "{body}");
    }

    /// Sets a manual time through v1 (`PUT .../times/<checkpoint>`), asserting 204.
    pub async fn set_time(&self, bib: &str, checkpoint: &str, time: &str) {
        self.put_no_content(
            &format!("/api/v1/competitors/{bib}/times/{checkpoint}"),
            serde_json::json!({ "time": time }),
        )
        .await;
    }

    /// Sets a status through v1 (`null` clears it), asserting 204.
    pub async fn set_status(&self, bib: &str, status: Value) {
        self.put_no_content(
            &format!("/api/v1/competitors/{bib}/status"),
            serde_json::json!({ "status": status }),
        )
        .await;
    }

    /// `PUT`s a body, asserting 204.
    async fn put_no_content(&self, path: &str, body: Value) {
        let (status, answer) = self.put(path, body).await;
        assert_eq!(status, 204, "{answer}");
    }
}

/// Asserts a 4xx JSON error whose message contains `needle`.
#[track_caller]
pub fn assert_error(answer: &(u16, Value), status: u16, needle: &str) {
    assert_eq!(answer.0, status, "{}", answer.1);
    let message = answer.1["error"].as_str().unwrap_or_default();
    assert!(
        message.contains(needle),
        "`{message}` should contain `{needle}`"
    );
}

/// `cmdstat_<command>` calls so far in INFO commandstats of the test's Redis.
pub async fn command_calls(app: &TestApp, command: &str) -> u64 {
    commands_calls(app, &[command]).await[0]
}

/// [`command_calls`] of several commands, from one `INFO commandstats`.
pub async fn commands_calls(app: &TestApp, commands: &[&str]) -> Vec<u64> {
    let mut conn = app.redis.connection().await;
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .expect("INFO commandstats");
    commands
        .iter()
        .map(|command| {
            let prefix = format!("cmdstat_{command}:calls=");
            info.lines()
                .find_map(|line| line.strip_prefix(&prefix))
                .and_then(|rest| rest.split(',').next())
                .map_or(0, |calls| calls.parse().expect("calls"))
        })
        .collect()
}

/// Calls so far of the commands that read a competitor the long way (their times, their manual
/// times), not from the times index.
pub async fn long_way_calls(app: &TestApp) -> Vec<u64> {
    commands_calls(app, &["zrange", "zmscore", "hgetall"]).await
}
