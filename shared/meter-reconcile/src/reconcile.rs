//! The join: one row per (UTC day, model), its status, its hints, the exit
//! code.
//!
//! Both sides are aggregated to the grain first (never a line joined to a
//! log row: that repeats a cost once per match). Usage lines are compared;
//! credits, refunds, taxes and discounts are summed apart (`adjustments`).
//! Tokens must match exactly per class (cache writes: 5-minute plus 1-hour
//! on the bill against the meter's cache writes); dollars within
//! `max(tolerance_usd, tolerance_pct × billed)`.
//!
//! | status | when |
//! |---|---|
//! | `OK` | tokens equal, dollars within tolerance |
//! | `UNDER` | the meter is short of the bill |
//! | `OVER` | the meter exceeds the bill |
//! | `BILL_ONLY` | bill lines, no meter row |
//! | `METER_ONLY` | a meter row, no bill lines |
//! | `UNMAPPED` | a billing name with no map entry (its own row) |
//! | `UNSETTLED` | the day ends less than `settle_hours` before `now` |
//!
//! Exit code: 3 when the comparison is incomplete (an `UNMAPPED` row, or a
//! settled requested day with no bill data at all), else 1 when a settled
//! row is beyond tolerance, else 0. Bad input (2) never reaches here.

use std::collections::{BTreeMap, BTreeSet};

use meter_core::pricelist::classify::{Tier, TokenClass};
use meter_core::resolve::Route;
use meter_core::Day;
use rust_decimal::Decimal;
use time::OffsetDateTime;

use crate::bill::{Bill, LineKind, What};
use crate::fmt_decimal;
use crate::meter::NormalisedRow;
use crate::names::Named;

/// The grain of the comparison besides the day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum By {
    /// (UTC day, model): the meter's `model_day` items.
    #[default]
    Model,
    /// (UTC day, principal, model): the bill's `line_item_iam_principal`
    /// against the meter's `tag_model_day` items of the `principal` tag.
    Principal,
}

/// The principal of bill lines without `line_item_iam_principal`.
pub const NO_PRINCIPAL: &str = "(none)";

/// How to compare.
#[derive(Debug, Clone)]
pub struct Options {
    /// Per model (default) or per principal and model.
    pub by: By,
    /// First day (inclusive, UTC).
    pub from: Day,
    /// Last day (inclusive, UTC).
    pub to: Day,
    /// Percent of the billed amount a row may differ by (default 1).
    pub tolerance_pct: Decimal,
    /// Dollars a row may differ by (default 0.01); the larger allowance wins.
    pub tolerance_usd: Decimal,
    /// A day is settled once it ended this many hours before `now`.
    pub settle_hours: u32,
    pub now: OffsetDateTime,
}

/// A row's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    Ok,
    Under,
    Over,
    BillOnly,
    MeterOnly,
    Unmapped,
    Unsettled,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Ok,
        Status::Under,
        Status::Over,
        Status::BillOnly,
        Status::MeterOnly,
        Status::Unmapped,
        Status::Unsettled,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Under => "UNDER",
            Status::Over => "OVER",
            Status::BillOnly => "BILL_ONLY",
            Status::MeterOnly => "METER_ONLY",
            Status::Unmapped => "UNMAPPED",
            Status::Unsettled => "UNSETTLED",
        }
    }
}

/// Tokens per class. The bill's may be fractional (a rounded amount).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    pub input: Decimal,
    pub output: Decimal,
    pub cache_read: Decimal,
    /// 5-minute and 1-hour cache writes together.
    pub cache_write: Decimal,
}

impl Tokens {
    /// (name, value) per class, in column order.
    pub fn classes(&self) -> [(&'static str, Decimal); 4] {
        [
            ("input", self.input),
            ("output", self.output),
            ("cache_read", self.cache_read),
            ("cache_write", self.cache_write),
        ]
    }

    fn add(&mut self, class: TokenClass, n: Decimal) {
        match class {
            TokenClass::Input => self.input += n,
            TokenClass::Output => self.output += n,
            TokenClass::CacheRead => self.cache_read += n,
            TokenClass::CacheWrite | TokenClass::CacheWrite1h => self.cache_write += n,
        }
    }
}

/// Why a gap may exist, from the lines seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hint {
    /// Stable code: `cache_write_1h`, `batch`, `flex`, `priority`,
    /// `latency_optimized`, `custom_model`, `long_context`, `global_route`,
    /// `route_mismatch`, `credits`, `unit_1000x`, `bill_only_lines`,
    /// `mantle`, `no_bill_lines`, `no_bill_data`, `unpriced`,
    /// `unresolved_profile`, `unknown_unit`, `estimated`, `unmapped`,
    /// `no_principal`.
    pub code: &'static str,
    pub text: String,
}

