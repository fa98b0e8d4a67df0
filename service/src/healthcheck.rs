//! `timing-service healthcheck`: the container health check of a distroless image (no curl).
//!
//! Sends `GET /health` over plain HTTP/1.0 to the port of `LISTEN_ADDR` on the loopback
//! address (or the listen address itself when it is a specific one) and succeeds on a 200
//! within [`TIMEOUT`]. Deliberately tiny: a tokio `TcpStream`, no HTTP client.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Bound of the whole check.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// The address to probe for a listen address.
pub fn probe_addr(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

async fn probe(addr: SocketAddr) -> Result<(), String> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let request = format!("GET /health HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("cannot send to {addr}: {e}"))?;
    let mut head = [0u8; 32];
    let mut len = 0;
    while len < 12 {
        let n = stream
            .read(&mut head[len..])
            .await
            .map_err(|e| format!("cannot read from {addr}: {e}"))?;
        if n == 0 {
            break;
        }
        len += n;
    }
    let status_line = String::from_utf8_lossy(&head[..len]);
    let mut parts = status_line.split_whitespace();
    match (parts.next(), parts.next()) {
        (Some(version), Some("200")) if version.starts_with("HTTP/1.") => Ok(()),
        _ => Err(format!("unhealthy answer from {addr}: {status_line:?}")),
    }
}

/// Runs the check; `Err` says why it failed.
pub async fn run(listen: SocketAddr) -> Result<(), String> {
    let addr = probe_addr(listen);
    match tokio::time::timeout(TIMEOUT, probe(addr)).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "no answer from {addr} within {} s",
            TIMEOUT.as_secs()
        )),
    }
}
