//! The join's bounded memory: predictions waiting for their label, labels
//! waiting for their prediction (by bytes), what was let go or labelled
//! (as 64-bit hashes), and the buckets of joined rows per version and slice.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use serde_json::value::RawValue;
use sluice_registry_client::feedback::{Task, Unmatched};
use sluice_registry_client::slices::{MAX_CATEGORIES, OTHER_SLICES};

use super::scoring::{Bucket, Predicted};

pub(super) struct Logged {
    pub(super) model: String,
    pub(super) version: u64,
    pub(super) at_ms: u64,
    pub(super) rows: Vec<Predicted>,
    /// Each row's slice, when the gateway named them (interned per version).
    pub(super) slices: Vec<Arc<str>>,
}

/// A set of hashes that forgets its oldest beyond a capacity.
#[derive(Default)]
pub(super) struct Remembered {
    pub(super) set: HashSet<u64>,
    pub(super) order: VecDeque<u64>,
}

impl Remembered {
    pub(super) fn insert(&mut self, hash: u64, capacity: usize) {
        if self.set.insert(hash) {
            self.order.push_back(hash);
        }
        while self.order.len() > capacity {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }
}

pub(super) struct Waiting {
    pub(super) model: String,
    pub(super) request_id: String,
    /// As the gateway wrote it: read into values only when its prediction
    /// is found (a label of 65,536 rows is 2 MB as values, 130 KB as text).
    pub(super) label: Box<RawValue>,
    pub(super) at_ms: u64,
}

impl Waiting {
    /// What it holds in memory, in bytes.
    pub(super) fn size(&self) -> usize {
        64 + self.model.len() + self.request_id.len() + self.label.get().len()
    }
}

#[derive(Default)]
pub(super) struct JoinState {
    /// Segments read, by store (`predictions`, `feedback`).
    pub(super) seen: HashMap<&'static str, HashSet<String>>,
    pub(super) index: HashMap<String, Logged>,
    /// Request ids in the order they were logged, for letting go.
    pub(super) order: VecDeque<(u64, String)>,
    pub(super) expired: Remembered,
    pub(super) labelled: Remembered,
    /// Oldest first, with what they hold.
    pub(super) waiting: VecDeque<Waiting>,
    pub(super) waiting_bytes: usize,
    pub(super) buckets: HashMap<(String, u64), VecDeque<Bucket>>,
    pub(super) unmatched: HashMap<String, Unmatched>,
    pub(super) tasks: HashMap<(String, u64), Task>,
    /// Per version, hourly buckets of joined rows per slice.
    pub(super) slice_buckets: HashMap<(String, u64), VecDeque<SliceHour>>,
    /// The slices seen per version, up to [`MAX_CATEGORIES`].
    pub(super) slice_names: HashMap<(String, u64), HashSet<Arc<str>>>,
}

/// One hour (since the epoch) of a version's joined rows, per slice.
pub(super) type SliceHour = (u64, BTreeMap<Arc<str>, Bucket>);

/// The resolution of per-slice buckets.
pub(super) const SLICE_BUCKET_MS: u64 = 3600 * 1000;

/// The shared copy of a version's slice name; past [`MAX_CATEGORIES`]
/// names, [`OTHER_SLICES`]: a continuous feature declared by mistake must
/// not grow the join without bound.
pub(super) fn intern(names: &mut HashSet<Arc<str>>, slice: &str) -> Arc<str> {
    if let Some(known) = names.get(slice) {
        return known.clone();
    }
    if names.len() >= MAX_CATEGORIES {
        let other = names
            .get(OTHER_SLICES)
            .cloned()
            .unwrap_or_else(|| Arc::from(OTHER_SLICES));
        names.insert(other.clone());
        return other;
    }
    let name: Arc<str> = Arc::from(slice);
    names.insert(name.clone());
    name
}

pub(super) fn hash(id: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    id.hash(&mut hasher);
    hasher.finish()
}
