//! The state the listeners, connections, handlers and the public handle share, and the answer
//! type of the handlers.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio_rustls::TlsAcceptor;

use super::conn::{ConnShared, IdleSetting};
use super::fault::{Fault, FaultRule, IdleFault, Latency, ServiceError};
use super::guardrail::Guardrail;
use super::limits::Limits;
use super::lock::lock;
use super::model::Responder;
use super::record::{Counters, Listener, Operation, RecordedRequest};
use super::wire::{self, Body};

/// Selects how the listeners speak HTTP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Protocol {
    /// TLS; ALPN offers `h2` and `http/1.1` (the SDK then uses HTTP/2). This is the default.
    #[default]
    Https,
    /// TLS; ALPN offers `http/1.1` only.
    HttpsH1Only,
    /// Plain HTTP (HTTP/1.1, or h2 with prior knowledge).
    Http,
}

/// Holds the settings a server starts with (what the builder collects).
#[derive(Debug)]
pub(crate) struct Setup {
    pub(crate) protocol: Protocol,
    pub(crate) region: String,
    pub(crate) access_key_id: String,
    pub(crate) secret_access_key: String,
    pub(crate) responder: Responder,
    pub(crate) latency: Latency,
    pub(crate) generation: Latency,
    pub(crate) idle_fault: Option<IdleFault>,
    pub(crate) record_limit: usize,
    /// The accepted Bedrock API key (bearer auth).
    pub(crate) api_key: String,
    /// The guardrails requests may name.
    pub(crate) guardrails: Vec<Guardrail>,
    /// The quotas and context windows per model id.
    pub(crate) limits: Limits,
    /// How long an async invocation runs before it ends.
    pub(crate) async_delay: std::time::Duration,
}

/// The most prompt-prefix hashes remembered; the set is emptied when it is full.
const PREFIX_CACHE_LIMIT: usize = 4096;

/// Holds everything the listeners, connections and the handle share.
pub(crate) struct Shared {
    pub(crate) region: String,
    pub(crate) access_key_id: String,
    pub(crate) secret_access_key: String,
    pub(crate) protocol: Protocol,
    /// The TLS acceptor, or `None` for plain HTTP.
    pub(crate) tls: Option<TlsAcceptor>,
    faults: Mutex<Vec<FaultRule>>,
    idle: Arc<IdleSetting>,
    latency: Mutex<Latency>,
    generation: Mutex<Latency>,
    responder: Mutex<Responder>,
    requests: Mutex<Vec<(u64, RecordedRequest)>>,
    /// Most requests kept; the oldest are forgotten beyond it.
    record_limit: usize,
    request_added: Notify,
    next_seq: AtomicU64,
    next_conn_id: AtomicU64,
    /// Every open connection of both listeners, by id.
    conns: Mutex<HashMap<u64, (Listener, Arc<ConnShared>)>>,
    bedrock: Arc<Counters>,
    sts: Arc<Counters>,
    /// The accepted Bedrock API key (bearer auth).
    pub(crate) api_key: String,
    /// The key reasoning signatures are computed with, fresh at each start.
    pub(crate) signing_secret: [u8; 32],
    guardrails: Mutex<Vec<Guardrail>>,
    /// Hashes of the prompt prefixes seen up to a cache point.
    prefixes: Mutex<HashSet<[u8; 32]>>,
    /// The quotas and context windows per model id.
    pub(crate) limits: Limits,
    /// The async invocations.
    pub(crate) jobs: crate::jobs::Jobs,
}

impl Shared {
    /// Returns the state of a server started with `setup`, serving TLS through `tls` if given.
    pub(crate) fn new(setup: Setup, tls: Option<TlsAcceptor>) -> Self {
        Shared {
            region: setup.region,
            access_key_id: setup.access_key_id,
            secret_access_key: setup.secret_access_key,
            protocol: setup.protocol,
            tls,
            faults: Mutex::new(Vec::new()),
            idle: Arc::new(Mutex::new(setup.idle_fault)),
            latency: Mutex::new(setup.latency),
            generation: Mutex::new(setup.generation),
            responder: Mutex::new(setup.responder),
            requests: Mutex::new(Vec::new()),
            record_limit: setup.record_limit,
            request_added: Notify::new(),
            next_seq: AtomicU64::new(0),
            next_conn_id: AtomicU64::new(1),
            conns: Mutex::new(HashMap::new()),
            bedrock: Arc::default(),
            sts: Arc::default(),
            api_key: setup.api_key,
            signing_secret: fresh_secret(),
            guardrails: Mutex::new(setup.guardrails),
            prefixes: Mutex::new(HashSet::new()),
            limits: setup.limits,
            jobs: crate::jobs::Jobs::new(setup.async_delay),
        }
    }

