//! Recovery-point manifests and chunk lists.
//!
//! A manifest is written last, after every pack and index file it depends on is durable,
//! so a recovery point exists if and only if its manifest exists. It names the dump
//! stream's chunks indirectly: the ordered list of chunk references is itself cut into
//! *chunk-list blocks* stored as ordinary chunks (kind `ChunkList`), and the manifest lists
//! only the blocks. That keeps the manifest small and the backup's memory bounded whatever
//! the database size, and unchanged parts of the list dedup like data.
//!
//! The manifest file carries a BLAKE3 checksum of its own bytes:
//! `{"blake3": "<hex>", "manifest": { ... }}`, where the hash covers the exact bytes of the
//! `manifest` value as stored.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::chunk::ChunkId;
use crate::postgres::archive::ArchiveSummary;
use crate::postgres::contents::DatabaseContents;

pub const MANIFEST_FORMAT: u32 = 1;

/// References per chunk-list block: 16384 x 44 bytes, about 704 KiB.
pub const REFS_PER_LIST_BLOCK: usize = 16384;
const REF_LEN: usize = 44;

/// One entry of the ordered chunk list: a chunk, its uncompressed length, and a fingerprint
/// of its first bytes (see [`head_fingerprint`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkRef {
    pub id: ChunkId,
    pub length: u32,
    pub head: u64,
}

/// A fingerprint of a chunk's first 64 bytes. Chunk boundaries are content-defined, so a
/// chunk whose middle changed (a row updated or removed) still starts where, and with the
/// bytes, its predecessor did: the fingerprint pairs the two for delta compression.
pub fn head_fingerprint(chunk: &[u8]) -> u64 {
    let head = &chunk[..chunk.len().min(64)];
    u64::from_le_bytes(
        blake3::hash(head).as_bytes()[..8]
            .try_into()
            .expect("8 bytes"),
    )
}

pub fn encode_chunk_list(refs: &[ChunkRef]) -> Vec<u8> {
    let mut out = Vec::with_capacity(refs.len() * REF_LEN);
    for r in refs {
        out.extend_from_slice(&r.id.0);
        out.extend_from_slice(&r.length.to_le_bytes());
        out.extend_from_slice(&r.head.to_le_bytes());
    }
    out
}

/// Feeds one data chunk into a stream's `chunks_blake3` digest.
pub fn digest_chunk(digest: &mut blake3::Hasher, r: &ChunkRef) {
    digest.update(&r.id.0);
    digest.update(&r.length.to_le_bytes());
}

pub fn decode_chunk_list(bytes: &[u8]) -> Option<Vec<ChunkRef>> {
    if !bytes.len().is_multiple_of(REF_LEN) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(REF_LEN)
            .map(|b| ChunkRef {
                id: ChunkId(b[..32].try_into().expect("32 bytes")),
                length: u32::from_le_bytes(b[32..36].try_into().expect("4 bytes")),
                head: u64::from_le_bytes(b[36..44].try_into().expect("8 bytes")),
            })
            .collect(),
    )
}

/// How the stream was cut; recorded so a reader can tell how a vault was written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChunkerParams {
    pub algorithm: String,
    pub min_size: u32,
    pub avg_size: u32,
    pub max_size: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamInfo {
    /// Length of the uncompressed `pg_dump` stream.
    pub length: u64,
    /// BLAKE3 of the ordered (chunk id, length) sequence of the stream's data chunks.
    /// Every chunk is verified against its id when read, so this digest of the order is
    /// what makes the whole stream verified; it costs nothing on the hot path, unlike a
    /// second hash of every byte.
    pub chunks_blake3: String,
    pub chunk_count: u64,
    /// The chunk-list blocks, in order.
    pub chunk_lists: Vec<ChunkId>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PostgresInfo {
    pub server_version: String,
    pub pg_dump_version: String,
    pub database_size: i64,
    pub username_used: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatasourceInfo {
    pub resource_id: String,
    pub server: String,
    pub port: u16,
    pub database: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupStats {
    pub bytes_read: u64,
    pub bytes_stored: u64,
    pub new_chunks: u64,
    pub duration_ms: u64,
}

/// What one recovery point is and where its bytes are.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub format_version: u32,
    pub recovery_point_id: String,
    pub backup_instance_name: String,
    pub recovery_point_time: DateTime<Utc>,
    pub policy_name: String,
    pub policy_rule_name: String,
    pub retention_tag_name: String,
    /// When the recovery point leaves the tier holding this manifest: the vault tier's from
    /// the retention rule's lifecycle, the archive tier's from the archive lifecycle, a
    /// rehydrated copy's at the end of its rehydration.
    pub expiry_time: Option<DateTime<Utc>>,
    /// Set on a vault-tier copy made by `recovery-point rehydrate` from the archive tier: the
    /// copy is kept until then (whatever the policy says of the vault tier), then removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rehydration_expiry_time: Option<DateTime<Utc>>,
    pub job_id: String,
    pub datasource: DatasourceInfo,
    pub postgres: PostgresInfo,
    pub chunker: ChunkerParams,
    pub stream: StreamInfo,
    /// The archive's header and table of contents with each table's data extent in the
    /// stream; `None` when the stream could not be scanned (the backup is still complete).
    pub archive: Option<ArchiveSummary>,
    pub stats: BackupStats,
    /// What the dump holds (schemas, extensions, tables and row counts), read in the very
    /// snapshot `pg_dump` dumped, for restore drills to compare with. `None` in manifests
    /// written before pgvault recorded it, or when reading it failed (the backup is still
    /// complete). Optional and additive, so the manifest format stays 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contents: Option<DatabaseContents>,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("manifest checksum does not match its contents: the manifest is corrupt")]
    Checksum,
    #[error("manifest format {0} is newer than this pgvault understands; upgrade pgvault")]
    Format(u32),
}

#[derive(Serialize)]
struct EnvelopeOut<'a> {
    blake3: String,
    manifest: &'a RawValue,
}

#[derive(Deserialize)]
struct EnvelopeIn<'a> {
    blake3: String,
    #[serde(borrow)]
    manifest: &'a RawValue,
}

