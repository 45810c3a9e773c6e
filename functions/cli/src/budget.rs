//! `bedrock-meter budget set|list|delete`: budgets in the usage table
//! (see `docs/budgets.md`).

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use meter_core::Usd;
use meter_store::budgets::{Budget, BudgetChange, BudgetScope, Thresholds};
use meter_store::Config;

#[derive(Args)]
pub struct BudgetArgs {
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand)]
enum Action {
    /// Create or change a budget; only the given fields change.
    ///
    /// bedrock-meter budget set --user alice --daily 5 --monthly 100 --thresholds 50,80,100
    /// bedrock-meter budget set --default --monthly 50
    /// bedrock-meter budget set --org --monthly 10000
    /// bedrock-meter budget set --tag team=payments --daily 40 --monthly 500
    Set(SetArgs),
    /// Print every budget.
    List(ListArgs),
    /// Delete a budget (a user without one falls back to the default).
    Delete(WhoArgs),
}

#[derive(Args)]
#[group(required = true, multiple = false)]
struct Who {
    /// One user's own budget (the raw user id, as in reports).
    #[arg(long)]
    user: Option<String>,
    /// The budget of every user without their own.
    #[arg(long)]
    default: bool,
    /// The organisation's budget (all users together; monthly only).
    #[arg(long)]
    org: bool,
    /// One value of an attribution tag (ATTRIBUTION_TAGS), as KEY=VALUE:
    /// its day's and month's spend across every user and model (the first
    /// `=` separates key and value).
    #[arg(long, value_name = "KEY=VALUE")]
    tag: Option<String>,
}

impl Who {
    fn scope(&self) -> anyhow::Result<BudgetScope> {
        if let Some(t) = &self.tag {
            let (tag, value) = t
                .split_once('=')
                .filter(|(k, v)| !k.trim().is_empty() && !v.is_empty())
                .with_context(|| {
                    format!("--tag `{t}` is not KEY=VALUE, like --tag team=payments")
                })?;
            return Ok(BudgetScope::Tag {
                tag: tag.trim().to_string(),
                value: value.to_string(),
            });
        }
        Ok(match (&self.user, self.default) {
            (Some(u), _) => BudgetScope::User(u.clone()),
            (None, true) => BudgetScope::Default,
            _ => BudgetScope::Org,
        })
    }
}

#[derive(Args)]
struct WhoArgs {
    #[command(flatten)]
    who: Who,
}

#[derive(Args)]
struct SetArgs {
    #[command(flatten)]
    who: Who,
    /// Limit per UTC day in USD (exact decimal, e.g. 5 or 2.50), or `off`.
    #[arg(long, value_name = "USD|off")]
    daily: Option<String>,
    /// Limit per UTC month in USD, or `off`.
    #[arg(long, value_name = "USD|off")]
    monthly: Option<String>,
    /// Alert thresholds in percent of each limit (default 50,80,100).
    #[arg(long, value_name = "PCT,...")]
    thresholds: Option<String>,
}

