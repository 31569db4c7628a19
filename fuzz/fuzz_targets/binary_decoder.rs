#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ferrocache_fuzz::binary_decoder::check(data);
});
