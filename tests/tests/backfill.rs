//! `bedrock-meter backfill` end to end: Bedrock's S3 layout in moto's S3
//! server (started here on a free loopback port, stopped by PID), the real CLI
//! binary, DynamoDB Local, records the live path already counted, and a run
//! killed at a chosen object then resumed from its --state file.

mod faults_support;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use faults_support::{upstream_from_env, GateProxy, KillPoint};
use integration_tests::*;
use meter_core::Meter;
use meter_store::{ingest_payload, CommitSettings};
use time::OffsetDateTime;

const BUCKET: &str = "bedrock-logs";
const PREFIX: &str = "org/bedrock";
const ACCOUNTS: [&str; 2] = ["111111111111", "222222222222"];
const REGIONS: [&str; 2] = ["us-east-1", "eu-west-1"];

fn cli_binary() -> PathBuf {
    workspace_binary("bedrock-meter", "bedrock-meter-cli")
}

async fn s3_client(endpoint: &str) -> aws_sdk_s3::Client {
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let conf = aws_sdk_s3::config::Builder::from(&sdk)
        .endpoint_url(endpoint)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

fn gzip_members(parts: &[&[Rec]]) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parts {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        gz.write_all(&ndjson(part)).expect("gzip");
        out.extend(gz.finish().expect("gzip"));
    }
    out
}

/// One object of Bedrock's S3 delivery: where it is and what it holds.
struct Object {
    key: String,
    recs: Vec<Rec>,
    in_range: bool,
}

/// Spreads `recs` over both accounts and Regions, one folder per record
/// hour, a few objects per hour (some with two gzip members). Days
/// 2026-10-30 .. 2026-11-01 are in range; 2026-11-02 is not. One record
/// stamped just before midnight of 2026-10-29 sits in the first day's 00
/// folder, as late deliveries do: it is read because folders are selected.
fn layout(recs: &[Rec]) -> Vec<Object> {
    let mut by_key: std::collections::BTreeMap<String, Vec<Rec>> = Default::default();
    for (i, r) in recs.iter().enumerate() {
        let (account, region) = (ACCOUNTS[i % 2], REGIONS[(i / 2) % 2]);
        let (date, hour) = (&r.timestamp[..10], &r.timestamp[11..13]);
        let folder = format!(
            "{PREFIX}/AWSLogs/{account}/BedrockModelInvocationLogs/{region}/{}/{hour}/",
            date.replace('-', "/")
        );
        let key = format!("{folder}20261030T000000Z_{:x}.json.gz", i % 3);
        by_key.entry(key).or_default().push(r.clone());
    }
    let mut late = recs[0].clone();
    late.request_id = "late0000-0000-4000-8000-000000000000".into();
    late.timestamp = "2026-10-29T23:59:59Z".into();
    by_key
        .entry(format!(
            "{PREFIX}/AWSLogs/111111111111/BedrockModelInvocationLogs/us-east-1/2026/10/30/00/late.json.gz"
        ))
        .or_default()
        .push(late);
    by_key
        .into_iter()
        .map(|(key, recs)| Object {
            in_range: !key.contains("/2026/11/02/"),
            key,
            recs,
        })
        .collect()
}

async fn upload(s3: &aws_sdk_s3::Client, objects: &[Object]) {
    s3.create_bucket()
        .bucket(BUCKET)
        .send()
        .await
        .expect("create bucket in moto");
    // Bedrock's own permission check object, outside AWSLogs/: ignored.
    s3.put_object()
        .bucket(BUCKET)
        .key(format!("{PREFIX}/amazon-bedrock-logs-permission-check"))
        .body(Vec::new().into())
        .send()
        .await
        .expect("put");
    for (i, o) in objects.iter().enumerate() {
        let body = if i % 4 == 0 && o.recs.len() > 1 {
            let (a, b) = o.recs.split_at(o.recs.len() / 2);
            gzip_members(&[a, b])
        } else {
            gzip_members(&[&o.recs])
        };
        s3.put_object()
            .bucket(BUCKET)
            .key(&o.key)
            .body(body.into())
            .send()
            .await
            .expect("put object in moto");
    }
}

fn backfill_command(moto: &Moto, table: &str, extra: &[&str]) -> Command {
    let ddb = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL (DynamoDB Local)");
    backfill_command_via(moto, &ddb, table, extra)
}

