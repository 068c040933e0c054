//! Per-call cost of today's fiber-based component call (world `a`) against the
//! component-model-async ABI (world `b`: stackless async export, async import), on wasmtime
//! 48.0.8. See ../README.md.
//!
//! Usage: `cm-host MODE N [REPS] [K]`
//!
//! Modes (each compiles its component once, instantiates once, then makes N calls of
//! `acquire("lock:k", 30000)`, REPS times; prints ns per call of each rep and the best):
//!
//! * `a`       world a, engine with `concurrency_support(false)` (today's dlock configuration):
//!             import via `func_wrap_async`, export via `call_async` (+ `post_return_async`).
//! * `a-cs`    the same code on an engine with `concurrency_support(true)` (the default once the
//!             `component-model-async` feature is compiled in): what merely enabling the feature
//!             does to today's path, since `call_async` then goes through the concurrent machinery.
//! * `b`       world b: import via `func_wrap_concurrent`; each call is its own
//!             `store.run_concurrent(|a| f.call_concurrent(a, ..))`.
//! * `b-loop`  world b: one `run_concurrent` around the whole loop, calls made one after another.
//! * `b-call-async` world b's async export called with plain `call_async` (no explicit
//!             `run_concurrent`; wasmtime wraps it in one per call).
//! * `b-conc`  world b: N calls in batches of K (default 8) `call_concurrent` futures joined
//!             inside one `run_concurrent` per batch, on ONE store/instance; the import yields
//!             once (`tokio::task::yield_now`) before replying, and the host records the
//!             largest number of `eval`s in flight at once. Checks every reply.
//! * `a-conc`  control for `b-conc`: world a, the same yielding import via `func_wrap_async`,
//!             K `call_async`s joined on one store (expected to be impossible: `call_async`
//!             needs `&mut Store`, so this mode runs them one after another and says so).

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use wasmtime::error::Context;
use wasmtime::{Result, bail, ensure};
use wasmtime::component::{Accessor, Component, Linker, TypedFunc};
use wasmtime::{Config, Engine, Store};

type EvalParams = (Vec<String>, Vec<String>);
type EvalReturn = (Result<i64, String>,);
type AcqParams = (String, u64);
type AcqReturn = (Result<u64, String>,);

/// `eval`s in flight right now and the most seen at once (for the `*-conc` modes).
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
static MAX_IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Sum of the lengths of the keys and args the import received, so the import's lifting is
    /// not dead and the host checks what the guest sent.
    static SEEN: Cell<usize> = const { Cell::new(0) };
}

fn note(keys: &[String], args: &[String]) {
    debug_assert_eq!(keys.len(), 1);
    debug_assert_eq!(args.len(), 2);
    SEEN.with(|s| s.set(s.get() + keys.len() + args.len()));
}

fn enter() {
    let now = IN_FLIGHT.fetch_add(1, Ordering::SeqCst) + 1;
    MAX_IN_FLIGHT.fetch_max(now, Ordering::SeqCst);
}

fn leave() {
    IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
}

/// The `eval` import of every mode: notes what the guest sent and answers 1; with `yielding`,
/// it counts itself in flight and yields to the runtime once first.
async fn answer(keys: Vec<String>, args: Vec<String>, yielding: bool) -> Result<EvalReturn> {
    note(&keys, &args);
    if yielding {
        enter();
        tokio::task::yield_now().await;
        leave();
    }
    Ok((Ok(1),))
}

fn wasm_path(world: &str) -> String {
    let dir = std::env::var("CM_WASM_DIR")
        .unwrap_or_else(|_| "/work/cm-async-target/wasm32-wasip2/release".to_string());
    format!("{dir}/cm_guest_{world}.wasm")
}

fn engine(concurrency: bool) -> Result<Engine> {
    let mut config = Config::new();
    config.concurrency_support(concurrency);
    if concurrency {
        config.wasm_component_model_async(true);
    }
    Engine::new(&config)
}

struct Data;

fn check(reply: AcqReturn) -> Result<()> {
    match reply.0 {
        Ok(1) => Ok(()),
        other => bail!("unexpected reply {other:?}"),
    }
}

fn report(mode: &str, n: u64, times: &[f64]) {
    let best = times.iter().cloned().fold(f64::INFINITY, f64::min);
    let all: Vec<String> = times.iter().map(|t| format!("{t:.0}")).collect();
    println!(
        "{mode}: {n} calls x {} reps: ns/call [{}], best {best:.0}; max evals in flight {}",
        times.len(),
        all.join(", "),
        MAX_IN_FLIGHT.load(Ordering::SeqCst)
    );
}

