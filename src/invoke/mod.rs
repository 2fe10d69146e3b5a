//! InvokeModel and InvokeModelWithResponseStream through model handles: the model's native
//! JSON in and out, through the call driver (statistics, failover, error kinds, spans and
//! retired connections, as for Converse).

use crate::call::carry::{Carried, send_carried};
use crate::call::{CallInput, RequestAttrs, check_unary_bound, drive, unary_rule};
use crate::collect::parse_json;
use crate::error::{Error, ErrorKind, Result};
use crate::meta::{CallInfo, CallMetadata};
use crate::model::Model;
use crate::op::Op;
use crate::policy::CallPolicy;
use crate::request::{Streaming, Unary};
use crate::stats::Outcome;
use crate::transport::RetryRule;
use aws_smithy_types::timeout::TimeoutConfig as SdkTimeoutConfig;
use aws_smithy_types::{Blob, Document};
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

mod native;
mod stream;

pub use stream::InvokeStream;

use native::{attrs_of, usage_of};

/// A model-native request body: JSON as a [`Document`], a string or bytes.
#[derive(Clone, Debug)]
pub struct InvokeBody(Vec<u8>);

impl From<Document> for InvokeBody {
    fn from(d: Document) -> Self {
        let mut json = String::new();
        aws_smithy_json::serialize::JsonValueWriter::new(&mut json).document(&d);
        InvokeBody(json.into_bytes())
    }
}

impl From<String> for InvokeBody {
    fn from(s: String) -> Self {
        InvokeBody(s.into_bytes())
    }
}

impl From<&str> for InvokeBody {
    fn from(s: &str) -> Self {
        InvokeBody(s.as_bytes().to_vec())
    }
}

impl From<Vec<u8>> for InvokeBody {
    fn from(b: Vec<u8>) -> Self {
        InvokeBody(b)
    }
}

impl From<&[u8]> for InvokeBody {
    fn from(b: &[u8]) -> Self {
        InvokeBody(b.to_vec())
    }
}

impl Model {
    /// Starts an InvokeModel call with a model-native JSON body (`application/json` both ways).
    pub fn invoke(&self, body: impl Into<InvokeBody>) -> InvokeRequest {
        InvokeRequest::new(self.clone(), body.into())
    }

    /// Starts an InvokeModelWithResponseStream call: the same body, the answer as a stream of
    /// the model's JSON chunks.
    pub fn invoke_stream(&self, body: impl Into<InvokeBody>) -> InvokeRequest<Streaming> {
        InvokeRequest::new(self.clone(), body.into())
    }
}

/// An InvokeModel (or, with [`Streaming`], InvokeModelWithResponseStream) request.
#[must_use = "a request does nothing until `.send().await`"]
pub struct InvokeRequest<K = Unary> {
    model: Model,
    body: InvokeBody,
    read_timeout: Option<Duration>,
    stall_timeout: Option<Duration>,
    kind: PhantomData<K>,
}

impl<K> fmt::Debug for InvokeRequest<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The body may be sensitive: its size only.
        f.debug_struct("InvokeRequest")
            .field("model", &self.model.id())
            .field("body_bytes", &self.body.0.len())
            .finish_non_exhaustive()
    }
}

/// An invoke body checked and ready for the SDK.
pub(crate) struct InvokeInput {
    body: Blob,
    attrs: RequestAttrs,
    timeouts: Option<SdkTimeoutConfig>,
    /// An Anthropic Messages body: its stream can be collected back into the unary answer.
    anthropic: bool,
}

impl CallInput for InvokeInput {
    fn request_attrs(&self) -> RequestAttrs {
        self.attrs
    }

    /// The native body's size: its JSON overhead makes the estimate err on the high side.
    fn input_bytes(&self) -> usize {
        self.body.as_ref().len()
    }
}

impl<K> InvokeRequest<K> {
    fn new(model: Model, body: InvokeBody) -> Self {
        InvokeRequest {
            model,
            body,
            read_timeout: None,
            stall_timeout: None,
            kind: PhantomData,
        }
    }

