//! The recording, fault-injecting HTTP proxy between the provisioner and moto.
//!
//! It records every AWS call (so the tests count mutating calls independently of the
//! provisioner's own counter), refuses the teardown orders AWS refuses and moto allows
//! ([`aws_rules`](super::aws_rules)), and injects the faults a real account produces:
//!
//! - [`Proxy::inject`]: throttling and HTTP 500 answers at a given rate, in each protocol's
//!   own error shape ([`Protocol`]), chosen by a seed so that a run can be replayed;
//! - [`Proxy::fail_after`]: every request after the next `n` fails (an outage);
//! - [`Proxy::rewrite`]: the successful answers to one operation changed into what AWS would
//!   answer where moto answers otherwise (a service that will not drain, a policy given back
//!   URL-encoded);
//! - [`Proxy::kill_after`]: the `n`-th request from now reaches moto, then the provisioner
//!   process that sent it is SIGKILLed before it can read the answer (an `up` or `down` cut
//!   off at any point, including right after a write it never learns the outcome of).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::aws_rules::AwsRules;
use super::moto::Moto;
use super::protocol::{Protocol, operation_of, service_of};
use super::run::{KillSwitch, Provisioner};

/// One AWS call seen by the proxy.
#[derive(Debug, Clone)]
pub struct Call {
    /// The request's number among all the proxy received, from 1.
    pub number: usize,
    /// The service's signing name, which is its IAM prefix, e.g. `ecs`.
    pub service: String,
    /// Operation name, e.g. `CreateService`.
    pub operation: String,
    /// The HTTP method, e.g. `POST`.
    pub method: String,
    /// Request body as text.
    pub body: String,
}

impl Call {
    /// The IAM action the call needs, e.g. `ecs:CreateService`. API Gateway's IAM actions are
    /// its HTTP methods (`apigateway:POST`), not its operations.
    pub fn action(&self) -> String {
        if self.service == "apigateway" {
            format!("apigateway:{}", self.method)
        } else {
            format!("{}:{}", self.service, self.operation)
        }
    }

    /// Whether the call changes something: judged here by the operation's name, apart from
    /// the provisioner's own counter, which the tests check against this.
    pub fn is_mutating(&self) -> bool {
        ![
            "Describe",
            "List",
            "Get",
            "BatchGet",
            "BatchCheck",
            "Filter",
        ]
        .iter()
        .any(|p| self.operation.starts_with(p))
    }
}

/// Faults injected into the calls the proxy passes on. Each request is answered as throttled
/// with probability `throttled`, else with HTTP 500 with probability `server_errors`, and is
/// otherwise forwarded. Whether a request is hit depends only on `seed`, its operation and how
/// many requests of that operation came before it (retries included), so a run with the same
/// seed meets the same faults on the same calls, whatever the interleaving of other
/// operations.
#[derive(Debug, Clone, Copy)]
pub struct Faults {
    pub throttled: f64,
    pub server_errors: f64,
    pub seed: u64,
}

/// What the proxy answered instead of forwarding a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injected {
    Throttled,
    ServerError,
}

/// SplitMix64: a well-mixed 64-bit hash of a 64-bit input.
fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl Faults {
    /// The fault for the `occurrence`-th request (from 0) of `operation`, if any.
    fn pick(&self, operation: &str, occurrence: u64) -> Option<Injected> {
        let name = operation.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        let draw = splitmix64(self.seed ^ splitmix64(name ^ splitmix64(occurrence)));
        // The top 53 bits as a uniform number in [0, 1).
        let x = (draw >> 11) as f64 / (1_u64 << 53) as f64;
        if x < self.throttled {
            Some(Injected::Throttled)
        } else if x < self.throttled + self.server_errors {
            Some(Injected::ServerError)
        } else {
            None
        }
    }
}

#[derive(Default)]
struct FaultState {
    faults: Option<Faults>,
    occurrences: HashMap<String, u64>,
    injected: Vec<(String, Injected)>,
}

