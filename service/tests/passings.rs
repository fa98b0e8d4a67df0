//! Chip reads, waves with gun and net time, manual overrides and the audit trail (issue 11).
//! Each test writes out the race-day scenario it plays; the race is the original's checkpoints
//! (start, split1, split2, finish) with the competitor fields `wave` and `chip` added, and the
//! default rules: at the start the last read within 30 minutes of the gun, elsewhere the
//! first read at least 1 minute after the start.

use reqwest::Method;
use serde_json::{Value, json};
use timing_service::{
    AppState,
    auth::Credentials,
    model::format_ms,
    race::Race,
    store::{Scope, Store, keys},
};

use crate::common::{
    Redis, TestApp, assert_error, command_calls, long_way_calls, spawn_app_on, spawn_app_with,
    unconnected_store,
};

/// The original race definition plus `wave` and `chip`.
fn race() -> Race {
    let mut race = Race::default();
    race.fields.push("wave".into());
    race.fields.push("chip".into());
    race
}

async fn app() -> TestApp {
    spawn_app_with(race(), None).await
}

/// The service deciding chip reads itself (`planned`) or leaving every read to the library's
/// rules (`PLANNED_READS=false`), and its store (whose counts say which way reads went).
async fn app_planning(planned: bool) -> (TestApp, Store) {
    let redis = Redis::start();
    let state = AppState::new(&redis.url(), race(), None)
        .expect("state")
        .with_planned_reads(planned);
    let store = state.store.clone();
    (spawn_app_on(redis, state).await, store)
}

/// Creates competitor `bib` (male, men30) in `wave` with `chip`.
async fn runner(app: &TestApp, bib: &str, wave: Option<&str>, chip: Option<&str>) {
    let mut body = json!({"bib": bib, "first_name": format!("First{bib}"),
        "last_name": format!("Last{bib}"), "gender": "male", "country": "Finland",
        "category": "men30"});
    if let Some(wave) = wave {
        body["wave"] = json!(wave);
    }
    if let Some(chip) = chip {
        body["chip"] = json!(chip);
    }
    let (status, answer) = app.post("/api/v1/competitors", body).await;
    assert_eq!(status, 201, "{answer}");
}

async fn wave(app: &TestApp, name: &str, start: &str) -> u16 {
    let (status, body) = app
        .put(&format!("/api/v1/waves/{name}"), json!({"start": start}))
        .await;
    assert!(status == 200 || status == 201, "{status} {body}");
    status
}

/// A read by bib: `(id, checkpoint, bib, time)`.
fn by_bib(id: &str, checkpoint: &str, bib: &str, time: &str) -> Value {
    json!({"id": id, "checkpoint": checkpoint, "bib": bib, "time": time, "source": "mat-1"})
}

/// A read by chip.
fn by_chip(id: &str, checkpoint: &str, chip: &str, time: &str) -> Value {
    json!({"id": id, "checkpoint": checkpoint, "chip": chip, "time": time, "source": "mat-1"})
}

/// Posts a batch and returns the outcomes as `(id, outcome)` pairs, asserting 200.
async fn upload(app: &TestApp, reads: Vec<Value>) -> Vec<(String, String)> {
    let (status, body) = app
        .post("/api/v1/passings", json!({ "passings": reads }))
        .await;
    assert_eq!(status, 200, "{body}");
    body["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results: {body}"))
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap_or_default().to_owned(),
                r["outcome"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn outcomes(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(id, o)| ((*id).to_owned(), (*o).to_owned()))
        .collect()
}

/// Asserts the competitor's time of day at `checkpoint` (`None`: unset).
async fn assert_time(app: &TestApp, bib: &str, checkpoint: &str, expected: Option<&str>) {
    let time = time_at(app, bib, checkpoint).await.0;
    assert_eq!(time.as_deref(), expected, "{bib} at {checkpoint}");
}

/// The competitor's time of day at `checkpoint` (`None` when unset) and whether it is manual.
async fn time_at(app: &TestApp, bib: &str, checkpoint: &str) -> (Option<String>, bool, Value) {
    let (status, view) = app.get(&format!("/api/v1/competitors/{bib}/times")).await;
    assert_eq!(status, 200, "{view}");
    let row = view["checkpoints"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["checkpoint"] == checkpoint))
        .cloned()
        .unwrap_or_else(|| panic!("no {checkpoint} in {view}"));
    (
        row["time_of_day"].as_str().map(str::to_owned),
        row["manual"] == true,
        row,
    )
}

/// `(bib, rank, elapsed)` of each results row.
async fn ranking(app: &TestApp, query: &str) -> Vec<(String, Value, Value)> {
    let (status, page) = app.get(&format!("/api/v1/results?{query}")).await;
    assert_eq!(status, 200, "{page}");
    page["results"]
        .as_array()
        .unwrap_or_else(|| panic!("{page}"))
        .iter()
        .map(|r| {
            (
                r["bib"].as_str().unwrap_or_default().to_owned(),
                r["rank"].clone(),
                r["elapsed"].clone(),
            )
        })
        .collect()
}

/// Warm-up on the start mat: runner 101 of wave A (gun 09:00) jogs over the start mat at
/// 08:50 and 08:55, before the gun; those reads are ignored. Crossing at the start the reader
/// sees them at 09:00:40 and 09:00:41: the last read in the start window counts (09:00:41),
/// the earlier one is kept without effect.
#[tokio::test]
async fn warm_up_reads_before_the_gun_are_ignored_and_the_last_start_read_counts() {
    let app = app().await;
    wave(&app, "A", "09:00:00.000").await;
    runner(&app, "101", Some("A"), None).await;
    let answer = upload(
        &app,
        vec![
            by_bib("s1", "start", "101", "08:50:00.000"),
            by_bib("s2", "start", "101", "08:55:00.000"),
            by_bib("s3", "start", "101", "09:00:40.000"),
            by_bib("s4", "start", "101", "09:00:41.000"),
        ],
    )
    .await;
    assert_eq!(
        answer,
        outcomes(&[
            ("s1", "ignored"),
            ("s2", "ignored"),
            ("s3", "kept"),
            ("s4", "applied")
        ])
    );
    assert_time(&app, "101", "start", Some("09:00:41.000")).await;
    // Forty minutes after the gun is outside the 30-minute start window: ignored.
    let late = upload(&app, vec![by_bib("s5", "start", "101", "09:40:00.000")]).await;
    assert_eq!(late, outcomes(&[("s5", "ignored")]));
    assert_time(&app, "101", "start", Some("09:00:41.000")).await;
}

/// The finish mat lies beside the start: runner 102 is seen there at 09:00:35 as they start
/// (35 s after their start read at 09:00:30, under the 1-minute minimum): ignored. Their real
/// finish at 09:41:10 is applied, and a later read of the same crossing is kept.
#[tokio::test]
async fn a_finish_read_at_the_start_is_ignored() {
    let app = app().await;
    wave(&app, "A", "09:00:00.000").await;
    runner(&app, "102", Some("A"), None).await;
    let answer = upload(
        &app,
        vec![
            by_bib("a", "start", "102", "09:00:30.000"),
            by_bib("b", "finish", "102", "09:00:35.000"),
            by_bib("c", "finish", "102", "09:41:10.000"),
            by_bib("d", "finish", "102", "09:41:10.400"),
        ],
    )
    .await;
    assert_eq!(
        answer,
        outcomes(&[
            ("a", "applied"),
            ("b", "ignored"),
            ("c", "applied"),
            ("d", "kept")
        ])
    );
    let (finish, manual, row) = time_at(&app, "102", "finish").await;
    assert_eq!((finish.as_deref(), manual), (Some("09:41:10.000"), false));
    assert_eq!(row["net"], "00:40:40.000");
    assert_eq!(row["gun"], "00:41:10.000");
}

/// The main reader at the finish sends runner 103's crossing; the backup reader re-sends the
/// same crossing under its own ids a few hundred ms later (kept: the first read counts), then
/// re-sends the main reader's own ids (duplicate). Then the timer uploads the whole first
/// batch a second time: every read is a duplicate and nothing changes.
#[tokio::test]
async fn backup_reader_and_a_batch_uploaded_twice() {
    let app = app().await;
    runner(&app, "103", None, Some("E2801160")).await;
    let first = vec![
        by_chip("main-1", "start", "E2801160", "10:00:05.000"),
        by_chip("main-2", "finish", "E2801160", "10:45:00.000"),
    ];
    assert_eq!(
        upload(&app, first.clone()).await,
        outcomes(&[("main-1", "applied"), ("main-2", "applied")])
    );
    let backup = vec![
        by_chip("backup-1", "finish", "E2801160", "10:45:00.300"),
        by_chip("main-2", "finish", "E2801160", "10:45:00.000"),
    ];
    assert_eq!(
        upload(&app, backup).await,
        outcomes(&[("backup-1", "kept"), ("main-2", "duplicate")])
    );
    let before = app.get("/api/v1/competitors/103/times").await.1;
    let audit_before = app.get("/api/v1/audit").await.1["total"].clone();
    assert_eq!(
        upload(&app, first).await,
        outcomes(&[("main-1", "duplicate"), ("main-2", "duplicate")])
    );
    assert_eq!(app.get("/api/v1/competitors/103/times").await.1, before);
    assert_eq!(app.get("/api/v1/audit").await.1["total"], audit_before);
    // The raw reads are all there, once each, in order received; the first finish counts.
    let reads = app.get("/api/v1/competitors/103/passings").await.1;
    let listed: Vec<(&str, bool)> = reads["passings"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| (r["id"].as_str().unwrap_or(""), r["counts"] == true))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        listed,
        [("main-1", true), ("main-2", true), ("backup-1", false)]
    );
    assert_eq!(reads["passings"][1]["chip"], "E2801160");
    assert_eq!(reads["passings"][1]["source"], "mat-1");
}

