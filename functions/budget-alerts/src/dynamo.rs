//! [`AlertStore`] on the usage table.
//!
//! Items this function writes (see `docs/budgets.md`):
//!
//! - alert markers: `pk = ALERT#U#<component(user)>#D#<day>` (or
//!   `#MONTH#<month>`, or `ALERT#ORG#MONTH#<month>`), `sk =
//!   T#<threshold, 4 digits>#L#<limit>`, `kind = alert`, `state` (`pending`,
//!   `sent`), the claim, the alert's fields, `expires_at`;
//! - the organisation's month totals: `pk = ORG`, `sk = MONTH#<month>`,
//!   `kind = org_month`, `month`, `cost_usd`, `updated_at`;
//! - org delta markers: `pk = ORGD#<stream eventID>`, `sk = D`, `kind =
//!   org_delta`, `expires_at` (2 days: the stream keeps records 24 hours).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, ReturnValue, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use meter_core::{Month, Usd};
use meter_store::budgets::Budgets;
use meter_store::dynamo::classify_sdk_error;
use meter_store::keys::{component, user_pk};
use meter_store::{DynamoDbUsageStore, StoreError};

use crate::alert::{Alert, AlertKey, AlertScope};
use crate::change::PeriodKind;
use crate::handler::{AlertStore, ClaimOutcome, OrgDelta, OrgDeltaError};

/// Delta markers outlive the stream's 24-hour retention.
const ORG_DELTA_TTL_SECS: i64 = 2 * 86_400;
/// Alert markers outlive their period by this much (a marker must exist as
/// long as its period can still change).
const ALERT_TTL_AFTER_PERIOD_SECS: i64 = 35 * 86_400;
/// Markers plus additions per transaction (DynamoDB's limit is 100).
const MAX_TX_ITEMS: usize = 100;

/// The usage table as the alerts function uses it.
#[derive(Debug, Clone)]
pub struct DynamoDbAlertStore {
    usage: DynamoDbUsageStore,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}
fn n(v: impl Into<String>) -> AttributeValue {
    AttributeValue::N(v.into())
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| time::OffsetDateTime::now_utc())
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn permanent(message: String) -> StoreError {
    StoreError::Permanent {
        message,
        source: None,
    }
}

/// Epoch seconds of the end of an alert's period (start of the next day or
/// month, UTC).
fn period_end(kind: PeriodKind, period: &str) -> i64 {
    let start = match kind {
        PeriodKind::Day => meter_core::Day::parse(period).map(|d| d.date()),
        PeriodKind::Month => Month::parse(period)
            .and_then(|m| meter_core::Day::parse(&format!("{m}-01")))
            .map(|d| d.date()),
    };
    let Some(start) = start else {
        return time::OffsetDateTime::now_utc().unix_timestamp();
    };
    let end = match kind {
        PeriodKind::Day => start.next_day().unwrap_or(start),
        PeriodKind::Month => {
            let mut d = start;
            while d.month() == start.month() {
                d = d.next_day().unwrap_or(d);
            }
            d
        }
    };
    end.midnight().assume_utc().unix_timestamp()
}

