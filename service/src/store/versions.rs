//! The versions of the ranking scopes that the write script bumps on every change, and the
//! pub/sub channel it announces changes on (key names in `keys`; read by `crate::live`).

use std::time::Duration;

use futures::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};

use super::{OP_TIMEOUT, Scope, Store, StoreError, keys};

impl Scope<'_> {
    /// The scope's name in versions and change messages, as the write script writes it.
    pub fn live_name(self) -> String {
        keys::scope_suffix(self)
    }
}

/// One announced change: its version and the scopes it touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The version the change gave its scopes.
    pub version: u64,
    /// The scope names.
    pub scopes: Vec<String>,
}

impl Change {
    /// Parses `<version> <scope> ...`; `None` for anything else.
    pub fn parse(payload: &str) -> Option<Self> {
        let mut words = payload.split(' ');
        let version = words.next()?.parse().ok()?;
        Some(Self {
            version,
            scopes: words.filter(|w| !w.is_empty()).map(str::to_owned).collect(),
        })
    }
}

impl Store {
    /// The version of a scope (by [`Scope::live_name`]); 0 before its first change. One `HGET`.
    pub async fn version(&self, scope: &str) -> Result<u64, StoreError> {
        let mut pipe = redis::pipe();
        pipe.hget(keys::LIVE_VERSION, scope);
        let (version,): (Option<u64>,) = self.conn.query(&pipe).await?;
        Ok(version.unwrap_or(0))
    }

    /// Subscribes to the change channel on a connection of its own.
    pub async fn subscribe_changes(&self) -> Result<Subscription, StoreError> {
        let connect = async {
            let mut pubsub = self.conn.client().get_async_pubsub().await?;
            pubsub.subscribe(keys::LIVE_CHANGES).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match tokio::time::timeout(OP_TIMEOUT, connect).await {
            Ok(Ok(pubsub)) => {
                let (sink, messages) = pubsub.split();
                let mut ping =
                    tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
                ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                Ok(Subscription {
                    sink,
                    messages,
                    ping,
                })
            }
            Ok(Err(err)) => Err(StoreError::Unavailable(err.to_string())),
            Err(_) => Err(StoreError::Unavailable(format!(
                "no subscription within {} ms",
                OP_TIMEOUT.as_millis()
            ))),
        }
    }
}

/// How often an idle subscription checks that Redis still answers.
const PING_EVERY: Duration = Duration::from_secs(5);

/// The change announcements of one subscriber connection.
pub struct Subscription {
    sink: PubSubSink,
    messages: PubSubStream,
    ping: tokio::time::Interval,
}

impl Subscription {
    /// The next change; `None` once the connection is lost or does not answer a `PING` (sent
    /// every 5 s) within [`OP_TIMEOUT`]: a peer that vanished without closing the socket
    /// would otherwise leave the subscription silent forever.
    pub async fn next(&mut self) -> Option<Change> {
        loop {
            tokio::select! {
                msg = self.messages.next() => {
                    let msg = msg?;
                    if let Some(change) = msg.get_payload::<String>().ok().as_deref().and_then(Change::parse) {
                        return Some(change);
                    }
                }
                _ = self.ping.tick() => {
                    let answer = tokio::time::timeout(OP_TIMEOUT, self.sink.ping::<redis::Value>()).await;
                    if !matches!(answer, Ok(Ok(_))) {
                        return None;
                    }
                }
            }
        }
    }
}
