//! Snapshots: `tcplab.snapshot()` asks the kernel (sock_diag, /proc as fallback) with the GIL
//! released, and returns a `SocketTable` of `Socket` rows wrapping core's `SocketRow`.
//!
//! Left out on purpose: formatting for pandas happens in `tcplab/_frames.py`; this file hands
//! it packed columns (bytes buffers numpy reads without copying row by row), which is what
//! keeps `snapshot().to_pandas()` fast at 100k sockets.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use pyo3::exceptions::{PyIndexError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyInt, PyList, PySlice, PyString};
use tcplab_core::observe::{self, Method, Query, SocketRow};

use crate::errors::{self, to_py, type_name};
use crate::state;

/// One TCP socket as the kernel reported it (one line of `ss -tan`).
///
/// Attributes: state (netstat spelling), local_addr, local_port, remote_addr, remote_port,
/// timer (which timer runs, or None), timer_ms (ms left on it, or None), recv_q, send_q, uid,
/// inode (0 for TIME_WAIT mini-sockets), pids (owner processes; None unless asked for).
///
/// Example:
///
/// >>> import socket, tcplab
/// >>> srv = socket.create_server(("127.0.0.1", 0))
/// >>> s = tcplab.snapshot(port=srv.getsockname()[1])[0]
/// >>> s.state, s.local_addr
/// ('LISTEN', '127.0.0.1')
/// >>> srv.close()
#[pyclass(frozen, module = "tcplab._native")]
pub struct Socket {
    row: SocketRow,
}

fn timer_name(row: &SocketRow) -> Option<String> {
    row.timer.map(|t| t.to_string())
}

#[pymethods]
impl Socket {
    /// The state, in netstat spelling: "TIME_WAIT", "CLOSE_WAIT", ...
    #[getter]
    fn state(&self) -> &'static str {
        self.row.state.netstat()
    }
    /// The local IP address as text ("127.0.0.1", "::1").
    #[getter]
    fn local_addr(&self) -> String {
        self.row.local.ip().to_string()
    }
    #[getter]
    fn local_port(&self) -> u16 {
        self.row.local.port()
    }
    /// The peer's IP address as text ("0.0.0.0" or "::" for a listener).
    #[getter]
    fn remote_addr(&self) -> String {
        self.row.remote.ip().to_string()
    }
    #[getter]
    fn remote_port(&self) -> u16 {
        self.row.remote.port()
    }
    /// The running timer ("on", "keepalive", "timewait", "persist"), or None.
    #[getter]
    fn timer(&self) -> Option<String> {
        timer_name(&self.row)
    }
    /// Milliseconds left on the running timer, or None.
    #[getter]
    fn timer_ms(&self) -> Option<u64> {
        self.row.timer_ms
    }
    /// Bytes received, not yet read (for a listener: connections waiting for accept()).
    #[getter]
    fn recv_q(&self) -> u32 {
        self.row.recv_q
    }
    /// Bytes sent, not yet acknowledged (for a listener: the backlog).
    #[getter]
    fn send_q(&self) -> u32 {
        self.row.send_q
    }
    #[getter]
    fn uid(&self) -> u32 {
        self.row.uid
    }
    /// The socket's inode; 0 for mini-sockets (TIME_WAIT, request sockets).
    #[getter]
    fn inode(&self) -> u64 {
        self.row.inode
    }
    /// Owner processes (filled by snapshot(pids=True)), else None.
    #[getter]
    fn pids(&self) -> Option<Vec<u32>> {
        self.row.pids.clone()
    }
    /// The row as a dict of the attributes above.
    ///
    /// Example:
    ///
    /// >>> import socket, tcplab
    /// >>> srv = socket.create_server(("127.0.0.1", 0))
    /// >>> tcplab.snapshot(port=srv.getsockname()[1])[0].to_dict()["state"]
    /// 'LISTEN'
    /// >>> srv.close()
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("state", self.state())?;
        d.set_item("local_addr", self.local_addr())?;
        d.set_item("local_port", self.local_port())?;
        d.set_item("remote_addr", self.remote_addr())?;
        d.set_item("remote_port", self.remote_port())?;
        d.set_item("timer", self.timer())?;
        d.set_item("timer_ms", self.timer_ms())?;
        d.set_item("recv_q", self.recv_q())?;
        d.set_item("send_q", self.send_q())?;
        d.set_item("uid", self.uid())?;
        d.set_item("inode", self.inode())?;
        d.set_item("pids", self.pids())?;
        Ok(d)
    }
    fn __repr__(&self) -> String {
        format!(
            "Socket({} {} -> {}{})",
            self.row.state,
            self.row.local,
            self.row.remote,
            self.row
                .timer_ms
                .map(|ms| format!(", timer {ms} ms"))
                .unwrap_or_default()
        )
    }
    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<Socket>()
            .map(|o| o.get().row == self.row)
            .unwrap_or(false)
    }
}

