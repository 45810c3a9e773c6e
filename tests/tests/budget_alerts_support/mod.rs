//! Test doubles for the budget-alerts tests, all on 127.0.0.1:
//!
//! - [`FakeSns`]: an HTTP server speaking SNS's Query API `Publish`; it
//!   records every request it accepts (decoded form parameters) and can fail
//!   (HTTP 500 `InternalError`) or hang (never answer) on demand. A request
//!   that is not a valid `Publish` to the topic is answered 400 and recorded
//!   as a problem, which fails the test in its own body: at the next
//!   [`FakeSns::published`] or when the fake is dropped (a panic inside the
//!   server's task would only drop the connection).
//! - [`LambdaRuntime`]: the Lambda Runtime API (`/next`, `/response`,
//!   `/error`) serving the events the test hands it to the real
//!   `budget-alerts` binary, started as a child process and killed by PID.
//! - [`StreamReader`]: the table's real stream (DynamoDB Local) read with
//!   aws-sdk-dynamodbstreams and converted into the Lambda event shape.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodbstreams::types::{AttributeValue, ShardIteratorType};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Mutex as AsyncMutex};

/// One HTTP request.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub body: Vec<u8>,
}

/// Status, extra headers, body. `None`: never answer (a hung server).
pub type Response = Option<(u16, Vec<(String, String)>, Vec<u8>)>;
type Handler = Arc<dyn Fn(Request) -> Pin<Box<dyn Future<Output = Response> + Send>> + Send + Sync>;

fn boxed<F: Future<Output = Response> + Send + 'static>(
    f: F,
) -> Pin<Box<dyn Future<Output = Response> + Send>> {
    Box::pin(f)
}

/// Problems a test server met (requests it could not handle), reported in
/// the test body rather than panicking inside the server's tasks.
pub type Problems = Arc<Mutex<Vec<String>>>;

/// A minimal HTTP/1.1 server (Content-Length bodies, keep-alive) on an
/// ephemeral loopback port; stopped when the test's runtime ends. Requests
/// it cannot parse are recorded in `problems`.
pub async fn serve(handler: Handler, problems: Problems) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1");
    let port = listener.local_addr().expect("local addr").port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (handler, problems) = (handler.clone(), problems.clone());
            tokio::spawn(async move {
                if let Err(problem) = connection(stream, handler).await {
                    problems.lock().unwrap().push(problem);
                }
            });
        }
    });
    port
}

/// Serves one connection. `Err`: a request the server cannot handle (I/O
/// errors are the client's business and end the connection quietly).
async fn connection(mut stream: TcpStream, handler: Handler) -> Result<(), String> {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p;
            }
            let mut chunk = [0u8; 8192];
            let Ok(n) = stream.read(&mut chunk).await else {
                return Ok(());
            };
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let mut lines = head.split("\r\n");
        let mut first = lines.next().unwrap_or_default().split(' ');
        let (method, path) = (
            first.next().unwrap_or_default().to_string(),
            first.next().unwrap_or_default().to_string(),
        );
        let mut len = 0usize;
        for l in lines {
            if let Some((k, v)) = l.split_once(':') {
                let k = k.trim().to_ascii_lowercase();
                if k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked") {
                    return Err(format!(
                        "the test HTTP server does not support chunked bodies ({method} {path})"
                    ));
                }
                if k == "content-length" {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let body_start = head_end + 4;
        while buf.len() < body_start + len {
            let mut chunk = [0u8; 8192];
            let Ok(n) = stream.read(&mut chunk).await else {
                return Ok(());
            };
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let body = buf[body_start..body_start + len].to_vec();
        buf.drain(..body_start + len);
        // Wait for the handler, but give up when the client goes away: a
        // function killed (crash tests) while its `GET /next` was pending must
        // not leave that request waiting here to take the next event, which
        // its new process would then never see. Dropping the handler drops its
        // channel `recv`, which is cancel-safe: no event is lost.
        let handled = handler(Request { method, path, body });
        tokio::pin!(handled);
        let mut probe = [0u8; 1];
        let answer = tokio::select! {
            answer = &mut handled => answer,
            peeked = stream.peek(&mut probe) => match peeked {
                Ok(0) | Err(_) => return Ok(()),
                // The client sent more (pipelining): wait for the handler alone.
                Ok(_) => handled.await,
            },
        };
        let Some((status, headers, body)) = answer else {
            // Hang: keep the connection open without answering.
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return Ok(());
        };
        let mut out = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\n", body.len());
        for (k, v) in headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("\r\n");
        if stream.write_all(out.as_bytes()).await.is_err() || stream.write_all(&body).await.is_err()
        {
            return Ok(());
        }
    }
}

fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("00");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).to_string()
}

