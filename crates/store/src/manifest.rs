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
//!
//! Format 2 (this one) keeps the manifest small, because every backup writes one whole
//! even when it stores no new data: the JSON is compact, and the two parts that grow with the
//! database's schema, the archive's table of contents (`archive`) and what the dump holds
//! (`contents`), are each stored as one string, the standard base64 of a zstd frame of their
//! compact JSON ([`packed`]). A small database's manifest went from 66 to 178 KB of
//! pretty-printed JSON to a few KB. Format 1 (pretty-printed, both parts inline JSON objects)
//! is read as ever; the in-memory [`Manifest`] is the same for both.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::chunk::ChunkId;
use super::observe::Recorded;

/// The manifest format written. Readers take every format up to this one: 1 (pretty JSON,
/// `archive` and `contents` inline) and 2 (compact JSON, both packed, see [`packed`]).
pub const MANIFEST_FORMAT: u32 = 2;

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
    /// What the stream's format recorded (`archive`: for a pg_dump stream, the archive's
    /// header and table of contents with each table's data extent in the stream); `None` when
    /// the stream could not be scanned (the backup is still complete). The store keeps it and
    /// does not read it (see [`super::observe`]). Stored packed (format 2) or inline (format
    /// 1): see [`packed`].
    #[serde(with = "packed")]
    pub archive: Option<Recorded>,
    pub stats: BackupStats,
    /// What the dump holds (schemas, extensions, tables and row counts), read in the very
    /// snapshot `pg_dump` dumped, for restore drills to compare with. `None` in manifests
    /// written before pgvault recorded it, or when reading it failed (the backup is still
    /// complete). Optional and additive (it came within format 1). Stored packed (format 2)
    /// or inline (format 1): see [`packed`].
    /// Recorded by the engine, kept and not read by the store, like `archive`.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "packed")]
    pub contents: Option<Recorded>,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("manifest checksum does not match its contents: the manifest is corrupt")]
    Checksum,
    #[error("manifest format {0} is newer than this pgvault understands; upgrade pgvault")]
    Format(u32),
    #[error("manifest is encrypted and the vault was opened without its key")]
    NoKey,
    #[error(
        "manifest is not encrypted, in an encrypted vault: refused (it was not written by pgvault)"
    )]
    NotSealed,
    #[error("manifest failed authentication: {0}")]
    Sealed(crate::crypt::SealError),
}

/// The first bytes of a sealed manifest file (an encrypted vault's), then `seal(bytes)`.
const SEALED_MANIFEST_MAGIC: &[u8; 8] = b"PGVMANE1";

/// A manifest file's bytes as stored: sealed in an encrypted vault.
pub fn seal_manifest(sealer: Option<&crate::crypt::Sealer>, bytes: Vec<u8>) -> Vec<u8> {
    crate::crypt::seal_framed(
        sealer,
        SEALED_MANIFEST_MAGIC,
        crate::crypt::Role::Manifest,
        bytes,
    )
}

/// What [`seal_manifest`] adds to a manifest file in a vault with (or without) a sealer.
pub fn sealed_manifest_overhead(sealer: Option<&crate::crypt::Sealer>) -> u64 {
    sealer.map_or(0, |_| {
        (SEALED_MANIFEST_MAGIC.len() + crate::crypt::SEAL_OVERHEAD) as u64
    })
}

/// Reads a stored manifest file: opened first in an encrypted vault, never read in clear there.
pub fn open_manifest(
    sealer: Option<&crate::crypt::Sealer>,
    stored: &[u8],
) -> Result<Manifest, ManifestError> {
    use crate::crypt::FrameError;
    let plain = crate::crypt::open_framed(
        sealer,
        SEALED_MANIFEST_MAGIC,
        crate::crypt::Role::Manifest,
        stored,
    )
    .map_err(|e| match e {
        FrameError::NoKey => ManifestError::NoKey,
        FrameError::NotSealed => ManifestError::NotSealed,
        FrameError::Sealed(e) => ManifestError::Sealed(e),
    })?;
    Manifest::from_bytes(&plain)
}

