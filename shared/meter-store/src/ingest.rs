//! Exactly-once commit of a metered batch: the one ingest path that the
//! Lambda, the CLI's `replay` and the tests all call.
//!
//! Each record's marker is placed first (see [`crate::markers`]: a bucket
//! shared with other records, or for records before the switch-over an item
//! of its own); then for each group (see [`split_into_groups`]): build the
//! transaction, send it.
//! - committed: its records are counted;
//! - a marker's condition failed: the store says which bucket, as read after
//!   the failure. Records whose id is in it were counted before (redelivery,
//!   overlap, a replay) and are dropped; a bucket found full is remembered
//!   and its records move to the next level; the rest is re-planned and sent
//!   again at once;
//! - `TransactionConflict`, throttling, 5xx, timeouts: jittered exponential
//!   backoff, bounded; when attempts run out the batch fails so that it is
//!   delivered again, and the groups that did commit are skipped next time by
//!   their markers.

use std::collections::BTreeMap;
use std::time::Duration;

use meter_core::{DecodeError, Meter, MeteredBatch, MeteredRecord, SkippedRecord};
use serde::Serialize;
use time::OffsetDateTime;

use crate::markers::{FullBuckets, MarkerScheme, Placement};
use crate::plan::{build_transaction, split_into_groups, TxItem};
use crate::store::{CancelReason, StoreError, UsageStore};

/// Default lifetime of an idempotency marker: 35 days, beyond every
/// redelivery window (Lambda 6 h, CloudWatch Logs 24 h) with room for
/// replaying a month of on-failure records.
pub const DEFAULT_MARKER_TTL_DAYS: u32 = 35;

/// How commits retry.
#[derive(Debug, Clone)]
pub struct CommitSettings {
    pub marker_ttl_secs: i64,
    /// Attempts per transaction for retryable failures.
    pub max_attempts: u32,
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// The marker scheme (levels, cap). `buckets_since` is overridden by
    /// what the store says ([`UsageStore::buckets_since`]).
    pub markers: MarkerScheme,
    /// Keep one request-cost item per counted record (`REQUEST_COSTS`).
    pub request_costs: bool,
}

impl Default for CommitSettings {
    fn default() -> Self {
        CommitSettings {
            marker_ttl_secs: i64::from(DEFAULT_MARKER_TTL_DAYS) * 86_400,
            max_attempts: 10,
            base_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_secs(2),
            markers: MarkerScheme::default(),
            request_costs: false,
        }
    }
}

/// What one batch did. Serialised as the Lambda's summary log line.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct IngestReport {
    /// Log events in the payload.
    pub records: usize,
    /// Records counted now.
    pub counted: usize,
    /// Records already counted (earlier delivery, or twice in this payload).
    pub duplicates: usize,
    /// Records skipped as malformed.
    pub skipped: usize,
    pub skipped_by_reason: BTreeMap<&'static str, usize>,
    /// Counted records with tokens that could not be priced.
    pub unpriced: usize,
    pub unpriced_by_reason: BTreeMap<&'static str, usize>,
    /// Transactions committed.
    pub transactions: usize,
    /// Items written by committed transactions (markers plus aggregates).
    pub items_written: usize,
    /// Write capacity units consumed (from `ConsumedCapacity`): the
    /// transactions' and the request-cost items'.
    pub write_units: f64,
    /// Transactions re-sent after a conflict, throttle or transient error.
    pub retries: usize,
    /// Transactions re-planned at once after a marker bucket's condition
    /// failed (records found counted, or a bucket found full).
    pub replans: usize,
    /// Marker buckets read after this process filled them (strongly
    /// consistent reads of items under 1 KB: one read unit each).
    pub bucket_reads: usize,
    /// Request-cost items written (`REQUEST_COSTS=on`; plain writes, one
    /// unit each under 1 KB).
    pub request_cost_items: usize,
    /// True for a CloudWatch Logs control message (nothing to count).
    pub control_message: bool,
}

