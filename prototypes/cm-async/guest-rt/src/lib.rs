//! What a `no_std` component needs on `wasm32-wasip2`, shared by dlock's component and the
//! test suite's hostile components: a global allocator (dlmalloc, first using the free part of
//! the initial linear memory; see `heap.rs`), a panic handler (a trap), and the
//! canonical ABI's `cabi_realloc`, and the `memcmp`/`bcmp` that Rust code may call (on
//! `wasm32-wasip2` they normally come from the C library; `memcpy` and `memset` are wasm
//! instructions there). Link it with `extern crate dlock_guest_rt;`.
//!
//! Without Rust's standard library a component imports only what its own code uses; with it,
//! `wasm32-wasip2` output also imports `wasi:cli/*` and `wasi:io/streams` for std's runtime.

#![no_std]
// The byte loops below must stay loops: without this, LLVM may turn them back into calls to
// the very functions they define.
#![no_builtins]

#[cfg(target_family = "wasm")]
mod heap;

#[cfg(target_family = "wasm")]
mod wasm {
    extern crate alloc;

    use alloc::alloc::{Layout, alloc, realloc};

    #[global_allocator]
    static ALLOCATOR: crate::heap::Global = crate::heap::Global;

    #[panic_handler]
    fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
        core::arch::wasm32::unreachable()
    }

    /// The canonical ABI's allocation entry point, which the host calls to pass lists and
    /// strings in. wit-bindgen leaves it to the C library on `wasm32-wasip2`, and a `no_std`
    /// component has none, so it is defined here over the global allocator.
    #[unsafe(no_mangle)]
    unsafe extern "C" fn cabi_realloc(
        old_ptr: *mut u8,
        old_len: usize,
        align: usize,
        new_len: usize,
    ) -> *mut u8 {
        if new_len == 0 {
            // A dangling, well-aligned pointer: zero-sized values are never read or written.
            return align as *mut u8;
        }
        let Ok(layout) = Layout::from_size_align(new_len, align) else {
            core::arch::wasm32::unreachable()
        };
        let ptr = if old_len == 0 {
            // SAFETY: `layout` has a non-zero size.
            unsafe { alloc(layout) }
        } else {
            // SAFETY: the canonical ABI only passes back a pointer this function returned,
            // with the size and alignment it was allocated with; the new size is non-zero.
            unsafe {
                realloc(
                    old_ptr,
                    Layout::from_size_align_unchecked(old_len, align),
                    new_len,
                )
            }
        };
        if ptr.is_null() {
            core::arch::wasm32::unreachable()
        }
        ptr
    }

    /// Compares `n` bytes; negative, zero or positive as C's `memcmp`.
    #[unsafe(no_mangle)]
    unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
        for i in 0..n {
            // SAFETY: callers pass two readable regions of at least `n` bytes.
            let (x, y) = unsafe { (*a.add(i), *b.add(i)) };
            if x != y {
                return i32::from(x) - i32::from(y);
            }
        }
        0
    }

    /// Zero when the `n` bytes are equal, as C's `bcmp`.
    #[unsafe(no_mangle)]
    unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
        // SAFETY: as for `memcmp`.
        unsafe { memcmp(a, b, n) }
    }
}
