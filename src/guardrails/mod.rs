//! Guardrails as calls of their own, through the factory's pool, statistics and spans:
//! ApplyGuardrail (a guardrail, by id or ARN and version, checks text and images as a model's
//! input or output, without calling a model) and InvokeGuardrailChecks (`checks.rs`: scores
//! messages against content filters, prompt attacks and sensitive information, with no
//! guardrail resource).
//!
//! ```no_run
//! # async fn run(factory: bedrock_pool::LlmFactory) -> bedrock_pool::Result<()> {
//! let outcome = factory
//!     .guardrail("abc123def456", "1")
//!     .check_input()
//!     .text("How do I pick a lock?")
//!     .send()
//!     .await?;
//! if outcome.intervened() {
//!     println!("blocked: {:?}", outcome.outputs());
//! }
//! # Ok(()) }
//! ```

mod checks;

pub use checks::{GuardrailChecksOutcome, GuardrailChecksRequest};

use crate::LlmFactory;
use crate::call::plain_call;
use crate::error::{Error, Result};
use crate::op::Op;
use crate::request::check_guardrail;
use aws_sdk_bedrockruntime::operation::apply_guardrail::ApplyGuardrailOutput;
use aws_sdk_bedrockruntime::primitives::Blob;
use aws_sdk_bedrockruntime::types::{
    GuardrailAction, GuardrailAssessment, GuardrailContentBlock, GuardrailContentQualifier,
    GuardrailContentSource, GuardrailCoverage, GuardrailImageBlock, GuardrailImageFormat,
    GuardrailImageSource, GuardrailOutputScope, GuardrailTextBlock, GuardrailUsage,
};

/// A guardrail of the factory's account: an id (or ARN) and a version (a number or `DRAFT`).
#[derive(Clone, Debug)]
pub struct Guardrail {
    factory: LlmFactory,
    id: String,
    version: String,
}

impl LlmFactory {
    /// Returns a guardrail to apply on its own (ApplyGuardrail): its id or ARN, and its version
    /// (a number or `DRAFT`). Nothing is checked or sent until a request is.
    pub fn guardrail(&self, id: impl Into<String>, version: impl Into<String>) -> Guardrail {
        Guardrail {
            factory: self.clone(),
            id: id.into(),
            version: version.into(),
        }
    }
}

impl Guardrail {
    /// Checks content as a model's input (a user's prompt).
    pub fn check_input(&self) -> ApplyGuardrailRequest {
        self.apply(GuardrailContentSource::Input)
    }

    /// Checks content as a model's output (an answer before it is shown).
    pub fn check_output(&self) -> ApplyGuardrailRequest {
        self.apply(GuardrailContentSource::Output)
    }

    /// Checks content from `source`.
    pub fn apply(&self, source: GuardrailContentSource) -> ApplyGuardrailRequest {
        ApplyGuardrailRequest {
            guardrail: self.clone(),
            source,
            content: Vec::new(),
            full: false,
        }
    }
}

/// An ApplyGuardrail request being built. Checked before the network, naming the field.
#[must_use = "a request does nothing until `.send().await`"]
#[derive(Clone, Debug)]
pub struct ApplyGuardrailRequest {
    guardrail: Guardrail,
    source: GuardrailContentSource,
    content: Vec<GuardrailContentBlock>,
    full: bool,
}

impl ApplyGuardrailRequest {
    /// Adds a text to check.
    pub fn text(self, text: impl Into<String>) -> Self {
        self.qualified_text(text, [])
    }

    /// Adds a text with its qualifiers (`grounding_source`, `query`, `guard_content`), for the
    /// contextual grounding check.
    pub fn qualified_text(
        mut self,
        text: impl Into<String>,
        qualifiers: impl IntoIterator<Item = GuardrailContentQualifier>,
    ) -> Self {
        let q: Vec<_> = qualifiers.into_iter().collect();
        if let Ok(block) = GuardrailTextBlock::builder()
            .text(text)
            .set_qualifiers((!q.is_empty()).then_some(q))
            .build()
        {
            self.content.push(GuardrailContentBlock::Text(block));
        }
        self
    }

    /// Adds an image (PNG or JPEG bytes) to check.
    pub fn image(mut self, format: GuardrailImageFormat, bytes: impl Into<Vec<u8>>) -> Self {
        if let Ok(block) = GuardrailImageBlock::builder()
            .format(format)
            .source(GuardrailImageSource::Bytes(Blob::new(bytes.into())))
            .build()
        {
            self.content.push(GuardrailContentBlock::Image(block));
        }
        self
    }

