//! Pure planning of exactly-once commits: which records go into which
//! transaction, and what each transaction writes. No SDK here, so unit tests
//! assert on the plan directly; the adapter only translates it.
//!
//! A transaction holds, for a set of records, their markers (an id added to
//! a marker bucket, see [`crate::markers`], or for records before the
//! switch-over one marker `Put` each) and one `ADD` update per aggregate those
//! records touch, with their deltas merged. All or nothing: either the
//! records are marked and counted together, or neither.

use std::collections::BTreeMap;

use meter_core::aggregate::{aggregate, keys_of, tag_keys_of};
use meter_core::{AggregateKey, Counters, MeteredRecord};

use crate::keys::{aggregate_keys, bucket_keys, marker_keys, ItemKeys};
use crate::markers::{BucketRef, MarkerScheme, Placement};

/// DynamoDB's limit on actions per `TransactWriteItems`.
pub const MAX_TRANSACTION_ITEMS: usize = 100;

/// One write in a planned transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxItem {
    /// The idempotency marker of one record, put only if absent (records
    /// before the switch-over to buckets).
    PutMarker {
        keys: ItemKeys,
        record_id: String,
        /// Epoch seconds after which DynamoDB may delete the marker.
        expires_at: i64,
        /// What the record cost, for per-request lookups (no content).
        usage: MarkerUsage,
    },
    /// Adds record ids to a marker bucket, on condition that none is there
    /// yet and, for a capped level, that the bucket is not full.
    AddToBucket {
        keys: ItemKeys,
        bucket: BucketRef,
        /// The records' 8-byte ids, in the order of [`PlannedTx::records_of`].
        ids: Vec<u64>,
        /// The level's cap (`None`: the last level, no cap).
        cap: Option<u32>,
        expires_at: i64,
    },
    /// Pushes a full bucket's expiry forward (condition: it is still full),
    /// so that it outlives the markers placed below it.
    TouchBucket {
        keys: ItemKeys,
        bucket: BucketRef,
        cap: u32,
        expires_at: i64,
    },
    /// Atomic increments of one aggregate.
    AddAggregate {
        keys: ItemKeys,
        kind: &'static str,
        /// The aggregate's dimensions as (attribute, raw value).
        dims: Vec<(&'static str, String)>,
        counters: Counters,
    },
}

/// The per-request facts a marker carries (`bedrock-meter cost`): who,
/// which model, which UTC day, the record's counters. User and model are
/// bounded ([`bounded_id`]) so the marker stays under 1 KB, one write unit
/// pair like before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerUsage {
    pub user: String,
    pub model: String,
    pub day: String,
    pub counters: Counters,
}

/// Longest user or model id a marker holds verbatim (bytes).
pub const MAX_MARKER_ID_BYTES: usize = 200;
const MARKER_ID_PREFIX_BYTES: usize = 120;

/// An id as a marker stores it: verbatim up to [`MAX_MARKER_ID_BYTES`],
/// else its first 120 bytes, `…sha256:` and the hex SHA-256 of the whole id
/// (194 bytes at most). Aggregates always hold the whole id.
pub fn bounded_id(raw: &str) -> String {
    use sha2::{Digest, Sha256};
    use std::fmt::Write as _;
    if raw.len() <= MAX_MARKER_ID_BYTES {
        return raw.to_string();
    }
    let mut cut = MARKER_ID_PREFIX_BYTES;
    while !raw.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut s = String::with_capacity(cut + 80);
    s.push_str(&raw[..cut]);
    s.push_str("…sha256:");
    for b in Sha256::digest(raw.as_bytes()) {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The request-cost item of one record (`REQUEST_COSTS=on`): what
/// `bedrock-meter cost` reads. A plain write, outside the transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestCost {
    pub keys: ItemKeys,
    pub record_id: String,
    pub expires_at: i64,
    pub usage: MarkerUsage,
}

/// The request-cost items of `records`, kept `marker_ttl_secs` like markers.
pub fn request_costs(
    records: &[&MeteredRecord],
    now_epoch: i64,
    marker_ttl_secs: i64,
) -> Vec<RequestCost> {
    records
        .iter()
        .map(|r| RequestCost {
            keys: crate::keys::request_cost_keys(&r.record_id),
            record_id: r.record_id.clone(),
            expires_at: now_epoch.saturating_add(marker_ttl_secs),
            usage: MarkerUsage {
                user: bounded_id(&r.user),
                model: bounded_id(&r.model),
                day: r.day.to_string(),
                counters: r.counters,
            },
        })
        .collect()
}

/// A transaction ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedTx {
    pub items: Vec<TxItem>,
    /// For each item, the indices (into the records given to
    /// [`build_transaction`]) of the records it marks: one for a marker
    /// `Put`, the bucket's records for a bucket add, none otherwise.
    pub records_of: Vec<Vec<usize>>,
    /// The record ids of the transaction, by index.
    pub record_ids: Vec<String>,
}

