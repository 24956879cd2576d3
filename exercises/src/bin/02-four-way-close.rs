//! Lesson 02: the four-way close of one connection, step by step, with what the kernel shows
//! on each side between the steps.
//!
//! The client calls close() first (the active closer): its FIN is acknowledged at once, so the
//! kernel shows the client in FIN_WAIT2 and the server in CLOSE_WAIT, a state with no timer
//! that only the server program's close() moves on (a RST or a failed keepalive could still end
//! it). Then the server reads end-of-stream and closes: its FIN moves the client into
//! TIME_WAIT for 60 s and the server's socket is gone.
//!
//! Left out on purpose: FIN_WAIT1 and LAST_ACK last microseconds on loopback, so snapshots
//! between steps cannot catch them (the transition tracer does); simultaneous close (CLOSING)
//! and half-close (lesson 08) are other lessons.

use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tcplab_core::timeline::Side;
use tcplab_core::{TcpState, kernel, sockets};
use tcplab_exercises::catalog::Verdict;
use tcplab_exercises::facts;
use tcplab_exercises::lab::{self, Lab, Sides};

/// How long any single call may block.
const IO_TIMEOUT: Duration = Duration::from_secs(3);

fn main() -> ExitCode {
    lab::main(env!("CARGO_BIN_NAME"), run)
}

fn run(lab: &mut Lab) -> Result<()> {
    let listener = sockets::loopback_listener(false)?;
    let addr = listener.local_addr()?;
    lab.watch(addr.port())?;

    // ANCHOR: connect
    lab.step(format!("The client connects to {addr}; the server accepts"));
    let mut client = sockets::connect(addr, IO_TIMEOUT).context("connect")?;
    let (mut server, _) = sockets::accept_within(&listener, IO_TIMEOUT).context("accept")?;
    client.set_read_timeout(Some(IO_TIMEOUT))?;
    server.set_read_timeout(Some(IO_TIMEOUT))?;
    client.write_all(b"hello\n")?;
    let mut buf = [0u8; 64];
    let n = server.read(&mut buf)?;
    lab.say(format!("the server read {n} bytes from the client"));
    // ANCHOR_END: connect
    let open = lab.wait_until(IO_TIMEOUT, |s| {
        s.count(Side::Server, TcpState::Established) == 1
            && s.count(Side::Client, TcpState::Established) == 1
    })?;
    lab.say(format!("kernel says: {}", open.describe()));

    // ANCHOR: client_close
    lab.step("The client calls close() first: its kernel sends FIN");
    drop(client);
    // ANCHOR_END: client_close
    let half = lab.wait_until(IO_TIMEOUT, |s| {
        s.count(Side::Client, TcpState::FinWait2) == 1
            && s.count(Side::Server, TcpState::CloseWait) == 1
    })?;
    lab.say(format!("kernel says: {}", half.describe()));
    let fin_wait2 = half.count(Side::Client, TcpState::FinWait2);
    let close_wait = half.count(Side::Server, TcpState::CloseWait);
    if fin_wait2 == 1 && close_wait == 1 {
        lab.say(
            "the client went FIN_WAIT1 -> FIN_WAIT2 as soon as the server's kernel acknowledged \
             the FIN (too fast to catch FIN_WAIT1 here)",
        );
        lab.say(
            "the server is in CLOSE_WAIT: its kernel knows the client is done, and waits for \
             the server program to call close(). No timer moves it on; only a RST or an \
             unanswered keepalive could end it without the program.",
        );
        let fin_timeout = kernel::sysctl("net/ipv4/tcp_fin_timeout");
        lab.fact("tcp_fin_timeout", fin_timeout);
        if let Some(ms) = timer_ms(lab, TcpState::FinWait2)? {
            lab.fact("fin_wait2_timer_ms", ms);
            lab.say(format!(
                "the client closed its descriptor, so its FIN_WAIT2 is orphaned: its timer shows \
                 {:.1} s for the server's FIN to arrive (net.ipv4.tcp_fin_timeout is {} s here)",
                ms as f64 / 1000.0,
                fin_timeout.map_or("unknown".to_string(), |s| s.to_string())
            ));
        }
    }

    // ANCHOR: server_close
    lab.step("The server reads end-of-stream (read() == 0) and calls close(): its FIN goes out");
    let n = server.read(&mut buf).context("read until end-of-stream")?;
    lab.say(format!(
        "the server's read() returned {n}: the client's FIN"
    ));
    drop(server);
    // ANCHOR_END: server_close
    let closed = lab.wait_until(IO_TIMEOUT, |s| {
        s.count(Side::Client, TcpState::TimeWait) == 1 && s.total(Side::Server) == 1
    })?;
    lab.say(format!("kernel says: {}", closed.describe()));
    let time_wait = closed.count(Side::Client, TcpState::TimeWait);
    let timer = timer_ms(lab, TcpState::TimeWait)?;
    lab.fact(facts::CLIENT_FIN_WAIT2, fin_wait2);
    lab.fact(facts::SERVER_CLOSE_WAIT_BETWEEN, close_wait);
    lab.fact(facts::CLIENT_TIME_WAIT, time_wait);
    lab.fact(
        facts::SERVER_CLOSE_WAIT,
        closed.count(Side::Server, TcpState::CloseWait),
    );
    lab.fact("server_sockets_left", closed.total(Side::Server));
    lab.fact(facts::TIMER_MS, timer);
    if let Some(ms) = timer {
        lab.say(format!(
            "the client is in TIME_WAIT, {:.1} s left on its timer (60 s on Linux); the \
             server went LAST_ACK -> CLOSE when the client's last ACK arrived: only the \
             listener is left on the server's port",
            ms as f64 / 1000.0
        ));
    }

    let (verdict, why) = grade(&half, &closed)?;
    lab.finish(verdict, closed, &why)?;
    drop(listener);
    Ok(())
}

/// Clean when the kernel showed the whole close: FIN_WAIT2 / CLOSE_WAIT between the two
/// close() calls, then TIME_WAIT on the client and nothing but the listener on the server.
fn grade(half: &Sides, closed: &Sides) -> Result<(Verdict, String)> {
    let full_close = half.count(Side::Client, TcpState::FinWait2) == 1
        && half.count(Side::Server, TcpState::CloseWait) == 1
        && closed.count(Side::Client, TcpState::TimeWait) == 1
        && closed.count(Side::Server, TcpState::CloseWait) == 0
        && closed.total(Side::Server) == 1;
    if full_close {
        return Ok((
            Verdict::Clean,
            "the kernel showed the full close: FIN_WAIT2 / CLOSE_WAIT, then TIME_WAIT on the \
             client and no CLOSE_WAIT left"
                .to_string(),
        ));
    }
    if closed.count(Side::Server, TcpState::CloseWait) > 0 {
        return Ok((
            Verdict::Leak,
            "the server's socket stayed in CLOSE_WAIT".to_string(),
        ));
    }
    bail!(
        "the kernel showed neither the full close nor a CLOSE_WAIT left behind (between the \
         closes: {}; after: {}); run `{} doctor` to check that sock_diag works here",
        half.describe(),
        closed.describe(),
        tcplab_exercises::cli::runner::command_name()
    )
}

/// The timer on the client's socket in `state`, from the kernel's row.
fn timer_ms(lab: &Lab, state: TcpState) -> Result<Option<u64>> {
    let port = lab.server_port()?;
    Ok(lab
        .rows()?
        .iter()
        .find(|r| r.state == state && r.remote.port() == port)
        .and_then(|r| r.timer_ms))
}