/// The sockets of one snapshot: a sequence of `Socket` (len, iteration, indexing, slicing).
///
/// Also `counts()` per state, `to_pandas()` (pandas imported only then), `method` (how the
/// kernel was asked: "sock_diag" or "/proc/net/tcp") and `note` (why, when it fell back).
/// Displays as an HTML table in Jupyter.
///
/// Example:
///
/// >>> import socket, tcplab
/// >>> srv = socket.create_server(("127.0.0.1", 0))
/// >>> table = tcplab.snapshot(port=srv.getsockname()[1])
/// >>> len(table), table.counts()
/// (1, {'LISTEN': 1})
/// >>> srv.close()
#[pyclass(frozen, sequence, module = "tcplab._native")]
pub struct SocketTable {
    rows: Vec<SocketRow>,
    method: Method,
    note: Option<String>,
}

fn le_bytes<'py, T, const N: usize>(
    py: Python<'py>,
    rows: &[SocketRow],
    f: impl Fn(&SocketRow) -> T,
    to: impl Fn(T) -> [u8; N],
) -> Bound<'py, PyBytes> {
    let mut buf = Vec::with_capacity(rows.len() * N);
    for r in rows {
        buf.extend_from_slice(&to(f(r)));
    }
    PyBytes::new(py, &buf)
}

/// A list of address strings, one Python str per distinct address (loopback tables repeat a
/// handful of addresses 100k times).
fn addr_list<'py>(
    py: Python<'py>,
    rows: &[SocketRow],
    f: impl Fn(&SocketRow) -> SocketAddr,
) -> PyResult<Bound<'py, PyList>> {
    let mut cache: HashMap<IpAddr, Bound<'py, PyString>> = HashMap::new();
    let items: Vec<Bound<'py, PyString>> = rows
        .iter()
        .map(|r| {
            let ip = f(r).ip();
            cache
                .entry(ip)
                .or_insert_with(|| PyString::new(py, &ip.to_string()))
                .clone()
        })
        .collect();
    PyList::new(py, items)
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// How many rows `_repr_html_` shows before it says "... N more".
const HTML_ROWS: usize = 50;

#[pymethods]
impl SocketTable {
    fn __len__(&self) -> usize {
        self.rows.len()
    }

