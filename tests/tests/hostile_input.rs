//! Hostile input: every malformed payload gives a clear error (nothing in it
//! counted), every malformed record a counted, reported skip; good records in
//! the same batch still count; nothing panics; memory stays bounded.
//!
//! Most cases meter payloads directly (no server); the ones about what
//! DynamoDB can hold (64-bit overflow, ids at the limits, key delimiters) go
//! through DynamoDB Local.

use std::collections::BTreeMap;
use std::io::Write;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Mutex;

use base64::Engine as _;
use flate2::write::GzEncoder;
use flate2::{Compress, Compression, FlushCompress};
use integration_tests::*;
use meter_core::decode::{parse_payload, unwrap_payload, DEFAULT_MAX_DECOMPRESSED_BYTES};
use meter_core::{DecodeError, DecodeLimits, Meter, MeteredBatch};
use meter_store::{ingest_payload, CommitSettings, MemoryUsageStore, PayloadError};
use serde_json::json;
use time::OffsetDateTime;

// ---------------------------------------------------------------- helpers

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(bytes).expect("gzip");
    enc.finish().expect("gzip")
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The Lambda event for gzip bytes.
fn lambda_event(gz: &[u8]) -> Vec<u8> {
    json!({"awslogs": {"data": b64(gz)}})
        .to_string()
        .into_bytes()
}

/// Log event id of the `i`-th message (0-based) in [`cw_event`].
fn event_id(i: usize) -> String {
    format!("{:056}", i + 1)
}

/// The decoded subscription payload carrying raw `messages`.
fn subscription_payload(messages: &[String]) -> String {
    let events: Vec<serde_json::Value> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| json!({"id": event_id(i), "timestamp": 1_790_000_000_000u64, "message": m}))
        .collect();
    json!({
        "messageType": "DATA_MESSAGE", "owner": "111111111111",
        "logGroup": "/aws/bedrock/modelinvocations", "logStream": "aws/bedrock/modelinvocations",
        "subscriptionFilters": ["bedrock-meter"], "logEvents": events,
    })
    .to_string()
}

/// A CloudWatch Logs Lambda event carrying raw `messages`.
fn cw_event(messages: &[String]) -> Vec<u8> {
    lambda_event(&gzip(subscription_payload(messages).as_bytes()))
}

/// A good record: 1000 input and 100 output tokens of Nova Micro for alice.
fn good(request_id: &str) -> String {
    json!({
        "schemaType": "ModelInvocationLog", "schemaVersion": "1.0",
        "timestamp": "2026-11-01T10:00:00Z", "accountId": "111111111111", "region": "us-east-1",
        "requestId": request_id, "operation": "Converse", "modelId": "amazon.nova-micro-v1:0",
        "identity": {"arn": "arn:aws:sts::111111111111:assumed-role/BedrockUsers/alice"},
        "requestMetadata": {"user": "alice"},
        "input": {"inputContentType": "application/json", "inputTokenCount": 1000,
            "inputBodyJson": {"messages": [{"role": "user", "content": [{"text": "CANARY-PROMPT-7f3a"}]}]}},
        "output": {"outputContentType": "application/json", "outputTokenCount": 100},
    })
    .to_string()
}

/// A good record with some top-level fields replaced (or removed, for `null`
/// values in `remove`).
fn good_with(request_id: &str, set: serde_json::Value, remove: &[&str]) -> String {
    let mut v: serde_json::Value = serde_json::from_str(&good(request_id)).unwrap();
    for (k, val) in set.as_object().expect("object").clone() {
        v[k] = val;
    }
    for k in remove {
        v.as_object_mut().unwrap().remove(*k);
    }
    v.to_string()
}

/// Meters `input`; a panic fails the test naming the case.
fn meter(case: &str, input: &[u8]) -> Result<MeteredBatch, DecodeError> {
    let m = Meter::with_defaults();
    std::panic::catch_unwind(AssertUnwindSafe(|| m.meter_payload(input)))
        .unwrap_or_else(|_| panic!("{case}: meter_payload panicked"))
}

/// Ingests into a fresh in-memory store.
async fn ingest_mem(
    input: &[u8],
) -> (
    Result<meter_store::Ingested, PayloadError>,
    MemoryUsageStore,
) {
    let store = MemoryUsageStore::new();
    let out = ingest_payload(
        &store,
        &Meter::with_defaults(),
        &CommitSettings::default(),
        input,
        OffsetDateTime::now_utc(),
    )
    .await;
    (out, store)
}

fn invocations_stored(store: &MemoryUsageStore) -> u128 {
    store
        .aggregates()
        .values()
        .filter(|a| a.kind == "user_model_day")
        .map(|a| a.counters.invocations)
        .sum()
}

