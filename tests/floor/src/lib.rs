//! The floor: the least any lock hosted as a component of dlock's `dlock` world can do per
//! acquire and release, so that `bench --paths floor` measures what the component model and
//! the host's import cost on their own.
//!
//! Same shape as dlock's component: a `client` resource whose `try-acquire` makes exactly one
//! `redis-eval` of the bundled acquire script and returns the same `acquired` record, and a
//! `lock-handle` whose `release` makes one `redis-eval` of the bundled release script. Per
//! acquire it reads the monotonic clock once (a lease must know when it began) and makes a
//! token of dlock's form from a counter over a random seed drawn once per client. Nothing else:
//! no retries, no validation, no fencing, no wake-up; every other export is refused with
//! `invalid-argument`.

#![no_std]

extern crate alloc;
extern crate dlock_guest_rt;

#[allow(missing_docs, reason = "generated bindings")]
mod bindings {
    wit_bindgen::generate!({ path: "../../wit", world: "dlock", generate_all });
}

use alloc::rc::Rc;
use alloc::string::String;
use core::cell::Cell;

use bindings::dlock::lock::redis::{self, Script, Value};
use bindings::exports::dlock::lock::lock::{
    self as api, Acquired, Error, GuestClient, GuestLockHandle, HandleStatus, KeyState, LockInfo,
    LockOptions, Permits, ReleaseOutcome, SemaphoreState, WakeOnRelease,
};
use bindings::wasi::clocks::monotonic_clock;
use bindings::wasi::random::random;

const ACQUIRE: &str = include_str!("../../../guest/scripts/acquire.lua");
const RELEASE: &str = include_str!("../../../guest/scripts/release.lua");

struct Component;

struct FloorClient {
    prefix: String,
    acquire: Script,
    release: Rc<Script>,
    seed: u64,
    next: Cell<u64>,
}

struct FloorHandle {
    key: String,
    /// The Redis key, as the release script's keys.
    redis_key: [String; 1],
    /// The token, as the release script's arguments.
    token: [String; 1],
    release: Rc<Script>,
    acquired_ns: u64,
    valid_until_ns: u64,
    released: Cell<bool>,
}

fn refused() -> Error {
    Error::InvalidArgument("the floor implements try-acquire and release only".into())
}

/// `00000000-0000-4000-8000-000000000000` with the seed in the first 64 bits and `n` in the
/// last 48: a UUID v4 in form, unique per client and acquisition.
fn token(seed: u64, n: u64) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = *b"00000000-0000-4000-8000-000000000000";
    let mut put = |positions: core::ops::Range<usize>, mut v: u64| {
        for i in positions.rev() {
            if out[i] != b'-' {
                out[i] = HEX[(v & 0xf) as usize];
                v >>= 4;
            }
        }
    };
    put(0..18, seed);
    put(24..36, n);
    out[14] = b'4';
    String::from_utf8(out.into()).unwrap_or_default()
}

impl api::Guest for Component {
    type Client = FloorClient;
    type LockHandle = FloorHandle;

    fn default_options() -> LockOptions {
        LockOptions {
            retry_count: 0,
            retry_delay_ms: 1,
            max_retry_delay_ms: 1,
            jitter: false,
            key_prefix: String::new(),
            fencing: false,
            safety_margin_ms: 0,
            wake_on_release: WakeOnRelease::Never,
        }
    }
}

impl GuestClient for FloorClient {
    fn create(options: LockOptions) -> Result<api::Client, Error> {
        let load = |source| Script::load(source).map_err(Error::Redis);
        Ok(api::Client::new(FloorClient {
            prefix: options.key_prefix,
            acquire: load(ACQUIRE)?,
            release: Rc::new(load(RELEASE)?),
            seed: random::get_random_u64(),
            next: Cell::new(0),
        }))
    }

    fn acquire(&self, _key: String, _ttl_ms: u64) -> Result<Acquired, Error> {
        Err(refused())
    }

