//! `bedrock-meter reconcile`: the meter against the bill.
//!
//! The shell only: reads the bill (CUR 2.0 files, saved Cost Explorer
//! responses, or Cost Explorer itself), the meter side (the table's
//! `model_day` items, or `report --format json` output), and hands both to
//! `meter_reconcile`, which does the join, statuses, hints and exit code.
//! Every input or usage error exits 2 (docs/reconcile.md).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context};
use clap::Args;
use meter_core::{Day, PriceTable};
use meter_reconcile::bill::Bill;
use meter_reconcile::meter::{self, MeterRow};
use meter_reconcile::{ce, read, render, By, Names, Options};
use meter_store::{Config, DynamoDbUsageStore};
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::Format;

#[derive(Args)]
pub struct ReconcileArgs {
    /// CUR 2.0 data: files (gzip CSV, CSV or Parquet, told by content),
    /// folders (recursive) or the export's manifest (*-Manifest.json).
    #[arg(long, num_args = 1.., value_name = "PATH")]
    cur: Vec<PathBuf>,
    /// Saved Cost Explorer GetCostAndUsage responses (daily, grouped by
    /// SERVICE and USAGE_TYPE; see docs/reconcile.md).
    #[arg(long = "ce-json", num_args = 1.., value_name = "PATH")]
    ce_json: Vec<PathBuf>,
    /// Ask Cost Explorer (GetCostAndUsage: one request for usage, one for
    /// credits and refunds, plus pages; each costs USD 0.01; needs
    /// ce:GetCostAndUsage).
    #[arg(long)]
    ce: bool,
    /// First day (YYYY-MM-DD, UTC, inclusive).
    #[arg(long)]
    from: String,
    /// Last day (YYYY-MM-DD, UTC, inclusive).
    #[arg(long)]
    to: String,
    /// The meter side from `bedrock-meter report --format json` output
    /// instead of the table.
    #[arg(long = "meter-json", value_name = "PATH")]
    meter_json: Option<PathBuf>,
    /// Extra billing-name map entries (the Price List map format of
    /// `prices sync`: [[model]] offer, servicename|model|stem, models).
    #[arg(long, value_name = "FILE")]
    map: Option<PathBuf>,
    /// A row may differ by this percent of the billed amount.
    #[arg(long = "tolerance-pct", default_value = "1", value_name = "PCT")]
    tolerance_pct: String,
    /// A row may differ by this many dollars (the larger allowance wins).
    #[arg(long = "tolerance-usd", default_value = "0.01", value_name = "USD")]
    tolerance_usd: String,
    /// Days that ended less than this many hours before --now are UNSETTLED.
    #[arg(long = "settle-hours", default_value_t = 72)]
    settle_hours: u32,
    /// The time to settle against (RFC 3339; default: now).
    #[arg(long)]
    now: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// The grain: per day and model, or per day, IAM principal and model
    /// (the bill's line_item_iam_principal against the meter's `principal`
    /// attribution tag; needs ATTRIBUTION_TAGS=principal on the ingest).
    #[arg(long, value_enum, default_value_t = Grain::Model)]
    by: Grain,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Grain {
    Model,
    Principal,
}

/// Runs the command; any error is bad input or usage (exit 2).
pub async fn run(config: &Config, args: ReconcileArgs) -> anyhow::Result<ExitCode> {
    match reconcile(config, args).await {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("bedrock-meter: error: {}", crate::explain(&e));
            Ok(ExitCode::from(2))
        }
    }
}

fn parse_day(s: &str, flag: &str) -> anyhow::Result<Day> {
    Day::parse(s).ok_or_else(|| anyhow!("{flag} `{s}` is not a day: use YYYY-MM-DD (UTC)"))
}

fn non_negative(s: &str, flag: &str) -> anyhow::Result<rust_decimal::Decimal> {
    meter_reconcile::parse_decimal(s)
        .filter(|d| !d.is_sign_negative())
        .ok_or_else(|| anyhow!("{flag} `{s}` is not a non-negative number such as 1 or 0.01"))
}

