//! Lesson 04, the fix: the same tokio echo server, whose task removes its stream from the
//! registry when the client closes or stays silent too long.
//!
//! The task waits with `tokio::select!` for either the next chunk or an idle timeout. On EOF
//! (`Ok(0)`), on an error or after the idle timeout it takes the write half out of the
//! registry; when the task ends both halves are dropped, the socket is closed and the kernel
//! sends our FIN. No socket is left in CLOSE_WAIT; the clients, who closed first, keep
//! TIME_WAIT, which ends by itself after 60 s.
//!
//! Left out on purpose: the broadcast itself (it is only the reason the registry exists), and
//! any limit on connections; lesson 03 shows the same fix with threads.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use tcplab_exercises::lab::{self, Lab};
use tcplab_exercises::lessons::async_echo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

fn main() -> ExitCode {
    lab::main(env!("CARGO_BIN_NAME"), run)
}

// ANCHOR: registry
/// Every connected client's write half, by connection id, kept to broadcast to them later.
type Registry = Arc<Mutex<HashMap<u64, OwnedWriteHalf>>>;

/// Accept forever, one task per connection.
async fn serve(listener: TcpListener) {
    let registry = Registry::default();
    let mut next_id = 0;
    while let Ok((stream, _)) = listener.accept().await {
        next_id += 1;
        tokio::spawn(handle(next_id, stream, registry.clone()));
    }
}
// ANCHOR_END: registry

// ANCHOR: handler
// LESSON: a client silent this long is dropped too (a peer can vanish without a FIN).
const IDLE: Duration = Duration::from_secs(2);

/// Serve one client: echo every chunk back until the client is done.
async fn handle(id: u64, stream: TcpStream, registry: Registry) {
    let (mut reader, writer) = stream.into_split();
    registry.lock().await.insert(id, writer);
    let mut buf = [0u8; 4096];
    loop {
        // LESSON: wait for the next chunk or for IDLE, whichever comes first.
        let n = tokio::select! {
            read = reader.read(&mut buf) => match read {
                Ok(0) | Err(_) => break, // Ok(0): the client closed (its FIN arrived)
                Ok(n) => n,
            },
            _ = tokio::time::sleep(IDLE) => break,
        };
        let mut clients = registry.lock().await;
        let Some(writer) = clients.get_mut(&id) else {
            break;
        };
        if writer.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    // LESSON: take the write half out of the registry: when the task ends both halves are
    // LESSON: dropped, the socket is closed and the kernel sends our FIN.
    registry.lock().await.remove(&id);
}
// ANCHOR_END: handler

fn run(lab: &mut Lab) -> Result<()> {
    async_echo::run(lab, serve)
}
