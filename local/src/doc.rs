//! The SDK's `Document` and `serde_json::Value`, both ways: a responder is scripted with the
//! types the client sees (`bedrock_pool::sdk::Document`), while the wire and the recorded bodies
//! stay JSON.

use aws_smithy_types::{Document, Number};
use serde_json::Value;

/// A JSON value given either as a `serde_json::Value` or as the SDK's
/// [`Document`](aws_smithy_types::Document) (what the client exposes as
/// `bedrock_pool::sdk::Document`), so that a test scripts a tool input or a JSON tool result with
/// the same value it then compares the client's answer to.
///
/// Documents convert without loss: `PosInt` and `NegInt` stay integers, `Float` stays a float;
/// a non-finite float becomes the string `"NaN"`, `"Infinity"` or `"-Infinity"`, as the SDK
/// itself writes it on the wire.
pub trait IntoJson {
    /// Returns the value as JSON.
    fn into_json(self) -> Value;
}

impl IntoJson for Value {
    fn into_json(self) -> Value {
        self
    }
}

impl IntoJson for Document {
    fn into_json(self) -> Value {
        document_to_json(&self)
    }
}

impl IntoJson for &Document {
    fn into_json(self) -> Value {
        document_to_json(self)
    }
}

/// Returns the JSON of a [`Document`] (see [`IntoJson`] for numbers).
pub fn document_to_json(doc: &Document) -> Value {
    match doc {
        Document::Null => Value::Null,
        Document::Bool(b) => Value::Bool(*b),
        Document::String(s) => Value::String(s.clone()),
        Document::Number(Number::PosInt(n)) => Value::from(*n),
        Document::Number(Number::NegInt(n)) => Value::from(*n),
        Document::Number(Number::Float(f)) => match serde_json::Number::from_f64(*f) {
            Some(n) => Value::Number(n),
            None if f.is_nan() => Value::String("NaN".to_owned()),
            None if *f > 0.0 => Value::String("Infinity".to_owned()),
            None => Value::String("-Infinity".to_owned()),
        },
        Document::Array(items) => Value::Array(items.iter().map(document_to_json).collect()),
        Document::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), document_to_json(v)))
                .collect(),
        ),
    }
}

/// Returns the [`Document`] of a JSON value, numbers as the SDK reads them from the wire: a
/// non-negative integer is `PosInt`, a negative one `NegInt`, any other number `Float`.
pub fn json_to_document(value: &Value) -> Document {
    match value {
        Value::Null => Document::Null,
        Value::Bool(b) => Document::Bool(*b),
        Value::String(s) => Document::String(s.clone()),
        Value::Number(n) => Document::Number(match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => Number::PosInt(u),
            (None, Some(i)) => Number::NegInt(i),
            _ => Number::Float(n.as_f64().unwrap_or(f64::NAN)),
        }),
        Value::Array(items) => Document::Array(items.iter().map(json_to_document).collect()),
        Value::Object(map) => Document::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), json_to_document(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn documents_round_trip_with_their_number_kinds() {
        let doc = Document::Object(
            [
                ("pos".to_owned(), Document::Number(Number::PosInt(u64::MAX))),
                ("neg".to_owned(), Document::Number(Number::NegInt(i64::MIN))),
                ("float".to_owned(), Document::Number(Number::Float(2.0))),
                ("tiny".to_owned(), Document::Number(Number::Float(1e-300))),
                (
                    "list".to_owned(),
                    Document::Array(vec![
                        Document::Null,
                        Document::Bool(true),
                        Document::String("é".into()),
                    ]),
                ),
            ]
            .into(),
        );
        let json = document_to_json(&doc);
        assert_eq!(json["pos"], json!(u64::MAX));
        assert_eq!(json["neg"], json!(i64::MIN));
        assert!(json["float"].is_f64(), "2.0 stays a float: {json}");
        // Through the wire text too, as the client's SDK reads it.
        let reparsed: Value = serde_json::from_str(&json.to_string()).unwrap();
        assert_eq!(json_to_document(&reparsed), doc);
    }

    #[test]
    fn non_finite_floats_are_written_as_the_sdk_writes_them() {
        for (f, s) in [
            (f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
        ] {
            assert_eq!(Document::Number(Number::Float(f)).into_json(), json!(s));
        }
    }
}
