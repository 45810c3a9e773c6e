//! `bedrock-meter report`: the data contract's queries, printed.
//!
//! Every selection prints rows of one kind per section, so a column sum
//! never counts a record twice: `--user` has three kinds (per model and day,
//! per day, the month), printed as labelled sections in the table format and
//! chosen with `--by` for csv/json. The overviews (no `--user`/`--model`)
//! print the users, then the organisation's total as one extra row of its
//! own kind (`organisation_day` / `organisation_month`): sum the user rows
//! or read the total, not both. JSON field names and CSV columns are the
//! same for every selection.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use meter_core::{AggregateKey, Counters, Day, Month, Usd};
use meter_store::store::{Access, OperatorError};
use meter_store::{DynamoDbUsageStore, StoreError, UsageRow};
use time::OffsetDateTime;

use crate::Format;

#[derive(Args)]
pub struct ReportArgs {
    /// One user: their usage per model and day, per day, and the month
    /// (default: this month).
    #[arg(long)]
    user: Option<String>,
    /// One model: its usage per day. With --user: that user's usage of that
    /// model per day.
    #[arg(long)]
    model: Option<String>,
    /// One day (YYYY-MM-DD, UTC). Without --user/--model: every user that day
    /// and the organisation's total.
    #[arg(long, conflicts_with_all = ["from", "to", "month"])]
    day: Option<String>,
    /// Start of a date range (YYYY-MM-DD, inclusive; needs --user or --model).
    #[arg(long, requires = "to")]
    from: Option<String>,
    /// End of a date range (YYYY-MM-DD, inclusive).
    #[arg(long, requires = "from")]
    to: Option<String>,
    /// A month (YYYY-MM). With --user: that user's month; with --model: the
    /// model's days that month; alone: every user's month total.
    #[arg(long, conflicts_with_all = ["from", "to"])]
    month: Option<String>,
    /// Only the N biggest spending users of the day or month overview; the
    /// organisation's total stays, as an extra labelled row.
    #[arg(long, value_name = "N", conflicts_with_all = ["user", "model"],
          value_parser = clap::value_parser!(u32).range(1..))]
    top: Option<u32>,
    /// With --user: the one kind of rows to print, so a column sums right
    /// (csv/json default: model-day; the table format prints every kind in
    /// its own section unless --by is given).
    #[arg(long, value_enum, requires = "user")]
    by: Option<By>,
    /// An attribution tag (ATTRIBUTION_TAGS): `KEY` lists every value of the
    /// key for a day (--day, default today) or a month (--month);
    /// `KEY=VALUE` shows one value per model and day (--day, --from/--to,
    /// --month; default this month). The first `=` separates key and value.
    #[arg(long, value_name = "KEY[=VALUE]", conflicts_with_all = ["user", "model"])]
    tag: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// The kinds of a user's rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum By {
    /// Per model and day (`user_model_day`).
    ModelDay,
    /// Per day, all models (`user_day`).
    Day,
    /// The month, all models (`user_month`).
    Month,
}

impl By {
    fn kind(self) -> &'static str {
        match self {
            By::ModelDay => "user_model_day",
            By::Day => "user_day",
            By::Month => "user_month",
        }
    }
}

/// Rows of one kind, with a label for the table format.
struct Section {
    label: String,
    rows: Vec<UsageRow>,
}

fn parse_day(s: &str, flag: &str) -> anyhow::Result<Day> {
    Day::parse(s).with_context(|| format!("--{flag} `{s}` is not a date like 2026-11-26"))
}

/// The first and last day of a month.
fn month_range(m: Month) -> anyhow::Result<(Day, Day)> {
    let first = Day::parse(&format!("{m}-01")).context("bad month")?;
    let next = if m.month == 12 {
        Month {
            year: m.year + 1,
            month: 1,
        }
    } else {
        Month {
            year: m.year,
            month: m.month + 1,
        }
    };
    let last = Day::of(
        Day::parse(&format!("{next}-01"))
            .context("bad month")?
            .date()
            .midnight()
            .assume_utc()
            - time::Duration::days(1),
    );
    Ok((first, last))
}

/// A store read failure in the operator's terms.
fn read_err(store: &DynamoDbUsageStore) -> impl Fn(StoreError) -> OperatorError + '_ {
    move |e| OperatorError::new(&e, &store.conn_info(), Access::Read)
}

