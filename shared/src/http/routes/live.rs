//! `GET /v1/stream`: live dictation over a WebSocket (protocol in the README, "Live
//! dictation"). The token arrives in the first message, never in the URL; the session itself
//! is [`crate::app::live`], this module only moves its messages and closes with a code that
//! says why.

use std::time::{Duration, Instant};

use axum::{
    Router,
    extract::{
        State,
        ws::{
            CloseFrame, Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection,
        },
    },
    http::{HeaderMap, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use super::upload::parse_prompt;
use crate::{
    app::{
        AppState,
        live::{Decoded, Limit, LiveDictation, LiveSession, Refusal, SAMPLE_RATE, SessionOptions},
    },
    auth::Scope,
    domain::{Segment, Word, live::segments, parse_language},
    http::{ApiError, extract::Caller},
};

/// The first message must arrive within this.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Past this, a client that does not take what is sent to it is gone.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// A closing session waits for the client's own close frame while the client goes on
/// sending, with at most this between its messages, and for at most `LINGER_LIMIT` in all.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);
const LINGER_LIMIT: Duration = Duration::from_secs(15);
/// Words further apart than this are separate segments of a `final` message.
const SEGMENT_GAP_S: f64 = 1.5;

pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/stream", get(upgrade))
}

/// Client → server text messages. Audio travels as binary frames of PCM16.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ClientMessage {
    Start {
        token: String,
        #[serde(default)]
        language: Option<String>,
        #[serde(default)]
        prompt: Option<String>,
    },
    Stop,
}

/// Server → client messages.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ServerMessage<'a> {
    Ready {
        sample_rate: u32,
        max_frame_bytes: usize,
        max_session_s: u64,
        idle_timeout_s: u64,
    },
    /// The words after the committed text, which the next decode may still change.
    Partial {
        text: &'a str,
    },
    /// Newly committed text, by segment and by word: never changed or sent again.
    Final {
        segments: &'a [Segment],
        words: &'a [Word],
    },
    Error {
        code: &'a str,
        message: &'a str,
    },
    /// The session is saved as this transcription record.
    Saved {
        id: &'a str,
    },
}

/// How a session ended, and the close code that says so.
#[derive(Debug, Clone, Copy)]
enum Ending {
    Stopped,
    /// The client closed or vanished without `stop`: what it said is saved all the same.
    Gone,
    NoAudio,
    NoPong,
    Limit(Limit),
    EngineFailed,
    ShuttingDown,
}

impl Ending {
    /// The close code (RFC 6455 §7.4; 4xxx are this protocol's own, after HTTP's codes) and
    /// the error code sent before it.
    fn close(self) -> (u16, &'static str) {
        match self {
            Self::Stopped | Self::Gone => (1000, "saved"),
            Self::NoAudio => (4408, "idle"),
            Self::NoPong => (4408, "not_responding"),
            Self::Limit(Limit::FrameTooLarge) => (1009, "frame_too_large"),
            Self::Limit(Limit::OddFrame) => (4400, "bad_frame"),
            Self::Limit(Limit::TooLong) => (4413, "session_too_long"),
            Self::Limit(Limit::TooFast) => (4429, "too_fast"),
            Self::Limit(Limit::FellBehind) => (1013, "fell_behind"),
            Self::EngineFailed => (1011, "engine_failed"),
            Self::ShuttingDown => (1012, "restarting"),
        }
    }

    fn message(self, idle: Duration) -> String {
        match self {
            Self::Stopped | Self::Gone => "saved".into(),
            Self::NoAudio => format!("no audio for {} s", idle.as_secs()),
            Self::NoPong => format!("no answer to pings for {} s", idle.as_secs()),
            Self::Limit(limit) => limit.to_string(),
            Self::EngineFailed => "the engine stopped; what was said is saved".into(),
            Self::ShuttingDown => "the server is restarting; what was said is saved".into(),
        }
    }
}

async fn upgrade(
    State(state): State<AppState>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let Some(live) = state.live.clone() else {
        return ApiError::EngineUnavailable(
            "live dictation is not enabled on this server (ENABLE_LIVE_DICTATION)".into(),
        )
        .into_response();
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => {
            return ApiError::bad_request(
                "websocket_required",
                format!("{rejection}: /v1/stream is a WebSocket"),
            )
            .into_response();
        }
    };
    let origin_allowed = origin_allowed(&headers, &state.config.http.cors_allow_origins);
    // Frames over the limit are read and refused with 1009; far over it, the connection drops.
    let readable = (live.config().max_frame_bytes * 4).max(1 << 20);
    // No owner in the span: who dictates is the audit trail's business, not the logs'.
    let span = tracing::info_span!("live_dictation", transcription_id = tracing::field::Empty);
    ws.max_message_size(readable)
        .max_frame_size(readable)
        .on_upgrade(move |socket| {
            async move {
                if !origin_allowed {
                    close(
                        socket,
                        4403,
                        "origin",
                        "this page's origin may not dictate here",
                    )
                    .await;
                    return;
                }
                serve(socket, state, live).await;
            }
            .instrument(span)
        })
}