impl IngestReport {
    /// Write units per counted record (0 when nothing was counted).
    pub fn write_units_per_record(&self) -> f64 {
        if self.counted == 0 {
            0.0
        } else {
            self.write_units / self.counted as f64
        }
    }

    /// Adds another report (for multi-file replays).
    pub fn merge(&mut self, o: &IngestReport) {
        self.records += o.records;
        self.counted += o.counted;
        self.duplicates += o.duplicates;
        self.skipped += o.skipped;
        for (k, v) in &o.skipped_by_reason {
            *self.skipped_by_reason.entry(k).or_default() += v;
        }
        self.unpriced += o.unpriced;
        for (k, v) in &o.unpriced_by_reason {
            *self.unpriced_by_reason.entry(k).or_default() += v;
        }
        self.transactions += o.transactions;
        self.items_written += o.items_written;
        self.write_units += o.write_units;
        self.retries += o.retries;
        self.replans += o.replans;
        self.request_cost_items += o.request_cost_items;
        self.bucket_reads += o.bucket_reads;
    }
}

/// A batch that could not be stored. Nothing of the failed group was
/// counted; deliver the batch again.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("gave up after {attempts} attempts; deliver the batch again (already-committed records will be skipped): {source}")]
    RetriesExhausted {
        attempts: u32,
        #[source]
        source: StoreError,
    },
    #[error("{0}")]
    Store(#[source] StoreError),
}

impl IngestError {
    /// Whether delivering the same batch again can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            IngestError::RetriesExhausted { .. } => true,
            IngestError::Store(e) => matches!(e, StoreError::Retryable { .. }),
        }
    }
}

/// A payload that could not be ingested.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("cannot decode the payload; nothing in it was counted (keep it and replay it once fixed): {0}")]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
}

impl PayloadError {
    /// Whether delivering the same payload again can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            PayloadError::Decode(_) => false,
            PayloadError::Ingest(e) => e.is_retryable(),
        }
    }
}

/// The outcome of one ingested payload.
#[derive(Debug, Clone)]
pub struct Ingested {
    pub report: IngestReport,
    /// Malformed records, with where to find them and why.
    pub skipped: Vec<SkippedRecord>,
}

/// Meters one payload of any accepted shape and commits it exactly once:
/// the whole ingest path, shared by the Lambda and `bedrock-meter replay`.
pub async fn ingest_payload<S: UsageStore>(
    store: &S,
    meter: &Meter,
    settings: &CommitSettings,
    payload: &[u8],
    now: OffsetDateTime,
) -> Result<Ingested, PayloadError> {
    let batch = meter.meter_payload(payload)?;
    let report = commit_batch(store, &batch, settings, now).await?;
    Ok(Ingested {
        report,
        skipped: batch.skipped,
    })
}

/// The report of a batch before committing: counts of the metering step.
pub fn report_of_batch(batch: &MeteredBatch) -> IngestReport {
    let mut report = IngestReport {
        records: batch.events,
        duplicates: batch.duplicates_in_batch,
        skipped: batch.skipped.len(),
        control_message: batch.kind == meter_core::BatchKind::Control,
        ..Default::default()
    };
    for s in &batch.skipped {
        *report
            .skipped_by_reason
            .entry(s.error.reason_label())
            .or_default() += 1;
    }
    report
}

