//! # aws-call-log: which AWS calls a component really makes
//!
//! DynamoDB Local, moto and the test fakes check no IAM, so a policy that
//! lacks a permission (a Query on an index, say) passes every test and fails
//! on AWS. This crate records, per SDK request, what IAM will evaluate:
//!
//! ```json
//! {"component":"budget-alerts","service":"dynamodb","operation":"Query","resource":"bedrock-usage/index/gsi1"}
//! ```
//!
//! and `infra/iam_check.py` proves the templates' roles (and the operator
//! policy for the CLI) allow every recorded call and nothing unused.
//!
//! - [`ENV_VAR`]: `BEDROCK_METER_CALL_LOG=/path/file.jsonl` turns recording
//!   on. Unset (production), [`install`] and [`client`] add nothing to the
//!   client: no interceptor, no cost.
//! - [`install`] / [`client`]: one call where a client is built, named after
//!   the component (`ingest`, `budget-alerts`, `cli report`, ...).
//!   [`install_with`] covers an SDK this crate has no feature for.
//! - [`parse`]: the pure part, from an HTTP request to [`Call`]s (unit-tested).
//!
//! Lines are appended with `O_APPEND`, one `write` per request, so several
//! processes can share one file without interleaving. Recorded resources are
//! table and index names, stream, topic and queue ARNs or URLs, and S3
//! bucket/key names: never item contents.

pub mod parse;
mod recorder;
mod sdk;

pub use parse::{calls_of, Call, RequestView};
pub use recorder::{CallLogError, Recorder};
pub use sdk::{Recordable, RecordedClient};

/// The environment variable naming the JSON-lines file to append to.
pub const ENV_VAR: &str = "BEDROCK_METER_CALL_LOG";

/// The component label of clients that only set up or inspect test data; the
/// IAM check ignores their calls.
pub const TEST_HARNESS: &str = "test-harness";

/// `builder` with the recorder when [`ENV_VAR`] is set, else `builder`
/// untouched. If the file cannot be opened every call made through the client
/// fails with an error naming the file (a silent gap would pass the check).
pub fn install<B: Recordable>(builder: B, component: &str) -> B {
    install_with(builder, component, B::with_recorder)
}

/// [`install`] for any SDK config builder:
/// `install_with(builder, "cli redrive", |b, r| b.interceptor(r))`.
pub fn install_with<B>(builder: B, component: &str, add: impl FnOnce(B, Recorder) -> B) -> B {
    match Recorder::from_env(component) {
        Some(recorder) => add(builder, recorder),
        None => builder,
    }
}

/// A client of type `C` from the shared configuration, recorded as
/// `component` when [`ENV_VAR`] is set:
/// `DynamoDbUsageStore::new(aws_call_log::client(&sdk, "ingest"), table)`.
pub fn client<C: RecordedClient>(sdk: &aws_types::SdkConfig, component: &str) -> C {
    C::recorded(sdk, component)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recorder_is_installed_only_when_the_variable_names_a_file() {
        let path =
            std::env::temp_dir().join(format!("aws-call-log-env-{}.jsonl", std::process::id()));
        let installed = |component| install_with(None, component, |_, r| Some(r));
        std::env::remove_var(ENV_VAR);
        assert!(installed("ingest").is_none());
        std::env::set_var(ENV_VAR, "");
        assert!(installed("ingest").is_none(), "an empty value is unset");
        std::env::set_var(ENV_VAR, &path);
        let recorder = installed("ingest");
        std::env::remove_var(ENV_VAR);
        let _ = std::fs::remove_file(&path);
        assert!(recorder.is_some());
    }
}