    /// Returns the known guardrails.
    pub(crate) fn guardrails(&self) -> Vec<Guardrail> {
        lock(&self.guardrails).clone()
    }

    /// Adds a guardrail, replacing one with the same id.
    pub(crate) fn set_guardrail(&self, guardrail: Guardrail) {
        let mut all = lock(&self.guardrails);
        all.retain(|g| g.id != guardrail.id);
        all.push(guardrail);
    }

    /// Forgets every guardrail.
    pub(crate) fn clear_guardrails(&self) {
        lock(&self.guardrails).clear();
    }

    /// Looks up the prefix hashes of a request's cache points (in prompt order) and remembers
    /// them; returns the index of the last one seen before.
    pub(crate) fn cache_lookup(&self, hashes: &[[u8; 32]]) -> Option<usize> {
        let mut seen = lock(&self.prefixes);
        let hit = hashes.iter().rposition(|h| seen.contains(h));
        if seen.len() + hashes.len() > PREFIX_CACHE_LIMIT {
            seen.clear();
        }
        seen.extend(hashes.iter().copied());
        hit
    }

    /// Forgets every prompt prefix seen.
    pub(crate) fn clear_prompt_cache(&self) {
        lock(&self.prefixes).clear();
    }

    /// Returns the connection counters of one listener.
    pub(crate) fn counters(&self, listener: Listener) -> &Arc<Counters> {
        match listener {
            Listener::Bedrock => &self.bedrock,
            Listener::Sts => &self.sts,
        }
    }

    /// Counts and registers a newly accepted connection; returns its shared state and the
    /// sender whose drop marks it closed.
    pub(crate) fn add_connection(
        &self,
        listener: Listener,
    ) -> (Arc<ConnShared>, watch::Sender<()>) {
        let id = self.next_conn_id.fetch_add(1, Ordering::Relaxed);
        let counters = self.counters(listener).clone();
        counters.opened();
        let (conn, closed_tx) = ConnShared::new(id, self.idle.clone(), counters);
        lock(&self.conns).insert(id, (listener, conn.clone()));
        (conn, closed_tx)
    }

    /// Forgets a connection and counts it closed.
    pub(crate) fn remove_connection(&self, listener: Listener, id: u64) {
        lock(&self.conns).remove(&id);
        self.counters(listener).closed();
    }

    /// Returns the open connections of one listener.
    pub(crate) fn open_connections(&self, listener: Listener) -> Vec<Arc<ConnShared>> {
        lock(&self.conns)
            .values()
            .filter(|(l, _)| *l == listener)
            .map(|(_, c)| c.clone())
            .collect()
    }

    /// Records a request at arrival; returns its sequence number.
    pub(crate) fn record(&self, req: RecordedRequest) -> u64 {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let mut requests = lock(&self.requests);
        requests.push((seq, req));
        // Forget in batches so that a long run costs amortised O(1) per request.
        if requests.len() > self.record_limit.saturating_add(self.record_limit / 2) {
            let excess = requests.len() - self.record_limit;
            requests.drain(..excess);
        }
        drop(requests);
        self.request_added.notify_waiters();
        seq
    }

    /// Stores the outcome of a recorded request.
    pub(crate) fn finish(&self, seq: u64, outcome: u16, error: Option<String>) {
        let mut requests = lock(&self.requests);
        if let Some((_, req)) = requests.iter_mut().rev().find(|(s, _)| *s == seq) {
            req.outcome = outcome;
            req.error = error;
        }
    }

