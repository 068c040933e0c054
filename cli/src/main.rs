//! `dlock`: a distributed lock on Redis from the shell, with the lock logic in a sandboxed
//! WebAssembly component. See `dlock --help`.
//!
//! This file holds the command line (arguments, exit codes, dispatch); each command lives in
//! the module named after it.

mod demo;
#[cfg(test)]
mod docs;
mod doctor;
mod duration;
mod exit;
mod job;
mod keys;
mod origin;
mod output;
mod run;
mod stats;
mod status;
mod telemetry;

/// mimalloc instead of glibc's malloc: the lock path allocates small buffers on every call
/// from several tokio workers at once, and glibc's arena locks showed up in profiles.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use dlock_host::{
    Error, LockComponent, LockOptions, Policy, Runtime, RuntimeBuilder, Topology, contract,
};
use serde_json::json;

use exit::{
    EXIT_BUSY, EXIT_EXPIRED, EXIT_INTERNAL, EXIT_OK, EXIT_REDIS, EXIT_RELEASE_INCOMPLETE,
    EXIT_RUN_CONFLICT, EXIT_RUN_LOST, EXIT_USAGE,
};

/// A distributed lock on Redis, with its logic in a sandboxed WebAssembly component.
///
/// A lock is a Redis key holding its owner's token with a TTL (the same convention as
/// redis-py's Lock, redsync and node-redlock, which dlock interoperates with).
#[derive(Debug, Parser)]
#[command(name = "dlock", version, after_help = exit::summary(), max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct Global {
    /// Redis URL: redis://[user:password@]host:port[/db], rediss:// for TLS,
    /// unix:///path/to/socket[?pass=PASSWORD], or
    /// redis+sentinel://[:password@]host:port[,host:port...]/SERVICE[/db] (the primary the
    /// Sentinels name for SERVICE, followed across failovers). Given more than once (or as a
    /// comma list in DLOCK_REDIS_URL): independent
    /// primaries in quorum mode (Redlock: a lock needs a majority of them; no --fence); with
    /// --cluster: seed nodes of a Redis Cluster. In a list a comma starts a new URL only
    /// where a scheme follows, so a Sentinel URL's hosts stay together. Passwords are never
    /// printed (messages show credentials and query parameters other than db and protocol as
    /// ***). [default: redis://127.0.0.1:6379]
    #[arg(
        long,
        global = true,
        env = "DLOCK_REDIS_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    redis: Vec<String>,

    /// The --redis URLs are seed nodes of a Redis Cluster: each key goes to its hash slot's
    /// primary (a key and its fence counter share one slot).
    #[arg(long, global = true, env = "DLOCK_REDIS_CLUSTER")]
    cluster: bool,

    /// For rediss://: trust only this certificate authority (PEM file) instead of the
    /// system's roots.
    #[arg(long, global = true, env = "DLOCK_TLS_CA", value_name = "FILE")]
    tls_ca: Option<std::path::PathBuf>,

    /// For rediss:// servers that authenticate clients: this certificate (PEM file; with
    /// --tls-key).
    #[arg(
        long,
        global = true,
        env = "DLOCK_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    tls_cert: Option<std::path::PathBuf>,

    /// The private key of --tls-cert (PEM file).
    #[arg(
        long,
        global = true,
        env = "DLOCK_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    tls_key: Option<std::path::PathBuf>,

    /// Prefix for every key: the Redis key is PREFIX followed by KEY. [default: none]
    #[arg(
        long,
        global = true,
        value_name = "PREFIX",
        default_value = "",
        hide_default_value = true,
        value_parser = prefix
    )]
    prefix: String,

    /// Machine-readable JSON on stdout.
    #[arg(long, global = true)]
    json: bool,

    /// Log what the lock does to stderr: -v each lock operation, -vv every Redis call, -vvv
    /// everything. RUST_LOG (e.g. dlock_host=debug) overrides it.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    /// At exit, print a summary of the lock's metrics (attempts, contention, wake-ups,
    /// extends, Redis call times) to stderr (JSON with --json).
    #[arg(long, global = true)]
    metrics: bool,
}