impl DynamoDbAlertStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoDbAlertStore {
            usage: DynamoDbUsageStore::new(client, table),
        }
    }

    fn client(&self) -> &Client {
        self.usage.client()
    }

    fn table(&self) -> &str {
        self.usage.table()
    }

    async fn get(
        &self,
        pk: &str,
        sk: &str,
    ) -> Result<Option<HashMap<String, AttributeValue>>, StoreError> {
        let out = self
            .client()
            .get_item()
            .table_name(self.table())
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify_sdk_error(e, self.table()))?;
        Ok(out.item().cloned())
    }

    /// One transaction of delta markers and month additions. Returns the
    /// positions (in `chunk`) whose marker already existed, when cancelled
    /// for that reason.
    async fn apply_chunk(&self, chunk: &[&OrgDelta]) -> Result<Vec<usize>, StoreError> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let updated_at = now_rfc3339();
        let mut items = Vec::new();
        let build = |e: aws_sdk_dynamodb::error::BuildError| permanent(e.to_string());
        for d in chunk {
            let put = Put::builder()
                .table_name(self.table())
                .item("pk", s(format!("ORGD#{}", component(&d.event_id))))
                .item("sk", s("D"))
                .item("kind", s("org_delta"))
                .item("month", s(&d.month))
                .item("cost_usd", n(d.delta.to_string()))
                .item("expires_at", n((now + ORG_DELTA_TTL_SECS).to_string()))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(build)?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        let mut per_month: BTreeMap<&str, Usd> = BTreeMap::new();
        for d in chunk {
            let t = per_month.entry(d.month.as_str()).or_default();
            *t = t.saturating_add(d.delta);
        }
        for (month, total) in per_month {
            let update = Update::builder()
                .table_name(self.table())
                .key("pk", s("ORG"))
                .key("sk", s(format!("MONTH#{month}")))
                .update_expression("ADD cost_usd :d SET #k = :k, #m = :m, updated_at = :u")
                .expression_attribute_names("#k", "kind")
                .expression_attribute_names("#m", "month")
                .expression_attribute_values(":d", n(total.to_string()))
                .expression_attribute_values(":k", s("org_month"))
                .expression_attribute_values(":m", s(month))
                .expression_attribute_values(":u", s(&updated_at))
                .build()
                .map_err(build)?;
            items.push(TransactWriteItem::builder().update(update).build());
        }
        match self
            .client()
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(Vec::new()),
            Err(SdkError::ServiceError(se))
                if matches!(
                    se.err(),
                    TransactWriteItemsError::TransactionCanceledException(_)
                ) =>
            {
                let TransactWriteItemsError::TransactionCanceledException(e) = se.err() else {
                    unreachable!()
                };
                let codes: Vec<Option<&str>> =
                    e.cancellation_reasons().iter().map(|r| r.code()).collect();
                let dup: Vec<usize> = codes
                    .iter()
                    .enumerate()
                    .filter(|(i, c)| *i < chunk.len() && **c == Some("ConditionalCheckFailed"))
                    .map(|(i, _)| i)
                    .collect();
                let other = codes
                    .iter()
                    .flatten()
                    .find(|c| !matches!(**c, "None" | "ConditionalCheckFailed"));
                match other {
                    None if !dup.is_empty() => Ok(dup),
                    Some(&code)
                        if matches!(
                            code,
                            "TransactionConflict"
                                | "ThrottlingError"
                                | "ProvisionedThroughputExceeded"
                        ) =>
                    {
                        Err(StoreError::Retryable {
                            message: format!("organisation total: transaction cancelled ({code})"),
                            source: None,
                        })
                    }
                    _ => Err(permanent(format!(
                        "organisation total: transaction cancelled ({codes:?})"
                    ))),
                }
            }
            Err(e) => Err(classify_sdk_error(e, self.table())),
        }
    }
}

fn cost_of(item: &HashMap<String, AttributeValue>) -> Usd {
    item.get("cost_usd")
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_default()
}

impl AlertStore for DynamoDbAlertStore {
    async fn budgets(&self) -> Result<Budgets, StoreError> {
        let mut list = Vec::new();
        for item in self.usage.budget_items().await? {
            match item {
                Ok(b) => list.push(b),
                Err(bad) => {
                    tracing::warn!(error = %bad, "invalid budget item ignored; fix it with `bedrock-meter budget set`")
                }
            }
        }
        Ok(Budgets::from_list(list))
    }

    async fn apply_org_deltas(&self, deltas: &[OrgDelta]) -> Result<(), OrgDeltaError> {
        // Chunks in order; `done` counts the deltas known to be stored.
        let mut done = 0;
        while done < deltas.len() {
            let mut chunk: Vec<&OrgDelta> = Vec::new();
            let mut months: Vec<&str> = Vec::new();
            for d in &deltas[done..] {
                let extra_month = usize::from(!months.contains(&d.month.as_str()));
                if chunk.len() + months.len() + 1 + extra_month > MAX_TX_ITEMS {
                    break;
                }
                if extra_month == 1 {
                    months.push(&d.month);
                }
                chunk.push(d);
            }
            let size = chunk.len();
            let mut attempt = 0u32;
            loop {
                match self.apply_chunk(&chunk).await {
                    Ok(dups) if dups.is_empty() => break,
                    Ok(dups) => {
                        // Already applied by an earlier delivery: drop them.
                        let mut i = 0;
                        chunk.retain(|_| {
                            let keep = !dups.contains(&i);
                            i += 1;
                            keep
                        });
                        if chunk.is_empty() {
                            break;
                        }
                    }
                    Err(StoreError::Retryable { .. }) if attempt < 6 => {
                        attempt += 1;
                        let base = 25u64 << attempt;
                        let jitter = u64::from(std::process::id() ^ attempt) % base;
                        tokio::time::sleep(Duration::from_millis(base + jitter)).await;
                    }
                    Err(source) => {
                        return Err(OrgDeltaError {
                            applied: done,
                            source,
                        })
                    }
                }
            }
            done += size;
        }
        Ok(())
    }

    async fn org_month_spend(&self, month: &str) -> Result<Usd, StoreError> {
        Ok(self
            .get("ORG", &format!("MONTH#{month}"))
            .await?
            .map(|i| cost_of(&i))
            .unwrap_or_default())
    }

