//! The RFC 9293 model from Python: `tcplab.model(scenario)` (core's simulator, as a Timeline
//! with the model's ladder in text and SVG), `tcplab.diagram()` (the state diagram built from
//! the transition table) and `tcplab.Connection`, a step-through of two endpoints for the
//! board: call `close("client")`, then `deliver()` one segment at a time and watch the states.
//!
//! Left out on purpose: `Connection` is a small driver around core's `Tcb::step` (the same
//! state machine the simulator uses); it has no scripted network (drops, delays), which is
//! what `model()`'s scenarios are for.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyString;
use tcplab_core::model::diagram as state_diagram;
use tcplab_core::model::sim::{CLIENT_ISS, SERVER_ISS, addresses};
use tcplab_core::model::{Call, Input, Options, Scenario, Segment, Tcb, Timer, ladder};
use tcplab_core::timeline::Side;
use tcplab_core::{Event, Source, Timeline};

use crate::errors::{TcplabError, to_py, type_name};
use crate::timeline::PyTimeline;

fn options(rfc: bool) -> Options {
    if rfc {
        Options::rfc()
    } else {
        Options::linux()
    }
}

fn text_arg(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<String> {
    if !obj.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(format!(
            "{what} must be a str, not {}",
            type_name(obj)
        )));
    }
    obj.extract()
}

/// Play a named scenario on the RFC 9293 model: a Timeline of both endpoints' states,
/// whose `ladder()` is the model's ladder diagram and which displays as SVG in Jupyter.
///
/// scenario: one of `tcplab.scenarios()` ("client-close", "server-close",
/// "simultaneous-close", "abort", "half-close", "lost-last-ack", "old-duplicate",
/// "close-wait-leak"). rfc: follow the RFC to the letter instead of Linux's choices.
/// Raises ValueError for an unknown scenario, listing the valid ones.
///
/// Example:
///
/// >>> import tcplab
/// >>> t = tcplab.model("client-close")
/// >>> t.sequences()["10.0.0.1:40000 -> 10.0.0.2:80"][-2:]
/// ['TIME_WAIT', 'CLOSE']
/// >>> "FIN" in t.ladder()
/// True
#[pyfunction]
#[pyo3(signature = (scenario, rfc=false))]
pub fn model(scenario: &Bound<'_, PyAny>, rfc: bool) -> PyResult<PyTimeline> {
    let name = text_arg(scenario, "scenario")?;
    let sc: Scenario = name.parse().map_err(to_py)?;
    let result = sc.run(&options(rfc));
    Ok(PyTimeline {
        inner: result.timeline.clone(),
        backend: None,
        note: Some(sc.summary().to_string()),
        ladder_text: Some(ladder::text(&result)),
        svg: Some(ladder::svg(&result)),
    })
}

/// The model's named scenarios: {name: one-line summary}.
///
/// Example:
///
/// >>> import tcplab
/// >>> "client-close" in tcplab.scenarios()
/// True
#[pyfunction]
pub fn scenarios() -> Vec<(&'static str, &'static str)> {
    Scenario::ALL
        .iter()
        .map(|s| (s.name(), s.summary()))
        .collect()
}

/// The TCP state diagram (RFC 9293 Figure 5), generated from the model's transition table.
///
/// Displays as SVG in Jupyter; `.svg`, `.dot` (Graphviz) and `.text` give the sources.
///
/// Example:
///
/// >>> import tcplab
/// >>> d = tcplab.diagram()
/// >>> d.svg.startswith("<svg") and "TIME_WAIT" in d.text
/// True
#[pyclass(frozen, module = "tcplab._native")]
pub struct Diagram {
    /// The diagram as SVG.
    #[pyo3(get)]
    svg: String,
    /// The diagram in Graphviz DOT.
    #[pyo3(get)]
    dot: String,
    /// One transition per line.
    #[pyo3(get)]
    text: String,
}

#[pymethods]
impl Diagram {
    fn _repr_svg_(&self) -> String {
        self.svg.clone()
    }
    fn __repr__(&self) -> String {
        format!("Diagram({} transitions)", self.text.lines().count())
    }
}

/// The TCP state diagram from the model's transition table (see Diagram).
///
/// Example:
///
/// >>> import tcplab
/// >>> "LAST_ACK" in tcplab.diagram().dot
/// True
#[pyfunction]
#[pyo3(signature = (rfc=false))]
pub fn diagram(rfc: bool) -> Diagram {
    let edges = state_diagram::transitions(&options(rfc));
    Diagram {
        svg: state_diagram::svg(&edges),
        dot: state_diagram::dot(&edges),
        text: state_diagram::text(&edges),
    }
}