const DEFAULT_REDIS: &str = "redis://127.0.0.1:6379";

/// A lock key as the component accepts it (checked here too, so that bad input is exit 2
/// A lock key as the component accepts it (checked here too, so that bad input is exit 2
/// even when Redis is unreachable).
fn key(text: &str) -> Result<String, String> {
    contract::check_key(text).map(|()| text.to_owned())
}

/// A token as `release` and `extend` accept it.
fn token(text: &str) -> Result<String, String> {
    contract::check_token(text).map(|()| text.to_owned())
}

/// A key prefix.
fn prefix(text: &str) -> Result<String, String> {
    contract::check_prefix(text).map(|()| text.to_owned())
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Take a lock: print its token (exit 0), or exit 1 if someone else holds it.
    ///
    /// One attempt, or with --wait retries (exponential backoff, at most 1 s apart) until the
    /// lock is free or the wait is over. Keep the token: `release` and `extend` need it.
    #[command(after_help = exit::of("acquire"))]
    Acquire {
        /// The lock's key.
        #[arg(value_parser = key)]
        key: String,
        /// How long the lock lives unless extended (250ms, 30s, 5m, 1h; a bare number is ms).
        #[arg(long, value_parser = duration::parse)]
        ttl: Duration,
        /// Wait up to this long for a busy lock. [default: one attempt]
        #[arg(long, value_parser = duration::parse)]
        wait: Option<Duration>,
        /// Also take a fencing token (strictly increasing per key); printed after the token.
        #[arg(long)]
        fence: bool,
    },
    /// Release a lock if TOKEN still owns it, and say what was found: released, expired
    /// (exit 5) or taken over (exit 1); nothing changed in the last two cases. Waiters on the
    /// lock are woken. Safe to retry after an unknown outcome (exit 3) or, in quorum mode, a
    /// release fewer than a majority of the primaries confirmed (exit 6).
    #[command(after_help = exit::of("release"))]
    Release {
        /// The lock's key.
        #[arg(value_parser = key)]
        key: String,
        /// The token `acquire` printed.
        #[arg(value_parser = token)]
        token: String,
    },
    /// Set a lock's TTL anew if TOKEN still owns it: exit 5 if it expired, 1 if it was taken
    /// over (nothing changed in either case).
    #[command(after_help = exit::of("extend"))]
    Extend {
        /// The lock's key.
        #[arg(value_parser = key)]
        key: String,
        /// The token `acquire` printed.
        #[arg(value_parser = token)]
        token: String,
        /// The new TTL, counted from now.
        #[arg(long, value_parser = duration::parse)]
        ttl: Duration,
    },
    /// Show whether a key is locked, and for how long (`locked 1234ms` or `unlocked`); without
    /// KEY, or with --watch, the locks under --prefix: holder token (shortened), time left,
    /// fence.
    ///
    /// --watch refreshes the view every --interval (in place on a terminal) until Ctrl-C or
    /// --count refreshes; with --json each refresh is one JSON line. The list reads Redis
    /// directly (SCAN, GET, PTTL: read-only), on every primary of a Cluster; in quorum mode it
    /// shows the locks a majority of the primaries hold with the same token, and needs a
    /// majority answering. Companion keys ({KEY}:fence, :signal, :waiters) are not shown as
    /// locks.
    #[command(after_help = exit::of("status"))]
    Status(status::StatusArgs),
    /// Run CMD while holding the lock (flock for a fleet).
    ///
    /// Takes the lock (or exits 75 without running CMD), runs CMD with DLOCK_KEY and
    /// DLOCK_TOKEN (and DLOCK_FENCE with --fence) in its environment, extends the lock every
    /// TTL/3 while CMD runs, and releases it when CMD ends, however it ends, once every process
    /// CMD started has ended too. CMD leads a process group of its own (the terminal's
    /// foreground while dlock's group has it, so Ctrl-C reaches CMD directly), and on Linux
    /// dlock is a child subreaper: a process that leaves CMD's group is still dlock's
    /// descendant. SIGTERM, SIGINT, SIGHUP and SIGQUIT sent to dlock are forwarded to CMD's
    /// group. When CMD exits, what it left running gets SIGTERM, then SIGKILL after
    /// --kill-after. A signal while the lock is being taken ends dlock (128+N) without running
    /// CMD.
    ///
    /// CMD runs only while the lease is valid. When the lock is lost (an extend finds the key
    /// expired or taken over), cannot be extended in time (Redis failing or slow), or
    /// --max-hold is reached, CMD's group and every other descendant of dlock get SIGTERM,
    /// then SIGKILL after --kill-after or shortly before the lease ends, whichever comes first;
    /// once they are gone the lock is released and dlock exits 76. Otherwise dlock exits with
    /// CMD's status (128+N if signal N ended it).
    ///
    /// Crontab example:  */5 * * * * dlock run nightly-report --ttl 1m -- /usr/local/bin/report
    #[command(after_help = exit::of("run"))]
    Run(run::RunSpec),
    /// Check the Redis server(s) for settings that weaken the lock's guarantees.
    ///
    /// Reads (CONFIG GET, INFO replication; nothing is written) each server of --redis (every
    /// primary of a Cluster, every member of a quorum) and names each setting that lets a lock
    /// be lost while its holder still runs: a maxmemory-policy other than noeviction (locks,
    /// and with allkeys-* fence counters, can be evicted), no append-only file or appendfsync
    /// other than always (a restart loses recent locks), replicas without
    /// min-replicas-to-write (a failover can promote a replica that never saw a lock). A
    /// setting the user may not read (ACL without +config|get or +info) is named too.
    #[command(after_help = exit::of("doctor"))]
    Doctor,
    /// Show dlock at work: workers contend for a few locks, then a checked summary.
    ///
    /// Starts its own redis-server on a free loopback port unless --redis (or
    /// DLOCK_REDIS_URL) is given. Each worker is its own component instance; every
    /// acquisition is fenced, and a counter per key is incremented by read-then-write under
    /// the lock. Exits 1 if a check fails (fences not strictly increasing, a lost update).
    #[command(after_help = exit::of("demo"))]
    Demo(demo::DemoArgs),
    /// Compose a plugin with the lock component: its dlock:lock/lock import is satisfied by the
    /// bundled component, so OUT carries the lock logic and imports dlock:lock/redis (and WASI
    /// clocks, poll and random) instead; a host that provides those runs it (dlock-host's
    /// `redis::add_to_linker`). Does not contact Redis.
    #[command(after_help = exit::of("compose"))]
    Compose {
        /// The plugin component (it imports dlock:lock/lock: the lock-user world).
        plugin: std::path::PathBuf,
        /// Where to write the composed component.
        #[arg(short, long, value_name = "OUT")]
        output: std::path::PathBuf,
    },
}

