//! MMT's conversion to 16 kHz against a reference resampler (soxr through sox's `rate -v -b 99`:
//! very high quality, 99 % of the band kept), for every rate a recorder produces: tones, sweeps
//! and speech of several voices and speeds. Compared sample for sample, without realigning
//! (timestamps depend on the filter's delay being trimmed exactly), over 95 % of the band.
//!
//! The band matters: a resampler that cut at 7.4 kHz instead of ~7.9 kHz changed tiny.en's
//! transcript of 48 kHz speech (issue 16); 7.2–7.6 kHz is inside the compared band.

use std::{path::Path, process::Command};

use mmt_core::adapters::audio::{TARGET_RATE, decode_file};
use realfft::RealFftPlanner;

const RATES: [u32; 9] = [
    8_000, 11_025, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000, 96_000,
];
/// The issue-16 requirement: MMT's output within 40 dB of the reference in band.
const MIN_SNR_DB: f64 = 40.0;

fn sox(args: &[&str]) {
    let out = Command::new("sox")
        .args(args)
        .output()
        .expect("sox (make setup installs it)");
    assert!(
        out.status.success(),
        "sox {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `seconds` of a sine (`frequency`: a frequency, or `from:to` for a sweep) at half scale,
/// as 32-bit float samples at `rate`.
fn synth_sine(path: &Path, rate: u32, seconds: u32, frequency: &str) {
    sox(&[
        "-n",
        "-r",
        &rate.to_string(),
        "-e",
        "float",
        "-b",
        "32",
        path.to_str().unwrap(),
        "synth",
        &seconds.to_string(),
        "sine",
        frequency,
        "vol",
        "0.5",
    ]);
}

fn decode(path: &Path) -> Vec<f32> {
    let mut samples = Vec::new();
    decode_file(
        std::fs::File::open(path).unwrap(),
        Some("wav"),
        |_| {},
        |chunk| {
            samples.extend_from_slice(chunk);
            Ok(())
        },
    )
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    samples
}

/// The band compared: 95 % of the lower Nyquist frequency (the reference keeps 99 %).
fn band_hz(rate: u32) -> f64 {
    0.95 * f64::from(rate.min(TARGET_RATE)) / 2.0
}

/// Signal-to-noise ratio of `ours` against `reference`, counting only frequencies below
/// `band_hz`, in dB.
fn in_band_snr_db(ours: &[f32], reference: &[f32], band_hz: f64) -> f64 {
    let n = reference.len() & !1;
    let mut planner = RealFftPlanner::<f64>::new();
    let fft = planner.plan_fft_forward(n);
    let spectrum = |x: &[f32]| {
        let mut input: Vec<f64> = x[..n].iter().map(|&v| f64::from(v)).collect();
        let mut output = fft.make_output_vec();
        fft.process(&mut input, &mut output).unwrap();
        output
    };
    let (a, b) = (spectrum(ours), spectrum(reference));
    let last_bin = (band_hz / f64::from(TARGET_RATE) * n as f64) as usize;
    let (mut signal, mut noise) = (0.0, 0.0);
    for (x, y) in a.iter().zip(&b).take(last_bin + 1) {
        signal += y.norm_sqr();
        noise += (x - y).norm_sqr();
    }
    assert!(signal > 0.0, "the reference is silent in band");
    10.0 * (signal / noise.max(f64::MIN_POSITIVE)).log10()
}

/// Resamples `input` (at `rate`) both ways and returns the in-band SNR.
fn compare(input: &Path, rate: u32, dir: &Path) -> f64 {
    let reference = dir.join("reference.wav");
    sox(&[
        input.to_str().unwrap(),
        "-e",
        "float",
        "-b",
        "32",
        "-r",
        "16000",
        reference.to_str().unwrap(),
        "rate",
        "-v",
        "-b",
        "99",
    ]);
    let (ours, theirs) = (decode(input), decode(&reference));
    assert!(
        ours.len().abs_diff(theirs.len()) <= 1,
        "{}: {} samples, the reference {}",
        input.display(),
        ours.len(),
        theirs.len()
    );
    let n = ours.len().min(theirs.len());
    in_band_snr_db(&ours[..n], &theirs[..n], band_hz(rate))
}

/// Test signals at `rate`: three tones across the band, a sweep over it, and speech from
/// three espeak-ng voices at different speeds, resampled to `rate` by sox.
fn signals(rate: u32, dir: &Path) -> Vec<(String, std::path::PathBuf)> {
    let top = band_hz(rate);
    let r = rate.to_string();
    let mut made = Vec::new();
    for freq in [220.0, 1_000.0, (top * 0.9).round()] {
        let path = dir.join(format!("tone-{freq}.wav"));
        synth_sine(&path, rate, 2, &freq.to_string());
        made.push((format!("{freq} Hz tone"), path));
    }
    let sweep = dir.join("sweep.wav");
    synth_sine(&sweep, rate, 3, &format!("50:{}", top.round()));
    made.push(("sweep".into(), sweep));
    for (voice, speed) in [("en", "175"), ("en-us+f3", "140"), ("en-gb+m3", "200")] {
        let raw = dir.join("espeak.wav");
        let out = Command::new("espeak-ng")
            .args(["-v", voice, "-s", speed, "-w"])
            .arg(&raw)
            .arg("She denies fever or chills but reports fatigue and poor sleep.")
            .output()
            .expect("espeak-ng (make setup installs it)");
        assert!(out.status.success(), "espeak-ng -v {voice}");
        let path = dir.join(format!("speech-{voice}.wav"));
        sox(&[
            raw.to_str().unwrap(),
            "-r",
            &r,
            path.to_str().unwrap(),
            "rate",
            "-v",
        ]);
        made.push((format!("speech ({voice}, {speed} wpm)"), path));
    }
    made
}

#[test]
fn every_rate_converts_to_16_khz_as_a_high_quality_resampler_does() {
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for rate in RATES {
        for (name, path) in signals(rate, dir.path()) {
            let snr = compare(&path, rate, dir.path());
            println!("{rate:>6} Hz {name:<28} in-band SNR {snr:6.1} dB");
            if snr < MIN_SNR_DB {
                failures.push(format!("{rate} Hz {name}: {snr:.1} dB"));
            }
        }
    }
    assert!(failures.is_empty(), "below {MIN_SNR_DB} dB: {failures:#?}");
}

#[test]
fn a_tone_above_16_khz_nyquist_does_not_fold_back_into_the_band() {
    // 9 kHz at 48 kHz cannot be represented at 16 kHz: it must be removed, not aliased to 7 kHz.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("high.wav");
    synth_sine(&path, 48_000, 2, "9000");
    let out = decode(&path);
    let middle = &out[out.len() / 4..out.len() * 3 / 4];
    let rms =
        (middle.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / middle.len() as f64).sqrt();
    let db_below_input = 20.0 * (0.5 / std::f64::consts::SQRT_2 / rms).log10();
    assert!(db_below_input > 60.0, "only {db_below_input:.1} dB down");
}
