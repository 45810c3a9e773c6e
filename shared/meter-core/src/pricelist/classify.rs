//! Usage types → token class, route, tier and long-context flag.
//!
//! Classification is positive: a usage type is taken as an on-demand
//! standard token rate only when every part of it is understood. Batch,
//! flex, priority, latency-optimized, reserved, provisioned and
//! custom-model rows are recognised and skipped; anything not understood is
//! [`Usage::Unknown`], which the sync reports as an error for a mapped model.
//!
//! Grammars (region prefixes such as `USE1` vary):
//! - Marketplace (`AmazonBedrockFoundationModels`), CamelCase:
//!   `USE1-MP:USE1_InputTokenCount[_LCtx][_Global][_Batch]-Units`,
//!   `..._CacheWrite1hInputTokenCount...`, `..._MillionBatchInputTokens-Units`,
//!   `..._Reserved_1Month_InputTPM_Geo-Units`, `..._ProvisionedThroughput_...`;
//! - Marketplace, snake case: `USE1-MP:USE1_input_tokens[_long_ctx][_global]_standard-Units`,
//!   `..._cache_write_tokens_1h_global_standard-Units`, `..._cached_input_tokens...`;
//! - `AmazonBedrock` / `AmazonBedrockService`, kebab case:
//!   `USE1-NovaMicro-input-tokens[-batch|-flex|-priority|-latency-optimized|-custom-model][-long-context][-cross-region-global]`,
//!   `USE1-NovaMicro-cache-read-input-token-count`, `USE1-NovaMicro-ProvisionedThroughput-1month-ModelUnits`.

use crate::resolve::Route;

/// A class of tokens with its own rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TokenClass {
    Input,
    Output,
    CacheRead,
    /// 5-minute cache writes (the default TTL).
    CacheWrite,
    CacheWrite1h,
}

impl TokenClass {
    pub const ALL: [TokenClass; 5] = [
        TokenClass::Input,
        TokenClass::Output,
        TokenClass::CacheRead,
        TokenClass::CacheWrite,
        TokenClass::CacheWrite1h,
    ];

    /// The price-table field for this class.
    pub fn field(self, long: bool) -> &'static str {
        match (self, long) {
            (TokenClass::Input, false) => "input",
            (TokenClass::Output, false) => "output",
            (TokenClass::CacheRead, false) => "cache_read",
            (TokenClass::CacheWrite, false) => "cache_write",
            (TokenClass::CacheWrite1h, false) => "cache_write_1h",
            (TokenClass::Input, true) => "long_input",
            (TokenClass::Output, true) => "long_output",
            (TokenClass::CacheRead, true) => "long_cache_read",
            (TokenClass::CacheWrite, true) => "long_cache_write",
            (TokenClass::CacheWrite1h, true) => "long_cache_write_1h",
        }
    }
}

/// How a token row is sold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tier {
    Standard,
    Batch,
    Flex,
    Priority,
    LatencyOptimized,
    CustomModel,
}

impl Tier {
    pub fn label(self) -> &'static str {
        match self {
            Tier::Standard => "standard",
            Tier::Batch => "batch",
            Tier::Flex => "flex",
            Tier::Priority => "priority",
            Tier::LatencyOptimized => "latency_optimized",
            Tier::CustomModel => "custom_model",
        }
    }
}

/// A classified token usage type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenUsage {
    pub class: TokenClass,
    pub route: Route,
    pub tier: Tier,
    pub long_context: bool,
}

/// What a usage type is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    Token(TokenUsage),
    /// Known and not per token (provisioned, reserved, customization, storage).
    NotToken(&'static str),
    Unknown,
}

/// Classifies a usage type of any of the three offers.
pub fn classify(usagetype: &str) -> Usage {
    match usagetype.split_once("MP:") {
        Some((_, rest)) => classify_marketplace(rest),
        None => classify_kebab(usagetype),
    }
}

/// The model stem of a kebab usage type (`USE1-NovaMicro-input-tokens` →
/// `NovaMicro`), used to name rows that carry no `model` attribute.
pub fn kebab_stem(usagetype: &str) -> Option<&str> {
    let (_, rest) = usagetype.split_once('-')?;
    let (at, _) = find_kebab_class(rest)?;
    Some(&rest[..at])
}

const KEBAB_CLASSES: [(&str, TokenClass); 4] = [
    ("-cache-read-input-token-count", TokenClass::CacheRead),
    ("-cache-write-input-token-count", TokenClass::CacheWrite),
    ("-input-tokens", TokenClass::Input),
    ("-output-tokens", TokenClass::Output),
];

fn find_kebab_class(rest: &str) -> Option<(usize, (&'static str, TokenClass))> {
    KEBAB_CLASSES
        .iter()
        .filter_map(|&(marker, class)| rest.find(marker).map(|at| (at, (marker, class))))
        .min_by_key(|(at, _)| *at)
}

const NOT_TOKEN_MARKERS: [(&str, &str); 6] = [
    ("ProvisionedThroughput", "provisioned"),
    ("Reserved", "reserved"),
    ("Customization", "customization"),
    ("ModelUnits", "provisioned"),
    ("Storage", "storage"),
    ("TPM", "reserved"),
];

fn not_token(usagetype: &str) -> Option<&'static str> {
    NOT_TOKEN_MARKERS
        .iter()
        .find(|(m, _)| usagetype.contains(m))
        .map(|(_, label)| *label)
}

