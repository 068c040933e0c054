//! The component's Lua scripts and the argument shapes each is written for. A host that runs
//! them for a component it does not trust refuses any other shape, so that an allowed script
//! cannot be turned into something else: an oracle for values it was not given (a guessed
//! "token"), a deleter of fence counters, or a writer of arbitrary data.

use crate::companion::Companion;
use crate::limits::{
    MAX_DURATION_MS, MAX_KEY_BYTES, MAX_PERMITS, MAX_PREFIX_BYTES, MAX_TOKEN_BYTES, TOKEN_BYTES,
};

/// One of the component's scripts. Their sources are `guest/scripts/NAME.lua` in the
/// repository (bundled by `dlock-host`); their return codes are documented at the top of each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Script {
    /// `acquire.lua`: set-if-absent with a lease, optionally bumping the fence counter and
    /// marking a waiter.
    Acquire,
    /// `release.lua`: compare-and-delete, signalling marked waiters.
    Release,
    /// `extend.lua`: compare-and-expire.
    Extend,
    /// `check.lua`: PTTL.
    Check,
    /// `semaphore_acquire.lua`: take permits of a counting semaphore (a sorted set of leases),
    /// optionally bumping its fence counter.
    SemaphoreAcquire,
    /// `semaphore_release.lua`: remove the caller's permits.
    SemaphoreRelease,
    /// `semaphore_extend.lua`: renew the leases of the caller's permits.
    SemaphoreExtend,
    /// `semaphore_count.lua`: the permits held, and when the first lease ends.
    SemaphoreCount,
}

/// What a key of a script call must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyRole {
    /// The lock key: not a companion key of any lock.
    Lock,
    /// Any key (`check` reads the TTL of whatever it is given).
    Any,
    /// Exactly this companion key of the call's first key.
    Companion(Companion),
}

/// What an argument of a script call must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgRole {
    /// The acquiring client's new token: always the component's own form (a UUID v4).
    NewToken,
    /// The holder's token: the component's own form, or, where a host allows tokens of other
    /// clients of the lock convention, any 1 to [`MAX_TOKEN_BYTES`] bytes without control
    /// characters.
    HeldToken,
    /// A lease in milliseconds, in decimal digits: 1 to [`MAX_DURATION_MS`].
    Ttl,
    /// How long the caller will wait for a release, in milliseconds, in decimal digits: 1 to
    /// [`MAX_DURATION_MS`].
    Wait,
    /// The word [`ArgRole::QUIET`]: the release signals no waiter. The component's own
    /// give-backs pass it (an attempt's grant it may hold unknowingly, a failed quorum round's
    /// partial grant): a waiting caller's own waiters' mark would otherwise wake it at once.
    Quiet,
    /// A counting semaphore's limit, in decimal digits: 1 to [`MAX_PERMITS`].
    Limit,
    /// How many permits a call takes or holds, in decimal digits: 1 to [`MAX_PERMITS`].
    Permits,
}

impl ArgRole {
    /// The only value of an [`ArgRole::Quiet`] argument.
    pub const QUIET: &'static str = "quiet";

    /// Every argument role.
    pub const ALL: [ArgRole; 7] = [
        ArgRole::NewToken,
        ArgRole::HeldToken,
        ArgRole::Ttl,
        ArgRole::Wait,
        ArgRole::Quiet,
        ArgRole::Limit,
        ArgRole::Permits,
    ];

    /// The role's name, as the Node package's policy names it: `new-token`, `held-token`,
    /// `ttl`, `wait`, `quiet` (also the value of a quiet argument), `limit`, `permits`.
    pub const fn name(self) -> &'static str {
        match self {
            ArgRole::NewToken => "new-token",
            ArgRole::HeldToken => "held-token",
            ArgRole::Ttl => "ttl",
            ArgRole::Wait => "wait",
            ArgRole::Quiet => ArgRole::QUIET,
            ArgRole::Limit => "limit",
            ArgRole::Permits => "permits",
        }
    }
}

/// One accepted form of a script call: its keys and its arguments, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// The keys, in order; the first is the lock key (or, for `check`, any key).
    pub keys: &'static [KeyRole],
    /// The arguments, in order.
    pub args: &'static [ArgRole],
}

use ArgRole::{HeldToken, Limit, NewToken, Permits, Quiet, Ttl, Wait};
use KeyRole::{Any, Lock};
const FENCE: KeyRole = KeyRole::Companion(Companion::Fence);
const WAITERS: KeyRole = KeyRole::Companion(Companion::Waiters);

const fn shape(keys: &'static [KeyRole], args: &'static [ArgRole]) -> Shape {
    Shape { keys, args }
}

const ACQUIRE: &[Shape] = &[
    shape(&[Lock], &[NewToken, Ttl]),
    shape(&[Lock, FENCE], &[NewToken, Ttl]),
    shape(&[Lock, WAITERS], &[NewToken, Ttl, Wait]),
    shape(&[Lock, FENCE, WAITERS], &[NewToken, Ttl, Wait]),
];
const RELEASE: &[Shape] = &[
    shape(&[Lock], &[HeldToken]),
    shape(&[Lock], &[HeldToken, Quiet]),
];
const EXTEND: &[Shape] = &[shape(&[Lock], &[HeldToken, Ttl])];
const CHECK: &[Shape] = &[shape(&[Any], &[])];
const SEMAPHORE_ACQUIRE: &[Shape] = &[
    shape(&[Lock], &[NewToken, Ttl, Limit, Permits]),
    shape(&[Lock, FENCE], &[NewToken, Ttl, Limit, Permits]),
];
const SEMAPHORE_RELEASE: &[Shape] = &[shape(&[Lock], &[HeldToken, Permits])];
const SEMAPHORE_EXTEND: &[Shape] = &[shape(&[Lock], &[HeldToken, Ttl, Permits])];
const SEMAPHORE_COUNT: &[Shape] = &[shape(&[Lock], &[])];

