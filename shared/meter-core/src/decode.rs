//! Decoding delivery payloads into log events.
//!
//! Accepted inputs, in any nesting the real services produce:
//! - a CloudWatch Logs subscription Lambda event `{"awslogs":{"data":"<base64 gzip>"}}`;
//! - a Lambda on-failure destination record (its `requestPayload` is one of these);
//! - the decoded subscription payload (`DATA_MESSAGE` / `CONTROL_MESSAGE` JSON);
//! - newline-delimited invocation records (Bedrock's own S3 delivery);
//! - gzip of any of these, single- or multi-member.
//!
//! Decompression is capped ([`DecodeLimits::max_decompressed_bytes`]) so that
//! a gzip bomb fails fast with [`DecodeError::TooLarge`].
//!
//! We do not use `aws_lambda_events::LogsEvent` to decode `awslogs.data`: its
//! streaming single-member gzip reader is 3-4x slower than the rest of the
//! pipeline, it rejects unpadded base64 and extra keys, and it cannot cap
//! decompression. The envelope shape is the same.

use std::borrow::Cow;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::value::RawValue;

/// Default cap on decompressed bytes per payload: 64 MiB. CloudWatch Logs
/// sends at most 1 MB compressed; real payloads inflate 5-20x.
pub const DEFAULT_MAX_DECOMPRESSED_BYTES: usize = 64 * 1024 * 1024;

/// Limits applied while decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    pub max_decompressed_bytes: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_decompressed_bytes: DEFAULT_MAX_DECOMPRESSED_BYTES,
        }
    }
}

/// Why a whole payload could not be decoded. Nothing in it was counted.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("payload is empty")]
    Empty,
    #[error("awslogs.data is not valid base64: {0}")]
    Base64(#[from] base64::DecodeError),
    #[error("gzip data is corrupt or truncated: {0}")]
    Gzip(std::io::Error),
    #[error("decompressed payload exceeds the limit of {limit} bytes (raise MAX_DECOMPRESSED_BYTES if this is a genuine payload; a small input that inflates this far is a gzip bomb)")]
    TooLarge { limit: usize },
    #[error("payload is not JSON of a known shape (expected a CloudWatch Logs event, a decoded subscription payload, a Lambda destination record or newline-delimited invocation records): {0}")]
    Shape(String),
    #[error("payload is not UTF-8 text")]
    NotUtf8,
    #[error("payloads are nested more than {0} levels deep")]
    TooDeep(usize),
}

/// What kind of batch a payload was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchKind {
    /// A CloudWatch Logs `DATA_MESSAGE`.
    Data {
        owner: String,
        log_group: String,
        log_stream: String,
    },
    /// A CloudWatch Logs `CONTROL_MESSAGE` (reachability check): nothing to count.
    Control,
    /// Newline-delimited invocation records (S3 delivery, files).
    Lines,
}

/// One log event: an invocation record as text plus where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEvent<'a> {
    /// CloudWatch Logs event id, or `line N` for newline-delimited input.
    pub id: Cow<'a, str>,
    /// True when `id` is a CloudWatch Logs event id (stable across redelivery).
    pub id_is_event_id: bool,
    /// The log event time (epoch ms), when the transport carried one.
    pub timestamp_ms: Option<i64>,
    /// The invocation record JSON.
    pub message: Cow<'a, str>,
}

/// A decoded batch of log events borrowing from the decompressed buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedBatch<'a> {
    pub kind: BatchKind,
    pub events: Vec<LogEvent<'a>>,
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const MAX_NESTING: usize = 4;

/// Reduces any accepted input to the innermost payload bytes: a decoded
/// subscription payload JSON or newline-delimited records. Borrows when no
/// decoding was needed.
pub fn unwrap_payload(input: &[u8], limits: DecodeLimits) -> Result<Cow<'_, [u8]>, DecodeError> {
    let mut current: Cow<'_, [u8]> = Cow::Borrowed(input);
    for _ in 0..MAX_NESTING {
        let next = match peel(&current, limits)? {
            Some(inner) => inner,
            None => return Ok(current),
        };
        current = Cow::Owned(next);
    }
    Err(DecodeError::TooDeep(MAX_NESTING))
}

