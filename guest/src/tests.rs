//! Unit tests of the client and handle logic on a virtual clock, with `redis-eval` answered
//! from a recorded list of replies. Real Redis behaviour is covered end to end in `tests/`.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use crate::bindings::dlock::lock::redis::{RedisError, Scalar, Value, Wake};
use crate::bindings::exports::dlock::lock::lock::{
    Error, HandleStatus, KeyState, LockOptions, ReleaseOutcome, WakeOnRelease,
};
use crate::lock::{Client, default_options};
use crate::platform::{Platform, Round};
use crate::scripts::Op;

const MS: u64 = 1_000_000;

/// One `redis-eval` call as the platform saw it.
#[derive(Debug, Clone, PartialEq)]
struct Call {
    op: Op,
    keys: Vec<String>,
    args: Vec<String>,
    at_ms: u64,
}

#[derive(Default)]
struct Recorded {
    now_ns: Cell<u64>,
    replies: RefCell<VecDeque<Result<Value, RedisError>>>,
    calls: RefCell<Vec<Call>>,
    sleeps_ms: RefCell<Vec<f64>>,
    tokens: Cell<u64>,
    /// Virtual time each Redis call takes.
    call_ns: Cell<u64>,
    /// The host's answers to `wait-for-release`, in order; `unsupported` when none is left.
    wakes: RefCell<VecDeque<Result<Wake, RedisError>>>,
    /// `wait-for-release` calls: (key, timeout in ms, listen).
    waits: RefCell<Vec<(String, u64, bool)>>,
    /// Independent primaries (`nodes`); 0 is taken as 1.
    nodes: Cell<u32>,
    /// Replies to `eval_all`, one round (one reply per primary) at a time.
    rounds: RefCell<VecDeque<Round>>,
}

impl Recorded {
    fn new(replies: impl IntoIterator<Item = Result<Value, RedisError>>) -> Rc<Self> {
        let r = Recorded {
            now_ns: Cell::new(1_000 * MS),
            ..Default::default()
        };
        r.replies.borrow_mut().extend(replies);
        Rc::new(r)
    }
    /// Notes a Redis call, sent now, and lets the call's time pass.
    fn record(&self, op: Op, keys: &[String], args: &[String]) {
        self.calls.borrow_mut().push(Call {
            op,
            keys: keys.to_vec(),
            args: args.to_vec(),
            at_ms: self.now_ns.get() / MS,
        });
        self.now_ns.set(self.now_ns.get() + self.call_ns.get());
    }
    fn ops(&self) -> Vec<Op> {
        self.calls.borrow().iter().map(|c| c.op).collect()
    }
    fn advance_ms(&self, ms: u64) {
        self.now_ns.set(self.now_ns.get() + ms * MS);
    }
    fn wake_with(self: &Rc<Self>, wakes: impl IntoIterator<Item = Result<Wake, RedisError>>) {
        self.wakes.borrow_mut().extend(wakes);
    }
}

impl Platform for Recorded {
    fn monotonic_ns(&self) -> u64 {
        self.now_ns.get()
    }
    fn wall_ms_at(&self, monotonic_ns: u64) -> u64 {
        1_700_000_000_000 + monotonic_ns / MS
    }
    fn sleep_ns(&self, ns: u64) {
        self.sleeps_ms.borrow_mut().push(ns as f64 / MS as f64);
        self.now_ns.set(self.now_ns.get() + ns);
    }
    fn random_u64(&self) -> u64 {
        u64::MAX
    }
    fn new_token(&self) -> String {
        self.tokens.set(self.tokens.get() + 1);
        format!("token-{}", self.tokens.get())
    }
    fn eval(&self, op: Op, keys: &[String], args: &[String]) -> Result<Value, RedisError> {
        assert_eq!(
            self.nodes(),
            1,
            "redis-eval over a quorum (the host refuses it)"
        );
        self.record(op, keys, args);
        self.replies
            .borrow_mut()
            .pop_front()
            .unwrap_or_else(|| panic!("no reply recorded for {op:?}"))
    }
    fn wait_for_release(
        &self,
        redis_key: &str,
        timeout_ms: u64,
        listen: bool,
    ) -> Result<Wake, RedisError> {
        self.waits
            .borrow_mut()
            .push((redis_key.to_owned(), timeout_ms, listen));
        let wake = self.wakes.borrow_mut().pop_front();
        let wake = wake.unwrap_or(Ok(Wake::Unsupported));
        if let Ok(Wake::TimedOut) = wake {
            self.advance_ms(timeout_ms);
        }
        wake
    }

