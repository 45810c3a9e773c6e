//! One Kinesis batch through the shared ingest path, with no logging and no
//! Lambda runtime: which records were counted, which could never be decoded,
//! and which must be delivered again (both of the latter are reported).
//!
//! Each Kinesis record's data is one gzip `DATA_MESSAGE` (or
//! `CONTROL_MESSAGE`) from the CloudWatch Logs subscription. Records are
//! ingested one after the other, in the batch's (sequence-number) order, each
//! with [`meter_store::ingest_payload`]: the same decode, metering and
//! exactly-once commit as the direct subscription and `bedrock-meter replay`.
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
//!   **Later records of the batch are still ingested**: Lambda redelivers them
//!   with the undecodable one (it resumes at the lowest reported sequence
//!   number), and each redelivery finds them already counted by their
//!   markers, so nothing is counted twice and none of them waits for the
//!   undecodable record's retries to end.
//! - **Store failure** (retries in the commit exhausted, throttling, an
//!   outage, a missing table, a rejected request): the record and **every
//!   later record** of the batch are reported in `batchItemFailures`, and the
//!   later ones are not even attempted. Lambda checkpoints at the lowest
//!   reported sequence number and redelivers from there, so reporting only
//!   the failed record would be the same as reporting all of them; stopping
//!   early saves the writes. Groups that did commit before the failure are
//!   skipped on redelivery by their markers. Non-retryable store failures are
//!   reported too rather than skipped: skipping would lose counts silently;
//!   the event source mapping's `MaximumRetryAttempts`,
//!   `BisectBatchOnFunctionError` and on-failure destination bound how long
//!   such a record can hold the shard.
//! - Malformed log events *inside* a decodable record are skipped and
//!   reported by the shared path, as everywhere else.

use aws_lambda_events::event::kinesis::{KinesisEvent, KinesisEventRecord};
use aws_lambda_events::event::streams::KinesisEventResponse;
use meter_core::Meter;
use meter_store::{
    ingest_payload, CommitSettings, IngestReport, Ingested, PayloadError, UsageStore,
};
use time::OffsetDateTime;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// What happened to one Kinesis record.
#[derive(Debug)]
pub enum RecordOutcome {
    /// Decoded and committed (its log events counted, found already counted,
    /// or skipped as malformed), or a control message.
    Ingested(Ingested),
    /// Could never be decoded: nothing counted, reported in
    /// `batchItemFailures`; later records are still ingested (see the module
    /// docs).
    Undecodable { error: String },
    /// Not committed: reported in `batchItemFailures`.
    Failed { retryable: bool, error: String },
    /// After a failure in the same batch: reported without being attempted.
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
    /// The merged report of every ingested record.
    pub report: IngestReport,
    /// Records that were control messages.
    pub control_messages: usize,
    /// Records that could not be decoded (reported, nothing counted).
    pub undecodable: usize,
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
            .find(|r| {
                matches!(
                    r.outcome,
                    RecordOutcome::Undecodable { .. }
                        | RecordOutcome::Failed { .. }
                        | RecordOutcome::NotAttempted
                )
            })
            .map(|r| r.sequence_number.as_str())
    }
}

/// Ingests every record of a Kinesis batch (see the module docs for the
/// failure policy). Never fails as a whole: failures are per record.
pub async fn process_batch<S: UsageStore>(
    store: &S,
    meter: &Meter,
    settings: &CommitSettings,
    event: &KinesisEvent,
    now: OffsetDateTime,
) -> BatchOutcome {
    let mut out = BatchOutcome::default();
    let mut failed = false;
    for (index, record) in event.records.iter().enumerate() {
        let data: &[u8] = &record.kinesis.data;
        let outcome = if failed {
            RecordOutcome::NotAttempted
        } else if !data.starts_with(&GZIP_MAGIC) {
            RecordOutcome::Undecodable {
                error: "record data is not gzip (a CloudWatch Logs subscription writes one gzip member per record)".into(),
            }
        } else {
            match ingest_payload(store, meter, settings, data, now).await {
                Ok(done) => RecordOutcome::Ingested(done),
                Err(e @ PayloadError::Decode(_)) => RecordOutcome::Undecodable {
                    error: e.to_string(),
                },
                Err(e) => RecordOutcome::Failed {
                    retryable: e.is_retryable(),
                    error: e.to_string(),
                },
            }
        };
        match &outcome {
            RecordOutcome::Ingested(done) => {
                out.report.merge(&done.report);
                if done.report.control_message {
                    out.control_messages += 1;
                }
            }
            RecordOutcome::Undecodable { .. } => {
                // Reported, but later records are still ingested: see the
                // module docs.
                out.undecodable += 1;
                out.reported += 1;
                out.response
                    .add_failure(record.kinesis.sequence_number.clone());
            }
            RecordOutcome::Failed { .. } | RecordOutcome::NotAttempted => {
                failed = true;
                out.reported += 1;
                out.response
                    .add_failure(record.kinesis.sequence_number.clone());
            }
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
