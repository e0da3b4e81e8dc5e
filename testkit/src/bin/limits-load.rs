//! `make bench`: do the brute-force lockout and the shared rate limit hold under load?
//!
//! usage:
//!   limits-load brute-force <base url> <seconds> <attackers>
//!       attackers (each from its own address, via X-Forwarded-For behind TRUSTED_PROXY_HOPS=1)
//!       try wrong passwords for `alice` as fast as they can while `bob` signs in with his
//!       right password twice a second; prints how many guesses were checked before the lockout
//!       and what bob got.
//!   limits-load two-servers <base a> <base b> <seconds> <limit per minute>
//!       one guest sends to two server processes sharing one store, alternating, as fast as
//!       it can; prints how many requests each window let through.
//!
//! The bench's server has LOCAL_LOGIN_USERS `alice` and `bob`, both with the password
//! `bench-password`.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

const PASSWORD: &str = "bench-password";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let client = Client::builder().timeout(Duration::from_secs(30)).build()?;
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["brute-force", base, seconds, attackers] => {
            brute_force(&client, base, seconds.parse()?, attackers.parse()?).await
        }
        ["two-servers", a, b, seconds, limit] => {
            two_servers(&client, [a, b], seconds.parse()?, limit.parse()?).await
        }
        _ => bail!(
            "usage: limits-load brute-force <base> <seconds> <attackers> | two-servers <a> <b> <seconds> <limit>"
        ),
    }
}

async fn sign_in(
    client: &Client,
    base: &str,
    user: &str,
    password: &str,
    address: &str,
) -> reqwest::Result<(StatusCode, String)> {
    let response = client
        .post(format!("{base}/auth/login"))
        .header("x-forwarded-for", address)
        .json(&json!({"username": user, "password": password}))
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or_default();
    let code = body["error"]["code"].as_str().unwrap_or("ok").to_owned();
    Ok((status, code))
}

async fn brute_force(
    client: &Client,
    base: &str,
    seconds: u64,
    attackers: usize,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let duration = Duration::from_secs(seconds);
    let outcomes: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let locked_at: Arc<Mutex<Option<(Duration, u64)>>> = Arc::default();
    let mut tasks = Vec::new();
    for n in 0..attackers {
        let (client, base, outcomes, locked_at) = (
            client.clone(),
            base.to_owned(),
            outcomes.clone(),
            locked_at.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let address = format!("198.51.100.{}", n + 1);
            let mut guess = 0u64;
            while started.elapsed() < duration {
                guess += 1;
                let outcome = sign_in(
                    &client,
                    &base,
                    "alice",
                    &format!("guess-{n}-{guess}"),
                    &address,
                )
                .await;
                let key = match outcome {
                    Ok((status, code)) => format!("{} {code}", status.as_u16()),
                    Err(_) => "transport error".to_owned(),
                };
                let mut outcomes = outcomes.lock().unwrap();
                if key == "429 account_locked" {
                    let checked = outcomes
                        .get("401 invalid_credentials")
                        .copied()
                        .unwrap_or(0);
                    locked_at
                        .lock()
                        .unwrap()
                        .get_or_insert((started.elapsed(), checked));
                }
                *outcomes.entry(key).or_default() += 1;
            }
        }));
    }
    // Meanwhile the other clinician signs in as usual, from her own address.
    let mut bob = BTreeMap::<String, u64>::new();
    while started.elapsed() < duration {
        let key = match sign_in(client, base, "bob", PASSWORD, "203.0.113.50").await {
            Ok((status, code)) => format!("{} {code}", status.as_u16()),
            Err(_) => "transport error".to_owned(),
        };
        *bob.entry(key).or_default() += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for task in tasks {
        task.await?;
    }
    let outcomes = outcomes.lock().unwrap().clone();
    let guesses: u64 = outcomes.values().sum();
    let checked = outcomes
        .get("401 invalid_credentials")
        .copied()
        .unwrap_or(0);
    println!(
        "{:<48} {guesses} in {seconds} s from {attackers} addresses",
        "brute force on one account: guesses"
    );
    for (outcome, n) in &outcomes {
        println!("{:<48} {n}", format!("  {outcome}"));
    }
    match *locked_at.lock().unwrap() {
        Some((at, before)) => println!(
            "{:<48} after {before} wrong passwords, {:.1} s in; {checked} checked in all (the rest refused unchecked)",
            "  locked out",
            at.as_secs_f64(),
        ),
        None => println!("{:<48} never", "  locked out"),
    }
    let bob_ok = bob.get("200 ok").copied().unwrap_or(0);
    let bob_all: u64 = bob.values().sum();
    println!(
        "{:<48} {bob_ok} of {bob_all} sign-ins succeeded {bob:?}",
        "  another account meanwhile"
    );
    let (status, code) = sign_in(client, base, "alice", PASSWORD, "203.0.113.51").await?;
    println!(
        "{:<48} {} {code}",
        "  alice with her right password, after",
        status.as_u16()
    );
    if locked_at.lock().unwrap().is_none() || bob_ok != bob_all {
        bail!("the lockout did not hold, or another account was affected");
    }
    Ok(())
}

async fn two_servers(
    client: &Client,
    bases: [&str; 2],
    seconds: u64,
    limit: u64,
) -> anyhow::Result<()> {
    let guest: Value = client
        .post(format!("{}/auth/guest", bases[0]))
        .send()
        .await?
        .json()
        .await?;
    let token = guest["access_token"].as_str().context("token")?.to_owned();
    let started = Instant::now();
    // The shared window starts at this token's first request: minute n of the run is window n.
    let mut admitted: BTreeMap<u64, [u64; 2]> = BTreeMap::new();
    let mut refused = 0u64;
    let mut sent = 0u64;
    while started.elapsed() < Duration::from_secs(seconds) {
        let which = (sent % 2) as usize;
        sent += 1;
        let window = started.elapsed().as_secs() / 60;
        let response = client
            .get(format!("{}/v1/transcriptions?limit=1", bases[which]))
            .bearer_auth(&token)
            .send()
            .await?;
        match response.status() {
            StatusCode::OK => admitted.entry(window).or_default()[which] += 1,
            StatusCode::TOO_MANY_REQUESTS => refused += 1,
            other => bail!("unexpected {other}"),
        }
    }
    println!(
        "{:<48} {sent} requests in {seconds} s, alternating, one token",
        "two servers sharing one store"
    );
    let mut worst = 0;
    for (window, [a, b]) in &admitted {
        println!(
            "{:<48} {} ({a} by the first, {b} by the second; limit {limit})",
            format!("  window {window}: admitted"),
            a + b
        );
        worst = worst.max(a + b);
    }
    println!("{:<48} {refused}", "  refused with 429");
    if worst > limit {
        bail!("a window admitted {worst}, over the limit of {limit}");
    }
    Ok(())
}
