//! The DynamoDB adapter: the only code that talks to DynamoDB.
//!
//! It translates [`PlannedTx`] into `TransactWriteItems`, classifies errors
//! once (retryable or not), creates the table, and runs the report queries of
//! the data contract.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, Put, ReturnConsumedCapacity,
    ReturnValuesOnConditionCheckFailure, ScalarAttributeType, StreamSpecification, StreamViewType,
    TableDescription, TableStatus, TimeToLiveDescription, TimeToLiveSpecification,
    TimeToLiveStatus, TransactWriteItem, Update,
};
use aws_sdk_dynamodb::Client;
use meter_core::{Counters, Day, Month, Usd};

use crate::keys;
use crate::markers::{BucketState, FullBuckets};
use crate::plan::{MarkerUsage, PlannedTx, RequestCost, TxItem};
use crate::store::{CancelReason, ConnInfo, StoreError, TxCommitted, UsageStore};

/// Default table name (`USAGE_TABLE`).
pub const DEFAULT_TABLE: &str = "bedrock-usage";
/// The TTL attribute.
pub const TTL_ATTRIBUTE: &str = "expires_at";
/// The one global secondary index.
pub const GSI1: &str = "gsi1";

/// The item holding the marker switch-over instant (see
/// [`crate::markers`]): `pk = MARKERS`, `sk = SCHEME`.
pub const MARKER_SCHEME_PK: &str = "MARKERS";
const MARKER_SCHEME_SK: &str = "SCHEME";
/// A table without a switch-over instant (written by an earlier version, or
/// created by CloudFormation) switches to marker buckets this long after the
/// first writer of this version starts: longer than any function or command
/// of the earlier version still running keeps writing per-record markers.
pub const SWITCH_OVER_MARGIN_SECS: i64 = 15 * 60;

