//! `bedrock-meter backfill` (issue 8): placeholder, being written.

use std::process::ExitCode;

use clap::Args;
use meter_store::Config;

#[derive(Args)]
pub struct BackfillArgs {
    /// s3://BUCKET/PREFIX of Bedrock's own S3 delivery.
    #[arg(value_name = "S3_URL")]
    source: String,
}

pub async fn run(_config: &Config, args: BackfillArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("backfill of {} is not implemented yet", args.source)
}
