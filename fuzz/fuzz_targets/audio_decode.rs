//! The decode path every upload takes before Whisper sees it: any bytes, under any of the
//! extensions MMT accepts, end in samples or an `AudioError` — no panic, no single allocation
//! sized by what a header claims, and never more audio than the file's size allows.
#![no_main]
// Built with RUSTC_BOOTSTRAP=1 (scripts/fuzz.sh), as cargo-fuzz needs anyway.
#![feature(alloc_error_hook)]

use std::{
    alloc::{GlobalAlloc, Layout, System},
    io::{Seek, Write},
};

use libfuzzer_sys::fuzz_target;
use mmt_core::adapters::audio::{TARGET_RATE, decode_file, decoded_seconds_limit};

/// The hints the upload path passes on (the extension of the uploaded name); the first byte
/// of the input picks one, so the fuzzer explores each container's reader.
const HINTS: [Option<&str>; 9] = [
    None,
    Some("wav"),
    Some("flac"),
    Some("mp3"),
    Some("m4a"),
    Some("ogg"),
    Some("opus"),
    Some("webm"),
    Some("mp4"),
];

/// The largest single allocation a decode may make here. In the server a recording is
/// decoded in a child process under a memory limit (`adapters::isolated_decoder`): an
/// allocation past it fails, the child dies, and the job fails as corrupt. This target
/// decodes in-process, so it models that limit: a larger allocation fails, and the
/// allocation-error hook turns the failure into a panic that `decode_file` reports as a
/// corrupt file, as the parent does when its child dies. (libFuzzer's `-malloc_limit_mb`
/// needs a sanitizer's allocator hooks, and an allocation never touched would not show in
/// its RSS limit.)
const LARGEST_ALLOCATION: usize = 256 << 20;

struct Capped;

// SAFETY: every call goes straight to the system allocator; the cap only refuses some.
unsafe impl GlobalAlloc for Capped {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > LARGEST_ALLOCATION {
            return std::ptr::null_mut();
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > LARGEST_ALLOCATION {
            return std::ptr::null_mut();
        }
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > LARGEST_ALLOCATION {
            return std::ptr::null_mut();
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Capped = Capped;

fuzz_target!(
    init: {
        // libfuzzer-sys aborts in its panic hook, before `decode_file` can catch a panic
        // of a container reader (which it reports as a corrupt file). The default hook
        // lets that happen; a panic that escapes the target is still a crash, because
        // libfuzzer-sys aborts on any unwinding out of it.
        drop(std::panic::take_hook());
        std::alloc::set_alloc_error_hook(|layout| {
            panic!("an allocation of {} bytes, past the decoder's limit", layout.size())
        });
    },
    |data: &[u8]| check_decode(data)
);

fn check_decode(data: &[u8]) {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let hint = HINTS[usize::from(pick) % HINTS.len()];
    let mut file = tempfile::tempfile().expect("a temporary file");
    file.write_all(bytes).expect("written");
    file.rewind().expect("rewound");
    let limit = decoded_seconds_limit(bytes.len() as u64) * u64::from(TARGET_RATE);
    let mut delivered = 0u64;
    let mut loudest = 0f32;
    // No assertion inside the sink: `decode_file` would catch its panic as a corrupt file.
    let result = decode_file(
        file,
        hint,
        |_| {},
        |samples| {
            loudest = samples.iter().fold(loudest, |m, s| if s.is_finite() { m.max(s.abs()) } else { f32::INFINITY });
            delivered += samples.len() as u64;
            Ok(())
        },
    );
    // The decoders' output is clipped to [-1, 1] before resampling; the resampler's filter can
    // ring past full scale on adversarial input (by at most the sum of its coefficients'
    // magnitudes), but never to infinity or NaN.
    assert!(loudest <= 4.0, "a sample of magnitude {loudest} in the output");
    if let Ok(produced) = result {
        assert_eq!(produced, delivered, "the count returned is what the sink saw");
        // One resampler block past the limit at most: the check runs after each packet.
        assert!(
            produced <= limit + u64::from(TARGET_RATE),
            "{produced} samples from {} bytes",
            bytes.len()
        );
    }
}
