//! Quantized copies of a ggml Whisper file, written as whisper.cpp's `quantize` tool writes
//! them (the crate bundles no such tool): the same header with the quantized `ftype`, the mel
//! filters and vocabulary copied, and every 2-D weight matrix re-encoded block by block with
//! ggml's reference quantizers (`ggml-quants.c`, `quantize_row_*_ref`), so the bytes are the
//! ones ggml itself would produce. One-dimensional tensors, the convolutions and the
//! positional embeddings stay as they were: whisper.cpp loads them at their own types.

use std::io::{self, Read, Write};

use half::f16;

use crate::GGML_MAGIC;

/// ggml's `GGML_QNT_VERSION` and `GGML_QNT_VERSION_FACTOR`: the header's `ftype` carries the
/// quantization format's version.
const QNT_VERSION: i32 = 2;
const QNT_VERSION_FACTOR: i32 = 1000;
/// Values per quantized block (`QK4_0` = `QK5_0` = `QK5_1` = `QK8_0`).
const BLOCK: usize = 32;
/// Tensors whisper.cpp creates at a fixed type, whatever the file's `ftype`.
const KEEP: [&str; 4] = [
    "encoder.conv1.bias",
    "encoder.conv2.bias",
    "encoder.positional_embedding",
    "decoder.positional_embedding",
];
/// ggml's type tags for the two float formats a source file may hold.
const GGML_TYPE_F32: i32 = 0;
const GGML_TYPE_F16: i32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantization {
    Q4_0,
    Q5_0,
    Q5_1,
    Q8_0,
}

#[derive(Debug, thiserror::Error)]
pub enum QuantizeError {
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    #[error("not a ggml Whisper file")]
    NotGgml,
    #[error("the source is already quantized (ftype {0}); start from the float16 file")]
    AlreadyQuantized(i32),
    #[error("tensor {name}: type {ttype} cannot be quantized (float16 or float32 expected)")]
    TensorType { name: String, ttype: i32 },
    #[error("tensor {name}: rows of {row} values are not whole blocks of {BLOCK}")]
    Row { name: String, row: usize },
}

impl Quantization {
    pub const ALL: [Quantization; 4] = [Self::Q4_0, Self::Q5_0, Self::Q5_1, Self::Q8_0];

    pub fn name(self) -> &'static str {
        match self {
            Self::Q4_0 => "q4_0",
            Self::Q5_0 => "q5_0",
            Self::Q5_1 => "q5_1",
            Self::Q8_0 => "q8_0",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|q| q.name() == name)
    }

    /// `enum ggml_type` in ggml.h.
    pub fn ggml_type(self) -> i32 {
        match self {
            Self::Q4_0 => 2,
            Self::Q5_0 => 6,
            Self::Q5_1 => 7,
            Self::Q8_0 => 8,
        }
    }

    /// `enum ggml_ftype` in ggml.h (`GGML_FTYPE_MOSTLY_*`).
    fn ftype(self) -> i32 {
        match self {
            Self::Q4_0 => 2,
            Self::Q8_0 => 7,
            Self::Q5_0 => 8,
            Self::Q5_1 => 9,
        }
    }

    /// Bytes per block of 32 values (`sizeof(block_q*)` in ggml-common.h).
    pub fn block_bytes(self) -> usize {
        match self {
            Self::Q4_0 => 18,
            Self::Q5_0 => 22,
            Self::Q5_1 => 24,
            Self::Q8_0 => 34,
        }
    }

    /// Appends the encoding of one block, as `quantize_row_*_ref` computes it.
    pub fn encode_block(self, x: &[f32], out: &mut Vec<u8>) {
        debug_assert_eq!(x.len(), BLOCK);
        match self {
            Self::Q8_0 => q8_0(x, out),
            Self::Q5_1 => q5_1(x, out),
            Self::Q5_0 => symmetric(x, out, 16.0, true),
            Self::Q4_0 => symmetric(x, out, 8.0, false),
        }
    }
}

