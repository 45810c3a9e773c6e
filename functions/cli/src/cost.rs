//! `bedrock-meter cost REQUEST_ID...`: what one request cost, from its
//! request-cost item (one or two GetItems per id).
//!
//! With `REQUEST_COSTS=on` the meter keeps, per counted invocation, its
//! user, model, UTC day, token counts and exact cost (never content); records
//! counted before the switch to marker buckets have the same in their
//! per-record marker. They live for `MARKER_TTL_DAYS` (default 35) after
//! they were written: one whose `expires_at` is past is reported as
//! `expired` even while DynamoDB has not deleted it yet, and a missing one
//! as `not_found` (never counted, counted with `REQUEST_COSTS` off, or
//! already deleted by TTL).

use std::process::ExitCode;

use clap::Args;
use meter_store::dynamo::MarkerRow;
use meter_store::store::{Access, OperatorError};
use meter_store::DynamoDbUsageStore;
use serde::Serialize;

use crate::Format;

#[derive(Args)]
pub struct CostArgs {
    /// The `requestId`s of invocations (what the Bedrock response returned
    /// as `x-amzn-RequestId`).
    #[arg(required = true, value_name = "REQUEST_ID")]
    request_ids: Vec<String>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// The answer for one request id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CostLine {
    pub request_id: String,
    /// `found`, `expired` (past `expires_at`, not yet deleted) or
    /// `not_found` (never counted, or deleted after `MARKER_TTL_DAYS`).
    pub status: &'static str,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub marker: Option<MarkerRow>,
}

/// Classifies a lookup at `now` (epoch seconds).
pub fn classify(request_id: &str, marker: Option<MarkerRow>, now: i64) -> CostLine {
    let status = match &marker {
        None => "not_found",
        Some(m) if m.expires_at.is_some_and(|e| e <= now) => "expired",
        Some(_) => "found",
    };
    CostLine {
        request_id: request_id.to_string(),
        status,
        // An expired marker's figures are no longer guaranteed: not shown.
        marker: marker.filter(|_| status == "found"),
    }
}

pub async fn run(store: &DynamoDbUsageStore, args: CostArgs) -> anyhow::Result<ExitCode> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut lines = Vec::with_capacity(args.request_ids.len());
    for id in &args.request_ids {
        let id = id.trim();
        anyhow::ensure!(
            !id.is_empty() && id.len() <= meter_core::MAX_REQUEST_ID_BYTES,
            "a request id is the invocation's `requestId` (1 to {} bytes); got `{}`",
            meter_core::MAX_REQUEST_ID_BYTES,
            meter_core::decode::truncate_for_log(id, 60)
        );
        let marker = store
            .marker(&format!("r:{id}"))
            .await
            .map_err(|e| OperatorError::new(&e, &store.conn_info(), Access::Read))?;
        lines.push(classify(id, marker, now));
    }
    crate::emit(&render(&lines, args.format));
    let missing = lines.iter().filter(|l| l.status != "found").count();
    if missing > 0 {
        eprintln!(
            "{missing} of {} request ids have no live request-cost record: they are kept only when \
             the meter runs with REQUEST_COSTS=on, for MARKER_TTL_DAYS (default 35) days after the \
             invocation was counted",
            lines.len()
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

const HEADERS: [&str; 13] = [
    "request_id",
    "status",
    "user",
    "model",
    "day",
    "input",
    "output",
    "cache_read",
    "cache_write",
    "errors",
    "unpriced",
    "cost_usd",
    "expires_at",
];

fn cells(l: &CostLine) -> Vec<String> {
    let m = l.marker.as_ref();
    let text = |f: fn(&MarkerRow) -> Option<String>| m.and_then(f).unwrap_or_default();
    let num = |f: fn(&MarkerRow) -> u128| m.map(|m| f(m).to_string()).unwrap_or_default();
    vec![
        l.request_id.clone(),
        l.status.to_string(),
        text(|m| m.user.clone()),
        text(|m| m.model.clone()),
        text(|m| m.day.clone()),
        num(|m| m.input_tokens),
        num(|m| m.output_tokens),
        num(|m| m.cache_read_input_tokens),
        num(|m| m.cache_write_input_tokens),
        num(|m| m.errors),
        num(|m| m.unpriced_invocations),
        text(|m| Some(m.cost_usd.clone())),
        text(|m| m.expires_at.map(|e| e.to_string())),
    ]
}

fn render(lines: &[CostLine], format: Format) -> String {
    let mut out = String::new();
    match format {
        Format::Json => {
            for l in lines {
                out.push_str(&serde_json::to_string(l).unwrap_or_default());
                out.push('\n');
            }
        }
        Format::Csv => {
            let rows: Vec<Vec<String>> = lines.iter().map(cells).collect();
            out.push_str(&crate::table::csv(&HEADERS, &rows));
        }
        Format::Table => {
            let rows: Vec<Vec<String>> = lines.iter().map(cells).collect();
            out.push_str(&crate::table::text(&HEADERS, &rows, usize::MAX));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marker(expires_at: i64) -> MarkerRow {
        MarkerRow {
            record_id: "r:abc".into(),
            user: Some("=alice".into()),
            model: Some("m".into()),
            day: Some("2026-11-20".into()),
            errors: 0,
            input_tokens: 10,
            output_tokens: 5,
            cache_read_input_tokens: 0,
            cache_write_input_tokens: 0,
            unpriced_invocations: 0,
            cost_usd: "0.0000123".into(),
            committed_at: None,
            expires_at: Some(expires_at),
        }
    }

    #[test]
    fn a_marker_past_its_expiry_is_expired_and_shows_no_figures() {
        let l = classify("abc", Some(marker(1_000)), 1_000);
        assert_eq!((l.status, l.marker.is_none()), ("expired", true));
        let l = classify("abc", Some(marker(1_001)), 1_000);
        assert_eq!(l.status, "found");
        assert_eq!(classify("abc", None, 1_000).status, "not_found");
    }

    #[test]
    fn every_format_carries_the_cost_and_neutralises_formulas() {
        let lines = [
            classify("abc", Some(marker(2_000)), 1_000),
            classify("gone", None, 1_000),
        ];
        let csv = render(&lines, Format::Csv);
        let mut rows = csv.lines();
        assert_eq!(rows.next(), Some(HEADERS.join(",").as_str()));
        assert_eq!(
            rows.next(),
            Some("abc,found,'=alice,m,2026-11-20,10,5,0,0,0,0,0.0000123,2000")
        );
        assert_eq!(rows.next(), Some("gone,not_found,,,,,,,,,,,"));
        let json = render(&lines, Format::Json);
        let first: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
        assert_eq!(first["cost_usd"], "0.0000123");
        assert_eq!(first["status"], "found");
        let second: serde_json::Value = serde_json::from_str(json.lines().nth(1).unwrap()).unwrap();
        assert_eq!(second["status"], "not_found");
        assert!(second.get("cost_usd").is_none());
        assert!(render(&lines, Format::Table).contains("0.0000123"));
    }
}
