//! `make bench`: live dictation's lag and capacity.
//!
//! usage: live-load <base url> <server pid> <most streams>
//!
//! Speaks a dictation with espeak-ng, word by word so each word's end is known exactly, with
//! pauses between sentences; streams it in real time over `/v1/stream`, first alone,
//! then 2, 3, … sessions at once (each its own guest), and prints for each round the median
//! and 95th-percentile lag from the end of a spoken word to its first appearance (partial or
//! final) and to its commit, the refusals, and the server's resident memory per stream. It
//! stops after the first round that was refused, whose median commit lag passed 3 s, or whose
//! 95th-percentile commit lag grew past 1.5 times one stream's. `LIVE_LOAD_WORDS=1` prints
//! every word's lags.

use std::time::Duration;

use anyhow::Context;
use mmt_testkit::live::{Plan, Run, dictate, median_p95, spoken_words};
use serde_json::Value;

const SENTENCES: &[&str] = &[
    "The patient reports a dry cough and a mild fever that started four days ago.",
    "She has no chest pain and her breathing is normal at rest.",
    "We will prescribe rest, plenty of fluids and a follow up visit next week.",
    "Her blood pressure today is one hundred and twenty over eighty.",
];

/// How much the 95th-percentile commit lag may grow over one stream's before the machine
/// counts as no longer keeping up.
const GROWTH: f64 = 1.5;
/// The target for the median lag from a spoken word to its commit.
const COMMIT_TARGET_S: f64 = 3.0;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [base, pid, most] = args.as_slice() else {
        anyhow::bail!("usage: live-load <base url> <server pid> <most streams>");
    };
    let dir = tempfile::tempdir()?;
    let (samples, spoken) = spoken_words(dir.path(), SENTENCES, 1.5)?;
    println!(
        "dictation: {:.1} s, {} sentences, {} words, 1.5 s pauses",
        samples.len() as f64 / 16_000.0,
        SENTENCES.len(),
        spoken.len()
    );
    let most: usize = most.parse()?;
    let ws_url = format!("{}/v1/stream", base.replacen("http", "ws", 1));
    let client = reqwest::Client::new();
    let idle_mb = rss_mb(pid)?;
    println!(
        "{:<8} {:>22} {:>22} {:>8} {:>14}",
        "streams", "shown lag med/p95 s", "commit lag med/p95 s", "refused", "RSS/stream MB"
    );
    let mut sustained = 0;
    let mut single_stream_p95 = None;
    for streams in 1..=most {
        let mut tokens = Vec::new();
        for _ in 0..streams {
            tokens.push(guest_token(&client, base).await?);
        }
        let peak = std::sync::Arc::new(std::sync::Mutex::new(idle_mb));
        let sampler = tokio::spawn(sample_peak_rss(pid.clone(), peak.clone()));
        let runs = futures::future::join_all(tokens.iter().map(|token| {
            let plan = Plan::real_time(token);
            let (url, samples) = (ws_url.clone(), &samples);
            async move { dictate(&url, samples, &plan, Duration::from_secs(120)).await }
        }))
        .await;
        sampler.abort();
        let peak = *peak.lock().unwrap();
        let runs: Vec<Run> = runs.into_iter().collect::<Result<_, _>>()?;
        let refused = runs
            .iter()
            .filter(|r| r.close.as_ref().is_some_and(|(code, _)| *code == 1013))
            .count();
        let lags: Vec<_> = runs.iter().flat_map(|r| r.word_lags(&spoken)).collect();
        let (shown_med, shown_p95) =
            median_p95(&mut lags.iter().map(|l| l.shown_after_s).collect::<Vec<_>>());
        let (commit_med, commit_p95) =
            median_p95(&mut lags.iter().map(|l| l.committed_after_s).collect::<Vec<_>>());
        let served = streams - refused;
        let per_stream = match served {
            0 => f64::NAN,
            n => (peak - idle_mb) / n as f64,
        };
        println!(
            "{streams:<8} {:>22} {:>22} {refused:>8} {per_stream:>14.1}",
            format!("{shown_med:.2} / {shown_p95:.2}"),
            format!("{commit_med:.2} / {commit_p95:.2}"),
        );
        if std::env::var_os("LIVE_LOAD_WORDS").is_some() {
            for lag in &lags {
                println!(
                    "  {:<12} ends {:>5.2} s  shown +{:.2}  committed +{:.2}",
                    lag.word, lag.end_s, lag.shown_after_s, lag.committed_after_s
                );
            }
        }
        // Lag grows once the decoders cannot keep up: the slowest commits stretch first.
        let alone = *single_stream_p95.get_or_insert(commit_p95);
        if refused > 0
            || lags.is_empty()
            || commit_med > COMMIT_TARGET_S
            || commit_p95 > alone * GROWTH
        {
            break;
        }
        sustained = streams;
    }
    println!(
        "real-time streams sustained (none refused, median commit lag ≤ {COMMIT_TARGET_S} s, p95 within {GROWTH}× one stream's): {sustained}"
    );
    Ok(())
}

async fn guest_token(client: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    let body: Value = client
        .post(format!("{base}/auth/guest"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    body["access_token"]
        .as_str()
        .map(str::to_owned)
        .context("no access_token")
}

fn rss_mb(pid: &str) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS")?;
    Ok(kb / 1024.0)
}

/// Keeps the highest resident memory seen in `peak`, sampled every 200 ms until aborted.
async fn sample_peak_rss(pid: String, peak: std::sync::Arc<std::sync::Mutex<f64>>) {
    loop {
        if let Ok(mb) = rss_mb(&pid) {
            let mut peak = peak.lock().unwrap();
            *peak = peak.max(mb);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
