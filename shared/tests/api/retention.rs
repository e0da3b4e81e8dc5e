use std::sync::Arc;

use chrono::{Duration, Utc};
use mmt_core::ports::ManualClock;

use crate::helpers::spawn_app_customised;

#[tokio::test]
async fn the_sweep_deletes_what_is_past_retention_and_nothing_else() {
    let clock = Arc::new(ManualClock::new(Utc::now() - Duration::days(40)));
    let app = {
        let clock = clock.clone();
        spawn_app_customised(&[("RETENTION_DAYS", "30")], move |state| {
            state.clock = clock
        })
        .await
    };
    let token = app.guest_token().await;
    let old = app.upload_wav(&token).await;
    app.drain_jobs().await;
    clock.advance(Duration::days(20)); // `old` is now 20 days old
    let recent = app.upload_wav(&token).await;
    assert_eq!(app.audio_files().len(), 2);

    let report = app.state.retention().sweep().await.unwrap();
    assert_eq!(
        (report.deleted_records, report.deleted_audio, report.failed),
        (0, 0, 0)
    );

    clock.advance(Duration::days(11)); // `old` is 31 days old, `recent` 11
    let report = app.state.retention().sweep().await.unwrap();
    assert_eq!((report.deleted_records, report.deleted_audio), (1, 1));
    assert_eq!(
        app.get(&token, &format!("/v1/transcriptions/{old}"))
            .await
            .status(),
        404
    );
    assert_eq!(
        app.get(&token, &format!("/v1/transcriptions/{recent}"))
            .await
            .status(),
        200
    );
    assert_eq!(app.audio_files().len(), 1);
    assert!(app.audio_files()[0].ends_with(&recent));
}

#[tokio::test]
async fn retention_zero_keeps_everything() {
    let clock = Arc::new(ManualClock::new(Utc::now() - Duration::days(4000)));
    let app = {
        let clock = clock.clone();
        spawn_app_customised(&[("RETENTION_DAYS", "0")], move |state| state.clock = clock).await
    };
    let token = app.guest_token().await;
    let id = app.upload_wav(&token).await;
    clock.advance(Duration::days(3999));
    let report = app.state.retention().sweep().await.unwrap();
    assert_eq!(report.deleted_records, 0);
    assert_eq!(
        app.get(&token, &format!("/v1/transcriptions/{id}"))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn a_swept_record_leaves_no_trace_in_the_raw_database_files() {
    const PHRASE: &str = "Bartholomew Quince was prescribed warfarin";
    let clock = Arc::new(ManualClock::new(Utc::now() - Duration::days(40)));
    let app = {
        let clock = clock.clone();
        spawn_app_customised(&[("RETENTION_DAYS", "30")], move |state| {
            state.clock = clock
        })
        .await
    };
    app.openai.set_transcript(PHRASE);
    let token = app.guest_token().await;
    app.upload_wav(&token).await;
    app.drain_jobs().await;
    let raw = || -> Vec<u8> {
        ["mmt.db", "mmt.db-wal"]
            .iter()
            .flat_map(|n| std::fs::read(app.dir.path().join(n)).unwrap_or_default())
            .collect()
    };
    let holds = |bytes: &[u8]| bytes.windows(PHRASE.len()).any(|w| w == PHRASE.as_bytes());
    assert!(
        holds(&raw()),
        "the control: the transcript is in the file before the sweep"
    );

    clock.advance(Duration::days(31));
    assert_eq!(
        app.state.retention().sweep().await.unwrap().deleted_records,
        1
    );
    assert!(
        !holds(&raw()),
        "deleted, not merely unlinked: no copy in free pages or the write-ahead log"
    );
}

#[tokio::test]
async fn a_record_abandoned_in_processing_is_failed_by_the_sweep() {
    use mmt_core::{
        app::retention::ABANDONED,
        domain::TranscriptionId,
        ports::{Claim, Clock},
    };
    let clock = Arc::new(ManualClock::new(Utc::now()));
    // Records kept forever: the sweep still reconciles.
    let app =
        crate::helpers::spawn_app_on_clock(&[("RETENTION_DAYS", "0")], clock.clone(), |_| {}).await;
    let token = app.guest_token().await;
    let claim_now = |id: &str, by: &str| {
        let id: TranscriptionId = id.parse().unwrap();
        let claim = Claim {
            by: by.to_owned(),
            now: clock.now(),
            stale_before: app.state.transcriptions().stale_before(),
        };
        let records = app.state.records.clone();
        async move { assert!(records.claim(&id, &claim).await.unwrap()) }
    };
    let lease = Duration::from_std(app.state.config.queue.processing_lease()).unwrap();
    // A worker takes the first and dies; the second is taken later and still alive.
    let abandoned = app.upload_wav(&token).await;
    claim_now(&abandoned, "worker-that-died").await;
    clock.advance(lease - Duration::seconds(1));
    let alive = app.upload_wav(&token).await;
    claim_now(&alive, "worker-still-working").await;
    assert_eq!(app.state.retention().sweep().await.unwrap().abandoned, 0);

    clock.advance(Duration::seconds(2));
    let report = app.state.retention().sweep().await.unwrap();
    assert_eq!((report.abandoned, report.deleted_records), (1, 0));
    let (_, first) = app
        .get_json(&token, &format!("/v1/transcriptions/{abandoned}"))
        .await;
    assert_eq!(
        (first["status"].as_str(), first["error"].as_str()),
        (Some("failed"), Some(ABANDONED))
    );
    let (_, second) = app
        .get_json(&token, &format!("/v1/transcriptions/{alive}"))
        .await;
    assert_eq!(second["status"], "processing");
}
