//! The format sniffer reads the first bytes of every upload: any input, no panic, and the
//! answer depends on the bytes alone.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mmt_core::domain::{AudioFormat, sniff_audio_format};

fuzz_target!(|data: &[u8]| {
    let format = sniff_audio_format(data);
    assert_eq!(format, sniff_audio_format(data));
    // Only the head is ever looked at: more bytes after it change nothing.
    if data.len() >= AudioFormat::SNIFF_LEN {
        assert_eq!(format, sniff_audio_format(&data[..AudioFormat::SNIFF_LEN]));
    }
});
