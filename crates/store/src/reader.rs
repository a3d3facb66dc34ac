//! The streaming read path: a recovery point's chunks, in order, verified, to a writer.
//!
//! Chunk references are grouped into *batches*: runs of chunks that lie back to back in
//! one pack (as a backup writes them), read with one ranged GET each. Several batches are
//! fetched and decoded at once (decoding on tokio's blocking pool), and written in order,
//! so memory stays bounded by the batches in flight. Every chunk's hash is checked as it
//! is decoded (a delta against its base, fetched first), and the stream's length and the
//! digest of its chunk sequence are checked against the manifest at the end.
//!
//! Nothing read from the vault is trusted to be in bounds: a ranged read that returns fewer
//! bytes than asked (a truncated pack), an index entry or a chunk list that disagrees with
//! the bytes, ranges out of order: each is an error naming the pack and chunk, never a panic.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::{StreamExt, TryStreamExt};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::chunk::{
    BlobError, ChunkId, ChunkKind, MAX_BLOB_LEN, blob_base, decode_blob, decode_blob_with_base,
};
use super::manifest::{ChunkRef, StreamInfo, decode_chunk_list, digest_chunk};
use super::pack::{
    ChunkIndex, PACK_TAIL_LEN, PackEntry, PackError, PackId, decode_trailer, trailer_range,
};
use super::{StoreError, VaultStore, paths};

/// Largest single ranged read.
const BATCH_BYTES: u64 = 4 << 20;
/// Most decoded bytes one batch holds: a read of 4 MiB of well-compressed chunks (a table of
/// blank-padded rows compresses ten to one) would otherwise decode to 40 MiB and more, and
/// [`BATCHES_IN_FLIGHT`] of those made a restore's memory swing from 70 to 280 MiB.
const BATCH_RAW_BYTES: u64 = 8 << 20;
/// Batches fetched and decoded ahead of the writer. At most
/// `BATCHES_IN_FLIGHT * (BATCH_BYTES + BATCH_RAW_BYTES)` (48 MiB) is held by them.
const BATCHES_IN_FLIGHT: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("chunk {0} is referenced by the recovery point but missing from the vault index")]
    MissingChunk(ChunkId),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Corrupt(#[from] BlobError),
    /// A chunk of the stream that cannot be read back from its pack.
    #[error("chunk {chunk} in pack {pack} is damaged: {source}")]
    Damaged {
        pack: PackId,
        chunk: ChunkId,
        source: Box<BlobError>,
    },
    #[error("chunk list block {0} is malformed")]
    BadChunkList(ChunkId),
    #[error(
        "the stream ranges to read are not in order ({0}): the recovery point's recorded table of contents is inconsistent; restore it without a table or schema selection"
    )]
    BadRanges(String),
    #[error(
        "the restored stream's {what} does not match the manifest: the recovery point is damaged"
    )]
    StreamMismatch { what: &'static str },
    #[error("writing the restored stream failed: {0}")]
    Write(std::io::Error),
    #[error("a restore worker stopped unexpectedly")]
    WorkerLost,
}

impl ReadError {
    /// The pack the damage was found in, when the read got that far.
    pub fn pack(&self) -> Option<PackId> {
        match self {
            ReadError::Damaged { pack, .. } => Some(*pack),
            _ => None,
        }
    }
}

struct Batch {
    pack: PackId,
    start: u64,
    end: u64,
    /// The decoded length of its chunks.
    raw: u64,
    /// (chunk, offset of its blob from `start`, blob length)
    chunks: Vec<(ChunkId, usize, usize)>,
}

fn plan_batches(index: &ChunkIndex, refs: &[ChunkRef]) -> Result<Vec<Batch>, ReadError> {
    let mut batches: Vec<Batch> = Vec::new();
    for r in refs {
        let (pack, loc) = index.get(&r.id).ok_or(ReadError::MissingChunk(r.id))?;
        if loc.length as usize > MAX_BLOB_LEN {
            return Err(ReadError::Damaged {
                pack,
                chunk: r.id,
                source: Box::new(BlobError::Short {
                    expected: u64::from(loc.length),
                    actual: 0,
                }),
            });
        }
        let (start, end) = (loc.offset as u64, loc.offset as u64 + loc.length as u64);
        let raw = u64::from(r.length);
        match batches.last_mut() {
            Some(b)
                if b.pack == pack
                    && b.end == start
                    && end - b.start <= BATCH_BYTES
                    && b.raw + raw <= BATCH_RAW_BYTES =>
            {
                b.chunks
                    .push((r.id, (start - b.start) as usize, loc.length as usize));
                b.end = end;
                b.raw += raw;
            }
            _ => batches.push(Batch {
                pack,
                start,
                end,
                raw,
                chunks: vec![(r.id, 0, loc.length as usize)],
            }),
        }
    }
    Ok(batches)
}

