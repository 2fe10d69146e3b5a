//! What the driver shares with the other processes of a fleet (feature `redis`, and a factory
//! built with `fleet(..)`): before a model's sends, one round trip admits the call under the
//! model's shared limit and reads the cooldowns of the model in each region (an open breaker,
//! a throttle) and of each region, which it applies to the local breakers, lanes and region
//! health; a breaker that opens or closes, a model throttled in a region and a region that
//! fails are told to the fleet, off the hot path. Without the feature, or without
//! a fleet, every function here does nothing.

use super::Target;
use crate::error::Result;
use crate::limit::Lease;
use crate::region::RegionClient;
use std::time::Duration;

/// Before the sends of `target` to the regions of `order`: admits the call of `tokens` through
/// the shared window (when the model has a limit) and applies the fleet's cooldowns, in one
/// round trip. `Ok(None)` when there is no fleet, Redis did not answer (the local limiter then
/// admits each send), or the model has no limit.
///
/// # Errors
/// The shared limit refused the call.
#[cfg_attr(not(feature = "redis"), allow(unused_variables, clippy::unused_async))]
pub(super) async fn before_model(
    target: &Target,
    order: &[&RegionClient],
    tokens: u64,
) -> Result<Option<Lease>> {
    #[cfg(feature = "redis")]
    if let Some(fleet) = &target.shared.fleet {
        use crate::fleet::{CooldownKey, WindowSpec};
        let keys: Vec<CooldownKey> = order
            .iter()
            .flat_map(|r| {
                [
                    CooldownKey::ModelRegion {
                        model: target.id.clone(),
                        region: r.region.clone(),
                    },
                    CooldownKey::Throttled {
                        model: target.id.clone(),
                        region: r.region.clone(),
                    },
                    CooldownKey::Region(r.region.clone()),
                ]
            })
            .collect();
        // The limit of the region the call goes to first (each region has its own).
        let (lease, cooldowns) = match order.first().and_then(|r| target.limiter(r)) {
            Some(l) => match l.acquire_shared(fleet, &target.id, tokens, &keys).await {
                None => return Ok(None),
                Some(admitted) => {
                    let (lease, cooldowns) = admitted?;
                    (Some(lease), cooldowns)
                }
            },
            None => {
                let spec = WindowSpec {
                    requests: None,
                    tokens: None,
                    window: std::time::Duration::from_secs(60),
                };
                match fleet.acquire(&target.id, spec, 0, &keys).await {
                    Ok(a) => (None, a.cooldowns),
                    Err(_) => return Ok(None),
                }
            }
        };
        apply(target, order, &cooldowns);
        return Ok(lease);
    }
    Ok(None)
}

/// Applies the cooldowns read (three per region: the model's breaker there, the model's
/// throttle there, the region's) locally.
#[cfg(feature = "redis")]
fn apply(target: &Target, order: &[&RegionClient], cooldowns: &[Option<std::time::Duration>]) {
    let now = std::time::Instant::now();
    let regions = &target.shared.regions;
    for (r, three) in order.iter().zip(cooldowns.chunks(3)) {
        let d = |i: usize| three.get(i).copied().flatten();
        if let (Some(d), Some(b)) = (d(0), target.breaker(r)) {
            b.open_until(now + d, crate::error::ErrorKind::ServiceUnavailable);
        }
        if let (Some(d), Some(lane)) = (d(1), target.lane(r)) {
            lane.cool_down(regions, d);
        }
        if let Some(d) = d(2) {
            regions.cool_down_for(r, d);
        }
    }
}

/// The breaker of `target` in `region` opened: the fleet skips the pair for its cooldown too.
#[cfg_attr(not(feature = "redis"), allow(unused_variables))]
pub(super) fn breaker_opened(target: &Target, region: &RegionClient) {
    #[cfg(feature = "redis")]
    if let (Some(fleet), Some(b)) = (&target.shared.fleet, target.breaker(region)) {
        let key = crate::fleet::CooldownKey::ModelRegion {
            model: target.id.clone(),
            region: region.region.clone(),
        };
        fleet.set_cooldown(key, b.cooldown());
    }
}

/// A trial call closed the breaker of `target` in `region`: the fleet's cooldown ends too.
#[cfg_attr(not(feature = "redis"), allow(unused_variables))]
pub(super) fn breaker_closed(target: &Target, region: &RegionClient) {
    #[cfg(feature = "redis")]
    if let Some(fleet) = &target.shared.fleet {
        fleet.clear_cooldown(crate::fleet::CooldownKey::ModelRegion {
            model: target.id.clone(),
            region: region.region.clone(),
        });
    }
}

/// The breaker of `target` in `region` is due for a trial: with a fleet, one process sends it
/// (`SET NX`), the others keep skipping the pair; true when this process sends it.
#[cfg_attr(not(feature = "redis"), allow(unused_variables, clippy::unused_async))]
pub(super) async fn claim_trial(target: &Target, region: &RegionClient, ttl: Duration) -> bool {
    #[cfg(feature = "redis")]
    if let Some(fleet) = &target.shared.fleet {
        let key = crate::fleet::CooldownKey::Trial {
            model: target.id.clone(),
            region: region.region.clone(),
        };
        return fleet.claim_trial(key, ttl).await;
    }
    true
}

/// The trial of `target` in `region` is over (whatever its outcome): the fleet's claim ends,
/// so that the next due process may try.
#[cfg_attr(not(feature = "redis"), allow(unused_variables))]
pub(super) fn trial_over(target: &Target, region: &RegionClient) {
    #[cfg(feature = "redis")]
    if let Some(fleet) = &target.shared.fleet {
        fleet.clear_cooldown(crate::fleet::CooldownKey::Trial {
            model: target.id.clone(),
            region: region.region.clone(),
        });
    }
}

/// `region` failed and cools down: the fleet moves it to the back of its order too.
#[cfg_attr(not(feature = "redis"), allow(unused_variables))]
pub(super) fn region_failed(target: &Target, region: &RegionClient) {
    #[cfg(feature = "redis")]
    if let Some(fleet) = &target.shared.fleet {
        let key = crate::fleet::CooldownKey::Region(region.region.clone());
        fleet.set_cooldown(key, target.shared.regions.cooldown());
    }
}

/// `target` was throttled in `region` and cools down there: the fleet tries that region last
/// for this model too (other models keep it).
#[cfg_attr(not(feature = "redis"), allow(unused_variables))]
pub(super) fn model_throttled(target: &Target, region: &RegionClient) {
    #[cfg(feature = "redis")]
    if let Some(fleet) = &target.shared.fleet {
        let key = crate::fleet::CooldownKey::Throttled {
            model: target.id.clone(),
            region: region.region.clone(),
        };
        fleet.set_cooldown(key, target.shared.regions.cooldown());
    }
}
