//! Pure planning of exactly-once commits: which records go into which
//! transaction, and what each transaction writes. No SDK here, so unit tests
//! assert on the plan directly; the adapter only translates it.
//!
//! A transaction holds, for a set of records, one marker `Put` per record
//! (condition: the marker does not exist) and one `ADD` update per aggregate
//! those records touch, with their deltas merged. All or nothing: either the
//! records are marked and counted together, or neither.

use meter_core::aggregate::{aggregate, keys_of, tag_keys_of};
use meter_core::{AggregateKey, Counters, MeteredRecord};

use crate::keys::{aggregate_keys, marker_keys, ItemKeys};

/// DynamoDB's limit on actions per `TransactWriteItems`.
pub const MAX_TRANSACTION_ITEMS: usize = 100;

/// One write in a planned transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxItem {
    /// The idempotency marker of one record, put only if absent.
    PutMarker {
        keys: ItemKeys,
        record_id: String,
        /// Epoch seconds after which DynamoDB may delete the marker.
        expires_at: i64,
        /// What the record cost, for per-request lookups (no content).
        usage: MarkerUsage,
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

/// A transaction ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedTx {
    pub items: Vec<TxItem>,
    /// For each item, the index (into the records given to
    /// [`build_transaction`]) of the record whose marker it is.
    pub marker_of: Vec<Option<usize>>,
}

/// Splits records into groups whose transactions fit in
/// [`MAX_TRANSACTION_ITEMS`] actions. Deterministic: records are ordered by
/// (user, day, model, id), so the same records always split the same way,
/// and records sharing aggregates sit together (fewer writes). Returns
/// indices into `records`.
pub fn split_into_groups(records: &[&MeteredRecord]) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..records.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (records[a], records[b]);
        (&x.user, x.day, &x.model, &x.record_id).cmp(&(&y.user, y.day, &y.model, &y.record_id))
    });
    let mut groups = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut keys: std::collections::BTreeSet<AggregateKey<'_>> = Default::default();
    for i in order {
        // The four user/model keys plus two per attribution tag.
        let record_keys: Vec<AggregateKey<'_>> = keys_of(records[i])
            .into_iter()
            .chain(tag_keys_of(records[i]))
            .collect();
        let new_keys = record_keys.iter().filter(|k| !keys.contains(k)).count();
        if !current.is_empty() && current.len() + keys.len() + 1 + new_keys > MAX_TRANSACTION_ITEMS
        {
            groups.push(std::mem::take(&mut current));
            keys.clear();
        }
        current.push(i);
        keys.extend(record_keys);
    }
    if !current.is_empty() {
        groups.push(current);
    }
    groups
}

/// Builds the transaction for `records`: markers first, then merged
/// aggregate updates in key order.
pub fn build_transaction(
    records: &[&MeteredRecord],
    now_epoch: i64,
    marker_ttl_secs: i64,
) -> PlannedTx {
    let mut items = Vec::new();
    let mut marker_of = Vec::new();
    for (i, r) in records.iter().enumerate() {
        items.push(TxItem::PutMarker {
            keys: marker_keys(&r.record_id),
            record_id: r.record_id.clone(),
            expires_at: now_epoch.saturating_add(marker_ttl_secs),
            usage: MarkerUsage {
                user: bounded_id(&r.user),
                model: bounded_id(&r.model),
                day: r.day.to_string(),
                counters: r.counters,
            },
        });
        marker_of.push(Some(i));
    }
    for (key, delta) in aggregate(records.iter().copied()) {
        items.push(TxItem::AddAggregate {
            keys: aggregate_keys(&key),
            kind: key.kind(),
            dims: dims(&key),
            counters: delta.counters,
        });
        marker_of.push(None);
    }
    PlannedTx { items, marker_of }
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
    use meter_core::Day;

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
        let groups = split_into_groups(&refs);
        let mut seen = vec![0; records.len()];
        for g in &groups {
            let members: Vec<&MeteredRecord> = g.iter().map(|&i| refs[i]).collect();
            let tx = build_transaction(&members, 0, 1);
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
                build_transaction(&g.iter().map(|&i| refs[i]).collect::<Vec<_>>(), 0, 1)
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
            split_into_groups(&refs)
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
        let tx = build_transaction(&refs, 1_000, 86_400);
        assert_eq!(tx.items.len(), 2 + 4);
        assert_eq!(tx.marker_of, [Some(0), Some(1), None, None, None, None]);
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
        for g in split_into_groups(&refs) {
            let members: Vec<&MeteredRecord> = g.iter().map(|&i| refs[i]).collect();
            assert!(build_transaction(&members, 0, 1).items.len() <= MAX_TRANSACTION_ITEMS);
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
        assert_eq!(split_into_groups(&refs).len(), 1);
        let tx = build_transaction(&refs, 0, 1);
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
        let groups = split_into_groups(&refs);
        let mut covered = 0;
        for g in &groups {
            let members: Vec<&MeteredRecord> = g.iter().map(|&i| refs[i]).collect();
            let n = build_transaction(&members, 0, 1).items.len();
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
        let tx = build_transaction(&[&r], 1_800_000_000, 35 * 86_400);
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
    fn short_ids_are_kept_verbatim_in_the_marker() {
        assert_eq!(bounded_id("alice"), "alice");
        let edge = "a".repeat(MAX_MARKER_ID_BYTES);
        assert_eq!(bounded_id(&edge), edge);
    }
}
