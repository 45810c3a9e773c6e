//! Stream records → changes of spend.

use aws_lambda_events::event::dynamodb::EventRecord;
use meter_core::Usd;
use serde_json::Value;

/// The period an aggregate covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeriodKind {
    Day,
    Month,
}

impl PeriodKind {
    /// `day` or `month` (the `period_kind` message attribute).
    pub fn label(self) -> &'static str {
        match self {
            PeriodKind::Day => "day",
            PeriodKind::Month => "month",
        }
    }
}

/// One user's (or one tag value's) spend over one day or month, before and
/// after one write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The stream record's `eventID` (unique per stream record).
    pub event_id: String,
    /// The user; empty for a tag change.
    pub user: String,
    /// `(tag, value)` of a `tag_month` or `tag_model_day` change; `None`
    /// for user changes. A tag change of kind [`PeriodKind::Day`] is a
    /// `tag_model_day` change: `old` and `new` are one model's spend, not
    /// the value's day (that is read with one Query, see the handler).
    pub tag: Option<(String, String)>,
    pub kind: PeriodKind,
    /// `YYYY-MM-DD` or `YYYY-MM`, as stored.
    pub period: String,
    /// `cost_usd` of the OldImage (0 when the item is new).
    pub old: Usd,
    /// `cost_usd` of the NewImage.
    pub new: Usd,
}

impl Change {
    /// The month this change belongs to (`YYYY-MM`).
    pub fn month(&self) -> &str {
        self.period.get(..7).unwrap_or(&self.period)
    }
}

/// Why a record is skipped (logged, never retried: it cannot get better).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SkipReason {
    #[error("not a user_day, user_month, tag_month or tag_model_day change (kind `{0}`)")]
    OtherKind(String),
    #[error("a removal (no NewImage)")]
    Removal,
    #[error("attribute `{0}` is missing or not a string")]
    Missing(&'static str),
    #[error("cost_usd `{0}` is not an exact non-negative decimal")]
    BadCost(String),
}

fn attr<'a>(image: &'a Value, name: &str, ty: &str) -> Option<&'a str> {
    image.get(name)?.get(ty)?.as_str()
}

fn cost(image: &Value) -> Result<Usd, SkipReason> {
    match attr(image, "cost_usd", "N") {
        None => Ok(Usd::ZERO),
        Some(n) => n.parse().map_err(|_| SkipReason::BadCost(n.to_string())),
    }
}

