//! The sample events in `events/`: each envelope decodes to its readable twin,
//! and metering each one gives the totals that `events/generate.py` computed
//! independently (`events/expected-totals.json`). No server needed, except
//! for the end-to-end cost check, which replays events through the CLI into
//! DynamoDB Local and compares the stored costs with the ones computed by
//! hand (`costs` in `events/expected-totals.json`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use meter_core::{aggregate, AggregateKey, DecodeLimits, Meter};
use serde_json::Value;

fn events_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../events")
}

fn read_json(path: &std::path::Path) -> Value {
    serde_json::from_slice(
        &std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_envelope_decodes_to_its_readable_twin() {
    let mut checked = 0;
    for entry in std::fs::read_dir(events_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let Some(stem) = name.strip_suffix(".decoded.json") else {
            continue;
        };
        let envelope = std::fs::read(events_dir().join(format!("{stem}.json"))).unwrap();
        let decoded = meter_core::decode::unwrap_payload(&envelope, DecodeLimits::default())
            .unwrap_or_else(|e| panic!("{stem}: {e}"));
        let decoded: Value = serde_json::from_slice(&decoded).unwrap();
        assert_eq!(decoded, read_json(&path), "{stem}");
        checked += 1;
    }
    assert!(checked >= 13, "only {checked} envelopes found");
}

#[test]
fn metering_each_sample_event_gives_the_independently_computed_totals() {
    let expected = read_json(&events_dir().join("expected-totals.json"));
    let meter = Meter::with_defaults();
    let scenarios = expected["scenarios"].as_object().unwrap();
    assert!(scenarios.len() >= 13);
    for (name, scenario) in scenarios {
        let envelope =
            std::fs::read(events_dir().join(scenario["envelope"].as_str().unwrap())).unwrap();
        let batch = meter
            .meter_payload(&envelope)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let skipped: Vec<&str> = batch.skipped.iter().map(|s| s.location.as_str()).collect();
        let want_skipped: Vec<&str> = scenario["skipped_log_event_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(skipped, want_skipped, "{name}: skipped records");
        let mut actual = BTreeMap::new();
        for (key, delta) in aggregate(&batch.records) {
            if let AggregateKey::UserModelDay { user, model, day } = key {
                let c = delta.counters;
                actual.insert(
                    (day.to_string(), user.to_string(), model.to_string()),
                    [
                        c.invocations,
                        c.errors,
                        c.input_tokens,
                        c.output_tokens,
                        c.cache_read_input_tokens,
                        c.cache_write_input_tokens,
                    ],
                );
            }
        }
        let mut want = BTreeMap::new();
        for t in scenario["totals"].as_array().unwrap() {
            let n = |k: &str| u128::from(t[k].as_u64().unwrap());
            want.insert(
                (
                    t["day"].as_str().unwrap().to_string(),
                    t["user"].as_str().unwrap().to_string(),
                    t["model"].as_str().unwrap().to_string(),
                ),
                [
                    n("invocations"),
                    n("errors"),
                    n("input_tokens"),
                    n("output_tokens"),
                    n("cache_read_input_tokens"),
                    n("cache_write_input_tokens"),
                ],
            );
        }
        assert_eq!(actual, want, "{name}");
    }
}

#[test]
fn the_on_failure_destination_record_meters_like_the_event_it_carries() {
    let meter = Meter::with_defaults();
    let dest = meter
        .meter_payload(&std::fs::read(events_dir().join("on-failure-destination.json")).unwrap())
        .unwrap();
    let orig = meter
        .meter_payload(&std::fs::read(events_dir().join("single-invocation.json")).unwrap())
        .unwrap();
    assert_eq!(dest.records, orig.records);
    assert!(!dest.records.is_empty());
}

#[test]
fn the_multi_member_s3_sample_meters_like_its_readable_twin() {
    let meter = Meter::with_defaults();
    let dir = events_dir().join("s3");
    let gz = std::fs::read(dir.join(
        "AWSLogs/111111111111/BedrockModelInvocationLogs/us-east-1/2026/11/20/10/sample.json.gz",
    ))
    .unwrap();
    let plain = std::fs::read(dir.join("sample.jsonl")).unwrap();
    let a = meter.meter_payload(&gz).unwrap();
    let b = meter.meter_payload(&plain).unwrap();
    assert_eq!(a.records, b.records);
    assert_eq!(a.records.len(), 5);
}

#[test]
fn large_bodies_never_reach_metered_records() {
    let meter = Meter::with_defaults();
    let batch = meter
        .meter_payload(&std::fs::read(events_dir().join("large-bodies.json")).unwrap())
        .unwrap();
    assert!(!batch.records.is_empty());
    let dump = format!("{batch:?}");
    assert!(
        !dump.contains("CANARY-PROMPT-7f3a"),
        "a body leaked into a metered record"
    );
}

/// `us.`, `global.`, `eu.`/`apac.` profiles, an application inference
/// profile, cache tokens and an unknown model, replayed with the real CLI into
/// DynamoDB Local: every stored per-(user, model, day) cost equals the one
/// computed by hand from the published rates.
#[tokio::test]
async fn replayed_sample_events_store_the_costs_computed_by_hand() {
    let client = integration_tests::local_client().await;
    let expected = read_json(&events_dir().join("expected-totals.json"));
    let costs = expected["costs"]["scenarios"]
        .as_object()
        .expect("a `costs` section in expected-totals.json");
    for name in [
        "cross-region-profiles",
        "application-inference-profile",
        "cache-tokens",
        "several-users-models",
    ] {
        assert!(
            costs.contains_key(name),
            "no hand-computed costs for {name}"
        );
    }
    for (name, rows) in costs {
        let store = integration_tests::fresh_store(&client, &format!("costs-{name}")).await;
        let envelope = events_dir().join(format!("{name}.json"));
        let out = std::process::Command::new(integration_tests::workspace_binary(
            "bedrock-meter",
            "bedrock-meter-cli",
        ))
        .arg("replay")
        .arg(&envelope)
        .env("USAGE_TABLE", store.table())
        .env_remove("PRICE_TABLE_PATH")
        .output()
        .expect("run bedrock-meter");
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stored: BTreeMap<(String, String, String), (u128, String)> =
            integration_tests::read_aggregates(&store)
                .await
                .into_iter()
                .filter(|(k, _)| k.0 == "user_model_day")
                .map(|(k, t)| ((k.1, k.2, k.3), (t.unpriced_invocations, t.cost_usd)))
                .collect();
        let want: BTreeMap<(String, String, String), (u128, String)> = rows
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let s = |k: &str| r[k].as_str().unwrap().to_string();
                (
                    (s("user"), s("model"), s("day")),
                    (
                        u128::from(r["unpriced_invocations"].as_u64().unwrap()),
                        integration_tests::normalise_decimal(&s("cost_usd")),
                    ),
                )
            })
            .collect();
        assert_eq!(
            stored, want,
            "{name}: stored (unpriced, cost) per (user, model, day)"
        );
    }
}
