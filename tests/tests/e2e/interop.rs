//! Other clients of the same convention (a plain `SET key token NX PX`, as redis-py's `Lock`,
//! redsync and node-redlock write it) and dlock exclude each other.

use std::time::Duration;

use dlock_host::{Error, LockOptions, Policy, Runtime};
use dlock_tests::{client, get, quick_options, raw, redis};

async fn set_nx_px(conn: &mut redis::aio::MultiplexedConnection, key: &str, token: &str) -> bool {
    let reply: Option<String> = redis::cmd("SET")
        .arg(key)
        .arg(token)
        .arg("NX")
        .arg("PX")
        .arg(30_000)
        .query_async(conn)
        .await
        .unwrap();
    reply.is_some()
}

#[tokio::test]
async fn a_foreign_lock_makes_dlock_busy_and_survives_dlock_release_attempts() {
    let server = redis();
    let rt = Runtime::builder(server.url())
        .with_policy(Policy::default().with_foreign_tokens(true))
        .build()
        .await
        .unwrap();
    let client = rt.client(LockOptions::default()).await.unwrap();
    let mut conn = raw(&server).await;
    assert!(set_nx_px(&mut conn, "shared", "redis-py-token").await);

    assert!(
        client
            .try_acquire("shared", Duration::from_secs(5))
            .await
            .unwrap()
            .is_none()
    );
    let quick = rt.client(quick_options(2)).await.unwrap();
    assert!(matches!(
        quick.acquire("shared", Duration::from_secs(5)).await,
        Err(Error::NotAcquired)
    ));
    let wrong = client.attach("shared", "some-other-token").await.unwrap();
    assert_eq!(
        wrong.release().await.unwrap(),
        dlock_host::ReleaseOutcome::TakenOver
    );
    assert_eq!(
        get(&mut conn, "shared").await.as_deref(),
        Some("redis-py-token")
    );

    // With the right token, the foreign lock can be released through dlock (same convention).
    let right = client.attach("shared", "redis-py-token").await.unwrap();
    right.release().await.unwrap();
    assert_eq!(get(&mut conn, "shared").await, None);
}

#[tokio::test]
async fn a_dlock_lock_makes_foreign_clients_busy() {
    let server = redis();
    let (_rt, client) = client(&server).await;
    let mut conn = raw(&server).await;
    let lock = client
        .acquire("shared", Duration::from_secs(30))
        .await
        .unwrap();
    assert!(!set_nx_px(&mut conn, "shared", "redsync-token").await);
    lock.release().await.unwrap();
    assert!(set_nx_px(&mut conn, "shared", "redsync-token").await);
}

#[tokio::test]
async fn foreign_tokens_are_refused_unless_the_policy_allows_them() {
    let server = redis();
    let (_rt, client) = client(&server).await;
    let mut conn = raw(&server).await;
    assert!(set_nx_px(&mut conn, "shared", "redis-py-token").await);
    let foreign = client.attach("shared", "redis-py-token").await.unwrap();
    let err = foreign.release().await.err().unwrap();
    assert!(
        matches!(&err, Error::Denied(m) if m.contains("UUID")),
        "{err:?}"
    );
    assert_eq!(
        get(&mut conn, "shared").await.as_deref(),
        Some("redis-py-token")
    );
}
