//! `bedrock-meter reconcile` as an operator runs it: the real binary, the
//! meter side replayed from invocation-log records into DynamoDB Local, the
//! bill from the CUR 2.0 fixtures of tests/fixtures/cur (plain CSV, gzip CSV
//! in an export folder with its manifest, Parquet) and saved Cost Explorer
//! responses.
//!
//! The fixture scenario (tests/fixtures/cur/generate.py) reaches every
//! status; the expected amounts below are worked out by hand from the
//! published rates, not by the code under test. `now` is fixed at
//! 2026-11-17T12:00:00Z, so with 72 settle hours 2026-11-14 is unsettled.
//!
//! Needs the CLI binary (`cargo build -p bedrock-meter-cli`) and DynamoDB
//! Local (scripts/with-dynamodb-local.sh).

use std::path::PathBuf;
use std::process::{Command, Stdio};

use integration_tests::*;
use serde_json::Value;

const NOW: &str = "2026-11-17T12:00:00Z";

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/cur")
}

fn fixture(rel: &str) -> String {
    fixtures().join(rel).display().to_string()
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn cli(table: &str, args: &[&str]) -> Out {
    cli_with_tags(table, args, None)
}

/// The CLI with `ATTRIBUTION_TAGS` set to `tags` (or unset).
fn cli_with_tags(table: &str, args: &[&str], tags: Option<&str>) -> Out {
    let mut c = Command::new(workspace_binary("bedrock-meter", "bedrock-meter-cli"));
    c.args(args)
        .env("USAGE_TABLE", table)
        .env_remove("RUST_LOG")
        .env_remove("PRICE_TABLE_PATH")
        .stdin(Stdio::null());
    match tags {
        Some(t) => c.env("ATTRIBUTION_TAGS", t),
        None => c.env_remove("ATTRIBUTION_TAGS"),
    };
    let out = c.output().expect("run bedrock-meter");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A fresh table holding the fixture's invocation records, replayed
/// through the same ingest path as the Lambda.
async fn metered_table(test: &str) -> String {
    let client = local_client().await;
    let store = fresh_store(&client, test).await;
    let out = cli(store.table(), &["replay", &fixture("meter-events.jsonl")]);
    assert_eq!(out.code, 0, "replay failed: {}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("59 counted") && out.stdout.contains("0 skipped"),
        "{}",
        out.stdout
    );
    store.table().to_string()
}

/// Runs reconcile over `from`..`to` with `bill` arguments; JSON output.
fn reconcile(table: &str, bill: &[&str], from: &str, to: &str, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["reconcile"];
    args.extend_from_slice(bill);
    args.extend_from_slice(&["--from", from, "--to", to, "--now", NOW, "--format", "json"]);
    args.extend_from_slice(extra);
    let out = cli(table, &args);
    let doc = serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: not JSON ({e}), exit {}:\n{}\n{}",
            out.code, out.stdout, out.stderr
        )
    });
    (out.code, doc)
}

/// (day, model, status, metered_usd, billed_usd, adjustments_usd) of every row.
fn rows(doc: &Value) -> Vec<(String, String, String, String, String, String)> {
    doc["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            (
                s("day"),
                s("model"),
                s("status"),
                s("metered_usd"),
                s("billed_usd"),
                s("adjustments_usd"),
            )
        })
        .collect()
}

fn row<'a>(doc: &'a Value, day: &str, model: &str) -> &'a Value {
    doc["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["day"] == day && r["model"] == model)
        .unwrap_or_else(|| panic!("no row {day} {model} in {doc}"))
}

