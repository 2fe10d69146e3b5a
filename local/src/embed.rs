//! Embedding models behind InvokeModel: Amazon Titan Text Embeddings V2 and Cohere Embed v3/v4,
//! with their documented request and response bodies and deterministic vectors.
//!
//! A vector is drawn from a generator seeded with a hash of the model family and the text: the
//! same text always gives the same vector, different texts differ. Titan vectors are unit-norm
//! when `normalize` is true (the default) and raw otherwise; Cohere vectors are always unit-norm.
//! Tokens are counted as words.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::model::count_words;
use super::wire;

/// Names an embedding model family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Family {
    /// `amazon.titan-embed-text-v2:0`.
    TitanV2,
    /// `cohere.embed-english-v3`, `cohere.embed-multilingual-v3`.
    CohereV3,
    /// `cohere.embed-v4:0`.
    CohereV4,
}

/// Returns the embedding family a model id (base id, ARN or inference profile) names.
pub(crate) fn family(model_id: &str) -> Option<Family> {
    if model_id.contains("amazon.titan-embed-text-v2") {
        Some(Family::TitanV2)
    } else if model_id.contains("cohere.embed-v4") {
        Some(Family::CohereV4)
    } else if model_id.contains("cohere.embed-english-v3")
        || model_id.contains("cohere.embed-multilingual-v3")
    {
        Some(Family::CohereV3)
    } else {
        None
    }
}

/// Describes an embedding answer: the JSON body and the input tokens.
pub(crate) struct Embedding {
    pub(crate) body: Value,
    pub(crate) input_tokens: u64,
}

/// Returns the answer to an embedding request, or a validation message naming the field.
pub(crate) fn answer(family: Family, body: &Value) -> Result<Embedding, String> {
    let obj = body.as_object().ok_or("body: must be a JSON object")?;
    match family {
        Family::TitanV2 => titan(obj),
        Family::CohereV3 | Family::CohereV4 => cohere(family, obj),
    }
}

/// Titan V2 limits (model card): 8,192 tokens and 50,000 characters per input.
const TITAN_MAX_TOKENS: u64 = 8192;
const TITAN_MAX_CHARS: usize = 50_000;

fn titan(obj: &Map<String, Value>) -> Result<Embedding, String> {
    const KEYS: [&str; 4] = ["inputText", "dimensions", "normalize", "embeddingTypes"];
    if let Some(k) = obj.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(format!("{k}: extraneous key is not permitted"));
    }
    let text = match obj.get("inputText") {
        None | Some(Value::Null) => return Err("inputText: required key not found".to_owned()),
        Some(Value::String(s)) if s.trim().is_empty() => {
            return Err("inputText: must not be empty".to_owned());
        }
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err("inputText: must be a string".to_owned()),
    };
    if text.chars().count() > TITAN_MAX_CHARS {
        return Err(format!(
            "inputText: must be at most {TITAN_MAX_CHARS} characters"
        ));
    }
    let tokens = count_words(text);
    if tokens > TITAN_MAX_TOKENS {
        return Err(format!(
            "inputText: {tokens} tokens exceed the model's limit of {TITAN_MAX_TOKENS}"
        ));
    }
    let dim = match obj.get("dimensions") {
        None | Some(Value::Null) => 1024,
        Some(v) => match v.as_u64() {
            Some(d @ (256 | 512 | 1024)) => d as usize,
            _ => return Err("dimensions: must be one of 256, 512, 1024".to_owned()),
        },
    };
    let normalize = match obj.get("normalize") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("normalize: must be a boolean".to_owned()),
    };
    let types = embedding_types(
        obj.get("embeddingTypes"),
        "embeddingTypes",
        &["float", "binary"],
    )?
    .unwrap_or_else(|| vec!["float".to_owned()]);
    let vector = vector(Family::TitanV2, text, dim, normalize);
    let mut by_type = Map::new();
    for t in &types {
        let v = if t == "binary" {
            json!(
                vector
                    .iter()
                    .map(|x| u8::from(*x > 0.0))
                    .collect::<Vec<_>>()
            )
        } else {
            json!(vector)
        };
        by_type.insert(t.clone(), v);
    }
    Ok(Embedding {
        body: json!({
            "embedding": vector,
            "inputTextTokenCount": tokens,
            "embeddingsByType": by_type,
        }),
        input_tokens: tokens,
    })
}

