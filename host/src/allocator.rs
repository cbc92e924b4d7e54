//! The `tessera` binary's global allocator (the library sets none: an embedder chooses).
//!
//! The host allocates and frees many small, short-lived buffers per request (headers,
//! JSON, event metadata) on every worker thread. Under glibc's allocator that was about a
//! fifth of the host's CPU at 64 connections, `malloc_consolidate` and its fastbin walks
//! among it; mimalloc's per-thread free lists take about a fifth off the CPU per command.
//!
//! Large blocks (1 MiB and more) still go to the C allocator. mimalloc keeps freed memory
//! for up to 100 ms before it gives it back, which is right for the small churn but not
//! for the few large buffers a hostile plugin can make the host fill and drop in quick
//! succession (SQL results up to their bound, events and states near theirs): kept, those
//! raised the host's peak resident memory by a third under the SQL sandbox's memory test.
//! glibc maps such blocks on their own and unmaps them when they are freed.
//!
//! Guarantee: every block is freed by the allocator that made it. Rust hands `dealloc`
//! and `realloc` the layout the block was allocated with, so its size says which one.

use std::alloc::{GlobalAlloc, Layout, System};

/// Blocks of at least this many bytes go to the C allocator.
const LARGE: usize = 1 << 20;

/// Small blocks to mimalloc, large ones to the C allocator.
#[derive(Debug)]
pub struct Split;

static SMALL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn is_large(size: usize) -> bool {
    size >= LARGE
}

// SAFETY: each method forwards to an allocator that upholds `GlobalAlloc`'s contract, and
// chooses it from the layout's size alone, so a block allocated by one is only ever
// resized or freed by the same one; a `realloc` that crosses the boundary moves the
// block through `alloc`, a copy of the smaller of the two sizes, and `dealloc`.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Split {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees (a non-zero size).
        unsafe {
            if is_large(layout.size()) {
                System.alloc(layout)
            } else {
                SMALL.alloc(layout)
            }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        unsafe {
            if is_large(layout.size()) {
                System.alloc_zeroed(layout)
            } else {
                SMALL.alloc_zeroed(layout)
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated with `layout`, so by the allocator its size picks.
        unsafe {
            if is_large(layout.size()) {
                System.dealloc(ptr, layout)
            } else {
                SMALL.dealloc(ptr, layout)
            }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` was allocated with `layout` by the allocator its size picks; the
        // caller guarantees `new_size` is non-zero and valid for `layout`'s alignment.
        unsafe {
            match (is_large(layout.size()), is_large(new_size)) {
                (true, true) => System.realloc(ptr, layout, new_size),
                (false, false) => SMALL.realloc(ptr, layout, new_size),
                _ => {
                    let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
                    let moved = self.alloc(new_layout);
                    if !moved.is_null() {
                        std::ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                    moved
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(unsafe_code)] // the tests call the allocator directly, as Rust does
mod tests {
    use super::*;

    /// Blocks that grow and shrink across the boundary keep their bytes.
    #[test]
    fn a_block_keeps_its_bytes_across_the_boundary() {
        let split = Split;
        for align in [1, 8, 64, 4096] {
            let small = Layout::from_size_align(1000, align).unwrap();
            // SAFETY: non-zero sizes; each block is freed with the layout it has then.
            unsafe {
                let p = split.alloc(small);
                assert!(!p.is_null());
                for i in 0..1000 {
                    *p.add(i) = (i % 251) as u8;
                }
                let q = split.realloc(p, small, 2 * LARGE);
                assert!(!q.is_null());
                assert_eq!(q as usize % align, 0);
                for i in 0..1000 {
                    assert_eq!(*q.add(i), (i % 251) as u8);
                }
                let large = Layout::from_size_align(2 * LARGE, align).unwrap();
                let r = split.realloc(q, large, 500);
                assert!(!r.is_null());
                assert_eq!(r as usize % align, 0);
                for i in 0..500 {
                    assert_eq!(*r.add(i), (i % 251) as u8);
                }
                split.dealloc(r, Layout::from_size_align(500, align).unwrap());
            }
        }
    }

    #[test]
    fn zeroed_blocks_are_zero_on_both_sides() {
        let split = Split;
        for size in [64, 3 * LARGE] {
            let layout = Layout::from_size_align(size, 16).unwrap();
            // SAFETY: a non-zero size, freed with the same layout.
            unsafe {
                let p = split.alloc_zeroed(layout);
                assert!(!p.is_null());
                assert!(std::slice::from_raw_parts(p, size).iter().all(|b| *b == 0));
                split.dealloc(p, layout);
            }
        }
    }
}
