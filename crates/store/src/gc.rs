//! Garbage collection: removing the data no recovery point references any more.
//!
//! When the retention sweep deletes a manifest, the chunks only it named stay in their packs.
//! Garbage collection finds them and reclaims the space. It runs under the vault's exclusive
//! lock (see [`super::lock`]): no backup may be about to reference a chunk it deletes, no
//! restore may be reading a pack it removes.
//!
//! 1. **Mark.** Read every manifest (any unreadable one stops the collection: data it names
//!    must not be taken for garbage), every chunk-list block they name, and the delta base of
//!    every referenced delta. A chunk stored in several packs (a repack interrupted earlier)
//!    is claimed by one of them, the fullest.
//! 2. **Plan.** A pack none of whose chunks is claimed is *dead*. A pack whose claimed bytes
//!    are under [`REPACK_BELOW`] of its size is *sparse*: its live blobs are copied into new
//!    packs and it dies too. Packs in the store that no index file lists are left by killed
//!    backups (a backup indexes its packs before writing its manifest) and are dead.
//! 3. **Repack.** Write the new packs, then one index file listing every surviving pack and
//!    the new ones, and make them durable.
//! 4. **Swap indexes.** Delete the old index files.
//! 5. **Delete** the dead packs.
//!
//! Steps 4 and 5 delete, so with [`collect_garbage_guarded`] each deletion is preceded by
//! [`DestructiveGuard::ensure_held`]: a collection whose process lost the vault's
//! destructive-operation guard stops there, leaving what a crash would.
//!
//! Killed at any point, the vault stays consistent: until step 4 every old index still names
//! packs that exist; after it, the only index names only surviving packs; dead packs left by
//! an interrupted step 5, and new packs written by an interrupted step 3, are listed by no
//! index and are deleted by the next collection. The tests stop a collection after every step
//! and every deletion and check that the next one finishes the work.

use std::collections::{HashMap, HashSet};

use object_store::path::Path;

use super::chunk::{ChunkId, ChunkKind, blob_base, decode_blob_with_base};
use super::lease::DestructiveGuard;
use super::lock::LockError;
use super::manifest::decode_chunk_list;
use super::pack::{ChunkIndex, PackBuilder, PackEntry, PackId, decode_index, encode_index};
use super::reader::{fetch_blob, fetch_trailer};
use super::{StoreError, VaultStore, paths};

/// A pack whose live bytes are under this fraction of its size is rewritten.
pub const REPACK_BELOW: f64 = 0.5;

/// The points between which a collection can be stopped (by a crash, or by the tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GcStep {
    Marked,
    /// One new pack written by the repack.
    PackWritten,
    IndexWritten,
    /// One old index file deleted.
    IndexDeleted,
    /// One dead pack deleted.
    PackDeleted,
}

/// What a collection found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GcReport {
    pub recovery_points: usize,
    pub referenced_chunks: usize,
    pub packs_before: usize,
    /// Packs no chunk of which is referenced, including unindexed ones.
    pub dead_packs: usize,
    /// Packs no index listed (left by killed backups or interrupted collections).
    pub unindexed_packs: usize,
    pub repacked_packs: usize,
    pub new_packs: usize,
    pub bytes_freed: u64,
    /// Bytes of the new packs the repack wrote.
    pub bytes_written: u64,
    pub index_files_replaced: usize,
    /// Manifests that were read but are damaged (checksum, truncation, not a manifest):
    /// marked conservatively, every chunk id found in their bytes (and what such a chunk-list
    /// block lists) kept, so a salvage loses nothing to the collection.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub damaged_manifests: Vec<String>,
    /// Chunks a recovery point needs that no pack holds (lost, as `backup-vault repair`
    /// reports): nothing to keep for them.
    #[serde(skip_serializing_if = "is_zero")]
    pub lost_chunks: usize,
    /// Dead packs left in place because Blob Storage still holds them under a retention
    /// policy (an immutable vault's; a killed backup's pack is protected before its manifest
    /// would have been written): deleted by a later collection once the policy ends.
    #[serde(skip_serializing_if = "is_zero")]
    pub retained_packs: usize,
    /// Whether the collection ran to the end (`false` when the hook stopped it).
    pub finished: bool,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Every 64-hex-digit run in `bytes`, as a chunk id: what a damaged manifest may still name.
