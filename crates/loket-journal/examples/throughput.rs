//! Quick write-throughput measurement of the journal:
//! `cargo run --release -p loket-journal --example throughput -- [events] [tasks] [window] [max_batch]`
//!
//! Each task keeps `window` submits in flight (1 = submit, await, repeat, like a unary
//! publisher; more = a publish stream) of ~1 KB events. Uses the system allocator; see
//! `throughput_mimalloc` for the same run with mimalloc.

include!("support/throughput_main.rs");