/// What should happen to one record.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Counted, on this UTC day.
    Counted(&'static str),
    /// Skipped with this reason label.
    Skipped(&'static str),
    /// Skipped with one of these reasons.
    SkippedAny(&'static [&'static str]),
    /// Either counted on this day or skipped as `bad_timestamp`: both are
    /// defensible readings of a borderline format.
    DayOrBadTimestamp(&'static str),
    /// Either outcome, as long as it is one of them.
    CountedOrSkipped,
}

/// Meters one Lambda event holding a good record, every case, and another
/// good record; checks each case's outcome, that both good records count,
/// and that the whole batch ingests with exactly the counted records.
async fn check_cases(title: &str, cases: &[(&str, String, Expect)]) {
    let mut messages = vec![good(&format!("{title}-first"))];
    messages.extend(cases.iter().map(|(_, m, _)| m.clone()));
    messages.push(good(&format!("{title}-last")));
    let batch = meter(title, &cw_event(&messages)).unwrap_or_else(|e| panic!("{title}: {e}"));
    let counted: BTreeMap<String, &meter_core::MeteredRecord> = batch
        .records
        .iter()
        .map(|r| (r.record_id.clone(), r))
        .collect();
    let skipped: BTreeMap<String, &meter_core::SkippedRecord> = batch
        .skipped
        .iter()
        .map(|s| (s.location.clone(), s))
        .collect();
    let mut failures = Vec::new();
    let mut expected_counted = 2;
    for (i, (name, message, expect)) in cases.iter().enumerate() {
        let id = event_id(i + 1);
        let got_counted = counted.get(&record_id_of(message, &id));
        let got_skipped = skipped.get(&id);
        if let Some(s) = got_skipped {
            let text = s.error.to_string();
            if text.contains("CANARY") || text.len() > 300 {
                failures.push(format!("{name}: error echoes input or is too long: {text}"));
            }
        }
        let ok = match (expect, got_counted, got_skipped) {
            (Expect::Counted(day), Some(r), None) => r.day.to_string() == *day,
            (Expect::Skipped(label), None, Some(s)) => s.error.reason_label() == *label,
            (Expect::SkippedAny(labels), None, Some(s)) => labels.contains(&s.error.reason_label()),
            (Expect::DayOrBadTimestamp(day), Some(r), None) => r.day.to_string() == *day,
            (Expect::DayOrBadTimestamp(_), None, Some(s)) => {
                s.error.reason_label() == "bad_timestamp"
            }
            (Expect::CountedOrSkipped, Some(_), None)
            | (Expect::CountedOrSkipped, None, Some(_)) => true,
            _ => false,
        };
        if got_counted.is_some() {
            expected_counted += 1;
        }
        let shown: String = message.chars().take(80).collect();
        println!(
            "{title}: {name}: {}",
            match (got_counted, got_skipped) {
                (Some(r), _) => format!(
                    "counted (day {}, user {:.20}, model {:.30}, tokens in {} out {})",
                    r.day, r.user, r.model, r.counters.input_tokens, r.counters.output_tokens
                ),
                (_, Some(s)) => format!("skipped {}: {}", s.error.reason_label(), s.error),
                _ => "LOST (neither counted nor skipped)".to_string(),
            }
        );
        if !ok {
            failures.push(format!(
                "{name} ({shown}): expected {expect:?}, got counted={:?} skipped={:?}",
                got_counted.map(|r| r.day.to_string()),
                got_skipped.map(|s| s.error.to_string())
            ));
        }
    }
    for good_id in [format!("r:{title}-first"), format!("r:{title}-last")] {
        if !counted.contains_key(&good_id) {
            failures.push(format!("good record {good_id} not counted"));
        }
    }
    assert_eq!(
        batch.records.len() + batch.skipped.len() + batch.duplicates_in_batch,
        messages.len(),
        "{title}: every event is counted, skipped or a duplicate"
    );
    assert!(failures.is_empty(), "{title}:\n{}", failures.join("\n"));
    assert_eq!(batch.records.len(), expected_counted);

    // The same batch through the ingest path: the report names every skip.
    let (out, store) = ingest_mem(&cw_event(&messages)).await;
    let done = out.unwrap_or_else(|e| panic!("{title}: {e}"));
    assert_eq!(done.report.counted, expected_counted, "{title}");
    assert_eq!(done.report.skipped, batch.skipped.len(), "{title}");
    assert_eq!(
        done.report.skipped_by_reason.values().sum::<usize>(),
        batch.skipped.len()
    );
    assert_eq!(invocations_stored(&store), expected_counted as u128);
}

/// The record id a message would get: `r:<requestId>`, else `e:<event id>`.
/// (A plain text search: some cases are not valid JSON values as a whole.)
fn record_id_of(message: &str, event_id: &str) -> String {
    const KEY: &str = r#""requestId":""#;
    message
        .find(KEY)
        .map(|at| &message[at + KEY.len()..])
        .and_then(|rest| rest.split_once('"').map(|(id, _)| id))
        .filter(|id| !id.is_empty())
        .map_or_else(|| format!("e:{event_id}"), |id| format!("r:{id}"))
}

/// Memory- and time-heavy tests run one at a time so they do not compete
/// for the machine's two cores and its memory.
static HEAVY: Mutex<()> = Mutex::new(());

/// What `meter-peak-rss` (tests/src/bin) reported for one payload metered in
/// a process of its own: its own peak RSS, which other tests running in
/// this process cannot disturb.
#[derive(Debug)]
struct Measured {
    /// How far peak RSS rose above the RSS before metering (KiB).
    growth_kib: u64,
    /// `metered`, `error` or `panicked`.
    outcome: String,
    /// The error's variant name (`TooLarge`, ...) when `outcome` is `error`.
    error_kind: String,
    /// Records counted and skip reasons when `outcome` is `metered`.
    records: u64,
    skipped: Vec<String>,
    report: serde_json::Value,
}

fn meter_in_child(case: &str, input: &[u8]) -> Measured {
    let file = std::env::temp_dir().join(format!(
        "hostile-{}-{}.bin",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::write(&file, input).expect("write the payload for meter-peak-rss");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meter-peak-rss"))
        .arg(&file)
        .output()
        .expect("run meter-peak-rss");
    let _ = std::fs::remove_file(&file);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{case}: meter-peak-rss failed ({}): {stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{case}: not a JSON report ({e}): {stdout}"));
    assert_eq!(report["input_bytes"], input.len(), "{case}: {report}");
    let text = |k: &str| report[k].as_str().unwrap_or_default().to_string();
    Measured {
        growth_kib: report["growth_kib"].as_u64().expect("growth_kib"),
        outcome: text("outcome"),
        error_kind: text("error_kind"),
        records: report["records"].as_u64().unwrap_or(0),
        skipped: report["skipped"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|v| v.as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default(),
        report,
    }
}

// ------------------------------------------------------ payload-level errors

#[test]
fn invalid_base64_is_a_clear_decode_error_that_counts_nothing() {
    for data in [
        "!!!not base64",
        "SGVsbG8*",
        "====",
        "a",
        "\u{00e9}\u{00e9}\u{00e9}\u{00e9}",
    ] {
        let event = json!({"awslogs": {"data": data}}).to_string();
        let err = meter(data, event.as_bytes()).expect_err(data);
        assert!(matches!(err, DecodeError::Base64(_)), "{data}: {err:?}");
        assert!(err.to_string().contains("base64"), "{err}");
    }
}

#[test]
fn data_that_is_not_gzip_is_a_clear_decode_error() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("text", b"hello world".to_vec()),
        ("zlib, not gzip", {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), Compression::default());
            e.write_all(b"{\"logEvents\":[]}").unwrap();
            e.finish().unwrap()
        }),
        (
            "gzip magic then garbage",
            vec![
                0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255, 1, 2, 3, 4, 5, 6, 7, 8, 9,
            ],
        ),
        ("empty", Vec::new()),
    ];
    for (name, bytes) in cases {
        let err = meter(name, &lambda_event(&bytes)).expect_err(name);
        assert!(matches!(err, DecodeError::Gzip(_)), "{name}: {err:?}");
        assert!(err.to_string().contains("gzip"), "{name}: {err}");
    }
}

#[test]
fn truncated_gzip_is_a_clear_decode_error_wherever_it_is_cut() {
    let recs = corpus(20, 3, 2, 61);
    let gz = gzip(
        subscription_payload(&recs.iter().map(|r| r.to_json()).collect::<Vec<_>>()).as_bytes(),
    );
    // Inside the header, inside the deflate stream, and inside the trailer.
    for cut in [
        3,
        10,
        11,
        gz.len() / 3,
        gz.len() / 2,
        gz.len() - 8,
        gz.len() - 4,
        gz.len() - 1,
    ] {
        let name = format!("cut at {cut} of {}", gz.len());
        for input in [lambda_event(&gz[..cut]), gz[..cut].to_vec()] {
            let err = meter(&name, &input).expect_err(&name);
            assert!(matches!(err, DecodeError::Gzip(_)), "{name}: {err:?}");
        }
    }
    // The whole stream still decodes.
    assert_eq!(
        meter("whole", &lambda_event(&gz)).unwrap().records.len(),
        20
    );
}

/// A deflate stream of `mib` MiB of zeros, and its CRC-32, built without
/// holding the data: one MiB of zeros compressed with a full flush gives a
/// self-contained block sequence that is the same for every MiB, so the
/// stream is that block sequence repeated, then an empty final block.
fn gzip_of_zeros(mib: u64) -> Vec<u8> {
    let chunk = vec![0u8; 1 << 20];
    let compress_chunk = |c: &mut Compress| {
        let mut out = Vec::with_capacity(4096);
        let before = c.total_in();
        c.compress_vec(&chunk, &mut out, FlushCompress::Full)
            .unwrap();
        assert_eq!(
            c.total_in() - before,
            chunk.len() as u64,
            "output buffer too small"
        );
        out
    };
    let mut c = Compress::new(Compression::best(), false);
    let block = compress_chunk(&mut c);
    assert_eq!(compress_chunk(&mut c), block, "full-flush blocks repeat");
    // CRC-32 of `mib` MiB of zeros, by doubling (combine uses 64-bit lengths).
    let mut one = flate2::Crc::new();
    one.update(&chunk);
    let copy = |c: &flate2::Crc| {
        let mut n = flate2::Crc::new();
        n.combine(c);
        n
    };
    let mut crc = flate2::Crc::new();
    for bit in (0..64).rev() {
        let doubled = copy(&crc);
        crc.combine(&doubled);
        if mib >> bit & 1 == 1 {
            crc.combine(&one);
        }
    }
    let mut gz = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 255];
    gz.reserve(block.len() * mib as usize + 16);
    for _ in 0..mib {
        gz.extend_from_slice(&block);
    }
    gz.extend_from_slice(&[0x03, 0x00]); // final fixed-Huffman block: end of block only
    gz.extend_from_slice(&crc.sum().to_le_bytes());
    gz.extend_from_slice(&((mib << 20) as u32).to_le_bytes());
    gz
}

