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
    KeyType, Projection, ProjectionType, Put, ReturnConsumedCapacity, ScalarAttributeType,
    StreamSpecification, StreamViewType, TableStatus, TimeToLiveSpecification, TransactWriteItem,
    Update,
};
use aws_sdk_dynamodb::Client;
use meter_core::{Counters, Day, Month, Usd};

use crate::keys;
use crate::plan::{PlannedTx, TxItem};
use crate::store::{CancelReason, StoreError, TxCommitted, UsageStore};

/// Default table name (`USAGE_TABLE`).
pub const DEFAULT_TABLE: &str = "bedrock-usage";
/// The TTL attribute.
pub const TTL_ATTRIBUTE: &str = "expires_at";
/// The one global secondary index.
pub const GSI1: &str = "gsi1";

/// [`UsageStore`] on a DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoDbUsageStore {
    client: Client,
    table: String,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl DynamoDbUsageStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoDbUsageStore {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
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
                } => {
                    let put = Put::builder()
                        .table_name(&self.table)
                        .item("pk", s(&keys.pk))
                        .item("sk", s(&keys.sk))
                        .item("kind", s("marker"))
                        .item("record_id", s(record_id))
                        .item("committed_at", s(updated_at))
                        .item(TTL_ATTRIBUTE, n(expires_at.to_string()))
                        .condition_expression("attribute_not_exists(pk)")
                        .build()
                        .map_err(build_err)?;
                    Ok(TransactWriteItem::builder().put(put).build())
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

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}
fn n(v: impl Into<String>) -> AttributeValue {
    AttributeValue::N(v.into())
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
            .await
            .map_err(|e| classify_transact_error(e, &self.table))?;
        let write_units = out
            .consumed_capacity()
            .iter()
            .filter_map(|c| c.capacity_units())
            .sum();
        Ok(TxCommitted { write_units })
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| time::OffsetDateTime::now_utc())
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn classify_transact_error<R: std::fmt::Debug + Send + Sync + 'static>(
    err: SdkError<TransactWriteItemsError, R>,
    table: &str,
) -> StoreError {
    if let SdkError::ServiceError(se) = &err {
        if let TransactWriteItemsError::TransactionCanceledException(e) = se.err() {
            let reasons = e
                .cancellation_reasons()
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
                .collect();
            return StoreError::Cancelled(reasons);
        }
    }
    classify_sdk_error(err, table)
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

/// Creates the table with the data contract's schema, or checks the existing
/// one; enables TTL. Safe to run repeatedly. Returns true when it created it.
pub async fn create_table(client: &Client, table: &str) -> Result<bool, StoreError> {
    create_table_with(client, table, TableOptions::default()).await
}

/// [`create_table`] with options.
pub async fn create_table_with(
    client: &Client,
    table: &str,
    options: TableOptions,
) -> Result<bool, StoreError> {
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
    for _ in 0..120 {
        let d = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| classify_sdk_error(e, table))?;
        if d.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
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
    let enabled = ttl
        .time_to_live_description()
        .and_then(|d| d.attribute_name())
        == Some(TTL_ATTRIBUTE);
    if !enabled {
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
    }
    Ok(created)
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
    if kind == "marker" {
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
            rows.extend(out.items().iter().filter_map(row_of));
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

enum SkCondition {
    Between(String, String),
    BeginsWith(String),
    Equals(String),
}

#[cfg(test)]
mod tests {
    use super::*;

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
