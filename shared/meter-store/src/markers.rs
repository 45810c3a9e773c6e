//! Where a record's idempotency marker lives: pure rules, no SDK.
//!
//! A record is marked by adding its 8-byte id (the first 8 bytes of the
//! SHA-256 of its record id) to a **marker bucket**: a small item whose key
//! depends on the record alone, so that every delivery of the record, in any
//! batch, meets the same bucket. Records that share a bucket share one write:
//! that is what makes a marker cheaper than one item per record.
//!
//! Buckets come in **levels**, coarse to fine (by default a UTC day with 8
//! slots, an hour with 4, a minute with 2, a second with 1; the slot is
//! another part of the same hash). A bucket of every level but the last
//! accepts ids while it holds fewer than [`MarkerScheme::cap`]; once it is
//! *full* its id set never changes again. A record is marked in the first
//! bucket of its chain that is not full:
//!
//! - sparse traffic (a batch spread over days): the day buckets take the ids,
//!   a handful of writes per batch;
//! - dense traffic: the day, hour and minute buckets fill within seconds and
//!   the records of one second share the second's bucket.
//!
//! **Why this is exactly once.** Fullness is monotonic and a full bucket's ids
//! are frozen, so a process may cache a full bucket's ids (read once) and
//! decide "this record is not in it" forever after. A record `r` is in at most
//! one bucket of its chain: to place `r` in level `k`, the writer has seen
//! every bucket above `k` full without `r`, and the write to level `k` is
//! conditional on `r` not being there (and, for capped levels, on the bucket
//! not being full). A second delivery of `r` sees the same full buckets above
//! `k` (they stay full) and meets `r` at level `k`: the condition fails and
//! `r` is dropped as already counted. A bucket's `expires_at` is pushed
//! forward on every write, and a write below a full bucket whose expiry is
//! nearer than the marker TTL refreshes it in the same transaction, so an
//! upper bucket never expires before a marker placed below it.
//!
//! **Switch-over.** Records whose timestamp is before
//! [`MarkerScheme::buckets_since`] keep the per-record marker item of the
//! earlier versions (`R#<record id>`), so a table written by them keeps
//! recognising what it already counted. The instant is stored in the table
//! (see `docs/data-model.md`) and depends on nothing but the record.

use std::collections::{HashMap, HashSet};

use sha2::{Digest, Sha256};

/// One level of marker buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarkerLevel {
    /// Width of a bucket's time window, seconds.
    pub width_secs: i64,
    /// Buckets per window (by the record's hash).
    pub slots: u16,
}

/// The marker scheme. Part of the data contract: changing the levels or the
/// cap of a live table would move records to other buckets, so they are
/// constants, not settings (tests and benchmarks vary them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerScheme {
    /// Coarse to fine; the last level has no cap.
    pub levels: Vec<MarkerLevel>,
    /// A bucket of a capped level accepts ids while it holds fewer than this.
    pub cap: u32,
    /// Most ids added to one bucket by one transaction (the condition lists
    /// one `contains` per id; DynamoDB allows 300 operators per expression).
    pub max_ids_per_write: usize,
    /// Records with an earlier timestamp (epoch seconds) use per-record
    /// markers (the scheme of earlier versions).
    pub buckets_since: i64,
}

/// The levels of the data contract: day/8, hour/4, minute/2, second/1.
pub const DEFAULT_LEVELS: [MarkerLevel; 4] = [
    MarkerLevel {
        width_secs: 86_400,
        slots: 8,
    },
    MarkerLevel {
        width_secs: 3_600,
        slots: 4,
    },
    MarkerLevel {
        width_secs: 60,
        slots: 2,
    },
    MarkerLevel {
        width_secs: 1,
        slots: 1,
    },
];
/// Ids a capped bucket accepts before it is full.
pub const DEFAULT_CAP: u32 = 40;
/// Ids one transaction adds to one bucket at most. With [`DEFAULT_CAP`] a
/// capped bucket holds at most 95 ids: under 1 KB, one transactional write
/// pair (see the size test below).
pub const DEFAULT_MAX_IDS_PER_WRITE: usize = 56;
/// Extra lifetime per level of a bucket over the level below it: a full
/// bucket is refreshed (one more write) at most once per this interval.
pub const REFRESH_SLACK_SECS: i64 = 86_400;

