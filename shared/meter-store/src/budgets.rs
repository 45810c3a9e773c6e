//! Budgets, stored in the usage table (see `docs/budgets.md`).
//!
//! One item per budget, all in the partition `BUDGET` so that every budget is
//! one Query and one budget is one GetItem:
//!
//! | budget | `pk` | `sk` |
//! |---|---|---|
//! | a user's own | `BUDGET` | `USER#<component(user)>` |
//! | the default for users without their own | `BUDGET` | `DEFAULT` |
//! | the organisation's | `BUDGET` | `ORG` |
//! | an attribution tag value's | `BUDGET` | `TAG#<component(tag)>#<component(value)>` |
//!
//! Attributes: `kind = budget`, `scope` (`user`, `default`, `org`), `user`
//! (raw id, user budgets only), `daily_usd` and `monthly_usd` (exact decimal
//! numbers, each optional), `thresholds_pct` (list of whole percentages;
//! absent = [`DEFAULT_THRESHOLDS`]) and `updated_at`.
//!
//! A user's own budget replaces the default as a whole (its limits and its
//! thresholds): a user with only a daily limit of their own has no monthly
//! limit. The organisation's budget has a monthly limit only, and so has a
//! tag value's (`tag` and `value` attributes hold the raw key and value):
//! its spend is the `tag_month` aggregate.
//!
//! [`crossed`] decides which thresholds a change of spend crosses, exactly:
//! `old * 100 < pct * limit <= new * 100` in integer pico-dollars.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use aws_sdk_dynamodb::types::AttributeValue;
use meter_core::Usd;

use crate::dynamo::{classify_sdk_error, DynamoDbUsageStore};
use crate::keys::component;
use crate::store::StoreError;

/// The partition holding every budget.
pub const BUDGET_PK: &str = "BUDGET";
/// The item kind of a budget.
pub const BUDGET_KIND: &str = "budget";
/// Thresholds of a budget that sets none: 50%, 80%, 100%.
pub const DEFAULT_THRESHOLDS: [u32; 3] = [50, 80, 100];
/// Highest threshold accepted, in percent (10x the limit).
pub const MAX_THRESHOLD_PCT: u32 = 1000;

/// Whose budget an item is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BudgetScope {
    /// One user's own budget (raw user id).
    User(String),
    /// The budget of every user without their own.
    Default,
    /// The organisation's (all users together); monthly only.
    Org,
    /// One value of an attribution tag (`team=payments`): daily (the sum of
    /// its `tag_model_day` items, read by budget-alerts) and monthly (its
    /// `tag_month` item).
    Tag { tag: String, value: String },
}

impl BudgetScope {
    /// The budget item's sort key.
    pub fn sk(&self) -> String {
        match self {
            BudgetScope::User(u) => format!("USER#{}", component(u)),
            BudgetScope::Default => "DEFAULT".to_string(),
            BudgetScope::Org => "ORG".to_string(),
            BudgetScope::Tag { tag, value } => {
                format!("TAG#{}#{}", component(tag), component(value))
            }
        }
    }

    /// `user`, `default` or `org` (the `scope` attribute).
    pub fn label(&self) -> &'static str {
        match self {
            BudgetScope::User(_) => "user",
            BudgetScope::Default => "default",
            BudgetScope::Org => "org",
            BudgetScope::Tag { .. } => "tag",
        }
    }
}

impl fmt::Display for BudgetScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BudgetScope::User(u) => write!(f, "user {u}"),
            BudgetScope::Default => f.write_str("default"),
            BudgetScope::Org => f.write_str("organisation"),
            BudgetScope::Tag { tag, value } => write!(f, "tag {tag}={value}"),
        }
    }
}

/// Alert thresholds in whole percent of a limit: sorted, distinct, each in
/// `1..=MAX_THRESHOLD_PCT`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Thresholds(Vec<u32>);

/// A threshold list that is empty or holds a value out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ThresholdError {
    #[error("thresholds must not be empty (default: 50,80,100)")]
    Empty,
    #[error("threshold `{0}` is not a whole percentage from 1 to 1000, such as 80")]
    Invalid(String),
}

