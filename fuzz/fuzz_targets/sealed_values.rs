//! Opening sealed fields and sealed audio from arbitrary bytes: an error every time (the
//! fuzzer holds no key), never a panic, never plaintext.
#![no_main]

use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use mmt_core::crypto::{BlobOpener, KeyRing};

static KEYS: LazyLock<Arc<KeyRing>> = LazyLock::new(|| {
    Arc::new(
        KeyRing::parse(
            "k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=,k2:ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=",
            "k2",
        )
        .expect("a valid ring"),
    )
});

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        assert!(KEYS.open("record", "transcript", text).is_err());
        let _ = KeyRing::key_id_of(text);
    }
    match BlobOpener::from_header(KEYS.clone(), "audio/x", data) {
        Ok(Some((mut opener, header_len))) => {
            let body = &data[header_len..];
            let chunks: Vec<&[u8]> = body.chunks(BlobOpener::SEALED_CHUNK).collect();
            for (i, chunk) in chunks.iter().enumerate() {
                assert!(opener.open(chunk, i + 1 == chunks.len()).is_err());
            }
        }
        Ok(None) | Err(_) => {}
    }
});
