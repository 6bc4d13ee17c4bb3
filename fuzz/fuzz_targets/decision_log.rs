//! Fuzz target: a decision log as audit verify, replay and shadow report read it, and a checkpoint file.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vakt::fuzz::decision_log(data));
