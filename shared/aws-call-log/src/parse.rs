//! From one serialized SDK request to the calls IAM evaluates: pure, no I/O.
//!
//! The resource is what an IAM policy's `Resource` must match:
//!
//! | service | resource |
//! |---|---|
//! | DynamoDB | `TableName`, plus `/index/IndexName` when the request names an index; every table of a `TransactWriteItems`, `TransactGetItems`, `BatchWriteItem` or `BatchGetItem` (one call per table, with the item actions in `items`) |
//! | DynamoDB Streams | `StreamArn` (`GetRecords` carries only a shard iterator: `*`) |
//! | SNS | `TopicArn` (or `TargetArn`) |
//! | SQS | `QueueUrl` |
//! | S3 | `bucket/key`, or `bucket` for bucket-level operations such as `ListObjectsV2` |
//! | Kinesis | `StreamARN`, else `StreamName` |
//!
//! `*` when the request names no resource (`ListTables`, say).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// The parts of a request the parser reads.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestView<'a> {
    /// The SDK's service name from the config bag's `Metadata` (`DynamoDB`, `SNS`, `S3`, ...).
    pub service: Option<&'a str>,
    /// The SDK's operation name from `Metadata` (`Query`, `Publish`, ...).
    pub operation: Option<&'a str>,
    /// The `X-Amz-Target` header of JSON protocols (`DynamoDB_20120810.Query`).
    pub target: Option<&'a str>,
    pub uri: &'a str,
    /// The body, when it is in memory (streaming bodies are not read).
    pub body: Option<&'a [u8]>,
}

/// One call as IAM sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub component: String,
    /// The IAM service prefix: `dynamodb` (DynamoDB Streams too), `sns`, `sqs`, `s3`, `kinesis`.
    pub service: String,
    /// The API operation (`Query`, `TransactWriteItems`, `Publish`, `GetObject`).
    pub operation: String,
    pub resource: String,
    /// The item actions of a transaction or batch on this resource (`Put`,
    /// `Update`, `Delete`, `ConditionCheck`, `Get`): IAM authorises
    /// `TransactWriteItems` per item action. Empty otherwise.
    pub items: Vec<String>,
}

impl Call {
    /// One JSON object and a newline.
    pub fn to_json_line(&self) -> String {
        let mut v = serde_json::json!({
            "component": self.component,
            "service": self.service,
            "operation": self.operation,
            "resource": self.resource,
        });
        if !self.items.is_empty() {
            v["items"] = serde_json::json!(self.items);
        }
        let mut line = v.to_string();
        line.push('\n');
        line
    }
}

/// The calls one request makes: one, or one per table for multi-table
/// DynamoDB operations.
pub fn calls_of(component: &str, req: &RequestView<'_>) -> Vec<Call> {
    let (target_service, target_operation) = match req.target.and_then(|t| t.split_once('.')) {
        Some((svc, op)) => (Some(svc.split('_').next().unwrap_or(svc)), Some(op)),
        None => (None, None),
    };
    let form = form_body(req.body);
    let service = iam_service(req.service.or(target_service).unwrap_or("unknown"));
    let operation = req
        .operation
        .or(target_operation)
        .or(form.get("Action").map(String::as_str))
        .unwrap_or("unknown")
        .to_string();
    let call = |resource: String, items: Vec<String>| Call {
        component: component.to_string(),
        service: service.clone(),
        operation: operation.clone(),
        resource,
        items,
    };
    let json: Option<Value> = req.body.and_then(|b| serde_json::from_slice(b).ok());
    let field = |name: &str| -> Option<String> {
        json.as_ref()
            .and_then(|j| j.get(name))
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| form.get(name).cloned())
    };
    match service.as_str() {
        "dynamodb" => {
            let tables = json.as_ref().map(dynamodb_tables).unwrap_or_default();
            if !tables.is_empty() {
                return tables
                    .into_iter()
                    .map(|(table, items)| call(table, items.into_iter().collect()))
                    .collect();
            }
            let resource = match (field("TableName"), field("IndexName")) {
                (Some(t), Some(i)) => format!("{t}/index/{i}"),
                (Some(t), None) => t,
                _ => field("StreamArn")
                    .or_else(|| field("ResourceArn"))
                    .unwrap_or_else(|| "*".into()),
            };
            vec![call(resource, vec![])]
        }
        "sns" => vec![call(
            field("TopicArn")
                .or_else(|| field("TargetArn"))
                .unwrap_or_else(|| "*".into()),
            vec![],
        )],
        "sqs" => vec![call(
            field("QueueUrl").unwrap_or_else(|| "*".into()),
            vec![],
        )],
        "kinesis" => vec![call(
            field("StreamARN")
                .or_else(|| field("StreamName"))
                .unwrap_or_else(|| "*".into()),
            vec![],
        )],
        "s3" => vec![call(s3_resource(req.uri), vec![])],
        _ => vec![call("*".into(), vec![])],
    }
}

