//! `bedrock-meter prices sync` on trimmed, structurally faithful AWS Price
//! List fixtures (`tests/fixtures/pricelist/`): both offer shapes (bulk
//! `index.json`, `GetProducts` dump), the three unit spellings, regional and
//! global SKUs, batch / custom-model / provisioned / reserved decoys, a $0
//! cache write, long-context and 1-hour cache-write SKUs, an unmapped model.
//! No DynamoDB needed; the `--fetch` test serves the fixtures on 127.0.0.1.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use integration_tests::workspace_binary;
use meter_core::pricing::PriceTable;
use meter_core::record::TokenCounts;
use meter_core::{Day, Price};
use serde_json::Value;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/pricelist")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "bedrock-meter-prices-{name}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `prices sync` on `offer_dir` (or `--fetch` with `extra`), writing to `out`.
fn sync(source: &[&str], base: &Path, out: &Path, extra: &[&str]) -> Output {
    sync_with_map(&fixtures().join("map.toml"), source, base, out, extra)
}

fn sync_with_map(map: &Path, source: &[&str], base: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut cmd = Command::new(workspace_binary("bedrock-meter", "bedrock-meter-cli"));
    cmd.args(["prices", "sync"])
        .args(source)
        .args([
            "--regions",
            "us-east-1,ap-northeast-1",
            "--map-only",
            "--map",
        ])
        .arg(map)
        .arg("--base")
        .arg(base)
        .arg("--out")
        .arg(out)
        .args(extra)
        .env_remove("PRICE_TABLE_PATH");
    cmd.output().expect("run bedrock-meter")
}

fn offer_dir_arg(dir: &Path) -> Vec<String> {
    vec!["--offer-dir".into(), dir.display().to_string()]
}

fn run_offer_dir(dir: &Path, base: &Path, out: &Path, extra: &[&str]) -> Output {
    let args = offer_dir_arg(dir);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    sync(&refs, base, out, extra)
}

fn report_json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "report is not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

fn tokens(
    input: u64,
    output: u64,
    cache_read: u64,
    cache_write: u64,
    write_1h: u64,
) -> TokenCounts {
    TokenCounts {
        input,
        output,
        cache_read,
        cache_write,
        cache_write_1h: write_1h,
    }
}

