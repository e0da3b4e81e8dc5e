//! Field encryption: AES-256-GCM with a key ring.
//!
//! A sealed field is `mmt:v1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>`. The associated
//! data binds it to its record and field (`mmt:v1:<record id>:<field>`), so a ciphertext copied
//! to another record or another field fails to open. A transcription record's fields are
//! sealed `mmt:v2:…`, whose associated data also names the record's owner
//! (`mmt:v2:<owner>:<record id>:<field>`): a record handed to another owner by rewriting its
//! owner column no longer opens. Opening never falls back: an unknown key
//! id, tampered bytes, a swapped field or a value that is not sealed is an error.

use aes_gcm::{
    Aes256Gcm, KeyInit,
    aead::{Aead, Payload},
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::RngCore;

const PREFIX: &str = "mmt:v1:";
const OWNED_PREFIX: &str = "mmt:v2:";
const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CryptoError {
    #[error("encrypted with key {0:?}, which is not in ENCRYPTION_KEYS")]
    UnknownKey(String),
    #[error(
        "the ciphertext does not authenticate (tampered, or moved from another record or field)"
    )]
    Tampered,
    #[error("the value is not encrypted, but field encryption is on")]
    NotSealed,
    #[error("the encrypted value is malformed")]
    Malformed,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    #[error("each entry must be <id>:<base64 of 32 bytes>")]
    BadEntry,
    #[error("key ids must be 1–32 letters, digits, - or _, and unique")]
    BadId,
    #[error("the primary key {0:?} is not in the ring")]
    NoPrimary(String),
}

/// The keys that can open sealed fields, and the one that seals new ones.
pub struct KeyRing {
    keys: Vec<RingKey>,
    primary: usize,
}

/// One key of the ring: its id, its cipher for fields, and its material, from which each
/// blob's own key is derived.
struct RingKey {
    id: String,
    cipher: Aes256Gcm,
    material: secrecy::SecretBox<[u8; 32]>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|k| k.id.as_str()).collect();
        f.debug_struct("KeyRing")
            .field("ids", &ids)
            .field("primary", &ids[self.primary])
            .finish()
    }
}

fn associated_data(record: &str, field: &str) -> Vec<u8> {
    format!("{PREFIX}{record}:{field}").into_bytes()
}

fn owned_associated_data(owner: &str, record: &str, field: &str) -> Vec<u8> {
    format!("{OWNED_PREFIX}{owner}:{record}:{field}").into_bytes()
}

impl KeyRing {
    /// `ENCRYPTION_KEYS=k1:<base64 32 bytes>,k2:...` and `PRIMARY_ENCRYPTION_KEY_ID`.
    pub fn parse(keys: &str, primary: &str) -> Result<Self, KeyRingError> {
        let mut ring = Vec::new();
        for entry in keys.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (id, material) = entry.split_once(':').ok_or(KeyRingError::BadEntry)?;
            let valid_id = (1..=32).contains(&id.len())
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !valid_id || ring.iter().any(|known: &RingKey| known.id == id) {
                return Err(KeyRingError::BadId);
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(material.trim())
                .or_else(|_| URL_SAFE_NO_PAD.decode(material.trim()))
                .map_err(|_| KeyRingError::BadEntry)?;
            if bytes.len() != 32 {
                return Err(KeyRingError::BadEntry);
            }
            let cipher = Aes256Gcm::new_from_slice(&bytes).map_err(|_| KeyRingError::BadEntry)?;
            let material: [u8; 32] = bytes.try_into().map_err(|_| KeyRingError::BadEntry)?;
            ring.push(RingKey {
                id: id.to_owned(),
                cipher,
                material: secrecy::SecretBox::new(Box::new(material)),
            });
        }
        let primary = ring
            .iter()
            .position(|k| k.id == primary)
            .ok_or_else(|| KeyRingError::NoPrimary(primary.to_owned()))?;
        Ok(Self {
            keys: ring,
            primary,
        })
    }

    pub fn primary_id(&self) -> &str {
        &self.keys[self.primary].id
    }

    /// Encrypts `plaintext` for `field` of `record` under the primary key.
    pub fn seal(&self, record: &str, field: &str, plaintext: &[u8]) -> String {
        self.seal_with(PREFIX, &associated_data(record, field), plaintext)
    }

