//! The `dlock` command line: argument parsing, exit codes and dispatch.

mod bench;
mod demo;
mod duration;
mod keys;
mod origin;
pub(crate) mod output;
mod run;
mod stats;
mod torture;
mod worker;

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use dlock_host::{Error, LockOptions, Policy, Runtime};

/// Success.
pub const EXIT_OK: u8 = 0;
/// The lock is held by someone else, or the token does not own it.
pub const EXIT_BUSY: u8 = 1;
/// Bad input: usage, an empty key, a bad duration. Nothing was written to Redis.
pub const EXIT_USAGE: u8 = 2;
/// Redis is unreachable or failing (or refused the call).
pub const EXIT_REDIS: u8 = 3;
/// dlock itself failed (the lock component trapped, a process could not be started), or its
/// output could not be written (a closed stdout; `acquire` then releases the lock it took).
pub const EXIT_INTERNAL: u8 = 4;
/// `run`: the lock was busy and CMD never started (changeable with --conflict-exit-code).
pub const EXIT_RUN_CONFLICT: u8 = 75;
/// `run`: the lock was lost (or could not be kept, or `--max-hold` was reached) while CMD ran;
/// CMD was terminated (changeable with --lost-exit-code).
pub const EXIT_RUN_LOST: u8 = 76;

const EXIT_CODES: &str = "\
Exit codes:
  0   success
  1   the lock is held by someone else / TOKEN does not own the lock
  2   bad input (usage, empty key, bad duration); nothing was written to Redis
  3   Redis unreachable or failing (the message names the URL, without password)
  4   internal failure (the lock component trapped, a process could not start), or stdout
      closed before the result was written (`acquire` then releases the lock it took)
  run: CMD's own status (128+N if a signal N ended it), 75 when the lock is busy,
       76 when the lock was lost (or could not be kept, or --max-hold was reached) while
       CMD ran and CMD was terminated, 126/127 when CMD cannot be run";

/// A distributed lock on Redis, with its logic in a sandboxed WebAssembly component.
///
/// A lock is a Redis key holding its owner's token with a TTL (the same convention as
/// redis-py's Lock, redsync and node-redlock, which dlock interoperates with).
#[derive(Debug, Parser)]
#[command(name = "dlock", version, after_help = EXIT_CODES, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct Global {
    /// Redis URL: redis://[user:password@]host:port[/db], rediss:// for TLS, or
    /// unix:///path/to/socket[?pass=PASSWORD]. Passwords are never printed (messages show
    /// credentials and query parameters other than db and protocol as ***).
    /// [default: redis://127.0.0.1:6379]
    #[arg(
        long,
        global = true,
        env = "DLOCK_REDIS_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    redis: Option<String>,

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
}

const DEFAULT_REDIS: &str = "redis://127.0.0.1:6379";

/// A lock key as the component accepts it (checked here too, so that bad input is exit 2
/// even when Redis is unreachable): 1 to 512 bytes, no control characters.
fn key(text: &str) -> Result<String, String> {
    checked_text("the key", text, 512, false)
}

/// A token as `release` and `extend` accept it: 1 to 256 bytes, no control characters.
fn token(text: &str) -> Result<String, String> {
    checked_text("the token", text, 256, false)
}

/// A key prefix: up to 256 bytes, no control characters.
fn prefix(text: &str) -> Result<String, String> {
    checked_text("the prefix", text, 256, true)
}

