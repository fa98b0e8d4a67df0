//! The proof of concept's routes, driven with the bodies of its README and REST documentation.

use serde_json::json;

use crate::common::{assert_error, spawn_app};

fn ripley() -> serde_json::Value {
    json!({"bib": "123", "first_name": "Ellen", "last_name": "Ripley", "gender": "female",
           "country": "USA", "category": "women40"})
}

/// The README's curl body creates a competitor that reads back as stored and checks OK; a
/// numeric bib is stored as text; posting an existing bib overwrites it.
#[tokio::test]
async fn legacy_competitor_create_read_check_overwrite() {
    let app = spawn_app().await;
    let created = app.post("/competitor", ripley()).await;
    assert_eq!(
        created,
        (201, json!({"message": "OK. Competitor created ok"}))
    );
    assert_eq!(app.get("/getcompetitor/123").await, (200, ripley()));
    assert_eq!(
        app.get("/check_competitor/123").await,
        (200, json!({"message": "Competitor data OK"}))
    );

    let mut numeric = ripley();
    numeric["bib"] = json!(124);
    assert_eq!(app.post("/competitor", numeric).await.0, 201);
    assert_eq!(app.get("/getcompetitor/124").await.1["bib"], "124");

    let mut renamed = ripley();
    renamed["last_name"] = json!("Ripley-8");
    assert_eq!(app.post("/competitor", renamed).await.0, 201);
    assert_eq!(
        app.get("/getcompetitor/123").await.1["last_name"],
        "Ripley-8"
    );
}

/// `POST /settimes` with `-1` leaves a checkpoint unchanged; `/gettimes` shows what is set;
/// `/checkpoints` fails until every checkpoint is set.
#[tokio::test]
async fn legacy_settimes_with_skip_gettimes_and_checkpoints() {
    let app = spawn_app().await;
    app.post("/competitor", ripley()).await;
    let set = app
        .post(
            "/settimes",
            json!({"bib": 123, "settimes": {"start": "12:15:00:000", "split1": -1, "split2": -1,
                   "finish": "13:00:00:000"}}),
        )
        .await;
    assert_eq!(set, (201, json!({"message": "Times updated for 123"})));
    assert_eq!(
        app.get("/gettimes/123").await,
        (
            200,
            json!({"start": "12:15:00:000", "finish": "13:00:00:000"})
        )
    );
    assert_error(&app.get("/checkpoints/123").await, 404, "split1");

    let set = app
        .post(
            "/settimes",
            json!({"bib": "123", "settimes": {"start": -1, "split1": "12:30:00:000",
                   "split2": "12:45:00:500", "finish": -1}}),
        )
        .await;
    assert_eq!(set.0, 201, "{}", set.1);
    let all = json!({"start": "12:15:00:000", "split1": "12:30:00:000",
                     "split2": "12:45:00:500", "finish": "13:00:00:000"});
    assert_eq!(app.get("/gettimes/123").await, (200, all.clone()));
    assert_eq!(app.get("/checkpoints/123").await, (200, all));
}

/// Unknown bibs answer 404 with the original's messages, never 555.
#[tokio::test]
async fn legacy_not_found_messages() {
    let app = spawn_app().await;
    assert_eq!(
        app.get("/getcompetitor/999").await,
        (
            404,
            json!({"error": "Competitor with BIB 999 not found", "code": "not_found"})
        )
    );
    assert_error(
        &app.get("/check_competitor/999").await,
        404,
        "Competitor with BIB 999 not found",
    );
    assert_error(&app.get("/gettimes/999").await, 404, "No data found");
    assert_error(&app.get("/checkpoints/999").await, 404, "No data found");
    assert_error(&app.get("/getcompetitor/bad!bib").await, 400, "invalid bib");
    let times = json!({"bib": 999, "settimes": {"start": "12:00:00:000", "split1": -1,
                       "split2": -1, "finish": -1}});
    assert_error(
        &app.post("/settimes", times).await,
        404,
        "Competitor with BIB 999 not found",
    );
}

