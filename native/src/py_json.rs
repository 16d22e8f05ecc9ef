//! The JSON of `nev-ingest decode` (vehicle profile) from the native walk (`vehicle::json`),
//! and `bench`, the pure native cost that loadtest/bench_native.py reports. Registered by one
//! line in `py.rs`.

use std::hint::black_box;
use std::time::Instant;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::envelope::{ID_OFFSET, ID_SIZE};
use crate::vehicle::encode::encode;
use crate::vehicle::json::frame_json;
use crate::vehicle::{decode, Outcome};

/// `orjson.dumps(frame_to_dict(decode_frame(frame)))` for a real-time / reissue command
/// packet with a plain data unit that decodes; `None` for every other frame (run the Python
/// reference, which also names the error of a rejected one).
#[pyfunction]
fn vehicle_json<'py>(py: Python<'py>, frame: &[u8]) -> Option<Bound<'py, PyBytes>> {
    frame_json(frame).map(|out| PyBytes::new(py, &out))
}

/// One pass of `what` over `frames`; false when a frame is not taken natively.
fn pass(what: &str, frames: &[&[u8]], tables: &mut [Vec<u8>; 4]) -> bool {
    for &buf in frames {
        let ok = match what {
            "json" => black_box(frame_json(buf)).is_some(),
            _ => match decode(buf) {
                Outcome::Rows(rows) => {
                    let vin = buf.get(ID_OFFSET..ID_OFFSET + ID_SIZE);
                    let vin = vin
                        .and_then(|raw| std::str::from_utf8(raw).ok())
                        .unwrap_or("");
                    if what == "decode+encode" {
                        encode(&rows, buf, vin, Some(0), tables);
                    }
                    black_box(&rows);
                    true
                }
                _ => false,
            },
        };
        if !ok {
            return false;
        }
    }
    for t in tables.iter_mut() {
        t.clear(); // the same reuse of the buffers as a batch of the pipeline
    }
    true
}

/// Seconds taken by `passes` passes of `what` ("decode", "decode+encode" or "json") over
/// `frames`, in Rust with the GIL released and no Python object built: the floor of the batch
/// call. Every frame must be a real-time frame the native path takes.
#[pyfunction]
#[pyo3(name = "bench")]
fn bench_native(py: Python<'_>, what: &str, frames: Vec<Vec<u8>>, passes: usize) -> PyResult<f64> {
    if !matches!(what, "decode" | "decode+encode" | "json") {
        return Err(PyValueError::new_err(format!(
            "bench: unknown phase {what:?}: use \"decode\", \"decode+encode\" or \"json\""
        )));
    }
    let slices: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
    let mut tables: [Vec<u8>; 4] = Default::default();
    let (ok, seconds) = py.detach(|| {
        let start = Instant::now();
        let mut ok = true;
        for _ in 0..passes {
            ok &= pass(what, &slices, &mut tables);
        }
        (ok, start.elapsed().as_secs_f64())
    });
    if !ok {
        return Err(PyValueError::new_err(
            "bench: a frame is not taken by the native path; pass typical real-time frames",
        ));
    }
    Ok(seconds)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(vehicle_json, m)?)?;
    m.add_function(wrap_pyfunction!(bench_native, m)?)
}
