//! What a person sees: a failing command's one error line, and `plan` on a terminal (a real
//! pseudo-terminal from `script`, against moto) listing each resource once under a header that
//! says what a plan is.

use crate::support;

use std::process::Stdio;
use std::time::Duration;

use support::{Moto, Provisioner, copy_of_files};

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
    // The run as every test runs the binary (arguments, dummy credentials, moto, an empty
    // HOME), handed to `script`, which runs it on a pseudo-terminal (stdout and stderr both on
    // it) and copies what it shows to its own stdout.
    let plan = Provisioner::new(&moto.url, &["plan"]).command(home.path());
    let plan = plan.as_std();
    let command = std::iter::once(plan.get_program())
        .chain(plan.get_args())
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    let output = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new("script")
            .args(["--quiet", "--return", "--command", &command, "/dev/null"])
            .env_clear()
            .envs(
                plan.get_envs()
                    .filter_map(|(key, value)| Some((key, value?))),
            )
            .env("TERM", "xterm")
            .env("COLUMNS", "200")
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
