//! [`Notifier`] on an SNS topic.

use aws_sdk_sns::error::DisplayErrorContext;
use aws_sdk_sns::types::MessageAttributeValue;
use aws_sdk_sns::Client;

use crate::alert::{render, Alert};
use crate::handler::{Notifier, PublishError};

/// Publishes alerts to one topic. A FIFO topic (ARN ending in `.fifo`) also
/// gets `MessageGroupId` (the alert's scope) and `MessageDeduplicationId`
/// (the alert marker's stable id), which makes SNS drop a re-publish of the
/// same crossing within its 5-minute deduplication window.
#[derive(Debug, Clone)]
pub struct SnsNotifier {
    client: Client,
    topic_arn: String,
}

impl SnsNotifier {
    pub fn new(client: Client, topic_arn: impl Into<String>) -> Self {
        SnsNotifier {
            client,
            topic_arn: topic_arn.into(),
        }
    }

    pub fn is_fifo(&self) -> bool {
        self.topic_arn.ends_with(".fifo")
    }
}

/// A deduplication id SNS accepts: at most 128 characters of
/// `[A-Za-z0-9_-]` (the claim id is `<request id>/<n>/...`).
fn dedup_token(id: &str) -> String {
    let t: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    t.chars().take(128).collect()
}

impl Notifier for SnsNotifier {
    async fn publish(&self, alert: &Alert, dedup_id: &str) -> Result<String, PublishError> {
        let r = render(alert);
        let mut req = self
            .client
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(r.subject)
            .message(r.body);
        for (name, data_type, value) in r.attributes {
            let v = MessageAttributeValue::builder()
                .data_type(data_type)
                .string_value(value)
                .build()
                .map_err(|e| PublishError(e.to_string()))?;
            req = req.message_attributes(name, v);
        }
        if self.is_fifo() {
            req = req
                .message_group_id(dedup_token(alert.user().unwrap_or("organisation")))
                .message_deduplication_id(dedup_token(dedup_id));
        }
        let out = req
            .send()
            .await
            .map_err(|e| PublishError(DisplayErrorContext(&e).to_string()))?;
        Ok(out.message_id().unwrap_or_default().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_tokens_are_short_and_use_only_allowed_characters() {
        let t = dedup_token(&format!("4f1c-a/3/{}", "x".repeat(300)));
        assert!(t.len() <= 128);
        assert!(t
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert!(t.starts_with("4f1c-a_3_"));
    }
}
