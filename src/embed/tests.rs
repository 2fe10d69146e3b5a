//! Unit tests of the embedding request bodies and families.

use super::*;

#[test]
fn families_come_from_the_model_id() {
    use EmbedFamily::*;
    for (id, f) in [
        ("amazon.titan-embed-text-v2:0", Some(TitanV2)),
        ("cohere.embed-english-v3", Some(CohereV3)),
        ("us.cohere.embed-multilingual-v3", Some(CohereV3)),
        ("cohere.embed-v4:0", Some(CohereV4)),
        ("global.cohere.embed-v4:0", Some(CohereV4)),
        (
            "arn:aws:bedrock:us-east-1:1:application-inference-profile/x",
            None,
        ),
        ("anthropic.claude-3-haiku-20240307-v1:0", None),
    ] {
        assert_eq!(EmbedFamily::from_model_id(id), f, "{id}");
    }
}
