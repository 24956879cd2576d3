//! The RFC 9293 model from Python: `tcplab.model(scenario)` (core's simulator, as a Timeline
//! with the model's ladder in text and SVG), `tcplab.diagram()` (the state diagram built from
//! the transition table) and `tcplab.Connection`, a step-through of two endpoints for the
//! board: call `close("client")`, then `deliver()` one segment at a time and watch the states.
//!
//! `Connection` is a thin face on core's `Simulator`, the same one `model()` runs a script
//! on, so a step-through and a scenario give the same events. What it adds is wording: the
//! call names, one line of text per step, and a clock that moves 1 ms per action.

use std::sync::{Mutex, MutexGuard};

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyString;
use tcplab_core::model::diagram as state_diagram;
use tcplab_core::model::sim::{LogEntry, Step};
use tcplab_core::model::{Call, Network, Options, Scenario, Simulator, ladder};
use tcplab_core::timeline::Side;

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
    sim: Simulator,
    log: Vec<String>,
}

/// Microseconds the step-through advances per action (so the Timeline is ordered).
const STEP_US: u64 = 1000;

fn line(step: &Step) -> String {
    let out = &step.output;
    let mut line = format!("{}: {} ({})", step.side, step.input.label(), out.why);
    if !out.path.is_empty() {
        line.push_str(&format!(", {} -> {}", out.from, out.to()));
    }
    for seg in &out.send {
        line.push_str(&format!(", sends {seg}"));
    }
    if let Some(e) = out.error {
        line.push_str(&format!(", error: {e}"));
    }
    line
}

impl Conn {
    fn next_t(&self) -> u64 {
        self.sim.now() + STEP_US
    }

    fn record(&mut self, step: &Step) -> String {
        let l = line(step);
        self.log.push(l.clone());
        l
    }

    fn feed(&mut self, side: Side, call: Call) -> String {
        let step = self.sim.feed(side, call, self.next_t());
        self.record(&step)
    }

    fn deliver(&mut self) -> Option<String> {
        let step = self.sim.deliver(self.next_t())?;
        Some(self.record(&step))
    }
}

fn parse_side(obj: &Bound<'_, PyAny>) -> PyResult<Side> {
    crate::errors::name(obj, "side")
}

const CALLS: &str =
    "\"connect\", \"listen\", \"send\", \"read\", \"close\", \"shutdown\", \"abort\"";

/// The name `call()` takes for a call (the first of its spellings).
fn call_name(call: Call) -> &'static str {
    match call {
        Call::ActiveOpen => "connect",
        Call::PassiveOpen => "listen",
        Call::Send => "send",
        Call::Read => "read",
        Call::Close => "close",
        Call::ShutdownWrite => "shutdown",
        Call::Abort => "abort",
    }
}

