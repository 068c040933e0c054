//! The fault-injecting proxy (`dlock_tests::proxy`) against a real `redis-server`: each fault
//! does what it says, seen both by a raw TCP client (exact bytes, how the stream ends) and by
//! redis-rs (what a Redis client makes of it).

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use dlock_tests::proxy::{Fault, Proxy};
use dlock_tests::{RedisServer, eventually, exists, get, raw, redis};
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Hang guard for what must happen (not a timing assertion).
const GUARD: Duration = Duration::from_secs(10);
/// How long a read must stay unanswered to count as "never answered".
const SILENCE: Duration = Duration::from_millis(300);

async fn start() -> (RedisServer, Proxy) {
    let server = redis();
    let upstream = SocketAddr::from((Ipv4Addr::LOCALHOST, server.port()));
    let proxy = Proxy::start(upstream).await.unwrap();
    (server, proxy)
}

async fn connect(proxy: &Proxy) -> TcpStream {
    TcpStream::connect(proxy.addr()).await.unwrap()
}

/// A redis-rs connection through `proxy` whose own response timeout is `response_timeout`.
async fn client(proxy: &Proxy, response_timeout: Duration) -> MultiplexedConnection {
    let config = AsyncConnectionConfig::new().set_response_timeout(Some(response_timeout));
    redis::Client::open(proxy.url())
        .unwrap()
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .unwrap()
}

/// Sends `request`, reads until `reply_len` bytes are in; returns them and how many reads it took.
async fn exchange(stream: &mut TcpStream, request: &[u8], reply_len: usize) -> (Vec<u8>, usize) {
    stream.write_all(request).await.unwrap();
    let read = async {
        let (mut reply, mut reads) = (Vec::new(), 0);
        let mut buf = [0; 8192];
        while reply.len() < reply_len {
            let n = stream.read(&mut buf).await.unwrap();
            assert_ne!(n, 0, "end of stream after {reply:?}");
            reply.extend_from_slice(&buf[..n]);
            reads += 1;
        }
        (reply, reads)
    };
    timeout(GUARD, read).await.expect("no full reply")
}

async fn assert_pong(stream: &mut TcpStream) {
    assert_eq!(exchange(stream, b"PING\r\n", 7).await.0, b"+PONG\r\n");
}

/// Reads until the stream ends; returns what was read and whether it ended cleanly (FIN) or
/// with an error.
async fn drain(stream: &mut TcpStream) -> (Vec<u8>, io::Result<()>) {
    let read = async {
        let mut bytes = Vec::new();
        let mut buf = [0; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => return (bytes, Ok(())),
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
                Err(e) => return (bytes, Err(e)),
            }
        }
    };
    timeout(GUARD, read)
        .await
        .expect("the connection neither ended nor failed")
}