/// One layer of unwrapping: `Some(inner bytes)` or `None` when `bytes` is
/// already a payload.
fn peel(bytes: &[u8], limits: DecodeLimits) -> Result<Option<Vec<u8>>, DecodeError> {
    if bytes.starts_with(&GZIP_MAGIC) {
        return gunzip(bytes, limits).map(Some);
    }
    let trimmed = trim_ascii_start(bytes);
    if trimmed.is_empty() {
        return Err(DecodeError::Empty);
    }
    if trimmed[0] != b'{' {
        return Ok(None);
    }
    // Look at the first JSON value only: for newline-delimited records this is
    // the first record. The probe stops at the first key that only a payload
    // or a record has, so a decompressed payload is not scanned twice.
    let mut stream = serde_json::Deserializer::from_slice(trimmed).into_iter::<Probe>();
    let probe = match stream.next() {
        Some(Ok(p)) => p,
        Some(Err(e)) if e.to_string().starts_with(NOT_AN_ENVELOPE) => return Ok(None),
        // `awslogs` present with the wrong shape.
        Some(Err(e)) if e.classify() == serde_json::error::Category::Data => {
            return Err(DecodeError::Shape(format!(
                "awslogs.data missing or not a string ({})",
                redacted_serde_reason(&e)
            )))
        }
        // Not an envelope (or not JSON at all): let the payload parser decide
        // and report.
        _ => return Ok(None),
    };
    if let Some(awslogs) = probe.awslogs {
        return decode_awslogs_data(&awslogs.data, limits).map(Some);
    }
    if let Some(inner) = probe.request_payload {
        return Ok(Some(inner.get().as_bytes().to_vec()));
    }
    Ok(None)
}

/// What [`peel`] looks for in a JSON object: a Lambda event's `awslogs`, or
/// an on-failure destination record's `requestPayload`.
#[derive(Default)]
struct Probe<'a> {
    awslogs: Option<AwsLogs<'a>>,
    request_payload: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct AwsLogs<'a> {
    #[serde(borrow)]
    data: Cow<'a, str>,
}

/// The probe's early exit: the object has a key that only a subscription
/// payload or an invocation record has, so it is no envelope and the rest of
/// it need not be read.
const NOT_AN_ENVELOPE: &str = "bedrock-meter: not an envelope";

/// Keys that mark a subscription payload or an invocation record.
const PAYLOAD_OR_RECORD_KEYS: &[&str] = &[
    "messageType",
    "logEvents",
    "logGroup",
    "logStream",
    "owner",
    "subscriptionFilters",
    "schemaType",
    "schemaVersion",
    "modelId",
    "requestId",
    "input",
    "output",
];

