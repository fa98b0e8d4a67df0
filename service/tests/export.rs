//! CSV exports: parsed back and compared with the JSON answers, across several 500-row blocks;
//! the start list exported imports back unchanged.

use reqwest::{Method, header};
use serde_json::{Value, json};

use timing_service::race::Race;

use crate::common::{TestApp, command_calls, spawn_app, spawn_app_with};

/// GET as CSV (by `?format=csv`, or by `Accept` when `accept` is set): status, content type,
/// header row and records.
async fn csv_of(
    app: &TestApp,
    path: &str,
    accept: bool,
) -> (u16, String, Vec<String>, Vec<Vec<String>>) {
    let request = if accept {
        app.request(Method::GET, path)
            .header(header::ACCEPT, "text/csv")
    } else {
        let sep = if path.contains('?') { '&' } else { '?' };
        app.request(Method::GET, &format!("{path}{sep}format=csv"))
    };
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let content_type = response.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap_or_default()
        .to_owned();
    let text = response.text().await.expect("body");
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let head = reader
        .headers()
        .expect("header row")
        .iter()
        .map(str::to_owned)
        .collect();
    let records = reader
        .records()
        .map(|r| r.expect("record").iter().map(str::to_owned).collect())
        .collect();
    (status, content_type, head, records)
}

/// A JSON value as its CSV cell: strings as they are, numbers in decimal, null empty.
fn cell(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Every JSON row of a listing, read in pages of 500.
async fn all_json(app: &TestApp, path: &str, key: &str) -> Vec<Value> {
    let mut rows = Vec::new();
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let (status, page) = app
            .get(&format!("{path}{sep}limit=500&offset={}", rows.len()))
            .await;
        assert_eq!(status, 200, "{page}");
        let got = page[key].as_array().cloned().unwrap_or_default();
        if got.is_empty() {
            return rows;
        }
        rows.extend(got);
    }
}

/// 1,203 competitors (three blocks): finishers with ties, some without a finish, statuses,
/// names with commas, quotes and line breaks.
async fn seed(app: &TestApp) {
    let mut text = String::from("bib,first_name,last_name,gender,country,category,status\n");
    for i in 1..=1203 {
        let (gender, category) = if i % 2 == 0 {
            ("female", "women30")
        } else {
            ("male", "men30")
        };
        let status = match i % 50 {
            7 => "DNF",
            8 => "DNS",
            _ => "",
        };
        text.push_str(&format!(
            "{i},\"Name, {i}\",\"O\"\"Brien\nthe {i}th\",{gender},FI,{category},{status}\n"
        ));
    }
    let (status, body) = app
        .send(
            app.request(Method::POST, "/api/v1/competitors/import")
                .header(header::CONTENT_TYPE, "text/csv")
                .body(text),
        )
        .await;
    assert_eq!((status, &body["created"]), (200, &json!(1203)), "{body}");
    for i in (1..=1203).filter(|i| i % 3 != 0) {
        // Ties every 4 bibs; every third bib has no finish.
        let minutes = 30 + (i / 4) % 60;
        app.times(
            &i.to_string(),
            json!({"start": "10:00:00.000", "finish": format!("{:02}:{:02}:00.000", 10 + minutes / 60, minutes % 60)}),
        )
        .await;
    }
}

#[tokio::test]
async fn results_and_start_list_as_csv_match_the_json() {
    let app = spawn_app().await;
    seed(&app).await;

    for (path, accept) in [
        ("/api/v1/results", false),
        ("/api/v1/results?category=women30", true),
        ("/api/v1/results?gender=male&checkpoint=split1", false),
    ] {
        let (status, content_type, head, records) = csv_of(&app, path, accept).await;
        assert_eq!(
            (status, content_type.as_str()),
            (200, "text/csv; charset=utf-8"),
            "{path}"
        );
        assert_eq!(
            head,
            [
                "rank",
                "bib",
                "first_name",
                "last_name",
                "gender",
                "category",
                "country",
                "elapsed",
                "elapsed_ms",
                "gun",
                "gun_ms",
                "net",
                "net_ms",
                "status"
            ]
        );
        let rows = all_json(&app, path, "results").await;
        assert!(rows.len() > 500, "{path}: {}", rows.len());
        let expected: Vec<Vec<String>> = rows
            .iter()
            .map(|r| head.iter().map(|c| cell(&r[c.as_str()])).collect())
            .collect();
        assert_eq!(records, expected, "{path}");
    }
    // Its pages read as often as it has pages, the ranking is kept whole (see
    // `store::rankings`): the same download again is sliced from it, without a rank-set read.
    let (_, _, _, before) = csv_of(&app, "/api/v1/results", false).await;
    let ranges = command_calls(&app, "zrange").await;
    let (_, _, _, kept) = csv_of(&app, "/api/v1/results", false).await;
    assert_eq!(kept, before);
    assert_eq!(command_calls(&app, "zrange").await, ranges, "not kept");
    // A page when asked for.
    let (_, _, _, page) = csv_of(&app, "/api/v1/results?offset=10&limit=5", false).await;
    assert_eq!(page.len(), 5);
    assert_eq!(
        page[0][1],
        all_json(&app, "/api/v1/results", "results").await[10]["bib"]
    );

    let (status, _, head, records) = csv_of(&app, "/api/v1/competitors", true).await;
    assert_eq!(status, 200);
    assert_eq!(
        head,
        [
            "bib",
            "first_name",
            "last_name",
            "gender",
            "country",
            "category",
            "status"
        ]
    );
    let rows = all_json(&app, "/api/v1/competitors", "competitors").await;
    let expected: Vec<Vec<String>> = rows
        .iter()
        .map(|r| head.iter().map(|c| cell(&r[c.as_str()])).collect())
        .collect();
    assert_eq!(records.len(), 1203);
    assert_eq!(records, expected);

    // A filtered start list (601 rows, two blocks; its matching bibs read once) is the
    // filtered JSON listing.
    let path = "/api/v1/competitors?gender=female";
    let (status, _, head, records) = csv_of(&app, path, false).await;
    assert_eq!(status, 200);
    let expected: Vec<Vec<String>> = all_json(&app, path, "competitors")
        .await
        .iter()
        .map(|r| head.iter().map(|c| cell(&r[c.as_str()])).collect())
        .collect();
    assert_eq!(records.len(), 601);
    assert_eq!(records, expected);

    // `format` wins over `Accept`; an unknown format is refused.
    let json = app
        .request(Method::GET, "/api/v1/results?format=json")
        .header(header::ACCEPT, "text/csv")
        .send()
        .await
        .expect("request");
    assert!(
        json.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap_or_default()
            .starts_with("application/json")
    );
    assert_eq!(app.get("/api/v1/results?format=xml").await.0, 422);
}

