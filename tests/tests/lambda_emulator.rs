//! One event end to end through the Lambda runtime emulator
//! (`cargo lambda watch`, bound to 127.0.0.1) into DynamoDB Local.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use integration_tests::*;

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

fn invoke(port: &str, event: &std::path::Path) -> serde_json::Value {
    let started = Instant::now();
    loop {
        // `timeout`: an invoke waits forever if the function died.
        let out = Command::new("timeout")
            .args([
                "60",
                "cargo",
                "lambda",
                "invoke",
                "--invoke-address",
                "127.0.0.1",
                "--invoke-port",
                port,
            ])
            .arg("--data-file")
            .arg(event)
            .current_dir(workspace())
            .output()
            .expect("run cargo lambda invoke");
        if out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout);
            return serde_json::from_str(text.trim())
                .unwrap_or_else(|e| panic!("not a JSON report: {text}: {e}"));
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the emulator did not answer within 60 s: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
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
    let port = "9123";
    // The emulator's runtime API only; the prebuilt function binary polls it.
    let _emulator = Emulator(
        Command::new("cargo")
            .args([
                "lambda",
                "watch",
                "--only-lambda-apis",
                "--invoke-address",
                "127.0.0.1",
                "--invoke-port",
                port,
            ])
            .current_dir(workspace())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start cargo lambda watch"),
    );
    let ready = Instant::now();
    while std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_err() {
        assert!(
            ready.elapsed() < Duration::from_secs(30),
            "the emulator did not listen on {port} within 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let log_path = std::env::temp_dir().join(format!("ingest-{}.log", store.table()));
    let log = std::fs::File::create(&log_path).unwrap();
    let _function = Emulator(
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
    let report = invoke(port, &workspace().join("events/several-users-models.json"));
    let bodies = invoke(port, &workspace().join("events/large-bodies.json"));
    assert!(bodies["counted"].as_u64().unwrap() > 0);

    let expected: serde_json::Value = serde_json::from_slice(
        &std::fs::read(workspace().join("events/expected-totals.json")).unwrap(),
    )
    .unwrap();
    let scenario = &expected["scenarios"]["several-users-models"];
    assert_eq!(report["counted"], scenario["record_count"], "{report}");
    let table = read_aggregates(&store).await;
    for t in scenario["totals"].as_array().unwrap() {
        let key = (
            "user_model_day".to_string(),
            t["user"].as_str().unwrap().to_string(),
            t["model"].as_str().unwrap().to_string(),
            t["day"].as_str().unwrap().to_string(),
        );
        let got = table.get(&key).unwrap_or_else(|| panic!("missing {key:?}"));
        assert_eq!(
            got.invocations,
            u128::from(t["invocations"].as_u64().unwrap()),
            "{key:?}"
        );
        assert_eq!(
            got.input_tokens,
            u128::from(t["input_tokens"].as_u64().unwrap()),
            "{key:?}"
        );
        assert_eq!(
            got.output_tokens,
            u128::from(t["output_tokens"].as_u64().unwrap()),
            "{key:?}"
        );
    }

    // One JSON summary line per invocation, an EMF line, and no prompt text.
    std::thread::sleep(Duration::from_millis(300));
    let logs = std::fs::read_to_string(&log_path).unwrap();
    let summaries = logs
        .lines()
        .filter(|l| l.contains("batch ingested"))
        .count();
    assert_eq!(summaries, 2, "{logs}");
    assert!(
        logs.lines().filter(|l| l.contains("\"_aws\"")).count() >= 2,
        "{logs}"
    );
    assert!(
        !logs.contains("CANARY-PROMPT-7f3a"),
        "a prompt reached the logs"
    );
    let dump = format!("{:?}", table);
    assert!(
        !dump.contains("CANARY-PROMPT-7f3a"),
        "a prompt reached the table"
    );
    let _ = std::fs::remove_file(&log_path);
}
