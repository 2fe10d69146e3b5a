//! Embeddings through model handles: Amazon Titan Text Embeddings V2 and Cohere Embed v3 and
//! v4 on InvokeModel, with the providers' documented request and response shapes, batched and
//! sent concurrently through the call driver, results in input order.
//!
//! Shapes: Titan V2 takes `{"inputText", "dimensions", "normalize"}` and answers
//! `{"embedding", "inputTextTokenCount"}` (one text per call); Cohere takes `{"texts" (at most
//! 96), "input_type", "truncate", "embedding_types", "output_dimension" (v4)}` and answers
//! `{"embeddings": {"float": [[..]]}}` when `embedding_types` is given (AWS Bedrock user guide,
//! "Amazon Titan Embeddings Text" and "Cohere Embed" model parameters).

mod body;

use crate::call::{CallInput, RequestAttrs, drive};
use crate::collect::parse_json;
use crate::error::{Error, ErrorKind, Result};
use crate::meta::CallInfo;
use crate::model::Model;
use crate::op::Op;
use crate::stats::Outcome;
use crate::transport::RetryRule;
use aws_sdk_bedrockruntime::types::TokenUsage;
use aws_smithy_types::{Blob, Document};
use body::Body;
use futures_util::StreamExt;

/// Calls in flight at once for one `embed()` by default.
pub const DEFAULT_EMBED_CONCURRENCY: usize = 4;

/// The embedding model family, which decides the request and response shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EmbedFamily {
    /// Amazon Titan Text Embeddings V2 (`amazon.titan-embed-text-v2:0`).
    TitanV2,
    /// Cohere Embed v3 (`cohere.embed-english-v3`, `cohere.embed-multilingual-v3`).
    CohereV3,
    /// Cohere Embed v4 (`cohere.embed-v4:0`).
    CohereV4,
}

impl EmbedFamily {
    /// Returns the family a model id names (cross-region prefixes such as `us.` ignored), or
    /// `None` (an application inference profile ARN does not tell: say it with
    /// [`EmbedRequest::family`]).
    pub fn from_model_id(id: &str) -> Option<EmbedFamily> {
        let base = match id.split_once('.') {
            Some((p, rest)) if !["amazon", "cohere"].contains(&p) => rest,
            _ => id,
        };
        if base.starts_with("amazon.titan-embed-text-v2") {
            Some(EmbedFamily::TitanV2)
        } else if base.starts_with("cohere.embed-english-v3")
            || base.starts_with("cohere.embed-multilingual-v3")
        {
            Some(EmbedFamily::CohereV3)
        } else if base.starts_with("cohere.embed-v4") {
            Some(EmbedFamily::CohereV4)
        } else {
            None
        }
    }
}

/// What the texts are for (Cohere's `input_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InputType {
    /// Documents stored for search.
    SearchDocument,
    /// Queries searching them.
    SearchQuery,
    /// Texts to classify.
    Classification,
    /// Texts to cluster.
    Clustering,
}

impl InputType {
    fn as_str(self) -> &'static str {
        match self {
            InputType::SearchDocument => "search_document",
            InputType::SearchQuery => "search_query",
            InputType::Classification => "classification",
            InputType::Clustering => "clustering",
        }
    }
}

/// How Cohere truncates a text over its limit: `NONE`, or from the start or the end (v3
/// spells these `START`/`END`, v4 `LEFT`/`RIGHT`; the crate writes the model's own word).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Truncate {
    /// Refuse a text over the limit.
    None,
    /// Drop the start of the text.
    Start,
    /// Drop the end of the text.
    End,
}

impl Model {
    /// Starts an embeddings request (Titan Text Embeddings V2, Cohere Embed v3 and v4).
    ///
    /// ```no_run
    /// # async fn run(factory: bedrock_pool::LlmFactory) -> bedrock_pool::Result<()> {
    /// let e = factory.model("amazon.titan-embed-text-v2:0").embed().texts(["a", "b"]).send().await?;
    /// assert_eq!(e.vectors().len(), 2);
    /// # Ok(()) }
    /// ```
    pub fn embed(&self) -> EmbedRequest {
        EmbedRequest {
            model: self.clone(),
            texts: Vec::new(),
            dimensions: None,
            normalize: None,
            input_type: None,
            truncate: None,
            concurrency: DEFAULT_EMBED_CONCURRENCY,
            family: None,
        }
    }
}

