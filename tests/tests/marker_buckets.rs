//! Marker buckets on the official DynamoDB Local: deliveries racing on one
//! bucket, buckets at their cap, and the switch-over from the per-record
//! markers of earlier versions. Every scenario ends with the table's
//! aggregates equal to an independent computation from the input records,
//! and with each record marked exactly once.

use std::collections::BTreeSet;

use aws_sdk_dynamodb::types::AttributeValue;
use integration_tests::*;
use meter_core::Meter;
use meter_store::markers::{MarkerLevel, MarkerScheme};
use meter_store::{ingest_payload, CommitSettings, DynamoDbUsageStore, IngestReport, UsageStore};
use time::OffsetDateTime;

async fn ingest_with<S: UsageStore>(
    store: &S,
    settings: &CommitSettings,
    payload: &[u8],
) -> IngestReport {
    ingest_payload(
        store,
        &Meter::with_defaults(),
        settings,
        payload,
        OffsetDateTime::now_utc(),
    )
    .await
    .expect("ingest")
    .report
}

/// `n` records all logged in the same second: they share every bucket of
/// their chain.
fn same_second(n: usize, seed: u64) -> Vec<Rec> {
    let mut recs = corpus(n, 7, 1, seed);
    for r in &mut recs {
        r.timestamp = "2026-10-30T12:34:56Z".into();
    }
    recs
}

/// A scheme whose capped buckets fill after 5 ids (day, minute, second),
/// so that a test of a few dozen records crosses every level.
fn tiny_buckets() -> CommitSettings {
    CommitSettings {
        markers: MarkerScheme {
            levels: vec![
                MarkerLevel {
                    width_secs: 86_400,
                    slots: 2,
                },
                MarkerLevel {
                    width_secs: 60,
                    slots: 1,
                },
                MarkerLevel {
                    width_secs: 1,
                    slots: 1,
                },
            ],
            cap: 5,
            max_ids_per_write: 4,
            buckets_since: i64::MIN,
        },
        ..CommitSettings::default()
    }
}

fn all_marked(recs: &[Rec]) -> BTreeSet<String> {
    recs.iter().map(marker_pk).collect()
}

