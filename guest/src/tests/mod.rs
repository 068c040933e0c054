//! Unit tests of the client and handle logic on a virtual clock, with `redis-eval` answered
//! from a recorded list of replies (the harness is here, the tests by topic in the submodules).
//! Real Redis behaviour is covered end to end in `tests/`.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use crate::bindings::dlock::lock::redis::{RedisError, Scalar, Value, Wake};
use crate::bindings::exports::dlock::lock::lock::{
    Error, HandleStatus, KeyState, LockOptions, Permits, ReleaseOutcome, SemaphoreState,
    WakeOnRelease,
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

/// The keys of the release script for the lock key `key`: the key alone (the script names
/// its companions itself).
fn release_keys(key: &str) -> Vec<String> {
    vec![key.to_owned()]
}

fn client(p: &Rc<Recorded>, options: LockOptions) -> Client<Recorded> {
    Client::new(p.clone(), options).unwrap()
}

fn defaults() -> LockOptions {
    default_options()
}

fn waiting(wake_on_release: WakeOnRelease) -> LockOptions {
    LockOptions {
        wake_on_release,
        ..defaults()
    }
}

mod acquire;
mod handle;
mod quorum;
mod semaphore;
mod wait;