#[test]
fn the_gzip_bomb_builder_makes_valid_gzip() {
    // 3 MiB of zeros: small enough to inflate fully here, CRC and size checked.
    let gz = gzip_of_zeros(3);
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut out)
        .expect("valid gzip with a correct trailer");
    assert_eq!(out.len(), 3 << 20);
    assert!(out.iter().all(|&b| b == 0));
}

#[test]
fn a_gzip_bomb_of_gigabytes_fails_fast_with_bounded_memory() {
    let _heavy = HEAVY.lock().unwrap_or_else(|p| p.into_inner());
    // One layer: 1 GiB of zeros in about 1 MB, CloudWatch's payload size.
    let single = gzip_of_zeros(1024);
    // Two layers: gzip of the gzip of 8 GiB of zeros, a few KB. The decoder
    // peels nested gzip, so the inner layer meets the cap too.
    let nested = gzip(&gzip_of_zeros(8 * 1024));
    let cap = DEFAULT_MAX_DECOMPRESSED_BYTES as u64;
    for (name, gz) in [
        ("1 GiB in one layer", single),
        ("8 GiB in two layers", nested),
    ] {
        for (shape, input) in [
            ("Lambda event", lambda_event(&gz)),
            ("raw gzip", gz.clone()),
        ] {
            let started = std::time::Instant::now();
            let measured = meter_in_child(name, &input);
            let secs = started.elapsed().as_secs_f64();
            let growth_kib = measured.growth_kib;
            println!(
                "gzip bomb, {name}, {shape}: {} bytes in, {}; peak RSS growth {:.1} MiB (cap {} MiB), {secs:.2}s in its own process",
                input.len(),
                measured.report["error"],
                growth_kib as f64 / 1024.0,
                cap >> 20
            );
            assert_eq!(measured.outcome, "error", "{name}: {:?}", measured.report);
            assert_eq!(
                measured.error_kind, "TooLarge",
                "{name}: {:?}",
                measured.report
            );
            // The cap bounds memory: the output buffer may double once past it.
            assert!(
                growth_kib < (2 * cap + (32 << 20)) >> 10,
                "{name}: peak RSS grew {growth_kib} KiB"
            );
        }
        if name.contains("two layers") {
            assert!(gz.len() < 64 * 1024, "{} bytes", gz.len());
        }
    }
}

/// One gzip member holding `data` (stored block: no compression needed).
fn gzip_member(data: &[u8]) -> Vec<u8> {
    assert!(data.len() < 65_536);
    let mut m = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255, 0x01];
    let len = data.len() as u16;
    m.extend_from_slice(&len.to_le_bytes());
    m.extend_from_slice(&(!len).to_le_bytes());
    m.extend_from_slice(data);
    let mut crc = flate2::Crc::new();
    crc.update(data);
    m.extend_from_slice(&crc.sum().to_le_bytes());
    m.extend_from_slice(&(data.len() as u32).to_le_bytes());
    m
}

