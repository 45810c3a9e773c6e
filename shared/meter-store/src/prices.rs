//! Price tables stored in the usage table, so that prices update without a
//! redeploy (`bedrock-meter prices sync --store`, the `price-sync` Lambda),
//! and the loader the ingest Lambdas and the CLI use.
//!
//! Items (partition `PRICES`):
//! - `sk = V#<version>#<first 12 hex of sha256>`, `kind = price_table`: one
//!   validated table, gzip-compressed in the binary attribute `table`, with
//!   `version`, `checked`, `sha256` (of the uncompressed text), `stored_at`.
//! - `sk = CURRENT`, `kind = price_pointer`: the newest version's `sk` and
//!   the same metadata. A cheap `GetItem` of this item is the re-check.
//!
//! Precedence: `PRICE_TABLE_PATH`, then the stored table, then the built-in.
//! A stored table that cannot be read, decompressed or validated is logged,
//! counted (`PriceTableLoadFailures`) and skipped: ingest never fails for it.

use std::collections::HashMap;
use std::future::Future;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use meter_core::{Day, PriceTable, PriceTableError};
use sha2::{Digest, Sha256};

use crate::dynamo::{classify_sdk_error, DynamoDbUsageStore};
use crate::metrics::Metric;
use crate::store::StoreError;

/// Partition of the stored price tables.
pub const PRICES_PK: &str = "PRICES";
/// Sort key of the pointer to the newest stored table.
pub const POINTER_SK: &str = "CURRENT";
/// How often a running function re-checks the pointer, at most.
pub const DEFAULT_RECHECK: Duration = Duration::from_secs(600);
/// Refuse to store a compressed table above this (DynamoDB's item limit is
/// 400 KB; the built-in table compresses to about 2 KB).
pub const MAX_STORED_BYTES: usize = 350 * 1024;
/// Refuse to inflate a stored table beyond this (a corrupt or hostile item).
pub const MAX_TABLE_TEXT_BYTES: u64 = 8 * 1024 * 1024;

/// What the pointer item says about the newest stored table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPointer {
    /// The version item's sort key, `V#<version>#<sha12>`.
    pub sk: String,
    pub version: String,
    pub checked: String,
    /// Hex SHA-256 of the uncompressed table text.
    pub sha256: String,
    pub stored_at: String,
}

