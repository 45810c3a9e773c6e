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

/// Handles one Kinesis batch: every record metered, then one commit for the
/// whole batch. Never fails as a whole: a failure is reported per record in
/// `batchItemFailures` (see [`crate::batch`] for the policy), so Lambda
/// checkpoints everything before the first reported record.
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
                records_in_commit = outcome.in_commit,
                retryable,
                error = %error,
                "the batch's commit failed: this Kinesis record (the first in the commit) and \
                 every other one in it are reported for redelivery (groups that did commit are \
                 skipped then by their markers)"
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
        records_in_commit = outcome.in_commit,
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
    use meter_store::plan::PlannedTx;
    use meter_store::{MemoryUsageStore, StoreError, TxCommitted};

    /// Fails every transaction that counts a record of `poison`
    /// (request ids) while `armed`, with a retryable or permanent error.
    struct FailOn {
        inner: MemoryUsageStore,
        poison: HashSet<String>,
        armed: AtomicBool,
        retryable: bool,
    }

    impl UsageStore for FailOn {
        async fn transact(&self, tx: &PlannedTx) -> Result<TxCommitted, StoreError> {
            let hit = tx
                .record_ids()
                .any(|id| self.poison.contains(id.trim_start_matches("r:")));
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

    /// One batch through [`process_batch`] with the state's store, meter
    /// and settings, now.
    async fn run<S: UsageStore>(s: &State<S>, event: &KinesisEvent) -> BatchOutcome {
        process_batch(
            &s.store,
            &s.meter,
            &s.settings,
            event,
            OffsetDateTime::now_utc(),
        )
        .await
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
        let outcome = run(&s, &event).await;
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
            let again = run(&s, &retry).await;
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
        let again = run(&s, &event).await;
        assert_eq!(again.report.counted, 0);
        assert_eq!(again.report.duplicates, good_records());
        assert_eq!(s.store.marker_count(), good_records());
    }

    /// The fixture's decodable data messages: all but the control message
    /// (1) and the corrupt record.
    const IN_COMMIT: [usize; 4] = [0, 3, 4, 5];

    /// The sequence numbers Lambda gets back when the fixture's commit
    /// fails: every record of the commit and the corrupt one, in order.
    fn all_but_the_control_message(event: &KinesisEvent) -> Vec<Option<String>> {
        let mut want: Vec<usize> = IN_COMMIT.to_vec();
        want.push(CORRUPT);
        want.sort();
        want.iter()
            .map(|&i| Some(event.records[i].kinesis.sequence_number.clone()))
            .collect()
    }

    #[tokio::test]
    async fn a_store_outage_reports_every_record_of_the_commit_and_the_redelivery_counts_each_once()
    {
        let (_, poison) = scenario("day-boundary");
        let s = state(FailOn {
            inner: MemoryUsageStore::new(),
            poison,
            armed: AtomicBool::new(true),
            retryable: true,
        });
        let event = fixture();
        let outcome = run(&s, &event).await;
        // The whole batch is one commit: every record in it goes back with
        // the corrupt one; Lambda resumes at record 0.
        assert_eq!(
            failures(&outcome.response),
            all_but_the_control_message(&event)
        );
        assert_eq!(outcome.in_commit, IN_COMMIT.len());
        assert!(matches!(
            outcome.records[0].outcome,
            RecordOutcome::Failed {
                retryable: true,
                ..
            }
        ));
        for i in &IN_COMMIT[1..] {
            assert!(matches!(
                outcome.records[*i].outcome,
                RecordOutcome::NotAttempted
            ));
        }
        assert_eq!(outcome.report.counted, 0);
        // Groups before the failing one may have committed, not all of them.
        assert!(s.store.inner.marker_count() < good_records());

        // Redelivery from the checkpoint once the store is back: all counted
        // once; only the corrupt record is reported again.
        s.store.armed.store(false, Ordering::SeqCst);
        let before = s.store.inner.marker_count();
        let again = run(&s, &event).await;
        assert_eq!(
            failures(&again.response),
            sequence_numbers(&event, CORRUPT)[..1]
        );
        assert_eq!(
            (again.report.counted, again.report.duplicates),
            (good_records() - before, before)
        );
        let resp = handle(&s, &event, "3").await.unwrap();
        assert_eq!(failures(&resp), sequence_numbers(&event, CORRUPT)[..1]);
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
        let outcome = run(&s, &event).await;
        assert_eq!(
            failures(&outcome.response),
            all_but_the_control_message(&event)
        );
        // The error is on the first record of the commit.
        assert!(matches!(
            outcome.records[0].outcome,
            RecordOutcome::Failed {
                retryable: false,
                ..
            }
        ));
        assert!(matches!(
            outcome.records[1].outcome,
            RecordOutcome::Ingested(ref done) if done.report.control_message
        ));
    }

    #[tokio::test]
    async fn data_that_is_not_gzip_is_undecodable_and_reported() {
        let s = state(MemoryUsageStore::new());
        let mut event = fixture();
        event.records.truncate(1);
        event.records[0].kinesis.data.0 = br#"{"messageType":"DATA_MESSAGE"}"#.to_vec();
        let outcome = run(&s, &event).await;
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

    const MODELS: [&str; 2] = ["amazon.nova-micro-v1:0", "amazon.nova-lite-v1:0"];

    /// One invocation log record (metadata only) on 2026-11-01.
    fn invocation(request_id: &str, user: &str, model: &str, input: usize) -> String {
        serde_json::json!({
            "schemaType": "ModelInvocationLog", "timestamp": "2026-11-01T10:00:00Z",
            "requestId": request_id, "modelId": model, "region": "us-east-1",
            "input": {"inputTokenCount": input}, "output": {"outputTokenCount": 1},
            "requestMetadata": {"user": user},
        })
        .to_string()
    }

    /// Log event `n` of a generated stream: request `req-n`, ten users, each
    /// on both models, `n + 1` input tokens.
    fn log_event(n: usize) -> (String, String) {
        let user = format!("user{}", n % 10);
        let model = MODELS[(n / 10) % 2];
        (
            format!("{n:056}"),
            invocation(&format!("req-{n}"), &user, model, n + 1),
        )
    }

    /// A `DATA_MESSAGE` of (log event id, message), gzip-compressed as the
    /// subscription writes it to the stream.
    fn data_message(events: &[(String, String)]) -> Vec<u8> {
        use std::io::Write;
        let events: Vec<serde_json::Value> = events
            .iter()
            .map(|(id, m)| serde_json::json!({"id": id, "timestamp": 1_793_527_200_000u64, "message": m}))
            .collect();
        let payload = serde_json::json!({
            "messageType": "DATA_MESSAGE", "owner": "111111111111",
            "logGroup": "/aws/bedrock/modelinvocations", "logStream": "aws/bedrock/modelinvocations",
            "subscriptionFilters": ["bedrock-meter"], "logEvents": events,
        });
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(payload.to_string().as_bytes()).unwrap();
        gz.finish().unwrap()
    }

    /// A Kinesis batch of `datas` in order, records shaped like the fixture's.
    fn event_of(datas: Vec<Vec<u8>>) -> KinesisEvent {
        let template = fixture().records[0].clone();
        let mut event = KinesisEvent::default();
        event.records = datas
            .into_iter()
            .enumerate()
            .map(|(i, data)| {
                let mut r = template.clone();
                let seq = format!("4963{i:052}");
                r.event_id = Some(format!("shardId-000000000000:{seq}"));
                r.kinesis.sequence_number = seq;
                r.kinesis.data.0 = data;
                r
            })
            .collect();
        event
    }

    /// `records` Kinesis records of `per_record` log events each: events
    /// `0..records * per_record` of the generated stream, in order.
    fn generated(records: usize, per_record: usize) -> KinesisEvent {
        event_of(
            (0..records)
                .map(|k| {
                    let events: Vec<_> = (k * per_record..(k + 1) * per_record)
                        .map(log_event)
                        .collect();
                    data_message(&events)
                })
                .collect(),
        )
    }

    /// (invocations, input tokens) summed over the `user_model_day` rows.
    fn user_model_day_totals(store: &MemoryUsageStore) -> (u128, u128) {
        store
            .aggregates()
            .values()
            .filter(|a| a.kind == "user_model_day")
            .fold((0, 0), |(n, t), a| {
                (n + a.counters.invocations, t + a.counters.input_tokens)
            })
    }

    /// Input tokens of log events `0..n` of the generated stream.
    fn input_tokens_of_first(n: usize) -> u128 {
        (1..=n as u128).sum()
    }

    #[tokio::test]
    async fn a_log_event_carried_by_two_kinesis_records_of_a_batch_is_counted_once() {
        // Record 0 carries events 0..5; record 1 events 3..8 (3 and 4 again)
        // and a malformed one; record 2 event 4 once more.
        let r0: Vec<_> = (0..5).map(log_event).collect();
        let mut r1: Vec<_> = (3..8).map(log_event).collect();
        r1.push((format!("{:056}", 999), "not json".into()));
        let r2 = vec![log_event(4)];
        let event = event_of(vec![
            data_message(&r0),
            data_message(&r1),
            data_message(&r2),
        ]);
        let s = state(MemoryUsageStore::new());
        let outcome = run(&s, &event).await;
        assert!(outcome.response.batch_item_failures.is_empty());
        let r = &outcome.report;
        assert_eq!(
            (r.records, r.counted, r.duplicates, r.skipped),
            (12, 8, 3, 1)
        );
        assert_eq!(
            user_model_day_totals(&s.store),
            (8, input_tokens_of_first(8))
        );
        assert_eq!(s.store.marker_count(), 8);
        // The malformed event stays with its own record (logged with its
        // sequence number).
        let skipped: Vec<usize> = outcome
            .records
            .iter()
            .map(|r| match &r.outcome {
                RecordOutcome::Ingested(done) => done.skipped.len(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(skipped, [0, 1, 0]);
        // The metrics line adds up: every log event counted, a duplicate or
        // skipped.
        let line: serde_json::Value =
            serde_json::from_str(&emf_line(&outcome, "kinesis-ingest", 0)).unwrap();
        assert_eq!(line["KinesisRecords"], 3.0);
        assert_eq!(line["Records"], 12.0);
        assert_eq!(
            line["Counted"].as_f64().unwrap()
                + line["Duplicates"].as_f64().unwrap()
                + line["Skipped"].as_f64().unwrap(),
            12.0
        );
        assert_eq!(line["FailedRecords"], 0.0);
    }

    #[tokio::test]
    async fn a_whole_batch_commits_in_fewer_transactions_than_one_per_kinesis_record_with_the_same_totals(
    ) {
        const RECORDS: usize = 60;
        const PER_RECORD: usize = 20;
        let event = generated(RECORDS, PER_RECORD);
        let s = state(MemoryUsageStore::new());
        let now = OffsetDateTime::now_utc();
        let outcome = process_batch(&s.store, &s.meter, &s.settings, &event, now).await;
        assert!(outcome.response.batch_item_failures.is_empty());
        assert_eq!(outcome.report.counted, RECORDS * PER_RECORD);
        assert_eq!(outcome.report.transactions, s.store.transactions());

        // The same records committed one Kinesis record at a time (as before).
        let one_by_one = MemoryUsageStore::new();
        let mut items_one_by_one = 0;
        for r in &event.records {
            let done = meter_store::ingest_payload(
                &one_by_one,
                &s.meter,
                &s.settings,
                &r.kinesis.data,
                now,
            )
            .await
            .unwrap();
            items_one_by_one += done.report.items_written;
        }
        assert!(
            s.store.transactions() < RECORDS,
            "{} transactions for {RECORDS} Kinesis records",
            s.store.transactions()
        );
        assert!(
            s.store.transactions() < one_by_one.transactions(),
            "one commit: {}, one per record: {}",
            s.store.transactions(),
            one_by_one.transactions()
        );
        // The write cost: each aggregate once per batch, not once per record.
        assert!(
            outcome.report.items_written * 2 < items_one_by_one,
            "items written: one commit {}, one per record {items_one_by_one}",
            outcome.report.items_written
        );
        // Totals: the sum of every log event, and the same rows as one by one.
        let n = RECORDS * PER_RECORD;
        assert_eq!(
            user_model_day_totals(&s.store),
            (n as u128, input_tokens_of_first(n))
        );
        let rows = |store: &MemoryUsageStore| -> Vec<_> {
            store
                .aggregates()
                .into_iter()
                .map(|(k, a)| (k, a.counters))
                .collect()
        };
        assert_eq!(rows(&s.store), rows(&one_by_one));
        assert_eq!(
            s.store
                .aggregates()
                .values()
                .filter(|a| a.kind == "user_model_day")
                .count(),
            20
        );
    }

    #[tokio::test]
    async fn a_failed_commit_reports_every_decodable_record_and_the_redelivery_counts_nothing_twice(
    ) {
        const RECORDS: usize = 6;
        const PER_RECORD: usize = 20;
        let event = generated(RECORDS, PER_RECORD);
        let s = state(MemoryUsageStore::new());
        let now = OffsetDateTime::now_utc();
        // GIVEN the first half of the batch was counted by an earlier delivery
        let mut first_half = KinesisEvent::default();
        first_half.records = event.records[..RECORDS / 2].to_vec();
        let earlier = process_batch(&s.store, &s.meter, &s.settings, &first_half, now).await;
        assert_eq!(earlier.report.counted, RECORDS / 2 * PER_RECORD);
        // WHEN the store fails every attempt of the whole batch's commit
        for _ in 0..s.settings.max_attempts {
            s.store.push_fault(meter_store::StoreError::Retryable {
                message: "throttled".into(),
                source: None,
            });
        }
        let failed = process_batch(&s.store, &s.meter, &s.settings, &event, now).await;
        // THEN every record is reported, the error once, on the first
        assert_eq!(failures(&failed.response), sequence_numbers(&event, 0));
        assert_eq!(failed.reported, RECORDS);
        assert!(matches!(
            failed.records[0].outcome,
            RecordOutcome::Failed {
                retryable: true,
                ref error
            } if error.contains("throttled")
        ));
        assert!(failed.records[1..]
            .iter()
            .all(|r| matches!(r.outcome, RecordOutcome::NotAttempted)));
        assert_eq!(failed.report.counted, 0);
        let half = RECORDS / 2 * PER_RECORD;
        assert_eq!(
            user_model_day_totals(&s.store),
            (half as u128, input_tokens_of_first(half))
        );
        // WHEN Lambda redelivers the batch, twice
        for attempt in 0..2 {
            let again = process_batch(&s.store, &s.meter, &s.settings, &event, now).await;
            assert!(again.response.batch_item_failures.is_empty());
            let want = if attempt == 0 {
                (RECORDS * PER_RECORD - half, half)
            } else {
                (0, RECORDS * PER_RECORD)
            };
            assert_eq!(
                (again.report.counted, again.report.duplicates),
                want,
                "attempt {attempt}"
            );
        }
        // THEN every log event is counted exactly once
        let n = RECORDS * PER_RECORD;
        assert_eq!(
            user_model_day_totals(&s.store),
            (n as u128, input_tokens_of_first(n))
        );
    }
}
