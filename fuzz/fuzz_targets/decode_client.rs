#![no_main]
use ami_proto::Role;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ami_proto_fuzz::check(Role::Client, data));
