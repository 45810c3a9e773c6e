//! The operator CLI as an operator runs it: the real `bedrock-meter` binary
//! against DynamoDB Local. `init` (creates, safe twice, reports a table whose
//! schema differs from the data contract), `report` for each selection and
//! format checked against totals computed independently from the records
//! (`expected_totals`), `prices`, `replay`'s output flags and folder skips,
//! and the errors a reader sees when the endpoint, the credentials or the
//! table are wrong.
//!
//! Needs the CLI binary (`cargo build -p bedrock-meter-cli`; make test builds
//! it) and DynamoDB Local (scripts/with-dynamodb-local.sh).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType,
    TimeToLiveSpecification,
};
use aws_sdk_dynamodb::Client;
use integration_tests::*;
use tokio::sync::OnceCell;

fn cli_binary() -> PathBuf {
    workspace_binary("bedrock-meter", "bedrock-meter-cli")
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs the CLI on `table` with extra environment (`None` removes a variable).
fn cli_env(table: &str, args: &[&str], env: &[(&str, Option<&str>)]) -> Out {
    let mut c = Command::new(cli_binary());
    c.args(args)
        .env("USAGE_TABLE", table)
        .env_remove("RUST_LOG")
        .env_remove("PRICE_TABLE_PATH")
        .stdin(Stdio::null());
    for (k, v) in env {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    let out = c.output().expect("run bedrock-meter");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn cli(table: &str, args: &[&str]) -> Out {
    cli_env(table, args, &[])
}

/// Runs the CLI and requires exit 0.
fn ok(table: &str, args: &[&str]) -> Out {
    let out = cli(table, args);
    assert_eq!(
        out.code, 0,
        "{args:?} failed:\nstdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    out
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("bedrock-meter-{tag}-{}", fastrand::u64(..)));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn table_name(test: &str) -> String {
    format!("it-cli-{test}-{}", fastrand::u32(..))
}

// ---------------------------------------------------------------------------
// Money, independently: decimal strings <-> integer pico-dollars.
// ---------------------------------------------------------------------------

fn pico(s: &str) -> u128 {
    let (i, f) = s.split_once('.').unwrap_or((s, ""));
    assert!(f.len() <= 12, "more than 12 decimals: {s}");
    i.parse::<u128>().unwrap() * 1_000_000_000_000 + format!("{f:0<12}").parse::<u128>().unwrap()
}

fn decimal(p: u128) -> String {
    normalise_decimal(&format!(
        "{}.{:012}",
        p / 1_000_000_000_000,
        p % 1_000_000_000_000
    ))
}

fn sum(rows: &[&Totals]) -> Totals {
    let mut t = Totals::default();
    let mut cost = 0;
    for r in rows {
        t.invocations += r.invocations;
        t.errors += r.errors;
        t.input_tokens += r.input_tokens;
        t.output_tokens += r.output_tokens;
        t.cache_read_input_tokens += r.cache_read_input_tokens;
        t.cache_write_input_tokens += r.cache_write_input_tokens;
        t.unpriced_invocations += r.unpriced_invocations;
        cost += pico(&r.cost_usd);
    }
    t.cost_usd = decimal(cost);
    t
}

// ---------------------------------------------------------------------------
// Parsing the three output formats into (kind, user, model, period) -> Totals.
// ---------------------------------------------------------------------------

type Rows = BTreeMap<AggKey, Totals>;

fn insert_unique(rows: &mut Rows, k: AggKey, t: Totals) {
    let shown = k.clone();
    assert!(rows.insert(k, t).is_none(), "row {shown:?} printed twice");
}

fn parse_json(stdout: &str) -> Rows {
    let mut rows = Rows::new();
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        let n = |k: &str| u128::from(v[k].as_u64().unwrap_or_else(|| panic!("{k}: {line}")));
        let period = if v.get("month").is_some() {
            s("month")
        } else {
            s("day")
        };
        insert_unique(
            &mut rows,
            (s("kind"), s("user"), s("model"), period),
            Totals {
                invocations: n("invocations"),
                errors: n("errors"),
                input_tokens: n("input_tokens"),
                output_tokens: n("output_tokens"),
                cache_read_input_tokens: n("cache_read_input_tokens"),
                cache_write_input_tokens: n("cache_write_input_tokens"),
                unpriced_invocations: n("unpriced_invocations"),
                cost_usd: normalise_decimal(&s("cost_usd")),
            },
        );
    }
    rows
}

/// One CSV line into cells (RFC 4180 quoting).
fn csv_cells(line: &str) -> Vec<String> {
    let mut cells = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                cells.last_mut().unwrap().push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => cells.push(String::new()),
            (c, _) => cells.last_mut().unwrap().push(c),
        }
    }
    cells
}

const CSV_HEADER: &str =
    "kind,user,model,period,invocations,errors,input,output,cache_read,cache_write,unpriced,cost_usd";

fn parse_csv(stdout: &str) -> Rows {
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some(CSV_HEADER), "{stdout}");
    let mut rows = Rows::new();
    for line in lines {
        let c = csv_cells(line);
        assert_eq!(c.len(), 12, "{line}");
        let n = |i: usize| c[i].parse::<u128>().unwrap();
        insert_unique(
            &mut rows,
            (c[0].clone(), c[1].clone(), c[2].clone(), c[3].clone()),
            Totals {
                invocations: n(4),
                errors: n(5),
                input_tokens: n(6),
                output_tokens: n(7),
                cache_read_input_tokens: n(8),
                cache_write_input_tokens: n(9),
                unpriced_invocations: n(10),
                cost_usd: normalise_decimal(&c[11]),
            },
        );
    }
    rows
}