/// Commits a metered batch exactly once. See the module docs.
pub async fn commit_batch<S: UsageStore>(
    store: &S,
    batch: &MeteredBatch,
    settings: &CommitSettings,
    now: OffsetDateTime,
) -> Result<IngestReport, IngestError> {
    let mut report = report_of_batch(batch);
    if batch.records.is_empty() {
        return Ok(report);
    }
    let scheme = MarkerScheme {
        buckets_since: store
            .buckets_since(now.unix_timestamp())
            .await
            .map_err(IngestError::Store)?,
        ..settings.markers.clone()
    };
    let local = std::sync::Mutex::new(FullBuckets::default());
    let full = store.full_buckets().unwrap_or(&local);
    let ctx = Ctx {
        scheme: &scheme,
        full,
        settings,
        now: now.unix_timestamp(),
        max_replans: MAX_REPLANS + 4 * batch.records.len(),
    };
    lock(full).prune(ctx.now);
    let refs: Vec<&MeteredRecord> = batch.records.iter().collect();
    let placements = ctx.place(&refs);
    let mut pending: Vec<&MeteredRecord> = Vec::with_capacity(refs.len());
    let mut pending_places = Vec::with_capacity(refs.len());
    for (r, p) in refs.iter().zip(placements) {
        if p == Placement::AlreadyMarked {
            report.duplicates += 1;
        } else {
            pending.push(*r);
            pending_places.push(p);
        }
    }
    if settings.request_costs && !pending.is_empty() {
        // Written before the transactions: idempotent puts of facts about
        // each record (a redelivery rewrites the same item), so a batch that
        // fails after them and is delivered again loses none.
        let costs = crate::plan::request_costs(&pending, ctx.now, settings.marker_ttl_secs);
        report.write_units += store
            .put_request_costs(&costs)
            .await
            .map_err(IngestError::Store)?;
        report.request_cost_items += costs.len();
    }
    // Whenever this process learns a full bucket, everything still to send
    // is placed again and split again: the records of a bucket that one
    // group filled go down a level, and the groups that held them are not
    // left half empty. Otherwise each group is placed again right before it
    // is sent.
    let mut queue: std::collections::VecDeque<Vec<&MeteredRecord>> =
        split_into_groups(&pending, &pending_places, &scheme)
            .into_iter()
            .map(|g| g.iter().map(|&i| pending[i]).collect())
            .collect();
    let mut generation = lock(full).generation();
    loop {
        let now_generation = lock(full).generation();
        if now_generation != generation {
            generation = now_generation;
            let mut rest: Vec<&MeteredRecord> = queue.drain(..).flatten().collect();
            let mut places = ctx.place(&rest);
            drop_already_marked(&mut rest, &mut places, &mut report);
            queue = split_into_groups(&rest, &places, &scheme)
                .into_iter()
                .map(|g| g.iter().map(|&i| rest[i]).collect())
                .collect();
        }
        let Some(mut members) = queue.pop_front() else {
            break;
        };
        let mut places = ctx.place(&members);
        drop_already_marked(&mut members, &mut places, &mut report);
        let groups = split_into_groups(&members, &places, ctx.scheme);
        if groups.len() > 1 {
            for g in groups.into_iter().rev() {
                queue.push_front(g.iter().map(|&i| members[i]).collect());
            }
            continue;
        }
        if members.is_empty() {
            continue;
        }
        match commit_group(store, &ctx, &mut members, places, &mut report).await? {
            Some(again) => queue.push_front(again),
            None => {
                for r in &members {
                    report.counted += 1;
                    if let Some(reason) = &r.unpriced {
                        report.unpriced += 1;
                        *report.unpriced_by_reason.entry(reason.label()).or_default() += 1;
                    }
                }
            }
        }
    }
    Ok(report)
}

/// Drops the records found in a full bucket (counted before).
fn drop_already_marked(
    members: &mut Vec<&MeteredRecord>,
    places: &mut Vec<Placement>,
    report: &mut IngestReport,
) {
    let mut idx = 0;
    members.retain(|_| {
        idx += 1;
        places[idx - 1] != Placement::AlreadyMarked
    });
    report.duplicates += places.len() - members.len();
    places.retain(|p| *p != Placement::AlreadyMarked);
}

struct Ctx<'a> {
    scheme: &'a MarkerScheme,
    full: &'a std::sync::Mutex<FullBuckets>,
    settings: &'a CommitSettings,
    now: i64,
    max_replans: usize,
}

