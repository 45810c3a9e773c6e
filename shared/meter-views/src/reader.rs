//! The reading capability the views need, and an in-memory implementation
//! (unit tests, the benchmark).
//!
//! Each method is one access pattern of `docs/data-model.md`, that is one
//! (paginated) DynamoDB Query; [`MemoryReader`] counts them so tests and the
//! benchmark can state the queries per page.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use meter_core::{Counters, Day, Month};

use crate::model::{BudgetLimits, Row};

/// A failed read, in reader terms: what failed; the shells add what to check.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ReadError {
    pub message: String,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl ReadError {
    pub fn new(message: impl Into<String>) -> ReadError {
        ReadError {
            message: message.into(),
            source: None,
        }
    }
}

/// The queries behind the pages. Rows carry raw user and model ids (from the
/// items' plain attributes) and `updated_at`.
pub trait UsageReader: Sync {
    /// `user_day` items of one day (index `gsi1`, `DAY#<day>`, `U#`).
    fn users_on_day(&self, day: Day) -> impl Future<Output = Result<Vec<Row>, ReadError>> + Send;
    /// `model_day` items of one day (index `gsi1`, `DAY#<day>`, `M#`).
    fn models_on_day(&self, day: Day) -> impl Future<Output = Result<Vec<Row>, ReadError>> + Send;
    /// `user_month` items of one month (index `gsi1`, `MONTH#<month>`, `U#`).
    fn users_in_month(
        &self,
        month: Month,
    ) -> impl Future<Output = Result<Vec<Row>, ReadError>> + Send;
    /// A user's `user_model_day` and `user_day` items from `from` to `to`.
    fn user_days(
        &self,
        user: &str,
        from: Day,
        to: Day,
    ) -> impl Future<Output = Result<Vec<Row>, ReadError>> + Send;
    /// A user's `user_month` item (empty when none).
    fn user_month(
        &self,
        user: &str,
        month: Month,
    ) -> impl Future<Output = Result<Vec<Row>, ReadError>> + Send;
    /// A model's `model_day` items from `from` to `to`.
    fn model_days(
        &self,
        model: &str,
        from: Day,
        to: Day,
    ) -> impl Future<Output = Result<Vec<Row>, ReadError>> + Send;
    /// Every budget (partition `BUDGET`).
    fn budgets(&self) -> impl Future<Output = Result<Vec<BudgetLimits>, ReadError>> + Send;
    /// Every value of attribution tag `tag` in one month: its `tag_month`
    /// items (index `gsi1`, `TMONTH#<tag>#<month>`, `V#`).
    fn tag_values_in_month(
        &self,
        tag: &str,
        month: Month,
    ) -> impl Future<Output = Result<Vec<Row>, ReadError>> + Send;
    /// One tag value per model and day from `from` to `to`: its
    /// `tag_model_day` items (`T#<tag>#<value>`, `D#<from>` to `D#<to>#~`).
    fn tag_value_days(
        &self,
        tag: &str,
        value: &str,
        from: Day,
        to: Day,
    ) -> impl Future<Output = Result<Vec<Row>, ReadError>> + Send;
}

#[derive(Default)]
struct MemoryData {
    /// user -> (day, model or "" for the user_day item) -> row
    users: HashMap<String, BTreeMap<(Day, String), Row>>,
    user_months: HashMap<(String, Month), Row>,
    models: HashMap<String, BTreeMap<Day, Row>>,
    day_users: BTreeMap<Day, BTreeMap<String, Row>>,
    day_models: BTreeMap<Day, BTreeMap<String, Row>>,
    month_users: BTreeMap<Month, BTreeMap<String, Row>>,
    budgets: Vec<BudgetLimits>,
    /// (tag, value) -> (day, model) -> tag_model_day row
    tag_days: HashMap<(String, String), BTreeMap<(Day, String), Row>>,
    /// (tag, month) -> value -> tag_month row
    tag_months: HashMap<(String, Month), BTreeMap<String, Row>>,
    fail: Option<String>,
}

/// An in-memory [`UsageReader`] holding the same four aggregates the ingest
/// path writes. Counts the queries it answers.
#[derive(Default)]
pub struct MemoryReader {
    data: Mutex<MemoryData>,
    queries: AtomicUsize,
}

fn bump(map_row: &mut Row, c: &Counters, stamp: &str) {
    map_row.add(&Row::from_counters(&map_row.kind.clone(), c));
    if map_row.updated_at.as_deref() < Some(stamp) {
        map_row.updated_at = Some(stamp.to_string());
    }
}

fn base(kind: &str, user: Option<&str>, model: Option<&str>) -> Row {
    Row {
        user: user.map(str::to_string),
        model: model.map(str::to_string),
        ..Row::total(kind)
    }
}

