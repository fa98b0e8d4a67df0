//! Health and readiness, Redis going away and coming back, fallbacks, and the documents the
//! service serves about itself.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use timing_service::{AppState, race::Race};

use crate::common::{TestApp, assert_error, spawn_app, spawn_app_with, unconnected_store};

async fn wait_ready(app: &TestApp) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if app.get("/ready").await.0 == 200 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// `/health` and `/ready` answer 200 while Redis is up.
#[tokio::test]
async fn health_and_ready() {
    let app = spawn_app().await;
    assert_eq!(app.get("/health").await, (200, json!({"status": "ok"})));
    assert_eq!(app.get("/ready").await, (200, json!({"status": "ready"})));
}

/// Redis stopped mid-test: reads and writes answer 503 JSON (no hang, no panic), `/ready`
/// 503, `/health` 200. Restarted on the same port: the same service recovers by itself.
#[tokio::test]
async fn redis_down_then_back() {
    let mut app = spawn_app().await;
    app.competitor("1", "male", "men30").await;
    app.redis.stop();

    for _ in 0..3 {
        assert_error(&app.get("/api/v1/competitors/1").await, 503, "unavailable");
    }
    let answer = app.post("/api/v1/competitors", json!({"bib": "2"})).await;
    assert_eq!(
        answer.0, 422,
        "validation still answers first: {}",
        answer.1
    );
    let answer = app
        .patch(
            "/api/v1/competitors/1/times",
            json!({"start": "10:00:00.000"}),
        )
        .await;
    assert_eq!(
        (answer.0, &answer.1["code"]),
        (503, &json!("unavailable")),
        "{}",
        answer.1
    );
    assert_error(&app.get("/api/v1/results").await, 503, "unavailable");
    assert_error(&app.get("/gettimes/1").await, 503, "unavailable");
    assert_error(&app.get("/ready").await, 503, "unavailable");
    assert_eq!(app.get("/health").await.0, 200);

    assert!(app.redis.restart(), "redis did not restart on its port");
    assert!(
        wait_ready(&app).await,
        "the service did not reconnect within 15 s"
    );
    // The restarted Redis is empty (no persistence in tests): write and read again.
    app.competitor("1", "male", "men30").await;
    assert_eq!(app.get("/api/v1/competitors/1").await.0, 200);
    app.times(
        "1",
        json!({"start": "10:00:00.000", "finish": "10:30:00.000"}),
    )
    .await;
    assert_eq!(app.get("/api/v1/results").await.1["results"][0]["rank"], 1);
}

/// Redis accepting connections but not answering (the server frozen with SIGSTOP, as a peer
/// that vanished without closing the socket looks): requests answer 503 once the timeout
/// passes, and the service recovers by itself when Redis answers again.
#[tokio::test]
async fn redis_not_answering_then_back() {
    let app = spawn_app().await;
    app.competitor("1", "male", "men30").await;
    app.redis.freeze(true);
    assert_error(&app.get("/api/v1/competitors/1").await, 503, "unavailable");
    assert_error(&app.get("/ready").await, 503, "unavailable");
    app.redis.freeze(false);
    assert!(
        wait_ready(&app).await,
        "the service did not recover within 15 s"
    );
    assert_eq!(app.get("/api/v1/competitors/1").await.0, 200);
}

/// The names of the Functions libraries in Redis, sorted.
async fn libraries(app: &TestApp) -> Vec<String> {
    let mut conn = app.redis.connection().await;
    let listed: Vec<std::collections::HashMap<String, redis::Value>> = redis::cmd("FUNCTION")
        .arg("LIST")
        .query_async(&mut conn)
        .await
        .expect("FUNCTION LIST");
    let mut names: Vec<String> = listed
        .into_iter()
        .map(|mut library| {
            redis::from_redis_value(library.remove("library_name").expect("library_name"))
                .expect("a name")
        })
        .collect();
    names.sort();
    names
}

fn sorted(names: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
    names.sort();
    names
}

/// The library a store of `race` loads: `timing_<version>`.
fn library_of(race: Race) -> String {
    unconnected_store(race).library_name().to_owned()
}

/// A deploy's two versions: the old service, whose first write loaded its library; the names
/// of the old and the new library; and the new version's race (one read rule apart, so their
/// libraries differ).
async fn deploy() -> (TestApp, String, String, Race) {
    let app = spawn_app().await;
    app.competitor("1", "male", "men30").await;
    let mut newer = Race::default();
    newer.rules.start_window_ms += 60_000;
    let (old, new) = (library_of(Race::default()), library_of(newer.clone()));
    assert_ne!(old, new);
    (app, old, new, newer)
}