/// The Cohere `input_type` values for texts.
const INPUT_TYPES: [&str; 4] = [
    "search_document",
    "search_query",
    "classification",
    "clustering",
];

/// Cohere limits: 96 texts per call; v3 2,048 characters and 512 tokens per text; v4 128k tokens.
const COHERE_MAX_TEXTS: usize = 96;
const COHERE_V3_MAX_CHARS: usize = 2048;
const COHERE_V3_MAX_TOKENS: u64 = 512;
const COHERE_V4_MAX_TOKENS: u64 = 128_000;

// Long because it checks each Cohere field in the service's order and builds the answer in one pass.
fn cohere(family: Family, obj: &Map<String, Value>) -> Result<Embedding, String> {
    let v4 = family == Family::CohereV4;
    for key in ["images", "inputs"] {
        if obj.get(key).is_some_and(|v| !v.is_null()) {
            return Err(format!(
                "{key}: image and mixed inputs are not supported by the local server"
            ));
        }
    }
    let texts = match obj.get("texts") {
        None | Some(Value::Null) => return Err("texts: required key not found".to_owned()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err("texts: must be an array of strings".to_owned()),
    };
    if texts.is_empty() {
        return Err("texts: must not be empty".to_owned());
    }
    if texts.len() > COHERE_MAX_TEXTS {
        return Err(format!(
            "texts: must have at most {COHERE_MAX_TEXTS} items, got {}",
            texts.len()
        ));
    }
    match obj.get("input_type") {
        None | Some(Value::Null) => return Err("input_type: required key not found".to_owned()),
        Some(Value::String(s)) if INPUT_TYPES.contains(&s.as_str()) => {}
        Some(_) => {
            return Err(format!(
                "input_type: must be one of {}",
                INPUT_TYPES.join(", ")
            ));
        }
    }
    let truncates: &[&str] = if v4 {
        &["NONE", "LEFT", "RIGHT"]
    } else {
        &["NONE", "START", "END"]
    };
    let truncate = match obj.get("truncate") {
        None | Some(Value::Null) => "NONE",
        Some(Value::String(s)) if truncates.contains(&s.as_str()) => s.as_str(),
        Some(_) => return Err(format!("truncate: must be one of {}", truncates.join(", "))),
    };
    let dim = if v4 {
        match obj.get("output_dimension") {
            None | Some(Value::Null) => 1536,
            Some(v) => match v.as_u64() {
                Some(d @ (256 | 512 | 1024 | 1536)) => d as usize,
                _ => {
                    return Err("output_dimension: must be one of 256, 512, 1024, 1536".to_owned());
                }
            },
        }
    } else {
        if obj.get("output_dimension").is_some_and(|v| !v.is_null()) {
            return Err("output_dimension: not supported by this model".to_owned());
        }
        1024
    };
    let max_tokens = if v4 {
        match obj.get("max_tokens") {
            None | Some(Value::Null) => COHERE_V4_MAX_TOKENS,
            Some(v) => match v.as_u64() {
                Some(n @ 1..=COHERE_V4_MAX_TOKENS) => n,
                _ => {
                    return Err(format!(
                        "max_tokens: must be between 1 and {COHERE_V4_MAX_TOKENS}"
                    ));
                }
            },
        }
    } else {
        COHERE_V3_MAX_TOKENS
    };
    let mut strings = Vec::with_capacity(texts.len());
    let mut input_tokens = 0;
    for (i, t) in texts.iter().enumerate() {
        let Some(s) = t.as_str() else {
            return Err(format!("texts[{i}]: must be a string"));
        };
        if !v4 && s.chars().count() > COHERE_V3_MAX_CHARS {
            return Err(format!(
                "texts[{i}]: must be at most {COHERE_V3_MAX_CHARS} characters"
            ));
        }
        let tokens = count_words(s);
        if tokens > max_tokens && truncate == "NONE" {
            return Err(format!(
                "texts[{i}]: {tokens} tokens exceed the limit of {max_tokens} (truncate is NONE)"
            ));
        }
        input_tokens += tokens.min(max_tokens);
        strings.push(s);
    }
    const TYPES: [&str; 5] = ["float", "int8", "uint8", "binary", "ubinary"];
    let types = embedding_types(obj.get("embedding_types"), "embedding_types", &TYPES)?;
    let vectors: Vec<Vec<f32>> = strings
        .iter()
        .map(|s| vector(family, s, dim, true))
        .collect();
    let (embeddings, response_type) = match types {
        // v3 without embedding_types answers a plain list of float vectors.
        None if !v4 => (json!(vectors), "embeddings_floats"),
        types => {
            let types = types.unwrap_or_else(|| vec!["float".to_owned()]);
            let mut by_type = Map::new();
            for t in types {
                let encoded: Vec<Value> = vectors.iter().map(|v| encode(v, &t)).collect();
                by_type.insert(t, Value::Array(encoded));
            }
            (Value::Object(by_type), "embeddings_by_type")
        }
    };
    Ok(Embedding {
        body: json!({
            "id": wire::request_id(),
            "embeddings": embeddings,
            "response_type": response_type,
            "texts": strings,
        }),
        input_tokens,
    })
}

/// Returns the validated embedding types (None when absent).
fn embedding_types(
    value: Option<&Value>,
    field: &str,
    allowed: &[&str],
) -> Result<Option<Vec<String>>, String> {
    let list = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(a)) if !a.is_empty() => a,
        Some(_) => return Err(format!("{field}: must be a non-empty array")),
    };
    let mut out: Vec<String> = Vec::new();
    for (i, t) in list.iter().enumerate() {
        match t.as_str() {
            Some(s) if allowed.contains(&s) => {
                if !out.iter().any(|o| o == s) {
                    out.push(s.to_owned());
                }
            }
            _ => {
                return Err(format!(
                    "{field}[{i}]: must be one of {}",
                    allowed.join(", ")
                ));
            }
        }
    }
    Ok(Some(out))
}

