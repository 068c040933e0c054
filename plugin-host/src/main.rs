//! `plugin-host`: runs N copies of the example job plugin concurrently, each making M
//! read-modify-writes of one counter under one dlock lock, and reports whether any update was
//! lost. Each plugin gets the lock host-provided, composed, or (`--path mixed`) half each way.
//!
//! `cargo run -p dlock-plugin-host -- --plugins 8 --increments 200 --path mixed`

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use clap::{Parser, ValueEnum};
use dlock_plugin_host::{JOB_PLUGIN, Path, PluginHost};
use dlock_testing::RedisServer;

/// Runs copies of the example job plugin against one lock and one counter.
#[derive(Debug, Parser)]
struct Args {
    /// The Redis to lock in. [default: a redis-server started here]
    #[arg(long, env = "DLOCK_REDIS_URL", hide_env_values = true)]
    redis: Option<String>,
    /// How many plugin instances run at once.
    #[arg(long, default_value_t = 8)]
    plugins: u32,
    /// Read-modify-writes per plugin.
    #[arg(long, default_value_t = 200)]
    increments: u32,
    /// How the plugins get the lock.
    #[arg(long, value_enum, default_value = "mixed")]
    path: Which,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Which {
    /// Every plugin through the host (`dlock_host::lock::add_to_linker`).
    Host,
    /// Every plugin composed with the dlock component (`dlock_host::compose`).
    Composed,
    /// Half each way, on the same lock.
    Mixed,
}

#[tokio::main]
async fn main() -> Result<ExitCode> {
    let args = Args::parse();
    let (_server, url) = match args.redis.clone() {
        Some(url) => (None, url),
        None => {
            let server = RedisServer::start()?;
            let url = server.url();
            (Some(server), url)
        }
    };
    let host = Arc::new(PluginHost::connect(&url).await?);
    let namespace = "jobs:";
    let host_provided = host.load(JOB_PLUGIN, Path::HostProvided, namespace)?;
    let composed = host.load(JOB_PLUGIN, Path::Composed, namespace)?;
    let counter = format!("{namespace}counter:{}", std::process::id());
    let started = std::time::Instant::now();
    let mut runs = tokio::task::JoinSet::new();
    for i in 0..args.plugins {
        let plugin = match (args.path, i % 2) {
            (Which::Host, _) | (Which::Mixed, 0) => host_provided.clone(),
            _ => composed.clone(),
        };
        let (host, counter) = (host.clone(), counter.clone());
        runs.spawn(async move {
            host.run_jobs(&plugin, "jobs:lock", &counter, args.increments)
                .await
        });
    }
    while let Some(outcome) = runs.join_next().await {
        outcome??;
    }
    let expected = i64::from(args.plugins) * i64::from(args.increments);
    let got = host.counter(&counter).await?;
    println!(
        "{} plugins ({:?}) x {} increments in {:.1?}: counter {got}, expected {expected}, {} lost",
        args.plugins,
        args.path,
        args.increments,
        started.elapsed(),
        expected - got
    );
    Ok(if got == expected {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
