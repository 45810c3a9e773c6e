//! The report as a table (rows, hints under each row, a footer), JSON (one
//! object: `rows` and `summary`) or CSV (rows only). Amounts print exactly
//! as decimals with trailing zeros removed; never through a float.

use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::fmt_decimal;
use crate::reconcile::{By, Report, Row, Status, Tokens};

const CLASSES: [&str; 4] = ["input", "output", "cache_read", "cache_write"];

fn pct(p: Option<Decimal>) -> String {
    p.map_or_else(|| "-".to_string(), |p| format!("{:.2}", p))
}

/// `=` when every class matches, `?` when the bill's unit is unknown, else
/// the differing classes as `class metered/billed`.
pub fn token_summary(r: &Row) -> String {
    if !r.tokens_known {
        return "?".to_string();
    }
    let diffs: Vec<String> = r
        .metered_tokens
        .classes()
        .iter()
        .zip(r.billed_tokens.classes().iter())
        .filter(|((_, m), (_, b))| m != b)
        .map(|((name, m), (_, b))| format!("{name} {}/{}", fmt_decimal(*m), fmt_decimal(*b)))
        .collect();
    if diffs.is_empty() {
        "=".to_string()
    } else {
        diffs.join(", ")
    }
}

/// The aligned table with hints and the footer.
pub fn table(report: &Report) -> String {
    let by_principal = report.summary.by == By::Principal;
    let mut header = vec![
        "DAY",
        "MODEL",
        "STATUS",
        "METERED_USD",
        "BILLED_USD",
        "GAP_USD",
        "GAP_%",
        "ADJ_USD",
        "TOKENS (metered/billed)",
    ];
    if by_principal {
        header.insert(1, "PRINCIPAL");
    }
    let cells: Vec<Vec<String>> = report
        .rows
        .iter()
        .map(|r| {
            let mut c = vec![
                r.day.to_string(),
                r.model.clone(),
                r.status.label().to_string(),
                fmt_decimal(r.metered_usd),
                fmt_decimal(r.billed_usd),
                fmt_decimal(r.gap_usd),
                pct(r.gap_pct),
                fmt_decimal(r.adjustments_usd),
                token_summary(r),
            ];
            if by_principal {
                c.insert(1, r.principal.clone().unwrap_or_default());
            }
            c
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for c in &cells {
        for (w, v) in widths.iter_mut().zip(c.iter()) {
            *w = (*w).max(v.chars().count());
        }
    }
    let line = |vals: &[&str]| {
        let mut s = String::new();
        for (i, v) in vals.iter().enumerate() {
            if i + 1 == vals.len() {
                s.push_str(v);
            } else {
                s.push_str(&format!("{v:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(&header);
    for (r, c) in report.rows.iter().zip(&cells) {
        out.push_str(&line(&c.iter().map(String::as_str).collect::<Vec<_>>()));
        for h in &r.hints {
            out.push_str(&format!("    - {}: {}\n", h.code, h.text));
        }
    }
    let s = &report.summary;
    out.push('\n');
    if s.no_principal_data {
        out.push_str(NO_PRINCIPAL_DATA);
        out.push('\n');
    }
    out.push_str(&format!(
        "total: metered {} USD, billed {} USD, gap {} USD; adjustments {} USD ({} USD not attributed to a model)\n",
        fmt_decimal(s.metered_usd),
        fmt_decimal(s.billed_usd),
        fmt_decimal(s.billed_usd - s.metered_usd),
        fmt_decimal(s.adjustments_usd),
        fmt_decimal(s.unattributed_adjustments_usd),
    ));
    for (usage_type, cost) in &s.not_metered {
        out.push_str(&format!(
            "not metered (Bedrock, not per token): {usage_type} {} USD\n",
            fmt_decimal(*cost)
        ));
    }
    out.push_str(&format!(
        "skipped: {} line(s) of other services, {} Bedrock line(s) outside the range\n",
        s.other_lines, s.out_of_range_lines
    ));
    if !s.missing_days.is_empty() {
        let days: Vec<String> = s.missing_days.iter().map(|d| d.to_string()).collect();
        out.push_str(&format!("no bill data for: {}\n", days.join(", ")));
    }
    if let Some(d) = s.unsettled_from {
        out.push_str(&format!(
            "unsettled: {d} and later (the bill may still change; never fails the run)\n"
        ));
    }
    let counts: Vec<String> = Status::ALL
        .iter()
        .filter_map(|st| s.counts.get(st).map(|n| format!("{} {n}", st.label())))
        .collect();
    out.push_str(&format!("rows: {}\n", counts.join(", ")));
    out.push_str(&format!(
        "exit {}: {}\n",
        s.exit_code,
        exit_meaning(s.exit_code)
    ));
    out
}

/// Why `--by principal` found nothing to compare, and what to do.
pub const NO_PRINCIPAL_DATA: &str = "no `principal` attribution in the meter for this range: set \
ATTRIBUTION_TAGS=principal (or add principal to it) on the ingest Lambdas (ingest, kinesis-ingest) \
and replay or backfill the days to attribute them; reconcile --by principal compares nothing until then";

/// What an exit code means.
pub fn exit_meaning(code: u8) -> &'static str {
    match code {
        0 => "every settled row is within tolerance",
        1 => "a settled row is beyond tolerance",
        3 => "the comparison is incomplete (unmapped billing names, days without bill data, or no principal attribution)",
        _ => "bad input",
    }
}

fn tokens_json(t: &Tokens) -> Value {
    let mut o = serde_json::Map::new();
    for (name, v) in t.classes() {
        o.insert(name.to_string(), Value::String(fmt_decimal(v)));
    }
    Value::Object(o)
}

fn row_json(r: &Row) -> Value {
    let mut v = json!({
        "day": r.day.to_string(),
        "model": r.model,
        "status": r.status.label(),
        "fails": r.fails,
        "metered_usd": fmt_decimal(r.metered_usd),
        "billed_usd": fmt_decimal(r.billed_usd),
        "gap_usd": fmt_decimal(r.gap_usd),
        "gap_pct": r.gap_pct.map(|p| format!("{p:.2}")),
        "adjustments_usd": fmt_decimal(r.adjustments_usd),
        "metered_tokens": tokens_json(&r.metered_tokens),
        "billed_tokens": if r.tokens_known { tokens_json(&r.billed_tokens) } else { Value::Null },
        "billed_cache_write_1h_tokens": fmt_decimal(r.billed_cache_write_1h),
        "hints": r.hints.iter().map(|h| json!({"code": h.code, "text": h.text})).collect::<Vec<_>>(),
        "meter_models": r.meter_models,
        "usage_types": r.usage_types,
    });
    if let (Some(p), Some(o)) = (&r.principal, v.as_object_mut()) {
        o.insert("principal".into(), Value::String(p.clone()));
    }
    v
}

/// One JSON object: `rows` and `summary` (amounts as exact decimal strings).
pub fn json(report: &Report) -> String {
    let s = &report.summary;
    let doc = json!({
        "rows": report.rows.iter().map(row_json).collect::<Vec<_>>(),
        "summary": {
            "metered_usd": fmt_decimal(s.metered_usd),
            "billed_usd": fmt_decimal(s.billed_usd),
            "adjustments_usd": fmt_decimal(s.adjustments_usd),
            "unattributed_adjustments_usd": fmt_decimal(s.unattributed_adjustments_usd),
            "not_metered": s.not_metered.iter().map(|(k, v)| (k.clone(), Value::String(fmt_decimal(*v)))).collect::<serde_json::Map<_, _>>(),
            "other_lines": s.other_lines,
            "out_of_range_lines": s.out_of_range_lines,
            "missing_days": s.missing_days.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
            "unsettled_from": s.unsettled_from.map(|d| d.to_string()),
            "by": match s.by { By::Model => "model", By::Principal => "principal" },
            "no_principal_data": s.no_principal_data,
            "counts": s.counts.iter().map(|(k, v)| (k.label().to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "exit_code": s.exit_code,
        }
    });
    doc.to_string() + "\n"
}

/// A CSV cell; text a spreadsheet would run as a formula gets a leading `'`
/// (billing names and model ids come from outside).
fn cell(v: &str) -> String {
    let numeric = crate::parse_decimal(v).is_some();
    let v = if !numeric && v.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{v}")
    } else {
        v.to_string()
    };
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v
    }
}

/// Rows as CSV with one header.
pub fn csv(report: &Report) -> String {
    let mut header: Vec<String> = [
        "day",
        "model",
        "status",
        "fails",
        "metered_usd",
        "billed_usd",
        "gap_usd",
        "gap_pct",
        "adjustments_usd",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    header.extend(CLASSES.iter().map(|c| format!("metered_{c}_tokens")));
    header.extend(CLASSES.iter().map(|c| format!("billed_{c}_tokens")));
    header.push("billed_cache_write_1h_tokens".into());
    header.push("hints".into());
    let by_principal = report.summary.by == By::Principal;
    if by_principal {
        header.insert(1, "principal".into());
    }
    let mut out = header.join(",") + "\n";
    for r in &report.rows {
        let mut v = vec![
            r.day.to_string(),
            r.model.clone(),
            r.status.label().to_string(),
            r.fails.to_string(),
            fmt_decimal(r.metered_usd),
            fmt_decimal(r.billed_usd),
            fmt_decimal(r.gap_usd),
            r.gap_pct.map(|p| format!("{p:.2}")).unwrap_or_default(),
            fmt_decimal(r.adjustments_usd),
        ];
        v.extend(
            r.metered_tokens
                .classes()
                .iter()
                .map(|(_, n)| fmt_decimal(*n)),
        );
        v.extend(r.billed_tokens.classes().iter().map(|(_, n)| {
            if r.tokens_known {
                fmt_decimal(*n)
            } else {
                String::new()
            }
        }));
        v.push(fmt_decimal(r.billed_cache_write_1h));
        v.push(
            r.hints
                .iter()
                .map(|h| format!("{}: {}", h.code, h.text))
                .collect::<Vec<_>>()
                .join("; "),
        );
        if by_principal {
            v.insert(1, r.principal.clone().unwrap_or_default());
        }
        out.push_str(&v.iter().map(|c| cell(c)).collect::<Vec<_>>().join(","));
        out.push('\n');
    }
    out
}
