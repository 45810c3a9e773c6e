//! CloudWatch embedded metric format (EMF): one JSON line per invocation
//! that CloudWatch turns into metrics, no API calls needed. The same
//! namespace and metric names as the `ingest` function, plus the Kinesis
//! record counts.

use meter_store::metrics::report_metrics;
pub use meter_store::metrics::NAMESPACE;

use crate::batch::BatchOutcome;

/// Builds the EMF line for one batch: the ingest metrics plus the Kinesis
/// record counts.
pub fn emf_line(outcome: &BatchOutcome, function_name: &str, timestamp_ms: i64) -> String {
    let mut metrics = vec![("KinesisRecords", outcome.records.len() as f64, "Count")];
    metrics.extend(report_metrics(&outcome.report));
    metrics.push(("UndecodableRecords", outcome.undecodable as f64, "Count"));
    metrics.push(("FailedRecords", outcome.reported as f64, "Count"));
    metrics.push((
        "FailedBatches",
        if outcome.reported > 0 { 1.0 } else { 0.0 },
        "Count",
    ));
    meter_store::metrics::emf_line(&metrics, function_name, timestamp_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use meter_store::IngestReport;
    use serde_json::Value;

    #[test]
    fn the_emf_line_declares_every_metric_it_carries() {
        let outcome = BatchOutcome {
            report: IngestReport {
                records: 7,
                counted: 5,
                write_units: 18.0,
                ..Default::default()
            },
            undecodable: 1,
            reported: 2,
            ..Default::default()
        };
        let line = emf_line(&outcome, "kinesis-ingest", 1_700_000_000_000);
        let v: Value = serde_json::from_str(&line).unwrap();
        let declared: Vec<&str> = v["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap())
            .collect();
        for name in &declared {
            assert!(v[name].is_number(), "{name} missing from the root");
        }
        assert_eq!(v["Counted"], 5.0);
        assert_eq!(v["UndecodableRecords"], 1.0);
        assert_eq!(v["FailedRecords"], 2.0);
        assert_eq!(v["FailedBatches"], 1.0);
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Namespace"], NAMESPACE);
        assert!(!line.contains('\n'));
    }
}