    /// Encrypts `plaintext` for `field` of `owner`'s `record` under the primary key.
    pub fn seal_owned(&self, owner: &str, record: &str, field: &str, plaintext: &[u8]) -> String {
        self.seal_with(
            OWNED_PREFIX,
            &owned_associated_data(owner, record, field),
            plaintext,
        )
    }

    fn seal_with(&self, prefix: &str, aad: &[u8], plaintext: &[u8]) -> String {
        let RingKey { id, cipher, .. } = &self.keys[self.primary];
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let ciphertext = cipher
            .encrypt(
                &aes_gcm::Nonce::try_from(&nonce[..]).expect("12-byte nonce"),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ciphertext);
        format!("{prefix}{id}:{}", URL_SAFE_NO_PAD.encode(out))
    }

    pub fn is_sealed(value: &str) -> bool {
        value.starts_with(PREFIX) || value.starts_with(OWNED_PREFIX)
    }

    /// Whether a sealed value is bound to its owner (`mmt:v2:`).
    pub fn is_owned(value: &str) -> bool {
        value.starts_with(OWNED_PREFIX)
    }

    /// The key id a sealed value names.
    pub fn key_id_of(value: &str) -> Option<&str> {
        value
            .strip_prefix(PREFIX)
            .or_else(|| value.strip_prefix(OWNED_PREFIX))?
            .split_once(':')
            .map(|(id, _)| id)
    }

    /// Opens a field of `owner`'s `record`: sealed bound to the owner (`mmt:v2:`), or sealed
    /// before owners were bound (`mmt:v1:`, record and field only).
    pub fn open_owned(
        &self,
        owner: &str,
        record: &str,
        field: &str,
        sealed: &str,
    ) -> Result<Vec<u8>, CryptoError> {
        match sealed.strip_prefix(OWNED_PREFIX) {
            Some(rest) => self.open_body(rest, &owned_associated_data(owner, record, field)),
            None => self.open(record, field, sealed),
        }
    }

    pub fn open(&self, record: &str, field: &str, sealed: &str) -> Result<Vec<u8>, CryptoError> {
        let rest = sealed.strip_prefix(PREFIX).ok_or(CryptoError::NotSealed)?;
        self.open_body(rest, &associated_data(record, field))
    }

    fn open_body(&self, rest: &str, aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let (id, body) = rest.split_once(':').ok_or(CryptoError::Malformed)?;
        let cipher = &self
            .keys
            .iter()
            .find(|known| known.id == id)
            .ok_or_else(|| CryptoError::UnknownKey(id.to_owned()))?
            .cipher;
        let bytes = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| CryptoError::Malformed)?;
        if bytes.len() < NONCE_LEN + 16 {
            return Err(CryptoError::Malformed);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        cipher
            .decrypt(
                &aes_gcm::Nonce::try_from(nonce).map_err(|_| CryptoError::Malformed)?,
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map_err(|_| CryptoError::Tampered)
    }
}

/// Seals `value` when a key ring is configured, else keeps it as is: for stores that hold a
/// field sealed or plain depending on `ENABLE_FIELD_ENCRYPTION`.
pub fn seal_if_keyed(keys: Option<&KeyRing>, row: &str, field: &str, value: &str) -> String {
    match keys {
        Some(keys) => keys.seal(row, field, value.as_bytes()),
        None => value.to_owned(),
    }
}

/// The reverse of [`seal_if_keyed`].
pub fn open_if_keyed(
    keys: Option<&KeyRing>,
    row: &str,
    field: &str,
    stored: &str,
) -> Result<String, CryptoError> {
    match keys {
        Some(keys) => {
            String::from_utf8(keys.open(row, field, stored)?).map_err(|_| CryptoError::Malformed)
        }
        None => Ok(stored.to_owned()),
    }
}

/// Blobs (audio files) are sealed in chunks so they stream: `MMTBLOB2`, the key id (one
/// length byte, then the id), a random 32-byte salt, then chunks of at most [`BLOB_CHUNK`]
/// plaintext bytes, each with its own tag. Each blob has a key of its own, derived from the
/// ring's key with HKDF-SHA256 (the salt, and the blob's name as info): no two blobs share a
/// key, so the chunk nonce need not be random — it is the chunk's index and a final-chunk
/// flag, so chunks cannot be reordered, dropped or the file cut short unnoticed. The
/// associated data names the blob, so a file moved under another name fails to open.
///
/// Blobs sealed before (`MMTBLOB1`: the ring's key itself, a random 7-byte nonce prefix) still
/// open; key rotation seals them again in the current form.
pub const BLOB_CHUNK: usize = 64 * 1024;
const BLOB_MAGIC_V1: &[u8] = b"MMTBLOB1";
const BLOB_MAGIC: &[u8] = b"MMTBLOB2";
const BLOB_NONCE_PREFIX_V1: usize = 7;
const BLOB_SALT: usize = 32;
const TAG_LEN: usize = 16;

fn blob_nonce(prefix: &[u8; BLOB_NONCE_PREFIX_V1], index: u32, last: bool) -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    nonce[..BLOB_NONCE_PREFIX_V1].copy_from_slice(prefix);
    nonce[BLOB_NONCE_PREFIX_V1..NONCE_LEN - 1].copy_from_slice(&index.to_be_bytes());
    nonce[NONCE_LEN - 1] = u8::from(last);
    nonce
}

