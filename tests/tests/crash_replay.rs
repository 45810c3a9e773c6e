//! `bedrock-meter replay` killed with SIGKILL at chosen points, several
//! times, then run to the end: the totals are exact (each transaction is all
//! or nothing, and markers skip what a killed run already counted).
//!
//! The CLI talks to DynamoDB Local through a gate (`faults_support`'s
//! [`GateProxy`]) that stops it at a chosen transaction: before it is
//! forwarded, after DynamoDB applied it but before the answer arrives, or
//! between two transactions. The table then stays as it is until the kill,
//! so after every kill it must hold exactly the records of the transactions
//! the gate saw applied, with their totals and nothing else.
//!
//! Needs the CLI binary: `cargo build -p bedrock-meter-cli` (make test builds
//! it).

mod faults_support;

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use faults_support::{upstream_from_env, GateProxy, KillPoint};
use integration_tests::*;

fn cli_binary() -> PathBuf {
    workspace_binary("bedrock-meter", "bedrock-meter-cli")
}

/// A temporary directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(prefix: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "{prefix}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).expect("gzip");
    e.finish().expect("gzip")
}

/// Writes `recs` as files of `per_file` records, in the shapes replay reads:
/// Lambda events, newline-delimited records, and gzip of both.
fn write_corpus(dir: &Path, recs: &[Rec], per_file: usize) -> usize {
    let mut files = 0;
    for (i, chunk) in recs.chunks(per_file).enumerate() {
        let (name, bytes) = match i % 4 {
            0 => (
                format!("{i:04}.json"),
                envelope(chunk, 1 + (i * per_file) as u64),
            ),
            1 => (format!("{i:04}.jsonl"), ndjson(chunk)),
            2 => (format!("{i:04}.jsonl.gz"), gzip(&ndjson(chunk))),
            _ => (
                format!("{i:04}.json.gz"),
                gzip(&envelope(chunk, 1 + (i * per_file) as u64)),
            ),
        };
        std::fs::write(dir.join(name), bytes).expect("write corpus file");
        files += 1;
    }
    files
}

fn replay(dir: &Path, table: &str, endpoint: &str, concurrency: usize) -> Command {
    let mut c = Command::new(cli_binary());
    c.arg("replay")
        .arg(dir)
        .args(["--concurrency", &concurrency.to_string(), "--json"])
        .env("USAGE_TABLE", table)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env_remove("AWS_ENDPOINT_URL_DYNAMODB")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    c
}

/// Where each round is killed, and how many files it replays at once.
const ROUNDS: [(KillPoint, usize); 6] = [
    (KillPoint::BeforeForwarding(4), 1),
    (KillPoint::AppliedAnswerWithheld(5), 1),
    (KillPoint::BetweenTransactions(6), 1),
    // Right after the rerun skipped everything already counted.
    (KillPoint::BeforeForwarding(1), 1),
    // With transactions of other files in flight.
    (KillPoint::AppliedAnswerWithheld(8), 4),
    (KillPoint::BetweenTransactions(3), 4),
];

#[tokio::test]
async fn replay_killed_at_chosen_transactions_then_run_to_the_end_counts_every_record_once() {
    let client = local_client().await;
    let store = fresh_store(&client, "crash-replay").await;
    let dir = TempDir::new("bedrock-meter-crash");
    let recs = corpus(1_600, 40, 4, 0xC0FFEE);
    let files = write_corpus(&dir.0, &recs, 20);
    let gate = GateProxy::start(upstream_from_env()).await;
    let log = dir.0.with_extension("stderr");

    let mut markers_after_each = Vec::new();
    for (round, (point, concurrency)) in ROUNDS.into_iter().enumerate() {
        gate.arm(Some(point));
        let mut child = replay(&dir.0, store.table(), &gate.url(), concurrency)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start bedrock-meter replay");
        let stats = gate
            .wait_until_stopped(Duration::from_secs(240), || {
                child
                    .try_wait()
                    .expect("poll replay")
                    .map(|s| format!("{s}: {}", std::fs::read_to_string(&log).unwrap_or_default()))
            })
            .await;
        child.kill().expect("SIGKILL"); // Command::kill sends SIGKILL
        let status = child.wait().expect("reap");
        assert_eq!(status.signal(), Some(9), "round {round}: {status:?}");

        // The table holds exactly what the gate saw applied, all or nothing.
        let markers = marker_keys(&store).await;
        assert_eq!(
            markers, stats.applied_markers,
            "round {round} ({point:?}): markers in the table"
        );
        if concurrency == 1 {
            assert_eq!(
                stats.applied_in_run,
                point.applied_when_sequential(),
                "round {round} ({point:?}): new transactions applied"
            );
        } else {
            assert!(
                stats.applied_in_run >= point.applied_when_sequential(),
                "round {round} ({point:?}): {stats:?}"
            );
        }
        let counted: Vec<Rec> = recs
            .iter()
            .filter(|r| markers.contains(&marker_pk(r)))
            .cloned()
            .collect();
        assert_eq!(counted.len(), markers.len(), "round {round}: stray markers");
        assert_totals_eq(&read_aggregates(&store).await, &expected_totals(&counted));
        assert!(stats.problems.is_empty(), "{:?}", stats.problems);
        let before = markers_after_each.last().copied().unwrap_or(0);
        assert_eq!(
            markers.len() > before,
            stats.applied_in_run > 0,
            "round {round} ({point:?}): {before} markers before, {} now",
            markers.len()
        );
        markers_after_each.push(markers.len());
    }
    let before_final = *markers_after_each.last().unwrap();
    assert!(before_final < recs.len(), "{markers_after_each:?}");

    // Then run to the end (bounded).
    gate.arm(None);
    let started = Instant::now();
    let mut child = replay(&dir.0, store.table(), &gate.url(), 4)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start bedrock-meter replay");
    while child.try_wait().expect("poll").is_none() {
        if started.elapsed() > Duration::from_secs(300) {
            let _ = child.kill();
            panic!("the final replay did not finish in 300 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = child.wait_with_output().expect("final replay output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "final replay failed: {stdout}\n{stderr}"
    );
    let summary: serde_json::Value = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON summary: {stdout}\n{stderr}"));

    let actual = read_aggregates(&store).await;
    let expected = expected_totals(&recs);
    let markers = marker_keys(&store).await;
    println!(
        "\n== crashes: {files} files, {} records; {} SIGKILLs at chosen transactions; markers after each: {markers_after_each:?}; final run {:.1}s: {}",
        recs.len(),
        ROUNDS.len(),
        started.elapsed().as_secs_f64(),
        summary["report"]
    );
    let report = &summary["report"];
    assert_eq!(report["counted"], recs.len() - before_final, "{summary}");
    assert_eq!(report["duplicates"], before_final, "{summary}");
    assert_eq!(report["skipped"], 0, "{summary}");
    let all: BTreeSet<String> = recs.iter().map(marker_pk).collect();
    assert_eq!(markers, all, "one marker per record");
    assert_eq!(markers, gate.stats().applied_markers);
    assert_totals_eq(&actual, &expected);
    let _ = std::fs::remove_file(&log);
}