    async fn tag_day_spend(&self, tag: &str, value: &str, day: &str) -> Result<Usd, StoreError> {
        // Every tag_model_day item of the value on that day: one strongly
        // consistent Query of its partition (sk `D#<day>#M#<model>`).
        let pk = meter_store::keys::tag_pk(tag, value);
        let prefix = format!("D#{day}#M#");
        let mut total = Usd::ZERO;
        let mut start = None;
        loop {
            let page = self
                .client()
                .query()
                .table_name(self.table())
                .key_condition_expression("pk = :pk AND begins_with(sk, :d)")
                .expression_attribute_values(":pk", s(pk.clone()))
                .expression_attribute_values(":d", s(prefix.clone()))
                .projection_expression("cost_usd")
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| classify_sdk_error(e, self.table()))?;
            for item in page.items() {
                total = total.saturating_add(cost_of(item));
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        Ok(total)
    }

    async fn claim(
        &self,
        alert: &Alert,
        claim_id: &str,
        now_ms: u64,
        lease: Duration,
    ) -> Result<ClaimOutcome, StoreError> {
        let key = alert.key();
        let lease_until = now_ms.saturating_add(lease.as_millis() as u64);
        let expires_at = period_end(alert.kind, &alert.period) + ALERT_TTL_AFTER_PERIOD_SECS;
        let mut names = HashMap::from([
            ("#st".to_string(), "state".to_string()),
            ("#lu".to_string(), "lease_until".to_string()),
        ]);
        let mut values = HashMap::from([
            (":pending".to_string(), s("pending")),
            (":now".to_string(), n(now_ms.to_string())),
            (":lu".to_string(), n(lease_until.to_string())),
            (":me".to_string(), s(claim_id)),
        ]);
        let mut sets = vec![
            "#st = :pending".to_string(),
            "#lu = :lu".to_string(),
            "claim_id = :me".to_string(),
            "dedup_id = if_not_exists(dedup_id, :me)".to_string(),
            "claims = if_not_exists(claims, :zero) + :one".to_string(),
        ];
        values.insert(":zero".into(), n("0"));
        values.insert(":one".into(), n("1"));
        let mut set = |name: &str, value: AttributeValue| {
            let i = names.len();
            names.insert(format!("#a{i}"), name.to_string());
            values.insert(format!(":a{i}"), value);
            sets.push(format!("#a{i} = :a{i}"));
        };
        set("kind", s("alert"));
        set(
            "scope",
            s(match alert.scope {
                AlertScope::User { .. } => "user",
                AlertScope::Org => "org",
                AlertScope::Tag { .. } => "tag",
            }),
        );
        if let Some(user) = alert.user() {
            set("user", s(user));
        }
        if let Some((tag, value)) = alert.tag() {
            set("tag", s(tag));
            set("value", s(value));
        }
        set("period_kind", s(alert.kind.label()));
        set("period", s(&alert.period));
        set("threshold_pct", n(alert.threshold.to_string()));
        set("limit_usd", n(alert.limit.to_string()));
        set("spend_usd", n(alert.spend.to_string()));
        set("claimed_at", s(now_rfc3339()));
        set("expires_at", n(expires_at.to_string()));
        let out = self
            .client()
            .update_item()
            .table_name(self.table())
            .key("pk", s(&key.pk))
            .key("sk", s(&key.sk))
            .update_expression(format!("SET {}", sets.join(", ")))
            .condition_expression("attribute_not_exists(pk) OR (#st = :pending AND #lu < :now)")
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match out {
            Ok(o) => {
                let dedup_id = o
                    .attributes()
                    .and_then(|a| a.get("dedup_id"))
                    .and_then(|v| v.as_s().ok())
                    .cloned()
                    .unwrap_or_else(|| claim_id.to_string());
                Ok(ClaimOutcome::Claimed { dedup_id })
            }
            Err(SdkError::ServiceError(se))
                if se.err().code() == Some("ConditionalCheckFailedException") =>
            {
                let item = self.get(&key.pk, &key.sk).await?.unwrap_or_default();
                let state = item
                    .get("state")
                    .and_then(|v| v.as_s().ok())
                    .map(String::as_str);
                let until_ms = item
                    .get("lease_until")
                    .and_then(|v| v.as_n().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
                Ok(match state {
                    Some("sent") => ClaimOutcome::AlreadySent,
                    // Gone or expired in between: the caller tries again.
                    _ => ClaimOutcome::Held { until_ms },
                })
            }
            Err(e) => Err(classify_sdk_error(e, self.table())),
        }
    }

    async fn mark_sent(
        &self,
        key: &AlertKey,
        claim_id: &str,
        message_id: &str,
    ) -> Result<bool, StoreError> {
        let out = self
            .client()
            .update_item()
            .table_name(self.table())
            .key("pk", s(&key.pk))
            .key("sk", s(&key.sk))
            .update_expression(
                "SET #st = :sent, message_id = :mid, sent_at = :at REMOVE lease_until",
            )
            .condition_expression("claim_id = :me")
            .expression_attribute_names("#st", "state")
            .expression_attribute_values(":sent", s("sent"))
            .expression_attribute_values(":mid", s(message_id))
            .expression_attribute_values(":at", s(now_rfc3339()))
            .expression_attribute_values(":me", s(claim_id))
            .send()
            .await;
        match out {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(se))
                if se.err().code() == Some("ConditionalCheckFailedException") =>
            {
                Ok(false)
            }
            Err(e) => Err(classify_sdk_error(e, self.table())),
        }
    }

    async fn release(&self, key: &AlertKey, claim_id: &str) -> Result<(), StoreError> {
        let out = self
            .client()
            .update_item()
            .table_name(self.table())
            .key("pk", s(&key.pk))
            .key("sk", s(&key.sk))
            .update_expression("SET lease_until = :zero")
            .condition_expression("claim_id = :me AND #st = :pending")
            .expression_attribute_names("#st", "state")
            .expression_attribute_values(":zero", n("0"))
            .expression_attribute_values(":me", s(claim_id))
            .expression_attribute_values(":pending", s("pending"))
            .send()
            .await;
        match out {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(se))
                if se.err().code() == Some("ConditionalCheckFailedException") =>
            {
                Ok(())
            }
            Err(e) => Err(classify_sdk_error(e, self.table())),
        }
    }