/// `DynamoDB Streams` → `dynamodb` (IAM's prefix for both), `AmazonSQS` →
/// `sqs`, `SNS` → `sns`.
fn iam_service(name: &str) -> String {
    let name = name
        .strip_prefix("Amazon")
        .or_else(|| name.strip_prefix("AWS"))
        .unwrap_or(name);
    let flat: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase();
    match flat.as_str() {
        "dynamodbstreams" => "dynamodb".into(),
        // The SDK says "Cost Explorer"; IAM's prefix is `ce`.
        "costexplorer" => "ce".into(),
        _ => flat,
    }
}

/// Tables of `TransactItems` / `RequestItems`, each with its item actions.
fn dynamodb_tables(body: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    if let Some(items) = body.get("TransactItems").and_then(Value::as_array) {
        for item in items.iter().filter_map(Value::as_object) {
            for (action, spec) in item {
                if let Some(table) = spec.get("TableName").and_then(Value::as_str) {
                    out.entry(table.to_string())
                        .or_default()
                        .insert(action.clone());
                }
            }
        }
    }
    if let Some(tables) = body.get("RequestItems").and_then(Value::as_object) {
        for (table, requests) in tables {
            let entry = out.entry(table.clone()).or_default();
            // BatchWriteItem: [{"PutRequest": ..}, {"DeleteRequest": ..}];
            // BatchGetItem: {"Keys": [..]} (no item actions of its own).
            for request in requests.as_array().into_iter().flatten() {
                for key in request.as_object().into_iter().flat_map(|o| o.keys()) {
                    if let Some(action) = key.strip_suffix("Request") {
                        entry.insert(action.to_string());
                    }
                }
            }
        }
    }
    out
}

/// `bucket/key` (or `bucket`) from a path-style or virtual-hosted-style URI.
fn s3_resource(uri: &str) -> String {
    let rest = uri.split_once("://").map_or(uri, |(_, r)| r);
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let host = authority.rsplit('@').next().unwrap_or(authority);
    let host = host.split(':').next().unwrap_or(host);
    let path = path.split(['?', '#']).next().unwrap_or(path);
    let path = percent_decode(path.trim_start_matches('/'));
    let virtual_bucket = if host.ends_with(".amazonaws.com") || host.ends_with(".amazonaws.com.cn")
    {
        host.rfind(".s3.")
            .or_else(|| host.rfind(".s3-"))
            .map(|i| &host[..i])
    } else {
        None
    };
    let joined = match virtual_bucket {
        Some(bucket) if path.is_empty() => bucket.to_string(),
        Some(bucket) => format!("{bucket}/{path}"),
        // Path style: `/bucket/?list-type=2` names the bucket alone.
        None => match path.strip_suffix('/') {
            Some(bucket) if !bucket.contains('/') => bucket.to_string(),
            _ => path,
        },
    };
    if joined.is_empty() {
        "*".into()
    } else {
        joined
    }
}

