//! The ingest Lambda: set up logging, read config, build the client once,
//! then hand every event to [`ingest::handler`].

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use meter_store::{Config, DynamoDbUsageStore};

#[tokio::main]
async fn main() -> Result<(), Error> {
    // JSON or text per the function's LoggingConfig (AWS_LAMBDA_LOG_FORMAT).
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env()?;
    let meter = config.meter()?;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let store = DynamoDbUsageStore::new(aws_call_log::client(&sdk, "ingest"), &config.table);
    let state = ingest::handler::State {
        store,
        meter,
        settings: config.commit_settings(),
    };
    let state = &state;
    run(service_fn(
        move |event: LambdaEvent<Box<serde_json::value::RawValue>>| async move {
            ingest::handler::handle(
                state,
                event.payload.get().as_bytes(),
                &event.context.request_id,
            )
            .await
        },
    ))
    .await
}