async fn run_a(mode: &str, concurrency: bool, n: u64, reps: u32, yielding: bool) -> Result<()> {
    let engine = engine(concurrency)?;
    let component = Component::from_file(&engine, wasm_path("a")).context("load world a")?;
    let mut linker = Linker::<Data>::new(&engine);
    linker
        .root()
        .func_wrap_async("eval", move |_store, (keys, args): EvalParams| {
            Box::new(answer(keys, args, yielding))
        })?;
    let mut store = Store::new(&engine, Data);
    let instance = linker.instantiate_async(&mut store, &component).await?;
    let acquire: TypedFunc<AcqParams, AcqReturn> =
        instance.get_typed_func(&mut store, "acquire")?;
    let mut times = Vec::new();
    for _ in 0..reps {
        let start = Instant::now();
        for _ in 0..n {
            let reply = acquire
                .call_async(&mut store, ("lock:k".to_string(), 30_000))
                .await?;
            #[allow(deprecated, reason = "a no-op in wasmtime 48, kept as today's host calls it")]
            acquire.post_return_async(&mut store).await?;
            check(reply)?;
        }
        times.push(start.elapsed().as_nanos() as f64 / n as f64);
    }
    report(mode, n, &times);
    Ok(())
}

async fn run_b(mode: &str, n: u64, reps: u32, k: usize) -> Result<()> {
    let engine = engine(true)?;
    let component = Component::from_file(&engine, wasm_path("b")).context("load world b")?;
    let mut linker = Linker::<Data>::new(&engine);
    let yielding = mode == "b-conc";
    linker.root().func_wrap_concurrent(
        "eval",
        move |_accessor: &Accessor<Data>, (keys, args): EvalParams| {
            Box::pin(answer(keys, args, yielding))
        },
    )?;
    let mut store = Store::new(&engine, Data);
    let instance = linker.instantiate_async(&mut store, &component).await?;
    let acquire: TypedFunc<AcqParams, AcqReturn> =
        instance.get_typed_func(&mut store, "acquire")?;
    let mut times = Vec::new();
    for _ in 0..reps {
        let start = Instant::now();
        match mode {
            "b" => {
                for _ in 0..n {
                    let reply = store
                        .run_concurrent(async |a| {
                            acquire
                                .call_concurrent(a, ("lock:k".to_string(), 30_000))
                                .await
                        })
                        .await??;
                    check(reply)?;
                }
            }
            "b-loop" => {
                store
                    .run_concurrent(async |a| -> Result<()> {
                        for _ in 0..n {
                            let reply = acquire
                                .call_concurrent(a, ("lock:k".to_string(), 30_000))
                                .await?;
                            check(reply)?;
                        }
                        Ok(())
                    })
                    .await??;
            }
            "b-call-async" => {
                for _ in 0..n {
                    let reply = acquire
                        .call_async(&mut store, ("lock:k".to_string(), 30_000))
                        .await?;
                    check(reply)?;
                }
            }
            "b-conc" => {
                ensure!(n % k as u64 == 0, "N must be a multiple of K");
                for _ in 0..n / k as u64 {
                    store
                        .run_concurrent(async |a| -> Result<()> {
                            let calls = (0..k).map(|i| {
                                acquire.call_concurrent(a, (format!("lock:{i}"), 30_000))
                            });
                            for reply in futures::future::join_all(calls).await {
                                check(reply?)?;
                            }
                            Ok(())
                        })
                        .await??;
                }
            }
            _ => bail!("unknown mode {mode}"),
        }
        times.push(start.elapsed().as_nanos() as f64 / n as f64);
    }
    report(mode, n, &times);
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: cm-host a|a-cs|a-conc|b|b-loop|b-call-async|b-conc N [REPS] [K]";
    let mode = args.get(1).context(usage)?.as_str();
    let n: u64 = args.get(2).context(usage)?.parse()?;
    let reps: u32 = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(1);
    let k: usize = args.get(4).map(|s| s.parse()).transpose()?.unwrap_or(8);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        match mode {
            "a" => run_a(mode, false, n, reps, false).await,
            "a-cs" => run_a(mode, true, n, reps, false).await,
            "a-conc" => {
                println!(
                    "a-conc: TypedFunc::call_async takes `impl AsContextMut` (exclusive &mut Store) \
                     and returns a future borrowing it, so K calls cannot be joined on one store; \
                     running them sequentially with a yielding import instead"
                );
                run_a(mode, false, n, reps, true).await
            }
            _ => run_b(mode, n, reps, k).await,
        }
    })?;
    let seen = SEEN.with(|s| s.get());
    ensure!(seen > 0, "the import was never called");
    Ok(())
}