impl<'de: 'a, 'a> Deserialize<'de> for Probe<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = Probe<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<Probe<'a>, M::Error> {
                let mut probe = Probe::default();
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    match key.as_ref() {
                        "awslogs" => probe.awslogs = Some(map.next_value()?),
                        "requestPayload" => probe.request_payload = Some(map.next_value()?),
                        k if PAYLOAD_OR_RECORD_KEYS.contains(&k) => {
                            return Err(serde::de::Error::custom(NOT_AN_ENVELOPE))
                        }
                        _ => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(probe)
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// Decodes `awslogs.data`: standard base64 (padded or not) of gzip.
pub fn decode_awslogs_data(data: &str, limits: DecodeLimits) -> Result<Vec<u8>, DecodeError> {
    let compressed = base64_decode(data.trim().as_bytes())?;
    gunzip(&compressed, limits)
}

fn base64_decode(input: &[u8]) -> Result<Vec<u8>, DecodeError> {
    use base64::engine::{general_purpose::GeneralPurpose, DecodePaddingMode};
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    Ok(LENIENT.decode(input)?)
}

/// Inflates gzip (all members), failing once output would exceed the cap.
///
/// Uses libdeflate (about twice as fast as streaming inflaters) one member at
/// a time: each member is inflated into a buffer sized from its `ISIZE`
/// trailer when it is the last member (exact for the usual single member),
/// growing on demand otherwise, never beyond the cap.
pub fn gunzip(compressed: &[u8], limits: DecodeLimits) -> Result<Vec<u8>, DecodeError> {
    if !compressed.starts_with(&GZIP_MAGIC) {
        return Err(DecodeError::Gzip(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "missing gzip header (1f 8b)",
        )));
    }
    let cap = limits.max_decompressed_bytes;
    let mut inflater = inflate::Inflater::new();
    let mut out: Vec<u8> = Vec::new();
    // Bytes of `out` holding output; `out` beyond `len` is zeroed scratch,
    // reused across members so that many small members cost linear time.
    let mut len = 0;
    let mut pos = 0;
    while pos < compressed.len() {
        let member = &compressed[pos..];
        let room = cap - len;
        // First guess: the trailer's ISIZE (exact when this is the last
        // member, the usual single member), else a multiple of the
        // compressed size, capped by the room left.
        let isize = last_member_isize(compressed);
        let mut hint = if isize > 0 && pos == 0 {
            isize
        } else {
            member.len().min(1 << 20).saturating_mul(4)
        }
        .max(4096)
        .min(room);
        loop {
            if out.len() < len + hint {
                out.resize(len + hint, 0);
            }
            match inflater.gzip_member(member, &mut out[len..len + hint]) {
                inflate::Outcome::Done { consumed, written } => {
                    len += written;
                    pos += consumed;
                    break;
                }
                inflate::Outcome::NeedSpace => {
                    // `hint` never exceeds the room left under the cap:
                    // running out of space at the full room proves the
                    // payload is over the cap.
                    if hint >= room {
                        return Err(DecodeError::TooLarge { limit: cap });
                    }
                    hint = hint.saturating_mul(2).min(room);
                }
                inflate::Outcome::BadData => {
                    return Err(DecodeError::Gzip(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        if pos == 0 {
                            "corrupt or truncated gzip data"
                        } else {
                            "corrupt or truncated gzip member after the first"
                        },
                    )))
                }
            }
        }
        // Tolerate zero padding after the last member (some writers add it).
        if compressed[pos..].iter().all(|&b| b == 0) {
            break;
        }
    }
    out.truncate(len);
    Ok(out)
}

/// The `ISIZE` trailer of the last member (decompressed size mod 2^32).
fn last_member_isize(compressed: &[u8]) -> usize {
    let n = compressed.len();
    if n < 18 {
        return 0;
    }
    u32::from_le_bytes([
        compressed[n - 4],
        compressed[n - 3],
        compressed[n - 2],
        compressed[n - 1],
    ]) as usize
}

/// A minimal safe wrapper over libdeflate's gzip decompressor, exposing the
/// `_ex` call that reports consumed input (needed for multi-member gzip).
mod inflate {
    use std::ptr::NonNull;

    use libdeflate_sys::{
        libdeflate_alloc_decompressor, libdeflate_decompressor, libdeflate_free_decompressor,
        libdeflate_gzip_decompress_ex, libdeflate_result_LIBDEFLATE_INSUFFICIENT_SPACE,
        libdeflate_result_LIBDEFLATE_SUCCESS,
    };

    pub enum Outcome {
        Done { consumed: usize, written: usize },
        NeedSpace,
        BadData,
    }

    pub struct Inflater(NonNull<libdeflate_decompressor>);

