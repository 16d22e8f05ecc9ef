//! Python bindings of `sig`: verify a batch of frames with the GIL released, one signature,
//! read a key (for `nev-ingest keys add`), and the parts of an activation frame.

use std::collections::HashMap;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::sig::locate::locate;
use crate::sig::{parse_key, verify, verify_frame, DeviceKey, Status};

/// Adds the signature functions to the `nev_native` module (one line in py.rs).
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(verify_frames, m)?)?;
    m.add_function(wrap_pyfunction!(verify_signature, m)?)?;
    m.add_function(wrap_pyfunction!(check_key, m)?)?;
    m.add_function(wrap_pyfunction!(activation_key, m)?)?;
    Ok(())
}

/// One status per frame (`sig::Status` as int). `keys[i]` is the (algorithm, key bytes) of
/// frame i's VIN, or None when it has none. A key used by several frames is parsed once.
#[pyfunction]
fn verify_frames(
    py: Python<'_>,
    frames: Vec<Bound<'_, PyBytes>>,
    keys: Vec<Option<(u8, Bound<'_, PyBytes>)>>,
) -> PyResult<Vec<u8>> {
    if frames.len() != keys.len() {
        return Err(PyValueError::new_err(format!(
            "verify_frames: {} frames but {} keys; pass one key (or None) per frame",
            frames.len(),
            keys.len()
        )));
    }
    let slices: Vec<&[u8]> = frames.iter().map(|b| b.as_bytes()).collect();
    let key_slices: Vec<Option<(u8, &[u8])>> = keys
        .iter()
        .map(|k| k.as_ref().map(|(a, b)| (*a, b.as_bytes())))
        .collect();
    Ok(py.detach(|| {
        let mut parsed: HashMap<(u8, &[u8]), Option<DeviceKey>> = HashMap::new();
        slices
            .iter()
            .zip(&key_slices)
            .map(|(frame, key)| {
                let Some((algorithm, bytes)) = *key else {
                    return verify_frame(frame, None) as u8;
                };
                let entry = parsed
                    .entry((algorithm, bytes))
                    .or_insert_with(|| parse_key(algorithm, bytes).ok());
                match entry {
                    Some(k) => verify_frame(frame, Some(k)) as u8,
                    None => match verify_frame(frame, None) {
                        Status::UnknownKey => Status::BadKey as u8,
                        other => other as u8,
                    },
                }
            })
            .collect()
    }))
}

/// `sig::verify`: one signature over `signed` (status as int).
#[pyfunction]
fn verify_signature(
    key_algorithm: u8,
    public_key: &[u8],
    algorithm: u8,
    signed: &[u8],
    r: &[u8],
    s: &[u8],
) -> u8 {
    verify(key_algorithm, public_key, algorithm, signed, r, s) as u8
}

/// Raise ValueError (one line: what is wrong, what to give) unless `key` is a usable key.
#[pyfunction]
fn check_key(algorithm: u8, key: &[u8]) -> PyResult<()> {
    parse_key(algorithm, key)
        .map(|_| ())
        .map_err(|e| PyValueError::new_err(e.0))
}

/// An activation frame's (chip id, signature type, public key, status of its signature under
/// that key), or None when `frame` is no well-formed 2025 activation.
#[pyfunction]
fn activation_key<'py>(
    py: Python<'py>,
    frame: &[u8],
) -> Option<(Bound<'py, PyBytes>, u8, Bound<'py, PyBytes>, u8)> {
    let parts = locate(frame)?;
    let (chip, key) = (parts.chip_id?, parts.public_key?);
    let sig = parts.signature?;
    let status = match parse_key(sig.algorithm, &frame[key.clone()]) {
        Ok(k) => verify_frame(frame, Some(&k)),
        Err(_) => Status::BadKey,
    };
    Some((
        PyBytes::new(py, &frame[chip]),
        sig.algorithm,
        PyBytes::new(py, &frame[key]),
        status as u8,
    ))
}
