//! # meter-store: exactly-once totals in DynamoDB
//!
//! - [`keys`]: the data contract's key encoding (injective, bounded).
//! - [`plan`]: pure planning of transactions: markers plus merged deltas,
//!   split deterministically at 100 actions.
//! - [`store`]: the [`UsageStore`] capability, its classified errors, and an
//!   in-memory implementation for tests.
//! - [`ingest`]: [`commit_batch`], the one exactly-once commit path shared by
//!   the Lambda and the CLI.
//! - [`prices`]: price tables stored in the usage table, and the loader
//!   that keeps the effective one current (with their DynamoDB adapter).
//! - [`dynamo`]: [`DynamoDbUsageStore`], table creation and report queries;
//!   the only module that uses the AWS SDK.
//!
//! The guarantee: every record (by `requestId`, else log event id, else a
//! content hash) is counted at most once, because its marker is written in
//! the same transaction as its increments; and at least once, because a batch
//! that cannot be committed fails and is delivered again.

pub mod budgets;
pub mod config;
pub mod dynamo;
pub mod ingest;
pub mod keys;
pub mod markers;
pub mod metrics;
pub mod plan;
pub mod prices;
pub mod store;

pub use config::{Config, ConfigError};
pub use dynamo::{
    create_table, create_table_with, DynamoDbUsageStore, TableOptions, UsageRow, DEFAULT_TABLE,
};
pub use ingest::{
    commit_batch, ingest_payload, CommitSettings, IngestError, IngestReport, Ingested,
    PayloadError, DEFAULT_MARKER_TTL_DAYS,
};
pub use store::{CancelReason, MemoryUsageStore, StoreError, TxCommitted, UsageStore};
