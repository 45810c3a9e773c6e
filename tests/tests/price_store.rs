//! Price tables stored in the usage table (`meter_store::prices`), against
//! DynamoDB Local: precedence (PRICE_TABLE_PATH, stored, built-in), refusal of
//! invalid tables, the re-check interval (injected instants, no sleeps), the
//! fallback from a corrupt item with its metric, the `price-sync` Lambda's
//! handler run in process, and the CLI's `prices` origin line and `--store`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use integration_tests::*;
use meter_core::pricelist::map::PriceMap;
use meter_core::pricelist::offer::{self, OfferFile};
use meter_core::{Day, PriceTable};
use meter_store::prices::{
    self, PriceOrigin, PriceSource, PriceStore, PriceStoreError, StoreOutcome, DEFAULT_RECHECK,
    PRICES_PK,
};
use meter_store::DynamoDbUsageStore;
use price_sync::fetch::OfferSource;

/// The built-in table with another `checked` (and `version`): a table that
/// can only have come from the store.
fn table_checked(checked: &str) -> String {
    let base = meter_core::pricing::DEFAULT_PRICE_TABLE;
    let builtin_checked = PriceTable::builtin().meta().checked.clone();
    assert_ne!(
        builtin_checked, checked,
        "pick a date the built-in does not carry"
    );
    let text = base
        .replacen(
            &format!("checked = \"{builtin_checked}\""),
            &format!("checked = \"{checked}\""),
            1,
        )
        .replacen(
            &format!("version = \"{}\"", PriceTable::builtin().meta().version),
            &format!("version = \"{checked}\""),
            1,
        );
    assert_eq!(
        PriceTable::from_toml(&text).unwrap().meta().checked,
        checked
    );
    text
}

async fn store(test: &str) -> DynamoDbUsageStore {
    let client = local_client().await;
    fresh_store(&client, test).await
}

