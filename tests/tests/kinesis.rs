//! The Kinesis path (`functions/kinesis-ingest`): batches of gzip
//! `DATA_MESSAGE`s, one of them corrupt, through the function's batch logic
//! (every record metered, one commit for the batch) into DynamoDB Local, with
//! a store that fails on demand to show the partial batch response. The
//! corrupt record is reported (so that it reaches the failure queue after
//! Lambda's retries), and the other records, committed in the same
//! invocation, are counted once across every redelivery.
//!
//! The batch logic is compiled in from the function's source: this crate does
//! not depend on `kinesis-ingest` (its `batch` module needs only crates this
//! one already has).

#[path = "../../functions/kinesis-ingest/src/batch.rs"]
#[allow(dead_code)]
mod batch;

use std::collections::HashSet;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use aws_lambda_events::event::kinesis::KinesisEvent;
use base64::Engine as _;
use batch::{process_batch, RecordOutcome};
use integration_tests::*;
use meter_core::Meter;
use meter_store::plan::PlannedTx;
use meter_store::{CommitSettings, StoreError, TxCommitted, UsageStore};
use time::OffsetDateTime;

fn settings() -> CommitSettings {
    CommitSettings {
        max_attempts: 3,
        base_backoff: std::time::Duration::from_millis(2),
        ..Default::default()
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    gz.write_all(bytes).expect("gzip");
    gz.finish().expect("gzip")
}

/// A CloudWatch Logs `DATA_MESSAGE` carrying `recs`, as the subscription
/// writes it to the stream (compact JSON, then gzip).
fn data_message(recs: &[Rec], first_event_id: u64) -> Vec<u8> {
    let events: Vec<serde_json::Value> = recs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            serde_json::json!({"id": format!("{:056}", first_event_id + i as u64),
                "timestamp": 1_790_000_000_000u64, "message": r.to_json()})
        })
        .collect();
    let payload = serde_json::json!({
        "messageType": "DATA_MESSAGE", "owner": "111111111111",
        "logGroup": "/aws/bedrock/modelinvocations", "logStream": "aws/bedrock/modelinvocations",
        "subscriptionFilters": ["bedrock-meter"], "logEvents": events,
    });
    gzip(payload.to_string().as_bytes())
}

/// A Kinesis Lambda event holding `datas` in order (one shard).
fn kinesis_event(datas: &[Vec<u8>]) -> KinesisEvent {
    let records: Vec<serde_json::Value> = datas
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let seq = format!("4963{i:052}");
            serde_json::json!({
                "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": format!("pk-{i}"),
                    "sequenceNumber": seq,
                    "data": base64::engine::general_purpose::STANDARD.encode(d),
                    "approximateArrivalTimestamp": 1_790_000_000.5 + i as f64},
                "eventSource": "aws:kinesis", "eventVersion": "1.0",
                "eventID": format!("shardId-000000000000:{seq}"),
                "eventName": "aws:kinesis:record", "awsRegion": "us-east-1",
                "eventSourceARN": "arn:aws:kinesis:us-east-1:111111111111:stream/bedrock-meter",
            })
        })
        .collect();
    serde_json::from_str(&serde_json::json!({ "Records": records }).to_string())
        .expect("a KinesisEvent")
}

/// Fails every transaction counting a record whose request id is in `poison`
/// while `armed` (retryable: as when DynamoDB throttles past the retries).
struct FailOn<S> {
    inner: S,
    poison: HashSet<String>,
    armed: AtomicBool,
}

impl<S: UsageStore> UsageStore for FailOn<S> {
    async fn transact(&self, tx: &PlannedTx) -> Result<TxCommitted, StoreError> {
        let hit = tx
            .record_ids()
            .any(|id| self.poison.contains(id.trim_start_matches("r:")));
        if hit && self.armed.load(Ordering::SeqCst) {
            return Err(StoreError::Retryable {
                message: "simulated throttling".into(),
                source: None,
            });
        }
        self.inner.transact(tx).await
    }
}

