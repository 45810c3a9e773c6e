//! The store capability the ingest path needs, its errors, and an in-memory
//! implementation for handler tests.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::sync::Mutex;

use meter_core::Counters;

use crate::ingest::IngestError;
use crate::keys::ItemKeys;
use crate::markers::{BucketState, FullBuckets};
use crate::plan::{PlannedTx, RequestCost, TxItem};

/// Why one action of a cancelled transaction failed, in action order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelReason {
    /// This action was fine; another one cancelled the transaction.
    None,
    /// The marker already exists: the record was counted before.
    ConditionalCheckFailed,
    /// A marker bucket's condition failed: one of the ids is there already,
    /// or the bucket is full (or, for a refresh, no longer there). Carries
    /// the bucket as read after the failure (`None`: no such item).
    BucketCheckFailed(Option<BucketState>),
    /// Another transaction holds the item: retry.
    TransactionConflict,
    /// Throttled (`ThrottlingError`, `ProvisionedThroughputExceeded`): retry.
    Throttled,
    /// Anything else (`ValidationError`, ...): not retryable.
    Other(String),
}

/// A store failure, classified once here (retryable, permanent, table
/// missing, cancelled) in neutral words: each caller says what it means for
/// its own reader. The Lambdas add their retry wording; the CLI and the
/// dashboard call [`describe_for_operator`].
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("transaction cancelled ({})", summarise(.0))]
    Cancelled(Vec<CancelReason>),
    #[error("DynamoDB could not be reached, was throttling or timed out (retryable): {message}")]
    Retryable {
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    #[error("table `{table}` does not exist in this account and Region")]
    TableMissing { table: String },
    #[error("DynamoDB rejected the request (not retryable): {message}")]
    Permanent {
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

fn summarise(reasons: &[CancelReason]) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for r in reasons {
        let label = match r {
            CancelReason::None => continue,
            CancelReason::ConditionalCheckFailed | CancelReason::BucketCheckFailed(_) => {
                "ConditionalCheckFailed".to_string()
            }
            CancelReason::TransactionConflict => "TransactionConflict".to_string(),
            CancelReason::Throttled => "Throttled".to_string(),
            CancelReason::Other(s) => s.clone(),
        };
        *counts.entry(label).or_default() += 1;
    }
    counts
        .into_iter()
        .map(|(k, n)| format!("{k} x{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a store talks to, for messages to the person running a command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnInfo {
    /// The table.
    pub table: String,
    /// The client's Region (`None`: none configured).
    pub region: Option<String>,
    /// The endpoint override (`AWS_ENDPOINT_URL_DYNAMODB`, else
    /// `AWS_ENDPOINT_URL`); `None`: the Region's AWS endpoint.
    pub endpoint: Option<String>,
}

impl ConnInfo {
    /// The endpoint override the SDK applies, read through `get` (a
    /// variable's value, if set).
    pub fn endpoint_from(get: impl Fn(&str) -> Option<String>) -> Option<String> {
        ["AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL"]
            .iter()
            .find_map(|k| get(k).filter(|v| !v.trim().is_empty()))
    }

    fn place(&self) -> String {
        let region = self.region.as_deref().unwrap_or("no Region");
        match &self.endpoint {
            Some(e) => format!("in {region} at {e}"),
            None => format!("in {region} at the AWS endpoint"),
        }
    }
}

/// What the caller was doing when the store failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reading aggregates or budgets (`report`, the dashboard, `budget list`).
    Read,
    /// Writing (`replay`, `backfill`, `budget set`).
    Write,
    /// Creating or checking the table (`init`).
    Init,
    /// Anything else (when the caller does not say).
    Use,
}

impl Access {
    fn verb(self) -> &'static str {
        match self {
            Access::Read => "could not read table",
            Access::Write => "could not write to table",
            Access::Init => "could not create or check table",
            Access::Use => "could not use table",
        }
    }
}

/// What to check when DynamoDB cannot be reached.
const CHECK_CONNECTION: &str =
    "Check AWS_ENDPOINT_URL / network, AWS_REGION, credentials (AWS_PROFILE), USAGE_TABLE / --table";

/// Error codes that mean the credentials or their permissions were refused.
const AUTH_CODES: [&str; 9] = [
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "ExpiredTokenException",
    "ExpiredToken",
    "MissingAuthenticationTokenException",
    "IncompleteSignatureException",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
];

/// A [`StoreError`] worded for the person running a command (the CLI, the
/// dashboard): what failed, where (table, Region, endpoint), and what to
/// check. The Lambdas word their errors themselves (a failed batch is
/// retried), so this text never says "retried".
///
/// ```text
/// could not read table `bedrock-usage` in us-east-1 at http://127.0.0.1:9:
/// connection refused. Check AWS_ENDPOINT_URL / network, AWS_REGION,
/// credentials (AWS_PROFILE), USAGE_TABLE / --table
/// ```
pub fn describe_for_operator(err: &StoreError, conn: &ConnInfo, access: Access) -> String {
    let what = format!("{} `{}` {}", access.verb(), conn.table, conn.place());
    match err {
        StoreError::TableMissing { .. } => format!(
            "{what}: the table does not exist. Create it with `bedrock-meter init`, or check \
             USAGE_TABLE / --table, AWS_REGION and AWS_ENDPOINT_URL"
        ),
        StoreError::Retryable { message, .. } => match transport_cause(err, message) {
            Cause::Credentials(detail) => format!(
                "no AWS credentials found: set AWS_PROFILE (a profile in ~/.aws/config), or \
                 AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run `aws sso login` for an SSO \
                 profile ({what}; the SDK's credential chain said: {detail})"
            ),
            Cause::Connection(detail) => format!("{what}: {detail}. {CHECK_CONNECTION}"),
            Cause::Timeout => format!("{what}: the request timed out. {CHECK_CONNECTION}"),
            Cause::Service => format!(
                "{what}: DynamoDB is throttling or unavailable ({message}). Try again in a \
                 moment; if it persists, check the table's capacity and the AWS Health Dashboard"
            ),
        },
        StoreError::Permanent { message, .. } => {
            let code = message.split(':').next().unwrap_or_default().trim();
            if AUTH_CODES.contains(&code) {
                format!(
                    "{what}: DynamoDB refused the credentials or their permissions ({message}). \
                     Check AWS_PROFILE / AWS_ACCESS_KEY_ID (expired? another account?) and that \
                     the IAM policy allows this on table `{}` and its index gsi1",
                    conn.table
                )
            } else if code == "ValidationException" {
                format!(
                    "{what}: DynamoDB rejected the request ({message}). Check that the table has \
                     the data contract's schema: `bedrock-meter init` compares it"
                )
            } else {
                format!("{what}: DynamoDB rejected the request ({message}). {CHECK_CONNECTION}")
            }
        }
        StoreError::Cancelled(_) => {
            format!("{what}: {err}. Run the command again: records already counted are skipped")
        }
    }
}

/// [`describe_for_operator`] for a failed commit (`replay`, `backfill`).
pub fn describe_ingest_for_operator(err: &IngestError, conn: &ConnInfo) -> String {
    match err {
        IngestError::RetriesExhausted { attempts, source } => format!(
            "{} (gave up after {attempts} attempts; nothing of the failed group was counted, and \
             records already counted are skipped when you run it again)",
            describe_for_operator(source, conn, Access::Write)
        ),
        IngestError::Store(e) => describe_for_operator(e, conn, Access::Write),
    }
}

/// A [`StoreError`] already worded by [`describe_for_operator`]: an error
/// type for `anyhow` chains (its text is the whole story; it has no source,
/// so a chain does not repeat the SDK's detail).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct OperatorError(pub String);

impl OperatorError {
    pub fn new(err: &StoreError, conn: &ConnInfo, access: Access) -> Self {
        OperatorError(describe_for_operator(err, conn, access))
    }
}

enum Cause {
    Credentials(String),
    Connection(String),
    Timeout,
    Service,
}

/// Why a retryable failure happened, from the error's source chain and the
/// SDK's wording of the failure kind (`dispatch failure`, `request has timed
/// out`, `response error`; service errors are `Code: message`).
fn transport_cause(err: &StoreError, message: &str) -> Cause {
    let mut io: Option<&std::io::Error> = None;
    let mut innermost = None;
    let mut cur = std::error::Error::source(err);
    while let Some(e) = cur {
        if let Some(c) = e.downcast_ref::<aws_credential_types::provider::error::CredentialsError>()
        {
            let first_line = |e: &dyn std::error::Error| {
                e.to_string().lines().next().unwrap_or_default().to_string()
            };
            let detail = match std::error::Error::source(c) {
                // "no credentials found in chain. Attempted:" then one line per provider.
                Some(s) => format!(
                    "{}: {}",
                    first_line(c),
                    first_line(s).trim_end_matches(" Attempted:")
                ),
                None => first_line(c),
            };
            return Cause::Credentials(detail);
        }
        if let Some(e) = e.downcast_ref::<std::io::Error>() {
            io.get_or_insert(e);
        }
        innermost = Some(e.to_string());
        cur = e.source();
    }
    if message.starts_with("request has timed out") {
        return Cause::Timeout;
    }
    if let Some(e) = io {
        return Cause::Connection(match e.kind() {
            std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
            std::io::ErrorKind::ConnectionReset => "connection reset".into(),
            std::io::ErrorKind::TimedOut => "connection timed out".into(),
            _ => format!("connection failed: {e}"),
        });
    }
    if message.starts_with("dispatch failure") || message.starts_with("response error") {
        let detail = innermost.unwrap_or_else(|| message.to_string());
        if detail.contains("timed out") || detail.contains("timeout") {
            return Cause::Timeout;
        }
        if detail.contains("Connection refused") {
            return Cause::Connection("connection refused".into());
        }
        return Cause::Connection(format!("connection failed: {detail}"));
    }
    Cause::Service
}

/// A committed transaction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TxCommitted {
    /// Write capacity units consumed, from `ReturnConsumedCapacity`.
    pub write_units: f64,
}

