//! A primary that fails over, and a connection that is black-holed, against real redis-server
//! processes behind a small TCP proxy. The proxy stands in for the DNS name of an ElastiCache
//! primary endpoint: new connections go where it points now, while a connection opened
//! before stays on the node it reached.

use super::{Logs, RedisServer, fleet, prefix};
use crate::fleet::{Admission, WindowSpec};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MODEL: &str = "anthropic.claude-3-haiku-20240307-v1:0";
const SPEC: WindowSpec = WindowSpec {
    requests: Some(1000),
    tokens: None,
    window: Duration::from_secs(60),
};

/// A TCP proxy on a loopback port: forwards each new connection to the port it points at now.
/// Its open connections can be black-holed: from then on they swallow what they read and never
/// answer, and none is reset (a path that died silently); later connections work.
struct Proxy {
    port: u16,
    target: Arc<AtomicU16>,
    open: Arc<Mutex<Vec<Arc<AtomicBool>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(target: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let target = Arc::new(AtomicU16::new(target));
        let open: Arc<Mutex<Vec<Arc<AtomicBool>>>> = Arc::default();
        let (t, o) = (target.clone(), open.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let t = t.load(Relaxed);
                let b = Arc::new(AtomicBool::new(false));
                o.lock().unwrap_or_else(|e| e.into_inner()).push(b.clone());
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(("127.0.0.1", t)).await {
                        let (cr, cw) = client.into_split();
                        let (sr, sw) = server.into_split();
                        tokio::spawn(pipe(cr, sw, b.clone()));
                        tokio::spawn(pipe(sr, cw, b));
                    }
                });
            }
        });
        Proxy {
            port,
            target,
            open,
            task,
        }
    }

    /// Black-holes every connection open now; returns how many.
    fn black_hole_open_connections(&self) -> usize {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        for c in open.iter() {
            c.store(true, Relaxed);
        }
        open.len()
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies one direction, dropping the bytes while black-holed (the connection stays open).
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    black_hole: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if black_hole.load(Relaxed) {
            continue;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

async fn admitted(f: &crate::fleet::Fleet) -> bool {
    matches!(
        f.acquire(MODEL, SPEC, 1, &[]).await.map(|a| a.admission),
        Ok(Admission::Admitted(_))
    )
}

/// Polls until the fleet admits through Redis again, for at most `limit`.
async fn back_within(f: &crate::fleet::Fleet, limit: Duration) -> bool {
    let end = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < end {
        if admitted(f).await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

async fn command(redis: &RedisServer, args: &[&str]) {
    let mut conn = redis.connection().await.expect("redis answers");
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    let _: redis::Value = cmd.query_async(&mut conn).await.expect("the command runs");
}

/// A failover: the primary is demoted to a replica (it answers writes with READONLY on the
/// connection the fleet holds) and the endpoint moves to the new primary. The fleet drops its
/// connection and is back within `retry_after` of the new primary being reachable.
#[tokio::test]
async fn a_failover_is_followed_to_the_new_primary() {
    let (Some(old), Some(new)) = (RedisServer::start().await, RedisServer::start().await) else {
        return;
    };
    // On this thread, under a subscriber: the log lines are checked, and the tests that count
    // log lines were seen to miss theirs when these callsites were first hit on a thread with
    // no subscriber (tracing's callsite interest is cached process-wide).
    let logs = Logs::default();
    let _guard = logs.capture();
    let proxy = Proxy::start(old.port()).await;
    let f = fleet(&proxy.url(), &prefix("failover"));
    assert!(back_within(&f, Duration::from_secs(5)).await, "up at first");
    // The failover: the new primary takes the endpoint, the old one becomes its replica.
    proxy.target.store(new.port(), Relaxed);
    command(&old, &["REPLICAOF", "127.0.0.1", &new.port().to_string()]).await;
    assert!(
        !admitted(&f).await,
        "the old connection reaches the demoted node"
    );
    // retry_after is 300 ms: back well within a few of them.
    assert!(
        back_within(&f, Duration::from_secs(3)).await,
        "the fleet follows the failover: {:?}",
        f.stats()
    );
    assert!(f.stats().reconnects >= 1, "{:?}", f.stats());
    let text = logs.text();
    assert!(
        text.contains("the connection is replaced by a new one"),
        "{text}"
    );
}

/// A black-holed connection (no reset, no answer): the fleet is down within its timeout, each
/// call stays fast, and the fleet is back through a new connection after a run of timeouts,
/// not after the kernel's retransmission limit on the old one (nor on a connection whose
/// answers, arriving late, would no longer match their requests).
#[tokio::test]
async fn a_black_holed_connection_is_replaced() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let logs = Logs::default();
    let _guard = logs.capture();
    let proxy = Proxy::start(redis.port()).await;
    let f = fleet(&proxy.url(), &prefix("black-hole"));
    assert!(back_within(&f, Duration::from_secs(5)).await, "up at first");
    assert!(proxy.black_hole_open_connections() >= 1);
    let started = std::time::Instant::now();
    assert!(!admitted(&f).await, "no answer: down");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "within the 500 ms timeout, with room: {:?}",
        started.elapsed()
    );
    assert!(
        back_within(&f, Duration::from_secs(5)).await,
        "sharing resumes on a new connection: {:?}",
        f.stats()
    );
    assert!(f.stats().reconnects >= 1, "{:?}", f.stats());
}