fn hex_ids(bytes: &[u8]) -> HashSet<ChunkId> {
    let mut out = HashSet::new();
    let mut run = 0usize;
    for (i, b) in bytes.iter().enumerate() {
        if b.is_ascii_hexdigit() {
            run += 1;
            if run >= 64
                && let Some(id) = std::str::from_utf8(&bytes[i + 1 - 64..=i])
                    .ok()
                    .and_then(ChunkId::from_hex)
            {
                out.insert(id);
            }
        } else {
            run = 0;
        }
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "garbage collection stopped before deleting anything: {what}. The vault needs checking \
         (`pgvault backup-vault check`); no data was removed"
    )]
    Damaged { what: String },
    /// The destructive-operation guard was lost (see [`super::lease`]).
    #[error(transparent)]
    Guard(#[from] LockError),
}

struct PackInfo {
    entries: Vec<PackEntry>,
    size: u64,
}

/// Collects the garbage of one store (the vault tier or the archive tier). `hook` is called
/// after each step; returning `false` stops the collection there, as a crash would.
pub async fn collect_garbage(
    store: &VaultStore,
    key: &[u8; 32],
    pack_target_size: usize,
    hook: impl FnMut(GcStep) -> bool,
) -> Result<GcReport, GcError> {
    collect_garbage_guarded(store, key, pack_target_size, None, hook).await
}

/// [`collect_garbage`] that checks `guard` is still held before each deletion.
pub async fn collect_garbage_guarded(
    store: &VaultStore,
    key: &[u8; 32],
    pack_target_size: usize,
    guard: Option<&DestructiveGuard>,
    hook: impl FnMut(GcStep) -> bool,
) -> Result<GcReport, GcError> {
    collect_garbage_with(store, key, pack_target_size, guard, Repack::Sparse, hook).await
}

/// Whether a collection may rewrite packs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Repack {
    /// Sparse packs' live chunks are copied into new packs and the old packs deleted.
    Sparse,
    /// Only packs no recovery point references are deleted; a pack holding any live chunk is
    /// never rewritten. An immutable vault's collection: a live point's data stays in the
    /// objects it was written to (which Blob Storage may hold under a retention policy).
    Never,
}

