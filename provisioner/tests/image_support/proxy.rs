//! A loopback HTTP/1.1 proxy in front of the test registry that records every request, can cut
//! one blob upload (a `PATCH` or `PUT` carrying blob bytes) either before any of it reaches the
//! registry or after part of its body, and can send paths under a prefix to another server (a
//! token server answering at the registry's own origin, as hosted registries serve both).
//!
//! Each request is forwarded on its own upstream connection with `Connection: close`, so the
//! response can be relayed until EOF without parsing it.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// One request as seen by the proxy.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    /// HTTP method.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Body bytes forwarded to the registry.
    pub body_forwarded: u64,
    /// Whether the proxy cut this request.
    pub cut: bool,
}

/// How to cut a blob upload.
#[derive(Debug, Clone, Copy)]
pub struct Cut {
    /// Cut the n-th request carrying blob bytes counted from when the cut is armed (1 = the
    /// next one).
    pub nth_upload: usize,
    /// `None`: forward nothing of it. `Some(n)`: forward the head and `n` body bytes.
    pub after_body_bytes: Option<usize>,
}

#[derive(Default)]
struct State {
    upstream: AtomicU16,
    /// `(path prefix, port)`: requests whose path starts with the prefix go to that port.
    routes: Mutex<Vec<(String, u16)>>,
    requests: Mutex<Vec<SeenRequest>>,
    cut: Mutex<Option<(Cut, usize)>>,
    body_bytes: AtomicU64,
    stop: AtomicBool,
}

/// The running proxy; stops when dropped.
pub struct Proxy {
    /// Its port on 127.0.0.1.
    pub port: u16,
    state: Arc<State>,
    thread: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Starts a proxy to `127.0.0.1:upstream_port`.
    pub fn start(upstream_port: u16) -> Self {
        let proxy = Self::start_unbound();
        proxy.set_upstream(upstream_port);
        proxy
    }

    /// Starts a proxy whose upstream is set later ([`Proxy::set_upstream`]), for a server that
    /// must know the proxy's address when it starts.
    pub fn start_unbound() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let state = Arc::new(State::default());
        let st = Arc::clone(&state);
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let st = Arc::clone(&st);
                std::thread::spawn(move || handle(conn, &st));
            }
        });
        Proxy {
            port,
            state,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Where requests go (`127.0.0.1:port`).
    pub fn set_upstream(&self, port: u16) {
        self.state.upstream.store(port, Ordering::SeqCst);
    }

    /// Sends requests whose path starts with `prefix` to `127.0.0.1:port` instead.
    pub fn route(&self, prefix: &str, port: u16) {
        self.state
            .routes
            .lock()
            .expect("routes lock")
            .push((prefix.to_string(), port));
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Arms a cut.
    pub fn arm(&self, cut: Cut) {
        *self.state.cut.lock().expect("cut lock") = Some((cut, 0));
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.state.requests.lock().expect("requests lock").clone()
    }

    /// Blob bytes (`PATCH` and `PUT` bodies to `/blobs/uploads/`) forwarded so far.
    pub fn upload_body_bytes(&self) -> u64 {
        self.state.body_bytes.load(Ordering::SeqCst)
    }

    /// Forgets the requests seen so far and resets the byte count.
    pub fn reset_counts(&self) {
        self.state.requests.lock().expect("requests lock").clear();
        self.state.body_bytes.store(0, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn handle(mut client: TcpStream, state: &State) {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(pos) = find(&buf, b"\r\n\r\n") {
            break pos + 4;
        }
        match client.read(&mut tmp) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_string();
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let path = target.split('?').next().unwrap_or_default().to_string();
    let mut content_length = 0usize;
    let mut new_head = format!("{request_line}\r\n");
    for line in lines {
        if line.is_empty() {
            continue;
        }
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("connection:") {
            continue;
        }
        if let Some(v) = lower.strip_prefix("content-length:") {
            content_length = v.trim().parse().unwrap_or(0);
        }
        new_head.push_str(line);
        new_head.push_str("\r\n");
    }
    new_head.push_str("Connection: close\r\n\r\n");

    let upstream_port = state
        .routes
        .lock()
        .expect("routes lock")
        .iter()
        .find(|(prefix, _)| path.starts_with(prefix.as_str()))
        .map_or_else(|| state.upstream.load(Ordering::SeqCst), |(_, port)| *port);
    let carries_blob = (method == "PATCH" || method == "PUT")
        && path.contains("/blobs/uploads/")
        && content_length > 0;
    let cut = if carries_blob {
        let mut armed = state.cut.lock().expect("cut lock");
        match armed.as_mut() {
            Some((cut, seen)) => {
                *seen += 1;
                if *seen == cut.nth_upload {
                    let c = *cut;
                    *armed = None;
                    Some(c)
                } else {
                    None
                }
            }
            None => None,
        }
    } else {
        None
    };
    let record = |forwarded: u64, was_cut: bool| {
        if (method == "PATCH" || method == "PUT") && path.contains("/blobs/uploads/") {
            state.body_bytes.fetch_add(forwarded, Ordering::SeqCst);
        }
        state
            .requests
            .lock()
            .expect("requests lock")
            .push(SeenRequest {
                method: method.clone(),
                path: path.clone(),
                body_forwarded: forwarded,
                cut: was_cut,
            });
    };

    if let Some(Cut {
        after_body_bytes: None,
        ..
    }) = cut
    {
        record(0, true);
        let _ = client.shutdown(Shutdown::Both);
        return;
    }
    let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", upstream_port)) else {
        return;
    };
    if upstream.write_all(new_head.as_bytes()).is_err() {
        return;
    }
    let limit = match cut {
        Some(Cut {
            after_body_bytes: Some(n),
            ..
        }) => n.min(content_length),
        _ => content_length,
    };
    let mut body = buf[head_end..].to_vec();
    let mut forwarded = 0usize;
    loop {
        let take = body.len().min(limit - forwarded);
        if take > 0 && upstream.write_all(&body[..take]).is_err() {
            break;
        }
        forwarded += take;
        if forwarded >= limit {
            break;
        }
        match client.read(&mut tmp) {
            Ok(0) | Err(_) => break,
            Ok(n) => body = tmp[..n].to_vec(),
        }
    }
    record(forwarded as u64, cut.is_some());
    if cut.is_some() {
        // Let the registry read what it got, then drop both sides mid-body.
        let _ = upstream.flush();
        std::thread::sleep(std::time::Duration::from_millis(100));
        let _ = upstream.shutdown(Shutdown::Both);
        let _ = client.shutdown(Shutdown::Both);
        return;
    }
    let mut response = Vec::new();
    let _ = upstream.read_to_end(&mut response);
    let _ = client.write_all(&response);
    let _ = client.shutdown(Shutdown::Both);
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
