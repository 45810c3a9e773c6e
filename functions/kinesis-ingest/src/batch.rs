//! One Kinesis batch through the shared ingest path, with no logging and no
//! Lambda runtime: which records were counted, which could never be decoded,
//! and which must be delivered again (both of the latter are reported).
//!
//! Each Kinesis record's data is one gzip `DATA_MESSAGE` (or
//! `CONTROL_MESSAGE`) from the CloudWatch Logs subscription, about a second
//! of log events. Every record is first decoded and metered on its own
//! ([`Meter::meter_payload`], the decode and metering of the direct
//! subscription and `bedrock-meter replay`); then the metered records of the
//! whole batch are merged ([`MeteredBatch::concat`]: a log event that two
//! Kinesis records both carry is counted once, the first) and committed
//! exactly once with **one** [`meter_store::commit_batch`]. The aggregates a
//! batch touches (user-model-day and the rollups) are so written once per
//! Lambda batch rather than once per Kinesis record: a longer batching window
//! means fewer DynamoDB writes per log event.
//!
//! ## Failure policy
//!
//! - **Undecodable record** (data not gzip, corrupt or truncated gzip, a
//!   payload of no known shape, over `MAX_DECOMPRESSED_BYTES`): nothing in it
//!   is counted and it is **reported** in `batchItemFailures` (as
//!   [`RecordOutcome::Undecodable`]), so that it is never lost silently:
//!   Lambda retries from it, and after the event source mapping's
//!   `MaximumRetryAttempts` (bisecting at the reported sequence number) it
//!   sends the shard id and sequence-number range to the on-failure
//!   destination, whose queue has an alarm. `bedrock-meter redrive` reads the
//!   range back from the stream and replays it (with a larger
//!   `MAX_DECOMPRESSED_BYTES`, say, when that was the cause), or leaves the
//!   message in the queue naming the sequence number. Decoding is
//!   deterministic, so the retries cannot succeed; they are bounded by
//!   `MaximumRetryAttempts`, not by the stream's retention.
//!   **The other records of the batch are still committed**: Lambda
//!   redelivers the later ones with the undecodable one (it resumes at the
//!   lowest reported sequence number), and each redelivery finds them already
//!   counted by their markers, so nothing is counted twice and none of them
//!   waits for the undecodable record's retries to end.
//! - **Store failure** of the batch's one commit (retries exhausted,
//!   throttling, an outage, a missing table, a rejected request): **every
//!   record whose log events were in the commit** is reported in
//!   `batchItemFailures` (with the undecodable ones; control messages, which
//!   count nothing, are not). The first of them carries the error
//!   ([`RecordOutcome::Failed`], logged once), the others are
//!   [`RecordOutcome::NotAttempted`]. Lambda checkpoints at the lowest
//!   reported sequence number and redelivers from there; the groups of the
//!   commit that went through before the failure are skipped on redelivery
//!   by their markers, so nothing is counted twice. Nothing of a failed
//!   commit is in the batch's report. Non-retryable store failures are
//!   reported too rather than skipped: skipping would lose counts silently;
//!   the event source mapping's `MaximumRetryAttempts`,
//!   `BisectBatchOnFunctionError` and on-failure destination bound how long
//!   such a batch can hold the shard. The price of one commit: a record the
//!   store rejects for good takes the whole batch's range (not only its own
//!   record) to the failure queue; `bedrock-meter redrive` replays the range
//!   and skips what was counted.
//! - Malformed log events *inside* a decodable record are skipped and
//!   reported by the shared path, as everywhere else, with the sequence
//!   number of their record.

use aws_lambda_events::event::kinesis::{KinesisEvent, KinesisEventRecord};
use aws_lambda_events::event::streams::KinesisEventResponse;
use meter_core::{BatchKind, Meter, MeteredBatch};
use meter_store::ingest::report_of_batch;
use meter_store::{commit_batch, CommitSettings, IngestReport, Ingested, PayloadError, UsageStore};
use time::OffsetDateTime;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// What happened to one Kinesis record.
#[derive(Debug)]
pub enum RecordOutcome {
    /// Decoded, and its log events part of the batch's commit, which
    /// succeeded; or a control message. Its `report` holds this record's
    /// metering counts only (log events, malformed ones skipped, duplicates
    /// within it): what the one commit counted is in [`BatchOutcome::report`].
    Ingested(Ingested),
    /// Could never be decoded: nothing counted, reported in
    /// `batchItemFailures`; the other records are still committed (see the
    /// module docs).
    Undecodable { error: String },
    /// The first record of the batch's commit, which failed: reported in
    /// `batchItemFailures`, with the commit's error.
    Failed { retryable: bool, error: String },
    /// Another record of the batch's failed commit (its error is on the
    /// [`RecordOutcome::Failed`] one): reported in `batchItemFailures`.
    NotAttempted,
}

