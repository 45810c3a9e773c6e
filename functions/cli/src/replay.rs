//! `bedrock-meter replay`: the Lambda's ingest path over files.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use meter_core::{aggregate, AggregateKey, Counters, Meter, MeteredRecord};
use meter_store::{ingest_payload, CommitSettings, Config, IngestReport, UsageStore};
use time::OffsetDateTime;
use tokio::sync::Semaphore;

use crate::Format;

#[derive(Args)]
pub struct ReplayArgs {
    /// Files or folders (searched recursively, in name order); `-` for stdin.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Exit non-zero when any record was skipped as malformed.
    #[arg(long)]
    strict: bool,
    /// Meter everything but do not write: print the totals it would add.
    #[arg(long)]
    dry_run: bool,
    /// Files ingested at once (each file's transactions stay in order).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    concurrency: u16,
    /// Output format: of the summary (table = text, or json), and of the
    /// --dry-run totals (table, json lines or csv).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Deprecated: the same as --format json.
    #[arg(long, hide = true, conflicts_with = "format")]
    json: bool,
}

impl ReplayArgs {
    /// The output format, with the deprecated --json folded in.
    fn output_format(&self) -> Format {
        if self.json {
            eprintln!("bedrock-meter: --json is deprecated: use --format json");
            Format::Json
        } else {
            self.format
        }
    }
}

/// Files a folder replay passed over, by reason.
type Skipped = std::collections::BTreeMap<&'static str, Vec<PathBuf>>;

/// Expands paths into an ordered list of inputs, and the files of folders
/// that were passed over, by reason.
fn collect_inputs(paths: &[PathBuf]) -> anyhow::Result<(Vec<PathBuf>, Skipped)> {
    let mut out = Vec::new();
    let mut skipped = Skipped::new();
    for p in paths {
        if p.as_os_str() == "-" {
            out.push(p.clone());
            continue;
        }
        let meta = std::fs::metadata(p).with_context(|| format!("cannot read {}", p.display()))?;
        if meta.is_dir() {
            let mut found = Vec::new();
            walk(p, &mut found, &mut skipped)
                .with_context(|| format!("cannot list {}", p.display()))?;
            found.sort();
            out.extend(found);
        } else {
            out.push(p.clone());
        }
    }
    Ok((out, skipped))
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>, skipped: &mut Skipped) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with('.') {
            skipped.entry("hidden").or_default().push(path);
            continue;
        }
        if path.is_dir() {
            walk(&path, out, skipped)?;
        } else {
            match skip_reason(name) {
                None => out.push(path),
                Some(reason) => skipped.entry(reason).or_default().push(path),
            }
        }
    }
    Ok(())
}

/// Why a file in a folder is not read (`None`: it is): replay reads data,
/// not docs, scripts or this repository's fixtures. Named files are always
/// read.
fn skip_reason(name: &str) -> Option<&'static str> {
    let data = [".json", ".jsonl", ".ndjson", ".gz", ".log", ".txt"];
    if !data.iter().any(|ext| name.ends_with(ext)) {
        Some("not a data file (folders are read for .json, .jsonl, .ndjson, .gz, .log, .txt)")
    } else if name.ends_with(".decoded.json") {
        Some("a readable twin of an event (*.decoded.json)")
    } else if name == "expected-totals.json" {
        Some("the sample events' expected totals (expected-totals.json)")
    } else if name == "kinesis-event.json" {
        // The kinesis-ingest function's input, not a delivery replay reads.
        Some("a Kinesis Lambda event (kinesis-event.json)")
    } else {
        None
    }
}

/// Says on stderr which files of the folders were passed over and why.
fn report_skipped(skipped: &Skipped) {
    for (reason, paths) in skipped {
        let shown: Vec<String> = paths
            .iter()
            .take(5)
            .map(|p| p.display().to_string())
            .collect();
        let more = match paths.len().saturating_sub(shown.len()) {
            0 => String::new(),
            n => format!(" and {n} more"),
        };
        eprintln!(
            "bedrock-meter: skipped {} file(s), {reason}: {}{more}; name a file to read it anyway",
            paths.len(),
            shown.join(", ")
        );
    }
}

fn read_input(path: &Path) -> anyhow::Result<Vec<u8>> {
    if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("cannot read stdin")?;
        return Ok(buf);
    }
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

struct Progress {
    started: Instant,
    last: Instant,
    files_done: usize,
    files_total: usize,
    report: IngestReport,
    failures: Vec<String>,
}

