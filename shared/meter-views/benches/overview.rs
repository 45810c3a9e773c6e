//! Server time to build and render the overview for an organisation of
//! 2,000 users, 8 models and 31 days (496,000 user-model-day aggregates,
//! generated in memory through the reader trait), as HTML and as JSON.
//! Prints the queries each page runs.
//!
//!   cargo bench -p meter-views --bench overview

use criterion::{criterion_group, criterion_main, Criterion};
use meter_core::{Counters, Day, Usd};
use meter_views::{respond, MemoryReader, Mode, Options};

const USERS: usize = 2_000;
const MODELS: usize = 8;
const MONTH: &str = "2026-10";

fn org() -> MemoryReader {
    let r = MemoryReader::new();
    let first = Day::parse("2026-10-01").unwrap().date();
    for d in 0..31u8 {
        let day = meter_views::request::day_of(first + time::Duration::days(i64::from(d)));
        for u in 0..USERS {
            let user = format!("user-{u:04}@example.com");
            for m in 0..MODELS {
                let n = (u * 7 + m * 13 + usize::from(d)) as u128 % 50 + 1;
                let c = Counters {
                    invocations: n,
                    input_tokens: n * 1_200,
                    output_tokens: n * 300,
                    cache_read_input_tokens: n * 50,
                    unpriced_invocations: u128::from(m == 7 && u % 100 == 0),
                    cost_usd: Usd::from_picos(n * 4_123_456_789),
                    ..Counters::default()
                };
                r.record(
                    &user,
                    &format!("vendor.model-{m}-v1:0"),
                    day,
                    &c,
                    "2026-10-31T23:59:59Z",
                );
            }
        }
    }
    r
}

fn bench(c: &mut Criterion) {
    let reader = org();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let today = Day::parse("2026-11-01").unwrap();
    let opts = Options {
        mode: Mode::Page { refresh_secs: 30 },
        rendered_at: "2026-11-01T00:00:00Z".into(),
    };
    let query = format!("month={MONTH}");
    let get = |path: &str, q: &str| {
        rt.block_on(respond(&reader, path, q, today, &opts, |e| e.to_string()))
    };
    for (name, path, q) in [
        ("overview", "/", query.as_str()),
        ("user", "/users/user-0001%40example.com", query.as_str()),
        (
            "model",
            "/models/vendor.model-1-v1%3A0",
            "month=2026-10&day=2026-10-31",
        ),
        ("day", "/days/2026-10-31", ""),
        ("budgets", "/budgets", ""),
    ] {
        let before = reader.queries();
        let res = get(path, q);
        assert_eq!(res.status, 200, "{}", res.body);
        println!(
            "{name}: {} queries, {} KiB of HTML",
            reader.queries() - before,
            res.body.len() / 1024
        );
    }
    let mut g = c.benchmark_group("overview 2000 users x 8 models x 31 days");
    g.sample_size(20);
    g.bench_function("html", |b| b.iter(|| get("/", &query)));
    g.bench_function("json", |b| {
        b.iter(|| get("/", &format!("{query}&format=json")))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
