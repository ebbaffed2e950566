//! Giving the memory of ended sessions back to the OS.
//!
//! glibc's malloc keeps freed memory in its per-thread arenas: small chunks freed in the middle
//! of a heap are reused but never returned, so a `tolk serve` that once held 2,000 sessions kept
//! ~30–60 MB of them after they closed (and another allocator, mimalloc, tried here, kept all of
//! it while the server was idle). `malloc_trim(0)` walks the arenas and returns every free page.
//! The server calls [`release_freed_memory`] on a blocking thread, at most once a second, after
//! sessions have ended (see `Server::run_until`). On other C libraries it does nothing.

/// Returns free heap pages to the OS (glibc `malloc_trim(0)`); a no-op elsewhere.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    glibc::trim();
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
mod glibc {
    unsafe extern "C" {
        /// glibc, `<malloc.h>`: `int malloc_trim(size_t pad)`.
        fn malloc_trim(pad: usize) -> i32;
    }

    pub(super) fn trim() {
        // SAFETY: malloc_trim takes no pointers and only works on malloc's own state, under
        // malloc's own locks; it is safe to call from any thread at any time.
        unsafe {
            malloc_trim(0);
        }
    }
}
