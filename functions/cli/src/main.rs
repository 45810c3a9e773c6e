//! `bedrock-meter`: create the table, replay logs through the very same
//! ingest path as the Lambda, report totals, and check price tables.

mod backfill;
mod budget;
mod cost;
mod dashboard;
mod prices;
mod reconcile;
mod redrive;
mod replay;
mod report;
mod table;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use meter_store::dynamo::{init_table, Severity, TableOptions};
use meter_store::store::{Access, ConnInfo, OperatorError};
use meter_store::{Config, DynamoDbUsageStore, IngestError, PayloadError, StoreError};

/// Exact per-user, per-model, per-day Amazon Bedrock spend from invocation logs.
///
/// AWS settings come from the standard places (AWS_REGION, AWS_PROFILE,
/// AWS_ENDPOINT_URL, credentials files); bedrock-meter's own from USAGE_TABLE,
/// USER_METADATA_KEY, MARKER_TTL_DAYS, PRICE_TABLE_PATH, MAX_DECOMPRESSED_BYTES,
/// ATTRIBUTION_TAGS.
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
    Prices(prices::PricesArgs),
    /// Ingest Bedrock's own S3 delivery (history before bedrock-meter), exactly once.
    Backfill(backfill::BackfillArgs),
    /// Manage budgets: per-user daily/monthly limits, defaults, the organisation's limit.
    Budget(budget::BudgetArgs),
    /// Serve the dashboard (overview, users, models, days, budgets) on 127.0.0.1:8080.
    Dashboard(dashboard::DashboardArgs),
    /// Drain a Lambda failure queue (SQS) through the exactly-once ingest path,
    /// deleting each message once counted; Kinesis records are read back from the stream.
    Redrive(redrive::RedriveArgs),
    /// Check the meter against the bill (CUR 2.0 export or Cost Explorer):
    /// per UTC day and model, every gap with its reason (docs/reconcile.md).
    Reconcile(reconcile::ReconcileArgs),
    /// What individual requests cost: user, model, UTC day, tokens and exact
    /// cost of each request (kept MARKER_TTL_DAYS days when the meter runs
    /// with REQUEST_COSTS=on).
    Cost(cost::CostArgs),
}

impl Command {
    /// The bedrock-meter settings (environment variables) the command reads.
    fn settings(&self) -> &'static [&'static str] {
        match self {
            Command::Init | Command::Report(_) | Command::Budget(_) | Command::Cost(_) => {
                &["USAGE_TABLE"]
            }
            // The tag keys the pages link to (`/tags/{key}`).
            Command::Dashboard(_) => &["USAGE_TABLE", "USER_METADATA_KEY", "ATTRIBUTION_TAGS"],
            Command::Prices(_) => &["USAGE_TABLE", "PRICE_TABLE_PATH"],
            Command::Reconcile(_) => &["USAGE_TABLE", "PRICE_TABLE_PATH"],
            _ => meter_store::config::ALL_SETTINGS,
        }
    }

    /// What the command does with the table, for error messages.
    fn access(&self) -> Access {
        match self {
            Command::Init => Access::Init,
            Command::Report(_)
            | Command::Dashboard(_)
            | Command::Reconcile(_)
            | Command::Cost(_) => Access::Read,
            Command::Replay(_) | Command::Backfill(_) => Access::Write,
            _ => Access::Use,
        }
    }

    /// The caller named in the AWS call log (aws-call-log): `cli <subcommand>`.
    fn component(&self) -> &'static str {
        match self {
            Command::Init => "cli init",
            Command::Replay(_) => "cli replay",
            Command::Report(_) => "cli report",
            Command::Prices(_) => "cli prices",
            Command::Backfill(_) => "cli backfill",
            Command::Budget(_) => "cli budget",
            Command::Dashboard(_) => "cli dashboard",
            Command::Redrive(_) => "cli redrive",
            Command::Reconcile(_) => "cli reconcile",
            Command::Cost(_) => "cli cost",
        }
    }
}

static COMPONENT: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

