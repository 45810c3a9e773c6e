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

/// Tag `feature`: `search` for alice (1.25 on 11-18, 0.000003 on 11-20, 5
/// in October), `EVIL` for one unpriced invocation, `untagged` for 2.
fn seeded_tags() -> MemoryReader {
    let r = MemoryReader::new();
    let t = "2026-11-20T10:00:00Z";
    let tagged = |user: &str, model: &str, d: &str, c: Counters, value: &str| {
        r.record_tagged(user, model, day(d), &c, t, &[("feature", value)]);
    };
    tagged(
        "alice",
        "amazon.nova-pro-v1:0",
        "2026-11-18",
        spend("1.25", 3, 0),
        "search",
    );
    tagged(
        "alice",
        "amazon.nova-micro-v1:0",
        "2026-11-20",
        spend("0.000003", 1, 0),
        "search",
    );
    tagged(
        "bob",
        "unknown.model-v9",
        "2026-11-20",
        spend("0", 1, 1),
        EVIL,
    );
    tagged(
        "bob",
        "amazon.nova-pro-v1:0",
        "2026-11-20",
        spend("2", 2, 0),
        "untagged",
    );
    tagged(
        "alice",
        "amazon.nova-pro-v1:0",
        "2026-10-03",
        spend("5", 1, 0),
        "search",
    );
    r
}

async fn get_tagged(r: &MemoryReader, path: &str, query: &str, keys: &[&str]) -> Response {
    let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    crate::respond_with_tags(r, path, query, day("2026-11-20"), &opts(), &keys, |e| {
        e.to_string()
    })
    .await
}

#[tokio::test]
async fn the_tag_page_lists_every_value_of_the_month_biggest_first_with_the_exact_total() {
    let r = seeded_tags();
    let j = json(&r, "/tags/feature", "format=json").await;
    let values: Vec<(&str, &str)> = j["tables"]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["value"].as_str().unwrap(),
                v["cost_usd"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        values,
        [("untagged", "2"), ("search", "1.250003"), (EVIL, "0")]
    );
    assert_eq!(j["tables"]["values"][0]["kind"], "tag_month");
    assert_eq!(j["tables"]["values"][0]["tag"], "feature");
    let total = &j["tables"]["total"][0];
    assert_eq!(total["kind"], "organisation_month");
    assert_eq!(total["month"], "2026-11");
    assert_eq!(total["cost_usd"], "3.250003");
    assert_eq!(total["invocations"], 7);
    assert_eq!(total["unpriced_invocations"], 1);
    // October is its own month.
    let j = json(&r, "/tags/feature", "month=2026-10&format=json").await;
    assert_eq!(j["tables"]["total"][0]["cost_usd"], "5");
    let html = get(&r, "/tags/feature", "").await.body;
    assert!(html.contains("≥&#8239;$3.25"), "lower bound not marked");
    assert!(html.contains("November 2026 (UTC)"));
    assert!(
        html.contains("href=\"/tags/feature/search?from=2026-11-01&amp;to=2026-11-20\""),
        "no link to the value"
    );
}

