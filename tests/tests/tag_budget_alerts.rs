//! Budgets per attribution tag value end to end: ingestion with
//! `ATTRIBUTION_TAGS` into DynamoDB Local, the table's real stream, the real
//! `budget-alerts` binary behind a loopback Lambda Runtime API, and a
//! loopback SNS endpoint (see budget_alerts.rs for the harness).
//!
//! Needs `cargo build -p budget-alerts` first (make test does), and DynamoDB
//! Local (scripts/with-dynamodb-local.sh).

// Shared with budget_alerts.rs, which uses the parts this file does not.
#[allow(dead_code)]
mod budget_alerts_support;

use std::sync::Arc;

use budget_alerts_support::*;
use integration_tests::*;
use meter_core::{Meter, Usd};
use meter_store::budgets::{BudgetChange, BudgetScope, Thresholds};
use meter_store::{CommitSettings, DynamoDbUsageStore};
use serde_json::Value;

const PRO: &str = "amazon.nova-pro-v1:0";
const MICRO: &str = "amazon.nova-micro-v1:0";

/// `input` nova-pro input tokens (0.8 USD per 1M) by `user` of `team`.
fn rec(id: &str, user: &str, timestamp: &str, input: u64) -> Rec {
    rec_of(PRO, id, user, timestamp, input)
}

