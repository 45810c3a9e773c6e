//! The store capability the ingest path needs, its errors, and an in-memory
//! implementation for handler tests.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::sync::Mutex;

use meter_core::Counters;

use crate::plan::{PlannedTx, TxItem};

/// Why one action of a cancelled transaction failed, in action order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelReason {
    /// This action was fine; another one cancelled the transaction.
    None,
    /// The marker already exists: the record was counted before.
    ConditionalCheckFailed,
    /// Another transaction holds the item: retry.
    TransactionConflict,
    /// Throttled (`ThrottlingError`, `ProvisionedThroughputExceeded`): retry.
    Throttled,
    /// Anything else (`ValidationError`, ...): not retryable.
    Other(String),
}

/// A store failure, classified once here for the retry logic.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("transaction cancelled ({})", summarise(.0))]
    Cancelled(Vec<CancelReason>),
    #[error(
        "DynamoDB is unavailable, throttling or timed out; the batch will be retried: {message}"
    )]
    Retryable {
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    #[error("table `{table}` does not exist in this account and Region: create it with `bedrock-meter init` or check USAGE_TABLE and AWS_REGION")]
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
            CancelReason::ConditionalCheckFailed => "ConditionalCheckFailed".to_string(),
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

/// A committed transaction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TxCommitted {
    /// Write capacity units consumed, from `ReturnConsumedCapacity`.
    pub write_units: f64,
}

/// What the ingest path needs from storage: commit one planned transaction,
/// all or nothing.
pub trait UsageStore: Send + Sync {
    fn transact(
        &self,
        tx: &PlannedTx,
    ) -> impl Future<Output = Result<TxCommitted, StoreError>> + Send;
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

    pub fn marker_count(&self) -> usize {
        self.lock().markers.len()
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
