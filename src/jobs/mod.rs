//! Async invocations (video and image generation, long jobs): StartAsyncInvoke through model
//! handles, GetAsyncInvoke and ListAsyncInvokes through the factory (a job is found by its
//! ARN, not its model: `read.rs`), and waiting for a job with a deadline.
//!
//! **Never started twice.** A start goes to one region and one model only: no region failover
//! and no fallback model, since either would start a second paid job. The SDK's own retries
//! in that region are safe: they reuse the call's client request token (filled by the SDK, or
//! given with [`StartAsyncInvokeRequest::client_request_token`]), which the service
//! deduplicates.
//!
//! ```no_run
//! # async fn run(factory: bedrock_pool::LlmFactory) -> bedrock_pool::Result<()> {
//! use bedrock_pool::sdk::Document;
//! use std::time::Duration;
//! let input = Document::Object([("prompt".to_owned(), Document::from("a cat surfing"))].into());
//! let started = factory
//!     .model("amazon.nova-reel-v1:1")
//!     .start_async_invoke(input, "s3://my-bucket/videos/")
//!     .send()
//!     .await?;
//! let job = factory
//!     .wait_async_invoke(started.invocation_arn(), Duration::from_secs(900), Duration::from_secs(10))
//!     .await?;
//! println!("{:?}, output under {:?}", job.state, job.s3_uri);
//! # Ok(()) }
//! ```

use crate::call::{CallInput, RequestAttrs, drive};
use crate::error::{Error, Result};
use crate::meta::{CallInfo, CallMetadata};
use crate::model::Model;
use crate::op::Op;
use crate::request::valid_s3_uri;
use crate::stats::Outcome;
use crate::transport::RetryRule;
use aws_sdk_bedrockruntime::types::{
    AsyncInvokeOutputDataConfig, AsyncInvokeS3OutputDataConfig, AsyncInvokeStatus,
    AsyncInvokeSummary, Tag,
};
use aws_smithy_types::Document;
use std::time::SystemTime;

mod read;

pub use read::{AsyncInvokePage, ListAsyncInvokesRequest};

/// A StartAsyncInvoke request being built: the model's native input and where the output
/// goes. Checked before the network, naming the field.
#[must_use = "a request does nothing until `.send().await`"]
#[derive(Clone, Debug)]
pub struct StartAsyncInvokeRequest {
    model: Model,
    input: Document,
    s3_uri: String,
    kms_key_id: Option<String>,
    bucket_owner: Option<String>,
    token: Option<String>,
    tags: Vec<(String, String)>,
}

impl Model {
    /// Starts building an async invocation of this model: its native input (the JSON the
    /// model's documentation gives, e.g. Nova Reel's `taskType` and `textToVideoParams`) and
    /// the S3 URI (`s3://bucket/prefix`) the service writes the output under.
    pub fn start_async_invoke(
        &self,
        model_input: Document,
        s3_uri: impl Into<String>,
    ) -> StartAsyncInvokeRequest {
        StartAsyncInvokeRequest {
            model: self.clone(),
            input: model_input,
            s3_uri: s3_uri.into(),
            kms_key_id: None,
            bucket_owner: None,
            token: None,
            tags: Vec::new(),
        }
    }
}

/// A validated start.
struct Start {
    input: Document,
    output: AsyncInvokeOutputDataConfig,
    token: Option<String>,
    tags: Option<Vec<Tag>>,
    bytes: usize,
}

impl CallInput for Start {
    fn request_attrs(&self) -> RequestAttrs {
        RequestAttrs::default()
    }

    fn input_bytes(&self) -> usize {
        self.bytes
    }
}

impl StartAsyncInvokeRequest {
    /// Sets the KMS key the output is encrypted with.
    pub fn kms_key_id(mut self, key: impl Into<String>) -> Self {
        self.kms_key_id = Some(key.into());
        self
    }

    /// Sets the account that owns the bucket, when it is not the caller's.
    pub fn bucket_owner(mut self, account_id: impl Into<String>) -> Self {
        self.bucket_owner = Some(account_id.into());
        self
    }

