//! One event end to end through the Lambda runtime emulator
//! (`cargo lambda watch`, bound to 127.0.0.1) into DynamoDB Local.
//!
//! Nothing here guesses timing: the emulator's port is a free one, the test
//! waits until the emulator listens and the function has connected to it
//! before it sends anything, each event is sent exactly once, and the logs
//! are read once they hold what the invocations wrote (bounded waits).

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine as _;
use integration_tests::*;

const CANARY: &str = "CANARY-PROMPT-7f3a";

struct Emulator(Child);

impl Drop for Emulator {
    fn drop(&mut self) {
        // The emulator runs the function as a child: stop the whole group.
        let _ = Command::new("kill")
            .arg("--")
            .arg(format!("-{}", self.0.id()))
            .status();
        let _ = self.0.wait();
    }
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn ingest_binary() -> PathBuf {
    workspace_binary("ingest", "ingest")
}

/// A loopback port nothing listens on right now (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Polls `ready` every 20 ms until it holds; panics with `what` after
/// `limit`, or as soon as `child` exits.
fn wait_until(what: &str, limit: Duration, child: &mut Child, mut ready: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ready() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what}: the process exited first ({status})");
        }
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether process `pid` holds an established TCP connection to
/// 127.0.0.1:`port` (its sockets from /proc/PID/fd, their state from
/// /proc/PID/net/tcp). The Lambda runtime opens that connection for its
/// first `next` request: then an invocation finds the function waiting.
fn connected_to(pid: u32, port: u16) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    let sockets: HashSet<String> = fds
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            l.strip_prefix("socket:[")
                .and_then(|s| s.strip_suffix(']'))
                .map(str::to_string)
        })
        .collect();
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap_or_default();
    let remote = format!("0100007F:{port:04X}");
    table.lines().skip(1).any(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
        f.len() > 9 && f[2] == remote && f[3] == "01" && sockets.contains(f[9])
    })
}

/// Sends `event` once through `cargo lambda invoke` and returns the
/// function's response; any failure fails the test (no retry: a retry would
/// hide a first-try error and deliver the event twice).
fn invoke_once(port: u16, event: &Path) -> serde_json::Value {
    // `timeout`: an invoke waits forever if the function died.
    let out = Command::new("timeout")
        .args([
            "120",
            "cargo",
            "lambda",
            "invoke",
            "--invoke-address",
            "127.0.0.1",
            "--invoke-port",
            &port.to_string(),
        ])
        .arg("--data-file")
        .arg(event)
        .current_dir(workspace())
        .output()
        .expect("run cargo lambda invoke");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the first and only invoke of {} failed ({}): {text}\n{}",
        event.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not a JSON report: {text}: {e}"))
}

/// The decoded subscription payload of a Lambda event file.
fn decoded_payload(event: &Path) -> String {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(event).expect("read event")).expect("event JSON");
    let gz = base64::engine::general_purpose::STANDARD
        .decode(v["awslogs"]["data"].as_str().expect("awslogs.data"))
        .expect("base64");
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(&gz[..])
        .read_to_string(&mut text)
        .expect("gzip");
    text
}

/// Every text an attribute value holds (strings, numbers, nested values).
fn texts(v: &AttributeValue, out: &mut Vec<String>) {
    match v {
        AttributeValue::S(s) | AttributeValue::N(s) => out.push(s.clone()),
        AttributeValue::Ss(l) | AttributeValue::Ns(l) => out.extend(l.iter().cloned()),
        AttributeValue::B(b) => out.push(String::from_utf8_lossy(b.as_ref()).into_owned()),
        AttributeValue::Bs(l) => out.extend(
            l.iter()
                .map(|b| String::from_utf8_lossy(b.as_ref()).into_owned()),
        ),
        AttributeValue::L(l) => l.iter().for_each(|x| texts(x, out)),
        AttributeValue::M(m) => m.iter().for_each(|(k, x)| {
            out.push(k.clone());
            texts(x, out)
        }),
        other => out.push(format!("{other:?}")),
    }
}

/// Every item of the table as it is stored (a Scan of all attributes,
/// markers included): (pk, sk, kind, every attribute name and value).
async fn raw_items(
    store: &meter_store::DynamoDbUsageStore,
) -> Vec<(String, String, String, Vec<String>)> {
    let mut out = Vec::new();
    let mut start = None;
    loop {
        let page = store
            .client()
            .scan()
            .table_name(store.table())
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .expect("scan");
        for item in page.items() {
            let s = |k: &str| {
                item.get(k)
                    .and_then(|v| v.as_s().ok())
                    .cloned()
                    .unwrap_or_default()
            };
            let mut all = Vec::new();
            for (name, v) in item {
                all.push(name.clone());
                texts(v, &mut all);
            }
            out.push((s("pk"), s("sk"), s("kind"), all));
        }
        match page.last_evaluated_key() {
            Some(k) if !k.is_empty() => start = Some(k.clone()),
            _ => break,
        }
    }
    out
}