/// One (day, model) row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub day: Day,
    /// The principal ARN ([`NO_PRINCIPAL`] for bill lines without one) with
    /// [`By::Principal`]; `None` per model.
    pub principal: Option<String>,
    /// The model id (or, for `UNMAPPED`, the billing name).
    pub model: String,
    pub status: Status,
    /// Beyond tolerance on a settled day (counts for exit 1).
    pub fails: bool,
    pub metered_usd: Decimal,
    pub billed_usd: Decimal,
    /// billed − metered.
    pub gap_usd: Decimal,
    /// gap / billed in percent, two decimals; `None` when billed is 0.
    pub gap_pct: Option<Decimal>,
    /// Credits, refunds and other non-usage lines of this model and day.
    pub adjustments_usd: Decimal,
    pub metered_tokens: Tokens,
    pub billed_tokens: Tokens,
    /// The part of `billed_tokens.cache_write` billed at the 1-hour rate.
    pub billed_cache_write_1h: Decimal,
    /// False when a bill line's unit is not a token unit reconcile knows
    /// (tokens are then not compared).
    pub tokens_known: bool,
    pub hints: Vec<Hint>,
    /// The model ids as logged that joined this row.
    pub meter_models: Vec<String>,
    /// The bill's usage types that joined this row.
    pub usage_types: Vec<String>,
}

/// Totals and what was left out of the rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub metered_usd: Decimal,
    pub billed_usd: Decimal,
    /// Every adjustment in range (rows' and unattributed).
    pub adjustments_usd: Decimal,
    /// Adjustments with no model (tax, account-level credits).
    pub unattributed_adjustments_usd: Decimal,
    /// Bedrock lines that are not per-token, by usage type (usage only).
    pub not_metered: BTreeMap<String, Decimal>,
    /// Lines of other services.
    pub other_lines: u64,
    /// Bedrock lines outside `--from`..`--to`.
    pub out_of_range_lines: u64,
    /// Settled requested days with no bill data at all.
    pub missing_days: Vec<Day>,
    /// The first unsettled day, when any requested day is.
    pub unsettled_from: Option<Day>,
    pub counts: BTreeMap<Status, usize>,
    /// The grain compared.
    pub by: By,
    /// With [`By::Principal`]: the meter side has no `principal` tag items in
    /// the range (attribution not enabled), so nothing can be compared (exit 3).
    pub no_principal_data: bool,
    pub exit_code: u8,
}

/// The rows and the summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub rows: Vec<Row>,
    pub summary: Summary,
}

#[derive(Default)]
struct BillAcc {
    usage_lines: usize,
    usd: Decimal,
    tokens: Tokens,
    cache_write_1h_tokens: Decimal,
    cache_write_1h_usd: Decimal,
    tokens_known: bool,
    unknown_unit: BTreeSet<String>,
    tiers: BTreeMap<Tier, (Decimal, Decimal)>,
    global_usd: Decimal,
    regional_usd: Decimal,
    long_usd: Decimal,
    adjustments: Decimal,
    adjustment_types: BTreeSet<String>,
    usage_types: BTreeSet<String>,
    estimated: bool,
    no_principal: bool,
}

#[derive(Default)]
struct MeterAcc {
    rows: usize,
    usd: Decimal,
    tokens: Tokens,
    routes: BTreeSet<Route>,
    models: BTreeSet<String>,
    unpriced: u128,
    unresolved_profile: bool,
}

/// (day, principal (empty per model), model or billing name, unmapped?)
type Key = (Day, String, String, bool);

fn day_settled(day: Day, opts: &Options) -> bool {
    let end = day.date().midnight().assume_utc() + time::Duration::days(1);
    end + time::Duration::hours(i64::from(opts.settle_hours)) <= opts.now
}

fn in_range(day: Day, opts: &Options) -> bool {
    opts.from <= day && day <= opts.to
}

/// `$0.05`, `-$0.05`.
fn usd(d: Decimal) -> String {
    if d.is_sign_negative() && !d.is_zero() {
        format!("-${}", fmt_decimal(-d))
    } else {
        format!("${}", fmt_decimal(d))
    }
}

