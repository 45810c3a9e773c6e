//! Reading CUR 2.0 exports: files, folders and manifests.
//!
//! A path is a file, a folder (searched recursively, hidden files and
//! `.json` files left out) or a CUR 2.0 manifest (`*-Manifest.json`, whose
//! `dataFiles` are read). A file's format is told by its content, never its
//! name: `1f 8b` is gzip CSV (multi-member too), `PAR1` is Parquet,
//! anything else plain CSV. Columns are found by name; legacy CUR names
//! (`lineItem/UsageType`) are accepted as their CUR 2.0 spelling.
//!
//! Every error names the file and, where there is one, the line (CSV; the
//! header is line 1) or row (Parquet; the first row is 1).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;

use crate::bill::{RawLine, REQUIRED_COLUMNS};
use crate::ReconcileError;

/// What a file's first bytes say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    GzipCsv,
    Parquet,
    Csv,
    /// A JSON document (a manifest, when named explicitly).
    Json,
}

/// Tells a file's format from its first bytes.
pub fn sniff(head: &[u8]) -> Format {
    if head.starts_with(&[0x1f, 0x8b]) {
        Format::GzipCsv
    } else if head.starts_with(b"PAR1") {
        Format::Parquet
    } else if head
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{')
    {
        Format::Json
    } else {
        Format::Csv
    }
}

/// Reads every path, calling `sink` per line. Returns the files read, in
/// order; a file reached twice (a folder and its manifest) is read once.
pub fn read_paths(
    paths: &[PathBuf],
    sink: &mut dyn FnMut(RawLine) -> Result<(), ReconcileError>,
) -> Result<Vec<String>, ReconcileError> {
    let mut files = Vec::new();
    for p in paths {
        collect(p, true, &mut files)?;
    }
    let mut seen = BTreeSet::new();
    let mut read = Vec::new();
    for f in files {
        let canonical = f.canonicalize().unwrap_or_else(|_| f.clone());
        if seen.insert(canonical) {
            read_file(&f, sink)?;
            read.push(f.display().to_string());
        }
    }
    Ok(read)
}

/// The data files a path stands for.
fn collect(path: &Path, named: bool, out: &mut Vec<PathBuf>) -> Result<(), ReconcileError> {
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path)
        .map_err(|e| ReconcileError::file(&shown, format!("cannot read: {e}; check the path")))?;
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| ReconcileError::file(&shown, format!("cannot list the folder: {e}")))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for e in entries {
            let name = e.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if name.starts_with('.') || name.ends_with(".json") {
                continue;
            }
            collect(&e, false, out)?;
        }
        return Ok(());
    }
    if named && sniff(&head(path)?) == Format::Json {
        return manifest_files(path, out);
    }
    out.push(path.to_path_buf());
    Ok(())
}

fn head(path: &Path) -> Result<Vec<u8>, ReconcileError> {
    let mut buf = [0u8; 64];
    let mut f = File::open(path).map_err(|e| {
        ReconcileError::file(&path.display().to_string(), format!("cannot open: {e}"))
    })?;
    let n = f.read(&mut buf).map_err(|e| {
        ReconcileError::file(&path.display().to_string(), format!("cannot read: {e}"))
    })?;
    Ok(buf[..n].to_vec())
}

/// The files a CUR 2.0 manifest lists in `dataFiles` (S3 URIs), found under
/// the manifest's own folder or one of its parents by their key's tail:
/// copy the export folder as S3 lays it out (`data/`, `metadata/`).
fn manifest_files(path: &Path, out: &mut Vec<PathBuf>) -> Result<(), ReconcileError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ReconcileError::file(&shown, format!("cannot read: {e}")))?;
    let doc: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        ReconcileError::at(
            &shown,
            e.line() as u64,
            format!("not valid JSON ({e}); a CUR 2.0 manifest is a JSON object with `dataFiles`"),
        )
    })?;
    let files = doc
        .get("dataFiles")
        .and_then(|d| d.as_array())
        .ok_or_else(|| {
            ReconcileError::file(
                &shown,
                "is JSON without a `dataFiles` list: name a CUR 2.0 manifest (*-Manifest.json), a data file or a folder",
            )
        })?;
    let base = path.parent().unwrap_or(Path::new("."));
    for f in files {
        let uri = f.as_str().ok_or_else(|| {
            ReconcileError::file(&shown, "`dataFiles` holds something other than a string")
        })?;
        let key = uri
            .strip_prefix("s3://")
            .and_then(|r| r.split_once('/').map(|(_, k)| k))
            .unwrap_or(uri);
        let parts: Vec<&str> = key.split('/').filter(|p| !p.is_empty()).collect();
        let found = base.ancestors().find_map(|dir| {
            (1..=parts.len()).rev().find_map(|k| {
                let candidate = parts[parts.len() - k..]
                    .iter()
                    .fold(dir.to_path_buf(), |p, c| p.join(c));
                candidate.is_file().then_some(candidate)
            })
        });
        match found {
            Some(p) => out.push(p),
            None => {
                return Err(ReconcileError::file(
                    &shown,
                    format!(
                        "lists {uri}, which is not under {} or its parents: download the whole export \
                         folder (aws s3 sync s3://BUCKET/PREFIX/EXPORT .) and name the manifest there",
                        base.display()
                    ),
                ))
            }
        }
    }
    Ok(())
}

