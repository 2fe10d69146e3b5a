//! ApplyGuardrail as a call of its own, against the local server's test guardrail (h2 and
//! HTTP/1.1): a clean text passes, the trigger word intervenes with the blocked message and a
//! word-policy assessment, input and output alike, images are accepted; bad input is refused
//! before the network, an unknown guardrail by the service.

use crate::common;

use bedrock_pool::ErrorKind;
use bedrock_pool::sdk::types::GuardrailImageFormat;
use bedrock_pool_local::{
    DEFAULT_BLOCKED_MESSAGE, Operation, TEST_GUARDRAIL_ID, TEST_GUARDRAIL_TRIGGER,
    TEST_GUARDRAIL_VERSION,
};
use common::{PROTOCOLS, factory_for, server};

#[tokio::test]
async fn a_guardrail_passes_clean_text_and_blocks_its_trigger() {
    for protocol in PROTOCOLS {
        let server = server(protocol).await;
        let factory = factory_for(&server).await;
        let guardrail = factory.guardrail(TEST_GUARDRAIL_ID, TEST_GUARDRAIL_VERSION);
        let clean = guardrail
            .check_input()
            .text("what a nice day")
            .send()
            .await
            .unwrap();
        assert!(!clean.intervened(), "{protocol:?}");
        assert!(clean.outputs().is_empty());
        assert_eq!(clean.region(), server.region());
        assert!(clean.usage().is_some_and(|u| u.word_policy_units() >= 1));
        for request in [guardrail.check_input(), guardrail.check_output()] {
            let hit = request
                .text("fine words")
                .text(format!("a {TEST_GUARDRAIL_TRIGGER} one"))
                .image(GuardrailImageFormat::Png, vec![0x89, b'P', b'N', b'G'])
                .send()
                .await
                .unwrap();
            assert!(hit.intervened());
            assert_eq!(hit.outputs(), [DEFAULT_BLOCKED_MESSAGE]);
            let words = hit.assessments()[0].word_policy().unwrap().custom_words();
            assert_eq!(words[0].r#match(), TEST_GUARDRAIL_TRIGGER);
            assert_eq!(hit.action_reason(), Some("Guardrail blocked."));
        }
        // DRAFT is always a version; the calls count in the factory's statistics.
        let draft = factory.guardrail(TEST_GUARDRAIL_ID, "DRAFT");
        assert!(
            !draft
                .check_input()
                .text("hi")
                .send()
                .await
                .unwrap()
                .intervened()
        );
        let sent = server.requests_for(Operation::ApplyGuardrail);
        assert_eq!(sent.len(), 4);
        assert_eq!(sent[1].body["source"], "INPUT");
        assert_eq!(sent[2].body["source"], "OUTPUT");
        let all = factory.stats().requests;
        assert_eq!((all.requests, all.successes), (4, 4));
    }
}

#[tokio::test]
async fn bad_guardrail_calls_are_refused_before_the_network_or_by_the_service() {
    let server = server(bedrock_pool_local::Protocol::Https).await;
    let factory = factory_for(&server).await;
    let cases = [
        (
            factory.guardrail("Not-An-Id", "1").check_input().text("x"),
            "guardrail",
        ),
        (
            factory
                .guardrail(TEST_GUARDRAIL_ID, "01")
                .check_input()
                .text("x"),
            "guardrail",
        ),
        (
            factory.guardrail(TEST_GUARDRAIL_ID, "1").check_input(),
            "content",
        ),
        (
            factory
                .guardrail(TEST_GUARDRAIL_ID, "1")
                .check_input()
                .text("  "),
            "content",
        ),
        (
            factory
                .guardrail(TEST_GUARDRAIL_ID, "1")
                .check_input()
                .image(GuardrailImageFormat::Jpeg, vec![]),
            "content",
        ),
        (
            factory
                .guardrail("arn:aws:bedrock:eu-west-9:123456789012:guardrail/abc", "1")
                .check_input()
                .text("x"),
            "guardrail",
        ),
    ];
    for (request, field) in cases {
        let e = request.send().await.unwrap_err();
        assert_eq!(e.field(), Some(field), "{e}");
    }
    assert!(server.requests_for(Operation::ApplyGuardrail).is_empty());
    let e = factory
        .guardrail("unknownguardrail", "1")
        .check_input()
        .text("x")
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Validation, "{e}");
    assert!(
        e.to_string()
            .contains("The provided guardrail identifier is invalid."),
        "{e}"
    );
}

#[tokio::test]
async fn guardrail_checks_score_messages_and_find_sensitive_information() {
    use bedrock_pool::sdk::types::{
        GuardrailChecksContentFilterCategory as Content,
        GuardrailChecksPromptAttackCategory as Attack,
        GuardrailChecksSensitiveInformationEntityType as Entity,
    };
    for protocol in PROTOCOLS {
        let server = server(protocol).await;
        let factory = factory_for(&server).await;
        let checks = || {
            factory
                .guardrail_checks()
                .content_filter([Content::Violence, Content::Hate])
                .prompt_attack([Attack::Jailbreak])
                .sensitive_information([Entity::Email])
        };
        let hit = checks()
            .system("be kind")
            .user(format!(
                "something {TEST_GUARDRAIL_TRIGGER}, write to jo@example.com"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(
            hit.content_filter(),
            [(&Content::Violence, 0.9), (&Content::Hate, 0.9)],
            "{protocol:?}"
        );
        assert_eq!(hit.prompt_attack(), [(&Attack::Jailbreak, 0.9)]);
        assert_eq!(hit.max_score(), 0.9);
        let found = hit.sensitive_information();
        assert_eq!(found.len(), 1);
        assert_eq!(
            (
                found[0].r#type(),
                found[0].message_index(),
                found[0].begin_offset(),
                found[0].end_offset()
            ),
            (&Entity::Email, 1, 30, 44)
        );
        assert!(
            hit.usage()
                .and_then(|u| u.content_filter())
                .is_some_and(|u| u.text_units() >= 1)
        );
        let clean = checks().user("hello there").send().await.unwrap();
        assert_eq!(clean.max_score(), 0.0);
        assert!(clean.sensitive_information().is_empty());
        let sent = server.requests_for(Operation::InvokeGuardrailChecks);
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0].body["messages"][0]["role"], "system");
    }
    let server = server(bedrock_pool_local::Protocol::Https).await;
    let factory = factory_for(&server).await;
    let cases = [
        (
            factory
                .guardrail_checks()
                .prompt_attack([Attack::Jailbreak]),
            "messages",
        ),
        (factory.guardrail_checks().user("x"), "checks"),
        (
            factory
                .guardrail_checks()
                .user(" ")
                .prompt_attack([Attack::Jailbreak]),
            "messages",
        ),
        (
            factory.guardrail_checks().user("x").prompt_attack([
                Attack::Jailbreak,
                Attack::PromptInjection,
                Attack::PromptLeakage,
                Attack::Jailbreak,
            ]),
            "prompt_attack",
        ),
    ];
    for (request, field) in cases {
        let e = request.send().await.unwrap_err();
        assert_eq!(e.field(), Some(field), "{e}");
    }
    assert!(
        server
            .requests_for(Operation::InvokeGuardrailChecks)
            .is_empty()
    );
}
