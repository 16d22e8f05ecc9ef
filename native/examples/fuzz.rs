//! The bounded fuzz loop over the native decoders (pure core: no Python, no libpython): the
//! vehicle decoder and its COPY encoder, and the charger and battery-pack profile decoders.
//!
//!     cargo run --release --example fuzz -- [INPUTS] [SEED]
//!
//! Seeds: the golden vectors (tests/golden/vectors.jsonl, read at run time), the simulated and
//! generated real-time frames of `native/fuzz-seeds/frames.hex` and the simulated charger and
//! pack frames of `charger.hex` / `battery.hex` there. Each input is one seed
//! with 1..4 mutations (bit flips, interesting bytes, inserts, deletes, count and length edits,
//! truncations, splices with another seed); most are then resealed (length field and BCC fixed)
//! so that the mutation reaches the block walk instead of stopping at the checksum.
//!
//! Checks, per input, through all three decoders: no panic; a vehicle reject names one of the
//! reasons of `nev_native::error` (the Python `FRAME_REASONS` the pipeline routes); vehicle
//! rows are consistent with the frame (a tail offset inside the data unit, cell and probe
//! ranges inside the frame) and encode to COPY tuples (one vehicle tuple of 38 fields); the
//! 2025 signature verifier (`sig`) gives a status for every input, with the key of the golden
//! activation vector (its mutants reach RSA verification with a real key).
//! A failure prints the input's hex and exits 1. Progress goes to stderr about once a second;
//! the last stdout line is one JSON object (inputs, seconds, rate, outcomes, reasons).
//!
//! A test (`cargo test --release --example fuzz`, run by `./dev lint` through
//! `cargo test --release --all-targets`) runs 200,000 inputs; docs/performance.md records a
//! run of 10,000,000.

use std::collections::BTreeMap;
use std::panic::{self, AssertUnwindSafe};
use std::time::Instant;

use nev_native::battery::{self, Identity};
use nev_native::charger;
use nev_native::envelope::{bcc, HEADER_SIZE};
use nev_native::error;
use nev_native::sig::{self, DeviceKey, Status};
use nev_native::vehicle::encode::{encode, MOTORS, VEHICLES};
use nev_native::vehicle::{decode, FrameRows, Outcome};

const KNOWN_REASONS: [&str; error::FRAME_REASONS.len()] = error::FRAME_REASONS;
// Byte values that sit on the standard's edges: 0xFE abnormal, 0xFF invalid, counts of 0/1,
// sign and range boundaries.
const INTERESTING: [u8; 10] = [0x00, 0x01, 0x02, 0x05, 0x7F, 0x80, 0xFD, 0xFE, 0xFF, 0x10];
const DEFAULT_INPUTS: u64 = 1_000_000;