/// [`UsageStore`] on a DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoDbUsageStore {
    client: Client,
    table: String,
    /// Full marker buckets seen by this process (shared by clones).
    full: std::sync::Arc<std::sync::Mutex<FullBuckets>>,
    /// The switch-over instant, read (or set) once.
    since: std::sync::Arc<tokio::sync::OnceCell<i64>>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl DynamoDbUsageStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoDbUsageStore {
            client,
            table: table.into(),
            full: Default::default(),
            since: Default::default(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// This store with the table's marker switch-over instant already known
    /// (tests that inject faults into every request; a caller that has read
    /// it). Otherwise it is read once, on the first commit.
    pub fn with_switch_over(self, buckets_since: i64) -> Self {
        let _ = self.since.set(buckets_since);
        self
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    fn to_sdk(
        &self,
        tx: &PlannedTx,
        updated_at: &str,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let build_err = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Permanent {
            message: format!("could not build request: {e}"),
            source: Some(Box::new(e)),
        };
        tx.items
            .iter()
            .map(|item| match item {
                TxItem::PutMarker {
                    keys,
                    record_id,
                    expires_at,
                    usage,
                } => {
                    let item = usage_item(
                        keys,
                        "marker",
                        record_id,
                        ("committed_at", updated_at),
                        *expires_at,
                        usage,
                    );
                    let put = Put::builder()
                        .table_name(&self.table)
                        .set_item(Some(item))
                        .condition_expression("attribute_not_exists(pk)")
                        .build()
                        .map_err(build_err)?;
                    Ok(TransactWriteItem::builder().put(put).build())
                }
                TxItem::AddToBucket {
                    keys,
                    ids,
                    cap,
                    expires_at,
                    ..
                } => {
                    let (expr, cond, names, values) = bucket_add(ids, *cap, *expires_at);
                    let update = Update::builder()
                        .table_name(&self.table)
                        .key("pk", s(&keys.pk))
                        .key("sk", s(&keys.sk))
                        .update_expression(expr)
                        .condition_expression(cond)
                        .set_expression_attribute_names(Some(names))
                        .set_expression_attribute_values(Some(values))
                        .return_values_on_condition_check_failure(
                            ReturnValuesOnConditionCheckFailure::AllOld,
                        )
                        .build()
                        .map_err(build_err)?;
                    Ok(TransactWriteItem::builder().update(update).build())
                }
                TxItem::TouchBucket {
                    keys,
                    cap,
                    expires_at,
                    ..
                } => {
                    let update = Update::builder()
                        .table_name(&self.table)
                        .key("pk", s(&keys.pk))
                        .key("sk", s(&keys.sk))
                        .update_expression("SET #e = :e")
                        .condition_expression("#n >= :cap")
                        .expression_attribute_names("#e", TTL_ATTRIBUTE)
                        .expression_attribute_names("#n", "n")
                        .expression_attribute_values(":e", n(expires_at.to_string()))
                        .expression_attribute_values(":cap", n(cap.to_string()))
                        .return_values_on_condition_check_failure(
                            ReturnValuesOnConditionCheckFailure::AllOld,
                        )
                        .build()
                        .map_err(build_err)?;
                    Ok(TransactWriteItem::builder().update(update).build())
                }
                TxItem::AddAggregate {
                    keys,
                    kind,
                    dims,
                    counters,
                } => {
                    let (expr, names, values) =
                        aggregate_update(keys, kind, dims, counters, updated_at);
                    let update = Update::builder()
                        .table_name(&self.table)
                        .key("pk", s(&keys.pk))
                        .key("sk", s(&keys.sk))
                        .update_expression(expr)
                        .set_expression_attribute_names(Some(names))
                        .set_expression_attribute_values(Some(values))
                        .build()
                        .map_err(build_err)?;
                    Ok(TransactWriteItem::builder().update(update).build())
                }
            })
            .collect()
    }
}

/// A per-record item with the record's usage (a marker of an earlier
/// version, or a request-cost item): no content, ids bounded.
fn usage_item(
    keys: &keys::ItemKeys,
    kind: &str,
    record_id: &str,
    written: (&str, &str),
    expires_at: i64,
    usage: &MarkerUsage,
) -> HashMap<String, AttributeValue> {
    let mut item = HashMap::from([
        ("pk".to_string(), s(&keys.pk)),
        ("sk".to_string(), s(&keys.sk)),
        ("kind".to_string(), s(kind)),
        ("record_id".to_string(), s(record_id)),
        (written.0.to_string(), s(written.1)),
        (TTL_ATTRIBUTE.to_string(), n(expires_at.to_string())),
        ("user".to_string(), s(&usage.user)),
        ("model".to_string(), s(&usage.model)),
        ("day".to_string(), s(&usage.day)),
    ]);
    for (name, value) in usage.counters.named_values() {
        if name != "invocations" {
            item.insert(name.to_string(), n(value));
        }
    }
    item
}

/// `kind` of a request-cost item.
pub const REQUEST_COST_KIND: &str = "request_cost";

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}
fn n(v: impl Into<String>) -> AttributeValue {
    AttributeValue::N(v.into())
}

type Expr = (
    String,
    String,
    HashMap<String, String>,
    HashMap<String, AttributeValue>,
);

/// The update and condition of a bucket add: `ADD ids :ids, n :k SET kind,
/// expires_at`, on condition that no id is there yet and (capped levels)
/// that the bucket is not full.
pub fn bucket_add(ids: &[u64], cap: Option<u32>, expires_at: i64) -> Expr {
    let mut names = HashMap::from([
        ("#ids".to_string(), "ids".to_string()),
        ("#n".to_string(), "n".to_string()),
        ("#k".to_string(), "kind".to_string()),
        ("#e".to_string(), TTL_ATTRIBUTE.to_string()),
    ]);
    let mut values = HashMap::from([
        (
            ":ids".to_string(),
            AttributeValue::Bs(
                ids.iter()
                    .map(|i| aws_smithy_types::Blob::new(i.to_be_bytes().to_vec()))
                    .collect(),
            ),
        ),
        (":k".to_string(), n(ids.len().to_string())),
        (":kind".to_string(), s(BUCKET_KIND)),
        (":e".to_string(), n(expires_at.to_string())),
    ]);
    let mut cond: Vec<String> = Vec::with_capacity(ids.len() + 1);
    if let Some(cap) = cap {
        values.insert(":cap".into(), n(cap.to_string()));
        cond.push("(attribute_not_exists(#n) OR #n < :cap)".into());
    }
    for (i, id) in ids.iter().enumerate() {
        values.insert(
            format!(":i{i}"),
            AttributeValue::B(aws_smithy_types::Blob::new(id.to_be_bytes().to_vec())),
        );
        cond.push(format!("NOT contains(#ids, :i{i})"));
    }
    names.shrink_to_fit();
    (
        "ADD #ids :ids, #n :k SET #k = :kind, #e = :e".to_string(),
        cond.join(" AND "),
        names,
        values,
    )
}

/// `kind` of a marker bucket item.
pub const BUCKET_KIND: &str = "marker_bucket";

/// A bucket item as read back (`None` when it is not one).
pub fn bucket_state(item: &HashMap<String, AttributeValue>) -> BucketState {
    let num = |k: &str| item.get(k).and_then(|v| v.as_n().ok());
    BucketState {
        ids: item
            .get("ids")
            .and_then(|v| v.as_bs().ok())
            .map(|bs| {
                bs.iter()
                    .filter_map(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
                    .map(u64::from_be_bytes)
                    .collect()
            })
            .unwrap_or_default(),
        n: num("n").and_then(|v| v.parse().ok()).unwrap_or(0),
        expires_at: num(TTL_ATTRIBUTE)
            .and_then(|v| v.parse().ok())
            .unwrap_or(i64::MAX),
    }
}

/// The update expression of one aggregate: `ADD` every counter, `SET` the
/// dimensions, kind, index keys and `updated_at`. Every attribute name goes
/// through a placeholder (several are reserved words).
pub fn aggregate_update(
    keys: &keys::ItemKeys,
    kind: &str,
    dims: &[(&'static str, String)],
    counters: &Counters,
    updated_at: &str,
) -> (
    String,
    HashMap<String, String>,
    HashMap<String, AttributeValue>,
) {
    let mut names = HashMap::new();
    let mut values = HashMap::new();
    let mut adds = Vec::new();
    for (i, (name, value)) in counters.named_values().into_iter().enumerate() {
        names.insert(format!("#c{i}"), name.to_string());
        values.insert(format!(":c{i}"), n(value));
        adds.push(format!("#c{i} :c{i}"));
    }
    let mut sets = Vec::new();
    let mut set = |name: &str, value: AttributeValue| {
        let i = sets.len();
        names.insert(format!("#s{i}"), name.to_string());
        values.insert(format!(":s{i}"), value);
        sets.push(format!("#s{i} = :s{i}"));
    };
    set("kind", s(kind));
    for (name, value) in dims {
        set(name, s(value));
    }
    if let Some((gpk, gsk)) = &keys.gsi1 {
        set("gsi1pk", s(gpk));
        set("gsi1sk", s(gsk));
    }
    set("updated_at", s(updated_at));
    let expr = format!("ADD {} SET {}", adds.join(", "), sets.join(", "));
    (expr, names, values)
}

impl UsageStore for DynamoDbUsageStore {
    async fn transact(&self, tx: &PlannedTx) -> Result<TxCommitted, StoreError> {
        let updated_at = now_rfc3339();
        let items = self.to_sdk(tx, &updated_at)?;
        let out = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await;
        let out = match out {
            Ok(out) => out,
            Err(e) => return Err(self.cancelled_or_classified(e, tx).await),
        };
        let write_units = out
            .consumed_capacity()
            .iter()
            .filter_map(|c| c.capacity_units())
            .sum();
        Ok(TxCommitted { write_units })
    }

    fn full_buckets(&self) -> Option<&std::sync::Mutex<FullBuckets>> {
        Some(&self.full)
    }

    async fn read_bucket(&self, keys: &keys::ItemKeys) -> Result<Option<BucketState>, StoreError> {
        Ok(self
            .get_item(&keys.pk, &keys.sk)
            .await?
            .as_ref()
            .map(bucket_state))
    }

    async fn put_request_costs(&self, items: &[RequestCost]) -> Result<f64, StoreError> {
        use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
        let mut units = 0.0;
        let written_at = now_rfc3339();
        let build = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Permanent {
            message: format!("could not build request: {e}"),
            source: Some(Box::new(e)),
        };
        for chunk in items.chunks(25) {
            let mut requests = chunk
                .iter()
                .map(|c| {
                    let item = usage_item(
                        &c.keys,
                        REQUEST_COST_KIND,
                        &c.record_id,
                        ("written_at", &written_at),
                        c.expires_at,
                        &c.usage,
                    );
                    Ok(WriteRequest::builder()
                        .put_request(
                            PutRequest::builder()
                                .set_item(Some(item))
                                .build()
                                .map_err(build)?,
                        )
                        .build())
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            // Unprocessed items (throttling) are sent again with backoff.
            for attempt in 0..8u32 {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, requests)
                    .return_consumed_capacity(ReturnConsumedCapacity::Total)
                    .send()
                    .await
                    .map_err(|e| classify_sdk_error(e, &self.table))?;
                units += out
                    .consumed_capacity()
                    .iter()
                    .filter_map(|c| c.capacity_units())
                    .sum::<f64>();
                requests = out
                    .unprocessed_items
                    .and_then(|mut m| m.remove(&self.table))
                    .unwrap_or_default();
                if requests.is_empty() {
                    break;
                }
                if attempt == 7 {
                    return Err(StoreError::Retryable {
                        message: format!(
                            "{} request-cost items stayed unprocessed (throttled)",
                            requests.len()
                        ),
                        source: None,
                    });
                }
                tokio::time::sleep(Duration::from_millis(fastrand::u64(
                    0..=(25u64 << attempt.min(6)),
                )))
                .await;
            }
        }
        Ok(units)
    }

    async fn buckets_since(&self, now_epoch: i64) -> Result<i64, StoreError> {
        self.since
            .get_or_try_init(|| self.read_or_set_switch_over(now_epoch + SWITCH_OVER_MARGIN_SECS))
            .await
            .copied()
    }
}

impl DynamoDbUsageStore {
    /// A cancelled transaction's reasons, with each failed bucket as
    /// returned (`ALL_OLD`) or, when the response has no item, read with a
    /// strongly consistent `GetItem`; any other error classified.
    async fn cancelled_or_classified<R: std::fmt::Debug + Send + Sync + 'static>(
        &self,
        err: SdkError<TransactWriteItemsError, R>,
        tx: &PlannedTx,
    ) -> StoreError {
        let mut reasons = match classify_transact_error(&err) {
            Some(r) => r,
            None => return classify_sdk_error(err, &self.table),
        };
        let raw: Vec<Option<HashMap<String, AttributeValue>>> = match &err {
            SdkError::ServiceError(se) => match se.err() {
                TransactWriteItemsError::TransactionCanceledException(e) => e
                    .cancellation_reasons()
                    .iter()
                    .map(|r| r.item().cloned())
                    .collect(),
                _ => Vec::new(),
            },
            _ => Vec::new(),
        };
        for (i, reason) in reasons.iter_mut().enumerate() {
            if *reason != CancelReason::ConditionalCheckFailed {
                continue;
            }
            let keys = match tx.items.get(i) {
                Some(TxItem::AddToBucket { keys, .. } | TxItem::TouchBucket { keys, .. }) => keys,
                _ => continue,
            };
            let item = match raw.get(i).cloned().flatten() {
                Some(item) => Some(item),
                None => match self.get_item(&keys.pk, &keys.sk).await {
                    Ok(item) => item,
                    Err(e) => return e,
                },
            };
            *reason = CancelReason::BucketCheckFailed(item.as_ref().map(bucket_state));
        }
        StoreError::Cancelled(reasons)
    }

    async fn get_item(
        &self,
        pk: &str,
        sk: &str,
    ) -> Result<Option<HashMap<String, AttributeValue>>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify_sdk_error(e, &self.table))?;
        Ok(out.item)
    }

    /// The table's switch-over instant; when it has none, sets it to
    /// `default` (once: the first writer wins) and returns what is stored.
    pub async fn read_or_set_switch_over(&self, default: i64) -> Result<i64, StoreError> {
        let read = |item: Option<HashMap<String, AttributeValue>>| {
            item.and_then(|i| {
                i.get("buckets_since")
                    .and_then(|v| v.as_n().ok())
                    .and_then(|v| v.parse::<i64>().ok())
            })
        };
        if let Some(v) = read(self.get_item(MARKER_SCHEME_PK, MARKER_SCHEME_SK).await?) {
            return Ok(v);
        }
        self.put_switch_over(default).await?;
        read(self.get_item(MARKER_SCHEME_PK, MARKER_SCHEME_SK).await?).ok_or_else(|| {
            StoreError::Permanent {
                message: "the marker scheme item vanished right after it was written".into(),
                source: None,
            }
        })
    }

    /// Writes the switch-over instant unless one is stored (never moves it).
    pub async fn put_switch_over(&self, since: i64) -> Result<(), StoreError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(MARKER_SCHEME_PK))
            .item("sk", s(MARKER_SCHEME_SK))
            .item("kind", s("marker_scheme"))
            .item("buckets_since", n(since.to_string()))
            .item("set_at", s(now_rfc3339()))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match put {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(se))
                if se.err().code() == Some("ConditionalCheckFailedException") =>
            {
                Ok(())
            }
            Err(e) => Err(classify_sdk_error(e, &self.table)),
        }
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| time::OffsetDateTime::now_utc())
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The cancellation reasons of a cancelled transaction (`None` for any
/// other error).
fn classify_transact_error<R>(
    err: &SdkError<TransactWriteItemsError, R>,
) -> Option<Vec<CancelReason>> {
    let SdkError::ServiceError(se) = err else {
        return None;
    };
    let TransactWriteItemsError::TransactionCanceledException(e) = se.err() else {
        return None;
    };
    Some(
        e.cancellation_reasons()
            .iter()
            .map(|r| match r.code() {
                None | Some("None") => CancelReason::None,
                Some("ConditionalCheckFailed") => CancelReason::ConditionalCheckFailed,
                Some("TransactionConflict") => CancelReason::TransactionConflict,
                Some("ThrottlingError") | Some("ProvisionedThroughputExceeded") => {
                    CancelReason::Throttled
                }
                Some(other) => CancelReason::Other(other.to_string()),
            })
            .collect(),
    )
}

/// Classifies any SDK error as retryable, missing table or permanent.
pub fn classify_sdk_error<E, R>(err: SdkError<E, R>, table: &str) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let retryable = |message: String, source: BoxError| StoreError::Retryable {
        message,
        source: Some(source),
    };
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            let message = describe(&err);
            retryable(message, Box::new(err))
        }
        SdkError::ServiceError(se) => {
            let e = se.into_err();
            let code = e.code().unwrap_or("Unknown").to_string();
            let message = format!("{code}: {}", e.message().unwrap_or(""));
            match code.as_str() {
                "ResourceNotFoundException" => StoreError::TableMissing {
                    table: table.to_string(),
                },
                "ThrottlingException"
                | "ProvisionedThroughputExceededException"
                | "RequestLimitExceeded"
                | "InternalServerError"
                | "InternalFailure"
                | "ServiceUnavailable"
                | "TransactionInProgressException"
                | "TransactionConflictException" => retryable(message, Box::new(e)),
                _ => StoreError::Permanent {
                    message,
                    source: Some(Box::new(e)),
                },
            }
        }
        other => StoreError::Permanent {
            message: describe(&other),
            source: Some(Box::new(other)),
        },
    }
}

