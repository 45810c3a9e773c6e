//! Parsing one invocation record: borrowing, tolerant, typed.
//!
//! Only the fields metering needs are declared. Everything else, including
//! `input.inputBodyJson` and `output.outputBodyJson` (prompts and answers, up
//! to 100 KB each), is skipped by the JSON scanner without being built or
//! copied. Every field is optional; unknown fields are ignored.
//!
//! One exception, still without building the body: the scanner walks the
//! keys of `output.outputBodyJson` far enough to pick out the integer
//! `usage.cache_creation.ephemeral_1h_input_tokens` of an Anthropic response
//! (at the top of the body, or in the `message` of a streamed chunk), so that
//! 1-hour cache writes can be priced at their own rate. Every other value is
//! skipped unread, and nothing odd in a body makes a record fail.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use time::OffsetDateTime;

use crate::decode::{redacted_serde_reason, truncate_for_log};

/// Why one record was skipped. Never carries record content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("not an invocation record: {0}")]
    NotInvocationRecord(String),
    #[error("invalid token count: {0}")]
    BadTokenCount(String),
    #[error("invalid timestamp: {0}")]
    BadTimestamp(String),
    #[error("missing timestamp: the record has no `timestamp`, so its day is unknown")]
    MissingTimestamp,
    #[error("wrong shape: {0}")]
    WrongShape(String),
    #[error("{field} is {len} bytes, more than the {max} bytes bedrock-meter stores")]
    IdTooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
}

impl RecordError {
    /// A short stable label for metrics and summaries.
    pub fn reason_label(&self) -> &'static str {
        match self {
            RecordError::NotJson(_) => "not_json",
            RecordError::NotInvocationRecord(_) => "not_invocation_record",
            RecordError::BadTokenCount(_) => "bad_token_count",
            RecordError::BadTimestamp(_) => "bad_timestamp",
            RecordError::MissingTimestamp => "missing_timestamp",
            RecordError::WrongShape(_) => "wrong_shape",
            RecordError::IdTooLong { .. } => "id_too_long",
        }
    }
}

/// The metering-relevant view of one invocation record, borrowing from the
/// message text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvocationRecord<'a> {
    pub timestamp: OffsetDateTime,
    pub request_id: Option<Cow<'a, str>>,
    pub model_id: Option<Cow<'a, str>>,
    pub region: Option<Cow<'a, str>>,
    pub identity_arn: Option<Cow<'a, str>>,
    /// The value of the configured `requestMetadata` key, if a string.
    pub metadata_user: Option<Cow<'a, str>>,
    /// Every string entry of `requestMetadata`, in order (for attribution
    /// tags). Empty when the record has none.
    pub metadata: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    pub error_code: Option<Cow<'a, str>>,
    pub tokens: TokenCounts,
}

/// Token counts of one record. The three input counters are disjoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenCounts {
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
    /// How many of `cache_write` had the 1-hour TTL, when the output body
    /// reports the split (`usage.cache_creation.ephemeral_1h_input_tokens`);
    /// 0 otherwise. Not a separate counter: part of `cache_write`.
    pub cache_write_1h: u64,
}

impl TokenCounts {
    pub fn is_zero(&self) -> bool {
        self.input == 0 && self.output == 0 && self.cache_read == 0 && self.cache_write == 0
    }

