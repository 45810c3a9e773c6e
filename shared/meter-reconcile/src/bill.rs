//! One bill line, normalised.
//!
//! A [`RawLine`] holds the CUR 2.0 columns reconcile reads, as text, with
//! where it came from. [`normalise`] turns it into a [`BillLine`]: its UTC
//! day, usage or adjustment, the model (or why there is none), the token
//! class, route and tier from the Price List grammar, exact tokens and
//! exact dollars. Lines of other services are not Bedrock and are dropped
//! (the day still counts as having bill data).

use std::collections::{BTreeMap, BTreeSet};

use meter_core::pricelist::classify::{classify, TokenUsage, Usage};
use meter_core::pricelist::offer::MARKETPLACE_OFFER;
use meter_core::Day;
use rust_decimal::Decimal;
use time::{Date, PrimitiveDateTime, Time};

use crate::names::{Named, Names, AWS_OFFERS};
use crate::{parse_decimal, ReconcileError};

/// The columns reconcile must find in a CUR export.
pub const REQUIRED_COLUMNS: [&str; 6] = [
    "line_item_usage_start_date",
    "line_item_line_item_type",
    "line_item_product_code",
    "line_item_usage_type",
    "line_item_usage_amount",
    "line_item_unblended_cost",
];

/// Line item types that are usage (compared); every other type (`Credit`,
/// `Refund`, `Tax`, `Fee`, discounts) is an adjustment, kept apart.
pub const USAGE_TYPES: [&str; 3] = ["Usage", "DiscountedUsage", "SavingsPlanCoveredUsage"];

/// One line as the export holds it (text), and where it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawLine {
    pub file: String,
    /// 1-based line (CSV, header = line 1) or row (Parquet, first row = 1).
    pub line: u64,
    pub start: String,
    pub end: Option<String>,
    pub line_item_type: String,
    pub product_code: String,
    pub usage_type: String,
    pub operation: Option<String>,
    pub amount: String,
    pub unit: Option<String>,
    pub cost: String,
    pub resource_id: Option<String>,
    pub currency: Option<String>,
    pub billing_entity: Option<String>,
    pub servicecode: Option<String>,
    /// The `product` map (`product_name`, `model`, `region`, ...).
    pub product: BTreeMap<String, String>,
    /// Cost Explorer marked the day as not final.
    pub estimated: bool,
    /// `line_item_iam_principal`: the IAM principal that made the call
    /// (CUR 2.0), when the export has it.
    pub principal: Option<String>,
}

/// Usage (compared) or an adjustment (kept apart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineKind {
    Usage,
    /// The line item type: `Credit`, `Refund`, `Tax`, ...
    Adjustment(String),
}

/// What a Bedrock line is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum What {
    /// Tokens of a model; `tokens` is `None` when the unit is not one
    /// reconcile knows.
    Token {
        model: Named,
        usage: TokenUsage,
        tokens: Option<Decimal>,
    },
    /// Not per token (provisioned, reserved, guardrails, storage, an
    /// unclassified usage type): kept as dollars, never compared.
    NotToken { label: String },
}

/// A normalised Bedrock bill line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillLine {
    pub day: Day,
    pub kind: LineKind,
    pub what: What,
    pub usage_type: String,
    pub cost: Decimal,
    pub resource_id: Option<String>,
    pub estimated: bool,
    /// The IAM principal the bill names for this line (`line_item_iam_principal`).
    pub principal: Option<String>,
}

/// Every Bedrock line read, and the days that had any bill data at all.
#[derive(Debug, Clone, Default)]
pub struct Bill {
    pub lines: Vec<BillLine>,
    /// Days with at least one line of any service (or a Cost Explorer
    /// period): a requested day missing here was never billed in the input.
    pub days: BTreeSet<Day>,
    /// Lines of other services, skipped.
    pub other_lines: u64,
    /// Where the bill came from (files read, Cost Explorer).
    pub sources: Vec<String>,
}

