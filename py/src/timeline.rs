//! `Timeline` and `Event`: core's timeline, as the tracer, a lesson run or the model filled it.
//!
//! A Python Timeline also remembers where it came from (`backend`, `note`) and, for a
//! modelled one, the model's ladder (text and SVG), so one type serves all three sources. An
//! observed one draws the kernel's ladder (`ladder_text`, `ladder_svg`, `_repr_svg_`) with
//! the renderer the model's shares (core's `ladder`).
//! Tables and plots are built in `tcplab/_frames.py` (pandas and matplotlib imported lazily).

use std::fmt::Write as _;

use pyo3::exceptions::{PyIndexError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyInt, PyList};
use tcplab_core::ladder::wire as ladder;
use tcplab_core::timeline::CountPoint;
use tcplab_core::{Event, Timeline};

use crate::errors::{TcplabError, type_name};

/// One state change of one socket.
///
/// Attributes: t_us (microseconds since the observation started), t_ms, local_addr,
/// local_port, remote_addr, remote_port, from_state, to_state (netstat spelling), source
/// ("tracepoint", "diag", "poll", "inferred" or "model"; only "inferred" is a guess), pid,
/// side ("client"/"server" for modelled events) and segment (the modelled segment, "FIN").
///
/// Example:
///
/// >>> import tcplab
/// >>> e = tcplab.Timeline.from_json(
/// ...     '{"t_us": 5, "local": "127.0.0.1:4000", "remote": "127.0.0.1:80",'
/// ...     ' "from": "ESTABLISHED", "to": "FIN_WAIT1", "source": "poll"}').events[0]
/// >>> e.from_state, e.to_state, e.local_port
/// ('ESTABLISHED', 'FIN_WAIT1', 4000)
#[pyclass(frozen, name = "Event", module = "tcplab._native")]
pub struct PyEvent {
    pub ev: Event,
}

#[pymethods]
impl PyEvent {
    /// Microseconds since the observation (or simulation) started.
    #[getter]
    fn t_us(&self) -> u64 {
        self.ev.t_us
    }
    /// Milliseconds since the observation started, as a float.
    #[getter]
    fn t_ms(&self) -> f64 {
        self.ev.t_us as f64 / 1000.0
    }
    #[getter]
    fn local_addr(&self) -> String {
        self.ev.local.ip().to_string()
    }
    #[getter]
    fn local_port(&self) -> u16 {
        self.ev.local.port()
    }
    #[getter]
    fn remote_addr(&self) -> String {
        self.ev.remote.ip().to_string()
    }
    #[getter]
    fn remote_port(&self) -> u16 {
        self.ev.remote.port()
    }
    /// The state before the change.
    #[getter]
    #[allow(clippy::wrong_self_convention)] // a Python attribute name, not a conversion
    fn from_state(&self) -> &'static str {
        self.ev.from.netstat()
    }
    /// The state after the change.
    #[getter]
    fn to_state(&self) -> &'static str {
        self.ev.to.netstat()
    }
    /// Where the knowledge came from; only "inferred" is a guess.
    #[getter]
    fn source(&self) -> String {
        self.ev.source.to_string()
    }
    #[getter]
    fn pid(&self) -> Option<u32> {
        self.ev.pid
    }
    /// "client" or "server" for modelled events, else None.
    #[getter]
    fn side(&self) -> Option<String> {
        self.ev.side.map(|s| s.to_string())
    }
    /// The modelled segment that came with the change ("FIN", "ACK"), else None.
    #[getter]
    fn segment(&self) -> Option<String> {
        self.ev.segment.clone()
    }
    /// "127.0.0.1:40000 -> 127.0.0.1:5000": the socket this event belongs to.
    #[getter]
    fn endpoint(&self) -> String {
        self.ev.endpoint().to_string()
    }
    /// The event as a dict of the attributes above.
    ///
    /// Example:
    ///
    /// >>> import tcplab
    /// >>> t = tcplab.model("client-close")
    /// >>> t.events[0].to_dict()["to_state"]
    /// 'SYN_SENT'
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("t_us", self.t_us())?;
        d.set_item("local_addr", self.local_addr())?;
        d.set_item("local_port", self.local_port())?;
        d.set_item("remote_addr", self.remote_addr())?;
        d.set_item("remote_port", self.remote_port())?;
        d.set_item("from_state", self.from_state())?;
        d.set_item("to_state", self.to_state())?;
        d.set_item("source", self.source())?;
        d.set_item("pid", self.pid())?;
        d.set_item("side", self.side())?;
        d.set_item("segment", self.segment())?;
        Ok(d)
    }
    fn __repr__(&self) -> String {
        format!(
            "Event({:.3} ms {} -> {}: {} -> {} ({}))",
            self.t_ms(),
            self.ev.local,
            self.ev.remote,
            self.ev.from,
            self.ev.to,
            self.ev.source
        )
    }
}

