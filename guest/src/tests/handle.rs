//! Lock handles: release, extend, validity on the monotonic clock, status.

use super::*;

#[test]
fn release_succeeds_once_then_fails_without_calling_redis() {
    let p = Recorded::new([int(1), int(1)]);
    let h = client(&p, defaults()).acquire("job", 1000).unwrap();
    assert!(matches!(h.release(), Ok(ReleaseOutcome::Released)));
    assert!(!h.is_held());
    assert!(matches!(h.release(), Err(Error::NotHeld)));
    assert!(matches!(h.extend(1000), Err(Error::NotHeld)));
    assert_eq!(p.ops(), [Op::Acquire, Op::Release]);
    // The release sends the lock key alone (the script names the signal list and the waiters'
    // mark) and no `quiet`, so it wakes one waiter.
    assert_eq!(p.calls.borrow()[1].keys, release_keys("job"));
    assert_eq!(p.calls.borrow()[1].args, ["token-1"]);
}

#[test]
fn extend_tells_an_expired_key_from_one_taken_over_and_the_handle_remembers() {
    let p = Recorded::new([int(1), int(0), int(1), int(-1)]);
    let c = client(&p, defaults());
    let h = c.acquire("job", 1000).unwrap();
    assert!(matches!(h.extend(500), Err(Error::Expired)));
    assert!(!h.is_held());
    assert!(matches!(h.status(), HandleStatus::Lost));
    assert!(
        matches!(h.extend(500), Err(Error::Expired)),
        "a lost handle answers without calling Redis"
    );
    let h = c.acquire("job", 1000).unwrap();
    assert!(matches!(h.extend(500), Err(Error::TakenOver)));
    assert!(matches!(h.extend(500), Err(Error::TakenOver)));
    assert_eq!(p.ops(), [Op::Acquire, Op::Extend, Op::Acquire, Op::Extend]);
}

#[test]
fn release_reports_what_it_found_and_a_lost_handle_may_still_release() {
    let p = Recorded::new([int(1), int(0), int(1), int(-1), int(1), int(0), int(1)]);
    let c = client(&p, defaults());
    let h = c.acquire("job", 1000).unwrap();
    assert!(matches!(h.release(), Ok(ReleaseOutcome::Expired)));
    assert!(matches!(h.status(), HandleStatus::Lost));
    let h = c.acquire("job", 1000).unwrap();
    assert!(matches!(h.release(), Ok(ReleaseOutcome::TakenOver)));
    // Lost by extend: the release still runs the token-checked script (the key may still be
    // ours if the extend was refused for want of validity).
    let h = c.acquire("job", 1000).unwrap();
    assert!(matches!(h.extend(1000), Err(Error::Expired)));
    assert!(matches!(h.release(), Ok(ReleaseOutcome::Released)));
    assert!(matches!(h.status(), HandleStatus::Released));
}

#[test]
fn a_release_that_failed_with_an_unknown_outcome_can_be_retried() {
    let p = Recorded::new([int(1), Err(RedisError::Timeout), int(1)]);
    let h = client(&p, defaults()).acquire("job", 1000).unwrap();
    assert!(matches!(
        h.release(),
        Err(Error::Redis(RedisError::Timeout))
    ));
    h.release().unwrap();
    assert!(matches!(h.status(), HandleStatus::Released));
}

#[test]
fn a_release_refused_for_good_keeps_the_handle_held() {
    let p = Recorded::new([int(1), Err(RedisError::Denied("rate".into())), int(1)]);
    let h = client(&p, defaults()).acquire("job", 30_000).unwrap();
    assert!(matches!(
        h.release(),
        Err(Error::Redis(RedisError::Denied(_)))
    ));
    assert!(
        h.is_held(),
        "nothing reached Redis: the lock is still the handle's"
    );
    h.release().unwrap();
}

#[test]
fn extend_rejects_zero_before_checking_anything() {
    let p = Recorded::new([int(1), int(1)]);
    let h = client(&p, defaults()).acquire("job", 1000).unwrap();
    assert!(matches!(h.extend(0), Err(Error::InvalidArgument(_))));
    h.release().unwrap();
    assert!(matches!(h.extend(0), Err(Error::InvalidArgument(_))));
}

#[test]
fn validity_runs_on_the_monotonic_clock_from_the_moment_acquire_was_sent() {
    let p = Recorded::new([int(1), int(1), int(1)]);
    p.call_ns.set(40 * MS);
    let h = client(&p, defaults()).acquire("job", 1000).unwrap();
    p.advance_ms(959);
    assert!(h.is_held());
    p.advance_ms(1);
    assert!(
        !h.is_held(),
        "validity counts from when the acquire was sent"
    );
    // Too late to extend: the lock may already be someone else's.
    assert!(matches!(h.extend(2000), Err(Error::Expired)));

    let h = client(&p, defaults()).acquire("job", 1000).unwrap();
    p.advance_ms(500);
    // An extend renews validity from when it was sent, and the wall-clock expiry with it.
    let sent_ms = 1_700_000_000_000 + p.now_ns.get() / MS;
    h.extend(2000).unwrap();
    p.advance_ms(1900);
    assert!(h.is_held());
    assert_eq!(h.info().expires_at_ms, sent_ms + 2000);
}