    fn __getitem__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        if let Ok(slice) = key.cast::<PySlice>() {
            let len = isize::try_from(self.rows.len()).unwrap_or(isize::MAX);
            let ind = slice.indices(len)?;
            let mut rows = Vec::with_capacity(ind.slicelength);
            let mut i = ind.start;
            for _ in 0..ind.slicelength {
                rows.push(self.rows[i as usize].clone());
                i += ind.step;
            }
            let t = SocketTable {
                rows,
                method: self.method,
                note: self.note.clone(),
            };
            return Ok(Py::new(py, t)?.into_any());
        }
        if !key.is_instance_of::<PyInt>() {
            return Err(PyTypeError::new_err(format!(
                "SocketTable indices must be int or slice, not {}",
                type_name(key)
            )));
        }
        let len = self.rows.len() as i128;
        let i: i128 = key.extract().unwrap_or(i128::MAX);
        let i = if i < 0 { i + len } else { i };
        if !(0..len).contains(&i) {
            return Err(PyIndexError::new_err(format!(
                "SocketTable index out of range (it has {len} rows)"
            )));
        }
        let row = self.rows[i as usize].clone();
        Ok(Py::new(py, Socket { row })?.into_any())
    }

    fn __iter__(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let items = slf
            .get()
            .rows
            .iter()
            .map(|r| Py::new(py, Socket { row: r.clone() }))
            .collect::<PyResult<Vec<_>>>()?;
        Ok(PyList::new(py, items)?
            .as_any()
            .try_iter()?
            .into_any()
            .unbind())
    }

    /// How the kernel was asked: "sock_diag" or "/proc/net/tcp".
    #[getter]
    fn method(&self) -> String {
        self.method.to_string()
    }

    /// Why the method is not the one asked for (netlink refused), or None.
    #[getter]
    fn note(&self) -> Option<String> {
        self.note.clone()
    }

    /// Sockets per state, in kernel state order: {"ESTABLISHED": 2, "TIME_WAIT": 40000}.
    ///
    /// Example:
    ///
    /// >>> import socket, tcplab
    /// >>> srv = socket.create_server(("127.0.0.1", 0))
    /// >>> tcplab.snapshot(port=srv.getsockname()[1]).counts()
    /// {'LISTEN': 1}
    /// >>> srv.close()
    fn counts<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (s, n) in observe::count_states(&self.rows) {
            d.set_item(s.netstat(), n)?;
        }
        Ok(d)
    }

    /// The rows as a list of dicts (see Socket.to_dict).
    ///
    /// Example:
    ///
    /// >>> import socket, tcplab
    /// >>> srv = socket.create_server(("127.0.0.1", 0))
    /// >>> tcplab.snapshot(port=srv.getsockname()[1]).to_dicts()[0]["state"]
    /// 'LISTEN'
    /// >>> srv.close()
    fn to_dicts<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let items = self
            .rows
            .iter()
            .map(|r| Socket { row: r.clone() }.to_dict(py))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, items)
    }

    /// Packed columns for `tcplab._frames` (numbers as little-endian bytes).
    fn _columns<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let rows = &self.rows;
        let d = PyDict::new(py);
        d.set_item("n", rows.len())?;
        d.set_item(
            "state_code",
            le_bytes(py, rows, |r| r.state.code(), |v| [v]),
        )?;
        d.set_item("local_addr", addr_list(py, rows, |r| r.local)?)?;
        d.set_item(
            "local_port",
            le_bytes(py, rows, |r| r.local.port(), u16::to_le_bytes),
        )?;
        d.set_item("remote_addr", addr_list(py, rows, |r| r.remote)?)?;
        d.set_item(
            "remote_port",
            le_bytes(py, rows, |r| r.remote.port(), u16::to_le_bytes),
        )?;
        d.set_item(
            "timer_ms",
            le_bytes(
                py,
                rows,
                |r| r.timer_ms.map(|v| v as i64).unwrap_or(-1),
                i64::to_le_bytes,
            ),
        )?;
        d.set_item("recv_q", le_bytes(py, rows, |r| r.recv_q, u32::to_le_bytes))?;
        d.set_item("send_q", le_bytes(py, rows, |r| r.send_q, u32::to_le_bytes))?;
        d.set_item("uid", le_bytes(py, rows, |r| r.uid, u32::to_le_bytes))?;
        d.set_item("inode", le_bytes(py, rows, |r| r.inode, u64::to_le_bytes))?;
        if rows.iter().any(|r| r.pids.is_some()) {
            d.set_item(
                "pids",
                PyList::new(py, rows.iter().map(|r| r.pids.clone().unwrap_or_default()))?,
            )?;
        }
        Ok(d)
    }

    /// A pandas DataFrame, one row per socket (pandas is imported only now).
    ///
    /// Columns: state (categorical), local_addr, local_port, remote_addr, remote_port,
    /// timer_ms (nullable Int64), recv_q, send_q, uid, inode, and pids when asked for.
    ///
    /// Example:
    ///
    /// >>> import socket, tcplab
    /// >>> srv = socket.create_server(("127.0.0.1", 0))
    /// >>> df = tcplab.snapshot(port=srv.getsockname()[1]).to_pandas()
    /// >>> list(df["state"])
    /// ['LISTEN']
    /// >>> srv.close()
    fn to_pandas<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let cols = slf.get()._columns(py)?;
        py.import("tcplab._frames")?
            .getattr("sockets_frame")?
            .call1((cols,))
    }

    fn _repr_html_(&self) -> String {
        let mut h = String::new();
        let counts = observe::count_states(&self.rows)
            .iter()
            .map(|(s, n)| format!("{s} {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = write!(
            h,
            "<p><b>{} TCP sockets</b> ({}){}</p>",
            self.rows.len(),
            html_escape(&self.method.to_string()),
            if counts.is_empty() {
                String::new()
            } else {
                format!(": {}", html_escape(&counts))
            }
        );
        h.push_str(
            "<table><thead><tr><th>state</th><th>local</th><th>remote</th>\
             <th>timer_ms</th><th>recv_q</th><th>send_q</th><th>uid</th><th>inode</th>\
             </tr></thead><tbody>",
        );
        for r in self.rows.iter().take(HTML_ROWS) {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
                 <td>{}</td><td>{}</td></tr>",
                r.state,
                html_escape(&r.local.to_string()),
                html_escape(&r.remote.to_string()),
                r.timer_ms.map(|v| v.to_string()).unwrap_or_default(),
                r.recv_q,
                r.send_q,
                r.uid,
                r.inode
            );
        }
        h.push_str("</tbody></table>");
        if self.rows.len() > HTML_ROWS {
            let _ = write!(
                h,
                "<p>... {} more rows (use .to_pandas())</p>",
                self.rows.len() - HTML_ROWS
            );
        }
        h
    }

    fn __repr__(&self) -> String {
        let counts = observe::count_states(&self.rows)
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!("SocketTable({} sockets; {counts})", self.rows.len())
    }
}