fn item_failures(resp: &aws_lambda_events::event::streams::KinesisEventResponse) -> Vec<String> {
    resp.batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone().unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn a_kinesis_batch_with_a_corrupt_record_and_a_store_outage_reports_both_then_counts_everything_once(
) {
    let client = local_client().await;
    let store = fresh_store(&client, "kinesis-partial").await;
    let recs = corpus(400, 25, 3, 81);
    let chunks: Vec<&[Rec]> = recs.chunks(80).collect(); // 5 data messages
    let mut datas: Vec<Vec<u8>> = chunks
        .iter()
        .enumerate()
        .map(|(i, c)| data_message(c, 81_000 + 1000 * i as u64))
        .collect();
    // Record 1 is corrupt (truncated gzip): its 80 records are never counted
    // (it is reported, so that it reaches the failure queue after the retries).
    let corrupt = datas[1].len() / 2;
    datas[1].truncate(corrupt);
    let event = kinesis_event(&datas);
    let counted: Vec<Rec> = chunks
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .flat_map(|(_, c)| c.iter().cloned())
        .collect();

    // GIVEN DynamoDB fails for a record of Kinesis record 3
    let failing = FailOn {
        inner: store.clone(),
        poison: HashSet::from([chunks[3][40].request_id.clone()]),
        armed: AtomicBool::new(true),
    };
    let meter = Meter::with_defaults();
    let now = OffsetDateTime::now_utc();
    // WHEN the batch is handled
    let first = process_batch(&failing, &meter, &settings(), &event, now).await;
    // THEN the batch's one commit failed: the corrupt record and every
    // record of the commit (0, 2, 3, 4) are reported, the error on the first
    assert!(matches!(
        first.records[1].outcome,
        RecordOutcome::Undecodable { .. }
    ));
    assert_eq!(first.undecodable, 1);
    let seqs: Vec<String> = event
        .records
        .iter()
        .map(|r| r.kinesis.sequence_number.clone())
        .collect();
    assert_eq!(item_failures(&first.response), seqs);
    assert_eq!(first.first_reported(), Some(seqs[0].as_str()));
    assert!(matches!(
        first.records[0].outcome,
        RecordOutcome::Failed {
            retryable: true,
            ..
        }
    ));
    for i in 2..5 {
        assert!(matches!(
            first.records[i].outcome,
            RecordOutcome::NotAttempted
        ));
    }
    assert_eq!(first.report.counted, 0);
    let after_first = marker_count(&store).await;
    assert!(
        (1..counted.len()).contains(&after_first),
        "the groups of the commit before the failing one: {after_first}"
    );

    // WHEN Lambda redelivers from the lowest reported sequence number (the
    // whole batch) after the store recovered
    failing.armed.store(false, Ordering::SeqCst);
    let second = process_batch(&failing, &meter, &settings(), &event, now).await;
    // THEN only the corrupt record is reported again; the groups committed
    // before the outage are found already counted
    assert_eq!(item_failures(&second.response), vec![seqs[1].clone()]);
    assert_eq!(second.report.duplicates, after_first);
    assert_eq!(second.report.counted, counted.len() - after_first);

    // AND the further retries from the corrupt record on, until
    // MaximumRetryAttempts, count nothing
    let mut retry = KinesisEvent::default();
    retry.records = event.records[1..].to_vec();
    for attempt in 0..3 {
        let again = process_batch(&failing, &meter, &settings(), &retry, now).await;
        assert_eq!(item_failures(&again.response), vec![seqs[1].clone()]);
        assert_eq!(again.report.counted, 0, "retry {attempt}");
        assert_eq!(again.report.duplicates, 240, "retry {attempt}");
    }

    // AND the whole batch arrives once more (a duplicate delivery)
    let third = process_batch(&store, &meter, &settings(), &event, now).await;
    assert_eq!(third.report.counted, 0);
    assert_eq!(third.report.duplicates, counted.len());

    // THEN every decodable record is counted exactly once
    assert_eq!(marker_count(&store).await, counted.len());
    assert_totals_eq(&read_aggregates(&store).await, &expected_totals(&counted));
}

#[tokio::test]
async fn the_kinesis_fixture_lands_in_dynamodb_local_with_the_totals_events_expect() {
    let client = local_client().await;
    let store = fresh_store(&client, "kinesis-fixture").await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events");
    let event: KinesisEvent =
        serde_json::from_slice(&std::fs::read(dir.join("kinesis-event.json")).unwrap())
            .expect("events/kinesis-event.json is a KinesisEvent");
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("expected-totals.json")).unwrap()).unwrap();
    let outcome = process_batch(
        &store,
        &Meter::with_defaults(),
        &settings(),
        &event,
        OffsetDateTime::now_utc(),
    )
    .await;
    // The fixture's corrupt record (index 2) is the only one reported.
    assert_eq!(
        item_failures(&outcome.response),
        vec![event.records[2].kinesis.sequence_number.clone()]
    );
    assert_eq!((outcome.undecodable, outcome.control_messages), (1, 1));
    let scenarios = [
        "several-users-models",
        "day-boundary",
        "cache-tokens",
        "failed-call",
    ];
    let want: u64 = scenarios
        .iter()
        .map(|s| expected["scenarios"][s]["record_count"].as_u64().unwrap())
        .sum();
    assert_eq!(outcome.report.counted as u64, want);
    let table = read_aggregates(&store).await;
    let mut rows = 0;
    for s in scenarios {
        for t in expected["scenarios"][s]["totals"].as_array().unwrap() {
            rows += 1;
            let key = (
                "user_model_day".to_string(),
                t["user"].as_str().unwrap().to_string(),
                t["model"].as_str().unwrap().to_string(),
                t["day"].as_str().unwrap().to_string(),
            );
            let got = table.get(&key).unwrap_or_else(|| panic!("missing {key:?}"));
            for (field, value) in [
                ("invocations", got.invocations),
                ("errors", got.errors),
                ("input_tokens", got.input_tokens),
                ("output_tokens", got.output_tokens),
                ("cache_read_input_tokens", got.cache_read_input_tokens),
                ("cache_write_input_tokens", got.cache_write_input_tokens),
            ] {
                assert_eq!(
                    value,
                    u128::from(t[field].as_u64().unwrap()),
                    "{key:?} {field}"
                );
            }
        }
    }
    let user_model_days = table.keys().filter(|k| k.0 == "user_model_day").count();
    assert_eq!(
        user_model_days, rows,
        "only the fixture's rows, nothing from the corrupt record"
    );
}
