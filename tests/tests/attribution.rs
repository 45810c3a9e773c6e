//! Attribution beyond the user on the official DynamoDB Local: tag
//! aggregates (`ATTRIBUTION_TAGS`) counted exactly once with the rest, read
//! back through their one-Query access patterns and `report --tag`, and
//! per-request costs from the markers (`bedrock-meter cost`).
//!
//! Expected totals come from `integration_tests::expected_tag_totals`, which
//! shares no code with the pipeline.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use integration_tests::*;
use meter_core::{Day, Meter, Month};
use meter_store::plan::PlannedTx;
use meter_store::{ingest_payload, CommitSettings, StoreError, TxCommitted, UsageStore};
use time::OffsetDateTime;

const KEYS: [&str; 2] = ["team", "feature"];
/// A value holding the key delimiter, the escape characters and markup.
const ODD_VALUE: &str = "a#b%23~<script>x</script>";

fn tag_meter() -> Meter {
    Meter {
        attribution_tags: KEYS.iter().map(|k| Arc::from(*k)).collect(),
        ..Meter::with_defaults()
    }
}

/// Each record's extra `requestMetadata`: a team for four in five records
/// (one of them [`ODD_VALUE`]), a feature for every other record, and an
/// empty feature (counted as untagged) for some.
fn tags_for(i: usize) -> Vec<(String, String)> {
    let mut tags = Vec::new();
    if i % 5 != 0 {
        let team = ["payments", "search", ODD_VALUE][i % 3];
        tags.push(("team".to_string(), team.to_string()));
    }
    if i % 2 == 0 {
        tags.push(("feature".to_string(), "chat".to_string()));
    } else if i % 7 == 0 {
        tags.push(("feature".to_string(), " ".to_string()));
    }
    tags
}

fn tagged_corpus(n: usize, seed: u64) -> Vec<(Rec, Vec<(String, String)>)> {
    corpus(n, 25, 3, seed)
        .into_iter()
        .enumerate()
        .map(|(i, r)| (r, tags_for(i)))
        .collect()
}

fn messages(recs: &[(Rec, Vec<(String, String)>)]) -> Vec<String> {
    recs.iter().map(|(r, t)| tagged_json(r, t)).collect()
}

/// Everything the table should hold: the user/model aggregates and the tag
/// aggregates, both computed independently.
fn expected_all(recs: &[(Rec, Vec<(String, String)>)]) -> BTreeMap<AggKey, Totals> {
    let plain: Vec<Rec> = recs.iter().map(|(r, _)| r.clone()).collect();
    let mut all = expected_totals(&plain);
    all.extend(expected_tag_totals(recs, &KEYS));
    all
}

async fn ingest_at<S: UsageStore>(
    store: &S,
    meter: &Meter,
    payload: &[u8],
    now: OffsetDateTime,
) -> Result<meter_store::IngestReport, String> {
    // Per-request costs on: `bedrock-meter cost` reads them.
    let settings = CommitSettings {
        request_costs: true,
        ..CommitSettings::default()
    };
    ingest_payload(store, meter, &settings, payload, now)
        .await
        .map(|i| i.report)
        .map_err(|e| e.to_string())
}

/// Commits the first `allowed` transactions, then fails as a crashed
/// function would.
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

/// Sums the (invocations, input tokens, exact cost) of the read aggregates
/// selected by `pick`; costs as integer pico-dollars parsed from the stored
/// decimals.
fn sum_of(actual: &BTreeMap<AggKey, Totals>, pick: impl Fn(&AggKey) -> bool) -> (u128, u128, u128) {
    actual
        .iter()
        .filter(|(k, _)| pick(k))
        .fold((0, 0, 0), |(n, i, c), (_, t)| {
            (
                n + t.invocations,
                i + t.input_tokens,
                c + picos(&t.cost_usd),
            )
        })
}

fn picos(decimal: &str) -> u128 {
    let (whole, frac) = decimal.split_once('.').unwrap_or((decimal, ""));
    assert!(frac.len() <= 12, "{decimal}");
    whole.parse::<u128>().unwrap() * 1_000_000_000_000
        + format!("{frac:0<12}").parse::<u128>().unwrap()
}

