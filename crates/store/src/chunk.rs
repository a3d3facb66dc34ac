//! Chunk identity and the self-describing blob encoding of one chunk.
//!
//! A chunk is a piece of the uncompressed dump stream cut by FastCDC. Its id is the
//! BLAKE3 hash of its bytes keyed with the vault's chunk-id key, so the same bytes have the
//! same id within a vault (dedup) but ids do not reveal content hashes across vaults.
//!
//! Each stored chunk (a *blob*) starts with an 8-byte header naming the blob format, what
//! the chunk is, its compression and its encryption, then the raw length. In an encrypted
//! vault (`crate::crypt`) the encryption byte is `Sealed` (AES-256-GCM, see `crate::crypt`) and the payload after the
//! header (and after a delta's base id) is sealed, with the header, base id and chunk id as
//! associated data: what stays readable is the chunk's kind, compression, lengths and, for a
//! delta, the keyed id of its base, none of which says anything of its content.
//!
//! A *delta* blob (compression `ZstdDelta`) is followed in its header by the 32-byte id of
//! its *base*: a chunk whose bytes zstd used as a raw-content prefix ("patch-from"). A row
//! updated in a 16 KiB chunk then costs tens of bytes instead of the whole chunk. A base is
//! always a full (non-delta) chunk, so decoding needs at most one extra read.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The keyed BLAKE3 id of a chunk's uncompressed bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkId(pub [u8; 32]);

impl ChunkId {
    /// Hashes `data` with the vault's key.
    pub fn of(key: &[u8; 32], data: &[u8]) -> Self {
        ChunkId(*blake3::keyed_hash(key, data).as_bytes())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(ChunkId(out))
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkId({})", &self.to_hex()[..16])
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for ChunkId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for ChunkId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ChunkId::from_hex(&s).ok_or_else(|| serde::de::Error::custom("not a 64-digit hex chunk id"))
    }
}

/// What a chunk holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ChunkKind {
    /// Bytes of the dump stream.
    Data = 0,
    /// A block of the recovery point's ordered chunk list (see `store::manifest`).
    ChunkList = 1,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Compression {
    None = 0,
    Zstd = 1,
    /// zstd with a base chunk as raw-content prefix; the base id follows the header.
    ZstdDelta = 2,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Encryption {
    None = 0,
    /// The payload is sealed with the vault's sealing key (`crate::crypt`).
    Sealed = 1,
}

/// Version of the blob header layout.
const BLOB_FORMAT: u8 = 1;
pub const BLOB_HEADER_LEN: usize = 8;

/// The largest chunk a vault can hold: FastCDC's largest maximum chunk size (16 MiB; a
/// vault's chunker is configured within it), far above a chunk-list block (about 704 KiB).
/// A blob whose header declares more is damaged or forged, and is refused before anything is
/// allocated for it: a lying header or a zstd bomb cannot make a reader allocate gigabytes.
pub const MAX_CHUNK_LEN: usize = 16 << 20;

/// The largest stored blob: a chunk kept uncompressed (compressed and delta blobs are only
/// kept when smaller) after its header, sealed.
pub const MAX_BLOB_LEN: usize = BLOB_HEADER_LEN + MAX_CHUNK_LEN + crate::crypt::SEAL_OVERHEAD;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob is {0} bytes, shorter than its header")]
    Truncated(usize),
    #[error("blob format {0} is newer than this pgvault understands; upgrade pgvault")]
    UnknownFormat(u8),
    #[error("blob header names unknown {what} {value}")]
    UnknownCode { what: &'static str, value: u8 },
    #[error("blob decompression failed: {0}")]
    Decompress(std::io::Error),
    #[error("blob decodes to {actual} bytes but its header says {expected}")]
    LengthMismatch { expected: u32, actual: usize },
    #[error("the pack holds only {actual} of the blob's {expected} bytes: the pack is truncated")]
    Short { expected: u64, actual: usize },
    #[error(
        "blob header declares {declared} bytes, more than the largest chunk a vault holds ({MAX_CHUNK_LEN}): the blob is corrupt"
    )]
    TooLarge { declared: u32 },
    #[error("chunk {expected} is corrupt: its bytes hash to {actual}")]
    HashMismatch { expected: ChunkId, actual: ChunkId },
    #[error("chunk {0} is stored as a delta and needs its base chunk to decode")]
    NeedsBase(ChunkId),
    #[error("chunk {0} is encrypted and the vault was opened without its key")]
    NoKey(ChunkId),
    #[error(
        "chunk {0} is stored unencrypted in an encrypted vault: refused (it was not written by pgvault)"
    )]
    NotSealed(ChunkId),
    #[error("chunk {id} failed authentication: {source}")]
    Sealed {
        id: ChunkId,
        source: crate::crypt::SealError,
    },
}

