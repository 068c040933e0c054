//! The lock client (acquire, wait, key state), its counting semaphores in `semaphore.rs`, and,
//! in `handle.rs`, the lock-handle state machine, written against `Platform` so that they run
//! (and are unit-tested) natively as well as in the component.

mod handle;
mod semaphore;

pub use handle::Handle;
use handle::{Lease, Phase};

use alloc::borrow::ToOwned;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;

use crate::bindings::dlock::lock::redis::{RedisError, Scalar, Value, Wake};
use crate::bindings::exports::dlock::lock::lock::{Error, KeyState, LockOptions, WakeOnRelease};
use crate::contract::{self, ArgRole, Backoff, Companion, WAIT_MAX_DELAY_MS};
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
        wake_on_release: WakeOnRelease::WaitForLock,
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

/// What an acquisition takes: the key as a lock, or permits of a counting semaphore.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The key as a lock (a token with a PX expiry).
    Mutex,
    /// `count` of the `limit` permits of a counting semaphore (a sorted set of leases).
    Permits {
        /// The most permits held at once.
        limit: u32,
        /// How many this acquisition takes.
        count: u32,
    },
}

impl Kind {
    fn acquire_op(self) -> Op {
        match self {
            Kind::Mutex => Op::Acquire,
            Kind::Permits { .. } => Op::SemaphoreAcquire,
        }
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
    wake_on_release: WakeOnRelease,
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
    /// Held by someone else; with the key's PTTL in milliseconds when the attempt marked the
    /// caller as a waiter (-1: no expiry).
    Busy {
        pttl_ms: Option<i64>,
    },
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
            wake_on_release: options.wake_on_release,
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
        self.acquire_kind(key, Kind::Mutex, ttl_ms)
    }

    /// One attempt: `None` when the lock is held by someone else.
    pub fn try_acquire(&self, key: &str, ttl_ms: u64) -> Result<Option<Handle<P>>, Error> {
        self.try_acquire_kind(key, Kind::Mutex, ttl_ms)
    }

    /// Polls until acquired or `timeout_ms` have passed (see `lock.wit`).
    pub fn wait_for_lock(
        &self,
        key: &str,
        timeout_ms: u64,
        ttl_ms: u64,
    ) -> Result<Handle<P>, Error> {
        self.wait_kind(key, Kind::Mutex, timeout_ms, ttl_ms)
    }

    fn acquire_kind(&self, key: &str, kind: Kind, ttl_ms: u64) -> Result<Handle<P>, Error> {
        let attempts = self.retry_count.saturating_add(1);
        let backoff = self.backoff;
        let listen = (self.wake_on_release == WakeOnRelease::Always).then_some(backoff.max_ms);
        self.acquire_loop(key, kind, ttl_ms, listen, |attempt, _now| {
            (attempt < attempts).then(|| {
                let ms = backoff.delay_ms(attempt + 1, || self.platform.random_u64());
                ms.saturating_mul(NS_PER_MS)
            })
        })
    }

