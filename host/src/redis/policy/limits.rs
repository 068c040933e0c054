//! The limits on one `redis-eval` call's keys and arguments, and the check of a bundled
//! script's call against its argument shapes (stated in `dlock_contract::Script::shapes`). The
//! fuzz target in `fuzz/` exercises this code (feature `fuzzing`).

use crate::bundled::BundledScript;
pub use crate::contract::policy::MAX_FOREIGN_TOKEN_BYTES;
use crate::contract::{
    ArgRole, KeyRole, MAX_DURATION_MS, MAX_PERMITS, TOKEN_BYTES, companion_of, is_companion_key,
    is_uuid_v4, wrapped_lock_key,
};

/// Bounds on the keys and arguments of one call. Keys must be non-empty, free of control
/// characters, at most `max_key_bytes` long, and inside `key_namespace`.
#[derive(Clone, Debug)]
pub struct RequestLimits {
    /// Most keys in one call.
    pub max_keys: usize,
    /// Longest key, in bytes.
    pub max_key_bytes: usize,
    /// Every key starts with this, or is a companion of a key that does: a key without a hash
    /// tag has companions `{KEY}:fence`, `{KEY}:signal` and `{KEY}:waiters`, a key with one
    /// `KEY::fence`, ... that start with it (`dlock_contract::companion_key`).
    pub key_namespace: String,
    /// Most bytes of keys and arguments together.
    pub max_request_bytes: usize,
    /// Whether `release` and `extend` may name tokens of other clients of the lock convention
    /// (any 1 to [`MAX_FOREIGN_TOKEN_BYTES`] printable bytes) instead of only dlock's own
    /// (UUID v4).
    pub foreign_tokens: bool,
}

impl RequestLimits {
    /// Whether a call with these keys and arguments is within the limits; the reason when it
    /// is not.
    pub fn check(&self, keys: &[String], args: &[String]) -> Result<(), String> {
        let bytes: usize = keys.iter().chain(args).map(String::len).sum();
        self.check_size(keys.len(), bytes)?;
        for key in keys {
            self.check_key(key)?;
        }
        Ok(())
    }

    /// Whether a call of `keys` keys and `bytes` bytes of keys and arguments together is
    /// within the limits: the part of [`RequestLimits::check`] that needs no copy of them.
    pub fn check_size(&self, keys: usize, bytes: usize) -> Result<(), String> {
        if keys > self.max_keys {
            return Err(format!(
                "{keys} keys in one call; the limit is {}",
                self.max_keys
            ));
        }
        if bytes > self.max_request_bytes {
            return Err(format!(
                "{bytes} bytes of keys and arguments; the limit is {}",
                self.max_request_bytes
            ));
        }
        Ok(())
    }

    /// Whether a call of a bundled script has one of the shapes that script is written for
    /// (`role.script().shapes()`), so that an allowed script cannot be turned into something
    /// else: an oracle for values it was not given (a guessed "token"), a deleter of fence
    /// counters, or a writer of arbitrary data. Call after [`RequestLimits::check`].
    pub fn check_role(
        &self,
        role: BundledScript,
        keys: &[String],
        args: &[String],
    ) -> Result<(), String> {
        let Some(shape) = role.script().shape(keys.len(), args.len()) else {
            return Err(format!(
                "the {role:?} script does not take {} keys with {} arguments",
                keys.len(),
                args.len()
            ));
        };
        let lock = &keys[0];
        for (key, want) in keys.iter().zip(shape.keys) {
            match *want {
                KeyRole::Any => {}
                KeyRole::Lock => {
                    if let Some(companion) = companion_of(key) {
                        return Err(format!(
                            "{key:?} is a lock's {}, not a lock key",
                            companion.description()
                        ));
                    }
                }
                KeyRole::Companion(companion) => {
                    if !is_companion_key(key, lock, companion) {
                        return Err(format!("{key:?} is not the {companion:?} key of {lock:?}"));
                    }
                }
            }
        }
        for (arg, want) in args.iter().zip(shape.args) {
            match want {
                ArgRole::NewToken => check_token(arg, false)?,
                ArgRole::HeldToken => check_token(arg, self.foreign_tokens)?,
                ArgRole::Ttl | ArgRole::Wait => {
                    check_decimal("a duration", "milliseconds", arg, MAX_DURATION_MS)?
                }
                ArgRole::Limit | ArgRole::Permits => {
                    check_decimal("a permit count", "permits", arg, MAX_PERMITS.into())?
                }
                ArgRole::Quiet if arg == ArgRole::QUIET => {}
                ArgRole::Quiet => {
                    return Err(format!("{arg:?} where only {:?} may be", ArgRole::QUIET));
                }
            }
        }
        Ok(())
    }

