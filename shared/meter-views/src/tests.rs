//! Page-level tests: a [`MemoryReader`] seeded with known usage, every page
//! rendered, its numbers and its safety checked.

use meter_core::{Counters, Day, Usd};

use crate::model::{BudgetLimits, BudgetOwner};
use crate::{respond, MemoryReader, Mode, Options, Response};

const EVIL: &str = "<img src=x onerror=alert(1)>";

fn day(s: &str) -> Day {
    Day::parse(s).unwrap()
}

fn usd(s: &str) -> Usd {
    s.parse().unwrap()
}

fn spend(cost: &str, invocations: u128, unpriced: u128) -> Counters {
    Counters {
        invocations,
        input_tokens: 1000 * invocations,
        output_tokens: 10 * invocations,
        unpriced_invocations: unpriced,
        cost_usd: usd(cost),
        ..Counters::default()
    }
}

/// alice: 1.25 + 0.000003 USD on two days; `EVIL`: 2 USD and one unpriced
/// invocation; bob: =HYPERLINK user in October only.
fn seeded() -> MemoryReader {
    let r = MemoryReader::new();
    let t = "2026-11-20T10:00:00Z";
    r.record(
        "alice",
        "amazon.nova-pro-v1:0",
        day("2026-11-18"),
        &spend("1.25", 3, 0),
        "2026-11-18T09:00:00Z",
    );
    r.record(
        "alice",
        "amazon.nova-micro-v1:0",
        day("2026-11-20"),
        &spend("0.000003", 1, 0),
        t,
    );
    r.record(
        EVIL,
        "unknown.model-v9",
        day("2026-11-20"),
        &spend("0", 1, 1),
        "2026-11-20T11:30:00Z",
    );
    r.record(
        EVIL,
        "amazon.nova-pro-v1:0",
        day("2026-11-20"),
        &spend("2", 2, 0),
        t,
    );
    r.record(
        "=HYPERLINK(\"http://x\")",
        "amazon.nova-pro-v1:0",
        day("2026-10-03"),
        &spend("5", 1, 0),
        t,
    );
    r.set_budget(BudgetLimits {
        owner: BudgetOwner::User("alice".into()),
        daily: Some(usd("1")),
        monthly: Some(usd("2")),
        thresholds: vec![50, 80, 100],
    });
    r.set_budget(BudgetLimits {
        owner: BudgetOwner::Org,
        daily: None,
        monthly: Some(usd("10")),
        thresholds: vec![50, 100],
    });
    r
}

fn opts() -> Options {
    Options {
        mode: Mode::Page { refresh_secs: 30 },
        rendered_at: "2026-11-20T12:00:00Z".into(),
    }
}

async fn get(r: &MemoryReader, path: &str, query: &str) -> Response {
    respond(r, path, query, day("2026-11-20"), &opts(), |e| {
        e.to_string()
    })
    .await
}

async fn json(r: &MemoryReader, path: &str, query: &str) -> serde_json::Value {
    let res = get(r, path, query).await;
    assert_eq!(res.status, 200, "{}", res.body);
    serde_json::from_str(&res.body).unwrap()
}

/// No element of the page can run script or load anything: no event
/// handler attribute, no inline style, no script but the server's own, no
/// absolute URL. Scans the real tags (escaped text holds no `<`), with
/// their quoted attribute values removed.
fn assert_inert(html: &str) {
    let lower = html.to_ascii_lowercase();
    let mut rest = lower.as_str();
    while let Some(i) = rest.find('<') {
        let end = rest[i..].find('>').map_or(rest.len(), |e| i + e);
        let tag = &rest[i + 1..end];
        rest = &rest[end..];
        let name: String = tag
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        assert!(
            !["img", "iframe", "object", "embed", "base"].contains(&name.as_str()),
            "<{tag}>"
        );
        if name == "script" {
            assert_eq!(tag, "script src=\"/assets/refresh.js\" defer");
        }
        // Attribute names only: drop the quoted values.
        let mut names = String::new();
        let mut quoted = false;
        for c in tag.chars() {
            if c == '"' {
                quoted = !quoted;
            } else if !quoted {
                names.push(c);
            }
        }
        for bad in [" on", "style=", "javascript:", "srcdoc"] {
            assert!(!names.contains(bad), "{bad:?} in <{tag}>");
        }
        if let Some(h) = tag.find("href=\"") {
            assert!(
                tag[h + 6..].starts_with('/'),
                "href leaving the server: <{tag}>"
            );
        }
    }
    assert!(!lower.contains("http://") && !lower.contains("https://"));
}

