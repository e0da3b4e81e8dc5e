//! The whole upload route on arbitrary multipart bodies: the real router, a real SQLite
//! database and audio directory. Whatever arrives, the answer is never a 5xx, and a refused
//! upload leaves nothing in the audio directory.
#![no_main]

use std::sync::LazyLock;

use axum::{Router, body::Body, http::Request};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

struct Harness {
    runtime: tokio::runtime::Runtime,
    router: Router,
    token: String,
    audio_dir: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

static HARNESS: LazyLock<Harness> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let env: std::collections::HashMap<String, String> = [
        ("ENV", "test"),
        ("DATA_DIR", dir.path().to_str().expect("a UTF-8 path")),
        (
            "INTERNAL_JWT_SECRET",
            "fuzz-secret-fuzz-secret-fuzz-secret-0001",
        ),
        ("ENABLE_CLOUD_TRANSCRIPTION", "true"),
        ("OPENAI_API_KEY", "sk-fuzz"),
        ("OPENAI_BASE_URL", "http://127.0.0.1:9/v1"),
        ("MAX_UPLOAD_BYTES", "65536"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let config = mmt_core::Config::from_map(&env).expect("a valid configuration");
    let audio_dir = config.storage.audio_dir.clone();
    let state = runtime
        .block_on(mmt_core::AppState::from_config(config))
        .expect("the app starts");
    let token = state
        .tokens
        .issue(
            &mmt_core::domain::OwnerId::new_guest(),
            &[mmt_core::auth::Scope::Read, mmt_core::auth::Scope::Write],
        )
        .expect("a token")
        .access_token;
    Harness {
        router: mmt_core::http::full_router(state),
        runtime,
        token,
        audio_dir,
        _dir: dir,
    }
});

fn files_in(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    if e.path().is_dir() {
                        files_in(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

fuzz_target!(|data: &[u8]| {
    let harness = &*HARNESS;
    // The first byte picks the content type, so the fuzzer also explores broken headers.
    let (selector, body) = data.split_first().unwrap_or((&0, &[]));
    let content_type = match selector % 4 {
        0 => "multipart/form-data; boundary=X",
        1 => "multipart/form-data; boundary=\"a b\"",
        2 => "multipart/form-data",
        _ => "application/octet-stream",
    };
    let request = Request::post("/v1/transcriptions")
        .header("content-type", content_type)
        .header("authorization", format!("Bearer {}", harness.token))
        .body(Body::from(body.to_vec()))
        .expect("a request");
    let before = files_in(&harness.audio_dir);
    let response = harness
        .runtime
        .block_on(harness.router.clone().oneshot(request))
        .expect("the router answers");
    let status = response.status();
    assert!(
        !status.is_server_error(),
        "{status} for {} bytes",
        body.len()
    );
    if !status.is_success() {
        assert_eq!(
            files_in(&harness.audio_dir),
            before,
            "a refused upload left a file"
        );
    }
});