/// The packed form of a manifest part that grows with the database's schema (format 2):
/// a JSON string holding the standard base64 of one zstd frame of the part's compact JSON.
/// Reading also takes the part as an inline JSON object, as format 1 wrote it.
///
/// A packed part is covered by the manifest's checksum like the rest, but one that is
/// damaged all the same (a manifest rewritten with a matching checksum, a bug) is an error
/// naming the part, never a panic, and its decompressed size is bounded by [`PACKED_MAX`].
pub mod packed {
    use super::Recorded;
    use base64::Engine as _;
    use serde::de::Error as _;
    use serde::ser::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::io::Read;

    /// zstd level for packed parts: they are written once per backup and small (a table of
    /// contents of a few thousand entries is about 1 MB of JSON), so a high level costs
    /// milliseconds and saves bytes in every manifest.
    const LEVEL: i32 = 15;

    /// The largest decompressed part read: a table of contents of about a million entries.
    /// A corrupt or hostile frame cannot make a reader allocate more.
    pub const PACKED_MAX: u64 = 512 << 20;

    pub fn pack<T: Serialize>(value: &T) -> Result<String, String> {
        let json = serde_json::to_vec(value).map_err(|e| e.to_string())?;
        // With zstd's content checksum, damage inside the frame is caught by zstd itself
        // rather than decoding to other JSON that happens to parse.
        let mut compressor = zstd::bulk::Compressor::new(LEVEL).map_err(|e| e.to_string())?;
        compressor
            .include_checksum(true)
            .map_err(|e| e.to_string())?;
        let z = compressor.compress(&json).map_err(|e| e.to_string())?;
        Ok(base64::engine::general_purpose::STANDARD.encode(z))
    }

