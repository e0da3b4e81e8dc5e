//! One contract for every [`BlobStore`]: the disk store always, the S3 store against a real
//! AWS emulator (moto_server).

use std::sync::Arc;

use crate::emulator::Emulator;
use bytes::Bytes;
use futures::StreamExt;
use mmt_core::{
    adapters::{DiskBlobStore, encrypted_blobs::EncryptedBlobStore, s3::S3BlobStore},
    domain::{BlobKey, MIN_PART_BYTES, TranscriptionId, UploadPlan},
    ports::{BlobError, BlobStore, ByteStream},
};

use crate::helpers::spawn_app_customised;

fn body(chunks: Vec<Result<Bytes, std::io::Error>>) -> ByteStream<'static> {
    futures::stream::iter(chunks).boxed()
}

/// `total` bytes in 1 MiB chunks, with a recognisable pattern.
fn pattern(total: usize) -> (Vec<u8>, ByteStream<'static>) {
    let data: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
    let chunks = data
        .chunks(1024 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    (data, body(chunks))
}

async fn read_all(store: &dyn BlobStore, key: &BlobKey) -> Result<Vec<u8>, BlobError> {
    let mut stream = store.get(key).await?;
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.map_err(BlobError::Body)?);
    }
    Ok(out)
}

fn key() -> BlobKey {
    BlobKey::for_transcription(&TranscriptionId::new())
}

async fn meets_the_contract(store: &dyn BlobStore) {
    store.ping().await.expect("ping");

    // Small and large (a multipart upload on S3) bodies come back byte for byte.
    for size in [10, 20 * 1024 * 1024 + 17] {
        let k = key();
        let (data, stream) = pattern(size);
        assert_eq!(
            store.put(&k, stream, 64 * 1024 * 1024).await.unwrap(),
            size as u64
        );
        assert_eq!(read_all(store, &k).await.unwrap(), data, "size {size}");
        store.delete(&k).await.unwrap();
        assert!(matches!(store.get(&k).await, Err(BlobError::NotFound)));
        store
            .delete(&k)
            .await
            .expect("deleting a missing blob succeeds");
    }

    // Over the limit, small or large: refused, nothing kept.
    for size in [3 * 1024 * 1024, 20 * 1024 * 1024] {
        let k = key();
        let (_, stream) = pattern(size);
        let limit = size as u64 - 1;
        assert!(
            matches!(
                store.put(&k, stream, limit).await,
                Err(BlobError::TooLarge { .. })
            ),
            "size {size}"
        );
        assert!(
            matches!(store.get(&k).await, Err(BlobError::NotFound)),
            "size {size}"
        );
    }

    resumable_uploads_meet_the_contract(store).await;

    // A client body that fails mid-way (here after 9 MiB): refused, nothing kept.
    let k = key();
    let mut chunks: Vec<Result<Bytes, std::io::Error>> = (0..9)
        .map(|_| Ok(Bytes::from(vec![7u8; 1024 * 1024])))
        .collect();
    chunks.push(Err(std::io::Error::other("connection reset")));
    assert!(matches!(
        store.put(&k, body(chunks), 1 << 30).await,
        Err(BlobError::Body(_))
    ));
    assert!(matches!(store.get(&k).await, Err(BlobError::NotFound)));
}

/// Parts arrive in any order, again, or cut off; only whole parts count; completing joins
/// them in order; discarding leaves nothing.
async fn resumable_uploads_meet_the_contract(store: &dyn BlobStore) {
    let size = 2 * MIN_PART_BYTES as usize + 1000;
    let plan = UploadPlan::for_size(size as u64);
    assert_eq!(plan.part_count, 3);
    let (data, _) = pattern(size);
    let part = |number: u32| {
        let start = (number as usize - 1) * plan.part_size as usize;
        let end = start + plan.part_length(number) as usize;
        body(vec![Ok(Bytes::copy_from_slice(&data[start..end]))])
    };
    let k = key();
    store.begin_parts(&k, "audio/wav").await.unwrap();
    assert_eq!(
        store.received_parts(&k, &plan).await.unwrap(),
        Vec::<u32>::new()
    );
    store.put_part(&k, 3, part(3)).await.unwrap();
    let cut = body(vec![
        Ok(Bytes::copy_from_slice(
            &data[plan.part_size as usize..][..1024 * 1024],
        )),
        Err(std::io::Error::other("connection reset")),
    ]);
    assert!(matches!(
        store.put_part(&k, 2, cut).await,
        Err(BlobError::Body(_))
    ));
    store.put_part(&k, 1, part(1)).await.unwrap();
    assert_eq!(store.received_parts(&k, &plan).await.unwrap(), vec![1, 3]);
    // Sending a part again replaces it.
    store.put_part(&k, 2, part(2)).await.unwrap();
    store.put_part(&k, 3, part(3)).await.unwrap();
    assert_eq!(
        store.received_parts(&k, &plan).await.unwrap(),
        vec![1, 2, 3]
    );
    assert!(!store.exists(&k).await.unwrap());
    store.complete_parts(&k, &plan).await.unwrap();
    assert!(store.exists(&k).await.unwrap());
    assert!(
        read_all(store, &k).await.unwrap() == data,
        "parts joined in order"
    );
    store.delete(&k).await.unwrap();

    let k = key();
    store.begin_parts(&k, "audio/wav").await.unwrap();
    store.put_part(&k, 2, part(2)).await.unwrap();
    store.discard_parts(&k, &plan).await.unwrap();
    match store.received_parts(&k, &plan).await {
        Ok(received) => assert!(received.is_empty(), "{received:?}"),
        Err(err) => assert!(matches!(err, BlobError::NotFound), "{err}"),
    }
    assert!(!store.exists(&k).await.unwrap());
}