/// A competitor's reads are listed whole, in order received, each saying whether it is the
/// one its checkpoint's time comes from, read with their times in one step: with or without
/// the competitor's times index entry alike, past a thousand reads (a mat that read one chip
/// all day), and with a manual finish time, which no read counts for.
#[tokio::test]
async fn a_competitors_reads_are_listed_whole_with_what_counts() {
    use redis::AsyncCommands;
    let app = app().await;
    runner(&app, "105", None, None).await;
    let many: Vec<Value> = (0..1000)
        .map(|k| {
            let time = format!("10:10:{:02}.{:03}", k / 1000, k % 1000);
            by_bib(&format!("r{k:04}"), "split1", "105", &time)
        })
        .collect();
    upload(&app, many).await;
    upload(
        &app,
        vec![
            by_bib("s", "start", "105", "10:00:00.000"),
            by_bib("f", "finish", "105", "10:40:00.000"),
            by_bib("g", "finish", "105", "10:40:01.000"),
        ],
    )
    .await;
    // Typed in by hand, equal to the read that counted: now no read counts there.
    app.set_time("105", "finish", "10:40:00.000").await;
    let listing = |view: &Value| -> Vec<(String, bool)> {
        view["passings"]
            .as_array()
            .unwrap_or_else(|| panic!("{view}"))
            .iter()
            .map(|r| {
                (
                    r["id"].as_str().unwrap_or_default().to_owned(),
                    r["counts"] == true,
                )
            })
            .collect()
    };
    let (status, view) = app.get("/api/v1/competitors/105/passings").await;
    assert_eq!(status, 200, "{view}");
    let listed = listing(&view);
    let mut expected: Vec<(String, bool)> =
        (0..1000).map(|k| (format!("r{k:04}"), k == 0)).collect();
    expected.extend([("s".into(), true), ("f".into(), false), ("g".into(), false)]);
    assert_eq!(listed, expected);
    // The same read the long way, without the entry.
    let mut conn = app.redis.connection().await;
    let removed: u64 = conn
        .hdel(keys::times_index(&race().checkpoints), "105")
        .await
        .expect("hdel");
    assert_eq!(removed, 1, "the manual time wrote an entry");
    assert_eq!(app.get("/api/v1/competitors/105/passings").await.1, view);
    assert_error(
        &app.get("/api/v1/competitors/999/passings").await,
        404,
        "999",
    );
}

/// Runner 104 has a start read at 09:00:10 and a finish at 09:50:00 (net 49:50). A start read
/// that arrives late from another device, 09:01:00, is the last in the window: it moves the
/// start, and the net time and the ranking follow (49:00).
#[tokio::test]
async fn a_late_start_read_moves_the_start_and_rederives() {
    let app = app().await;
    wave(&app, "A", "09:00:00.000").await;
    runner(&app, "104", Some("A"), None).await;
    runner(&app, "105", Some("A"), None).await;
    upload(
        &app,
        vec![
            by_bib("1", "start", "104", "09:00:10.000"),
            by_bib("2", "finish", "104", "09:50:00.000"),
            by_bib("3", "start", "105", "09:00:00.000"),
            by_bib("4", "finish", "105", "09:49:30.000"),
        ],
    )
    .await;
    let rows = ranking(&app, "").await;
    assert_eq!(rows[0], ("105".into(), json!(1), json!("00:49:30.000")));
    assert_eq!(rows[1], ("104".into(), json!(2), json!("00:49:50.000")));

    assert_eq!(
        upload(&app, vec![by_bib("5", "start", "104", "09:01:00.000")]).await,
        outcomes(&[("5", "applied")])
    );
    let rows = ranking(&app, "").await;
    assert_eq!(rows[0], ("104".into(), json!(1), json!("00:49:00.000")));
    assert_eq!(rows[1], ("105".into(), json!(2), json!("00:49:30.000")));
}

/// The finish reads give runner 106 10:30:00; the referee decides 10:29:50 (a manual time,
/// through v1): it overrides, and later reads are kept without effect. Cleared, the time falls
/// back to what the reads give. The legacy `/settimes` is a manual time too. Each manual
/// change is in the audit trail with before and after.
#[tokio::test]
async fn a_manual_override_and_its_removal() {
    let app = app().await;
    runner(&app, "106", None, None).await;
    upload(
        &app,
        vec![
            by_bib("r1", "start", "106", "10:00:00.000"),
            by_bib("r2", "finish", "106", "10:30:00.000"),
        ],
    )
    .await;
    app.set_time("106", "finish", "10:29:50.000").await;
    assert_time(&app, "106", "finish", Some("10:29:50.000")).await;
    assert!(time_at(&app, "106", "finish").await.1, "manual");
    assert_eq!(
        upload(&app, vec![by_bib("r3", "finish", "106", "10:28:00.000")]).await,
        outcomes(&[("r3", "kept")])
    );
    assert_eq!(ranking(&app, "").await[0].2, json!("00:29:50.000"));

    assert_eq!(
        app.delete("/api/v1/competitors/106/times/finish").await.0,
        204
    );
    // Back to the reads: the first at least a minute after the start is now r3 (10:28).
    let (finish, manual, _) = time_at(&app, "106", "finish").await;
    assert_eq!((finish.as_deref(), manual), (Some("10:28:00.000"), false));

    let legacy = json!({"bib": 106, "settimes": {"start": -1, "split1": -1, "split2": -1,
        "finish": "10:31:00:000"}});
    assert_eq!(app.post("/settimes", legacy).await.0, 201);
    assert_eq!(
        time_at(&app, "106", "finish").await,
        (
            Some("10:31:00.000".into()),
            true,
            time_at(&app, "106", "finish").await.2
        )
    );

    let audit = app.get("/api/v1/audit?bib=106").await.1;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["action"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        actions,
        ["time.set", "time.cleared", "time.set", "competitor.created"]
    );
    let cleared = &audit["entries"][1];
    assert_eq!(cleared["before"], json!({"finish": "10:29:50.000"}));
    assert_eq!(cleared["after"], json!({"finish": "10:28:00.000"}));
    assert_eq!(cleared["actor"], "anonymous");
}

/// Two waves: A (gun 09:00) and B (gun 09:10). Runner 201 (A) starts 09:00:20 and finishes
/// 09:40:00; runner 202 (B) starts 09:10:05 and finishes 09:49:00; runner 203 (B) has no start
/// read (the mat missed them) and finishes 09:50:00: their net time falls back to gun time.
/// By net: 202 (38:55), 201 (39:40), 203 (40:00). By gun: 202 (39:00), 201 (40:00), 203
/// (40:00), tied. Every row carries both times.
#[tokio::test]
async fn gun_and_net_rankings_with_several_waves() {
    let app = app().await;
    wave(&app, "A", "09:00:00.000").await;
    wave(&app, "B", "09:10:00.000").await;
    runner(&app, "201", Some("A"), None).await;
    runner(&app, "202", Some("B"), None).await;
    runner(&app, "203", Some("B"), None).await;
    upload(
        &app,
        vec![
            by_bib("1", "start", "201", "09:00:20.000"),
            by_bib("2", "finish", "201", "09:40:00.000"),
            by_bib("3", "start", "202", "09:10:05.000"),
            by_bib("4", "finish", "202", "09:49:00.000"),
            by_bib("5", "finish", "203", "09:50:00.000"),
        ],
    )
    .await;
    assert_eq!(
        ranking(&app, "").await,
        [
            ("202".into(), json!(1), json!("00:38:55.000")),
            ("201".into(), json!(2), json!("00:39:40.000")),
            ("203".into(), json!(3), json!("00:40:00.000")),
        ]
    );
    assert_eq!(
        ranking(&app, "by=gun").await,
        [
            ("202".into(), json!(1), json!("00:39:00.000")),
            ("201".into(), json!(2), json!("00:40:00.000")),
            ("203".into(), json!(2), json!("00:40:00.000")),
        ]
    );
    let page = app.get("/api/v1/results?by=net&category=men30").await.1;
    let row = &page["results"][0];
    assert_eq!(
        (&row["net"], &row["net_ms"], &row["gun"], &row["gun_ms"]),
        (
            &json!("00:38:55.000"),
            &json!(2_335_000),
            &json!("00:39:00.000"),
            &json!(2_340_000)
        )
    );
    assert_eq!(page["by"], "net");
    // A split ranking by gun time: nobody has a split time, all unranked.
    let split = ranking(&app, "by=gun&checkpoint=split1").await;
    assert!(split.iter().all(|(_, rank, _)| rank.is_null()), "{split:?}");
    assert_error(&app.get("/api/v1/results?by=chip").await, 400, "");
}