    /// Returns the recorded requests, all or those of one operation, in arrival order.
    pub(crate) fn requests(&self, op: Option<Operation>) -> Vec<RecordedRequest> {
        lock(&self.requests)
            .iter()
            .filter(|(_, r)| op.is_none_or(|op| r.operation == op))
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// Forgets the recorded requests.
    pub(crate) fn clear_requests(&self) {
        lock(&self.requests).clear();
    }

    /// Waits until at least `n` requests are recorded; returns false if `timeout` passed first.
    pub(crate) async fn wait_for_requests(&self, n: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.request_added.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if lock(&self.requests).len() >= n {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return lock(&self.requests).len() >= n;
            }
        }
    }

    /// Adds a fault rule after the existing ones.
    pub(crate) fn push_fault(&self, rule: FaultRule) {
        lock(&self.faults).push(rule);
    }

    /// Removes every fault rule.
    pub(crate) fn clear_faults(&self) {
        lock(&self.faults).clear();
    }

    /// Returns the fault of the first matching rule with a remaining count, counting it down
    /// (rules still skipping count the request and pass it on).
    ///
    /// [`Fault::GoSilent`] is applied here: the request's connection turns into a black hole and
    /// `None` is returned, so the handler answers into the void (and the dispatcher drops the
    /// answer).
    pub(crate) fn take_fault(&self, req: &RecordedRequest) -> Option<Fault> {
        let fault = {
            let mut rules = lock(&self.faults);
            let mut matching = rules.iter_mut().filter(|r| r.matches(req));
            loop {
                let rule = matching.next()?;
                if rule.skip > 0 {
                    rule.skip -= 1;
                    continue;
                }
                if let Some(n) = rule.remaining.as_mut() {
                    *n -= 1;
                }
                break rule.fault.clone();
            }
        };
        if matches!(fault, Fault::GoSilent) {
            let conn = lock(&self.conns)
                .get(&req.connection_id)
                .map(|(_, c)| c.clone());
            if let Some(conn) = conn {
                conn.silence();
            }
            return None;
        }
        Some(fault)
    }

    /// Sets (or with `None` removes) the idle fault of every connection, open or not.
    pub(crate) fn set_idle_fault(&self, fault: Option<IdleFault>) {
        *lock(&self.idle) = fault;
    }

    /// Returns the current latency setting.
    pub(crate) fn latency(&self) -> Latency {
        lock(&self.latency).clone()
    }

    /// Returns the current generation time setting.
    pub(crate) fn generation(&self) -> Latency {
        lock(&self.generation).clone()
    }

    /// Sets the model's generation time.
    pub(crate) fn set_generation(&self, generation: Latency) {
        *lock(&self.generation) = generation;
    }

    /// Sets the model latency.
    pub(crate) fn set_latency(&self, latency: Latency) {
        *lock(&self.latency) = latency;
    }

    /// Returns the current responder.
    pub(crate) fn responder(&self) -> Responder {
        lock(&self.responder).clone()
    }

    /// Sets the responder.
    pub(crate) fn set_responder(&self, responder: Responder) {
        *lock(&self.responder) = responder;
    }
}

/// Returns 32 bytes that differ between servers and runs (not cryptographically random: they
/// only keep one server from accepting another's reasoning signatures).
fn fresh_secret() -> [u8; 32] {
    use sha2::{Digest, Sha256};
    static SERVERS: AtomicU64 = AtomicU64::new(0);
    let mut h = Sha256::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    h.update(now.to_le_bytes());
    h.update(std::process::id().to_le_bytes());
    h.update(SERVERS.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    let local = 0u8;
    h.update((&local as *const u8 as usize).to_le_bytes());
    h.finalize().into()
}

/// Describes how a handler answers a request.
pub(crate) enum Answer {
    /// Sends this response; records its status and error name.
    Respond(http::Response<Body>, Option<String>),
    /// Resets the connection without answering.
    Reset,
    /// Closes the connection (FIN) without answering.
    Close,
}

impl Answer {
    /// Returns an error answer encoded for the listener.
    pub(crate) fn error(listener: Listener, err: &ServiceError) -> Self {
        let res = match listener {
            Listener::Bedrock => wire::json_error(err),
            Listener::Sts => wire::xml_error(err),
        };
        Self::Respond(res, Some(err.name().to_owned()))
    }
}