fn blob_aad(blob: &str) -> Vec<u8> {
    format!("mmt:blob:v1:{blob}").into_bytes()
}

/// The key of one blob: HKDF-SHA256 of the ring key, with the blob's salt and name.
fn blob_key(material: &[u8; 32], salt: &[u8], blob: &str) -> Aes256Gcm {
    struct KeyLen;
    impl aws_lc_rs::hkdf::KeyType for KeyLen {
        fn len(&self) -> usize {
            32
        }
    }
    let info = format!("mmt:blob:v2:{blob}");
    let info = [info.as_bytes()];
    let mut key = [0u8; 32];
    aws_lc_rs::hkdf::Salt::new(aws_lc_rs::hkdf::HKDF_SHA256, salt)
        .extract(material)
        .expand(&info, KeyLen)
        .and_then(|okm| okm.fill(&mut key))
        .expect("HKDF-SHA256 gives 32 bytes");
    let cipher = Aes256Gcm::new_from_slice(&key).expect("a 32-byte key");
    key.fill(0);
    cipher
}

/// The sealed size of `plaintext_len` bytes under key `key_id`: what a size limit on
/// plaintext becomes once sealed.
pub fn sealed_blob_len(key_id: &str, plaintext_len: u64) -> u64 {
    let chunks = plaintext_len.div_ceil(BLOB_CHUNK as u64).max(1);
    blob_header_len(key_id) as u64 + plaintext_len + chunks * TAG_LEN as u64
}

fn blob_header_len(key_id: &str) -> usize {
    BLOB_MAGIC.len() + 1 + key_id.len() + BLOB_SALT
}

/// Seals one blob, chunk by chunk, under a key derived for it from the primary key.
pub struct BlobSealer {
    cipher: Aes256Gcm,
    index: u32,
    aad: Vec<u8>,
}

impl BlobSealer {
    /// The sealer and the header to write before the first chunk.
    pub fn new(keys: std::sync::Arc<KeyRing>, blob: &str) -> (Self, Vec<u8>) {
        let mut salt = [0u8; BLOB_SALT];
        rand::rng().fill_bytes(&mut salt);
        let primary = &keys.keys[keys.primary];
        let id = primary.id.as_bytes();
        let mut header = BLOB_MAGIC.to_vec();
        header.push(u8::try_from(id.len()).expect("key ids are at most 32 bytes"));
        header.extend_from_slice(id);
        header.extend_from_slice(&salt);
        let sealer = Self {
            cipher: blob_key(
                secrecy::ExposeSecret::expose_secret(&primary.material),
                &salt,
                blob,
            ),
            index: 0,
            aad: blob_aad(blob),
        };
        (sealer, header)
    }

