//! Folding metered records into per-key deltas.
//!
//! Every record contributes to exactly four aggregates: its (user, model,
//! day), (user, day), (user, month) and (model, day). Aggregation is a sum of
//! counters, so it is independent of record order and conserves every counter
//! (property-tested below).

use std::collections::BTreeMap;

use foldhash::{HashMap, HashMapExt};

use crate::money::Usd;
use crate::resolve::{Day, Month};

/// Counters of an aggregate (or of one record). Wide integers: sums never
/// overflow in practice (a DynamoDB number holds 38 digits).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub invocations: u128,
    pub errors: u128,
    pub input_tokens: u128,
    pub output_tokens: u128,
    pub cache_read_input_tokens: u128,
    pub cache_write_input_tokens: u128,
    pub unpriced_invocations: u128,
    pub cost_usd: Usd,
}

impl Counters {
    /// Adds another set of counters (saturating; unreachable in practice).
    pub fn add(&mut self, o: &Counters) {
        self.invocations = self.invocations.saturating_add(o.invocations);
        self.errors = self.errors.saturating_add(o.errors);
        self.input_tokens = self.input_tokens.saturating_add(o.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(o.output_tokens);
        self.cache_read_input_tokens = self
            .cache_read_input_tokens
            .saturating_add(o.cache_read_input_tokens);
        self.cache_write_input_tokens = self
            .cache_write_input_tokens
            .saturating_add(o.cache_write_input_tokens);
        self.unpriced_invocations = self
            .unpriced_invocations
            .saturating_add(o.unpriced_invocations);
        self.cost_usd = self.cost_usd.saturating_add(o.cost_usd);
    }

    /// The counters as (attribute name, decimal value) pairs, in the order of
    /// the data contract. `cost_usd` is the exact decimal.
    pub fn named_values(&self) -> [(&'static str, String); 8] {
        [
            ("invocations", self.invocations.to_string()),
            ("errors", self.errors.to_string()),
            ("input_tokens", self.input_tokens.to_string()),
            ("output_tokens", self.output_tokens.to_string()),
            (
                "cache_read_input_tokens",
                self.cache_read_input_tokens.to_string(),
            ),
            (
                "cache_write_input_tokens",
                self.cache_write_input_tokens.to_string(),
            ),
            (
                "unpriced_invocations",
                self.unpriced_invocations.to_string(),
            ),
            ("cost_usd", self.cost_usd.to_string()),
        ]
    }
}

/// The key of one aggregate item. Ordering is total and deterministic, which
/// makes transaction splitting deterministic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AggregateKey<'a> {
    UserModelDay {
        user: &'a str,
        model: &'a str,
        day: Day,
    },
    UserDay {
        user: &'a str,
        day: Day,
    },
    UserMonth {
        user: &'a str,
        month: Month,
    },
    ModelDay {
        model: &'a str,
        day: Day,
    },
}

impl AggregateKey<'_> {
    /// The `kind` attribute of the item.
    pub fn kind(&self) -> &'static str {
        match self {
            AggregateKey::UserModelDay { .. } => "user_model_day",
            AggregateKey::UserDay { .. } => "user_day",
            AggregateKey::UserMonth { .. } => "user_month",
            AggregateKey::ModelDay { .. } => "model_day",
        }
    }
}

/// What aggregation needs from a record.
pub trait Contribution {
    fn record_id(&self) -> &str;
    fn user(&self) -> &str;
    fn model(&self) -> &str;
    fn day(&self) -> Day;
    fn counters(&self) -> &Counters;
}

/// One aggregate's delta: its summed counters and the records it covers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delta<'a> {
    pub counters: Counters,
    pub record_ids: Vec<&'a str>,
}

/// The four keys a record contributes to.
pub fn keys_of<C: Contribution>(r: &C) -> [AggregateKey<'_>; 4] {
    let (user, model, day) = (r.user(), r.model(), r.day());
    [
        AggregateKey::UserModelDay { user, model, day },
        AggregateKey::UserDay { user, day },
        AggregateKey::UserMonth {
            user,
            month: day.month(),
        },
        AggregateKey::ModelDay { model, day },
    ]
}

