//! Waiting woken by a release, precise release outcomes, a cancelled wait, and work run
//! under a kept-alive lock that stops when the lock is lost.
//!
//! Uses the Redis at `$DLOCK_REDIS_URL` if set; otherwise starts a throwaway `redis-server`.

use std::time::Duration;

use dlock_host::{Deadline, Error, KeepAliveOptions, LockOptions, ReleaseOutcome, Runtime};
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
    let ttl = Duration::from_secs(10);

    // A waiter blocks on the key's signal list; the holder's release wakes it at once.
    let holder = runtime.client(LockOptions::default()).await?;
    let waiter = runtime.client(LockOptions::default()).await?;
    let lock = holder.acquire("report", ttl).await?;
    let waiting = tokio::spawn(async move {
        let deadline = Deadline::after(Duration::from_secs(30));
        waiter.wait_for_lock("report", ttl, deadline).await
    });
    assert_eq!(lock.release().await?, ReleaseOutcome::Released);
    let next = waiting.await??;
    println!("handed over to {}", next.info().token);

    // A wait given up (here at once) ends with `Cancelled`; the client stays usable.
    let other = runtime.client(LockOptions::default()).await?;
    let deadline = Deadline::after(Duration::from_secs(30));
    let gave_up = other
        .wait_for_lock_or_cancel("report", ttl, deadline, async {})
        .await;
    assert!(matches!(gave_up, Err(Error::Cancelled)));
    // The lease ran out, or someone else took the key: release says which.
    println!("release: {:?}", next.release().await?);

    // Work under a lock kept alive every ttl/3; it is stopped if the lock is lost.
    let rows = other
        .with_lock("report", KeepAliveOptions::new(ttl), |lost| async move {
            // Hand `lost` to spawned tasks: `lost.lost().await` completes on a loss.
            assert_eq!(lost.get(), None);
            42
        })
        .await?;
    println!("work done under the lock: {rows}");
    Ok(())
}