    /// Seals the next chunk (at most [`BLOB_CHUNK`] bytes); `last` marks the final one.
    pub fn seal(&mut self, chunk: &[u8], last: bool) -> Result<Vec<u8>, CryptoError> {
        // The key is this blob's own: a zero prefix is unique with it.
        let nonce = blob_nonce(&[0; BLOB_NONCE_PREFIX_V1], self.index, last);
        self.index = self.index.checked_add(1).ok_or(CryptoError::Malformed)?;
        self.cipher
            .encrypt(
                &aes_gcm::Nonce::try_from(&nonce[..]).expect("12-byte nonce"),
                Payload {
                    msg: chunk,
                    aad: &self.aad,
                },
            )
            .map_err(|_| CryptoError::Malformed)
    }
}

/// Opens a blob sealed by [`BlobSealer`] (or in the earlier `MMTBLOB1` form), chunk by chunk.
pub struct BlobOpener {
    cipher: Aes256Gcm,
    prefix: [u8; BLOB_NONCE_PREFIX_V1],
    index: u32,
    aad: Vec<u8>,
}

impl BlobOpener {
    /// The key id a sealed blob names, from its first bytes: `Ok(None)` when more bytes are
    /// needed, `Err(NotSealed)` when they are not a sealed blob.
    pub fn key_id(head: &[u8]) -> Result<Option<(&str, usize)>, CryptoError> {
        let magic = BLOB_MAGIC.len();
        if head.len() < magic + 1 {
            return if BLOB_MAGIC.starts_with(head) || BLOB_MAGIC_V1.starts_with(head) {
                Ok(None)
            } else {
                Err(CryptoError::NotSealed)
            };
        }
        let tail = match &head[..magic] {
            m if m == BLOB_MAGIC => BLOB_SALT,
            m if m == BLOB_MAGIC_V1 => BLOB_NONCE_PREFIX_V1,
            _ => return Err(CryptoError::NotSealed),
        };
        let id_len = usize::from(head[magic]);
        let header_len = magic + 1 + id_len + tail;
        if head.len() < header_len {
            return Ok(None);
        }
        let id = std::str::from_utf8(&head[magic + 1..magic + 1 + id_len])
            .map_err(|_| CryptoError::Malformed)?;
        Ok(Some((id, header_len)))
    }

    /// Whether a sealed blob's first bytes are of the current form (a key of its own).
    pub fn is_current_form(head: &[u8]) -> bool {
        head.starts_with(BLOB_MAGIC)
    }

    /// Reads the header at the start of `head`: the opener and the header's length, or
    /// `Ok(None)` when more bytes are needed.
    pub fn from_header(
        keys: std::sync::Arc<KeyRing>,
        blob: &str,
        head: &[u8],
    ) -> Result<Option<(Self, usize)>, CryptoError> {
        let Some((id, header_len)) = Self::key_id(head)? else {
            return Ok(None);
        };
        let key = keys
            .keys
            .iter()
            .find(|known| known.id == id)
            .ok_or_else(|| CryptoError::UnknownKey(id.to_owned()))?;
        let opener = if head.starts_with(BLOB_MAGIC) {
            let salt = &head[header_len - BLOB_SALT..header_len];
            Self {
                cipher: blob_key(
                    secrecy::ExposeSecret::expose_secret(&key.material),
                    salt,
                    blob,
                ),
                prefix: [0; BLOB_NONCE_PREFIX_V1],
                index: 0,
                aad: blob_aad(blob),
            }
        } else {
            let mut prefix = [0u8; BLOB_NONCE_PREFIX_V1];
            prefix.copy_from_slice(&head[header_len - BLOB_NONCE_PREFIX_V1..header_len]);
            Self {
                cipher: key.cipher.clone(),
                prefix,
                index: 0,
                aad: blob_aad(blob),
            }
        };
        Ok(Some((opener, header_len)))
    }

    /// The sealed size of a full chunk: read this many bytes (or to the end) per chunk.
    pub const SEALED_CHUNK: usize = BLOB_CHUNK + TAG_LEN;

    pub fn open(&mut self, sealed_chunk: &[u8], last: bool) -> Result<Vec<u8>, CryptoError> {
        let nonce = blob_nonce(&self.prefix, self.index, last);
        self.index = self.index.checked_add(1).ok_or(CryptoError::Malformed)?;
        self.cipher
            .decrypt(
                &aes_gcm::Nonce::try_from(&nonce[..]).expect("12-byte nonce"),
                Payload {
                    msg: sealed_chunk,
                    aad: &self.aad,
                },
            )
            .map_err(|_| CryptoError::Tampered)
    }
}

