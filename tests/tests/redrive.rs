//! `bedrock-meter redrive` end to end: Lambda on-failure destination records
//! in moto's SQS, Kinesis records in moto's Kinesis (moto started here on a
//! free loopback port, stopped by PID), the real CLI binary and DynamoDB
//! Local. Expected totals are computed independently (`expected_totals`).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use integration_tests::*;
use meter_core::Meter;
use meter_store::{ingest_payload, CommitSettings};
use time::OffsetDateTime;

/// Clients of the moto server (SQS and Kinesis) for the test's own set-up.
async fn sqs_client(moto: &Moto) -> aws_sdk_sqs::Client {
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(&sdk)
            .endpoint_url(&moto.endpoint)
            .build(),
    )
}

async fn kinesis_client(moto: &Moto) -> aws_sdk_kinesis::Client {
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    aws_sdk_kinesis::Client::from_conf(
        aws_sdk_kinesis::config::Builder::from(&sdk)
            .endpoint_url(&moto.endpoint)
            .build(),
    )
}

fn events_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../events")
}

fn settings() -> CommitSettings {
    CommitSettings {
        base_backoff: Duration::from_millis(2),
        ..Default::default()
    }
}

/// events/on-failure-destination.json as it is.
fn fixture_record() -> serde_json::Value {
    serde_json::from_slice(
        &std::fs::read(events_dir().join("on-failure-destination.json")).unwrap(),
    )
    .expect("events/on-failure-destination.json is JSON")
}

/// The invocation inside the fixture, as a `Rec` built from
/// events/expected-totals.json (its `requestPayload` is single-invocation).
fn fixture_rec() -> Rec {
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(events_dir().join("expected-totals.json")).unwrap())
            .unwrap();
    let s = &expected["scenarios"]["single-invocation"];
    let t = &s["totals"][0];
    let model = TEST_MODELS
        .iter()
        .find(|m| **m == t["model"].as_str().unwrap())
        .copied()
        .expect("the fixture's model is a test model");
    Rec {
        request_id: s["request_ids"][0].as_str().unwrap().into(),
        user: t["user"].as_str().unwrap().into(),
        model,
        timestamp: format!("{}T12:00:00Z", t["day"].as_str().unwrap()),
        input: t["input_tokens"].as_u64().unwrap(),
        output: t["output_tokens"].as_u64().unwrap(),
        cache_read: t["cache_read_input_tokens"].as_u64().unwrap(),
        cache_write: t["cache_write_input_tokens"].as_u64().unwrap(),
        error: t["errors"].as_u64().unwrap() > 0,
    }
}

/// The fixture with its `requestPayload` replaced by a CloudWatch Logs event
/// carrying `recs`: what the ingest Lambda's failure queue receives.
fn destination_record(recs: &[Rec], first_event_id: u64) -> String {
    let mut v = fixture_record();
    v["requestPayload"] = serde_json::from_slice(&envelope(recs, first_event_id)).unwrap();
    v.to_string()
}

/// `awslogs.data` of a Lambda event, decoded: the gzip `DATA_MESSAGE` that
/// the subscription puts on a Kinesis stream.
fn data_message(recs: &[Rec], first_event_id: u64) -> Vec<u8> {
    let event: serde_json::Value = serde_json::from_slice(&envelope(recs, first_event_id)).unwrap();
    base64::engine::general_purpose::STANDARD
        .decode(event["awslogs"]["data"].as_str().unwrap())
        .unwrap()
}

async fn create_queue(sqs: &aws_sdk_sqs::Client, name: &str) -> String {
    sqs.create_queue()
        .queue_name(name)
        .send()
        .await
        .expect("create queue in moto")
        .queue_url
        .expect("queue url")
}

/// Sends each body; returns the message ids in order.
async fn send_all(sqs: &aws_sdk_sqs::Client, url: &str, bodies: &[String]) -> Vec<String> {
    let mut ids = Vec::new();
    for b in bodies {
        let out = sqs
            .send_message()
            .queue_url(url)
            .message_body(b)
            .send()
            .await
            .expect("send to moto");
        ids.push(out.message_id.expect("message id"));
    }
    ids
}

