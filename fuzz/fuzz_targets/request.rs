//! Fuzz target: a gRPC AuthorizeRequest, AuthorizeBatchRequest or ResolveSystemUserRequest as it arrives on the wire.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vakt::fuzz::request(data));
