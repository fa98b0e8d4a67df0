//! The one Redis connection of the service, surviving Redis restarts and moves.
//!
//! One multiplexed [`ConnectionManager`] serves all requests. It reconnects by itself after an
//! I/O error, resolving the host name again (on Fargate, Redis comes back at a new address under
//! the same DNS name). A peer that vanished without closing the socket only shows as timeouts,
//! which the manager does not treat as fatal, so after a timeout the connection replaces the
//! manager with a fresh one. Every operation is bounded by [`OP_TIMEOUT`]: with Redis down,
//! requests answer 503 quickly instead of hanging.

use std::{future::Future, sync::RwLock, time::Duration};

use redis::{
    Client, ErrorKind, RedisError, RedisResult, ServerErrorKind,
    aio::{ConnectionManager, ConnectionManagerConfig},
};

use super::StoreError;

/// Whether Redis answered with a state that passes by itself: `LOADING` while it reads its
/// data after a restart (the provisioner's Redis keeps an append-only file, which it reads
/// whole before it serves anything), `TRYAGAIN`, `MASTERDOWN` or `CLUSTERDOWN` during a
/// failover. (For a pipeline, the kind of its first failed command.)
fn is_passing(err: &RedisError) -> bool {
    matches!(
        err.kind(),
        ErrorKind::Server(
            ServerErrorKind::BusyLoading
                | ServerErrorKind::TryAgain
                | ServerErrorKind::MasterDown
                | ServerErrorKind::ClusterDown
        )
    )
}

/// Upper bound of one store operation, connection included.
pub const OP_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone)]
struct Generation {
    number: u64,
    manager: ConnectionManager,
}

/// The shared, self-renewing connection.
pub(super) struct Connection {
    client: Client,
    config: ConnectionManagerConfig,
    current: RwLock<Generation>,
}

impl Connection {
    /// Creates the connection without connecting: the first operation connects.
    pub(super) fn new(redis_url: &str) -> Result<Self, redis::RedisError> {
        let client = Client::open(redis_url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), config.clone())?;
        Ok(Self {
            client,
            config,
            current: RwLock::new(Generation { number: 0, manager }),
        })
    }

    fn current(&self) -> Generation {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the connection manager of generation `number` with a fresh one (if nobody did
    /// yet).
    fn renew(&self, number: u64) {
        let mut guard = match self.current.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if guard.number != number {
            return;
        }
        match ConnectionManager::new_lazy_with_config(self.client.clone(), self.config.clone()) {
            Ok(manager) => {
                tracing::warn!("redis timed out; reconnecting");
                *guard = Generation {
                    number: number + 1,
                    manager,
                };
            }
            Err(err) => tracing::error!(%err, "cannot create a new redis connection"),
        }
    }

    /// The client, for connections of their own (the change subscription).
    pub(super) fn client(&self) -> &Client {
        &self.client
    }

    /// Runs one operation on the shared connection, bounded by [`OP_TIMEOUT`]. Redis not
    /// reachable, not answering in time, or in a state that passes (see [`is_passing`]) is
    /// [`StoreError::Unavailable`] (503: try again); any other failure is an error.
    pub(super) async fn run<T, F, Fut>(&self, op: F) -> Result<T, StoreError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let Generation { number, manager } = self.current();
        match tokio::time::timeout(OP_TIMEOUT, op(manager)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => {
                if err.is_timeout() {
                    self.renew(number);
                }
                if err.is_io_error()
                    || err.is_timeout()
                    || err.is_connection_dropped()
                    || err.is_connection_refusal()
                    || err.is_unrecoverable_error()
                    || is_passing(&err)
                {
                    Err(StoreError::Unavailable(err.to_string()))
                } else {
                    Err(StoreError::Internal(err.to_string()))
                }
            }
            Err(_) => {
                self.renew(number);
                Err(StoreError::Unavailable(format!(
                    "no answer within {} ms",
                    OP_TIMEOUT.as_millis()
                )))
            }
        }
    }

    /// Runs a pipeline.
    pub(super) async fn query<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<T, StoreError> {
        self.run(|mut conn| async move { pipe.query_async(&mut conn).await })
            .await
    }
}