/// An embeddings request being built; nothing is checked or sent until `send()`.
#[derive(Debug)]
#[must_use = "a request does nothing until `.send().await`"]
pub struct EmbedRequest {
    model: Model,
    texts: Vec<String>,
    dimensions: Option<u32>,
    normalize: Option<bool>,
    input_type: Option<InputType>,
    truncate: Option<Truncate>,
    concurrency: usize,
    family: Option<EmbedFamily>,
}

impl EmbedRequest {
    /// Adds texts to embed, in order.
    pub fn texts<I, S>(mut self, texts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.texts.extend(texts.into_iter().map(Into::into));
        self
    }

    /// Sets the vector size: Titan V2 256, 512 or 1024 (default 1024); Cohere v4 256, 512,
    /// 1024 or 1536 (default 1536); Cohere v3 is always 1024.
    pub fn dimensions(mut self, n: u32) -> Self {
        self.dimensions = Some(n);
        self
    }

    /// Sets whether Titan V2 returns unit-length vectors (default true). Cohere's are always
    /// normalized.
    pub fn normalize(mut self, on: bool) -> Self {
        self.normalize = Some(on);
        self
    }

    /// Sets what the texts are for (Cohere). Default is `SearchDocument`.
    pub fn input_type(mut self, t: InputType) -> Self {
        self.input_type = Some(t);
        self
    }

    /// Sets how Cohere truncates long texts. Default is the service's (`NONE` refuses them).
    pub fn truncate(mut self, t: Truncate) -> Self {
        self.truncate = Some(t);
        self
    }

    /// Sets how many calls (batches) run at once. Over HTTP/2 the pool bounds connections, not
    /// requests, so this is what bounds the load. Default is
    /// [`DEFAULT_EMBED_CONCURRENCY`] (4).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// Says which family the model is, for ids that do not tell (application inference
    /// profile ARNs). Default is the family the model id names.
    pub fn family(mut self, f: EmbedFamily) -> Self {
        self.family = Some(f);
        self
    }

    /// Sends the texts (in batches, `concurrency` calls at a time) and returns one vector per
    /// text, in input order.
    ///
    /// # Errors
    /// Invalid input before any network call (`texts`, `dimensions`, `normalize`,
    /// `input_type`, `family`, `concurrency`); otherwise the first failed call's error, mapped
    /// as for Converse (each call is retried and fails over like Converse).
    pub async fn send(self) -> Result<Embeddings> {
        let bodies = self.bodies()?;
        let model = self.model;
        let results: Vec<Result<Batch>> = futures_util::stream::iter(bodies)
            .map(|b| embed_one(&model, b))
            .buffered(self.concurrency)
            .collect()
            .await;
        let mut vectors = Vec::new();
        let mut input_tokens = 0;
        let mut calls = Vec::with_capacity(results.len());
        for r in results {
            let b = r?;
            vectors.extend(b.vectors);
            input_tokens += b.input_tokens;
            calls.push(b.info);
        }
        Ok(Embeddings {
            vectors,
            input_tokens,
            calls,
        })
    }
}

/// A checked embedding body, as the driver takes it.
struct EmbedInput {
    body: Blob,
}

impl CallInput for EmbedInput {
    fn request_attrs(&self) -> RequestAttrs {
        RequestAttrs::default()
    }

    fn input_bytes(&self) -> usize {
        self.body.as_ref().len()
    }
}

/// What one call answered.
struct Batch {
    vectors: Vec<Vec<f32>>,
    input_tokens: u64,
    info: CallInfo,
}