/// Decodes an `application/x-www-form-urlencoded` body.
pub fn form(body: &[u8]) -> HashMap<String, String> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (url_decode(k), url_decode(v))
        })
        .collect()
}

/// How the fake SNS answers the next requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnsMode {
    Accept,
    /// HTTP 500 `InternalError` (the SDK retries, then gives up).
    Fail,
    /// Never answer.
    Hang,
}

/// One accepted `Publish`: its decoded parameters.
#[derive(Debug, Clone)]
pub struct Published(pub HashMap<String, String>);

impl Published {
    pub fn message(&self) -> &str {
        self.0
            .get("Message")
            .map(String::as_str)
            .unwrap_or_default()
    }
    pub fn subject(&self) -> &str {
        self.0
            .get("Subject")
            .map(String::as_str)
            .unwrap_or_default()
    }
    /// Message attributes by name: (DataType, StringValue).
    pub fn attributes(&self) -> HashMap<String, (String, String)> {
        let mut out = HashMap::new();
        for i in 1.. {
            let p = format!("MessageAttributes.entry.{i}");
            let Some(name) = self.0.get(&format!("{p}.Name")) else {
                break;
            };
            out.insert(
                name.clone(),
                (
                    self.0
                        .get(&format!("{p}.Value.DataType"))
                        .cloned()
                        .unwrap_or_default(),
                    self.0
                        .get(&format!("{p}.Value.StringValue"))
                        .cloned()
                        .unwrap_or_default(),
                ),
            );
        }
        out
    }
    pub fn attribute(&self, name: &str) -> String {
        self.attributes()
            .get(name)
            .map(|v| v.1.clone())
            .unwrap_or_default()
    }
}

/// A loopback SNS endpoint that records `Publish` requests.
pub struct FakeSns {
    pub port: u16,
    pub mode: Arc<Mutex<SnsMode>>,
    pub published: Arc<Mutex<Vec<Published>>>,
    /// Requests that got no answer or an error.
    pub refused: Arc<Mutex<usize>>,
    /// Requests that were not a valid `Publish` to [`TOPIC_ARN`].
    problems: Problems,
}

/// Why a request is not a `Publish` to [`TOPIC_ARN`] as the SDK sends it.
fn publish_problem(req: &Request, params: &HashMap<String, String>) -> Option<String> {
    if req.method != "POST" {
        return Some(format!(
            "SNS Query API requests are POSTs, got {} {}",
            req.method, req.path
        ));
    }
    if params.get("Action").map(String::as_str) != Some("Publish") {
        return Some(format!("expected Action=Publish: {params:?}"));
    }
    if params.get("TopicArn").map(String::as_str) != Some(TOPIC_ARN) {
        return Some(format!("expected TopicArn={TOPIC_ARN}: {params:?}"));
    }
    None
}

pub const TOPIC_ARN: &str = "arn:aws:sns:us-east-1:111111111111:bedrock-budget-alerts";

