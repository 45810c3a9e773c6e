//! The pages' data: each view is built from a few reader queries and holds
//! its tables (rows shaped like `bedrock-meter report`), totals and the
//! newest `updated_at` it saw.

use std::collections::BTreeMap;

use futures_util::stream::{self, StreamExt, TryStreamExt};
use meter_core::{Day, Month, Usd};
use serde::Serialize;

use crate::model::{newest, reached, BudgetBook, BudgetLimits, BudgetOwner, Row};
use crate::reader::{ReadError, UsageReader};
use crate::request::{days, month_bounds, Page};

/// How many queries a page runs at the same time (model page's per-user
/// lookups).
pub const CONCURRENT_QUERIES: usize = 16;

/// One page's data.
#[derive(Debug, Clone)]
pub enum View {
    Overview(Box<Overview>),
    User(Box<UserView>),
    Model(ModelView),
    Day(DayView),
    Budgets(BudgetsView),
    TagKey(TagKeyView),
    TagValue(Box<TagValueView>),
}

/// Every value of one attribution tag in one month.
#[derive(Debug, Clone)]
pub struct TagKeyView {
    pub key: String,
    pub month: Month,
    pub today: Day,
    /// `tag_month` items, biggest first (then by value), as `bedrock-meter
    /// report --tag KEY --month M` lists them.
    pub values: Vec<Row>,
    /// `organisation_month`: the sum of the values (each record counts under
    /// exactly one value of each key); `None` when no value has usage.
    pub total: Option<Row>,
}

/// One value of an attribution tag over a date range.
#[derive(Debug, Clone)]
pub struct TagValueView {
    pub key: String,
    pub value: String,
    pub from: Day,
    pub to: Day,
    /// `tag_model_day` items, by day then model.
    pub model_days: Vec<Row>,
    /// `tag_day` totals (all models), one per day with usage, by day.
    pub days: Vec<Row>,
    /// `tag_model_range` totals per model, biggest first.
    pub models: Vec<Row>,
    /// `tag_range`: the total of the range.
    pub total: Row,
}

/// The organisation's month.
#[derive(Debug, Clone)]
pub struct Overview {
    pub month: Month,
    pub today: Day,
    /// Days of the month shown (to today for the current month).
    pub days: Vec<Day>,
    /// `organisation_month`: the sum of every user's month.
    pub total: Row,
    /// `user_month` items, biggest spender first.
    pub users: Vec<Row>,
    /// `model_month` totals summed from `model_day` items, biggest first.
    pub models: Vec<Row>,
    /// `model_day` items of the month (the chart).
    pub model_days: Vec<Row>,
    /// `organisation_day` totals, one per day with usage.
    pub org_days: Vec<Row>,
    /// Projected month-end spend (current month only).
    pub projection: Option<Usd>,
    pub budgets: BudgetBook,
}

/// One user's days.
#[derive(Debug, Clone)]
pub struct UserView {
    pub user: String,
    pub from: Day,
    pub to: Day,
    pub today: Day,
    /// `user_day` items.
    pub days: Vec<Row>,
    /// `user_model_day` items.
    pub model_days: Vec<Row>,
    /// `user_model_range` totals per model, biggest first.
    pub models: Vec<Row>,
    /// `user_range`: the total of the range.
    pub total: Row,
    /// The `user_month` item of the month of `to` (for the budget).
    pub month: Option<Row>,
    pub budget: Option<BudgetLimits>,
    /// Projected spend at the end of the month of `to` (current month only).
    pub projection: Option<Usd>,
}

/// One model's days and its users on one day.
#[derive(Debug, Clone)]
pub struct ModelView {
    pub model: String,
    pub from: Day,
    pub to: Day,
    /// `model_day` items.
    pub days: Vec<Row>,
    /// The day whose users are listed (the chosen one, else the latest
    /// with usage).
    pub day: Option<Day>,
    /// `user_model_day` items of that day, biggest first.
    pub users: Vec<Row>,
    /// `model_range`: the total of the range.
    pub total: Row,
}