/// Why a stored table could not be written or used.
#[derive(Debug, thiserror::Error)]
pub enum PriceStoreError {
    #[error("the price table is not valid, nothing was stored: {0}")]
    Invalid(#[source] PriceTableError),
    #[error("the stored price table {sk} is not valid: {source}")]
    StoredInvalid {
        sk: String,
        #[source]
        source: PriceTableError,
    },
    #[error("the stored price table {sk} is unreadable: {reason}")]
    Corrupt { sk: String, reason: String },
    #[error("the pointer names {sk}, which is not in the table (write it again with `bedrock-meter prices sync --store`)")]
    MissingVersion { sk: String },
    #[error("the compressed price table is {bytes} bytes, above the {MAX_STORED_BYTES}-byte limit for one item")]
    TooLarge { bytes: usize },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Reads and writes stored price tables. [`DynamoDbUsageStore`] is the real
/// one; tests use [`MemoryPriceStore`].
pub trait PriceStore: Send + Sync {
    /// The pointer item, if any.
    fn get_pointer(
        &self,
    ) -> impl Future<Output = Result<Option<StoredPointer>, PriceStoreError>> + Send;
    /// The compressed `table` attribute of a version item, if it exists.
    fn get_version(
        &self,
        sk: &str,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, PriceStoreError>> + Send;
    /// Writes a version item and points to it, in one transaction.
    fn put_version(
        &self,
        pointer: &StoredPointer,
        body: &[u8],
    ) -> impl Future<Output = Result<(), PriceStoreError>> + Send;
}

fn sha256_hex(text: &str) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(64);
    for b in Sha256::digest(text.as_bytes()) {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Validates `text` and prepares its items: the pointer and the gzip body.
/// An invalid table is refused here, before anything is written.
pub fn encode(text: &str, stored_at: &str) -> Result<(StoredPointer, Vec<u8>), PriceStoreError> {
    let table = PriceTable::from_toml(text).map_err(PriceStoreError::Invalid)?;
    let sha256 = sha256_hex(text);
    let meta = table.meta();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(text.as_bytes())
        .and_then(|_| gz.finish())
        .map_err(|e| PriceStoreError::Corrupt {
            sk: "(new)".into(),
            reason: format!("gzip failed: {e}"),
        })
        .and_then(|body| {
            if body.len() > MAX_STORED_BYTES {
                return Err(PriceStoreError::TooLarge { bytes: body.len() });
            }
            Ok((
                StoredPointer {
                    sk: format!("V#{}#{}", meta.version, &sha256[..12]),
                    version: meta.version.clone(),
                    checked: meta.checked.clone(),
                    sha256,
                    stored_at: stored_at.to_string(),
                },
                body,
            ))
        })
}

/// Inflates and validates a stored body against its pointer.
pub fn decode(
    pointer: &StoredPointer,
    body: &[u8],
) -> Result<(PriceTable, String), PriceStoreError> {
    let corrupt = |reason: String| PriceStoreError::Corrupt {
        sk: pointer.sk.clone(),
        reason,
    };
    let mut text = String::new();
    flate2::read::GzDecoder::new(body)
        .take(MAX_TABLE_TEXT_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| corrupt(format!("not gzip of UTF-8 text: {e}")))?;
    if text.len() as u64 > MAX_TABLE_TEXT_BYTES {
        return Err(corrupt(format!(
            "inflates beyond {MAX_TABLE_TEXT_BYTES} bytes"
        )));
    }
    let sha = sha256_hex(&text);
    if sha != pointer.sha256 {
        return Err(corrupt(format!(
            "SHA-256 {sha} differs from the pointer's {}",
            pointer.sha256
        )));
    }
    let table = PriceTable::from_toml(&text).map_err(|source| PriceStoreError::StoredInvalid {
        sk: pointer.sk.clone(),
        source,
    })?;
    Ok((table, text))
}

/// The newest stored table, validated; `None` when none was stored.
pub async fn load_newest<P: PriceStore>(
    store: &P,
) -> Result<Option<(StoredPointer, PriceTable, String)>, PriceStoreError> {
    let Some(pointer) = store.get_pointer().await? else {
        return Ok(None);
    };
    load_version(store, pointer).await.map(Some)
}

async fn load_version<P: PriceStore>(
    store: &P,
    pointer: StoredPointer,
) -> Result<(StoredPointer, PriceTable, String), PriceStoreError> {
    let body =
        store
            .get_version(&pointer.sk)
            .await?
            .ok_or_else(|| PriceStoreError::MissingVersion {
                sk: pointer.sk.clone(),
            })?;
    let (table, text) = decode(&pointer, &body)?;
    Ok((pointer, table, text))
}

/// What [`store_table`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOutcome {
    /// Written as the newest table; `bytes` is the compressed size.
    Stored {
        pointer: StoredPointer,
        bytes: usize,
    },
    /// The newest stored table already has exactly this text.
    Unchanged { pointer: StoredPointer },
}

/// Validates `text` and stores it as the newest table, unless it already is.
pub async fn store_table<P: PriceStore>(
    store: &P,
    text: &str,
    stored_at: &str,
) -> Result<StoreOutcome, PriceStoreError> {
    let (pointer, body) = encode(text, stored_at)?;
    // An unreadable current pointer is no reason not to write a good table.
    if let Ok(Some(current)) = store.get_pointer().await {
        if current.sha256 == pointer.sha256 {
            return Ok(StoreOutcome::Unchanged { pointer: current });
        }
    }
    store.put_version(&pointer, &body).await?;
    Ok(StoreOutcome::Stored {
        pointer,
        bytes: body.len(),
    })
}

/// Days from the table's `checked` date to `today` (UTC); `None` when
/// `checked` is not `YYYY-MM-DD`.
pub fn age_days(checked: &str, today: Day) -> Option<i64> {
    Day::parse(checked).map(|c| (today.date() - c.date()).whole_days())
}

/// When the pointer is due for its next re-check.
#[derive(Debug, Clone, Copy)]
pub struct Recheck {
    pub interval: Duration,
    last: Instant,
}

impl Recheck {
    /// Checked at `now`; next due `interval` later.
    pub fn new(interval: Duration, now: Instant) -> Recheck {
        Recheck {
            interval,
            last: now,
        }
    }

    /// True (and restarts the interval) when at least `interval` has passed.
    pub fn take_due(&mut self, now: Instant) -> bool {
        if now.saturating_duration_since(self.last) >= self.interval {
            self.last = now;
            true
        } else {
            false
        }
    }
}

/// Where the table in use came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PriceOrigin {
    Path(PathBuf),
    Stored { sk: String, stored_at: String },
    Builtin,
}

impl std::fmt::Display for PriceOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PriceOrigin::Path(p) => write!(f, "{} (PRICE_TABLE_PATH)", p.display()),
            PriceOrigin::Stored { sk, stored_at } => {
                write!(
                    f,
                    "stored in the usage table: {PRICES_PK} {sk}, stored {stored_at}"
                )
            }
            PriceOrigin::Builtin => f.write_str("built-in"),
        }
    }
}

