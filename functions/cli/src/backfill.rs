//! `bedrock-meter backfill s3://BUCKET/PREFIX --from DATE --to DATE`: ingest
//! Bedrock's own S3 delivery of invocation logs (the history from before
//! bedrock-meter was installed) through the same exactly-once path as the
//! Lambda.
//!
//! Bedrock writes gzipped newline-delimited records under
//! `PREFIX/AWSLogs/ACCOUNT/BedrockModelInvocationLogs/REGION/YYYY/MM/DD/HH/`.
//! Backfill discovers the accounts and Regions under the prefix (listing with
//! the delimiter `/`), lists each selected day's folder, and ingests every
//! object with [`meter_store::ingest_payload`], `--concurrency` at a time.
//!
//! - **Exactly once, also against the live path.** A record's idempotency
//!   marker is `r:<requestId>` whichever way it arrives, so an invocation the
//!   Lambda already counted is found already counted and skipped (reported as
//!   a duplicate). Records without a `requestId` fall back to a hash of the
//!   line here but to the log event id on the live path: those few could be
//!   counted twice where the two overlap. Markers expire after
//!   `MARKER_TTL_DAYS`: the overlap guarantee holds within that window.
//! - **Resumable.** With `--state FILE`, the key of every object fully
//!   ingested is recorded; a rerun skips them. The file is rewritten
//!   atomically (temporary file, fsync, rename) as objects complete. An object
//!   ingested but not yet recorded when the process dies is ingested again on
//!   the rerun and found already counted: the state only saves work, the
//!   markers keep the totals exact.
//! - **Days are folders.** `--from`/`--to` select the UTC delivery folders
//!   `YYYY/MM/DD`. Records are dated by their own `timestamp`, so a record
//!   from 23:59 may sit in the next day's folder: include a day more to catch
//!   it (overlap is harmless).

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use aws_sdk_s3::error::DisplayErrorContext;
use clap::Args;
use meter_core::Meter;
use meter_store::{ingest_payload, CommitSettings, Config, IngestReport, UsageStore};
use time::{Date, OffsetDateTime};
use tokio::sync::Semaphore;

#[derive(Args)]
pub struct BackfillArgs {
    /// s3://BUCKET/PREFIX of Bedrock's own S3 delivery (the prefix configured
    /// in the invocation logging settings; `s3://BUCKET` when none).
    #[arg(value_name = "S3_URL")]
    source: String,
    /// First delivery day to read, YYYY-MM-DD (UTC).
    #[arg(long, value_parser = parse_date)]
    from: Date,
    /// Last delivery day to read, YYYY-MM-DD (UTC), inclusive.
    #[arg(long, value_parser = parse_date)]
    to: Date,
    /// Only these accounts (repeatable); default: every account found.
    #[arg(long = "account", value_name = "ACCOUNT_ID")]
    accounts: Vec<String>,
    /// Only these Regions (repeatable); default: every Region found.
    #[arg(long = "region", value_name = "REGION")]
    regions: Vec<String>,
    /// Objects ingested at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    concurrency: u16,
    /// Checkpoint file of completed object keys: created if missing, read
    /// and extended on a rerun (completed objects are skipped).
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// The bucket's Region when it differs from AWS_REGION.
    #[arg(long, value_name = "REGION")]
    bucket_region: Option<String>,
    /// Exit 2 when any record was skipped as malformed.
    #[arg(long)]
    strict: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

fn parse_date(s: &str) -> Result<Date, String> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(s, format).map_err(|e| format!("`{s}` is not a date YYYY-MM-DD: {e}"))
}

