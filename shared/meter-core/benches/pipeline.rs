//! Criterion benchmark of decode → parse → resolve → price → aggregate on
//! one 500-record CloudWatch Logs delivery, metadata-only and with 4 KB
//! prompt/answer bodies. Throughput in records/s and in bytes/s of
//! decompressed payload.
//!
//!     cargo bench -p meter-core --bench pipeline

mod common;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use meter_core::{aggregate, Meter};

fn pipeline(c: &mut Criterion) {
    let meter = Meter::with_defaults();
    for (name, body) in [("metadata-only", 0usize), ("4KB-bodies", 4096)] {
        let corpus = common::corpus(name, common::BATCH, body);
        let envelope = &corpus.envelopes[0];
        let mut group = c.benchmark_group(format!("pipeline/{name}"));
        group.sample_size(30);
        group.throughput(Throughput::Elements(common::BATCH as u64));
        group.bench_function("records", |b| {
            b.iter(|| {
                let batch = meter.meter_payload(black_box(envelope)).expect("meter");
                black_box(aggregate(&batch.records).len())
            })
        });
        group.throughput(Throughput::Bytes(corpus.decompressed_bytes as u64));
        group.bench_function("decompressed-bytes", |b| {
            b.iter(|| {
                let batch = meter.meter_payload(black_box(envelope)).expect("meter");
                black_box(aggregate(&batch.records).len())
            })
        });
        group.finish();
    }
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