    async fn top_contributors(
        &self,
        alert: &Alert,
        top: usize,
    ) -> Result<Vec<(String, Usd)>, StoreError> {
        let mut totals: BTreeMap<String, Usd> = BTreeMap::new();
        match &alert.scope {
            AlertScope::Org => {
                let month = Month::parse(&alert.period)
                    .ok_or_else(|| permanent(format!("bad month {}", alert.period)))?;
                for row in self.usage.users_in_month(month).await? {
                    if let Some(user) = row.user {
                        totals.insert(user, row.cost);
                    }
                }
            }
            AlertScope::User { .. } | AlertScope::Tag { .. } => {
                // user_model_day (tag_model_day) items of the day, or of
                // every day of the month.
                let (pk, item_kind) = match &alert.scope {
                    AlertScope::Tag { tag, value } => {
                        (meter_store::keys::tag_pk(tag, value), "tag_model_day")
                    }
                    _ => (user_pk(alert.user().unwrap_or_default()), "user_model_day"),
                };
                let (from, to) = match alert.kind {
                    PeriodKind::Day => (
                        format!("D#{}#M#", alert.period),
                        format!("D#{}#M#~", alert.period),
                    ),
                    PeriodKind::Month => (
                        format!("D#{}-01", alert.period),
                        format!("D#{}-31#~", alert.period),
                    ),
                };
                let mut start = None;
                loop {
                    let page = self
                        .client()
                        .query()
                        .table_name(self.table())
                        .key_condition_expression("pk = :pk AND sk BETWEEN :a AND :b")
                        .filter_expression("#k = :umd")
                        .expression_attribute_names("#k", "kind")
                        .expression_attribute_values(":pk", s(pk.clone()))
                        .expression_attribute_values(":a", s(from.clone()))
                        .expression_attribute_values(":b", s(to.clone()))
                        .expression_attribute_values(":umd", s(item_kind))
                        .set_exclusive_start_key(start.take())
                        .send()
                        .await
                        .map_err(|e| classify_sdk_error(e, self.table()))?;
                    for item in page.items() {
                        if let Some(model) = item.get("model").and_then(|v| v.as_s().ok()) {
                            let t = totals.entry(model.clone()).or_default();
                            *t = t.saturating_add(cost_of(item));
                        }
                    }
                    match page.last_evaluated_key() {
                        Some(k) if !k.is_empty() => start = Some(k.clone()),
                        _ => break,
                    }
                }
            }
        }
        let mut list: Vec<(String, Usd)> = totals.into_iter().collect();
        list.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        list.truncate(top);
        Ok(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_markers_expire_after_their_period_ends() {
        let day_end = period_end(PeriodKind::Day, "2026-11-30");
        let month_end = period_end(PeriodKind::Month, "2026-11");
        assert_eq!(day_end, month_end);
        assert_eq!(
            month_end,
            period_end(PeriodKind::Day, "2026-12-01") - 86_400
        );
        assert_eq!(period_end(PeriodKind::Month, "2026-12"), 1_798_761_600); // 2027-01-01
    }
}
