//! Verifying one recovery point: every chunk it needs read back, hashed, and reassembled.
//!
//! A restore stops at the first bad chunk, which is right for a restore and useless for
//! deciding what is lost. [`verify_stream`] reads the same chunks a restore would (the
//! chunk-list blocks, every data chunk, the base of every delta), but keeps going: each chunk
//! that cannot be found (in no index file, or its pack is gone) or cannot be trusted (its
//! bytes do not hash to its id, or do not decode) becomes a [`ChunkFinding`] naming the pack
//! it was in, once per chunk however often the stream repeats it.
//!
//! The reassembled stream is never stored. Its chunks flow, in order, through the stream
//! format's observer (the caller's [`StreamFormat`]: pg_dump's custom archive scanner for a
//! backup) and are dropped, so memory is bounded by the
//! batches in flight and one chunk-list block, as on the restore path. At the end the
//! stream's length and chunk-sequence digest are checked against the manifest, and the
//! format's record (a table of contents) against the one the backup recorded. A stream with a gap (a
//! missing or corrupt chunk) cannot be scanned past it; the findings already say why.

use std::collections::{HashMap, HashSet};

use futures::StreamExt;
use serde::Serialize;

use super::chunk::{BlobError, ChunkId, ChunkKind, blob_base, decode_blob, decode_blob_with_base};
use super::manifest::{ChunkRef, StreamInfo, decode_chunk_list, digest_chunk};
use super::observe::{Recorded, StreamFormat};
use super::pack::{ChunkIndex, PackId};
use super::{StoreError, VaultStore, paths};

/// Largest single ranged read, as on the restore path.
const BATCH_BYTES: u64 = 4 << 20;
/// Batches fetched and decoded ahead of the scanner.
const BATCHES_IN_FLIGHT: usize = 4;

/// What a chunk is to the recovery point that needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ChunkRole {
    /// A block of the ordered chunk list: without it the chunks it lists are unknown.
    ChunkList,
    /// Bytes of the dump stream.
    Data,
    /// The base a delta-compressed data chunk decodes against (see `neededBy`).
    DeltaBase,
}

/// Why a chunk cannot be read. The first two mean *missing*, the others *corrupt*.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ChunkDamage {
    /// No index file lists the chunk.
    NotInIndex,
    /// The index names a pack that is not in the store.
    PackMissing,
    /// The blob decodes, but its bytes hash to another id.
    HashMismatch,
    /// The blob's header or compressed payload cannot be decoded.
    Undecodable,
    /// The chunk decodes to a length other than the one recorded for it.
    WrongLength,
    /// A chunk-list block that is not one, or a blob whose header disagrees with the index.
    WrongKind,
    /// The store could not read the range the index names (a truncated pack, an IO error).
    Unreadable,
    /// The pack is in the Archive access tier: present, not readable until rehydrated. Not
    /// damage; such chunks are listed in [`StreamVerification::archived_packs`].
    Archived,
}

impl ChunkDamage {
    pub fn is_missing(self) -> bool {
        matches!(self, ChunkDamage::NotInIndex | ChunkDamage::PackMissing)
    }

    fn of_blob_error(e: &BlobError) -> Self {
        match e {
            BlobError::HashMismatch { .. } => ChunkDamage::HashMismatch,
            BlobError::LengthMismatch { .. } => ChunkDamage::WrongLength,
            _ => ChunkDamage::Undecodable,
        }
    }
}

/// One chunk a recovery point needs and cannot have.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChunkFinding {
    pub chunk_id: ChunkId,
    pub role: ChunkRole,
    /// The pack the index places the chunk in; `None` when no index lists it.
    pub pack_id: Option<PackId>,
    pub reason: ChunkDamage,
    pub detail: String,
    /// Where the chunk starts in the dump stream (data chunks, while the offset is known).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_offset: Option<u64>,
    /// For a delta base: the data chunk that could not be decoded without it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub needed_by: Option<ChunkId>,
}

