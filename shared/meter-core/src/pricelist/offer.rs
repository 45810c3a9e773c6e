//! Reading AWS Price List files: bulk offer files (`index.json`), `GetProducts`
//! dumps (`{"FormatVersion": ..., "PriceList": ["<json>", ...]}`) and region
//! indexes (`region_index.json`), recognised by their content.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;
use time::Date;

use super::SyncError;
use crate::resolve::Day;

/// The three offer codes that hold Bedrock model prices.
pub const OFFER_CODES: [&str; 3] = [
    "AmazonBedrock",
    "AmazonBedrockFoundationModels",
    "AmazonBedrockService",
];

/// The Marketplace offer: models are named by `servicename` only.
pub const MARKETPLACE_OFFER: &str = "AmazonBedrockFoundationModels";

/// One on-demand price dimension of one product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceRow {
    pub offer: String,
    /// Where the row came from (file path or URL), for reports.
    pub source: String,
    pub version: String,
    pub published: Date,
    pub sku: String,
    pub region: String,
    pub usagetype: String,
    pub servicename: Option<String>,
    pub model: Option<String>,
    pub feature: Option<String>,
    pub unit: String,
    /// `pricePerUnit.USD` exactly as published (a decimal string).
    pub usd: String,
    pub description: String,
    /// Price dimensions of this SKU's on-demand terms (1 for token rows;
    /// more means tiered pricing, which the sync refuses).
    pub dimensions: usize,
}

/// What a Price List file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OfferFile {
    Offer {
        offer: String,
        version: String,
        published: Date,
        rows: Vec<PriceRow>,
    },
    /// `region_index.json`: Region code → `currentVersionUrl`.
    RegionIndex(BTreeMap<String, String>),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bulk {
    offer_code: String,
    version: String,
    publication_date: String,
    #[serde(default)]
    products: BTreeMap<String, Product>,
    #[serde(default)]
    terms: Terms,
}

#[derive(Deserialize, Default)]
struct Terms {
    #[serde(default, rename = "OnDemand")]
    on_demand: BTreeMap<String, BTreeMap<String, Term>>,
}

