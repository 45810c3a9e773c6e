//! `bedrock-meter prices`: print the effective price table (with its origin
//! and age), validate one (`--check`), or sync one from the AWS Price List
//! (`sync`, `--store` to store it in the usage table). The sync itself is
//! `meter_core::pricelist::sync`; this shell only reads files, downloads,
//! and writes. [`meter`] gives the other commands the effective table:
//! PRICE_TABLE_PATH, else the newest stored one, else the built-in.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use meter_core::money::RatePerMillion;
use meter_core::pricelist::offer::{self, OfferFile};
use meter_core::pricelist::{self, map::PriceMap, SyncOptions, SyncReport};
use meter_core::Meter;
use meter_core::{Day, PriceTable};
use meter_store::prices::{self as stored, PriceOrigin, PriceSource, StoreOutcome};
use meter_store::Config;

pub use price_sync::fetch::PRICE_LIST_URL;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct PricesArgs {
    /// Validate this price table file instead of printing the effective one.
    #[arg(long, value_name = "FILE")]
    check: Option<PathBuf>,
    /// With --check: store the validated table in the usage table as the
    /// newest one (the ingest functions pick it up within 10 minutes).
    #[arg(long, requires = "check")]
    store: bool,
    #[command(subcommand)]
    command: Option<PricesCommand>,
}

#[derive(Subcommand)]
enum PricesCommand {
    /// Build a price table from AWS Price List data (append-only onto --base).
    ///
    /// Exit 0: no change; 1: the table changed (written to --out); 2: a data
    /// error, or the data could not be read (nothing written).
    Sync(SyncArgs),
}

#[derive(Args)]
struct SyncArgs {
    /// Read bulk offer files (index.json) and GetProducts dumps anywhere under DIR.
    #[arg(
        long,
        value_name = "DIR",
        conflicts_with = "fetch",
        required_unless_present = "fetch"
    )]
    offer_dir: Option<PathBuf>,
    /// Download the current bulk offer files of the three Bedrock offer codes.
    #[arg(long)]
    fetch: bool,
    /// Regions to take (comma-separated); with --fetch, the files to download.
    #[arg(long, value_delimiter = ',', default_value = "us-east-1")]
    regions: Vec<String>,
    /// Price List endpoint for --fetch.
    #[arg(long, value_name = "URL", default_value = PRICE_LIST_URL)]
    price_list_url: String,
    /// The table to sync onto (default: the built-in one).
    #[arg(long, value_name = "FILE")]
    base: Option<PathBuf>,
    /// Where to write the synced table (`-` = stdout); without it, only the report.
    #[arg(long, value_name = "FILE|-")]
    out: Option<String>,
    /// Map file whose entries add to or replace the built-in map's.
    #[arg(long, value_name = "FILE")]
    map: Vec<PathBuf>,
    /// Use only the --map files, not the built-in map.
    #[arg(long, requires = "map")]
    map_only: bool,
    /// `from` date of new entries instead of each offer's publication day.
    #[arg(long, value_name = "YYYY-MM-DD")]
    from: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Store the synced table in the usage table as the newest one (validated
    /// first; nothing stored on a data error). Without --base, syncs onto the
    /// newest stored table.
    #[arg(long)]
    store: bool,
}

pub async fn run(config: &Config, args: PricesArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        // Exit 1 means "changes written": a failure must not look like one.
        Some(PricesCommand::Sync(sync)) => match run_sync(config, sync).await {
            Ok(code) => Ok(code),
            Err(e) => {
                eprintln!("bedrock-meter: error: {e:#}");
                Ok(ExitCode::from(2))
            }
        },
        None => show(config, args.check.as_deref(), args.store).await,
    }
}

/// The metering pipeline with the effective price table: PRICE_TABLE_PATH,
/// else the newest stored table, else the built-in. A stored table that
/// cannot be read or is invalid is reported on stderr and skipped.
pub async fn meter(
    config: &Config,
    store: &meter_store::DynamoDbUsageStore,
) -> anyhow::Result<Meter> {
    let meter = config.meter()?;
    if config.price_table_path.is_some() {
        return Ok(meter);
    }
    let (source, prices) = PriceSource::start(
        None,
        store.clone(),
        stored::DEFAULT_RECHECK,
        std::time::Instant::now(),
    )
    .await?;
    tracing::info!(origin = %source.origin(), "price table");
    Ok(Meter { prices, ..meter })
}

