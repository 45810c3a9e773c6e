//! Key encoding of the data contract (see `docs/data-model.md`).
//!
//! A key component is the raw value with `%`, `#` and `~` percent-escaped,
//! which is injective and keeps `#` free as the delimiter. When the escaped
//! value is longer than [`MAX_COMPONENT_BYTES`], the component becomes
//! `~<prefix>~<sha256 of the raw value>`: bounded, still injective (short
//! forms never start with `~`; long forms differ whenever the raw values do,
//! barring a SHA-256 collision), and still sorted by its prefix. Raw values
//! always live in plain attributes.

use std::borrow::Cow;
use std::fmt::Write as _;

use meter_core::{AggregateKey, Day, Month};
use sha2::{Digest, Sha256};

/// Longest escaped component kept verbatim. Keys stay far below DynamoDB's
/// 2048-byte partition and 1024-byte sort key limits even with two
/// components and prefixes.
pub const MAX_COMPONENT_BYTES: usize = 256;
const LONG_PREFIX_BYTES: usize = 120;

/// Encodes one key component.
pub fn component(raw: &str) -> Cow<'_, str> {
    let needs_escape = raw.bytes().any(|b| matches!(b, b'%' | b'#' | b'~'));
    let escaped: Cow<'_, str> = if needs_escape {
        let mut s = String::with_capacity(raw.len() + 8);
        for c in raw.chars() {
            match c {
                '%' => s.push_str("%25"),
                '#' => s.push_str("%23"),
                '~' => s.push_str("%7E"),
                c => s.push(c),
            }
        }
        Cow::Owned(s)
    } else {
        Cow::Borrowed(raw)
    };
    if escaped.len() <= MAX_COMPONENT_BYTES {
        return escaped;
    }
    let mut cut = LONG_PREFIX_BYTES;
    while !escaped.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut s = String::with_capacity(cut + 66);
    s.push('~');
    s.push_str(&escaped[..cut]);
    s.push('~');
    for b in Sha256::digest(raw.as_bytes()) {
        let _ = write!(s, "{b:02x}");
    }
    Cow::Owned(s)
}

/// Primary and index keys of one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemKeys {
    pub pk: String,
    pub sk: String,
    /// `gsi1pk`/`gsi1sk`, for items on the `gsi1` index.
    pub gsi1: Option<(String, String)>,
}

pub fn user_pk(user: &str) -> String {
    format!("U#{}", component(user))
}
pub fn model_pk(model: &str) -> String {
    format!("M#{}", component(model))
}
pub fn day_sk(day: Day) -> String {
    format!("D#{day}")
}
pub fn month_sk(month: Month) -> String {
    format!("MONTH#{month}")
}
pub fn day_gsi_pk(day: Day) -> String {
    format!("DAY#{day}")
}
pub fn month_gsi_pk(month: Month) -> String {
    format!("MONTH#{month}")
}

/// Partition of one attribution tag value: `T#<tag>#<value>`.
pub fn tag_pk(tag: &str, value: &str) -> String {
    format!("T#{}#{}", component(tag), component(value))
}
/// Index partition of a tag's values on one day: `TDAY#<tag>#<day>`.
pub fn tag_day_gsi_pk(tag: &str, day: Day) -> String {
    format!("TDAY#{}#{day}", component(tag))
}
/// Index partition of a tag's values in one month: `TMONTH#<tag>#<month>`.
pub fn tag_month_gsi_pk(tag: &str, month: Month) -> String {
    format!("TMONTH#{}#{month}", component(tag))
}
/// Index sort key of a tag value: `V#<value>`.
pub fn tag_value_gsi_sk(value: &str) -> String {
    format!("V#{}", component(value))
}

/// Keys of an aggregate item.
pub fn aggregate_keys(key: &AggregateKey<'_>) -> ItemKeys {
    match *key {
        AggregateKey::UserModelDay { user, model, day } => ItemKeys {
            pk: user_pk(user),
            sk: format!("D#{day}#M#{}", component(model)),
            gsi1: None,
        },
        AggregateKey::UserDay { user, day } => ItemKeys {
            pk: user_pk(user),
            sk: day_sk(day),
            gsi1: Some((day_gsi_pk(day), user_pk(user))),
        },
        AggregateKey::UserMonth { user, month } => ItemKeys {
            pk: user_pk(user),
            sk: month_sk(month),
            gsi1: Some((month_gsi_pk(month), user_pk(user))),
        },
        AggregateKey::ModelDay { model, day } => ItemKeys {
            pk: model_pk(model),
            sk: day_sk(day),
            gsi1: Some((day_gsi_pk(day), model_pk(model))),
        },
        AggregateKey::TagModelDay {
            tag,
            value,
            model,
            day,
        } => ItemKeys {
            pk: tag_pk(tag, value),
            sk: format!("D#{day}#M#{}", component(model)),
            gsi1: Some((
                tag_day_gsi_pk(tag, day),
                format!("{}#M#{}", tag_value_gsi_sk(value), component(model)),
            )),
        },
        AggregateKey::TagMonth { tag, value, month } => ItemKeys {
            pk: tag_pk(tag, value),
            sk: month_sk(month),
            gsi1: Some((tag_month_gsi_pk(tag, month), tag_value_gsi_sk(value))),
        },
    }
}

/// Keys of a marker bucket: `B#<level>#<window>#<slot>`, sort key `B`.
pub fn bucket_keys(b: &crate::markers::BucketRef) -> ItemKeys {
    ItemKeys {
        pk: format!("B#{}#{}#{}", b.level, b.window, b.slot),
        sk: "B".to_string(),
        gsi1: None,
    }
}