/// The times route's rank at each checkpoint is the competitor's place in the whole field's
/// net ranking there, whether the route read them from their times index entry or, without
/// one, from their keys: runners of two waves with and without a start read (net falls back
/// to the gun), a runner without wave or start read (no net time, no rank), manual times, a
/// tie, a DSQ, and a wave's gun time corrected afterwards. Each view is the same once the
/// entry is gone, and each rank is what the rank set itself gives.
#[tokio::test]
async fn the_times_routes_ranks_are_the_rankings_with_or_without_the_index() {
    use redis::AsyncCommands;
    let app = app().await;
    wave(&app, "A", "09:00:00.000").await;
    wave(&app, "B", "09:10:00.000").await;
    for (bib, wave) in [
        ("701", Some("A")),
        ("702", Some("B")),
        ("703", Some("B")),
        ("704", None),
        ("705", Some("A")),
        ("706", None),
    ] {
        runner(&app, bib, wave, None).await;
    }
    upload(
        &app,
        vec![
            by_bib("s1", "start", "701", "09:00:20.000"),
            by_bib("t1", "split1", "701", "09:20:00.000"),
            by_bib("f1", "finish", "701", "09:40:00.000"),
            by_bib("s2", "start", "702", "09:10:05.000"),
            by_bib("t2", "split1", "702", "09:29:40.000"),
            by_bib("f2", "finish", "702", "09:49:00.000"),
            // 703 has no start read: 39:40 from B's gun at split1 and 40:00 at the finish.
            by_bib("t3", "split1", "703", "09:29:40.000"),
            by_bib("f3", "finish", "703", "09:50:00.000"),
            by_bib("s5", "start", "705", "09:00:10.000"),
            by_bib("f5", "finish", "705", "09:30:00.000"),
            by_bib("f6", "finish", "706", "09:45:00.000"),
        ],
    )
    .await;
    // 704 is timed by hand, tying 701 at the finish (39:40).
    app.times(
        "704",
        json!({"start": "09:05:00.000", "finish": "09:44:40.000"}),
    )
    .await;
    app.put("/api/v1/competitors/705/status", json!({"status": "DSQ"}))
        .await;
    let checkpoints = race().checkpoints;
    let index = keys::times_index(&checkpoints);
    let mut conn = app.redis.connection().await;
    let mut from_entries = 0;
    for round in ["as uploaded", "B's gun corrected"] {
        for bib in ["701", "702", "703", "704", "705", "706"] {
            let path = format!("/api/v1/competitors/{bib}/times");
            let (status, view) = app.get(&path).await;
            assert_eq!(status, 200, "{view}");
            let ranks: Vec<Value> = (0..checkpoints.len())
                .map(|i| view["checkpoints"][i]["rank"].clone())
                .collect();
            let mut expected = vec![Value::Null];
            for checkpoint in &checkpoints[1..] {
                let set = keys::rank(checkpoint, Scope::All, false);
                let score: Option<f64> = conn.zscore(&set, bib).await.expect("zscore");
                expected.push(match score {
                    Some(score) if score < timing_service::store::UNTIMED as f64 => {
                        let ahead: u64 = conn
                            .zcount(&set, "-inf", format!("({score}"))
                            .await
                            .expect("zcount");
                        json!(ahead + 1)
                    }
                    _ => Value::Null,
                });
            }
            assert_eq!(ranks, expected, "{round}: {bib} {view}");
            let removed: u64 = conn.hdel(&index, bib).await.expect("hdel");
            from_entries += removed;
            assert_eq!(
                app.get(&path).await.1,
                view,
                "{round}: {bib} without its entry"
            );
        }
        assert_eq!(wave(&app, "B", "09:09:00.000").await, 200);
        // Entries again for the next round: each competitor's next read writes theirs.
        for bib in ["701", "702", "703", "704", "705", "706"] {
            upload(
                &app,
                vec![by_bib(&format!("k{bib}"), "split2", bib, "09:35:00.000")],
            )
            .await;
        }
    }
    // 8 views of 12 were read from an entry: a start read drops the competitor's entry until
    // their next read (701 and 702 in the first round), a status drops it (705).
    assert_eq!(from_entries, 8, "views read from an entry");
    // The route's ranks, spelled out for the corrected gun: at the finish 705 is out, 701
    // and 704 tie at 39:40, 702 ran 38:55, 703 41:00 from B's corrected gun, 706 has no rank.
    let finish_rank = |view: &Value| view["checkpoints"][3]["rank"].clone();
    let mut finish = Vec::new();
    for bib in ["701", "702", "703", "704", "705", "706"] {
        finish.push(finish_rank(
            &app.get(&format!("/api/v1/competitors/{bib}/times")).await.1,
        ));
    }
    assert_eq!(
        finish,
        [
            json!(2),
            json!(1),
            json!(4),
            json!(2),
            Value::Null,
            Value::Null
        ]
    );
}

/// Wave B's gun was fired at 09:10 but recorded as 09:20 by mistake; runner 302 (B) shows a
/// gun time ten minutes too short and ranks first by gun time. Correcting the wave's gun time
/// re-ranks its competitors at once, and is audited.
#[tokio::test]
async fn a_changed_wave_gun_time_reranks_at_once() {
    let app = app().await;
    wave(&app, "A", "09:00:00.000").await;
    wave(&app, "B", "09:20:00.000").await;
    runner(&app, "301", Some("A"), None).await;
    runner(&app, "302", Some("B"), None).await;
    upload(
        &app,
        vec![
            by_bib("1", "finish", "301", "09:40:00.000"),
            by_bib("2", "finish", "302", "09:55:00.000"),
        ],
    )
    .await;
    let rows = ranking(&app, "by=gun").await;
    assert_eq!(rows[0], ("302".into(), json!(1), json!("00:35:00.000")));
    assert_eq!(wave(&app, "B", "09:10:00.000").await, 200);
    assert_eq!(
        ranking(&app, "by=gun").await,
        [
            ("301".into(), json!(1), json!("00:40:00.000")),
            ("302".into(), json!(2), json!("00:45:00.000")),
        ]
    );
    let waves = app.get("/api/v1/waves").await.1;
    assert_eq!(
        waves["waves"][1],
        json!({"name": "B", "start": "09:10:00.000", "start_ms": 33_000_000, "competitors": 1})
    );
    let audit = app.get("/api/v1/audit?limit=1").await.1;
    assert_eq!(audit["entries"][0]["action"], "wave.set");
    assert_eq!(
        audit["entries"][0]["before"],
        json!({"wave": "B", "start": "09:20:00.000"})
    );
    assert_eq!(
        audit["entries"][0]["after"],
        json!({"wave": "B", "start": "09:10:00.000"})
    );
    // A wave with competitors cannot go; an empty one can.
    assert_error(&app.delete("/api/v1/waves/B").await, 409, "1 competitor");
    wave(&app, "C", "10:00:00.000").await;
    assert_eq!(app.delete("/api/v1/waves/C").await.0, 204);
    assert_error(&app.delete("/api/v1/waves/C").await, 404, "no wave");
}