/// An ordered list of state changes, observed (tracer, lesson run) or modelled.
///
/// `events` (list of Event), len/iteration/indexing, `sequences()` per socket,
/// `state_counts()` (a time series), `to_pandas()`, `plot()`, `ladder()`, `to_json()` and
/// `Timeline.from_json()`. `backend` and `note` say how it was observed (None for the model).
///
/// Example:
///
/// >>> import tcplab
/// >>> t = tcplab.model("client-close")
/// >>> t.sequences()["10.0.0.1:40000 -> 10.0.0.2:80"][-2:]
/// ['TIME_WAIT', 'CLOSE']
#[pyclass(frozen, name = "Timeline", module = "tcplab._native")]
pub struct PyTimeline {
    pub inner: Timeline,
    pub backend: Option<String>,
    pub note: Option<String>,
    /// The model's ladder, for a modelled timeline.
    pub ladder_text: Option<String>,
    pub svg: Option<String>,
}

impl PyTimeline {
    pub fn observed(inner: Timeline, backend: Option<String>, note: Option<String>) -> Self {
        PyTimeline {
            inner,
            backend,
            note,
            ladder_text: None,
            svg: None,
        }
    }

    fn listing(&self) -> String {
        let mut out = String::new();
        for ep in self.inner.endpoints() {
            let _ = writeln!(out, "{ep}");
            for e in self.inner.events_of(ep) {
                let _ = writeln!(
                    out,
                    "  {:>10.3} ms  {:>12} -> {:<12} ({})",
                    e.t_us as f64 / 1000.0,
                    e.from,
                    e.to,
                    e.source
                );
            }
        }
        if out.is_empty() {
            out.push_str("(no state changes recorded)\n");
        }
        out
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[pymethods]
impl PyTimeline {
    /// Build a Timeline from JSON: JSON lines of events (as `tcplab trace --json` prints),
    /// a list of events, or an object with an "events" list (a lesson report's "timeline").
    ///
    /// Raises ValueError when the text is not such JSON.
    ///
    /// Example:
    ///
    /// >>> import tcplab
    /// >>> len(tcplab.Timeline.from_json('{"events": []}'))
    /// 0
    #[staticmethod]
    #[pyo3(signature = (text, backend=None, note=None))]
    fn from_json(
        text: &Bound<'_, PyAny>,
        backend: Option<String>,
        note: Option<String>,
    ) -> PyResult<PyTimeline> {
        let text: String = text.extract().map_err(|_| {
            PyTypeError::new_err(format!("from_json needs a str, not {}", type_name(text)))
        })?;
        let trimmed = text.trim_start();
        let parsed = if trimmed.starts_with('[') {
            serde_json::from_str::<Vec<Event>>(&text).map(Timeline::from_events)
        } else if trimmed.starts_with('{') && trimmed.contains("\"events\"") {
            serde_json::from_str::<Timeline>(&text)
        } else {
            Timeline::from_json_lines(&text)
        };
        let inner =
            parsed.map_err(|e| PyValueError::new_err(format!("not a timeline in JSON: {e}")))?;
        Ok(PyTimeline::observed(inner, backend, note))
    }

    /// The events, in time order.
    #[getter]
    fn events(&self, py: Python<'_>) -> PyResult<Vec<Py<PyEvent>>> {
        self.inner
            .events
            .iter()
            .map(|e| Py::new(py, PyEvent { ev: e.clone() }))
            .collect()
    }

    /// The captured segments (`tcplab.trace(..., capture=True)`, `tcplab.capture()`,
    /// `tcplab.sandbox()`, a lesson run about the wire or with `pcap`), as a pandas DataFrame,
    /// one row per segment in time order: t_ms, src, dst ("127.0.0.1:5000"), flags ("FIN,
    /// ACK"), seq and ack (relative, as Wireshark shows them), len, win, raw_seq, raw_ack, mss
    /// and wscale (on SYNs). Empty (with these columns) when nothing was captured.
    ///
    /// Example:
    ///
    /// >>> import tcplab
    /// >>> list(tcplab.model("client-close").segments.columns[:4])
    /// ['t_ms', 'src', 'dst', 'flags']
    #[getter]
    fn segments<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        crate::capture::segments_frame(py, &self.inner.segments)
    }

    /// The captured segments as a list of dicts (no pandas needed): t_us, src, dst, flags (a
    /// list of names), seq, ack, raw_seq, raw_ack, len, win, mss, wscale.
    ///
    /// Example:
    ///
    /// >>> import tcplab
    /// >>> tcplab.model("client-close").segments_to_dicts()
    /// []
    fn segments_to_dicts<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        crate::capture::segment_list(py, &self.inner.segments)
    }