async fn reconcile(config: &Config, args: ReconcileArgs) -> anyhow::Result<ExitCode> {
    let from = parse_day(&args.from, "--from")?;
    let to = parse_day(&args.to, "--to")?;
    if to < from {
        bail!("--to {to} is before --from {from}");
    }
    if args.cur.is_empty() && args.ce_json.is_empty() && !args.ce {
        bail!("no bill to compare with: give --cur PATH (CUR 2.0 export), --ce-json PATH or --ce");
    }
    let now = match &args.now {
        Some(s) => OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map_err(|_| {
                anyhow!("--now `{s}` is not an RFC 3339 time such as 2026-11-20T12:00:00Z")
            })?,
        None => OffsetDateTime::now_utc(),
    };
    let by = match args.by {
        Grain::Model => By::Model,
        Grain::Principal => By::Principal,
    };
    let opts = Options {
        by,
        from,
        to,
        tolerance_pct: non_negative(&args.tolerance_pct, "--tolerance-pct")?,
        tolerance_usd: non_negative(&args.tolerance_usd, "--tolerance-usd")?,
        settle_hours: args.settle_hours,
        now,
    };
    let prices = match &config.price_table_path {
        Some(p) => PriceTable::load(p)
            .with_context(|| format!("price table {} (PRICE_TABLE_PATH)", p.display()))?,
        None => PriceTable::builtin(),
    };
    let mut names = Names::builtin()?;
    if let Some(map) = &args.map {
        let text = std::fs::read_to_string(map)
            .with_context(|| format!("--map {}: cannot read", map.display()))?;
        names.overlay_map(&map.display().to_string(), &text)?;
    }

    let mut bill = Bill::default();
    {
        let mut sink = |raw| bill.push_raw(&raw, &names);
        let files = read::read_paths(&args.cur, &mut sink)?;
        bill.sources.extend(files);
    }
    for path in &args.ce_json {
        let shown = path.display().to_string();
        let text =
            std::fs::read_to_string(path).with_context(|| format!("{shown}: cannot read"))?;
        let mut periods = Vec::new();
        let mut lines = Vec::new();
        ce::read_response(
            &shown,
            &text,
            &mut |raw| {
                lines.push(raw);
                Ok(())
            },
            &mut |raw| {
                periods.push(raw);
                Ok(())
            },
        )?;
        for p in &periods {
            bill.push_period(p)?;
        }
        for l in &lines {
            bill.push_raw(l, &names)?;
        }
        bill.sources.push(shown);
    }
    if args.ce {
        let client = cost_explorer().await?;
        for (label, doc) in fetch_ce(&client, from, to).await? {
            let mut periods = Vec::new();
            let mut lines = Vec::new();
            ce::read_value(
                &label,
                &doc,
                &mut |raw| {
                    lines.push(raw);
                    Ok(())
                },
                &mut |raw| {
                    periods.push(raw);
                    Ok(())
                },
            )?;
            for p in &periods {
                bill.push_period(p)?;
            }
            for l in &lines {
                bill.push_raw(l, &names)?;
            }
            bill.sources.push(label);
        }
    }

    let rows = match &args.meter_json {
        Some(path) => {
            let shown = path.display().to_string();
            let text =
                std::fs::read_to_string(path).with_context(|| format!("{shown}: cannot read"))?;
            meter::from_report_json_by(&shown, &text, by)?
        }
        None => {
            let store = crate::store(config).await?;
            match by {
                By::Model => meter_rows(&store, from, to).await?,
                By::Principal => principal_rows(&store, from, to).await?,
            }
        }
    };
    let meter = meter::normalise(rows, &prices, &names);
    let report = meter_reconcile::reconcile(&bill, &meter, &opts);
    if report.summary.no_principal_data {
        eprintln!("bedrock-meter: {}", render::NO_PRINCIPAL_DATA);
    }
    tracing::info!(
        by = ?by,
        rows = report.rows.len(),
        exit_code = report.summary.exit_code,
        sources = bill.sources.len(),
        "reconciled"
    );
    crate::emit(&match args.format {
        Format::Table => render::table(&report),
        Format::Json => render::json(&report),
        Format::Csv => render::csv(&report),
    });
    Ok(ExitCode::from(report.summary.exit_code))
}

