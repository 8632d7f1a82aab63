//! Python values to larder's bytes and back: keys are `bytes` or `str` (UTF-8), values any
//! bytes-like object (bytes, bytearray, memoryview, anything with the buffer protocol), TTLs
//! seconds as int or float.

use std::borrow::Cow;
use std::time::Duration;

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyString};

/// A key's bytes: borrowed from a `bytes` object, encoded from a `str`.
pub fn key<'a>(k: &'a Bound<'_, PyAny>) -> PyResult<Cow<'a, [u8]>> {
    if let Ok(b) = k.cast::<PyBytes>() {
        return Ok(Cow::Borrowed(b.as_bytes()));
    }
    if let Ok(s) = k.cast::<PyString>() {
        return Ok(Cow::Owned(s.to_str()?.as_bytes().to_vec()));
    }
    Err(PyTypeError::new_err(format!(
        "keys are bytes or str, not {}",
        k.get_type().name()?
    )))
}

/// A value's bytes: borrowed from `bytes`, copied from other bytes-like objects.
pub fn value<'a>(v: &'a Bound<'_, PyAny>) -> PyResult<Cow<'a, [u8]>> {
    if let Ok(b) = v.cast::<PyBytes>() {
        return Ok(Cow::Borrowed(b.as_bytes()));
    }
    if let Ok(b) = v.cast::<PyByteArray>() {
        return Ok(Cow::Owned(b.to_vec()));
    }
    if v.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(
            "values are bytes-like, not str: encode it (value.encode()) or pickle it",
        ));
    }
    match PyBuffer::<u8>::get(v) {
        Ok(buf) => Ok(Cow::Owned(buf.to_vec(v.py())?)),
        Err(_) => Err(PyTypeError::new_err(format!(
            "values are bytes-like (bytes, bytearray, memoryview), not {}",
            v.get_type().name()?
        ))),
    }
}

/// A TTL in seconds (`None`: no expiry). Zero or negative is refused here: larder has no
/// "expired on arrival" (the Django backend maps those to a delete).
pub fn ttl(t: Option<f64>) -> PyResult<Option<Duration>> {
    match t {
        None => Ok(None),
        Some(s) if s.is_finite() && s > 0.0 => Duration::try_from_secs_f64(s)
            .map(Some)
            .map_err(|e| PyValueError::new_err(format!("ttl {s}: {e}"))),
        Some(s) => Err(PyValueError::new_err(format!(
            "ttl must be a positive number of seconds or None (no expiry), not {s}"
        ))),
    }
}
