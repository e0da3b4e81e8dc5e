//! Silero VAD weights (the `silero-vad` PyPI package's `silero_vad_16k.safetensors`) → the
//! ggml file whisper.cpp's voice activity detector loads (`whisper_vad_init_from_file`).
//!
//! The layout follows whisper.cpp's loader (`src/whisper.cpp`, `whisper_vad_init_with_params`)
//! and its tensor names (`src/whisper-arch.h`, `VAD_TENSOR_NAMES`): the ggml magic, the model
//! type and version, the window (512 samples) and context (64), the four encoder convolutions'
//! channels and kernels, the LSTM and final convolution sizes, then each tensor as
//! (dims, name length, type, shape innermost first, name, data). The network is the same as the
//! package's own reference (`tinygrad_model.py`): an STFT as a convolution, four convolutions,
//! an LSTM cell and a 1×1 convolution.

use std::{collections::BTreeMap, io::Write};

use half::f16;

use crate::{ConvertError, Result};

/// `ggml` in little-endian order, as whisper.cpp's `GGML_FILE_MAGIC`.
const GGML_MAGIC: u32 = 0x6767_6d6c;
const GGML_F32: i32 = 0;
const GGML_F16: i32 = 1;
/// The version of the `silero-vad` package whose weights this was written for.
pub const VERSION: (i32, i32, i32) = (6, 2, 3);

/// (name in the safetensors file, name whisper.cpp looks for, stored as f16, drop the last
/// dimension). whisper.cpp keeps the convolution weights and the STFT basis in f16.
const TENSORS: &[(&str, &str, bool, bool)] = &[
    (
        "stft_conv.weight",
        "_model.stft.forward_basis_buffer",
        true,
        false,
    ),
    (
        "conv1.weight",
        "_model.encoder.0.reparam_conv.weight",
        true,
        false,
    ),
    (
        "conv1.bias",
        "_model.encoder.0.reparam_conv.bias",
        false,
        false,
    ),
    (
        "conv2.weight",
        "_model.encoder.1.reparam_conv.weight",
        true,
        false,
    ),
    (
        "conv2.bias",
        "_model.encoder.1.reparam_conv.bias",
        false,
        false,
    ),
    (
        "conv3.weight",
        "_model.encoder.2.reparam_conv.weight",
        true,
        false,
    ),
    (
        "conv3.bias",
        "_model.encoder.2.reparam_conv.bias",
        false,
        false,
    ),
    (
        "conv4.weight",
        "_model.encoder.3.reparam_conv.weight",
        true,
        false,
    ),
    (
        "conv4.bias",
        "_model.encoder.3.reparam_conv.bias",
        false,
        false,
    ),
    (
        "lstm_cell.weight_ih",
        "_model.decoder.rnn.weight_ih",
        false,
        false,
    ),
    (
        "lstm_cell.weight_hh",
        "_model.decoder.rnn.weight_hh",
        false,
        false,
    ),
    (
        "lstm_cell.bias_ih",
        "_model.decoder.rnn.bias_ih",
        false,
        false,
    ),
    (
        "lstm_cell.bias_hh",
        "_model.decoder.rnn.bias_hh",
        false,
        false,
    ),
    // [1, 128, 1] in PyTorch; whisper.cpp declares it 2-D, (128, 1).
    (
        "final_conv.weight",
        "_model.decoder.decoder.2.weight",
        true,
        true,
    ),
    (
        "final_conv.bias",
        "_model.decoder.decoder.2.bias",
        false,
        false,
    ),
];

