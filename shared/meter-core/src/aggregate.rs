//! Folding metered records into per-key deltas.
//!
//! Every record contributes to exactly four aggregates: its (user, model,
//! day), (user, day), (user, month) and (model, day); and, per configured
//! attribution tag, to its (tag, value, model, day) and (tag, value, month). Aggregation is a sum of
//! counters, so it is independent of record order and conserves every counter
//! (property-tested below).

use std::collections::BTreeMap;
use std::sync::Arc;

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
    /// One value of an attribution tag (`ATTRIBUTION_TAGS`) on one model
    /// and day.
    TagModelDay {
        tag: &'a str,
        value: &'a str,
        model: &'a str,
        day: Day,
    },
    /// One value of an attribution tag over a month.
    TagMonth {
        tag: &'a str,
        value: &'a str,
        month: Month,
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
            AggregateKey::TagModelDay { .. } => "tag_model_day",
            AggregateKey::TagMonth { .. } => "tag_month",
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
    /// The record's attribution tags as (tag key, value), one per
    /// configured key (the value `untagged` when the record lacks it).
    fn tags(&self) -> &[Tag] {
        &[]
    }
}

/// An attribution tag of a record: (tag key, value).
pub type Tag = (Arc<str>, Arc<str>);

/// The value counted when a record lacks a configured tag key.
pub const UNTAGGED: &str = "untagged";

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

/// The tag keys a record contributes to: two per attribution tag.
pub fn tag_keys_of<C: Contribution>(r: &C) -> impl Iterator<Item = AggregateKey<'_>> {
    let (model, day) = (r.model(), r.day());
    r.tags().iter().flat_map(move |(tag, value)| {
        let (tag, value) = (&**tag, &**value);
        [
            AggregateKey::TagModelDay {
                tag,
                value,
                model,
                day,
            },
            AggregateKey::TagMonth {
                tag,
                value,
                month: day.month(),
            },
        ]
    })
}