/// [`collect_garbage_guarded`], repacking as `repack` says.
pub async fn collect_garbage_with(
    store: &VaultStore,
    key: &[u8; 32],
    pack_target_size: usize,
    guard: Option<&DestructiveGuard>,
    repack: Repack,
    mut hook: impl FnMut(GcStep) -> bool,
) -> Result<GcReport, GcError> {
    let ensure_held = async || match guard {
        Some(guard) => guard.ensure_held().await,
        None => Ok(()),
    };
    let mut report = GcReport::default();
    let damaged = |what: String| GcError::Damaged { what };

    // ---- what exists ----
    let index_files = store.list(&paths::indexes()).await?;
    let mut packs: HashMap<PackId, PackInfo> = HashMap::new();
    let mut index = ChunkIndex::default();
    for path in &index_files {
        let bytes = store.get(path).await?;
        let decoded = decode_index(&bytes, store.sealer())
            .map_err(|e| damaged(format!("index file `{path}`: {e}")))?;
        for (pack, entries) in decoded {
            index.add_pack(pack, &entries);
            packs.entry(pack).or_insert(PackInfo { entries, size: 0 });
        }
    }
    let mut unindexed: Vec<(Path, u64)> = Vec::new();
    for meta in store.list_with_sizes(&Path::from("packs")).await? {
        let id = meta
            .0
            .filename()
            .and_then(PackId::from_hex)
            .filter(|id| paths::pack(id) == meta.0);
        match id.and_then(|id| packs.get_mut(&id)) {
            Some(info) => info.size = meta.1,
            None => unindexed.push(meta),
        }
    }
    if let Some((id, _)) = packs.iter().find(|(_, info)| info.size == 0) {
        return Err(damaged(format!(
            "pack {} is listed in an index but missing from the store; `pgvault backup-vault repair` drops it from the index and lists what is lost",
            id.to_hex()
        )));
    }
    report.packs_before = packs.len() + unindexed.len();
    report.unindexed_packs = unindexed.len();

    // ---- mark ----
    let manifests = store.list(&paths::recovery_points_root()).await?;
    let mut referenced: HashSet<ChunkId> = HashSet::new();
    // Referenced chunks no index lists: lost, or in a pack only a lost index file named.
    let mut unindexed_needed: Vec<(ChunkId, String)> = Vec::new();
    for path in manifests.iter().filter(|p| p.as_ref().ends_with(".json")) {
        // A manifest that cannot be read (a storage error) stops the collection.
        let bytes = store.get(path).await?;
        let manifest = match crate::manifest::open_manifest(store.sealer(), &bytes) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(manifest = %path, error = %e, "a damaged manifest: every chunk id in its bytes is kept");
                report.damaged_manifests.push(path.to_string());
                for id in hex_ids(&bytes) {
                    if !index.contains(&id) {
                        continue;
                    }
                    referenced.insert(id);
                    if let Ok((ChunkKind::ChunkList, block)) =
                        fetch_blob(store, &index, key, id).await
                    {
                        referenced.extend(
                            decode_chunk_list(&block)
                                .into_iter()
                                .flatten()
                                .map(|r| r.id),
                        );
                    }
                }
                continue;
            }
        };
        report.recovery_points += 1;
        for list in &manifest.stream.chunk_lists {
            referenced.insert(*list);
            if !index.contains(list) {
                unindexed_needed.push((*list, format!("chunk list {list} of `{path}`")));
                continue;
            }
            let (kind, block) = fetch_blob(store, &index, key, *list)
                .await
                .map_err(|e| damaged(format!("chunk list {list} of `{path}`: {e}")))?;
            let refs = decode_chunk_list(&block)
                .filter(|_| kind == ChunkKind::ChunkList)
                .ok_or_else(|| damaged(format!("chunk list {list} of `{path}` is malformed")))?;
            for r in refs {
                if !index.contains(&r.id) {
                    unindexed_needed.push((r.id, format!("chunk {} of `{path}`", r.id)));
                }
                referenced.insert(r.id);
            }
        }
    }
    // A needed chunk in a pack no index lists means the index is incomplete (an index file
    // lost): that pack would be deleted as a killed backup's, so the collection stops. A
    // needed chunk in no pack at all is lost already; there is nothing to keep for it.
    if !unindexed_needed.is_empty() {
        let mut in_unindexed: HashSet<ChunkId> = HashSet::new();
        for (path, size) in &unindexed {
            let Some(id) = path.filename().and_then(PackId::from_hex) else {
                continue;
            };
            match fetch_trailer(store, &id, *size).await? {
                Ok(entries) => in_unindexed.extend(entries.iter().map(|e| e.id)),
                Err(e) => {
                    return Err(damaged(format!(
                        "recovery points need chunks no index lists, and the trailer of unindexed pack {id} cannot be read ({e}); `pgvault backup-vault repair` sorts this out"
                    )));
                }
            }
        }
        if let Some((_, what)) = unindexed_needed
            .iter()
            .find(|(id, _)| in_unindexed.contains(id))
        {
            return Err(damaged(format!(
                "{what} is only in a pack no index lists; `pgvault backup-vault reindex` indexes it again"
            )));
        }
        let lost: HashSet<ChunkId> = unindexed_needed.iter().map(|(id, _)| *id).collect();
        report.lost_chunks = lost.len();
        tracing::warn!(
            lost = lost.len(),
            "recovery points need chunks no pack holds (see `pgvault backup-vault repair`); collecting around them"
        );
    }
    // Delta bases. A chunk may be stored in several packs, once whole and once as a delta
    // (two backups stored it at once), so every copy's base is kept, until nothing changes.
    let mut base_of: HashMap<ChunkId, Vec<ChunkId>> = HashMap::new();
    for info in packs.values() {
        for e in &info.entries {
            if let Some(base) = e.base {
                base_of.entry(e.id).or_default().push(base);
            }
        }
    }
    let mut frontier: Vec<ChunkId> = referenced.iter().copied().collect();
    while let Some(id) = frontier.pop() {
        for base in base_of.get(&id).into_iter().flatten() {
            if referenced.insert(*base) {
                frontier.push(*base);
            }
        }
    }
    report.referenced_chunks = referenced.len();

    // Each referenced chunk is claimed by one pack, the fullest holding it.
    let mut order: Vec<(&PackId, usize)> = packs
        .iter()
        .map(|(id, info)| {
            let live = info
                .entries
                .iter()
                .filter(|e| referenced.contains(&e.id))
                .count();
            (id, live)
        })
        .collect();
    order.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.0.cmp(&b.0.0)));
    let mut claimed: HashSet<ChunkId> = HashSet::new();
    let mut live_entries: HashMap<PackId, Vec<PackEntry>> = HashMap::new();
    for (id, _) in &order {
        let live: Vec<PackEntry> = packs[*id]
            .entries
            .iter()
            .filter(|e| referenced.contains(&e.id) && claimed.insert(e.id))
            .copied()
            .collect();
        live_entries.insert(**id, live);
    }
    if !hook(GcStep::Marked) {
        return Ok(report);
    }

    // ---- plan ----
    // A store whose data packs sit in an access tier (an archive tier on Blob Storage) is
    // never repacked: a repack reads packs, and archived ones cannot be read without a
    // rehydration of hours; and rewriting one early is charged anyway (Archive bills 180 days
    // from archiving, Cold 90, however soon a blob is deleted). Only wholly unreferenced packs
    // go, which needs no pack read: chunk-list blocks there live in online packs.
    let rewrite = store.pack_tier().is_none() && repack == Repack::Sparse;
    let mut keep: Vec<(PackId, Vec<PackEntry>)> = Vec::new();
    let mut sparse: Vec<(PackId, Vec<PackEntry>)> = Vec::new();
    let mut dead: Vec<(Path, u64)> = unindexed;
    let mut by_id: Vec<(&PackId, &PackInfo)> = packs.iter().collect();
    by_id.sort_by_key(|(id, _)| id.0);
    for (id, info) in by_id {
        let live = &live_entries[id];
        let live_bytes: u64 = live.iter().map(|e| u64::from(e.length)).sum();
        if live.is_empty() {
            dead.push((paths::pack(id), info.size));
        } else if rewrite && (live_bytes as f64) < REPACK_BELOW * info.size as f64 {
            sparse.push((*id, live.clone()));
            dead.push((paths::pack(id), info.size));
        } else {
            // The new index lists the pack's referenced chunks only: a dead delta left listed
            // could be found by a later backup and named again after its base was deleted.
            let listed: Vec<PackEntry> = info
                .entries
                .iter()
                .filter(|e| referenced.contains(&e.id))
                .copied()
                .collect();
            keep.push((*id, listed));
        }
    }
    report.dead_packs = dead.len() - sparse.len();
    report.repacked_packs = sparse.len();
    let nothing_to_do = dead.is_empty() && index_files.len() <= 1;
    if nothing_to_do {
        report.finished = true;
        return Ok(report);
    }

    // ---- repack ----
    let mut written: Vec<Path> = Vec::new();
    let mut builder = PackBuilder::with_capacity(pack_target_size);
    for (id, live) in &sparse {
        let bytes = store.get(&paths::pack(id)).await?;
        for e in live {
            let blob = bytes
                .get(e.offset as usize..e.offset as usize + e.length as usize)
                .ok_or_else(|| {
                    damaged(format!("pack {} is shorter than its index", id.to_hex()))
                })?;
            // The blob is checked against its id before it moves: a repack never spreads
            // corruption into a new pack.
            let base = match blob_base(blob) {
                Some(b) => Some(
                    fetch_blob(store, &index, key, b)
                        .await
                        .map_err(|err| damaged(format!("base {b} of chunk {} : {err}", e.id)))?,
                ),
                None => None,
            };
            decode_blob_with_base(
                key,
                store.sealer(),
                e.id,
                blob,
                base.as_ref().map(|(_, d)| d.as_slice()),
            )
            .map_err(|err| damaged(format!("chunk {} in pack {}: {err}", e.id, id.to_hex())))?;
            builder.push(e.id, e.raw_length as usize, blob);
            if builder.len() >= pack_target_size {
                let full =
                    std::mem::replace(&mut builder, PackBuilder::with_capacity(pack_target_size));
                if !write_pack(store, full, &mut keep, &mut written, &mut report, &mut hook).await?
                {
                    return Ok(report);
                }
                report.new_packs += 1;
            }
        }
    }
    if !builder.is_empty() {
        if !write_pack(
            store,
            builder,
            &mut keep,
            &mut written,
            &mut report,
            &mut hook,
        )
        .await?
        {
            return Ok(report);
        }
        report.new_packs += 1;
    }

    // ---- one index for everything that survives ----
    keep.sort_by_key(|(id, _)| id.0);
    let new_index = paths::index(&uuid::Uuid::new_v4().to_string());
    store
        .put(&new_index, encode_index(&keep, store.sealer()).into())
        .await?;
    written.push(new_index.clone());
    store.make_durable(&written).await?;
    if !hook(GcStep::IndexWritten) {
        return Ok(report);
    }
    for path in index_files.iter().filter(|p| **p != new_index) {
        ensure_held().await?;
        store.delete_if_present(path).await?;
        report.index_files_replaced += 1;
        if !hook(GcStep::IndexDeleted) {
            return Ok(report);
        }
    }

    // ---- delete ----
    // A repack can write a pack identical to one an interrupted collection wrote and left
    // unindexed: packs are named by their content, so that pack is now kept, not dead.
    let surviving: HashSet<Path> = keep.iter().map(|(id, _)| paths::pack(id)).collect();
    dead.retain(|(path, _)| !surviving.contains(path));
    for (path, size) in &dead {
        ensure_held().await?;
        // An immutable vault's collection on Blob Storage asks first: a pack still under a
        // retention policy would refuse the deletion, and stop the collection.
        if repack == Repack::Never
            && let Some(rest) = store.blob_rest()
            && rest
                .properties(path.as_ref())
                .await
                .map_err(|e| StoreError::Azure {
                    url: store.url().to_owned(),
                    reason: e.message,
                })?
                .immutability_policy_until
                .is_some_and(|until| until > chrono::Utc::now())
        {
            report.retained_packs += 1;
            continue;
        }
        store.delete_if_present(path).await?;
        report.bytes_freed += size;
        if !hook(GcStep::PackDeleted) {
            return Ok(report);
        }
    }
    report.finished = true;
    Ok(report)
}

