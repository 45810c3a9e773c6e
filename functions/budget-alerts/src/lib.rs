//! # budget-alerts: one SNS notification per budget threshold crossing
//!
//! A Lambda on the usage table's stream (filtered to `user_day` and
//! `user_month` changes). `main.rs` only wires; the work is here:
//!
//! - [`change`]: a stream record → a [`change::Change`] of one user's spend
//!   over one day or month (old and new `cost_usd`, exact).
//! - [`alert`]: the crossings of a change against the budgets, the alert
//!   marker keys, the org-month deltas, and the message (text and
//!   attributes).
//! - [`handler`]: the batch loop, generic over [`handler::AlertStore`] and
//!   [`handler::Notifier`]; claim → publish → mark sent; partial batch
//!   failures.
//! - [`dynamo`], [`sns`]: the adapters.
//!
//! The guarantee (see `docs/budgets.md`): every crossing is published at
//! least once, and at most once except when the function dies, or cannot
//! record the send, in the instant between SNS accepting the message and the
//! marker becoming `sent` (a FIFO topic closes that window for 5 minutes).

pub mod alert;
pub mod change;
pub mod dynamo;
pub mod handler;
pub mod sns;