/// `s3://bucket/prefix` split into the bucket and a prefix that is empty or
/// ends with `/`.
fn parse_s3_url(url: &str) -> anyhow::Result<(String, String)> {
    let rest = url
        .strip_prefix("s3://")
        .with_context(|| format!("`{url}` is not an s3://BUCKET/PREFIX URL"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    anyhow::ensure!(!bucket.is_empty(), "`{url}` names no bucket");
    let prefix = prefix.trim_matches('/');
    let prefix = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    Ok((bucket.to_string(), prefix))
}

/// The day folder of one account and Region.
fn day_prefix(prefix: &str, account: &str, region: &str, day: Date) -> String {
    format!(
        "{prefix}AWSLogs/{account}/BedrockModelInvocationLogs/{region}/{:04}/{:02}/{:02}/",
        day.year(),
        u8::from(day.month()),
        day.day()
    )
}

/// The completed-objects checkpoint.
struct StateFile {
    path: PathBuf,
    source: String,
    done: HashSet<String>,
    last_write: Instant,
    last_write_took: Duration,
}

impl StateFile {
    fn header(source: &str) -> String {
        format!("# bedrock-meter backfill state: completed object keys of {source}")
    }

    /// Loads the state of `source`, or starts an empty one. Refuses a file
    /// written for another source.
    fn load(path: &Path, source: &str) -> anyhow::Result<StateFile> {
        let mut done = HashSet::new();
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let mut lines = text.lines();
                let first = lines.next().unwrap_or_default();
                anyhow::ensure!(
                    first == Self::header(source),
                    "{} is not a backfill state of {source} (its first line is `{first}`): \
                     use another --state file per source",
                    path.display()
                );
                done.extend(lines.filter(|l| !l.is_empty()).map(str::to_string));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
        Ok(StateFile {
            path: path.to_path_buf(),
            source: source.to_string(),
            done,
            last_write: Instant::now(),
            last_write_took: Duration::ZERO,
        })
    }

    /// Records a completed key and writes the file unless the last write was
    /// recent relative to its cost (writing stays under ~10% of the time).
    fn complete(&mut self, key: String) -> anyhow::Result<()> {
        self.done.insert(key);
        if self.last_write.elapsed() >= self.last_write_took * 10 {
            self.write()?;
        }
        Ok(())
    }

    /// Writes the whole state atomically: a temporary file beside it,
    /// fsync, rename over the old one.
    fn write(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        let tmp = self
            .path
            .with_extension(format!("tmp-{}", std::process::id()));
        let mut text = Self::header(&self.source);
        text.push('\n');
        let mut keys: Vec<&String> = self.done.iter().collect();
        keys.sort();
        for k in keys {
            text.push_str(k);
            text.push('\n');
        }
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        };
        write().with_context(|| format!("cannot write the state file {}", self.path.display()))?;
        self.last_write = Instant::now();
        self.last_write_took = started.elapsed();
        Ok(())
    }
}

struct Progress {
    started: Instant,
    last: Instant,
    listed: usize,
    from_state: usize,
    done: usize,
    failures: Vec<String>,
    report: IngestReport,
}

impl Progress {
    fn line(&self) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        format!(
            "backfill: {} objects listed, {} already done (state), {} ingested, {} failed; {} records, {} counted, {} duplicates, {} skipped; {:.0} records/s",
            self.listed,
            self.from_state,
            self.done,
            self.failures.len(),
            self.report.records,
            self.report.counted,
            self.report.duplicates,
            self.report.skipped,
            self.report.records as f64 / secs
        )
    }
}

