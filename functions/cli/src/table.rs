//! The CLI's row output: CSV with formula-neutralised cells, and aligned
//! text tables. Shared by `report` and `cost`.

/// Widest a table column gets (longer cells are cut).
const MAX_WIDTH: usize = 60;

/// One CSV cell. User and model ids are caller-controlled: a cell a
/// spreadsheet would run as a formula (starting with `=`, `+`, `-`, `@`, tab
/// or CR) gets a leading `'`, then the usual quoting.
pub fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// A header line and one line per row, every cell through [`csv_field`].
pub fn csv(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = headers.join(",");
    out.push('\n');
    for row in rows {
        let cells: Vec<String> = row.iter().map(|c| csv_field(c)).collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

/// An aligned text table: columns from `right_from` on are right-aligned
/// (numbers), the others left-aligned; cells are cut at 60 characters.
pub fn text(headers: &[&str], rows: &[Vec<String>], right_from: usize) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count().min(MAX_WIDTH));
        }
    }
    let line = |cols: &mut dyn Iterator<Item = &str>| {
        let mut l = cols
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, &w))| {
                let c: String = c.chars().take(MAX_WIDTH).collect();
                if i >= right_from {
                    format!("{c:>w$}")
                } else {
                    format!("{c:<w$}")
                }
            })
            .collect::<Vec<_>>()
            .join("  ");
        l.truncate(l.trim_end().len());
        l.push('\n');
        l
    };
    let mut out = line(&mut headers.iter().copied());
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_right_aligned_and_long_cells_cut() {
        let rows = vec![
            vec!["alice".to_string(), "7".to_string()],
            vec!["x".repeat(80), "1234".to_string()],
        ];
        let t = text(&["user", "n"], &rows, 1);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], format!("{:<60}  {:>4}", "user", "n"));
        assert_eq!(lines[1], format!("{:<60}  {:>4}", "alice", "7"));
        assert_eq!(lines[2], format!("{}  1234", "x".repeat(60)));
    }

    #[test]
    fn csv_cells_that_a_spreadsheet_would_run_are_neutralised_and_quoted() {
        let out = csv(&["a", "b"], &[vec!["=1+1".into(), "x,\"y\"".into()]]);
        assert_eq!(out, "a,b\n'=1+1,\"x,\"\"y\"\"\"\n");
    }

    #[test]
    fn csv_cells_a_spreadsheet_would_run_as_formulas_are_neutralised() {
        for (raw, want) in [
            ("=HYPERLINK(\"x\")", "\"'=HYPERLINK(\"\"x\"\")\""),
            ("+1", "'+1"),
            ("-2+3", "'-2+3"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("\rx", "\"'\rx\""),
            ("alice", "alice"),
            ("a,b", "\"a,b\""),
            ("0.0165", "0.0165"),
        ] {
            assert_eq!(csv_field(raw), want, "{raw:?}");
        }
    }
}