/// Every user on one day.
#[derive(Debug, Clone)]
pub struct DayView {
    pub day: Day,
    /// `user_day` items, biggest first.
    pub users: Vec<Row>,
    /// `model_day` items, biggest first.
    pub models: Vec<Row>,
    /// `organisation_day`, summed from the model items (as the report does).
    pub total: Option<Row>,
}

/// One budget against one period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BudgetStatus {
    /// `org`, `default` or `user`: the budget that applies.
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `day` or `month`.
    pub period_kind: String,
    pub period: String,
    pub limit_usd: String,
    pub spend_usd: String,
    /// Whole percent of the limit, rounded down.
    pub percent: u128,
    pub thresholds_pct: Vec<u32>,
    /// The thresholds the spend has reached this period.
    pub reached_pct: Vec<u32>,
    pub unpriced_invocations: u128,
    #[serde(skip)]
    pub limit: Usd,
    #[serde(skip)]
    pub spend: Usd,
}

/// Every budget against this UTC day and month.
#[derive(Debug, Clone)]
pub struct BudgetsView {
    pub today: Day,
    pub budgets: BudgetBook,
    /// Highest percentage first.
    pub statuses: Vec<BudgetStatus>,
}

/// A view with its freshness.
#[derive(Debug, Clone)]
pub struct Built {
    pub view: View,
    /// The newest `updated_at` of the rows read.
    pub data_as_of: Option<String>,
    /// The attribution tag keys (`ATTRIBUTION_TAGS`) the navigation links
    /// to; set by the shell ([`crate::respond_with_tags`]), empty otherwise.
    pub tag_keys: Vec<String>,
}

fn book(list: Vec<BudgetLimits>) -> BudgetBook {
    BudgetBook { all: list }
}

fn by_cost(mut rows: Vec<Row>) -> Vec<Row> {
    rows.sort_by(|a, b| {
        b.cost
            .cmp(&a.cost)
            .then_with(|| a.user.cmp(&b.user))
            .then_with(|| a.model.cmp(&b.model))
    });
    rows
}

fn sum<'a>(kind: &str, rows: impl IntoIterator<Item = &'a Row>) -> Row {
    let mut t = Row::total(kind);
    for r in rows {
        t.add(r);
    }
    t
}

fn stamp<'a>(rows: impl IntoIterator<Item = &'a Row>) -> Option<String> {
    rows.into_iter()
        .fold(None, |acc, r| newest(acc, r.updated_at.clone()))
}

/// `spend * days_in_month / days_elapsed`: the month-end spend at the
/// month's daily run-rate so far. Exact integer arithmetic (rounded down to
/// the pico-dollar).
pub fn project(spend: Usd, month: Month, today: Day) -> Option<Usd> {
    if today.month() != month || spend == Usd::ZERO {
        return None;
    }
    let (_, last) = month_bounds(month);
    let elapsed = u128::from(today.date().day());
    let total = u128::from(last.date().day());
    Some(Usd::from_picos(
        spend.picos().saturating_mul(total) / elapsed,
    ))
}

/// Reads what `page` needs and builds its view; `today` is the current UTC
/// day.
pub async fn build<R: UsageReader>(
    reader: &R,
    page: &Page,
    today: Day,
) -> Result<Built, ReadError> {
    Ok(match page {
        Page::Overview { month } => overview(reader, *month, today).await?,
        Page::User { user, from, to } => user_view(reader, user, *from, *to, today).await?,
        Page::Model {
            model,
            from,
            to,
            day,
        } => model_view(reader, model, *from, *to, *day).await?,
        Page::Day { day } => day_view(reader, *day).await?,
        Page::Budgets => budgets_view(reader, today).await?,
        Page::TagKey { key, month } => tag_key_view(reader, key, *month, today).await?,
        Page::TagValue {
            key,
            value,
            from,
            to,
        } => tag_value_view(reader, key, value, *from, *to).await?,
    })
}

