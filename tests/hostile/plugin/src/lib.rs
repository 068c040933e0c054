//! Hostile plugins of a plugin host: they import dlock's lock API (the `lock-user` world) and
//! misbehave as `run`'s mode says, reporting what the host answered (`Ok` means the host let
//! the attempt through).
//!
//! Modes: `take` (acquire `key` for 30 s and keep it: the token is returned), `release` and
//! `extend` (attach to `key` with the token `arg` and release or extend it), `look` (is `key`
//! locked?), `spin` (an endless loop), `trap` (an unreachable instruction), `clients` (create
//! clients until refused; how many), `flood` (try-acquire and release `key` `arg` times; how
//! many calls went through and how many were refused), and with the `redis` feature
//! `redis-flushall` (run `FLUSHALL` through `dlock:lock/redis`).

#![no_std]

extern crate alloc;
extern crate dlock_guest_rt;

#[allow(missing_docs, reason = "generated bindings")]
mod bindings {
    #[cfg(not(feature = "redis"))]
    wit_bindgen::generate!({
        path: ["../../../wit", "wit"],
        world: "dlock-test:hostile-plugin/hostile-plugin",
        generate_all,
    });
    #[cfg(feature = "redis")]
    wit_bindgen::generate!({
        path: ["../../../wit", "wit"],
        world: "dlock-test:hostile-plugin/hostile-redis-plugin",
        generate_all,
    });
}

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::hint::black_box;

use bindings::dlock::lock::lock::{Client, ReleaseOutcome, default_options};

struct Plugin;

fn client() -> Result<Client, String> {
    Client::create(&default_options()).map_err(|e| format!("create: {e:?}"))
}

impl bindings::Guest for Plugin {
    fn run(mode: String, key: String, arg: String) -> Result<String, String> {
        match mode.as_str() {
            "take" => {
                let lock = client()?
                    .acquire(&key, 30_000)
                    .map_err(|e| format!("{e:?}"))?;
                core::mem::forget(lock.handle);
                Ok(lock.info.token)
            }
            "release" => client()?
                .attach(&key, &arg)
                .and_then(|lock| lock.handle.release())
                .map(|outcome| {
                    match outcome {
                        ReleaseOutcome::Released => "released",
                        ReleaseOutcome::Expired => "expired",
                        ReleaseOutcome::TakenOver => "taken-over",
                    }
                    .to_string()
                })
                .map_err(|e| format!("{e:?}")),
            "extend" => client()?
                .attach(&key, &arg)
                .and_then(|lock| lock.handle.extend(600_000))
                .map(|()| "extended".to_string())
                .map_err(|e| format!("{e:?}")),
            "look" => client()?
                .is_locked(&key)
                .map(|locked| format!("{locked}"))
                .map_err(|e| format!("{e:?}")),
            "spin" => {
                let mut n = 0u64;
                loop {
                    n = black_box(n.wrapping_add(1));
                }
            }
            "trap" => core::arch::wasm32::unreachable(),
            "clients" => {
                let mut held = Vec::new();
                loop {
                    match Client::create(&default_options()) {
                        Ok(client) => held.push(client),
                        Err(e) => return Ok(format!("{} {e:?}", held.len())),
                    }
                }
            }
            "flood" => {
                let client = client()?;
                let rounds: u32 = arg.parse().map_err(|_| "flood needs a count".to_string())?;
                let (mut through, mut refused) = (0u32, 0u32);
                for _ in 0..rounds {
                    match client.try_acquire(&key, 30_000) {
                        Ok(Some(lock)) => {
                            through += 1;
                            match lock.handle.release() {
                                Ok(_) => through += 1,
                                Err(_) => refused += 1,
                            }
                        }
                        Ok(None) => through += 1,
                        Err(_) => refused += 1,
                    }
                }
                Ok(format!("{through} {refused}"))
            }
            #[cfg(feature = "redis")]
            "redis-flushall" => {
                use bindings::dlock::lock::redis::{Script, redis_eval};
                Script::load("return redis.call('FLUSHALL')")
                    .and_then(|script| redis_eval(&script, &[], &[]))
                    .map(|reply| format!("{reply:?}"))
                    .map_err(|e| format!("{e:?}"))
            }
            other => Err(format!("unknown mode {other:?}")),
        }
    }
}

bindings::export!(Plugin with_types_in bindings);