/// The table format: `== label ==` sections, each a header and aligned rows
/// (the first four columns left-aligned at their header, numbers after).
fn parse_table(stdout: &str) -> Vec<(String, Rows)> {
    let mut sections: Vec<(String, Rows)> = Vec::new();
    let mut starts: Vec<usize> = Vec::new();
    for line in stdout.lines() {
        if let Some(label) = line.strip_prefix("== ").and_then(|l| l.strip_suffix(" ==")) {
            sections.push((label.to_string(), Rows::new()));
            continue;
        }
        if line.starts_with("kind ") {
            starts = ["kind", "user", "model", "period"]
                .iter()
                .map(|h| line.find(&format!("{h} ")).unwrap())
                .collect();
            continue;
        }
        if line.trim().is_empty() || line == "(none)" {
            continue;
        }
        let col = |i: usize| line[starts[i]..starts[i + 1]].trim().to_string();
        let rest: Vec<&str> = line[starts[3]..].split_whitespace().collect();
        assert_eq!(rest.len(), 9, "{line}");
        let n = |i: usize| rest[i].parse::<u128>().unwrap();
        let (_, rows) = sections.last_mut().expect("a row before any section");
        insert_unique(
            rows,
            (col(0), col(1), col(2), rest[0].to_string()),
            Totals {
                invocations: n(1),
                errors: n(2),
                input_tokens: n(3),
                output_tokens: n(4),
                cache_read_input_tokens: n(5),
                cache_write_input_tokens: n(6),
                unpriced_invocations: n(7),
                cost_usd: normalise_decimal(rest[8]),
            },
        );
    }
    sections
}

// ---------------------------------------------------------------------------
// One replayed corpus shared by the report tests.
// ---------------------------------------------------------------------------

/// Users whose ids a spreadsheet would run as formulas, on a day of their own.
const FORMULA_USERS: [&str; 4] = ["=1+2", "@SUM(A1)", "-3+4", "+5"];
const FORMULA_DAY: &str = "2026-11-05";
/// The user with usage today (for `--user` without dates: this month).
const NOW_USER: &str = "now-user";

struct Fixture {
    table: String,
    today: String,
    expected: Rows,
}

