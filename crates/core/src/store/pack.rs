//! Pack objects and index files.
//!
//! Millions of 32 KiB objects are slow and costly on Blob Storage, so blobs are grouped
//! into *packs* of several MiB. A pack is the concatenation of its blobs followed by a
//! trailer that lists them, so a pack describes itself and the vault's index can always
//! be rebuilt from the packs alone:
//!
//! ```text
//! blob 0 | blob 1 | ... | trailer (zstd of entries) | trailer length: u32 LE | "PGVPACK1"
//! entry = chunk id (32) | offset u32 LE | stored length u32 LE | raw length u32 LE
//!         | flags u8 | base chunk id (32, when flags & 1: the blob is a delta)
//! ```
//!
//! A pack's name is the BLAKE3 hash of its bytes, so a pack is immutable and checkable.
//! An *index file* (`index/<uuid>`) lists the entries of the packs one backup wrote; it is
//! written after those packs and before the manifest, so every chunk a manifest names is
//! findable through the index.

use std::collections::HashMap;

use super::chunk::ChunkId;

const PACK_MAGIC: &[u8; 8] = b"PGVPACK1";
const INDEX_MAGIC: &[u8; 8] = b"PGVIDX01";
/// An entry without a base; a delta entry adds the base's 32 bytes.
const ENTRY_LEN: usize = 32 + 4 + 4 + 4 + 1;
const FLAG_DELTA: u8 = 1;

/// The content hash naming a pack object.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct PackId(pub [u8; 32]);

impl PackId {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(PackId(out))
    }
}

impl std::fmt::Display for PackId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl serde::Serialize for PackId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

/// Where one blob lies inside its pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PackEntry {
    pub id: ChunkId,
    pub offset: u32,
    pub length: u32,
    pub raw_length: u32,
    /// For a delta blob, the chunk it must be decoded against.
    pub base: Option<ChunkId>,
}

#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("{what} is truncated or not a pgvault {what}")]
    Malformed { what: &'static str },
    #[error("{what} could not be decompressed: {source}")]
    Decompress {
        what: &'static str,
        source: std::io::Error,
    },
}

/// Accumulates blobs into one pack.
#[derive(Default)]
pub struct PackBuilder {
    bytes: Vec<u8>,
    entries: Vec<PackEntry>,
}