/// This run's component in the AWS call log, for clients built with
/// `aws_call_log::install(builder, crate::component())`.
pub fn component() -> &'static str {
    COMPONENT.get().copied().unwrap_or("cli")
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
            eprintln!("bedrock-meter: error: {}", explain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The table, Region and endpoint of this run's store, and what the command
/// does with it, for [`explain`].
static CONN: std::sync::OnceLock<(ConnInfo, Access)> = std::sync::OnceLock::new();

/// An error chain in the operator's terms: a store failure anywhere in it
/// (not yet worded by the command) is described with the table, Region and
/// endpoint it concerned and what to check, never with the Lambda's retry
/// wording.
pub fn explain(e: &anyhow::Error) -> String {
    let Some((conn, access)) = CONN.get() else {
        return format!("{e:#}");
    };
    let mut outer = Vec::new();
    for cause in e.chain() {
        let worded = if let Some(PayloadError::Ingest(ie)) = cause.downcast_ref::<PayloadError>() {
            Some(meter_store::store::describe_ingest_for_operator(ie, conn))
        } else if let Some(ie) = cause.downcast_ref::<IngestError>() {
            Some(meter_store::store::describe_ingest_for_operator(ie, conn))
        } else {
            cause
                .downcast_ref::<StoreError>()
                .map(|se| meter_store::store::describe_for_operator(se, conn, *access))
        };
        match worded {
            Some(w) => {
                outer.push(w);
                return outer.join(": ");
            }
            None if cause.is::<OperatorError>() => return format!("{e:#}"),
            None => outer.push(cause.to_string()),
        }
    }
    format!("{e:#}")
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    COMPONENT.get_or_init(|| cli.command.component());
    ACCESS.get_or_init(|| cli.command.access());
    // Only the settings this command uses: a bad MARKER_TTL_DAYS must not
    // break `report`.
    let configured = Config::from_env_using(cli.command.settings()).and_then(|mut config| {
        if let Some(t) = cli.table.clone() {
            config.table = meter_store::config::check_table_name(t, "--table")?;
        }
        Ok(config)
    });
    let config = match configured {
        Ok(config) => config,
        // `reconcile` promises exit 2 for bad input or usage (1 means a
        // mismatch with the bill); a bad setting is a usage error.
        Err(e) if matches!(cli.command, Command::Reconcile(_)) => {
            eprintln!("bedrock-meter: error: {e}");
            return Ok(ExitCode::from(2));
        }
        Err(e) => return Err(e.into()),
    };
    match cli.command {
        Command::Init => init(&config).await,
        Command::Replay(args) => replay::run(&config, args).await,
        Command::Report(args) => {
            let store = store(&config).await?;
            report::run(&store, args).await
        }
        Command::Prices(args) => prices::run(&config, args).await,
        Command::Backfill(args) => backfill::run(&config, args).await,
        Command::Budget(args) => budget::run(&config, args).await,
        Command::Dashboard(args) => dashboard::run(&config, args).await,
        Command::Redrive(args) => redrive::run(&config, args).await,
        Command::Reconcile(args) => reconcile::run(&config, args).await,
        Command::Cost(args) => {
            let store = store(&config).await?;
            cost::run(&store, args).await
        }
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
    let store = DynamoDbUsageStore::new(aws_call_log::client(&sdk, component()), &config.table);
    let mut conn = store.conn_info();
    conn.endpoint = conn.endpoint.or(sdk.endpoint_url().map(str::to_string));
    CONN.get_or_init(|| (conn, ACCESS.get().copied().unwrap_or(Access::Use)));
    Ok(store)
}

/// How `init` describes the table's marker switch-over (see
/// docs/data-model.md, "Marker buckets").
fn switch_over_line(buckets_since: i64) -> String {
    if buckets_since <= 0 {
        return "idempotency markers: marker buckets for every record".to_string();
    }
    let at = time::OffsetDateTime::from_unix_timestamp(buckets_since)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| buckets_since.to_string());
    format!(
        "idempotency markers: marker buckets for records logged from {at}; records logged \
         before keep per-record markers (an earlier version's) until they expire. Stop any \
         replay or backfill of an earlier version before then"
    )
}

/// What this run's command does with the table (set once in `run`).
static ACCESS: std::sync::OnceLock<Access> = std::sync::OnceLock::new();

/// `init`: create the table, or compare the existing one with the data
/// contract. Differences in keys or `gsi1` fail (exit 1): the meter cannot
/// use the table. A missing stream, TTL elsewhere or provisioned billing are
/// warnings (exit 0): metering and reports work.
async fn init(config: &Config) -> anyhow::Result<ExitCode> {
    let store = store(config).await?;
    let conn = store.conn_info();
    let table = &config.table;
    let outcome = init_table(store.client(), table, TableOptions::default())
        .await
        .map_err(|e| OperatorError::new(&e, &conn, Access::Init))?;
    if outcome.created {
        println!(
            "created table `{table}` (keys pk/sk, index gsi1, on-demand, TTL on expires_at, \
             stream NEW_AND_OLD_IMAGES)"
        );
    } else if outcome.findings.is_empty() {
        println!(
            "table `{table}` already exists and matches the data contract (keys, gsi1, stream, \
             TTL on expires_at, on-demand)"
        );
    } else {
        println!("table `{table}` already exists");
    }
    if outcome.ttl_enabled && !outcome.created {
        println!("enabled TTL on expires_at");
    }
    if !outcome.is_breaking() {
        println!("{}", switch_over_line(outcome.buckets_since));
    }
    for f in &outcome.findings {
        let level = match f.severity {
            Severity::Breaking => "error",
            Severity::Warning => "warning",
        };
        eprintln!("bedrock-meter: {level}: table `{table}`: {f}");
    }
    if outcome.is_breaking() {
        eprintln!(
            "bedrock-meter: error: table `{table}` does not match the data contract \
             (docs/data-model.md); nothing was changed"
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
