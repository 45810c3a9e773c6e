//! Exactly-once totals under injected faults: the ingest path talks to
//! DynamoDB Local through a proxy (`faults_support`) that answers a share of
//! requests with DynamoDB's real error responses, resets connections, answers
//! late, and loses answers after DynamoDB applied the write. Every failed
//! batch is delivered again, as Lambda does, until it succeeds (bounded); the
//! table must then equal an independent computation exactly.
//!
//! Run with `--nocapture` to see the figures.

mod faults_support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use faults_support::{upstream_from_env, Fault, FaultPlan, FaultProxy};
use integration_tests::*;
use meter_core::Meter;
use meter_store::plan::PlannedTx;
use meter_store::{
    commit_batch, ingest_payload, CancelReason, CommitSettings, DynamoDbUsageStore, IngestError,
    StoreError, TxCommitted, UsageStore,
};
use time::OffsetDateTime;

/// The SDK's own retries: standard mode, 3 attempts (the default), with short
/// backoff so the test stays quick. An attempt times out after 4 s: DynamoDB
/// Local on a busy machine can take over a second for a transaction.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

async fn client_through(proxy: &FaultProxy, retry: RetryConfig) -> aws_sdk_dynamodb::Client {
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let conf = aws_sdk_dynamodb::config::Builder::from(&sdk)
        .endpoint_url(proxy.url())
        .retry_config(retry)
        .timeout_config(
            TimeoutConfig::builder()
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .connect_timeout(Duration::from_secs(2))
                .build(),
        )
        .build();
    aws_sdk_dynamodb::Client::from_conf(conf)
}

fn sdk_retries() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(3)
        .with_initial_backoff(Duration::from_millis(5))
        .with_max_backoff(Duration::from_millis(50))
}

fn plan(rate: f64, kinds: &[Fault], seed: u64) -> FaultPlan {
    FaultPlan {
        rate,
        kinds: kinds.to_vec(),
        seed,
        slow: Duration::from_millis(200),
        stall: ATTEMPT_TIMEOUT + Duration::from_millis(500),
    }
}

/// A store that counts the transactions the ingest path sends and how each
/// failed, around the real DynamoDB adapter.
struct Counting {
    inner: DynamoDbUsageStore,
    calls: AtomicUsize,
    failures: Mutex<BTreeMap<String, usize>>,
}

impl Counting {
    fn new(inner: DynamoDbUsageStore) -> Self {
        Counting {
            inner,
            calls: AtomicUsize::new(0),
            failures: Mutex::new(BTreeMap::new()),
        }
    }
}

fn failure_label(e: &StoreError) -> String {
    match e {
        StoreError::Cancelled(reasons) => {
            if reasons.contains(&CancelReason::ConditionalCheckFailed) {
                "cancelled: already counted".into()
            } else {
                "cancelled: conflict or throttle".into()
            }
        }
        StoreError::Retryable { message, .. } => {
            let head: String = message
                .split(':')
                .next()
                .unwrap_or("")
                .chars()
                .take(40)
                .collect();
            format!("retryable: {head}")
        }
        StoreError::TableMissing { .. } => "table missing".into(),
        StoreError::Permanent { message, .. } => format!("PERMANENT: {message}"),
    }
}

impl UsageStore for Counting {
    async fn transact(&self, tx: &PlannedTx) -> Result<TxCommitted, StoreError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let out = self.inner.transact(tx).await;
        if let Err(e) = &out {
            *self
                .failures
                .lock()
                .unwrap()
                .entry(failure_label(e))
                .or_default() += 1;
        }
        out
    }
}

#[derive(Debug, Default)]
struct Figures {
    deliveries: usize,
    redeliveries: usize,
    batches_redelivered: usize,
    most_deliveries_of_one_batch: usize,
    commit_retries: usize,
    duplicates_reported: usize,
    failed_deliveries_by_error: BTreeMap<String, usize>,
}