/// Every `model_day` aggregate of the days, one query per day.
async fn meter_rows(
    store: &DynamoDbUsageStore,
    from: Day,
    to: Day,
) -> anyhow::Result<Vec<MeterRow>> {
    let mut out = Vec::new();
    let mut day = from;
    loop {
        for r in store.models_on_day(day).await? {
            let Some(model) = r.model.clone() else {
                continue;
            };
            let cost_usd = meter_reconcile::parse_decimal(&r.cost_usd).ok_or_else(|| {
                anyhow!(
                    "model_day {model} {day}: cost_usd `{}` is not a decimal",
                    r.cost_usd
                )
            })?;
            out.push(MeterRow {
                principal: None,
                model,
                day,
                input_tokens: r.input_tokens,
                output_tokens: r.output_tokens,
                cache_read_input_tokens: r.cache_read_input_tokens,
                cache_write_input_tokens: r.cache_write_input_tokens,
                unpriced_invocations: r.unpriced_invocations,
                cost_usd,
            });
        }
        if day >= to {
            break;
        }
        day = match day.date().next_day() {
            Some(d) => Day::of(d.midnight().assume_utc()),
            None => break,
        };
    }
    Ok(out)
}

/// Every `tag_model_day` item of the `principal` tag on the days, one
/// Query per day (gsi1 `TDAY#principal#<day>`).
async fn principal_rows(
    store: &DynamoDbUsageStore,
    from: Day,
    to: Day,
) -> anyhow::Result<Vec<MeterRow>> {
    let mut out = Vec::new();
    let mut day = from;
    loop {
        for r in store
            .tag_values_on_day(meter::PRINCIPAL_TAG, day)
            .await?
            .into_iter()
            .filter(|r| r.kind == "tag_model_day")
        {
            let (Some(model), Some(principal)) = (r.model.clone(), r.value.clone()) else {
                continue;
            };
            let cost_usd = meter_reconcile::parse_decimal(&r.cost_usd).ok_or_else(|| {
                anyhow!(
                    "tag_model_day principal {model} {day}: cost_usd `{}` is not a decimal",
                    r.cost_usd
                )
            })?;
            out.push(MeterRow {
                principal: Some(principal),
                model,
                day,
                input_tokens: r.input_tokens,
                output_tokens: r.output_tokens,
                cache_read_input_tokens: r.cache_read_input_tokens,
                cache_write_input_tokens: r.cache_write_input_tokens,
                unpriced_invocations: r.unpriced_invocations,
                cost_usd,
            });
        }
        if day >= to {
            break;
        }
        day = match day.date().next_day() {
            Some(d) => Day::of(d.midnight().assume_utc()),
            None => break,
        };
    }
    Ok(out)
}

/// One `GetCostAndUsage` request: the days (end exclusive) and the record
/// types to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CeRequest {
    pub start: String,
    pub end: String,
    pub record_types: Vec<&'static str>,
    pub next_page_token: Option<String>,
}

/// The one Cost Explorer call reconcile makes; the page comes back in the
/// JSON shape of `aws ce get-cost-and-usage` so saved and live responses
/// take the same path.
pub trait CostExplorer {
    /// One page: the response document and the next page's token.
    fn get_cost_and_usage(
        &self,
        req: &CeRequest,
    ) -> impl std::future::Future<Output = anyhow::Result<(Value, Option<String>)>>;
}