impl Thresholds {
    /// Builds from percentages, sorting and removing duplicates.
    pub fn new(mut pcts: Vec<u32>) -> Result<Thresholds, ThresholdError> {
        if pcts.is_empty() {
            return Err(ThresholdError::Empty);
        }
        if let Some(bad) = pcts.iter().find(|p| !(1..=MAX_THRESHOLD_PCT).contains(*p)) {
            return Err(ThresholdError::Invalid(bad.to_string()));
        }
        pcts.sort_unstable();
        pcts.dedup();
        Ok(Thresholds(pcts))
    }

    /// Parses `50,80,100` (a trailing `%` on each is accepted).
    pub fn parse(s: &str) -> Result<Thresholds, ThresholdError> {
        let pcts = s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                p.trim_end_matches('%')
                    .parse::<u32>()
                    .map_err(|_| ThresholdError::Invalid(p.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Thresholds::new(pcts)
    }

    pub fn pcts(&self) -> &[u32] {
        &self.0
    }
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds(DEFAULT_THRESHOLDS.to_vec())
    }
}

impl fmt::Display for Thresholds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|p| format!("{p}%")).collect();
        f.write_str(&parts.join(","))
    }
}

/// One stored budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    pub scope: BudgetScope,
    /// Limit per UTC day (user and default budgets).
    pub daily: Option<Usd>,
    /// Limit per UTC month.
    pub monthly: Option<Usd>,
    pub thresholds: Thresholds,
    /// RFC 3339 UTC of the last change.
    pub updated_at: Option<String>,
}

/// The thresholds (in percent) that a change of spend from `old` to `new`
/// crosses against `limit`: every `pct` with `old < pct% of limit <= new`,
/// ascending. Exact: compared as `old * 100 < pct * limit <= new * 100` in
/// integer pico-dollars (saturating at 3.4e26 USD, far beyond real spend).
/// A zero limit is never crossed (`old * 100 < 0` is false): the CLI refuses
/// zero limits.
pub fn crossed(old: Usd, new: Usd, limit: Usd, thresholds: &Thresholds) -> Vec<u32> {
    let old100 = old.picos().saturating_mul(100);
    let new100 = new.picos().saturating_mul(100);
    thresholds
        .pcts()
        .iter()
        .copied()
        .filter(|&pct| {
            let at = limit.picos().saturating_mul(u128::from(pct));
            old100 < at && at <= new100
        })
        .collect()
}

/// `pct`% of `limit` as an exact decimal string (up to 14 decimal places).
pub fn amount_at(limit: Usd, pct: u32) -> String {
    // picos * pct / 100 = (picos * pct) units of 1e-14 USD
    let n = limit.picos().saturating_mul(u128::from(pct));
    let scale: u128 = 100_000_000_000_000;
    let (whole, frac) = (n / scale, n % scale);
    if frac == 0 {
        return whole.to_string();
    }
    let digits = format!("{frac:014}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// All budgets, as loaded by one Query, with the lookup rules applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Budgets {
    pub users: HashMap<String, Budget>,
    pub default: Option<Budget>,
    pub org: Option<Budget>,
    /// Tag value budgets by (tag, value).
    pub tags: HashMap<(String, String), Budget>,
}

impl Budgets {
    pub fn from_list(list: Vec<Budget>) -> Budgets {
        let mut b = Budgets::default();
        for budget in list {
            match &budget.scope {
                BudgetScope::User(u) => {
                    b.users.insert(u.clone(), budget);
                }
                BudgetScope::Default => b.default = Some(budget),
                BudgetScope::Org => b.org = Some(budget),
                BudgetScope::Tag { tag, value } => {
                    b.tags.insert((tag.clone(), value.clone()), budget);
                }
            }
        }
        b
    }

    /// The budget that applies to `user`: their own, else the default.
    pub fn for_user(&self, user: &str) -> Option<&Budget> {
        self.users.get(user).or(self.default.as_ref())
    }

    /// The budget of one tag value, if set.
    pub fn for_tag(&self, tag: &str, value: &str) -> Option<&Budget> {
        self.tags.get(&(tag.to_string(), value.to_string()))
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
            && self.default.is_none()
            && self.org.is_none()
            && self.tags.is_empty()
    }
}

/// A change to one budget (`budget set`): `None` leaves a field as it is,
/// `Some(None)` removes a limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BudgetChange {
    pub daily: Option<Option<Usd>>,
    pub monthly: Option<Option<Usd>>,
    pub thresholds: Option<Thresholds>,
}

