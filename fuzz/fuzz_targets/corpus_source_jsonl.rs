//! Fuzz target `corpus_source_jsonl`: the body is `warden_fuzz_targets`'s, shared with the seed-replay test.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let target = warden_fuzz_targets::target("corpus_source_jsonl")
        .expect("listed in warden_fuzz_targets::TARGETS");
    let _ = (target.run)(data);
});
