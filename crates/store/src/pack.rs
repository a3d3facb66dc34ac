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
//! In an encrypted vault each blob's payload is sealed (`chunk::seal_blob`), the trailer is
//! `seal(zstd of entries)` and an index file is `"PGVIDXE1" | seal(zstd of its entries)`
//! (`crate::crypt`): which chunks a pack holds is as secret as their bytes.
//!
//! A pack's name is the BLAKE3 hash of its bytes, so a pack is immutable and checkable.
//! An *index file* (`index/<uuid>`) lists the entries of the packs one backup wrote; it is
//! written after those packs and before the manifest, so every chunk a manifest names is
//! findable through the index.

use std::collections::HashMap;

use std::io::Read;

use super::chunk::{BLOB_HEADER_LEN, ChunkId, MAX_BLOB_LEN, MAX_CHUNK_LEN};
use crate::crypt::{Role, SealError, Sealer};

const PACK_MAGIC: &[u8; 8] = b"PGVPACK1";
const INDEX_MAGIC: &[u8; 8] = b"PGVIDX01";
/// An encrypted vault's index file.
const SEALED_INDEX_MAGIC: &[u8; 8] = b"PGVIDXE1";
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
    #[error("{what} is encrypted and the vault was opened without its key")]
    NoKey { what: &'static str },
    #[error(
        "{what} is not encrypted, in an encrypted vault: refused (it was not written by pgvault)"
    )]
    NotSealed { what: &'static str },
    #[error("{what} failed authentication: {source}")]
    Sealed {
        what: &'static str,
        source: SealError,
    },
    #[error("{what} could not be decompressed: {source}")]
    Decompress {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("{what} is corrupt: entry {entry} {problem}")]
    BadEntry {
        what: &'static str,
        entry: usize,
        problem: String,
    },
    #[error(
        "{what} decompresses to more than the {limit} bytes its size allows: it is corrupt or not a pgvault {what}"
    )]
    TooLarge { what: &'static str, limit: u64 },
}

/// The most a pack of `pack_len` bytes can list: every blob has at least a header, and an
/// entry is at most [`ENTRY_LEN`] plus a base id. Bounds the decompression of a trailer.
fn max_trailer_raw_len(pack_len: u64) -> u64 {
    (pack_len / BLOB_HEADER_LEN as u64 + 1) * (ENTRY_LEN as u64 + 32)
}

/// How much larger than its compressed form an index file's entries may be. Entries are
/// mostly random chunk ids, which zstd cannot shrink: a real index decompresses to less than
/// twice its size, so a ratio above this is a zstd bomb or garbage, never an index.
const MAX_INDEX_RATIO: u64 = 16;

/// Decompresses a zstd stream, refusing to produce more than `limit` bytes.
fn decompress_bounded(what: &'static str, bytes: &[u8], limit: u64) -> Result<Vec<u8>, PackError> {
    let decoder = zstd::stream::read::Decoder::new(bytes)
        .map_err(|source| PackError::Decompress { what, source })?;
    let mut out = Vec::new();
    decoder
        .take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|source| PackError::Decompress { what, source })?;
    if out.len() as u64 > limit {
        return Err(PackError::TooLarge { what, limit });
    }
    Ok(out)
}

/// Checks what an entry says before anyone slices or allocates by it.
fn check_entry(what: &'static str, entry: usize, e: &PackEntry) -> Result<(), PackError> {
    let bad = |problem: String| PackError::BadEntry {
        what,
        entry,
        problem,
    };
    if (e.length as usize) < BLOB_HEADER_LEN || e.length as usize > MAX_BLOB_LEN {
        return Err(bad(format!(
            "says its blob is {} bytes (a blob is {BLOB_HEADER_LEN} to {MAX_BLOB_LEN})",
            e.length
        )));
    }
    if e.raw_length as usize > MAX_CHUNK_LEN {
        return Err(bad(format!(
            "says its chunk is {} bytes (at most {MAX_CHUNK_LEN})",
            e.raw_length
        )));
    }
    if e.offset.checked_add(e.length).is_none() {
        return Err(bad(format!(
            "places its blob at {}..{}, past the largest pack",
            e.offset,
            u64::from(e.offset) + u64::from(e.length)
        )));
    }
    Ok(())
}

/// Accumulates blobs into one pack.
#[derive(Default)]
pub struct PackBuilder {
    bytes: Vec<u8>,
    entries: Vec<PackEntry>,
}

