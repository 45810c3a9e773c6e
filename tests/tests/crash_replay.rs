//! `bedrock-meter replay` killed with SIGKILL at random moments, several
//! times, then run to the end: the totals are exact (each transaction is all
//! or nothing, and markers skip what a killed run already counted).
//!
//! Needs the CLI binary: `cargo build -p bedrock-meter-cli` (make test builds
//! it).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

fn replay(dir: &Path, table: &str) -> Command {
    let mut c = Command::new(cli_binary());
    c.arg("replay")
        .arg(dir)
        .env("USAGE_TABLE", table)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    c
}

#[tokio::test]
async fn replay_killed_at_random_moments_then_run_to_the_end_counts_every_record_once() {
    let client = local_client().await;
    let store = fresh_store(&client, "crash-replay").await;
    let dir = TempDir::new("bedrock-meter-crash");
    let recs = corpus(1_600, 40, 4, 0xC0FFEE);
    let files = write_corpus(&dir.0, &recs, 20);
    let mut rng = fastrand::Rng::with_seed(0xDEAD);

    // Each round is killed at a random point of its progress: once it has
    // committed a random number of new records (checked at random intervals),
    // so kills land mid-run, with transactions in flight, however fast or
    // slow the machine is.
    const ROUNDS: usize = 6;
    let share = recs.len() / (ROUNDS + 2);
    let mut kills = 0;
    let mut finished_before_kill = 0;
    let mut markers_after_each = Vec::new();
    let mut markers = 0;
    for _ in 0..ROUNDS {
        let target = markers + rng.usize(share / 4..share);
        let mut child = replay(&dir.0, store.table())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start bedrock-meter replay");
        let deadline = Instant::now() + Duration::from_secs(240);
        loop {
            std::thread::sleep(Duration::from_millis(rng.u64(10..250)));
            if child.try_wait().expect("poll replay").is_some() {
                finished_before_kill += 1;
                break;
            }
            if marker_count(&store).await >= target || Instant::now() > deadline {
                child.kill().expect("SIGKILL"); // Command::kill sends SIGKILL
                let status = child.wait().expect("reap");
                assert!(!status.success(), "killed, not finished: {status:?}");
                kills += 1;
                break;
            }
        }
        markers = marker_count(&store).await;
        markers_after_each.push(markers);
    }

    // Then run to the end (bounded).
    let started = Instant::now();
    let mut child = replay(&dir.0, store.table())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start bedrock-meter replay");
    let deadline = Instant::now() + Duration::from_secs(300);
    while child.try_wait().expect("poll").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the final replay did not finish in 300 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("final replay output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "final replay failed: {stdout}\n{stderr}"
    );

    let actual = read_aggregates(&store).await;
    let expected = expected_totals(&recs);
    let markers = marker_count(&store).await;
    println!(
        "\n== crashes: {files} files, {} records; {kills} SIGKILLs at random points ({finished_before_kill} runs finished before their kill); markers after each round: {markers_after_each:?}; final run {:.1}s: {}",
        recs.len(),
        started.elapsed().as_secs_f64(),
        stdout.lines().next().unwrap_or("")
    );
    println!(
        "   markers {markers} of {} records; totals exact: {}",
        recs.len(),
        if actual == expected && markers == recs.len() {
            "yes"
        } else {
            "NO"
        }
    );
    assert!(kills >= 3, "only {kills} runs were killed mid-way");
    assert!(
        markers_after_each
            .windows(2)
            .filter(|w| w[1] > w[0])
            .count()
            >= 3,
        "kills did not land at different points of the replay: {markers_after_each:?}"
    );
    assert!(
        markers_after_each.last().is_some_and(|&m| m < recs.len()),
        "the last kill came after the end: {markers_after_each:?}"
    );
    assert_eq!(markers, recs.len(), "one marker per record");
    assert_totals_eq(&actual, &expected);
}