fn tagged(kind: &str, key: &str, value: Option<&str>) -> Row {
    Row {
        tag: Some(key.to_string()),
        value: value.map(str::to_string),
        ..Row::total(kind)
    }
}

async fn tag_key_view<R: UsageReader>(
    r: &R,
    key: &str,
    month: Month,
    today: Day,
) -> Result<Built, ReadError> {
    let mut values: Vec<Row> = r
        .tag_values_in_month(key, month)
        .await?
        .into_iter()
        .filter(|v| v.kind == "tag_month")
        .collect();
    // The report's order: biggest first, then by value.
    values.sort_by(|a, b| b.cost.cmp(&a.cost).then_with(|| a.value.cmp(&b.value)));
    let total = (!values.is_empty()).then(|| {
        let mut t = sum("organisation_month", &values);
        t.month = Some(month.to_string());
        t
    });
    let data_as_of = stamp(&values);
    Ok(Built {
        view: View::TagKey(TagKeyView {
            key: key.to_string(),
            month,
            today,
            values,
            total,
        }),
        data_as_of,
        tag_keys: Vec::new(),
    })
}

async fn tag_value_view<R: UsageReader>(
    r: &R,
    key: &str,
    value: &str,
    from: Day,
    to: Day,
) -> Result<Built, ReadError> {
    let model_days: Vec<Row> = r
        .tag_value_days(key, value, from, to)
        .await?
        .into_iter()
        .filter(|x| x.kind == "tag_model_day")
        .collect();
    let mut per_day: BTreeMap<String, Row> = BTreeMap::new();
    let mut per_model: BTreeMap<String, Row> = BTreeMap::new();
    for m in &model_days {
        let day = m.day.clone().unwrap_or_default();
        per_day
            .entry(day.clone())
            .or_insert_with(|| Row {
                day: Some(day),
                ..tagged("tag_day", key, Some(value))
            })
            .add(m);
        let model = m.model.clone().unwrap_or_default();
        per_model
            .entry(model.clone())
            .or_insert_with(|| Row {
                model: Some(model),
                ..tagged("tag_model_range", key, Some(value))
            })
            .add(m);
    }
    let mut total = tagged("tag_range", key, Some(value));
    for m in &model_days {
        total.add(m);
    }
    let data_as_of = stamp(&model_days);
    Ok(Built {
        view: View::TagValue(Box::new(TagValueView {
            key: key.to_string(),
            value: value.to_string(),
            from,
            to,
            model_days,
            days: per_day.into_values().collect(),
            models: by_cost(per_model.into_values().collect()),
            total,
        })),
        data_as_of,
        tag_keys: Vec::new(),
    })
}

async fn overview<R: UsageReader>(r: &R, month: Month, today: Day) -> Result<Built, ReadError> {
    let (first, last) = month_bounds(month);
    let last = last.min(today);
    let shown = if first <= last {
        days(first, last)
    } else {
        Vec::new()
    };
    let (users, budgets) = futures_util::try_join!(r.users_in_month(month), r.budgets())?;
    let per_day: Vec<Vec<Row>> = stream::iter(shown.clone())
        .map(|d| r.models_on_day(d))
        .buffered(CONCURRENT_QUERIES)
        .try_collect()
        .await?;
    let model_days: Vec<Row> = per_day.iter().flatten().cloned().collect();
    let mut models: BTreeMap<String, Row> = BTreeMap::new();
    for m in &model_days {
        let name = m.model.clone().unwrap_or_default();
        models
            .entry(name.clone())
            .or_insert_with(|| Row {
                model: Some(name),
                month: Some(month.to_string()),
                ..Row::total("model_month")
            })
            .add(m);
    }
    let org_days: Vec<Row> = per_day
        .iter()
        .filter(|rows| !rows.is_empty())
        .map(|rows| {
            let mut t = sum("organisation_day", rows);
            t.day = rows[0].day.clone();
            t
        })
        .collect();
    let mut total = sum("organisation_month", &users);
    total.month = Some(month.to_string());
    let data_as_of = newest(stamp(&users), stamp(&model_days));
    let projection = project(total.cost, month, today);
    Ok(Built {
        view: View::Overview(Box::new(Overview {
            month,
            today,
            days: shown,
            total,
            users: by_cost(users),
            models: by_cost(models.into_values().collect()),
            model_days,
            org_days,
            projection,
            budgets: book(budgets),
        })),
        data_as_of,
        tag_keys: Vec::new(),
    })
}

