//! Multimodal input without SDK assembly: images, documents, videos and audio from bytes or an
//! S3 location ([`Media`]), added beside a user text ([`ConverseRequest::user_with`]), and the
//! service's rules for them, checked before the network on every message
//! ([`check_media`]): images and documents only in user messages; at most 20 images of at most
//! 3.75 MB each; at most 5 documents of at most 4.5 MB each, named with letters, digits, single
//! spaces, hyphens, parentheses and square brackets (1 to 200 characters), each in a message
//! that also holds a text; videos of at most 25 MB as bytes (larger ones go through S3); S3
//! URIs of the form `s3://bucket/key`; no empty bytes.

use super::ConverseRequest;
use crate::error::{Error, Result};
use aws_sdk_bedrockruntime::primitives::Blob;
use aws_sdk_bedrockruntime::types::{
    AudioBlock, AudioFormat, AudioSource, ContentBlock, ConversationRole, DocumentBlock,
    DocumentFormat, DocumentSource, ImageBlock, ImageFormat, ImageSource, Message, S3Location,
    VideoBlock, VideoFormat, VideoSource,
};

/// Most images in one request.
pub const MAX_IMAGES: usize = 20;
/// Most bytes of one image.
pub const MAX_IMAGE_BYTES: usize = 3_932_160;
/// Most documents in one request.
pub const MAX_DOCUMENTS: usize = 5;
/// Most bytes of one document.
pub const MAX_DOCUMENT_BYTES: usize = 4_718_592;
/// Most bytes of one video sent as bytes (larger ones go through S3).
pub const MAX_VIDEO_BYTES: usize = 26_214_400;

/// Where a medium's bytes are.
#[derive(Clone, Debug)]
enum Source {
    Bytes(Vec<u8>),
    S3(String),
}

/// An image, a document, a video or an audio clip for a user message, from bytes or an S3
/// location (`s3://bucket/key`): see [`ConverseRequest::user_with`]. Checked when the request
/// is sent, naming `messages`.
#[derive(Clone, Debug)]
pub struct Media(Kind);

#[derive(Clone, Debug)]
enum Kind {
    Image(ImageFormat, Source),
    Document(DocumentFormat, String, Source),
    Video(VideoFormat, Source),
    Audio(AudioFormat, Source),
}

impl Media {
    /// An image (png, jpeg, gif, webp) from its bytes.
    pub fn image(format: ImageFormat, bytes: impl Into<Vec<u8>>) -> Self {
        Media(Kind::Image(format, Source::Bytes(bytes.into())))
    }

    /// An image from an S3 location.
    pub fn image_s3(format: ImageFormat, uri: impl Into<String>) -> Self {
        Media(Kind::Image(format, Source::S3(uri.into())))
    }

    /// A document (pdf, csv, doc, docx, xls, xlsx, html, txt, md) from its bytes, with the name
    /// the model sees.
    pub fn document(
        format: DocumentFormat,
        name: impl Into<String>,
        bytes: impl Into<Vec<u8>>,
    ) -> Self {
        Media(Kind::Document(
            format,
            name.into(),
            Source::Bytes(bytes.into()),
        ))
    }

    /// A document from an S3 location.
    pub fn document_s3(
        format: DocumentFormat,
        name: impl Into<String>,
        uri: impl Into<String>,
    ) -> Self {
        Media(Kind::Document(format, name.into(), Source::S3(uri.into())))
    }

    /// A video from its bytes.
    pub fn video(format: VideoFormat, bytes: impl Into<Vec<u8>>) -> Self {
        Media(Kind::Video(format, Source::Bytes(bytes.into())))
    }

    /// A video from an S3 location.
    pub fn video_s3(format: VideoFormat, uri: impl Into<String>) -> Self {
        Media(Kind::Video(format, Source::S3(uri.into())))
    }

    /// An audio clip from its bytes.
    pub fn audio(format: AudioFormat, bytes: impl Into<Vec<u8>>) -> Self {
        Media(Kind::Audio(format, Source::Bytes(bytes.into())))
    }

    /// An audio clip from an S3 location.
    pub fn audio_s3(format: AudioFormat, uri: impl Into<String>) -> Self {
        Media(Kind::Audio(format, Source::S3(uri.into())))
    }