async fn write_pack(
    store: &VaultStore,
    builder: PackBuilder,
    keep: &mut Vec<(PackId, Vec<PackEntry>)>,
    written: &mut Vec<Path>,
    report: &mut GcReport,
    hook: &mut impl FnMut(GcStep) -> bool,
) -> Result<bool, GcError> {
    let (id, bytes, entries) = builder.finish(store.sealer());
    report.bytes_written += bytes.len() as u64;
    let path = paths::pack(&id);
    store.put(&path, bytes.into()).await?;
    written.push(path);
    keep.push((id, entries));
    Ok(hook(GcStep::PackWritten))
}

#[cfg(test)]
mod tests {
    use crate::manifest::Manifest;
    use std::sync::Arc;

    use super::*;
    use crate::manifest::{
        BackupStats, ChunkerParams, DatasourceInfo, MANIFEST_FORMAT, PostgresInfo, StreamInfo,
    };
    use crate::reader::{load_index, read_stream};
    use crate::writer::{Progress, WriterConfig, write_stream};

    const KEY: [u8; 32] = [7; 32];
    const PACK: usize = 256 << 10;

    fn config() -> WriterConfig {
        WriterConfig {
            chunk_key: KEY,
            chunker: ChunkerParams {
                algorithm: "fastcdc-2020".into(),
                min_size: 4096,
                avg_size: 8192,
                max_size: 32768,
            },
            zstd_level: 1,
            pack_target_size: PACK,
            compressor_threads: 2,
            dense_prefix: true,
        }
    }