fn describe(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// How [`create_table_with`] creates a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableOptions {
    /// A stream with new and old images (the data contract; budget alerts
    /// read it). Only tests that do not read the stream turn it off: DynamoDB
    /// Local keeps every stream record of every table for 24 hours and gets
    /// slower with each one written (a 500-record batch took 2 s on a fresh
    /// server and 15 s after three more), which real DynamoDB does not.
    pub stream: bool,
}

impl Default for TableOptions {
    fn default() -> Self {
        TableOptions { stream: true }
    }
}

/// Creates the table with the data contract's schema (or leaves an existing
/// one alone) and enables TTL. Safe to run repeatedly. Returns true when it
/// created it. It does not compare an existing table with the contract:
/// [`init_table`] does.
pub async fn create_table(client: &Client, table: &str) -> Result<bool, StoreError> {
    create_table_with(client, table, TableOptions::default()).await
}

/// [`create_table`] with options.
pub async fn create_table_with(
    client: &Client,
    table: &str,
    options: TableOptions,
) -> Result<bool, StoreError> {
    Ok(init_table(client, table, options).await?.created)
}

/// How far a table is from the data contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Something beside the meter will not work or costs more (the stream
    /// for budget alerts, marker TTL, billing mode); the meter still counts
    /// and reports right.
    Warning,
    /// The meter cannot count or report on this table (keys, `gsi1`).
    Breaking,
}

