//! The per-connection middlebox: a TCP stream wrapper (below TLS) that tracks idle time and can
//! go silent, close (FIN) or reset (RST) the connection; plus the graceful-close request its
//! task turns into an HTTP/2 GOAWAY or an HTTP/1.1 `Connection: close`.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Notify, watch};

use super::fault::IdleFault;
use super::lock::lock;
use super::record::Counters;

/// The connection works normally.
const LIVE: u8 = 0;
/// The connection is a black hole: reads are swallowed, writes dropped, nothing closes.
const DEAD: u8 = 1;
/// The connection is being reset (SO_LINGER 0, then dropped).
const RESET: u8 = 2;
/// The connection is being closed (FIN).
const CLOSE: u8 = 3;

/// The server-wide idle fault setting, read by every connection on each read.
pub(crate) type IdleSetting = Mutex<Option<IdleFault>>;

/// Holds the state one connection shares between its stream, its task and its request handlers.
#[derive(Debug)]
pub(crate) struct ConnShared {
    /// The connection id (unique per server).
    pub(crate) id: u64,
    base: Instant,
    /// Nanoseconds after `base` of the last byte read or written.
    last_activity: AtomicU64,
    state: AtomicU8,
    kill: Notify,
    closed: watch::Receiver<()>,
    idle: Arc<IdleSetting>,
    /// The counters of the connection's listener.
    counters: Arc<Counters>,
    /// Set once a graceful close was asked for.
    goaway_asked: AtomicBool,
    goaway: Notify,
}

impl ConnShared {
    /// Returns the shared state and the sender whose drop marks the connection closed.
    pub(crate) fn new(
        id: u64,
        idle: Arc<IdleSetting>,
        counters: Arc<Counters>,
    ) -> (Arc<Self>, watch::Sender<()>) {
        let (tx, rx) = watch::channel(());
        let conn = Arc::new(Self {
            id,
            base: Instant::now(),
            last_activity: AtomicU64::new(0),
            state: AtomicU8::new(LIVE),
            kill: Notify::new(),
            closed: rx,
            idle,
            counters,
            goaway_asked: AtomicBool::new(false),
            goaway: Notify::new(),
        });
        (conn, tx)
    }

    fn touch(&self) {
        let nanos = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_activity.store(nanos, Ordering::Relaxed);
    }

    /// Returns how long no byte went either way.
    pub(crate) fn idle_for(&self) -> Duration {
        self.base.elapsed().saturating_sub(Duration::from_nanos(
            self.last_activity.load(Ordering::Relaxed),
        ))
    }

    /// Returns the current idle fault setting.
    pub(crate) fn idle_fault(&self) -> Option<IdleFault> {
        *lock(&self.idle)
    }

    /// Returns whether the connection is still working normally.
    pub(crate) fn is_live(&self) -> bool {
        self.state.load(Ordering::Relaxed) == LIVE
    }

    /// Returns whether the connection is a black hole.
    pub(crate) fn is_silent(&self) -> bool {
        self.state.load(Ordering::Relaxed) == DEAD
    }

