//! Region clients, their health, the order a call tries them in, and the failover policy.
//!
//! The failover order lives here, apart from the loop that applies it (`crate::call`), as
//! tower keeps a retry policy apart from the retry loop; which errors fail over is in
//! `crate::policy`.

use crate::stats::{Activity, RequestCounters};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Most regions one call tries: the first allowed healthy one, then at most one failover.
pub(crate) const MAX_REGIONS_PER_CALL: usize = 2;

/// One region's Bedrock client and its health.
pub(crate) struct RegionClient {
    /// The region's place in the factory's list (primary = 0), for per-region tables.
    pub(crate) index: usize,
    pub(crate) region: String,
    pub(crate) client: aws_sdk_bedrockruntime::Client,
    pub(crate) endpoint_url: String,
    /// The endpoint's host and non-default port, parsed once for every call's span.
    pub(crate) server: (String, Option<u16>),
    pub(crate) counters: Arc<RequestCounters>,
    /// When model calls last reached this region (for activity-aware keep-warm).
    pub(crate) activity: Arc<Activity>,
    /// Milliseconds since the regions' epoch until which the region is skipped (0 = healthy).
    unhealthy_until_ms: AtomicU64,
    pub(crate) failovers: AtomicU64,
}

impl RegionClient {
    pub(crate) fn new(
        region: String,
        client: aws_sdk_bedrockruntime::Client,
        endpoint_url: String,
        wakeup_threshold: Duration,
    ) -> Self {
        RegionClient {
            index: 0,
            region,
            client,
            server: server_of(&endpoint_url),
            endpoint_url,
            counters: Arc::new(RequestCounters::new()),
            activity: Arc::new(Activity::new(wakeup_threshold)),
            unhealthy_until_ms: AtomicU64::new(0),
            failovers: AtomicU64::new(0),
        }
    }
}

/// The host and (when not the scheme's default) port of an endpoint URL, for `server.address`
/// and `server.port`.
fn server_of(endpoint_url: &str) -> (String, Option<u16>) {
    let Ok(uri) = endpoint_url.parse::<http::Uri>() else {
        return (String::new(), None);
    };
    let default = if uri.scheme_str() == Some("http") {
        80
    } else {
        443
    };
    let host = uri.host().unwrap_or_default().to_owned();
    (host, uri.port_u16().filter(|p| *p != default))
}

/// One model in one region.
pub(crate) struct Lane {
    /// The SDK client on the model's own retry partition in this region.
    pub(crate) client: aws_sdk_bedrockruntime::Client,
    /// Milliseconds since the regions' epoch until which the model is tried last in this
    /// region, after a throttle (0 = not cooling).
    cooled_until_ms: AtomicU64,
    /// The service refused to carry this model's unary calls as streams here (no permission
    /// for `bedrock:InvokeModelWithResponseStream`, or no streaming for this request's
    /// features): its unary calls go as unary calls from now on.
    stream_refused: AtomicBool,
}

impl Lane {
    /// Returns a lane on `client`: not cooling, streams not refused.
    pub(crate) fn new(client: aws_sdk_bedrockruntime::Client) -> Self {
        Lane {
            client,
            cooled_until_ms: AtomicU64::new(0),
            stream_refused: AtomicBool::new(false),
        }
    }

    /// Returns true while the model cools down in this region after a throttle.
    pub(crate) fn is_cooling(&self, regions: &Regions) -> bool {
        self.cooled_until_ms.load(Relaxed) > regions.now_ms()
    }

    /// Cools the model down in this region for `d`, unless it is cooling for longer already.
    pub(crate) fn cool_down(&self, regions: &Regions, d: Duration) {
        let until = regions.now_ms() + u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 4);
        self.cooled_until_ms.fetch_max(until, Relaxed);
    }

    /// Ends the cooldown (the model answered in this region).
    pub(crate) fn warm(&self) {
        if self.cooled_until_ms.load(Relaxed) != 0 {
            self.cooled_until_ms.store(0, Relaxed);
        }
    }

    /// Returns true when the service refused to carry unary calls as streams here.
    pub(crate) fn stream_refused(&self) -> bool {
        self.stream_refused.load(Relaxed)
    }

    /// Remembers that the service refused to carry unary calls as streams here.
    pub(crate) fn refuse_streams(&self) {
        self.stream_refused.store(true, Relaxed);
    }
}

/// The regions of a factory, primary first, with their health.
pub(crate) struct Regions {
    list: Vec<RegionClient>,
    epoch: Instant,
    cooldown: Duration,
}

impl Regions {
    /// Returns the regions; `list` holds at least one (the builder sees to it).
    pub(crate) fn new(mut list: Vec<RegionClient>, cooldown: Duration) -> Self {
        for (i, r) in list.iter_mut().enumerate() {
            r.index = i;
        }
        Regions {
            list,
            epoch: Instant::now(),
            cooldown,
        }
    }