/// A deploy runs the old and the new service side by side on one Redis (ECS starts the new
/// task before it stops the old one). Each calls its own Functions library, named by its
/// version, never the other's: here the versions differ in a read rule, so their libraries
/// differ too. The new one, starting, deletes the other versions (the old one's, and one from
/// before libraries had versions) but no other program's library; the old service's next
/// write loads its own library again and is applied; the new service's writes go on.
#[tokio::test]
async fn two_versions_side_by_side_during_a_deploy() {
    let (app, old, new, newer) = deploy().await;
    let mut conn = app.redis.connection().await;
    for library in [
        "#!lua name=timing\nredis.register_function('timing_put', function() return 'old' end)",
        "#!lua name=timing_sheets\nredis.register_function('sheets', function() return 1 end)",
    ] {
        let _: String = redis::cmd("FUNCTION")
            .arg("LOAD")
            .arg(library)
            .query_async(&mut conn)
            .await
            .expect("FUNCTION LOAD");
    }
    assert_eq!(
        libraries(&app).await,
        sorted(&[&old, "timing", "timing_sheets"])
    );

    // The new service starts (as its main does: the library loaded, the others deleted).
    let state = AppState::new(&app.redis.url(), newer, None).expect("state");
    state.store.load_functions().await.expect("load");
    assert_eq!(libraries(&app).await, sorted(&[&new, "timing_sheets"]));
    let peer = app.peer_with(move |_, _| state).await;
    let client = reqwest::Client::new();
    let created = client
        .post(format!("{}/api/v1/competitors", peer.base))
        .json(
            &json!({"bib": "2", "first_name": "First2", "last_name": "Last2",
            "gender": "male", "country": "Finland", "category": "men30"}),
        )
        .send()
        .await
        .expect("new service");
    assert_eq!(created.status(), 201);

    // The old service, still serving: its write loads its library again.
    app.competitor("3", "male", "men30").await;
    app.times(
        "3",
        json!({"start": "10:00:00.000", "finish": "10:30:00.000"}),
    )
    .await;
    assert_eq!(
        libraries(&app).await,
        sorted(&[&old, &new, "timing_sheets"])
    );
    // Both wrote to the same race.
    let (status, listing) = app.get("/api/v1/competitors").await;
    assert_eq!((status, &listing["total"]), (200, &json!(3)), "{listing}");
}

