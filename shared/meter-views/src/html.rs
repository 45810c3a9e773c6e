//! The pages as HTML. Every value from the table goes through
//! [`esc`]; no inline script, no inline style, no event handler attribute;
//! links only to this server's own pages.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use meter_core::{Day, Month, Usd};

use crate::data::table_names;
use crate::format::{esc, group, path_segment, percent, usd_cents, usd_html};
use crate::model::{reached, Row};
use crate::request::{days, month_bounds, Page};
use crate::svg;
use crate::views::{
    BudgetsView, Built, DayView, ModelView, Overview, TagKeyView, TagValueView, UserView, View,
};

/// The stylesheet (served at `/assets/dashboard.css`, inlined in widgets).
pub const CSS: &str = include_str!("../assets/dashboard.css");
/// The auto-refresh script (served at `/assets/refresh.js`).
pub const REFRESH_JS: &str = include_str!("../assets/refresh.js");

/// Where the HTML is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A page of the local server: links between pages, the stylesheet and
    /// the refresh script from `/assets/`, refresh every `refresh_secs`
    /// seconds (0: off).
    Page { refresh_secs: u32 },
    /// A CloudWatch custom widget: one fragment, inline `<style>`, no
    /// script (the console runs none) and no links.
    Widget,
}

/// How a page is rendered.
#[derive(Debug, Clone)]
pub struct Options {
    pub mode: Mode,
    /// When the page was rendered (RFC 3339 UTC).
    pub rendered_at: String,
}

/// The canonical URL of a page (path and query, without `format`).
pub fn page_url(page: &Page) -> String {
    match page {
        Page::Overview { month } => format!("/?month={month}"),
        Page::User { user, from, to } => {
            format!("/users/{}?from={from}&to={to}", path_segment(user))
        }
        Page::Model {
            model,
            from,
            to,
            day,
        } => {
            let mut u = format!("/models/{}?from={from}&to={to}", path_segment(model));
            if let Some(d) = day {
                let _ = write!(u, "&day={d}");
            }
            u
        }
        Page::Day { day } => format!("/days/{day}"),
        Page::Budgets => "/budgets".to_string(),
        Page::TagKey { key, month } => format!("/tags/{}?month={month}", path_segment(key)),
        Page::TagValue {
            key,
            value,
            from,
            to,
        } => format!(
            "/tags/{}/{}?from={from}&to={to}",
            path_segment(key),
            path_segment(value)
        ),
    }
}

/// The page's name in JSON output.
pub fn page_name(page: &Page) -> &'static str {
    match page {
        Page::Overview { .. } => "overview",
        Page::User { .. } => "user",
        Page::Model { .. } => "model",
        Page::Day { .. } => "day",
        Page::Budgets => "budgets",
        Page::TagKey { .. } => "tag",
        Page::TagValue { .. } => "tag_value",
    }
}

struct Ctx {
    widget: bool,
}

impl Ctx {
    fn link(&self, href: &str, text: &str) -> String {
        if self.widget {
            esc(text)
        } else {
            format!("<a href=\"{}\">{}</a>", esc(href), esc(text))
        }
    }
    fn user(&self, u: &str) -> String {
        self.link(&format!("/users/{}", path_segment(u)), u)
    }
    fn model(&self, m: &str) -> String {
        self.link(&format!("/models/{}", path_segment(m)), m)
    }
    fn day(&self, d: &str) -> String {
        self.link(&format!("/days/{}", path_segment(d)), d)
    }
}

/// Spend of a row for people: to the cent, `≥` when some invocations are
/// unpriced (with their count), the exact value on hover.
pub fn money(r: &Row) -> String {
    money_of(r.cost, r.unpriced_invocations)
}

fn money_of(cost: Usd, unpriced: u128) -> String {
    if unpriced > 0 {
        format!(
            "<span class=\"money lower\" title=\"exact {cost} USD; excludes {n} unpriced invocation{s}\">≥&#8239;{}</span> <span class=\"unpriced\">({n} unpriced)</span>",
            usd_html(cost),
            n = group(unpriced),
            s = if unpriced == 1 { "" } else { "s" }
        )
    } else {
        format!(
            "<span class=\"money\" title=\"exact {cost} USD\">{}</span>",
            usd_html(cost)
        )
    }
}

fn month_name(m: Month) -> String {
    let name = time::Month::try_from(m.month)
        .map(|x| x.to_string())
        .unwrap_or_default();
    format!("{name} {} (UTC)", m.year)
}