/// One difference between a table and the data contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaFinding {
    pub severity: Severity,
    /// What differs: `partition key`, `index gsi1`, `stream`, ...
    pub what: &'static str,
    pub expected: String,
    pub found: String,
    /// What it breaks and how to fix it.
    pub consequence: String,
}

impl std::fmt::Display for SchemaFinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: expected {}, found {}; {}",
            self.what, self.expected, self.found, self.consequence
        )
    }
}

/// What [`init_table`] did and found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitOutcome {
    /// The table did not exist and was created.
    pub created: bool,
    /// TTL on `expires_at` was turned on by this run.
    pub ttl_enabled: bool,
    /// Differences from the data contract, breaking ones first.
    pub findings: Vec<SchemaFinding>,
    /// The marker switch-over instant (epoch seconds): records logged
    /// before it keep per-record markers. 0 for a table created now.
    pub buckets_since: i64,
}

impl InitOutcome {
    /// True when the meter cannot use the table.
    pub fn is_breaking(&self) -> bool {
        self.findings
            .iter()
            .any(|f| f.severity == Severity::Breaking)
    }
}

/// Creates the table with the data contract's schema, or compares the
/// existing one with it ([`check_schema`]); enables TTL on `expires_at` when
/// TTL is off. Safe to run repeatedly. Never changes keys, indexes, the
/// stream or the billing mode of an existing table: it reports them.
pub async fn init_table(
    client: &Client,
    table: &str,
    options: TableOptions,
) -> Result<InitOutcome, StoreError> {
    let key = |name: &str, t: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(t)
            .build()
    };
    let attr = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
    };
    let build = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Permanent {
        message: e.to_string(),
        source: Some(Box::new(e)),
    };
    let gsi = GlobalSecondaryIndex::builder()
        .index_name(GSI1)
        .key_schema(key("gsi1pk", KeyType::Hash).map_err(build)?)
        .key_schema(key("gsi1sk", KeyType::Range).map_err(build)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::All)
                .build(),
        )
        .build()
        .map_err(build)?;
    let created = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key("pk", KeyType::Hash).map_err(build)?)
        .key_schema(key("sk", KeyType::Range).map_err(build)?)
        .attribute_definitions(attr("pk").map_err(build)?)
        .attribute_definitions(attr("sk").map_err(build)?)
        .attribute_definitions(attr("gsi1pk").map_err(build)?)
        .attribute_definitions(attr("gsi1sk").map_err(build)?)
        .global_secondary_indexes(gsi)
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(options.stream)
                .set_stream_view_type(options.stream.then_some(StreamViewType::NewAndOldImages))
                .build()
                .map_err(build)?,
        )
        .send()
        .await;
    let created = match created {
        Ok(_) => true,
        Err(SdkError::ServiceError(se)) if se.err().code() == Some("ResourceInUseException") => {
            false
        }
        Err(e) => return Err(classify_sdk_error(e, table)),
    };
    // Wait until ACTIVE (DynamoDB Local is immediate; AWS takes seconds).
    let mut description = None;
    for _ in 0..120 {
        let d = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| classify_sdk_error(e, table))?;
        let active = d.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active);
        description = d.table;
        if active {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let ttl = client
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .map_err(|e| classify_sdk_error(e, table))?;
    let mut ttl = ttl.time_to_live_description;
    let ttl_off = match &ttl {
        None => true,
        Some(d) => matches!(
            d.time_to_live_status(),
            None | Some(TimeToLiveStatus::Disabled)
        ),
    };
    let mut ttl_enabled = false;
    if ttl_off {
        client
            .update_time_to_live()
            .table_name(table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name(TTL_ATTRIBUTE)
                    .build()
                    .map_err(build)?,
            )
            .send()
            .await
            .map_err(|e| classify_sdk_error(e, table))?;
        ttl_enabled = true;
        ttl = Some(
            TimeToLiveDescription::builder()
                .time_to_live_status(TimeToLiveStatus::Enabling)
                .attribute_name(TTL_ATTRIBUTE)
                .build(),
        );
    }
    let findings = match &description {
        Some(d) => check_schema(table, d, ttl.as_ref()),
        None => Vec::new(),
    };
    // A new table never held per-record markers: buckets for every record.
    // An existing one without the item (an earlier version's) switches a
    // margin from now.
    let store = DynamoDbUsageStore::new(client.clone(), table);
    let default = if created {
        0
    } else {
        time::OffsetDateTime::now_utc().unix_timestamp() + SWITCH_OVER_MARGIN_SECS
    };
    let buckets_since = if findings.iter().any(|f| f.severity == Severity::Breaking) {
        default
    } else {
        store.read_or_set_switch_over(default).await?
    };
    Ok(InitOutcome {
        created,
        ttl_enabled,
        findings,
        buckets_since,
    })
}

