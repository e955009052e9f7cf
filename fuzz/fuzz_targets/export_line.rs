#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| loket_fuzz::export_line(data));
