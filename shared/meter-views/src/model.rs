//! What the views read: aggregate rows (the data contract's items, shaped
//! like `bedrock-meter report` rows) and budgets.

use meter_core::{Counters, Day, Month, Usd};
use serde::Serialize;

/// One aggregate, or a total computed from aggregates. Serialises exactly
/// like a row of `bedrock-meter report --format json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Row {
    /// `user_model_day`, `user_day`, `user_month`, `model_day`, or a total
    /// computed here (`organisation_day`, `organisation_month`,
    /// `model_month`, `user_model_range`, `user_range`); for attribution
    /// tags `tag_model_day`, `tag_month`, and the computed `tag_day`,
    /// `tag_model_range`, `tag_range`.
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub day: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub month: Option<String>,
    /// The attribution tag key (`tag_*` kinds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The attribution tag value (`tag_*` kinds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    pub invocations: u128,
    pub errors: u128,
    pub input_tokens: u128,
    pub output_tokens: u128,
    pub cache_read_input_tokens: u128,
    pub cache_write_input_tokens: u128,
    pub unpriced_invocations: u128,
    /// The exact decimal (never rounded).
    pub cost_usd: String,
    #[serde(skip)]
    pub cost: Usd,
    /// RFC 3339 UTC of the item's last write (`updated_at`), when read from
    /// the table.
    #[serde(skip)]
    pub updated_at: Option<String>,
}

impl Row {
    /// An empty total of `kind`.
    pub fn total(kind: &str) -> Row {
        Row {
            kind: kind.to_string(),
            cost_usd: "0".into(),
            ..Row::default()
        }
    }

    /// A row from counters (for the in-memory reader and computed totals).
    pub fn from_counters(kind: &str, c: &Counters) -> Row {
        let mut r = Row::total(kind);
        r.set_counters(c);
        r
    }

    /// The counters of this row.
    pub fn counters(&self) -> Counters {
        Counters {
            invocations: self.invocations,
            errors: self.errors,
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            cache_read_input_tokens: self.cache_read_input_tokens,
            cache_write_input_tokens: self.cache_write_input_tokens,
            unpriced_invocations: self.unpriced_invocations,
            cost_usd: self.cost,
        }
    }

    fn set_counters(&mut self, c: &Counters) {
        self.invocations = c.invocations;
        self.errors = c.errors;
        self.input_tokens = c.input_tokens;
        self.output_tokens = c.output_tokens;
        self.cache_read_input_tokens = c.cache_read_input_tokens;
        self.cache_write_input_tokens = c.cache_write_input_tokens;
        self.unpriced_invocations = c.unpriced_invocations;
        self.cost = c.cost_usd;
        self.cost_usd = c.cost_usd.to_string();
    }

    /// Adds another row's counters (and keeps the newer `updated_at`).
    pub fn add(&mut self, other: &Row) {
        let mut c = self.counters();
        c.add(&other.counters());
        self.set_counters(&c);
        self.updated_at = newest(self.updated_at.take(), other.updated_at.clone());
    }

    /// The row's day, parsed.
    pub fn day(&self) -> Option<Day> {
        self.day.as_deref().and_then(Day::parse)
    }

    /// The row's month, parsed.
    pub fn month(&self) -> Option<Month> {
        self.month.as_deref().and_then(Month::parse)
    }

    /// Whether the spend shown is a lower bound (some invocations unpriced).
    pub fn is_lower_bound(&self) -> bool {
        self.unpriced_invocations > 0
    }
}

/// The later of two RFC 3339 UTC stamps (they sort as text).
pub fn newest(a: Option<String>, b: Option<String>) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b > a { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// Whose budget a [`BudgetLimits`] is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BudgetOwner {
    /// The organisation's (monthly only).
    Org,
    /// Users without a budget of their own.
    Default,
    /// One user's own budget (raw user id).
    User(String),
}

