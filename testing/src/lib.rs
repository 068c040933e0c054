//! A throwaway `redis-server` on a free loopback port, for dlock's demo, benchmarks and tests,
//! and for your own (as redis-rs has `redis-test`): [`RedisServer::start`]. [`Origin`] is a
//! Redis a tool runs against: the one given, or a throwaway one.
//!
//! The server runs in a temporary directory (its log file and any persistence files live
//! there), listens on 127.0.0.1 only, and is killed when the [`RedisServer`] is dropped.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to start answering `PING`.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// A `redis-server` process owned by this value.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    args: Vec<String>,
    /// The `--requirepass` argument, if one was given.
    password: Option<String>,
}

/// A Redis a tool runs against, and how it came about: one given by URL, or a throwaway
/// server started here, killed when this value drops.
#[derive(Debug)]
pub struct Origin {
    /// The URL to connect to.
    pub url: String,
    /// For reports: `given: URL` (without its password) or `started by WHO: redis-server on
    /// 127.0.0.1:PORT (pid N), stopped at exit`.
    pub description: String,
    _server: Option<RedisServer>,
}

impl Origin {
    /// The Redis at `url`, shown in reports as `shown_as` (the URL without its password).
    pub fn given(url: &str, shown_as: &str) -> Origin {
        Origin {
            url: url.to_owned(),
            description: format!("given: {shown_as}"),
            _server: None,
        }
    }

    /// The Redis at `given` (shown as `redact` makes it), or else a [`RedisServer`] started
    /// for `who` (blocks until it answers).
    pub fn get(
        given: Option<&str>,
        redact: impl FnOnce(&str) -> String,
        who: &str,
    ) -> io::Result<Origin> {
        match given {
            Some(url) => Ok(Origin::given(url, &redact(url))),
            None => Origin::start(who),
        }
    }

    /// [`Origin::get`] on tokio's blocking pool, for async callers; the error is a message for
    /// the user.
    pub async fn obtain(
        given: Option<&str>,
        redact: fn(&str) -> String,
        who: &str,
    ) -> Result<Origin, String> {
        let (given, who) = (given.map(str::to_owned), who.to_owned());
        tokio::task::spawn_blocking(move || Origin::get(given.as_deref(), redact, &who))
            .await
            .map_err(|e| format!("starting redis-server: {e}"))?
            .map_err(|e| format!("cannot start redis-server: {e}"))
    }

    /// A [`RedisServer`] started for `who` (blocks until it answers).
    pub fn start(who: &str) -> io::Result<Origin> {
        let server = RedisServer::start()?;
        Ok(Origin {
            url: server.url(),
            description: format!(
                "started by {who}: redis-server on 127.0.0.1:{} (pid {}), stopped at exit",
                server.port(),
                server.pid().unwrap_or(0)
            ),
            _server: Some(server),
        })
    }
}

