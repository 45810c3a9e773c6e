//! CloudWatch embedded metric format (EMF): one JSON line per invocation
//! that CloudWatch turns into metrics, no API calls needed. The same
//! namespace and metric names as the `ingest` function, plus the Kinesis
//! record counts.

use serde_json::{json, Map, Value};

use crate::batch::BatchOutcome;

/// The metrics namespace (shared with the `ingest` function).
pub const NAMESPACE: &str = "BedrockMeter";

/// Builds the EMF line for one batch.
pub fn emf_line(outcome: &BatchOutcome, function_name: &str, timestamp_ms: i64) -> String {
    let r = &outcome.report;
    let values: [(&str, f64, &str); 11] = [
        ("KinesisRecords", outcome.records.len() as f64, "Count"),
        ("Records", r.records as f64, "Count"),
        ("Counted", r.counted as f64, "Count"),
        ("Duplicates", r.duplicates as f64, "Count"),
        ("Skipped", r.skipped as f64, "Count"),
        ("Unpriced", r.unpriced as f64, "Count"),
        ("Transactions", r.transactions as f64, "Count"),
        ("WriteUnits", r.write_units, "None"),
        ("UndecodableRecords", outcome.undecodable as f64, "Count"),
        ("FailedRecords", outcome.reported as f64, "Count"),
        (
            "FailedBatches",
            if outcome.reported > 0 { 1.0 } else { 0.0 },
            "Count",
        ),
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
    use meter_store::IngestReport;

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
