//! The handler: for each stream record in order, find the threshold
//! crossings and deliver each one exactly once; report partial batch
//! failures from the first record that could not be handled.
//!
//! Delivering one crossing (the alert marker is the unit of exactly-once):
//!
//! 1. **claim** the marker: create it as `pending` with a lease, or take over
//!    a `pending` marker whose lease expired (its claimer died). A `sent`
//!    marker means "already published": done. A `pending` marker with a live
//!    lease belongs to a running claimer: wait for the lease (bounded by the
//!    invocation's deadline) and look again.
//! 2. **publish** to SNS (FIFO topics also get the marker's stable
//!    deduplication id).
//! 3. **mark sent**, conditional on still holding the claim. If publishing
//!    failed, release the claim instead and fail the record.
//!
//! The organisation's month total is kept in an `org_month` item that the
//! handler maintains itself: each `user_month` change adds `new - old`, once
//! per stream record (a delta marker per record, written in the same
//! transaction as the addition). Its thresholds are checked against the
//! total after the batch's deltas are applied.
//!
//! A tag value's daily budget is checked on its `tag_model_day` changes:
//! each holds one model's share, so the value's day total is read with one
//! strongly consistent Query (`pk = T#<tag>#<value> AND begins_with(sk,
//! D#<day>#M#)`), once per (tag, value, day) per batch and only when that
//! value has a daily limit; every threshold the total has reached is an
//! alert (once each, by its marker). Ingest writes nothing more for it.

use std::collections::HashSet;
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::dynamodb::Event;
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use meter_core::Usd;
use meter_store::budgets::Budgets;
use meter_store::StoreError;
use serde_json::json;

use crate::alert::{
    has_tag_daily_limit, org_reached, tag_day_reached, user_crossings, Alert, AlertKey,
};
use crate::change::{self, Change, PeriodKind};

/// What a claim attempt found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// The marker is ours until the lease ends; `dedup_id` is the marker's
    /// stable deduplication id (the same for every claimer).
    Claimed { dedup_id: String },
    /// Already published.
    AlreadySent,
    /// Another claimer holds it until this time (epoch milliseconds).
    Held { until_ms: u64 },
}

/// One `user_month` change's contribution to the organisation's month.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgDelta {
    pub event_id: String,
    pub month: String,
    pub delta: Usd,
}

/// Applying org deltas stopped at `applied` (deltas before it are stored).
#[derive(Debug, thiserror::Error)]
#[error("organisation total not updated from delta {applied} on: {source}")]
pub struct OrgDeltaError {
    pub applied: usize,
    #[source]
    pub source: StoreError,
}

/// What the handler needs from the usage table.
pub trait AlertStore: Send + Sync {
    /// Every budget (one Query).
    fn budgets(&self) -> impl Future<Output = Result<Budgets, StoreError>> + Send;
    /// Adds each delta to its month's organisation total, once per
    /// `event_id` whatever the retries.
    fn apply_org_deltas(
        &self,
        deltas: &[OrgDelta],
    ) -> impl Future<Output = Result<(), OrgDeltaError>> + Send;
    /// The organisation's month total (strongly consistent).
    fn org_month_spend(&self, month: &str) -> impl Future<Output = Result<Usd, StoreError>> + Send;
    /// One tag value's spend on one day (`YYYY-MM-DD`): the sum of its
    /// `tag_model_day` items, one strongly consistent Query.
    fn tag_day_spend(
        &self,
        tag: &str,
        value: &str,
        day: &str,
    ) -> impl Future<Output = Result<Usd, StoreError>> + Send;
    /// Creates or takes over the alert marker of `alert`.
    fn claim(
        &self,
        alert: &Alert,
        claim_id: &str,
        now_ms: u64,
        lease: Duration,
    ) -> impl Future<Output = Result<ClaimOutcome, StoreError>> + Send;
    /// Marks the marker sent if `claim_id` still holds it; false if not.
    fn mark_sent(
        &self,
        key: &AlertKey,
        claim_id: &str,
        message_id: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Gives up a claim so the next attempt need not wait for the lease.
    fn release(
        &self,
        key: &AlertKey,
        claim_id: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The biggest contributors to an alert: models of a user's day or
    /// month, or users of the organisation's month; biggest first.
    fn top_contributors(
        &self,
        alert: &Alert,
        n: usize,
    ) -> impl Future<Output = Result<Vec<(String, Usd)>, StoreError>> + Send;
}

/// A publish failure (the SDK's error, described).
#[derive(Debug, thiserror::Error)]
#[error("SNS publish failed: {0}")]
pub struct PublishError(pub String);

/// What the handler needs from SNS.
pub trait Notifier: Send + Sync {
    /// Publishes one alert; returns the SNS message id.
    fn publish(
        &self,
        alert: &Alert,
        dedup_id: &str,
    ) -> impl Future<Output = Result<String, PublishError>> + Send;
}

/// Settings (from the environment in `main`).
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a claim is held before another invocation may take it over.
    /// Longer than a publish can take; `ALERT_CLAIM_LEASE_SECONDS`, default 30.
    pub lease: Duration,
    /// Contributors named in a message.
    pub top_n: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            lease: Duration::from_secs(30),
            top_n: 5,
        }
    }
}