fn hint_codes(r: &Value) -> Vec<String> {
    r["hints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["code"].as_str().unwrap().to_string())
        .collect()
}

const NOVA_MICRO: &str = "amazon.nova-micro-v1:0";
const NOVA_LITE: &str = "amazon.nova-lite-v1:0";
const SONNET_4: &str = "anthropic.claude-sonnet-4-20250514-v1:0";
const SONNET_45: &str = "anthropic.claude-sonnet-4-5-20250929-v1:0";
const HAIKU_45: &str = "anthropic.claude-haiku-4-5-20251001-v1:0";
const OPUS_46: &str = "anthropic.claude-opus-4-6-v1";

/// Every row of the fixture, worked out from the published rates (USD per
/// 1M tokens) and the events' tokens.
fn expected_rows() -> Vec<(String, String, String, String, String, String)> {
    let r = |day: &str, model: &str, status: &str, metered: &str, billed: &str, adj: &str| {
        (
            day.to_string(),
            model.to_string(),
            status.to_string(),
            metered.to_string(),
            billed.to_string(),
            adj.to_string(),
        )
    };
    vec![
        // 1M in × 0.035 + 200k out × 0.14 + 400k cache read × 0.00875; a $0.05 credit apart.
        r("2026-11-10", NOVA_MICRO, "OK", "0.0665", "0.0665", "-0.05"),
        // 100k × 3 + 20k × 15 + 40k cache write × 3.75.
        r("2026-11-10", SONNET_4, "OK", "0.75", "0.75", "0"),
        // global: 2M × 3 + 100k × 15 + 1M cache read × 0.3 = 7.8; the profile: 100k × 3.3.
        // (6 + 1.5 + 0.3 + 0.33 is 8.129999999999999 in floating point.)
        r("2026-11-10", SONNET_45, "OK", "8.13", "8.13", "0"),
        // Batch: 5M × 0.03 + 500k × 0.12, never in invocation logs.
        r("2026-11-11", NOVA_LITE, "BILL_ONLY", "0", "0.21", "0"),
        // Metered 2M × 0.035; billed 1.5M.
        r("2026-11-11", NOVA_MICRO, "OVER", "0.07", "0.0525", "0"),
        // 10k × 1.1 + 2k × 5.5, no bill lines.
        r("2026-11-11", HAIKU_45, "METER_ONLY", "0.022", "0", "0"),
        // 1M × 3.3 + 100k × 16.5 + 200k × 4.125 (5-minute); billed 200k × 6.6 (1-hour).
        r("2026-11-11", SONNET_45, "UNDER", "5.775", "6.27", "0"),
        r(
            "2026-11-12",
            "AmazonBedrockService Claude4.6Opus",
            "UNMAPPED",
            "0",
            "0.5",
            "0",
        ),
        r("2026-11-12", NOVA_MICRO, "OK", "0.0035", "0.0035", "0"),
        // global: 50k × 5 + 10k × 25; its bill lines are the unmapped ones.
        r("2026-11-12", OPUS_46, "METER_ONLY", "0.5", "0", "0"),
        // No bill data at all for the day.
        r("2026-11-13", NOVA_MICRO, "METER_ONLY", "0.0035", "0", "0"),
        // 1M × 3 (global); the bill so far has 400k.
        r("2026-11-14", SONNET_45, "UNSETTLED", "3", "1.2", "0"),
    ]
}

#[tokio::test]
async fn every_status_is_reached_with_exact_sums_and_an_incomplete_comparison_exits_3() {
    let table = metered_table("reconcile-statuses").await;
    let (code, doc) = reconcile(
        &table,
        &["--cur", &fixture("csv")],
        "2026-11-10",
        "2026-11-14",
        &[],
    );
    assert_eq!(rows(&doc), expected_rows());
    // UNMAPPED and a day without bill data make it incomplete: 3 wins over 1.
    assert_eq!(code, 3, "{doc}");
    let s = &doc["summary"];
    assert_eq!(s["exit_code"], 3);
    assert_eq!(s["metered_usd"], "18.3205");
    assert_eq!(s["billed_usd"], "17.1825");
    // The credit (-0.05) and the tax line (0.07).
    assert_eq!(s["adjustments_usd"], "0.02");
    assert_eq!(s["unattributed_adjustments_usd"], "0.07");
    assert_eq!(
        s["not_metered"]["USE1-Guardrails-ContentPolicyUnits"],
        "0.15"
    );
    assert_eq!(s["other_lines"], 1, "the EC2 line");
    assert_eq!(s["missing_days"], serde_json::json!(["2026-11-13"]));
    assert_eq!(s["unsettled_from"], "2026-11-14");

    // Tokens are compared exactly, per class.
    let under = row(&doc, "2026-11-11", SONNET_45);
    assert_eq!(under["metered_tokens"], under["billed_tokens"]);
    assert_eq!(under["billed_tokens"]["cache_write"], "200000");
    assert_eq!(under["billed_cache_write_1h_tokens"], "200000");
    assert_eq!(under["gap_usd"], "0.495");
    let over = row(&doc, "2026-11-11", NOVA_MICRO);
    assert_eq!(over["metered_tokens"]["input"], "2000000");
    assert_eq!(over["billed_tokens"]["input"], "1500000");

    // Hints explain each gap from the lines seen.
    let hints = |day, model| hint_codes(row(&doc, day, model));
    assert!(hints("2026-11-10", NOVA_MICRO).contains(&"credits".to_string()));
    assert!(hints("2026-11-10", SONNET_45).contains(&"global_route".to_string()));
    assert!(hints("2026-11-11", SONNET_45).contains(&"cache_write_1h".to_string()));
    assert_eq!(hints("2026-11-11", NOVA_LITE), ["batch", "bill_only_lines"]);
    assert_eq!(hints("2026-11-11", HAIKU_45), ["no_bill_lines"]);
    assert_eq!(hints("2026-11-13", NOVA_MICRO), ["no_bill_data"]);
    assert!(
        hints("2026-11-12", "AmazonBedrockService Claude4.6Opus").contains(&"unmapped".to_string())
    );
    assert!(
        !doc.to_string().contains("0000000000"),
        "no float drift anywhere: {doc}"
    );
}

#[tokio::test]
async fn each_exit_code_is_reached_by_the_days_asked_for() {
    let table = metered_table("reconcile-exit-codes").await;
    let csv = fixture("csv/bedrock-cur-00001.csv");
    let cases = [
        ("2026-11-10", "2026-11-10", 0, "every settled row OK"),
        (
            "2026-11-11",
            "2026-11-11",
            1,
            "UNDER, OVER, BILL_ONLY, METER_ONLY",
        ),
        ("2026-11-12", "2026-11-12", 3, "an unmapped billing name"),
        (
            "2026-11-13",
            "2026-11-13",
            3,
            "a settled day with no bill data",
        ),
        ("2026-11-14", "2026-11-14", 0, "unsettled never fails"),
        (
            "2026-11-11",
            "2026-11-12",
            3,
            "incomplete wins over mismatch",
        ),
    ];
    for (from, to, want, why) in cases {
        let (code, doc) = reconcile(&table, &["--cur", &csv], from, to, &[]);
        assert_eq!(code, want, "{from}..{to} ({why}): {doc}");
    }
    // A wider tolerance turns the dollar gap of OVER into OK only when the
    // tokens agree: Nova Micro's tokens differ, so it stays OVER.
    let (code, doc) = reconcile(
        &table,
        &["--cur", &csv],
        "2026-11-11",
        "2026-11-11",
        &["--tolerance-pct", "50"],
    );
    assert_eq!(code, 1);
    assert_eq!(row(&doc, "2026-11-11", NOVA_MICRO)["status"], "OVER");
    // With no settle hours 2026-11-14 is compared: the late bill is short.
    let (code, doc) = reconcile(
        &table,
        &["--cur", &csv],
        "2026-11-14",
        "2026-11-14",
        &["--settle-hours", "0"],
    );
    assert_eq!(code, 1);
    assert_eq!(row(&doc, "2026-11-14", SONNET_45)["status"], "OVER");
}

#[tokio::test]
async fn csv_gzip_through_its_manifest_a_folder_and_parquet_give_the_same_report() {
    let table = metered_table("reconcile-formats").await;
    let run = |bill: &[&str]| reconcile(&table, bill, "2026-11-10", "2026-11-14", &[]);
    let (code, csv) = run(&["--cur", &fixture("csv/bedrock-cur-00001.csv")]);
    assert_eq!(code, 3);
    assert_eq!(rows(&csv), expected_rows());
    for bill in [
        vec![
            "--cur",
            &fixture("export/metadata/BILLING_PERIOD=2026-11/bedrock-cur-Manifest.json"),
        ],
        vec!["--cur", &fixture("export")],
        vec![
            "--cur",
            &fixture("parquet/bedrock-cur-00001.snappy.parquet"),
        ],
        // The same data twice through a folder and its manifest is read once.
        vec![
            "--cur",
            &fixture("export"),
            &fixture("export/metadata/BILLING_PERIOD=2026-11/bedrock-cur-Manifest.json"),
        ],
    ] {
        let (c, doc) = run(&bill);
        assert_eq!((c, &doc), (code, &csv), "{bill:?}");
    }
}

#[tokio::test]
async fn saved_cost_explorer_responses_reconcile_like_the_cur_export() {
    let table = metered_table("reconcile-ce-json").await;
    let (cur_code, cur) = reconcile(
        &table,
        &["--cur", &fixture("csv")],
        "2026-11-10",
        "2026-11-12",
        &[],
    );
    let (ce_code, ce) = reconcile(
        &table,
        &[
            "--ce-json",
            &fixture("ce/usage.json"),
            &fixture("ce/credits.json"),
        ],
        "2026-11-10",
        "2026-11-12",
        &[],
    );
    assert_eq!((ce_code, cur_code), (3, 3));
    // Same rows, statuses, amounts and credits (Cost Explorer has no tax
    // line: usage and credits only).
    assert_eq!(rows(&ce), rows(&cur));
    assert_eq!(ce["summary"]["billed_usd"], cur["summary"]["billed_usd"]);
    assert_eq!(ce["summary"]["adjustments_usd"], "-0.05");
}

#[tokio::test]
async fn report_json_as_the_meter_side_matches_the_table() {
    let table = metered_table("reconcile-meter-json").await;
    let mut lines = String::new();
    for user in ["alice", "bob", "carol"] {
        let out = cli(
            &table,
            &[
                "report",
                "--user",
                user,
                "--from",
                "2026-11-10",
                "--to",
                "2026-11-14",
                "--by",
                "model-day",
                "--format",
                "json",
            ],
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
        lines.push_str(&out.stdout);
    }
    let path = std::env::temp_dir().join(format!("reconcile-meter-{}.jsonl", fastrand::u64(..)));
    std::fs::write(&path, lines).unwrap();
    let csv = fixture("csv");
    let (_, from_table) = reconcile(&table, &["--cur", &csv], "2026-11-10", "2026-11-14", &[]);
    let (code, from_json) = reconcile(
        "no-such-table-is-read",
        &["--cur", &csv],
        "2026-11-10",
        "2026-11-14",
        &["--meter-json", path.to_str().unwrap()],
    );
    std::fs::remove_file(&path).ok();
    assert_eq!(code, 3);
    assert_eq!(rows(&from_json), expected_rows());
    assert_eq!(from_json, from_table);
}

#[tokio::test]
async fn bad_input_exits_2_naming_the_file_and_line() {
    let table = metered_table("reconcile-bad-input").await;
    let cases: [(&[&str], &[&str]); 8] = [
        (
            &["--cur", &fixture("bad/monthly.csv")],
            &["bad/monthly.csv: line 2: ", "MONTHLY"],
        ),
        (
            &["--cur", &fixture("bad/eur.csv")],
            &["bad/eur.csv: line 2: ", "currency is EUR"],
        ),
        (
            &["--cur", &fixture("bad/missing-column.csv")],
            &[
                "bad/missing-column.csv: line 1: ",
                "line_item_unblended_cost",
            ],
        ),
        (
            &["--cur", &fixture("bad/truncated.csv.gz")],
            &["bad/truncated.csv.gz: line ", "truncated"],
        ),
        (
            &["--cur", &fixture("bad/truncated.parquet")],
            &["bad/truncated.parquet: ", "truncated"],
        ),
        (
            &["--cur", &fixture("no-such-file.csv")],
            &["no-such-file.csv: cannot read"],
        ),
        (
            &["--ce-json", &fixture("csv/bedrock-cur-00001.csv")],
            &["not a GetCostAndUsage response"],
        ),
        (&[], &["no bill to compare with"]),
    ];
    for (bill, want) in cases {
        let mut args = vec!["reconcile"];
        args.extend_from_slice(bill);
        args.extend_from_slice(&["--from", "2026-11-10", "--to", "2026-11-10", "--now", NOW]);
        let out = cli(&table, &args);
        assert_eq!(out.code, 2, "{bill:?}: {}{}", out.stdout, out.stderr);
        assert!(
            out.stdout.is_empty(),
            "{bill:?} printed a report: {}",
            out.stdout
        );
        for w in want {
            assert!(
                out.stderr.contains(w),
                "{bill:?}: `{w}` not in: {}",
                out.stderr
            );
        }
    }
    let out = cli(
        &table,
        &[
            "reconcile",
            "--cur",
            &fixture("csv"),
            "--from",
            "2026-11-12",
            "--to",
            "2026-11-10",
        ],
    );
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("--to 2026-11-10 is before --from 2026-11-12"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn the_table_format_shows_each_row_its_hints_and_the_verdict() {
    let table = metered_table("reconcile-table").await;
    let out = cli(
        &table,
        &[
            "reconcile",
            "--cur",
            &fixture("parquet"),
            "--from",
            "2026-11-10",
            "--to",
            "2026-11-11",
            "--now",
            NOW,
        ],
    );
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    let line = |needle: &str| {
        out.stdout
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with `{needle}` in:\n{}", out.stdout))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        line("2026-11-11  anthropic.claude-sonnet-4-5")[..7],
        [
            "2026-11-11",
            SONNET_45,
            "UNDER",
            "5.775",
            "6.27",
            "0.495",
            "7.89"
        ]
    );
    assert!(out
        .stdout
        .contains("- cache_write_1h: 1-hour cache writes on the bill: 200000 tokens, $1.32"));
    assert!(out
        .stdout
        .contains("exit 1: a settled row is beyond tolerance"));
}

// --- `--by principal` -------------------------------------------------------
//
// tests/fixtures/cur/principal: six invocation records of four principals
// (alice and bob as role sessions, carol as an IAM user with a path, which
// CUR writes without it, dave) and a hand-written CUR 2.0 CSV with
// `line_item_iam_principal`: alice and carol billed exactly, bob billed one
// extra 1M input tokens of Nova Micro (not in the logs), dave not billed, and
// one line without a principal. Amounts are the published rates (Nova Micro
// 0.035/0.14, Nova Lite 0.06/0.24 USD per 1M input/output tokens) times the
// records' tokens, worked out by hand.

const ALICE: &str = "arn:aws:sts::111111111111:assumed-role/BedrockUsers/alice";
const BOB: &str = "arn:aws:sts::111111111111:assumed-role/BedrockUsers/bob";
const CAROL: &str = "arn:aws:iam::111111111111:user/carol";
const DAVE: &str = "arn:aws:sts::111111111111:assumed-role/BedrockUsers/dave";

/// A fresh table holding tests/fixtures/cur/principal's records, replayed
/// with `ATTRIBUTION_TAGS` set to `tags` (or unset).
async fn principal_table(test: &str, tags: Option<&str>) -> String {
    let client = local_client().await;
    let store = fresh_store(&client, test).await;
    let out = cli_with_tags(
        store.table(),
        &["replay", &fixture("principal/meter-events.jsonl")],
        tags,
    );
    assert_eq!(out.code, 0, "replay failed: {}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("6 counted"), "{}", out.stdout);
    store.table().to_string()
}

/// (day, principal, model, status, metered_usd, billed_usd) of every row.
fn principal_rows(doc: &Value) -> Vec<[String; 6]> {
    doc["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            [
                s("day"),
                s("principal"),
                s("model"),
                s("status"),
                s("metered_usd"),
                s("billed_usd"),
            ]
        })
        .collect()
}

fn expected_principal_rows() -> Vec<[String; 6]> {
    let r = |day: &str, who: &str, model: &str, status: &str, metered: &str, billed: &str| {
        [day, who, model, status, metered, billed].map(str::to_string)
    };
    vec![
        // The line without line_item_iam_principal: 100K input tokens.
        r(
            "2026-11-10",
            "(none)",
            NOVA_MICRO,
            "BILL_ONLY",
            "0",
            "0.0035",
        ),
        // carol: 400K in, 100K out = 0.014 + 0.014.
        r("2026-11-10", CAROL, NOVA_MICRO, "OK", "0.028", "0.028"),
        // alice: Nova Lite 500K in, 100K out = 0.03 + 0.024 (23:30 UTC, the 10th).
        r("2026-11-10", ALICE, NOVA_LITE, "OK", "0.054", "0.054"),
        // alice: 1M in, 500K out = 0.035 + 0.07.
        r("2026-11-10", ALICE, NOVA_MICRO, "OK", "0.105", "0.105"),
        // bob: 2M in, 100K out = 0.07 + 0.014 metered; billed 1M in more.
        r("2026-11-10", BOB, NOVA_MICRO, "UNDER", "0.084", "0.119"),
        // dave: 200K in = 0.007, not on the bill (within the 0.01 allowance).
        r("2026-11-10", DAVE, NOVA_MICRO, "METER_ONLY", "0.007", "0"),
        // alice at 00:10 UTC on the 11th: 100K in.
        r("2026-11-11", ALICE, NOVA_MICRO, "OK", "0.0035", "0.0035"),
    ]
}

#[tokio::test]
async fn by_principal_compares_each_callers_models_per_day_and_a_gap_exits_1() {
    let table = principal_table("reconcile-by-principal", Some("principal")).await;
    let csv = fixture("principal/bedrock-cur-principal.csv");
    let (code, doc) = reconcile(
        &table,
        &["--cur", &csv],
        "2026-11-10",
        "2026-11-11",
        &["--by", "principal"],
    );
    assert_eq!(principal_rows(&doc), expected_principal_rows(), "{doc}");
    assert_eq!(code, 1, "bob's UNDER fails the run: {doc}");
    assert_eq!(doc["summary"]["exit_code"], 1);
    assert_eq!(doc["summary"]["by"], "principal");
    assert_eq!(doc["summary"]["no_principal_data"], false);
    let none = doc["rows"][0].clone();
    assert!(
        hint_codes(&none).contains(&"no_principal".to_string()),
        "{none}"
    );
    let bob = doc["rows"][4].clone();
    assert_eq!(bob["fails"], true);
    assert_eq!(bob["billed_tokens"]["input"], "3000000");
    assert_eq!(bob["metered_tokens"]["input"], "2000000");
    assert!(!hint_codes(&doc["rows"][1]).contains(&"no_principal".to_string()));

    // The table and CSV formats gain the principal column.
    let out = cli(
        &table,
        &[
            "reconcile",
            "--cur",
            &csv,
            "--from",
            "2026-11-10",
            "--to",
            "2026-11-11",
            "--now",
            NOW,
            "--by",
            "principal",
        ],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    let header = out.stdout.lines().next().unwrap();
    assert!(
        header.starts_with("DAY") && header.contains("PRINCIPAL"),
        "{header}"
    );
    let bob_line = out.stdout.lines().find(|l| l.contains(BOB)).unwrap();
    assert!(
        bob_line.contains("UNDER") && bob_line.contains(NOVA_MICRO),
        "{bob_line}"
    );
    let out = cli(
        &table,
        &[
            "reconcile",
            "--cur",
            &csv,
            "--from",
            "2026-11-10",
            "--to",
            "2026-11-11",
            "--now",
            NOW,
            "--by",
            "principal",
            "--format",
            "csv",
        ],
    );
    assert!(
        out.stdout.starts_with("day,principal,model,status,"),
        "{}",
        out.stdout
    );
    assert_eq!(
        out.stdout.lines().count(),
        1 + expected_principal_rows().len()
    );
}

#[tokio::test]
async fn by_principal_reads_report_tag_json_like_the_table() {
    let table = principal_table("reconcile-by-principal-json", Some("principal")).await;
    let mut lines = String::new();
    for who in [ALICE, BOB, CAROL, DAVE] {
        let tag = format!("principal={who}");
        let out = cli(
            &table,
            &[
                "report",
                "--tag",
                &tag,
                "--from",
                "2026-11-10",
                "--to",
                "2026-11-11",
                "--format",
                "json",
            ],
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
        lines.push_str(&out.stdout);
    }
    let path =
        std::env::temp_dir().join(format!("reconcile-principal-{}.jsonl", fastrand::u64(..)));
    std::fs::write(&path, lines).unwrap();
    let csv = fixture("principal/bedrock-cur-principal.csv");
    let (code, doc) = reconcile(
        "no-such-table-is-read",
        &["--cur", &csv],
        "2026-11-10",
        "2026-11-11",
        &["--by", "principal", "--meter-json", path.to_str().unwrap()],
    );
    std::fs::remove_file(&path).ok();
    assert_eq!(code, 1, "{doc}");
    assert_eq!(principal_rows(&doc), expected_principal_rows());
}

#[tokio::test]
async fn by_principal_without_principal_attribution_exits_3_saying_what_to_set() {
    let table = principal_table("reconcile-by-principal-untagged", None).await;
    let csv = fixture("principal/bedrock-cur-principal.csv");
    let args = [
        "reconcile",
        "--cur",
        &csv,
        "--from",
        "2026-11-10",
        "--to",
        "2026-11-11",
        "--now",
        NOW,
        "--by",
        "principal",
        "--format",
        "json",
    ];
    let out = cli(&table, &args);
    assert_eq!(out.code, 3, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("ATTRIBUTION_TAGS=principal"),
        "{}",
        out.stderr
    );
    let doc: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(doc["summary"]["no_principal_data"], true);
    assert_eq!(doc["summary"]["exit_code"], 3);
    // The same table per model has its model_day items: no exit 3 there
    // (bob's extra bill line makes Nova Micro UNDER on the 10th).
    let (code, doc) = reconcile(&table, &["--cur", &csv], "2026-11-10", "2026-11-11", &[]);
    assert_eq!(code, 1, "{doc}");
    assert_eq!(doc["summary"]["no_principal_data"], false);
}