    /// Returns the SDK's content block (`None` only if the SDK refuses to build it, which
    /// required fields given here rule out).
    fn block(self) -> Option<ContentBlock> {
        let s3 = |uri: String| S3Location::builder().uri(uri).build().ok();
        Some(match self.0 {
            Kind::Image(format, src) => ContentBlock::Image(
                ImageBlock::builder()
                    .format(format)
                    .source(match src {
                        Source::Bytes(b) => ImageSource::Bytes(Blob::new(b)),
                        Source::S3(u) => ImageSource::S3Location(s3(u)?),
                    })
                    .build()
                    .ok()?,
            ),
            Kind::Document(format, name, src) => ContentBlock::Document(
                DocumentBlock::builder()
                    .format(format)
                    .name(name)
                    .source(match src {
                        Source::Bytes(b) => DocumentSource::Bytes(Blob::new(b)),
                        Source::S3(u) => DocumentSource::S3Location(s3(u)?),
                    })
                    .build()
                    .ok()?,
            ),
            Kind::Video(format, src) => ContentBlock::Video(
                VideoBlock::builder()
                    .format(format)
                    .source(match src {
                        Source::Bytes(b) => VideoSource::Bytes(Blob::new(b)),
                        Source::S3(u) => VideoSource::S3Location(s3(u)?),
                    })
                    .build()
                    .ok()?,
            ),
            Kind::Audio(format, src) => ContentBlock::Audio(
                AudioBlock::builder()
                    .format(format)
                    .source(match src {
                        Source::Bytes(b) => AudioSource::Bytes(Blob::new(b)),
                        Source::S3(u) => AudioSource::S3Location(s3(u)?),
                    })
                    .build()
                    .ok()?,
            ),
        })
    }
}

impl<K> ConverseRequest<K> {
    /// Appends a user message with a text and media (images, documents, videos, audio).
    ///
    /// ```no_run
    /// # async fn run(model: bedrock_pool::Model, png: Vec<u8>, pdf: Vec<u8>) -> bedrock_pool::Result<()> {
    /// use bedrock_pool::converse::Media;
    /// use bedrock_pool::sdk::types::{DocumentFormat, ImageFormat};
    /// let reply = model
    ///     .converse()
    ///     .user_with(
    ///         "What does the chart say about the report?",
    ///         [
    ///             Media::image(ImageFormat::Png, png),
    ///             Media::document(DocumentFormat::Pdf, "Q3 report", pdf),
    ///         ],
    ///     )
    ///     .send()
    ///     .await?;
    /// # let _ = reply; Ok(()) }
    /// ```
    pub fn user_with(
        self,
        text: impl Into<String>,
        media: impl IntoIterator<Item = Media>,
    ) -> Self {
        let mut content = vec![ContentBlock::Text(text.into())];
        content.extend(media.into_iter().filter_map(Media::block));
        match Message::builder()
            .role(ConversationRole::User)
            .set_content(Some(content))
            .build()
        {
            Ok(m) => self.message(m),
            Err(_) => self,
        }
    }
}

