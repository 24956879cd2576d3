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
use tcplab_core::sockets;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

use crate::lab::Lab;
use crate::lessons::echo;

/// How long any single client call may block.
pub const IO_TIMEOUT: Duration = Duration::from_secs(3);

/// The line each client sends.
pub const LINE: &[u8] = b"hello, async server\n";

/// One client: connect, send a line, read the echo, close (by dropping the stream). Returns
/// the bytes echoed.
async fn client(addr: SocketAddr) -> Result<usize> {
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
    Ok(echo.len())
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
    lab.only_address(addr);
    let listener = {
        let _guard = rt.enter();
        std_listener.set_nonblocking(true)?;
        tokio::net::TcpListener::from_std(std_listener)?
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
    let echoed = rt.block_on(async {
        let mut echoed = 0;
        for _ in 0..n {
            echoed += client(addr).await?;
        }
        anyhow::Ok(echoed)
    })?;
    lab.say(format!(
        "all {n} clients closed their sockets after {echoed} bytes echoed ({} ms)",
        t0.elapsed().as_millis()
    ));

    // The server's tasks keep running on the runtime's worker threads while this thread asks
    // the kernel.
    let (verdict, why, seen) = echo::grade(
        lab,
        n,
        echoed,
        "a stream still sits in the registry, so it is never dropped and close() never runs.",
        "each task removed its stream from the registry on EOF, the last owner dropped it and \
         close() ran",
    )?;
    lab.finish(verdict, seen, &why)?;
    // Dropping the runtime cancels the server's tasks and drops the registry: the process
    // would close the leaked sockets now, as it does when it exits.
    rt.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}
