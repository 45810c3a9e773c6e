//! # meter-views: the dashboard's pages, rendered on the server
//!
//! One library holds the views and their rendering; the local server
//! (`bedrock-meter dashboard`) and the CloudWatch custom widget Lambda
//! (`dashboard-widget`) are thin shells over [`respond`].
//!
//! - [`reader`]: the [`UsageReader`] capability (one method per access
//!   pattern of `docs/data-model.md`, each one paginated Query) and
//!   [`MemoryReader`] for tests and the benchmark. The DynamoDB
//!   implementation is in [`dynamo`] (feature `dynamodb`).
//! - [`request`]: paths and query strings parsed once into a [`Request`].
//! - [`views`]: each page's data built from the reader: tables of rows shaped
//!   like `bedrock-meter report` rows, totals, projections, budgets.
//! - [`html`] and [`svg`]: HTML with inline SVG charts, every value escaped,
//!   no inline script or style (a strict Content-Security-Policy holds).
//! - [`data`]: the same tables as CSV (formula cells neutralised) and JSON.
//!
//! Invariants: money stays exact (integer pico-dollars; cents only for
//! display, the exact decimal on hover and in the data); a total including
//! unpriced invocations is marked `≥`; days and months are UTC; an empty
//! period says so instead of drawing an empty chart. Nothing here talks to
//! AWS or needs an async runtime: the futures run on whatever executor the
//! shell has.

pub mod data;
#[cfg(feature = "dynamodb")]
pub mod dynamo;
pub mod format;
pub mod html;
pub mod model;
pub mod reader;
pub mod request;
pub mod svg;
pub mod views;

pub use html::{Mode, Options};
pub use model::{BudgetLimits, BudgetOwner, Row};
pub use reader::{MemoryReader, ReadError, UsageReader};
pub use request::{Format, Page, Request, RequestError};

use meter_core::Day;

/// The Content-Security-Policy of every page: only this server's own
/// script, stylesheet and fetches; no frames, no plugins, no base changes.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// A response for a shell to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Response {
    fn new(status: u16, content_type: &'static str, body: String) -> Response {
        Response {
            status,
            content_type,
            body,
        }
    }
}

/// A static asset of the pages (`/assets/...`), if `path` names one.
pub fn asset(path: &str) -> Option<Response> {
    match path {
        "/assets/dashboard.css" => Some(Response::new(
            200,
            "text/css; charset=utf-8",
            html::CSS.to_string(),
        )),
        "/assets/refresh.js" => Some(Response::new(
            200,
            "text/javascript; charset=utf-8",
            html::REFRESH_JS.to_string(),
        )),
        _ => None,
    }
}

/// Answers one GET: parses `path` and `query`, reads what the page needs,
/// renders it as HTML, CSV or JSON. `today` is the current UTC day;
/// `describe` turns a read failure into the text shown on the page (what
/// failed and what to check).
pub async fn respond<R: UsageReader>(
    reader: &R,
    path: &str,
    query: &str,
    today: Day,
    opts: &Options,
    describe: impl Fn(&ReadError) -> String,
) -> Response {
    respond_with_tags(reader, path, query, today, opts, &[], describe).await
}

/// [`respond`] for a shell that knows the attribution tag keys
/// (`ATTRIBUTION_TAGS`): every page's navigation links to `/tags/{key}`
/// for each, and a tag page of another key says which keys there are. With
/// no keys, tag pages answer for any key and nothing links to them.
pub async fn respond_with_tags<R: UsageReader>(
    reader: &R,
    path: &str,
    query: &str,
    today: Day,
    opts: &Options,
    tag_keys: &[String],
    describe: impl Fn(&ReadError) -> String,
) -> Response {
    if let Some(a) = asset(path) {
        return a;
    }
    let req = match request::parse(path, query, today) {
        Ok(r) => r,
        Err(e) => {
            let status = match e {
                RequestError::NotFound(_) => (404, "Not found"),
                RequestError::BadParameter(_) => (400, "Bad request"),
            };
            return Response::new(
                status.0,
                "text/html; charset=utf-8",
                html::error_page(status.1, &e.to_string(), opts),
            );
        }
    };
    if let Page::TagKey { key, .. } | Page::TagValue { key, .. } = &req.page {
        if !tag_keys.is_empty() && !tag_keys.contains(key) {
            let message = format!(
                "`{key}` is not an attribution tag of this meter: ATTRIBUTION_TAGS lists {}; open /tags/{} instead",
                tag_keys.join(", "),
                format::path_segment(&tag_keys[0])
            );
            return Response::new(
                404,
                "text/html; charset=utf-8",
                html::error_page("Not found", &message, opts),
            );
        }
    }
    let built = match views::build(reader, &req.page, today).await {
        Ok(mut b) => {
            b.tag_keys = tag_keys.to_vec();
            b
        }
        Err(e) => {
            let message = describe(&e);
            return match req.format {
                Format::Html => Response::new(
                    503,
                    "text/html; charset=utf-8",
                    html::error_page("Cannot read the usage table", &message, opts),
                ),
                Format::Csv => Response::new(503, "text/plain; charset=utf-8", message + "\n"),
                Format::Json => Response::new(
                    503,
                    "application/json",
                    serde_json::json!({ "error": message }).to_string() + "\n",
                ),
            };
        }
    };
    let data = match req.format {
        Format::Html => {
            return Response::new(
                200,
                "text/html; charset=utf-8",
                html::render(&built, &req.page, opts),
            )
        }
        Format::Csv => data::csv(&built.view, req.table.as_deref())
            .map(|b| Response::new(200, "text/csv; charset=utf-8", b)),
        Format::Json => data::json(&built, html::page_name(&req.page), req.table.as_deref())
            .map(|b| Response::new(200, "application/json", b)),
    };
    data.unwrap_or_else(|e| Response::new(400, "text/plain; charset=utf-8", e + "\n"))
}

#[cfg(test)]
mod tests;
