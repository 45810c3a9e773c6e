//! A fault-injecting HTTP/1.1 proxy for the AWS SDK and DynamoDB Local.
//!
//! The SDK talks plain HTTP/1.1 to DynamoDB Local; the proxy sits between
//! them on 127.0.0.1 and, for a configurable share of requests, misbehaves the
//! way DynamoDB and networks do:
//!
//! - answers without forwarding, with DynamoDB's own error responses
//!   (status, `__type`, message, `x-amzn-RequestId`, `x-amz-crc32`):
//!   `ThrottlingException` (400), `ProvisionedThroughputExceededException`
//!   (400), `InternalServerError` (500), and `TransactionCanceledException`
//!   (400) with one `TransactionConflict` among `None` reasons, one per action;
//! - resets the connection before forwarding;
//! - answers slowly (forwards after a delay: not a failure);
//! - forwards, so DynamoDB applies the write, then loses the answer: a
//!   connection reset, a 500 `InternalServerError`, or a stall longer than the
//!   client's attempt timeout.
//!
//! One request per connection: the forwarded request carries
//! `Connection: close` and every answer says so too, so the SDK never reuses a
//! connection the proxy is about to drop (which would inject faults we did
//! not count).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One way of misbehaving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// 400 `ThrottlingException`, not forwarded.
    Throttling,
    /// 400 `ProvisionedThroughputExceededException`, not forwarded.
    ProvisionedThroughputExceeded,
    /// 500 `InternalServerError`, not forwarded.
    InternalServerError,
    /// 400 `TransactionCanceledException` with a `TransactionConflict`
    /// reason, not forwarded (only for `TransactWriteItems`).
    TransactionConflict,
    /// TCP reset before forwarding.
    ResetBeforeForwarding,
    /// Forwarded after a delay; the answer arrives late but intact.
    SlowAnswer,
    /// Forwarded (the write is applied), then the connection is reset.
    AppliedThenReset,
    /// Forwarded (the write is applied), then answered 500.
    AppliedThenInternalServerError,
    /// Forwarded (the write is applied), then no answer before the client's
    /// attempt timeout.
    AppliedThenStalled,
}

impl Fault {
    pub const ALL: [Fault; 9] = [
        Fault::Throttling,
        Fault::ProvisionedThroughputExceeded,
        Fault::InternalServerError,
        Fault::TransactionConflict,
        Fault::ResetBeforeForwarding,
        Fault::SlowAnswer,
        Fault::AppliedThenReset,
        Fault::AppliedThenInternalServerError,
        Fault::AppliedThenStalled,
    ];

    /// Whether DynamoDB applied the request although the client saw a failure.
    pub fn applied_but_lost(self) -> bool {
        matches!(
            self,
            Fault::AppliedThenReset
                | Fault::AppliedThenInternalServerError
                | Fault::AppliedThenStalled
        )
    }
}

/// What the proxy does.
#[derive(Debug, Clone)]
pub struct FaultPlan {
    /// Share of requests that get a fault (0.0 to 1.0).
    pub rate: f64,
    /// Faults drawn uniformly when one fires.
    pub kinds: Vec<Fault>,
    pub seed: u64,
    /// Delay of [`Fault::SlowAnswer`].
    pub slow: Duration,
    /// How long [`Fault::AppliedThenStalled`] holds the answer (longer than
    /// the client's attempt timeout).
    pub stall: Duration,
}

/// Counters of what the proxy did.
#[derive(Debug, Default)]
pub struct ProxyStats {
    pub requests: AtomicUsize,
    pub forwarded: AtomicUsize,
    faults: Mutex<BTreeMap<Fault, usize>>,
    /// Anything the proxy could not handle (a test bug, not an injected fault).
    problems: Mutex<Vec<String>>,
}

impl ProxyStats {
    pub fn faults(&self) -> BTreeMap<Fault, usize> {
        self.faults.lock().unwrap().clone()
    }
    pub fn total_faults(&self) -> usize {
        self.faults().values().sum()
    }
    pub fn problems(&self) -> Vec<String> {
        self.problems.lock().unwrap().clone()
    }
}

