//! Bearer-token authentication of writes.

use reqwest::Method;
use serde_json::json;
use timing_service::race::Race;

use crate::common::{assert_error, spawn_app, spawn_app_with};

fn ripley() -> serde_json::Value {
    json!({"bib": "123", "first_name": "Ellen", "last_name": "Ripley", "gender": "female",
           "country": "USA", "category": "women40"})
}

/// With a token configured, writes (legacy and v1) without it or with a wrong one answer 401
/// and store nothing; with it they succeed; reads stay public.
#[tokio::test]
async fn auth_on_requires_the_token_for_writes() {
    let app = spawn_app_with(Race::default(), Some("s3cret-token")).await;
    let writes = [
        (Method::POST, "/competitor", Some(ripley())),
        (
            Method::POST,
            "/settimes",
            Some(json!({"bib": 123, "settimes": {}})),
        ),
        (Method::POST, "/api/v1/competitors", Some(ripley())),
        (Method::PUT, "/api/v1/competitors/123", Some(ripley())),
        (
            Method::PATCH,
            "/api/v1/competitors/123",
            Some(json!({"country": "UK"})),
        ),
        (Method::DELETE, "/api/v1/competitors/123", None),
        (
            Method::PATCH,
            "/api/v1/competitors/123/times",
            Some(json!({"start": "10:00:00.000"})),
        ),
        (
            Method::PUT,
            "/api/v1/competitors/123/times/start",
            Some(json!({"time": "10:00:00.000"})),
        ),
        (Method::DELETE, "/api/v1/competitors/123/times/start", None),
        (
            Method::PUT,
            "/api/v1/competitors/123/status",
            Some(json!({"status": "DNF"})),
        ),
    ];
    for (method, path, body) in writes {
        for auth in [
            None,
            Some("Bearer wrong-token"),
            Some("Bearer s3cret-toke"),
            Some("s3cret-token"),
        ] {
            let mut request = app.request(method.clone(), path);
            if let Some(body) = &body {
                request = request.json(body);
            }
            if let Some(auth) = auth {
                request = request.header("authorization", auth);
            }
            let response = request.send().await.expect("request");
            assert_eq!(response.status(), 401, "{method} {path} with {auth:?}");
            assert_eq!(response.headers()["www-authenticate"], "Bearer");
            let body: serde_json::Value = response.json().await.expect("json");
            assert!(
                body["error"]
                    .as_str()
                    .unwrap_or("")
                    .contains("Authorization: Bearer"),
                "{body}"
            );
        }
    }
    assert_eq!(
        app.get("/api/v1/competitors").await.1["total"],
        0,
        "nothing stored"
    );

    // `call` sends the app's token.
    assert_eq!(app.post("/api/v1/competitors", ripley()).await.0, 201);
    assert_eq!(
        app.put("/api/v1/competitors/123/status", json!({"status": "DNF"}))
            .await
            .0,
        204
    );
    let public = |path: &'static str| app.send(app.request(Method::GET, path));
    assert_eq!(public("/api/v1/competitors/123").await.0, 200);
    assert_eq!(public("/getcompetitor/123").await.0, 200);
    assert_eq!(public("/api/v1/results").await.0, 200);
    assert_eq!(public("/api/v1/competitors/123/times").await.0, 200);
    assert_eq!(public("/health").await.0, 200);
}

/// Without a token, writes are open.
#[tokio::test]
async fn auth_off_writes_are_open() {
    let app = spawn_app().await;
    assert_eq!(
        app.send(app.request(Method::POST, "/competitor").json(&ripley()))
            .await
            .0,
        201
    );
    let deleted = app
        .send(app.request(Method::DELETE, "/api/v1/competitors/123"))
        .await;
    assert_eq!(deleted.0, 204);
    // A header sent anyway is ignored.
    let response = app
        .send(
            app.request(Method::POST, "/api/v1/competitors")
                .bearer_auth("anything")
                .json(&ripley()),
        )
        .await;
    assert_eq!(response.0, 201);
    assert_error(
        &app.post("/api/v1/competitors", ripley()).await,
        409,
        "already exists",
    );
}