#[tokio::test]
async fn the_disk_store_meets_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    meets_the_contract(&DiskBlobStore::new(dir.path()).unwrap()).await;
    assert!(
        crate::helpers::files_under(dir.path()).is_empty(),
        "no temporary files left behind"
    );
}

#[tokio::test]
async fn the_sealing_store_meets_the_contract_and_keeps_parts_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let keys =
        mmt_core::crypto::KeyRing::parse("k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=", "k1")
            .unwrap();
    let disk: Arc<dyn BlobStore> = Arc::new(DiskBlobStore::new(dir.path()).unwrap());
    let sealed = EncryptedBlobStore::new(disk, Arc::new(keys));
    meets_the_contract(&sealed).await;

    // A part waiting on disk is ciphertext, like the finished object.
    let k = key();
    let plan = UploadPlan::for_size(1000);
    let (data, stream) = pattern(1000);
    sealed.begin_parts(&k, "audio/wav").await.unwrap();
    sealed.put_part(&k, 1, stream).await.unwrap();
    let on_disk = crate::helpers::files_under(dir.path());
    assert_eq!(on_disk.len(), 1, "{on_disk:?}");
    let raw = std::fs::read(&on_disk[0]).unwrap();
    assert!(!raw.windows(64).any(|w| data.windows(64).any(|d| d == w)));
    sealed.complete_parts(&k, &plan).await.unwrap();
    assert_eq!(read_all(&sealed, &k).await.unwrap(), data);
    sealed.delete(&k).await.unwrap();
    assert!(crate::helpers::files_under(dir.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_s3_store_meets_the_contract_on_the_emulator() {
    let aws = Emulator::start().await;
    aws.bucket("mmt-audio").await;
    let client = aws.s3.clone();
    meets_the_contract(&S3BlobStore::new(client.clone(), "mmt-audio", None)).await;

    // No multipart upload is left dangling by the refused ones.
    let pending = client
        .list_multipart_uploads()
        .bucket("mmt-audio")
        .send()
        .await
        .unwrap();
    assert!(pending.uploads().is_empty(), "{:?}", pending.uploads());

    // Objects are encrypted at rest: SSE-S3 by default, SSE-KMS with the configured key.
    let k = key();
    let store = S3BlobStore::new(client.clone(), "mmt-audio", None);
    store.put(&k, pattern(100).1, 1000).await.unwrap();
    let head = client
        .head_object()
        .bucket("mmt-audio")
        .key(k.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.server_side_encryption().map(|s| s.as_str()),
        Some("AES256")
    );
    let kms = S3BlobStore::new(client.clone(), "mmt-audio", Some("alias/mmt-audio".into()));
    let k = key();
    kms.put(&k, pattern(100).1, 1000).await.unwrap();
    let head = client
        .head_object()
        .bucket("mmt-audio")
        .key(k.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.server_side_encryption().map(|s| s.as_str()),
        Some("aws:kms")
    );
    assert_eq!(head.ssekms_key_id(), Some("alias/mmt-audio"));

    // A recording is written once (security review, item 8): a second write under the same
    // key is refused by S3 itself (If-None-Match: *), and the first stays as it was.
    let (first_bytes, first) = pattern(100);
    let k = key();
    store.put(&k, first, 1000).await.unwrap();
    let again = store.put(&k, pattern(300).1, 1000).await;
    assert!(matches!(again, Err(BlobError::AlreadyExists)), "{again:?}");
    let stored = client
        .get_object()
        .bucket("mmt-audio")
        .key(k.as_str())
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    assert_eq!(stored.as_ref(), first_bytes.as_slice());

    // A missing bucket is not ready.
    let nowhere = S3BlobStore::new(client, "no-such-bucket", None);
    assert!(matches!(
        nowhere.ping().await,
        Err(BlobError::Unavailable(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_runs_with_audio_in_s3() {
    let aws = Emulator::start().await;
    aws.bucket("mmt-pipeline").await;
    let client = aws.s3.clone();
    let store = Arc::new(S3BlobStore::new(client.clone(), "mmt-pipeline", None));
    let app = spawn_app_customised(&[], move |state| state.blobs = store).await;
    let token = app.guest_token().await;
    let id = app.upload_wav(&token).await;
    let listed = client
        .list_objects_v2()
        .bucket("mmt-pipeline")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.contents().len(), 1, "the upload streamed to S3");
    assert!(app.audio_files().is_empty(), "and not to the local disk");

    app.drain_jobs().await;
    let (_, record) = app
        .get_json(&token, &format!("/v1/transcriptions/{id}"))
        .await;
    assert_eq!(record["status"], "completed", "{record}");
    let body = app
        .client
        .get(app.url("/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(body.status(), 200);

    assert_eq!(
        app.delete(&token, &format!("/v1/transcriptions/{id}"))
            .await
            .status(),
        204
    );
    let listed = client
        .list_objects_v2()
        .bucket("mmt-pipeline")
        .send()
        .await
        .unwrap();
    assert!(listed.contents().is_empty(), "delete removed the object");
}
