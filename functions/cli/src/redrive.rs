//! `bedrock-meter redrive QUEUE_URL`: drain a failure queue through the
//! exactly-once ingest path, deleting each message only once it is counted.
//!
//! The queues hold Lambda on-failure destination records:
//!
//! - **ingest** (the direct subscription, asynchronous invocation): the record
//!   carries the original CloudWatch Logs event in `requestPayload`. The
//!   message body goes through [`meter_store::ingest_payload`] as it is, the
//!   very call `bedrock-meter replay` and the Lambda make (its decoder
//!   unwraps `requestPayload`).
//! - **kinesis-ingest** (event source mapping): the record carries
//!   `KinesisBatchInfo` (stream ARN, shard id, first and last sequence
//!   number), not the data. The records are read back from the stream with
//!   `GetShardIterator(AT_SEQUENCE_NUMBER)` + `GetRecords` and each record's
//!   data (one gzip subscription payload) is ingested like the Lambda does.
//!   When the stream no longer holds them (retention, 24 hours by default)
//!   the message is left and the report says to backfill those days from
//!   Bedrock's own S3 delivery.
//! - **budget-alerts** (`DDBStreamBatchInfo`): nothing to count; left with a
//!   pointer to the docs.
//!
//! ## Delete only what was counted
//!
//! A message is deleted only after everything in it was committed (counted
//! now, or found already counted by its marker: redriving twice is
//! harmless). Any other message stays in the queue and is reported with its
//! message id, why, and what to do. Received messages are hidden for
//! `--visibility-timeout` while the run lasts (so that one run does not
//! receive a message it left twice), then the messages left are made visible
//! again at the end of the run (`ChangeMessageVisibility` to 0): the queue's
//! alarm keeps firing and the next run or `aws sqs receive-message` sees them
//! at once. If the process dies before that, they reappear when their
//! visibility timeout runs out.
//!
//! A store failure (a missing table, no permission, DynamoDB throttling past
//! the retries) stops the run: the failed message and every message received
//! after it are left, not attempted.

use std::collections::{HashMap, HashSet};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use meter_core::{Meter, SkippedRecord};
use meter_store::{ingest_payload, CommitSettings, Config, IngestReport, PayloadError, UsageStore};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

#[derive(Args)]
pub struct RedriveArgs {
    /// URL of the failure queue (stack outputs `OnFailureQueueUrl`, or the
    /// kinesis-ingest failure queue's URL).
    #[arg(value_name = "QUEUE_URL")]
    queue_url: String,
    /// Stop after receiving this many messages (default: until the queue is empty).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_messages: Option<u32>,
    /// Meter and report without writing to the table or deleting messages
    /// (every message received is made visible again).
    #[arg(long)]
    dry_run: bool,
    /// Long-poll wait of each receive, 0-20 s; the queue counts as drained
    /// when a receive that waited this long returns nothing.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(0..=20))]
    wait_seconds: u8,
    /// Seconds a received message stays hidden while the run lasts (more
    /// than the run takes, so that no other consumer takes it meanwhile).
    #[arg(long, default_value_t = 900, value_parser = clap::value_parser!(u32).range(1..=43_200))]
    visibility_timeout: u32,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

/// One message as received.
#[derive(Debug, Clone)]
pub struct QueueMessage {
    pub message_id: String,
    pub receipt_handle: String,
    pub body: String,
}

/// What redrive needs from the queue (SQS in production, a fake in tests).
pub trait FailureQueue {
    /// Up to `max` messages (1-10), hidden for `visibility_timeout` seconds.
    async fn receive(
        &self,
        max: i32,
        wait_seconds: i32,
        visibility_timeout: i32,
    ) -> anyhow::Result<Vec<QueueMessage>>;
    async fn delete(&self, receipt_handle: &str) -> anyhow::Result<()>;
    /// Makes a received message visible again at once.
    async fn release(&self, receipt_handle: &str) -> anyhow::Result<()>;
}

/// One Kinesis record read back from the stream.
#[derive(Debug, Clone)]
pub struct StreamRecord {
    pub sequence_number: String,
    pub data: Vec<u8>,
}

/// One `GetRecords` page.
#[derive(Debug, Clone, Default)]
pub struct RecordsPage {
    pub records: Vec<StreamRecord>,
    pub next_iterator: Option<String>,
    pub millis_behind_latest: Option<i64>,
}

/// Why records could not be read back from the stream.
#[derive(Debug)]
pub enum ReadError {
    /// The shard, the stream or the sequence number is no longer there.
    Gone(String),
    /// Anything else (permissions, throttling, the network).
    Other(String),
}

/// What redrive needs from Kinesis (Kinesis in production, a fake in tests).
pub trait ShardReader {
    async fn iterator_at(
        &self,
        stream_arn: &str,
        shard_id: &str,
        sequence_number: &str,
    ) -> Result<String, ReadError>;
    async fn records(&self, stream_arn: &str, iterator: &str) -> Result<RecordsPage, ReadError>;
}

/// The part of a Lambda destination record that says which kind it is.
#[derive(Deserialize)]
struct DestinationProbe {
    #[serde(rename = "KinesisBatchInfo")]
    kinesis: Option<KinesisBatchInfo>,
    #[serde(rename = "DDBStreamBatchInfo")]
    dynamodb_stream: Option<serde::de::IgnoredAny>,
}

/// `KinesisBatchInfo` of a Kinesis event source mapping's on-failure record.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KinesisBatchInfo {
    pub shard_id: String,
    pub start_sequence_number: String,
    pub end_sequence_number: String,
    pub stream_arn: String,
    #[serde(default)]
    pub approximate_arrival_of_first_record: Option<String>,
    #[serde(default)]
    pub approximate_arrival_of_last_record: Option<String>,
}

