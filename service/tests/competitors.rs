//! `/api/v1/competitors`: create, read, replace, patch, delete, list, and bad input.

use reqwest::Method;
use serde_json::json;

use crate::common::{assert_error, spawn_app};

fn ripley() -> serde_json::Value {
    json!({"bib": "123", "first_name": "Ellen", "last_name": "Ripley", "gender": "female",
           "country": "USA", "category": "women40"})
}

/// The whole life of a competitor through v1.
#[tokio::test]
async fn v1_competitor_crud() {
    let app = spawn_app().await;
    let response = app
        .request(Method::POST, "/api/v1/competitors")
        .json(&ripley())
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["location"], "/api/v1/competitors/123");
    let mut expected = ripley();
    expected["status"] = json!(null);
    assert_eq!(
        response.json::<serde_json::Value>().await.ok(),
        Some(expected.clone())
    );

    assert_error(
        &app.post("/api/v1/competitors", ripley()).await,
        409,
        "already exists",
    );
    assert_eq!(
        app.get("/api/v1/competitors/123").await,
        (200, expected.clone())
    );

    let mut replaced = ripley();
    replaced["category"] = json!("women30");
    replaced.as_object_mut().map(|o| o.remove("bib"));
    let (status, body) = app.put("/api/v1/competitors/123", replaced).await;
    assert_eq!(
        (status, &body["category"], &body["bib"]),
        (200, &json!("women30"), &json!("123"))
    );

    let (status, body) = app
        .patch("/api/v1/competitors/123", json!({"country": "UK"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["country"], &body["first_name"], &body["category"]),
        (&json!("UK"), &json!("Ellen"), &json!("women30"))
    );

    assert_eq!(
        app.delete("/api/v1/competitors/123").await,
        (204, json!(null))
    );
    assert_error(
        &app.get("/api/v1/competitors/123").await,
        404,
        "no competitor with bib `123`",
    );
    assert_error(
        &app.delete("/api/v1/competitors/123").await,
        404,
        "no competitor",
    );
    assert_error(
        &app.put("/api/v1/competitors/123", ripley()).await,
        404,
        "no competitor",
    );
    assert_error(
        &app.patch("/api/v1/competitors/123", json!({"country": "UK"}))
            .await,
        404,
        "no competitor",
    );
    assert_eq!(app.get("/api/v1/competitors").await.1["total"], 0);
}