/// The effective price table and how to keep it current: loads by
/// precedence at start, then [`PriceSource::refresh`] re-checks the stored
/// pointer at most once per interval.
pub struct PriceSource<P> {
    /// `None` when `PRICE_TABLE_PATH` is set: nothing to re-check.
    store: Option<P>,
    recheck: Recheck,
    origin: PriceOrigin,
    checked: String,
    /// Load failures not yet reported in metrics.
    failures: u64,
}

impl<P: PriceStore> PriceSource<P> {
    /// Loads the effective table: `path` if given (an error there is the
    /// operator's to fix, so it fails start), else the newest stored table,
    /// else the built-in. `now` starts the re-check interval.
    pub async fn start(
        path: Option<&Path>,
        store: P,
        interval: Duration,
        now: Instant,
    ) -> Result<(PriceSource<P>, PriceTable), PriceTableError> {
        let recheck = Recheck::new(interval, now);
        if let Some(path) = path {
            let table = PriceTable::load(path)?;
            let source = PriceSource {
                store: None,
                recheck,
                origin: PriceOrigin::Path(path.to_path_buf()),
                checked: table.meta().checked.clone(),
                failures: 0,
            };
            return Ok((source, table));
        }
        let mut source = PriceSource {
            store: None,
            recheck,
            origin: PriceOrigin::Builtin,
            checked: String::new(),
            failures: 0,
        };
        let table = match load_newest(&store).await {
            Ok(Some((pointer, table, _))) => {
                source.use_stored(&pointer, &table);
                table
            }
            Ok(None) => PriceTable::builtin(),
            Err(e) => {
                source.failed(&e);
                PriceTable::builtin()
            }
        };
        if source.origin == PriceOrigin::Builtin {
            source.checked = table.meta().checked.clone();
        }
        source.store = Some(store);
        Ok((source, table))
    }

    fn use_stored(&mut self, pointer: &StoredPointer, table: &PriceTable) {
        tracing::info!(sk = %pointer.sk, version = %pointer.version, checked = %table.meta().checked, "using the stored price table");
        self.origin = PriceOrigin::Stored {
            sk: pointer.sk.clone(),
            stored_at: pointer.stored_at.clone(),
        };
        self.checked = table.meta().checked.clone();
    }

    fn failed(&mut self, e: &PriceStoreError) {
        self.failures += 1;
        tracing::warn!(error = %e, using = %self.origin, "cannot use the stored price table; keeping the next in precedence");
    }

    /// When the re-check is due: one `GetItem` of the pointer, and when it
    /// names a table other than the one in use, that table. Returns the new
    /// table when it switched; errors are logged and counted, never returned.
    pub async fn refresh(&mut self, now: Instant) -> Option<PriceTable> {
        if self.store.is_none() || !self.recheck.take_due(now) {
            return None;
        }
        let store = self.store.as_ref()?;
        let pointer = match store.get_pointer().await {
            Ok(Some(p)) => p,
            Ok(None) => return None,
            Err(e) => {
                self.failed(&e);
                return None;
            }
        };
        if matches!(&self.origin, PriceOrigin::Stored { sk, .. } if *sk == pointer.sk) {
            return None;
        }
        match load_version(store, pointer).await {
            Ok((pointer, table, _)) => {
                self.use_stored(&pointer, &table);
                Some(table)
            }
            Err(e) => {
                self.failed(&e);
                None
            }
        }
    }

    pub fn origin(&self) -> &PriceOrigin {
        &self.origin
    }

    /// `PriceTableAgeDays` (when `checked` is a date) and
    /// `PriceTableLoadFailures` since the last call.
    pub fn take_metrics(&mut self, today: Day) -> Vec<Metric> {
        let mut m = Vec::with_capacity(2);
        if let Some(age) = age_days(&self.checked, today) {
            m.push(("PriceTableAgeDays", age as f64, "Count"));
        }
        m.push((
            "PriceTableLoadFailures",
            std::mem::take(&mut self.failures) as f64,
            "Count",
        ));
        m
    }
}

