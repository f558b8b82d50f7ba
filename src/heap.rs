//! The C allocator's thresholds, raised once per process so that freed memory is kept for the
//! next allocations instead of being handed back to the kernel at once.
//!
//! The pipeline allocates buffers of megabytes per image (a 1024² image is 4 MiB as floats, and
//! every stage makes one), and images decoded at upload wait in memory for their workers. With
//! glibc's starting thresholds such buffers are mapped and unmapped one by one, and every page of
//! every buffer is faulted in again: some 2,600 page faults per 1024² image, a quarter of its
//! time in the kernel (`benches/opencv/run.sh` and `benches/pipeline.rs` count them). glibc
//! raises its thresholds for good the first time a block it mapped on its own is freed: the mmap
//! threshold to that block's size, the trim threshold to twice that. One such block, allocated
//! and never touched, does it at no cost and needs no `unsafe`; another allocator just serves and
//! frees it. The cost is what a process keeps: up to twice the block free per arena after a
//! burst.

/// Larger than glibc's starting mmap threshold and no larger than the most it raises that
/// threshold to (`DEFAULT_MMAP_THRESHOLD_MAX`, 32 MiB on 64-bit).
const RETAIN_BLOCK: usize = 31 << 20;

/// Raises the thresholds (see the module doc); cheap to call again.
pub fn keep_freed_memory() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| drop(std::hint::black_box(Vec::<u8>::with_capacity(RETAIN_BLOCK))));
}