/// Everything built once at init.
pub struct State<S, N> {
    pub store: S,
    pub notifier: N,
    pub settings: Settings,
}

/// Counts for the summary line and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub records: usize,
    pub changes: usize,
    pub skipped: usize,
    pub crossings: usize,
    pub sent: usize,
    /// Crossings whose marker was already `sent` (a redelivery).
    pub already_sent: usize,
    pub failed_records: usize,
}

/// Why a record failed (it is reported in `batchItemFailures`).
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error(transparent)]
    OrgDeltas(#[from] OrgDeltaError),
    #[error("alert {pk} {sk} is claimed by another invocation until {until_ms} ms, past this invocation's deadline; it will be retried")]
    Held {
        pk: String,
        sk: String,
        until_ms: u64,
    },
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

enum Delivered {
    Sent,
    AlreadySent,
}

/// Delivers one alert exactly once (see the module docs).
async fn deliver<S: AlertStore, N: Notifier>(
    state: &State<S, N>,
    alert: &Alert,
    claim_id: &str,
    deadline_ms: u64,
) -> Result<Delivered, RecordError> {
    let key = alert.key();
    loop {
        let now = now_ms();
        match state
            .store
            .claim(alert, claim_id, now, state.settings.lease)
            .await?
        {
            ClaimOutcome::AlreadySent => return Ok(Delivered::AlreadySent),
            ClaimOutcome::Held { until_ms } => {
                // Wait for the holder to finish or its lease to run out, if
                // this invocation has the time; else fail and be retried.
                if until_ms.saturating_add(5_000) > deadline_ms {
                    return Err(RecordError::Held {
                        pk: key.pk,
                        sk: key.sk,
                        until_ms,
                    });
                }
                let wait = until_ms.saturating_sub(now).clamp(50, 1_000);
                tokio::time::sleep(Duration::from_millis(wait)).await;
            }
            ClaimOutcome::Claimed { dedup_id } => {
                let message_id = match state.notifier.publish(alert, &dedup_id).await {
                    Ok(id) => id,
                    Err(e) => {
                        if let Err(re) = state.store.release(&key, claim_id).await {
                            tracing::warn!(pk = %key.pk, sk = %key.sk, error = %re, "could not release a claim; it expires with its lease");
                        }
                        return Err(e.into());
                    }
                };
                // Published: recording it is what prevents a duplicate, so
                // try a few times before giving up.
                let mut attempt = 0;
                loop {
                    match state.store.mark_sent(&key, claim_id, &message_id).await {
                        Ok(true) => break,
                        Ok(false) => {
                            tracing::error!(pk = %key.pk, sk = %key.sk, message_id, "published after the claim's lease ran out: another invocation may publish this alert again; raise ALERT_CLAIM_LEASE_SECONDS");
                            break;
                        }
                        Err(e) if attempt < 4 => {
                            attempt += 1;
                            tracing::warn!(pk = %key.pk, error = %e, attempt, "marking an alert sent failed; retrying");
                            tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                        }
                        Err(e) => {
                            tracing::error!(pk = %key.pk, sk = %key.sk, message_id, error = %e, "published but could not mark the alert sent: a retry will publish it again after the lease");
                            return Err(e.into());
                        }
                    }
                }
                return Ok(Delivered::Sent);
            }
        }
    }
}

/// Delivers alerts in order, filling in their top contributors first.
async fn deliver_all<S: AlertStore, N: Notifier>(
    state: &State<S, N>,
    mut alerts: Vec<Alert>,
    claim_prefix: &str,
    deadline_ms: u64,
    summary: &mut Summary,
) -> Result<(), RecordError> {
    if alerts.is_empty() {
        return Ok(());
    }
    let top = state
        .store
        .top_contributors(&alerts[0], state.settings.top_n)
        .await?;
    for (i, alert) in alerts.iter_mut().enumerate() {
        alert.top = top.clone();
        summary.crossings += 1;
        match deliver(state, alert, &format!("{claim_prefix}/{i}"), deadline_ms).await? {
            Delivered::Sent => {
                summary.sent += 1;
                tracing::info!(pk = %alert.key().pk, sk = %alert.key().sk, user = alert.user(), period = %alert.period, threshold = alert.threshold, spend = %alert.spend, limit = %alert.limit, "budget alert published");
            }
            Delivered::AlreadySent => summary.already_sent += 1,
        }
    }
    Ok(())
}

/// Handles one batch of stream records. `invocation_id` makes claim ids
/// unique; `deadline_ms` (epoch ms) bounds waits for other claimers.
pub async fn handle<S: AlertStore, N: Notifier>(
    state: &State<S, N>,
    event: &Event,
    invocation_id: &str,
    deadline_ms: u64,
) -> (DynamoDbEventResponse, Summary) {
    let records = &event.records;
    let mut summary = Summary {
        records: records.len(),
        ..Default::default()
    };
    let changes: Vec<Option<Change>> = records
        .iter()
        .map(|r| match change::parse(r) {
            Ok(c) => Some(c),
            Err(reason) => {
                tracing::warn!(event_id = %r.event_id, %reason, "stream record skipped");
                None
            }
        })
        .collect();
    summary.changes = changes.iter().flatten().count();
    summary.skipped = records.len() - summary.changes;

    let mut failed_at: Option<(usize, RecordError)> = None;
    let budgets = match state.store.budgets().await {
        Ok(b) => b,
        Err(e) => {
            failed_at = Some((0, e.into()));
            Budgets::default()
        }
    };

    // The organisation's month totals, before any alert: each user_month
    // change adds its growth, once per stream record.
    if failed_at.is_none() {
        let deltas: Vec<(usize, OrgDelta)> = changes
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let c = c.as_ref()?;
                let delta = Usd::from_picos(c.new.picos().checked_sub(c.old.picos())?);
                // Tag changes are another view of the same spend: not added.
                (c.kind == PeriodKind::Month && c.tag.is_none() && delta > Usd::ZERO).then(|| {
                    (
                        i,
                        OrgDelta {
                            event_id: c.event_id.clone(),
                            month: c.period.clone(),
                            delta,
                        },
                    )
                })
            })
            .collect();
        let plain: Vec<OrgDelta> = deltas.iter().map(|(_, d)| d.clone()).collect();
        if let Err(e) = state.store.apply_org_deltas(&plain).await {
            failed_at = Some((deltas[e.applied].0, e.into()));
        }
    }

    let stop = failed_at.as_ref().map_or(records.len(), |(i, _)| *i);
    let mut org_checked: HashSet<String> = HashSet::new();
    let mut tag_days_checked: HashSet<(String, String, String)> = HashSet::new();
    for (i, c) in changes.iter().enumerate().take(stop) {
        let Some(c) = c else { continue };
        let claim_prefix = format!("{invocation_id}/{i}");
        let mut result = deliver_all(
            state,
            user_crossings(c, &budgets),
            &claim_prefix,
            deadline_ms,
            &mut summary,
        )
        .await;
        if result.is_ok()
            && c.kind == PeriodKind::Month
            && c.tag.is_none()
            && budgets.org.is_some()
            && !org_checked.contains(&c.period)
        {
            result = async {
                let spend = state.store.org_month_spend(&c.period).await?;
                deliver_all(
                    state,
                    org_reached(&c.period, spend, &budgets),
                    &format!("{claim_prefix}/org"),
                    deadline_ms,
                    &mut summary,
                )
                .await
            }
            .await;
            if result.is_ok() {
                org_checked.insert(c.period.clone());
            }
        }
        if let (Some((tag, value)), PeriodKind::Day) = (&c.tag, c.kind) {
            // A tag_model_day change that grew the spend, of a value with a
            // daily limit, not yet checked in this batch (the total read
            // already includes every write before this record's).
            let key = (tag.clone(), value.clone(), c.period.clone());
            if result.is_ok()
                && c.new > c.old
                && has_tag_daily_limit(tag, value, &budgets)
                && !tag_days_checked.contains(&key)
            {
                result = async {
                    let spend = state.store.tag_day_spend(tag, value, &c.period).await?;
                    deliver_all(
                        state,
                        tag_day_reached(tag, value, &c.period, spend, &budgets),
                        &format!("{claim_prefix}/tagday"),
                        deadline_ms,
                        &mut summary,
                    )
                    .await
                }
                .await;
                if result.is_ok() {
                    tag_days_checked.insert(key);
                }
            }
        }
        if let Err(e) = result {
            failed_at = Some((i, e));
            break;
        }
    }

    let mut failures = Vec::new();
    if let Some((first, error)) = &failed_at {
        tracing::error!(
            event_id = %records[*first].event_id,
            sequence_number = records[*first].change.sequence_number.as_deref().unwrap_or(""),
            %error,
            "record failed; it and the records after it are reported as batch item failures and will be retried"
        );
        failures = records[*first..]
            .iter()
            .map(|r| {
                let mut f = DynamoDbBatchItemFailure::default();
                f.item_identifier = r.change.sequence_number.clone();
                f
            })
            .collect();
        summary.failed_records = failures.len();
    }
    tracing::info!(
        invocation_id,
        records = summary.records,
        changes = summary.changes,
        skipped = summary.skipped,
        crossings = summary.crossings,
        sent = summary.sent,
        already_sent = summary.already_sent,
        failed_records = summary.failed_records,
        "batch handled"
    );
    let mut response = DynamoDbEventResponse::default();
    response.batch_item_failures = failures;
    (response, summary)
}

