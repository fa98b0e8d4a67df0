//! What a person sees: a failing command's one error line, and `plan` on a terminal (a real
//! pseudo-terminal from `script`, against moto) listing each resource once under a header that
//! says what a plan is.

use crate::support;

use std::process::Stdio;
use std::time::Duration;

use support::{Moto, Provisioner, REGION, copy_of_files, repo_root};

/// A bad placeholder stops `render` with exactly one line on stderr: `error:`, the file, line
/// and column, what is wrong and what to do; nothing on stdout, exit 1.
#[tokio::test]
async fn a_failing_command_prints_one_error_line_with_where_and_what_to_do() {
    let files = copy_of_files();
    let path = files.path().join("task-definitions/api.json");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen("${API_IMAGE}", "${API_IMAGES}", 1)).unwrap();
    // `render` makes no AWS call: the endpoint is never contacted.
    let run = Provisioner::new("http://127.0.0.1:9", &["render"])
        .root(files.path())
        .expect(1)
        .await;
    assert_eq!(run.stdout, "", "nothing on stdout");
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line:\n{}", run.stderr);
    let line = lines[0];
    assert!(line.starts_with("error: "), "{line}");
    assert!(
        line.contains(&format!("{}:", path.display())),
        "names the file: {line}"
    );
    assert!(
        line.contains("unknown placeholder `${API_IMAGES}`; the provisioner fills only"),
        "{line}"
    );
    assert!(line.contains("API_IMAGE"), "names what is known: {line}");
    assert!(line.ends_with("(check the spelling)"), "{line}");
}

/// `provisioner plan` on a terminal against an empty account: the header says it is a dry run
/// (not "nothing changed" above 25 creations), each resource's line appears once (the spinner
/// names resources without repeating their lines, and no log line repeats them), and the
/// summary counts the creations.
#[tokio::test]
async fn plan_on_a_terminal_shows_each_resource_once_under_an_honest_header() {
    let moto = Moto::start().await;
    let home = tempfile::tempdir().unwrap();
    let command = format!(
        "{} plan --root {}",
        env!("CARGO_BIN_EXE_provisioner"),
        repo_root().display()
    );
    // `script` runs the command on a pseudo-terminal (stdout and stderr both on it) and copies
    // what it shows to its own stdout.
    let output = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new("script")
            .args(["--quiet", "--return", "--command", &command, "/dev/null"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", home.path())
            .env("TERM", "xterm")
            .env("COLUMNS", "200")
            .env("AWS_CONFIG_FILE", home.path().join("config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                home.path().join("credentials"),
            )
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ENDPOINT_URL", &moto.url)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", REGION)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("plan ran for over 2 minutes")
    .expect("`script` runs (package bsdutils / util-linux)");
    let shown = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(output.status.code(), Some(2), "plan with changes:\n{shown}");

    let header = shown
        .lines()
        .find(|l| l.contains("plan app `timing`"))
        .unwrap_or_else(|| panic!("no header:\n{shown}"));
    assert!(!header.contains("nothing changed"), "{header}");
    assert!(header.contains("dry run"), "{header}");

    let creations: Vec<&str> = shown
        .lines()
        .filter_map(|l| l.split_once("+ create").map(|(_, rest)| rest.trim()))
        .collect();
    assert!(creations.len() >= 20, "{shown}");
    for resource in &creations {
        // The report's line, or a log line repeating it ("would + create ...").
        let times = shown
            .lines()
            .filter(|l| l.split_once("+ create").map(|(_, rest)| rest.trim()) == Some(*resource))
            .count();
        assert_eq!(times, 1, "`{resource}` shown {times} times:\n{shown}");
    }
    let summary = format!("would: {} to create", creations.len());
    assert!(shown.contains(&summary), "`{summary}` in:\n{shown}");
}
