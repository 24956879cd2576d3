//! `tcplab._native`: the Python face of tcplab-core, one thin wrapper per core type.
//!
//! The files mirror core's modules: [`state`] (state names in any spelling), [`observe`]
//! (snapshots), [`timeline`] (Timeline and Event), [`trace`] (the transition tracer),
//! [`capture`] (segments on the wire, and the namespace of `tcplab.sandbox`),
//! [`catalog`] (the lesson catalog) and [`model`] (the RFC 9293 model). Python-only comforts
//! (pandas frames, plots, running lesson binaries in a child process) live in
//! `python/tcplab/`, so that this crate stays a mapping of core, not a second implementation.
//!
//! Left out on purpose: nothing here holds the GIL while the kernel is asked something, and
//! nothing here panics on bad input: every argument is checked and turned into `ValueError` or
//! `TypeError` with a message that says what is valid.

use pyo3::prelude::*;
use pyo3::types::PyTuple;

pub mod capture;
pub mod catalog;
pub mod errors;
pub mod model;
pub mod observe;
pub mod state;
pub mod timeline;
pub mod trace;

/// Core's names and limits, so that `python/tcplab` checks arguments against the same values
/// as the runner and the lesson binaries instead of restating them.
fn register_vocabulary(m: &Bound<'_, PyModule>) -> PyResult<()> {
    use tcplab_core::limits;
    use tcplab_core::observe::trace::Backend;
    use tcplab_core::observe::{Family, Method};
    use tcplab_core::timeline::Side;
    let py = m.py();
    m.add("BACKENDS", PyTuple::new(py, errors::names::<Backend>())?)?;
    m.add("METHODS", PyTuple::new(py, errors::names::<Method>())?)?;
    m.add("FAMILIES", PyTuple::new(py, errors::names::<Family>())?)?;
    m.add("SIDES", PyTuple::new(py, errors::names::<Side>())?)?;
    m.add("MAX_CONNECTIONS", limits::MAX_CONNECTIONS)?;
    m.add("MAX_HOLD_SECS", limits::MAX_HOLD_SECS)?;
    m.add(
        "LESSON_DEADLINE_SECS",
        limits::LESSON_DEADLINE.as_secs_f64(),
    )?;
    m.add("MIN_CHURN_SECS", limits::MIN_CHURN_SECS)?;
    m.add("MAX_CHURN_SECS", limits::MAX_CHURN_SECS)?;
    m.add("MIN_CHURN_RATE", limits::MIN_CHURN_RATE)?;
    m.add("MAX_CHURN_RATE", limits::MAX_CHURN_RATE)?;
    Ok(())
}

/// The native module. `tcplab/__init__.py` re-exports its public names.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("TcplabError", py.get_type::<errors::TcplabError>())?;
    m.add(
        "BUILD_TARGET_DIR",
        concat!(env!("CARGO_MANIFEST_DIR"), "/../target"),
    )?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    register_vocabulary(m)?;
    state::register(m)?;
    observe::register(m)?;
    timeline::register(m)?;
    trace::register(m)?;
    capture::register(m)?;
    catalog::register(m)?;
    model::register(m)?;
    Ok(())
}