#[derive(Deserialize)]
struct Product {
    #[serde(default)]
    attributes: BTreeMap<String, Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Term {
    #[serde(default)]
    price_dimensions: BTreeMap<String, Dimension>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Dimension {
    #[serde(default)]
    unit: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    price_per_unit: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProductsItem {
    product: ItemProduct,
    service_code: String,
    #[serde(default)]
    terms: ItemTerms,
    version: String,
    publication_date: String,
}

/// `GetProducts` terms: `OnDemand` maps term codes to terms directly (the
/// bulk file has a SKU level in between).
#[derive(Deserialize, Default)]
struct ItemTerms {
    #[serde(default, rename = "OnDemand")]
    on_demand: BTreeMap<String, Term>,
}

#[derive(Deserialize)]
struct ItemProduct {
    sku: String,
    #[serde(default)]
    attributes: BTreeMap<String, Value>,
}

#[derive(Deserialize)]
struct RegionIndex {
    regions: BTreeMap<String, RegionEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RegionEntry {
    current_version_url: String,
}

fn attr(attrs: &BTreeMap<String, Value>, key: &str) -> Option<String> {
    attrs
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn publication_day(source: &str, s: &str) -> Result<Date, SyncError> {
    s.get(..10)
        .and_then(Day::parse)
        .map(Day::date)
        .ok_or_else(|| SyncError::Offer {
            file: source.to_string(),
            reason: format!("publicationDate `{s}` does not start with YYYY-MM-DD"),
        })
}

/// Rows of one product's on-demand terms.
#[allow(clippy::too_many_arguments)]
fn rows_of(
    out: &mut Vec<PriceRow>,
    source: &str,
    offer: &str,
    version: &str,
    published: Date,
    sku: &str,
    attrs: &BTreeMap<String, Value>,
    terms: Option<&BTreeMap<String, Term>>,
) {
    let Some(terms) = terms else { return };
    let dims: Vec<&Dimension> = terms
        .values()
        .flat_map(|t| t.price_dimensions.values())
        .collect();
    for d in &dims {
        out.push(PriceRow {
            offer: offer.to_string(),
            source: source.to_string(),
            version: version.to_string(),
            published,
            sku: sku.to_string(),
            region: attr(attrs, "regionCode").unwrap_or_default(),
            usagetype: attr(attrs, "usagetype").unwrap_or_default(),
            servicename: attr(attrs, "servicename"),
            model: attr(attrs, "model"),
            feature: attr(attrs, "feature"),
            unit: d.unit.clone(),
            usd: d.price_per_unit.get("USD").cloned().unwrap_or_default(),
            description: d.description.clone(),
            dimensions: dims.len(),
        });
    }
}

/// Parses one file, recognising its shape by content. `source` names it in
/// errors and reports.
pub fn parse_file(source: &str, text: &str) -> Result<OfferFile, SyncError> {
    let bad = |reason: String| SyncError::Offer {
        file: source.to_string(),
        reason,
    };
    let value: Value = serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let obj = value
        .as_object()
        .ok_or_else(|| bad("not a JSON object".into()))?;
    if obj.contains_key("products") && obj.contains_key("offerCode") {
        let bulk: Bulk = serde_json::from_value(value)
            .map_err(|e| bad(format!("not a Price List offer file: {e}")))?;
        let published = publication_day(source, &bulk.publication_date)?;
        let mut rows = Vec::new();
        for (sku, product) in &bulk.products {
            rows_of(
                &mut rows,
                source,
                &bulk.offer_code,
                &bulk.version,
                published,
                sku,
                &product.attributes,
                bulk.terms.on_demand.get(sku),
            );
        }
        return Ok(OfferFile::Offer {
            offer: bulk.offer_code,
            version: bulk.version,
            published,
            rows,
        });
    }
    if let Some(list) = obj.get("PriceList").and_then(Value::as_array) {
        let mut rows = Vec::new();
        let mut header: Option<(String, String, Date)> = None;
        for (i, entry) in list.iter().enumerate() {
            let item: ProductsItem = match entry {
                Value::String(s) => serde_json::from_str(s),
                other => serde_json::from_value(other.clone()),
            }
            .map_err(|e| bad(format!("PriceList[{i}] is not a GetProducts product: {e}")))?;
            let published = publication_day(source, &item.publication_date)?;
            let this = (item.service_code.clone(), item.version.clone(), published);
            match &header {
                None => header = Some(this),
                Some(h) if *h != this => {
                    return Err(bad(format!(
                        "PriceList mixes offers or versions ({}@{} and {}@{}): dump one offer version per file",
                        h.0, h.1, this.0, this.1
                    )))
                }
                Some(_) => {}
            }
            let sku = item.product.sku.clone();
            rows_of(
                &mut rows,
                source,
                &item.service_code,
                &item.version,
                published,
                &sku,
                &item.product.attributes,
                Some(&item.terms.on_demand),
            );
        }
        let (offer, version, published) = header.ok_or_else(|| bad("PriceList is empty".into()))?;
        return Ok(OfferFile::Offer {
            offer,
            version,
            published,
            rows,
        });
    }
    if obj.contains_key("regions") {
        let index: RegionIndex = serde_json::from_value(value)
            .map_err(|e| bad(format!("not a Price List region index: {e}")))?;
        return Ok(OfferFile::RegionIndex(
            index
                .regions
                .into_iter()
                .map(|(r, e)| (r, e.current_version_url))
                .collect(),
        ));
    }
    Err(bad(
        "not a Price List offer file, GetProducts dump or region index (expected `offerCode` and `products`, `PriceList`, or `regions`)".into(),
    ))
}
