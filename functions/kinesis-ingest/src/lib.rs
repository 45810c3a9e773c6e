//! The bedrock-meter Kinesis ingest Lambda: the high-volume path, a Kinesis
//! Data Stream fed by the CloudWatch Logs subscription of the invocation log
//! group (possibly through a cross-account CloudWatch Logs destination).
//!
//! - [`batch`]: a batch through the shared ingest path, every record metered
//!   then one exactly-once commit for the whole batch, and the per-record
//!   failure policy (undecodable records reported while the others are still
//!   committed; a failed commit reports every record in it); no logging, no
//!   runtime.
//! - [`handler`]: logs, metrics and the `batchItemFailures` response, generic
//!   over the store so it is tested with an in-memory one.
//! - [`metrics`]: the embedded-metric-format line.
//!
//! The event source mapping must enable `ReportBatchItemFailures`.

pub mod batch;
pub mod handler;
pub mod metrics;