fn next_month(m: Month) -> Month {
    if m.month == 12 {
        Month {
            year: m.year + 1,
            month: 1,
        }
    } else {
        Month {
            year: m.year,
            month: m.month + 1,
        }
    }
}

fn prev_month(m: Month) -> Month {
    if m.month == 1 {
        Month {
            year: m.year - 1,
            month: 12,
        }
    } else {
        Month {
            year: m.year,
            month: m.month - 1,
        }
    }
}

#[derive(Clone, Copy)]
enum Col {
    User,
    Model,
    Day,
}

/// A table with every counter.
fn usage_table(ctx: &Ctx, caption: &str, rows: &[&Row], cols: &[Col], limit: usize) -> String {
    let mut out = format!("<table><caption>{}</caption><thead><tr>", esc(caption));
    for c in cols {
        out.push_str(match c {
            Col::User => "<th scope=\"col\">user</th>",
            Col::Model => "<th scope=\"col\">model</th>",
            Col::Day => "<th scope=\"col\">day (UTC)</th>",
        });
    }
    out.push_str(
        "<th scope=\"col\" class=\"num\">spend (USD)</th><th scope=\"col\" class=\"num\">invocations</th><th scope=\"col\" class=\"num\">errors</th>\
         <th scope=\"col\" class=\"num\">input</th><th scope=\"col\" class=\"num\">output</th><th scope=\"col\" class=\"num\">cache read</th>\
         <th scope=\"col\" class=\"num\">cache write</th><th scope=\"col\" class=\"num\">unpriced</th></tr></thead><tbody>",
    );
    for r in rows.iter().take(limit) {
        out.push_str("<tr>");
        for c in cols {
            let cell = match c {
                Col::User => ctx.user(r.user.as_deref().unwrap_or("")),
                Col::Model => ctx.model(r.model.as_deref().unwrap_or("")),
                Col::Day => ctx.day(r.day.as_deref().unwrap_or("")),
            };
            let _ = write!(out, "<td class=\"id\">{cell}</td>");
        }
        let _ = write!(
            out,
            "<td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            money(r),
            group(r.invocations),
            group(r.errors),
            group(r.input_tokens),
            group(r.output_tokens),
            group(r.cache_read_input_tokens),
            group(r.cache_write_input_tokens),
            group(r.unpriced_invocations),
        );
    }
    out.push_str("</tbody></table>");
    if rows.len() > limit {
        let _ = write!(
            out,
            "<p class=\"note\">{} more rows: every row is in the CSV and JSON.</p>",
            group((rows.len() - limit) as u128)
        );
    }
    out
}

fn kpi(label: &str, value: &str, note: &str) -> String {
    format!(
        "<div class=\"kpi\"><div class=\"label\">{}</div><div class=\"value\">{value}</div><div class=\"note\">{note}</div></div>",
        esc(label)
    )
}

/// The two KPIs of a page over a date range: its spend (with its tokens)
/// and its invocations (with its errors).
fn range_kpis(total: &Row) -> String {
    kpi("spend in range", &money(total), &tokens_note(total))
        + &kpi(
            "invocations",
            &group(total.invocations),
            &format!("{} errors", group(total.errors)),
        )
}

fn tokens_note(r: &Row) -> String {
    format!(
        "input {} · output {} · cache read {} · cache write {}",
        group(r.input_tokens),
        group(r.output_tokens),
        group(r.cache_read_input_tokens),
        group(r.cache_write_input_tokens)
    )
}

fn empty(what: &str) -> String {
    format!("<p class=\"empty\">{}</p>", esc(what))
}

