//! `tcplab.trace()`: core's `Tracer` as a context manager. The tracer runs on its own thread
//! (tracepoint or sock_diag polling) and never needs the GIL, so whatever Python does inside
//! the `with` block, an instructor's own `socket` code included, is observed.
//!
//! Left out on purpose: a live display; notebooks read `events` while the trace runs, or
//! the Timeline after it.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt};
use tcplab_core::observe::capture::{Capture, CaptureStats};
use tcplab_core::observe::trace::{Backend, Missed, TraceConfig, Tracer};
use tcplab_core::{Event, Timeline};

use crate::errors::{self, TcplabError, to_py, type_name};
use crate::timeline::{PyEvent, PyTimeline};

enum Phase {
    Ready,
    Running(Tracer),
    Done(Timeline),
}

struct Inner {
    phase: Phase,
    /// With `capture=True`: the capture beside the tracer, then its counters.
    capture: Option<Capture>,
    capture_stats: Option<CaptureStats>,
    backend: Option<String>,
    note: Option<String>,
    missed: Option<Missed>,
}

/// A transition tracer, used as a context manager (see `tcplab.trace`).
///
/// Inside the `with` block it observes in the background; on exit `timeline` holds every
/// state change seen on the watched ports. `backend` is "tracepoint" or "poll", `note` says
/// why and how; `events` gives the events so far while it runs.
///
/// Example:
///
/// >>> import socket, tcplab
/// >>> srv = socket.create_server(("127.0.0.1", 0))
/// >>> with tcplab.trace(port=srv.getsockname()[1], backend="poll") as tr:
/// ...     c = socket.create_connection(srv.getsockname())
/// ...     a, _ = srv.accept()
/// ...     c.close(); a.close()
/// ...     tcplab.wait_for(lambda: "TIME_WAIT" in str(tr.events))
/// True
/// >>> tr.backend
/// 'poll'
/// >>> srv.close()
#[pyclass(frozen, module = "tcplab._native")]
pub struct Trace {
    cfg: TraceConfig,
    capture: bool,
    inner: Mutex<Inner>,
}

