//! Redlock over independent primaries: what one round of replies (one per primary, from
//! `redis-eval-all`) adds up to. `crate::lock` runs the rounds and acts on the verdicts; this
//! module only counts.
//!
//! Every primary answers one of: yes (granted, released, extended), no (held by another
//! token, or not held), not a lock (a value of another type), refused (a script error or an
//! odd reply: retrying will not help) or unknown (unavailable, timeout: the script may or may
//! not have run). A decision needs a majority (`contract::quorum`): a lock is held when a
//! majority said yes; a lock is certainly lost when so many said no that no majority can
//! hold it; anything else with fewer than a majority of answers is undecided ("no quorum").

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::bindings::dlock::lock::redis::{RedisError, Value};
use crate::bindings::exports::dlock::lock::lock::KeyState;
use crate::contract;

/// One primary's reply, by what it means for the round.
#[derive(Debug)]
pub enum Answer {
    /// The script did what was asked (granted, released, extended).
    Yes,
    /// The key is held by another token, or not by ours.
    No,
    /// The key holds a value of another type.
    NotALock,
    /// A script error or an unexpected reply: a retry will fail again.
    Refused(RedisError),
}

/// One round's replies, counted.
#[derive(Debug)]
pub struct Tally {
    /// Primaries asked.
    pub nodes: u32,
    /// Primaries that answered yes.
    pub yes: u32,
    /// Primaries that answered no.
    pub no: u32,
    /// Primaries where the key is not a lock.
    pub not_a_lock: u32,
    /// Primaries that refused; the first refusal.
    pub refused: (u32, Option<RedisError>),
    /// Primaries whose outcome is unknown; the first such error.
    pub unknown: (u32, Option<RedisError>),
}

impl Tally {
    /// Counts `replies` (one per primary), each read by `answer`.
    pub fn count(
        replies: Vec<Result<Value, RedisError>>,
        mut answer: impl FnMut(Value) -> Answer,
    ) -> Tally {
        let mut tally = Tally {
            nodes: u32::try_from(replies.len()).unwrap_or(u32::MAX),
            yes: 0,
            no: 0,
            not_a_lock: 0,
            refused: (0, None),
            unknown: (0, None),
        };
        for reply in replies {
            let note = |slot: &mut (u32, Option<RedisError>), e: RedisError| {
                slot.0 += 1;
                slot.1.get_or_insert(e);
            };
            match reply.map(&mut answer) {
                Ok(Answer::Yes) => tally.yes += 1,
                Ok(Answer::No) => tally.no += 1,
                Ok(Answer::NotALock) => tally.not_a_lock += 1,
                Ok(Answer::Refused(e)) => note(&mut tally.refused, e),
                Err(e @ (RedisError::Unavailable(_) | RedisError::Timeout)) => {
                    note(&mut tally.unknown, e)
                }
                Err(e) => note(&mut tally.refused, e),
            }
        }
        tally
    }

    /// The majority of this round's primaries.
    pub fn quorum(&self) -> u32 {
        contract::quorum(self.nodes)
    }

    /// A majority said yes.
    pub fn has_quorum(&self) -> bool {
        self.yes >= self.quorum()
    }

    /// A majority answered (yes, no, not a lock or refused): the round decided something.
    pub fn answered_by_quorum(&self) -> bool {
        self.nodes - self.unknown.0 >= self.quorum()
    }

    /// So many primaries said no that no majority can say yes.
    pub fn majority_impossible(&self) -> bool {
        self.no > self.nodes - self.quorum()
    }

    /// A majority failed for good: they refused, or the key is not a lock there. A retry will
    /// fail again. Fewer such failures are votes against, like a no.
    pub fn failed_for_good(&self) -> bool {
        self.refused.0 + self.not_a_lock >= self.quorum()
    }

    /// A majority confirmed that the token is not held there any more: they deleted it (yes)
    /// or found it gone (no).
    pub fn confirmed_gone(&self) -> bool {
        self.yes + self.no >= self.quorum()
    }

    /// Some primary may have written: it said yes, refused (a script may fail after writing)
    /// or did not answer.
    pub fn may_have_written(&self) -> bool {
        self.yes > 0 || self.refused.0 > 0 || self.unknown.0 > 0
    }

    /// The first refusal, if any primary refused.
    pub fn refusal(&self) -> Option<RedisError> {
        self.refused.1.clone()
    }

    /// The error of a round that fewer than a majority answered: `unavailable` (a retry may
    /// find a majority), saying how many answered and why the first one did not.
    pub fn no_quorum(&self) -> RedisError {
        RedisError::Unavailable(self.short_of(self.nodes - self.unknown.0, "answered"))
    }

    /// The error of a round that a majority answered but fewer than a majority of them did
    /// what was asked (`count` of them did, `done` says what), the others having failed:
    /// `unavailable`, as a retry may find a majority.
    pub fn too_few(&self, count: u32, done: &str) -> RedisError {
        RedisError::Unavailable(self.short_of(count, done))
    }

    /// `no quorum: {count} of {nodes} Redis primaries {done}, {quorum} needed`, with the
    /// first failure (no answer, then refusal) when there is one.
    pub fn short_of(&self, count: u32, done: &str) -> String {
        let why = match self.unknown.1.as_ref().or(self.refused.1.as_ref()) {
            Some(RedisError::Unavailable(m) | RedisError::Rejected(m) | RedisError::Denied(m)) => {
                format!(" (first failure: {m})")
            }
            Some(RedisError::Timeout) => String::from(" (first failure: timeout)"),
            None => String::new(),
        };
        format!(
            "no quorum: {count} of {} Redis primaries {done}, {} needed{why}",
            self.nodes,
            self.quorum()
        )
    }
}

/// A key's state over a quorum of primaries, from one round of `check` replies (PTTL): the
/// key counts as present while it lives on so many primaries that no majority can be formed
/// without them (`nodes - quorum + 1`, a majority when `nodes` is odd), and its TTL is how
/// long that lasts (the that-many-th longest TTL); it counts as absent when a majority said
/// it is. A primary that did not answer or refused could hold it either way: when the others
/// decide neither, the state is unknown (`no quorum`), and when a majority refused, the first
/// refusal is returned.
pub fn key_state(
    replies: Vec<Result<Value, RedisError>>,
    unexpected: impl Fn(&Value) -> RedisError,
) -> Result<KeyState, RedisError> {
    // Present keys' remaining lease in ms (u64::MAX: no expiry).
    let mut present: Vec<u64> = Vec::new();
    let tally = Tally::count(replies, |reply| match reply {
        Value::Int(-2) => Answer::No,
        Value::Int(-1) => {
            present.push(u64::MAX);
            Answer::Yes
        }
        Value::Int(n) if n >= 0 => {
            present.push(n.unsigned_abs());
            Answer::Yes
        }
        other => Answer::Refused(unexpected(&other)),
    });
    if tally.failed_for_good()
        && let Some(e) = tally.refusal()
    {
        return Err(e);
    }
    let blocking = (tally.nodes - tally.quorum() + 1) as usize;
    present.sort_unstable_by(|a, b| b.cmp(a));
    if let Some(&ms) = present.get(blocking - 1) {
        return Ok(match ms {
            u64::MAX => KeyState::Persistent,
            ms => KeyState::Expiring(ms),
        });
    }
    if tally.no >= tally.quorum() {
        return Ok(KeyState::Unlocked);
    }
    if !tally.answered_by_quorum() {
        return Err(tally.no_quorum());
    }
    Err(tally.too_few(tally.yes + tally.no, "gave a definite answer"))
}