/// Checks the media of `messages` against the service's rules (see the module docs).
///
/// # Errors
/// An invalid-input error naming `messages`, the message and the block.
pub(crate) fn check_media(messages: &[Message]) -> Result<()> {
    let (mut images, mut documents) = (0usize, 0usize);
    let bad = |i: usize, j: usize, what: String| {
        Err(Error::invalid(
            "messages",
            format!("message {i} block {j}: {what}"),
        ))
    };
    for (i, m) in messages.iter().enumerate() {
        let user = *m.role() == ConversationRole::User;
        let has_text = m
            .content()
            .iter()
            .any(|b| matches!(b, ContentBlock::Text(_)));
        for (j, b) in m.content().iter().enumerate() {
            let (size, s3, kind) = match b {
                ContentBlock::Image(img) => {
                    images += 1;
                    match img.source() {
                        Some(ImageSource::Bytes(b)) => (Some(b.as_ref().len()), None, "image"),
                        Some(ImageSource::S3Location(l)) => (None, Some(l.uri()), "image"),
                        _ => (None, None, "image"),
                    }
                }
                ContentBlock::Document(doc) => {
                    documents += 1;
                    if !valid_document_name(doc.name()) {
                        return bad(
                            i,
                            j,
                            format!(
                                "document name {:?}: 1 to 200 letters, digits, single spaces, \
                                 hyphens, parentheses and square brackets",
                                doc.name()
                            ),
                        );
                    }
                    if !has_text {
                        return bad(i, j, "a document needs a text block in its message".into());
                    }
                    match doc.source() {
                        Some(DocumentSource::Bytes(b)) => {
                            (Some(b.as_ref().len()), None, "document")
                        }
                        Some(DocumentSource::S3Location(l)) => (None, Some(l.uri()), "document"),
                        _ => (None, None, "document"),
                    }
                }
                ContentBlock::Video(v) => match v.source() {
                    Some(VideoSource::Bytes(b)) => (Some(b.as_ref().len()), None, "video"),
                    Some(VideoSource::S3Location(l)) => (None, Some(l.uri()), "video"),
                    _ => (None, None, "video"),
                },
                ContentBlock::Audio(a) => match a.source() {
                    Some(AudioSource::Bytes(b)) => (Some(b.as_ref().len()), None, "audio"),
                    Some(AudioSource::S3Location(l)) => (None, Some(l.uri()), "audio"),
                    _ => (None, None, "audio"),
                },
                _ => continue,
            };
            if !user && matches!(kind, "image" | "document") {
                return bad(i, j, format!("an {kind} may only be in a user message"));
            }
            if let Some(uri) = s3
                && !valid_s3_uri(uri)
            {
                return bad(i, j, format!("{uri:?} is not an S3 URI (s3://bucket/key)"));
            }
            let max = match kind {
                "image" => MAX_IMAGE_BYTES,
                "document" => MAX_DOCUMENT_BYTES,
                "video" => MAX_VIDEO_BYTES,
                _ => usize::MAX,
            };
            match size {
                Some(0) => return bad(i, j, format!("the {kind} is empty")),
                Some(n) if n > max => {
                    return bad(
                        i,
                        j,
                        format!("the {kind} is {n} bytes, at most {max} as bytes"),
                    );
                }
                _ => {}
            }
        }
    }
    if images > MAX_IMAGES {
        return Err(Error::invalid(
            "messages",
            format!("{images} images, at most {MAX_IMAGES}"),
        ));
    }
    if documents > MAX_DOCUMENTS {
        return Err(Error::invalid(
            "messages",
            format!("{documents} documents, at most {MAX_DOCUMENTS}"),
        ));
    }
    Ok(())
}

/// Returns whether a document name follows the service's rule: 1 to 200 characters, letters,
/// digits, whitespace (never two in a row), hyphens, parentheses and square brackets.
fn valid_document_name(name: &str) -> bool {
    let allowed = |c: char| c.is_alphanumeric() || c.is_whitespace() || "-()[]".contains(c);
    (1..=200).contains(&name.chars().count())
        && name.chars().all(allowed)
        && !name
            .chars()
            .zip(name.chars().skip(1))
            .any(|(a, b)| a.is_whitespace() && b.is_whitespace())
}

/// Returns whether `uri` is an S3 URI as the service's pattern says
/// (`s3://[a-z0-9][.-a-z0-9]{1,61}[a-z0-9](/.*)?`).
pub(crate) fn valid_s3_uri(uri: &str) -> bool {
    let Some(rest) = uri.strip_prefix("s3://") else {
        return false;
    };
    let bucket = rest.split('/').next().unwrap_or("");
    let edge = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    (3..=63).contains(&bucket.len())
        && bucket.starts_with(edge)
        && bucket.ends_with(edge)
        && bucket.chars().all(|c| edge(c) || c == '.' || c == '-')
        && uri.len() <= 1024
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_names() {
        for ok in ["Q3 report", "a-b (c) [d]", "x"] {
            assert!(valid_document_name(ok), "{ok}");
        }
        for bad in ["", "two  spaces", "dot.pdf", "slash/x", &"a".repeat(201)] {
            assert!(!valid_document_name(bad), "{bad}");
        }
    }
}