/// What the ingest path needs from storage: commit one planned transaction,
/// all or nothing. A cancelled transaction reports, per action, why; for a
/// marker bucket, with the bucket as read after the failure
/// ([`CancelReason::BucketCheckFailed`]).
pub trait UsageStore: Send + Sync {
    fn transact(
        &self,
        tx: &PlannedTx,
    ) -> impl Future<Output = Result<TxCommitted, StoreError>> + Send;

    /// This process's cache of full marker buckets, if the store keeps one
    /// (it saves a cancelled transaction per full bucket per batch).
    fn full_buckets(&self) -> Option<&Mutex<FullBuckets>> {
        None
    }

    /// Records with an earlier timestamp keep per-record markers (the
    /// switch-over from earlier versions, see [`crate::markers`]). The
    /// default (stores that never held per-record markers): none.
    ///
    /// (See also [`UsageStore::put_request_costs`].)
    fn buckets_since(
        &self,
        _now_epoch: i64,
    ) -> impl Future<Output = Result<i64, StoreError>> + Send {
        std::future::ready(Ok(i64::MIN))
    }

    /// Reads one marker bucket (strongly consistent; `None`: no such item).
    /// The default (stores that cannot): `None`, so a full bucket is learnt
    /// from a cancelled transaction instead.
    fn read_bucket(
        &self,
        _keys: &ItemKeys,
    ) -> impl Future<Output = Result<Option<BucketState>, StoreError>> + Send {
        std::future::ready(Ok(None))
    }