#[tokio::test]
async fn the_tag_value_page_splits_the_range_per_model_and_per_day() {
    let r = seeded_tags();
    let j = json(
        &r,
        "/tags/feature/search",
        "from=2026-11-01&to=2026-11-20&format=json",
    )
    .await;
    let total = &j["tables"]["total"][0];
    assert_eq!(total["kind"], "tag_range");
    assert_eq!(total["cost_usd"], "1.250003");
    assert_eq!(total["invocations"], 4);
    let days: Vec<(&str, &str)> = j["tables"]["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["day"].as_str().unwrap(), d["cost_usd"].as_str().unwrap()))
        .collect();
    assert_eq!(days, [("2026-11-18", "1.25"), ("2026-11-20", "0.000003")]);
    assert_eq!(j["tables"]["days"][0]["kind"], "tag_day");
    let models = j["tables"]["models"].as_array().unwrap();
    assert_eq!(models[0]["model"], "amazon.nova-pro-v1:0");
    assert_eq!(models[0]["cost_usd"], "1.25");
    assert_eq!(j["tables"]["model_days"].as_array().unwrap().len(), 2);
    // The month default stops at today; October's usage is outside it.
    let j = json(&r, "/tags/feature/search", "format=json").await;
    assert_eq!(j["tables"]["total"][0]["cost_usd"], "1.250003");
    let html = get(&r, "/tags/feature/search", "").await.body;
    assert!(html.contains("<svg class=\"chart\""), "no daily chart");
    assert!(html.contains("2026-11-01 to 2026-11-20 (UTC)"));
}

#[tokio::test]
async fn tag_csv_has_the_tag_reports_columns() {
    let r = seeded_tags();
    let res = get(&r, "/tags/feature", "format=csv").await;
    let mut lines = res.body.lines();
    assert_eq!(
        lines.next().unwrap(),
        "kind,tag,value,model,period,invocations,errors,input,output,cache_read,cache_write,unpriced,cost_usd"
    );
    assert_eq!(
        lines.next().unwrap(),
        "tag_month,feature,untagged,,2026-11,2,0,2000,20,0,0,0,2"
    );
    assert!(
        res.body
            .ends_with("organisation_month,,,,2026-11,7,0,7000,70,0,0,1,3.250003\n"),
        "{}",
        res.body
    );
}

#[tokio::test]
async fn a_tag_value_holding_markup_is_text_on_the_tag_pages() {
    let r = seeded_tags();
    let value_path = format!("/tags/feature/{}", crate::format::path_segment(EVIL));
    for path in ["/tags/feature", value_path.as_str()] {
        let res = get(&r, path, "").await;
        assert_eq!(res.status, 200, "{path}: {}", res.body);
        assert_inert(&res.body);
        assert!(
            res.body.contains("&lt;img src=x onerror=alert(1)&gt;"),
            "{path}"
        );
    }
    // Only this one value's unpriced invocation: its page is a lower bound.
    let html = get(&r, &value_path, "").await.body;
    assert!(html.contains("≥&#8239;$0.00"), "lower bound not marked");
}

#[tokio::test]
async fn an_empty_tag_period_says_so_in_words() {
    let r = seeded_tags();
    let html = get(&r, "/tags/feature", "month=2025-01").await.body;
    assert!(html.contains("No usage under the tag feature in January 2025 (UTC)."));
    assert!(!html.contains("<svg class=\"chart\""));
    let html = get(&r, "/tags/feature/nobody", "").await.body;
    assert!(html.contains("No usage under feature=nobody from 2026-11-01 to 2026-11-20 (UTC)."));
    assert!(!html.contains("<svg class=\"chart\""));
    let j = json(&r, "/tags/feature", "month=2025-01&format=json").await;
    assert_eq!(j["tables"]["total"], serde_json::json!([]));
}

#[tokio::test]
async fn the_configured_tag_keys_are_linked_and_other_keys_are_refused() {
    let r = seeded_tags();
    let html = get_tagged(&r, "/", "", &["feature", "team"]).await.body;
    assert!(
        html.contains("<a href=\"/tags/feature\">feature</a>"),
        "{html}"
    );
    assert!(html.contains("<a href=\"/tags/team\">team</a>"));
    // Without ATTRIBUTION_TAGS nothing links to a tag page.
    assert!(!get(&r, "/", "").await.body.contains("/tags/"));
    let res = get_tagged(&r, "/tags/colour", "", &["feature", "team"]).await;
    assert_eq!(res.status, 404);
    assert!(
        res.body.contains("ATTRIBUTION_TAGS lists feature, team"),
        "{}",
        res.body
    );
    let res = get_tagged(&r, "/tags/feature", "", &["feature"]).await;
    assert_eq!(res.status, 200);
}

#[tokio::test]
async fn each_tag_page_is_one_query() {
    let r = seeded_tags();
    for (path, query) in [
        ("/tags/feature", ""),
        ("/tags/feature/search", "from=2026-01-01&to=2026-11-20"),
    ] {
        let before = r.queries();
        get(&r, path, query).await;
        assert_eq!(r.queries() - before, 1, "{path}");
    }
}
