//! The Lua scripts, one per operation. Their return codes are documented at the top of each
//! `.lua` file; `crate::lock` is the only reader of those codes.

/// One of the component's scripts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `scripts/acquire.lua`: set-if-absent with a lease, optionally bumping the fence counter.
    Acquire,
    /// `scripts/release.lua`: compare-and-delete.
    Release,
    /// `scripts/extend.lua`: compare-and-expire.
    Extend,
    /// `scripts/check.lua`: PTTL.
    Check,
}

impl Op {
    /// Every script, in a fixed order (`index` gives the position).
    pub const ALL: [Op; 4] = [Op::Acquire, Op::Release, Op::Extend, Op::Check];

    /// The script's Lua source.
    pub fn source(self) -> &'static str {
        match self {
            Op::Acquire => include_str!("../scripts/acquire.lua"),
            Op::Release => include_str!("../scripts/release.lua"),
            Op::Extend => include_str!("../scripts/extend.lua"),
            Op::Check => include_str!("../scripts/check.lua"),
        }
    }

    /// Position in `ALL`.
    pub fn index(self) -> usize {
        self as usize
    }
}