    /// The whole Timeline as one JSON object: {"events": [...], "segments": [...]} (what
    /// `Timeline.from_json` reads back, segments included).
    ///
    /// Example:
    ///
    /// >>> import tcplab
    /// >>> t = tcplab.model("client-close")
    /// >>> len(tcplab.Timeline.from_json(t.to_json_object())) == len(t)
    /// True
    fn to_json_object(&self) -> PyResult<String> {
        serde_json::to_string(&self.inner)
            .map_err(|e| TcplabError::new_err(format!("timeline to JSON: {e}")))
    }

    /// How the events were observed ("tracepoint", "poll", ...), None for the model.
    #[getter]
    fn backend(&self) -> Option<String> {
        self.backend.clone()
    }

    /// What the observer wants you to know (why it polls, what it inferred), or None.
    #[getter]
    fn note(&self) -> Option<String> {
        self.note.clone()
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn __getitem__(&self, key: &Bound<'_, PyAny>) -> PyResult<PyEvent> {
        if !key.is_instance_of::<PyInt>() {
            return Err(PyTypeError::new_err(format!(
                "Timeline indices must be int, not {}",
                type_name(key)
            )));
        }
        let len = self.inner.len() as i128;
        let i: i128 = key.extract().unwrap_or(i128::MAX);
        let i = if i < 0 { i + len } else { i };
        if !(0..len).contains(&i) {
            return Err(PyIndexError::new_err(format!(
                "Timeline index out of range (it has {len} events)"
            )));
        }
        Ok(PyEvent {
            ev: self.inner.events[i as usize].clone(),
        })
    }

    fn __iter__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let list = PyList::new(py, self.events(py)?)?;
        Ok(list.as_any().try_iter()?.into_any().unbind())
    }

    /// Every socket seen, in order of first appearance: "local -> remote".
    ///
    /// Example:
    ///
    /// >>> import tcplab
    /// >>> tcplab.model("client-close").endpoints()
    /// ['10.0.0.1:40000 -> 10.0.0.2:80', '10.0.0.2:80 -> 10.0.0.1:40000']
    fn endpoints(&self) -> Vec<String> {
        self.inner
            .endpoints()
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    /// The states each socket went through: {"local -> remote": ["CLOSE", "SYN_SENT", ...]}.
    ///
    /// Example:
    ///
    /// >>> import tcplab
    /// >>> seqs = tcplab.model("client-close").sequences()
    /// >>> seqs["10.0.0.2:80 -> 10.0.0.1:40000"][-3:]
    /// ['CLOSE_WAIT', 'LAST_ACK', 'CLOSE']
    fn sequences<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for ep in self.inner.endpoints() {
            let seq: Vec<&str> = self
                .inner
                .sequence(ep)
                .iter()
                .map(|s| s.netstat())
                .collect();
            d.set_item(ep.to_string(), seq)?;
        }
        Ok(d)
    }

