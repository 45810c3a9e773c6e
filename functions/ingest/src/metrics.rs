//! CloudWatch embedded metric format (EMF): one JSON line per invocation
//! that CloudWatch turns into metrics, no API calls needed.

use meter_store::metrics::report_metrics;
pub use meter_store::metrics::NAMESPACE;
use meter_store::IngestReport;

/// Builds the EMF line for one invocation's report (`failed` = the batch was
/// not stored and will be delivered again).
pub fn emf_line(
    report: &IngestReport,
    failed: bool,
    function_name: &str,
    timestamp_ms: i64,
) -> String {
    let mut metrics = report_metrics(report);
    metrics.push(("FailedBatches", if failed { 1.0 } else { 0.0 }, "Count"));
    meter_store::metrics::emf_line(&metrics, function_name, timestamp_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn the_emf_line_declares_every_metric_it_carries() {
        let report = IngestReport {
            records: 7,
            counted: 5,
            duplicates: 1,
            skipped: 1,
            unpriced: 2,
            transactions: 1,
            write_units: 18.0,
            ..Default::default()
        };
        let line = emf_line(&report, false, "bedrock-meter-ingest", 1_700_000_000_000);
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
        assert_eq!(v["Unpriced"], 2.0);
        assert_eq!(v["FunctionName"], "bedrock-meter-ingest");
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Namespace"], NAMESPACE);
        assert!(!line.contains('\n'));
    }
}
