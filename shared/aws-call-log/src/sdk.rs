//! The SDK crates this workspace uses, each behind a feature of its own.

use crate::Recorder;

/// An SDK config builder that can take the [`Recorder`] as an interceptor.
pub trait Recordable: Sized {
    fn with_recorder(self, recorder: Recorder) -> Self;
}

/// An SDK client that [`crate::client`] can build with the recorder.
pub trait RecordedClient: Sized {
    fn recorded(sdk: &aws_types::SdkConfig, component: &str) -> Self;
}

#[allow(unused_macros)]
macro_rules! sdk {
    ($feature:literal, $krate:ident) => {
        #[cfg(feature = $feature)]
        impl Recordable for $krate::config::Builder {
            fn with_recorder(self, recorder: Recorder) -> Self {
                self.interceptor(recorder)
            }
        }

        #[cfg(feature = $feature)]
        impl RecordedClient for $krate::Client {
            fn recorded(sdk: &aws_types::SdkConfig, component: &str) -> Self {
                $krate::Client::from_conf(
                    crate::install($krate::config::Builder::from(sdk), component).build(),
                )
            }
        }
    };
}

sdk!("dynamodb", aws_sdk_dynamodb);
sdk!("dynamodbstreams", aws_sdk_dynamodbstreams);
sdk!("kinesis", aws_sdk_kinesis);
sdk!("s3", aws_sdk_s3);
sdk!("sns", aws_sdk_sns);
sdk!("sqs", aws_sdk_sqs);