fn half(v: f32) -> [u8; 2] {
    f16::from_f32(v).to_le_bytes()
}

fn q8_0(x: &[f32], out: &mut Vec<u8>) {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out.extend_from_slice(&half(d));
    // C's roundf: halves away from zero, as f32::round.
    out.extend(x.iter().map(|v| (v * id).round() as i8 as u8));
}

/// q4_0 and q5_0: a scale from the value of largest magnitude, no offset.
fn symmetric(x: &[f32], out: &mut Vec<u8>, half_range: f32, fifth_bit: bool) {
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    let d = max / -half_range;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let top = (2.0 * half_range - 1.0) as u8;
    // C converts to int8_t (truncating towards zero) before MIN against the top code.
    let offset = half_range + 0.5;
    let code = |v: f32| ((v * id + offset) as i8 as u8).min(top);
    pack(x, out, &half(d), None, fifth_bit, code);
}

fn q5_1(x: &[f32], out: &mut Vec<u8>) {
    let min = x.iter().fold(f32::MAX, |m, &v| m.min(v));
    let max = x.iter().fold(-f32::MAX, |m, &v| m.max(v));
    let d = (max - min) / 31.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let code = |v: f32| ((v - min) * id + 0.5) as u8;
    pack(x, out, &half(d), Some(half(min)), true, code);
}

/// ggml's 4-bit layout: value j and value j+16 share byte j (low and high nibble); in the 5-bit
/// formats their fifth bits go to bits j and j+16 of a 32-bit word after the scales.
fn pack(
    x: &[f32],
    out: &mut Vec<u8>,
    d: &[u8; 2],
    m: Option<[u8; 2]>,
    fifth_bit: bool,
    code: impl Fn(f32) -> u8,
) {
    out.extend_from_slice(d);
    if let Some(m) = m {
        out.extend_from_slice(&m);
    }
    let mut qh = 0u32;
    let mut qs = [0u8; BLOCK / 2];
    for j in 0..BLOCK / 2 {
        let (lo, hi) = (code(x[j]), code(x[j + BLOCK / 2]));
        qs[j] = (lo & 0x0F) | ((hi & 0x0F) << 4);
        qh |= u32::from((lo & 0x10) >> 4) << j;
        qh |= u32::from((hi & 0x10) >> 4) << (j + BLOCK / 2);
    }
    if fifth_bit {
        out.extend_from_slice(&qh.to_le_bytes());
    }
    out.extend_from_slice(&qs);
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuantizeReport {
    pub quantized_tensors: usize,
    pub kept_tensors: usize,
}

fn read_i32(r: &mut impl Read) -> io::Result<i32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(i32::from_le_bytes(b))
}

fn copy_i32(r: &mut impl Read, w: &mut impl Write) -> io::Result<i32> {
    let v = read_i32(r)?;
    w.write_all(&v.to_le_bytes())?;
    Ok(v)
}