/// Fetches and decodes one full (non-delta) chunk: a chunk-list block or a delta's base.
/// A pack too short to hold the blob is [`BlobError::Short`].
pub async fn fetch_blob(
    store: &VaultStore,
    index: &ChunkIndex,
    key: &[u8; 32],
    id: ChunkId,
) -> Result<(ChunkKind, Vec<u8>), ReadError> {
    let (pack, loc) = index.get(&id).ok_or(ReadError::MissingChunk(id))?;
    let expected = u64::from(loc.length);
    if expected > MAX_BLOB_LEN as u64 {
        return Err(BlobError::Short {
            expected,
            actual: 0,
        }
        .into());
    }
    let start = u64::from(loc.offset);
    let bytes = read_pack_range(store, &pack, start..start + expected).await?;
    if bytes.len() as u64 != expected {
        return Err(BlobError::Short {
            expected,
            actual: bytes.len(),
        }
        .into());
    }
    Ok(decode_blob(key, store.sealer(), id, &bytes)?)
}

/// Reads `range` of a pack. The bytes may be fewer than asked when the pack is shorter than
/// its index entries say (a truncated pack): the caller checks. A range that starts past
/// the end is an error in `object_store` (416 on Blob Storage); it reads as no bytes here,
/// so a truncated pack is one kind of damage wherever the cut falls.
async fn read_pack_range(
    store: &VaultStore,
    pack: &PackId,
    range: std::ops::Range<u64>,
) -> Result<bytes::Bytes, StoreError> {
    let path = paths::pack(pack);
    match store.get_range(&path, range.clone()).await {
        Ok(bytes) => Ok(bytes),
        Err(e) if e.is_not_found() || e.is_archived() => Err(e),
        Err(e) => match store.size(&path).await {
            Ok(size) if size < range.end => Ok(bytes::Bytes::new()),
            _ => Err(e),
        },
    }
}

/// [`fetch_blob`] for the stream being read: damage names the pack.
async fn fetch_stream_blob(
    store: &VaultStore,
    index: &ChunkIndex,
    key: &[u8; 32],
    id: ChunkId,
) -> Result<(ChunkKind, Vec<u8>), ReadError> {
    fetch_blob(store, index, key, id)
        .await
        .map_err(|e| match (e, index.get(&id)) {
            (ReadError::Corrupt(source), Some((pack, _))) => ReadError::Damaged {
                pack,
                chunk: id,
                source: Box::new(source),
            },
            (e, _) => e,
        })
}

/// Ranges to read must be sorted, not overlapping, and each start at or before its end.
fn check_ranges(ranges: &[std::ops::Range<u64>]) -> Result<(), ReadError> {
    if let Some(r) = ranges.iter().find(|r| r.start > r.end) {
        return Err(ReadError::BadRanges(format!(
            "range {}..{} ends before it starts",
            r.start, r.end
        )));
    }
    if let Some(w) = ranges.windows(2).find(|w| w[0].end > w[1].start) {
        return Err(ReadError::BadRanges(format!(
            "range {}..{} overlaps or follows {}..{}",
            w[1].start, w[1].end, w[0].start, w[0].end
        )));
    }
    Ok(())
}

/// Reads the trailer of the pack `id` (of `size` bytes) with two ranged reads, without
/// fetching its blobs. The outer error is the store's; the inner one says the pack's tail is
/// not a readable trailer.
pub async fn fetch_trailer(
    store: &VaultStore,
    id: &PackId,
    size: u64,
) -> Result<Result<Vec<PackEntry>, PackError>, StoreError> {
    let path = paths::pack(id);
    let Some(tail_start) = size.checked_sub(PACK_TAIL_LEN as u64) else {
        return Ok(Err(PackError::Malformed { what: "pack" }));
    };
    let tail = store.get_range(&path, tail_start..size).await?;
    let range = match trailer_range(size, &tail) {
        Ok(range) => range,
        Err(e) => return Ok(Err(e)),
    };
    let want = range.end - range.start;
    let trailer = store.get_range(&path, range).await?;
    if trailer.len() as u64 != want {
        return Ok(Err(PackError::Malformed { what: "pack" }));
    }
    Ok(decode_trailer(&trailer, size, store.sealer()))
}