pub async fn run(config: &Config, args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let meter = Arc::new(config.meter()?);
    let format = args.output_format();
    let (inputs, skipped) = collect_inputs(&args.paths)?;
    report_skipped(&skipped);
    if inputs.is_empty() {
        anyhow::bail!("no input files found under {:?}", args.paths);
    }
    if args.dry_run {
        return dry_run(&meter, &inputs, &args, format);
    }
    if format == Format::Csv {
        anyhow::bail!(
            "--format csv is for the --dry-run totals; the replay summary is table (text) or json"
        );
    }
    let store = Arc::new(crate::store(config).await?);
    // PRICE_TABLE_PATH, else the newest stored table, else the built-in.
    let meter = Arc::new(crate::prices::meter(config, &store).await?);
    let settings = Arc::new(config.commit_settings());
    let progress = Arc::new(std::sync::Mutex::new(Progress {
        started: Instant::now(),
        last: Instant::now(),
        files_done: 0,
        files_total: inputs.len(),
        report: IngestReport::default(),
        failures: Vec::new(),
    }));
    let permits = Arc::new(Semaphore::new(usize::from(args.concurrency)));
    let mut tasks = tokio::task::JoinSet::new();
    for path in inputs {
        let permit = permits.clone().acquire_owned().await?;
        let (store, meter, settings, progress) = (
            store.clone(),
            meter.clone(),
            settings.clone(),
            progress.clone(),
        );
        tasks.spawn(async move {
            let outcome = replay_one(&*store, &meter, &settings, &path).await;
            drop(permit);
            let mut p = progress.lock().unwrap_or_else(|e| e.into_inner());
            p.files_done += 1;
            match outcome {
                Ok(report) => p.report.merge(&report),
                Err(e) => {
                    eprintln!("bedrock-meter: {}: {}", path.display(), crate::explain(&e));
                    p.failures.push(path.display().to_string());
                }
            }
            if p.last.elapsed() >= Duration::from_secs(2) && p.files_done < p.files_total {
                p.last = Instant::now();
                eprintln!(
                    "replay: {}/{} files, {} counted, {} duplicates, {} skipped, {:.0} records/s",
                    p.files_done,
                    p.files_total,
                    p.report.counted,
                    p.report.duplicates,
                    p.report.skipped,
                    p.report.records as f64 / p.started.elapsed().as_secs_f64()
                );
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.context("a replay task panicked")?;
    }
    let p = progress.lock().unwrap_or_else(|e| e.into_inner());
    let secs = p.started.elapsed().as_secs_f64();
    print_summary(
        &p.report,
        p.files_total,
        &p.failures,
        secs,
        format == Format::Json,
    );
    if !p.failures.is_empty() {
        eprintln!(
            "bedrock-meter: {} of {} files were not ingested (see above); fix and replay them: records already counted are skipped",
            p.failures.len(),
            p.files_total
        );
        return Ok(ExitCode::FAILURE);
    }
    if args.strict && p.report.skipped > 0 {
        eprintln!(
            "bedrock-meter: --strict: {} records were skipped as malformed",
            p.report.skipped
        );
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

async fn replay_one<S: UsageStore>(
    store: &S,
    meter: &Meter,
    settings: &CommitSettings,
    path: &Path,
) -> anyhow::Result<IngestReport> {
    let bytes = read_input(path)?;
    let done = ingest_payload(store, meter, settings, &bytes, OffsetDateTime::now_utc()).await?;
    for s in &done.skipped {
        eprintln!(
            "bedrock-meter: {}: skipped record at {}: {}",
            path.display(),
            s.location,
            s.error
        );
    }
    Ok(done.report)
}

fn print_summary(r: &IngestReport, files: usize, failures: &[String], secs: f64, json: bool) {
    if json {
        let v = serde_json::json!({
            "files": files,
            "failed_files": failures,
            "seconds": secs,
            "records_per_second": r.records as f64 / secs.max(1e-9),
            "write_units_per_record": r.write_units_per_record(),
            "report": r,
        });
        println!("{v}");
        return;
    }
    println!(
        "replayed {files} files in {secs:.2}s: {} records, {} counted, {} duplicates (already counted), {} skipped, {} unpriced",
        r.records, r.counted, r.duplicates, r.skipped, r.unpriced
    );
    println!(
        "{} transactions writing {} items, {:.1} write units ({:.2} per counted record), {} retries, {:.0} records/s",
        r.transactions,
        r.items_written,
        r.write_units,
        r.write_units_per_record(),
        r.retries,
        r.records as f64 / secs.max(1e-9)
    );
    for (reason, n) in &r.skipped_by_reason {
        println!("  skipped {reason}: {n}");
    }
    for (reason, n) in &r.unpriced_by_reason {
        println!("  unpriced {reason}: {n}");
    }
}

/// Meters every input without a store and prints the totals it would add.
fn dry_run(
    meter: &Meter,
    inputs: &[PathBuf],
    args: &ReplayArgs,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let mut records: Vec<MeteredRecord> = Vec::new();
    let mut report = IngestReport::default();
    let mut failures = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for path in inputs {
        let bytes = match read_input(path) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("bedrock-meter: {e:#}");
                failures.push(path.display().to_string());
                continue;
            }
        };
        match meter.meter_payload(&bytes) {
            Ok(batch) => {
                let mut r = meter_store::ingest::report_of_batch(&batch);
                for s in &batch.skipped {
                    eprintln!(
                        "bedrock-meter: {}: skipped record at {}: {}",
                        path.display(),
                        s.location,
                        s.error
                    );
                }
                for rec in batch.records {
                    if seen.insert(rec.record_id.clone()) {
                        r.counted += 1;
                        if let Some(reason) = &rec.unpriced {
                            r.unpriced += 1;
                            *r.unpriced_by_reason.entry(reason.label()).or_default() += 1;
                        }
                        records.push(rec);
                    } else {
                        r.duplicates += 1;
                    }
                }
                report.merge(&r);
            }
            Err(e) => {
                eprintln!("bedrock-meter: {}: {e}", path.display());
                failures.push(path.display().to_string());
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let rows: Vec<(AggregateKey<'_>, Counters)> = aggregate(&records)
        .into_iter()
        .filter(|(k, _)| matches!(k, AggregateKey::UserModelDay { .. }))
        .map(|(k, d)| (k, d.counters))
        .collect();
    crate::report::print_aggregates(&rows, format);
    eprintln!(
        "dry run: {} files in {secs:.3}s, {} records, {} would be counted, {} duplicates within the input, {} skipped, {} unpriced; nothing written",
        inputs.len(),
        report.records,
        report.counted,
        report.duplicates,
        report.skipped,
        report.unpriced
    );
    if !failures.is_empty() {
        return Ok(ExitCode::FAILURE);
    }
    if args.strict && report.skipped > 0 {
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}