impl PackBuilder {
    pub fn with_capacity(capacity: usize) -> Self {
        PackBuilder {
            bytes: Vec::with_capacity(capacity),
            entries: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn push(&mut self, id: ChunkId, raw_length: usize, blob: &[u8]) {
        self.entries.push(PackEntry {
            id,
            offset: self.bytes.len() as u32,
            length: blob.len() as u32,
            raw_length: raw_length as u32,
            base: super::chunk::blob_base(blob),
        });
        self.bytes.extend_from_slice(blob);
    }

    /// Appends the trailer and names the pack.
    pub fn finish(mut self) -> (PackId, Vec<u8>, Vec<PackEntry>) {
        let trailer = zstd::bulk::compress(&encode_entries(&self.entries), 3)
            .expect("zstd on memory cannot fail");
        self.bytes.extend_from_slice(&trailer);
        self.bytes
            .extend_from_slice(&(trailer.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(PACK_MAGIC);
        let id = PackId(*blake3::hash(&self.bytes).as_bytes());
        (id, self.bytes, self.entries)
    }
}

fn encode_entries(entries: &[PackEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * ENTRY_LEN);
    for e in entries {
        out.extend_from_slice(&e.id.0);
        out.extend_from_slice(&e.offset.to_le_bytes());
        out.extend_from_slice(&e.length.to_le_bytes());
        out.extend_from_slice(&e.raw_length.to_le_bytes());
        match &e.base {
            Some(base) => {
                out.push(FLAG_DELTA);
                out.extend_from_slice(&base.0);
            }
            None => out.push(0),
        }
    }
    out
}

/// Decodes up to `count` entries (all when `None`) from the front of `buf`; returns them
/// and the bytes consumed.
fn decode_entries(
    buf: &[u8],
    count: Option<usize>,
    what: &'static str,
) -> Result<(Vec<PackEntry>, usize), PackError> {
    let malformed = || PackError::Malformed { what };
    let mut out = Vec::with_capacity(count.unwrap_or(buf.len() / ENTRY_LEN));
    let mut at = 0;
    while count.map_or(at < buf.len(), |n| out.len() < n) {
        let e = buf.get(at..at + ENTRY_LEN).ok_or_else(malformed)?;
        let u32_at = |i: usize| u32::from_le_bytes(e[i..i + 4].try_into().expect("4 bytes"));
        at += ENTRY_LEN;
        let base = match e[44] {
            0 => None,
            FLAG_DELTA => {
                let b = buf.get(at..at + 32).ok_or_else(malformed)?;
                at += 32;
                Some(ChunkId(b.try_into().expect("32 bytes")))
            }
            _ => return Err(malformed()),
        };
        out.push(PackEntry {
            id: ChunkId(e[..32].try_into().expect("32 bytes")),
            offset: u32_at(32),
            length: u32_at(36),
            raw_length: u32_at(40),
            base,
        });
    }
    Ok((out, at))
}

/// The bytes at the end of a pack that say where its trailer starts: trailer length and magic.
pub const PACK_TAIL_LEN: usize = 12;

/// Where the trailer of a pack of `pack_len` bytes lies, from the pack's last
/// [`PACK_TAIL_LEN`] bytes; lets a reader fetch only the trailer with ranged reads.
pub fn trailer_range(pack_len: u64, tail: &[u8]) -> Result<std::ops::Range<u64>, PackError> {
    let what = "pack";
    if tail.len() != PACK_TAIL_LEN || &tail[4..] != PACK_MAGIC {
        return Err(PackError::Malformed { what });
    }
    let trailer_len = u64::from(u32::from_le_bytes(tail[..4].try_into().expect("4 bytes")));
    let end = pack_len
        .checked_sub(PACK_TAIL_LEN as u64)
        .ok_or(PackError::Malformed { what })?;
    let start = end
        .checked_sub(trailer_len)
        .ok_or(PackError::Malformed { what })?;
    Ok(start..end)
}

/// Decodes a pack's trailer (the bytes [`trailer_range`] names) into its entries.
pub fn decode_trailer(trailer: &[u8]) -> Result<Vec<PackEntry>, PackError> {
    let what = "pack";
    let raw = zstd::stream::decode_all(trailer)
        .map_err(|source| PackError::Decompress { what, source })?;
    Ok(decode_entries(&raw, None, what)?.0)
}

/// Reads the entries of a whole pack from its trailer (used to rebuild the index and to
/// verify packs).
pub fn read_pack_trailer(pack: &[u8]) -> Result<Vec<PackEntry>, PackError> {
    let n = pack.len();
    if n < PACK_TAIL_LEN {
        return Err(PackError::Malformed { what: "pack" });
    }
    let range = trailer_range(n as u64, &pack[n - PACK_TAIL_LEN..])?;
    decode_trailer(&pack[range.start as usize..range.end as usize])
}

/// Serializes an index file: for each pack, its id, entry count and entries.
pub fn encode_index(packs: &[(PackId, Vec<PackEntry>)]) -> Vec<u8> {
    let mut raw = Vec::new();
    for (pack, entries) in packs {
        raw.extend_from_slice(&pack.0);
        raw.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        raw.extend_from_slice(&encode_entries(entries));
    }
    let mut out = INDEX_MAGIC.to_vec();
    out.extend_from_slice(&zstd::bulk::compress(&raw, 3).expect("zstd on memory cannot fail"));
    out
}

pub fn decode_index(bytes: &[u8]) -> Result<Vec<(PackId, Vec<PackEntry>)>, PackError> {
    let what = "index file";
    if bytes.len() < 8 || &bytes[..8] != INDEX_MAGIC {
        return Err(PackError::Malformed { what });
    }
    let raw = zstd::stream::decode_all(&bytes[8..])
        .map_err(|source| PackError::Decompress { what, source })?;
    let mut buf = &raw[..];
    let mut out = Vec::new();
    while !buf.is_empty() {
        if buf.len() < 36 {
            return Err(PackError::Malformed { what });
        }
        let pack = PackId(buf[..32].try_into().expect("32 bytes"));
        let count = u32::from_le_bytes(buf[32..36].try_into().expect("4 bytes")) as usize;
        let (entries, used) = decode_entries(&buf[36..], Some(count), what)?;
        out.push((pack, entries));
        buf = &buf[36 + used..];
    }
    Ok(out)
}

/// Where a chunk lives: the pack (as a position in `ChunkIndex::packs`) and the range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    pub pack: u32,
    pub offset: u32,
    pub length: u32,
    pub raw_length: u32,
}

/// The in-memory map from chunk id to location, built from every index file of a vault.
///
/// It costs about 80 bytes per distinct chunk (a 100 GiB vault of 32 KiB chunks: ~250 MiB),
/// the one structure in a backup whose size follows the vault rather than the stream.
#[derive(Default, Debug)]
pub struct ChunkIndex {
    packs: Vec<PackId>,
    pack_slots: HashMap<PackId, u32>,
    chunks: HashMap<ChunkId, Location>,
    /// Delta chunks and their bases; few, so kept apart from `chunks`.
    bases: HashMap<ChunkId, ChunkId>,
}

impl ChunkIndex {
    pub fn add_pack(&mut self, pack: PackId, entries: &[PackEntry]) {
        let slot = *self.pack_slots.entry(pack).or_insert_with(|| {
            self.packs.push(pack);
            (self.packs.len() - 1) as u32
        });
        for e in entries {
            if let Some(base) = e.base
                && !self.chunks.contains_key(&e.id)
            {
                self.bases.insert(e.id, base);
            }
            self.chunks.entry(e.id).or_insert(Location {
                pack: slot,
                offset: e.offset,
                length: e.length,
                raw_length: e.raw_length,
            });
        }
    }

    pub fn contains(&self, id: &ChunkId) -> bool {
        self.chunks.contains_key(id)
    }

    pub fn get(&self, id: &ChunkId) -> Option<(PackId, Location)> {
        self.chunks
            .get(id)
            .map(|loc| (self.packs[loc.pack as usize], *loc))
    }

    /// The base a chunk is stored as a delta against, if it is.
    pub fn base_of(&self, id: &ChunkId) -> Option<ChunkId> {
        self.bases.get(id).copied()
    }

    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    pub fn pack_count(&self) -> usize {
        self.packs.len()
    }

    /// Forgets every chunk located in one of `bad`, and every delta whose base is then
    /// gone (it could not be decoded); returns how many chunks were forgotten.
    pub fn forget_packs(&mut self, bad: &std::collections::HashSet<PackId>) -> usize {
        let before = self.chunks.len();
        let packs = &self.packs;
        self.chunks
            .retain(|_, loc| !bad.contains(&packs[loc.pack as usize]));
        let orphans: Vec<ChunkId> = self
            .bases
            .iter()
            .filter(|(delta, base)| {
                !self.chunks.contains_key(base) || !self.chunks.contains_key(delta)
            })
            .map(|(delta, _)| *delta)
            .collect();
        for delta in orphans {
            self.bases.remove(&delta);
            self.chunks.remove(&delta);
        }
        before - self.chunks.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::chunk::{ChunkKind, decode_blob, encode_blob};

    #[test]
    fn pack_round_trip_through_trailer_and_index() {
        let key = [3u8; 32];
        let mut builder = PackBuilder::default();
        let chunks: Vec<Vec<u8>> = (0..5)
            .map(|i| format!("chunk number {i} ").repeat(200).into_bytes())
            .collect();
        for c in &chunks {
            builder.push(
                ChunkId::of(&key, c),
                c.len(),
                &encode_blob(ChunkKind::Data, c, 3),
            );
        }
        // One delta entry: its base travels in the trailer and the index.
        let base_id = ChunkId::of(&key, &chunks[0]);
        let mut near = chunks[0].clone();
        near[10] = b'#';
        let full = encode_blob(ChunkKind::Data, &near, 3);
        let delta = crate::store::chunk::encode_delta_blob(
            ChunkKind::Data,
            &near,
            base_id,
            &chunks[0],
            3,
            full.len() * 100,
        )
        .unwrap();
        builder.push(ChunkId::of(&key, &near), near.len(), &delta);
        let (id, bytes, entries) = builder.finish();
        assert_eq!(entries.last().unwrap().base, Some(base_id));
        assert!(entries[..5].iter().all(|e| e.base.is_none()));
        assert_eq!(id, PackId(*blake3::hash(&bytes).as_bytes()));
        assert_eq!(read_pack_trailer(&bytes).unwrap(), entries);

        let index = encode_index(&[(id, entries.clone())]);
        let decoded = decode_index(&index).unwrap();
        assert_eq!(decoded, vec![(id, entries.clone())]);

        let mut map = ChunkIndex::default();
        map.add_pack(id, &entries);
        assert_eq!(map.base_of(&ChunkId::of(&key, &near)), Some(base_id));
        assert_eq!(map.base_of(&base_id), None);
        for c in &chunks {
            let cid = ChunkId::of(&key, c);
            let (pack, loc) = map.get(&cid).unwrap();
            assert_eq!(pack, id);
            let blob = &bytes[loc.offset as usize..(loc.offset + loc.length) as usize];
            assert_eq!(decode_blob(&key, cid, blob).unwrap().1, *c);
        }
    }

    #[test]
    fn malformed_inputs_are_errors() {
        assert!(read_pack_trailer(b"short").is_err());
        assert!(read_pack_trailer(b"xxxxxxxxxxxxxxxxPGVPACK1").is_err());
        assert!(decode_index(b"PGVIDX0").is_err());
        assert!(decode_index(b"NOTANIDXxxxx").is_err());
    }
}
