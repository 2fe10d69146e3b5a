//! InvokeModel and InvokeModelWithResponseStream through model handles: the model's native
//! JSON in and out, through the call driver (statistics, failover, error kinds, spans and
//! retired connections, as for Converse).

use crate::call::{CallInput, Op, OpenCall, RequestAttrs, drive};
use crate::collect::parse_json;
use crate::error::{Error, ErrorKind, Result, TimeoutKind, from_sdk};
use crate::model::Model;
use crate::request::{Streaming, Unary};
use crate::stats::Outcome;
use aws_sdk_bedrockruntime::types::{ResponseStream, StopReason, TokenUsage};
use aws_smithy_types::timeout::TimeoutConfig;
use aws_smithy_types::{Blob, Document};
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

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
    timeouts: Option<TimeoutConfig>,
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
            timeouts: self.read_timeout.map(|rt| {
                TimeoutConfig::builder()
                    .connect_timeout(connect)
                    .read_timeout(rt)
                    .build()
            }),
        })
    }
}

/// Reads the common request values of a model-native body for the span (Anthropic, Nova and
/// Titan spell them differently).
fn attrs_of(doc: &Document) -> RequestAttrs {
    let num = |path: &[&str]| -> Option<f64> {
        let mut d = doc;
        for p in path {
            d = d.as_object()?.get(*p)?;
        }
        d.as_number().map(|n| n.to_f64_lossy())
    };
    let first = |paths: &[&[&str]]| paths.iter().find_map(|p| num(p));
    RequestAttrs {
        max_tokens: first(&[
            &["max_tokens"],
            &["inferenceConfig", "max_new_tokens"],
            &["textGenerationConfig", "maxTokenCount"],
        ])
        .map(|v| v as i32),
        temperature: first(&[
            &["temperature"],
            &["inferenceConfig", "temperature"],
            &["textGenerationConfig", "temperature"],
        ])
        .map(|v| v as f32),
        top_p: first(&[
            &["top_p"],
            &["inferenceConfig", "top_p"],
            &["textGenerationConfig", "topP"],
        ])
        .map(|v| v as f32),
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

/// Reads usage and the finish reason from a model-native JSON answer or stream chunk:
/// Bedrock's `amazon-bedrock-invocationMetrics`, Anthropic's `usage`, Titan's token counts.
fn usage_of(doc: &Document) -> (Option<TokenUsage>, Option<StopReason>) {
    let Some(o) = doc.as_object() else {
        return (None, None);
    };
    let int = |d: Option<&Document>| {
        d.and_then(|d| d.as_number())
            .map(|n| n.to_f64_lossy() as i32)
    };
    let pair = if let Some(m) = o
        .get("amazon-bedrock-invocationMetrics")
        .and_then(|m| m.as_object())
    {
        (
            int(m.get("inputTokenCount")),
            int(m.get("outputTokenCount")),
        )
    } else if let Some(u) = o.get("usage").and_then(|u| u.as_object()) {
        (int(u.get("input_tokens")), int(u.get("output_tokens")))
    } else {
        (
            int(o.get("inputTextTokenCount")),
            int(o.get("outputTextTokenCount")),
        )
    };
    let usage = match pair {
        (None, None) => None,
        (i, out) => TokenUsage::builder()
            .input_tokens(i.unwrap_or(0))
            .output_tokens(out.unwrap_or(0))
            .total_tokens(i.unwrap_or(0) + out.unwrap_or(0))
            .build()
            .ok(),
    };
    let reason = o
        .get("stop_reason")
        .or_else(|| {
            o.get("delta")
                .and_then(|d| d.as_object()?.get("stop_reason"))
        })
        .or_else(|| o.get("completionReason"))
        .and_then(|r| r.as_string())
        .map(StopReason::from);
    (usage, reason)
}

/// The answer of an InvokeModel call: the model's native JSON.
#[derive(Clone, Debug)]
pub struct InvokeReply {
    body: Blob,
    model_id: String,
    region: String,
    attempts: u32,
    latency: Duration,
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

    /// Returns the region that answered.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// Returns the model that answered (a compatible fallback's when the call moved).
    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    /// Returns the attempts the SDK made in that region.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Returns the latency measured by the client, retries included.
    pub fn latency(&self) -> Duration {
        self.latency
    }
}

impl InvokeRequest<Unary> {
    /// Sends the call and waits for the whole answer.
    ///
    /// # Errors
    /// Invalid input (`body`, `read_timeout`) before any network call; otherwise the SDK's
    /// error mapped to an [`ErrorKind`], after the SDK's retries and a failover as for
    /// Converse.
    pub async fn send(self) -> Result<InvokeReply> {
        let model = self.model.clone();
        let answer = drive(
            model.chain(),
            Op::Invoke,
            || self.validate(),
            |v, id, region| invoke_send!(region.client.invoke_model().model_id(id), v),
        )
        .await?;
        let mut call = answer.call;
        let body = answer.output.body().clone();
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
            model_id: call.model_id().to_owned(),
            region: call.region().to_owned(),
            attempts: call.attempts(),
            latency: call.elapsed(),
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
            || self.validate(),
            |v, id, region| {
                invoke_send!(
                    region
                        .client
                        .invoke_model_with_response_stream()
                        .model_id(id),
                    v
                )
            },
        )
        .await?;
        Ok(InvokeStream {
            receiver: answer.output.body,
            call: answer.call,
            stall,
            saw_chunk: false,
            done: false,
        })
    }
}

/// The answer of an InvokeModelWithResponseStream call: the model's JSON chunks, each receive
/// bounded by the stall timeout; a stall or a broken stream retires its connection.
pub struct InvokeStream {
    receiver: aws_sdk_bedrockruntime::primitives::event_stream::EventReceiver<
        ResponseStream,
        aws_sdk_bedrockruntime::types::error::ResponseStreamError,
    >,
    call: OpenCall,
    stall: Duration,
    saw_chunk: bool,
    done: bool,
}

impl fmt::Debug for InvokeStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InvokeStream")
            .field("region", &self.call.region())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl InvokeStream {
    /// Returns the region that answered.
    pub fn region(&self) -> &str {
        self.call.region()
    }

    /// Returns the model that answered (a compatible fallback's when the call moved).
    pub fn model_id(&self) -> &str {
        self.call.model_id()
    }

    fn fail(&mut self, e: Error) -> Option<Result<Blob>> {
        self.done = true;
        self.call.fail(&e);
        Some(Err(e))
    }

    /// Returns the next chunk (the model's JSON bytes), `None` at the end of the stream.
    ///
    /// # Errors
    /// A stall timeout when no chunk arrives in time; the service's in-stream exceptions and
    /// network errors mapped to kinds. After an error the stream is over.
    pub async fn next(&mut self) -> Option<Result<Blob>> {
        if self.done {
            return None;
        }
        let event = match tokio::time::timeout(self.stall, self.receiver.recv()).await {
            Err(_) => {
                self.call.retire_connection();
                return self.fail(Error::timeout(
                    TimeoutKind::StreamStall,
                    format!(
                        "invoke_model_with_response_stream failed: no chunk within the stall timeout of {:?}",
                        self.stall
                    ),
                ));
            }
            Ok(Err(e)) => {
                let e = from_sdk("invoke_model_with_response_stream", e);
                if e.code().is_none() {
                    self.call.retire_connection();
                }
                return self.fail(e);
            }
            Ok(Ok(None)) => {
                self.done = true;
                self.call.finish(Outcome::Success);
                return None;
            }
            Ok(Ok(Some(ev))) => ev,
        };
        if !self.saw_chunk {
            self.saw_chunk = true;
            self.call.first_token();
        }
        let bytes = match event {
            ResponseStream::Chunk(part) => {
                part.bytes().cloned().unwrap_or_else(|| Blob::new(vec![]))
            }
            _ => Blob::new(vec![]),
        };
        if let Some(doc) = std::str::from_utf8(bytes.as_ref())
            .ok()
            .and_then(|t| parse_json(t).ok())
        {
            let (usage, reason) = usage_of(&doc);
            if let Some(u) = usage
                && doc
                    .as_object()
                    .is_some_and(|o| o.contains_key("amazon-bedrock-invocationMetrics"))
            {
                self.call.usage(&u);
            }
            if let Some(r) = reason {
                self.call.finish_reason(&r);
            }
        }
        Some(Ok(bytes))
    }

    /// Reads the rest of the stream and returns every chunk, in order.
    ///
    /// # Errors
    /// The first error [`next`](Self::next) returns.
    pub async fn collect(mut self) -> Result<Vec<Blob>> {
        let mut chunks = Vec::new();
        while let Some(c) = self.next().await {
            chunks.push(c?);
        }
        Ok(chunks)
    }
}
