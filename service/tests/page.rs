//! The public results page in a real headless browser: Debian's `chromium`, driven over the
//! DevTools protocol (a websocket) with a small client below. The page is loaded from the
//! service with a write token set (the page only reads), and checked by what it shows:
//! the seed race in order, a filter change, a finish posted meanwhile appearing without a
//! reload, a competitor's splits, and a name holding markup shown as text.

use std::{
    os::unix::process::CommandExt,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use futures::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{Value, json};
use timing_service::race::Race;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite::Message};

use crate::common::{TestApp, spawn_app_with};

/// How long chromium may take to start, answer, or show a condition (a bound, generous for
/// a loaded 2-CPU machine; conditions are normally met within a second).
const PAGE_TIMEOUT: Duration = Duration::from_secs(60);

/// A headless chromium with one page, killed on drop (all its processes: it runs in a
/// process group of its own).
struct Browser {
    child: Child,
    socket: WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>,
    session: String,
    next_id: u64,
    profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole group: killed alone, the browser process left its renderer and GPU
        // processes to write to the profile a moment longer, which recreated a directory or
        // two of it after it was removed, left in the temporary directory by every run.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        // (`TempDir` gives up on the first failure to remove; retried here while the killed
        // processes go, bounded: a leftover is untidy, not a failure.)
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.profile.path().exists()
            && std::fs::remove_dir_all(self.profile.path()).is_err()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Browser {
    /// Starts chromium on a fresh profile and opens a blank page.
    async fn launch() -> Self {
        let profile = tempfile::tempdir().expect("profile dir");
        let child = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                &format!("--user-data-dir={}", profile.path().display()),
                "about:blank",
            ])
            // Chromium makes its singleton socket's directory in the temporary directory,
            // outside the profile: in the profile, it goes with it.
            .env("TMPDIR", profile.path())
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run `chromium` ({e}); the page tests need it: `apt-get install -y \
                     chromium` (or run scripts/install-deps)"
                )
            });
        // Chromium writes its port and the browser's websocket path there once it listens.
        let active_port: PathBuf = profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + PAGE_TIMEOUT;
        let url = loop {
            if let Ok(text) = std::fs::read_to_string(&active_port) {
                let mut lines = text.lines();
                if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                    break format!("ws://127.0.0.1:{port}{path}");
                }
            }
            assert!(
                Instant::now() < deadline,
                "chromium did not start its DevTools server"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let (socket, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .expect("DevTools websocket");
        let mut browser = Self {
            child,
            socket,
            session: String::new(),
            next_id: 0,
            profile,
        };
        let target = browser
            .call("Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let attached = browser
            .call(
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
            )
            .await;
        browser.session = attached["sessionId"]
            .as_str()
            .expect("sessionId")
            .to_owned();
        browser
    }

    /// Sends a DevTools command (to the page once attached) and returns its result.
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            message["sessionId"] = json!(self.session);
        }
        self.socket
            .send(Message::Text(message.to_string().into()))
            .await
            .expect("send to chromium");
        let deadline = tokio::time::Instant::now() + PAGE_TIMEOUT;
        loop {
            let next = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .unwrap_or_else(|_| panic!("no answer from chromium to {method}"));
            let Some(Ok(Message::Text(text))) = next else {
                continue;
            };
            let reply: Value = serde_json::from_str(&text).expect("DevTools JSON");
            if reply["id"] == json!(id) {
                assert!(reply["error"].is_null(), "{method}: {}", reply["error"]);
                return reply["result"].clone();
            }
        }
    }

    /// Evaluates a JavaScript expression in the page and returns its value.
    async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        assert!(
            result["exceptionDetails"].is_null(),
            "`{expression}` threw: {}",
            result["exceptionDetails"]
        );
        result["result"]["value"].clone()
    }

    /// Waits until `expression` is truthy, and returns its value.
    async fn wait_for(&mut self, expression: &str) -> Value {
        let deadline = Instant::now() + PAGE_TIMEOUT;
        loop {
            let value = self.eval(expression).await;
            if !matches!(&value, Value::Null | Value::Bool(false))
                && value != json!(0)
                && value != json!("")
            {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "`{expression}` never became true"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn goto(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url})).await;
        self.wait_for("document.readyState === 'complete' && location.href !== 'about:blank'")
            .await;
    }

    /// The bibs of the visible results rows, in order, once the table shows exactly `expected`
    /// (the page updates itself: this waits for it).
    async fn wait_for_bibs(&mut self, expected: &[&str]) {
        let want = serde_json::to_string(expected).expect("JSON");
        let shown = format!(
            "JSON.stringify([...document.querySelectorAll('#results tbody tr:not(.hidden)')]\
             .map(tr => tr.cells[1].textContent)) === {}",
            serde_json::to_string(&want).expect("JSON")
        );
        if self.eval(&shown).await != json!(true) {
            let deadline = Instant::now() + PAGE_TIMEOUT;
            while self.eval(&shown).await != json!(true) {
                let now = self
                    .eval(
                        "JSON.stringify([...document.querySelectorAll('#results tbody tr:not(.hidden)')]\
                         .map(tr => tr.cells[1].textContent))",
                    )
                    .await;
                assert!(
                    Instant::now() < deadline,
                    "table shows {now}, expected {want}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// Sets a control's value and fires `change` (as a user picking an option).
    async fn choose(&mut self, id: &str, value: &str) {
        let script = format!(
            "(() => {{ const c = document.getElementById({id}); c.value = {value}; \
             c.dispatchEvent(new Event('change')); return c.value; }})()",
            id = json!(id),
            value = json!(value),
        );
        assert_eq!(self.eval(&script).await, json!(value));
    }
}

/// The seed's demo race (scripts/demo): bibs 101-105 men30, 201-205 women40, own start times.
const SEED: &str = "\
101 Matti Meikalainen male men30 08:00:00.000 08:30:00.000 09:00:00.000 09:30:00.000
102 Mikko Virtanen male men30 08:10:00.000 08:38:00.000 09:06:00.000 09:35:00.000
103 Jari Korhonen male men30 08:20:00.000 08:49:00.000 09:15:00.000 09:40:00.000
104 Pekka Lahtinen male men30 08:30:00.000 08:55:00.000 09:20:00.000 09:45:00.000
105 Antti Nieminen male men30 08:05:00.000 08:33:00.000 09:02:00.000 09:30:00.000
201 Aino Laine female women40 08:00:00.000 08:40:00.000 09:20:00.000 10:00:00.000
202 Liisa Heikkinen female women40 08:15:00.000 08:50:00.000 09:28:00.000 10:05:00.000
203 Helmi Koskinen female women40 08:05:00.000 08:44:00.000 09:25:00.000 10:02:00.000
204 Eila Mäkinen female women40 08:25:00.000 08:58:00.000 09:33:00.000 10:08:00.000
205 Sirkka Järvinen female women40 08:10:00.000 08:47:00.000 09:30:00.000 10:10:00.000";

/// The service with a write token and the seed race loaded through the API.
async fn seeded_app() -> TestApp {
    let app = spawn_app_with(Race::default(), Some("page-test-token")).await;
    for line in SEED.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let (status, body) = app
            .post(
                "/api/v1/competitors",
                json!({"bib": f[0], "first_name": f[1], "last_name": f[2], "gender": f[3],
                       "country": "Finland", "category": f[4]}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        app.times(
            f[0],
            json!({"start": f[5], "split1": f[6], "split2": f[7], "finish": f[8]}),
        )
        .await;
    }
    app
}

/// The bibs of a results query, in the API's order.
async fn api_bibs(app: &TestApp, query: &str) -> Vec<String> {
    let (status, page) = app.get(&format!("/api/v1/results{query}")).await;
    assert_eq!(status, 200, "{page}");
    page["results"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r["bib"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Loads, shows the seed race in the API's order with times and gaps, follows a filter and a
/// checkpoint change, shows a finish posted meanwhile without reloading, and opens a
/// competitor's splits.
#[tokio::test]
async fn results_page_shows_and_follows_the_race() {
    let app = seeded_app().await;
    let mut browser = Browser::launch().await;
    browser.goto(&format!("{}/", app.base)).await;
    assert_eq!(browser.eval("document.title").await, "Live results");
    // No waves in this race: no gun time to choose.
    assert_eq!(
        browser
            .eval("document.getElementById('by-label').hidden")
            .await,
        json!(true)
    );

    let everyone = api_bibs(&app, "").await;
    let everyone: Vec<&str> = everyone.iter().map(String::as_str).collect();
    // By elapsed time from each runner's own start, not by finish time of day.
    assert_eq!(everyone[..5], ["104", "103", "102", "105", "101"]);
    browser.wait_for_bibs(&everyone).await;
    let first = browser
        .eval("[...document.querySelector('#results tbody tr').cells].map(c => c.textContent)")
        .await;
    assert_eq!(
        first,
        json!(["1", "104", "Pekka Lahtinen", "men30", "1:15:00.000", ""])
    );
    let gaps = browser
        .eval("[...document.querySelectorAll('#results tbody tr')].slice(1, 4).map(tr => [tr.cells[0].textContent, tr.cells[5].textContent])")
        .await;
    // 102 and 105 tie (1:25:00) and share rank 3.
    assert_eq!(
        gaps,
        json!([["2", "+5:00.000"], ["3", "+10:00.000"], ["3", "+10:00.000"]])
    );
    browser
        .wait_for("document.getElementById('updated').textContent.startsWith('Updated ')")
        .await;
    browser.eval("window.notReloaded = true").await;

    // A filter change.
    browser.choose("group", "category:women40").await;
    browser
        .wait_for_bibs(&["204", "202", "203", "201", "205"])
        .await;
    browser.choose("checkpoint", "split1").await;
    let split1 = api_bibs(&app, "?category=women40&checkpoint=split1").await;
    let split1: Vec<&str> = split1.iter().map(String::as_str).collect();
    browser.wait_for_bibs(&split1).await;
    assert_eq!(split1[..2], ["204", "202"]);
    browser.choose("checkpoint", "finish").await;
    browser
        .wait_for_bibs(&["204", "202", "203", "201", "205"])
        .await;

    // A finish posted meanwhile appears without a reload: the page is waiting in a long poll.
    let (status, body) = app
        .post(
            "/api/v1/competitors",
            json!({"bib": "206", "first_name": "Kaisa", "last_name": "Nopea", "gender": "female",
                   "country": "Finland", "category": "women40"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    app.times(
        "206",
        json!({"start": "08:00:00.000", "finish": "09:50:00.000"}),
    )
    .await;
    browser
        .wait_for_bibs(&["204", "202", "206", "203", "201", "205"])
        .await;
    assert_eq!(browser.eval("window.notReloaded").await, json!(true));

    // The search narrows the rows; Enter on one opens the competitor's splits and leg times.
    browser
        .eval(
            "(() => { const s = document.getElementById('search'); s.value = 'koskinen'; \
             s.dispatchEvent(new Event('input')); })()",
        )
        .await;
    browser.wait_for_bibs(&["203"]).await;
    browser
        .eval("document.getElementById('filters').requestSubmit()")
        .await;
    browser
        .wait_for("document.querySelectorAll('#splits tbody tr').length === 4")
        .await;
    assert_eq!(
        browser
            .eval("document.getElementById('competitor-name').textContent")
            .await,
        "Helmi Koskinen (203)"
    );
    let splits = browser
        .eval(
            "[...document.querySelectorAll('#splits tbody tr')].map(tr => [...tr.cells].map(c => c.textContent))",
        )
        .await;
    assert_eq!(
        splits,
        json!([
            ["start", "08:05:00.000", "0:00.000", "", ""],
            ["split1", "08:44:00.000", "39:00.000", "39:00.000", "9"],
            ["split2", "09:25:00.000", "1:20:00.000", "41:00.000", "8"],
            ["finish", "10:02:00.000", "1:57:00.000", "37:00.000", "9"],
        ])
    );
    assert_eq!(browser.eval("window.notReloaded").await, json!(true));
}

/// A name holding markup from an imported start list is shown as text: no element is made
/// from it and no script in it runs.
#[tokio::test]
async fn results_page_shows_markup_in_names_as_text() {
    let app = seeded_app().await;
    let name = "<script>window.pwned=1</script><img src=x onerror=\"window.pwned=2\">";
    let csv = format!(
        "bib,first_name,last_name,gender,country,category\n666,\"{}\",<b>Bold</b>,male,Finland,men30\n",
        name.replace('"', "\"\"")
    );
    let (status, body) = app
        .send(
            app.request(Method::POST, "/api/v1/competitors/import")
                .bearer_auth("page-test-token")
                .header(reqwest::header::CONTENT_TYPE, "text/csv")
                .body(csv),
        )
        .await;
    assert_eq!((status, &body["created"]), (200, &json!(1)), "{body}");
    app.times(
        "666",
        json!({"start": "08:00:00.000", "finish": "08:10:00.000"}),
    )
    .await;

    let mut browser = Browser::launch().await;
    browser.goto(&format!("{}/", app.base)).await;
    browser
        .wait_for("document.querySelector('#results tbody tr')?.dataset.bib === '666'")
        .await;
    let cell = browser
        .eval("document.querySelector('#results tbody tr').cells[2].textContent")
        .await;
    assert_eq!(cell, json!(format!("{name} <b>Bold</b>")));
    assert_eq!(
        browser
            .eval("document.querySelectorAll('#results tbody script, #results tbody img, #results tbody b').length")
            .await,
        json!(0)
    );
    assert_eq!(browser.eval("typeof window.pwned").await, "undefined");
}

/// With waves, the page offers net or gun time and follows the choice.
#[tokio::test]
async fn results_page_switches_between_net_and_gun_time() {
    let mut race = Race::default();
    race.fields.push("wave".into());
    let app = spawn_app_with(race, None).await;
    assert!(
        app.put("/api/v1/waves/A", json!({"start": "09:00:00.000"}))
            .await
            .0
            < 300
    );
    for (bib, start, finish) in [
        ("1", "09:05:00.000", "10:00:00.000"), // net 55:00, gun 1:00:00
        ("2", "09:00:30.000", "09:58:00.000"), // net 57:30, gun 58:00
    ] {
        let (status, body) = app
            .post(
                "/api/v1/competitors",
                json!({"bib": bib, "first_name": "F", "last_name": bib, "gender": "male",
                       "country": "FI", "category": "men30", "wave": "A"}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        app.times(bib, json!({"start": start, "finish": finish}))
            .await;
    }
    let mut browser = Browser::launch().await;
    browser.goto(&format!("{}/", app.base)).await;
    browser.wait_for_bibs(&["1", "2"]).await;
    assert_eq!(
        browser
            .eval("document.getElementById('by-label').hidden")
            .await,
        json!(false)
    );
    browser.choose("by", "gun").await;
    browser.wait_for_bibs(&["2", "1"]).await;
    let time = browser
        .eval("document.querySelector('#results tbody tr').cells[4].textContent")
        .await;
    assert_eq!(time, "58:00.000");
}
