//! Quorum mode (Redlock over independent primaries).

use super::*;

fn quorum(nodes: u32, rounds: Vec<Vec<Result<Value, RedisError>>>) -> Rc<Recorded> {
    let p = Recorded::new([]);
    p.nodes.set(nodes);
    p.rounds.borrow_mut().extend(rounds.into_iter().map(Ok));
    p
}

fn down() -> Result<Value, RedisError> {
    Err(RedisError::Unavailable("Connection refused".into()))
}

fn once() -> LockOptions {
    LockOptions {
        retry_count: 0,
        ..defaults()
    }
}

#[test]
fn a_quorum_acquire_holds_with_a_majority_for_the_ttl_less_elapsed_and_drift() {
    let p = quorum(3, vec![vec![int(1), int(0), int(1)]]);
    p.call_ns.set(5 * MS);
    let h = client(&p, defaults()).acquire("job", 10_000).unwrap();
    assert!(h.is_held());
    // One token for every primary; validity counted from when the round was sent, less the
    // drift allowance (1 % of 10 s + 2 ms = 102 ms).
    assert_eq!(p.calls.borrow()[0].args, ["token-1", "10000"]);
    assert_eq!(h.info().valid_until_ns, 1_000 * MS + (10_000 - 102) * MS);
    assert_eq!(p.ops(), [Op::Acquire]);
}

#[test]
fn a_quorum_acquire_without_a_majority_gives_back_every_grant_and_is_busy() {
    let p = quorum(3, vec![vec![int(1), int(0), int(0)], vec![int(1); 3]]);
    assert!(
        client(&p, once())
            .try_acquire("job", 1000)
            .unwrap()
            .is_none()
    );
    assert_eq!(p.ops(), [Op::Acquire, Op::Release]);
    assert_eq!(p.calls.borrow()[1].args, ["token-1", "quiet"]);

    // All busy: nothing to give back.
    let p = quorum(5, vec![vec![int(0); 5]]);
    assert!(
        client(&p, once())
            .try_acquire("job", 1000)
            .unwrap()
            .is_none()
    );
    assert_eq!(p.ops(), [Op::Acquire]);
}

#[test]
fn a_majority_down_is_a_no_quorum_error_and_the_survivors_are_cleaned() {
    let p = quorum(
        5,
        vec![
            vec![int(1), down(), int(1), down(), down()],
            vec![int(1), down(), int(1), down(), down()],
        ],
    );
    let err = client(&p, once()).acquire("job", 1000).err().unwrap();
    let Error::Redis(RedisError::Unavailable(m)) = &err else {
        panic!("{err:?}")
    };
    assert!(
        m.starts_with("no quorum: 2 of 5 Redis primaries answered, 3 needed"),
        "{m}"
    );
    assert!(m.contains("Connection refused"), "{m}");
    assert_eq!(p.ops(), [Op::Acquire, Op::Release]);
}

#[test]
fn a_minority_down_does_not_stop_a_quorum_acquire() {
    let p = quorum(
        5,
        vec![vec![
            int(1),
            down(),
            int(1),
            Err(RedisError::Timeout),
            int(1),
        ]],
    );
    assert!(client(&p, once()).acquire("job", 1000).unwrap().is_held());
}

#[test]
fn a_quorum_grant_that_took_longer_than_its_validity_is_given_back() {
    let p = quorum(3, vec![vec![int(1); 3], vec![int(1); 3]]);
    // 990 ms round trip: past 1000 ms - (10 ms + 2 ms) of validity.
    p.call_ns.set(990 * MS);
    let err = client(&p, once()).acquire("job", 1000).err().unwrap();
    assert!(matches!(err, Error::GrantedTooLate), "{err:?}");
    assert_eq!(p.ops(), [Op::Acquire, Op::Release]);
}

#[test]
fn a_key_of_another_type_is_not_a_lock_only_on_a_majority_of_primaries() {
    let p = quorum(3, vec![vec![int(-1), int(-1), int(1)], vec![int(0); 3]]);
    let err = client(&p, defaults()).acquire("job", 1000).err().unwrap();
    assert!(matches!(err, Error::NotALock), "{err:?}");
    assert_eq!(p.ops(), [Op::Acquire, Op::Release]);
}

