//! State names: Python passes strings in any spelling (`"FIN-WAIT-1"`, `"fin_wait1"`,
//! `"estab"`), core's `TcpState` parses them, Python gets netstat's spelling back.

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyString;
use tcplab_core::TcpState;

use crate::errors::{to_py, type_name};

/// Parse one state name in any spelling (the canonical, netstat spelling comes back).
pub fn parse(obj: &Bound<'_, PyAny>) -> PyResult<TcpState> {
    if !obj.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(format!(
            "a state must be a str such as \"TIME_WAIT\" or \"fin-wait-1\", not {}",
            type_name(obj)
        )));
    }
    let name: String = obj.extract()?;
    name.parse::<TcpState>().map_err(to_py)
}

/// `None`, one state name or an iterable of names.
pub fn parse_many(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<TcpState>> {
    let Some(obj) = obj else {
        return Ok(Vec::new());
    };
    if obj.is_none() {
        return Ok(Vec::new());
    }
    if obj.is_instance_of::<PyString>() {
        return Ok(vec![parse(obj)?]);
    }
    let iter = obj.try_iter().map_err(|_| {
        PyTypeError::new_err(format!(
            "state must be a str or a list of str, not {}",
            type_name(obj)
        ))
    })?;
    let mut out = Vec::new();
    for item in iter {
        out.push(parse(&item?)?);
    }
    if out.is_empty() {
        return Err(pyo3::exceptions::PyValueError::new_err(
            "state is an empty list; pass None to mean every state",
        ));
    }
    Ok(out)
}

/// The canonical (netstat) spelling of a TCP state given in any spelling.
///
/// Raises ValueError for an unknown name, listing the valid ones.
///
/// Example:
///
/// >>> import tcplab
/// >>> tcplab.state_name("fin-wait-1")
/// 'FIN_WAIT1'
/// >>> tcplab.state_name("SYN-RECEIVED")
/// 'SYN_RECV'
#[pyfunction]
pub fn state_name(name: &Bound<'_, PyAny>) -> PyResult<&'static str> {
    Ok(parse(name)?.netstat())
}

/// Every TCP state Linux has, in kernel code order (netstat spelling).
///
/// Example:
///
/// >>> import tcplab
/// >>> tcplab.states()[:3]
/// ['ESTABLISHED', 'SYN_SENT', 'SYN_RECV']
#[pyfunction]
pub fn states() -> Vec<&'static str> {
    TcpState::ALL.iter().map(|s| s.netstat()).collect()
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(state_name, m)?)?;
    m.add_function(wrap_pyfunction!(states, m)?)?;
    Ok(())
}