fn cli(table: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(workspace_binary("bedrock-meter", "bedrock-meter-cli"))
        .args(args)
        .env("USAGE_TABLE", table)
        .env_remove("PRICE_TABLE_PATH")
        .env_remove("RUST_LOG")
        .output()
        .expect("run bedrock-meter");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn temp_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "price-store-{}-{}",
        std::process::id(),
        fastrand::u32(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[tokio::test]
async fn a_stored_table_beats_the_built_in_and_price_table_path_beats_both() {
    let s = store("price-precedence").await;
    let t0 = Instant::now();

    // Nothing stored: the built-in.
    let (src, table) = PriceSource::start(None, s.clone(), DEFAULT_RECHECK, t0)
        .await
        .unwrap();
    assert_eq!(src.origin(), &PriceOrigin::Builtin);
    assert_eq!(table.meta().checked, PriceTable::builtin().meta().checked);

    let text = table_checked("2026-11-27");
    let outcome = prices::store_table(&s, &text, "2026-11-28T00:00:00Z")
        .await
        .unwrap();
    let StoreOutcome::Stored { pointer, bytes } = outcome else {
        panic!("not stored: {outcome:?}");
    };
    // The whole table compresses far below DynamoDB's 400 KB item limit.
    assert!(bytes < text.len() / 2 && bytes < 64 * 1024, "{bytes} bytes");
    assert_eq!(
        prices::store_table(&s, &text, "later").await.unwrap(),
        StoreOutcome::Unchanged {
            pointer: pointer.clone()
        },
        "the same text is not stored twice"
    );

    // Stored: it is used, and its age is counted from its own `checked`.
    let (mut src, table) = PriceSource::start(None, s.clone(), DEFAULT_RECHECK, t0)
        .await
        .unwrap();
    assert_eq!(table.meta().checked, "2026-11-27");
    assert!(matches!(src.origin(), PriceOrigin::Stored { sk, .. } if *sk == pointer.sk));
    let metrics = src.take_metrics(Day::parse("2026-11-30").unwrap());
    assert!(
        metrics.contains(&("PriceTableAgeDays", 3.0, "Count")),
        "{metrics:?}"
    );
    assert!(
        metrics.contains(&("PriceTableLoadFailures", 0.0, "Count")),
        "{metrics:?}"
    );

    // PRICE_TABLE_PATH: the file, and the store is never re-checked.
    let path = temp_file("mine.toml", &table_checked("2026-11-02"));
    let (mut src, table) = PriceSource::start(Some(&path), s.clone(), Duration::ZERO, t0)
        .await
        .unwrap();
    assert_eq!(table.meta().checked, "2026-11-02");
    assert_eq!(src.origin(), &PriceOrigin::Path(path.clone()));
    assert!(src.refresh(t0 + Duration::from_secs(3600)).await.is_none());

    // The CLI says where its table came from and how old it is.
    let (code, out, err) = cli(s.table(), &["prices"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(&format!(
            "price table: stored in the usage table: {PRICES_PK} {}",
            pointer.sk
        )),
        "{out}"
    );
    assert!(out.contains("checked 2026-11-27"), "{out}");
    assert!(out.contains("days since checked"), "{out}");
}

#[tokio::test]
async fn a_table_failing_validation_is_refused_and_not_stored() {
    let s = store("price-invalid").await;
    // Seven decimals cannot be exact in the table's units (pico-dollars per token).
    let good = table_checked("2026-11-27");
    let first_input = good
        .lines()
        .find(|l| l.starts_with("input = "))
        .expect("an input rate");
    let bad = good.replacen(first_input, "input = \"0.0000001\"", 1);
    assert!(
        PriceTable::from_toml(&bad).is_err(),
        "the fixture must be invalid"
    );
    let err = prices::store_table(&s, &bad, "now").await.unwrap_err();
    assert!(matches!(err, PriceStoreError::Invalid(_)), "{err}");
    assert!(err.to_string().contains("nothing was stored"), "{err}");
    assert_eq!(s.get_pointer().await.unwrap(), None);

    // The CLI refuses it too, and stores nothing.
    let path = temp_file("bad.toml", &bad);
    let (code, _, err) = cli(
        s.table(),
        &["prices", "--check", path.to_str().unwrap(), "--store"],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is not a valid price table"), "{err}");
    assert_eq!(s.get_pointer().await.unwrap(), None);

    // A valid one is stored by the same command.
    let good = temp_file("good.toml", &table_checked("2026-11-26"));
    let (code, _, err) = cli(
        s.table(),
        &["prices", "--check", good.to_str().unwrap(), "--store"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("bytes gzip"), "{err}");
    assert_eq!(
        s.get_pointer().await.unwrap().unwrap().checked,
        "2026-11-26"
    );
}

#[tokio::test]
async fn a_newer_stored_table_is_picked_up_after_the_recheck_interval_and_not_before() {
    let s = store("price-recheck").await;
    prices::store_table(&s, &table_checked("2026-11-20"), "t1")
        .await
        .unwrap();
    let t0 = Instant::now();
    let interval = Duration::from_secs(600);
    let (mut src, table) = PriceSource::start(None, s.clone(), interval, t0)
        .await
        .unwrap();
    assert_eq!(table.meta().checked, "2026-11-20");

    prices::store_table(&s, &table_checked("2026-11-29"), "t2")
        .await
        .unwrap();
    assert!(src.refresh(t0 + Duration::from_secs(1)).await.is_none());
    assert!(src
        .refresh(t0 + interval - Duration::from_millis(1))
        .await
        .is_none());
    let newer = src
        .refresh(t0 + interval)
        .await
        .expect("the newer table after the interval");
    assert_eq!(newer.meta().checked, "2026-11-29");
    // Nothing new: the next due re-check switches nothing.
    assert!(src.refresh(t0 + 2 * interval).await.is_none());
    let metrics = src.take_metrics(Day::parse("2026-11-30").unwrap());
    assert!(
        metrics.contains(&("PriceTableAgeDays", 1.0, "Count")),
        "{metrics:?}"
    );
}

/// Overwrites the `table` attribute of the newest stored version.
async fn corrupt_newest(s: &DynamoDbUsageStore, body: Vec<u8>) {
    let sk = s.get_pointer().await.unwrap().unwrap().sk;
    local_client()
        .await
        .update_item()
        .table_name(s.table())
        .key("pk", AttributeValue::S(PRICES_PK.into()))
        .key("sk", AttributeValue::S(sk))
        .update_expression("SET #t = :b")
        .expression_attribute_names("#t", "table")
        .expression_attribute_values(":b", AttributeValue::B(Blob::new(body)))
        .send()
        .await
        .expect("corrupt the item");
}

#[tokio::test]
async fn a_corrupt_stored_item_falls_back_to_the_built_in_and_is_counted() {
    let s = store("price-corrupt").await;
    prices::store_table(&s, &table_checked("2026-11-27"), "t1")
        .await
        .unwrap();
    corrupt_newest(&s, b"\x1f\x8b not really gzip".to_vec()).await;
    let t0 = Instant::now();
    let (mut src, table) = PriceSource::start(None, s.clone(), DEFAULT_RECHECK, t0)
        .await
        .unwrap();
    assert_eq!(src.origin(), &PriceOrigin::Builtin);
    assert_eq!(table.meta().checked, PriceTable::builtin().meta().checked);
    let today = Day::parse("2026-11-30").unwrap();
    let metrics = src.take_metrics(today);
    assert!(
        metrics.contains(&("PriceTableLoadFailures", 1.0, "Count")),
        "{metrics:?}"
    );

    // Valid gzip of a table that fails validation: the same.
    let s2 = store("price-corrupt-invalid").await;
    let text = table_checked("2026-11-27");
    prices::store_table(&s2, &text, "t1").await.unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, text.replacen("[meta]", "[meta", 1).as_bytes()).unwrap();
    corrupt_newest(&s2, gz.finish().unwrap()).await;
    let (mut src2, table) = PriceSource::start(None, s2.clone(), DEFAULT_RECHECK, t0)
        .await
        .unwrap();
    assert_eq!(src2.origin(), &PriceOrigin::Builtin);
    assert_eq!(table.meta().checked, PriceTable::builtin().meta().checked);
    assert!(src2
        .take_metrics(today)
        .contains(&("PriceTableLoadFailures", 1.0, "Count")));

    // A running function keeps its table when a newer stored one is corrupt.
    prices::store_table(&s, &table_checked("2026-11-29"), "t2")
        .await
        .unwrap();
    corrupt_newest(&s, vec![0; 16]).await;
    assert!(src.refresh(t0 + DEFAULT_RECHECK).await.is_none());
    assert_eq!(src.origin(), &PriceOrigin::Builtin);
    assert!(src
        .take_metrics(today)
        .contains(&("PriceTableLoadFailures", 1.0, "Count")));
}

#[tokio::test]
async fn the_ingest_functions_read_the_stored_table_with_one_get_item_of_the_pointer() {
    // What both ingest mains do at start, through clients recorded as the
    // functions (for infra/iam_check.py): GetItem of the pointer, then of
    // the version it names.
    let s = store("price-ingest-start").await;
    prices::store_table(&s, &table_checked("2026-11-27"), "t1")
        .await
        .unwrap();
    for component in ["ingest", "kinesis-ingest"] {
        let as_function = store_as(component, s.table()).await;
        let (src, table) = PriceSource::start(None, as_function, DEFAULT_RECHECK, Instant::now())
            .await
            .unwrap();
        assert_eq!(table.meta().checked, "2026-11-27", "{component}");
        assert!(
            matches!(src.origin(), PriceOrigin::Stored { .. }),
            "{component}"
        );
    }
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/pricelist")
}

/// The Price List fixtures of tests/prices_sync.rs, as the Lambda would
/// download them.
struct FixtureOffers;

impl OfferSource for FixtureOffers {
    async fn offers(&self, _regions: &[String]) -> anyhow::Result<Vec<OfferFile>> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p, out);
                } else if p.extension().is_some_and(|x| x == "json") {
                    out.push(p);
                }
            }
        }
        let mut paths = Vec::new();
        walk(&fixtures(), &mut paths);
        paths.sort();
        let mut files = Vec::new();
        for p in paths {
            let text = std::fs::read_to_string(&p)?;
            files.push(offer::parse_file(&p.display().to_string(), &text)?);
        }
        Ok(files)
    }
}

