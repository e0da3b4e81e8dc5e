//! Where things are kept: audio, records, the audit trail, and the key ring that seals PHI.

use std::{path::PathBuf, sync::Arc};

use secrecy::ExposeSecret;

use super::source::{ConfigError, Source};

#[derive(Debug, Clone)]
pub struct StorageConfig {
    pub database_path: PathBuf,
    /// `ACCESS_DATABASE_PATH`: revocations and shared counters, beside the records when
    /// they are in SQLite (DynamoDB holds them when the records are there).
    pub access_database_path: PathBuf,
    pub audio_dir: PathBuf,
    pub blob_backend: BlobBackend,
    pub record_backend: RecordBackend,
    pub audit_backend: AuditBackend,
    /// `ENABLE_FIELD_ENCRYPTION`: the key ring that seals PHI fields at rest.
    pub field_encryption: Option<Arc<crate::crypto::KeyRing>>,
}

/// Where audio is kept.
#[derive(Debug, Clone, PartialEq)]
pub enum BlobBackend {
    /// A local directory (`AUDIO_DIR`).
    Disk,
    /// An S3 bucket, encrypted with SSE-KMS when a key is given (SSE-S3 otherwise).
    S3 {
        bucket: String,
        kms_key_id: Option<String>,
        /// Path-style addressing, for emulators (on by default when `AWS_ENDPOINT_URL` is set).
        force_path_style: bool,
    },
}

/// Where transcription records live.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordBackend {
    /// The SQLite file `DATABASE_PATH`.
    Sqlite,
    /// A DynamoDB table (see `adapters::dynamodb` for the key design).
    DynamoDb { table: String },
}

/// Where the audit trail is kept: always apart from the records.
#[derive(Debug, Clone, PartialEq)]
pub enum AuditBackend {
    /// Its own SQLite file, `AUDIT_DATABASE_PATH`.
    Sqlite { path: PathBuf },
    /// Its own DynamoDB table, `AUDIT_TABLE`.
    DynamoDb { table: String },
}

impl StorageConfig {
    pub(super) fn parse(src: &Source) -> Result<Self, ConfigError> {
        let data_dir: PathBuf = src.parse("DATA_DIR", PathBuf::from("./data"))?;
        let database_path = src.parse("DATABASE_PATH", data_dir.join("mmt.db"))?;
        let access_database_path = src.parse("ACCESS_DATABASE_PATH", data_dir.join("access.db"))?;
        let audio_dir = src.parse("AUDIO_DIR", data_dir.join("audio"))?;

        let blob_backend = match src.raw("BLOB_STORE").as_deref() {
            None | Some("disk") => BlobBackend::Disk,
            Some("s3") => BlobBackend::S3 {
                bucket: src.raw("S3_BUCKET").ok_or(ConfigError::Missing {
                    key: "S3_BUCKET",
                    reason: "BLOB_STORE=s3".into(),
                })?,
                kms_key_id: src.raw("S3_KMS_KEY_ID"),
                force_path_style: src
                    .flag("S3_FORCE_PATH_STYLE", src.raw("AWS_ENDPOINT_URL").is_some())?,
            },
            Some(_) => {
                return Err(ConfigError::Invalid {
                    key: "BLOB_STORE",
                    reason: "expected disk or s3".into(),
                });
            }
        };

        let record_backend = match src.raw("RECORD_STORE").as_deref() {
            None | Some("sqlite") => RecordBackend::Sqlite,
            Some("dynamodb") => RecordBackend::DynamoDb {
                table: src.raw("DYNAMODB_TABLE").ok_or(ConfigError::Missing {
                    key: "DYNAMODB_TABLE",
                    reason: "RECORD_STORE=dynamodb".into(),
                })?,
            },
            Some(_) => {
                return Err(ConfigError::Invalid {
                    key: "RECORD_STORE",
                    reason: "expected sqlite or dynamodb".into(),
                });
            }
        };

        // The trail lives where the records live, in a store of its own.
        let audit_backend = match record_backend {
            RecordBackend::Sqlite => AuditBackend::Sqlite {
                path: src.parse("AUDIT_DATABASE_PATH", data_dir.join("audit.db"))?,
            },
            RecordBackend::DynamoDb { .. } => AuditBackend::DynamoDb {
                table: src.raw("AUDIT_TABLE").ok_or(ConfigError::Missing {
                    key: "AUDIT_TABLE",
                    reason: "RECORD_STORE=dynamodb".into(),
                })?,
            },
        };

        let field_encryption = parse_key_ring(src)?;

        Ok(Self {
            database_path,
            access_database_path,
            audio_dir,
            blob_backend,
            record_backend,
            audit_backend,
            field_encryption,
        })
    }

    /// A function's disk is ephemeral and private to one instance: records and audio kept
    /// there would be lost, and invisible to the other functions.
    pub(super) fn check_for_production(&self) -> Result<(), ConfigError> {
        if matches!(
            self.blob_backend,
            BlobBackend::S3 {
                kms_key_id: None,
                ..
            }
        ) {
            return Err(ConfigError::unsafe_setting(
                "S3_KMS_KEY_ID",
                "must name the KMS key that encrypts the recordings (SSE-KMS)",
            ));
        }
        Ok(())
    }

    pub(super) fn check_for_lambda(&self) -> Result<(), ConfigError> {
        if matches!(self.blob_backend, BlobBackend::Disk) {
            return Err(ConfigError::unsafe_setting(
                "BLOB_STORE",
                "must be s3 in a Lambda function",
            ));
        }
        if matches!(self.record_backend, RecordBackend::Sqlite) {
            return Err(ConfigError::unsafe_setting(
                "RECORD_STORE",
                "must be dynamodb in a Lambda function",
            ));
        }
        Ok(())
    }
}

/// `ENABLE_FIELD_ENCRYPTION`: the key ring from `ENCRYPTION_KEYS`, with its primary key.
fn parse_key_ring(src: &Source) -> Result<Option<Arc<crate::crypto::KeyRing>>, ConfigError> {
    if !src.flag("ENABLE_FIELD_ENCRYPTION", false)? {
        return Ok(None);
    }
    let keys = src.secret("ENCRYPTION_KEYS").ok_or(ConfigError::Missing {
        key: "ENCRYPTION_KEYS",
        reason: "ENABLE_FIELD_ENCRYPTION is on (generate keys with `openssl rand -base64 32`)"
            .into(),
    })?;
    let primary = src
        .raw("PRIMARY_ENCRYPTION_KEY_ID")
        .ok_or(ConfigError::Missing {
            key: "PRIMARY_ENCRYPTION_KEY_ID",
            reason: "ENABLE_FIELD_ENCRYPTION is on".into(),
        })?;
    let ring = crate::crypto::KeyRing::parse(keys.expose_secret(), &primary).map_err(|e| {
        ConfigError::Invalid {
            key: "ENCRYPTION_KEYS",
            reason: e.to_string(),
        }
    })?;
    Ok(Some(Arc::new(ring)))
}