fn classify_kebab(usagetype: &str) -> Usage {
    let Some((_, rest)) = usagetype.split_once('-') else {
        return Usage::Unknown;
    };
    let Some((at, (marker, class))) = find_kebab_class(rest) else {
        return not_token(usagetype).map_or(Usage::Unknown, Usage::NotToken);
    };
    let suffix = &rest[at + marker.len()..];
    let words: Vec<&str> = suffix.split('-').filter(|w| !w.is_empty()).collect();
    qualify(class, &words, Usage::Unknown)
}

/// Applies qualifier words (lower case) to a class.
fn qualify(class: TokenClass, words: &[&str], unknown: Usage) -> Usage {
    let mut usage = TokenUsage {
        class,
        route: Route::Regional,
        tier: Tier::Standard,
        long_context: false,
    };
    let mut tiers = 0;
    let mut i = 0;
    while i < words.len() {
        let w = words[i].to_ascii_lowercase();
        let next = words.get(i + 1).map(|n| n.to_ascii_lowercase());
        let mut set_tier = |t: Tier| {
            tiers += 1;
            usage.tier = t;
        };
        match (w.as_str(), next.as_deref()) {
            ("global", _) => usage.route = Route::Global,
            ("geo", _) => usage.route = Route::Regional,
            ("cross", Some("region")) => i += 1,
            ("long", Some("context")) | ("long", Some("ctx")) => {
                usage.long_context = true;
                i += 1;
            }
            ("lctx", _) => usage.long_context = true,
            ("standard", _) => set_tier(Tier::Standard),
            ("batch", _) => set_tier(Tier::Batch),
            ("flex", _) => set_tier(Tier::Flex),
            ("priority", _) => set_tier(Tier::Priority),
            ("latency", Some("optimized")) => {
                set_tier(Tier::LatencyOptimized);
                i += 1;
            }
            ("custom", Some("model")) => {
                set_tier(Tier::CustomModel);
                i += 1;
            }
            _ => return unknown,
        }
        i += 1;
    }
    if tiers > 1 {
        return unknown;
    }
    Usage::Token(usage)
}

const CAMEL_CLASSES: [(&str, TokenClass, Tier); 7] = [
    (
        "CacheWrite1hInputTokenCount",
        TokenClass::CacheWrite1h,
        Tier::Standard,
    ),
    (
        "CacheWriteInputTokenCount",
        TokenClass::CacheWrite,
        Tier::Standard,
    ),
    (
        "CacheReadInputTokenCount",
        TokenClass::CacheRead,
        Tier::Standard,
    ),
    ("InputTokenCount", TokenClass::Input, Tier::Standard),
    ("OutputTokenCount", TokenClass::Output, Tier::Standard),
    ("MillionBatchInputTokens", TokenClass::Input, Tier::Batch),
    ("MillionBatchOutputTokens", TokenClass::Output, Tier::Batch),
];

const SNAKE_CLASSES: [(&str, TokenClass); 7] = [
    ("cache_write_tokens_1h", TokenClass::CacheWrite1h),
    ("cache_write_tokens_5m", TokenClass::CacheWrite),
    ("cache_write_tokens", TokenClass::CacheWrite),
    ("cache_read_tokens", TokenClass::CacheRead),
    ("cached_input_tokens", TokenClass::CacheRead),
    ("input_tokens", TokenClass::Input),
    ("output_tokens", TokenClass::Output),
];

