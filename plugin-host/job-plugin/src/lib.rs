//! A job runner plugin: each job is a read-modify-write of a host counter, made under a dlock
//! lock. It imports the lock API of dlock's published `lock-user` world and nothing of dlock's
//! internals: the host gives it the lock either by forwarding to a dlock component of the
//! plugin's own, or by composing it with the dlock component ahead of time.

#[allow(missing_docs, reason = "generated bindings; the WIT documents them")]
mod bindings {
    wit_bindgen::generate!({
        path: ["../../wit", "wit"],
        world: "example:jobs/job-runner",
        generate_all,
    });
}

use bindings::dlock::lock::lock::{Client, LockOptions, Permits, default_options};
use bindings::example::jobs::counter;

/// How long one job's lease lasts, and how long it waits for the lock, in milliseconds.
const TTL_MS: u64 = 10_000;
const WAIT_MS: u64 = 60_000;

struct Plugin;

impl bindings::Guest for Plugin {
    fn run(lock_key: String, counter: String, increments: u32) -> Result<u32, String> {
        // Short, jittered backoff: the lock is held for a moment at a time by many runners.
        let options = LockOptions {
            retry_delay_ms: 2,
            max_retry_delay_ms: 20,
            jitter: true,
            ..default_options()
        };
        let client = Client::create(&options).map_err(|e| format!("create: {e:?}"))?;
        for done in 0..increments {
            let lock = client
                .wait_for_lock(&lock_key, WAIT_MS, TTL_MS)
                .map_err(|e| format!("lock after {done} increments: {e:?}"))?;
            let value = counter::get(&counter);
            counter::set(&counter, value + 1);
            lock.handle
                .release()
                .map_err(|e| format!("release after {done} increments: {e:?}"))?;
        }
        Ok(increments)
    }

    fn lock_pair(lock_key: String, ttl_ms: u64) -> Result<bool, String> {
        CLIENT.with(|client| {
            let mut client = client.borrow_mut();
            if client.is_none() {
                *client = Some(Client::create(&default_options()).map_err(|e| format!("{e:?}"))?);
            }
            let client = client.as_ref().expect("just created");
            match client.try_acquire(&lock_key, ttl_ms) {
                Ok(Some(lock)) => lock
                    .handle
                    .release()
                    .map(|_| true)
                    .map_err(|e| format!("{e:?}")),
                Ok(None) => Ok(false),
                Err(e) => Err(format!("{e:?}")),
            }
        })
    }

    fn take_slots(key: String, limit: u32, tries: u32, ttl_ms: u64) -> Result<u32, String> {
        let client = Client::create(&default_options()).map_err(|e| format!("create: {e:?}"))?;
        let one = Permits { limit, count: 1 };
        let mut held = Vec::new();
        for _ in 0..tries {
            match client.try_acquire_permits(&key, one, ttl_ms) {
                Ok(Some(slot)) => held.push(slot),
                Ok(None) => {}
                Err(e) => return Err(format!("{e:?}")),
            }
        }
        let got = held.len() as u32;
        for slot in held {
            slot.handle.release().map_err(|e| format!("{e:?}"))?;
        }
        Ok(got)
    }
}

thread_local! {
    /// The client `lock-pair` keeps between calls.
    static CLIENT: std::cell::RefCell<Option<Client>> = const { std::cell::RefCell::new(None) };
}

bindings::export!(Plugin with_types_in bindings);
