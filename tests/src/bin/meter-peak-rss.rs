//! Test helper: meters one payload file with the default limits in a process
//! of its own and prints one JSON line with what it found and how far its
//! peak resident memory rose while metering, so that other tests running at
//! the same time cannot disturb the measurement.
//!
//! `meter-peak-rss FILE`. Linux only (reads /proc/self/status).

use std::panic::AssertUnwindSafe;
use std::process::ExitCode;

use meter_core::{DecodeError, Meter};

/// A field of /proc/self/status in KiB (`VmRSS:`, `VmHWM:`).
fn status_kib(field: &str) -> Result<u64, String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("cannot read /proc/self/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("{field} missing from /proc/self/status"))
}

/// The error's variant name (`TooLarge`, `Gzip`, ...).
fn error_kind(e: &DecodeError) -> String {
    format!("{e:?}")
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect()
}

fn run() -> Result<serde_json::Value, String> {
    let path = std::env::args_os()
        .nth(1)
        .ok_or("usage: meter-peak-rss FILE")?;
    let input = std::fs::read(&path).map_err(|e| format!("cannot read {path:?}: {e}"))?;
    let meter = Meter::with_defaults();
    let rss_before = status_kib("VmRSS:")?;
    // Reset the high-water mark to the current RSS when the kernel allows
    // it; otherwise the peak may include set-up, which only overestimates.
    let hwm_reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| meter.meter_payload(&input)));
    let peak = status_kib("VmHWM:")?;
    let mut report = serde_json::json!({
        "input_bytes": input.len(),
        "rss_before_kib": rss_before,
        "peak_kib": peak,
        "growth_kib": peak.saturating_sub(rss_before),
        "hwm_reset": hwm_reset,
    });
    match outcome {
        Err(_) => report["outcome"] = "panicked".into(),
        Ok(Err(e)) => {
            report["outcome"] = "error".into();
            report["error_kind"] = error_kind(&e).into();
            report["error"] = e.to_string().into();
        }
        Ok(Ok(batch)) => {
            report["outcome"] = "metered".into();
            report["records"] = batch.records.len().into();
            report["skipped"] = batch
                .skipped
                .iter()
                .map(|s| s.error.reason_label())
                .collect::<Vec<_>>()
                .into();
        }
    }
    Ok(report)
}

fn main() -> ExitCode {
    match run() {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("meter-peak-rss: {e}");
            ExitCode::FAILURE
        }
    }
}
