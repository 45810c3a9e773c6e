//! Every page's tables as data: `?format=csv` and `?format=json`.
//!
//! Usage tables use the columns and values of `bedrock-meter report`
//! (`--format csv`: `kind,user,model,period,...,cost_usd`; `--format json`:
//! one object per row with the exact `cost_usd`). A page's tables share one
//! CSV header; the `kind` column tells them apart, and `?table=NAME` selects
//! one.

use serde_json::{json, Value};

use crate::format::csv_cell;
use crate::model::Row;
use crate::views::{BudgetStatus, Built, View};

/// The columns of `bedrock-meter report --format csv`.
pub const USAGE_COLUMNS: [&str; 12] = [
    "kind",
    "user",
    "model",
    "period",
    "invocations",
    "errors",
    "input",
    "output",
    "cache_read",
    "cache_write",
    "unpriced",
    "cost_usd",
];

/// The columns of `bedrock-meter report --tag ... --format csv`: `tag` and
/// `value` where the others have `user`.
pub const TAG_COLUMNS: [&str; 13] = [
    "kind",
    "tag",
    "value",
    "model",
    "period",
    "invocations",
    "errors",
    "input",
    "output",
    "cache_read",
    "cache_write",
    "unpriced",
    "cost_usd",
];

/// The columns of the budgets page.
pub const BUDGET_COLUMNS: [&str; 10] = [
    "scope",
    "user",
    "period_kind",
    "period",
    "limit_usd",
    "spend_usd",
    "percent",
    "thresholds_pct",
    "reached_pct",
    "unpriced",
];

/// One table of a page.
pub enum Table<'a> {
    Usage(&'static str, Vec<&'a Row>),
    Budgets(&'static str, &'a [BudgetStatus]),
}

impl Table<'_> {
    pub fn name(&self) -> &'static str {
        match self {
            Table::Usage(n, _) | Table::Budgets(n, _) => n,
        }
    }
}

/// The tables of a view, in page order.
pub fn tables(view: &View) -> Vec<Table<'_>> {
    match view {
        View::Overview(o) => vec![
            Table::Usage("total", vec![&o.total]),
            Table::Usage("users", o.users.iter().collect()),
            Table::Usage("models", o.models.iter().collect()),
            Table::Usage("days", o.org_days.iter().collect()),
        ],
        View::User(u) => vec![
            Table::Usage("total", vec![&u.total]),
            Table::Usage("month", u.month.iter().collect()),
            Table::Usage("models", u.models.iter().collect()),
            Table::Usage("days", u.days.iter().collect()),
            Table::Usage("model_days", u.model_days.iter().collect()),
        ],
        View::Model(m) => vec![
            Table::Usage("total", vec![&m.total]),
            Table::Usage("days", m.days.iter().collect()),
            Table::Usage("users", m.users.iter().collect()),
        ],
        View::Day(d) => vec![
            Table::Usage("users", d.users.iter().collect()),
            Table::Usage("total", d.total.iter().collect()),
            Table::Usage("models", d.models.iter().collect()),
        ],
        View::Budgets(b) => vec![Table::Budgets("budgets", &b.statuses)],
        View::TagKey(t) => vec![
            Table::Usage("values", t.values.iter().collect()),
            Table::Usage("total", t.total.iter().collect()),
        ],
        View::TagValue(t) => vec![
            Table::Usage("total", vec![&t.total]),
            Table::Usage("models", t.models.iter().collect()),
            Table::Usage("days", t.days.iter().collect()),
            Table::Usage("model_days", t.model_days.iter().collect()),
        ],
    }
}

/// The tag report's cells of a row ([`TAG_COLUMNS`]).
pub fn tag_cells(r: &Row) -> Vec<String> {
    let u = usage_cells(r);
    [
        r.kind.clone(),
        r.tag.clone().unwrap_or_default(),
        r.value.clone().unwrap_or_default(),
    ]
    .into_iter()
    .chain(u.into_iter().skip(2))
    .collect()
}

