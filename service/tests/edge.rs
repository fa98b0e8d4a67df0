//! The HTTP edge: the `Authorization` scheme, `Content-Type` as a media type, duplicate JSON
//! keys, and how early refusals, stalled uploads and slow or idle connections are answered.

use reqwest::Method;
use serde_json::json;
use timing_service::race::Race;

use crate::common::{TestApp, assert_error, spawn_app, spawn_app_with};

fn ripley() -> serde_json::Value {
    json!({"bib": "123", "first_name": "Ellen", "last_name": "Ripley", "gender": "female",
           "country": "USA", "category": "women40"})
}

/// The auth scheme is case-insensitive (RFC 9110 §11.1) and may be followed by several
/// spaces; the token itself is compared exactly, and other schemes are refused.
#[tokio::test]
async fn bearer_scheme_is_case_insensitive() {
    let app = spawn_app_with(Race::default(), Some("s3cret-token")).await;
    let write = |authorization: &str| {
        app.send(
            app.request(Method::PUT, "/api/v1/competitors/123/status")
                .header("authorization", authorization)
                .json(&json!({"status": null})),
        )
    };
    for accepted in [
        "Bearer s3cret-token",
        "bearer s3cret-token",
        "BEARER s3cret-token",
        "bEaReR   s3cret-token",
    ] {
        // 404: past the auth check, the competitor does not exist.
        assert_eq!(write(accepted).await.0, 404, "{accepted}");
    }
    for refused in [
        "Bearer S3CRET-TOKEN",
        "Bearers3cret-token",
        "Basic s3cret-token",
        "Token s3cret-token",
        "bearer",
        "s3cret-token",
    ] {
        assert_error(&write(refused).await, 401, "Authorization: Bearer");
    }
}

/// `POST` a raw body with a `Content-Type`.
async fn post_typed(
    app: &TestApp,
    path: &str,
    content_type: &str,
    body: String,
) -> (u16, serde_json::Value) {
    app.send(
        app.request(Method::POST, path)
            .header("content-type", content_type)
            .body(body),
    )
    .await
}

/// `Content-Type` is parsed as a media type: JSON is `application/json` or
/// `application/<x>+json`, with any parameters but a non-UTF-8 charset; a type that merely
/// mentions json is refused with 415 and nothing is stored.
#[tokio::test]
async fn content_type_is_parsed_as_a_media_type() {
    let app = spawn_app().await;
    for (bib, content_type) in [
        ("1", "application/json; charset=utf-8"),
        ("2", "Application/JSON;charset=\"UTF-8\""),
        ("3", "application/merge-patch+json"),
        ("4", "application/problem+json"),
    ] {
        let mut body = ripley();
        body["bib"] = json!(bib);
        let answer = post_typed(&app, "/api/v1/competitors", content_type, body.to_string()).await;
        assert_eq!(answer.0, 201, "{content_type}: {}", answer.1);
    }
    for content_type in [
        "text/plain; note=json",
        "text/json",
        "application/jsonp",
        "application/x-ndjson",
        "application/json; charset=iso-8859-1",
        "json",
    ] {
        let mut body = ripley();
        body["bib"] = json!("99");
        for path in ["/api/v1/competitors", "/competitor"] {
            let answer = post_typed(&app, path, content_type, body.to_string()).await;
            assert_error(&answer, 415, "expected a JSON body");
        }
    }
    assert_eq!(app.get("/api/v1/competitors").await.1["total"], 4);
}

/// A repeated key anywhere in a body is refused with the same 422 on every route that reads
/// one (some took the last value), and nothing changes.
#[tokio::test]
async fn duplicate_keys_are_refused_on_every_route() {
    let app = spawn_app().await;
    app.competitor("123", "female", "women40").await;
    let before = (
        app.get("/api/v1/competitors/123").await,
        app.get("/api/v1/competitors/123/times").await,
    );
    let cases = [
        (
            Method::POST,
            "/competitor",
            r#"{"bib": "123", "first_name": "A", "first_name": "B", "last_name": "R", "gender": "female", "country": "USA", "category": "women40"}"#,
        ),
        (
            Method::POST,
            "/settimes",
            r#"{"bib": 123, "settimes": {"start": "10:00:00:000", "start": "11:00:00:000", "split1": -1, "split2": -1, "finish": -1}}"#,
        ),
        (
            Method::POST,
            "/settimes",
            r#"{"bib": 123, "bib": 124, "settimes": {"start": "10:00:00:000", "split1": -1, "split2": -1, "finish": -1}}"#,
        ),
        (
            Method::POST,
            "/api/v1/competitors",
            r#"{"bib": "7", "bib": "8", "first_name": "A", "last_name": "R", "gender": "female", "country": "USA", "category": "women40"}"#,
        ),
        (
            Method::PUT,
            "/api/v1/competitors/123",
            r#"{"first_name": "A", "last_name": "R", "gender": "female", "country": "USA", "country": "UK", "category": "women40"}"#,
        ),
        (
            Method::PATCH,
            "/api/v1/competitors/123",
            r#"{"country": "UK", "country": "SE"}"#,
        ),
        (
            Method::PATCH,
            "/api/v1/competitors/123/times",
            r#"{"start": "10:00:00.000", "start": "11:00:00.000"}"#,
        ),
        (
            Method::PUT,
            "/api/v1/competitors/123/times/finish",
            r#"{"time": "10:00:00.000", "time": "11:00:00.000"}"#,
        ),
        (
            Method::PUT,
            "/api/v1/competitors/123/status",
            r#"{"status": "DNF", "status": null}"#,
        ),
    ];
    for (method, path, body) in cases {
        let answer = app
            .send(
                app.request(method.clone(), path)
                    .header("content-type", "application/json")
                    .body(body),
            )
            .await;
        assert_error(&answer, 422, "duplicate key");
        assert_eq!(answer.1["code"], "invalid", "{method} {path}");
    }
    let after = (
        app.get("/api/v1/competitors/123").await,
        app.get("/api/v1/competitors/123/times").await,
    );
    assert_eq!(before, after);
    assert_eq!(app.get("/api/v1/competitors").await.1["total"], 1);
}