impl Fixture {
    /// Expected rows matching `f`.
    fn rows(&self, f: impl Fn(&AggKey) -> bool) -> Rows {
        self.expected
            .iter()
            .filter(|(k, _)| f(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

fn records(today: &str) -> Vec<Rec> {
    let mut recs = corpus(240, 5, 4, 0xC11C);
    let rec = |id: String, user: &str, model: &'static str, ts: String, input: u64| Rec {
        request_id: id,
        user: user.to_string(),
        model,
        timestamp: ts,
        input,
        output: input / 4,
        cache_read: 0,
        cache_write: 0,
        error: false,
    };
    for (i, user) in FORMULA_USERS.iter().enumerate() {
        recs.push(rec(
            format!("0000c11c-f{i:07}-4000-8000-000000000000"),
            user,
            "amazon.nova-micro-v1:0",
            format!("{FORMULA_DAY}T10:00:0{i}Z"),
            100 * (i as u64 + 1),
        ));
    }
    for (i, model) in ["amazon.nova-micro-v1:0", "amazon.nova-pro-v1:0"]
        .iter()
        .enumerate()
    {
        for j in 0..2u64 {
            recs.push(rec(
                format!("0000c11c-a{i:03}{j:04}-4000-8000-000000000000"),
                NOW_USER,
                model,
                format!("{today}T00:00:0{j}Z"),
                1000 + 10 * j,
            ));
        }
    }
    recs
}

static FIXTURE: OnceCell<Fixture> = OnceCell::const_new();

async fn fixture() -> &'static Fixture {
    FIXTURE
        .get_or_init(|| async {
            let client = local_client().await;
            // No stream: the replay writes hundreds of items.
            let store = fresh_store(&client, "cli-report").await;
            let today = time::OffsetDateTime::now_utc().date().to_string();
            let recs = records(&today);
            let dir = TempDir::new("report");
            let file = dir.0.join("records.jsonl");
            std::fs::write(&file, ndjson(&recs)).unwrap();
            let out = ok(store.table(), &["replay", file.to_str().unwrap()]);
            assert!(out.stdout.contains("0 skipped"), "{}", out.stdout);
            let expected = expected_totals(&recs);
            // The replay stored exactly the independent totals.
            assert_totals_eq(&read_aggregates(&store).await, &expected);
            Fixture {
                table: store.table().to_string(),
                today,
                expected,
            }
        })
        .await
}

/// The organisation's total of a day: the sum of its `model_day` rows.
fn org_day(fx: &Fixture, day: &str) -> (AggKey, Totals) {
    let models = fx.rows(|k| k.0 == "model_day" && k.3 == day);
    let key = (
        "organisation_day".to_string(),
        String::new(),
        String::new(),
        day.to_string(),
    );
    (key, sum(&models.values().collect::<Vec<_>>()))
}

/// The rows of one report in each format agree, and equal `want`.
fn report_in_every_format(fx: &Fixture, args: &[&str], want: &Rows) {
    let json = parse_json(&ok(&fx.table, &[args, &["--format", "json"]].concat()).stdout);
    assert_totals_eq(&json, want);
    let csv = parse_csv(&ok(&fx.table, &[args, &["--format", "csv"]].concat()).stdout);
    assert_totals_eq(&csv, want);
    let table: Rows = parse_table(&ok(&fx.table, args).stdout)
        .into_iter()
        .flat_map(|(_, rows)| rows)
        .collect();
    assert_totals_eq(&table, want);
}

// ---------------------------------------------------------------------------
// init
// ---------------------------------------------------------------------------

#[tokio::test]
async fn init_creates_the_contract_table_and_a_second_run_changes_nothing() {
    let client = local_client().await;
    let table = table_name("init");
    let first = ok(&table, &["init"]);
    assert!(
        first
            .stdout
            .starts_with(&format!("created table `{table}`")),
        "{}",
        first.stdout
    );
    let second = ok(&table, &["init"]);
    assert!(
        second
            .stdout
            .contains("already exists and matches the data contract"),
        "{}",
        second.stdout
    );
    assert!(second.stderr.is_empty(), "{}", second.stderr);

    let d = client
        .describe_table()
        .table_name(&table)
        .send()
        .await
        .unwrap();
    let d = d.table().unwrap();
    let keys: Vec<(&str, &KeyType)> = d
        .key_schema()
        .iter()
        .map(|k| (k.attribute_name(), k.key_type()))
        .collect();
    assert_eq!(keys, [("pk", &KeyType::Hash), ("sk", &KeyType::Range)]);
    let gsi = &d.global_secondary_indexes()[0];
    assert_eq!(gsi.index_name(), Some("gsi1"));
    assert_eq!(
        gsi.projection().and_then(|p| p.projection_type()),
        Some(&ProjectionType::All)
    );
    assert_eq!(
        d.stream_specification().and_then(|s| s.stream_view_type()),
        Some(&StreamViewType::NewAndOldImages)
    );
    let ttl = client
        .describe_time_to_live()
        .table_name(&table)
        .send()
        .await
        .unwrap();
    assert_eq!(
        ttl.time_to_live_description()
            .and_then(|t| t.attribute_name()),
        Some("expires_at")
    );
    client
        .delete_table()
        .table_name(&table)
        .send()
        .await
        .unwrap();
}

/// A table built by hand: keys (name, type), gsi1 (projection) or none,
/// stream or none, TTL attribute or none.
struct Wrong {
    sk_type: ScalarAttributeType,
    gsi1: Option<ProjectionType>,
    stream: bool,
    ttl: Option<&'static str>,
}

async fn create_wrong(client: &Client, table: &str, w: Wrong) {
    let key = |n: &str, t: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(n)
            .key_type(t)
            .build()
            .unwrap()
    };
    let attr = |n: &str, t: ScalarAttributeType| {
        AttributeDefinition::builder()
            .attribute_name(n)
            .attribute_type(t)
            .build()
            .unwrap()
    };
    let mut req = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .attribute_definitions(attr("pk", ScalarAttributeType::S))
        .attribute_definitions(attr("sk", w.sk_type));
    if let Some(p) = w.gsi1 {
        req = req
            .attribute_definitions(attr("gsi1pk", ScalarAttributeType::S))
            .attribute_definitions(attr("gsi1sk", ScalarAttributeType::S))
            .global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name("gsi1")
                    .key_schema(key("gsi1pk", KeyType::Hash))
                    .key_schema(key("gsi1sk", KeyType::Range))
                    .projection(Projection::builder().projection_type(p).build())
                    .build()
                    .unwrap(),
            );
    }
    if w.stream {
        req = req.stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewAndOldImages)
                .build()
                .unwrap(),
        );
    }
    req.send().await.expect("create the wrong table");
    if let Some(attr) = w.ttl {
        client
            .update_time_to_live()
            .table_name(table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name(attr)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .expect("enable TTL");
    }
}

