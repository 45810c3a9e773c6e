//! The handler: ingest one Kinesis batch, log what happened to every record
//! that needs attention plus one summary line, emit metrics, and answer with
//! the sequence numbers Lambda must deliver again.

use std::convert::Infallible;

use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::streams::KinesisEventResponse;
use meter_core::Meter;
use meter_store::{CommitSettings, UsageStore};
use time::OffsetDateTime;

use crate::batch::{process_batch, BatchOutcome, RecordOutcome};
use crate::metrics::emf_line;

/// Everything built once at init.
pub struct State<S> {
    pub store: S,
    pub meter: Meter,
    pub settings: CommitSettings,
}

/// Handles one Kinesis batch. Never fails as a whole: a failure is reported
/// per record in `batchItemFailures` (see [`crate::batch`] for the policy),
/// so Lambda checkpoints everything before the first failed record.
pub async fn handle<S: UsageStore>(
    state: &State<S>,
    event: &KinesisEvent,
    invocation_id: &str,
) -> Result<KinesisEventResponse, Infallible> {
    let now = OffsetDateTime::now_utc();
    let outcome = process_batch(&state.store, &state.meter, &state.settings, event, now).await;
    log_outcome(&outcome, invocation_id);
    let function_name =
        std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "local".into());
    let ts_ms = (now.unix_timestamp_nanos() / 1_000_000) as i64;
    println!("{}", emf_line(&outcome, &function_name, ts_ms));
    for line in meter_store::metrics::unpriced_reason_lines(&outcome.report, &function_name, ts_ms)
    {
        println!("{line}");
    }
    Ok(outcome.response)
}

