//! nev-ingest's native hot path: GB/T 32960.3 frames (2016 `##`, 2025 `$$`) to typed rows and
//! PostgreSQL binary COPY tuples, for the frames that are nearly all the traffic (real-time
//! 0x02 and reissue 0x03 command packets with a plain data unit). Every other frame is left to
//! the Python structured decoder (`ingest.decoders.frame.decode_frame`), the readable reference
//! of the standard and this crate's oracle in the differential tests.
//!
//! The crate is two layers:
//! - the pure core (this crate without features): bytes in, `vehicle::Outcome` out, and the
//!   COPY tuples of each table (`copy`, `vehicle::encode`); no I/O, no Python, so `cargo test`
//!   and the fuzz loop (`examples/fuzz.rs`) run it as it is; `rules` is the rule engine's
//!   per-frame conditions (alerts/kinds.py's closures in Rust), pure as well;
//! - the Python bindings (`py`, feature `python`, turned on by maturin): one call per batch of
//!   Kafka values, which parses and encodes with the GIL released and then builds the row
//!   objects of `contract.rows` that the rule engine and latest state read.
//!
//! Validation, sentinels -> NULL, scaling and every reject reason are exactly those of the
//! Python decoder (docs/protocols/gbt32960.md); tests/unit/test_native_agreement.py proves it.

pub mod battery;
pub mod charger;
pub mod copy;
pub mod envelope;
pub mod error;
pub mod framer;
pub mod identity;
pub mod rules;
pub mod sig;
pub mod time;
pub mod vehicle;
pub mod wire;

#[cfg(feature = "python")]
mod py;
#[cfg(feature = "python")]
mod py_alloc;
#[cfg(feature = "python")]
mod py_json;
#[cfg(feature = "python")]
mod py_kinds;
#[cfg(feature = "python")]
mod py_rules;
#[cfg(feature = "python")]
mod py_sig;