fn overview(ctx: &Ctx, o: &Overview) -> String {
    let mut out = String::new();
    let title = format!("Organisation · {}", month_name(o.month));
    let _ = write!(out, "<h1>{}</h1>", esc(&title));
    if !ctx.widget {
        let _ = write!(
            out,
            "<form class=\"period\" method=\"get\" action=\"/\"><a href=\"/?month={p}\">← {p}</a> \
             <label>month (UTC) <input type=\"month\" name=\"month\" value=\"{m}\"></label> <button type=\"submit\">show</button> \
             <a href=\"/?month={n}\">{n} →</a></form>",
            p = prev_month(o.month),
            m = o.month,
            n = next_month(o.month)
        );
    }
    let to_date = if o.today.month() == o.month {
        "month to date"
    } else {
        "whole month"
    };
    out.push_str("<div class=\"kpis\">");
    out.push_str(&kpi(
        &format!("spend, {to_date}"),
        &money(&o.total),
        &format!("{} users", group(o.users.len() as u128)),
    ));
    if let Some(p) = o.projection {
        out.push_str(&kpi(
            "projected month-end spend",
            &format!(
                "<span class=\"money projection\" title=\"projection: exact {p} USD\">{}</span>",
                usd_html(p)
            ),
            &format!(
                "projection at the daily run-rate of the {} days so far{}",
                o.today.date().day(),
                if o.total.is_lower_bound() {
                    "; a lower bound (unpriced invocations)"
                } else {
                    ""
                }
            ),
        ));
    }
    out.push_str(&kpi(
        "invocations",
        &group(o.total.invocations),
        &format!("{} errors", group(o.total.errors)),
    ));
    out.push_str(&kpi(
        "tokens",
        &group(
            o.total.input_tokens
                + o.total.output_tokens
                + o.total.cache_read_input_tokens
                + o.total.cache_write_input_tokens,
        ),
        &tokens_note(&o.total),
    ));
    if let Some(limit) = o.budgets.org().and_then(|b| b.monthly) {
        let pct = percent(o.total.cost, limit);
        out.push_str(&kpi(
            "organisation budget",
            &format!("{pct}% of {}", usd_html(limit)),
            &svg::budget_bar(pct, &format!("{pct}% of the monthly limit")),
        ));
    }
    out.push_str("</div>");
    out.push_str("<section><h2>Daily spend by model (UTC days)</h2>");
    match svg::stacked_days(
        &o.days,
        &o.model_days,
        &format!("daily spend by model, {}", month_name(o.month)),
    ) {
        Some(chart) => {
            out.push_str(&chart);
            out.push_str(&svg::legend(&o.model_days));
        }
        None => out.push_str(&empty(&format!(
            "No usage in {}: nothing to chart.",
            month_name(o.month)
        ))),
    }
    out.push_str("</section>");
    out.push_str("<section><h2>Top users</h2>");
    if o.users.is_empty() {
        out.push_str(&empty(&format!("No users in {}.", month_name(o.month))));
    } else {
        out.push_str("<table><caption>biggest spenders of the month, with their monthly budget where one applies</caption><thead><tr><th scope=\"col\">user</th><th scope=\"col\" class=\"num\">spend (USD)</th><th scope=\"col\">monthly budget</th><th scope=\"col\" class=\"num\">invocations</th><th scope=\"col\" class=\"num\">errors</th></tr></thead><tbody>");
        let limit = if ctx.widget { 10 } else { 25 };
        for u in o.users.iter().take(limit) {
            let name = u.user.as_deref().unwrap_or("");
            let budget = match o.budgets.for_user(name).and_then(|b| b.monthly) {
                Some(l) => {
                    let pct = percent(u.cost, l);
                    format!(
                        "{} {pct}% of {}",
                        svg::budget_bar(pct, &format!("{pct}% of {}", usd_cents(l))),
                        usd_html(l)
                    )
                }
                None => "<span class=\"muted\">none</span>".to_string(),
            };
            let _ = write!(
                out,
                "<tr><td class=\"id\">{}</td><td class=\"num\">{}</td><td>{budget}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                ctx.user(name),
                money(u),
                group(u.invocations),
                group(u.errors)
            );
        }
        out.push_str("</tbody></table>");
        if o.users.len() > limit {
            let _ = write!(
                out,
                "<p class=\"note\">{} more users: every user is in the CSV and JSON.</p>",
                o.users.len() - limit
            );
        }
    }
    out.push_str("</section><section><h2>Models</h2>");
    if o.models.is_empty() {
        out.push_str(&empty("No model was used in this month."));
    } else {
        let rows: Vec<&Row> = o.models.iter().collect();
        out.push_str(&usage_table(
            ctx,
            "per model, this month",
            &rows,
            &[Col::Model],
            100,
        ));
    }
    out.push_str("</section>");
    if !ctx.widget && !o.org_days.is_empty() {
        let rows: Vec<&Row> = o.org_days.iter().rev().collect();
        out.push_str("<section><h2>Days</h2>");
        out.push_str(&usage_table(
            ctx,
            "the organisation per UTC day, latest first",
            &rows,
            &[Col::Day],
            31,
        ));
        out.push_str("</section>");
    }
    out
}

fn range_form(ctx: &Ctx, action: &str, from: Day, to: Day, extra: &str) -> String {
    if ctx.widget {
        return String::new();
    }
    format!(
        "<form class=\"period\" method=\"get\" action=\"{}\"><label>from <input type=\"date\" name=\"from\" value=\"{from}\"></label> \
         <label>to <input type=\"date\" name=\"to\" value=\"{to}\"></label>{extra} <button type=\"submit\">show</button> (UTC days)</form>",
        esc(action)
    )
}

