//! The bedrock-meter ingest Lambda. `main.rs` only wires; the work is in
//! [`handler`], generic over the store so it is tested with an in-memory one.

pub mod handler;
pub mod metrics;
