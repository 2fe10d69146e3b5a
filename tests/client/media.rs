//! Multimodal input without SDK assembly: images, documents, videos and audio from bytes or S3
//! sent beside a text (h2 and HTTP/1.1), and the service's media rules refused before the
//! network, naming the field.

use crate::common;

use bedrock_pool::converse::{MAX_IMAGE_BYTES, MAX_IMAGES, Media};
use bedrock_pool::sdk::primitives::Blob;
use bedrock_pool::sdk::types::{
    AudioFormat, ContentBlock, ConversationRole, DocumentBlock, DocumentFormat, DocumentSource,
    ImageFormat, Message, VideoFormat,
};
use bedrock_pool_local::Operation;
use common::{MODEL, PROTOCOLS, factory_for, server};

fn model_calls(server: &bedrock_pool_local::LocalServer) -> usize {
    server.requests_for(Operation::Converse).len()
        + server.requests_for(Operation::ConverseStream).len()
}

#[tokio::test]
async fn media_go_beside_a_text_from_bytes_and_s3() {
    for protocol in PROTOCOLS {
        let server = server(protocol).await;
        let factory = factory_for(&server).await;
        let reply = factory
            .model(MODEL)
            .converse()
            .user_with(
                "what is in these?",
                [
                    Media::image(ImageFormat::Png, vec![0x89, b'P', b'N', b'G']),
                    Media::image_s3(ImageFormat::Jpeg, "s3://my-bucket/cat.jpg"),
                    Media::document(
                        DocumentFormat::Pdf,
                        "Q3 report (final)",
                        b"%PDF-1.7".to_vec(),
                    ),
                    Media::video_s3(VideoFormat::Mp4, "s3://my-bucket/clip.mp4"),
                    Media::audio(AudioFormat::Wav, b"RIFF".to_vec()),
                ],
            )
            .send()
            .await
            .unwrap();
        assert_eq!(
            reply.text(),
            "what is in these?",
            "{protocol:?}: the echo answers the text"
        );
        let body = &server.requests_for(Operation::ConverseStream)[0].body;
        let content = &body["messages"][0]["content"];
        assert_eq!(content[1]["image"]["format"], "png");
        assert_eq!(content[1]["image"]["source"]["bytes"], "iVBORw==");
        assert_eq!(
            content[2]["image"]["source"]["s3Location"]["uri"],
            "s3://my-bucket/cat.jpg"
        );
        assert_eq!(content[3]["document"]["name"], "Q3 report (final)");
        assert_eq!(
            content[4]["video"]["source"]["s3Location"]["uri"],
            "s3://my-bucket/clip.mp4"
        );
        assert_eq!(content[5]["audio"]["format"], "wav");
    }
}

#[tokio::test]
async fn media_rules_are_checked_before_the_network() {
    let server = server(bedrock_pool_local::Protocol::Https).await;
    let factory = factory_for(&server).await;
    let model = factory.model(MODEL);
    let png = |n: usize| Media::image(ImageFormat::Png, vec![1u8; n]);
    let doc = |name: &str| Media::document(DocumentFormat::Txt, name, b"text".to_vec());
    let only_document = Message::builder()
        .role(ConversationRole::User)
        .content(ContentBlock::Document(
            DocumentBlock::builder()
                .name("notes")
                .format(DocumentFormat::Txt)
                .source(DocumentSource::Bytes(Blob::new(b"x".to_vec())))
                .build()
                .unwrap(),
        ))
        .build()
        .unwrap();
    let assistant_image = Message::builder()
        .role(ConversationRole::Assistant)
        .content(ContentBlock::Text("here".into()))
        .content(ContentBlock::Image(
            bedrock_pool::sdk::types::ImageBlock::builder()
                .format(ImageFormat::Png)
                .source(bedrock_pool::sdk::types::ImageSource::Bytes(Blob::new(
                    vec![1],
                )))
                .build()
                .unwrap(),
        ))
        .build()
        .unwrap();
    let cases: Vec<(&str, bedrock_pool::ConverseRequest)> = vec![
        (
            "an image too large",
            model.converse().user_with("x", [png(MAX_IMAGE_BYTES + 1)]),
        ),
        ("an empty image", model.converse().user_with("x", [png(0)])),
        (
            "too many images",
            model
                .converse()
                .user_with("x", (0..=MAX_IMAGES).map(|_| png(1))),
        ),
        (
            "too many documents",
            model
                .converse()
                .user_with("x", (0..6).map(|i| doc(&format!("d{i}")))),
        ),
        (
            "a document name with a dot",
            model.converse().user_with("x", [doc("notes.txt")]),
        ),
        (
            "a document without a text",
            model.converse().message(only_document),
        ),
        (
            "an image in an assistant message",
            model
                .converse()
                .user("hi")
                .message(assistant_image)
                .user("and?"),
        ),
        (
            "a bad S3 URI",
            model
                .converse()
                .user_with("x", [Media::video_s3(VideoFormat::Mp4, "https://b/v.mp4")]),
        ),
    ];
    for (what, request) in cases {
        let e = request.send().await.unwrap_err();
        assert_eq!(e.field(), Some("messages"), "{what}: {e}");
    }
    assert_eq!(model_calls(&server), 0, "nothing was sent");
    // At the limits, a request goes through.
    model
        .converse()
        .user_with("x", [png(MAX_IMAGE_BYTES)])
        .send()
        .await
        .unwrap();
}
