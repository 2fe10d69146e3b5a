//! The request bodies of an embedding call: the checks of each family's options and texts,
//! and the bodies (one per Titan text, one per batch of Cohere texts).

use super::{EmbedFamily, EmbedRequest, InputType, Truncate};
use crate::error::{Error, Result};
use aws_smithy_types::{Document, Number};
use std::collections::HashMap;

/// Texts per Cohere call, as the service allows.
const COHERE_BATCH: usize = 96;
/// Longest Titan V2 input, in characters.
const TITAN_MAX_CHARS: usize = 50_000;
/// Longest Cohere v3 text, in characters.
const COHERE_V3_MAX_CHARS: usize = 2_048;

/// One call's body.
pub(super) struct Body {
    pub(super) family: EmbedFamily,
    pub(super) doc: Document,
    pub(super) texts: usize,
}

impl EmbedRequest {
    /// Checks every input and returns the request bodies, one per call, in input order.
    pub(super) fn bodies(&self) -> Result<Vec<Body>> {
        let family = self
            .family
            .or_else(|| EmbedFamily::from_model_id(self.model.id()))
            .ok_or_else(|| {
                Error::invalid(
                    "family",
                    format!(
                        "{:?} does not name an embedding family: set .family(..)",
                        self.model.id()
                    ),
                )
            })?;
        if self.texts.is_empty() {
            return Err(Error::invalid("texts", "no texts to embed"));
        }
        if let Some(i) = self.texts.iter().position(|t| t.trim().is_empty()) {
            return Err(Error::invalid("texts", format!("text {i} is empty")));
        }
        if self.concurrency == 0 || self.concurrency > 64 {
            return Err(Error::invalid(
                "concurrency",
                format!("{} is outside 1..=64", self.concurrency),
            ));
        }
        match family {
            EmbedFamily::TitanV2 => self.titan_bodies(family),
            EmbedFamily::CohereV3 | EmbedFamily::CohereV4 => self.cohere_bodies(family),
        }
    }

    /// Checks the Titan options and texts; returns one body per text.
    fn titan_bodies(&self, family: EmbedFamily) -> Result<Vec<Body>> {
        let s = |v: &str| Document::String(v.to_owned());
        let n = |v: u64| Document::Number(Number::PosInt(v));
        if self.input_type.is_some() {
            return Err(Error::invalid("input_type", "Titan takes no input_type"));
        }
        if self.truncate.is_some() {
            return Err(Error::invalid("truncate", "Titan takes no truncate"));
        }
        if let Some(d) = self.dimensions
            && ![256, 512, 1024].contains(&d)
        {
            return Err(Error::invalid(
                "dimensions",
                format!("{d}: Titan V2 takes 256, 512 or 1024"),
            ));
        }
        if let Some(i) = self
            .texts
            .iter()
            .position(|t| t.chars().count() > TITAN_MAX_CHARS)
        {
            return Err(Error::invalid(
                "texts",
                format!("text {i} is over Titan's {TITAN_MAX_CHARS} characters"),
            ));
        }
        Ok(self
            .texts
            .iter()
            .map(|t| {
                let mut o = HashMap::new();
                o.insert("inputText".to_owned(), s(t));
                o.insert(
                    "dimensions".to_owned(),
                    n(u64::from(self.dimensions.unwrap_or(1024))),
                );
                o.insert(
                    "normalize".to_owned(),
                    Document::Bool(self.normalize.unwrap_or(true)),
                );
                Body {
                    family,
                    doc: Document::Object(o),
                    texts: 1,
                }
            })
            .collect())
    }

    /// Checks the Cohere options and texts; returns one body per batch of texts.
    fn cohere_bodies(&self, family: EmbedFamily) -> Result<Vec<Body>> {
        let s = |v: &str| Document::String(v.to_owned());
        let n = |v: u64| Document::Number(Number::PosInt(v));
        if self.normalize.is_some() {
            return Err(Error::invalid(
                "normalize",
                "Cohere's vectors are always normalized",
            ));
        }
        let v4 = family == EmbedFamily::CohereV4;
        match (v4, self.dimensions) {
            (false, Some(d)) if d != 1024 => {
                return Err(Error::invalid(
                    "dimensions",
                    format!("{d}: Cohere v3 vectors have 1024"),
                ));
            }
            (true, Some(d)) if ![256, 512, 1024, 1536].contains(&d) => {
                return Err(Error::invalid(
                    "dimensions",
                    format!("{d}: Cohere v4 takes 256, 512, 1024 or 1536"),
                ));
            }
            _ => {}
        }
        if !v4
            && let Some(i) = self
                .texts
                .iter()
                .position(|t| t.chars().count() > COHERE_V3_MAX_CHARS)
        {
            return Err(Error::invalid(
                "texts",
                format!("text {i} is over Cohere v3's {COHERE_V3_MAX_CHARS} characters"),
            ));
        }
        let truncate = self.truncate.map(|t| match (t, v4) {
            (Truncate::None, _) => "NONE",
            (Truncate::Start, false) => "START",
            (Truncate::End, false) => "END",
            (Truncate::Start, true) => "LEFT",
            (Truncate::End, true) => "RIGHT",
        });
        Ok(self
            .texts
            .chunks(COHERE_BATCH)
            .map(|batch| {
                let mut o = HashMap::new();
                o.insert(
                    "texts".to_owned(),
                    Document::Array(batch.iter().map(|t| s(t)).collect()),
                );
                o.insert(
                    "input_type".to_owned(),
                    s(self
                        .input_type
                        .unwrap_or(InputType::SearchDocument)
                        .as_str()),
                );
                o.insert(
                    "embedding_types".to_owned(),
                    Document::Array(vec![s("float")]),
                );
                if let Some(t) = truncate {
                    o.insert("truncate".to_owned(), s(t));
                }
                if v4 && let Some(d) = self.dimensions {
                    o.insert("output_dimension".to_owned(), n(u64::from(d)));
                }
                Body {
                    family,
                    doc: Document::Object(o),
                    texts: batch.len(),
                }
            })
            .collect())
    }
}
