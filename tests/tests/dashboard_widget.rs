//! The dashboard-widget Lambda's handler against DynamoDB Local: what the
//! CloudWatch console would show, checked against totals computed
//! independently of the pipeline and of the views. Its reads are recorded as
//! `dashboard-widget`'s, so the IAM check proves the widget's role allows them.

use integration_tests::*;
use meter_core::Meter;
use meter_store::{ingest_payload, CommitSettings};
use serde_json::json;
use time::OffsetDateTime;

/// `1.234567` (exact decimal USD) as the page shows it: dollars to the cent,
/// rounded half up, `<$0.01` for a non-zero amount below half a cent.
fn cents(decimal: &str) -> String {
    let (whole, frac) = decimal.split_once('.').unwrap_or((decimal, ""));
    let mut frac = frac.to_string();
    frac.push_str("000");
    let thousandths: u128 = format!("{whole}{}", &frac[..3]).parse().expect("decimal");
    if thousandths < 5 && decimal.bytes().any(|b| (b'1'..=b'9').contains(&b)) {
        return "&lt;$0.01".to_string();
    }
    let cents = (thousandths + 5) / 10;
    assert!(cents < 100_000, "test amounts stay below $1,000: {decimal}");
    format!("${}.{:02}", cents / 100, cents % 100)
}

fn add_decimal(a: &str, b: &str) -> String {
    // Exact sum of two decimals with at most 12 places, as integers of 10^-12.
    let pico = |s: &str| -> u128 {
        let (w, f) = s.split_once('.').unwrap_or((s, ""));
        format!("{w}{f:0<12}").parse().expect("decimal")
    };
    let p = pico(a) + pico(b);
    normalise_decimal(&format!(
        "{}.{:012}",
        p / 1_000_000_000_000,
        p % 1_000_000_000_000
    ))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[tokio::test]
async fn the_widget_day_page_shows_every_user_and_the_organisation_total_to_the_cent() {
    let client = local_client().await;
    let store = fresh_store(&client, "dashboard-widget").await;
    let mut recs = corpus(150, 5, 3, 0x5eed);
    let hostile = "<img src=x onerror=alert(1)>";
    for r in recs.iter_mut().step_by(7) {
        r.user = hostile.to_string();
    }
    let now = OffsetDateTime::parse(
        "2026-11-01T12:00:00Z",
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    ingest_payload(
        &store,
        &Meter::with_defaults(),
        &CommitSettings::default(),
        &envelope(&recs, 1),
        now,
    )
    .await
    .expect("ingest");

    let widget_store = store_as("dashboard-widget", store.table()).await;
    let expected = expected_totals(&recs);
    let day = "2026-10-31";
    let event = json!({"widgetContext": {"params": {"path": format!("/days/{day}")}}});
    let html = dashboard_widget::handle(&widget_store, &event, now).await;

    assert!(
        !html.contains("<script"),
        "custom widgets run no JavaScript"
    );
    assert!(
        !html.contains(hostile),
        "a caller-set user id is never markup"
    );
    let mut org = "0".to_string();
    let mut users = 0;
    for ((kind, user, _, period), t) in &expected {
        if kind == "user_day" && period == day {
            users += 1;
            assert!(
                html.contains(&escape(user)),
                "user {user} missing from the day page"
            );
            assert!(
                html.contains(&cents(&t.cost_usd)),
                "{user}'s {} ({}) missing from the day page",
                t.cost_usd,
                cents(&t.cost_usd)
            );
            org = add_decimal(&org, &t.cost_usd);
        }
    }
    assert!(
        users >= 3,
        "the corpus puts several users on {day}: {users}"
    );
    assert!(
        html.contains(&cents(&org)),
        "organisation total {org} ({}) missing",
        cents(&org)
    );
}

#[tokio::test]
async fn the_widget_overview_and_budgets_pages_read_the_table_without_error() {
    let client = local_client().await;
    let store = fresh_store(&client, "dashboard-widget-pages").await;
    let recs = corpus(40, 3, 2, 0xbeef);
    let now = OffsetDateTime::parse(
        "2026-10-31T12:00:00Z",
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    ingest_payload(
        &store,
        &Meter::with_defaults(),
        &CommitSettings::default(),
        &envelope(&recs, 1),
        now,
    )
    .await
    .expect("ingest");
    let widget_store = store_as("dashboard-widget", store.table()).await;
    let expected = expected_totals(&recs);
    for (path, query) in [
        ("/", "month=2026-10"),
        ("/budgets", ""),
        ("/users/user-0", ""),
    ] {
        let event = json!({"path": path, "query": query});
        let html = dashboard_widget::handle(&widget_store, &event, now).await;
        assert!(
            !html.to_lowercase().contains("could not read"),
            "{path}: {html}"
        );
        if path == "/" {
            // Every user active in October appears on the month's overview.
            for (kind, user, _, period) in expected.keys() {
                if kind == "user_month" && period == "2026-10" {
                    assert!(
                        html.contains(user.as_str()),
                        "{user} missing from the overview"
                    );
                }
            }
        }
    }
    // A table that does not exist is said on the widget, not a blank page.
    let missing = store_as("dashboard-widget", "it-no-such-table-for-the-widget").await;
    let html = dashboard_widget::handle(&missing, &json!({"path": "/"}), now).await;
    assert!(html.contains("it-no-such-table-for-the-widget"), "{html}");
    assert!(html.contains("bedrock-meter init"), "{html}");
}
