//! The component glue: WASI clocks and random, the imported `redis-eval`, and the exports.

use alloc::rc::Rc;
use alloc::string::String;
use core::cell::RefCell;

use crate::bindings::dlock::lock::redis::{self, Error as RedisError, Script, Value};
use crate::bindings::exports::dlock::lock::lock::{
    self as api, Error, GuestClient, GuestLockHandle, LockInfo, LockOptions, LockState,
};
use crate::lock::{self, Client, Handle};
use crate::platform::{self, Platform};
use crate::scripts::Op;
use wasip2::clocks::{monotonic_clock, wall_clock};
use wasip2::random::random;

#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    core::arch::wasm32::unreachable()
}

/// The canonical ABI's allocation entry point, which the host calls to pass lists and
/// strings in. wit-bindgen leaves it to the C library on `wasm32-wasip2`, and this crate has
/// none (it is `no_std`), so it is defined here over the global allocator.
#[unsafe(no_mangle)]
unsafe extern "C" fn cabi_realloc(
    old_ptr: *mut u8,
    old_len: usize,
    align: usize,
    new_len: usize,
) -> *mut u8 {
    use alloc::alloc::{Layout, alloc, realloc};
    if new_len == 0 {
        // A dangling, well-aligned pointer: zero-sized values are never read or written.
        return align as *mut u8;
    }
    let Ok(layout) = Layout::from_size_align(new_len, align) else {
        core::arch::wasm32::unreachable()
    };
    let ptr = if old_len == 0 {
        // SAFETY: `layout` has a non-zero size.
        unsafe { alloc(layout) }
    } else {
        // SAFETY: the canonical ABI only passes back a pointer this function returned, with
        // the size and alignment it was allocated with; the new size is non-zero.
        unsafe {
            realloc(
                old_ptr,
                Layout::from_size_align_unchecked(old_len, align),
                new_len,
            )
        }
    };
    if ptr.is_null() {
        core::arch::wasm32::unreachable()
    }
    ptr
}

/// The platform inside the component: one per client, shared with its handles.
#[derive(Default)]
struct Wasi {
    /// The scripts registered with the host, loaded on first use. A failed load is not cached.
    scripts: RefCell<[Option<Rc<Script>>; 4]>,
}

impl Wasi {
    fn script(&self, op: Op) -> Result<Rc<Script>, RedisError> {
        let mut scripts = self.scripts.borrow_mut();
        let slot = &mut scripts[op.index()];
        if let Some(script) = slot {
            return Ok(script.clone());
        }
        let script = Rc::new(Script::load(op.source())?);
        *slot = Some(script.clone());
        Ok(script)
    }
}

impl Platform for Wasi {
    fn monotonic_ns(&self) -> u64 {
        monotonic_clock::now()
    }

    fn wall_ms(&self) -> u64 {
        let now = wall_clock::now();
        now.seconds * 1000 + u64::from(now.nanoseconds / 1_000_000)
    }

    fn sleep_ns(&self, ns: u64) {
        if ns > 0 {
            monotonic_clock::subscribe_duration(ns).block();
        }
    }

    fn random_u64(&self) -> u64 {
        random::get_random_u64()
    }

    fn new_token(&self) -> String {
        let a = random::get_random_u64().to_le_bytes();
        let b = random::get_random_u64().to_le_bytes();
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&a);
        bytes[8..].copy_from_slice(&b);
        platform::uuid_v4(bytes)
    }

    fn eval(&self, op: Op, keys: &[String], args: &[String]) -> Result<Value, RedisError> {
        let script = self.script(op)?;
        redis::redis_eval(&script, keys, args)
    }
}

struct Component;

impl api::Guest for Component {
    type Client = ClientResource;
    type LockHandle = HandleResource;

    fn default_options() -> LockOptions {
        lock::default_options()
    }
}

struct ClientResource(Client<Wasi>);
struct HandleResource(Handle<Wasi>);

fn handle(h: Handle<Wasi>) -> api::LockHandle {
    api::LockHandle::new(HandleResource(h))
}

impl GuestClient for ClientResource {
    fn create(options: LockOptions) -> Result<api::Client, Error> {
        Ok(api::Client::new(ClientResource(Client::new(
            Rc::new(Wasi::default()),
            options,
        )?)))
    }

    fn acquire(&self, key: String, ttl_ms: u64) -> Result<api::LockHandle, Error> {
        self.0.acquire(&key, ttl_ms).map(handle)
    }

    fn try_acquire(&self, key: String, ttl_ms: u64) -> Result<Option<api::LockHandle>, Error> {
        Ok(self.0.try_acquire(&key, ttl_ms)?.map(handle))
    }

    fn wait_for_lock(
        &self,
        key: String,
        timeout_ms: u64,
        ttl_ms: u64,
    ) -> Result<api::LockHandle, Error> {
        self.0.wait_for_lock(&key, timeout_ms, ttl_ms).map(handle)
    }

    fn is_locked(&self, key: String) -> Result<bool, Error> {
        self.0.is_locked(&key)
    }

    fn lock_state(&self, key: String) -> Result<LockState, Error> {
        self.0.lock_state(&key)
    }

    fn attach(&self, key: String, token: String) -> Result<api::LockHandle, Error> {
        self.0.attach(&key, &token).map(handle)
    }
}

impl GuestLockHandle for HandleResource {
    fn release(&self) -> Result<(), Error> {
        self.0.release()
    }

    fn extend(&self, ttl_ms: u64) -> Result<(), Error> {
        self.0.extend(ttl_ms)
    }

    fn is_held(&self) -> bool {
        self.0.is_held()
    }

    fn info(&self) -> LockInfo {
        self.0.info()
    }
}

crate::bindings::export!(Component with_types_in crate::bindings);