/// A busy lock over three primaries of which one misbehaves as `fault`: the acquire waits
/// for the holder, as on healthy primaries, instead of failing at once.
fn one_faulty_primary_is_a_no_vote(fault: Result<Value, RedisError>) {
    let busy = || vec![busy_for(5000), fault.clone(), busy_for(5000)];
    // A refusal may come after the script wrote: each round with one is given back.
    let refused = fault.is_err();
    let give_back = || refused.then(|| vec![int(0); 3]);
    let mut rounds = vec![busy()];
    rounds.extend(give_back());
    rounds.push(busy());
    rounds.extend(give_back());
    rounds.push(vec![int(1), fault.clone(), int(1)]);
    let p = quorum(3, rounds);
    p.wake_with([Ok(Wake::Released), Ok(Wake::Released)]);
    let h = client(&p, waiting(WakeOnRelease::Always))
        .wait_for_lock("job", 30_000, 1000)
        .unwrap_or_else(|e| panic!("{fault:?}: {e:?}"));
    assert!(h.is_held());
    let acquires = p.ops().iter().filter(|&&op| op == Op::Acquire).count();
    assert_eq!(acquires, 3, "{fault:?}");
    assert_eq!(
        p.waits.borrow().len(),
        2,
        "waited for the holder: {fault:?}"
    );
}

#[test]
fn one_primary_refusing_out_of_memory_or_holding_another_type_is_a_no_vote() {
    one_faulty_primary_is_a_no_vote(Err(RedisError::Rejected(
        "NOPERM this user has no permissions to run the 'set' command".into(),
    )));
    one_faulty_primary_is_a_no_vote(Err(RedisError::Rejected(
        "OOM command not allowed when used memory > 'maxmemory'".into(),
    )));
    one_faulty_primary_is_a_no_vote(int(-1));
}

#[test]
fn a_majority_of_failures_ends_a_quorum_acquire_and_a_minority_is_retried() {
    let oom = || Err(RedisError::Rejected("OOM command not allowed".into()));
    // Two of three refuse: a retry will not help.
    let p = quorum(3, vec![vec![oom(), oom(), int(1)], vec![int(1); 3]]);
    let err = client(&p, defaults()).acquire("job", 1000).err().unwrap();
    assert!(
        matches!(&err, Error::Redis(RedisError::Rejected(m)) if m.contains("OOM")),
        "{err:?}"
    );
    assert_eq!(p.ops(), [Op::Acquire, Op::Release]);
    // One refuses and one does not answer, one grants: no majority either way, retried.
    let p = quorum(
        3,
        vec![
            vec![oom(), down(), int(1)],
            vec![int(0); 3],
            vec![int(1); 3],
        ],
    );
    let err = client(&p, once()).acquire("job", 1000).err().unwrap();
    assert!(
        matches!(&err, Error::Redis(RedisError::Unavailable(m))
            if m.starts_with("no quorum: 1 of 3 Redis primaries granted, 2 needed")),
        "{err:?}"
    );
    let p = quorum(
        3,
        vec![
            vec![oom(), down(), int(1)],
            vec![int(0); 3],
            vec![int(1); 3],
        ],
    );
    assert!(client(&p, defaults()).acquire("job", 1000).is_ok());
    assert_eq!(p.ops(), [Op::Acquire, Op::Release, Op::Acquire]);
}

#[test]
fn fencing_and_leases_within_the_drift_allowance_are_refused_over_a_quorum() {
    let p = quorum(3, vec![]);
    let fenced = LockOptions {
        fencing: true,
        ..defaults()
    };
    let err = Client::new(p.clone(), fenced).err().unwrap();
    assert!(
        matches!(&err, Error::InvalidArgument(m) if m.contains("fencing is not available")),
        "{err:?}"
    );
    // 2 ms + 1 %: a 2 ms lease can never be valid.
    let err = client(&p, defaults()).acquire("job", 2).err().unwrap();
    assert!(
        matches!(&err, Error::InvalidArgument(m) if m.contains("clock-drift")),
        "{err:?}"
    );
    assert!(p.calls.borrow().is_empty());
}

