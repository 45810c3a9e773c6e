//! The versioned price table and exact per-record pricing.
//!
//! The table is TOML (`data/prices.toml` is embedded as the default; a file
//! named by `PRICE_TABLE_PATH` replaces it at run time). Rates are strings
//! holding USD per 1M tokens with at most six decimals, so every rate is exact
//! (see [`crate::money`]).
//!
//! Lookup for a record with model id `M` (after ARN and alias resolution),
//! base model `B` (M without its `us.`/`eu.`/`global.`... prefix), route `R`
//! and source Region `G`, at the record's own day `D`:
//! 1. entries for `M` itself, when M has a prefix and its own entry;
//! 2. else entries for `B` with route `R` (a geography id prices as its base
//!    model's regional rate; `global.` needs a `global` entry);
//! 3. among those, the Region `G` entries if any is in force at `D`, else the
//!    default (`*`) entries; the one with the latest `from` not after `D`.
//!
//! A missing entry, or tokens of a class the entry has no rate for, make the
//! record *unpriced*: its tokens count, it adds no cost, and it is flagged.
//! A published rate of `"0"` is a real rate (Nova cache writes cost $0), not
//! a missing one.
//!
//! Two refinements (see `docs/prices.md`):
//! - **Long context.** An entry may carry `long_context_threshold` and
//!   `long_*` rates. A record whose prompt (input + cache read + cache write
//!   tokens) exceeds the threshold is priced wholly at the long-context rates.
//! - **1-hour cache writes.** When the record's output body reports how many
//!   cache-write tokens had the 1-hour TTL ([`TokenCounts::cache_write_1h`]),
//!   those are priced at `cache_write_1h` and the rest at `cache_write`;
//!   otherwise every cache write is priced at `cache_write` (5 minutes).

use std::collections::BTreeMap;

use foldhash::{HashMap, HashMapExt};
use std::fmt;
use std::path::Path;

use serde::Deserialize;
use time::Date;

use crate::money::{AmountError, RatePerMillion, Usd};
use crate::record::TokenCounts;
use crate::resolve::{model_ref, Day, ModelRef, Route};

/// The price table shipped with this build.
pub const DEFAULT_PRICE_TABLE: &str = include_str!("../data/prices.toml");

/// Errors loading or validating a price table.
#[derive(Debug, thiserror::Error)]
pub enum PriceTableError {
    #[error("cannot read price table {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("price table is not valid TOML of the expected form: {0}")]
    Toml(String),
    #[error("price table entry #{index} ({model}): {field}: {source}")]
    Rate {
        index: usize,
        model: String,
        field: &'static str,
        #[source]
        source: AmountError,
    },
    #[error("price table entry #{index} ({model}): {reason}")]
    Entry {
        index: usize,
        model: String,
        reason: String,
    },
    #[error("price table alias `{alias}` points to `{target}`, which has no rate entry")]
    DanglingAlias { alias: String, target: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TableFile {
    meta: Meta,
    #[serde(default)]
    aliases: BTreeMap<String, String>,
    #[serde(default)]
    rate: Vec<RateFile>,
}

/// Provenance of a price table.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    /// Version of the table, e.g. `2026-11-26`.
    pub version: String,
    /// The day the rates were last checked against their sources.
    pub checked: String,
    pub currency: String,
    pub sources: Vec<String>,
    #[serde(default)]
    pub notes: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RateFile {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    models: Vec<String>,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    route: Option<String>,
    from: String,
    #[serde(default)]
    input: Option<String>,
    #[serde(default)]
    output: Option<String>,
    #[serde(default)]
    cache_read: Option<String>,
    #[serde(default)]
    cache_write: Option<String>,
    #[serde(default)]
    cache_write_1h: Option<String>,
    #[serde(default)]
    long_context_threshold: Option<u64>,
    #[serde(default)]
    long_input: Option<String>,
    #[serde(default)]
    long_output: Option<String>,
    #[serde(default)]
    long_cache_read: Option<String>,
    #[serde(default)]
    long_cache_write: Option<String>,
    #[serde(default)]
    long_cache_write_1h: Option<String>,
}

/// Rates of one entry, USD per 1M tokens; `None` where no rate is published.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rates {
    pub input: Option<RatePerMillion>,
    pub output: Option<RatePerMillion>,
    pub cache_read: Option<RatePerMillion>,
    /// Cache writes with the 5-minute TTL (and every cache write whose TTL
    /// the record does not report).
    pub cache_write: Option<RatePerMillion>,
    /// Cache writes with the 1-hour TTL.
    pub cache_write_1h: Option<RatePerMillion>,
    /// Rates for records whose prompt exceeds a threshold.
    pub long_context: Option<LongContext>,
}

/// Long-context rates: a record whose prompt (input + cache read + cache
/// write tokens) exceeds `threshold` tokens is priced wholly at these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LongContext {
    pub threshold: u64,
    pub input: Option<RatePerMillion>,
    pub output: Option<RatePerMillion>,
    pub cache_read: Option<RatePerMillion>,
    pub cache_write: Option<RatePerMillion>,
    pub cache_write_1h: Option<RatePerMillion>,
}