/// The usage request and the credits/refunds request, every page, labelled
/// for error messages.
pub async fn fetch_ce<C: CostExplorer>(
    client: &C,
    from: Day,
    to: Day,
) -> anyhow::Result<Vec<(String, Value)>> {
    let end = to
        .date()
        .next_day()
        .ok_or_else(|| anyhow!("--to {to} is too late"))?;
    let mut out = Vec::new();
    for (label, record_types) in [
        ("usage", vec!["Usage"]),
        ("credits", vec!["Credit", "Refund"]),
    ] {
        let mut req = CeRequest {
            start: from.to_string(),
            end: Day::of(end.midnight().assume_utc()).to_string(),
            record_types,
            next_page_token: None,
        };
        for page in 1.. {
            let (doc, next) = client
                .get_cost_and_usage(&req)
                .await
                .with_context(|| format!("Cost Explorer GetCostAndUsage ({label}, page {page})"))?;
            out.push((format!("Cost Explorer {label} page {page}"), doc));
            match next.filter(|t| !t.is_empty()) {
                Some(t) => req.next_page_token = Some(t),
                None => break,
            }
        }
    }
    Ok(out)
}

/// Cost Explorer's client (its endpoint is in us-east-1), recorded as `cli
/// reconcile` by aws-call-log when BEDROCK_METER_CALL_LOG is set.
async fn cost_explorer() -> anyhow::Result<aws_sdk_costexplorer::Client> {
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let builder = aws_sdk_costexplorer::config::Builder::from(&sdk)
        .region(aws_sdk_costexplorer::config::Region::new("us-east-1"));
    let builder = aws_call_log::install_with(builder, crate::component(), |b, r| b.interceptor(r));
    Ok(aws_sdk_costexplorer::Client::from_conf(builder.build()))
}