/// A value built from the effective price table (a Lambda's handler state),
/// rebuilt when the table changes. For one-event-at-a-time Lambdas: the lock
/// is never contended.
pub struct LivePrices<P, T> {
    source: tokio::sync::Mutex<PriceSource<P>>,
    current: RwLock<Arc<T>>,
    build: Box<dyn Fn(PriceTable) -> T + Send + Sync>,
}

impl<P: PriceStore, T: Send + Sync> LivePrices<P, T> {
    pub fn new(
        source: PriceSource<P>,
        table: PriceTable,
        build: impl Fn(PriceTable) -> T + Send + Sync + 'static,
    ) -> Self {
        let current = RwLock::new(Arc::new(build(table)));
        LivePrices {
            source: tokio::sync::Mutex::new(source),
            current,
            build: Box::new(build),
        }
    }

    /// The current value, after a re-check if one is due.
    pub async fn get(&self, now: Instant) -> Arc<T> {
        let fresh = self.source.lock().await.refresh(now).await;
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        if let Some(table) = fresh {
            *current = Arc::new((self.build)(table));
        }
        current.clone()
    }

    /// The EMF line of the price metrics (see [`PriceSource::take_metrics`]).
    pub async fn emf_line(&self, function_name: &str, now: time::OffsetDateTime) -> String {
        let metrics = self.source.lock().await.take_metrics(Day::of(now));
        let ts_ms = (now.unix_timestamp_nanos() / 1_000_000) as i64;
        crate::metrics::emf_line(&metrics, function_name, ts_ms)
    }
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

fn pointer_from(
    item: &HashMap<String, AttributeValue>,
    sk: Option<&str>,
) -> Result<StoredPointer, PriceStoreError> {
    let get = |k: &str| match item.get(k) {
        Some(AttributeValue::S(v)) => Ok(v.clone()),
        _ => Err(PriceStoreError::Corrupt {
            sk: POINTER_SK.into(),
            reason: format!("attribute `{k}` is missing or not a string"),
        }),
    };
    Ok(StoredPointer {
        sk: match sk {
            Some(sk) => sk.to_string(),
            None => get("version_sk")?,
        },
        version: get("version")?,
        checked: get("checked")?,
        sha256: get("sha256")?,
        stored_at: get("stored_at")?,
    })
}

fn meta_attrs(p: &StoredPointer) -> [(&'static str, AttributeValue); 4] {
    [
        ("version", s(&p.version)),
        ("checked", s(&p.checked)),
        ("sha256", s(&p.sha256)),
        ("stored_at", s(&p.stored_at)),
    ]
}

impl PriceStore for DynamoDbUsageStore {
    async fn get_pointer(&self) -> Result<Option<StoredPointer>, PriceStoreError> {
        let out = self
            .client()
            .get_item()
            .table_name(self.table())
            .key("pk", s(PRICES_PK))
            .key("sk", s(POINTER_SK))
            .send()
            .await
            .map_err(|e| classify_sdk_error(e, self.table()))?;
        out.item().map(|i| pointer_from(i, None)).transpose()
    }

    async fn get_version(&self, sk: &str) -> Result<Option<Vec<u8>>, PriceStoreError> {
        let out = self
            .client()
            .get_item()
            .table_name(self.table())
            .key("pk", s(PRICES_PK))
            .key("sk", s(sk))
            .projection_expression("#t")
            .expression_attribute_names("#t", "table")
            .send()
            .await
            .map_err(|e| classify_sdk_error(e, self.table()))?;
        let Some(item) = out.item() else {
            return Ok(None);
        };
        match item.get("table") {
            Some(AttributeValue::B(b)) => Ok(Some(b.clone().into_inner())),
            _ => Err(PriceStoreError::Corrupt {
                sk: sk.to_string(),
                reason: "attribute `table` is missing or not binary".into(),
            }),
        }
    }

    async fn put_version(&self, p: &StoredPointer, body: &[u8]) -> Result<(), PriceStoreError> {
        let put = |attrs: Vec<(&'static str, AttributeValue)>| {
            let mut b = Put::builder().table_name(self.table());
            for (k, v) in attrs {
                b = b.item(k, v);
            }
            b.build().map_err(|e| PriceStoreError::Corrupt {
                sk: p.sk.clone(),
                reason: e.to_string(),
            })
        };
        let mut version = vec![
            ("pk", s(PRICES_PK)),
            ("sk", s(&p.sk)),
            ("kind", s("price_table")),
            ("encoding", s("gzip")),
            ("table", AttributeValue::B(Blob::new(body.to_vec()))),
        ];
        version.extend(meta_attrs(p));
        let mut pointer = vec![
            ("pk", s(PRICES_PK)),
            ("sk", s(POINTER_SK)),
            ("kind", s("price_pointer")),
            ("version_sk", s(&p.sk)),
        ];
        pointer.extend(meta_attrs(p));
        self.client()
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put(version)?).build())
            .transact_items(TransactWriteItem::builder().put(put(pointer)?).build())
            .send()
            .await
            .map_err(|e| classify_sdk_error(e, self.table()))?;
        Ok(())
    }
}