/// A message left in the queue, and why.
#[derive(Debug, Clone, Serialize)]
pub struct LeftMessage {
    pub message_id: String,
    pub kind: &'static str,
    pub reason: String,
    pub action: String,
}

/// What a run did.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub dry_run: bool,
    /// Distinct messages received.
    pub received: usize,
    /// Messages counted and deleted (with `--dry-run`: that would be).
    pub redriven: usize,
    /// Messages left in the queue.
    pub left: Vec<LeftMessage>,
    /// Kinesis records read back from streams.
    pub kinesis_records: usize,
    /// A receive came back empty: nothing else was visible.
    pub drained: bool,
    /// Stopped at `--max-messages`.
    pub stopped_at_max: bool,
    /// Stopped at a store failure.
    pub stopped_at_store_failure: bool,
    /// A receive failed after the first: the run stopped there.
    pub receive_error: Option<String>,
    /// The merged ingest report of every redriven message.
    pub report: IngestReport,
    pub seconds: f64,
}

impl Summary {
    /// 0 when every message received was redriven; 1 when any was left or
    /// receiving failed.
    pub fn exit_code(&self) -> ExitCode {
        if self.left.is_empty() && self.receive_error.is_none() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }
}

/// Options of one run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub max_messages: Option<u32>,
    pub wait_seconds: i32,
    pub visibility_timeout: i32,
    pub progress: bool,
}

/// Where the counts go: the table, or nowhere (`--dry-run`).
pub enum Sink<'a, S> {
    Store(&'a S),
    /// Meters only; remembers record ids to report within-run duplicates.
    DryRun(HashSet<String>),
}

/// How one message ended.
enum Verdict {
    Redriven,
    Left {
        kind: &'static str,
        reason: String,
        action: String,
    },
    /// Left, and the run stops (a store failure).
    StoreFailed {
        kind: &'static str,
        reason: String,
    },
}

const STORE_ACTION: &str = "fix the table access the error names (table name, Region, \
    credentials, capacity), then run `bedrock-meter redrive` again: records already counted \
    are skipped";

/// Drains `queue` through the ingest path. Never fails as a whole once the
/// first receive worked: problems are reported per message.
pub async fn redrive<Q: FailureQueue, K: ShardReader, S: UsageStore>(
    queue: &Q,
    shards: &K,
    sink: &mut Sink<'_, S>,
    meter: &Meter,
    settings: &CommitSettings,
    opts: &RunOptions,
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let mut last_progress = Instant::now();
    let mut summary = Summary {
        dry_run: matches!(sink, Sink::DryRun(_)),
        ..Default::default()
    };
    // Receipt handles of every message to make visible again at the end.
    let mut to_release: Vec<String> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    'receiving: loop {
        let want = match opts.max_messages {
            Some(max) if summary.received >= max as usize => {
                summary.stopped_at_max = true;
                break;
            }
            Some(max) => (max as usize - summary.received).min(10) as i32,
            None => 10,
        };
        let messages = match queue
            .receive(want, opts.wait_seconds, opts.visibility_timeout)
            .await
        {
            Ok(m) => m,
            Err(e) if summary.received == 0 => return Err(e),
            Err(e) => {
                eprintln!("bedrock-meter: receiving from the queue failed, stopping: {e:#}");
                summary.receive_error = Some(format!("{e:#}"));
                break;
            }
        };
        if messages.is_empty() {
            summary.drained = true;
            break;
        }
        let mut new_ones = 0;
        for (i, m) in messages.iter().enumerate() {
            if let Some(&at) = seen.get(&m.message_id) {
                // Received again: its visibility timeout ran out during the
                // run. Keep the newer handle; do not count it twice.
                if at < to_release.len() {
                    to_release[at] = m.receipt_handle.clone();
                }
                continue;
            }
            new_ones += 1;
            summary.received += 1;
            let verdict = redrive_one(shards, sink, meter, settings, m, &mut summary).await;
            let left = match verdict {
                Verdict::Redriven if summary.dry_run => {
                    summary.redriven += 1;
                    to_release.push(m.receipt_handle.clone());
                    seen.insert(m.message_id.clone(), to_release.len() - 1);
                    None
                }
                Verdict::Redriven => match queue.delete(&m.receipt_handle).await {
                    Ok(()) => {
                        summary.redriven += 1;
                        seen.insert(m.message_id.clone(), usize::MAX);
                        None
                    }
                    Err(e) => Some(LeftMessage {
                        message_id: m.message_id.clone(),
                        kind: kind_of(&m.body),
                        reason: format!("counted, but deleting it failed: {e:#}"),
                        action: "it reappears after its visibility timeout: run `bedrock-meter \
                                 redrive` again (it is found already counted and deleted)"
                            .into(),
                    }),
                },
                Verdict::Left {
                    kind,
                    reason,
                    action,
                } => Some(LeftMessage {
                    message_id: m.message_id.clone(),
                    kind,
                    reason,
                    action,
                }),
                Verdict::StoreFailed { kind, reason } => {
                    summary.stopped_at_store_failure = true;
                    let l = LeftMessage {
                        message_id: m.message_id.clone(),
                        kind,
                        reason,
                        action: STORE_ACTION.into(),
                    };
                    report_left(&l);
                    summary.left.push(l);
                    to_release.push(m.receipt_handle.clone());
                    for rest in &messages[i + 1..] {
                        if seen.contains_key(&rest.message_id) {
                            continue;
                        }
                        summary.received += 1;
                        let l = LeftMessage {
                            message_id: rest.message_id.clone(),
                            kind: kind_of(&rest.body),
                            reason: format!(
                                "not attempted: the run stopped at the store failure of message {}",
                                m.message_id
                            ),
                            action: STORE_ACTION.into(),
                        };
                        report_left(&l);
                        summary.left.push(l);
                        to_release.push(rest.receipt_handle.clone());
                    }
                    break 'receiving;
                }
            };
            if let Some(l) = left {
                report_left(&l);
                summary.left.push(l);
                to_release.push(m.receipt_handle.clone());
                seen.insert(m.message_id.clone(), to_release.len() - 1);
            }
            if opts.progress && last_progress.elapsed() >= Duration::from_secs(2) {
                last_progress = Instant::now();
                eprintln!(
                    "redrive: {} messages, {} {}, {} left; {} records counted, {} duplicates",
                    summary.received,
                    summary.redriven,
                    if summary.dry_run {
                        "would be deleted"
                    } else {
                        "deleted"
                    },
                    summary.left.len(),
                    summary.report.counted,
                    summary.report.duplicates
                );
            }
        }
        if new_ones == 0 {
            // Only messages this run already handled came back: their
            // visibility timeout is shorter than the run.
            eprintln!(
                "bedrock-meter: messages handled earlier in this run are visible again: \
                 --visibility-timeout ({} s) is shorter than the run; stopping",
                opts.visibility_timeout
            );
            break;
        }
    }
    for handle in &to_release {
        if let Err(e) = queue.release(handle).await {
            eprintln!(
                "bedrock-meter: could not make a message visible again (it reappears after its \
                 visibility timeout): {e:#}"
            );
        }
    }
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