/// One float32 tensor of a safetensors file.
pub struct Tensor {
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// Reads a safetensors file (an 8-byte header length, a JSON header naming each tensor's
/// dtype, shape and byte range, then the data); only float32 tensors are accepted.
pub fn read_safetensors(bytes: &[u8]) -> Result<BTreeMap<String, Tensor>> {
    let bad = |why: &str| ConvertError::NotSilero(format!("not a safetensors file: {why}"));
    let header_len = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
        .ok_or_else(|| bad("too short"))?;
    let header = bytes
        .get(8..8 + header_len)
        .ok_or_else(|| bad("header past the end"))?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(header).map_err(|_| bad("header is not JSON"))?;
    let data = &bytes[8 + header_len..];
    let mut tensors = BTreeMap::new();
    for (name, entry) in header.iter().filter(|(n, _)| *n != "__metadata__") {
        if entry["dtype"] != "F32" {
            return Err(bad(&format!("{name} is not F32")));
        }
        let shape: Vec<usize> =
            serde_json::from_value(entry["shape"].clone()).map_err(|_| bad("bad shape"))?;
        let offsets: [usize; 2] = serde_json::from_value(entry["data_offsets"].clone())
            .map_err(|_| bad("bad data offsets"))?;
        let raw = data
            .get(offsets[0]..offsets[1])
            .filter(|r| r.len() == shape.iter().product::<usize>() * 4)
            .ok_or_else(|| bad(&format!("{name}: data does not match its shape")))?;
        let values = raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        tensors.insert(name.clone(), Tensor { shape, values });
    }
    Ok(tensors)
}

fn write_i32(w: &mut impl Write, v: i32) -> Result<()> {
    Ok(w.write_all(&v.to_le_bytes())?)
}

/// Converts `safetensors` (the bytes of `silero_vad_16k.safetensors`) into whisper.cpp's VAD
/// file; returns the number of tensors written.
pub fn convert_silero(safetensors: &[u8], out: &mut impl Write) -> Result<usize> {
    let tensors = read_safetensors(safetensors)?;
    let get = |name: &str| {
        tensors
            .get(name)
            .ok_or_else(|| ConvertError::Missing(name.to_owned()))
    };
    // Channels and kernels of the four encoder convolutions, from their weights.
    let mut layers = Vec::new();
    for conv in ["conv1", "conv2", "conv3", "conv4"] {
        let shape = &get(&format!("{conv}.weight"))?.shape;
        let [out_channels, in_channels, kernel] = shape[..] else {
            return Err(ConvertError::NotSilero(format!("{conv}.weight is not 3-D")));
        };
        layers.push((in_channels, out_channels, kernel));
    }
    let lstm = &get("lstm_cell.weight_ih")?.shape;
    let final_conv = &get("final_conv.weight")?.shape;

    write_i32(out, GGML_MAGIC as i32)?;
    let model_type = b"silero-16k";
    write_i32(out, model_type.len() as i32)?;
    out.write_all(model_type)?;
    for part in [VERSION.0, VERSION.1, VERSION.2] {
        write_i32(out, part)?;
    }
    write_i32(out, 512)?; // window: samples per probability
    write_i32(out, 64)?; // context carried over between windows
    write_i32(out, layers.len() as i32)?;
    for (in_channels, out_channels, kernel) in &layers {
        for v in [in_channels, out_channels, kernel] {
            write_i32(out, *v as i32)?;
        }
    }
    write_i32(out, lstm[1] as i32)?; // LSTM input size
    write_i32(out, (lstm[0] / 4) as i32)?; // hidden size: the gates are stacked four high
    write_i32(out, final_conv[1] as i32)?;
    write_i32(out, final_conv[0] as i32)?;

    for (source, name, as_f16, drop_last) in TENSORS {
        let tensor = get(source)?;
        let mut shape = tensor.shape.clone();
        if *drop_last {
            shape.pop();
        }
        // ggml lists dimensions innermost first: PyTorch's order reversed; the data is the same.
        write_i32(out, shape.len() as i32)?;
        write_i32(out, name.len() as i32)?;
        write_i32(out, if *as_f16 { GGML_F16 } else { GGML_F32 })?;
        for dim in shape.iter().rev() {
            write_i32(out, *dim as i32)?;
        }
        out.write_all(name.as_bytes())?;
        for v in &tensor.values {
            if *as_f16 {
                out.write_all(&f16::from_f32(*v).to_le_bytes())?;
            } else {
                out.write_all(&v.to_le_bytes())?;
            }
        }
    }
    Ok(TENSORS.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A safetensors file holding `tensors` (name, shape), each filled with 0.5.
    fn safetensors(tensors: &[(&str, &[usize])]) -> Vec<u8> {
        let mut header = serde_json::Map::new();
        let mut data = Vec::new();
        for (name, shape) in tensors {
            let start = data.len();
            for _ in 0..shape.iter().product::<usize>() {
                data.extend_from_slice(&0.5f32.to_le_bytes());
            }
            header.insert(
                (*name).to_owned(),
                serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [start, data.len()]}),
            );
        }
        let header = serde_json::to_vec(&header).unwrap();
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend(header);
        out.extend(data);
        out
    }

    #[test]
    fn writes_the_header_and_tensors_whisper_cpp_reads() {
        let file = safetensors(&[
            ("stft_conv.weight", &[258, 1, 256]),
            ("conv1.weight", &[128, 129, 3]),
            ("conv1.bias", &[128]),
            ("conv2.weight", &[64, 128, 3]),
            ("conv2.bias", &[64]),
            ("conv3.weight", &[64, 64, 3]),
            ("conv3.bias", &[64]),
            ("conv4.weight", &[128, 64, 3]),
            ("conv4.bias", &[128]),
            ("lstm_cell.weight_ih", &[512, 128]),
            ("lstm_cell.weight_hh", &[512, 128]),
            ("lstm_cell.bias_ih", &[512]),
            ("lstm_cell.bias_hh", &[512]),
            ("final_conv.weight", &[1, 128, 1]),
            ("final_conv.bias", &[1]),
        ]);
        let mut out = Vec::new();
        assert_eq!(convert_silero(&file, &mut out).unwrap(), 15);
        let int = |at: usize| i32::from_le_bytes(out[at..at + 4].try_into().unwrap());
        assert_eq!(&out[0..4], b"lmgg", "the ggml magic, little-endian");
        assert_eq!(&out[8..18], b"silero-16k");
        let hparams: Vec<i32> = (0..20).map(|i| int(18 + 4 * i)).collect();
        assert_eq!(
            hparams,
            [
                6, 2, 3, 512, 64, 4, 129, 128, 3, 128, 64, 3, 64, 64, 3, 64, 128, 3, 128, 128
            ]
        );
        assert_eq!(
            (int(98), int(102)),
            (128, 1),
            "final convolution in and out"
        );
        // The first tensor: 3 dims, its name, f16, shape innermost first.
        let name = "_model.stft.forward_basis_buffer";
        assert_eq!(
            (int(106), int(110), int(114)),
            (3, name.len() as i32, GGML_F16)
        );
        assert_eq!((int(118), int(122), int(126)), (256, 1, 258));
        assert_eq!(&out[130..130 + name.len()], name.as_bytes());
        let first_value = 130 + name.len();
        assert_eq!(
            f16::from_le_bytes([out[first_value], out[first_value + 1]]).to_f32(),
            0.5
        );
    }

    #[test]
    fn a_missing_tensor_is_named() {
        let file = safetensors(&[("conv1.weight", &[128, 129, 3])]);
        let err = convert_silero(&file, &mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("conv2.weight"), "{err}");
    }
}