pub async fn run(store: &DynamoDbUsageStore, args: ReportArgs) -> anyhow::Result<ExitCode> {
    let today = Day::of(OffsetDateTime::now_utc());
    let range = match (&args.day, &args.from, &args.to) {
        (Some(d), ..) => {
            let d = parse_day(d, "day")?;
            Some((d, d))
        }
        (None, Some(f), Some(t)) => {
            let (f, t) = (parse_day(f, "from")?, parse_day(t, "to")?);
            anyhow::ensure!(f <= t, "--from {f} is after --to {t}");
            Some((f, t))
        }
        _ => None,
    };
    let month = args
        .month
        .as_deref()
        .map(|m| {
            Month::parse(m).with_context(|| format!("--month `{m}` is not a month like 2026-11"))
        })
        .transpose()?;
    let sections = match (&args.user, &args.model) {
        _ if args.tag.is_some() => {
            let tag = args.tag.as_deref().unwrap_or_default();
            tag_sections(
                store,
                tag,
                range,
                month,
                today,
                args.top.map(|n| n as usize),
            )
            .await?
        }
        (Some(user), model) => {
            user_sections(store, &args, user, model.as_deref(), range, month, today).await?
        }
        (None, Some(model)) => {
            let (f, t) = match (month, range) {
                (Some(m), _) => month_range(m)?,
                (None, Some(r)) => r,
                (None, None) => (month_range(today.month())?.0, today),
            };
            let rows = store
                .model_days(model, f, t)
                .await
                .map_err(read_err(store))?;
            vec![Section {
                label: format!("model {model}: per day, {f} to {t}"),
                rows,
            }]
        }
        (None, None) => {
            let top = args.top.map(|n| n as usize);
            match (month, range) {
                (Some(m), _) => month_overview(store, m, top).await?,
                (None, Some((f, t))) => {
                    anyhow::ensure!(
                        f == t,
                        "a date range needs --user or --model; use --day for every user on one \
                         day, or --month for every user's month"
                    );
                    day_overview(store, f, top).await?
                }
                (None, None) => day_overview(store, today, top).await?,
            }
        }
    };
    print_sections(&sections, args.format);
    if sections.iter().all(|s| s.rows.is_empty()) {
        eprintln!(
            "no usage found for that selection (table `{}`)",
            store.table()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A user's rows: per model and day, per day and the month, each kind in its
/// own section; `--by` (and csv/json, default model-day) keeps one.
async fn user_sections(
    store: &DynamoDbUsageStore,
    args: &ReportArgs,
    user: &str,
    model: Option<&str>,
    range: Option<(Day, Day)>,
    month: Option<Month>,
    today: Day,
) -> anyhow::Result<Vec<Section>> {
    // The month whose total is shown: --month, or this month without dates.
    let (f, t, month) = match (month, range) {
        (Some(m), _) => {
            let (f, t) = month_range(m)?;
            (f, t, Some(m))
        }
        (None, Some((f, t))) => (f, t, None),
        (None, None) => (month_range(today.month())?.0, today, Some(today.month())),
    };
    let by = match (args.by, args.format) {
        (Some(by), _) => Some(by),
        (None, Format::Table) => None,
        (None, _) => Some(By::ModelDay),
    };
    if model.is_some() && matches!(by, Some(By::Day | By::Month)) {
        anyhow::bail!(
            "--model with --user shows that model's rows per day (--by model-day); per-day and \
             month totals are over every model: drop --model for them"
        );
    }
    if month.is_none() && by == Some(By::Month) {
        anyhow::bail!(
            "--by month needs --month (or no dates for this month): a month total does not fit \
             --day or --from/--to"
        );
    }
    let wants = |b: By| by.map_or(true, |x| x == b);
    let mut sections = Vec::new();
    if wants(By::ModelDay) || wants(By::Day) {
        let rows = store.user_days(user, f, t).await.map_err(read_err(store))?;
        let (per_model, per_day): (Vec<UsageRow>, Vec<UsageRow>) = rows
            .into_iter()
            .filter(|r| r.kind == By::ModelDay.kind() || r.kind == By::Day.kind())
            .partition(|r| r.kind == By::ModelDay.kind());
        if wants(By::ModelDay) {
            let rows = per_model
                .into_iter()
                .filter(|r| model.map_or(true, |m| r.model.as_deref() == Some(m)))
                .collect();
            let of = model.map(|m| format!(" of {m}")).unwrap_or_default();
            sections.push(Section {
                label: format!("{user}: per model and day{of}, {f} to {t}"),
                rows,
            });
        }
        if wants(By::Day) && model.is_none() {
            sections.push(Section {
                label: format!("{user}: per day (all models), {f} to {t}"),
                rows: per_day,
            });
        }
    }
    if let Some(m) = month.filter(|_| wants(By::Month) && model.is_none()) {
        sections.push(Section {
            label: format!("{user}: month {m} (all models)"),
            rows: store.user_month(user, m).await.map_err(read_err(store))?,
        });
    }
    Ok(sections)
}

/// `--tag KEY`: every value of the key for a day or a month, biggest first,
/// then the organisation's total (each record counts under exactly one value
/// of each key). `--tag KEY=VALUE`: that value per model and day, and per day.
async fn tag_sections(
    store: &DynamoDbUsageStore,
    tag: &str,
    range: Option<(Day, Day)>,
    month: Option<Month>,
    today: Day,
    top: Option<usize>,
) -> anyhow::Result<Vec<Section>> {
    let (key, value) = match tag.split_once('=') {
        Some((k, v)) => (k.trim(), Some(v)),
        None => (tag.trim(), None),
    };
    anyhow::ensure!(
        !key.is_empty(),
        "--tag needs a key from ATTRIBUTION_TAGS, like `--tag team` or `--tag team=payments`"
    );
    if let Some(value) = value {
        anyhow::ensure!(
            top.is_none(),
            "--top ranks the values of a key: use it with `--tag {key}`, not `--tag {key}=VALUE`"
        );
        let (f, t) = match (month, range) {
            (Some(m), _) => month_range(m)?,
            (None, Some(r)) => r,
            (None, None) => (month_range(today.month())?.0, today),
        };
        let rows = store
            .tag_value_days(key, value, f, t)
            .await
            .map_err(read_err(store))?;
        let rows: Vec<UsageRow> = rows
            .into_iter()
            .filter(|r| r.kind == "tag_model_day")
            .collect();
        let mut per_day: Vec<UsageRow> = Vec::new();
        for r in &rows {
            match per_day.iter_mut().find(|d| d.day == r.day) {
                Some(d) => add_row(d, r),
                None => {
                    let mut d = UsageRow {
                        kind: "tag_day".into(),
                        tag: r.tag.clone(),
                        value: r.value.clone(),
                        day: r.day.clone(),
                        ..empty_row()
                    };
                    add_row(&mut d, r);
                    per_day.push(d);
                }
            }
        }
        for d in &mut per_day {
            d.cost_usd = d.cost.to_string();
        }
        return Ok(vec![
            Section {
                label: format!("{key}={value}: per model and day, {f} to {t}"),
                rows,
            },
            Section {
                label: format!("{key}={value}: per day (all models), {f} to {t}"),
                rows: per_day,
            },
        ]);
    }
    let (period, mut values, total) = match (month, range) {
        (Some(m), _) => {
            let values = store
                .tag_values_in_month(key, m)
                .await
                .map_err(read_err(store))?;
            let total = (!values.is_empty())
                .then(|| total_row("organisation_month", &values, None, Some(m.to_string())));
            (format!("month {m}"), values, total)
        }
        (None, range) => {
            let day = match range {
                Some((f, t)) => {
                    anyhow::ensure!(
                        f == t,
                        "--tag {key} lists one day (--day) or one month (--month); for a date                          range use --tag {key}=VALUE"
                    );
                    f
                }
                None => today,
            };
            let per_model = store
                .tag_values_on_day(key, day)
                .await
                .map_err(read_err(store))?;
            // One row per value: the sum of its (handful of) model items.
            let mut values: Vec<UsageRow> = Vec::new();
            for r in per_model.iter().filter(|r| r.kind == "tag_model_day") {
                match values.iter_mut().find(|v| v.value == r.value) {
                    Some(v) => add_row(v, r),
                    None => {
                        let mut v = UsageRow {
                            kind: "tag_day".into(),
                            tag: r.tag.clone(),
                            value: r.value.clone(),
                            day: r.day.clone(),
                            ..empty_row()
                        };
                        add_row(&mut v, r);
                        values.push(v);
                    }
                }
            }
            for v in &mut values {
                v.cost_usd = v.cost.to_string();
            }
            let total = (!values.is_empty())
                .then(|| total_row("organisation_day", &values, Some(day.to_string()), None));
            (format!("day {day}"), values, total)
        }
    };
    values.sort_by(|a, b| b.cost.cmp(&a.cost).then_with(|| a.value.cmp(&b.value)));
    let count = values.len();
    if let Some(n) = top {
        values.truncate(n);
    }
    let shown = if values.len() < count {
        format!("top {} of {count} values", values.len())
    } else {
        format!("{count} values")
    };
    let mut sections = vec![Section {
        label: format!("{period}: {key}, {shown}, biggest first"),
        rows: values,
    }];
    if let Some(total) = total {
        sections.push(Section {
            label: format!("{period}: organisation total (all {count} values of {key})"),
            rows: vec![total],
        });
    }
    Ok(sections)
}

/// Every user's total for a day, biggest first (the first `top`), then the
/// organisation's total summed from the per-model items.
async fn day_overview(
    store: &DynamoDbUsageStore,
    day: Day,
    top: Option<usize>,
) -> anyhow::Result<Vec<Section>> {
    let mut users = sort_by_cost(store.users_on_day(day).await.map_err(read_err(store))?);
    let models = store.models_on_day(day).await.map_err(read_err(store))?;
    let total = (!models.is_empty())
        .then(|| total_row("organisation_day", &models, Some(day.to_string()), None));
    let count = users.len();
    if let Some(n) = top {
        users.truncate(n);
    }
    Ok(overview_sections(format!("day {day}"), users, count, total))
}

/// Every user's total for a month, biggest first (the first `top`), then the
/// organisation's total: the sum of every user's month (each record is in
/// exactly one).
async fn month_overview(
    store: &DynamoDbUsageStore,
    month: Month,
    top: Option<usize>,
) -> anyhow::Result<Vec<Section>> {
    let mut users = sort_by_cost(store.users_in_month(month).await.map_err(read_err(store))?);
    let total = (!users.is_empty())
        .then(|| total_row("organisation_month", &users, None, Some(month.to_string())));
    let count = users.len();
    if let Some(n) = top {
        users.truncate(n);
    }
    Ok(overview_sections(
        format!("month {month}"),
        users,
        count,
        total,
    ))
}

fn overview_sections(
    period: String,
    users: Vec<UsageRow>,
    count: usize,
    total: Option<UsageRow>,
) -> Vec<Section> {
    let shown = if users.len() < count {
        format!("top {} of {count} users", users.len())
    } else {
        format!("{count} users")
    };
    let mut sections = vec![Section {
        label: format!("{period}: {shown}, biggest first"),
        rows: users,
    }];
    if let Some(total) = total {
        sections.push(Section {
            label: format!("{period}: organisation total (all {count} users)"),
            rows: vec![total],
        });
    }
    sections
}

fn total_row(
    kind: &str,
    rows: &[UsageRow],
    day: Option<String>,
    month: Option<String>,
) -> UsageRow {
    let mut total = UsageRow {
        kind: kind.into(),
        day,
        month,
        ..empty_row()
    };
    for r in rows {
        add_row(&mut total, r);
    }
    total.cost_usd = total.cost.to_string();
    total
}

fn empty_row() -> UsageRow {
    UsageRow {
        kind: String::new(),
        user: None,
        model: None,
        day: None,
        month: None,
        tag: None,
        value: None,
        invocations: 0,
        errors: 0,
        input_tokens: 0,
        output_tokens: 0,
        cache_read_input_tokens: 0,
        cache_write_input_tokens: 0,
        unpriced_invocations: 0,
        cost_usd: "0".into(),
        cost: Usd::ZERO,
    }
}

fn add_row(t: &mut UsageRow, r: &UsageRow) {
    t.invocations += r.invocations;
    t.errors += r.errors;
    t.input_tokens += r.input_tokens;
    t.output_tokens += r.output_tokens;
    t.cache_read_input_tokens += r.cache_read_input_tokens;
    t.cache_write_input_tokens += r.cache_write_input_tokens;
    t.unpriced_invocations += r.unpriced_invocations;
    t.cost = t.cost.saturating_add(r.cost);
}

fn sort_by_cost(mut rows: Vec<UsageRow>) -> Vec<UsageRow> {
    rows.sort_by(|a, b| b.cost.cmp(&a.cost).then_with(|| a.user.cmp(&b.user)));
    rows
}

const HEADERS: [&str; 12] = [
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

/// Columns of tag reports: `tag` and `value` where the others have `user`.
const TAG_HEADERS: [&str; 13] = [
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

/// A row's cells: the tag layout ([`TAG_HEADERS`]) when `tags`, else
/// [`HEADERS`].
fn cells(r: &UsageRow, tags: bool) -> Vec<String> {
    let who = if tags {
        vec![
            r.tag.clone().unwrap_or_default(),
            r.value.clone().unwrap_or_default(),
        ]
    } else {
        vec![r.user.clone().unwrap_or_default()]
    };
    [r.kind.clone()]
        .into_iter()
        .chain(who)
        .chain(counter_cells(r))
        .collect()
}

fn counter_cells(r: &UsageRow) -> [String; 10] {
    [
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

/// Prints sections: the table format with a labelled heading per section;
/// JSON lines and CSV (one header) as plain rows, whose `kind` tells them
/// apart.
fn print_sections(sections: &[Section], format: Format) {
    match format {
        Format::Table => {
            let mut out = String::new();
            for (i, s) in sections.iter().enumerate() {
                if i > 0 {
                    out.push('\n');
                }
                out.push_str(&format!("== {} ==\n", s.label));
                if s.rows.is_empty() {
                    out.push_str("(none)\n");
                } else {
                    out.push_str(&render(&s.rows, Format::Table));
                }
            }
            crate::emit(&out);
        }
        _ => {
            let rows: Vec<UsageRow> = sections.iter().flat_map(|s| s.rows.clone()).collect();
            print_rows(&rows, format);
        }
    }
}

/// Prints rows as an aligned table, JSON lines or CSV.
pub fn print_rows(rows: &[UsageRow], format: Format) {
    crate::emit(&render(rows, format));
}

fn render(rows: &[UsageRow], format: Format) -> String {
    let mut out = String::new();
    // Tag reports hold tag rows (and the organisation's total) only.
    let tags = rows.iter().any(|r| r.tag.is_some());
    let headers: &[&str] = if tags { &TAG_HEADERS } else { &HEADERS };
    let numeric_from = headers.len() - 8;
    match format {
        Format::Json => {
            for r in rows {
                out.push_str(&serde_json::to_string(r).unwrap_or_default());
                out.push('\n');
            }
        }
        Format::Csv => {
            let all: Vec<Vec<String>> = rows.iter().map(|r| cells(r, tags)).collect();
            out.push_str(&crate::table::csv(headers, &all));
        }
        Format::Table => {
            let all: Vec<Vec<String>> = rows.iter().map(|r| cells(r, tags)).collect();
            out.push_str(&crate::table::text(headers, &all, numeric_from));
        }
    }
    out
}

/// Prints aggregates computed locally (`replay --dry-run`) like stored rows.
pub fn print_aggregates(aggs: &[(AggregateKey<'_>, Counters)], format: Format) {
    let rows: Vec<UsageRow> = aggs
        .iter()
        .map(|(k, c)| {
            let mut r = UsageRow {
                kind: k.kind().to_string(),
                ..empty_row()
            };
            match *k {
                AggregateKey::UserModelDay { user, model, day } => {
                    r.user = Some(user.into());
                    r.model = Some(model.into());
                    r.day = Some(day.to_string());
                }
                AggregateKey::UserDay { user, day } => {
                    r.user = Some(user.into());
                    r.day = Some(day.to_string());
                }
                AggregateKey::UserMonth { user, month } => {
                    r.user = Some(user.into());
                    r.month = Some(month.to_string());
                }
                AggregateKey::ModelDay { model, day } => {
                    r.model = Some(model.into());
                    r.day = Some(day.to_string());
                }
                AggregateKey::TagModelDay {
                    tag,
                    value,
                    model,
                    day,
                } => {
                    r.tag = Some(tag.into());
                    r.value = Some(value.into());
                    r.model = Some(model.into());
                    r.day = Some(day.to_string());
                }
                AggregateKey::TagMonth { tag, value, month } => {
                    r.tag = Some(tag.into());
                    r.value = Some(value.into());
                    r.month = Some(month.to_string());
                }
            }
            r.invocations = c.invocations;
            r.errors = c.errors;
            r.input_tokens = c.input_tokens;
            r.output_tokens = c.output_tokens;
            r.cache_read_input_tokens = c.cache_read_input_tokens;
            r.cache_write_input_tokens = c.cache_write_input_tokens;
            r.unpriced_invocations = c.unpriced_invocations;
            r.cost = c.cost_usd;
            r.cost_usd = c.cost_usd.to_string();
            r
        })
        .collect();
    print_rows(&rows, format);
}
