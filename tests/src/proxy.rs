//! A TCP proxy on 127.0.0.1 that sits between lock clients and a real Redis and injects
//! network faults on demand: latency, silence, resets and short or sliced replies.
//!
//! The proxy knows nothing of the Redis protocol: it forwards *chunks*, whatever one `read`
//! returned. A fault applies to each chunk when the chunk is due to be written, so
//! [`Proxy::set_fault`] takes effect on open connections as well as new ones, including on
//! chunks already read but held back by [`Fault::Latency`].

use std::collections::VecDeque;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// How long the proxy waits for the upstream to accept a connection before resetting the client.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest chunk read at once.
const CHUNK: usize = 16 * 1024;
/// Chunks read but not yet written, per direction, before the proxy stops reading.
const MAX_QUEUED: usize = 64;

/// What the proxy does to the traffic it forwards.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fault {
    /// Forward every chunk as it arrives.
    #[default]
    None,
    /// Hold every chunk, in either direction, until this long after it was read; chunks keep
    /// their order.
    Latency(Duration),
    /// Keep reading from both sides and forward nothing: a server that never answers. What is
    /// read meanwhile is discarded (requests never reach Redis, replies never reach the
    /// client). A connection that discarded anything is out of step with Redis (a client would
    /// match later replies to the wrong requests), so once the fault is lifted it is reset
    /// (TCP RST) instead of forwarding anything more; new connections are served normally.
    Blackhole,
    /// Forward the client's requests; of the next chunk from the server, forward the first half
    /// (at least one byte), then reset the client connection (TCP RST).
    ResetMidReply,
    /// Forward the client's requests; of the next chunk from the server, forward the first half
    /// (at least one byte), then close the client connection cleanly (FIN).
    Truncate,
    /// Forward server-to-client traffic one byte per write, yielding between bytes; the client
    /// receives the right bytes, split at arbitrary points.
    Slice,
}

impl Fault {
    fn delay(self) -> Duration {
        match self {
            Fault::Latency(delay) => delay,
            _ => Duration::ZERO,
        }
    }
}

/// A fault-injecting proxy in front of one upstream address, on a free port of 127.0.0.1.
///
/// Dropping it stops it: the listener task is aborted, and with it every connection task, which
/// closes the listener and both sides of every connection as soon as the runtime next runs them.
/// Nothing the proxy spawned survives that.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    fault: watch::Sender<Fault>,
    resets: watch::Sender<u64>,
    silences: watch::Sender<u64>,
    open: Arc<AtomicUsize>,
    counts: Arc<Counts>,
    acceptor: JoinHandle<()>,
}

/// What the proxy's connections have done with clients' requests so far, all connections
/// together: what a test waits on instead of a sleep.
#[derive(Debug, Default)]
struct Counts {
    /// Chunks read from clients.
    requests: AtomicU64,
    /// Chunks read from clients and discarded by [`Fault::Blackhole`].
    requests_dropped: AtomicU64,
}