/// The CloudWatch embedded-metric line of one invocation.
pub fn emf_line(summary: &Summary, function_name: &str, timestamp_ms: u64) -> String {
    let metrics = [
        ("Records", summary.records),
        ("Skipped", summary.skipped),
        ("Crossings", summary.crossings),
        ("AlertsSent", summary.sent),
        ("AlertsAlreadySent", summary.already_sent),
        ("FailedRecords", summary.failed_records),
    ];
    let mut doc = serde_json::Map::new();
    doc.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": "BedrockMeter",
                "Dimensions": [["FunctionName"]],
                "Metrics": metrics.iter().map(|(n, _)| json!({"Name": n, "Unit": "Count"})).collect::<Vec<_>>(),
            }],
        }),
    );
    doc.insert("FunctionName".into(), json!(function_name));
    for (name, value) in metrics {
        doc.insert(name.into(), json!(value));
    }
    serde_json::Value::Object(doc).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Mutex;

    use meter_store::budgets::{Budget, BudgetScope, Thresholds};

    #[derive(Default)]
    struct Fake {
        budgets: Budgets,
        markers: Mutex<HashMap<AlertKey, (String, bool, u64, String)>>,
        org: Mutex<HashMap<String, Usd>>,
        /// (tag, value, day) -> spend, and the reads of it.
        tag_days: Mutex<HashMap<(String, String, String), Usd>>,
        tag_day_reads: Mutex<usize>,
        applied: Mutex<HashSet<String>>,
        published: Mutex<Vec<(Alert, String)>>,
        fail_publishes: Mutex<usize>,
    }

    impl AlertStore for Fake {
        async fn budgets(&self) -> Result<Budgets, StoreError> {
            Ok(self.budgets.clone())
        }
        async fn apply_org_deltas(&self, deltas: &[OrgDelta]) -> Result<(), OrgDeltaError> {
            let mut applied = self.applied.lock().unwrap();
            let mut org = self.org.lock().unwrap();
            for d in deltas {
                if applied.insert(d.event_id.clone()) {
                    let t = org.entry(d.month.clone()).or_default();
                    *t = t.saturating_add(d.delta);
                }
            }
            Ok(())
        }
        async fn org_month_spend(&self, month: &str) -> Result<Usd, StoreError> {
            Ok(self
                .org
                .lock()
                .unwrap()
                .get(month)
                .copied()
                .unwrap_or_default())
        }
        async fn tag_day_spend(
            &self,
            tag: &str,
            value: &str,
            day: &str,
        ) -> Result<Usd, StoreError> {
            *self.tag_day_reads.lock().unwrap() += 1;
            Ok(self
                .tag_days
                .lock()
                .unwrap()
                .get(&(tag.to_string(), value.to_string(), day.to_string()))
                .copied()
                .unwrap_or_default())
        }
        async fn claim(
            &self,
            alert: &Alert,
            claim_id: &str,
            now_ms: u64,
            lease: Duration,
        ) -> Result<ClaimOutcome, StoreError> {
            let mut m = self.markers.lock().unwrap();
            let until = now_ms + lease.as_millis() as u64;
            match m.get_mut(&alert.key()) {
                None => {
                    m.insert(
                        alert.key(),
                        (claim_id.into(), false, until, claim_id.into()),
                    );
                    Ok(ClaimOutcome::Claimed {
                        dedup_id: claim_id.into(),
                    })
                }
                Some((_, true, _, _)) => Ok(ClaimOutcome::AlreadySent),
                Some((_, false, lease_until, _)) if *lease_until > now_ms => {
                    Ok(ClaimOutcome::Held {
                        until_ms: *lease_until,
                    })
                }
                Some(entry) => {
                    entry.0 = claim_id.into();
                    entry.2 = until;
                    Ok(ClaimOutcome::Claimed {
                        dedup_id: entry.3.clone(),
                    })
                }
            }
        }
        async fn mark_sent(
            &self,
            key: &AlertKey,
            claim_id: &str,
            _: &str,
        ) -> Result<bool, StoreError> {
            let mut m = self.markers.lock().unwrap();
            match m.get_mut(key) {
                Some(e) if e.0 == claim_id => {
                    e.1 = true;
                    Ok(true)
                }
                _ => Ok(false),
            }
        }
        async fn release(&self, key: &AlertKey, claim_id: &str) -> Result<(), StoreError> {
            if let Some(e) = self.markers.lock().unwrap().get_mut(key) {
                if e.0 == claim_id && !e.1 {
                    e.2 = 0;
                }
            }
            Ok(())
        }
        async fn top_contributors(
            &self,
            _: &Alert,
            _: usize,
        ) -> Result<Vec<(String, Usd)>, StoreError> {
            Ok(vec![("amazon.nova-pro-v1:0".into(), Usd::from_picos(1))])
        }
    }

    impl Notifier for Fake {
        async fn publish(&self, alert: &Alert, dedup_id: &str) -> Result<String, PublishError> {
            let mut fail = self.fail_publishes.lock().unwrap();
            if *fail > 0 {
                *fail -= 1;
                return Err(PublishError("InternalError".into()));
            }
            let mut p = self.published.lock().unwrap();
            p.push((alert.clone(), dedup_id.into()));
            Ok(format!("m{}", p.len()))
        }
    }

    struct Both(Fake);
    impl AlertStore for &Both {
        fn budgets(&self) -> impl Future<Output = Result<Budgets, StoreError>> + Send {
            self.0.budgets()
        }
        fn apply_org_deltas(
            &self,
            d: &[OrgDelta],
        ) -> impl Future<Output = Result<(), OrgDeltaError>> + Send {
            self.0.apply_org_deltas(d)
        }
        fn org_month_spend(&self, m: &str) -> impl Future<Output = Result<Usd, StoreError>> + Send {
            self.0.org_month_spend(m)
        }
        fn tag_day_spend(
            &self,
            t: &str,
            v: &str,
            d: &str,
        ) -> impl Future<Output = Result<Usd, StoreError>> + Send {
            self.0.tag_day_spend(t, v, d)
        }
        fn claim(
            &self,
            a: &Alert,
            c: &str,
            n: u64,
            l: Duration,
        ) -> impl Future<Output = Result<ClaimOutcome, StoreError>> + Send {
            self.0.claim(a, c, n, l)
        }
        fn mark_sent(
            &self,
            k: &AlertKey,
            c: &str,
            m: &str,
        ) -> impl Future<Output = Result<bool, StoreError>> + Send {
            self.0.mark_sent(k, c, m)
        }
        fn release(
            &self,
            k: &AlertKey,
            c: &str,
        ) -> impl Future<Output = Result<(), StoreError>> + Send {
            self.0.release(k, c)
        }
        fn top_contributors(
            &self,
            a: &Alert,
            n: usize,
        ) -> impl Future<Output = Result<Vec<(String, Usd)>, StoreError>> + Send {
            self.0.top_contributors(a, n)
        }
    }
    impl Notifier for &Both {
        fn publish(
            &self,
            a: &Alert,
            d: &str,
        ) -> impl Future<Output = Result<String, PublishError>> + Send {
            self.0.publish(a, d)
        }
    }

    fn usd(s: &str) -> Usd {
        s.parse().unwrap()
    }

    fn fake() -> Both {
        Both(Fake {
            budgets: Budgets::from_list(vec![
                Budget {
                    scope: BudgetScope::Default,
                    daily: Some(usd("5")),
                    monthly: Some(usd("100")),
                    thresholds: Thresholds::default(),
                    updated_at: None,
                },
                Budget {
                    scope: BudgetScope::Org,
                    daily: None,
                    monthly: Some(usd("10")),
                    thresholds: Thresholds::parse("100").unwrap(),
                    updated_at: None,
                },
            ]),
            ..Default::default()
        })
    }

    fn record(
        seq: u64,
        kind: &str,
        user: &str,
        period: &str,
        old: Option<&str>,
        new: &str,
    ) -> serde_json::Value {
        let period_attr = if kind == "user_day" { "day" } else { "month" };
        let image = |cost: &str| json!({"kind": {"S": kind}, "user": {"S": user}, period_attr: {"S": period}, "cost_usd": {"N": cost}});
        json!({"eventID": format!("ev{seq}"), "eventName": "MODIFY", "awsRegion": "us-east-1",
            "dynamodb": {"Keys": {}, "NewImage": image(new), "OldImage": old.map(image).unwrap_or(json!({})),
                "SequenceNumber": seq.to_string(), "SizeBytes": 1}})
    }

    fn batch(records: Vec<serde_json::Value>) -> Event {
        serde_json::from_value(json!({ "Records": records })).unwrap()
    }

    fn state(b: &Both) -> State<&Both, &Both> {
        State {
            store: b,
            notifier: b,
            settings: Settings {
                lease: Duration::from_millis(200),
                top_n: 3,
            },
        }
    }

    fn far() -> u64 {
        now_ms() + 60_000
    }

    fn tag_model_day(
        seq: u64,
        value: &str,
        model: &str,
        old: Option<&str>,
        new: &str,
    ) -> serde_json::Value {
        let image = |cost: &str| {
            json!({"kind": {"S": "tag_model_day"}, "tag": {"S": "team"}, "value": {"S": value},
            "model": {"S": model}, "day": {"S": "2026-11-20"}, "cost_usd": {"N": cost}})
        };
        json!({"eventID": format!("ev{seq}"), "eventName": "MODIFY", "awsRegion": "us-east-1",
            "dynamodb": {"Keys": {}, "NewImage": image(new), "OldImage": old.map(image).unwrap_or(json!({})),
                "SequenceNumber": seq.to_string(), "SizeBytes": 1}})
    }

    #[tokio::test]
    async fn a_tag_values_day_total_is_read_once_per_batch_and_each_threshold_alerts_once() {
        let mut f = fake().0;
        f.budgets.tags.insert(
            ("team".into(), "pay".into()),
            Budget {
                scope: BudgetScope::Tag {
                    tag: "team".into(),
                    value: "pay".into(),
                },
                daily: Some(usd("2")),
                monthly: None,
                thresholds: Thresholds::default(),
                updated_at: None,
            },
        );
        // Two models of the value, 0.9 + 0.8 = 1.7 of 2 USD: 50% and 80%
        // reached, though neither model's item crossed anything alone.
        f.tag_days.lock().unwrap().insert(
            ("team".into(), "pay".into(), "2026-11-20".into()),
            usd("1.7"),
        );
        let b = Both(f);
        let s = state(&b);
        let e = batch(vec![
            tag_model_day(1, "pay", "m1", None, "0.9"),
            tag_model_day(2, "pay", "m2", None, "0.8"),
            // No daily budget for this value: no read.
            tag_model_day(3, "other", "m1", None, "5"),
        ]);
        let (r1, s1) = handle(&s, &e, "inv1", far()).await;
        assert!(r1.batch_item_failures.is_empty());
        assert_eq!(*b.0.tag_day_reads.lock().unwrap(), 1);
        assert_eq!(s1.sent, 2);
        {
            let p = b.0.published.lock().unwrap();
            assert_eq!(
                p.iter()
                    .map(|(a, _)| (a.threshold, a.spend, a.period.clone()))
                    .collect::<Vec<_>>(),
                vec![
                    (50, usd("1.7"), "2026-11-20".to_string()),
                    (80, usd("1.7"), "2026-11-20".to_string())
                ]
            );
        }
        // Redelivered: nothing new.
        let (_, s2) = handle(&s, &e, "inv2", far()).await;
        assert_eq!((s2.sent, s2.already_sent), (0, 2));
        assert_eq!(b.0.published.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_redelivered_batch_publishes_each_crossing_once() {
        let b = fake();
        let s = state(&b);
        let e = batch(vec![record(
            1,
            "user_day",
            "bob",
            "2026-11-01",
            Some("2"),
            "4.5",
        )]);
        let (r1, s1) = handle(&s, &e, "inv1", far()).await;
        let (r2, s2) = handle(&s, &e, "inv2", far()).await;
        assert!(r1.batch_item_failures.is_empty() && r2.batch_item_failures.is_empty());
        assert_eq!((s1.sent, s2.sent, s2.already_sent), (2, 0, 2));
        let p = b.0.published.lock().unwrap();
        assert_eq!(
            p.iter().map(|(a, _)| a.threshold).collect::<Vec<_>>(),
            vec![50, 80]
        );
    }

    #[tokio::test]
    async fn a_failed_publish_fails_that_record_and_the_rest_then_the_retry_sends_once() {
        let b = fake();
        *b.0.fail_publishes.lock().unwrap() = 1;
        let s = state(&b);
        let e = batch(vec![
            record(1, "user_day", "ann", "2026-11-01", None, "1"),
            record(2, "user_day", "bob", "2026-11-01", None, "6"),
            record(3, "user_day", "cat", "2026-11-01", None, "6"),
        ]);
        let (r, _) = handle(&s, &e, "inv1", far()).await;
        let ids: Vec<_> = r
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone().unwrap())
            .collect();
        assert_eq!(ids, ["2", "3"]);
        // Lambda retries from the first failure; the released claim is taken at once.
        let retry = batch(
            e.records[1..]
                .iter()
                .map(|r| serde_json::to_value(r).unwrap())
                .collect(),
        );
        let (r, sum) = handle(&s, &retry, "inv2", far()).await;
        assert!(r.batch_item_failures.is_empty());
        assert_eq!(sum.sent, 6);
        assert_eq!(b.0.published.lock().unwrap().len(), 6);
    }

    #[tokio::test]
    async fn a_claim_left_by_a_crashed_invocation_is_taken_over_after_its_lease_with_the_same_dedup_id(
    ) {
        let b = fake();
        let s = state(&b);
        let e = batch(vec![record(
            1,
            "user_month",
            "bob",
            "2026-11",
            Some("40"),
            "60",
        )]);
        let alert = user_crossings(&change::parse(&e.records[0]).unwrap(), &b.0.budgets).remove(0);
        // The crashed invocation claimed, then died before publishing.
        let ClaimOutcome::Claimed { dedup_id } = (&b)
            .claim(&alert, "dead", now_ms(), Duration::from_millis(300))
            .await
            .unwrap()
        else {
            panic!()
        };
        let (r, sum) = handle(&s, &e, "inv2", far()).await;
        assert!(r.batch_item_failures.is_empty());
        // bob's 50% (taken over) and the organisation's 100% (20 of 10 USD).
        assert_eq!(sum.sent, 2);
        let p = b.0.published.lock().unwrap();
        let bob: Vec<_> = p.iter().filter(|(a, _)| a.key() == alert.key()).collect();
        assert_eq!(bob.len(), 1);
        assert_eq!(bob[0].1, dedup_id);
    }

    #[tokio::test]
    async fn a_claim_held_past_the_deadline_fails_the_record_instead_of_waiting() {
        let b = fake();
        let s = state(&b);
        let e = batch(vec![record(7, "user_day", "bob", "2026-11-01", None, "3")]);
        let alert = user_crossings(&change::parse(&e.records[0]).unwrap(), &b.0.budgets).remove(0);
        (&b).claim(&alert, "other", now_ms(), Duration::from_secs(600))
            .await
            .unwrap();
        let (r, _) = handle(&s, &e, "inv", now_ms() + 1_000).await;
        assert_eq!(
            r.batch_item_failures[0].item_identifier.as_deref(),
            Some("7")
        );
        assert!(b.0.published.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn the_organisation_alerts_once_when_users_together_reach_its_limit() {
        let b = fake();
        let s = state(&b);
        let e1 = batch(vec![
            record(1, "user_month", "ann", "2026-11", None, "4"),
            record(2, "user_month", "bob", "2026-11", None, "4"),
        ]);
        let e2 = batch(vec![record(
            3,
            "user_month",
            "ann",
            "2026-11",
            Some("4"),
            "6",
        )]);
        handle(&s, &e1, "a", far()).await;
        assert!(b.0.published.lock().unwrap().is_empty());
        handle(&s, &e2, "b", far()).await;
        handle(&s, &e2, "c", far()).await;
        handle(&s, &e1, "d", far()).await;
        let p = b.0.published.lock().unwrap();
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].0.key().pk, "ALERT#ORG#MONTH#2026-11");
        assert_eq!(p[0].0.spend, usd("10"));
    }

    #[test]
    fn the_emf_line_declares_every_metric_it_carries() {
        let line = emf_line(
            &Summary {
                sent: 2,
                ..Default::default()
            },
            "f",
            1,
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        for m in v["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
        {
            assert!(v[m["Name"].as_str().unwrap()].is_number());
        }
        assert_eq!(v["AlertsSent"], 2);
    }
}
