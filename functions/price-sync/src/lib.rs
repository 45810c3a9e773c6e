//! The scheduled price sync: download the AWS Price List's Bedrock offers,
//! sync them onto the newest stored price table (else the built-in) with the
//! same library function as `bedrock-meter prices sync`
//! ([`meter_core::pricelist::sync`]), and store the result as the newest
//! table when it is valid and changed. The ingest functions pick it up at
//! their next re-check (at most 10 minutes).
//!
//! Why the bulk files and not `pricing:GetProducts`: they are the same data,
//! public (no credentials, so the role needs no `pricing:*` permission and
//! works in any partition Region where the function runs), one file per
//! offer and Region instead of paginated API calls, and the CLI already reads
//! them; the sync library understands both shapes.

pub mod fetch;

use anyhow::{bail, Context};
use meter_core::pricelist::{self, map::PriceMap, SyncOptions};
use meter_store::prices::{self, PriceStore, StoreOutcome};
use serde::Serialize;
use time::OffsetDateTime;

use crate::fetch::OfferSource;

/// What to sync.
#[derive(Debug, Clone)]
pub struct SyncJob {
    /// Regions whose offer files to read (`PRICE_SYNC_REGIONS`).
    pub regions: Vec<String>,
    /// Price List names to model ids (the built-in map in the Lambda).
    pub map: PriceMap,
}

/// Settings of the Lambda from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `PRICE_SYNC_REGIONS`, comma-separated (default: `AWS_REGION`).
    pub regions: Vec<String>,
    /// `PRICE_LIST_URL` (default: the public endpoint).
    pub price_list_url: String,
}

impl Settings {
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> anyhow::Result<Settings> {
        let regions: Vec<String> = get("PRICE_SYNC_REGIONS")
            .filter(|v| !v.trim().is_empty())
            .or_else(|| get("AWS_REGION"))
            .unwrap_or_default()
            .split(',')
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty())
            .collect();
        if regions.is_empty() {
            bail!("PRICE_SYNC_REGIONS is empty: set it to the Regions to price, e.g. `us-east-1,eu-west-1`");
        }
        if let Some(bad) = regions.iter().find(|r| {
            !r.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        }) {
            bail!("PRICE_SYNC_REGIONS: `{bad}` is not a Region code such as us-east-1");
        }
        let price_list_url = get("PRICE_LIST_URL")
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| fetch::PRICE_LIST_URL.to_string());
        Ok(Settings {
            regions,
            price_list_url,
        })
    }
}

/// What one run did (the Lambda's response and its log line).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Summary {
    /// `stored`, or `unchanged` when the newest stored table is already this one.
    pub result: &'static str,
    /// The table synced onto: `stored <sk>` or `built-in`.
    pub base: String,
    pub sk: String,
    pub version: String,
    pub checked: String,
    /// Compressed size of the stored item's table, when written.
    pub bytes: Option<usize>,
    pub changed_rates: usize,
    pub entries_added: usize,
    pub offers: Vec<String>,
}

/// One run: base, offers, sync, store. A data error (a renamed model, an
/// unknown unit, ...) fails the run and stores nothing.
pub async fn run<P: PriceStore, O: OfferSource>(
    store: &P,
    offers: &O,
    job: &SyncJob,
    now: OffsetDateTime,
) -> anyhow::Result<Summary> {
    let (base_text, base) = match prices::load_newest(store).await {
        Ok(Some((pointer, _, text))) => (text, format!("stored {}", pointer.sk)),
        Ok(None) => (
            meter_core::pricing::DEFAULT_PRICE_TABLE.to_string(),
            "built-in".to_string(),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "the stored price table is unusable; syncing onto the built-in");
            (
                meter_core::pricing::DEFAULT_PRICE_TABLE.to_string(),
                "built-in".to_string(),
            )
        }
    };
    let files = offers
        .offers(&job.regions)
        .await
        .context("cannot download the Price List offers")?;
    let opts = SyncOptions {
        from: None,
        regions: job.regions.clone(),
    };
    let outcome = pricelist::sync(&files, &job.map, &base_text, &opts)?;
    let report = &outcome.report;
    let Some(table) = &outcome.table else {
        bail!(
            "the Price List data has errors, nothing stored: {}; fix the map \
             (shared/meter-core/data/pricelist-map.toml) and redeploy, or run \
             `bedrock-meter prices sync --fetch` to see the report",
            serde_json::to_string(&report.errors).unwrap_or_default()
        );
    };
    let stored_at = now
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let (result, pointer, bytes) = match prices::store_table(store, table, &stored_at).await? {
        StoreOutcome::Stored { pointer, bytes } => ("stored", pointer, Some(bytes)),
        StoreOutcome::Unchanged { pointer } => ("unchanged", pointer, None),
    };
    let summary = Summary {
        result,
        base,
        sk: pointer.sk,
        version: pointer.version,
        checked: pointer.checked,
        bytes,
        changed_rates: report.changed.len(),
        entries_added: report.entries_added,
        offers: report
            .offers
            .iter()
            .map(|o| format!("{} {}", o.offer, o.version))
            .collect(),
    };
    tracing::info!(
        result = summary.result,
        base = %summary.base,
        sk = %summary.sk,
        checked = %summary.checked,
        bytes = summary.bytes,
        changed_rates = summary.changed_rates,
        entries_added = summary.entries_added,
        unmapped = report.unmapped.len(),
        not_in_price_list = report.not_in_price_list.len(),
        "price sync done"
    );
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> anyhow::Result<Settings> {
        Settings::from_lookup(|k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn regions_default_to_the_functions_own_and_bad_ones_are_refused() {
        assert_eq!(
            settings(&[("AWS_REGION", "eu-west-1")]).unwrap().regions,
            ["eu-west-1"]
        );
        // The templates pass an empty parameter through: the function's Region.
        assert_eq!(
            settings(&[("PRICE_SYNC_REGIONS", ""), ("AWS_REGION", "eu-west-1")])
                .unwrap()
                .regions,
            ["eu-west-1"]
        );
        let s = settings(&[("PRICE_SYNC_REGIONS", " us-east-1, eu-west-1 ")]).unwrap();
        assert_eq!(s.regions, ["us-east-1", "eu-west-1"]);
        assert_eq!(s.price_list_url, fetch::PRICE_LIST_URL);
        let err = settings(&[("PRICE_SYNC_REGIONS", "us-east-1,../x")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`../x`"), "{err}");
        assert!(settings(&[])
            .unwrap_err()
            .to_string()
            .contains("PRICE_SYNC_REGIONS"));
    }
}
