//! How the statistics serialise (feature `serde`): the `serialize_with` helpers and the types
//! whose derived form would not match the documented format (see the module `stats`).

use super::{BreakerState, BreakerStats, FailureStats, HttpProtocol};
use crate::error::ErrorKind;
use serde::ser::{Serialize, SerializeMap, SerializeStruct, Serializer};
use std::time::{Duration, SystemTime};

/// Returns a duration in milliseconds (always finite).
fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A duration as milliseconds, a floating-point number.
pub(crate) fn ms<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(millis(*d))
}

/// A float, or `null` when it is not finite (JSON has no NaN nor infinity).
pub(crate) fn finite<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.is_finite() {
        s.serialize_f64(*v)
    } else {
        s.serialize_none()
    }
}

/// A time of day as milliseconds since the Unix epoch, `null` for none (or one before 1970).
pub(crate) fn unix_ms<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    let since = t.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok());
    match since {
        Some(d) => s.serialize_some(&u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        None => s.serialize_none(),
    }
}

/// Enums serialise as their `as_str` name.
macro_rules! as_str {
    ($($t:ty),*) => {$(
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    )*};
}

as_str!(HttpProtocol, ErrorKind, BreakerState);

/// Every kind's name to its count, zeros included, so that the keys never change.
impl Serialize for FailureStats {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(ErrorKind::ALL.len()))?;
        for (kind, n) in ErrorKind::ALL.iter().zip(self.counts.iter()) {
            map.serialize_entry(kind.as_str(), n)?;
        }
        map.end()
    }
}

/// The state as its name, and the time left of an open breaker's cooldown in `remaining_ms`
/// (`null` unless open).
impl Serialize for BreakerStats {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let remaining = match self.state {
            BreakerState::Open { remaining } => Some(millis(remaining)),
            _ => None,
        };
        let mut st = s.serialize_struct("BreakerStats", 7)?;
        st.serialize_field("model_id", &self.model_id)?;
        st.serialize_field("region", &self.region)?;
        st.serialize_field("state", &self.state)?;
        st.serialize_field("remaining_ms", &remaining)?;
        st.serialize_field("recent_failures", &self.recent_failures)?;
        st.serialize_field("opened", &self.opened)?;
        st.serialize_field("skipped", &self.skipped)?;
        st.end()
    }
}
