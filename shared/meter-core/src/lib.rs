//! # meter-core: bedrock-meter's domain pipeline
//!
//! Pure, synchronous Rust with no AWS SDK: everything from the bytes a
//! delivery hands us to the per-key deltas a store commits.
//!
//! ```text
//! bytes ──decode──▶ log events ──parse──▶ InvocationRecord ──resolve──▶ user, model, day
//!                                                   └──price──▶ exact cost ──aggregate──▶ deltas
//! ```
//!
//! - [`decode`]: Lambda events, on-failure destination records, decoded
//!   payloads, newline-delimited records and gzip of any, with a cap on
//!   decompression.
//! - [`record`]: a borrowing, tolerant parse that never builds prompt or
//!   answer bodies.
//! - [`resolve`]: user attribution, model routes, UTC days.
//! - [`pricing`] and [`money`]: the versioned price table and integer
//!   pico-dollar arithmetic; a missing rate is flagged, never $0.
//! - [`aggregate`]: one delta per (user, model, day) and the three rollups.
//! - [`pricelist`]: price sync, AWS Price List offers in, a price table and
//!   a report out (pure; the CLI downloads).
//!
//! [`Meter`] wires the steps for one payload. Invariants: nothing here
//! panics on any input; no record content beyond ids, model ids, user ids and
//! counts leaves this crate.

pub mod aggregate;
pub mod decode;
pub mod money;
pub mod pricelist;
pub mod pricing;
pub mod record;
pub mod resolve;

use std::sync::Arc;

use foldhash::{HashSet, HashSetExt};

use sha2::{Digest, Sha256};

pub use aggregate::{aggregate, AggregateKey, Contribution, Counters, Delta, Tag, UNTAGGED};
pub use decode::{BatchKind, DecodeError, DecodeLimits, LogEvent};
pub use money::Usd;
pub use pricing::{Price, PriceTable, PriceTableError, UnpricedReason};
pub use record::RecordError;
pub use resolve::{Day, Month};

/// The default `requestMetadata` key that names the user.
pub const DEFAULT_USER_METADATA_KEY: &str = "user";

/// The attribution tag name that means the caller's IAM principal (the
/// record's `identity.arn` in the form the Cost and Usage Report writes),
/// not a `requestMetadata` key.
pub const PRINCIPAL_TAG: &str = "principal";

/// The model recorded when a record has no `modelId`.
pub const UNKNOWN_MODEL: &str = "unknown";

/// Longest user or model id kept (bytes). Longer ids are skipped and
/// reported: an aggregate item holds the raw id and must stay well inside
/// DynamoDB's 400 KB item limit, and no real id is this long.
pub const MAX_ID_BYTES: usize = 8 * 1024;

/// Longest `requestId` kept (bytes); real ones are 36-byte UUIDs.
pub const MAX_REQUEST_ID_BYTES: usize = 1024;

/// Settings of the pipeline.
#[derive(Debug, Clone)]
pub struct Meter {
    pub prices: PriceTable,
    pub user_metadata_key: String,
    pub limits: DecodeLimits,
    /// `requestMetadata` keys (or [`PRINCIPAL_TAG`]) each record is also
    /// counted under (`ATTRIBUTION_TAGS`); empty by default.
    pub attribution_tags: Vec<Arc<str>>,
}

/// One invocation, resolved and priced: everything the store needs, and no
/// content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeteredRecord {
    /// The idempotency identity: `r:<requestId>`, else `e:<log event id>`,
    /// else `h:<sha256 of the record text>`.
    pub record_id: String,
    /// Shared by every record of a batch with the same user (as are
    /// `principal` and `model`): a batch has few distinct ones.
    pub user: Arc<str>,
    pub principal: Option<Arc<str>>,
    /// `modelId` exactly as logged.
    pub model: Arc<str>,
    pub day: Day,
    /// The record's own timestamp, epoch seconds.
    pub timestamp: i64,
    /// This record's contribution (invocations = 1).
    pub counters: Counters,
    pub unpriced: Option<UnpricedReason>,
    /// One (tag, value) per configured attribution tag, in configured order;
    /// the value is [`UNTAGGED`] when the record lacks the key.
    pub tags: Vec<Tag>,
}

