//! Variant `b-abi`: world `a` (plain `func` types, so no async function type in the binary)
//! generated with wit-bindgen's `async: true`: the export is lifted with the async ABI
//! (stackless, callback) and the import lowered async. Made to see whether jco 1.13.0, which
//! cannot parse `async func` types, can run the async ABI itself.
#![no_std]

extern crate alloc;
extern crate cm_guest_rt;

mod bindings {
    wit_bindgen::generate!({ path: "../wit", world: "a", async: true });
}

use alloc::string::{String, ToString};
use alloc::vec;
use core::sync::atomic::{AtomicU64, Ordering};

static NEXT: AtomicU64 = AtomicU64::new(0);

struct Component;

impl bindings::Guest for Component {
    async fn acquire(key: String, ttl_ms: u64) -> Result<u64, String> {
        let token = NEXT.fetch_add(1, Ordering::Relaxed).to_string();
        let keys = vec![key];
        let args = vec![token, ttl_ms.to_string()];
        let reply = bindings::eval(keys, args).await?;
        Ok(reply as u64)
    }
}

bindings::export!(Component with_types_in bindings);