impl Default for MarkerScheme {
    fn default() -> Self {
        MarkerScheme {
            levels: DEFAULT_LEVELS.to_vec(),
            cap: DEFAULT_CAP,
            max_ids_per_write: DEFAULT_MAX_IDS_PER_WRITE,
            buckets_since: i64::MIN,
        }
    }
}

/// A record's identity in buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarkHash {
    /// Stored in the bucket's id set (8 bytes, big-endian): [`mark_id`].
    pub id: u64,
    /// Chooses the slot at each level: [`slot_seed`] of the record's user.
    seed: u64,
}

impl MarkHash {
    pub fn of(record_id: &str, user: &str) -> MarkHash {
        MarkHash {
            id: mark_id(record_id),
            seed: slot_seed(user),
        }
    }
}

fn sha_word(text: &str) -> u64 {
    let d = Sha256::digest(text.as_bytes());
    u64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
}

/// A record's mark id: the first 8 bytes of the SHA-256 of its record id.
/// Stable across versions and machines.
pub fn mark_id(record_id: &str) -> u64 {
    sha_word(record_id)
}

/// The slot seed of a user: the first 8 bytes of the SHA-256 of the user id,
/// 16 bits per level. Slots follow the user, not the record, so that the
/// records of the users one transaction holds (transactions group records
/// by user, for their aggregates) share buckets too.
pub fn slot_seed(user: &str) -> u64 {
    sha_word(user)
}

/// One bucket: a level, a time window at that level, a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BucketRef {
    pub level: u8,
    /// `timestamp.div_euclid(width)`.
    pub window: i64,
    pub slot: u16,
}

impl MarkerScheme {
    fn last_level(&self) -> u8 {
        (self.levels.len() - 1) as u8
    }

    /// Whether buckets of `level` have a cap.
    pub fn is_capped(&self, level: u8) -> bool {
        level < self.last_level()
    }

    /// The bucket of a record at `level`.
    pub fn bucket(&self, level: u8, timestamp: i64, h: MarkHash) -> BucketRef {
        let l = self.levels[usize::from(level)];
        let bits = (h.seed >> (16 * u32::from(level % 4))) & 0xffff;
        BucketRef {
            level,
            window: timestamp.div_euclid(l.width_secs.max(1)),
            slot: (bits % u64::from(l.slots.max(1))) as u16,
        }
    }

    /// When a bucket of `level` written now may expire, given when a marker
    /// written now may (`now + MARKER_TTL`): one [`REFRESH_SLACK_SECS`] more
    /// per level below it, so a bucket outlives the buckets below it and is
    /// refreshed at most once per slack interval.
    pub fn expiry(&self, level: u8, marker_expiry: i64) -> i64 {
        let below = i64::from(self.last_level().saturating_sub(level));
        marker_expiry.saturating_add(REFRESH_SLACK_SECS.saturating_mul(below))
    }

    /// The slot of `user` at level 0: the first key by which transactions
    /// order records, so that records sharing day buckets sit together.
    pub fn first_slot(&self, user: &str) -> u16 {
        let l = self.levels[0];
        ((slot_seed(user) & 0xffff) % u64::from(l.slots.max(1))) as u16
    }

    /// Where a record's marker goes, given the full buckets known so far and
    /// when a marker written now may expire. The bucket depends on the
    /// record alone: its id, its user and its timestamp.
    pub fn place(
        &self,
        record_id: &str,
        user: &str,
        timestamp: i64,
        full: &FullBuckets,
        marker_expiry: i64,
    ) -> Placement {
        if timestamp < self.buckets_since {
            return Placement::RecordMarker;
        }
        let h = MarkHash::of(record_id, user);
        let mut above: Vec<(BucketRef, i64)> = Vec::new();
        for level in 0..=self.last_level() {
            let b = self.bucket(level, timestamp, h);
            if self.is_capped(level) {
                if let Some(f) = full.get(&b) {
                    if f.ids.contains(&h.id) {
                        return Placement::AlreadyMarked;
                    }
                    above.push((b, f.expires_at));
                    continue;
                }
            }
            // Full buckets above must outlive this one: refresh those that
            // would not.
            let needed = self.expiry(level, marker_expiry);
            let touch = above
                .into_iter()
                .filter(|(_, exp)| *exp < needed)
                .map(|(b, _)| b)
                .collect();
            return Placement::Bucket {
                bucket: b,
                id: h.id,
                touch,
            };
        }
        unreachable!("the last level is never full")
    }
}