impl Rates {
    /// The five per-class rates that apply to `tokens`: the long-context
    /// ones when the prompt exceeds the threshold, else the standard ones.
    /// The labels name the class for [`UnpricedReason::MissingTokenRate`].
    fn applicable(&self, tokens: &TokenCounts) -> [(&'static str, Option<RatePerMillion>); 5] {
        match &self.long_context {
            Some(lc) if tokens.prompt_tokens() > u128::from(lc.threshold) => [
                ("long_input", lc.input),
                ("long_output", lc.output),
                ("long_cache_read", lc.cache_read),
                ("long_cache_write", lc.cache_write),
                ("long_cache_write_1h", lc.cache_write_1h),
            ],
            _ => [
                ("input", self.input),
                ("output", self.output),
                ("cache_read", self.cache_read),
                ("cache_write", self.cache_write),
                ("cache_write_1h", self.cache_write_1h),
            ],
        }
    }
}

/// One effective-dated rate entry for a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateEntry {
    pub model: String,
    /// `None` is the default for every Region.
    pub region: Option<String>,
    pub route: Route,
    pub from: Date,
    pub rates: Rates,
}

/// A validated, indexed price table.
#[derive(Debug, Clone)]
pub struct PriceTable {
    meta: Meta,
    aliases: BTreeMap<String, String>,
    by_model: HashMap<String, Vec<RateEntry>>,
}

/// Why a record could not be priced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnpricedReason {
    NoModelId,
    UnknownModel,
    NoGlobalRate,
    UnknownApplicationProfile,
    NotPerToken,
    NotYetInForce,
    MissingTokenRate(&'static str),
}

impl UnpricedReason {
    pub fn label(&self) -> &'static str {
        match self {
            UnpricedReason::NoModelId => "no_model_id",
            UnpricedReason::UnknownModel => "unknown_model",
            UnpricedReason::NoGlobalRate => "no_global_rate",
            UnpricedReason::UnknownApplicationProfile => "unknown_application_profile",
            UnpricedReason::NotPerToken => "not_per_token",
            UnpricedReason::NotYetInForce => "no_rate_in_force",
            UnpricedReason::MissingTokenRate(_) => "missing_token_rate",
        }
    }
}

impl fmt::Display for UnpricedReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnpricedReason::MissingTokenRate(class) => {
                write!(f, "missing_token_rate ({class})")
            }
            other => f.write_str(other.label()),
        }
    }
}

/// The result of pricing one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Price {
    Priced(Usd),
    /// Tokens whose cost could not be computed. Records with no tokens at all
    /// (failed calls) are `Priced(0)`: there is nothing to price.
    Unpriced(UnpricedReason),
}

fn parse_date(s: &str) -> Option<Date> {
    Day::parse(s).map(Day::date)
}

impl PriceTable {
    /// The table embedded at build time.
    pub fn builtin() -> PriceTable {
        // The embedded table is validated by a unit test; failing here would
        // mean the build shipped a broken table.
        PriceTable::from_toml(DEFAULT_PRICE_TABLE).expect("embedded price table is valid")
    }

    /// Loads and validates a table file.
    pub fn load(path: &Path) -> Result<PriceTable, PriceTableError> {
        let text = std::fs::read_to_string(path).map_err(|source| PriceTableError::Read {
            path: path.display().to_string(),
            source,
        })?;
        PriceTable::from_toml(&text)
    }

