//! Lesson 04, the leak: a tokio echo server whose connection registry keeps every stream.
//!
//! Each connection gets a task. The task splits the stream, reads from the read half and puts
//! the write half into a shared registry, "to broadcast to every client later". When a client
//! closes, read() returns `Ok(0)` and the task ends, but the write half is still in the
//! registry: the socket has an owner, so it is never dropped and never closed. The kernel keeps
//! it in CLOSE_WAIT, and the client's side waits in FIN_WAIT2, until the process exits.
//!
//! Left out on purpose: the broadcast itself (it is only the reason the registry exists), and
//! any limit on connections; lesson 03 shows the same leak with threads.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;

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
/// Serve one client: echo every chunk back until the client is done.
async fn handle(id: u64, stream: TcpStream, registry: Registry) {
    let (mut reader, writer) = stream.into_split();
    registry.lock().await.insert(id, writer);
    let mut buf = [0u8; 4096];
    loop {
        // LESSON: wait for the next chunk, however long the client stays silent.
        let n = match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break, // Ok(0): the client closed (its FIN arrived)
            Ok(n) => n,
        };
        let mut clients = registry.lock().await;
        let Some(writer) = clients.get_mut(&id) else {
            break;
        };
        if writer.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    // LESSON: the task ends and drops its read half, but the write half stays in the
    // LESSON: registry: the socket still has an owner, so it is never closed (CLOSE_WAIT).
}
// ANCHOR_END: handler

fn run(lab: &mut Lab) -> Result<()> {
    async_echo::run(lab, serve)
}
