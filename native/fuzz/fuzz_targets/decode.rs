//! libFuzzer target: any bytes through the vehicle decoder (and, when accepted, its COPY
//! encoder) and the charger and pack decoders. A panic is the failure libFuzzer reports; the
//! reject reasons are checked as in examples/fuzz.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nev_native::battery::{self, Identity};
use nev_native::charger;
use nev_native::error;
use nev_native::vehicle::encode::encode;
use nev_native::vehicle::{decode, Outcome};

const KNOWN_REASONS: [&str; 8] = error::FRAME_REASONS;

fuzz_target!(|buf: &[u8]| {
    let _ = charger::decode(buf);
    let _ = battery::decode(buf, Identity::Check);
    let _ = battery::decode(buf, Identity::Trusted);
    match decode(buf) {
        Outcome::Rows(rows) => {
            let vin = std::str::from_utf8(&buf[4..21]).expect("accepted rows have a VIN");
            let mut out: [Vec<u8>; 4] = Default::default();
            encode(&rows, buf, vin, Some(0), &mut out);
        }
        Outcome::Structured => {}
        Outcome::Error(e) => assert!(KNOWN_REASONS.contains(&e.reason), "{e}"),
    }
});