/// A second store on the same table: another process, with its own
/// (empty) cache of full buckets.
fn another_process(store: &DynamoDbUsageStore) -> DynamoDbUsageStore {
    DynamoDbUsageStore::new(store.client().clone(), store.table())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deliveries_racing_on_one_bucket_all_count_and_overlapping_ones_count_once() {
    let client = local_client().await;
    let store = fresh_store(&client, "bucket-race").await;
    let recs = same_second(160, 71);
    // Four processes at once: two disjoint halves, and the whole twice.
    let payloads = [
        envelope(&recs[..80], 1),
        envelope(&recs[80..], 1_000),
        envelope(&recs, 2_000),
        envelope(&recs, 3_000),
    ];
    let mut tasks = Vec::new();
    for p in payloads {
        let s = another_process(&store);
        tasks.push(tokio::spawn(async move {
            ingest_with(&s, &CommitSettings::default(), &p).await
        }));
    }
    let (mut counted, mut duplicates) = (0, 0);
    for t in tasks {
        let r = t.await.expect("task");
        counted += r.counted;
        duplicates += r.duplicates;
    }
    assert_eq!(counted, 160, "each record counted by exactly one delivery");
    // 480 records delivered, 160 distinct.
    assert_eq!(duplicates, 320);
    assert_totals_eq(&read_aggregates(&store).await, &expected_totals(&recs));
    assert_eq!(marker_keys(&store).await, all_marked(&recs));
}

#[tokio::test]
async fn buckets_at_their_cap_send_records_down_a_level_and_a_new_process_finds_them() {
    let client = local_client().await;
    let store = fresh_store(&client, "bucket-cap").await;
    let settings = tiny_buckets();
    let recs = same_second(60, 72);
    let first = ingest_with(&store, &settings, &envelope(&recs[..40], 1)).await;
    assert_eq!(first.counted, 40);
    // Overlapping, through a process that has never seen the buckets fill:
    // it learns each full bucket from a cancelled transaction.
    let other = another_process(&store);
    let second = ingest_with(&other, &settings, &envelope(&recs[20..], 100)).await;
    assert_eq!((second.counted, second.duplicates), (20, 20));
    assert!(second.replans > 0, "{second:?}");
    assert_totals_eq(&read_aggregates(&store).await, &expected_totals(&recs));
    assert_eq!(marker_keys(&store).await, all_marked(&recs));

    // The items: capped buckets hold at most cap - 1 + max_ids_per_write.
    let page = client
        .scan()
        .table_name(store.table())
        .filter_expression("#k = :b")
        .expression_attribute_names("#k", "kind")
        .expression_attribute_values(":b", AttributeValue::S("marker_bucket".into()))
        .consistent_read(true)
        .send()
        .await
        .expect("scan");
    let mut levels = BTreeSet::new();
    for item in page.items() {
        let Some(AttributeValue::S(pk)) = item.get("pk") else {
            panic!("{item:?}")
        };
        let level: u8 = pk.split('#').nth(1).unwrap().parse().unwrap();
        levels.insert(level);
        let ids = meter_store::dynamo::bucket_state(item).ids.len();
        if level < 2 {
            assert!(ids <= 8, "{pk}: {ids} ids");
        }
        assert!(item.contains_key("expires_at"), "{pk}");
    }
    assert_eq!(levels, BTreeSet::from([0, 1, 2]), "every level used");

    // Everything again, in other batches, through a third process.
    let third = another_process(&store);
    for chunk in recs.chunks(17) {
        let r = ingest_with(&third, &settings, &envelope(chunk, 500)).await;
        assert_eq!(r.counted, 0);
    }
    assert_totals_eq(&read_aggregates(&store).await, &expected_totals(&recs));
}

/// Replaces the table's switch-over instant (tests only: the meter never
/// moves it).
async fn set_switch_over(store: &DynamoDbUsageStore, since: i64) {
    store
        .client()
        .delete_item()
        .table_name(store.table())
        .key("pk", AttributeValue::S("MARKERS".into()))
        .key("sk", AttributeValue::S("SCHEME".into()))
        .send()
        .await
        .expect("delete the switch-over item");
    if since != i64::MIN {
        store.put_switch_over(since).await.expect("put");
    }
}

fn epoch(rfc3339: &str) -> i64 {
    OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .unwrap()
        .unix_timestamp()
}

#[tokio::test]
async fn records_counted_with_per_record_markers_are_recognised_after_the_switch_over() {
    let client = local_client().await;
    let store = fresh_store(&client, "switch-over").await;
    let recs = corpus(120, 9, 3, 73); // 2026-10-30 .. 2026-11-01
    let switch = epoch("2026-10-31T00:00:00Z");
    let (before, after): (Vec<Rec>, Vec<Rec>) = recs
        .iter()
        .cloned()
        .partition(|r| epoch(&r.timestamp) < switch);
    assert!(!before.is_empty() && !after.is_empty());

    // An earlier version: a per-record marker for every record it counts
    // (it only ever sees records logged before the switch-over).
    set_switch_over(&store, i64::MAX).await;
    let old = another_process(&store);
    let r = ingest_with(&old, &CommitSettings::default(), &envelope(&before, 1)).await;
    assert_eq!(r.counted, before.len());
    let record_markers = client
        .scan()
        .table_name(store.table())
        .filter_expression("#k = :m")
        .expression_attribute_names("#k", "kind")
        .expression_attribute_values(":m", AttributeValue::S("marker".into()))
        .send()
        .await
        .unwrap()
        .items()
        .len();
    assert_eq!(record_markers, before.len(), "the earlier scheme's markers");

    // The new version on the same table: everything delivered again, in
    // other batches, plus the records logged after the switch-over.
    set_switch_over(&store, switch).await;
    let new = another_process(&store);
    let mut counted = 0;
    for chunk in recs.chunks(25) {
        counted += ingest_with(&new, &CommitSettings::default(), &envelope(chunk, 9))
            .await
            .counted;
    }
    assert_eq!(
        counted,
        after.len(),
        "only the records logged after the switch"
    );
    assert_totals_eq(&read_aggregates(&store).await, &expected_totals(&recs));
    assert_eq!(marker_keys(&store).await, all_marked(&recs));

    // And once more: nothing.
    let again = ingest_with(
        &another_process(&store),
        &CommitSettings::default(),
        &envelope(&recs, 7),
    )
    .await;
    assert_eq!((again.counted, again.duplicates), (0, recs.len()));
}

#[tokio::test]
async fn a_table_without_a_switch_over_instant_gets_one_a_margin_from_now_and_keeps_it() {
    let client = local_client().await;
    let store = fresh_store(&client, "switch-default").await;
    // `init` on a new table: buckets for every record.
    assert_eq!(store.buckets_since(0).await.unwrap(), 0);
    // A table an earlier version wrote (no switch-over item).
    set_switch_over(&store, i64::MIN).await;
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let first = another_process(&store).buckets_since(now).await.unwrap();
    assert_eq!(first, now + meter_store::dynamo::SWITCH_OVER_MARGIN_SECS);
    // A later writer keeps the first one's instant.
    let later = another_process(&store)
        .buckets_since(now + 3_600)
        .await
        .unwrap();
    assert_eq!(later, first);
    // A record logged before it gets a per-record marker; after it, a bucket.
    let mut recs = corpus(2, 1, 1, 74);
    recs[0].timestamp = "2026-10-30T00:00:00Z".into();
    let far = OffsetDateTime::from_unix_timestamp(first + 60).unwrap();
    recs[1].timestamp = far
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let r = ingest_with(
        &another_process(&store),
        &CommitSettings::default(),
        &envelope(&recs, 1),
    )
    .await;
    assert_eq!(r.counted, 2);
    let kinds: Vec<String> = client
        .scan()
        .table_name(store.table())
        .send()
        .await
        .unwrap()
        .items()
        .iter()
        .filter_map(|i| i.get("kind").and_then(|k| k.as_s().ok()).cloned())
        .filter(|k| k.starts_with("marker"))
        .collect();
    let count = |k: &str| kinds.iter().filter(|x| *x == k).count();
    assert_eq!(
        (count("marker"), count("marker_bucket")),
        (1, 1),
        "{kinds:?}"
    );
}
