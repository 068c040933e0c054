//! One lock, two runtimes: Rust clients (the `worker` binary, wasmtime host) and Node clients
//! (the Node package's protocol worker, the same component under Node) take the same lock keys
//! and increment shared counters under them with an unfenced read-modify-write. Every
//! operation is recorded; the history checker finds no overlap of holders (I1) and no lost
//! update (I4), and every counter ends at the number of increments that succeeded.
//!
//! Needs Node 22 or later (`$DLOCK_NODE` or `node` on PATH) and the package built
//! (`node/scripts/setup-node.sh`); without them the test fails saying so.

use std::time::Duration;

use dlock_tests::driver::Driven;
use dlock_tests::history::{FinalState, Recorder};
use dlock_tests::node::NodeWorkers;
use dlock_tests::workers::{Outcome, Worker};
use dlock_tests::{exists, get, raw, redis};

/// The lock keys and, for each, the counter it guards.
const KEYS: [(&str, &str); 2] = [("job:a", "counter:a"), ("job:b", "counter:b")];
/// Rounds per worker.
const ROUNDS: u64 = 40;
const TTL: Duration = Duration::from_secs(10);
const WAIT: Duration = Duration::from_secs(60);
const CALL_BOUND: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_and_node_clients_exclude_each_other_and_lose_no_update() {
    let node = NodeWorkers::find().unwrap_or_else(|e| panic!("cannot run Node workers: {e}"));
    let server = redis();
    let url = server.url();
    let recorder = Recorder::new();
    let rust = std::path::Path::new(env!("CARGO_BIN_EXE_worker"));
    let mut tasks = Vec::new();
    // Rust, Node, Rust, Node.
    for id in 0..4u32 {
        let program = if id % 2 == 0 { rust } else { node.program() };
        let worker = Worker::spawn(program, &url, &url)
            .await
            .unwrap_or_else(|e| panic!("worker {id}: {e}"));
        let mut client = Driven::new(worker, id, &recorder);
        client.patience = CALL_BOUND;
        tasks.push(tokio::spawn(async move {
            let mut increments = 0u64;
            for round in 0..ROUNDS {
                let (key, counter) = KEYS[((round + u64::from(id)) % 2) as usize];
                let element = format!("w{id}r{round}");
                let got = client.acquire(key, TTL, WAIT, CALL_BOUND).await;
                assert_eq!(
                    got.as_ref().map(|r| r.outcome),
                    Some(Outcome::Ok),
                    "worker {id} round {round}: {got:?}"
                );
                let read = client.guarded_read(counter, &element).await;
                assert_eq!(read.map(|r| r.outcome), Some(Outcome::Ok));
                // Widen the window between the read and the write.
                tokio::task::yield_now().await;
                let written = client.guarded_write(counter, &element, false).await;
                assert_eq!(written.map(|r| r.outcome), Some(Outcome::Ok));
                increments += 1;
                let released = client.release().await;
                assert_eq!(released.map(|r| r.outcome), Some(Outcome::Ok));
            }
            increments
        }));
    }
    let mut increments = 0;
    for task in tasks {
        increments += task.await.unwrap();
    }
    let mut conn = raw(&server).await;
    let mut state = FinalState::default();
    let mut total = 0;
    for (key, counter) in KEYS {
        let elements: Vec<String> = get(&mut conn, counter)
            .await
            .unwrap_or_default()
            .split(',')
            .filter(|e| !e.is_empty())
            .map(str::to_owned)
            .collect();
        total += elements.len() as u64;
        state = state.with_set(counter, elements);
        assert!(!exists(&mut conn, key).await, "{key} was left behind");
    }
    let report = recorder.history().check(&state);
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.holds as u64, 4 * ROUNDS, "{}", report.summary());
    assert_eq!(
        total,
        increments,
        "increments were lost: {}",
        report.summary()
    );
    assert_eq!(total, 4 * ROUNDS);
}
