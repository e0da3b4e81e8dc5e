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
    domain::{BlobKey, UploadPlan},
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
            // A recording is written once: never over one already stored.
            .if_none_match("*")
            .send()
            .await
            .map_err(refused_overwrite)?;
        Ok(())
    }

    /// The multipart uploads in progress for `key` (ListMultipartUploads by prefix): the
    /// upload id is never stored, S3 remembers it.
    async fn upload_ids(&self, key: &BlobKey) -> Result<Vec<String>, BlobError> {
        let listed = self
            .client
            .list_multipart_uploads()
            .bucket(&self.bucket)
            .prefix(key.as_str())
            .send()
            .await
            .map_err(unavailable)?;
        let mut uploads: Vec<_> = listed
            .uploads()
            .iter()
            .filter(|upload| upload.key() == Some(key.as_str()))
            .filter_map(|upload| {
                Some((upload.initiated().copied(), upload.upload_id()?.to_owned()))
            })
            .collect();
        uploads.sort_by_key(|(initiated, _)| *initiated);
        Ok(uploads.into_iter().map(|(_, id)| id).collect())
    }

    /// The resumable upload of `key` (the first begun); `NotFound` when it was completed,
    /// aborted or expired.
    async fn open_upload_id(&self, key: &BlobKey) -> Result<String, BlobError> {
        self.upload_ids(key)
            .await?
            .into_iter()
            .next()
            .ok_or(BlobError::NotFound)
    }

    /// Every part that arrived: (number, size, ETag), all pages.
    async fn list_parts(
        &self,
        key: &BlobKey,
        upload_id: &str,
    ) -> Result<Vec<(u32, u64, Option<String>)>, BlobError> {
        let mut parts = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .client
                .list_parts()
                .bucket(&self.bucket)
                .key(key.as_str())
                .upload_id(upload_id)
                .set_part_number_marker(marker.take())
                .send()
                .await
                .map_err(|err| {
                    let service = err.into_service_error();
                    if service.to_string().contains("NoSuchUpload") {
                        BlobError::NotFound
                    } else {
                        unavailable(service)
                    }
                })?;
            for part in page.parts() {
                let (Some(number), Some(size)) = (part.part_number(), part.size()) else {
                    continue;
                };
                let (Ok(number), Ok(size)) = (u32::try_from(number), u64::try_from(size)) else {
                    continue;
                };
                parts.push((number, size, part.e_tag().map(str::to_owned)));
            }
            match (page.is_truncated(), page.next_part_number_marker()) {
                (Some(true), Some(next)) => marker = Some(next.to_owned()),
                _ => return Ok(parts),
            }
        }
    }

    /// Joins `parts` (ascending) into the object.
    async fn complete_multipart(
        &self,
        key: &BlobKey,
        upload_id: &str,
        parts: Vec<CompletedPart>,
    ) -> Result<(), BlobError> {
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key.as_str())
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .if_none_match("*")
            .send()
            .await
            .map_err(refused_overwrite)?;
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

        let result = self
            .send_parts(key, &upload_id, first, body, max_bytes)
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
                tracing::error!(error.cause_chain = %crate::telemetry::error_chain(&err), "could not abort a multipart upload; the bucket's lifecycle rule will");
            }
        }
        result
    }

    /// Sends the body as the parts of upload `upload_id` and completes it: the size written.
    async fn send_parts(
        &self,
        key: &BlobKey,
        upload_id: &str,
        first: Vec<u8>,
        body: &mut ByteStream<'_>,
        max_bytes: u64,
    ) -> Result<u64, BlobError> {
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
                .upload_id(upload_id)
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
        self.complete_multipart(key, upload_id, parts).await?;
        Ok(written)
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    /// An S3 multipart upload, encrypted as every object is.
    async fn begin_parts(&self, key: &BlobKey, content_type: &str) -> Result<(), BlobError> {
        self.client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key.as_str())
            .content_type(content_type)
            .server_side_encryption(self.encryption())
            .set_ssekms_key_id(self.kms_key_id.clone())
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// A SigV4 presigned `UploadPart` with `Content-Length` among the signed headers: S3
    /// refuses a body of any other length.
    async fn presign_part(
        &self,
        key: &BlobKey,
        number: u32,
        length: u64,
        expires_in: Duration,
    ) -> Result<Option<PresignedUpload>, BlobError> {
        let upload_id = self.open_upload_id(key).await?;
        let config = PresigningConfig::expires_in(expires_in).map_err(unavailable)?;
        let request = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key.as_str())
            .upload_id(upload_id)
            .part_number(part_number(number)?)
            .content_length(i64::try_from(length).map_err(unavailable)?)
            .presigned(config)
            .await
            .map_err(unavailable)?;
        Ok(Some(presigned(&request, expires_in)?))
    }

    /// A part sent through the API rather than to a presigned URL: held in memory (one part,
    /// bounded by the caller) because `UploadPart` needs its length up front.
    async fn put_part(
        &self,
        key: &BlobKey,
        number: u32,
        mut body: ByteStream<'_>,
    ) -> Result<(), BlobError> {
        let upload_id = self.open_upload_id(key).await?;
        let mut part = Vec::new();
        while let Some(chunk) = body.next().await {
            part.extend_from_slice(&chunk.map_err(BlobError::Body)?);
        }
        self.client
            .upload_part()
            .bucket(&self.bucket)
            .key(key.as_str())
            .upload_id(upload_id)
            .part_number(part_number(number)?)
            .body(S3Body::from(part))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Parts of the right length only: one of another length (never from the presigned URLs,
    /// which bind it) is as good as missing and is sent again.
    async fn received_parts(
        &self,
        key: &BlobKey,
        plan: &UploadPlan,
    ) -> Result<Vec<u32>, BlobError> {
        let upload_id = self.open_upload_id(key).await?;
        let mut received: Vec<u32> = self
            .list_parts(key, &upload_id)
            .await?
            .into_iter()
            .filter(|(number, size, _)| {
                plan.contains(*number) && *size == plan.part_length(*number)
            })
            .map(|(number, _, _)| number)
            .collect();
        received.sort_unstable();
        Ok(received)
    }

    async fn complete_parts(&self, key: &BlobKey, plan: &UploadPlan) -> Result<(), BlobError> {
        let upload_id = self.open_upload_id(key).await?;
        let mut parts: Vec<CompletedPart> = self
            .list_parts(key, &upload_id)
            .await?
            .into_iter()
            .filter(|(number, _, _)| plan.contains(*number))
            .map(|(number, _, e_tag)| {
                CompletedPart::builder()
                    .part_number(number as i32)
                    .set_e_tag(e_tag)
                    .build()
            })
            .collect();
        parts.sort_by_key(|part| part.part_number());
        self.complete_multipart(key, &upload_id, parts).await
    }

    async fn discard_parts(&self, key: &BlobKey, _plan: &UploadPlan) -> Result<(), BlobError> {
        for upload_id in self.upload_ids(key).await? {
            self.client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(key.as_str())
                .upload_id(upload_id)
                .send()
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    async fn exists(&self, key: &BlobKey) -> Result<bool, BlobError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(err) => {
                let service = err.into_service_error();
                if service.is_not_found() {
                    Ok(false)
                } else {
                    Err(unavailable(service))
                }
            }
        }
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

/// S3 answers 412 Precondition Failed when `If-None-Match: *` finds the key taken.
fn refused_overwrite<E>(
    err: aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> BlobError
where
    E: std::error::Error + Send + Sync + 'static,
{
    let precondition_failed = err
        .raw_response()
        .is_some_and(|response| response.status().as_u16() == 412);
    if precondition_failed {
        BlobError::AlreadyExists
    } else {
        unavailable(err)
    }
}

/// What a client needs to send a presigned request: the URL and the headers that were signed
/// (but `Host`, which its HTTP client sets).
fn presigned(
    request: &aws_sdk_s3::presigning::PresignedRequest,
    expires_in: Duration,
) -> Result<PresignedUpload, BlobError> {
    let headers = request
        .headers()
        .filter(|(name, _)| !name.eq_ignore_ascii_case("host"))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    let expires_at =
        chrono::Utc::now() + chrono::Duration::from_std(expires_in).map_err(unavailable)?;
    Ok(PresignedUpload {
        url: request.uri().to_owned(),
        headers,
        expires_at,
    })
}

fn part_number(number: u32) -> Result<i32, BlobError> {
    i32::try_from(number).map_err(unavailable)
}

/// An S3 client from the process's AWS configuration. Path-style addressing for emulators.
pub fn client(shared: &aws_config::SdkConfig, force_path_style: bool) -> Client {
    let config = aws_sdk_s3::config::Builder::from(shared)
        .force_path_style(force_path_style)
        .build();
    Client::from_conf(config)
}