struct Conn {
    opts: Options,
    client: Tcb,
    server: Tcb,
    /// Segments in flight, oldest first: (receiver, segment).
    pending: VecDeque<(Side, Segment)>,
    now_us: u64,
    timeline: Timeline,
    log: Vec<String>,
}

/// Microseconds the step-through advances per action (so the Timeline is ordered).
const STEP_US: u64 = 1000;

fn other(side: Side) -> Side {
    match side {
        Side::Client => Side::Server,
        Side::Server => Side::Client,
    }
}

impl Conn {
    fn tcb(&mut self, side: Side) -> &mut Tcb {
        match side {
            Side::Client => &mut self.client,
            Side::Server => &mut self.server,
        }
    }

    fn feed(&mut self, side: Side, input: Input) -> String {
        self.now_us += STEP_US;
        let now = self.now_us;
        let opts = self.opts;
        let out = self.tcb(side).step(input, now, &opts);
        let (local, remote) = addresses(side);
        let mut from = out.from;
        for &to in &out.path {
            let mut ev = Event::new(now, local, remote, from.tcp(), to.tcp(), Source::Model);
            ev.side = Some(side);
            if let Input::Segment(s) = input {
                ev.segment = Some(s.kind.label().to_string());
            }
            self.timeline.push(ev);
            from = to;
        }
        let mut line = format!("{side}: {} ({})", input.label(), out.why);
        if !out.path.is_empty() {
            line.push_str(&format!(", {} -> {}", out.from, out.to()));
        }
        for seg in &out.send {
            line.push_str(&format!(", sends {seg}"));
            self.pending.push_back((other(side), *seg));
        }
        if let Some(e) = out.error {
            line.push_str(&format!(", error: {e}"));
        }
        self.log.push(line.clone());
        line
    }
}

fn parse_side(obj: &Bound<'_, PyAny>) -> PyResult<Side> {
    crate::errors::name(obj, "side")
}

const CALLS: &str =
    "\"connect\", \"listen\", \"send\", \"read\", \"close\", \"shutdown\", \"abort\"";

fn parse_call(obj: &Bound<'_, PyAny>) -> PyResult<Call> {
    let s = text_arg(obj, "call")?;
    Ok(match s.trim().to_ascii_lowercase().as_str() {
        "connect" => Call::ActiveOpen,
        "listen" => Call::PassiveOpen,
        "send" | "write" => Call::Send,
        "read" => Call::Read,
        "close" => Call::Close,
        "shutdown" => Call::ShutdownWrite,
        "abort" => Call::Abort,
        _ => {
            return Err(PyValueError::new_err(format!(
                "unknown call {s:?}; valid: {CALLS}"
            )));
        }
    })
}

/// Two endpoints of one connection on the model, stepped by hand: for the board.
///
/// `Connection()` starts ESTABLISHED on both sides (the handshake already delivered);
/// `Connection(established=False)` starts with the server LISTEN and the client CLOSED.
/// Program calls: `close(side)`, `shutdown(side)`, `abort(side)`, `call(side, name)`.
/// The network: `pending` lists segments in flight, `deliver()` delivers the oldest one,
/// `deliver_all()` all of them; `expire(side)` fires a side's next timer (TIME_WAIT's end).
/// `client` and `server` are the states now; `timeline` the story so far.
///
/// Example:
///
/// >>> import tcplab
/// >>> c = tcplab.Connection()
/// >>> c.close("client")
/// 'client: CLOSE (...), ESTABLISHED -> FIN_WAIT1, sends FIN+ACK ...'
/// >>> c.pending
/// ['client -> server: FIN+ACK ...']
/// >>> _ = c.deliver(); c.client, c.server
/// ('FIN_WAIT1', 'CLOSE_WAIT')
#[pyclass(frozen, module = "tcplab._native")]
pub struct Connection {
    inner: Mutex<Conn>,
}

impl Connection {
    fn lock(&self) -> MutexGuard<'_, Conn> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[pymethods]
impl Connection {
    #[new]
    #[pyo3(signature = (established=true, rfc=false))]
    fn new(established: bool, rfc: bool) -> Connection {
        let mut conn = Conn {
            opts: options(rfc),
            client: Tcb::new(CLIENT_ISS),
            server: Tcb::new(SERVER_ISS),
            pending: VecDeque::new(),
            now_us: 0,
            timeline: Timeline::new(),
            log: Vec::new(),
        };
        conn.feed(Side::Server, Input::User(Call::PassiveOpen));
        if established {
            conn.feed(Side::Client, Input::User(Call::ActiveOpen));
            while let Some((to, seg)) = conn.pending.pop_front() {
                conn.feed(to, Input::Segment(seg));
            }
        }
        Connection {
            inner: Mutex::new(conn),
        }
    }