    fn try_acquire(&self, key: String, ttl_ms: u64) -> Result<Option<Acquired>, Error> {
        let n = self.next.get();
        self.next.set(n + 1);
        let token = token(self.seed, n);
        let redis_key = if self.prefix.is_empty() {
            key.clone()
        } else {
            self.prefix.clone() + &key
        };
        let sent_ns = monotonic_clock::now();
        let keys = [redis_key];
        let [token, _] = {
            let args = [token, itoa(ttl_ms)];
            let reply = redis::redis_eval(&self.acquire, &keys, &args).map_err(Error::Redis)?;
            match reply {
                Value::Int(1) => args,
                Value::Int(0) => return Ok(None),
                Value::Int(-1) => return Err(Error::NotALock),
                _ => {
                    return Err(Error::Redis(redis::RedisError::Rejected(
                        "an acquire reply of another shape".into(),
                    )));
                }
            }
        };
        let handle = FloorHandle {
            key,
            redis_key: keys,
            token: [token],
            release: Rc::clone(&self.release),
            acquired_ns: sent_ns,
            valid_until_ns: sent_ns.saturating_add(ttl_ms.saturating_mul(1_000_000)),
            released: Cell::new(false),
        };
        let info = handle.info();
        Ok(Some(Acquired {
            handle: api::LockHandle::new(handle),
            info,
        }))
    }

    fn wait_for_lock(&self, _key: String, _timeout: u64, _ttl: u64) -> Result<Acquired, Error> {
        Err(refused())
    }

    fn is_locked(&self, _key: String) -> Result<bool, Error> {
        Err(refused())
    }

    fn key_state(&self, _key: String) -> Result<KeyState, Error> {
        Err(refused())
    }

    fn attach(&self, _key: String, _token: String) -> Result<Acquired, Error> {
        Err(refused())
    }

    fn acquire_permits(&self, _key: String, _: Permits, _ttl: u64) -> Result<Acquired, Error> {
        Err(refused())
    }

    fn try_acquire_permits(
        &self,
        _key: String,
        _: Permits,
        _ttl: u64,
    ) -> Result<Option<Acquired>, Error> {
        Err(refused())
    }

    fn wait_for_permits(
        &self,
        _key: String,
        _: Permits,
        _timeout: u64,
        _ttl: u64,
    ) -> Result<Acquired, Error> {
        Err(refused())
    }

    fn semaphore_state(&self, _key: String) -> Result<SemaphoreState, Error> {
        Err(refused())
    }
}

/// `v` in decimal.
fn itoa(mut v: u64) -> String {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    String::from_utf8(digits[i..].into()).unwrap_or_default()
}

impl GuestLockHandle for FloorHandle {
    fn release(&self) -> Result<ReleaseOutcome, Error> {
        match redis::redis_eval(&self.release, &self.redis_key, &self.token)
            .map_err(Error::Redis)?
        {
            Value::Int(1) => {
                self.released.set(true);
                Ok(ReleaseOutcome::Released)
            }
            Value::Int(0) => Ok(ReleaseOutcome::Expired),
            _ => Ok(ReleaseOutcome::TakenOver),
        }
    }

    fn extend(&self, _ttl_ms: u64) -> Result<(), Error> {
        Err(refused())
    }

    fn is_held(&self) -> bool {
        !self.released.get()
    }

    fn info(&self) -> LockInfo {
        LockInfo {
            key: self.key.clone(),
            token: self.token[0].clone(),
            fence: None,
            acquired_at_ms: self.acquired_ns / 1_000_000,
            expires_at_ms: self.valid_until_ns / 1_000_000,
            valid_until_ns: self.valid_until_ns,
            status: if self.released.get() {
                HandleStatus::Released
            } else {
                HandleStatus::Held
            },
        }
    }
}

bindings::export!(Component with_types_in bindings);