/// A failed command: its exit code and the one-line message for stderr.
#[derive(Debug)]
pub struct Failure {
    /// The process exit code.
    pub code: u8,
    /// What went wrong, in one line.
    pub message: String,
}

impl Failure {
    fn new(code: u8, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
        }
    }

    /// Maps a library error to the CLI's exit codes; `url` names the Redis in messages.
    fn from_lock(e: Error, url: &str) -> Self {
        let code = match &e {
            Error::NotAcquired | Error::NotHeld | Error::NotALock | Error::TakenOver => EXIT_BUSY,
            Error::Expired => EXIT_EXPIRED,
            Error::ReleaseIncomplete(_) => EXIT_RELEASE_INCOMPLETE,
            Error::InvalidArgument(_) => EXIT_USAGE,
            Error::RedisUnavailable(_)
            | Error::RedisTimeout
            | Error::GrantedTooLate
            | Error::RedisRejected(_)
            | Error::Denied(_)
            | Error::Connect { .. } => EXIT_REDIS,
            _ => EXIT_INTERNAL,
        };
        let message = match &e {
            Error::RedisUnavailable(_) | Error::RedisTimeout | Error::GrantedTooLate => {
                format!("Redis at {url}: {e} (a retry may help)")
            }
            Error::RedisRejected(_) => format!("Redis at {url}: {e} (a retry will not help)"),
            Error::ReleaseIncomplete(_) => {
                format!("{e}; the token may still be held until its TTL (a retry may help)")
            }
            _ => e.to_string(),
        };
        Failure::new(code, message)
    }
}