/// [`backfill_command`] talking to DynamoDB at `ddb` (a proxy).
fn backfill_command_via(moto: &Moto, ddb: &str, table: &str, extra: &[&str]) -> Command {
    let mut cmd = Command::new(cli_binary());
    cmd.args([
        "--table",
        table,
        "backfill",
        &format!("s3://{BUCKET}/{PREFIX}"),
        "--from",
        "2026-10-30",
        "--to",
        "2026-11-01",
        "--json",
    ])
    .args(extra)
    .env("AWS_ENDPOINT_URL_S3", &moto.endpoint)
    .env("AWS_ENDPOINT_URL_DYNAMODB", ddb)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    cmd
}

/// Runs to completion within `limit`; kills it and fails otherwise.
fn run_bounded(mut cmd: Command, limit: Duration) -> (ExitStatus, serde_json::Value, String) {
    let mut child = cmd.spawn().expect("start bedrock-meter");
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "backfill did not finish within {limit:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON summary ({status}): {stdout}\n{stderr}"));
    (status, summary, stderr)
}

fn settings() -> CommitSettings {
    CommitSettings {
        base_backoff: Duration::from_millis(2),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn backfill_counts_every_in_range_object_once_including_records_the_live_path_already_counted(
) {
    let client = local_client().await;
    let store = fresh_store(&client, "backfill-overlap").await;
    let moto = Moto::start("backfill");
    let s3 = s3_client(&moto.endpoint).await;
    let recs = corpus(300, 30, 4, 8080);
    let objects = layout(&recs);
    upload(&s3, &objects).await;
    let in_range: Vec<Rec> = objects
        .iter()
        .filter(|o| o.in_range)
        .flat_map(|o| o.recs.iter().cloned())
        .collect();
    assert!(
        objects.iter().any(|o| !o.in_range),
        "the layout has an out-of-range day"
    );

    // GIVEN the live path already counted a quarter of them (and one out of range)
    let live: Vec<Rec> = in_range.iter().step_by(4).cloned().collect();
    let outside = objects.iter().find(|o| !o.in_range).unwrap().recs[0].clone();
    let mut live_all = live.clone();
    live_all.push(outside.clone());
    let done = ingest_payload(
        &store,
        &Meter::with_defaults(),
        &settings(),
        &envelope(&live_all, 500_000),
        OffsetDateTime::now_utc(),
    )
    .await
    .expect("live ingest");
    assert_eq!(done.report.counted, live.len() + 1);

    // WHEN the history is backfilled
    let state = std::env::temp_dir().join(format!("backfill-{}.state", store.table()));
    let (status, summary, stderr) = run_bounded(
        backfill_command(
            &moto,
            store.table(),
            &["--concurrency", "8", "--state", state.to_str().unwrap()],
        ),
        Duration::from_secs(180),
    );
    // THEN the overlap is found already counted and nothing is counted twice
    assert!(status.success(), "{status}: {stderr}");
    assert!(stderr.contains("4 account/Region folders"), "{stderr}");
    let report = &summary["report"];
    let in_range_objects = objects.iter().filter(|o| o.in_range).count();
    assert_eq!(summary["objects_ingested"], in_range_objects, "{summary}");
    assert_eq!(report["counted"], in_range.len() - live.len(), "{summary}");
    assert_eq!(report["duplicates"], live.len(), "{summary}");
    assert_eq!(report["skipped"], 0, "{summary}");
    let mut expected = in_range.clone();
    expected.push(outside);
    assert_totals_eq(&read_aggregates(&store).await, &expected_totals(&expected));
    assert_eq!(marker_count(&store).await, expected.len());

    // AND a rerun with the state file reads nothing again
    let (status, again, stderr) = run_bounded(
        backfill_command(&moto, store.table(), &["--state", state.to_str().unwrap()]),
        Duration::from_secs(60),
    );
    assert!(status.success(), "{status}: {stderr}");
    assert_eq!(again["objects_already_done"], in_range_objects, "{again}");
    assert_eq!(again["objects_ingested"], 0, "{again}");
    let _ = std::fs::remove_file(&state);
}

/// The object keys a state file lists as completed (after its header).
fn state_keys(path: &PathBuf) -> BTreeSet<String> {
    std::fs::read_to_string(path)
        .map(|t| {
            t.lines()
                .skip(1)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Objects committed before the kill: the backfill sends one transaction
/// per object here (a handful of records each).
const COMMITTED_BEFORE_KILL: usize = 7;

#[tokio::test(flavor = "multi_thread")]
async fn a_backfill_killed_at_a_chosen_object_resumes_from_its_state_file_and_counts_exactly_the_rest(
) {
    let client = local_client().await;
    let store = fresh_store(&client, "backfill-resume").await;
    let moto = Moto::start("backfill");
    let s3 = s3_client(&moto.endpoint).await;
    let recs = corpus(200, 20, 3, 9090);
    let objects = layout(&recs);
    upload(&s3, &objects).await;
    let in_range: Vec<&Object> = objects.iter().filter(|o| o.in_range).collect();
    let in_range_recs: Vec<Rec> = in_range
        .iter()
        .flat_map(|o| o.recs.iter().cloned())
        .collect();
    assert!(
        in_range.iter().all(|o| o.recs.len() <= 10),
        "one transaction per object needs small objects"
    );
    let state = std::env::temp_dir().join(format!("backfill-{}.state", store.table()));

    // GIVEN a backfill killed (SIGKILL) once its 7th object's transaction
    // was applied but before the answer reached it: exactly 7 objects
    // committed, the 7th certainly not yet in the state file.
    let gate = GateProxy::start(upstream_from_env()).await;
    gate.arm(Some(KillPoint::AppliedAnswerWithheld(
        COMMITTED_BEFORE_KILL,
    )));
    let mut first = backfill_command_via(
        &moto,
        &gate.url(),
        store.table(),
        &["--concurrency", "1", "--state", state.to_str().unwrap()],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("start bedrock-meter");
    let stats = gate
        .wait_until_stopped(Duration::from_secs(120), || {
            first.try_wait().unwrap().map(|s| s.to_string())
        })
        .await;
    first.kill().expect("kill the first run");
    first.wait().unwrap();
    assert_eq!(stats.applied_in_run, COMMITTED_BEFORE_KILL, "{stats:?}");
    assert!(stats.problems.is_empty(), "{:?}", stats.problems);
    let markers = marker_keys(&store).await;
    assert_eq!(markers, stats.applied_markers);
    // The markers are those of 7 whole objects.
    let committed: BTreeSet<&str> = in_range
        .iter()
        .filter(|o| o.recs.iter().any(|r| markers.contains(&marker_pk(r))))
        .map(|o| o.key.as_str())
        .collect();
    assert_eq!(committed.len(), COMMITTED_BEFORE_KILL, "{committed:?}");
    let committed_recs: Vec<Rec> = in_range
        .iter()
        .filter(|o| committed.contains(o.key.as_str()))
        .flat_map(|o| o.recs.iter().cloned())
        .collect();
    assert_eq!(committed_recs.len(), markers.len(), "whole objects only");
    assert_totals_eq(
        &read_aggregates(&store).await,
        &expected_totals(&committed_recs),
    );
    // The state lists committed objects only (it may lag behind them).
    let checkpointed = state_keys(&state);
    assert!(
        checkpointed.iter().all(|k| committed.contains(k.as_str())),
        "{checkpointed:?} not within {committed:?}"
    );
    let found_counted: usize = in_range
        .iter()
        .filter(|o| committed.contains(o.key.as_str()) && !checkpointed.contains(&o.key))
        .map(|o| o.recs.len())
        .sum();
    assert!(
        checkpointed.len() < committed.len() && found_counted > 0,
        "the object in flight is committed but not checkpointed: {checkpointed:?}"
    );

    println!(
        "killed with the {}th object's transaction applied: {} of {} objects committed ({} records), {} in the state file",
        COMMITTED_BEFORE_KILL,
        committed.len(),
        in_range.len(),
        committed_recs.len(),
        checkpointed.len()
    );

    // WHEN it is run again with the same state file
    let (status, summary, stderr) = run_bounded(
        backfill_command(
            &moto,
            store.table(),
            &["--concurrency", "4", "--state", state.to_str().unwrap()],
        ),
        Duration::from_secs(180),
    );
    // THEN it skips the checkpointed objects, finds the committed but not
    // yet checkpointed ones counted, and counts exactly the rest
    assert!(status.success(), "{status}: {stderr}");
    assert_eq!(
        summary["objects_already_done"],
        checkpointed.len(),
        "{summary}"
    );
    assert_eq!(
        summary["objects_ingested"],
        in_range.len() - checkpointed.len(),
        "{summary}"
    );
    let report = &summary["report"];
    assert_eq!(
        report["counted"],
        in_range_recs.len() - committed_recs.len(),
        "{summary}"
    );
    assert_eq!(report["duplicates"], found_counted, "{summary}");
    assert_eq!(report["skipped"], 0, "{summary}");
    assert_totals_eq(
        &read_aggregates(&store).await,
        &expected_totals(&in_range_recs),
    );
    let all: BTreeSet<String> = in_range_recs.iter().map(marker_pk).collect();
    assert_eq!(marker_keys(&store).await, all);
    let done: BTreeSet<String> = in_range.iter().map(|o| o.key.clone()).collect();
    assert_eq!(state_keys(&state), done);
    let _ = std::fs::remove_file(&state);
}
