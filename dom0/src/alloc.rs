//! The C allocator's thresholds, set once at start.
//!
//! The send and restore pipelines allocate a chunk-sized buffer per chunk
//! on one thread and free it on another (reader → workers → emitter or
//! writer). glibc hands the free memory at the top of a thread's heap back
//! to the kernel as soon as 128 KiB of it are free (`M_TRIM_THRESHOLD`),
//! so the next buffers fault in fresh zeroed pages again: measured on a
//! 1 GiB send, 0.16 s of system CPU per GiB (0.67 → 0.51 s), and about
//! 0.1 s on a receive (docs/BENCHMARKS.md). Keeping up to 256 MiB of free
//! heap (the peak of any run is far lower) and serving allocations below
//! 32 MiB from the heap ends that; the peak RSS is unchanged.

/// Raise the trim and mmap thresholds (glibc only; elsewhere nothing).
// Sound: mallopt only sets allocator parameters; it is called once, from
// the main thread, before any other thread exists, with values glibc
// documents as valid (M_MMAP_THRESHOLD at most 32 MiB on 64-bit).
#[allow(unsafe_code)]
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use nix::libc::{mallopt, M_MMAP_THRESHOLD, M_TRIM_THRESHOLD};
        // SAFETY: see above.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 32 << 20);
            mallopt(M_TRIM_THRESHOLD, 256 << 20);
        }
    }
}
