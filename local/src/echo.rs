//! What the echo responder answers for the last user message's blocks other than text: each
//! comes back as a block kind that a stream carries too, so that a collected stream equals the
//! unary answer (see [`Responder::echo`](super::Responder::echo)).

use serde_json::{Value, json};

use super::reply_block::{ImageSource, ReplyBlock, ToolResultContent};

/// Returns the echo of the last user message's images, search results and tool results, in
/// order (the validated body's blocks; a block this cannot read is left out).
pub(crate) fn echo_blocks(body: &Value) -> Vec<ReplyBlock> {
    let Some(last_user) = body
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|m| {
            m.iter()
                .rev()
                .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        })
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut search_results = 0;
    for block in last_user
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(image) = block.get("image") {
            out.extend(image_block(image));
        } else if let Some(result) = block.get("searchResult") {
            out.extend(search_result_block(result, &mut search_results));
        } else if let Some(result) = block.get("toolResult") {
            tool_result_blocks(result, &mut search_results, &mut out);
        }
    }
    out
}

/// Returns the image of a Converse `image` member.
fn image_block(image: &Value) -> Option<ReplyBlock> {
    Some(ReplyBlock::Image {
        format: image.get("format")?.as_str()?.to_owned(),
        source: image_source(image.get("source")?)?,
    })
}

/// Returns the source of a Converse image `source` member.
fn image_source(source: &Value) -> Option<ImageSource> {
    if let Some(b64) = source.get("bytes").and_then(Value::as_str) {
        return aws_smithy_types::base64::decode(b64)
            .ok()
            .map(ImageSource::Bytes);
    }
    let s3 = source.get("s3Location")?;
    Some(ImageSource::S3 {
        uri: s3.get("uri")?.as_str()?.to_owned(),
        bucket_owner: s3
            .get("bucketOwner")
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

/// Returns the answer to a search result, the `index`-th of the message: cited text when its
/// citations are enabled, plain text otherwise.
fn search_result_block(result: &Value, index: &mut usize) -> Option<ReplyBlock> {
    let this = *index;
    *index += 1;
    let texts: Vec<&str> = result
        .get("content")?
        .as_array()?
        .iter()
        .filter_map(|c| c.get("text").and_then(Value::as_str))
        .collect();
    let text = texts.join("\n");
    if result
        .pointer("/citations/enabled")
        .and_then(Value::as_bool)
        != Some(true)
    {
        return Some(ReplyBlock::Text(text));
    }
    let citation = json!({
        "title": result.get("title"),
        "source": result.get("source"),
        "sourceContent": texts.iter().map(|t| json!({ "text": t })).collect::<Vec<_>>(),
        "location": { "searchResultLocation": {
            "searchResultIndex": this,
            "start": 0,
            "end": texts.len().saturating_sub(1),
        } },
    });
    Some(ReplyBlock::Cited {
        text,
        citations: vec![citation],
    })
}

/// Appends the answer to a tool result: the same id, status and text and JSON contents, then
/// its images and search results echoed as blocks of their own.
fn tool_result_blocks(result: &Value, search_results: &mut usize, out: &mut Vec<ReplyBlock>) {
    let Some(id) = result.get("toolUseId").and_then(Value::as_str) else {
        return;
    };
    let mut content = Vec::new();
    let mut after = Vec::new();
    for c in result
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(t) = c.get("text").and_then(Value::as_str) {
            content.push(ToolResultContent::Text(t.to_owned()));
        } else if let Some(j) = c.get("json") {
            content.push(ToolResultContent::Json(j.clone()));
        } else if let Some(image) = c.get("image") {
            after.extend(image_block(image));
        } else if let Some(s) = c.get("searchResult") {
            after.extend(search_result_block(s, search_results));
        }
    }
    out.push(ReplyBlock::ToolResult {
        tool_use_id: id.to_owned(),
        status: result
            .get("status")
            .and_then(Value::as_str)
            .map(str::to_owned),
        content,
    });
    out.extend(after);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_comes_back_as_a_streamable_block() {
        let body = json!({ "messages": [{ "role": "user", "content": [
            { "text": "look" },
            { "image": { "format": "png", "source": { "bytes": "iVBORw==" } } },
            { "searchResult": { "source": "https://a", "title": "A", "content": [{ "text": "one" }, { "text": "two" }], "citations": { "enabled": true } } },
            { "toolResult": { "toolUseId": "t1", "status": "error", "content": [
                { "text": "bad" }, { "json": { "n": 1 } },
                { "image": { "format": "gif", "source": { "s3Location": { "uri": "s3://b/k" } } } },
                { "searchResult": { "source": "s", "title": "B", "content": [{ "text": "plain" }] } },
                { "document": { "name": "d", "source": { "text": "unread" } } },
            ] } },
        ] }] });
        let blocks = echo_blocks(&body);
        assert_eq!(blocks.len(), 5, "{blocks:?}");
        assert_eq!(blocks[0], ReplyBlock::image("png", b"\x89PNG".to_vec()));
        let ReplyBlock::Cited { text, citations } = &blocks[1] else {
            panic!("{:?}", blocks[1]);
        };
        assert_eq!(text, "one\ntwo");
        assert_eq!(
            citations[0]["location"]["searchResultLocation"],
            json!({ "searchResultIndex": 0, "start": 0, "end": 1 })
        );
        assert_eq!(
            blocks[2],
            ReplyBlock::ToolResult {
                tool_use_id: "t1".into(),
                status: Some("error".into()),
                content: vec![
                    ToolResultContent::Text("bad".into()),
                    ToolResultContent::Json(json!({ "n": 1 })),
                ],
            }
        );
        assert!(
            matches!(&blocks[3], ReplyBlock::Image { format, source: ImageSource::S3 { uri, .. } } if format == "gif" && uri == "s3://b/k")
        );
        assert_eq!(blocks[4], ReplyBlock::Text("plain".into()));
    }
}
