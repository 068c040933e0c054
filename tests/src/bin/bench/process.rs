//! Benches of the process rather than of throughput: start-up, instantiation and memory.

use std::process::Stdio;
use std::time::{Duration, Instant};

use dlock_host::{Allocation, LockComponent, LockOptions, Runtime, bundled};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

use dlock_tests::outln;
use dlock_tests::stats::{human, percentile};
use dlock_tests::tool::Origin;
use dlock_tests::tool::{EXIT_INTERNAL, EXIT_OK, EXIT_REDIS, Failure, ToolResult};

fn internal(e: impl std::fmt::Display) -> Failure {
    Failure::internal(e)
}

/// The `dlock` binary, built into the same target directory as this one.
fn dlock_binary() -> ToolResult<std::path::PathBuf> {
    let dlock = std::env::current_exe()
        .map_err(internal)?
        .with_file_name("dlock");
    if !dlock.exists() {
        return Err(Failure::new(
            EXIT_INTERNAL,
            format!(
                "{} is missing: build it (cargo build --release -p dlock)",
                dlock.display()
            ),
        ));
    }
    Ok(dlock)
}

/// Time from spawning `dlock acquire` to its token on stdout.
async fn time_to_first_lock(
    redis: &Origin,
    cache_dir: &std::path::Path,
    key: &str,
) -> ToolResult<Duration> {
    let exe = dlock_binary()?;
    let started = Instant::now();
    let mut child = tokio::process::Command::new(exe)
        .env("DLOCK_CACHE_DIR", cache_dir)
        // Not `--redis`: `ps` would show a password in the URL.
        .env("DLOCK_REDIS_URL", &redis.url)
        .args(["acquire", key, "--ttl", "10s"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(internal)?;
    let stdout = child.stdout.take().ok_or_else(|| internal("no stdout"))?;
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .await
        .map_err(internal)?;
    let elapsed = started.elapsed();
    let status = child.wait().await.map_err(internal)?;
    if !status.success() || line.trim().is_empty() {
        return Err(Failure::new(
            EXIT_REDIS,
            format!("`dlock acquire` failed ({status})"),
        ));
    }
    Ok(elapsed)
}

pub(super) async fn startup(redis: &Origin, runs: u32, json_out: bool) -> ToolResult<u8> {
    let warm_dir = tempfile::tempdir().map_err(internal)?;
    // Fill the warm cache once.
    time_to_first_lock(redis, warm_dir.path(), "bench:startup:prime").await?;
    let (mut cold, mut warm) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let empty = tempfile::tempdir().map_err(internal)?;
        cold.push(
            time_to_first_lock(redis, empty.path(), &format!("bench:startup:cold:{i}")).await?,
        );
        warm.push(
            time_to_first_lock(redis, warm_dir.path(), &format!("bench:startup:warm:{i}")).await?,
        );
    }
    cold.sort();
    warm.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    if json_out {
        let out = json!({
            "redis": redis.description,
            "runs": runs,
            "compile_p50_ms": ms(percentile(&cold, 0.5)),
            "compile_max_ms": ms(*cold.last().unwrap_or(&Duration::ZERO)),
            "cached_p50_ms": ms(percentile(&warm, 0.5)),
            "cached_max_ms": ms(*warm.last().unwrap_or(&Duration::ZERO)),
        });
        outln!("{out}")?;
    } else {
        outln!("process start to first lock acquired ({runs} runs each; `dlock acquire`):")?;
        outln!(
            "  compiling the component   p50 {:>8}   max {}",
            human(percentile(&cold, 0.5)),
            human(*cold.last().unwrap_or(&Duration::ZERO))
        )?;
        outln!(
            "  cached compiled component p50 {:>8}   max {}",
            human(percentile(&warm, 0.5)),
            human(*warm.last().unwrap_or(&Duration::ZERO))
        )?;
    }
    Ok(EXIT_OK)
}

pub(super) async fn instantiate(redis: &Origin, clients: u32, json_out: bool) -> ToolResult<u8> {
    let mut results = Vec::new();
    for (name, allocation) in [
        (
            "pooling",
            Allocation::Pooling {
                max_clients: clients + 1,
            },
        ),
        ("on-demand", Allocation::OnDemand),
    ] {
        let component =
            LockComponent::from_bytes(bundled::COMPONENT, allocation).map_err(internal)?;
        let runtime = Runtime::builder(&redis.url)
            .with_component(component)
            .build()
            .await
            .map_err(internal)?;
        let mut times = Vec::with_capacity(clients as usize);
        // Two rounds; the second measures slots and memory the first already touched.
        for _round in 0..2 {
            times.clear();
            let mut live = Vec::with_capacity(clients as usize);
            for _ in 0..clients {
                let started = Instant::now();
                live.push(
                    runtime
                        .client(LockOptions::default())
                        .await
                        .map_err(internal)?,
                );
                times.push(started.elapsed());
            }
        }
        let mean = times.iter().sum::<Duration>() / clients.max(1);
        times.sort();
        results.push((
            name,
            mean,
            percentile(&times, 0.5),
            percentile(&times, 0.99),
        ));
    }
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    if json_out {
        let cells: Vec<_> = results
            .iter()
            .map(|(name, mean, p50, p99)| json!({"allocation": name, "mean_us": us(*mean), "p50_us": us(*p50), "p99_us": us(*p99)}))
            .collect();
        outln!("{}", json!({ "clients": clients, "results": cells }))?;
    } else {
        outln!(
            "creating a client (store + instance + the component's `client.create`), {clients} clients:"
        )?;
        for (name, mean, p50, p99) in results {
            outln!(
                "  {name:<10} mean {:>7.1}us  p50 {:>7.1}us  p99 {:>7.1}us",
                us(mean),
                us(p50),
                us(p99)
            )?;
        }
    }
    Ok(EXIT_OK)
}

/// This process's resident set size in bytes (from /proc/self/status).
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

pub(super) async fn memory(redis: &Origin, locks: u32, json_out: bool) -> ToolResult<u8> {
    let fail = |e: dlock_host::Error| Failure::new(EXIT_REDIS, e.to_string());
    let runtime = Runtime::connect(&redis.url).await.map_err(fail)?;
    // Warm up: one client, one lock, so the baseline includes the compiled code and runtime.
    let first = runtime.client(LockOptions::default()).await.map_err(fail)?;
    first
        .acquire("bench:mem:warm", Duration::from_secs(60))
        .await
        .map_err(fail)?
        .release()
        .await
        .map_err(fail)?;
    let baseline = rss_bytes();

    const LOCKS_PER_CLIENT: u32 = 100;
    let before_locks = rss_bytes();
    let mut clients = Vec::new();
    let mut handles = Vec::new();
    for c in 0..locks.div_ceil(LOCKS_PER_CLIENT) {
        let client = runtime.client(LockOptions::default()).await.map_err(fail)?;
        for l in 0..LOCKS_PER_CLIENT.min(locks - c * LOCKS_PER_CLIENT) {
            let key = format!("bench:mem:{c}:{l}");
            handles.push(
                client
                    .acquire(&key, Duration::from_secs(120))
                    .await
                    .map_err(fail)?,
            );
        }
        clients.push(client);
    }
    let with_locks = rss_bytes();
    let held = handles.len();
    for handle in &handles {
        handle.release().await.map_err(fail)?;
    }
    let clients_holding = clients.len();
    // Idle clients last, on an engine of their own: freed pool slots stay resident for fast
    // reuse, so reusing the slots above would hide the first-use cost.
    drop(handles);
    drop(clients);
    let component =
        LockComponent::from_bytes(bundled::COMPONENT, Allocation::default()).map_err(internal)?;
    let fresh = Runtime::builder(&redis.url)
        .with_component(component)
        .build()
        .await
        .map_err(fail)?;
    fresh.client(LockOptions::default()).await.map_err(fail)?;
    let idle_baseline = rss_bytes();
    const IDLE: u32 = 200;
    let mut idle = Vec::new();
    for _ in 0..IDLE {
        idle.push(fresh.client(LockOptions::default()).await.map_err(fail)?);
    }
    let per_idle_client = rss_bytes().saturating_sub(idle_baseline) / u64::from(IDLE);
    drop(idle);

    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    if json_out {
        let out = json!({
            "baseline_rss_mib": mib(baseline),
            "per_idle_client_kib": per_idle_client as f64 / 1024.0,
            "locks_held": held,
            "clients_holding": clients_holding,
            "rss_with_locks_mib": mib(with_locks),
            "rss_for_locks_mib": mib(with_locks.saturating_sub(before_locks)),
        });
        outln!("{out}")?;
    } else {
        outln!("resident memory (VmRSS):")?;
        outln!(
            "  one client, after a lock     {:>8.1} MiB (code, runtime, connection)",
            mib(baseline)
        )?;
        outln!(
            "  per idle client              {:>8.1} KiB",
            per_idle_client as f64 / 1024.0
        )?;
        outln!(
            "  {held} locks held by {} clients  {:>8.1} MiB in all ({:.1} MiB for the locks)",
            clients_holding,
            mib(with_locks),
            mib(with_locks.saturating_sub(before_locks))
        )?;
    }
    Ok(EXIT_OK)
}

pub(super) async fn calls(redis: &Origin, calls: u32, json_out: bool) -> ToolResult<u8> {
    let fail = |e: dlock_host::Error| Failure::new(EXIT_REDIS, e.to_string());
    let runtime = Runtime::connect(&redis.url).await.map_err(fail)?;
    let client = runtime.client(LockOptions::default()).await.map_err(fail)?;
    let cpu = super::throughput::process_cpu_secs();
    let started = Instant::now();
    for _ in 0..calls {
        client.component_default_options().await.map_err(fail)?;
    }
    let elapsed = started.elapsed();
    let cpu_us = (super::throughput::process_cpu_secs() - cpu) * 1e6 / f64::from(calls.max(1));
    let wall_us = elapsed.as_secs_f64() * 1e6 / f64::from(calls.max(1));
    if json_out {
        outln!(
            "{}",
            json!({ "calls": calls, "wall_us_per_call": wall_us, "cpu_us_per_call": cpu_us })
        )?;
    } else {
        outln!(
            "one call into the component (`default-options`: an export returning a record, no import), {calls} calls:"
        )?;
        outln!("  {wall_us:.2}us wall, {cpu_us:.2}us CPU per call")?;
    }
    Ok(EXIT_OK)
}

/// What one plugin instance costs, host-provided vs composed: time to instantiate it (a
/// store and its instance; for host-provided also its first lock client, which is the dlock
/// instance it gets) and resident memory per live instance.
pub(super) async fn plugins(redis: &Origin, instances: u32, json_out: bool) -> ToolResult<u8> {
    use dlock_plugin_host::{JOB_PLUGIN, Path, PluginHost};
    let host = PluginHost::connect(&redis.url).await.map_err(internal)?;
    let mut results = Vec::new();
    for (name, path) in [
        ("host-provided", Path::HostProvided),
        ("composed", Path::Composed),
    ] {
        let plugin = host.load(JOB_PLUGIN, path, "bench:").map_err(internal)?;
        let mut times = Vec::with_capacity(instances as usize);
        let before = rss_bytes();
        let mut live = Vec::with_capacity(instances as usize);
        for i in 0..instances {
            let started = Instant::now();
            let mut instance = host.instantiate(&plugin).await.map_err(internal)?;
            // The first lock call: host-provided, it creates the plugin's dlock instance.
            let (taken,): (Result<bool, String>,) = instance
                .call(
                    "lock-pair",
                    (format!("bench:plugins:{name}:{i}"), 10_000u64),
                )
                .await
                .map_err(internal)?;
            taken.map_err(internal)?;
            times.push(started.elapsed());
            live.push(instance);
        }
        let per_instance = rss_bytes().saturating_sub(before) / u64::from(instances.max(1));
        times.sort();
        results.push((
            name,
            percentile(&times, 0.5),
            percentile(&times, 0.99),
            per_instance,
        ));
        drop(live);
    }
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    if json_out {
        let cells: Vec<_> = results
            .iter()
            .map(|(name, p50, p99, rss)| json!({"path": name, "p50_us": us(*p50), "p99_us": us(*p99), "rss_bytes_per_instance": rss}))
            .collect();
        outln!("{}", json!({ "instances": instances, "results": cells }))?;
    } else {
        outln!(
            "one plugin instance (store + instance + its first lock call, one lock-pair), {instances} live instances:"
        )?;
        for (name, p50, p99, rss) in results {
            outln!(
                "  {name:<14} p50 {:>8.1}us  p99 {:>8.1}us  {:>7.1} KiB resident each",
                us(p50),
                us(p99),
                rss as f64 / 1024.0
            )?;
        }
    }
    Ok(EXIT_OK)
}
