//! Acquire, extend and release one lock: the embedding API in a dozen lines.
//!
//! Uses the Redis at `$DLOCK_REDIS_URL` if set; otherwise starts a throwaway `redis-server`.

use std::time::Duration;

use dlock_host::{LockOptions, Runtime};
use dlock_testing::RedisServer;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (_server, url) = match std::env::var("DLOCK_REDIS_URL") {
        Ok(url) => (None, url),
        Err(_) => {
            let server = RedisServer::start()?;
            let url = server.url();
            println!("started redis-server on {url}");
            (Some(server), url)
        }
    };

    let runtime = Runtime::connect(&url).await?;
    let client = runtime.client(LockOptions::default()).await?;
    let lock = client
        .acquire("quickstart", Duration::from_secs(10))
        .await?;
    let info = lock.info();
    println!("acquired {} with token {}", info.key, info.token);

    lock.extend(Duration::from_secs(30)).await?;
    println!(
        "extended; locked in Redis: {:?}",
        client.key_state("quickstart").await?
    );

    lock.release().await?;
    println!(
        "released; locked now: {}",
        client.is_locked("quickstart").await?
    );
    Ok(())
}