/// Compares the bill with the meter.
pub fn reconcile(bill: &Bill, meter: &[NormalisedRow], opts: &Options) -> Report {
    let mut summary = Summary {
        other_lines: bill.other_lines,
        by: opts.by,
        ..Summary::default()
    };
    let bill_principal = |line: &crate::bill::BillLine| match opts.by {
        By::Model => String::new(),
        By::Principal => line
            .principal
            .clone()
            .unwrap_or_else(|| NO_PRINCIPAL.to_string()),
    };
    let mut bills: BTreeMap<Key, BillAcc> = BTreeMap::new();
    for line in &bill.lines {
        if !in_range(line.day, opts) {
            summary.out_of_range_lines += 1;
            continue;
        }
        let adjustment = match &line.kind {
            LineKind::Usage => None,
            LineKind::Adjustment(t) => Some(t.as_str()),
        };
        if adjustment.is_some() {
            summary.adjustments_usd += line.cost;
        }
        let (model, usage, tokens) = match &line.what {
            What::Token {
                model,
                usage,
                tokens,
            } => (model, usage, tokens),
            What::NotToken { .. } => {
                match adjustment {
                    Some(_) => summary.unattributed_adjustments_usd += line.cost,
                    None => {
                        *summary
                            .not_metered
                            .entry(line.usage_type.clone())
                            .or_default() += line.cost
                    }
                }
                continue;
            }
        };
        let key = match model {
            Named::Model(m) => (line.day, bill_principal(line), m.clone(), false),
            Named::Unmapped(name) if adjustment.is_none() => {
                (line.day, bill_principal(line), name.clone(), true)
            }
            Named::Unmapped(_) => {
                summary.unattributed_adjustments_usd += line.cost;
                continue;
            }
            Named::NotMetered(name) => {
                match adjustment {
                    Some(_) => summary.unattributed_adjustments_usd += line.cost,
                    None => {
                        *summary
                            .not_metered
                            .entry(format!("{} ({name})", line.usage_type))
                            .or_default() += line.cost
                    }
                }
                continue;
            }
        };
        let acc = bills.entry(key).or_insert_with(|| BillAcc {
            tokens_known: true,
            ..BillAcc::default()
        });
        acc.estimated |= line.estimated;
        acc.no_principal |= opts.by == By::Principal && line.principal.is_none();
        if let Some(t) = adjustment {
            acc.adjustments += line.cost;
            acc.adjustment_types.insert(t.to_string());
            continue;
        }
        acc.usage_lines += 1;
        acc.usd += line.cost;
        acc.usage_types.insert(line.usage_type.clone());
        match tokens {
            Some(n) => {
                acc.tokens.add(usage.class, *n);
                if usage.class == TokenClass::CacheWrite1h {
                    acc.cache_write_1h_tokens += *n;
                    acc.cache_write_1h_usd += line.cost;
                }
                let tier = acc.tiers.entry(usage.tier).or_default();
                tier.0 += line.cost;
                tier.1 += *n;
            }
            None => {
                acc.tokens_known = false;
                acc.unknown_unit.insert(line.usage_type.clone());
                acc.tiers.entry(usage.tier).or_default().0 += line.cost;
            }
        }
        match usage.route {
            Route::Global => acc.global_usd += line.cost,
            Route::Regional => acc.regional_usd += line.cost,
        }
        if usage.long_context {
            acc.long_usd += line.cost;
        }
    }
    let mut meters: BTreeMap<Key, MeterAcc> = BTreeMap::new();
    for m in meter {
        if !in_range(m.row.day, opts) {
            continue;
        }
        let principal = match opts.by {
            By::Model => String::new(),
            By::Principal => match &m.row.principal {
                Some(p) => p.clone(),
                // A per-model row has no principal: not comparable here.
                None => continue,
            },
        };
        let acc = meters
            .entry((m.row.day, principal, m.key.clone(), false))
            .or_default();
        acc.rows += 1;
        acc.usd += m.row.cost_usd;
        let r = &m.row;
        acc.tokens.add(TokenClass::Input, tok(r.input_tokens));
        acc.tokens.add(TokenClass::Output, tok(r.output_tokens));
        acc.tokens
            .add(TokenClass::CacheRead, tok(r.cache_read_input_tokens));
        acc.tokens
            .add(TokenClass::CacheWrite, tok(r.cache_write_input_tokens));
        acc.routes.insert(m.route);
        acc.models.insert(r.model.clone());
        acc.unpriced += r.unpriced_invocations;
        acc.unresolved_profile |= m.unresolved_profile;
    }

    let keys: BTreeSet<Key> = bills.keys().chain(meters.keys()).cloned().collect();
    let empty_bill = BillAcc {
        tokens_known: true,
        ..BillAcc::default()
    };
    let empty_meter = MeterAcc::default();
    let mut rows = Vec::new();
    for key in keys {
        let b = bills.get(&key).unwrap_or(&empty_bill);
        let m = meters.get(&key).unwrap_or(&empty_meter);
        rows.push(row(&key, b, m, bill, opts));
    }

    let mut day = opts.from;
    loop {
        if day_settled(day, opts) {
            if !bill.days.contains(&day) {
                summary.missing_days.push(day);
            }
        } else if summary.unsettled_from.is_none() {
            summary.unsettled_from = Some(day);
        }
        if day >= opts.to {
            break;
        }
        match day.date().next_day() {
            Some(d) => day = Day::of(d.midnight().assume_utc()),
            None => break,
        }
    }
    for r in &rows {
        summary.metered_usd += r.metered_usd;
        summary.billed_usd += r.billed_usd;
        *summary.counts.entry(r.status).or_default() += 1;
    }
    summary.no_principal_data = opts.by == By::Principal && meters.is_empty();
    let incomplete = rows.iter().any(|r| r.status == Status::Unmapped)
        || !summary.missing_days.is_empty()
        || summary.no_principal_data;
    summary.exit_code = if incomplete {
        3
    } else if rows.iter().any(|r| r.fails) {
        1
    } else {
        0
    };
    Report { rows, summary }
}

