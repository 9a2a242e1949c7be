//! The agent's global allocator. The L7 path allocates a few strings per message; under glibc
//! malloc/free were ~20 % of `analyze` on HTTP/Redis traffic, mimalloc halves that (A/B in
//! BENCHMARKS.md, `deepflow-protocols/examples/l7_pipeline.rs`). Its default purge delay
//! (10 ms) gave freed pages back to the kernel and re-faulted them in a tight loop (15 % of
//! the time in `clear_page`); 250 ms keeps the working set without holding memory for long.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` (the same index in mimalloc v2 and v3).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Purge delay in ms; `MIMALLOC_PURGE_DELAY` in the environment still wins.
const PURGE_DELAY_MS: i64 = 250;

/// Sets the allocator's options; call first thing in `main`.
pub fn tune() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: mi_option_set stores an integer option; any value is valid for the purge delay.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS as std::ffi::c_long);
    }
}
