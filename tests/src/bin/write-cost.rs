//! Measurement tool: DynamoDB write units per record of the ingest path, on
//! DynamoDB Local (whose `ConsumedCapacity` for a transaction is one flat
//! figure, useless here), computed from the items each committed transaction
//! writes with the documented rule: a transactional write costs 2 units per
//! started KB of the item, and for an update the size is the larger of the
//! item before and after.
//!
//! ```text
//! scripts/with-dynamodb-local.sh target/debug/write-cost \
//!     [--scheme bucket|record] [--kinesis-window N] [--request-costs] [--json] DIR...
//! ```
//!
//! Each DIR holds CloudWatch Logs Lambda events (files as written by
//! `scripts/gen-corpus.py`, one file = one delivery), ingested in file-name
//! order, one at a time, into a fresh table (without a stream):
//!
//! - direct (default): each file through `meter_store::ingest_payload`;
//! - `--kinesis-window N`: N consecutive files as one Kinesis Lambda batch
//!   (each file's gzip payload one Kinesis record's data) through the
//!   Kinesis function's `process_batch` (one commit per batch).
//!
//! `--scheme record` makes the store report every record as older than the
//! marker switch-over, so that each gets a per-record marker item (the
//! scheme before marker buckets); `bucket` (default) is the table's own.
//! `--request-costs` turns on the per-request cost items (`REQUEST_COSTS`),
//! plain writes counted in columns of their own (JSON).
//!
//! Item sizes follow DynamoDB's rule (attribute name lengths plus value
//! sizes: strings in UTF-8 bytes, numbers about one byte per two significant
//! digits plus one, binary its bytes, a binary set the sum of its elements),
//! applied to the attributes the adapter writes (`dynamo.rs`: `to_sdk`,
//! `aggregate_update`, `bucket_add`), with each aggregate's and bucket's
//! contents tracked across the run. Cancelled transactions write nothing;
//! they are reported apart and added to the total at 2 units per item, an
//! upper bound. Index writes (`gsi1`: 1 unit per started KB of the
//! aggregate, not transactional) are a column of their own.
//!
//! Exits non-zero unless every distinct record of the input (by request id,
//! else log event id, read from the files independently of the meter) was
//! counted exactly once: by the ingest reports, by the markers the
//! transactions wrote, and by the `user_day` totals and markers read back
//! from the table.

#[path = "../../../functions/kinesis-ingest/src/batch.rs"]
#[allow(dead_code)]
mod batch;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use aws_lambda_events::event::kinesis::KinesisEvent;
use base64::Engine as _;
use integration_tests::{fresh_store, local_client, marker_count, read_aggregates, AggKey, Totals};
use meter_core::Counters;
use meter_store::keys::ItemKeys;
use meter_store::markers::FullBuckets;
use meter_store::plan::{MarkerUsage, PlannedTx, RequestCost, TxItem};
use meter_store::{
    ingest_payload, CommitSettings, DynamoDbUsageStore, IngestReport, StoreError, TxCommitted,
    UsageStore,
};
use time::OffsetDateTime;

const USAGE: &str = "usage: scripts/with-dynamodb-local.sh target/debug/write-cost \
                     [--scheme bucket|record] [--kinesis-window N] [--request-costs] [--json] DIR...";

/// The `kind` and TTL attribute values the adapter writes.
const MARKER_KIND: &str = "marker";
const BUCKET_KIND: &str = meter_store::dynamo::BUCKET_KIND;
const TTL: &str = meter_store::dynamo::TTL_ATTRIBUTE;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    /// The table's own switch-over (a fresh table: buckets for every record).
    Bucket,
    /// Every record before the switch-over: a marker item each.
    Record,
}

impl Scheme {
    fn name(self) -> &'static str {
        match self {
            Scheme::Bucket => "bucket",
            Scheme::Record => "record",
        }
    }
}

