//! The component's `wasi:random/random`: wasmtime-wasi's CSPRNG, with a bound on how many bytes
//! one call may ask for.
//!
//! wasmtime-wasi lets one `get-random-bytes` ask for 64 MiB, which the host allocates before
//! the component sees any of it; the bound is `dlock_contract::MAX_RANDOM_BYTES`.

use wasmtime::component::HasData;
use wasmtime_wasi::p2::bindings::random::random;
use wasmtime_wasi::random::WasiRandomCtx;

use dlock_contract::MAX_RANDOM_BYTES;

/// The view of a store that random needs.
pub(crate) struct GuestRandom<'a>(pub(crate) &'a mut WasiRandomCtx);

/// Ties [`GuestRandom`] to the linker.
pub(crate) struct HasGuestRandom;

impl HasData for HasGuestRandom {
    type Data<'a> = GuestRandom<'a>;
}

impl random::Host for GuestRandom<'_> {
    fn get_random_bytes(&mut self, len: u64) -> wasmtime::Result<Vec<u8>> {
        if len > MAX_RANDOM_BYTES {
            wasmtime::bail!(
                "the component asked for {len} random bytes; the limit is {MAX_RANDOM_BYTES}"
            );
        }
        random::Host::get_random_bytes(self.0, len)
    }

    fn get_random_u64(&mut self) -> wasmtime::Result<u64> {
        random::Host::get_random_u64(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_over_the_limit_trap_and_others_are_served() {
        let mut ctx = WasiRandomCtx::default();
        let mut random = GuestRandom(&mut ctx);
        assert_eq!(
            random::Host::get_random_bytes(&mut random, MAX_RANDOM_BYTES)
                .unwrap()
                .len(),
            4096
        );
        assert!(random::Host::get_random_bytes(&mut random, MAX_RANDOM_BYTES + 1).is_err());
        assert!(random::Host::get_random_bytes(&mut random, 64 << 20).is_err());
    }
}
