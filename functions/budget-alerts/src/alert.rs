//! Crossings, alert marker keys and the notification text. Pure.

use meter_core::Usd;
use meter_store::budgets::{amount_at, crossed, Budget, BudgetScope, Budgets};
use meter_store::keys::component;

use crate::change::{Change, PeriodKind};

/// Whose spend crossed a threshold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertScope {
    /// One user; `own_budget` = their own budget, else the default one.
    User { user: String, own_budget: bool },
    /// The organisation (all users), monthly.
    Org,
    /// One value of an attribution tag, monthly.
    Tag { tag: String, value: String },
}

/// One threshold crossing, with everything the message needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub scope: AlertScope,
    pub kind: PeriodKind,
    /// `YYYY-MM-DD` or `YYYY-MM`.
    pub period: String,
    /// Spend after the change (user) or the organisation's month total.
    pub spend: Usd,
    pub limit: Usd,
    /// Whole percent of `limit`.
    pub threshold: u32,
    /// Biggest contributors, biggest first: models (user alerts) or users
    /// (organisation alerts), with their spend in the period.
    pub top: Vec<(String, Usd)>,
}

/// The key of an alert marker: one per (scope, period, threshold, limit).
/// The limit is part of the key so that changing a budget re-arms its
/// thresholds against the new limit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AlertKey {
    pub pk: String,
    pub sk: String,
}

impl Alert {
    pub fn key(&self) -> AlertKey {
        let period = match self.kind {
            PeriodKind::Day => format!("D#{}", self.period),
            PeriodKind::Month => format!("MONTH#{}", self.period),
        };
        let pk = match &self.scope {
            AlertScope::User { user, .. } => format!("ALERT#U#{}#{period}", component(user)),
            AlertScope::Org => format!("ALERT#ORG#{period}"),
            AlertScope::Tag { tag, value } => {
                format!("ALERT#T#{}#{}#{period}", component(tag), component(value))
            }
        };
        AlertKey {
            pk,
            sk: format!("T#{:04}#L#{}", self.threshold, self.limit),
        }
    }

    /// The user, or `None` for the organisation.
    pub fn user(&self) -> Option<&str> {
        match &self.scope {
            AlertScope::User { user, .. } => Some(user),
            AlertScope::Org | AlertScope::Tag { .. } => None,
        }
    }

    /// The (tag, value) of a tag alert.
    pub fn tag(&self) -> Option<(&str, &str)> {
        match &self.scope {
            AlertScope::Tag { tag, value } => Some((tag, value)),
            _ => None,
        }
    }
}

/// The crossings of one user's change against their budget (own or
/// default), ascending by threshold; `top` left empty.
pub fn user_crossings(change: &Change, budgets: &Budgets) -> Vec<Alert> {
    if let Some((tag, value)) = &change.tag {
        return tag_crossings(change, tag, value, budgets);
    }
    let Some(budget) = budgets.for_user(&change.user) else {
        return Vec::new();
    };
    let own_budget = matches!(budget.scope, BudgetScope::User(_));
    let Some(limit) = limit_of(budget, change.kind) else {
        return Vec::new();
    };
    crossed(change.old, change.new, limit, &budget.thresholds)
        .into_iter()
        .map(|threshold| Alert {
            scope: AlertScope::User {
                user: change.user.clone(),
                own_budget,
            },
            kind: change.kind,
            period: change.period.clone(),
            spend: change.new,
            limit,
            threshold,
            top: Vec::new(),
        })
        .collect()
}

/// The crossings of one tag value's month against its budget. A
/// `tag_model_day` change (kind day) is one model's share of the day: its
/// crossings come from the value's day total instead ([`tag_day_reached`]).
fn tag_crossings(change: &Change, tag: &str, value: &str, budgets: &Budgets) -> Vec<Alert> {
    if change.kind == PeriodKind::Day {
        return Vec::new();
    }
    let Some(budget) = budgets.for_tag(tag, value) else {
        return Vec::new();
    };
    let Some(limit) = limit_of(budget, change.kind) else {
        return Vec::new();
    };
    crossed(change.old, change.new, limit, &budget.thresholds)
        .into_iter()
        .map(|threshold| Alert {
            scope: AlertScope::Tag {
                tag: tag.to_string(),
                value: value.to_string(),
            },
            kind: change.kind,
            period: change.period.clone(),
            spend: change.new,
            limit,
            threshold,
            top: Vec::new(),
        })
        .collect()
}

fn limit_of(budget: &Budget, kind: PeriodKind) -> Option<Usd> {
    match kind {
        PeriodKind::Day => budget.daily,
        PeriodKind::Month => budget.monthly,
    }
    .filter(|l| *l > Usd::ZERO)
}