impl Trace {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[pymethods]
impl Trace {
    /// Start observing (also what `with` does). Raises PermissionError when
    /// backend="tracepoint" was asked for without root.
    ///
    /// Example:
    ///
    /// >>> import tcplab
    /// >>> tr = tcplab.trace(port=9, backend="poll").start()
    /// >>> len(tr.stop())
    /// 0
    fn start<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, Self>> {
        let this = slf.get();
        let py = slf.py();
        {
            let inner = this.lock();
            if !matches!(inner.phase, Phase::Ready) {
                return Err(TcplabError::new_err(
                    "this trace was already started; call tcplab.trace() again for a new one",
                ));
            }
        }
        let cfg = this.cfg.clone();
        let wanted = this
            .capture
            .then(|| crate::capture::config(&this.cfg.ports, None));
        // The capture opens on a thread of its own while the tracer starts: the kernel
        // waits for an RCU grace period when it sets up the ring, and the two waits overlap.
        let (tracer, opened) = py.detach(move || {
            std::thread::scope(|s| {
                let opening = wanted.map(|c| s.spawn(move || Capture::open(c)));
                let tracer = Tracer::start(cfg);
                let opened = opening.map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(tcplab_core::Error::InvalidInput(
                            "the thread opening the capture panicked".into(),
                        ))
                    })
                });
                (tracer, opened)
            })
        });
        let tracer = tracer.map_err(to_py)?;
        let capture = match opened {
            None => None,
            Some(opened) => {
                let origin = tracer.started();
                match py.detach(move || opened.and_then(|o| o.run(Some(origin)))) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        // Nothing is left running when the capture is refused.
                        let _ = py.detach(move || tracer.finish());
                        return Err(crate::capture::capture_error(e));
                    }
                }
            }
        };
        let mut inner = this.lock();
        inner.capture = capture;
        inner.backend = Some(tracer.backend().to_string());
        inner.note = Some(tracer.note().to_string());
        inner.phase = Phase::Running(tracer);
        Ok(slf.clone())
    }

    /// Stop observing and return the Timeline (also what leaving `with` does).
    ///
    /// Example:
    ///
    /// >>> import tcplab
    /// >>> tr = tcplab.trace(port=9, backend="poll").start()
    /// >>> tr.stop().backend
    /// 'poll'
    fn stop(&self, py: Python<'_>) -> PyResult<PyTimeline> {
        let phase = std::mem::replace(&mut self.lock().phase, Phase::Ready);
        let capture = self.lock().capture.take();
        let timeline = match phase {
            Phase::Running(tracer) => {
                // The capture stops first: every segment it holds then has its state change
                // in the tracer, which stops after.
                let captured = capture.map(|c| py.detach(move || c.finish()));
                let report = py.detach(move || tracer.finish());
                let captured = match captured.transpose() {
                    Ok(c) => c,
                    Err(e) => {
                        self.lock().phase = Phase::Done(Timeline::new());
                        return Err(to_py(e));
                    }
                };
                let report = report.map(|mut r| {
                    if let Some(c) = captured {
                        self.lock().capture_stats = Some(c.stats);
                        r.timeline = std::mem::take(&mut r.timeline).with_segments(c.segments);
                        r.timeline.date_inferred_by_segments();
                        r.warnings.extend(c.warnings);
                    }
                    r
                });
                match report {
                    Ok(r) => {
                        self.lock().missed = r.missed.clone();
                        if !r.warnings.is_empty() {
                            let mut inner = self.lock();
                            let extra = r.warnings.join("; ");
                            inner.note = Some(match inner.note.take() {
                                Some(n) => format!("{n}; {extra}"),
                                None => extra,
                            });
                        }
                        r.timeline
                    }
                    Err(e) => {
                        self.lock().phase = Phase::Done(Timeline::new());
                        return Err(to_py(e));
                    }
                }
            }
            Phase::Done(t) => t,
            Phase::Ready => {
                return Err(TcplabError::new_err(
                    "this trace was never started: use `with tcplab.trace(...) as tr:` or .start()",
                ));
            }
        };
        let mut inner = self.lock();
        inner.phase = Phase::Done(timeline.clone());
        Ok(PyTimeline::observed(
            timeline,
            inner.backend.clone(),
            inner.note.clone(),
        ))
    }

    fn __enter__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, Self>> {
        Trace::start(slf)
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.stop(py)?;
        Ok(false)
    }

    /// The Timeline, once the trace has stopped. Raises TcplabError before that.
    #[getter]
    fn timeline(&self) -> PyResult<PyTimeline> {
        let inner = self.lock();
        match &inner.phase {
            Phase::Done(t) => Ok(PyTimeline::observed(
                t.clone(),
                inner.backend.clone(),
                inner.note.clone(),
            )),
            Phase::Running(_) => Err(TcplabError::new_err(
                "the trace is still running: read .events now, or .timeline after the with block",
            )),
            Phase::Ready => Err(TcplabError::new_err("this trace was never started")),
        }
    }

    /// The events so far (while running: a live view; after: every event).
    #[getter]
    fn events(&self, py: Python<'_>) -> PyResult<Vec<Py<PyEvent>>> {
        let evs: Vec<Event> = match &self.lock().phase {
            Phase::Running(t) => Timeline::from_events(t.events()).events,
            Phase::Done(t) => t.events.clone(),
            Phase::Ready => Vec::new(),
        };
        evs.into_iter()
            .map(|ev| Py::new(py, PyEvent { ev }))
            .collect()
    }

    /// Whether the tracer is observing now.
    #[getter]
    fn running(&self) -> bool {
        matches!(self.lock().phase, Phase::Running(_))
    }

    /// "tracepoint" or "poll" once started (never "auto"); None before.
    #[getter]
    fn backend(&self) -> Option<String> {
        self.lock().backend.clone()
    }

    /// Which backend and why ("tracing needs root: polling sock_diag every 1 ms").
    #[getter]
    fn note(&self) -> Option<String> {
        self.lock().note.clone()
    }

    /// With the poll backend, once stopped: what the trace may have missed, as a dict
    /// (`count`: connections that may be missing, 0 when none; `why`: one sentence;
    /// `connects_counted`, `accepts_counted`: what the kernel counted in this network
    /// namespace; `connects_shown`, `accepts_shown`: what the timeline shows;
    /// `peers_inferred`: loopback ends added because only their peer was seen; `ports`).
    /// None for the tracepoint, which sees every change, and before the trace stops.
    #[getter]
    fn missed<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some(m) = self.lock().missed.clone() else {
            return Ok(None);
        };
        let d = PyDict::new(py);
        d.set_item("count", m.count())?;
        d.set_item("why", m.describe().unwrap_or_default())?;
        d.set_item("connects_counted", m.connects_counted)?;
        d.set_item("accepts_counted", m.accepts_counted)?;
        d.set_item("connects_shown", m.connects_shown)?;
        d.set_item("accepts_shown", m.accepts_shown)?;
        d.set_item("peers_inferred", m.peers_inferred)?;
        d.set_item("ports", m.ports.clone())?;
        Ok(Some(d))
    }

    /// The watched ports (empty: every TCP socket).
    #[getter]
    fn ports(&self) -> Vec<u16> {
        self.cfg.ports.clone()
    }

    /// With `capture=True`, once stopped: the capture's counters (segments, kernel_packets,
    /// kernel_drops, duplicates, unparsed, over_limit); None otherwise.
    #[getter]
    fn capture_stats<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        match &self.lock().capture_stats {
            Some(s) => Ok(Some(crate::capture::stats_dict(py, s)?)),
            None => Ok(None),
        }
    }

    fn __repr__(&self) -> String {
        let inner = self.lock();
        let phase = match &inner.phase {
            Phase::Ready => "not started".to_string(),
            Phase::Running(_) => "running".to_string(),
            Phase::Done(t) => format!("stopped, {} events", t.len()),
        };
        format!(
            "Trace(ports={:?}, backend={}, {phase})",
            self.cfg.ports,
            inner.backend.as_deref().unwrap_or("?")
        )
    }
}

