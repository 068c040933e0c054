//! A counting semaphore: at most three holders of `exports` at once across every process,
//! each permit a lease kept alive like a lock's, and the permits held counted in Redis.
//!
//! Uses the Redis at `$DLOCK_REDIS_URL` if set; otherwise starts a throwaway `redis-server`.

use std::time::Duration;

use dlock_host::{Deadline, KeepAliveOptions, LockOptions, Runtime};
use dlock_testing::RedisServer;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (_server, url) = match std::env::var("DLOCK_REDIS_URL") {
        Ok(url) => (None, url),
        Err(_) => {
            let server = RedisServer::start()?;
            let url = server.url();
            (Some(server), url)
        }
    };
    let runtime = Runtime::connect(&url).await?;
    let client = runtime
        .client(LockOptions::default().with_fencing(true))
        .await?;
    let exports = client.semaphore("exports", 3);
    let ttl = Duration::from_secs(30);

    // Two permits at once, then one more: the semaphore is full.
    let pair = exports.acquire(2, ttl).await?;
    let single = exports.try_acquire(1, ttl).await?.expect("one permit left");
    assert!(exports.try_acquire(1, ttl).await?.is_none());
    let state = exports.state().await?;
    println!("{} of {} permits held", state.held, exports.limit());

    // Fences increase across every permit of the semaphore.
    println!(
        "fences: {:?} then {:?}",
        pair.info().fence,
        single.info().fence
    );
    pair.release().await?;

    // Waiting for a permit, then work under one kept alive every ttl/3, as a lock is.
    let permit = exports
        .wait(1, ttl, Deadline::after(Duration::from_secs(10)))
        .await?;
    let rows = exports
        .with_permits(1, KeepAliveOptions::new(ttl), |_lost| async move { 42 })
        .await?;
    println!("work done under a permit: {rows}");
    permit.release().await?;
    single.release().await?;
    assert_eq!(exports.state().await?.held, 0);
    Ok(())
}
