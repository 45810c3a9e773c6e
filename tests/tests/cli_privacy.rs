//! No prompt or answer leaves the CLI: `bedrock-meter replay` and
//! `replay --dry-run` over files whose bodies carry a canary string, good and
//! malformed records alike, print nothing of it (stdout, stderr, at the
//! default and at debug log levels) and store nothing of it.
//!
//! Needs the CLI binary: `cargo build -p bedrock-meter-cli` (make test builds
//! it). The Lambda's side is checked in `lambda_emulator.rs`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use integration_tests::*;

const CANARY: &str = "CANARY-PROMPT-7f3a";

fn cli_binary() -> PathBuf {
    workspace_binary("bedrock-meter", "bedrock-meter-cli")
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).expect("gzip");
    e.finish().expect("gzip")
}

/// Records whose bodies carry the canary, and malformed records whose bad
/// fields carry it (their skip reports must not echo it).
fn write_files(dir: &Path) -> Vec<Rec> {
    let recs = corpus(60, 5, 2, 0xCA4A);
    std::fs::write(dir.join("a-event.json"), envelope(&recs[..20], 1)).unwrap();
    std::fs::write(dir.join("b-records.jsonl"), ndjson(&recs[20..40])).unwrap();
    std::fs::write(dir.join("c-records.jsonl.gz"), gzip(&ndjson(&recs[40..50]))).unwrap();
    let destination = format!(
        r#"{{"version":"1.0","timestamp":"2026-11-20T10:00:00.000Z","requestContext":{{"requestId":"x","functionArn":"arn:aws:lambda:us-east-1:111111111111:function:bedrock-meter","condition":"RetriesExhausted","approximateInvokeCount":3}},"requestPayload":{},"responseContext":{{"statusCode":200,"functionError":"Unhandled"}},"responsePayload":{{"errorMessage":"x"}}}}"#,
        String::from_utf8(envelope(&recs[50..60], 1_000)).unwrap()
    );
    std::fs::write(dir.join("d-destination.json"), destination).unwrap();
    // Newline-delimited input is recognised by its first line, a record.
    let bad = [
        format!(
            r#"{{"schemaType":"ModelInvocationLog","timestamp":"2026-11-01T00:00:00Z","modelId":"m","input":{{"inputBodyJson":{{"text":"{CANARY}"}}}}}}"#
        ),
        format!("{CANARY} a stray text line"),
        format!(
            r#"{{"schemaType":"ModelInvocationLog","timestamp":"2026-11-01T00:00:00Z","modelId":"m","input":"{CANARY} prompt as a string"}}"#
        ),
        format!(
            r#"{{"schemaType":"ModelInvocationLog","timestamp":"2026-11-01T00:00:00Z","modelId":"m","input":{{"inputTokenCount":"{CANARY}"}}}}"#
        ),
        format!(
            r#"{{"schemaType":"ModelInvocationLog","timestamp":"2026-11-01T00:00:00Z","modelId":"m","output":{{"outputTokenCount":-1,"outputBodyJson":"{CANARY}"}}}}"#
        ),
        format!(
            r#"{{"schemaType":"ModelInvocationLog","timestamp":"2026-11-01T00:00:00Z","modelId":{{"{CANARY}":1}}}}"#
        ),
        format!(
            r#"{{"schemaType":"ModelInvocationLog","modelId":"m","input":{{"inputBodyJson":"{CANARY}"}}}}"#
        ),
    ];
    std::fs::write(dir.join("e-malformed.jsonl"), bad.join("\n") + "\n").unwrap();
    // A file that cannot be decoded at all.
    std::fs::write(
        dir.join("f-broken.json"),
        format!(r#"{{"awslogs":{{"data":"{CANARY}"}}}}"#),
    )
    .unwrap();
    recs
}

fn run(args: &[&str], dir: &Path, table: &str, log: Option<&str>) -> (i32, String, String) {
    let mut c = Command::new(cli_binary());
    c.args(args)
        .arg(dir)
        .env("USAGE_TABLE", table)
        .stdin(Stdio::null());
    match log {
        Some(level) => c.env("RUST_LOG", level),
        None => c.env_remove("RUST_LOG"),
    };
    let out = c.output().expect("run bedrock-meter");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn replay_and_dry_run_print_and_store_no_prompt_or_answer_text() {
    let client = local_client().await;
    let store = fresh_store(&client, "cli-privacy").await;
    let dir =
        TempDir(std::env::temp_dir().join(format!("bedrock-meter-privacy-{}", fastrand::u64(..))));
    std::fs::create_dir_all(&dir.0).unwrap();
    let recs = write_files(&dir.0);
    let bodies = std::fs::read_dir(&dir.0)
        .unwrap()
        .flatten()
        .filter(|e| {
            let b = std::fs::read(e.path()).unwrap();
            String::from_utf8_lossy(&b).contains(CANARY)
        })
        .count();
    assert!(bodies >= 3, "the canary is in the plain-text inputs");

    let runs: [(&[&str], Option<&str>); 5] = [
        (&["replay", "--dry-run"], None),
        (&["replay", "--dry-run", "--format", "json"], Some("debug")),
        (&["replay"], None),
        (&["replay", "--json"], Some("debug")), // everything is a duplicate now
        (&["replay", "--strict"], None),
    ];
    for (args, log) in runs {
        let (code, stdout, stderr) = run(args, &dir.0, store.table(), log);
        println!(
            "{args:?} RUST_LOG={log:?}: exit {code}, {} bytes of stdout, {} of stderr",
            stdout.len(),
            stderr.len()
        );
        assert!(
            !stdout.contains(CANARY),
            "{args:?}: canary on stdout:\n{stdout}"
        );
        assert!(
            !stderr.contains(CANARY),
            "{args:?}: canary on stderr:\n{stderr}"
        );
        // It did run: the broken file fails (exit 1) and the skips are reported.
        assert_eq!(code, 1, "{args:?}: {stdout}\n{stderr}");
        assert!(stderr.contains("f-broken.json"), "{args:?}: {stderr}");
        assert!(stderr.contains("skipped record"), "{args:?}: {stderr}");
    }

    // The table holds the counts and nothing of the bodies.
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let page = client
            .scan()
            .table_name(store.table())
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .expect("scan");
        items.extend(page.items().iter().cloned());
        match page.last_evaluated_key() {
            Some(k) if !k.is_empty() => start = Some(k.clone()),
            _ => break,
        }
    }
    let dump = format!("{items:?}");
    assert!(!dump.contains(CANARY), "a prompt reached the table");
    assert_eq!(
        marker_count(&store).await,
        recs.len() + 1,
        "60 records plus the one record of the malformed file that is valid"
    );
    assert_totals_eq_ignoring_unknown(&read_aggregates(&store).await, &expected_totals(&recs));
}

/// The good records' totals; the valid record of the malformed file
/// (model `m`, user `unknown`) add aggregates of their own.
fn assert_totals_eq_ignoring_unknown(
    actual: &std::collections::BTreeMap<AggKey, Totals>,
    expected: &std::collections::BTreeMap<AggKey, Totals>,
) {
    let filtered: std::collections::BTreeMap<AggKey, Totals> = actual
        .iter()
        .filter(|(k, _)| k.1 != "unknown" && k.2 != "m")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_totals_eq(&filtered, expected);
}
