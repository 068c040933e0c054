//! Writing to stdout and stderr without panicking.
//!
//! Rust ignores SIGPIPE, so writing to a closed pipe fails with EPIPE, and `println!` /
//! `eprintln!` turn that failure into a panic (exit 101, a lock left behind, CMD left running
//! without its watchdog). Here a failed stdout write is an error the caller handles, and a
//! failed stderr write is dropped: there is nowhere left to report it.

use std::fmt;
use std::io::Write;

use super::{CliResult, EXIT_INTERNAL, Failure};

/// Writes `text` and a newline to stdout and flushes it. A failure (a closed pipe) is exit 4.
pub(crate) fn stdout_line(text: fmt::Arguments<'_>) -> CliResult<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_fmt(text)
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush())
        .map_err(|e| Failure::new(EXIT_INTERNAL, format!("cannot write to stdout: {e}")))
}

/// Writes `text` and a newline to stderr, ignoring failure.
pub(crate) fn stderr_line(text: fmt::Arguments<'_>) {
    let mut stderr = std::io::stderr().lock();
    let _ = stderr
        .write_fmt(text)
        .and_then(|()| stderr.write_all(b"\n"));
}

/// `println!` that returns `CliResult<()>` instead of panicking; see [`stdout_line`].
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::stdout_line(format_args!($($arg)*))
    };
}

/// `eprintln!` that never panics; see [`stderr_line`].
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::output::stderr_line(format_args!($($arg)*))
    };
}

pub(crate) use {errln, outln};
