//! The Python module `nev_native` (TODO issue 12: the batch decoder, see vehicle/mod.rs).

use pyo3::prelude::*;

#[pymodule]
fn nev_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    crate::py_json::register(m)?;
    Ok(())
}