impl Bill {
    /// Normalises `raw` and adds it (or counts it as another service's).
    pub fn push_raw(&mut self, raw: &RawLine, names: &Names) -> Result<(), ReconcileError> {
        let day = line_day(raw)?;
        self.days.insert(day);
        match normalise(raw, day, names)? {
            Some(line) => self.lines.push(line),
            None => self.other_lines += 1,
        }
        Ok(())
    }

    /// Records a period the source answered for (a Cost Explorer day), with
    /// or without lines.
    pub fn push_period(&mut self, raw: &RawLine) -> Result<(), ReconcileError> {
        self.days.insert(line_day(raw)?);
        Ok(())
    }
}

/// The UTC day of a line; refuses lines longer than a day (monthly exports).
pub fn line_day(raw: &RawLine) -> Result<Day, ReconcileError> {
    let err = |reason: String| ReconcileError::at(&raw.file, raw.line, reason);
    let start = parse_utc(&raw.start).ok_or_else(|| {
        err(format!(
            "line_item_usage_start_date `{}` is not a UTC timestamp such as 2026-11-20T00:00:00Z",
            raw.start
        ))
    })?;
    if let Some(end) = raw.end.as_deref().filter(|e| !e.trim().is_empty()) {
        let end = parse_utc(end).ok_or_else(|| {
            err(format!(
                "line_item_usage_end_date `{end}` is not a UTC timestamp such as 2026-11-21T00:00:00Z"
            ))
        })?;
        if end - start > time::Duration::days(1) {
            return Err(err(format!(
                "this line covers {} to {}: the export is MONTHLY, and a monthly export cannot be \
                 reconciled per day; create a CUR 2.0 export with time granularity DAILY (or HOURLY)",
                raw.start.trim(),
                raw.end.as_deref().unwrap_or_default().trim()
            )));
        }
    }
    Ok(Day::of(start.assume_utc()))
}

/// `2026-11-20T00:00:00Z`, `2026-11-20T00:00:00.000Z`, `2026-11-20 00:00:00`,
/// `...+00:00`, `2026-11-20`: always UTC (CUR dates are UTC).
pub fn parse_utc(s: &str) -> Option<PrimitiveDateTime> {
    let s = s.trim();
    let date_fmt = time::macros::format_description!("[year]-[month]-[day]");
    let date = Date::parse(s.get(..10)?, &date_fmt).ok()?;
    let rest = &s[10..];
    if rest.is_empty() {
        return Some(PrimitiveDateTime::new(date, Time::MIDNIGHT));
    }
    let rest = rest.strip_prefix(['T', ' '])?;
    let hms = rest.get(..8)?;
    let time_fmt = time::macros::format_description!("[hour]:[minute]:[second]");
    let t = Time::parse(hms, &time_fmt).ok()?;
    let mut tail = &rest[8..];
    if let Some(frac) = tail.strip_prefix('.') {
        tail = frac.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    match tail.trim() {
        "" | "Z" | "+00:00" | "+0000" | "UTC" => Some(PrimitiveDateTime::new(date, t)),
        _ => None,
    }
}

/// Which Bedrock offer a line belongs to, or `None` for other services.
fn offer_of(raw: &RawLine) -> Option<&'static str> {
    let codes = [Some(raw.product_code.as_str()), raw.servicecode.as_deref()];
    for code in codes.into_iter().flatten() {
        if let Some(o) = AWS_OFFERS.iter().find(|o| **o == code) {
            return Some(o);
        }
        if code == MARKETPLACE_OFFER {
            return Some(MARKETPLACE_OFFER);
        }
    }
    if product_name(raw).is_some_and(|n| n.trim_end().ends_with("(Amazon Bedrock Edition)")) {
        return Some(MARKETPLACE_OFFER);
    }
    let marketplace = raw.billing_entity.as_deref() == Some("AWS Marketplace");
    let invoke = raw
        .operation
        .as_deref()
        .is_some_and(|o| o.starts_with("InvokeModel"));
    if marketplace && invoke && raw.usage_type.contains("MP:") {
        return Some(MARKETPLACE_OFFER);
    }
    None
}

