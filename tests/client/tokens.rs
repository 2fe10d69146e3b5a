//! Token totals and the cost estimate agree with the usage the local server reported: unary
//! calls, streams, a stream cut short, prompt-cache reads and writes; cost is absent without
//! prices and exact with them.

use crate::common;

use bedrock_pool::{
    Reply,
    stats::{Cost, Prices},
};
use bedrock_pool_local::{Fault, FaultRule, Protocol};
use common::{MODEL, factory_for, server};

/// Sums what the replies said, as (input, output, cache read, cache write).
fn totals(replies: &[Reply]) -> (u64, u64, u64, u64) {
    let mut t = (0, 0, 0, 0);
    for r in replies {
        let u = r.usage().expect("usage");
        t.0 += u.input_tokens() as u64;
        t.1 += u.output_tokens() as u64;
        t.2 += u.cache_read_input_tokens().unwrap_or(0) as u64;
        t.3 += u.cache_write_input_tokens().unwrap_or(0) as u64;
    }
    t
}

/// One call whose system prompt is cached: a cache write the first time, a read after.
async fn cached_call(model: &bedrock_pool::Model, question: &str) -> Reply {
    model
        .converse()
        .system("a long policy that is worth caching")
        .cache_point()
        .user(question)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn token_totals_match_the_reported_usage() {
    let server = server(Protocol::Https).await;
    let factory = factory_for(&server).await;
    let model = factory.model(MODEL);
    let mut replies = Vec::new();
    replies.push(model.converse().user("one two three").send().await.unwrap());
    replies.push(
        model
            .converse_stream()
            .user("four five six seven")
            .send()
            .await
            .unwrap()
            .collect()
            .await
            .unwrap(),
    );
    // The same cached prefix twice: a cache write, then a cache read.
    for _ in 0..2 {
        replies.push(cached_call(&model, "question").await);
    }
    let (input, output, read, write) = totals(&replies);
    assert!(read > 0 && write > 0, "the cache was used: {read} {write}");
    for stats in [
        factory.stats().requests,
        factory.model_stats(MODEL).unwrap().requests,
        factory.stats().regions[0].requests,
    ] {
        assert_eq!(
            (
                stats.input_tokens,
                stats.output_tokens,
                stats.cache_read_tokens,
                stats.cache_write_tokens
            ),
            (input, output, read, write)
        );
        // Every call here was a stream on the wire: three unary calls carried, one stream.
        assert_eq!(stats.output_tokens_per_second.count, 4, "four streams");
        assert_eq!(stats.cost, None, "no prices: no cost, never zero");
    }
    // A stream cut before its metadata event counts no usage (none arrived).
    server.push_fault(FaultRule::new(Fault::StreamCut { after_events: 2 }).times(1));
    let cut = model
        .converse_stream()
        .user("cut short")
        .send()
        .await
        .unwrap()
        .collect()
        .await;
    assert!(cut.is_err());
    assert_eq!(factory.stats().requests.output_tokens, output);
}

#[tokio::test]
async fn cost_is_the_hand_computed_sum() {
    let server = server(Protocol::Https).await;
    let factory = common::builder_for(&server)
        .prices(
            MODEL,
            Prices::per_million_usd(3.0, 15.0)
                .cache_read(0.3)
                .cache_write(3.75),
        )
        .build()
        .await
        .unwrap();
    let model = factory.model(MODEL);
    let mut replies = Vec::new();
    for _ in 0..2 {
        replies.push(cached_call(&model, "what does it say").await);
    }
    let (i, o, r, w) = totals(&replies);
    // Dollars per million tokens = thousands of nano-dollars per token.
    let expected = i * 3_000 + o * 15_000 + r * 300 + w * 3_750;
    let stats = factory.model_stats(MODEL).unwrap().requests;
    assert_eq!(stats.cost, Some(Cost { nano_usd: expected }));
    assert_eq!(
        factory.stats().requests.cost,
        Some(Cost { nano_usd: expected })
    );
    // Another model has no prices: its own cost is absent, the total counts priced calls only.
    let other = "amazon.nova-micro-v1:0";
    factory
        .model(other)
        .converse()
        .user("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(factory.model_stats(other).unwrap().requests.cost, None);
    assert_eq!(
        factory.stats().requests.cost,
        Some(Cost { nano_usd: expected })
    );
    // A price set later applies to later calls, at sub-micro-dollar precision.
    factory
        .set_prices(other, Prices::per_million_usd(0.035, 0.14))
        .unwrap();
    let reply = factory
        .model(other)
        .converse()
        .user("hi there")
        .send()
        .await
        .unwrap();
    let u = reply.usage().unwrap();
    let nova = u.input_tokens() as u64 * 35 + u.output_tokens() as u64 * 140;
    assert_eq!(
        factory.model_stats(other).unwrap().requests.cost,
        Some(Cost { nano_usd: nova })
    );
    assert_eq!(
        factory.stats().requests.cost,
        Some(Cost {
            nano_usd: expected + nova
        })
    );
    let e = factory
        .set_prices(MODEL, Prices::per_million_usd(-1.0, 1.0))
        .unwrap_err();
    assert_eq!(e.field(), Some("prices"));
    assert_eq!(
        Cost {
            nano_usd: 1_234_567
        }
        .to_string(),
        "$0.001235"
    );
}
