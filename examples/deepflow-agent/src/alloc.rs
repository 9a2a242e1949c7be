//! The agent's global allocator. The L7 path allocates a few strings per message; under glibc
//! malloc/free were ~20 % of `analyze` on HTTP/Redis traffic, mimalloc halves that (A/B in
//! BENCHMARKS.md, `deepflow-protocols/examples/l7_pipeline.rs`). Two options differ from
//! mimalloc's defaults:
//! - purge delay 250 ms (default 10 ms): the default gave freed pages back to the kernel and
//!   re-faulted them in a tight loop (15 % of the time in `clear_page`);
//! - arenas committed on demand (`arena_eager_commit` 0): the same speed, 63 -> 44 MiB peak RSS
//!   on the 1.05 M-packet bench capture.
//!
//! They are set as defaults from an `.init_array` constructor, before the first allocation
//! creates an arena (a call in `main` comes too late), so `MIMALLOC_PURGE_DELAY` /
//! `MIMALLOC_ARENA_EAGER_COMMIT` in the environment still win.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// (option, value): `mi_option_purge_delay` and `mi_option_arena_eager_commit`, the same
/// indices in mimalloc v2 and v3.
const OPTIONS: [(libmimalloc_sys::mi_option_t, std::ffi::c_long); 2] = [(15, 250), (4, 0)];

#[used]
#[allow(unsafe_code)]
#[unsafe(link_section = ".init_array")]
static TUNE: extern "C" fn() = tune;

extern "C" fn tune() {
    for (option, value) in OPTIONS {
        // SAFETY: sets the default of an integer option (no allocation, no other state).
        #[allow(unsafe_code)]
        unsafe {
            libmimalloc_sys::mi_option_set_default(option, value);
        }
    }
}