    pub fn unpack(text: &str) -> Result<Recorded, String> {
        let z = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| format!("not base64: {e}"))?;
        let mut json = Vec::new();
        zstd::stream::read::Decoder::new(&z[..])
            .map_err(|e| format!("not zstd: {e}"))?
            .take(PACKED_MAX + 1)
            .read_to_end(&mut json)
            .map_err(|e| format!("not a whole zstd frame: {e}"))?;
        if json.len() as u64 > PACKED_MAX {
            return Err(format!("larger than {PACKED_MAX} bytes decompressed"));
        }
        let json = String::from_utf8(json).map_err(|_| "not UTF-8 JSON".to_owned())?;
        Recorded::from_json(json).map_err(|e| format!("not a recorded part: {e}"))
    }

    pub fn serialize<S: Serializer>(value: &Option<Recorded>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            None => s.serialize_none(),
            Some(v) => s.serialize_str(&pack(v).map_err(S::Error::custom)?),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Recorded>, D::Error> {
        match Option::<serde_json::Value>::deserialize(d)? {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(text)) => unpack(&text)
                .map(Some)
                .map_err(|e| D::Error::custom(format!("a packed manifest part is damaged: {e}"))),
            // Format 1: the part inline.
            Some(inline) => Recorded::from_json(inline.to_string())
                .map(Some)
                .map_err(D::Error::custom),
        }
    }
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
    /// The manifest file's bytes, in the current format ([`MANIFEST_FORMAT`]) whatever format
    /// it was read in: a copy of an old recovery point (to the archive tier, a rehydration)
    /// is written in the form its `formatVersion` says.
    pub fn to_bytes(&self) -> Vec<u8> {
        let current = Manifest {
            format_version: MANIFEST_FORMAT,
            ..self.clone()
        };
        let body = serde_json::to_string(&current).expect("manifest serializes");
        let raw = RawValue::from_string(body).expect("serde_json output is valid JSON");
        let hash = blake3::hash(raw.get().as_bytes()).to_hex().to_string();
        serde_json::to_vec(&EnvelopeOut {
            blake3: hash,
            manifest: &raw,
        })
        .expect("envelope serializes")
    }

    /// Sets `stats.bytes_stored` to `data_bytes` (the packs and index files the backup
    /// stored) plus the length of the manifest file itself, and returns that file's bytes:
    /// the figure then counts every byte the backup added to the vault. The length depends
    /// on the figure's digits only, so it is found by iterating: each step's length is at
    /// least the last (more bytes, never fewer digits), bounded, so it settles in a few.
    pub fn to_bytes_counting_itself(&mut self, data_bytes: u64) -> Vec<u8> {
        self.to_bytes_counting_itself_sealed(data_bytes, 0)
    }

    /// [`Manifest::to_bytes_counting_itself`] for a manifest file that sealing will make
    /// `overhead` bytes longer ([`sealed_manifest_overhead`]).
    pub fn to_bytes_counting_itself_sealed(&mut self, data_bytes: u64, overhead: u64) -> Vec<u8> {
        let mut own = 0u64;
        loop {
            self.stats.bytes_stored = data_bytes + own + overhead;
            let bytes = self.to_bytes();
            if bytes.len() as u64 == own {
                return bytes;
            }
            own = bytes.len() as u64;
        }
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

    /// A manifest with both packed parts: the table of contents of a real (small) archive
    /// and the dump's contents.
    fn sample() -> Manifest {
        let stream = StreamInfo {
            length: 1234,
            chunks_blake3: blake3::hash(b"x").to_hex().to_string(),
            chunk_count: 2,
            chunk_lists: vec![ChunkId([5; 32])],
        };
        let mut scanner = crate::testing::archive_observer();
        scanner.observe(&crate::testing::archive(20, 0));
        let archive = scanner.finish().unwrap();
        let mut m = crate::testing::manifest("db1", "rp1", stream, Some(archive));
        m.contents = Some(sample_contents());
        m
    }

    /// What the engine records of a database's contents (`postgres::contents`), as the
    /// store sees it: JSON it keeps.
    fn sample_contents() -> Recorded {
        Recorded::of(&serde_json::json!({
            "schemas": ["public"],
            "extensions": [{"name": "plpgsql", "version": "1.0"}],
            "tables": [{"schema": "public", "name": "t", "estimatedRows": 300, "exactRows": 300}],
        }))
        .unwrap()
    }

    /// The envelope around `body` with a checksum that matches it: what a manifest damaged
    /// *before* it was checksummed (a bug, a rewrite) looks like.
    fn checksummed(body: &str) -> Vec<u8> {
        format!(
            "{{\"blake3\":\"{}\",\"manifest\":{body}}}",
            blake3::hash(body.as_bytes()).to_hex()
        )
        .into_bytes()
    }

    fn body(bytes: &[u8]) -> String {
        let env: serde_json::Value = serde_json::from_slice(bytes).unwrap();
        env["manifest"].to_string()
    }

    /// A manifest written by pgvault before format 2 (pretty JSON, the table of contents and
    /// the contents inline), committed as written, reads as it always did; written again, it
    /// is in format 2, smaller, and reads back the same.
    #[test]
    fn format_1_manifests_still_read() {
        let bytes = include_bytes!("fixtures/manifest-format-1.json");
        let text = std::str::from_utf8(bytes).unwrap();
        assert!(text.contains("\"formatVersion\": 1,") && text.contains("\"entries\": ["));
        let m = Manifest::from_bytes(bytes).unwrap();
        assert_eq!(m.format_version, 1);
        assert_eq!(m.recovery_point_id, "rp-format-1");
        assert_eq!(m.stats.bytes_stored, 12345);
        assert_eq!(m.stream.chunk_count, 2);
        let archive = crate::testing::toc(&m);
        assert_eq!(archive.header.format_version, "1.16.0");
        let data = archive.table_data("public", "t").expect("t's data entry");
        assert_eq!(data.dump_id, 20);
        assert!(
            data.data
                .is_some_and(|d| !d.is_empty() && d.end <= archive.stream_len)
        );
        assert_eq!(m.contents, Some(sample_contents()));

        let again = m.to_bytes();
        assert!(
            again.len() < bytes.len(),
            "format 2 is {} bytes, format 1 {}",
            again.len(),
            bytes.len()
        );
        let back = Manifest::from_bytes(&again).unwrap();
        assert_eq!(back.format_version, MANIFEST_FORMAT);
        assert_eq!(
            back,
            Manifest {
                format_version: MANIFEST_FORMAT,
                ..m
            }
        );
    }

    /// The stored figure counts the manifest's own bytes, across a change in its digits.
    #[test]
    fn bytes_stored_counts_the_manifest_itself() {
        for data in [0, 7, 9_000, 99_999_000, 999_998_500, u64::from(u32::MAX)] {
            let mut m = sample();
            let bytes = m.to_bytes_counting_itself(data);
            assert_eq!(m.stats.bytes_stored, data + bytes.len() as u64);
            assert_eq!(Manifest::from_bytes(&bytes).unwrap(), m);
        }
    }

    /// Format 2 stores the table of contents and the contents packed, in compact JSON.
    #[test]
    fn format_2_packs_the_schema_parts() {
        let bytes = sample().to_bytes();
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(
            !text.contains('\n') && !text.contains("\": "),
            "compact JSON"
        );
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["manifest"]["formatVersion"], 2);
        assert!(v["manifest"]["archive"].is_string());
        assert!(v["manifest"]["contents"].is_string());
        assert!(!text.contains("TABLE DATA"));
        // Unchanged in the clear: what GC scans a damaged manifest for, the chunk lists.
        assert!(text.contains(&ChunkId([5; 32]).to_string()));
        assert_eq!(Manifest::from_bytes(&bytes).unwrap(), sample());
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
            .replace("\"length\":1234", "\"length\":9999");
        assert!(matches!(
            Manifest::from_bytes(changed.as_bytes()),
            Err(ManifestError::Checksum)
        ));
    }

    /// A packed part that is not base64, not zstd, or would decompress past the bound is an
    /// error; so is an inline part of the wrong shape.
    #[test]
    fn malformed_packed_parts_are_errors() {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let good: serde_json::Value = serde_json::from_str(&body(&sample().to_bytes())).unwrap();
        // Zeros compress to almost nothing: a frame that would fill memory.
        let bomb = {
            let mut e = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
            let zeros = vec![0u8; 1 << 20];
            for _ in 0..(packed::PACKED_MAX >> 20) + 1 {
                std::io::Write::write_all(&mut e, &zeros).unwrap();
            }
            e.finish().unwrap()
        };
        for (part, value) in [
            ("archive", serde_json::json!("not base64!")),
            ("archive", serde_json::json!(b64.encode(b"not zstd"))),
            (
                "archive",
                serde_json::json!(b64.encode(zstd::bulk::compress(b"[1,2]", 3).unwrap())),
            ),
            ("archive", serde_json::json!(b64.encode(&bomb))),
            ("contents", serde_json::json!("")),
            ("archive", serde_json::json!(42)),
            ("contents", serde_json::json!([{"schemas": 3}])),
        ] {
            let mut v = good.clone();
            v[part] = value.clone();
            let got = Manifest::from_bytes(&checksummed(&v.to_string()));
            assert!(
                matches!(got, Err(ManifestError::Json(_))),
                "{part} = {value:.40}: {got:?}"
            );
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// A damaged manifest is an error or, where the damage missed what the checksum
        /// covers (trailing bytes a JSON parser skips), the very manifest written.
        #[test]
        fn damaged_manifests_read_as_errors_or_the_original(
            damages in crate::testing::damages(),
        ) {
            let bad = crate::testing::apply_all(&damages, &sample().to_bytes());
            if let Ok(m) = Manifest::from_bytes(&bad) {
                proptest::prop_assert_eq!(m, sample());
            }
        }

        /// A packed part damaged under a matching checksum is an error naming it, never a
        /// panic, or (where the damage changed nothing zstd reads) the part written.
        #[test]
        fn damaged_packed_parts_are_errors(
            damages in crate::testing::damages(),
            part in proptest::sample::select(vec!["archive", "contents"]),
        ) {
            use base64::Engine as _;
            let b64 = base64::engine::general_purpose::STANDARD;
            let mut v: serde_json::Value = serde_json::from_str(&body(&sample().to_bytes())).unwrap();
            let z = b64.decode(v[part].as_str().unwrap()).unwrap();
            let bad = crate::testing::apply_all(&damages, &z);
            v[part] = serde_json::Value::String(b64.encode(&bad));
            match Manifest::from_bytes(&checksummed(&v.to_string())) {
                Ok(m) => proptest::prop_assert_eq!(m, sample()),
                Err(e) => proptest::prop_assert!(
                    e.to_string().contains("packed manifest part is damaged"),
                    "{}", e
                ),
            }
        }

        /// Any bytes decode as a chunk list or not at all, and a decoded list re-encodes to
        /// the same bytes.
        #[test]
        fn chunk_list_blocks_decode_or_refuse(
            damages in crate::testing::damages(),
        ) {
            let refs: Vec<ChunkRef> = (0..20u32)
                .map(|i| ChunkRef { id: ChunkId([i as u8; 32]), length: i, head: u64::from(i) })
                .collect();
            let bad = crate::testing::apply_all(&damages, &encode_chunk_list(&refs));
            if let Some(decoded) = decode_chunk_list(&bad) {
                proptest::prop_assert_eq!(encode_chunk_list(&decoded), bad);
            }
        }
    }
}
