//! The floor benchmark: the unavoidable work (base64, the fastest gunzip we
//! have, a typed parse of only the fields metering needs) next to the full
//! pipeline (decode → parse → resolve → price → aggregate) on the same
//! corpus, in the same run, so the pipeline is reported as a ratio to the
//! floor. Optionally runs the plain Python and Node baselines on the same
//! envelopes.
//!
//!     cargo bench -p meter-core --bench floor -- [--records N] [--runs R] [--baselines]
//!
//! Single-threaded; medians of R runs of the thread's CPU time (from
//! /proc/thread-self/schedstat, so a busy machine does not inflate them;
//! wall-clock where that is unavailable). The Python and Node baselines
//! report their own process CPU time.

mod common;

use std::borrow::Cow;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use meter_core::{aggregate, Meter};
use serde::Deserialize;

#[derive(Deserialize)]
struct Env<'a> {
    #[serde(borrow)]
    awslogs: AwsLogs<'a>,
}
#[derive(Deserialize)]
struct AwsLogs<'a> {
    #[serde(borrow)]
    data: &'a str,
}
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload<'a> {
    #[serde(borrow)]
    log_events: Vec<Ev<'a>>,
}
#[derive(Deserialize)]
struct Ev<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    message: Cow<'a, str>,
}
/// Only the fields metering needs, borrowed (the generated records hold no
/// escapes inside these values, so `&str` suffices: a floor need not be
/// robust, only as cheap as the work can be).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MinRecord<'a> {
    timestamp: Option<&'a str>,
    request_id: Option<&'a str>,
    model_id: Option<&'a str>,
    region: Option<&'a str>,
    #[serde(borrow)]
    identity: Option<MinIdentity<'a>>,
    #[serde(borrow)]
    request_metadata: Option<MinMetadata<'a>>,
    input: Option<MinInput>,
    output: Option<MinOutput>,
    error_code: Option<&'a str>,
}
#[derive(Deserialize)]
struct MinIdentity<'a> {
    arn: Option<&'a str>,
}
#[derive(Deserialize)]
struct MinMetadata<'a> {
    user: Option<&'a str>,
}
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MinInput {
    input_token_count: Option<u64>,
    cache_read_input_token_count: Option<u64>,
    cache_write_input_token_count: Option<u64>,
}
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MinOutput {
    output_token_count: Option<u64>,
}

fn gunzip_libdeflate(gz: &[u8]) -> Vec<u8> {
    let n = gz.len();
    let isize = u32::from_le_bytes([gz[n - 4], gz[n - 3], gz[n - 2], gz[n - 1]]) as usize;
    let mut out = vec![0u8; isize];
    let mut d = libdeflater::Decompressor::new();
    let written = d.gzip_decompress(gz, &mut out).expect("gzip");
    out.truncate(written);
    out
}

fn gunzip_zlib_rs(gz: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let n = gz.len();
    let isize = u32::from_le_bytes([gz[n - 4], gz[n - 3], gz[n - 2], gz[n - 1]]) as usize;
    let mut out = Vec::with_capacity(isize + 1);
    flate2::read::MultiGzDecoder::new(gz)
        .read_to_end(&mut out)
        .expect("gzip");
    out
}

/// The unavoidable work for one envelope; returns a checksum of the tokens.
fn floor(envelope: &[u8], gunzip: fn(&[u8]) -> Vec<u8>) -> u64 {
    let env: Env = serde_json::from_slice(envelope).expect("envelope");
    let gz = base64::engine::general_purpose::STANDARD
        .decode(env.awslogs.data)
        .expect("base64");
    let payload = gunzip(&gz);
    let p: Payload = serde_json::from_slice(&payload).expect("payload");
    let mut sum = 0u64;
    for e in &p.log_events {
        let r: MinRecord = serde_json::from_str(&e.message).expect("record");
        let i = r.input.map_or(0, |i| {
            i.input_token_count.unwrap_or(0)
                + i.cache_read_input_token_count.unwrap_or(0)
                + i.cache_write_input_token_count.unwrap_or(0)
        });
        let o = r.output.map_or(0, |o| o.output_token_count.unwrap_or(0));
        sum = sum.wrapping_add(i + o + e.id.len() as u64);
        black_box((
            &r.timestamp,
            &r.request_id,
            &r.model_id,
            &r.region,
            &r.identity.map(|i| i.arn),
            &r.request_metadata.map(|m| m.user),
            &r.error_code,
        ));
    }
    sum
}

fn pipeline(meter: &Meter, envelope: &[u8]) -> usize {
    let batch = meter.meter_payload(envelope).expect("pipeline");
    let agg = aggregate(&batch.records);
    black_box(agg.len()) + batch.records.len()
}

/// CPU time of this thread (Linux schedstat, nanoseconds): unlike wall-clock
/// time it does not count time the thread waited for a busy core.
fn thread_cpu() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace()
        .next()?
        .parse()
        .ok()
        .map(Duration::from_nanos)
}

/// CPU time of one call of `f` (wall-clock time where schedstat is missing).
fn cpu_time(f: impl FnOnce()) -> Duration {
    let (t, c) = (Instant::now(), thread_cpu());
    f();
    match (c, thread_cpu()) {
        (Some(a), Some(b)) => b - a,
        _ => t.elapsed(),
    }
}

