//! Starting the real programs the tests drive (moto, redis-server, docker-registry): a free
//! loopback port, a server started on it and waited for, and a clear failure naming what to
//! install when a program is missing. Every test's servers go through here.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A port nobody listens on right now, below the kernel's ephemeral range (32768+), so that
/// sockets bound to port 0 (proxies, token servers, outgoing connections) in parallel tests
/// can never take it between this choice and the server's own bind.
pub fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    const LOW: u16 = 20_000;
    const SPAN: u16 = 12_000;
    if NEXT.load(Ordering::SeqCst) == 0 {
        let seed = std::process::id()
            ^ SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or_default();
        let _ = NEXT.compare_exchange(
            0,
            (seed % u32::from(SPAN)) as u16,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
    }
    for _ in 0..SPAN {
        let port = LOW + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 127.0.0.1:{LOW}-{}", LOW + SPAN);
}

/// Starts a server on a free port: `command(port)` is spawned; if it exits before listening
/// (another process took the port), another port is tried, up to 5 times. `log` is where the
/// server writes, shown when it never starts.
pub fn spawn_listening(what: &str, log: &Path, command: impl Fn(u16) -> Command) -> (Child, u16) {
    for _ in 0..5 {
        let port = free_port();
        let mut child = command(port)
            .spawn()
            .unwrap_or_else(|e| panic!("start {what}: {e}"));
        if wait_for_port(port, what, &mut child) {
            return (child, port);
        }
    }
    panic!(
        "{what} did not start in 5 tries; its log ({}):\n{}",
        log.display(),
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// Waits until `port` accepts connections while `child` runs: `false` if the child exited
/// first (or right after: then the port belonged to someone else).
fn wait_for_port(port: u16, what: &str, child: &mut Child) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            std::thread::sleep(Duration::from_millis(100));
            return matches!(child.try_wait(), Ok(None));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("{what} did not listen on 127.0.0.1:{port} within 20 s");
}

/// The path of `program` on this user's PATH, if it is there.
pub fn find_program(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    })
}

/// The path of `program`, or a failure saying it is missing and that the Debian package
/// `package` has it.
pub fn require_program(program: &str, package: &str) -> PathBuf {
    require_installed(
        program,
        &format!(
            "Install it with `apt-get install -y {package}` (scripts/install-deps does this)."
        ),
    )
}

/// The path of `program`, or a failure saying it is missing from this user's PATH and, in
/// `install`, how to install it.
pub fn require_installed(program: &str, install: &str) -> PathBuf {
    find_program(program).unwrap_or_else(|| {
        panic!(
            "`{program}` is not on this user's PATH ({}); the tests need it. {install}",
            std::env::var("PATH").unwrap_or_default()
        )
    })
}

/// A child process killed and reaped when dropped.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