    /// Sets the idempotency token (1 to 256 printable ASCII characters): a start sent again
    /// with the same token returns the first job. The SDK fills one per call otherwise.
    pub fn client_request_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Adds a tag to the invocation (at most 200; keys 1 to 128 characters, values up to 256).
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.push((key.into(), value.into()));
        self
    }

    fn validate(&self) -> Result<Start> {
        if !matches!(self.input, Document::Object(_)) {
            return Err(Error::invalid(
                "model_input",
                "the model's input must be a JSON object",
            ));
        }
        if !valid_s3_uri(&self.s3_uri) {
            return Err(Error::invalid(
                "s3_uri",
                format!(
                    "{:?} is not an S3 URI (s3://bucket/prefix, a bucket of 3 to 63 lowercase \
                     letters, digits, dots and hyphens)",
                    self.s3_uri
                ),
            ));
        }
        if let Some(t) = &self.token
            && !((1..=256).contains(&t.len()) && t.bytes().all(|b| (b'!'..=b'~').contains(&b)))
        {
            return Err(Error::invalid(
                "client_request_token",
                "1 to 256 printable ASCII characters, no spaces",
            ));
        }
        if self.tags.len() > 200 {
            return Err(Error::invalid("tags", "at most 200 tags"));
        }
        let mut tags = Vec::with_capacity(self.tags.len());
        for (k, v) in &self.tags {
            if !(1..=128).contains(&k.chars().count()) || v.chars().count() > 256 {
                return Err(Error::invalid(
                    "tags",
                    format!("tag {k:?}: keys are 1 to 128 characters, values up to 256"),
                ));
            }
            let tag = Tag::builder().key(k).value(v).build();
            tags.push(tag.map_err(|e| Error::invalid("tags", e))?);
        }
        let s3 = AsyncInvokeS3OutputDataConfig::builder()
            .s3_uri(&self.s3_uri)
            .set_kms_key_id(self.kms_key_id.clone())
            .set_bucket_owner(self.bucket_owner.clone())
            .build()
            .map_err(|e| Error::invalid("s3_uri", e))?;
        Ok(Start {
            bytes: document_len(&self.input),
            input: self.input.clone(),
            output: AsyncInvokeOutputDataConfig::S3OutputDataConfig(s3),
            token: self.token.clone(),
            tags: (!tags.is_empty()).then_some(tags),
        })
    }

    /// Starts the job: once, in one region (see the module docs).
    ///
    /// # Errors
    /// Invalid input (naming the field) before any network call; otherwise the SDK's error
    /// mapped to an [`ErrorKind`](crate::ErrorKind), after the SDK's retries in the region it went to.
    pub async fn send(self) -> Result<AsyncInvokeStarted> {
        let model = self.model.clone();
        let answer = drive(
            model.chain(),
            Op::StartAsyncInvoke,
            RetryRule::default(),
            || self.validate(),
            |v, id, to| {
                to.client
                    .start_async_invoke()
                    .model_id(id)
                    .model_input(v.input.clone())
                    .output_data_config(v.output.clone())
                    .set_client_request_token(v.token.clone())
                    .set_tags(v.tags.clone())
                    .send()
            },
        )
        .await?;
        let mut call = answer.call;
        call.finish(Outcome::Success);
        Ok(AsyncInvokeStarted {
            invocation_arn: answer.output.invocation_arn().to_owned(),
            info: call.finished_info(),
        })
    }
}

/// A started async invocation: its ARN, and where and how the start was answered.
#[derive(Clone, Debug)]
pub struct AsyncInvokeStarted {
    invocation_arn: String,
    info: CallInfo,
}

impl AsyncInvokeStarted {
    /// Returns the invocation's ARN, which
    /// [`LlmFactory::async_invoke`](crate::LlmFactory::async_invoke) reads it back by.
    pub fn invocation_arn(&self) -> &str {
        &self.invocation_arn
    }
}

impl CallMetadata for AsyncInvokeStarted {
    fn call_info(&self) -> &CallInfo {
        &self.info
    }
}

/// Where an async invocation is.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AsyncInvokeState {
    /// Still running.
    InProgress,
    /// Done: the output is under the job's S3 URI.
    Completed,
    /// Ended without output, with the service's message.
    Failed {
        /// The service's failure message, when it gave one.
        message: Option<String>,
    },
    /// A status this version does not know.
    Unknown(String),
}

