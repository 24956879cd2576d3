//! How core's errors become Python exceptions, and the argument checks every binding shares.
//!
//! - unknown names, out-of-range numbers: `ValueError`, listing what is valid;
//! - wrong Python types: `TypeError`, naming the expected type;
//! - the tracepoint backend without root: `PermissionError`, saying `backend="poll"` works;
//! - sock_diag unusable: `tcplab.TcplabError`, saying `method="proc"` may work;
//! - everything else (netlink, /proc, I/O): `tcplab.TcplabError`.

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyPermissionError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyInt, PyString};
use tcplab_core::{Error, Vocabulary};

create_exception!(
    _native,
    TcplabError,
    PyException,
    "Base class for tcplab's own errors (netlink, /proc, I/O, lesson runs).\n\n\
     Bad arguments raise ValueError or TypeError instead, and a tracer that needs root raises\n\
     PermissionError.\n\n\
     Example:\n\n\
     >>> import tcplab\n\
     >>> issubclass(tcplab.TcplabError, Exception)\n\
     True"
);

/// Turn a core error into the Python exception documented for it.
pub fn to_py(err: Error) -> PyErr {
    match err {
        Error::UnknownState { .. } | Error::UnknownName { .. } | Error::InvalidInput(_) => {
            PyValueError::new_err(err.to_string())
        }
        Error::TracepointNeedsRoot { .. } => PyPermissionError::new_err(format!(
            "{err}; from Python: tcplab.trace(..., backend=\"poll\") works without root"
        )),
        Error::Permission(msg) => PyPermissionError::new_err(msg),
        Error::SockDiagUnavailable(_) => {
            TcplabError::new_err(format!("{err}; try method=\"proc\""))
        }
        other => TcplabError::new_err(other.to_string()),
    }
}

/// One of core's named values (backend, method, side...) from a Python str, in core's
/// spellings: TypeError for a non-str, ValueError listing the choices for an unknown name.
pub fn name<T: Vocabulary>(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<T> {
    if !obj.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(format!(
            "{what} must be a str, not {}",
            type_name(obj)
        )));
    }
    let text: String = obj.extract()?;
    text.parse::<T>().map_err(|_| {
        let valid: Vec<String> = T::names().iter().map(|n| format!("{n:?}")).collect();
        PyValueError::new_err(format!(
            "unknown {} {text:?}; valid: {}",
            T::WHAT,
            valid.join(", ")
        ))
    })
}

/// Core's names for `T`, as Python sees them (a tuple of str).
pub fn names<T: Vocabulary>() -> Vec<&'static str> {
    T::names()
}

/// A short name for the type of a Python object, for error messages.
pub fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".to_string())
}

/// One port: a Python int in 0..=65535 (bool refused: `True` is not a port).
pub fn port(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<u16> {
    if obj.is_instance_of::<PyBool>() || !obj.is_instance_of::<PyInt>() {
        return Err(PyTypeError::new_err(format!(
            "{what} must be an int in 0..65535, not {}",
            type_name(obj)
        )));
    }
    match obj.extract::<i64>() {
        Ok(n) => tcplab_core::observe::check_port(n).map_err(to_py),
        // Larger than any i64: out of range all the same.
        Err(_) => Err(PyValueError::new_err(format!(
            "port {} is outside 0..65535",
            obj.str().map(|s| s.to_string()).unwrap_or_default()
        ))),
    }
}

/// `None`, one port or an iterable of ports (a string is refused, not iterated).
pub fn ports(obj: Option<&Bound<'_, PyAny>>, what: &str) -> PyResult<Vec<u16>> {
    let Some(obj) = obj else {
        return Ok(Vec::new());
    };
    if obj.is_none() {
        return Ok(Vec::new());
    }
    if obj.is_instance_of::<PyInt>() {
        return Ok(vec![port(obj, what)?]);
    }
    if obj.is_instance_of::<PyString>() || obj.is_instance_of::<PyBytes>() {
        return Err(PyTypeError::new_err(format!(
            "{what} must be an int or a list of ints, not {}",
            type_name(obj)
        )));
    }
    let iter = obj.try_iter().map_err(|_| {
        PyTypeError::new_err(format!(
            "{what} must be an int or a list of ints, not {}",
            type_name(obj)
        ))
    })?;
    let mut out = Vec::new();
    for item in iter {
        out.push(port(&item?, what)?);
    }
    if out.is_empty() {
        return Err(PyValueError::new_err(format!(
            "{what} is an empty list; pass None to mean every port"
        )));
    }
    Ok(out)
}