    /// Parses and validates a table.
    pub fn from_toml(text: &str) -> Result<PriceTable, PriceTableError> {
        let file: TableFile =
            toml::from_str(text).map_err(|e| PriceTableError::Toml(e.to_string()))?;
        let mut by_model: HashMap<String, Vec<RateEntry>> = HashMap::new();
        for (i, r) in file.rate.into_iter().enumerate() {
            let index = i + 1;
            let mut models = r.models.clone();
            models.extend(r.model.clone());
            let label = models.join(", ");
            let entry_err = |reason: String| PriceTableError::Entry {
                index,
                model: label.clone(),
                reason,
            };
            if models.is_empty() {
                return Err(entry_err("needs `model` or `models`".into()));
            }
            let from = parse_date(&r.from)
                .ok_or_else(|| entry_err(format!("`from` = `{}` is not YYYY-MM-DD", r.from)))?;
            let route = match r.route.as_deref() {
                None | Some("regional") => Route::Regional,
                Some("global") => Route::Global,
                Some(other) => {
                    return Err(entry_err(format!(
                        "`route` = `{other}`; expected `regional` or `global`"
                    )))
                }
            };
            let region = match r.region.as_deref() {
                None | Some("*") => None,
                Some(g) => Some(g.to_string()),
            };
            let rate = |field: &'static str, v: &Option<String>| {
                v.as_deref()
                    .map(|s| s.parse::<RatePerMillion>())
                    .transpose()
                    .map_err(|source| PriceTableError::Rate {
                        index,
                        model: label.clone(),
                        field,
                        source,
                    })
            };
            let long = [
                rate("long_input", &r.long_input)?,
                rate("long_output", &r.long_output)?,
                rate("long_cache_read", &r.long_cache_read)?,
                rate("long_cache_write", &r.long_cache_write)?,
                rate("long_cache_write_1h", &r.long_cache_write_1h)?,
            ];
            let long_context =
                match (r.long_context_threshold, long) {
                    (None, [None, None, None, None, None]) => None,
                    (None, _) => {
                        return Err(entry_err(
                            "has `long_*` rates but no `long_context_threshold`".into(),
                        ))
                    }
                    (Some(0), _) => {
                        return Err(entry_err(
                            "`long_context_threshold` must be a positive number of tokens".into(),
                        ))
                    }
                    (Some(_), [None, None, ..]) => return Err(entry_err(
                        "has `long_context_threshold` but neither `long_input` nor `long_output`"
                            .into(),
                    )),
                    (Some(threshold), [input, output, cache_read, cache_write, cache_write_1h]) => {
                        Some(LongContext {
                            threshold,
                            input,
                            output,
                            cache_read,
                            cache_write,
                            cache_write_1h,
                        })
                    }
                };
            let rates = Rates {
                input: rate("input", &r.input)?,
                output: rate("output", &r.output)?,
                cache_read: rate("cache_read", &r.cache_read)?,
                cache_write: rate("cache_write", &r.cache_write)?,
                cache_write_1h: rate("cache_write_1h", &r.cache_write_1h)?,
                long_context,
            };
            if rates.input.is_none() && rates.output.is_none() {
                return Err(entry_err("has neither `input` nor `output`".into()));
            }
            for model in models {
                let entries = by_model.entry(model.clone()).or_default();
                if entries
                    .iter()
                    .any(|e| e.region == region && e.route == route && e.from == from)
                {
                    return Err(entry_err(format!(
                        "duplicate entry for {model} (region {}, route {route}, from {})",
                        region.as_deref().unwrap_or("*"),
                        r.from
                    )));
                }
                entries.push(RateEntry {
                    model,
                    region: region.clone(),
                    route,
                    from,
                    rates,
                });
            }
        }
        for entries in by_model.values_mut() {
            entries.sort_by_key(|e| e.from);
        }
        let table = PriceTable {
            meta: file.meta,
            aliases: file.aliases,
            by_model,
        };
        for (alias, target) in &table.aliases {
            let known = match model_ref(target) {
                ModelRef::Foundation { id, base, .. } => {
                    table.by_model.contains_key(id) || table.by_model.contains_key(base)
                }
                _ => false,
            };
            if !known {
                return Err(PriceTableError::DanglingAlias {
                    alias: alias.clone(),
                    target: target.clone(),
                });
            }
        }
        Ok(table)
    }

    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    pub fn aliases(&self) -> &BTreeMap<String, String> {
        &self.aliases
    }

    /// Every entry, sorted by model, route, region and date.
    pub fn entries(&self) -> Vec<&RateEntry> {
        let mut all: Vec<&RateEntry> = self.by_model.values().flatten().collect();
        all.sort_by(|a, b| {
            (&a.model, a.route, &a.region, a.from).cmp(&(&b.model, b.route, &b.region, b.from))
        });
        all
    }

    /// The entry of exactly `model` (no prefix or alias resolution) for
    /// `route` that prices `region` on `date`: the Region's own entry if one
    /// is in force, else the default one.
    pub fn entry_in_force(
        &self,
        model: &str,
        route: Route,
        region: &str,
        date: Date,
    ) -> Option<&RateEntry> {
        let entries = self.by_model.get(model)?;
        pick_entry(
            entries.iter().filter(|e| e.route == route),
            Some(region),
            date,
        )
    }

    /// Whether the table has any entry for exactly this model id.
    pub fn has_model(&self, model: &str) -> bool {
        self.by_model.contains_key(model)
    }

    /// Finds the rates in force for a model id (as logged), Region and day.
    pub fn rates_for(
        &self,
        model_id: &str,
        region: Option<&str>,
        day: Day,
    ) -> Result<&Rates, UnpricedReason> {
        let (id, base, route) = match model_ref(model_id) {
            ModelRef::Foundation { id, base, route } => (id, base, route),
            ModelRef::ApplicationProfile(arn) => {
                let target = self
                    .aliases
                    .get(arn)
                    .ok_or(UnpricedReason::UnknownApplicationProfile)?;
                match model_ref(target) {
                    ModelRef::Foundation { id, base, route } => (id, base, route),
                    _ => return Err(UnpricedReason::UnknownApplicationProfile),
                }
            }
            ModelRef::NotPerToken(_) => return Err(UnpricedReason::NotPerToken),
        };
        let date = day.date();
        if id != base {
            if let Some(entries) = self.by_model.get(id) {
                return pick(entries.iter(), region, date);
            }
        }
        let entries = self
            .by_model
            .get(base)
            .ok_or(UnpricedReason::UnknownModel)?;
        let mut candidates = entries.iter().filter(|e| e.route == route).peekable();
        if candidates.peek().is_none() {
            return Err(match route {
                Route::Global => UnpricedReason::NoGlobalRate,
                Route::Regional => UnpricedReason::UnknownModel,
            });
        }
        pick(candidates, region, date)
    }

    /// Prices one record's tokens exactly.
    pub fn price(
        &self,
        model_id: Option<&str>,
        region: Option<&str>,
        day: Day,
        tokens: &TokenCounts,
    ) -> Price {
        if tokens.is_zero() {
            return Price::Priced(Usd::ZERO);
        }
        let Some(model_id) = model_id else {
            return Price::Unpriced(UnpricedReason::NoModelId);
        };
        cost_at(self.rates_for(model_id, region, day), tokens)
    }

    /// [`PriceTable::price`] with rate lookups memoised in `cache` (a batch
    /// has few distinct model, Region and day combinations).
    pub fn price_cached<'t>(
        &'t self,
        cache: &mut RateCache<'t>,
        model_id: Option<&str>,
        region: Option<&str>,
        day: Day,
        tokens: &TokenCounts,
    ) -> Price {
        if tokens.is_zero() {
            return Price::Priced(Usd::ZERO);
        }
        let Some(model_id) = model_id else {
            return Price::Unpriced(UnpricedReason::NoModelId);
        };
        let per_model = match cache.entries.get_mut(model_id) {
            Some(v) => v,
            None => cache.entries.entry(model_id.to_string()).or_default(),
        };
        let found = per_model
            .iter()
            .find(|(g, d, _)| g.as_deref() == region && *d == day)
            .map(|(_, _, r)| r.clone());
        let rates = match found {
            Some(r) => r,
            None => {
                let r = self.rates_for(model_id, region, day);
                per_model.push((region.map(str::to_string), day, r.clone()));
                r
            }
        };
        cost_at(rates, tokens)
    }
}

