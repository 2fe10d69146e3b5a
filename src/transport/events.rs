//! Pool events folded into per-origin totals, and the requests in flight per connection.

use crate::stats::HttpProtocol;
use aws_smithy_http_client::pool::{
    ConnectionEvent, ConnectionProtocol, LogicalCloseCause, OriginKey,
};
use aws_smithy_runtime_api::client::connection::ConnectionId;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

/// Cumulative connection figures of one origin, fed by pool events.
#[derive(Default, Clone)]
pub(super) struct OriginTotals {
    pub(super) opened: u64,
    pub(super) closed_idle: u64,
    pub(super) closed_error: u64,
    pub(super) closed_by_peer: u64,
    pub(super) closed_dropped: u64,
    pub(super) establishment_failures: u64,
    pub(super) establish_sum: Duration,
    pub(super) establish_last: Duration,
    pub(super) establish_max: Duration,
    pub(super) transport_sum: Duration,
    pub(super) handshake_sum: Duration,
    pub(super) handshakes: u64,
    pub(super) protocol: Option<HttpProtocol>,
    /// Connections this crate retired after a failed attempt or a broken stream.
    pub(super) retired: u64,
    /// Most requests seen in flight at once on one connection (closed connections).
    pub(super) max_in_flight: u32,
    /// Connections open now: from `Opened` to their logical close, which gives their place
    /// under the cap back to the pool.
    pub(super) live: u64,
    /// Most connections open at once.
    pub(super) max_open: u64,
}

/// What is known of one open connection, by the pool's connection id.
#[derive(Default)]
struct ConnState {
    /// The connection's origin, once its `Opened` event arrived.
    origin: Option<OriginKey>,
    in_flight: u32,
    max_in_flight: u32,
    /// Requests ever sent on it.
    requests: u64,
    retired: bool,
}

/// Per-origin totals and per-connection state, under one lock.
#[derive(Default)]
struct EventState {
    origins: Vec<(OriginKey, OriginTotals)>,
    conns: HashMap<ConnectionId, ConnState>,
    /// The connections closed last (bounded): a failure reported after its connection closed
    /// must not bring it back as a new, never-forgotten entry.
    closed: VecDeque<ConnectionId>,
}

/// How many closed connections [`EventState::closed`] remembers.
const CLOSED_REMEMBERED: usize = 256;

impl EventState {
    fn origin_mut(&mut self, origin: &OriginKey) -> &mut OriginTotals {
        let pos = match self.origins.iter().position(|(o, _)| o == origin) {
            Some(p) => p,
            None => {
                self.origins.push((origin.clone(), OriginTotals::default()));
                self.origins.len() - 1
            }
        };
        &mut self.origins[pos].1
    }
}

/// Pool events folded into per-origin totals, and the requests in flight per connection;
/// shared by the listener, the connector and the factory.
#[derive(Default)]
pub(crate) struct PoolEvents {
    state: Mutex<EventState>,
}

impl std::fmt::Debug for PoolEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PoolEvents")
    }
}

impl PoolEvents {
    fn lock(&self) -> std::sync::MutexGuard<'_, EventState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn with_origin(&self, origin: &OriginKey, f: impl FnOnce(&mut OriginTotals)) {
        f(self.lock().origin_mut(origin));
    }

    /// Returns the totals of `origin`, live connections' in-flight peaks included.
    pub(super) fn totals(&self, origin: &OriginKey) -> OriginTotals {
        let state = self.lock();
        let mut t = state
            .origins
            .iter()
            .find(|(o, _)| o == origin)
            .map(|(_, t)| t.clone())
            .unwrap_or_default();
        for c in state.conns.values() {
            if c.origin.as_ref() == Some(origin) {
                t.max_in_flight = t.max_in_flight.max(c.max_in_flight);
            }
        }
        t
    }

    /// Counts one more request in flight on connection `id`; returns true when it is the
    /// connection's first request (the connection was opened for it).
    pub(super) fn begin(&self, id: ConnectionId) -> bool {
        let mut state = self.lock();
        let c = state.conns.entry(id).or_default();
        c.in_flight += 1;
        c.requests += 1;
        c.max_in_flight = c.max_in_flight.max(c.in_flight);
        c.requests == 1
    }

    /// Counts one request fewer in flight on connection `id`.
    pub(super) fn end(&self, id: ConnectionId) {
        if let Some(c) = self.lock().conns.get_mut(&id) {
            c.in_flight = c.in_flight.saturating_sub(1);
        }
    }

    /// Marks connection `id` retired by this crate; returns false if it already was.
    pub(super) fn mark_retired(&self, id: ConnectionId) -> bool {
        let mut state = self.lock();
        if !state.conns.contains_key(&id) && state.closed.contains(&id) {
            return false;
        }
        let c = state.conns.entry(id).or_default();
        if c.retired {
            return false;
        }
        c.retired = true;
        if let Some(origin) = c.origin.clone() {
            state.origin_mut(&origin).retired += 1;
        }
        true
    }

    /// Folds a closed connection's figures into its origin and forgets it.
    fn forget(&self, id: ConnectionId) {
        let mut state = self.lock();
        if state.closed.len() == CLOSED_REMEMBERED {
            state.closed.pop_front();
        }
        state.closed.push_back(id);
        if let Some(c) = state.conns.remove(&id)
            && let Some(origin) = c.origin
        {
            let t = state.origin_mut(&origin);
            t.max_in_flight = t.max_in_flight.max(c.max_in_flight);
        }
    }

    // Long because one match over the connection events keeps their state machine in one place.
    pub(super) fn on_event(&self, event: &ConnectionEvent<'_>) {
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
                let mut state = self.lock();
                // A retirement may have been recorded before this event arrived.
                let retired_early = {
                    let c = state.conns.entry(info.id()).or_default();
                    c.origin = Some(info.origin().clone());
                    c.retired
                };
                let t = state.origin_mut(info.origin());
                t.retired += u64::from(retired_early);
                t.opened += 1;
                t.live += 1;
                t.max_open = t.max_open.max(t.live);
                t.establish_sum += total;
                t.establish_last = total;
                t.establish_max = t.establish_max.max(total);
                t.transport_sum += stats.transport_duration();
                if let Some(h) = stats.protocol_handshake_duration() {
                    t.handshake_sum += h;
                    t.handshakes += 1;
                }
                t.protocol = Some(protocol);
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
                self.with_origin(info.origin(), |t| {
                    t.live = t.live.saturating_sub(1);
                    match label {
                        "idle" => t.closed_idle += 1,
                        "error" => t.closed_error += 1,
                        "peer" => t.closed_by_peer += 1,
                        _ => t.closed_dropped += 1,
                    }
                });
            }
            ConnectionEvent::PhysicalClose(close) => self.forget(close.connection().id()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failure reported after its connection closed retires nothing: counted by neither the
    /// call nor the pool, and the connection is not kept as a new entry.
    #[test]
    fn a_closed_connection_is_not_retired_again() {
        let events = PoolEvents::default();
        let id = ConnectionId::new(7);
        assert!(events.begin(id));
        events.end(id);
        events.forget(id);
        assert!(!events.mark_retired(id));
        assert!(events.lock().conns.is_empty());
        // A connection not yet announced by its `Opened` event is still retired.
        assert!(events.mark_retired(ConnectionId::new(8)));
        assert!(!events.mark_retired(ConnectionId::new(8)));
    }
}