/// The ids of every message visible in the queue. They are received (hidden
/// for 60 s so that each is seen once) and then made visible again.
async fn visible_ids(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut handles = Vec::new();
    loop {
        let got = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .visibility_timeout(60)
            .send()
            .await
            .expect("receive from moto");
        if got.messages().is_empty() {
            break;
        }
        for m in got.messages() {
            ids.push(m.message_id().unwrap_or_default().to_string());
            handles.push(m.receipt_handle().unwrap_or_default().to_string());
        }
    }
    for h in handles {
        sqs.change_message_visibility()
            .queue_url(url)
            .receipt_handle(h)
            .visibility_timeout(0)
            .send()
            .await
            .expect("make visible again");
    }
    ids.sort();
    let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!(
        unique.len(),
        ids.len(),
        "a message was received twice: {ids:?}"
    );
    ids
}

fn cli_binary() -> PathBuf {
    workspace_binary("bedrock-meter", "bedrock-meter-cli")
}

/// Runs `bedrock-meter --table TABLE redrive URL --json EXTRA...` to
/// completion (bounded); returns (exit code, JSON summary, stderr).
fn redrive(
    moto: &Moto,
    table: &str,
    url: &str,
    extra: &[&str],
) -> (i32, serde_json::Value, String) {
    let ddb = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL (DynamoDB Local)");
    let mut child = Command::new(cli_binary())
        .args([
            "--table",
            table,
            "redrive",
            url,
            "--json",
            "--wait-seconds",
            "1",
        ])
        .args(extra)
        .env("AWS_ENDPOINT_URL_SQS", &moto.endpoint)
        .env("AWS_ENDPOINT_URL_KINESIS", &moto.endpoint)
        .env("AWS_ENDPOINT_URL_DYNAMODB", &ddb)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start bedrock-meter");
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("redrive did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON summary ({:?}): {stdout}\n{stderr}", out.status));
    (out.status.code().unwrap_or(-1), summary, stderr)
}