/// A scenario's steps in the order the model took them, as a script for `Connection`:
/// `(call, side)` for a program call ("close", "client"), `("deliver", receiver)` for a
/// segment's arrival and `("expire", side)` for a timer. Segments a scenario's network loses
/// never arrive, so `Connection(network=scenario)` replays them without a `drop()`.
///
/// Example:
///
/// >>> import tcplab
/// >>> tcplab.scenario_steps("client-close")[:3]
/// [('listen', 'server'), ('connect', 'client'), ('deliver', 'server')]
#[pyfunction]
#[pyo3(signature = (scenario, rfc=false))]
pub fn scenario_steps(
    scenario: &Bound<'_, PyAny>,
    rfc: bool,
) -> PyResult<Vec<(&'static str, String)>> {
    let name = text_arg(scenario, "scenario")?;
    let sc: Scenario = name.parse().map_err(to_py)?;
    let result = sc.run(&options(rfc));
    Ok(result
        .log
        .iter()
        .filter_map(|e| match e {
            LogEntry::Call { side, call, .. } => Some((call_name(*call), side.to_string())),
            LogEntry::Arrived { side, .. } => Some(("deliver", side.to_string())),
            LogEntry::Timer { side, .. } => Some(("expire", side.to_string())),
            _ => None,
        })
        .collect())
}

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
/// `network` names a scenario whose network to use (its losses and copies, see
/// `scenarios()`); by default nothing is lost.
/// Program calls: `close(side)`, `shutdown(side)`, `abort(side)`, `call(side, name)`.
/// The network: `pending` lists segments in flight, `deliver()` delivers the next to arrive,
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
    #[pyo3(signature = (established=true, rfc=false, network=None))]
    fn new(
        established: bool,
        rfc: bool,
        network: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Connection> {
        let network = match network {
            None => Network::default(),
            Some(obj) => {
                let name = text_arg(obj, "network")?;
                let sc: Scenario = name.parse().map_err(to_py)?;
                sc.script().network()
            }
        };
        let mut conn = Conn {
            sim: Simulator::new(options(rfc), network),
            log: Vec::new(),
        };
        conn.feed(Side::Server, Call::PassiveOpen);
        if established {
            conn.feed(Side::Client, Call::ActiveOpen);
            while conn.deliver().is_some() {}
        }
        Ok(Connection {
            inner: Mutex::new(conn),
        })
    }

    /// The client's state now (netstat spelling).
    #[getter]
    fn client(&self) -> String {
        self.lock().sim.tcb(Side::Client).state.to_string()
    }

    /// The server's state now (netstat spelling).
    #[getter]
    fn server(&self) -> String {
        self.lock().sim.tcb(Side::Server).state.to_string()
    }

    /// Segments in flight, next to arrive first: "client -> server: FIN+ACK seq=... ack=...".
    #[getter]
    fn pending(&self) -> Vec<String> {
        self.lock()
            .sim
            .in_flight()
            .map(|f| format!("{} -> {}: {}", f.from(), f.to, f.segment))
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
            inner: c.sim.timeline().clone(),
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
        Ok(self.lock().feed(side, call))
    }

    /// `close()` on one side ("client" or "server").
    fn close(&self, side: &Bound<'_, PyAny>) -> PyResult<String> {
        let side = parse_side(side)?;
        Ok(self.lock().feed(side, Call::Close))
    }

    /// `shutdown(SHUT_WR)` on one side: a FIN, and the side keeps reading.
    fn shutdown(&self, side: &Bound<'_, PyAny>) -> PyResult<String> {
        let side = parse_side(side)?;
        Ok(self.lock().feed(side, Call::ShutdownWrite))
    }

    /// `close()` with SO_LINGER {on, 0} on one side: a RST instead of a FIN.
    fn abort(&self, side: &Bound<'_, PyAny>) -> PyResult<String> {
        let side = parse_side(side)?;
        Ok(self.lock().feed(side, Call::Abort))
    }

    /// Deliver the next segment to arrive; returns what the receiver did.
    /// Raises TcplabError when nothing is in flight.
    fn deliver(&self) -> PyResult<String> {
        self.lock().deliver().ok_or_else(|| {
            TcplabError::new_err(
                "no segment in flight: call close(), shutdown() or abort() on a side first",
            )
        })
    }

    /// Drop the next segment to arrive (the network lost it); returns it as text.
    fn drop(&self) -> PyResult<String> {
        let mut c = self.lock();
        let Some(f) = c.sim.drop() else {
            return Err(TcplabError::new_err("no segment in flight to drop"));
        };
        let line = format!("network: dropped {} -> {}: {}", f.from(), f.to, f.segment);
        c.log.push(line.clone());
        Ok(line)
    }

    /// Deliver segments until none is in flight (at most 100); returns what happened.
    fn deliver_all(&self) -> Vec<String> {
        let mut c = self.lock();
        let mut out = Vec::new();
        for _ in 0..100 {
            let Some(line) = c.deliver() else {
                break;
            };
            out.push(line);
        }
        out
    }

    /// Fire a side's next timer (the TIME_WAIT timeout, fin_timeout or a retransmission).
    /// Raises TcplabError when that side has no timer running.
    fn expire(&self, side: &Bound<'_, PyAny>) -> PyResult<String> {
        let side = parse_side(side)?;
        let mut c = self.lock();
        let t = c.next_t();
        let Some(step) = c.sim.expire(side, t) else {
            return Err(TcplabError::new_err(format!(
                "the {side} has no timer running"
            )));
        };
        Ok(c.record(&step))
    }

    fn __repr__(&self) -> String {
        let c = self.lock();
        format!(
            "Connection(client {}, server {}, {} in flight)",
            c.sim.tcb(Side::Client).state,
            c.sim.tcb(Side::Server).state,
            c.sim.in_flight().count()
        )
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Diagram>()?;
    m.add_class::<Connection>()?;
    m.add_function(wrap_pyfunction!(model, m)?)?;
    m.add_function(wrap_pyfunction!(scenarios, m)?)?;
    m.add_function(wrap_pyfunction!(scenario_steps, m)?)?;
    m.add_function(wrap_pyfunction!(diagram, m)?)?;
    Ok(())
}