/// Seals a blob `encode_blob` or `encode_delta_blob` made, for an encrypted vault: the header
/// (its encryption byte set) and a delta's base id stay, the payload is sealed with them and
/// the chunk id as associated data.
pub fn seal_blob(sealer: &crate::crypt::Sealer, id: &ChunkId, mut plain: Vec<u8>) -> Vec<u8> {
    let clear = clear_len(&plain);
    if plain.len() < clear {
        return plain;
    }
    plain[3] = Encryption::Sealed as u8;
    let payload = plain.split_off(clear);
    let head = plain.clone();
    sealer.seal_into(
        crate::crypt::Role::Blob {
            header: &head,
            id: &id.0,
        },
        &payload,
        &mut plain,
    );
    plain
}

/// How many bytes at the front of a blob stay in clear: its header, and a delta's base id.
fn clear_len(blob: &[u8]) -> usize {
    if blob.get(2) == Some(&(Compression::ZstdDelta as u8)) {
        BLOB_HEADER_LEN + 32
    } else {
        BLOB_HEADER_LEN
    }
}

/// Compresses and frames one chunk. Data that zstd cannot shrink is stored as is, so
/// incompressible columns cost no decompression time on restore.
pub fn encode_blob(kind: ChunkKind, raw: &[u8], level: i32) -> Vec<u8> {
    let compressed = zstd::bulk::compress(raw, level)
        .ok()
        .filter(|c| c.len() < raw.len());
    let (compression, payload): (Compression, &[u8]) = match &compressed {
        Some(c) => (Compression::Zstd, c),
        None => (Compression::None, raw),
    };
    let mut out = Vec::with_capacity(BLOB_HEADER_LEN + payload.len());
    out.extend_from_slice(&[
        BLOB_FORMAT,
        kind as u8,
        compression as u8,
        Encryption::None as u8,
    ]);
    out.extend_from_slice(&(raw.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Compresses `raw` as a delta against `base` (the base chunk's bytes, id `base_id`).
/// Returns `None` when the delta is not worth it: less than half the size of the full blob
/// (`full_len`, what `encode_blob` made), since every delta costs an extra read on restore.
pub fn encode_delta_blob(
    kind: ChunkKind,
    raw: &[u8],
    base_id: ChunkId,
    base: &[u8],
    level: i32,
    full_len: usize,
) -> Option<Vec<u8>> {
    use zstd::zstd_safe::{CCtx, CParameter};
    let mut cctx = CCtx::create();
    cctx.set_parameter(CParameter::CompressionLevel(level))
        .ok()?;
    cctx.ref_prefix(base).ok()?;
    let mut payload: Vec<u8> = Vec::with_capacity(zstd::zstd_safe::compress_bound(raw.len()));
    cctx.compress2(&mut payload, raw).ok()?;
    let len = BLOB_HEADER_LEN + 32 + payload.len();
    if len * 2 > full_len {
        return None;
    }
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&[
        BLOB_FORMAT,
        kind as u8,
        Compression::ZstdDelta as u8,
        Encryption::None as u8,
    ]);
    out.extend_from_slice(&(raw.len() as u32).to_le_bytes());
    out.extend_from_slice(&base_id.0);
    out.extend_from_slice(&payload);
    Some(out)
}

/// The base a delta blob needs, or `None` for a full blob.
pub fn blob_base(blob: &[u8]) -> Option<ChunkId> {
    if blob.get(2) != Some(&(Compression::ZstdDelta as u8)) {
        return None;
    }
    let id = blob.get(BLOB_HEADER_LEN..BLOB_HEADER_LEN + 32)?;
    id.try_into().ok().map(ChunkId)
}

/// Decodes a blob and checks that its bytes hash to `expected`: every chunk is verified
/// on the way out of the vault. A delta blob needs [`decode_blob_with_base`].
pub fn decode_blob(
    key: &[u8; 32],
    sealer: Option<&crate::crypt::Sealer>,
    expected: ChunkId,
    blob: &[u8],
) -> Result<(ChunkKind, Vec<u8>), BlobError> {
    decode_blob_with_base(key, sealer, expected, blob, None)
}

/// [`decode_blob`] for a blob that may be a delta: `base` is the base chunk's bytes.
pub fn decode_blob_with_base(
    key: &[u8; 32],
    sealer: Option<&crate::crypt::Sealer>,
    expected: ChunkId,
    blob: &[u8],
    base: Option<&[u8]>,
) -> Result<(ChunkKind, Vec<u8>), BlobError> {
    if blob.len() < BLOB_HEADER_LEN {
        return Err(BlobError::Truncated(blob.len()));
    }
    if blob[0] != BLOB_FORMAT {
        return Err(BlobError::UnknownFormat(blob[0]));
    }
    let kind = match blob[1] {
        0 => ChunkKind::Data,
        1 => ChunkKind::ChunkList,
        v => {
            return Err(BlobError::UnknownCode {
                what: "chunk kind",
                value: v,
            });
        }
    };
    let raw_len = u32::from_le_bytes([blob[4], blob[5], blob[6], blob[7]]);
    // Every decoder below allocates at most the declared length, so that is bounded first.
    if raw_len as usize > MAX_CHUNK_LEN {
        return Err(BlobError::TooLarge { declared: raw_len });
    }
    // The payload, opened first in an encrypted vault; never read in clear there.
    let opened: Vec<u8>;
    let blob: &[u8] = match (blob[3], sealer) {
        (0, None) => blob,
        (0, Some(_)) => return Err(BlobError::NotSealed(expected)),
        (1, None) => return Err(BlobError::NoKey(expected)),
        (1, Some(sealer)) => {
            let clear = clear_len(blob);
            let (head, sealed) = blob.split_at(clear.min(blob.len()));
            let payload = sealer
                .open(
                    crate::crypt::Role::Blob {
                        header: head,
                        id: &expected.0,
                    },
                    sealed,
                )
                .map_err(|source| BlobError::Sealed {
                    id: expected,
                    source,
                })?;
            opened = [head, &payload].concat();
            &opened
        }
        (v, _) => {
            return Err(BlobError::UnknownCode {
                what: "encryption",
                value: v,
            });
        }
    };
    let payload = &blob[BLOB_HEADER_LEN..];
    let raw = match blob[2] {
        0 if payload.len() != raw_len as usize => {
            return Err(BlobError::LengthMismatch {
                expected: raw_len,
                actual: payload.len(),
            });
        }
        0 => payload.to_vec(),
        // `bulk::decompress` stops with an error at the capacity it is given.
        1 => zstd::bulk::decompress(payload, raw_len as usize).map_err(BlobError::Decompress)?,
        2 => {
            let base = base.ok_or(BlobError::NeedsBase(expected))?;
            let payload = payload.get(32..).ok_or(BlobError::Truncated(blob.len()))?;
            let zerr = |code: usize| {
                BlobError::Decompress(std::io::Error::other(zstd::zstd_safe::get_error_name(code)))
            };
            let mut dctx = zstd::zstd_safe::DCtx::create();
            dctx.ref_prefix(base).map_err(zerr)?;
            // zstd-safe writes into the spare capacity only: at most the declared length.
            let mut out: Vec<u8> = Vec::with_capacity(raw_len as usize);
            dctx.decompress(&mut out, payload).map_err(zerr)?;
            out
        }
        v => {
            return Err(BlobError::UnknownCode {
                what: "compression",
                value: v,
            });
        }
    };
    if raw.len() != raw_len as usize {
        return Err(BlobError::LengthMismatch {
            expected: raw_len,
            actual: raw.len(),
        });
    }
    let actual = ChunkId::of(key, &raw);
    if actual != expected {
        return Err(BlobError::HashMismatch { expected, actual });
    }
    Ok((kind, raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];

    #[test]
    fn compressible_data_round_trips_compressed() {
        let raw = b"abcabcabc".repeat(1000);
        let id = ChunkId::of(&KEY, &raw);
        let blob = encode_blob(ChunkKind::Data, &raw, 3);
        assert_eq!(blob[2], Compression::Zstd as u8);
        assert!(blob.len() < raw.len() / 10);
        let (kind, back) = decode_blob(&KEY, None, id, &blob).unwrap();
        assert_eq!(kind, ChunkKind::Data);
        assert_eq!(back, raw);
    }

    #[test]
    fn incompressible_data_is_stored_raw() {
        // A keyed hash stream is as close to random as we need.
        let raw: Vec<u8> = (0..256u32)
            .flat_map(|i| *blake3::hash(&i.to_le_bytes()).as_bytes())
            .collect();
        let blob = encode_blob(ChunkKind::ChunkList, &raw, 3);
        assert_eq!(blob[2], Compression::None as u8);
        let (kind, back) = decode_blob(&KEY, None, ChunkId::of(&KEY, &raw), &blob).unwrap();
        assert_eq!((kind, back), (ChunkKind::ChunkList, raw));
    }

    #[test]
    fn corruption_is_detected() {
        let raw = b"hello world, hello world".repeat(100);
        let id = ChunkId::of(&KEY, &raw);
        let mut blob = encode_blob(ChunkKind::Data, &raw, 3);
        let last = blob.len() - 1;
        blob[last] ^= 0xff;
        assert!(decode_blob(&KEY, None, id, &blob).is_err());
        let other = ChunkId::of(&KEY, b"other");
        let good = encode_blob(ChunkKind::Data, &raw, 3);
        assert!(matches!(
            decode_blob(&KEY, None, other, &good),
            Err(BlobError::HashMismatch { .. })
        ));
        assert!(matches!(
            decode_blob(&KEY, None, id, &good[..4]),
            Err(BlobError::Truncated(4))
        ));
    }

    #[test]
    fn a_small_change_is_stored_as_a_small_delta() {
        // Incompressible on its own (hex of hashes), so only the base makes it small.
        let base: Vec<u8> = (0..600u32)
            .flat_map(|i| blake3::hash(&i.to_le_bytes()).to_hex().as_bytes().to_vec())
            .collect();
        let mut changed = base.clone();
        changed[5000..5010].copy_from_slice(b"0123456789");
        changed.drain(20_000..20_100);
        let (base_id, id) = (ChunkId::of(&KEY, &base), ChunkId::of(&KEY, &changed));
        let full = encode_blob(ChunkKind::Data, &changed, 3);
        let delta =
            encode_delta_blob(ChunkKind::Data, &changed, base_id, &base, 3, full.len()).unwrap();
        assert!(delta.len() < 300, "delta is {} bytes", delta.len());
        assert_eq!(blob_base(&delta), Some(base_id));
        assert_eq!(blob_base(&full), None);
        assert!(matches!(
            decode_blob(&KEY, None, id, &delta),
            Err(BlobError::NeedsBase(_))
        ));
        assert_eq!(
            decode_blob_with_base(&KEY, None, id, &delta, Some(&base))
                .unwrap()
                .1,
            changed
        );
        // The wrong base decodes to the wrong bytes, which the hash check catches.
        let other = base.iter().rev().copied().collect::<Vec<u8>>();
        assert!(decode_blob_with_base(&KEY, None, id, &delta, Some(&other)).is_err());
        // Unrelated data gains nothing from a base, so no delta is made.
        assert!(
            encode_delta_blob(
                ChunkKind::Data,
                &changed,
                base_id,
                b"unrelated",
                3,
                full.len()
            )
            .is_none()
        );
    }

    /// A header with `compression` and a declared raw length, then `payload`.
    fn forged(compression: u8, raw_len: u32, payload: &[u8]) -> Vec<u8> {
        let mut blob = vec![BLOB_FORMAT, ChunkKind::Data as u8, compression, 0];
        blob.extend_from_slice(&raw_len.to_le_bytes());
        blob.extend_from_slice(payload);
        blob
    }

    #[test]
    fn lying_headers_and_zstd_bombs_are_refused_without_allocating_for_them() {
        let id = ChunkId::of(&KEY, b"whatever");
        // A header declaring 4 GiB is refused before any decoder runs.
        for compression in 0..3 {
            let blob = forged(compression, u32::MAX, &[0; 64]);
            assert!(matches!(
                decode_blob_with_base(&KEY, None, id, &blob, Some(b"base")),
                Err(BlobError::TooLarge { .. })
            ));
        }
        // 64 MiB of zeros compress to a few KiB; decoding stops at the declared 1 KiB, and at
        // the largest chunk when the header claims that.
        let bomb = zstd::bulk::compress(&vec![0u8; 64 << 20], 3).unwrap();
        assert!(bomb.len() < 1 << 20);
        for declared in [1024, MAX_CHUNK_LEN as u32] {
            assert!(matches!(
                decode_blob(&KEY, None, id, &forged(1, declared, &bomb)),
                Err(BlobError::Decompress(_))
            ));
        }
        // A stored (uncompressed) blob whose header disagrees with its payload.
        assert!(matches!(
            decode_blob(&KEY, None, id, &forged(0, 10, b"short")),
            Err(BlobError::LengthMismatch { .. })
        ));
        // A delta cut inside its base id: no base, and an error rather than a panic.
        let cut = forged(2, 8, &[1; 20]);
        assert_eq!(blob_base(&cut), None);
        assert!(decode_blob_with_base(&KEY, None, id, &cut, Some(b"base")).is_err());
        assert_eq!(blob_base(&[]), None);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Damaged blobs of every kind decode to an error or to exactly the original bytes.
        #[test]
        fn damaged_blobs_decode_to_an_error_or_the_original(
            kind in 0usize..3,
            damages in crate::testing::damages(),
        ) {
            let base: Vec<u8> = (0..4000u32).flat_map(|i| (i * 7).to_le_bytes()).collect();
            let mut raw = base.clone();
            raw[100..108].copy_from_slice(b"changed!");
            let id = ChunkId::of(&KEY, &raw);
            let full = encode_blob(ChunkKind::Data, &raw, 3);
            let blob = match kind {
                0 => full,
                1 => encode_blob(ChunkKind::Data, &blake3::hash(&raw).as_bytes().repeat(64), 3),
                _ => encode_delta_blob(
                    ChunkKind::Data, &raw, ChunkId::of(&KEY, &base), &base, 3, full.len(),
                ).unwrap(),
            };
            let expected = if kind == 1 { blake3::hash(&raw).as_bytes().repeat(64) } else { raw };
            let id = if kind == 1 { ChunkId::of(&KEY, &expected) } else { id };
            let bad = crate::testing::apply_all(&damages, &blob);
            let _ = blob_base(&bad);
            if let Ok((_, data)) = decode_blob_with_base(&KEY, None, id, &bad, Some(&base)) {
                proptest::prop_assert_eq!(data, expected);
            }
        }
    }

    #[test]
    fn ids_are_keyed() {
        assert_ne!(ChunkId::of(&[1; 32], b"x"), ChunkId::of(&[2; 32], b"x"));
        let id = ChunkId::of(&KEY, b"x");
        assert_eq!(ChunkId::from_hex(&id.to_hex()), Some(id));
    }
}
