//! Inline SVG charts, rendered on the server (no script, no external
//! asset). Heights are integer pixels computed from exact pico-dollars.
//! Colours come from CSS classes (`c0`..`c8`), so the charts need no
//! inline style.

use std::collections::BTreeMap;

use meter_core::{Day, Usd};

use crate::format::{esc, usd_cents};
use crate::model::Row;

/// Series that get their own colour; the rest are "other".
pub const MAX_SERIES: usize = 8;
const W: u128 = 760;
const H: u128 = 220;
const LEFT: u128 = 70;
const BOTTOM: u128 = 24;
const TOP: u128 = 10;

fn px(v: Usd, max: Usd, span: u128) -> u128 {
    if max == Usd::ZERO {
        return 0;
    }
    v.picos().saturating_mul(span) / max.picos()
}

/// The series names in colour order (biggest spend first, at most
/// [`MAX_SERIES`]) and whether an "other" series is needed.
pub fn series_order(rows: &[Row]) -> (Vec<String>, bool) {
    let mut totals: BTreeMap<&str, Usd> = BTreeMap::new();
    for r in rows {
        let t = totals.entry(r.model.as_deref().unwrap_or("")).or_default();
        *t = t.saturating_add(r.cost);
    }
    let mut v: Vec<(&str, Usd)> = totals.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let other = v.len() > MAX_SERIES;
    (
        v.into_iter()
            .take(MAX_SERIES)
            .map(|(m, _)| m.to_string())
            .collect(),
        other,
    )
}

fn axis(max: Usd, out: &mut String) {
    let y0 = TOP + (H - TOP - BOTTOM);
    out.push_str(&format!(
        "<line class=\"axis\" x1=\"{LEFT}\" y1=\"{y0}\" x2=\"{W}\" y2=\"{y0}\"/>"
    ));
    out.push_str(&format!(
        "<text class=\"tick\" x=\"{}\" y=\"{}\" text-anchor=\"end\">$0</text>",
        LEFT - 4,
        y0
    ));
    out.push_str(&format!(
        "<line class=\"grid\" x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{W}\" y2=\"{TOP}\"/>\
         <text class=\"tick\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
        LEFT - 4,
        TOP + 10,
        esc(&usd_cents(max))
    ));
}

/// Daily spend bars stacked by model, from per-(model, day) rows, over
/// `days`. `None` when there is no spend and no usage to draw (the caller
/// says so in words instead).
pub fn stacked_days(days: &[Day], rows: &[Row], label: &str) -> Option<String> {
    if days.is_empty() || rows.iter().all(|r| r.invocations == 0) {
        return None;
    }
    let (order, _) = series_order(rows);
    let class_of = |m: &str| {
        order
            .iter()
            .position(|o| o == m)
            .map_or("c8".to_string(), |i| format!("c{i}"))
    };
    // day -> [(series index or 8, cost, model)]
    let mut by_day: BTreeMap<Day, Vec<(String, Usd, String)>> = BTreeMap::new();
    for r in rows {
        let (Some(d), Some(m)) = (r.day(), r.model.as_deref()) else {
            continue;
        };
        by_day
            .entry(d)
            .or_default()
            .push((class_of(m), r.cost, m.to_string()));
    }
    let max = by_day
        .values()
        .map(|v| v.iter().fold(Usd::ZERO, |a, x| a.saturating_add(x.1)))
        .max()
        .unwrap_or(Usd::ZERO);
    let plot_h = H - TOP - BOTTOM;
    let n = days.len() as u128;
    let slot = (W - LEFT) / n.max(1);
    let bar = (slot * 4 / 5).max(1);
    let mut out = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{}\">",
        esc(label)
    );
    out.push_str(&format!("<title>{}</title>", esc(label)));
    axis(max, &mut out);
    for (i, d) in days.iter().enumerate() {
        let x = LEFT + slot * i as u128 + (slot - bar) / 2;
        let mut segs = by_day.remove(d).unwrap_or_default();
        segs.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.2.cmp(&b.2)));
        let mut base = TOP + plot_h;
        // Heights from cumulative sums, so rounding never stacks up.
        let mut cum = Usd::ZERO;
        for (class, cost, model) in segs {
            let before = px(cum, max, plot_h);
            cum = cum.saturating_add(cost);
            let h = px(cum, max, plot_h) - before;
            if h == 0 {
                continue;
            }
            base -= h;
            out.push_str(&format!(
                "<rect class=\"{class}\" x=\"{x}\" y=\"{base}\" width=\"{bar}\" height=\"{h}\">\
                 <title>{} UTC · {}: {} (exact {} USD)</title></rect>",
                d,
                esc(&model),
                usd_cents(cost),
                cost
            ));
        }
        let show_label = n <= 16 || i % ((n as usize).div_ceil(8)) == 0;
        if show_label {
            let date = d.date();
            out.push_str(&format!(
                "<text class=\"tick\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{:02}-{:02}</text>",
                x + bar / 2,
                H - 6,
                date.month() as u8,
                date.day()
            ));
        }
    }
    out.push_str("</svg>");
    Some(out)
}

