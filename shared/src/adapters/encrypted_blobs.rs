//! A [`BlobStore`] that seals audio before it reaches the store underneath, for the local
//! file store when `ENABLE_FIELD_ENCRYPTION` is on (S3 encrypts with SSE-KMS instead). Bytes
//! are sealed and opened as they stream, 64 KiB at a time, so a large recording never sits
//! whole in memory, and never in plaintext on disk.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, stream};

use crate::{
    crypto::{BLOB_CHUNK, BlobOpener, BlobSealer, CryptoError, KeyRing, sealed_blob_len},
    domain::{BlobKey, UploadPlan},
    ports::{BlobError, BlobResealer, BlobStore, ByteStream},
};

pub struct EncryptedBlobStore {
    inner: Arc<dyn BlobStore>,
    keys: Arc<KeyRing>,
}

fn invalid_data(blob: &BlobKey, err: CryptoError) -> std::io::Error {
    // The blob key is an opaque id, never a client's file name: safe to name.
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("blob {blob}: {err}"),
    )
}

impl EncryptedBlobStore {
    pub fn new(inner: Arc<dyn BlobStore>, keys: Arc<KeyRing>) -> Self {
        Self { inner, keys }
    }

    /// The id of the key a stored blob is sealed with.
    pub async fn key_id(&self, key: &BlobKey) -> Result<String, BlobError> {
        self.sealing(key).await.map(|(id, _)| id)
    }

    /// The key id a stored blob names, and whether it is in the current form (a key of its
    /// own) rather than the first one.
    async fn sealing(&self, key: &BlobKey) -> Result<(String, bool), BlobError> {
        let mut sealed = self.inner.get(key).await?;
        let mut head = Vec::new();
        loop {
            match BlobOpener::key_id(&head) {
                Ok(Some((id, _))) => {
                    return Ok((id.to_owned(), BlobOpener::is_current_form(&head)));
                }
                Ok(None) => {}
                Err(err) => return Err(BlobError::Body(invalid_data(key, err))),
            }
            match sealed.next().await {
                Some(chunk) => head.extend_from_slice(&chunk.map_err(BlobError::Body)?),
                None => {
                    return Err(BlobError::Body(invalid_data(key, CryptoError::Malformed)));
                }
            }
        }
    }
}

#[async_trait]
impl BlobResealer for EncryptedBlobStore {
    /// The write replaces the old file atomically, so an interrupted rotation leaves either
    /// the old or the new sealing, never a mix.
    async fn reseal(&self, key: &BlobKey) -> Result<bool, BlobError> {
        // Sealed again when an older key sealed it, or the first form did (under the ring
        // key itself rather than a key of its own).
        let (id, current) = self.sealing(key).await?;
        if id == self.keys.primary_id() && current {
            return Ok(false);
        }
        let plaintext = self.get(key).await?;
        self.put(key, plaintext, u64::MAX).await?;
        Ok(true)
    }
}

/// Where sealing a stream has got to.
struct Sealing<'a> {
    body: ByteStream<'a>,
    sealer: BlobSealer,
    header: Option<Vec<u8>>,
    pending: BytesMut,
    plaintext_bytes: Arc<AtomicU64>,
    finished: bool,
}

fn seal_stream<'a>(
    keys: Arc<KeyRing>,
    key: &BlobKey,
    body: ByteStream<'a>,
    plaintext_bytes: Arc<AtomicU64>,
) -> ByteStream<'a> {
    let (sealer, header) = BlobSealer::new(keys, key.as_str());
    let state = Sealing {
        body,
        sealer,
        header: Some(header),
        pending: BytesMut::new(),
        plaintext_bytes,
        finished: false,
    };
    stream::unfold(state, |mut s| async move {
        if let Some(header) = s.header.take() {
            return Some((Ok(Bytes::from(header)), s));
        }
        if s.finished {
            return None;
        }
        // A chunk is sealed as "not last" only once a byte beyond it has arrived.
        while s.pending.len() <= BLOB_CHUNK {
            match s.body.next().await {
                Some(Ok(bytes)) => {
                    s.plaintext_bytes
                        .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    s.pending.extend_from_slice(&bytes);
                }
                Some(Err(err)) => {
                    s.finished = true;
                    return Some((Err(err), s));
                }
                None => {
                    s.finished = true;
                    let last = s.pending.split();
                    let sealed = s
                        .sealer
                        .seal(&last, true)
                        .map(Bytes::from)
                        .map_err(|e| std::io::Error::other(e.to_string()));
                    return Some((sealed, s));
                }
            }
        }
        let chunk = s.pending.split_to(BLOB_CHUNK);
        let sealed = s
            .sealer
            .seal(&chunk, false)
            .map(Bytes::from)
            .map_err(|e| std::io::Error::other(e.to_string()));
        Some((sealed, s))
    })
    .boxed()
}