impl Contribution for MeteredRecord {
    fn record_id(&self) -> &str {
        &self.record_id
    }
    fn user(&self) -> &str {
        &self.user
    }
    fn model(&self) -> &str {
        &self.model
    }
    fn day(&self) -> Day {
        self.day
    }
    fn counters(&self) -> &Counters {
        &self.counters
    }
    fn tags(&self) -> &[Tag] {
        &self.tags
    }
}

/// What metering one batch remembers between its records.
#[derive(Default)]
struct BatchCache<'t> {
    rates: pricing::RateCache<'t>,
    strings: Interner,
}

/// One shared copy of each distinct user, principal and model id of a batch.
#[derive(Default)]
struct Interner(HashSet<Arc<str>>);

impl Interner {
    fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(shared) = self.0.get(s) {
            return shared.clone();
        }
        let shared: Arc<str> = Arc::from(s);
        self.0.insert(shared.clone());
        shared
    }
}

/// A record that was skipped, with where to find it and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedRecord {
    pub location: String,
    pub error: RecordError,
}

/// The result of metering one payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeteredBatch {
    pub kind: BatchKind,
    /// Log events seen (records plus skipped plus in-batch duplicates).
    pub events: usize,
    /// Distinct records, in input order.
    pub records: Vec<MeteredRecord>,
    pub skipped: Vec<SkippedRecord>,
    /// Records whose id already appeared earlier in the same payload.
    pub duplicates_in_batch: usize,
}

impl MeteredBatch {
    /// Several payloads' batches as one, as if their log events had come in
    /// one payload in this order: a record whose id already appeared in an
    /// earlier batch is dropped and counted in `duplicates_in_batch`, as
    /// [`Meter::meter_events`] does within one payload (the first is kept).
    /// `events`, `skipped` and the batches' own duplicates add up. The kind is
    /// that of the first batch that is not a control message (`Control` when
    /// none is): the log group and stream of later batches are not kept, and
    /// nothing that counts uses them.
    pub fn concat(batches: impl IntoIterator<Item = MeteredBatch>) -> MeteredBatch {
        let mut out = MeteredBatch {
            kind: BatchKind::Control,
            events: 0,
            records: Vec::new(),
            skipped: Vec::new(),
            duplicates_in_batch: 0,
        };
        for b in batches {
            if out.kind == BatchKind::Control {
                out.kind = b.kind;
            }
            out.events += b.events;
            out.duplicates_in_batch += b.duplicates_in_batch;
            out.records.extend(b.records);
            out.skipped.extend(b.skipped);
        }
        let mut keep = vec![true; out.records.len()];
        {
            let mut seen: HashSet<&str> = HashSet::with_capacity(out.records.len());
            for (i, r) in out.records.iter().enumerate() {
                if !seen.insert(r.record_id.as_str()) {
                    keep[i] = false;
                }
            }
        }
        let dropped = keep.iter().filter(|k| !**k).count();
        if dropped > 0 {
            out.duplicates_in_batch += dropped;
            let mut i = 0;
            out.records.retain(|_| {
                i += 1;
                keep[i - 1]
            });
        }
        out
    }
}

impl Meter {
    /// A meter with the built-in price table and default settings.
    pub fn with_defaults() -> Meter {
        Meter {
            prices: PriceTable::builtin(),
            user_metadata_key: DEFAULT_USER_METADATA_KEY.to_string(),
            limits: DecodeLimits::default(),
            attribution_tags: Vec::new(),
        }
    }

    /// Decodes, parses, resolves and prices one payload of any accepted
    /// shape. A payload that cannot be decoded at all is an error (nothing
    /// was counted); bad records inside it are skipped and reported.
    pub fn meter_payload(&self, input: &[u8]) -> Result<MeteredBatch, DecodeError> {
        let payload = decode::unwrap_payload(input, self.limits)?;
        let batch = decode::parse_payload(&payload)?;
        Ok(self.meter_events(batch.kind, &batch.events))
    }

