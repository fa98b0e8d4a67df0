//! `/api/v1/competitors/{bib}/times` and `/status`.

use serde_json::json;

use crate::common::{assert_error, spawn_app};

/// Setting one checkpoint, several at once, clearing one; the view gives time of day,
/// elapsed from the competitor's start and leg from the previous checkpoint.
#[tokio::test]
async fn v1_times_set_read_clear() {
    let app = spawn_app().await;
    app.competitor("7", "male", "men30").await;
    let (status, body) = app
        .put(
            "/api/v1/competitors/7/times/start",
            json!({"time": "09:00:00.000"}),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    app.times(
        "7",
        json!({"split1": "09:20:00.500", "finish": "10:00:01:000"}),
    )
    .await;

    let (status, view) = app.get("/api/v1/competitors/7/times").await;
    assert_eq!(status, 200);
    assert_eq!(
        view,
        json!({"bib": "7", "status": null, "wave": null, "gun_time": null, "checkpoints": [
            {"checkpoint": "start", "time_of_day": "09:00:00.000", "manual": true, "elapsed_ms": 0, "elapsed": "00:00:00.000",
             "net_ms": 0, "net": "00:00:00.000", "gun_ms": null, "gun": null, "leg_ms": null, "leg": null, "rank": null},
            {"checkpoint": "split1", "time_of_day": "09:20:00.500", "manual": true, "elapsed_ms": 1_200_500, "elapsed": "00:20:00.500",
             "net_ms": 1_200_500, "net": "00:20:00.500", "gun_ms": null, "gun": null, "leg_ms": 1_200_500, "leg": "00:20:00.500", "rank": 1},
            {"checkpoint": "split2", "time_of_day": null, "manual": false, "elapsed_ms": null, "elapsed": null,
             "net_ms": null, "net": null, "gun_ms": null, "gun": null, "leg_ms": null, "leg": null, "rank": null},
            {"checkpoint": "finish", "time_of_day": "10:00:01.000", "manual": true, "elapsed_ms": 3_601_000, "elapsed": "01:00:01.000",
             "net_ms": 3_601_000, "net": "01:00:01.000", "gun_ms": null, "gun": null, "leg_ms": null, "leg": null, "rank": 1},
        ]})
    );

    assert_eq!(
        app.delete("/api/v1/competitors/7/times/split1").await.0,
        204
    );
    app.times("7", json!({"split2": "09:40:00.000", "finish": null}))
        .await;
    let view = app.get("/api/v1/competitors/7/times").await.1;
    assert_eq!(view["checkpoints"][1]["time_of_day"], json!(null));
    assert_eq!(view["checkpoints"][2]["elapsed"], "00:40:00.000");
    assert_eq!(view["checkpoints"][3]["time_of_day"], json!(null));
    // The legacy view of the same data.
    assert_eq!(
        app.get("/gettimes/7").await.1,
        json!({"start": "09:00:00:000", "split2": "09:40:00:000"})
    );
}

/// Each checkpoint's `rank` is the competitor's rank in the whole field there (ties shared),
/// null without a time there or out of the race.
#[tokio::test]
async fn v1_times_split_ranks() {
    let app = spawn_app().await;
    for (bib, split1, finish) in [
        ("1", "10:20:00.000", "11:00:00.000"),
        ("2", "10:10:00.000", "11:10:00.000"),
        ("3", "10:10:00.000", "10:50:00.000"),
    ] {
        app.competitor(bib, "male", "men30").await;
        app.times(
            bib,
            json!({"start": "10:00:00.000", "split1": split1, "finish": finish}),
        )
        .await;
    }
    app.competitor("4", "female", "women30").await;
    app.times(
        "4",
        json!({"start": "10:00:00.000", "split1": "10:05:00.000"}),
    )
    .await;
    let ranks = |view: &serde_json::Value| -> Vec<serde_json::Value> {
        (0..4)
            .map(|i| view["checkpoints"][i]["rank"].clone())
            .collect()
    };
    let view = app.get("/api/v1/competitors/1/times").await.1;
    assert_eq!(ranks(&view), [json!(null), json!(4), json!(null), json!(2)]);
    let view = app.get("/api/v1/competitors/2/times").await.1;
    assert_eq!(ranks(&view), [json!(null), json!(2), json!(null), json!(3)]);
    let view = app.get("/api/v1/competitors/4/times").await.1;
    assert_eq!(
        ranks(&view),
        [json!(null), json!(1), json!(null), json!(null)]
    );
    app.put("/api/v1/competitors/3/status", json!({"status": "DSQ"}))
        .await;
    let view = app.get("/api/v1/competitors/3/times").await.1;
    assert_eq!(ranks(&view), vec![json!(null); 4]);
    let view = app.get("/api/v1/competitors/1/times").await.1;
    assert_eq!(ranks(&view), [json!(null), json!(3), json!(null), json!(1)]);
}

/// A finish after midnight is measured across it.
#[tokio::test]
async fn v1_times_cross_midnight() {
    let app = spawn_app().await;
    app.competitor("8", "female", "women40").await;
    app.times(
        "8",
        json!({"start": "23:50:00.000", "split1": "23:59:59.999", "finish": "00:10:00.000"}),
    )
    .await;
    let view = app.get("/api/v1/competitors/8/times").await.1;
    assert_eq!(view["checkpoints"][3]["elapsed"], "00:20:00.000");
    assert_eq!(view["checkpoints"][3]["elapsed_ms"], 1_200_000);
    assert_eq!(view["checkpoints"][1]["leg"], "00:09:59.999");
}

/// Bad times input: 4xx naming the problem and nothing changed (all or nothing).
#[tokio::test]
async fn v1_times_bad_input_changes_nothing() {
    let app = spawn_app().await;
    app.competitor("7", "male", "men30").await;
    app.times("7", json!({"start": "09:00:00.000"})).await;
    let before = app.get("/api/v1/competitors/7/times").await.1;

    assert_error(
        &app.patch(
            "/api/v1/competitors/7/times",
            json!({"split1": "09:10:00.000", "finish": "9:10"}),
        )
        .await,
        422,
        "checkpoint `finish`: invalid time `9:10`",
    );
    assert_error(
        &app.patch(
            "/api/v1/competitors/7/times",
            json!({"split1": "09:10:00.000", "km5": "09:11:00.000"}),
        )
        .await,
        422,
        "unknown checkpoint `km5`",
    );
    assert_error(
        &app.patch("/api/v1/competitors/7/times", json!({"split1": 12}))
            .await,
        422,
        "expected a time",
    );
    assert_error(
        &app.patch("/api/v1/competitors/7/times", json!({})).await,
        422,
        "no checkpoint given",
    );
    assert_error(
        &app.put(
            "/api/v1/competitors/7/times/km5",
            json!({"time": "09:10:00.000"}),
        )
        .await,
        404,
        "no checkpoint `km5`",
    );
    assert_error(
        &app.put(
            "/api/v1/competitors/7/times/split1",
            json!({"time": "09:10:00"}),
        )
        .await,
        422,
        "invalid time",
    );
    assert_error(
        &app.put(
            "/api/v1/competitors/7/times/split1",
            json!({"tim": "09:10:00.000"}),
        )
        .await,
        422,
        "unknown field `tim`",
    );
    assert_error(
        &app.put(
            "/api/v1/competitors/404/times/split1",
            json!({"time": "09:10:00.000"}),
        )
        .await,
        404,
        "no competitor with bib `404`",
    );
    assert_error(
        &app.patch(
            "/api/v1/competitors/404/times",
            json!({"start": "09:10:00.000"}),
        )
        .await,
        404,
        "no competitor",
    );
    assert_error(
        &app.delete("/api/v1/competitors/404/times/start").await,
        404,
        "no competitor",
    );
    assert_error(
        &app.get("/api/v1/competitors/404/times").await,
        404,
        "no competitor",
    );
    assert_eq!(app.get("/api/v1/competitors/7/times").await.1, before);
    assert_error(&app.get("/gettimes/404").await, 404, "No data found");
}

/// DNS / DNF / DSQ are set and cleared; bad statuses are refused.
#[tokio::test]
async fn v1_status_set_and_clear() {
    let app = spawn_app().await;
    app.competitor("7", "male", "men30").await;
    assert_eq!(
        app.put("/api/v1/competitors/7/status", json!({"status": "DNF"}))
            .await
            .0,
        204
    );
    assert_eq!(app.get("/api/v1/competitors/7").await.1["status"], "DNF");
    assert_eq!(
        app.get("/api/v1/competitors/7/times").await.1["status"],
        "DNF"
    );
    assert_eq!(
        app.put("/api/v1/competitors/7/status", json!({"status": null}))
            .await
            .0,
        204
    );
    assert_eq!(
        app.get("/api/v1/competitors/7").await.1["status"],
        json!(null)
    );

    assert_error(
        &app.put("/api/v1/competitors/7/status", json!({"status": "OUT"}))
            .await,
        422,
        "invalid status",
    );
    assert_error(
        &app.put("/api/v1/competitors/7/status", json!({})).await,
        422,
        "missing field `status`",
    );
    assert_error(
        &app.put(
            "/api/v1/competitors/7/status",
            json!({"status": "DNS", "why": "x"}),
        )
        .await,
        422,
        "unknown field `why`",
    );
    assert_error(
        &app.put("/api/v1/competitors/404/status", json!({"status": "DNS"}))
            .await,
        404,
        "no competitor",
    );
    assert_eq!(
        app.get("/api/v1/competitors/7").await.1["status"],
        json!(null)
    );
}
