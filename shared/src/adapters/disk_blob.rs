//! [`BlobStore`] on a local directory.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio_util::io::ReaderStream;

use crate::{
    domain::{BlobKey, PARTS_SUFFIX, UploadPlan},
    ports::{BlobError, BlobStore, ByteStream},
};

/// Audio files under one directory. A write lands in a temporary file first and is renamed
/// into place only when complete, so a reader never sees half a file and a failed or
/// oversized upload leaves nothing behind.
#[derive(Debug, Clone)]
pub struct DiskBlobStore {
    root: PathBuf,
}

impl DiskBlobStore {
    pub fn new(root: impl Into<PathBuf>) -> std::io::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_for(&self, key: &BlobKey) -> PathBuf {
        // Keys are validated `audio/<uuid>` values, so joining cannot escape the root.
        self.root.join(key.as_str())
    }

    async fn remove_parts(&self, key: &BlobKey) -> Result<(), BlobError> {
        let mut parts = self.path_for(key).into_os_string();
        parts.push(PARTS_SUFFIX);
        match tokio::fs::remove_dir_all(parts).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }
}

fn unavailable(err: std::io::Error) -> BlobError {
    BlobError::Unavailable(err.into())
}

#[async_trait]
impl BlobStore for DiskBlobStore {
    async fn put(
        &self,
        key: &BlobKey,
        mut body: ByteStream<'_>,
        max_bytes: u64,
    ) -> Result<u64, BlobError> {
        let target = self.path_for(key);
        let dir = target.parent().expect("blob keys have a directory part");
        tokio::fs::create_dir_all(dir).await.map_err(unavailable)?;
        let temp = dir.join(format!(".{}.part", uuid::Uuid::new_v4().simple()));

        let write = async {
            let mut file = tokio::fs::File::create(&temp).await.map_err(unavailable)?;
            let mut written: u64 = 0;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(BlobError::Body)?;
                written += chunk.len() as u64;
                if written > max_bytes {
                    return Err(BlobError::TooLarge { limit: max_bytes });
                }
                file.write_all(&chunk).await.map_err(unavailable)?;
            }
            file.sync_all().await.map_err(unavailable)?;
            Ok(written)
        };
        match write.await {
            Ok(written) => {
                tokio::fs::rename(&temp, &target)
                    .await
                    .map_err(unavailable)?;
                Ok(written)
            }
            Err(err) => {
                let _ = tokio::fs::remove_file(&temp).await;
                Err(err)
            }
        }
    }

    async fn get(&self, key: &BlobKey) -> Result<ByteStream<'static>, BlobError> {
        match tokio::fs::File::open(self.path_for(key)).await {
            Ok(file) => Ok(ReaderStream::with_capacity(file, 64 * 1024).boxed()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(BlobError::NotFound),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Also removes what arrived of an unfinished resumable upload of `key`.
    async fn delete(&self, key: &BlobKey) -> Result<(), BlobError> {
        match tokio::fs::remove_file(self.path_for(key)).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(unavailable(e)),
        }
        self.remove_parts(key).await
    }

    async fn discard_parts(&self, key: &BlobKey, _plan: &UploadPlan) -> Result<(), BlobError> {
        self.remove_parts(key).await
    }

    async fn exists(&self, key: &BlobKey) -> Result<bool, BlobError> {
        tokio::fs::try_exists(self.path_for(key))
            .await
            .map_err(unavailable)
    }

    async fn ping(&self) -> Result<(), BlobError> {
        // Writable, not merely present: a read-only volume must fail readiness.
        let probe = self
            .root
            .join(format!(".ready-{}", uuid::Uuid::new_v4().simple()));
        tokio::fs::write(&probe, b"ok").await.map_err(unavailable)?;
        tokio::fs::remove_file(&probe).await.map_err(unavailable)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::domain::TranscriptionId;

    fn body(chunks: Vec<Result<Bytes, std::io::Error>>) -> ByteStream<'static> {
        futures::stream::iter(chunks).boxed()
    }

    fn files_in(dir: &Path) -> usize {
        walk(dir).len()
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
        out
    }

    #[tokio::test]
    async fn round_trip_then_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskBlobStore::new(dir.path()).unwrap();
        let key = BlobKey::for_transcription(&TranscriptionId::new());
        let n = store
            .put(
                &key,
                body(vec![
                    Ok(Bytes::from_static(b"RIFF")),
                    Ok(Bytes::from_static(b"data")),
                ]),
                100,
            )
            .await
            .unwrap();
        assert_eq!(n, 8);
        let read: Vec<u8> = store
            .get(&key)
            .await
            .unwrap()
            .map(|c| c.unwrap().to_vec())
            .concat()
            .await;
        assert_eq!(read, b"RIFFdata");
        store.delete(&key).await.unwrap();
        store.delete(&key).await.unwrap();
        assert!(matches!(store.get(&key).await, Err(BlobError::NotFound)));
    }

    #[tokio::test]
    async fn oversized_or_broken_bodies_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskBlobStore::new(dir.path()).unwrap();
        let key = BlobKey::for_transcription(&TranscriptionId::new());
        let too_big = store
            .put(
                &key,
                body(vec![
                    Ok(Bytes::from(vec![0u8; 60])),
                    Ok(Bytes::from(vec![0u8; 60])),
                ]),
                100,
            )
            .await;
        assert!(matches!(too_big, Err(BlobError::TooLarge { limit: 100 })));
        let broken = store
            .put(
                &key,
                body(vec![
                    Ok(Bytes::from_static(b"abc")),
                    Err(std::io::Error::other("reset")),
                ]),
                100,
            )
            .await;
        assert!(matches!(broken, Err(BlobError::Body(_))));
        assert_eq!(files_in(dir.path()), 0);
    }
}
