//! The streaming write path: a dump stream in, packs and an index file out.
//!
//! ```text
//!  reader ──► chunker thread ──► N compressor threads ──► packer thread ──► upload task
//!            FastCDC, keyed       zstd per chunk          packs of ~8 MiB    object store
//!            BLAKE3, dedup,
//!            archive scan
//! ```
//!
//! Every hand-off is a bounded channel, so memory is bounded by the channel capacities,
//! the largest chunk and a few packs, never by the size of the database. CPU-bound work
//! runs on plain threads (not tokio's blocking pool) because it lives as long as the
//! dump; only the uploads are async. The chunker decides ordering and dedup alone, so the
//! chunk list is in stream order whatever order the compressors finish in.

use std::collections::HashSet;
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use super::chunk::{ChunkId, ChunkKind, encode_blob};
use super::manifest::{
    ChunkRef, ChunkerParams, REFS_PER_LIST_BLOCK, StreamInfo, encode_chunk_list,
};
use super::pack::{ChunkIndex, PackBuilder, PackEntry, PackId, encode_index};
use super::{StoreError, VaultStore, paths};
use crate::postgres::archive::{ArchiveScanner, ArchiveSummary};

/// How a vault cuts and stores streams (from `vault.json`).
#[derive(Clone, Debug)]
pub struct WriterConfig {
    pub chunk_key: [u8; 32],
    pub chunker: ChunkerParams,
    pub zstd_level: i32,
    pub pack_target_size: usize,
    pub compressor_threads: usize,
}

/// Counters a caller can read while the stream is written (for progress and jobs).
#[derive(Debug, Default)]
pub struct Progress {
    pub bytes_read: AtomicU64,
    pub bytes_stored: AtomicU64,
}

#[derive(Debug)]
pub struct StreamOutcome {
    pub stream: StreamInfo,
    /// The scanned table of contents, or why the stream was not a readable custom archive.
    pub archive: Result<ArchiveSummary, String>,
    pub bytes_stored: u64,
    pub new_chunks: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("reading the dump stream failed: {0}")]
    Read(std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("a backup worker thread stopped unexpectedly")]
    WorkerLost,
}

struct NewChunk {
    kind: ChunkKind,
    id: ChunkId,
    data: Vec<u8>,
}

struct Blob {
    id: ChunkId,
    raw_len: usize,
    bytes: Vec<u8>,
}

struct Pack {
    id: PackId,
    bytes: Vec<u8>,
    entries: Vec<PackEntry>,
}

/// Writes `reader` into the vault and returns what the manifest needs. The index file for
/// the packs written is stored before returning, so the chunks are findable even if the
/// caller then decides not to write a manifest (a retried backup reuses them).
pub async fn write_stream<R: Read + Send + 'static>(
    store: &VaultStore,
    known: Arc<ChunkIndex>,
    cfg: &WriterConfig,
    reader: R,
    progress: Arc<Progress>,
) -> Result<StreamOutcome, WriteError> {
    let workers = cfg.compressor_threads.max(1);
    let (chunk_tx, chunk_rx) = crossbeam_channel::bounded::<NewChunk>(workers * 2);
    let (blob_tx, blob_rx) = crossbeam_channel::bounded::<Blob>(workers * 2);
    // One pack queued while one uploads and one fills: ~3 packs of memory.
    let (pack_tx, mut pack_rx) = tokio::sync::mpsc::channel::<Pack>(1);

    let chunker = {
        let cfg = cfg.clone();
        let progress = progress.clone();
        std::thread::Builder::new()
            .name("pgvault-chunker".into())
            .spawn(move || chunk_stream(reader, &cfg, &known, chunk_tx, &progress))
            .expect("spawn chunker thread")
    };
    let mut compressors = Vec::with_capacity(workers);
    for i in 0..workers {
        let rx = chunk_rx.clone();
        let tx = blob_tx.clone();
        let level = cfg.zstd_level;
        compressors.push(
            std::thread::Builder::new()
                .name(format!("pgvault-zstd-{i}"))
                .spawn(move || {
                    for c in rx {
                        let bytes = encode_blob(c.kind, &c.data, level);
                        if tx
                            .send(Blob {
                                id: c.id,
                                raw_len: c.data.len(),
                                bytes,
                            })
                            .is_err()
                        {
                            break;
                        }
                    }
                })
                .expect("spawn compressor thread"),
        );
    }
    drop((chunk_rx, blob_tx));
    let target = cfg.pack_target_size;
    let packer = std::thread::Builder::new()
        .name("pgvault-packer".into())
        .spawn(move || {
            let mut builder = PackBuilder::with_capacity(target + target / 8);
            for blob in blob_rx {
                builder.push(blob.id, blob.raw_len, &blob.bytes);
                if builder.len() >= target {
                    let full = std::mem::replace(
                        &mut builder,
                        PackBuilder::with_capacity(target + target / 8),
                    );
                    let (id, bytes, entries) = full.finish();
                    if pack_tx.blocking_send(Pack { id, bytes, entries }).is_err() {
                        return;
                    }
                }
            }
            if !builder.is_empty() {
                let (id, bytes, entries) = builder.finish();
                let _ = pack_tx.blocking_send(Pack { id, bytes, entries });
            }
        })
        .expect("spawn packer thread");

    // Upload packs as they come. On an upload error, dropping the receiver makes every
    // upstream send fail, so the threads wind down on their own.
    let mut written: Vec<(PackId, Vec<PackEntry>)> = Vec::new();
    let mut bytes_stored = 0u64;
    let mut upload_result = Ok(());
    while let Some(pack) = pack_rx.recv().await {
        let len = pack.bytes.len() as u64;
        if let Err(e) = store
            .put(&paths::pack(&pack.id), Bytes::from(pack.bytes))
            .await
        {
            upload_result = Err(e);
            break;
        }
        bytes_stored += len;
        progress.bytes_stored.fetch_add(len, Ordering::Relaxed);
        written.push((pack.id, pack.entries));
    }
    drop(pack_rx);

    let joined = tokio::task::spawn_blocking(move || {
        let chunked = chunker.join();
        let compressed = compressors.into_iter().map(|h| h.join()).all(|r| r.is_ok());
        let packed = packer.join().is_ok();
        (chunked, compressed && packed)
    })
    .await
    .map_err(|_| WriteError::WorkerLost)?;

    // Index what was uploaded even when something failed, so the chunks are reusable.
    if !written.is_empty() {
        let name = uuid::Uuid::new_v4().to_string();
        let index = encode_index(&written);
        bytes_stored += index.len() as u64;
        store.put(&paths::index(&name), index.into()).await?;
        let mut objects: Vec<_> = written.iter().map(|(id, _)| paths::pack(id)).collect();
        objects.push(paths::index(&name));
        store.make_durable(&objects).await?;
    }
    upload_result?;
    let (chunked, workers_ok) = joined;
    let chunked = chunked.map_err(|_| WriteError::WorkerLost)?;
    if !workers_ok {
        return Err(WriteError::WorkerLost);
    }
    let (stream, archive, new_chunks) = chunked?;
    Ok(StreamOutcome {
        stream,
        archive,
        bytes_stored,
        new_chunks,
    })
}

