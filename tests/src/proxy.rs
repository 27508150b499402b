//! A TCP proxy that can make the connections it carries stop answering, the way a stuck
//! proxy or a server gone without a reset does: nothing says they are broken (they stay
//! open), but nothing comes back. New connections still go through. It can also delay what
//! it carries, as a distant server's link does.

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// Which of the open connections [`StuckProxy::stick`] makes stop answering.
#[derive(Clone, Copy, Debug)]
pub enum Which {
    /// Every open connection.
    All,
    /// Those that turned client tracking on (`CLIENT TRACKING`) and carried a request after
    /// that: the cache's tracked connection, in use.
    Tracking,
}

/// A proxy to `127.0.0.1:{target}` on a free loopback port of its own.
pub struct StuckProxy {
    port: u16,
    conns: Arc<Mutex<Vec<Arc<Carried>>>>,
}

/// A connection the proxy carries.
#[derive(Default)]
struct Carried {
    stuck: AtomicBool,
    /// It sent `CLIENT TRACKING`.
    tracking: AtomicBool,
    /// It sent a request after that.
    tracked: AtomicBool,
    /// One of its ends has closed.
    closed: AtomicBool,
}

impl StuckProxy {
    /// Starts the proxy, in the current runtime (its tasks end with it).
    pub async fn start(target: u16) -> StuckProxy {
        StuckProxy::with_latency(target, Duration::ZERO).await
    }

    /// Starts a proxy that delivers each byte `one_way` after it arrived, either way (a round
    /// trip takes twice that).
    pub async fn with_latency(target: u16, one_way: Duration) -> StuckProxy {
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
                tokio::spawn(pump(client_read, server_write, carried.clone(), true, one_way));
                tokio::spawn(pump(server_read, client_write, carried, false, one_way));
            }
        });
        StuckProxy { port, conns }
    }

    /// `redis://` URL of the proxy.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// How many open connections are `which`.
    pub fn carried(&self, which: Which) -> usize {
        self.each(which, |_| ())
    }

    /// Makes `which` of the open connections stop answering; returns how many.
    pub fn stick(&self, which: Which) -> usize {
        self.each(which, |c| c.stuck.store(true, SeqCst))
    }

    fn each(&self, which: Which, f: impl Fn(&Carried)) -> usize {
        let conns = self.conns.lock().unwrap_or_else(PoisonError::into_inner);
        let chosen = conns
            .iter()
            .filter(|c| !c.closed.load(SeqCst) && (matches!(which, Which::All) || c.tracked.load(SeqCst)));
        chosen.map(|c| f(c)).count()
    }
}

/// Forwards `from` to `to`, `one_way` later, until either end closes; once the connection is
/// stuck, stops (with both ends left open).
async fn pump(
    from: OwnedReadHalf,
    to: OwnedWriteHalf,
    carried: Arc<Carried>,
    from_client: bool,
    one_way: Duration,
) {
    let (sender, mut received) = tokio::sync::mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let delivered = carried.clone();
    let deliver = tokio::spawn(async move {
        let mut to = to;
        while let Some((at, bytes)) = received.recv().await {
            tokio::time::sleep_until(at + one_way).await;
            if to.write_all(&bytes).await.is_err() {
                break;
            }
        }
        delivered.closed.store(true, SeqCst);
    });
    read(from, sender, &carried, from_client).await;
    carried.closed.store(true, SeqCst);
    let _ = deliver.await;
}

/// Reads what `from` sends, with the time it arrived, until it closes or the connection is
/// stuck (then waits forever, with both ends left open).
async fn read(
    mut from: OwnedReadHalf,
    to: tokio::sync::mpsc::UnboundedSender<(Instant, Vec<u8>)>,
    carried: &Carried,
    from_client: bool,
) {
    const MARK: &[u8] = b"TRACKING";
    let mut buf = vec![0; 64 * 1024];
    // The end of the previous read, in case the mark straddles two.
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if from_client {
            if carried.tracking.load(SeqCst) {
                carried.tracked.store(true, SeqCst);
            }
            tail.extend_from_slice(&buf[..n]);
            if tail.windows(MARK.len()).any(|w| w == MARK) {
                carried.tracking.store(true, SeqCst);
            }
            tail.drain(..tail.len().saturating_sub(MARK.len() - 1));
        }
        if carried.stuck.load(SeqCst) {
            std::future::pending::<()>().await;
        }
        if to.send((Instant::now(), buf[..n].to_vec())).is_err() {
            break;
        }
    }
}