/// Where opening a stream has got to.
struct Opening {
    sealed: ByteStream<'static>,
    keys: Arc<KeyRing>,
    key: BlobKey,
    opener: Option<BlobOpener>,
    pending: BytesMut,
    finished: bool,
}

fn open_stream(
    keys: Arc<KeyRing>,
    key: BlobKey,
    sealed: ByteStream<'static>,
) -> ByteStream<'static> {
    let state = Opening {
        sealed,
        keys,
        key,
        opener: None,
        pending: BytesMut::new(),
        finished: false,
    };
    stream::unfold(state, |mut s| async move {
        if s.finished {
            return None;
        }
        loop {
            if s.opener.is_none() {
                match BlobOpener::from_header(s.keys.clone(), s.key.as_str(), &s.pending) {
                    Ok(Some((opener, header_len))) => {
                        let _ = s.pending.split_to(header_len);
                        s.opener = Some(opener);
                    }
                    Ok(None) => {}
                    Err(err) => {
                        s.finished = true;
                        return Some((Err(invalid_data(&s.key, err)), s));
                    }
                }
            }
            if let Some(opener) = s.opener.as_mut()
                && s.pending.len() > BlobOpener::SEALED_CHUNK
            {
                let chunk = s.pending.split_to(BlobOpener::SEALED_CHUNK);
                let opened = opener
                    .open(&chunk, false)
                    .map(Bytes::from)
                    .map_err(|e| invalid_data(&s.key, e));
                s.finished = opened.is_err();
                return Some((opened, s));
            }
            match s.sealed.next().await {
                Some(Ok(bytes)) => s.pending.extend_from_slice(&bytes),
                Some(Err(err)) => {
                    s.finished = true;
                    return Some((Err(err), s));
                }
                None => {
                    s.finished = true;
                    let last = s.pending.split();
                    let opened = match s.opener.as_mut() {
                        Some(opener) => opener.open(&last, true),
                        None => Err(CryptoError::Malformed),
                    };
                    let opened = opened.map(Bytes::from).map_err(|e| invalid_data(&s.key, e));
                    return Some((opened, s));
                }
            }
        }
    })
    .boxed()
}

#[async_trait]
impl BlobStore for EncryptedBlobStore {
    async fn put(
        &self,
        key: &BlobKey,
        body: ByteStream<'_>,
        max_bytes: u64,
    ) -> Result<u64, BlobError> {
        let plaintext_bytes = Arc::new(AtomicU64::new(0));
        let sealed = seal_stream(self.keys.clone(), key, body, plaintext_bytes.clone());
        // The sealed size grows strictly with the plaintext size, so this limit admits
        // exactly the bodies of at most `max_bytes`.
        let sealed_limit = if max_bytes == u64::MAX {
            u64::MAX
        } else {
            sealed_blob_len(self.keys.primary_id(), max_bytes)
        };
        match self.inner.put(key, sealed, sealed_limit).await {
            Ok(_) => Ok(plaintext_bytes.load(Ordering::Relaxed)),
            Err(BlobError::TooLarge { .. }) => Err(BlobError::TooLarge { limit: max_bytes }),
            Err(err) => Err(err),
        }
    }

    async fn get(&self, key: &BlobKey) -> Result<ByteStream<'static>, BlobError> {
        let sealed = self.inner.get(key).await?;
        Ok(open_stream(self.keys.clone(), key.clone(), sealed))
    }

    async fn delete(&self, key: &BlobKey) -> Result<(), BlobError> {
        self.inner.delete(key).await
    }

    async fn discard_parts(&self, key: &BlobKey, plan: &UploadPlan) -> Result<(), BlobError> {
        self.inner.discard_parts(key, plan).await
    }

    async fn exists(&self, key: &BlobKey) -> Result<bool, BlobError> {
        self.inner.exists(key).await
    }

    async fn ping(&self) -> Result<(), BlobError> {
        self.inner.ping().await
    }
}

#[cfg(test)]
mod tests {
    use base64::{Engine as _, engine::general_purpose::STANDARD};

    use super::*;
    use crate::{adapters::DiskBlobStore, domain::TranscriptionId};

    fn ring(spec: &[(&str, u8)], primary: &str) -> Arc<KeyRing> {
        let spec: Vec<String> = spec
            .iter()
            .map(|(id, b)| format!("{id}:{}", STANDARD.encode([*b; 32])))
            .collect();
        Arc::new(KeyRing::parse(&spec.join(","), primary).unwrap())
    }

