//! Budget alerts end to end: real ingestion into DynamoDB Local, the table's
//! real stream read with aws-sdk-dynamodbstreams, the real `budget-alerts`
//! binary behind a loopback Lambda Runtime API, and a loopback SNS endpoint
//! that checks and records every `Publish` request.
//!
//! Needs `cargo build -p budget-alerts -p bedrock-meter-cli` first (make test
//! does), and DynamoDB Local (scripts/with-dynamodb-local.sh).

mod budget_alerts_support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use budget_alerts_support::*;
use integration_tests::*;
use meter_core::{Meter, Usd};
use meter_store::budgets::{BudgetChange, BudgetScope, Thresholds};
use meter_store::{CommitSettings, DynamoDbUsageStore};
use serde_json::Value;

const PRO: &str = "amazon.nova-pro-v1:0";
const MICRO: &str = "amazon.nova-micro-v1:0";

fn usd(s: &str) -> Usd {
    s.parse().unwrap()
}

/// One invocation of `model` by `user` at `timestamp`; nova-pro input costs
/// exactly 0.8 USD per 1M tokens, nova-micro 0.035.
fn rec(id: &str, user: &str, model: &'static str, timestamp: &str, input: u64) -> Rec {
    Rec {
        request_id: format!("{id}-0000-4000-8000-000000000000"),
        user: user.into(),
        model,
        timestamp: timestamp.into(),
        input,
        output: 0,
        cache_read: 0,
        cache_write: 0,
        error: false,
    }
}

async fn ingest(store: &DynamoDbUsageStore, recs: &[Rec], first_event_id: u64) {
    let report = meter_store::ingest_payload(
        store,
        &Meter::with_defaults(),
        &CommitSettings::default(),
        &envelope(recs, first_event_id),
        time::OffsetDateTime::now_utc(),
    )
    .await
    .expect("ingest");
    assert_eq!(report.report.counted, recs.len(), "every record counted");
}

async fn set_budget(
    store: &DynamoDbUsageStore,
    scope: BudgetScope,
    daily: Option<&str>,
    monthly: Option<&str>,
    thresholds: Option<&str>,
) {
    store
        .set_budget(
            &scope,
            &BudgetChange {
                daily: daily.map(|d| Some(usd(d))),
                monthly: monthly.map(|m| Some(usd(m))),
                thresholds: thresholds.map(|t| Thresholds::parse(t).unwrap()),
            },
        )
        .await
        .expect("set budget");
}

struct Setup {
    client: aws_sdk_dynamodb::Client,
    store: DynamoDbUsageStore,
    sns: FakeSns,
    lambda: LambdaRuntime,
    stream: StreamReader,
}

async fn setup(name: &str) -> Setup {
    let client = local_client().await;
    let store = fresh_store_with_stream(&client, name).await;
    let sns = FakeSns::start().await;
    let lambda = LambdaRuntime::start(store.table(), &sns, name).await;
    let stream = StreamReader::open(&client, store.table()).await;
    Setup {
        client,
        store,
        sns,
        lambda,
        stream,
    }
}

