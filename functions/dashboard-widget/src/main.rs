//! The dashboard-widget Lambda: set up logging, read config, build the
//! client once, then render each console event with
//! [`dashboard_widget::handle`].

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use meter_store::{Config, DynamoDbUsageStore};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env()?;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let store = DynamoDbUsageStore::new(
        aws_call_log::client::<aws_sdk_dynamodb::Client>(&sdk, "dashboard-widget"),
        &config.table,
    );
    let store = &store;
    run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            let html =
                dashboard_widget::handle(store, &event.payload, time::OffsetDateTime::now_utc())
                    .await;
            tracing::info!(bytes = html.len(), "widget rendered");
            Ok::<String, Error>(html)
        },
    ))
    .await
}
