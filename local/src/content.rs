//! The service model's rules for the content blocks beyond text: images, tool results (and
//! their contents), search results and cited text, checked where a request holds them; the
//! error names the field.

use serde_json::{Map, Value};

/// The image formats of the service model's `ImageFormat`.
const IMAGE_FORMATS: [&str; 4] = ["png", "jpeg", "gif", "webp"];

/// The members of the service model's `ToolResultContentBlock`.
const TOOL_RESULT_CONTENT: [&str; 6] =
    ["json", "text", "image", "document", "video", "searchResult"];

/// Checks the block's one member (already known to be the only one) when it is an image, a
/// tool result, a search result or cited text; other kinds pass.
pub(crate) fn validate_kind(block: &Map<String, Value>, path: &str) -> Result<(), String> {
    if let Some(image) = block.get("image") {
        validate_image(image, &format!("{path}.image"))?;
    }
    if let Some(result) = block.get("toolResult") {
        validate_tool_result(result, &format!("{path}.toolResult"))?;
    }
    if let Some(result) = block.get("searchResult") {
        validate_search_result(result, &format!("{path}.searchResult"))?;
    }
    if let Some(cited) = block.get("citationsContent") {
        validate_cited(cited, &format!("{path}.citationsContent"))?;
    }
    Ok(())
}

/// Returns the object at `path`, or the error naming it.
fn object<'a>(v: &'a Value, path: &str) -> Result<&'a Map<String, Value>, String> {
    v.as_object()
        .ok_or_else(|| format!("{path}: must be an object"))
}

/// Returns the non-empty string member `name` of `obj`, or the error naming it.
fn required_str<'a>(
    obj: &'a Map<String, Value>,
    name: &str,
    path: &str,
) -> Result<&'a str, String> {
    match obj.get(name).and_then(Value::as_str) {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(format!("{path}.{name}: member must be a non-empty string")),
    }
}

/// Returns the list member `name` of `obj` (required and non-empty), or the error naming it.
fn required_list<'a>(
    obj: &'a Map<String, Value>,
    name: &str,
    path: &str,
) -> Result<&'a [Value], String> {
    match obj.get(name).and_then(Value::as_array) {
        Some(l) if !l.is_empty() => Ok(l),
        _ => Err(format!("{path}.{name}: member must be a non-empty list")),
    }
}

/// Checks a union member: exactly one non-null member, one of `allowed`.
fn one_of<'a>(v: &'a Value, allowed: &[&str], path: &str) -> Result<(&'a str, &'a Value), String> {
    let obj = object(v, path)?;
    let set: Vec<(&String, &Value)> = obj.iter().filter(|(_, v)| !v.is_null()).collect();
    match set.as_slice() {
        [(name, value)] if allowed.contains(&name.as_str()) => Ok((name.as_str(), value)),
        [(name, _)] => Err(format!(
            "{path}.{name}: unknown member (expected one of {})",
            allowed.join(", ")
        )),
        _ => Err(format!(
            "{path}: must have exactly one member of {}",
            allowed.join(", ")
        )),
    }
}

/// Checks an `ImageBlock`: a known format, and a source of non-empty base64 bytes or an S3
/// location.
fn validate_image(image: &Value, path: &str) -> Result<(), String> {
    let obj = object(image, path)?;
    let format = required_str(obj, "format", path)?;
    if !IMAGE_FORMATS.contains(&format) {
        return Err(format!(
            "{path}.format: must be one of {}",
            IMAGE_FORMATS.join(", ")
        ));
    }
    let source = obj
        .get("source")
        .ok_or_else(|| format!("{path}.source: member must not be null"))?;
    let source_path = format!("{path}.source");
    match one_of(source, &["bytes", "s3Location"], &source_path)? {
        ("bytes", b) => {
            let decoded = b
                .as_str()
                .map(aws_smithy_types::base64::decode)
                .and_then(Result::ok);
            if decoded.is_none_or(|d| d.is_empty()) {
                return Err(format!("{source_path}.bytes: must be non-empty base64"));
            }
        }
        (_, s3) => {
            let uri = required_str(
                object(s3, &source_path)?,
                "uri",
                &format!("{source_path}.s3Location"),
            )?;
            if !uri.starts_with("s3://") {
                return Err(format!(
                    "{source_path}.s3Location.uri: must start with s3://"
                ));
            }
        }
    }
    Ok(())
}