/// Keys of the request-cost item of a record: `Q#<record id>`, sort key `Q`.
pub fn request_cost_keys(record_id: &str) -> ItemKeys {
    ItemKeys {
        pk: format!("Q#{}", component(record_id)),
        sk: "Q".to_string(),
        gsi1: None,
    }
}

/// Keys of the idempotency marker of a record.
pub fn marker_keys(record_id: &str) -> ItemKeys {
    ItemKeys {
        pk: format!("R#{}", component(record_id)),
        sk: "R".to_string(),
        gsi1: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn delimiters_and_escape_characters_are_escaped() {
        assert_eq!(component("alice"), "alice");
        assert_eq!(component("a#b"), "a%23b");
        assert_eq!(component("a%23b"), "a%2523b");
        assert_eq!(component("~x"), "%7Ex");
        assert_eq!(component("ünï©ødé"), "ünï©ødé");
    }

    #[test]
    fn long_ids_are_bounded_and_distinct() {
        let a = "x".repeat(3000);
        let mut b = a.clone();
        b.push('y');
        let (ka, kb) = (component(&a), component(&b));
        assert!(ka.len() < 200 && kb.len() < 200);
        assert_ne!(ka, kb);
        assert!(ka.starts_with('~'));
        // multi-byte characters are cut on a boundary
        let wide = "é".repeat(500);
        assert!(component(&wide).len() < 200);
    }

    #[test]
    fn keys_with_a_user_that_looks_like_a_key_do_not_collide() {
        let day = Day::parse("2026-11-01").unwrap();
        let k1 = aggregate_keys(&AggregateKey::UserModelDay {
            user: "a",
            model: "m#x",
            day,
        });
        let k2 = aggregate_keys(&AggregateKey::UserModelDay {
            user: "a#M#m",
            model: "x",
            day,
        });
        assert_ne!((k1.pk, k1.sk), (k2.pk, k2.sk));
    }

    #[test]
    fn tag_values_holding_the_delimiter_never_share_an_item() {
        let day = Day::parse("2026-11-01").unwrap();
        let k = |tag, value| {
            aggregate_keys(&AggregateKey::TagModelDay {
                tag,
                value,
                model: "m",
                day,
            })
        };
        let (a, b) = (k("team", "a#b"), k("team#a", "b"));
        assert_ne!(a.pk, b.pk);
        assert_eq!(a.pk, "T#team#a%23b");
        assert_eq!(
            a.gsi1,
            Some(("TDAY#team#2026-11-01".into(), "V#a%23b#M#m".into()))
        );
        let month = aggregate_keys(&AggregateKey::TagMonth {
            tag: "team",
            value: "<p>",
            month: day.month(),
        });
        assert_eq!(
            (month.pk.as_str(), month.sk.as_str()),
            ("T#team#<p>", "MONTH#2026-11")
        );
    }

    proptest! {
        #[test]
        fn tag_keys_stay_within_dynamodb_limits(tag in ".{0,300}", value in ".{0,9000}", model in ".{0,3000}") {
            let day = Day::parse("2026-11-01").unwrap();
            for key in [
                AggregateKey::TagModelDay { tag: &tag, value: &value, model: &model, day },
                AggregateKey::TagMonth { tag: &tag, value: &value, month: day.month() },
            ] {
                let k = aggregate_keys(&key);
                prop_assert!(k.pk.len() <= 2048 && k.sk.len() <= 1024);
                if let Some((p, s)) = k.gsi1 { prop_assert!(p.len() <= 2048 && s.len() <= 1024); }
            }
        }

        #[test]
        fn component_encoding_is_injective(a in ".{0,300}", b in ".{0,300}") {
            prop_assume!(a != b);
            prop_assert_ne!(component(&a), component(&b));
        }

        #[test]
        fn component_encoding_is_injective_on_delimiter_heavy_ids(a in "[#%~7E2a]{0,20}", b in "[#%~7E2a]{0,20}") {
            prop_assume!(a != b);
            prop_assert_ne!(component(&a), component(&b));
        }

        #[test]
        fn keys_stay_within_dynamodb_limits(user in ".{0,5000}", model in ".{0,3000}") {
            let day = Day::parse("2026-11-01").unwrap();
            for key in meter_core::aggregate::keys_of(&Probe { user: &user, model: &model, day }) {
                let k = aggregate_keys(&key);
                prop_assert!(k.pk.len() <= 2048 && k.sk.len() <= 1024);
                if let Some((p, s)) = k.gsi1 { prop_assert!(p.len() <= 2048 && s.len() <= 1024); }
            }
        }
    }

    struct Probe<'a> {
        user: &'a str,
        model: &'a str,
        day: Day,
    }
    impl meter_core::Contribution for Probe<'_> {
        fn record_id(&self) -> &str {
            "r"
        }
        fn user(&self) -> &str {
            self.user
        }
        fn model(&self) -> &str {
            self.model
        }
        fn day(&self) -> Day {
            self.day
        }
        fn counters(&self) -> &meter_core::Counters {
            static C: meter_core::Counters = meter_core::Counters {
                invocations: 0,
                errors: 0,
                input_tokens: 0,
                output_tokens: 0,
                cache_read_input_tokens: 0,
                cache_write_input_tokens: 0,
                unpriced_invocations: 0,
                cost_usd: meter_core::Usd::ZERO,
            };
            &C
        }
    }
}
