//! Record parsing: any text as one invocation record, through the parser
//! alone and through the whole per-record path (attribution, id limits,
//! pricing). Must never panic.

#![no_main]

use std::borrow::Cow;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use meter_core::{LogEvent, Meter};

fn meter() -> &'static Meter {
    static METER: OnceLock<Meter> = OnceLock::new();
    METER.get_or_init(Meter::with_defaults)
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(rec) = meter_core::record::parse_record(text, "user") {
        // Ids come from the text, never invented.
        if let Some(id) = rec.request_id.as_deref() {
            assert!(!id.is_empty());
        }
    }
    let event = LogEvent {
        id: Cow::Borrowed("1"),
        id_is_event_id: true,
        timestamp_ms: None,
        message: Cow::Borrowed(text),
    };
    if let Ok(r) = meter().meter_event(&event) {
        assert_eq!(r.counters.invocations, 1);
        assert!(r.user.len() <= meter_core::MAX_ID_BYTES);
        assert!(r.model.len() <= meter_core::MAX_ID_BYTES);
    }
});