fn classify_marketplace(rest: &str) -> Usage {
    // `USE1_InputTokenCount_Global-Units` → `InputTokenCount_Global`
    let Some((_, dim)) = rest.split_once('_') else {
        return Usage::Unknown;
    };
    let dim = dim.strip_suffix("-Units").unwrap_or(dim);
    if let Some(label) = not_token(dim) {
        return Usage::NotToken(label);
    }
    for (name, class, tier) in CAMEL_CLASSES {
        if let Some(tail) = dim.strip_prefix(name) {
            if !(tail.is_empty() || tail.starts_with('_')) {
                continue;
            }
            let words: Vec<&str> = tail.split('_').filter(|w| !w.is_empty()).collect();
            return match qualify(class, &words, Usage::Unknown) {
                Usage::Token(mut t) if tier == Tier::Batch => {
                    t.tier = Tier::Batch;
                    Usage::Token(t)
                }
                other => other,
            };
        }
    }
    for (name, class) in SNAKE_CLASSES {
        if let Some(tail) = dim.strip_prefix(name) {
            if !(tail.is_empty() || tail.starts_with('_')) {
                continue;
            }
            let words: Vec<&str> = tail.split('_').filter(|w| !w.is_empty()).collect();
            return qualify(class, &words, Usage::Unknown);
        }
    }
    Usage::Unknown
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(class: TokenClass, route: Route, tier: Tier, long_context: bool) -> Usage {
        Usage::Token(TokenUsage {
            class,
            route,
            tier,
            long_context,
        })
    }

    #[test]
    fn every_grammar_classifies_into_class_route_tier_and_context() {
        use Route::*;
        use Tier::*;
        use TokenClass::*;
        let cases = [
            (
                "USE1-MP:USE1_InputTokenCount-Units",
                token(Input, Regional, Standard, false),
            ),
            (
                "USE1-MP:USE1_InputTokenCount_Global-Units",
                token(Input, Global, Standard, false),
            ),
            (
                "USE1-MP:USE1_OutputTokenCount_Global_Batch-Units",
                token(Output, Global, Batch, false),
            ),
            (
                "USE1-MP:USE1_CacheWrite1hInputTokenCount-Units",
                token(CacheWrite1h, Regional, Standard, false),
            ),
            (
                "USE1-MP:USE1_CacheWriteInputTokenCount_Global-Units",
                token(CacheWrite, Global, Standard, false),
            ),
            (
                "USE1-MP:USE1_CacheReadInputTokenCount-Units",
                token(CacheRead, Regional, Standard, false),
            ),
            (
                "USE1-MP:USE1_MillionBatchInputTokens-Units",
                token(Input, Regional, Batch, false),
            ),
            (
                "USE1-MP:USE1_InputTokenCount_LCtx-Units",
                token(Input, Regional, Standard, true),
            ),
            (
                "USE1-MP:USE1_input_tokens_standard-Units",
                token(Input, Regional, Standard, false),
            ),
            (
                "USE1-MP:USE1_input_tokens_global_standard-Units",
                token(Input, Global, Standard, false),
            ),
            (
                "USE1-MP:USE1_input_tokens_long_ctx_global_standard-Units",
                token(Input, Global, Standard, true),
            ),
            (
                "USE1-MP:USE1_cache_write_tokens_1h_standard-Units",
                token(CacheWrite1h, Regional, Standard, false),
            ),
            (
                "USE1-MP:USE1_cached_input_tokens_batch-Units",
                token(CacheRead, Regional, Batch, false),
            ),
            (
                "USE1-NovaMicro-input-tokens",
                token(Input, Regional, Standard, false),
            ),
            (
                "USE1-NovaMicro-input-tokens-batch",
                token(Input, Regional, Batch, false),
            ),
            (
                "USE1-NovaMicro-cache-write-input-token-count",
                token(CacheWrite, Regional, Standard, false),
            ),
            (
                "USE1-NovaMicro-output-tokens-custom-model",
                token(Output, Regional, CustomModel, false),
            ),
            (
                "USE1-Claude3-5Haiku-input-tokens-latency-optimized",
                token(Input, Regional, LatencyOptimized, false),
            ),
            (
                "USE1-Gemma-3-4B-IT-input-tokens-flex",
                token(Input, Regional, Flex, false),
            ),
            (
                "USE1-Nova2.0Lite-input-tokens-cross-region-global-batch",
                token(Input, Global, Batch, false),
            ),
            (
                "USE1-Claude4Sonnet-input-tokens-long-context-cross-region-global",
                token(Input, Global, Standard, true),
            ),
            (
                "USE1-qwen.qwen3-32b-mantle-input-tokens-global-standard",
                token(Input, Global, Standard, false),
            ),
            (
                "USE1-MP:USE1_Reserved_1Month_InputTPM_Geo-Units",
                Usage::NotToken("reserved"),
            ),
            (
                "USE1-MP:USE1_ProvisionedThroughput_NoCommit_ModelUnits_Usage-Units",
                Usage::NotToken("provisioned"),
            ),
            (
                "USE1-NovaMicro-ProvisionedThroughput-1month-ModelUnits",
                Usage::NotToken("provisioned"),
            ),
            (
                "USE1-NovaMicro-Customization-Storage",
                Usage::NotToken("customization"),
            ),
            // Not understood: never guessed into a class.
            (
                "USE1-MP:USE1_cache_write_tokens_30m_standard-Units",
                Usage::Unknown,
            ),
            ("USE1-NovaMicro-input-tokens-turbo", Usage::Unknown),
            ("USE1-MP:USE1_InputTokenCountX-Units", Usage::Unknown),
            ("USE1-NovaMicro-images", Usage::Unknown),
            ("USE1-NovaMicro-input-tokens-batch-flex", Usage::Unknown),
        ];
        for (usagetype, want) in cases {
            assert_eq!(classify(usagetype), want, "{usagetype}");
        }
    }

    #[test]
    fn the_kebab_stem_names_the_model_part() {
        assert_eq!(
            kebab_stem("USE1-TitanEmbeddingV2-Text-input-tokens"),
            Some("TitanEmbeddingV2-Text")
        );
        assert_eq!(
            kebab_stem("USE1-Gemma-3-4B-IT-input-tokens-flex"),
            Some("Gemma-3-4B-IT")
        );
        assert_eq!(kebab_stem("USE1-NovaMicro-Customization-Storage"), None);
    }
}
