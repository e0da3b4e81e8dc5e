//! `ggml-convert --ct2 MODEL.bin --mel-filters mel_80.npy --tiktoken gpt2.tiktoken --out ggml-tiny.en.bin`

use std::{
    fs::File,
    io::{BufReader, BufWriter, Write},
    path::PathBuf,
};

use anyhow::{Context, bail};
use whisper_ggml::{Ct2Model, MelFilters, convert, read_tiktoken};

const USAGE: &str = "usage: ggml-convert --ct2 <model.bin> --mel-filters <mel_N.npy> --tiktoken <gpt2|multilingual.tiktoken> --out <ggml.bin>";

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
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

    // Write beside the target and rename, so an interrupted run never leaves a plausible file.
    let partial = out.with_extension("partial");
    let mut writer =
        BufWriter::new(File::create(&partial).with_context(|| partial.display().to_string())?);
    let hp = convert(&model, &mel, &tokens, &mut writer)?;
    writer.flush()?;
    writer.get_ref().sync_all()?;
    drop(writer);
    std::fs::rename(&partial, &out)?;
    let size = std::fs::metadata(&out)?.len();
    println!("wrote {} ({size} bytes): {hp:?}", out.display());
    Ok(())
}
