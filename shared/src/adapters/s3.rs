//! [`BlobStore`] on Amazon S3 (or any S3 API, e.g. the moto emulator in tests).
//!
//! Uploads stream: bodies up to one part are a single `PutObject`; larger ones become a
//! multipart upload of 8 MiB parts, so memory stays at one part whatever the file size. Over
//! the limit, or when the client's body fails, the multipart upload is aborted and nothing is
//! kept. Every object is encrypted at rest: SSE-KMS with the configured key, SSE-S3 otherwise.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::{
    Client,
    presigning::PresigningConfig,
    primitives::ByteStream as S3Body,
    types::{CompletedMultipartUpload, CompletedPart, ServerSideEncryption},
};
use futures::StreamExt;
use tokio_util::io::ReaderStream;

use crate::{
    domain::BlobKey,
    ports::{BlobError, BlobStore, ByteStream, PresignedUpload},
};

/// S3's minimum part size is 5 MiB; 8 MiB keeps the part count low for long recordings.
const PART_SIZE: usize = 8 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct S3BlobStore {
    client: Client,
    bucket: String,
    kms_key_id: Option<String>,
}

fn unavailable(err: impl std::error::Error + Send + Sync + 'static) -> BlobError {
    BlobError::Unavailable(Box::new(err))
}

impl S3BlobStore {
    pub fn new(client: Client, bucket: impl Into<String>, kms_key_id: Option<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
            kms_key_id,
        }
    }

    fn encryption(&self) -> ServerSideEncryption {
        if self.kms_key_id.is_some() {
            ServerSideEncryption::AwsKms
        } else {
            ServerSideEncryption::Aes256
        }
    }

    async fn put_single(&self, key: &BlobKey, bytes: Vec<u8>) -> Result<(), BlobError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .body(S3Body::from(bytes))
            .server_side_encryption(self.encryption())
            .set_ssekms_key_id(self.kms_key_id.clone())
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Streams the rest of `body` as a multipart upload whose first part is `first`.
    async fn put_multipart(
        &self,
        key: &BlobKey,
        first: Vec<u8>,
        body: &mut ByteStream<'_>,
        max_bytes: u64,
    ) -> Result<u64, BlobError> {
        let upload = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key.as_str())
            .server_side_encryption(self.encryption())
            .set_ssekms_key_id(self.kms_key_id.clone())
            .send()
            .await
            .map_err(unavailable)?;
        let upload_id = upload
            .upload_id()
            .ok_or_else(|| BlobError::Unavailable("S3 returned no upload id".into()))?
            .to_owned();

        let result = async {
            let mut parts = Vec::new();
            let mut written = first.len() as u64;
            let mut part = first;
            let mut finished = false;
            while !finished {
                // Fill the next part (the first arrives full).
                while part.len() < PART_SIZE {
                    match body.next().await {
                        Some(chunk) => {
                            let chunk = chunk.map_err(BlobError::Body)?;
                            written += chunk.len() as u64;
                            if written > max_bytes {
                                return Err(BlobError::TooLarge { limit: max_bytes });
                            }
                            part.extend_from_slice(&chunk);
                        }
                        None => {
                            finished = true;
                            break;
                        }
                    }
                }
                if part.is_empty() {
                    break;
                }
                let number = parts.len() as i32 + 1;
                let uploaded = self
                    .client
                    .upload_part()
                    .bucket(&self.bucket)
                    .key(key.as_str())
                    .upload_id(&upload_id)
                    .part_number(number)
                    .body(S3Body::from(std::mem::take(&mut part)))
                    .send()
                    .await
                    .map_err(unavailable)?;
                parts.push(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(uploaded.e_tag().map(str::to_owned))
                        .build(),
                );
            }
            self.client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(key.as_str())
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map_err(unavailable)?;
            Ok(written)
        }
        .await;

        if result.is_err() {
            // Parts of an abandoned upload are billed and hold PHI: remove them now.
            if let Err(err) = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(key.as_str())
                .upload_id(&upload_id)
                .send()
                .await
            {
                tracing::error!(error = %err, "could not abort a multipart upload; the bucket's lifecycle rule will");
            }
        }
        result
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    /// A SigV4 presigned `PutObject`. Encryption comes from the bucket's default (SSE-KMS in
    /// `infra/`), so the client needs no encryption headers; the size is checked when the
    /// upload's ObjectCreated event arrives.
    async fn presign_upload(
        &self,
        key: &BlobKey,
        content_type: &str,
        expires_in: Duration,
    ) -> Result<Option<PresignedUpload>, BlobError> {
        let config = PresigningConfig::expires_in(expires_in).map_err(unavailable)?;
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .content_type(content_type)
            .presigned(config)
            .await
            .map_err(unavailable)?;
        let headers = request
            .headers()
            .filter(|(name, _)| !name.eq_ignore_ascii_case("host"))
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect();
        let expires_at =
            chrono::Utc::now() + chrono::Duration::from_std(expires_in).map_err(unavailable)?;
        Ok(Some(PresignedUpload {
            url: request.uri().to_owned(),
            headers,
            expires_at,
        }))
    }

    async fn put(
        &self,
        key: &BlobKey,
        mut body: ByteStream<'_>,
        max_bytes: u64,
    ) -> Result<u64, BlobError> {
        let mut first = Vec::new();
        while first.len() < PART_SIZE {
            match body.next().await {
                Some(chunk) => {
                    let chunk = chunk.map_err(BlobError::Body)?;
                    if (first.len() + chunk.len()) as u64 > max_bytes {
                        return Err(BlobError::TooLarge { limit: max_bytes });
                    }
                    first.extend_from_slice(&chunk);
                }
                None => {
                    let size = first.len() as u64;
                    self.put_single(key, first).await?;
                    return Ok(size);
                }
            }
        }
        self.put_multipart(key, first, &mut body, max_bytes).await
    }

    async fn get(&self, key: &BlobKey) -> Result<ByteStream<'static>, BlobError> {
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
        {
            Ok(object) => {
                Ok(ReaderStream::with_capacity(object.body.into_async_read(), 64 * 1024).boxed())
            }
            Err(err) => {
                let service = err.into_service_error();
                if service.is_no_such_key() {
                    Err(BlobError::NotFound)
                } else {
                    Err(unavailable(service))
                }
            }
        }
    }

    async fn delete(&self, key: &BlobKey) -> Result<(), BlobError> {
        // S3 deletes are idempotent: a missing key is a success.
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), BlobError> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

/// An S3 client from the process's AWS configuration. Path-style addressing for emulators.
pub fn client(shared: &aws_config::SdkConfig, force_path_style: bool) -> Client {
    let config = aws_sdk_s3::config::Builder::from(shared)
        .force_path_style(force_path_style)
        .build();
    Client::from_conf(config)
}