/// The verification of one copy of a recovery point's stream.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamVerification {
    /// Chunks read and found intact (chunk-list blocks and data chunks, repeats included).
    pub chunks_verified: u64,
    /// Bytes of the dump stream read back intact.
    pub bytes_verified: u64,
    /// Entries in the scanned table of contents; `None` when the stream was not scanned to
    /// its end (a gap) or is not a readable archive.
    pub archive_entries: Option<usize>,
    pub missing_chunks: Vec<ChunkFinding>,
    pub corrupt_chunks: Vec<ChunkFinding>,
    /// Everything else that is wrong: the manifest, the stream's length or digest, the
    /// archive.
    pub problems: Vec<String>,
    /// Packs in the Archive access tier (an archive tier on Blob Storage): Blob Storage says
    /// they are there, but their chunks were not read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub archived_packs: Vec<PackId>,
    /// What the verification could not do, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl StreamVerification {
    pub fn is_ok(&self) -> bool {
        self.missing_chunks.is_empty() && self.corrupt_chunks.is_empty() && self.problems.is_empty()
    }

    /// A copy whose manifest could not be read: nothing else can be checked.
    pub fn unreadable_manifest(problem: String) -> Self {
        StreamVerification {
            problems: vec![problem],
            ..Default::default()
        }
    }

    fn record(&mut self, reported: &mut HashSet<ChunkId>, finding: ChunkFinding) {
        if !reported.insert(finding.chunk_id) {
            return;
        }
        if finding.reason == ChunkDamage::Archived {
            if let Some(pack) = finding.pack_id
                && !self.archived_packs.contains(&pack)
            {
                self.archived_packs.push(pack);
                self.note = Some(format!(
                    "{} packs are in the Archive access tier: they exist, but data in the Archive access tier can be read only after rehydration (`pgvault recovery-point rehydrate`), so their chunks were not verified",
                    self.archived_packs.len()
                ));
            }
            return;
        }
        if finding.reason.is_missing() {
            self.missing_chunks.push(finding);
        } else {
            self.corrupt_chunks.push(finding);
        }
    }
}

/// What is wrong with a blob, without repeating its id (a finding names it already).
pub(crate) fn blob_problem(e: &BlobError) -> String {
    match e {
        BlobError::HashMismatch { actual, .. } => format!("its bytes hash to {actual}"),
        e => e.to_string(),
    }
}

fn finding(
    chunk_id: ChunkId,
    role: ChunkRole,
    pack_id: Option<PackId>,
    reason: ChunkDamage,
    detail: impl Into<String>,
) -> ChunkFinding {
    ChunkFinding {
        chunk_id,
        role,
        pack_id,
        reason,
        detail: detail.into(),
        stream_offset: None,
        needed_by: None,
    }
}

fn store_damage(e: &StoreError) -> (ChunkDamage, String) {
    if e.is_archived() {
        (
            ChunkDamage::Archived,
            "the pack is in the Archive access tier".into(),
        )
    } else if e.is_not_found() {
        (
            ChunkDamage::PackMissing,
            "the pack is not in the store".into(),
        )
    } else {
        (ChunkDamage::Unreadable, e.to_string())
    }
}

/// Reads and checks one full chunk (a chunk-list block or a delta base).
async fn fetch_full(
    store: &VaultStore,
    index: &ChunkIndex,
    key: &[u8; 32],
    id: ChunkId,
    role: ChunkRole,
) -> Result<(ChunkKind, Vec<u8>), Box<ChunkFinding>> {
    let Some((pack, loc)) = index.get(&id) else {
        return Err(Box::new(finding(
            id,
            role,
            None,
            ChunkDamage::NotInIndex,
            "no index file lists the chunk",
        )));
    };
    let range = u64::from(loc.offset)..u64::from(loc.offset) + u64::from(loc.length);
    let blob = store
        .get_range(&paths::pack(&pack), range)
        .await
        .map_err(|e| {
            let (reason, detail) = store_damage(&e);
            Box::new(finding(id, role, Some(pack), reason, detail))
        })?;
    decode_blob(key, store.sealer(), id, &blob).map_err(|e| {
        Box::new(finding(
            id,
            role,
            Some(pack),
            ChunkDamage::of_blob_error(&e),
            blob_problem(&e),
        ))
    })
}

/// Data chunks that lie back to back in one pack, read with one ranged GET.
struct Batch {
    pack: PackId,
    start: u64,
    end: u64,
    /// (reference, its stream offset, its blob's offset from `start`, blob length)
    chunks: Vec<(ChunkRef, Option<u64>, usize, usize)>,
}