/// `input` input tokens of `model` by `user`.
fn rec_of(model: &'static str, id: &str, user: &str, timestamp: &str, input: u64) -> Rec {
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

async fn ingest(store: &DynamoDbUsageStore, recs: &[(Rec, &str)], first_event_id: u64) {
    let meter = Meter {
        attribution_tags: vec![Arc::from("team")],
        ..Meter::with_defaults()
    };
    let messages: Vec<String> = recs
        .iter()
        .map(|(r, team)| tagged_json(r, &[("team".to_string(), team.to_string())]))
        .collect();
    let report = meter_store::ingest_payload(
        store,
        &meter,
        &CommitSettings::default(),
        &envelope_of_messages(&messages, first_event_id),
        time::OffsetDateTime::now_utc(),
    )
    .await
    .expect("ingest");
    assert_eq!(report.report.counted, recs.len());
}

async fn set_budget(store: &DynamoDbUsageStore, scope: BudgetScope, monthly: &str, pcts: &str) {
    set_limits(store, scope, None, Some(monthly), pcts).await;
}

async fn set_limits(
    store: &DynamoDbUsageStore,
    scope: BudgetScope,
    daily: Option<&str>,
    monthly: Option<&str>,
    pcts: &str,
) {
    store
        .set_budget(
            &scope,
            &BudgetChange {
                daily: daily.map(|d| Some(d.parse::<Usd>().unwrap())),
                monthly: monthly.map(|m| Some(m.parse::<Usd>().unwrap())),
                thresholds: Some(Thresholds::parse(pcts).unwrap()),
            },
        )
        .await
        .expect("set budget");
}

fn failures(response: &Value) -> usize {
    response["batchItemFailures"]
        .as_array()
        .unwrap_or_else(|| panic!("not a batch response: {response}"))
        .len()
}

/// (scope, tag, tag_value, period, threshold) of every publish, sorted.
fn crossings(sns: &FakeSns) -> Vec<[String; 5]> {
    let mut v: Vec<[String; 5]> = sns
        .published()
        .iter()
        .map(|p| {
            [
                p.attribute("scope"),
                p.attribute("tag"),
                p.attribute("tag_value"),
                p.attribute("period"),
                p.attribute("threshold"),
            ]
        })
        .collect();
    v.sort();
    v
}

fn tag(value: &str, threshold: &str) -> [String; 5] {
    [
        "tag".into(),
        "team".into(),
        value.into(),
        "2026-11".into(),
        threshold.into(),
    ]
}

fn org(threshold: &str) -> [String; 5] {
    [
        "org".into(),
        String::new(),
        String::new(),
        "2026-11".into(),
        threshold.into(),
    ]
}

#[tokio::test]
async fn a_tag_value_budget_alerts_once_per_crossing_and_tag_totals_do_not_inflate_the_organisation(
) {
    let client = local_client().await;
    let store = fresh_store_with_stream(&client, "tag-budget").await;
    let sns = FakeSns::start().await;
    let mut lambda = LambdaRuntime::start(store.table(), &sns, "tag-budget").await;
    let mut stream = StreamReader::open(&client, store.table()).await;
    let value = "pay#<b>";
    set_budget(
        &store,
        BudgetScope::Tag {
            tag: "team".into(),
            value: value.into(),
        },
        "1",
        "50,80,100",
    )
    .await;
    // 1.2 USD for the organisation: 50% of 2 USD is crossed, 80% is not
    // (it would be if the team's tag_month changes were counted as spend too).
    set_budget(&store, BudgetScope::Org, "2", "50,80").await;
    // alice and bob of the team: 0.8 + 0.08 = 0.88 USD crosses 50% and 80%
    // of 1 USD; carol of another team spends 0.32.
    ingest(
        &store,
        &[
            (
                rec("b0000001", "alice", "2026-11-20T10:00:00Z", 1_000_000),
                value,
            ),
            (
                rec("b0000002", "bob", "2026-11-21T10:00:00Z", 100_000),
                value,
            ),
            (
                rec("b0000003", "carol", "2026-11-21T11:00:00Z", 400_000),
                "search",
            ),
        ],
        1,
    )
    .await;
    let batch = event(&stream.read().await);
    let r = lambda.invoke(&batch).await;
    assert_eq!(failures(&r), 0, "{r}");
    let first = vec![org("50"), tag(value, "50"), tag(value, "80")];
    assert_eq!(crossings(&sns), first);
    let alert = sns
        .published()
        .into_iter()
        .find(|p| p.attribute("threshold") == "80" && p.attribute("scope") == "tag")
        .unwrap();
    assert!(
        alert
            .message()
            .contains("bedrock-meter report --tag 'team=pay#<b>' --month 2026-11"),
        "{}",
        alert.message()
    );
    assert!(
        alert.message().contains("Spend:      0.88 USD"),
        "{}",
        alert.message()
    );

    // Redelivered, and again after a crash: nothing new.
    lambda.invoke(&batch).await;
    lambda.crash_and_restart(store.table(), &sns);
    let r = lambda.invoke(&batch).await;
    assert_eq!(failures(&r), 0, "{r}");
    assert_eq!(crossings(&sns), first, "redelivery must not publish again");

    // 0.88 -> 1.04 crosses 100%.
    ingest(
        &store,
        &[(
            rec("b0000004", "dave", "2026-11-22T10:00:00Z", 200_000),
            value,
        )],
        10,
    )
    .await;
    let r = lambda.invoke(&event(&stream.read().await)).await;
    assert_eq!(failures(&r), 0, "{r}");
    let mut all = first.clone();
    all.push(tag(value, "100"));
    all.sort();
    assert_eq!(crossings(&sns), all);
    sns.assert_no_problems();
}

fn tag_day(value: &str, day: &str, threshold: &str) -> [String; 5] {
    [
        "tag".into(),
        "team".into(),
        value.into(),
        day.into(),
        threshold.into(),
    ]
}

#[tokio::test]
async fn a_tag_value_daily_budget_alerts_once_on_the_days_total_across_models() {
    let client = local_client().await;
    let store = fresh_store_with_stream(&client, "tag-daily-budget").await;
    let sns = FakeSns::start().await;
    let mut lambda = LambdaRuntime::start(store.table(), &sns, "tag-daily-budget").await;
    let mut stream = StreamReader::open(&client, store.table()).await;
    let pay = BudgetScope::Tag {
        tag: "team".into(),
        value: "pay".into(),
    };
    set_limits(&store, pay, Some("1"), None, "50,100").await;
    // pay on 2026-11-20: 0.7M nova-pro (0.56 USD) + 2M nova-micro (0.035
    // per 1M: 0.07 USD) = 0.63 USD, 50% of 1 USD (neither model's item
    // alone reaches it); pay on 2026-11-21: 0.8 USD, 50% of that day;
    // search (no budget) 0.8 USD.
    ingest(
        &store,
        &[
            (
                rec("d0000001", "alice", "2026-11-20T10:00:00Z", 700_000),
                "pay",
            ),
            (
                rec_of(MICRO, "d0000002", "dave", "2026-11-20T11:00:00Z", 2_000_000),
                "pay",
            ),
            (
                rec("d0000003", "bob", "2026-11-21T10:00:00Z", 1_000_000),
                "pay",
            ),
            (
                rec("d0000004", "carol", "2026-11-20T10:00:00Z", 1_000_000),
                "search",
            ),
        ],
        1,
    )
    .await;
    let records = stream.read().await;
    assert!(
        records
            .iter()
            .any(|r| r["dynamodb"]["NewImage"]["kind"]["S"] == "tag_model_day"),
        "the stream filter passes tag_model_day changes"
    );
    let batch = event(&records);
    let r = lambda.invoke(&batch).await;
    assert_eq!(failures(&r), 0, "{r}");
    let first = vec![
        tag_day("pay", "2026-11-20", "50"),
        tag_day("pay", "2026-11-21", "50"),
    ];
    assert_eq!(crossings(&sns), first);
    let alert = sns
        .published()
        .into_iter()
        .find(|p| p.attribute("period") == "2026-11-20")
        .unwrap();
    assert_eq!(alert.attribute("period_kind"), "day");
    for needle in [
        "Spend:      0.63 USD",
        "Limit:      1 USD",
        "bedrock-meter report --tag team=pay --day 2026-11-20",
        "the team=pay daily budget",
    ] {
        assert!(
            alert.message().contains(needle),
            "{needle:?} not in {}",
            alert.message()
        );
    }

    // Redelivered, and again after a crash: nothing new.
    lambda.invoke(&batch).await;
    lambda.crash_and_restart(store.table(), &sns);
    let r = lambda.invoke(&batch).await;
    assert_eq!(failures(&r), 0, "{r}");
    assert_eq!(crossings(&sns), first, "redelivery must not publish again");

    // 0.63 + 0.4 = 1.03 USD on 2026-11-20 reaches 100%.
    ingest(
        &store,
        &[(
            rec("d0000005", "erin", "2026-11-20T15:00:00Z", 500_000),
            "pay",
        )],
        10,
    )
    .await;
    let r = lambda.invoke(&event(&stream.read().await)).await;
    assert_eq!(failures(&r), 0, "{r}");
    let mut all = first.clone();
    all.push(tag_day("pay", "2026-11-20", "100"));
    all.sort();
    assert_eq!(crossings(&sns), all);
    sns.assert_no_problems();
}
