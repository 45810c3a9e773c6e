//! The budget-alerts Lambda: set up logging, read the environment, build
//! the clients once, then hand every stream batch to [`budget_alerts::handler`].
//!
//! Environment: `USAGE_TABLE` (default `bedrock-usage`), `ALERT_TOPIC_ARN`
//! (required), `RUST_LOG`, and optionally `ALERT_CLAIM_LEASE_SECONDS`
//! (default 30).

use std::time::Duration;

use aws_lambda_events::event::dynamodb::Event;
use aws_lambda_events::event::streams::DynamoDbEventResponse;
use budget_alerts::dynamo::DynamoDbAlertStore;
use budget_alerts::handler::{emf_line, handle, Settings, State};
use budget_alerts::sns::SnsNotifier;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use meter_store::Config;

fn settings_from_env() -> Result<Settings, Error> {
    let mut settings = Settings::default();
    if let Ok(v) = std::env::var("ALERT_CLAIM_LEASE_SECONDS") {
        match v.trim().parse::<u64>() {
            Ok(secs) if (1..=600).contains(&secs) => settings.lease = Duration::from_secs(secs),
            _ => {
                return Err(format!(
                    "ALERT_CLAIM_LEASE_SECONDS = `{v}` is invalid: whole seconds from 1 to 600 (default 30; longer than an SNS publish can take)"
                )
                .into())
            }
        }
    }
    Ok(settings)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env()?;
    let topic_arn = std::env::var("ALERT_TOPIC_ARN")
        .ok()
        .filter(|v| v.starts_with("arn:"))
        .ok_or(
            "ALERT_TOPIC_ARN must be set to the SNS topic's ARN (arn:aws:sns:REGION:ACCOUNT:NAME)",
        )?;
    let settings = settings_from_env()?;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let state = State {
        store: DynamoDbAlertStore::new(aws_call_log::client(&sdk, "budget-alerts"), &config.table),
        notifier: SnsNotifier::new(aws_call_log::client(&sdk, "budget-alerts"), topic_arn),
        settings,
    };
    let function_name =
        std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "local".into());
    let (state, function_name) = (&state, function_name.as_str());
    run(service_fn(move |event: LambdaEvent<Event>| async move {
        let (response, summary): (DynamoDbEventResponse, _) = handle(
            state,
            &event.payload,
            &event.context.request_id,
            event.context.deadline,
        )
        .await;
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        println!("{}", emf_line(&summary, function_name, now_ms));
        Ok::<_, Error>(response)
    }))
    .await
}
