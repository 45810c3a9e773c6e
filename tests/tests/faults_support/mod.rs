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
//!
//! [`GateProxy`] reuses the same plumbing to stop a client at a chosen
//! transaction, so that a test can kill it there (see its docs).

// Several test binaries include this module and each uses a part of it.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
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

// ------------------------------------------------------------- kill points

/// Where [`GateProxy`] stops the client, counted in *new* transactions of
/// the run: `TransactWriteItems` requests none of whose markers the proxy has
/// seen applied (a rerun first re-sends what earlier runs applied; those are
/// cancelled by their markers and not counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillPoint {
    /// The n-th new transaction (1-based) is held and never forwarded.
    BeforeForwarding(usize),
    /// The n-th new transaction is forwarded and applied; its answer is
    /// never delivered.
    AppliedAnswerWithheld(usize),
    /// The n-th new transaction's answer is delivered and the client has
    /// read it (it closed the connection); every later request is held.
    BetweenTransactions(usize),
}

impl KillPoint {
    fn n(self) -> usize {
        match self {
            KillPoint::BeforeForwarding(n)
            | KillPoint::AppliedAnswerWithheld(n)
            | KillPoint::BetweenTransactions(n) => n,
        }
    }

    /// New transactions applied when the client is stopped here, with one
    /// request at a time.
    pub fn applied_when_sequential(self) -> usize {
        match self {
            KillPoint::BeforeForwarding(n) => n - 1,
            KillPoint::AppliedAnswerWithheld(n) | KillPoint::BetweenTransactions(n) => n,
        }
    }
}

/// What a [`GateProxy`] has seen.
#[derive(Debug, Clone, Default)]
pub struct GateStats {
    /// Marker keys (`pk`) of every transaction DynamoDB applied through the
    /// proxy (answered 200), over all runs.
    pub applied_markers: BTreeSet<String>,
    /// Transactions applied, over all runs.
    pub applied_transactions: usize,
    /// Transactions DynamoDB refused (cancelled), over all runs.
    pub refused_transactions: usize,
    /// New transactions applied since the last [`GateProxy::arm`].
    pub applied_in_run: usize,
    /// Anything the proxy could not handle (a test bug).
    pub problems: Vec<String>,
}

#[derive(Debug, Default)]
struct Gate {
    point: Option<KillPoint>,
    /// New transactions that arrived since the last arm.
    new_seen: usize,
    /// Requests are held from now on.
    closed: bool,
    /// The kill point's own effect is complete.
    settled: bool,
    /// Requests forwarded whose answer has not come back from upstream.
    in_flight: usize,
    stats: GateStats,
}

/// A loopback proxy in front of DynamoDB Local that forwards every request
/// until an armed [`KillPoint`], then holds every request (never forwarding
/// it), so that the table stays exactly as it was at that point while the
/// test kills the client. It records the markers of every transaction it saw
/// applied, which is what the table must then hold.
pub struct GateProxy {
    pub addr: SocketAddr,
    gate: Arc<Mutex<Gate>>,
    changed: tokio::sync::watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for GateProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GateProxy {
    /// Starts the proxy on 127.0.0.1 (an ephemeral port), open: everything
    /// is forwarded until [`GateProxy::arm`].
    pub async fn start(upstream: SocketAddr) -> GateProxy {
        assert!(upstream.ip().is_loopback(), "only ever proxy to loopback");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let gate = Arc::new(Mutex::new(Gate::default()));
        let (changed, _) = tokio::sync::watch::channel(0u64);
        let task = {
            let (gate, changed) = (gate.clone(), changed.clone());
            tokio::spawn(async move {
                loop {
                    let Ok((conn, _)) = listener.accept().await else {
                        continue;
                    };
                    let (gate, changed) = (gate.clone(), changed.clone());
                    tokio::spawn(async move {
                        if let Err(problem) = gate_serve(conn, upstream, &gate, &changed).await {
                            gate.lock().unwrap().stats.problems.push(problem);
                            changed.send_modify(|v| *v += 1);
                        }
                    });
                }
            })
        };
        GateProxy {
            addr,
            gate,
            changed,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Opens the gate and stops the next run at `point` (`None`: never).
    /// Call it only while no client is running.
    pub fn arm(&self, point: Option<KillPoint>) {
        let mut g = self.gate.lock().unwrap();
        assert_eq!(g.in_flight, 0, "armed while requests are in flight");
        g.point = point;
        g.new_seen = 0;
        g.closed = false;
        g.settled = false;
        g.stats.applied_in_run = 0;
    }

    pub fn stats(&self) -> GateStats {
        self.gate.lock().unwrap().stats.clone()
    }

    /// Waits until the armed point is reached and settled and no forwarded
    /// request is still waiting for DynamoDB: from then on the table does
    /// not change. Panics after `limit`, or when `exited` reports the client
    /// gone first.
    pub async fn wait_until_stopped(
        &self,
        limit: Duration,
        mut exited: impl FnMut() -> Option<String>,
    ) -> GateStats {
        let mut rx = self.changed.subscribe();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            {
                let g = self.gate.lock().unwrap();
                if g.closed && g.settled && g.in_flight == 0 {
                    return g.stats.clone();
                }
            }
            if let Some(status) = exited() {
                panic!(
                    "the client ended ({status}) before its kill point {:?}",
                    self.gate.lock().unwrap().point
                );
            }
            // Woken by any change of the gate; the timeout re-checks `exited`.
            let _ = tokio::time::timeout(Duration::from_millis(100), rx.changed()).await;
            assert!(
                tokio::time::Instant::now() < deadline,
                "the kill point {:?} was not reached within {limit:?}: {:?}",
                self.gate.lock().unwrap().point,
                self.stats()
            );
        }
    }
}

/// The records a `TransactWriteItems` body marks, as
/// [`integration_tests::marker_keys`] names them (`M#<mark id>`): the ids a
/// marker bucket update adds (`:ids`), and the record of each per-record
/// marker `Put` (`R#...`).
fn marker_keys(body: &[u8]) -> Result<Vec<String>, String> {
    use base64::Engine as _;
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("transaction body: {e}"))?;
    let items = v["TransactItems"]
        .as_array()
        .ok_or("a transaction without TransactItems")?;
    let mut out = Vec::new();
    for i in items {
        let put = &i["Put"]["Item"];
        if put["pk"]["S"]
            .as_str()
            .is_some_and(|pk| pk.starts_with("R#"))
        {
            let id = put["record_id"]["S"]
                .as_str()
                .ok_or("a marker without record_id")?;
            out.push(format!("M#{:016x}", meter_store::markers::mark_id(id)));
        }
        let update = &i["Update"];
        if update["Key"]["pk"]["S"]
            .as_str()
            .is_some_and(|pk| pk.starts_with("B#"))
        {
            let ids = update["ExpressionAttributeValues"][":ids"]["BS"]
                .as_array()
                .ok_or("a bucket update without :ids")?;
            for b in ids {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b.as_str().ok_or("a binary id that is not a string")?)
                    .map_err(|e| format!("a binary id: {e}"))?;
                let id: [u8; 8] = bytes
                    .try_into()
                    .map_err(|_| "an id of other than 8 bytes")?;
                out.push(format!("M#{:016x}", u64::from_be_bytes(id)));
            }
        }
    }
    Ok(out)
}