fn failures(response: &Value) -> Vec<String> {
    response["batchItemFailures"]
        .as_array()
        .unwrap_or_else(|| panic!("not a batch response: {response}"))
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// (user or "", period, threshold) of every publish, sorted.
fn crossings(sns: &FakeSns) -> Vec<(String, String, String)> {
    let mut v: Vec<_> = sns
        .published()
        .iter()
        .map(|p| {
            (
                p.attribute("user"),
                p.attribute("period"),
                p.attribute("threshold"),
            )
        })
        .collect();
    v.sort();
    v
}

fn c(user: &str, period: &str, threshold: &str) -> (String, String, String) {
    (user.into(), period.into(), threshold.into())
}

#[tokio::test]
async fn one_update_crossing_two_thresholds_publishes_two_alerts_and_redeliveries_publish_none() {
    let mut t = setup("several-crossings").await;
    set_budget(
        &t.store,
        BudgetScope::User("alice".into()),
        Some("1"),
        None,
        None,
    )
    .await;
    // 0.8 USD of nova-pro plus 0.0175 of nova-micro: 0 -> 0.8175 crosses 50% and 80% of 1 USD.
    ingest(
        &t.store,
        &[
            rec("a0000001", "alice", PRO, "2026-11-20T10:00:00Z", 1_000_000),
            rec("a0000002", "alice", MICRO, "2026-11-20T10:00:01Z", 500_000),
        ],
        1,
    )
    .await;
    let batch = event(&t.stream.read().await);
    assert!(
        !batch["Records"].as_array().unwrap().is_empty(),
        "the stream has the user_day and user_month changes"
    );

    let r = t.lambda.invoke(&batch).await;
    assert!(failures(&r).is_empty(), "{r}");
    let two = vec![
        c("alice", "2026-11-20", "50"),
        c("alice", "2026-11-20", "80"),
    ];
    assert_eq!(crossings(&t.sns), two);

    // The same batch again (Lambda retry), and again after a crash.
    t.lambda.invoke(&batch).await;
    t.lambda.crash_and_restart(t.store.table(), &t.sns);
    let r = t.lambda.invoke(&batch).await;
    assert!(failures(&r).is_empty(), "{r}");
    assert_eq!(crossings(&t.sns), two, "redelivery must not publish again");

    // 0.8175 -> 1.0175 crosses 100%.
    ingest(
        &t.store,
        &[rec(
            "a0000003",
            "alice",
            PRO,
            "2026-11-20T11:00:00Z",
            250_000,
        )],
        10,
    )
    .await;
    let r = t.lambda.invoke(&event(&t.stream.read().await)).await;
    assert!(failures(&r).is_empty(), "{r}");
    let published = t.sns.published();
    assert_eq!(published.len(), 3);
    let last = &published[2];
    println!(
        "--- sample alert ---\nSubject: {}\n{}\nattributes: {:?}",
        last.subject(),
        last.message(),
        {
            let a: BTreeMap<_, _> = last.attributes().into_iter().collect();
            a
        }
    );
    for needle in [
        "alice",
        "day 2026-11-20",
        "Spend:      1.0175 USD",
        "Limit:      1 USD",
        "Threshold:  100% = 1 USD",
        "amazon.nova-pro-v1:0    1 USD",
        "amazon.nova-micro-v1:0  0.0175 USD",
        "bedrock-meter report --user alice --day 2026-11-20",
    ] {
        assert!(
            last.message().contains(needle),
            "{needle:?} not in:\n{}",
            last.message()
        );
    }
    let attrs = last.attributes();
    assert_eq!(attrs["user"], ("String".into(), "alice".into()));
    assert_eq!(attrs["period_kind"], ("String".into(), "day".into()));
    assert_eq!(attrs["threshold"], ("Number".into(), "100".into()));
    assert!(last.subject().contains("100%") && last.subject().len() <= 100);
}

#[tokio::test]
async fn spend_below_every_threshold_publishes_nothing() {
    let mut t = setup("below").await;
    set_budget(
        &t.store,
        BudgetScope::Default,
        Some("10"),
        Some("100"),
        None,
    )
    .await;
    set_budget(&t.store, BudgetScope::Org, None, Some("1000"), None).await;
    ingest(
        &t.store,
        &[rec(
            "b0000001",
            "bob",
            PRO,
            "2026-11-20T10:00:00Z",
            6_000_000,
        )],
        1,
    )
    .await; // 4.8 < 5
    let batch = event(&t.stream.read().await);
    let r = t.lambda.invoke(&batch).await;
    assert!(failures(&r).is_empty(), "{r}");
    assert!(t.sns.published().is_empty(), "{:?}", crossings(&t.sns));
    // One more cent-worth crosses 50% of the daily limit: the pipeline is live.
    ingest(
        &t.store,
        &[rec("b0000002", "bob", PRO, "2026-11-20T10:00:01Z", 250_000)],
        5,
    )
    .await;
    t.lambda.invoke(&event(&t.stream.read().await)).await;
    assert_eq!(crossings(&t.sns), vec![c("bob", "2026-11-20", "50")]);
}

fn cli(table: &str, args: &[&str]) -> (bool, String) {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let bin = target.join("debug/bedrock-meter");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p bedrock-meter-cli`",
        bin.display()
    );
    let out = Command::new(bin)
        .arg("--table")
        .arg(table)
        .args(args)
        .output()
        .expect("run bedrock-meter");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[tokio::test]
async fn a_user_without_a_budget_of_their_own_is_alerted_against_the_default_set_with_the_cli() {
    let mut t = setup("default-fallback").await;
    let table = t.store.table().to_string();
    for args in [
        vec![
            "budget",
            "set",
            "--default",
            "--monthly",
            "1",
            "--thresholds",
            "75",
        ],
        vec!["budget", "set", "--user", "alice", "--daily", "100"],
    ] {
        let (ok, out) = cli(&table, &args);
        assert!(ok, "{args:?}: {out}");
    }
    let (ok, out) = cli(&table, &["budget", "list", "--format", "json"]);
    assert!(ok, "{out}");
    let listed: Vec<Value> = out
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(listed.len(), 2, "{out}");
    assert_eq!(listed[0]["scope"], "default");
    assert_eq!(listed[0]["monthly_usd"], "1");
    assert_eq!(listed[1]["user"], "alice");
    let (ok, out) = cli(&table, &["budget", "set", "--org", "--daily", "5"]);
    assert!(!ok && out.contains("monthly only"), "{out}");

    // bob has no budget: the default's 75% of 1 USD applies to his month.
    // alice's own budget (daily 100, no monthly) replaces the default.
    ingest(
        &t.store,
        &[
            rec("c0000001", "bob", PRO, "2026-11-20T10:00:00Z", 1_000_000),
            rec("c0000002", "alice", PRO, "2026-11-20T10:00:00Z", 1_000_000),
        ],
        1,
    )
    .await;
    let r = t.lambda.invoke(&event(&t.stream.read().await)).await;
    assert!(failures(&r).is_empty(), "{r}");
    assert_eq!(crossings(&t.sns), vec![c("bob", "2026-11", "75")]);
    let p = &t.sns.published()[0];
    assert!(
        p.message().contains("the default monthly budget"),
        "{}",
        p.message()
    );
    assert!(
        p.message()
            .contains("bedrock-meter report --user bob --month 2026-11"),
        "{}",
        p.message()
    );

    let (ok, out) = cli(&table, &["budget", "delete", "--user", "alice"]);
    assert!(ok, "{out}");
    assert_eq!(
        t.store
            .effective_budget("alice")
            .await
            .unwrap()
            .unwrap()
            .scope,
        BudgetScope::Default
    );
}

#[tokio::test]
async fn a_new_month_starts_from_zero_and_the_organisation_is_alerted_once_per_month() {
    let mut t = setup("rollover").await;
    set_budget(&t.store, BudgetScope::Default, None, Some("1"), None).await;
    set_budget(&t.store, BudgetScope::Org, None, Some("1.5"), Some("100")).await;
    // October: alice and bob 0.8 each: both cross 50% and 80%; together 1.6 >= 1.5.
    ingest(
        &t.store,
        &[
            rec("d0000001", "alice", PRO, "2026-10-31T23:59:00Z", 1_000_000),
            rec("d0000002", "bob", PRO, "2026-10-31T23:59:30Z", 1_000_000),
        ],
        1,
    )
    .await;
    let october = event(&t.stream.read().await);
    t.lambda.invoke(&october).await;
    t.lambda.invoke(&october).await;
    let oct = vec![
        c("", "2026-10", "100"),
        c("alice", "2026-10", "50"),
        c("alice", "2026-10", "80"),
        c("bob", "2026-10", "50"),
        c("bob", "2026-10", "80"),
    ];
    assert_eq!(crossings(&t.sns), oct);
    let org = t
        .sns
        .published()
        .into_iter()
        .find(|p| p.attribute("scope") == "org")
        .unwrap();
    assert!(
        org.message().contains("Spend:      1.6 USD") && org.message().contains("Top users:"),
        "{}",
        org.message()
    );

    // November 1st: alice's month starts again from 0 (new item, no OldImage).
    ingest(
        &t.store,
        &[rec(
            "d0000003",
            "alice",
            PRO,
            "2026-11-01T00:00:10Z",
            750_000,
        )],
        10,
    )
    .await;
    let r = t.lambda.invoke(&event(&t.stream.read().await)).await;
    assert!(failures(&r).is_empty(), "{r}");
    let mut all = oct.clone();
    all.push(c("alice", "2026-11", "50"));
    all.sort();
    assert_eq!(crossings(&t.sns), all);
    // The organisation's totals per month, kept by the function.
    for (month, total) in [("2026-10", "1.6"), ("2026-11", "0.6")] {
        let item = t
            .client
            .get_item()
            .table_name(t.store.table())
            .key("pk", AttributeValue::S("ORG".into()))
            .key("sk", AttributeValue::S(format!("MONTH#{month}")))
            .send()
            .await
            .unwrap();
        let cost = item
            .item()
            .and_then(|i| i.get("cost_usd"))
            .and_then(|v| v.as_n().ok())
            .cloned();
        assert_eq!(
            cost.map(|c| normalise_decimal(&c)),
            Some(total.to_string()),
            "{month}"
        );
    }
}

async fn alert_states(client: &aws_sdk_dynamodb::Client, table: &str) -> Vec<String> {
    let out = client
        .scan()
        .table_name(table)
        .filter_expression("#k = :a")
        .expression_attribute_names("#k", "kind")
        .expression_attribute_values(":a", AttributeValue::S("alert".into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    out.items()
        .iter()
        .filter_map(|i| i.get("state").and_then(|v| v.as_s().ok()).cloned())
        .collect()
}

#[tokio::test]
async fn a_crash_after_claiming_an_alert_neither_loses_nor_duplicates_it() {
    let mut t = setup("crash").await;
    set_budget(&t.store, BudgetScope::Default, Some("1"), None, None).await;
    ingest(
        &t.store,
        &[rec(
            "e0000001",
            "carol",
            PRO,
            "2026-11-20T10:00:00Z",
            1_000_000,
        )],
        1,
    )
    .await;
    let batch = event(&t.stream.read().await);

    // SNS never answers: the function claims the first alert, publishes, hangs; then dies.
    t.sns.set_mode(SnsMode::Hang);
    t.lambda.send(&batch);
    let started = Instant::now();
    while !alert_states(&t.client, t.store.table())
        .await
        .contains(&"pending".to_string())
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no pending claim after 30 s\n{}",
            t.lambda.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    while *t.sns.refused.lock().unwrap() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no publish attempt after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    t.lambda.crash_and_restart(t.store.table(), &t.sns);
    t.sns.set_mode(SnsMode::Accept);

    // Lambda delivers the batch again: the stale claim is taken over after its lease (2 s).
    let r = t.lambda.invoke(&batch).await;
    assert!(failures(&r).is_empty(), "{r}");
    assert_eq!(
        crossings(&t.sns),
        vec![
            c("carol", "2026-11-20", "50"),
            c("carol", "2026-11-20", "80")
        ]
    );
    assert_eq!(
        alert_states(&t.client, t.store.table()).await,
        vec!["sent", "sent"]
    );
    t.lambda.invoke(&batch).await;
    assert_eq!(t.sns.published().len(), 2);
}

#[tokio::test]
async fn a_failed_publish_is_reported_from_its_record_on_and_sent_once_when_retried() {
    let mut t = setup("publish-fails").await;
    set_budget(&t.store, BudgetScope::Default, Some("1"), None, None).await;
    ingest(
        &t.store,
        &[
            rec("f0000001", "dave", MICRO, "2026-11-20T10:00:00Z", 1_000), // below any threshold
            rec("f0000002", "erin", PRO, "2026-11-20T10:00:01Z", 1_000_000),
        ],
        1,
    )
    .await;
    let records = t.stream.read().await;
    t.sns.set_mode(SnsMode::Fail);
    let r = t.lambda.invoke(&event(&records)).await;
    let failed = failures(&r);
    let seqs: Vec<String> = records
        .iter()
        .map(|r| {
            r["dynamodb"]["SequenceNumber"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let first = records
        .iter()
        .position(|r| {
            r["dynamodb"]["NewImage"]["user"]["S"] == "erin"
                && r["dynamodb"]["NewImage"]["kind"]["S"] == "user_day"
        })
        .unwrap();
    assert_eq!(
        failed,
        seqs[first..].to_vec(),
        "failures from erin's day change on, in order"
    );
    assert!(t.sns.published().is_empty());

    // Lambda retries from the first failure.
    t.sns.set_mode(SnsMode::Accept);
    let r = t.lambda.invoke(&event(&records[first..])).await;
    assert!(failures(&r).is_empty(), "{r}");
    assert_eq!(
        crossings(&t.sns),
        vec![c("erin", "2026-11-20", "50"), c("erin", "2026-11-20", "80")]
    );
}
