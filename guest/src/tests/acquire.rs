//! Acquiring: attempts, backoff, argument checks, fencing, late grants, keys that are not locks.

use super::*;

#[test]
fn acquire_sends_token_and_ttl_and_returns_a_held_handle() {
    let p = Recorded::new([int(1)]);
    let h = client(&p, defaults()).acquire("job", 30_000).unwrap();
    assert_eq!(
        p.calls.borrow()[0],
        Call {
            op: Op::Acquire,
            keys: vec!["job".into()],
            args: vec!["token-1".into(), "30000".into()],
            at_ms: 1000,
        }
    );
    let info = h.info();
    assert!(h.is_held());
    assert_eq!((info.key.as_str(), info.token.as_str()), ("job", "token-1"));
    assert_eq!(info.fence, None);
    assert_eq!(info.expires_at_ms - info.acquired_at_ms, 30_000);
}

#[test]
fn acquire_backs_off_exponentially_then_gives_up() {
    let p = Recorded::new([int(0), int(0), int(0), int(0)]);
    let opts = LockOptions {
        retry_count: 3,
        ..defaults()
    };
    let err = client(&p, opts).acquire("job", 1000).err().unwrap();
    assert!(matches!(err, Error::NotAcquired));
    assert_eq!(*p.sleeps_ms.borrow(), [100.0, 200.0, 400.0]);
    assert_eq!(p.ops(), [Op::Acquire; 4]);
    // One token for the whole call: a retry can recognise its own earlier success.
    assert!(p.calls.borrow().iter().all(|c| c.args[0] == "token-1"));
}

#[test]
fn acquire_caps_delays_and_applies_full_jitter() {
    let p = Recorded::new([int(0), int(0), int(0), int(1)]);
    let opts = LockOptions {
        retry_count: 3,
        retry_delay_ms: 300,
        max_retry_delay_ms: 500,
        ..defaults()
    };
    client(&p, opts).acquire("job", 1000).unwrap();
    assert_eq!(*p.sleeps_ms.borrow(), [300.0, 500.0, 500.0]);

    let p = Recorded::new([int(0), int(1)]);
    let opts = LockOptions {
        jitter: true,
        ..defaults()
    };
    client(&p, opts).acquire("job", 1000).unwrap();
    // random_u64 is u64::MAX here: MAX % 101 is the jittered delay in [0, 100].
    assert_eq!(*p.sleeps_ms.borrow(), [(u64::MAX % 101) as f64]);
}

#[test]
fn transient_errors_are_retried_and_a_lost_reply_is_recognised() {
    // The first attempt times out (it may have set the key); the retry reports the key is ours.
    let p = Recorded::new([
        Err(RedisError::Timeout),
        Err(RedisError::Unavailable("reset".into())),
        int(1),
    ]);
    let h = client(&p, defaults()).acquire("job", 1000).unwrap();
    assert!(h.is_held());
    assert_eq!(p.ops(), [Op::Acquire; 3]);
}

#[test]
fn permanent_errors_end_acquire_at_once() {
    let p = Recorded::new([Err(RedisError::Denied("script not allowed".into()))]);
    let err = client(&p, defaults()).acquire("job", 1000).err().unwrap();
    assert!(matches!(err, Error::Redis(RedisError::Denied(_))));
    assert_eq!(p.ops(), [Op::Acquire]);
    assert!(p.sleeps_ms.borrow().is_empty());
}

#[test]
fn a_script_error_ends_acquire_at_once_and_gives_the_token_back() {
    let p = Recorded::new([
        Err(RedisError::Rejected("ERR value is not an integer".into())),
        int(0),
    ]);
    let err = client(&p, defaults()).acquire("job", 1000).err().unwrap();
    assert!(matches!(err, Error::Redis(RedisError::Rejected(_))));
    assert_eq!(p.ops(), [Op::Acquire, Op::Release]);
    assert_eq!(p.calls.borrow()[1].args, ["token-1", "quiet"]);
    assert!(p.sleeps_ms.borrow().is_empty());
}

#[test]
fn giving_up_after_an_unknown_outcome_cleans_up_by_token() {
    let p = Recorded::new([Err(RedisError::Timeout), int(0), int(1)]);
    let opts = LockOptions {
        retry_count: 1,
        ..defaults()
    };
    let err = client(&p, opts).acquire("job", 1000).err().unwrap();
    assert!(matches!(err, Error::NotAcquired));
    let calls = p.calls.borrow();
    assert_eq!(calls[2].op, Op::Release);
    assert_eq!(calls[2].keys, ["job"]);
    assert_eq!(calls[2].args, ["token-1", "quiet"]);
}

