//! A Docker-style token server for the registry's `auth: token` mode, so the client's Bearer
//! challenge flow runs against the real registry's token verification.
//!
//! It checks the Basic credentials of `GET /token?service=..&scope=..` and answers a JWT
//! (RS256, `x5c` = a self-signed certificate the registry trusts through `rootcertbundle`)
//! granting exactly the requested scope. Keys and signatures come from the `openssl` CLI.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use tempfile::TempDir;

use crate::support::protocol::form_field;

/// `service` of the tokens (the registry's `auth.token.service`).
pub const SERVICE: &str = "test-registry";
/// `iss` of the tokens (the registry's `auth.token.issuer`).
pub const ISSUER: &str = "test-token-issuer";

struct Shared {
    basic: String,
    key: PathBuf,
    x5c: String,
    dir: PathBuf,
    scopes: Mutex<Vec<String>>,
    /// Requests seen, and those that carried any `Authorization` header.
    requests: AtomicUsize,
    with_credentials: AtomicUsize,
    stop: AtomicBool,
}

/// The running token server; stops when dropped.
pub struct TokenServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    dir: TempDir,
}

fn openssl(args: &[&str], dir: &Path) -> Vec<u8> {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "`openssl` is needed for the token-auth test: `apt-get install -y openssl` ({e})"
            )
        });
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
    out.stdout
}

impl TokenServer {
    /// Starts a token server that accepts `user`/`password`.
    pub fn start(user: &str, password: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        openssl(
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "key.pem",
                "-out",
                "cert.pem",
                "-days",
                "1",
                "-subj",
                "/CN=test-token-issuer",
            ],
            dir.path(),
        );
        let der = openssl(&["x509", "-in", "cert.pem", "-outform", "DER"], dir.path());
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind token server");
        let port = listener.local_addr().expect("addr").port();
        let shared = Arc::new(Shared {
            basic: format!("Basic {}", STANDARD.encode(format!("{user}:{password}"))),
            key: dir.path().join("key.pem"),
            x5c: STANDARD.encode(der),
            dir: dir.path().to_path_buf(),
            scopes: Mutex::new(Vec::new()),
            requests: AtomicUsize::new(0),
            with_credentials: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let sh = Arc::clone(&shared);
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sh.stop.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn {
                    answer(conn, &sh);
                }
            }
        });
        TokenServer {
            port,
            shared,
            thread: Some(thread),
            dir,
        }
    }

    /// The `realm` for the registry config.
    pub fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    /// The certificate the registry must trust.
    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    /// `(requests, requests carrying an Authorization header)` so far.
    pub fn requests(&self) -> (usize, usize) {
        (
            self.shared.requests.load(Ordering::SeqCst),
            self.shared.with_credentials.load(Ordering::SeqCst),
        )
    }

    /// Scopes asked for by authenticated requests, in order.
    pub fn scopes(&self) -> Vec<String> {
        self.shared.scopes.lock().expect("scopes lock").clone()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn answer(mut conn: TcpStream, shared: &Shared) {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut tmp) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let target = head.split(' ').nth(1).unwrap_or_default().to_string();
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or_default();
    shared.requests.fetch_add(1, Ordering::SeqCst);
    if head
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("authorization:"))
    {
        shared.with_credentials.fetch_add(1, Ordering::SeqCst);
    }
    let authorized = head.lines().any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.eq_ignore_ascii_case("authorization") && v.trim() == shared.basic
        })
    });
    let (status, body) = if authorized {
        let scope = form_field(query, "scope").unwrap_or_default();
        shared
            .scopes
            .lock()
            .expect("scopes lock")
            .push(scope.clone());
        let token = jwt(shared, &scope);
        (
            "200 OK",
            format!("{{\"token\":\"{token}\",\"expires_in\":300}}"),
        )
    } else {
        (
            "401 Unauthorized",
            "{\"errors\":[{\"code\":\"UNAUTHORIZED\",\"message\":\"bad credentials\"}]}".into(),
        )
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.write_all(response.as_bytes());
    let _ = conn.shutdown(Shutdown::Both);
}

/// A JWT granting `scope` (`repository:<name>:<actions>`).
fn jwt(shared: &Shared, scope: &str) -> String {
    let mut parts = scope.splitn(3, ':');
    let (kind, name, actions) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let actions: Vec<String> = actions
        .split(',')
        .filter(|a| !a.is_empty())
        .map(|a| format!("\"{a}\""))
        .collect();
    let access = if name.is_empty() {
        "[]".to_string()
    } else {
        format!(
            "[{{\"type\":\"{kind}\",\"name\":\"{name}\",\"actions\":[{}]}}]",
            actions.join(",")
        )
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let header = format!(
        "{{\"typ\":\"JWT\",\"alg\":\"RS256\",\"x5c\":[\"{}\"]}}",
        shared.x5c
    );
    let claims = format!(
        "{{\"iss\":\"{ISSUER}\",\"sub\":\"AWS\",\"aud\":\"{SERVICE}\",\"exp\":{},\"nbf\":{},\"iat\":{now},\"jti\":\"{now}-{}\",\"access\":{access}}}",
        now + 300,
        now - 10,
        std::process::id()
    );
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let input_path = shared.dir.join(format!("input-{now}-{}", rand_suffix()));
    std::fs::write(&input_path, &signing_input).expect("write signing input");
    let key = shared.key.to_string_lossy().into_owned();
    let input = input_path.to_string_lossy().into_owned();
    let signature = openssl(
        &["dgst", "-sha256", "-binary", "-sign", &key, &input],
        &shared.dir,
    );
    let _ = std::fs::remove_file(&input_path);
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn rand_suffix() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}