/// Writes the stream a manifest describes to `out`; returns the bytes written.
pub async fn read_stream<W: AsyncWrite + Unpin>(
    store: &VaultStore,
    index: &ChunkIndex,
    key: &[u8; 32],
    stream: &StreamInfo,
    out: &mut W,
    bytes_written: Arc<AtomicU64>,
) -> Result<u64, ReadError> {
    read_stream_ranges(store, index, key, stream, None, out, bytes_written).await
}

/// Writes only the byte `ranges` of the stream (sorted, not overlapping; `None`: all of it),
/// one after the other, reading only the chunks that hold them: a selective restore feeds
/// `pg_restore` the archive's header and table of contents and the data blocks it will ask
/// for. Every chunk read is verified, and the chunk lists' sequence digest is checked whole.
pub async fn read_stream_ranges<W: AsyncWrite + Unpin>(
    store: &VaultStore,
    index: &ChunkIndex,
    key: &[u8; 32],
    stream: &StreamInfo,
    ranges: Option<&[std::ops::Range<u64>]>,
    out: &mut W,
    bytes_written: Arc<AtomicU64>,
) -> Result<u64, ReadError> {
    if let Some(ranges) = ranges {
        check_ranges(ranges)?;
    }
    let mut digest = blake3::Hasher::new();
    let mut length = 0u64;
    // Where the next chunk starts in the stream, and how much of the ranges was written.
    let (mut offset, mut expected) = (0u64, 0u64);
    for list_id in &stream.chunk_lists {
        let (kind, bytes) = fetch_stream_blob(store, index, key, *list_id).await?;
        if kind != ChunkKind::ChunkList {
            return Err(ReadError::BadChunkList(*list_id));
        }
        let refs = decode_chunk_list(&bytes).ok_or(ReadError::BadChunkList(*list_id))?;
        refs.iter().for_each(|r| digest_chunk(&mut digest, r));
        // Each chunk to read, with the part of it to write.
        let mut wanted: Vec<ChunkRef> = Vec::with_capacity(refs.len());
        let mut slices: Vec<Vec<std::ops::Range<usize>>> = Vec::with_capacity(refs.len());
        for r in &refs {
            // Saturating: a forged chunk list cannot wrap the offset; the length check at the
            // end fails instead.
            let (start, end) = (offset, offset.saturating_add(u64::from(r.length)));
            offset = end;
            // The parts of this chunk the ranges cover, in order (several when a range ends
            // and the next begins inside it).
            let parts: Vec<std::ops::Range<usize>> = match ranges {
                None => std::iter::once(0..r.length as usize).collect(),
                Some(ranges) => ranges
                    .iter()
                    .filter(|g| g.start < end && start < g.end && g.start < g.end)
                    .map(|g| {
                        (g.start.max(start) - start) as usize..(g.end.min(end) - start) as usize
                    })
                    .collect(),
            };
            if !parts.is_empty() {
                expected += parts.iter().map(|p| p.len() as u64).sum::<u64>();
                wanted.push(*r);
                slices.push(parts);
            }
        }
        let lengths: Vec<u32> = wanted.iter().map(|r| r.length).collect();
        let batches = plan_batches(index, &wanted)?;
        let mut decoded = futures::stream::iter(batches)
            .map(|batch| async move {
                let bytes = read_pack_range(store, &batch.pack, batch.start..batch.end).await?;
                // A ranged read past the end of a truncated pack returns what there is: the
                // first chunk the bytes do not hold is damaged.
                if let Some((id, off, len)) = batch
                    .chunks
                    .iter()
                    .find(|(_, off, len)| off + len > bytes.len())
                {
                    return Err(ReadError::Damaged {
                        pack: batch.pack,
                        chunk: *id,
                        source: Box::new(BlobError::Short {
                            expected: *len as u64,
                            actual: bytes.len().saturating_sub(*off),
                        }),
                    });
                }
                let blob_at =
                    |off: usize, len: usize| bytes.get(off..off + len).unwrap_or_default();
                // Delta blobs decode against their base chunk, fetched first.
                let mut wanted: Vec<ChunkId> = batch
                    .chunks
                    .iter()
                    .filter_map(|(_, off, len)| blob_base(blob_at(*off, *len)))
                    .collect();
                wanted.sort();
                wanted.dedup();
                let bases: HashMap<ChunkId, Vec<u8>> = futures::stream::iter(wanted)
                    .map(|b| async move {
                        Ok::<_, ReadError>((b, fetch_stream_blob(store, index, key, b).await?.1))
                    })
                    .buffer_unordered(8)
                    .try_collect()
                    .await?;
                let key = *key;
                let sealer = store.sealer().cloned();
                tokio::task::spawn_blocking(move || -> Result<Vec<Vec<u8>>, ReadError> {
                    let pack = batch.pack;
                    batch
                        .chunks
                        .iter()
                        .map(|(id, off, len)| {
                            let blob = bytes.get(*off..*off + *len).unwrap_or_default();
                            let base = blob_base(blob)
                                .and_then(|b| bases.get(&b))
                                .map(Vec::as_slice);
                            decode_blob_with_base(&key, sealer.as_ref(), *id, blob, base)
                                .map(|(_, data)| data)
                                .map_err(|source| ReadError::Damaged {
                                    pack,
                                    chunk: *id,
                                    source: Box::new(source),
                                })
                        })
                        .collect()
                })
                .await
                .map_err(|_| ReadError::WorkerLost)?
            })
            .buffered(BATCHES_IN_FLIGHT);
        let mut next = 0;
        while let Some(chunks) = decoded.try_next().await? {
            for data in chunks {
                let (Some(want), Some(parts)) = (lengths.get(next), slices.get(next)) else {
                    return Err(ReadError::StreamMismatch {
                        what: "chunk count",
                    });
                };
                if data.len() != *want as usize {
                    return Err(ReadError::StreamMismatch {
                        what: "chunk length",
                    });
                }
                for part in parts {
                    let Some(part) = data.get(part.clone()) else {
                        return Err(ReadError::StreamMismatch {
                            what: "chunk length",
                        });
                    };
                    length += part.len() as u64;
                    out.write_all(part).await.map_err(ReadError::Write)?;
                    bytes_written.fetch_add(part.len() as u64, Ordering::Relaxed);
                }
                next += 1;
            }
        }
    }
    out.flush().await.map_err(ReadError::Write)?;
    let whole = ranges.is_none();
    if (whole && length != stream.length)
        || (!whole && (length != expected || offset != stream.length))
    {
        return Err(ReadError::StreamMismatch { what: "length" });
    }
    if digest.finalize().to_hex().as_str() != stream.chunks_blake3 {
        return Err(ReadError::StreamMismatch {
            what: "chunk sequence digest",
        });
    }
    Ok(length)
}