#[test]
fn a_quorum_extend_counts_only_with_a_majority_within_validity() {
    let p = quorum(
        3,
        vec![
            vec![int(1); 3],
            vec![int(1), int(1), int(0)],
            vec![int(1), down(), down()],
            vec![int(1), int(0), int(0)],
            vec![int(1); 3],
        ],
    );
    let h = client(&p, defaults()).acquire("job", 10_000).unwrap();
    p.advance_ms(1000);
    h.extend(20_000).unwrap();
    assert_eq!(h.info().valid_until_ns, 2_000 * MS + (20_000 - 202) * MS);
    // One primary answered: unknown, retryable, and validity only shrinks.
    p.advance_ms(1000);
    let err = h.extend(5_000).err().unwrap();
    assert!(matches!(&err, Error::Redis(RedisError::Unavailable(m)) if m.contains("no quorum")));
    assert_eq!(h.info().valid_until_ns, 3_000 * MS + (5_000 - 52) * MS);
    assert!(h.is_held());
    // Two of three no longer hold the token (the key is gone there): expired, and the last
    // one is cleaned.
    let err = h.extend(5_000).err().unwrap();
    assert!(matches!(err, Error::Expired), "{err:?}");
    assert_eq!(h.status(), HandleStatus::Lost);
    assert_eq!(p.ops()[4], Op::Release);
}

#[test]
fn a_quorum_extend_is_taken_over_when_a_majority_holds_another_token() {
    let p = quorum(
        3,
        vec![vec![int(1); 3], vec![int(-1), int(-1), int(0)], vec![]],
    );
    let h = client(&p, defaults()).acquire("job", 10_000).unwrap();
    let err = h.extend(5_000).err().unwrap();
    assert!(matches!(err, Error::TakenOver), "{err:?}");
    // Lost: a second extend fails the same way without calling Redis.
    assert!(matches!(h.extend(5_000), Err(Error::TakenOver)));
    assert_eq!(p.ops(), [Op::Acquire, Op::Extend, Op::Release]);
}

#[test]
fn a_quorum_release_is_done_once_a_majority_confirmed_the_token_gone() {
    let p = quorum(
        3,
        vec![
            vec![int(1); 3],
            vec![down(), down(), int(1)],
            vec![int(1), int(0), Err(RedisError::Timeout)],
        ],
    );
    let h = client(&p, defaults()).acquire("job", 10_000).unwrap();
    let err = h.release().err().unwrap();
    assert!(
        matches!(&err, Error::ReleaseIncomplete(m) if m.contains("1 of 3")),
        "{err:?}"
    );
    assert_eq!(h.status(), HandleStatus::Releasing);
    h.release().unwrap();
    assert_eq!(h.status(), HandleStatus::Released);
}

#[test]
fn a_quorum_release_that_a_refusal_and_a_silence_leave_short_is_incomplete_and_retried() {
    let noperm = || {
        Err(RedisError::Rejected(
            "NOPERM no permissions to run 'del'".into(),
        ))
    };
    let p = quorum(
        3,
        vec![
            vec![int(1); 3],
            // A deleted, B did not answer, C refused: C and B may still hold the token.
            vec![int(1), down(), noperm()],
            // A has nothing left, C still refuses, B is back and deletes.
            vec![int(0), down(), noperm()],
            vec![int(0), int(1), noperm()],
        ],
    );
    let h = client(&p, defaults()).acquire("job", 10_000).unwrap();
    for confirmed in ["1 of 3", "1 of 3"] {
        let err = h.release().err().unwrap();
        assert!(
            matches!(&err, Error::ReleaseIncomplete(m)
                if m.contains(confirmed) && m.contains("confirmed the release")),
            "{err:?}"
        );
        assert_eq!(h.status(), HandleStatus::Releasing);
        assert!(!h.is_held());
    }
    assert!(matches!(h.release(), Ok(ReleaseOutcome::Released)));
    assert!(matches!(h.release(), Err(Error::NotHeld)));
    assert_eq!(
        p.ops(),
        [Op::Acquire, Op::Release, Op::Release, Op::Release]
    );
}