    /// A table dump's worth of rows; `generation` changes every 50th row.
    fn rows(n: u32, generation: u32) -> Vec<u8> {
        (0..n)
            .flat_map(|i| {
                let g = if i % 50 == generation % 50 {
                    generation
                } else {
                    0
                };
                format!("{i}\t{}\t{g}\n", blake3::hash(&i.to_le_bytes()).to_hex()).into_bytes()
            })
            .collect()
    }

    fn manifest(id: &str, stream: StreamInfo) -> Manifest {
        Manifest {
            format_version: MANIFEST_FORMAT,
            recovery_point_id: id.into(),
            backup_instance_name: "db".into(),
            recovery_point_time: chrono::DateTime::UNIX_EPOCH,
            policy_name: "P".into(),
            policy_rule_name: "BackupWeekly".into(),
            retention_tag_name: "Default".into(),
            expiry_time: None,
            rehydration_expiry_time: None,
            job_id: String::new(),
            datasource: DatasourceInfo {
                resource_id: "postgres://h/db".into(),
                server: "h".into(),
                port: 5432,
                database: "db".into(),
            },
            postgres: PostgresInfo {
                server_version: "17".into(),
                pg_dump_version: "17".into(),
                database_size: 0,
                username_used: "u".into(),
            },
            chunker: config().chunker,
            stream,
            archive: None,
            contents: None,
            stats: BackupStats {
                bytes_read: 0,
                bytes_stored: 0,
                new_chunks: 0,
                duration_ms: 0,
            },
        }
    }

    /// Backs up `data` as recovery point `id` (with the previous point's stream for deltas).
    async fn backup(
        store: &VaultStore,
        id: &str,
        data: Vec<u8>,
        previous: Option<StreamInfo>,
    ) -> StreamInfo {
        let known = Arc::new(load_index(store).await.unwrap());
        let out = write_stream(
            store,
            known,
            &config(),
            std::io::Cursor::new(data),
            Arc::new(Progress::default()),
            previous,
            crate::testing::archive_observer(),
        )
        .await
        .unwrap();
        store
            .put(
                &paths::recovery_point("db", id),
                manifest(id, out.stream.clone()).to_bytes().into(),
            )
            .await
            .unwrap();
        out.stream
    }

    async fn read(store: &VaultStore, stream: &StreamInfo) -> Vec<u8> {
        let index = load_index(store).await.unwrap();
        let mut out = Vec::new();
        read_stream(store, &index, &KEY, stream, &mut out, Arc::default())
            .await
            .unwrap();
        out
    }