    fn nodes(&self) -> u32 {
        self.nodes.get().max(1)
    }
    fn eval_all(&self, op: Op, keys: &[String], args: &[String]) -> Round {
        assert!(self.nodes() > 1, "eval_all on a single store");
        self.record(op, keys, args);
        self.rounds
            .borrow_mut()
            .pop_front()
            .unwrap_or_else(|| panic!("no round recorded for {op:?}"))
    }
}

fn int(n: i64) -> Result<Value, RedisError> {
    Ok(Value::Int(n))
}

/// The acquire script's busy reply to a caller that marked itself as a waiter.
fn busy_for(pttl_ms: i64) -> Result<Value, RedisError> {
    Ok(Value::Array(vec![Scalar::Int(0), Scalar::Int(pttl_ms)]))
}

/// The keys of the release script for the lock key `key` (without a hash tag).
fn release_keys(key: &str) -> Vec<String> {
    vec![
        key.to_owned(),
        format!("{{{key}}}:signal"),
        format!("{{{key}}}:waiters"),
    ]
}

fn client(p: &Rc<Recorded>, options: LockOptions) -> Client<Recorded> {
    Client::new(p.clone(), options).unwrap()
}

fn defaults() -> LockOptions {
    default_options()
}

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
    assert_eq!(p.calls.borrow()[1].args, ["token-1"]);
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
    assert_eq!(calls[2].args, ["token-1"]);
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
fn release_succeeds_once_then_fails_without_calling_redis() {
    let p = Recorded::new([int(1), int(1)]);
    let h = client(&p, defaults()).acquire("job", 1000).unwrap();
    assert!(matches!(h.release(), Ok(ReleaseOutcome::Released)));
    assert!(!h.is_held());
    assert!(matches!(h.release(), Err(Error::NotHeld)));
    assert!(matches!(h.extend(1000), Err(Error::NotHeld)));
    assert_eq!(p.ops(), [Op::Acquire, Op::Release]);
    // The release names the signal list and waiters' mark, to wake one waiter.
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
fn lock_state_maps_pttl() {
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
    assert_eq!(p.calls.borrow()[1].args, ["token-1"]);
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

#[test]
fn fence_counters_are_refused_as_lock_keys_without_calling_redis() {
    let p = Recorded::new([]);
    let plain = client(&p, defaults());
    for (counter, what) in [
        ("{job}:fence", "fence counter"),
        ("app:{job}:fence", "fence counter"),
        ("{a{b}:fence", "fence counter"),
        ("{job}:signal", "signal list"),
        ("app:{job}:waiters", "waiters' mark"),
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
        prefixed.acquire("{job}:fence", 1000),
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

fn waiting(wake_on_release: WakeOnRelease) -> LockOptions {
    LockOptions {
        wake_on_release,
        ..defaults()
    }
}

// Quorum mode (Redlock over independent primaries).

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
    assert_eq!(p.calls.borrow()[2].args, ["token-1"]);
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
    assert_eq!(p.calls.borrow()[1].args, ["token-1"]);

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
fn a_key_of_another_type_on_a_primary_is_not_a_lock_over_a_quorum() {
    let p = quorum(3, vec![vec![int(-1), int(0), int(1)], vec![int(0); 3]]);
    let err = client(&p, defaults()).acquire("job", 1000).err().unwrap();
    assert!(matches!(err, Error::NotALock), "{err:?}");
    assert_eq!(p.ops(), [Op::Acquire, Op::Release]);
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
fn a_quorum_release_is_done_once_a_majority_answered() {
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
    assert!(matches!(&err, Error::Redis(RedisError::Unavailable(m)) if m.contains("1 of 3")));
    assert_eq!(h.status(), HandleStatus::Releasing);
    h.release().unwrap();
    assert_eq!(h.status(), HandleStatus::Released);
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