/// One record's identity and outcome.
#[derive(Debug)]
pub struct RecordResult {
    /// Position in the batch.
    pub index: usize,
    pub sequence_number: String,
    /// `shardId-...:sequence`, as Lambda sets `eventID`.
    pub event_id: String,
    pub partition_key: String,
    /// Compressed size of the record's data.
    pub bytes: usize,
    pub outcome: RecordOutcome,
}

/// The outcome of a whole batch.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    pub records: Vec<RecordResult>,
    /// The report of the batch's one commit: the metering counts of every
    /// record in it (merged) plus what the commit counted. Empty when the
    /// commit failed.
    pub report: IngestReport,
    /// Records that were control messages.
    pub control_messages: usize,
    /// Records that could not be decoded (reported, nothing counted).
    pub undecodable: usize,
    /// Records whose log events went into the batch's one commit.
    pub in_commit: usize,
    /// Records reported for redelivery (undecodable, failed or not attempted).
    pub reported: usize,
    /// What Lambda gets back: the sequence numbers to deliver again.
    pub response: KinesisEventResponse,
}

impl BatchOutcome {
    /// The sequence number Lambda will resume from, if any record failed.
    pub fn first_reported(&self) -> Option<&str> {
        self.records
            .iter()
            .find(|r| is_reported(&r.outcome))
            .map(|r| r.sequence_number.as_str())
    }
}

fn is_reported(outcome: &RecordOutcome) -> bool {
    matches!(
        outcome,
        RecordOutcome::Undecodable { .. }
            | RecordOutcome::Failed { .. }
            | RecordOutcome::NotAttempted
    )
}

/// Meters every record of a Kinesis batch, then commits them all at once
/// (see the module docs for the failure policy). Never fails as a whole:
/// failures are reported per record.
pub async fn process_batch<S: UsageStore>(
    store: &S,
    meter: &Meter,
    settings: &CommitSettings,
    event: &KinesisEvent,
    now: OffsetDateTime,
) -> BatchOutcome {
    let mut out = BatchOutcome::default();
    let mut outcomes = Vec::with_capacity(event.records.len());
    // The metered data messages, and the positions of their records.
    let mut metered: Vec<MeteredBatch> = Vec::new();
    let mut in_commit: Vec<usize> = Vec::new();
    for (index, record) in event.records.iter().enumerate() {
        let data: &[u8] = &record.kinesis.data;
        let outcome = if !data.starts_with(&GZIP_MAGIC) {
            RecordOutcome::Undecodable {
                error: "record data is not gzip (a CloudWatch Logs subscription writes one gzip member per record)".into(),
            }
        } else {
            match meter.meter_payload(data) {
                Ok(batch) => {
                    let done = Ingested {
                        report: report_of_batch(&batch),
                        skipped: batch.skipped.clone(),
                    };
                    if batch.kind == BatchKind::Control {
                        out.control_messages += 1;
                    } else {
                        metered.push(batch);
                        in_commit.push(index);
                    }
                    RecordOutcome::Ingested(done)
                }
                Err(e) => RecordOutcome::Undecodable {
                    error: PayloadError::Decode(e).to_string(),
                },
            }
        };
        if matches!(outcome, RecordOutcome::Undecodable { .. }) {
            // Reported, but the other records are still committed: see the
            // module docs.
            out.undecodable += 1;
        }
        outcomes.push(outcome);
    }
    out.in_commit = in_commit.len();
    if !metered.is_empty() {
        let merged = MeteredBatch::concat(metered);
        match commit_batch(store, &merged, settings, now).await {
            Ok(report) => out.report = report,
            Err(e) => {
                for (n, &index) in in_commit.iter().enumerate() {
                    outcomes[index] = if n == 0 {
                        RecordOutcome::Failed {
                            retryable: e.is_retryable(),
                            error: e.to_string(),
                        }
                    } else {
                        RecordOutcome::NotAttempted
                    };
                }
            }
        }
    }
    for (index, (record, outcome)) in event.records.iter().zip(outcomes).enumerate() {
        if is_reported(&outcome) {
            out.reported += 1;
            out.response
                .add_failure(record.kinesis.sequence_number.clone());
        }
        out.records.push(result_of(index, record, outcome));
    }
    out
}

fn result_of(index: usize, record: &KinesisEventRecord, outcome: RecordOutcome) -> RecordResult {
    RecordResult {
        index,
        sequence_number: record.kinesis.sequence_number.clone(),
        event_id: record.event_id.clone().unwrap_or_default(),
        partition_key: record.kinesis.partition_key.clone(),
        bytes: record.kinesis.data.len(),
        outcome,
    }
}