fn checked_text(what: &str, text: &str, max: usize, allow_empty: bool) -> Result<String, String> {
    if text.is_empty() && !allow_empty {
        return Err(format!("{what} must not be empty"));
    }
    if text.len() > max {
        return Err(format!(
            "{what} is {} bytes long; the limit is {max}",
            text.len()
        ));
    }
    if let Some(c) = text.chars().find(|c| c.is_control()) {
        return Err(format!("{what} contains the control character {c:?}"));
    }
    Ok(text.to_owned())
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Take a lock: print its token (exit 0), or exit 1 if someone else holds it.
    ///
    /// One attempt, or with --wait retries (exponential backoff, at most 1 s apart) until the
    /// lock is free or the wait is over. Keep the token: `release` and `extend` need it.
    #[command(
        after_help = "Exit codes: 0 acquired (token on stdout), 1 held by someone else (after --wait), 2 bad input, 3 Redis unreachable or failing, 4 the token could not be written (stdout closed; the lock was released)."
    )]
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
    /// Release a lock if TOKEN still owns it (exit 1, nothing changed, if it does not).
    #[command(
        after_help = "Exit codes: 0 released, 1 not held by TOKEN (nothing changed), 2 bad input, 3 Redis unreachable or failing."
    )]
    Release {
        /// The lock's key.
        #[arg(value_parser = key)]
        key: String,
        /// The token `acquire` printed.
        #[arg(value_parser = token)]
        token: String,
    },
    /// Set a lock's TTL anew if TOKEN still owns it (exit 1, nothing changed, if it does not).
    #[command(
        after_help = "Exit codes: 0 extended, 1 not held by TOKEN (nothing changed), 2 bad input, 3 Redis unreachable or failing."
    )]
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
    /// Show whether a key is locked, and for how long: `locked 1234ms` or `unlocked`.
    #[command(
        after_help = "Exit codes: 0 (locked or not), 2 bad input, 3 Redis unreachable or failing."
    )]
    Status {
        /// The lock's key.
        #[arg(value_parser = key)]
        key: String,
    },
    /// Run CMD while holding the lock (flock for a fleet).
    ///
    /// Takes the lock (or exits 75 without running CMD), runs CMD with DLOCK_KEY and
    /// DLOCK_TOKEN (and DLOCK_FENCE with --fence) in its environment, extends the lock every
    /// TTL/3 while CMD runs, and releases it when CMD ends, however it ends. SIGTERM, SIGHUP
    /// and SIGQUIT are forwarded to CMD, and SIGINT too unless dlock is in the foreground
    /// process group of its terminal (there Ctrl-C reaches CMD directly). A signal while the
    /// lock is being taken ends dlock (128+N) without running CMD.
    ///
    /// CMD runs only while the lease is valid. When the lock is lost (an extend finds the key
    /// expired or taken over), cannot be extended in time (Redis failing or slow), or
    /// --max-hold is reached, CMD gets SIGTERM, then SIGKILL after --kill-after or shortly
    /// before the lease ends, whichever comes first; the lock is released and dlock exits 76.
    /// Otherwise dlock exits with CMD's status (128+N if signal N ended it).
    ///
    /// Crontab example:  */5 * * * * dlock run nightly-report --ttl 1m -- /usr/local/bin/report
    #[command(
        after_help = "Exit codes: CMD's status (128+N for signal N), 75 busy (CMD not run; --conflict-exit-code), 76 lock lost or not kept (or --max-hold reached) while CMD ran, CMD terminated (--lost-exit-code), 126/127 CMD not executable / not found, 2 bad input, 3 Redis unreachable or failing."
    )]
    Run(run::RunSpec),
    /// Show dlock at work: workers contend for a few locks, then a checked summary.
    ///
    /// Starts its own redis-server on a free loopback port unless --redis (or
    /// DLOCK_REDIS_URL) is given. Each worker is its own component instance; every
    /// acquisition is fenced, and a counter per key is incremented by read-then-write under
    /// the lock. Exits 1 if a check fails (fences not strictly increasing, a lost update).
    #[command(
        after_help = "Exit codes: 0 all checks passed, 1 a check failed, 2 bad input, 3 Redis unreachable or redis-server missing."
    )]
    Demo(demo::DemoArgs),
    /// Measure what the sandbox costs: the component against plain Rust and rslock.
    ///
    /// Acquire+release pairs on distinct keys (uncontended) and on one hot key (contended), at
    /// each concurrency, through each path, in one run: ops/s, latency percentiles and the
    /// ratio to the native path. Starts its own redis-server unless --redis (or
    /// DLOCK_REDIS_URL) is given. `bench startup`, `bench instantiate`, `bench calls` and
    /// `bench memory` measure start-up, client creation, one call into the component and
    /// memory. Build with --release for real numbers.
    #[command(
        after_help = "Exit codes: 0 done, 2 bad input, 3 Redis unreachable or redis-server missing, 4 internal failure."
    )]
    Bench(bench::BenchArgs),
    /// Soak test: worker processes contend for one lock while faults are injected; then every
    /// invariant is checked on the recorded history.
    ///
    /// Starts its own redis-servers (the lock's with `appendfsync always`, and one for the
    /// protected resources). With --redis redis://... the lock's Redis is that one (password,
    /// database and options kept) and only worker and network faults are injected: no pause,
    /// CLIENT PAUSE, SCRIPT FLUSH or crash of a server other clients share. Workers reach the
    /// lock's Redis through an in-process TCP proxy. Every --nemesis-interval one fault: pause
    /// a worker past the TTL, kill a worker, add latency, blackhole, reset connections, and on
    /// its own Redis only: pause Redis, CLIENT PAUSE, SCRIPT FLUSH, crash and restart Redis. Checks: one holder at a time, fences increasing and stale writes refused, no lost
    /// update, every call returning in time, nothing left behind.
    #[command(
        after_help = "Exit codes: 0 no violation, 1 a violation (listed), 2 bad input, 3 redis-server missing or Redis unreachable, 4 internal failure."
    )]
    Torture(torture::TortureArgs),
    /// A lock client driven over stdin/stdout (JSON lines), for `dlock torture` and tests.
    #[command(hide = true)]
    Worker {
        /// Where the fenced resource and guarded sets live. [default: the lock's Redis]
        #[arg(long, value_name = "URL")]
        resource: Option<String>,
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
            Error::NotAcquired | Error::NotHeld | Error::NotALock => EXIT_BUSY,
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
            Error::RedisUnavailable(_)
            | Error::RedisTimeout
            | Error::RedisRejected(_)
            | Error::GrantedTooLate => {
                format!("Redis at {url}: {e}")
            }
            _ => e.to_string(),
        };
        Failure::new(code, message)
    }
}

