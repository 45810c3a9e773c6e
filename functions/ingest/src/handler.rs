//! The handler: meter and commit one delivery, log one summary line, emit
//! metrics, and tell the runtime whether a failure is worth retrying.

use std::fmt;

use lambda_runtime::Diagnostic;
use meter_core::Meter;
use meter_store::{
    ingest_payload, CommitSettings, IngestError, IngestReport, PayloadError, StoreError, UsageStore,
};
use time::OffsetDateTime;

use crate::metrics::emf_line;

/// Everything built once at init.
pub struct State<S> {
    pub store: S,
    pub meter: Meter,
    pub settings: CommitSettings,
}

/// A failed invocation. `Retryable.*` failures succeed on redelivery (Lambda
/// retries asynchronous events twice, then sends them to the on-failure
/// destination); `Permanent.*` ones need a fix and a replay of the
/// destination record.
#[derive(Debug)]
pub struct HandlerError {
    pub retryable: bool,
    pub kind: &'static str,
    pub message: String,
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for HandlerError {}

impl From<&PayloadError> for HandlerError {
    fn from(e: &PayloadError) -> Self {
        let kind = match e {
            PayloadError::Decode(_) => "UndecodablePayload",
            PayloadError::Ingest(_) if e.is_retryable() => "StoreUnavailable",
            PayloadError::Ingest(_) => "StoreRejected",
        };
        // The store's errors are neutral; say here what happens to the batch.
        let message = match e {
            PayloadError::Ingest(IngestError::Store(StoreError::TableMissing { .. })) => format!(
                "{e}: check the function's USAGE_TABLE and Region, or create the table \
                 (`bedrock-meter init`, or deploy infra/)"
            ),
            PayloadError::Ingest(IngestError::Store(_)) if e.is_retryable() => {
                format!("{e}; the batch will be retried")
            }
            _ => e.to_string(),
        };
        HandlerError {
            retryable: e.is_retryable(),
            kind,
            message,
        }
    }
}

impl From<HandlerError> for Diagnostic {
    fn from(e: HandlerError) -> Diagnostic {
        Diagnostic {
            error_type: format!(
                "{}.{}",
                if e.retryable {
                    "Retryable"
                } else {
                    "Permanent"
                },
                e.kind
            ),
            error_message: e.message,
        }
    }
}

/// Handles one delivery (any payload shape the CLI's `replay` accepts).
pub async fn handle<S: UsageStore>(
    state: &State<S>,
    payload: &[u8],
    invocation_id: &str,
) -> Result<IngestReport, HandlerError> {
    let now = OffsetDateTime::now_utc();
    let function_name =
        std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "local".into());
    let ts_ms = (now.unix_timestamp_nanos() / 1_000_000) as i64;
    match ingest_payload(&state.store, &state.meter, &state.settings, payload, now).await {
        Ok(done) => {
            for s in &done.skipped {
                tracing::warn!(
                    log_event_id = %s.location,
                    reason = s.error.reason_label(),
                    detail = %s.error,
                    "skipped a malformed invocation record"
                );
            }
            let r = &done.report;
            tracing::info!(
                invocation_id,
                records = r.records,
                counted = r.counted,
                duplicates = r.duplicates,
                skipped = r.skipped,
                skipped_by_reason = %serde_json::to_string(&r.skipped_by_reason).unwrap_or_default(),
                unpriced = r.unpriced,
                unpriced_by_reason = %serde_json::to_string(&r.unpriced_by_reason).unwrap_or_default(),
                transactions = r.transactions,
                write_units = r.write_units,
                retries = r.retries,
                control_message = r.control_message,
                "batch ingested"
            );
            println!("{}", emf_line(r, false, &function_name, ts_ms));
            for line in meter_store::metrics::unpriced_reason_lines(r, &function_name, ts_ms) {
                println!("{line}");
            }
            Ok(done.report)
        }
        Err(e) => {
            let err = HandlerError::from(&e);
            tracing::error!(
                invocation_id,
                retryable = err.retryable,
                error_type = err.kind,
                error = %e,
                "batch not ingested; it will be delivered again or sent to the on-failure destination"
            );
            println!(
                "{}",
                emf_line(&IngestReport::default(), true, &function_name, ts_ms)
            );
            Err(err)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meter_store::{MemoryUsageStore, StoreError};

    fn state() -> State<MemoryUsageStore> {
        State {
            store: MemoryUsageStore::new(),
            meter: Meter::with_defaults(),
            settings: CommitSettings {
                max_attempts: 2,
                base_backoff: std::time::Duration::from_millis(1),
                ..Default::default()
            },
        }
    }

    fn event(name: &str) -> Vec<u8> {
        let path = format!("{}/../../events/{name}.json", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[tokio::test]
    async fn a_sample_event_is_counted_and_its_redelivery_is_not() {
        let s = state();
        let first = handle(&s, &event("several-users-models"), "1")
            .await
            .unwrap();
        assert!(first.counted > 0);
        assert_eq!(first.duplicates, 0);
        let again = handle(&s, &event("several-users-models"), "2")
            .await
            .unwrap();
        assert_eq!((again.counted, again.duplicates), (0, first.counted));
    }

    #[tokio::test]
    async fn a_non_json_line_is_skipped_and_reported_while_the_good_record_counts() {
        let s = state();
        let r = handle(&s, &event("non-json-line"), "1").await.unwrap();
        assert_eq!(r.skipped, 1);
        assert_eq!(r.skipped_by_reason.get("not_json"), Some(&1));
        assert!(r.counted >= 1);
    }

    #[tokio::test]
    async fn a_control_message_counts_nothing_and_succeeds() {
        let s = state();
        let r = handle(&s, &event("control-message"), "1").await.unwrap();
        assert!(r.control_message);
        assert_eq!((r.counted, s.store.transactions()), (0, 0));
    }

    #[tokio::test]
    async fn an_undecodable_payload_fails_as_permanent() {
        let s = state();
        let err = handle(&s, br#"{"awslogs":{"data":"%%%"}}"#, "1")
            .await
            .unwrap_err();
        let d: Diagnostic = err.into();
        assert_eq!(d.error_type, "Permanent.UndecodablePayload");
    }

    #[tokio::test]
    async fn a_store_outage_fails_as_retryable_and_counts_nothing() {
        let s = state();
        for _ in 0..2 {
            s.store.push_fault(StoreError::Retryable {
                message: "connection reset".into(),
                source: None,
            });
        }
        let err = handle(&s, &event("single-invocation"), "1")
            .await
            .unwrap_err();
        assert!(err.retryable);
        assert_eq!(
            Diagnostic::from(err).error_type,
            "Retryable.StoreUnavailable"
        );
        assert_eq!(s.store.marker_count(), 0);
    }

    #[test]
    fn the_lambda_words_store_errors_for_its_own_retries() {
        let retryable = PayloadError::Ingest(IngestError::Store(StoreError::Retryable {
            message: "connection reset".into(),
            source: None,
        }));
        let msg = HandlerError::from(&retryable).message;
        assert!(msg.ends_with("; the batch will be retried"), "{msg}");
        let missing = PayloadError::Ingest(IngestError::Store(StoreError::TableMissing {
            table: "bedrock-usage".into(),
        }));
        let msg = HandlerError::from(&missing).message;
        assert!(
            msg.contains("`bedrock-usage`") && msg.contains("the function's USAGE_TABLE"),
            "{msg}"
        );
        assert!(!msg.contains("retried"), "{msg}");
    }
}
