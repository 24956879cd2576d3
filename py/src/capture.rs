//! `tcplab.capture()`: core's capture of the segments on some ports of `lo`, as a context
//! manager like `tcplab.trace()`; the segments as dicts for `Timeline.segments` (a pandas
//! DataFrame built in `tcplab._frames`); and the private namespace `tcplab.sandbox()` enters.
//!
//! Capture needs CAP_NET_RAW: root has it on the host, any user inside a user + network
//! namespace of their own. Refused, it raises PermissionError saying both ways out.
//!
//! Left out on purpose: pcapng files from Python (`tcplab capture --pcap` and the lessons'
//! `--pcap` write them), and frames (only the parsed segments cross into Python).

use std::sync::{Mutex, MutexGuard};

use pyo3::exceptions::PyPermissionError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use tcplab_core::observe::capture::{Capture, CaptureConfig, CaptureStats};
use tcplab_core::{Segment, Timeline};

use crate::errors::{self, TcplabError, to_py};
use crate::timeline::PyTimeline;

/// A refused capture as PermissionError, naming the ways that work; other errors as usual.
pub fn capture_error(e: tcplab_core::Error) -> PyErr {
    match e {
        tcplab_core::Error::Permission(msg) => PyPermissionError::new_err(format!(
            "{msg}. From Python: tcplab.sandbox(fn) runs fn in a user + network namespace of \
             its own, where capture is allowed"
        )),
        other => to_py(other),
    }
}

/// The capture configuration for Python: the lesson-sized ring, no frames kept.
pub fn config(ports: &[u16], origin: Option<std::time::Instant>) -> CaptureConfig {
    CaptureConfig {
        keep_frames: false,
        ..CaptureConfig::lesson(ports, origin)
    }
}

/// One segment as a dict: t_us, src, dst, flags (a list of names), seq, ack (relative),
/// raw_seq, raw_ack, len, win, and the options that are present (mss, wscale, sack_permitted,
/// sack, timestamps).
pub fn segment_dict<'py>(py: Python<'py>, s: &Segment) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("t_us", s.t_us)?;
    d.set_item("src", s.src.to_string())?;
    d.set_item("dst", s.dst.to_string())?;
    d.set_item("flags", s.flags.names())?;
    d.set_item("seq", s.seq)?;
    d.set_item("ack", s.ack)?;
    d.set_item("raw_seq", s.raw_seq)?;
    d.set_item("raw_ack", s.raw_ack)?;
    d.set_item("len", s.len)?;
    d.set_item("win", s.win)?;
    d.set_item("mss", s.options.mss)?;
    d.set_item("wscale", s.options.wscale)?;
    Ok(d)
}

/// The segments as a list of dicts.
pub fn segment_list<'py>(py: Python<'py>, segs: &[Segment]) -> PyResult<Bound<'py, PyList>> {
    let out = PyList::empty(py);
    for s in segs {
        out.append(segment_dict(py, s)?)?;
    }
    Ok(out)
}

/// `tcplab._frames.segments_frame(list of dicts)`: the DataFrame.
pub fn segments_frame<'py>(py: Python<'py>, segs: &[Segment]) -> PyResult<Bound<'py, PyAny>> {
    let rows = segment_list(py, segs)?;
    py.import("tcplab._frames")?
        .getattr("segments_frame")?
        .call1((rows,))
}

/// The counters of a finished capture, as a dict.
pub fn stats_dict<'py>(py: Python<'py>, s: &CaptureStats) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("segments", s.segments)?;
    d.set_item("kernel_packets", s.kernel_packets)?;
    d.set_item("kernel_drops", s.kernel_drops)?;
    d.set_item("duplicates", s.duplicates)?;
    d.set_item("unparsed", s.unparsed)?;
    d.set_item("over_limit", s.over_limit)?;
    Ok(d)
}

enum Phase {
    Ready,
    Running(Capture),
    Done(Vec<Segment>, CaptureStats),
}

/// A running capture of the TCP segments on some ports of `lo` (see `tcplab.capture`).
///
/// Inside the `with` block it captures in the background; `segments` is a pandas DataFrame
/// of the segments so far (and all of them after), `timeline` a Timeline holding them once
/// stopped, `stats` the kernel's counters (drops included), `note` how it captures.
#[pyclass(frozen, name = "Capture", module = "tcplab._native")]
pub struct PyCapture {
    ports: Vec<u16>,
    inner: Mutex<(Phase, Option<String>)>,
}

impl PyCapture {
    fn lock(&self) -> MutexGuard<'_, (Phase, Option<String>)> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[pymethods]
impl PyCapture {
    /// Start capturing (also what `with` does). PermissionError without CAP_NET_RAW.
    fn start<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, Self>> {
        let this = slf.get();
        if !matches!(this.lock().0, Phase::Ready) {
            return Err(TcplabError::new_err(
                "this capture was already started; call tcplab.capture() again for a new one",
            ));
        }
        let cfg = config(&this.ports, None);
        let cap = slf
            .py()
            .detach(move || Capture::start(cfg))
            .map_err(capture_error)?;
        let mut inner = this.lock();
        inner.1 = Some(cap.note().to_string());
        inner.0 = Phase::Running(cap);
        Ok(slf.clone())
    }