    /// Meters already-decoded log events.
    pub fn meter_events(&self, kind: BatchKind, events: &[LogEvent<'_>]) -> MeteredBatch {
        let mut out = MeteredBatch {
            kind,
            events: events.len(),
            records: Vec::with_capacity(events.len()),
            skipped: Vec::new(),
            duplicates_in_batch: 0,
        };
        let mut cache = BatchCache::default();
        for event in events {
            match self.meter_event_with(event, &mut cache) {
                Ok(r) => out.records.push(r),
                Err(error) => out.skipped.push(SkippedRecord {
                    location: event.id.to_string(),
                    error,
                }),
            }
        }
        // The same record twice in one payload: keep the first.
        let mut keep = vec![true; out.records.len()];
        {
            let mut seen: HashSet<&str> = HashSet::with_capacity(out.records.len());
            for (i, r) in out.records.iter().enumerate() {
                if !seen.insert(r.record_id.as_str()) {
                    keep[i] = false;
                }
            }
        }
        out.duplicates_in_batch = keep.iter().filter(|k| !**k).count();
        if out.duplicates_in_batch > 0 {
            let mut i = 0;
            out.records.retain(|_| {
                i += 1;
                keep[i - 1]
            });
        }
        out
    }

    /// Meters one log event.
    pub fn meter_event(&self, event: &LogEvent<'_>) -> Result<MeteredRecord, RecordError> {
        self.meter_event_with(event, &mut BatchCache::default())
    }

    fn meter_event_with<'t>(
        &'t self,
        event: &LogEvent<'_>,
        cache: &mut BatchCache<'t>,
    ) -> Result<MeteredRecord, RecordError> {
        let rec = record::parse_record(&event.message, &self.user_metadata_key)?;
        let who = resolve::attribute(rec.metadata_user.as_deref(), rec.identity_arn.as_deref());
        let too_long = |field: &'static str, len: usize, max: usize| {
            (len > max).then_some(RecordError::IdTooLong { field, len, max })
        };
        if let Some(e) = too_long("user", who.user.len(), MAX_ID_BYTES)
            .or_else(|| {
                too_long(
                    "modelId",
                    rec.model_id.as_deref().map_or(0, str::len),
                    MAX_ID_BYTES,
                )
            })
            .or_else(|| {
                too_long(
                    "requestId",
                    rec.request_id.as_deref().map_or(0, str::len),
                    MAX_REQUEST_ID_BYTES,
                )
            })
        {
            return Err(e);
        }
        let mut tags = Vec::with_capacity(self.attribution_tags.len());
        for tag in &self.attribution_tags {
            let value = if &**tag == PRINCIPAL_TAG {
                resolve::cur_principal(rec.identity_arn.as_deref())
            } else {
                rec.metadata
                    .iter()
                    .find(|(k, _)| k == &**tag)
                    .map(|(_, v)| std::borrow::Cow::Borrowed(v.as_ref()))
            };
            let value = value.filter(|v| !v.trim().is_empty());
            let value = value.as_deref().unwrap_or(UNTAGGED);
            if let Some(e) = too_long("attribution tag value", value.len(), MAX_ID_BYTES) {
                return Err(e);
            }
            tags.push((tag.clone(), cache.strings.intern(value)));
        }
        let day = Day::of(rec.timestamp);
        let model = rec.model_id.as_deref();
        let price = self.prices.price_cached(
            &mut cache.rates,
            model,
            rec.region.as_deref(),
            day,
            &rec.tokens,
        );
        let (cost, unpriced) = match price {
            Price::Priced(c) => (c, None),
            Price::Unpriced(reason) => (Usd::ZERO, Some(reason)),
        };
        // Built with push_str: `format!` costs more than the rest of this step.
        let prefixed = |prefix: &str, id: &str| {
            let mut s = String::with_capacity(prefix.len() + id.len());
            s.push_str(prefix);
            s.push_str(id);
            s
        };
        let record_id = match (&rec.request_id, event.id_is_event_id) {
            (Some(id), _) => prefixed("r:", id),
            (None, true) => prefixed("e:", &event.id),
            (None, false) => format!("h:{:x}", Sha256::digest(event.message.as_bytes())),
        };
        Ok(MeteredRecord {
            record_id,
            user: cache.strings.intern(who.user),
            principal: who.principal.map(|p| cache.strings.intern(p)),
            model: cache.strings.intern(model.unwrap_or(UNKNOWN_MODEL)),
            day,
            timestamp: rec.timestamp.unix_timestamp(),
            counters: Counters {
                invocations: 1,
                errors: u128::from(rec.error_code.is_some()),
                input_tokens: rec.tokens.input.into(),
                output_tokens: rec.tokens.output.into(),
                cache_read_input_tokens: rec.tokens.cache_read.into(),
                cache_write_input_tokens: rec.tokens.cache_write.into(),
                unpriced_invocations: u128::from(unpriced.is_some()),
                cost_usd: cost,
            },
            unpriced,
            tags,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn ev<'a>(id: &'a str, message: &'a str) -> LogEvent<'a> {
        LogEvent {
            id: Cow::Borrowed(id),
            id_is_event_id: true,
            timestamp_ms: None,
            message: Cow::Borrowed(message),
        }
    }

    #[test]
    fn a_batch_mixing_good_and_malformed_records_counts_every_good_one_and_reports_each_bad_one() {
        let good1 = r#"{"schemaType":"ModelInvocationLog","timestamp":"2026-11-01T10:00:00Z","requestId":"a","modelId":"amazon.nova-micro-v1:0","region":"us-east-1","input":{"inputTokenCount":1000000},"output":{"outputTokenCount":1000000},"identity":{"arn":"arn:aws:sts::1:assumed-role/R/alice"}}"#;
        let good2 = r#"{"schemaType":"ModelInvocationLog","timestamp":"2026-11-01T11:00:00Z","modelId":"acme.unknown","input":{"inputTokenCount":5}}"#;
        let events = [
            ev("1", good1),
            ev("2", "not json"),
            ev(
                "3",
                r#"{"modelId":"m","timestamp":"2026-11-01T00:00:00Z","input":{"inputTokenCount":-1}}"#,
            ),
            ev("4", good2),
            ev("5", good1),
            ev("6", r#"{"modelId":"m"}"#),
        ];
        let m = Meter::with_defaults();
        let batch = m.meter_events(BatchKind::Lines, &events);
        assert_eq!(batch.events, 6);
        let ids: Vec<_> = batch.records.iter().map(|r| r.record_id.as_str()).collect();
        assert_eq!(ids, ["r:a", "e:4"]);
        assert_eq!(batch.duplicates_in_batch, 1);
        let skipped: Vec<_> = batch
            .skipped
            .iter()
            .map(|s| (s.location.as_str(), s.error.reason_label()))
            .collect();
        assert_eq!(
            skipped,
            [
                ("2", "not_json"),
                ("3", "bad_token_count"),
                ("6", "missing_timestamp")
            ]
        );
        let a = &batch.records[0];
        assert_eq!(&*a.user, "alice");
        assert_eq!(a.counters.cost_usd.to_string(), "0.175");
        assert_eq!(a.unpriced, None);
        let b = &batch.records[1];
        assert_eq!(&*b.user, resolve::UNKNOWN_USER);
        assert_eq!(b.counters.unpriced_invocations, 1);
        assert_eq!(b.counters.cost_usd, Usd::ZERO);
        assert_eq!(b.counters.input_tokens, 5);
    }

    #[test]
    fn ids_beyond_the_stored_limit_are_skipped_with_a_reason() {
        let m = Meter::with_defaults();
        let long = "u".repeat(MAX_ID_BYTES + 1);
        let ok = "u".repeat(MAX_ID_BYTES);
        let msg = |user: &str| {
            format!(
                r#"{{"modelId":"m","timestamp":"2026-11-01T00:00:00Z","requestMetadata":{{"user":"{user}"}}}}"#
            )
        };
        let (long_msg, ok_msg) = (msg(&long), msg(&ok));
        let err = m.meter_event(&ev("1", &long_msg)).unwrap_err();
        assert_eq!(err.reason_label(), "id_too_long");
        assert_eq!(m.meter_event(&ev("2", &ok_msg)).unwrap().user.as_ref(), ok);
        let long_model = format!(
            r#"{{"modelId":"{}","timestamp":"2026-11-01T00:00:00Z"}}"#,
            "m".repeat(MAX_ID_BYTES + 1)
        );
        assert_eq!(
            m.meter_event(&ev("3", &long_model))
                .unwrap_err()
                .reason_label(),
            "id_too_long"
        );
    }

    #[test]
    fn each_configured_tag_takes_its_metadata_value_or_untagged() {
        let m = Meter {
            attribution_tags: vec!["team".into(), "feature".into(), PRINCIPAL_TAG.into()],
            ..Meter::with_defaults()
        };
        let tagged = r#"{"modelId":"m","timestamp":"2026-11-01T00:00:00Z","requestMetadata":{"user":"a","team":"pay#<b>","feature":"  "},"identity":{"arn":"arn:aws:iam::111111111111:user/eng/dave"}}"#;
        let r = m.meter_event(&ev("1", tagged)).unwrap();
        let got: Vec<(&str, &str)> = r.tags.iter().map(|(t, v)| (&**t, &**v)).collect();
        assert_eq!(
            got,
            [
                ("team", "pay#<b>"),
                ("feature", UNTAGGED),
                ("principal", "arn:aws:iam::111111111111:user/dave"),
            ]
        );
        let bare = r#"{"modelId":"m","timestamp":"2026-11-01T00:00:00Z"}"#;
        let r = m.meter_event(&ev("2", bare)).unwrap();
        assert!(r.tags.iter().all(|(_, v)| &**v == UNTAGGED), "{:?}", r.tags);
        let long = format!(
            r#"{{"modelId":"m","timestamp":"2026-11-01T00:00:00Z","requestMetadata":{{"team":"{}"}}}}"#,
            "t".repeat(MAX_ID_BYTES + 1)
        );
        assert_eq!(
            m.meter_event(&ev("3", &long)).unwrap_err().reason_label(),
            "id_too_long"
        );
        assert!(Meter::with_defaults()
            .meter_event(&ev("4", tagged))
            .unwrap()
            .tags
            .is_empty());
    }

    #[test]
    fn concatenated_batches_keep_the_first_of_a_record_seen_in_two_payloads() {
        let rec = |id: &str, input: u32| {
            format!(
                r#"{{"timestamp":"2026-11-01T10:00:00Z","requestId":"{id}","modelId":"amazon.nova-micro-v1:0","input":{{"inputTokenCount":{input}}}}}"#
            )
        };
        let (a, b, b_again, c) = (rec("a", 1), rec("b", 2), rec("b", 99), rec("c", 3));
        let m = Meter::with_defaults();
        let data = |n: &str| BatchKind::Data {
            owner: "1".into(),
            log_group: n.into(),
            log_stream: "s".into(),
        };
        let first = m.meter_events(
            data("first"),
            &[ev("1", &a), ev("2", &b), ev("3", "not json"), ev("4", &a)],
        );
        let control = m.meter_events(BatchKind::Control, &[]);
        let second = m.meter_events(data("second"), &[ev("5", &b_again), ev("6", &c)]);
        let all = MeteredBatch::concat([control, first, second]);
        let ids: Vec<_> = all.records.iter().map(|r| r.record_id.as_str()).collect();
        assert_eq!(ids, ["r:a", "r:b", "r:c"]);
        // b from the second payload is dropped: the first one's tokens stay.
        assert_eq!(all.records[1].counters.input_tokens, 2);
        assert_eq!(all.events, 6);
        assert_eq!(all.skipped.len(), 1);
        // a twice in the first payload, b again in the second.
        assert_eq!(all.duplicates_in_batch, 2);
        assert_eq!(
            all.events,
            all.records.len() + all.skipped.len() + all.duplicates_in_batch
        );
        assert!(matches!(all.kind, BatchKind::Data { ref log_group, .. } if log_group == "first"));
        assert_eq!(MeteredBatch::concat([]).kind, BatchKind::Control);
    }

    #[test]
    fn records_without_request_or_event_id_get_a_content_hash_id() {
        let msg = r#"{"modelId":"m","timestamp":"2026-11-01T00:00:00Z"}"#;
        let mut e = ev("line 1", msg);
        e.id_is_event_id = false;
        let m = Meter::with_defaults();
        let a = m.meter_event(&e).unwrap();
        e.id = Cow::Borrowed("line 7");
        let b = m.meter_event(&e).unwrap();
        assert!(a.record_id.starts_with("h:"));
        assert_eq!(
            a.record_id, b.record_id,
            "same record, same id wherever it sits"
        );
    }
}
