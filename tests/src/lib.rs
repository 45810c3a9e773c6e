//! Helpers for the integration tests: a DynamoDB Local client that fails
//! loudly when the server is missing, a fresh table per test, synthetic
//! corpora, and an independent computation of the expected totals (it shares
//! no code with the pipeline under test).

use std::collections::BTreeMap;
use std::io::Write;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use base64::Engine as _;
use meter_store::DynamoDbUsageStore;

/// A binary of this workspace (`target/debug/NAME`, or under
/// `CARGO_TARGET_DIR`). Panics with how to build it when it is missing;
/// `make test` builds every binary first.
pub fn workspace_binary(name: &str, package: &str) -> std::path::PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let bin = target.join("debug").join(name);
    assert!(
        bin.exists(),
        "{} is missing: build it first with `cargo build -p {package}` (make test does)",
        bin.display()
    );
    bin
}

/// A client for DynamoDB Local. Panics with instructions when the tests were
/// not started through `scripts/with-dynamodb-local.sh` (`make test`).
pub async fn local_client() -> Client {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    assert!(
        endpoint.starts_with("http://127.0.0.1:") || endpoint.starts_with("http://localhost:"),
        "integration tests need DynamoDB Local on loopback: run `make test` (or \
         scripts/with-dynamodb-local.sh cargo test --offline -p integration-tests); \
         AWS_ENDPOINT_URL is `{endpoint}`"
    );
    let client = client_for(aws_call_log::TEST_HARNESS).await;
    if let Err(e) = client.list_tables().limit(1).send().await {
        panic!("DynamoDB Local at {endpoint} does not answer: {e:?}");
    }
    client
}

/// A DynamoDB client from the environment, its calls recorded as
/// `component` when `BEDROCK_METER_CALL_LOG` is set (aws-call-log).
async fn client_for(component: &str) -> Client {
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    aws_call_log::client(&sdk, component)
}

/// Who the calls made through a test's store are recorded as. Only the
/// Kinesis tests run a function's handler (kinesis-ingest's) on the store in
/// process; elsewhere the store sets up and inspects data while the
/// functions and the CLI under test run as child processes and record
/// themselves. Told apart by the test binary's name (`kinesis-<hash>`).
fn in_process_component() -> &'static str {
    let exe = std::env::current_exe().unwrap_or_default();
    let binary = exe.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    match binary.rsplit_once('-').map_or(binary, |(name, _hash)| name) {
        "kinesis" => "kinesis-ingest",
        _ => aws_call_log::TEST_HARNESS,
    }
}

/// A store on an existing table whose calls are recorded as `component`'s
/// (a function whose handler a test runs in process, for the IAM check).
pub async fn store_as(component: &str, table: &str) -> DynamoDbUsageStore {
    DynamoDbUsageStore::new(client_for(component).await, table)
}

/// Creates a table of its own for one test: the data contract's schema
/// without the stream, which only the budget-alert tests read (they use
/// [`fresh_store_with_stream`]). DynamoDB Local slows down with every stream
/// record it holds, for every table, for 24 hours; with streams on everywhere
/// the suite ran several times slower and late tests timed out.
pub async fn fresh_store(client: &Client, test: &str) -> DynamoDbUsageStore {
    store_with(client, test, false).await
}

/// [`fresh_store`] with the table's stream (new and old images) on.
pub async fn fresh_store_with_stream(client: &Client, test: &str) -> DynamoDbUsageStore {
    store_with(client, test, true).await
}

async fn store_with(client: &Client, test: &str, stream: bool) -> DynamoDbUsageStore {
    let name = format!(
        "it-{}-{}",
        test.replace('_', "-").chars().take(180).collect::<String>(),
        fastrand::u32(..)
    );
    meter_store::create_table_with(client, &name, meter_store::TableOptions { stream })
        .await
        .expect("create test table");
    let component = in_process_component();
    let store_client = if component == aws_call_log::TEST_HARNESS {
        client.clone()
    } else {
        client_for(component).await
    };
    DynamoDbUsageStore::new(store_client, name)
}

/// The key of one aggregate as tests compare them: (kind, user, model, period).
pub type AggKey = (String, String, String, String);

/// Counters of one aggregate; cost as the exact decimal string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    pub invocations: u128,
    pub errors: u128,
    pub input_tokens: u128,
    pub output_tokens: u128,
    pub cache_read_input_tokens: u128,
    pub cache_write_input_tokens: u128,
    pub unpriced_invocations: u128,
    pub cost_usd: String,
}

