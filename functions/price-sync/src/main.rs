//! The price-sync Lambda (daily EventBridge schedule): read config, build
//! the client once, then run [`price_sync::run`] per invocation.

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use meter_core::pricelist::map::PriceMap;
use meter_store::{Config, DynamoDbUsageStore};
use price_sync::fetch::PriceListEndpoint;
use price_sync::{Settings, SyncJob};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env_using(&["USAGE_TABLE"])?;
    let settings = Settings::from_lookup(|k| std::env::var(k).ok())?;
    let job = SyncJob {
        regions: settings.regions,
        map: PriceMap::builtin()?,
    };
    let endpoint = PriceListEndpoint {
        base_url: settings.price_list_url,
    };
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let store = DynamoDbUsageStore::new(aws_call_log::client(&sdk, "price-sync"), &config.table);
    let (store, endpoint, job) = (&store, &endpoint, &job);
    run(service_fn(
        move |_: LambdaEvent<serde_json::Value>| async move {
            price_sync::run(store, endpoint, job, time::OffsetDateTime::now_utc())
                .await
                .map_err(|e| Error::from(format!("{e:#}")))
        },
    ))
    .await
}