/// Browsers always send `Origin`: it must be this server's own, or one `CORS_ALLOW_ORIGINS`
/// names. A client without one (not a browser) still needs a token.
fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    if allowed
        .iter()
        .any(|a| a == "*" || a.eq_ignore_ascii_case(origin))
    {
        return true;
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin.split_once("://").map(|(_, rest)| rest);
    matches!((host, origin_host), (Some(host), Some(from)) if host.eq_ignore_ascii_case(from))
}

async fn serve(mut socket: WebSocket, state: AppState, live: std::sync::Arc<LiveDictation>) {
    let (caller, options) =
        match tokio::time::timeout(START_TIMEOUT, start(&mut socket, &state)).await {
            Ok(Ok(started)) => started,
            Ok(Err((code, reason, message))) => return close(socket, code, reason, &message).await,
            Err(_) => {
                let message = format!(
                    "send `start` with a token within {} s",
                    START_TIMEOUT.as_secs()
                );
                return close(socket, 4401, "unauthorized", &message).await;
            }
        };
    let session = match live.admit(&caller.owner).await {
        Ok(slot) => LiveSession::start(slot, options).map_err(Refusal::Engine),
        Err(refusal) => Err(refusal),
    };
    let session = match session {
        Ok(session) => session,
        Err(refusal) => {
            let (code, reason) = match &refusal {
                Refusal::TooManyForUser(_) => (4429, "too_many_streams"),
                Refusal::AtCapacity(_) | Refusal::TooSlow(_) => (1013, "at_capacity"),
                Refusal::Engine(_) => (1011, "engine_failed"),
            };
            tracing::warn!(reason, "live dictation refused");
            return close(socket, code, reason, &refusal.to_string()).await;
        }
    };
    let config = live.config();
    let ready = ServerMessage::Ready {
        sample_rate: SAMPLE_RATE,
        max_frame_bytes: config.max_frame_bytes,
        max_session_s: config.max_session.as_secs(),
        idle_timeout_s: config.idle_timeout.as_secs(),
    };
    if send(&mut socket, &ready).await.is_err() {
        return;
    }
    tracing::info!("live dictation started");
    run(socket, session, &state, &live).await;
}

/// Reads the `start` message: a valid token with the write scope, and valid options.
async fn start(
    socket: &mut WebSocket,
    state: &AppState,
) -> Result<(crate::auth::Principal, SessionOptions), (u16, &'static str, String)> {
    let bad = |message: &str| (4400, "bad_message", message.to_owned());
    let text = match socket.recv().await {
        Some(Ok(Message::Text(text))) => text,
        Some(Ok(_)) => return Err(bad("the first message must be `start`, as JSON text")),
        _ => return Err((1000, "gone", String::new())),
    };
    let Ok(ClientMessage::Start {
        token,
        language,
        prompt,
    }) = serde_json::from_str(text.as_str())
    else {
        return Err(bad(
            "the first message must be {\"type\":\"start\",\"token\":…}",
        ));
    };
    let unauthorized = || (4401, "unauthorized", ApiError::Unauthorized.to_string());
    let caller = Caller::from_token(state, &token)
        .await
        .map_err(|_| unauthorized())?;
    let principal = caller
        .require(Scope::Write)
        .map_err(|e| (4403, "insufficient_scope", e.to_string()))?
        .clone();
    let language = language
        .filter(|l| !l.trim().is_empty())
        .map(|l| parse_language(&l))
        .transpose()
        .map_err(|e| bad(&e))?;
    let prompt = parse_prompt(prompt.as_deref()).map_err(|e| bad(&e.to_string()))?;
    Ok((principal, SessionOptions { language, prompt }))
}