/// Loads every index file of the vault into one map.
pub async fn load_index(store: &VaultStore) -> Result<ChunkIndex, StoreError> {
    let mut index = ChunkIndex::default();
    let files = store.list(&paths::indexes()).await?;
    let loaded: Vec<_> = futures::stream::iter(files)
        .map(|path| async move {
            let bytes = store.get(&path).await?;
            super::pack::decode_index(&bytes, store.sealer()).map_err(|e| StoreError::Io {
                path: path.to_string(),
                source: object_store::Error::Generic {
                    store: "pgvault",
                    source: Box::new(e),
                },
            })
        })
        .buffer_unordered(8)
        .try_collect()
        .await?;
    for file in loaded {
        for (pack, entries) in file {
            index.add_pack(pack, &entries);
        }
    }
    Ok(index)
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use bytes::Bytes;
    use object_store::path::Path;
    use proptest::prelude::*;

    use super::*;
    use crate::manifest::Manifest;
    use crate::pack::read_pack_trailer;
    use crate::testing::{self, KEY};

    /// Two generations of one archive in an in-memory vault (the second partly stored as
    /// deltas against the first), as objects to build damaged copies from.
    struct Sample {
        objects: Vec<(Path, Bytes)>,
        first: Vec<u8>,
        first_manifest: Manifest,
        /// The chunks the first point needs (none of them deltas).
        first_needs: Vec<ChunkId>,
        data: Vec<u8>,
        manifest: Manifest,
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn sample() -> &'static Sample {
        static SAMPLE: OnceLock<Sample> = OnceLock::new();
        SAMPLE.get_or_init(|| {
            runtime().block_on(async {
                let store = VaultStore::open("memory://").unwrap();
                let first = testing::archive(3000, 1);
                let rp1 = testing::backup(&store, KEY, "db1", "rp1", first.clone(), None).await;
                let first_needs = testing::needed(&store, &KEY, &rp1).await;
                let data = testing::archive(3000, 2);
                let manifest =
                    testing::backup(&store, KEY, "db1", "rp2", data.clone(), Some(&rp1)).await;
                Sample {
                    objects: testing::snapshot(&store).await,
                    first,
                    first_manifest: rp1,
                    first_needs,
                    data,
                    manifest,
                }
            })
        })
    }

    async fn read(store: &VaultStore, stream: &StreamInfo) -> Result<Vec<u8>, ReadError> {
        let index = load_index(store).await?;
        let mut out = Vec::new();
        read_stream(store, &index, &KEY, stream, &mut out, Arc::default()).await?;
        Ok(out)
    }

    /// The sample's objects with the one at `path` replaced by `bytes`.
    fn replaced(path: &Path, bytes: Vec<u8>) -> Vec<(Path, Bytes)> {
        let mut objects = sample().objects.clone();
        for (p, b) in &mut objects {
            if p == path {
                *b = bytes.clone().into();
            }
        }
        objects
    }

    /// A pack of the first point's data chunks (no chunk-list block), with its entries: the
    /// first point reads them in batches, directly.
    fn data_pack() -> (PackId, Vec<PackEntry>) {
        let s = sample();
        let lists = &s.first_manifest.stream.chunk_lists;
        s.objects
            .iter()
            .filter_map(|(p, b)| Some((p.filename().and_then(PackId::from_hex)?, b)))
            .map(|(id, b)| (id, read_pack_trailer(b, None).unwrap()))
            .find(|(_, entries)| {
                entries.len() > 2
                    && entries
                        .iter()
                        .all(|e| !lists.contains(&e.id) && s.first_needs.contains(&e.id))
            })
            .expect("a pack of the first point's data chunks")
    }

    /// A batch is bounded by what its chunks decode to as well as by what it reads: 1,000
    /// chunks of 32 KiB stored in 1 KiB each, one after another in one pack, make batches of
    /// at most 8 MiB decoded, not one 1 MiB read that decodes to 32 MiB.
    #[test]
    fn batches_are_bounded_by_their_decoded_size() {
        let ids: Vec<ChunkId> = (0..1000u32)
            .map(|i| ChunkId(*blake3::hash(&i.to_le_bytes()).as_bytes()))
            .collect();
        let entries: Vec<PackEntry> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| PackEntry {
                id: *id,
                offset: i as u32 * 1024,
                length: 1024,
                raw_length: 32 << 10,
                base: None,
            })
            .collect();
        let mut index = ChunkIndex::default();
        index.add_pack(PackId([7; 32]), &entries);
        let refs: Vec<ChunkRef> = ids
            .iter()
            .map(|id| ChunkRef {
                id: *id,
                length: 32 << 10,
                head: 0,
            })
            .collect();
        let batches = plan_batches(&index, &refs).unwrap();
        assert_eq!(batches.len(), 4, "32 MiB decoded in batches of 8 MiB");
        for b in &batches {
            assert!(b.raw <= BATCH_RAW_BYTES && b.end - b.start <= BATCH_BYTES);
        }
        let planned: Vec<ChunkId> = batches
            .iter()
            .flat_map(|b| b.chunks.iter().map(|c| c.0))
            .collect();
        assert_eq!(planned, ids);
    }

    #[test]
    fn the_sample_reads_back_whole() {
        let s = sample();
        let (first, second) = runtime().block_on(async {
            let store = testing::store_from(&s.objects).await;
            (
                read(&store, &s.first_manifest.stream).await,
                read(&store, &s.manifest.stream).await,
            )
        });
        assert!(first.unwrap() == s.first);
        assert!(second.unwrap() == s.data);
    }

    #[test]
    fn a_truncated_pack_is_an_error_naming_the_pack_and_chunk() {
        let (pack, entries) = data_pack();
        // Cut through the pack's first chunk in stream order: the batch that reads it is
        // the first read of the pack, and comes back short.
        let s = sample();
        let order: Vec<ChunkId> = runtime().block_on(async {
            let store = testing::store_from(&s.objects).await;
            let index = load_index(&store).await.unwrap();
            let mut out = Vec::new();
            for list in &s.first_manifest.stream.chunk_lists {
                let (_, block) = fetch_blob(&store, &index, &KEY, *list).await.unwrap();
                out.extend(decode_chunk_list(&block).unwrap().iter().map(|r| r.id));
            }
            out
        });
        let e = order
            .iter()
            .find_map(|id| entries.iter().find(|e| e.id == *id))
            .copied()
            .unwrap();
        let path = paths::pack(&pack);
        let bytes = &sample().objects.iter().find(|(p, _)| *p == path).unwrap().1;
        let cut = (e.offset + e.length / 2) as usize;
        let objects = replaced(&path, bytes[..cut].to_vec());
        let err = runtime().block_on(async {
            read(
                &testing::store_from(&objects).await,
                &sample().first_manifest.stream,
            )
            .await
        });
        match err {
            Err(ReadError::Damaged {
                pack: p,
                chunk,
                source,
            }) if matches!(*source, BlobError::Short { .. }) => {
                assert_eq!(p, pack);
                assert!(entries.iter().any(|x| x.id == chunk));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ranges_out_of_order_are_an_error() {
        let s = sample();
        // A range that ends before it starts, as a forged table of contents could record.
        let reversed = std::ops::Range { start: 10, end: 5 };
        for ranges in [
            vec![0..2, reversed],
            vec![0..100, 50..60],
            vec![200..300, 0..10],
        ] {
            let got = runtime().block_on(async {
                let store = testing::store_from(&s.objects).await;
                let index = load_index(&store).await.unwrap();
                let mut out = Vec::new();
                read_stream_ranges(
                    &store,
                    &index,
                    &KEY,
                    &s.manifest.stream,
                    Some(&ranges),
                    &mut out,
                    Arc::default(),
                )
                .await
            });
            assert!(
                matches!(got, Err(ReadError::BadRanges(_))),
                "{ranges:?}: {got:?}"
            );
        }
    }

    #[test]
    fn a_data_chunk_named_as_a_chunk_list_is_an_error() {
        let (_, entries) = data_pack();
        let mut stream = sample().manifest.stream.clone();
        stream.chunk_lists.insert(0, entries[0].id);
        let got = runtime()
            .block_on(async { read(&testing::store_from(&sample().objects).await, &stream).await });
        assert!(matches!(got, Err(ReadError::BadChunkList(_))), "{got:?}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        /// A pack cut anywhere makes reading an error, or the stream exactly as written.
        #[test]
        fn a_pack_cut_anywhere_reads_back_as_an_error_or_the_original_stream(
            which in any::<proptest::sample::Index>(),
            cut in any::<proptest::sample::Index>(),
        ) {
            let s = sample();
            let packs: Vec<&(Path, Bytes)> =
                s.objects.iter().filter(|(p, _)| p.as_ref().starts_with("packs/")).collect();
            let (path, bytes) = which.get(&packs);
            let objects = replaced(path, bytes[..cut.index(bytes.len())].to_vec());
            let (first, second) = runtime().block_on(async {
                let store = testing::store_from(&objects).await;
                (
                    read(&store, &s.first_manifest.stream).await,
                    read(&store, &s.manifest.stream).await,
                )
            });
            if let Ok(data) = first {
                prop_assert!(data == s.first, "{path} cut, the first stream differs");
            }
            if let Ok(data) = second {
                prop_assert!(data == s.data, "{path} cut, the second stream differs");
            }
        }

        /// Damage to any pack or index file of a vault makes reading a recovery point back an
        /// error, or (where it missed what the point needs) the stream exactly as written.
        #[test]
        fn a_damaged_vault_reads_back_as_an_error_or_the_original_stream(
            which in any::<proptest::sample::Index>(),
            damages in testing::damages(),
        ) {
            let s = sample();
            let targets: Vec<&(Path, Bytes)> = s
                .objects
                .iter()
                .filter(|(p, _)| {
                    let p = p.as_ref();
                    p.starts_with("packs/") || p.starts_with("index/")
                })
                .collect();
            let (path, bytes) = which.get(&targets);
            let objects = replaced(path, testing::apply_all(&damages, bytes));
            let (first, second) = runtime().block_on(async {
                let store = testing::store_from(&objects).await;
                (
                    read(&store, &s.first_manifest.stream).await,
                    read(&store, &s.manifest.stream).await,
                )
            });
            if let Ok(data) = first {
                prop_assert!(data == s.first, "{path} damaged, the first stream differs");
            }
            if let Ok(data) = second {
                prop_assert!(data == s.data, "{path} damaged, the second stream differs");
            }
        }
    }
}
