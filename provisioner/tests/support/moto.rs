//! The AWS emulator: a `moto_server` of the test's own on a free loopback port, started with
//! the two settings the provisioner needs, its output in a log file, killed when dropped.

use std::process::{Command, Stdio};

use tempfile::TempDir;

use super::process::{KillOnDrop, require_installed, spawn_listening};
use super::{REGION, sdk_config_at};

/// How to get moto without root on a machine that lacks it. Debian and Ubuntu refuse
/// `pip install --user` into the system Python (PEP 668), so it goes into a venv of its own.
const INSTALL_MOTO: &str = "Install it with `python3 -m venv ~/.local/moto && \
     ~/.local/moto/bin/pip install 'moto[server]==5.2.1'` and put ~/.local/moto/bin on PATH \
     (scripts/install-deps does this, as root or not).";

/// A moto server of this test's own.
pub struct Moto {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Its port on 127.0.0.1.
    pub port: u16,
    // Field order: the server is killed before its log directory goes.
    _child: KillOnDrop,
    _dir: TempDir,
}

impl Moto {
    /// Starts `moto_server` with AWS managed IAM policies loaded (the execution role attaches
    /// one) and ECS services reported running (else a new service stays pending for ever).
    pub async fn start() -> Self {
        let program = require_installed("moto_server", INSTALL_MOTO);
        let dir = tempfile::tempdir().expect("tempdir");
        let log_path = dir.path().join("moto.log");
        // The wait is a blocking poll: off the test's runtime, whose other tasks keep running.
        let log = log_path.clone();
        let (child, port) = tokio::task::spawn_blocking(move || {
            spawn_listening("moto_server", &log, |port| {
                let out = std::fs::File::create(&log).expect("create moto log");
                let mut command = Command::new(&program);
                command
                    .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                    .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
                    .env("MOTO_ECS_SERVICE_RUNNING", "1")
                    .stdin(Stdio::null())
                    .stdout(out.try_clone().expect("clone log handle"))
                    .stderr(out);
                command
            })
        })
        .await
        .expect("moto start");
        Self {
            url: format!("http://127.0.0.1:{port}"),
            port,
            _child: KillOnDrop(child),
            _dir: dir,
        }
    }

    /// SDK configuration pointing straight at moto in the tests' region, for checking what
    /// the binary did (calls made with it bypass the recording proxy).
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        sdk_config_at(&self.url, REGION).await
    }
}
