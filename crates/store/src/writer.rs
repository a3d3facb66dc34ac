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

use super::chunk::{ChunkId, ChunkKind, encode_blob, encode_delta_blob, seal_blob};
use super::manifest::{
    ChunkRef, ChunkerParams, REFS_PER_LIST_BLOCK, StreamInfo, decode_chunk_list, digest_chunk,
    encode_chunk_list, head_fingerprint,
};
use super::observe::{ObserveError, Recorded, StreamObserver};
use super::pack::{ChunkIndex, PackBuilder, PackEntry, PackId, encode_index};
use super::reader::{ReadError, fetch_blob};
use super::{StoreError, VaultStore, paths};

/// How a vault cuts and stores streams (from `vault.json`).
#[derive(Clone, Debug)]
pub struct WriterConfig {
    pub chunk_key: [u8; 32],
    pub chunker: ChunkerParams,
    pub zstd_level: i32,
    pub pack_target_size: usize,
    pub compressor_threads: usize,
    /// Compress the stream's start harder ([`DENSE_PREFIX`]). Worth it where the start is
    /// much of the stream: a backup turns it off for a large database (see
    /// `engine::backup::DENSE_PREFIX_UP_TO`), where it would cost a fixed few tenths of a
    /// second and save a fraction of a percent.
    pub dense_prefix: bool,
}

/// Counters a caller can read while the stream is written (for progress and jobs).
#[derive(Debug, Default)]
pub struct Progress {
    pub bytes_read: AtomicU64,
    /// Every byte the backup added to the vault so far: packs and index files as they are
    /// stored, and at the end (by the backup engine) the manifest.
    pub bytes_stored: AtomicU64,
    /// New chunks that had a delta base to try, and those stored as deltas.
    pub delta_candidates: AtomicU64,
    pub delta_chunks: AtomicU64,
    /// Bytes of packs named by an index file: what a retry of a failed or killed backup
    /// would find and not upload again. `checkpointed` is notified when it grows.
    pub bytes_indexed: AtomicU64,
    pub checkpointed: tokio::sync::Notify,
    /// A pack the dedup index names was found gone while the stream was written (by a delta
    /// base or chunk-list fetch): chunks referenced from it would be missing, so the write
    /// fails rather than make a recovery point that cannot restore.
    pub pack_vanished: std::sync::Mutex<Option<String>>,
}

impl Progress {
    fn note_vanished(&self, e: &ReadError) {
        if let ReadError::Store(s) = e
            && s.is_not_found()
            && let Ok(mut v) = self.pack_vanished.lock()
        {
            v.get_or_insert_with(|| s.to_string());
        }
    }
}

#[derive(Debug)]
pub struct StreamOutcome {
    pub stream: StreamInfo,
    /// What the stream's observer recorded (a custom archive's table of contents), or why
    /// the stream is not whole in its format.
    pub archive: Result<Recorded, ObserveError>,
    /// The packs and index files written (everything but the manifest, which the caller
    /// writes).
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
    #[error(
        "a pack the backup deduplicated against disappeared during the backup ({0}), so no recovery point was made; run `pgvault backup-vault check`, then `pgvault backup-vault repair`, and back up again"
    )]
    PackVanished(String),
}

/// The start of every stream is compressed harder than the vault's level: up to each end
/// offset, at least that zstd level. A small database is all start, so its backup stores
/// less than `pg_dump -Fc`'s zlib file (at level 1 alone, words and numbers came out at
/// about zlib's size, and the packs' and manifest's own bytes then tipped it over); a large
/// one pays a fixed ~0.3 s of CPU for it (shared by the compressor threads), whatever its
/// size (each such chunk is compressed at the vault's level too, and the smaller kept). On
/// a rental-shaped sample's 3.2 MB stream in 32 KiB chunks, level 15 (zstd's
/// optimal parsing) stored 19% less than level 1 at about 6 MB/s against 400, level 7 5%
/// less at about 60 MB/s; levels 2 to 5 stored no less than level 1.
pub const DENSE_PREFIX: [(u64, i32); 2] = [(1 << 20, 15), (8 << 20, 7)];

/// The zstd level for a chunk that starts at `offset` of the stream.
pub fn level_at(offset: u64, vault_level: i32) -> i32 {
    DENSE_PREFIX
        .iter()
        .find(|(end, _)| offset < *end)
        .map_or(vault_level, |(_, level)| (*level).max(vault_level))
}

