//! The lock-handle state machine: one acquired (or attached) lock, its release and extend, and
//! what it reports about itself.

use alloc::rc::Rc;
use alloc::string::{String, ToString};
use core::cell::RefCell;

use super::{
    Kind, NS_PER_MS, check_lease, int_reply, lease_ns, release_everywhere, retryable, unexpected,
};
use crate::bindings::dlock::lock::redis::Value;
use crate::bindings::exports::dlock::lock::lock::{Error, HandleStatus, LockInfo, ReleaseOutcome};
use crate::platform::Platform;
use crate::quorum::{Answer, Tally};
use crate::scripts::Op;
use crate::validate;

/// Where a handle is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// Acquired and not known to be gone.
    Held,
    /// Made by `attach`: the token's lease is unknown until an extend succeeds.
    Attached,
    /// Released by this handle.
    Released,
    /// Gone: the lease ran out (`Expired`) or someone else took the key (`TakenOver`).
    Lost(Loss),
    /// A release was sent and its outcome is unknown.
    Releasing,
}

/// Why a handle lost its lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Loss {
    Expired,
    TakenOver,
}

impl Loss {
    fn error(self) -> Error {
        match self {
            Loss::Expired => Error::Expired,
            Loss::TakenOver => Error::TakenOver,
        }
    }
}

/// What a token-checked script found.
pub(super) enum Found {
    /// The key held the token: the script acted.
    Owned,
    Lost(Loss),
}

/// What a handle knows of its lease: its phase, and until when it may be counted on.
pub(super) struct Lease {
    pub(super) phase: Phase,
    pub(super) valid_until_ns: u64,
    pub(super) expires_at_ms: u64,
}

/// One acquired lock, or permits of a counting semaphore.
pub struct Handle<P> {
    pub(super) platform: Rc<P>,
    pub(super) nodes: u32,
    pub(super) kind: Kind,
    pub(super) key: String,
    pub(super) redis_key: String,
    pub(super) token: String,
    pub(super) fence: Option<u64>,
    pub(super) acquired_at_ms: u64,
    pub(super) safety_margin_ns: u64,
    pub(super) lease: RefCell<Lease>,
}

impl<P: Platform> Handle<P> {
    /// Runs a token-checked script: 1 is `Owned`, 0 (no key) `Expired`, -1 (another value)
    /// `TakenOver`.
    fn owned_op(&self, op: Op, keys: &[String], args: &[String]) -> Result<Found, Error> {
        let reply = self.platform.eval(op, keys, args).map_err(Error::Redis)?;
        match int_reply(op, reply)? {
            1 => Ok(Found::Owned),
            0 => Ok(Found::Lost(Loss::Expired)),
            -1 => Ok(Found::Lost(Loss::TakenOver)),
            n => Err(Error::Redis(unexpected(op, &Value::Int(n)))),
        }
    }

    /// Runs a token-checked script on every primary (quorum mode): 1 is yes, 0 (no key) and
    /// -1 (another value) are no; the second count is how many said -1. A refusal by the host
    /// is an error at once.
    fn owned_round(&self, op: Op, keys: &[String], args: &[String]) -> Result<(Tally, u32), Error> {
        let replies = self
            .platform
            .eval_all(op, keys, args)
            .map_err(Error::Redis)?;
        let mut taken = 0;
        let tally = Tally::count(replies, |reply| match reply {
            Value::Int(1) => Answer::Yes,
            Value::Int(0) => Answer::No,
            Value::Int(-1) => {
                taken += 1;
                Answer::No
            }
            other => Answer::Refused(unexpected(op, &other)),
        });
        Ok((tally, taken))
    }

    /// Over a quorum, why a round found the lock gone: `TakenOver` when a majority of the
    /// primaries hold another value in the key, else `Expired`.
    fn loss_of(tally: &Tally, taken: u32) -> Loss {
        if taken >= tally.quorum() {
            Loss::TakenOver
        } else {
            Loss::Expired
        }
    }

    /// The release script's keys: the lock key alone (the script names the signal list and the
    /// waiters' mark itself).
    fn release_keys(&self) -> &[String] {
        core::slice::from_ref(&self.redis_key)
    }

    /// Marks the handle lost and gives back what may still carry its token on a minority of
    /// primaries (quorum mode).
    fn lose_everywhere(&self, loss: Loss) -> Error {
        self.lease.borrow_mut().phase = Phase::Lost(loss);
        release_everywhere(
            &*self.platform,
            self.nodes,
            self.kind,
            &self.redis_key,
            &self.token,
        );
        loss.error()
    }

    /// Release over a quorum, by the majority: lost (see [`Self::loss_of`]) when so many
    /// primaries no longer held the token that no majority can have held it; released once a
    /// majority confirmed that the token is gone there (deleted, or not found); otherwise
    /// `release-incomplete`: a majority may still hold the token.
    fn release_round(&self) -> Result<Found, Error> {
        let (tally, taken) = self.owned_round(
            Op::Release,
            self.release_keys(),
            core::slice::from_ref(&self.token),
        )?;
        if tally.majority_impossible() {
            return Ok(Found::Lost(Self::loss_of(&tally, taken)));
        }
        if tally.confirmed_gone() {
            return Ok(Found::Owned);
        }
        Err(Error::ReleaseIncomplete(
            tally.short_of(tally.yes + tally.no, "confirmed the release"),
        ))
    }

