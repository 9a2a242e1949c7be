#![no_main]
// One target per parser (targets.txt): the whole L7 engine on a conversation, with the port hint of this protocol.
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    common::run(data, 6, 9000);
});
