//! Billing names → the model ids the meter uses.
//!
//! One map holds the model ids: the Price List map of `prices sync`
//! ([`meter_core::pricelist::map::PriceMap`]). A bill line is named the way
//! that map names Price List rows:
//! - Marketplace lines by `product['product_name']` (= the Price List
//!   `servicename`, `Claude Sonnet 4.5 (Amazon Bedrock Edition)`);
//! - AWS-billed lines by `product['model']` when the export carries it, else
//!   by the usage-type stem (`NovaMicro`), looked up directly or through
//!   `data/cur-stems.toml`, which says which map name a stem is;
//! - `mantle` usage types embed the model id itself.
//!
//! Nothing is matched by resemblance: a name without an entry is
//! [`Named::Unmapped`].

use std::collections::BTreeMap;

use meter_core::pricelist::map::{NameKind, PriceMap};
use meter_core::pricelist::offer::MARKETPLACE_OFFER;
use serde::Deserialize;

use crate::ReconcileError;

/// The stem aliases shipped with this build.
pub const DEFAULT_CUR_STEMS: &str = include_str!("../data/cur-stems.toml");

/// The AWS-billed offers (product codes) whose lines name models by stem.
pub const AWS_OFFERS: [&str; 2] = ["AmazonBedrock", "AmazonBedrockService"];

/// What a bill line's name resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Named {
    /// The join key: one model id (or several joined by ` | ` when one
    /// billing name prices several ids; see [`Names::meter_key`]).
    Model(String),
    /// A name the map knows and maps to no model (not metered).
    NotMetered(String),
    /// No entry: the billing name as the bill spells it.
    Unmapped(String),
}

