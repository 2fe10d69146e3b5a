//! The tuned connection pool shared by every SDK client of a factory, and the event listener
//! that feeds the pool statistics. The only module that knows the smithy pool's types.

use crate::config::FactoryConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::stats::{HttpProtocol, OriginPoolStats};
use aws_smithy_http_client::pool::{
    Client as PoolClient, ConnectionEvent, ConnectionPool, ConnectionProtocol, DriverSpawner,
    LogicalCloseCause, OriginKey, Partition, PartitionId,
};
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The one partition of the pool, bound to the runtime the factory was built in.
const PARTITION: PartitionId = PartitionId::from_index(0);

/// Cumulative connection figures of one origin, fed by pool events.
#[derive(Default, Clone)]
struct OriginTotals {
    opened: u64,
    closed_idle: u64,
    closed_error: u64,
    closed_by_peer: u64,
    closed_dropped: u64,
    establishment_failures: u64,
    establish_sum: Duration,
    establish_last: Duration,
    establish_max: Duration,
    transport_sum: Duration,
    handshake_sum: Duration,
    handshakes: u64,
    protocol: Option<HttpProtocol>,
}

/// Pool events folded into per-origin totals; shared by the listener and the factory.
#[derive(Default)]
pub(crate) struct PoolEvents {
    origins: Mutex<Vec<(OriginKey, OriginTotals)>>,
}

impl PoolEvents {
    fn with_origin(&self, origin: &OriginKey, f: impl FnOnce(&mut OriginTotals)) {
        let mut origins = self.origins.lock().unwrap_or_else(|e| e.into_inner());
        match origins.iter_mut().find(|(o, _)| o == origin) {
            Some((_, t)) => f(t),
            None => {
                let mut t = OriginTotals::default();
                f(&mut t);
                origins.push((origin.clone(), t));
            }
        }
    }

    fn totals(&self, origin: &OriginKey) -> OriginTotals {
        let origins = self.origins.lock().unwrap_or_else(|e| e.into_inner());
        origins
            .iter()
            .find(|(o, _)| o == origin)
            .map(|(_, t)| t.clone())
            .unwrap_or_default()
    }

    fn on_event(&self, event: &ConnectionEvent<'_>) {
        match event {
            ConnectionEvent::Opened(opened) => {
                let info = opened.connection();
                let stats = opened.stats();
                let protocol = match info.protocol() {
                    ConnectionProtocol::Http2 => HttpProtocol::Http2,
                    _ => HttpProtocol::Http1,
                };
                let total = stats.total_duration();
                tracing::debug!(
                    connection = %info.id(),
                    origin = info.origin().host(),
                    protocol = ?protocol,
                    establish_ms = total.as_secs_f64() * 1000.0,
                    "connection opened"
                );
                crate::metrics::connection_opened(info.origin().host(), total);
                self.with_origin(info.origin(), |t| {
                    t.opened += 1;
                    t.establish_sum += total;
                    t.establish_last = total;
                    t.establish_max = t.establish_max.max(total);
                    t.transport_sum += stats.transport_duration();
                    if let Some(h) = stats.protocol_handshake_duration() {
                        t.handshake_sum += h;
                        t.handshakes += 1;
                    }
                    t.protocol = Some(protocol);
                });
            }
            ConnectionEvent::EstablishmentFailed(failed) => {
                tracing::debug!(
                    origin = failed.establishment().origin().host(),
                    stage = ?failed.stage(),
                    error = %failed.error(),
                    "connection establishment failed"
                );
                crate::metrics::connection_failed(failed.establishment().origin().host());
                self.with_origin(failed.establishment().origin(), |t| {
                    t.establishment_failures += 1
                });
            }
            ConnectionEvent::LogicalClose(close) => {
                let info = close.connection();
                let cause = close.cause();
                tracing::debug!(
                    connection = %info.id(),
                    origin = info.origin().host(),
                    cause = ?cause,
                    "connection closed"
                );
                let label = match cause {
                    LogicalCloseCause::IdleTimeout => "idle",
                    LogicalCloseCause::Poisoned | LogicalCloseCause::IncompleteH1Exchange => {
                        "error"
                    }
                    LogicalCloseCause::ProtocolEnded => "peer",
                    _ => "dropped",
                };
                crate::metrics::connection_closed(info.origin().host(), label);
                self.with_origin(info.origin(), |t| match label {
                    "idle" => t.closed_idle += 1,
                    "error" => t.closed_error += 1,
                    "peer" => t.closed_by_peer += 1,
                    _ => t.closed_dropped += 1,
                });
            }
            _ => {}
        }
    }
}

/// The factory's pool and the HTTP client handed to every SDK client.
pub(crate) struct Transport {
    pool: ConnectionPool,
    client: PoolClient,
    events: Arc<PoolEvents>,
    cap: usize,
}

