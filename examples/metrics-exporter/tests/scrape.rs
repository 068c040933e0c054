//! The exporter example against a real Redis: Prometheus' text format at `/metrics`, with the
//! lock's instruments in it after the workload.

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Command;

#[tokio::test]
async fn a_scrape_after_the_workload_shows_the_lock_metrics() {
    let server = dlock_tests::redis();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dlock-metrics-exporter"))
        .args([
            "--redis",
            &server.url(),
            "--listen",
            "127.0.0.1:0",
            "--rounds",
            "20",
        ])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next_line().await.unwrap().unwrap();
    let url = first.strip_prefix("listening on http://").expect(&first);
    let addr = url.strip_suffix("/metrics").unwrap().to_owned();
    assert_eq!(
        lines.next_line().await.unwrap().as_deref(),
        Some("workload done")
    );

    let mut stream = TcpStream::connect(&addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: dlock\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    for needle in [
        "dlock_acquire_duration",
        "dlock_acquire_attempts",
        "outcome=\"released\"",
        "dlock_lock_held",
        "db_client_operation_duration",
        "dlock_acquire_attempts_count{operation=\"wait_for_lock\"} 40",
    ] {
        assert!(response.contains(needle), "no {needle} in:\n{response}");
    }
    // Not `dlock_wait_wakeups`: whether a wait was woken depends on how the two clients were
    // scheduled (on a busy machine each may find the lock free every time); wake-ups are
    // proven by `wakeup::*` in the end-to-end suite.
    // Two clients taking turns 20 times each: 40 releases.
    let released = response
        .lines()
        .find(|l| l.starts_with("dlock_release") && l.contains("outcome=\"released\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<f64>().ok());
    assert_eq!(released, Some(40.0), "{response}");
    child.kill().await.unwrap();
}