impl CostExplorer for aws_sdk_costexplorer::Client {
    async fn get_cost_and_usage(&self, req: &CeRequest) -> anyhow::Result<(Value, Option<String>)> {
        use aws_sdk_costexplorer::types::{
            DateInterval, Dimension, DimensionValues, Expression, Granularity, GroupDefinition,
            GroupDefinitionType,
        };
        let group = |key: &str| {
            GroupDefinition::builder()
                .r#type(GroupDefinitionType::Dimension)
                .key(key)
                .build()
        };
        let out = self
            .get_cost_and_usage()
            .time_period(
                DateInterval::builder()
                    .start(&req.start)
                    .end(&req.end)
                    .build()
                    .context("Cost Explorer time period")?,
            )
            .granularity(Granularity::Daily)
            .metrics("UnblendedCost")
            .metrics("UsageQuantity")
            .group_by(group("SERVICE"))
            .group_by(group("USAGE_TYPE"))
            .filter(
                Expression::builder()
                    .dimensions(
                        DimensionValues::builder()
                            .key(Dimension::RecordType)
                            .set_values(Some(req.record_types.iter().map(|s| s.to_string()).collect()))
                            .build(),
                    )
                    .build(),
            )
            .set_next_page_token(req.next_page_token.clone())
            .send()
            .await
            .map_err(|e| {
                anyhow!(
                    "{}; check credentials and that the caller may ce:GetCostAndUsage (docs/reconcile.md)",
                    aws_sdk_costexplorer::error::DisplayErrorContext(&e)
                )
            })?;
        let results: Vec<Value> = out
            .results_by_time()
            .iter()
            .map(|r| {
                let groups: Vec<Value> = r
                    .groups()
                    .iter()
                    .map(|g| {
                        let metrics: serde_json::Map<String, Value> = g
                            .metrics()
                            .map(|m| {
                                m.iter()
                                    .map(|(k, v)| {
                                        (k.clone(), json!({"Amount": v.amount(), "Unit": v.unit()}))
                                    })
                                    .collect()
                            })
                            .unwrap_or_default();
                        json!({"Keys": g.keys(), "Metrics": metrics})
                    })
                    .collect();
                json!({
                    "TimePeriod": {
                        "Start": r.time_period().map(|t| t.start()),
                        "End": r.time_period().map(|t| t.end()),
                    },
                    "Groups": groups,
                    "Estimated": r.estimated(),
                })
            })
            .collect();
        let defs: Vec<Value> = out
            .group_definitions()
            .iter()
            .map(|d| json!({"Type": d.r#type().map(|t| t.as_str()), "Key": d.key()}))
            .collect();
        let doc = json!({"GroupDefinitions": defs, "ResultsByTime": results});
        Ok((doc, out.next_page_token().map(str::to_string)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Answers from canned pages and records each request.
    struct FakeCe {
        pages: Mutex<Vec<(Value, Option<String>)>>,
        seen: Mutex<Vec<CeRequest>>,
    }

    impl CostExplorer for FakeCe {
        async fn get_cost_and_usage(
            &self,
            req: &CeRequest,
        ) -> anyhow::Result<(Value, Option<String>)> {
            self.seen.lock().unwrap().push(req.clone());
            let mut pages = self.pages.lock().unwrap();
            if pages.is_empty() {
                bail!("no more pages");
            }
            Ok(pages.remove(0))
        }
    }

    fn page(day: &str, end: &str, cost: &str) -> Value {
        json!({
            "GroupDefinitions": [{"Type": "DIMENSION", "Key": "SERVICE"}, {"Type": "DIMENSION", "Key": "USAGE_TYPE"}],
            "ResultsByTime": [{"TimePeriod": {"Start": day, "End": end}, "Estimated": false, "Groups": [
                {"Keys": ["Amazon Bedrock", "USE1-NovaMicro-input-tokens"],
                 "Metrics": {"UnblendedCost": {"Amount": cost, "Unit": "USD"},
                             "UsageQuantity": {"Amount": "1000", "Unit": "1K tokens"}}}]}]
        })
    }

    #[tokio::test]
    async fn ce_asks_for_usage_then_credits_with_an_exclusive_end_and_follows_pages() {
        let fake = FakeCe {
            pages: Mutex::new(vec![
                (
                    page("2026-11-10", "2026-11-11", "0.035"),
                    Some("next".into()),
                ),
                (page("2026-11-11", "2026-11-12", "0.07"), None),
                (page("2026-11-10", "2026-11-11", "-0.02"), None),
            ]),
            seen: Mutex::new(Vec::new()),
        };
        let d = |s| Day::parse(s).unwrap();
        let docs = fetch_ce(&fake, d("2026-11-10"), d("2026-11-11"))
            .await
            .unwrap();
        let seen = fake.seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            [
                CeRequest {
                    start: "2026-11-10".into(),
                    end: "2026-11-12".into(),
                    record_types: vec!["Usage"],
                    next_page_token: None
                },
                CeRequest {
                    start: "2026-11-10".into(),
                    end: "2026-11-12".into(),
                    record_types: vec!["Usage"],
                    next_page_token: Some("next".into())
                },
                CeRequest {
                    start: "2026-11-10".into(),
                    end: "2026-11-12".into(),
                    record_types: vec!["Credit", "Refund"],
                    next_page_token: None
                },
            ]
        );
        let labels: Vec<&str> = docs.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(
            labels,
            [
                "Cost Explorer usage page 1",
                "Cost Explorer usage page 2",
                "Cost Explorer credits page 1"
            ]
        );
        // The pages read as bill lines: the credit is an adjustment.
        let names = Names::builtin().unwrap();
        let mut bill = Bill::default();
        for (label, doc) in &docs {
            let mut lines = Vec::new();
            ce::read_value(
                label,
                doc,
                &mut |l| {
                    lines.push(l);
                    Ok(())
                },
                &mut |_| Ok(()),
            )
            .unwrap();
            for l in &lines {
                bill.push_raw(l, &names).unwrap();
            }
        }
        let kinds: Vec<String> = bill
            .lines
            .iter()
            .map(|l| format!("{:?} {}", l.kind, l.cost))
            .collect();
        assert_eq!(
            kinds,
            ["Usage 0.035", "Usage 0.07", "Adjustment(\"Credit\") -0.02"]
        );
    }

    #[tokio::test]
    async fn a_failing_cost_explorer_call_names_the_request() {
        let fake = FakeCe {
            pages: Mutex::new(vec![]),
            seen: Mutex::new(Vec::new()),
        };
        let d = |s| Day::parse(s).unwrap();
        let e = fetch_ce(&fake, d("2026-11-10"), d("2026-11-10"))
            .await
            .unwrap_err();
        assert!(
            format!("{e:#}").contains("GetCostAndUsage (usage, page 1)"),
            "{e:#}"
        );
    }
}