fn copy_bytes(r: &mut impl Read, w: &mut impl Write, n: usize) -> io::Result<()> {
    let copied = io::copy(&mut r.take(n as u64), w)?;
    if copied != n as u64 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

fn count(v: i32) -> io::Result<usize> {
    usize::try_from(v).map_err(|_| io::Error::other("negative length in the ggml file"))
}

/// Reads a float16 (or float32) ggml Whisper file and writes its `kind` quantization.
pub fn quantize(
    input: &mut impl Read,
    out: &mut impl Write,
    kind: Quantization,
) -> Result<QuantizeReport, QuantizeError> {
    let mut magic = [0u8; 4];
    input.read_exact(&mut magic)?;
    if u32::from_le_bytes(magic) != GGML_MAGIC {
        return Err(QuantizeError::NotGgml);
    }
    out.write_all(&magic)?;
    for _ in 0..10 {
        copy_i32(input, out)?;
    }
    let ftype = read_i32(input)?;
    if ftype % QNT_VERSION_FACTOR > 1 {
        return Err(QuantizeError::AlreadyQuantized(ftype));
    }
    out.write_all(&(QNT_VERSION * QNT_VERSION_FACTOR + kind.ftype()).to_le_bytes())?;
    let (n_mel, n_fft) = (copy_i32(input, out)?, copy_i32(input, out)?);
    copy_bytes(input, out, count(n_mel)? * count(n_fft)? * 4)?;
    for _ in 0..count(copy_i32(input, out)?)? {
        let len = count(copy_i32(input, out)?)?;
        copy_bytes(input, out, len)?;
    }
    let mut report = QuantizeReport {
        quantized_tensors: 0,
        kept_tensors: 0,
    };
    while let Some(header) = TensorHeader::read(input)? {
        if header.quantizable() {
            header.write(out, kind.ggml_type())?;
            quantize_data(input, out, &header, kind)?;
            report.quantized_tensors += 1;
        } else {
            header.write(out, header.ttype)?;
            copy_bytes(input, out, header.elements() * header.element_bytes()?)?;
            report.kept_tensors += 1;
        }
    }
    Ok(report)
}

struct TensorHeader {
    dims: Vec<usize>,
    ttype: i32,
    name: String,
}

impl TensorHeader {
    /// The next tensor's header, or `None` at the end of the file.
    fn read(r: &mut impl Read) -> Result<Option<Self>, QuantizeError> {
        let mut first = [0u8; 4];
        match r.read_exact(&mut first) {
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            other => other?,
        }
        let n_dims = count(i32::from_le_bytes(first))?;
        let name_len = count(read_i32(r)?)?;
        let ttype = read_i32(r)?;
        let dims = (0..n_dims)
            .map(|_| read_i32(r).and_then(count))
            .collect::<io::Result<Vec<_>>>()?;
        let mut name = vec![0u8; name_len];
        r.read_exact(&mut name)?;
        let name = String::from_utf8(name).map_err(|_| QuantizeError::NotGgml)?;
        Ok(Some(Self { dims, ttype, name }))
    }

    fn write(&self, w: &mut impl Write, ttype: i32) -> io::Result<()> {
        for v in [self.dims.len() as i32, self.name.len() as i32, ttype] {
            w.write_all(&v.to_le_bytes())?;
        }
        for d in &self.dims {
            w.write_all(&(*d as i32).to_le_bytes())?;
        }
        w.write_all(self.name.as_bytes())
    }

    fn quantizable(&self) -> bool {
        self.dims.len() == 2 && !KEEP.contains(&self.name.as_str())
    }

    fn elements(&self) -> usize {
        self.dims.iter().product()
    }

    fn element_bytes(&self) -> Result<usize, QuantizeError> {
        match self.ttype {
            GGML_TYPE_F32 => Ok(4),
            GGML_TYPE_F16 => Ok(2),
            ttype => Err(QuantizeError::TensorType {
                name: self.name.clone(),
                ttype,
            }),
        }
    }
}

/// Re-encodes one tensor row by row (ggml's first dimension is the row).
fn quantize_data(
    input: &mut impl Read,
    out: &mut impl Write,
    header: &TensorHeader,
    kind: Quantization,
) -> Result<(), QuantizeError> {
    let row = header.dims[0];
    if !row.is_multiple_of(BLOCK) {
        return Err(QuantizeError::Row {
            name: header.name.clone(),
            row,
        });
    }
    let width = header.element_bytes()?;
    let mut raw = vec![0u8; row * width];
    let mut values = vec![0f32; row];
    let mut encoded = Vec::with_capacity(row / BLOCK * kind.block_bytes());
    for _ in 0..header.dims[1] {
        input.read_exact(&mut raw)?;
        for (v, bytes) in values.iter_mut().zip(raw.chunks_exact(width)) {
            *v = if width == 2 {
                f16::from_le_bytes([bytes[0], bytes[1]]).to_f32()
            } else {
                f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
            };
        }
        encoded.clear();
        for block in values.chunks_exact(BLOCK) {
            kind.encode_block(block, &mut encoded);
        }
        out.write_all(&encoded)?;
    }
    Ok(())
}