#[test]
fn a_transient_error_on_the_last_attempt_is_reported_as_such() {
    let p = Recorded::new([int(0), Err(RedisError::Unavailable("down".into())), int(0)]);
    let opts = LockOptions {
        retry_count: 1,
        ..defaults()
    };
    let err = client(&p, opts).acquire("job", 1000).err().unwrap();
    assert!(matches!(err, Error::Redis(RedisError::Unavailable(_))));
}

#[test]
fn try_acquire_makes_one_attempt_and_busy_is_none() {
    let p = Recorded::new([int(0)]);
    assert!(
        client(&p, defaults())
            .try_acquire("job", 1000)
            .unwrap()
            .is_none()
    );
    assert_eq!(p.ops(), [Op::Acquire]);
}

#[test]
fn wait_for_lock_caps_backoff_at_one_second_and_never_sleeps_past_the_deadline() {
    let p = Recorded::new(std::iter::repeat_with(|| int(0)).take(64));
    let opts = LockOptions {
        retry_delay_ms: 300,
        max_retry_delay_ms: 60_000,
        ..defaults()
    };
    let err = client(&p, opts)
        .wait_for_lock("job", 2500, 1000)
        .err()
        .unwrap();
    assert!(matches!(err, Error::NotAcquired));
    // 300, 600, then 1000 capped, then what is left of 2500 ms.
    assert_eq!(*p.sleeps_ms.borrow(), [300.0, 600.0, 1000.0, 600.0]);
    // The last attempt happens exactly at the deadline.
    let calls = p.calls.borrow();
    assert_eq!(calls.last().unwrap().at_ms - calls[0].at_ms, 2500);
}

#[test]
fn wait_for_lock_counts_time_spent_in_redis_calls() {
    let p = Recorded::new(std::iter::repeat_with(|| int(0)).take(64));
    p.call_ns.set(70 * MS);
    client(&p, defaults())
        .wait_for_lock("job", 1000, 1000)
        .err()
        .unwrap();
    let calls = p.calls.borrow();
    let total: f64 = p.sleeps_ms.borrow().iter().sum();
    let redis_ms = 70.0 * calls.len() as f64;
    // The final attempt starts at the deadline (sleeps plus call time add up to it).
    assert_eq!(total + redis_ms - 70.0, 1000.0);
}

#[test]
fn wait_for_lock_returns_as_soon_as_the_lock_is_free() {
    let p = Recorded::new([int(0), int(0), int(1)]);
    let h = client(&p, defaults())
        .wait_for_lock("job", 10_000, 1000)
        .unwrap();
    assert!(h.is_held());
    assert_eq!(*p.sleeps_ms.borrow(), [100.0, 200.0]);
}

#[test]
fn wait_for_lock_with_zero_timeout_is_one_attempt() {
    let p = Recorded::new([int(0)]);
    let err = client(&p, defaults())
        .wait_for_lock("job", 0, 1000)
        .err()
        .unwrap();
    assert!(matches!(err, Error::NotAcquired));
    assert_eq!(p.ops(), [Op::Acquire]);
}

#[test]
fn bad_arguments_never_reach_redis() {
    let p = Recorded::new([]);
    let c = client(&p, defaults());
    assert!(matches!(
        c.acquire("", 1000),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        c.acquire("job", 0),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        c.try_acquire("job", u64::MAX),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        c.wait_for_lock("job", u64::MAX, 10),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        c.is_locked("a\nb"),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        c.attach("job", ""),
        Err(Error::InvalidArgument(_))
    ));
    for delays in [(0, 5000), (100, 0)] {
        let options = LockOptions {
            retry_delay_ms: delays.0,
            max_retry_delay_ms: delays.1,
            ..defaults()
        };
        assert!(
            matches!(
                Client::new(p.clone(), options),
                Err(Error::InvalidArgument(_))
            ),
            "{delays:?}"
        );
    }
    let prefix = LockOptions {
        key_prefix: "bad\0".into(),
        ..defaults()
    };
    assert!(matches!(
        Client::new(p.clone(), prefix),
        Err(Error::InvalidArgument(_))
    ));
    assert!(p.calls.borrow().is_empty());
}