fn report_left(l: &LeftMessage) {
    eprintln!(
        "bedrock-meter: message {} ({}) left in the queue: {}. What to do: {}",
        l.message_id, l.kind, l.reason, l.action
    );
}

/// The kind of destination record a body is, for reports.
fn kind_of(body: &str) -> &'static str {
    match serde_json::from_str::<DestinationProbe>(body) {
        Ok(DestinationProbe {
            kinesis: Some(_), ..
        }) => "kinesis",
        Ok(DestinationProbe {
            dynamodb_stream: Some(_),
            ..
        }) => "dynamodb-stream",
        _ if body.contains("\"requestPayload\"") => "lambda-async",
        _ => "payload",
    }
}

async fn redrive_one<K: ShardReader, S: UsageStore>(
    shards: &K,
    sink: &mut Sink<'_, S>,
    meter: &Meter,
    settings: &CommitSettings,
    message: &QueueMessage,
    summary: &mut Summary,
) -> Verdict {
    let probe = serde_json::from_str::<DestinationProbe>(&message.body).ok();
    match probe {
        Some(DestinationProbe {
            kinesis: Some(info),
            ..
        }) => redrive_kinesis(shards, sink, meter, settings, &info, summary).await,
        Some(DestinationProbe {
            dynamodb_stream: Some(_),
            ..
        }) => Verdict::Left {
            kind: "dynamodb-stream",
            reason: "a budget-alerts failure record (a DynamoDB stream batch): the totals are \
                     not affected, only alert notifications may be missing"
                .into(),
            action: "this is the budget-alerts failure queue: check the users with `bedrock-meter \
                     report` and purge it (docs/deploy.md, Budget alerts)"
                .into(),
        },
        _ => {
            let kind = kind_of(&message.body);
            match ingest(sink, meter, settings, message.body.as_bytes()).await {
                Ok((report, skipped)) => {
                    report_skipped(&message.message_id, &skipped);
                    summary.report.merge(&report);
                    Verdict::Redriven
                }
                Err(e @ PayloadError::Decode(_)) => Verdict::Left {
                    kind,
                    reason: e.to_string(),
                    action: "look at it (`aws sqs receive-message`); if the limit of \
                             MAX_DECOMPRESSED_BYTES was exceeded raise it and redrive again; if \
                             it is not a bedrock-meter delivery, delete it by hand"
                        .into(),
                },
                Err(e) => Verdict::StoreFailed {
                    kind,
                    reason: e.to_string(),
                },
            }
        }
    }
}

/// Reads a Kinesis on-failure record's range back from the stream and
/// ingests every record of it, as kinesis-ingest does.
async fn redrive_kinesis<K: ShardReader, S: UsageStore>(
    shards: &K,
    sink: &mut Sink<'_, S>,
    meter: &Meter,
    settings: &CommitSettings,
    info: &KinesisBatchInfo,
    summary: &mut Summary,
) -> Verdict {
    const KIND: &str = "kinesis";
    let records = match read_range(shards, info).await {
        Ok(r) => r,
        Err(ReadError::Gone(why)) => {
            return Verdict::Left {
                kind: KIND,
                reason: format!(
                    "the stream no longer holds records {}..{} of {} ({}): {why}",
                    info.start_sequence_number,
                    info.end_sequence_number,
                    info.shard_id,
                    info.stream_arn
                ),
                action: format!(
                    "recover those invocations from Bedrock's own S3 delivery with `bedrock-meter \
                     backfill s3://BUCKET/PREFIX --from DAY --to DAY` (the records arrived {} .. {}; \
                     take a day either side, overlap is harmless), then delete this message by hand",
                    info.approximate_arrival_of_first_record
                        .as_deref()
                        .unwrap_or("?"),
                    info.approximate_arrival_of_last_record
                        .as_deref()
                        .unwrap_or("?"),
                ),
            }
        }
        Err(ReadError::Other(why)) => {
            return Verdict::Left {
                kind: KIND,
                reason: format!("cannot read {} of {}: {why}", info.shard_id, info.stream_arn),
                action: "check AWS_REGION and kinesis:GetShardIterator / kinesis:GetRecords on the \
                         stream, then run `bedrock-meter redrive` again"
                    .into(),
            }
        }
    };
    summary.kinesis_records += records.len();
    let mut undecodable = Vec::new();
    for r in &records {
        if !r.data.starts_with(&[0x1f, 0x8b]) {
            undecodable.push(format!(
                "{}: record data is not gzip (a CloudWatch Logs subscription writes one gzip \
                 member per record)",
                r.sequence_number
            ));
            continue;
        }
        match ingest(sink, meter, settings, &r.data).await {
            Ok((report, skipped)) => {
                report_skipped(&r.sequence_number, &skipped);
                summary.report.merge(&report);
            }
            Err(e @ PayloadError::Decode(_)) => {
                undecodable.push(format!("{}: {e}", r.sequence_number));
            }
            Err(e) => {
                return Verdict::StoreFailed {
                    kind: KIND,
                    reason: format!("Kinesis record {}: {e}", r.sequence_number),
                }
            }
        }
    }
    if undecodable.is_empty() {
        return Verdict::Redriven;
    }
    Verdict::Left {
        kind: KIND,
        reason: format!(
            "{} of the {} Kinesis records in {}..{} cannot be decoded (the others were counted): {}",
            undecodable.len(),
            records.len(),
            info.start_sequence_number,
            info.end_sequence_number,
            undecodable.join("; ")
        ),
        action: format!(
            "read those sequence numbers with `aws kinesis get-shard-iterator --stream-arn {} \
             --shard-id {} --shard-iterator-type AT_SEQUENCE_NUMBER` and `get-records` while the \
             stream keeps them; raise MAX_DECOMPRESSED_BYTES and redrive again if they were too \
             large, else delete this message by hand",
            info.stream_arn, info.shard_id
        ),
    }
}