    /// The size of the prompt: input, cache-read and cache-write tokens (the
    /// three are disjoint). Long-context thresholds compare against this.
    pub fn prompt_tokens(&self) -> u128 {
        u128::from(self.input) + u128::from(self.cache_read) + u128::from(self.cache_write)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRecord<'a> {
    #[serde(borrow, default)]
    schema_type: Option<CowStr<'a>>,
    #[serde(borrow, default)]
    timestamp: Option<CowStr<'a>>,
    #[serde(borrow, default)]
    request_id: Option<CowStr<'a>>,
    #[serde(borrow, default)]
    model_id: Option<CowStr<'a>>,
    #[serde(borrow, default)]
    region: Option<CowStr<'a>>,
    #[serde(borrow, default)]
    identity: Option<RawIdentity<'a>>,
    #[serde(borrow, default)]
    request_metadata: Option<Metadata<'a>>,
    #[serde(default)]
    input: Option<RawInput>,
    #[serde(default)]
    output: Option<RawOutput>,
    #[serde(borrow, default)]
    error_code: Option<CowStr<'a>>,
}

#[derive(Deserialize)]
struct RawIdentity<'a> {
    #[serde(borrow, default)]
    arn: Option<CowStr<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawInput {
    #[serde(default)]
    input_token_count: Option<TokenCount>,
    #[serde(default)]
    cache_read_input_token_count: Option<TokenCount>,
    #[serde(default)]
    cache_write_input_token_count: Option<TokenCount>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawOutput {
    #[serde(default)]
    output_token_count: Option<TokenCount>,
    #[serde(default)]
    output_body_json: Option<CacheSplit>,
}

/// The 1-hour cache-write count found in an output body, if any. Deserialised
/// by walking only the keys that lead to it; every other value is skipped
/// with `IgnoredAny` (not built), and a value of an unexpected type is
/// ignored rather than failing the record.
#[derive(Debug, Clone, Copy, Default)]
struct CacheSplit {
    one_hour: Option<u64>,
}

/// Where a [`BodySeeker`] stands: the body itself, a streamed chunk in the
/// body's array, or a chunk's `message`. Nothing deeper is searched.
#[derive(Clone, Copy, PartialEq, Eq)]
enum BodyLevel {
    Body,
    Chunk,
    Message,
}

struct BodySeeker(BodyLevel);

/// The keys the seekers look for; every other key is `Other`.
enum SeekKey {
    Usage,
    Message,
    CacheCreation,
    OneHour,
    Other,
}

impl<'de> Deserialize<'de> for SeekKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = SeekKey;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SeekKey, E> {
                Ok(match v {
                    "usage" => SeekKey::Usage,
                    "message" => SeekKey::Message,
                    "cache_creation" => SeekKey::CacheCreation,
                    "ephemeral_1h_input_tokens" => SeekKey::OneHour,
                    _ => SeekKey::Other,
                })
            }
        }
        d.deserialize_identifier(V)
    }
}

impl<'de> Deserialize<'de> for CacheSplit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        de::DeserializeSeed::deserialize(BodySeeker(BodyLevel::Body), d)
    }
}

