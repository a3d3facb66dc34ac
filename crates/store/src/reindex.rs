//! `backup-vault reindex`: rebuilding `index/` from the packs, which describe themselves.
//!
//! Every pack ends with a trailer listing its blobs, so the index is a cache of what the
//! packs say and can always be rebuilt (the vault is the source of truth). The rebuild reads
//! every pack's trailer (two ranged reads, no blob data), writes **one** new index file
//! covering every pack, makes it durable, and only then deletes the old index files: the
//! order garbage collection uses, so a rebuild killed at any point leaves index files that
//! name only packs that exist, and running it again finishes the work.
//!
//! Two cases need care:
//!
//! - **Dead deltas.** Garbage collection keeps a pack whose live bytes are many enough and
//!   writes an index listing only its *referenced* entries; the pack's trailer still lists
//!   the others, among them deltas whose base chunk the collection deleted. Indexed again,
//!   such a delta would be found by a later backup, referenced, and be undecodable. So a
//!   delta entry is indexed only when its base is a full chunk in some pack; the others are
//!   left out and counted.
//! - **Unreadable trailers.** A pack whose trailer cannot be read keeps the entries the old
//!   index files gave it, when they can be read; it is named in the report either way.
//!
//! The caller holds the vault's exclusive lock: no backup may add an index file meanwhile.

use std::collections::{HashMap, HashSet};

use object_store::path::Path;
use serde::Serialize;

use super::chunk::ChunkId;
use super::pack::{PackEntry, PackId, decode_index, encode_index};
use super::reader::fetch_trailer;
use super::{StoreError, VaultStore, paths};

/// The points between which a rebuild can be stopped (by a crash, or by the tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReindexStep {
    IndexWritten,
    /// One old index file deleted.
    IndexDeleted,
}

/// What a rebuild found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReindexReport {
    pub packs_indexed: usize,
    pub chunks_indexed: usize,
    /// Delta entries left out because their base is in no pack (see the module docs).
    pub dead_delta_entries_left_out: usize,
    /// Packs whose trailer could not be read but whose entries an old index file held.
    pub packs_from_old_index: Vec<PackId>,
    /// Packs whose trailer could not be read and that no old index file listed: their
    /// chunks are in no index now.
    pub packs_left_out: Vec<PackId>,
    pub index_files_replaced: usize,
    /// The new index file.
    pub index_file: String,
    /// Whether the rebuild ran to the end (`false` when the hook stopped it).
    pub finished: bool,
}