impl FakeSns {
    pub async fn start() -> FakeSns {
        let mode = Arc::new(Mutex::new(SnsMode::Accept));
        let published = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(Mutex::new(0));
        let problems: Problems = Arc::new(Mutex::new(Vec::new()));
        let (m, p, r, bad) = (
            mode.clone(),
            published.clone(),
            refused.clone(),
            problems.clone(),
        );
        let handler: Handler = Arc::new(move |req: Request| {
            let (m, p, r, bad) = (m.clone(), p.clone(), r.clone(), bad.clone());
            boxed(async move {
                let params = form(&req.body);
                if let Some(problem) = publish_problem(&req, &params) {
                    bad.lock().unwrap().push(problem);
                    return Some((400, vec![("content-type".into(), "text/xml".into())],
                        b"<ErrorResponse><Error><Type>Sender</Type><Code>InvalidParameter</Code><Message>not a Publish to the test topic</Message></Error><RequestId>r</RequestId></ErrorResponse>".to_vec()));
                }
                let mode = *m.lock().unwrap();
                match mode {
                    SnsMode::Hang => {
                        *r.lock().unwrap() += 1;
                        None
                    }
                    SnsMode::Fail => {
                        *r.lock().unwrap() += 1;
                        Some((500, vec![("content-type".into(), "text/xml".into())],
                            b"<ErrorResponse><Error><Type>Receiver</Type><Code>InternalError</Code><Message>injected</Message></Error><RequestId>r</RequestId></ErrorResponse>".to_vec()))
                    }
                    SnsMode::Accept => {
                        let mut list = p.lock().unwrap();
                        list.push(Published(params));
                        let body = format!(
                            "<PublishResponse xmlns=\"http://sns.amazonaws.com/doc/2010-03-31/\"><PublishResult><MessageId>00000000-0000-4000-8000-{:012}</MessageId></PublishResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></PublishResponse>",
                            list.len()
                        );
                        Some((
                            200,
                            vec![("content-type".into(), "text/xml".into())],
                            body.into_bytes(),
                        ))
                    }
                }
            })
        });
        let port = serve(handler, problems.clone()).await;
        FakeSns {
            port,
            mode,
            published,
            refused,
            problems,
        }
    }

    /// Requests that were not a valid `Publish` to the topic, or that the
    /// server could not parse.
    pub fn problems(&self) -> Vec<String> {
        self.problems.lock().unwrap().clone()
    }

    /// Panics (in the test's body) when the fake met a bad request.
    pub fn assert_no_problems(&self) {
        let problems = self.problems();
        assert!(
            problems.is_empty(),
            "the fake SNS got requests it should not have: {problems:#?}"
        );
    }

    pub fn set_mode(&self, mode: SnsMode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// Every accepted `Publish`; fails first if any request was bad.
    pub fn published(&self) -> Vec<Published> {
        self.assert_no_problems();
        self.published.lock().unwrap().clone()
    }
}

impl Drop for FakeSns {
    fn drop(&mut self) {
        // A test that never looks at `published()` still fails on a bad
        // request (unless it is already failing).
        if !std::thread::panicking() {
            self.assert_no_problems();
        }
    }
}

/// The Lambda Runtime API in front of one `budget-alerts` process.
pub struct LambdaRuntime {
    port: u16,
    events: mpsc::UnboundedSender<(String, Value)>,
    responses: AsyncMutex<mpsc::UnboundedReceiver<(String, Result<Value, Value>)>>,
    child: Option<Child>,
    pub log: PathBuf,
    counter: Mutex<u64>,
    /// Requests the Runtime API server could not parse.
    problems: Problems,
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The built `budget-alerts` binary; panics with how to build it.
pub fn binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"));
    let bin = target.join("debug/budget-alerts");
    assert!(
        bin.exists(),
        "{} is missing: build it first with `cargo build -p budget-alerts` (make test does)",
        bin.display()
    );
    bin
}

impl LambdaRuntime {
    /// Starts the Runtime API and the function against `table` and `sns`.
    pub async fn start(table: &str, sns: &FakeSns, name: &str) -> LambdaRuntime {
        let (etx, erx) = mpsc::unbounded_channel::<(String, Value)>();
        let (rtx, rrx) = mpsc::unbounded_channel();
        let erx = Arc::new(AsyncMutex::new(erx));
        let handler: Handler = Arc::new(move |req: Request| {
            let (erx, rtx) = (erx.clone(), rtx.clone());
            boxed(async move {
                if req.method == "GET" && req.path.ends_with("/runtime/invocation/next") {
                    let (id, event) = erx.lock().await.recv().await?;
                    let deadline = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_millis()
                        + 60_000;
                    return Some((
                        200,
                        vec![
                            ("lambda-runtime-aws-request-id".into(), id),
                            ("lambda-runtime-deadline-ms".into(), deadline.to_string()),
                            (
                                "lambda-runtime-invoked-function-arn".into(),
                                "arn:aws:lambda:us-east-1:111111111111:function:budget-alerts"
                                    .into(),
                            ),
                            (
                                "lambda-runtime-trace-id".into(),
                                "Root=1-00000000-000000000000000000000000".into(),
                            ),
                            ("content-type".into(), "application/json".into()),
                        ],
                        event.to_string().into_bytes(),
                    ));
                }
                let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
                let parts: Vec<&str> = req.path.split('/').collect();
                if req.path.ends_with("/response") {
                    let _ = rtx.send((parts[parts.len() - 2].to_string(), Ok(body)));
                } else if req.path.ends_with("/error") {
                    let id = if req.path.contains("/init/") {
                        "init".to_string()
                    } else {
                        parts[parts.len() - 2].to_string()
                    };
                    let _ = rtx.send((id, Err(body)));
                }
                Some((202, vec![], b"{}".to_vec()))
            })
        });
        let problems: Problems = Arc::new(Mutex::new(Vec::new()));
        let port = serve(handler, problems.clone()).await;
        let mut rt = LambdaRuntime {
            port,
            events: etx,
            responses: AsyncMutex::new(rrx),
            child: None,
            log: std::env::temp_dir()
                .join(format!("budget-alerts-{name}-{}.log", std::process::id())),
            counter: Mutex::new(0),
            problems,
        };
        rt.spawn(table, sns);
        rt
    }