async fn wait_connections(proxy: &Proxy, n: usize) {
    eventually(&format!("{n} open connections"), GUARD, || {
        let open = proxy.connections();
        async move { open == n }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_forwarding_reaches_the_real_server_and_counts_connections() {
    let (server, proxy) = start().await;
    assert_eq!(
        proxy.url(),
        format!("redis://127.0.0.1:{}", proxy.addr().port())
    );
    assert_eq!(proxy.fault(), Fault::None);
    let mut stream = connect(&proxy).await;
    assert_pong(&mut stream).await;
    wait_connections(&proxy, 1).await;

    let mut conn = client(&proxy, GUARD).await;
    let () = redis::cmd("SET")
        .arg("k")
        .arg("through the proxy")
        .query_async(&mut conn)
        .await
        .unwrap();
    wait_connections(&proxy, 2).await;
    let mut direct = raw(&server).await;
    assert_eq!(
        get(&mut direct, "k").await.as_deref(),
        Some("through the proxy")
    );

    drop(stream);
    drop(conn);
    wait_connections(&proxy, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_delays_each_direction_and_keeps_order() {
    let (_server, proxy) = start().await;
    let latency = Duration::from_millis(150);
    let mut stream = connect(&proxy).await;
    let mut conn = client(&proxy, GUARD).await;
    proxy.set_fault(Fault::Latency(latency));

    let sent = Instant::now();
    assert_pong(&mut stream).await;
    let elapsed = sent.elapsed();
    // The request and the reply are each held for the latency.
    assert!(elapsed >= 2 * latency, "PONG after {elapsed:?}");

    // Three writes in quick succession, each its own chunk: Redis must see them in order.
    for request in [&b"APPEND k a\r\n"[..], b"APPEND k b\r\n", b"GET k\r\n"] {
        stream.write_all(request).await.unwrap();
    }
    let expected = b":1\r\n:2\r\n$2\r\nab\r\n";
    assert_eq!(exchange(&mut stream, b"", expected.len()).await.0, expected);

    let sent = Instant::now();
    let value: String = redis::cmd("GET")
        .arg("k")
        .query_async(&mut conn)
        .await
        .unwrap();
    let elapsed = sent.elapsed();
    assert_eq!(value, "ab");
    assert!(elapsed >= 2 * latency, "redis-rs reply after {elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackhole_never_answers_and_none_restores_service() {
    let (server, proxy) = start().await;
    let mut stream = connect(&proxy).await;
    assert_pong(&mut stream).await;
    let mut conn = client(&proxy, SILENCE).await;
    proxy.set_fault(Fault::Blackhole);

    stream.write_all(b"SET blackholed yes\r\n").await.unwrap();
    let mut buf = [0; 64];
    let read = timeout(SILENCE, stream.read(&mut buf)).await;
    assert!(read.is_err(), "a blackholed connection answered: {read:?}");
    let err = redis::cmd("PING")
        .query_async::<String>(&mut conn)
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(proxy.connections(), 2, "the blackhole closed a connection");

    proxy.set_fault(Fault::None);
    let mut fresh = connect(&proxy).await;
    assert_pong(&mut fresh).await;
    let mut direct = raw(&server).await;
    assert!(
        !exists(&mut direct, "blackholed").await,
        "a blackholed request reached Redis"
    );
}

/// A connection that lost a request to the blackhole is out of step with Redis: a client
/// matches replies to requests in order, so forwarding its next request would hand that reply
/// to the lost one. Once the fault is lifted it is reset instead, and its next request never
/// reaches Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_the_blackhole_lost_a_request_of_is_reset_not_resumed() {
    let (server, proxy) = start().await;
    let mut stream = connect(&proxy).await;
    assert_pong(&mut stream).await;
    proxy.set_fault(Fault::Blackhole);
    stream.write_all(b"SET lost yes\r\n").await.unwrap();
    eventually("the request dropped", GUARD, || {
        let dropped = proxy.requests_dropped();
        async move { dropped >= 1 }
    })
    .await;

    proxy.set_fault(Fault::None);
    stream.write_all(b"SET after yes\r\n").await.unwrap();
    let (bytes, end) = drain(&mut stream).await;
    assert_eq!(bytes, b"", "an out-of-step connection answered");
    let err = end.expect_err("the connection ended without a reset");
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err:?}");
    let mut direct = raw(&server).await;
    assert!(!exists(&mut direct, "lost").await);
    assert!(
        !exists(&mut direct, "after").await,
        "a request on an out-of-step connection reached Redis"
    );
    let mut fresh = connect(&proxy).await;
    assert_pong(&mut fresh).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncate_forwards_half_a_reply_then_closes_cleanly() {
    let (server, proxy) = start().await;
    let mut stream = connect(&proxy).await;
    assert_pong(&mut stream).await;
    let mut conn = client(&proxy, GUARD).await;
    let value = "0123456789".repeat(10);
    let () = redis::cmd("SET")
        .arg("long")
        .arg(&value)
        .query_async(&mut conn)
        .await
        .unwrap();
    proxy.set_fault(Fault::Truncate);

    stream.write_all(b"SET k v\r\n").await.unwrap();
    let (bytes, end) = drain(&mut stream).await;
    assert_eq!(bytes, b"+O", "half of +OK\\r\\n");
    end.expect("a clean close (FIN), not a reset");
    let mut direct = raw(&server).await;
    assert_eq!(get(&mut direct, "k").await.as_deref(), Some("v"));

    let got = redis::cmd("GET")
        .arg("long")
        .query_async::<Option<String>>(&mut conn)
        .await;
    let err = got.expect_err("a truncated reply must not parse as a value");
    // redis-rs reports a frame cut short by a clean close as a parse error ("Unexpected end
    // of input"), not as a dropped connection.
    assert!(
        err.kind() == redis::ErrorKind::Parse || err.is_connection_dropped(),
        "{err:?}"
    );
    wait_connections(&proxy, 0).await;

    proxy.set_fault(Fault::None);
    let mut conn = client(&proxy, GUARD).await;
    let got: String = redis::cmd("GET")
        .arg("long")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(got, value);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_mid_reply_forwards_half_a_reply_then_resets() {
    let (server, proxy) = start().await;
    let mut stream = connect(&proxy).await;
    assert_pong(&mut stream).await;
    let mut conn = client(&proxy, GUARD).await;
    let value = "0123456789".repeat(10);
    let () = redis::cmd("SET")
        .arg("long")
        .arg(&value)
        .query_async(&mut conn)
        .await
        .unwrap();
    proxy.set_fault(Fault::ResetMidReply);

    stream.write_all(b"SET k v\r\n").await.unwrap();
    let (bytes, end) = drain(&mut stream).await;
    assert_eq!(bytes, b"+O", "half of +OK\\r\\n");
    let err = end.expect_err("a reset, not a clean close");
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err:?}");
    let mut direct = raw(&server).await;
    assert_eq!(get(&mut direct, "k").await.as_deref(), Some("v"));

    let got = redis::cmd("GET")
        .arg("long")
        .query_async::<Option<String>>(&mut conn)
        .await;
    let err = got.expect_err("a cut reply must not parse as a value");
    assert!(err.is_connection_dropped(), "{err:?}");
    wait_connections(&proxy, 0).await;

    proxy.set_fault(Fault::None);
    let mut fresh = connect(&proxy).await;
    assert_pong(&mut fresh).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slice_delivers_correct_replies_in_pieces() {
    let (server, proxy) = start().await;
    let value: String = (0..4000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let mut direct = raw(&server).await;
    let () = redis::cmd("SET")
        .arg("big")
        .arg(&value)
        .query_async(&mut direct)
        .await
        .unwrap();
    let mut stream = connect(&proxy).await;
    let mut conn = client(&proxy, GUARD).await;
    proxy.set_fault(Fault::Slice);

    let expected = format!("$4000\r\n{value}\r\n");
    let (reply, reads) = exchange(&mut stream, b"GET big\r\n", expected.len()).await;
    assert_eq!(reply, expected.as_bytes());
    assert!(reads > 1, "a sliced reply arrived in one read");

    let (got, pong): (String, String) = redis::pipe()
        .cmd("GET")
        .arg("big")
        .cmd("PING")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!((got.as_str(), pong.as_str()), (value.as_str(), "PONG"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_all_resets_every_open_connection() {
    let (_server, proxy) = start().await;
    let mut first = connect(&proxy).await;
    let mut second = connect(&proxy).await;
    assert_pong(&mut first).await;
    assert_pong(&mut second).await;
    let mut conn = client(&proxy, GUARD).await;
    wait_connections(&proxy, 3).await;

    proxy.reset_all();
    for stream in [&mut first, &mut second] {
        let (bytes, end) = drain(stream).await;
        assert!(bytes.is_empty(), "{bytes:?}");
        let err = end.expect_err("a reset, not a clean close");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err:?}");
    }
    let err = redis::cmd("PING")
        .query_async::<String>(&mut conn)
        .await
        .unwrap_err();
    assert!(err.is_connection_dropped(), "{err:?}");
    wait_connections(&proxy, 0).await;

    let mut fresh = connect(&proxy).await;
    assert_pong(&mut fresh).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_open_mutes_open_connections_for_good_and_serves_new_ones() {
    let (server, proxy) = start().await;
    let mut muted = connect(&proxy).await;
    assert_pong(&mut muted).await;
    wait_connections(&proxy, 1).await;

    proxy.silence_open();
    muted.write_all(b"SET silenced yes\r\n").await.unwrap();
    let mut buf = [0; 64];
    let read = timeout(SILENCE, muted.read(&mut buf)).await;
    assert!(read.is_err(), "a silenced connection answered: {read:?}");
    assert_eq!(proxy.connections(), 1, "silencing closed the connection");

    let mut fresh = connect(&proxy).await;
    assert_pong(&mut fresh).await;
    assert_eq!(proxy.fault(), Fault::None);
    let read = timeout(SILENCE, muted.read(&mut buf)).await;
    assert!(read.is_err(), "the silenced connection came back: {read:?}");
    let mut direct = raw(&server).await;
    assert!(
        !exists(&mut direct, "silenced").await,
        "a silenced request reached Redis"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_proxy_closes_its_connections_and_listener() {
    let (_server, proxy) = start().await;
    let mut stream = connect(&proxy).await;
    assert_pong(&mut stream).await;
    let mut conn = client(&proxy, GUARD).await;
    let addr = proxy.addr();

    drop(proxy);
    let (bytes, _end) = drain(&mut stream).await;
    assert!(bytes.is_empty(), "{bytes:?}");
    let err = redis::cmd("PING")
        .query_async::<String>(&mut conn)
        .await
        .unwrap_err();
    assert!(err.is_connection_dropped(), "{err:?}");
    let refused = TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
}