/// The report's cells of a row.
pub fn usage_cells(r: &Row) -> [String; 12] {
    [
        r.kind.clone(),
        r.user.clone().unwrap_or_default(),
        r.model.clone().unwrap_or_default(),
        r.day
            .clone()
            .or_else(|| r.month.clone())
            .unwrap_or_default(),
        r.invocations.to_string(),
        r.errors.to_string(),
        r.input_tokens.to_string(),
        r.output_tokens.to_string(),
        r.cache_read_input_tokens.to_string(),
        r.cache_write_input_tokens.to_string(),
        r.unpriced_invocations.to_string(),
        r.cost_usd.clone(),
    ]
}

fn budget_cells(s: &BudgetStatus) -> [String; 10] {
    let list = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(" ");
    [
        s.scope.clone(),
        s.user.clone().unwrap_or_default(),
        s.period_kind.clone(),
        s.period.clone(),
        s.limit_usd.clone(),
        s.spend_usd.clone(),
        s.percent.to_string(),
        list(&s.thresholds_pct),
        list(&s.reached_pct),
        s.unpriced_invocations.to_string(),
    ]
}

/// The names of a view's tables.
pub fn table_names(view: &View) -> Vec<&'static str> {
    tables(view).iter().map(Table::name).collect()
}

fn selected<'a>(view: &'a View, only: Option<&str>) -> Result<Vec<Table<'a>>, String> {
    let all = tables(view);
    match only {
        None => Ok(all),
        Some(name) => {
            let names = table_names(view);
            let picked: Vec<Table> = all.into_iter().filter(|t| t.name() == name).collect();
            if picked.is_empty() {
                Err(format!(
                    "this page has no table `{name}`: its tables are {}",
                    names.join(", ")
                ))
            } else {
                Ok(picked)
            }
        }
    }
}

/// The page's tables as CSV (cells neutralised against formula injection).
/// `Err` names the tables when `only` is not one of them.
pub fn csv(view: &View, only: Option<&str>) -> Result<String, String> {
    let tables = selected(view, only)?;
    let mut out = String::new();
    let line = |cells: &[String], out: &mut String| {
        let cells: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    };
    let header = |cols: &[&str], out: &mut String| {
        out.push_str(&cols.join(","));
        out.push('\n');
    };
    let tags = matches!(view, View::TagKey(_) | View::TagValue(_));
    if matches!(view, View::Budgets(_)) {
        header(&BUDGET_COLUMNS, &mut out);
    } else if tags {
        header(&TAG_COLUMNS, &mut out);
    } else {
        header(&USAGE_COLUMNS, &mut out);
    }
    for t in tables {
        match t {
            Table::Usage(_, rows) if tags => {
                rows.iter().for_each(|r| line(&tag_cells(r), &mut out))
            }
            Table::Usage(_, rows) => rows.iter().for_each(|r| line(&usage_cells(r), &mut out)),
            Table::Budgets(_, rows) => rows.iter().for_each(|s| line(&budget_cells(s), &mut out)),
        }
    }
    Ok(out)
}

/// The page's tables as one JSON document: `{"page", "data_as_of",
/// "tables": {NAME: [row, ...]}}`, each row as `bedrock-meter report
/// --format json` prints it.
pub fn json(built: &Built, page: &str, only: Option<&str>) -> Result<String, String> {
    let mut tables = serde_json::Map::new();
    for t in selected(&built.view, only)? {
        let name = t.name();
        let rows: Vec<Value> = match t {
            Table::Usage(_, rows) => rows
                .iter()
                .map(|r| serde_json::to_value(r).unwrap_or(Value::Null))
                .collect(),
            Table::Budgets(_, rows) => rows
                .iter()
                .map(|s| serde_json::to_value(s).unwrap_or(Value::Null))
                .collect(),
        };
        tables.insert(name.to_string(), Value::Array(rows));
    }
    let doc = json!({
        "page": page,
        "data_as_of": built.data_as_of,
        "days_are": "UTC",
        "tables": tables,
    });
    Ok(serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n")
}
