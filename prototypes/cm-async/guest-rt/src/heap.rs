//! The global allocator: dlmalloc, whose first region is the free part of the initial linear
//! memory (from `__heap_base` to `__heap_end`) before it grows memory.
//!
//! dlmalloc's own wasm back end starts with `memory.grow` on `wasm32-wasip2`, even when the
//! initial memory has room. In a pooling host, growing past the initial size costs the host an
//! `mprotect` when the instance grows and another when its slot is reused; a client that fits
//! in the initial memory (about 56 KiB free with the 64 KiB stack) costs neither.

use core::alloc::{GlobalAlloc, Layout};
use core::arch::wasm32;
use core::cell::UnsafeCell;
use core::ptr;

use dlmalloc::{Allocator, Dlmalloc};

const PAGE: usize = 64 * 1024;

unsafe extern "C" {
    static __heap_base: u8;
    static __heap_end: u8;
}

/// The system side of dlmalloc: the initial memory's free part once, then `memory.grow`.
struct Region {
    /// Whether the initial memory's free part has been handed to dlmalloc.
    donated: UnsafeCell<bool>,
}

// SAFETY: `wasm32-wasip2` without the atomics feature has one thread.
unsafe impl Send for Region {}

unsafe impl Allocator for Region {
    fn alloc(&self, size: usize) -> (*mut u8, usize, u32) {
        // SAFETY: one thread; the flag is only touched here.
        let donated = unsafe { &mut *self.donated.get() };
        if !*donated {
            // The linker defines both symbols; only their addresses are used.
            let base = ptr::addr_of!(__heap_base) as usize;
            let end = ptr::addr_of!(__heap_end) as usize;
            if end > base && end - base >= size {
                *donated = true;
                return (base as *mut u8, end - base, 0);
            }
        }
        let pages = size.div_ceil(PAGE);
        let previous = wasm32::memory_grow(0, pages);
        if previous == usize::MAX {
            return (ptr::null_mut(), 0, 0);
        }
        ((previous * PAGE) as *mut u8, pages * PAGE, 0)
    }

    fn remap(&self, _: *mut u8, _: usize, _: usize, _: bool) -> *mut u8 {
        ptr::null_mut()
    }

    fn free_part(&self, _: *mut u8, _: usize, _: usize) -> bool {
        false
    }

    fn free(&self, _: *mut u8, _: usize) -> bool {
        false
    }

    fn can_release_part(&self, _: u32) -> bool {
        false
    }

    fn allocates_zeros(&self) -> bool {
        // Fresh linear memory (initial or grown) reads as zeros, and the heap region has never
        // been written before it is donated.
        true
    }

    fn page_size(&self) -> usize {
        PAGE
    }
}

struct Heap(UnsafeCell<Dlmalloc<Region>>);

// SAFETY: one thread (see `Region`).
unsafe impl Sync for Heap {}

/// dlmalloc asks the system for memory in multiples of this. Its default (64 KiB) is more
/// than the initial memory has free, so the first request would skip it.
const GRANULARITY: usize = 4096;

static HEAP: Heap = Heap(UnsafeCell::new({
    let mut heap = Dlmalloc::new_with_allocator(Region {
        donated: UnsafeCell::new(false),
    });
    assert!(heap.set_granularity(GRANULARITY));
    heap
}));

/// The global allocator over [`HEAP`].
pub(crate) struct Global;

impl Global {
    #[allow(clippy::mut_from_ref, reason = "one thread: no other reference exists")]
    fn heap(&self) -> &mut Dlmalloc<Region> {
        // SAFETY: one thread, and no allocator call re-enters another.
        unsafe { &mut *HEAP.0.get() }
    }
}

unsafe impl GlobalAlloc for Global {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded under GlobalAlloc's contract.
        unsafe { self.heap().malloc(layout.size(), layout.align()) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        unsafe { self.heap().calloc(layout.size(), layout.align()) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as for `alloc`.
        unsafe { self.heap().free(ptr, layout.size(), layout.align()) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `alloc`.
        unsafe {
            self.heap()
                .realloc(ptr, layout.size(), layout.align(), new_size)
        }
    }
}