    async fn pack_bytes(store: &VaultStore) -> u64 {
        let packs = store.list_with_sizes(&Path::from("packs")).await.unwrap();
        packs.iter().map(|(_, size)| size).sum()
    }

    /// Five generations of a table, each backed up with deltas against the one before, and a
    /// backup killed after storing its packs but before indexing them. The first three
    /// recovery points are then deleted, as the retention sweep would. Returns the store and
    /// the streams (with their data) of the two points that remain.
    async fn vault_with_garbage() -> (VaultStore, Vec<(StreamInfo, Vec<u8>)>) {
        vault_with_garbage_in(VaultStore::open("memory://").unwrap()).await
    }

    async fn vault_with_garbage_in(store: VaultStore) -> (VaultStore, Vec<(StreamInfo, Vec<u8>)>) {
        let mut previous = None;
        let mut kept = Vec::new();
        for generation in 0..5u32 {
            // Generation 3 replaces most rows, so deleting its predecessors leaves sparse packs.
            let data = if generation == 3 {
                rows(30_000, 77).into_iter().rev().collect()
            } else {
                rows(30_000, generation)
            };
            let stream = backup(
                &store,
                &format!("rp{generation}"),
                data.clone(),
                previous.clone(),
            )
            .await;
            if generation >= 3 {
                kept.push((stream.clone(), data));
            }
            previous = Some(stream);
        }
        // A killed backup: a pack stored, no index file, no manifest.
        let mut orphan = PackBuilder::default();
        let blob = crate::chunk::encode_blob(ChunkKind::Data, b"orphan chunk", 1);
        orphan.push(ChunkId::of(&KEY, b"orphan chunk"), 12, &blob);
        let (id, bytes, _) = orphan.finish(None);
        store.put(&paths::pack(&id), bytes.into()).await.unwrap();
        for generation in 0..3 {
            store
                .delete(&paths::recovery_point("db", &format!("rp{generation}")))
                .await
                .unwrap();
        }
        (store, kept)
    }

    async fn assert_intact(store: &VaultStore, kept: &[(StreamInfo, Vec<u8>)]) {
        for (stream, data) in kept {
            assert!(
                read(store, stream).await == *data,
                "a kept recovery point reads back"
            );
        }
    }

