//! Text helpers: HTML escaping, money and counts for people, path
//! segments, CSV cells.

use meter_core::Usd;

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const PICOS_PER_CENT: u128 = 10_000_000_000;

/// Dollars to the cent, rounded half up, with thousands separators:
/// `$1,234.57`. A non-zero amount below half a cent shows as `<$0.01`
/// rather than a misleading `$0.00`.
pub fn usd_cents(v: Usd) -> String {
    let picos = v.picos();
    if picos > 0 && picos < PICOS_PER_CENT / 2 {
        return "<$0.01".to_string();
    }
    let cents = (picos + PICOS_PER_CENT / 2) / PICOS_PER_CENT;
    format!("${}.{:02}", group(cents / 100), cents % 100)
}

/// [`usd_cents`] for HTML: escaped, since `<$0.01` starts with `<`.
pub fn usd_html(v: Usd) -> String {
    esc(&usd_cents(v))
}

/// An integer with thousands separators: `1,234,567`.
pub fn group(n: u128) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `part` as a whole percentage of `whole` (rounded down), exactly.
pub fn percent(part: Usd, whole: Usd) -> u128 {
    if whole == Usd::ZERO {
        return 0;
    }
    part.picos().saturating_mul(100) / whole.picos()
}

/// Percent-encodes a path segment (every byte but unreserved characters).
pub fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes a percent-encoded path segment or query value (`+` stays `+` in
/// paths; query values pass `plus_is_space`). `None` when it is not UTF-8
/// or holds a bad escape.
pub fn percent_decode(s: &str, plus_is_space: bool) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// One CSV cell: quoted when needed, and neutralised when a spreadsheet
/// would run it as a formula (a leading `=`, `+`, `-`, `@`, tab or carriage
/// return gets a `'` in front, as OWASP recommends).
pub fn csv_cell(s: &str) -> String {
    let neutral;
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        neutral = format!("'{s}");
        neutral.as_str()
    } else {
        s
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(s: &str) -> Usd {
        s.parse().unwrap()
    }

    #[test]
    fn markup_in_an_id_is_escaped_to_inert_text() {
        assert_eq!(
            esc("<img src=x onerror=alert(1)>"),
            "&lt;img src=x onerror=alert(1)&gt;"
        );
        assert_eq!(esc("a\"b'c&d"), "a&quot;b&#39;c&amp;d");
    }

    #[test]
    fn money_shows_to_the_cent_rounding_half_up_and_never_hides_small_spend() {
        assert_eq!(usd_cents(usd("0")), "$0.00");
        assert_eq!(usd_cents(usd("0.000000000001")), "<$0.01");
        assert_eq!(usd_cents(usd("0.004999999999")), "<$0.01");
        assert_eq!(usd_cents(usd("0.005")), "$0.01");
        assert_eq!(usd_cents(usd("1.014999999999")), "$1.01");
        assert_eq!(usd_cents(usd("1.015")), "$1.02");
        assert_eq!(usd_cents(usd("1234567.891")), "$1,234,567.89");
        // In HTML the `<` of `<$0.01` is escaped (it would open a tag).
        assert_eq!(usd_html(usd("0.000000000001")), "&lt;$0.01");
        assert_eq!(usd_html(usd("1.015")), "$1.02");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
    }

    #[test]
    fn percentages_are_exact_and_round_down() {
        assert_eq!(percent(usd("0.79999"), usd("1")), 79);
        assert_eq!(percent(usd("0.8"), usd("1")), 80);
        assert_eq!(percent(usd("3"), usd("1")), 300);
        assert_eq!(percent(usd("3"), Usd::ZERO), 0);
    }

    #[test]
    fn path_segments_round_trip_whatever_they_hold() {
        for s in [
            "alice",
            "a b/c?d#e%f",
            "<img src=x>",
            "é",
            "us.anthropic.x:0",
        ] {
            let enc = path_segment(s);
            assert!(!enc.contains(['/', '?', '#', '<', ' ']), "{enc}");
            assert_eq!(percent_decode(&enc, false).as_deref(), Some(s));
        }
        assert_eq!(percent_decode("%zz", false), None);
        assert_eq!(percent_decode("a+b", true).as_deref(), Some("a b"));
    }

    #[test]
    fn csv_cells_that_a_spreadsheet_would_run_are_neutralised() {
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_cell("+1"), "'+1");
        assert_eq!(csv_cell("-2"), "'-2");
        assert_eq!(csv_cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_cell("\tx"), "'\tx");
        assert_eq!(csv_cell("alice"), "alice");
        assert_eq!(csv_cell("0.00000875"), "0.00000875");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
    }
}
