//! The meter side: per-model, per-day totals, normalised to the billed model.
//!
//! The table keeps `model` exactly as logged (`us.anthropic...`,
//! `global.anthropic...`, an application inference profile ARN are three
//! models there). The bill knows the base model only, so each id is
//! normalised: geography and `global.` prefixes are stripped (the route is
//! kept for hints) and application inference profile ARNs are resolved
//! through the price table's `[aliases]`.

use meter_core::resolve::{model_ref, ModelRef, Route};
use meter_core::{Day, PriceTable};
use rust_decimal::Decimal;
use serde::Deserialize;

use crate::names::Names;
use crate::reconcile::By;
use crate::{parse_decimal, ReconcileError};

/// One `model_day` aggregate as read (the model id as logged), or, with
/// `--by principal`, one `tag_model_day` item of the `principal` tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterRow {
    /// The principal ARN (the `principal` tag's value) with `--by principal`.
    pub principal: Option<String>,
    pub model: String,
    pub day: Day,
    pub input_tokens: u128,
    pub output_tokens: u128,
    pub cache_read_input_tokens: u128,
    pub cache_write_input_tokens: u128,
    pub unpriced_invocations: u128,
    pub cost_usd: Decimal,
}

/// A meter row normalised to the bill's model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalisedRow {
    pub row: MeterRow,
    /// The join key (the base model id, see [`Names::meter_key`]).
    pub key: String,
    pub route: Route,
    /// An application inference profile ARN the aliases do not resolve.
    pub unresolved_profile: bool,
}

/// Normalises a logged model id: `(join key, route, unresolved profile?)`.
pub fn normalise_model(model: &str, prices: &PriceTable, names: &Names) -> (String, Route, bool) {
    let mut id = model.to_string();
    // An alias may point at a profile id (`us.anthropic...`), or at another
    // alias; follow a few hops.
    for _ in 0..4 {
        match model_ref(&id) {
            ModelRef::ApplicationProfile(arn) => match prices.aliases().get(arn) {
                Some(target) => id = target.clone(),
                None => return (arn.to_string(), Route::Regional, true),
            },
            ModelRef::Foundation { base, route, .. } => {
                return (names.meter_key(base), route, false)
            }
            ModelRef::NotPerToken(other) => return (other.to_string(), Route::Regional, false),
        }
    }
    (id, Route::Regional, true)
}

/// Normalises every row.
pub fn normalise(rows: Vec<MeterRow>, prices: &PriceTable, names: &Names) -> Vec<NormalisedRow> {
    rows.into_iter()
        .map(|row| {
            let (key, route, unresolved_profile) = normalise_model(&row.model, prices, names);
            NormalisedRow {
                row,
                key,
                route,
                unresolved_profile,
            }
        })
        .collect()
}

#[derive(Deserialize)]
struct JsonRow {
    kind: String,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    tag: Option<String>,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    day: Option<String>,
    #[serde(default)]
    input_tokens: u128,
    #[serde(default)]
    output_tokens: u128,
    #[serde(default)]
    cache_read_input_tokens: u128,
    #[serde(default)]
    cache_write_input_tokens: u128,
    #[serde(default)]
    unpriced_invocations: u128,
    cost_usd: serde_json::Value,
}

/// Reads `bedrock-meter report --format json` output (JSON lines): the
/// `model_day` rows (`report --model M --from --to`), or, when there are
/// none, the `user_model_day` rows summed over users (`report --user U
/// --by model-day`). Rows of other kinds carry no model and are ignored.
pub fn from_report_json(file: &str, text: &str) -> Result<Vec<MeterRow>, ReconcileError> {
    from_report_json_by(file, text, By::Model)
}

/// The tag attribution reconcile reads with `--by principal`.
pub const PRINCIPAL_TAG: &str = "principal";

