//! Live dictation (`GET /v1/stream`): how long a session may run and how much it may hold,
//! and how many run at once.

use std::time::Duration;

use super::source::{ConfigError, Source};

#[derive(Debug, Clone)]
pub struct LiveConfig {
    /// `ENABLE_LIVE_DICTATION` (default: on wherever the local engine is).
    pub enabled: bool,
    /// `LIVE_MAX_SESSION_SECS`: a session is saved and closed when its audio reaches this.
    pub max_session: Duration,
    /// `LIVE_IDLE_TIMEOUT_SECS`: no audio (or no answer to a ping) for this long closes it.
    pub idle_timeout: Duration,
    /// `LIVE_MAX_FRAME_BYTES`: the largest audio frame (PCM16 at 16 kHz: 32,000 bytes a second).
    pub max_frame_bytes: usize,
    /// `LIVE_MAX_BUFFERED_SECS`: audio not yet transcribed beyond the window; past it the
    /// server has fallen behind and the session is saved and closed.
    pub max_buffered: Duration,
    /// `LIVE_MAX_AHEAD_SECS`: how far a client may send ahead of real time (network bursts);
    /// a recording sent faster belongs in an upload.
    pub max_ahead: Duration,
    /// `LIVE_STREAMS_PER_USER`: sessions one user may hold open at once.
    pub streams_per_user: usize,
    /// `LIVE_MAX_STREAMS`: sessions this process runs at once; 0 (the default) = as many as
    /// the machine transcribes in real time, measured.
    pub max_streams: usize,
    /// `LIVE_STEP_MS`: how often a session's window is transcribed again.
    pub step: Duration,
    /// `LIVE_DECODERS`: decodes run at once, each with all `WHISPER_THREADS`.
    pub decoders: usize,
    /// `LIVE_DICTATION_URL`: where the web page dictates when another service runs it (on
    /// AWS, the GPU worker's load balancer: `wss://…/v1/stream`); the page's own API when unset.
    pub public_url: Option<String>,
}

impl LiveConfig {
    pub(super) fn parse(src: &Source, local_engine: bool) -> Result<Self, ConfigError> {
        let secs = |key, default: u64, min: u64, max: u64| -> Result<Duration, ConfigError> {
            Ok(Duration::from_secs(
                src.parse(key, default)?.clamp(min, max),
            ))
        };
        let enabled = src.flag("ENABLE_LIVE_DICTATION", local_engine)?;
        let public_url = src
            .raw("LIVE_DICTATION_URL")
            .filter(|u| !u.trim().is_empty());
        if let Some(url) = &public_url
            && !(url.starts_with("wss://") || url.starts_with("ws://"))
        {
            return Err(ConfigError::Invalid {
                key: "LIVE_DICTATION_URL",
                reason: "must be a WebSocket URL (wss://host/v1/stream)".into(),
            });
        }
        if enabled && !local_engine {
            return Err(ConfigError::Invalid {
                key: "ENABLE_LIVE_DICTATION",
                reason: "live dictation runs on the local engine: set ENABLE_LOCAL_TRANSCRIPTION"
                    .into(),
            });
        }
        Ok(Self {
            enabled,
            max_session: secs("LIVE_MAX_SESSION_SECS", 1800, 10, 4 * 3600)?,
            idle_timeout: secs("LIVE_IDLE_TIMEOUT_SECS", 20, 2, 600)?,
            max_frame_bytes: src
                .parse("LIVE_MAX_FRAME_BYTES", 32_000usize)?
                .clamp(320, 1 << 20),
            max_buffered: secs("LIVE_MAX_BUFFERED_SECS", 20, 2, 600)?,
            max_ahead: secs("LIVE_MAX_AHEAD_SECS", 5, 1, 60)?,
            streams_per_user: src.parse("LIVE_STREAMS_PER_USER", 2usize)?.max(1),
            max_streams: src.parse("LIVE_MAX_STREAMS", 0usize)?,
            step: Duration::from_millis(src.parse("LIVE_STEP_MS", 1000u64)?.clamp(200, 10_000)),
            decoders: src.parse("LIVE_DECODERS", 1usize)?.max(1),
            public_url,
        })
    }

    /// Dictation leaves the machine only over TLS.
    pub(super) fn check_for_production(&self) -> Result<(), ConfigError> {
        match &self.public_url {
            Some(url) if url.starts_with("ws://") && !super::source::is_loopback_url(url) => Err(
                ConfigError::unsafe_setting("LIVE_DICTATION_URL", "must be wss:// (TLS)"),
            ),
            _ => Ok(()),
        }
    }

    /// Whether the web page can dictate live: here, or at `LIVE_DICTATION_URL`.
    pub fn offered(&self) -> bool {
        self.enabled || self.public_url.is_some()
    }
}