/// Decoded `application/x-www-form-urlencoded` pairs (the Query protocol of SNS).
fn form_body(body: Option<&[u8]>) -> BTreeMap<String, String> {
    let Some(text) = body.and_then(|b| std::str::from_utf8(b).ok()) else {
        return BTreeMap::new();
    };
    if text.trim_start().starts_with('{') {
        return BTreeMap::new();
    }
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                percent_decode(&k.replace('+', " ")),
                percent_decode(&v.replace('+', " ")),
            )
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ddb(operation: &str, body: &str) -> Vec<Call> {
        calls_of(
            "c",
            &RequestView {
                service: Some("DynamoDB"),
                operation: Some(operation),
                target: Some("DynamoDB_20120810.Ignored"),
                uri: "https://dynamodb.us-east-1.amazonaws.com/",
                body: Some(body.as_bytes()),
            },
        )
    }

    fn resources(calls: &[Call]) -> Vec<(&str, &str, Vec<&str>)> {
        calls
            .iter()
            .map(|c| {
                (
                    c.operation.as_str(),
                    c.resource.as_str(),
                    c.items.iter().map(String::as_str).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn a_query_on_an_index_names_the_table_and_the_index() {
        let calls = ddb(
            "Query",
            r#"{"TableName":"usage","IndexName":"gsi1","KeyConditionExpression":"gsi1pk = :p"}"#,
        );
        assert_eq!(
            resources(&calls),
            vec![("Query", "usage/index/gsi1", vec![])]
        );
        assert_eq!(calls[0].service, "dynamodb");
    }

    #[test]
    fn a_query_on_the_table_names_the_table_only() {
        let calls = ddb("Query", r#"{"TableName":"usage","Limit":5}"#);
        assert_eq!(resources(&calls), vec![("Query", "usage", vec![])]);
    }

    #[test]
    fn a_transaction_lists_every_table_with_its_item_actions() {
        let body = r#"{"TransactItems":[
            {"Put":{"TableName":"a","Item":{}}},
            {"Update":{"TableName":"a","Key":{}}},
            {"ConditionCheck":{"TableName":"b","Key":{}}},
            {"Update":{"TableName":"a","Key":{}}}]}"#;
        assert_eq!(
            resources(&ddb("TransactWriteItems", body)),
            vec![
                ("TransactWriteItems", "a", vec!["Put", "Update"]),
                ("TransactWriteItems", "b", vec!["ConditionCheck"]),
            ]
        );
    }

    #[test]
    fn a_batch_write_lists_every_table_with_its_request_kinds() {
        let body = r#"{"RequestItems":{
            "t1":[{"PutRequest":{"Item":{}}},{"DeleteRequest":{"Key":{}}}],
            "t2":[{"PutRequest":{"Item":{}}}]}}"#;
        assert_eq!(
            resources(&ddb("BatchWriteItem", body)),
            vec![
                ("BatchWriteItem", "t1", vec!["Delete", "Put"]),
                ("BatchWriteItem", "t2", vec!["Put"]),
            ]
        );
    }

    #[test]
    fn a_stream_call_names_the_stream_and_list_tables_names_nothing() {
        let arn = "arn:aws:dynamodb:us-east-1:1:table/t/stream/2026-11-30T00:00:00.000";
        let calls = calls_of(
            "c",
            &RequestView {
                service: Some("DynamoDB Streams"),
                operation: Some("DescribeStream"),
                uri: "https://streams.dynamodb.us-east-1.amazonaws.com/",
                body: Some(format!(r#"{{"StreamArn":"{arn}"}}"#).as_bytes()),
                ..Default::default()
            },
        );
        assert_eq!(calls[0].service, "dynamodb");
        assert_eq!(calls[0].resource, arn);
        assert_eq!(
            resources(&ddb("ListTables", "{}")),
            vec![("ListTables", "*", vec![])]
        );
    }

    #[test]
    fn sdk_service_names_become_iam_prefixes() {
        assert_eq!(iam_service("DynamoDB"), "dynamodb");
        assert_eq!(iam_service("DynamoDB Streams"), "dynamodb");
        assert_eq!(iam_service("Cost Explorer"), "ce");
        assert_eq!(iam_service("SQS"), "sqs");
    }

    #[test]
    fn without_metadata_the_target_header_names_service_and_operation() {
        let calls = calls_of(
            "c",
            &RequestView {
                target: Some("DynamoDB_20120810.GetItem"),
                uri: "http://127.0.0.1:8000/",
                body: Some(br#"{"TableName":"t","Key":{}}"#),
                ..Default::default()
            },
        );
        assert_eq!(
            (calls[0].service.as_str(), calls[0].operation.as_str()),
            ("dynamodb", "GetItem")
        );
        let sqs = calls_of(
            "c",
            &RequestView {
                target: Some("AmazonSQS.ReceiveMessage"),
                uri: "https://sqs.us-east-1.amazonaws.com/",
                body: Some(br#"{"QueueUrl":"https://sqs.us-east-1.amazonaws.com/1/q"}"#),
                ..Default::default()
            },
        );
        assert_eq!(
            (
                sqs[0].service.as_str(),
                sqs[0].operation.as_str(),
                sqs[0].resource.as_str()
            ),
            (
                "sqs",
                "ReceiveMessage",
                "https://sqs.us-east-1.amazonaws.com/1/q"
            )
        );
    }

    #[test]
    fn an_sns_publish_names_its_decoded_topic_arn() {
        let calls = calls_of(
            "budget-alerts",
            &RequestView {
                service: Some("SNS"),
                operation: Some("Publish"),
                uri: "https://sns.us-east-1.amazonaws.com/",
                body: Some(
                    b"Action=Publish&Version=2010-03-31&TopicArn=arn%3Aaws%3Asns%3Aus-east-1%3A1%3Aalerts&Message=x+y",
                ),
                ..Default::default()
            },
        );
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].resource, "arn:aws:sns:us-east-1:1:alerts");
        assert_eq!(calls[0].service, "sns");
    }

    #[test]
    fn s3_resources_are_bucket_and_key_in_either_addressing_style() {
        let s3 = |op: &str, uri: &str| {
            calls_of(
                "c",
                &RequestView {
                    service: Some("S3"),
                    operation: Some(op),
                    uri,
                    ..Default::default()
                },
            )
            .remove(0)
            .resource
        };
        assert_eq!(
            s3(
                "GetObject",
                "http://127.0.0.1:5000/logs/AWSLogs/1/a%20b.json.gz?x-id=GetObject"
            ),
            "logs/AWSLogs/1/a b.json.gz"
        );
        assert_eq!(
            s3(
                "ListObjectsV2",
                "https://my.logs.s3.us-east-1.amazonaws.com/?list-type=2&prefix=AWSLogs%2F"
            ),
            "my.logs"
        );
        assert_eq!(
            s3(
                "GetObject",
                "https://my.logs.s3.us-east-1.amazonaws.com/k/1.gz"
            ),
            "my.logs/k/1.gz"
        );
        assert_eq!(
            s3(
                "ListObjectsV2",
                "http://127.0.0.1:5000/bedrock-logs/?list-type=2&prefix=org%2F"
            ),
            "bedrock-logs"
        );
        assert_eq!(
            s3("ListBuckets", "https://s3.us-east-1.amazonaws.com/"),
            "*"
        );
    }

    #[test]
    fn a_line_is_one_json_object_with_items_only_when_there_are_some() {
        let calls = ddb(
            "TransactWriteItems",
            r#"{"TransactItems":[{"Put":{"TableName":"a"}}]}"#,
        );
        let line = calls[0].to_json_line();
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["items"], serde_json::json!(["Put"]));
        assert_eq!(v["component"], "c");
        let plain: Value =
            serde_json::from_str(&ddb("GetItem", r#"{"TableName":"a"}"#)[0].to_json_line())
                .unwrap();
        assert!(plain.get("items").is_none());
    }
}
