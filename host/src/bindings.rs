//! The host side of `wit/`: one `bindgen!` for the `dlock` world. WASI's interfaces are
//! wasmtime-wasi's own bindings.

wasmtime::component::bindgen!({
    path: "bundle/wit",
    world: "dlock",
    imports: { default: async | trappable },
    exports: { default: async },
    additional_derives: [PartialEq],
    with: {
        "dlock:lock/redis.script": crate::redis::ScriptEntry,
        "wasi:io": wasmtime_wasi::p2::bindings::io,
        "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        "wasi:random": wasmtime_wasi::p2::bindings::random,
    },
});

pub use dlock::lock::redis::{Error as WitRedisError, Scalar, Value};
pub use exports::dlock::lock::lock::{
    Error as WitLockError, HandleStatus as WitHandleStatus, KeyState as WitKeyState,
    LockInfo as WitLockInfo, LockOptions as WitLockOptions,
};