#[tokio::test]
async fn init_names_what_differs_and_fails_when_keys_or_gsi1_break_the_meter() {
    let client = local_client().await;
    let contract = || Wrong {
        sk_type: ScalarAttributeType::S,
        gsi1: Some(ProjectionType::All),
        stream: true,
        ttl: Some("expires_at"),
    };
    let cases: [(&str, Wrong, i32, &[&str]); 4] = [
        (
            "sk-number",
            Wrong {
                sk_type: ScalarAttributeType::N,
                ..contract()
            },
            1,
            &["error: table `{t}`: table keys: expected pk (S, partition), sk (S, sort), found pk (S, partition), sk (N, sort)"],
        ),
        (
            "no-gsi1",
            Wrong {
                gsi1: None,
                ..contract()
            },
            1,
            &["error: table `{t}`: index gsi1: expected gsi1pk (S, partition), gsi1sk (S, sort), projection ALL, found no index named gsi1"],
        ),
        (
            "gsi1-keys-only",
            Wrong {
                gsi1: Some(ProjectionType::KeysOnly),
                ..contract()
            },
            1,
            &["error: table `{t}`: index gsi1: expected gsi1pk (S, partition), gsi1sk (S, sort), projection ALL, found gsi1pk (S, partition), gsi1sk (S, sort), projection KEYS_ONLY"],
        ),
        (
            "no-stream-other-ttl",
            Wrong {
                stream: false,
                ttl: Some("ttl"),
                ..contract()
            },
            0,
            &[
                "warning: table `{t}`: stream: expected NEW_AND_OLD_IMAGES, found no stream; metering and report work, budget alerts do not",
                "warning: table `{t}`: TTL: expected enabled on expires_at, found ENABLED on ttl",
            ],
        ),
    ];
    for (name, wrong, code, want) in cases {
        let table = table_name(name);
        create_wrong(&client, &table, wrong).await;
        let out = cli(&table, &["init"]);
        println!("{name}: exit {}\n{}{}", out.code, out.stdout, out.stderr);
        assert_eq!(out.code, code, "{name}: {}", out.stderr);
        assert!(
            out.stdout
                .contains(&format!("table `{table}` already exists")),
            "{name}: {}",
            out.stdout
        );
        for w in want {
            let w = w.replace("{t}", &table);
            assert!(
                out.stderr.contains(&w),
                "{name}: want {w}\nin {}",
                out.stderr
            );
        }
        assert_eq!(
            out.stderr.contains("does not match the data contract"),
            code != 0,
            "{name}: {}",
            out.stderr
        );
        // Nothing was changed: the same findings on a second run.
        let again = cli(&table, &["init"]);
        assert_eq!(
            (again.code, &again.stderr),
            (out.code, &out.stderr),
            "{name}"
        );
        client
            .delete_table()
            .table_name(&table)
            .send()
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn init_turns_on_ttl_when_it_is_off() {
    let client = local_client().await;
    let table = table_name("ttl-off");
    create_wrong(
        &client,
        &table,
        Wrong {
            sk_type: ScalarAttributeType::S,
            gsi1: Some(ProjectionType::All),
            stream: true,
            ttl: None,
        },
    )
    .await;
    let out = ok(&table, &["init"]);
    assert!(
        out.stdout.contains("enabled TTL on expires_at"),
        "{}",
        out.stdout
    );
    assert!(out.stderr.is_empty(), "{}", out.stderr);
    let ttl = client
        .describe_time_to_live()
        .table_name(&table)
        .send()
        .await
        .unwrap();
    assert_eq!(
        ttl.time_to_live_description()
            .and_then(|t| t.attribute_name()),
        Some("expires_at")
    );
    client
        .delete_table()
        .table_name(&table)
        .send()
        .await
        .unwrap();
}

// ---------------------------------------------------------------------------
// report
// ---------------------------------------------------------------------------

#[tokio::test]
async fn report_day_lists_every_user_then_the_organisation_total_in_every_format() {
    let fx = fixture().await;
    for day in ["2026-10-31", "2026-11-01"] {
        let mut want = fx.rows(|k| k.0 == "user_day" && k.3 == day);
        assert!(want.len() >= 3, "the corpus has users on {day}");
        let (k, t) = org_day(fx, day);
        want.insert(k, t);
        report_in_every_format(fx, &["report", "--day", day], &want);
        // The table format labels the users and the total apart.
        let sections = parse_table(&ok(&fx.table, &["report", "--day", day]).stdout);
        let labels: Vec<&str> = sections.iter().map(|(l, _)| l.as_str()).collect();
        let users = want.len() - 1;
        assert_eq!(
            labels,
            [
                format!("day {day}: {users} users, biggest first"),
                format!("day {day}: organisation total (all {users} users)"),
            ]
        );
    }
}

#[tokio::test]
async fn report_top_n_counts_users_only_and_keeps_the_organisation_total() {
    let fx = fixture().await;
    let day = "2026-11-01";
    let mut users: Vec<(AggKey, Totals)> = fx
        .rows(|k| k.0 == "user_day" && k.3 == day)
        .into_iter()
        .collect();
    users.sort_by(|a, b| {
        pico(&b.1.cost_usd)
            .cmp(&pico(&a.1.cost_usd))
            .then_with(|| a.0 .1.cmp(&b.0 .1))
    });
    assert!(users.len() > 2);
    let mut want: Rows = users[..2].iter().cloned().collect();
    let (k, t) = org_day(fx, day);
    want.insert(k, t);
    report_in_every_format(fx, &["report", "--day", day, "--top", "2"], &want);
    // JSON lines keep the order: biggest first, the total last.
    let json = ok(
        &fx.table,
        &["report", "--day", day, "--top", "2", "--format", "json"],
    )
    .stdout;
    let order: Vec<String> = json
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["user"]
                .as_str()
                .unwrap_or(v["kind"].as_str().unwrap())
                .to_string()
        })
        .collect();
    assert_eq!(
        order,
        [
            users[0].0 .1.clone(),
            users[1].0 .1.clone(),
            "organisation_day".into()
        ]
    );

    // A month overview: every user's month, the total summed over all of them.
    let month_users = fx.rows(|k| k.0 == "user_month" && k.3 == "2026-10");
    let mut want = month_users.clone();
    want.insert(
        (
            "organisation_month".into(),
            String::new(),
            String::new(),
            "2026-10".into(),
        ),
        sum(&month_users.values().collect::<Vec<_>>()),
    );
    report_in_every_format(fx, &["report", "--month", "2026-10"], &want);
    let top1 = parse_json(
        &ok(
            &fx.table,
            &[
                "report", "--month", "2026-10", "--top", "1", "--format", "json",
            ],
        )
        .stdout,
    );
    assert_eq!(top1.len(), 2, "one user and the total: {top1:?}");
    assert!(top1.keys().any(|k| k.0 == "organisation_month"));

    let bad = cli(&fx.table, &["report", "--top", "2", "--user", "user-1"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("cannot be used with"), "{}", bad.stderr);
}

#[tokio::test]
async fn report_user_with_a_date_range_gives_one_kind_per_csv_or_json_and_labelled_sections() {
    let fx = fixture().await;
    let (from, to) = ("2026-10-31", "2026-11-01");
    let in_range = |k: &AggKey| k.1 == "user-2" && k.3.as_str() >= from && k.3.as_str() <= to;
    let per_model = fx.rows(|k| k.0 == "user_model_day" && in_range(k));
    let per_day = fx.rows(|k| k.0 == "user_day" && in_range(k));
    assert!(per_model.len() > per_day.len() && !per_day.is_empty());
    let args = ["report", "--user", "user-2", "--from", from, "--to", to];
    // csv/json: per model and day by default, one kind with --by.
    for format in ["json", "csv"] {
        let parse: fn(&str) -> Rows = if format == "json" {
            parse_json
        } else {
            parse_csv
        };
        let out = ok(&fx.table, &[&args[..], &["--format", format]].concat());
        assert_totals_eq(&parse(&out.stdout), &per_model);
        let out = ok(
            &fx.table,
            &[&args[..], &["--format", format, "--by", "day"]].concat(),
        );
        assert_totals_eq(&parse(&out.stdout), &per_day);
    }
    // table: both kinds, each in its own labelled section.
    let sections = parse_table(&ok(&fx.table, &args).stdout);
    assert_eq!(sections.len(), 2, "{sections:?}");
    assert_eq!(
        sections[0].0,
        format!("user-2: per model and day, {from} to {to}")
    );
    assert_totals_eq(&sections[0].1, &per_model);
    assert_eq!(
        sections[1].0,
        format!("user-2: per day (all models), {from} to {to}")
    );
    assert_totals_eq(&sections[1].1, &per_day);
    // --day is a one-day range.
    report_in_every_format(
        fx,
        &["report", "--user", "user-2", "--day", to, "--by", "day"],
        &fx.rows(|k| k.0 == "user_day" && k.1 == "user-2" && k.3 == to),
    );
    // A month total does not fit a date range.
    let bad = cli(&fx.table, &[&args[..], &["--by", "month"]].concat());
    assert_eq!(bad.code, 1);
    assert!(
        bad.stderr.contains("--by month needs --month"),
        "{}",
        bad.stderr
    );
}

#[tokio::test]
async fn report_user_alone_shows_this_month_and_month_user_shows_that_month() {
    let fx = fixture().await;
    let month = &fx.today[..7];
    let mine = |kind: &'static str| {
        move |k: &AggKey| k.0 == kind && k.1 == NOW_USER && k.3.starts_with(month)
    };
    let sections = parse_table(&ok(&fx.table, &["report", "--user", NOW_USER]).stdout);
    let labels: Vec<&str> = sections.iter().map(|(l, _)| l.as_str()).collect();
    let first = format!("{month}-01");
    assert_eq!(
        labels,
        [
            format!("{NOW_USER}: per model and day, {first} to {}", fx.today),
            format!("{NOW_USER}: per day (all models), {first} to {}", fx.today),
            format!("{NOW_USER}: month {month} (all models)"),
        ]
    );
    assert_totals_eq(&sections[0].1, &fx.rows(mine("user_model_day")));
    assert_totals_eq(&sections[1].1, &fx.rows(mine("user_day")));
    assert_totals_eq(&sections[2].1, &fx.rows(mine("user_month")));
    assert_eq!(sections[0].1.len(), 2, "two models today");
    report_in_every_format(
        fx,
        &["report", "--user", NOW_USER, "--by", "month"],
        &fx.rows(mine("user_month")),
    );

    // --month with --user: that user's month, each kind.
    let oct = |kind: &'static str| {
        move |k: &AggKey| k.0 == kind && k.1 == "user-3" && k.3.starts_with("2026-10")
    };
    let args = ["report", "--user", "user-3", "--month", "2026-10"];
    let sections = parse_table(&ok(&fx.table, &args).stdout);
    assert_eq!(sections.len(), 3);
    assert_eq!(sections[2].0, "user-3: month 2026-10 (all models)");
    assert_totals_eq(&sections[0].1, &fx.rows(oct("user_model_day")));
    assert_totals_eq(&sections[1].1, &fx.rows(oct("user_day")));
    assert_totals_eq(&sections[2].1, &fx.rows(oct("user_month")));
    report_in_every_format(
        fx,
        &[&args[..], &["--by", "model-day"]].concat(),
        &fx.rows(oct("user_model_day")),
    );
    assert_totals_eq(
        &parse_csv(&ok(&fx.table, &[&args[..], &["--format", "csv"]].concat()).stdout),
        &fx.rows(oct("user_model_day")),
    );
    assert_totals_eq(
        &parse_json(
            &ok(
                &fx.table,
                &[&args[..], &["--format", "json", "--by", "month"]].concat(),
            )
            .stdout,
        ),
        &fx.rows(oct("user_month")),
    );
}