#[test]
fn a_sync_of_the_fixtures_appends_exactly_the_golden_entries_and_reports_them() {
    let dir = temp_dir("golden");
    let out = dir.join("prices.toml");
    let o = run_offer_dir(
        &fixtures(),
        &fixtures().join("base.toml"),
        &out,
        &["--json"],
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let written = std::fs::read_to_string(&out).unwrap();
    let golden = std::fs::read_to_string(fixtures().join("expected.toml")).unwrap();
    assert_eq!(
        written, golden,
        "the synced table differs from tests/fixtures/pricelist/expected.toml"
    );
    // Append-only: the base file is a prefix of the output apart from [meta].
    let base = std::fs::read_to_string(fixtures().join("base.toml")).unwrap();
    let rates_of_base = &base[base.find("[[rate]]").unwrap()..];
    assert!(
        written.contains(rates_of_base),
        "base entries and comments must be kept verbatim"
    );

    let r = report_json(&o);
    assert_eq!(r["errors"].as_array().unwrap().len(), 0, "{r:#}");
    assert_eq!(r["checked_before"], "2026-04-01");
    assert_eq!(r["checked_after"], "2026-09-01");
    assert_eq!(r["entries_added"], 8);
    assert_eq!(
        r["new_models"],
        serde_json::json!(["anthropic.claude-sonnet-4-20250514-v1:0"])
    );
    assert_eq!(r["unmapped"][0]["name"], "Acme 9B");
    assert_eq!(
        r["manual"],
        serde_json::json!(["mistral.mistral-large-2402-v1:0"])
    );
    assert_eq!(
        r["skipped"]["batch"], 6,
        "the batch rows are skipped, never taken"
    );
    assert_eq!(r["skipped"]["reserved"], 2);
    let nova_write = r["changed"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["model"] == "amazon.nova-micro-v1:0" && c["region"] == "*")
        .unwrap();
    assert_eq!(nova_write["field"], "cache_write");
    assert_eq!(nova_write["old"], Value::Null);
    assert_eq!(nova_write["new"], "0");
    assert_eq!(
        nova_write["from"], "2026-05-04",
        "from = the offer's publication day"
    );

    // Priced with the synced table, by hand from the fixture rates.
    let t = PriceTable::from_toml(&written).unwrap();
    let day = |s: &str| Day::parse(s).unwrap();
    let m = 1_000_000;
    let cases: &[(&str, &str, &str, TokenCounts, &str)] = &[
        // Nova Micro: $0.0000350000 per 1K = $0.035 per 1M; the $0 cache write is a rate.
        (
            "amazon.nova-micro-v1:0",
            "us-east-1",
            "2026-06-01",
            tokens(m, 0, 0, m, 0),
            "0.035",
        ),
        // Before the sync's `from`, the old entry (no cache-write rate) still applies.
        (
            "amazon.nova-micro-v1:0",
            "us-east-1",
            "2026-05-03",
            tokens(m, 0, 0, 0, 0),
            "0.035",
        ),
        // ap-northeast-1 keeps its own rates.
        (
            "apac.amazon.nova-micro-v1:0",
            "ap-northeast-1",
            "2026-06-01",
            tokens(m, m, 0, 0, 0),
            "0.21",
        ),
        // Sonnet 4.5 regional 1-hour writes at $6.60, from the FM bulk file ("1M tokens").
        (
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "us-east-1",
            "2026-09-02",
            tokens(0, 0, 0, 100_000, 100_000),
            "0.66",
        ),
        // Sonnet 4.5 global, 250k input: long context $6 / $22.50.
        (
            "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "us-east-1",
            "2026-09-02",
            tokens(250_000, m, 0, 0, 0),
            "24",
        ),
        // Sonnet 4 from the ABS kebab file ($0.0060000000 per 1K long-context input).
        (
            "anthropic.claude-sonnet-4-20250514-v1:0",
            "us-east-1",
            "2026-09-02",
            tokens(300_000, 0, 0, 0, 0),
            "1.8",
        ),
        // Sonnet 4.6 global 1-hour writes from the GetProducts dump ("Units").
        (
            "global.anthropic.claude-sonnet-4-6",
            "us-east-1",
            "2026-09-02",
            tokens(0, 0, 0, m, m),
            "6",
        ),
    ];
    for (model, region, d, tok, want) in cases {
        assert_eq!(
            t.price(Some(model), Some(region), day(d), tok),
            Price::Priced(want.parse().unwrap()),
            "{model} {d}"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn syncing_onto_its_own_output_changes_nothing() {
    let dir = temp_dir("idempotent");
    let golden = fixtures().join("expected.toml");
    let out = dir.join("again.toml");
    let o = run_offer_dir(&fixtures(), &golden, &out, &["--json"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(&golden).unwrap(),
        "a second sync of the same offers must write the same bytes"
    );
    let r = report_json(&o);
    assert_eq!(r["entries_added"], 0);
    assert_eq!(r["changed"], serde_json::json!([]));
    let _ = std::fs::remove_dir_all(dir);
}

/// Copies every fixture `.json` into `to` under other names and nesting,
/// with the GetProducts list and the bulk files' products shuffled.
fn shuffled_copy(to: &Path, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut files = Vec::new();
    let mut stack = vec![fixtures()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "json") {
                files.push(p);
            }
        }
    }
    rng.shuffle(&mut files);
    for (i, p) in files.iter().enumerate() {
        let mut v: Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
        if let Some(list) = v.get_mut("PriceList").and_then(Value::as_array_mut) {
            rng.shuffle(list);
        }
        let nested = to.join(format!("{}/{}", rng.u32(..1000), 100 - i));
        std::fs::create_dir_all(&nested).unwrap();
        std::fs::write(
            nested.join(format!("f{i}.json")),
            serde_json::to_vec(&v).unwrap(),
        )
        .unwrap();
    }
}

#[test]
fn shuffled_input_gives_the_same_table() {
    let golden = std::fs::read_to_string(fixtures().join("expected.toml")).unwrap();
    for seed in [1, 7, 42] {
        let dir = temp_dir("shuffled");
        let offers = dir.join("offers");
        shuffled_copy(&offers, seed);
        let out = dir.join("out.toml");
        let o = run_offer_dir(&offers, &fixtures().join("base.toml"), &out, &[]);
        assert_eq!(
            o.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            golden,
            "seed {seed}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// A tiny HTTP/1.1 server on 127.0.0.1 serving the fixture tree as the Price
/// List endpoint: `/offers/v1.0/aws/<code>/current/<path>` → `<code>/<path>`.
fn serve_fixtures() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
            }
            let path = request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or("")
                .to_string();
            log.lock().unwrap().push(path.clone());
            let file = path
                .strip_prefix("/offers/v1.0/aws/")
                .map(|p| p.replacen("/current/", "/", 1))
                .map(|p| fixtures().join(p));
            let (status, body) = match file.and_then(|f| std::fs::read(f).ok()) {
                Some(b) if !path.contains("..") => ("200 OK", b),
                _ => ("404 Not Found", b"not found".to_vec()),
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(&body);
        }
    });
    (format!("http://{addr}"), seen)
}

#[test]
fn fetch_downloads_the_three_offers_and_syncs_like_the_same_files_on_disk() {
    let (url, seen) = serve_fixtures();
    let dir = temp_dir("fetch");
    // The bulk endpoint has no Sonnet 4.6 here (it is only in the GetProducts
    // dump), so its map entry would be stale: a map without it.
    let full_map = std::fs::read_to_string(fixtures().join("map.toml")).unwrap();
    let map = dir.join("map.toml");
    let kept: Vec<&str> = full_map
        .split("\n[[model]]")
        .filter(|e| !e.contains("Sonnet 4.6"))
        .collect();
    std::fs::write(&map, kept.join("\n[[model]]")).unwrap();
    assert!(!std::fs::read_to_string(&map).unwrap().contains("4.6"));
    let fetched = dir.join("fetched.toml");
    let o = sync_with_map(
        &map,
        &["--fetch", "--price-list-url", &url],
        &fixtures().join("base.toml"),
        &fetched,
        &[],
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut requests = seen.lock().unwrap().clone();
    requests.sort();
    assert_eq!(
        requests,
        [
            "/offers/v1.0/aws/AmazonBedrock/current/ap-northeast-1/index.json",
            "/offers/v1.0/aws/AmazonBedrock/current/region_index.json",
            "/offers/v1.0/aws/AmazonBedrock/current/us-east-1/index.json",
            "/offers/v1.0/aws/AmazonBedrockFoundationModels/current/region_index.json",
            "/offers/v1.0/aws/AmazonBedrockFoundationModels/current/us-east-1/index.json",
            "/offers/v1.0/aws/AmazonBedrockService/current/region_index.json",
            "/offers/v1.0/aws/AmazonBedrockService/current/us-east-1/index.json",
        ]
    );
    // The same bulk files read from disk (the GetProducts dump is not part
    // of the bulk endpoint) give the same table.
    let offers = dir.join("offers");
    for code in [
        "AmazonBedrock",
        "AmazonBedrockFoundationModels",
        "AmazonBedrockService",
    ] {
        let from = fixtures().join(code);
        for e in std::fs::read_dir(&from).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                let to = offers.join(code).join(p.file_name().unwrap());
                std::fs::create_dir_all(&to).unwrap();
                std::fs::copy(p.join("index.json"), to.join("index.json")).unwrap();
            }
        }
    }
    let on_disk = dir.join("on-disk.toml");
    let offers_arg = offers.display().to_string();
    let o = sync_with_map(
        &map,
        &["--offer-dir", &offers_arg],
        &fixtures().join("base.toml"),
        &on_disk,
        &[],
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let fetched_text = std::fs::read_to_string(&fetched).unwrap();
    assert_eq!(fetched_text, std::fs::read_to_string(&on_disk).unwrap());
    assert!(fetched_text.contains("cache_write_1h = \"6.6\""));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_fetch_from_an_endpoint_without_the_files_fails_and_writes_nothing() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            let mut s = s;
            let mut buf = [0u8; 4096];
            let _ = std::io::Read::read(&mut s, &mut buf);
            let _ = s.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    let dir = temp_dir("fetch404");
    let out = dir.join("out.toml");
    let o = sync(
        &["--fetch", "--price-list-url", &url],
        &fixtures().join("base.toml"),
        &out,
        &[],
    );
    assert_eq!(
        o.status.code(),
        Some(2),
        "a failed download exits 2, never 1 (changes written)"
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("HTTP 404"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!out.exists());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn data_errors_exit_2_name_each_problem_and_write_nothing() {
    let dir = temp_dir("errors");
    let offers = dir.join("offers");
    std::fs::create_dir_all(&offers).unwrap();
    let row = |sku: &str, usagetype: &str, unit: &str, usd: &str| {
        serde_json::json!({
            "product": {"sku": sku, "attributes": {"regionCode": "us-east-1", "usagetype": usagetype,
                "servicename": "Claude Sonnet 4.5 (Amazon Bedrock Edition)"}},
            "serviceCode": "AmazonBedrockFoundationModels",
            "terms": {"OnDemand": {format!("{sku}.T"): {"priceDimensions": {format!("{sku}.T.R"): {
                "unit": unit, "description": "Million Input Tokens", "pricePerUnit": {"USD": usd}}}}}},
            "version": "20261101000000", "publicationDate": "2026-11-01T00:00:00Z"
        })
        .to_string()
    };
    let dump = serde_json::json!({"FormatVersion": "aws_v1", "PriceList": [
        row("A1", "USE1-MP:USE1_InputTokenCount-Units", "Units", "3.3000000000"),
        // a second standard input rate for the same key
        row("A2", "USE1-MP:USE1_input_tokens_standard-Units", "Units", "3.5000000000"),
        // a unit that is not a token unit
        row("A3", "USE1-MP:USE1_OutputTokenCount-Units", "Images", "0.0400000000"),
        // more decimals than the table holds
        row("A4", "USE1-MP:USE1_CacheReadInputTokenCount-Units", "1M tokens", "0.3300000001"),
    ]});
    std::fs::write(offers.join("dump.json"), dump.to_string()).unwrap();
    let out = dir.join("out.toml");
    let o = run_offer_dir(&offers, &fixtures().join("base.toml"), &out, &["--json"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!out.exists(), "a table with data errors is never written");
    let r = report_json(&o);
    let kinds: Vec<&str> = r["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    for want in ["ambiguous", "unknown_unit", "too_precise"] {
        assert!(kinds.contains(&want), "{want} missing from {kinds:?}");
    }
    let _ = std::fs::remove_dir_all(dir);
}