fn row(key: &Key, b: &BillAcc, m: &MeterAcc, bill: &Bill, opts: &Options) -> Row {
    let (day, principal, model, unmapped) = key.clone();
    let principal = (opts.by == By::Principal).then_some(principal);
    let gap = b.usd - m.usd;
    let gap_pct = (!b.usd.is_zero()).then(|| (gap / b.usd * Decimal::ONE_HUNDRED).round_dp(2));
    let allowed = opts
        .tolerance_usd
        .max(b.usd.abs() * opts.tolerance_pct / Decimal::ONE_HUNDRED);
    let within = gap.abs() <= allowed;
    let tokens_equal = !b.tokens_known || b.tokens == m.tokens;
    let has_bill = b.usage_lines > 0;
    let has_meter = m.rows > 0;
    let settled = day_settled(day, opts);
    let (status, fails) = if !settled {
        (Status::Unsettled, false)
    } else if unmapped {
        (Status::Unmapped, false)
    } else if has_bill && has_meter {
        if within && tokens_equal {
            (Status::Ok, false)
        } else if gap > Decimal::ZERO
            || (gap.is_zero() && token_sum(&b.tokens) > token_sum(&m.tokens))
        {
            (Status::Under, true)
        } else {
            (Status::Over, true)
        }
    } else if has_bill {
        (Status::BillOnly, !(within && tokens_equal))
    } else if has_meter {
        (Status::MeterOnly, !(within && tokens_equal))
    } else {
        (Status::Ok, false)
    };

    let mut hints = Vec::new();
    let mut hint = |code: &'static str, text: String| hints.push(Hint { code, text });
    if unmapped {
        hint(
            "unmapped",
            format!(
                "billing name `{model}` is not in the map: add it (--map FILE in the Price List map \
                 format, or a [[stem]] in cur-stems.toml) with a source"
            ),
        );
    }
    if b.cache_write_1h_tokens > Decimal::ZERO {
        hint(
            "cache_write_1h",
            format!(
                "1-hour cache writes on the bill: {} tokens, {} (the meter prices cache writes at \
                 the 5-minute rate unless the log reports the split)",
                fmt_decimal(b.cache_write_1h_tokens),
                usd(b.cache_write_1h_usd)
            ),
        );
    }
    for (tier, (cost, tokens)) in &b.tiers {
        let why = match tier {
            Tier::Standard => continue,
            Tier::Batch => "batch jobs are not in invocation logs",
            Tier::Flex | Tier::Priority => "the meter prices the standard tier",
            Tier::LatencyOptimized => "the meter prices the standard rate",
            Tier::CustomModel => "custom models are priced per model unit, not here",
        };
        let code = match tier {
            Tier::Batch => "batch",
            Tier::Flex => "flex",
            Tier::Priority => "priority",
            Tier::LatencyOptimized => "latency_optimized",
            _ => "custom_model",
        };
        hint(
            code,
            format!(
                "{} tier on the bill: {}, {} tokens ({why})",
                tier.label(),
                usd(*cost),
                fmt_decimal(*tokens)
            ),
        );
    }
    if b.long_usd > Decimal::ZERO {
        hint(
            "long_context",
            format!("long-context lines on the bill: {}", usd(b.long_usd)),
        );
    }
    let bill_global = b.global_usd > Decimal::ZERO;
    let meter_global = m.routes.contains(&Route::Global);
    if bill_global && has_meter && !meter_global {
        hint(
            "route_mismatch",
            format!(
                "global-route lines on the bill ({}) but no global. calls in the logs",
                usd(b.global_usd)
            ),
        );
    } else if meter_global && has_bill && !bill_global {
        hint(
            "route_mismatch",
            "global. calls in the logs but only regional lines on the bill".to_string(),
        );
    } else if bill_global {
        hint(
            "global_route",
            format!(
                "global route on the bill: {} (its own SKU, cheaper than the Region's)",
                usd(b.global_usd)
            ),
        );
    }
    if !b.adjustments.is_zero() {
        hint(
            "credits",
            format!(
                "{} {} kept apart from the usage",
                b.adjustment_types
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("/"),
                usd(b.adjustments)
            ),
        );
    }
    if let Some(factor) = unit_factor(&b.tokens, &m.tokens) {
        hint(
            "unit_1000x",
            format!("billed tokens are {factor} the metered in every class: a unit read wrong (tokens vs 1K vs 1M), not a gap"),
        );
    }
    if has_bill && !has_meter && !unmapped {
        let mantle = b.usage_types.iter().any(|u| u.contains("-mantle-"));
        hint(
            "bill_only_lines",
            format!(
                "bill lines with no log counterpart: {}",
                b.usage_types.iter().cloned().collect::<Vec<_>>().join(", ")
            ),
        );
        if mantle {
            hint(
                "mantle",
                "bedrock-mantle (Responses/Chat API) calls are not in invocation logs".to_string(),
            );
        }
    }
    if has_meter && !has_bill && !unmapped {
        if bill.days.contains(&day) {
            hint(
                "no_bill_lines",
                "no bill lines for this model on a day the bill covers (billing preview? another account or Region?)"
                    .to_string(),
            );
        } else {
            hint(
                "no_bill_data",
                "no bill data at all for this day: the export or response does not cover it"
                    .to_string(),
            );
        }
    }
    if m.unpriced > 0 {
        hint(
            "unpriced",
            format!(
                "{} unpriced invocation(s): the metered amount is a lower bound",
                m.unpriced
            ),
        );
    }
    if m.unresolved_profile {
        hint(
            "unresolved_profile",
            "application inference profile ARN not in the price table's [aliases]: add it so it joins its model"
                .to_string(),
        );
    }
    if !b.unknown_unit.is_empty() {
        hint(
            "unknown_unit",
            format!(
                "unit not a token count for {}: tokens not compared",
                b.unknown_unit
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }
    if b.no_principal {
        hint(
            "no_principal",
            "bill lines without line_item_iam_principal (grouped as (none)): include the IAM \
             principal column in the CUR 2.0 export; credits and taxes never have one"
                .to_string(),
        );
    }
    if b.estimated {
        hint(
            "estimated",
            "Cost Explorer marks this day Estimated (not final)".to_string(),
        );
    }
    Row {
        day,
        principal,
        model,
        status,
        fails: fails && settled,
        metered_usd: m.usd,
        billed_usd: b.usd,
        gap_usd: gap,
        gap_pct,
        adjustments_usd: b.adjustments,
        metered_tokens: m.tokens,
        billed_tokens: b.tokens,
        billed_cache_write_1h: b.cache_write_1h_tokens,
        tokens_known: b.tokens_known,
        hints,
        meter_models: m.models.iter().cloned().collect(),
        usage_types: b.usage_types.iter().cloned().collect(),
    }
}

/// A token count as a decimal (saturating: more than 2^64 tokens a day is
/// not a real count).
fn tok(n: u128) -> Decimal {
    u64::try_from(n).map_or(Decimal::MAX, Decimal::from)
}

fn token_sum(t: &Tokens) -> Decimal {
    t.input + t.output + t.cache_read + t.cache_write
}

/// `1000x` (or `1/1000x`, `1000000x`, ...) when every class with tokens
/// differs by that one factor.
fn unit_factor(billed: &Tokens, metered: &Tokens) -> Option<&'static str> {
    let pairs: Vec<(Decimal, Decimal)> = billed
        .classes()
        .iter()
        .zip(metered.classes().iter())
        .map(|((_, b), (_, m))| (*b, *m))
        .filter(|(b, m)| !b.is_zero() || !m.is_zero())
        .collect();
    if pairs.is_empty() {
        return None;
    }
    // (label, billed multiplier, metered multiplier): billed × a == metered × b.
    let factors: [(&'static str, u64, u64); 4] = [
        ("1000x", 1, 1_000),
        ("1/1000x", 1_000, 1),
        ("1000000x", 1, 1_000_000),
        ("1/1000000x", 1_000_000, 1),
    ];
    factors
        .iter()
        .find(|(_, a, b)| {
            pairs.iter().all(|(billed, metered)| {
                !billed.is_zero()
                    && !metered.is_zero()
                    && *billed * Decimal::from(*a) == *metered * Decimal::from(*b)
            })
        })
        .map(|(label, _, _)| *label)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bill::RawLine;
    use crate::meter::{normalise, MeterRow};
    use crate::names::Names;
    use meter_core::PriceTable;

    fn d(s: &str) -> Day {
        Day::parse(s).unwrap()
    }

    fn dec(s: &str) -> Decimal {
        crate::parse_decimal(s).unwrap()
    }

    fn opts(from: &str, to: &str) -> Options {
        Options {
            by: By::Model,
            from: d(from),
            to: d(to),
            tolerance_pct: Decimal::ONE,
            tolerance_usd: dec("0.01"),
            settle_hours: 72,
            now: time::macros::datetime!(2026-11-17 12:00 UTC),
        }
    }

    fn line(day: &str, usage_type: &str, amount: &str, cost: &str) -> RawLine {
        RawLine {
            file: "t.csv".into(),
            line: 2,
            start: format!("{day}T00:00:00Z"),
            line_item_type: "Usage".into(),
            product_code: "AmazonBedrock".into(),
            usage_type: usage_type.into(),
            amount: amount.into(),
            unit: Some("1K tokens".into()),
            cost: cost.into(),
            ..RawLine::default()
        }
    }

    fn bill_of(lines: &[RawLine]) -> Bill {
        let names = Names::builtin().unwrap();
        let mut bill = Bill::default();
        for l in lines {
            bill.push_raw(l, &names).unwrap();
        }
        bill
    }

    fn meter(model: &str, day: &str, input: u128, output: u128, cost: &str) -> MeterRow {
        MeterRow {
            principal: None,
            model: model.into(),
            day: d(day),
            input_tokens: input,
            output_tokens: output,
            cache_read_input_tokens: 0,
            cache_write_input_tokens: 0,
            unpriced_invocations: 0,
            cost_usd: dec(cost),
        }
    }

    fn run(bill: &Bill, rows: Vec<MeterRow>, o: &Options) -> Report {
        let names = Names::builtin().unwrap();
        reconcile(bill, &normalise(rows, &PriceTable::builtin(), &names), o)
    }

    #[test]
    fn equal_tokens_and_dollars_are_ok_and_sums_stay_exact() {
        // 1.1 + 3.55 in floating point is 4.6499999999999995.
        let bill = bill_of(&[
            line("2026-11-10", "USE1-NovaMicro-input-tokens", "1000", "1.1"),
            line("2026-11-10", "USE1-NovaMicro-output-tokens", "200", "3.55"),
        ]);
        let r = run(
            &bill,
            vec![meter(
                "us.amazon.nova-micro-v1:0",
                "2026-11-10",
                1_000_000,
                200_000,
                "4.65",
            )],
            &opts("2026-11-10", "2026-11-10"),
        );
        assert_eq!(r.rows.len(), 1);
        assert_eq!(r.rows[0].status, Status::Ok);
        assert_eq!(fmt_decimal(r.rows[0].billed_usd), "4.65");
        assert_eq!(r.summary.exit_code, 0);
    }

    #[test]
    fn a_gap_beyond_tolerance_is_under_or_over_and_exits_1() {
        let bill = bill_of(&[line(
            "2026-11-10",
            "USE1-NovaMicro-input-tokens",
            "1000",
            "10",
        )]);
        let o = opts("2026-11-10", "2026-11-10");
        let under = run(
            &bill,
            vec![meter(
                "amazon.nova-micro-v1:0",
                "2026-11-10",
                1_000_000,
                0,
                "9.8",
            )],
            &o,
        );
        assert_eq!(
            (under.rows[0].status, under.summary.exit_code),
            (Status::Under, 1)
        );
        assert_eq!(under.rows[0].gap_pct, Some(dec("2.00")));
        let within = run(
            &bill,
            vec![meter(
                "amazon.nova-micro-v1:0",
                "2026-11-10",
                1_000_000,
                0,
                "9.95",
            )],
            &o,
        );
        assert_eq!(
            (within.rows[0].status, within.summary.exit_code),
            (Status::Ok, 0)
        );
        let over = run(
            &bill,
            vec![meter(
                "amazon.nova-micro-v1:0",
                "2026-11-10",
                1_000_001,
                0,
                "10",
            )],
            &o,
        );
        assert_eq!(
            (over.rows[0].status, over.summary.exit_code),
            (Status::Over, 1)
        );
    }

    #[test]
    fn a_uniform_thousandfold_token_gap_is_named_a_unit_problem() {
        let bill = bill_of(&[line(
            "2026-11-10",
            "USE1-NovaMicro-input-tokens",
            "1000",
            "0.035",
        )]);
        let r = run(
            &bill,
            vec![meter(
                "amazon.nova-micro-v1:0",
                "2026-11-10",
                1_000,
                0,
                "0.035",
            )],
            &opts("2026-11-10", "2026-11-10"),
        );
        assert!(
            r.rows[0].hints.iter().any(|h| h.code == "unit_1000x"),
            "{:?}",
            r.rows[0].hints
        );
    }

    #[test]
    fn an_incomplete_comparison_exits_3_even_when_rows_also_fail() {
        let mut unmapped = line(
            "2026-11-10",
            "USE1-Claude4.6Opus-input-tokens",
            "1",
            "0.005",
        );
        unmapped.product_code = "AmazonBedrockService".into();
        let bill = bill_of(&[
            unmapped,
            line("2026-11-10", "USE1-NovaMicro-input-tokens", "1000", "10"),
        ]);
        let r = run(&bill, vec![], &opts("2026-11-10", "2026-11-10"));
        let statuses: Vec<Status> = r.rows.iter().map(|r| r.status).collect();
        assert_eq!(statuses, [Status::Unmapped, Status::BillOnly]);
        assert_eq!(r.summary.exit_code, 3);
        // A settled day with no bill data at all is incomplete too.
        let r = run(&bill, vec![], &opts("2026-11-11", "2026-11-11"));
        assert_eq!(r.summary.missing_days, [d("2026-11-11")]);
        assert_eq!(r.summary.exit_code, 3);
    }

    #[test]
    fn recent_days_are_unsettled_and_never_fail_the_run() {
        // now = 2026-11-17T12:00Z, 72 h: 2026-11-14 ends after 2026-11-14T12:00Z.
        let bill = bill_of(&[line(
            "2026-11-14",
            "USE1-NovaMicro-input-tokens",
            "1",
            "0.000035",
        )]);
        let r = run(
            &bill,
            vec![
                meter("amazon.nova-micro-v1:0", "2026-11-14", 9_000, 0, "0.000315"),
                meter("amazon.nova-micro-v1:0", "2026-11-15", 9_000, 0, "0.000315"),
            ],
            &opts("2026-11-14", "2026-11-15"),
        );
        assert!(r
            .rows
            .iter()
            .all(|r| r.status == Status::Unsettled && !r.fails));
        assert_eq!(r.summary.exit_code, 0);
        assert_eq!(r.summary.unsettled_from, Some(d("2026-11-14")));
        let settled = run(&bill, vec![], &opts("2026-11-13", "2026-11-13"));
        assert_eq!(settled.summary.missing_days, [d("2026-11-13")]);
    }

    #[test]
    fn credits_are_kept_apart_and_named_in_a_hint() {
        let mut credit = line("2026-11-10", "USE1-NovaMicro-input-tokens", "0", "-0.02");
        credit.line_item_type = "Credit".into();
        let bill = bill_of(&[
            line("2026-11-10", "USE1-NovaMicro-input-tokens", "1000", "0.035"),
            credit,
        ]);
        let r = run(
            &bill,
            vec![meter(
                "amazon.nova-micro-v1:0",
                "2026-11-10",
                1_000_000,
                0,
                "0.035",
            )],
            &opts("2026-11-10", "2026-11-10"),
        );
        assert_eq!(r.rows[0].status, Status::Ok);
        assert_eq!(fmt_decimal(r.rows[0].adjustments_usd), "-0.02");
        assert_eq!(fmt_decimal(r.rows[0].billed_usd), "0.035");
        assert!(r.rows[0].hints.iter().any(|h| h.code == "credits"));
    }

    const ALICE: &str = "arn:aws:sts::111111111111:assumed-role/R/alice";
    const BOB: &str = "arn:aws:sts::111111111111:assumed-role/R/bob";

    fn by_principal(from: &str, to: &str) -> Options {
        Options {
            by: By::Principal,
            ..opts(from, to)
        }
    }

    fn of(principal: &str, mut m: MeterRow) -> MeterRow {
        m.principal = Some(principal.to_string());
        m
    }

    #[test]
    fn by_principal_splits_one_model_day_per_caller_and_groups_lines_without_one() {
        let mut alice = line("2026-11-10", "USE1-NovaMicro-input-tokens", "1000", "0.035");
        alice.principal = Some(ALICE.into());
        let mut bob = line("2026-11-10", "USE1-NovaMicro-input-tokens", "2000", "0.07");
        bob.principal = Some(BOB.into());
        let nobody = line("2026-11-10", "USE1-NovaMicro-input-tokens", "100", "0.0035");
        let bill = bill_of(&[alice, bob, nobody]);
        let micro = "us.amazon.nova-micro-v1:0";
        let r = run(
            &bill,
            vec![
                of(ALICE, meter(micro, "2026-11-10", 1_000_000, 0, "0.035")),
                // bob metered 1M input tokens of the 2M billed.
                of(BOB, meter(micro, "2026-11-10", 1_000_000, 0, "0.035")),
                // A per-model row (no principal) is not comparable here.
                meter(micro, "2026-11-10", 9_000_000, 0, "0.315"),
            ],
            &by_principal("2026-11-10", "2026-11-10"),
        );
        let got: Vec<(Option<&str>, Status, String, String)> = r
            .rows
            .iter()
            .map(|r| {
                (
                    r.principal.as_deref(),
                    r.status,
                    fmt_decimal(r.metered_usd),
                    fmt_decimal(r.billed_usd),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    Some(NO_PRINCIPAL),
                    Status::BillOnly,
                    "0".into(),
                    "0.0035".into()
                ),
                (Some(ALICE), Status::Ok, "0.035".into(), "0.035".into()),
                (Some(BOB), Status::Under, "0.035".into(), "0.07".into()),
            ]
        );
        assert!(r.rows[0].hints.iter().any(|h| h.code == "no_principal"));
        assert!(!r.rows[1].hints.iter().any(|h| h.code == "no_principal"));
        assert_eq!(r.summary.exit_code, 1);
        assert!(!r.summary.no_principal_data);

        // The same input per model: one row, the principal ignored.
        let r = run(
            &bill,
            vec![meter(micro, "2026-11-10", 3_100_000, 0, "0.1085")],
            &opts("2026-11-10", "2026-11-10"),
        );
        assert_eq!(r.rows.len(), 1);
        assert_eq!(r.rows[0].principal, None);
        assert_eq!(r.rows[0].status, Status::Ok);
    }

    #[test]
    fn by_principal_with_no_principal_items_in_range_is_incomplete() {
        let mut alice = line("2026-11-10", "USE1-NovaMicro-input-tokens", "1000", "0.035");
        alice.principal = Some(ALICE.into());
        let bill = bill_of(&[alice]);
        let micro = "us.amazon.nova-micro-v1:0";
        // Only per-model rows, and a principal row outside the range.
        let r = run(
            &bill,
            vec![
                meter(micro, "2026-11-10", 1_000_000, 0, "0.035"),
                of(ALICE, meter(micro, "2026-11-09", 1_000_000, 0, "0.035")),
            ],
            &by_principal("2026-11-10", "2026-11-10"),
        );
        assert!(r.summary.no_principal_data);
        assert_eq!(r.summary.exit_code, 3);
        assert!(crate::render::table(&r).contains("ATTRIBUTION_TAGS=principal"));
    }
}