async fn user_view<R: UsageReader>(
    r: &R,
    user: &str,
    from: Day,
    to: Day,
    today: Day,
) -> Result<Built, ReadError> {
    let (rows, month, budgets) = futures_util::try_join!(
        r.user_days(user, from, to),
        r.user_month(user, to.month()),
        r.budgets()
    )?;
    let (days, model_days): (Vec<Row>, Vec<Row>) =
        rows.into_iter().partition(|r| r.kind == "user_day");
    let mut models: BTreeMap<String, Row> = BTreeMap::new();
    for m in &model_days {
        let name = m.model.clone().unwrap_or_default();
        models
            .entry(name.clone())
            .or_insert_with(|| Row {
                user: Some(user.to_string()),
                model: Some(name),
                ..Row::total("user_model_range")
            })
            .add(m);
    }
    let mut total = sum("user_range", &days);
    total.user = Some(user.to_string());
    let month = month.into_iter().next();
    let data_as_of = newest(
        newest(stamp(&days), stamp(&model_days)),
        month.as_ref().and_then(|m| m.updated_at.clone()),
    );
    let projection = month
        .as_ref()
        .and_then(|m| project(m.cost, to.month(), today));
    Ok(Built {
        view: View::User(Box::new(UserView {
            user: user.to_string(),
            from,
            to,
            today,
            days,
            model_days,
            models: by_cost(models.into_values().collect()),
            total,
            month,
            budget: book(budgets).for_user(user).cloned(),
            projection,
        })),
        data_as_of,
        tag_keys: Vec::new(),
    })
}

async fn model_view<R: UsageReader>(
    r: &R,
    model: &str,
    from: Day,
    to: Day,
    day: Option<Day>,
) -> Result<Built, ReadError> {
    let rows = r.model_days(model, from, to).await?;
    let day = day.or_else(|| rows.iter().filter_map(Row::day).max());
    let mut users = Vec::new();
    if let Some(d) = day {
        // No index lists a model's users: read that day's users, then each
        // one's items of that day (one Query each, 16 at a time).
        let active: Vec<String> = r
            .users_on_day(d)
            .await?
            .into_iter()
            .filter_map(|u| u.user)
            .collect();
        let per_user: Vec<Vec<Row>> = stream::iter(active)
            .map(|u| async move { r.user_days(&u, d, d).await })
            .buffered(CONCURRENT_QUERIES)
            .try_collect()
            .await?;
        users = per_user
            .into_iter()
            .flatten()
            .filter(|x| x.kind == "user_model_day" && x.model.as_deref() == Some(model))
            .collect();
    }
    let mut total = sum("model_range", &rows);
    total.model = Some(model.to_string());
    let data_as_of = newest(stamp(&rows), stamp(&users));
    Ok(Built {
        view: View::Model(ModelView {
            model: model.to_string(),
            from,
            to,
            days: rows,
            day,
            users: by_cost(users),
            total,
        }),
        data_as_of,
        tag_keys: Vec::new(),
    })
}

