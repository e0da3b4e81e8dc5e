//! The transcription engines: the OpenAI-compatible cloud API and local Whisper.

use std::{path::PathBuf, time::Duration};

use secrecy::SecretString;

use super::source::{ConfigError, Source};
use crate::domain::{EngineKind, Vocabulary};

#[derive(Debug, Clone)]
pub struct EnginesConfig {
    pub cloud: Option<CloudEngineConfig>,
    pub local_engine_enabled: bool,
    /// The local engine runs on a separate worker (the GPU service) that consumes the queue:
    /// this process accepts `engine=local` uploads without loading a model.
    pub local_engine_on_worker: bool,
    pub local: LocalEngineConfig,
    pub default_engine: Option<EngineKind>,
    /// The deployment's medical vocabulary (`VOCABULARY`), given to every engine before each
    /// user's own.
    pub vocabulary: Vocabulary,
}

#[derive(Debug, Clone)]
pub struct CloudEngineConfig {
    pub base_url: String,
    pub api_key: SecretString,
    pub model: String,
    pub request_timeout: Duration,
    pub max_retries: u32,
    pub retry_base_delay: Duration,
    /// `NOTE_DRAFT_MODEL`: the chat-completions model that drafts a note's sections from an
    /// unstructured transcript; unset, no drafts are offered.
    pub draft_model: Option<String>,
}

/// The local Whisper engine (whisper.cpp).
#[derive(Debug, Clone)]
pub struct LocalEngineConfig {
    pub model_path: PathBuf,
    pub threads: usize,
    /// ISO 639-1 code, or `None` to detect (multilingual models) / English (`.en` models).
    pub language: Option<String>,
    /// 1 = greedy decoding; more = beam search of this width.
    pub beam_size: usize,
    pub temperature: f32,
    /// Temperature fallback step when decoding fails its quality checks; 0 disables it.
    pub temperature_increment: f32,
    /// Size whisper's audio context to short clips instead of a full 30 s window.
    pub fit_audio_context: bool,
    /// Audio is transcribed in pieces of about this length, cut at pauses (5–25 s).
    pub piece: Duration,
    /// Pieces transcribed at once, each with `threads / workers` threads.
    pub workers: usize,
    /// How stretches without speech are found and left out of the pieces.
    pub vad: VoiceDetection,
    /// A job that has not finished in this long fails (whatever its audio claims to be).
    pub job_timeout: Duration,
    pub use_gpu: bool,
    /// Where recordings are decoded: in a limited child process unless told otherwise.
    pub decoder: AudioDecoder,
}

/// Where the local engine decodes recordings (`adapters::isolated_decoder` runs it).
#[derive(Debug, Clone, PartialEq)]
pub enum AudioDecoder {
    /// `program decode-audio`, limited to `memory_limit_mb` of data memory and the job's
    /// time in CPU seconds, without the server's environment.
    Isolated {
        program: PathBuf,
        memory_limit_mb: u64,
    },
    /// In the server's own process: for tools and tests that decode trusted files only.
    InProcess,
}

impl AudioDecoder {
    /// `AUDIO_DECODER`: `isolated` (the default) or `in-process`; the isolated decoder is
    /// `AUDIO_DECODER_PROGRAM` (by default this very binary) under `AUDIO_DECODER_MEMORY_MB`.
    fn parse(src: &Source) -> Result<Self, ConfigError> {
        let mode = src
            .raw("AUDIO_DECODER")
            .unwrap_or_else(|| "isolated".into());
        match mode.trim().to_ascii_lowercase().as_str() {
            "isolated" => {
                let program = match src.raw("AUDIO_DECODER_PROGRAM") {
                    Some(program) => PathBuf::from(program),
                    None => std::env::current_exe().map_err(|e| ConfigError::Invalid {
                        key: "AUDIO_DECODER_PROGRAM",
                        reason: format!("this program's own path is unknown ({e}): set it"),
                    })?,
                };
                Ok(Self::Isolated {
                    program,
                    memory_limit_mb: src.parse("AUDIO_DECODER_MEMORY_MB", 384u64)?.max(64),
                })
            }
            "in-process" => Ok(Self::InProcess),
            other => Err(ConfigError::Invalid {
                key: "AUDIO_DECODER",
                reason: format!("{other:?} is not isolated or in-process"),
            }),
        }
    }
}