fn product_name(raw: &RawLine) -> Option<&str> {
    raw.product.get("product_name").map(String::as_str)
}

/// Tokens per unit of `line_item_usage_amount`, or `None` for a unit that
/// is not a token count reconcile knows.
fn tokens_per_unit(unit: Option<&str>, usage_type: &str) -> Option<Decimal> {
    let marketplace = usage_type.contains("MP:");
    match unit.map(str::trim).filter(|u| !u.is_empty()) {
        Some("1K tokens") => Some(Decimal::from(1_000)),
        Some("1M tokens") => Some(Decimal::from(1_000_000)),
        // Marketplace `Units` are millions of tokens.
        Some("Units") if marketplace => Some(Decimal::from(1_000_000)),
        Some(_) => None,
        None if marketplace => Some(Decimal::from(1_000_000)),
        None => Some(Decimal::from(1_000)),
    }
}

/// Normalises one line of a known `day`; `None` when it is not Bedrock.
pub fn normalise(
    raw: &RawLine,
    day: Day,
    names: &Names,
) -> Result<Option<BillLine>, ReconcileError> {
    let err = |reason: String| ReconcileError::at(&raw.file, raw.line, reason);
    if let Some(c) = raw.currency.as_deref().map(str::trim) {
        if !c.is_empty() && c != "USD" {
            return Err(err(format!(
                "currency is {c}: reconcile compares USD only (the meter prices in USD); export the \
                 report in USD"
            )));
        }
    }
    let Some(offer) = offer_of(raw) else {
        return Ok(None);
    };
    let cost = parse_decimal(&raw.cost).ok_or_else(|| {
        err(format!(
            "line_item_unblended_cost `{}` is not a decimal number",
            raw.cost
        ))
    })?;
    let kind = match raw.line_item_type.trim() {
        t if USAGE_TYPES.contains(&t) => LineKind::Usage,
        "" => {
            return Err(err(
                "line_item_line_item_type is empty (expected Usage, Credit, Refund, Tax, ...)"
                    .into(),
            ))
        }
        t => LineKind::Adjustment(t.to_string()),
    };
    let what = match classify(&raw.usage_type) {
        Usage::Token(usage) => {
            let model = names.resolve(
                offer,
                product_name(raw),
                raw.product.get("model").map(String::as_str),
                &raw.usage_type,
            );
            let tokens = match (&kind, tokens_per_unit(raw.unit.as_deref(), &raw.usage_type)) {
                (LineKind::Usage, Some(per)) => {
                    let amount = parse_decimal(&raw.amount).ok_or_else(|| {
                        err(format!(
                            "line_item_usage_amount `{}` is not a decimal number",
                            raw.amount
                        ))
                    })?;
                    Some(amount * per)
                }
                (LineKind::Usage, None) => None,
                (LineKind::Adjustment(_), _) => Some(Decimal::ZERO),
            };
            What::Token {
                model,
                usage,
                tokens,
            }
        }
        Usage::NotToken(label) => What::NotToken {
            label: label.to_string(),
        },
        Usage::Unknown => What::NotToken {
            label: "not per token".to_string(),
        },
    };
    Ok(Some(BillLine {
        day,
        kind,
        what,
        usage_type: raw.usage_type.clone(),
        cost,
        resource_id: raw.resource_id.clone().filter(|r| !r.is_empty()),
        estimated: raw.estimated,
        principal: raw
            .principal
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_string),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use meter_core::pricelist::classify::{Tier, TokenClass};
    use meter_core::resolve::Route;

    fn raw(usage_type: &str, amount: &str, unit: &str, cost: &str) -> RawLine {
        RawLine {
            file: "f.csv".into(),
            line: 7,
            start: "2026-11-10T00:00:00Z".into(),
            end: Some("2026-11-11T00:00:00Z".into()),
            line_item_type: "Usage".into(),
            product_code: "AmazonBedrock".into(),
            usage_type: usage_type.into(),
            amount: amount.into(),
            unit: Some(unit.into()),
            cost: cost.into(),
            ..RawLine::default()
        }
    }

    fn norm(r: &RawLine) -> Result<Option<BillLine>, ReconcileError> {
        let names = Names::builtin().unwrap();
        normalise(r, line_day(r)?, &names)
    }

    #[test]
    fn a_marketplace_line_is_named_by_its_product_and_counted_in_millions() {
        let mut r = raw(
            "USE1-MP:USE1_CacheWriteInputTokenCount_Global-Units",
            "0.0125",
            "Units",
            "0.046875",
        );
        r.product_code = "a1b2c3d4e5f6g7h8i9j0k1l2m".into();
        r.billing_entity = Some("AWS Marketplace".into());
        r.product.insert(
            "product_name".into(),
            "Claude Sonnet 4.5 (Amazon Bedrock Edition)".into(),
        );
        let line = norm(&r).unwrap().unwrap();
        assert_eq!(line.day.to_string(), "2026-11-10");
        assert_eq!(line.cost.to_string(), "0.046875");
        assert_eq!(
            line.what,
            What::Token {
                model: Named::Model("anthropic.claude-sonnet-4-5-20250929-v1:0".into()),
                usage: TokenUsage {
                    class: TokenClass::CacheWrite,
                    route: Route::Global,
                    tier: Tier::Standard,
                    long_context: false
                },
                tokens: Some(Decimal::from(12_500)),
            }
        );
    }

    #[test]
    fn other_services_are_not_bedrock_and_credits_are_adjustments() {
        let mut ec2 = raw("USE1-BoxUsage:t3.micro", "24", "Hrs", "0.2496");
        ec2.product_code = "AmazonEC2".into();
        assert_eq!(norm(&ec2).unwrap(), None);
        let mut credit = raw("USE1-NovaMicro-input-tokens", "0", "1K tokens", "-0.02");
        credit.line_item_type = "Credit".into();
        let line = norm(&credit).unwrap().unwrap();
        assert_eq!(line.kind, LineKind::Adjustment("Credit".into()));
        assert_eq!(line.cost.to_string(), "-0.02");
    }

    #[test]
    fn a_monthly_line_a_foreign_currency_and_a_bad_date_are_refused_with_file_and_line() {
        let mut monthly = raw("USE1-NovaMicro-input-tokens", "1", "1K tokens", "0.035");
        monthly.start = "2026-11-01T00:00:00Z".into();
        monthly.end = Some("2026-12-01T00:00:00Z".into());
        let e = norm(&monthly).unwrap_err().to_string();
        assert!(
            e.starts_with("f.csv: line 7: ") && e.contains("MONTHLY"),
            "{e}"
        );
        let mut eur = raw("USE1-NovaMicro-input-tokens", "1", "1K tokens", "0.035");
        eur.currency = Some("EUR".into());
        let e = norm(&eur).unwrap_err().to_string();
        assert!(e.contains("line 7") && e.contains("currency is EUR"), "{e}");
        let mut bad = raw("USE1-NovaMicro-input-tokens", "1", "1K tokens", "0.035");
        bad.start = "11/10/2026".into();
        assert!(norm(&bad)
            .unwrap_err()
            .to_string()
            .contains("not a UTC timestamp"));
    }

    #[test]
    fn an_unknown_unit_keeps_the_dollars_and_leaves_tokens_unknown() {
        let r = raw("USE1-NovaMicro-input-tokens", "3", "Images", "0.3");
        let line = norm(&r).unwrap().unwrap();
        assert!(matches!(line.what, What::Token { tokens: None, .. }));
    }

    #[test]
    fn timestamps_in_every_spelling_the_exports_use_are_utc() {
        for s in [
            "2026-11-10T05:00:00Z",
            "2026-11-10T05:00:00.000Z",
            "2026-11-10 05:00:00",
            "2026-11-10T05:00:00+00:00",
            "2026-11-10",
        ] {
            assert_eq!(parse_utc(s).map(|t| t.date().day()), Some(10), "{s}");
        }
        assert_eq!(parse_utc("2026-11-10T05:00:00+02:00"), None);
    }
}