impl Proxy {
    /// Binds 127.0.0.1:0 and starts accepting; each client connection gets its own connection
    /// to `upstream`, and is reset if that connection fails or takes over 5 s. Must be called
    /// inside a tokio runtime, which then runs the proxy.
    pub async fn start(upstream: SocketAddr) -> io::Result<Proxy> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let (fault, faults) = watch::channel(Fault::None);
        let (resets, reset_rx) = watch::channel(0);
        let (silences, silence_rx) = watch::channel(0);
        let open = Arc::new(AtomicUsize::new(0));
        let counts = Arc::new(Counts::default());
        let acceptor = tokio::spawn(accept_loop(
            listener,
            upstream,
            faults,
            Ends {
                resets: reset_rx,
                silences: silence_rx,
            },
            Arc::clone(&open),
            Arc::clone(&counts),
        ));
        Ok(Proxy {
            addr,
            fault,
            resets,
            silences,
            open,
            counts,
            acceptor,
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `redis://127.0.0.1:PORT` for this proxy.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Sets the fault for every chunk written from now on, on open and new connections.
    pub fn set_fault(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }

    /// The fault in effect.
    pub fn fault(&self) -> Fault {
        *self.fault.borrow()
    }

    /// Resets (TCP RST) every client connection open now and closes its upstream connection.
    /// Connections accepted afterwards are unaffected.
    pub fn reset_all(&self) {
        self.resets.send_modify(|generation| *generation += 1);
    }

    /// Silences every client connection open now, for good: from then on it forwards nothing
    /// in either direction and discards what it reads, while both its sockets stay open (a
    /// peer gone without a reset, a firewall dropping packets). Connections accepted
    /// afterwards are served normally.
    pub fn silence_open(&self) {
        self.silences.send_modify(|generation| *generation += 1);
    }

    /// How many client connections are open: accepted and not yet closed by either side.
    pub fn connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// How many chunks the proxy has read from its clients so far (each what one `read`
    /// returned: a request, part of one, or several), on every connection.
    pub fn requests(&self) -> u64 {
        self.counts.requests.load(Ordering::SeqCst)
    }

    /// How many chunks read from clients [`Fault::Blackhole`] has discarded so far.
    pub fn requests_dropped(&self) -> u64 {
        self.counts.requests_dropped.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

/// Counts one open connection for as long as it lives, however its task ends.
struct Open(Arc<AtomicUsize>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What ends or silences the connections open at the time: [`Proxy::reset_all`] and
/// [`Proxy::silence_open`].
#[derive(Clone)]
struct Ends {
    resets: watch::Receiver<u64>,
    silences: watch::Receiver<u64>,
}

/// Accepts until aborted; owns the connection tasks, so aborting it aborts them all.
async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    faults: watch::Receiver<Fault>,
    mut ends: Ends,
    open: Arc<AtomicUsize>,
    counts: Arc<Counts>,
) {
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => {
                    // A connection counted as open must already see the next reset_all or
                    // silence_open, and none before it.
                    ends.resets.mark_unchanged();
                    ends.silences.mark_unchanged();
                    open.fetch_add(1, Ordering::SeqCst);
                    let guard = Open(Arc::clone(&open));
                    let conn = serve(client, upstream, faults.clone(), ends.clone(), Arc::clone(&counts));
                    tasks.spawn(async move {
                        conn.await;
                        drop(guard);
                    });
                }
                // Out of file descriptors and the like: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
}

/// How one direction, or the whole connection, ended.
#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    /// The sender closed its side; the closing was passed on.
    Eof,
    /// A read or write failed, or the proxy is gone.
    Failed,
    /// The client connection must be reset.
    Reset,
    /// The client connection must be closed cleanly.
    Close,
    /// The connection must go silent and stay open.
    Silence,
}

/// Proxies one client connection until it ends, then closes the client as the ending requires.
async fn serve(
    mut client: TcpStream,
    upstream: SocketAddr,
    faults: watch::Receiver<Fault>,
    mut ends: Ends,
    counts: Arc<Counts>,
) {
    let _ = client.set_nodelay(true);
    let mut server = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(upstream)).await
    {
        Ok(Ok(server)) => server,
        _ => return reset(client),
    };
    let _ = server.set_nodelay(true);
    let end = {
        let (client_read, client_write) = client.split();
        let (server_read, server_write) = server.split();
        let out_of_step = AtomicBool::new(false);
        let up = pipe(
            client_read,
            server_write,
            Some(&counts),
            faults.clone(),
            &out_of_step,
        );
        let down = pipe(server_read, client_write, None, faults, &out_of_step);
        tokio::pin!(up, down);
        let (mut up_done, mut down_done) = (false, false);
        loop {
            let end = tokio::select! {
                end = &mut up, if !up_done => { up_done = true; end }
                end = &mut down, if !down_done => { down_done = true; end }
                _ = ends.resets.changed() => End::Reset,
                _ = ends.silences.changed() => End::Silence,
            };
            if end != End::Eof || (up_done && down_done) {
                break end;
            }
        }
    };
    match end {
        End::Reset => reset(client),
        End::Close => {
            let _ = client.shutdown().await;
        }
        End::Silence => {
            tokio::select! {
                () = discard(&mut client) => {}
                () = discard(&mut server) => {}
                _ = ends.resets.changed() => reset(client),
            }
        }
        End::Eof | End::Failed => {}
    }
}

/// Reads and drops whatever `stream` sends until it closes or fails.
async fn discard(stream: &mut TcpStream) {
    let mut buf = vec![0; CHUNK];
    while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
}

/// Closes `client` with a TCP RST instead of a FIN.
#[expect(
    deprecated,
    reason = "tokio deprecates SO_LINGER because a non-zero linger blocks on drop; a zero one resets at once"
)]
fn reset(client: TcpStream) {
    let _ = client.set_linger(Some(Duration::ZERO));
    drop(client);
}