#[test]
fn a_megabyte_of_tiny_gzip_members_decodes_in_linear_time() {
    let _heavy = HEAVY.lock().unwrap_or_else(|p| p.into_inner());
    // Multi-member gzip is legal (Bedrock's S3 objects have several members).
    // 1 MB of members each holding one short record line: tens of thousands
    // of members. Work must stay proportional to the input, not to members
    // times input size.
    let line = |i: usize| {
        format!(
            "{{\"requestId\":\"m{i}\",\"modelId\":\"m\",\"timestamp\":\"2026-11-01T00:00:00Z\"}}\n"
        )
    };
    let mut input = Vec::new();
    let mut members = 0;
    while input.len() < 1 << 20 {
        input.extend(gzip_member(line(members).as_bytes()));
        members += 1;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let started = std::time::Instant::now();
    let worker_input = input.clone();
    std::thread::spawn(move || {
        let m = Meter::with_defaults();
        let _ = tx.send(m.meter_payload(&worker_input).map(|b| b.records.len()));
    });
    let budget = std::time::Duration::from_secs(20);
    let outcome = rx.recv_timeout(budget);
    println!(
        "{members} gzip members in {} bytes: {:?} after {:.2}s",
        input.len(),
        outcome
            .as_ref()
            .map(|r| r.as_ref().map_err(|e| e.to_string())),
        started.elapsed().as_secs_f64()
    );
    let counted = outcome
        .unwrap_or_else(|_| panic!("decoding {members} gzip members of 1 MB took over {budget:?}"))
        .expect("decodes");
    assert_eq!(counted, members);
}

#[test]
fn non_utf8_bytes_give_a_clear_error_or_a_counted_skip() {
    // Newline-delimited input (S3 delivery) must be UTF-8 text as a whole.
    let mut lines = format!("{}\n", good("utf8-a")).into_bytes();
    lines
        .extend_from_slice(b"{\"modelId\":\"m\xff\xfe\",\"timestamp\":\"2026-11-01T00:00:00Z\"}\n");
    lines.extend_from_slice(format!("{}\n", good("utf8-b")).as_bytes());
    for input in [lines.clone(), gzip(&lines)] {
        let err = meter("ndjson", &input).expect_err("ndjson with invalid UTF-8");
        assert!(matches!(err, DecodeError::NotUtf8), "{err:?}");
    }
    // Overlong encodings and lone surrogates encoded in UTF-8 are invalid too.
    for bad in [&b"\xc0\x80"[..], b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"] {
        let mut l = b"{\"requestId\":\"x".to_vec();
        l.extend_from_slice(bad);
        l.extend_from_slice(b"\"}\n");
        assert!(matches!(meter("bad utf-8", &l), Err(DecodeError::NotUtf8)));
    }
    // A subscription payload with raw invalid bytes inside a message string.
    let payload = subscription_payload(&[good("utf8-c"), "PLACEHOLDER".into()])
        .replace("PLACEHOLDER", "\u{1}")
        .into_bytes();
    let mut raw = payload.clone();
    let at = raw.iter().position(|&b| b == 1).unwrap();
    raw[at] = 0xff;
    let err = meter("payload", &lambda_event(&gzip(&raw))).expect_err("invalid UTF-8 in payload");
    assert!(
        matches!(err, DecodeError::Shape(_) | DecodeError::NotUtf8),
        "{err:?}"
    );
    assert!(!err.to_string().contains("CANARY"));

    // Inside a record, escaped lone surrogates are invalid text: that record
    // is skipped, the rest counts.
    check_cases(
        "escapes",
        &[
            (
                "lone high surrogate in the user",
                good_with("esc-1", json!({}), &[])
                    .replace("\"user\":\"alice\"", r#""user":"al\ud800ice""#),
                Expect::SkippedAny(&["not_json", "wrong_shape"]),
            ),
            (
                "lone low surrogate in the model",
                good_with("esc-2", json!({}), &[]).replace("amazon.nova-micro-v1:0", r"nova\udc00"),
                Expect::SkippedAny(&["not_json", "wrong_shape"]),
            ),
            (
                "lone surrogate inside the prompt body (skipped unread)",
                good_with("esc-3", json!({}), &[]).replace("CANARY-PROMPT-7f3a", r"CANARY\ud800"),
                Expect::Counted("2026-11-01"),
            ),
            (
                "a NUL and a valid surrogate pair in the user",
                good_with("esc-4", json!({}), &[])
                    .replace("\"user\":\"alice\"", r#""user":"a\u0000\ud83d\ude00""#),
                Expect::Counted("2026-11-01"),
            ),
        ],
    )
    .await_blocking();
}

/// Runs a future to completion on a fresh runtime (for sync tests).
trait AwaitBlocking: std::future::Future + Sized {
    fn await_blocking(self) -> Self::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(self)
    }
}
impl<F: std::future::Future> AwaitBlocking for F {}

#[test]
fn json_of_the_wrong_shape_is_a_clear_error_for_payloads_and_a_skip_for_records() {
    let payloads: Vec<(&str, Vec<u8>)> = vec![
        ("awslogs without data", br#"{"awslogs":{}}"#.to_vec()),
        (
            "awslogs data null",
            br#"{"awslogs":{"data":null}}"#.to_vec(),
        ),
        ("awslogs a string", br#"{"awslogs":"data"}"#.to_vec()),
        (
            "logEvents an object",
            br#"{"messageType":"DATA_MESSAGE","logEvents":{}}"#.to_vec(),
        ),
        (
            "event id a number",
            br#"{"messageType":"DATA_MESSAGE","logEvents":[{"id":1,"message":"x"}]}"#.to_vec(),
        ),
        (
            "event without message",
            br#"{"messageType":"DATA_MESSAGE","logEvents":[{"id":"1"}]}"#.to_vec(),
        ),
        (
            "message an object",
            br#"{"messageType":"DATA_MESSAGE","logEvents":[{"id":"1","message":{"a":1}}]}"#
                .to_vec(),
        ),
        (
            "unknown messageType",
            br#"{"messageType":"SOMETHING_ELSE","logEvents":[]}"#.to_vec(),
        ),
        ("an array", b"[1,2,3]".to_vec()),
        ("a number", b"42".to_vec()),
        (
            "requestPayload a number",
            br#"{"requestPayload":5}"#.to_vec(),
        ),
        ("destination records nested too deep", {
            let mut s = cw_event(&[good("deep")]);
            for _ in 0..5 {
                s = format!(
                    r#"{{"version":"1.0","requestPayload":{}}}"#,
                    String::from_utf8(s).unwrap()
                )
                .into_bytes();
            }
            s
        }),
    ];
    for (name, input) in payloads {
        for shaped in [input.clone(), gzip(&input), lambda_event(&gzip(&input))] {
            let err = meter(name, &shaped).expect_err(name);
            assert!(
                matches!(err, DecodeError::Shape(_) | DecodeError::TooDeep(_)),
                "{name}: {err:?}"
            );
            assert!(!err.to_string().contains("CANARY"), "{name}: {err}");
        }
    }
    // JSON that breaks off before it shows its shape is read as one
    // newline-delimited record: that record is skipped, nothing counted.
    let garbled: Vec<(&str, Vec<u8>)> = vec![
        (
            "truncated JSON",
            br#"{"messageType":"DATA_MESSAGE","logEvents":[{"id":"1","mess"#.to_vec(),
        ),
        ("deeply nested arrays", {
            let mut v = br#"{"messageType":"DATA_MESSAGE","logEvents":"#.to_vec();
            v.extend(std::iter::repeat(b'[').take(100_000));
            v
        }),
    ];
    for (name, input) in garbled {
        for shaped in [input.clone(), gzip(&input), lambda_event(&gzip(&input))] {
            match meter(name, &shaped) {
                Err(DecodeError::Shape(_)) => {}
                Ok(b) => assert!(
                    b.records.is_empty() && !b.skipped.is_empty(),
                    "{name}: {b:?}"
                ),
                Err(other) => panic!("{name}: {other:?}"),
            }
        }
    }

    let deep_unknown = {
        let mut s = good("deep-1");
        s.pop();
        s + r#","futureField":"# + &"[".repeat(50_000) + &"]".repeat(50_000) + "}"
    };
    check_cases(
        "shape",
        &[
            (
                "an array",
                "[1,2]".into(),
                Expect::Skipped("not_invocation_record"),
            ),
            (
                "a string",
                r#""CANARY-PROMPT-7f3a""#.into(),
                Expect::Skipped("not_invocation_record"),
            ),
            (
                "a number",
                "12".into(),
                Expect::Skipped("not_invocation_record"),
            ),
            (
                "plain text",
                "CANARY-PROMPT-7f3a hello".into(),
                Expect::Skipped("not_json"),
            ),
            (
                "empty object",
                "{}".into(),
                Expect::Skipped("not_invocation_record"),
            ),
            (
                "another schema",
                good_with("shape-1", json!({"schemaType": "Other"}), &[]),
                Expect::Skipped("not_invocation_record"),
            ),
            (
                "input a string",
                good_with("shape-2", json!({"input": "CANARY-PROMPT-7f3a"}), &[]),
                Expect::Skipped("wrong_shape"),
            ),
            (
                "modelId an array",
                good_with("shape-3", json!({"modelId": ["m"]}), &[]),
                Expect::Skipped("wrong_shape"),
            ),
            (
                "requestId a number",
                good_with("shape-4", json!({"requestId": 7}), &[]),
                Expect::Skipped("wrong_shape"),
            ),
            (
                "identity a string",
                good_with("shape-5", json!({"identity": "arn"}), &[]),
                Expect::Skipped("wrong_shape"),
            ),
            (
                "requestMetadata a string",
                good_with("shape-6", json!({"requestMetadata": "alice"}), &[]),
                Expect::Skipped("wrong_shape"),
            ),
            (
                "requestMetadata an array",
                good_with("shape-7", json!({"requestMetadata": ["alice"]}), &[]),
                Expect::Skipped("wrong_shape"),
            ),
            (
                "metadata user a number (ignored: user from the ARN)",
                good_with("shape-8", json!({"requestMetadata": {"user": 5}}), &[]),
                Expect::Counted("2026-11-01"),
            ),
            (
                "duplicate modelId",
                good("shape-9").replacen('{', r#"{"modelId":"other","#, 1),
                Expect::Skipped("wrong_shape"),
            ),
            (
                "trailing garbage",
                good("shape-10") + " CANARY-PROMPT-7f3a",
                Expect::Skipped("not_json"),
            ),
            (
                "truncated record",
                good("shape-11")[..60].to_string(),
                Expect::Skipped("not_json"),
            ),
            (
                "unknown field nested 50,000 deep",
                deep_unknown,
                Expect::CountedOrSkipped,
            ),
        ],
    )
    .await_blocking();
}

#[test]
fn negative_fractional_and_huge_token_counts_are_skipped_and_the_batch_still_counts() {
    let with_tokens = |id: &str, input: &str| {
        good(id).replace(
            r#""inputTokenCount":1000"#,
            &format!(r#""inputTokenCount":{input}"#),
        )
    };
    let bad = |id: &str, v: &str| (v.to_string(), with_tokens(id, v));
    let mut cases: Vec<(&str, String, Expect)> = Vec::new();
    for (v, msg) in [
        bad("t-1", "-1"),
        bad("t-2", "-9223372036854775808"),
        bad("t-3", "1.5"),
        bad("t-4", "0.0"),
        bad("t-5", "1e3"),
        bad("t-6", "18446744073709551616"),
        bad("t-7", "99999999999999999999999999999999999999999"),
        bad("t-8", r#""12""#),
        bad("t-9", "true"),
        bad("t-10", "-0"),
    ] {
        cases.push((
            Box::leak(v.into_boxed_str()),
            msg,
            Expect::Skipped("bad_token_count"),
        ));
    }
    cases.push((
        "an object",
        with_tokens("t-11", "{}"),
        Expect::SkippedAny(&["wrong_shape", "bad_token_count"]),
    ));
    cases.push((
        "1e400 (out of range for JSON numbers)",
        with_tokens("t-12", "1e400"),
        Expect::SkippedAny(&["not_json", "bad_token_count"]),
    ));
    cases.push((
        "null (no count)",
        with_tokens("t-13", "null"),
        Expect::Counted("2026-11-01"),
    ));
    cases.push((
        "u64::MAX",
        with_tokens("t-14", "18446744073709551615"),
        Expect::Counted("2026-11-01"),
    ));
    cases.push((
        "zero",
        with_tokens("t-15", "0"),
        Expect::Counted("2026-11-01"),
    ));
    check_cases("tokens", &cases).await_blocking();

    // The accepted extremes carry their exact values.
    let batch = meter(
        "u64::MAX",
        &cw_event(&[with_tokens("t-16", "18446744073709551615")]),
    )
    .unwrap();
    assert_eq!(batch.records[0].counters.input_tokens, u128::from(u64::MAX));
}

#[test]
fn missing_fields_have_defined_outcomes() {
    check_cases(
        "missing",
        &[
            (
                "no timestamp",
                good_with("m-1", json!({}), &["timestamp"]),
                Expect::Skipped("missing_timestamp"),
            ),
            (
                "timestamp null",
                good_with("m-2", json!({"timestamp": null}), &[]),
                Expect::Skipped("missing_timestamp"),
            ),
            (
                "no modelId (counted as model `unknown`)",
                good_with("m-3", json!({}), &["modelId"]),
                Expect::Counted("2026-11-01"),
            ),
            (
                "no requestId (the log event id identifies it)",
                good_with("m-4", json!({}), &["requestId"]),
                Expect::Counted("2026-11-01"),
            ),
            (
                "no identity and no metadata (user `unknown`)",
                good_with("m-5", json!({}), &["identity", "requestMetadata"]),
                Expect::Counted("2026-11-01"),
            ),
            (
                "no input or output (zero tokens)",
                good_with("m-6", json!({}), &["input", "output"]),
                Expect::Counted("2026-11-01"),
            ),
            (
                "no schemaType, modelId or requestId",
                good_with("m-7", json!({}), &["schemaType", "modelId", "requestId"]),
                Expect::Skipped("not_invocation_record"),
            ),
            (
                "only schemaType and timestamp",
                json!({"schemaType": "ModelInvocationLog", "timestamp": "2026-11-01T00:00:00Z"})
                    .to_string(),
                Expect::Counted("2026-11-01"),
            ),
        ],
    )
    .await_blocking();
    // And what they were counted as.
    let batch = meter(
        "missing",
        &cw_event(&[
            good_with("m-3", json!({}), &["modelId"]),
            good_with("m-5", json!({}), &["identity", "requestMetadata"]),
            good_with("m-6", json!({}), &["requestId", "input", "output"]),
        ]),
    )
    .unwrap();
    assert_eq!(&*batch.records[0].model, meter_core::UNKNOWN_MODEL);
    assert_eq!(
        batch.records[0].counters.unpriced_invocations, 1,
        "tokens of an unknown model are unpriced, not $0"
    );
    assert_eq!(&*batch.records[1].user, "unknown");
    assert_eq!(batch.records[2].record_id, format!("e:{}", event_id(2)));
    assert_eq!(batch.records[2].counters.input_tokens, 0);
}

#[test]
fn odd_timestamp_formats_are_normalised_to_utc_or_skipped_and_never_panic() {
    let ts = |id: &str, t: serde_json::Value| good_with(id, json!({ "timestamp": t }), &[]);
    let long = "2026-11-01T10:00:00Z".repeat(500);
    check_cases(
        "timestamps",
        &[
            (
                "nanoseconds",
                ts("ts-1", json!("2026-11-01T10:00:00.123456789Z")),
                Expect::Counted("2026-11-01"),
            ),
            (
                "east of UTC, previous UTC day",
                ts("ts-2", json!("2026-11-01T01:30:00+02:00")),
                Expect::Counted("2026-10-31"),
            ),
            (
                "west of UTC, next UTC day",
                ts("ts-3", json!("2026-11-01T23:30:00-05:00")),
                Expect::Counted("2026-11-02"),
            ),
            (
                "+14:00, the largest real offset",
                ts("ts-4", json!("2026-11-01T00:00:00+14:00")),
                Expect::Counted("2026-10-31"),
            ),
            (
                "lower-case t and z",
                ts("ts-5", json!("2026-11-01t10:00:00z")),
                Expect::DayOrBadTimestamp("2026-11-01"),
            ),
            (
                "space instead of T",
                ts("ts-6", json!("2026-11-01 10:00:00Z")),
                Expect::DayOrBadTimestamp("2026-11-01"),
            ),
            (
                "leap second",
                ts("ts-7", json!("2016-12-31T23:59:60Z")),
                Expect::DayOrBadTimestamp("2016-12-31"),
            ),
            (
                "no offset",
                ts("ts-8", json!("2026-11-01T10:00:00")),
                Expect::Skipped("bad_timestamp"),
            ),
            (
                "date only",
                ts("ts-9", json!("2026-11-01")),
                Expect::Skipped("bad_timestamp"),
            ),
            (
                "epoch seconds as a string",
                ts("ts-10", json!("1790000000")),
                Expect::Skipped("bad_timestamp"),
            ),
            (
                "epoch milliseconds as a number",
                ts("ts-11", json!(1_790_000_000_000u64)),
                Expect::Skipped("wrong_shape"),
            ),
            (
                "empty",
                ts("ts-12", json!("")),
                Expect::Skipped("bad_timestamp"),
            ),
            (
                "February 30th",
                ts("ts-13", json!("2026-02-30T00:00:00Z")),
                Expect::Skipped("bad_timestamp"),
            ),
            (
                "hour 24",
                ts("ts-14", json!("2026-11-01T24:00:00Z")),
                Expect::Skipped("bad_timestamp"),
            ),
            (
                "offset +24:00",
                ts("ts-15", json!("2026-11-01T10:00:00+24:00")),
                Expect::Skipped("bad_timestamp"),
            ),
            (
                "six-digit year",
                ts("ts-16", json!("+002026-11-01T10:00:00Z")),
                Expect::Skipped("bad_timestamp"),
            ),
            (
                "RFC 2822",
                ts("ts-17", json!("Sun, 01 Nov 2026 10:00:00 +0000")),
                Expect::Skipped("bad_timestamp"),
            ),
            (
                "10 KB of timestamps",
                ts("ts-18", json!(long)),
                Expect::Skipped("bad_timestamp"),
            ),
            (
                "year 0000",
                ts("ts-19", json!("0000-01-01T00:00:00Z")),
                Expect::DayOrBadTimestamp("0000-01-01"),
            ),
            (
                "the last second of 9999",
                ts("ts-20", json!("9999-12-31T23:59:59Z")),
                Expect::Counted("9999-12-31"),
            ),
            (
                "9999-12-31 west of UTC: year 10000 in UTC",
                ts("ts-21", json!("9999-12-31T23:30:00-01:00")),
                Expect::Skipped("bad_timestamp"),
            ),
            (
                "0000-01-01 east of UTC: year -1 in UTC",
                ts("ts-22", json!("0000-01-01T00:30:00+01:00")),
                Expect::CountedOrSkipped,
            ),
        ],
    )
    .await_blocking();
}

#[test]
fn one_megabyte_messages_are_metered_without_building_their_bodies_in_bounded_memory() {
    let _heavy = HEAVY.lock().unwrap_or_else(|p| p.into_inner());
    let mut rng = fastrand::Rng::with_seed(7);
    let text = |n: usize, rng: &mut fastrand::Rng| -> String {
        (0..n)
            .map(|_| match rng.u8(..40) {
                0 => '"',
                1 => '\\',
                2 => '\n',
                3 => '\u{e9}',
                _ => char::from(b'a' + rng.u8(..26)),
            })
            .collect()
    };
    let mb = 1 << 20;
    let big_prompt = |id: &str, rng: &mut fastrand::Rng| {
        let mut v: serde_json::Value = serde_json::from_str(&good(id)).unwrap();
        v["input"]["inputBodyJson"] =
            json!({"messages": [{"role": "user", "content": [{"text": text(mb, rng)}]}]});
        v["output"]["outputBodyJson"] =
            json!({"output": {"message": {"content": [{"text": text(mb / 4, rng)}]}}});
        v.to_string()
    };
    let mut messages = vec![good("mb-first")];
    for i in 0..6 {
        messages.push(big_prompt(&format!("mb-{i}"), &mut rng));
    }
    messages.push(format!("CANARY-PROMPT-7f3a {}", text(mb, &mut rng))); // 1 MB of not-JSON
    messages.push(good_with(
        "mb-user",
        json!({"requestMetadata": {"user": "u".repeat(mb)}}),
        &[],
    )); // 1 MB user id
    messages.push(good("mb-last"));
    let event = cw_event(&messages);
    let payload_mib = subscription_payload(&messages).len() as f64 / mb as f64;
    let batch = meter("1 MB messages", &event).expect("decodes");
    // The same payload again in a process of its own, for its peak memory.
    let measured = meter_in_child("1 MB messages", &event);
    let growth_kib = measured.growth_kib;
    assert_eq!(measured.outcome, "metered", "{:?}", measured.report);
    assert_eq!(measured.records, batch.records.len() as u64);
    println!(
        "1 MB messages: {} log events, {:.1} MiB decoded payload, {} bytes as a Lambda event; {} counted, {} skipped; peak RSS growth {:.1} MiB",
        messages.len(),
        payload_mib,
        event.len(),
        batch.records.len(),
        batch.skipped.len(),
        growth_kib as f64 / 1024.0
    );
    assert_eq!(
        batch.records.len(),
        8,
        "the six big-bodied records and both good ones"
    );
    let reasons: Vec<&str> = batch
        .skipped
        .iter()
        .map(|s| s.error.reason_label())
        .collect();
    assert_eq!(reasons, ["not_json", "id_too_long"]);
    assert_eq!(measured.skipped, reasons, "the child metered the same");
    for s in &batch.skipped {
        assert!(s.error.to_string().len() < 200, "{}", s.error);
    }
    // Bodies are skipped, not built: memory is a small multiple of the payload.
    assert!(
        (growth_kib as f64) < 8.0 * payload_mib * 1024.0 + 16.0 * 1024.0,
        "peak RSS grew {growth_kib} KiB for a {payload_mib:.1} MiB payload"
    );
}

// ------------------------------------------------- through DynamoDB Local

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

async fn ingest_ddb(
    store: &meter_store::DynamoDbUsageStore,
    payload: &[u8],
) -> meter_store::Ingested {
    ingest_payload(
        store,
        &Meter::with_defaults(),
        &CommitSettings::default(),
        payload,
        OffsetDateTime::now_utc(),
    )
    .await
    .unwrap_or_else(|e| panic!("ingest: {e}"))
}

#[tokio::test]
async fn token_sums_beyond_64_bits_are_exact_in_dynamodb() {
    let client = local_client().await;
    let store = fresh_store(&client, "overflow").await;
    let max = u64::MAX;
    // 40 records of u64::MAX input and output tokens (Nova Micro), and 40 with
    // u64::MAX of every token class (Claude Haiku 4.5 with cache), in 4 batches.
    let mk = |i: usize, model: &'static str, cache: bool| Rec {
        request_id: format!("overflow-{i:04}"),
        user: "big-spender".into(),
        model,
        timestamp: "2026-11-01T12:00:00Z".into(),
        input: max,
        output: max,
        cache_read: if cache { max } else { 0 },
        cache_write: if cache { max } else { 0 },
        error: false,
    };
    let recs: Vec<Rec> = (0..80)
        .map(|i| {
            if i < 40 {
                mk(i, "amazon.nova-micro-v1:0", false)
            } else {
                mk(i, "anthropic.claude-haiku-4-5-20251001-v1:0", true)
            }
        })
        .collect();
    for (n, chunk) in recs.chunks(20).enumerate() {
        let done = ingest_ddb(&store, &envelope(chunk, 1 + 20 * n as u64)).await;
        assert_eq!(done.report.counted, 20);
    }
    // Independent expectation (the shared helper sums tokens in u64).
    let m = u128::from(max);
    let n = 40u128;
    let nova_pico = n * (m * 35_000 + m * 140_000);
    let haiku_pico = n * (m * 1_100_000 + m * 5_500_000 + m * 110_000 + m * 1_375_000);
    let decimal = |p: u128| {
        normalise_decimal(&format!(
            "{}.{:012}",
            p / 1_000_000_000_000,
            p % 1_000_000_000_000
        ))
    };
    let aggs = read_aggregates(&store).await;
    let day_total = &aggs[&(
        "user_day".to_string(),
        "big-spender".to_string(),
        String::new(),
        "2026-11-01".to_string(),
    )];
    println!("80 records of u64::MAX tokens: user_day = {day_total:?}");
    assert_eq!(day_total.invocations, 80);
    assert_eq!(day_total.input_tokens, 80 * m);
    assert_eq!(day_total.output_tokens, 80 * m);
    assert_eq!(day_total.cache_read_input_tokens, n * m);
    assert_eq!(day_total.cache_write_input_tokens, n * m);
    assert_eq!(day_total.cost_usd, decimal(nova_pico + haiku_pico));
    assert!(
        day_total.input_tokens > u128::from(u64::MAX),
        "the sum is beyond 64 bits"
    );
    let nova = &aggs[&(
        "model_day".to_string(),
        String::new(),
        "amazon.nova-micro-v1:0".to_string(),
        "2026-11-01".to_string(),
    )];
    assert_eq!(nova.cost_usd, decimal(nova_pico));
    assert_eq!(nova.output_tokens, n * m);
    assert_eq!(marker_count(&store).await, 80);
}

#[tokio::test]
async fn user_and_model_ids_at_the_limit_are_stored_and_longer_ones_skipped() {
    let client = local_client().await;
    let store = fresh_store(&client, "id-limits").await;
    let max = meter_core::MAX_ID_BYTES;
    let base = corpus(1, 1, 1, 71)[0].clone();
    let rec = |i: usize, user: String, model: &'static str| Rec {
        request_id: format!("limit-{i:04}"),
        user,
        model,
        cache_read: 0,
        cache_write: 0,
        ..base.clone()
    };
    let kept = vec![
        rec(1, "u".repeat(max), "amazon.nova-micro-v1:0"),
        rec(2, "\u{e9}".repeat(max / 2), "amazon.nova-micro-v1:0"), // 2-byte chars, exactly at the limit
        rec(3, "\u{1F600}".repeat(max / 4), "amazon.nova-micro-v1:0"), // 4-byte chars
        rec(4, "v".repeat(2049), "amazon.nova-micro-v1:0"), // beyond DynamoDB's 2048-byte partition key
        rec(5, "w".repeat(1025), "amazon.nova-micro-v1:0"), // beyond the 1024-byte sort key
        rec(6, "alice".into(), leak("m".repeat(max))),
        rec(7, "u".repeat(max), leak("m".repeat(max))),
        base.clone(),
    ];
    let dropped = [
        rec(8, "u".repeat(max + 1), "amazon.nova-micro-v1:0"),
        rec(9, "\u{e9}".repeat(max / 2) + "x", "amazon.nova-micro-v1:0"),
        rec(10, "alice".into(), leak("m".repeat(max + 1))),
        rec(11, "u".repeat(1 << 20), "amazon.nova-micro-v1:0"),
    ];
    let mut all = kept.clone();
    all.extend(dropped.iter().cloned());
    let mut long_request_id = base.clone();
    long_request_id.request_id = "r".repeat(meter_core::MAX_REQUEST_ID_BYTES + 1);
    all.push(long_request_id);
    fastrand::Rng::with_seed(3).shuffle(&mut all);
    let done = ingest_ddb(&store, &envelope(&all, 1)).await;
    println!("ids at the limits: {:?}", done.report);
    assert_eq!(done.report.counted, kept.len());
    assert_eq!(
        done.report.skipped_by_reason.get("id_too_long"),
        Some(&(dropped.len() + 1))
    );
    assert_totals_eq(&read_aggregates(&store).await, &expected_totals(&kept));
}

#[tokio::test]
async fn key_delimiters_in_ids_cannot_merge_or_split_aggregates() {
    let client = local_client().await;
    let store = fresh_store(&client, "delimiters").await;
    let users = [
        "alice",
        "alice#",
        "#alice",
        "alice#D#2026-11-01",
        "alice#D#2026-11-01#M#amazon.nova-micro-v1:0",
        "U#alice",
        "alice%23",
        "alice%2523",
        "alice%",
        "alice~",
        "alice%7E",
        "~alice~0123",
        "DAY#2026-11-01",
        "MONTH#2026-11",
        "R#r:x",
        "a\u{0}b",
        "a\nb",
        " alice",
        "ALICE",
        "",
    ];
    let models: [&'static str; 6] = [
        "amazon.nova-micro-v1:0",
        "amazon.nova-micro-v1:0#",
        "amazon.nova-micro-v1:0#D#2026-11-02",
        "M#amazon.nova-micro-v1:0",
        "amazon.nova-micro-v1:0%23",
        "arn:aws:bedrock:us-east-1:111111111111:application-inference-profile/a#b",
    ];
    let mut rng = fastrand::Rng::with_seed(5);
    let recs: Vec<Rec> = (0..240)
        .map(|i| {
            let mut r = corpus(1, 1, 2, 500 + i as u64)[0].clone();
            r.request_id = format!("delim-{i:04}");
            r.user = users[rng.usize(..users.len())].to_string();
            r.model = models[rng.usize(..models.len())];
            r
        })
        .collect();
    for (n, chunk) in recs.chunks(60).enumerate() {
        ingest_ddb(&store, &envelope(chunk, 1 + 60 * n as u64)).await;
    }
    // An empty user falls back to the identity ARN's session name.
    let attributed: Vec<Rec> = recs
        .iter()
        .cloned()
        .map(|mut r| {
            if r.user.is_empty() {
                r.user = "session-x".into();
            }
            r
        })
        .collect();
    let actual = read_aggregates(&store).await;
    let expected = expected_totals(&attributed);
    let user_days = actual.keys().filter(|k| k.0 == "user_day").count();
    println!(
        "{} aggregates, {user_days} user-days, from {} users and {} models",
        actual.len(),
        users.len(),
        models.len()
    );
    assert_totals_eq(&actual, &expected);
}

// ------------------------------------------------------ fuzz regressions

/// Inputs the fuzzers once crashed on (shared/meter-core/fuzz/regressions/),
/// replayed through both targets' entry points with the targets' own checks.
#[test]
fn fuzz_regression_inputs_replay_without_panicking() {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/meter-core/fuzz/regressions");
    let mut files = Vec::new();
    for e in std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if e.path().is_file() && !name.starts_with('.') && !name.ends_with(".md") {
            files.push(e.path());
        }
        if e.path().is_dir() {
            for f in std::fs::read_dir(e.path()).into_iter().flatten().flatten() {
                files.push(f.path());
            }
        }
    }
    files.sort();
    // The inputs known to be there: a missing or renamed file fails here
    // rather than silently replaying nothing.
    const KNOWN: &str = "record-timestamp-beyond-year-9999-in-utc";
    assert!(
        files
            .iter()
            .any(|f| f.file_name().is_some_and(|n| n == KNOWN)),
        "fuzz regression input {KNOWN} is missing from {}: {files:?}",
        dir.display()
    );
    let m = Meter::with_defaults();
    let mut replayed = Vec::new();
    for f in &files {
        let bytes = std::fs::read(f).expect("read regression input");
        assert!(!bytes.is_empty(), "{}: empty input", f.display());
        let name = f.display().to_string();
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            // The envelope target.
            if let Ok(payload) = unwrap_payload(&bytes, DecodeLimits::default()) {
                let _ = parse_payload(&payload);
            }
            if let Ok(batch) = m.meter_payload(&bytes) {
                assert_eq!(
                    batch.records.len() + batch.skipped.len() + batch.duplicates_in_batch,
                    batch.events,
                    "every log event is counted, skipped or a duplicate"
                );
            }
            // The record target.
            if let Ok(text) = std::str::from_utf8(&bytes) {
                if let Ok(rec) = meter_core::record::parse_record(text, "user") {
                    if let Some(id) = rec.request_id.as_deref() {
                        assert!(!id.is_empty());
                    }
                }
                let event = meter_core::LogEvent {
                    id: std::borrow::Cow::Borrowed("1"),
                    id_is_event_id: true,
                    timestamp_ms: None,
                    message: std::borrow::Cow::Borrowed(text),
                };
                if let Ok(r) = m.meter_event(&event) {
                    assert_eq!(r.counters.invocations, 1);
                    assert!(r.user.len() <= meter_core::MAX_ID_BYTES);
                    assert!(r.model.len() <= meter_core::MAX_ID_BYTES);
                }
            }
        }));
        assert!(outcome.is_ok(), "{name}: panicked");
        replayed.push(f.clone());
    }
    assert_eq!(replayed, files, "every input was replayed");
    println!(
        "replayed {} fuzz regression inputs from {}",
        replayed.len(),
        dir.display()
    );
}

/// The first regression, as a record of Bedrock's S3 delivery: a timestamp
/// in 9999 west of UTC is year 10000 in UTC, a clear skip (not a panic).
#[test]
fn the_year_10000_regression_input_is_a_counted_skip() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/meter-core/fuzz/regressions/record-timestamp-beyond-year-9999-in-utc");
    let text = std::fs::read_to_string(&path).expect("the regression input");
    let batch = meter("year 10000", text.as_bytes()).expect("newline-delimited input");
    assert_eq!(batch.records.len(), 0);
    let reasons: Vec<&str> = batch
        .skipped
        .iter()
        .map(|s| s.error.reason_label())
        .collect();
    assert_eq!(reasons, ["bad_timestamp"]);
}
