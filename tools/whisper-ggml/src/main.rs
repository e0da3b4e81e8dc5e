//! `ggml-convert --ct2 MODEL.bin --mel-filters mel_80.npy --tiktoken gpt2.tiktoken --out ggml-tiny.en.bin`
//! `ggml-convert quantize q8_0 ggml-tiny.en.bin ggml-tiny.en-q8_0.bin`
//! `ggml-convert silero-vad silero_vad_16k.safetensors ggml-silero-vad.bin`

use std::{
    fs::File,
    io::{BufReader, BufWriter, Write},
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use whisper_ggml::{
    Ct2Model, MelFilters, convert,
    quantize::{Quantization, quantize},
    read_tiktoken,
    silero::convert_silero,
};

const USAGE: &str = "usage: ggml-convert --ct2 <model.bin> --mel-filters <mel_N.npy> --tiktoken <gpt2|multilingual.tiktoken> --out <ggml.bin>\n       ggml-convert quantize <q4_0|q5_0|q5_1|q8_0> <ggml.bin> <out.bin>\n       ggml-convert silero-vad <silero_vad_16k.safetensors> <out.bin>";

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("quantize") {
        let rest: Vec<String> = args.skip(1).collect();
        let [kind, input, out] = rest.as_slice() else {
            bail!("{USAGE}");
        };
        let kind = Quantization::parse(kind).with_context(|| format!("{kind}: {USAGE}"))?;
        return write_atomically(&PathBuf::from(out), |writer| {
            let mut reader = BufReader::new(File::open(input).with_context(|| input.clone())?);
            let report = quantize(&mut reader, writer, kind)?;
            Ok(format!("{} {report:?}", kind.name()))
        });
    }
    if args.peek().map(String::as_str) == Some("silero-vad") {
        let rest: Vec<String> = args.skip(1).collect();
        let [input, out] = rest.as_slice() else {
            bail!("{USAGE}");
        };
        let weights = std::fs::read(input).with_context(|| input.clone())?;
        return write_atomically(&PathBuf::from(out), |writer| {
            Ok(format!("{} tensors", convert_silero(&weights, writer)?))
        });
    }
    let (mut ct2, mut mel, mut tiktoken, mut out) = (None, None, None, None);
    while let Some(flag) = args.next() {
        let value = args.next().map(PathBuf::from);
        match flag.as_str() {
            "--ct2" => ct2 = value,
            "--mel-filters" => mel = value,
            "--tiktoken" => tiktoken = value,
            "--out" => out = value,
            _ => bail!("{USAGE}"),
        }
    }
    let (Some(ct2), Some(mel), Some(tiktoken), Some(out)) = (ct2, mel, tiktoken, out) else {
        bail!("{USAGE}");
    };

    let model = Ct2Model::read(&mut BufReader::new(
        File::open(&ct2).with_context(|| ct2.display().to_string())?,
    ))
    .with_context(|| format!("reading {}", ct2.display()))?;
    let mel =
        MelFilters::from_npy(&std::fs::read(&mel).with_context(|| mel.display().to_string())?)?;
    let tokens = read_tiktoken(
        &std::fs::read_to_string(&tiktoken).with_context(|| tiktoken.display().to_string())?,
    )?;

    write_atomically(&out, |writer| {
        let hp = convert(&model, &mel, &tokens, writer)?;
        Ok(format!("{hp:?}"))
    })
}

/// Writes beside `out` and renames, so an interrupted run never leaves a plausible file.
fn write_atomically(
    out: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> anyhow::Result<String>,
) -> anyhow::Result<()> {
    let partial = out.with_extension("partial");
    let mut writer =
        BufWriter::new(File::create(&partial).with_context(|| partial.display().to_string())?);
    let summary = write(&mut writer)?;
    writer.flush()?;
    writer.get_ref().sync_all()?;
    drop(writer);
    std::fs::rename(&partial, out)?;
    let size = std::fs::metadata(out)?.len();
    println!("wrote {} ({size} bytes): {summary}", out.display());
    Ok(())
}