/// Sends one call and reads its vectors and input tokens.
async fn embed_one(model: &Model, b: Body) -> Result<Batch> {
    let mut json = String::new();
    aws_smithy_json::serialize::JsonValueWriter::new(&mut json).document(&b.doc);
    let input = EmbedInput {
        body: Blob::new(json.into_bytes()),
    };
    let answer = drive(
        model.chain(),
        Op::Embed,
        RetryRule::default(),
        || Ok(input),
        |v, id, to| {
            to.client
                .invoke_model()
                .model_id(id)
                .body(v.body.clone())
                .content_type("application/json")
                .accept("application/json")
                .send()
        },
    )
    .await?;
    let mut call = answer.call;
    let (vectors, tokens) = match read_vectors(b.family, b.texts, answer.output.body().as_ref()) {
        Ok(v) => v,
        Err(e) => {
            // An answer that holds no vectors is a failed call, not a cancelled one.
            call.finish(Outcome::Failure(ErrorKind::Other));
            return Err(e);
        }
    };
    if tokens > 0
        && let Ok(u) = TokenUsage::builder()
            .input_tokens(i32::try_from(tokens).unwrap_or(i32::MAX))
            .output_tokens(0)
            .total_tokens(i32::try_from(tokens).unwrap_or(i32::MAX))
            .build()
    {
        call.usage(&u);
    }
    call.finish(Outcome::Success);
    Ok(Batch {
        vectors,
        input_tokens: tokens,
        info: call.finished_info(),
    })
}

/// Reads the vectors (one per text) and the input tokens of a family's answer body.
fn read_vectors(family: EmbedFamily, texts: usize, body: &[u8]) -> Result<(Vec<Vec<f32>>, u64)> {
    let bad = |what: &str| Error::new(ErrorKind::Other, format!("embed: {what} in the answer"));
    let text = std::str::from_utf8(body).map_err(|_| bad("not UTF-8"))?;
    let doc = parse_json(text).map_err(|_| bad("not JSON"))?;
    let o = doc.as_object().ok_or_else(|| bad("no JSON object"))?;
    let floats = |d: &Document| -> Option<Vec<f32>> {
        d.as_array()?
            .iter()
            .map(|x| x.as_number().map(|n| n.to_f32_lossy()))
            .collect()
    };
    let (vectors, tokens) = match family {
        EmbedFamily::TitanV2 => {
            let v = o
                .get("embedding")
                .and_then(floats)
                .ok_or_else(|| bad("no embedding"))?;
            let t = o
                .get("inputTextTokenCount")
                .and_then(|n| n.as_number())
                .map_or(0, |n| n.to_f64_lossy() as u64);
            (vec![v], t)
        }
        _ => {
            let list = match o.get("embeddings") {
                Some(Document::Object(by_type)) => by_type.get("float"),
                other => other,
            };
            let v: Option<Vec<Vec<f32>>> = list
                .and_then(|l| l.as_array())
                .map(|l| l.iter().map(floats).collect::<Option<Vec<_>>>())
                .and_then(|x| x);
            (v.ok_or_else(|| bad("no embeddings"))?, 0)
        }
    };
    if vectors.len() != texts {
        return Err(bad("a vector count that is not the text count"));
    }
    Ok((vectors, tokens))
}

/// The answer of an embeddings request: one vector per text, in input order.
#[derive(Clone, Debug, PartialEq)]
pub struct Embeddings {
    vectors: Vec<Vec<f32>>,
    input_tokens: u64,
    calls: Vec<CallInfo>,
}

impl Embeddings {
    /// Returns the vectors, one per text, in input order.
    pub fn vectors(&self) -> &[Vec<f32>] {
        &self.vectors
    }

    /// Returns the vectors, consuming the answer.
    pub fn into_vectors(self) -> Vec<Vec<f32>> {
        self.vectors
    }

    /// Returns the input tokens the service reported (Titan reports them; Cohere's answer
    /// does not carry them, so they count 0).
    pub fn input_tokens(&self) -> u64 {
        self.input_tokens
    }

    /// Returns the metadata of each call the texts were sent in (one per batch, in input
    /// order): the model and region that answered each, its attempts and latency.
    pub fn calls(&self) -> &[CallInfo] {
        &self.calls
    }
}

#[cfg(test)]
mod tests;