type CliResult<T> = Result<T, Failure>;

/// The bundled component, its compiled code cached on disk (see [`cache_dir`]) so that a
/// command starts in milliseconds.
fn component() -> Result<LockComponent, Error> {
    match cache_dir() {
        Some(dir) => LockComponent::bundled_cached(&dir),
        None => LockComponent::bundled(),
    }
}

/// Where compiled components are cached: `$DLOCK_CACHE_DIR` (empty or `off` turns caching
/// off), else `$XDG_CACHE_HOME/dlock`, else `$HOME/.cache/dlock`.
fn cache_dir() -> Option<std::path::PathBuf> {
    if let Some(dir) = std::env::var_os("DLOCK_CACHE_DIR") {
        return (!dir.is_empty() && dir != "off").then(|| dir.into());
    }
    if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Some(std::path::PathBuf::from(xdg).join("dlock"));
    }
    std::env::var_os("HOME").map(|home| std::path::PathBuf::from(home).join(".cache/dlock"))
}

/// Everything a command needs to reach the lock.
struct Ctx {
    runtime: Runtime,
    json: bool,
    prefix: String,
}

impl Global {
    /// Where the locks live: one Redis, a Redis Cluster (--cluster), or a quorum (more than
    /// one --redis).
    fn topology(&self) -> CliResult<Topology> {
        let mut urls: Vec<String> = self
            .redis
            .iter()
            .flat_map(|list| Topology::split_urls(list))
            .collect();
        if urls.is_empty() {
            urls.push(DEFAULT_REDIS.to_owned());
        }
        if self.cluster {
            return Ok(Topology::cluster(urls));
        }
        match <[String; 1]>::try_from(urls) {
            Ok([url]) => Ok(Topology::Single(url)),
            Err(urls) => Ok(Topology::quorum(urls)),
        }
    }

    /// The TLS files, read.
    fn tls(&self, builder: RuntimeBuilder) -> CliResult<RuntimeBuilder> {
        let read = |path: &std::path::Path| {
            std::fs::read(path).map_err(|e| {
                Failure::new(EXIT_USAGE, format!("cannot read {}: {e}", path.display()))
            })
        };
        let mut builder = builder;
        if let Some(ca) = &self.tls_ca {
            builder = builder.with_tls_root_ca(read(ca)?);
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            builder = builder.with_tls_client_cert(read(cert)?, read(key)?);
        }
        Ok(builder)
    }
}

impl Ctx {
    async fn connect(global: &Global) -> CliResult<Ctx> {
        let topology = global.topology()?;
        let shown = topology.describe();
        // The user types the token, so locks of other clients of the convention (redis-py,
        // redsync) can be released and extended too.
        let builder = Runtime::builder(topology)
            .with_component(component().map_err(|e| Failure::from_lock(e, &shown))?)
            .with_policy(Policy::default().with_foreign_tokens(true));
        let runtime = global
            .tls(builder)?
            .build()
            .await
            .map_err(|e| Failure::from_lock(e, &shown))?;
        Ok(Ctx {
            runtime,
            json: global.json,
            prefix: global.prefix.clone(),
        })
    }

    async fn client(&self, fencing: bool) -> CliResult<dlock_host::Client> {
        let options = LockOptions::default()
            .with_key_prefix(self.prefix.clone())
            .with_fencing(fencing);
        self.runtime.client(options).await.map_err(|e| self.fail(e))
    }

    fn fail(&self, e: Error) -> Failure {
        Failure::from_lock(e, self.runtime.redis_url())
    }

    /// A failure to take `key`, said in terms of the key where the error is about it.
    fn fail_to_acquire(&self, key: &str, e: Error) -> Failure {
        match e {
            Error::NotALock => Failure::new(
                EXIT_BUSY,
                format!("{key} holds a non-lock value (a hash, a list, ...); nothing was changed"),
            ),
            Error::GrantedTooLate => Failure::new(
                EXIT_REDIS,
                format!(
                    "{key}: Redis granted the lock only after its TTL had run out (too slow for \
                     a TTL this short), so it was given back; try a longer --ttl"
                ),
            ),
            e => self.fail(e),
        }
    }
}