    /// The client's state now (netstat spelling).
    #[getter]
    fn client(&self) -> String {
        self.lock().client.state.to_string()
    }

    /// The server's state now (netstat spelling).
    #[getter]
    fn server(&self) -> String {
        self.lock().server.state.to_string()
    }

    /// Segments in flight, oldest first: "client -> server: FIN+ACK seq=... ack=...".
    #[getter]
    fn pending(&self) -> Vec<String> {
        self.lock()
            .pending
            .iter()
            .map(|(to, seg)| format!("{} -> {to}: {seg}", other(*to)))
            .collect()
    }

    /// What happened so far, one line per step.
    #[getter]
    fn log(&self) -> Vec<String> {
        self.lock().log.clone()
    }

    /// The state changes so far, as a Timeline.
    #[getter]
    fn timeline(&self) -> PyTimeline {
        let c = self.lock();
        PyTimeline {
            inner: c.timeline.clone(),
            backend: None,
            note: Some("step-through on the RFC 9293 model".into()),
            ladder_text: None,
            svg: None,
        }
    }

    /// A program call on one side: "connect", "listen", "send", "read", "close",
    /// "shutdown" or "abort". Returns what happened, as text.
    fn call(&self, side: &Bound<'_, PyAny>, name: &Bound<'_, PyAny>) -> PyResult<String> {
        let side = parse_side(side)?;
        let call = parse_call(name)?;
        Ok(self.lock().feed(side, Input::User(call)))
    }

    /// `close()` on one side ("client" or "server").
    fn close(&self, side: &Bound<'_, PyAny>) -> PyResult<String> {
        let side = parse_side(side)?;
        Ok(self.lock().feed(side, Input::User(Call::Close)))
    }

    /// `shutdown(SHUT_WR)` on one side: a FIN, and the side keeps reading.
    fn shutdown(&self, side: &Bound<'_, PyAny>) -> PyResult<String> {
        let side = parse_side(side)?;
        Ok(self.lock().feed(side, Input::User(Call::ShutdownWrite)))
    }

    /// `close()` with SO_LINGER {on, 0} on one side: a RST instead of a FIN.
    fn abort(&self, side: &Bound<'_, PyAny>) -> PyResult<String> {
        let side = parse_side(side)?;
        Ok(self.lock().feed(side, Input::User(Call::Abort)))
    }

    /// Deliver the oldest segment in flight; returns what the receiver did.
    /// Raises TcplabError when nothing is in flight.
    fn deliver(&self) -> PyResult<String> {
        let mut c = self.lock();
        let Some((to, seg)) = c.pending.pop_front() else {
            return Err(TcplabError::new_err(
                "no segment in flight: call close(), shutdown() or abort() on a side first",
            ));
        };
        Ok(c.feed(to, Input::Segment(seg)))
    }

    /// Drop the oldest segment in flight (the network lost it); returns it as text.
    fn drop(&self) -> PyResult<String> {
        let mut c = self.lock();
        let Some((to, seg)) = c.pending.pop_front() else {
            return Err(TcplabError::new_err("no segment in flight to drop"));
        };
        let line = format!("network: dropped {} -> {to}: {seg}", other(to));
        c.log.push(line.clone());
        Ok(line)
    }

    /// Deliver segments until none is in flight (at most 100); returns what happened.
    fn deliver_all(&self) -> Vec<String> {
        let mut c = self.lock();
        let mut out = Vec::new();
        for _ in 0..100 {
            let Some((to, seg)) = c.pending.pop_front() else {
                break;
            };
            out.push(c.feed(to, Input::Segment(seg)));
        }
        out
    }

    /// Fire a side's next timer (the TIME_WAIT timeout, fin_timeout or a retransmission).
    /// Raises TcplabError when that side has no timer running.
    fn expire(&self, side: &Bound<'_, PyAny>) -> PyResult<String> {
        let side = parse_side(side)?;
        let mut c = self.lock();
        let next: Option<(u64, Timer)> = c.tcb(side).next_timer();
        let Some((at, timer)) = next else {
            return Err(TcplabError::new_err(format!(
                "the {side} has no timer running"
            )));
        };
        c.now_us = c.now_us.max(at.saturating_sub(STEP_US));
        Ok(c.feed(side, Input::Timer(timer)))
    }

    fn __repr__(&self) -> String {
        let c = self.lock();
        format!(
            "Connection(client {}, server {}, {} in flight)",
            c.client.state,
            c.server.state,
            c.pending.len()
        )
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Diagram>()?;
    m.add_class::<Connection>()?;
    m.add_function(wrap_pyfunction!(model, m)?)?;
    m.add_function(wrap_pyfunction!(scenarios, m)?)?;
    m.add_function(wrap_pyfunction!(diagram, m)?)?;
    Ok(())
}
