//! Waiting for a release signal instead of polling.

use super::*;

#[test]
fn a_waiter_marks_itself_and_wakes_on_a_signalled_release_instead_of_sleeping() {
    let p = Recorded::new([busy_for(60_000), int(1)]);
    p.wake_with([Ok(Wake::Released)]);
    let h = client(&p, defaults())
        .wait_for_lock("job", 30_000, 1000)
        .unwrap();
    assert!(h.is_held());
    let calls = p.calls.borrow();
    // Each attempt marks the waiter for up to the longest wait (1 s for wait-for-lock).
    assert_eq!(calls[0].keys, ["job", "{job}:waiters"]);
    assert_eq!(calls[0].args, ["token-1", "1000", "1000"]);
    assert_eq!(*p.waits.borrow(), [("job".to_owned(), 100, true)]);
    assert!(p.sleeps_ms.borrow().is_empty(), "no backoff sleep");
    assert_eq!(calls[1].at_ms, calls[0].at_ms, "woken at once");
}

#[test]
fn a_wait_never_outlasts_the_holders_lease() {
    let p = Recorded::new([busy_for(30), busy_for(-1), int(1)]);
    p.wake_with([Ok(Wake::TimedOut), Ok(Wake::TimedOut)]);
    client(&p, defaults())
        .wait_for_lock("job", 30_000, 1000)
        .unwrap();
    // 30 ms left on the lease: wait one more; no expiry: the backoff delay.
    let waits: Vec<u64> = p.waits.borrow().iter().map(|w| w.1).collect();
    assert_eq!(waits, [31, 200]);
}

#[test]
fn a_fenced_waiter_passes_the_counter_then_the_mark() {
    let p = Recorded::new([int(7)]);
    let opts = LockOptions {
        fencing: true,
        ..defaults()
    };
    let h = client(&p, opts).wait_for_lock("job", 1000, 1000).unwrap();
    assert_eq!(h.info().fence, Some(7));
    assert_eq!(
        p.calls.borrow()[0].keys,
        ["job", "{job}:fence", "{job}:waiters"]
    );
}

#[test]
fn a_cancelled_wait_ends_the_call_and_gives_back_an_unanswered_attempts_token() {
    let p = Recorded::new([Err(RedisError::Timeout), busy_for(5000), int(0)]);
    p.wake_with([Ok(Wake::TimedOut), Ok(Wake::Cancelled)]);
    let err = client(&p, defaults())
        .wait_for_lock("job", 30_000, 1000)
        .err()
        .unwrap();
    assert!(matches!(err, Error::Cancelled), "{err:?}");
    assert_eq!(p.ops(), [Op::Acquire, Op::Acquire, Op::Release]);
    assert_eq!(p.calls.borrow()[2].args, ["token-1", "quiet"]);
}

#[test]
fn polling_waits_ask_the_host_only_for_a_cancellable_pause_and_sleep_when_it_has_none() {
    let p = Recorded::new([int(0), int(0), int(1)]);
    p.wake_with([Ok(Wake::TimedOut)]);
    client(&p, waiting(WakeOnRelease::Never))
        .wait_for_lock("job", 30_000, 1000)
        .unwrap();
    assert_eq!(p.calls.borrow()[0].keys, ["job"], "no waiters' mark");
    assert_eq!(p.calls.borrow()[0].args.len(), 2);
    assert_eq!(
        *p.waits.borrow(),
        [
            ("job".to_owned(), 100, false),
            ("job".to_owned(), 200, false)
        ]
    );
    // The first pause was the host's; the host did not support the second: a sleep.
    assert_eq!(*p.sleeps_ms.borrow(), [200.0]);
}

#[test]
fn acquire_listens_for_releases_only_when_asked_to() {
    let p = Recorded::new([int(0), int(1)]);
    client(&p, defaults()).acquire("job", 1000).unwrap();
    assert_eq!(p.calls.borrow()[0].keys, ["job"]);
    assert!(p.waits.borrow().iter().all(|w| !w.2));

    let p = Recorded::new([busy_for(60_000), int(1)]);
    p.wake_with([Ok(Wake::Released)]);
    client(&p, waiting(WakeOnRelease::Always))
        .acquire("job", 1000)
        .unwrap();
    let calls = p.calls.borrow();
    // acquire's longest wait is its maximum retry delay (5 s by default).
    assert_eq!(calls[0].keys, ["job", "{job}:waiters"]);
    assert_eq!(calls[0].args[2], "5000");
    assert_eq!(*p.waits.borrow(), [("job".to_owned(), 100, true)]);
}

#[test]
fn a_host_error_on_waiting_falls_back_to_sleeping() {
    let p = Recorded::new([busy_for(60_000), int(1)]);
    p.wake_with([Err(RedisError::Denied("no connection free".into()))]);
    client(&p, defaults())
        .wait_for_lock("job", 30_000, 1000)
        .unwrap();
    assert_eq!(*p.sleeps_ms.borrow(), [100.0]);
}

#[test]
fn a_key_that_can_have_no_companions_is_polled() {
    let p = Recorded::new([int(0), int(1), int(0)]);
    let h = client(&p, defaults())
        .wait_for_lock("a}b", 30_000, 1000)
        .unwrap();
    assert_eq!(p.calls.borrow()[0].keys, ["a}b"]);
    assert!(matches!(h.release(), Ok(ReleaseOutcome::Expired)));
    assert_eq!(p.calls.borrow()[2].keys, ["a}b"], "no signal to send");
}