    fn check_key(&self, key: &str) -> Result<(), String> {
        if key.is_empty() {
            return Err("an empty key".into());
        }
        if key.len() > self.max_key_bytes {
            return Err(format!(
                "a key of {} bytes; the limit is {}",
                key.len(),
                self.max_key_bytes
            ));
        }
        if has_control(key) {
            return Err(format!("a key with control characters: {key:?}"));
        }
        let ns = self.key_namespace.as_str();
        let inside = key.starts_with(ns)
            || wrapped_lock_key(key).is_some_and(|locked| locked.starts_with(ns));
        if !inside {
            return Err(format!("the key {key:?} is outside the namespace {ns:?}"));
        }
        Ok(())
    }
}

/// Whether `s` has a control character (Unicode's `Cc`: C0, DEL and C1), byte by byte when
/// it is ASCII (keys and tokens nearly always are).
fn has_control(s: &str) -> bool {
    if s.is_ascii() {
        s.bytes().any(|b| b.is_ascii_control())
    } else {
        s.chars().any(char::is_control)
    }
}

/// A token: dlock's own form (a UUID v4, hyphenated lowercase), or with `foreign` any 1 to
/// [`MAX_FOREIGN_TOKEN_BYTES`] bytes without control characters.
fn check_token(token: &str, foreign: bool) -> Result<(), String> {
    if foreign {
        if token.is_empty() || token.len() > MAX_FOREIGN_TOKEN_BYTES || has_control(token) {
            return Err(format!(
                "a token must be 1 to {MAX_FOREIGN_TOKEN_BYTES} bytes without control characters"
            ));
        }
        return Ok(());
    }
    if is_uuid_v4(token) {
        Ok(())
    } else {
        Err(format!(
            "a token that is not dlock's ({TOKEN_BYTES}-byte lowercase UUID v4): {}",
            if token.len() <= 64 {
                format!("{token:?}")
            } else {
                format!("{} bytes", token.len())
            }
        ))
    }
}

