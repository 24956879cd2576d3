//! Lesson 06's driver: start a server, let it close a connection first (so its own port holds a
//! TIME_WAIT socket), stop it, and start it again on the same port. The binary provides the
//! `listen` function whose socket options are the lesson; this module narrates and grades on
//! the kernel's word: the errno bind() returned and the TIME_WAIT row sock_diag shows.
//!
//! Left out on purpose: SO_REUSEPORT (several live listeners on one port, a different feature)
//! and IPv6; a real server would also restart in another process, which changes nothing here:
//! the TIME_WAIT socket belongs to the kernel, not to the process that closed it.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tcplab_core::timeline::Side;
use tcplab_core::{TcpState, sockets};

use crate::catalog::Verdict;
use crate::facts;
use crate::lab::Lab;

/// How long any single call may block.
const IO_TIMEOUT: Duration = Duration::from_secs(3);

pub use tcplab_core::kernel::errno_name;

/// Accept one connection, send a goodbye and close first (the server is the active closer).
fn serve_one_and_close_first(listener: &TcpListener) -> Result<()> {
    let (mut stream, _) = sockets::accept_within(listener, IO_TIMEOUT).context("accept")?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.write_all(b"bye\n").context("send")?;
    drop(stream); // close() first: this side will hold TIME_WAIT
    Ok(())
}

/// Run the lesson with the binary's `listen`.
pub fn run(lab: &mut Lab, listen: fn(SocketAddr) -> io::Result<TcpListener>) -> Result<()> {
    lab.step("Start the server on 127.0.0.1, port 0 (the kernel picks a free port)");
    let listener = listen(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).context("first bind")?;
    let addr = listener.local_addr()?;
    lab.watch(addr.port())?;
    lab.say(format!("listening on {addr}"));
    lab.show("server started")?;

    lab.step("A client connects; the server sends a goodbye and closes first");
    let mut client = sockets::connect(addr, IO_TIMEOUT).context("connect")?;
    client.set_read_timeout(Some(IO_TIMEOUT))?;
    serve_one_and_close_first(&listener)?;
    let mut got = Vec::new();
    client
        .read_to_end(&mut got)
        .context("read until the server's FIN")?;
    drop(client);
    lab.say(format!(
        "the client read {} bytes and end-of-stream, then closed too",
        got.len()
    ));
    let seen = lab.wait_until(IO_TIMEOUT, |s| {
        s.count(Side::Server, TcpState::TimeWait) == 1
    })?;
    lab.say(format!("kernel says: {}", seen.describe()));
    lab.say("the server closed first, so the TIME_WAIT socket sits on the server's own port");

    lab.step("Stop the server: drop the listener (as a process exit would)");
    drop(listener);
    let stopped = lab.show("server stopped")?;
    let tw_ms = time_wait_timer_ms(lab)?;
    if let Some(ms) = tw_ms {
        lab.say(format!(
            "no listener any more, but the TIME_WAIT row still holds port {} for {:.1} s",
            addr.port(),
            ms as f64 / 1000.0
        ));
    }

    lab.step(format!("Restart: bind port {} again at once", addr.port()));
    let restarted = listen(addr);
    let after = lab.sides()?;
    let time_wait = after.count(Side::Server, TcpState::TimeWait);
    lab.say(format!(
        "kernel says (at the restart): {}",
        after.describe()
    ));
    lab.fact("port", addr.port());
    lab.fact(facts::SERVER_TIME_WAIT, time_wait);
    lab.fact("time_wait_timer_ms", tw_ms);
    lab.fact(
        "listening_before_restart",
        stopped.count(Side::Server, TcpState::Listen),
    );
    if time_wait == 0 {
        bail!(
            "the kernel showed no TIME_WAIT socket on port {} at the restart ({}), so this run \
             cannot show what bind() does against one; run `{} doctor`",
            addr.port(),
            after.describe(),
            crate::cli::runner::command_name()
        );
    }
    let (verdict, why) = match &restarted {
        Err(e) if e.raw_os_error() == Some(libc::EADDRINUSE) => {
            lab.fact(facts::BIND_ERROR, errno_name(e));
            lab.fact(facts::BIND_OK, false);
            lab.say(format!(
                "bind() failed: {e}. The only socket on port {} is the TIME_WAIT one; without \
                 SO_REUSEADDR the kernel counts it as a user of the port.",
                addr.port()
            ));
            lab.say("a real server would now exit or retry for up to 60 s");
            (
                Verdict::Leak,
                format!("bind() got EADDRINUSE while {time_wait} TIME_WAIT socket held the port"),
            )
        }
        Err(e) => bail!(
            "bind() failed with {} ({e}), which is not what this lesson is about",
            errno_name(e)
        ),
        Ok(l) if l.local_addr()?.port() != addr.port() => (
            Verdict::Leak,
            format!(
                "the restarted server listens on port {}, not on its own port {}: clients that \
                 know the server's port find nothing there",
                l.local_addr()?.port(),
                addr.port()
            ),
        ),
        Ok(l) => {
            // A second copy of the same server, started while the first listens: SO_REUSEADDR
            // refuses it on Linux; SO_REUSEPORT lets both listen and share the connections.
            let second = listen(addr);
            lab.fact("second_server_bound", second.is_ok());
            lab.require(
                second.is_err(),
                format!(
                    "a second copy of the server could listen on port {} while the first still \
                     did: the option used (SO_REUSEPORT) shares a port between live servers, \
                     far more than a restart needs; SO_REUSEADDR only looks past TIME_WAIT",
                    addr.port()
                ),
            );
            drop(second);
            lab.fact(facts::BIND_ERROR, serde_json::Value::Null);
            lab.fact(facts::BIND_OK, true);
            lab.fact(
                facts::LISTENING_AFTER_RESTART,
                after.count(Side::Server, TcpState::Listen),
            );
            lab.say(format!(
                "bind() succeeded on {}, next to the TIME_WAIT socket. SO_REUSEADDR has to be set \
                 on the old socket and the new one (checked here: either alone still gets \
                 EADDRINUSE). It never lets two servers listen on one port.",
                l.local_addr()?
            ));
            (
                Verdict::Clean,
                format!("bind() succeeded while {time_wait} TIME_WAIT socket held the port"),
            )
        }
    };
    lab.finish(verdict, after, &why)?;
    drop(restarted);
    Ok(())
}

/// The remaining TIME_WAIT timer on the server side, from the kernel's row.
fn time_wait_timer_ms(lab: &Lab) -> Result<Option<u64>> {
    let port = lab.server_port()?;
    Ok(lab
        .rows()?
        .iter()
        .filter(|r| r.state == TcpState::TimeWait && r.local.port() == port)
        .filter_map(|r| r.timer_ms)
        .min())
}