pub async fn run(config: &Config, args: BackfillArgs) -> anyhow::Result<ExitCode> {
    let (bucket, prefix) = parse_s3_url(&args.source)?;
    anyhow::ensure!(
        args.from <= args.to,
        "--from {} is after --to {}",
        args.from,
        args.to
    );
    let source = format!("s3://{bucket}/{prefix}");
    let mut state = match &args.state {
        Some(path) => Some(StateFile::load(path, &source)?),
        None => None,
    };
    let already = state.as_ref().map_or(0, |s| s.done.len());
    if already > 0 {
        eprintln!("backfill: {already} objects already completed according to the state file");
    }
    if let Some(s) = state.as_mut() {
        s.write()?; // fail now, not after an hour, if the file cannot be written
    }
    let state = state.map(|s| Arc::new(Mutex::new(s)));

    let store = Arc::new(crate::store(config).await?);
    // PRICE_TABLE_PATH, else the newest stored table, else the built-in.
    let meter = Arc::new(crate::prices::meter(config, &store).await?);
    let settings = Arc::new(config.commit_settings());
    let s3 = s3_client(args.bucket_region.as_deref()).await;

    let accounts = list_children(&s3, &bucket, &format!("{prefix}AWSLogs/")).await?;
    let accounts = select(accounts, &args.accounts, "account", &source)?;
    let mut sources = Vec::new();
    for account in &accounts {
        let base = format!("{prefix}AWSLogs/{account}/BedrockModelInvocationLogs/");
        let regions = list_children(&s3, &bucket, &base).await?;
        for region in select(regions, &args.regions, "Region", &source).unwrap_or_default() {
            sources.push((account.clone(), region));
        }
    }
    anyhow::ensure!(
        !sources.is_empty(),
        "no BedrockModelInvocationLogs folder under {source}AWSLogs/ (check the bucket, the prefix and --account/--region)"
    );
    eprintln!(
        "backfill: {} account/Region folders under {source}: {}",
        sources.len(),
        sources
            .iter()
            .map(|(a, r)| format!("{a}/{r}"))
            .collect::<Vec<_>>()
            .join(", ")
    );

    let progress = Arc::new(Mutex::new(Progress {
        started: Instant::now(),
        last: Instant::now(),
        listed: 0,
        from_state: 0,
        done: 0,
        failures: Vec::new(),
        report: IngestReport::default(),
    }));
    let permits = Arc::new(Semaphore::new(usize::from(args.concurrency)));
    let mut tasks = tokio::task::JoinSet::new();
    for (account, region) in &sources {
        let mut day = args.from;
        loop {
            let folder = day_prefix(&prefix, account, region, day);
            let keys = list_keys(&s3, &bucket, &folder).await?;
            for key in keys {
                {
                    let mut p = lock(&progress);
                    p.listed += 1;
                    if let Some(s) = &state {
                        if lock(s).done.contains(&key) {
                            p.from_state += 1;
                            continue;
                        }
                    }
                }
                let permit = permits.clone().acquire_owned().await?;
                let (s3, bucket, store, meter, settings, progress, state) = (
                    s3.clone(),
                    bucket.clone(),
                    store.clone(),
                    meter.clone(),
                    settings.clone(),
                    progress.clone(),
                    state.clone(),
                );
                tasks.spawn(async move {
                    let outcome =
                        ingest_object(&s3, &bucket, &key, &*store, &meter, &settings).await;
                    drop(permit);
                    let outcome = match (outcome, &state) {
                        (Ok(report), Some(s)) => lock(s).complete(key.clone()).map(|()| report),
                        (outcome, _) => outcome,
                    };
                    let mut p = lock(&progress);
                    match outcome {
                        Ok(report) => {
                            p.done += 1;
                            p.report.merge(&report);
                        }
                        Err(e) => {
                            eprintln!("bedrock-meter: s3://{bucket}/{key}: {e:#}");
                            p.failures.push(key);
                        }
                    }
                    if p.last.elapsed() >= Duration::from_secs(2) {
                        p.last = Instant::now();
                        eprintln!("{}", p.line());
                    }
                });
            }
            // Reap finished tasks as we go so the set stays small.
            while let Some(joined) = tasks.try_join_next() {
                joined.context("a backfill task panicked")?;
            }
            match day.next_day() {
                Some(next) if next <= args.to => day = next,
                _ => break,
            }
        }
    }
    while let Some(joined) = tasks.join_next().await {
        joined.context("a backfill task panicked")?;
    }
    if let Some(s) = &state {
        lock(s).write()?;
    }
    let p = lock(&progress);
    eprintln!("{}", p.line());
    print_summary(&p, &source, args.json);
    if !p.failures.is_empty() {
        eprintln!(
            "bedrock-meter: {} objects were not ingested (see above); run the same command again{}: records already counted are skipped",
            p.failures.len(),
            if args.state.is_some() { " with the same --state" } else { "" }
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Keeps the discovered names that `only` allows (all when `only` is empty).
fn select(
    found: Vec<String>,
    only: &[String],
    what: &str,
    source: &str,
) -> anyhow::Result<Vec<String>> {
    if only.is_empty() {
        return Ok(found);
    }
    let kept: Vec<String> = found.into_iter().filter(|f| only.contains(f)).collect();
    anyhow::ensure!(
        !kept.is_empty(),
        "none of the {what}s {only:?} has logs under {source}"
    );
    Ok(kept)
}

/// The S3 client from the standard AWS configuration. Path-style addressing
/// when an endpoint is overridden (S3-compatible servers such as moto).
async fn s3_client(bucket_region: Option<&str>) -> aws_sdk_s3::Client {
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let overridden = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|v| !v.is_empty()));
    let mut builder = aws_sdk_s3::config::Builder::from(&sdk).force_path_style(overridden);
    if let Some(region) = bucket_region {
        builder = builder.region(aws_sdk_s3::config::Region::new(region.to_string()));
    }
    aws_sdk_s3::Client::from_conf(aws_call_log::install(builder, crate::component()).build())
}

/// The names of the "folders" directly under `prefix`.
async fn list_children(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .delimiter("/")
            .set_continuation_token(token.take())
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{}", DisplayErrorContext(e)))
            .with_context(|| format!("cannot list s3://{bucket}/{prefix}"))?;
        for p in page.common_prefixes() {
            if let Some(name) = p
                .prefix()
                .and_then(|p| p.strip_prefix(prefix))
                .map(|p| p.trim_end_matches('/'))
                .filter(|p| !p.is_empty())
            {
                out.push(name.to_string());
            }
        }
        match page.next_continuation_token() {
            Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
            _ => break,
        }
    }
    out.sort();
    Ok(out)
}