/// A reader that shows every byte it passes to the archive scanner and the stream hash.
struct Observed<R> {
    inner: R,
    scanner: ArchiveScanner,
    hasher: blake3::Hasher,
    length: u64,
    progress: Arc<Progress>,
}

impl<R: Read> Read for Observed<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.scanner.feed(&buf[..n]);
        self.hasher.update(&buf[..n]);
        self.length += n as u64;
        self.progress
            .bytes_read
            .fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

type ChunkerOutput = (StreamInfo, Result<ArchiveSummary, String>, u64);

fn chunk_stream<R: Read>(
    reader: R,
    cfg: &WriterConfig,
    known: &ChunkIndex,
    tx: crossbeam_channel::Sender<NewChunk>,
    progress: &Arc<Progress>,
) -> Result<ChunkerOutput, WriteError> {
    let mut observed = Observed {
        inner: reader,
        scanner: ArchiveScanner::new(),
        hasher: blake3::Hasher::new(),
        length: 0,
        progress: progress.clone(),
    };
    let key = cfg.chunk_key;
    let mut session: HashSet<ChunkId> = HashSet::new();
    let mut new_chunks = 0u64;
    let mut chunk_count = 0u64;
    let mut block: Vec<ChunkRef> = Vec::with_capacity(REFS_PER_LIST_BLOCK);
    let mut lists: Vec<ChunkId> = Vec::new();

    // Sends a chunk on unless the vault or this backup already has it.
    let mut offer = |kind: ChunkKind, id: ChunkId, data: Vec<u8>| -> Result<(), WriteError> {
        if known.contains(&id) || !session.insert(id) {
            return Ok(());
        }
        new_chunks += 1;
        tx.send(NewChunk { kind, id, data })
            .map_err(|_| WriteError::WorkerLost)
    };

    {
        let p = &cfg.chunker;
        let cdc = fastcdc::v2020::StreamCDC::new(&mut observed, p.min_size, p.avg_size, p.max_size);
        for chunk in cdc {
            let chunk = chunk.map_err(|e| match e {
                fastcdc::v2020::Error::IoError(io) => WriteError::Read(io),
                other => WriteError::Read(std::io::Error::other(other.to_string())),
            })?;
            let id = ChunkId::of(&key, &chunk.data);
            block.push(ChunkRef {
                id,
                length: chunk.length as u32,
            });
            chunk_count += 1;
            offer(ChunkKind::Data, id, chunk.data)?;
            if block.len() == REFS_PER_LIST_BLOCK {
                let bytes = encode_chunk_list(&block);
                let list_id = ChunkId::of(&key, &bytes);
                lists.push(list_id);
                offer(ChunkKind::ChunkList, list_id, bytes)?;
                block.clear();
            }
        }
    }
    if !block.is_empty() {
        let bytes = encode_chunk_list(&block);
        let list_id = ChunkId::of(&key, &bytes);
        lists.push(list_id);
        offer(ChunkKind::ChunkList, list_id, bytes)?;
    }
    let Observed {
        scanner,
        hasher,
        length,
        ..
    } = observed;
    let stream = StreamInfo {
        length,
        blake3: hasher.finalize().to_hex().to_string(),
        chunk_count,
        chunk_lists: lists,
    };
    let archive = scanner.finish().map_err(|e| e.to_string());
    Ok((stream, archive, new_chunks))
}