#[tokio::test(flavor = "multi_thread")]
async fn redrive_counts_every_message_once_deletes_them_and_leaves_the_malformed_one() {
    let client = local_client().await;
    let store = fresh_store(&client, "redrive-lambda").await;
    let moto = Moto::start("redrive");
    let sqs = sqs_client(&moto).await;
    let url = create_queue(&sqs, "ingest-failures").await;

    // GIVEN 12 failed deliveries of 20 records each, the fixture itself, and a
    // malformed one (its awslogs.data is not gzip)
    let recs = corpus(240, 20, 3, 4242);
    let chunks: Vec<&[Rec]> = recs.chunks(20).collect();
    let mut bodies: Vec<String> = chunks
        .iter()
        .enumerate()
        .map(|(i, c)| destination_record(c, 42_000 + 100 * i as u64))
        .collect();
    bodies.push(fixture_record().to_string());
    let mut malformed = fixture_record();
    malformed["requestPayload"]["awslogs"]["data"] = base64::engine::general_purpose::STANDARD
        .encode(b"not gzip at all")
        .into();
    bodies.insert(5, malformed.to_string());
    let ids = send_all(&sqs, &url, &bodies).await;
    let malformed_id = ids[5].clone();
    // AND the first two deliveries plus half of the third were counted before
    // the Lambda failed (a timeout after the commit, say)
    let mut already: Vec<Rec> = chunks[0].to_vec();
    already.extend_from_slice(chunks[1]);
    already.extend_from_slice(&chunks[2][..10]);
    let done = ingest_payload(
        &store,
        &Meter::with_defaults(),
        &settings(),
        &ndjson(&already),
        OffsetDateTime::now_utc(),
    )
    .await
    .expect("counted before");
    assert_eq!(done.report.counted, already.len());
    let mut all = recs.clone();
    all.push(fixture_rec());

    // WHEN the queue is redriven
    let (code, summary, stderr) = redrive(&moto, store.table(), &url, &[]);

    // THEN it exits 1, having counted everything else exactly once
    assert_eq!(code, 1, "{summary}\n{stderr}");
    assert_eq!(summary["received"], 14, "{summary}");
    assert_eq!(summary["redriven"], 13, "{summary}");
    assert_eq!(summary["drained"], true, "{summary}");
    assert_eq!(
        summary["report"]["counted"],
        all.len() - already.len(),
        "{summary}"
    );
    assert_eq!(summary["report"]["duplicates"], already.len(), "{summary}");
    assert_totals_eq(&read_aggregates(&store).await, &expected_totals(&all));
    assert_eq!(marker_count(&store).await, all.len());
    // AND the malformed message is the only one left, reported by id
    let left = summary["left"].as_array().unwrap();
    assert_eq!(left.len(), 1, "{summary}");
    assert_eq!(left[0]["message_id"], malformed_id.as_str());
    assert!(
        left[0]["reason"].as_str().unwrap().contains("gzip"),
        "{summary}"
    );
    assert!(stderr.contains(&malformed_id), "{stderr}");
    assert!(!stderr.contains("CANARY"), "no prompt text in the output");
    assert_eq!(visible_ids(&sqs, &url).await, vec![malformed_id.clone()]);

    // WHEN it is redriven again
    let (code, again, stderr) = redrive(&moto, store.table(), &url, &[]);
    // THEN nothing changes: the malformed message is still left and reported
    assert_eq!(code, 1, "{again}\n{stderr}");
    assert_eq!(
        (again["received"].as_u64(), again["redriven"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(again["report"]["counted"], 0, "{again}");
    assert_totals_eq(&read_aggregates(&store).await, &expected_totals(&all));
    assert_eq!(marker_count(&store).await, all.len());
    assert_eq!(visible_ids(&sqs, &url).await, vec![malformed_id]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_failure_leaves_every_message_in_the_queue() {
    let client = local_client().await;
    let store = fresh_store(&client, "redrive-no-table").await;
    let moto = Moto::start("redrive");
    let sqs = sqs_client(&moto).await;
    let url = create_queue(&sqs, "ingest-failures-store").await;
    let recs = corpus(60, 5, 2, 777);
    let bodies: Vec<String> = recs
        .chunks(5)
        .enumerate()
        .map(|(i, c)| destination_record(c, 7_000 + 10 * i as u64))
        .collect();
    let mut ids = send_all(&sqs, &url, &bodies).await;
    ids.sort();

    // WHEN redrive writes to a table that does not exist
    let missing = format!("{}-missing", store.table());
    let (code, summary, stderr) = redrive(&moto, &missing, &url, &[]);

    // THEN it stops at the first message, deletes nothing, and says why
    assert_eq!(code, 1, "{summary}\n{stderr}");
    assert_eq!(summary["redriven"], 0, "{summary}");
    assert_eq!(summary["stopped_at_store_failure"], true, "{summary}");
    let left = summary["left"].as_array().unwrap();
    assert_eq!(left.len(), summary["received"].as_u64().unwrap() as usize);
    assert!(
        left[0]["reason"].as_str().unwrap().contains(&missing),
        "{summary}"
    );
    assert_eq!(visible_ids(&sqs, &url).await, ids);
    // AND the real table, redriven afterwards, gets everything once
    let (code, summary, stderr) = redrive(&moto, store.table(), &url, &[]);
    assert_eq!(code, 0, "{summary}\n{stderr}");
    assert_eq!(summary["redriven"], bodies.len(), "{summary}");
    assert_totals_eq(&read_aggregates(&store).await, &expected_totals(&recs));
    assert!(visible_ids(&sqs, &url).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_counts_nothing_and_leaves_every_message_visible() {
    let client = local_client().await;
    let store = fresh_store(&client, "redrive-dry-run").await;
    let moto = Moto::start("redrive");
    let sqs = sqs_client(&moto).await;
    let url = create_queue(&sqs, "ingest-failures-dry").await;
    let recs = corpus(30, 4, 2, 31);
    let bodies: Vec<String> = recs
        .chunks(10)
        .enumerate()
        .map(|(i, c)| destination_record(c, 3_000 + 100 * i as u64))
        .collect();
    let mut ids = send_all(&sqs, &url, &bodies).await;
    ids.sort();
    let (code, summary, stderr) = redrive(&moto, store.table(), &url, &["--dry-run"]);
    assert_eq!(code, 0, "{summary}\n{stderr}");
    assert_eq!(summary["dry_run"], true);
    assert_eq!(summary["redriven"], 3, "{summary}");
    assert_eq!(summary["report"]["counted"], recs.len(), "{summary}");
    assert_eq!(marker_count(&store).await, 0);
    assert_eq!(visible_ids(&sqs, &url).await, ids);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kinesis_failure_record_is_read_back_from_the_stream_and_counted_once() {
    let client = local_client().await;
    let store = fresh_store(&client, "redrive-kinesis").await;
    let moto = Moto::start("redrive");
    let sqs = sqs_client(&moto).await;
    let kinesis = kinesis_client(&moto).await;
    let url = create_queue(&sqs, "kinesis-ingest-failures").await;
    kinesis
        .create_stream()
        .stream_name("invocation-logs")
        .shard_count(1)
        .send()
        .await
        .expect("create stream in moto");
    let summary = kinesis
        .describe_stream_summary()
        .stream_name("invocation-logs")
        .send()
        .await
        .expect("describe stream");
    let desc = summary.stream_description_summary().expect("a summary");
    let arn = desc.stream_arn().to_string();

    // GIVEN 8 Kinesis records of 15 invocations each; record 6 is corrupt
    let recs = corpus(120, 10, 3, 5151);
    let chunks: Vec<&[Rec]> = recs.chunks(15).collect();
    let mut seqs = Vec::new();
    let mut shard = String::new();
    for (i, c) in chunks.iter().enumerate() {
        let mut data = data_message(c, 51_000 + 100 * i as u64);
        if i == 6 {
            data.truncate(data.len() / 2);
        }
        let put = kinesis
            .put_record()
            .stream_name("invocation-logs")
            .partition_key("pk")
            .data(aws_sdk_kinesis::primitives::Blob::new(data))
            .send()
            .await
            .expect("put record in moto");
        seqs.push(put.sequence_number().to_string());
        shard = put.shard_id().to_string();
    }
    // AND kinesis-ingest counted records 0, 1 and 3 before giving up
    for i in [0, 1, 3] {
        ingest_payload(
            &store,
            &Meter::with_defaults(),
            &settings(),
            &data_message(chunks[i], 51_000 + 100 * i as u64),
            OffsetDateTime::now_utc(),
        )
        .await
        .expect("counted by the Lambda");
    }
    // AND its failure queue holds two destination records: 1..=4 and 6..=7
    let batch_record = |from: usize, to: usize| {
        serde_json::json!({
            "requestContext": {"requestId": "c9b8fa9f-5a7f-4f0d-af9c-0c604cde93a5",
                "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:kinesis-ingest",
                "condition": "RetryAttemptsExhausted", "approximateInvokeCount": 11},
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": null},
            "version": "1.0", "timestamp": "2026-11-20T10:38:06.021Z",
            "KinesisBatchInfo": {"shardId": shard, "startSequenceNumber": seqs[from],
                "endSequenceNumber": seqs[to],
                "approximateArrivalOfFirstRecord": "2026-11-20T10:38:04.835Z",
                "approximateArrivalOfLastRecord": "2026-11-20T10:38:05.580Z",
                "batchSize": to - from + 1, "streamArn": arn}
        })
        .to_string()
    };
    let ids = send_all(&sqs, &url, &[batch_record(1, 4), batch_record(6, 7)]).await;

    // WHEN the queue is redriven
    let (code, summary, stderr) = redrive(&moto, store.table(), &url, &[]);

    // THEN records 1..=4 and 7 are read back and counted once (0 and 3 were
    // already; 5 is in no range), the first message is deleted
    assert_eq!(code, 1, "{summary}\n{stderr}");
    assert_eq!(summary["kinesis_records"], 6, "{summary}");
    let mut expected: Vec<Rec> = Vec::new();
    for i in [0, 1, 2, 3, 4, 7] {
        expected.extend_from_slice(chunks[i]);
    }
    assert_eq!(summary["report"]["counted"], 15 * 3, "{summary}");
    assert_eq!(summary["report"]["duplicates"], 15 * 2, "{summary}");
    assert_totals_eq(&read_aggregates(&store).await, &expected_totals(&expected));
    assert_eq!(marker_count(&store).await, expected.len());
    // AND the second stays, naming the corrupt record's sequence number
    let left = summary["left"].as_array().unwrap();
    assert_eq!(left.len(), 1, "{summary}");
    assert_eq!(left[0]["message_id"], ids[1].as_str());
    assert!(
        left[0]["reason"].as_str().unwrap().contains(&seqs[6]),
        "{summary}"
    );
    assert_eq!(visible_ids(&sqs, &url).await, vec![ids[1].clone()]);
}
