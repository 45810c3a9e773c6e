//! The ingest Lambda: set up logging, read config, build the client once,
//! load the price table (PRICE_TABLE_PATH, else the newest stored one, else
//! the built-in; re-checked at most every 10 minutes), then hand every event
//! to [`ingest::handler`].

use std::time::Instant;

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use meter_core::Meter;
use meter_store::prices::{LivePrices, PriceSource, DEFAULT_RECHECK};
use meter_store::{Config, DynamoDbUsageStore};

#[tokio::main]
async fn main() -> Result<(), Error> {
    // JSON or text per the function's LoggingConfig (AWS_LAMBDA_LOG_FORMAT).
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env()?;
    // Validates PRICE_TABLE_PATH with a clear error; the table itself comes from `PriceSource`.
    let meter = config.meter()?;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let store = DynamoDbUsageStore::new(aws_call_log::client(&sdk, "ingest"), &config.table);
    // The marker switch-over instant (docs/data-model.md): read, or set on a
    // table that has none, once at start.
    meter_store::UsageStore::buckets_since(
        &store,
        time::OffsetDateTime::now_utc().unix_timestamp(),
    )
    .await?;
    let (source, table) = PriceSource::start(
        config.price_table_path.as_deref(),
        store.clone(),
        DEFAULT_RECHECK,
        Instant::now(),
    )
    .await?;
    let settings = config.commit_settings();
    let live = LivePrices::new(source, table, move |prices| ingest::handler::State {
        store: store.clone(),
        meter: Meter {
            prices,
            ..meter.clone()
        },
        settings: settings.clone(),
    });
    let live = &live;
    let function_name =
        std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "local".into());
    let function_name = function_name.as_str();
    run(service_fn(
        move |event: LambdaEvent<Box<serde_json::value::RawValue>>| async move {
            let state = live.get(Instant::now()).await;
            let result = ingest::handler::handle(
                &state,
                event.payload.get().as_bytes(),
                &event.context.request_id,
            )
            .await;
            println!(
                "{}",
                live.emf_line(function_name, time::OffsetDateTime::now_utc())
                    .await
            );
            result
        },
    ))
    .await
}