/// A chip nobody has yet (a runner who swapped chips at the desk) is read at the finish:
/// unmatched, stored and listed. Giving that chip to runner 401 afterwards does not rewrite
/// results by itself; the explicit assign does, and it is audited.
#[tokio::test]
async fn an_unmatched_chip_then_assigned() {
    let app = app().await;
    runner(&app, "401", None, Some("CHIP-OLD")).await;
    upload(
        &app,
        vec![by_chip("st", "start", "CHIP-OLD", "10:00:00.000")],
    )
    .await;
    assert_eq!(
        upload(
            &app,
            vec![by_chip("fx", "finish", "CHIP-NEW", "10:50:00.000")]
        )
        .await,
        outcomes(&[("fx", "unmatched")])
    );
    let unmatched = app.get("/api/v1/passings?unmatched=true").await.1;
    assert_eq!(unmatched["total"], 1);
    assert_eq!(unmatched["passings"][0]["id"], "fx");
    assert_eq!(unmatched["passings"][0]["chip"], "CHIP-NEW");

    let (status, _) = app
        .patch("/api/v1/competitors/401", json!({"chip": "CHIP-NEW"}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(time_at(&app, "401", "finish").await.0, None);

    let (status, answer) = app
        .post("/api/v1/passings/fx/assign", json!({"bib": "401"}))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["outcome"], "applied");
    assert_time(&app, "401", "finish", Some("10:50:00.000")).await;
    assert_eq!(
        app.get("/api/v1/passings?unmatched=true").await.1["total"],
        0
    );
    let audit = app.get("/api/v1/audit?bib=401&limit=1").await.1;
    assert_eq!(audit["entries"][0]["action"], "passing.assigned");
    assert_eq!(audit["entries"][0]["after"]["passing"], "fx");
    // Twice is refused; unknown reads and competitors too.
    assert_error(
        &app.post("/api/v1/passings/fx/assign", json!({"bib": "401"}))
            .await,
        409,
        "not unmatched",
    );
    assert_error(
        &app.post("/api/v1/passings/nope/assign", json!({"bib": "401"}))
            .await,
        404,
        "no read",
    );
    // Later reads of the new chip match directly.
    assert_eq!(
        upload(
            &app,
            vec![by_chip("fy", "finish", "CHIP-NEW", "10:50:02.000")]
        )
        .await,
        outcomes(&[("fy", "kept")])
    );
}

/// Runner 501 did not start (DNS) and runner 502 was disqualified (DSQ): their reads are kept
/// without effect and they stay out of the ranking. Runner 503 (DNF) has their split read
/// applied.
#[tokio::test]
async fn reads_of_dns_and_dsq_competitors_are_kept_without_effect() {
    let app = app().await;
    for bib in ["501", "502", "503"] {
        runner(&app, bib, None, None).await;
    }
    for (bib, status) in [("501", "DNS"), ("502", "DSQ"), ("503", "DNF")] {
        app.set_status(bib, json!(status)).await;
    }
    assert_eq!(
        upload(
            &app,
            vec![
                by_bib("a", "start", "501", "10:00:00.000"),
                by_bib("b", "finish", "502", "10:40:00.000"),
                by_bib("c", "start", "503", "10:00:00.000"),
                by_bib("d", "split1", "503", "10:10:00.000"),
            ]
        )
        .await,
        outcomes(&[
            ("a", "kept"),
            ("b", "kept"),
            ("c", "applied"),
            ("d", "applied")
        ])
    );
    assert_eq!(time_at(&app, "501", "start").await.0, None);
    assert_eq!(time_at(&app, "502", "finish").await.0, None);
    let page = app.get("/api/v1/results").await.1;
    let statuses: Vec<(&str, &str)> = page["results"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| {
                    (
                        r["bib"].as_str().unwrap_or(""),
                        r["status"].as_str().unwrap_or(""),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(statuses, [("503", "DNF"), ("502", "DSQ"), ("501", "DNS")]);
    // Back in the race (the DNS was a mistake): the kept start read now counts.
    app.set_status("501", Value::Null).await;
    assert_time(&app, "501", "start", Some("10:00:00.000")).await;
}

/// Bad input: a malformed batch is refused whole (4xx, nothing stored); a wrong read is
/// `rejected` with a reason while the rest of its batch is applied.
#[tokio::test]
async fn bad_batches_and_bad_reads() {
    let app = app().await;
    runner(&app, "601", None, None).await;
    let too_many: Vec<Value> = (0..1001)
        .map(|i| by_bib(&format!("r{i}"), "finish", "601", "10:00:00.000"))
        .collect();
    assert_error(
        &app.post("/api/v1/passings", json!({ "passings": too_many }))
            .await,
        422,
        "at most 1000",
    );
    let huge = "x".repeat(600 * 1024);
    assert_error(
        &app.post("/api/v1/passings", json!({ "passings": [], "pad": huge }))
            .await,
        413,
        "limit",
    );
    assert_error(
        &app.post("/api/v1/passings", json!({"reads": []})).await,
        422,
        "unknown field",
    );
    assert_error(
        &app.post("/api/v1/passings", json!([])).await,
        422,
        "invalid body",
    );
    let (status, body) = app
        .post(
            "/api/v1/passings",
            json!({"passings": [
                {"checkpoint": "finish", "bib": "601", "time": "10:00:00.000"},
                {"id": "both", "checkpoint": "finish", "bib": "601", "chip": "C1", "time": "10:00:00.000"},
                {"id": "neither", "checkpoint": "finish", "time": "10:00:00.000"},
                {"id": "where", "checkpoint": "km5", "bib": "601", "time": "10:00:00.000"},
                {"id": "when", "checkpoint": "finish", "bib": "601", "time": "10:00"},
                {"id": "bad id!", "checkpoint": "finish", "bib": "601", "time": "10:00:00.000"},
                {"id": "good", "checkpoint": "start", "bib": "601", "time": "09:00:00.000"},
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().cloned().unwrap_or_default();
    let reasons: Vec<(&str, &str)> = results
        .iter()
        .map(|r| {
            (
                r["outcome"].as_str().unwrap_or(""),
                r["reason"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(reasons[0], ("rejected", "missing `id`"));
    assert_eq!(reasons[1], ("rejected", "give `bib` or `chip`, not both"));
    assert_eq!(reasons[2], ("rejected", "missing `bib` or `chip`"));
    assert!(
        reasons[3].1.contains("unknown checkpoint `km5`"),
        "{reasons:?}"
    );
    assert!(reasons[4].1.contains("invalid time `10:00`"), "{reasons:?}");
    assert!(reasons[5].1.contains("invalid id"), "{reasons:?}");
    assert_eq!(reasons[6], ("applied", ""));
    assert_eq!(results[1]["id"], "both");
    // Whole results: a read without a valid id has a null id; an applied read a null reason.
    assert_eq!(
        results[0],
        json!({"id": null, "outcome": "rejected", "reason": "missing `id`"})
    );
    assert_eq!(results[5]["id"], Value::Null, "an invalid id is not echoed");
    assert_eq!(
        results[6],
        json!({"id": "good", "outcome": "applied", "reason": null})
    );
    // The read is stored as received, its time in full, with no source as null, and when it
    // arrived.
    let listed = app.get("/api/v1/competitors/601/passings").await.1;
    let stored = &listed["passings"][0];
    assert!(
        stored["received_at"]
            .as_str()
            .is_some_and(|at| at.ends_with('Z') && at.len() == 24),
        "{stored}"
    );
    let mut stored = stored.clone();
    stored["received_at"] = json!("(checked above)");
    assert_eq!(
        stored,
        json!({"bib": "601", "checkpoint": "start", "counts": true, "id": "good",
            "received_at": "(checked above)", "source": null, "time": "09:00:00.000"})
    );
    // A competitor in a wave that does not exist is refused, and nothing is stored.
    let body = json!({"bib": "602", "first_name": "A", "last_name": "B", "gender": "male",
        "country": "FI", "category": "men30", "wave": "Z"});
    assert_error(
        &app.post("/api/v1/competitors", body).await,
        422,
        "unknown wave `Z`",
    );
    assert_eq!(app.get("/api/v1/competitors/602").await.0, 404);
}

/// Posts `body` to `/api/v1/passings` as it is (JSON no serializer would write).
async fn post_raw(app: &TestApp, body: &'static str) -> (u16, Value) {
    app.send(
        app.request(Method::POST, "/api/v1/passings")
            .header("content-type", "application/json")
            .body(body),
    )
    .await
}

/// The batch is parsed in one pass by its own types: what a read holds instead of a string,
/// or instead of an object, is named in its reason; texts with escapes are read as text;
/// a repeated key anywhere refuses the whole batch, as in every other body.
#[tokio::test]
async fn reads_of_every_shape_are_answered_one_by_one() {
    let app = app().await;
    runner(&app, "601", None, None).await;
    let body = r#"{"passings": [
        42,
        ["a"],
        {"id": "typed", "checkpoint": "finish", "bib": "601", "time": 36000000},
        {"id": "nested", "checkpoint": "finish", "bib": "601", "time": "10:00:00.000", "source": {"mat": 1}},
        {"id": "extra", "checkpoint": "finish", "bib": "601", "time": "10:00:00.000", "zz": 1, "mat": [1]},
        {"id": "esc\u0061ped", "checkpoint": "fin\u0069sh", "bib": 601, "time": "10:00:00.000", "source": "mat \"1\""}
    ]}"#;
    let answer = post_raw(&app, body).await;
    assert_eq!(answer.0, 200, "{}", answer.1);
    let reasons: Vec<(String, String, String)> = answer.1["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap_or_default().to_owned(),
                r["outcome"].as_str().unwrap_or_default().to_owned(),
                r["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("", "rejected", "a read must be an object, got 42"),
        ("", "rejected", r#"a read must be an object, got ["a"]"#),
        ("typed", "rejected", "`time` must be a string, got 36000000"),
        (
            "nested",
            "rejected",
            r#"`source` must be a string, got {"mat":1}"#,
        ),
        (
            "extra",
            "rejected",
            "unknown field `mat`; a read has id, checkpoint, bib or chip, time, source",
        ),
        ("escaped", "applied", ""),
    ];
    let expected: Vec<(String, String, String)> = expected
        .iter()
        .map(|(a, b, c)| ((*a).to_owned(), (*b).to_owned(), (*c).to_owned()))
        .collect();
    assert_eq!(reasons, expected);
    let listed = app.get("/api/v1/competitors/601/passings").await.1;
    assert_eq!(listed["passings"][0]["source"], r#"mat "1""#);
    assert_eq!(listed["passings"][0]["checkpoint"], "finish");
    // Repeated keys: in a read, in what a read holds, in an unknown field, and the batch's own.
    for body in [
        r#"{"passings": [{"id": "a", "id": "b", "checkpoint": "finish", "bib": "601", "time": "10:00:00.000"}]}"#,
        r#"{"passings": [{"id": "a", "checkpoint": "finish", "bib": "601", "time": "10:00:00.000", "source": {"k": 1, "k": 2}}]}"#,
        r#"{"passings": [{"id": "a", "checkpoint": "finish", "bib": "601", "time": "10:00:00.000", "x": 1, "x": 2}]}"#,
        r#"{"passings": [{"id": "a", "checkpoint": "finish", "bib": "601", "time": "10:00:00.000", "x": {"k": 1, "k": 2}}]}"#,
        r#"{"passings": [], "passings": []}"#,
    ] {
        let answer = post_raw(&app, body).await;
        assert_error(&answer, 422, "duplicate key");
    }
    assert_eq!(
        app.get("/api/v1/competitors/601/passings").await.1["passings"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    // Not JSON at all, and trailing bytes after it.
    for body in [r#"{"passings": [}"#, r#"{"passings": []} x"#] {
        let answer = post_raw(&app, body).await;
        assert_error(&answer, 400, "malformed JSON");
    }
}

/// Two timers with their own named tokens: the audit trail tells them apart; the single
/// `TIMING_API_TOKEN` (as the provisioner injects it) is the credential `default`.
#[tokio::test]
async fn named_tokens_are_the_audit_actor() {
    let redis = Redis::start();
    let credentials = Credentials::parse(
        Some("single-token"),
        Some("timer-anna:tok-a,timer-ben:tok-b"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let state = AppState::new(&redis.url(), race(), None)
        .expect("state")
        .with_credentials(credentials);
    let mut app = spawn_app_on(redis, state).await;
    app.token = Some("tok-a".into());
    runner(&app, "701", None, None).await;
    app.token = Some("tok-b".into());
    app.times("701", json!({"start": "10:00:00.000"})).await;
    app.token = Some("single-token".into());
    app.set_status("701", json!("DNF")).await;
    app.token = Some("wrong".into());
    assert_eq!(
        app.put("/api/v1/competitors/701/status", json!({"status": null}))
            .await
            .0,
        401
    );
    let audit = app.get("/api/v1/audit?bib=701").await.1;
    let who: Vec<(&str, &str)> = audit["entries"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    (
                        e["action"].as_str().unwrap_or(""),
                        e["actor"].as_str().unwrap_or(""),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        who,
        [
            ("status.set", "default"),
            ("time.set", "timer-ben"),
            ("competitor.created", "timer-anna")
        ]
    );
    let created = &audit["entries"][2];
    assert_eq!(created["before"], Value::Null);
    assert_eq!(created["after"]["last_name"], "Last701");
    assert!(
        created["at"]
            .as_str()
            .is_some_and(|at| at.ends_with('Z') && at.len() == 24),
        "{created}"
    );
}

/// Times of every checkpoint of `bib` as `(checkpoint, time of day, manual)`.
async fn all_times(app: &TestApp, bib: &str) -> Vec<(String, Value, Value)> {
    let (status, view) = app.get(&format!("/api/v1/competitors/{bib}/times")).await;
    assert_eq!(status, 200, "{view}");
    view["checkpoints"]
        .as_array()
        .unwrap_or_else(|| panic!("{view}"))
        .iter()
        .map(|r| {
            (
                r["checkpoint"].as_str().unwrap_or_default().to_owned(),
                r["time_of_day"].clone(),
                r["manual"].clone(),
            )
        })
        .collect()
}

/// Batches of reads at the splits and the finish are applied without reading a competitor's
/// earlier reads again (store/timing.lua, apply_later_reads): after each of a series of mixed
/// batches (earlier and later reads, reads before the minimum time, repeated ids, a start
/// read now and then, a manual time, a competitor without a wave), the times are exactly
/// those a derivation from all the reads gives (forced by setting and clearing a status),
/// and at most the read that counts at a checkpoint is `applied`.
#[tokio::test]
async fn batches_give_the_times_of_a_derivation_from_all_reads() {
    let app = app().await;
    wave(&app, "A", "09:00:00.000").await;
    runner(&app, "1", Some("A"), None).await;
    runner(&app, "2", None, None).await;
    runner(&app, "3", Some("A"), Some("C3")).await;
    app.set_time("3", "split2", "09:30:00.000").await;
    let checkpoints = ["start", "split1", "split2", "finish"];
    let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move |n: u64| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % n
    };
    let mut previous: Vec<(&str, &str, String)> = Vec::new();
    let mut earlier: Vec<Vec<(String, Value, Value)>> = vec![Vec::new(); 3];
    for round in 0..8 {
        let mut reads = Vec::new();
        let mut expected = Vec::new();
        for k in 0..24 {
            // Start reads in a third of the rounds; otherwise splits and the finish only.
            let checkpoint = if round % 3 == 2 && k % 6 == 0 {
                0
            } else {
                1 + next(3) as usize
            };
            let bib = ["1", "2", "3"][next(3) as usize];
            let ms = 8 * 3_600_000 + 58 * 60_000 + next(90 * 60_000);
            let time = format_ms(ms, '.');
            // Now and then an id sent before (a duplicate).
            let id = if k % 7 == 3 && round > 0 {
                format!("r{}-{k}", round - 1)
            } else {
                format!("r{round}-{k}")
            };
            // Now and then the very time of a read sent before, under a new id (a tie: the
            // read received first counts).
            let (bib, checkpoint, time) = match previous.get(k) {
                Some((b, c, t)) if k % 5 == 1 => (*b, *c, t.clone()),
                _ => (bib, checkpoints[checkpoint], time),
            };
            let read = if bib == "3" && k % 2 == 0 {
                by_chip(&id, checkpoint, "C3", &time)
            } else {
                by_bib(&id, checkpoint, bib, &time)
            };
            reads.push(read);
            expected.push((id, bib, checkpoint, time));
        }
        previous = expected
            .iter()
            .map(|(_, b, c, t)| (*b, *c, t.clone()))
            .collect();
        // In three batches: the second and third find the competitors' times in the times
        // index the first wrote (store/timing.lua, INDEX); the status change of the previous
        // round dropped their entries.
        let mut before = earlier.clone();
        for (part, expected) in reads.chunks(8).zip(expected.chunks(8)) {
            let answers = upload(&app, part.to_vec()).await;
            assert_eq!(answers.len(), expected.len());
            let mut now = Vec::new();
            for bib in ["1", "2", "3"] {
                let times = all_times(&app, bib).await;
                // The one read of the batch applied at a checkpoint (if any) is the time
                // there now.
                for checkpoint in checkpoints {
                    let applied: Vec<&String> = answers
                        .iter()
                        .zip(expected)
                        .filter(|((_, o), (_, b, c, _))| {
                            o == "applied" && *b == bib && *c == checkpoint
                        })
                        .map(|(_, (_, _, _, time))| time)
                        .collect();
                    assert!(applied.len() <= 1, "round {round} bib {bib}: {applied:?}");
                    if let Some(time) = applied.first() {
                        let now = times.iter().find(|(c, _, _)| c == checkpoint);
                        assert_eq!(
                            now.map(|(_, t, _)| t.clone()),
                            Some(json!(time)),
                            "round {round} bib {bib} {checkpoint}"
                        );
                        // A read with the time already there is not the one that counts.
                        let was = before[bib_index(bib)]
                            .iter()
                            .find(|(c, _, _)| c == checkpoint)
                            .map(|(_, t, _)| t.clone());
                        assert_ne!(
                            was,
                            Some(json!(time)),
                            "round {round} bib {bib} {checkpoint}"
                        );
                    }
                }
                now.push(times);
            }
            before = now;
        }
        for bib in ["1", "2", "3"] {
            for status in [json!("DNF"), Value::Null] {
                app.set_status(bib, status).await;
            }
        }
        for (bib, times) in ["1", "2", "3"].iter().zip(&before) {
            assert_eq!(
                &all_times(&app, bib).await,
                times,
                "round {round} bib {bib}"
            );
        }
        earlier = before;
    }
}

/// Later batches find what a read needs of its competitor in the times index, one HMGET for
/// the whole call (store/timing.lua, INDEX): no times, manual times or status are read per
/// competitor. A manual time set or cleared writes the entry anew; every other write that
/// changes what an entry holds (a status, the competitor deleted and created again) drops it,
/// and the batch after reads the competitor the long way: the outcomes follow every change.
/// The same whether the service decides the reads from the entries (planned calls) or the
/// library does.
#[tokio::test]
async fn later_batches_read_the_times_index_which_every_change_keeps_exact() {
    times_index_scenario(true).await;
}

#[tokio::test]
async fn later_batches_read_the_times_index_in_the_library_too() {
    times_index_scenario(false).await;
}

async fn times_index_scenario(planned: bool) {
    let (app, _) = app_planning(planned).await;
    runner(&app, "301", None, None).await;
    let read = |id: &str, checkpoint: &str, time: &str| by_bib(id, checkpoint, "301", time);
    // A start read derives everything again (no entry); the next batch reads the long way
    // and writes the entry.
    assert_eq!(
        upload(&app, vec![read("a1", "start", "10:00:00.000")]).await,
        outcomes(&[("a1", "applied")])
    );
    assert_eq!(
        upload(&app, vec![read("b1", "split1", "10:20:00.000")]).await,
        outcomes(&[("b1", "applied")])
    );
    let before = long_way_calls(&app).await;
    let hmgets = command_calls(&app, "hmget").await;
    assert_eq!(
        upload(
            &app,
            vec![
                read("b2", "split1", "10:21:00.000"),
                read("c1", "finish", "10:40:00.000"),
            ]
        )
        .await,
        outcomes(&[("b2", "kept"), ("c1", "applied")])
    );
    assert_eq!(long_way_calls(&app).await, before);
    // The entry holds the gender, category and wave too: the read that changed a time did
    // not read the record. The library's call reads the ids and the index (two HMGETs); a
    // planned call has the service read the entry (the library wrote it, so this process
    // had not seen it) and the library check the ids and the entry (three).
    let calls = if planned { 3 } else { 2 };
    assert_eq!(command_calls(&app, "hmget").await, hmgets + calls);

    // A manual finish time, the one the reads gave (so only the manual flag changes): the
    // entry written with it says so, and the next reads there are kept.
    app.set_time("301", "finish", "10:40:00.000").await;
    let before = long_way_calls(&app).await;
    assert_eq!(
        upload(&app, vec![read("c2", "finish", "10:38:00.000")]).await,
        outcomes(&[("c2", "kept")])
    );
    assert_eq!(long_way_calls(&app).await, before);
    assert_eq!(
        upload(&app, vec![read("c3", "finish", "10:37:00.000")]).await,
        outcomes(&[("c3", "kept")])
    );
    assert_time(&app, "301", "finish", Some("10:40:00.000")).await;
    // Cleared: the first read at the finish counts again, and a later one is kept.
    assert_eq!(
        app.delete("/api/v1/competitors/301/times/finish").await.0,
        204
    );
    assert_time(&app, "301", "finish", Some("10:37:00.000")).await;
    let before = long_way_calls(&app).await;
    assert_eq!(
        upload(&app, vec![read("c4", "finish", "10:37:30.000")]).await,
        outcomes(&[("c4", "kept")])
    );
    assert_eq!(long_way_calls(&app).await, before);
    // A manual split time, set where no read is: the entry has it, manual, so an earlier read
    // there is kept.
    app.set_time("301", "split2", "10:31:00.000").await;
    let before = long_way_calls(&app).await;
    assert_eq!(
        upload(&app, vec![read("c5", "split2", "10:25:00.000")]).await,
        outcomes(&[("c5", "kept")])
    );
    assert_eq!(long_way_calls(&app).await, before);
    assert_eq!(
        app.delete("/api/v1/competitors/301/times/split2").await.0,
        204
    );
    assert_time(&app, "301", "split2", Some("10:25:00.000")).await;

    // DNS: a read is kept without effect; back in the race, it counts, and an earlier one
    // after it is applied.
    app.set_status("301", json!("DNS")).await;
    // A manual start time the reads gave: the entry it writes has the status, which the next
    // batch reads from it.
    app.set_time("301", "start", "10:00:00.000").await;
    let before = long_way_calls(&app).await;
    assert_eq!(
        upload(&app, vec![read("d1", "split2", "10:24:00.000")]).await,
        outcomes(&[("d1", "kept")])
    );
    assert_eq!(long_way_calls(&app).await, before);
    assert_time(&app, "301", "split2", Some("10:25:00.000")).await;
    app.set_status("301", Value::Null).await;
    assert_time(&app, "301", "split2", Some("10:24:00.000")).await;
    // The status dropped the entry: a kept read writes it again from the long way, without
    // the record (which that read did not need); the next read that changes a time reads the
    // record and adds it, and the one after that needs no record read.
    assert_eq!(
        upload(&app, vec![read("d1c", "split2", "10:26:00.000")]).await,
        outcomes(&[("d1c", "kept")])
    );
    assert_eq!(
        upload(&app, vec![read("d2", "split2", "10:23:00.000")]).await,
        outcomes(&[("d2", "applied")])
    );
    let hmgets = command_calls(&app, "hmget").await;
    assert_eq!(
        upload(&app, vec![read("d3", "split1", "10:19:00.000")]).await,
        outcomes(&[("d3", "applied")])
    );
    assert_eq!(command_calls(&app, "hmget").await, hmgets + calls);

    // Deleted and created again: none of the old times holds.
    assert_eq!(app.delete("/api/v1/competitors/301").await.0, 204);
    runner(&app, "301", None, None).await;
    assert_eq!(
        upload(&app, vec![read("e1", "finish", "10:45:00.000")]).await,
        outcomes(&[("e1", "applied")])
    );
    assert_eq!(time_at(&app, "301", "start").await.0, None);
    assert_time(&app, "301", "finish", Some("10:45:00.000")).await;
}

/// A start list imported: each new competitor gets the times index entry of one with no
/// times, so their first chip reads read nobody the long way, and the times come out as
/// usual.
#[tokio::test]
async fn an_imported_start_list_needs_no_long_way() {
    let app = app().await;
    let person = |bib: &str| {
        json!({"bib": bib, "first_name": "F", "last_name": "L", "gender": "male",
            "country": "Finland", "category": "men30", "wave": "", "chip": ""})
    };
    let (status, body) = app
        .post(
            "/api/v1/competitors/import",
            json!([person("401"), person("402")]),
        )
        .await;
    assert_eq!((status, &body["created"]), (200, &json!(2)), "{body}");
    let before = long_way_calls(&app).await;
    assert_eq!(
        upload(
            &app,
            vec![
                by_bib("i1", "split1", "401", "10:20:00.000"),
                by_bib("i2", "finish", "402", "10:40:00.000"),
                by_bib("i3", "finish", "401", "10:41:00.000"),
                by_bib("i4", "finish", "402", "10:40:02.000"),
            ]
        )
        .await,
        outcomes(&[
            ("i1", "applied"),
            ("i2", "applied"),
            ("i3", "applied"),
            ("i4", "kept")
        ])
    );
    assert_eq!(long_way_calls(&app).await, before);
    assert_time(&app, "401", "split1", Some("10:20:00.000")).await;
    assert_time(&app, "401", "finish", Some("10:41:00.000")).await;
    assert_time(&app, "402", "finish", Some("10:40:00.000")).await;
}

/// A competitor's times index entry holds their gender, category and wave, which place them
/// in the rankings when a read changes a time: a put that changes any of them drops it, and
/// the next reads rank them where they now are.
#[tokio::test]
async fn a_changed_gender_or_category_moves_the_next_reads_ranking() {
    let app = app().await;
    runner(&app, "501", None, None).await;
    let read = |id: &str, checkpoint: &str, time: &str| by_bib(id, checkpoint, "501", time);
    upload(&app, vec![read("s", "start", "10:00:00.000")]).await;
    // The long way once (the entry is written, with the record), then from the entry.
    upload(&app, vec![read("p1", "split1", "10:20:00.000")]).await;
    upload(&app, vec![read("p2", "split1", "10:19:00.000")]).await;
    let ranked = |scope: &'static str| {
        let app = &app;
        async move {
            let page = app
                .get(&format!("/api/v1/results?checkpoint=split1&{scope}"))
                .await
                .1;
            page["results"]
                .as_array()
                .map(|rows| {
                    rows.iter()
                        .filter(|r| r["bib"] == "501")
                        .map(|r| r["elapsed"].as_str().unwrap_or("").to_owned())
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        }
    };
    assert_eq!(ranked("gender=male").await, ["00:19:00.000"]);
    let (status, body) = app
        .patch(
            "/api/v1/competitors/501",
            json!({"gender": "female", "category": "women30"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        upload(&app, vec![read("p3", "split1", "10:18:00.000")]).await,
        outcomes(&[("p3", "applied")])
    );
    upload(&app, vec![read("p4", "split1", "10:17:00.000")]).await;
    assert_eq!(ranked("gender=female").await, ["00:17:00.000"]);
    assert_eq!(ranked("category=women30").await, ["00:17:00.000"]);
    assert!(ranked("gender=male").await.is_empty());
    assert!(ranked("category=men30").await.is_empty());
}

fn bib_index(bib: &str) -> usize {
    ["1", "2", "3"].iter().position(|b| *b == bib).unwrap_or(0)
}

/// A small seeded generator (xorshift64*), so that the race below is the same on every run.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Everything in a Redis, comparable across two: per key its type and content, with what
/// differs by when it was written left out (the raw reads' `received_at`, the audit entries'
/// `at`) and the change numbers (`live:seq`, from the clock at the first write): versions are
/// left out, and the sets they score are compared by their order.
async fn redis_contents(app: &TestApp) -> std::collections::BTreeMap<String, Value> {
    use redis::AsyncCommands;
    let mut conn = app.redis.connection().await;
    let without = |text: &str, field: &str| {
        let mut value: Value = serde_json::from_str(text).expect("JSON");
        value.as_object_mut().expect("object").remove(field);
        value
    };
    let keys: Vec<String> = conn.keys("*").await.expect("KEYS");
    let mut out = std::collections::BTreeMap::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .expect("TYPE");
        let numbered = key.starts_with("untimed:")
            || key.starts_with("competitors:country:")
            || key == "passings_unmatched";
        let value = match kind.as_str() {
            "string" if key == "live:seq" => continue,
            "string" => json!(conn.get::<_, String>(&key).await.expect("GET")),
            "hash" => {
                let fields: std::collections::BTreeMap<String, String> =
                    conn.hgetall(&key).await.expect("HGETALL");
                json!(
                    fields
                        .iter()
                        .map(|(f, v)| {
                            let v = match key.as_str() {
                                // (A call split between service and library takes a number
                                // more: the versions move on all the same.)
                                "live:version" => json!("a version"),
                                "passings" => without(v, "received_at"),
                                _ => json!(v),
                            };
                            (f.clone(), v)
                        })
                        .collect::<serde_json::Map<_, _>>()
                )
            }
            "list" => {
                let items: Vec<String> = conn.lrange(&key, 0, -1).await.expect("LRANGE");
                if key.starts_with("audit") {
                    json!(items.iter().map(|e| without(e, "at")).collect::<Vec<_>>())
                } else {
                    json!(items)
                }
            }
            "set" => {
                let mut members: Vec<String> = conn.smembers(&key).await.expect("SMEMBERS");
                members.sort();
                json!(members)
            }
            "zset" => {
                let members: Vec<(String, String)> =
                    conn.zrange_withscores(&key, 0, -1).await.expect("ZRANGE");
                json!(
                    members
                        .iter()
                        .map(|(m, s)| (
                            m.clone(),
                            if numbered {
                                json!("in order")
                            } else {
                                json!(s)
                            }
                        ))
                        .collect::<Vec<_>>()
                )
            }
            other => panic!("{key}: unexpected type {other}"),
        };
        out.insert(key, value);
    }
    out
}

/// The rules applied in the service (calls planned from the times index, `store/passings.rs`)
/// and by the library in Redis give the same answers and leave Redis the same. A seeded race of
/// 30 runners (in waves A and B or none, most with chips; some created one by one, which
/// writes no entry, the rest imported; some with manual times) gets 30 batches of 20 or 40 reads:
/// at every checkpoint, by bib and by chip, unknown bibs and chips, ids repeated from earlier
/// batches and within a batch. Between batches, the writes that drop entries or change what
/// the rules read: manual times set and cleared, statuses, the waves' gun times, a category,
/// an unmatched read assigned. Both services get the same requests; the answers are compared
/// after every batch and all of Redis after each quarter.
#[tokio::test]
async fn the_rules_applied_in_the_service_and_in_redis_agree() {
    let (planned, store) = app_planning(true).await;
    let (library, _) = app_planning(false).await;
    let apps = [&planned, &library];
    let mut dice = Dice(0x9E37_79B9_7F4A_7C15);
    let runners = 30;
    let chip = |n: u64| (!n.is_multiple_of(4)).then(|| format!("C{n}"));
    let wave_of = |n: u64| ["", "A", "B"][(n % 3) as usize];
    let time = |ms: u64| format_ms(ms, '.');
    for app in apps {
        wave(app, "A", "09:00:00.000").await;
        wave(app, "B", "09:10:00.000").await;
    }
    let person = |n: u64| {
        let male = n.is_multiple_of(2);
        json!({"bib": n.to_string(), "first_name": "F", "last_name": "L",
            "gender": if male { "male" } else { "female" }, "country": "Finland",
            "category": if male { "men30" } else { "women30" }, "wave": wave_of(n),
            "chip": chip(n).unwrap_or_default()})
    };
    let imported: Vec<Value> = (16..=runners).map(person).collect();
    for app in apps {
        for n in 1..16 {
            let mut body = person(n);
            let record = body.as_object_mut().expect("object");
            record.retain(|_, v| v != "");
            let (status, answer) = app.post("/api/v1/competitors", body).await;
            assert_eq!(status, 201, "{answer}");
        }
        let (status, body) = app
            .post("/api/v1/competitors/import", json!(imported))
            .await;
        assert_eq!(status, 200, "{body}");
        for n in (5..=runners).step_by(5) {
            app.set_time(&n.to_string(), "start", &time(32_400_000 + n * 1_000))
                .await;
        }
    }
    let (mut ids, mut sent): (Vec<String>, Vec<Value>) = (Vec::new(), Vec::new());
    for batch in 0..30 {
        // As a mat uploads: one checkpoint a batch, the start's now and then, some mixed.
        let mat = match dice.below(20) {
            0..=2 => Some("start"),
            3..=5 => None,
            n => Some(["split1", "split2", "finish"][(n % 3) as usize]),
        };
        let mut reads = Vec::new();
        // (A batch that re-sends ids is longer: two calls, the second knowing they repeat.)
        let size = if batch % 4 == 3 { 40 } else { 20 };
        for i in 0..size {
            // (Every fourth batch re-sends some earlier ids.)
            let id = if batch % 4 == 3 && dice.chance(10) {
                ids[dice.below(ids.len() as u64) as usize].clone()
            } else if i > 0 && dice.chance(4) {
                format!("r{batch}-{}", i - 1)
            } else {
                format!("r{batch}-{i}")
            };
            // Now and then a bib nobody has (31, 32).
            let nobody = dice.chance(2);
            let n = 1 + dice.below(if nobody { runners + 2 } else { runners });
            let checkpoint =
                mat.unwrap_or(["start", "split1", "split2", "finish"][dice.below(4) as usize]);
            let ms = if checkpoint == "start" {
                32_100_000 + dice.below(2_400_000) // 08:55 to 09:35
            } else {
                32_400_000 + dice.below(10_800_000) // 09:00 to 12:00
            };
            let mut read = match chip(n) {
                Some(chip) if dice.chance(40) => by_chip(&id, checkpoint, &chip, &time(ms)),
                _ if dice.chance(1) => by_chip(&id, checkpoint, "NOBODY", &time(ms)),
                _ => by_bib(&id, checkpoint, &n.to_string(), &time(ms)),
            };
            // A second reader's read of an earlier crossing: its own id, the same time.
            if !sent.is_empty() && dice.chance(10) {
                read = sent[dice.below(sent.len() as u64) as usize].clone();
                read["id"] = json!(id);
            }
            sent.push(read.clone());
            ids.push(id);
            reads.push(read);
        }
        let mut answers = Vec::new();
        for app in apps {
            let (status, body) = app
                .post("/api/v1/passings", json!({ "passings": reads }))
                .await;
            assert_eq!(status, 200, "{body}");
            answers.push(body);
        }
        assert_eq!(answers[0], answers[1], "batch {batch}: {reads:?}");
        if batch % 3 == 2 {
            // A write that changes what the rules read, on both.
            let bib = (1 + dice.below(runners)).to_string();
            let change = dice.below(6);
            let ms = 32_400_000 + dice.below(10_800_000);
            let status = [json!("DNF"), json!("DNS"), json!("DSQ"), Value::Null]
                [dice.below(4) as usize]
                .clone();
            let category = ["men20", "men30", "women30"][dice.below(3) as usize];
            let gun = time(36_000_000 + dice.below(600_000));
            let unmatched = ids
                .iter()
                .find(|id| id.starts_with(&format!("r{batch}")))
                .cloned();
            for app in apps {
                let code = match change {
                    0 => {
                        app.put(
                            &format!("/api/v1/competitors/{bib}/times/split2"),
                            json!({"time": time(ms)}),
                        )
                        .await
                        .0
                    }
                    1 => {
                        app.delete(&format!("/api/v1/competitors/{bib}/times/split2"))
                            .await
                            .0
                    }
                    2 => {
                        app.put(
                            &format!("/api/v1/competitors/{bib}/status"),
                            json!({"status": status}),
                        )
                        .await
                        .0
                    }
                    3 => app.put("/api/v1/waves/B", json!({"start": gun})).await.0,
                    4 => {
                        app.patch(
                            &format!("/api/v1/competitors/{bib}"),
                            json!({"category": category}),
                        )
                        .await
                        .0
                    }
                    _ => match &unmatched {
                        Some(id) => {
                            app.post(
                                &format!("/api/v1/passings/{id}/assign"),
                                json!({"bib": bib}),
                            )
                            .await
                            .0
                        }
                        None => 0,
                    },
                };
                assert!(code < 500, "change {change} answered {code}");
            }
        }
        if batch % 5 == 4 {
            // Wave A's gun a few seconds later: what a service remembered of it is stale.
            let gun = time(32_400_000 + 1_000 * batch);
            for app in apps {
                assert_eq!(
                    app.put("/api/v1/waves/A", json!({ "start": gun })).await.0,
                    200
                );
            }
        }
        if batch % 8 == 7 || batch == 29 {
            assert_eq!(
                redis_contents(&planned).await,
                redis_contents(&library).await,
                "after batch {batch}"
            );
        }
    }
    // Both ways decided many of the reads (the library decides start reads, unknown bibs and
    // chips, competitors without an entry, a DNF whose time changes).
    let (here, library) = store.reads_decided();
    assert!(
        here > 200 && library > 200,
        "{here} reads decided in the service, {library} left to the library"
    );
}

/// `FCALL timing_passings_planned` as the service starts it: the call's counts (new reads,
/// waves, chips, competitors, rank sets, scopes), then per new read its id and raw JSON.
fn planned_call(counts: [&str; 6], ids: &[&str]) -> redis::Cmd {
    let mut call = redis::cmd("FCALL");
    call.arg(unconnected_store(race()).function_name("timing_passings_planned"))
        .arg(0)
        .arg(&counts);
    for id in ids {
        call.arg(*id).arg(format!(r#"{{"id":"{id}"}}"#));
    }
    call
}

/// A times index entry with its split1 time set to 10:00:00.000 (36,000,000 ms; the entry's
/// second 8-character field).
fn with_split1_at_ten(entry: &str) -> String {
    format!("{}36000000{}", &entry[..8], &entry[16..])
}

/// `timing_passings_planned` writes only what the service planned from data still as it read
/// them: between the service's reads and the call, another call may have stored the same id,
/// changed the competitor's entry, a wave's gun time or a chip's holder. Each is answered
/// `changed` with nothing written (the service then sends the reads to `timing_passings`);
/// the call as planned is then written whole.
#[tokio::test]
async fn a_planned_call_writes_nothing_when_what_it_was_planned_from_changed() {
    use redis::AsyncCommands;
    let app = app().await;
    wave(&app, "A", "09:00:00.000").await;
    runner(&app, "601", Some("A"), Some("CHIP601")).await;
    app.set_time("601", "start", "09:00:30.000").await;
    let mut conn = app.redis.connection().await;
    let index = keys::times_index(&race().checkpoints);
    let rank = keys::rank("split1", Scope::All, false);
    let entry: String = conn.hget(&index, "601").await.expect("entry");
    let new_entry = with_split1_at_ten(&entry);
    // One read by chip at split1, 10:00:00.000, applied: the call as the service builds it.
    let call = |id: &str, entry: &str, gun: &str, holder: &str| {
        let mut call = planned_call(["1", "1", "1", "1", "1", "2"], &[id]);
        call.arg("A").arg(gun).arg("CHIP601").arg(holder);
        // The competitor, its entry as read, its shape (one read, the entry changes), its
        // read listed, the new entry and its one changed time.
        call.arg("601").arg(entry).arg(3);
        call.arg(format!("2 36000000 {id}"));
        call.arg(&new_entry).arg(&["1", "36000000", "split1"]);
        call.arg(&rank).arg(&["1", "3570000", "601"]);
        call.arg(&["all", "gender:male"]);
        call
    };
    let gun: String = conn.hget(keys::WAVES, "A").await.expect("gun");
    assert_eq!(gun, "32400000");
    // A competitor whose entry is not as planned: answered with the entry as it is.
    let answer: Vec<Option<String>> = call("x1", "not the entry", &gun, "601")
        .query_async(&mut conn)
        .await
        .expect("FCALL");
    assert_eq!(answer, [Some("601".to_owned()), Some(entry.clone())]);
    let stale = [
        call("x1", &entry, "32400001", "601"),
        call("x1", &entry, &gun, "602"),
    ];
    for (n, stale) in stale.into_iter().enumerate() {
        let answer: String = stale.query_async(&mut conn).await.expect("FCALL");
        assert_eq!(answer, "changed", "stale call {n}");
    }
    // A service of another version calls its own library's functions (named by their
    // version), never this one's with arguments of another layout.
    let refused: redis::RedisResult<redis::Value> = redis::cmd("FCALL")
        .arg("timing_passings_planned")
        .arg(0)
        .arg(&["1", "1", "1", "1", "1", "2"])
        .query_async(&mut conn)
        .await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().contains("Function not found")),
        "{refused:?}"
    );
    // An id another call stored meanwhile.
    let _: () = conn.hset(keys::PASSINGS, "x0", "{}").await.expect("HSET");
    let answer: String = call("x0", &entry, &gun, "601")
        .query_async(&mut conn)
        .await
        .expect("FCALL");
    assert_eq!(answer, "changed");
    let stored: bool = conn.hexists(keys::PASSINGS, "x1").await.expect("HEXISTS");
    assert!(!stored, "a stale call stored its read");
    assert_eq!(time_at(&app, "601", "split1").await.0, None);

    // Unchanged: written whole.
    let answer: String = call("x1", &entry, &gun, "601")
        .query_async(&mut conn)
        .await
        .expect("FCALL");
    assert_eq!(answer, "ok");
    assert_time(&app, "601", "split1", Some("10:00:00.000")).await;
    let written: String = conn.hget(&index, "601").await.expect("entry");
    assert_eq!(written, new_entry);
    let reads: Vec<String> = conn.lrange(keys::reads("601"), 0, -1).await.expect("reads");
    assert_eq!(reads, ["2 36000000 x1"]);
    let score: f64 = conn.zscore(&rank, "601").await.expect("rank");
    assert_eq!(score, 3_570_000.0);
}

/// A planned call in which one competitor's entry changed since it was planned writes the
/// others' reads and answers that competitor with its entry as it is, for the service to
/// decide that competitor's reads again.
#[tokio::test]
async fn a_planned_call_writes_the_competitors_whose_entry_is_as_planned() {
    use redis::AsyncCommands;
    let app = app().await;
    for bib in ["701", "702"] {
        runner(&app, bib, None, None).await;
        app.set_time(bib, "start", "09:00:00.000").await;
    }
    let mut conn = app.redis.connection().await;
    let index = keys::times_index(&race().checkpoints);
    let rank = keys::rank("split1", Scope::All, false);
    let mut entries = Vec::new();
    for bib in ["701", "702"] {
        let entry: String = conn.hget(&index, bib).await.expect("entry");
        entries.push(entry);
    }
    let rank_before: Option<f64> = conn.zscore(&rank, "702").await.expect("rank");
    // One applied read each at split1, 10:00:00.000; 702 planned from an entry that is not
    // its own any more.
    let mut call = planned_call(["2", "0", "0", "2", "1", "1"], &["y1", "y2"]);
    call.arg("701").arg(&entries[0]).arg(3).arg("2 36000000 y1");
    call.arg(with_split1_at_ten(&entries[0]))
        .arg(&["1", "36000000", "split1"]);
    call.arg("702")
        .arg("an older entry")
        .arg(3)
        .arg("2 36000000 y2");
    call.arg(with_split1_at_ten(&entries[1]))
        .arg(&["1", "36000000", "split1"]);
    call.arg(&rank)
        .arg(&["2", "3600000", "701", "3600000", "702"]);
    call.arg("all");
    let answer: Vec<Option<String>> = call.query_async(&mut conn).await.expect("FCALL");
    assert_eq!(answer, [Some("702".to_owned()), Some(entries[1].clone())]);
    // 701 written whole; nothing of 702.
    assert_time(&app, "701", "split1", Some("10:00:00.000")).await;
    let written: String = conn.hget(&index, "701").await.expect("entry");
    assert_eq!(written, with_split1_at_ten(&entries[0]));
    assert!(
        conn.hexists::<_, _, bool>(keys::PASSINGS, "y1")
            .await
            .expect("HEXISTS")
    );
    assert!(
        !conn
            .hexists::<_, _, bool>(keys::PASSINGS, "y2")
            .await
            .expect("HEXISTS")
    );
    let reads: Vec<String> = conn.lrange(keys::reads("702"), 0, -1).await.expect("reads");
    assert!(reads.is_empty(), "702's reads: {reads:?}");
    assert_eq!(time_at(&app, "702", "split1").await.0, None);
    let ranked: Option<f64> = conn.zscore(&rank, "702").await.expect("rank");
    assert_eq!(ranked, rank_before);
    let ranked: f64 = conn.zscore(&rank, "701").await.expect("rank");
    assert_eq!(ranked, 3_600_000.0);
    let unchanged: String = conn.hget(&index, "702").await.expect("entry");
    assert_eq!(unchanged, entries[1]);
}

/// A planned call whose counts pass the library's table of counts (0 to 255) is read the
/// same: 300 reads kept for one competitor, all stored and listed.
#[tokio::test]
async fn a_planned_call_with_counts_past_the_table_is_read_whole() {
    use redis::AsyncCommands;
    let app = app().await;
    runner(&app, "703", None, None).await;
    app.set_time("703", "start", "09:00:00.000").await;
    let mut conn = app.redis.connection().await;
    let index = keys::times_index(&race().checkpoints);
    let entry: String = conn.hget(&index, "703").await.expect("entry");
    let ids: Vec<String> = (0..300).map(|n| format!("z{n}")).collect();
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let mut call = planned_call(["300", "0", "0", "1", "0", "0"], &id_refs);
    // The competitor, its entry as read, its shape (300 reads, the entry unchanged), and its
    // 300 reads listed.
    call.arg("703").arg(&entry).arg(600);
    for id in &ids {
        call.arg(format!("2 36000000 {id}"));
    }
    let answer: String = call.query_async(&mut conn).await.expect("FCALL");
    assert_eq!(answer, "ok");
    let stored: usize = conn.hlen(keys::PASSINGS).await.expect("HLEN");
    assert_eq!(stored, 300);
    let listed: Vec<String> = conn.lrange(keys::reads("703"), 0, -1).await.expect("reads");
    assert_eq!(listed.len(), 300);
    assert_eq!(listed.last().map(String::as_str), Some("2 36000000 z299"));
    let unchanged: String = conn.hget(&index, "703").await.expect("entry");
    assert_eq!(unchanged, entry);
}

/// A batch planned partly from an entry this process no longer has right (a manual time
/// changed it since): the call writes the others' reads, and the stale competitor's reads
/// are decided again from the entry the call answered, in a second planned call, without
/// reading anything first or leaving them to the library.
#[tokio::test]
async fn reads_of_a_competitor_changed_meanwhile_are_decided_again_from_its_entry() {
    let (app, store) = app_planning(true).await;
    for bib in ["801", "802"] {
        runner(&app, bib, None, None).await;
        app.set_time(bib, "start", "09:00:00.000").await;
    }
    let first = vec![
        by_bib("d1", "split1", "801", "10:00:00.000"),
        by_bib("d2", "split1", "802", "10:00:00.000"),
    ];
    assert_eq!(
        upload(&app, first).await,
        outcomes(&[("d1", "applied"), ("d2", "applied")])
    );
    // 802's split1 time set by hand: its entry (manual there now) is not what the service
    // remembers of it.
    app.set_time("802", "split1", "10:05:00.000").await;
    let (planned, left) = store.reads_decided();
    let (hmgets, fcalls) = (
        command_calls(&app, "hmget").await,
        command_calls(&app, "fcall").await,
    );
    let second = vec![
        by_bib("e1", "split1", "801", "09:59:00.000"),
        by_bib("e2", "split1", "802", "09:59:00.000"),
    ];
    assert_eq!(
        upload(&app, second).await,
        outcomes(&[("e1", "applied"), ("e2", "kept")])
    );
    assert_eq!(store.reads_decided(), (planned + 2, left));
    // Two planned calls, each checking the ids and the entries in Redis; the service read
    // nothing itself.
    assert_eq!(command_calls(&app, "fcall").await, fcalls + 2);
    assert_eq!(command_calls(&app, "hmget").await, hmgets + 4);
    assert_time(&app, "801", "split1", Some("09:59:00.000")).await;
    assert_time(&app, "802", "split1", Some("10:05:00.000")).await;
}

/// Two processes deciding reads in the service post overlapping batches at once (each call
/// planned from entries the other keeps changing, so planned calls find entries changed and
/// are written in part, decided again, or left to the library), while a third process on a
/// Redis of its own gets the same batches one after the other with the rules in Lua. The
/// rules depend on the reads, not on their order: both end with the same times, rankings,
/// stored reads and lists of reads (a list's order is the order received, so compared as a
/// set).
#[tokio::test]
async fn processes_deciding_reads_at_once_end_as_the_library_does() {
    let (one, store) = app_planning(true).await;
    let two = one
        .peer_with(|url, token| {
            AppState::new(url, race(), token)
                .expect("state")
                .with_planned_reads(true)
        })
        .await;
    let (library, _) = app_planning(false).await;
    let runners = 12u64;
    let time = |ms: u64| format_ms(ms, '.');
    for app in [&one, &library] {
        wave(app, "A", "09:00:00.000").await;
        for n in 1..=runners {
            runner(app, &n.to_string(), (n % 2 == 0).then_some("A"), None).await;
            if n % 3 != 0 {
                app.set_time(&n.to_string(), "start", &time(32_400_000 + n * 1_000))
                    .await;
            }
        }
    }
    let mut dice = Dice(0x2545_F491_4F6C_DD1D);
    let batches: Vec<Vec<Value>> = (0..16)
        .map(|batch| {
            (0..30)
                .map(|i| {
                    let checkpoint = ["split1", "split2", "finish"][dice.below(3) as usize];
                    let bib = (1 + dice.below(runners)).to_string();
                    let ms = 34_200_000 + dice.below(3_600_000) + 900_000 * (dice.below(3));
                    by_bib(&format!("p{batch}-{i}"), checkpoint, &bib, &time(ms))
                })
                .collect()
        })
        .collect();
    let post = |base: String, batches: Vec<Vec<Value>>| async move {
        let client = reqwest::Client::new();
        for reads in batches {
            let response = client
                .post(format!("{base}/api/v1/passings"))
                .json(&json!({ "passings": reads }))
                .send()
                .await
                .expect("POST");
            assert_eq!(response.status(), 200);
        }
    };
    let (even, odd): (Vec<_>, Vec<_>) = batches
        .iter()
        .cloned()
        .enumerate()
        .partition(|(k, _)| k % 2 == 0);
    let strip = |list: Vec<(usize, Vec<Value>)>| list.into_iter().map(|(_, b)| b).collect();
    tokio::join!(
        post(one.base.clone(), strip(even)),
        post(two.base.clone(), strip(odd))
    );
    for reads in batches {
        upload(&library, reads).await;
    }
    let derived = |contents: std::collections::BTreeMap<String, Value>| {
        contents
            .into_iter()
            .filter(|(key, _)| {
                ["race:", "rank:", "gunrank:", "reads:", "passings"]
                    .iter()
                    .any(|prefix| key.starts_with(prefix))
            })
            .map(|(key, value)| match (key.starts_with("reads:"), value) {
                (true, Value::Array(mut reads)) => {
                    reads.sort_by_key(Value::to_string);
                    (key, Value::Array(reads))
                }
                (_, value) => (key, value),
            })
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    assert_eq!(
        derived(redis_contents(&one).await),
        derived(redis_contents(&library).await)
    );
    let (here, _) = store.reads_decided();
    assert!(here > 0, "no read was decided in the service");
}
