//! One typed configuration, read from the environment once at start-up.
//! Shared by the Lambda and the CLI; testable without touching the process
//! environment ([`Config::from_lookup`]).

use std::path::PathBuf;

use meter_core::{DecodeLimits, Meter, PriceTable, PriceTableError, DEFAULT_USER_METADATA_KEY};

use crate::dynamo::DEFAULT_TABLE;
use crate::ingest::{CommitSettings, DEFAULT_MARKER_TTL_DAYS};

/// Settings from the environment. AWS settings (`AWS_REGION`,
/// `AWS_ENDPOINT_URL`, credentials, profiles) are the SDK's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `USAGE_TABLE` (default `bedrock-usage`).
    pub table: String,
    /// `USER_METADATA_KEY` (default `user`).
    pub user_metadata_key: String,
    /// `MARKER_TTL_DAYS` (default 35, at least 1).
    pub marker_ttl_days: u32,
    /// `PRICE_TABLE_PATH` (default: the built-in table).
    pub price_table_path: Option<PathBuf>,
    /// `MAX_DECOMPRESSED_BYTES` (default 64 MiB).
    pub max_decompressed_bytes: usize,
    /// `ATTRIBUTION_TAGS`: comma-separated `requestMetadata` keys (or
    /// `principal`) each record is also counted under; empty by default.
    pub attribution_tags: Vec<String>,
    /// `REQUEST_COSTS` (`on`/`off`, default off): keep one item per counted
    /// request for `bedrock-meter cost` (one more write unit per record).
    pub request_costs: bool,
}

/// Most attribution tags: each adds two aggregate updates per record group.
pub const MAX_ATTRIBUTION_TAGS: usize = 8;

/// Parses `ATTRIBUTION_TAGS` (`team,feature`): trimmed, non-empty, distinct
/// names of at most 128 bytes, none the user key, at most
/// [`MAX_ATTRIBUTION_TAGS`].
pub fn parse_attribution_tags(
    value: &str,
    user_metadata_key: &str,
) -> Result<Vec<String>, ConfigError> {
    let bad = |expected: &'static str| ConfigError::Invalid {
        var: "ATTRIBUTION_TAGS",
        value: value.to_string(),
        expected,
    };
    let mut tags: Vec<String> = Vec::new();
    if value.trim().is_empty() {
        return Ok(tags);
    }
    for name in value.split(',').map(str::trim) {
        if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
            return Err(bad("comma-separated requestMetadata keys of 1-128 characters, for example `team,feature` (empty: no tags)"));
        }
        if tags.iter().any(|t| t == name) {
            return Err(bad("each key once: remove the duplicate"));
        }
        if name == user_metadata_key {
            return Err(bad(
                "keys other than USER_METADATA_KEY: the user is already a dimension",
            ));
        }
        tags.push(name.to_string());
    }
    if tags.len() > MAX_ATTRIBUTION_TAGS {
        return Err(bad(
            "at most 8 keys: each one adds two aggregate writes per record group",
        ));
    }
    Ok(tags)
}

/// A bad setting, naming the variable and what is expected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{var} = `{value}` is invalid: {expected}")]
    Invalid {
        var: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("PRICE_TABLE_PATH: {0}")]
    Prices(#[from] PriceTableError),
}

/// Every variable [`Config`] reads.
pub const ALL_SETTINGS: &[&str] = &[
    "USAGE_TABLE",
    "USER_METADATA_KEY",
    "MARKER_TTL_DAYS",
    "PRICE_TABLE_PATH",
    "MAX_DECOMPRESSED_BYTES",
    "ATTRIBUTION_TAGS",
    "REQUEST_COSTS",
];