/// Compares a table's description and TTL with the data contract
/// (`docs/data-model.md`): keys `pk`/`sk` (S) and index `gsi1`
/// (`gsi1pk`/`gsi1sk`, S, projection ALL) are [`Severity::Breaking`]; the
/// stream (`NEW_AND_OLD_IMAGES`, which budget alerts read), TTL on
/// `expires_at` and on-demand billing are [`Severity::Warning`]s. Breaking
/// findings come first.
pub fn check_schema(
    table: &str,
    d: &TableDescription,
    ttl: Option<&TimeToLiveDescription>,
) -> Vec<SchemaFinding> {
    let mut out = Vec::new();
    let type_of = |name: &str| {
        d.attribute_definitions()
            .iter()
            .find(|a| a.attribute_name() == name)
            .map(|a| a.attribute_type().as_str().to_string())
            .unwrap_or_else(|| "?".into())
    };
    let describe_keys = |keys: &[KeySchemaElement]| {
        if keys.is_empty() {
            return "no keys".to_string();
        }
        keys.iter()
            .map(|k| {
                let role = match k.key_type() {
                    KeyType::Hash => "partition",
                    KeyType::Range => "sort",
                    _ => "?",
                };
                format!(
                    "{} ({}, {role})",
                    k.attribute_name(),
                    type_of(k.attribute_name())
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let keys_match = |keys: &[KeySchemaElement], hash: &str, range: &str| {
        let has = |name: &str, t: KeyType| {
            keys.iter()
                .any(|k| k.attribute_name() == name && k.key_type() == &t)
                && type_of(name) == "S"
        };
        keys.len() == 2 && has(hash, KeyType::Hash) && has(range, KeyType::Range)
    };
    let recreate = format!(
        "the meter cannot use this table: point USAGE_TABLE / --table at a new name and run \
         `bedrock-meter init`, or delete `{table}` and run init again (its items are lost)"
    );
    if !keys_match(d.key_schema(), "pk", "sk") {
        out.push(SchemaFinding {
            severity: Severity::Breaking,
            what: "table keys",
            expected: "pk (S, partition), sk (S, sort)".into(),
            found: describe_keys(d.key_schema()),
            consequence: recreate.clone(),
        });
    }
    match d
        .global_secondary_indexes()
        .iter()
        .find(|g| g.index_name() == Some(GSI1))
    {
        None => out.push(SchemaFinding {
            severity: Severity::Breaking,
            what: "index gsi1",
            expected: "gsi1pk (S, partition), gsi1sk (S, sort), projection ALL".into(),
            found: "no index named gsi1".into(),
            consequence: format!(
                "report and budget alerts query it; add it with `aws dynamodb update-table \
                 --table-name {table} --attribute-definitions AttributeName=gsi1pk,AttributeType=S \
                 AttributeName=gsi1sk,AttributeType=S --global-secondary-index-updates \
                 '[{{\"Create\":{{\"IndexName\":\"gsi1\",\"KeySchema\":[{{\"AttributeName\":\"gsi1pk\",\"KeyType\":\"HASH\"}},{{\"AttributeName\":\"gsi1sk\",\"KeyType\":\"RANGE\"}}],\"Projection\":{{\"ProjectionType\":\"ALL\"}}}}}}]'`"
            ),
        }),
        Some(g) => {
            let projection = g
                .projection()
                .and_then(|p| p.projection_type())
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "none".into());
            if !keys_match(g.key_schema(), "gsi1pk", "gsi1sk") || projection != "ALL" {
                out.push(SchemaFinding {
                    severity: Severity::Breaking,
                    what: "index gsi1",
                    expected: "gsi1pk (S, partition), gsi1sk (S, sort), projection ALL".into(),
                    found: format!("{}, projection {projection}", describe_keys(g.key_schema())),
                    consequence: format!(
                        "report reads every counter through it; delete the index and create it \
                         as the contract says (`aws dynamodb update-table --table-name {table} \
                         --global-secondary-index-updates ...`), or use a new table"
                    ),
                });
            }
        }
    }
    let stream = d
        .stream_specification()
        .filter(|s| s.stream_enabled())
        .map(|s| {
            s.stream_view_type()
                .map(|v| v.as_str().to_string())
                .unwrap_or_else(|| "no view type".into())
        });
    if stream.as_deref() != Some("NEW_AND_OLD_IMAGES") {
        let enable = format!(
            "aws dynamodb update-table --table-name {table} --stream-specification \
             StreamEnabled=true,StreamViewType=NEW_AND_OLD_IMAGES"
        );
        out.push(SchemaFinding {
            severity: Severity::Warning,
            what: "stream",
            expected: "NEW_AND_OLD_IMAGES".into(),
            found: stream.clone().unwrap_or_else(|| "no stream".into()),
            consequence: match stream {
                None => format!(
                    "metering and report work, budget alerts do not (they read the stream); \
                     enable it with `{enable}`"
                ),
                Some(_) => format!(
                    "metering and report work, budget alerts do not (they need old and new \
                     images); disable the stream (StreamEnabled=false), then `{enable}`"
                ),
            },
        });
    }
    let ttl_status = ttl.and_then(|t| t.time_to_live_status());
    let ttl_attr = ttl.and_then(|t| t.attribute_name());
    let ttl_on = matches!(
        ttl_status,
        Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
    );
    if !(ttl_on && ttl_attr == Some(TTL_ATTRIBUTE)) {
        out.push(SchemaFinding {
            severity: Severity::Warning,
            what: "TTL",
            expected: format!("enabled on {TTL_ATTRIBUTE}"),
            found: match (ttl_status, ttl_attr) {
                (Some(s), Some(a)) => format!("{} on {a}", s.as_str()),
                (Some(s), None) => s.as_str().to_string(),
                _ => "off".into(),
            },
            consequence: format!(
                "idempotency markers never expire, so the table keeps growing (counting stays \
                 exact); disable that TTL and run `bedrock-meter init` again to enable it on \
                 {TTL_ATTRIBUTE}"
            ),
        });
    }
    let billing = d
        .billing_mode_summary()
        .and_then(|b| b.billing_mode())
        .map(|b| b.as_str().to_string())
        // DynamoDB leaves the summary out for tables created provisioned.
        .unwrap_or_else(|| "PROVISIONED".into());
    if billing != "PAY_PER_REQUEST" {
        out.push(SchemaFinding {
            severity: Severity::Warning,
            what: "billing",
            expected: "PAY_PER_REQUEST (on-demand)".into(),
            found: billing,
            consequence: "bursts of deliveries may be throttled (they are retried, so slower, \
                          not wrong); switch with `aws dynamodb update-table --billing-mode \
                          PAY_PER_REQUEST` unless the capacity is planned"
                .into(),
        });
    }
    out.sort_by_key(|f| std::cmp::Reverse(f.severity));
    out
}

impl DynamoDbUsageStore {
    /// What this store talks to, for operator messages
    /// ([`crate::store::describe_for_operator`]): its table, its client's
    /// Region, and the endpoint override from the environment.
    pub fn conn_info(&self) -> ConnInfo {
        ConnInfo {
            table: self.table.clone(),
            region: self.client.config().region().map(|r| r.to_string()),
            endpoint: ConnInfo::endpoint_from(|k| std::env::var(k).ok()),
        }
    }
}

/// One aggregate item as read back.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UsageRow {
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub day: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub month: Option<String>,
    /// The attribution tag key (`tag_*` kinds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The attribution tag value (`tag_*` kinds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    pub invocations: u128,
    pub errors: u128,
    pub input_tokens: u128,
    pub output_tokens: u128,
    pub cache_read_input_tokens: u128,
    pub cache_write_input_tokens: u128,
    pub unpriced_invocations: u128,
    /// Exact decimal string.
    pub cost_usd: String,
    #[serde(skip)]
    pub cost: Usd,
}

fn row_of(item: &HashMap<String, AttributeValue>) -> Option<UsageRow> {
    let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    let num = |k: &str| {
        item.get(k)
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<u128>().ok())
            .unwrap_or(0)
    };
    let kind = text("kind")?;
    if matches!(
        kind.as_str(),
        "marker" | BUCKET_KIND | "marker_scheme" | REQUEST_COST_KIND
    ) {
        return None;
    }
    let cost_text = item
        .get("cost_usd")
        .and_then(|v| v.as_n().ok())
        .cloned()
        .unwrap_or_else(|| "0".into());
    let cost: Usd = cost_text.parse().unwrap_or_default();
    Some(UsageRow {
        kind,
        user: text("user"),
        model: text("model"),
        day: text("day"),
        month: text("month"),
        tag: text("tag"),
        value: text("value"),
        invocations: num("invocations"),
        errors: num("errors"),
        input_tokens: num("input_tokens"),
        output_tokens: num("output_tokens"),
        cache_read_input_tokens: num("cache_read_input_tokens"),
        cache_write_input_tokens: num("cache_write_input_tokens"),
        unpriced_invocations: num("unpriced_invocations"),
        cost_usd: cost.to_string(),
        cost,
    })
}

/// The report queries of the data contract. Each is one (paginated) Query.
impl DynamoDbUsageStore {
    async fn query(
        &self,
        index: Option<&str>,
        pk_name: &str,
        pk: String,
        sk_name: &str,
        sk: SkCondition,
    ) -> Result<Vec<UsageRow>, StoreError> {
        self.query_map(index, pk_name, pk, sk_name, sk, row_of)
            .await
    }

    /// One paginated Query, each item mapped by `map` (`None` drops it).
    async fn query_map<T>(
        &self,
        index: Option<&str>,
        pk_name: &str,
        pk: String,
        sk_name: &str,
        sk: SkCondition,
        map: impl Fn(&HashMap<String, AttributeValue>) -> Option<T>,
    ) -> Result<Vec<T>, StoreError> {
        let mut rows = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let (cond, mut values) = match &sk {
                SkCondition::Between(a, b) => (
                    "#pk = :pk AND #sk BETWEEN :a AND :b",
                    HashMap::from([(":a".to_string(), s(a)), (":b".to_string(), s(b))]),
                ),
                SkCondition::BeginsWith(p) => (
                    "#pk = :pk AND begins_with(#sk, :a)",
                    HashMap::from([(":a".to_string(), s(p))]),
                ),
                SkCondition::Equals(v) => (
                    "#pk = :pk AND #sk = :a",
                    HashMap::from([(":a".to_string(), s(v))]),
                ),
            };
            values.insert(":pk".to_string(), s(&pk));
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .set_index_name(index.map(str::to_string))
                .key_condition_expression(cond)
                .expression_attribute_names("#pk", pk_name)
                .expression_attribute_names("#sk", sk_name)
                .set_expression_attribute_values(Some(values))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| classify_sdk_error(e, &self.table))?;
            rows.extend(out.items().iter().filter_map(&map));
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        Ok(rows)
    }

    /// A user's usage from `from` to `to` inclusive: per (model, day) items
    /// and per-day totals, in one Query.
    pub async fn user_days(
        &self,
        user: &str,
        from: Day,
        to: Day,
    ) -> Result<Vec<UsageRow>, StoreError> {
        self.query(
            None,
            "pk",
            keys::user_pk(user),
            "sk",
            SkCondition::Between(keys::day_sk(from), format!("{}#~", keys::day_sk(to))),
        )
        .await
    }

    /// A user's total for a month (month to date for the current month).
    pub async fn user_month(&self, user: &str, month: Month) -> Result<Vec<UsageRow>, StoreError> {
        self.query(
            None,
            "pk",
            keys::user_pk(user),
            "sk",
            SkCondition::Equals(keys::month_sk(month)),
        )
        .await
    }

    /// A model's per-day totals over a date range.
    pub async fn model_days(
        &self,
        model: &str,
        from: Day,
        to: Day,
    ) -> Result<Vec<UsageRow>, StoreError> {
        self.query(
            None,
            "pk",
            keys::model_pk(model),
            "sk",
            SkCondition::Between(keys::day_sk(from), keys::day_sk(to)),
        )
        .await
    }

    /// Every user's total for one day (to rank spenders).
    pub async fn users_on_day(&self, day: Day) -> Result<Vec<UsageRow>, StoreError> {
        self.query(
            Some(GSI1),
            "gsi1pk",
            keys::day_gsi_pk(day),
            "gsi1sk",
            SkCondition::BeginsWith("U#".into()),
        )
        .await
    }

    /// Every user's total for one month.
    pub async fn users_in_month(&self, month: Month) -> Result<Vec<UsageRow>, StoreError> {
        self.query(
            Some(GSI1),
            "gsi1pk",
            keys::month_gsi_pk(month),
            "gsi1sk",
            SkCondition::BeginsWith("U#".into()),
        )
        .await
    }

    /// Every model's total for one day; their sum is the organisation's.
    pub async fn models_on_day(&self, day: Day) -> Result<Vec<UsageRow>, StoreError> {
        self.query(
            Some(GSI1),
            "gsi1pk",
            keys::day_gsi_pk(day),
            "gsi1sk",
            SkCondition::BeginsWith("M#".into()),
        )
        .await
    }
}