/// Folds records into one delta per aggregate key, in key order. Sums each
/// record into its (user, model, day) delta in a hash map (records far
/// outnumber keys: one hash per record), derives the three rollups from those
/// deltas, and sorts once at the end.
pub fn aggregate<'a, C: Contribution + 'a>(
    records: impl IntoIterator<Item = &'a C>,
) -> BTreeMap<AggregateKey<'a>, Delta<'a>> {
    let mut by_user_model_day: HashMap<(&'a str, &'a str, Day), Delta<'a>> = HashMap::new();
    for r in records {
        let d = by_user_model_day
            .entry((r.user(), r.model(), r.day()))
            .or_default();
        d.counters.add(r.counters());
        d.record_ids.push(r.record_id());
    }
    let mut rollups: HashMap<AggregateKey<'a>, Delta<'a>> =
        HashMap::with_capacity(by_user_model_day.len());
    for (&(user, model, day), d) in &by_user_model_day {
        for key in [
            AggregateKey::UserDay { user, day },
            AggregateKey::UserMonth {
                user,
                month: day.month(),
            },
            AggregateKey::ModelDay { model, day },
        ] {
            let r = rollups.entry(key).or_default();
            r.counters.add(&d.counters);
            r.record_ids.extend_from_slice(&d.record_ids);
        }
    }
    by_user_model_day
        .into_iter()
        .map(|((user, model, day), d)| (AggregateKey::UserModelDay { user, model, day }, d))
        .chain(rollups)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    struct R {
        id: String,
        user: String,
        model: String,
        day: Day,
        c: Counters,
    }

    impl Contribution for R {
        fn record_id(&self) -> &str {
            &self.id
        }
        fn user(&self) -> &str {
            &self.user
        }
        fn model(&self) -> &str {
            &self.model
        }
        fn day(&self) -> Day {
            self.day
        }
        fn counters(&self) -> &Counters {
            &self.c
        }
    }

    fn arb_record() -> impl Strategy<Value = R> {
        (
            0u32..1000,
            prop::sample::select(vec!["alice", "bob", "carol#1", "d%2"]),
            prop::sample::select(vec!["m1", "m2", "m3"]),
            prop::sample::select(vec!["2026-10-31", "2026-11-01", "2026-11-02"]),
            (
                0u64..2,
                any::<u32>(),
                any::<u32>(),
                any::<u16>(),
                any::<u16>(),
                0u64..2,
                any::<u64>(),
            ),
        )
            .prop_map(|(id, user, model, day, (err, i, o, cr, cw, unp, cost))| R {
                id: format!("r{id}"),
                user: user.to_string(),
                model: model.to_string(),
                day: Day::parse(day).unwrap(),
                c: Counters {
                    invocations: 1,
                    errors: err.into(),
                    input_tokens: i.into(),
                    output_tokens: o.into(),
                    cache_read_input_tokens: cr.into(),
                    cache_write_input_tokens: cw.into(),
                    unpriced_invocations: unp.into(),
                    cost_usd: Usd::from_picos(cost.into()),
                },
            })
    }

    fn total_of_kind(agg: &BTreeMap<AggregateKey, Delta>, kind: &str) -> Counters {
        let mut t = Counters::default();
        for (k, d) in agg {
            if k.kind() == kind {
                t.add(&d.counters);
            }
        }
        t
    }

    proptest! {
        #[test]
        fn aggregation_is_independent_of_record_order(
            records in prop::collection::vec(arb_record(), 0..60),
            seed in any::<u64>(),
        ) {
            let mut shuffled = records.clone();
            // Deterministic Fisher-Yates from the seed.
            let mut s = seed | 1;
            for i in (1..shuffled.len()).rev() {
                s ^= s << 13; s ^= s >> 7; s ^= s << 17;
                shuffled.swap(i, (s % (i as u64 + 1)) as usize);
            }
            let a = aggregate(&records);
            let b = aggregate(&shuffled);
            prop_assert_eq!(a.len(), b.len());
            for (k, d) in &a {
                let other = &b[k];
                prop_assert_eq!(d.counters, other.counters);
                let mut x = d.record_ids.clone(); x.sort();
                let mut y = other.record_ids.clone(); y.sort();
                prop_assert_eq!(x, y);
            }
        }

        #[test]
        fn every_rollup_conserves_every_counter(records in prop::collection::vec(arb_record(), 0..60)) {
            let mut expected = Counters::default();
            for r in &records { expected.add(&r.c); }
            let agg = aggregate(&records);
            for kind in ["user_model_day", "user_day", "user_month", "model_day"] {
                prop_assert_eq!(total_of_kind(&agg, kind), expected, "{}", kind);
            }
            // every record is covered exactly once per kind
            for kind in ["user_model_day", "user_day", "user_month", "model_day"] {
                let n: usize = agg.iter().filter(|(k, _)| k.kind() == kind).map(|(_, d)| d.record_ids.len()).sum();
                prop_assert_eq!(n, records.len());
            }
        }
    }

    #[test]
    fn records_on_both_sides_of_midnight_land_on_their_own_days_and_months() {
        let mk = |id: &str, day: &str| R {
            id: id.into(),
            user: "u".into(),
            model: "m".into(),
            day: Day::parse(day).unwrap(),
            c: Counters {
                invocations: 1,
                ..Default::default()
            },
        };
        let records = [mk("a", "2026-10-31"), mk("b", "2026-11-01")];
        let agg = aggregate(&records);
        let months: Vec<_> = agg
            .keys()
            .filter_map(|k| match k {
                AggregateKey::UserMonth { month, .. } => Some(month.to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(months, ["2026-10", "2026-11"]);
        assert_eq!(agg.len(), 2 * 4);
    }
}
