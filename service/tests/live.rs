//! Live reads: ETags that change with their scope, 304 without rows, long polls woken by a
//! write on another service process sharing the Redis, the waiter limit, bad `wait`s.

use reqwest::header;
use serde_json::{Value, json};
use timing_service::{AppState, race::Race};

use crate::common::{Redis, assert_error, spawn_app, spawn_app_on};

/// GET with `If-None-Match` (when given): status, ETag, Cache-Control and JSON body.
async fn conditional(base: &str, path: &str, etag: Option<&str>) -> (u16, String, String, Value) {
    let mut request = reqwest::Client::new()
        .get(format!("{base}{path}"))
        .timeout(std::time::Duration::from_secs(40));
    if let Some(etag) = etag {
        request = request.header(header::IF_NONE_MATCH, etag);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let head = |name: header::HeaderName| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (etag, cache) = (head(header::ETAG), head(header::CACHE_CONTROL));
    let text = response.text().await.expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).expect("JSON")
    };
    (status, etag, cache, body)
}

/// Results, a competitor's times and the listing carry an ETag and `Cache-Control: no-cache`;
/// a matching `If-None-Match` answers 304 with no body; a write in the scope changes the ETag,
/// a write in another category leaves that category's unchanged.
#[tokio::test]
async fn etags_change_with_their_scope_and_answer_304() {
    let app = spawn_app().await;
    app.competitor("1", "male", "men30").await;
    app.competitor("2", "female", "women30").await;
    let base = app.base.clone();

    for path in [
        "/api/v1/results",
        "/api/v1/results?category=men30",
        "/api/v1/competitors/1/times",
        "/api/v1/competitors",
    ] {
        let (status, etag, cache, _) = conditional(&base, path, None).await;
        assert_eq!((status, cache.as_str()), (200, "no-cache"), "{path}");
        assert!(
            etag.starts_with('"') && etag.ends_with('"'),
            "{path}: {etag}"
        );
        let (status, again, _, body) = conditional(&base, path, Some(&etag)).await;
        assert_eq!(
            (status, &again, &body),
            (304, &etag, &Value::Null),
            "{path}"
        );
        // Weak form and lists match too; another tag does not.
        let list = format!("\"x\", W/{etag}");
        assert_eq!(conditional(&base, path, Some(&list)).await.0, 304);
        assert_eq!(conditional(&base, path, Some("\"x\"")).await.0, 200);
    }

    let (_, men30, _, _) = conditional(&base, "/api/v1/results?category=men30", None).await;
    let (_, women30, _, _) = conditional(&base, "/api/v1/results?category=women30", None).await;
    let (_, all, _, _) = conditional(&base, "/api/v1/results", None).await;
    app.times(
        "1",
        json!({"start": "10:00:00.000", "finish": "10:40:00.000"}),
    )
    .await;
    let (status, fresh, _, page) =
        conditional(&base, "/api/v1/results?category=men30", Some(&men30)).await;
    assert_eq!(status, 200);
    assert_ne!(fresh, men30);
    assert_eq!(page["results"][0]["elapsed"], "00:40:00.000");
    assert_eq!(
        conditional(&base, "/api/v1/results", Some(&all)).await.0,
        200
    );
    assert_eq!(
        conditional(&base, "/api/v1/results?category=women30", Some(&women30))
            .await
            .0,
        304
    );
}

/// A long poll held on one process is woken by a finish written through another process on
/// the same Redis, and answers 200 with the new content and ETag; without a change it answers
/// 304 when its wait ends.
#[tokio::test]
async fn long_poll_wakes_on_a_write_through_another_process() {
    let app = spawn_app().await;
    let peer = app.peer().await;
    app.competitor("7", "female", "women40").await;
    let base = app.base.clone();
    let (_, etag, _, _) = conditional(&base, "/api/v1/results", None).await;

    let (status, same, _, _) = conditional(&base, "/api/v1/results?wait=200ms", Some(&etag)).await;
    assert_eq!((status, &same), (304, &etag));

    let poll = {
        let (base, etag) = (base.clone(), etag.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let response = client
                .get(format!("{base}/api/v1/results?wait=25s"))
                .header(header::IF_NONE_MATCH, etag)
                .send()
                .await
                .expect("long poll");
            let status = response.status().as_u16();
            let etag = response.headers()[header::ETAG]
                .to_str()
                .unwrap_or_default()
                .to_owned();
            (status, etag, response.json::<Value>().await.expect("JSON"))
        })
    };
    app.waiters(1).await;
    let write = reqwest::Client::new()
        .patch(format!("{}/api/v1/competitors/7/times", peer.base))
        .json(&json!({"start": "09:00:00.000", "finish": "09:50:00.000"}))
        .send()
        .await
        .expect("write");
    assert_eq!(write.status().as_u16(), 204);
    let (status, fresh, page) = poll.await.expect("poll task");
    assert_eq!(status, 200);
    assert_ne!(fresh, etag);
    assert_eq!(page["results"][0]["bib"], "7");
    assert_eq!(page["results"][0]["elapsed"], "00:50:00.000");
    app.waiters(0).await;
}