/// Observe every TCP state change on some ports while a `with` block runs.
///
/// port: an int, a list of ints, or None for every TCP socket (a socket matches when its
/// local or remote port is one of them). backend: "auto" (the tracepoint as root, else
/// polling), "tracepoint" (root only: PermissionError otherwise, with backend="poll" as the
/// way out) or "poll" (sock_diag every `interval_ms`; states too brief to see are filled in
/// from the model and marked "inferred"). The tracer runs in the background without the GIL.
///
/// Without root, polling can miss a socket that lived less than one poll. On loopback both
/// ends of a connection are yours, so an end never seen whose peer was is added with the
/// path its peer implies, every step "inferred". After the trace, `missed` compares what the
/// timeline shows with the connections the kernel counted, and says how many may be missing.
///
/// capture: also capture the segments on the same ports of `lo`, on the tracer's clock, into
/// the Timeline (`timeline.segments`). It needs CAP_NET_RAW (root, or inside
/// `tcplab.sandbox`): PermissionError otherwise.
///
/// Example:
///
/// >>> import socket, tcplab
/// >>> srv = socket.create_server(("127.0.0.1", 0))
/// >>> with tcplab.trace(port=srv.getsockname()[1]) as tr:
/// ...     c = socket.create_connection(srv.getsockname()); a, _ = srv.accept()
/// ...     c.close(); a.close()
/// ...     tcplab.wait_for(lambda: "TIME_WAIT" in str(tr.events))
/// True
/// >>> "TIME_WAIT" in tr.timeline.ladder()
/// True
/// >>> srv.close()
#[pyfunction]
#[pyo3(
    signature = (port=None, backend=None, interval_ms=None, capture=false),
    text_signature = "(port=None, backend='auto', interval_ms=1.0, capture=False)"
)]
pub fn trace(
    port: Option<&Bound<'_, PyAny>>,
    backend: Option<&Bound<'_, PyAny>>,
    interval_ms: Option<&Bound<'_, PyAny>>,
    capture: bool,
) -> PyResult<Trace> {
    let ports = errors::ports(port, "port")?;
    let backend = match backend {
        None => Backend::Auto,
        Some(b) => errors::name::<Backend>(b, "backend")?,
    };
    let ms: f64 = match interval_ms {
        None => 1.0,
        Some(i)
            if !i.is_instance_of::<PyBool>()
                && (i.is_instance_of::<PyFloat>() || i.is_instance_of::<PyInt>()) =>
        {
            i.extract().unwrap_or(f64::NAN)
        }
        Some(i) => {
            return Err(PyTypeError::new_err(format!(
                "interval_ms must be a number, not {}",
                type_name(i)
            )));
        }
    };
    if !(0.1..=10_000.0).contains(&ms) {
        return Err(PyValueError::new_err(format!(
            "interval_ms {ms} is outside 0.1..10000"
        )));
    }
    let mut cfg = TraceConfig::ports(&ports).with_backend(backend);
    cfg.poll_interval = Duration::from_secs_f64(ms / 1000.0);
    Ok(Trace {
        cfg,
        capture,
        inner: Mutex::new(Inner {
            phase: Phase::Ready,
            capture: None,
            capture_stats: None,
            backend: None,
            note: None,
            missed: None,
        }),
    })
}

/// Whether this process runs as root (the tracepoint backend needs it).
///
/// Example:
///
/// >>> import os, tcplab
/// >>> tcplab.is_root() == (os.geteuid() == 0)
/// True
#[pyfunction]
pub fn is_root() -> bool {
    tcplab_core::observe::trace::is_root()
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Trace>()?;
    m.add_function(wrap_pyfunction!(trace, m)?)?;
    m.add_function(wrap_pyfunction!(is_root, m)?)?;
    Ok(())
}