/// Reads every aggregate of a table (a Scan: fine for verification).
pub async fn read_aggregates(store: &DynamoDbUsageStore) -> BTreeMap<AggKey, Totals> {
    let client = client_for(aws_call_log::TEST_HARNESS).await;
    let mut out = BTreeMap::new();
    let mut start = None;
    loop {
        let page = client
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
            let n = |k: &str| {
                item.get(k)
                    .and_then(|v| v.as_n().ok())
                    .map(|v| v.parse::<u128>().expect("integer counter"))
                    .expect("counter present")
            };
            let kind = s("kind");
            if matches!(
                kind.as_str(),
                "marker" | "marker_bucket" | "marker_scheme" | "request_cost"
            ) {
                continue;
            }
            let period = if item.contains_key("month") {
                s("month")
            } else {
                s("day")
            };
            // Tag aggregates have no user: `tag=value` stands in its place.
            let who = if item.contains_key("tag") {
                format!("{}={}", s("tag"), s("value"))
            } else {
                s("user")
            };
            let cost = match item.get("cost_usd") {
                Some(AttributeValue::N(v)) => v.clone(),
                other => panic!("cost_usd missing or not a number: {other:?}"),
            };
            out.insert(
                (kind, who, s("model"), period),
                Totals {
                    invocations: n("invocations"),
                    errors: n("errors"),
                    input_tokens: n("input_tokens"),
                    output_tokens: n("output_tokens"),
                    cache_read_input_tokens: n("cache_read_input_tokens"),
                    cache_write_input_tokens: n("cache_write_input_tokens"),
                    unpriced_invocations: n("unpriced_invocations"),
                    cost_usd: normalise_decimal(&cost),
                },
            );
        }
        match page.last_evaluated_key() {
            Some(k) if !k.is_empty() => start = Some(k.clone()),
            _ => break,
        }
    }
    out
}

/// Counts the records the table has marked as counted: per-record marker
/// items plus the ids in marker buckets.
pub async fn marker_count(store: &DynamoDbUsageStore) -> usize {
    marker_keys(store).await.len()
}

/// DynamoDB may print `1.50` as `1.5`; compare decimals by value.
pub fn normalise_decimal(s: &str) -> String {
    match s.split_once('.') {
        Some((i, f)) => {
            let f = f.trim_end_matches('0');
            if f.is_empty() {
                i.to_string()
            } else {
                format!("{i}.{f}")
            }
        }
        None => s.to_string(),
    }
}

/// One synthetic invocation.
#[derive(Debug, Clone)]
pub struct Rec {
    pub request_id: String,
    pub user: String,
    pub model: &'static str,
    /// RFC 3339 UTC, second precision.
    pub timestamp: String,
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
    pub error: bool,
}

/// Test rates in micro-dollars per 1M tokens (input, output, cache read,
/// cache write), copied by hand from the published prices, independent of the
/// price table file. `None`: unpriced.
pub fn test_rates(model: &str) -> Option<(u128, u128, u128, Option<u128>)> {
    match model {
        // Nova cache writes are published at $0: a real rate, not a missing one.
        "amazon.nova-micro-v1:0" => Some((35_000, 140_000, 8_750, Some(0))),
        "anthropic.claude-haiku-4-5-20251001-v1:0" => {
            Some((1_100_000, 5_500_000, 110_000, Some(1_375_000)))
        }
        "meta.llama3-3-70b-instruct-v1:0" => Some((720_000, 720_000, 0, None)),
        "amazon.nova-pro-v1:0" => Some((800_000, 3_200_000, 200_000, None)),
        _ => None,
    }
}

pub const TEST_MODELS: [&str; 5] = [
    "amazon.nova-micro-v1:0",
    "anthropic.claude-haiku-4-5-20251001-v1:0",
    "meta.llama3-3-70b-instruct-v1:0",
    "amazon.nova-pro-v1:0",
    "acme.unknown-model-v1:0",
];