fn user_page(ctx: &Ctx, u: &UserView) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<h1>User <span class=\"id\">{}</span></h1><p class=\"sub\">{} to {} (UTC)</p>",
        esc(&u.user),
        u.from,
        u.to
    );
    out.push_str(&range_form(
        ctx,
        &format!("/users/{}", path_segment(&u.user)),
        u.from,
        u.to,
        "",
    ));
    out.push_str("<div class=\"kpis\">");
    out.push_str(&range_kpis(&u.total));
    if let Some(m) = &u.month {
        out.push_str(&kpi(
            &format!("month {} (UTC)", m.month.as_deref().unwrap_or("")),
            &money(m),
            "",
        ));
    }
    out.push_str("</div><section><h2>Daily spend by model</h2>");
    match svg::stacked_days(
        &days(u.from, u.to),
        &u.model_days,
        &format!("daily spend of {} by model", u.user),
    ) {
        Some(c) => {
            out.push_str(&c);
            out.push_str(&svg::legend(&u.model_days));
        }
        None => out.push_str(&empty(&format!(
            "No usage by this user from {} to {} (UTC).",
            u.from, u.to
        ))),
    }
    out.push_str("</section><section><h2>Budget</h2>");
    out.push_str(&user_budget(u));
    out.push_str("</section>");
    if !u.models.is_empty() {
        let rows: Vec<&Row> = u.models.iter().collect();
        out.push_str("<section><h2>Per model</h2>");
        out.push_str(&usage_table(
            ctx,
            "per model, whole range",
            &rows,
            &[Col::Model],
            200,
        ));
        let rows: Vec<&Row> = u.days.iter().rev().collect();
        out.push_str("</section><section><h2>Per day</h2>");
        out.push_str(&usage_table(
            ctx,
            "per UTC day, latest first",
            &rows,
            &[Col::Day],
            400,
        ));
        let mut rows: Vec<&Row> = u.model_days.iter().collect();
        rows.sort_by(|a, b| b.day.cmp(&a.day).then_with(|| b.cost.cmp(&a.cost)));
        out.push_str("</section><section><h2>Per model and day</h2>");
        out.push_str(&usage_table(
            ctx,
            "per model and UTC day, latest first",
            &rows,
            &[Col::Day, Col::Model],
            1000,
        ));
        out.push_str("</section>");
    }
    out
}

fn user_budget(u: &UserView) -> String {
    let Some(b) = &u.budget else {
        return empty("No budget applies to this user (none of their own, no default).");
    };
    let whose = match &b.owner {
        crate::model::BudgetOwner::User(_) => "their own budget",
        _ => "the default budget",
    };
    let mut out = format!("<p>{whose}; thresholds {}.</p>", thresholds(&b.thresholds));
    let month = u.to.month();
    if let Some(limit) = b.monthly {
        let spend = u.month.as_ref().map_or(Usd::ZERO, |m| m.cost);
        let pct = percent(spend, limit);
        let hit = reached(spend, limit, &b.thresholds);
        let _ = write!(
            out,
            "<p>Monthly limit {} for {}: {} spent, {pct}% {}; thresholds reached: {}.</p>",
            usd_html(limit),
            month_name(month),
            money_of(
                spend,
                u.month.as_ref().map_or(0, |m| m.unpriced_invocations)
            ),
            svg::budget_bar(pct, &format!("{pct}% of the monthly limit")),
            thresholds(&hit)
        );
        let (first, last) = month_bounds(month);
        let daily: BTreeMap<Day, Usd> = u
            .days
            .iter()
            .filter_map(|r| r.day().filter(|d| d.month() == month).map(|d| (d, r.cost)))
            .collect();
        out.push_str(&svg::burn_up(
            &days(first, last),
            &daily,
            limit,
            u.projection,
            &format!("burn-up of {} against the monthly limit", month_name(month)),
        ));
        if let Some(p) = u.projection {
            let _ = write!(
                out,
                "<p class=\"note\">Projection (at this month's daily run-rate): {} by the end of {}.</p>",
                usd_html(p),
                month_name(month)
            );
        }
        if u.from > first {
            out.push_str("<p class=\"note\">The burn-up shows the days of the month inside the chosen range.</p>");
        }
    }
    if let Some(limit) = b.daily {
        let over = u.days.iter().filter(|d| d.cost >= limit).count();
        let _ = write!(
            out,
            "<p>Daily limit {}: reached on {over} of the days shown.</p>",
            usd_html(limit)
        );
        if let Some(today) = u.days.iter().find(|d| d.day() == Some(u.today)) {
            let pct = percent(today.cost, limit);
            let _ = write!(
                out,
                "<p>Today ({} UTC): {} = {pct}% {}</p>",
                u.today,
                money(today),
                svg::budget_bar(pct, &format!("{pct}% of the daily limit"))
            );
        }
    }
    out
}

