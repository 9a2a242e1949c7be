#![no_main]
// One target per parser (targets.txt): the whole L7 engine on a conversation, with the port hint of this protocol.
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((b, rest)) if b & 1 == 1 => common::run(rest, 6, 53),
        Some((_, rest)) => common::run(rest, 17, 53),
        None => {}
    }
});
