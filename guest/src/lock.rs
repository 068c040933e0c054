//! The lock client and the lock-handle state machine, written against `Platform` so that they
//! run (and are unit-tested) natively as well as in the component.

use alloc::borrow::ToOwned;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;

use crate::bindings::dlock::lock::redis::{RedisError, Value};
use crate::bindings::exports::dlock::lock::lock::{
    Error, HandleStatus, KeyState, LockInfo, LockOptions,
};
use crate::contract::{self, Backoff, WAIT_MAX_DELAY_MS};
use crate::platform::Platform;
use crate::quorum::{self, Answer, Tally};
use crate::scripts::Op;
use crate::validate;

const NS_PER_MS: u64 = 1_000_000;

/// The documented defaults of `lock-options`.
pub fn default_options() -> LockOptions {
    LockOptions {
        retry_count: contract::DEFAULT_RETRY_COUNT,
        retry_delay_ms: contract::DEFAULT_RETRY_DELAY_MS,
        max_retry_delay_ms: contract::DEFAULT_MAX_RETRY_DELAY_MS,
        jitter: contract::DEFAULT_JITTER,
        key_prefix: String::new(),
        fencing: contract::DEFAULT_FENCING,
        safety_margin_ms: contract::DEFAULT_SAFETY_MARGIN_MS,
    }
}

/// Whether a retry of the same call may succeed: the failure was transient.
pub fn retryable(e: &RedisError) -> bool {
    matches!(e, RedisError::Unavailable(_) | RedisError::Timeout)
}

fn unexpected(op: Op, reply: &Value) -> RedisError {
    RedisError::Rejected(format!("unexpected reply {reply:?} from the {op:?} script"))
}

fn int_reply(op: Op, reply: Value) -> Result<i64, Error> {
    match reply {
        Value::Int(n) => Ok(n),
        other => Err(Error::Redis(unexpected(op, &other))),
    }
}

/// Acquires locks with one set of validated options.
pub struct Client<P> {
    platform: Rc<P>,
    /// Independent primaries (more than 1: quorum mode, Redlock).
    nodes: u32,
    retry_count: u32,
    backoff: Backoff,
    prefix: String,
    fencing: bool,
    safety_margin_ns: u64,
}

/// The outcome of one acquire attempt.
enum Attempt {
    /// Acquired: the script's reply (the fence when fenced), when the attempt was sent, and
    /// until when (monotonic) the lease may be counted on.
    Acquired {
        reply: i64,
        sent_ns: u64,
        valid_until_ns: u64,
    },
    Busy,
    /// The key holds a value of another type.
    NotALock,
    Failed(RedisError),
}

impl<P: Platform> Client<P> {
    /// Validates `options` and builds a client.
    pub fn new(platform: Rc<P>, options: LockOptions) -> Result<Self, Error> {
        validate::prefix(&options.key_prefix)?;
        validate::duration_ms("the safety margin", options.safety_margin_ms, true)?;
        // A zero delay would make `wait-for-lock` poll Redis without pause.
        validate::duration_ms("the retry delay", options.retry_delay_ms.into(), false)?;
        validate::duration_ms(
            "the maximum retry delay",
            options.max_retry_delay_ms.into(),
            false,
        )?;
        let nodes = platform.nodes().max(1);
        if nodes > 1 && options.fencing {
            return Err(Error::InvalidArgument(format!(
                "fencing is not available over {nodes} independent Redis primaries (quorum \
                 mode): their counters are separate, and no majority of them can give a \
                 single strictly increasing fence; take fenced locks on one primary, Sentinel \
                 or a Redis Cluster"
            )));
        }
        Ok(Client {
            platform,
            nodes,
            retry_count: options.retry_count,
            backoff: Backoff {
                base_ms: u64::from(options.retry_delay_ms),
                max_ms: u64::from(options.max_retry_delay_ms),
                jitter: options.jitter,
            },
            prefix: options.key_prefix,
            fencing: options.fencing,
            safety_margin_ns: options.safety_margin_ms * NS_PER_MS,
        })
    }