#[tokio::test]
async fn report_user_and_model_shows_only_that_model() {
    let fx = fixture().await;
    let model = "anthropic.claude-haiku-4-5-20251001-v1:0";
    let want = fx.rows(|k| {
        k.0 == "user_model_day" && k.1 == "user-1" && k.2 == model && k.3.starts_with("2026-11")
    });
    assert!(!want.is_empty());
    let args = [
        "report", "--user", "user-1", "--model", model, "--month", "2026-11",
    ];
    report_in_every_format(fx, &args, &want);
    let sections = parse_table(&ok(&fx.table, &args).stdout);
    assert_eq!(
        sections.len(),
        1,
        "only the per-model section: {sections:?}"
    );
    // Per-day and month totals are over every model: asking for them with
    // --model is refused, not silently answered for all models.
    for by in ["day", "month"] {
        let bad = cli(&fx.table, &[&args[..], &["--by", by]].concat());
        assert_eq!(bad.code, 1, "{by}");
        assert!(bad.stderr.contains("drop --model"), "{}", bad.stderr);
    }
}

#[tokio::test]
async fn report_model_gives_its_days() {
    let fx = fixture().await;
    let model = "amazon.nova-micro-v1:0";
    let in_oct = fx.rows(|k| k.0 == "model_day" && k.2 == model && k.3.starts_with("2026-10"));
    assert_eq!(in_oct.len(), 2, "2026-10-30 and 31");
    report_in_every_format(
        fx,
        &["report", "--model", model, "--month", "2026-10"],
        &in_oct,
    );
    report_in_every_format(
        fx,
        &[
            "report",
            "--model",
            model,
            "--from",
            "2026-10-31",
            "--to",
            "2026-11-01",
        ],
        &fx.rows(|k| {
            k.0 == "model_day"
                && k.2 == model
                && ["2026-10-31", "2026-11-01"].contains(&k.3.as_str())
        }),
    );
    // Alone: this month to date.
    let month = &fx.today[..7];
    report_in_every_format(
        fx,
        &["report", "--model", "amazon.nova-pro-v1:0"],
        &fx.rows(|k| {
            k.0 == "model_day"
                && k.2 == "amazon.nova-pro-v1:0"
                && k.3.starts_with(month)
                && k.3 <= fx.today
        }),
    );
}