/// Whether `(tag, value)` has a daily limit (its day total is worth a read).
pub fn has_tag_daily_limit(tag: &str, value: &str, budgets: &Budgets) -> bool {
    budgets
        .for_tag(tag, value)
        .and_then(|b| limit_of(b, PeriodKind::Day))
        .is_some()
}

/// The thresholds of a tag value's daily budget reached by its day total
/// `spend` (the sum of its `tag_model_day` items). Level, not edge, as for
/// the organisation: the total only grows within a day, and the alert
/// marker makes each threshold alert once.
pub fn tag_day_reached(
    tag: &str,
    value: &str,
    day: &str,
    spend: Usd,
    budgets: &Budgets,
) -> Vec<Alert> {
    let Some(budget) = budgets.for_tag(tag, value) else {
        return Vec::new();
    };
    let Some(limit) = limit_of(budget, PeriodKind::Day) else {
        return Vec::new();
    };
    crossed(Usd::ZERO, spend, limit, &budget.thresholds)
        .into_iter()
        .map(|threshold| Alert {
            scope: AlertScope::Tag {
                tag: tag.to_string(),
                value: value.to_string(),
            },
            kind: PeriodKind::Day,
            period: day.to_string(),
            spend,
            limit,
            threshold,
            top: Vec::new(),
        })
        .collect()
}

/// The organisation's thresholds reached by its month total `spend`
/// (level, not edge: the total only grows within a month, so "reached now"
/// is "crossed at some change"; the marker makes each one alert once).
pub fn org_reached(month: &str, spend: Usd, budgets: &Budgets) -> Vec<Alert> {
    let Some(budget) = &budgets.org else {
        return Vec::new();
    };
    let Some(limit) = limit_of(budget, PeriodKind::Month) else {
        return Vec::new();
    };
    crossed(Usd::ZERO, spend, limit, &budget.thresholds)
        .into_iter()
        .map(|threshold| Alert {
            scope: AlertScope::Org,
            kind: PeriodKind::Month,
            period: month.to_string(),
            spend,
            limit,
            threshold,
            top: Vec::new(),
        })
        .collect()
}

/// The notification: subject, text body and message attributes
/// `(name, DataType, value)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub body: String,
    pub attributes: Vec<(&'static str, &'static str, String)>,
}

/// Quotes a value for a POSIX shell when it needs it.
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@%+=:,./_-".contains(&b));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// SNS subjects: ASCII, no control characters, at most 100 characters.
fn subject_safe(s: &str) -> String {
    let ascii: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    if ascii.len() <= 100 {
        ascii
    } else {
        format!("{}...", &ascii[..97])
    }
}