struct Args {
    scheme: Scheme,
    kinesis_window: Option<usize>,
    json: bool,
    request_costs: bool,
    dirs: Vec<PathBuf>,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        scheme: Scheme::Bucket,
        kinesis_window: None,
        json: false,
        request_costs: false,
        dirs: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--scheme" => {
                args.scheme = match it.next().as_deref() {
                    Some("bucket") => Scheme::Bucket,
                    Some("record") => Scheme::Record,
                    other => bail!("--scheme takes `bucket` or `record`, not {other:?}\n{USAGE}"),
                }
            }
            "--kinesis-window" => {
                let n = it.next().unwrap_or_default();
                let n: usize = n.parse().ok().filter(|n| *n > 0).with_context(|| {
                    format!("--kinesis-window takes a number of files (1 or more), not `{n}`")
                })?;
                args.kinesis_window = Some(n);
            }
            "--json" => args.json = true,
            "--request-costs" => args.request_costs = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            s if s.starts_with('-') => bail!("unknown option `{s}`\n{USAGE}"),
            s => args.dirs.push(PathBuf::from(s)),
        }
    }
    if args.dirs.is_empty() {
        bail!("no input directory given\n{USAGE}");
    }
    Ok(args)
}

// ---- item sizes (DynamoDB's rule) ----

/// Size of a number: one byte per two significant digits, plus one.
fn number_size(v: &str) -> usize {
    let digits: String = v.chars().filter(char::is_ascii_digit).collect();
    let significant = digits.trim_start_matches('0').trim_end_matches('0').len();
    significant.max(1).div_ceil(2) + 1
}

fn s_attr(name: &str, value: &str) -> usize {
    name.len() + value.len()
}

fn n_attr(name: &str, value: &str) -> usize {
    name.len() + number_size(value)
}

/// The counters as the adapter writes them (`skip` left out).
fn counters_size(c: &Counters, skip: Option<&str>) -> usize {
    c.named_values()
        .iter()
        .filter(|(name, _)| Some(*name) != skip)
        .map(|(name, value)| n_attr(name, value))
        .sum()
}

fn keys_size(keys: &ItemKeys) -> usize {
    s_attr("pk", &keys.pk) + s_attr("sk", &keys.sk)
}

/// A per-record marker (`kind` marker, `committed_at`) or a request-cost
/// item (`kind` request_cost, `written_at`): `usage_item` in `dynamo.rs`.
fn usage_item_size(
    keys: &ItemKeys,
    kind: &str,
    record_id: &str,
    written: (&str, &str),
    expires_at: i64,
    usage: &MarkerUsage,
) -> usize {
    keys_size(keys)
        + s_attr("kind", kind)
        + s_attr("record_id", record_id)
        + s_attr(written.0, written.1)
        + n_attr(TTL, &expires_at.to_string())
        + s_attr("user", &usage.user)
        + s_attr("model", &usage.model)
        + s_attr("day", &usage.day)
        + counters_size(&usage.counters, Some("invocations"))
}