#[tokio::test]
async fn report_csv_neutralises_cells_a_spreadsheet_would_run_as_formulas() {
    let fx = fixture().await;
    let csv = ok(
        &fx.table,
        &["report", "--day", FORMULA_DAY, "--format", "csv"],
    )
    .stdout;
    let users: Vec<String> = csv
        .lines()
        .skip(1)
        .map(|l| csv_cells(l)[1].clone())
        .collect();
    for u in FORMULA_USERS {
        assert!(
            users.contains(&format!("'{u}")),
            "{u} not neutralised in:\n{csv}"
        );
    }
    for line in csv.lines() {
        for cell in csv_cells(line) {
            assert!(
                !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                "{cell} in {line}"
            );
        }
    }
    // JSON keeps the raw ids (the kind of output a program reads).
    let json = parse_json(
        &ok(
            &fx.table,
            &["report", "--day", FORMULA_DAY, "--format", "json"],
        )
        .stdout,
    );
    let mut want = fx.rows(|k| k.0 == "user_day" && k.3 == FORMULA_DAY);
    let (k, t) = org_day(fx, FORMULA_DAY);
    want.insert(k, t);
    assert_totals_eq(&json, &want);
}

#[tokio::test]
async fn report_ignores_settings_it_does_not_use_and_checks_the_table_flag() {
    let fx = fixture().await;
    let out = cli_env(
        &fx.table,
        &["report", "--day", "2026-11-01", "--format", "json"],
        &[
            ("MARKER_TTL_DAYS", Some("soon")),
            ("MAX_DECOMPRESSED_BYTES", Some("1")),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stdout.is_empty());
    // replay does use MARKER_TTL_DAYS: still refused there.
    let replay = cli_env(
        &fx.table,
        &["replay", "-"],
        &[("MARKER_TTL_DAYS", Some("soon"))],
    );
    assert_eq!(replay.code, 1);
    assert!(
        replay
            .stderr
            .contains("MARKER_TTL_DAYS = `soon` is invalid"),
        "{}",
        replay.stderr
    );
    for bad in ["ab", "no spaces", "x".repeat(256).as_str()] {
        let out = cli(
            &fx.table,
            &["--table", bad, "report", "--day", "2026-11-01"],
        );
        assert_eq!(out.code, 1, "{bad}");
        assert!(
            out.stderr.contains(&format!(
                "--table = `{bad}` is invalid: a DynamoDB table name: 3-255 characters"
            )),
            "{}",
            out.stderr
        );
    }
}

// ---------------------------------------------------------------------------
// Errors a reader sees, in the operator's terms.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_dead_endpoint_names_the_table_region_endpoint_and_what_to_check() {
    let dead = "http://127.0.0.1:9";
    let env = [
        ("AWS_ENDPOINT_URL", Some(dead)),
        ("AWS_ENDPOINT_URL_DYNAMODB", None),
        ("AWS_REGION", Some("us-east-1")),
        ("AWS_ACCESS_KEY_ID", Some("local")),
        ("AWS_SECRET_ACCESS_KEY", Some("local")),
        ("AWS_MAX_ATTEMPTS", Some("1")),
    ];
    let dir = TempDir::new("dead");
    let file = dir.0.join("r.jsonl");
    std::fs::write(&file, ndjson(&corpus(3, 1, 1, 9))).unwrap();
    for (args, verb) in [
        (
            vec!["report", "--day", "2026-11-01"],
            "could not read table",
        ),
        (vec!["report", "--user", "alice"], "could not read table"),
        (vec!["init"], "could not create or check table"),
        (
            vec!["replay", file.to_str().unwrap()],
            "could not write to table",
        ),
    ] {
        let out = cli_env("usage-dead", &args, &env);
        println!("{args:?}: exit {}: {}", out.code, out.stderr);
        assert_eq!(out.code, 1, "{args:?}");
        let want = format!(
            "{verb} `usage-dead` in us-east-1 at {dead}: connection refused. Check \
             AWS_ENDPOINT_URL / network, AWS_REGION, credentials (AWS_PROFILE), USAGE_TABLE / --table"
        );
        assert!(
            out.stderr.contains(&want),
            "{args:?}: want {want}\nin {}",
            out.stderr
        );
        assert!(!out.stderr.contains("retried"), "{}", out.stderr);
        assert!(!out.stderr.contains("deliver"), "{}", out.stderr);
    }
}