impl PlannedTx {
    /// The ids of the records this transaction counts.
    pub fn record_ids(&self) -> impl Iterator<Item = &str> {
        self.record_ids.iter().map(String::as_str)
    }
}

/// What a planned record occupies in a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Slot<'a> {
    Aggregate(AggregateKey<'a>),
    Bucket(BucketRef),
    Record(usize),
}

fn slots_of<'a>(r: &'a MeteredRecord, i: usize, p: &Placement) -> Vec<Slot<'a>> {
    let mut out: Vec<Slot<'a>> = keys_of(r)
        .into_iter()
        .chain(tag_keys_of(r))
        .map(Slot::Aggregate)
        .collect();
    match p {
        Placement::RecordMarker => out.push(Slot::Record(i)),
        Placement::Bucket { bucket, touch, .. } => {
            out.push(Slot::Bucket(*bucket));
            out.extend(touch.iter().map(|b| Slot::Bucket(*b)));
        }
        Placement::AlreadyMarked => {}
    }
    out
}

/// Splits records into groups whose transactions fit in
/// [`MAX_TRANSACTION_ITEMS`] actions and add at most
/// [`MarkerScheme::max_ids_per_write`] ids to one bucket. Deterministic:
/// records are ordered by (the user's day-bucket slot, user, day, model, id),
/// so the same records always split the same way, records sharing
/// aggregates sit together, and so do users sharing marker buckets (fewer
/// writes). `placements[i]` is where record `i`'s marker goes (never
/// [`Placement::AlreadyMarked`]: drop those first). Returns indices into
/// `records`.
pub fn split_into_groups(
    records: &[&MeteredRecord],
    placements: &[Placement],
    scheme: &MarkerScheme,
) -> Vec<Vec<usize>> {
    let max_ids_per_write = scheme.max_ids_per_write;
    let slots: Vec<u16> = records.iter().map(|r| scheme.first_slot(&r.user)).collect();
    let mut order: Vec<usize> = (0..records.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (records[a], records[b]);
        (slots[a], &x.user, x.day, &x.model, &x.record_id).cmp(&(
            slots[b],
            &y.user,
            y.day,
            &y.model,
            &y.record_id,
        ))
    });
    let mut groups = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut keys: std::collections::BTreeSet<Slot<'_>> = Default::default();
    let mut per_bucket: BTreeMap<BucketRef, usize> = BTreeMap::new();
    for i in order {
        let record_slots = slots_of(records[i], i, &placements[i]);
        let new_keys = record_slots.iter().filter(|k| !keys.contains(k)).count();
        let bucket_full = match &placements[i] {
            Placement::Bucket { bucket, .. } => {
                per_bucket.get(bucket).copied().unwrap_or(0) >= max_ids_per_write
            }
            _ => false,
        };
        if !current.is_empty() && (keys.len() + new_keys > MAX_TRANSACTION_ITEMS || bucket_full) {
            groups.push(std::mem::take(&mut current));
            keys.clear();
            per_bucket.clear();
        }
        current.push(i);
        keys.extend(record_slots);
        if let Placement::Bucket { bucket, .. } = &placements[i] {
            *per_bucket.entry(*bucket).or_default() += 1;
        }
    }
    if !current.is_empty() {
        groups.push(current);
    }
    groups
}