    fn spawn(&mut self, table: &str, sns: &FakeSns) {
        let log = std::fs::File::create(&self.log).expect("log file");
        let child = Command::new(binary())
            .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{}", self.port))
            .env("AWS_LAMBDA_FUNCTION_NAME", "budget-alerts")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("USAGE_TABLE", table)
            .env("ALERT_TOPIC_ARN", TOPIC_ARN)
            .env(
                "AWS_ENDPOINT_URL_SNS",
                format!("http://127.0.0.1:{}", sns.port),
            )
            .env("ALERT_CLAIM_LEASE_SECONDS", "2")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start budget-alerts");
        self.child = Some(child);
    }

    /// Kills the function (SIGKILL: a crash) and starts a new process.
    pub fn crash_and_restart(&mut self, table: &str, sns: &FakeSns) {
        self.kill();
        self.spawn(table, sns);
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Queues one event without waiting for its response.
    pub fn send(&self, event: &Value) -> String {
        let mut c = self.counter.lock().unwrap();
        *c += 1;
        let id = format!("00000000-0000-4000-8000-{:012}", *c);
        self.events
            .send((id.clone(), event.clone()))
            .expect("runtime API is running");
        id
    }

    /// Invokes the function with `event` and returns its response (bounded:
    /// 90 s, then a panic with the function's log).
    pub async fn invoke(&self, event: &Value) -> Value {
        let id = self.send(event);
        let mut rx = self.responses.lock().await;
        loop {
            let problems = self.problems.lock().unwrap().clone();
            assert!(
                problems.is_empty(),
                "the Runtime API got requests it could not handle: {problems:?}"
            );
            match tokio::time::timeout(Duration::from_secs(90), rx.recv()).await {
                Ok(Some((rid, Ok(v)))) if rid == id => return v,
                Ok(Some((rid, Err(e)))) if rid == id || rid == "init" => {
                    panic!("budget-alerts failed: {e}\n{}", self.log_text())
                }
                Ok(Some(_)) => continue,
                _ => panic!(
                    "budget-alerts did not answer within 90 s (Runtime API problems: {:?})\n{}",
                    self.problems.lock().unwrap(),
                    self.log_text()
                ),
            }
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for LambdaRuntime {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// The table's stream, read shard by shard from TRIM_HORIZON.
pub struct StreamReader {
    client: aws_sdk_dynamodbstreams::Client,
    arn: String,
    iterators: HashMap<String, Option<String>>,
}

impl StreamReader {
    pub async fn open(ddb: &aws_sdk_dynamodb::Client, table: &str) -> StreamReader {
        let arn = ddb
            .describe_table()
            .table_name(table)
            .send()
            .await
            .expect("describe table")
            .table()
            .and_then(|t| t.latest_stream_arn())
            .expect("the table has a stream")
            .to_string();
        let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        StreamReader {
            client: aws_call_log::client(&sdk, aws_call_log::TEST_HARNESS),
            arn,
            iterators: HashMap::new(),
        }
    }

    /// Every record written since the last call, in the Lambda event shape,
    /// keeping only what the event source mapping's filter lets through
    /// (`kind` user_day, user_month, tag_month or tag_model_day).
    pub async fn read(&mut self) -> Vec<Value> {
        let shards = self
            .client
            .describe_stream()
            .stream_arn(&self.arn)
            .send()
            .await
            .expect("describe stream")
            .stream_description()
            .map(|d| {
                d.shards()
                    .iter()
                    .filter_map(|s| s.shard_id().map(str::to_string))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let mut out = Vec::new();
        for shard in shards {
            if !self.iterators.contains_key(&shard) {
                let it = self
                    .client
                    .get_shard_iterator()
                    .stream_arn(&self.arn)
                    .shard_id(&shard)
                    .shard_iterator_type(ShardIteratorType::TrimHorizon)
                    .send()
                    .await
                    .expect("get shard iterator")
                    .shard_iterator()
                    .map(str::to_string);
                self.iterators.insert(shard.clone(), it);
            }
            for _ in 0..100 {
                let Some(Some(it)) = self.iterators.get(&shard).cloned() else {
                    break;
                };
                let page = self
                    .client
                    .get_records()
                    .shard_iterator(it)
                    .send()
                    .await
                    .expect("get records");
                self.iterators.insert(
                    shard.clone(),
                    page.next_shard_iterator().map(str::to_string),
                );
                if page.records().is_empty() {
                    break;
                }
                out.extend(page.records().iter().map(|r| self.lambda_record(r)));
            }
        }
        out.retain(|r| {
            matches!(
                r["dynamodb"]["NewImage"]["kind"]["S"].as_str(),
                Some("user_day" | "user_month" | "tag_month" | "tag_model_day")
            )
        });
        out
    }

    fn lambda_record(&self, r: &aws_sdk_dynamodbstreams::types::Record) -> Value {
        let d = r.dynamodb().expect("stream record body");
        let image = |m: Option<&HashMap<String, AttributeValue>>| {
            Value::Object(
                m.map(|m| m.iter().map(|(k, v)| (k.clone(), av(v))).collect())
                    .unwrap_or_default(),
            )
        };
        json!({
            "eventID": r.event_id(),
            "eventName": r.event_name().map(|n| n.as_str()),
            "eventVersion": r.event_version(),
            "eventSource": "aws:dynamodb",
            "awsRegion": r.aws_region().unwrap_or("us-east-1"),
            "eventSourceARN": self.arn,
            "dynamodb": {
                "ApproximateCreationDateTime": d.approximate_creation_date_time().map(|t| t.secs() as f64).unwrap_or(0.0),
                "Keys": image(d.keys()),
                "NewImage": image(d.new_image()),
                "OldImage": image(d.old_image()),
                "SequenceNumber": d.sequence_number(),
                "SizeBytes": d.size_bytes().unwrap_or(0),
                "StreamViewType": d.stream_view_type().map(|v| v.as_str()),
            }
        })
    }
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// An SDK attribute value in DynamoDB JSON.
fn av(v: &AttributeValue) -> Value {
    match v {
        AttributeValue::S(s) => json!({ "S": s }),
        AttributeValue::N(n) => json!({ "N": n }),
        AttributeValue::Bool(b) => json!({ "BOOL": b }),
        AttributeValue::Null(b) => json!({ "NULL": b }),
        AttributeValue::Ss(l) => json!({ "SS": l }),
        AttributeValue::Ns(l) => json!({ "NS": l }),
        // Marker buckets' id sets: base64, as Lambda's stream events carry them.
        AttributeValue::B(b) => json!({ "B": b64(b.as_ref()) }),
        AttributeValue::Bs(l) => {
            json!({ "BS": l.iter().map(|b| b64(b.as_ref())).collect::<Vec<_>>() })
        }
        AttributeValue::L(l) => json!({ "L": l.iter().map(av).collect::<Vec<_>>() }),
        AttributeValue::M(m) => {
            json!({ "M": m.iter().map(|(k, v)| (k.clone(), av(v))).collect::<serde_json::Map<_, _>>() })
        }
        other => panic!("attribute type not used by the usage table: {other:?}"),
    }
}

/// A Lambda DynamoDB event of `records`.
pub fn event(records: &[Value]) -> Value {
    json!({ "Records": records })
}