    /// Extend over a quorum: held again only when a majority extended within the new lease's
    /// validity; lost when too many primaries no longer hold the token for a majority, or
    /// when the majority came too late (`Expired`).
    fn extend_round(&self, ttl_ms: u64, sent_ns: u64) -> Result<Found, Error> {
        let (tally, taken) = self.owned_round(
            Op::Extend,
            core::slice::from_ref(&self.redis_key),
            &[self.token.clone(), ttl_ms.to_string()],
        )?;
        if tally.has_quorum() {
            if self.platform.monotonic_ns() < sent_ns + lease_ns(self.nodes, ttl_ms) {
                return Ok(Found::Owned);
            }
            return Err(self.lose_everywhere(Loss::Expired));
        }
        if tally.majority_impossible() {
            return Err(self.lose_everywhere(Self::loss_of(&tally, taken)));
        }
        if tally.failed_for_good()
            && let Some(e) = tally.refusal()
        {
            return Err(Error::Redis(e));
        }
        if !tally.answered_by_quorum() {
            return Err(Error::Redis(tally.no_quorum()));
        }
        Err(Error::Redis(tally.too_few(tally.yes, "extended")))
    }

    /// Compare-and-delete, signalling the waiters marked on the key (over a quorum, on every
    /// primary). Once a release has been sent, the handle no longer claims the lock: when the
    /// outcome is unknown it is `Releasing`, and only `release` may be retried.
    pub fn release(&self) -> Result<ReleaseOutcome, Error> {
        let before = self.lease.borrow().phase;
        if before == Phase::Released {
            return Err(Error::NotHeld);
        }
        let found = if let Kind::Permits { count, .. } = self.kind {
            self.owned_op(
                Op::SemaphoreRelease,
                self.release_keys(),
                &[self.token.clone(), count.to_string()],
            )
        } else if self.nodes == 1 {
            self.owned_op(
                Op::Release,
                self.release_keys(),
                core::slice::from_ref(&self.token),
            )
        } else {
            self.release_round()
        };
        let mut lease = self.lease.borrow_mut();
        match found {
            Ok(Found::Owned) => {
                lease.phase = Phase::Released;
                Ok(ReleaseOutcome::Released)
            }
            // The earlier, unanswered release may have been the one that deleted it.
            Ok(Found::Lost(Loss::Expired)) if before == Phase::Releasing => {
                lease.phase = Phase::Released;
                Ok(ReleaseOutcome::Released)
            }
            Ok(Found::Lost(loss)) => {
                lease.phase = Phase::Lost(loss);
                Ok(match loss {
                    Loss::Expired => ReleaseOutcome::Expired,
                    Loss::TakenOver => ReleaseOutcome::TakenOver,
                })
            }
            Err(Error::Redis(e)) if retryable(&e) => {
                lease.phase = Phase::Releasing;
                Err(Error::Redis(e))
            }
            Err(e @ Error::ReleaseIncomplete(_)) => {
                lease.phase = Phase::Releasing;
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Compare-and-expire to `ttl_ms` from now.
    pub fn extend(&self, ttl_ms: u64) -> Result<(), Error> {
        validate::duration_ms("the extension", ttl_ms, false)?;
        check_lease(self.nodes, "the extension", ttl_ms)?;
        let sent_ns = self.platform.monotonic_ns();
        {
            let mut lease = self.lease.borrow_mut();
            match lease.phase {
                Phase::Held | Phase::Attached => {}
                Phase::Lost(loss) => return Err(loss.error()),
                Phase::Released | Phase::Releasing => return Err(Error::NotHeld),
            }
            if lease.phase == Phase::Held
                && sent_ns.saturating_add(self.safety_margin_ns) >= lease.valid_until_ns
            {
                lease.phase = Phase::Lost(Loss::Expired);
                return Err(Error::Expired);
            }
        }
        let sent_ms = self.platform.wall_ms_at(sent_ns);
        let found = if let Kind::Permits { count, .. } = self.kind {
            self.owned_op(
                Op::SemaphoreExtend,
                core::slice::from_ref(&self.redis_key),
                &[self.token.clone(), ttl_ms.to_string(), count.to_string()],
            )
        } else if self.nodes == 1 {
            self.owned_op(
                Op::Extend,
                core::slice::from_ref(&self.redis_key),
                &[self.token.clone(), ttl_ms.to_string()],
            )
        } else {
            self.extend_round(ttl_ms, sent_ns)
        };
        let lease_ns = lease_ns(self.nodes, ttl_ms);
        let mut lease = self.lease.borrow_mut();
        match found {
            Ok(Found::Owned) => {
                lease.phase = Phase::Held;
                lease.valid_until_ns = sent_ns + lease_ns;
                lease.expires_at_ms = sent_ms + lease_ns / NS_PER_MS;
                Ok(())
            }
            Ok(Found::Lost(loss)) => {
                lease.phase = Phase::Lost(loss);
                Err(loss.error())
            }
            // The extend may have run: if it set a shorter TTL than the one left, Redis now
            // expires the key sooner, so validity may only shrink. Over a quorum a refusal
            // may come beside primaries that did extend.
            Err(Error::Redis(e)) if retryable(&e) || self.nodes > 1 => {
                lease.valid_until_ns = lease.valid_until_ns.min(sent_ns + lease_ns);
                lease.expires_at_ms = lease.expires_at_ms.min(sent_ms + lease_ns / NS_PER_MS);
                Err(Error::Redis(e))
            }
            Err(e) => Err(e),
        }
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

    /// Where the handle stands (see `handle-status` in the WIT).
    pub fn status(&self) -> HandleStatus {
        match self.lease.borrow().phase {
            Phase::Held if self.is_held() => HandleStatus::Held,
            Phase::Held => HandleStatus::Expired,
            Phase::Attached => HandleStatus::Attached,
            Phase::Released => HandleStatus::Released,
            Phase::Lost(_) => HandleStatus::Lost,
            Phase::Releasing => HandleStatus::Releasing,
        }
    }
}