    /// Stop capturing and return a Timeline holding the segments (no state changes: use
    /// `tcplab.trace(..., capture=True)` for both on one clock).
    fn stop(&self, py: Python<'_>) -> PyResult<PyTimeline> {
        let phase = std::mem::replace(&mut self.lock().0, Phase::Ready);
        let (segs, stats) = match phase {
            Phase::Running(cap) => {
                let report = py.detach(move || cap.finish()).map_err(to_py)?;
                (report.segments, report.stats)
            }
            Phase::Done(s, st) => (s, st),
            Phase::Ready => {
                return Err(TcplabError::new_err(
                    "this capture was never started: use `with tcplab.capture(...) as cap:`",
                ));
            }
        };
        let mut inner = self.lock();
        inner.0 = Phase::Done(segs.clone(), stats);
        Ok(PyTimeline::observed(
            Timeline::new().with_segments(segs),
            Some("capture".into()),
            inner.1.clone(),
        ))
    }

    fn __enter__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, Self>> {
        PyCapture::start(slf)
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.stop(py)?;
        Ok(false)
    }

    /// The segments so far (while running) or all of them (after), as a pandas DataFrame.
    #[getter]
    fn segments<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let segs = match &self.lock().0 {
            Phase::Running(c) => c.segments(),
            Phase::Done(s, _) => s.clone(),
            Phase::Ready => Vec::new(),
        };
        segments_frame(py, &segs)
    }

    /// A Timeline of the segments, once stopped. Raises TcplabError before that.
    #[getter]
    fn timeline(&self) -> PyResult<PyTimeline> {
        let inner = self.lock();
        match &inner.0 {
            Phase::Done(s, _) => Ok(PyTimeline::observed(
                Timeline::new().with_segments(s.clone()),
                Some("capture".into()),
                inner.1.clone(),
            )),
            _ => Err(TcplabError::new_err(
                "the capture has not stopped: read .segments now, or .timeline after the with block",
            )),
        }
    }

    /// Once stopped, the kernel's counters as a dict (segments, kernel_packets, kernel_drops,
    /// duplicates, unparsed, over_limit: segments left out past the bound); None before.
    #[getter]
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        match &self.lock().0 {
            Phase::Done(_, st) => Ok(Some(stats_dict(py, st)?)),
            _ => Ok(None),
        }
    }

    /// How it captures (interface, ports, ring), once started.
    #[getter]
    fn note(&self) -> Option<String> {
        self.lock().1.clone()
    }

    /// Whether it captures now.
    #[getter]
    fn running(&self) -> bool {
        matches!(self.lock().0, Phase::Running(_))
    }

    /// The captured ports (empty: every TCP segment on `lo`).
    #[getter]
    fn ports(&self) -> Vec<u16> {
        self.ports.clone()
    }

    fn __repr__(&self) -> String {
        let phase = match &self.lock().0 {
            Phase::Ready => "not started".to_string(),
            Phase::Running(c) => format!("running, {} segments", c.segments().len()),
            Phase::Done(s, _) => format!("stopped, {} segments", s.len()),
        };
        format!("Capture(ports={:?}, {phase})", self.ports)
    }
}

/// Capture every TCP segment on some ports of `lo` while a `with` block runs.
///
/// port: an int, a list of ints, or None for every TCP segment on `lo`. Needs CAP_NET_RAW:
/// root on the host, or anyone inside `tcplab.sandbox(fn)` (a user + network namespace of
/// one's own); PermissionError otherwise. Loopback shows each frame twice (as it leaves and
/// as it arrives): one copy is kept. `tcplab.trace(port, capture=True)` captures beside the
/// state changes, on the same clock.
///
/// Example (as root):
///
/// >>> import socket, tcplab
/// >>> srv = socket.create_server(("127.0.0.1", 0))
/// >>> with tcplab.capture(port=srv.getsockname()[1]) as cap:  # doctest: +SKIP
/// ...     c = socket.create_connection(srv.getsockname()); a, _ = srv.accept()
/// ...     c.close(); a.close()
/// >>> list(cap.segments.flags)[:3]  # doctest: +SKIP
/// ['SYN', 'SYN, ACK', 'ACK']
/// >>> srv.close()
#[pyfunction]
#[pyo3(signature = (port=None))]
pub fn capture(port: Option<&Bound<'_, PyAny>>) -> PyResult<PyCapture> {
    Ok(PyCapture {
        ports: errors::ports(port, "port")?,
        inner: Mutex::new((Phase::Ready, None)),
    })
}

/// For `tcplab.sandbox`: in a child that has no other thread yet, move into a user + network
/// namespace of its own with `lo` up, and make the child die with its parent. Returns what was
/// made ("user + network namespace"). Raises PermissionError saying why where it is refused.
#[pyfunction]
pub fn _enter_namespace() -> PyResult<String> {
    // SAFETY: prctl with integer arguments on this process only. A process that changed its
    // uid (a notebook kernel that dropped root) is not dumpable, which leaves /proc/self
    // owned by root and its uid_map unwritable: it is made dumpable again, as exec would.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        libc::prctl(libc::PR_SET_DUMPABLE, 1);
    }
    use tcplab_core::netns;
    match netns::try_enter(netns::Prefer::UserNamespace) {
        Ok(Ok(how)) => Ok(how.to_string()),
        Ok(Err(refused)) => Err(PyPermissionError::new_err(refused.to_string())),
        Err(e) => Err(TcplabError::new_err(format!("{e:#}"))),
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyCapture>()?;
    m.add_function(wrap_pyfunction!(capture, m)?)?;
    m.add_function(wrap_pyfunction!(_enter_namespace, m)?)?;
    Ok(())
}