enum Unit {
    Batch(Batch),
    Unindexed(ChunkRef, Option<u64>),
}

/// One data chunk's outcome, in stream order.
enum Piece {
    Data(Vec<u8>),
    Bad(ChunkFinding),
}

fn plan(index: &ChunkIndex, refs: &[ChunkRef], mut offset: Option<u64>) -> Vec<Unit> {
    let mut units: Vec<Unit> = Vec::new();
    for r in refs {
        let at = offset;
        offset = offset.map(|o| o + u64::from(r.length));
        let Some((pack, loc)) = index.get(&r.id) else {
            units.push(Unit::Unindexed(*r, at));
            continue;
        };
        let (start, end) = (
            u64::from(loc.offset),
            u64::from(loc.offset) + u64::from(loc.length),
        );
        match units.last_mut() {
            Some(Unit::Batch(b))
                if b.pack == pack && b.end == start && end - b.start <= BATCH_BYTES =>
            {
                b.chunks
                    .push((*r, at, (start - b.start) as usize, loc.length as usize));
                b.end = end;
            }
            _ => units.push(Unit::Batch(Batch {
                pack,
                start,
                end,
                chunks: vec![(*r, at, 0, loc.length as usize)],
            })),
        }
    }
    units
}

/// Reads and decodes one unit; never fails, every problem becomes a [`Piece::Bad`].
async fn read_unit(
    store: &VaultStore,
    index: &ChunkIndex,
    key: &[u8; 32],
    unit: Unit,
) -> Vec<Piece> {
    let batch = match unit {
        Unit::Unindexed(r, at) => {
            let mut f = finding(
                r.id,
                ChunkRole::Data,
                None,
                ChunkDamage::NotInIndex,
                "no index file lists the chunk",
            );
            f.stream_offset = at;
            return vec![Piece::Bad(f)];
        }
        Unit::Batch(batch) => batch,
    };
    let pack = batch.pack;
    let placed: Vec<(ChunkId, Option<u64>)> =
        batch.chunks.iter().map(|(r, at, ..)| (r.id, *at)).collect();
    let bad_all = |reason: ChunkDamage, detail: &str| -> Vec<Piece> {
        placed
            .iter()
            .map(|(id, at)| {
                let mut f = finding(*id, ChunkRole::Data, Some(pack), reason, detail);
                f.stream_offset = *at;
                Piece::Bad(f)
            })
            .collect()
    };
    let bytes = match store
        .get_range(&paths::pack(&batch.pack), batch.start..batch.end)
        .await
    {
        Ok(bytes) => bytes,
        Err(e) => {
            let (reason, detail) = store_damage(&e);
            return bad_all(reason, &detail);
        }
    };
    // Bases as the index records them: a header corrupted into naming another base is then
    // the delta's own damage, not a missing base.
    let mut wanted: Vec<ChunkId> = batch
        .chunks
        .iter()
        .filter_map(|(r, ..)| index.base_of(&r.id))
        .collect();
    wanted.sort();
    wanted.dedup();
    let bases: HashMap<ChunkId, Result<Vec<u8>, Box<ChunkFinding>>> = futures::stream::iter(wanted)
        .map(|b| async move {
            let got = fetch_full(store, index, key, b, ChunkRole::DeltaBase).await;
            (b, got.map(|(_, data)| data))
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let expected_bases: Vec<Option<ChunkId>> = batch
        .chunks
        .iter()
        .map(|(r, ..)| index.base_of(&r.id))
        .collect();
    let key = *key;
    let sealer = store.sealer().cloned();
    let decoded = tokio::task::spawn_blocking(move || {
        batch
            .chunks
            .iter()
            .zip(expected_bases)
            .map(|((r, at, off, len), expected_base)| {
                let bad = |reason, detail: String| {
                    let mut f = finding(r.id, ChunkRole::Data, Some(pack), reason, detail);
                    f.stream_offset = *at;
                    Piece::Bad(f)
                };
                let Some(blob) = bytes.get(*off..*off + *len) else {
                    return bad(ChunkDamage::Unreadable, "the pack is shorter than the index says".into());
                };
                let header_base = blob_base(blob);
                if header_base != expected_base {
                    return bad(
                        ChunkDamage::WrongKind,
                        format!(
                            "the blob's header names base {header_base:?} where the index records {expected_base:?}"
                        ),
                    );
                }
                let base = match expected_base.map(|b| &bases[&b]) {
                    None => None,
                    Some(Ok(data)) => Some(data.as_slice()),
                    Some(Err(base_finding)) => {
                        let mut f = (**base_finding).clone();
                        f.needed_by = Some(r.id);
                        return Piece::Bad(f);
                    }
                };
                match decode_blob_with_base(&key, sealer.as_ref(), r.id, blob, base) {
                    Ok((_, data)) if data.len() == r.length as usize => Piece::Data(data),
                    Ok((_, data)) => bad(
                        ChunkDamage::WrongLength,
                        format!(
                            "the chunk is {} bytes, the chunk list says {}",
                            data.len(),
                            r.length
                        ),
                    ),
                    Err(e) => bad(ChunkDamage::of_blob_error(&e), blob_problem(&e)),
                }
            })
            .collect::<Vec<Piece>>()
    })
    .await;
    decoded.unwrap_or_else(|e| {
        bad_all(
            ChunkDamage::Unreadable,
            &format!("a verify worker stopped: {e}"),
        )
    })
}

/// Reads every chunk of `stream` back, as a restore would, and reports everything that is
/// wrong (see the module documentation). `recorded` is what the backup's observer of
/// `format` recorded (a table of contents), if it could.
pub async fn verify_stream(
    store: &VaultStore,
    index: &ChunkIndex,
    key: &[u8; 32],
    stream: &StreamInfo,
    format: &dyn StreamFormat,
    recorded: Option<&Recorded>,
) -> StreamVerification {
    let mut v = StreamVerification::default();
    let mut reported: HashSet<ChunkId> = HashSet::new();
    let mut digest = blake3::Hasher::new();
    let (mut length, mut count) = (0u64, 0u64);
    let mut list_complete = true;
    // Where the next chunk starts; unknown once a chunk-list block is lost.
    let mut offset: Option<u64> = Some(0);
    // Fed while the stream has no gap.
    let mut scanner = Some(format.observer());

    for list_id in &stream.chunk_lists {
        let block = fetch_full(store, index, key, *list_id, ChunkRole::ChunkList)
            .await
            .and_then(|(kind, bytes)| {
                let malformed = |what: &str| {
                    let pack = index.get(list_id).map(|(p, _)| p);
                    Box::new(finding(
                        *list_id,
                        ChunkRole::ChunkList,
                        pack,
                        ChunkDamage::WrongKind,
                        what,
                    ))
                };
                if kind != ChunkKind::ChunkList {
                    return Err(malformed("the chunk is data, not a chunk-list block"));
                }
                decode_chunk_list(&bytes)
                    .ok_or_else(|| malformed("the chunk-list block is malformed"))
            });
        let refs = match block {
            Ok(refs) => refs,
            Err(f) => {
                v.record(&mut reported, *f);
                list_complete = false;
                offset = None;
                scanner = None;
                continue;
            }
        };
        v.chunks_verified += 1;
        for r in &refs {
            digest_chunk(&mut digest, r);
            length += u64::from(r.length);
            count += 1;
        }
        let units = plan(index, &refs, offset);
        offset = offset.map(|o| o + refs.iter().map(|r| u64::from(r.length)).sum::<u64>());
        let mut pieces = futures::stream::iter(units)
            .map(|unit| read_unit(store, index, key, unit))
            .buffered(BATCHES_IN_FLIGHT);
        while let Some(batch) = pieces.next().await {
            for piece in batch {
                match piece {
                    Piece::Data(data) => {
                        v.chunks_verified += 1;
                        v.bytes_verified += data.len() as u64;
                        if let Some(s) = scanner.as_mut() {
                            s.observe(&data);
                        }
                    }
                    Piece::Bad(f) => {
                        scanner = None;
                        v.record(&mut reported, f);
                    }
                }
            }
        }
    }

    if list_complete {
        if length != stream.length {
            v.problems.push(format!(
                "the chunk list adds up to {length} bytes, the manifest says {}",
                stream.length
            ));
        }
        if count != stream.chunk_count {
            v.problems.push(format!(
                "the chunk list has {count} chunks, the manifest says {}",
                stream.chunk_count
            ));
        }
        if digest.finalize().to_hex().as_str() != stream.chunks_blake3 {
            v.problems.push(
                "the chunk list's sequence digest does not match the manifest's: the chunk list is not the one the backup wrote"
                    .into(),
            );
        }
    }
    if let Some(s) = scanner {
        match s.finish() {
            Ok(found) => {
                v.archive_entries = format.layout(&found).map(|l| l.entries);
                if recorded.is_some_and(|r| *r != found) {
                    v.problems.push(format!(
                        "the {}'s table of contents differs from the one recorded at backup time",
                        format.name()
                    ));
                }
            }
            Err(e) => v.problems.push(format!(
                "the stream is not a readable {}: {e}",
                format.name()
            )),
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack::PackId;
    use crate::reader::load_index;
    use crate::testing::{KEY, archive, backup, flip_byte_in_blob, needed, pack_chunks, packs};

    fn ids(findings: &[ChunkFinding]) -> Vec<ChunkId> {
        let mut out: Vec<ChunkId> = findings.iter().map(|f| f.chunk_id).collect();
        out.sort();
        out
    }

    fn intersect(a: &[ChunkId], b: &[ChunkId]) -> Vec<ChunkId> {
        a.iter().filter(|c| b.contains(c)).copied().collect()
    }

    /// Two generations of a table, the second with deltas against the first. One pack of the
    /// first backup is deleted, one byte of a blob only the second point uses is flipped:
    /// verification names, for each point, exactly the chunks it needs from the deleted pack
    /// (data chunks and delta bases) and the flipped chunk, each with its pack.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn damage_is_named_chunk_by_chunk_with_its_pack() {
        let store = VaultStore::open("memory://").unwrap();
        let rp1 = backup(&store, KEY, "db", "rp1", archive(20_000, 0), None).await;
        let first_packs = packs(&store).await;
        let rp2 = backup(&store, KEY, "db", "rp2", archive(25_000, 1), Some(&rp1)).await;
        let second_packs: Vec<PackId> = packs(&store)
            .await
            .into_iter()
            .filter(|p| !first_packs.contains(p))
            .collect();
        assert!(rp1.archive.is_some() && rp2.archive.is_some());

        let index = load_index(&store).await.unwrap();
        for m in [&rp1, &rp2] {
            let v = verify_stream(
                &store,
                &index,
                &KEY,
                &m.stream,
                &crate::testing::TestArchive,
                m.archive.as_ref(),
            )
            .await;
            assert!(v.is_ok(), "{v:?}");
            assert_eq!(v.archive_entries, Some(2));
            assert_eq!(v.bytes_verified, m.stream.length);
        }
        let (need1, need2) = (
            needed(&store, &KEY, &rp1).await,
            needed(&store, &KEY, &rp2).await,
        );

        // A pack of the first backup that holds data but none of its chunk-list blocks.
        let mut deleted = None;
        for p in &first_packs {
            let chunks = pack_chunks(&store, p).await;
            if !chunks.iter().any(|c| rp1.stream.chunk_lists.contains(c)) {
                deleted = Some((*p, chunks));
                break;
            }
        }
        let (deleted, deleted_chunks) = deleted.expect("the first backup wrote several packs");
        // A full (non-delta) data chunk in a pack only the second backup wrote.
        let mut flipped = None;
        for p in &second_packs {
            for c in pack_chunks(&store, p).await {
                if need2.contains(&c)
                    && !rp2.stream.chunk_lists.contains(&c)
                    && index.base_of(&c).is_none()
                {
                    flipped = Some((*p, c));
                }
            }
        }
        let (flipped_pack, flipped) = flipped.expect("the second backup stored new data");
        assert!(!need1.contains(&flipped));

        store.delete(&crate::paths::pack(&deleted)).await.unwrap();
        flip_byte_in_blob(&store, &flipped_pack, flipped).await;

        let v1 = verify_stream(
            &store,
            &index,
            &KEY,
            &rp1.stream,
            &crate::testing::TestArchive,
            rp1.archive.as_ref(),
        )
        .await;
        let expected1 = intersect(&need1, &deleted_chunks);
        assert!(expected1.len() > 1, "{expected1:?}");
        assert_eq!(ids(&v1.missing_chunks), expected1);
        assert!(v1.corrupt_chunks.is_empty(), "{v1:?}");
        assert!(v1.missing_chunks.iter().all(|f| f.pack_id == Some(deleted)
            && f.reason == ChunkDamage::PackMissing
            && f.stream_offset.is_some()));
        // The chunk list is whole, so length and digest were checked and agree; the archive
        // has a gap and is not scanned.
        assert!(v1.problems.is_empty(), "{:?}", v1.problems);
        assert_eq!(v1.archive_entries, None);
        assert!(v1.chunks_verified > 0);

        let v2 = verify_stream(
            &store,
            &index,
            &KEY,
            &rp2.stream,
            &crate::testing::TestArchive,
            rp2.archive.as_ref(),
        )
        .await;
        assert_eq!(ids(&v2.missing_chunks), intersect(&need2, &deleted_chunks));
        assert_eq!(ids(&v2.corrupt_chunks), vec![flipped]);
        let corrupt = &v2.corrupt_chunks[0];
        assert_eq!(corrupt.pack_id, Some(flipped_pack));
        assert_eq!(corrupt.role, ChunkRole::Data);
        assert!(!corrupt.reason.is_missing());
        // Bases the second point's deltas needed from the deleted pack say which delta.
        for f in v2
            .missing_chunks
            .iter()
            .filter(|f| f.role == ChunkRole::DeltaBase)
        {
            let delta = f.needed_by.unwrap();
            assert_eq!(index.base_of(&delta), Some(f.chunk_id));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lost_chunk_list_and_a_wrong_manifest_are_named() {
        let store = VaultStore::open("memory://").unwrap();
        let rp = backup(&store, KEY, "db", "rp", archive(5_000, 0), None).await;
        let index = load_index(&store).await.unwrap();

        // The manifest's stream facts and table of contents are checked.
        let mut stream = rp.stream.clone();
        stream.length += 1;
        stream.chunks_blake3 = "0".repeat(64);
        let mut toc = crate::testing::toc(&rp);
        toc.entries.pop();
        let toc = crate::observe::Recorded::of(&toc).unwrap();
        let v = verify_stream(
            &store,
            &index,
            &KEY,
            &stream,
            &crate::testing::TestArchive,
            Some(&toc),
        )
        .await;
        assert!(v.missing_chunks.is_empty() && v.corrupt_chunks.is_empty());
        let problems = v.problems.join("\n");
        assert!(problems.contains("the manifest says"), "{problems}");
        assert!(problems.contains("sequence digest"), "{problems}");
        assert!(problems.contains("table of contents differs"), "{problems}");

        // A stream that is not an archive (a damaged dump stored as is) is named as such.
        let plain = backup(
            &store,
            KEY,
            "db",
            "plain",
            b"not an archive".repeat(100),
            None,
        )
        .await;
        let index = load_index(&store).await.unwrap();
        let v = verify_stream(
            &store,
            &index,
            &KEY,
            &plain.stream,
            &crate::testing::TestArchive,
            None,
        )
        .await;
        assert!(
            v.problems[0].contains("not a readable custom-format archive"),
            "{v:?}"
        );

        // Without its chunk-list block nothing more is known, and nothing is claimed.
        let list = rp.stream.chunk_lists[0];
        let (pack, _) = index.get(&list).unwrap();
        store.delete(&crate::paths::pack(&pack)).await.unwrap();
        let v = verify_stream(
            &store,
            &index,
            &KEY,
            &rp.stream,
            &crate::testing::TestArchive,
            rp.archive.as_ref(),
        )
        .await;
        let lost = v
            .missing_chunks
            .iter()
            .find(|f| f.chunk_id == list)
            .unwrap();
        assert_eq!(
            (lost.role, lost.pack_id),
            (ChunkRole::ChunkList, Some(pack))
        );
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        assert_eq!(v.archive_entries, None);

        // A chunk no index lists.
        let empty = ChunkIndex::default();
        let v = verify_stream(
            &store,
            &empty,
            &KEY,
            &rp.stream,
            &crate::testing::TestArchive,
            None,
        )
        .await;
        assert_eq!(v.missing_chunks[0].reason, ChunkDamage::NotInIndex);
        assert_eq!(v.missing_chunks[0].pack_id, None);
    }
}