impl Rec {
    pub fn to_json(&self) -> String {
        let mut input = serde_json::json!({"inputContentType": "application/json", "inputTokenCount": self.input,
            "inputBodyJson": {"messages": [{"role": "user", "content": [{"text": "CANARY-PROMPT-7f3a say hi"}]}]}});
        if self.cache_read > 0 {
            input["cacheReadInputTokenCount"] = self.cache_read.into();
        }
        if self.cache_write > 0 {
            input["cacheWriteInputTokenCount"] = self.cache_write.into();
        }
        let mut v = serde_json::json!({
            "schemaType": "ModelInvocationLog", "schemaVersion": "1.0",
            "timestamp": self.timestamp, "accountId": "111111111111", "region": "us-east-1",
            "requestId": self.request_id, "operation": "Converse", "modelId": self.model,
            "identity": {"arn": "arn:aws:sts::111111111111:assumed-role/BedrockUsers/session-x"},
            "requestMetadata": {"user": self.user},
            "input": input,
            "output": {"outputContentType": "application/json", "outputTokenCount": self.output,
                "outputBodyJson": {"output": {"message": {"content": [{"text": "CANARY-PROMPT-7f3a hello"}]}}}},
        });
        if self.error {
            v["errorCode"] = "ThrottlingException".into();
            v["input"] = serde_json::json!({});
            v["output"] = serde_json::json!({});
        }
        v.to_string()
    }

    fn day(&self) -> String {
        self.timestamp[..10].to_string()
    }
}

/// A deterministic corpus: `n` records over `users` users, the test models,
/// and `days` days starting 2026-10-30 (crossing a month boundary).
pub fn corpus(n: usize, users: usize, days: usize, seed: u64) -> Vec<Rec> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..n)
        .map(|i| {
            let day = rng.usize(..days);
            let date = time::macros::date!(2026 - 10 - 30) + time::Duration::days(day as i64);
            let model = TEST_MODELS[rng.usize(..TEST_MODELS.len())];
            let error = rng.u8(..) < 10;
            let cached = model.starts_with("anthropic") && rng.bool();
            Rec {
                request_id: format!("{seed:08x}-{i:08}-4000-8000-000000000000"),
                user: format!("user-{}", rng.usize(..users)),
                model,
                timestamp: format!(
                    "{date}T{:02}:{:02}:{:02}Z",
                    rng.u8(..24),
                    rng.u8(..60),
                    rng.u8(..60)
                ),
                input: if error { 0 } else { rng.u64(1..5000) },
                output: if error { 0 } else { rng.u64(1..2000) },
                cache_read: if cached && !error {
                    rng.u64(0..4000)
                } else {
                    0
                },
                cache_write: if cached && !error {
                    rng.u64(0..1000)
                } else {
                    0
                },
                error,
            }
        })
        .collect()
}

/// Newline-delimited records (Bedrock's S3 delivery shape).
pub fn ndjson(recs: &[Rec]) -> Vec<u8> {
    recs.iter()
        .map(|r| r.to_json() + "\n")
        .collect::<String>()
        .into_bytes()
}

/// A CloudWatch Logs subscription Lambda event carrying `recs`.
pub fn envelope(recs: &[Rec], first_event_id: u64) -> Vec<u8> {
    let messages: Vec<String> = recs.iter().map(Rec::to_json).collect();
    envelope_of_messages(&messages, first_event_id)
}

/// A record's JSON with extra `requestMetadata` entries (attribution tags).
pub fn tagged_json(r: &Rec, tags: &[(String, String)]) -> String {
    let mut v: serde_json::Value = serde_json::from_str(&r.to_json()).expect("record JSON");
    for (k, val) in tags {
        v["requestMetadata"][k] = val.clone().into();
    }
    v.to_string()
}

/// A CloudWatch Logs subscription Lambda event carrying these log messages.
pub fn envelope_of_messages(messages: &[String], first_event_id: u64) -> Vec<u8> {
    let events: Vec<serde_json::Value> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            serde_json::json!({"id": format!("{:056}", first_event_id + i as u64), "timestamp": 1_790_000_000_000u64, "message": m})
        })
        .collect();
    let payload = serde_json::json!({
        "messageType": "DATA_MESSAGE", "owner": "111111111111",
        "logGroup": "/aws/bedrock/modelinvocations", "logStream": "aws/bedrock/modelinvocations",
        "subscriptionFilters": ["bedrock-meter"], "logEvents": events,
    });
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(payload.to_string().as_bytes()).expect("gzip");
    let data = base64::engine::general_purpose::STANDARD.encode(gz.finish().expect("gzip"));
    serde_json::json!({"awslogs": {"data": data}})
        .to_string()
        .into_bytes()
}

fn month_of(day: &str) -> String {
    day[..7].to_string()
}

fn pico_to_decimal(p: u128) -> String {
    let whole = p / 1_000_000_000_000;
    let frac = p % 1_000_000_000_000;
    normalise_decimal(&format!("{whole}.{frac:012}"))
}