/// An in-memory [`PriceStore`] for tests, with injectable faults.
#[derive(Default)]
pub struct MemoryPriceStore {
    inner: Mutex<MemoryInner>,
}

#[derive(Default)]
struct MemoryInner {
    pointer: Option<StoredPointer>,
    versions: HashMap<String, Vec<u8>>,
    pointer_reads: usize,
    fail_next_reads: usize,
}

impl MemoryPriceStore {
    pub fn new() -> Self {
        Self::default()
    }
    /// Replaces a version's body (to simulate corruption).
    pub fn set_body(&self, sk: &str, body: Vec<u8>) {
        self.lock().versions.insert(sk.to_string(), body);
    }
    /// How many times the pointer was read.
    pub fn pointer_reads(&self) -> usize {
        self.lock().pointer_reads
    }
    /// The next `n` pointer reads fail as retryable.
    pub fn fail_next_reads(&self, n: usize) {
        self.lock().fail_next_reads = n;
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl PriceStore for MemoryPriceStore {
    async fn get_pointer(&self) -> Result<Option<StoredPointer>, PriceStoreError> {
        let mut inner = self.lock();
        inner.pointer_reads += 1;
        if inner.fail_next_reads > 0 {
            inner.fail_next_reads -= 1;
            return Err(StoreError::Retryable {
                message: "injected".into(),
                source: None,
            }
            .into());
        }
        Ok(inner.pointer.clone())
    }
    async fn get_version(&self, sk: &str) -> Result<Option<Vec<u8>>, PriceStoreError> {
        Ok(self.lock().versions.get(sk).cloned())
    }
    async fn put_version(&self, p: &StoredPointer, body: &[u8]) -> Result<(), PriceStoreError> {
        let mut inner = self.lock();
        inner.versions.insert(p.sk.clone(), body.to_vec());
        inner.pointer = Some(p.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> Day {
        Day::parse(s).unwrap()
    }

    /// The built-in table with `checked` and `version` replaced.
    fn table_text(checked: &str) -> String {
        let base = meter_core::pricing::DEFAULT_PRICE_TABLE;
        let mut out = String::new();
        for line in base.lines() {
            if line.starts_with("checked = ") {
                out.push_str(&format!("checked = \"{checked}\""));
            } else if line.starts_with("version = ") {
                out.push_str(&format!("version = \"{checked}\""));
            } else {
                out.push_str(line);
            }
            out.push('\n');
        }
        assert!(out.contains(&format!("checked = \"{checked}\"")));
        out
    }

    #[test]
    fn the_age_is_whole_utc_days_since_checked() {
        assert_eq!(age_days("2026-11-20", day("2026-11-20")), Some(0));
        assert_eq!(age_days("2026-11-20", day("2026-11-29")), Some(9));
        assert_eq!(age_days("2026-10-31", day("2026-11-01")), Some(1));
        assert_eq!(age_days("2024-02-28", day("2024-03-01")), Some(2));
        assert_eq!(age_days("not a date", day("2026-11-20")), None);
    }

    #[test]
    fn a_recheck_is_due_only_after_the_interval() {
        let t0 = Instant::now();
        let mut r = Recheck::new(Duration::from_secs(600), t0);
        assert!(!r.take_due(t0));
        assert!(!r.take_due(t0 + Duration::from_secs(599)));
        assert!(r.take_due(t0 + Duration::from_secs(600)));
        // The interval restarts at the check that was due.
        assert!(!r.take_due(t0 + Duration::from_secs(1199)));
        assert!(r.take_due(t0 + Duration::from_secs(1200)));
    }

    #[test]
    fn a_stored_table_round_trips_and_corruption_is_detected() {
        let text = table_text("2026-11-25");
        let (pointer, body) = encode(&text, "2026-11-25T00:00:00Z").unwrap();
        assert!(pointer.sk.starts_with("V#2026-11-25#"));
        assert!(
            body.len() < text.len() / 2,
            "{} of {}",
            body.len(),
            text.len()
        );
        let (table, back) = decode(&pointer, &body).unwrap();
        assert_eq!(
            (back.as_str(), table.meta().checked.as_str()),
            (text.as_str(), "2026-11-25")
        );
        let mut bad = body.clone();
        let n = bad.len();
        bad[n / 2] ^= 0xff;
        assert!(matches!(
            decode(&pointer, &bad),
            Err(PriceStoreError::Corrupt { .. })
        ));
    }

    #[tokio::test]
    async fn the_pointer_is_read_once_per_interval_not_per_batch() {
        let store = MemoryPriceStore::new();
        store_table(&store, &table_text("2026-11-20"), "t1")
            .await
            .unwrap();
        let t0 = Instant::now();
        let (mut src, table) = PriceSource::start(None, store, DEFAULT_RECHECK, t0)
            .await
            .unwrap();
        assert_eq!(table.meta().checked, "2026-11-20");
        let reads = src.store.as_ref().unwrap().pointer_reads();
        for s in [1, 60, 599] {
            assert!(src.refresh(t0 + Duration::from_secs(s)).await.is_none());
        }
        assert_eq!(src.store.as_ref().unwrap().pointer_reads(), reads);
        store_table(src.store.as_ref().unwrap(), &table_text("2026-11-27"), "t2")
            .await
            .unwrap();
        let newer = src.refresh(t0 + Duration::from_secs(600)).await.unwrap();
        assert_eq!(newer.meta().checked, "2026-11-27");
        let m = src.take_metrics(day("2026-11-30"));
        assert_eq!(m[0], ("PriceTableAgeDays", 3.0, "Count"));
        assert_eq!(m[1], ("PriceTableLoadFailures", 0.0, "Count"));
    }

    #[tokio::test]
    async fn the_live_state_is_rebuilt_only_when_the_table_changes_and_its_metrics_carry_the_age() {
        let store = MemoryPriceStore::new();
        store_table(&store, &table_text("2026-11-20"), "t1")
            .await
            .unwrap();
        let t0 = Instant::now();
        let (src, table) = PriceSource::start(None, store, DEFAULT_RECHECK, t0)
            .await
            .unwrap();
        let builds = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = builds.clone();
        let live = LivePrices::new(src, table, move |t| {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            t.meta().checked.clone()
        });
        assert_eq!(*live.get(t0 + Duration::from_secs(1)).await, "2026-11-20");
        assert_eq!(*live.get(t0 + DEFAULT_RECHECK).await, "2026-11-20");
        assert_eq!(builds.load(std::sync::atomic::Ordering::SeqCst), 1);
        {
            let src = live.source.lock().await;
            store_table(src.store.as_ref().unwrap(), &table_text("2026-11-28"), "t2")
                .await
                .unwrap();
        }
        assert_eq!(*live.get(t0 + 2 * DEFAULT_RECHECK).await, "2026-11-28");
        assert_eq!(builds.load(std::sync::atomic::Ordering::SeqCst), 2);
        let now = time::macros::datetime!(2026-11-30 12:00 UTC);
        let line: serde_json::Value =
            serde_json::from_str(&live.emf_line("fn", now).await).unwrap();
        assert_eq!(line["PriceTableAgeDays"], 2.0);
        assert_eq!(line["PriceTableLoadFailures"], 0.0);
    }

    #[tokio::test]
    async fn a_failed_recheck_keeps_the_table_and_is_counted_once() {
        let store = MemoryPriceStore::new();
        let t0 = Instant::now();
        let (mut src, _) = PriceSource::start(None, store, DEFAULT_RECHECK, t0)
            .await
            .unwrap();
        assert_eq!(src.origin(), &PriceOrigin::Builtin);
        src.store.as_ref().unwrap().fail_next_reads(1);
        assert!(src.refresh(t0 + DEFAULT_RECHECK).await.is_none());
        assert_eq!(src.origin(), &PriceOrigin::Builtin);
        let today = day("2026-11-30");
        assert_eq!(
            src.take_metrics(today)[1],
            ("PriceTableLoadFailures", 1.0, "Count")
        );
        assert_eq!(
            src.take_metrics(today)[1],
            ("PriceTableLoadFailures", 0.0, "Count")
        );
    }
}
