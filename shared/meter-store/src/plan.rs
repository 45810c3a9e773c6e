//! Pure planning of exactly-once commits: which records go into which
//! transaction, and what each transaction writes. No SDK here, so unit tests
//! assert on the plan directly; the adapter only translates it.
//!
//! A transaction holds, for a set of records, one marker `Put` per record
//! (condition: the marker does not exist) and one `ADD` update per aggregate
//! those records touch, with their deltas merged. All or nothing: either the
//! records are marked and counted together, or neither.

use meter_core::aggregate::{aggregate, keys_of};
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
        let record_keys = keys_of(records[i]);
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
}