/// The session's loop: audio in, decodes as it grows, partials and commits out; then the last
/// decode, the saved record and the close.
async fn run(
    mut socket: WebSocket,
    mut session: LiveSession,
    state: &AppState,
    live: &LiveDictation,
) {
    let idle = live.config().idle_timeout;
    let mut in_flight: Option<tokio::task::JoinHandle<Decoded>> = None;
    let mut pings = tokio::time::interval(idle / 4);
    let (mut last_audio, mut last_pong) = (Instant::now(), Instant::now());
    let mut shown = String::new();
    let ending = loop {
        if in_flight.is_none() && session.wants_decode() {
            in_flight = session.decode();
        }
        tokio::select! {
            message = socket.recv() => match message {
                Some(Ok(Message::Binary(frame))) => {
                    last_audio = Instant::now();
                    if let Err(limit) = session.push(&frame) {
                        break Ending::Limit(limit);
                    }
                }
                Some(Ok(Message::Text(text))) => match serde_json::from_str(text.as_str()) {
                    Ok(ClientMessage::Stop) => break Ending::Stopped,
                    _ => {
                        let _ = send(&mut socket, &ServerMessage::Error {
                            code: "bad_message",
                            message: "only {\"type\":\"stop\"} and audio frames may follow `start`",
                        }).await;
                    }
                },
                Some(Ok(Message::Pong(_))) => last_pong = Instant::now(),
                Some(Ok(Message::Ping(_))) => {}
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break Ending::Gone,
            },
            decoded = async { in_flight.as_mut().expect("guarded").await }, if in_flight.is_some() => {
                in_flight = None;
                let Ok(decoded) = decoded else { break Ending::EngineFailed };
                match session.apply(decoded) {
                    Ok(update) => {
                        if send_update(&mut socket, &update, &mut shown).await.is_err() {
                            break Ending::Gone;
                        }
                    }
                    // The next decode tries again with more audio.
                    Err(e) => tracing::warn!(error = %e, "a live decode failed"),
                }
            }
            _ = pings.tick() => {
                if last_audio.elapsed() >= idle {
                    break Ending::NoAudio;
                }
                if last_pong.elapsed() >= idle {
                    break Ending::NoPong;
                }
                if timed_send(&mut socket, Message::Ping(Default::default())).await.is_err() {
                    break Ending::Gone;
                }
            }
            _ = live.closing() => break Ending::ShuttingDown,
        }
    };
    finish(socket, session, in_flight, ending, state, idle).await;
}

/// The last decode, the record, and the close frame.
async fn finish(
    mut socket: WebSocket,
    mut session: LiveSession,
    in_flight: Option<tokio::task::JoinHandle<Decoded>>,
    ending: Ending,
    state: &AppState,
    idle: Duration,
) {
    let settled = session.finish(in_flight).await;
    let mut shown = String::new();
    let _ = send_update(&mut socket, &settled, &mut shown).await;
    let (code, reason) = ending.close();
    let message = ending.message(idle);
    let saved = session.save(state).await;
    if let Ok(Some(id)) = &saved {
        tracing::Span::current().record("transcription_id", id.to_string());
    }
    tracing::info!(
        ending = reason,
        audio_s = session.received_s(),
        saved = matches!(saved, Ok(Some(_))),
        "live dictation ended"
    );
    match saved {
        Ok(Some(id)) => {
            let _ = send(
                &mut socket,
                &ServerMessage::Saved {
                    id: &id.to_string(),
                },
            )
            .await;
            close(socket, code, reason, &message).await;
        }
        Ok(None) => close(socket, code, reason, &message).await,
        Err(e) => {
            tracing::error!(error.cause_chain = %crate::telemetry::error_chain(&e), "a live dictation could not be saved");
            close(
                socket,
                1011,
                "not_saved",
                "the dictation could not be saved",
            )
            .await;
        }
    }
}

/// Sends what an update committed (as `final`) and the partial after it, when it changed.
async fn send_update(
    socket: &mut WebSocket,
    update: &crate::domain::live::Update,
    shown: &mut String,
) -> Result<(), ()> {
    if !update.committed.is_empty() {
        let segments = segments(&update.committed, SEGMENT_GAP_S);
        let words = &update.committed;
        send(
            socket,
            &ServerMessage::Final {
                segments: &segments,
                words,
            },
        )
        .await?;
    }
    let partial = crate::domain::live::join_words(&update.partial);
    if !update.committed.is_empty() || partial != *shown {
        send(socket, &ServerMessage::Partial { text: &partial }).await?;
        *shown = partial;
    }
    Ok(())
}

async fn send(socket: &mut WebSocket, message: &ServerMessage<'_>) -> Result<(), ()> {
    let text = serde_json::to_string(message).map_err(|_| ())?;
    timed_send(socket, Message::Text(text.into())).await
}

async fn timed_send(socket: &mut WebSocket, message: Message) -> Result<(), ()> {
    match tokio::time::timeout(SEND_TIMEOUT, socket.send(message)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

/// Sends an `error` message (unless the code is a normal close) and the close frame.
async fn close(mut socket: WebSocket, code: u16, reason: &str, message: &str) {
    if code != 1000 && !message.is_empty() {
        let _ = send(
            &mut socket,
            &ServerMessage::Error {
                code: reason,
                message,
            },
        )
        .await;
    }
    let frame = CloseFrame {
        code,
        reason: reason.to_owned().into(),
    };
    if timed_send(&mut socket, Message::Close(Some(frame)))
        .await
        .is_err()
    {
        return;
    }
    // Read (and drop) what the client still sends until its own close: dropping the
    // connection while audio arrives would answer with a reset, and the client's kernel
    // discards the unread close frame with it.
    let _ = tokio::time::timeout(LINGER_LIMIT, async {
        while let Ok(Some(Ok(message))) = tokio::time::timeout(CLOSE_TIMEOUT, socket.recv()).await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}