#[tokio::test]
async fn sample_events_flow_through_the_lambda_runtime_emulator_into_the_table_without_leaking_bodies(
) {
    use std::os::unix::process::CommandExt;
    let client = local_client().await;
    let store = fresh_store(&client, "emulator").await;
    let version = Command::new("cargo").args(["lambda", "--version"]).output();
    assert!(
        matches!(&version, Ok(o) if o.status.success()),
        "cargo-lambda is required for this test: pip install cargo-lambda ({version:?})"
    );
    let several = workspace().join("events/several-users-models.json");
    let large = workspace().join("events/large-bodies.json");
    // The test means something only if the canary is really in an event.
    assert!(decoded_payload(&large).contains(CANARY));

    let port = free_port();
    // The emulator's runtime API only; the prebuilt function binary polls it.
    let mut emulator = Emulator(
        Command::new("cargo")
            .args([
                "lambda",
                "watch",
                "--only-lambda-apis",
                "--invoke-address",
                "127.0.0.1",
                "--invoke-port",
                &port.to_string(),
            ])
            .current_dir(workspace())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start cargo lambda watch"),
    );
    wait_until(
        &format!("cargo lambda watch listening on 127.0.0.1:{port}"),
        Duration::from_secs(60),
        &mut emulator.0,
        || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
    );
    let log_path = std::env::temp_dir().join(format!("ingest-{}.log", store.table()));
    let log = std::fs::File::create(&log_path).unwrap();
    let mut function = Emulator(
        Command::new(ingest_binary())
            .env(
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://127.0.0.1:{port}/.rt"),
            )
            .env("AWS_LAMBDA_FUNCTION_NAME", "_")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
            .env("USAGE_TABLE", store.table())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start the ingest function"),
    );
    let pid = function.0.id();
    wait_until(
        "the ingest function connected to the emulator",
        Duration::from_secs(60),
        &mut function.0,
        || connected_to(pid, port),
    );

    let report = invoke_once(port, &several);
    let bodies = invoke_once(port, &large);

    let expected: serde_json::Value = serde_json::from_slice(
        &std::fs::read(workspace().join("events/expected-totals.json")).unwrap(),
    )
    .unwrap();
    let scenarios = &expected["scenarios"];
    assert_eq!(
        report["counted"], scenarios["several-users-models"]["record_count"],
        "{report}"
    );
    assert_eq!(
        bodies["counted"], scenarios["large-bodies"]["record_count"],
        "{bodies}"
    );
    let table = read_aggregates(&store).await;
    for name in ["several-users-models", "large-bodies"] {
        for t in scenarios[name]["totals"].as_array().unwrap() {
            let key = (
                "user_model_day".to_string(),
                t["user"].as_str().unwrap().to_string(),
                t["model"].as_str().unwrap().to_string(),
                t["day"].as_str().unwrap().to_string(),
            );
            let got = table.get(&key).unwrap_or_else(|| panic!("missing {key:?}"));
            for (field, value) in [
                ("invocations", got.invocations),
                ("input_tokens", got.input_tokens),
                ("output_tokens", got.output_tokens),
            ] {
                assert_eq!(
                    value,
                    u128::from(t[field].as_u64().unwrap()),
                    "{key:?} {field}"
                );
            }
        }
    }

    // One JSON summary line per invocation and an EMF line each, read once
    // the function has written them (bounded), and no prompt text.
    let started = Instant::now();
    let logs = loop {
        let logs = std::fs::read_to_string(&log_path).unwrap();
        let summaries = logs
            .lines()
            .filter(|l| l.contains("batch ingested"))
            .count();
        let emf = logs.lines().filter(|l| l.contains("\"_aws\"")).count();
        if summaries >= 2 && emf >= 2 {
            break logs;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the function did not log two summaries and two EMF lines within 30 s: {logs}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let summaries = logs
        .lines()
        .filter(|l| l.contains("batch ingested"))
        .count();
    assert_eq!(summaries, 2, "{logs}");
    assert!(!logs.contains(CANARY), "a prompt reached the logs");

    // Every attribute of every item, markers included, as stored.
    let items = raw_items(&store).await;
    let records = report["counted"].as_u64().unwrap() + bodies["counted"].as_u64().unwrap();
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for (_, _, kind, _) in &items {
        *kinds.entry(kind.clone()).or_default() += 1;
    }
    // Markers: the records' ids in marker buckets, one per record.
    assert_eq!(
        marker_count(&store).await as u64,
        records,
        "one marker id per record: {kinds:?}"
    );
    let markers = ["marker", "marker_bucket", "marker_scheme"];
    let marker_items: usize = markers.iter().filter_map(|k| kinds.get(*k)).sum();
    assert_eq!(
        kinds.values().sum::<usize>() - marker_items,
        table.len(),
        "every other item is an aggregate: {kinds:?}"
    );
    assert!(
        kinds.keys().all(|k| markers.contains(&k.as_str())
            || ["user_model_day", "user_day", "user_month", "model_day"].contains(&k.as_str())),
        "{kinds:?}"
    );
    for (pk, sk, _, values) in &items {
        assert!(
            !values.iter().any(|v| v.contains(CANARY)),
            "a prompt reached the table in item {pk} / {sk}"
        );
    }
    let _ = std::fs::remove_file(&log_path);
}
