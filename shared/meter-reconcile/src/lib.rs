//! # meter-reconcile: bedrock-meter against the AWS bill
//!
//! `bedrock-meter reconcile` joins the meter's per-model, per-day totals to
//! the bill (CUR 2.0 exports or Cost Explorer's `GetCostAndUsage`) at the
//! grain AWS recommends (model × usage type × UTC day) and explains every
//! gap. This crate is the whole logic, sync and without the AWS SDK:
//!
//! - [`read`]: CUR 2.0 files (gzip CSV, CSV, Parquet, told apart by their
//!   content; folders; the export's manifest) into [`bill::RawLine`]s, with
//!   errors naming the file and line;
//! - [`ce`]: saved `GetCostAndUsage` responses (daily, grouped by service and
//!   usage type) into the same lines;
//! - [`bill`]: one raw line → a normalised [`bill::BillLine`]: UTC day,
//!   model (through [`names`]), token class, route and tier (the Price List
//!   grammar of `meter_core::pricelist::classify`), exact tokens and dollars;
//! - [`meter`]: the meter side (`model_day` aggregates or `report --format
//!   json` lines) with model ids normalised to the billed model (geography
//!   and `global.` prefixes stripped, application inference profiles resolved
//!   through the price table's aliases);
//! - [`reconcile`]: the join (per day and model, or per day, principal and
//!   model with [`By::Principal`]), statuses, hints, tolerances, exit code;
//! - [`render`]: table, JSON and CSV.
//!
//! Money is [`rust_decimal::Decimal`] parsed from the text the bill holds:
//! never a float (Parquet doubles are read through their shortest exact
//! decimal form, so `4.65` stays `4.65`). Days are UTC.

pub mod bill;
pub mod ce;
pub mod meter;
pub mod names;
pub mod read;
pub mod reconcile;
pub mod render;

pub use bill::{Bill, BillLine};
pub use meter::MeterRow;
pub use names::Names;
pub use reconcile::{reconcile, By, Options, Report, Row, Status};

/// Why a reconciliation could not run. Every variant is bad input (exit 2);
/// messages name the file and line and say what to do.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// A problem at one place of one file (`line` 0: the place is in `file`).
    #[error("{file}: {}{reason}", line_prefix(*line))]
    At {
        file: String,
        line: u64,
        reason: String,
    },
    /// A problem with a whole file.
    #[error("{file}: {reason}")]
    File { file: String, reason: String },
    /// The name map or stem aliases.
    #[error("billing-name map: {0}")]
    Map(String),
    /// Anything else about the request.
    #[error("{0}")]
    Usage(String),
}

fn line_prefix(line: u64) -> String {
    if line == 0 {
        String::new()
    } else {
        format!("line {line}: ")
    }
}

impl ReconcileError {
    pub(crate) fn at(file: &str, line: u64, reason: impl Into<String>) -> ReconcileError {
        ReconcileError::At {
            file: file.to_string(),
            line,
            reason: reason.into(),
        }
    }

    pub(crate) fn file(file: &str, reason: impl Into<String>) -> ReconcileError {
        ReconcileError::File {
            file: file.to_string(),
            reason: reason.into(),
        }
    }
}

/// Parses an exact decimal as bills write it: `0.0000123`, `-3.65`,
/// `1.2E-5`. Never through a float.
pub fn parse_decimal(s: &str) -> Option<rust_decimal::Decimal> {
    use std::str::FromStr;
    let t = s.trim();
    if t.is_empty() {
        return None;
    }
    rust_decimal::Decimal::from_str(t)
        .or_else(|_| rust_decimal::Decimal::from_scientific(t))
        .ok()
}

/// A decimal as plain text with trailing zeros removed (`4.65`, `-0.02`, `0`).
pub fn fmt_decimal(d: rust_decimal::Decimal) -> String {
    let n = d.normalize();
    if n.is_zero() {
        "0".to_string()
    } else {
        n.to_string()
    }
}