#[tokio::test]
async fn tag_totals_equal_their_records_across_a_crash_redelivery_and_rebatching() {
    let client = local_client().await;
    let store = fresh_store(&client, "tags-exactly-once").await;
    let recs = tagged_corpus(300, 41);
    let meter = tag_meter();
    let event = envelope_of_messages(&messages(&recs), 50_000);
    let now = OffsetDateTime::now_utc();
    // Crash after the first transaction: its records (and their tag
    // increments) are in, nothing else.
    let crashing = CrashAfter {
        inner: store.clone(),
        allowed: AtomicUsize::new(1),
    };
    let err = ingest_at(&crashing, &meter, &event, now)
        .await
        .expect_err("the crash fails the batch");
    assert!(err.contains("simulated crash"), "{err}");
    let partial = marker_count(&store).await;
    assert!(partial > 0 && partial < 300, "{partial}");
    // Redelivery of the same event, then the same records re-batched as
    // newline-delimited files of 70.
    let retry = ingest_at(&store, &meter, &event, now).await.unwrap();
    assert_eq!((retry.counted, retry.duplicates), (300 - partial, partial));
    for chunk in recs.chunks(70) {
        let lines: String = messages(chunk).iter().map(|m| format!("{m}\n")).collect();
        let r = ingest_at(&store, &meter, lines.as_bytes(), now)
            .await
            .unwrap();
        assert_eq!(r.counted, 0);
    }
    let actual = read_aggregates(&store).await;
    let expected = expected_all(&recs);
    assert!(expected.keys().any(|k| k.0 == "tag_model_day"));
    assert!(expected.contains_key(&(
        "tag_month".into(),
        format!("team={ODD_VALUE}"),
        String::new(),
        "2026-10".into()
    )));
    assert_totals_eq(&actual, &expected);
}