/// Reads one stream record. `Err` = skip it (with the reason).
pub fn parse(record: &EventRecord) -> Result<Change, SkipReason> {
    let new = serde_json::to_value(&record.change.new_image).unwrap_or(Value::Null);
    let old = serde_json::to_value(&record.change.old_image).unwrap_or(Value::Null);
    if new.as_object().map_or(true, |m| m.is_empty()) {
        return Err(SkipReason::Removal);
    }
    let kind_text = attr(&new, "kind", "S").unwrap_or_default();
    let (kind, period_attr) = match kind_text {
        "user_day" | "tag_model_day" => (PeriodKind::Day, "day"),
        "user_month" | "tag_month" => (PeriodKind::Month, "month"),
        other => return Err(SkipReason::OtherKind(other.to_string())),
    };
    let (user, tag) = if kind_text.starts_with("tag_") {
        let tag = attr(&new, "tag", "S").ok_or(SkipReason::Missing("tag"))?;
        let value = attr(&new, "value", "S").ok_or(SkipReason::Missing("value"))?;
        ("", Some((tag.to_string(), value.to_string())))
    } else {
        (
            attr(&new, "user", "S").ok_or(SkipReason::Missing("user"))?,
            None,
        )
    };
    let period = attr(&new, period_attr, "S").ok_or(SkipReason::Missing(period_attr))?;
    let ok_period = match kind {
        PeriodKind::Day => meter_core::Day::parse(period).is_some(),
        PeriodKind::Month => meter_core::Month::parse(period).is_some(),
    };
    if !ok_period {
        return Err(SkipReason::Missing(period_attr));
    }
    Ok(Change {
        event_id: record.event_id.clone(),
        user: user.to_string(),
        tag,
        kind,
        period: period.to_string(),
        old: cost(&old)?,
        new: cost(&new)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::event::dynamodb::Event;

    fn event(new: Value, old: Value) -> Event {
        serde_json::from_value(serde_json::json!({"Records": [{
            "eventID": "e1", "eventName": "MODIFY", "awsRegion": "us-east-1",
            "dynamodb": {"ApproximateCreationDateTime": 1.79e9, "Keys": {}, "NewImage": new,
                "OldImage": old, "SequenceNumber": "100", "SizeBytes": 10, "StreamViewType": "NEW_AND_OLD_IMAGES"}
        }]}))
        .unwrap()
    }

    #[test]
    fn a_new_user_day_item_has_an_old_spend_of_zero() {
        let e = event(
            serde_json::json!({"kind": {"S": "user_day"}, "user": {"S": "alice"}, "day": {"S": "2026-11-01"}, "cost_usd": {"N": "1.25"}}),
            serde_json::json!({}),
        );
        let c = parse(&e.records[0]).unwrap();
        assert_eq!(
            (c.kind, c.user.as_str(), c.period.as_str()),
            (PeriodKind::Day, "alice", "2026-11-01")
        );
        assert_eq!((c.old, c.new), (Usd::ZERO, "1.25".parse().unwrap()));
        assert_eq!(c.month(), "2026-11");
    }

    #[test]
    fn a_tag_month_change_carries_its_tag_and_value_and_no_user() {
        let e = event(
            serde_json::json!({"kind": {"S": "tag_month"}, "tag": {"S": "team"}, "value": {"S": "pay#<b>"}, "month": {"S": "2026-11"}, "cost_usd": {"N": "3"}}),
            serde_json::json!({"cost_usd": {"N": "2.5"}}),
        );
        let c = parse(&e.records[0]).unwrap();
        assert_eq!(c.tag, Some(("team".to_string(), "pay#<b>".to_string())));
        assert_eq!((c.kind, c.user.as_str()), (PeriodKind::Month, ""));
        assert_eq!(
            (c.old, c.new),
            ("2.5".parse().unwrap(), "3".parse().unwrap())
        );
    }

    #[test]
    fn a_tag_model_day_change_is_a_day_change_of_its_tag_value() {
        let e = event(
            serde_json::json!({"kind": {"S": "tag_model_day"}, "tag": {"S": "team"}, "value": {"S": "pay"},
                "model": {"S": "m"}, "day": {"S": "2026-11-20"}, "cost_usd": {"N": "0.5"}}),
            serde_json::json!({}),
        );
        let c = parse(&e.records[0]).unwrap();
        assert_eq!(c.tag, Some(("team".to_string(), "pay".to_string())));
        assert_eq!(
            (c.kind, c.period.as_str(), c.user.as_str()),
            (PeriodKind::Day, "2026-11-20", "")
        );
        assert_eq!((c.old, c.new), (Usd::ZERO, "0.5".parse().unwrap()));
        let e = event(
            serde_json::json!({"kind": {"S": "tag_model_day"}, "tag": {"S": "team"}, "value": {"S": "pay"}}),
            serde_json::json!({}),
        );
        assert_eq!(parse(&e.records[0]), Err(SkipReason::Missing("day")));
    }

    #[test]
    fn other_kinds_and_bad_costs_are_skipped_with_a_reason() {
        let e = event(
            serde_json::json!({"kind": {"S": "model_day"}}),
            serde_json::json!({}),
        );
        assert_eq!(
            parse(&e.records[0]),
            Err(SkipReason::OtherKind("model_day".into()))
        );
        let e = event(
            serde_json::json!({"kind": {"S": "user_month"}, "user": {"S": "a"}, "month": {"S": "2026-11"}, "cost_usd": {"N": "-1"}}),
            serde_json::json!({}),
        );
        assert!(matches!(parse(&e.records[0]), Err(SkipReason::BadCost(_))));
    }
}