/// Where one record's marker goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// A per-record marker item (records before the switch-over).
    RecordMarker,
    /// Add `id` to `bucket`; refresh the expiry of the full buckets in
    /// `touch` (above it in the chain) in the same transaction.
    Bucket {
        bucket: BucketRef,
        id: u64,
        touch: Vec<BucketRef>,
    },
    /// Found in a full bucket: counted before.
    AlreadyMarked,
}

/// A bucket as read back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BucketState {
    pub ids: HashSet<u64>,
    /// The `n` attribute: ids added so far.
    pub n: u32,
    pub expires_at: i64,
}

/// Full buckets seen by this process: their ids never change, so they can be
/// kept. Entries are dropped once expired.
#[derive(Debug, Default)]
pub struct FullBuckets {
    map: HashMap<BucketRef, BucketState>,
    /// Ids this process added to capped buckets it has not seen full: a
    /// lower bound of their `n`. Once it reaches the cap the bucket is
    /// certainly full and worth one read (cheaper than the cancelled
    /// transaction that would otherwise reveal it).
    added: HashMap<BucketRef, u32>,
    /// Changes whenever a bucket is learnt full or forgotten.
    generation: u64,
}

/// Beyond this many entries the oldest windows are dropped (they are only an
/// optimisation: a dropped entry costs one more cancelled transaction).
const MAX_CACHED: usize = 4096;