/// Past the waiter limit a long poll answers 503 with `Retry-After` at once; the held ones
/// still answer when their scope changes.
#[tokio::test]
async fn waiter_limit_answers_503_with_retry_after() {
    let redis = Redis::start();
    let state = AppState::new(&redis.url(), Race::default(), None)
        .expect("state")
        .with_max_waiters(2);
    let app = spawn_app_on(redis, state).await;
    app.competitor("1", "male", "men20").await;
    let base = app.base.clone();
    let (_, etag, _, _) = conditional(&base, "/api/v1/competitors/1/times", None).await;

    let held: Vec<_> = (0..2)
        .map(|_| {
            let (base, etag) = (base.clone(), etag.clone());
            tokio::spawn(async move {
                reqwest::Client::new()
                    .get(format!("{base}/api/v1/competitors/1/times?wait=25s"))
                    .header(header::IF_NONE_MATCH, etag)
                    .send()
                    .await
                    .expect("long poll")
                    .status()
                    .as_u16()
            })
        })
        .collect();
    app.waiters(2).await;
    let refused = reqwest::Client::new()
        .get(format!("{base}/api/v1/competitors/1/times?wait=25s"))
        .header(header::IF_NONE_MATCH, &etag)
        .send()
        .await
        .expect("third long poll");
    assert_eq!(refused.status().as_u16(), 503);
    assert_eq!(refused.headers()[header::RETRY_AFTER], "2");
    let body: Value = refused.json().await.expect("JSON");
    assert_eq!(body["code"], "too_many_waiters");
    // A plain read is not a waiter: still answered.
    assert_eq!(
        conditional(&base, "/api/v1/competitors/1/times", Some(&etag))
            .await
            .0,
        304
    );

    app.times("1", json!({"start": "08:00:00.000"})).await;
    for poll in held {
        assert_eq!(poll.await.expect("poll task"), 200);
    }
    app.waiters(0).await;
}

/// `wait` must be a duration of at most 25 s.
#[tokio::test]
async fn bad_waits_are_refused() {
    let app = spawn_app().await;
    app.competitor("1", "male", "men20").await;
    assert_error(
        &app.get("/api/v1/results?wait=soon").await,
        400,
        "`wait` must be a duration",
    );
    assert_error(
        &app.get("/api/v1/results?wait=26s").await,
        422,
        "at most 25s",
    );
    assert_error(
        &app.get("/api/v1/competitors/1/times?wait=-1").await,
        400,
        "`wait`",
    );
    assert_eq!(app.get("/api/v1/competitors?wait=1.5").await.0, 200);
}

/// Versions never repeat, even when Redis comes back empty: an ETag (or a page rendered) before
/// cannot match the new content, and long polls still wake after the subscription returns.
#[tokio::test]
async fn etags_do_not_repeat_after_redis_comes_back_empty() {
    let mut app = spawn_app().await;
    app.competitor("1", "male", "men30").await;
    let base = app.base.clone();
    let (_, before, _, page) = conditional(&base, "/api/v1/results", None).await;
    assert_eq!(page["total"], 1);
    assert!(app.redis.restart(), "redis did not come back");
    // The same number of writes as before the restart.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (status, _) = app
            .post(
                "/api/v1/competitors",
                json!({"bib": "2", "first_name": "A", "last_name": "B", "gender": "female",
                       "country": "FI", "category": "women30"}),
            )
            .await;
        if status == 201 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no write after the restart: {status}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (status, after, _, page) = conditional(&base, "/api/v1/results", Some(&before)).await;
    assert_eq!(status, 200);
    assert_ne!(after, before);
    assert_eq!(page["results"][0]["bib"], "2");
}