#[cfg(test)]
/// A blob as the first sealer wrote it (`MMTBLOB1`: the ring key itself, a random nonce
/// prefix), built here from that format's definition.
pub(crate) fn seal_blob_v1(keys: &KeyRing, blob: &str, data: &[u8]) -> Vec<u8> {
    let key = &keys.keys[keys.primary];
    let prefix = [7u8; BLOB_NONCE_PREFIX_V1];
    let mut out = BLOB_MAGIC_V1.to_vec();
    out.push(key.id.len() as u8);
    out.extend_from_slice(key.id.as_bytes());
    out.extend_from_slice(&prefix);
    let chunks: Vec<&[u8]> = data.chunks(BLOB_CHUNK).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let nonce = blob_nonce(&prefix, i as u32, i + 1 == chunks.len());
        let payload = Payload {
            msg: chunk,
            aad: &blob_aad(blob),
        };
        let nonce = aes_gcm::Nonce::try_from(&nonce[..]).unwrap();
        out.extend(key.cipher.encrypt(&nonce, payload).unwrap());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> String {
        base64::engine::general_purpose::STANDARD.encode([byte; 32])
    }

    fn ring(keys: &[(&str, u8)], primary: &str) -> KeyRing {
        let spec: Vec<String> = keys
            .iter()
            .map(|(id, b)| format!("{id}:{}", key(*b)))
            .collect();
        KeyRing::parse(&spec.join(","), primary).unwrap()
    }

    #[test]
    fn seals_and_opens_bound_to_record_and_field() {
        let r = ring(&[("k1", 1)], "k1");
        let sealed = r.seal("rec-1", "prompt", b"metformin 500 mg");
        assert!(sealed.starts_with("mmt:v1:k1:"));
        assert!(!sealed.contains("metformin"));
        assert_eq!(
            r.open("rec-1", "prompt", &sealed).unwrap(),
            b"metformin 500 mg"
        );
        assert_ne!(
            sealed,
            r.seal("rec-1", "prompt", b"metformin 500 mg"),
            "fresh nonce each time"
        );
        // Moved to another record or another field: refused.
        assert_eq!(
            r.open("rec-2", "prompt", &sealed),
            Err(CryptoError::Tampered)
        );
        assert_eq!(
            r.open("rec-1", "file_name", &sealed),
            Err(CryptoError::Tampered)
        );
    }

    #[test]
    fn every_failure_is_an_error_never_plaintext() {
        let r = ring(&[("k1", 1)], "k1");
        let sealed = r.seal("rec", "f", b"secret words");
        // Wrong key under the same id.
        let impostor = ring(&[("k1", 9)], "k1");
        assert_eq!(
            impostor.open("rec", "f", &sealed),
            Err(CryptoError::Tampered)
        );
        // Unknown key id.
        let other = ring(&[("k2", 2)], "k2");
        assert_eq!(
            other.open("rec", "f", &sealed),
            Err(CryptoError::UnknownKey("k1".into()))
        );
        // A flipped bit anywhere in the body.
        let mut bytes = URL_SAFE_NO_PAD
            .decode(sealed.rsplit(':').next().unwrap())
            .unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let tampered = format!("mmt:v1:k1:{}", URL_SAFE_NO_PAD.encode(&bytes));
        assert_eq!(r.open("rec", "f", &tampered), Err(CryptoError::Tampered));
        // Plaintext and junk.
        assert_eq!(
            r.open("rec", "f", "secret words"),
            Err(CryptoError::NotSealed)
        );
        assert_eq!(
            r.open("rec", "f", "mmt:v1:k1:!!"),
            Err(CryptoError::Malformed)
        );
        assert_eq!(
            r.open("rec", "f", "mmt:v1:k1:AAAA"),
            Err(CryptoError::Malformed)
        );
    }

    #[test]
    fn rotation_keeps_old_fields_readable_while_the_old_key_is_in_the_ring() {
        let before = ring(&[("k1", 1)], "k1");
        let old = before.seal("rec", "f", b"written under k1");
        let rotated = ring(&[("k1", 1), ("k2", 2)], "k2");
        assert_eq!(rotated.open("rec", "f", &old).unwrap(), b"written under k1");
        let new = rotated.seal("rec", "f", b"written under k2");
        assert_eq!(KeyRing::key_id_of(&new), Some("k2"));
        let retired = ring(&[("k2", 2)], "k2");
        assert_eq!(retired.open("rec", "f", &new).unwrap(), b"written under k2");
        assert_eq!(
            retired.open("rec", "f", &old),
            Err(CryptoError::UnknownKey("k1".into()))
        );
    }

    #[test]
    fn key_rings_are_validated() {
        assert!(matches!(
            KeyRing::parse("k1:short", "k1"),
            Err(KeyRingError::BadEntry)
        ));
        assert!(matches!(
            KeyRing::parse(&format!("k1:{}", key(1)), "k2"),
            Err(KeyRingError::NoPrimary(_))
        ));
        assert!(matches!(
            KeyRing::parse(&format!("k1:{},k1:{}", key(1), key(2)), "k1"),
            Err(KeyRingError::BadId)
        ));
        assert!(matches!(
            KeyRing::parse(&format!("bad id:{}", key(1)), "bad id"),
            Err(KeyRingError::BadId)
        ));
        let debug = format!("{:?}", ring(&[("k1", 1)], "k1"));
        assert!(!debug.contains(&key(1)), "{debug}");
    }

    fn seal_blob(keys: &std::sync::Arc<KeyRing>, blob: &str, data: &[u8]) -> Vec<u8> {
        let (mut sealer, mut out) = BlobSealer::new(keys.clone(), blob);
        let chunks: Vec<&[u8]> = if data.is_empty() {
            vec![&[]]
        } else {
            data.chunks(BLOB_CHUNK).collect()
        };
        for (i, chunk) in chunks.iter().enumerate() {
            out.extend(sealer.seal(chunk, i + 1 == chunks.len()).unwrap());
        }
        out
    }

    fn open_blob(
        keys: &std::sync::Arc<KeyRing>,
        blob: &str,
        sealed: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let (mut opener, header) =
            BlobOpener::from_header(keys.clone(), blob, sealed)?.ok_or(CryptoError::Malformed)?;
        let body = &sealed[header..];
        let chunks: Vec<&[u8]> = body.chunks(BlobOpener::SEALED_CHUNK).collect();
        let mut out = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            out.extend(opener.open(chunk, i + 1 == chunks.len())?);
        }
        Ok(out)
    }

    #[test]
    fn blobs_seal_in_chunks_and_refuse_truncation_reordering_and_moving() {
        let keys = std::sync::Arc::new(ring(&[("k1", 1)], "k1"));
        let data: Vec<u8> = (0..(2 * BLOB_CHUNK + 100))
            .map(|i| (i % 251) as u8)
            .collect();
        let sealed = seal_blob(&keys, "audio/a", &data);
        assert_eq!(
            sealed.len() as u64,
            sealed_blob_len("k1", data.len() as u64)
        );
        assert_eq!(open_blob(&keys, "audio/a", &sealed).unwrap(), data);
        assert_eq!(
            BlobOpener::key_id(&sealed).unwrap().map(|(id, _)| id),
            Some("k1")
        );
        let empty = seal_blob(&keys, "audio/e", b"");
        assert_eq!(empty.len() as u64, sealed_blob_len("k1", 0));
        assert_eq!(open_blob(&keys, "audio/e", &empty).unwrap(), b"");

        // Moved to another blob name.
        assert_eq!(
            open_blob(&keys, "audio/b", &sealed),
            Err(CryptoError::Tampered)
        );
        // Cut at a chunk boundary: the new last chunk was not sealed as the last.
        let header = blob_header_len("k1");
        let cut = &sealed[..header + 2 * BlobOpener::SEALED_CHUNK];
        assert_eq!(open_blob(&keys, "audio/a", cut), Err(CryptoError::Tampered));
        // Two chunks swapped.
        let mut swapped = sealed[..header].to_vec();
        swapped.extend_from_slice(
            &sealed[header + BlobOpener::SEALED_CHUNK..header + 2 * BlobOpener::SEALED_CHUNK],
        );
        swapped.extend_from_slice(&sealed[header..header + BlobOpener::SEALED_CHUNK]);
        swapped.extend_from_slice(&sealed[header + 2 * BlobOpener::SEALED_CHUNK..]);
        assert_eq!(
            open_blob(&keys, "audio/a", &swapped),
            Err(CryptoError::Tampered)
        );
        // A flipped bit.
        let mut flipped = sealed.clone();
        flipped[header + 10] ^= 1;
        assert_eq!(
            open_blob(&keys, "audio/a", &flipped),
            Err(CryptoError::Tampered)
        );
        // Unknown key, and bytes that were never sealed.
        let other = std::sync::Arc::new(ring(&[("k2", 2)], "k2"));
        assert_eq!(
            open_blob(&other, "audio/a", &sealed).err(),
            Some(CryptoError::UnknownKey("k1".into()))
        );
        assert_eq!(
            BlobOpener::key_id(b"RIFF....WAVEfmt ").err(),
            Some(CryptoError::NotSealed)
        );
    }

    /// Security review, item 11: each blob is sealed under a key of its own (HKDF-SHA256 of
    /// the ring key with a random 32-byte salt and the blob's name), not under the ring key
    /// with 56 random nonce bits; blobs sealed the old way still open.
    #[test]
    fn each_blob_has_a_key_of_its_own_and_old_blobs_still_open() {
        let keys = std::sync::Arc::new(ring(&[("k1", 1)], "k1"));
        let data: Vec<u8> = (0..(BLOB_CHUNK + 10)).map(|i| (i % 7) as u8).collect();
        let first = seal_blob(&keys, "audio/a", &data);
        let second = seal_blob(&keys, "audio/a", &data);
        assert!(first.starts_with(b"MMTBLOB2\x02k1"));
        let header = blob_header_len("k1");
        assert_eq!(header, 8 + 1 + 2 + 32);
        assert_ne!(
            first[header - 32..header],
            second[header - 32..header],
            "fresh salt"
        );
        assert_ne!(first[header..], second[header..], "and so a fresh key");
        // The salt is part of the key: changed, nothing opens.
        let mut resalted = first.clone();
        resalted[header - 1] ^= 1;
        assert_eq!(
            open_blob(&keys, "audio/a", &resalted),
            Err(CryptoError::Tampered)
        );
        // The ring key alone (the old scheme) does not open a new blob.
        let mut as_v1 = BLOB_MAGIC_V1.to_vec();
        as_v1.extend_from_slice(&first[8..header - 32 + BLOB_NONCE_PREFIX_V1]);
        as_v1.extend_from_slice(&first[header..]);
        assert!(open_blob(&keys, "audio/a", &as_v1).is_err());
        // A blob sealed before this change opens as it did.
        let old = seal_blob_v1(&keys, "audio/old", &data);
        assert_eq!(open_blob(&keys, "audio/old", &old).unwrap(), data);
        assert_eq!(
            BlobOpener::key_id(&old).unwrap().map(|(id, _)| id),
            Some("k1")
        );
    }

    #[test]
    fn owned_fields_are_bound_to_their_owner_and_older_fields_still_open() {
        let r = ring(&[("k1", 1)], "k1");
        let sealed = r.seal_owned("guest:a", "rec-1", "prompt", b"metformin");
        assert!(sealed.starts_with("mmt:v2:k1:") && KeyRing::is_owned(&sealed));
        assert_eq!(KeyRing::key_id_of(&sealed), Some("k1"));
        assert_eq!(
            r.open_owned("guest:a", "rec-1", "prompt", &sealed).unwrap(),
            b"metformin"
        );
        assert_eq!(
            r.open_owned("guest:b", "rec-1", "prompt", &sealed),
            Err(CryptoError::Tampered),
            "handed to another owner"
        );
        assert_eq!(
            r.open("rec-1", "prompt", &sealed),
            Err(CryptoError::NotSealed)
        );
        // A field sealed before owners were bound opens for its record, whoever owns it.
        let older = r.seal("rec-1", "prompt", b"metformin");
        assert!(!KeyRing::is_owned(&older));
        assert_eq!(
            r.open_owned("guest:a", "rec-1", "prompt", &older).unwrap(),
            b"metformin"
        );
    }
}