/// After a deploy the old task, which loaded its library again, stops; the new service's
/// periodic tidying (every 10 minutes in `main`, 50 ms here) deletes that library, and loads
/// nothing of its own by it.
#[tokio::test]
async fn other_versions_left_after_a_deploy_are_deleted_in_time() {
    let (app, old, new, newer) = deploy().await;
    let state = AppState::new(&app.redis.url(), newer, None).expect("state");
    state.store.load_functions().await.expect("load");
    // The old service, still serving, loads its library again.
    app.competitor("2", "male", "men30").await;
    assert_eq!(libraries(&app).await, sorted(&[&old, &new]));
    let tidying = state.store.spawn_library_tidying(Duration::from_millis(50));
    let deadline = Instant::now() + Duration::from_secs(10);
    while libraries(&app).await != [new.clone()] {
        assert!(
            Instant::now() < deadline,
            "the old library is still there after 10 s: {:?}",
            libraries(&app).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tidying.abort();
}

/// Redis restarted with its data (the provisioner's keeps an append-only file) answers
/// `LOADING` to everything until it has read all of it: meanwhile reads, writes and `/ready`
/// answer 503 "unavailable" (a client tries again), not 500, and the same service serves again
/// once Redis has loaded.
#[tokio::test]
async fn redis_loading_its_data_answers_unavailable() {
    let mut app = spawn_app().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let dir_name = dir.path().to_str().expect("a UTF-8 path");
    // A Redis that saves into a directory of the test's (`dir` cannot be changed at run time).
    app.redis.restart_with(&["--dir", dir_name]);
    assert!(wait_ready(&app).await, "redis did not come up within 15 s");
    app.competitor("1", "male", "men30").await;
    let mut conn = app.redis.connection().await;
    // 50,000 keys, read back at 100 µs each (Redis's own test setting `key-load-delay`): some
    // 5 s of loading, with clients served between every KiB read.
    let _: () = redis::cmd("EVAL")
        .arg("for i = 1, 50000 do redis.call('SET', 'pad:' .. i, i) end")
        .arg(0)
        .query_async(&mut conn)
        .await
        .expect("pad keys");
    let _: () = redis::cmd("SAVE")
        .query_async(&mut conn)
        .await
        .expect("SAVE");
    drop(conn);
    app.redis.restart_with(&[
        "--dir",
        dir_name,
        "--key-load-delay",
        "100",
        "--loading-process-events-interval-bytes",
        "1024",
    ]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = redis::Client::open(app.redis.url())
            .expect("client")
            .get_multiplexed_async_connection()
            .await
            .map_err(|err| err.to_string());
        let ping: Result<String, String> = match answer {
            Ok(mut conn) => redis::cmd("PING")
                .query_async(&mut conn)
                .await
                .map_err(|err| err.to_string()),
            Err(err) => Err(err),
        };
        match ping {
            Err(err) if err.to_lowercase().contains("loading") => break,
            Ok(pong) => panic!("redis answered {pong} before it was seen loading"),
            Err(_) => {}
        }
        assert!(
            Instant::now() < deadline,
            "redis was not seen loading within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_error(&app.get("/api/v1/competitors/1").await, 503, "unavailable");
    let answer = app
        .post(
            "/api/v1/competitors",
            json!({"bib": "2", "first_name": "A",
        "last_name": "B", "gender": "male", "country": "Finland", "category": "men30"}),
        )
        .await;
    assert_error(&answer, 503, "unavailable");
    assert_error(&app.get("/ready").await, 503, "unavailable");
    assert!(
        wait_ready(&app).await,
        "the service was not ready within 15 s of redis loading"
    );
    assert_eq!(app.get("/api/v1/competitors/1").await.0, 200);
}

/// Unknown routes and methods answer JSON errors.
#[tokio::test]
async fn unknown_route_and_method() {
    let app = spawn_app().await;
    assert_error(&app.get("/nope").await, 404, "no route for GET /nope");
    assert_error(
        &app.send(app.request(Method::DELETE, "/api/v1/results"))
            .await,
        405,
        "DELETE is not allowed",
    );
}

/// `/api/v1/openapi.json` is valid OpenAPI JSON documenting every v1 route.
#[tokio::test]
async fn openapi_document_lists_every_route() {
    let app = spawn_app().await;
    let (status, doc) = app.get("/api/v1/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    for (path, methods) in [
        ("/api/v1/competitors", &["get", "post"][..]),
        ("/api/v1/competitors/import", &["post"]),
        ("/", &["get"]),
        (
            "/api/v1/competitors/{bib}",
            &["get", "put", "patch", "delete"],
        ),
        ("/api/v1/competitors/{bib}/times", &["get", "patch"]),
        (
            "/api/v1/competitors/{bib}/times/{checkpoint}",
            &["put", "delete"],
        ),
        ("/api/v1/competitors/{bib}/status", &["put"]),
        ("/api/v1/results", &["get"]),
        ("/api/v1/waves", &["get"]),
        ("/api/v1/waves/{name}", &["put", "delete"]),
        ("/api/v1/passings", &["get", "post"]),
        ("/api/v1/passings/{id}/assign", &["post"]),
        ("/api/v1/competitors/{bib}/passings", &["get"]),
        ("/api/v1/audit", &["get"]),
        ("/api/v1/race", &["get"]),
        ("/health", &["get"]),
        ("/ready", &["get"]),
    ] {
        for method in methods {
            assert!(
                doc["paths"][path][method].is_object(),
                "{method} {path} is not documented"
            );
        }
    }
}

/// A custom race definition (other checkpoints and categories) drives validation and rankings.
#[tokio::test]
async fn custom_race_definition() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("db.json");
    let competitor = dir.path().join("competitor.json");
    std::fs::write(
        &db,
        r#"{"allowed_checkpoints": ["start", "km10", "finish"]}"#,
    )
    .expect("write");
    std::fs::write(
        &competitor,
        r#"{"competitor_info": {"allowed_keys": ["bib", "first_name", "last_name", "gender", "category", "club"],
            "allowed_genders": ["m", "f"], "allowed_categories": ["open", "junior"]}}"#,
    )
    .expect("write");
    let race = Race::load(Some(&db), Some(&competitor)).expect("valid definition");
    let app = spawn_app_with(race, None).await;

    let (_, definition) = app.get("/api/v1/race").await;
    assert_eq!(
        definition["checkpoints"],
        json!(["start", "km10", "finish"])
    );
    let runner = json!({"bib": "1", "first_name": "A", "last_name": "B", "gender": "f",
                        "category": "junior", "club": "HKV"});
    assert_eq!(app.post("/competitor", runner).await.0, 201);
    let times = json!({"bib": 1, "settimes": {"start": "10:00:00:000", "km10": "10:40:00:000", "finish": -1}});
    assert_eq!(app.post("/settimes", times).await.0, 201);
    let page = app
        .get("/api/v1/results?checkpoint=km10&category=junior")
        .await
        .1;
    assert_eq!(
        (
            &page["results"][0]["rank"],
            &page["results"][0]["elapsed"],
            &page["results"][0]["country"]
        ),
        (&json!(1), &json!("00:40:00.000"), &json!(null))
    );
    assert_error(
        &app.get("/api/v1/results?checkpoint=split1").await,
        422,
        "unknown checkpoint",
    );
    let old_shape = json!({"bib": "2", "first_name": "A", "last_name": "B", "gender": "female",
                           "country": "FI", "category": "women40"});
    assert_error(
        &app.post("/competitor", old_shape).await,
        422,
        "unknown field `country`",
    );
}
