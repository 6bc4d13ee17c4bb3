//! Fuzz target: a data file (JSON, YAML, Cedar entities).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vakt::fuzz::data_file(data));