fn thresholds(t: &[u32]) -> String {
    if t.is_empty() {
        return "none".into();
    }
    t.iter()
        .map(|p| format!("{p}%"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn model_page(ctx: &Ctx, m: &ModelView) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<h1>Model <span class=\"id\">{}</span></h1><p class=\"sub\">{} to {} (UTC)</p>",
        esc(&m.model),
        m.from,
        m.to
    );
    let day_field = format!(
        " <label>users on <input type=\"date\" name=\"day\" value=\"{}\"></label>",
        m.day.map(|d| d.to_string()).unwrap_or_default()
    );
    out.push_str(&range_form(
        ctx,
        &format!("/models/{}", path_segment(&m.model)),
        m.from,
        m.to,
        &day_field,
    ));
    out.push_str("<div class=\"kpis\">");
    out.push_str(&range_kpis(&m.total));
    out.push_str("</div><section><h2>Daily cost</h2>");
    match svg::stacked_days(
        &days(m.from, m.to),
        &m.days,
        &format!("daily cost of {}", m.model),
    ) {
        Some(c) => out.push_str(&c),
        None => out.push_str(&empty(&format!(
            "No usage of this model from {} to {} (UTC).",
            m.from, m.to
        ))),
    }
    out.push_str("</section>");
    if !m.days.is_empty() {
        let rows: Vec<&Row> = m.days.iter().rev().collect();
        out.push_str("<section><h2>Per day</h2>");
        out.push_str(&usage_table(
            ctx,
            "per UTC day, latest first",
            &rows,
            &[Col::Day],
            400,
        ));
        out.push_str("</section>");
    }
    if let Some(d) = m.day {
        let _ = write!(out, "<section><h2>Users on {d} (UTC)</h2>");
        if m.users.is_empty() {
            out.push_str(&empty(&format!("Nobody used this model on {d} (UTC).")));
        } else {
            let rows: Vec<&Row> = m.users.iter().collect();
            out.push_str(&usage_table(
                ctx,
                "its users that day",
                &rows,
                &[Col::User],
                200,
            ));
        }
        out.push_str("</section>");
    }
    out
}

fn day_page(ctx: &Ctx, d: &DayView) -> String {
    let mut out = String::new();
    let _ = write!(out, "<h1>{} (UTC)</h1>", d.day);
    if !ctx.widget {
        let prev = d.day.date().previous_day().map(crate::request::day_of);
        let next = d.day.date().next_day().map(crate::request::day_of);
        out.push_str("<p class=\"period\">");
        if let Some(p) = prev {
            out.push_str(&ctx.link(&format!("/days/{p}"), &format!("← {p}")));
        }
        out.push(' ');
        if let Some(n) = next {
            out.push_str(&ctx.link(&format!("/days/{n}"), &format!("{n} →")));
        }
        out.push_str("</p>");
    }
    match &d.total {
        None => {
            out.push_str(&empty(&format!("No usage on {} (UTC).", d.day)));
            return out;
        }
        Some(t) => {
            out.push_str("<div class=\"kpis\">");
            out.push_str(&kpi("organisation's spend", &money(t), &tokens_note(t)));
            out.push_str(&kpi(
                "invocations",
                &group(t.invocations),
                &format!("{} errors · {} users", group(t.errors), d.users.len()),
            ));
            out.push_str("</div>");
        }
    }
    let rows: Vec<&Row> = d.users.iter().collect();
    out.push_str("<section><h2>Users</h2>");
    out.push_str(&usage_table(
        ctx,
        "every user that day, biggest first",
        &rows,
        &[Col::User],
        500,
    ));
    let rows: Vec<&Row> = d.models.iter().collect();
    out.push_str("</section><section><h2>Models</h2>");
    out.push_str(&usage_table(
        ctx,
        "every model that day",
        &rows,
        &[Col::Model],
        100,
    ));
    out.push_str("</section>");
    out
}

fn budgets_page(ctx: &Ctx, b: &BudgetsView) -> String {
    let mut out = format!(
        "<h1>Budgets</h1><p class=\"sub\">against today, {} (UTC), and the month {}</p>",
        b.today,
        month_name(b.today.month())
    );
    if b.budgets.all.is_empty() {
        out.push_str(&empty(
            "No budget is set. Set one with `bedrock-meter budget set --user USER --monthly 100` (or --default, --org).",
        ));
        return out;
    }
    out.push_str("<section><h2>Budgets set</h2><table><caption>stored budgets</caption><thead><tr><th scope=\"col\">budget</th><th scope=\"col\" class=\"num\">daily limit</th><th scope=\"col\" class=\"num\">monthly limit</th><th scope=\"col\">thresholds</th></tr></thead><tbody>");
    for l in &b.budgets.all {
        let who = match &l.owner {
            crate::model::BudgetOwner::Org => "the organisation".to_string(),
            crate::model::BudgetOwner::Default => "default (users without their own)".to_string(),
            crate::model::BudgetOwner::User(u) => ctx.user(u),
        };
        let lim = |v: Option<Usd>| {
            v.map_or("<span class=\"muted\">none</span>".into(), |v| {
                format!("<span title=\"exact {v} USD\">{}</span>", usd_html(v))
            })
        };
        let _ = write!(
            out,
            "<tr><td class=\"id\">{who}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            lim(l.daily),
            lim(l.monthly),
            thresholds(&l.thresholds)
        );
    }
    out.push_str("</tbody></table></section><section><h2>Spend against each limit</h2>");
    if b.statuses.is_empty() {
        out.push_str(&empty("No spend against any budget this period."));
    } else {
        out.push_str("<table><caption>highest share of its limit first; thresholds reached are computed exactly from the spend</caption><thead><tr><th scope=\"col\">who</th><th scope=\"col\">budget</th><th scope=\"col\">period (UTC)</th><th scope=\"col\" class=\"num\">spend</th><th scope=\"col\" class=\"num\">limit</th><th scope=\"col\">percent</th><th scope=\"col\">thresholds reached</th></tr></thead><tbody>");
        let limit = if ctx.widget { 15 } else { 500 };
        for s in b.statuses.iter().take(limit) {
            let who = match &s.user {
                Some(u) => ctx.user(u),
                None => "the organisation".into(),
            };
            let _ = write!(
                out,
                "<tr><td class=\"id\">{who}</td><td>{}</td><td>{} {}</td><td class=\"num\">{}</td><td class=\"num\"><span title=\"exact {} USD\">{}</span></td><td>{} {}%</td><td>{}</td></tr>",
                esc(&s.scope),
                esc(&s.period_kind),
                esc(&s.period),
                money_of(s.spend, s.unpriced_invocations),
                s.limit,
                usd_html(s.limit),
                svg::budget_bar(s.percent, &format!("{}% of the limit", s.percent)),
                s.percent,
                thresholds(&s.reached_pct)
            );
        }
        out.push_str("</tbody></table>");
        if b.statuses.len() > limit {
            let _ = write!(
                out,
                "<p class=\"note\">{} more: every row is in the CSV and JSON.</p>",
                b.statuses.len() - limit
            );
        }
    }
    out.push_str("</section>");
    out
}

fn nav(ctx: &Ctx, today: Day, tag_keys: &[String]) -> String {
    if ctx.widget {
        return String::new();
    }
    let mut tags = String::new();
    if !tag_keys.is_empty() {
        tags.push_str(" <span class=\"tags\">Tags:");
        for k in tag_keys {
            tags.push(' ');
            tags.push_str(&ctx.link(&format!("/tags/{}", path_segment(k)), k));
        }
        tags.push_str("</span>");
    }
    format!(
        "<nav><strong>bedrock-meter</strong> <a href=\"/\">Overview</a> <a href=\"/days/{today}\">Today</a> <a href=\"/budgets\">Budgets</a>{tags}</nav>"
    )
}

fn tag_value_link(ctx: &Ctx, key: &str, value: &str, query: &str) -> String {
    ctx.link(
        &format!("/tags/{}/{}{query}", path_segment(key), path_segment(value)),
        value,
    )
}

fn tag_key_page(ctx: &Ctx, t: &TagKeyView) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<h1>Tag <span class=\"id\">{}</span> · {}</h1><p class=\"sub\">every value of the attribution tag; a record without it counts under <span class=\"id\">untagged</span></p>",
        esc(&t.key),
        esc(&month_name(t.month))
    );
    if !ctx.widget {
        let action = format!("/tags/{}", path_segment(&t.key));
        let _ = write!(
            out,
            "<form class=\"period\" method=\"get\" action=\"{a}\"><a href=\"{a}?month={p}\">← {p}</a> \
             <label>month (UTC) <input type=\"month\" name=\"month\" value=\"{m}\"></label> <button type=\"submit\">show</button> \
             <a href=\"{a}?month={n}\">{n} →</a></form>",
            a = esc(&action),
            p = prev_month(t.month),
            m = t.month,
            n = next_month(t.month)
        );
    }
    let Some(total) = &t.total else {
        out.push_str(&empty(&format!(
            "No usage under the tag {} in {}.",
            t.key,
            month_name(t.month)
        )));
        return out;
    };
    let to_date = if t.today.month() == t.month {
        "month to date"
    } else {
        "whole month"
    };
    out.push_str("<div class=\"kpis\">");
    out.push_str(&kpi(
        &format!("spend, {to_date}"),
        &money(total),
        &format!("{} values", group(t.values.len() as u128)),
    ));
    out.push_str(&kpi(
        "invocations",
        &group(total.invocations),
        &format!("{} errors", group(total.errors)),
    ));
    out.push_str("</div><section><h2>Spend per value</h2>");
    out.push_str(&svg::value_bars(
        &t.values,
        &format!("spend per value of {}, {}", t.key, month_name(t.month)),
    ));
    out.push_str("</section><section><h2>Values</h2>");
    let (first, last) = month_bounds(t.month);
    let query = format!("?from={first}&to={}", last.min(t.today).max(first));
    out.push_str("<table><caption>every value this month, biggest first</caption><thead><tr><th scope=\"col\">value</th><th scope=\"col\" class=\"num\">spend (USD)</th><th scope=\"col\">share</th><th scope=\"col\" class=\"num\">invocations</th><th scope=\"col\" class=\"num\">errors</th><th scope=\"col\" class=\"num\">input</th><th scope=\"col\" class=\"num\">output</th><th scope=\"col\" class=\"num\">unpriced</th></tr></thead><tbody>");
    let limit = if ctx.widget { 15 } else { 500 };
    for v in t.values.iter().take(limit) {
        let pct = percent(v.cost, total.cost);
        let _ = write!(
            out,
            "<tr><td class=\"id\">{}</td><td class=\"num\">{}</td><td>{} {pct}%</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            tag_value_link(ctx, &t.key, v.value.as_deref().unwrap_or(""), &query),
            money(v),
            svg::share_bar(pct, &format!("{pct}% of the tag's spend")),
            group(v.invocations),
            group(v.errors),
            group(v.input_tokens),
            group(v.output_tokens),
            group(v.unpriced_invocations),
        );
    }
    out.push_str("</tbody></table>");
    if t.values.len() > limit {
        let _ = write!(
            out,
            "<p class=\"note\">{} more values: every value is in the CSV and JSON.</p>",
            t.values.len() - limit
        );
    }
    out.push_str("</section>");
    out
}