impl MemoryReader {
    pub fn new() -> MemoryReader {
        MemoryReader::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryData> {
        self.data.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds usage of `user` on `model` on `day` to every aggregate it
    /// belongs to, as the ingest path does; `updated_at` is RFC 3339 UTC.
    pub fn record(&self, user: &str, model: &str, day: Day, c: &Counters, updated_at: &str) {
        let mut d = self.lock();
        let day_s = day.to_string();
        let month = day.month();
        let umd = d
            .users
            .entry(user.to_string())
            .or_default()
            .entry((day, model.to_string()))
            .or_insert_with(|| Row {
                day: Some(day_s.clone()),
                ..base("user_model_day", Some(user), Some(model))
            });
        bump(umd, c, updated_at);
        let ud = d
            .users
            .entry(user.to_string())
            .or_default()
            .entry((day, String::new()))
            .or_insert_with(|| Row {
                day: Some(day_s.clone()),
                ..base("user_day", Some(user), None)
            });
        bump(ud, c, updated_at);
        let ud = ud.clone();
        d.day_users
            .entry(day)
            .or_default()
            .insert(user.to_string(), ud);
        let um = d
            .user_months
            .entry((user.to_string(), month))
            .or_insert_with(|| Row {
                month: Some(month.to_string()),
                ..base("user_month", Some(user), None)
            });
        bump(um, c, updated_at);
        let um = um.clone();
        d.month_users
            .entry(month)
            .or_default()
            .insert(user.to_string(), um);
        let md = d
            .models
            .entry(model.to_string())
            .or_default()
            .entry(day)
            .or_insert_with(|| Row {
                day: Some(day_s.clone()),
                ..base("model_day", None, Some(model))
            });
        bump(md, c, updated_at);
        let md = md.clone();
        d.day_models
            .entry(day)
            .or_default()
            .insert(model.to_string(), md);
    }

    /// Adds usage as [`MemoryReader::record`] does, and under each
    /// attribution `(tag, value)` of the record: its `tag_model_day` and
    /// `tag_month` items, as the ingest path does with ATTRIBUTION_TAGS.
    pub fn record_tagged(
        &self,
        user: &str,
        model: &str,
        day: Day,
        c: &Counters,
        updated_at: &str,
        tags: &[(&str, &str)],
    ) {
        self.record(user, model, day, c, updated_at);
        let mut d = self.lock();
        let month = day.month();
        for (tag, value) in tags {
            let tagged = |kind: &str| Row {
                tag: Some(tag.to_string()),
                value: Some(value.to_string()),
                ..Row::total(kind)
            };
            let tmd = d
                .tag_days
                .entry((tag.to_string(), value.to_string()))
                .or_default()
                .entry((day, model.to_string()))
                .or_insert_with(|| Row {
                    model: Some(model.to_string()),
                    day: Some(day.to_string()),
                    ..tagged("tag_model_day")
                });
            bump(tmd, c, updated_at);
            let tm = d
                .tag_months
                .entry((tag.to_string(), month))
                .or_default()
                .entry(value.to_string())
                .or_insert_with(|| Row {
                    month: Some(month.to_string()),
                    ..tagged("tag_month")
                });
            bump(tm, c, updated_at);
        }
    }

    /// Stores a budget (replacing one of the same owner).
    pub fn set_budget(&self, b: BudgetLimits) {
        let mut d = self.lock();
        d.budgets.retain(|x| x.owner != b.owner);
        d.budgets.push(b);
    }

    /// Makes every later query fail with `message` (`None` heals it).
    pub fn fail_with(&self, message: Option<&str>) {
        self.lock().fail = message.map(str::to_string);
    }

    /// Queries answered so far.
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::Relaxed)
    }

    fn read<T>(&self, f: impl FnOnce(&MemoryData) -> T) -> Result<T, ReadError> {
        self.queries.fetch_add(1, Ordering::Relaxed);
        let d = self.lock();
        if let Some(m) = &d.fail {
            return Err(ReadError::new(m.clone()));
        }
        Ok(f(&d))
    }
}

impl UsageReader for MemoryReader {
    async fn users_on_day(&self, day: Day) -> Result<Vec<Row>, ReadError> {
        self.read(|d| {
            d.day_users
                .get(&day)
                .map(|m| m.values().cloned().collect())
                .unwrap_or_default()
        })
    }

    async fn models_on_day(&self, day: Day) -> Result<Vec<Row>, ReadError> {
        self.read(|d| {
            d.day_models
                .get(&day)
                .map(|m| m.values().cloned().collect())
                .unwrap_or_default()
        })
    }

    async fn users_in_month(&self, month: Month) -> Result<Vec<Row>, ReadError> {
        self.read(|d| {
            d.month_users
                .get(&month)
                .map(|m| m.values().cloned().collect())
                .unwrap_or_default()
        })
    }

    async fn user_days(&self, user: &str, from: Day, to: Day) -> Result<Vec<Row>, ReadError> {
        self.read(|d| {
            d.users
                .get(user)
                .map(|m| {
                    m.iter()
                        .filter(|((day, _), _)| *day >= from && *day <= to)
                        .map(|(_, r)| r.clone())
                        .collect()
                })
                .unwrap_or_default()
        })
    }

    async fn user_month(&self, user: &str, month: Month) -> Result<Vec<Row>, ReadError> {
        self.read(|d| {
            d.user_months
                .get(&(user.to_string(), month))
                .cloned()
                .into_iter()
                .collect()
        })
    }

    async fn model_days(&self, model: &str, from: Day, to: Day) -> Result<Vec<Row>, ReadError> {
        self.read(|d| {
            d.models
                .get(model)
                .map(|m| m.range(from..=to).map(|(_, r)| r.clone()).collect())
                .unwrap_or_default()
        })
    }

    async fn budgets(&self) -> Result<Vec<BudgetLimits>, ReadError> {
        self.read(|d| d.budgets.clone())
    }

    async fn tag_values_in_month(&self, tag: &str, month: Month) -> Result<Vec<Row>, ReadError> {
        self.read(|d| {
            d.tag_months
                .get(&(tag.to_string(), month))
                .map(|m| m.values().cloned().collect())
                .unwrap_or_default()
        })
    }

    async fn tag_value_days(
        &self,
        tag: &str,
        value: &str,
        from: Day,
        to: Day,
    ) -> Result<Vec<Row>, ReadError> {
        self.read(|d| {
            d.tag_days
                .get(&(tag.to_string(), value.to_string()))
                .map(|m| {
                    m.iter()
                        .filter(|((day, _), _)| *day >= from && *day <= to)
                        .map(|(_, r)| r.clone())
                        .collect()
                })
                .unwrap_or_default()
        })
    }
}
