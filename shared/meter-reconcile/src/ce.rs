//! Cost Explorer: saved `GetCostAndUsage` responses as bill lines.
//!
//! The request reconcile expects (and `--ce` sends):
//! granularity `DAILY`, metrics `UnblendedCost` and `UsageQuantity`, grouped
//! by `SERVICE` and `USAGE_TYPE`, usage filtered with `RECORD_TYPE = Usage`
//! (credits and refunds in a second response filtered to them). Each group
//! of each day becomes one [`RawLine`]:
//! - service `Amazon Bedrock` / `Amazon Bedrock Service` are the
//!   `AmazonBedrock` / `AmazonBedrockService` offers; a service named
//!   `... (Amazon Bedrock Edition)` is the Marketplace model of that name;
//!   other services are not Bedrock;
//! - the line type is the `RECORD_TYPE` group key when there is one, else
//!   `Credit` for a negative amount (usage is never negative), else `Usage`;
//! - `Estimated: true` days are marked so hints can say the data is not final.
//!
//! Every period in `ResultsByTime` counts as a day with bill data, even with
//! no groups: Cost Explorer answered, and there was no spend.

use meter_core::pricelist::offer::MARKETPLACE_OFFER;
use rust_decimal::Decimal;
use serde_json::Value;

use crate::bill::RawLine;
use crate::{parse_decimal, ReconcileError};

/// Reads one saved response; `sink` gets each line, `day` each period.
pub fn read_response(
    file: &str,
    text: &str,
    sink: &mut dyn FnMut(RawLine) -> Result<(), ReconcileError>,
    period: &mut dyn FnMut(RawLine) -> Result<(), ReconcileError>,
) -> Result<(), ReconcileError> {
    let doc: Value = serde_json::from_str(text).map_err(|e| {
        ReconcileError::at(
            file,
            e.line() as u64,
            format!("not a GetCostAndUsage response ({e}); save it with `aws ce get-cost-and-usage ... --output json`"),
        )
    })?;
    read_value(file, &doc, sink, period)
}

