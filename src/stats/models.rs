//! Per-model request counters, capped so that a stream of distinct model ids cannot grow them.

use super::record::RequestCounters;
use super::{ModelStats, RequestStats};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Label under which model ids beyond the cap are counted, in statistics and metric labels.
pub(crate) const OTHER_MODELS: &str = "other";

/// One model's counters and its metric label.
type ModelEntry = (Arc<RequestCounters>, Arc<str>);

/// Per-model request counters, with at most `cap` distinct ids; later ids share one "other"
/// entry so that a stream of distinct ids cannot grow the table (or the metric labels).
pub(crate) struct ModelTable {
    cap: usize,
    map: Mutex<HashMap<String, ModelEntry>>,
    other: ModelEntry,
}

impl ModelTable {
    pub(crate) fn new(cap: usize) -> Self {
        ModelTable {
            cap,
            map: Mutex::new(HashMap::new()),
            other: (Arc::new(RequestCounters::new()), Arc::from(OTHER_MODELS)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ModelEntry>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Returns the counters and the metric label of `id`: its own while fewer than the cap are
    /// tracked, else the shared "other" entry.
    pub(crate) fn entry(&self, id: &str) -> ModelEntry {
        let mut map = self.lock();
        if let Some(e) = map.get(id) {
            return e.clone();
        }
        if map.len() >= self.cap {
            return self.other.clone();
        }
        let e = (Arc::new(RequestCounters::new()), Arc::from(id));
        map.insert(id.to_owned(), e.clone());
        e
    }

    /// Forgets the figures of `id`.
    pub(crate) fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Returns the figures of `id` (or of the "other" entry), if tracked.
    pub(crate) fn get(&self, id: &str) -> Option<RequestStats> {
        if id == OTHER_MODELS {
            return self.has_other().then(|| self.other.0.snapshot());
        }
        self.lock().get(id).map(|(c, _)| c.snapshot())
    }

    fn has_other(&self) -> bool {
        self.other.0.requests() > 0
    }

    /// Returns every tracked id's figures sorted by id, with "other" last when it was used.
    pub(crate) fn all(&self) -> Vec<ModelStats> {
        let mut v: Vec<_> = self
            .lock()
            .iter()
            .map(|(k, (c, _))| ModelStats {
                model_id: k.clone(),
                requests: c.snapshot(),
            })
            .collect();
        v.sort_by(|a, b| a.model_id.cmp(&b.model_id));
        if self.has_other() {
            v.push(ModelStats {
                model_id: OTHER_MODELS.to_owned(),
                requests: self.other.0.snapshot(),
            });
        }
        v
    }

    /// Forgets every id's figures.
    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    /// Returns the number of ids tracked on their own.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_table_is_capped_with_one_other_entry() {
        let t = ModelTable::new(3);
        let labels: Vec<_> = (0..10).map(|i| t.entry(&format!("m{i}")).1).collect();
        assert_eq!(t.len(), 3);
        assert_eq!(&*labels[2], "m2");
        assert_eq!(&*labels[3], OTHER_MODELS);
        assert_eq!(&*t.entry("m1").1, "m1", "a tracked id keeps its entry");
        t.remove("m1");
        assert_eq!(&*t.entry("m9").1, "m9", "a pruned slot is reused");
        assert_eq!(t.len(), 3);
    }
}
