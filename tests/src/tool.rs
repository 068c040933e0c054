//! What the test tools (`torture`, `worker`, `bench`) share: exit codes, a failure that carries
//! its exit code, output that does not panic on a closed pipe, durations, and where their
//! Redis comes from.

use std::fmt;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

/// Success, no violation.
pub const EXIT_OK: u8 = 0;
/// A violation was found (torture), or a check failed.
pub const EXIT_VIOLATION: u8 = 1;
/// Bad input.
pub const EXIT_USAGE: u8 = 2;
/// Redis unreachable or failing, or redis-server missing.
pub const EXIT_REDIS: u8 = 3;
/// The tool itself failed.
pub const EXIT_INTERNAL: u8 = 4;

/// A failed run: its exit code and the one-line message for stderr.
#[derive(Debug)]
pub struct Failure {
    /// The process exit code.
    pub code: u8,
    /// What went wrong, in one line.
    pub message: String,
}

impl Failure {
    /// A failure with `code` and `message`.
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
        }
    }

    /// An internal failure described by `e`.
    pub fn internal(e: impl fmt::Display) -> Self {
        Failure::new(EXIT_INTERNAL, e.to_string())
    }
}

/// `Result` with [`Failure`].
pub type ToolResult<T> = Result<T, Failure>;

/// Writes `text` and a newline to stdout and flushes it; a closed pipe is a failure.
pub fn stdout_line(text: fmt::Arguments<'_>) -> ToolResult<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_fmt(text)
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush())
        .map_err(|e| Failure::internal(format!("cannot write to stdout: {e}")))
}

/// `println!` returning [`ToolResult`]; see [`stdout_line`].
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::tool::stdout_line(format_args!($($arg)*))
    };
}

/// Runs a tool's async main on a multi-threaded runtime; a failure is printed as
/// `NAME: message` on stderr and becomes the exit code.
pub fn main(name: &str, run: impl std::future::Future<Output = ToolResult<u8>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "{name}: cannot start the async runtime: {e}"
            );
            return ExitCode::from(EXIT_INTERNAL);
        }
    };
    let code = match runtime.block_on(run) {
        Ok(code) => code,
        Err(failure) => {
            let _ = writeln!(std::io::stderr(), "{name}: {}", failure.message);
            failure.code
        }
    };
    runtime.shutdown_background();
    ExitCode::from(code)
}

/// A duration: `250ms`, `30s`, `5m`, `1h`, or a bare number of milliseconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse()
            .map(Duration::from_millis)
            .map_err(|_| format!("{text:?} is too large a number of milliseconds"));
    }
    humantime::parse_duration(text).map_err(|e| format!("{text:?} is not a duration ({e})"))
}

pub use dlock_testing::Origin;

/// The Redis at `given`, or a `redis-server` started on a free loopback port by `who`.
pub async fn origin(given: Option<&str>, who: &str) -> ToolResult<Origin> {
    Origin::obtain(given, dlock_host::redis::redact_url, who)
        .await
        .map_err(|e| Failure::new(EXIT_REDIS, e))
}

/// A failure naming the Redis at `origin` (without password).
pub fn redis_failure(origin: &Origin, e: impl fmt::Display) -> Failure {
    Failure::new(
        EXIT_REDIS,
        format!(
            "Redis at {}: {e}",
            dlock_host::redis::redact_url(&origin.url)
        ),
    )
}