    impl Inflater {
        pub fn new() -> Inflater {
            // SAFETY: allocation has no preconditions; null means out of memory.
            let ptr = unsafe { libdeflate_alloc_decompressor() };
            Inflater(
                NonNull::new(ptr).expect("libdeflate: out of memory allocating a decompressor"),
            )
        }

        /// Inflates the first gzip member of `input` into `out`.
        pub fn gzip_member(&mut self, input: &[u8], out: &mut [u8]) -> Outcome {
            let mut consumed = 0usize;
            let mut written = 0usize;
            // SAFETY: the pointers and lengths come from live slices that
            // outlive the call; libdeflate reads at most `input.len()` bytes,
            // writes at most `out.len()` bytes, and sets both counters.
            let rc = unsafe {
                libdeflate_gzip_decompress_ex(
                    self.0.as_ptr(),
                    input.as_ptr().cast(),
                    input.len(),
                    out.as_mut_ptr().cast(),
                    out.len(),
                    &mut consumed,
                    &mut written,
                )
            };
            #[allow(non_upper_case_globals)]
            match rc {
                libdeflate_result_LIBDEFLATE_SUCCESS => Outcome::Done { consumed, written },
                libdeflate_result_LIBDEFLATE_INSUFFICIENT_SPACE => Outcome::NeedSpace,
                _ => Outcome::BadData,
            }
        }
    }

    impl Drop for Inflater {
        fn drop(&mut self) {
            // SAFETY: allocated by libdeflate_alloc_decompressor, freed once.
            unsafe { libdeflate_free_decompressor(self.0.as_ptr()) }
        }
    }
}

fn trim_ascii_start(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    &bytes[start..]
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubscriptionPayload<'a> {
    #[serde(borrow)]
    message_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    owner: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    log_group: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    log_stream: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    log_events: Option<Vec<RawLogEvent<'a>>>,
}

#[derive(Deserialize)]
struct RawLogEvent<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(default)]
    timestamp: Option<i64>,
    #[serde(borrow)]
    message: Cow<'a, str>,
}

/// Parses innermost payload bytes (see [`unwrap_payload`]) into log events.
pub fn parse_payload(payload: &[u8]) -> Result<DecodedBatch<'_>, DecodeError> {
    let trimmed = trim_ascii_start(payload);
    if trimmed.is_empty() {
        return Err(DecodeError::Empty);
    }
    // One parse decides: a subscription payload has `messageType` or
    // `logEvents`; for newline-delimited records this stops at the end of
    // the first line (trailing data), which has neither.
    let mut stream =
        serde_json::Deserializer::from_slice(trimmed).into_iter::<SubscriptionPayload>();
    let first = stream.next();
    let is_subscription = match &first {
        Some(Ok(p)) => p.message_type.is_some() || p.log_events.is_some(),
        // A type error means the keys were there with the wrong shape.
        Some(Err(e)) => e.classify() == serde_json::error::Category::Data,
        None => false,
    };
    if is_subscription {
        let p = match first {
            Some(Ok(p)) => p,
            Some(Err(e)) => return Err(DecodeError::Shape(redacted_serde_reason(&e))),
            None => return Err(DecodeError::Empty),
        };
        if stream.byte_offset() < trimmed.len()
            && !trim_ascii_start(&trimmed[stream.byte_offset()..]).is_empty()
        {
            return Err(DecodeError::Shape(
                "trailing data after the subscription payload".to_string(),
            ));
        }
        let kind = match p.message_type.as_deref() {
            Some("CONTROL_MESSAGE") => {
                return Ok(DecodedBatch {
                    kind: BatchKind::Control,
                    events: Vec::new(),
                })
            }
            Some("DATA_MESSAGE") | None => BatchKind::Data {
                owner: p.owner.map(Cow::into_owned).unwrap_or_default(),
                log_group: p.log_group.map(Cow::into_owned).unwrap_or_default(),
                log_stream: p.log_stream.map(Cow::into_owned).unwrap_or_default(),
            },
            Some(other) => {
                return Err(DecodeError::Shape(format!(
                    "unknown messageType `{}`",
                    truncate_for_log(other, 40)
                )))
            }
        };
        let events = p
            .log_events
            .unwrap_or_default()
            .into_iter()
            .map(|e| LogEvent {
                id: e.id,
                id_is_event_id: true,
                timestamp_ms: e.timestamp,
                message: e.message,
            })
            .collect();
        return Ok(DecodedBatch { kind, events });
    }
    // Newline-delimited records: must be UTF-8 text that starts with `{`.
    let text = std::str::from_utf8(payload).map_err(|_| DecodeError::NotUtf8)?;
    if trimmed[0] != b'{' {
        return Err(DecodeError::Shape(
            "input does not start with `{` and is not gzip".to_string(),
        ));
    }
    let events = text
        .split('\n')
        .enumerate()
        .filter_map(|(i, line)| {
            let line = line.trim_end_matches('\r');
            (!line.trim().is_empty()).then(|| LogEvent {
                id: Cow::Owned(format!("line {}", i + 1)),
                id_is_event_id: false,
                timestamp_ms: None,
                message: Cow::Borrowed(line),
            })
        })
        .collect();
    Ok(DecodedBatch {
        kind: BatchKind::Lines,
        events,
    })
}

