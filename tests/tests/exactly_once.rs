//! Exactly-once totals on the official DynamoDB Local: every scenario ends
//! with the table's aggregates equal to an independent computation from the
//! input records.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use integration_tests::*;
use meter_core::Meter;
use meter_store::plan::PlannedTx;
use meter_store::{ingest_payload, CommitSettings, StoreError, TxCommitted, UsageStore};
use time::OffsetDateTime;

fn settings() -> CommitSettings {
    CommitSettings::default()
}

async fn ingest<S: UsageStore>(store: &S, payload: &[u8]) -> meter_store::IngestReport {
    ingest_payload(
        store,
        &Meter::with_defaults(),
        &settings(),
        payload,
        OffsetDateTime::now_utc(),
    )
    .await
    .expect("ingest")
    .report
}

#[tokio::test]
async fn a_redelivered_batch_is_counted_once() {
    let client = local_client().await;
    let store = fresh_store(&client, "redelivered").await;
    let recs = corpus(120, 10, 3, 1);
    let event = envelope(&recs, 1);
    let first = ingest(&store, &event).await;
    let second = ingest(&store, &event).await;
    assert_eq!((first.counted, first.duplicates), (120, 0));
    assert_eq!((second.counted, second.duplicates), (0, 120));
    assert_eq!(second.transactions, 0);
    assert_totals_eq(&read_aggregates(&store).await, &expected_totals(&recs));
    assert_eq!(marker_count(&store).await, 120);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_concurrent_deliveries_of_one_batch_count_once() {
    let client = local_client().await;
    let store = Arc::new(fresh_store(&client, "concurrent").await);
    let recs = corpus(150, 12, 2, 2);
    let event = Arc::new(envelope(&recs, 1_000));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (store, event) = (store.clone(), event.clone());
        tasks.push(tokio::spawn(async move { ingest(&*store, &event).await }));
    }
    let mut counted = 0;
    let mut duplicates = 0;
    for t in tasks {
        let r = t.await.expect("task");
        counted += r.counted;
        duplicates += r.duplicates;
    }
    assert_eq!(counted, 150, "each record counted by exactly one delivery");
    assert_eq!(duplicates, 150 * 7);
    assert_totals_eq(&read_aggregates(&store).await, &expected_totals(&recs));
}

#[tokio::test]
async fn a_batch_with_more_than_100_distinct_keys_splits_and_counts_exactly() {
    let client = local_client().await;
    let store = fresh_store(&client, "many-keys").await;
    let recs = corpus(400, 80, 4, 3);
    let report = ingest(&store, &envelope(&recs, 5_000)).await;
    let expected = expected_totals(&recs);
    assert!(expected.len() > 100, "{} keys", expected.len());
    assert!(report.transactions > 1);
    assert_eq!(report.counted, 400);
    assert_totals_eq(&read_aggregates(&store).await, &expected);
}

/// Commits the first `allowed` transactions, then fails as a crashed
/// function would (nothing more is written).
struct CrashAfter<S> {
    inner: S,
    allowed: AtomicUsize,
}

impl<S: UsageStore> UsageStore for CrashAfter<S> {
    async fn transact(&self, tx: &PlannedTx) -> Result<TxCommitted, StoreError> {
        let left = self.allowed.load(Ordering::SeqCst);
        if left == 0 {
            return Err(StoreError::Permanent {
                message: "simulated crash".into(),
                source: None,
            });
        }
        self.allowed.store(left - 1, Ordering::SeqCst);
        self.inner.transact(tx).await
    }
}

#[tokio::test]
async fn a_crash_after_the_first_transaction_then_redelivery_counts_everything_once() {
    let client = local_client().await;
    let store = fresh_store(&client, "crash").await;
    let recs = corpus(300, 60, 2, 4);
    let event = envelope(&recs, 9_000);
    let crashing = CrashAfter {
        inner: store.clone(),
        allowed: AtomicUsize::new(1),
    };
    let err = ingest_payload(
        &crashing,
        &Meter::with_defaults(),
        &settings(),
        &event,
        OffsetDateTime::now_utc(),
    )
    .await
    .expect_err("the crash fails the batch");
    assert!(err.to_string().contains("simulated crash"));
    let partial = marker_count(&store).await;
    assert!(
        partial > 0 && partial < 300,
        "first transaction committed {partial} records"
    );
    let retry = ingest(&store, &event).await;
    assert_eq!(retry.duplicates, partial);
    assert_eq!(retry.counted, 300 - partial);
    assert_totals_eq(&read_aggregates(&store).await, &expected_totals(&recs));
}