/// A running proxy; stopped when dropped.
pub struct FaultProxy {
    pub addr: SocketAddr,
    pub stats: Arc<ProxyStats>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// Starts a proxy on 127.0.0.1 (an ephemeral port) in front of
    /// `upstream`, which must be on loopback.
    pub async fn start(upstream: SocketAddr, plan: FaultPlan) -> FaultProxy {
        assert!(upstream.ip().is_loopback(), "only ever proxy to loopback");
        assert!((0.0..=1.0).contains(&plan.rate));
        assert!(!plan.kinds.is_empty() || plan.rate == 0.0);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let stats = Arc::new(ProxyStats::default());
        let rng = Arc::new(Mutex::new(fastrand::Rng::with_seed(plan.seed)));
        let plan = Arc::new(plan);
        let task = {
            let stats = stats.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((conn, _)) = listener.accept().await else {
                        continue;
                    };
                    // The draw happens per request, in arrival order.
                    let (stats, plan, rng) = (stats.clone(), plan.clone(), rng.clone());
                    tokio::spawn(async move {
                        if let Err(problem) = serve(conn, upstream, &plan, &rng, &stats).await {
                            stats.problems.lock().unwrap().push(problem);
                        }
                    });
                }
            })
        };
        FaultProxy { addr, stats, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// The upstream address from `AWS_ENDPOINT_URL` (`http://127.0.0.1:PORT`).
pub fn upstream_from_env() -> SocketAddr {
    let url = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL");
    let hostport = url
        .strip_prefix("http://")
        .expect("plain http endpoint")
        .trim_end_matches('/');
    let hostport = hostport.replace("localhost", "127.0.0.1");
    let addr: SocketAddr = hostport.parse().expect("endpoint host:port");
    assert!(addr.ip().is_loopback(), "only ever target 127.0.0.1");
    addr
}

struct Request {
    head: String,
    body: Vec<u8>,
    target: String,
}

/// Serves one connection: one request, one answer (or none). Errors are
/// problems of the proxy itself, not injected faults.
async fn serve(
    mut conn: TcpStream,
    upstream: SocketAddr,
    plan: &FaultPlan,
    rng: &Mutex<fastrand::Rng>,
    stats: &ProxyStats,
) -> Result<(), String> {
    let Some(req) = read_request(&mut conn).await? else {
        return Ok(()); // the client opened and closed a connection
    };
    stats.requests.fetch_add(1, Ordering::Relaxed);
    let fault = {
        let mut rng = rng.lock().unwrap();
        if rng.f64() < plan.rate {
            let kinds: Vec<Fault> = plan
                .kinds
                .iter()
                .copied()
                .filter(|k| {
                    *k != Fault::TransactionConflict || req.target.ends_with(".TransactWriteItems")
                })
                .collect();
            (!kinds.is_empty()).then(|| kinds[rng.usize(..kinds.len())])
        } else {
            None
        }
    };
    if let Some(f) = fault {
        *stats.faults.lock().unwrap().entry(f).or_default() += 1;
    }
    let answer = |status: u16, reason: &str, body: String| error_response(status, reason, &body);
    match fault {
        Some(Fault::Throttling) => {
            let r = answer(400, "Bad Request", throttling_body());
            let _ = conn.write_all(&r).await;
        }
        Some(Fault::ProvisionedThroughputExceeded) => {
            let r = answer(400, "Bad Request", provisioned_body());
            let _ = conn.write_all(&r).await;
        }
        Some(Fault::InternalServerError) => {
            let r = answer(500, "Internal Server Error", internal_body());
            let _ = conn.write_all(&r).await;
        }
        Some(Fault::TransactionConflict) => {
            let actions = transact_items(&req.body);
            let conflicted = rng.lock().unwrap().usize(..actions.max(1));
            let r = answer(400, "Bad Request", conflict_body(actions, conflicted));
            let _ = conn.write_all(&r).await;
        }
        Some(Fault::ResetBeforeForwarding) => {
            reset(conn);
            return Ok(());
        }
        Some(Fault::SlowAnswer) => {
            tokio::time::sleep(plan.slow).await;
            let r = forward(upstream, &req).await?;
            stats.forwarded.fetch_add(1, Ordering::Relaxed);
            let _ = conn.write_all(&r).await;
        }
        Some(Fault::AppliedThenReset) => {
            forward(upstream, &req).await?;
            stats.forwarded.fetch_add(1, Ordering::Relaxed);
            reset(conn);
            return Ok(());
        }
        Some(Fault::AppliedThenInternalServerError) => {
            forward(upstream, &req).await?;
            stats.forwarded.fetch_add(1, Ordering::Relaxed);
            let r = answer(500, "Internal Server Error", internal_body());
            let _ = conn.write_all(&r).await;
        }
        Some(Fault::AppliedThenStalled) => {
            let r = forward(upstream, &req).await?;
            stats.forwarded.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(plan.stall).await;
            // The client has given up by now; this write usually fails.
            let _ = conn.write_all(&r).await;
        }
        None => {
            let r = forward(upstream, &req).await?;
            stats.forwarded.fetch_add(1, Ordering::Relaxed);
            let _ = conn.write_all(&r).await;
        }
    }
    let _ = conn.shutdown().await;
    Ok(())
}

/// Closes with a TCP RST (SO_LINGER 0) instead of a FIN.
fn reset(conn: TcpStream) {
    let _ = conn.set_zero_linger();
    drop(conn);
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads one request with a `Content-Length` body. `None` when the client
/// closed the connection without sending anything.
async fn read_request(conn: &mut TcpStream) -> Result<Option<Request>, String> {
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(p) = find(&buf, b"\r\n\r\n") {
            break p + 4;
        }
        if buf.len() > 64 * 1024 {
            return Err("request head over 64 KiB".into());
        }
        let n = conn
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read request: {e}"))?;
        if n == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err("client closed mid-request".into())
            };
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).map_err(|_| "head not UTF-8")?;
    let mut length = 0usize;
    let mut target = String::new();
    for line in head.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                length = value
                    .trim()
                    .parse()
                    .map_err(|_| format!("bad content-length `{value}`"))?
            }
            "transfer-encoding" => return Err(format!("unsupported transfer-encoding {value}")),
            "expect" => return Err(format!("unsupported expect {value}")),
            "x-amz-target" => target = value.trim().to_string(),
            _ => {}
        }
    }
    while buf.len() < head_end + length {
        let n = conn
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read body: {e}"))?;
        if n == 0 {
            return Err("client closed mid-body".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(Some(Request {
        head,
        body: buf[head_end..head_end + length].to_vec(),
        target,
    }))
}

/// Sends the request upstream with `Connection: close` and returns the whole
/// answer as received (any framing), with `Connection: close` ensured.
async fn forward(upstream: SocketAddr, req: &Request) -> Result<Vec<u8>, String> {
    let mut head = String::new();
    for (i, line) in req.head.trim_end_matches("\r\n").split("\r\n").enumerate() {
        let is_connection = line
            .split_once(':')
            .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case("connection"));
        if i == 0 || !is_connection {
            head.push_str(line);
            head.push_str("\r\n");
        }
    }
    head.push_str("Connection: close\r\n\r\n");
    let exchange = async {
        let mut up = TcpStream::connect(upstream).await?;
        up.write_all(head.as_bytes()).await?;
        up.write_all(&req.body).await?;
        let mut answer = Vec::new();
        up.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .map_err(|_| "DynamoDB Local did not answer in 30 s".to_string())?
        .map_err(|e| format!("upstream: {e}"))?;
    let Some(end) = find(&answer, b"\r\n\r\n") else {
        return Err(format!(
            "upstream answer without a head ({} bytes)",
            answer.len()
        ));
    };
    let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
    if head.contains("\r\nconnection: close") {
        return Ok(answer);
    }
    let mut fixed = answer[..end + 2].to_vec();
    fixed.extend_from_slice(b"Connection: close\r\n");
    fixed.extend_from_slice(&answer[end + 2..]);
    Ok(fixed)
}

/// How many actions a `TransactWriteItems` request holds.
fn transact_items(body: &[u8]) -> usize {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("TransactItems")?.as_array().map(Vec::len))
        .unwrap_or(1)
}

const TYPE_PREFIX: &str = "com.amazonaws.dynamodb.v20120810#";

fn throttling_body() -> String {
    serde_json::json!({
        "__type": format!("{TYPE_PREFIX}ThrottlingException"),
        "message": "Rate of requests exceeds the allowed throughput.",
    })
    .to_string()
}

fn provisioned_body() -> String {
    serde_json::json!({
        "__type": format!("{TYPE_PREFIX}ProvisionedThroughputExceededException"),
        "message": "The level of configured provisioned throughput for the table was exceeded. Consider increasing your provisioning level with the UpdateTable API.",
    })
    .to_string()
}

fn internal_body() -> String {
    serde_json::json!({
        "__type": format!("{TYPE_PREFIX}InternalServerError"),
        "message": "Internal server error",
    })
    .to_string()
}

/// `TransactionCanceledException` as DynamoDB sends it: one reason per
/// action, in order, `None` for the innocent ones.
fn conflict_body(actions: usize, conflicted: usize) -> String {
    let reasons: Vec<serde_json::Value> = (0..actions.max(1))
        .map(|i| {
            if i == conflicted {
                serde_json::json!({"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"})
            } else {
                serde_json::json!({"Code": "None"})
            }
        })
        .collect();
    let codes: Vec<&str> = (0..actions.max(1))
        .map(|i| {
            if i == conflicted {
                "TransactionConflict"
            } else {
                "None"
            }
        })
        .collect();
    serde_json::json!({
        "__type": format!("{TYPE_PREFIX}TransactionCanceledException"),
        "CancellationReasons": reasons,
        "Message": format!(
            "Transaction cancelled, please refer cancellation reasons for specific reasons [{}]",
            codes.join(", ")
        ),
    })
    .to_string()
}

/// An error answer with DynamoDB's headers: JSON 1.0 content type, a
/// 52-character request id and the CRC32 of the body.
fn error_response(status: u16, reason: &str, body: &str) -> Vec<u8> {
    let mut crc = flate2::Crc::new();
    crc.update(body.as_bytes());
    let request_id: String = (0..52)
        .map(|_| {
            let c = fastrand::u8(..36);
            char::from(if c < 10 { b'0' + c } else { b'A' + c - 10 })
        })
        .collect();
    format!(
        "HTTP/1.1 {status} {reason}\r\nServer: Server\r\nContent-Type: application/x-amz-json-1.0\r\nContent-Length: {}\r\nConnection: close\r\nx-amzn-RequestId: {request_id}\r\nx-amz-crc32: {}\r\n\r\n{body}",
        body.len(),
        crc.sum()
    )
    .into_bytes()
}
