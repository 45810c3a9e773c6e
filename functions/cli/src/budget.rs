//! `bedrock-meter budget` (issue 5): placeholder, being written.

use std::process::ExitCode;

use clap::Args;
use meter_store::Config;

#[derive(Args)]
pub struct BudgetArgs {
    #[arg(value_name = "ACTION")]
    action: String,
}

pub async fn run(_config: &Config, args: BudgetArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("budget {} is not implemented yet", args.action)
}