/// The effective table and its origin, reading the usage table when
/// PRICE_TABLE_PATH is not set; the built-in when no table can be reached.
async fn effective(config: &Config) -> anyhow::Result<(PriceTable, String)> {
    if let Some(path) = &config.price_table_path {
        let table = PriceTable::load(path).with_context(|| {
            format!(
                "PRICE_TABLE_PATH: {} is not a valid price table",
                path.display()
            )
        })?;
        return Ok((table, format!("{} (PRICE_TABLE_PATH)", path.display())));
    }
    let store = match crate::store(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bedrock-meter: note: no stored price table read ({e:#})");
            return Ok((PriceTable::builtin(), PriceOrigin::Builtin.to_string()));
        }
    };
    let (source, table) = PriceSource::start(
        None,
        store,
        stored::DEFAULT_RECHECK,
        std::time::Instant::now(),
    )
    .await?;
    Ok((table, source.origin().to_string()))
}

/// Stores `text` (validated first) as the newest table; says what it did on stderr.
async fn store_text(store: &meter_store::DynamoDbUsageStore, text: &str) -> anyhow::Result<()> {
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    match stored::store_table(store, text, &now).await {
        Ok(StoreOutcome::Stored { pointer, bytes }) => eprintln!(
            "stored in {}: {} {} ({bytes} bytes gzip, checked {})",
            store.table(),
            stored::PRICES_PK,
            pointer.sk,
            pointer.checked
        ),
        Ok(StoreOutcome::Unchanged { pointer }) => eprintln!(
            "not stored: {} {} in {} is already this table",
            stored::PRICES_PK,
            pointer.sk,
            store.table()
        ),
        Err(stored::PriceStoreError::Store(e)) => return Err(anyhow::Error::new(e)),
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

async fn show(config: &Config, check: Option<&Path>, store_it: bool) -> anyhow::Result<ExitCode> {
    let (table, origin) = match (check, &config.price_table_path) {
        (Some(path), _) => {
            let table = PriceTable::load(path)
                .with_context(|| format!("{} is not a valid price table", path.display()))?;
            if store_it {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                store_text(&crate::store(config).await?, &text).await?;
            }
            (table, path.display().to_string())
        }
        (None, _) => effective(config).await?,
    };
    let meta = table.meta();
    // One write at the end: a closed pipe (`| head`) ends output quietly.
    let mut out = String::new();
    macro_rules! println {
        ($($arg:tt)*) => {{
            out.push_str(&format!($($arg)*));
            out.push('\n');
        }};
    }
    println!("price table: {origin}");
    println!(
        "version {}, checked {}, {}; rates per 1M tokens",
        meta.version, meta.checked, meta.currency
    );
    let today = Day::of(time::OffsetDateTime::now_utc());
    match Day::parse(&meta.checked) {
        Some(checked) => println!(
            "age: {} days since checked (today {today} UTC)",
            (today.date() - checked.date()).whole_days()
        ),
        None => println!(
            "age: unknown (`checked` = `{}` is not YYYY-MM-DD)",
            meta.checked
        ),
    }
    for s in &meta.sources {
        println!("  source: {s}");
    }
    for n in &meta.notes {
        println!("  note:   {n}");
    }
    if check.is_some() {
        println!(
            "OK: {} rate entries, {} aliases",
            table.entries().len(),
            table.aliases().len()
        );
        crate::emit(&out);
        return Ok(ExitCode::SUCCESS);
    }
    let opt = |r: Option<RatePerMillion>| r.map_or("-".to_string(), |r| r.to_string());
    println!(
        "{:<48} {:<8} {:<16} {:<10} {:>9} {:>9} {:>11} {:>11} {:>14} long_context",
        "model",
        "route",
        "region",
        "from",
        "input",
        "output",
        "cache_read",
        "cache_write",
        "cache_write_1h",
    );
    for e in table.entries() {
        let long = e.rates.long_context.map_or("-".to_string(), |lc| {
            format!(
                ">{}: {}/{}/{}/{}/{}",
                lc.threshold,
                opt(lc.input),
                opt(lc.output),
                opt(lc.cache_read),
                opt(lc.cache_write),
                opt(lc.cache_write_1h)
            )
        });
        println!(
            "{:<48} {:<8} {:<16} {:<10} {:>9} {:>9} {:>11} {:>11} {:>14} {}",
            e.model,
            e.route.to_string(),
            e.region.as_deref().unwrap_or("*"),
            Day::of(e.from.midnight().assume_utc()).to_string(),
            opt(e.rates.input),
            opt(e.rates.output),
            opt(e.rates.cache_read),
            opt(e.rates.cache_write),
            opt(e.rates.cache_write_1h),
            long,
        );
    }
    for (alias, target) in table.aliases() {
        println!("alias {alias} -> {target}");
    }
    crate::emit(&out);
    Ok(ExitCode::SUCCESS)
}

async fn run_sync(config: &Config, args: SyncArgs) -> anyhow::Result<ExitCode> {
    let store = match args.store {
        true => Some(crate::store(config).await?),
        false => None,
    };
    let base_text = match (&args.base, &store) {
        (Some(p), _) => std::fs::read_to_string(p)
            .with_context(|| format!("cannot read the base table {}", p.display()))?,
        (None, Some(store)) => match stored::load_newest(store).await {
            Ok(Some((pointer, _, text))) => {
                eprintln!(
                    "base: the stored table {} {}",
                    stored::PRICES_PK,
                    pointer.sk
                );
                text
            }
            Ok(None) => meter_core::pricing::DEFAULT_PRICE_TABLE.to_string(),
            Err(stored::PriceStoreError::Store(e)) => return Err(anyhow::Error::new(e)),
            Err(e) => {
                eprintln!("bedrock-meter: warning: {e}; syncing onto the built-in table");
                meter_core::pricing::DEFAULT_PRICE_TABLE.to_string()
            }
        },
        (None, None) => meter_core::pricing::DEFAULT_PRICE_TABLE.to_string(),
    };
    let mut map = if args.map_only {
        PriceMap::default()
    } else {
        PriceMap::builtin()?
    };
    for p in &args.map {
        let text = std::fs::read_to_string(p)
            .with_context(|| format!("cannot read the map {}", p.display()))?;
        map.overlay(PriceMap::from_toml(&p.display().to_string(), &text)?);
    }
    let from = match &args.from {
        None => None,
        Some(s) => Some(
            Day::parse(s)
                .with_context(|| format!("--from `{s}` is not a date such as 2026-11-01"))?
                .date(),
        ),
    };
    let files = if args.fetch {
        price_sync::fetch::fetch_offers(&args.price_list_url, &args.regions).await?
    } else {
        let dir = args
            .offer_dir
            .as_deref()
            .context("give --offer-dir DIR or --fetch")?;
        read_offer_dir(dir)?
    };
    let opts = SyncOptions {
        from,
        regions: args.regions.clone(),
    };
    let outcome = pricelist::sync(&files, &map, &base_text, &opts)?;
    let report = if args.json {
        serde_json::to_string_pretty(&outcome.report)? + "\n"
    } else {
        render_report(&outcome.report)
    };
    // The report goes to stderr when the table goes to stdout.
    if args.out.as_deref() == Some("-") {
        eprint!("{report}");
    } else {
        crate::emit(&report);
    }
    let code = outcome.exit_code(&base_text);
    if let (Some(table), Some(store)) = (&outcome.table, &store) {
        store_text(store, table).await?;
    }
    if let (Some(table), Some(out)) = (&outcome.table, &args.out) {
        if out == "-" {
            crate::emit(table);
        } else {
            std::fs::write(out, table).with_context(|| format!("cannot write {out}"))?;
        }
    }
    Ok(ExitCode::from(code))
}

/// Every `.json` file under `dir`, parsed and recognised by content, in
/// path order.
fn read_offer_dir(dir: &Path) -> anyhow::Result<Vec<OfferFile>> {
    let mut paths = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d)
            .with_context(|| format!("cannot read the offer directory {}", d.display()))?;
        for entry in entries {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                paths.push(path);
            }
        }
    }
    paths.sort();
    if paths.is_empty() {
        bail!(
            "no .json files under {}: put bulk index.json files or GetProducts dumps there",
            dir.display()
        );
    }
    let mut files = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        files.push(offer::parse_file(&path.display().to_string(), &text)?);
    }
    Ok(files)
}

