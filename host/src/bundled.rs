//! The component built from `guest/` and embedded in this crate (`bundle/`), with its scripts.

/// The bundled lock component: a `wasm32-wasip2` component implementing the `dlock` world.
pub static COMPONENT: &[u8] = include_bytes!("../bundle/dlock_guest.wasm");

include!(concat!(env!("OUT_DIR"), "/bundled.rs"));