impl FullBuckets {
    pub fn get(&self, b: &BucketRef) -> Option<&BucketState> {
        self.map.get(b)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Changes whenever what [`FullBuckets::get`] answers may have changed.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Records what a read of `b` showed: kept if full (and `b` capped),
    /// forgotten otherwise.
    pub fn learn(&mut self, scheme: &MarkerScheme, b: BucketRef, state: Option<BucketState>) {
        self.added.remove(&b);
        match state {
            Some(s) if scheme.is_capped(b.level) && s.n >= scheme.cap => {
                if self.map.len() >= MAX_CACHED {
                    self.evict_oldest();
                }
                if self.map.insert(b, s).is_none() {
                    self.generation += 1;
                }
            }
            _ => {
                if self.map.remove(&b).is_some() {
                    self.generation += 1;
                }
            }
        }
    }

    /// Notes ids this process added to a capped bucket; true when the bucket
    /// is now certainly full and not yet known: read it and [`learn`] it.
    ///
    /// [`learn`]: FullBuckets::learn
    pub fn added(&mut self, scheme: &MarkerScheme, b: BucketRef, ids: usize) -> bool {
        if !scheme.is_capped(b.level) || self.map.contains_key(&b) {
            return false;
        }
        if self.added.len() >= MAX_CACHED {
            self.added.clear();
        }
        let n = self.added.entry(b).or_default();
        *n = n.saturating_add(ids as u32);
        *n >= scheme.cap
    }

    /// Notes a refreshed expiry.
    pub fn refreshed(&mut self, b: &BucketRef, expires_at: i64) {
        if let Some(s) = self.map.get_mut(b) {
            s.expires_at = s.expires_at.max(expires_at);
        }
    }

    /// Drops entries whose expiry has passed.
    pub fn prune(&mut self, now: i64) {
        let before = self.map.len();
        self.map.retain(|_, s| s.expires_at >= now);
        if self.map.len() != before {
            self.generation += 1;
        }
    }

    fn evict_oldest(&mut self) {
        let mut keys: Vec<BucketRef> = self.map.keys().copied().collect();
        keys.sort_by_key(|b| (b.window, b.level));
        for b in keys.into_iter().take(MAX_CACHED / 4) {
            self.map.remove(&b);
        }
        self.generation += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(ids: &[u64], n: u32, expires_at: i64) -> Option<BucketState> {
        Some(BucketState {
            ids: ids.iter().copied().collect(),
            n,
            expires_at,
        })
    }

    #[test]
    fn a_record_goes_to_its_day_bucket_until_that_bucket_is_full() {
        let s = MarkerScheme::default();
        let mut f = FullBuckets::default();
        let t = 1_793_000_123;
        let p = s.place("r:a", "u", t, &f, 0);
        let Placement::Bucket { bucket, touch, .. } = p else {
            panic!("{p:?}")
        };
        assert_eq!((bucket.level, bucket.window), (0, t / 86_400));
        assert!(touch.is_empty());
        f.learn(&s, bucket, full(&[1, 2], s.cap, i64::MAX));
        let Placement::Bucket { bucket: b1, .. } = s.place("r:a", "u", t, &f, 0) else {
            panic!()
        };
        assert_eq!((b1.level, b1.window), (1, t / 3_600));
    }

    #[test]
    fn a_record_found_in_a_full_bucket_is_already_marked() {
        let s = MarkerScheme::default();
        let mut f = FullBuckets::default();
        let t = 1_793_000_123;
        let h = MarkHash::of("r:a", "u");
        f.learn(&s, s.bucket(0, t, h), full(&[h.id], s.cap, i64::MAX));
        assert_eq!(s.place("r:a", "u", t, &f, 0), Placement::AlreadyMarked);
    }

    #[test]
    fn a_bucket_that_is_not_full_is_not_kept() {
        let s = MarkerScheme::default();
        let mut f = FullBuckets::default();
        let b = s.bucket(0, 0, MarkHash::of("x", "u"));
        f.learn(&s, b, full(&[1], s.cap - 1, i64::MAX));
        assert!(f.is_empty());
        // The last level is never "full", whatever it holds.
        let last = s.bucket(3, 0, MarkHash::of("x", "u"));
        f.learn(&s, last, full(&[1], 10_000, i64::MAX));
        assert!(f.is_empty());
    }

    #[test]
    fn the_last_level_takes_records_when_every_level_above_is_full() {
        let s = MarkerScheme::default();
        let mut f = FullBuckets::default();
        let t = 1_793_000_123;
        let h = MarkHash::of("r:z", "u");
        for level in 0..3 {
            f.learn(&s, s.bucket(level, t, h), full(&[], s.cap, 100));
        }
        // The full buckets above expire at 100: a marker expiring at 1_000
        // needs all three refreshed, one expiring at 50 none.
        let p = s.place("r:z", "u", t, &f, 1_000);
        let Placement::Bucket { bucket, touch, .. } = p else {
            panic!("{p:?}")
        };
        assert_eq!((bucket.level, bucket.window), (3, t));
        assert_eq!(touch.len(), 3);
        assert!(
            matches!(s.place("r:z", "u", t, &f, 50), Placement::Bucket { touch, .. } if touch.is_empty())
        );
        // Each level above outlives the one below by the slack.
        assert_eq!(s.expiry(3, 1_000), 1_000);
        assert_eq!(s.expiry(0, 1_000), 1_000 + 3 * REFRESH_SLACK_SECS);
    }

    #[test]
    fn records_before_the_switch_over_keep_a_marker_item_of_their_own() {
        let s = MarkerScheme {
            buckets_since: 1_000,
            ..MarkerScheme::default()
        };
        let f = FullBuckets::default();
        assert_eq!(s.place("r:a", "u", 999, &f, 0), Placement::RecordMarker);
        assert!(matches!(
            s.place("r:a", "u", 1_000, &f, 0),
            Placement::Bucket { .. }
        ));
    }

    #[test]
    fn slots_spread_records_over_every_bucket_of_a_window() {
        let s = MarkerScheme::default();
        let mut seen: HashSet<(u8, u16)> = HashSet::new();
        for i in 0..2_000 {
            let h = MarkHash::of(&format!("r:{i}"), &format!("user{i}"));
            for level in 0..4 {
                seen.insert((level, s.bucket(level, 0, h).slot));
            }
        }
        assert_eq!(seen.len(), 8 + 4 + 2 + 1);
    }

    #[test]
    fn timestamps_before_1970_fall_in_their_own_windows() {
        let s = MarkerScheme::default();
        let h = MarkHash::of("r:a", "u");
        assert_eq!(s.bucket(0, -1, h).window, -1);
        assert_eq!(s.bucket(0, 0, h).window, 0);
    }
}
