//! `dlock`: a distributed lock on Redis from the shell, with the lock logic in a sandboxed
//! WebAssembly component. See `dlock --help`.

mod cli;

// The test suite's fault-injection toolkit, compiled into `dlock torture` as it is (see
// tests/src/). Not every item is used by the binary.
#[path = "../../tests/src/driver.rs"]
#[allow(dead_code, reason = "shared with the test suite")]
mod driver;
#[path = "../../tests/src/history/mod.rs"]
#[allow(dead_code, unused_imports, reason = "shared with the test suite")]
mod history;
#[path = "../../tests/src/proxy.rs"]
#[allow(dead_code, reason = "shared with the test suite")]
mod proxy;
#[path = "../../tests/src/workers.rs"]
#[allow(dead_code, reason = "shared with the test suite")]
mod workers;

/// mimalloc instead of glibc's malloc: the lock path allocates small buffers on every call
/// from several tokio workers at once, and glibc's arena locks showed up in profiles.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            cli::output::stderr_line(format_args!("dlock: cannot start the async runtime: {e}"));
            return ExitCode::from(cli::EXIT_INTERNAL);
        }
    };
    let code = match runtime.block_on(cli::run(args)) {
        Ok(code) => code,
        Err(failure) => {
            cli::output::stderr_line(format_args!("dlock: {}", failure.message));
            failure.code
        }
    };
    // Do not wait for blocking tasks (a child's stdin copy, a pending connect) at exit.
    runtime.shutdown_background();
    ExitCode::from(code)
}
