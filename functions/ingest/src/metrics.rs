//! CloudWatch embedded metric format (EMF): one JSON line per invocation
//! that CloudWatch turns into metrics, no API calls needed.

use meter_store::IngestReport;
use serde_json::{json, Map, Value};

/// The metrics namespace.
pub const NAMESPACE: &str = "BedrockMeter";

/// Builds the EMF line for one invocation's report (`failed` = the batch was
/// not stored and will be delivered again).
pub fn emf_line(
    report: &IngestReport,
    failed: bool,
    function_name: &str,
    timestamp_ms: i64,
) -> String {
    let values: [(&str, f64, &str); 8] = [
        ("Records", report.records as f64, "Count"),
        ("Counted", report.counted as f64, "Count"),
        ("Duplicates", report.duplicates as f64, "Count"),
        ("Skipped", report.skipped as f64, "Count"),
        ("Unpriced", report.unpriced as f64, "Count"),
        ("Transactions", report.transactions as f64, "Count"),
        ("WriteUnits", report.write_units, "None"),
        ("FailedBatches", if failed { 1.0 } else { 0.0 }, "Count"),
    ];
    let mut doc = Map::new();
    doc.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["FunctionName"]],
                "Metrics": values.iter().map(|(n, _, u)| json!({"Name": n, "Unit": u})).collect::<Vec<_>>(),
            }],
        }),
    );
    doc.insert(
        "FunctionName".into(),
        Value::String(function_name.to_string()),
    );
    for (name, value, _) in values {
        doc.insert(name.into(), json!(value));
    }
    Value::Object(doc).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

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
