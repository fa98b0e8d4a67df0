//! Cheap live reads: ETags from the scope versions the write script keeps, `304 Not Modified`
//! without reading any row, and long polling (`?wait=25s`) woken through Redis pub/sub.
//!
//! Every change bumps the version of each ranking scope it touches (`all`, `gender:<g>`,
//! `category:<c>`; see `crate::store::versions`) and publishes it. A read's ETag is that
//! version (plus the representation), read with one `HGET` before the content: when it equals
//! the request's `If-None-Match`, the answer is 304 and no row is read. (A competitor's times
//! are read with their version in one atomic call, so only a conditional request reads the
//! version first: see [`conditional`].)
//!
//! Long polling: with `?wait=<duration>` (at most [`MAX_WAIT`], under the 30 s of the gateway in
//! front of the service) and a matching `If-None-Match`, the request waits until its scope
//! changes or the wait ends, then answers 200 with the new content or 304. Each process keeps
//! one subscriber connection to Redis ([`Live::start`]), whatever the number of waiters; it
//! fans the announcements out to one `tokio::sync::watch` channel per scope, so a change wakes
//! every waiter of that scope in every process sharing the Redis. A waiter costs one parked
//! task and its connection (no Redis connection, no timer thread). Beyond [`Live`]'s waiter
//! limit a long poll answers 503 with `Retry-After` at once rather than holding memory
//! without bound: the limit protects the process, and 503 (not 429) says that the server,
//! not that client, is busy.

