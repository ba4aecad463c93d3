#![cfg_attr(feature = "mimalloc", allow(dead_code))]
//! A global allocator that keeps freed large blocks for reuse.
//!
//! glibc serves blocks above 32 MiB (its largest mmap threshold) with a fresh `mmap` and returns
//! them with `munmap` when freed, so each such tensor faults its pages in again: at the paper's
//! segment of 2,048 tokens, the logits of one segment are 262 MB, and training at that segment
//! length spent most of its time in page faults (docs/benchmarks.md has the measurement). A
//! training step allocates the same sizes every time, so freed
//! blocks of at least [`MIN_BLOCK`] bytes are kept (up to [`cache_limit`] bytes in all, the
//! longest-kept dropped first) and handed out again for the same size and alignment. Smaller blocks go
//! straight to the system allocator.
//!
//! Only the verbs that compute with tensors turn the cache and [`keep_freed_memory`] on
//! ([`tune_for_tensors`]); the others (data preparation, tokenizer training), whose large blocks
//! are not reused, keep glibc's defaults and give freed memory back.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Smallest block kept for reuse: what glibc would otherwise map and unmap every time.
pub const MIN_BLOCK: usize = 32 << 20;
const SLOTS: usize = 64;

#[derive(Clone, Copy)]
struct Block {
    ptr: *mut u8,
    size: usize,
    align: usize,
}

// The pointers are owned by the cache while stored; only the allocator touches them.
unsafe impl Send for Block {}

struct Cache {
    blocks: [Option<Block>; SLOTS],
    bytes: usize,
}

static CACHE: Mutex<Cache> = Mutex::new(Cache { blocks: [None; SLOTS], bytes: 0 });
/// Bytes the cache may hold; 0 (off) until [`tune_for_tensors`].
static LIMIT: AtomicUsize = AtomicUsize::new(0);

/// Bytes the cache may hold (0: off).
pub fn cache_limit() -> usize {
    LIMIT.load(Ordering::Relaxed)
}

/// For the verbs that compute with tensors, called once before any other thread starts: keeps
/// freed heap memory ([`keep_freed_memory`]) and turns the large-block cache on with room for
/// `INFINI_ALLOC_CACHE_MIB` MiB if set (0 keeps it off), else a quarter of physical memory
/// (Linux; 4 GiB elsewhere).
pub fn tune_for_tensors() {
    keep_freed_memory();
    let limit = std::env::var("INFINI_ALLOC_CACHE_MIB")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .map(|mib| mib << 20)
        .or_else(|| {
            let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
            let kib: usize = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024 / 4)
        })
        .unwrap_or(4 << 30);
    LIMIT.store(limit, Ordering::Relaxed);
}

/// The global allocator described in the module documentation.
pub struct LargeBlockCache;

impl LargeBlockCache {
    fn take(layout: Layout) -> Option<*mut u8> {
        let mut cache = CACHE.lock().ok()?;
        let slot = cache.blocks.iter().position(|b| b.is_some_and(|b| b.size == layout.size() && b.align == layout.align()))?;
        let block = cache.blocks[slot].take()?;
        cache.bytes -= block.size;
        Some(block.ptr)
    }

    /// Keeps `ptr` if there is room (dropping the oldest blocks to make it); false if not kept.
    fn keep(ptr: *mut u8, layout: Layout) -> bool {
        let limit = cache_limit();
        if layout.size() > limit {
            return false;
        }
        let Ok(mut cache) = CACHE.lock() else { return false };
        let mut evicted: [Option<Block>; SLOTS] = [None; SLOTS];
        let mut n = 0;
        // Slots are filled in order, so the first ones are the oldest.
        while cache.bytes + layout.size() > limit || cache.blocks.iter().all(Option::is_some) {
            let Some(oldest) = cache.blocks.iter().position(Option::is_some) else { break };
            if let Some(block) = cache.blocks[oldest].take() {
                cache.bytes -= block.size;
                evicted[n] = Some(block);
                n += 1;
            }
            cache.blocks[oldest..].rotate_left(1);
        }
        let Some(free) = cache.blocks.iter().position(Option::is_none) else { return false };
        cache.blocks[free] = Some(Block { ptr, size: layout.size(), align: layout.align() });
        cache.bytes += layout.size();
        drop(cache);
        for block in evicted.into_iter().flatten() {
            // SAFETY: the block came from System with this size and alignment.
            unsafe { System.dealloc(block.ptr, Layout::from_size_align_unchecked(block.size, block.align)) };
        }
        true
    }
}

unsafe impl GlobalAlloc for LargeBlockCache {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= MIN_BLOCK
            && let Some(ptr) = Self::take(layout)
        {
            return ptr;
        }
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= MIN_BLOCK
            && let Some(ptr) = Self::take(layout)
        {
            // SAFETY: the block holds layout.size() writable bytes.
            unsafe { std::ptr::write_bytes(ptr, 0, layout.size()) };
            return ptr;
        }
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() >= MIN_BLOCK && Self::keep(ptr, layout) {
            return;
        }
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Every block, cached or not, came from System: let it resize in place (mremap).
        // SAFETY: forwarded with the caller's pointer, layout and size.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// glibc hands blocks above its mmap threshold back to the kernel when freed, and trims the heap
/// top, so that every new tensor of a few MiB faults its pages in afresh (on Flex that was a
/// quarter of a training step: 1.6 M page faults in 4 steps of configs/bench.toml). Keep them
/// in the heap for reuse: tensors up to 32 MiB (glibc's largest threshold) come from the heap,
/// which is trimmed only past 1 GiB free.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; call it before other threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_large_blocks_are_reused_and_zeroed_on_request() {
        LIMIT.store(1 << 30, Ordering::Relaxed);
        let layout = Layout::from_size_align(MIN_BLOCK + 4096, 64).unwrap();
        let cache = LargeBlockCache;
        // SAFETY: plain allocation calls with a valid layout; every block is freed once.
        unsafe {
            let a = cache.alloc(layout);
            assert!(!a.is_null());
            std::ptr::write_bytes(a, 7, layout.size());
            cache.dealloc(a, layout);
            let b = cache.alloc_zeroed(layout);
            assert_eq!(a, b, "the freed block is handed out again");
            assert!(std::slice::from_raw_parts(b, layout.size()).iter().all(|&x| x == 0));
            // Another size does not get it.
            let other = Layout::from_size_align(MIN_BLOCK + 8192, 64).unwrap();
            cache.dealloc(b, layout);
            let c = cache.alloc(other);
            assert_ne!(c, b);
            cache.dealloc(c, other);
            // Small blocks are never cached.
            let small = Layout::from_size_align(1024, 8).unwrap();
            let s = cache.alloc(small);
            cache.dealloc(s, small);
            assert!(CACHE.lock().unwrap().bytes <= cache_limit());
        }
    }
}
