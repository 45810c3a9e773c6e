//! The interceptor: after each request is serialized, append its calls.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};

use crate::parse::{calls_of, RequestView};

/// Why calls could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum CallLogError {
    #[error(
        "{var}={path} cannot be opened for appending ({source}): point it at a writable file or unset it",
        var = crate::ENV_VAR,
        path = path.display()
    )]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot append to the AWS call log {} ({source})", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("a short write to the AWS call log {}: {written} of {len} bytes", path.display())]
    ShortWrite {
        path: PathBuf,
        written: usize,
        len: usize,
    },
}

/// An SDK interceptor appending one JSON line per call to a file opened with
/// `O_APPEND`. Cheap to clone (the file is shared).
#[derive(Debug, Clone)]
pub struct Recorder {
    component: Arc<str>,
    path: Arc<Path>,
    file: Result<Arc<File>, Arc<str>>,
}

impl Recorder {
    /// The recorder for `component` when [`crate::ENV_VAR`] names a file.
    pub fn from_env(component: &str) -> Option<Recorder> {
        let path = std::env::var_os(crate::ENV_VAR).filter(|p| !p.is_empty())?;
        Some(Recorder::to_file(PathBuf::from(path), component))
    }

    /// A recorder appending to `path`. A file that cannot be opened makes
    /// every call through the client fail with [`CallLogError::Open`].
    pub fn to_file(path: impl Into<PathBuf>, component: &str) -> Recorder {
        let path: PathBuf = path.into();
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .map(Arc::new)
            .map_err(|source| {
                CallLogError::Open {
                    path: path.clone(),
                    source,
                }
                .to_string()
                .into()
            });
        Recorder {
            component: component.into(),
            path: path.into(),
            file,
        }
    }

    /// Appends `text` in one `write` (with `O_APPEND` the kernel places it
    /// whole at the end, so concurrent writers do not interleave).
    fn append(&self, text: &str) -> Result<(), BoxError> {
        let file = self.file.as_ref().map_err(|e| e.to_string())?;
        let written = (&**file)
            .write(text.as_bytes())
            .map_err(|source| CallLogError::Write {
                path: self.path.to_path_buf(),
                source,
            })?;
        if written != text.len() {
            return Err(CallLogError::ShortWrite {
                path: self.path.to_path_buf(),
                written,
                len: text.len(),
            }
            .into());
        }
        Ok(())
    }
}

/// Marks an operation whose calls are recorded (retries are not recorded again).
#[derive(Debug, Clone)]
struct Recorded;

impl Storable for Recorded {
    type Storer = StoreReplace<Self>;
}

impl Intercept for Recorder {
    fn name(&self) -> &'static str {
        "aws-call-log"
    }

    /// Before transmit, not after serialization: only then does the URI hold
    /// the resolved endpoint (an S3 bucket is in the host or the path). Once per
    /// operation: retries are not recorded again.
    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if cfg.load::<Recorded>().is_some() {
            return Ok(());
        }
        cfg.interceptor_state().store_put(Recorded);
        let request = context.request();
        let metadata = cfg.load::<Metadata>();
        let view = RequestView {
            service: metadata.map(Metadata::service),
            operation: metadata.map(Metadata::name),
            target: request.headers().get("x-amz-target"),
            uri: request.uri(),
            body: request.body().bytes(),
        };
        let lines: String = calls_of(&self.component, &view)
            .iter()
            .map(|c| c.to_json_line())
            .collect();
        self.append(&lines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};

    /// A client whose requests go to a closed loopback port: the request is
    /// serialized (and recorded) and then fails to connect.
    fn client(recorder: Recorder) -> aws_sdk_dynamodb::Client {
        let conf = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("k", "s", None, None, "test"))
            .endpoint_url("http://127.0.0.1:9")
            .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled())
            .interceptor(recorder)
            .build();
        aws_sdk_dynamodb::Client::from_conf(conf)
    }

    fn temp_file(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!(
            "aws-call-log-{name}-{}-{:?}.jsonl",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_file(&p);
        p
    }

    #[tokio::test]
    async fn a_real_client_records_its_query_on_an_index_before_sending_it() {
        let path = temp_file("query");
        let ddb = client(Recorder::to_file(&path, "budget-alerts"));
        let sent = ddb
            .query()
            .table_name("usage")
            .index_name("gsi1")
            .key_condition_expression("gsi1pk = :p")
            .expression_attribute_values(
                ":p",
                aws_sdk_dynamodb::types::AttributeValue::S("MONTH#2026-11".into()),
            )
            .send()
            .await;
        assert!(sent.is_err(), "nothing listens on port 9");
        let text = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            lines,
            vec![
                serde_json::json!({"component": "budget-alerts", "service": "dynamodb",
                "operation": "Query", "resource": "usage/index/gsi1"})
            ]
        );
    }

    /// Counts transmit attempts.
    #[derive(Debug, Default, Clone)]
    struct Attempts(Arc<std::sync::atomic::AtomicUsize>);

    impl Intercept for Attempts {
        fn name(&self) -> &'static str {
            "attempts"
        }
        fn read_before_transmit(
            &self,
            _: &BeforeTransmitInterceptorContextRef<'_>,
            _: &RuntimeComponents,
            _: &mut ConfigBag,
        ) -> Result<(), BoxError> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_retried_call_is_recorded_once() {
        let path = temp_file("retry");
        let attempts = Attempts::default();
        let conf = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("k", "s", None, None, "test"))
            .endpoint_url("http://127.0.0.1:9")
            .retry_config(
                aws_sdk_dynamodb::config::retry::RetryConfig::standard()
                    .with_max_attempts(3)
                    .with_initial_backoff(std::time::Duration::from_millis(1)),
            )
            .interceptor(Recorder::to_file(&path, "ingest"))
            .interceptor(attempts.clone())
            .build();
        let ddb = aws_sdk_dynamodb::Client::from_conf(conf);
        let err = ddb.list_tables().send().await.unwrap_err();
        let text = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(
            matches!(err, aws_sdk_dynamodb::error::SdkError::DispatchFailure(_)),
            "connection refused, retried: {err:?}"
        );
        assert_eq!(attempts.0.load(std::sync::atomic::Ordering::SeqCst), 3);
        assert_eq!(text.lines().count(), 1, "{text}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_recorders_on_one_file_write_whole_lines() {
        let path = temp_file("concurrent");
        let mut tasks = Vec::new();
        for i in 0..8 {
            let ddb = client(Recorder::to_file(&path, &format!("c{i}")));
            tasks.push(tokio::spawn(async move {
                for _ in 0..10 {
                    let _ = ddb
                        .get_item()
                        .table_name(format!("table-{i}-{}", "x".repeat(200)))
                        .key("pk", aws_sdk_dynamodb::types::AttributeValue::S("k".into()))
                        .send()
                        .await;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(text.lines().count(), 80);
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let c = v["component"].as_str().unwrap();
            assert!(v["resource"]
                .as_str()
                .unwrap()
                .starts_with(&format!("table-{}-", &c[1..])));
        }
    }

    #[tokio::test]
    async fn an_unwritable_log_fails_the_call_with_the_variable_named() {
        let ddb = client(Recorder::to_file(
            "/nonexistent-dir/calls.jsonl",
            "test-harness",
        ));
        let err = ddb.list_tables().send().await.unwrap_err();
        let text = aws_smithy_types::error::display::DisplayErrorContext(&err).to_string();
        assert!(text.contains(crate::ENV_VAR), "{text}");
        assert!(text.contains("/nonexistent-dir/calls.jsonl"), "{text}");
    }
}