/// Returns a vector in one of Cohere's embedding types.
fn encode(v: &[f32], kind: &str) -> Value {
    let bits = || {
        v.chunks(8).map(|c| {
            c.iter()
                .enumerate()
                .fold(0u8, |b, (i, x)| b | (u8::from(*x > 0.0) << (7 - i)))
        })
    };
    // Unit vectors have small components: scale them into the integer ranges.
    let scale = (v.len() as f32).sqrt();
    match kind {
        "int8" => json!(
            v.iter()
                .map(|x| (x * scale * 64.0).round().clamp(-128.0, 127.0) as i8)
                .collect::<Vec<_>>()
        ),
        "uint8" => json!(
            v.iter()
                .map(|x| (x * scale * 64.0 + 128.0).round().clamp(0.0, 255.0) as u8)
                .collect::<Vec<_>>()
        ),
        "binary" => json!(bits().map(|b| b as i8).collect::<Vec<_>>()),
        "ubinary" => json!(bits().collect::<Vec<_>>()),
        _ => json!(v),
    }
}

/// Returns the deterministic vector of a text: components uniform in [-1, 1) from a generator
/// seeded with a hash of the family and the text, scaled to unit norm when `normalize`.
pub(crate) fn vector(family: Family, text: &str, dim: usize, normalize: bool) -> Vec<f32> {
    let digest = Sha256::new()
        .chain_update(format!("{family:?}").as_bytes())
        .chain_update([0u8])
        .chain_update(text.as_bytes())
        .finalize();
    let mut seed = u64::from_le_bytes(digest[..8].try_into().unwrap_or([0; 8]));
    let mut v: Vec<f32> = (0..dim)
        .map(|_| {
            // splitmix64
            seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = seed;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    if normalize {
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|x| *x /= norm);
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_are_deterministic_and_unit() {
        let a = vector(Family::TitanV2, "hello", 256, true);
        assert_eq!(a, vector(Family::TitanV2, "hello", 256, true));
        assert_ne!(a, vector(Family::TitanV2, "hullo", 256, true));
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4);
    }

    #[test]
    fn families() {
        assert_eq!(
            family("amazon.titan-embed-text-v2:0"),
            Some(Family::TitanV2)
        );
        assert_eq!(family("us.cohere.embed-v4:0"), Some(Family::CohereV4));
        assert_eq!(family("cohere.embed-english-v3"), Some(Family::CohereV3));
        assert_eq!(family("anthropic.claude-3-haiku-20240307-v1:0"), None);
    }
}