type CliResult<T> = Result<T, Failure>;

/// Everything a command needs to reach the lock.
struct Ctx {
    runtime: Runtime,
    json: bool,
    prefix: String,
}

impl Ctx {
    async fn connect(global: &Global, url: &str) -> CliResult<Ctx> {
        // The user types the token, so locks of other clients of the convention (redis-py,
        // redsync) can be released and extended too.
        let runtime = Runtime::builder(url)
            .policy(Policy::default().allow_foreign_tokens())
            .build()
            .await
            .map_err(|e| Failure::from_lock(e, &dlock_host::redact_url(url)))?;
        Ok(Ctx {
            runtime,
            json: global.json,
            prefix: global.prefix.clone(),
        })
    }

    /// How long one Redis call may take.
    fn command_timeout(&self) -> std::time::Duration {
        self.runtime.policy().command_timeout()
    }

    async fn client(&self, fencing: bool) -> CliResult<dlock_host::Client> {
        let options = LockOptions {
            key_prefix: self.prefix.clone(),
            fencing,
            ..LockOptions::default()
        };
        self.runtime.client(options).await.map_err(|e| self.fail(e))
    }

    fn fail(&self, e: Error) -> Failure {
        Failure::from_lock(e, self.runtime.redis_url())
    }
}

/// Runs the parsed command line; `Ok` carries the exit code.
pub async fn run(cli: Cli) -> CliResult<u8> {
    let Cli { global, command } = cli;
    let command = match command {
        Command::Demo(args) => return demo::run(args, global.redis.as_deref(), global.json).await,
        Command::Bench(args) => {
            return bench::run(args, global.redis.as_deref(), global.json).await;
        }
        Command::Torture(args) => {
            return torture::run(args, global.redis.as_deref(), global.json).await;
        }
        Command::Worker { resource } => {
            let url = global.redis.as_deref().unwrap_or(DEFAULT_REDIS);
            return worker::run(url, resource.as_deref().unwrap_or(url)).await;
        }
        other => other,
    };
    let url = global
        .redis
        .clone()
        .unwrap_or_else(|| DEFAULT_REDIS.to_owned());
    let ctx = Ctx::connect(&global, &url).await?;
    match command {
        Command::Acquire {
            key,
            ttl,
            wait,
            fence,
        } => keys::acquire(&ctx, &key, ttl, wait, fence).await,
        Command::Release { key, token } => keys::release(&ctx, &key, &token).await,
        Command::Extend { key, token, ttl } => keys::extend(&ctx, &key, &token, ttl).await,
        Command::Status { key } => keys::status(&ctx, &key).await,
        Command::Run(spec) => run::run(&ctx, spec).await,
        Command::Demo(_) | Command::Bench(_) | Command::Torture(_) | Command::Worker { .. } => {
            unreachable!("handled above")
        }
    }
}

fn epoch_ms(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