/// The chart's legend: one swatch per series, in colour order.
pub fn legend(rows: &[Row]) -> String {
    let (order, other) = series_order(rows);
    let mut out = String::from("<ul class=\"legend\">");
    for (i, m) in order.iter().enumerate() {
        out.push_str(&format!(
            "<li><svg class=\"swatch\" viewBox=\"0 0 10 10\"><rect class=\"c{i}\" width=\"10\" height=\"10\"/></svg>{}</li>",
            esc(m)
        ));
    }
    if other {
        out.push_str("<li><svg class=\"swatch\" viewBox=\"0 0 10 10\"><rect class=\"c8\" width=\"10\" height=\"10\"/></svg>other models</li>");
    }
    out.push_str("</ul>");
    out
}

/// A budget burn-up over a month: cumulative spend per day, the limit as
/// a line, and the projection as a dashed line to the month's last day.
pub fn burn_up(
    month_days: &[Day],
    daily: &BTreeMap<Day, Usd>,
    limit: Usd,
    projection: Option<Usd>,
    label: &str,
) -> String {
    let mut cum = Vec::new();
    let mut total = Usd::ZERO;
    let last_data = daily.keys().max().copied();
    for d in month_days {
        if Some(*d) > last_data {
            break;
        }
        total = total.saturating_add(daily.get(d).copied().unwrap_or_default());
        cum.push(total);
    }
    let max = [Some(limit), projection, Some(total)]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(Usd::ZERO);
    let plot_h = H - TOP - BOTTOM;
    let n = month_days.len().max(1) as u128;
    let step = (W - LEFT) / n;
    let y = |v: Usd| TOP + plot_h - px(v, max, plot_h);
    let mut out = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{}\"><title>{}</title>",
        esc(label),
        esc(label)
    );
    axis(max, &mut out);
    let ly = y(limit);
    out.push_str(&format!(
        "<line class=\"limit\" x1=\"{LEFT}\" y1=\"{ly}\" x2=\"{W}\" y2=\"{ly}\"><title>limit {} (exact {} USD)</title></line>",
        usd_cents(limit),
        limit
    ));
    let points: Vec<String> = cum
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{},{}", LEFT + step * i as u128 + step / 2, y(*v)))
        .collect();
    if !points.is_empty() {
        out.push_str(&format!(
            "<polyline class=\"spend\" points=\"{}\"><title>spend to date {} (exact {} USD)</title></polyline>",
            points.join(" "),
            usd_cents(total),
            total
        ));
    }
    if let (Some(p), Some(last)) = (projection, points.last()) {
        out.push_str(&format!(
            "<polyline class=\"projection\" points=\"{last} {},{}\"><title>projection {} at the month's end</title></polyline>",
            LEFT + step * (n - 1) + step / 2,
            y(p),
            usd_cents(p)
        ));
    }
    for (i, d) in month_days.iter().enumerate() {
        if i % 7 == 0 {
            let date = d.date();
            out.push_str(&format!(
                "<text class=\"tick\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{:02}-{:02}</text>",
                LEFT + step * i as u128 + step / 2,
                H - 6,
                date.month() as u8,
                date.day()
            ));
        }
    }
    out.push_str("</svg>");
    out
}

/// A small bar of `pct` percent of a limit (capped at 100 wide; `over` when
/// at or past 100%).
pub fn budget_bar(pct: u128, title: &str) -> String {
    let w = pct.min(100);
    let class = if pct >= 100 {
        "over"
    } else if pct >= 80 {
        "warn"
    } else {
        "ok"
    };
    format!(
        "<svg class=\"bar\" viewBox=\"0 0 100 10\" role=\"img\" aria-label=\"{0}\"><title>{0}</title>\
         <rect class=\"track\" width=\"100\" height=\"10\"/><rect class=\"{class}\" width=\"{w}\" height=\"10\"/></svg>",
        esc(title)
    )
}

/// A small bar of `pct` percent of a whole (a value's share of its tag).
pub fn share_bar(pct: u128, title: &str) -> String {
    format!(
        "<svg class=\"bar\" viewBox=\"0 0 100 10\" role=\"img\" aria-label=\"{0}\"><title>{0}</title>\
         <rect class=\"track\" width=\"100\" height=\"10\"/><rect class=\"c0\" width=\"{w}\" height=\"10\"/></svg>",
        esc(title),
        w = pct.min(100)
    )
}