#[test]
fn a_quorum_key_state_with_failed_primaries_is_unknown_unless_the_rest_decide() {
    let noperm = || Err(RedisError::Rejected("NOPERM".into()));
    let state = |round: Vec<Result<Value, RedisError>>| {
        let p = quorum(3, vec![round]);
        client(&p, defaults()).key_state("job")
    };
    assert!(matches!(
        state(vec![int(-2), int(-2), noperm()]),
        Ok(KeyState::Unlocked)
    ));
    assert!(matches!(
        state(vec![int(900), int(800), noperm()]),
        Ok(KeyState::Expiring(800))
    ));
    // Held on one, gone on one: the third decides, and it cannot say.
    assert!(matches!(
        state(vec![int(900), int(-2), noperm()]),
        Err(Error::Redis(RedisError::Unavailable(m))) if m.contains("no quorum")
    ));
    assert!(matches!(
        state(vec![int(900), noperm(), noperm()]),
        Err(Error::Redis(RedisError::Rejected(_)))
    ));
}

#[test]
fn a_quorum_release_that_finds_no_token_reports_expired_or_taken_over_by_majority() {
    let p = quorum(3, vec![vec![int(1); 3], vec![int(0), int(-1), int(0)]]);
    let h = client(&p, defaults()).acquire("job", 10_000).unwrap();
    assert!(matches!(h.release(), Ok(ReleaseOutcome::Expired)));
    assert_eq!(h.status(), HandleStatus::Lost);

    let p = quorum(3, vec![vec![int(1); 3], vec![int(-1), int(-1), down()]]);
    let h = client(&p, defaults()).acquire("job", 10_000).unwrap();
    assert!(matches!(h.release(), Ok(ReleaseOutcome::TakenOver)));
    assert_eq!(h.status(), HandleStatus::Lost);
}

#[test]
fn quorum_waiters_mark_every_primary_wait_until_the_first_lease_ends_and_releases_signal() {
    // Busy on every primary (40 ms, no expiry, 400 ms left), then granted.
    let busy = vec![busy_for(40), busy_for(-1), busy_for(400)];
    let p = quorum(3, vec![busy, vec![int(1); 3], vec![int(1); 3]]);
    p.wake_with([Ok(Wake::Released)]);
    let opts = LockOptions {
        wake_on_release: WakeOnRelease::Always,
        ..defaults()
    };
    let h = client(&p, opts).wait_for_lock("job", 30_000, 1000).unwrap();
    assert_eq!(p.calls.borrow()[0].keys, ["job", "{job}:waiters"]);
    assert_eq!(p.calls.borrow()[0].args, ["token-1", "1000", "1000"]);
    // The backoff's 100 ms, cut a millisecond past the first lease to end.
    assert_eq!(*p.waits.borrow(), [("job".to_owned(), 41, true)]);
    assert!(matches!(h.release(), Ok(ReleaseOutcome::Released)));
    assert_eq!(p.calls.borrow()[2].keys, release_keys("job"));
}

#[test]
fn a_key_counts_as_locked_over_a_quorum_while_no_majority_can_form_without_it() {
    let state = |nodes: u32, round: Vec<Result<Value, RedisError>>| {
        let p = quorum(nodes, vec![round]);
        client(&p, defaults()).key_state("job")
    };
    assert!(matches!(
        state(3, vec![int(5000), int(3000), int(-2)]),
        Ok(KeyState::Expiring(3000))
    ));
    assert!(matches!(
        state(3, vec![int(5000), int(-2), int(-2)]),
        Ok(KeyState::Unlocked)
    ));
    assert!(matches!(
        state(3, vec![int(-1), int(-1), int(10)]),
        Ok(KeyState::Persistent)
    ));
    assert!(matches!(
        state(5, vec![int(9), int(8), int(7), int(-2), down()]),
        Ok(KeyState::Expiring(7))
    ));
    assert!(matches!(
        state(3, vec![int(9), down(), down()]),
        Err(Error::Redis(RedisError::Unavailable(_)))
    ));
}