/// Rebuilds the index of one store (a tier) from its packs' trailers. `hook` is called after
/// each step; returning `false` stops the rebuild there, as a crash would.
pub async fn reindex(
    store: &VaultStore,
    mut hook: impl FnMut(ReindexStep) -> bool,
) -> Result<ReindexReport, StoreError> {
    let mut report = ReindexReport::default();
    let old_files = store.list(&paths::indexes()).await?;

    let mut packs: Vec<(PackId, Vec<PackEntry>)> = Vec::new();
    let mut unreadable: Vec<PackId> = Vec::new();
    let mut listing = store.list_with_sizes(&Path::from("packs")).await?;
    listing.sort();
    for (path, size) in listing {
        let Some(id) = path
            .filename()
            .and_then(PackId::from_hex)
            .filter(|id| paths::pack(id) == path)
        else {
            tracing::warn!(object = %path, "an object under packs/ that is not a pack is left out of the index");
            continue;
        };
        match fetch_trailer(store, &id, size).await? {
            Ok(entries) => packs.push((id, entries)),
            Err(e) => {
                tracing::warn!(pack = %id, error = %e, "a pack's trailer cannot be read");
                unreadable.push(id);
            }
        }
    }
    if !unreadable.is_empty() {
        let mut old: HashMap<PackId, Vec<PackEntry>> = HashMap::new();
        for path in &old_files {
            match store
                .get(path)
                .await
                .map(|bytes| decode_index(&bytes, store.sealer()))
            {
                Ok(Ok(file)) => {
                    for (pack, entries) in file {
                        old.entry(pack).or_default().extend(entries);
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!(index = %path, error = %e, "an old index file cannot be read")
                }
                Err(e) => {
                    tracing::warn!(index = %path, error = %e, "an old index file cannot be read")
                }
            }
        }
        for id in unreadable {
            match old.remove(&id) {
                Some(mut entries) => {
                    entries.sort_by_key(|e| (e.offset, e.id));
                    entries.dedup();
                    packs.push((id, entries));
                    report.packs_from_old_index.push(id);
                }
                None => report.packs_left_out.push(id),
            }
        }
    }

    // A delta is decodable only against a full chunk that some pack holds.
    let full: HashSet<ChunkId> = packs
        .iter()
        .flat_map(|(_, entries)| entries.iter().filter(|e| e.base.is_none()).map(|e| e.id))
        .collect();
    let mut chunks: HashSet<ChunkId> = HashSet::new();
    for (_, entries) in &mut packs {
        let before = entries.len();
        entries.retain(|e| e.base.is_none_or(|b| full.contains(&b)));
        report.dead_delta_entries_left_out += before - entries.len();
        chunks.extend(entries.iter().map(|e| e.id));
    }
    packs.sort_by_key(|(id, _)| id.0);
    report.packs_indexed = packs.len();
    report.chunks_indexed = chunks.len();

    let new_index = paths::index(&uuid::Uuid::new_v4().to_string());
    store
        .put(&new_index, encode_index(&packs, store.sealer()).into())
        .await?;
    store.make_durable(std::slice::from_ref(&new_index)).await?;
    report.index_file = new_index.to_string();
    if !hook(ReindexStep::IndexWritten) {
        return Ok(report);
    }
    for path in old_files.iter().filter(|p| **p != new_index) {
        store.delete_if_present(path).await?;
        report.index_files_replaced += 1;
        if !hook(ReindexStep::IndexDeleted) {
            return Ok(report);
        }
    }
    report.finished = true;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::chunk::{ChunkKind, encode_blob, encode_delta_blob};
    use crate::gc::collect_garbage;
    use crate::manifest::{ChunkRef, Manifest, StreamInfo, digest_chunk, encode_chunk_list};
    use crate::pack::PackBuilder;
    use crate::reader::{load_index, read_stream};
    use crate::testing::{KEY, archive, backup, manifest, packs};

    fn random(seed: u32, len: usize) -> Vec<u8> {
        (0..len.div_ceil(32) as u32)
            .flat_map(|i| *blake3::hash(&[seed.to_le_bytes(), i.to_le_bytes()].concat()).as_bytes())
            .take(len)
            .collect()
    }

    async fn read(store: &VaultStore, m: &Manifest) -> Vec<u8> {
        let index = load_index(store).await.unwrap();
        let mut out = Vec::new();
        read_stream(store, &index, &KEY, &m.stream, &mut out, Arc::default())
            .await
            .unwrap();
        out
    }

    /// Pack A holds chunk X; pack B holds D (a delta against X), Z and the chunk list of a
    /// recovery point whose stream is Z alone. Returns the store, the point and D's id.
    async fn vault_with_a_dead_delta() -> (VaultStore, Manifest, Vec<u8>, ChunkId) {
        let store = VaultStore::open("memory://").unwrap();
        let x = random(1, 40_000);
        let mut d = x.clone();
        d[100..110].copy_from_slice(b"0123456789");
        let z = random(2, 40_000);
        let id = |data: &[u8]| ChunkId::of(&KEY, data);
        let z_ref = ChunkRef {
            id: id(&z),
            length: z.len() as u32,
            head: 0,
        };
        let list = encode_chunk_list(&[z_ref]);

        let mut a = PackBuilder::default();
        a.push(id(&x), x.len(), &encode_blob(ChunkKind::Data, &x, 1));
        let mut b = PackBuilder::default();
        let full = encode_blob(ChunkKind::Data, &d, 1);
        let delta = encode_delta_blob(ChunkKind::Data, &d, id(&x), &x, 1, full.len()).unwrap();
        b.push(id(&d), d.len(), &delta);
        b.push(id(&z), z.len(), &encode_blob(ChunkKind::Data, &z, 1));
        b.push(
            id(&list),
            list.len(),
            &encode_blob(ChunkKind::ChunkList, &list, 1),
        );
        let mut indexed = Vec::new();
        for builder in [a, b] {
            let (pack, bytes, entries) = builder.finish(None);
            store.put(&paths::pack(&pack), bytes.into()).await.unwrap();
            indexed.push((pack, entries));
        }
        store
            .put(&paths::index("first"), encode_index(&indexed, None).into())
            .await
            .unwrap();
        let mut digest = blake3::Hasher::new();
        digest_chunk(&mut digest, &z_ref);
        let stream = StreamInfo {
            length: z.len() as u64,
            chunks_blake3: digest.finalize().to_hex().to_string(),
            chunk_count: 1,
            chunk_lists: vec![id(&list)],
        };
        let m = manifest("db", "rp", stream, None);
        store
            .put(&paths::recovery_point("db", "rp"), m.to_bytes().into())
            .await
            .unwrap();
        (store, m, z, id(&d))
    }

    /// After garbage collection deleted X and kept pack B (mostly live), B's trailer still
    /// lists D. A rebuilt index must not list it: a later backup would find D, reference it,
    /// and never be able to decode it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_delta_whose_base_is_gone_is_not_indexed_again() {
        // While X is there, D is a sound entry and is indexed.
        let (store, _, _, d) = vault_with_a_dead_delta().await;
        let report = reindex(&store, |_| true).await.unwrap();
        assert_eq!(report.dead_delta_entries_left_out, 0);
        assert!(load_index(&store).await.unwrap().contains(&d));

        let (store, m, z, d) = vault_with_a_dead_delta().await;
        let gc = collect_garbage(&store, &KEY, 1 << 20, |_| true)
            .await
            .unwrap();
        assert_eq!((gc.dead_packs, gc.repacked_packs), (1, 0), "{gc:?}");
        assert!(!load_index(&store).await.unwrap().contains(&d));

        let report = reindex(&store, |_| true).await.unwrap();
        assert!(report.finished);
        assert_eq!(report.dead_delta_entries_left_out, 1);
        assert_eq!((report.packs_indexed, report.chunks_indexed), (1, 2));
        let index = load_index(&store).await.unwrap();
        assert!(!index.contains(&d));
        assert_eq!(read(&store, &m).await, z);
    }

    /// A rebuild stopped after writing its index, as a crash would stop it, leaves every
    /// point readable, and the next one finishes: one index file, the same chunks. From no
    /// index at all the vault reads again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_rebuild_killed_midway_is_finished_by_the_next_and_an_empty_index_is_rebuilt() {
        let store = VaultStore::open("memory://").unwrap();
        let rp1 = backup(&store, KEY, "db", "rp1", archive(6_000, 0), None).await;
        let rp2 = backup(&store, KEY, "db", "rp2", archive(7_000, 1), Some(&rp1)).await;
        let (data1, data2) = (read(&store, &rp1).await, read(&store, &rp2).await);
        let chunks = load_index(&store).await.unwrap().chunk_count();
        let old_files = store.list(&paths::indexes()).await.unwrap();
        assert_eq!(old_files.len(), 2);

        let stopped = reindex(&store, |step| step != ReindexStep::IndexWritten)
            .await
            .unwrap();
        assert!(!stopped.finished);
        assert_eq!(store.list(&paths::indexes()).await.unwrap().len(), 3);
        assert_eq!(read(&store, &rp2).await, data2);

        let done = reindex(&store, |_| true).await.unwrap();
        assert!(done.finished);
        assert_eq!(done.index_files_replaced, 3);
        assert_eq!(
            store.list(&paths::indexes()).await.unwrap(),
            [Path::from(done.index_file.as_str())]
        );
        assert_eq!(done.packs_indexed, packs(&store).await.len());
        assert_eq!(load_index(&store).await.unwrap().chunk_count(), chunks);
        assert_eq!(read(&store, &rp1).await, data1);

        for path in store.list(&paths::indexes()).await.unwrap() {
            store.delete(&path).await.unwrap();
        }
        let rebuilt = reindex(&store, |_| true).await.unwrap();
        assert_eq!(rebuilt.index_files_replaced, 0);
        assert_eq!(load_index(&store).await.unwrap().chunk_count(), chunks);
        assert_eq!(read(&store, &rp1).await, data1);
        assert_eq!(read(&store, &rp2).await, data2);
    }

    /// A pack whose trailer is damaged keeps the entries an old index gave it; without an
    /// old index it is named as left out.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pack_with_a_damaged_trailer_keeps_its_old_entries_or_is_named() {
        let store = VaultStore::open("memory://").unwrap();
        let rp = backup(&store, KEY, "db", "rp", archive(6_000, 0), None).await;
        let data = read(&store, &rp).await;
        let index = load_index(&store).await.unwrap();
        let (pack, _) = index.get(&rp.stream.chunk_lists[0]).unwrap();
        let path = paths::pack(&pack);
        let mut bytes = store.get(&path).await.unwrap().to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        store.put(&path, bytes.into()).await.unwrap();

        let report = reindex(&store, |_| true).await.unwrap();
        assert_eq!(report.packs_from_old_index, [pack]);
        assert!(report.packs_left_out.is_empty());
        assert_eq!(read(&store, &rp).await, data);

        for path in store.list(&paths::indexes()).await.unwrap() {
            store.delete(&path).await.unwrap();
        }
        let report = reindex(&store, |_| true).await.unwrap();
        assert_eq!(report.packs_left_out, [pack]);
        assert!(
            !load_index(&store)
                .await
                .unwrap()
                .contains(&rp.stream.chunk_lists[0])
        );
    }
}