/// An aggregate holding `totals` (`aggregate_update`).
fn aggregate_size(
    keys: &ItemKeys,
    kind: &str,
    dims: &[(&'static str, String)],
    totals: &Counters,
    updated_at: &str,
) -> usize {
    keys_size(keys)
        + s_attr("kind", kind)
        + dims.iter().map(|(n, v)| s_attr(n, v)).sum::<usize>()
        + keys
            .gsi1
            .as_ref()
            .map_or(0, |(p, s)| s_attr("gsi1pk", p) + s_attr("gsi1sk", s))
        + s_attr("updated_at", updated_at)
        + counters_size(totals, None)
}

/// A marker bucket holding `ids` ids (`bucket_add`); 0 when it holds none
/// (no item).
fn bucket_size(keys: &ItemKeys, ids: u64, expires_at: i64) -> usize {
    if ids == 0 {
        return 0;
    }
    keys_size(keys)
        + s_attr("kind", BUCKET_KIND)
        + n_attr("n", &ids.to_string())
        + n_attr(TTL, &expires_at.to_string())
        + "ids".len()
        + 8 * ids as usize
}

/// Transactional write units of an item of `bytes`.
fn tx_units(bytes: usize) -> u64 {
    2 * bytes.div_ceil(1024).max(1) as u64
}

// ---- the measuring store ----

#[derive(Debug, Default, Clone)]
struct Tally {
    transactions: u64,
    marker_puts: u64,
    bucket_adds: u64,
    bucket_touches: u64,
    aggregates: u64,
    /// Records marked by committed transactions (marker puts plus ids added).
    marked: u64,
    /// Transactional write units of the committed transactions.
    units: u64,
    /// Index writes of the committed transactions (units).
    gsi1_units: u64,
    cancelled_tx: u64,
    cancelled_items: u64,
    /// Of the cancelled ones: errors other than a cancellation (throttling,
    /// timeouts), which DynamoDB does not bill; counted the same way.
    failed_not_cancelled: u64,
    largest_item: usize,
    /// Request-cost items (`--request-costs`) and their plain write units,
    /// not included in `units`.
    request_costs: u64,
    request_cost_units: u64,
    /// Strongly consistent reads of marker buckets (one read unit each:
    /// buckets are under 4 KB), not included in `units`.
    bucket_reads: u64,
}

#[derive(Default)]
struct State {
    tally: Tally,
    /// Ids per marker bucket (by `pk`).
    bucket_ids: HashMap<String, u64>,
    /// Totals per aggregate (by `pk`, `sk`).
    totals: HashMap<(String, String), Counters>,
}

/// Delegates to DynamoDB Local and counts what each committed transaction
/// writes.
struct Measured {
    inner: DynamoDbUsageStore,
    scheme: Scheme,
    state: Mutex<State>,
}

impl Measured {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn count_committed(&self, tx: &PlannedTx, updated_at: &str) {
        let mut guard = self.lock();
        let st = &mut *guard;
        st.tally.transactions += 1;
        for item in &tx.items {
            let size = match item {
                TxItem::PutMarker {
                    keys,
                    record_id,
                    expires_at,
                    usage,
                } => {
                    st.tally.marker_puts += 1;
                    st.tally.marked += 1;
                    usage_item_size(
                        keys,
                        MARKER_KIND,
                        record_id,
                        ("committed_at", updated_at),
                        *expires_at,
                        usage,
                    )
                }
                TxItem::AddToBucket {
                    keys,
                    ids,
                    expires_at,
                    ..
                } => {
                    st.tally.bucket_adds += 1;
                    st.tally.marked += ids.len() as u64;
                    let n = st.bucket_ids.entry(keys.pk.clone()).or_default();
                    let before = bucket_size(keys, *n, *expires_at);
                    *n += ids.len() as u64;
                    before.max(bucket_size(keys, *n, *expires_at))
                }
                TxItem::TouchBucket {
                    keys, expires_at, ..
                } => {
                    st.tally.bucket_touches += 1;
                    let n = st.bucket_ids.get(&keys.pk).copied().unwrap_or(0);
                    bucket_size(keys, n.max(1), *expires_at)
                }
                TxItem::AddAggregate {
                    keys,
                    kind,
                    dims,
                    counters,
                } => {
                    st.tally.aggregates += 1;
                    let totals = st
                        .totals
                        .entry((keys.pk.clone(), keys.sk.clone()))
                        .or_default();
                    let before = if *totals == Counters::default() {
                        0
                    } else {
                        aggregate_size(keys, kind, dims, totals, updated_at)
                    };
                    totals.add(counters);
                    let after = aggregate_size(keys, kind, dims, totals, updated_at);
                    if keys.gsi1.is_some() {
                        st.tally.gsi1_units += after.div_ceil(1024).max(1) as u64;
                    }
                    before.max(after)
                }
            };
            st.tally.largest_item = st.tally.largest_item.max(size);
            st.tally.units += tx_units(size);
        }
    }
}

impl UsageStore for Measured {
    async fn transact(&self, tx: &PlannedTx) -> Result<TxCommitted, StoreError> {
        // What the adapter stamps as `updated_at` / `committed_at`.
        let updated_at = rfc3339_seconds(OffsetDateTime::now_utc());
        match self.inner.transact(tx).await {
            Ok(done) => {
                self.count_committed(tx, &updated_at);
                Ok(done)
            }
            Err(e) => {
                let mut st = self.lock();
                st.tally.cancelled_tx += 1;
                st.tally.cancelled_items += tx.items.len() as u64;
                if !matches!(e, StoreError::Cancelled(_)) {
                    st.tally.failed_not_cancelled += 1;
                }
                Err(e)
            }
        }
    }

    fn full_buckets(&self) -> Option<&Mutex<FullBuckets>> {
        self.inner.full_buckets()
    }

    async fn read_bucket(
        &self,
        keys: &meter_store::keys::ItemKeys,
    ) -> Result<Option<meter_store::markers::BucketState>, StoreError> {
        self.lock().tally.bucket_reads += 1;
        self.inner.read_bucket(keys).await
    }

    async fn put_request_costs(&self, items: &[RequestCost]) -> Result<f64, StoreError> {
        let written_at = rfc3339_seconds(OffsetDateTime::now_utc());
        let units = self.inner.put_request_costs(items).await?;
        let mut st = self.lock();
        for c in items {
            let size = usage_item_size(
                &c.keys,
                meter_store::dynamo::REQUEST_COST_KIND,
                &c.record_id,
                ("written_at", &written_at),
                c.expires_at,
                &c.usage,
            );
            st.tally.request_costs += 1;
            // A plain (not transactional) write: 1 unit per started KB.
            st.tally.request_cost_units += size.div_ceil(1024).max(1) as u64;
        }
        Ok(units)
    }

    async fn buckets_since(&self, now_epoch: i64) -> Result<i64, StoreError> {
        match self.scheme {
            Scheme::Record => Ok(i64::MAX),
            Scheme::Bucket => self.inner.buckets_since(now_epoch).await,
        }
    }
}

fn rfc3339_seconds(t: OffsetDateTime) -> String {
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

// ---- inputs ----

/// One delivery: its file, the file's bytes (the Lambda event) and its gzip
/// CloudWatch Logs payload.
struct Delivery {
    path: PathBuf,
    event: Vec<u8>,
    gzip: Vec<u8>,
}

fn read_input(dir: &Path) -> Result<Vec<Delivery>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read input directory {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    paths.retain(|p| p.is_file());
    paths.sort();
    if paths.is_empty() {
        bail!(
            "{} holds no files: write a corpus with scripts/gen-corpus.py first",
            dir.display()
        );
    }
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read(&path)?;
            let event: serde_json::Value = serde_json::from_slice(&text)
                .with_context(|| format!("{} is not JSON", path.display()))?;
            let data = event["awslogs"]["data"].as_str().with_context(|| {
                format!(
                    "{} is not a CloudWatch Logs Lambda event ({{\"awslogs\":{{\"data\":...}}}})",
                    path.display()
                )
            })?;
            let gzip = base64::engine::general_purpose::STANDARD
                .decode(data)
                .with_context(|| format!("{}: awslogs.data is not base64", path.display()))?;
            Ok(Delivery {
                path,
                event: text,
                gzip,
            })
        })
        .collect()
}

/// Distinct records of the input and its log events, read without the meter:
/// a record is its `requestId`, else its log event id.
fn distinct_records(deliveries: &[Delivery]) -> Result<(usize, usize)> {
    let mut ids = HashSet::new();
    let mut events = 0;
    for d in deliveries {
        let mut json = Vec::new();
        flate2::read::MultiGzDecoder::new(&d.gzip[..])
            .read_to_end(&mut json)
            .with_context(|| format!("{}: awslogs.data is not gzip", d.path.display()))?;
        let payload: serde_json::Value = serde_json::from_slice(&json)
            .with_context(|| format!("{}: payload is not JSON", d.path.display()))?;
        for e in payload["logEvents"].as_array().into_iter().flatten() {
            events += 1;
            let message: serde_json::Value =
                serde_json::from_str(e["message"].as_str().unwrap_or_default()).unwrap_or_default();
            let id = match message["requestId"].as_str() {
                Some(r) if !r.is_empty() => format!("r:{r}"),
                _ => format!("e:{}", e["id"].as_str().unwrap_or_default()),
            };
            ids.insert(id);
        }
    }
    Ok((ids.len(), events))
}

/// A Kinesis Lambda event with one record per delivery (one shard).
fn kinesis_event(deliveries: &[Delivery], first: usize) -> Result<KinesisEvent> {
    let records: Vec<serde_json::Value> = deliveries
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let seq = format!("4963{:052}", first + i);
            serde_json::json!({
                "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": format!("pk-{}", first + i),
                    "sequenceNumber": seq,
                    "data": base64::engine::general_purpose::STANDARD.encode(&d.gzip),
                    "approximateArrivalTimestamp": 1_793_534_400.5 + (first + i) as f64},
                "eventSource": "aws:kinesis", "eventVersion": "1.0",
                "eventID": format!("shardId-000000000000:{seq}"),
                "eventName": "aws:kinesis:record", "awsRegion": "us-east-1",
                "eventSourceARN": "arn:aws:kinesis:us-east-1:111111111111:stream/bedrock-meter",
            })
        })
        .collect();
    Ok(serde_json::from_value(
        serde_json::json!({ "Records": records }),
    )?)
}