/// Each bad competitor body answers a 4xx naming the problem, and nothing is stored.
#[tokio::test]
async fn legacy_competitor_bad_input_stores_nothing() {
    let app = spawn_app().await;
    let with = |key: &str, value: serde_json::Value| {
        let mut body = ripley();
        body[key] = value;
        body
    };
    let mut missing = ripley();
    missing.as_object_mut().map(|o| o.remove("country"));
    let cases = [
        (missing, 422, "missing field `country`"),
        (with("age", json!("40")), 422, "unknown field `age`"),
        (
            with("gender", json!("robot")),
            422,
            "unknown gender `robot`",
        ),
        (
            with("category", json!("men99")),
            422,
            "unknown category `men99`",
        ),
        (with("first_name", json!(7)), 422, "must be a string"),
        (with("bib", json!("12 3")), 422, "invalid bib"),
        (with("bib", json!("x".repeat(17))), 422, "invalid bib"),
        (json!(["not", "an", "object"]), 422, "invalid body"),
    ];
    for (body, status, needle) in cases {
        assert_error(&app.post("/competitor", body).await, status, needle);
    }
    let malformed = app
        .send(
            app.request(reqwest::Method::POST, "/competitor")
                .body("{\"bib\": ")
                .header("content-type", "application/json"),
        )
        .await;
    assert_error(&malformed, 400, "malformed JSON");
    assert_eq!(app.get("/getcompetitor/123").await.0, 404);
    assert_eq!(app.get("/api/v1/competitors").await.1["total"], 0);
}

/// Each bad `settimes` body answers a 4xx naming the problem, and no time is stored: a body
/// with one bad checkpoint changes none (all or nothing).
#[tokio::test]
async fn legacy_settimes_bad_input_stores_nothing() {
    let app = spawn_app().await;
    app.post("/competitor", ripley()).await;
    let times = |settimes: serde_json::Value| json!({"bib": 123, "settimes": settimes});
    let cases = [
        (json!({"settimes": {}}), "missing field `bib`"),
        (json!({"bib": 123}), "missing field `settimes`"),
        (
            json!({"bib": 123, "settimes": {}, "extra": 1}),
            "unknown field `extra`",
        ),
        (
            times(json!({"start": "12:00:00:000", "split1": -1, "split2": -1})),
            "missing checkpoint `finish`",
        ),
        (
            times(json!({"start": -1, "split1": -1, "split2": -1, "finish": -1, "km5": -1})),
            "unknown checkpoint `km5`",
        ),
        (
            times(
                json!({"start": "12:00:00:000", "split1": -1, "split2": -1, "finish": "12:61:00:000"}),
            ),
            "invalid time `12:61:00:000`",
        ),
        (
            times(
                json!({"start": "12:00:00:000", "split1": -1, "split2": -1, "finish": "1:00:00"}),
            ),
            "invalid time",
        ),
        (
            times(json!({"start": "12:00:00:000", "split1": -1, "split2": -1, "finish": 5})),
            "expected a time",
        ),
        (json!({"bib": "a b", "settimes": {}}), "invalid bib"),
    ];
    for (body, needle) in cases {
        assert_error(&app.post("/settimes", body).await, 422, needle);
    }
    assert_error(&app.get("/gettimes/123").await, 404, "No data found");
}

/// Times of day with hours up to 99, as the original accepts.
#[tokio::test]
async fn legacy_hours_up_to_99() {
    let app = spawn_app().await;
    app.post("/competitor", ripley()).await;
    let body = json!({"bib": 123, "settimes": {"start": "23:50:00:000", "split1": -1,
                      "split2": -1, "finish": "99:59:59:999"}});
    assert_eq!(app.post("/settimes", body).await.0, 201);
    assert_eq!(app.get("/gettimes/123").await.1["finish"], "99:59:59:999");
}