/// One record's (unpriced, cost in pico-dollars), from [`test_rates`].
fn record_cost(r: &Rec) -> (u128, u128) {
    let tokens = u128::from(r.input)
        + u128::from(r.output)
        + u128::from(r.cache_read)
        + u128::from(r.cache_write);
    match test_rates(r.model) {
        _ if tokens == 0 => (0, 0),
        None => (1, 0),
        Some((i, o, cr, cw)) => match (r.cache_write, cw) {
            (w, None) if w > 0 => (1, 0),
            _ => (
                0,
                u128::from(r.input) * i
                    + u128::from(r.output) * o
                    + u128::from(r.cache_read) * cr
                    + u128::from(r.cache_write) * cw.unwrap_or(0),
            ),
        },
    }
}

/// One record's exact cost as a decimal string (what `bedrock-meter cost`
/// should print), and whether it is unpriced.
pub fn expected_record_cost(r: &Rec) -> (String, bool) {
    let (unpriced, cost) = record_cost(r);
    (pico_to_decimal(cost), unpriced == 1)
}

/// The tag aggregates (`tag_model_day`, `tag_month`) after counting each
/// record once, computed without the pipeline: for each key of `keys`, the
/// record's value in `tags` (its extra `requestMetadata`), or `untagged`
/// when it has none (or an empty one). Keys as [`read_aggregates`] reads
/// them: (kind, `tag=value`, model, period).
pub fn expected_tag_totals(
    recs: &[(Rec, Vec<(String, String)>)],
    keys: &[&str],
) -> BTreeMap<AggKey, Totals> {
    let mut raw: BTreeMap<AggKey, (Totals, u128)> = BTreeMap::new();
    for (r, tags) in recs {
        let (unpriced, cost) = record_cost(r);
        let day = r.day();
        for key in keys {
            let value = tags
                .iter()
                .find(|(k, v)| k == key && !v.trim().is_empty())
                .map_or("untagged", |(_, v)| v.as_str());
            let who = format!("{key}={value}");
            for k in [
                (
                    "tag_model_day".to_string(),
                    who.clone(),
                    r.model.to_string(),
                    day.clone(),
                ),
                ("tag_month".to_string(), who, String::new(), month_of(&day)),
            ] {
                let (t, c) = raw.entry(k).or_default();
                t.invocations += 1;
                t.errors += u128::from(r.error);
                t.input_tokens += u128::from(r.input);
                t.output_tokens += u128::from(r.output);
                t.cache_read_input_tokens += u128::from(r.cache_read);
                t.cache_write_input_tokens += u128::from(r.cache_write);
                t.unpriced_invocations += unpriced;
                *c += cost;
            }
        }
    }
    raw.into_iter()
        .map(|(k, (mut t, c))| {
            t.cost_usd = pico_to_decimal(c);
            (k, t)
        })
        .collect()
}

/// The totals every aggregate should hold after counting `recs` once each,
/// computed without the pipeline.
pub fn expected_totals(recs: &[Rec]) -> BTreeMap<AggKey, Totals> {
    let mut raw: BTreeMap<AggKey, (Totals, u128)> = BTreeMap::new();
    for r in recs {
        let tokens = u128::from(r.input)
            + u128::from(r.output)
            + u128::from(r.cache_read)
            + u128::from(r.cache_write);
        let (unpriced, cost): (u128, u128) = match test_rates(r.model) {
            _ if tokens == 0 => (0, 0),
            None => (1, 0),
            Some((i, o, cr, cw)) => match (r.cache_write, cw) {
                (w, None) if w > 0 => (1, 0),
                _ => (
                    0,
                    u128::from(r.input) * i
                        + u128::from(r.output) * o
                        + u128::from(r.cache_read) * cr
                        + u128::from(r.cache_write) * cw.unwrap_or(0),
                ),
            },
        };
        let day = r.day();
        let keys = [
            (
                "user_model_day".to_string(),
                r.user.clone(),
                r.model.to_string(),
                day.clone(),
            ),
            (
                "user_day".to_string(),
                r.user.clone(),
                String::new(),
                day.clone(),
            ),
            (
                "user_month".to_string(),
                r.user.clone(),
                String::new(),
                month_of(&day),
            ),
            (
                "model_day".to_string(),
                String::new(),
                r.model.to_string(),
                day.clone(),
            ),
        ];
        for k in keys {
            let (t, c) = raw.entry(k).or_default();
            t.invocations += 1;
            t.errors += u128::from(r.error);
            t.input_tokens += u128::from(r.input);
            t.output_tokens += u128::from(r.output);
            t.cache_read_input_tokens += u128::from(r.cache_read);
            t.cache_write_input_tokens += u128::from(r.cache_write);
            t.unpriced_invocations += unpriced;
            *c += cost;
        }
    }
    raw.into_iter()
        .map(|(k, (mut t, c))| {
            t.cost_usd = pico_to_decimal(c);
            (k, t)
        })
        .collect()
}