/// Renders an alert.
pub fn render(alert: &Alert) -> Rendered {
    let kind = alert.kind.label();
    let budget_name = match alert.kind {
        PeriodKind::Day => "daily",
        PeriodKind::Month => "monthly",
    };
    let (who, whose_budget, command, top_label) = match &alert.scope {
        AlertScope::User { user, own_budget } => (
            user.clone(),
            if *own_budget {
                format!("{user}'s own {budget_name} budget")
            } else {
                format!("the default {budget_name} budget (no budget of their own)")
            },
            format!(
                "bedrock-meter report --user {} --{kind} {}",
                shell_quote(user),
                alert.period
            ),
            "Top models",
        ),
        AlertScope::Org => (
            "The organisation".to_string(),
            "the organisation's monthly budget".to_string(),
            format!("bedrock-meter report --month {} --top 10", alert.period),
            "Top users",
        ),
        AlertScope::Tag { tag, value } => (
            format!("{tag}={value}"),
            format!("the {tag}={value} {budget_name} budget"),
            format!(
                "bedrock-meter report --tag {} --{kind} {}",
                shell_quote(&format!("{tag}={value}")),
                alert.period
            ),
            "Top models",
        ),
    };
    let at = amount_at(alert.limit, alert.threshold);
    let subject = subject_safe(&format!(
        "Bedrock budget: {who} reached {}% of {budget_name} limit ({})",
        alert.threshold, alert.period
    ));
    let mut body = String::new();
    body.push_str(&format!(
        "{who} reached {}% of {whose_budget} for {kind} {} (UTC).\n\n",
        alert.threshold, alert.period
    ));
    if let Some(user) = alert.user() {
        body.push_str(&format!("User:       {user}\n"));
    }
    if let Some((tag, value)) = alert.tag() {
        body.push_str(&format!("Tag:        {tag}={value}\n"));
    }
    body.push_str(&format!("Period:     {kind} {} (UTC)\n", alert.period));
    body.push_str(&format!("Spend:      {} USD\n", alert.spend));
    body.push_str(&format!("Limit:      {} USD\n", alert.limit));
    body.push_str(&format!("Threshold:  {}% = {at} USD\n", alert.threshold));
    if !alert.top.is_empty() {
        body.push_str(&format!("{top_label}:\n"));
        let width = alert
            .top
            .iter()
            .map(|(n, _)| n.chars().count().min(60))
            .max()
            .unwrap_or(0);
        for (name, spend) in &alert.top {
            body.push_str(&format!("  {name:<width$}  {spend} USD\n"));
        }
    }
    body.push_str(&format!("Details:    {command}\n"));
    body.push_str(
        "\nSpend is exact for priced invocations; invocations of models without a price are \
         not included (see unpriced_invocations in the report).\n",
    );
    let mut attributes = vec![
        (
            "scope",
            "String",
            match alert.scope {
                AlertScope::User { .. } => "user",
                AlertScope::Org => "org",
                AlertScope::Tag { .. } => "tag",
            }
            .to_string(),
        ),
        ("period_kind", "String", kind.to_string()),
        ("period", "String", alert.period.clone()),
        ("threshold", "Number", alert.threshold.to_string()),
        ("limit_usd", "Number", alert.limit.to_string()),
    ];
    if let Some(user) = alert.user() {
        attributes.insert(0, ("user", "String", user.to_string()));
    }
    if let Some((tag, value)) = alert.tag() {
        attributes.insert(0, ("tag_value", "String", value.to_string()));
        attributes.insert(0, ("tag", "String", tag.to_string()));
    }
    Rendered {
        subject,
        body,
        attributes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meter_store::budgets::Thresholds;

    fn usd(s: &str) -> Usd {
        s.parse().unwrap()
    }

    fn change(user: &str, kind: PeriodKind, old: &str, new: &str) -> Change {
        Change {
            event_id: "e".into(),
            user: user.into(),
            tag: None,
            kind,
            period: if kind == PeriodKind::Day {
                "2026-11-01".into()
            } else {
                "2026-11".into()
            },
            old: usd(old),
            new: usd(new),
        }
    }

    fn budgets() -> Budgets {
        Budgets::from_list(vec![
            Budget {
                scope: BudgetScope::User("alice".into()),
                daily: Some(usd("5")),
                monthly: None,
                thresholds: Thresholds::default(),
                updated_at: None,
            },
            Budget {
                scope: BudgetScope::Default,
                daily: None,
                monthly: Some(usd("50")),
                thresholds: Thresholds::parse("100").unwrap(),
                updated_at: None,
            },
            Budget {
                scope: BudgetScope::Org,
                daily: None,
                monthly: Some(usd("1000")),
                thresholds: Thresholds::default(),
                updated_at: None,
            },
        ])
    }

    #[test]
    fn a_user_with_an_own_daily_budget_alerts_per_threshold_and_ignores_the_default_monthly() {
        let b = budgets();
        let alerts = user_crossings(&change("alice", PeriodKind::Day, "0", "4.2"), &b);
        assert_eq!(
            alerts.iter().map(|a| a.threshold).collect::<Vec<_>>(),
            vec![50, 80]
        );
        assert!(user_crossings(&change("alice", PeriodKind::Month, "0", "400"), &b).is_empty());
    }

    #[test]
    fn an_unknown_user_falls_back_to_the_default_budget() {
        let alerts = user_crossings(&change("zoe", PeriodKind::Month, "49", "51"), &budgets());
        assert_eq!(alerts.len(), 1);
        assert_eq!(
            alerts[0].scope,
            AlertScope::User {
                user: "zoe".into(),
                own_budget: false
            }
        );
    }

    #[test]
    fn a_tag_value_budget_alerts_on_its_month_with_the_tag_in_the_attributes() {
        let mut b = budgets();
        b.tags.insert(
            ("team".into(), "pay#<b>".into()),
            Budget {
                scope: BudgetScope::Tag {
                    tag: "team".into(),
                    value: "pay#<b>".into(),
                },
                daily: None,
                monthly: Some(usd("500")),
                thresholds: Thresholds::default(),
                updated_at: None,
            },
        );
        let mut c = change("", PeriodKind::Month, "240", "410");
        c.tag = Some(("team".into(), "pay#<b>".into()));
        let alerts = user_crossings(&c, &b);
        assert_eq!(
            alerts.iter().map(|a| a.threshold).collect::<Vec<_>>(),
            vec![50, 80]
        );
        assert_eq!(alerts[0].key().pk, "ALERT#T#team#pay%23<b>#MONTH#2026-11");
        let r = render(&alerts[1]);
        assert!(r.attributes.contains(&("tag", "String", "team".into())));
        assert!(r
            .attributes
            .contains(&("tag_value", "String", "pay#<b>".into())));
        assert!(r.attributes.contains(&("scope", "String", "tag".into())));
        assert!(
            r.body
                .contains("bedrock-meter report --tag 'team=pay#<b>' --month 2026-11"),
            "{}",
            r.body
        );
        // A tag value without a budget, and the default user budget, do not apply.
        c.tag = Some(("team".into(), "other".into()));
        assert!(user_crossings(&c, &b).is_empty());
    }

    #[test]
    fn a_tag_value_daily_budget_alerts_on_the_day_total_not_on_one_models_change() {
        let mut b = budgets();
        b.tags.insert(
            ("team".into(), "pay".into()),
            Budget {
                scope: BudgetScope::Tag {
                    tag: "team".into(),
                    value: "pay".into(),
                },
                daily: Some(usd("2")),
                monthly: None,
                thresholds: Thresholds::default(),
                updated_at: None,
            },
        );
        assert!(has_tag_daily_limit("team", "pay", &b));
        assert!(!has_tag_daily_limit("team", "other", &b));
        // One model's item going 0 -> 1.7 crosses nothing by itself.
        let mut c = change("", PeriodKind::Day, "0", "1.7");
        c.tag = Some(("team".into(), "pay".into()));
        assert!(user_crossings(&c, &b).is_empty());
        // The day total of 1.7 has reached 50% and 80% of 2 USD.
        let alerts = tag_day_reached("team", "pay", "2026-11-20", usd("1.7"), &b);
        assert_eq!(
            alerts.iter().map(|a| a.threshold).collect::<Vec<_>>(),
            vec![50, 80]
        );
        assert_eq!(alerts[0].key().pk, "ALERT#T#team#pay#D#2026-11-20");
        let r = render(&alerts[1]);
        assert!(r
            .attributes
            .contains(&("period_kind", "String", "day".into())));
        assert!(
            r.body
                .contains("bedrock-meter report --tag team=pay --day 2026-11-20"),
            "{}",
            r.body
        );
        assert!(r.body.contains("the team=pay daily budget"), "{}", r.body);
        assert!(tag_day_reached("team", "other", "2026-11-20", usd("9"), &b).is_empty());
    }

    #[test]
    fn organisation_thresholds_are_those_reached_by_the_month_total() {
        let reached = org_reached("2026-11", usd("800"), &budgets());
        assert_eq!(
            reached.iter().map(|a| a.threshold).collect::<Vec<_>>(),
            vec![50, 80]
        );
    }

    #[test]
    fn alert_keys_separate_users_periods_thresholds_and_limits() {
        let mut a = user_crossings(&change("a#b", PeriodKind::Month, "0", "50"), &budgets());
        let k = a[0].key();
        assert_eq!(k.pk, "ALERT#U#a%23b#MONTH#2026-11");
        assert_eq!(k.sk, "T#0100#L#50");
        a[0].limit = usd("6");
        assert_ne!(a[0].key(), k);
        let org = org_reached("2026-11", usd("1000"), &budgets());
        assert_eq!(org[0].key().pk, "ALERT#ORG#MONTH#2026-11");
    }

    #[test]
    fn the_message_names_user_period_spend_limit_threshold_models_and_the_report_command() {
        let mut a = user_crossings(&change("o'brien", PeriodKind::Day, "0", "5.2"), &{
            let mut b = budgets();
            b.default = Some(Budget {
                daily: Some(usd("5")),
                ..b.default.clone().unwrap()
            });
            b
        })
        .remove(0);
        a.top = vec![("amazon.nova-pro-v1:0".into(), usd("4.2"))];
        let r = render(&a);
        for needle in [
            "o'brien",
            "day 2026-11-01",
            "Spend:      5.2 USD",
            "4.2 USD",
            "Limit:      5 USD",
            "100% = 5 USD",
            "amazon.nova-pro-v1:0",
            r"bedrock-meter report --user 'o'\''brien' --day 2026-11-01",
            "default daily budget",
        ] {
            assert!(r.body.contains(needle), "{needle:?} not in\n{}", r.body);
        }
        assert!(r.subject.is_ascii() && r.subject.len() <= 100);
        assert!(r.attributes.contains(&("user", "String", "o'brien".into())));
        assert!(r
            .attributes
            .contains(&("threshold", "Number", "100".into())));
    }

    #[test]
    fn subjects_stay_ascii_and_short_for_any_user_id() {
        let mut a = org_reached("2026-11", usd("1000"), &budgets()).remove(0);
        a.scope = AlertScope::User {
            user: "é".repeat(300),
            own_budget: true,
        };
        let r = render(&a);
        assert!(
            r.subject.is_ascii() && r.subject.len() <= 100,
            "{}",
            r.subject
        );
    }
}