/// Horizontal spend bars, one per row's tag value, in the rows' order (at
/// most [`MAX_BARS`]); each labelled with its value (escaped) and its spend
/// to the cent, `≥` when some of its invocations are unpriced.
pub fn value_bars(rows: &[Row], label: &str) -> String {
    const ROW_H: u128 = 22;
    const LABEL_W: u128 = 200;
    const MONEY_W: u128 = 110;
    let shown: Vec<&Row> = rows.iter().take(MAX_BARS).collect();
    let max = shown.iter().map(|r| r.cost).max().unwrap_or(Usd::ZERO);
    let h = ROW_H * shown.len() as u128 + 4;
    let span = W - LABEL_W - MONEY_W;
    let mut out = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {W} {h}\" role=\"img\" aria-label=\"{0}\"><title>{0}</title>",
        esc(label)
    );
    for (i, r) in shown.iter().enumerate() {
        let y = ROW_H * i as u128 + 2;
        let value = r.value.as_deref().unwrap_or("");
        let shown_value: String = if value.chars().count() > 28 {
            value.chars().take(27).chain(['…']).collect()
        } else {
            value.to_string()
        };
        let w = px(r.cost, max, span).max(u128::from(r.cost > Usd::ZERO));
        let lower = if r.is_lower_bound() { "≥ " } else { "" };
        out.push_str(&format!(
            "<text class=\"tick\" x=\"{lx}\" y=\"{ty}\" text-anchor=\"end\">{v}</text>\
             <rect class=\"c{c}\" x=\"{LABEL_W}\" y=\"{y}\" width=\"{w}\" height=\"{bh}\"><title>{t}: {lower}{m} (exact {e} USD)</title></rect>\
             <text class=\"tick\" x=\"{mx}\" y=\"{ty}\">{lower}{m}</text>",
            lx = LABEL_W - 6,
            ty = y + 14,
            v = esc(&shown_value),
            c = i.min(MAX_SERIES),
            bh = ROW_H - 6,
            t = esc(value),
            m = esc(&usd_cents(r.cost)),
            e = r.cost,
            mx = LABEL_W + w + 6,
        ));
    }
    out.push_str("</svg>");
    out
}

/// Most bars [`value_bars`] draws (the table lists every value).
pub const MAX_BARS: usize = 20;

#[cfg(test)]
mod tests {
    use super::*;

    fn row(model: &str, day: &str, cost: &str) -> Row {
        let cost: Usd = cost.parse().unwrap();
        Row {
            model: Some(model.into()),
            day: Some(day.into()),
            invocations: 1,
            cost,
            cost_usd: cost.to_string(),
            ..Row::total("model_day")
        }
    }

    #[test]
    fn stacked_bars_escape_model_names_and_carry_the_exact_value() {
        let days = [Day::parse("2026-11-20").unwrap()];
        let rows = [row("<script>x</script>", "2026-11-20", "0.000123456789")];
        let svg = stacked_days(&days, &rows, "spend").unwrap();
        assert!(!svg.contains("<script>"), "{svg}");
        assert!(svg.contains("&lt;script&gt;"));
        assert!(svg.contains("exact 0.000123456789 USD"), "{svg}");
        assert!(!svg.contains("style="));
    }

    #[test]
    fn no_usage_draws_no_chart() {
        let days = [Day::parse("2026-11-20").unwrap()];
        assert_eq!(stacked_days(&days, &[], "spend"), None);
        assert_eq!(stacked_days(&[], &[row("m", "2026-11-20", "1")], "x"), None);
    }

    #[test]
    fn a_ninth_model_is_drawn_as_other() {
        let rows: Vec<Row> = (0..9)
            .map(|i| row(&format!("m{i}"), "2026-11-20", &format!("{}", 10 - i)))
            .collect();
        let (order, other) = series_order(&rows);
        assert_eq!(order.len(), MAX_SERIES);
        assert_eq!(order[0], "m0");
        assert!(other);
        let days = [Day::parse("2026-11-20").unwrap()];
        let svg = stacked_days(&days, &rows, "x").unwrap();
        assert!(svg.contains("class=\"c8\""));
    }

    #[test]
    fn stacked_segments_add_up_to_the_tallest_bar() {
        let days = [Day::parse("2026-11-20").unwrap()];
        let rows = [
            row("a", "2026-11-20", "1"),
            row("b", "2026-11-20", "1"),
            row("c", "2026-11-20", "1"),
        ];
        let svg = stacked_days(&days, &rows, "x").unwrap();
        let heights: u128 = svg
            .match_indices("height=\"")
            .map(|(i, _)| {
                let rest = &svg[i + 8..];
                rest[..rest.find('"').unwrap()].parse::<u128>().unwrap()
            })
            .sum();
        assert_eq!(heights, H - TOP - BOTTOM);
    }
}