impl Manifest {
    pub fn to_bytes(&self) -> Vec<u8> {
        let body = serde_json::to_string_pretty(self).expect("manifest serializes");
        let raw = RawValue::from_string(body).expect("serde_json output is valid JSON");
        let hash = blake3::hash(raw.get().as_bytes()).to_hex().to_string();
        serde_json::to_vec(&EnvelopeOut {
            blake3: hash,
            manifest: &raw,
        })
        .expect("envelope serializes")
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ManifestError> {
        let env: EnvelopeIn<'_> = serde_json::from_slice(bytes)?;
        if blake3::hash(env.manifest.get().as_bytes())
            .to_hex()
            .as_str()
            != env.blake3
        {
            return Err(ManifestError::Checksum);
        }
        let m: Manifest = serde_json::from_str(env.manifest.get())?;
        if m.format_version > MANIFEST_FORMAT {
            return Err(ManifestError::Format(m.format_version));
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_list_round_trip() {
        let refs: Vec<ChunkRef> = (0..100u32)
            .map(|i| ChunkRef {
                id: ChunkId::of(&[0; 32], &i.to_le_bytes()),
                length: i * 7,
                head: u64::from(i) << 40 | 5,
            })
            .collect();
        assert_eq!(decode_chunk_list(&encode_chunk_list(&refs)).unwrap(), refs);
        assert!(decode_chunk_list(&[0; 43]).is_none());
    }

    fn sample() -> Manifest {
        let stream = StreamInfo {
            length: 1234,
            chunks_blake3: blake3::hash(b"x").to_hex().to_string(),
            chunk_count: 2,
            chunk_lists: vec![ChunkId([5; 32])],
        };
        crate::store::testing::manifest("db1", "rp1", stream, None)
    }

    #[test]
    fn damaged_manifests_are_errors() {
        let bytes = sample().to_bytes();
        assert_eq!(Manifest::from_bytes(&bytes).unwrap(), sample());
        for bad in [
            &b""[..],
            &bytes[..bytes.len() / 2],
            &bytes[..bytes.len() - 1],
            b"{\"blake3\": \"00\", \"manifest\": {}}",
            b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
        ] {
            assert!(Manifest::from_bytes(bad).is_err());
        }
        // A changed value under the old checksum.
        let changed = String::from_utf8(bytes.clone())
            .unwrap()
            .replace("\"length\": 1234", "\"length\": 9999");
        assert!(matches!(
            Manifest::from_bytes(changed.as_bytes()),
            Err(ManifestError::Checksum)
        ));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// A damaged manifest is an error or, where the damage missed what the checksum
        /// covers (trailing bytes a JSON parser skips), the very manifest written.
        #[test]
        fn damaged_manifests_read_as_errors_or_the_original(
            damages in crate::store::testing::damages(),
        ) {
            let bad = crate::store::testing::apply_all(&damages, &sample().to_bytes());
            if let Ok(m) = Manifest::from_bytes(&bad) {
                proptest::prop_assert_eq!(m, sample());
            }
        }

        /// Any bytes decode as a chunk list or not at all, and a decoded list re-encodes to
        /// the same bytes.
        #[test]
        fn chunk_list_blocks_decode_or_refuse(
            damages in crate::store::testing::damages(),
        ) {
            let refs: Vec<ChunkRef> = (0..20u32)
                .map(|i| ChunkRef { id: ChunkId([i as u8; 32]), length: i, head: u64::from(i) })
                .collect();
            let bad = crate::store::testing::apply_all(&damages, &encode_chunk_list(&refs));
            if let Some(decoded) = decode_chunk_list(&bad) {
                proptest::prop_assert_eq!(encode_chunk_list(&decoded), bad);
            }
        }
    }
}