#[test]
fn the_prefix_is_part_of_the_redis_key_but_not_of_the_reported_key() {
    let p = Recorded::new([int(1)]);
    let opts = LockOptions {
        key_prefix: "app:".into(),
        ..defaults()
    };
    let h = client(&p, opts).acquire("job", 1000).unwrap();
    assert_eq!(p.calls.borrow()[0].keys, ["app:job"]);
    assert_eq!(h.info().key, "job");
}

#[test]
fn fencing_passes_the_counter_key_and_reports_the_fence() {
    let p = Recorded::new([int(42)]);
    let opts = LockOptions {
        fencing: true,
        ..defaults()
    };
    let h = client(&p, opts).acquire("job", 1000).unwrap();
    assert_eq!(p.calls.borrow()[0].keys, ["job", "{job}:fence"]);
    assert_eq!(h.info().fence, Some(42));
}

#[test]
fn a_grant_that_arrives_after_its_lease_ran_out_is_given_back_not_reported() {
    // Each Redis call takes 1500 ms of virtual time; the lease is 1000 ms.
    let p = Recorded::new([int(1), int(1)]);
    p.call_ns.set(1500 * MS);
    let opts = LockOptions {
        retry_count: 0,
        ..defaults()
    };
    let err = client(&p, opts).acquire("job", 1000).err().unwrap();
    assert!(matches!(err, Error::GrantedTooLate), "{err:?}");
    assert_eq!(p.ops(), [Op::Acquire, Op::Release]);
    assert_eq!(p.calls.borrow()[1].args, ["token-1", "quiet"]);
}

#[test]
fn a_late_grant_on_try_acquire_is_reported_as_such_not_as_busy() {
    let p = Recorded::new([int(1), int(1)]);
    p.call_ns.set(1500 * MS);
    let err = client(&p, defaults())
        .try_acquire("job", 1000)
        .err()
        .unwrap();
    assert!(matches!(err, Error::GrantedTooLate), "{err:?}");
    assert_eq!(p.ops(), [Op::Acquire, Op::Release]);
}

#[test]
fn a_late_grant_followed_by_a_busy_lock_ends_as_not_acquired() {
    let p = Recorded::new([int(1), int(1), int(0)]);
    p.call_ns.set(1500 * MS);
    let opts = LockOptions {
        retry_count: 1,
        ..defaults()
    };
    let err = client(&p, opts).acquire("job", 1000).err().unwrap();
    assert!(matches!(err, Error::NotAcquired), "{err:?}");
}

#[test]
fn fence_counters_are_refused_as_lock_keys_without_calling_redis() {
    let p = Recorded::new([]);
    let plain = client(&p, defaults());
    for (counter, what) in [
        ("{job}:fence", "fence counter"),
        ("app:{job}::fence", "fence counter"),
        ("{job}::fence", "fence counter"),
        ("{a{b}:fence", "fence counter"),
        ("{job}:signal", "signal list"),
        ("app:{job}::waiters", "waiters' mark"),
    ] {
        for err in [
            plain.acquire(counter, 1000).err(),
            plain.try_acquire(counter, 1000).err(),
            plain.attach(counter, "t").err(),
            plain.is_locked(counter).err(),
        ] {
            assert!(
                matches!(&err, Some(Error::InvalidArgument(m)) if m.contains(what)),
                "{counter}: {err:?}"
            );
        }
    }
    // Under a prefix, the Redis key is what counts.
    let prefixed = client(
        &p,
        LockOptions {
            key_prefix: "app:".into(),
            ..defaults()
        },
    );
    assert!(matches!(
        prefixed.acquire("{job}::fence", 1000),
        Err(Error::InvalidArgument(_))
    ));
    assert!(p.calls.borrow().is_empty());
}

#[test]
fn keys_that_merely_end_in_fence_are_ordinary_locks() {
    let p = Recorded::new([int(1), int(1)]);
    let c = client(&p, defaults());
    c.acquire("job:fence", 1000).unwrap();
    c.acquire("{}:fence", 1000).unwrap();
}

#[test]
fn a_key_of_another_type_is_not_a_lock_and_is_not_retried() {
    let p = Recorded::new([int(-1)]);
    let err = client(&p, defaults()).acquire("job", 1000).err().unwrap();
    assert!(matches!(err, Error::NotALock), "{err:?}");
    assert_eq!(p.ops(), [Op::Acquire]);
    assert!(p.sleeps_ms.borrow().is_empty());
}
