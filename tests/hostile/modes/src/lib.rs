//! A hostile implementation of the `dlock` world. `client.create` takes its misbehaviour from
//! `lock-options.key-prefix`; `client.acquire(key, ..)` then performs it and reports what the
//! host answered (`Ok` means the host let the attack through).
//!
//! Modes: `flushall`, `config-set`, `shutdown` (scripts outside the allowlist), `tampered` (a
//! one-byte-changed copy of the bundled acquire script), `foreign-key` (an allowed script on
//! `key`), `huge-reply` (a script returning 16 MiB), `spin` (an endless loop), `memory-bomb`
//! (allocate until refused), `recursion` (recurse until the stack runs out), `flood` (call
//! Redis in a loop), `forged-release` (the bundled release script with a forged token),
//! `oracle` (the bundled acquire script with a guessed value as its token, to learn or touch
//! `key`'s value), `delete-fence` (the bundled release script on a fence counter, with the
//! counter's value as the token), `grant-then-trap` (a real lock on `key` with a UUID-shaped
//! token, then a trap when `key` contains `trap`; `acquire-permits` does the same with the
//! semaphore's acquire script and the permits asked), `flood-write` (20,000 acquires of 1000-byte
//! keys with the longest TTL, reporting how many reached Redis), `huge-script` (registering a
//! 1 MiB script), `sleep` (`acquire` sleeps forever, `wait-for-lock` for its timeout),
//! `random-bomb` (asks WASI random for 8 MiB, which fits in its memory); with
//! `redis-eval-all` (every primary at once): `all-flood`, `all-foreign-key`,
//! `all-delete-fence`, and `foreign-key` is also how it tries `redis-eval` in quorum mode.
//! `wait-for-lock(key, timeout)` in mode `wait` calls `wait-for-release(key, timeout, listen)`
//! once on the given key, and in mode `wait-flood` 10,000 times with 1 ms, reporting what the
//! host answered as `invalid-argument` text.

#![no_std]

extern crate alloc;
extern crate dlock_guest_rt;

#[allow(missing_docs, reason = "generated bindings")]
mod bindings {
    wit_bindgen::generate!({ path: "../../../wit", world: "dlock", generate_all });
}

use alloc::borrow::ToOwned;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::hint::black_box;

use bindings::dlock::lock::redis::{self, RedisError, Script, Value};
use bindings::exports::dlock::lock::lock::{
    self as api, Acquired, Error, GuestClient, GuestLockHandle, HandleStatus, KeyState, LockInfo,
    LockOptions, Permits, ReleaseOutcome, SemaphoreState, WakeOnRelease,
};
use bindings::wasi::clocks::monotonic_clock;

const ACQUIRE: &str = include_str!("../../../../guest/scripts/acquire.lua");
const RELEASE: &str = include_str!("../../../../guest/scripts/release.lua");
const CHECK: &str = include_str!("../../../../guest/scripts/check.lua");
const SEMAPHORE_ACQUIRE: &str = include_str!("../../../../guest/scripts/semaphore_acquire.lua");
/// The script of the `huge-reply` mode; a test allows it explicitly to reach the reply cap.
const HUGE_REPLY: &str = include_str!("../../huge-reply.lua");

struct Component;
struct Hostile {
    mode: String,
}
struct NoLock;

fn run(source: &str, keys: &[String], args: &[String]) -> Result<Value, RedisError> {
    let script = Script::load(source)?;
    redis::redis_eval(&script, keys, args)
}

/// A token of dlock's form (a UUID v4) that is not random: the n-th of this component.
fn uuid_shaped(n: u64) -> String {
    format!("00000000-0000-4000-8000-{n:012x}")
}

/// A handle that holds nothing, as the API returns it.
fn no_lock() -> Acquired {
    Acquired {
        handle: api::LockHandle::new(NoLock),
        info: NoLock.info(),
    }
}

fn outcome(reply: Result<Value, RedisError>) -> Result<Acquired, Error> {
    match reply {
        Ok(_) => Ok(no_lock()),
        Err(e) => Err(Error::Redis(e)),
    }
}

#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let frame = black_box([depth; 32]);
    if depth == 0 {
        return 0;
    }
    black_box(recurse(black_box(depth - 1))) + frame[7]
}

impl api::Guest for Component {
    type Client = Hostile;
    type LockHandle = NoLock;