impl Ctx<'_> {
    fn marker_expiry(&self) -> i64 {
        self.now.saturating_add(self.settings.marker_ttl_secs)
    }

    fn place(&self, records: &[&MeteredRecord]) -> Vec<Placement> {
        let full = lock(self.full);
        let expiry = self.marker_expiry();
        records
            .iter()
            .map(|r| {
                self.scheme
                    .place(&r.record_id, &r.user, r.timestamp, &full, expiry)
            })
            .collect()
    }
}

fn lock(m: &std::sync::Mutex<FullBuckets>) -> std::sync::MutexGuard<'_, FullBuckets> {
    // A poisoned lock only means another thread panicked; the cache holds
    // nothing that a panic can leave half-written.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Re-plans after a bucket's condition failed are bounded (per batch: this
/// plus four per record): each one learns a full bucket or drops counted
/// records, so this is never reached in practice; reaching it fails the
/// batch (retryable).
const MAX_REPLANS: usize = 64;

/// Commits one group; on `Ok(None)` `members` holds the records counted
/// now; `Ok(Some(..))` hands back the records still to commit after a
/// bucket's condition failed, to be placed and split again.
async fn commit_group<'r, S: UsageStore>(
    store: &S,
    ctx: &Ctx<'_>,
    members: &mut Vec<&'r MeteredRecord>,
    places: Vec<Placement>,
    report: &mut IngestReport,
) -> Result<Option<Vec<&'r MeteredRecord>>, IngestError> {
    let settings = ctx.settings;
    let mut attempt = 0u32;
    while !members.is_empty() {
        let tx = build_transaction(
            members,
            &places,
            ctx.scheme,
            ctx.now,
            settings.marker_ttl_secs,
        );
        let err = match store.transact(&tx).await {
            Ok(done) => {
                report.transactions += 1;
                report.items_written += tx.items.len();
                report.write_units += done.write_units;
                let mut to_read = Vec::new();
                {
                    let mut full = lock(ctx.full);
                    for item in &tx.items {
                        match item {
                            TxItem::TouchBucket {
                                bucket, expires_at, ..
                            } => full.refreshed(bucket, *expires_at),
                            TxItem::AddToBucket {
                                bucket, ids, keys, ..
                            } if full.added(ctx.scheme, *bucket, ids.len()) => {
                                to_read.push((*bucket, keys));
                            }
                            _ => {}
                        }
                    }
                }
                // Buckets this process filled: one read each, so that the
                // next groups go below them at once.
                for (bucket, keys) in to_read {
                    match store.read_bucket(keys).await {
                        Ok(state) => {
                            report.bucket_reads += 1;
                            lock(ctx.full).learn(ctx.scheme, bucket, state);
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "could not read a full marker bucket")
                        }
                    }
                }
                return Ok(None);
            }
            Err(e) => e,
        };
        if let StoreError::Cancelled(reasons) = &err {
            let mut already = vec![false; members.len()];
            let mut learned = false;
            for (i, reason) in reasons.iter().enumerate() {
                let owners = tx.records_of.get(i).map(Vec::as_slice).unwrap_or(&[]);
                match (reason, tx.items.get(i)) {
                    (CancelReason::ConditionalCheckFailed, Some(TxItem::PutMarker { .. })) => {
                        for &o in owners {
                            already[o] = true;
                        }
                    }
                    (CancelReason::BucketCheckFailed(state), Some(item)) => {
                        let (bucket, ids) = match item {
                            TxItem::AddToBucket { bucket, ids, .. } => (*bucket, ids.as_slice()),
                            TxItem::TouchBucket { bucket, .. } => (*bucket, &[][..]),
                            _ => continue,
                        };
                        if let Some(s) = state {
                            for (&o, id) in owners.iter().zip(ids) {
                                if s.ids.contains(id) {
                                    already[o] = true;
                                }
                            }
                        }
                        lock(ctx.full).learn(ctx.scheme, bucket, state.clone());
                        learned = true;
                    }
                    _ => {}
                }
            }
            let dropped = already.iter().filter(|a| **a).count();
            if dropped > 0 || learned {
                // Counted before: drop them. The rest goes back to the caller,
                // which places it again (a bucket learnt full sends its
                // records down a level) and splits it again.
                report.duplicates += dropped;
                let mut idx = 0;
                members.retain(|_| {
                    idx += 1;
                    !already[idx - 1]
                });
                report.replans += 1;
                if report.replans > ctx.max_replans {
                    return Err(IngestError::RetriesExhausted {
                        attempts: report.replans as u32,
                        source: err,
                    });
                }
                return Ok(Some(std::mem::take(members)));
            }
            let transient = reasons.iter().all(|r| {
                matches!(
                    r,
                    CancelReason::None
                        | CancelReason::TransactionConflict
                        | CancelReason::Throttled
                )
            });
            if !transient {
                return Err(IngestError::Store(err));
            }
        } else if !matches!(err, StoreError::Retryable { .. }) {
            return Err(IngestError::Store(err));
        }
        attempt += 1;
        if attempt >= settings.max_attempts {
            return Err(IngestError::RetriesExhausted {
                attempts: attempt,
                source: err,
            });
        }
        report.retries += 1;
        tracing::debug!(attempt, error = %err, "transaction not committed; retrying");
        tokio::time::sleep(backoff(settings, attempt)).await;
    }
    Ok(None)
}