/// Attribution tags (`tag_model_day`, `tag_month`) and per-request markers.
impl DynamoDbUsageStore {
    /// Every value of a tag on one day, per model (`tag_model_day` items):
    /// one Query on `gsi1` (`TDAY#<tag>#<day>`).
    pub async fn tag_values_on_day(
        &self,
        tag: &str,
        day: Day,
    ) -> Result<Vec<UsageRow>, StoreError> {
        self.query(
            Some(GSI1),
            "gsi1pk",
            keys::tag_day_gsi_pk(tag, day),
            "gsi1sk",
            SkCondition::BeginsWith("V#".into()),
        )
        .await
    }

    /// Every value of a tag in one month (`tag_month` items): one Query on
    /// `gsi1` (`TMONTH#<tag>#<month>`).
    pub async fn tag_values_in_month(
        &self,
        tag: &str,
        month: Month,
    ) -> Result<Vec<UsageRow>, StoreError> {
        self.query(
            Some(GSI1),
            "gsi1pk",
            keys::tag_month_gsi_pk(tag, month),
            "gsi1sk",
            SkCondition::BeginsWith("V#".into()),
        )
        .await
    }

    /// One tag value per model and day from `from` to `to` (`tag_model_day`
    /// items): one Query (`T#<tag>#<value>`).
    pub async fn tag_value_days(
        &self,
        tag: &str,
        value: &str,
        from: Day,
        to: Day,
    ) -> Result<Vec<UsageRow>, StoreError> {
        self.query(
            None,
            "pk",
            keys::tag_pk(tag, value),
            "sk",
            SkCondition::Between(keys::day_sk(from), format!("{}#~", keys::day_sk(to))),
        )
        .await
    }