#[tokio::test]
async fn the_price_sync_lambda_syncs_onto_the_stored_table_and_stores_the_result_once() {
    let s = store("price-sync-lambda").await;
    let base = std::fs::read_to_string(fixtures().join("base.toml")).unwrap();
    prices::store_table(&s, &base, "t0").await.unwrap();
    let map_text = std::fs::read_to_string(fixtures().join("map.toml")).unwrap();
    let job = price_sync::SyncJob {
        regions: vec!["us-east-1".into(), "ap-northeast-1".into()],
        map: PriceMap::from_toml("map.toml", &map_text).unwrap(),
    };
    // The handler as the Lambda runs it, its calls recorded as price-sync's.
    let lambda_store = store_as("price-sync", s.table()).await;
    let now = time::macros::datetime!(2026-11-30 06:00 UTC);
    let first = price_sync::run(&lambda_store, &FixtureOffers, &job, now)
        .await
        .unwrap();
    assert_eq!(first.result, "stored", "{first:?}");
    assert!(first.base.starts_with("stored V#"), "{first:?}");
    assert!(first.entries_added > 0, "{first:?}");
    // The stored table is exactly the CLI's golden sync of the same data.
    let (_, _, text) = prices::load_newest(&s).await.unwrap().unwrap();
    let golden = std::fs::read_to_string(fixtures().join("expected.toml")).unwrap();
    assert!(
        text == golden,
        "the stored table differs from tests/fixtures/pricelist/expected.toml"
    );

    let again = price_sync::run(&lambda_store, &FixtureOffers, &job, now)
        .await
        .unwrap();
    assert_eq!(
        (again.result, again.sk.as_str()),
        ("unchanged", first.sk.as_str())
    );
}

#[tokio::test]
async fn a_price_sync_with_data_errors_stores_nothing() {
    let s = store("price-sync-errors").await;
    // A map entry that matches no row of an offer that was read (a renamed
    // model) is a data error.
    let job = price_sync::SyncJob {
        regions: vec!["us-east-1".into()],
        map: PriceMap::from_toml(
            "renamed.toml",
            "[[model]]\noffer = \"AmazonBedrock\"\nmodel = \"A Model Renamed Since\"\nmodels = [\"amazon.nova-micro-v1:0\"]\n",
        )
        .unwrap(),
    };
    let lambda_store = store_as("price-sync", s.table()).await;
    let err = price_sync::run(
        &lambda_store,
        &FixtureOffers,
        &job,
        time::OffsetDateTime::now_utc(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("nothing stored"), "{err:#}");
    assert_eq!(s.get_pointer().await.unwrap(), None);
}