/// Memoised rate lookups for one batch.
#[derive(Debug, Default)]
pub struct RateCache<'t> {
    #[allow(clippy::type_complexity)]
    entries: HashMap<String, Vec<(Option<String>, Day, Result<&'t Rates, UnpricedReason>)>>,
}

/// The exact cost of `tokens` at `rates`, or why it cannot be computed.
fn cost_at(rates: Result<&Rates, UnpricedReason>, tokens: &TokenCounts) -> Price {
    let rates = match rates {
        Ok(r) => r,
        Err(reason) => return Price::Unpriced(reason),
    };
    // The 1-hour part of the cache writes, as reported by the body; a report
    // larger than the logged count is capped (all writes at the 1-hour rate).
    let write_1h = tokens.cache_write_1h.min(tokens.cache_write);
    let counts = [
        tokens.input,
        tokens.output,
        tokens.cache_read,
        tokens.cache_write - write_1h,
        write_1h,
    ];
    let mut total = Usd::ZERO;
    for (count, (class, rate)) in counts.into_iter().zip(rates.applicable(tokens)) {
        if count == 0 {
            continue;
        }
        match rate {
            Some(rate) => total = total.saturating_add(rate.cost(count)),
            None => return Price::Unpriced(UnpricedReason::MissingTokenRate(class)),
        }
    }
    Price::Priced(total)
}

