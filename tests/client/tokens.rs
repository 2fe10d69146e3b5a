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

/// The cost of one reply at `prices`, by hand: 5-minute and 1-hour cache writes apart (from
/// the usage's `cacheDetails`), times the multiplier of the tier the answer names.
fn hand_cost(reply: &Reply, prices: &Prices) -> u64 {
    use bedrock_pool::sdk::types::CacheTtl;
    let u = reply.usage().expect("usage");
    let n = |v: i32| v as u64;
    let write = u.cache_write_input_tokens().map_or(0, n);
    let hour: u64 = u
        .cache_details()
        .iter()
        .filter(|d| *d.ttl() == CacheTtl::OneHour)
        .map(|d| n(d.input_tokens()))
        .sum();
    // Dollars per million tokens = thousands of nano-dollars per token.
    let per = |p: f64| (p * 1000.0).round() as u64;
    let total = n(u.input_tokens()) * per(prices.input)
        + n(u.output_tokens()) * per(prices.output)
        + u.cache_read_input_tokens().map_or(0, n) * per(prices.cache_read)
        + (write - hour) * per(prices.cache_write)
        + hour * per(prices.cache_write_1h.unwrap());
    let m = reply
        .service_tier()
        .map_or(1.0, |t| prices.tier_multiplier(t.r#type()));
    total * (m * 1000.0).round() as u64 / 1000
}

#[tokio::test]
async fn cache_writes_are_priced_by_ttl_and_tiers_multiply_the_cost() {
    use bedrock_pool::sdk::types::{CacheTtl, ServiceTierType};
    for protocol in [Protocol::Https, Protocol::HttpsH1Only] {
        let server = server(protocol).await;
        let prices = Prices::per_million_usd(3.0, 15.0)
            .cache_read(0.3)
            .cache_write(3.75)
            .cache_write_1h(6.0)
            .tier(ServiceTierType::Flex, 0.5)
            .tier(ServiceTierType::Priority, 1.75);
        let factory = common::builder_for(&server)
            .prices(MODEL, prices)
            .build()
            .await
            .unwrap();
        let model = factory.model(MODEL);
        // A 5-minute cache point after a short policy, a 1-hour one after a long document.
        let request = |tier: Option<ServiceTierType>, question: &str| {
            let r = model
                .converse()
                .system("the short policy")
                .cache_point()
                .system("a long reference document of many words that lives for an hour")
                .cache_point_with_ttl(CacheTtl::OneHour)
                .user(question);
            match tier {
                Some(t) => r.service_tier(t),
                None => r,
            }
        };
        let mut expected = 0;
        let first = request(None, "first").send().await.unwrap();
        let details = first.usage().unwrap().cache_details();
        let ttls: Vec<(&str, i32)> = details
            .iter()
            .map(|d| (d.ttl().as_str(), d.input_tokens()))
            .collect();
        assert_eq!(
            ttls,
            [("5m", 3), ("1h", 12)],
            "{protocol:?}: words before each point"
        );
        let one_price = {
            let u = first.usage().unwrap();
            u.input_tokens() as u64 * 3_000
                + u.output_tokens() as u64 * 15_000
                + u.cache_write_input_tokens().unwrap() as u64 * 3_750
        };
        let cost = hand_cost(&first, &prices);
        assert_ne!(cost, one_price, "the 1-hour writes cost more");
        expected += cost;
        // Flex halves the cost, priority adds three quarters; unary and streamed alike.
        for (tier, stream) in [
            (ServiceTierType::Flex, false),
            (ServiceTierType::Priority, true),
        ] {
            let reply = if stream {
                model
                    .converse_stream()
                    .system("the short policy")
                    .cache_point()
                    .user("streamed")
                    .service_tier(tier.clone())
                    .send()
                    .await
                    .unwrap()
                    .collect()
                    .await
                    .unwrap()
            } else {
                request(Some(tier.clone()), "second").send().await.unwrap()
            };
            assert_eq!(
                reply.service_tier().map(|t| t.r#type()),
                Some(&tier),
                "{protocol:?}: the answer names its tier"
            );
            let at_one = hand_cost(&reply, &prices.tier(tier.clone(), 1.0));
            let cost = hand_cost(&reply, &prices);
            assert_ne!(cost, at_one, "{tier:?} changes the cost");
            expected += cost;
        }
        assert_eq!(
            factory.model_stats(MODEL).unwrap().requests.cost,
            Some(Cost { nano_usd: expected }),
            "{protocol:?}"
        );
        // Bad prices are refused naming the field, before any call.
        for bad in [
            Prices::per_million_usd(1.0, 1.0).cache_write_1h(-1.0),
            Prices::per_million_usd(1.0, 1.0).tier(ServiceTierType::Flex, f64::NAN),
        ] {
            assert_eq!(
                factory.set_prices(MODEL, bad).unwrap_err().field(),
                Some("prices")
            );
        }
    }
}

/// A default prompt router's ARN in the local server's region.
fn router_arn(server: &bedrock_pool_local::LocalServer) -> String {
    format!(
        "arn:aws:bedrock:{}:123456789012:default-prompt-router/anthropic.claude:1",
        server.region()
    )
}

#[tokio::test]
// Long because it checks the reply, the statistics and the cost of both routes, both ways.
async fn a_prompt_router_call_counts_for_the_model_that_answered() {
    use bedrock_pool::CallMetadata;
    const HAIKU: &str = "anthropic.claude-3-haiku-20240307-v1:0";
    const SONNET: &str = "us.anthropic.claude-3-5-sonnet-20240620-v1:0";
    for protocol in [Protocol::Https, Protocol::HttpsH1Only] {
        let server = server(protocol).await;
        let router = router_arn(&server);
        let profile = |id: &str| {
            format!(
                "arn:aws:bedrock:{}:123456789012:inference-profile/{id}",
                server.region()
            )
        };
        // Prices by the model's own id and by the profile's id: both are found.
        let (haiku_prices, sonnet_prices) = (
            Prices::per_million_usd(0.25, 1.25),
            Prices::per_million_usd(3.0, 15.0),
        );
        let factory = common::builder_for(&server)
            .prices(HAIKU, haiku_prices)
            .prices(SONNET, sonnet_prices)
            .prices(&router, Prices::per_million_usd(1000.0, 1000.0))
            .build()
            .await
            .unwrap();
        let model = factory.model(&router);
        // A short prompt goes to the small model (unary); a long one to the large (stream).
        let short = model.converse().user("hi there").send().await.unwrap();
        let long_prompt =
            "please write a careful and thorough answer to this rather long question of mine";
        let long = model
            .converse_stream()
            .user(long_prompt)
            .send()
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        for (reply, invoked, prices) in [
            (&short, profile(&format!("us.{HAIKU}")), haiku_prices),
            (&long, profile(SONNET), sonnet_prices),
        ] {
            assert_eq!(reply.model_id(), invoked, "{protocol:?}");
            assert_eq!(reply.router(), Some(router.as_str()));
            let traced = reply
                .trace()
                .and_then(|t| t.prompt_router())
                .and_then(|r| r.invoked_model_id());
            assert_eq!(traced, Some(invoked.as_str()));
            let stats = factory.model_stats(&invoked).unwrap().requests;
            assert_eq!(
                (stats.requests, stats.successes, stats.in_flight),
                (1, 1, 0)
            );
            let u = reply.usage().unwrap();
            assert_eq!(stats.input_tokens, u.input_tokens() as u64);
            let per = |p: f64| (p * 1000.0).round() as u64;
            let cost = u.input_tokens() as u64 * per(prices.input)
                + u.output_tokens() as u64 * per(prices.output);
            assert_eq!(stats.cost, Some(Cost { nano_usd: cost }), "{invoked}");
        }
        // The stream's time to first token moved with it.
        let sonnet = factory.model_stats(&profile(SONNET)).unwrap().requests;
        assert_eq!(sonnet.time_to_first_token.count, 1);
        // The router's own figures keep nothing of the calls; the totals count both.
        let routed = factory.model_stats(&router).unwrap().requests;
        assert_eq!(
            (routed.requests, routed.in_flight, routed.cost),
            (0, 0, None)
        );
        assert_eq!(routed.time_to_first_token.count, 0);
        let all = factory.stats().requests;
        assert_eq!((all.requests, all.successes, all.in_flight), (2, 2, 0));
        // A stream read to its `messageStop` and dropped before the metadata that names the
        // model: a whole answer, a success, counted for the router (it never said more).
        let mut stream = model.converse_stream().user("hi").send().await.unwrap();
        while let Some(ev) = stream.next().await {
            if matches!(ev.unwrap(), bedrock_pool::StreamEvent::MessageStop { .. }) {
                break;
            }
        }
        drop(stream);
        let all = factory.stats().requests;
        assert_eq!((all.successes, all.cancelled, all.in_flight), (3, 0, 0));
        let routed = factory.model_stats(&router).unwrap().requests;
        assert_eq!((routed.requests, routed.successes), (1, 1));
        // A call to a model id is not moved, whatever its trace.
        let plain = factory
            .model(MODEL)
            .converse()
            .user("hi")
            .send()
            .await
            .unwrap();
        assert_eq!((plain.model_id(), plain.router()), (MODEL, None));
    }
}
