//! The bedrock-meter Kinesis ingest Lambda: the high-volume path, a Kinesis
//! Data Stream fed by the CloudWatch Logs subscription of the invocation log
//! group (possibly through a cross-account CloudWatch Logs destination).
//!
//! - [`batch`]: a batch through the shared ingest path and the per-record
//!   failure policy (undecodable records reported while later ones are still
//!   ingested, store failures reported from the first one on); no logging,
//!   no runtime.
//! - [`handler`]: logs, metrics and the `batchItemFailures` response, generic
//!   over the store so it is tested with an in-memory one.
//! - [`metrics`]: the embedded-metric-format line.
//!
//! The event source mapping must enable `ReportBatchItemFailures`.

pub mod batch;
pub mod handler;
pub mod metrics;
