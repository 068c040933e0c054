//! Each behaviour of the seed API, through the component, on a real Redis.

use std::time::Duration;

use dlock_host::{Error, LockOptions};
use dlock_tests::{client, get, pttl, raw, redis};

#[tokio::test]
async fn acquire_sets_the_token_with_a_px_expiry_and_release_deletes_it() {
    let server = redis();
    let (_rt, client) = client(&server).await;
    let mut conn = raw(&server).await;

    let lock = client.acquire("job", Duration::from_secs(30)).await.unwrap();
    let info = lock.info().await.unwrap();
    assert_eq!(get(&mut conn, "job").await.as_deref(), Some(info.token.as_str()));
    let ttl = pttl(&mut conn, "job").await;
    assert!(ttl > 25_000 && ttl <= 30_000, "PTTL {ttl}");
    assert!(lock.is_held().await.unwrap());

    lock.release().await.unwrap();
    assert_eq!(get(&mut conn, "job").await, None);
    assert!(!lock.is_held().await.unwrap());
}
