//! Property tests over the embedding API with the real component on a real Redis: any key,
//! TTL or option gets a result or a clear `InvalidArgument`, never a panic, a trap or a
//! write to Redis.

use std::time::Duration;

use dlock_host::{Error, LockOptions};
use dlock_tests::{dbsize, raw, redis, runtime};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// What the component accepts as a key (see `guest/src/validate.rs`).
fn valid_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= 512 && !key.chars().any(char::is_control)
}

fn keys() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,40}",
        "\\PC{1,40}",
        prop::collection::vec(any::<char>(), 0..600).prop_map(String::from_iter),
        (500usize..530).prop_map(|n| "k".repeat(n)),
    ]
}

fn ttls() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        1u64..100_000,
        Just(1_000_000_000_000),
        Just(1_000_000_000_001),
        any::<u64>(),
    ]
}

#[test]
fn any_key_and_ttl_gets_a_lock_a_busy_answer_or_a_clear_refusal() {
    let tokio = tokio::runtime::Runtime::new().unwrap();
    let server = redis();
    let (rt, conn) = tokio.block_on(async { (runtime(&server).await, raw(&server).await) });
    let client = tokio.block_on(rt.client(LockOptions::default())).unwrap();
    let mut runner = TestRunner::new(Config::with_cases(200));
    runner
        .run(&(keys(), ttls()), |(key, ttl_ms)| {
            let ttl = Duration::from_millis(ttl_ms);
            let valid = valid_key(&key) && (1..=1_000_000_000_000).contains(&ttl_ms);
            let before = tokio.block_on(dbsize(&mut conn.clone()));
            match tokio.block_on(client.try_acquire(&key, ttl)) {
                Ok(Some(lock)) => {
                    prop_assert!(valid, "{key:?} {ttl_ms} was accepted");
                    tokio
                        .block_on(lock.release())
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                }
                Ok(None) => prop_assert!(valid, "{key:?} {ttl_ms} was looked up"),
                Err(Error::InvalidArgument(reason)) => {
                    prop_assert!(!valid, "{key:?} {ttl_ms} refused: {reason}");
                    prop_assert!(!reason.is_empty());
                    prop_assert_eq!(tokio.block_on(dbsize(&mut conn.clone())), before);
                }
                Err(other) => prop_assert!(false, "{key:?} {ttl_ms}: {other:?}"),
            }
            Ok(())
        })
        .unwrap();
    assert_eq!(
        tokio.block_on(dbsize(&mut conn.clone())),
        0,
        "every lock taken was released"
    );
}

#[test]
fn any_options_make_a_client_or_a_clear_refusal() {
    let tokio = tokio::runtime::Runtime::new().unwrap();
    let server = redis();
    let rt = tokio.block_on(runtime(&server));
    let options = (
        any::<u32>(),
        any::<u64>(),
        any::<u64>(),
        any::<bool>(),
        keys(),
        any::<bool>(),
    );
    let mut runner = TestRunner::new(Config::with_cases(100));
    runner
        .run(
            &options,
            |(retry_count, delay_ms, max_ms, jitter, key_prefix, fencing)| {
                let options = LockOptions::default()
                    .with_retry_count(retry_count)
                    .with_retry_delay(Duration::from_millis(delay_ms))
                    .with_max_retry_delay(Duration::from_millis(max_ms))
                    .with_jitter(jitter)
                    .with_key_prefix(key_prefix.clone())
                    .with_fencing(fencing)
                    .with_safety_margin(Duration::ZERO);
                let fits = delay_ms <= u64::from(u32::MAX)
                    && max_ms <= u64::from(u32::MAX)
                    && key_prefix.len() <= 256
                    && !key_prefix.chars().any(char::is_control);
                match tokio.block_on(rt.client(options)) {
                    Ok(client) => {
                        prop_assert!(fits);
                        // The client works: one look at a key is a clear answer.
                        let answer = tokio.block_on(client.is_locked("job"));
                        prop_assert!(matches!(answer, Ok(_) | Err(Error::InvalidArgument(_))));
                    }
                    Err(Error::InvalidArgument(_)) => prop_assert!(!fits),
                    Err(other) => prop_assert!(false, "{other:?}"),
                }
                Ok(())
            },
        )
        .unwrap();
}