#[derive(Clone)]
struct ProxyState {
    upstream: String,
    client: reqwest::Client,
    rules: AwsRules,
    calls: Arc<Mutex<Vec<Call>>>,
    refusals: Arc<Mutex<Vec<String>>>,
    /// Requests received so far, forwarded or not.
    received: Arc<AtomicUsize>,
    /// Requests numbered above this (from 1) fail without reaching moto.
    fail_after: Arc<AtomicUsize>,
    /// The request numbered this reaches moto, then the provisioner is killed.
    kill_at: Arc<AtomicUsize>,
    kill_switch: KillSwitch,
    faults: Arc<Mutex<FaultState>>,
    rewrites: Arc<Mutex<Vec<(String, Rewrite)>>>,
}

/// Turns the body of a successful answer into another (what AWS would answer where moto
/// answers otherwise: a service that will not drain, a mount target still being created).
pub type Rewrite = Arc<dyn Fn(&str) -> String + Send + Sync>;

async fn forward(
    State(state): State<ProxyState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let text = String::from_utf8_lossy(&body).into_owned();
    let operation = operation_of(&method, &uri, &headers, &text);
    let service = service_of(&headers);
    let protocol = Protocol::of(&headers, &service);
    let number = state.received.fetch_add(1, Ordering::SeqCst) + 1;
    let kill_at = state.kill_at.load(Ordering::SeqCst);
    if number > state.fail_after.load(Ordering::SeqCst) || number > kill_at {
        return protocol.internal_error("injected fault: the emulator stopped answering");
    }
    if let Some(fault) = state.faults.lock().unwrap().pick(&operation) {
        return match fault {
            Injected::Throttled => protocol.throttled(),
            Injected::ServerError => protocol.internal_error("injected fault: internal error"),
        };
    }
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok());
    let refusal = state.rules.refusal(target, &operation, &text).await;
    state.calls.lock().unwrap().push(Call {
        number,
        service,
        operation: operation.clone(),
        method: method.to_string(),
        body: text,
    });
    if let Some(refusal) = refusal {
        state
            .refusals
            .lock()
            .unwrap()
            .push(format!("{operation}: {refusal:?}"));
        return refusal.into_response();
    }
    let response = pass_on(&state, &operation, method, &uri, &headers, body).await;
    if number == kill_at {
        // moto has done what was asked; the caller dies before it reads the answer.
        state.kill_switch.pull().await;
    }
    response
}

impl FaultState {
    /// Counts this request of `operation` and decides its fault, remembering it.
    fn pick(&mut self, operation: &str) -> Option<Injected> {
        let faults = self.faults?;
        let occurrence = self.occurrences.entry(operation.to_owned()).or_default();
        let fault = faults.pick(operation, *occurrence);
        *occurrence += 1;
        if let Some(fault) = fault {
            self.injected.push((operation.to_owned(), fault));
        }
        fault
    }
}

