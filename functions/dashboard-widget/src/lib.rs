//! The CloudWatch custom widget: one Lambda returning a page of the
//! dashboard as HTML for the console (which runs no JavaScript), from the
//! same views as `bedrock-meter dashboard`.
//!
//! The widget's parameters (the dashboard definition's `params`, which the
//! console passes at the top of the event and in `widgetContext.params`):
//!
//! | param | meaning |
//! |---|---|
//! | `path` | the page: `/` (overview: spend, projection, daily chart, top users, models), `/budgets`, `/days/today`, `/days/YYYY-MM-DD`, `/users/USER`, `/models/MODEL`; default `/` |
//! | `query` | its query string, e.g. `month=2026-11` |
//!
//! `{"describe": true}` returns the widget's documentation.

use meter_core::Day;
use meter_views::{Mode, Options, ReadError, UsageReader};
use serde_json::Value;
use time::OffsetDateTime;

/// What the console shows for "describe".
pub const DESCRIPTION: &str = "## bedrock-meter spend\n\
Exact Amazon Bedrock spend per user, model and UTC day from the bedrock-meter usage table.\n\n\
Parameters: `path` (`/`, `/budgets`, `/days/today`, `/days/YYYY-MM-DD`, `/users/USER`, \
`/models/MODEL`) and `query` (e.g. `month=2026-11`).\n\n\
```yaml\npath: /budgets\n```";

fn param<'a>(event: &'a Value, name: &str) -> Option<&'a str> {
    event
        .get(name)
        .or_else(|| event.pointer(&format!("/widgetContext/params/{name}")))
        .and_then(Value::as_str)
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The text of a failed read: the whole error chain.
pub fn describe_error(e: &ReadError) -> String {
    let mut out = e.to_string();
    let mut cur = std::error::Error::source(e);
    while let Some(c) = cur {
        let s = c.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = c.source();
    }
    out
}

/// Renders the widget for one console event at time `now`. Failures (a bad
/// parameter, an unreadable table) are rendered as a message in the widget.
pub async fn handle<R: UsageReader>(reader: &R, event: &Value, now: OffsetDateTime) -> String {
    if event.get("describe").and_then(Value::as_bool) == Some(true) {
        return DESCRIPTION.to_string();
    }
    let today = Day::of(now);
    let mut path = param(event, "path").unwrap_or("/").to_string();
    if path == "/days/today" {
        path = format!("/days/{today}");
    }
    let query = param(event, "query").unwrap_or("");
    let opts = Options {
        mode: Mode::Widget,
        rendered_at: rfc3339(now),
    };
    // Boxed: the views' nested futures are deep for the compiler's layout
    // queries inside the runtime's service future.
    let res = Box::pin(meter_views::respond(
        reader,
        &path,
        query,
        today,
        &opts,
        describe_error,
    ))
    .await;
    if res.content_type.starts_with("text/html") {
        res.body
    } else {
        // CSV or JSON asked of a widget: show it as text.
        format!(
            "<div class=\"bm-widget\"><pre>{}</pre></div>",
            meter_views::format::esc(&res.body)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meter_core::Counters;
    use meter_views::MemoryReader;

    fn reader() -> MemoryReader {
        let r = MemoryReader::new();
        let c = Counters {
            invocations: 2,
            cost_usd: "1.5".parse().unwrap(),
            ..Counters::default()
        };
        let day = Day::parse("2026-11-20").unwrap();
        r.record(
            "<b>bold</b>",
            "amazon.nova-pro-v1:0",
            day,
            &c,
            "2026-11-20T10:00:00Z",
        );
        r
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::parse(
            "2026-11-20T12:00:00Z",
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    }

    fn event() -> Value {
        serde_json::from_str(include_str!("../events/widget-overview.json")).unwrap()
    }

    #[tokio::test]
    async fn the_console_event_renders_the_overview_without_script_or_links() {
        let html = handle(&reader(), &event(), now()).await;
        assert!(
            html.starts_with("<div class=\"bm-widget\"><style>"),
            "{html}"
        );
        assert!(html.contains("$1.50"));
        assert!(html.contains("&lt;b&gt;bold&lt;/b&gt;"));
        assert!(!html.contains("<script") && !html.contains("<a "));
    }

    #[tokio::test]
    async fn params_choose_the_page_and_today_means_the_current_utc_day() {
        let e = serde_json::json!({"path": "/days/today", "widgetContext": {}});
        let html = handle(&reader(), &e, now()).await;
        assert!(html.contains("2026-11-20 (UTC)"), "{html}");
        let e = serde_json::json!({"widgetContext": {"params": {"path": "/budgets"}}});
        assert!(handle(&reader(), &e, now())
            .await
            .contains("No budget is set"));
    }

    #[tokio::test]
    async fn describe_returns_the_documentation() {
        let e = serde_json::json!({"describe": true});
        assert_eq!(handle(&reader(), &e, now()).await, DESCRIPTION);
    }

    #[tokio::test]
    async fn an_unreadable_table_is_a_message_in_the_widget() {
        let r = reader();
        r.fail_with(Some("could not read table `t`: check AWS_REGION"));
        let html = handle(&r, &event(), now()).await;
        assert!(
            html.contains("could not read table `t`: check AWS_REGION"),
            "{html}"
        );
        assert!(html.contains("role=\"alert\""));
    }
}