/// A serde_json error description that never echoes input values (which could
/// be prompt text): the category and position only.
pub(crate) fn redacted_serde_reason(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Syntax => "invalid JSON syntax",
        Category::Eof => "JSON ends early (truncated)",
        Category::Data => "JSON of the wrong shape (a field has the wrong type)",
        Category::Io => "I/O error while reading JSON",
    };
    format!("{what} at line {} column {}", e.line(), e.column())
}

/// Shortens untrusted text for a log line, on a char boundary.
pub fn truncate_for_log(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((idx, _)) => format!("{}…", &s[..idx]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use std::io::Write;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    fn envelope(payload: &[u8]) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(gzip(payload));
        format!(r#"{{"awslogs":{{"data":"{b64}"}}}}"#)
    }

    const DATA: &str = r#"{"messageType":"DATA_MESSAGE","owner":"123456789012","logGroup":"g","logStream":"s","subscriptionFilters":["f"],"logEvents":[{"id":"1","timestamp":5,"message":"{\"a\":1}"},{"id":"2","timestamp":6,"message":"x"}]}"#;

    fn decode(input: &[u8]) -> Result<(BatchKind, Vec<(String, String)>), DecodeError> {
        let payload = unwrap_payload(input, DecodeLimits::default())?;
        let batch = parse_payload(&payload)?;
        Ok((
            batch.kind,
            batch
                .events
                .into_iter()
                .map(|e| (e.id.into_owned(), e.message.into_owned()))
                .collect(),
        ))
    }

    #[test]
    fn every_accepted_shape_decodes_to_the_same_events() {
        let expected = vec![
            ("1".to_string(), r#"{"a":1}"#.to_string()),
            ("2".to_string(), "x".to_string()),
        ];
        let env = envelope(DATA.as_bytes());
        let unpadded = env.replace('=', "");
        let destination =
            format!(r#"{{"version":"1.0","requestPayload":{env},"responsePayload":null}}"#);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("lambda event", env.clone().into_bytes()),
            ("lambda event, unpadded base64", unpadded.into_bytes()),
            ("decoded payload", DATA.as_bytes().to_vec()),
            ("gzip of decoded payload", gzip(DATA.as_bytes())),
            ("gzip of lambda event", gzip(env.as_bytes())),
            ("on-failure destination record", destination.into_bytes()),
        ];
        for (name, input) in cases {
            let (kind, events) = decode(&input).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(matches!(kind, BatchKind::Data { .. }), "{name}");
            assert_eq!(events, expected, "{name}");
        }
    }

    #[test]
    fn multi_member_gzip_of_newline_delimited_records_yields_every_line() {
        let mut bytes = gzip(b"{\"requestId\":\"a\"}\n{\"requestId\":\"b\"}\n");
        bytes.extend(gzip(b"{\"requestId\":\"c\"}\n\n"));
        let (kind, events) = decode(&bytes).unwrap();
        assert_eq!(kind, BatchKind::Lines);
        let ids: Vec<_> = events.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["line 1", "line 2", "line 3"]);
        assert_eq!(events[2].1, r#"{"requestId":"c"}"#);
    }

    #[test]
    fn control_message_is_recognised_and_has_no_events() {
        let control = r#"{"messageType":"CONTROL_MESSAGE","owner":"CloudwatchLogs","logGroup":"","logStream":"","subscriptionFilters":[],"logEvents":[{"id":"","timestamp":1,"message":"CWL CONTROL MESSAGE: Checking health of destination Lambda function."}]}"#;
        let (kind, events) = decode(envelope(control.as_bytes()).as_bytes()).unwrap();
        assert_eq!(kind, BatchKind::Control);
        assert!(events.is_empty());
    }

    #[test]
    fn gzip_bomb_fails_fast_with_too_large() {
        let zeros = vec![0u8; 8 * 1024 * 1024];
        let bomb = gzip(&zeros);
        assert!(bomb.len() < 64 * 1024);
        let limits = DecodeLimits {
            max_decompressed_bytes: 1024 * 1024,
        };
        let err = gunzip(&bomb, limits).unwrap_err();
        assert!(matches!(err, DecodeError::TooLarge { limit } if limit == 1024 * 1024));
        assert!(err.to_string().contains("MAX_DECOMPRESSED_BYTES"));
    }

    #[test]
    fn broken_inputs_give_typed_errors() {
        let truncated = {
            let g = gzip(DATA.as_bytes());
            g[..g.len() / 2].to_vec()
        };
        type Case = (&'static str, Vec<u8>, fn(&DecodeError) -> bool);
        let cases: Vec<Case> = vec![
            ("empty", b"   ".to_vec(), |e| {
                matches!(e, DecodeError::Empty)
            }),
            (
                "bad base64",
                br#"{"awslogs":{"data":"!!!not base64"}}"#.to_vec(),
                |e| matches!(e, DecodeError::Base64(_)),
            ),
            (
                "base64 of not-gzip",
                br#"{"awslogs":{"data":"aGVsbG8="}}"#.to_vec(),
                |e| matches!(e, DecodeError::Gzip(_)),
            ),
            ("truncated gzip", truncated, |e| {
                matches!(e, DecodeError::Gzip(_))
            }),
            (
                "data not a string",
                br#"{"awslogs":{"data":5}}"#.to_vec(),
                |e| matches!(e, DecodeError::Shape(_)),
            ),
            ("not utf-8", vec![b'{', 0xff, 0xfe, b'}'], |e| {
                matches!(e, DecodeError::NotUtf8)
            }),
            ("plain text", b"hello".to_vec(), |e| {
                matches!(e, DecodeError::Shape(_))
            }),
            (
                "wrong shape payload",
                br#"{"messageType":"DATA_MESSAGE","logEvents":"secret prompt"}"#.to_vec(),
                |e| matches!(e, DecodeError::Shape(_)),
            ),
        ];
        for (name, input, check) in cases {
            let err = decode(&input).expect_err(name);
            assert!(check(&err), "{name}: got {err:?}");
        }
    }

    #[test]
    fn shape_errors_do_not_echo_input_text() {
        let input = br#"{"messageType":"DATA_MESSAGE","logEvents":"CANARY secret prompt"}"#;
        let err = decode(input).unwrap_err().to_string();
        assert!(!err.contains("CANARY"), "{err}");
    }
}