#[tokio::test]
async fn untagged_records_count_and_every_keys_values_add_up_to_the_organisation() {
    let client = local_client().await;
    let store = fresh_store(&client, "tags-add-up").await;
    let recs = tagged_corpus(240, 42);
    let report = ingest_at(
        &store,
        &tag_meter(),
        &envelope_of_messages(&messages(&recs), 60_000),
        OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    assert_eq!(report.counted, 240);
    let actual = read_aggregates(&store).await;
    assert_totals_eq(&actual, &expected_all(&recs));
    // Records without the key (or with an empty value) are `untagged`.
    let untagged = sum_of(&actual, |k| k.0 == "tag_month" && k.1 == "team=untagged");
    assert_eq!(
        untagged.0 as usize,
        (0..240).filter(|i| i % 5 == 0).count(),
        "team is absent from every fifth record"
    );
    let blank = sum_of(&actual, |k| k.0 == "tag_month" && k.1 == "feature=untagged");
    assert_eq!(
        blank.0 as usize,
        (0..240).filter(|i| i % 2 == 1).count(),
        "absent and blank features are untagged"
    );
    // Per key, per day and per month: the values sum to the organisation.
    for key in KEYS {
        let prefix = format!("{key}=");
        for day in ["2026-10-30", "2026-10-31", "2026-11-01"] {
            let org = sum_of(&actual, |k| k.0 == "model_day" && k.3 == day);
            let tags = sum_of(&actual, |k| {
                k.0 == "tag_model_day" && k.1.starts_with(&prefix) && k.3 == day
            });
            assert!(org.0 > 0, "{day}");
            assert_eq!(tags, org, "{key} on {day}");
        }
        for month in ["2026-10", "2026-11"] {
            let org = sum_of(&actual, |k| k.0 == "user_month" && k.3 == month);
            let tags = sum_of(&actual, |k| {
                k.0 == "tag_month" && k.1.starts_with(&prefix) && k.3 == month
            });
            assert_eq!(tags, org, "{key} in {month}");
        }
    }
    // The one-Query access patterns return exactly the tag's items.
    let month = Month::parse("2026-10").unwrap();
    let rows = store.tag_values_in_month("team", month).await.unwrap();
    let mut values: Vec<String> = rows.iter().filter_map(|r| r.value.clone()).collect();
    values.sort();
    assert_eq!(values, [ODD_VALUE, "payments", "search", "untagged"]);
    let odd = rows
        .iter()
        .find(|r| r.value.as_deref() == Some(ODD_VALUE))
        .unwrap();
    let want = &actual[&(
        "tag_month".to_string(),
        format!("team={ODD_VALUE}"),
        String::new(),
        "2026-10".to_string(),
    )];
    assert_eq!(
        (odd.invocations, normalise_decimal(&odd.cost_usd)),
        (want.invocations, want.cost_usd.clone())
    );
    let day = Day::parse("2026-10-31").unwrap();
    let per_model = store.tag_values_on_day("feature", day).await.unwrap();
    assert!(per_model.iter().all(|r| r.kind == "tag_model_day"
        && r.tag.as_deref() == Some("feature")
        && r.day.as_deref() == Some("2026-10-31")));
    assert_eq!(
        per_model.len(),
        actual
            .keys()
            .filter(|k| k.0 == "tag_model_day"
                && k.1.starts_with("feature=")
                && k.3 == "2026-10-31")
            .count()
    );
}

fn cli_binary() -> PathBuf {
    workspace_binary("bedrock-meter", "bedrock-meter-cli")
}

/// Runs the CLI on `table`: (exit code, stdout, stderr).
fn cli(table: &str, args: &[&str], tags: Option<&str>) -> (i32, String, String) {
    let mut c = Command::new(cli_binary());
    c.args(args)
        .env("USAGE_TABLE", table)
        .env("REQUEST_COSTS", "on")
        .env_remove("RUST_LOG")
        .env_remove("PRICE_TABLE_PATH")
        .stdin(Stdio::null());
    match tags {
        Some(t) => c.env("ATTRIBUTION_TAGS", t),
        None => c.env_remove("ATTRIBUTION_TAGS"),
    };
    let out = c.output().expect("run bedrock-meter");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[tokio::test]
async fn replay_with_tags_then_report_by_tag_and_look_up_single_requests() {
    let client = local_client().await;
    let store = fresh_store(&client, "tags-cli").await;
    let table = store.table().to_string();
    let recs = tagged_corpus(90, 43);
    let dir = std::env::temp_dir().join(format!("bm-tags-{}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("records.jsonl");
    let lines: String = messages(&recs).iter().map(|m| format!("{m}\n")).collect();
    std::fs::write(&file, lines).unwrap();
    let (code, _, err) = cli(
        &table,
        &["replay", file.to_str().unwrap()],
        Some("team,feature"),
    );
    assert_eq!(code, 0, "{err}");
    let _ = std::fs::remove_dir_all(&dir);
    let expected = expected_all(&recs);
    assert_totals_eq(&read_aggregates(&store).await, &expected);

    // report --tag team for one day: a row per value, then the organisation.
    let day = "2026-10-31";
    let (code, out, err) = cli(
        &table,
        &["report", "--tag", "team", "--day", day, "--format", "json"],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let rows = json_lines(&out);
    let mut want_values: BTreeMap<String, (u128, u128)> = BTreeMap::new();
    for (k, t) in expected
        .iter()
        .filter(|(k, _)| k.0 == "tag_model_day" && k.1.starts_with("team=") && k.3 == day)
    {
        let e = want_values
            .entry(k.1["team=".len()..].to_string())
            .or_default();
        e.0 += t.invocations;
        e.1 += picos(&t.cost_usd);
    }
    let got_values: BTreeMap<String, (u128, u128)> = rows
        .iter()
        .filter(|r| r["kind"] == "tag_day")
        .map(|r| {
            (
                r["value"].as_str().unwrap().to_string(),
                (
                    r["invocations"].as_u64().unwrap().into(),
                    picos(r["cost_usd"].as_str().unwrap()),
                ),
            )
        })
        .collect();
    assert_eq!(got_values, want_values);
    assert!(got_values.contains_key(ODD_VALUE));
    let org = rows
        .iter()
        .find(|r| r["kind"] == "organisation_day")
        .expect("organisation row");
    let org_want = expected
        .iter()
        .filter(|(k, _)| k.0 == "model_day" && k.3 == day)
        .fold(0u128, |n, (_, t)| n + t.invocations);
    assert_eq!(u128::from(org["invocations"].as_u64().unwrap()), org_want);

    // report --tag team=VALUE (the odd value, `=`-free) per model and day, as CSV.
    let (code, out, err) = cli(
        &table,
        &[
            "report",
            "--tag",
            &format!("team={ODD_VALUE}"),
            "--from",
            "2026-10-30",
            "--to",
            "2026-11-01",
            "--format",
            "csv",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let mut lines = out.lines();
    assert_eq!(
        lines.next(),
        Some("kind,tag,value,model,period,invocations,errors,input,output,cache_read,cache_write,unpriced,cost_usd")
    );
    let got: Vec<(String, String, u128)> = lines
        .filter(|l| l.starts_with("tag_model_day,"))
        .map(|l| {
            let c: Vec<&str> = l.split(',').collect();
            assert_eq!((c[1], c[2]), ("team", ODD_VALUE), "{l}");
            (c[3].to_string(), c[4].to_string(), c[5].parse().unwrap())
        })
        .collect();
    let want: Vec<(String, String, u128)> = expected
        .iter()
        .filter(|(k, _)| k.0 == "tag_model_day" && k.1 == format!("team={ODD_VALUE}"))
        .map(|(k, t)| (k.2.clone(), k.3.clone(), t.invocations))
        .collect();
    let (mut got, mut want) = (got, want);
    got.sort();
    want.sort();
    assert!(!want.is_empty());
    assert_eq!(got, want);

    // A bad --tag says what to do.
    let (code, _, err) = cli(&table, &["report", "--tag", "=x"], None);
    assert_ne!(code, 0);
    assert!(err.contains("ATTRIBUTION_TAGS"), "{err}");

    // cost: two counted requests and an unknown one.
    let (a, b) = (&recs[3].0, &recs[10].0);
    let (code, out, err) = cli(
        &table,
        &[
            "cost",
            &a.request_id,
            &b.request_id,
            "never-seen",
            "--format",
            "json",
        ],
        None,
    );
    assert_eq!(code, 1, "a missing id fails the command: {err}");
    assert!(err.contains("MARKER_TTL_DAYS"), "{err}");
    let rows = json_lines(&out);
    assert_eq!(rows.len(), 3);
    for (row, r) in rows.iter().zip([a, b]) {
        let (cost, unpriced) = expected_record_cost(r);
        assert_eq!(row["request_id"], r.request_id.as_str());
        assert_eq!(row["status"], "found");
        assert_eq!(row["user"], r.user.as_str());
        assert_eq!(row["model"], r.model);
        assert_eq!(row["day"], &r.timestamp[..10]);
        assert_eq!(row["input_tokens"].as_u64(), Some(r.input));
        assert_eq!(row["output_tokens"].as_u64(), Some(r.output));
        assert_eq!(row["cache_read_input_tokens"].as_u64(), Some(r.cache_read));
        assert_eq!(normalise_decimal(row["cost_usd"].as_str().unwrap()), cost);
        assert_eq!(
            row["unpriced_invocations"].as_u64(),
            Some(u64::from(unpriced))
        );
    }
    assert_eq!(rows[2]["status"], "not_found");
    assert!(rows[2].get("cost_usd").is_none());
    let (code, out, _) = cli(&table, &["cost", &a.request_id, "--format", "csv"], None);
    assert_eq!(code, 0);
    assert!(out
        .lines()
        .nth(1)
        .unwrap()
        .starts_with(&format!("{},found,", a.request_id)));
}

#[tokio::test]
async fn a_request_whose_marker_expiry_is_past_is_reported_expired_not_found() {
    let client = local_client().await;
    let store = fresh_store(&client, "cost-expired").await;
    let table = store.table().to_string();
    let recs = corpus(2, 1, 1, 44);
    let meter = Meter::with_defaults();
    // Counted now: the marker lives MARKER_TTL_DAYS (35) from now.
    ingest_at(
        &store,
        &meter,
        &ndjson(&recs[..1]),
        OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    // Counted 36 days ago: expires_at is in the past, but DynamoDB Local
    // (like DynamoDB, for up to days) has not deleted the item.
    let long_ago = OffsetDateTime::now_utc() - time::Duration::days(36);
    ingest_at(&store, &meter, &ndjson(&recs[1..]), long_ago)
        .await
        .unwrap();
    assert_eq!(
        marker_count(&store).await,
        2,
        "both markers are still stored"
    );
    let (code, out, _) = cli(
        &table,
        &[
            "cost",
            &recs[0].request_id,
            &recs[1].request_id,
            "--format",
            "json",
        ],
        None,
    );
    assert_eq!(code, 1);
    let rows = json_lines(&out);
    assert_eq!(rows[0]["status"], "found");
    assert_eq!(
        normalise_decimal(rows[0]["cost_usd"].as_str().unwrap()),
        expected_record_cost(&recs[0]).0
    );
    assert_eq!(rows[1]["status"], "expired");
    assert!(rows[1].get("cost_usd").is_none());
    let (_, table_out, _) = cli(&table, &["cost", &recs[1].request_id], None);
    assert!(table_out.contains("expired"), "{table_out}");
}