#[tokio::test]
async fn missing_credentials_are_named_as_such() {
    let home = TempDir::new("no-credentials");
    let env = [
        ("AWS_ENDPOINT_URL", Some("http://127.0.0.1:9")),
        ("AWS_REGION", Some("us-east-1")),
        ("AWS_ACCESS_KEY_ID", None),
        ("AWS_SECRET_ACCESS_KEY", None),
        ("AWS_SESSION_TOKEN", None),
        ("AWS_PROFILE", None),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", None),
        ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", None),
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", None),
        // No ~/.aws: an empty home.
        ("HOME", Some(home.0.to_str().unwrap())),
        ("AWS_CONFIG_FILE", None),
        ("AWS_SHARED_CREDENTIALS_FILE", None),
        // Never reach for the instance metadata service from a test.
        ("AWS_EC2_METADATA_DISABLED", Some("true")),
    ];
    for args in [&["report", "--day", "2026-11-01"][..], &["init"]] {
        let out = cli_env("usage-x", args, &env);
        println!("{args:?}: {}", out.stderr);
        assert_eq!(out.code, 1);
        assert!(
            out.stderr.starts_with(
                "bedrock-meter: error: no AWS credentials found: set AWS_PROFILE (a profile in \
                 ~/.aws/config), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            ),
            "{}",
            out.stderr
        );
        assert!(
            out.stderr.contains("`usage-x` in us-east-1"),
            "{}",
            out.stderr
        );
        assert!(!out.stderr.contains("retried"), "{}", out.stderr);
    }
}

#[tokio::test]
async fn a_missing_table_says_to_run_init() {
    let _ = local_client().await;
    let table = table_name("missing");
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap();
    for args in [
        &["report", "--day", "2026-11-01"][..],
        &["report", "--model", "m", "--month", "2026-11"],
    ] {
        let out = cli(&table, args);
        assert_eq!(out.code, 1);
        let want = format!(
            "could not read table `{table}` in us-east-1 at {endpoint}: the table does not \
             exist. Create it with `bedrock-meter init`"
        );
        assert!(out.stderr.contains(&want), "want {want}\nin {}", out.stderr);
    }
}

// ---------------------------------------------------------------------------
// prices
// ---------------------------------------------------------------------------

const GOOD_PRICES: &str = r#"
[meta]
version = "test-1"
checked = "2026-11-01"
currency = "USD"
sources = ["hand-written for a test"]

[[rate]]
model = "amazon.nova-micro-v1:0"
from = "2024-12-03"
input = "0.035"
output = "0.14"
"#;

#[test]
fn prices_prints_the_built_in_table_with_published_rates() {
    let out = ok("unused", &["prices"]);
    assert!(
        out.stdout.starts_with("price table: built-in\n"),
        "{}",
        out.stdout
    );
    // Rates from the published pricing (docs: reference pricing), not from
    // the table file: Haiku 4.5 in-Region 1.10 / 5.50, global 1.00 / 5.00.
    let haiku: Vec<Vec<&str>> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("anthropic.claude-haiku-4-5-20251001-v1:0 "))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(
        haiku
            .iter()
            .any(|c| c[1] == "regional" && c[4] == "1.1" && c[5] == "5.5"),
        "{haiku:?}"
    );
    assert!(
        haiku
            .iter()
            .any(|c| c[1] == "global" && c[4] == "1" && c[5] == "5"),
        "{haiku:?}"
    );
    assert!(out.stdout.contains(
        "alias arn:aws:bedrock:us-east-1:111111111111:application-inference-profile/abc123example -> us.anthropic.claude-sonnet-4-5-20250929-v1:0"
    ), "{}", out.stdout);
}