/// Pages of `GetRecords` give up after this many calls for one range.
const MAX_PAGES: usize = 1_000;

/// The records `start..=end` of one shard, checking that the first one is
/// still there (else the range was trimmed).
pub async fn read_range<K: ShardReader>(
    shards: &K,
    info: &KinesisBatchInfo,
) -> Result<Vec<StreamRecord>, ReadError> {
    use std::cmp::Ordering::*;
    let (start, end) = (&info.start_sequence_number, &info.end_sequence_number);
    if compare_sequence_numbers(start, end) == Greater {
        return Err(ReadError::Other(format!(
            "startSequenceNumber {start} is after endSequenceNumber {end}"
        )));
    }
    let mut iterator = shards
        .iterator_at(&info.stream_arn, &info.shard_id, start)
        .await?;
    let mut out: Vec<StreamRecord> = Vec::new();
    for page_no in 0..MAX_PAGES {
        let page = shards.records(&info.stream_arn, &iterator).await?;
        let empty = page.records.is_empty();
        for r in page.records {
            if compare_sequence_numbers(&r.sequence_number, end) == Greater {
                return check_first(out, start, end);
            }
            let last = compare_sequence_numbers(&r.sequence_number, end) == Equal;
            out.push(r);
            if last {
                return check_first(out, start, end);
            }
        }
        match page.next_iterator {
            // A closed shard (split or merged) ends here.
            None => return check_first(out, start, end),
            Some(next) => iterator = next,
        }
        if empty && page.millis_behind_latest == Some(0) {
            return check_first(out, start, end);
        }
        if empty && page_no > 0 {
            // Empty pages of a sparse shard: stay under 5 calls/s per shard.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Err(ReadError::Other(format!(
        "gave up after {MAX_PAGES} GetRecords calls without reaching {end}"
    )))
}

fn check_first(
    out: Vec<StreamRecord>,
    start: &str,
    end: &str,
) -> Result<Vec<StreamRecord>, ReadError> {
    match out.first() {
        None => Err(ReadError::Gone(format!(
            "no record between {start} and {end} is left"
        ))),
        Some(first) if first.sequence_number != start => Err(ReadError::Gone(format!(
            "the shard now starts at {} (trimmed past {start})",
            first.sequence_number
        ))),
        Some(_) => Ok(out),
    }
}

/// Kinesis sequence numbers are decimal integers of up to 129 digits:
/// compared by length, then digit by digit.
pub fn compare_sequence_numbers(a: &str, b: &str) -> std::cmp::Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// One payload through the sink: committed exactly once, or metered only.
async fn ingest<S: UsageStore>(
    sink: &mut Sink<'_, S>,
    meter: &Meter,
    settings: &CommitSettings,
    payload: &[u8],
) -> Result<(IngestReport, Vec<SkippedRecord>), PayloadError> {
    match sink {
        Sink::Store(store) => {
            let done =
                ingest_payload(*store, meter, settings, payload, OffsetDateTime::now_utc()).await?;
            Ok((done.report, done.skipped))
        }
        Sink::DryRun(seen) => {
            let batch = meter.meter_payload(payload)?;
            let mut r = meter_store::ingest::report_of_batch(&batch);
            for rec in &batch.records {
                if seen.insert(rec.record_id.clone()) {
                    r.counted += 1;
                    if let Some(reason) = &rec.unpriced {
                        r.unpriced += 1;
                        *r.unpriced_by_reason.entry(reason.label()).or_default() += 1;
                    }
                } else {
                    r.duplicates += 1;
                }
            }
            Ok((r, batch.skipped))
        }
    }
}

fn report_skipped(at: &str, skipped: &[SkippedRecord]) {
    for s in skipped {
        eprintln!(
            "bedrock-meter: {at}: skipped record at {}: {}",
            s.location, s.error
        );
    }
}

fn print_summary(s: &Summary, queue_url: &str, json: bool) {
    if json {
        let mut v = serde_json::to_value(s).unwrap_or_default();
        v["queue_url"] = queue_url.into();
        println!("{v}");
        return;
    }
    let r = &s.report;
    let (verb, deleted) = if s.dry_run {
        ("would count", "would be deleted")
    } else {
        ("counted", "deleted")
    };
    println!(
        "redrive of {queue_url}{}: {} messages received, {} {deleted}, {} left in the queue{}",
        if s.dry_run { " (dry run)" } else { "" },
        s.received,
        s.redriven,
        s.left.len(),
        if s.kinesis_records > 0 {
            format!("; {} Kinesis records read back", s.kinesis_records)
        } else {
            String::new()
        }
    );
    println!(
        "{} records: {} {verb}, {} duplicates (already counted), {} skipped, {} unpriced, in {:.2}s",
        r.records, r.counted, r.duplicates, r.skipped, r.unpriced, s.seconds
    );
    for l in &s.left {
        println!("  left {} ({}): {}", l.message_id, l.kind, l.reason);
        println!("    what to do: {}", l.action);
    }
    if s.drained {
        println!("no more messages visible: the queue is drained of what could be redriven");
    } else if s.stopped_at_max {
        println!("stopped at --max-messages: the queue may hold more");
    } else if s.stopped_at_store_failure {
        println!("stopped at a store failure: messages not received are still in the queue");
    } else if let Some(e) = &s.receive_error {
        println!("stopped when receiving failed ({e}): the queue may hold more");
    }
}

