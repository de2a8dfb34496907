//! Tokenizer on accepted blobs. Input: `[n][text: n % 64 bytes][blob]` (the blob as given and
//! with its CRC/length fields repaired). Checks `encode` against its contract on the text, on
//! the metadata string and on the first 64 tokens concatenated, with short and ample outputs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use runtime_fuzz::{check_encode, for_each_model};

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = (n as usize % 64).min(rest.len());
    let (text, blob) = rest.split_at(n);
    for_each_model(blob, |model, _| {
        for out_len in [0, 1, 3, 128] {
            check_encode(model, text, out_len);
        }
        check_encode(model, model.metadata().as_bytes(), 64);
        // The first tokens' bytes, concatenated (greedy matching may still cut across them:
        // tokens "a", "bc", "ab" give "abcab", and "c" starts no token).
        let v = model.config().vocab_size.min(64) as u16;
        let all: Vec<u8> = (0..v)
            .flat_map(|id| runtime::decode(model, id).iter().copied())
            .collect();
        check_encode(model, &all, all.len());
    });
});