const BATCHES: usize = 200;
const RECORDS_PER_BATCH: usize = 12;
/// Concurrent "Lambda instances" (they also cause real conflicts).
const INSTANCES: usize = 4;
/// Deliveries of one batch before the test gives up (Lambda and CloudWatch
/// Logs retry for hours; a healthy run needs a handful).
const MAX_DELIVERIES: usize = 40;

async fn run_under_faults(rate: f64, seed: u64, name: &str) {
    let started = Instant::now();
    let client = local_client().await;
    let direct = fresh_store(&client, name).await;
    let proxy = FaultProxy::start(upstream_from_env(), plan(rate, &Fault::ALL, seed)).await;
    let store = Arc::new(Counting::new(DynamoDbUsageStore::new(
        client_through(&proxy, sdk_retries()).await,
        direct.table(),
    )));
    let recs = corpus(BATCHES * RECORDS_PER_BATCH, 25, 3, seed);
    let batches: Arc<Vec<Vec<u8>>> = Arc::new(
        recs.chunks(RECORDS_PER_BATCH)
            .enumerate()
            .map(|(i, c)| envelope(c, 1 + (i * RECORDS_PER_BATCH) as u64))
            .collect(),
    );
    // Half the instances give up a delivery at the first failed commit (so
    // failed deliveries, and so redeliveries, happen); the other half retry
    // commits up to 3 times (so the commit retry path runs too). The Lambda
    // uses 10 attempts.
    let settings_for = |instance: usize| {
        Arc::new(CommitSettings {
            max_attempts: if instance % 2 == 0 { 1 } else { 3 },
            base_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(40),
            ..CommitSettings::default()
        })
    };
    let meter = Arc::new(Meter::with_defaults());
    let next = Arc::new(AtomicUsize::new(0));
    let figures = Arc::new(Mutex::new(Figures::default()));
    let mut workers = tokio::task::JoinSet::new();
    for instance in 0..INSTANCES {
        let (store, batches, settings, meter, next, figures) = (
            store.clone(),
            batches.clone(),
            settings_for(instance),
            meter.clone(),
            next.clone(),
            figures.clone(),
        );
        workers.spawn(async move {
            let mut delivered = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= batches.len() {
                    return Ok::<_, String>(delivered);
                }
                let mut deliveries = 0;
                loop {
                    deliveries += 1;
                    let outcome = ingest_payload(
                        &*store,
                        &meter,
                        &settings,
                        &batches[i],
                        OffsetDateTime::now_utc(),
                    )
                    .await;
                    let done = {
                        let mut f = figures.lock().unwrap();
                        f.deliveries += 1;
                        match outcome {
                            Ok(done) => {
                                f.commit_retries += done.report.retries;
                                f.duplicates_reported += done.report.duplicates;
                                f.most_deliveries_of_one_batch =
                                    f.most_deliveries_of_one_batch.max(deliveries);
                                if deliveries > 1 {
                                    f.batches_redelivered += 1;
                                    f.redeliveries += deliveries - 1;
                                }
                                true
                            }
                            Err(e) => {
                                if !e.is_retryable() {
                                    return Err(format!(
                                        "batch {i}: a fault gave a non-retryable error: {e}"
                                    ));
                                }
                                let label = match &e {
                                    meter_store::PayloadError::Ingest(
                                        IngestError::RetriesExhausted { source, .. }
                                        | IngestError::Store(source),
                                    ) => failure_label(source),
                                    other => other.to_string(),
                                };
                                *f.failed_deliveries_by_error.entry(label).or_default() += 1;
                                if deliveries >= MAX_DELIVERIES {
                                    return Err(format!(
                                        "batch {i} still failing after {deliveries} deliveries: {e}"
                                    ));
                                }
                                false
                            }
                        }
                    };
                    if done {
                        break;
                    }
                    // Lambda waits before retrying an asynchronous event.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                delivered.push(i);
            }
        });
    }
    let mut delivered = Vec::new();
    while let Some(joined) = workers.join_next().await {
        match joined.expect("worker task") {
            Ok(d) => delivered.extend(d),
            Err(problem) => panic!("{problem}"),
        }
    }
    delivered.sort_unstable();
    assert_eq!(
        delivered,
        (0..BATCHES).collect::<Vec<_>>(),
        "every batch ends delivered"
    );

    let actual = read_aggregates(&direct).await;
    let expected = expected_totals(&recs);
    let markers = marker_count(&direct).await;
    let f = figures.lock().unwrap();
    let faults = proxy.stats.faults();
    let requests = proxy.stats.requests.load(Ordering::Relaxed);
    let calls = store.calls.load(Ordering::Relaxed);
    let injected = proxy.stats.total_faults();
    let applied_but_lost: usize = faults
        .iter()
        .filter(|(k, _)| k.applied_but_lost())
        .map(|(_, n)| n)
        .sum();
    let exact = actual == expected && markers == recs.len();
    println!(
        "\n== faults at {:.0}%: {BATCHES} batches x {RECORDS_PER_BATCH} records = {} records, {INSTANCES} concurrent instances, {:.1}s",
        rate * 100.0,
        recs.len(),
        started.elapsed().as_secs_f64()
    );
    println!(
        "   proxy: {requests} HTTP requests, {injected} faults injected ({:.1}%), {applied_but_lost} of them after DynamoDB applied the write",
        100.0 * injected as f64 / requests.max(1) as f64
    );
    for (kind, n) in &faults {
        println!("     {kind:?}: {n}");
    }
    println!(
        "   ingest path: {calls} transactions sent, {} SDK-level retries, {} commit retries, store failures by kind: {:?}",
        requests.saturating_sub(calls),
        f.commit_retries,
        store.failures.lock().unwrap()
    );
    println!(
        "   deliveries: {} ({} redeliveries of {} batches, at most {} deliveries of one batch); failed deliveries by error: {:?}",
        f.deliveries,
        f.redeliveries,
        f.batches_redelivered,
        f.most_deliveries_of_one_batch,
        f.failed_deliveries_by_error
    );
    println!(
        "   records already counted, dropped on redelivery or retry: {}; markers {} of {} records; {} aggregates; totals exact: {}",
        f.duplicates_reported,
        markers,
        recs.len(),
        expected.len(),
        if exact { "yes" } else { "NO" }
    );

    assert!(
        proxy.stats.problems().is_empty(),
        "proxy problems: {:?}",
        proxy.stats.problems()
    );
    // The faults really were injected, at about the planned share.
    let share = injected as f64 / requests as f64;
    assert!(
        share > rate * 0.5 && share < rate * 1.5,
        "injected {share:.3} of requests, planned {rate}"
    );
    assert!(applied_but_lost > 0, "no write was applied and then lost");
    if rate >= 0.3 {
        assert!(f.redeliveries > 0, "no batch needed a redelivery");
    }
    assert_eq!(markers, recs.len(), "one marker per record");
    assert_totals_eq(&actual, &expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_batches_at_a_10_percent_fault_rate_are_counted_exactly_once() {
    run_under_faults(0.10, 10, "faults-10").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_batches_at_a_30_percent_fault_rate_are_counted_exactly_once() {
    run_under_faults(0.30, 30, "faults-30").await;
}

/// The proxy's answers are the real thing: the SDK parses each into the
/// error DynamoDB would have raised, and the adapter classifies it.
#[tokio::test]
async fn each_injected_fault_reaches_the_adapter_as_dynamodb_would_report_it() {
    let client = local_client().await;
    let direct = fresh_store(&client, "fault-kinds").await;
    let meter = Meter::with_defaults();
    let once = CommitSettings {
        max_attempts: 1,
        ..CommitSettings::default()
    };
    for (n, kind) in Fault::ALL.into_iter().enumerate() {
        let proxy = FaultProxy::start(upstream_from_env(), plan(1.0, &[kind], n as u64)).await;
        // The switch-over item is read once per process before any commit;
        // the faults here are for the commit's own requests.
        let store = DynamoDbUsageStore::new(
            client_through(&proxy, RetryConfig::disabled()).await,
            direct.table(),
        )
        .with_switch_over(0);
        let recs: Vec<Rec> = corpus(3, 2, 1, 100 + n as u64);
        let batch = meter.meter_payload(&envelope(&recs, 1)).expect("meter");
        let markers_before = marker_count(&direct).await;
        let outcome = commit_batch(&store, &batch, &once, OffsetDateTime::now_utc()).await;
        let applied = marker_count(&direct).await - markers_before;
        let err = match &outcome {
            Ok(_) => None,
            Err(IngestError::RetriesExhausted { source, .. } | IngestError::Store(source)) => {
                Some(source)
            }
        };
        println!(
            "{kind:?}: {} (writes applied: {applied})",
            err.map_or("committed".to_string(), |e| e.to_string())
        );
        let retryable = |code: &str| matches!(err, Some(StoreError::Retryable { message, .. }) if message.starts_with(code));
        match kind {
            Fault::Throttling => assert!(retryable("ThrottlingException"), "{err:?}"),
            Fault::ProvisionedThroughputExceeded => {
                assert!(
                    retryable("ProvisionedThroughputExceededException"),
                    "{err:?}"
                )
            }
            Fault::InternalServerError | Fault::AppliedThenInternalServerError => {
                assert!(retryable("InternalServerError"), "{err:?}")
            }
            Fault::TransactionConflict => match err {
                Some(StoreError::Cancelled(reasons)) => {
                    assert_eq!(
                        reasons
                            .iter()
                            .filter(|r| **r == CancelReason::TransactionConflict)
                            .count(),
                        1
                    );
                    assert!(reasons.len() > 3, "one reason per action: {reasons:?}");
                }
                other => panic!("expected a cancellation, got {other:?}"),
            },
            // The connection dropped: the SDK's dispatch failure.
            Fault::ResetBeforeForwarding | Fault::AppliedThenReset => assert!(
                matches!(err, Some(StoreError::Retryable { message, .. }) if message.contains("dispatch failure")),
                "{err:?}"
            ),
            // No answer: the client's attempt timeout.
            Fault::AppliedThenStalled => assert!(
                matches!(err, Some(StoreError::Retryable { message, .. }) if message.contains("timeout")),
                "{err:?}"
            ),
            Fault::SlowAnswer => assert!(outcome.is_ok(), "{err:?}"),
        }
        // The commit's own outcome: the slow answer commits all three
        // records in one transaction; every other fault fails the only
        // attempt allowed, with the store error checked above as its source.
        match (&outcome, kind) {
            (Ok(report), Fault::SlowAnswer) => {
                assert_eq!(report.counted, 3, "{report:?}");
                assert_eq!(report.duplicates, 0, "{report:?}");
                assert_eq!(report.transactions, 1, "{report:?}");
                assert_eq!(report.retries, 0, "{report:?}");
            }
            (Ok(report), _) => panic!("{kind:?}: the commit succeeded: {report:?}"),
            (Err(e @ IngestError::RetriesExhausted { attempts, .. }), _) => {
                assert_ne!(kind, Fault::SlowAnswer, "{e}");
                assert_eq!(*attempts, 1, "{kind:?}: {e}");
                assert!(e.is_retryable(), "{kind:?}: {e}");
            }
            (Err(e @ IngestError::Store(_)), _) => {
                panic!("{kind:?}: a permanent failure instead of a retryable one: {e}")
            }
        }
        let expect_applied = kind.applied_but_lost() || kind == Fault::SlowAnswer;
        assert_eq!(
            applied,
            if expect_applied { 3 } else { 0 },
            "{kind:?}: markers written"
        );
        assert!(
            proxy.stats.problems().is_empty(),
            "{:?}",
            proxy.stats.problems()
        );
    }
}