/// The SQS queue, through the SDK.
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl FailureQueue for SqsQueue {
    async fn receive(
        &self,
        max: i32,
        wait_seconds: i32,
        visibility_timeout: i32,
    ) -> anyhow::Result<Vec<QueueMessage>> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max)
            .wait_time_seconds(wait_seconds)
            .visibility_timeout(visibility_timeout)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{}", aws_sdk_sqs::error::DisplayErrorContext(e)))
            .with_context(|| {
                format!(
                    "cannot receive from {} (check the URL, AWS_REGION and sqs:ReceiveMessage)",
                    self.url
                )
            })?;
        Ok(out
            .messages
            .unwrap_or_default()
            .into_iter()
            .map(|m| QueueMessage {
                message_id: m.message_id.unwrap_or_default(),
                receipt_handle: m.receipt_handle.unwrap_or_default(),
                body: m.body.unwrap_or_default(),
            })
            .collect())
    }

    async fn delete(&self, receipt_handle: &str) -> anyhow::Result<()> {
        self.client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt_handle)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{}", aws_sdk_sqs::error::DisplayErrorContext(e)))
            .context("sqs:DeleteMessage failed")?;
        Ok(())
    }

    async fn release(&self, receipt_handle: &str) -> anyhow::Result<()> {
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(0)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{}", aws_sdk_sqs::error::DisplayErrorContext(e)))
            .context("sqs:ChangeMessageVisibility failed")?;
        Ok(())
    }
}

/// Kinesis streams, through the SDK.
pub struct KinesisShards {
    client: aws_sdk_kinesis::Client,
}

impl ShardReader for KinesisShards {
    async fn iterator_at(
        &self,
        stream_arn: &str,
        shard_id: &str,
        sequence_number: &str,
    ) -> Result<String, ReadError> {
        use aws_sdk_kinesis::operation::get_shard_iterator::GetShardIteratorError as E;
        let out = self
            .client
            .get_shard_iterator()
            .stream_arn(stream_arn)
            .shard_id(shard_id)
            .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::AtSequenceNumber)
            .starting_sequence_number(sequence_number)
            .send()
            .await
            .map_err(|e| {
                let text = aws_sdk_kinesis::error::DisplayErrorContext(&e).to_string();
                match e.as_service_error() {
                    // The stream or shard is gone, or the sequence number is
                    // not (or no longer) in the shard.
                    Some(E::ResourceNotFoundException(_) | E::InvalidArgumentException(_)) => {
                        ReadError::Gone(text)
                    }
                    _ => ReadError::Other(text),
                }
            })?;
        out.shard_iterator
            .ok_or_else(|| ReadError::Gone("GetShardIterator returned no iterator".into()))
    }

    async fn records(&self, stream_arn: &str, iterator: &str) -> Result<RecordsPage, ReadError> {
        let out = self
            .client
            .get_records()
            .stream_arn(stream_arn)
            .shard_iterator(iterator)
            .send()
            .await
            .map_err(|e| {
                ReadError::Other(aws_sdk_kinesis::error::DisplayErrorContext(e).to_string())
            })?;
        Ok(RecordsPage {
            records: out
                .records
                .into_iter()
                .map(|r| StreamRecord {
                    sequence_number: r.sequence_number,
                    data: r.data.into_inner(),
                })
                .collect(),
            next_iterator: out.next_shard_iterator,
            millis_behind_latest: out.millis_behind_latest,
        })
    }
}

/// `sqs.REGION.amazonaws.com` (or `REGION.queue.amazonaws.com`) in a queue URL.
fn region_of_queue_url(url: &str) -> Option<String> {
    let host = url.split("://").nth(1)?.split('/').next()?;
    let parts: Vec<&str> = host.split('.').collect();
    match parts.as_slice() {
        ["sqs", region, "amazonaws", ..] => Some(region.to_string()),
        [region, "queue", "amazonaws", ..] => Some(region.to_string()),
        _ => None,
    }
}