// ---- one run ----

#[derive(Debug)]
struct Row {
    input: String,
    path: String,
    scheme: &'static str,
    deliveries: usize,
    log_events: usize,
    distinct_records: usize,
    /// Records counted by the ingest reports.
    records_counted: usize,
    duplicates: usize,
    tally: Tally,
    replans: usize,
    retries: usize,
    items: u64,
    /// `units` plus the cancelled items at 2 units each (upper bound).
    total_units: u64,
    units_per_record: f64,
    committed_units_per_record: f64,
    gsi1_writes_per_record: f64,
    seconds: f64,
    /// Sanity checks; the tool exits non-zero when one fails.
    problems: Vec<String>,
}

async fn run(
    client: &aws_sdk_dynamodb::Client,
    dir: &Path,
    scheme: Scheme,
    window: Option<usize>,
    request_costs: bool,
) -> Result<Row> {
    let deliveries = read_input(dir)?;
    let (distinct, log_events) = distinct_records(&deliveries)?;
    let table_hint = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let inner = fresh_store(client, &format!("write-cost-{table_hint}")).await;
    let store = Measured {
        inner: inner.clone(),
        scheme,
        state: Mutex::default(),
    };
    // ATTRIBUTION_TAGS from the environment, as the functions read it.
    let meter = meter_store::Config::from_env_using(&["ATTRIBUTION_TAGS"])
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .meter()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let settings = CommitSettings {
        request_costs,
        ..CommitSettings::default()
    };
    let mut report = IngestReport::default();
    let started = Instant::now();
    match window {
        None => {
            for d in &deliveries {
                let done = ingest_payload(
                    &store,
                    &meter,
                    &settings,
                    &d.event,
                    OffsetDateTime::now_utc(),
                )
                .await
                .with_context(|| format!("ingesting {}", d.path.display()))?;
                report.merge(&done.report);
            }
        }
        Some(n) => {
            for (w, chunk) in deliveries.chunks(n).enumerate() {
                let event = kinesis_event(chunk, w * n)?;
                let out = batch::process_batch(
                    &store,
                    &meter,
                    &settings,
                    &event,
                    OffsetDateTime::now_utc(),
                )
                .await;
                if out.reported > 0 {
                    let why: Vec<String> = out
                        .records
                        .iter()
                        .filter_map(|r| match &r.outcome {
                            batch::RecordOutcome::Failed { error, .. }
                            | batch::RecordOutcome::Undecodable { error } => Some(error.clone()),
                            _ => None,
                        })
                        .collect();
                    bail!(
                        "Kinesis batch of {} (files {}..) reported {} records for redelivery: {}",
                        dir.display(),
                        w * n,
                        out.reported,
                        why.join("; ")
                    );
                }
                report.merge(&out.report);
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let tally = store.lock().tally.clone();

    // Sanity: every distinct record counted once, by every account of it.
    let mut problems = Vec::new();
    let mut check = |what: &str, got: usize| {
        if got != distinct {
            problems.push(format!(
                "{what}: {got}, expected {distinct} distinct records"
            ));
        }
    };
    check("records counted by the ingest reports", report.counted);
    check(
        "records marked by committed transactions",
        tally.marked as usize,
    );
    check("records marked in the table", marker_count(&inner).await);
    let by_kind = |kind: &str, aggs: &BTreeMap<AggKey, Totals>| -> usize {
        aggs.iter()
            .filter(|((k, ..), _)| k == kind)
            .map(|(_, t)| t.invocations as usize)
            .sum()
    };
    let aggs = read_aggregates(&inner).await;
    check("invocations in user_day totals", by_kind("user_day", &aggs));
    check(
        "invocations in model_day totals",
        by_kind("model_day", &aggs),
    );
    if report.records != log_events {
        problems.push(format!(
            "log events seen by the meter: {}, in the files: {log_events}",
            report.records
        ));
    }
    inner
        .client()
        .delete_table()
        .table_name(inner.table())
        .send()
        .await
        .context("deleting the measurement table")?;

    let items = tally.marker_puts + tally.bucket_adds + tally.bucket_touches + tally.aggregates;
    let total_units = tally.units + 2 * tally.cancelled_items;
    let per = |v: u64| {
        if report.counted == 0 {
            0.0
        } else {
            v as f64 / report.counted as f64
        }
    };
    Ok(Row {
        input: dir.display().to_string(),
        path: window.map_or("direct".into(), |n| format!("kinesis/{n}")),
        scheme: scheme.name(),
        deliveries: deliveries.len(),
        log_events,
        distinct_records: distinct,
        records_counted: report.counted,
        duplicates: report.duplicates,
        units_per_record: per(total_units),
        committed_units_per_record: per(tally.units),
        gsi1_writes_per_record: per(tally.gsi1_units),
        tally,
        replans: report.replans,
        retries: report.retries,
        items,
        total_units,
        seconds,
        problems,
    })
}

impl Row {
    fn to_json(&self) -> serde_json::Value {
        let t = &self.tally;
        serde_json::json!({
            "input": self.input, "path": self.path, "scheme": self.scheme,
            "deliveries": self.deliveries, "log_events": self.log_events,
            "distinct_records": self.distinct_records, "records_counted": self.records_counted,
            "duplicates": self.duplicates, "transactions": t.transactions, "items": self.items,
            "marker_puts": t.marker_puts, "bucket_adds": t.bucket_adds,
            "bucket_touches": t.bucket_touches, "aggregates": t.aggregates,
            "records_marked": t.marked, "replans": self.replans, "retries": self.retries,
            "cancelled_tx": t.cancelled_tx, "cancelled_items": t.cancelled_items,
            "bucket_reads": t.bucket_reads,
            "failed_not_cancelled": t.failed_not_cancelled,
            "committed_units": t.units, "cancelled_units_upper_bound": 2 * t.cancelled_items,
            "total_units": self.total_units, "units_per_record": self.units_per_record,
            "committed_units_per_record": self.committed_units_per_record,
            "gsi1_units": t.gsi1_units, "gsi1_writes_per_record": self.gsi1_writes_per_record,
            "largest_item_bytes": t.largest_item, "seconds": self.seconds,
            "request_cost_items": t.request_costs, "request_cost_units": t.request_cost_units,
            "problems": self.problems,
        })
    }
}

fn print_table(rows: &[Row]) {
    println!(
        "{:<28} {:<10} {:<6} {:>7} {:>6} {:>7} {:>7} {:>7} {:>6} {:>7} {:>6} {:>9} {:>9} {:>8} {:>6} {:>6}",
        "input", "path", "scheme", "records", "tx", "items", "markers", "b.adds", "b.tch",
        "aggs", "replan", "cancel", "units", "units/r", "gsi1/r", "secs"
    );
    for r in rows {
        let t = &r.tally;
        let input = Path::new(&r.input)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| r.input.clone());
        println!(
            "{:<28} {:<10} {:<6} {:>7} {:>6} {:>7} {:>7} {:>7} {:>6} {:>7} {:>6} {:>9} {:>9} {:>8.3} {:>6.3} {:>6.0}",
            input,
            r.path,
            r.scheme,
            r.records_counted,
            t.transactions,
            r.items,
            t.marker_puts,
            t.bucket_adds,
            t.bucket_touches,
            t.aggregates,
            r.replans,
            format!("{}/{}", t.cancelled_tx, t.cancelled_items),
            r.total_units,
            r.units_per_record,
            r.gsi1_writes_per_record,
            r.seconds,
        );
    }
    println!(
        "units: transactional write units, 2 per started KB of each committed item (an update: \
         the larger of before and after), plus 2 per item of cancelled transactions (cancel = \
         tx/items; an upper bound); gsi1/r: index write units per record, not included"
    );
}

async fn main_inner() -> Result<bool> {
    let args = parse_args()?;
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    if !endpoint.starts_with("http://127.0.0.1:") {
        bail!(
            "DynamoDB Local is not running (AWS_ENDPOINT_URL is `{endpoint}`): run the tool \
             inside scripts/with-dynamodb-local.sh\n{USAGE}"
        );
    }
    let client = local_client().await;
    let mut rows = Vec::new();
    for dir in &args.dirs {
        let row = run(
            &client,
            dir,
            args.scheme,
            args.kinesis_window,
            args.request_costs,
        )
        .await?;
        for p in &row.problems {
            eprintln!("write-cost: {}: {p}", dir.display());
        }
        rows.push(row);
    }
    if args.json {
        let all: Vec<serde_json::Value> = rows.iter().map(Row::to_json).collect();
        println!("{}", serde_json::Value::Array(all));
    } else {
        print_table(&rows);
    }
    Ok(rows.iter().all(|r| r.problems.is_empty()))
}

#[tokio::main]
async fn main() -> ExitCode {
    match main_inner().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("write-cost: a sanity check failed (see above): the figures are not valid");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("write-cost: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meter_store::markers::BucketRef;

    fn measured() -> Measured {
        let conf = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .build();
        Measured {
            inner: DynamoDbUsageStore::new(aws_sdk_dynamodb::Client::from_conf(conf), "t"),
            scheme: Scheme::Bucket,
            state: Mutex::default(),
        }
    }

    fn user_day(user: &str, invocations: u128) -> TxItem {
        TxItem::AddAggregate {
            keys: ItemKeys {
                pk: format!("U#{user}"),
                sk: "D#2026-11-01".into(),
                gsi1: Some(("DAY#2026-11-01".into(), format!("U#{user}"))),
            },
            kind: "user_day",
            dims: vec![("user", user.into()), ("day", "2026-11-01".into())],
            counters: Counters {
                invocations,
                ..Counters::default()
            },
        }
    }

    fn tx(items: Vec<TxItem>) -> PlannedTx {
        PlannedTx {
            records_of: vec![Vec::new(); items.len()],
            items,
            record_ids: Vec::new(),
        }
    }

    #[test]
    fn a_number_costs_one_byte_per_two_significant_digits_plus_one() {
        assert_eq!(number_size("0.00000875"), 3); // 875
        assert_eq!(number_size("1793534400"), 5); // 17935344
        assert_eq!(number_size("100"), 2); // 1
        assert_eq!(number_size("12345"), 4);
        assert_eq!(number_size("0"), 2);
    }

    #[test]
    fn a_bucket_at_the_most_ids_one_write_can_leave_stays_under_one_kb() {
        // A capped bucket holds at most cap - 1 + max ids per write = 95 ids.
        let keys = ItemKeys {
            pk: "B#2#29892240#1".into(),
            sk: "B".into(),
            gsi1: None,
        };
        let size = bucket_size(&keys, 95, 1_796_000_000);
        assert!(760 < size && size < 1024, "{size}");
        assert_eq!(bucket_size(&keys, 96, 1) - bucket_size(&keys, 95, 1), 8);
        assert_eq!(bucket_size(&keys, 0, 1), 0);
    }

    #[test]
    fn an_item_over_one_kb_costs_two_write_pairs_and_two_index_units() {
        let m = measured();
        // About 575 bytes with a 100-byte user, about 1,175 with 300 bytes.
        m.count_committed(
            &tx(vec![user_day(&"u".repeat(100), 1)]),
            "2026-11-30T05:00:00Z",
        );
        let t = m.lock().tally.clone();
        assert_eq!((t.units, t.gsi1_units), (2, 1));
        m.count_committed(
            &tx(vec![user_day(&"v".repeat(300), 1)]),
            "2026-11-30T05:00:00Z",
        );
        let t = m.lock().tally.clone();
        assert_eq!(
            (t.units, t.gsi1_units, t.aggregates, t.transactions),
            (6, 3, 2, 2)
        );
    }

    #[test]
    fn bucket_adds_count_their_ids_and_the_bucket_grows_across_transactions() {
        let m = measured();
        let bucket = BucketRef {
            level: 0,
            window: 20_758,
            slot: 3,
        };
        let keys = meter_store::keys::bucket_keys(&bucket);
        let add = |ids: Vec<u64>| TxItem::AddToBucket {
            keys: keys.clone(),
            bucket,
            ids,
            cap: Some(40),
            expires_at: 1_796_000_000,
        };
        m.count_committed(&tx(vec![add((0..56).collect())]), "x");
        m.count_committed(&tx(vec![add((56..60).collect())]), "x");
        let st = m.lock();
        assert_eq!(st.bucket_ids.get(&keys.pk), Some(&60));
        assert_eq!(
            (st.tally.marked, st.tally.bucket_adds, st.tally.units),
            (60, 2, 4)
        );
    }
}