/// [`read_response`] on a parsed document (also what `--ce` builds).
pub fn read_value(
    file: &str,
    doc: &Value,
    sink: &mut dyn FnMut(RawLine) -> Result<(), ReconcileError>,
    period: &mut dyn FnMut(RawLine) -> Result<(), ReconcileError>,
) -> Result<(), ReconcileError> {
    let bad = |reason: String| ReconcileError::file(file, reason);
    let results = doc
        .get("ResultsByTime")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("no `ResultsByTime`: not a GetCostAndUsage response".into()))?;
    let keys: Vec<String> = doc
        .get("GroupDefinitions")
        .and_then(Value::as_array)
        .map(|defs| {
            defs.iter()
                .map(|d| {
                    d.get("Key")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                })
                .collect()
        })
        .unwrap_or_default();
    let pos = |k: &str| keys.iter().position(|x| x == k);
    let (service_at, usage_at, record_at) = (pos("SERVICE"), pos("USAGE_TYPE"), pos("RECORD_TYPE"));
    if usage_at.is_none() {
        return Err(bad(format!(
            "grouped by {:?}: reconcile needs the response grouped by USAGE_TYPE (and SERVICE), \
             daily: aws ce get-cost-and-usage --granularity DAILY --metrics UnblendedCost UsageQuantity \
             --group-by Type=DIMENSION,Key=SERVICE Type=DIMENSION,Key=USAGE_TYPE",
            keys
        )));
    }
    for (i, result) in results.iter().enumerate() {
        let at = format!("{file}: ResultsByTime[{i}]");
        let text_at = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_string();
        let tp = result.get("TimePeriod");
        let start = text_at(tp.and_then(|t| t.get("Start")));
        let end = text_at(tp.and_then(|t| t.get("End")));
        let estimated = result
            .get("Estimated")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let base = RawLine {
            file: at.clone(),
            line: 0,
            start,
            end: Some(end),
            estimated,
            ..RawLine::default()
        };
        period(base.clone())?;
        let groups = result.get("Groups").and_then(Value::as_array);
        for (j, g) in groups.into_iter().flatten().enumerate() {
            let key_of = |k: Option<usize>| {
                k.and_then(|k| g.get("Keys").and_then(|ks| ks.get(k)))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            };
            let metric = |m: &str, f: &str| {
                g.get("Metrics")
                    .and_then(|ms| ms.get(m))
                    .and_then(|v| v.get(f))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            };
            let usage_type = key_of(usage_at).unwrap_or_default();
            let service = key_of(service_at);
            let cost = metric("UnblendedCost", "Amount").ok_or_else(|| {
                ReconcileError::file(
                    &format!("{at}.Groups[{j}]"),
                    "no UnblendedCost: request the metrics UnblendedCost and UsageQuantity",
                )
            })?;
            let negative = parse_decimal(&cost).is_some_and(|c| c < Decimal::ZERO);
            let line_item_type = match key_of(record_at) {
                Some(r) => r,
                None if negative => "Credit".to_string(),
                None => "Usage".to_string(),
            };
            let mut line = RawLine {
                file: format!("{at}.Groups[{j}]"),
                line_item_type,
                usage_type: usage_type.clone(),
                amount: metric("UsageQuantity", "Amount").unwrap_or_else(|| "0".into()),
                unit: metric("UsageQuantity", "Unit"),
                currency: metric("UnblendedCost", "Unit"),
                cost,
                ..base.clone()
            };
            match service.as_deref() {
                Some("Amazon Bedrock") => line.product_code = "AmazonBedrock".into(),
                Some("Amazon Bedrock Service") => line.product_code = "AmazonBedrockService".into(),
                Some(s) if s.trim_end().ends_with("(Amazon Bedrock Edition)") => {
                    line.product_code = MARKETPLACE_OFFER.into();
                    line.product.insert("product_name".into(), s.to_string());
                }
                Some(other) => line.product_code = other.to_string(),
                // Without SERVICE only the usage type tells: Marketplace
                // lines stay unnamed (unmapped).
                None if usage_type.contains("MP:") => line.product_code = MARKETPLACE_OFFER.into(),
                None => line.product_code = "AmazonBedrock".into(),
            }
            if line.unit.as_deref() == Some("N/A") {
                line.unit = None;
            }
            sink(line)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_become_lines_with_their_service_and_negative_groups_become_credits() {
        let doc = serde_json::json!({
            "GroupDefinitions": [{"Type":"DIMENSION","Key":"SERVICE"},{"Type":"DIMENSION","Key":"USAGE_TYPE"}],
            "ResultsByTime": [{
                "TimePeriod": {"Start":"2026-11-10","End":"2026-11-11"}, "Estimated": true,
                "Groups": [
                    {"Keys":["Claude Sonnet 4.5 (Amazon Bedrock Edition)","USE1-MP:USE1_InputTokenCount_Global-Units"],
                     "Metrics":{"UnblendedCost":{"Amount":"6","Unit":"USD"},"UsageQuantity":{"Amount":"2","Unit":"Units"}}},
                    {"Keys":["Amazon Bedrock","USE1-NovaMicro-input-tokens"],
                     "Metrics":{"UnblendedCost":{"Amount":"-0.02","Unit":"USD"},"UsageQuantity":{"Amount":"0","Unit":"N/A"}}}
                ]}, {"TimePeriod": {"Start":"2026-11-11","End":"2026-11-12"}, "Groups": []}]
        });
        let mut lines = Vec::new();
        let mut periods = Vec::new();
        read_value(
            "ce.json",
            &doc,
            &mut |l| {
                lines.push(l);
                Ok(())
            },
            &mut |p| {
                periods.push(p.start);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(periods, ["2026-11-10", "2026-11-11"]);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].product_code, MARKETPLACE_OFFER);
        assert_eq!(
            lines[0].product.get("product_name").map(String::as_str),
            Some("Claude Sonnet 4.5 (Amazon Bedrock Edition)")
        );
        assert!(lines[0].estimated);
        assert_eq!(lines[0].line_item_type, "Usage");
        assert_eq!(lines[1].line_item_type, "Credit");
        assert_eq!(lines[1].product_code, "AmazonBedrock");
        assert_eq!(lines[1].unit, None);
    }

    #[test]
    fn a_response_not_grouped_by_usage_type_is_refused_with_the_command_to_fix_it() {
        let doc = serde_json::json!({"GroupDefinitions": [{"Type":"DIMENSION","Key":"SERVICE"}], "ResultsByTime": []});
        let e = read_value("ce.json", &doc, &mut |_| Ok(()), &mut |_| Ok(()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("ce.json") && e.contains("USAGE_TYPE"), "{e}");
    }
}
