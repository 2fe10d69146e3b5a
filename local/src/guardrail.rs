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

/// Answers ApplyGuardrail (`POST /guardrail/{id}/version/{version}/apply`) with the guardrails
/// the server knows: `GUARDRAIL_INTERVENED` when a text block holds the trigger word (the
/// output is the blocked message, the assessment's word policy names the word), `NONE`
/// otherwise; images are accepted and not read. Errors are validation messages naming the
/// field, or the ones Converse gives for an unknown guardrail.
pub(crate) fn apply(
    guardrails: &[Guardrail],
    identifier: &str,
    version: &str,
    body: &serde_json::Value,
) -> Result<serde_json::Value, String> {
    use serde_json::{Value, json};
    let Some(guardrail) = guardrails.iter().find(|g| g.named_by(identifier)) else {
        return Err("The provided guardrail identifier is invalid.".to_owned());
    };
    if version != "DRAFT" && version != guardrail.version {
        return Err("The provided guardrail version is invalid.".to_owned());
    }
    match body.get("source").and_then(Value::as_str) {
        Some("INPUT" | "OUTPUT") => {}
        _ => return Err("source: must be one of INPUT, OUTPUT".to_owned()),
    }
    let content = body
        .get("content")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
        .ok_or("content: must contain at least one content block")?;
    let mut texts = Vec::new();
    for (i, block) in content.iter().enumerate() {
        match (block.pointer("/text/text"), block.get("image")) {
            (Some(Value::String(t)), None) if !t.is_empty() => texts.push(t.as_str()),
            (None, Some(image)) if image.pointer("/source/bytes").is_some() => {}
            _ => return Err(format!("content.{i}: must be a text or an image block")),
        }
    }
    let characters: usize = texts.iter().map(|t| t.chars().count()).sum();
    let units = characters.div_ceil(1000).max(1);
    let usage = json!({
        "topicPolicyUnits": 0, "contentPolicyUnits": 0, "wordPolicyUnits": units,
        "sensitiveInformationPolicyUnits": 0, "sensitiveInformationPolicyFreeUnits": 0,
        "contextualGroundingPolicyUnits": 0,
    });
    let coverage = json!({ "textCharacters": { "guarded": characters, "total": characters } });
    let hit = texts.iter().any(|t| guardrail.triggered_by(t));
    if !hit {
        return Ok(json!({
            "usage": usage, "action": "NONE", "outputs": [], "assessments": [{}],
            "guardrailCoverage": coverage,
        }));
    }
    Ok(json!({
        "usage": usage,
        "action": "GUARDRAIL_INTERVENED",
        "actionReason": "Guardrail blocked.",
        "outputs": [{ "text": guardrail.blocked_message }],
        "assessments": [{
            "wordPolicy": {
                "customWords": [{
                    "match": guardrail.trigger_word, "action": "BLOCKED", "detected": true,
                }],
                "managedWordLists": [],
            },
            "invocationMetrics": {
                "guardrailProcessingLatency": 1,
                "usage": usage,
                "guardrailCoverage": coverage,
            },
        }],
        "guardrailCoverage": coverage,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn apply_intervenes_on_the_trigger_word_only() {
        let g = [Guardrail::test()];
        let body = |t: &str| json!({ "source": "INPUT", "content": [{ "text": { "text": t } }] });
        let hit = apply(&g, TEST_GUARDRAIL_ID, "1", &body("a Forbidden word")).unwrap();
        assert_eq!(hit["action"], "GUARDRAIL_INTERVENED");
        assert_eq!(hit["outputs"][0]["text"], DEFAULT_BLOCKED_MESSAGE);
        assert_eq!(
            hit["assessments"][0]["wordPolicy"]["customWords"][0]["match"],
            "forbidden"
        );
        let clean = apply(&g, TEST_GUARDRAIL_ID, "DRAFT", &body("all good")).unwrap();
        assert_eq!(clean["action"], "NONE");
        assert_eq!(clean["outputs"], json!([]));
        assert!(
            apply(&g, "nope", "1", &body("x"))
                .unwrap_err()
                .contains("identifier")
        );
        assert!(
            apply(&g, TEST_GUARDRAIL_ID, "9", &body("x"))
                .unwrap_err()
                .contains("version")
        );
        let no_source = json!({ "content": [{ "text": { "text": "x" } }] });
        assert!(
            apply(&g, TEST_GUARDRAIL_ID, "1", &no_source)
                .unwrap_err()
                .starts_with("source")
        );
        let empty = json!({ "source": "OUTPUT", "content": [] });
        assert!(
            apply(&g, TEST_GUARDRAIL_ID, "1", &empty)
                .unwrap_err()
                .starts_with("content")
        );
    }
}

/// Answers InvokeGuardrailChecks (`POST /guardrail-checks/invoke`) with the behaviour of the
/// test guardrail: a message text holding a known guardrail's trigger word scores 0.9 in every
/// requested content-filter and prompt-attack category (0.0 otherwise); sensitive information
/// finds e-mail addresses (`EMAIL`, confidence 0.99, with their message, block and character
/// offsets) when asked for them. Usage counts 1 text unit per 1000 characters per check run.
pub(crate) fn checks(
    guardrails: &[Guardrail],
    body: &serde_json::Value,
) -> Result<serde_json::Value, String> {
    use serde_json::{Value, json};
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or("messages: must contain at least one message")?;
    let mut texts: Vec<(usize, usize, &str)> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        match m.get("role").and_then(Value::as_str) {
            Some("user" | "assistant" | "system") => {}
            _ => {
                return Err(format!(
                    "messages.{i}.role: must be one of user, assistant, system"
                ));
            }
        }
        let content = m
            .get("content")
            .and_then(Value::as_array)
            .filter(|c| !c.is_empty())
            .ok_or(format!(
                "messages.{i}.content: must contain at least one content block"
            ))?;
        for (j, b) in content.iter().enumerate() {
            match b.get("text").and_then(Value::as_str) {
                Some(t) if !t.is_empty() => texts.push((i, j, t)),
                _ => return Err(format!("messages.{i}.content.{j}.text: must not be empty")),
            }
        }
    }
    let checks = body
        .get("checks")
        .filter(|c| c.is_object())
        .ok_or("checks: member must not be null")?;
    let triggered = texts
        .iter()
        .any(|(_, _, t)| guardrails.iter().any(|g| g.triggered_by(t)));
    let score = if triggered { 0.9 } else { 0.0 };
    let units = texts
        .iter()
        .map(|(.., t)| t.chars().count())
        .sum::<usize>()
        .div_ceil(1000)
        .max(1);
    let mut results = serde_json::Map::new();
    let mut usage = serde_json::Map::new();
    for (check, list, key) in [
        ("contentFilter", "categories", "category"),
        ("promptAttack", "categories", "category"),
    ] {
        let Some(config) = checks.get(check).filter(|c| !c.is_null()) else {
            continue;
        };
        let categories = config
            .get(list)
            .and_then(Value::as_array)
            .filter(|c| !c.is_empty())
            .ok_or(format!(
                "checks.{check}.{list}: must contain at least one item"
            ))?;
        let entries: Vec<Value> = categories
            .iter()
            .map(|c| json!({ key: c.get(key).cloned().unwrap_or(Value::Null), "severityScore": score }))
            .collect();
        results.insert(check.to_owned(), json!({ "results": entries }));
        usage.insert(check.to_owned(), json!({ "textUnits": units }));
    }
    if let Some(config) = checks.get("sensitiveInformation").filter(|c| !c.is_null()) {
        let entities = config
            .get("entities")
            .and_then(Value::as_array)
            .filter(|e| !e.is_empty())
            .ok_or("checks.sensitiveInformation.entities: must contain at least one item")?;
        let wants_email = entities
            .iter()
            .any(|e| e.get("type").and_then(Value::as_str) == Some("EMAIL"));
        let mut found = Vec::new();
        if wants_email {
            for (i, j, t) in &texts {
                let mut offset = 0;
                for word in t.split(' ') {
                    let w = word.trim_end_matches(['.', ',', ';', '!', '?']);
                    if w.contains('@') && w.contains('.') {
                        let begin = t[..offset].chars().count();
                        found.push(json!({
                            "type": "EMAIL", "confidenceScore": 0.99,
                            "beginOffset": begin, "endOffset": begin + w.chars().count(),
                            "messageIndex": i, "contentIndex": j,
                        }));
                    }
                    offset += word.len() + 1;
                }
            }
        }
        results.insert(
            "sensitiveInformation".to_owned(),
            json!({ "results": found, "truncated": false }),
        );
        usage.insert(
            "sensitiveInformation".to_owned(),
            json!({ "textUnits": units }),
        );
    }
    if results.is_empty() {
        return Err("checks: must ask for at least one of contentFilter, promptAttack, sensitiveInformation".to_owned());
    }
    Ok(json!({ "results": results, "usage": usage }))
}

#[cfg(test)]
mod checks_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn checks_score_the_trigger_and_find_emails() {
        let g = [Guardrail::test()];
        let body = |t: &str| {
            json!({
                "messages": [{ "role": "user", "content": [{ "text": t }] }],
                "checks": {
                    "contentFilter": { "categories": [{ "category": "VIOLENCE" }, { "category": "HATE" }] },
                    "promptAttack": { "categories": [{ "category": "JAILBREAK" }] },
                    "sensitiveInformation": { "entities": [{ "type": "EMAIL" }] },
                },
            })
        };
        let hit = checks(&g, &body("a forbidden thing, mail me at a.b@example.com.")).unwrap();
        assert_eq!(
            hit["results"]["contentFilter"]["results"][1],
            json!({ "category": "HATE", "severityScore": 0.9 })
        );
        assert_eq!(
            hit["results"]["promptAttack"]["results"][0]["severityScore"],
            0.9
        );
        let email = &hit["results"]["sensitiveInformation"]["results"][0];
        assert_eq!(
            (email["beginOffset"].as_u64(), email["endOffset"].as_u64()),
            (Some(30), Some(45))
        );
        assert_eq!(hit["usage"]["contentFilter"]["textUnits"], 1);
        let clean = checks(&g, &body("hello")).unwrap();
        assert_eq!(
            clean["results"]["contentFilter"]["results"][0]["severityScore"],
            0.0
        );
        assert_eq!(
            clean["results"]["sensitiveInformation"]["results"],
            json!([])
        );
        assert!(
            checks(&g, &json!({ "messages": [], "checks": {} }))
                .unwrap_err()
                .starts_with("messages")
        );
        let no_check =
            json!({ "messages": [{ "role": "user", "content": [{ "text": "x" }] }], "checks": {} });
        assert!(checks(&g, &no_check).unwrap_err().starts_with("checks"));
    }
}