/// A stored item that is not a valid budget.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("budget item {sk}: {problem}")]
pub struct BadBudgetItem {
    pub sk: String,
    pub problem: String,
}

/// Reads a budget item.
pub fn budget_from_item(item: &HashMap<String, AttributeValue>) -> Result<Budget, BadBudgetItem> {
    let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    let sk = text("sk").unwrap_or_default();
    let bad = |problem: String| BadBudgetItem {
        sk: sk.clone(),
        problem,
    };
    let scope = match (text("scope").as_deref(), sk.as_str()) {
        (_, "DEFAULT") => BudgetScope::Default,
        (_, "ORG") => BudgetScope::Org,
        (_, s) if s.starts_with("USER#") => {
            BudgetScope::User(text("user").ok_or_else(|| bad("no `user` attribute".into()))?)
        }
        (_, s) if s.starts_with("TAG#") => BudgetScope::Tag {
            tag: text("tag").ok_or_else(|| bad("no `tag` attribute".into()))?,
            value: text("value").ok_or_else(|| bad("no `value` attribute".into()))?,
        },
        _ => return Err(bad("unknown sort key".into())),
    };
    let amount = |k: &str| -> Result<Option<Usd>, BadBudgetItem> {
        match item.get(k) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::N(n)) => n
                .parse::<Usd>()
                .map(Some)
                .map_err(|e| bad(format!("{k}: {e}"))),
            Some(other) => Err(bad(format!("{k} is not a number: {other:?}"))),
        }
    };
    let thresholds = match item.get("thresholds_pct") {
        None => Thresholds::default(),
        Some(AttributeValue::L(list)) => Thresholds::new(
            list.iter()
                .map(|v| {
                    v.as_n()
                        .ok()
                        .and_then(|n| n.parse::<u32>().ok())
                        .unwrap_or(0)
                })
                .collect(),
        )
        .map_err(|e| bad(e.to_string()))?,
        Some(other) => return Err(bad(format!("thresholds_pct is not a list: {other:?}"))),
    };
    Ok(Budget {
        scope,
        daily: amount("daily_usd")?,
        monthly: amount("monthly_usd")?,
        thresholds,
        updated_at: text("updated_at"),
    })
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn permanent(message: String) -> StoreError {
    StoreError::Permanent {
        message,
        source: None,
    }
}

