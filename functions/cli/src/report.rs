//! `bedrock-meter report`: the data contract's queries, printed.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use meter_core::{AggregateKey, Counters, Day, Month, Usd};
use meter_store::{DynamoDbUsageStore, UsageRow};
use time::OffsetDateTime;

use crate::Format;

#[derive(Args)]
pub struct ReportArgs {
    /// One user: their usage per model and per day (default: this month).
    #[arg(long)]
    user: Option<String>,
    /// One model: its usage per day.
    #[arg(long)]
    model: Option<String>,
    /// One day (YYYY-MM-DD, UTC). Without --user/--model: every user that day
    /// and the organisation's total.
    #[arg(long, conflicts_with_all = ["from", "to", "month"])]
    day: Option<String>,
    /// Start of a date range (YYYY-MM-DD, inclusive).
    #[arg(long, requires = "to")]
    from: Option<String>,
    /// End of a date range (YYYY-MM-DD, inclusive).
    #[arg(long, requires = "from")]
    to: Option<String>,
    /// A month (YYYY-MM). With --user: that user's month total; alone: every user's.
    #[arg(long, conflicts_with_all = ["from", "to"])]
    month: Option<String>,
    /// Only the N biggest spenders.
    #[arg(long, value_name = "N")]
    top: Option<usize>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

fn parse_day(s: &str, flag: &str) -> anyhow::Result<Day> {
    Day::parse(s).with_context(|| format!("--{flag} `{s}` is not a date like 2026-11-26"))
}

pub async fn run(store: &DynamoDbUsageStore, args: ReportArgs) -> anyhow::Result<ExitCode> {
    let today = Day::of(OffsetDateTime::now_utc());
    let range = match (&args.day, &args.from, &args.to, &args.month) {
        (Some(d), ..) => {
            let d = parse_day(d, "day")?;
            Some((d, d))
        }
        (None, Some(f), Some(t), _) => {
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
    let month_range = |m: Month| -> anyhow::Result<(Day, Day)> {
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
    };
    let mut rows: Vec<UsageRow> = match (&args.user, &args.model) {
        (Some(user), _) => match (month, range) {
            (Some(m), _) => store.user_month(user, m).await?,
            (None, Some((f, t))) => store.user_days(user, f, t).await?,
            (None, None) => {
                let (f, _) = month_range(today.month())?;
                let mut rows = store.user_days(user, f, today).await?;
                rows.extend(store.user_month(user, today.month()).await?);
                rows
            }
        },
        (None, Some(model)) => {
            let (f, t) = match (month, range) {
                (Some(m), _) => month_range(m)?,
                (None, Some(r)) => r,
                (None, None) => (month_range(today.month())?.0, today),
            };
            store.model_days(model, f, t).await?
        }
        (None, None) => match (month, range) {
            (Some(m), _) => sort_by_cost(store.users_in_month(m).await?),
            (None, Some((f, t))) => {
                anyhow::ensure!(
                    f == t,
                    "a date range needs --user or --model; use --day for every user on one day"
                );
                day_overview(store, f).await?
            }
            (None, None) => day_overview(store, today).await?,
        },
    };
    if let Some(n) = args.top {
        rows = sort_by_cost(rows);
        rows.truncate(n);
    }
    print_rows(&rows, args.format);
    if rows.is_empty() {
        eprintln!(
            "no usage found for that selection (table `{}`)",
            store.table()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Every user's total for a day, biggest first, then the organisation's
/// total summed from the per-model items.
async fn day_overview(store: &DynamoDbUsageStore, day: Day) -> anyhow::Result<Vec<UsageRow>> {
    let mut rows = sort_by_cost(store.users_on_day(day).await?);
    let models = store.models_on_day(day).await?;
    if !models.is_empty() {
        let mut total = UsageRow {
            kind: "organisation_day".into(),
            day: Some(day.to_string()),
            ..empty_row()
        };
        for m in &models {
            add_row(&mut total, m);
        }
        total.cost_usd = total.cost.to_string();
        rows.push(total);
    }
    Ok(rows)
}

fn empty_row() -> UsageRow {
    UsageRow {
        kind: String::new(),
        user: None,
        model: None,
        day: None,
        month: None,
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

fn cells(r: &UsageRow) -> [String; 12] {
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

/// Prints rows as an aligned table, JSON lines or CSV.
pub fn print_rows(rows: &[UsageRow], format: Format) {
    let mut out = String::new();
    match format {
        Format::Json => {
            for r in rows {
                out.push_str(&serde_json::to_string(r).unwrap_or_default());
                out.push('\n');
            }
        }
        Format::Csv => {
            out.push_str(&HEADERS.join(","));
            out.push('\n');
            for r in rows {
                out.push_str(&cells(r).map(|c| csv_field(&c)).join(","));
                out.push('\n');
            }
        }
        Format::Table => {
            let all: Vec<[String; 12]> = rows.iter().map(cells).collect();
            let mut widths = HEADERS.map(str::len);
            for row in &all {
                for (w, c) in widths.iter_mut().zip(row) {
                    *w = (*w).max(c.chars().count().min(60));
                }
            }
            let line = |cols: &[String]| {
                cols.iter()
                    .zip(widths)
                    .enumerate()
                    .map(|(i, (c, w))| {
                        let c: String = c.chars().take(60).collect();
                        if i >= 4 {
                            format!("{c:>w$}")
                        } else {
                            format!("{c:<w$}")
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("  ")
            };
            out.push_str(&line(&HEADERS.map(String::from)));
            out.push('\n');
            for row in &all {
                out.push_str(&line(row));
                out.push('\n');
            }
        }
    }
    crate::emit(&out);
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
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