/// Full-jitter exponential backoff.
fn backoff(settings: &CommitSettings, attempt: u32) -> Duration {
    let exp = settings
        .base_backoff
        .saturating_mul(1u32 << attempt.min(16))
        .min(settings.max_backoff);
    let millis = exp.as_millis().max(1) as u64;
    Duration::from_millis(fastrand::u64(0..=millis))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryUsageStore;
    use meter_core::Meter;

    fn batch_of(n: usize, offset: usize) -> MeteredBatch {
        let lines: String = (offset..offset + n)
            .map(|i| {
                format!(
                    r#"{{"schemaType":"ModelInvocationLog","timestamp":"2026-11-0{}T10:00:00Z","requestId":"req-{i}","modelId":"amazon.nova-micro-v1:0","region":"us-east-1","input":{{"inputTokenCount":{i}}},"output":{{"outputTokenCount":1}},"requestMetadata":{{"user":"user{}"}}}}"#,
                    1 + i % 2,
                    i % 7
                ) + "\n"
            })
            .collect();
        Meter::with_defaults()
            .meter_payload(lines.as_bytes())
            .unwrap()
    }

    fn fast() -> CommitSettings {
        CommitSettings {
            base_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
            max_attempts: 4,
            ..Default::default()
        }
    }

    fn total_invocations(store: &MemoryUsageStore, kind: &str) -> u128 {
        store
            .aggregates()
            .values()
            .filter(|a| a.kind == kind)
            .map(|a| a.counters.invocations)
            .sum()
    }

    #[tokio::test]
    async fn a_redelivered_batch_is_counted_once() {
        let store = MemoryUsageStore::new();
        let batch = batch_of(50, 0);
        let now = OffsetDateTime::now_utc();
        let first = commit_batch(&store, &batch, &fast(), now).await.unwrap();
        let second = commit_batch(&store, &batch, &fast(), now).await.unwrap();
        assert_eq!((first.counted, first.duplicates), (50, 0));
        assert_eq!((second.counted, second.duplicates), (0, 50));
        assert_eq!(total_invocations(&store, "user_model_day"), 50);
        assert_eq!(total_invocations(&store, "model_day"), 50);
    }

    #[tokio::test]
    async fn an_overlapping_batch_counts_only_its_new_records() {
        let store = MemoryUsageStore::new();
        let now = OffsetDateTime::now_utc();
        commit_batch(&store, &batch_of(30, 0), &fast(), now)
            .await
            .unwrap();
        let r = commit_batch(&store, &batch_of(30, 20), &fast(), now)
            .await
            .unwrap();
        assert_eq!((r.counted, r.duplicates), (20, 10));
        assert_eq!(total_invocations(&store, "user_day"), 50);
    }

    #[tokio::test]
    async fn conflicts_and_throttles_are_retried_then_committed() {
        let store = MemoryUsageStore::new();
        store.push_fault(StoreError::Cancelled(vec![
            CancelReason::TransactionConflict,
        ]));
        store.push_fault(StoreError::Retryable {
            message: "throttled".into(),
            source: None,
        });
        let r = commit_batch(&store, &batch_of(10, 0), &fast(), OffsetDateTime::now_utc())
            .await
            .unwrap();
        assert_eq!(r.retries, 2);
        assert_eq!(r.counted, 10);
    }

    #[tokio::test]
    async fn exhausted_retries_fail_the_batch_as_retryable_and_count_nothing_of_it() {
        let store = MemoryUsageStore::new();
        for _ in 0..4 {
            store.push_fault(StoreError::Cancelled(vec![CancelReason::Throttled]));
        }
        let err = commit_batch(&store, &batch_of(10, 0), &fast(), OffsetDateTime::now_utc())
            .await
            .unwrap_err();
        assert!(err.is_retryable(), "{err}");
        assert_eq!(store.marker_count(), 0);
        // Redelivery then counts everything once.
        let r = commit_batch(&store, &batch_of(10, 0), &fast(), OffsetDateTime::now_utc())
            .await
            .unwrap();
        assert_eq!(r.counted, 10);
    }

    /// A scheme whose capped buckets fill after 3 ids: day, minute, second.
    fn tiny() -> CommitSettings {
        CommitSettings {
            markers: MarkerScheme {
                levels: vec![
                    crate::markers::MarkerLevel {
                        width_secs: 86_400,
                        slots: 1,
                    },
                    crate::markers::MarkerLevel {
                        width_secs: 60,
                        slots: 1,
                    },
                    crate::markers::MarkerLevel {
                        width_secs: 1,
                        slots: 1,
                    },
                ],
                cap: 3,
                max_ids_per_write: 2,
                buckets_since: i64::MIN,
            },
            ..fast()
        }
    }

    #[tokio::test]
    async fn records_share_marker_buckets_instead_of_one_item_each() {
        let store = MemoryUsageStore::new();
        let r = commit_batch(&store, &batch_of(50, 0), &fast(), OffsetDateTime::now_utc())
            .await
            .unwrap();
        assert_eq!(r.counted, 50);
        // 50 records over 2 days: the day buckets (8 slots each) take them.
        let buckets = store.buckets();
        assert!(buckets.len() <= 16, "{}", buckets.len());
        assert_eq!(store.marker_count(), 50);
        assert!(buckets.keys().all(|k| k.starts_with("B#0#")), "{buckets:?}");
    }

    #[tokio::test]
    async fn full_buckets_send_records_to_the_next_level_and_each_is_counted_once() {
        let store = MemoryUsageStore::new();
        let settings = tiny();
        let now = OffsetDateTime::now_utc();
        // Four deliveries that overlap: 0..20, 10..30 twice, 0..40.
        for (n, offset) in [(20, 0), (20, 10), (20, 10), (40, 0)] {
            commit_batch(&store, &batch_of(n, offset), &settings, now)
                .await
                .unwrap();
        }
        assert_eq!(total_invocations(&store, "user_model_day"), 40);
        assert_eq!(store.marker_count(), 40);
        let buckets = store.buckets();
        // Capped levels hold at most cap - 1 + max_ids_per_write ids.
        for (pk, b) in &buckets {
            if !pk.starts_with("B#2#") {
                assert!(b.ids.len() <= 4, "{pk}: {}", b.ids.len());
            }
            assert_eq!(b.n as usize, b.ids.len(), "{pk}");
        }
        // Every level was used: the day buckets (2 days) filled.
        for level in 0..3 {
            assert!(
                buckets
                    .keys()
                    .any(|k| k.starts_with(&format!("B#{level}#"))),
                "level {level}: {:?}",
                buckets.keys()
            );
        }
        // No id is in two buckets.
        let mut all: Vec<u64> = buckets
            .values()
            .flat_map(|b| b.ids.iter().copied())
            .collect();
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n);
        // A redelivery of everything counts nothing.
        let r = commit_batch(&store, &batch_of(40, 0), &settings, now)
            .await
            .unwrap();
        assert_eq!((r.counted, r.duplicates), (0, 40));
    }

    #[tokio::test]
    async fn a_process_that_fills_a_bucket_reads_it_once_instead_of_being_cancelled() {
        let store = MemoryUsageStore::new();
        let r = commit_batch(&store, &batch_of(40, 0), &tiny(), OffsetDateTime::now_utc())
            .await
            .unwrap();
        assert_eq!(r.counted, 40);
        assert_eq!(r.replans, 0, "{r:?}");
        assert!(r.bucket_reads > 0, "{r:?}");
        assert_eq!(r.bucket_reads, store.bucket_reads());
        assert_eq!(store.marker_count(), 40);
    }

    #[tokio::test]
    async fn a_process_that_has_not_seen_a_bucket_fill_learns_it_from_the_cancellation() {
        let a = MemoryUsageStore::new();
        let settings = tiny();
        let now = OffsetDateTime::now_utc();
        commit_batch(&a, &batch_of(12, 0), &settings, now)
            .await
            .unwrap();
        // Forget the full buckets, as a new Lambda instance would.
        *a.full_buckets().unwrap().lock().unwrap() = FullBuckets::default();
        let r = commit_batch(&a, &batch_of(24, 0), &settings, now)
            .await
            .unwrap();
        assert_eq!((r.counted, r.duplicates), (12, 12));
        assert!(r.replans > 0, "{r:?}");
        assert_eq!(total_invocations(&a, "model_day"), 24);
    }

    #[tokio::test]
    async fn request_cost_items_are_written_for_every_counted_record_when_asked() {
        let store = MemoryUsageStore::new();
        let on = CommitSettings {
            request_costs: true,
            ..fast()
        };
        let r = commit_batch(&store, &batch_of(10, 0), &on, OffsetDateTime::now_utc())
            .await
            .unwrap();
        assert_eq!(r.request_cost_items, 10);
        // Their units are reported with the transactions' (the memory store
        // charges 2 a transactional item, 1 a plain put).
        assert_eq!(r.write_units, (2 * r.items_written + 10) as f64);
        let costs = store.request_costs();
        assert_eq!(costs.len(), 10);
        let c = &costs["r:req-3"];
        assert_eq!(c.keys.pk, "Q#r:req-3");
        assert_eq!(c.usage.counters.input_tokens, 3);
        assert_eq!(c.usage.user, "user3");
        // Off (the default): none.
        let off = MemoryUsageStore::new();
        commit_batch(&off, &batch_of(10, 0), &fast(), OffsetDateTime::now_utc())
            .await
            .unwrap();
        assert!(off.request_costs().is_empty());
    }

    #[tokio::test]
    async fn validation_errors_are_not_retried() {
        let store = MemoryUsageStore::new();
        store.push_fault(StoreError::Cancelled(vec![CancelReason::Other(
            "ValidationError".into(),
        )]));
        let err = commit_batch(&store, &batch_of(3, 0), &fast(), OffsetDateTime::now_utc())
            .await
            .unwrap_err();
        assert!(!err.is_retryable());
    }
}