impl EnginesConfig {
    pub(super) fn parse(src: &Source) -> Result<Self, ConfigError> {
        let cloud = CloudEngineConfig::parse(src)?;
        let local_engine_enabled = src.flag("ENABLE_LOCAL_TRANSCRIPTION", false)?;
        let local_engine_on_worker = src.flag("LOCAL_ENGINE_ON_WORKER", false)?;
        let local_available = local_engine_enabled || local_engine_on_worker;
        let local = LocalEngineConfig::parse(src)?;
        let default_engine = match src.raw("DEFAULT_ENGINE") {
            Some(v) => Some(v.parse::<EngineKind>().map_err(|e| ConfigError::Invalid {
                key: "DEFAULT_ENGINE",
                reason: e,
            })?),
            // Local first: audio that never leaves the box is the safer default for PHI.
            None if local_available => Some(EngineKind::Local),
            None if cloud.is_some() => Some(EngineKind::Cloud),
            None => None,
        };
        match default_engine {
            Some(EngineKind::Cloud) if cloud.is_none() => {
                return Err(ConfigError::Invalid {
                    key: "DEFAULT_ENGINE",
                    reason: "cloud is not enabled (ENABLE_CLOUD_TRANSCRIPTION)".into(),
                });
            }
            Some(EngineKind::Local) if !local_available => {
                return Err(ConfigError::Invalid {
                    key: "DEFAULT_ENGINE",
                    reason: "local is not enabled (ENABLE_LOCAL_TRANSCRIPTION or LOCAL_ENGINE_ON_WORKER)"
                        .into(),
                });
            }
            _ => {}
        }

        if src.raw("WHISPER_INITIAL_PROMPT").is_some() {
            return Err(ConfigError::Invalid {
                key: "WHISPER_INITIAL_PROMPT",
                reason: "replaced by VOCABULARY (comma-separated terms, given to every engine)"
                    .into(),
            });
        }
        let vocabulary = Vocabulary::parse_list(&src.raw("VOCABULARY").unwrap_or_default())
            .map_err(|e| ConfigError::Invalid {
                key: "VOCABULARY",
                reason: e.to_string(),
            })?;

        Ok(Self {
            cloud,
            local_engine_enabled,
            local_engine_on_worker,
            local,
            default_engine,
            vocabulary,
        })
    }

    pub(super) fn check_for_production(&self) -> Result<(), ConfigError> {
        if let Some(cloud) = &self.cloud {
            super::source::require_tls_unless_loopback("OPENAI_BASE_URL", &cloud.base_url)?;
        }
        if self.enabled(EngineKind::Local) && self.local.decoder == AudioDecoder::InProcess {
            return Err(ConfigError::unsafe_setting(
                "AUDIO_DECODER",
                "must be isolated: uploaded files are hostile input to the decoders",
            ));
        }
        Ok(())
    }

    /// Whether uploads may ask for `engine`.
    pub fn enabled(&self, engine: EngineKind) -> bool {
        match engine {
            EngineKind::Cloud => self.cloud.is_some(),
            EngineKind::Local => self.local_engine_enabled || self.local_engine_on_worker,
        }
    }
}

impl CloudEngineConfig {
    fn parse(src: &Source) -> Result<Option<Self>, ConfigError> {
        if !src.flag("ENABLE_CLOUD_TRANSCRIPTION", false)? {
            return Ok(None);
        }
        let api_key = src.secret("OPENAI_API_KEY").ok_or(ConfigError::Missing {
            key: "OPENAI_API_KEY",
            reason: "ENABLE_CLOUD_TRANSCRIPTION is on".into(),
        })?;
        let base_url = src
            .raw("OPENAI_BASE_URL")
            .unwrap_or_else(|| "https://api.openai.com/v1".into());
        let parsed = reqwest::Url::parse(&base_url).map_err(|e| ConfigError::Invalid {
            key: "OPENAI_BASE_URL",
            reason: e.to_string(),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ConfigError::Invalid {
                key: "OPENAI_BASE_URL",
                reason: "must be an http(s) URL".into(),
            });
        }
        Ok(Some(CloudEngineConfig {
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key,
            model: src
                .raw("CLOUD_TRANSCRIPTION_MODEL")
                .unwrap_or_else(|| "whisper-1".into()),
            request_timeout: Duration::from_secs(src.parse("OPENAI_TIMEOUT_SECS", 120u64)?),
            max_retries: src.parse("OPENAI_MAX_RETRIES", 3u32)?,
            retry_base_delay: Duration::from_millis(src.parse("OPENAI_RETRY_BASE_MS", 500u64)?),
            draft_model: src.raw("NOTE_DRAFT_MODEL"),
        }))
    }
}