fn status_of(answer: &[u8]) -> Option<u16> {
    let line = answer.split(|&b| b == b'\r').next()?;
    std::str::from_utf8(line)
        .ok()?
        .split(' ')
        .nth(1)?
        .parse()
        .ok()
}

/// Holds a connection without answering, until the test ends.
async fn hold(conn: TcpStream) {
    let _conn = conn;
    std::future::pending::<()>().await;
}

async fn gate_serve(
    mut conn: TcpStream,
    upstream: SocketAddr,
    gate: &Mutex<Gate>,
    changed: &tokio::sync::watch::Sender<u64>,
) -> Result<(), String> {
    let Some(req) = read_request(&mut conn).await? else {
        return Ok(());
    };
    let notify = || changed.send_modify(|v| *v += 1);
    let is_tx = req.target.ends_with(".TransactWriteItems");
    let markers = if is_tx {
        marker_keys(&req.body)?
    } else {
        Vec::new()
    };
    // Decide under the lock, in arrival order: hold, or forward (noting
    // whether this is the kill point).
    enum Decision {
        Hold { reached: bool },
        Forward(Option<KillPoint>),
    }
    let decision = {
        let mut g = gate.lock().unwrap();
        if g.closed {
            Decision::Hold { reached: false }
        } else {
            let new = is_tx
                && !markers.is_empty()
                && !markers.iter().any(|m| g.stats.applied_markers.contains(m));
            let point = if new {
                g.new_seen += 1;
                g.point.filter(|p| p.n() == g.new_seen)
            } else {
                None
            };
            if let Some(KillPoint::BeforeForwarding(_)) = point {
                g.closed = true;
                g.settled = true;
                Decision::Hold { reached: true }
            } else {
                if point.is_some() {
                    // Nothing after this transaction goes through.
                    g.closed = true;
                }
                g.in_flight += 1;
                Decision::Forward(point)
            }
        }
    };
    let point = match decision {
        Decision::Hold { reached } => {
            if reached {
                notify();
            }
            hold(conn).await;
            return Ok(());
        }
        Decision::Forward(point) => point,
    };
    let forwarded = forward(upstream, &req).await;
    {
        let mut g = gate.lock().unwrap();
        g.in_flight -= 1;
        if let Ok(answer) = &forwarded {
            if is_tx {
                if status_of(answer) == Some(200) {
                    g.stats.applied_transactions += 1;
                    let new = !markers.is_empty()
                        && !markers.iter().any(|m| g.stats.applied_markers.contains(m));
                    if new {
                        g.stats.applied_in_run += 1;
                    }
                    g.stats.applied_markers.extend(markers.iter().cloned());
                } else {
                    g.stats.refused_transactions += 1;
                }
            }
        }
        if let Some(KillPoint::AppliedAnswerWithheld(_)) = point {
            g.settled = true;
        }
    }
    notify();
    let answer = forwarded?;
    if let Some(KillPoint::AppliedAnswerWithheld(_)) = point {
        hold(conn).await;
        return Ok(());
    }
    let _ = conn.write_all(&answer).await;
    let _ = conn.shutdown().await;
    if let Some(KillPoint::BetweenTransactions(_)) = point {
        // The client closes its end once it has read the whole answer.
        let mut rest = [0u8; 1024];
        let read_all = async { while matches!(conn.read(&mut rest).await, Ok(n) if n > 0) {} };
        if tokio::time::timeout(Duration::from_secs(30), read_all)
            .await
            .is_err()
        {
            return Err("the client did not close the connection within 30 s".into());
        }
        gate.lock().unwrap().settled = true;
        notify();
    }
    Ok(())
}