#[test]
fn attached_handles_act_on_the_given_token_and_learn_validity_from_extend() {
    let p = Recorded::new([int(1), int(1)]);
    let h = client(&p, defaults()).attach("job", "their-token").unwrap();
    assert!(!h.is_held());
    h.extend(5000).unwrap();
    assert!(h.is_held());
    h.release().unwrap();
    let calls = p.calls.borrow();
    assert_eq!(calls[0].args, ["their-token", "5000"]);
    assert_eq!(calls[1].args, ["their-token"]);
}

#[test]
fn key_state_maps_pttl() {
    let p = Recorded::new([int(-2), int(-1), int(1234), int(0), int(-7)]);
    let c = client(&p, defaults());
    assert!(matches!(c.key_state("k").unwrap(), KeyState::Unlocked));
    assert!(matches!(c.key_state("k").unwrap(), KeyState::Persistent));
    assert!(matches!(
        c.key_state("k").unwrap(),
        KeyState::Expiring(1234)
    ));
    assert!(c.is_locked("k").unwrap());
    assert!(matches!(
        c.key_state("k"),
        Err(Error::Redis(RedisError::Rejected(_)))
    ));
}

#[test]
fn unexpected_replies_are_errors_not_successes() {
    let p = Recorded::new([Ok(Value::Status("OK".into())), int(0), Ok(Value::Nil)]);
    let opts = LockOptions {
        retry_count: 0,
        ..defaults()
    };
    let c = client(&p, opts);
    assert!(matches!(
        c.acquire("job", 10),
        Err(Error::Redis(RedisError::Rejected(_)))
    ));
    assert!(matches!(
        c.is_locked("job"),
        Err(Error::Redis(RedisError::Rejected(_)))
    ));
}

#[test]
fn an_extend_with_an_unknown_outcome_can_only_shorten_validity() {
    let p = Recorded::new([int(1), Err(RedisError::Timeout), Err(RedisError::Timeout)]);
    let h = client(&p, defaults()).acquire("job", 10_000).unwrap();
    // A shorter extend that timed out may have applied: validity shrinks to it.
    assert!(matches!(
        h.extend(1000),
        Err(Error::Redis(RedisError::Timeout))
    ));
    p.advance_ms(500);
    assert!(h.is_held());
    // A longer one that timed out may not have applied: validity does not grow.
    assert!(matches!(
        h.extend(60_000),
        Err(Error::Redis(RedisError::Timeout))
    ));
    p.advance_ms(500);
    assert!(!h.is_held(), "the lease may have been cut to 1000 ms");
    assert!(matches!(h.status(), HandleStatus::Expired));
}

#[test]
fn extend_refuses_without_calling_redis_once_validity_is_within_the_margin() {
    let p = Recorded::new([int(1), int(1)]);
    let opts = LockOptions {
        safety_margin_ms: 200,
        ..defaults()
    };
    let h = client(&p, opts).acquire("job", 1000).unwrap();
    p.advance_ms(700);
    h.extend(1000).unwrap();
    p.advance_ms(801);
    assert!(h.is_held());
    assert!(matches!(h.extend(1000), Err(Error::Expired)));
    assert!(matches!(h.status(), HandleStatus::Lost));
    assert!(
        matches!(h.extend(1000), Err(Error::Expired)),
        "a lost handle stays lost"
    );
    assert_eq!(p.ops(), [Op::Acquire, Op::Extend]);
}

#[test]
fn status_follows_the_handle_through_its_life() {
    let p = Recorded::new([int(1), int(1), int(1), int(0)]);
    let c = client(&p, defaults());
    let h = c.acquire("job", 1000).unwrap();
    assert!(matches!(h.status(), HandleStatus::Held));
    p.advance_ms(1000);
    assert!(matches!(h.status(), HandleStatus::Expired));
    let attached = c.attach("job", "t").unwrap();
    assert!(matches!(attached.status(), HandleStatus::Attached));
    attached.extend(1000).unwrap();
    assert!(matches!(attached.status(), HandleStatus::Held));
    attached.release().unwrap();
    assert!(matches!(attached.status(), HandleStatus::Released));
    let other = c.attach("job", "t2").unwrap();
    assert!(matches!(other.release(), Ok(ReleaseOutcome::Expired)));
    assert!(matches!(other.status(), HandleStatus::Lost));
}

#[test]
fn a_release_whose_outcome_is_unknown_no_longer_claims_the_lock_but_may_be_retried() {
    let p = Recorded::new([int(1), Err(RedisError::Timeout), int(0)]);
    let h = client(&p, defaults()).acquire("job", 30_000).unwrap();
    assert!(matches!(
        h.release(),
        Err(Error::Redis(RedisError::Timeout))
    ));
    assert!(!h.is_held());
    assert!(!matches!(h.info().status, HandleStatus::Held));
    assert!(matches!(h.status(), HandleStatus::Releasing));
    // Extending a lock the caller asked to give up is refused without calling Redis.
    assert!(matches!(h.extend(1000), Err(Error::NotHeld)));
    // The retry runs the token-checked script again; here the first attempt had deleted it,
    // which is what a key found gone most likely means: released, idempotently.
    assert!(matches!(h.release(), Ok(ReleaseOutcome::Released)));
    assert_eq!(p.ops(), [Op::Acquire, Op::Release, Op::Release]);
    assert!(matches!(h.status(), HandleStatus::Released));
}
