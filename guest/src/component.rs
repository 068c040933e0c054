//! The component glue: WASI clocks and random, the imported `redis-eval`, and the exports.

use alloc::rc::Rc;
use alloc::string::String;
use core::cell::RefCell;

use crate::bindings::dlock::lock::redis::{self, RedisError, Script, Value, Wake};
use crate::bindings::exports::dlock::lock::lock::{
    self as api, Acquired, Error, GuestClient, GuestLockHandle, KeyState, LockInfo, LockOptions,
    Permits, ReleaseOutcome, SemaphoreState,
};
use crate::bindings::wasi::clocks::{monotonic_clock, wall_clock};
use crate::bindings::wasi::random::random;
use crate::lock::{self, Client, Handle};
use crate::platform::{self, Platform, Round};
use crate::scripts::Op;

extern crate dlock_guest_rt;

/// The platform inside the component: one per client, shared with its handles.
struct Wasi {
    /// The scripts registered with the host, loaded on first use. A failed load is not cached.
    scripts: RefCell<[Option<Rc<Script>>; Op::ALL.len()]>,
    /// A monotonic reading and the wall-clock time (ms) taken with it.
    anchor: (u64, u64),
    /// The host's `node-count`, asked once.
    nodes: u32,
    /// Random bytes drawn ahead for tokens, and how many of them are used: one `wasi:random`
    /// call per `TOKENS_PER_DRAW` tokens instead of two per token.
    token_bytes: RefCell<([u8; TOKEN_DRAW_BYTES], usize)>,
}

/// Tokens made from one `get-random-bytes` call.
const TOKENS_PER_DRAW: usize = 16;
/// The random bytes one token takes.
const TOKEN_RANDOM_BYTES: usize = 16;
const TOKEN_DRAW_BYTES: usize = TOKENS_PER_DRAW * TOKEN_RANDOM_BYTES;

impl Wasi {
    fn new() -> Self {
        let monotonic = monotonic_clock::now();
        let wall = wall_clock::now();
        Wasi {
            scripts: RefCell::new([const { None }; Op::ALL.len()]),
            anchor: (
                monotonic,
                wall.seconds * 1000 + u64::from(wall.nanoseconds / 1_000_000),
            ),
            nodes: redis::node_count(),
            token_bytes: RefCell::new(([0; TOKEN_DRAW_BYTES], TOKEN_DRAW_BYTES)),
        }
    }

    fn script(&self, op: Op) -> Result<Rc<Script>, RedisError> {
        let mut scripts = self.scripts.borrow_mut();
        let slot = &mut scripts[op.index()];
        if let Some(script) = slot {
            return Ok(script.clone());
        }
        let script = Rc::new(Script::load(crate::scripts::source(op))?);
        *slot = Some(script.clone());
        Ok(script)
    }
}

impl Platform for Wasi {
    fn monotonic_ns(&self) -> u64 {
        monotonic_clock::now()
    }

    fn wall_ms_at(&self, monotonic_ns: u64) -> u64 {
        let (anchor_ns, anchor_ms) = self.anchor;
        let since_ms = (monotonic_ns.saturating_sub(anchor_ns) / 1_000_000).cast_signed()
            - (anchor_ns.saturating_sub(monotonic_ns) / 1_000_000).cast_signed();
        anchor_ms.saturating_add_signed(since_ms)
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
        let mut pool = self.token_bytes.borrow_mut();
        let (bytes, used) = &mut *pool;
        if *used == TOKEN_DRAW_BYTES {
            let drawn = random::get_random_bytes(TOKEN_DRAW_BYTES as u64);
            // A host that answers short leaves zeros; the token is still of the right form.
            let n = drawn.len().min(TOKEN_DRAW_BYTES);
            bytes[..n].copy_from_slice(&drawn[..n]);
            *used = 0;
        }
        let mut token = [0u8; TOKEN_RANDOM_BYTES];
        token.copy_from_slice(&bytes[*used..*used + TOKEN_RANDOM_BYTES]);
        // Used bytes are not kept: a token is in memory only while something holds it.
        bytes[*used..*used + TOKEN_RANDOM_BYTES].fill(0);
        *used += TOKEN_RANDOM_BYTES;
        platform::uuid_v4(token)
    }

    fn eval(&self, op: Op, keys: &[String], args: &[String]) -> Result<Value, RedisError> {
        let script = self.script(op)?;
        redis::redis_eval(&script, keys, args)
    }

    fn wait_for_release(
        &self,
        redis_key: &str,
        timeout_ms: u64,
        listen: bool,
    ) -> Result<Wake, RedisError> {
        redis::wait_for_release(redis_key, timeout_ms, listen)
    }

    fn nodes(&self) -> u32 {
        self.nodes
    }

    fn eval_all(&self, op: Op, keys: &[String], args: &[String]) -> Round {
        let script = self.script(op)?;
        redis::redis_eval_all(&script, keys, args)
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

/// The handle the caller gets, with its info read once here rather than by a second call.
fn acquired(h: Handle<Wasi>) -> Acquired {
    Acquired {
        info: h.info(),
        handle: api::LockHandle::new(HandleResource(h)),
    }
}

impl GuestClient for ClientResource {
    fn create(options: LockOptions) -> Result<api::Client, Error> {
        Ok(api::Client::new(ClientResource(Client::new(
            Rc::new(Wasi::new()),
            options,
        )?)))
    }

    fn acquire(&self, key: String, ttl_ms: u64) -> Result<Acquired, Error> {
        self.0.acquire(&key, ttl_ms).map(acquired)
    }

    fn try_acquire(&self, key: String, ttl_ms: u64) -> Result<Option<Acquired>, Error> {
        Ok(self.0.try_acquire(&key, ttl_ms)?.map(acquired))
    }

    fn wait_for_lock(&self, key: String, timeout_ms: u64, ttl_ms: u64) -> Result<Acquired, Error> {
        self.0.wait_for_lock(&key, timeout_ms, ttl_ms).map(acquired)
    }

    fn is_locked(&self, key: String) -> Result<bool, Error> {
        self.0.is_locked(&key)
    }

    fn key_state(&self, key: String) -> Result<KeyState, Error> {
        self.0.key_state(&key)
    }

    fn attach(&self, key: String, token: String) -> Result<Acquired, Error> {
        self.0.attach(&key, &token).map(acquired)
    }

    fn acquire_permits(
        &self,
        key: String,
        permits: Permits,
        ttl_ms: u64,
    ) -> Result<Acquired, Error> {
        self.0.acquire_permits(&key, permits, ttl_ms).map(acquired)
    }

    fn try_acquire_permits(
        &self,
        key: String,
        permits: Permits,
        ttl_ms: u64,
    ) -> Result<Option<Acquired>, Error> {
        Ok(self
            .0
            .try_acquire_permits(&key, permits, ttl_ms)?
            .map(acquired))
    }

    fn wait_for_permits(
        &self,
        key: String,
        permits: Permits,
        timeout_ms: u64,
        ttl_ms: u64,
    ) -> Result<Acquired, Error> {
        self.0
            .wait_for_permits(&key, permits, timeout_ms, ttl_ms)
            .map(acquired)
    }

    fn semaphore_state(&self, key: String) -> Result<SemaphoreState, Error> {
        self.0.semaphore_state(&key)
    }
}

impl GuestLockHandle for HandleResource {
    fn release(&self) -> Result<ReleaseOutcome, Error> {
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