impl Transport {
    /// Builds the tuned pool, bound to the current tokio runtime.
    ///
    /// The pool's connection drivers run on that runtime: a factory keeps working for as long
    /// as the runtime it was built in lives, whichever runtime later calls it.
    pub(crate) fn new(config: &FactoryConfig) -> Result<Self> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::new(
                ErrorKind::InvalidInput,
                "the factory must be built inside a tokio runtime",
            )
        })?;
        let mut trust = TrustStore::default();
        for pem in &config.extra_ca_pem {
            trust = trust.with_pem_certificate(pem.as_bytes().to_vec());
        }
        let tls_context = TlsContext::builder()
            .with_trust_store(trust)
            .build()
            .map_err(|e| {
                Error::invalid("ca_certificate_pem", "not a usable PEM certificate").with_source(e)
            })?;
        let events = Arc::new(PoolEvents::default());
        let listener_events = events.clone();
        let pool = ConnectionPool::builder()
            .max_connections_per_host(config.pool.max_connections_per_host)
            .idle_timeout(config.pool.idle_timeout)
            .tcp_keepalive(config.pool.tcp_keepalive)
            .tcp_nodelay(true)
            .proxy_config(ProxyConfig::from_env())
            .partitions([Partition::new(PARTITION, DriverSpawner::tokio(handle))])
            .event_listener(move |e: &ConnectionEvent<'_>| listener_events.on_event(e))
            .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
            .tls_context(tls_context)
            .build_https()
            .map_err(|e| {
                Error::new(ErrorKind::Other, "could not build the connection pool").with_source(e)
            })?;
        let client = PoolClient::from_partition(&pool, PARTITION).map_err(|e| {
            Error::new(ErrorKind::Other, "could not build the pool client").with_source(e)
        })?;
        Ok(Transport {
            pool,
            client,
            events,
            cap: config.pool.max_connections_per_host,
        })
    }

    /// Returns the HTTP client to give every SDK client of the factory.
    pub(crate) fn http_client(&self) -> SharedHttpClient {
        SharedHttpClient::new(self.client.clone())
    }

    /// Returns the pool figures of the origin of `url` (scheme, host and port).
    pub(crate) fn origin_stats(&self, url: &str) -> OriginPoolStats {
        let Some(origin) = origin_key(url) else {
            return OriginPoolStats {
                capacity: self.cap,
                ..OriginPoolStats::default()
            };
        };
        let cap = self.pool.origin_stats(&origin);
        let part = self.pool.partition_stats(PARTITION, &origin);
        let t = self.events.totals(&origin);
        let (limit, in_use) = cap
            .capacity()
            .map(|c| (c.limit(), c.in_use()))
            .unwrap_or((self.cap, 0));
        let (idle, active, establishing, waiting) = part
            .map(|p| {
                (
                    p.h1().idle(),
                    p.h1().active() + p.h2().accepting(),
                    p.establishing_connections(),
                    p.pending_acquisitions(),
                )
            })
            .unwrap_or_default();
        let mean = |sum: Duration, n: u64| {
            if n == 0 {
                Duration::ZERO
            } else {
                sum / u32::try_from(n).unwrap_or(u32::MAX)
            }
        };
        OriginPoolStats {
            capacity: limit,
            open: in_use,
            idle,
            active,
            establishing,
            waiting,
            utilization: if limit == 0 {
                0.0
            } else {
                (in_use as f64 / limit as f64).min(1.0)
            },
            protocol: t.protocol,
            opened: t.opened,
            closed_idle: t.closed_idle,
            closed_error: t.closed_error,
            closed_by_peer: t.closed_by_peer,
            closed_dropped: t.closed_dropped,
            establishment_failures: t.establishment_failures,
            establishment_last: t.establish_last,
            establishment_mean: mean(t.establish_sum, t.opened),
            establishment_max: t.establish_max,
            transport_mean: mean(t.transport_sum, t.opened),
            handshake_mean: mean(t.handshake_sum, t.handshakes),
        }
    }
}

/// Parses the origin of an endpoint URL.
fn origin_key(url: &str) -> Option<OriginKey> {
    let uri: http::Uri = url.parse().ok()?;
    OriginKey::from_uri(&uri).ok()
}

/// Sums the figures of several origins (the Bedrock origins of several regions).
pub(crate) fn sum_origins(all: impl IntoIterator<Item = OriginPoolStats>) -> OriginPoolStats {
    let mut s = OriginPoolStats::default();
    let mut est_weighted = 0.0;
    let mut tr_weighted = 0.0;
    let mut hs_weighted = 0.0;
    for o in all {
        s.capacity += o.capacity;
        s.open += o.open;
        s.idle += o.idle;
        s.active += o.active;
        s.establishing += o.establishing;
        s.waiting += o.waiting;
        s.protocol = s.protocol.or(o.protocol);
        s.opened += o.opened;
        s.closed_idle += o.closed_idle;
        s.closed_error += o.closed_error;
        s.closed_by_peer += o.closed_by_peer;
        s.closed_dropped += o.closed_dropped;
        s.establishment_failures += o.establishment_failures;
        s.establishment_last = s.establishment_last.max(o.establishment_last);
        s.establishment_max = s.establishment_max.max(o.establishment_max);
        est_weighted += o.establishment_mean.as_secs_f64() * o.opened as f64;
        tr_weighted += o.transport_mean.as_secs_f64() * o.opened as f64;
        hs_weighted += o.handshake_mean.as_secs_f64() * o.opened as f64;
    }
    if s.opened > 0 {
        let n = s.opened as f64;
        s.establishment_mean = Duration::from_secs_f64(est_weighted / n);
        s.transport_mean = Duration::from_secs_f64(tr_weighted / n);
        s.handshake_mean = Duration::from_secs_f64(hs_weighted / n);
    }
    if s.capacity > 0 {
        s.utilization = (s.open as f64 / s.capacity as f64).min(1.0);
    }
    s
}