    /// The state each socket was in at the end: {"local -> remote": "TIME_WAIT"}.
    ///
    /// Example:
    ///
    /// >>> import tcplab
    /// >>> sorted(tcplab.model("close-wait-leak").final_states().values())
    /// ['CLOSE', 'CLOSE_WAIT']
    fn final_states<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (ep, s) in self.inner.final_states() {
            d.set_item(ep.to_string(), s.netstat())?;
        }
        Ok(d)
    }

    /// How many sockets sat in each state after every event: a time series of
    /// (t_us, {state: count}) pairs, for plots. A socket counts from its first event and
    /// stops counting when it reaches CLOSE.
    ///
    /// Example:
    ///
    /// >>> import tcplab
    /// >>> tcplab.model("client-close").state_counts()[-2][1]
    /// {'TIME_WAIT': 1}
    fn state_counts<'py>(&self, py: Python<'py>) -> PyResult<Vec<(u64, Bound<'py, PyDict>)>> {
        self.inner
            .state_counts()
            .into_iter()
            .map(|CountPoint { t_us, counts }| {
                let d = PyDict::new(py);
                for (s, n) in counts {
                    d.set_item(s.netstat(), n)?;
                }
                Ok((t_us, d))
            })
            .collect()
    }

    /// The events as a list of dicts (see Event.to_dict).
    ///
    /// Example:
    ///
    /// >>> import tcplab
    /// >>> tcplab.model("client-close").to_dicts()[0]["from_state"]
    /// 'CLOSE'
    fn to_dicts<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let items = self
            .inner
            .events
            .iter()
            .map(|e| PyEvent { ev: e.clone() }.to_dict(py))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, items)
    }

    /// A pandas DataFrame, one row per event (pandas is imported only now).
    ///
    /// Example:
    ///
    /// >>> import tcplab
    /// >>> df = tcplab.model("client-close").to_pandas()
    /// >>> list(df.columns[:3])
    /// ['t_ms', 'endpoint', 'from_state']
    fn to_pandas<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        py.import("tcplab._frames")?
            .getattr("timeline_frame")?
            .call1((slf,))
    }

    /// Plot each endpoint as a swimlane, one row per endpoint coloured by state, inferred
    /// states hatched (matplotlib is imported only now; `tcplab.plots.counts` draws sockets
    /// per state instead). Returns the matplotlib Axes; pass `ax` to draw into an existing one.
    ///
    /// Example:
    ///
    /// >>> import matplotlib
    /// >>> matplotlib.use("Agg")
    /// >>> import tcplab
    /// >>> ax = tcplab.model("client-close").plot()
    /// >>> ax.get_xlabel()
    /// 'time (ms)'
    #[pyo3(signature = (ax=None))]
    fn plot<'py>(
        slf: &Bound<'py, Self>,
        ax: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        py.import("tcplab._frames")?
            .getattr("plot_timeline")?
            .call1((slf, ax))
    }

    /// The timeline as text: the model's ladder diagram for a modelled timeline, otherwise a
    /// listing per socket (each socket's state changes with their times and sources).
    ///
    /// Example:
    ///
    /// >>> import tcplab
    /// >>> t = tcplab.Timeline.from_json(
    /// ...     '{"t_us": 1500, "local": "127.0.0.1:4000", "remote": "127.0.0.1:80",'
    /// ...     ' "from": "ESTABLISHED", "to": "FIN_WAIT1", "source": "poll"}')
    /// >>> print(t.ladder())
    /// 127.0.0.1:4000 -> 127.0.0.1:80
    ///        1.500 ms   ESTABLISHED -> FIN_WAIT1    (poll)
    /// <BLANKLINE>
    fn ladder(&self) -> String {
        match &self.ladder_text {
            Some(t) => t.clone(),
            None => self.listing(),
        }
    }

    /// The ladder as text: for a run, every captured segment as an arrow (flags, relative
    /// seq/ack, length) with each side's state changes beside it, alike connections folded
    /// ("connection 1 of 10, and 9 more like it"); for a modelled timeline, the model's ladder.
    ///
    /// Example:
    ///
    /// >>> import tcplab
    /// >>> t = tcplab.Timeline.from_json(
    /// ...     '{"t_us": 1500, "local": "127.0.0.1:4000", "remote": "127.0.0.1:80",'
    /// ...     ' "from": "ESTABLISHED", "to": "FIN_WAIT1", "source": "poll"}')
    /// >>> print(t.ladder_text().splitlines()[2].split())
    /// ['1.500', 'FIN_WAIT1']
    fn ladder_text(&self) -> String {
        match &self.ladder_text {
            Some(t) => t.clone(),
            None => ladder::text(&self.inner),
        }
    }

    /// The same ladder as an SVG document (a str), sized for a 750 px column.
    ///
    /// Example:
    ///
    /// >>> import tcplab
    /// >>> tcplab.model("abort").ladder_svg().startswith("<svg")
    /// True
    fn ladder_svg(&self) -> String {
        match &self.svg {
            Some(s) => s.clone(),
            None => ladder::svg(&self.inner),
        }
    }

    /// JSON lines, one event per line (what `tcplab trace --json` prints).
    ///
    /// Example:
    ///
    /// >>> import tcplab
    /// >>> t = tcplab.model("client-close")
    /// >>> len(tcplab.Timeline.from_json(t.to_json())) == len(t)
    /// True
    fn to_json(&self) -> String {
        self.inner.to_json_lines()
    }

    /// Jupyter draws a timeline as its ladder (when it has any connection to draw).
    fn _repr_svg_(&self) -> Option<String> {
        if self.svg.is_some() {
            return self.svg.clone();
        }
        let any = !self.inner.segments.is_empty()
            || self.inner.events.iter().any(|e| e.remote.port() != 0);
        any.then(|| ladder::svg(&self.inner))
    }

    fn _repr_html_(&self) -> String {
        let mut h = String::new();
        let _ = write!(
            h,
            "<p><b>Timeline</b>: {} events, {} sockets{}</p>",
            self.inner.len(),
            self.inner.endpoints().len(),
            self.backend
                .as_ref()
                .map(|b| format!(" ({})", html_escape(b)))
                .unwrap_or_default()
        );
        if let Some(n) = &self.note {
            let _ = write!(h, "<p><i>{}</i></p>", html_escape(n));
        }
        h.push_str(
            "<table><thead><tr><th>t (ms)</th><th>socket</th><th>from</th><th>to</th>\
             <th>source</th></tr></thead><tbody>",
        );
        for e in self.inner.events.iter().take(200) {
            let _ = write!(
                h,
                "<tr><td>{:.3}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                e.t_us as f64 / 1000.0,
                html_escape(&e.endpoint().to_string()),
                e.from,
                e.to,
                e.source
            );
        }
        h.push_str("</tbody></table>");
        if self.inner.len() > 200 {
            let _ = write!(h, "<p>... {} more events</p>", self.inner.len() - 200);
        }
        h
    }

    fn __repr__(&self) -> String {
        format!(
            "Timeline({} events, {} sockets{})",
            self.inner.len(),
            self.inner.endpoints().len(),
            self.backend
                .as_ref()
                .map(|b| format!(", backend {b}"))
                .unwrap_or_default()
        )
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyEvent>()?;
    m.add_class::<PyTimeline>()?;
    Ok(())
}
