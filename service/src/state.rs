//! What every handler shares: the store, the race definition, the write credentials, the
//! long polls and the request bound, built once at start-up.

use std::{sync::Arc, time::Duration};

use axum::http::HeaderMap;

use crate::{
    auth,
    error::ApiError,
    layers,
    live::{self, Freshness, Live},
    race::Race,
    store::Store,
};

/// State shared by every handler; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The Redis store.
    pub store: Store,
    /// The race definition.
    pub race: Arc<Race>,
    /// The write credentials (none: writes are open).
    pub credentials: Arc<auth::Credentials>,
    /// The long polls of this process and their change subscription.
    pub live: Live,
    /// Upper bound of a request, body upload included ([`layers::REQUEST_TIMEOUT`] unless a
    /// test shortens it).
    pub request_timeout: Duration,
}

impl AppState {
    /// Builds the state with one write token (named `default`; empty counts as none). Inside a tokio runtime, it starts the
    /// process's subscription to Redis's change announcements (see `live`).
    pub fn new(
        redis_url: &str,
        race: Race,
        token: Option<String>,
    ) -> Result<Self, redis::RedisError> {
        let race = Arc::new(race);
        let store = Store::new(redis_url, race.clone())?;
        let live = Live::new(&race, live::DEFAULT_MAX_WAITERS);
        live.start(store.clone());
        Ok(Self {
            store,
            race,
            credentials: Arc::new(
                auth::Credentials::parse(token.as_deref(), None).unwrap_or_default(),
            ),
            live,
            request_timeout: layers::REQUEST_TIMEOUT,
        })
    }

    /// Replaces the write credentials (`TIMING_API_TOKEN` and `TIMING_API_TOKENS`).
    pub fn with_credentials(mut self, credentials: auth::Credentials) -> Self {
        self.credentials = Arc::new(credentials);
        self
    }

    /// Sets how many results rows whole rankings may keep in memory (0: none).
    pub fn with_kept_ranking_rows(self, rows: usize) -> Self {
        self.store.set_kept_ranking_rows(rows);
        self
    }

    /// Sets whether chip-read calls are planned in this process (see `store::passings`).
    pub fn with_planned_reads(self, on: bool) -> Self {
        self.store.set_planned_reads(on);
        self
    }

    /// Sets the limit of long polls waiting at once in this process.
    pub fn with_max_waiters(self, max_waiters: usize) -> Self {
        self.live.set_max_waiters(max_waiters);
        self
    }

    /// Whether a read of `scope` in representation `variant` is answered without reading
    /// (304, after a long poll's `wait`) or read; see [`live::check`].
    pub async fn freshness(
        &self,
        scope: &str,
        variant: &str,
        request: &HeaderMap,
        wait: Option<Duration>,
    ) -> Result<Freshness, ApiError> {
        live::check(&self.live, &self.store, scope, variant, request, wait).await
    }
}
