//! Redis going away: calls fail promptly with the classified error, and the same runtime
//! works again once Redis is back.

use std::time::Duration;

use dlock_host::{Error, LockOptions, Policy, Runtime};
use dlock_tests::{RedisServer, client, redis, signal_server};
use rustix::process::Signal;

/// Hang guard for calls that must come back promptly (not a timing assertion).
async fn promptly<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .expect("the call hung")
}

#[tokio::test]
async fn a_stopped_redis_gives_unavailable_and_a_restarted_one_works_again() {
    let mut server = redis();
    let (_rt, client) = client(&server).await;
    let lock = client
        .acquire("before", Duration::from_secs(30))
        .await
        .unwrap();
    lock.release().await.unwrap();

    server.stop();
    let err = promptly(client.try_acquire("job", Duration::from_secs(30)))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, Error::RedisUnavailable(_)), "{err:?}");
    assert!(err.is_retryable());
    // acquire retries transient errors, then reports the last one.
    let err = promptly(client.acquire("job", Duration::from_secs(30)))
        .await
        .err()
        .unwrap();
    assert!(err.is_retryable(), "{err:?}");

    server.restart().unwrap();
    // The connection manager reconnects in the background; the first call may still see the
    // old connection fail, so allow a few attempts.
    let mut attempts = 0;
    let lock = loop {
        attempts += 1;
        match client.try_acquire("job", Duration::from_secs(30)).await {
            Ok(Some(lock)) => break lock,
            Err(e) if e.is_retryable() && attempts < 50 => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            other => panic!("after restart: {:?}", other.map(|l| l.is_some())),
        }
    };
    lock.release().await.unwrap();
}

#[tokio::test]
async fn a_frozen_redis_gives_timeout_and_a_thawed_one_answers() {
    let server = redis();
    let policy = Policy::default().with_command_timeout(Duration::from_millis(300));
    let rt = Runtime::builder(server.url())
        .with_policy(policy)
        .build()
        .await
        .unwrap();
    let client = rt.client(LockOptions::default()).await.unwrap();
    client.is_locked("job").await.unwrap();

    signal_server(&server, Signal::STOP);
    let err = promptly(client.try_acquire("job", Duration::from_secs(30)))
        .await
        .err()
        .unwrap();
    signal_server(&server, Signal::CONT);
    assert!(matches!(err, Error::RedisTimeout), "{err:?}");

    // The timed-out attempt may have set the key after all; the lock must end up either free
    // or held by the attempt that timed out, and a new client must see a consistent state.
    let other = rt.client(LockOptions::default()).await.unwrap();
    let state = promptly(other.key_state("job")).await.unwrap();
    assert!(matches!(
        state,
        dlock_host::KeyState::Unlocked | dlock_host::KeyState::Expiring(_)
    ));
}

#[tokio::test]
async fn connecting_to_nothing_fails_with_the_url_and_never_hangs() {
    // A server started and stopped leaves a port that nothing listens on.
    let mut server = RedisServer::start().unwrap();
    let url = server.url();
    server.stop();
    let err = promptly(Runtime::connect(&url)).await.err().unwrap();
    match &err {
        Error::Connect { url: shown, .. } => assert_eq!(shown, &url),
        other => panic!("expected a connect error, got {other:?}"),
    }
    let err = promptly(Runtime::connect("redis://:hunter2@127.0.0.1:1"))
        .await
        .err()
        .unwrap();
    let text = err.to_string();
    assert!(text.contains("redis://:***@127.0.0.1:1"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

#[tokio::test]
async fn a_malformed_url_is_invalid_input() {
    let err = Runtime::connect("http://example.com").await.err().unwrap();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
}