/// [`from_report_json`] for `by`: with [`By::Principal`], the
/// `tag_model_day` rows of the `principal` tag (`bedrock-meter report --tag
/// principal=ARN --from --to --format json`, one run per principal,
/// concatenated); every other row is ignored.
pub fn from_report_json_by(
    file: &str,
    text: &str,
    by: By,
) -> Result<Vec<MeterRow>, ReconcileError> {
    let mut model_day = Vec::new();
    let mut user_model_day: Vec<MeterRow> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i as u64 + 1;
        if line.trim().is_empty() {
            continue;
        }
        let r: JsonRow = serde_json::from_str(line).map_err(|e| {
            ReconcileError::at(
                file,
                n,
                format!("not a row of `bedrock-meter report --format json` ({e})"),
            )
        })?;
        let target = match (by, r.kind.as_str()) {
            (By::Model, "model_day") => &mut model_day,
            (By::Model, "user_model_day") => &mut user_model_day,
            (By::Principal, "tag_model_day") if r.tag.as_deref() == Some(PRINCIPAL_TAG) => {
                &mut model_day
            }
            _ => continue,
        };
        let bad = |what: &str| {
            ReconcileError::at(file, n, format!("{} row without a valid {what}", r.kind))
        };
        let model = r.model.clone().ok_or_else(|| bad("model"))?;
        let day = r
            .day
            .as_deref()
            .and_then(Day::parse)
            .ok_or_else(|| bad("day"))?;
        let cost_text = match &r.cost_usd {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            _ => String::new(),
        };
        let cost_usd = parse_decimal(&cost_text).ok_or_else(|| bad("cost_usd"))?;
        let principal = match by {
            By::Model => None,
            By::Principal => Some(
                r.value
                    .clone()
                    .filter(|v| !v.trim().is_empty())
                    .ok_or_else(|| bad("value (the principal ARN)"))?,
            ),
        };
        let row = MeterRow {
            principal,
            model,
            day,
            input_tokens: r.input_tokens,
            output_tokens: r.output_tokens,
            cache_read_input_tokens: r.cache_read_input_tokens,
            cache_write_input_tokens: r.cache_write_input_tokens,
            unpriced_invocations: r.unpriced_invocations,
            cost_usd,
        };
        match target
            .iter_mut()
            .find(|t| t.model == row.model && t.day == row.day && t.principal == row.principal)
        {
            Some(t) => {
                t.input_tokens += row.input_tokens;
                t.output_tokens += row.output_tokens;
                t.cache_read_input_tokens += row.cache_read_input_tokens;
                t.cache_write_input_tokens += row.cache_write_input_tokens;
                t.unpriced_invocations += row.unpriced_invocations;
                t.cost_usd += row.cost_usd;
            }
            None => target.push(row),
        }
    }
    Ok(if model_day.is_empty() {
        user_model_day
    } else {
        model_day
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_ids_normalise_to_the_billed_model_and_keep_their_route() {
        let prices = PriceTable::builtin();
        let names = Names::builtin().unwrap();
        let cases = [
            ("us.amazon.nova-micro-v1:0", "amazon.nova-micro-v1:0", Route::Regional, false),
            (
                "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
                "anthropic.claude-sonnet-4-5-20250929-v1:0",
                Route::Global,
                false,
            ),
            (
                "arn:aws:bedrock:us-east-1:111111111111:application-inference-profile/abc123example",
                "anthropic.claude-sonnet-4-5-20250929-v1:0",
                Route::Regional,
                false,
            ),
            (
                "arn:aws:bedrock:us-east-1:111111111111:application-inference-profile/unknown",
                "arn:aws:bedrock:us-east-1:111111111111:application-inference-profile/unknown",
                Route::Regional,
                true,
            ),
        ];
        for (logged, key, route, unresolved) in cases {
            assert_eq!(
                normalise_model(logged, &prices, &names),
                (key.to_string(), route, unresolved),
                "{logged}"
            );
        }
    }

    #[test]
    fn report_json_model_day_rows_are_read_exactly_and_other_kinds_ignored() {
        let text = concat!(
            r#"{"kind":"model_day","model":"us.amazon.nova-micro-v1:0","day":"2026-11-10","invocations":2,"errors":0,"input_tokens":1000,"output_tokens":20,"cache_read_input_tokens":0,"cache_write_input_tokens":0,"unpriced_invocations":0,"cost_usd":"0.0000378"}"#,
            "\n",
            r#"{"kind":"organisation_day","day":"2026-11-10","invocations":2,"errors":0,"input_tokens":1000,"output_tokens":20,"cache_read_input_tokens":0,"cache_write_input_tokens":0,"unpriced_invocations":0,"cost_usd":"0.0000378"}"#,
            "\n"
        );
        let rows = from_report_json("m.jsonl", text).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].cost_usd.to_string(), "0.0000378");
        assert_eq!(rows[0].input_tokens, 1000);
        let e = from_report_json("m.jsonl", "{\"kind\":\"model_day\"}\n").unwrap_err();
        assert!(e.to_string().starts_with("m.jsonl: line 1: "), "{e}");
    }
}