#[tokio::test]
async fn the_overview_totals_the_month_exactly_and_marks_the_lower_bound() {
    let r = seeded();
    let j = json(&r, "/", "format=json").await;
    let total = &j["tables"]["total"][0];
    // 1.25 + 0.000003 + 2 (alice and EVIL in November; bob is October).
    assert_eq!(total["cost_usd"], "3.250003");
    assert_eq!(total["invocations"], 7);
    assert_eq!(total["unpriced_invocations"], 1);
    assert_eq!(j["data_as_of"], "2026-11-20T11:30:00Z");
    let users: Vec<&str> = j["tables"]["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["user"].as_str().unwrap())
        .collect();
    assert_eq!(users, [EVIL, "alice"]);
    let html = get(&r, "/", "").await.body;
    assert!(html.contains("≥&#8239;$3.25"), "lower bound not marked");
    assert!(html.contains("exact 3.250003 USD"));
    assert!(html.contains("(1 unpriced)"));
    assert!(html.contains("November 2026 (UTC)"));
    // 3.250003 over 20 days, 30-day month: 4.8750045 projected.
    assert!(
        html.contains("projection: exact 4.8750045 USD"),
        "no projection"
    );
}

#[tokio::test]
async fn a_user_id_holding_markup_is_text_on_every_page() {
    let r = seeded();
    let user_path = format!("/users/{}", crate::format::path_segment(EVIL));
    for (path, query) in [
        ("/", ""),
        ("/days/2026-11-20", ""),
        (user_path.as_str(), ""),
        ("/models/amazon.nova-pro-v1%3A0", "day=2026-11-20"),
        ("/budgets", ""),
    ] {
        let res = get(&r, path, query).await;
        assert_eq!(res.status, 200, "{path}: {}", res.body);
        assert_inert(&res.body);
        if path != "/budgets" {
            assert!(
                res.body.contains("&lt;img src=x onerror=alert(1)&gt;"),
                "{path}"
            );
        }
    }
}

#[tokio::test]
async fn csv_neutralises_formulas_and_keeps_the_report_columns() {
    let r = seeded();
    let res = get(&r, "/", "month=2026-10&format=csv").await;
    assert_eq!(res.content_type, "text/csv; charset=utf-8");
    let mut lines = res.body.lines();
    assert_eq!(
        lines.next().unwrap(),
        "kind,user,model,period,invocations,errors,input,output,cache_read,cache_write,unpriced,cost_usd"
    );
    assert!(
        res.body.contains(
            "user_month,\"'=HYPERLINK(\"\"http://x\"\")\",,2026-10,1,0,1000,10,0,0,0,5\n"
        ),
        "{}",
        res.body
    );
    let users = get(&r, "/", "month=2026-10&format=csv&table=users")
        .await
        .body;
    assert_eq!(users.lines().count(), 2);
    let bad = get(&r, "/", "format=csv&table=nope").await;
    assert_eq!(bad.status, 400);
    assert!(
        bad.body.contains("total, users, models, days"),
        "{}",
        bad.body
    );
}

#[tokio::test]
async fn an_empty_period_says_so_instead_of_drawing_a_chart() {
    let r = seeded();
    let html = get(&r, "/", "month=2025-01").await.body;
    assert!(html.contains("No usage in January 2025 (UTC)"));
    assert!(!html.contains("<svg class=\"chart\""));
    let html = get(&r, "/days/2026-11-19", "").await.body;
    assert!(html.contains("No usage on 2026-11-19 (UTC)."));
    let html = get(&r, "/users/nobody", "").await.body;
    assert!(html.contains("No usage by this user"));
}

#[tokio::test]
async fn the_day_page_lists_every_user_and_the_organisation_total() {
    let r = seeded();
    let j = json(&r, "/days/2026-11-20", "format=json").await;
    let users = j["tables"]["users"].as_array().unwrap();
    assert_eq!(users.len(), 2);
    assert_eq!(users[0]["user"], EVIL);
    assert_eq!(users[0]["cost_usd"], "2");
    assert_eq!(j["tables"]["total"][0]["kind"], "organisation_day");
    assert_eq!(j["tables"]["total"][0]["cost_usd"], "2.000003");
    assert_eq!(j["tables"]["total"][0]["invocations"], 4);
}

#[tokio::test]
async fn the_user_page_has_every_counter_and_the_budget_burn_up() {
    let r = seeded();
    let j = json(&r, "/users/alice", "format=json").await;
    assert_eq!(j["tables"]["total"][0]["cost_usd"], "1.250003");
    assert_eq!(j["tables"]["month"][0]["kind"], "user_month");
    assert_eq!(j["tables"]["days"].as_array().unwrap().len(), 2);
    assert_eq!(j["tables"]["model_days"].as_array().unwrap().len(), 2);
    let html = get(&r, "/users/alice", "").await.body;
    for col in [
        "cache read",
        "cache write",
        "errors",
        "unpriced",
        "invocations",
    ] {
        assert!(html.contains(col), "{col}");
    }
    // 1.250003 of 2 = 62%: the 50% threshold is reached, 80% is not.
    assert!(html.contains("62%"), "percent");
    assert!(html.contains("thresholds reached: 50%."), "reached");
    assert!(html.contains("class=\"limit\""), "burn-up limit line");
    assert!(html.contains("class=\"projection\""), "projection line");
}

#[tokio::test]
async fn the_model_page_lists_its_users_on_the_chosen_day() {
    let r = seeded();
    let j = json(&r, "/models/amazon.nova-pro-v1%3A0", "format=json").await;
    // The latest day with usage is chosen by default.
    let users = j["tables"]["users"].as_array().unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0]["user"], EVIL);
    assert_eq!(users[0]["day"], "2026-11-20");
    let j = json(
        &r,
        "/models/amazon.nova-pro-v1%3A0",
        "format=json&day=2026-11-18",
    )
    .await;
    assert_eq!(j["tables"]["users"][0]["user"], "alice");
    assert_eq!(j["tables"]["total"][0]["cost_usd"], "3.25");
}