impl AsyncInvokeState {
    /// Returns true once the job ended (completed or failed).
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Completed | Self::Failed { .. })
    }

    fn of(status: Option<&AsyncInvokeStatus>, message: Option<&str>) -> Self {
        match status {
            Some(AsyncInvokeStatus::InProgress) => Self::InProgress,
            Some(AsyncInvokeStatus::Completed) => Self::Completed,
            Some(AsyncInvokeStatus::Failed) => Self::Failed {
                message: message.map(str::to_owned),
            },
            Some(other) => Self::Unknown(other.as_str().to_owned()),
            None => Self::Unknown(String::new()),
        }
    }
}

/// An async invocation, as GetAsyncInvoke or ListAsyncInvokes describe it.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct AsyncInvoke {
    /// The invocation's ARN.
    pub invocation_arn: String,
    /// The invoked model's ARN.
    pub model_arn: String,
    /// Where the job is.
    pub state: AsyncInvokeState,
    /// When it was submitted.
    pub submitted: SystemTime,
    /// When it last changed.
    pub last_modified: Option<SystemTime>,
    /// When it ended.
    pub ended: Option<SystemTime>,
    /// The S3 URI its output goes under.
    pub s3_uri: Option<String>,
    /// Its idempotency token.
    pub client_request_token: Option<String>,
}

fn time(t: &aws_smithy_types::DateTime) -> SystemTime {
    SystemTime::try_from(*t).unwrap_or(SystemTime::UNIX_EPOCH)
}

fn s3_uri(c: Option<&AsyncInvokeOutputDataConfig>) -> Option<String> {
    match c? {
        AsyncInvokeOutputDataConfig::S3OutputDataConfig(s) => Some(s.s3_uri().to_owned()),
        _ => None,
    }
}

/// Builds an [`AsyncInvoke`] from an SDK description of a job (a GetAsyncInvoke output or a
/// ListAsyncInvokes summary: the same members), whose status is `$status`.
macro_rules! async_invoke {
    ($o:expr, $status:expr) => {
        AsyncInvoke {
            invocation_arn: $o.invocation_arn().to_owned(),
            model_arn: $o.model_arn().to_owned(),
            state: AsyncInvokeState::of($status, $o.failure_message()),
            submitted: time($o.submit_time()),
            last_modified: $o.last_modified_time().map(time),
            ended: $o.end_time().map(time),
            s3_uri: s3_uri($o.output_data_config()),
            client_request_token: $o.client_request_token().map(str::to_owned),
        }
    };
}
use async_invoke;

impl From<&AsyncInvokeSummary> for AsyncInvoke {
    fn from(s: &AsyncInvokeSummary) -> Self {
        async_invoke!(s, s.status())
    }
}

/// Returns about how many bytes of JSON `d` is (strings and keys by their length), for the
/// token estimate of the client-side limits.
fn document_len(d: &Document) -> usize {
    match d {
        Document::Object(o) => {
            o.iter()
                .map(|(k, v)| k.len() + 4 + document_len(v))
                .sum::<usize>()
                + 2
        }
        Document::Array(a) => a.iter().map(|v| document_len(v) + 1).sum::<usize>() + 2,
        Document::String(s) => s.len() + 2,
        Document::Number(_) => 8,
        Document::Bool(_) => 5,
        Document::Null => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_uris() {
        assert!(valid_s3_uri("s3://my-bucket/videos/"));
        assert!(valid_s3_uri("s3://a.b"));
        for bad in [
            "s3://ab",
            "s3://My-Bucket/x",
            "https://b/x",
            "s3://-ab/x",
            "s3://",
        ] {
            assert!(!valid_s3_uri(bad), "{bad}");
        }
    }

    #[test]
    fn states() {
        let failed = AsyncInvokeState::of(Some(&AsyncInvokeStatus::Failed), Some("boom"));
        assert_eq!(
            failed,
            AsyncInvokeState::Failed {
                message: Some("boom".into())
            }
        );
        assert!(failed.is_terminal());
        assert!(!AsyncInvokeState::of(Some(&AsyncInvokeStatus::InProgress), None).is_terminal());
        assert!(AsyncInvokeState::of(Some(&AsyncInvokeStatus::Completed), None).is_terminal());
    }
}
