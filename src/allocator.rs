//! The memory allocator of every binary built on this crate: mimalloc, asked for
//! plain blocks when a plain block is aligned enough.
//!
//! Under the SIPp load of BENCHMARKS.md (issue 12) glibc's malloc kept per-thread
//! arenas fragmented (peak RSS several times the live data, not returned after the
//! load) and spent a fifth of callflow's CPU; mimalloc is measured there against it.
//!
//! The `mimalloc` crate's allocator passes every request to `mi_malloc_aligned`,
//! whatever its alignment. In mimalloc 3 that call takes a slow path whenever the
//! size class's page has no free block at hand or the size is over 1 KiB, and that
//! path over-allocates (size plus alignment, then an interior pointer) unless the
//! size class is a power of two: about 50 of the 420 allocations of a hand-off call
//! went that way (BENCHMARKS.md, session 22). Nearly every Rust allocation asks for
//! an alignment of 8 or less, which every mimalloc block has, so those go to
//! `mi_malloc`, `mi_zalloc` and `mi_realloc`; larger alignments (a tokio task's
//! cache-line-aligned cell) still go to the aligned calls.

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// The alignment every block mimalloc returns has: a machine word. mimalloc's size
/// classes are whole numbers of words (`_mi_wsize_from_size`), its pages' first
/// blocks start at a multiple of 16 bytes (`MI_PAGE_MIN_START_BLOCK_ALIGN`), so
/// every block of a page starts at a multiple of the word size; `mi_malloc` also
/// stands in for C's `malloc` (the library's `override` build), which must align
/// any object that fits, a pointer included, for every size from 8 bytes up.
const WORD: usize = std::mem::size_of::<usize>();

/// mimalloc, with requests of word alignment or less sent to its plain calls.
pub struct Allocator;

/// Whether a block from the plain calls meets `layout`'s alignment: see [`WORD`].
fn plain(layout: &Layout) -> bool {
    layout.align() <= WORD
}

// SAFETY: each method forwards to mimalloc, which returns null or a block of at
// least the size asked for that stays valid until `mi_free` or `mi_realloc`:
// - alignment: a layout with `plain` (align ≤ 8) is served by `mi_malloc`,
//   `mi_zalloc` or `mi_realloc`, whose blocks are all word-aligned (see `WORD`);
//   any other by the `_aligned` call with the layout's alignment, as the `mimalloc`
//   crate does for every layout.
// - `realloc` receives the layout the block was allocated with (GlobalAlloc's
//   contract), so a block is reallocated by the same family of call that made it;
//   `mi_realloc` and `mi_realloc_aligned` copy the old contents up to the smaller
//   size and free the old block, or return null and leave it untouched.
// - `dealloc`: `mi_free` frees a block from any of these calls, interior pointers
//   of aligned blocks included.
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl's comment.
        unsafe {
            if plain(&layout) {
                mi::mi_malloc(layout.size()).cast()
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl's comment.
        unsafe {
            if plain(&layout) {
                mi::mi_zalloc(layout.size()).cast()
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator (the caller's contract).
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: see the impl's comment; `ptr` was allocated with `layout`.
        unsafe {
            if plain(&layout) {
                mi::mi_realloc(ptr.cast(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast(), new_size, layout.align()).cast()
            }
        }
    }
}

unsafe extern "C" {
    /// mimalloc.h: `void mi_collect(bool force)`.
    fn mi_collect(force: bool);
}

/// Returns to the system the memory this thread's heap holds free: pages emptied
/// some time ago that mimalloc would otherwise return only when it is next called
/// (an engine idle after a load is not), so that RSS comes back down after the
/// load. Not forced: pages emptied in the last moments stay for the next call.
pub fn release_free_memory() {
    // SAFETY: `mi_collect` takes no pointer and has no precondition: it frees only
    // pages with no block in use, from any thread, at any time.
    unsafe { mi_collect(false) }
}

#[cfg(test)]
mod tests {
    use super::Allocator;
    use std::alloc::{GlobalAlloc, Layout};

    /// Blocks of every size up to 5 KiB, at each alignment from 1 to 256, are
    /// aligned as asked, keep their contents when grown and shrunk, and are freed;
    /// some are kept while others come and go, so that pages fill and empty.
    #[test]
    fn blocks_are_aligned_and_keep_their_contents() {
        let mut kept = Vec::new();
        for align in [1usize, 2, 4, 8, 16, 32, 64, 128, 256] {
            for size in (1..5_000usize).step_by(7) {
                let layout = Layout::from_size_align(size, align).unwrap();
                let fill = (size % 251) as u8;
                // SAFETY: the layout's size is not zero; every pointer is checked
                // for null, written and read within the size it was given, and
                // freed once, with the layout it was allocated with.
                unsafe {
                    let p = Allocator.alloc(layout);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "size {size} align {align}");
                    p.write_bytes(fill, size);
                    let p = Allocator.realloc(p, layout, size * 2);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "grown: size {size} align {align}");
                    assert!((0..size).all(|i| *p.add(i) == fill));
                    let p = Allocator.realloc(p, layout, size);
                    assert!((0..size).all(|i| *p.add(i) == fill));
                    let z = Allocator.alloc_zeroed(layout);
                    assert_eq!(z as usize % align, 0, "zeroed: size {size} align {align}");
                    assert!((0..size).all(|i| *z.add(i) == 0));
                    Allocator.dealloc(z, layout);
                    if size % 3 == 0 {
                        kept.push((p, layout));
                    } else {
                        Allocator.dealloc(p, layout);
                    }
                }
            }
        }
        for (p, layout) in kept {
            // SAFETY: allocated above with this layout and not yet freed.
            unsafe { Allocator.dealloc(p, layout) }
        }
    }
}
