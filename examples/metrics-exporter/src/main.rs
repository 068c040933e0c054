//! dlock's metrics (see `dlock_host::observe`) exported for Prometheus: installs the
//! `metrics-exporter-prometheus` recorder, serves its text format at `/metrics` on `--listen`,
//! and has two clients contend for one lock for `--rounds` rounds (waits woken by releases,
//! contention, holds), so that there is something to scrape.
//!
//! ```text
//! cargo run -p dlock-metrics-exporter -- --redis redis://127.0.0.1:6379 --listen 127.0.0.1:9898
//! curl http://127.0.0.1:9898/metrics
//! ```
//!
//! It prints `listening on http://ADDR/metrics`, then `workload done` after the rounds, and
//! serves until killed.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use dlock_host::{Deadline, LockOptions, Runtime};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Parser)]
struct Args {
    /// The Redis to lock on.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis: String,
    /// Where to serve `/metrics` (port 0: any free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:9898")]
    listen: SocketAddr,
    /// How many times each of the two clients takes and releases the lock.
    #[arg(long, default_value_t = 50)]
    rounds: u32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let metrics = PrometheusBuilder::new()
        .install_recorder()
        .context("installing the Prometheus recorder")?;
    let listener = TcpListener::bind(args.listen).await?;
    println!("listening on http://{}/metrics", listener.local_addr()?);
    tokio::spawn(serve(listener, metrics));

    let runtime = Runtime::connect(&args.redis).await?;
    let mut workers = Vec::new();
    for _ in 0..2 {
        let client = runtime.client(LockOptions::default()).await?;
        let rounds = args.rounds;
        workers.push(tokio::spawn(async move {
            for _ in 0..rounds {
                let deadline = Deadline::after(Duration::from_secs(30));
                let lock = client
                    .wait_for_lock("metrics-example", Duration::from_secs(10), deadline)
                    .await?;
                tokio::task::yield_now().await;
                lock.release().await?;
            }
            anyhow::Ok(())
        }));
    }
    for worker in workers {
        worker.await??;
    }
    println!("workload done");
    std::future::pending::<()>().await;
    Ok(())
}

/// Answers every HTTP request on `listener` with the metrics in Prometheus' text format.
async fn serve(listener: TcpListener, metrics: PrometheusHandle) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut request = [0u8; 4096];
            // The request itself does not matter: every path gets the metrics.
            let _ = stream.read(&mut request).await;
            let body = metrics.render();
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}