/// A chunk's blob at `level`, or at `vault_level` where that is smaller: a higher level is
/// not smaller on every input (random hex text came out 7% larger at level 7 than at 1).
fn encode_at(kind: ChunkKind, data: &[u8], level: i32, vault_level: i32) -> Vec<u8> {
    let bytes = encode_blob(kind, data, level);
    if level == vault_level {
        return bytes;
    }
    let plain = encode_blob(kind, data, vault_level);
    if plain.len() < bytes.len() {
        plain
    } else {
        bytes
    }
}

struct NewChunk {
    kind: ChunkKind,
    id: ChunkId,
    data: Vec<u8>,
    /// The zstd level to store it at ([`level_at`]).
    level: i32,
    /// A full chunk of the previous recovery point to try as a delta base.
    base: Option<ChunkId>,
}

struct Blob {
    kind: ChunkKind,
    id: ChunkId,
    raw_len: usize,
    bytes: Vec<u8>,
}

struct Pack {
    id: PackId,
    bytes: Vec<u8>,
    entries: Vec<PackEntry>,
    /// A pack of chunk-list blocks only, kept in the online tier of a tiered store.
    lists: bool,
}

/// Packs uploaded at once. Memory holds at most this many packs in flight plus the one
/// queued and the one filling.
pub const UPLOAD_CONCURRENCY: usize = 4;

/// Uploaded packs are indexed every this many (~128 MiB at the default pack size), so a
/// backup that is killed, or loses its connection for good, leaves its chunks findable and
/// the retry uploads only what came after the last checkpoint.
pub const CHECKPOINT_PACKS: usize = 16;

/// Packs uploaded and not yet named by an index file.
struct Uploaded {
    store: VaultStore,
    progress: Arc<Progress>,
    pending: Vec<(PackId, Vec<PackEntry>, u64)>,
    bytes_stored: u64,
}

impl Uploaded {
    /// Writes an index file for the pending packs, after making them durable: an index
    /// never names a pack a power cut could lose.
    async fn checkpoint(&mut self) -> Result<(), StoreError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let packs: Vec<_> = self
            .pending
            .iter()
            .map(|(id, _, _)| paths::pack(id))
            .collect();
        self.store.make_durable(&packs).await?;
        let name = paths::index(&uuid::Uuid::new_v4().to_string());
        let bytes: u64 = self.pending.iter().map(|(_, _, len)| len).sum();
        let entries: Vec<_> = self
            .pending
            .drain(..)
            .map(|(id, entries, _)| (id, entries))
            .collect();
        let index = encode_index(&entries, self.store.sealer());
        let index_len = index.len() as u64;
        self.store.put(&name, index.into()).await?;
        // Counted once stored: an index file stays in the vault like the packs it names.
        self.bytes_stored += index_len;
        self.progress
            .bytes_stored
            .fetch_add(index_len, Ordering::Relaxed);
        self.store.make_durable(std::slice::from_ref(&name)).await?;
        pgvault_os::fault::point("index-checkpoint");
        self.progress
            .bytes_indexed
            .fetch_add(bytes, Ordering::Relaxed);
        self.progress.checkpointed.notify_waiters();
        Ok(())
    }
}