    fn transition(&self, to: u8) -> bool {
        self.state
            .compare_exchange(LIVE, to, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }

    /// Resets the connection (RST): its task drops it with SO_LINGER 0. A black hole stays one.
    pub(crate) fn reset(&self) {
        if self.transition(RESET) || !self.is_silent() {
            self.kill.notify_one();
        }
    }

    /// Turns a live connection into a black hole at once; returns whether it was live.
    ///
    /// Reads are swallowed, writes dropped, and the connection never closes (until the server is
    /// dropped); every request in flight on it stays unanswered.
    pub(crate) fn silence(&self) -> bool {
        let silenced = self.transition(DEAD);
        if silenced {
            self.counters.silenced();
        }
        silenced
    }

    /// Asks the connection task to close a live connection gracefully (HTTP/2 GOAWAY, HTTP/1.1
    /// `Connection: close` after the response in flight); returns whether this was the first ask.
    pub(crate) fn ask_goaway(&self) -> bool {
        if !self.is_live() || self.goaway_asked.swap(true, Ordering::Relaxed) {
            return false;
        }
        self.counters.goaway();
        self.goaway.notify_one();
        true
    }

    /// Waits until a graceful close is asked for.
    pub(crate) async fn goaway_asked(&self) {
        self.goaway.notified().await;
    }

    /// Closes the connection cleanly (FIN): its task drops it. A black hole stays one.
    pub(crate) fn close(&self) {
        if self.transition(CLOSE) || !self.is_silent() {
            self.kill.notify_one();
        }
    }

    /// Waits until the task is told to drop the connection.
    pub(crate) async fn killed(&self) {
        self.kill.notified().await;
    }

    /// Waits until the connection task has ended.
    pub(crate) async fn closed(&self) {
        let mut rx = self.closed.clone();
        while rx.changed().await.is_ok() {}
    }
}

/// Wraps an accepted TCP stream: tracks activity and applies the connection's fault state.
#[derive(Debug)]
pub(crate) struct TrackedStream {
    tcp: TcpStream,
    conn: Arc<ConnShared>,
}

impl TrackedStream {
    /// Returns the wrapper.
    pub(crate) fn new(tcp: TcpStream, conn: Arc<ConnShared>) -> Self {
        conn.touch();
        Self { tcp, conn }
    }

    /// Swallows whatever arrives; never reports data, EOF or errors.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut scratch = [0u8; 4096];
        loop {
            let mut rb = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.tcp).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) if !rb.filled().is_empty() => continue,
                // EOF or error: stay silent (and open) forever.
                Poll::Ready(_) | Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl AsyncRead for TrackedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match this.conn.state.load(Ordering::Relaxed) {
                DEAD => return this.drain(cx),
                RESET => return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into())),
                CLOSE => return Poll::Ready(Ok(())),
                _ => {}
            }
            let before = buf.filled().len();
            ready!(Pin::new(&mut this.tcp).poll_read(cx, buf))?;
            if buf.filled().len() == before {
                return Poll::Ready(Ok(()));
            }
            let idle = this.conn.idle_for();
            match this.conn.idle_fault() {
                Some(IdleFault::SilentlyDead { after }) if idle >= after => {
                    buf.set_filled(before);
                    this.conn.silence();
                }
                Some(IdleFault::Reset { after }) if idle >= after => {
                    buf.set_filled(before);
                    this.conn.reset();
                }
                _ => {
                    this.conn.touch();
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }
}

impl AsyncWrite for TrackedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match this.conn.state.load(Ordering::Relaxed) {
            DEAD => Poll::Ready(Ok(buf.len())),
            LIVE => {
                let n = ready!(Pin::new(&mut this.tcp).poll_write(cx, buf))?;
                if n > 0 {
                    this.conn.touch();
                }
                Poll::Ready(Ok(n))
            }
            _ => Poll::Ready(Err(io::ErrorKind::ConnectionReset.into())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.conn.state.load(Ordering::Relaxed) {
            DEAD => Poll::Ready(Ok(())),
            LIVE => Pin::new(&mut this.tcp).poll_flush(cx),
            _ => Poll::Ready(Err(io::ErrorKind::ConnectionReset.into())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.conn.state.load(Ordering::Relaxed) {
            // A black hole never closes.
            DEAD => Poll::Pending,
            LIVE => Pin::new(&mut this.tcp).poll_shutdown(cx),
            _ => Poll::Ready(Err(io::ErrorKind::ConnectionReset.into())),
        }
    }
}

impl Drop for TrackedStream {
    fn drop(&mut self) {
        if self.conn.state.load(Ordering::Relaxed) == RESET {
            // SO_LINGER 0 makes the close below send RST instead of FIN.
            let _ = socket2::SockRef::from(&self.tcp).set_linger(Some(Duration::ZERO));
        }
    }
}