    /// An immutable vault's collection deletes the dead packs but rewrites none that holds a
    /// live chunk: every surviving pack is one that was there before, byte for byte.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_repacking_only_dead_packs_go_and_live_packs_are_untouched() {
        let (store, kept) = vault_with_garbage().await;
        let before: Vec<(Path, u64)> = store.list_with_sizes(&paths::packs_root()).await.unwrap();
        let report = collect_garbage_with(&store, &KEY, PACK, None, Repack::Never, |_| true)
            .await
            .unwrap();
        assert!(report.finished);
        assert_eq!(
            (report.repacked_packs, report.new_packs),
            (0, 0),
            "{report:?}"
        );
        assert!(report.dead_packs >= 1, "{report:?}");
        let after: Vec<(Path, u64)> = store.list_with_sizes(&paths::packs_root()).await.unwrap();
        assert!(after.len() < before.len(), "dead packs were deleted");
        assert!(
            after.iter().all(|p| before.contains(p)),
            "no pack was written: {after:?}"
        );
        assert_intact(&store, &kept).await;
        // The same vault collected with repacking would have rewritten a sparse pack.
        let repacked = collect_garbage(&store, &KEY, PACK, |_| true).await.unwrap();
        assert!(repacked.repacked_packs >= 1, "{repacked:?}");
    }

    /// On Blob Storage, an immutable vault's collection leaves a dead pack still under a
    /// retention policy where it is (a deletion would be refused) and deletes it once the
    /// policy has ended. Blob Storage is the double of its documented immutability headers.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dead_packs_under_a_retention_policy_wait_for_its_end() {
        use crate::azure::{AzureAuth, AzureLocation, EMULATOR_ACCOUNT_KEY};
        use crate::blob_rest::BlobRest;
        use crate::testing::immutability_double;

        let (port, _seen, blobs) = immutability_double(chrono::Utc::now()).await;
        let rest = BlobRest::new(
            AzureLocation::parse("az://devstoreaccount1/vault")
                .unwrap()
                .unwrap(),
            AzureAuth::Emulator {
                endpoint: format!("http://127.0.0.1:{port}"),
                key: EMULATOR_ACCOUNT_KEY.into(),
            },
        );
        let store = VaultStore::open("memory://").unwrap().with_blob_rest(rest);
        let (store, kept) = vault_with_garbage_in(store).await;
        let packs: Vec<(Path, u64)> = store.list_with_sizes(&paths::packs_root()).await.unwrap();
        let hold = |until: chrono::DateTime<chrono::Utc>| {
            let mut blobs = blobs.lock().unwrap();
            for (path, _) in &packs {
                let held = blobs
                    .entry(format!("/devstoreaccount1/vault/{path}"))
                    .or_default();
                held.until = Some(until);
                held.mode = Some("Unlocked".into());
            }
        };
        hold(chrono::Utc::now() + chrono::TimeDelta::days(30));
        let report = collect_garbage_with(&store, &KEY, PACK, None, Repack::Never, |_| true)
            .await
            .unwrap();
        assert!(report.finished);
        assert!(report.retained_packs >= 2, "{report:?}");
        assert_eq!(report.bytes_freed, 0, "{report:?}");
        assert_eq!(
            store.list_with_sizes(&paths::packs_root()).await.unwrap(),
            packs,
            "every pack is still there"
        );
        assert_intact(&store, &kept).await;

        hold(chrono::Utc::now() - chrono::TimeDelta::days(1));
        let report = collect_garbage_with(&store, &KEY, PACK, None, Repack::Never, |_| true)
            .await
            .unwrap();
        assert_eq!(report.retained_packs, 0, "{report:?}");
        assert!(
            report.dead_packs >= 2 && report.bytes_freed > 0,
            "{report:?}"
        );
        assert_intact(&store, &kept).await;
    }

    /// A soft-deleted point's manifest under `recovery-points/_deleted/` keeps its data.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_soft_deleted_manifest_keeps_its_data() {
        let (store, kept) = vault_with_garbage().await;
        // Move every kept point's manifest as a soft delete does: bytes unchanged.
        for path in store.list(&paths::recovery_points_root()).await.unwrap() {
            let mut parts = path.parts().skip(1);
            let (instance, file) = (parts.next().unwrap(), parts.next().unwrap());
            let id = file.as_ref().strip_suffix(".json").unwrap().to_owned();
            let bytes = store.get(&path).await.unwrap();
            store
                .put(
                    &paths::deleted_point_manifest(instance.as_ref(), &id),
                    bytes,
                )
                .await
                .unwrap();
            store.delete(&path).await.unwrap();
        }
        let report = collect_garbage(&store, &KEY, PACK, |_| true).await.unwrap();
        assert_eq!(report.recovery_points, 2, "{report:?}");
        assert!(report.damaged_manifests.is_empty(), "{report:?}");
        assert_intact(&store, &kept).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unreferenced_data_is_removed_and_kept_points_read_back() {
        let (store, kept) = vault_with_garbage().await;
        let before = pack_bytes(&store).await;
        let report = collect_garbage(&store, &KEY, PACK, |_| true).await.unwrap();
        assert!(report.finished);
        assert_eq!(report.recovery_points, 2);
        assert_eq!(report.unindexed_packs, 1, "{report:?}");
        assert!(report.dead_packs >= 2, "{report:?}");
        assert!(report.repacked_packs >= 1, "{report:?}");
        let after = pack_bytes(&store).await;
        assert!(
            after * 10 < before * 7,
            "{before} -> {after} bytes: {report:?}"
        );
        assert_eq!(before + report.bytes_written - report.bytes_freed, after);
        assert_intact(&store, &kept).await;
        assert_eq!(store.list(&paths::indexes()).await.unwrap().len(), 1);

        // Nothing is left to collect.
        let again = collect_garbage(&store, &KEY, PACK, |_| true).await.unwrap();
        assert_eq!(
            (
                again.dead_packs,
                again.repacked_packs,
                again.unindexed_packs
            ),
            (0, 0, 0)
        );
        assert_eq!(pack_bytes(&store).await, after);
        assert_intact(&store, &kept).await;
    }

    /// Garbage collection stopped after each of its steps, as a crash would stop it, leaves
    /// every kept recovery point readable, and the next collection finishes the work: the
    /// vault ends as an uninterrupted collection leaves it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_collection_killed_at_any_step_is_finished_by_the_next() {
        let (reference, _) = vault_with_garbage().await;
        let mut steps = Vec::new();
        collect_garbage(&reference, &KEY, PACK, |step| {
            steps.push(step);
            true
        })
        .await
        .unwrap();
        let clean_bytes = pack_bytes(&reference).await;
        let clean_chunks = load_index(&reference).await.unwrap().chunk_count();
        assert!(steps.len() > 5, "{steps:?}");
        for (stop, step) in steps.iter().enumerate() {
            let (store, kept) = vault_with_garbage().await;
            let mut calls = 0;
            let report = collect_garbage(&store, &KEY, PACK, |_| {
                calls += 1;
                calls <= stop
            })
            .await
            .unwrap();
            assert!(!report.finished, "stopped after step {stop} ({step:?})");
            assert_intact(&store, &kept).await;

            let finish = collect_garbage(&store, &KEY, PACK, |_| true).await.unwrap();
            assert!(finish.finished);
            assert_intact(&store, &kept).await;
            // As an uninterrupted collection leaves it: one index, every pack in it, nothing
            // dead or sparse, the same chunks (pack bytes vary by a few trailer bytes, as
            // blobs land in packs in whichever order the compressor threads finish).
            let settled = collect_garbage(&store, &KEY, PACK, |_| true).await.unwrap();
            let context = format!("stopped at {step:?} (step {stop}), then {finish:?}");
            assert_eq!(
                (
                    settled.dead_packs,
                    settled.repacked_packs,
                    settled.unindexed_packs
                ),
                (0, 0, 0),
                "{context}"
            );
            assert_eq!(
                store.list(&paths::indexes()).await.unwrap().len(),
                1,
                "{context}"
            );
            assert_eq!(
                load_index(&store).await.unwrap().chunk_count(),
                clean_chunks,
                "{context}"
            );
            let bytes = pack_bytes(&store).await;
            assert!(
                bytes.abs_diff(clean_bytes) * 100 < clean_bytes,
                "{bytes} vs {clean_bytes}: {context}"
            );
        }
    }

    /// A manifest that is not one (it names no chunk) no longer stops the collection: it is
    /// named in the report and the garbage goes. (A manifest the store cannot read, an IO
    /// error, still stops it: `store.get` fails the collection before anything is deleted.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_damaged_manifest_is_reported_and_the_collection_goes_on() {
        let (store, _) = vault_with_garbage().await;
        let before = pack_bytes(&store).await;
        let broken = paths::recovery_point("db", "broken");
        store
            .put(
                &broken,
                b"{\"blake3\":\"00\",\"manifest\":{}}".to_vec().into(),
            )
            .await
            .unwrap();
        let r = collect_garbage(&store, &KEY, PACK, |_| true).await.unwrap();
        assert!(r.finished);
        assert_eq!(r.damaged_manifests, [broken.to_string()]);
        assert!(pack_bytes(&store).await < before);
    }

    /// The third finding's GC half: a manifest that was read but is damaged stopped every
    /// collection. Now the collection runs, keeping every chunk id the damaged bytes name,
    /// so the point's data survives for a salvage; and after a repair has dropped a lost
    /// pack, the chunks no pack holds do not stop it either.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_damaged_manifest_is_marked_conservatively_and_lost_chunks_do_not_stop_gc() {
        use crate::testing::{self, archive, backup};
        let store = VaultStore::open("memory://").unwrap();
        let key = testing::KEY;
        let rp1 = backup(&store, key, "db", "rp1", archive(6_000, 0), None).await;
        let rp2 = backup(&store, key, "db", "rp2", archive(6_000, 7), None).await;
        let path = paths::recovery_point("db", "rp1");
        let text = String::from_utf8(store.get(&path).await.unwrap().to_vec()).unwrap();
        let tampered = text.replacen("BackupWeekly", "BackupDaily!", 1);
        assert_ne!(text, tampered);
        store.put(&path, tampered.into()).await.unwrap();

        let r = collect_garbage(&store, &key, PACK, |_| true).await.unwrap();
        assert!(r.finished);
        assert_eq!(r.damaged_manifests, [path.to_string()]);
        // Nothing of the damaged point was taken for garbage.
        let index = load_index(&store).await.unwrap();
        let mut out = Vec::new();
        read_stream(&store, &index, &key, &rp1.stream, &mut out, Arc::default())
            .await
            .unwrap();

        // A pack of rp2 lost and repaired away: its chunks are in no pack, and GC runs.
        let list_pack = index.get(&rp2.stream.chunk_lists[0]).unwrap().0;
        let rp2_chunks = testing::needed(&store, &key, &rp2).await;
        let victim = rp2_chunks
            .iter()
            .filter_map(|c| index.get(c).map(|(p, _)| p))
            .find(|p| *p != list_pack)
            .unwrap();
        store.delete(&paths::pack(&victim)).await.unwrap();
        let err = collect_garbage(&store, &key, PACK, |_| true)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("backup-vault repair"), "{err}");
        crate::repair::repair(
            &store,
            &key,
            &crate::testing::TestArchive,
            PACK,
            false,
            None,
            |_| true,
        )
        .await
        .unwrap();
        let r = collect_garbage(&store, &key, PACK, |_| true).await.unwrap();
        assert!(r.finished && r.lost_chunks > 0, "{r:?}");
    }
}