/// The names a reconciliation resolves with.
#[derive(Debug, Clone)]
pub struct Names {
    map: PriceMap,
    /// (offer, stem) → the map's `model` name.
    stems: BTreeMap<(String, String), String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StemFile {
    #[serde(default)]
    stem: Vec<StemEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StemEntry {
    offer: String,
    stem: String,
    model: String,
    #[allow(dead_code)]
    #[serde(default)]
    note: Option<String>,
}

impl Names {
    /// The built-in Price List map and stem aliases.
    pub fn builtin() -> Result<Names, ReconcileError> {
        let map = PriceMap::builtin().map_err(|e| ReconcileError::Map(e.to_string()))?;
        let mut names = Names {
            map,
            stems: BTreeMap::new(),
        };
        names.add_stems("built-in cur-stems.toml", DEFAULT_CUR_STEMS)?;
        Ok(names)
    }

    /// Adds or replaces map entries from a file in the Price List map format
    /// (`--map FILE`).
    pub fn overlay_map(&mut self, source: &str, text: &str) -> Result<(), ReconcileError> {
        let extra =
            PriceMap::from_toml(source, text).map_err(|e| ReconcileError::Map(e.to_string()))?;
        self.map.overlay(extra);
        Ok(())
    }

    /// Adds stem aliases (`[[stem]] offer, stem, model`).
    pub fn add_stems(&mut self, source: &str, text: &str) -> Result<(), ReconcileError> {
        let file: StemFile = toml::from_str(text)
            .map_err(|e| ReconcileError::Map(format!("stem aliases {source}: {e}")))?;
        for e in file.stem {
            if !AWS_OFFERS.contains(&e.offer.as_str()) {
                return Err(ReconcileError::Map(format!(
                    "stem aliases {source}: stem `{}`: offer `{}` is not one of {}",
                    e.stem,
                    e.offer,
                    AWS_OFFERS.join(", ")
                )));
            }
            self.stems.insert((e.offer, e.stem), e.model);
        }
        Ok(())
    }

    /// Resolves a token line. `offer` is `AmazonBedrock`,
    /// `AmazonBedrockService` or the Marketplace offer.
    pub fn resolve(
        &self,
        offer: &str,
        product_name: Option<&str>,
        product_model: Option<&str>,
        usage_type: &str,
    ) -> Named {
        if offer == MARKETPLACE_OFFER {
            return match product_name.filter(|n| !n.is_empty()) {
                Some(name) => self.lookup(offer, NameKind::Servicename, name),
                None => Named::Unmapped(format!("{usage_type} (no product_name)")),
            };
        }
        if let Some(model) = product_model.filter(|m| !m.is_empty()) {
            let named = self.lookup(offer, NameKind::Model, model);
            if !matches!(named, Named::Unmapped(_)) {
                return named;
            }
        }
        let Some(stem) = meter_core::pricelist::classify::kebab_stem(usage_type) else {
            return Named::Unmapped(usage_type.to_string());
        };
        if let Some(id) = stem.strip_suffix("-mantle").filter(|id| id.contains('.')) {
            return Named::Model(self.meter_key(id));
        }
        let direct = self.lookup(offer, NameKind::Stem, stem);
        if !matches!(direct, Named::Unmapped(_)) {
            return direct;
        }
        match self.stems.get(&(offer.to_string(), stem.to_string())) {
            Some(model) => self.lookup(offer, NameKind::Model, model),
            None => Named::Unmapped(format!("{offer} {stem}")),
        }
    }

    fn lookup(&self, offer: &str, kind: NameKind, name: &str) -> Named {
        let key = (offer.to_string(), kind, name.to_string());
        match self.map.entries.get(&key) {
            None => Named::Unmapped(name.to_string()),
            Some(e) if e.models.is_empty() => Named::NotMetered(name.to_string()),
            Some(e) if e.models.len() == 1 => Named::Model(e.models[0].clone()),
            Some(e) => Named::Model(e.models.join(" | ")),
        }
    }

    /// The join key of a metered base model id: the id itself, or the
    /// ` | `-joined group when a billing name prices it together with
    /// other ids (the bill cannot tell them apart).
    pub fn meter_key(&self, model: &str) -> String {
        self.map
            .entries
            .values()
            .find(|e| e.models.len() > 1 && e.models.iter().any(|m| m == model))
            .map(|e| e.models.join(" | "))
            .unwrap_or_else(|| model.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_billing_form_resolves_to_the_model_id_of_the_price_list_map() {
        let names = Names::builtin().unwrap();
        let cases = [
            (
                "AmazonBedrock",
                None,
                None,
                "USE1-NovaMicro-input-tokens",
                Named::Model("amazon.nova-micro-v1:0".into()),
            ),
            (
                "AmazonBedrock",
                None,
                Some("Nova Lite"),
                "USE1-Whatever-input-tokens",
                Named::Model("amazon.nova-lite-v1:0".into()),
            ),
            (
                "AmazonBedrockService",
                None,
                None,
                "USE1-Claude4Sonnet-input-tokens-cross-region-global",
                Named::Model("anthropic.claude-sonnet-4-20250514-v1:0".into()),
            ),
            (
                MARKETPLACE_OFFER,
                Some("Claude Sonnet 4.5 (Amazon Bedrock Edition)"),
                None,
                "USE1-MP:USE1_InputTokenCount_Global-Units",
                Named::Model("anthropic.claude-sonnet-4-5-20250929-v1:0".into()),
            ),
            (
                "AmazonBedrock",
                None,
                None,
                "USE1-TitanEmbeddingV2-Text-input-tokens",
                Named::Model("amazon.titan-embed-text-v2:0".into()),
            ),
            (
                "AmazonBedrock",
                None,
                None,
                "USE1-openai.gpt-oss-120b-mantle-input-tokens-standard",
                Named::Model("openai.gpt-oss-120b".into()),
            ),
            (
                "AmazonBedrockService",
                None,
                None,
                "USE1-Claude4.6Opus-input-tokens-cross-region-global",
                Named::Unmapped("AmazonBedrockService Claude4.6Opus".into()),
            ),
            (
                MARKETPLACE_OFFER,
                Some("Claude Opus 9 (Amazon Bedrock Edition)"),
                None,
                "USE1-MP:USE1_InputTokenCount-Units",
                Named::Unmapped("Claude Opus 9 (Amazon Bedrock Edition)".into()),
            ),
        ];
        for (offer, product_name, product_model, usage_type, want) in cases {
            assert_eq!(
                names.resolve(offer, product_name, product_model, usage_type),
                want,
                "{usage_type}"
            );
        }
    }

    #[test]
    fn a_stem_alias_to_a_name_the_map_lacks_stays_unmapped() {
        let mut names = Names::builtin().unwrap();
        names
            .add_stems(
                "test",
                "[[stem]]\noffer = \"AmazonBedrock\"\nstem = \"NovaPro\"\nmodel = \"Nova Pro\"\n",
            )
            .unwrap();
        assert_eq!(
            names.resolve("AmazonBedrock", None, None, "USE1-NovaPro-input-tokens"),
            Named::Unmapped("Nova Pro".into())
        );
        names
            .overlay_map(
                "test",
                "[[model]]\noffer = \"AmazonBedrock\"\nmodel = \"Nova Pro\"\nmodels = [\"amazon.nova-pro-v1:0\"]\n",
            )
            .unwrap();
        assert_eq!(
            names.resolve("AmazonBedrock", None, None, "USE1-NovaPro-input-tokens"),
            Named::Model("amazon.nova-pro-v1:0".into())
        );
    }
}