/// Listing filters by category, gender and country (alone and combined) and paginates in
/// bib order (numeric bibs by value).
#[tokio::test]
async fn v1_list_filters_and_pagination() {
    let app = spawn_app().await;
    for (bib, gender, category, country) in [
        ("101", "male", "men30", "Finland"),
        ("9", "male", "men30", "Sweden"),
        ("20", "female", "women40", "Finland"),
        ("21", "female", "women30", "Finland"),
        ("x-1", "na", "men40", "Norway"),
    ] {
        let body = json!({"bib": bib, "first_name": "A", "last_name": "B", "gender": gender,
                          "country": country, "category": category});
        assert_eq!(app.post("/api/v1/competitors", body).await.0, 201);
    }
    let bibs = |v: &serde_json::Value| -> Vec<String> {
        v["competitors"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|c| c["bib"].as_str().unwrap_or("").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let (status, all) = app.get("/api/v1/competitors").await;
    assert_eq!((status, &all["total"]), (200, &json!(5)));
    assert_eq!(bibs(&all), ["9", "20", "21", "101", "x-1"]);

    let page = app.get("/api/v1/competitors?offset=1&limit=2").await.1;
    assert_eq!(
        (bibs(&page), &page["total"]),
        (vec!["20".to_owned(), "21".to_owned()], &json!(5))
    );
    assert_eq!(
        bibs(&app.get("/api/v1/competitors?category=men30").await.1),
        ["9", "101"]
    );
    assert_eq!(
        bibs(&app.get("/api/v1/competitors?gender=female").await.1),
        ["20", "21"]
    );
    assert_eq!(
        bibs(&app.get("/api/v1/competitors?country=Finland").await.1),
        ["20", "21", "101"]
    );
    let both = app
        .get("/api/v1/competitors?country=Finland&gender=female&limit=1&offset=1")
        .await
        .1;
    assert_eq!(
        (bibs(&both), &both["total"]),
        (vec!["21".to_owned()], &json!(2))
    );

    // Moving a competitor to another category moves them in the listings.
    app.patch(
        "/api/v1/competitors/9",
        json!({"category": "men40", "country": "Finland"}),
    )
    .await;
    assert_eq!(
        bibs(&app.get("/api/v1/competitors?category=men30").await.1),
        ["101"]
    );
    assert_eq!(
        bibs(&app.get("/api/v1/competitors?country=Sweden").await.1),
        Vec::<String>::new()
    );
    assert_eq!(
        bibs(&app.get("/api/v1/competitors?country=Finland").await.1),
        ["9", "20", "21", "101"]
    );

    // With a time or a status (out of the untimed entries, in the rankings) a competitor is
    // listed under their gender and category as before, and moves with them.
    app.times(
        "101",
        json!({"start": "09:00:00.000", "finish": "10:00:00.000"}),
    )
    .await;
    app.times("21", json!({"split1": "09:10:00.000"})).await;
    let (status, _) = app
        .put("/api/v1/competitors/20/status", json!({"status": "DNS"}))
        .await;
    assert_eq!(status, 204);
    assert_eq!(
        bibs(&app.get("/api/v1/competitors?gender=female").await.1),
        ["20", "21"]
    );
    assert_eq!(
        bibs(&app.get("/api/v1/competitors?gender=male").await.1),
        ["9", "101"]
    );
    assert_eq!(
        bibs(
            &app.get("/api/v1/competitors?category=men30&country=Finland")
                .await
                .1
        ),
        ["101"]
    );
    app.patch("/api/v1/competitors/101", json!({"category": "men40"}))
        .await;
    let men40 = app.get("/api/v1/competitors?category=men40").await.1;
    assert_eq!(
        (bibs(&men40), &men40["total"]),
        (
            vec!["9".to_owned(), "101".to_owned(), "x-1".to_owned()],
            &json!(3)
        )
    );
    assert_eq!(
        bibs(&app.get("/api/v1/competitors?category=men30").await.1),
        Vec::<String>::new()
    );

    assert_error(
        &app.get("/api/v1/competitors?category=men99").await,
        422,
        "unknown category `men99`",
    );
    assert_error(
        &app.get("/api/v1/competitors?limit=0").await,
        422,
        "`limit`",
    );
    assert_error(
        &app.get("/api/v1/competitors?limit=501").await,
        422,
        "`limit`",
    );
    assert_error(
        &app.get("/api/v1/competitors?limit=abc").await,
        400,
        "invalid query",
    );
    assert_error(
        &app.get("/api/v1/competitors?sort=bib").await,
        400,
        "unknown field `sort`",
    );
}

/// Each bad input answers a 4xx naming the problem, and nothing is stored.
#[tokio::test]
async fn v1_competitor_bad_input_stores_nothing() {
    let app = spawn_app().await;
    let with = |key: &str, value: serde_json::Value| {
        let mut body = ripley();
        body[key] = value;
        body
    };
    let cases = [
        (
            with("first_name", json!(5)),
            422,
            "field `first_name` must be a string",
        ),
        (
            with("nickname", json!("x")),
            422,
            "unknown field `nickname`",
        ),
        (with("bib", json!("no/slash")), 422, "invalid bib"),
        (with("bib", json!(null)), 422, "invalid bib"),
        (with("category", json!("Men30")), 422, "unknown category"),
        (json!({"bib": "5"}), 422, "missing field `first_name`"),
    ];
    for (body, status, needle) in cases {
        assert_error(&app.post("/api/v1/competitors", body).await, status, needle);
    }
    let raw = |body: &'static str, content_type: &'static str| {
        app.request(Method::POST, "/api/v1/competitors")
            .header("content-type", content_type)
            .body(body)
    };
    assert_error(
        &app.send(raw("{\"bib\": \"1\",", "application/json")).await,
        400,
        "malformed JSON",
    );
    // JSON that is not an object: serde's own words for what was given.
    for (body, given) in [
        ("[1]", "sequence"),
        ("\"x\"", "string \"x\""),
        ("7", "integer `7`"),
    ] {
        assert_error(
            &app.send(raw(body, "application/json")).await,
            422,
            &format!("invalid body: invalid type: {given}"),
        );
    }
    assert_error(
        &app.send(raw("bib=1", "application/x-www-form-urlencoded"))
            .await,
        415,
        "expected a JSON body",
    );
    let huge = format!(
        "{{\"bib\": \"1\", \"first_name\": \"{}\"}}",
        "x".repeat(70 * 1024)
    );
    let too_large = app
        .send(
            app.request(Method::POST, "/api/v1/competitors")
                .header("content-type", "application/json")
                .body(huge),
        )
        .await;
    assert_error(&too_large, 413, "larger than the limit of 65536 bytes");
    assert_error(
        &app.get("/api/v1/competitors/no!pe").await,
        400,
        "invalid bib",
    );
    assert_eq!(app.get("/api/v1/competitors").await.1["total"], 0);

    app.post("/api/v1/competitors", ripley()).await;
    assert_error(
        &app.put("/api/v1/competitors/123", with("bib", json!("124")))
            .await,
        422,
        "differs from the path",
    );
    assert_error(
        &app.patch("/api/v1/competitors/123", json!({"bib": "124"}))
            .await,
        422,
        "cannot be changed",
    );
    assert_error(
        &app.patch("/api/v1/competitors/123", json!({"gender": "robot"}))
            .await,
        422,
        "unknown gender",
    );
    let mut expected = ripley();
    expected["status"] = json!(null);
    assert_eq!(app.get("/api/v1/competitors/123").await, (200, expected));
}