    fn body(data: &[u8], piece: usize) -> ByteStream<'static> {
        let pieces: Vec<Result<Bytes, std::io::Error>> = data
            .chunks(piece)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        stream::iter(pieces).boxed()
    }

    async fn read_all(stream: ByteStream<'static>) -> Result<Vec<u8>, std::io::Error> {
        let mut out = Vec::new();
        let mut stream = stream;
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn streams_round_trip_and_the_disk_holds_only_ciphertext() {
        let dir = tempfile::tempdir().unwrap();
        let disk: Arc<dyn BlobStore> = Arc::new(DiskBlobStore::new(dir.path()).unwrap());
        let store = EncryptedBlobStore::new(disk.clone(), ring(&[("k1", 1)], "k1"));
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
        for (n, piece) in [(0usize, 7usize), (1, BLOB_CHUNK), (2, 100_000), (3, 1)] {
            let len = if n == 3 { 0 } else { data.len() };
            let key = BlobKey::for_transcription(&TranscriptionId::new());
            let written = store
                .put(&key, body(&data[..len], piece), len as u64)
                .await
                .unwrap();
            assert_eq!(written, len as u64);
            assert_eq!(
                read_all(store.get(&key).await.unwrap()).await.unwrap(),
                &data[..len]
            );
            let raw = read_all(disk.get(&key).await.unwrap()).await.unwrap();
            assert_eq!(raw.len() as u64, sealed_blob_len("k1", len as u64));
            if len > 0 {
                assert!(!raw.windows(64).any(|w| w == &data[1000..1064]));
            }
        }
    }

    #[tokio::test]
    async fn limits_apply_to_the_plaintext_and_keep_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let disk: Arc<dyn BlobStore> = Arc::new(DiskBlobStore::new(dir.path()).unwrap());
        let store = EncryptedBlobStore::new(disk, ring(&[("k1", 1)], "k1"));
        let data = vec![7u8; 70_000];
        let key = BlobKey::for_transcription(&TranscriptionId::new());
        assert_eq!(
            store.put(&key, body(&data, 1000), 70_000).await.unwrap(),
            70_000
        );
        let key = BlobKey::for_transcription(&TranscriptionId::new());
        assert!(matches!(
            store.put(&key, body(&data, 1000), 69_999).await,
            Err(BlobError::TooLarge { limit: 69_999 })
        ));
        assert!(matches!(store.get(&key).await, Err(BlobError::NotFound)));
    }

    #[tokio::test]
    async fn tampered_or_unknown_key_blobs_are_read_errors_and_reseal_moves_them_to_the_primary() {
        let dir = tempfile::tempdir().unwrap();
        let disk: Arc<dyn BlobStore> = Arc::new(DiskBlobStore::new(dir.path()).unwrap());
        let old = EncryptedBlobStore::new(disk.clone(), ring(&[("k1", 1)], "k1"));
        let data = vec![42u8; 150_000];
        let key = BlobKey::for_transcription(&TranscriptionId::new());
        old.put(&key, body(&data, 4096), u64::MAX).await.unwrap();

        let rotated = EncryptedBlobStore::new(disk.clone(), ring(&[("k1", 1), ("k2", 2)], "k2"));
        assert_eq!(rotated.key_id(&key).await.unwrap(), "k1");
        assert!(rotated.reseal(&key).await.unwrap());
        assert!(!rotated.reseal(&key).await.unwrap(), "already under k2");
        assert_eq!(rotated.key_id(&key).await.unwrap(), "k2");
        let retired = EncryptedBlobStore::new(disk.clone(), ring(&[("k2", 2)], "k2"));
        assert_eq!(
            read_all(retired.get(&key).await.unwrap()).await.unwrap(),
            data
        );

        let without_k2 = EncryptedBlobStore::new(disk.clone(), ring(&[("k1", 1)], "k1"));
        let err = read_all(without_k2.get(&key).await.unwrap())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("k2"), "{err}");

        let mut raw = read_all(disk.get(&key).await.unwrap()).await.unwrap();
        let middle = raw.len() / 2;
        raw[middle] ^= 0x80;
        disk.put(&key, body(&raw, 9999), u64::MAX).await.unwrap();
        assert!(read_all(retired.get(&key).await.unwrap()).await.is_err());

        // A blob in the first form (the ring key itself, 56 random nonce bits) is sealed
        // again under a key of its own, even when the primary key sealed it.
        let first_form =
            crate::crypto::seal_blob_v1(&ring(&[("k2", 2)], "k2"), key.as_str(), &data);
        assert!(first_form.starts_with(b"MMTBLOB1"));
        disk.put(&key, body(&first_form, 9999), u64::MAX)
            .await
            .unwrap();
        assert_eq!(
            read_all(retired.get(&key).await.unwrap()).await.unwrap(),
            data
        );
        assert!(
            retired.reseal(&key).await.unwrap(),
            "moved to the current form"
        );
        assert!(!retired.reseal(&key).await.unwrap());
        let raw = read_all(disk.get(&key).await.unwrap()).await.unwrap();
        assert!(raw.starts_with(b"MMTBLOB2"));
        assert_eq!(
            read_all(retired.get(&key).await.unwrap()).await.unwrap(),
            data
        );

        // A file that was never sealed is refused, not passed through.
        disk.put(&key, body(b"RIFF plain audio", 5), u64::MAX)
            .await
            .unwrap();
        assert!(read_all(retired.get(&key).await.unwrap()).await.is_err());
    }
}