fn tag_value_page(ctx: &Ctx, t: &TagValueView) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<h1>Tag <span class=\"id\">{}</span> = <span class=\"id\">{}</span></h1><p class=\"sub\">{} to {} (UTC) · {}</p>",
        esc(&t.key),
        esc(&t.value),
        t.from,
        t.to,
        ctx.link(
            &format!("/tags/{}?month={}", path_segment(&t.key), t.to.month()),
            &format!("every value of {}", t.key)
        )
    );
    out.push_str(&range_form(
        ctx,
        &format!("/tags/{}/{}", path_segment(&t.key), path_segment(&t.value)),
        t.from,
        t.to,
        "",
    ));
    if t.model_days.is_empty() {
        out.push_str(&empty(&format!(
            "No usage under {}={} from {} to {} (UTC).",
            t.key, t.value, t.from, t.to
        )));
        return out;
    }
    out.push_str("<div class=\"kpis\">");
    out.push_str(&range_kpis(&t.total));
    out.push_str("</div><section><h2>Daily spend by model (UTC days)</h2>");
    match svg::stacked_days(
        &days(t.from, t.to),
        &t.model_days,
        &format!("daily spend of {}={} by model", t.key, t.value),
    ) {
        Some(chart) => {
            out.push_str(&chart);
            out.push_str(&svg::legend(&t.model_days));
        }
        None => out.push_str(&empty("No spend to chart in this range.")),
    }
    out.push_str("</section><section><h2>Per model</h2>");
    let rows: Vec<&Row> = t.models.iter().collect();
    out.push_str(&usage_table(
        ctx,
        "per model over the range, biggest first",
        &rows,
        &[Col::Model],
        100,
    ));
    out.push_str("</section><section><h2>Per day</h2>");
    let rows: Vec<&Row> = t.days.iter().rev().collect();
    out.push_str(&usage_table(
        ctx,
        "per UTC day (all models), latest first",
        &rows,
        &[Col::Day],
        400,
    ));
    out.push_str("</section>");
    out
}