async fn day_view<R: UsageReader>(r: &R, day: Day) -> Result<Built, ReadError> {
    let (users, models) = futures_util::try_join!(r.users_on_day(day), r.models_on_day(day))?;
    let total = (!models.is_empty()).then(|| {
        let mut t = sum("organisation_day", &models);
        t.day = Some(day.to_string());
        t
    });
    let data_as_of = newest(stamp(&users), stamp(&models));
    Ok(Built {
        view: View::Day(DayView {
            day,
            users: by_cost(users),
            models: by_cost(models),
            total,
        }),
        data_as_of,
        tag_keys: Vec::new(),
    })
}

fn status(
    owner: &BudgetOwner,
    user: Option<&str>,
    kind: &str,
    period: String,
    limit: Usd,
    spend: &Row,
    thresholds: &[u32],
) -> BudgetStatus {
    BudgetStatus {
        scope: owner.label().to_string(),
        user: user.map(str::to_string),
        period_kind: kind.to_string(),
        period,
        limit_usd: limit.to_string(),
        spend_usd: spend.cost.to_string(),
        percent: crate::format::percent(spend.cost, limit),
        thresholds_pct: thresholds.to_vec(),
        reached_pct: reached(spend.cost, limit, thresholds),
        unpriced_invocations: spend.unpriced_invocations,
        limit,
        spend: spend.cost,
    }
}

async fn budgets_view<R: UsageReader>(r: &R, today: Day) -> Result<Built, ReadError> {
    let month = today.month();
    let (budgets, month_rows, day_rows) =
        futures_util::try_join!(r.budgets(), r.users_in_month(month), r.users_on_day(today))?;
    let budgets = book(budgets);
    let mut statuses = Vec::new();
    if let Some(org) = budgets.org() {
        if let Some(limit) = org.monthly {
            let spend = sum("organisation_month", &month_rows);
            statuses.push(status(
                &org.owner,
                None,
                "month",
                month.to_string(),
                limit,
                &spend,
                &org.thresholds,
            ));
        }
    }
    let zero = Row::total("none");
    // Every user with a budget of their own, and every user active this
    // month under the default.
    let mut users: BTreeMap<String, (Option<&Row>, Option<&Row>)> = BTreeMap::new();
    for b in &budgets.all {
        if let BudgetOwner::User(u) = &b.owner {
            users.entry(u.clone()).or_default();
        }
    }
    for m in &month_rows {
        if let Some(u) = &m.user {
            users.entry(u.clone()).or_default().1 = Some(m);
        }
    }
    for d in &day_rows {
        if let Some(u) = &d.user {
            users.entry(u.clone()).or_default().0 = Some(d);
        }
    }
    for (user, (day_row, month_row)) in &users {
        let Some(b) = budgets.for_user(user) else {
            continue;
        };
        if let Some(limit) = b.daily {
            statuses.push(status(
                &b.owner,
                Some(user),
                "day",
                today.to_string(),
                limit,
                day_row.unwrap_or(&zero),
                &b.thresholds,
            ));
        }
        if let Some(limit) = b.monthly {
            statuses.push(status(
                &b.owner,
                Some(user),
                "month",
                month.to_string(),
                limit,
                month_row.unwrap_or(&zero),
                &b.thresholds,
            ));
        }
    }
    // Highest share of its limit first, exactly: a/b > c/d <=> a*d > c*b.
    statuses.sort_by(|a, b| {
        let l = b.spend.picos().saturating_mul(a.limit.picos());
        let r = a.spend.picos().saturating_mul(b.limit.picos());
        l.cmp(&r)
            .then_with(|| a.user.cmp(&b.user))
            .then_with(|| a.period_kind.cmp(&b.period_kind))
    });
    let data_as_of = newest(stamp(&month_rows), stamp(&day_rows));
    Ok(Built {
        view: View::Budgets(BudgetsView {
            today,
            budgets,
            statuses,
        }),
        data_as_of,
        tag_keys: Vec::new(),
    })
}