/// Region-specific entries win when one is in force; else the default.
fn pick<'a>(
    entries: impl Iterator<Item = &'a RateEntry> + Clone,
    region: Option<&str>,
    date: Date,
) -> Result<&'a Rates, UnpricedReason> {
    pick_entry(entries, region, date)
        .map(|e| &e.rates)
        .ok_or(UnpricedReason::NotYetInForce)
}

fn pick_entry<'a>(
    entries: impl Iterator<Item = &'a RateEntry> + Clone,
    region: Option<&str>,
    date: Date,
) -> Option<&'a RateEntry> {
    let latest = |want: Option<&str>| {
        entries
            .clone()
            .filter(|e| e.region.as_deref() == want && e.from <= date)
            .max_by_key(|e| e.from)
    };
    region
        .and_then(|g| latest(Some(g)))
        .or_else(|| latest(None))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> Day {
        Day::parse(s).unwrap()
    }

    fn tokens(input: u64, output: u64, cache_read: u64, cache_write: u64) -> TokenCounts {
        TokenCounts {
            input,
            output,
            cache_read,
            cache_write,
            cache_write_1h: 0,
        }
    }

    const TABLE: &str = r#"
[meta]
version = "test"
checked = "2026-11-01"
currency = "USD"
sources = ["unit test"]

[aliases]
"arn:aws:bedrock:us-east-1:111111111111:application-inference-profile/app1" = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"

[[rate]]
model = "anthropic.claude-sonnet-4-5-20250929-v1:0"
from = "2025-09-29"
input = "3.30"
output = "16.50"
cache_write = "4.125"
cache_read = "0.33"

[[rate]]
model = "anthropic.claude-sonnet-4-5-20250929-v1:0"
route = "global"
from = "2025-09-29"
input = "3.00"
output = "15.00"
cache_write = "3.75"
cache_read = "0.30"

[[rate]]
models = ["amazon.nova-micro-v1:0"]
from = "2024-12-01"
input = "0.035"
output = "0.14"
cache_read = "0.00875"

[[rate]]
model = "amazon.nova-micro-v1:0"
region = "ap-northeast-1"
from = "2024-12-01"
input = "0.042"
output = "0.168"

[[rate]]
model = "amazon.nova-micro-v1:0"
from = "2026-06-01"
input = "0.030"
output = "0.12"
cache_read = "0.0075"

[[rate]]
model = "eu.special-v1"
from = "2025-01-01"
input = "9"
output = "9"