fn freshness(built: &Built, opts: &Options) -> String {
    format!(
        "<p class=\"fresh\">data as of <time id=\"data-as-of\">{}</time> · <span id=\"refreshed\">rendered at <time>{}</time></span></p>",
        esc(built.data_as_of.as_deref().unwrap_or(
            match &built.view {
                // meter-store's tag queries return no write time.
                View::TagKey(t) if t.total.is_some() => "not recorded for tag totals",
                View::TagValue(t) if !t.model_days.is_empty() => "not recorded for tag totals",
                _ => "no data",
            }
        )),
        esc(&opts.rendered_at)
    )
}

fn data_links(ctx: &Ctx, page: &Page, view: &View) -> String {
    if ctx.widget {
        return String::new();
    }
    let url = page_url(page);
    let sep = if url.contains('?') { '&' } else { '?' };
    format!(
        "<p class=\"data\">This page as data: <a href=\"{u}{sep}format=csv\">CSV</a> · <a href=\"{u}{sep}format=json\">JSON</a> (tables: {})</p>",
        esc(&table_names(view).join(", ")),
        u = esc(&url)
    )
}

const FOOTER: &str = "<footer><p>Days and months are UTC, from each record's own timestamp. Money is exact: tables show cents, hover for the exact value. ≥ marks a lower bound: some invocations had no price and are not in the spend.</p></footer>";

