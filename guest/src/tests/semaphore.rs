//! Counting semaphores: the permits' script calls, their handles, checks before any call, and
//! quorum mode refused.

use super::*;

fn permits(limit: u32, count: u32) -> Permits {
    Permits { limit, count }
}

fn fenced() -> LockOptions {
    LockOptions {
        fencing: true,
        ..defaults()
    }
}

#[test]
fn acquiring_permits_sends_the_limit_and_count_and_the_semaphores_fence_counter() {
    let p = Recorded::new([int(7)]);
    let h = client(&p, fenced())
        .acquire_permits("pool", permits(5, 2), 30_000)
        .unwrap();
    assert_eq!(
        p.calls.borrow()[0],
        Call {
            op: Op::SemaphoreAcquire,
            keys: vec!["pool".into(), "{pool}:fence".into()],
            args: vec!["token-1".into(), "30000".into(), "5".into(), "2".into()],
            at_ms: 1000,
        }
    );
    assert!(h.is_held());
    assert_eq!(h.info().fence, Some(7));
}

#[test]
fn busy_semaphores_are_retried_with_backoff_and_never_marked_for_wake_up() {
    let p = Recorded::new([int(0), int(0), int(1)]);
    let opts = LockOptions {
        retry_count: 3,
        ..waiting(WakeOnRelease::Always)
    };
    client(&p, opts)
        .acquire_permits("pool", permits(1, 1), 1000)
        .unwrap();
    assert_eq!(p.ops(), [Op::SemaphoreAcquire; 3]);
    assert!(p.calls.borrow().iter().all(|c| c.keys == ["pool"]));
    assert!(p.waits.borrow().iter().all(|(_, _, listen)| !listen));
}

#[test]
fn a_try_finding_too_few_permits_free_is_none_and_wait_polls_to_its_deadline() {
    let p = Recorded::new([int(0)]);
    let got = client(&p, defaults())
        .try_acquire_permits("pool", permits(3, 3), 1000)
        .unwrap();
    assert!(got.is_none());

    let p = Recorded::new([int(0), int(0), int(1)]);
    let h = client(&p, defaults())
        .wait_for_permits("pool", permits(3, 1), 10_000, 1000)
        .unwrap();
    assert!(h.is_held());
    assert_eq!(p.ops(), [Op::SemaphoreAcquire; 3]);
}

#[test]
fn a_permits_handle_releases_and_extends_its_count_of_permits() {
    let p = Recorded::new([int(1), int(1), int(1)]);
    let h = client(&p, defaults())
        .acquire_permits("pool", permits(4, 3), 1000)
        .unwrap();
    h.extend(5000).unwrap();
    assert_eq!(h.release().unwrap(), ReleaseOutcome::Released);
    let calls = p.calls.borrow();
    assert_eq!(calls[1].op, Op::SemaphoreExtend);
    assert_eq!(calls[1].args, ["token-1", "5000", "3"]);
    assert_eq!(calls[2].op, Op::SemaphoreRelease);
    assert_eq!(
        (calls[2].keys.as_slice(), calls[2].args.as_slice()),
        (
            release_keys("pool").as_slice(),
            ["token-1".to_owned(), "3".to_owned()].as_slice()
        )
    );
}

#[test]
fn permits_whose_lease_ran_out_release_as_expired() {
    let p = Recorded::new([int(1), int(0)]);
    let h = client(&p, defaults())
        .acquire_permits("pool", permits(2, 1), 1000)
        .unwrap();
    assert_eq!(h.release().unwrap(), ReleaseOutcome::Expired);
    assert_eq!(h.status(), HandleStatus::Lost);
}

#[test]
fn an_unanswered_attempt_at_permits_gives_back_the_permits_it_may_have_taken() {
    let p = Recorded::new([Err(RedisError::Timeout), int(0), int(0)]);
    let opts = LockOptions {
        retry_count: 1,
        ..defaults()
    };
    let err = client(&p, opts)
        .acquire_permits("pool", permits(2, 2), 1000)
        .err()
        .unwrap();
    assert!(matches!(err, Error::NotAcquired));
    let calls = p.calls.borrow();
    assert_eq!(calls.last().unwrap().op, Op::SemaphoreRelease);
    assert_eq!(calls.last().unwrap().args, ["token-1", "2"]);
}

#[test]
fn bad_limits_and_counts_are_refused_before_any_call() {
    let p = Recorded::new([]);
    let c = client(&p, defaults());
    for (limit, count) in [(0, 1), (1001, 1), (3, 0), (3, 4)] {
        let err = c
            .acquire_permits("pool", permits(limit, count), 1000)
            .err()
            .unwrap();
        assert!(matches!(err, Error::InvalidArgument(_)), "{limit} {count}");
    }
    assert!(p.calls.borrow().is_empty());
}

#[test]
fn a_key_that_is_not_a_semaphore_is_not_a_lock() {
    let p = Recorded::new([int(-1), int(-1)]);
    let c = client(&p, defaults());
    let err = c
        .acquire_permits("pool", permits(2, 1), 1000)
        .err()
        .unwrap();
    assert!(matches!(err, Error::NotALock));
    assert!(matches!(c.semaphore_state("pool"), Err(Error::NotALock)));
}

#[test]
fn the_state_says_how_many_permits_are_held_and_when_the_first_ends() {
    let p = Recorded::new([
        Ok(Value::Array(vec![Scalar::Int(3), Scalar::Int(250)])),
        Ok(Value::Array(vec![Scalar::Int(0), Scalar::Int(-1)])),
    ]);
    let c = client(&p, defaults());
    let state = |s: SemaphoreState| (s.held, s.first_ends_in_ms);
    assert_eq!(state(c.semaphore_state("pool").unwrap()), (3, Some(250)));
    assert_eq!(state(c.semaphore_state("pool").unwrap()), (0, None));
    assert_eq!(p.ops(), [Op::SemaphoreCount; 2]);
}

#[test]
fn quorum_mode_refuses_semaphores_without_a_call() {
    let p = Recorded::new([]);
    p.nodes.set(3);
    let c = client(&p, defaults());
    let err = c
        .acquire_permits("pool", permits(2, 1), 1000)
        .err()
        .unwrap();
    assert!(
        matches!(err, Error::InvalidArgument(ref m) if m.contains("quorum")),
        "{err:?}"
    );
    assert!(matches!(
        c.semaphore_state("pool"),
        Err(Error::InvalidArgument(_))
    ));
    assert!(p.calls.borrow().is_empty());
}
