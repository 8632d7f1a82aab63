//! `larder._larder`: the Python extension over the `larder` crate. The Python package
//! (`python/larder/`) re-exports [`cache::Cache`] as `larder.Cache` and defines the error
//! classes this module raises (`larder.errors`), the Django backend and the type stubs.

use pyo3::prelude::*;

mod cache;
mod convert;
mod errors;
mod keys;

#[pymodule]
fn _larder(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<cache::Cache>()?;
    m.add_class::<keys::KeyIter>()?;
    m.add_function(wrap_pyfunction!(cache::default_path, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