fn head(title: &str, opts: &Options) -> String {
    match opts.mode {
        Mode::Page { refresh_secs } => format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{}</title><link rel=\"stylesheet\" href=\"/assets/dashboard.css\"><script src=\"/assets/refresh.js\" defer></script></head>\
             <body data-refresh=\"{refresh_secs}\">",
            esc(title)
        ),
        Mode::Widget => format!("<div class=\"bm-widget\"><style>{CSS}</style>"),
    }
}

fn tail(opts: &Options) -> &'static str {
    match opts.mode {
        Mode::Page { .. } => "</body></html>\n",
        Mode::Widget => "</div>",
    }
}

/// Renders a page.
pub fn render(built: &Built, page: &Page, opts: &Options) -> String {
    let ctx = Ctx {
        widget: opts.mode == Mode::Widget,
    };
    let (title, body) = match &built.view {
        View::Overview(o) => (format!("Overview {}", o.month), overview(&ctx, o)),
        View::User(u) => (format!("User {}", u.user), user_page(&ctx, u)),
        View::Model(m) => (format!("Model {}", m.model), model_page(&ctx, m)),
        View::Day(d) => (format!("Day {}", d.day), day_page(&ctx, d)),
        View::Budgets(b) => ("Budgets".to_string(), budgets_page(&ctx, b)),
        View::TagKey(t) => (format!("Tag {} {}", t.key, t.month), tag_key_page(&ctx, t)),
        View::TagValue(t) => (
            format!("Tag {}={}", t.key, t.value),
            tag_value_page(&ctx, t),
        ),
    };
    let today = today_of(&built.view);
    let mut out = head(&format!("{title} · bedrock-meter"), opts);
    out.push_str("<header>");
    out.push_str(&nav(&ctx, today, &built.tag_keys));
    out.push_str(&freshness(built, opts));
    out.push_str("</header><main id=\"content\">");
    out.push_str(&body);
    out.push_str(&data_links(&ctx, page, &built.view));
    out.push_str("</main>");
    if !ctx.widget {
        out.push_str(FOOTER);
    }
    out.push_str(tail(opts));
    out
}

fn today_of(view: &View) -> Day {
    match view {
        View::Overview(o) => o.today,
        View::User(u) => u.today,
        View::Budgets(b) => b.today,
        View::Day(d) => d.day,
        View::Model(m) => m.to,
        View::TagKey(t) => t.today,
        View::TagValue(t) => t.to,
    }
}

/// A page that could not be built: the message in words, nothing else.
pub fn error_page(status: &str, message: &str, opts: &Options) -> String {
    let mut out = head(&format!("{status} · bedrock-meter"), opts);
    if opts.mode != Mode::Widget {
        out.push_str("<header><nav><strong>bedrock-meter</strong> <a href=\"/\">Overview</a> <a href=\"/budgets\">Budgets</a></nav></header>");
    }
    let _ = write!(
        out,
        "<main id=\"content\"><h1>{}</h1><p class=\"error\" role=\"alert\">{}</p><p class=\"note\">rendered at {}</p></main>",
        esc(status),
        esc(message),
        esc(&opts.rendered_at)
    );
    out.push_str(tail(opts));
    out
}