/// The start list exported as CSV imports back into an empty service unchanged.
#[tokio::test]
async fn exported_start_list_imports_back() {
    let app = spawn_app().await;
    seed(&app).await;
    let export = app
        .request(Method::GET, "/api/v1/competitors?format=csv")
        .send()
        .await
        .expect("export")
        .bytes()
        .await
        .expect("body");
    let other = spawn_app().await;
    let (status, body) = other
        .send(
            other
                .request(Method::POST, "/api/v1/competitors/import")
                .header(header::CONTENT_TYPE, "text/csv")
                .body(export.to_vec()),
        )
        .await;
    assert_eq!((status, &body["created"]), (200, &json!(1203)), "{body}");
    assert_eq!(
        all_json(&other, "/api/v1/competitors", "competitors").await,
        all_json(&app, "/api/v1/competitors", "competitors").await
    );
}

/// With waves, the results CSV carries gun and net times beside the time ranked by, by net or
/// by gun, as the JSON does.
#[tokio::test]
async fn results_csv_has_gun_and_net_times() {
    let mut race = Race::default();
    race.fields.push("wave".into());
    let app = spawn_app_with(race, None).await;
    let (status, body) = app
        .put("/api/v1/waves/A", json!({"start": "09:00:00.000"}))
        .await;
    assert!(status < 300, "{status} {body}");
    let csv = "bib,first_name,last_name,gender,country,category,wave\n\
               1,Ann,A,female,FI,women30,A\n2,Bo,B,male,SE,men30,A\n3,Cy,C,male,NO,men30,\n";
    let (status, body) = app
        .send(
            app.request(Method::POST, "/api/v1/competitors/import")
                .header(header::CONTENT_TYPE, "text/csv")
                .body(csv),
        )
        .await;
    assert_eq!((status, &body["created"]), (200, &json!(3)), "{body}");
    // 1 starts late (09:05), finishes 10:00: net 55:00, gun 1:00:00; 2 starts 09:00:30,
    // finishes 09:58: net 57:30, gun 58:00; 3 has no wave: no gun time.
    app.times(
        "1",
        json!({"start": "09:05:00.000", "finish": "10:00:00.000"}),
    )
    .await;
    app.times(
        "2",
        json!({"start": "09:00:30.000", "finish": "09:58:00.000"}),
    )
    .await;
    app.times(
        "3",
        json!({"start": "09:00:00.000", "finish": "10:10:00.000"}),
    )
    .await;
    for query in ["", "?by=net", "?by=gun"] {
        let path = format!("/api/v1/results{query}");
        let (status, _, head, records) = csv_of(&app, &path, false).await;
        assert_eq!(status, 200);
        let rows = all_json(&app, &path, "results").await;
        let expected: Vec<Vec<String>> = rows
            .iter()
            .map(|r| head.iter().map(|c| cell(&r[c.as_str()])).collect())
            .collect();
        assert_eq!(records, expected, "{path}");
    }
    let (_, _, head, by_gun) = csv_of(&app, "/api/v1/results?by=gun", false).await;
    let column = |name: &str| head.iter().position(|h| h == name).expect("column");
    assert_eq!(by_gun[0][column("bib")], "2");
    assert_eq!(
        (&by_gun[0][column("gun")], &by_gun[0][column("net")]),
        (&"00:58:00.000".to_owned(), &"00:57:30.000".to_owned())
    );
    assert_eq!(by_gun[2][column("gun")], "");
}
