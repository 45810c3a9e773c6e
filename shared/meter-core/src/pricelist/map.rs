//! The checked-in map from Price List names to model ids
//! (`data/pricelist-map.toml`). Names are matched exactly, never by
//! resemblance.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::SyncError;

/// The map shipped with this build.
pub const DEFAULT_PRICELIST_MAP: &str = include_str!("../../data/pricelist-map.toml");

/// How a Price List row names its model.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NameKind {
    /// `servicename`, e.g. `Claude Sonnet 4.6 (Amazon Bedrock Edition)` (Marketplace offer).
    Servicename,
    /// The `model` attribute, e.g. `Nova Micro`.
    Model,
    /// The usage-type stem, e.g. `TitanEmbeddingV2-Text`, for rows without `model`.
    Stem,
}

impl NameKind {
    pub fn label(&self) -> &'static str {
        match self {
            NameKind::Servicename => "servicename",
            NameKind::Model => "model",
            NameKind::Stem => "stem",
        }
    }
}

/// The name a row is known by: offer, kind and the name itself.
pub type NameKey = (String, NameKind, String);

/// One map entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapEntry {
    pub key: NameKey,
    /// Model ids priced by this name; empty = a known name that is not metered
    /// (image models, for example), so it is not reported as unmapped.
    pub models: Vec<String>,
    /// Prompt size above which long-context rates apply (the Price List does
    /// not carry it).
    pub long_context_threshold: Option<u64>,
}

/// The map: names → entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PriceMap {
    pub entries: BTreeMap<NameKey, MapEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MapFile {
    #[serde(default)]
    model: Vec<MapFileEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MapFileEntry {
    offer: String,
    #[serde(default)]
    servicename: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    stem: Option<String>,
    models: Vec<String>,
    #[serde(default)]
    long_context_threshold: Option<u64>,
    #[serde(default)]
    #[allow(dead_code)]
    note: Option<String>,
}

impl PriceMap {
    /// The built-in map.
    pub fn builtin() -> Result<PriceMap, SyncError> {
        PriceMap::from_toml("built-in map", DEFAULT_PRICELIST_MAP)
    }

    /// Parses a map file; `source` names it in errors.
    pub fn from_toml(source: &str, text: &str) -> Result<PriceMap, SyncError> {
        let bad = |reason: String| SyncError::Map {
            file: source.to_string(),
            reason,
        };
        let file: MapFile = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        let mut map = PriceMap::default();
        for (i, e) in file.model.into_iter().enumerate() {
            let n = i + 1;
            if !super::offer::OFFER_CODES.contains(&e.offer.as_str()) {
                return Err(bad(format!(
                    "entry #{n}: offer `{}` is not one of {}",
                    e.offer,
                    super::offer::OFFER_CODES.join(", ")
                )));
            }
            let (kind, name) = match (e.servicename, e.model, e.stem) {
                (Some(s), None, None) => (NameKind::Servicename, s),
                (None, Some(m), None) => (NameKind::Model, m),
                (None, None, Some(s)) => (NameKind::Stem, s),
                _ => {
                    return Err(bad(format!(
                        "entry #{n}: give exactly one of `servicename`, `model` or `stem`"
                    )))
                }
            };
            if (kind == NameKind::Servicename) != (e.offer == super::offer::MARKETPLACE_OFFER) {
                return Err(bad(format!(
                    "entry #{n} ({name}): `servicename` names models in {} only; use `model` or `stem` for {}",
                    super::offer::MARKETPLACE_OFFER,
                    e.offer
                )));
            }
            if e.long_context_threshold == Some(0) {
                return Err(bad(format!(
                    "entry #{n} ({name}): `long_context_threshold` must be positive"
                )));
            }
            let key = (e.offer, kind, name);
            if map.entries.contains_key(&key) {
                return Err(bad(format!("entry #{n} ({}): listed twice", key.2)));
            }
            map.entries.insert(
                key.clone(),
                MapEntry {
                    key,
                    models: e.models,
                    long_context_threshold: e.long_context_threshold,
                },
            );
        }
        Ok(map)
    }

    /// Adds `other`'s entries, replacing entries with the same name.
    pub fn overlay(&mut self, other: PriceMap) {
        self.entries.extend(other.entries);
    }
}
