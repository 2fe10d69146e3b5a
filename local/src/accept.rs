//! The listeners: the accept loop, and each connection served by hyper (HTTP/1.1 or h2 as
//! negotiated) until it ends, is killed, closes gracefully or closes idle.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinSet;

use super::conn::TrackedStream;
use super::dispatch::{Ctx, handle};
use super::fault::IdleFault;
use super::record::Listener;
use super::state::{Protocol, Shared};

/// The longest a TLS handshake may take.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Decrements the open count and forgets the connection when its task ends (or is aborted).
struct OpenGuard(Arc<Shared>, Listener, u64);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.remove_connection(self.1, self.2);
    }
}

/// Serves one accepted connection until it ends, is killed, or closes idle.
async fn serve_connection(tcp: TcpStream, listener: Listener, shared: Arc<Shared>) {
    let (conn, _closed_tx) = shared.add_connection(listener);
    let _open = OpenGuard(shared.clone(), listener, conn.id);
    let _ = tcp.set_nodelay(true);
    let stream = TrackedStream::new(tcp, conn.clone());
    let ctx = Arc::new(Ctx {
        shared: shared.clone(),
        listener,
        conn: conn.clone(),
    });
    let h1_only = shared.protocol == Protocol::HttpsH1Only;
    match &shared.tls {
        None => drive(stream, ctx, h1_only).await,
        Some(acceptor) => {
            let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream));
            let tls = tokio::select! {
                r = handshake => r,
                () = conn.killed() => return,
            };
            match tls {
                Ok(Ok(tls)) => drive(tls, ctx, h1_only).await,
                Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!("TLS handshake timed out"),
            }
        }
    }
}

/// Runs hyper on the connection, applying kills, graceful closes and the idle close.
async fn drive<I>(io: I, ctx: Arc<Ctx>, h1_only: bool)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = ctx.conn.clone();
    let ctx_counters = ctx.shared.counters(ctx.listener).clone();
    let service = hyper::service::service_fn(move |req| {
        let ctx = ctx.clone();
        async move { Ok::<_, Infallible>(handle(ctx, req).await) }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    if h1_only {
        builder = builder.http1_only();
    }
    let serving = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(serving);
    let mut draining = false;
    loop {
        let wait = match conn.idle_fault() {
            Some(IdleFault::Close { after }) if conn.is_live() => {
                after.saturating_sub(conn.idle_for())
            }
            _ => Duration::from_millis(100),
        };
        tokio::select! {
            served = &mut serving => {
                if let Err(e) = served {
                    tracing::debug!(error = %e, "connection ended on an error");
                    ctx_counters.errored();
                }
                return;
            }
            () = conn.killed() => return,
            () = conn.goaway_asked(), if !draining => {
                // h2: GOAWAY, the streams in flight finish, then the connection closes.
                // HTTP/1.1: keep-alive off, the response in flight gets `Connection: close`.
                serving.as_mut().graceful_shutdown();
                draining = true;
            }
            () = tokio::time::sleep(wait) => {
                if let Some(IdleFault::Close { after }) = conn.idle_fault()
                    && conn.is_live()
                    && conn.idle_for() >= after
                {
                    conn.close();
                    return;
                }
            }
        }
    }
}

/// Accepts connections until aborted; aborting it aborts every connection task too.
pub(crate) async fn accept_loop(listener: TcpListener, kind: Listener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => {
                    connections.spawn(serve_connection(tcp, kind, shared.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Binds 127.0.0.1:port, retrying briefly if a just-dropped server still holds the port.
pub(crate) async fn bind(port: u16) -> io::Result<TcpListener> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let socket = TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        match socket.bind(addr).and_then(|()| socket.listen(1024)) {
            Ok(listener) => return Ok(listener),
            Err(e)
                if e.kind() == io::ErrorKind::AddrInUse
                    && port != 0
                    && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e),
        }
    }
}
