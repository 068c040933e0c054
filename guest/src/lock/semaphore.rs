//! Counting semaphores: the client's calls that take permits instead of the lock (the
//! acquisition itself is the lock's, `Kind::Permits`), and the semaphore's state.

use alloc::format;

use super::{Client, Handle, Kind, unexpected};
use crate::bindings::dlock::lock::redis::{Scalar, Value};
use crate::bindings::exports::dlock::lock::lock::{Error, Permits, SemaphoreState};
use crate::platform::Platform;
use crate::scripts::Op;
use crate::validate;

impl<P: Platform> Client<P> {
    /// Permits of a counting semaphore, with retries (see `acquire-permits` in `lock.wit`).
    pub fn acquire_permits(
        &self,
        key: &str,
        permits: Permits,
        ttl_ms: u64,
    ) -> Result<Handle<P>, Error> {
        self.acquire_kind(key, self.semaphore(permits)?, ttl_ms)
    }

    /// One attempt at permits: `None` when too few are free.
    pub fn try_acquire_permits(
        &self,
        key: &str,
        permits: Permits,
        ttl_ms: u64,
    ) -> Result<Option<Handle<P>>, Error> {
        self.try_acquire_kind(key, self.semaphore(permits)?, ttl_ms)
    }

    /// Polls for permits until taken or `timeout_ms` have passed.
    pub fn wait_for_permits(
        &self,
        key: &str,
        permits: Permits,
        timeout_ms: u64,
        ttl_ms: u64,
    ) -> Result<Handle<P>, Error> {
        self.wait_kind(key, self.semaphore(permits)?, timeout_ms, ttl_ms)
    }

    /// The permits held at a counting semaphore's key, and when the first lease ends.
    pub fn semaphore_state(&self, key: &str) -> Result<SemaphoreState, Error> {
        let keys = [self.redis_key(key)?];
        self.single_store("counting semaphores")?;
        let op = Op::SemaphoreCount;
        match self.platform.eval(op, &keys, &[]).map_err(Error::Redis)? {
            Value::Int(-1) => Err(Error::NotALock),
            Value::Array(items) => match items.as_slice() {
                [Scalar::Int(held), Scalar::Int(ms)] if *held >= 0 => Ok(SemaphoreState {
                    held: u32::try_from(*held).unwrap_or(u32::MAX),
                    first_ends_in_ms: u64::try_from(*ms).ok(),
                }),
                _ => Err(Error::Redis(unexpected(op, &Value::Array(items)))),
            },
            other => Err(Error::Redis(unexpected(op, &other))),
        }
    }

    /// A semaphore request's kind, once its numbers are checked; semaphores need one store.
    fn semaphore(&self, permits: Permits) -> Result<Kind, Error> {
        validate::permits(permits.limit, permits.count)?;
        self.single_store("counting semaphores")?;
        Ok(Kind::Permits {
            limit: permits.limit,
            count: permits.count,
        })
    }

    /// `invalid-argument` in quorum mode, for what needs a single store.
    fn single_store(&self, what: &str) -> Result<(), Error> {
        if self.nodes > 1 {
            return Err(Error::InvalidArgument(format!(
                "{what} are not available over {} independent Redis primaries (quorum mode): \
                 a permit granted by a majority cannot be counted against one limit, since each \
                 primary counts only its own; use one primary, Sentinel or a Redis Cluster",
                self.nodes
            )));
        }
        Ok(())
    }
}
