//! The lesson catalog (`exercises/lessons.toml`, compiled in): `tcplab.lessons()` and the
//! lookup `tcplab.run()` uses to turn "03" + "leak" into a binary name.
//!
//! Left out on purpose: running the binary. That happens in `tcplab/_lessons.py` with
//! `subprocess`, in a child process, so leaked sockets end when the run ends.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyInt, PyString};
use tcplab_catalog::{Catalog, Choice, Verdict};

use crate::errors::type_name;

/// The whole catalog as JSON (`tcplab.lessons()` parses it into dicts).
#[pyfunction]
pub fn _catalog_json() -> PyResult<String> {
    serde_json::to_string(&Catalog::builtin().lessons)
        .map_err(|e| PyValueError::new_err(e.to_string()))
}

fn lesson_key(obj: &Bound<'_, PyAny>) -> PyResult<String> {
    if obj.is_instance_of::<PyString>() {
        return obj.extract();
    }
    if obj.is_instance_of::<PyInt>() && !obj.is_instance_of::<PyBool>() {
        let n: i64 = obj.extract().unwrap_or(-1);
        if !(1..=99).contains(&n) {
            return Err(PyValueError::new_err(format!(
                "unknown lesson {}; {}",
                obj.str().map(|s| s.to_string()).unwrap_or_default(),
                list_lessons(&Catalog::builtin())
            )));
        }
        return Ok(format!("{n:02}"));
    }
    Err(PyTypeError::new_err(format!(
        "lesson must be a str such as \"03\" or \"close-wait\" (or an int), not {}",
        type_name(obj)
    )))
}

fn list_lessons(c: &Catalog) -> String {
    format!(
        "lessons are: {}",
        c.lessons
            .iter()
            .map(|l| format!("{} ({})", l.id, l.slug))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Resolve a lesson key and an optional variant to (lesson id, binary name, expected verdict).
/// Without a variant, the student's binary (the leaking one).
#[pyfunction]
#[pyo3(signature = (lesson, variant=None))]
pub fn _resolve(
    lesson: &Bound<'_, PyAny>,
    variant: Option<&Bound<'_, PyAny>>,
) -> PyResult<(String, String, String)> {
    let key = lesson_key(lesson)?;
    let c = Catalog::builtin();
    let l = c.lesson(&key).ok_or_else(|| {
        PyValueError::new_err(format!("unknown lesson {key:?}; {}", list_lessons(&c)))
    })?;
    // A full binary name given as the lesson picks that binary.
    let key = key.trim();
    let by_name = l.binaries.iter().find(|b| b.name == key);
    let choice = match (variant, by_name) {
        (Some(v), _) if !v.is_none() => {
            if !v.is_instance_of::<PyString>() {
                return Err(PyTypeError::new_err(format!(
                    "variant must be a str such as \"leak\" or \"fixed\", not {}",
                    type_name(v)
                )));
            }
            let v: String = v.extract()?;
            // The one resolution the runner uses too (`tcplab run --variant`).
            l.resolve(&v)
                .map_err(|e| PyValueError::new_err(e.to_string()))?
        }
        (_, Some(b)) => Choice::Shipped(b),
        // Without a variant: the binary that shows the lesson's problem (02 has only one).
        _ => l.resolve("leak").unwrap_or(Choice::Shipped(&l.binaries[0])),
    };
    match choice {
        Choice::Shipped(b) => Ok((l.id.clone(), b.name.clone(), b.expect.to_string())),
        // The student's own copy, graded like the fix it should become; `run()` builds it
        // in the checkout (the Python side says so when there is none).
        Choice::Student(name) => Ok((l.id.clone(), name, Verdict::Clean.to_string())),
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(_catalog_json, m)?)?;
    m.add_function(wrap_pyfunction!(_resolve, m)?)?;
    Ok(())
}
