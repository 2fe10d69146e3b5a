//! Test guardrails: a value naming a guardrail id and version and the word that makes it
//! intervene.

/// The id of the guardrail every server knows by default ([`Guardrail::test`]).
pub const TEST_GUARDRAIL_ID: &str = "localtestguardrail";
/// The version of [`Guardrail::test`] (`DRAFT` is accepted too).
pub const TEST_GUARDRAIL_VERSION: &str = "1";
/// The word that makes [`Guardrail::test`] intervene.
pub const TEST_GUARDRAIL_TRIGGER: &str = "forbidden";
/// The output a guardrail sends instead of the model's answer by default (the Bedrock console's
/// default blocked message).
pub const DEFAULT_BLOCKED_MESSAGE: &str = "Sorry, the model cannot answer this question.";

/// Describes a guardrail the server knows: requests naming it in `guardrailConfig` are checked,
/// and it intervenes when its trigger word appears in the last user message.
///
/// On intervention the answer's stop reason is `guardrail_intervened`, the output is the blocked
/// message (the model is not called, output tokens are 0), and with `trace` `enabled` or
/// `enabled_full` the response (stream: the metadata event) carries `trace.guardrail` with an
/// input assessment whose word policy names the trigger. A request naming an unknown id or
/// version is refused with `400 ValidationException`.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Guardrail {
    /// The guardrail id (requests may name it or its ARN
    /// `arn:aws:bedrock:REGION:ACCOUNT:guardrail/ID`).
    pub id: String,
    /// The numbered version it has; `DRAFT` is always accepted too.
    pub version: String,
    /// The word (matched case-insensitively, anywhere in the text) that makes it intervene.
    pub trigger_word: String,
    /// The text that replaces the answer when it intervenes.
    pub blocked_message: String,
}

impl Guardrail {
    /// Returns a guardrail with this id, version and trigger word, and the default blocked
    /// message ([`DEFAULT_BLOCKED_MESSAGE`]).
    pub fn new(
        id: impl Into<String>,
        version: impl Into<String>,
        trigger_word: impl Into<String>,
    ) -> Self {
        Self {
            id: id.into(),
            version: version.into(),
            trigger_word: trigger_word.into(),
            blocked_message: DEFAULT_BLOCKED_MESSAGE.to_owned(),
        }
    }

    /// Returns the guardrail every server knows unless told otherwise: [`TEST_GUARDRAIL_ID`],
    /// version [`TEST_GUARDRAIL_VERSION`], trigger [`TEST_GUARDRAIL_TRIGGER`].
    pub fn test() -> Self {
        Self::new(
            TEST_GUARDRAIL_ID,
            TEST_GUARDRAIL_VERSION,
            TEST_GUARDRAIL_TRIGGER,
        )
    }

    /// Returns the guardrail with another blocked message.
    pub fn blocked_message(mut self, message: impl Into<String>) -> Self {
        self.blocked_message = message.into();
        self
    }

    /// Returns whether a request's identifier (id or ARN) names this guardrail.
    pub(crate) fn named_by(&self, identifier: &str) -> bool {
        identifier == self.id
            || identifier
                .rsplit_once(":guardrail/")
                .is_some_and(|(_, id)| id == self.id)
    }

    /// Returns whether the text holds the trigger word.
    pub(crate) fn triggered_by(&self, text: &str) -> bool {
        !self.trigger_word.is_empty()
            && text
                .to_lowercase()
                .contains(&self.trigger_word.to_lowercase())
    }
}