#[derive(Args)]
struct ListArgs {
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    format: ListFormat,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum ListFormat {
    Table,
    Json,
}

/// Parses a limit: a positive exact decimal, or `off` (remove it).
fn parse_limit(flag: &str, v: &str) -> anyhow::Result<Option<Usd>> {
    if v.eq_ignore_ascii_case("off") || v.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let usd: Usd = v.trim_start_matches('$').parse().with_context(|| {
        format!("--{flag} `{v}` is not an amount in USD such as 5 or 2.50 (or `off`)")
    })?;
    anyhow::ensure!(
        usd > Usd::ZERO,
        "--{flag} must be more than 0 (use `off` to remove the limit)"
    );
    Ok(Some(usd))
}

fn change_of(args: &SetArgs) -> anyhow::Result<BudgetChange> {
    let change = BudgetChange {
        daily: args
            .daily
            .as_deref()
            .map(|v| parse_limit("daily", v))
            .transpose()?,
        monthly: args
            .monthly
            .as_deref()
            .map(|v| parse_limit("monthly", v))
            .transpose()?,
        thresholds: args
            .thresholds
            .as_deref()
            .map(Thresholds::parse)
            .transpose()
            .context("--thresholds")?,
    };
    anyhow::ensure!(
        change != BudgetChange::default(),
        "nothing to set: give --daily, --monthly and/or --thresholds"
    );
    if args.who.org {
        anyhow::ensure!(
            !matches!(change.daily, Some(Some(_))),
            "the organisation's budget is monthly only: use --monthly"
        );
    }
    Ok(change)
}

fn limit_text(l: Option<Usd>) -> String {
    l.map_or("-".to_string(), |u| u.to_string())
}

fn budget_json(b: &Budget) -> serde_json::Value {
    serde_json::json!({
        "scope": b.scope.label(),
        "user": match &b.scope { BudgetScope::User(u) => Some(u.as_str()), _ => None },
        "tag": match &b.scope { BudgetScope::Tag { tag, .. } => Some(tag.as_str()), _ => None },
        "value": match &b.scope { BudgetScope::Tag { value, .. } => Some(value.as_str()), _ => None },
        // Exact decimal strings, like the report's cost_usd.
        "daily_usd": b.daily.map(|u| u.to_string()),
        "monthly_usd": b.monthly.map(|u| u.to_string()),
        "thresholds_pct": b.thresholds.pcts(),
        "updated_at": b.updated_at,
    })
}

fn table(budgets: &[Budget]) -> String {
    let rows: Vec<[String; 5]> = budgets
        .iter()
        .map(|b| {
            [
                b.scope.label().to_string(),
                match &b.scope {
                    BudgetScope::User(u) => u.clone(),
                    BudgetScope::Tag { tag, value } => format!("{tag}={value}"),
                    _ => String::new(),
                },
                limit_text(b.daily),
                limit_text(b.monthly),
                b.thresholds.to_string(),
            ]
        })
        .collect();
    let headers = ["scope", "user", "daily_usd", "monthly_usd", "thresholds"];
    let mut widths = headers.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count().min(60));
        }
    }
    let line = |cols: Vec<String>| {
        cols.iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (c, w))| {
                let c: String = c.chars().take(60).collect();
                if i == 2 || i == 3 {
                    format!("{c:>w$}")
                } else {
                    format!("{c:<w$}")
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = line(headers.map(String::from).to_vec());
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.to_vec()));
        out.push('\n');
    }
    out
}

pub async fn run(config: &Config, args: BudgetArgs) -> anyhow::Result<ExitCode> {
    match args.action {
        Action::Set(set) => {
            let change = change_of(&set)?;
            let scope = set.who.scope()?;
            let store = crate::store(config).await?;
            let b = store.set_budget(&scope, &change).await.with_context(|| {
                format!("setting the {scope} budget in table `{}`", config.table)
            })?;
            crate::emit(&format!(
                "{} budget: daily {} USD, monthly {} USD, thresholds {}\n",
                b.scope,
                limit_text(b.daily),
                limit_text(b.monthly),
                b.thresholds
            ));
            Ok(ExitCode::SUCCESS)
        }
        Action::List(list) => {
            let store = crate::store(config).await?;
            let budgets = store
                .list_budgets()
                .await
                .with_context(|| format!("listing budgets in table `{}`", config.table))?;
            match list.format {
                ListFormat::Json => {
                    let mut out = String::new();
                    for b in &budgets {
                        out.push_str(&budget_json(b).to_string());
                        out.push('\n');
                    }
                    crate::emit(&out);
                }
                ListFormat::Table => crate::emit(&table(&budgets)),
            }
            if budgets.is_empty() {
                eprintln!(
                    "no budgets in table `{}`: add one with `bedrock-meter budget set --default --monthly 50`",
                    config.table
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Action::Delete(d) => {
            let scope = d.who.scope()?;
            let store = crate::store(config).await?;
            let existed = store.delete_budget(&scope).await.with_context(|| {
                format!("deleting the {scope} budget in table `{}`", config.table)
            })?;
            if existed {
                crate::emit(&format!("deleted the {scope} budget\n"));
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("there was no {scope} budget");
                Ok(ExitCode::from(1))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_exact_positive_decimals_or_off() {
        assert_eq!(
            parse_limit("daily", "2.50").unwrap(),
            Some("2.5".parse().unwrap())
        );
        assert_eq!(
            parse_limit("daily", "$5").unwrap(),
            Some("5".parse().unwrap())
        );
        assert_eq!(parse_limit("daily", "off").unwrap(), None);
        for bad in ["0", "-1", "1e3", "five"] {
            assert!(parse_limit("daily", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_table_lists_limits_and_thresholds() {
        let b = Budget {
            scope: BudgetScope::User("alice".into()),
            daily: Some("5".parse().unwrap()),
            monthly: None,
            thresholds: Thresholds::default(),
            updated_at: None,
        };
        let t = table(&[b]);
        assert!(t.contains("alice") && t.contains("50%,80%,100%"), "{t}");
        assert!(t.lines().nth(1).unwrap().contains("  5  "), "{t}");
    }
}
