//! The converted Silero VAD file, run by whisper.cpp's own detector, gives the speech
//! probabilities that the package's float32 weights give when the same network (the package's
//! `tinygrad_model.py`, windowed as whisper.cpp windows it) is computed here directly, on
//! speech, silence and noise. A transposed, misnamed or mis-typed tensor would not.
//!
//! Needs `models/silero_vad_16k.safetensors` (`MODEL=silero-vad scripts/model.sh`, run by
//! `make model`) and espeak-ng and sox (`make setup`).

use std::{collections::BTreeMap, path::PathBuf, process::Command};

use whisper_ggml::silero::{Tensor, convert_silero, read_safetensors};

const WINDOW: usize = 512;

struct Network(BTreeMap<String, Tensor>);

impl Network {
    fn t(&self, name: &str) -> &Tensor {
        &self.0[name]
    }

    /// Conv1d over `input` (channels × length), PyTorch's definition.
    fn conv(&self, name: &str, input: &[Vec<f32>], stride: usize, pad: usize) -> Vec<Vec<f32>> {
        let weight = self.t(&format!("{name}.weight"));
        let bias = self.0.get(&format!("{name}.bias"));
        let [out_ch, in_ch, kernel] = weight.shape[..] else {
            panic!("{name} is not 3-D")
        };
        let len = input[0].len();
        let out_len = (len + 2 * pad - kernel) / stride + 1;
        (0..out_ch)
            .map(|o| {
                (0..out_len)
                    .map(|t| {
                        let mut sum = bias.map_or(0.0, |b| b.values[o]);
                        for (i, channel) in input.iter().enumerate().take(in_ch) {
                            for k in 0..kernel {
                                let at = (t * stride + k) as isize - pad as isize;
                                if at >= 0 && (at as usize) < len {
                                    sum += weight.values[(o * in_ch + i) * kernel + k]
                                        * channel[at as usize];
                                }
                            }
                        }
                        sum
                    })
                    .collect()
            })
            .collect()
    }

    /// Each window's speech probability, the LSTM state carried from window to window.
    fn probabilities(&self, samples: &[f32]) -> Vec<f32> {
        let sigmoid = |x: f32| 1.0 / (1.0 + (-x).exp());
        let (mut h, mut c) = (vec![0.0f32; 128], vec![0.0f32; 128]);
        let mut out = Vec::new();
        for chunk in samples.chunks(WINDOW) {
            let mut window = chunk.to_vec();
            window.resize(WINDOW, 0.0);
            // Reflect 64 samples at each edge (the edge sample itself not repeated).
            let mut padded: Vec<f32> = (1..=64).rev().map(|i| window[i]).collect();
            padded.extend(&window);
            padded.extend((1..=64).map(|i| window[WINDOW - 1 - i]));
            let stft = self.conv("stft_conv", &[padded], 128, 0);
            let magnitude: Vec<Vec<f32>> = (0..129)
                .map(|f| {
                    stft[f]
                        .iter()
                        .zip(&stft[f + 129])
                        .map(|(re, im)| (re * re + im * im).sqrt())
                        .collect()
                })
                .collect();
            let relu = |x: Vec<Vec<f32>>| -> Vec<Vec<f32>> {
                x.into_iter()
                    .map(|c| c.into_iter().map(|v| v.max(0.0)).collect())
                    .collect()
            };
            let x = relu(self.conv("conv1", &magnitude, 1, 1));
            let x = relu(self.conv("conv2", &x, 2, 1));
            let x = relu(self.conv("conv3", &x, 2, 1));
            let x = relu(self.conv("conv4", &x, 1, 1));
            let input: Vec<f32> = x.iter().map(|channel| channel[0]).collect();
            let (wih, whh) = (self.t("lstm_cell.weight_ih"), self.t("lstm_cell.weight_hh"));
            let (bih, bhh) = (self.t("lstm_cell.bias_ih"), self.t("lstm_cell.bias_hh"));
            let gate = |g: usize, j: usize| {
                let row = g * 128 + j;
                let mut sum = bih.values[row] + bhh.values[row];
                for k in 0..128 {
                    sum += wih.values[row * 128 + k] * input[k] + whh.values[row * 128 + k] * h[k];
                }
                sum
            };
            let mut next_h = vec![0.0; 128];
            for j in 0..128 {
                let (i, f) = (sigmoid(gate(0, j)), sigmoid(gate(1, j)));
                let (g, o) = (gate(2, j).tanh(), sigmoid(gate(3, j)));
                c[j] = f * c[j] + i * g;
                next_h[j] = o * c[j].tanh();
            }
            h = next_h;
            let (w, b) = (self.t("final_conv.weight"), self.t("final_conv.bias"));
            let logit = b.values[0] + (0..128).map(|k| w.values[k] * h[k].max(0.0)).sum::<f32>();
            out.push(sigmoid(logit));
        }
        out
    }
}