/// CPU time of `f` over every envelope of a corpus.
fn time_each<T>(envelopes: &[Vec<u8>], f: impl Fn(&[u8]) -> T) -> Duration {
    cpu_time(|| {
        for e in envelopes {
            black_box(f(e));
        }
    })
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn run_baseline(cmd: &str, script: &Path, dir: &Path, runs: usize) -> Option<Duration> {
    let mut times = Vec::new();
    for _ in 0..runs {
        let out = Command::new(cmd).arg(script).arg(dir).output().ok()?;
        if !out.status.success() {
            eprintln!(
                "{cmd} baseline failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            return None;
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let secs: f64 = text
            .split_whitespace()
            .find_map(|w| w.strip_prefix("seconds=")?.parse().ok())?;
        times.push(Duration::from_secs_f64(secs));
    }
    times.sort();
    Some(times[runs / 2])
}

fn main() {
    if std::env::args().any(|a| a == "--bench" || a == "--list")
        && std::env::args().any(|a| a == "--list")
    {
        return;
    }
    let records: usize = arg("--records")
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let runs: usize = arg("--runs").and_then(|v| v.parse().ok()).unwrap_or(5);
    let baselines = std::env::args().any(|a| a == "--baselines");
    let meter = Meter::with_defaults();
    let bench_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/baselines");
    let corpus_root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-corpus");
    println!("bedrock-meter floor benchmark: {records} records per corpus, {} per envelope, median of {runs} runs, one core", common::BATCH);
    println!(
        "{:<16} {:>9} {:>12} {:>12} {:>12} {:>12} {:>10} {:>12}",
        "corpus", "MB", "floor(ldf)", "floor(zrs)", "pipeline", "records/s", "MB/s", "pipe/floor"
    );
    let mut summary = Vec::new();
    for (name, body) in [("metadata-only", 0usize), ("4KB-bodies", 4096)] {
        let c = common::corpus(name, records, body);
        // correctness guard: both floors agree, the pipeline counts every record
        let a: u64 = c
            .envelopes
            .iter()
            .map(|e| floor(e, gunzip_libdeflate))
            .sum();
        let b: u64 = c.envelopes.iter().map(|e| floor(e, gunzip_zlib_rs)).sum();
        assert_eq!(a, b);
        let counted: usize = c
            .envelopes
            .iter()
            .map(|e| meter.meter_payload(e).unwrap().records.len())
            .sum();
        assert_eq!(counted, records);
        // The three measurements are interleaved run by run, so that a change
        // in the machine's speed during the benchmark (a shared 2-core VM
        // drifts by tens of percent) weighs on the floor and the pipeline alike.
        let (mut ldf, mut zrs, mut pipe) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs {
            ldf.push(time_each(&c.envelopes, |e| floor(e, gunzip_libdeflate)));
            zrs.push(time_each(&c.envelopes, |e| floor(e, gunzip_zlib_rs)));
            pipe.push(time_each(&c.envelopes, |e| pipeline(&meter, e)));
        }
        let (f_ldf, f_zrs, p) = (median(ldf), median(zrs), median(pipe));
        let best_floor = f_ldf.min(f_zrs);
        let mb = c.decompressed_bytes as f64 / 1e6;
        println!(
            "{:<16} {:>9.1} {:>11.3}s {:>11.3}s {:>11.3}s {:>12.0} {:>10.0} {:>11.2}x",
            name,
            mb,
            f_ldf.as_secs_f64(),
            f_zrs.as_secs_f64(),
            p.as_secs_f64(),
            records as f64 / p.as_secs_f64(),
            mb / p.as_secs_f64(),
            p.as_secs_f64() / best_floor.as_secs_f64()
        );
        if baselines {
            let dir = corpus_root.join(name);
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("corpus dir");
            for (i, e) in c.envelopes.iter().enumerate() {
                std::fs::write(dir.join(format!("{i:05}.json")), e).expect("write corpus");
            }
            let py = run_baseline("python3", &bench_dir.join("baseline.py"), &dir, runs.min(3));
            let js = run_baseline("node", &bench_dir.join("baseline.js"), &dir, runs.min(3));
            summary.push((name, p, py, js));
        }
    }
    if baselines {
        println!();
        println!(
            "{:<16} {:>12} {:>12} {:>14} {:>12} {:>14}",
            "corpus", "pipeline", "python", "python/pipe", "node", "node/pipe"
        );
        for (name, p, py, js) in summary {
            let fmt = |d: Option<Duration>| {
                d.map_or("n/a".to_string(), |d| format!("{:.3}s", d.as_secs_f64()))
            };
            let ratio = |d: Option<Duration>| {
                d.map_or("n/a".to_string(), |d| {
                    format!("{:.2}x", d.as_secs_f64() / p.as_secs_f64())
                })
            };
            println!(
                "{:<16} {:>11.3}s {:>12} {:>14} {:>12} {:>14}",
                name,
                p.as_secs_f64(),
                fmt(py),
                ratio(py),
                fmt(js),
                ratio(js)
            );
        }
    }
}
