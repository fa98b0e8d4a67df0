//! `/api/v1/results`: ranking by elapsed time from each competitor's own start.

use serde_json::{Value, json};

use crate::common::{TestApp, assert_error, command_calls, spawn_app};

/// `(rank, bib, elapsed, status)` of each row.
fn rows(page: &Value) -> Vec<(Value, String, Value, Value)> {
    page["results"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    (
                        r["rank"].clone(),
                        r["bib"].as_str().unwrap_or("").to_owned(),
                        r["elapsed"].clone(),
                        r["status"].clone(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn row(
    rank: Option<u64>,
    bib: &str,
    elapsed: Option<&str>,
    status: Option<&str>,
) -> (Value, String, Value, Value) {
    (json!(rank), bib.to_owned(), json!(elapsed), json!(status))
}

async fn finish(app: &TestApp, bib: &str, start: &str, finish: &str) {
    app.times(bib, json!({"start": start, "finish": finish}))
        .await;
}

/// Equal times share a rank (1, 2, 2, 4); competitors without a finish follow unranked, then
/// those with a status; pages keep the ranks of the whole list.
#[tokio::test]
async fn results_ties_unfinished_and_statuses() {
    let app = spawn_app().await;
    for bib in ["1", "2", "3", "4", "5", "6", "7"] {
        app.competitor(bib, "male", "men30").await;
    }
    finish(&app, "1", "10:00:00.000", "11:10:00.000").await; // 1:10
    finish(&app, "2", "10:00:00.000", "11:00:00.000").await; // 1:00
    finish(&app, "3", "10:05:00.000", "11:15:00.000").await; // 1:10
    finish(&app, "4", "10:00:00.000", "11:20:00.000").await; // 1:20
    app.times("5", json!({"start": "10:00:00.000"})).await; // no finish
    finish(&app, "6", "10:00:00.000", "10:30:00.000").await;
    app.put("/api/v1/competitors/6/status", json!({"status": "DSQ"}))
        .await; // fastest, but out
    app.put("/api/v1/competitors/7/status", json!({"status": "DNS"}))
        .await;

    let (status, page) = app.get("/api/v1/results").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        (&page["total"], &page["checkpoint"]),
        (&json!(7), &json!("finish"))
    );
    assert_eq!(
        rows(&page),
        [
            row(Some(1), "2", Some("01:00:00.000"), None),
            row(Some(2), "1", Some("01:10:00.000"), None),
            row(Some(2), "3", Some("01:10:00.000"), None),
            row(Some(4), "4", Some("01:20:00.000"), None),
            row(None, "5", None, None),
            row(None, "6", None, Some("DSQ")),
            row(None, "7", None, Some("DNS")),
        ]
    );
    let first = &page["results"][0];
    assert_eq!(
        (
            &first["first_name"],
            &first["last_name"],
            &first["gender"],
            &first["category"],
            &first["elapsed_ms"]
        ),
        (
            &json!("First2"),
            &json!("Last2"),
            &json!("male"),
            &json!("men30"),
            &json!(3_600_000)
        )
    );

    // A page starting on the second of two tied rows keeps the shared rank.
    let page = app.get("/api/v1/results?offset=2&limit=3").await.1;
    assert_eq!(
        rows(&page),
        [
            row(Some(2), "3", Some("01:10:00.000"), None),
            row(Some(4), "4", Some("01:20:00.000"), None),
            row(None, "5", None, None)
        ]
    );
    assert_eq!(page["total"], 7);
    assert_eq!(rows(&app.get("/api/v1/results?offset=7").await.1), []);

    // Clearing the status puts the competitor back in the ranking.
    app.put("/api/v1/competitors/6/status", json!({"status": null}))
        .await;
    assert_eq!(
        rows(&app.get("/api/v1/results?limit=1").await.1),
        [row(Some(1), "6", Some("00:30:00.000"), None)]
    );
}

/// The seed's demo race: different start times, ranked by elapsed time rather than finish time
/// of day; a start before midnight and a finish after it.
#[tokio::test]
async fn results_by_elapsed_time_with_own_starts_and_midnight() {
    let app = spawn_app().await;
    for bib in ["101", "102", "103"] {
        app.competitor(bib, "male", "men30").await;
    }
    finish(&app, "101", "09:00:00.000", "09:30:00.000").await; // finishes first, 30 min
    finish(&app, "102", "09:10:00.000", "09:35:00.000").await; // 25 min
    finish(&app, "103", "23:50:00.000", "00:10:00.000").await; // 20 min across midnight
    let page = app.get("/api/v1/results?category=men30").await.1;
    assert_eq!(
        rows(&page),
        [
            row(Some(1), "103", Some("00:20:00.000"), None),
            row(Some(2), "102", Some("00:25:00.000"), None),
            row(Some(3), "101", Some("00:30:00.000"), None),
        ]
    );
    // A later start alone re-ranks: 101 now ties with 102 (equal times: bib order).
    app.set_time("101", "start", "09:05:00.000").await;
    assert_eq!(
        rows(&app.get("/api/v1/results").await.1),
        [
            row(Some(1), "103", Some("00:20:00.000"), None),
            row(Some(2), "101", Some("00:25:00.000"), None),
            row(Some(2), "102", Some("00:25:00.000"), None),
        ]
    );
}

/// Rankings by category, by gender and at a split; changes of category and deletions move
/// competitors between rankings; bad queries are refused.
#[tokio::test]
async fn results_scopes_splits_and_moves() {
    let app = spawn_app().await;
    app.competitor("1", "male", "men30").await;
    app.competitor("2", "female", "women40").await;
    app.competitor("3", "female", "women30").await;
    app.times(
        "1",
        json!({"start": "10:00:00.000", "split1": "10:20:00.000", "finish": "11:00:00.000"}),
    )
    .await;
    app.times(
        "2",
        json!({"start": "10:00:00.000", "split1": "10:10:00.000", "finish": "11:30:00.000"}),
    )
    .await;
    app.times(
        "3",
        json!({"start": "10:00:00.000", "split1": "10:15:00.000", "finish": "11:10:00.000"}),
    )
    .await;

    let bibs = |page: Value| {
        rows(&page)
            .into_iter()
            .map(|r| (r.0, r.1))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        bibs(app.get("/api/v1/results").await.1),
        [
            (json!(1), "1".into()),
            (json!(2), "3".into()),
            (json!(3), "2".into())
        ]
    );
    assert_eq!(
        bibs(app.get("/api/v1/results?gender=female").await.1),
        [(json!(1), "3".into()), (json!(2), "2".into())]
    );
    assert_eq!(
        bibs(app.get("/api/v1/results?category=women40").await.1),
        [(json!(1), "2".into())]
    );
    assert_eq!(
        bibs(app.get("/api/v1/results?checkpoint=split1").await.1),
        [
            (json!(1), "2".into()),
            (json!(2), "3".into()),
            (json!(3), "1".into())
        ]
    );
    assert_eq!(
        bibs(app.get("/api/v1/results?checkpoint=split2").await.1),
        [
            (json!(null), "1".into()),
            (json!(null), "2".into()),
            (json!(null), "3".into())
        ]
    );

    // A split time set alone ranks at that split only.
    let split2 = json!({"time": "10:40:00.000"});
    app.put("/api/v1/competitors/2/times/split2", split2).await;
    assert_eq!(
        bibs(app.get("/api/v1/results?checkpoint=split2").await.1),
        [
            (json!(1), "2".into()),
            (json!(null), "1".into()),
            (json!(null), "3".into())
        ]
    );
    app.delete("/api/v1/competitors/2/times/split2").await;

    app.patch("/api/v1/competitors/3", json!({"category": "women40"}))
        .await;
    assert_eq!(
        bibs(app.get("/api/v1/results?category=women40").await.1),
        [(json!(1), "3".into()), (json!(2), "2".into())]
    );
    assert_eq!(
        app.get("/api/v1/results?category=women30").await.1["total"],
        0
    );
    app.delete("/api/v1/competitors/3").await;
    assert_eq!(
        bibs(app.get("/api/v1/results?gender=female").await.1),
        [(json!(1), "2".into())]
    );
    assert_eq!(app.get("/api/v1/results").await.1["total"], 2);

    assert_error(
        &app.get("/api/v1/results?checkpoint=start").await,
        422,
        "is the start",
    );
    assert_error(
        &app.get("/api/v1/results?checkpoint=km5").await,
        422,
        "unknown checkpoint `km5`",
    );
    assert_error(
        &app.get("/api/v1/results?category=men99").await,
        422,
        "unknown category",
    );
    assert_error(
        &app.get("/api/v1/results?gender=male&category=men30").await,
        422,
        "not both",
    );
    assert_error(&app.get("/api/v1/results?limit=1000").await, 422, "`limit`");
    assert_error(
        &app.get("/api/v1/results?offset=-1").await,
        400,
        "invalid query",
    );
}

/// Writes through the legacy routes feed the rankings too.
#[tokio::test]
async fn results_from_legacy_writes() {
    let app = spawn_app().await;
    for (bib, start, finish) in [
        (201, "10:00:00:000", "10:45:00:000"),
        (202, "10:02:00:000", "10:44:00:000"),
    ] {
        let body = json!({"bib": bib, "first_name": "A", "last_name": "B", "gender": "female",
                          "country": "Finland", "category": "women40"});
        assert_eq!(app.post("/competitor", body).await.0, 201);
        let times = json!({"bib": bib, "settimes": {"start": start, "split1": -1, "split2": -1, "finish": finish}});
        assert_eq!(app.post("/settimes", times).await.0, 201);
    }
    let page = app.get("/api/v1/results?category=women40").await.1;
    assert_eq!(
        rows(&page),
        [
            row(Some(1), "202", Some("00:42:00.000"), None),
            row(Some(2), "201", Some("00:45:00.000"), None)
        ]
    );
}

/// Names with quotes, backslashes, slashes and non-ASCII letters come back unchanged in the
/// rows (the route copies stored row JSON into its answer).
#[tokio::test]
async fn results_rows_keep_special_characters() {
    let app = spawn_app().await;
    let name = "Matti \"Mäki\" Meikäläinen \\ / \u{1F3C3}";
    let body = json!({"bib": "101", "first_name": name, "last_name": "O'Brien", "gender": "male",
                      "country": "Suomi/Finland", "category": "men30"});
    assert_eq!(app.post("/api/v1/competitors", body).await.0, 201);
    finish(&app, "101", "09:00:00.000", "09:30:00.000").await;
    let row = &app.get("/api/v1/results").await.1["results"][0];
    assert_eq!(
        (&row["first_name"], &row["last_name"], &row["country"]),
        (&json!(name), &json!("O'Brien"), &json!("Suomi/Finland"))
    );
}

/// Every page of `path` (limits 1 to 4, every offset) equals the same slice of the whole
/// ranking, whose bibs each appear once; returns the whole ranking's `(rank, bib)` rows.
async fn check_pages(app: &TestApp, path: &str, total: usize) -> Vec<(Value, String)> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let (status, whole) = app.get(&format!("{path}{sep}limit=500")).await;
    assert_eq!(status, 200, "{whole}");
    assert_eq!(whole["total"], json!(total), "{path}: {whole}");
    let whole = rows(&whole);
    assert_eq!(whole.len(), total, "{path}");
    let mut bibs: Vec<&str> = whole.iter().map(|r| r.1.as_str()).collect();
    bibs.sort_unstable();
    bibs.dedup();
    assert_eq!(bibs.len(), total, "{path}: a bib listed twice");
    for limit in 1..=4 {
        for offset in 0..=total + 1 {
            let page = app
                .get(&format!("{path}{sep}offset={offset}&limit={limit}"))
                .await
                .1;
            assert_eq!(page["total"], json!(total), "{path} {offset}/{limit}");
            let expected = &whole[offset.min(total)..(offset + limit).min(total)];
            assert_eq!(
                rows(&page),
                expected,
                "{path} offset {offset} limit {limit}"
            );
        }
    }
    whole.into_iter().map(|r| (r.0, r.1)).collect()
}

/// Competitors never timed (kept out of the rank sets until their first time or status) are
/// listed after those with some time but none at the checkpoint, in the order they became
/// untimed (here: created), before those with a status; pages across every boundary keep the order and the ranks; a first time or
/// status moves a competitor into the ranking, clearing all of them moves them back.
#[tokio::test]
async fn results_never_timed_competitors_and_pages_across_groups() {
    let app = spawn_app().await;
    for bib in ["10", "9", "8", "7", "6", "5", "4", "3", "2", "1"] {
        app.competitor(bib, if bib == "10" { "female" } else { "male" }, "men30")
            .await;
    }
    finish(&app, "1", "10:00:00.000", "11:10:00.000").await;
    finish(&app, "2", "10:00:00.000", "11:00:00.000").await;
    finish(&app, "3", "10:00:00.000", "11:00:00.000").await;
    app.times("4", json!({"start": "10:00:00.000"})).await; // started, no finish
    app.put("/api/v1/competitors/5/status", json!({"status": "DNS"}))
        .await; // never timed, out
    app.put("/api/v1/competitors/6/status", json!({"status": "DNF"}))
        .await;
    app.times("6", json!({"start": "10:00:00.000"})).await; // started, then out
    let expected = |bibs: &[(Option<u64>, &str)]| {
        bibs.iter()
            .map(|(rank, bib)| (json!(rank), (*bib).to_owned()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        check_pages(&app, "/api/v1/results", 10).await,
        expected(&[
            (Some(1), "2"),
            (Some(1), "3"),
            (Some(3), "1"),
            (None, "4"),
            (None, "10"),
            (None, "9"),
            (None, "8"),
            (None, "7"),
            (None, "6"),
            (None, "5"),
        ])
    );
    let page = app.get("/api/v1/results?offset=4&limit=1").await.1;
    assert_eq!(
        (
            &page["results"][0]["first_name"],
            &page["results"][0]["status"],
            &page["results"][0]["elapsed_ms"]
        ),
        (&json!("First10"), &json!(null), &json!(null))
    );
    assert_eq!(
        check_pages(&app, "/api/v1/results?gender=female", 1).await,
        expected(&[(None, "10")])
    );
    assert_eq!(
        check_pages(&app, "/api/v1/results?checkpoint=split1&category=men30", 10).await,
        expected(&[
            (None, "1"),
            (None, "2"),
            (None, "3"),
            (None, "4"),
            (None, "10"),
            (None, "9"),
            (None, "8"),
            (None, "7"),
            (None, "6"),
            (None, "5"),
        ])
    );

    // A first time ranks; clearing every time (and a status) puts them back among the
    // never-timed, once.
    finish(&app, "9", "10:00:00.000", "10:50:00.000").await;
    app.delete("/api/v1/competitors/4/times/start").await;
    app.put("/api/v1/competitors/5/status", json!({"status": null}))
        .await;
    app.patch(
        "/api/v1/competitors/7/times",
        json!({"start": "10:00:00.000"}),
    )
    .await;
    app.patch("/api/v1/competitors/7/times", json!({"start": null}))
        .await;
    // Moves between scopes and deletions, timed and not.
    app.patch("/api/v1/competitors/8", json!({"gender": "female"}))
        .await;
    app.put(
        "/api/v1/competitors/2",
        json!({"first_name": "A", "last_name": "B", "gender": "female", "country": "Finland",
               "category": "women30"}),
    )
    .await;
    app.delete("/api/v1/competitors/10").await;
    assert_eq!(
        check_pages(&app, "/api/v1/results", 9).await,
        expected(&[
            (Some(1), "9"),
            (Some(2), "2"),
            (Some(2), "3"),
            (Some(4), "1"),
            (None, "4"),
            (None, "5"),
            (None, "7"),
            (None, "8"),
            (None, "6"),
        ])
    );
    assert_eq!(
        check_pages(&app, "/api/v1/results?gender=female", 2).await,
        expected(&[(Some(1), "2"), (None, "8")])
    );
    assert_eq!(
        check_pages(&app, "/api/v1/results?category=men30", 8).await,
        expected(&[
            (Some(1), "9"),
            (Some(2), "3"),
            (Some(3), "1"),
            (None, "4"),
            (None, "5"),
            (None, "7"),
            (None, "8"),
            (None, "6"),
        ])
    );
    assert_eq!(
        check_pages(&app, "/api/v1/results?category=women30", 1).await,
        expected(&[(Some(1), "2")])
    );
}

/// A service keeps the results rows it read (store/results.rs) while no row changes: a
/// competitor's name changed, a competitor deleted and one imported show on the next read of
/// a page whose rows were kept, in this scope or through another.
#[tokio::test]
async fn kept_rows_follow_every_change_of_a_row() {
    let app = spawn_app().await;
    for bib in ["1", "2", "3"] {
        app.competitor(bib, "male", "men30").await;
        finish(&app, bib, "09:00:00.000", &format!("10:00:0{bib}.000")).await;
    }
    let names = |page: &Value| -> Vec<String> {
        page["results"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .map(|r| format!("{} {}", r["bib"].as_str().unwrap_or(""), r["last_name"]))
                    .collect()
            })
            .unwrap_or_default()
    };
    let before = names(&app.get("/api/v1/results?category=men30").await.1);
    let (status, _) = app
        .patch("/api/v1/competitors/2", json!({"last_name": "Renamed"}))
        .await;
    assert_eq!(status, 200);
    // Read through another scope and offset first, then the page read before.
    let all = names(&app.get("/api/v1/results?offset=1&limit=1").await.1);
    assert_eq!(all, ["2 \"Renamed\""]);
    let after = names(&app.get("/api/v1/results?category=men30").await.1);
    assert_eq!(after.len(), 3, "{before:?}");
    assert_eq!(after[1], "2 \"Renamed\"");
    assert_ne!(before, after);

    assert_eq!(app.delete("/api/v1/competitors/1").await.0, 204);
    let (status, body) = app
        .send(
            app.request(reqwest::Method::POST, "/api/v1/competitors/import")
                .header("Content-Type", "text/csv")
                .body(
                    "bib,first_name,last_name,gender,country,category\n3,Im,Ported,male,FI,men30\n",
                ),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        names(&app.get("/api/v1/results?category=men30").await.1),
        ["2 \"Renamed\"", "3 \"Ported\""]
    );
}

/// A ranking whose pages are read as many times as it has pages at one version is kept
/// whole: its pages then read nothing from Redis but the scope version, and they are the
/// pages read from Redis. Any change of the scope gives it up at once.
#[tokio::test]
async fn a_ranking_read_often_is_kept_whole_until_it_changes() {
    let app = spawn_app().await;
    for bib in 1..=10 {
        let bib = bib.to_string();
        app.competitor(&bib, "male", "men30").await;
        // Ties: 1 and 2, 5 and 6 and 7.
        let second = [0, 1, 1, 3, 4, 6, 6, 6, 8, 9, 10][bib.parse::<usize>().expect("bib")];
        finish(
            &app,
            &bib,
            "09:00:00.000",
            &format!("10:00:{second:02}.000"),
        )
        .await;
    }
    app.competitor("11", "male", "men30").await; // untimed
    app.competitor("12", "male", "men30").await;
    app.put("/api/v1/competitors/12/status", json!({"status": "DNF"}))
        .await;
    let total = 12;
    let (status, whole) = app.get("/api/v1/results?limit=500").await;
    assert_eq!(status, 200, "{whole}");
    let whole = rows(&whole);
    let page = |offset: usize| format!("/api/v1/results?offset={offset}&limit=3");

    // 12 rows in pages of 3: four page reads at this version (the list above and three
    // pages) make the fourth page have the ranking read whole, in the background, while that
    // page is read as before. The pages after it are sliced from it, or answered from their
    // rendering (a page read before at this version).
    for offset in (0..total).step_by(3) {
        app.get(&page(offset)).await;
    }
    app.kept_rows(total).await;
    let ranges = command_calls(&app, "zrange").await;
    let gets = command_calls(&app, "hget").await;
    for offset in 0..=total {
        let (status, body) = app.get(&page(offset)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["total"], json!(total));
        assert_eq!(
            rows(&body),
            whole[offset.min(total)..(offset + 3).min(total)],
            "offset {offset}"
        );
    }
    assert_eq!(
        command_calls(&app, "zrange").await,
        ranges,
        "pages of a kept ranking read no rank set"
    );
    assert_eq!(
        command_calls(&app, "hget").await,
        gets + total as u64 + 1,
        "a page of a kept ranking reads its scope version only"
    );

    // A change: the next page shows it at once.
    finish(&app, "10", "09:00:00.000", "09:59:00.000").await;
    let (_, first) = app.get(&page(0)).await;
    assert_eq!(
        rows(&first)[0],
        row(Some(1), "10", Some("00:59:00.000"), None)
    );
    // Read often again at the new version: kept again, and still the pages read from Redis.
    let (_, whole) = app.get("/api/v1/results?limit=500").await;
    let whole = rows(&whole);
    for offset in (0..total).step_by(3) {
        app.get(&page(offset)).await;
    }
    app.kept_rows(total).await;
    for _ in 0..2 {
        for offset in 0..=total {
            let (_, body) = app.get(&page(offset)).await;
            assert_eq!(
                rows(&body),
                whole[offset.min(total)..(offset + 3).min(total)],
                "offset {offset}"
            );
        }
    }
}

/// A ranking longer than one round trip of a whole read (250 rows) is kept the same: its
/// pages, kept, are the rows read from Redis before. (Pages are read at other offsets than
/// before: a page read again at the same version is answered from its rendering.)
#[tokio::test]
async fn a_long_ranking_is_kept_whole_in_several_reads() {
    let app = spawn_app().await;
    let mut csv = String::from("bib,first_name,last_name,gender,country,category\n");
    for bib in 1..=2_500 {
        csv.push_str(&format!("{bib},First{bib},Last{bib},male,FI,men30\n"));
    }
    let (status, body) = app
        .send(
            app.request(reqwest::Method::POST, "/api/v1/competitors/import")
                .header("Content-Type", "text/csv")
                .body(csv),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // Times for some, with ties across the first read's boundary, and two statuses.
    for bib in (1..=2_500).step_by(2) {
        let second = (bib / 7) % 60;
        let minute = bib / 420;
        finish(
            &app,
            &bib.to_string(),
            "09:00:00.000",
            &format!("10:{minute:02}:{second:02}.000"),
        )
        .await;
    }
    app.put("/api/v1/competitors/4/status", json!({"status": "DNS"}))
        .await;
    app.put("/api/v1/competitors/6/status", json!({"status": "DNF"}))
        .await;
    let page = |offset: usize| format!("/api/v1/results?offset={offset}&limit=500");
    let mut before = Vec::new();
    for offset in (0..2_500).step_by(500) {
        let (status, body) = app.get(&page(offset)).await;
        assert_eq!(status, 200, "{body}");
        before.extend(rows(&body));
    }
    assert_eq!(before.len(), 2_500);
    // Five pages read: the next page read (not one rendered already) has the ranking read
    // whole in the background, in ten round trips, and the others are sliced from it.
    let shifted = || (250..2_500).step_by(500);
    let (_, body) = app.get(&page(250)).await;
    assert_eq!(rows(&body), before[250..750]);
    app.kept_rows(2_500).await;
    let ranges = command_calls(&app, "zrange").await;
    for offset in shifted().skip(1) {
        let (_, body) = app.get(&page(offset)).await;
        assert_eq!(body["total"], json!(2_500));
        assert_eq!(
            rows(&body),
            before[offset..(offset + 500).min(2_500)],
            "offset {offset}"
        );
    }
    assert_eq!(command_calls(&app, "zrange").await, ranges, "not kept");
}