/// The `redis-server` binary: `$DLOCK_REDIS_SERVER` if set, else `redis-server` on `PATH`.
pub fn redis_server_binary() -> PathBuf {
    std::env::var_os("DLOCK_REDIS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("redis-server"))
}

impl RedisServer {
    /// Starts a server with no persistence on a free port.
    pub fn start() -> io::Result<RedisServer> {
        Self::start_with(&[])
    }

    /// Starts a server with extra `redis-server` arguments (for example
    /// `["--appendonly", "yes", "--appendfsync", "always"]`). Retries on a new port if the
    /// chosen one was taken in between. With `["--requirepass", PASSWORD]` the server needs
    /// that password, and [`url`](Self::url) carries it.
    pub fn start_with(extra_args: &[&str]) -> io::Result<RedisServer> {
        let dir = tempfile::Builder::new().prefix("dlock-redis-").tempdir()?;
        let password = extra_args
            .iter()
            .position(|arg| *arg == "--requirepass")
            .and_then(|i| extra_args.get(i + 1))
            .map(|password| password.to_string());
        let mut server = RedisServer {
            child: None,
            port: 0,
            dir,
            args: extra_args.iter().map(|s| s.to_string()).collect(),
            password,
        };
        let mut last_error = None;
        for _ in 0..5 {
            server.port = free_port()?;
            match server.spawn() {
                Ok(()) => return Ok(server),
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => last_error = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("no free port")))
    }

    fn spawn(&mut self) -> io::Result<()> {
        let binary = redis_server_binary();
        let log = self.log_path();
        let mut child = Command::new(&binary)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&log)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                let hint = if e.kind() == io::ErrorKind::NotFound {
                    " (install it: apt-get install -y redis-server, or set DLOCK_REDIS_SERVER)"
                } else {
                    ""
                };
                io::Error::new(
                    e.kind(),
                    format!("cannot run {}: {e}{hint}", binary.display()),
                )
            })?;
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait()? {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                let kind = if log.contains("Address already in use") {
                    io::ErrorKind::AddrInUse
                } else {
                    io::ErrorKind::Other
                };
                return Err(io::Error::new(
                    kind,
                    format!("redis-server exited with {status} during start-up; log:\n{log}"),
                ));
            }
            // Ready when the server on the port is this process (another test's server may
            // have taken the port in between, and then this one is about to exit) and it has
            // loaded its dataset (after a restart with persistence it answers INFO, but
            // nothing else, while it loads).
            if answering_pid(self.port, self.password.as_deref()) == Some(child.id()) {
                self.child = Some(child);
                return Ok(());
            }
            if started.elapsed() > STARTUP_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("redis-server did not answer PING within {STARTUP_TIMEOUT:?}"),
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// `redis://127.0.0.1:PORT`, or `redis://:PASSWORD@127.0.0.1:PORT` (the password
    /// percent-encoded) for a server started with `--requirepass`.
    pub fn url(&self) -> String {
        match &self.password {
            None => format!("redis://127.0.0.1:{}", self.port),
            Some(password) => format!(
                "redis://:{}@127.0.0.1:{}",
                percent_encoded(password),
                self.port
            ),
        }
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id while the server runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The server's working directory (log file, persistence files).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Kills the server (SIGKILL) and waits for it. Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, with the same directory and arguments (so
    /// persistence files, if enabled, are read back). Stops it first if it is running.
    pub fn restart(&mut self) -> io::Result<()> {
        self.stop();
        self.spawn()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port that was free on 127.0.0.1 a moment ago (another process may still take it first),
/// and that no server of this process was started on before: a client still pointed at a
/// stopped server (a test's runtime, reconnecting) never reaches a later server of another
/// test in its place.
pub fn free_port() -> io::Result<u16> {
    static USED: std::sync::Mutex<Option<std::collections::HashSet<u16>>> =
        std::sync::Mutex::new(None);
    let mut used = USED.lock().unwrap_or_else(|e| e.into_inner());
    let used = used.get_or_insert_with(Default::default);
    // Listeners on ports already used stay open meanwhile, so that the next bind gets another.
    let mut held = Vec::new();
    for _ in 0..1000 {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        if used.insert(port) {
            return Ok(port);
        }
        held.push(listener);
    }
    Err(io::Error::other("no port that no earlier server used"))
}

/// `text` with every byte but ASCII letters, digits and `-._~` percent-encoded.
fn percent_encoded(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The process id of the Redis answering on `port` (from `INFO`, after `AUTH password` when
/// one is given), if one answers and is not loading its dataset.
fn answering_pid(port: u16, password: Option<&str>) -> Option<u32> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .ok()?;
    if let Some(password) = password {
        let auth = format!("*2\r\n$4\r\nAUTH\r\n${}\r\n{password}\r\n", password.len());
        stream.write_all(auth.as_bytes()).ok()?;
        let mut reply = [0u8; 5];
        stream.read_exact(&mut reply).ok()?;
        if &reply != b"+OK\r\n" {
            return None;
        }
    }
    stream.write_all(b"INFO\r\n").ok()?;
    let mut reply = Vec::new();
    let mut chunk = [0u8; 4096];
    // A bulk string: `$<len>\r\n<len bytes>\r\n`; read until the whole of it is in.
    loop {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        reply.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&reply);
        let Some((header, body)) = text.split_once("\r\n") else {
            continue;
        };
        let len: usize = header.strip_prefix('$')?.parse().ok()?;
        if body.len() >= len {
            if !body.lines().any(|line| line.trim() == "loading:0") {
                return None;
            }
            return body
                .lines()
                .find_map(|line| line.strip_prefix("process_id:"))
                .and_then(|pid| pid.trim().parse().ok());
        }
    }
}