pub async fn run(config: &Config, args: RedriveArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.queue_url.starts_with("https://") || args.queue_url.starts_with("http://"),
        "`{}` is not a queue URL: pass the URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME), \
         e.g. the stack output OnFailureQueueUrl",
        args.queue_url
    );
    let meter = config.meter()?;
    let settings = config.commit_settings();
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let mut sqs_conf = aws_sdk_sqs::config::Builder::from(&sdk);
    if let Some(region) = region_of_queue_url(&args.queue_url) {
        sqs_conf = sqs_conf.region(aws_sdk_sqs::config::Region::new(region));
    } else if sdk.region().is_none() {
        anyhow::bail!("no AWS Region configured: set AWS_REGION (or a profile with a region)");
    }
    let queue = SqsQueue {
        client: aws_sdk_sqs::Client::from_conf(
            aws_call_log::install(sqs_conf, crate::component()).build(),
        ),
        url: args.queue_url.clone(),
    };
    let shards = KinesisShards {
        client: aws_call_log::client(&sdk, crate::component()),
    };
    let opts = RunOptions {
        max_messages: args.max_messages,
        wait_seconds: i32::from(args.wait_seconds),
        visibility_timeout: args.visibility_timeout as i32,
        progress: true,
    };
    let summary = if args.dry_run {
        let mut sink: Sink<'_, meter_store::DynamoDbUsageStore> = Sink::DryRun(HashSet::new());
        redrive(&queue, &shards, &mut sink, &meter, &settings, &opts).await?
    } else {
        let store = crate::store(config).await?;
        // PRICE_TABLE_PATH, else the newest stored table, else the built-in.
        let meter = crate::prices::meter(config, &store).await?;
        redrive(
            &queue,
            &shards,
            &mut Sink::Store(&store),
            &meter,
            &settings,
            &opts,
        )
        .await?
    };
    print_summary(&summary, &args.queue_url, args.json);
    Ok(summary.exit_code())
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use meter_store::{MemoryUsageStore, StoreError};

    use super::*;

    /// An in-memory queue: `visible` messages, those received and not yet
    /// deleted or released are `hidden`.
    #[derive(Default)]
    struct FakeQueue {
        visible: Mutex<VecDeque<QueueMessage>>,
        hidden: Mutex<Vec<QueueMessage>>,
        deleted: Mutex<Vec<String>>,
        released: Mutex<Vec<String>>,
    }

    impl FakeQueue {
        fn with(bodies: &[String]) -> FakeQueue {
            let q = FakeQueue::default();
            for (i, b) in bodies.iter().enumerate() {
                q.visible.lock().unwrap().push_back(QueueMessage {
                    message_id: format!("m{i}"),
                    receipt_handle: format!("h{i}"),
                    body: b.clone(),
                });
            }
            q
        }
        fn deleted(&self) -> Vec<String> {
            self.deleted.lock().unwrap().clone()
        }
        fn visible_ids(&self) -> Vec<String> {
            let mut ids: Vec<String> = self
                .visible
                .lock()
                .unwrap()
                .iter()
                .map(|m| m.message_id.clone())
                .collect();
            ids.sort();
            ids
        }
    }

    impl FailureQueue for FakeQueue {
        async fn receive(&self, max: i32, _: i32, _: i32) -> anyhow::Result<Vec<QueueMessage>> {
            let mut visible = self.visible.lock().unwrap();
            let n = (max as usize).min(visible.len());
            let got: Vec<QueueMessage> = visible.drain(..n).collect();
            self.hidden.lock().unwrap().extend(got.iter().cloned());
            Ok(got)
        }
        async fn delete(&self, handle: &str) -> anyhow::Result<()> {
            let mut hidden = self.hidden.lock().unwrap();
            let at = hidden
                .iter()
                .position(|m| m.receipt_handle == handle)
                .ok_or_else(|| anyhow::anyhow!("unknown receipt handle {handle}"))?;
            self.deleted
                .lock()
                .unwrap()
                .push(hidden.remove(at).message_id);
            Ok(())
        }
        async fn release(&self, handle: &str) -> anyhow::Result<()> {
            let mut hidden = self.hidden.lock().unwrap();
            let at = hidden
                .iter()
                .position(|m| m.receipt_handle == handle)
                .ok_or_else(|| anyhow::anyhow!("unknown receipt handle {handle}"))?;
            let m = hidden.remove(at);
            self.released.lock().unwrap().push(m.message_id.clone());
            self.visible.lock().unwrap().push_back(m);
            Ok(())
        }
    }

    /// One shard's records, pages of `page` records; the iterator is the
    /// index of the next record.
    struct FakeShard {
        records: Vec<StreamRecord>,
        page: usize,
    }

    impl ShardReader for FakeShard {
        async fn iterator_at(&self, _: &str, _: &str, seq: &str) -> Result<String, ReadError> {
            // Like Kinesis on a trimmed shard: start at the first record at or
            // after `seq`.
            let at = self
                .records
                .iter()
                .position(|r| {
                    compare_sequence_numbers(&r.sequence_number, seq) != std::cmp::Ordering::Less
                })
                .unwrap_or(self.records.len());
            Ok(at.to_string())
        }
        async fn records(&self, _: &str, it: &str) -> Result<RecordsPage, ReadError> {
            let at: usize = it.parse().unwrap();
            let end = (at + self.page).min(self.records.len());
            Ok(RecordsPage {
                records: self.records[at..end].to_vec(),
                next_iterator: Some(end.to_string()),
                millis_behind_latest: Some(if end == self.records.len() { 0 } else { 1 }),
            })
        }
    }

    fn no_shard() -> FakeShard {
        FakeShard {
            records: Vec::new(),
            page: 10,
        }
    }

    fn settings() -> CommitSettings {
        CommitSettings {
            max_attempts: 2,
            base_backoff: Duration::from_millis(1),
            ..Default::default()
        }
    }

    fn opts() -> RunOptions {
        RunOptions {
            max_messages: None,
            wait_seconds: 0,
            visibility_timeout: 60,
            progress: false,
        }
    }

    /// Newline-delimited invocation records of `n` calls by `user`, ids
    /// `prefix-0..n`, 3 input and 2 output tokens each.
    fn records(prefix: &str, n: usize) -> String {
        (0..n)
            .map(|i| {
                format!(
                    r#"{{"schemaType":"ModelInvocationLog","timestamp":"2026-11-20T10:00:00Z","requestId":"{prefix}-{i}","modelId":"amazon.nova-micro-v1:0","region":"us-east-1","input":{{"inputTokenCount":3}},"output":{{"outputTokenCount":2}},"requestMetadata":{{"user":"alice"}}}}"#
                ) + "\n"
            })
            .collect()
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(bytes).unwrap();
        gz.finish().unwrap()
    }

    /// An ingest Lambda on-failure record whose `requestPayload` is a
    /// CloudWatch Logs event holding `lines`.
    fn lambda_record(lines: &str) -> String {
        use base64::Engine as _;
        let events: Vec<serde_json::Value> = lines
            .lines()
            .enumerate()
            .map(|(i, l)| serde_json::json!({"id": format!("{i:056}"), "timestamp": 1_790_000_000_000u64, "message": l}))
            .collect();
        let payload = serde_json::json!({"messageType": "DATA_MESSAGE", "owner": "111111111111",
            "logGroup": "g", "logStream": "s", "subscriptionFilters": ["f"], "logEvents": events});
        let data =
            base64::engine::general_purpose::STANDARD.encode(gzip(payload.to_string().as_bytes()));
        serde_json::json!({"version": "1.0", "requestContext": {"condition": "RetriesExhausted"},
            "requestPayload": {"awslogs": {"data": data}},
            "responsePayload": {"errorMessage": "x"}})
        .to_string()
    }

    fn kinesis_record(start: &str, end: &str) -> String {
        serde_json::json!({"version": "1.0",
            "requestContext": {"condition": "RetryAttemptsExhausted"},
            "KinesisBatchInfo": {"shardId": "shardId-000000000000",
                "startSequenceNumber": start, "endSequenceNumber": end,
                "approximateArrivalOfFirstRecord": "2026-11-20T10:00:00.000Z",
                "approximateArrivalOfLastRecord": "2026-11-20T10:00:01.000Z",
                "batchSize": 3, "streamArn": "arn:aws:kinesis:us-east-1:111111111111:stream/s"}})
        .to_string()
    }

    fn stream_record(seq: u32, prefix: &str, n: usize) -> StreamRecord {
        let events: Vec<serde_json::Value> = records(prefix, n)
            .lines()
            .enumerate()
            .map(|(i, l)| serde_json::json!({"id": format!("{seq}{i:050}"), "timestamp": 1_790_000_000_000u64, "message": l}))
            .collect();
        let payload = serde_json::json!({"messageType": "DATA_MESSAGE", "owner": "111111111111",
            "logGroup": "g", "logStream": "s", "subscriptionFilters": ["f"], "logEvents": events});
        StreamRecord {
            sequence_number: format!("4962{seq:052}"),
            data: gzip(payload.to_string().as_bytes()),
        }
    }

    fn seq(n: u32) -> String {
        format!("4962{n:052}")
    }

    async fn run_with<K: ShardReader>(
        queue: &FakeQueue,
        shards: &K,
        store: &MemoryUsageStore,
    ) -> Summary {
        redrive(
            queue,
            shards,
            &mut Sink::Store(store),
            &Meter::with_defaults(),
            &settings(),
            &opts(),
        )
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn counted_messages_are_deleted_and_a_malformed_one_is_left_and_reported() {
        let store = MemoryUsageStore::new();
        // GIVEN the first message was counted before it failed (a timeout)
        meter_store::ingest_payload(
            &store,
            &Meter::with_defaults(),
            &settings(),
            records("a", 4).as_bytes(),
            OffsetDateTime::now_utc(),
        )
        .await
        .unwrap();
        let queue = FakeQueue::with(&[
            lambda_record(&records("a", 4)),
            "{\"requestPayload\": {\"awslogs\": {\"data\": \"bm90IGd6aXA=\"}}}".into(),
            lambda_record(&records("b", 7)),
        ]);
        // WHEN the queue is redriven
        let s = run_with(&queue, &no_shard(), &store).await;
        // THEN both good messages are deleted, the malformed one stays visible
        assert_eq!(queue.deleted(), ["m0", "m2"]);
        assert_eq!(queue.visible_ids(), ["m1"]);
        assert_eq!((s.received, s.redriven, s.left.len()), (3, 2, 1));
        assert_eq!(s.left[0].message_id, "m1");
        assert_eq!(s.left[0].kind, "lambda-async");
        assert!(s.left[0].reason.contains("gzip"), "{}", s.left[0].reason);
        assert_eq!((s.report.counted, s.report.duplicates), (7, 4));
        assert_eq!(store.marker_count(), 11);
        assert!(s.drained);
        assert_eq!(s.exit_code(), ExitCode::FAILURE);
    }

    #[tokio::test]
    async fn a_queue_of_good_messages_is_drained_with_exit_zero() {
        let store = MemoryUsageStore::new();
        let bodies: Vec<String> = (0..23)
            .map(|i| lambda_record(&records(&format!("q{i}"), 2)))
            .collect();
        let queue = FakeQueue::with(&bodies);
        let s = run_with(&queue, &no_shard(), &store).await;
        assert_eq!((s.received, s.redriven), (23, 23));
        assert!(queue.visible_ids().is_empty());
        assert_eq!(store.marker_count(), 46);
        assert_eq!(s.exit_code(), ExitCode::SUCCESS);
    }

    #[tokio::test]
    async fn a_store_failure_stops_the_run_and_leaves_every_message_received() {
        let store = MemoryUsageStore::new();
        store.push_fault(StoreError::TableMissing {
            table: "gone".into(),
        });
        let queue = FakeQueue::with(&[
            lambda_record(&records("a", 2)),
            lambda_record(&records("b", 2)),
            lambda_record(&records("c", 2)),
        ]);
        let s = run_with(&queue, &no_shard(), &store).await;
        assert!(queue.deleted().is_empty());
        assert_eq!(queue.visible_ids(), ["m0", "m1", "m2"]);
        assert!(s.stopped_at_store_failure);
        assert_eq!(s.left.len(), 3);
        assert!(s.left[0].reason.contains("gone"), "{}", s.left[0].reason);
        assert!(s.left[1].reason.contains("not attempted"));
        assert_eq!(store.marker_count(), 0);
    }

    #[tokio::test]
    async fn a_kinesis_failure_record_is_read_back_between_its_sequence_numbers() {
        let store = MemoryUsageStore::new();
        let shard = FakeShard {
            records: (0..6)
                .map(|i| stream_record(i, &format!("k{i}"), 3))
                .collect(),
            page: 2,
        };
        // GIVEN record 2 was counted by the Lambda before the batch failed
        meter_store::ingest_payload(
            &store,
            &Meter::with_defaults(),
            &settings(),
            &shard.records[2].data,
            OffsetDateTime::now_utc(),
        )
        .await
        .unwrap();
        let queue = FakeQueue::with(&[kinesis_record(&seq(1), &seq(4))]);
        let s = run_with(&queue, &shard, &store).await;
        // THEN records 1..=4 were read (not 0, not 5) and the message deleted
        assert_eq!(s.kinesis_records, 4);
        assert_eq!((s.report.counted, s.report.duplicates), (9, 3));
        assert_eq!(store.marker_count(), 12);
        assert_eq!(queue.deleted(), ["m0"]);
        assert_eq!(s.exit_code(), ExitCode::SUCCESS);
    }

    #[tokio::test]
    async fn a_kinesis_range_no_longer_in_the_stream_is_left_with_a_backfill_hint() {
        let store = MemoryUsageStore::new();
        // The shard was trimmed: it now starts at record 3.
        let shard = FakeShard {
            records: (3..6)
                .map(|i| stream_record(i, &format!("k{i}"), 3))
                .collect(),
            page: 10,
        };
        let queue = FakeQueue::with(&[kinesis_record(&seq(1), &seq(4))]);
        let s = run_with(&queue, &shard, &store).await;
        assert_eq!(queue.visible_ids(), ["m0"]);
        assert_eq!(s.left[0].kind, "kinesis");
        assert!(
            s.left[0].reason.contains("no longer holds"),
            "{}",
            s.left[0].reason
        );
        assert!(s.left[0].action.contains("bedrock-meter backfill"));
        assert_eq!(store.marker_count(), 0);
    }

    #[tokio::test]
    async fn an_undecodable_kinesis_record_leaves_its_message_but_the_others_are_counted() {
        let store = MemoryUsageStore::new();
        let mut recs: Vec<StreamRecord> = (0..3)
            .map(|i| stream_record(i, &format!("k{i}"), 2))
            .collect();
        let half = recs[1].data.len() / 2;
        recs[1].data.truncate(half);
        let shard = FakeShard {
            records: recs,
            page: 10,
        };
        let queue = FakeQueue::with(&[kinesis_record(&seq(0), &seq(2))]);
        let s = run_with(&queue, &shard, &store).await;
        assert_eq!(queue.visible_ids(), ["m0"]);
        assert!(s.left[0].reason.contains(&seq(1)), "{}", s.left[0].reason);
        assert_eq!(store.marker_count(), 4);
    }

    #[tokio::test]
    async fn a_dry_run_writes_nothing_deletes_nothing_and_releases_every_message() {
        let store = MemoryUsageStore::new();
        let queue = FakeQueue::with(&[
            lambda_record(&records("a", 3)),
            lambda_record(&records("a", 3)),
            "not json".into(),
        ]);
        let mut sink: Sink<'_, MemoryUsageStore> = Sink::DryRun(HashSet::new());
        let s = redrive(
            &queue,
            &no_shard(),
            &mut sink,
            &Meter::with_defaults(),
            &settings(),
            &opts(),
        )
        .await
        .unwrap();
        assert!(s.dry_run);
        assert_eq!((s.redriven, s.left.len()), (2, 1));
        assert_eq!((s.report.counted, s.report.duplicates), (3, 3));
        assert!(queue.deleted().is_empty());
        assert_eq!(queue.visible_ids(), ["m0", "m1", "m2"]);
        assert_eq!(store.transactions(), 0);
    }

    #[tokio::test]
    async fn max_messages_bounds_what_is_received() {
        let store = MemoryUsageStore::new();
        let bodies: Vec<String> = (0..5)
            .map(|i| lambda_record(&records(&format!("q{i}"), 1)))
            .collect();
        let queue = FakeQueue::with(&bodies);
        let s = redrive(
            &queue,
            &no_shard(),
            &mut Sink::Store(&store),
            &Meter::with_defaults(),
            &settings(),
            &RunOptions {
                max_messages: Some(3),
                ..opts()
            },
        )
        .await
        .unwrap();
        assert_eq!((s.received, s.redriven), (3, 3));
        assert!(s.stopped_at_max && !s.drained);
        assert_eq!(queue.visible_ids(), ["m3", "m4"]);
    }

    #[tokio::test]
    async fn a_budget_alerts_failure_record_is_left_with_what_to_do() {
        let store = MemoryUsageStore::new();
        let queue = FakeQueue::with(&[serde_json::json!({"version": "1.0",
            "DDBStreamBatchInfo": {"shardId": "x", "startSequenceNumber": "1",
                "endSequenceNumber": "2", "streamArn": "arn"}})
        .to_string()]);
        let s = run_with(&queue, &no_shard(), &store).await;
        assert_eq!(s.left[0].kind, "dynamodb-stream");
        assert!(s.left[0].action.contains("budget-alerts"));
        assert_eq!(queue.visible_ids(), ["m0"]);
    }

    #[test]
    fn sequence_numbers_compare_as_integers() {
        use std::cmp::Ordering::*;
        assert_eq!(compare_sequence_numbers("9", "10"), Less);
        assert_eq!(compare_sequence_numbers("010", "10"), Equal);
        assert_eq!(
            compare_sequence_numbers(
                "49620000000000000000000000000000000000000000000000000002",
                "49620000000000000000000000000000000000000000000000000010"
            ),
            Less
        );
    }

    #[test]
    fn the_region_comes_from_an_sqs_queue_url() {
        assert_eq!(
            region_of_queue_url("https://sqs.eu-west-1.amazonaws.com/111111111111/q").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            region_of_queue_url("http://127.0.0.1:5000/111111111111/q"),
            None
        );
    }
}
