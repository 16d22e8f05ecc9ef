//! The JSON of `nev-ingest decode` (vehicle profile) from the native walk: see
//! `vehicle::json`. Registered by one line in `py.rs`.

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::vehicle::json::frame_json;

/// `orjson.dumps(frame_to_dict(decode_frame(frame)))` for a real-time / reissue command
/// packet with a plain data unit that decodes; `None` for every other frame (run the Python
/// reference, which also names the error of a rejected one).
#[pyfunction]
fn vehicle_json<'py>(py: Python<'py>, frame: &[u8]) -> Option<Bound<'py, PyBytes>> {
    frame_json(frame).map(|out| PyBytes::new(py, &out))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(vehicle_json, m)?)
}
