//! A hostile component that never finishes instantiating: it exports `_initialize`, which the
//! component model runs while the instance is created, and loops there forever. Its exports
//! are never reached.

#![no_std]

extern crate alloc;
extern crate dlock_guest_rt;

#[allow(missing_docs, reason = "generated bindings")]
mod bindings {
    wit_bindgen::generate!({ path: "../../../wit", world: "dlock", generate_all });
}

use alloc::string::String;
use core::hint::black_box;

use bindings::exports::dlock::lock::lock::{
    self as api, Acquired, Error, GuestClient, GuestLockHandle, HandleStatus, KeyState, LockInfo,
    LockOptions, Permits, ReleaseOutcome, SemaphoreState, WakeOnRelease,
};

/// Runs when the instance is created, and never returns.
#[unsafe(no_mangle)]
pub extern "C" fn _initialize() {
    let mut n = 0u64;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

struct Component;
struct Never;

impl api::Guest for Component {
    type Client = Never;
    type LockHandle = Never;

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

impl GuestClient for Never {
    fn create(_: LockOptions) -> Result<api::Client, Error> {
        Err(Error::NotAcquired)
    }
    fn acquire(&self, _: String, _: u64) -> Result<Acquired, Error> {
        Err(Error::NotAcquired)
    }
    fn try_acquire(&self, _: String, _: u64) -> Result<Option<Acquired>, Error> {
        Ok(None)
    }
    fn wait_for_lock(&self, _: String, _: u64, _: u64) -> Result<Acquired, Error> {
        Err(Error::NotAcquired)
    }
    fn is_locked(&self, _: String) -> Result<bool, Error> {
        Ok(false)
    }
    fn key_state(&self, _: String) -> Result<KeyState, Error> {
        Ok(KeyState::Unlocked)
    }
    fn attach(&self, _: String, _: String) -> Result<Acquired, Error> {
        Err(Error::NotHeld)
    }
    fn acquire_permits(&self, _: String, _: Permits, _: u64) -> Result<Acquired, Error> {
        Err(Error::NotAcquired)
    }
    fn try_acquire_permits(
        &self,
        _: String,
        _: Permits,
        _: u64,
    ) -> Result<Option<Acquired>, Error> {
        Ok(None)
    }
    fn wait_for_permits(&self, _: String, _: Permits, _: u64, _: u64) -> Result<Acquired, Error> {
        Err(Error::NotAcquired)
    }
    fn semaphore_state(&self, _: String) -> Result<SemaphoreState, Error> {
        Err(Error::NotALock)
    }
}

impl GuestLockHandle for Never {
    fn release(&self) -> Result<ReleaseOutcome, Error> {
        Err(Error::NotHeld)
    }
    fn extend(&self, _: u64) -> Result<(), Error> {
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
