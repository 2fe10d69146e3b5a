//! The tuned connection pool shared by every SDK client of a factory: built here, watched by
//! `watch` (a failed attempt retires its connection), observed through `events`. The only
//! module that knows the smithy pool's types.

mod events;
mod retry;
mod watch;

pub(crate) use retry::ModelCallClassifier;
pub(crate) use watch::{CALL, CallScope, ConnectionWatch, RetryRule};

use crate::config::FactoryConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::stats::OriginPoolStats;
use aws_smithy_http_client::pool::{
    Client as PoolClient, ConnectionEvent, ConnectionPool, DriverSpawner, OriginKey, Partition,
    PartitionId,
};
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use events::PoolEvents;
use std::sync::Arc;
use std::time::Duration;
use watch::WatchedClient;

/// The one partition of the pool, bound to the runtime the factory was built in.
const PARTITION: PartitionId = PartitionId::from_index(0);

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

    /// Returns the HTTP client to give every SDK client of the factory: the pool, watched so
    /// that a failed attempt retires its connection.
    pub(crate) fn http_client(&self) -> SharedHttpClient {
        SharedHttpClient::new(WatchedClient {
            inner: self.client.clone(),
            events: self.events.clone(),
        })
    }

    /// Returns the connection of the latest attempt of the call `scope` describes.
    pub(crate) fn last_connection(&self, scope: &CallScope) -> Option<ConnectionWatch> {
        let capture = scope
            .last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()?;
        Some(ConnectionWatch {
            capture,
            events: self.events.clone(),
        })
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
            retired: t.retired,
            max_in_flight_per_connection: t.max_in_flight,
            opened: t.opened,
            max_open: t.max_open,
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

/// Checks that `pem` holds at least one certificate a root store accepts, as the pool's TLS
/// setup will when it opens the first connection (where a bad one would panic).
///
/// # Errors
/// An invalid-input error naming `field`.
pub(crate) fn check_ca_pem(pem: &str, field: &'static str) -> Result<()> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::invalid(field, format!("not a PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(Error::invalid(
            field,
            "no certificate in it (expected -----BEGIN CERTIFICATE-----)",
        ));
    }
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| Error::invalid(field, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(())
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
        s.retired += o.retired;
        s.max_in_flight_per_connection = s
            .max_in_flight_per_connection
            .max(o.max_in_flight_per_connection);
        s.opened += o.opened;
        s.max_open += o.max_open;
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