use std::{
    collections::HashMap,
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Json,
    body::Bytes,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use futures::future::{BoxFuture, FutureExt, Shared};
use tokio::sync::watch;

use crate::{
    error::ApiError,
    race::Race,
    store::{Scope, Store, StoreError},
};

/// Longest long poll: under API Gateway's 30 s cut.
pub const MAX_WAIT: Duration = Duration::from_secs(25);
/// Default limit of waiting long polls per process.
pub const DEFAULT_MAX_WAITERS: usize = 10_000;
/// `Retry-After` of a long poll refused for the waiter limit, in seconds.
pub const RETRY_AFTER_SECS: u64 = 2;
/// `Cache-Control` of live data: caches may keep a copy but must revalidate it each time;
/// revalidating is a 304 that costs one small Redis read.
pub const CACHE_CONTROL: &str = "no-cache";
/// Rendered answers kept (a results page of 50 rows is about 12 KiB: 3 MiB at most).
pub const RENDERED_ENTRIES: usize = 256;
/// Pause between attempts to (re)subscribe after Redis went away.
const RESUBSCRIBE_DELAY: Duration = Duration::from_millis(500);

/// An answer being rendered or rendered, shared by every request for it.
type Rendering = Shared<BoxFuture<'static, Result<Bytes, StoreError>>>;

/// The per-process hub of long polls; cheap to clone.
#[derive(Clone)]
pub struct Live {
    inner: Arc<Inner>,
}

struct Inner {
    /// One channel per scope name, created up front from the race definition (so no lock):
    /// the value is the last announced version.
    scopes: HashMap<String, watch::Sender<u64>>,
    /// Bumped to wake every waiter: after a resubscription (announcements may have been
    /// missed) and at shutdown (see `released`).
    everyone: watch::Sender<u64>,
    /// Set at shutdown: waiters answer at once instead of holding the drain.
    released: watch::Sender<bool>,
    waiters: AtomicUsize,
    max_waiters: AtomicUsize,
    /// Rendered answers by request, each with the ETag it was rendered under (the render may
    /// still be running: see [`Live::render_once`]).
    rendered: Mutex<HashMap<String, (String, Rendering)>>,
}

impl Live {
    /// A hub for the scopes of `race` with at most `max_waiters` long polls waiting at once.
    pub fn new(race: &Race, max_waiters: usize) -> Self {
        let names = std::iter::once(Scope::All.live_name())
            .chain(race.genders.iter().map(|g| Scope::Gender(g).live_name()))
            .chain(
                race.categories
                    .iter()
                    .map(|c| Scope::Category(c).live_name()),
            );
        Self {
            inner: Arc::new(Inner {
                scopes: names.map(|name| (name, watch::Sender::new(0))).collect(),
                everyone: watch::Sender::new(0),
                released: watch::Sender::new(false),
                waiters: AtomicUsize::new(0),
                max_waiters: AtomicUsize::new(max_waiters),
                rendered: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Starts the process's one subscriber task (on the current tokio runtime): it follows
    /// Redis's change channel, resubscribing after a lost connection, until the hub is dropped.
    pub fn start(&self, store: Store) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!("no tokio runtime: long polls wake only when their wait ends");
            return;
        };
        let hub = Arc::downgrade(&self.inner);
        runtime.spawn(async move {
            loop {
                match store.subscribe_changes().await {
                    Ok(mut subscription) => {
                        // Changes made while unsubscribed were not announced: wake everyone
                        // to compare versions again.
                        match hub.upgrade() {
                            Some(inner) => inner.everyone.send_modify(|n| *n += 1),
                            None => return,
                        }
                        while let Some(change) = subscription.next().await {
                            let Some(inner) = hub.upgrade() else { return };
                            for scope in &change.scopes {
                                // Nobody waits on most scopes most of the time, and a send
                                // wakes through eight locks whether or not anyone waits. A
                                // skipped send loses nothing: a waiter subscribes before it
                                // reads the version from Redis, which already holds this one.
                                if let Some(sender) = inner.scopes.get(scope)
                                    && sender.receiver_count() > 0
                                {
                                    sender.send_replace(change.version);
                                }
                            }
                        }
                        tracing::warn!("lost the redis change subscription; resubscribing");
                    }
                    Err(err) => tracing::warn!(%err, "cannot subscribe to redis changes"),
                }
                if hub.strong_count() == 0 {
                    return;
                }
                tokio::time::sleep(RESUBSCRIBE_DELAY).await;
            }
        });
    }

    /// Releases every waiting long poll (they answer 304 at once) and lets no new one wait:
    /// called at shutdown so draining does not wait for the long polls' full wait.
    pub fn release_all(&self) {
        self.inner.released.send_replace(true);
    }

    /// Changes the limit of waiting long polls.
    pub fn set_max_waiters(&self, max_waiters: usize) {
        self.inner.max_waiters.store(max_waiters, Ordering::Relaxed);
    }

    /// The answer for `key` under `etag`: rendered once per change, however many ask for it.
    /// A page read by many spectators, and by every long poll woken by the same change (5,000
    /// at once), is read from Redis and rendered by the first request; the others share that
    /// render, in flight or done, instead of each reading the same rows. A failed render is
    /// forgotten, so the next request tries again.
    pub async fn render_once<F, Fut>(
        &self,
        key: String,
        etag: &str,
        render: F,
    ) -> Result<Bytes, StoreError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes, StoreError>> + Send + 'static,
    {
        let rendering = {
            let Ok(mut cache) = self.inner.rendered.lock() else {
                return render().await;
            };
            match cache.get(&key) {
                Some((tag, rendering)) if tag == etag => rendering.clone(),
                _ => {
                    let rendering = render().boxed().shared();
                    if cache.len() >= RENDERED_ENTRIES
                        && !cache.contains_key(&key)
                        && let Some(old) = cache.keys().next().cloned()
                    {
                        cache.remove(&old);
                    }
                    cache.insert(key.clone(), (etag.to_owned(), rendering.clone()));
                    rendering
                }
            }
        };
        let result = rendering.clone().await;
        if result.is_err()
            && let Ok(mut cache) = self.inner.rendered.lock()
            && cache
                .get(&key)
                .is_some_and(|(tag, kept)| tag == etag && kept.ptr_eq(&rendering))
        {
            cache.remove(&key);
        }
        result
    }

    /// Long polls waiting now.
    pub fn waiters(&self) -> usize {
        self.inner.waiters.load(Ordering::Relaxed)
    }
}

/// Counts one waiter while alive.
struct WaiterSlot<'a>(&'a AtomicUsize);

impl Drop for WaiterSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Parses `wait`: a duration such as `25s`, `1500ms` or `0.5s`, or a number of seconds;
/// at most [`MAX_WAIT`].
pub fn parse_wait(text: &str) -> Result<Duration, ApiError> {
    let text = text.trim();
    let duration = match text.parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && seconds >= 0.0 => {
            Duration::try_from_secs_f64(seconds).ok()
        }
        Ok(_) => None,
        Err(_) => humantime::parse_duration(text).ok(),
    }
    .ok_or_else(|| {
        ApiError::BadRequest(format!(
            "invalid query string: `wait` must be a duration such as `25s` or `500ms`, got `{text}`"
        ))
    })?;
    if duration > MAX_WAIT {
        return Err(ApiError::Unprocessable(format!(
            "`wait` must be at most {}s, got `{text}`",
            MAX_WAIT.as_secs()
        )));
    }
    Ok(duration)
}

/// The query of a live read that takes nothing but `wait`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitQuery {
    wait: Option<String>,
}

impl WaitQuery {
    /// The parsed `wait`.
    pub fn wait(&self) -> Result<Option<Duration>, ApiError> {
        self.wait.as_deref().map(parse_wait).transpose()
    }
}

