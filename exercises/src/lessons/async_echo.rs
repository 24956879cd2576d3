//! The async echo-server lesson (04, tokio): clients connect, send a line, read it back and
//! close first. The binary provides the server (its accept loop, registry and per-connection
//! task); this module runs it on a tokio runtime, drives the clients and asks the kernel what
//! became of the sockets.
//!
//! Left out on purpose: the clients are plain and sequential (they are not the lesson), and
//! the runtime is shut down at the end of the lesson rather than gracefully drained; a real
//! server would handle Ctrl-C and wait for its tasks.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tcplab_core::{TcpState, sockets};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

use crate::catalog::Verdict;
use crate::lesson::Lab;
use crate::lessons::net::Own;

/// How long any single client call may block.
pub const IO_TIMEOUT: Duration = Duration::from_secs(3);

/// The line each client sends.
pub const LINE: &[u8] = b"hello, async server\n";

/// One client: connect, send a line, read the echo, close (by dropping the stream). Returns
/// the bytes echoed and the client's local address.
async fn client(addr: SocketAddr) -> Result<(usize, SocketAddr)> {
    let mut stream = timeout(IO_TIMEOUT, tokio::net::TcpStream::connect(addr))
        .await
        .context("connect timed out")?
        .context("connect")?;
    timeout(IO_TIMEOUT, stream.write_all(LINE))
        .await
        .context("send timed out")?
        .context("send")?;
    let mut echo = vec![0u8; LINE.len()];
    timeout(IO_TIMEOUT, stream.read_exact(&mut echo))
        .await
        .context("the echo did not come back in time")?
        .context("read the echo")?;
    Ok((echo.len(), stream.local_addr()?))
}

/// Run the lesson: start the server with `serve` on a tokio runtime, run the clients, grade
/// what the kernel shows.
pub fn run<F, Fut>(lab: &mut Lab, serve: F) -> Result<()>
where
    F: FnOnce(tokio::net::TcpListener) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let n = lab.connections(10, 3)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("start the tokio runtime")?;
    let std_listener = sockets::loopback_listener(false)?;
    let addr = std_listener.local_addr()?;
    lab.watch(addr.port())?;
    let listener = {
        let _guard = rt.enter();
        sockets::to_tokio_listener(std_listener)?
    };
    rt.spawn(serve(listener));

    lab.step(format!(
        "A tokio echo server listens on {addr} (one task per connection)"
    ));
    lab.show("before any client")?;

    lab.step(format!(
        "{n} clients connect, send a line, read the echo, and close first"
    ));
    let t0 = Instant::now();
    let mut own = Own::new(addr);
    let echoed = rt.block_on(async {
        let mut echoed = 0;
        for _ in 0..n {
            let (bytes, local) = client(addr).await?;
            echoed += bytes;
            own.clients.push(local);
        }
        anyhow::Ok(echoed)
    })?;
    lab.say(format!(
        "all {n} clients closed their sockets after {echoed} bytes echoed ({} ms)",
        t0.elapsed().as_millis()
    ));

    // The server's tasks keep running on the runtime's worker threads while this thread asks
    // the kernel.
    lab.step("What the kernel shows once the FINs have been answered");
    // A snapshot is not atomic: wait for a view where every connection is in one of the two
    // consistent end states (CLOSE_WAIT facing FIN_WAIT2, or gone facing TIME_WAIT).
    let seen = own.wait_until(lab, Duration::from_secs(3), |s| {
        s.count("server", TcpState::Established) == 0
            && s.count("server", TcpState::CloseWait) == s.count("client", TcpState::FinWait2)
            && s.count("client", TcpState::FinWait2) + s.count("client", TcpState::TimeWait) == n
    })?;
    lab.say(format!("kernel says: {}", seen.describe()));
    let close_wait = seen.count("server", TcpState::CloseWait);
    let fin_wait2 = seen.count("client", TcpState::FinWait2);
    let time_wait = seen.count("client", TcpState::TimeWait);
    lab.fact("connections", n);
    lab.fact("bytes_echoed", echoed);
    lab.fact("server_close_wait", close_wait);
    lab.fact("client_fin_wait2", fin_wait2);
    lab.fact("client_time_wait", time_wait);

    let (verdict, why) = if close_wait > 0 {
        lab.say(format!(
            "{close_wait} server sockets are in CLOSE_WAIT: the clients' FINs arrived, but a \
             stream still sits in the registry, so it is never dropped and close() never runs."
        ));
        lab.say(format!(
            "{fin_wait2} client sockets wait in FIN_WAIT2 for the server's FIN that never comes."
        ));
        (
            Verdict::Leak,
            format!("{close_wait} sockets stuck in CLOSE_WAIT on the server"),
        )
    } else if time_wait == n {
        lab.say(
            "no CLOSE_WAIT: each task removed its stream from the registry on EOF, the last owner \
             dropped it and close() ran. The clients (who closed first) hold the TIME_WAIT, which \
             ends by itself after 60 s.",
        );
        (
            Verdict::Clean,
            format!("all {n} connections closed on both sides; TIME_WAIT is on the clients"),
        )
    } else {
        // Neither the leak nor a clean close is in view: grade nothing rather than guess.
        anyhow::bail!(
            "the kernel showed neither CLOSE_WAIT nor {n} TIME_WAIT sockets ({}); \
             run `tcplab doctor` to check that sock_diag works here",
            seen.describe()
        );
    };
    lab.finish(verdict, seen, &why)?;
    // Dropping the runtime cancels the server's tasks and drops the registry: the process
    // would close the leaked sockets now, as it does when it exits.
    rt.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}