    pub(crate) fn iter(&self) -> std::slice::Iter<'_, RegionClient> {
        self.list.iter()
    }

    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    pub(crate) fn primary(&self) -> &RegionClient {
        &self.list[0]
    }

    pub(crate) fn find(&self, region: &str) -> Option<&RegionClient> {
        self.list.iter().find(|r| r.region == region)
    }

    /// Returns the milliseconds since the regions' epoch (the clock of every cooldown).
    pub(crate) fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX / 2)
    }

    pub(crate) fn is_healthy(&self, r: &RegionClient) -> bool {
        r.unhealthy_until_ms.load(Relaxed) <= self.now_ms()
    }

    /// Takes `r` out of rotation for the cooldown.
    pub(crate) fn mark_unhealthy(&self, r: &RegionClient) {
        let until =
            self.now_ms() + u64::try_from(self.cooldown.as_millis()).unwrap_or(u64::MAX / 4);
        r.unhealthy_until_ms.store(until, Relaxed);
        tracing::warn!(region = %r.region, cooldown_s = self.cooldown.as_secs_f64(), "region marked unhealthy");
    }

    /// Takes `r` out of rotation for `d` (a cooldown another process of the fleet set), unless
    /// it is out for longer already.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn cool_down_for(&self, r: &RegionClient, d: Duration) {
        let until = self.now_ms() + u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 4);
        r.unhealthy_until_ms.fetch_max(until, Relaxed);
    }

    /// Returns the cooldown of a region that failed (and of a model throttled in a region).
    pub(crate) fn cooldown(&self) -> Duration {
        self.cooldown
    }

    pub(crate) fn mark_healthy(&self, r: &RegionClient) {
        if r.unhealthy_until_ms.swap(0, Relaxed) != 0 {
            tracing::info!(region = %r.region, "region healthy again");
        }
    }

    /// Returns the regions a call for `model_id` may use, healthy ones first, primary first. A
    /// region where the model cools down after a throttle (its lane, in `lanes`) counts as
    /// unhealthy for this model only.
    pub(crate) fn order(&self, model_id: &str, lanes: Option<&[Lane]>) -> Vec<&RegionClient> {
        // One allocation per call: the allowed regions (all of them when none is) in
        // configuration order, then the healthy ones moved first (a stable sort keeps each
        // group's order; it allocates nothing for a short list).
        let any_allowed = self.list.iter().any(|r| region_allows(&r.region, model_id));
        let mut order = Vec::with_capacity(self.list.len());
        order.extend(
            self.list
                .iter()
                .filter(|r| !any_allowed || region_allows(&r.region, model_id)),
        );
        if order.len() > 1 {
            order.sort_by_key(|r| !self.is_healthy_for(r, lanes));
        }
        order
    }

    /// Returns true when `r` is healthy and the model of `lanes` is not cooling down there.
    pub(crate) fn is_healthy_for(&self, r: &RegionClient, lanes: Option<&[Lane]>) -> bool {
        self.is_healthy(r)
            && !lanes
                .and_then(|l| l.get(r.index))
                .is_some_and(|l| l.is_cooling(self))
    }
}

/// Returns false when `model_id` names a region or geography that `region` is not in:
/// ARNs (`arn:aws:bedrock:us-east-1:...`) and cross-region inference profiles (`us.`, `eu.`,
/// `apac.`, `us-gov.`, ... prefixes). Plain model ids and `global.` profiles go anywhere.
pub(crate) fn region_allows(region: &str, model_id: &str) -> bool {
    if let Some(rest) = model_id.strip_prefix("arn:") {
        // arn:partition:service:region:account:resource
        return match rest.split(':').nth(2) {
            Some("") | None => true,
            Some(r) => r == region,
        };
    }
    let Some((prefix, _)) = model_id.split_once('.') else {
        return true;
    };
    match prefix {
        "us" => region.starts_with("us-") && !region.starts_with("us-gov-"),
        "us-gov" => region.starts_with("us-gov-"),
        "eu" => region.starts_with("eu-"),
        "apac" => region.starts_with("ap-"),
        "jp" => region == "ap-northeast-1" || region == "ap-northeast-3",
        "au" => region == "ap-southeast-2" || region == "ap-southeast-4",
        "ca" => region.starts_with("ca-"),
        _ => true, // a provider name such as `anthropic.`, or `global.`
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inference_profiles_and_arns_scope_regions() {
        assert!(region_allows(
            "us-east-1",
            "us.anthropic.claude-3-haiku-20240307-v1:0"
        ));
        assert!(!region_allows(
            "eu-west-1",
            "us.anthropic.claude-3-haiku-20240307-v1:0"
        ));
        assert!(region_allows(
            "eu-west-1",
            "eu.meta.llama3-2-1b-instruct-v1:0"
        ));
        assert!(region_allows(
            "eu-west-1",
            "anthropic.claude-3-haiku-20240307-v1:0"
        ));
        assert!(region_allows(
            "eu-west-1",
            "global.anthropic.claude-sonnet-4-v1:0"
        ));
        let arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/x";
        assert!(region_allows("us-east-1", arn));
        assert!(!region_allows("us-west-2", arn));
    }
}
