//! Redis Sentinel on loopback for the tests: a primary, a replica, and three Sentinels
//! (`redis-server CONFIG --sentinel`) watching the service `mymaster` with a quorum of 2,
//! killed when dropped.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dlock_testing::redis_server_binary;

use crate::{RedisServer, eventually, raw};

/// The service name the Sentinels watch.
pub const SERVICE: &str = "mymaster";
/// How long the set-up and a failover may take (a hang guard).
const SETTLING: Duration = Duration::from_secs(60);

/// One Sentinel process.
struct Sentinel {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A primary, its replica and three Sentinels.
pub struct Sentinels {
    /// The primary at start-up.
    pub primary: RedisServer,
    /// Its replica at start-up.
    pub replica: RedisServer,
    sentinels: Vec<Sentinel>,
}

/// Sends one inline command and reads what comes back within a short time.
fn ask(port: u16, command: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .ok()?;
    stream.write_all(format!("{command}\r\n").as_bytes()).ok()?;
    let mut reply = vec![0u8; 64 * 1024];
    let n = stream.read(&mut reply).ok()?;
    Some(String::from_utf8_lossy(&reply[..n]).into_owned())
}

impl Sentinels {
    /// Starts the primary, the replica (in sync before the Sentinels start, so that they
    /// see it at once), and three Sentinels, and waits until every Sentinel knows the replica
    /// and the two other Sentinels.
    pub async fn start() -> io::Result<Sentinels> {
        let primary = RedisServer::start()?;
        let replica =
            RedisServer::start_with(&["--replicaof", "127.0.0.1", &primary.port().to_string()])?;
        eventually("the replica syncing", SETTLING, || async {
            ask(primary.port(), "INFO replication")
                .unwrap_or_default()
                .contains("connected_slaves:1")
                && ask(replica.port(), "INFO replication")
                    .unwrap_or_default()
                    .contains("master_link_status:up")
        })
        .await;
        let mut sentinels = Vec::new();
        for _ in 0..3 {
            sentinels.push(Self::sentinel(primary.port())?);
        }
        let set = Sentinels {
            primary,
            replica,
            sentinels,
        };
        eventually("the Sentinels finding each other", SETTLING, || async {
            set.sentinels.iter().all(|s| {
                let master = ask(s.port, &format!("SENTINEL MASTER {SERVICE}")).unwrap_or_default();
                master.contains("num-slaves\r\n$1\r\n1")
                    && master.contains("num-other-sentinels\r\n$1\r\n2")
            })
        })
        .await;
        Ok(set)
    }

    fn sentinel(primary_port: u16) -> io::Result<Sentinel> {
        let dir = tempfile::Builder::new()
            .prefix("dlock-sentinel-")
            .tempdir()?;
        let port = dlock_testing::free_port()?;
        let config = dir.path().join("sentinel.conf");
        std::fs::write(
            &config,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {dir}\nlogfile {dir}/sentinel.log\n\
                 sentinel monitor {SERVICE} 127.0.0.1 {primary_port} 2\n\
                 sentinel down-after-milliseconds {SERVICE} 1000\n\
                 sentinel failover-timeout {SERVICE} 10000\n\
                 sentinel parallel-syncs {SERVICE} 1\n",
                dir = dir.path().display()
            ),
        )?;
        let child = Command::new(redis_server_binary())
            .arg(&config)
            .arg("--sentinel")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let sentinel = Sentinel {
            child,
            port,
            _dir: dir,
        };
        let start = Instant::now();
        while ask(port, "PING").is_none_or(|r| !r.starts_with("+PONG")) {
            if start.elapsed() > SETTLING {
                return Err(io::Error::other("a Sentinel did not answer PING"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(sentinel)
    }

    /// `redis+sentinel://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3/mymaster`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        format!("redis+sentinel://{}/{SERVICE}", hosts.join(","))
    }

    /// The port of the primary the Sentinels name now.
    pub fn primary_port(&self) -> Option<u16> {
        let reply = ask(
            self.sentinels[0].port,
            &format!("SENTINEL GET-MASTER-ADDR-BY-NAME {SERVICE}"),
        )?;
        reply.lines().nth(4)?.trim().parse().ok()
    }

    /// Waits until the Sentinels name the replica as the primary and it says so itself.
    pub async fn until_failed_over(&self) {
        eventually("the Sentinels failing over", SETTLING, || async {
            let role = redis::cmd("ROLE")
                .query_async::<redis::Value>(&mut raw(&self.replica).await)
                .await;
            let promoted = matches!(&role, Ok(redis::Value::Array(items))
                if matches!(items.first(), Some(redis::Value::BulkString(b)) if b == b"master"));
            promoted && self.primary_port() == Some(self.replica.port())
        })
        .await;
    }
}
