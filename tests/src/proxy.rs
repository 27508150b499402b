//! A TCP proxy that can make the connections it carries stop answering, the way a stuck
//! proxy or a server gone without a reset does: nothing says they are broken (the proxy's
//! end still takes what the client sends), but nothing comes back. New connections still
//! go through.

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

/// Which of the connections open now [`StuckProxy::stick`] makes stop answering.
#[derive(Clone, Copy, Debug)]
pub enum Which {
    All,
    /// Those that turned client tracking on (`CLIENT TRACKING`): the cache's tracked one.
    Tracking,
}

/// A proxy to `127.0.0.1:{port}` on a free loopback port of its own, in the current runtime.
pub struct StuckProxy {
    port: u16,
    conns: Arc<Mutex<Vec<Arc<Carried>>>>,
}

/// A connection the proxy carries.
#[derive(Default)]
struct Carried {
    stuck: AtomicBool,
    tracking: AtomicBool,
}

impl StuckProxy {
    pub async fn start(target: u16) -> StuckProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let conns: Arc<Mutex<Vec<Arc<Carried>>>> = Arc::default();
        let accepted = conns.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else { continue };
                let carried = Arc::new(Carried::default());
                accepted.lock().unwrap_or_else(PoisonError::into_inner).push(carried.clone());
                let ((client_read, client_write), (server_read, server_write)) =
                    (client.into_split(), server.into_split());
                tokio::spawn(pump(client_read, server_write, carried.clone(), true));
                tokio::spawn(pump(server_read, client_write, carried, false));
            }
        });
        StuckProxy { port, conns }
    }

    /// `redis://` URL of the proxy.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// How many of the connections open now are `which`.
    pub fn carried(&self, which: Which) -> usize {
        self.each(which, |_| ())
    }

    /// Makes `which` of the connections open now stop answering; returns how many.
    pub fn stick(&self, which: Which) -> usize {
        self.each(which, |c| c.stuck.store(true, SeqCst))
    }

    fn each(&self, which: Which, f: impl Fn(&Carried)) -> usize {
        let conns = self.conns.lock().unwrap_or_else(PoisonError::into_inner);
        let chosen = conns.iter().filter(|c| matches!(which, Which::All) || c.tracking.load(SeqCst));
        chosen.map(|c| f(c)).count()
    }
}

/// Forwards `from` to `to` until either end closes; once the connection is stuck, takes what
/// comes and holds it.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, carried: Arc<Carried>, from_client: bool) {
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if from_client && buf[..n].windows(8).any(|w| w == b"TRACKING") {
            carried.tracking.store(true, SeqCst);
        }
        if carried.stuck.load(SeqCst) {
            // Keeps both ends open, answering nothing.
            std::future::pending::<()>().await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