/// The UpdateItem expression of a [`BudgetChange`]: `SET` what is given,
/// `REMOVE` limits set to `None`. Pure, for tests.
pub fn budget_update(
    scope: &BudgetScope,
    change: &BudgetChange,
    updated_at: &str,
) -> (
    String,
    HashMap<String, String>,
    HashMap<String, AttributeValue>,
) {
    let mut names = HashMap::new();
    let mut values = HashMap::new();
    let mut sets = Vec::new();
    let mut removes = Vec::new();
    let mut set = |name: &str, value: AttributeValue, names: &mut HashMap<String, String>| {
        let i = sets.len();
        names.insert(format!("#s{i}"), name.to_string());
        values.insert(format!(":s{i}"), value);
        sets.push(format!("#s{i} = :s{i}"));
    };
    set("kind", s(BUDGET_KIND), &mut names);
    set("scope", s(scope.label()), &mut names);
    if let BudgetScope::User(u) = scope {
        set("user", s(u), &mut names);
    }
    if let BudgetScope::Tag { tag, value } = scope {
        set("tag", s(tag), &mut names);
        set("value", s(value), &mut names);
    }
    for (attr, limit) in [("daily_usd", change.daily), ("monthly_usd", change.monthly)] {
        match limit {
            None => {}
            Some(Some(usd)) => set(attr, AttributeValue::N(usd.to_string()), &mut names),
            Some(None) => {
                let i = removes.len();
                names.insert(format!("#r{i}"), attr.to_string());
                removes.push(format!("#r{i}"));
            }
        }
    }
    if let Some(t) = &change.thresholds {
        let list = t
            .pcts()
            .iter()
            .map(|p| AttributeValue::N(p.to_string()))
            .collect();
        set("thresholds_pct", AttributeValue::L(list), &mut names);
    }
    set("updated_at", s(updated_at), &mut names);
    let mut expr = format!("SET {}", sets.join(", "));
    if !removes.is_empty() {
        expr.push_str(&format!(" REMOVE {}", removes.join(", ")));
    }
    (expr, names, values)
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| time::OffsetDateTime::now_utc())
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Budget operations on the usage table.
impl DynamoDbUsageStore {
    /// Creates or changes a budget (only the fields in `change`); returns the
    /// stored budget.
    pub async fn set_budget(
        &self,
        scope: &BudgetScope,
        change: &BudgetChange,
    ) -> Result<Budget, StoreError> {
        if *scope == BudgetScope::Org && matches!(change.daily, Some(Some(_))) {
            return Err(permanent(
                "the organisation's budget is monthly only".to_string(),
            ));
        }
        let (expr, names, values) = budget_update(scope, change, &now_rfc3339());
        let out = self
            .client()
            .update_item()
            .table_name(self.table())
            .key("pk", s(BUDGET_PK))
            .key("sk", s(scope.sk()))
            .update_expression(expr)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await
            .map_err(|e| classify_sdk_error(e, self.table()))?;
        let item = out.attributes().cloned().unwrap_or_default();
        budget_from_item(&item).map_err(|e| permanent(e.to_string()))
    }