/// Builds the transaction for `records` (with their `placements`): markers
/// first (record markers, bucket adds, bucket refreshes), then merged
/// aggregate updates in key order. `now_epoch + marker_ttl_secs` is when a
/// marker may expire; buckets get [`MarkerScheme::expiry`].
pub fn build_transaction(
    records: &[&MeteredRecord],
    placements: &[Placement],
    scheme: &MarkerScheme,
    now_epoch: i64,
    marker_ttl_secs: i64,
) -> PlannedTx {
    let marker_expiry = now_epoch.saturating_add(marker_ttl_secs);
    let mut items = Vec::new();
    let mut records_of = Vec::new();
    let mut buckets: BTreeMap<BucketRef, (Vec<u64>, Vec<usize>)> = BTreeMap::new();
    let mut touched: std::collections::BTreeSet<BucketRef> = Default::default();
    for (i, (r, p)) in records.iter().zip(placements).enumerate() {
        match p {
            Placement::RecordMarker => {
                items.push(TxItem::PutMarker {
                    keys: marker_keys(&r.record_id),
                    record_id: r.record_id.clone(),
                    expires_at: marker_expiry,
                    usage: MarkerUsage {
                        user: bounded_id(&r.user),
                        model: bounded_id(&r.model),
                        day: r.day.to_string(),
                        counters: r.counters,
                    },
                });
                records_of.push(vec![i]);
            }
            Placement::Bucket { bucket, id, touch } => {
                let e = buckets.entry(*bucket).or_default();
                e.0.push(*id);
                e.1.push(i);
                touched.extend(touch.iter().copied());
            }
            Placement::AlreadyMarked => {}
        }
    }
    for (bucket, (ids, owners)) in buckets {
        touched.remove(&bucket);
        items.push(TxItem::AddToBucket {
            keys: bucket_keys(&bucket),
            bucket,
            ids,
            cap: scheme.is_capped(bucket.level).then_some(scheme.cap),
            expires_at: scheme.expiry(bucket.level, marker_expiry),
        });
        records_of.push(owners);
    }
    for bucket in touched {
        items.push(TxItem::TouchBucket {
            keys: bucket_keys(&bucket),
            bucket,
            cap: scheme.cap,
            expires_at: scheme.expiry(bucket.level, marker_expiry),
        });
        records_of.push(Vec::new());
    }
    let counted = records
        .iter()
        .zip(placements)
        .filter(|(_, p)| !matches!(p, Placement::AlreadyMarked))
        .map(|(r, _)| *r);
    for (key, delta) in aggregate(counted) {
        items.push(TxItem::AddAggregate {
            keys: aggregate_keys(&key),
            kind: key.kind(),
            dims: dims(&key),
            counters: delta.counters,
        });
        records_of.push(Vec::new());
    }
    PlannedTx {
        items,
        records_of,
        record_ids: records.iter().map(|r| r.record_id.clone()).collect(),
    }
}

