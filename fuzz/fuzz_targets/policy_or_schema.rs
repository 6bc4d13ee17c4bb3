//! Fuzz target: a policy file, and a schema file (Cedar and JSON syntax).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vakt::fuzz::policy_or_schema(data));