    /// One budget (one GetItem, strongly consistent); `None` when not set.
    pub async fn get_budget(&self, scope: &BudgetScope) -> Result<Option<Budget>, StoreError> {
        let out = self
            .client()
            .get_item()
            .table_name(self.table())
            .key("pk", s(BUDGET_PK))
            .key("sk", s(scope.sk()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify_sdk_error(e, self.table()))?;
        out.item()
            .map(budget_from_item)
            .transpose()
            .map_err(|e| permanent(e.to_string()))
    }

    /// The budget that applies to `user`: their own, else the default (at
    /// most two GetItems).
    pub async fn effective_budget(&self, user: &str) -> Result<Option<Budget>, StoreError> {
        match self
            .get_budget(&BudgetScope::User(user.to_string()))
            .await?
        {
            Some(b) => Ok(Some(b)),
            None => self.get_budget(&BudgetScope::Default).await,
        }
    }

    /// Every budget item (one paginated Query, strongly consistent), each
    /// read or refused, in key order.
    pub async fn budget_items(&self) -> Result<Vec<Result<Budget, BadBudgetItem>>, StoreError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client()
                .query()
                .table_name(self.table())
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(BUDGET_PK))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| classify_sdk_error(e, self.table()))?;
            out.extend(page.items().iter().map(budget_from_item));
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        Ok(out)
    }

    /// Every budget, organisation first, then the default, then users by
    /// id, then tag values. An invalid item is an error naming it.
    pub async fn list_budgets(&self) -> Result<Vec<Budget>, StoreError> {
        let mut out = BTreeMap::new();
        for item in self.budget_items().await? {
            let b = item.map_err(|e| permanent(e.to_string()))?;
            let order = match &b.scope {
                BudgetScope::Org => (0, String::new()),
                BudgetScope::Default => (1, String::new()),
                BudgetScope::User(u) => (2, u.clone()),
                // The key and value hold no NUL: the pair sorts by key, then value.
                BudgetScope::Tag { tag, value } => (3, format!("{tag}\0{value}")),
            };
            out.insert(order, b);
        }
        Ok(out.into_values().collect())
    }

    /// Deletes a budget; returns whether it existed.
    pub async fn delete_budget(&self, scope: &BudgetScope) -> Result<bool, StoreError> {
        let out = self
            .client()
            .delete_item()
            .table_name(self.table())
            .key("pk", s(BUDGET_PK))
            .key("sk", s(scope.sk()))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| classify_sdk_error(e, self.table()))?;
        Ok(out.attributes().is_some_and(|a| !a.is_empty()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn usd(s: &str) -> Usd {
        s.parse().unwrap()
    }

    #[test]
    fn a_change_crossing_one_threshold_reports_only_that_one() {
        let t = Thresholds::default();
        assert_eq!(crossed(usd("3"), usd("4.5"), usd("5"), &t), vec![80]);
    }

    #[test]
    fn one_change_can_cross_several_thresholds() {
        let t = Thresholds::default();
        assert_eq!(crossed(usd("0"), usd("7"), usd("5"), &t), vec![50, 80, 100]);
    }

    #[test]
    fn reaching_a_threshold_exactly_crosses_it_and_starting_on_it_does_not() {
        let t = Thresholds::default();
        assert_eq!(crossed(usd("2"), usd("2.5"), usd("5"), &t), vec![50]);
        assert_eq!(
            crossed(usd("2.5"), usd("3"), usd("5"), &t),
            Vec::<u32>::new()
        );
    }

    #[test]
    fn spend_below_every_threshold_crosses_nothing() {
        let t = Thresholds::default();
        assert!(crossed(usd("0"), usd("2.499999999999"), usd("5"), &t).is_empty());
    }

    #[test]
    fn crossings_are_exact_at_pico_dollar_resolution() {
        // 80% of 0.000000000003 is 0.0000000000024: between 2 and 3 picos.
        let t = Thresholds::new(vec![80]).unwrap();
        let limit = Usd::from_picos(3);
        assert!(crossed(Usd::from_picos(1), Usd::from_picos(2), limit, &t).is_empty());
        assert_eq!(
            crossed(Usd::from_picos(2), Usd::from_picos(3), limit, &t),
            vec![80]
        );
        assert_eq!(amount_at(limit, 80), "0.0000000000024");
        assert_eq!(amount_at(usd("5"), 80), "4");
        assert_eq!(amount_at(usd("100"), 50), "50");
    }

    #[test]
    fn thresholds_parse_sort_and_reject_nonsense() {
        assert_eq!(
            Thresholds::parse("100, 50%,80").unwrap().pcts(),
            &[50, 80, 100]
        );
        assert_eq!(Thresholds::parse("80,80").unwrap().pcts(), &[80]);
        for bad in ["", "0", "1001", "half", "-5", "12.5"] {
            assert!(Thresholds::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn budget_keys_encode_user_ids_and_never_collide_with_default_or_org() {
        assert_eq!(BudgetScope::User("a#b".into()).sk(), "USER#a%23b");
        assert_ne!(
            BudgetScope::User("DEFAULT".into()).sk(),
            BudgetScope::Default.sk()
        );
        assert_ne!(BudgetScope::User("ORG".into()).sk(), BudgetScope::Org.sk());
    }

    #[test]
    fn a_budget_item_round_trips_through_its_update_expression() {
        let scope = BudgetScope::User("alice".into());
        let change = BudgetChange {
            daily: Some(Some(usd("5"))),
            monthly: Some(None),
            thresholds: Some(Thresholds::parse("50,90").unwrap()),
        };
        let (expr, names, values) = budget_update(&scope, &change, "2026-11-01T00:00:00Z");
        assert!(
            expr.starts_with("SET ") && expr.contains(" REMOVE #r0"),
            "{expr}"
        );
        assert_eq!(names["#r0"], "monthly_usd");
        // Apply the SETs by hand and read the item back.
        let mut item: HashMap<String, AttributeValue> = names
            .iter()
            .filter(|(k, _)| k.starts_with("#s"))
            .map(|(k, v)| (v.clone(), values[&k.replace('#', ":")].clone()))
            .collect();
        item.insert("sk".into(), s(scope.sk()));
        let b = budget_from_item(&item).unwrap();
        assert_eq!(b.scope, scope);
        assert_eq!(b.daily, Some(usd("5")));
        assert_eq!(b.monthly, None);
        assert_eq!(b.thresholds.pcts(), &[50, 90]);
        assert_eq!(item["daily_usd"], AttributeValue::N("5".into()));
    }

    #[test]
    fn a_user_without_a_budget_of_their_own_gets_the_default() {
        let own = Budget {
            scope: BudgetScope::User("alice".into()),
            daily: Some(usd("5")),
            monthly: None,
            thresholds: Thresholds::default(),
            updated_at: None,
        };
        let default = Budget {
            scope: BudgetScope::Default,
            monthly: Some(usd("50")),
            daily: None,
            ..own.clone()
        };
        let b = Budgets::from_list(vec![own.clone(), default.clone()]);
        assert_eq!(b.for_user("alice"), Some(&own));
        assert_eq!(b.for_user("bob"), Some(&default));
        assert_eq!(Budgets::default().for_user("bob"), None);
    }

    #[test]
    fn crossings_match_a_table_of_hand_computed_cases() {
        // (old, new, limit, thresholds, crossed), every amount in USD.
        let cases: [(&str, &str, &str, &str, &[u32]); 14] = [
            ("0", "49.99", "100", "50,80,100", &[]),
            ("0", "50", "100", "50,80,100", &[50]),
            ("49.999999999999", "50", "100", "50,80,100", &[50]),
            ("50", "79.999999999999", "100", "50,80,100", &[]),
            ("50", "80", "100", "50,80,100", &[80]),
            ("79", "100", "100", "50,80,100", &[80, 100]),
            ("100", "1000", "100", "50,80,100", &[]),
            ("0", "0.000000000001", "0.000000000001", "100", &[100]),
            // 150% of 7 is 10.5: 10.49 is short, 10.5 reaches it.
            ("10", "10.49", "7", "150", &[]),
            ("10.49", "10.5", "7", "150", &[150]),
            // 1% of 0.01 is 0.0001.
            ("0", "0.000099999999", "0.01", "1", &[]),
            ("0.000099999999", "0.0001", "0.01", "1", &[1]),
            // 1000% of 2 is 20.
            ("19.999999999999", "20", "2", "1000", &[1000]),
            ("3", "2", "5", "50", &[]),
        ];
        for (old, new, limit, pcts, want) in cases {
            let t = Thresholds::parse(pcts).unwrap();
            assert_eq!(
                crossed(usd(old), usd(new), usd(limit), &t),
                want,
                "{old} -> {new} of {limit} at {pcts}"
            );
        }
    }

    #[test]
    fn a_zero_limit_is_never_crossed() {
        let t = Thresholds::parse("1,100,1000").unwrap();
        assert!(crossed(usd("0"), usd("1000000"), Usd::ZERO, &t).is_empty());
    }

    fn arb_thresholds() -> impl Strategy<Value = Thresholds> {
        proptest::collection::vec(1u32..=MAX_THRESHOLD_PCT, 1..6)
            .prop_map(|p| Thresholds::new(p).unwrap())
    }

    fn picos(p: u128) -> Usd {
        Usd::from_picos(p)
    }

    proptest! {
        /// A limit of `100 * m` picos puts `pct`% of it at exactly
        /// `m * pct` picos: that spend reaches it, one pico less does not.
        #[test]
        fn a_threshold_on_a_whole_pico_is_crossed_exactly_when_reached(
            m in 1u128..1_000_000_000_000, pct in 1u32..=MAX_THRESHOLD_PCT, below in 1u128..1_000, above in 0u128..1_000,
        ) {
            let t = Thresholds::new(vec![pct]).unwrap();
            let limit = picos(100 * m);
            let at = m * u128::from(pct);
            let short = at - 1;
            let start = short.saturating_sub(below);
            prop_assert!(crossed(picos(start), picos(short), limit, &t).is_empty());
            prop_assert_eq!(crossed(picos(short), picos(at), limit, &t), vec![pct]);
            prop_assert_eq!(crossed(picos(start), picos(at + above), limit, &t), vec![pct]);
            prop_assert!(crossed(picos(at), picos(at + above), limit, &t).is_empty());
        }

        /// `100/d`% of a limit of `d*k + r` picos (0 <= r < d) is `k + r/d`
        /// picos: reached by `k` when `r == 0`, else first by `k + 1`.
        #[test]
        fn a_threshold_between_two_picos_is_crossed_by_the_next_whole_pico(
            d in prop::sample::select(vec![1u128, 2, 4, 5, 10, 20, 25, 50, 100]),
            k in 1u128..1_000_000_000_000,
            r_seed in 0u128..100,
        ) {
            let r = r_seed % d;
            let pct = u32::try_from(100 / d).unwrap();
            let t = Thresholds::new(vec![pct]).unwrap();
            let limit = picos(d * k + r);
            let first = if r == 0 { k } else { k + 1 };
            prop_assert!(crossed(picos(0), picos(first - 1), limit, &t).is_empty());
            prop_assert_eq!(crossed(picos(first - 1), picos(first), limit, &t), vec![pct]);
            prop_assert!(crossed(picos(first), picos(first + 1), limit, &t).is_empty());
        }

        /// More spend never un-crosses a threshold; a later start never adds one.
        #[test]
        fn crossings_grow_with_the_new_spend_and_shrink_with_the_old(
            a in 0u128..10_000_000, b in 0u128..10_000_000, c in 0u128..10_000_000,
            limit in 0u128..5_000_000, t in arb_thresholds(),
        ) {
            let mut v = [a, b, c];
            v.sort_unstable();
            let [lo, mid, hi] = v;
            let l = picos(limit);
            let to_mid = crossed(picos(lo), picos(mid), l, &t);
            let to_hi = crossed(picos(lo), picos(hi), l, &t);
            prop_assert!(to_mid.iter().all(|p| to_hi.contains(p)), "{:?} then {:?}", to_mid, to_hi);
            let from_mid = crossed(picos(mid), picos(hi), l, &t);
            prop_assert!(from_mid.iter().all(|p| to_hi.contains(p)), "{:?} within {:?}", from_mid, to_hi);
            // Splitting a change in two loses and repeats nothing.
            let mut split = to_mid.clone();
            split.extend(from_mid);
            prop_assert_eq!(split, to_hi);
        }

        /// Crossings are a sorted subset of the thresholds, none for no change,
        /// all of them from zero to ten times the limit, and the same in any
        /// unit (scaling every amount by `k` changes nothing).
        #[test]
        fn crossings_are_sorted_thresholds_and_independent_of_scale(
            old in 0u128..10_000_000, step in 0u128..10_000_000, limit in 1u128..5_000_000,
            k in 1u128..1_000_000, t in arb_thresholds(),
        ) {
            let (o, n, l) = (picos(old), picos(old + step), picos(limit));
            let got = crossed(o, n, l, &t);
            prop_assert!(got.windows(2).all(|w| w[0] < w[1]), "{:?}", got);
            prop_assert!(got.iter().all(|p| t.pcts().contains(p)), "{:?}", got);
            prop_assert!(crossed(o, o, l, &t).is_empty());
            prop_assert_eq!(crossed(picos(0), picos(10 * limit), l, &t), t.pcts().to_vec());
            prop_assert_eq!(
                crossed(picos(k * old), picos(k * (old + step)), picos(k * limit), &t),
                got
            );
        }

        #[test]
        fn a_sequence_of_changes_crosses_each_threshold_at_most_once(steps in proptest::collection::vec(0u64..3_000_000, 1..20)) {
            let t = Thresholds::default();
            let limit = Usd::from_picos(10_000_000);
            let mut seen = Vec::new();
            let mut spend = 0u128;
            for s in steps {
                let new = spend + u128::from(s);
                seen.extend(crossed(Usd::from_picos(spend), Usd::from_picos(new), limit, &t));
                spend = new;
            }
            let mut dedup = seen.clone();
            dedup.dedup();
            prop_assert_eq!(seen.len(), dedup.len());
        }
    }
}