/// Asserts two sets of totals are equal, naming the first differences.
pub fn assert_totals_eq(actual: &BTreeMap<AggKey, Totals>, expected: &BTreeMap<AggKey, Totals>) {
    let mut diffs = Vec::new();
    for (k, e) in expected {
        match actual.get(k) {
            Some(a) if a == e => {}
            other => diffs.push(format!("{k:?}: expected {e:?}, got {other:?}")),
        }
    }
    for k in actual.keys() {
        if !expected.contains_key(k) {
            diffs.push(format!("{k:?}: unexpected aggregate"));
        }
    }
    assert!(
        diffs.is_empty(),
        "{} of {} aggregates differ; first: {:#?}",
        diffs.len(),
        expected.len(),
        &diffs[..diffs.len().min(5)]
    );
}

/// Which records a table counted, one identifier per record (its marker
/// id, see [`marker_pk`]): from per-record marker items (`kind = marker`)
/// and from the id sets of marker buckets (`kind = marker_bucket`).
pub async fn marker_keys(store: &DynamoDbUsageStore) -> std::collections::BTreeSet<String> {
    let client = client_for(aws_call_log::TEST_HARNESS).await;
    let mut out = std::collections::BTreeSet::new();
    let mut start = None;
    loop {
        let page = client
            .scan()
            .table_name(store.table())
            .filter_expression("#k IN (:m, :b)")
            .expression_attribute_names("#k", "kind")
            .expression_attribute_values(":m", AttributeValue::S("marker".into()))
            .expression_attribute_values(":b", AttributeValue::S("marker_bucket".into()))
            .consistent_read(true)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .expect("scan");
        for item in page.items() {
            match item.get("kind") {
                Some(AttributeValue::S(k)) if k == "marker" => {
                    let Some(AttributeValue::S(id)) = item.get("record_id") else {
                        panic!("a marker without a record_id: {item:?}")
                    };
                    assert!(
                        out.insert(marker_id(meter_store::markers::mark_id(id))),
                        "one record marked twice: {id}"
                    );
                }
                _ => {
                    let state = meter_store::dynamo::bucket_state(item);
                    let n = match item.get("n") {
                        Some(AttributeValue::N(n)) => n.parse::<usize>().expect("n"),
                        other => panic!("a bucket without n: {other:?}"),
                    };
                    assert_eq!(n, state.ids.len(), "a bucket's n counts its ids: {item:?}");
                    for id in state.ids {
                        assert!(
                            out.insert(marker_id(id)),
                            "one record marked twice (in two buckets): {id:016x}"
                        );
                    }
                }
            }
        }
        match page.last_evaluated_key() {
            Some(k) if !k.is_empty() => start = Some(k.clone()),
            _ => break,
        }
    }
    out
}

fn marker_id(id: u64) -> String {
    format!("M#{id:016x}")
}

/// The marker identifier of a synthetic record, as [`marker_keys`] lists
/// it (its request id holds no character that key encoding changes).
pub fn marker_pk(r: &Rec) -> String {
    assert!(
        r.request_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-'),
        "{}",
        r.request_id
    );
    marker_id(meter_store::markers::mark_id(&format!(
        "r:{}",
        r.request_id
    )))
}

/// moto's server on a free 127.0.0.1 port (S3, SNS, SQS, Kinesis for the
/// backfill and redrive tests), stopped by its PID when dropped. Panics with
/// how to install it when `moto_server` is missing: never a silent skip.
pub struct Moto {
    child: std::process::Child,
    pub endpoint: String,
    log: std::path::PathBuf,
}

impl Moto {
    /// Starts moto for `purpose` (named in the errors) and waits until it listens.
    pub fn start(purpose: &str) -> Moto {
        use std::time::{Duration, Instant};
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let log = std::env::temp_dir().join(format!("moto-{purpose}-{port}.log"));
        let out = std::fs::File::create(&log).expect("moto log file");
        let child = std::process::Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(out.try_clone().expect("moto log file"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "moto_server is required for the {purpose} tests ({e}): \
                     python3 -m pip install -r tests/requirements.txt (make test does)"
                )
            });
        let mut moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            log,
        };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!(
                    "moto_server exited during start-up ({status}): {}",
                    std::fs::read_to_string(&moto.log).unwrap_or_default()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "moto_server did not listen on {port} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}
