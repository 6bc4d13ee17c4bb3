//! Fuzz target: a vakt serve configuration file, and a vakt verify properties file.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vakt::fuzz::config_or_properties(data));
