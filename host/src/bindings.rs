//! The host side of `wit/`: one `bindgen!` for the `dlock` world.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "dlock",
    imports: { default: async | trappable },
    exports: { default: async },
    additional_derives: [PartialEq],
    with: {
        "dlock:lock/redis.script": crate::redis_eval::ScriptEntry,
    },
});

pub use dlock::lock::redis::{Error as WitRedisError, Scalar, Value};
pub use exports::dlock::lock::lock::{
    Error as WitLockError, LockInfo as WitLockInfo, LockOptions as WitLockOptions,
    LockState as WitLockState, LockStatus as WitLockStatus,
};