/// A number argument (a TTL or wait in milliseconds, a semaphore's limit or permits): 1 to
/// `max` in decimal digits.
fn check_decimal(what: &str, unit: &str, arg: &str, max: u64) -> Result<(), String> {
    match arg.parse::<u64>() {
        Ok(n) if arg.bytes().all(|c| c.is_ascii_digit()) && (1..=max).contains(&n) => Ok(()),
        _ => Err(format!(
            "{what} must be 1 to {max} {unit} in decimal digits, not {:?}",
            arg.get(..arg.len().min(32)).unwrap_or("")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";

    fn limits(foreign_tokens: bool) -> RequestLimits {
        RequestLimits {
            foreign_tokens,
            ..crate::Policy::default().limits
        }
    }

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_bundled_shapes_pass() {
        let l = limits(false);
        let ok = [
            (BundledScript::Acquire, v(&["job"]), v(&[TOKEN, "30000"])),
            (
                BundledScript::Acquire,
                v(&["job", "{job}:fence"]),
                v(&[TOKEN, "1"]),
            ),
            (
                BundledScript::Acquire,
                v(&["a:{j}", "a:{j}::fence"]),
                v(&[TOKEN, "1000000000000"]),
            ),
            (BundledScript::Release, v(&["job"]), v(&[TOKEN])),
            (BundledScript::Release, v(&["job"]), v(&[TOKEN, "quiet"])),
            (BundledScript::Extend, v(&["job"]), v(&[TOKEN, "5"])),
            (BundledScript::Check, v(&["{job}:fence"]), v(&[])),
            (
                BundledScript::Acquire,
                v(&["job", "{job}:waiters"]),
                v(&[TOKEN, "1", "1000"]),
            ),
            (
                BundledScript::Acquire,
                v(&["a:{j}", "a:{j}::fence", "a:{j}::waiters"]),
                v(&[TOKEN, "1", "1000"]),
            ),
            (
                BundledScript::SemaphoreAcquire,
                v(&["pool"]),
                v(&[TOKEN, "30000", "1000", "1"]),
            ),
            (
                BundledScript::SemaphoreAcquire,
                v(&["pool", "{pool}:fence"]),
                v(&[TOKEN, "30000", "3", "3"]),
            ),
            (
                BundledScript::SemaphoreRelease,
                v(&["pool"]),
                v(&[TOKEN, "2"]),
            ),
            (
                BundledScript::SemaphoreExtend,
                v(&["pool"]),
                v(&[TOKEN, "5", "2"]),
            ),
            (BundledScript::SemaphoreCount, v(&["pool"]), v(&[])),
        ];
        for (role, keys, args) in ok {
            assert_eq!(
                l.check_role(role, &keys, &args),
                Ok(()),
                "{role:?} {keys:?}"
            );
        }
    }

    #[test]
    fn guessed_values_fence_counters_and_odd_shapes_are_refused() {
        let l = limits(false);
        let bad = [
            // The read/delete oracle: a guessed value in place of a token.
            (BundledScript::Acquire, v(&["victim"]), v(&["on", "1000"])),
            (BundledScript::Release, v(&["victim"]), v(&["crown-jewels"])),
            (
                BundledScript::Release,
                v(&["victim"]),
                v(&[&TOKEN.to_uppercase()]),
            ),
            // Fence counters as locks, or a counter that is not the lock's.
            (BundledScript::Release, v(&["{job}:fence"]), v(&[TOKEN])),
            (
                BundledScript::Extend,
                v(&["app:{job}::fence"]),
                v(&[TOKEN, "1"]),
            ),
            // The companion naming of a key without a hash tag, for one with a tag: another
            // key's (`{j}` belongs to `j`), not `a:{j}`'s.
            (
                BundledScript::Acquire,
                v(&["{j}", "{j}:fence"]),
                v(&[TOKEN, "1"]),
            ),
            (
                BundledScript::Acquire,
                v(&["{job}:fence"]),
                v(&[TOKEN, "1"]),
            ),
            (
                BundledScript::Acquire,
                v(&["job", "other"]),
                v(&[TOKEN, "1"]),
            ),
            // TTLs out of range or not decimal.
            (BundledScript::Acquire, v(&["job"]), v(&[TOKEN, "0"])),
            (
                BundledScript::Acquire,
                v(&["job"]),
                v(&[TOKEN, "10000000000000"]),
            ),
            (BundledScript::Extend, v(&["job"]), v(&[TOKEN, "+5"])),
            (BundledScript::Extend, v(&["job"]), v(&[TOKEN, "-1"])),
            // A semaphore's limit and permits out of range or not decimal, its key a companion,
            // a token that is not the component's.
            (
                BundledScript::SemaphoreAcquire,
                v(&["pool"]),
                v(&[TOKEN, "1000", "0", "1"]),
            ),
            (
                BundledScript::SemaphoreAcquire,
                v(&["pool"]),
                v(&[TOKEN, "1000", "1001", "1"]),
            ),
            (
                BundledScript::SemaphoreAcquire,
                v(&["pool"]),
                v(&[TOKEN, "1000", "3", "1e2"]),
            ),
            (
                BundledScript::SemaphoreAcquire,
                v(&["pool"]),
                v(&["mine", "1000", "3", "1"]),
            ),
            (
                BundledScript::SemaphoreAcquire,
                v(&["{pool}:fence"]),
                v(&[TOKEN, "1000", "3", "1"]),
            ),
            (
                BundledScript::SemaphoreRelease,
                v(&["pool"]),
                v(&[TOKEN, "0"]),
            ),
            (
                BundledScript::SemaphoreExtend,
                v(&["pool"]),
                v(&[TOKEN, "5", "5000"]),
            ),
            (BundledScript::SemaphoreCount, v(&["{pool}:signal"]), v(&[])),
            // Companions out of place, missing, or of another key.
            (
                BundledScript::Acquire,
                v(&["job", "{job}:waiters"]),
                v(&[TOKEN, "1"]),
            ),
            (
                BundledScript::Acquire,
                v(&["job", "{job}:fence"]),
                v(&[TOKEN, "1", "1000"]),
            ),
            (
                BundledScript::Acquire,
                v(&["job", "{job}:waiters", "{job}:fence"]),
                v(&[TOKEN, "1", "1000"]),
            ),
            (
                BundledScript::Acquire,
                v(&["job", "{job}:waiters"]),
                v(&[TOKEN, "1", "0"]),
            ),
            // The release script names the signal list and the waiters' mark itself.
            (
                BundledScript::Release,
                v(&["job", "{job}:signal", "{job}:waiters"]),
                v(&[TOKEN]),
            ),
            (
                BundledScript::Release,
                v(&["job", "{job}:waiters", "{job}:signal"]),
                v(&[TOKEN]),
            ),
            (
                BundledScript::Release,
                v(&["job", "{other}:signal", "{other}:waiters"]),
                v(&[TOKEN]),
            ),
            (
                BundledScript::Release,
                v(&["job", "{job}:signal"]),
                v(&[TOKEN]),
            ),
            (BundledScript::Release, v(&["{job}:signal"]), v(&[TOKEN])),
            (
                BundledScript::Extend,
                v(&["{job}:waiters"]),
                v(&[TOKEN, "1"]),
            ),
            // Arity.
            (BundledScript::Release, v(&["job"]), v(&[TOKEN, "extra"])),
            (BundledScript::Check, v(&["a", "b"]), v(&[])),
            (BundledScript::Release, v(&[]), v(&[TOKEN])),
        ];
        for (role, keys, args) in bad {
            assert!(
                l.check_role(role, &keys, &args).is_err(),
                "{role:?} {keys:?} {args:?}"
            );
        }
    }

    #[test]
    fn foreign_tokens_are_for_release_and_extend_only_when_allowed() {
        let foreign = v(&["redis-py-token"]);
        assert!(
            limits(false)
                .check_role(BundledScript::Release, &v(&["k"]), &foreign)
                .is_err()
        );
        assert!(
            limits(true)
                .check_role(BundledScript::Release, &v(&["k"]), &foreign)
                .is_ok()
        );
        let with_ttl = v(&["redis-py-token", "1000"]);
        assert!(
            limits(true)
                .check_role(BundledScript::Extend, &v(&["k"]), &with_ttl)
                .is_ok()
        );
        assert!(
            limits(true)
                .check_role(BundledScript::Acquire, &v(&["k"]), &with_ttl)
                .is_err()
        );
        let long = "t".repeat(MAX_FOREIGN_TOKEN_BYTES + 1);
        assert!(
            limits(true)
                .check_role(BundledScript::Release, &v(&["k"]), &[long])
                .is_err()
        );
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn limits() -> RequestLimits {
        RequestLimits {
            max_keys: 4,
            max_key_bytes: 32,
            key_namespace: "app:".into(),
            max_request_bytes: 96,
            foreign_tokens: false,
        }
    }

    proptest! {
        #[test]
        fn control_characters_are_found_in_any_string(s in "(\\PC|\\p{Cc}){0,12}") {
            prop_assert_eq!(has_control(&s), s.chars().any(char::is_control));
        }

        #[test]
        fn accepted_requests_are_inside_every_limit(
            keys in prop::collection::vec("(app:|\\{app:|other:|)\\PC{0,40}(\\}:fence|\\}:signal|\\}:waiters)?|.{0,8}", 0..6),
            args in prop::collection::vec(".{0,40}", 0..4),
        ) {
            let limits = limits();
            if limits.check(&keys, &args).is_ok() {
                prop_assert!(keys.len() <= limits.max_keys);
                let total: usize = keys.iter().chain(&args).map(String::len).sum();
                prop_assert!(total <= limits.max_request_bytes);
                for key in &keys {
                    prop_assert!(!key.is_empty() && key.len() <= limits.max_key_bytes);
                    prop_assert!(!key.chars().any(char::is_control));
                    let inside = key.starts_with("app:")
                        || (key.starts_with("{app:")
                            && [":fence", ":signal", ":waiters"].iter().any(|c| key.ends_with(&format!("}}{c}"))));
                    prop_assert!(inside, "{:?} accepted outside the namespace", key);
                }
            }
        }

        #[test]
        fn a_release_or_extend_token_that_passes_is_a_uuid_v4(token in ".{0,40}") {
            let keys = ["app:k".to_owned()];
            if limits().check_role(BundledScript::Release, &keys, std::slice::from_ref(&token)).is_ok() {
                prop_assert_eq!(token.len(), TOKEN_BYTES);
                prop_assert!(is_uuid_v4(&token));
            }
        }
    }
}