impl PackBuilder {
    pub fn with_capacity(capacity: usize) -> Self {
        // The target comes from vault.json: a damaged one must not reserve gigabytes up front.
        const MAX_RESERVE: usize = 64 << 20;
        PackBuilder {
            bytes: Vec::with_capacity(capacity.min(MAX_RESERVE)),
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

    /// Appends the trailer (sealed in an encrypted vault) and names the pack.
    pub fn finish(mut self, sealer: Option<&Sealer>) -> (PackId, Vec<u8>, Vec<PackEntry>) {
        let mut trailer = zstd::bulk::compress(&encode_entries(&self.entries), 3)
            .expect("zstd on memory cannot fail");
        if let Some(sealer) = sealer {
            trailer = sealer.seal(Role::Trailer, &trailer);
        }
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
    // A count read from storage never sizes an allocation beyond what the bytes can hold.
    let fits = buf.len() / ENTRY_LEN;
    let mut out = Vec::with_capacity(count.map_or(fits, |n| n.min(fits)));
    let mut at = 0;
    while count.map_or(at < buf.len(), |n| out.len() < n) {
        let e: &[u8; ENTRY_LEN] = buf
            .get(at..at + ENTRY_LEN)
            .and_then(|e| e.try_into().ok())
            .ok_or_else(malformed)?;
        let u32_at = |i: usize| u32::from_le_bytes([e[i], e[i + 1], e[i + 2], e[i + 3]]);
        let id_at = |b: &[u8]| -> Option<ChunkId> { b.try_into().ok().map(ChunkId) };
        at += ENTRY_LEN;
        let base = match e[44] {
            0 => None,
            FLAG_DELTA => {
                let b = buf.get(at..at + 32).and_then(id_at).ok_or_else(malformed)?;
                at += 32;
                Some(b)
            }
            _ => return Err(malformed()),
        };
        let entry = PackEntry {
            id: id_at(&e[..32]).ok_or_else(malformed)?,
            offset: u32_at(32),
            length: u32_at(36),
            raw_length: u32_at(40),
            base,
        };
        check_entry(what, out.len(), &entry)?;
        out.push(entry);
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
    let trailer_len = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
    let end = pack_len
        .checked_sub(PACK_TAIL_LEN as u64)
        .ok_or(PackError::Malformed { what })?;
    let start = end
        .checked_sub(trailer_len)
        .ok_or(PackError::Malformed { what })?;
    Ok(start..end)
}

/// Decodes the trailer of a pack of `pack_len` bytes (the bytes [`trailer_range`] names)
/// into its entries, each of which lies in the pack's blob area, before the trailer.
pub fn decode_trailer(
    trailer: &[u8],
    pack_len: u64,
    sealer: Option<&Sealer>,
) -> Result<Vec<PackEntry>, PackError> {
    let what = "pack";
    let opened;
    let compressed = match sealer {
        Some(sealer) => {
            opened = sealer
                .open(Role::Trailer, trailer)
                .map_err(|source| PackError::Sealed { what, source })?;
            &opened[..]
        }
        None => trailer,
    };
    let raw = decompress_bounded(what, compressed, max_trailer_raw_len(pack_len))?;
    let entries = decode_entries(&raw, None, what)?.0;
    // The blobs end where the trailer starts.
    let blobs_end = pack_len.saturating_sub(PACK_TAIL_LEN as u64 + trailer.len() as u64);
    for (i, e) in entries.iter().enumerate() {
        let end = u64::from(e.offset) + u64::from(e.length);
        if end > blobs_end {
            return Err(PackError::BadEntry {
                what,
                entry: i,
                problem: format!(
                    "places its blob at {}..{end}, past the pack's {blobs_end} bytes of blobs",
                    e.offset
                ),
            });
        }
    }
    Ok(entries)
}

/// Reads the entries of a whole pack from its trailer (used to rebuild the index and to
/// verify packs).
pub fn read_pack_trailer(
    pack: &[u8],
    sealer: Option<&Sealer>,
) -> Result<Vec<PackEntry>, PackError> {
    let n = pack.len();
    let malformed = || PackError::Malformed { what: "pack" };
    let tail = pack
        .get(n.saturating_sub(PACK_TAIL_LEN)..)
        .filter(|_| n >= PACK_TAIL_LEN)
        .ok_or_else(malformed)?;
    let range = trailer_range(n as u64, tail)?;
    let trailer = usize::try_from(range.start)
        .ok()
        .zip(usize::try_from(range.end).ok())
        .and_then(|(start, end)| pack.get(start..end))
        .ok_or_else(malformed)?;
    decode_trailer(trailer, n as u64, sealer)
}

/// Serializes an index file: for each pack, its id, entry count and entries.
pub fn encode_index(packs: &[(PackId, Vec<PackEntry>)], sealer: Option<&Sealer>) -> Vec<u8> {
    let mut raw = Vec::new();
    for (pack, entries) in packs {
        raw.extend_from_slice(&pack.0);
        raw.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        raw.extend_from_slice(&encode_entries(entries));
    }
    let compressed = zstd::bulk::compress(&raw, 3).expect("zstd on memory cannot fail");
    match sealer {
        Some(sealer) => {
            let mut out = SEALED_INDEX_MAGIC.to_vec();
            sealer.seal_into(Role::Index, &compressed, &mut out);
            out
        }
        None => [&INDEX_MAGIC[..], &compressed].concat(),
    }
}

pub fn decode_index(
    bytes: &[u8],
    sealer: Option<&Sealer>,
) -> Result<Vec<(PackId, Vec<PackEntry>)>, PackError> {
    let what = "index file";
    let (magic, body) = bytes.split_at(bytes.len().min(8));
    let opened;
    let compressed = match (magic == INDEX_MAGIC, magic == SEALED_INDEX_MAGIC, sealer) {
        (true, _, None) => body,
        (true, _, Some(_)) => return Err(PackError::NotSealed { what }),
        (_, true, None) => return Err(PackError::NoKey { what }),
        (_, true, Some(sealer)) => {
            opened = sealer
                .open(Role::Index, body)
                .map_err(|source| PackError::Sealed { what, source })?;
            &opened[..]
        }
        _ => return Err(PackError::Malformed { what }),
    };
    let limit = (compressed.len() as u64)
        .saturating_mul(MAX_INDEX_RATIO)
        .max(1 << 20);
    let raw = decompress_bounded(what, compressed, limit)?;
    let mut buf = &raw[..];
    let mut out = Vec::new();
    while !buf.is_empty() {
        let (Some(pack), Some(count), Some(rest)) = (
            buf.get(..32).and_then(|b| b.try_into().ok()).map(PackId),
            buf.get(32..36)
                .and_then(|b| b.try_into().ok())
                .map(|b| u32::from_le_bytes(b) as usize),
            buf.get(36..),
        ) else {
            return Err(PackError::Malformed { what });
        };
        let (entries, used) = decode_entries(rest, Some(count), what)?;
        out.push((pack, entries));
        buf = rest.get(used..).ok_or(PackError::Malformed { what })?;
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
        let loc = self.chunks.get(id)?;
        Some((*self.packs.get(loc.pack as usize)?, *loc))
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
    use crate::chunk::{ChunkKind, decode_blob, encode_blob};

    #[test]
    fn a_sealed_pack_and_index_read_only_with_their_key() {
        use crate::chunk::{
            ChunkKind, decode_blob_with_base, encode_blob, encode_delta_blob, seal_blob,
        };
        let key = [7u8; 32];
        let sealer = crate::crypt::DataKey::generate().sealer();
        let base: Vec<u8> = (0..4000u32).flat_map(|i| i.to_le_bytes()).collect();
        let mut near = base.clone();
        near[100] ^= 1;
        let (base_id, near_id) = (ChunkId::of(&key, &base), ChunkId::of(&key, &near));
        let full = encode_blob(ChunkKind::Data, &base, 3);
        let delta = encode_delta_blob(ChunkKind::Data, &near, base_id, &base, 3, 1 << 20).unwrap();
        let mut builder = PackBuilder::default();
        builder.push(base_id, base.len(), &seal_blob(&sealer, &base_id, full));
        builder.push(near_id, near.len(), &seal_blob(&sealer, &near_id, delta));
        let (id, bytes, entries) = builder.finish(Some(&sealer));
        assert_eq!(
            entries[1].base,
            Some(base_id),
            "a sealed delta still names its base"
        );
        assert_eq!(read_pack_trailer(&bytes, Some(&sealer)).unwrap(), entries);
        assert!(
            read_pack_trailer(&bytes, None).is_err(),
            "the trailer is sealed"
        );
        let other = crate::crypt::DataKey::generate().sealer();
        assert!(matches!(
            read_pack_trailer(&bytes, Some(&other)),
            Err(PackError::Sealed { .. })
        ));

        let blob = |e: &PackEntry| &bytes[e.offset as usize..(e.offset + e.length) as usize];
        let (_, back) =
            decode_blob_with_base(&key, Some(&sealer), base_id, blob(&entries[0]), None).unwrap();
        assert_eq!(back, base);
        let (_, back) =
            decode_blob_with_base(&key, Some(&sealer), near_id, blob(&entries[1]), Some(&base))
                .unwrap();
        assert_eq!(back, near);
        // Without the key, with another key, as another chunk, or changed: refused.
        assert!(matches!(
            decode_blob_with_base(&key, None, base_id, blob(&entries[0]), None),
            Err(crate::chunk::BlobError::NoKey(_))
        ));
        assert!(matches!(
            decode_blob_with_base(&key, Some(&other), base_id, blob(&entries[0]), None),
            Err(crate::chunk::BlobError::Sealed { .. })
        ));
        assert!(matches!(
            decode_blob_with_base(&key, Some(&sealer), near_id, blob(&entries[0]), None),
            Err(crate::chunk::BlobError::Sealed { .. })
        ));
        let mut changed = blob(&entries[0]).to_vec();
        let last = changed.len() - 1;
        changed[last] ^= 1;
        assert!(decode_blob_with_base(&key, Some(&sealer), base_id, &changed, None).is_err());
        // A clear blob in an encrypted vault is refused, never read.
        let clear = encode_blob(ChunkKind::Data, &base, 3);
        assert!(matches!(
            decode_blob_with_base(&key, Some(&sealer), base_id, &clear, None),
            Err(crate::chunk::BlobError::NotSealed(_))
        ));
        // Nothing of the chunk's bytes is in the pack.
        assert!(!bytes.windows(16).any(|w| w == &base[400..416]));

        let index = encode_index(&[(id, entries.clone())], Some(&sealer));
        assert_eq!(
            decode_index(&index, Some(&sealer)).unwrap(),
            vec![(id, entries.clone())]
        );
        assert!(matches!(
            decode_index(&index, None),
            Err(PackError::NoKey { .. })
        ));
        let clear = encode_index(&[(id, entries)], None);
        assert!(matches!(
            decode_index(&clear, Some(&sealer)),
            Err(PackError::NotSealed { .. })
        ));
    }

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
        let delta = crate::chunk::encode_delta_blob(
            ChunkKind::Data,
            &near,
            base_id,
            &chunks[0],
            3,
            full.len() * 100,
        )
        .unwrap();
        builder.push(ChunkId::of(&key, &near), near.len(), &delta);
        let (id, bytes, entries) = builder.finish(None);
        assert_eq!(entries.last().unwrap().base, Some(base_id));
        assert!(entries[..5].iter().all(|e| e.base.is_none()));
        assert_eq!(id, PackId(*blake3::hash(&bytes).as_bytes()));
        assert_eq!(read_pack_trailer(&bytes, None).unwrap(), entries);

        let index = encode_index(&[(id, entries.clone())], None);
        let decoded = decode_index(&index, None).unwrap();
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
            assert_eq!(decode_blob(&key, None, cid, blob).unwrap().1, *c);
        }
    }

    #[test]
    fn malformed_inputs_are_errors() {
        assert!(read_pack_trailer(b"short", None).is_err());
        assert!(read_pack_trailer(b"xxxxxxxxxxxxxxxxPGVPACK1", None).is_err());
        assert!(decode_index(b"PGVIDX0", None).is_err());
        assert!(decode_index(b"NOTANIDXxxxx", None).is_err());
    }

    /// A small pack of three chunks and its entries.
    fn sample_pack() -> (PackId, Vec<u8>, Vec<PackEntry>) {
        let key = [3u8; 32];
        let mut builder = PackBuilder::default();
        for i in 0..3 {
            let c = format!("chunk {i} ").repeat(300).into_bytes();
            builder.push(
                ChunkId::of(&key, &c),
                c.len(),
                &encode_blob(ChunkKind::Data, &c, 3),
            );
        }
        builder.finish(None)
    }

    /// A pack whose trailer is `raw` (entries as stored, before compression) after `blobs`.
    fn pack_with_trailer(blobs: &[u8], raw: &[u8]) -> Vec<u8> {
        let trailer = zstd::bulk::compress(raw, 3).unwrap();
        let mut pack = blobs.to_vec();
        pack.extend_from_slice(&trailer);
        pack.extend_from_slice(&(trailer.len() as u32).to_le_bytes());
        pack.extend_from_slice(PACK_MAGIC);
        pack
    }

    fn index_of(raw: &[u8]) -> Vec<u8> {
        let mut out = INDEX_MAGIC.to_vec();
        out.extend_from_slice(&zstd::bulk::compress(raw, 3).unwrap());
        out
    }

    #[test]
    fn entries_that_point_outside_their_pack_or_claim_too_much_are_refused() {
        let (_, bytes, entries) = sample_pack();
        let blobs_end = entries
            .last()
            .map(|e| (e.offset + e.length) as usize)
            .unwrap();
        let blobs = &bytes[..blobs_end];
        let with = |f: &dyn Fn(&mut PackEntry)| {
            let mut entries = entries.clone();
            f(&mut entries[1]);
            encode_entries(&entries)
        };
        for (what, raw) in [
            ("past the blobs", with(&|e| e.offset = blobs_end as u32)),
            ("wrapping u32", with(&|e| e.offset = u32::MAX - 2)),
            ("4 GiB blob", with(&|e| e.length = u32::MAX)),
            ("shorter than a header", with(&|e| e.length = 3)),
            ("4 GiB chunk", with(&|e| e.raw_length = u32::MAX)),
        ] {
            let pack = pack_with_trailer(blobs, &raw);
            assert!(
                matches!(
                    read_pack_trailer(&pack, None),
                    Err(PackError::BadEntry { .. })
                ),
                "{what}: {:?}",
                read_pack_trailer(&pack, None)
            );
        }
        // The trailer is not the pack's own bytes: an entry may not reach into it.
        let pack = pack_with_trailer(&blobs[..blobs_end - 1], &encode_entries(&entries));
        assert!(matches!(
            read_pack_trailer(&pack, None),
            Err(PackError::BadEntry { .. })
        ));
        // A trailer length longer than the pack.
        let mut pack = bytes.clone();
        let at = pack.len() - PACK_TAIL_LEN;
        pack[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            read_pack_trailer(&pack, None),
            Err(PackError::Malformed { .. })
        ));
    }

    #[test]
    fn trailer_and_index_bombs_are_refused() {
        // 256 MiB of zeros compress to a few KiB; neither a trailer nor an index file may
        // decompress to that.
        let zeros = vec![0u8; 256 << 20];
        let pack = pack_with_trailer(&[], &zeros);
        assert!(pack.len() < 1 << 20);
        assert!(matches!(
            read_pack_trailer(&pack, None),
            Err(PackError::TooLarge { .. })
        ));
        assert!(matches!(
            decode_index(&index_of(&zeros), None),
            Err(PackError::TooLarge { .. })
        ));
    }

    #[test]
    fn an_index_count_claiming_billions_of_entries_is_an_error_not_an_allocation() {
        let mut raw = vec![9u8; 32];
        raw.extend_from_slice(&u32::MAX.to_le_bytes());
        raw.extend_from_slice(&encode_entries(&sample_pack().2));
        assert!(matches!(
            decode_index(&index_of(&raw), None),
            Err(PackError::Malformed { .. })
        ));
        // A pack id cut short.
        assert!(decode_index(&index_of(&[1; 20]), None).is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// A damaged pack's trailer reads as an error, or as entries that all lie in the pack.
        #[test]
        fn damaged_packs_read_as_errors_or_entries_inside_the_pack(
            damages in crate::testing::damages(),
            inside in proptest::bool::ANY,
        ) {
            let (_, bytes, entries) = sample_pack();
            let pack = if inside {
                // Damage the entries themselves, in a well-formed zstd frame.
                let blobs_end = entries.last().map(|e| (e.offset + e.length) as usize).unwrap();
                let raw = crate::testing::apply_all(&damages, &encode_entries(&entries));
                pack_with_trailer(&bytes[..blobs_end], &raw)
            } else {
                crate::testing::apply_all(&damages, &bytes)
            };
            let n = pack.len() as u64;
            if let Some(tail) = pack.get(pack.len().saturating_sub(PACK_TAIL_LEN)..) {
                let _ = trailer_range(n, tail);
            }
            if let Ok(found) = read_pack_trailer(&pack, None) {
                for e in found {
                    proptest::prop_assert!(u64::from(e.offset) + u64::from(e.length) <= n);
                }
            }
        }

        /// A damaged index file decodes to an error or to entries, never a panic.
        #[test]
        fn damaged_index_files_decode_to_errors_or_entries(
            damages in crate::testing::damages(),
            inside in proptest::bool::ANY,
        ) {
            let (id, _, entries) = sample_pack();
            let good = encode_index(&[(id, entries.clone()), (PackId([1; 32]), entries)], None);
            let bad = if inside {
                let raw = zstd::stream::decode_all(&good[8..]).unwrap();
                index_of(&crate::testing::apply_all(&damages, &raw))
            } else {
                crate::testing::apply_all(&damages, &good)
            };
            if let Ok(packs) = decode_index(&bad, None) {
                let mut map = ChunkIndex::default();
                for (pack, entries) in &packs {
                    map.add_pack(*pack, entries);
                    for e in entries {
                        proptest::prop_assert!(e.offset.checked_add(e.length).is_some());
                        proptest::prop_assert!(map.get(&e.id).is_some());
                    }
                }
            }
        }
    }
}