    /// Asks for the whole assessment (`outputScope` `FULL`), not only the interventions.
    pub fn full_output(mut self) -> Self {
        self.full = true;
        self
    }

    fn validate(&self) -> Result<()> {
        check_guardrail(&self.guardrail.id, &self.guardrail.version)?;
        if self.content.is_empty() {
            return Err(Error::invalid(
                "content",
                "nothing to check: add a text or an image",
            ));
        }
        for (i, b) in self.content.iter().enumerate() {
            match b {
                GuardrailContentBlock::Text(t) if t.text().trim().is_empty() => {
                    return Err(Error::invalid(
                        "content",
                        format!("block {i}: the text is empty"),
                    ));
                }
                GuardrailContentBlock::Image(img) => {
                    if !matches!(
                        img.format(),
                        GuardrailImageFormat::Png | GuardrailImageFormat::Jpeg
                    ) {
                        return Err(Error::invalid(
                            "content",
                            format!("block {i}: images are png or jpeg"),
                        ));
                    }
                    if matches!(img.source(), Some(GuardrailImageSource::Bytes(b)) if b.as_ref().is_empty())
                    {
                        return Err(Error::invalid(
                            "content",
                            format!("block {i}: the image is empty"),
                        ));
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Applies the guardrail, in the region its ARN names (one the factory serves), else in
    /// the primary region.
    ///
    /// # Errors
    /// Invalid input, naming the field, before any network call; otherwise the SDK's error
    /// mapped to an [`ErrorKind`](crate::ErrorKind) (an unknown guardrail or version is the
    /// service's `ValidationException`).
    pub async fn send(self) -> Result<GuardrailOutcome> {
        self.validate()?;
        let shared = self.guardrail.factory.shared();
        let arn_region = self
            .guardrail
            .id
            .strip_prefix("arn:")
            .and_then(|a| a.split(':').nth(2));
        let region = match arn_region {
            None => shared.regions.primary(),
            Some(r) => shared.regions.find(r).ok_or_else(|| {
                Error::invalid(
                    "guardrail",
                    format!("the guardrail's ARN names {r}, a region the factory does not serve"),
                )
            })?,
        };
        let call = region
            .client
            .apply_guardrail()
            .guardrail_identifier(&self.guardrail.id)
            .guardrail_version(&self.guardrail.version)
            .source(self.source.clone())
            .set_content(Some(self.content.clone()))
            .set_output_scope(self.full.then_some(GuardrailOutputScope::Full))
            .send();
        let subject = format!("{}:{}", self.guardrail.id, self.guardrail.version);
        let output = plain_call(shared, Op::ApplyGuardrail, &subject, region, call).await?;
        Ok(GuardrailOutcome {
            output,
            region: region.region.clone(),
        })
    }
}

/// What a guardrail decided: intervened or not, the text to show instead, and the assessments.
#[derive(Clone, Debug)]
pub struct GuardrailOutcome {
    output: ApplyGuardrailOutput,
    region: String,
}

impl GuardrailOutcome {
    /// Returns true when the guardrail intervened (`GUARDRAIL_INTERVENED`).
    pub fn intervened(&self) -> bool {
        *self.output.action() == GuardrailAction::GuardrailIntervened
    }

    /// Returns why it acted, when the service says.
    pub fn action_reason(&self) -> Option<&str> {
        self.output.action_reason()
    }

    /// Returns the texts to use instead of the content (the blocked message, or the masked
    /// text), empty when it let everything through.
    pub fn outputs(&self) -> Vec<&str> {
        self.output
            .outputs()
            .iter()
            .filter_map(|o| o.text())
            .collect()
    }

    /// Returns the assessments: one per guardrail policy that ran (words, topics, content,
    /// sensitive information, grounding, automated reasoning), with its metrics.
    pub fn assessments(&self) -> &[GuardrailAssessment] {
        self.output.assessments()
    }

    /// Returns the text units each policy processed (what the service bills).
    pub fn usage(&self) -> Option<&GuardrailUsage> {
        self.output.usage()
    }

    /// Returns how much of the content the guardrail covered.
    pub fn coverage(&self) -> Option<&GuardrailCoverage> {
        self.output.guardrail_coverage()
    }

    /// Returns the region that answered.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// Returns the SDK's whole output.
    pub fn output(&self) -> &ApplyGuardrailOutput {
        &self.output
    }
}