    /// Overrides the read timeout for this call. Default is the factory's.
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = Some(timeout);
        self
    }

    /// Checks the body: present and one JSON value (the models Bedrock serves take JSON).
    fn validate(&self) -> Result<InvokeInput> {
        let text = std::str::from_utf8(&self.body.0)
            .map_err(|_| Error::invalid("body", "not UTF-8 JSON"))?;
        if text.trim().is_empty() {
            return Err(Error::invalid("body", "the body is empty"));
        }
        let doc = parse_json(text).map_err(|e| Error::invalid("body", format!("not JSON: {e}")))?;
        if let Some(t) = self.read_timeout
            && t.is_zero()
        {
            return Err(Error::invalid("read_timeout", "must be greater than zero"));
        }
        let connect = self.model.inner().target.shared.config.timeouts.connect;
        Ok(InvokeInput {
            body: Blob::new(self.body.0.clone()),
            attrs: attrs_of(&doc),
            anthropic: crate::anthropic::is_messages_body(&doc),
            timeouts: self.read_timeout.map(|rt| {
                SdkTimeoutConfig::builder()
                    .connect_timeout(connect)
                    .read_timeout(rt)
                    .build()
            }),
        })
    }
}

/// Fills an invoke builder with the body and content types, and sends it (see
/// `send_with_timeouts!`).
macro_rules! invoke_send {
    ($builder:expr, $v:expr) => {{
        let builder = $builder
            .body($v.body.clone())
            .content_type("application/json")
            .accept("application/json");
        crate::call::send_with_timeouts!(builder, $v.timeouts.clone())
    }};
}

/// The answer of an InvokeModel call: the model's native JSON.
#[derive(Clone, Debug)]
pub struct InvokeReply {
    body: Blob,
    info: CallInfo,
}

impl CallMetadata for InvokeReply {
    fn call_info(&self) -> &CallInfo {
        &self.info
    }
}

impl InvokeReply {
    /// Returns the body the model answered.
    pub fn bytes(&self) -> &[u8] {
        self.body.as_ref()
    }

    /// Returns the body as text.
    ///
    /// # Errors
    /// When the body is not UTF-8.
    pub fn text(&self) -> Result<&str> {
        std::str::from_utf8(self.body.as_ref())
            .map_err(|_| Error::new(ErrorKind::Other, "invoke_model: the answer is not UTF-8"))
    }

    /// Returns the body as JSON.
    ///
    /// # Errors
    /// When the body is not JSON.
    pub fn json(&self) -> Result<Document> {
        parse_json(self.text()?).map_err(|e| {
            Error::new(
                ErrorKind::Other,
                format!("invoke_model: the answer is not JSON: {e}"),
            )
        })
    }
}

impl InvokeRequest<Unary> {
    /// Returns the timeouts and retry rule this call will use: carried as an
    /// InvokeModelWithResponseStream when the body is an Anthropic Messages request (the
    /// crate rebuilds the unary body from its events), unary otherwise.
    pub fn policy(&self) -> CallPolicy {
        let target = &self.model.inner().target;
        let anthropic = self.validate().is_ok_and(|v| v.anthropic);
        let rule = unary_rule(target, anthropic, self.read_timeout);
        let falls_back = self.model.chain().fallbacks.iter().any(|f| f.compatible);
        CallPolicy::of(target, rule, false, falls_back, self.read_timeout)
    }

