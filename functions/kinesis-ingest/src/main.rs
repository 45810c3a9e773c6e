//! The Kinesis ingest Lambda: set up logging, read config, build the client
//! once, then hand every batch to [`kinesis_ingest::handler`].

// The runtime's service stack around the KinesisEvent future is deep.
#![recursion_limit = "256"]

use aws_lambda_events::event::kinesis::KinesisEvent;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use meter_store::{Config, DynamoDbUsageStore};

#[tokio::main]
async fn main() -> Result<(), Error> {
    // JSON or text per the function's LoggingConfig (AWS_LAMBDA_LOG_FORMAT).
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env()?;
    let meter = config.meter()?;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let store =
        DynamoDbUsageStore::new(aws_call_log::client(&sdk, "kinesis-ingest"), &config.table);
    let state = kinesis_ingest::handler::State {
        store,
        meter,
        settings: config.commit_settings(),
    };
    let state = &state;
    run(service_fn(
        move |event: LambdaEvent<KinesisEvent>| async move {
            kinesis_ingest::handler::handle(state, &event.payload, &event.context.request_id).await
        },
    ))
    .await
}