/// Writes `reader` into the vault and returns what the manifest needs. Index files for
/// the packs written are stored as it goes ([`CHECKPOINT_PACKS`]) and before returning, so
/// the chunks are findable even if the caller then decides not to write a manifest, or
/// the process dies (a retried backup reuses them).
///
/// `previous` is the instance's last recovery point's stream, if any: each new chunk is
/// tried as a delta against the chunk that held the same stretch of that stream.
pub async fn write_stream<R: Read + Send + 'static>(
    store: &VaultStore,
    known: Arc<ChunkIndex>,
    cfg: &WriterConfig,
    reader: R,
    progress: Arc<Progress>,
    previous: Option<StreamInfo>,
    observer: Box<dyn StreamObserver>,
) -> Result<StreamOutcome, WriteError> {
    let runtime = tokio::runtime::Handle::current();
    let workers = cfg.compressor_threads.max(1);
    let (chunk_tx, chunk_rx) = crossbeam_channel::bounded::<NewChunk>(workers * 2);
    let (blob_tx, blob_rx) = crossbeam_channel::bounded::<Blob>(workers * 2);
    // One pack queued while UPLOAD_CONCURRENCY upload and one fills.
    let (pack_tx, mut pack_rx) = tokio::sync::mpsc::channel::<Pack>(1);

    let chunker = {
        let cfg = cfg.clone();
        let progress = progress.clone();
        let known = known.clone();
        let aligner = previous.map(|p| {
            Aligner::new(
                store.clone(),
                known.clone(),
                runtime.clone(),
                cfg.chunk_key,
                p.chunk_lists,
            )
            .reporting_to(progress.clone())
        });
        std::thread::Builder::new()
            .name("pgvault-chunker".into())
            .spawn(move || {
                chunk_stream(reader, observer, &cfg, &known, chunk_tx, &progress, aligner)
            })
            .expect("spawn chunker thread")
    };
    let mut compressors = Vec::with_capacity(workers);
    for i in 0..workers {
        let rx = chunk_rx.clone();
        let tx = blob_tx.clone();
        let (store, known, runtime, key) =
            (store.clone(), known.clone(), runtime.clone(), cfg.chunk_key);
        let vault_level = cfg.zstd_level;
        let progress = progress.clone();
        compressors.push(
            std::thread::Builder::new()
                .name(format!("pgvault-zstd-{i}"))
                .spawn(move || {
                    for c in rx {
                        let level = c.level;
                        let mut bytes = encode_at(c.kind, &c.data, level, vault_level);
                        if let Some(base_id) = c.base {
                            progress.delta_candidates.fetch_add(1, Ordering::Relaxed);
                            // A base that cannot be read only costs the saving, not the backup.
                            let base = runtime.block_on(fetch_blob(&store, &known, &key, base_id));
                            if let Err(e) = &base {
                                progress.note_vanished(e);
                            }
                            if let Ok((_, base)) = base
                                && let Some(delta) = encode_delta_blob(
                                    c.kind,
                                    &c.data,
                                    base_id,
                                    &base,
                                    level,
                                    bytes.len(),
                                )
                            {
                                bytes = delta;
                                progress.delta_chunks.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        // Sealed last: compression and the delta decision see the clear bytes.
                        if let Some(sealer) = store.sealer() {
                            bytes = seal_blob(sealer, &c.id, bytes);
                        }
                        if tx
                            .send(Blob {
                                kind: c.kind,
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
    // In a store whose data packs go to an offline access tier, chunk-list blocks get packs of
    // their own that stay online: garbage collection, `check` and a rehydration's planning
    // read them without rehydrating anything.
    let separate_lists = store.pack_tier().is_some();
    let sealer = store.sealer().cloned();
    let packer = std::thread::Builder::new()
        .name("pgvault-packer".into())
        .spawn(move || {
            let new_builder = || PackBuilder::with_capacity(target + target / 8);
            let mut builder = new_builder();
            let mut lists = PackBuilder::default();
            for blob in blob_rx {
                if separate_lists && blob.kind == ChunkKind::ChunkList {
                    lists.push(blob.id, blob.raw_len, &blob.bytes);
                    continue;
                }
                builder.push(blob.id, blob.raw_len, &blob.bytes);
                if builder.len() >= target {
                    let full = std::mem::replace(&mut builder, new_builder());
                    let (id, bytes, entries) = full.finish(sealer.as_ref());
                    let pack = Pack {
                        id,
                        bytes,
                        entries,
                        lists: false,
                    };
                    if pack_tx.blocking_send(pack).is_err() {
                        return;
                    }
                }
            }
            for (last, lists) in [(builder, false), (lists, true)] {
                if !last.is_empty() {
                    let (id, bytes, entries) = last.finish(sealer.as_ref());
                    let pack = Pack {
                        id,
                        bytes,
                        entries,
                        lists,
                    };
                    if pack_tx.blocking_send(pack).is_err() {
                        return;
                    }
                }
            }
        })
        .expect("spawn packer thread");

    // Upload packs as they come, up to UPLOAD_CONCURRENCY at once (a remote store's latency,
    // not its bandwidth, bounds one upload at a time). On an upload error, dropping the
    // receiver makes every upstream send fail, so the threads wind down on their own.
    let mut uploaded = Uploaded {
        store: store.clone(),
        progress: progress.clone(),
        pending: Vec::new(),
        bytes_stored: 0,
    };
    let mut in_flight = futures::stream::FuturesUnordered::new();
    let mut upload_result = Ok(());
    let mut more = true;
    while more || !in_flight.is_empty() {
        tokio::select! {
            pack = pack_rx.recv(), if more && in_flight.len() < UPLOAD_CONCURRENCY => {
                let Some(pack) = pack else {
                    more = false;
                    continue;
                };
                let store = store.clone();
                in_flight.push(async move {
                    let len = pack.bytes.len() as u64;
                    let (path, bytes) = (paths::pack(&pack.id), Bytes::from(pack.bytes));
                    let put = if pack.lists {
                        store.put(&path, bytes).await
                    } else {
                        store.put_data_pack(&path, bytes).await
                    };
                    put.map(|()| (pack.id, pack.entries, len))
                });
            }
            Some(done) = futures::StreamExt::next(&mut in_flight) => match done {
                Ok((id, entries, len)) => {
                    pgvault_os::fault::point("pack-stored");
                    progress.bytes_stored.fetch_add(len, Ordering::Relaxed);
                    uploaded.bytes_stored += len;
                    uploaded.pending.push((id, entries, len));
                    if uploaded.pending.len() >= CHECKPOINT_PACKS
                        && let Err(e) = uploaded.checkpoint().await
                    {
                        upload_result = Err(e);
                        break;
                    }
                }
                Err(e) => {
                    upload_result = Err(e);
                    break;
                }
            },
        }
    }
    // Uploads still running after a failure are dropped: their packs may or may not land,
    // and are not indexed, so nothing refers to them (GC removes them).
    drop(in_flight);
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
    uploaded.checkpoint().await?;
    let bytes_stored = uploaded.bytes_stored;
    upload_result?;
    let (chunked, workers_ok) = joined;
    let chunked = chunked.map_err(|_| WriteError::WorkerLost)?;
    if !workers_ok {
        return Err(WriteError::WorkerLost);
    }
    let (stream, archive, new_chunks) = chunked?;
    if let Some(vanished) = progress.pack_vanished.lock().ok().and_then(|v| v.clone()) {
        return Err(WriteError::PackVanished(vanished));
    }
    Ok(StreamOutcome {
        stream,
        archive,
        bytes_stored,
        new_chunks,
    })
}

/// A reader that shows every byte it passes to the stream's observer.
struct Observed<R> {
    inner: R,
    observer: Box<dyn StreamObserver>,
    length: u64,
    progress: Arc<Progress>,
}

impl<R: Read> Read for Observed<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.observer.observe(&buf[..n]);
        self.length += n as u64;
        self.progress
            .bytes_read
            .fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

type ChunkerOutput = (StreamInfo, Result<Recorded, ObserveError>, u64);

fn chunk_stream<R: Read>(
    reader: R,
    observer: Box<dyn StreamObserver>,
    cfg: &WriterConfig,
    known: &ChunkIndex,
    tx: crossbeam_channel::Sender<NewChunk>,
    progress: &Arc<Progress>,
    mut aligner: Option<Aligner>,
) -> Result<ChunkerOutput, WriteError> {
    let mut observed = Observed {
        inner: reader,
        observer,
        length: 0,
        progress: progress.clone(),
    };
    let key = cfg.chunk_key;
    let mut session: HashSet<ChunkId> = HashSet::new();
    let mut new_chunks = 0u64;
    let mut chunk_count = 0u64;
    let mut block: Vec<ChunkRef> = Vec::with_capacity(REFS_PER_LIST_BLOCK);
    let mut lists: Vec<ChunkId> = Vec::new();
    let mut digest = blake3::Hasher::new();

    // Sends a chunk on unless the vault or this backup already has it. Data chunks keep
    // the aligner in step with the previous stream and get a delta base from it.
    // `at` is a data chunk's offset in the stream and its head fingerprint.
    let mut offer = |kind: ChunkKind,
                     id: ChunkId,
                     data: Vec<u8>,
                     at: Option<(u64, u64)>|
     -> Result<(), WriteError> {
        let aligner = aligner.as_mut().zip(at);
        if known.contains(&id) || !session.insert(id) {
            if let Some((a, (at, _))) = aligner {
                a.matched(id, at);
            }
            return Ok(());
        }
        new_chunks += 1;
        // Chunk-list blocks (ids and lengths) hardly compress: the vault's level.
        let level = match at {
            Some((at, _)) if cfg.dense_prefix => level_at(at, cfg.zstd_level),
            _ => cfg.zstd_level,
        };
        let base = aligner.and_then(|(a, (at, head))| a.base_for(at, data.len() as u64, head));
        tx.send(NewChunk {
            kind,
            id,
            data,
            level,
            base,
        })
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
            let head = head_fingerprint(&chunk.data);
            let r = ChunkRef {
                id,
                length: chunk.length as u32,
                head,
            };
            digest_chunk(&mut digest, &r);
            block.push(r);
            chunk_count += 1;
            offer(ChunkKind::Data, id, chunk.data, Some((chunk.offset, head)))?;
            if block.len() == REFS_PER_LIST_BLOCK {
                let bytes = encode_chunk_list(&block);
                let list_id = ChunkId::of(&key, &bytes);
                lists.push(list_id);
                offer(ChunkKind::ChunkList, list_id, bytes, None)?;
                block.clear();
            }
        }
    }
    if !block.is_empty() {
        let bytes = encode_chunk_list(&block);
        let list_id = ChunkId::of(&key, &bytes);
        lists.push(list_id);
        offer(ChunkKind::ChunkList, list_id, bytes, None)?;
    }
    let Observed {
        observer, length, ..
    } = observed;
    let stream = StreamInfo {
        length,
        chunks_blake3: digest.finalize().to_hex().to_string(),
        chunk_count,
        chunk_lists: lists,
    };
    let archive = observer.finish();
    Ok((stream, archive, new_chunks))
}

/// How far ahead in the previous stream a reappearing chunk is looked for.
const ALIGN_WINDOW: usize = 256;

/// One chunk of the previous stream and where it lay in it.
#[derive(Clone, Copy)]
struct OldChunk {
    id: ChunkId,
    head: u64,
    start: u64,
    end: u64,
}

/// Walks the previous recovery point's chunk list in step with the new stream, to name for
/// each new chunk the old chunk that held the same stretch of the stream: its delta base.
///
/// Alignment is by content first, then by byte offset. Chunk boundaries are content-defined,
/// so a chunk changed in its middle starts with its predecessor's bytes: an old chunk near
/// the expected position with the same head fingerprint is the base, and re-measures the
/// *drift* (old offset minus new offset), as does every chunk both streams share. Failing
/// that, a new chunk at offset `x` is paired with the old chunk that overlaps most with
/// `[x + drift, x + drift + len)`. So a table where every chunk lost a row still pairs
/// each chunk with its predecessor, though the offsets slide. The old list is read
/// a block at a time and only a window of it is held, so memory stays bounded. Bases are
/// always full chunks: a base that is itself a delta is replaced by its own base.
pub(crate) struct Aligner {
    store: VaultStore,
    known: Arc<ChunkIndex>,
    runtime: tokio::runtime::Handle,
    key: [u8; 32],
    lists: std::vec::IntoIter<ChunkId>,
    pending: std::vec::IntoIter<ChunkRef>,
    /// Where the next chunk pulled from `pending` starts in the old stream.
    next_start: u64,
    window: std::collections::VecDeque<OldChunk>,
    drift: i64,
    /// Where a pack found gone is reported (see [`Progress::pack_vanished`]).
    progress: Option<Arc<Progress>>,
}

impl Aligner {
    pub(crate) fn new(
        store: VaultStore,
        known: Arc<ChunkIndex>,
        runtime: tokio::runtime::Handle,
        key: [u8; 32],
        lists: Vec<ChunkId>,
    ) -> Self {
        Aligner {
            store,
            known,
            runtime,
            key,
            lists: lists.into_iter(),
            pending: Vec::new().into_iter(),
            next_start: 0,
            window: std::collections::VecDeque::with_capacity(ALIGN_WINDOW),
            drift: 0,
            progress: None,
        }
    }

    fn reporting_to(mut self, progress: Arc<Progress>) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Pulls one more old chunk into the window; false at the end of the old stream.
    fn pull(&mut self) -> bool {
        loop {
            if let Some(r) = self.pending.next() {
                let start = self.next_start;
                self.next_start += u64::from(r.length);
                self.window.push_back(OldChunk {
                    id: r.id,
                    head: r.head,
                    start,
                    end: self.next_start,
                });
                return true;
            }
            let Some(list) = self.lists.next() else {
                return false;
            };
            // A list block that cannot be read ends the alignment, not the backup.
            let fetched =
                self.runtime
                    .block_on(fetch_blob(&self.store, &self.known, &self.key, list));
            if let (Err(e), Some(progress)) = (&fetched, &self.progress) {
                progress.note_vanished(e);
            }
            match fetched
                .ok()
                .and_then(|(_, bytes)| decode_chunk_list(&bytes))
            {
                Some(refs) => self.pending = refs.into_iter(),
                None => {
                    self.lists = Vec::new().into_iter();
                    return false;
                }
            }
        }
    }

    /// Drops old chunks that end before `target` and fills the window ahead of it.
    fn advance_to(&mut self, target: u64) {
        loop {
            while self.window.front().is_some_and(|c| c.end <= target) {
                self.window.pop_front();
            }
            if self.window.len() >= ALIGN_WINDOW || !self.pull() {
                return;
            }
        }
    }

    fn target(&self, new_offset: u64) -> u64 {
        (new_offset as i64 + self.drift).max(0) as u64
    }

    /// A chunk the vault already has went by at `new_offset` of the new stream.
    fn matched(&mut self, id: ChunkId, new_offset: u64) {
        self.advance_to(self.target(new_offset));
        if let Some(k) = self.window.iter().position(|c| c.id == id) {
            self.drift = self.window[k].start as i64 - new_offset as i64;
            self.window.drain(..=k);
        }
    }

    /// The base for a new chunk at `new_offset` of `len` bytes whose head fingerprint is
    /// `head`.
    fn base_for(&mut self, new_offset: u64, len: u64, head: u64) -> Option<ChunkId> {
        let start = self.target(new_offset);
        let end = start + len;
        // Look a little behind the expected position too: the drift may be stale.
        self.advance_to(start.saturating_sub(len));
        let best = match self.window.iter().position(|c| c.head == head) {
            Some(k) => {
                let c = self.window[k];
                self.drift = c.start as i64 - new_offset as i64;
                self.window.drain(..=k);
                c
            }
            None => *self
                .window
                .iter()
                .take_while(|c| c.start < end)
                .max_by_key(|c| c.end.min(end).saturating_sub(c.start.max(start)))?,
        };
        let base = self.known.base_of(&best.id).unwrap_or(best.id);
        self.known.contains(&base).then_some(base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::{load_index, read_stream};

    fn config() -> WriterConfig {
        WriterConfig {
            chunk_key: [9; 32],
            chunker: ChunkerParams {
                algorithm: "fastcdc-2020".into(),
                min_size: 8192,
                avg_size: 16384,
                max_size: 65536,
            },
            zstd_level: 3,
            pack_target_size: 1 << 20,
            compressor_threads: 2,
            dense_prefix: true,
        }
    }

    /// Rows like a COPY of a table: ~150 bytes of poorly compressible text each.
    fn rows(n: u32, changed: impl Fn(u32) -> bool) -> Vec<u8> {
        (0..n)
            .flat_map(|i| {
                let tag = if changed(i) { "updated" } else { "original" };
                format!("{i}\t{}\t{tag}\n", blake3::hash(&i.to_le_bytes()).to_hex()).into_bytes()
            })
            .collect()
    }

    /// Writes `data`; returns the outcome and how many new chunks were stored as deltas.
    async fn write_counting(
        store: &VaultStore,
        data: &[u8],
        previous: Option<StreamInfo>,
    ) -> (StreamOutcome, u64) {
        let known = Arc::new(load_index(store).await.unwrap());
        let reader = std::io::Cursor::new(data.to_vec());
        let progress = Arc::new(Progress::default());
        let out = write_stream(
            store,
            known,
            &config(),
            reader,
            progress.clone(),
            previous,
            crate::testing::archive_observer(),
        )
        .await
        .unwrap();
        (out, progress.delta_chunks.load(Ordering::Relaxed))
    }

    async fn write(store: &VaultStore, data: &[u8], previous: Option<StreamInfo>) -> StreamOutcome {
        write_counting(store, data, previous).await.0
    }

    async fn read(store: &VaultStore, stream: &StreamInfo) -> Vec<u8> {
        let index = load_index(store).await.unwrap();
        let mut out = Vec::new();
        read_stream(
            store,
            &index,
            &config().chunk_key,
            stream,
            &mut out,
            Arc::default(),
        )
        .await
        .unwrap();
        out
    }

    /// A reader that blocks, like a `pg_dump` that hangs, until its sender is dropped.
    struct Hang(std::sync::mpsc::Receiver<()>);

    impl Read for Hang {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            let _ = self.0.recv();
            Err(std::io::Error::other("the dump was killed"))
        }
    }

    /// A backup killed part way (its task dropped: no final index, as with SIGKILL) leaves
    /// what it uploaded indexed at its last checkpoint, so the retry uploads only the rest.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_killed_write_leaves_its_checkpoints_for_the_retry() {
        let store = VaultStore::open("memory://").unwrap();
        let cfg = WriterConfig {
            pack_target_size: 64 << 10,
            ..config()
        };
        // Incompressible, so stored bytes track dump bytes.
        let mut data = vec![0u8; 4 << 20];
        blake3::Hasher::new()
            .update(b"checkpoints")
            .finalize_xof()
            .fill(&mut data);

        let (hang_tx, hang_rx) = std::sync::mpsc::channel::<()>();
        let progress = Arc::new(Progress::default());
        let killed = tokio::spawn({
            let (store, cfg, progress) = (store.clone(), cfg.clone(), progress.clone());
            let reader = std::io::Cursor::new(data.clone()).chain(Hang(hang_rx));
            async move {
                let known = Arc::new(ChunkIndex::default());
                write_stream(
                    &store,
                    known,
                    &cfg,
                    reader,
                    progress,
                    None,
                    crate::testing::archive_observer(),
                )
                .await
            }
        });
        // Wait (on the writer's own notification) until half the data is indexed; a writer
        // that never checkpoints fails here rather than hanging the suite.
        let half = data.len() as u64 / 2;
        let indexed = async {
            loop {
                let checkpointed = progress.checkpointed.notified();
                if progress.bytes_indexed.load(Ordering::Relaxed) >= half {
                    break;
                }
                checkpointed.await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(120), indexed)
            .await
            .expect("no checkpoint indexed half of the data");
        killed.abort();
        assert!(killed.await.unwrap_err().is_cancelled());
        drop(hang_tx);

        let known = Arc::new(load_index(&store).await.unwrap());
        let progress = Arc::new(Progress::default());
        let retry = write_stream(
            &store,
            known,
            &cfg,
            std::io::Cursor::new(data.clone()),
            progress,
            None,
            crate::testing::archive_observer(),
        )
        .await
        .unwrap();
        assert!(
            retry.bytes_stored < data.len() as u64 / 2,
            "the retry stored {} of {} bytes again",
            retry.bytes_stored,
            data.len()
        );
        assert!(retry.new_chunks < retry.stream.chunk_count / 2);
        assert_eq!(read(&store, &retry.stream).await, data);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn scattered_changes_store_deltas_and_read_back_exactly() {
        let store = VaultStore::open("memory://").unwrap();
        let first = rows(40_000, |_| false);
        let a = write(&store, &first, None).await;
        assert!(
            a.stream.chunk_count > 100,
            "{} chunks",
            a.stream.chunk_count
        );

        // Unchanged: nothing but an index file is new.
        let same = write(&store, &first, Some(a.stream.clone())).await;
        assert_eq!(same.new_chunks, 0);

        // 1% of rows changed, spread evenly: nearly every chunk differs from before.
        let second = rows(40_000, |i| i % 100 == 7);
        let (b, deltas) = write_counting(&store, &second, Some(a.stream.clone())).await;
        // Every changed data chunk pairs with its predecessor; only the chunk-list block is not a delta.
        assert!(
            deltas * 100 >= b.new_chunks * 95,
            "{deltas} deltas of {} new chunks",
            b.new_chunks
        );
        assert!(
            b.new_chunks * 10 > a.stream.chunk_count * 8,
            "most chunks changed: {} of {}",
            b.new_chunks,
            a.stream.chunk_count
        );
        // About 6%: the deltas themselves are ~100 bytes; pack and index entries and the new
        // chunk list cost about as much again.
        assert!(
            b.bytes_stored * 10 < a.bytes_stored,
            "deltas should store under 10% of the first backup: {} of {}",
            b.bytes_stored,
            a.bytes_stored
        );
        // Without a previous stream the same change costs nearly a full copy.
        let store2 = VaultStore::open("memory://").unwrap();
        let a2 = write(&store2, &first, None).await;
        let b2 = write(&store2, &second, None).await;
        assert!(b2.bytes_stored * 2 > a2.bytes_stored);

        assert_eq!(read(&store, &a.stream).await, first);
        assert_eq!(read(&store, &b.stream).await, second);

        // A third generation bases its deltas on full chunks only (depth one) and reads back.
        let third = rows(40_000, |i| i % 100 == 7 || i % 100 == 42);
        let c = write(&store, &third, Some(b.stream.clone())).await;
        assert!(
            c.bytes_stored * 10 < a.bytes_stored,
            "{} of {}",
            c.bytes_stored,
            a.bytes_stored
        );
        let index = load_index(&store).await.unwrap();
        let mut delta_of_delta = 0;
        for list in &c.stream.chunk_lists {
            let (_, bytes) = fetch_blob(&store, &index, &config().chunk_key, *list)
                .await
                .unwrap();
            for r in decode_chunk_list(&bytes).unwrap() {
                if let Some(base) = index.base_of(&r.id) {
                    delta_of_delta += usize::from(index.base_of(&base).is_some());
                }
            }
        }
        assert_eq!(delta_of_delta, 0);
        assert_eq!(read(&store, &c.stream).await, third);
    }

    /// Without the dense prefix every chunk is stored at the vault's level, and the stream
    /// reads back the same either way.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_dense_prefix_can_be_turned_off() {
        let words: Vec<u8> = (0..60_000u32)
            .flat_map(|i| {
                format!("{i}\trental of film {}\tcustomer {}\n", i % 997, i % 599).into_bytes()
            })
            .collect();
        let mut stored = Vec::new();
        for dense_prefix in [true, false] {
            let store = VaultStore::open("memory://").unwrap();
            let cfg = WriterConfig {
                dense_prefix,
                ..config()
            };
            let out = write_stream(
                &store,
                Arc::new(ChunkIndex::default()),
                &cfg,
                std::io::Cursor::new(words.clone()),
                Arc::new(Progress::default()),
                None,
                crate::testing::archive_observer(),
            )
            .await
            .unwrap();
            assert_eq!(read(&store, &out.stream).await, words);
            stored.push(out.bytes_stored);
        }
        assert!(
            stored[0] < stored[1],
            "dense {} plain {}",
            stored[0],
            stored[1]
        );
    }

    /// The harder level is kept only where it is smaller (on words and on random hex), so no
    /// chunk is stored larger than at the vault's level.
    #[test]
    fn a_harder_level_never_stores_more() {
        let hex: Vec<u8> = (0..1000u32)
            .flat_map(|i| {
                blake3::hash(&i.to_le_bytes()).to_hex()[..32]
                    .as_bytes()
                    .to_vec()
            })
            .collect();
        let words: Vec<u8> = (0..4000u32)
            .map(|i| {
                ["film ", "actor ", "rental ", "of the ", "drama ", "epic "][(i * 7 % 6) as usize]
            })
            .collect::<String>()
            .into_bytes();
        for data in [&hex, &words] {
            let plain = encode_blob(ChunkKind::Data, data, 1);
            for level in [7, 15] {
                let got = encode_at(ChunkKind::Data, data, level, 1);
                let hard = encode_blob(ChunkKind::Data, data, level);
                assert_eq!(got.len(), plain.len().min(hard.len()));
            }
        }
    }

    #[test]
    fn the_streams_start_is_compressed_harder() {
        for (offset, vault, want) in [
            (0, 1, 15),
            ((1 << 20) - 1, 1, 15),
            (1 << 20, 1, 7),
            ((8 << 20) - 1, 3, 7),
            (8 << 20, 1, 1),
            (u64::MAX, 3, 3),
            (0, 19, 19),
            (1 << 20, 9, 9),
        ] {
            assert_eq!(
                level_at(offset, vault),
                want,
                "offset {offset}, vault level {vault}"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn byte_ranges_read_back_exactly_what_they_cover() {
        let store = VaultStore::open("memory://").unwrap();
        let data = rows(20_000, |_| false);
        let out = write(&store, &data, None).await;
        let n = data.len() as u64;
        let index = load_index(&store).await.unwrap();
        // Ranges that start and end inside chunks, two inside one chunk, and the stream's end.
        let ranges = [0..100u64, 150..170, 40_000..90_000, n - 10..n];
        let mut got = Vec::new();
        let written = crate::reader::read_stream_ranges(
            &store,
            &index,
            &config().chunk_key,
            &out.stream,
            Some(&ranges),
            &mut got,
            Arc::default(),
        )
        .await
        .unwrap();
        let want: Vec<u8> = ranges
            .iter()
            .flat_map(|r| data[r.start as usize..r.end as usize].to_vec())
            .collect();
        assert_eq!(written, want.len() as u64);
        assert!(got == want, "the ranges' bytes, in order");
    }
}
