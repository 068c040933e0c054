//! Calls whose outcome is unknown (a timeout, a connection that went silent): what the handle
//! claims afterwards, and how the host gets back to a working connection.

use std::time::Duration;

use dlock_host::{Error, HandleStatus, LockOptions, ReleaseOutcome};
use dlock_tests::proxy::Fault;
use dlock_tests::{exists, raw, redis, via_proxy};

const SECOND: Duration = Duration::from_secs(1);

#[tokio::test]
async fn a_release_whose_outcome_is_unknown_no_longer_claims_the_lock_and_can_be_retried() {
    let server = redis();
    let (proxy, runtime) = via_proxy(&server, Duration::from_millis(300)).await;
    let client = runtime.client(LockOptions::default()).await.unwrap();
    let lock = client.acquire("job", 30 * SECOND).await.unwrap();

    proxy.set_fault(Fault::Blackhole);
    let err = lock.release().await.err().unwrap();
    assert!(matches!(err, Error::RedisTimeout), "{err:?}");
    assert!(!lock.is_held());
    let info = lock.info();
    assert_eq!(info.status, HandleStatus::Releasing);
    assert_ne!(info.status, HandleStatus::Held);
    assert!(matches!(
        lock.extend(30 * SECOND).await,
        Err(Error::NotHeld)
    ));

    // The blackholed release never reached Redis: retried on a working connection, it
    // deletes the key.
    proxy.set_fault(Fault::None);
    proxy.reset_all();
    let mut released = false;
    for _ in 0..10 {
        match lock.release().await {
            Ok(outcome) => {
                assert_eq!(outcome, ReleaseOutcome::Released);
                released = true;
                break;
            }
            Err(e) => assert!(e.is_retryable(), "{e:?}"),
        }
    }
    assert!(released, "the retried release never got through");
    assert_eq!(lock.info().status, HandleStatus::Released);
    assert!(!exists(&mut raw(&server).await, "job").await);
}

/// A connection that goes silent without a reset (a vanished peer, a firewall dropping
/// packets) is replaced after a few timeouts in a row, and calls recover on a fresh one.
#[tokio::test]
async fn a_silently_dead_connection_is_replaced_after_a_few_timeouts() {
    let server = redis();
    let (proxy, runtime) = via_proxy(&server, Duration::from_millis(200)).await;
    let client = runtime.client(LockOptions::default()).await.unwrap();
    assert!(!client.is_locked("job").await.unwrap());

    proxy.silence_open();
    let mut timeouts = 0;
    let recovered = loop {
        match client.is_locked("job").await {
            Ok(locked) => break locked,
            Err(Error::RedisTimeout) if timeouts < 10 => timeouts += 1,
            Err(e) => panic!("after {timeouts} timeouts: {e:?}"),
        }
    };
    assert!(!recovered);
    assert!(
        (1..=3).contains(&timeouts),
        "{timeouts} timeouts before the connection was replaced"
    );
}
