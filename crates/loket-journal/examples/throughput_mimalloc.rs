//! `throughput` with mimalloc as the global allocator. sled 0.34 makes many small
//! allocations that other threads free (epoch-based reclamation), which glibc's malloc
//! handles poorly; the allocator is the binary's choice, so this only measures the effect.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

include!("support/throughput_main.rs");