/// Checks a `ToolResultBlock`: its id, a non-empty content list of known members, a known
/// status.
fn validate_tool_result(result: &Value, path: &str) -> Result<(), String> {
    let obj = object(result, path)?;
    required_str(obj, "toolUseId", path)?;
    if let Some(status) = obj.get("status").filter(|s| !s.is_null())
        && !matches!(status.as_str(), Some("success" | "error"))
    {
        return Err(format!("{path}.status: must be one of success, error"));
    }
    let content = obj
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("{path}.content: member must be a list"))?;
    for (k, c) in content.iter().enumerate() {
        let at = format!("{path}.content.{k}");
        match one_of(c, &TOOL_RESULT_CONTENT, &at)? {
            ("image", image) => validate_image(image, &format!("{at}.image"))?,
            ("searchResult", s) => validate_search_result(s, &format!("{at}.searchResult"))?,
            ("text", t) if !t.is_string() => return Err(format!("{at}.text: must be a string")),
            _ => {}
        }
    }
    Ok(())
}

/// Checks a `SearchResultBlock`: source, title, a non-empty list of texts, citations config.
fn validate_search_result(result: &Value, path: &str) -> Result<(), String> {
    let obj = object(result, path)?;
    required_str(obj, "source", path)?;
    required_str(obj, "title", path)?;
    for (k, c) in required_list(obj, "content", path)?.iter().enumerate() {
        if !c.get("text").is_some_and(Value::is_string) {
            return Err(format!("{path}.content.{k}.text: member must be a string"));
        }
    }
    if let Some(citations) = obj.get("citations").filter(|c| !c.is_null())
        && !citations.get("enabled").is_some_and(Value::is_boolean)
    {
        return Err(format!(
            "{path}.citations.enabled: member must be a boolean"
        ));
    }
    Ok(())
}

/// Checks a `CitationsContentBlock` (cited text in an assistant turn): lists of texts and
/// citations.
fn validate_cited(cited: &Value, path: &str) -> Result<(), String> {
    let obj = object(cited, path)?;
    for member in ["content", "citations"] {
        if let Some(v) = obj.get(member).filter(|v| !v.is_null())
            && !v.is_array()
        {
            return Err(format!("{path}.{member}: must be a list"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(block: Value) -> Result<(), String> {
        validate_kind(block.as_object().unwrap(), "messages.0.content.1")
    }

    #[test]
    fn each_kind_is_checked_naming_the_field() {
        let png = json!({ "format": "png", "source": { "bytes": "iVBORw==" } });
        let search = json!({ "source": "s", "title": "t", "content": [{ "text": "x" }] });
        assert_eq!(check(json!({ "image": png })), Ok(()));
        assert_eq!(
            check(
                json!({ "toolResult": { "toolUseId": "t", "status": "success", "content": [
                { "json": { "a": 1 } }, { "text": "x" }, { "image": png }, { "searchResult": search },
                { "document": { "name": "d", "source": { "text": "x" } } },
            ] } })
            ),
            Ok(())
        );
        assert_eq!(check(json!({ "searchResult": search })), Ok(()));
        let cases = [
            (
                json!({ "image": { "format": "bmp", "source": { "bytes": "eA==" } } }),
                "messages.0.content.1.image.format",
            ),
            (
                json!({ "image": { "format": "png", "source": { "bytes": "" } } }),
                "messages.0.content.1.image.source.bytes",
            ),
            (
                json!({ "image": { "format": "png", "source": { "s3Location": { "uri": "http://x" } } } }),
                "messages.0.content.1.image.source.s3Location.uri",
            ),
            (
                json!({ "image": { "format": "png", "source": {} } }),
                "messages.0.content.1.image.source: must have exactly one",
            ),
            (
                json!({ "toolResult": { "content": [] } }),
                "messages.0.content.1.toolResult.toolUseId",
            ),
            (
                json!({ "toolResult": { "toolUseId": "t", "status": "ok", "content": [] } }),
                "messages.0.content.1.toolResult.status",
            ),
            (
                json!({ "toolResult": { "toolUseId": "t" } }),
                "messages.0.content.1.toolResult.content",
            ),
            (
                json!({ "toolResult": { "toolUseId": "t", "content": [{ "audio": {} }] } }),
                "messages.0.content.1.toolResult.content.0.audio: unknown member",
            ),
            (
                json!({ "toolResult": { "toolUseId": "t", "content": [{ "image": { "format": "png" } }] } }),
                "messages.0.content.1.toolResult.content.0.image.source",
            ),
            (
                json!({ "searchResult": { "source": "s", "title": "t", "content": [] } }),
                "messages.0.content.1.searchResult.content",
            ),
            (
                json!({ "searchResult": { "source": "s", "content": [{ "text": "x" }] } }),
                "messages.0.content.1.searchResult.title",
            ),
            (
                json!({ "searchResult": { "source": "s", "title": "t", "content": [{ "text": "x" }], "citations": {} } }),
                "messages.0.content.1.searchResult.citations.enabled",
            ),
            (
                json!({ "citationsContent": { "content": "x" } }),
                "messages.0.content.1.citationsContent.content",
            ),
        ];
        for (block, field) in cases {
            let err = check(block.clone()).unwrap_err();
            assert!(err.starts_with(field), "{block}: {err}");
        }
    }
}