    /// What one record id (`r:<requestId>`) cost: its request-cost item
    /// (`REQUEST_COSTS=on`), else the per-record marker of an earlier
    /// version; one or two strongly consistent GetItems. `None` when
    /// neither exists.
    pub async fn marker(&self, record_id: &str) -> Result<Option<MarkerRow>, StoreError> {
        for k in [
            keys::request_cost_keys(record_id),
            keys::marker_keys(record_id),
        ] {
            if let Some(row) = self
                .get_item(&k.pk, &k.sk)
                .await?
                .as_ref()
                .and_then(marker_of)
            {
                return Ok(Some(row));
            }
        }
        Ok(None)
    }
}

/// A record's marker as read back (`bedrock-meter cost`). Markers written
/// before per-request costs existed have no usage (`user` is `None`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MarkerRow {
    pub record_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub day: Option<String>,
    pub errors: u128,
    pub input_tokens: u128,
    pub output_tokens: u128,
    pub cache_read_input_tokens: u128,
    pub cache_write_input_tokens: u128,
    pub unpriced_invocations: u128,
    /// Exact decimal string.
    pub cost_usd: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub committed_at: Option<String>,
    /// Epoch seconds after which DynamoDB may delete the marker.
    pub expires_at: Option<i64>,
}

fn marker_of(item: &HashMap<String, AttributeValue>) -> Option<MarkerRow> {
    let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    let num = |k: &str| {
        item.get(k)
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<u128>().ok())
            .unwrap_or(0)
    };
    if !matches!(text("kind").as_deref(), Some("marker" | REQUEST_COST_KIND)) {
        return None;
    }
    let cost: Usd = item
        .get("cost_usd")
        .and_then(|v| v.as_n().ok())
        .and_then(|c| c.parse().ok())
        .unwrap_or_default();
    Some(MarkerRow {
        record_id: text("record_id")?,
        user: text("user"),
        model: text("model"),
        day: text("day"),
        errors: num("errors"),
        input_tokens: num("input_tokens"),
        output_tokens: num("output_tokens"),
        cache_read_input_tokens: num("cache_read_input_tokens"),
        cache_write_input_tokens: num("cache_write_input_tokens"),
        unpriced_invocations: num("unpriced_invocations"),
        cost_usd: cost.to_string(),
        committed_at: text("committed_at").or_else(|| text("written_at")),
        expires_at: item
            .get(TTL_ATTRIBUTE)
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok()),
    })
}

enum SkCondition {
    Between(String, String),
    BeginsWith(String),
    Equals(String),
}

/// An aggregate with the time of its last write (`updated_at`), for readers
/// that show how fresh the data is (the dashboard).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StampedRow {
    pub row: UsageRow,
    /// RFC 3339 UTC, when the item has one.
    pub updated_at: Option<String>,
}