#[tokio::test]
async fn the_budgets_page_shows_percent_and_thresholds_reached() {
    let r = seeded();
    let j = json(&r, "/budgets", "format=json").await;
    let rows = j["tables"]["budgets"].as_array().unwrap();
    let org = rows.iter().find(|s| s["scope"] == "org").unwrap();
    assert_eq!(org["spend_usd"], "3.250003");
    assert_eq!(org["percent"], 32);
    assert_eq!(org["reached_pct"], serde_json::json!([]));
    let month = rows
        .iter()
        .find(|s| s["user"] == "alice" && s["period_kind"] == "month")
        .unwrap();
    assert_eq!(month["reached_pct"], serde_json::json!([50]));
    // Alice spent 0.000003 today against a daily 1.
    let today = rows
        .iter()
        .find(|s| s["user"] == "alice" && s["period_kind"] == "day")
        .unwrap();
    assert_eq!(today["spend_usd"], "0.000003");
    assert_eq!(today["percent"], 0);
    // Highest share first: alice's month (62%) before the org (32%).
    assert_eq!(rows[0]["user"], "alice");
    assert_eq!(rows[0]["period_kind"], "month");
}

#[tokio::test]
async fn a_failed_read_is_shown_on_the_page_not_a_blank_one() {
    let r = seeded();
    r.fail_with(Some(
        "could not read table `t`: connection refused. Check AWS_ENDPOINT_URL",
    ));
    let res = get(&r, "/", "").await;
    assert_eq!(res.status, 503);
    assert!(res
        .body
        .contains("connection refused. Check AWS_ENDPOINT_URL"));
    assert!(res.body.contains("role=\"alert\""));
    let res = get(&r, "/", "format=json").await;
    assert!(res.body.contains("\"error\""));
}

#[tokio::test]
async fn bad_requests_get_a_message_saying_what_to_do() {
    let r = seeded();
    let res = get(&r, "/days/yesterday", "").await;
    assert_eq!(res.status, 400);
    assert!(res.body.contains("like 2026-11-20"));
    let res = get(&r, "/users/<script>/x", "").await;
    assert_eq!(res.status, 404);
    assert!(res.body.contains("&lt;script&gt;"), "{}", res.body);
    assert_inert(&res.body);
}

#[tokio::test]
async fn each_page_runs_the_documented_number_of_queries() {
    let r = seeded();
    let mut counts = Vec::new();
    for (path, query) in [
        ("/", ""),                                            // 1 month + 1 budgets + 20 days
        ("/users/alice", ""),                                 // days + month + budgets
        ("/models/amazon.nova-pro-v1%3A0", "day=2026-11-20"), // days + users that day + 2 users
        ("/days/2026-11-20", ""),                             // users + models
        ("/budgets", ""),                                     // budgets + month + day
    ] {
        let before = r.queries();
        get(&r, path, query).await;
        counts.push(r.queries() - before);
    }
    assert_eq!(counts, [22, 3, 4, 2, 3]);
}

#[tokio::test]
async fn the_widget_has_no_script_no_links_and_its_own_style() {
    let r = seeded();
    let o = Options {
        mode: Mode::Widget,
        rendered_at: "2026-11-20T12:00:00Z".into(),
    };
    let res = respond(&r, "/", "", day("2026-11-20"), &o, |e| e.to_string()).await;
    assert!(!res.body.contains("<script"));
    assert!(!res.body.contains("<a "));
    assert!(res.body.starts_with("<div class=\"bm-widget\"><style>"));
    assert!(res.body.contains("&lt;img src=x"));
}