/// Runs the parsed command line; `Ok` carries the exit code.
async fn run(cli: Cli) -> CliResult<u8> {
    let Cli { global, command } = cli;
    let command = match command {
        Command::Demo(args) => {
            let urls: Vec<String> = global
                .redis
                .iter()
                .flat_map(|list| Topology::split_urls(list))
                .collect();
            let url = match (urls.as_slice(), global.cluster) {
                ([], false) => None,
                ([url], false) => Some(url.as_str()),
                _ => {
                    return Err(Failure::new(
                        EXIT_USAGE,
                        "the demo runs on one Redis: give at most one --redis, without --cluster",
                    ));
                }
            };
            return demo::run(args, url, global.json).await;
        }
        Command::Compose { plugin, output } => return compose(&plugin, &output),
        other => other,
    };
    let key = match &command {
        Command::Acquire { key, .. }
        | Command::Release { key, .. }
        | Command::Extend { key, .. } => key,
        Command::Status(args) => args.key().unwrap_or(""),
        Command::Run(spec) => spec.key(),
        Command::Doctor => "",
        Command::Demo(_) | Command::Compose { .. } => unreachable!("handled above"),
    };
    if !key.is_empty() {
        contract::check_lock_key(&format!("{}{key}", global.prefix))
            .map_err(|reason| Failure::new(EXIT_USAGE, reason))?;
    }
    let ctx = Ctx::connect(&global).await?;
    match command {
        Command::Acquire {
            key,
            ttl,
            wait,
            fence,
        } => keys::acquire(&ctx, &key, ttl, wait, fence).await,
        Command::Release { key, token } => keys::release(&ctx, &key, &token).await,
        Command::Extend { key, token, ttl } => keys::extend(&ctx, &key, &token, ttl).await,
        Command::Status(args) => status::status(&ctx, args).await,
        Command::Run(spec) => run::run(&ctx, spec).await,
        Command::Doctor => doctor::doctor(&ctx).await,
        Command::Demo(_) | Command::Compose { .. } => unreachable!("handled above"),
    }
}

/// `dlock compose`: writes `plugin` composed with the bundled lock component to `output`.
fn compose(plugin: &std::path::Path, output: &std::path::Path) -> CliResult<u8> {
    let usage = |what: String| Failure::new(EXIT_USAGE, what);
    let bytes = std::fs::read(plugin)
        .map_err(|e| usage(format!("cannot read {}: {e}", plugin.display())))?;
    let composed = dlock_host::compose(&bytes).map_err(|e| usage(e.to_string()))?;
    std::fs::write(output, composed)
        .map_err(|e| usage(format!("cannot write {}: {e}", output.display())))?;
    Ok(EXIT_OK)
}

fn epoch_ms(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn main() -> ExitCode {
    let args = Cli::parse();
    telemetry::init_logs(args.global.verbose);
    // The demo prints its interesting metrics whether asked or not.
    let metrics = (args.global.metrics || matches!(args.command, Command::Demo(_)))
        .then(telemetry::Metrics::install);
    let (print_metrics, json) = (args.global.metrics, args.global.json);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            output::stderr_line(format_args!("dlock: cannot start the async runtime: {e}"));
            return ExitCode::from(EXIT_INTERNAL);
        }
    };
    let code = match runtime.block_on(run(args)) {
        Ok(code) => code,
        Err(failure) => {
            output::stderr_line(format_args!("dlock: {}", failure.message));
            failure.code
        }
    };
    // Do not wait for blocking tasks (a child's stdin copy, a pending connect) at exit.
    runtime.shutdown_background();
    if let Some(metrics) = metrics.filter(|_| print_metrics) {
        if json {
            output::stderr_line(format_args!("{}", json!({ "metrics": metrics.to_json() })));
        } else {
            output::stderr_line(format_args!(
                "dlock metrics:\n{}",
                metrics.to_text().trim_end()
            ));
        }
    }
    ExitCode::from(code)
}