/// Folds records into one delta per aggregate key, in key order. Sums each
/// record into its (user, model, day) delta in a hash map (records far
/// outnumber keys: one hash per record), derives the three rollups from those
/// deltas, and sorts once at the end.
pub fn aggregate<'a, C: Contribution + 'a>(
    records: impl IntoIterator<Item = &'a C>,
) -> BTreeMap<AggregateKey<'a>, Delta<'a>> {
    let mut by_user_model_day: HashMap<(&'a str, &'a str, Day), Delta<'a>> = HashMap::new();
    let mut by_tag_model_day: HashMap<(&'a str, &'a str, &'a str, Day), Delta<'a>> = HashMap::new();
    for r in records {
        let d = by_user_model_day
            .entry((r.user(), r.model(), r.day()))
            .or_default();
        d.counters.add(r.counters());
        d.record_ids.push(r.record_id());
        for (tag, value) in r.tags() {
            let d = by_tag_model_day
                .entry((&**tag, &**value, r.model(), r.day()))
                .or_default();
            d.counters.add(r.counters());
            d.record_ids.push(r.record_id());
        }
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
    for (&(tag, value, _, day), d) in &by_tag_model_day {
        let r = rollups
            .entry(AggregateKey::TagMonth {
                tag,
                value,
                month: day.month(),
            })
            .or_default();
        r.counters.add(&d.counters);
        r.record_ids.extend_from_slice(&d.record_ids);
    }
    by_user_model_day
        .into_iter()
        .map(|((user, model, day), d)| (AggregateKey::UserModelDay { user, model, day }, d))
        .chain(
            by_tag_model_day
                .into_iter()
                .map(|((tag, value, model, day), d)| {
                    (
                        AggregateKey::TagModelDay {
                            tag,
                            value,
                            model,
                            day,
                        },
                        d,
                    )
                }),
        )
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
        /// The day as generated (`YYYY-MM-DD`), for the independent sums.
        day_text: &'static str,
        c: Counters,
        /// The generated values as plain integers, kept apart from `c`.
        plain: Plain,
        /// Attribution tags as the meter builds them.
        tags: Vec<Tag>,
        /// The same tags as plain strings, for the independent sums.
        plain_tags: Vec<(String, String)>,
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
        fn tags(&self) -> &[Tag] {
            &self.tags
        }
    }

    /// Counters as plain `u128`s, cost in integer pico-dollars: summed with
    /// `+`, never with [`Counters::add`].
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    struct Plain {
        invocations: u128,
        errors: u128,
        input_tokens: u128,
        output_tokens: u128,
        cache_read_input_tokens: u128,
        cache_write_input_tokens: u128,
        unpriced_invocations: u128,
        cost_picos: u128,
    }

    impl Plain {
        fn plus(self, o: Plain) -> Plain {
            Plain {
                invocations: self.invocations + o.invocations,
                errors: self.errors + o.errors,
                input_tokens: self.input_tokens + o.input_tokens,
                output_tokens: self.output_tokens + o.output_tokens,
                cache_read_input_tokens: self.cache_read_input_tokens + o.cache_read_input_tokens,
                cache_write_input_tokens: self.cache_write_input_tokens
                    + o.cache_write_input_tokens,
                unpriced_invocations: self.unpriced_invocations + o.unpriced_invocations,
                cost_picos: self.cost_picos + o.cost_picos,
            }
        }

        /// What the aggregation produced, read field by field.
        fn of(c: &Counters) -> Plain {
            Plain {
                invocations: c.invocations,
                errors: c.errors,
                input_tokens: c.input_tokens,
                output_tokens: c.output_tokens,
                cache_read_input_tokens: c.cache_read_input_tokens,
                cache_write_input_tokens: c.cache_write_input_tokens,
                unpriced_invocations: c.unpriced_invocations,
                cost_picos: c.cost_usd.picos(),
            }
        }
    }

    const DAYS: [&str; 3] = ["2026-10-31", "2026-11-01", "2026-11-02"];

    fn arb_record() -> impl Strategy<Value = R> {
        (
            0u32..1000,
            prop::sample::select(vec!["alice", "bob", "carol#1", "d%2"]),
            prop::sample::select(vec!["m1", "m2", "m3"]),
            prop::sample::select(DAYS.to_vec()),
            (
                0u64..2,
                any::<u32>(),
                any::<u32>(),
                any::<u16>(),
                any::<u16>(),
                0u64..2,
            ),
            // Rates in micro-dollars per million tokens (= pico-dollars per
            // token), up to $75 per million.
            (0u64..=75_000_000, 0u64..=75_000_000),
            (
                prop::sample::select(vec!["payments", "s#~%<b>", UNTAGGED]),
                prop::sample::select(vec!["chat", "search"]),
            ),
        )
            .prop_map(
                |(
                    id,
                    user,
                    model,
                    day,
                    (err, i, o, cr, cw, unp),
                    (rate_in, rate_out),
                    (team, feature),
                )| {
                    let plain_tags = vec![
                        ("team".to_string(), team.to_string()),
                        ("feature".to_string(), feature.to_string()),
                    ];
                    let plain = Plain {
                        invocations: 1,
                        errors: err.into(),
                        input_tokens: i.into(),
                        output_tokens: o.into(),
                        cache_read_input_tokens: cr.into(),
                        cache_write_input_tokens: cw.into(),
                        unpriced_invocations: unp.into(),
                        cost_picos: u128::from(i) * u128::from(rate_in)
                            + u128::from(o) * u128::from(rate_out),
                    };
                    R {
                        id: format!("r{id}"),
                        user: user.to_string(),
                        model: model.to_string(),
                        day: Day::parse(day).unwrap(),
                        day_text: day,
                        c: Counters {
                            invocations: 1,
                            errors: err.into(),
                            input_tokens: i.into(),
                            output_tokens: o.into(),
                            cache_read_input_tokens: cr.into(),
                            cache_write_input_tokens: cw.into(),
                            unpriced_invocations: unp.into(),
                            cost_usd: Usd::from_picos(
                                u128::from(i) * u128::from(rate_in)
                                    + u128::from(o) * u128::from(rate_out),
                            ),
                        },
                        plain,
                        tags: plain_tags
                            .iter()
                            .map(|(t, v)| (Arc::from(t.as_str()), Arc::from(v.as_str())))
                            .collect(),
                        plain_tags,
                    }
                },
            )
    }

    /// An aggregate named by plain strings: (kind, user, model, period).
    type PlainKey = (&'static str, String, String, String);

    /// Each aggregate's expected sum and record ids, from the generated
    /// values alone: `+` on integers, the month as the first 7 characters of
    /// the generated day.
    fn plain_aggregates(records: &[R]) -> BTreeMap<PlainKey, (Plain, Vec<String>)> {
        let mut out: BTreeMap<PlainKey, (Plain, Vec<String>)> = BTreeMap::new();
        for r in records {
            let (user, model, day) = (r.user.clone(), r.model.clone(), r.day_text.to_string());
            let month = day[..7].to_string();
            for key in [
                ("user_model_day", user.clone(), model.clone(), day.clone()),
                ("user_day", user.clone(), String::new(), day.clone()),
                ("user_month", user, String::new(), month.clone()),
                ("model_day", String::new(), model.clone(), day.clone()),
            ] {
                let e = out.entry(key).or_default();
                e.0 = e.0.plus(r.plain);
                e.1.push(r.id.clone());
            }
            for (tag, value) in &r.plain_tags {
                let who = format!("{tag}={value}");
                for key in [
                    ("tag_model_day", who.clone(), model.clone(), day.clone()),
                    ("tag_month", who, String::new(), month.clone()),
                ] {
                    let e = out.entry(key).or_default();
                    e.0 = e.0.plus(r.plain);
                    e.1.push(r.id.clone());
                }
            }
        }
        for (_, ids) in out.values_mut() {
            ids.sort();
        }
        out
    }

    /// The aggregation's output in the same plain shape.
    fn as_plain(agg: &BTreeMap<AggregateKey, Delta>) -> BTreeMap<PlainKey, (Plain, Vec<String>)> {
        agg.iter()
            .map(|(k, d)| {
                let key = match *k {
                    AggregateKey::UserModelDay { user, model, day } => {
                        ("user_model_day", user.into(), model.into(), day.to_string())
                    }
                    AggregateKey::UserDay { user, day } => {
                        ("user_day", user.into(), String::new(), day.to_string())
                    }
                    AggregateKey::UserMonth { user, month } => {
                        ("user_month", user.into(), String::new(), month.to_string())
                    }
                    AggregateKey::ModelDay { model, day } => {
                        ("model_day", String::new(), model.into(), day.to_string())
                    }
                    AggregateKey::TagModelDay {
                        tag,
                        value,
                        model,
                        day,
                    } => (
                        "tag_model_day",
                        format!("{tag}={value}"),
                        model.into(),
                        day.to_string(),
                    ),
                    AggregateKey::TagMonth { tag, value, month } => (
                        "tag_month",
                        format!("{tag}={value}"),
                        String::new(),
                        month.to_string(),
                    ),
                };
                let mut ids: Vec<String> = d.record_ids.iter().map(|s| s.to_string()).collect();
                ids.sort();
                (key, (Plain::of(&d.counters), ids))
            })
            .collect()
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
        fn every_aggregate_holds_the_plain_sum_of_exactly_its_records(
            records in prop::collection::vec(arb_record(), 0..60),
        ) {
            let got = as_plain(&aggregate(&records));
            let expected = plain_aggregates(&records);
            prop_assert_eq!(got.len(), expected.len());
            for (key, want) in &expected {
                prop_assert_eq!(got.get(key), Some(want), "{:?}", key);
            }
        }

        #[test]
        fn every_rollup_conserves_every_counter(records in prop::collection::vec(arb_record(), 0..60)) {
            let total = records.iter().fold(Plain::default(), |t, r| t.plus(r.plain));
            prop_assert_eq!(total.invocations, records.len() as u128);
            let got = as_plain(&aggregate(&records));
            for kind in ["user_model_day", "user_day", "user_month", "model_day"] {
                let of_kind = got
                    .iter()
                    .filter(|(k, _)| k.0 == kind)
                    .fold(Plain::default(), |t, (_, (p, _))| t.plus(*p));
                prop_assert_eq!(of_kind, total, "{}", kind);
                // every record is covered exactly once per kind
                let n: usize = got.iter().filter(|(k, _)| k.0 == kind).map(|(_, (_, ids))| ids.len()).sum();
                prop_assert_eq!(n, records.len());
            }
            // Per tag key, its values' totals add up to the organisation's.
            for kind in ["tag_model_day", "tag_month"] {
                for tag in ["team=", "feature="] {
                    let of_tag: Vec<_> = got
                        .iter()
                        .filter(|(k, _)| k.0 == kind && k.1.starts_with(tag))
                        .collect();
                    let sum = of_tag.iter().fold(Plain::default(), |t, (_, (p, _))| t.plus(*p));
                    prop_assert_eq!(sum, total, "{} {}", kind, tag);
                    let n: usize = of_tag.iter().map(|(_, (_, ids))| ids.len()).sum();
                    prop_assert_eq!(n, records.len());
                }
            }
        }
    }

    #[test]
    fn two_records_of_one_user_model_and_day_sum_into_every_aggregate_they_share() {
        // Hand-computed: 3 + 4 input tokens, 1 error, 0.5 + 0.25 USD.
        let mk = |id: &str, input: u128, errors: u128, picos: u128| R {
            id: id.into(),
            user: "u".into(),
            model: "m".into(),
            day: Day::parse("2026-11-30").unwrap(),
            day_text: "2026-11-30",
            c: Counters {
                invocations: 1,
                errors,
                input_tokens: input,
                cost_usd: Usd::from_picos(picos),
                ..Default::default()
            },
            plain: Plain::default(),
            tags: Vec::new(),
            plain_tags: Vec::new(),
        };
        let records = [
            mk("a", 3, 1, 500_000_000_000),
            mk("b", 4, 0, 250_000_000_000),
        ];
        let agg = aggregate(&records);
        assert_eq!(agg.len(), 4);
        for (k, d) in &agg {
            assert_eq!(d.counters.invocations, 2, "{k:?}");
            assert_eq!(d.counters.errors, 1, "{k:?}");
            assert_eq!(d.counters.input_tokens, 7, "{k:?}");
            assert_eq!(d.counters.cost_usd.to_string(), "0.75", "{k:?}");
            assert_eq!(d.record_ids.len(), 2, "{k:?}");
        }
    }

    #[test]
    fn records_on_both_sides_of_midnight_land_on_their_own_days_and_months() {
        let mk = |id: &str, day: &str| R {
            id: id.into(),
            user: "u".into(),
            model: "m".into(),
            day: Day::parse(day).unwrap(),
            day_text: "unused",
            c: Counters {
                invocations: 1,
                ..Default::default()
            },
            plain: Plain::default(),
            tags: Vec::new(),
            plain_tags: Vec::new(),
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
