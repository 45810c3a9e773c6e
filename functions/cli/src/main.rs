//! `bedrock-meter`: create the table, replay logs through the very same
//! ingest path as the Lambda, report totals, and check price tables.

mod backfill;
mod budget;
mod replay;
mod report;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use meter_core::PriceTable;
use meter_store::{create_table, Config, DynamoDbUsageStore};

/// Exact per-user, per-model, per-day Amazon Bedrock spend from invocation logs.
///
/// AWS settings come from the standard places (AWS_REGION, AWS_PROFILE,
/// AWS_ENDPOINT_URL, credentials files); bedrock-meter's own from USAGE_TABLE,
/// USER_METADATA_KEY, MARKER_TTL_DAYS, PRICE_TABLE_PATH, MAX_DECOMPRESSED_BYTES.
#[derive(Parser)]
#[command(name = "bedrock-meter", version, about, long_about)]
struct Cli {
    /// DynamoDB table (overrides USAGE_TABLE).
    #[arg(long, global = true)]
    table: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the usage table with the data contract's schema (safe to run twice).
    Init,
    /// Ingest files exactly once: CloudWatch Logs Lambda events, decoded
    /// payloads, newline-delimited records (S3 delivery), gzip of those, and
    /// Lambda on-failure destination records. `-` reads stdin.
    Replay(replay::ReplayArgs),
    /// Show totals from the table.
    Report(report::ReportArgs),
    /// Print the effective price table, or validate one with --check.
    Prices(PricesArgs),
    /// Ingest Bedrock's own S3 delivery (history before bedrock-meter), exactly once.
    Backfill(backfill::BackfillArgs),
    /// Manage budgets: per-user daily/monthly limits, defaults, the organisation's limit.
    Budget(budget::BudgetArgs),
}

#[derive(Args)]
struct PricesArgs {
    /// Validate this price table file instead of printing the effective one.
    #[arg(long, value_name = "FILE")]
    check: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum, Default, PartialEq, Eq)]
pub enum Format {
    #[default]
    Table,
    Json,
    Csv,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bedrock-meter: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut config = Config::from_env()?;
    if let Some(t) = cli.table {
        config.table = t;
    }
    match cli.command {
        Command::Init => {
            let store = store(&config).await?;
            let created = create_table(store.client(), &config.table)
                .await
                .with_context(|| format!("creating table `{}`", config.table))?;
            if created {
                println!("created table `{}` (on-demand, gsi1, TTL on expires_at, stream NEW_AND_OLD_IMAGES)", config.table);
            } else {
                println!(
                    "table `{}` already exists; TTL on expires_at checked",
                    config.table
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay(args) => replay::run(&config, args).await,
        Command::Report(args) => {
            let store = store(&config).await?;
            report::run(&store, args).await
        }
        Command::Prices(args) => prices(&config, args),
        Command::Backfill(args) => backfill::run(&config, args).await,
        Command::Budget(args) => budget::run(&config, args).await,
    }
}

/// Writes to stdout; a closed pipe (`| head`) ends output quietly.
pub fn emit(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("bedrock-meter: cannot write output: {e}");
    }
}

/// Builds the DynamoDB store from the standard AWS configuration.
pub async fn store(config: &Config) -> anyhow::Result<DynamoDbUsageStore> {
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    if sdk.region().is_none() {
        anyhow::bail!("no AWS Region configured: set AWS_REGION (or a profile with a region)");
    }
    Ok(DynamoDbUsageStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        &config.table,
    ))
}

fn prices(config: &Config, args: PricesArgs) -> anyhow::Result<ExitCode> {
    let (table, origin) = match (&args.check, &config.price_table_path) {
        (Some(path), _) => (
            PriceTable::load(path)
                .with_context(|| format!("{} is not a valid price table", path.display()))?,
            path.display().to_string(),
        ),
        (None, Some(path)) => (
            PriceTable::load(path)?,
            format!("{} (PRICE_TABLE_PATH)", path.display()),
        ),
        (None, None) => (PriceTable::builtin(), "built-in".to_string()),
    };
    let meta = table.meta();
    println!("price table: {origin}");
    println!(
        "version {}, checked {}, {}; rates per 1M tokens",
        meta.version, meta.checked, meta.currency
    );
    for s in &meta.sources {
        println!("  source: {s}");
    }
    for n in &meta.notes {
        println!("  note:   {n}");
    }
    if args.check.is_some() {
        println!(
            "OK: {} rate entries, {} aliases",
            table.entries().len(),
            table.aliases().len()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let opt =
        |r: Option<meter_core::money::RatePerMillion>| r.map_or("-".to_string(), |r| r.to_string());
    println!(
        "{:<48} {:<8} {:<16} {:<10} {:>9} {:>9} {:>11} {:>11}",
        "model", "route", "region", "from", "input", "output", "cache_read", "cache_write"
    );
    for e in table.entries() {
        println!(
            "{:<48} {:<8} {:<16} {:<10} {:>9} {:>9} {:>11} {:>11}",
            e.model,
            e.route.to_string(),
            e.region.as_deref().unwrap_or("*"),
            meter_core::Day::of(e.from.midnight().assume_utc()).to_string(),
            opt(e.rates.input),
            opt(e.rates.output),
            opt(e.rates.cache_read),
            opt(e.rates.cache_write),
        );
    }
    for (alias, target) in table.aliases() {
        println!("alias {alias} -> {target}");
    }
    Ok(ExitCode::SUCCESS)
}