/// The ETag of version `version` of a resource in representation `variant` (`json`, `csv`).
pub fn etag(version: u64, variant: &str) -> String {
    format!("\"{version}-{variant}\"")
}

/// Whether the request is conditional (has `If-None-Match`): only then can it be answered 304,
/// or wait. A read that returns its scope's version with its content answers any other
/// request without reading the version first.
pub fn conditional(headers: &HeaderMap) -> bool {
    headers.contains_key(header::IF_NONE_MATCH)
}

/// Whether `If-None-Match` lists `etag` (weak comparison, `*` matches anything).
fn none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim())
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

/// The caching headers of a live answer (`Vary: Accept`: results and listings answer CSV
/// to `Accept: text/csv`).
pub fn headers(etag: &str) -> [(header::HeaderName, HeaderValue); 3] {
    [
        (header::VARY, HeaderValue::from_static("accept")),
        (
            header::ETAG,
            HeaderValue::from_str(etag).unwrap_or(HeaderValue::from_static("\"0\"")),
        ),
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static(CACHE_CONTROL),
        ),
    ]
}

fn not_modified(etag: &str) -> Response {
    (StatusCode::NOT_MODIFIED, headers(etag)).into_response()
}

fn too_many_waiters(limit: usize) -> Response {
    let body = serde_json::json!({
        "error": format!("{limit} long polls are already waiting on this server; retry after {RETRY_AFTER_SECS} s"),
        "code": "too_many_waiters",
    });
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    response
}

/// What a read answers.
pub enum Freshness {
    /// The client's copy is current: answer this (304, or 503 past the waiter limit).
    Answer(Response),
    /// Read the content and answer it with this ETag (the version was read before the content,
    /// so a change in between gives the next request new content, never a stale 304; a read
    /// that returns its own version may send that instead).
    Read {
        /// The ETag to send with the content.
        etag: String,
        /// The scope version in it.
        version: u64,
    },
}

/// Decides a read of `scope` in representation `variant`: 304 when `If-None-Match` holds the
/// current ETag (after waiting up to `wait` for a change), else read.
pub async fn check(
    live: &Live,
    store: &Store,
    scope: &str,
    variant: &str,
    request: &HeaderMap,
    wait: Option<Duration>,
) -> Result<Freshness, ApiError> {
    let inner = &live.inner;
    // A long poll watches its channels before reading the version, so a change right after
    // the read still wakes it; a plain read decides on the version alone.
    let long_poll = wait.filter(|wait| !wait.is_zero()).map(|wait| {
        let channel = inner
            .scopes
            .get(scope)
            .or_else(|| inner.scopes.get(&Scope::All.live_name()));
        let changed = channel.map(watch::Sender::subscribe);
        (
            wait,
            changed,
            inner.everyone.subscribe(),
            inner.released.subscribe(),
        )
    });
    let version = store.version(scope).await?;
    let etag = self::etag(version, variant);
    if !none_match(request, &etag) {
        return Ok(Freshness::Read { etag, version });
    }
    let Some((wait, mut changed, mut everyone, mut released)) = long_poll else {
        return Ok(Freshness::Answer(not_modified(&etag)));
    };
    if *released.borrow_and_update() {
        return Ok(Freshness::Answer(not_modified(&etag)));
    }
    let limit = inner.max_waiters.load(Ordering::Relaxed);
    if inner.waiters.fetch_add(1, Ordering::Relaxed) >= limit {
        inner.waiters.fetch_sub(1, Ordering::Relaxed);
        return Ok(Freshness::Answer(too_many_waiters(limit)));
    }
    let _slot = WaiterSlot(&inner.waiters);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let scope_changed = async {
            match changed.as_mut() {
                Some(rx) => match rx.changed().await {
                    Ok(()) => Some(*rx.borrow_and_update()),
                    Err(_) => None,
                },
                None => std::future::pending().await,
            }
        };
        // The announced version is the one Redis holds (the same `INCR`), so thousands of
        // waiters woken at once need no read; after a resubscription they read it.
        let now = tokio::select! {
            announced = scope_changed => match announced {
                Some(announced) if announced > version => announced,
                Some(_) => continue, // announced before our read: nothing new
                None => break,
            },
            result = everyone.changed() => match result {
                Ok(()) => store.version(scope).await?,
                Err(_) => break,
            },
            _ = released.changed() => break,
            () = tokio::time::sleep_until(deadline) => break,
        };
        if now != version {
            return Ok(Freshness::Read {
                etag: self::etag(now, variant),
                version: now,
            });
        }
    }
    Ok(Freshness::Answer(not_modified(&etag)))
}