/// Ask the kernel for TCP sockets now, as `ss -tan` does (sock_diag; /proc as fallback).
///
/// port: None (every port), an int, or a list of ints; a socket matches when its local or
/// remote port is one of them (filtered in the kernel). state: None, a state name or a list of
/// names in any spelling ("TIME_WAIT", "time-wait", "FIN-WAIT-1", "estab"). pids: also find
/// the owner processes (like `ss -p`). method: "auto", "sock_diag" or "proc".
///
/// The GIL is released while the kernel is asked. Raises ValueError for ports outside 0..65535
/// and unknown state names (the message lists the valid ones), TypeError for wrong types.
///
/// Example:
///
/// >>> import socket, tcplab
/// >>> srv = socket.create_server(("127.0.0.1", 0))
/// >>> port = srv.getsockname()[1]
/// >>> tcplab.snapshot(port=port, state="listen").counts()
/// {'LISTEN': 1}
/// >>> len(tcplab.snapshot(port=[port], state=["time-wait", "CLOSE_WAIT"]))
/// 0
/// >>> srv.close()
#[pyfunction]
#[pyo3(
    signature = (port=None, state=None, pids=None, method=None),
    text_signature = "(port=None, state=None, pids=False, method='auto')"
)]
pub fn snapshot(
    py: Python<'_>,
    port: Option<&Bound<'_, PyAny>>,
    state: Option<&Bound<'_, PyAny>>,
    pids: Option<&Bound<'_, PyAny>>,
    method: Option<&Bound<'_, PyAny>>,
) -> PyResult<SocketTable> {
    let ports = errors::ports(port, "port")?;
    let states = state::parse_many(state)?;
    let pids = match pids {
        None => false,
        Some(p) if p.is_instance_of::<PyBool>() => p.extract::<bool>()?,
        Some(p) => {
            return Err(PyTypeError::new_err(format!(
                "pids must be True or False, not {}",
                type_name(p)
            )));
        }
    };
    let method = match method {
        None => Method::Auto,
        Some(m) => errors::name::<Method>(m, "method")?,
    };
    let mut query = Query::ports(&ports).with_states(&states);
    query.pids = pids;
    let snap = py
        .detach(|| observe::snapshot(&query, method))
        .map_err(to_py)?;
    Ok(SocketTable {
        rows: snap.rows,
        method: snap.method,
        note: snap.note,
    })
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Socket>()?;
    m.add_class::<SocketTable>()?;
    m.add_function(wrap_pyfunction!(snapshot, m)?)?;
    Ok(())
}