    fn default_options() -> LockOptions {
        LockOptions {
            retry_count: 0,
            retry_delay_ms: 0,
            max_retry_delay_ms: 0,
            jitter: false,
            key_prefix: String::new(),
            fencing: false,
            safety_margin_ms: 0,
            wake_on_release: WakeOnRelease::Never,
        }
    }
}

impl GuestClient for Hostile {
    fn create(options: LockOptions) -> Result<api::Client, Error> {
        Ok(api::Client::new(Hostile {
            mode: options.key_prefix,
        }))
    }

    fn acquire(&self, key: String, _ttl_ms: u64) -> Result<Acquired, Error> {
        let keys = vec![key];
        match self.mode.as_str() {
            "flushall" => outcome(run("return redis.call('FLUSHALL')", &[], &[])),
            "config-set" => outcome(run(
                "return redis.call('CONFIG', 'SET', 'maxmemory', '1')",
                &[],
                &[],
            )),
            "shutdown" => outcome(run("return redis.call('SHUTDOWN', 'NOSAVE')", &[], &[])),
            "tampered" => {
                // PX (milliseconds) becomes EX (seconds): a 1000x longer lease.
                let tampered = ACQUIRE.replacen("'PX'", "'EX'", 1);
                outcome(run(
                    &tampered,
                    &keys,
                    &["token".to_owned(), "1000".to_owned()],
                ))
            }
            "foreign-key" => outcome(run(RELEASE, &keys, &[uuid_shaped(0)])),
            "huge-reply" => outcome(run(HUGE_REPLY, &[], &[])),
            "many-keys" | "huge-args" => {
                let (many, args) = if self.mode == "many-keys" {
                    (
                        (0..20).map(|n| format!("{}{n}", keys[0])).collect(),
                        Vec::new(),
                    )
                } else {
                    (keys.clone(), vec!["x".repeat(1000); 5000])
                };
                // Refused, and a well-formed call right after it on the same client passes.
                match (run(CHECK, &many, &args), run(CHECK, &keys, &[])) {
                    (Err(RedisError::Denied(reason)), Ok(_)) => Err(Error::InvalidArgument(reason)),
                    other => Err(Error::InvalidArgument(format!("unexpected: {other:?}"))),
                }
            }
            "forged-release" => match run(RELEASE, &keys, &[uuid_shaped(1)]) {
                Ok(Value::Int(1)) => Ok(no_lock()),
                Ok(_) => Err(Error::NotHeld),
                Err(e) => Err(Error::Redis(e)),
            },
            "oracle" => outcome(run(
                ACQUIRE,
                &keys,
                &["crown-jewels".to_owned(), "1000".to_owned()],
            )),
            "delete-fence" => outcome(run(RELEASE, &keys, &["1".to_owned()])),
            "grant-then-trap" => {
                let token = uuid_shaped(keys[0].len() as u64);
                run(ACQUIRE, &keys, &[token, "30000".to_owned()]).map_err(Error::Redis)?;
                if keys[0].contains("trap") {
                    core::arch::wasm32::unreachable();
                }
                Ok(no_lock())
            }
            "flood-write" => {
                let script = Script::load(ACQUIRE).map_err(Error::Redis)?;
                let padding = "x".repeat(990);
                let ttl = "1000000000000".to_owned();
                let mut reached = 0u32;
                for n in 0..20_000u64 {
                    let key = vec![format!("{}{padding}{n:08}", keys[0])];
                    let args = [uuid_shaped(n), ttl.clone()];
                    if redis::redis_eval(&script, &key, &args).is_ok() {
                        reached += 1;
                    }
                }
                Err(Error::InvalidArgument(format!("{reached}")))
            }
            "huge-script" => {
                let source = format!("return 1 -- {}", "x".repeat(1 << 20));
                outcome(run(&source, &keys, &[]))
            }
            "sleep" => {
                monotonic_clock::subscribe_duration(u64::MAX).block();
                Err(Error::NotAcquired)
            }
            "random-bomb" => {
                let bytes = bindings::wasi::random::random::get_random_bytes(8 << 20);
                Err(Error::InvalidArgument(format!("{}", bytes.len())))
            }
            "flood" => {
                let script = Script::load(CHECK).map_err(Error::Redis)?;
                loop {
                    redis::redis_eval(&script, &keys, &[]).map_err(Error::Redis)?;
                }
            }
            "all-flood" => {
                let script = Script::load(CHECK).map_err(Error::Redis)?;
                loop {
                    redis::redis_eval_all(&script, &keys, &[]).map_err(Error::Redis)?;
                }
            }
            "all-foreign-key" => {
                let script = Script::load(RELEASE).map_err(Error::Redis)?;
                redis::redis_eval_all(&script, &keys, &[uuid_shaped(0)])
                    .map(|_| no_lock())
                    .map_err(Error::Redis)
            }
            "all-delete-fence" => {
                let script = Script::load(RELEASE).map_err(Error::Redis)?;
                redis::redis_eval_all(&script, &keys, &["1".to_owned()])
                    .map(|_| no_lock())
                    .map_err(Error::Redis)
            }
            "spin" => {
                let mut n = 0u64;
                loop {
                    n = black_box(n.wrapping_add(1));
                }
            }
            "memory-bomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(black_box(vec![1u8; 1 << 20]));
                }
            }
            "recursion" => {
                black_box(recurse(black_box(u64::MAX)));
                Err(Error::NotAcquired)
            }
            other => Err(Error::InvalidArgument(format!("unknown mode {other:?}"))),
        }
    }

    fn try_acquire(&self, _key: String, _ttl_ms: u64) -> Result<Option<Acquired>, Error> {
        Ok(None)
    }

    fn wait_for_lock(&self, key: String, timeout_ms: u64, _ttl_ms: u64) -> Result<Acquired, Error> {
        match self.mode.as_str() {
            "sleep" => {
                monotonic_clock::subscribe_duration(timeout_ms.saturating_mul(1_000_000)).block();
            }
            "wait" => {
                let wake = redis::wait_for_release(&key, timeout_ms, true);
                return Err(Error::InvalidArgument(format!("{wake:?}")));
            }
            "wait-flood" => {
                let answered = (0..10_000)
                    .filter(|_| redis::wait_for_release(&key, 1, false).is_ok())
                    .count();
                return Err(Error::InvalidArgument(format!("{answered}")));
            }
            _ => {}
        }
        Err(Error::NotAcquired)
    }

    fn is_locked(&self, _key: String) -> Result<bool, Error> {
        Ok(false)
    }

    fn key_state(&self, _key: String) -> Result<KeyState, Error> {
        Ok(KeyState::Unlocked)
    }

    fn attach(&self, _key: String, _token: String) -> Result<Acquired, Error> {
        Ok(no_lock())
    }

    fn acquire_permits(&self, key: String, permits: Permits, _ttl: u64) -> Result<Acquired, Error> {
        if self.mode != "grant-then-trap" {
            return Err(Error::NotAcquired);
        }
        let args = [
            uuid_shaped(key.len() as u64),
            "30000".to_owned(),
            format!("{}", permits.limit),
            format!("{}", permits.count),
        ];
        run(SEMAPHORE_ACQUIRE, core::slice::from_ref(&key), &args).map_err(Error::Redis)?;
        if key.contains("trap") {
            core::arch::wasm32::unreachable();
        }
        Ok(no_lock())
    }

    fn try_acquire_permits(
        &self,
        _key: String,
        _: Permits,
        _ttl: u64,
    ) -> Result<Option<Acquired>, Error> {
        Ok(None)
    }

    fn wait_for_permits(
        &self,
        _key: String,
        _: Permits,
        _timeout: u64,
        _ttl: u64,
    ) -> Result<Acquired, Error> {
        Err(Error::NotAcquired)
    }

    fn semaphore_state(&self, _key: String) -> Result<SemaphoreState, Error> {
        Err(Error::NotALock)
    }
}

impl GuestLockHandle for NoLock {
    fn release(&self) -> Result<ReleaseOutcome, Error> {
        Err(Error::NotHeld)
    }

    fn extend(&self, _ttl_ms: u64) -> Result<(), Error> {
        Err(Error::NotHeld)
    }

    fn is_held(&self) -> bool {
        false
    }

    fn info(&self) -> LockInfo {
        LockInfo {
            key: String::new(),
            token: String::new(),
            fence: None,
            acquired_at_ms: 0,
            expires_at_ms: 0,
            valid_until_ns: 0,
            status: HandleStatus::Lost,
        }
    }
}

bindings::export!(Component with_types_in bindings);
