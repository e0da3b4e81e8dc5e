//! `make bench` load: many concurrent clients for a while, mixing valid traffic with hostile
//! requests, against a running MMT. Prints what it saw; exits non-zero if any answer was a
//! 5xx, an accepted upload went missing, or a caller got past its rate limit.
//!
//! usage: mixed-load <base url> <clients> <seconds> <rate limit per minute>

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use rand::Rng;
use reqwest::{Client, StatusCode, multipart};
use serde_json::Value;

/// The first clients share one token and send as fast as they can.
const GREEDY_CLIENTS: usize = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    Upload,
    List,
    Read,
    MalformedMultipart,
    WrongContentType,
    ForgedToken,
    TraversalId,
    HugeHeader,
    BadJson,
    Greedy,
}

impl Kind {
    /// Requests that carry the client's own valid token (and so count against its subject).
    fn as_subject(self) -> bool {
        matches!(
            self,
            Kind::Upload
                | Kind::List
                | Kind::Read
                | Kind::Greedy
                | Kind::TraversalId
                | Kind::MalformedMultipart
                | Kind::WrongContentType
        )
    }
}

#[derive(Default)]
struct Tally {
    by_kind: HashMap<(Kind, u16), u64>,
    accepted_uploads: Vec<(String, String)>,
    /// Per subject, per minute since the start: requests that were not refused with 429.
    admitted: HashMap<(String, u64), u64>,
    transport_errors: u64,
}

fn pick(rng: &mut impl Rng) -> Kind {
    match rng.random_range(0..100) {
        0..20 => Kind::Upload,
        20..45 => Kind::List,
        45..60 => Kind::Read,
        60..68 => Kind::MalformedMultipart,
        68..76 => Kind::WrongContentType,
        76..84 => Kind::ForgedToken,
        84..90 => Kind::TraversalId,
        90..95 => Kind::HugeHeader,
        _ => Kind::BadJson,
    }
}

/// One second of a tone, 8 kHz mono 16-bit: a real, small WAV.
fn wav() -> Vec<u8> {
    let samples: Vec<u8> = (0..8000u32)
        .flat_map(|i| (((i as f32 / 8.0).sin() * 8000.0) as i16).to_le_bytes())
        .collect();
    let mut out = b"RIFF".to_vec();
    out.extend((36 + samples.len() as u32).to_le_bytes());
    out.extend(b"WAVEfmt ");
    out.extend(16u32.to_le_bytes());
    out.extend(1u16.to_le_bytes());
    out.extend(1u16.to_le_bytes());
    out.extend(8000u32.to_le_bytes());
    out.extend(16000u32.to_le_bytes());
    out.extend(2u16.to_le_bytes());
    out.extend(16u16.to_le_bytes());
    out.extend(b"data");
    out.extend((samples.len() as u32).to_le_bytes());
    out.extend(samples);
    out
}

async fn guest(client: &Client, base: &str) -> anyhow::Result<(String, String)> {
    for _ in 0..120 {
        let response = client.post(format!("{base}/auth/guest")).send().await?;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        let body: Value = response.json().await?;
        return Ok((
            body["access_token"].as_str().context("token")?.to_owned(),
            body["subject"].as_str().context("subject")?.to_owned(),
        ));
    }
    bail!("no guest token after 120 tries")
}