/// One access pattern of the data contract (`docs/data-model.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessPattern<'a> {
    /// [`DynamoDbUsageStore::user_days`].
    UserDays { user: &'a str, from: Day, to: Day },
    /// [`DynamoDbUsageStore::user_month`].
    UserMonth { user: &'a str, month: Month },
    /// [`DynamoDbUsageStore::model_days`].
    ModelDays { model: &'a str, from: Day, to: Day },
    /// [`DynamoDbUsageStore::users_on_day`].
    UsersOnDay(Day),
    /// [`DynamoDbUsageStore::users_in_month`].
    UsersInMonth(Month),
    /// [`DynamoDbUsageStore::models_on_day`].
    ModelsOnDay(Day),
}

/// The access patterns with each row's `updated_at` (one paginated Query
/// each, the same as the report methods).
impl DynamoDbUsageStore {
    pub async fn read_stamped(
        &self,
        pattern: AccessPattern<'_>,
    ) -> Result<Vec<StampedRow>, StoreError> {
        use AccessPattern as P;
        let (index, pk_name, pk, sk_name, sk) = match pattern {
            P::UserDays { user, from, to } => (
                None,
                "pk",
                keys::user_pk(user),
                "sk",
                SkCondition::Between(keys::day_sk(from), format!("{}#~", keys::day_sk(to))),
            ),
            P::UserMonth { user, month } => (
                None,
                "pk",
                keys::user_pk(user),
                "sk",
                SkCondition::Equals(keys::month_sk(month)),
            ),
            P::ModelDays { model, from, to } => (
                None,
                "pk",
                keys::model_pk(model),
                "sk",
                SkCondition::Between(keys::day_sk(from), keys::day_sk(to)),
            ),
            P::UsersOnDay(day) => (
                Some(GSI1),
                "gsi1pk",
                keys::day_gsi_pk(day),
                "gsi1sk",
                SkCondition::BeginsWith("U#".into()),
            ),
            P::UsersInMonth(month) => (
                Some(GSI1),
                "gsi1pk",
                keys::month_gsi_pk(month),
                "gsi1sk",
                SkCondition::BeginsWith("U#".into()),
            ),
            P::ModelsOnDay(day) => (
                Some(GSI1),
                "gsi1pk",
                keys::day_gsi_pk(day),
                "gsi1sk",
                SkCondition::BeginsWith("M#".into()),
            ),
        };
        self.query_map(index, pk_name, pk, sk_name, sk, |item| {
            Some(StampedRow {
                row: row_of(item)?,
                updated_at: item.get("updated_at").and_then(|v| v.as_s().ok()).cloned(),
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::types::{BillingModeSummary, GlobalSecondaryIndexDescription};

    fn key(name: &str, t: KeyType) -> KeySchemaElement {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(t)
            .build()
            .unwrap()
    }

    fn attr(name: &str, t: ScalarAttributeType) -> AttributeDefinition {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(t)
            .build()
            .unwrap()
    }

    /// A description of the contract's table, changed by `edit`.
    fn table(edit: impl FnOnce(&mut Contract)) -> TableDescription {
        let mut c = Contract {
            sk_type: ScalarAttributeType::S,
            gsi: true,
            projection: ProjectionType::All,
            stream: Some(StreamViewType::NewAndOldImages),
            billing: Some(BillingMode::PayPerRequest),
        };
        edit(&mut c);
        let mut b = TableDescription::builder()
            .key_schema(key("pk", KeyType::Hash))
            .key_schema(key("sk", KeyType::Range))
            .attribute_definitions(attr("pk", ScalarAttributeType::S))
            .attribute_definitions(attr("sk", c.sk_type))
            .attribute_definitions(attr("gsi1pk", ScalarAttributeType::S))
            .attribute_definitions(attr("gsi1sk", ScalarAttributeType::S));
        if c.gsi {
            b = b.global_secondary_indexes(
                GlobalSecondaryIndexDescription::builder()
                    .index_name(GSI1)
                    .key_schema(key("gsi1pk", KeyType::Hash))
                    .key_schema(key("gsi1sk", KeyType::Range))
                    .projection(Projection::builder().projection_type(c.projection).build())
                    .build(),
            );
        }
        if let Some(v) = c.stream {
            b = b.stream_specification(
                StreamSpecification::builder()
                    .stream_enabled(true)
                    .stream_view_type(v)
                    .build()
                    .unwrap(),
            );
        }
        if let Some(m) = c.billing {
            b = b.billing_mode_summary(BillingModeSummary::builder().billing_mode(m).build());
        }
        b.build()
    }

    struct Contract {
        sk_type: ScalarAttributeType,
        gsi: bool,
        projection: ProjectionType,
        stream: Option<StreamViewType>,
        billing: Option<BillingMode>,
    }

    fn ttl_on(attr: &str) -> TimeToLiveDescription {
        TimeToLiveDescription::builder()
            .time_to_live_status(TimeToLiveStatus::Enabled)
            .attribute_name(attr)
            .build()
    }

    fn findings(
        d: &TableDescription,
        ttl: &TimeToLiveDescription,
    ) -> Vec<(Severity, &'static str)> {
        check_schema("t", d, Some(ttl))
            .into_iter()
            .map(|f| (f.severity, f.what))
            .collect()
    }

    #[test]
    fn the_contract_table_has_no_findings() {
        assert_eq!(findings(&table(|_| {}), &ttl_on("expires_at")), vec![]);
    }

    #[test]
    fn wrong_keys_and_a_wrong_or_missing_gsi1_are_breaking() {
        let ttl = ttl_on("expires_at");
        assert_eq!(
            findings(&table(|c| c.sk_type = ScalarAttributeType::N), &ttl),
            vec![(Severity::Breaking, "table keys")]
        );
        assert_eq!(
            findings(&table(|c| c.gsi = false), &ttl),
            vec![(Severity::Breaking, "index gsi1")]
        );
        assert_eq!(
            findings(&table(|c| c.projection = ProjectionType::KeysOnly), &ttl),
            vec![(Severity::Breaking, "index gsi1")]
        );
        let f = check_schema(
            "t",
            &table(|c| c.sk_type = ScalarAttributeType::N),
            Some(&ttl),
        );
        assert_eq!(f[0].found, "pk (S, partition), sk (N, sort)");
    }

    #[test]
    fn stream_ttl_and_billing_differences_are_warnings_listed_after_breaking_ones() {
        let d = table(|c| {
            c.stream = Some(StreamViewType::NewImage);
            c.billing = None;
            c.gsi = false;
        });
        assert_eq!(
            findings(&d, &ttl_on("ttl")),
            vec![
                (Severity::Breaking, "index gsi1"),
                (Severity::Warning, "stream"),
                (Severity::Warning, "TTL"),
                (Severity::Warning, "billing"),
            ]
        );
        let stream = check_schema(
            "t",
            &table(|c| c.stream = None),
            Some(&ttl_on("expires_at")),
        );
        assert_eq!(stream.len(), 1);
        assert_eq!(stream[0].found, "no stream");
        assert!(
            stream[0].consequence.contains("budget alerts"),
            "{}",
            stream[0]
        );
    }

    #[test]
    fn aggregate_updates_add_every_counter_and_set_dimensions_through_placeholders() {
        let keys = keys::ItemKeys {
            pk: "U#alice".into(),
            sk: "D#2026-11-01".into(),
            gsi1: Some(("DAY#2026-11-01".into(), "U#alice".into())),
        };
        let counters = Counters {
            invocations: 2,
            cost_usd: "0.00000875".parse().unwrap(),
            ..Default::default()
        };
        let (expr, names, values) = aggregate_update(
            &keys,
            "user_day",
            &[("user", "alice".into()), ("day", "2026-11-01".into())],
            &counters,
            "2026-11-01T00:00:00Z",
        );
        assert!(expr.starts_with("ADD #c0 :c0, "), "{expr}");
        assert_eq!(
            names.values().filter(|n| n.as_str() == "cost_usd").count(),
            1
        );
        let cost_placeholder = names
            .iter()
            .find(|(_, v)| v.as_str() == "cost_usd")
            .unwrap()
            .0
            .replace('#', ":");
        assert_eq!(
            values[&cost_placeholder],
            AttributeValue::N("0.00000875".into())
        );
        for attr in ["kind", "user", "day", "gsi1pk", "gsi1sk", "updated_at"] {
            assert!(names.values().any(|v| v == attr), "{attr} not set");
        }
        // no raw attribute names in the expression
        assert!(!expr.contains("user") && !expr.contains("day"));
    }
}