/// The human-readable report.
pub fn render_report(r: &SyncReport) -> String {
    let mut s = String::new();
    let mut line = |t: String| {
        s.push_str(&t);
        s.push('\n');
    };
    for o in &r.offers {
        line(format!(
            "offer {} version {} published {} regions {}",
            o.offer,
            o.version,
            o.published,
            o.regions.join(",")
        ));
    }
    line(format!(
        "checked: {} -> {}",
        r.checked_before, r.checked_after
    ));
    line(format!("changed rates ({}):", r.changed.len()));
    for c in &r.changed {
        line(format!(
            "  {} {} {} {}: {} -> {} from {}",
            c.model,
            c.route,
            c.region,
            c.field,
            c.old.as_deref().unwrap_or("-"),
            c.new,
            c.from
        ));
    }
    line(format!("new models ({}):", r.new_models.len()));
    for m in &r.new_models {
        line(format!("  {m}"));
    }
    line(format!("unmapped priced names ({}):", r.unmapped.len()));
    for u in &r.unmapped {
        line(format!(
            "  {} {} `{}` in {}",
            u.offer,
            u.kind.label(),
            u.name,
            u.regions.join(",")
        ));
    }
    line(format!(
        "in the base table, no longer in the Price List ({}):",
        r.not_in_price_list.len()
    ));
    for m in &r.not_in_price_list {
        line(format!("  {m}"));
    }
    line(format!(
        "kept as manual entries (no map entry): {}",
        r.manual.len()
    ));
    if !r.skipped.is_empty() {
        line(format!(
            "skipped rows: {}",
            r.skipped
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    line(format!("errors ({}):", r.errors.len()));
    for e in &r.errors {
        line(format!("  {}: {}", e.kind, e.message));
    }
    line(format!("entries added: {}", r.entries_added));
    s
}