impl BudgetOwner {
    /// `org`, `default` or `user`, as `bedrock-meter budget list` says.
    pub fn label(&self) -> &'static str {
        match self {
            BudgetOwner::Org => "org",
            BudgetOwner::Default => "default",
            BudgetOwner::User(_) => "user",
        }
    }
}

/// One stored budget, as the views need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetLimits {
    pub owner: BudgetOwner,
    /// Limit per UTC day.
    pub daily: Option<Usd>,
    /// Limit per UTC month.
    pub monthly: Option<Usd>,
    /// Alert thresholds in whole percent, ascending.
    pub thresholds: Vec<u32>,
}

/// Every budget, with the lookup rule of `docs/budgets.md`: a user's own
/// budget replaces the default as a whole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BudgetBook {
    pub all: Vec<BudgetLimits>,
}

impl BudgetBook {
    /// The organisation's budget.
    pub fn org(&self) -> Option<&BudgetLimits> {
        self.all.iter().find(|b| b.owner == BudgetOwner::Org)
    }

    /// The budget that applies to `user`: their own, else the default.
    pub fn for_user(&self, user: &str) -> Option<&BudgetLimits> {
        self.all
            .iter()
            .find(|b| matches!(&b.owner, BudgetOwner::User(u) if u == user))
            .or_else(|| self.all.iter().find(|b| b.owner == BudgetOwner::Default))
    }
}

/// The thresholds (percent) that `spend` has reached against `limit`:
/// `spend * 100 >= pct * limit`, exactly in pico-dollars. A zero limit
/// reaches nothing.
pub fn reached(spend: Usd, limit: Usd, thresholds: &[u32]) -> Vec<u32> {
    if limit == Usd::ZERO {
        return Vec::new();
    }
    let s100 = spend.picos().saturating_mul(100);
    thresholds
        .iter()
        .copied()
        .filter(|&p| limit.picos().saturating_mul(u128::from(p)) <= s100)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(s: &str) -> Usd {
        s.parse().unwrap()
    }

    #[test]
    fn reaching_a_threshold_exactly_counts_and_one_pico_below_does_not() {
        let t = [50, 80, 100];
        assert_eq!(reached(usd("4"), usd("5"), &t), vec![50, 80]);
        assert_eq!(reached(usd("5"), usd("5"), &t), vec![50, 80, 100]);
        let just_below = Usd::from_picos(usd("2.5").picos() - 1);
        assert!(reached(just_below, usd("5"), &t).is_empty());
        assert!(reached(usd("9"), Usd::ZERO, &t).is_empty());
    }

    #[test]
    fn a_users_own_budget_replaces_the_default() {
        let own = BudgetLimits {
            owner: BudgetOwner::User("alice".into()),
            daily: Some(usd("1")),
            monthly: None,
            thresholds: vec![100],
        };
        let default = BudgetLimits {
            owner: BudgetOwner::Default,
            daily: None,
            monthly: Some(usd("50")),
            thresholds: vec![100],
        };
        let book = BudgetBook {
            all: vec![default.clone(), own.clone()],
        };
        assert_eq!(book.for_user("alice"), Some(&own));
        assert_eq!(book.for_user("bob"), Some(&default));
        assert_eq!(book.org(), None);
    }

    #[test]
    fn adding_rows_is_exact_and_keeps_the_newest_stamp() {
        let mut a = Row::total("t");
        let mut b = Row::from_counters(
            "user_day",
            &Counters {
                invocations: 2,
                unpriced_invocations: 1,
                cost_usd: usd("0.000000000001"),
                ..Counters::default()
            },
        );
        b.updated_at = Some("2026-11-20T10:00:00Z".into());
        let mut c = b.clone();
        c.updated_at = Some("2026-11-20T09:00:00Z".into());
        a.add(&b);
        a.add(&c);
        assert_eq!(a.cost_usd, "0.000000000002");
        assert_eq!(a.invocations, 4);
        assert!(a.is_lower_bound());
        assert_eq!(a.updated_at.as_deref(), Some("2026-11-20T10:00:00Z"));
    }
}
