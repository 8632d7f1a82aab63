//! larder's errors as the Python exceptions of `larder.errors`, each also a subclass of
//! what Python code already catches (`ValueError` for a key too long, `OSError` for a file
//! that is not there).

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

/// The class named `name` in `larder.errors`, cached after the first lookup.
fn class<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyType>>,
    name: &str,
) -> PyResult<&'py Bound<'py, PyType>> {
    cell.import(py, "larder.errors", name)
}

fn raise(py: Python<'_>, cell: &'static PyOnceLock<Py<PyType>>, name: &str, msg: String) -> PyErr {
    match class(py, cell, name).and_then(|c| c.call1((msg.clone(),))) {
        Ok(e) => PyErr::from_value(e),
        Err(_) => PyRuntimeError::new_err(msg),
    }
}

macro_rules! classes {
    ($($cell:ident),*) => { $(static $cell: PyOnceLock<Py<PyType>> = PyOnceLock::new();)* };
}
classes!(
    KEY_TOO_LONG,
    VALUE_TOO_LARGE,
    INVALID_TTL,
    ARENA_FULL,
    NOT_A_NUMBER,
    TOO_MANY_PROCESSES,
    TOO_MANY_TAGS,
    OBSERVER,
    ARENA_NOT_FOUND,
    NOT_AN_ARENA,
    OPEN_ERROR,
    ERROR
);

/// An operation's error.
pub fn op(py: Python<'_>, e: larder::Error) -> PyErr {
    use larder::Error as E;
    let msg = e.to_string();
    match e {
        E::EmptyKey { .. } | E::KeyTooLarge { .. } => raise(py, &KEY_TOO_LONG, "KeyTooLong", msg),
        E::ValueTooLarge { .. } => raise(py, &VALUE_TOO_LARGE, "ValueTooLarge", msg),
        E::InvalidTtl { .. } => raise(py, &INVALID_TTL, "InvalidTTL", msg),
        E::ArenaFull => raise(py, &ARENA_FULL, "ArenaFull", msg),
        E::NotANumber => raise(py, &NOT_A_NUMBER, "NotANumber", msg),
        E::TooManyProcesses { .. } => raise(py, &TOO_MANY_PROCESSES, "TooManyProcesses", msg),
        E::TooManyTags { .. } => raise(py, &TOO_MANY_TAGS, "TooManyTags", msg),
        E::Observer => raise(py, &OBSERVER, "ObserverOnly", msg),
        _ => raise(py, &ERROR, "Error", msg),
    }
}

/// Opening's error.
pub fn open(py: Python<'_>, e: larder::OpenError) -> PyErr {
    use larder::OpenError as E;
    let msg = e.to_string();
    match &e {
        E::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => raise(
            py,
            &ARENA_NOT_FOUND,
            "ArenaNotFound",
            format!("{msg} (is larderd running? it prints its arena path when it starts)"),
        ),
        E::NotAnArena { .. } | E::BadArena { .. } | E::LayoutVersion { .. } => {
            raise(py, &NOT_AN_ARENA, "NotAnArena", msg)
        }
        E::TooManyProcesses { .. } => raise(py, &TOO_MANY_PROCESSES, "TooManyProcesses", msg),
        _ => raise(py, &OPEN_ERROR, "OpenError", msg),
    }
}