impl LocalEngineConfig {
    fn parse(src: &Source) -> Result<Self, ConfigError> {
        let models_dir: PathBuf = src.parse("MODELS_DIR", PathBuf::from("./models"))?;
        let default_threads = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .min(8);
        let threads = src.parse("WHISPER_THREADS", default_threads)?.max(1);
        Ok(Self {
            model_path: src.parse("WHISPER_MODEL_PATH", models_dir.join("ggml-tiny.en.bin"))?,
            threads,
            workers: src
                .parse("WHISPER_WORKERS", default_workers(threads))?
                .clamp(1, threads),
            language: match src.raw("WHISPER_LANGUAGE").as_deref() {
                None | Some("auto") => None,
                Some(raw) => Some(crate::domain::parse_language(raw).map_err(|reason| {
                    ConfigError::Invalid {
                        key: "WHISPER_LANGUAGE",
                        reason,
                    }
                })?),
            },
            beam_size: src.parse("WHISPER_BEAM_SIZE", 1usize)?.clamp(1, 16),
            temperature: src.parse("WHISPER_TEMPERATURE", 0.0f32)?,
            temperature_increment: src.parse("WHISPER_TEMPERATURE_INCREMENT", 0.2f32)?,
            fit_audio_context: src.flag("WHISPER_FIT_AUDIO_CONTEXT", true)?,
            piece: Duration::from_secs(src.parse("WHISPER_PIECE_SECS", 15u64)?.clamp(5, 25)),
            vad: VoiceDetection::parse(src, &models_dir)?,
            job_timeout: Duration::from_secs(
                src.parse("WHISPER_JOB_TIMEOUT_SECS", 3600u64)?.max(1),
            ),
            use_gpu: src.flag("WHISPER_USE_GPU", true)?,
            decoder: AudioDecoder::parse(src)?,
        })
    }
}

/// Voice activity detection: what is left out of the pieces so Whisper never decodes it.
#[derive(Debug, Clone, PartialEq)]
pub enum VoiceDetection {
    /// Everything is decoded.
    Off,
    /// Silences of a second or more (quiet frames): never loses quiet speech, but keeps noise.
    Energy,
    /// Silero VAD (this ggml model) first: a second or more without speech, noise included,
    /// then the energy rule.
    Silero(PathBuf),
}

impl VoiceDetection {
    /// `WHISPER_VAD`: `auto` (the default: Silero when its model is in place, else energy),
    /// `silero`, `energy` or `off` (`true`/`false` as `auto`/`off`). The model is
    /// `WHISPER_VAD_MODEL_PATH`, by default `ggml-silero-vad.bin` beside the Whisper models.
    fn parse(src: &Source, models_dir: &std::path::Path) -> Result<Self, ConfigError> {
        let model: PathBuf = src.parse(
            "WHISPER_VAD_MODEL_PATH",
            models_dir.join("ggml-silero-vad.bin"),
        )?;
        let mode = src.raw("WHISPER_VAD").unwrap_or_else(|| "auto".into());
        match mode.trim().to_ascii_lowercase().as_str() {
            "auto" | "true" | "1" | "on" if model.is_file() => Ok(Self::Silero(model)),
            "auto" | "true" | "1" | "on" | "energy" => Ok(Self::Energy),
            "silero" if model.is_file() => Ok(Self::Silero(model)),
            "silero" => Err(ConfigError::Invalid {
                key: "WHISPER_VAD",
                reason: format!(
                    "silero needs its model at {} (`make model` writes it, or set \
                     WHISPER_VAD_MODEL_PATH)",
                    model.display()
                ),
            }),
            "off" | "false" | "0" => Ok(Self::Off),
            _ => Err(ConfigError::Invalid {
                key: "WHISPER_VAD",
                reason: "expected auto, silero, energy or off".into(),
            }),
        }
    }
}

/// As many workers as threads per worker: a decoder step is too small to use many threads,
/// so two pieces on one thread each beat one piece on two (make bench measures it).
fn default_workers(threads: usize) -> usize {
    (threads as f64).sqrt().ceil() as usize
}