    fn redis_key(&self, key: &str) -> Result<String, Error> {
        validate::key(key)?;
        let mut redis_key = String::with_capacity(self.prefix.len() + key.len());
        redis_key.push_str(&self.prefix);
        redis_key.push_str(key);
        validate::lock_key(&redis_key)?;
        Ok(redis_key)
    }

    /// Acquires with retries and exponential backoff (see `lock.wit`).
    pub fn acquire(&self, key: &str, ttl_ms: u64) -> Result<Handle<P>, Error> {
        let attempts = self.retry_count.saturating_add(1);
        let backoff = self.backoff;
        self.acquire_loop(key, ttl_ms, |attempt, _now| {
            (attempt < attempts).then(|| {
                let ms = backoff.delay_ms(attempt + 1, || self.platform.random_u64());
                ms.saturating_mul(NS_PER_MS)
            })
        })
    }

    /// One attempt: `None` when the lock is held by someone else.
    pub fn try_acquire(&self, key: &str, ttl_ms: u64) -> Result<Option<Handle<P>>, Error> {
        match self.acquire_loop(key, ttl_ms, |_, _| None) {
            Ok(handle) => Ok(Some(handle)),
            Err(Error::NotAcquired) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Polls until acquired or `timeout_ms` have passed (see `lock.wit`).
    pub fn wait_for_lock(
        &self,
        key: &str,
        timeout_ms: u64,
        ttl_ms: u64,
    ) -> Result<Handle<P>, Error> {
        validate::duration_ms("the wait timeout", timeout_ms, true)?;
        let deadline = self.platform.monotonic_ns() + timeout_ms * NS_PER_MS;
        let backoff = self.backoff.capped(WAIT_MAX_DELAY_MS);
        self.acquire_loop(key, ttl_ms, |attempt, now| {
            let left_ns = deadline.checked_sub(now).filter(|&ns| ns > 0)?;
            let ms = backoff.delay_ms(attempt + 1, || self.platform.random_u64());
            Some(ms.saturating_mul(NS_PER_MS).min(left_ns))
        })
    }

    /// The shared attempt loop. After attempt `n` fails (busy, or a transient Redis error),
    /// `next_delay(n, now_ns)` gives the nanoseconds to sleep before the next attempt, or
    /// `None` to give up. Non-transient errors end the loop at once. When any attempt's
    /// outcome was unknown and the loop ends without the lock, the token is released
    /// (compare-and-delete) in case one of those attempts took it.
    fn acquire_loop(
        &self,
        key: &str,
        ttl_ms: u64,
        mut next_delay: impl FnMut(u32, u64) -> Option<u64>,
    ) -> Result<Handle<P>, Error> {
        let redis_key = self.redis_key(key)?;
        validate::duration_ms("the TTL", ttl_ms, false)?;
        check_lease(self.nodes, "the TTL", ttl_ms)?;
        let fence_key = if self.fencing {
            Some(validate::fence_key(&redis_key)?)
        } else {
            None
        };
        let token = self.platform.new_token();
        let mut keys = vec![redis_key];
        keys.extend(fence_key);
        let args = [token, ttl_ms.to_string()];

        let mut uncertain = false;
        let mut attempt = 1u32;
        let failure = loop {
            // A quorum attempt gives back what it may have taken itself (Redlock releases on
            // every primary after a failed round), so only single-store attempts leave
            // anything uncertain behind.
            let single = self.nodes == 1;
            let last = match self.attempt(&keys, &args, ttl_ms) {
                Attempt::Acquired {
                    reply,
                    sent_ns,
                    valid_until_ns,
                } if self.platform.monotonic_ns() < valid_until_ns => {
                    return Ok(self.new_handle(key, keys, args, ttl_ms, reply, sent_ns));
                }
                Attempt::Acquired { .. } => {
                    // Granted, but the reply came after the lease it granted had run out: a
                    // lock with no validity left is no lock. Give it back and try again.
                    release_everywhere(&*self.platform, self.nodes, &keys[0], &args[0]);
                    Error::GrantedTooLate
                }
                Attempt::Busy => Error::NotAcquired,
                Attempt::NotALock => break Error::NotALock,
                Attempt::Failed(e) if retryable(&e) => {
                    uncertain |= single;
                    Error::Redis(e)
                }
                Attempt::Failed(e) => {
                    // A script error or an odd reply can come after the script wrote; the token
                    // is ours alone, so giving it back is safe. `denied` never reached Redis.
                    uncertain |= single && !matches!(e, RedisError::Denied(_));
                    break Error::Redis(e);
                }
            };
            match next_delay(attempt, self.platform.monotonic_ns()) {
                Some(ns) => self.platform.sleep_ns(ns),
                None => break last,
            }
            attempt = attempt.saturating_add(1);
        };
        if uncertain {
            // Best effort: the error being returned is what the caller needs to see.
            let _ = self.platform.eval(Op::Release, &keys[..1], &args[..1]);
        }
        Err(failure)
    }

    fn attempt(&self, keys: &[String], args: &[String; 2], ttl_ms: u64) -> Attempt {
        let sent_ns = self.platform.monotonic_ns();
        let valid_until_ns = sent_ns + lease_ns(self.nodes, ttl_ms);
        if self.nodes == 1 {
            return match self.platform.eval(Op::Acquire, keys, args) {
                Ok(Value::Int(reply)) if reply > 0 => Attempt::Acquired {
                    reply,
                    sent_ns,
                    valid_until_ns,
                },
                Ok(Value::Int(0)) => Attempt::Busy,
                Ok(Value::Int(-1)) => Attempt::NotALock,
                Ok(other) => Attempt::Failed(unexpected(Op::Acquire, &other)),
                Err(e) => Attempt::Failed(e),
            };
        }
        let tally = match self.platform.eval_all(Op::Acquire, keys, args) {
            Ok(replies) => Tally::count(replies, |reply| match reply {
                Value::Int(n) if n > 0 => Answer::Yes,
                Value::Int(0) => Answer::No,
                Value::Int(-1) => Answer::NotALock,
                other => Answer::Refused(unexpected(Op::Acquire, &other)),
            }),
            Err(e) => return Attempt::Failed(e),
        };
        if tally.has_quorum() {
            return Attempt::Acquired {
                reply: 1,
                sent_ns,
                valid_until_ns,
            };
        }
        if tally.may_have_written() {
            release_everywhere(&*self.platform, self.nodes, &keys[0], &args[0]);
        }
        if !tally.answered_by_quorum() {
            Attempt::Failed(tally.no_quorum())
        } else if tally.not_a_lock > 0 {
            Attempt::NotALock
        } else if let Some(e) = tally.refusal() {
            Attempt::Failed(e)
        } else {
            Attempt::Busy
        }
    }

    /// The handle of a successful attempt; takes the attempt's keys and arguments over.
    fn new_handle(
        &self,
        key: &str,
        keys: Vec<String>,
        args: [String; 2],
        ttl_ms: u64,
        reply: i64,
        sent_ns: u64,
    ) -> Handle<P> {
        let sent_ms = self.platform.wall_ms_at(sent_ns);
        let lease_ns = lease_ns(self.nodes, ttl_ms);
        let [token, _ttl] = args;
        Handle {
            platform: self.platform.clone(),
            nodes: self.nodes,
            key: key.to_owned(),
            redis_key: keys.into_iter().next().unwrap_or_default(),
            token,
            fence: self.fencing.then(|| reply.unsigned_abs()),
            acquired_at_ms: sent_ms,
            safety_margin_ns: self.safety_margin_ns,
            lease: RefCell::new(Lease {
                phase: Phase::Held,
                valid_until_ns: sent_ns + lease_ns,
                expires_at_ms: sent_ms + lease_ns / NS_PER_MS,
            }),
        }
    }

    /// True when the key exists.
    pub fn is_locked(&self, key: &str) -> Result<bool, Error> {
        Ok(!matches!(self.key_state(key)?, KeyState::Unlocked))
    }

    /// The key's state and remaining TTL.
    pub fn key_state(&self, key: &str) -> Result<KeyState, Error> {
        let keys = [self.redis_key(key)?];
        if self.nodes > 1 {
            let replies = self
                .platform
                .eval_all(Op::Check, &keys, &[])
                .map_err(Error::Redis)?;
            return quorum::key_state(replies, |reply| unexpected(Op::Check, reply))
                .map_err(Error::Redis);
        }
        let reply = self
            .platform
            .eval(Op::Check, &keys, &[])
            .map_err(Error::Redis)?;
        match int_reply(Op::Check, reply)? {
            -2 => Ok(KeyState::Unlocked),
            -1 => Ok(KeyState::Persistent),
            n if n >= 0 => Ok(KeyState::Expiring(n.unsigned_abs())),
            n => Err(Error::Redis(unexpected(Op::Check, &Value::Int(n)))),
        }
    }

    /// A handle for a lock held elsewhere with `token`; no Redis call.
    pub fn attach(&self, key: &str, token: &str) -> Result<Handle<P>, Error> {
        let redis_key = self.redis_key(key)?;
        validate::token(token)?;
        let now_ms = self.platform.wall_ms_at(self.platform.monotonic_ns());
        Ok(Handle {
            platform: self.platform.clone(),
            nodes: self.nodes,
            key: key.to_owned(),
            redis_key,
            token: token.to_owned(),
            fence: None,
            acquired_at_ms: now_ms,
            safety_margin_ns: self.safety_margin_ns,
            lease: RefCell::new(Lease {
                phase: Phase::Attached,
                valid_until_ns: 0,
                expires_at_ms: now_ms,
            }),
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Acquired and not known to be gone.
    Held,
    /// Made by `attach`: the token's lease is unknown until an extend succeeds.
    Attached,
    /// Released by this handle.
    Released,
    /// Redis said the key no longer holds the token.
    Lost,
    /// A release was sent and its outcome is unknown.
    Releasing,
}

struct Lease {
    phase: Phase,
    valid_until_ns: u64,
    expires_at_ms: u64,
}

/// One acquired lock.
pub struct Handle<P> {
    platform: Rc<P>,
    nodes: u32,
    key: String,
    redis_key: String,
    token: String,
    fence: Option<u64>,
    acquired_at_ms: u64,
    safety_margin_ns: u64,
    lease: RefCell<Lease>,
}

impl<P: Platform> Handle<P> {
    fn ensure_held(&self) -> Result<(), Error> {
        match self.lease.borrow().phase {
            Phase::Held | Phase::Attached => Ok(()),
            Phase::Released | Phase::Lost | Phase::Releasing => Err(Error::NotHeld),
        }
    }

    /// Runs a token-checked script; a 0 reply marks the handle lost.
    fn owned_op(&self, op: Op, args: &[String]) -> Result<(), Error> {
        let keys = core::slice::from_ref(&self.redis_key);
        let reply = self.platform.eval(op, keys, args).map_err(Error::Redis)?;
        match int_reply(op, reply)? {
            1 => Ok(()),
            0 => {
                self.lease.borrow_mut().phase = Phase::Lost;
                Err(Error::NotHeld)
            }
            n => Err(Error::Redis(unexpected(op, &Value::Int(n)))),
        }
    }

    /// Runs a token-checked script on every primary (quorum mode). A refusal by the host is
    /// an error at once.
    fn owned_round(&self, op: Op, args: &[String]) -> Result<Tally, Error> {
        let keys = core::slice::from_ref(&self.redis_key);
        let replies = self
            .platform
            .eval_all(op, keys, args)
            .map_err(Error::Redis)?;
        Ok(Tally::count(replies, |reply| match reply {
            Value::Int(1) => Answer::Yes,
            Value::Int(0) => Answer::No,
            other => Answer::Refused(unexpected(op, &other)),
        }))
    }

    /// Marks the handle lost and gives back what may still carry its token on a minority of
    /// primaries (quorum mode).
    fn lose_everywhere(&self) -> Error {
        self.lease.borrow_mut().phase = Phase::Lost;
        release_everywhere(&*self.platform, self.nodes, &self.redis_key, &self.token);
        Error::NotHeld
    }

    /// Release over a quorum: done once a majority answered (the primaries that did not keep
    /// the key until its TTL, and no majority can hold it); lost when every answer was no.
    fn release_round(&self) -> Result<(), Error> {
        let tally = self.owned_round(Op::Release, core::slice::from_ref(&self.token))?;
        if !tally.answered_by_quorum() {
            return Err(Error::Redis(tally.no_quorum()));
        }
        if tally.yes > 0 {
            return Ok(());
        }
        if let Some(e) = tally.refusal() {
            return Err(Error::Redis(e));
        }
        self.lease.borrow_mut().phase = Phase::Lost;
        Err(Error::NotHeld)
    }

    /// Extend over a quorum: held again only when a majority extended within the new lease's
    /// validity; lost when too many primaries no longer hold the token for a majority, or
    /// when the majority came too late.
    fn extend_round(&self, ttl_ms: u64, sent_ns: u64) -> Result<(), Error> {
        let tally = self.owned_round(Op::Extend, &[self.token.clone(), ttl_ms.to_string()])?;
        if tally.has_quorum() {
            if self.platform.monotonic_ns() < sent_ns + lease_ns(self.nodes, ttl_ms) {
                return Ok(());
            }
            return Err(self.lose_everywhere());
        }
        if tally.majority_impossible() {
            return Err(self.lose_everywhere());
        }
        Err(Error::Redis(
            tally.refusal().unwrap_or_else(|| tally.no_quorum()),
        ))
    }

    /// Compare-and-delete. Once a release has been sent, the handle no longer claims the
    /// lock: when the outcome is unknown it is `Releasing`, and only `release` may be retried.
    pub fn release(&self) -> Result<(), Error> {
        if self.lease.borrow().phase != Phase::Releasing {
            self.ensure_held()?;
        }
        let released = if self.nodes == 1 {
            self.owned_op(Op::Release, core::slice::from_ref(&self.token))
        } else {
            self.release_round()
        };
        match released {
            Ok(()) => {
                self.lease.borrow_mut().phase = Phase::Released;
                Ok(())
            }
            Err(Error::Redis(e)) if retryable(&e) => {
                self.lease.borrow_mut().phase = Phase::Releasing;
                Err(Error::Redis(e))
            }
            Err(e) => Err(e),
        }
    }

    /// Compare-and-expire to `ttl_ms` from now.
    pub fn extend(&self, ttl_ms: u64) -> Result<(), Error> {
        validate::duration_ms("the extension", ttl_ms, false)?;
        check_lease(self.nodes, "the extension", ttl_ms)?;
        self.ensure_held()?;
        let sent_ns = self.platform.monotonic_ns();
        {
            let mut lease = self.lease.borrow_mut();
            if lease.phase == Phase::Held
                && sent_ns.saturating_add(self.safety_margin_ns) >= lease.valid_until_ns
            {
                lease.phase = Phase::Lost;
                return Err(Error::NotHeld);
            }
        }
        let sent_ms = self.platform.wall_ms_at(sent_ns);
        let extended = if self.nodes == 1 {
            self.owned_op(Op::Extend, &[self.token.clone(), ttl_ms.to_string()])
        } else {
            self.extend_round(ttl_ms, sent_ns)
        };
        let lease_ns = lease_ns(self.nodes, ttl_ms);
        let mut lease = self.lease.borrow_mut();
        match &extended {
            Ok(()) => {
                lease.phase = Phase::Held;
                lease.valid_until_ns = sent_ns + lease_ns;
                lease.expires_at_ms = sent_ms + lease_ns / NS_PER_MS;
            }
            // The extend may have run: if it set a shorter TTL than the one left, Redis now
            // expires the key sooner, so validity may only shrink. Over a quorum a refusal
            // may come beside primaries that did extend.
            Err(Error::Redis(e)) if retryable(e) || self.nodes > 1 => {
                lease.valid_until_ns = lease.valid_until_ns.min(sent_ns + lease_ns);
                lease.expires_at_ms = lease.expires_at_ms.min(sent_ms + lease_ns / NS_PER_MS);
            }
            Err(_) => {}
        }
        extended
    }

    /// Held, as far as the handle knows, and still valid on the monotonic clock.
    pub fn is_held(&self) -> bool {
        let lease = self.lease.borrow();
        lease.phase == Phase::Held && self.platform.monotonic_ns() < lease.valid_until_ns
    }

    /// A snapshot of the handle's state.
    pub fn info(&self) -> LockInfo {
        LockInfo {
            key: self.key.clone(),
            token: self.token.clone(),
            fence: self.fence,
            acquired_at_ms: self.acquired_at_ms,
            expires_at_ms: self.lease.borrow().expires_at_ms,
            valid_until_ns: self.lease.borrow().valid_until_ns,
            status: self.status(),
        }
    }

    /// Where the handle stands (see `lock-status` in the WIT).
    pub fn status(&self) -> HandleStatus {
        match self.lease.borrow().phase {
            Phase::Held if self.is_held() => HandleStatus::Held,
            Phase::Held => HandleStatus::Expired,
            Phase::Attached => HandleStatus::Attached,
            Phase::Released => HandleStatus::Released,
            Phase::Lost => HandleStatus::Lost,
            Phase::Releasing => HandleStatus::Releasing,
        }
    }
}

/// How long a lease of `ttl_ms` granted now may be counted on, in nanoseconds: the TTL on one
/// store; over a quorum, the TTL less the clock-drift allowance (`contract::quorum_drift_ns`).
fn lease_ns(nodes: u32, ttl_ms: u64) -> u64 {
    let ttl_ns = ttl_ms * NS_PER_MS;
    if nodes == 1 {
        ttl_ns
    } else {
        ttl_ns.saturating_sub(contract::quorum_drift_ns(ttl_ms))
    }
}

/// Over a quorum, a lease no longer than the clock-drift allowance can never be valid.
fn check_lease(nodes: u32, what: &str, ttl_ms: u64) -> Result<(), Error> {
    if nodes > 1 && lease_ns(nodes, ttl_ms) == 0 {
        return Err(Error::InvalidArgument(format!(
            "{what} of {ttl_ms} ms is not longer than the clock-drift allowance over {nodes} \
             Redis primaries ({} ms + {} per mille)",
            contract::QUORUM_DRIFT_MS,
            contract::QUORUM_DRIFT_PER_MILLE
        )));
    }
    Ok(())
}

/// Best effort: deletes `key` wherever it still holds `token` (on every primary over a
/// quorum). Its outcome does not matter to the caller, who already has an answer.
fn release_everywhere<P: Platform>(platform: &P, nodes: u32, key: &str, token: &str) {
    let keys = [key.to_owned()];
    let args = [token.to_owned()];
    if nodes == 1 {
        let _ = platform.eval(Op::Release, &keys, &args);
    } else {
        let _ = platform.eval_all(Op::Release, &keys, &args);
    }
}