    /// Sends the call and waits for the whole answer.
    ///
    /// An Anthropic Messages body goes as an InvokeModelWithResponseStream whose events are
    /// collected back into the message unary InvokeModel answers (see [`policy`](Self::policy)),
    /// so a long generation is neither cut by the read timeout nor sent twice.
    ///
    /// # Errors
    /// Invalid input (`body`, `read_timeout`) before any network call, including a body that
    /// goes unary and whose `max_tokens` may take longer than the read timeout, without a read
    /// timeout of its own; otherwise the SDK's error mapped to an [`ErrorKind`], after the
    /// SDK's retries and a failover as for Converse.
    pub async fn send(self) -> Result<InvokeReply> {
        let model = self.model.clone();
        let target = &model.inner().target;
        let checked = self.validate();
        let anthropic = checked.as_ref().is_ok_and(|v| v.anthropic);
        let rule = unary_rule(target, anthropic, self.read_timeout);
        let stall = target.shared.config.timeouts.stream_stall;
        let answer = drive(
            model.chain(),
            Op::Invoke,
            rule,
            || {
                let v = checked?;
                let max = v.attrs.max_tokens.map(i64::from);
                check_unary_bound(target, rule, max, "max_tokens")?;
                Ok(v)
            },
            |v, id, to| {
                send_carried!(
                    to,
                    unary: invoke_send!(to.client.invoke_model().model_id(id), v),
                    stream: invoke_send!(
                        to.client.invoke_model_with_response_stream().model_id(id),
                        v
                    ),
                )
            },
        )
        .await?;
        let mut call = answer.call;
        let body = match *answer.output {
            Carried::Stream(s) => {
                call.served_by(s.service_tier.as_ref());
                let stream = InvokeStream {
                    receiver: crate::call::ahead::EventSource::direct(s.body),
                    call,
                    stall: crate::call::stall::StallTimer::new(stall),
                    saw_chunk: false,
                    done: false,
                };
                return stream.collect_message().await;
            }
            Carried::Unary(o) => {
                call.served_by(o.service_tier());
                o.body
            }
        };
        if let Some(doc) = std::str::from_utf8(body.as_ref())
            .ok()
            .and_then(|t| parse_json(t).ok())
        {
            let (usage, reason) = usage_of(&doc);
            if let Some(u) = usage {
                call.usage(&u);
            }
            if let Some(r) = reason {
                call.finish_reason(&r);
            }
        }
        call.finish(Outcome::Success);
        Ok(InvokeReply {
            body,
            info: call.finished_info(),
        })
    }
}

impl InvokeRequest<Streaming> {
    /// Sets the longest gap allowed between two chunks. Default is the factory's
    /// `stream_stall_timeout`.
    pub fn stall_timeout(mut self, timeout: Duration) -> Self {
        self.stall_timeout = Some(timeout);
        self
    }

    /// Returns the timeouts and retry rule this call will use.
    pub fn policy(&self) -> CallPolicy {
        let target = &self.model.inner().target;
        let falls_back = self.model.chain().fallbacks.iter().any(|f| f.compatible);
        let mut p = CallPolicy::of(
            target,
            RetryRule::default(),
            true,
            falls_back,
            self.read_timeout,
        );
        p.stall_timeout = Some(
            self.stall_timeout
                .unwrap_or(target.shared.config.timeouts.stream_stall),
        );
        p
    }

    /// Sends the call and returns the stream of chunks once the response headers arrived.
    ///
    /// # Errors
    /// As [`InvokeRequest::send`]; failover happens only here, before the first chunk.
    pub async fn send(self) -> Result<InvokeStream> {
        let model = self.model.clone();
        let target = &model.inner().target;
        let stall = self
            .stall_timeout
            .unwrap_or(target.shared.config.timeouts.stream_stall);
        let answer = drive(
            model.chain(),
            Op::InvokeStream,
            RetryRule::default(),
            || self.validate(),
            |v, id, to| {
                invoke_send!(
                    to.client.invoke_model_with_response_stream().model_id(id),
                    v
                )
            },
        )
        .await?;
        let mut call = answer.call;
        call.served_by(answer.output.service_tier());
        Ok(InvokeStream {
            receiver: crate::call::ahead::EventSource::read_ahead(answer.output.body),
            call,
            stall: crate::call::stall::StallTimer::new(stall),
            saw_chunk: false,
            done: false,
        })
    }
}