    /// Writes request-cost items (plain, idempotent puts); returns the write
    /// units consumed (from `ConsumedCapacity`). The default (stores without
    /// them): nothing.
    fn put_request_costs(
        &self,
        _items: &[RequestCost],
    ) -> impl Future<Output = Result<f64, StoreError>> + Send {
        std::future::ready(Ok(0.0))
    }
}

/// One aggregate as the in-memory store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryAggregate {
    pub kind: &'static str,
    pub dims: Vec<(&'static str, String)>,
    pub counters: Counters,
}

#[derive(Default)]
struct MemoryState {
    markers: HashMap<String, i64>,
    buckets: HashMap<String, BucketState>,
    request_costs: BTreeMap<String, RequestCost>,
    bucket_reads: usize,
    aggregates: BTreeMap<(String, String), MemoryAggregate>,
    faults: VecDeque<StoreError>,
    transactions: usize,
}

/// An in-memory [`UsageStore`] with DynamoDB's transaction semantics
/// (conditional markers, all-or-nothing), plus scripted faults. For tests of
/// handlers and retry logic; integration tests use DynamoDB Local.
#[derive(Default)]
pub struct MemoryUsageStore {
    state: Mutex<MemoryState>,
    full: Mutex<FullBuckets>,
}

impl MemoryUsageStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues errors returned (without applying anything) by the next calls.
    pub fn push_fault(&self, e: StoreError) {
        self.lock().faults.push_back(e);
    }

    /// Snapshot of every aggregate, keyed by (pk, sk).
    pub fn aggregates(&self) -> BTreeMap<(String, String), MemoryAggregate> {
        self.lock().aggregates.clone()
    }

    /// Records marked: per-record markers plus ids in buckets.
    pub fn marker_count(&self) -> usize {
        let s = self.lock();
        s.markers.len() + s.buckets.values().map(|b| b.ids.len()).sum::<usize>()
    }

    /// Marker buckets read with [`UsageStore::read_bucket`].
    pub fn bucket_reads(&self) -> usize {
        self.lock().bucket_reads
    }

    /// Request-cost items by record id.
    pub fn request_costs(&self) -> BTreeMap<String, RequestCost> {
        self.lock().request_costs.clone()
    }

    /// Marker buckets by `pk`.
    pub fn buckets(&self) -> HashMap<String, BucketState> {
        self.lock().buckets.clone()
    }

    /// Transactions committed.
    pub fn transactions(&self) -> usize {
        self.lock().transactions
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        // A poisoned lock only means another test thread panicked.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl UsageStore for MemoryUsageStore {
    fn full_buckets(&self) -> Option<&Mutex<FullBuckets>> {
        Some(&self.full)
    }

    async fn read_bucket(&self, keys: &ItemKeys) -> Result<Option<BucketState>, StoreError> {
        let mut s = self.lock();
        s.bucket_reads += 1;
        Ok(s.buckets.get(&keys.pk).cloned())
    }

    async fn put_request_costs(&self, items: &[RequestCost]) -> Result<f64, StoreError> {
        let mut s = self.lock();
        if let Some(fault) = s.faults.pop_front() {
            return Err(fault);
        }
        for i in items {
            s.request_costs.insert(i.record_id.clone(), i.clone());
        }
        // Plain writes of items under 1 KB: one unit each.
        Ok(items.len() as f64)
    }

    async fn transact(&self, tx: &PlannedTx) -> Result<TxCommitted, StoreError> {
        let mut s = self.lock();
        if let Some(fault) = s.faults.pop_front() {
            return Err(fault);
        }
        let reasons: Vec<CancelReason> = tx
            .items
            .iter()
            .map(|item| match item {
                TxItem::PutMarker { keys, .. } if s.markers.contains_key(&keys.pk) => {
                    CancelReason::ConditionalCheckFailed
                }
                TxItem::AddToBucket { keys, ids, cap, .. } => {
                    let b = s.buckets.get(&keys.pk);
                    let present = b.is_some_and(|b| ids.iter().any(|i| b.ids.contains(i)));
                    let full = matches!((b, cap), (Some(b), Some(c)) if b.n >= *c);
                    if present || full {
                        CancelReason::BucketCheckFailed(b.cloned())
                    } else {
                        CancelReason::None
                    }
                }
                TxItem::TouchBucket { keys, cap, .. } => match s.buckets.get(&keys.pk) {
                    Some(b) if b.n >= *cap => CancelReason::None,
                    b => CancelReason::BucketCheckFailed(b.cloned()),
                },
                _ => CancelReason::None,
            })
            .collect();
        if reasons.iter().any(|r| *r != CancelReason::None) {
            return Err(StoreError::Cancelled(reasons));
        }
        for item in &tx.items {
            match item {
                TxItem::PutMarker {
                    keys, expires_at, ..
                } => {
                    s.markers.insert(keys.pk.clone(), *expires_at);
                }
                TxItem::AddToBucket {
                    keys,
                    ids,
                    expires_at,
                    ..
                } => {
                    let b = s.buckets.entry(keys.pk.clone()).or_default();
                    b.ids.extend(ids.iter().copied());
                    b.n += ids.len() as u32;
                    b.expires_at = *expires_at;
                }
                TxItem::TouchBucket {
                    keys, expires_at, ..
                } => {
                    if let Some(b) = s.buckets.get_mut(&keys.pk) {
                        b.expires_at = *expires_at;
                    }
                }
                TxItem::AddAggregate {
                    keys,
                    kind,
                    dims,
                    counters,
                } => {
                    s.aggregates
                        .entry((keys.pk.clone(), keys.sk.clone()))
                        .or_insert_with(|| MemoryAggregate {
                            kind,
                            dims: dims.clone(),
                            counters: Counters::default(),
                        })
                        .counters
                        .add(counters);
                }
            }
        }
        s.transactions += 1;
        // Transactional writes of items under 1 KB cost 2 units each.
        Ok(TxCommitted {
            write_units: 2.0 * tx.items.len() as f64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> ConnInfo {
        ConnInfo {
            table: "usage-x".into(),
            region: Some("us-east-1".into()),
            endpoint: Some("http://127.0.0.1:9".into()),
        }
    }

    /// An error wrapping `inner`, like the SDK's dispatch failure does.
    #[derive(Debug, thiserror::Error)]
    #[error("dispatch failure")]
    struct Dispatch(#[source] Box<dyn std::error::Error + Send + Sync>);

    fn retryable(inner: Box<dyn std::error::Error + Send + Sync>) -> StoreError {
        StoreError::Retryable {
            message: "dispatch failure: io error".into(),
            source: Some(Box::new(Dispatch(inner))),
        }
    }

    #[test]
    fn a_refused_connection_names_the_table_region_endpoint_and_what_to_check() {
        let e = retryable(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )));
        let text = describe_for_operator(&e, &conn(), Access::Read);
        assert_eq!(
            text,
            "could not read table `usage-x` in us-east-1 at http://127.0.0.1:9: connection \
             refused. Check AWS_ENDPOINT_URL / network, AWS_REGION, credentials (AWS_PROFILE), \
             USAGE_TABLE / --table"
        );
    }

    #[test]
    fn missing_credentials_say_so_first_and_how_to_set_them() {
        let e = retryable(Box::new(
            aws_credential_types::provider::error::CredentialsError::not_loaded(
                "no credentials found in chain",
            ),
        ));
        let text = describe_for_operator(&e, &conn(), Access::Write);
        assert!(
            text.starts_with("no AWS credentials found: set AWS_PROFILE"),
            "{text}"
        );
        assert!(
            text.contains("could not write to table `usage-x`"),
            "{text}"
        );
        assert!(text.contains("no credentials found in chain"), "{text}");
    }

    #[test]
    fn operator_wording_never_promises_a_retry() {
        let errors = [
            StoreError::TableMissing {
                table: "usage-x".into(),
            },
            StoreError::Retryable {
                message: "ThrottlingException: slow down".into(),
                source: None,
            },
            StoreError::Retryable {
                message: "request has timed out".into(),
                source: None,
            },
            StoreError::Permanent {
                message: "UnrecognizedClientException: The security token is invalid".into(),
                source: None,
            },
            StoreError::Permanent {
                message: "ValidationException: The table does not have the specified index: gsi1"
                    .into(),
                source: None,
            },
            StoreError::Cancelled(vec![CancelReason::Throttled]),
        ];
        let want = [
            "bedrock-meter init",
            "throttling or unavailable",
            "timed out",
            "credentials or their permissions",
            "`bedrock-meter init` compares it",
            "transaction cancelled (Throttled x1)",
        ];
        for (e, want) in errors.iter().zip(want) {
            for access in [Access::Read, Access::Write, Access::Init, Access::Use] {
                let text = describe_for_operator(e, &conn(), access);
                assert!(text.contains(want), "{text}");
                assert!(text.contains("`usage-x`"), "{text}");
                assert!(!text.contains("retried"), "{text}");
                assert!(!e.to_string().contains("retried"), "{e}");
            }
        }
    }

    #[test]
    fn without_an_endpoint_override_the_aws_endpoint_is_named() {
        let c = ConnInfo {
            endpoint: None,
            region: None,
            ..conn()
        };
        let text = describe_for_operator(
            &StoreError::TableMissing {
                table: "usage-x".into(),
            },
            &c,
            Access::Read,
        );
        assert!(
            text.starts_with("could not read table `usage-x` in no Region at the AWS endpoint"),
            "{text}"
        );
        assert_eq!(
            ConnInfo::endpoint_from(|k| (k == "AWS_ENDPOINT_URL").then(|| "http://h:1".into())),
            Some("http://h:1".into())
        );
        assert_eq!(
            ConnInfo::endpoint_from(|k| Some(format!("http://{k}"))),
            Some("http://AWS_ENDPOINT_URL_DYNAMODB".into())
        );
    }
}
