//! Running the real `provisioner` binary: [`Provisioner`] describes one run (arguments, app,
//! files, environment), [`Run`] is what it produced. Every run gets dummy credentials, the
//! tests' region and an empty HOME unless told otherwise, so nothing of the machine's own AWS
//! set-up leaks in, and is bounded in time.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::sync::oneshot;

use super::{REGION, repo_root};

/// The longest one run may take before the test fails.
const RUN_LIMIT: Duration = Duration::from_secs(300);

/// Lets the test proxy SIGKILL the provisioner process that is running against it: the run
/// registers itself; the proxy pulls the switch and waits until the process is dead.
#[derive(Clone, Default)]
pub struct KillSwitch {
    registered: Arc<Mutex<Option<oneshot::Sender<oneshot::Sender<()>>>>>,
}

impl KillSwitch {
    /// Registers a run: the receiver gets a message when the process must die, and
    /// answers on it once it is dead.
    fn register(&self) -> oneshot::Receiver<oneshot::Sender<()>> {
        let (sender, receiver) = oneshot::channel();
        *self.registered.lock().unwrap() = Some(sender);
        receiver
    }

    fn unregister(&self) {
        self.registered.lock().unwrap().take();
    }

    /// Kills the registered run's process and waits (up to 10 s) until it is dead. Without a
    /// run registered, nothing happens.
    pub async fn pull(&self) {
        let Some(run) = self.registered.lock().unwrap().take() else {
            return;
        };
        let (dead, confirmed) = oneshot::channel();
        if run.send(dead).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(10), confirmed).await;
        }
    }
}

/// What one run of the binary produced.
#[derive(Debug)]
pub struct Run {
    /// The exit code; -1 when a signal ended the process.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// Whether the test proxy killed the process (SIGKILL).
    pub killed: bool,
}

impl Run {
    /// stdout parsed as the JSON report.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// Panics with the output unless the exit code is `code`.
    pub fn expect_code(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// One run of the binary, built up step by step; [`Provisioner::run`] starts it.
#[must_use]
pub struct Provisioner {
    args: Vec<String>,
    root: PathBuf,
    endpoint: Option<String>,
    env: Vec<(String, String)>,
    kill_switch: Option<KillSwitch>,
}

impl Provisioner {
    /// `provisioner ARGS` against `endpoint` with dummy credentials in the tests' region, on
    /// the repository's task-definition and policy files.
    pub fn new(endpoint: &str, args: &[&str]) -> Self {
        Self {
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            root: repo_root(),
            endpoint: Some(endpoint.to_owned()),
            env: [
                ("AWS_ACCESS_KEY_ID", "test"),
                ("AWS_SECRET_ACCESS_KEY", "test"),
                ("AWS_REGION", REGION),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            kill_switch: None,
        }
    }

    /// Task-definition and policy files from `root` instead of the repository's.
    pub fn root(mut self, root: &Path) -> Self {
        self.root = root.to_owned();
        self
    }

    /// `--app NAME`.
    pub fn app(self, name: &str) -> Self {
        self.args(&["--app", name])
    }

    /// More arguments.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    /// `--output json`.
    pub fn json(self) -> Self {
        self.args(&["--output", "json"])
    }

    /// Sets one more environment variable.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// One attempt per AWS call (`AWS_MAX_ATTEMPTS=1`), for a run cut off by an outage: the
    /// default ten attempts would only wait out their back-off, about two minutes a run, before
    /// the same failure. (Retries through throttling and errors that pass are `faults.rs`.)
    pub fn one_attempt_per_call(self) -> Self {
        self.env("AWS_MAX_ATTEMPTS", "1")
    }

    /// Leaves out an environment variable (e.g. `AWS_REGION`, to see it missed).
    pub fn without_env(mut self, key: &str) -> Self {
        self.env.retain(|(k, _)| k != key);
        self
    }

    /// Lets a test proxy kill the process (see `Proxy::kill_after`).
    pub(super) fn killable_by(mut self, switch: KillSwitch) -> Self {
        self.kill_switch = Some(switch);
        self
    }

    /// The binary as a command with only the environment described (plus PATH, and `home`
    /// as HOME so no file of the developer's is read), for tests that need its process (to
    /// signal it, or to close its stdout); [`Provisioner::run`] runs it to its end.
    pub fn command(&self, home: &Path) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_provisioner"));
        command
            .args(&self.args)
            .arg("--root")
            .arg(&self.root)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", home)
            .env("AWS_CONFIG_FILE", home.join("config"))
            .env("AWS_SHARED_CREDENTIALS_FILE", home.join("credentials"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(endpoint) = &self.endpoint {
            command.env("AWS_ENDPOINT_URL", endpoint);
        }
        for (key, value) in &self.env {
            command.env(key, value);
        }
        command
    }

    /// Runs the binary with only the environment described (plus PATH and an empty HOME)
    /// and waits for it to end, or for the test proxy to kill it.
    pub async fn run(self) -> Run {
        let home = tempfile::tempdir().unwrap();
        let mut command = self.command(home.path());
        let mut child = command.spawn().unwrap();
        let stdout = read_all(child.stdout.take().unwrap());
        let stderr = read_all(child.stderr.take().unwrap());
        let kill_order = self.kill_switch.as_ref().map(KillSwitch::register);
        let ended = async {
            match kill_order {
                None => (child.wait().await.unwrap(), false),
                Some(order) => tokio::select! {
                    status = child.wait() => (status.unwrap(), false),
                    Ok(dead) = order => {
                        child.kill().await.unwrap();
                        let status = child.wait().await.unwrap();
                        let _ = dead.send(());
                        (status, true)
                    }
                },
            }
        };
        let (status, killed) = tokio::time::timeout(RUN_LIMIT, ended)
            .await
            .unwrap_or_else(|_| panic!("{:?} ran for over {RUN_LIMIT:?}", self.args));
        if let Some(switch) = &self.kill_switch {
            switch.unregister();
        }
        Run {
            code: status.code().unwrap_or(-1),
            stdout: stdout.await.unwrap(),
            stderr: stderr.await.unwrap(),
            killed: killed && status.signal() == Some(9),
        }
    }

    /// Runs the binary and panics with its output unless it exits with `code`.
    pub async fn expect(self, code: i32) -> Run {
        self.run().await.expect_code(code)
    }
}

/// Reads a child's pipe to its end, on a task of its own (so a full pipe never blocks it).
fn read_all(
    mut pipe: impl tokio::io::AsyncRead + Unpin + Send + 'static,
) -> tokio::task::JoinHandle<String> {
    tokio::spawn(async move {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes).await;
        String::from_utf8_lossy(&bytes).into_owned()
    })
}
