//! Tests of the shared window and cooldowns against a real `redis-server` on a free loopback
//! port (skipped, with a message, when `redis-server` is not on PATH; `.ci/run` installs it).

mod cluster;
mod failover;
mod outage;
mod tls;
mod window;

use super::{Fleet, FleetConfig};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// A `redis-server` child process on a loopback port, killed on drop.
pub(super) struct RedisServer {
    port: u16,
    password: Option<String>,
    /// TLS only (`--tls-port`, no plain port): the certificate, key and CA files.
    tls: Option<[std::path::PathBuf; 3]>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server; `None` (after printing why) when `redis-server` is not installed.
    pub(super) async fn start() -> Option<RedisServer> {
        Self::start_inner(None).await
    }

    /// Starts a server that requires `password` (`--requirepass`).
    pub(super) async fn start_with_password(password: &str) -> Option<RedisServer> {
        Self::start_inner(Some(password.to_string())).await
    }

    /// Starts a server speaking TLS only, with this certificate, key and CA (files).
    pub(super) async fn start_tls(files: [std::path::PathBuf; 3]) -> Option<RedisServer> {
        let mut s = Self::installed(None)?;
        s.tls = Some(files);
        s.restart().await;
        Some(s)
    }

    fn installed(password: Option<String>) -> Option<RedisServer> {
        if !redis_installed() {
            return None;
        }
        Some(RedisServer {
            port: free_port(),
            password,
            tls: None,
            child: None,
        })
    }

    async fn start_inner(password: Option<String>) -> Option<RedisServer> {
        let mut server = Self::installed(password)?;
        server.restart().await;
        Some(server)
    }

    /// Returns `redis://[:password@]127.0.0.1:port`.
    pub(super) fn url(&self) -> String {
        match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// Returns the port.
    pub(super) fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (SIGKILL, as a crash would) and waits for it to exit.
    pub(super) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// (Re)starts the server on the same port and waits until it answers PING.
    pub(super) async fn restart(&mut self) {
        self.stop();
        let mut cmd = Command::new("redis-server");
        cmd.args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(p) = &self.password {
            cmd.args(["--requirepass", p]);
        }
        match &self.tls {
            None => {
                cmd.args(["--port", &self.port.to_string()]);
            }
            Some([cert, key, ca]) => {
                cmd.args(["--port", "0", "--tls-port", &self.port.to_string()])
                    .arg("--tls-cert-file")
                    .arg(cert)
                    .arg("--tls-key-file")
                    .arg(key)
                    .arg("--tls-ca-cert-file")
                    .arg(ca)
                    .args(["--tls-auth-clients", "no"]);
            }
        }
        self.child = Some(cmd.spawn().expect("redis-server starts"));
        for _ in 0..200 {
            let up = match self.tls {
                None => self.connection().await.is_ok(),
                // Listening is enough: the test itself speaks TLS to it.
                Some(_) => std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok(),
            };
            if up {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "redis-server on port {} did not answer PING in 5 s",
            self.port
        );
    }

    /// Returns a plain connection for inspecting keys, after a PING.
    pub(super) async fn connection(&self) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
        let client = redis::Client::open(self.url())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await?;
        Ok(conn)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether `redis-server` (and `redis-cli`, of the same package) can be run; prints why not.
/// Panics instead where CI asks for the Redis tests (`BEDROCK_POOL_REQUIRE_REDIS`): there a
/// missing server is a failure, never a silent skip.
pub(super) fn redis_installed() -> bool {
    let runs = |bin: &str| Command::new(bin).arg("--version").output().is_ok();
    if runs("redis-server") && runs("redis-cli") {
        return true;
    }
    assert!(
        std::env::var_os("BEDROCK_POOL_REQUIRE_REDIS").is_none(),
        "BEDROCK_POOL_REQUIRE_REDIS is set but redis-server or redis-cli is not on PATH"
    );
    eprintln!("SKIPPED: redis-server is not on PATH (apt-get install redis-server)");
    false
}

/// Returns a loopback port that was free a moment ago.
pub(super) fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

/// Returns a key prefix of its own for each test, so that tests may share nothing by accident.
pub(super) fn prefix(name: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("t{}-{name}", N.fetch_add(1, Ordering::Relaxed))
}

/// Returns a fleet on `url` with a generous timeout for this busy 2-core machine.
pub(super) fn fleet(url: &str, prefix: &str) -> Fleet {
    let config = FleetConfig::new(url, prefix)
        .timeout(Duration::from_millis(500))
        .retry_after(Duration::from_millis(300));
    Fleet::new(&config).expect("fleet builds")
}

/// Polls `f` until it is true or 5 s pass; returns the last value.
pub(super) async fn eventually<F: Future<Output = bool>>(f: impl FnMut() -> F) -> bool {
    eventually_within(Duration::from_secs(5), f).await
}

/// Polls `f` every 20 ms until it is true or `within` passes; returns the last value.
pub(super) async fn eventually_within<F: Future<Output = bool>>(
    within: Duration,
    mut f: impl FnMut() -> F,
) -> bool {
    let started = std::time::Instant::now();
    while started.elapsed() < within {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Log lines captured from a `tracing` subscriber set as the thread's default.
#[derive(Clone, Default)]
pub(super) struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Logs {
    /// Sets a subscriber writing here as the thread's default, until the guard drops.
    pub(super) fn capture(&self) -> tracing::subscriber::DefaultGuard {
        let logs = self.clone();
        let sub = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || logs.clone())
            .finish();
        tracing::subscriber::set_default(sub)
    }

    /// Returns everything logged so far.
    pub(super) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
