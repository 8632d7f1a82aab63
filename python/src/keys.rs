//! `Cache.keys(pattern)`: an iterator over the keys present, as bytes.

use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// Streams keys (expired ones excluded) without loading them all; keys written or removed
/// meanwhile may or may not appear.
#[pyclass(module = "larder._larder")]
pub struct KeyIter {
    pub(crate) keys: std::sync::Mutex<larder::Keys>,
    pub(crate) glob: Option<larder::Glob>,
}

#[pymethods]
impl KeyIter {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let k = keys.next()?;
            if self.glob.as_ref().is_none_or(|g| g.matches(&k)) {
                return Some(PyBytes::new(py, &k));
            }
        }
    }
}
