//! World `b`: component-model-async ABI. A stackless async export calling an async import.
//! Identical to guest-a apart from the world name and the `async`/`.await` markers, and that
//! wit-bindgen 0.61.1 gives async imports owned arguments (`Vec<String>`, not `&[String]`).
#![no_std]

extern crate alloc;
extern crate cm_guest_rt;

mod bindings {
    wit_bindgen::generate!({ path: "../wit", world: "b" });
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
