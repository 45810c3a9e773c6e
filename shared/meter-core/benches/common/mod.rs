//! The benchmark corpus: realistic CloudWatch Logs subscription events of
//! Bedrock invocation records, generated deterministically.

#![allow(dead_code)]

use std::io::Write;

use base64::Engine as _;

/// Records per envelope (a CloudWatch Logs delivery).
pub const BATCH: usize = 500;

/// One generated corpus.
pub struct Corpus {
    pub name: &'static str,
    /// `{"awslogs":{"data":...}}` envelopes.
    pub envelopes: Vec<Vec<u8>>,
    pub records: usize,
    /// Decompressed payload bytes in all.
    pub decompressed_bytes: usize,
}

const USERS: usize = 50;
const MODELS: [&str; 5] = [
    "anthropic.claude-haiku-4-5-20251001-v1:0",
    "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
    "amazon.nova-micro-v1:0",
    "amazon.nova-pro-v1:0",
    "meta.llama3-3-70b-instruct-v1:0",
];

fn filler(len: usize, seed: u64) -> String {
    const WORDS: [&str; 12] = [
        "the",
        "quarterly",
        "report",
        "shows",
        "revenue",
        "growth",
        "in",
        "every",
        "region",
        "please",
        "summarise",
        "tables",
    ];
    let mut s = String::with_capacity(len + 16);
    let mut x = seed | 1;
    while s.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push_str(WORDS[(x % WORDS.len() as u64) as usize]);
        s.push(if x % 17 == 0 { '\n' } else { ' ' });
    }
    s
}

/// One invocation record as Bedrock logs it; `body_bytes` of prompt and
/// answer text (0 = metadata only).
pub fn record(i: usize, body_bytes: usize) -> String {
    let user = i % USERS;
    let model = MODELS[(i / 3) % MODELS.len()];
    let day = if i % 2 == 0 {
        "2026-11-01"
    } else {
        "2026-11-02"
    };
    let secs = i % 86_400;
    let ts = format!(
        "{day}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    );
    let mut input = serde_json::json!({"inputContentType": "application/json", "inputTokenCount": 100 + i % 4000});
    let mut output = serde_json::json!({"outputContentType": "application/json", "outputTokenCount": 20 + i % 900});
    if body_bytes > 0 {
        let half = body_bytes / 2;
        input["inputBodyJson"] = serde_json::json!({"messages": [{"role": "user", "content": [{"text": filler(half, i as u64)}]}],
            "inferenceConfig": {"maxTokens": 1024, "temperature": 0.2}});
        output["outputBodyJson"] = serde_json::json!({"output": {"message": {"role": "assistant", "content": [{"text": filler(half, i as u64 + 7)}]}},
            "stopReason": "end_turn", "usage": {"inputTokens": 100, "outputTokens": 20, "totalTokens": 120}});
    }
    if model.contains("claude") && i % 4 == 0 {
        input["cacheReadInputTokenCount"] = (i % 2048).into();
        input["cacheWriteInputTokenCount"] = (i % 512).into();
    }
    serde_json::json!({
        "schemaType": "ModelInvocationLog", "schemaVersion": "1.0", "timestamp": ts,
        "accountId": "111111111111", "region": "us-east-1",
        "requestId": format!("{:08x}-0000-4000-8000-{:012x}", i, i),
        "operation": "Converse", "modelId": model,
        "input": input, "output": output,
        "identity": {"arn": format!("arn:aws:sts::111111111111:assumed-role/BedrockUsers/user{user}")},
        "requestMetadata": {"user": format!("user{user}@example.com"), "feature": "search"},
    })
    .to_string()
}

/// The decoded subscription payload of records `from..from+n`.
pub fn payload(from: usize, n: usize, body_bytes: usize) -> String {
    let events: Vec<serde_json::Value> = (from..from + n)
        .map(|i| serde_json::json!({"id": format!("{:056}", i), "timestamp": 1_793_000_000_000u64 + i as u64, "message": record(i, body_bytes)}))
        .collect();
    serde_json::json!({"messageType": "DATA_MESSAGE", "owner": "111111111111",
        "logGroup": "/aws/bedrock/modelinvocations", "logStream": "aws/bedrock/modelinvocations",
        "subscriptionFilters": ["bedrock-meter"], "logEvents": events})
    .to_string()
}

/// A Lambda event: gzip (level 6, as CloudWatch Logs) and padded base64.
pub fn envelope(payload: &str) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    gz.write_all(payload.as_bytes()).expect("gzip");
    let data = base64::engine::general_purpose::STANDARD.encode(gz.finish().expect("gzip"));
    format!(r#"{{"awslogs":{{"data":"{data}"}}}}"#).into_bytes()
}

/// `records` records in envelopes of [`BATCH`].
pub fn corpus(name: &'static str, records: usize, body_bytes: usize) -> Corpus {
    let mut envelopes = Vec::new();
    let mut decompressed_bytes = 0;
    let mut from = 0;
    while from < records {
        let n = BATCH.min(records - from);
        let p = payload(from, n, body_bytes);
        decompressed_bytes += p.len();
        envelopes.push(envelope(&p));
        from += n;
    }
    Corpus {
        name,
        envelopes,
        records,
        decompressed_bytes,
    }
}