[[rate]]
model = "special-v1"
from = "2025-01-01"
input = "1"
output = "1"
"#;

    fn table() -> PriceTable {
        PriceTable::from_toml(TABLE).unwrap()
    }

    #[test]
    fn records_price_by_route_region_and_date() {
        let t = table();
        let m = 1_000_000;
        let cases: &[(&str, Option<&str>, &str, TokenCounts, &str)] = &[
            // geography profile prices as the base model's regional rate
            (
                "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
                Some("us-east-1"),
                "2026-01-01",
                tokens(m, m, m, m),
                "24.255",
            ),
            (
                "anthropic.claude-sonnet-4-5-20250929-v1:0",
                Some("us-east-1"),
                "2026-01-01",
                tokens(m, 0, 0, 0),
                "3.3",
            ),
            // global route has its own rate
            (
                "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
                Some("us-east-1"),
                "2026-01-01",
                tokens(m, m, 0, 0),
                "18",
            ),
            // application profile through its alias
            (
                "arn:aws:bedrock:us-east-1:111111111111:application-inference-profile/app1",
                Some("us-east-1"),
                "2026-01-01",
                tokens(m, 0, 0, 0),
                "3.3",
            ),
            // default-region rate, exact sub-cent arithmetic
            (
                "amazon.nova-micro-v1:0",
                Some("us-east-1"),
                "2026-01-01",
                tokens(1, 1, 1, 0),
                "0.00000018375",
            ),
            // region-specific rate
            (
                "apac.amazon.nova-micro-v1:0",
                Some("ap-northeast-1"),
                "2026-01-01",
                tokens(m, m, 0, 0),
                "0.21",
            ),
            // later effective date applies to later records only (default region)
            (
                "amazon.nova-micro-v1:0",
                Some("us-east-1"),
                "2026-06-01",
                tokens(m, m, 0, 0),
                "0.15",
            ),
            (
                "amazon.nova-micro-v1:0",
                Some("us-east-1"),
                "2026-05-31",
                tokens(m, m, 0, 0),
                "0.175",
            ),
            // a prefixed id with its own entry uses it
            ("eu.special-v1", None, "2026-01-01", tokens(m, 0, 0, 0), "9"),
            ("us.special-v1", None, "2026-01-01", tokens(m, 0, 0, 0), "1"),
        ];
        for (model, region, d, tok, cost) in cases {
            let price = t.price(Some(model), *region, day(d), tok);
            assert_eq!(price, Price::Priced(cost.parse().unwrap()), "{model} {d}");
        }
    }

    #[test]
    fn missing_rates_are_unpriced_never_zero() {
        let t = table();
        let cases: &[(Option<&str>, &str, TokenCounts, UnpricedReason)] = &[
            (
                Some("acme.unknown-v1"),
                "2026-01-01",
                tokens(10, 10, 0, 0),
                UnpricedReason::UnknownModel,
            ),
            (
                None,
                "2026-01-01",
                tokens(10, 0, 0, 0),
                UnpricedReason::NoModelId,
            ),
            (
                Some("global.amazon.nova-micro-v1:0"),
                "2026-01-01",
                tokens(10, 0, 0, 0),
                UnpricedReason::NoGlobalRate,
            ),
            (
                Some("arn:aws:bedrock:us-east-1:111111111111:application-inference-profile/zzz"),
                "2026-01-01",
                tokens(1, 0, 0, 0),
                UnpricedReason::UnknownApplicationProfile,
            ),
            (
                Some("arn:aws:bedrock:us-east-1:111111111111:provisioned-model/p"),
                "2026-01-01",
                tokens(1, 0, 0, 0),
                UnpricedReason::NotPerToken,
            ),
            (
                Some("amazon.nova-micro-v1:0"),
                "2024-11-30",
                tokens(1, 0, 0, 0),
                UnpricedReason::NotYetInForce,
            ),
            (
                Some("amazon.nova-micro-v1:0"),
                "2026-01-01",
                tokens(1, 0, 0, 5),
                UnpricedReason::MissingTokenRate("cache_write"),
            ),
        ];
        for (model, d, tok, reason) in cases {
            assert_eq!(
                t.price(*model, Some("us-east-1"), day(d), tok),
                Price::Unpriced(reason.clone()),
                "{model:?}"
            );
        }
    }

    #[test]
    fn records_without_tokens_cost_nothing_and_are_not_unpriced() {
        let t = table();
        assert_eq!(
            t.price(
                Some("acme.unknown-v1"),
                None,
                day("2026-01-01"),
                &TokenCounts::default()
            ),
            Price::Priced(Usd::ZERO)
        );
    }

    #[test]
    fn the_embedded_table_is_valid_and_covers_the_reference_models() {
        let t = PriceTable::builtin();
        assert!(!t.meta().sources.is_empty());
        for model in [
            "anthropic.claude-haiku-4-5-20251001-v1:0",
            "anthropic.claude-sonnet-4-5-20250929-v1:0",
            "anthropic.claude-sonnet-4-6",
            "anthropic.claude-sonnet-4-20250514-v1:0",
            "anthropic.claude-opus-4-5-20251101-v1:0",
            "anthropic.claude-opus-4-1-20250805-v1:0",
            "anthropic.claude-3-7-sonnet-20250219-v1:0",
            "anthropic.claude-3-5-haiku-20241022-v1:0",
            "anthropic.claude-3-haiku-20240307-v1:0",
            "amazon.nova-micro-v1:0",
            "amazon.nova-lite-v1:0",
            "amazon.nova-pro-v1:0",
            "amazon.nova-premier-v1:0",
            "meta.llama3-3-70b-instruct-v1:0",
            "meta.llama3-1-8b-instruct-v1:0",
            "meta.llama4-maverick-17b-instruct-v1:0",
            "mistral.mistral-large-2402-v1:0",
            "deepseek.r1-v1:0",
            "openai.gpt-oss-120b-1:0",
            "amazon.titan-embed-text-v2:0",
            "amazon.titan-text-express-v1",
        ] {
            assert!(
                t.rates_for(model, Some("us-east-1"), day("2026-11-01"))
                    .is_ok(),
                "{model} has no rate"
            );
        }
        let haiku_global = t
            .rates_for(
                "global.anthropic.claude-haiku-4-5-20251001-v1:0",
                Some("us-east-1"),
                day("2026-11-01"),
            )
            .unwrap();
        assert_eq!(haiku_global.input, Some("1.00".parse().unwrap()));
        let micro_tokyo = t
            .rates_for(
                "apac.amazon.nova-micro-v1:0",
                Some("ap-northeast-1"),
                day("2026-11-01"),
            )
            .unwrap();
        assert_eq!(micro_tokyo.input, Some("0.042".parse().unwrap()));
    }

    const REFINED: &str = r#"