/// Sends the request on to moto and relays its answer.
async fn pass_on(
    state: &ProxyState,
    operation: &str,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let url = format!(
        "{}{}",
        state.upstream,
        uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
    );
    let mut request = state.client.request(method, url).body(body);
    for (name, value) in headers {
        if name != "host" && name != "content-length" {
            request = request.header(name, value);
        }
    }
    match request.send().await {
        Ok(upstream) => {
            let status = upstream.status();
            let mut response_headers = HeaderMap::new();
            for (name, value) in upstream.headers() {
                if name != "content-length" && name != "transfer-encoding" && name != "connection" {
                    response_headers.insert(name.clone(), value.clone());
                }
            }
            let mut bytes = upstream.bytes().await.unwrap_or_default();
            let rewrite = state
                .rewrites
                .lock()
                .unwrap()
                .iter()
                .find(|(op, _)| op == operation)
                .map(|(_, rewrite)| rewrite.clone());
            if let Some(rewrite) = rewrite.filter(|_| status.is_success()) {
                bytes = Bytes::from(rewrite(&String::from_utf8_lossy(&bytes)));
            }
            (status, response_headers, bytes).into_response()
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

/// A recording, fault-injecting proxy in front of moto; stops when dropped.
pub struct Proxy {
    state: ProxyState,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(moto: &Moto) -> Self {
        let state = ProxyState {
            upstream: moto.url.clone(),
            client: reqwest::Client::new(),
            rules: AwsRules::new(moto).await,
            calls: Arc::default(),
            refusals: Arc::default(),
            received: Arc::default(),
            fail_after: Arc::new(AtomicUsize::new(usize::MAX)),
            kill_at: Arc::new(AtomicUsize::new(usize::MAX)),
            kill_switch: KillSwitch::default(),
            faults: Arc::default(),
            rewrites: Arc::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { state, url, task }
    }

    /// `provisioner ARGS` against this proxy (which can kill it: [`Proxy::kill_after`]).
    pub fn provisioner(&self, args: &[&str]) -> Provisioner {
        Provisioner::new(&self.url, args).killable_by(self.state.kill_switch.clone())
    }

    /// Every call recorded so far (not the requests answered with an injected fault).
    pub fn calls(&self) -> Vec<Call> {
        self.state.calls.lock().unwrap().clone()
    }

    /// The request bodies of the recorded calls of `operation` (of a JSON protocol: ECS, SSM,
    /// ...), parsed, in order.
    pub fn json_bodies(&self, operation: &str) -> Vec<serde_json::Value> {
        self.calls()
            .into_iter()
            .filter(|c| c.operation == operation)
            .map(|c| {
                serde_json::from_str(&c.body)
                    .unwrap_or_else(|e| panic!("{operation} body is not JSON ({e}): {}", c.body))
            })
            .collect()
    }

    /// The requests refused for AWS's teardown-order rules, `Operation: why`.
    pub fn refusals(&self) -> Vec<String> {
        self.state.refusals.lock().unwrap().clone()
    }

    /// Forgets the calls recorded so far.
    pub fn clear(&self) {
        self.state.calls.lock().unwrap().clear();
    }

    /// Mutating operations recorded so far.
    pub fn mutating(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(Call::is_mutating)
            .map(|c| c.operation)
            .collect()
    }

    /// How many requests the proxy has received (forwarded, refused or failed).
    pub fn received(&self) -> usize {
        self.state.received.load(Ordering::SeqCst)
    }

    /// From now on, answer only `n` more requests, then fail every one.
    pub fn fail_after(&self, n: usize) {
        let received = self.received();
        self.state.fail_after.store(received + n, Ordering::SeqCst);
    }

    /// The `n`-th request from now (1 = the next) reaches moto, then the provisioner process
    /// that sent it is SIGKILLed; later requests fail without reaching moto.
    pub fn kill_after(&self, n: usize) {
        assert!(n >= 1, "kill_after counts from 1");
        let received = self.received();
        self.state.kill_at.store(received + n, Ordering::SeqCst);
    }

    /// From now on, inject `faults` (replacing any before).
    pub fn inject(&self, faults: Faults) {
        let mut state = self.state.faults.lock().unwrap();
        state.faults = Some(faults);
        state.occurrences.clear();
    }

    /// The faults injected so far: operation and kind.
    pub fn injected(&self) -> Vec<(String, Injected)> {
        self.state.faults.lock().unwrap().injected.clone()
    }

    /// From now on, the successful answers to `operation` pass through `rewrite`.
    pub fn rewrite(
        &self,
        operation: &str,
        rewrite: impl Fn(&str) -> String + Send + Sync + 'static,
    ) {
        self.state
            .rewrites
            .lock()
            .unwrap()
            .push((operation.to_owned(), Arc::new(rewrite)));
    }

    /// Answers are passed on as moto gives them again.
    pub fn stop_rewriting(&self) {
        self.state.rewrites.lock().unwrap().clear();
    }

    /// Answer every request again: no outage, no kill, no injected faults.
    pub fn heal(&self) {
        self.state.fail_after.store(usize::MAX, Ordering::SeqCst);
        self.state.kill_at.store(usize::MAX, Ordering::SeqCst);
        self.state.faults.lock().unwrap().faults = None;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
