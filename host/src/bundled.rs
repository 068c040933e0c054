//! The component built from `guest/` and embedded in this crate, with its scripts.

pub use crate::limits::Role;

/// One of the bundled component's Lua scripts.
#[derive(Clone, Copy, Debug)]
pub struct BundledScript {
    /// The operation: `acquire`, `release`, `extend` or `check`.
    pub name: &'static str,
    /// What the host checks a call of it against (argument shapes; see `Policy`).
    pub role: Role,
    /// SHA1 of the source in lowercase hex (computed at build time), as Redis names it.
    pub sha1: &'static str,
    /// The Lua source, as the component sends it.
    pub source: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/bundled.rs"));