    fn try_acquire_kind(
        &self,
        key: &str,
        kind: Kind,
        ttl_ms: u64,
    ) -> Result<Option<Handle<P>>, Error> {
        match self.acquire_loop(key, kind, ttl_ms, None, |_, _| None) {
            Ok(handle) => Ok(Some(handle)),
            Err(Error::NotAcquired) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn wait_kind(
        &self,
        key: &str,
        kind: Kind,
        timeout_ms: u64,
        ttl_ms: u64,
    ) -> Result<Handle<P>, Error> {
        validate::duration_ms("the wait timeout", timeout_ms, true)?;
        let deadline = self.platform.monotonic_ns() + timeout_ms * NS_PER_MS;
        let backoff = self.backoff.capped(WAIT_MAX_DELAY_MS);
        let listen = (self.wake_on_release != WakeOnRelease::Never).then_some(backoff.max_ms);
        self.acquire_loop(key, kind, ttl_ms, listen, |attempt, now| {
            let left_ns = deadline.checked_sub(now).filter(|&ns| ns > 0)?;
            let ms = backoff.delay_ms(attempt + 1, || self.platform.random_u64());
            Some(ms.saturating_mul(NS_PER_MS).min(left_ns))
        })
    }

    /// The shared attempt loop. After attempt `n` fails (busy, or a transient Redis error),
    /// `next_delay(n, now_ns)` gives the nanoseconds to wait before the next attempt, or
    /// `None` to give up. With `listen` (the longest single wait, in milliseconds), every
    /// attempt marks the caller as a waiter (over a quorum, on every primary) and a wait ends as
    /// soon as the holder releases, or when the holder's lease runs out (over a quorum, the
    /// first of the primaries' leases: a signal there is a hint, and the woken caller tries the
    /// whole quorum again). Non-transient errors end the loop at once, and so does
    /// the host's `cancelled`. When any attempt's outcome was unknown and the loop ends without
    /// the lock, the token is released (compare-and-delete) in case one of those attempts
    /// took it. A semaphore's attempts mark no waiter: its waits are plain pauses.
    fn acquire_loop(
        &self,
        key: &str,
        kind: Kind,
        ttl_ms: u64,
        listen: Option<u64>,
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
        let listen = listen.filter(|_| kind == Kind::Mutex);
        // A key that can have no waiters' mark (a '}' without a hash tag) is polled.
        let waiters_key =
            listen.and_then(|_| contract::companion_key(&redis_key, Companion::Waiters).ok());
        let token = self.platform.new_token();
        let mut keys = vec![redis_key];
        keys.extend(fence_key);
        let mut args = vec![token, ttl_ms.to_string()];
        if let (Some(waiters_key), Some(longest)) = (waiters_key, listen) {
            keys.push(waiters_key);
            args.push(longest.max(1).to_string());
        }
        if let Kind::Permits { limit, count } = kind {
            args.push(limit.to_string());
            args.push(count.to_string());
        }

        let mut uncertain = false;
        let mut attempt = 1u32;
        let failure = loop {
            // A quorum attempt gives back what it may have taken itself (Redlock releases on
            // every primary after a failed round), so only single-store attempts leave
            // anything uncertain behind.
            let single = self.nodes == 1;
            let mut pttl_ms = None;
            let last = match self.attempt(kind, &keys, &args, ttl_ms) {
                Attempt::Acquired {
                    reply,
                    sent_ns,
                    valid_until_ns,
                } if self.platform.monotonic_ns() < valid_until_ns => {
                    return Ok(self.new_handle(key, kind, keys, args, ttl_ms, reply, sent_ns));
                }
                Attempt::Acquired { .. } => {
                    // Granted, but the reply came after the lease it granted had run out: a
                    // lock with no validity left is no lock. Give it back and try again.
                    release_everywhere(&*self.platform, self.nodes, kind, &keys[0], &args[0]);
                    Error::GrantedTooLate
                }
                Attempt::Busy { pttl_ms: pttl } => {
                    pttl_ms = pttl;
                    Error::NotAcquired
                }
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
            let Some(ns) = next_delay(attempt, self.platform.monotonic_ns()) else {
                break last;
            };
            if let Err(cancelled) = self.pause(&keys[0], ns, pttl_ms) {
                break cancelled;
            }
            attempt = attempt.saturating_add(1);
        };
        if uncertain {
            // Best effort: the error being returned is what the caller needs to see.
            release_everywhere(&*self.platform, self.nodes, kind, &keys[0], &args[0]);
        }
        Err(failure)
    }

    /// Waits `ns` nanoseconds between two attempts on `redis_key`. With `pttl_ms` (the attempt
    /// marked the caller as a waiter), the host's `wait-for-release` ends the wait on a
    /// release and it lasts no longer than the holder's lease; otherwise it is a plain pause
    /// through the host, which still reports a cancellation. A host that does not wait (or
    /// fails to) leaves a plain sleep. `Err(Cancelled)` when the host cancelled the call.
    fn pause(&self, redis_key: &str, ns: u64, pttl_ms: Option<i64>) -> Result<(), Error> {
        let mut ns = ns;
        if let Some(pttl) = pttl_ms.and_then(|ms| u64::try_from(ms).ok()) {
            // One millisecond past the holder's expiry, the key is surely gone.
            ns = ns.min(pttl.saturating_add(1).saturating_mul(NS_PER_MS));
        }
        let ms = ns / NS_PER_MS;
        if ms == 0 {
            self.platform.sleep_ns(ns);
            return Ok(());
        }
        match self
            .platform
            .wait_for_release(redis_key, ms, pttl_ms.is_some())
        {
            Ok(Wake::Released | Wake::TimedOut) => Ok(()),
            Ok(Wake::Cancelled) => Err(Error::Cancelled),
            Ok(Wake::Unsupported) | Err(_) => {
                self.platform.sleep_ns(ns);
                Ok(())
            }
        }
    }

    fn attempt(&self, kind: Kind, keys: &[String], args: &[String], ttl_ms: u64) -> Attempt {
        let sent_ns = self.platform.monotonic_ns();
        let valid_until_ns = sent_ns + lease_ns(self.nodes, ttl_ms);
        if self.nodes == 1 {
            return match self.platform.eval(kind.acquire_op(), keys, args) {
                Ok(Value::Int(reply)) if reply > 0 => Attempt::Acquired {
                    reply,
                    sent_ns,
                    valid_until_ns,
                },
                Ok(Value::Int(0)) => Attempt::Busy { pttl_ms: None },
                Ok(Value::Array(items)) => match items.as_slice() {
                    [Scalar::Int(0), Scalar::Int(pttl)] => Attempt::Busy {
                        pttl_ms: Some(*pttl),
                    },
                    _ => Attempt::Failed(unexpected(Op::Acquire, &Value::Array(items))),
                },
                Ok(Value::Int(-1)) => Attempt::NotALock,
                Ok(other) => Attempt::Failed(unexpected(Op::Acquire, &other)),
                Err(e) => Attempt::Failed(e),
            };
        }
        // With a waiters' mark, the first of the busy primaries' leases to end (-1: none ends).
        let mut busy_pttl: Option<i64> = None;
        let tally = match self.platform.eval_all(Op::Acquire, keys, args) {
            Ok(replies) => Tally::count(replies, |reply| match reply {
                Value::Int(n) if n > 0 => Answer::Yes,
                Value::Int(0) => Answer::No,
                Value::Array(items) => match items.as_slice() {
                    [Scalar::Int(0), Scalar::Int(pttl)] => {
                        busy_pttl = Some(match busy_pttl {
                            Some(first) if first >= 0 && (*pttl < 0 || first <= *pttl) => first,
                            _ => *pttl,
                        });
                        Answer::No
                    }
                    _ => Answer::Refused(unexpected(Op::Acquire, &Value::Array(items))),
                },
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
            release_everywhere(&*self.platform, self.nodes, kind, &keys[0], &args[0]);
        }
        // A primary that refused, holds a value of another type or did not answer is one vote
        // against, like a busy one: only a majority of such failures ends the call.
        if !tally.answered_by_quorum() {
            Attempt::Failed(tally.no_quorum())
        } else if tally.not_a_lock >= tally.quorum() {
            Attempt::NotALock
        } else if tally.failed_for_good() {
            Attempt::Failed(tally.refusal().unwrap_or_else(|| tally.no_quorum()))
        } else if tally.no > 0 {
            Attempt::Busy { pttl_ms: busy_pttl }
        } else {
            Attempt::Failed(tally.too_few(tally.yes, "granted"))
        }
    }

    /// The handle of a successful attempt; takes the attempt's keys and arguments over.
    #[allow(
        clippy::too_many_arguments,
        reason = "the parts of one successful attempt"
    )]
    fn new_handle(
        &self,
        key: &str,
        kind: Kind,
        keys: Vec<String>,
        args: Vec<String>,
        ttl_ms: u64,
        reply: i64,
        sent_ns: u64,
    ) -> Handle<P> {
        let sent_ms = self.platform.wall_ms_at(sent_ns);
        let lease_ns = lease_ns(self.nodes, ttl_ms);
        let token = args.into_iter().next().unwrap_or_default();
        Handle {
            platform: self.platform.clone(),
            nodes: self.nodes,
            kind,
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
            kind: Kind::Mutex,
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
/// quorum), signalling no waiter (the caller's own mark may be among them), or gives back the
/// permits `token` holds there. Its outcome does not matter to the caller, who already has an
/// answer.
fn release_everywhere<P: Platform>(platform: &P, nodes: u32, kind: Kind, key: &str, token: &str) {
    let keys = [key.to_owned()];
    let (op, args) = match kind {
        Kind::Mutex => (Op::Release, [token.to_owned(), ArgRole::QUIET.to_owned()]),
        Kind::Permits { count, .. } => {
            (Op::SemaphoreRelease, [token.to_owned(), count.to_string()])
        }
    };
    if nodes == 1 {
        let _ = platform.eval(op, &keys, &args);
    } else {
        let _ = platform.eval_all(op, &keys, &args);
    }
}