/// Checks a DynamoDB table name (3-255 characters of `a-z A-Z 0-9 _ - .`);
/// `source` names where it came from (`USAGE_TABLE`, `--table`).
pub fn check_table_name(table: String, source: &'static str) -> Result<String, ConfigError> {
    if table.len() < 3
        || table.len() > 255
        || !table
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
    {
        return Err(ConfigError::Invalid {
            var: source,
            value: table,
            expected: "a DynamoDB table name: 3-255 characters of a-z, A-Z, 0-9, '_', '-', '.'",
        });
    }
    Ok(table)
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads only the variables in `used` from the process environment;
    /// the others keep their defaults, so a bad value of a setting a command
    /// does not use (say `MARKER_TTL_DAYS` for `report`) cannot break it.
    pub fn from_env_using(used: &[&str]) -> Result<Config, ConfigError> {
        Config::from_lookup_using(|k| std::env::var(k).ok(), used)
    }

    /// [`Config::from_lookup`] reading only the variables in `used`.
    pub fn from_lookup_using(
        get: impl Fn(&str) -> Option<String>,
        used: &[&str],
    ) -> Result<Config, ConfigError> {
        Config::from_lookup(|k| if used.contains(&k) { get(k) } else { None })
    }

    /// Reads settings through `get` (a variable's value, if set).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let non_empty = |k: &str| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let table = non_empty("USAGE_TABLE").unwrap_or_else(|| DEFAULT_TABLE.to_string());
        let table = check_table_name(table, "USAGE_TABLE")?;
        let marker_ttl_days = match non_empty("MARKER_TTL_DAYS") {
            None => DEFAULT_MARKER_TTL_DAYS,
            Some(v) => match v.parse::<u32>() {
                Ok(d) if (1..=3650).contains(&d) => d,
                _ => {
                    return Err(ConfigError::Invalid {
                        var: "MARKER_TTL_DAYS",
                        value: v,
                        expected: "whole days from 1 to 3650 (default 35; keep it longer than any redelivery or replay window)",
                    })
                }
            },
        };
        let max_decompressed_bytes = match non_empty("MAX_DECOMPRESSED_BYTES") {
            None => meter_core::decode::DEFAULT_MAX_DECOMPRESSED_BYTES,
            Some(v) => match v.parse::<usize>() {
                Ok(n) if n >= 1024 => n,
                _ => {
                    return Err(ConfigError::Invalid {
                        var: "MAX_DECOMPRESSED_BYTES",
                        value: v,
                        expected: "a byte count of at least 1024 (default 67108864)",
                    })
                }
            },
        };
        let user_metadata_key =
            non_empty("USER_METADATA_KEY").unwrap_or_else(|| DEFAULT_USER_METADATA_KEY.to_string());
        let attribution_tags = parse_attribution_tags(
            &get("ATTRIBUTION_TAGS").unwrap_or_default(),
            &user_metadata_key,
        )?;
        let request_costs = match non_empty("REQUEST_COSTS").map(|v| v.to_ascii_lowercase()) {
            None => false,
            Some(v) if ["on", "true", "1", "yes"].contains(&v.as_str()) => true,
            Some(v) if ["off", "false", "0", "no"].contains(&v.as_str()) => false,
            Some(v) => {
                return Err(ConfigError::Invalid {
                    var: "REQUEST_COSTS",
                    value: v,
                    expected: "`on` (keep one item per counted request for `bedrock-meter cost`, one more write unit per record) or `off` (the default)",
                })
            }
        };
        Ok(Config {
            table,
            user_metadata_key,
            attribution_tags,
            request_costs,
            marker_ttl_days,
            price_table_path: non_empty("PRICE_TABLE_PATH").map(PathBuf::from),
            max_decompressed_bytes,
        })
    }

    /// Builds the metering pipeline, loading the price table.
    pub fn meter(&self) -> Result<Meter, ConfigError> {
        let prices = match &self.price_table_path {
            Some(p) => PriceTable::load(p)?,
            None => PriceTable::builtin(),
        };
        Ok(Meter {
            prices,
            user_metadata_key: self.user_metadata_key.clone(),
            limits: DecodeLimits {
                max_decompressed_bytes: self.max_decompressed_bytes,
            },
            attribution_tags: self
                .attribution_tags
                .iter()
                .map(|t| std::sync::Arc::from(t.as_str()))
                .collect(),
        })
    }

    pub fn commit_settings(&self) -> CommitSettings {
        CommitSettings {
            marker_ttl_secs: i64::from(self.marker_ttl_days) * 86_400,
            request_costs: self.request_costs,
            ..CommitSettings::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.table, "bedrock-usage");
        assert_eq!(c.user_metadata_key, "user");
        assert_eq!(c.marker_ttl_days, 35);
        assert_eq!(c.price_table_path, None);
        assert_eq!(c.commit_settings().marker_ttl_secs, 35 * 86_400);
        assert!(c.attribution_tags.is_empty());
    }

    #[test]
    fn attribution_tags_are_read_trimmed_in_order_and_reach_the_meter() {
        let c = cfg(&[("ATTRIBUTION_TAGS", " team , feature,principal ")]).unwrap();
        assert_eq!(c.attribution_tags, ["team", "feature", "principal"]);
        let m = c.meter().unwrap();
        let names: Vec<&str> = m.attribution_tags.iter().map(|t| &**t).collect();
        assert_eq!(names, ["team", "feature", "principal"]);
        assert!(cfg(&[("ATTRIBUTION_TAGS", "  ")])
            .unwrap()
            .attribution_tags
            .is_empty());
    }

    #[test]
    fn bad_values_name_the_variable_and_what_is_expected() {
        for (var, value) in [
            ("MARKER_TTL_DAYS", "0"),
            ("MARKER_TTL_DAYS", "soon"),
            ("MAX_DECOMPRESSED_BYTES", "12"),
            ("USAGE_TABLE", "bad table!"),
            ("ATTRIBUTION_TAGS", "team,,feature"),
            ("ATTRIBUTION_TAGS", "team,team"),
            ("ATTRIBUTION_TAGS", "user"),
            ("ATTRIBUTION_TAGS", "a,b,c,d,e,f,g,h,i"),
        ] {
            let err = cfg(&[(var, value)]).unwrap_err().to_string();
            assert!(err.starts_with(var), "{err}");
        }
    }

    #[test]
    fn table_names_outside_dynamodb_rules_are_refused_naming_their_source() {
        for bad in ["ab", "has space", "semi;colon", &"x".repeat(256)] {
            let err = check_table_name(bad.to_string(), "--table")
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("--table = `"), "{err}");
            assert!(err.contains("3-255 characters"), "{err}");
        }
        for good in ["abc", "bedrock-usage", "a.b_c-D9", &"x".repeat(255)] {
            assert_eq!(check_table_name(good.to_string(), "--table").unwrap(), good);
        }
    }

    #[test]
    fn a_bad_value_of_an_unused_setting_is_ignored() {
        let vars = [("MARKER_TTL_DAYS", "soon"), ("USAGE_TABLE", "mine")];
        let c = Config::from_lookup_using(
            |k| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            },
            &["USAGE_TABLE"],
        )
        .unwrap();
        assert_eq!(c.table, "mine");
        assert_eq!(c.marker_ttl_days, 35);
        assert!(cfg(&vars).is_err(), "the full read still refuses it");
    }

    #[test]
    fn a_missing_price_table_file_is_a_clear_error() {
        let c = cfg(&[("PRICE_TABLE_PATH", "/nonexistent/prices.toml")]).unwrap();
        let err = c.meter().unwrap_err().to_string();
        assert!(
            err.contains("PRICE_TABLE_PATH") && err.contains("/nonexistent/prices.toml"),
            "{err}"
        );
    }
}