/// xorshift64*: small, deterministic and good enough to pick mutations (no dependency).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-enough in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// The seed frames: golden vectors plus `fuzz-seeds/frames.hex`.
fn seeds() -> Vec<Vec<u8>> {
    // Cargo sets the variable when it runs the tests; the compile-time path is only the
    // fallback, since a build reused from another checkout (a shared CARGO_TARGET_DIR) carries
    // that checkout's path.
    let root = std::env::var("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string());
    let mut out = Vec::new();
    let golden = std::fs::read_to_string(format!("{root}/../tests/golden/vectors.jsonl"))
        .expect("tests/golden/vectors.jsonl: run the fuzz loop from a checkout of nev-ingest");
    for line in golden.lines() {
        // Each line is a JSON object with one "hex" string; no JSON parser needed for that.
        if let Some(hex) = line
            .split("\"hex\": \"")
            .nth(1)
            .and_then(|s| s.split('"').next())
        {
            out.extend(unhex(hex));
        }
    }
    for name in ["frames", "charger", "battery"] {
        let sim = std::fs::read_to_string(format!("{root}/fuzz-seeds/{name}.hex"))
            .unwrap_or_else(|_| panic!("native/fuzz-seeds/{name}.hex is part of the repository"));
        out.extend(sim.lines().filter_map(unhex));
    }
    assert!(out.len() > 300, "too few fuzz seeds: {}", out.len());
    out
}

fn unhex(hex: &str) -> Option<Vec<u8>> {
    let hex = hex.trim();
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

fn to_hex(buf: &[u8]) -> String {
    buf.iter().map(|b| format!("{b:02X}")).collect()
}

/// Fix the data-unit length and the BCC after a mutation (what a well-behaved but wrong
/// terminal would send), so the mutation reaches the data unit's walk.
fn reseal(buf: &mut [u8]) {
    if buf.len() > HEADER_SIZE {
        let n = (buf.len() - HEADER_SIZE - 1).min(0xFFFF) as u16;
        buf[22..24].copy_from_slice(&n.to_be_bytes());
        let last = buf.len() - 1;
        buf[last] = bcc(buf, 2, last);
    }
}

/// One mutation of `buf`, mostly in the data unit (offset 24 on), sometimes in the header.
fn mutate(buf: &mut Vec<u8>, rng: &mut Rng, seeds: &[Vec<u8>]) {
    let first = if rng.chance(10) { 0 } else { HEADER_SIZE };
    if buf.len() <= first + 1 {
        buf.push(rng.next() as u8);
        return;
    }
    let at = first + rng.below(buf.len() - first);
    match rng.below(9) {
        0 => buf[at] ^= 1 << rng.below(8),
        1 => buf[at] = INTERESTING[rng.below(INTERESTING.len())],
        2 => buf[at] = rng.next() as u8,
        3 => {
            // A count or a length edited by a little: the walk's hardest case (count_mismatch).
            let delta = [1u8, 2, 3, 0xFF, 0xFE][rng.below(5)];
            buf[at] = buf[at].wrapping_add(delta);
        }
        4 => {
            let n = 1 + rng.below(8);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            buf.splice(at..at, bytes);
        }
        5 => {
            let end = (at + 1 + rng.below(16)).min(buf.len());
            buf.drain(at..end);
        }
        6 => buf.truncate(at.max(1)),
        7 => {
            // Splice: this frame up to `at`, another seed's bytes from a random point.
            let other = &seeds[rng.below(seeds.len())];
            let from = rng.below(other.len().max(1));
            buf.truncate(at);
            buf.extend_from_slice(other.get(from..).unwrap_or_default());
        }
        _ => {
            // A 16-bit big-endian field (a length, a cell count, a first-cell number) set to an
            // edge value.
            let v = [0u16, 1, 0xFFFE, 0xFFFF, 0x0100, 0x7FFF][rng.below(6)];
            if at + 2 <= buf.len() {
                buf[at..at + 2].copy_from_slice(&v.to_be_bytes());
            }
        }
    }
}

/// What must hold for the rows of an accepted vehicle frame `buf`, and their COPY tuples.
fn check_rows(rows: &FrameRows, buf: &[u8]) -> Result<(), String> {
    let len = buf.len();
    if let Some(tail) = rows.tail_offset {
        if tail < HEADER_SIZE || tail >= len {
            return Err(format!(
                "tail_offset {tail} outside the data unit of {len} bytes"
            ));
        }
    }
    for pack in &rows.packs {
        let (cells, probes) = (&pack.cells, &pack.probes);
        if cells.start > cells.end
            || cells.end > len
            || probes.start > probes.end
            || probes.end > len
        {
            return Err(format!(
                "pack {}: cell or probe range beyond the frame",
                pack.pack
            ));
        }
        if cells.len() % 2 != 0 {
            return Err(format!("pack {}: an odd number of cell bytes", pack.pack));
        }
    }
    // An accepted frame's ID is a VIN: 17 ASCII characters.
    let vin = buf
        .get(4..21)
        .and_then(|raw| std::str::from_utf8(raw).ok())
        .ok_or("rows for a frame whose ID is not text")?;
    let mut out: [Vec<u8>; 4] = Default::default();
    encode(rows, buf, vin, Some(1_780_000_000_000), &mut out);
    if out[VEHICLES].get(..2) != Some(&38i16.to_be_bytes()[..]) {
        return Err("the vehicle tuple does not start with its 38 fields".into());
    }
    if out[MOTORS].is_empty() != rows.motors.is_empty() {
        return Err("motor tuples and motor rows disagree".into());
    }
    Ok(())
}

#[derive(Default)]
struct Tally {
    inputs: u64,
    rows: u64,
    partial: u64,
    structured: u64,
    reasons: BTreeMap<&'static str, u64>,
    charger_rows: u64,
    pack_rows: u64,
    signatures_checked: u64,
}

impl Tally {
    fn json(&self, seconds: f64) -> String {
        let reasons: Vec<String> = self
            .reasons
            .iter()
            .map(|(k, v)| format!("\"{k}\": {v}"))
            .collect();
        format!(
            "{{\"inputs\": {}, \"seconds\": {:.2}, \"inputs_per_s\": {:.0}, \"rows\": {}, \
             \"partial\": {}, \"structured\": {}, \"rejected\": {{{}}}, \"charger_rows\": {}, \
             \"pack_rows\": {}, \"signatures_checked\": {}, \"failures\": 0}}",
            self.inputs,
            seconds,
            self.inputs as f64 / seconds.max(1e-9),
            self.rows,
            self.partial,
            self.structured,
            reasons.join(", "),
            self.charger_rows,
            self.pack_rows,
            self.signatures_checked
        )
    }
}

/// The public key of the first seed that is a 2025 activation whose key parses (the golden
/// `activation2025` vectors).
fn activation_key(seeds: &[Vec<u8>]) -> Option<DeviceKey> {
    seeds.iter().find_map(|s| {
        let parts = sig::locate::locate(s)?;
        let algorithm = parts.signature?.algorithm;
        sig::parse_key(algorithm, &s[parts.public_key?]).ok()
    })
}

/// Run `inputs` mutated frames from `seed`; `Err` names the first failing input.
fn run(inputs: u64, seed: u64, progress: bool) -> Result<Tally, String> {
    let seeds = seeds();
    let key = activation_key(&seeds);
    let mut rng = Rng(seed | 1);
    let mut tally = Tally::default();
    let started = Instant::now();
    let mut next_report = 1.0;
    let mut buf = Vec::with_capacity(4096);
    for i in 0..inputs {
        buf.clear();
        buf.extend_from_slice(&seeds[rng.below(seeds.len())]);
        for _ in 0..1 + rng.below(4) {
            mutate(&mut buf, &mut rng, &seeds);
        }
        if rng.chance(85) {
            reseal(&mut buf);
        }
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
            let kinds = (
                charger::decode(&buf).is_some(),
                battery::decode(&buf, Identity::Check).is_some(),
                battery::decode(&buf, Identity::Trusted).is_some(),
            );
            let status = sig::verify_frame(&buf, key.as_ref());
            let vehicle = decode(&buf);
            let checked = match &vehicle {
                Outcome::Rows(rows) => check_rows(rows, &buf),
                _ => Ok(()),
            };
            (vehicle, checked, kinds, status)
        }))
        .map_err(|_| format!("panic on input {i}: {}", to_hex(&buf)))?;
        let (outcome, checked, (charger_rows, pack_rows, _), status) = outcome;
        tally.signatures_checked += u64::from(!matches!(
            status,
            Status::NotApplicable | Status::Unsigned | Status::UnknownKey
        ));
        checked.map_err(|e| format!("input {i}: {e}: {}", to_hex(&buf)))?;
        tally.charger_rows += u64::from(charger_rows);
        tally.pack_rows += u64::from(pack_rows);
        match outcome {
            Outcome::Rows(rows) => {
                tally.rows += 1;
                tally.partial += u64::from(rows.partial());
            }
            Outcome::Structured => tally.structured += 1,
            Outcome::Error(err) => {
                let Some(reason) = KNOWN_REASONS.iter().find(|r| **r == err.reason) else {
                    return Err(format!(
                        "unknown reason {err} on input {i}: {}",
                        to_hex(&buf)
                    ));
                };
                *tally.reasons.entry(reason).or_default() += 1;
            }
        }
        tally.inputs += 1;
        if progress && i % 4096 == 0 {
            let s = started.elapsed().as_secs_f64();
            if s >= next_report {
                next_report = s + 1.0;
                eprintln!(
                    "fuzz: {} inputs, {:.0}/s, {} rows, {} structured, {} rejected",
                    tally.inputs,
                    tally.inputs as f64 / s,
                    tally.rows,
                    tally.structured,
                    tally.reasons.values().sum::<u64>()
                );
            }
        }
    }
    Ok(tally)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let inputs = args
        .next()
        .map(|a| a.replace('_', "").parse::<u64>())
        .transpose()
        .unwrap_or_else(|_| {
            eprintln!("usage: cargo run --release --example fuzz -- [INPUTS] [SEED]");
            std::process::exit(2)
        })
        .unwrap_or(DEFAULT_INPUTS);
    let seed = args
        .next()
        .and_then(|a| a.parse::<u64>().ok())
        .unwrap_or(32960);
    // The default hook would print every caught panic's message; run() reports the input.
    panic::set_hook(Box::new(|info| eprintln!("fuzz: {info}")));
    let started = Instant::now();
    match run(inputs, seed, true) {
        Ok(tally) => println!("{}", tally.json(started.elapsed().as_secs_f64())),
        Err(failure) => {
            eprintln!("fuzz: FAILED: {failure}");
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_hundred_thousand_mutated_frames_decode_without_a_panic() {
        let tally = run(200_000, 7, false).unwrap_or_else(|failure| panic!("{failure}"));
        // The mutations must reach every outcome, or the loop proves little.
        assert!(tally.rows > 10_000, "too few accepted: {}", tally.rows);
        assert!(tally.partial > 0 && tally.structured > 0);
        assert!(
            tally.reasons.len() >= 4,
            "reasons reached: {:?}",
            tally.reasons
        );
    }

    #[test]
    fn reseal_makes_a_mutated_frame_pass_the_envelope() {
        let mut frame = seeds()[0].clone();
        frame.extend_from_slice(&[1, 2, 3]);
        reseal(&mut frame);
        let n = usize::from(u16::from_be_bytes([frame[22], frame[23]]));
        assert_eq!(HEADER_SIZE + n + 1, frame.len());
        assert_eq!(bcc(&frame, 2, frame.len() - 1), frame[frame.len() - 1]);
    }
}
