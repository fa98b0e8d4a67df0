//! `POST /api/v1/competitors/import`: CSV and JSON start lists, every bad case of the issue,
//! partial mode, re-import as upsert.

use reqwest::{Method, header};
use serde_json::{Value, json};

use timing_service::race::Race;

use crate::common::{TestApp, spawn_app, spawn_app_with};

const IMPORT: &str = "/api/v1/competitors/import";
const HEADER: &str = "bib,first_name,last_name,gender,country,category";

/// Posts a body with a content type; status and JSON.
async fn import(app: &TestApp, query: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
    app.send(
        app.request(Method::POST, &format!("{IMPORT}{query}"))
            .header(header::CONTENT_TYPE, content_type)
            .body(body),
    )
    .await
}

async fn csv(app: &TestApp, query: &str, text: &str) -> (u16, Value) {
    import(app, query, "text/csv", text.as_bytes().to_vec()).await
}

/// The number of competitors stored.
async fn stored(app: &TestApp) -> u64 {
    let (status, page) = app.get("/api/v1/competitors?limit=500").await;
    assert_eq!(status, 200, "{page}");
    page["total"].as_u64().expect("total")
}

/// `(line, column)` of every listed error.
fn places(answer: &Value) -> Vec<(Value, Value)> {
    answer["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| (e["line"].clone(), e["column"].clone()))
        .collect()
}

/// A comma file with a BOM, quoted fields (a comma, a doubled quote, a line break), columns in
/// another order and in other case; a semicolon file; a JSON array: all stored, ranked as
/// untimed, readable as created.
#[tokio::test]
async fn imports_csv_and_json_start_lists() {
    let app = spawn_app().await;
    let text = "\u{feff}Category,BIB,first_name,last_name,gender,country\r\n\
                men30,101,\"Matti, Jr.\",Virtanen,male,Finland\r\n\
                women40,102,\"Ellen \"\"E\"\"\",\"Rip\nley\",female,USA\r\n";
    let (status, body) = csv(&app, "", text).await;
    assert_eq!(
        (status, &body),
        (200, &json!({"created": 2, "updated": 0, "rejected": []}))
    );
    let (_, matti) = app.get("/api/v1/competitors/101").await;
    assert_eq!(matti["first_name"], "Matti, Jr.");
    assert_eq!(matti["category"], "men30");
    let (_, ellen) = app.get("/api/v1/competitors/102").await;
    assert_eq!(
        (&ellen["first_name"], &ellen["last_name"]),
        (&json!("Ellen \"E\""), &json!("Rip\nley"))
    );

    let semicolons = "bib;first_name;last_name;gender;country;category\n\
                      103;Anna;Svensson;female;Sweden;women30\n";
    assert_eq!(csv(&app, "", semicolons).await.1["created"], 1);

    let items = json!([
        {"bib": 104, "first_name": "Kenji", "last_name": "Sato", "gender": "male", "country": "Japan", "category": "men40"},
        {"bib": "105", "first_name": "Ama", "last_name": "Mensah", "gender": "female", "country": "Ghana", "category": "women20", "status": "DNS"}
    ]);
    let (status, body) = import(&app, "", "application/json", items.to_string().into_bytes()).await;
    assert_eq!((status, &body["created"]), (200, &json!(2)), "{body}");

    assert_eq!(stored(&app).await, 5);
    let (_, results) = app.get("/api/v1/results").await;
    let bibs: Vec<&str> = results["results"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r["bib"].as_str().unwrap_or_default())
        .collect();
    // Untimed in file order, then the DNS.
    assert_eq!(bibs, ["101", "102", "103", "104", "105"]);
    assert_eq!(results["results"][4]["status"], "DNS");
    let (_, men30) = app.get("/api/v1/results?category=men30").await;
    assert_eq!(men30["total"], 1);
}

/// Each bad input of the issue: a 4xx naming line and column, nothing stored.
#[tokio::test]
async fn bad_start_lists_store_nothing_and_say_where() {
    let app = spawn_app().await;
    let good = "1,A,B,male,FI,men30\n";

    // Non-UTF-8 bytes (Latin-1 "ä") in row 2's last name.
    let mut latin1 = format!("{HEADER}\n{good}").into_bytes();
    latin1.extend_from_slice(b"2,Jussi,J\xe4rvi,male,FI,men30\n");
    let (status, body) = import(&app, "", "text/csv", latin1).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(places(&body), [(json!(3), json!("last_name"))]);
    assert!(
        body["error"].as_str().unwrap_or_default().contains("UTF-8"),
        "{body}"
    );

    // No bib column.
    let (status, body) = csv(
        &app,
        "",
        "first_name,last_name,gender,country,category\nA,B,male,FI,men30\n",
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(places(&body), [(json!(1), json!("bib"))]);
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("missing column `bib`")
    );

    // The same bib twice.
    let (status, body) = csv(&app, "", &format!("{HEADER}\n{good}{good}")).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(places(&body), [(json!(3), json!("bib"))]);
    assert!(
        body["errors"][0]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("already on line 2"),
        "{body}"
    );

    // Too many and too few fields.
    let (status, body) = csv(
        &app,
        "",
        &format!("{HEADER}\n1,A,B,male,FI,men30,extra\n2,A,B,male\n"),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        places(&body),
        [(json!(2), Value::Null), (json!(3), Value::Null)]
    );
    assert!(
        body["errors"][0]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("7 fields")
    );

    // Unknown gender and category, both listed for one row, and a bad bib on another.
    let (status, body) = csv(
        &app,
        "",
        &format!("{HEADER}\n1,A,B,robot,FI,men99\nbad bib!,A,B,male,FI,men30\n"),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        places(&body),
        [
            (json!(2), json!("gender")),
            (json!(2), json!("category")),
            (json!(3), json!("bib"))
        ]
    );

    // An unknown column (without ?ignore_unknown=true).
    let (status, body) = csv(
        &app,
        "",
        &format!("{HEADER},shoe_size\n1,A,B,male,FI,men30,44\n"),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(places(&body), [(json!(1), json!("shoe_size"))]);

    // Over the size limit.
    let huge = format!("{HEADER}\n")
        .into_bytes()
        .into_iter()
        .chain(std::iter::repeat_n(b' ', 9 << 20))
        .collect();
    let (status, body) = import(&app, "", "text/csv", huge).await;
    assert_eq!(status, 413, "{body}");

    // Neither CSV nor JSON; an empty file; JSON that is not an array.
    assert_eq!(
        import(&app, "", "application/xml", b"<x/>".to_vec())
            .await
            .0,
        415
    );
    assert_eq!(csv(&app, "", "").await.0, 422);
    assert_eq!(
        import(&app, "", "application/json", b"{}".to_vec()).await.0,
        422
    );

    assert_eq!(stored(&app).await, 0);

    // The unknown column ignored on request.
    let (status, body) = csv(
        &app,
        "?ignore_unknown=true",
        &format!("{HEADER},shoe_size\n1,A,B,male,FI,men30,44\n"),
    )
    .await;
    assert_eq!((status, &body["created"]), (200, &json!(1)), "{body}");
}

/// `?mode=partial` stores the valid rows and lists the rejected ones.
#[tokio::test]
async fn partial_mode_stores_the_valid_rows() {
    let app = spawn_app().await;
    let text = format!(
        "{HEADER}\n1,A,B,male,FI,men30\n2,C,D,robot,FI,men30\n3,E,F,female,FI,women30\n1,G,H,male,FI,men30\n"
    );
    let (status, body) = csv(&app, "?mode=partial", &text).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((&body["created"], &body["updated"]), (&json!(2), &json!(0)));
    assert_eq!(
        places(&json!({"errors": body["rejected"]})),
        [(json!(3), json!("gender")), (json!(5), json!("bib"))]
    );
    assert_eq!(body["rejected"][0]["bib"], "2");
    assert_eq!(stored(&app).await, 2);
    assert_eq!(app.get("/api/v1/competitors/1").await.1["first_name"], "A");
}

/// A wave that does not exist, a chip another competitor has, and a chip named twice are
/// refused with their line and column before anything is written (they were dropped
/// silently, and after the file's other rows were stored); a competitor keeping its own chip
/// is fine.
#[tokio::test]
async fn rows_naming_an_unknown_wave_or_a_taken_chip_are_refused_where_they_are() {
    let mut race = Race::default();
    race.fields.push("wave".into());
    race.fields.push("chip".into());
    let app = spawn_app_with(race, None).await;
    let (status, body) = app
        .put("/api/v1/waves/elite", json!({"start": "09:00:00.000"}))
        .await;
    assert_eq!(status, 201, "{body}");
    let header = format!("{HEADER},wave,chip");
    let (status, body) = csv(
        &app,
        "",
        &format!("{header}\n9,K,L,male,FI,men30,elite,C9\n"),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let text = format!(
        "{header}\n1,A,B,male,FI,men30,elite,C1\n2,C,D,male,FI,men30,nowhere,\n\
         3,E,F,male,FI,men30,,C9\n4,G,H,male,FI,men30,,C1\n9,K,L,male,FI,men30,elite,C9\n"
    );
    let (status, body) = csv(&app, "", &text).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        places(&body),
        [
            (json!(3), json!("wave")),
            (json!(4), json!("chip")),
            (json!(5), json!("chip"))
        ]
    );
    let errors = body["errors"].to_string();
    assert!(errors.contains("unknown wave `nowhere`"), "{errors}");
    assert!(errors.contains("already competitor `9`'s"), "{errors}");
    assert!(
        errors.contains("chip `C1` is already on line 2"),
        "{errors}"
    );
    assert_eq!(stored(&app).await, 1);

    let (status, body) = csv(&app, "?mode=partial", &text).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((&body["created"], &body["updated"]), (&json!(1), &json!(1)));
    assert_eq!(body["rejected"].as_array().map(Vec::len), Some(3));
    assert_eq!(stored(&app).await, 2);
    assert_eq!(app.get("/api/v1/competitors/1").await.1["chip"], "C1");
}

/// Importing again updates by bib: fields replaced, times kept, status set or cleared by the
/// `status` column (and kept without it); new bibs created alongside.
#[tokio::test]
async fn reimport_is_an_upsert() {
    let app = spawn_app().await;
    let first = format!("{HEADER}\n1,Ann,Old,female,FI,women30\n2,Bo,Old,male,SE,men30\n");
    assert_eq!(csv(&app, "", &first).await.1["created"], 2);
    app.times(
        "1",
        json!({"start": "10:00:00.000", "finish": "10:30:00.000"}),
    )
    .await;
    app.put("/api/v1/competitors/2/status", json!({"status": "DNF"}))
        .await;

    let again = format!(
        "{HEADER}\n1,Ann,New,female,FI,women40\n2,Bo,New,male,SE,men30\n3,Cy,New,male,NO,men20\n"
    );
    let (status, body) = csv(&app, "", &again).await;
    assert_eq!(
        (status, &body),
        (200, &json!({"created": 1, "updated": 2, "rejected": []}))
    );
    let (_, ann) = app.get("/api/v1/competitors/1").await;
    assert_eq!(
        (&ann["last_name"], &ann["category"]),
        (&json!("New"), &json!("women40"))
    );
    let (_, women40) = app.get("/api/v1/results?category=women40").await;
    assert_eq!(
        (
            &women40["results"][0]["bib"],
            &women40["results"][0]["elapsed"]
        ),
        (&json!("1"), &json!("00:30:00.000"))
    );
    assert_eq!(
        app.get("/api/v1/results?category=women30").await.1["total"],
        0
    );
    assert_eq!(app.get("/api/v1/competitors/2").await.1["status"], "DNF");

    let with_status =
        format!("{HEADER},status\n2,Bo,New,male,SE,men30,\n3,Cy,New,male,NO,men20,dsq\n");
    assert_eq!(csv(&app, "", &with_status).await.1["updated"], 2);
    assert_eq!(
        app.get("/api/v1/competitors/2").await.1["status"],
        Value::Null
    );
    assert_eq!(app.get("/api/v1/competitors/3").await.1["status"], "DSQ");
    assert_eq!(stored(&app).await, 3);
}

/// An import is audited as one entry (newest first) and per competitor: created ones by the
/// timing library's batched `timing_import`, replaced ones by the ordinary upsert.
#[tokio::test]
async fn imports_are_audited() {
    let app = spawn_app().await;
    csv(
        &app,
        "",
        &format!("{HEADER}\n1,Ann,Old,female,FI,women30\n"),
    )
    .await;
    let (status, body) = csv(
        &app,
        "",
        &format!("{HEADER}\n1,Ann,New,female,FI,women30\n2,Bo,B,male,SE,men30\n"),
    )
    .await;
    assert_eq!((status, &body["updated"]), (200, &json!(1)), "{body}");
    let (status, audit) = app.get("/api/v1/audit?limit=50").await;
    assert_eq!(status, 200, "{audit}");
    let entries = audit["entries"].as_array().expect("entries");
    assert_eq!(entries[0]["action"], "import");
    assert_eq!(entries[0]["after"], json!({"created": 1, "updated": 1}));
    assert_eq!(entries[0]["bib"], Value::Null);
    let of =
        |bib: &str| -> Vec<&Value> { entries.iter().filter(|e| e["bib"] == json!(bib)).collect() };
    assert_eq!(of("1").len(), 2, "{audit}"); // created, then replaced
    assert_eq!(of("1")[0]["after"]["last_name"], "New");
    assert_eq!(of("1")[0]["before"]["last_name"], "Old");
    assert_eq!(of("2").len(), 1, "{audit}");
    // A bulk-created competitor's entry is shaped as every other: `at` is its time (the import
    // script once wrote its own column table there), `before` null, `after` the record.
    let created = of("2")[0];
    assert_eq!(created["action"], "competitor.created", "{audit}");
    assert!(
        created["at"]
            .as_str()
            .is_some_and(|at| at.ends_with('Z') && at.contains('T')),
        "{audit}"
    );
    assert_eq!(created["before"], Value::Null, "{audit}");
    assert_eq!(created["after"]["first_name"], "Bo", "{audit}");
    assert_eq!(
        entries.iter().filter(|e| e["action"] == "import").count(),
        2
    );
}