[meta]
version = "test"
checked = "2026-11-01"
currency = "USD"
sources = ["unit test"]

[[rate]]
model = "anthropic.claude-sonnet-4-5-20250929-v1:0"
from = "2025-09-29"
input = "3.30"
output = "16.50"
cache_read = "0.33"
cache_write = "4.125"
cache_write_1h = "6.60"
long_context_threshold = 200000
long_input = "6.60"
long_output = "24.75"
long_cache_read = "0.66"
long_cache_write = "8.25"

[[rate]]
model = "amazon.nova-micro-v1:0"
from = "2024-12-03"
input = "0.035"
output = "0.14"
cache_read = "0.00875"
cache_write = "0"
"#;

    #[test]
    fn a_prompt_above_the_threshold_is_priced_wholly_at_the_long_context_rates() {
        let t = PriceTable::from_toml(REFINED).unwrap();
        let sonnet = Some("us.anthropic.claude-sonnet-4-5-20250929-v1:0");
        let d = day("2026-01-01");
        let price = |tok: TokenCounts| t.price(sonnet, Some("us-east-1"), d, &tok);
        // Exactly at the threshold: standard rates (200000 x 3.30 + 1000 x 16.50) / 1M.
        assert_eq!(
            price(tokens(200_000, 1_000, 0, 0)),
            Price::Priced("0.6765".parse().unwrap())
        );
        // One token above: every class at the long rates (200001 x 6.60 + 1000 x 24.75) / 1M.
        assert_eq!(
            price(tokens(200_001, 1_000, 0, 0)),
            Price::Priced("1.3447566".parse().unwrap())
        );
        // Cache tokens count towards the prompt: 100000 + 60000 + 40001 > 200000.
        assert_eq!(
            price(tokens(100_000, 0, 60_000, 40_001)),
            Price::Priced(
                // 100000 x 6.60 + 60000 x 0.66 + 40001 x 8.25, per 1M
                "1.02960825".parse().unwrap()
            )
        );
        // A long-context record needing a class with no long rate is unpriced.
        let mut tok = tokens(300_000, 0, 0, 10);
        tok.cache_write_1h = 10;
        assert_eq!(
            price(tok),
            Price::Unpriced(UnpricedReason::MissingTokenRate("long_cache_write_1h"))
        );
    }

    #[test]
    fn one_hour_cache_writes_take_their_own_rate_when_the_split_is_known() {
        let t = PriceTable::from_toml(REFINED).unwrap();
        let d = day("2026-01-01");
        let sonnet = Some("anthropic.claude-sonnet-4-5-20250929-v1:0");
        // Below the long-context threshold throughout.
        let mut tok = tokens(0, 0, 0, 100_000);
        // No split reported: every write at the 5-minute rate.
        assert_eq!(
            t.price(sonnet, None, d, &tok),
            Price::Priced("0.4125".parse().unwrap())
        );
        // 25k of the 100k at the 1-hour rate: 75000 x 4.125 + 25000 x 6.60.
        tok.cache_write_1h = 25_000;
        assert_eq!(
            t.price(sonnet, None, d, &tok),
            Price::Priced("0.474375".parse().unwrap())
        );
        // A reported 1-hour count above the logged total is capped at it.
        tok.cache_write_1h = 5_000_000;
        assert_eq!(
            t.price(sonnet, None, d, &tok),
            Price::Priced("0.66".parse().unwrap())
        );
        // A model without a 1-hour rate: such writes are unpriced, never at
        // the cheaper 5-minute rate.
        let nova = Some("amazon.nova-micro-v1:0");
        let mut tok = tokens(0, 0, 0, 100);
        tok.cache_write_1h = 1;
        assert_eq!(
            t.price(nova, None, d, &tok),
            Price::Unpriced(UnpricedReason::MissingTokenRate("cache_write_1h"))
        );
    }

    #[test]
    fn a_published_zero_rate_prices_at_zero_instead_of_flagging() {
        let t = PriceTable::from_toml(REFINED).unwrap();
        let price = t.price(
            Some("amazon.nova-micro-v1:0"),
            Some("us-east-1"),
            day("2026-01-01"),
            &tokens(1_000_000, 0, 0, 1_000_000),
        );
        assert_eq!(price, Price::Priced("0.035".parse().unwrap()));
    }

    #[test]
    fn invalid_tables_are_rejected_with_the_entry_named() {
        let base = "[meta]\nversion='x'\nchecked='2026-01-01'\ncurrency='USD'\nsources=['s']\n";
        let cases = [
            ("[[rate]]\nmodel='m'\nfrom='2026-01-01'\ninput='0.0000001'\n", "decimal places"),
            ("[[rate]]\nmodel='m'\nfrom='2026-01-01'\ninput='1.5e3'\n", "not a plain"),
            ("[[rate]]\nmodel='m'\nfrom='Jan 1'\ninput='1'\n", "YYYY-MM-DD"),
            ("[[rate]]\nmodel='m'\nfrom='2026-01-01'\n", "neither"),
            ("[[rate]]\nmodel='m'\nroute='galactic'\nfrom='2026-01-01'\ninput='1'\n", "route"),
            ("[[rate]]\nmodel='m'\nfrom='2026-01-01'\ninput='1'\n[[rate]]\nmodel='m'\nfrom='2026-01-01'\ninput='2'\n", "duplicate"),
            ("[[rate]]\nmodel='m'\nfrom='2026-01-01'\ninput='1'\ncolour='red'\n", "unknown field"),
            ("[aliases]\n'arn:x' = 'nope'\n", "no rate entry"),
            ("[[rate]]\nmodel='m'\nfrom='2026-01-01'\ninput='1'\nlong_input='2'\n", "no `long_context_threshold`"),
            ("[[rate]]\nmodel='m'\nfrom='2026-01-01'\ninput='1'\nlong_context_threshold=0\nlong_input='2'\n", "positive"),
            ("[[rate]]\nmodel='m'\nfrom='2026-01-01'\ninput='1'\nlong_context_threshold=200000\n", "neither `long_input`"),
        ];
        for (body, needle) in cases {
            let err = PriceTable::from_toml(&format!("{base}{body}"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{body}: {err}");
        }
    }
}
