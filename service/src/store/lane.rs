//! The chip-read lane: a Redis connection of its own, used by one chip-read call at a time,
//! on which a call reads what it is planned from under `WATCH` and writes with `MULTI`/`EXEC`
//! (`passings`).
//!
//! `WATCH` is state of the connection, held between two round trips. On a shared multiplexed
//! connection another task's `EXEC` or `UNWATCH` would end it unseen, and a connection
//! manager that reconnected in between would run the `EXEC` unwatched, writing what was
//! planned from data that may have changed. Here the connection belongs to the holder of the
//! lock alone, and one that failed in any way is dropped, never reused: a transaction runs
//! watched, or not at all.

use redis::{AsyncConnectionConfig, Client, FromRedisValue, Pipeline, aio::MultiplexedConnection};
use tokio::sync::{Mutex, MutexGuard};

use super::{
    StoreError,
    connection::{OP_TIMEOUT, no_answer, store_error},
};

/// The lane: its client, and its connection while it has one.
pub(super) struct Lane {
    client: Client,
    connection: Mutex<Option<MultiplexedConnection>>,
}

/// The lane held: a chip-read call's use of its connection.
pub(super) struct LaneGuard<'a> {
    client: &'a Client,
    connection: MutexGuard<'a, Option<MultiplexedConnection>>,
}

impl Lane {
    /// The lane of `client`, not connected yet: the first call connects.
    pub(super) fn new(client: Client) -> Self {
        Self {
            client,
            connection: Mutex::new(None),
        }
    }

    /// Waits for the lane (calls of other batches go one after the other; each of their
    /// round trips is bounded by [`OP_TIMEOUT`]).
    pub(super) async fn lock(&self) -> LaneGuard<'_> {
        LaneGuard {
            client: &self.client,
            connection: self.connection.lock().await,
        }
    }
}

impl LaneGuard<'_> {
    /// Runs `pipe` on the lane's connection, connecting first if it has none; connecting and
    /// the round trip together are bounded by [`OP_TIMEOUT`]. Any failure, an error reply
    /// included, drops the connection and with it whatever it was watching.
    pub(super) async fn query<T: FromRedisValue>(
        &mut self,
        pipe: &Pipeline,
    ) -> Result<T, StoreError> {
        let client = self.client;
        let slot = &mut *self.connection;
        let run = async move {
            if slot.is_none() {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(OP_TIMEOUT / 2))
                    .set_response_timeout(Some(OP_TIMEOUT / 2));
                *slot = Some(
                    client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await?,
                );
            }
            match slot {
                Some(connection) => pipe.query_async(connection).await,
                None => Err(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "the chip-read lane has no connection",
                ))),
            }
        };
        let result = match tokio::time::timeout(OP_TIMEOUT, run).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(err)) => Err(store_error(err)),
            Err(_) => Err(no_answer()),
        };
        *self.connection = None;
        result
    }
}