fn models() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models")
}

/// Speech, a second of silence, two of pink noise, speech: 16 kHz mono floats.
fn recording(dir: &std::path::Path) -> Vec<f32> {
    let run = |command: &mut Command| {
        let status = command.status().expect("the tool runs");
        assert!(status.success(), "{command:?}");
    };
    let speech = dir.join("speech.wav");
    run(Command::new("espeak-ng")
        .args(["-v", "en-us", "-s", "150", "-w"])
        .arg(&speech)
        .arg("The patient reports chest pain since Monday."));
    let raw = dir.join("all.f32");
    run(Command::new("sox")
        .arg(&speech)
        .args(["-r", "16000", "-c", "1", "-t", "f32"])
        .arg(&raw)
        .args(["pad", "0", "1"]));
    let noise = dir.join("noise.f32");
    run(Command::new("sox")
        .args(["-n", "-r", "16000", "-c", "1", "-t", "f32"])
        .arg(&noise)
        .args(["synth", "2", "pinknoise", "vol", "0.05"]));
    let floats = |path: &std::path::Path| -> Vec<f32> {
        std::fs::read(path)
            .unwrap()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    let mut samples = floats(&raw);
    samples.extend(floats(&noise));
    samples.extend(floats(&raw));
    samples
}

#[test]
fn whisper_cpp_runs_the_converted_weights_as_the_network_defines_them() {
    let weights_path = models().join("silero_vad_16k.safetensors");
    let weights = std::fs::read(&weights_path).unwrap_or_else(|_| {
        panic!(
            "{} is missing: run `MODEL=silero-vad scripts/model.sh` (make model does)",
            weights_path.display()
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let converted = dir.path().join("ggml-silero-vad.bin");
    convert_silero(&weights, &mut std::fs::File::create(&converted).unwrap()).unwrap();
    let samples = recording(dir.path());

    let path = std::ffi::CString::new(converted.display().to_string()).unwrap();
    // SAFETY: the path is a valid C string; the context is freed below; `samples` outlives
    // the call and the probabilities are copied out before the context is freed.
    let from_whisper_cpp: Vec<f32> = unsafe {
        let mut params = whisper_rs_sys::whisper_vad_default_context_params();
        params.n_threads = 1;
        let vad = whisper_rs_sys::whisper_vad_init_from_file_with_params(path.as_ptr(), params);
        assert!(!vad.is_null(), "whisper.cpp refused the converted file");
        assert!(whisper_rs_sys::whisper_vad_detect_speech(
            vad,
            samples.as_ptr(),
            samples.len() as i32
        ));
        let n = whisper_rs_sys::whisper_vad_n_probs(vad) as usize;
        let probabilities =
            std::slice::from_raw_parts(whisper_rs_sys::whisper_vad_probs(vad), n).to_vec();
        whisper_rs_sys::whisper_vad_free(vad);
        probabilities
    };
    let reference = Network(read_safetensors(&weights).unwrap()).probabilities(&samples);

    assert_eq!(from_whisper_cpp.len(), reference.len());
    let worst = from_whisper_cpp
        .iter()
        .zip(&reference)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    // float16 weights in the file against float32 here.
    assert!(worst < 0.02, "largest difference {worst}");
    println!("largest difference {worst}");
    // And the network hears what is there: speech at the start, none in the noise.
    let per_second = 16_000 / WINDOW;
    let speech_start = &reference[per_second / 2..per_second * 2];
    assert!(speech_start.iter().any(|p| *p > 0.8), "{speech_start:?}");
    let speech_len = reference.len() / 2 - per_second; // about where the noise starts
    let noise = &reference[speech_len + per_second / 2..speech_len + per_second * 2];
    assert!(
        noise.iter().all(|p| *p < 0.35),
        "noise heard as speech: {noise:?}"
    );
}