/// Reads one data file (format by content).
pub fn read_file(
    path: &Path,
    sink: &mut dyn FnMut(RawLine) -> Result<(), ReconcileError>,
) -> Result<(), ReconcileError> {
    let shown = path.display().to_string();
    match sniff(&head(path)?) {
        Format::Parquet => read_parquet(path, sink),
        Format::GzipCsv => {
            let f = File::open(path).map_err(|e| ReconcileError::file(&shown, e.to_string()))?;
            let gz = flate2::read::MultiGzDecoder::new(BufReader::new(f));
            read_csv(&shown, gz, true, sink)
        }
        Format::Csv => {
            let f = File::open(path).map_err(|e| ReconcileError::file(&shown, e.to_string()))?;
            read_csv(&shown, BufReader::new(f), false, sink)
        }
        Format::Json => Err(ReconcileError::file(
            &shown,
            "is JSON, not a CUR data file: name a manifest directly (not inside a folder), or a CSV, gzip CSV or Parquet file",
        )),
    }
}

/// A column name in its CUR 2.0 spelling: `lineItem/UsageType` →
/// `line_item_usage_type`, `pricing/unit` → `pricing_unit`.
pub fn column_name(raw: &str) -> String {
    let raw = raw.trim().trim_start_matches('\u{feff}');
    let mut out = String::with_capacity(raw.len() + 8);
    let mut prev_lower = false;
    for c in raw.chars() {
        if c == '/' || c == ' ' || c == '-' {
            out.push('_');
            prev_lower = false;
        } else if c.is_ascii_uppercase() {
            if prev_lower {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
            prev_lower = false;
        } else {
            prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
            out.push(c);
        }
    }
    out
}

/// Builds a [`RawLine`] from named values. `get` returns a column's text.
fn raw_line(
    file: &str,
    line: u64,
    get: &dyn Fn(&str) -> Option<String>,
    mut product: BTreeMap<String, String>,
) -> RawLine {
    let req = |c: &str| get(c).unwrap_or_default();
    let opt = |c: &str| get(c).filter(|v| !v.trim().is_empty());
    if let Some(n) = opt("product_product_name") {
        product.entry("product_name".into()).or_insert(n);
    }
    RawLine {
        file: file.to_string(),
        line,
        start: req("line_item_usage_start_date"),
        end: opt("line_item_usage_end_date"),
        line_item_type: req("line_item_line_item_type"),
        product_code: req("line_item_product_code"),
        usage_type: req("line_item_usage_type"),
        operation: opt("line_item_operation"),
        amount: req("line_item_usage_amount"),
        unit: opt("pricing_unit"),
        cost: req("line_item_unblended_cost"),
        resource_id: opt("line_item_resource_id"),
        currency: opt("line_item_currency_code"),
        billing_entity: opt("bill_billing_entity"),
        servicecode: opt("product_servicecode").or_else(|| product.get("servicecode").cloned()),
        product,
        estimated: false,
        principal: opt("line_item_iam_principal"),
    }
}

fn check_columns(file: &str, names: &BTreeSet<String>) -> Result<(), ReconcileError> {
    let missing: Vec<&str> = REQUIRED_COLUMNS
        .iter()
        .copied()
        .filter(|c| !names.contains(*c))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(ReconcileError::at(
        file,
        1,
        format!(
            "missing required column{} {}: is this a CUR 2.0 data file (Data Exports, table \
             COST_AND_USAGE_REPORT)? Include every column, or at least {}",
            if missing.len() > 1 { "s" } else { "" },
            missing.join(", "),
            REQUIRED_COLUMNS.join(", ")
        ),
    ))
}

/// Parses a map column's text: a JSON object (`{"product_name":"..."}`), the
/// `{key=value, ...}` form Athena prints, or blank.
pub fn parse_map(text: &str) -> Option<BTreeMap<String, String>> {
    let t = text.trim();
    if t.is_empty() {
        return Some(BTreeMap::new());
    }
    if let Ok(serde_json::Value::Object(o)) = serde_json::from_str::<serde_json::Value>(t) {
        return Some(
            o.into_iter()
                .map(|(k, v)| {
                    let v = match v {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (k, v)
                })
                .collect(),
        );
    }
    let inner = t.strip_prefix('{')?.strip_suffix('}')?;
    let mut map = BTreeMap::new();
    for pair in inner.split(", ") {
        if pair.trim().is_empty() {
            continue;
        }
        let (k, v) = pair.split_once('=')?;
        map.insert(k.trim().to_string(), v.to_string());
    }
    Some(map)
}

fn read_csv<R: Read>(
    file: &str,
    reader: R,
    gzip: bool,
    sink: &mut dyn FnMut(RawLine) -> Result<(), ReconcileError>,
) -> Result<(), ReconcileError> {
    let mut csv = csv::ReaderBuilder::new()
        .flexible(false)
        .has_headers(true)
        .from_reader(reader);
    let mut last_line = 1u64;
    let io_error = |e: csv::Error, line: u64| -> ReconcileError {
        let truncated = matches!(e.kind(), csv::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof);
        match e.kind() {
            csv::ErrorKind::Io(_) if gzip && truncated => ReconcileError::at(
                file,
                line,
                "the gzip stream ends early: the file is truncated; download it again",
            ),
            csv::ErrorKind::Io(io) if gzip => ReconcileError::at(
                file,
                line,
                format!("not readable as gzip ({io}); download it again"),
            ),
            csv::ErrorKind::UnequalLengths {
                expected_len, len, ..
            } => ReconcileError::at(
                file,
                e.position().map_or(line, |p| p.line()),
                format!(
                    "{len} fields where the header has {expected_len}: the file is cut or not CSV"
                ),
            ),
            csv::ErrorKind::Utf8 { .. } => ReconcileError::at(
                file,
                e.position().map_or(line, |p| p.line()),
                "not UTF-8 text: is this a CUR CSV file?",
            ),
            _ => ReconcileError::at(file, line, format!("cannot read CSV: {e}")),
        }
    };
    let headers = csv.headers().map_err(|e| io_error(e, 1))?.clone();
    let index: HashMap<String, usize> = headers
        .iter()
        .enumerate()
        .map(|(i, h)| (column_name(h), i))
        .collect();
    check_columns(file, &index.keys().cloned().collect())?;
    let product_cols: Vec<(String, usize)> = index
        .iter()
        .filter_map(|(name, i)| {
            name.strip_prefix("product_")
                .filter(|rest| *rest != "servicecode")
                .map(|rest| (rest.to_string(), *i))
        })
        .collect();
    let map_col = index.get("product").copied();
    let mut record = csv::StringRecord::new();
    loop {
        match csv.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(io_error(e, last_line + 1)),
        }
        let line = record.position().map_or(last_line + 1, |p| p.line());
        last_line = line;
        let mut product = BTreeMap::new();
        if let Some(i) = map_col {
            let text = record.get(i).unwrap_or_default();
            product = parse_map(text).ok_or_else(|| {
                ReconcileError::at(
                    file,
                    line,
                    format!("column `product` is not a map (JSON object or {{key=value, ...}}): `{text}`"),
                )
            })?;
        }
        for (name, i) in &product_cols {
            if let Some(v) = record.get(*i).filter(|v| !v.is_empty()) {
                product.entry(name.clone()).or_insert_with(|| v.to_string());
            }
        }
        let get = |c: &str| {
            index
                .get(c)
                .and_then(|i| record.get(*i))
                .map(str::to_string)
        };
        sink(raw_line(file, line, &get, product))?;
    }
    Ok(())
}

/// A Parquet value as text. Doubles print in their shortest exact decimal
/// form (`4.65`), timestamps as RFC 3339 UTC.
fn field_text(field: &Field) -> Option<String> {
    let ts = |nanos: i128| {
        time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
    };
    match field {
        Field::Null => None,
        Field::Str(s) => Some(s.clone()),
        Field::Double(d) => Some(format!("{d}")),
        Field::Float(f) => Some(format!("{f}")),
        Field::TimestampMillis(ms) => ts(i128::from(*ms) * 1_000_000),
        Field::TimestampMicros(us) => ts(i128::from(*us) * 1_000),
        Field::Date(days) => ts(i128::from(*days) * 86_400 * 1_000_000_000),
        Field::Bytes(b) => b.as_utf8().ok().map(str::to_string),
        other => Some(other.to_string()),
    }
}

fn read_parquet(
    path: &Path,
    sink: &mut dyn FnMut(RawLine) -> Result<(), ReconcileError>,
) -> Result<(), ReconcileError> {
    let file = path.display().to_string();
    let f = File::open(path).map_err(|e| ReconcileError::file(&file, e.to_string()))?;
    let reader = SerializedFileReader::new(f).map_err(|e| {
        ReconcileError::file(
            &file,
            format!("not a complete Parquet file ({e}): the file is truncated or damaged; download it again"),
        )
    })?;
    let fields: BTreeSet<String> = reader
        .metadata()
        .file_metadata()
        .schema()
        .get_fields()
        .iter()
        .map(|t| column_name(t.name()))
        .collect();
    check_columns(&file, &fields)?;
    let rows = reader.get_row_iter(None).map_err(|e| {
        ReconcileError::file(
            &file,
            format!("cannot read Parquet rows ({e}); download it again"),
        )
    })?;
    for (i, row) in rows.enumerate() {
        let n = i as u64 + 1;
        let row = row.map_err(|e| {
            ReconcileError::at(
                &file,
                n,
                format!("cannot read this Parquet row ({e}): the file is truncated or damaged, or uses a compression this build cannot read (Snappy and gzip are supported)"),
            )
        })?;
        let mut values: HashMap<String, String> = HashMap::new();
        let mut product = BTreeMap::new();
        for (name, field) in row.get_column_iter() {
            let name = column_name(name);
            if let Field::MapInternal(map) = field {
                if name == "product" {
                    for (k, v) in map.entries() {
                        if let (Some(k), Some(v)) = (field_text(k), field_text(v)) {
                            product.insert(k, v);
                        }
                    }
                }
                continue;
            }
            if let Some(v) = field_text(field) {
                if let Some(rest) = name
                    .strip_prefix("product_")
                    .filter(|r| *r != "servicecode")
                {
                    product.entry(rest.to_string()).or_insert_with(|| v.clone());
                }
                values.insert(name, v);
            }
        }
        let get = |c: &str| values.get(c).cloned();
        sink(raw_line(&file, n, &get, product))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_and_cur2_column_names_meet() {
        assert_eq!(column_name("lineItem/UsageType"), "line_item_usage_type");
        assert_eq!(
            column_name("lineItem/UsageStartDate"),
            "line_item_usage_start_date"
        );
        assert_eq!(
            column_name("lineItem/LineItemType"),
            "line_item_line_item_type"
        );
        assert_eq!(column_name("pricing/unit"), "pricing_unit");
        assert_eq!(column_name("line_item_usage_type"), "line_item_usage_type");
        assert_eq!(
            column_name("\u{feff}bill_billing_entity"),
            "bill_billing_entity"
        );
    }

    #[test]
    fn map_columns_read_as_json_or_as_athena_prints_them() {
        let want: BTreeMap<String, String> = [
            (
                "product_name".to_string(),
                "Claude Sonnet 4.5 (Amazon Bedrock Edition)".to_string(),
            ),
            ("region".to_string(), "us-east-1".to_string()),
        ]
        .into();
        assert_eq!(
            parse_map(
                r#"{"product_name":"Claude Sonnet 4.5 (Amazon Bedrock Edition)","region":"us-east-1"}"#
            ),
            Some(want.clone())
        );
        assert_eq!(
            parse_map(
                "{product_name=Claude Sonnet 4.5 (Amazon Bedrock Edition), region=us-east-1}"
            ),
            Some(want)
        );
        assert_eq!(parse_map(""), Some(BTreeMap::new()));
        assert_eq!(parse_map("Claude"), None);
    }

    #[test]
    fn formats_are_told_by_content() {
        assert_eq!(sniff(&[0x1f, 0x8b, 8, 0]), Format::GzipCsv);
        assert_eq!(sniff(b"PAR1\x15\x04"), Format::Parquet);
        assert_eq!(sniff(b"  {\"dataFiles\""), Format::Json);
        assert_eq!(sniff(b"bill_payer_account_id,"), Format::Csv);
    }
}
