//! How a lock key's companion keys are named: its fence counter, signal list and waiters' mark,
//! each in the lock key's Redis Cluster slot.

use alloc::format;
use alloc::string::String;

/// The keys that belong to a lock key, in its Redis Cluster slot, each named by suffixing it
/// (see [`companion_key`]). None of them is a lock: [`check_lock_key`](crate::check_lock_key)
/// refuses them all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Companion {
    /// The fence counter: incremented by every fenced acquisition, never deleted.
    Fence,
    /// The signal list: dlock's release script pushes one signal on it, in the same atomic
    /// step, when waiters are marked; a waiter blocks on it (BLPOP) to wake on a release.
    Signal,
    /// The waiters' mark: set (with an expiry) by the acquire script of a client that will
    /// wait on the signal list if the lock is busy; a release signals only while it lasts.
    Waiters,
}

impl Companion {
    /// Every companion key.
    pub const ALL: [Companion; 3] = [Companion::Fence, Companion::Signal, Companion::Waiters];

    /// The suffix that names it: `:fence`, `:signal`, `:waiters`.
    pub const fn suffix(self) -> &'static str {
        match self {
            Companion::Fence => ":fence",
            Companion::Signal => ":signal",
            Companion::Waiters => ":waiters",
        }
    }

    /// Its name, the suffix without the colon: `fence`, `signal`, `waiters`.
    pub const fn name(self) -> &'static str {
        match self {
            Companion::Fence => "fence",
            Companion::Signal => "signal",
            Companion::Waiters => "waiters",
        }
    }

    /// What it is, as error messages name it: `fence counter`, `signal list`, `waiters' mark`.
    pub const fn description(self) -> &'static str {
        match self {
            Companion::Fence => "fence counter",
            Companion::Signal => "signal list",
            Companion::Waiters => "waiters' mark",
        }
    }
}

/// A companion key of a lock key, in the same Redis Cluster slot.
///
/// A key without a hash tag is hashed whole, so it becomes the companion's tag:
/// `job` -> `{job}:fence`. A key with a hash tag (`{...}` with something inside) keeps it, and
/// the suffix follows a second colon: `app:{job}` -> `app:{job}::fence`, `{job}` ->
/// `{job}::fence`. The naming is injective: the first form always has `}` before the suffix
/// and the second `:`, so distinct lock keys never share a companion key (`job` and `{job}`
/// have separate fence counters, signal lists and waiters' marks). A key that has no hash tag
/// but contains `}` cannot be wrapped and has no companions (no fencing, no wake-up on
/// release).
pub fn companion_key(redis_key: &str, companion: Companion) -> Result<String, String> {
    let suffix = companion.suffix();
    // Built by hand: `format!` costs several times as much, and this runs on every release.
    let mut key = String::with_capacity(redis_key.len() + suffix.len() + 2);
    if has_hash_tag(redis_key) {
        key.push_str(redis_key);
        key.push(':');
    } else if !redis_key.contains('}') {
        key.push('{');
        key.push_str(redis_key);
        key.push('}');
    } else {
        return Err(format!(
            "the key {redis_key:?} contains '}}' but no hash tag, so no {} key can share its \
             cluster slot; give it a hash tag such as {{name}}",
            companion.name()
        ));
    }
    key.push_str(suffix);
    Ok(key)
}

/// The fence counter key of a lock key: [`companion_key`] with [`Companion::Fence`].
pub fn fence_key(redis_key: &str) -> Result<String, String> {
    companion_key(redis_key, Companion::Fence)
}

/// Which companion key `key` is, if it is what [`companion_key`] makes of some lock key.
pub fn companion_of(key: &str) -> Option<Companion> {
    Companion::ALL
        .into_iter()
        .find(|&c| companion_stem(key, c).is_some())
}

/// The lock key whose `companion` key `key` is, if [`companion_key`] makes `key` of one.
fn companion_stem(key: &str, companion: Companion) -> Option<&str> {
    let stem = key.strip_suffix(companion.suffix())?;
    if let Some(tagged) = stem.strip_suffix(':') {
        return has_hash_tag(tagged).then_some(tagged);
    }
    let inner = stem.strip_prefix('{')?.strip_suffix('}')?;
    (!inner.is_empty() && !inner.contains('}')).then_some(inner)
}

/// Whether `candidate` is the `companion` key of `lock_key` (what [`companion_key`] makes of
/// it), checked without allocating.
pub fn is_companion_key(candidate: &str, lock_key: &str, companion: Companion) -> bool {
    let Some(stem) = candidate.strip_suffix(companion.suffix()) else {
        return false;
    };
    if has_hash_tag(lock_key) {
        stem.strip_suffix(':') == Some(lock_key)
    } else {
        !lock_key.contains('}')
            && stem
                .strip_prefix('{')
                .and_then(|s| s.strip_suffix('}'))
                .is_some_and(|inner| inner == lock_key)
    }
}

/// Whether `key` is what [`fence_key`] makes of some lock key.
pub fn is_fence_counter(key: &str) -> bool {
    companion_of(key) == Some(Companion::Fence)
}

/// The lock key whose companion `key` is, for keys [`companion_key`] made from a key without a
/// hash tag (`{job}:signal` -> `job`); `None` for other keys. (A companion of a key with a hash
/// tag starts with that key itself.)
pub fn wrapped_lock_key(key: &str) -> Option<&str> {
    Companion::ALL
        .into_iter()
        .find_map(|c| companion_stem(key, c).filter(|stem| !has_hash_tag(stem)))
}

/// The number of Redis Cluster hash slots.
pub const HASH_SLOTS: u16 = 16384;

/// The Redis Cluster hash slot of `key`, as `CLUSTER KEYSLOT` computes it: CRC16/XMODEM of its
/// hash tag (the bytes between the first `{` and the next `}`, when there are any), or of the
/// whole key, modulo [`HASH_SLOTS`].
pub fn hash_slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        let len = rest.iter().position(|&b| b == b'}')?;
        (len > 0).then(|| &rest[..len])
    });
    let mut crc: u16 = 0;
    for &byte in tagged.unwrap_or(key) {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % HASH_SLOTS
}

/// Whether Redis Cluster hashes only part of `key`: a `{` followed later by a `}` with at
/// least one byte between them.
pub fn has_hash_tag(key: &str) -> bool {
    match key.find('{') {
        Some(open) => matches!(key[open + 1..].find('}'), Some(len) if len > 0),
        None => false,
    }
}