impl<'de> de::DeserializeSeed<'de> for BodySeeker {
    type Value = CacheSplit;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<CacheSplit, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for BodySeeker {
    type Value = CacheSplit;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<M: MapAccess<'de>>(self, mut m: M) -> Result<CacheSplit, M::Error> {
        let mut found = CacheSplit::default();
        while let Some(key) = m.next_key::<SeekKey>()? {
            let here = match (key, self.0) {
                (SeekKey::Usage, _) => m.next_value::<Usage>()?.0,
                (SeekKey::Message, BodyLevel::Chunk) => {
                    m.next_value_seed(BodySeeker(BodyLevel::Message))?
                }
                _ => {
                    m.next_value::<IgnoredAny>()?;
                    CacheSplit::default()
                }
            };
            found.one_hour = found.one_hour.or(here.one_hour);
        }
        Ok(found)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut a: A) -> Result<CacheSplit, A::Error> {
        let mut found = CacheSplit::default();
        if self.0 == BodyLevel::Body {
            while let Some(here) = a.next_element_seed(BodySeeker(BodyLevel::Chunk))? {
                found.one_hour = found.one_hour.or(here.one_hour);
            }
        } else {
            while a.next_element::<IgnoredAny>()?.is_some() {}
        }
        Ok(found)
    }
    fn visit_borrowed_str<E: de::Error>(self, _: &'de str) -> Result<CacheSplit, E> {
        Ok(CacheSplit::default())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<CacheSplit, E> {
        Ok(CacheSplit::default())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<CacheSplit, E> {
        Ok(CacheSplit::default())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<CacheSplit, E> {
        Ok(CacheSplit::default())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<CacheSplit, E> {
        Ok(CacheSplit::default())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<CacheSplit, E> {
        Ok(CacheSplit::default())
    }
    fn visit_unit<E: de::Error>(self) -> Result<CacheSplit, E> {
        Ok(CacheSplit::default())
    }
}

/// `usage` (looks for `cache_creation`) and `cache_creation` (looks for
/// `ephemeral_1h_input_tokens`), both lenient.
struct Usage(CacheSplit);
struct CacheCreation(CacheSplit);
/// A count that is a u64 or else absent (never an error).
struct LenientCount(Option<u64>);

macro_rules! lenient_scalars {
    ($t:ty, $none:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<$t, E> {
            Ok($none)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<$t, E> {
            Ok($none)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<$t, E> {
            Ok($none)
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<$t, E> {
            Ok($none)
        }
        fn visit_unit<E: de::Error>(self) -> Result<$t, E> {
            Ok($none)
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut a: A) -> Result<$t, A::Error> {
            while a.next_element::<IgnoredAny>()?.is_some() {}
            Ok($none)
        }
    };
}

impl<'de> Deserialize<'de> for Usage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Usage;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a usage object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut m: M) -> Result<Usage, M::Error> {
                let mut found = CacheSplit::default();
                while let Some(key) = m.next_key::<SeekKey>()? {
                    if let SeekKey::CacheCreation = key {
                        found = m.next_value::<CacheCreation>()?.0;
                    } else {
                        m.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(Usage(found))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Usage, E> {
                Ok(Usage(CacheSplit::default()))
            }
            lenient_scalars!(Usage, Usage(CacheSplit::default()));
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for CacheCreation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CacheCreation;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a cache_creation object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut m: M) -> Result<CacheCreation, M::Error> {
                let mut found = CacheSplit::default();
                while let Some(key) = m.next_key::<SeekKey>()? {
                    if let SeekKey::OneHour = key {
                        found.one_hour = m.next_value::<LenientCount>()?.0;
                    } else {
                        m.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(CacheCreation(found))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<CacheCreation, E> {
                Ok(CacheCreation(CacheSplit::default()))
            }
            lenient_scalars!(CacheCreation, CacheCreation(CacheSplit::default()));
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for LenientCount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LenientCount;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a token count")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<LenientCount, E> {
                Ok(LenientCount(Some(v)))
            }
            fn visit_map<M: MapAccess<'de>>(self, mut m: M) -> Result<LenientCount, M::Error> {
                while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(LenientCount(None))
            }
            lenient_scalars!(LenientCount, LenientCount(None));
        }
        d.deserialize_any(V)
    }
}

/// A token count: a non-negative integer that fits in 64 bits.
#[derive(Debug, Clone, Copy)]
struct TokenCount(u64);

const TOKEN_ERROR_PREFIX: &str = "bedrock-meter token count: ";

impl<'de> Deserialize<'de> for TokenCount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = TokenCount;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a non-negative integer token count")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<TokenCount, E> {
                Ok(TokenCount(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<TokenCount, E> {
                u64::try_from(v)
                    .map(TokenCount)
                    .map_err(|_| E::custom(format!("{TOKEN_ERROR_PREFIX}is negative ({v})")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<TokenCount, E> {
                // serde_json hands integers beyond u64 to us as f64 too.
                if v.fract() == 0.0 && v >= u64::MAX as f64 {
                    Err(E::custom(format!(
                        "{TOKEN_ERROR_PREFIX}does not fit in 64 bits"
                    )))
                } else if v.fract() == 0.0 && v >= 0.0 {
                    Err(E::custom(format!(
                        "{TOKEN_ERROR_PREFIX}is written as a floating-point number, not an integer"
                    )))
                } else if v < 0.0 {
                    Err(E::custom(format!("{TOKEN_ERROR_PREFIX}is negative")))
                } else {
                    Err(E::custom(format!("{TOKEN_ERROR_PREFIX}is fractional")))
                }
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<TokenCount, E> {
                Err(E::custom(format!(
                    "{TOKEN_ERROR_PREFIX}is a string, not a number"
                )))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<TokenCount, E> {
                Err(E::custom(format!(
                    "{TOKEN_ERROR_PREFIX}is a boolean, not a number"
                )))
            }
        }
        d.deserialize_any(V)
    }
}

/// `requestMetadata`: a string map. Non-string values are ignored.
struct Metadata<'a>(Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl<'de: 'a, 'a> Deserialize<'de> for Metadata<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Metadata<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of strings")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut m: M) -> Result<Metadata<'a>, M::Error> {
                let mut out = Vec::new();
                while let Some(k) = m.next_key::<CowStr<'a>>()? {
                    match m.next_value::<MaybeStr<'a>>()? {
                        MaybeStr::Str(v) => out.push((k.0, v)),
                        MaybeStr::Other => {}
                    }
                }
                Ok(Metadata(out))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Metadata<'a>, E> {
                Ok(Metadata(Vec::new()))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// A string that borrows from the input unless it holds escapes. (serde's
/// own `Cow<str>` always allocates, and `#[serde(borrow)]` cannot reach
/// inside an `Option`: that cost a few allocations per record.)
struct CowStr<'a>(Cow<'a, str>);
impl<'de: 'a, 'a> Deserialize<'de> for CowStr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = CowStr<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<CowStr<'a>, E> {
                Ok(CowStr(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<CowStr<'a>, E> {
                Ok(CowStr(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<CowStr<'a>, E> {
                Ok(CowStr(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

enum MaybeStr<'a> {
    Str(Cow<'a, str>),
    Other,
}
impl<'de: 'a, 'a> Deserialize<'de> for MaybeStr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = MaybeStr<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<MaybeStr<'a>, E> {
                Ok(MaybeStr::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<MaybeStr<'a>, E> {
                Ok(MaybeStr::Str(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<MaybeStr<'a>, E> {
                Ok(MaybeStr::Str(Cow::Owned(v)))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<MaybeStr<'a>, E> {
                Ok(MaybeStr::Other)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<MaybeStr<'a>, E> {
                Ok(MaybeStr::Other)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<MaybeStr<'a>, E> {
                Ok(MaybeStr::Other)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<MaybeStr<'a>, E> {
                Ok(MaybeStr::Other)
            }
            fn visit_unit<E: de::Error>(self) -> Result<MaybeStr<'a>, E> {
                Ok(MaybeStr::Other)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut a: A) -> Result<MaybeStr<'a>, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(MaybeStr::Other)
            }
            fn visit_map<M: MapAccess<'de>>(self, mut m: M) -> Result<MaybeStr<'a>, M::Error> {
                while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(MaybeStr::Other)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// The `schemaType` of invocation records.
pub const SCHEMA_TYPE: &str = "ModelInvocationLog";

/// Parses one invocation record. `metadata_key` names the `requestMetadata`
/// key that carries the user (usually `user`).
pub fn parse_record<'a>(
    message: &'a str,
    metadata_key: &str,
) -> Result<InvocationRecord<'a>, RecordError> {
    let first = message.trim_start().as_bytes().first().copied();
    if first != Some(b'{') {
        // Most often a stray text line in the log group; JSON arrays and
        // scalars are not records either.
        return Err(match serde_json::from_str::<IgnoredAny>(message) {
            Ok(_) => RecordError::NotInvocationRecord("JSON but not an object".to_string()),
            Err(_) => RecordError::NotJson("the message is not a JSON object".to_string()),
        });
    }
    let raw: RawRecord<'a> = serde_json::from_str(message).map_err(classify_serde_error)?;
    if let Some(schema) = raw.schema_type.as_ref().map(|s| s.0.as_ref()) {
        if schema != SCHEMA_TYPE {
            return Err(RecordError::NotInvocationRecord(format!(
                "schemaType is `{}`, expected `{SCHEMA_TYPE}`",
                truncate_for_log(schema, 40)
            )));
        }
    } else if raw.model_id.is_none() && raw.request_id.is_none() {
        return Err(RecordError::NotInvocationRecord(
            "no schemaType, modelId or requestId".to_string(),
        ));
    }
    let timestamp = match raw.timestamp.as_ref().map(|t| t.0.as_ref()) {
        None => return Err(RecordError::MissingTimestamp),
        Some(ts) => parse_timestamp(ts)?,
    };
    let metadata = raw.request_metadata.map(|m| m.0).unwrap_or_default();
    let metadata_user = metadata
        .iter()
        .find(|(k, _)| k == metadata_key)
        .map(|(_, v)| v.clone());
    let count = |c: Option<TokenCount>| c.map_or(0, |c| c.0);
    let (input, cache_read, cache_write) = raw.input.map_or((0, 0, 0), |i| {
        (
            count(i.input_token_count),
            count(i.cache_read_input_token_count),
            count(i.cache_write_input_token_count),
        )
    });
    let (output, cache_write_1h) = raw.output.map_or((0, 0), |o| {
        (
            count(o.output_token_count),
            o.output_body_json.and_then(|b| b.one_hour).unwrap_or(0),
        )
    });
    Ok(InvocationRecord {
        timestamp,
        request_id: raw.request_id.map(|r| r.0).filter(|r| !r.is_empty()),
        model_id: raw.model_id.map(|m| m.0),
        region: raw.region.map(|r| r.0),
        identity_arn: raw.identity.and_then(|i| i.arn).map(|a| a.0),
        metadata_user,
        metadata,
        error_code: raw.error_code.map(|c| c.0).filter(|c| !c.is_empty()),
        tokens: TokenCounts {
            input,
            output,
            cache_read,
            cache_write,
            cache_write_1h,
        },
    })
}

/// Parses an RFC 3339 timestamp (any offset; normalised to UTC). The form
/// Bedrock writes, `YYYY-MM-DDTHH:MM:SSZ`, takes a fast path.
pub fn parse_timestamp(ts: &str) -> Result<OffsetDateTime, RecordError> {
    if let Some(t) = parse_plain_utc(ts.as_bytes()) {
        return Ok(t);
    }
    OffsetDateTime::parse(ts.trim(), &time::format_description::well_known::Rfc3339)
        .ok()
        // Beyond year 9999 in UTC is not representable: an error, not a panic.
        .and_then(|t| t.checked_to_offset(time::UtcOffset::UTC))
        .ok_or_else(|| {
            RecordError::BadTimestamp(format!(
                "`{}` is not RFC 3339 (e.g. 2026-09-08T12:10:33Z)",
                truncate_for_log(ts, 40)
            ))
        })
}

/// `YYYY-MM-DDTHH:MM:SSZ` exactly, validated; `None` for anything else.
fn parse_plain_utc(b: &[u8]) -> Option<OffsetDateTime> {
    if b.len() != 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'Z'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    let year = i32::try_from(num(0..4)?).ok()?;
    let month = time::Month::try_from(u8::try_from(num(5..7)?).ok()?).ok()?;
    let date = time::Date::from_calendar_date(year, month, u8::try_from(num(8..10)?).ok()?).ok()?;
    let t = time::Time::from_hms(
        u8::try_from(num(11..13)?).ok()?,
        u8::try_from(num(14..16)?).ok()?,
        u8::try_from(num(17..19)?).ok()?,
    )
    .ok()?;
    Some(date.with_time(t).assume_utc())
}

fn classify_serde_error(e: serde_json::Error) -> RecordError {
    let msg = e.to_string();
    if let Some(pos) = msg.find(TOKEN_ERROR_PREFIX) {
        // Our own messages carry no input text.
        return RecordError::BadTokenCount(msg[pos + TOKEN_ERROR_PREFIX.len()..].to_string());
    }
    match e.classify() {
        serde_json::error::Category::Data => RecordError::WrongShape(redacted_serde_reason(&e)),
        _ => RecordError::NotJson(redacted_serde_reason(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"timestamp":"2026-09-08T12:10:33Z","accountId":"111111111111","region":"ap-northeast-1","requestId":"0b6e3c1e","operation":"Converse","modelId":"apac.amazon.nova-micro-v1:0","input":{"inputContentType":"application/json","inputTokenCount":1,"inputBodyJson":{"messages":[{"content":"hi"}]}},"output":{"outputContentType":"application/json","outputTokenCount":8,"outputBodyJson":[{"x":1}]},"identity":{"arn":"arn:aws:sts::111111111111:assumed-role/BedrockUsers/alice"},"requestMetadata":{"user":"bob","n":5,"o":{"x":[1]}},"schemaType":"ModelInvocationLog","schemaVersion":"1.0","futureField":{"a":[1,2]}}"#;

    #[test]
    fn a_real_record_yields_its_metering_fields() {
        let r = parse_record(GOOD, "user").unwrap();
        assert_eq!(r.request_id.as_deref(), Some("0b6e3c1e"));
        assert_eq!(r.model_id.as_deref(), Some("apac.amazon.nova-micro-v1:0"));
        assert_eq!(r.region.as_deref(), Some("ap-northeast-1"));
        assert_eq!(r.metadata_user.as_deref(), Some("bob"));
        assert_eq!(
            r.identity_arn.as_deref(),
            Some("arn:aws:sts::111111111111:assumed-role/BedrockUsers/alice")
        );
        assert_eq!(
            r.tokens,
            TokenCounts {
                input: 1,
                output: 8,
                cache_read: 0,
                cache_write: 0,
                cache_write_1h: 0,
            }
        );
        assert_eq!(r.timestamp.unix_timestamp(), 1_788_869_433);
        assert_eq!(r.error_code, None);
    }

    #[test]
    fn metadata_key_is_configurable_and_ignores_non_string_values() {
        assert_eq!(parse_record(GOOD, "n").unwrap().metadata_user, None);
        assert_eq!(parse_record(GOOD, "absent").unwrap().metadata_user, None);
    }

    #[test]
    fn records_with_every_field_missing_but_the_timestamp_parse() {
        let r = parse_record(
            r#"{"schemaType":"ModelInvocationLog","timestamp":"2026-01-01T00:00:00Z"}"#,
            "user",
        )
        .unwrap();
        assert!(r.tokens.is_zero());
        assert_eq!(r.model_id, None);
        assert_eq!(r.identity_arn, None);
    }

    #[test]
    fn bad_records_give_typed_errors_with_reasons() {
        let cases: &[(&str, &str)] = &[
            ("not json at all", "not_json"),
            ("{\"timestamp\": ", "not_json"),
            ("[1,2]", "not_invocation_record"),
            (r#"{"hello":"world"}"#, "not_invocation_record"),
            (
                r#"{"schemaType":"Other","timestamp":"2026-01-01T00:00:00Z"}"#,
                "not_invocation_record",
            ),
            (
                r#"{"modelId":"m","timestamp":"2026-01-01T00:00:00Z","input":{"inputTokenCount":-5}}"#,
                "bad_token_count",
            ),
            (
                r#"{"modelId":"m","timestamp":"2026-01-01T00:00:00Z","input":{"inputTokenCount":1.5}}"#,
                "bad_token_count",
            ),
            (
                r#"{"modelId":"m","timestamp":"2026-01-01T00:00:00Z","output":{"outputTokenCount":18446744073709551616}}"#,
                "bad_token_count",
            ),
            (
                r#"{"modelId":"m","timestamp":"2026-01-01T00:00:00Z","output":{"outputTokenCount":"12"}}"#,
                "bad_token_count",
            ),
            (
                r#"{"modelId":"m","timestamp":"yesterday"}"#,
                "bad_timestamp",
            ),
            (
                r#"{"modelId":"m","timestamp":"2026-13-01T00:00:00Z"}"#,
                "bad_timestamp",
            ),
            (r#"{"modelId":"m"}"#, "missing_timestamp"),
            (
                r#"{"modelId":"m","timestamp":"2026-01-01T00:00:00Z","input":"prompt text"}"#,
                "wrong_shape",
            ),
            (
                r#"{"modelId":5,"timestamp":"2026-01-01T00:00:00Z"}"#,
                "wrong_shape",
            ),
        ];
        for (input, label) in cases {
            let err = parse_record(input, "user").expect_err(input);
            assert_eq!(err.reason_label(), *label, "{input}: {err}");
        }
    }

    #[test]
    fn the_largest_u64_token_count_is_accepted() {
        let r = parse_record(
            r#"{"modelId":"m","timestamp":"2026-01-01T00:00:00Z","output":{"outputTokenCount":18446744073709551615}}"#,
            "user",
        )
        .unwrap();
        assert_eq!(r.tokens.output, u64::MAX);
    }

    #[test]
    fn the_fast_timestamp_path_agrees_with_the_rfc3339_parser() {
        use time::format_description::well_known::Rfc3339;
        for ts in [
            "2026-09-08T12:10:33Z",
            "2024-02-29T23:59:59Z",
            "2000-01-01T00:00:00Z",
            "2026-12-31T23:59:60Z",
        ] {
            let slow = OffsetDateTime::parse(ts, &Rfc3339).ok();
            assert_eq!(parse_plain_utc(ts.as_bytes()).or(slow), slow, "{ts}");
            if slow.is_some() {
                assert_eq!(parse_timestamp(ts).ok(), slow, "{ts}");
            }
        }
        for bad in [
            "2026-02-30T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:00:00z",
            "2026-01-01 00:00:00Z",
        ] {
            assert_eq!(parse_plain_utc(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn timestamps_with_offsets_and_fractions_normalise_to_utc() {
        let t = parse_timestamp("2026-11-01T01:30:00.250+02:00").unwrap();
        assert_eq!(
            (t.year(), t.month() as u8, t.day(), t.hour()),
            (2026, 10, 31, 23)
        );
    }

    fn with_output_body(body: &str) -> String {
        format!(
            r#"{{"schemaType":"ModelInvocationLog","timestamp":"2026-11-20T10:00:00Z","modelId":"anthropic.claude-sonnet-4-6","input":{{"inputTokenCount":10,"cacheWriteInputTokenCount":3000,"inputBodyJson":{{"usage":{{"cache_creation":{{"ephemeral_1h_input_tokens":999}}}}}}}},"output":{{"outputTokenCount":5,"outputBodyJson":{body}}}}}"#
        )
    }

    #[test]
    fn the_one_hour_cache_write_split_is_read_from_an_anthropic_output_body() {
        let cases: &[(&str, &str, u64)] = &[
            (
                "InvokeModel response",
                r#"{"id":"msg_1","type":"message","content":[{"type":"text","text":"usage cache_creation"}],"usage":{"input_tokens":10,"cache_creation_input_tokens":3000,"cache_read_input_tokens":0,"cache_creation":{"ephemeral_5m_input_tokens":1000,"ephemeral_1h_input_tokens":2000},"output_tokens":5}}"#,
                2000,
            ),
            (
                "streamed chunks: message_start carries the usage",
                r#"[{"type":"message_start","message":{"id":"msg_2","usage":{"input_tokens":10,"cache_creation_input_tokens":3000,"cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":3000}}}},{"type":"content_block_delta","delta":{"text":"hi"}},{"type":"message_delta","usage":{"output_tokens":5}}]"#,
                3000,
            ),
            (
                "Converse response: no split",
                r#"{"output":{"message":{"content":[{"text":"x"}]}},"usage":{"inputTokens":10,"outputTokens":5,"cacheWriteInputTokens":3000}}"#,
                0,
            ),
            (
                "only the 5-minute part reported",
                r#"{"usage":{"cache_creation":{"ephemeral_5m_input_tokens":3000}}}"#,
                0,
            ),
            (
                "a split deeper than a usage block is not taken",
                r#"{"content":[{"usage":{"cache_creation":{"ephemeral_1h_input_tokens":7}}}],"metadata":{"usage":{"cache_creation":{"ephemeral_1h_input_tokens":8}}}}"#,
                0,
            ),
            (
                "a prompt that mentions the field is text, not a count",
                r#"{"content":[{"text":"\"usage\":{\"cache_creation\":{\"ephemeral_1h_input_tokens\":9}}"}]}"#,
                0,
            ),
        ];
        for (what, body, want) in cases {
            let msg = with_output_body(body);
            let r = parse_record(&msg, "user").unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(r.tokens.cache_write_1h, *want, "{what}");
            assert_eq!(r.tokens.cache_write, 3000, "{what}");
            assert_eq!(r.tokens.output, 5, "{what}");
        }
    }

    #[test]
    fn odd_output_bodies_never_fail_a_record() {
        for body in [
            r#""a plain string body""#,
            "null",
            "42",
            "-1.5",
            "true",
            "[]",
            "[1,\"x\",null,[{\"usage\":5}]]",
            r#"{"usage":"none"}"#,
            r#"{"usage":[1,2]}"#,
            r#"{"usage":{"cache_creation":"x"}}"#,
            r#"{"usage":{"cache_creation":{"ephemeral_1h_input_tokens":-4}}}"#,
            r#"{"usage":{"cache_creation":{"ephemeral_1h_input_tokens":1.5}}}"#,
            r#"{"usage":{"cache_creation":{"ephemeral_1h_input_tokens":"12"}}}"#,
            r#"{"usage":{"cache_creation":{"ephemeral_1h_input_tokens":{"n":1}}}}"#,
            r#"{"usage":{"cache_creation":{"ephemeral_1h_input_tokens":99999999999999999999999}}}"#,
        ] {
            let msg = with_output_body(body);
            let r = parse_record(&msg, "user").unwrap_or_else(|e| panic!("{body}: {e}"));
            assert_eq!(r.tokens.cache_write_1h, 0, "{body}");
            assert_eq!(r.tokens.output, 5, "{body}");
        }
    }

    #[test]
    fn errors_never_echo_record_text() {
        let r = parse_record(
            r#"{"modelId":"m","timestamp":"2026-01-01T00:00:00Z","input":"CANARY prompt"}"#,
            "user",
        );
        assert!(!r.unwrap_err().to_string().contains("CANARY"));
        let r = parse_record(r#"{"modelId":"m","timestamp":"CANARY"}"#, "user");
        // A timestamp is echoed (truncated) since it is not body content, but
        // bodies never are.
        assert!(r.is_err());
    }
}
