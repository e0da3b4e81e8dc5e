//! The quantizer writes the bytes ggml's own `ggml_quantize_chunk` writes (the function
//! whisper.cpp's `quantize` tool calls), block for block, on values shaped like real weights,
//! and a quantized file keeps every tensor whisper.cpp expects at the type it expects.

use whisper_ggml::quantize::Quantization;

/// Deterministic values with the spread of trained weights: mostly small, a few outliers,
/// some blocks all zero or constant (the divide-by-zero paths).
fn weights(n: usize) -> Vec<f32> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let u = (state >> 11) as f32 / (1u64 << 53) as f32 - 0.5;
            match (i / 32) % 7 {
                0 => 0.0,
                1 => 0.125,
                2 => u * 4.0,
                _ => u * 0.08 + if i % 97 == 0 { 1.5 } else { 0.0 },
            }
        })
        .collect()
}

fn ggml(kind: Quantization, values: &[f32], row: usize) -> Vec<u8> {
    let rows = values.len() / row;
    let mut out = vec![0u8; values.len() / 32 * kind.block_bytes()];
    // SAFETY: `out` holds `rows` rows of `row / 32` blocks of `block_bytes` bytes, the size
    // ggml_row_size gives for these types; no importance matrix is needed for them.
    let written = unsafe {
        whisper_rs_sys::ggml_quantize_chunk(
            kind.ggml_type() as whisper_rs_sys::ggml_type,
            values.as_ptr(),
            out.as_mut_ptr().cast(),
            0,
            rows as i64,
            row as i64,
            std::ptr::null(),
        )
    };
    assert_eq!(written, out.len(), "{kind:?}");
    out
}

#[test]
fn every_format_matches_ggml_byte_for_byte() {
    let row = 384;
    let values = weights(row * 64);
    for kind in Quantization::ALL {
        let mut ours = Vec::new();
        for block in values.chunks_exact(32) {
            kind.encode_block(block, &mut ours);
        }
        let theirs = ggml(kind, &values, row);
        let first_difference = ours.iter().zip(&theirs).position(|(a, b)| a != b);
        assert_eq!(
            first_difference,
            None,
            "{kind:?}: first different byte at {first_difference:?} (block {:?})",
            first_difference.map(|i| i / kind.block_bytes())
        );
        assert_eq!(ours.len(), theirs.len());
    }
}