#[test]
fn prices_check_accepts_a_good_file_and_rejects_a_bad_one_clearly() {
    let dir = TempDir::new("prices");
    let good = dir.0.join("good.toml");
    std::fs::write(&good, GOOD_PRICES).unwrap();
    let out = ok("unused", &["prices", "--check", good.to_str().unwrap()]);
    assert!(
        out.stdout.contains("OK: 1 rate entries, 0 aliases"),
        "{}",
        out.stdout
    );

    // A rate with more than six decimals cannot be exact: refused.
    let bad = dir.0.join("bad.toml");
    std::fs::write(&bad, GOOD_PRICES.replace("\"0.14\"", "\"0.1400001\"")).unwrap();
    let out = cli("unused", &["prices", "--check", bad.to_str().unwrap()]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stderr
            .contains(&format!("{} is not a valid price table", bad.display())),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("0.1400001"), "{}", out.stderr);
    let missing = dir.0.join("missing.toml");
    let out = cli("unused", &["prices", "--check", missing.to_str().unwrap()]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains(&missing.display().to_string()),
        "{}",
        out.stderr
    );
}

#[test]
fn prices_shows_the_table_price_table_path_names() {
    let dir = TempDir::new("prices-path");
    let good = dir.0.join("mine.toml");
    std::fs::write(&good, GOOD_PRICES).unwrap();
    let path = good.to_str().unwrap();
    let out = cli_env("unused", &["prices"], &[("PRICE_TABLE_PATH", Some(path))]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.starts_with(&format!(
            "price table: {path} (PRICE_TABLE_PATH)\nversion test-1"
        )),
        "{}",
        out.stdout
    );
    let rows: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("amazon.") || l.starts_with("anthropic."))
        .collect();
    assert_eq!(rows.len(), 1, "only the file's one entry: {rows:?}");
    let bad = dir.0.join("bad.toml");
    std::fs::write(&bad, "not toml [").unwrap();
    let out = cli_env(
        "unused",
        &["prices"],
        &[("PRICE_TABLE_PATH", Some(bad.to_str().unwrap()))],
    );
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains(&format!(
            "PRICE_TABLE_PATH: {} is not a valid price table",
            bad.display()
        )),
        "{}",
        out.stderr
    );
}

// ---------------------------------------------------------------------------
// replay: one output flag, folder skips said out loud
// ---------------------------------------------------------------------------

#[tokio::test]
async fn replay_has_one_format_flag_and_says_which_folder_files_it_skipped() {
    let client = local_client().await;
    let store = fresh_store(&client, "cli-replay-flags").await;
    let dir = TempDir::new("replay-flags");
    let recs = corpus(20, 3, 2, 0xF1A6);
    std::fs::write(dir.0.join("a.jsonl"), ndjson(&recs)).unwrap();
    std::fs::write(dir.0.join("notes.md"), "# notes").unwrap();
    std::fs::write(dir.0.join("x.decoded.json"), "{}").unwrap();
    std::fs::write(dir.0.join("expected-totals.json"), "{}").unwrap();
    std::fs::write(dir.0.join("kinesis-event.json"), "{}").unwrap();
    std::fs::write(dir.0.join(".hidden.json"), "{}").unwrap();
    let d = dir.0.to_str().unwrap();

    let out = ok(store.table(), &["replay", "--format", "json", d]);
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(v["files"], 1, "{}", out.stdout);
    assert_eq!(v["report"]["counted"], 20, "{}", out.stdout);
    for (file, reason) in [
        ("notes.md", "not a data file"),
        ("x.decoded.json", "a readable twin of an event"),
        ("expected-totals.json", "expected totals"),
        ("kinesis-event.json", "a Kinesis Lambda event"),
        (".hidden.json", "hidden"),
    ] {
        let line = out
            .stderr
            .lines()
            .find(|l| l.contains(&format!("{d}/{file}")))
            .unwrap_or_else(|| panic!("{file} not reported:\n{}", out.stderr));
        assert!(
            line.starts_with("bedrock-meter: skipped 1 file(s), "),
            "{line}"
        );
        assert!(line.contains(reason), "{line}");
    }
    // The deprecated --json still works, and says what to use.
    let out = ok(store.table(), &["replay", "--json", d]);
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(v["report"]["duplicates"], 20, "{}", out.stdout);
    assert!(
        out.stderr
            .contains("--json is deprecated: use --format json"),
        "{}",
        out.stderr
    );
    // --dry-run takes the same flag.
    let out = ok(
        store.table(),
        &["replay", "--dry-run", "--format", "csv", d],
    );
    assert_eq!(out.stdout.lines().next(), Some(CSV_HEADER));
    let dry = parse_csv(&out.stdout);
    assert_totals_eq(
        &dry,
        &expected_totals(&recs)
            .into_iter()
            .filter(|(k, _)| k.0 == "user_model_day")
            .collect(),
    );
    // Combinations that would be ignored are refused.
    let out = cli(store.table(), &["replay", "--format", "csv", d]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("--format csv is for the --dry-run totals"),
        "{}",
        out.stderr
    );
    let out = cli(store.table(), &["replay", "--json", "--format", "table", d]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("cannot be used with"), "{}", out.stderr);
    // A file named on the command line is read whatever its name.
    let named = dir.0.join("notes.md");
    let out = cli(store.table(), &["replay", named.to_str().unwrap()]);
    assert_eq!(
        out.code, 1,
        "a markdown file is not a payload: {}",
        out.stderr
    );
    assert!(!out.stderr.contains("skipped 1 file"), "{}", out.stderr);
}