/// Forwards one direction until its sender closes, an I/O error, or a fault ends the connection.
/// `requests`: the client-to-server direction, whose chunks it counts. `out_of_step`, shared
/// with the other direction: set when [`Fault::Blackhole`] discards a chunk; a chunk due to be
/// forwarded after that resets the connection instead.
async fn pipe(
    mut from: ReadHalf<'_>,
    mut to: WriteHalf<'_>,
    requests: Option<&Counts>,
    mut faults: watch::Receiver<Fault>,
    out_of_step: &AtomicBool,
) -> End {
    let to_client = requests.is_none();
    let mut queue: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
    let mut buf = vec![0; CHUNK];
    let mut eof = false;
    loop {
        let fault = *faults.borrow_and_update();
        if eof && queue.is_empty() {
            let _ = to.shutdown().await;
            return End::Eof;
        }
        let due = queue.front().map(|(read_at, _)| *read_at + fault.delay());
        tokio::select! {
            read = from.read(&mut buf), if !eof && queue.len() < MAX_QUEUED => match read {
                Ok(0) => eof = true,
                Ok(n) => {
                    if let Some(counts) = requests {
                        counts.requests.fetch_add(1, Ordering::SeqCst);
                    }
                    queue.push_back((Instant::now(), buf[..n].to_vec()));
                }
                Err(_) => return End::Failed,
            },
            () = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                let (_, chunk) = queue.pop_front().expect("a chunk is due");
                if fault == Fault::Blackhole {
                    out_of_step.store(true, Ordering::SeqCst);
                    if let Some(counts) = requests {
                        counts.requests_dropped.fetch_add(1, Ordering::SeqCst);
                    }
                } else if out_of_step.load(Ordering::SeqCst) {
                    return End::Reset;
                }
                match deliver(&mut to, &chunk, fault, to_client).await {
                    Ok(None) => {}
                    Ok(Some(end)) => return end,
                    Err(_) => return End::Failed,
                }
            }
            changed = faults.changed() => if changed.is_err() {
                return End::Failed;
            },
        }
    }
}

/// Writes `chunk` as `fault` dictates; `Some` when the connection must end.
async fn deliver(
    to: &mut WriteHalf<'_>,
    chunk: &[u8],
    fault: Fault,
    to_client: bool,
) -> io::Result<Option<End>> {
    let half = &chunk[..(chunk.len() / 2).max(1)];
    match fault {
        Fault::Blackhole => {}
        Fault::ResetMidReply if to_client => {
            to.write_all(half).await?;
            return Ok(Some(End::Reset));
        }
        Fault::Truncate if to_client => {
            to.write_all(half).await?;
            return Ok(Some(End::Close));
        }
        Fault::Slice if to_client => {
            for byte in chunk {
                to.write_all(std::slice::from_ref(byte)).await?;
                tokio::task::yield_now().await;
            }
        }
        _ => to.write_all(chunk).await?,
    }
    Ok(None)
}
