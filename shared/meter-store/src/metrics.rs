//! CloudWatch embedded metric format (EMF): one JSON line per invocation
//! that CloudWatch turns into metrics, no API calls needed. Shared by the
//! Lambdas so that they emit the same namespace and metric names.

use serde_json::{json, Map, Value};

use crate::ingest::IngestReport;

/// The metrics namespace.
pub const NAMESPACE: &str = "BedrockMeter";

/// One metric: name, value, CloudWatch unit.
pub type Metric = (&'static str, f64, &'static str);

/// The metrics every ingesting function reports for one batch.
pub fn report_metrics(r: &IngestReport) -> Vec<Metric> {
    vec![
        ("Records", r.records as f64, "Count"),
        ("Counted", r.counted as f64, "Count"),
        ("Duplicates", r.duplicates as f64, "Count"),
        ("Skipped", r.skipped as f64, "Count"),
        ("Unpriced", r.unpriced as f64, "Count"),
        ("Transactions", r.transactions as f64, "Count"),
        ("WriteUnits", r.write_units, "None"),
    ]
}

/// One EMF line per unpriced reason of the batch (`UnpricedByReason`, with
/// dimensions `FunctionName` and `Reason`), so an alarm can say why
/// invocations are unpriced. Nothing when every record was priced.
pub fn unpriced_reason_lines(
    r: &IngestReport,
    function_name: &str,
    timestamp_ms: i64,
) -> Vec<String> {
    r.unpriced_by_reason
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(reason, n)| {
            json!({
                "_aws": {
                    "Timestamp": timestamp_ms,
                    "CloudWatchMetrics": [{
                        "Namespace": NAMESPACE,
                        "Dimensions": [["FunctionName", "Reason"]],
                        "Metrics": [{"Name": "UnpricedByReason", "Unit": "Count"}],
                    }],
                },
                "FunctionName": function_name,
                "Reason": reason,
                "UnpricedByReason": *n as f64,
            })
            .to_string()
        })
        .collect()
}

/// Builds the EMF line carrying `metrics`, with dimension `FunctionName`.
pub fn emf_line(metrics: &[Metric], function_name: &str, timestamp_ms: i64) -> String {
    let mut doc = Map::new();
    doc.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["FunctionName"]],
                "Metrics": metrics.iter().map(|(n, _, u)| json!({"Name": n, "Unit": u})).collect::<Vec<_>>(),
            }],
        }),
    );
    doc.insert(
        "FunctionName".into(),
        Value::String(function_name.to_string()),
    );
    for (name, value, _) in metrics {
        doc.insert((*name).into(), json!(value));
    }
    Value::Object(doc).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_unpriced_reason_gets_its_own_line_with_a_reason_dimension() {
        let mut r = IngestReport::default();
        r.unpriced_by_reason.insert("unknown_model", 3);
        r.unpriced_by_reason.insert("missing_token_rate", 1);
        let lines = unpriced_reason_lines(&r, "fn", 1_700_000_000_000);
        assert_eq!(lines.len(), 2);
        let docs: Vec<Value> = lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        for d in &docs {
            let directive = &d["_aws"]["CloudWatchMetrics"][0];
            assert_eq!(directive["Dimensions"], json!([["FunctionName", "Reason"]]));
            assert_eq!(directive["Metrics"][0]["Name"], "UnpricedByReason");
            assert_eq!(d["FunctionName"], "fn");
        }
        let by_reason: Vec<(&str, f64)> = docs
            .iter()
            .map(|d| {
                (
                    d["Reason"].as_str().unwrap(),
                    d["UnpricedByReason"].as_f64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            by_reason,
            [("missing_token_rate", 1.0), ("unknown_model", 3.0)]
        );
        assert!(unpriced_reason_lines(&IngestReport::default(), "fn", 0).is_empty());
    }
}
