//! The Lua scripts, one per operation ([`Op`], the contract's list of scripts). Their return
//! codes are documented at the top of each `.lua` file; `crate::lock` is the only reader of
//! those codes.

/// One of the component's scripts.
pub use dlock_contract::Script as Op;

/// The script's Lua source.
pub fn source(op: Op) -> &'static str {
    match op {
        Op::Acquire => include_str!("../scripts/acquire.lua"),
        Op::Release => include_str!("../scripts/release.lua"),
        Op::Extend => include_str!("../scripts/extend.lua"),
        Op::Check => include_str!("../scripts/check.lua"),
        Op::SemaphoreAcquire => include_str!("../scripts/semaphore_acquire.lua"),
        Op::SemaphoreRelease => include_str!("../scripts/semaphore_release.lua"),
        Op::SemaphoreExtend => include_str!("../scripts/semaphore_extend.lua"),
        Op::SemaphoreCount => include_str!("../scripts/semaphore_count.lua"),
    }
}