impl Script {
    /// Every script, in a fixed order (`index` gives the position).
    pub const ALL: [Script; 8] = [
        Script::Acquire,
        Script::Release,
        Script::Extend,
        Script::Check,
        Script::SemaphoreAcquire,
        Script::SemaphoreRelease,
        Script::SemaphoreExtend,
        Script::SemaphoreCount,
    ];

    /// The script's name: its file name without `.lua`.
    pub const fn name(self) -> &'static str {
        match self {
            Script::Acquire => "acquire",
            Script::Release => "release",
            Script::Extend => "extend",
            Script::Check => "check",
            Script::SemaphoreAcquire => "semaphore_acquire",
            Script::SemaphoreRelease => "semaphore_release",
            Script::SemaphoreExtend => "semaphore_extend",
            Script::SemaphoreCount => "semaphore_count",
        }
    }

    /// Position in [`Script::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The script named `name` (its file name without `.lua`).
    pub fn from_name(name: &str) -> Option<Script> {
        Script::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Every shape of call the script is written for; no two have the same number of keys and
    /// arguments.
    ///
    /// - acquire: `KEY [FENCE] [WAITERS]`, `TOKEN TTL [WAIT]`, with the waiters' mark exactly
    ///   when there is a wait;
    /// - release: `KEY [SIGNAL WAITERS]`, `TOKEN`;
    /// - extend: `KEY`, `TOKEN TTL`;
    /// - check: any one key, no arguments;
    /// - semaphore_acquire: `KEY [FENCE]`, `TOKEN TTL LIMIT PERMITS`;
    /// - semaphore_release: `KEY`, `TOKEN PERMITS`;
    /// - semaphore_extend: `KEY`, `TOKEN TTL PERMITS`;
    /// - semaphore_count: `KEY`, no arguments.
    pub const fn shapes(self) -> &'static [Shape] {
        match self {
            Script::Acquire => ACQUIRE,
            Script::Release => RELEASE,
            Script::Extend => EXTEND,
            Script::Check => CHECK,
            Script::SemaphoreAcquire => SEMAPHORE_ACQUIRE,
            Script::SemaphoreRelease => SEMAPHORE_RELEASE,
            Script::SemaphoreExtend => SEMAPHORE_EXTEND,
            Script::SemaphoreCount => SEMAPHORE_COUNT,
        }
    }

    /// The shape with this many keys and arguments, if the script has one.
    pub fn shape(self, keys: usize, args: usize) -> Option<&'static Shape> {
        self.shapes()
            .iter()
            .find(|s| s.keys.len() == keys && s.args.len() == args)
    }
}

/// Digits of [`MAX_DURATION_MS`] in decimal.
const MAX_DURATION_DIGITS: usize = MAX_DURATION_MS.ilog10() as usize + 1;
/// Digits of [`MAX_PERMITS`] in decimal.
const MAX_PERMITS_DIGITS: usize = MAX_PERMITS.ilog10() as usize + 1;

impl Shape {
    /// The most bytes of keys and arguments together that a call of this shape can carry
    /// within the component's limits (a lock key of [`MAX_KEY_BYTES`] behind a prefix of
    /// [`MAX_PREFIX_BYTES`], the longest tokens and durations).
    pub const fn max_bytes(&self) -> usize {
        let lock = MAX_KEY_BYTES + MAX_PREFIX_BYTES;
        let mut total = 0;
        let mut i = 0;
        while i < self.keys.len() {
            total += match self.keys[i] {
                KeyRole::Lock | KeyRole::Any => lock,
                // The form of a key without a hash tag, `{KEY}:suffix`, is the longer one.
                KeyRole::Companion(c) => lock + 2 + c.suffix().len(),
            };
            i += 1;
        }
        let mut i = 0;
        while i < self.args.len() {
            total += match self.args[i] {
                ArgRole::NewToken => TOKEN_BYTES,
                ArgRole::HeldToken => MAX_TOKEN_BYTES,
                ArgRole::Ttl | ArgRole::Wait => MAX_DURATION_DIGITS,
                ArgRole::Quiet => ArgRole::QUIET.len(),
                ArgRole::Limit | ArgRole::Permits => MAX_PERMITS_DIGITS,
            };
            i += 1;
        }
        total
    }
}

/// The most bytes of keys and arguments together that any call of the component's scripts can
/// carry ([`Shape::max_bytes`] over every shape): a host's per-call cap must be at least this.
pub const fn max_request_bytes() -> usize {
    let mut most = 0;
    let mut s = 0;
    while s < Script::ALL.len() {
        let shapes = Script::ALL[s].shapes();
        let mut i = 0;
        while i < shapes.len() {
            let bytes = shapes[i].max_bytes();
            if bytes > most {
                most = bytes;
            }
            i += 1;
        }
        s += 1;
    }
    most
}