/// Every object key under `prefix` (all hours of a day), in key order.
async fn list_keys(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token.take())
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{}", DisplayErrorContext(e)))
            .with_context(|| format!("cannot list s3://{bucket}/{prefix}"))?;
        out.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key())
                .filter(|k| !k.ends_with('/'))
                .map(str::to_string),
        );
        match page.next_continuation_token() {
            Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
            _ => break,
        }
    }
    out.sort();
    Ok(out)
}

/// Reads one object and ingests it exactly once.
async fn ingest_object<S: UsageStore>(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    store: &S,
    meter: &Meter,
    settings: &CommitSettings,
) -> anyhow::Result<IngestReport> {
    let object = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{}", DisplayErrorContext(e)))
        .context("cannot read the object")?;
    let bytes = object
        .body
        .collect()
        .await
        .context("reading the object's body")?
        .into_bytes();
    let done = ingest_payload(store, meter, settings, &bytes, OffsetDateTime::now_utc()).await?;
    for s in &done.skipped {
        eprintln!(
            "bedrock-meter: s3://{bucket}/{key}: skipped record at {}: {}",
            s.location, s.error
        );
    }
    Ok(done.report)
}

fn print_summary(p: &Progress, source: &str, json: bool) {
    let r = &p.report;
    let secs = p.started.elapsed().as_secs_f64();
    if json {
        let v = serde_json::json!({
            "source": source,
            "objects_listed": p.listed,
            "objects_already_done": p.from_state,
            "objects_ingested": p.done,
            "failed_objects": p.failures,
            "seconds": secs,
            "records_per_second": r.records as f64 / secs.max(1e-9),
            "write_units_per_record": r.write_units_per_record(),
            "report": r,
        });
        println!("{v}");
        return;
    }
    println!(
        "backfilled {} objects of {} listed ({} already done) in {secs:.2}s: {} records, {} counted, {} duplicates (already counted), {} skipped, {} unpriced",
        p.done, p.listed, p.from_state, r.records, r.counted, r.duplicates, r.skipped, r.unpriced
    );
    println!(
        "{} transactions writing {} items, {:.1} write units ({:.2} per counted record), {} retries",
        r.transactions,
        r.items_written,
        r.write_units,
        r.write_units_per_record(),
        r.retries
    );
    for (reason, n) in &r.skipped_by_reason {
        println!("  skipped {reason}: {n}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls_split_into_bucket_and_a_slash_terminated_prefix() {
        let cases = [
            ("s3://logs", ("logs", "")),
            ("s3://logs/", ("logs", "")),
            ("s3://logs/bedrock", ("logs", "bedrock/")),
            ("s3://logs/a/b/", ("logs", "a/b/")),
        ];
        for (url, (bucket, prefix)) in cases {
            let (b, p) = parse_s3_url(url).unwrap();
            assert_eq!((b.as_str(), p.as_str()), (bucket, prefix), "{url}");
        }
        assert!(parse_s3_url("https://logs/x").is_err());
        assert!(parse_s3_url("s3:///x").is_err());
    }

    #[test]
    fn a_day_folder_follows_bedrocks_layout() {
        let day = parse_date("2026-03-05").unwrap();
        assert_eq!(
            day_prefix("p/", "111111111111", "us-east-1", day),
            "p/AWSLogs/111111111111/BedrockModelInvocationLogs/us-east-1/2026/03/05/"
        );
    }

    #[test]
    fn the_state_file_round_trips_and_refuses_another_source() {
        let path = std::env::temp_dir().join(format!("bm-state-{}", fastrand::u64(..)));
        let mut s = StateFile::load(&path, "s3://a/").unwrap();
        s.complete("k1".into()).unwrap();
        s.complete("k2".into()).unwrap();
        s.write().unwrap();
        let again = StateFile::load(&path, "s3://a/").unwrap();
        assert_eq!(again.done.len(), 2);
        assert!(StateFile::load(&path, "s3://b/").is_err());
        std::fs::remove_file(&path).unwrap();
    }
}