async fn one(
    client: &Client,
    base: &str,
    token: &str,
    kind: Kind,
    audio: &[u8],
    own: &[String],
) -> reqwest::Result<(StatusCode, Option<String>)> {
    let auth = format!("Bearer {token}");
    let request = match kind {
        Kind::Upload => {
            let form = multipart::Form::new().part(
                "file",
                multipart::Part::bytes(audio.to_vec()).file_name("visit.wav"),
            );
            client
                .post(format!("{base}/v1/transcriptions"))
                .header("authorization", &auth)
                .multipart(form)
        }
        Kind::List | Kind::Greedy => client
            .get(format!("{base}/v1/transcriptions?limit=5"))
            .header("authorization", &auth),
        Kind::Read => {
            let id = own.last().map_or("none", String::as_str);
            client
                .get(format!("{base}/v1/transcriptions/{id}"))
                .header("authorization", &auth)
        }
        Kind::MalformedMultipart => client
            .post(format!("{base}/v1/transcriptions"))
            .header("authorization", &auth)
            .header("content-type", "multipart/form-data; boundary=XYZ")
            .body("--XYZ\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nRIFF\x00\x01"),
        Kind::WrongContentType => client
            .post(format!("{base}/v1/transcriptions"))
            .header("authorization", &auth)
            .header("content-type", "application/xml")
            .body("<audio/>"),
        Kind::ForgedToken => client.get(format!("{base}/v1/transcriptions")).header(
            "authorization",
            "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
        ),
        Kind::TraversalId => client
            .get(format!("{base}/v1/transcriptions/..%2F..%2Fetc%2Fpasswd"))
            .header("authorization", &auth),
        Kind::HugeHeader => client
            .get(format!("{base}/v1/transcriptions"))
            .header("authorization", &auth)
            .header("x-padding", "a".repeat(200_000)),
        Kind::BadJson => client
            .post(format!("{base}/auth/login"))
            .header("content-type", "application/json")
            .body("{\"username\": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["),
    };
    let response = request.send().await?;
    let status = response.status();
    let id = if kind == Kind::Upload && status == StatusCode::ACCEPTED {
        let body: Value = response.json().await?;
        body["id"].as_str().map(str::to_owned)
    } else {
        let _ = response.bytes().await;
        None
    };
    Ok((status, id))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, base, clients, seconds, limit] = args.as_slice() else {
        bail!("usage: mixed-load <base url> <clients> <seconds> <rate limit per minute>");
    };
    let clients: usize = clients.parse()?;
    let duration = Duration::from_secs(seconds.parse()?);
    let limit: u64 = limit.parse()?;
    let client = Client::builder()
        .pool_max_idle_per_host(clients)
        .timeout(Duration::from_secs(60))
        .build()?;
    let audio = Arc::new(wav());
    let tally = Arc::new(Mutex::new(Tally::default()));

    let shared = guest(&client, base).await?;
    let mut identities = Vec::with_capacity(clients);
    for n in 0..clients {
        identities.push(if n < GREEDY_CLIENTS {
            shared.clone()
        } else {
            guest(&client, base).await?
        });
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (n, (token, subject)) in identities.into_iter().enumerate() {
        let (client, base, audio, tally) =
            (client.clone(), base.clone(), audio.clone(), tally.clone());
        tasks.push(tokio::spawn(async move {
            let mut own = Vec::new();
            while started.elapsed() < duration {
                let kind = if n < GREEDY_CLIENTS {
                    Kind::Greedy
                } else {
                    pick(&mut rand::rng())
                };
                let outcome = one(&client, &base, &token, kind, &audio, &own).await;
                let minute = started.elapsed().as_secs() / 60;
                {
                    let mut t = tally.lock().unwrap();
                    match outcome {
                        Ok((status, id)) => {
                            *t.by_kind.entry((kind, status.as_u16())).or_default() += 1;
                            if kind.as_subject() && status != StatusCode::TOO_MANY_REQUESTS {
                                *t.admitted.entry((subject.clone(), minute)).or_default() += 1;
                            }
                            if let Some(id) = id {
                                t.accepted_uploads.push((token.clone(), id.clone()));
                                own.push(id);
                            }
                        }
                        Err(_) => t.transport_errors += 1,
                    }
                }
                if kind != Kind::Greedy {
                    // Real apps pace themselves a little; the greedy clients do not.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();

    // Every accepted upload is still there.
    let accepted = tally.lock().unwrap().accepted_uploads.clone();
    let mut lost = 0;
    for (token, id) in &accepted {
        let mut status = StatusCode::TOO_MANY_REQUESTS;
        for _ in 0..240 {
            status = client
                .get(format!("{base}/v1/transcriptions/{id}"))
                .bearer_auth(token)
                .send()
                .await?
                .status();
            if status != StatusCode::TOO_MANY_REQUESTS {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        if status != StatusCode::OK {
            lost += 1;
        }
    }

    let t = tally.lock().unwrap();
    let count = |keep: &dyn Fn(u16) -> bool| -> u64 {
        t.by_kind
            .iter()
            .filter(|((_, s), _)| keep(*s))
            .map(|(_, n)| n)
            .sum()
    };
    let total = count(&|_| true);
    let server_errors = count(&|s| s >= 500);
    let limited = count(&|s| s == 429);
    // A fixed one-minute window may admit up to twice the limit across a boundary.
    let over_limit = t.admitted.values().filter(|n| **n > 2 * limit).count();
    let greedy_best_minute = t
        .admitted
        .iter()
        .filter(|((s, _), _)| *s == shared.1)
        .map(|(_, n)| *n)
        .max()
        .unwrap_or(0);
    println!(
        "{:<48} {total} requests in {elapsed:.0} s ({:.0} req/s), {clients} clients",
        "mixed load (valid and hostile)",
        total as f64 / elapsed,
    );
    let mut kinds: Vec<_> = t.by_kind.iter().collect();
    kinds.sort();
    for ((kind, status), n) in kinds {
        println!("{:<48} {n}", format!("  {kind:?} → {status}"));
    }
    println!("{:<48} {server_errors}", "  5xx answers");
    println!("{:<48} {}", "  transport errors", t.transport_errors);
    println!(
        "{:<48} {} accepted, {lost} missing afterwards",
        "  uploads",
        accepted.len()
    );
    println!(
        "{:<48} {limited} answered 429; the shared token's best minute got {greedy_best_minute} through (limit {limit}/min)",
        "  rate limiting"
    );
    if server_errors > 0 || lost > 0 || over_limit > 0 || t.transport_errors > 0 {
        bail!(
            "{server_errors} 5xx, {lost} lost uploads, {over_limit} subject-minutes over the limit, {} transport errors",
            t.transport_errors
        );
    }
    Ok(())
}