#[tokio::test]
async fn records_already_counted_are_not_counted_again_when_replayed_in_other_batches() {
    let client = local_client().await;
    let store = fresh_store(&client, "rebatched").await;
    let recs = corpus(250, 20, 3, 5);
    // Live path: CloudWatch Logs events of 37 records.
    for (i, chunk) in recs[..200].chunks(37).enumerate() {
        ingest(&store, &envelope(chunk, 20_000 + 100 * i as u64)).await;
    }
    // Replay: newline-delimited files of 45, overlapping the live ones and
    // bringing 50 new records.
    let mut counted = 0;
    let mut duplicates = 0;
    for chunk in recs.chunks(45) {
        let r = ingest(&store, &ndjson(chunk)).await;
        counted += r.counted;
        duplicates += r.duplicates;
    }
    assert_eq!((counted, duplicates), (50, 200));
    assert_totals_eq(&read_aggregates(&store).await, &expected_totals(&recs));
}

#[tokio::test]
async fn user_ids_with_delimiters_percent_unicode_and_3_kb_of_text_keep_their_own_totals() {
    let client = local_client().await;
    let store = fresh_store(&client, "odd-users").await;
    let odd = [
        "a#b".to_string(),
        "a%23b".to_string(),
        "50%".to_string(),
        "U#fake#D#2026-11-01".to_string(),
        "ünïcødé 用户 🚀".to_string(),
        "~tilde".to_string(),
        "x".repeat(3 * 1024),
        format!("{}y", "x".repeat(3 * 1024)),
    ];
    let mut recs = corpus(80, 1, 2, 6);
    for (i, r) in recs.iter_mut().enumerate() {
        r.user = odd[i % odd.len()].clone();
    }
    let report = ingest(&store, &envelope(&recs, 30_000)).await;
    assert_eq!(report.counted, 80);
    let actual = read_aggregates(&store).await;
    assert_totals_eq(&actual, &expected_totals(&recs));
    let users: std::collections::BTreeSet<_> = actual
        .keys()
        .filter(|k| k.0 == "user_month")
        .map(|k| k.1.clone())
        .collect();
    assert_eq!(
        users.len(),
        odd.len(),
        "every odd user id has its own items"
    );
    // The report queries find each user by raw id.
    for user in &odd {
        let rows = store
            .user_days(
                user,
                meter_core::Day::parse("2026-10-30").unwrap(),
                meter_core::Day::parse("2026-10-31").unwrap(),
            )
            .await
            .expect("query");
        assert!(rows
            .iter()
            .all(|r| r.user.as_deref() == Some(user.as_str())));
        assert!(
            !rows.is_empty(),
            "no rows for {}",
            &user[..user.len().min(20)]
        );
    }
}

#[tokio::test]
async fn report_queries_answer_each_access_pattern_from_the_contract() {
    let client = local_client().await;
    let store = fresh_store(&client, "queries").await;
    let recs = corpus(200, 8, 3, 7);
    ingest(&store, &ndjson(&recs)).await;
    let expected = expected_totals(&recs);
    let day = meter_core::Day::parse("2026-10-31").unwrap();
    // every user's total for one day
    let users = store.users_on_day(day).await.unwrap();
    let want: Vec<_> = expected
        .iter()
        .filter(|(k, _)| k.0 == "user_day" && k.3 == "2026-10-31")
        .collect();
    assert_eq!(users.len(), want.len());
    for row in &users {
        let key = (
            "user_day".to_string(),
            row.user.clone().unwrap(),
            String::new(),
            "2026-10-31".to_string(),
        );
        assert_eq!(normalise_decimal(&row.cost_usd), expected[&key].cost_usd);
        assert_eq!(row.invocations, expected[&key].invocations);
    }
    // organisation total for a day = sum of model_day items
    let models = store.models_on_day(day).await.unwrap();
    let org: u128 = models.iter().map(|r| r.invocations).sum();
    let want_org = recs
        .iter()
        .filter(|r| r.timestamp.starts_with("2026-10-31"))
        .count() as u128;
    assert_eq!(org, want_org);
    // a user's month to date
    let m = store
        .user_month("user-1", meter_core::Month::parse("2026-11").unwrap())
        .await
        .unwrap();
    let key = (
        "user_month".to_string(),
        "user-1".to_string(),
        String::new(),
        "2026-11".to_string(),
    );
    assert_eq!(m.len(), usize::from(expected.contains_key(&key)));
    if let Some(row) = m.first() {
        assert_eq!(row.invocations, expected[&key].invocations);
    }
    // a model's usage over a range
    let rows = store
        .model_days(
            "amazon.nova-micro-v1:0",
            meter_core::Day::parse("2026-10-30").unwrap(),
            meter_core::Day::parse("2026-11-01").unwrap(),
        )
        .await
        .unwrap();
    let want_rows = expected
        .keys()
        .filter(|k| k.0 == "model_day" && k.2 == "amazon.nova-micro-v1:0")
        .count();
    assert_eq!(rows.len(), want_rows);
}
