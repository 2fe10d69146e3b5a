//! Lanes: one model in one region, with what Bedrock keeps per model there (a [`Lane`], defined
//! with the regions it belongs to; this file makes and keeps them).
//!
//! Bedrock's quotas are per model and region, so each lane has its own SDK client whose retry
//! partition (the adaptive rate limiter and the retry token bucket) is the lane's alone: one
//! model's throttling slows no other model. The clients share the factory's one HTTP client,
//! pool and config; only the partition differs. A lane also keeps its throttle cooldown (a
//! throttle cools the model in that region, not the region) and whether the service refused to
//! carry the model's unary calls as streams there.
//!
//! Lanes are kept for the first [`MAX_TRACKED_MODELS`](crate::shared::MAX_TRACKED_MODELS) ids;
//! later ids use the region's own client, whose partition they share (the overflow partition).
//! The partitions are custom ones: the factory owns their state, the SDK's process-global maps
//! never see them, and `invalidate` frees a lane.

use crate::region::{Lane, RegionClient, Regions};
use aws_smithy_runtime::client::retries::RetryPartition;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Names a factory's retry partitions apart from every other factory's of the process.
pub(crate) fn partition(factory: u64, scope: &str) -> RetryPartition {
    RetryPartition::custom(format!("bedrock-pool-{factory}-{scope}")).build()
}

/// The lanes of each model id, in the regions' order.
pub(crate) struct LaneTable {
    factory: u64,
    cap: usize,
    map: Mutex<HashMap<String, Arc<[Lane]>>>,
}

impl LaneTable {
    pub(crate) fn new(factory: u64, cap: usize) -> Self {
        LaneTable {
            factory,
            cap,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<[Lane]>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Returns the lanes of `id` (one per region), made on first use; `None` past the cap.
    pub(crate) fn get(&self, id: &str, regions: &Regions) -> Option<Arc<[Lane]>> {
        let mut map = self.lock();
        if let Some(l) = map.get(id) {
            return Some(l.clone());
        }
        if map.len() >= self.cap {
            return None;
        }
        let lanes: Arc<[Lane]> = regions.iter().map(|r| self.lane(id, r)).collect();
        map.insert(id.to_owned(), lanes.clone());
        Some(lanes)
    }

    /// Returns a new lane of `id` in `region`: the region's client config on a partition of its own.
    fn lane(&self, id: &str, region: &RegionClient) -> Lane {
        let config = region
            .client
            .config()
            .to_builder()
            .retry_partition(partition(self.factory, &format!("{}-{id}", region.region)))
            .build();
        Lane::new(aws_sdk_bedrockruntime::Client::from_conf(config))
    }

    /// Forgets the lanes of `id` (its partitions' state goes with them).
    pub(crate) fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Forgets every lane.
    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    /// Returns how many model ids have lanes.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn regions() -> Regions {
        let client = aws_sdk_bedrockruntime::Client::from_conf(
            aws_sdk_bedrockruntime::Config::builder()
                .behavior_version(aws_sdk_bedrockruntime::config::BehaviorVersion::latest())
                .region(aws_sdk_bedrockruntime::config::Region::new("us-west-2"))
                .build(),
        );
        let r = RegionClient::new(
            "us-west-2".into(),
            client,
            "https://bedrock-runtime.us-west-2.amazonaws.com".into(),
            Duration::from_secs(30),
        );
        Regions::new(vec![r], Duration::from_secs(30))
    }

    #[test]
    fn lanes_are_capped_and_freed() {
        let regions = regions();
        let table = LaneTable::new(7, 2);
        let a = table.get("a", &regions).unwrap();
        assert!(Arc::ptr_eq(&a, &table.get("a", &regions).unwrap()));
        assert!(table.get("b", &regions).is_some());
        assert!(table.get("c", &regions).is_none(), "past the cap");
        table.remove("a");
        assert!(table.get("c", &regions).is_some());
        assert_eq!(table.len(), 2);
        let partition = a[0].client.config().retry_partition().unwrap().to_string();
        assert_eq!(partition, "bedrock-pool-7-us-west-2-a");
        table.clear();
        assert_eq!(table.len(), 0);
    }

    #[test]
    fn a_lane_cools_down_and_warms() {
        let regions = regions();
        let table = LaneTable::new(0, 4);
        let lanes = table.get("m", &regions).unwrap();
        assert!(!lanes[0].is_cooling(&regions));
        lanes[0].cool_down(&regions, Duration::from_secs(60));
        assert!(lanes[0].is_cooling(&regions));
        let r = regions.primary();
        assert!(regions.is_healthy(r));
        assert!(!regions.is_healthy_for(r, Some(&lanes)));
        lanes[0].warm();
        assert!(regions.is_healthy_for(r, Some(&lanes)));
        assert!(!lanes[0].stream_refused());
        lanes[0].refuse_streams();
        assert!(lanes[0].stream_refused());
    }
}