fn log_outcome(outcome: &BatchOutcome, invocation_id: &str) {
    for r in &outcome.records {
        match &r.outcome {
            RecordOutcome::Ingested(done) => {
                for s in &done.skipped {
                    tracing::warn!(
                        sequence_number = %r.sequence_number,
                        log_event_id = %s.location,
                        reason = s.error.reason_label(),
                        detail = %s.error,
                        "skipped a malformed invocation record"
                    );
                }
            }
            RecordOutcome::Undecodable { error } => tracing::error!(
                sequence_number = %r.sequence_number,
                event_id = %r.event_id,
                partition_key = %r.partition_key,
                bytes = r.bytes,
                error = %error,
                "undecodable Kinesis record: nothing in it was counted; reported in \
                 batchItemFailures (later records of the batch were still ingested), so \
                 after the retries its sequence number reaches the failure queue: run \
                 `bedrock-meter redrive` on that queue once the cause is fixed"
            ),
            RecordOutcome::Failed { retryable, error } => tracing::error!(
                sequence_number = %r.sequence_number,
                event_id = %r.event_id,
                retryable,
                error = %error,
                "Kinesis record not stored; reported with every later record of the batch for \
                 redelivery (already committed records are skipped by their markers)"
            ),
            RecordOutcome::NotAttempted => {}
        }
    }
    let r = &outcome.report;
    tracing::info!(
        invocation_id,
        kinesis_records = outcome.records.len(),
        control_messages = outcome.control_messages,
        undecodable = outcome.undecodable,
        reported_for_redelivery = outcome.reported,
        first_reported_sequence_number = outcome.first_reported().unwrap_or(""),
        records = r.records,
        counted = r.counted,
        duplicates = r.duplicates,
        skipped = r.skipped,
        skipped_by_reason = %serde_json::to_string(&r.skipped_by_reason).unwrap_or_default(),
        unpriced = r.unpriced,
        unpriced_by_reason = %serde_json::to_string(&r.unpriced_by_reason).unwrap_or_default(),
        transactions = r.transactions,
        write_units = r.write_units,
        retries = r.retries,
        "batch ingested"
    );
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use meter_store::plan::{PlannedTx, TxItem};
    use meter_store::{MemoryUsageStore, StoreError, TxCommitted};

    /// Fails every transaction that holds the marker of one of `poison`
    /// (request ids) while `armed`, with a retryable or permanent error.
    struct FailOn {
        inner: MemoryUsageStore,
        poison: HashSet<String>,
        armed: AtomicBool,
        retryable: bool,
    }

    impl UsageStore for FailOn {
        async fn transact(&self, tx: &PlannedTx) -> Result<TxCommitted, StoreError> {
            let hit = tx.items.iter().any(|i| {
                matches!(i, TxItem::PutMarker { record_id, .. }
                    if self.poison.contains(record_id.trim_start_matches("r:")))
            });
            if hit && self.armed.load(Ordering::SeqCst) {
                return Err(if self.retryable {
                    StoreError::Retryable {
                        message: "connection reset".into(),
                        source: None,
                    }
                } else {
                    StoreError::Permanent {
                        message: "ValidationException".into(),
                        source: None,
                    }
                });
            }
            self.inner.transact(tx).await
        }
    }

    fn settings() -> CommitSettings {
        CommitSettings {
            max_attempts: 2,
            base_backoff: std::time::Duration::from_millis(1),
            ..Default::default()
        }
    }

    fn state<S>(store: S) -> State<S> {
        State {
            store,
            meter: Meter::with_defaults(),
            settings: settings(),
        }
    }

    fn events_dir() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events")
    }

    fn fixture() -> KinesisEvent {
        let path = events_dir().join("kinesis-event.json");
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_slice(&bytes).expect("a KinesisEvent")
    }

    /// (record count, request ids) of a scenario in events/expected-totals.json.
    fn scenario(name: &str) -> (usize, HashSet<String>) {
        let v: serde_json::Value = serde_json::from_slice(
            &std::fs::read(events_dir().join("expected-totals.json")).unwrap(),
        )
        .unwrap();
        let s = &v["scenarios"][name];
        let ids = s["request_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_str().unwrap().to_string())
            .collect();
        (s["record_count"].as_u64().unwrap() as usize, ids)
    }

    fn sequence_numbers(event: &KinesisEvent, from: usize) -> Vec<Option<String>> {
        event.records[from..]
            .iter()
            .map(|r| Some(r.kinesis.sequence_number.clone()))
            .collect()
    }

    fn failures(resp: &KinesisEventResponse) -> Vec<Option<String>> {
        resp.batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect()
    }

    fn good_records() -> usize {
        [
            "several-users-models",
            "day-boundary",
            "cache-tokens",
            "failed-call",
        ]
        .iter()
        .map(|s| scenario(s).0)
        .sum()
    }

    /// The fixture's corrupt record (truncated gzip).
    const CORRUPT: usize = 2;

    #[tokio::test]
    async fn the_fixture_counts_every_decodable_record_and_reports_only_the_corrupt_one() {
        let s = state(MemoryUsageStore::new());
        let event = fixture();
        let outcome = process_batch(
            &s.store,
            &s.meter,
            &s.settings,
            &event,
            OffsetDateTime::now_utc(),
        )
        .await;
        assert_eq!(outcome.records.len(), 6);
        assert_eq!((outcome.undecodable, outcome.reported), (1, 1));
        assert!(matches!(
            outcome.records[CORRUPT].outcome,
            RecordOutcome::Undecodable { ref error } if error.contains("gzip")
        ));
        assert_eq!(
            outcome.first_reported(),
            Some(event.records[CORRUPT].kinesis.sequence_number.as_str())
        );
        assert_eq!(outcome.control_messages, 1);
        // Records after the corrupt one were ingested all the same.
        assert_eq!(outcome.report.counted, good_records());
        assert_eq!(s.store.marker_count(), good_records());
        let resp = handle(&s, &event, "1").await.unwrap();
        assert_eq!(
            failures(&resp),
            vec![Some(event.records[CORRUPT].kinesis.sequence_number.clone())]
        );
    }

    #[tokio::test]
    async fn records_after_an_undecodable_one_are_counted_once_across_lambdas_retries() {
        let s = state(MemoryUsageStore::new());
        let event = fixture();
        let first = handle(&s, &event, "1").await.unwrap();
        // Lambda resumes at the lowest reported sequence number: the corrupt
        // record and everything after it come again, several times.
        assert_eq!(failures(&first).len(), 1);
        let mut retry = KinesisEvent::default();
        retry.records = event.records[CORRUPT..].to_vec();
        // The decodable records after it (record 1, several-users-models,
        // is before it and not redelivered).
        let after: usize = ["day-boundary", "cache-tokens", "failed-call"]
            .iter()
            .map(|n| scenario(n).0)
            .sum();
        for attempt in 0..3 {
            let again = process_batch(
                &s.store,
                &s.meter,
                &s.settings,
                &retry,
                OffsetDateTime::now_utc(),
            )
            .await;
            assert_eq!(failures(&again.response), sequence_numbers(&retry, 0)[..1]);
            assert_eq!(again.report.counted, 0, "retry {attempt}");
            assert_eq!(again.report.duplicates, after, "retry {attempt}");
        }
        assert_eq!(s.store.marker_count(), good_records());
    }

    #[tokio::test]
    async fn a_redelivered_batch_counts_nothing_again() {
        let s = state(MemoryUsageStore::new());
        let event = fixture();
        handle(&s, &event, "1").await.unwrap();
        let again = process_batch(
            &s.store,
            &s.meter,
            &s.settings,
            &event,
            OffsetDateTime::now_utc(),
        )
        .await;
        assert_eq!(again.report.counted, 0);
        assert_eq!(again.report.duplicates, good_records());
        assert_eq!(s.store.marker_count(), good_records());
    }

    #[tokio::test]
    async fn a_store_outage_reports_the_failed_record_and_every_later_one() {
        let (_, poison) = scenario("day-boundary");
        let s = state(FailOn {
            inner: MemoryUsageStore::new(),
            poison,
            armed: AtomicBool::new(true),
            retryable: true,
        });
        let event = fixture();
        let resp = handle(&s, &event, "1").await.unwrap();
        // The corrupt record 2 is reported; day-boundary is record 3: 3, 4
        // and 5 go back too; Lambda resumes at 2.
        assert_eq!(failures(&resp), sequence_numbers(&event, CORRUPT));
        let (before, _) = scenario("several-users-models");
        assert_eq!(s.store.inner.marker_count(), before);

        // Redelivery from the checkpoint once the store is back: all counted
        // once; only the corrupt record is reported again.
        s.store.armed.store(false, Ordering::SeqCst);
        let mut retry = KinesisEvent::default();
        retry.records = event.records[CORRUPT..].to_vec();
        let resp = handle(&s, &retry, "2").await.unwrap();
        assert_eq!(failures(&resp), sequence_numbers(&retry, 0)[..1]);
        assert_eq!(s.store.inner.marker_count(), good_records());
    }

    #[tokio::test]
    async fn a_permanent_store_error_is_reported_not_skipped() {
        let (_, poison) = scenario("failed-call");
        let s = state(FailOn {
            inner: MemoryUsageStore::new(),
            poison,
            armed: AtomicBool::new(true),
            retryable: false,
        });
        let event = fixture();
        let outcome = process_batch(
            &s.store,
            &s.meter,
            &s.settings,
            &event,
            OffsetDateTime::now_utc(),
        )
        .await;
        let mut want = sequence_numbers(&event, CORRUPT)[..1].to_vec();
        want.extend(sequence_numbers(&event, 5));
        assert_eq!(failures(&outcome.response), want);
        assert!(matches!(
            outcome.records[5].outcome,
            RecordOutcome::Failed {
                retryable: false,
                ..
            }
        ));
    }

    #[tokio::test]
    async fn data_that_is_not_gzip_is_undecodable_and_reported() {
        let s = state(MemoryUsageStore::new());
        let mut event = fixture();
        event.records.truncate(1);
        event.records[0].kinesis.data.0 = br#"{"messageType":"DATA_MESSAGE"}"#.to_vec();
        let outcome = process_batch(
            &s.store,
            &s.meter,
            &s.settings,
            &event,
            OffsetDateTime::now_utc(),
        )
        .await;
        assert_eq!((outcome.undecodable, outcome.reported), (1, 1));
        assert_eq!(failures(&outcome.response), sequence_numbers(&event, 0));
        assert_eq!(s.store.transactions(), 0);
    }

    #[tokio::test]
    async fn an_empty_batch_succeeds_with_no_failures() {
        let s = state(MemoryUsageStore::new());
        let resp = handle(&s, &KinesisEvent::default(), "1").await.unwrap();
        assert!(resp.batch_item_failures.is_empty());
    }
}
