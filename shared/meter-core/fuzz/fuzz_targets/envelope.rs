//! Envelope decoding: any bytes as a delivery (Lambda event, destination
//! record, subscription payload, newline-delimited records, gzip of any).
//! Must never panic; every log event is counted, skipped or a duplicate.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use meter_core::decode::{parse_payload, unwrap_payload};
use meter_core::{DecodeLimits, Meter};

fn meter() -> &'static Meter {
    static METER: OnceLock<Meter> = OnceLock::new();
    METER.get_or_init(|| Meter {
        // A small cap keeps each run fast; the logic is the same as 64 MiB.
        limits: DecodeLimits {
            max_decompressed_bytes: 1 << 20,
        },
        ..Meter::with_defaults()
    })
}

fuzz_target!(|data: &[u8]| {
    let meter = meter();
    if let Ok(payload) = unwrap_payload(data, meter.limits) {
        assert!(payload.len() <= (1 << 20) || payload.len() <= data.len());
        let _ = parse_payload(&payload);
    }
    if let Ok(batch) = meter.meter_payload(data) {
        assert_eq!(
            batch.records.len() + batch.skipped.len() + batch.duplicates_in_batch,
            batch.events,
            "every log event is counted, skipped or a duplicate"
        );
    }
});