fn dims(key: &AggregateKey<'_>) -> Vec<(&'static str, String)> {
    match *key {
        AggregateKey::UserModelDay { user, model, day } => vec![
            ("user", user.to_string()),
            ("model", model.to_string()),
            ("day", day.to_string()),
        ],
        AggregateKey::UserDay { user, day } => {
            vec![("user", user.to_string()), ("day", day.to_string())]
        }
        AggregateKey::UserMonth { user, month } => {
            vec![("user", user.to_string()), ("month", month.to_string())]
        }
        AggregateKey::ModelDay { model, day } => {
            vec![("model", model.to_string()), ("day", day.to_string())]
        }
        AggregateKey::TagModelDay {
            tag,
            value,
            model,
            day,
        } => vec![
            ("tag", tag.to_string()),
            ("value", value.to_string()),
            ("model", model.to_string()),
            ("day", day.to_string()),
        ],
        AggregateKey::TagMonth { tag, value, month } => vec![
            ("tag", tag.to_string()),
            ("value", value.to_string()),
            ("month", month.to_string()),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::markers::{FullBuckets, DEFAULT_MAX_IDS_PER_WRITE};
    use meter_core::Day;

    fn places_with(scheme: &MarkerScheme, records: &[&MeteredRecord]) -> Vec<Placement> {
        let f = FullBuckets::default();
        records
            .iter()
            .map(|r| scheme.place(&r.record_id, &r.user, r.timestamp, &f, 1))
            .collect()
    }

    fn split(records: &[&MeteredRecord]) -> Vec<Vec<usize>> {
        let p = places_with(&MarkerScheme::default(), records);
        split_into_groups(records, &p, &MarkerScheme::default())
    }

    fn tx_of(records: &[&MeteredRecord]) -> PlannedTx {
        let scheme = MarkerScheme::default();
        build_transaction(records, &places_with(&scheme, records), &scheme, 0, 1)
    }

    /// The scheme of earlier versions: one marker item per record.
    fn record_markers() -> MarkerScheme {
        MarkerScheme {
            buckets_since: i64::MAX,
            ..MarkerScheme::default()
        }
    }

    fn rec(id: usize, user: usize, model: usize, day: &str) -> MeteredRecord {
        MeteredRecord {
            record_id: format!("r:{id}"),
            user: format!("user{user}").into(),
            principal: None,
            model: format!("model{model}").into(),
            day: Day::parse(day).unwrap(),
            timestamp: 0,
            counters: Counters {
                invocations: 1,
                input_tokens: 10,
                ..Default::default()
            },
            unpriced: None,
            tags: Vec::new(),
        }
    }

    fn realistic(n: usize) -> Vec<MeteredRecord> {
        (0..n)
            .map(|i| {
                rec(
                    i,
                    i % 50,
                    (i / 7) % 5,
                    if i % 3 == 0 {
                        "2026-11-01"
                    } else {
                        "2026-11-02"
                    },
                )
            })
            .collect()
    }

    #[test]
    fn every_group_fits_in_one_transaction_and_every_record_is_in_exactly_one_group() {
        let records = realistic(500);
        let refs: Vec<&MeteredRecord> = records.iter().collect();
        let groups = split(&refs);
        let mut seen = vec![0; records.len()];
        for g in &groups {
            let members: Vec<&MeteredRecord> = g.iter().map(|&i| refs[i]).collect();
            let tx = tx_of(&members);
            assert!(
                tx.items.len() <= MAX_TRANSACTION_ITEMS,
                "{}",
                tx.items.len()
            );
            for &i in g {
                seen[i] += 1;
            }
        }
        assert!(seen.iter().all(|&n| n == 1));
        // Coalescing: far fewer writes than 5 per record.
        let total_items: usize = groups
            .iter()
            .map(|g| {
                tx_of(&g.iter().map(|&i| refs[i]).collect::<Vec<_>>())
                    .items
                    .len()
            })
            .sum();
        assert!(
            total_items < records.len() * 5 / 2,
            "{total_items} items for 500 records"
        );
    }

    #[test]
    fn splitting_is_deterministic_whatever_the_input_order() {
        let records = realistic(300);
        let mut reversed = records.clone();
        reversed.reverse();
        let ids = |rs: &[MeteredRecord]| {
            let refs: Vec<&MeteredRecord> = rs.iter().collect();
            split(&refs)
                .into_iter()
                .map(|g| {
                    g.into_iter()
                        .map(|i| refs[i].record_id.clone())
                        .collect::<Vec<_>>()
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&records), ids(&reversed));
    }

    #[test]
    fn a_transaction_merges_deltas_and_marks_each_record() {
        let records = [rec(1, 1, 1, "2026-11-01"), rec(2, 1, 1, "2026-11-01")];
        let refs: Vec<&MeteredRecord> = records.iter().collect();
        let scheme = record_markers();
        let tx = build_transaction(&refs, &places_with(&scheme, &refs), &scheme, 1_000, 86_400);
        assert_eq!(tx.items.len(), 2 + 4);
        let none: Vec<usize> = Vec::new();
        assert_eq!(
            tx.records_of,
            [
                vec![0],
                vec![1],
                none.clone(),
                none.clone(),
                none.clone(),
                none
            ]
        );
        match &tx.items[0] {
            TxItem::PutMarker {
                keys, expires_at, ..
            } => {
                assert_eq!(keys.pk, "R#r:1");
                assert_eq!(*expires_at, 87_400);
            }
            other => panic!("{other:?}"),
        }
        let umd = tx
            .items
            .iter()
            .find_map(|i| match i {
                TxItem::AddAggregate {
                    kind: "user_model_day",
                    counters,
                    dims,
                    keys,
                } => Some((counters, dims, keys)),
                _ => None,
            })
            .unwrap();
        assert_eq!(umd.0.invocations, 2);
        assert_eq!(umd.0.input_tokens, 20);
        assert_eq!(umd.1[0], ("user", "user1".to_string()));
        assert_eq!(umd.2.sk, "D#2026-11-01#M#model1");
    }

    #[test]
    fn one_heavy_user_with_many_keys_still_splits_below_the_limit() {
        let records: Vec<MeteredRecord> = (0..400).map(|i| rec(i, 0, i, "2026-11-01")).collect();
        let refs: Vec<&MeteredRecord> = records.iter().collect();
        for g in split(&refs) {
            let members: Vec<&MeteredRecord> = g.iter().map(|&i| refs[i]).collect();
            assert!(tx_of(&members).items.len() <= MAX_TRANSACTION_ITEMS);
        }
    }

    fn tagged(mut r: MeteredRecord, tags: &[(&str, &str)]) -> MeteredRecord {
        r.tags = tags
            .iter()
            .map(|(t, v)| (std::sync::Arc::from(*t), std::sync::Arc::from(*v)))
            .collect();
        r
    }

    #[test]
    fn tag_aggregates_ride_in_the_same_transaction_as_the_record_and_its_marker() {
        let records = [
            tagged(
                rec(1, 1, 1, "2026-11-01"),
                &[("team", "pay"), ("feature", "chat")],
            ),
            tagged(
                rec(2, 2, 1, "2026-11-01"),
                &[("team", "pay"), ("feature", "untagged")],
            ),
        ];
        let refs: Vec<&MeteredRecord> = records.iter().collect();
        assert_eq!(split(&refs).len(), 1);
        let tx = tx_of(&refs);
        let of_kind = |kind: &str| {
            tx.items
                .iter()
                .filter_map(|i| match i {
                    TxItem::AddAggregate {
                        kind: k,
                        dims,
                        counters,
                        ..
                    } if *k == kind => Some((dims.clone(), counters.invocations)),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        // team=pay shared by both records; feature has two values.
        let tmd = of_kind("tag_model_day");
        assert_eq!(tmd.len(), 3, "{tmd:?}");
        let pay = tmd
            .iter()
            .find(|(d, _)| d[0].1 == "team" && d[1].1 == "pay")
            .unwrap();
        assert_eq!(pay.1, 2);
        assert_eq!(of_kind("tag_month").len(), 3);
        // 2 markers + 2 user_model_day + 2 user_day + 2 user_month + 1 model_day + 3 + 3.
        assert_eq!(tx.items.len(), 2 + 2 + 2 + 2 + 1 + 3 + 3);
    }

    #[test]
    fn records_with_many_distinct_tag_values_still_split_below_the_limit() {
        let values: Vec<String> = (0..400).map(|i| format!("v{i}")).collect();
        let records: Vec<MeteredRecord> = (0..400)
            .map(|i| {
                tagged(
                    rec(i, 0, 0, "2026-11-01"),
                    &[("team", &values[i]), ("feature", &values[(i * 7) % 400])],
                )
            })
            .collect();
        let refs: Vec<&MeteredRecord> = records.iter().collect();
        let groups = split(&refs);
        let mut covered = 0;
        for g in &groups {
            let members: Vec<&MeteredRecord> = g.iter().map(|&i| refs[i]).collect();
            let n = tx_of(&members).items.len();
            assert!(n <= MAX_TRANSACTION_ITEMS, "{n}");
            covered += g.len();
        }
        assert_eq!(covered, 400);
    }

    /// DynamoDB's item size: attribute names plus values (strings in UTF-8
    /// bytes, numbers about one byte per two significant digits plus one),
    /// computed here from the attributes the adapter writes.
    fn marker_item_size(tx_item: &TxItem, committed_at: &str) -> usize {
        let TxItem::PutMarker {
            keys,
            record_id,
            expires_at,
            usage,
        } = tx_item
        else {
            panic!("not a marker")
        };
        let num = |v: &str| v.trim_start_matches('-').replace('.', "").len().div_ceil(2) + 1;
        let mut size = 0;
        for (name, value) in [
            ("pk", keys.pk.as_str()),
            ("sk", keys.sk.as_str()),
            ("kind", "marker"),
            ("record_id", record_id.as_str()),
            ("committed_at", committed_at),
            ("user", usage.user.as_str()),
            ("model", usage.model.as_str()),
            ("day", usage.day.as_str()),
        ] {
            size += name.len() + value.len();
        }
        size += "expires_at".len() + num(&expires_at.to_string());
        for (name, value) in usage.counters.named_values() {
            size += name.len() + num(&value);
        }
        size
    }

    #[test]
    fn a_marker_with_the_longest_ids_stays_under_one_kilobyte() {
        let mut r = rec(1, 1, 1, "2026-11-01");
        r.user = "ü".repeat(meter_core::MAX_ID_BYTES / 2).into();
        r.model = "m".repeat(meter_core::MAX_ID_BYTES).into();
        r.counters = Counters {
            invocations: 1,
            errors: 1,
            input_tokens: u64::MAX.into(),
            output_tokens: u64::MAX.into(),
            cache_read_input_tokens: u64::MAX.into(),
            cache_write_input_tokens: u64::MAX.into(),
            unpriced_invocations: 1,
            cost_usd: meter_core::Usd::from_picos(u128::from(u64::MAX) * 4 * 75_000_000),
        };
        // A real requestId is a 36-byte UUID.
        r.record_id = format!(
            "r:{}",
            "0b6e3c1e-0000-4000-8000-".to_string() + "0123456789ab"
        );
        let scheme = record_markers();
        let tx = build_transaction(
            &[&r],
            &places_with(&scheme, &[&r]),
            &scheme,
            1_800_000_000,
            35 * 86_400,
        );
        let size = marker_item_size(&tx.items[0], "2026-11-30T12:00:00Z");
        println!("marker item size with the longest user and model ids: {size} bytes");
        assert!(size < 1024, "{size}");
        let TxItem::PutMarker { usage, .. } = &tx.items[0] else {
            unreachable!()
        };
        assert!(usage.user.len() <= 194 && usage.user.contains("…sha256:"));
        assert_eq!(usage.user, bounded_id(&r.user), "deterministic");
        assert_ne!(bounded_id(&r.user), bounded_id(&format!("{}x", r.user)));
        // The room left for a longer requestId before the marker passes 1 KB.
        println!("room for request ids: {} more bytes", 1023 - size);
    }

    #[test]
    fn a_full_capped_bucket_with_a_last_write_at_the_limit_stays_under_one_kilobyte() {
        use crate::markers::{BucketRef, DEFAULT_CAP};
        // The largest a capped bucket gets: cap - 1 ids, then one write of
        // the most ids a transaction adds to one bucket.
        let ids = (DEFAULT_CAP as usize - 1) + DEFAULT_MAX_IDS_PER_WRITE;
        // The widest key: the largest window and slot numbers.
        let b = BucketRef {
            level: 3,
            window: i64::MAX,
            slot: u16::MAX,
        };
        let keys = crate::keys::bucket_keys(&b);
        let num = |v: &str| v.trim_start_matches('-').len().div_ceil(2) + 1;
        // Attribute names plus values, as the adapter writes them (strings
        // in bytes; a binary set counted at 8 bytes plus 1 per element, more
        // than DynamoDB charges).
        let size = "pk".len()
            + keys.pk.len()
            + "sk".len()
            + keys.sk.len()
            + "kind".len()
            + "marker_bucket".len()
            + "ids".len()
            + ids * 9
            + "n".len()
            + num(&ids.to_string())
            + "expires_at".len()
            + num(&i64::MAX.to_string());
        println!("largest capped bucket: {ids} ids, {size} bytes");
        assert!(size < 1024, "{size}");
    }

    #[test]
    fn short_ids_are_kept_verbatim_in_the_marker() {
        assert_eq!(bounded_id("alice"), "alice");
        let edge = "a".repeat(MAX_MARKER_ID_BYTES);
        assert_eq!(bounded_id(&edge), edge);
    }
}
