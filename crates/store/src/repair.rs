//! `backup-vault repair`: dropping unreadable packs, keeping every blob that still verifies,
//! and saying which recovery points stay damaged and what they lose.
//!
//! 1. **Find.** List `packs/` and read every pack's trailer. A pack is *suspect* when a damage
//!    record names it (see `damage`), its trailer cannot be read, it is shorter than its
//!    index entries need, or (with `--read-data`) always. An indexed pack that is not in the
//!    store is *missing*.
//! 2. **Judge.** Each suspect pack is read whole: if its bytes still hash to its name and its
//!    trailer reads, it is sound after all (a record of a transient read error) and stays.
//! 3. **Salvage.** Every blob of a bad pack (as its trailer lists them, else as the old index
//!    does) that still decodes to bytes hashing to its id is copied, unchanged, into new
//!    packs: full blobs first, then deltas whose base is sound. Blobs that fail are lost.
//! 4. **Index.** One new index file naming every sound pack (from its trailer) and the new
//!    packs, without deltas whose base is in no pack, written and made durable.
//! 5. **Delete** the old index files, then the bad packs, then the damage records, each
//!    deletion after checking the destructive-operation guard is still held.
//!
//! The order is garbage collection's: until step 5 every index names only packs that exist
//! (bad ones included); a repair killed at any point leaves a vault the next one finishes.
//!
//! Chunk ids are content addresses: a chunk lost here is in no index afterwards, so the next
//! backup that meets the same bytes stores them again, and every older recovery point that
//! needed them is whole again. The report lists the recovery points that stay damaged and,
//! from the table of contents each backup recorded, which tables' data they lose.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use object_store::path::Path;
use serde::Serialize;

use super::chunk::{ChunkId, ChunkKind, decode_blob_with_base};
use super::damage::load_damage;
use super::lease::DestructiveGuard;
use super::lock::LockError;
use super::manifest::decode_chunk_list;
use super::observe::StreamFormat;
use super::pack::{ChunkIndex, PackBuilder, PackEntry, PackId, decode_index, encode_index};
use super::reader::{fetch_blob, fetch_trailer};
use super::{StoreError, VaultStore, paths};

/// The points between which a repair can be stopped (by a crash, or by the tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RepairStep {
    PackWritten,
    IndexWritten,
    IndexDeleted,
    PackDeleted,
}

/// One pack found bad, and what became of its blobs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RepairedPack {
    pub pack_id: PackId,
    pub reason: String,
    pub chunks_salvaged: usize,
    pub chunks_lost: usize,
}

/// A recovery point that is still damaged after the repair.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DamagedPoint {
    pub backup_instance_name: String,
    pub recovery_point_id: String,
    /// Chunks it needs that no pack holds any more.
    pub lost_chunks: usize,
    /// Bytes of the dump stream those chunks held (when the chunk list is whole).
    pub lost_bytes: u64,
    /// Tables whose data lies (in part) in lost bytes, as `schema.table`.
    pub tables_lost: Vec<String>,
    /// Why the whole point cannot restore, when it cannot: its manifest, a chunk-list block,
    /// or the archive's header and table of contents is lost.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unrestorable: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RepairReport {
    pub packs_checked: usize,
    /// Packs read whole (the suspect ones, or all with `--read-data`).
    pub packs_read: usize,
    /// Suspect packs that read back sound and were kept.
    pub packs_found_sound: Vec<PackId>,
    pub bad_packs: Vec<RepairedPack>,
    /// Packs an index named that are not in the store.
    pub missing_packs: Vec<PackId>,
    pub chunks_salvaged: usize,
    pub chunks_lost: usize,
    pub new_packs: usize,
    pub bytes_written: u64,
    pub dead_delta_entries_left_out: usize,
    pub index_files_replaced: usize,
    pub unreadable_index_files: usize,
    pub packs_deleted: usize,
    pub damage_records_cleared: usize,
    pub damaged_recovery_points: Vec<DamagedPoint>,
    /// Whether the repair ran to the end (`false` when the hook stopped it).
    pub finished: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Guard(#[from] LockError),
}

/// New packs of salvaged blobs, written as they fill.
struct Salvage<'a> {
    store: &'a VaultStore,
    target: usize,
    data: PackBuilder,
    lists: PackBuilder,
    written: Vec<(PackId, Vec<PackEntry>)>,
    bytes: u64,
}

impl Salvage<'_> {
    async fn push(
        &mut self,
        kind: ChunkKind,
        e: &PackEntry,
        blob: &[u8],
    ) -> Result<(), StoreError> {
        let lists = kind == ChunkKind::ChunkList && self.store.pack_tier().is_some();
        let builder = if lists {
            &mut self.lists
        } else {
            &mut self.data
        };
        builder.push(e.id, e.raw_length as usize, blob);
        if builder.len() >= self.target {
            self.flush(lists).await?;
        }
        Ok(())
    }

    async fn flush(&mut self, lists: bool) -> Result<(), StoreError> {
        let builder = if lists {
            &mut self.lists
        } else {
            &mut self.data
        };
        if builder.is_empty() {
            return Ok(());
        }
        let (id, bytes, entries) = std::mem::take(builder).finish(self.store.sealer());
        let path = paths::pack(&id);
        self.bytes += bytes.len() as u64;
        if lists {
            self.store.put(&path, bytes.into()).await?;
        } else {
            self.store.put_data_pack(&path, bytes.into()).await?;
        }
        self.written.push((id, entries));
        Ok(())
    }
}

/// Repairs one store (a tier). The caller holds the exclusive lock and, through `guard`, the
/// destructive-operation guard. `read_data` reads every pack whole, not only suspect ones;
/// `format` names what damage costs (the tables a damaged point loses).
pub async fn repair(
    store: &VaultStore,
    key: &[u8; 32],
    format: &dyn StreamFormat,
    pack_target_size: usize,
    read_data: bool,
    guard: Option<&DestructiveGuard>,
    mut hook: impl FnMut(RepairStep) -> bool,
) -> Result<RepairReport, RepairError> {
    let ensure_held = async || match guard {
        Some(guard) => guard.ensure_held().await,
        None => Ok(()),
    };
    let mut report = RepairReport::default();

    // ---- find ----
    let old_files = store.list(&paths::indexes()).await?;
    let mut old: HashMap<PackId, Vec<PackEntry>> = HashMap::new();
    for path in &old_files {
        match store
            .get(path)
            .await
            .map(|b| decode_index(&b, store.sealer()))
        {
            Ok(Ok(packs)) => {
                for (pack, entries) in packs {
                    old.entry(pack).or_default().extend(entries);
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(index = %path, error = %e, "an index file cannot be decoded; the packs' trailers replace it");
                report.unreadable_index_files += 1;
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    let damage = load_damage(store).await?;
    let mut listing: Vec<(PackId, u64)> = store
        .list_with_sizes(&Path::from("packs"))
        .await?
        .into_iter()
        .filter_map(|(path, size)| {
            let id = path.filename().and_then(PackId::from_hex)?;
            (paths::pack(&id) == path).then_some((id, size))
        })
        .collect();
    listing.sort_by_key(|(id, _)| id.0);
    let present: HashSet<PackId> = listing.iter().map(|(id, _)| *id).collect();
    report.missing_packs = old
        .keys()
        .filter(|p| !present.contains(p))
        .copied()
        .collect();
    report.missing_packs.sort_by_key(|p| p.0);

    // Sound packs with their entries; suspect ones with the reason and what the trailer says.
    let mut sound: Vec<(PackId, Vec<PackEntry>)> = Vec::new();
    let mut suspect: Vec<(PackId, String, Option<Vec<PackEntry>>)> = Vec::new();
    for (id, size) in &listing {
        report.packs_checked += 1;
        let trailer = match fetch_trailer(store, id, *size).await {
            Ok(t) => t,
            // Archived (offline): nothing can be read; kept as the old index has it.
            Err(e) if e.is_archived() => {
                if let Some(entries) = old.get(id) {
                    sound.push((*id, entries.clone()));
                }
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let need = old
            .get(id)
            .into_iter()
            .flatten()
            .map(|e| u64::from(e.offset) + u64::from(e.length))
            .max()
            .unwrap_or(0);
        let reason = match (&trailer, damage.packs.get(id)) {
            (Err(e), _) => Some(format!("its trailer cannot be read: {e}")),
            _ if need > *size => Some(format!(
                "it is {size} bytes, but the index places chunks up to byte {need}"
            )),
            (_, Some((reasons, _))) => Some(format!("recorded bad: {}", reasons.join("; "))),
            _ if read_data => Some(String::new()),
            _ => None,
        };
        match (reason, trailer) {
            (None, Ok(entries)) => sound.push((*id, entries)),
            (Some(reason), trailer) => suspect.push((*id, reason, trailer.ok())),
            (None, Err(_)) => unreachable!("an unreadable trailer is a reason"),
        }
    }

    // ---- judge: read each suspect pack whole ----
    let mut bad: Vec<(PackId, String, Vec<PackEntry>)> = Vec::new();
    for (id, reason, trailer) in suspect {
        report.packs_read += 1;
        let bytes = store.get(&paths::pack(&id)).await?;
        let hashes = blake3::hash(&bytes).as_bytes() == &id.0;
        match trailer {
            Some(entries) if hashes => {
                if !reason.is_empty() {
                    report.packs_found_sound.push(id);
                }
                sound.push((id, entries));
            }
            trailer => {
                let reason = if reason.is_empty() {
                    "its bytes no longer hash to its name".to_owned()
                } else {
                    reason
                };
                let mut entries =
                    trailer.unwrap_or_else(|| old.get(&id).cloned().unwrap_or_default());
                entries.sort_by_key(|e| (e.offset, e.id));
                entries.dedup();
                bad.push((id, reason, entries));
            }
        }
    }

    // ---- salvage ----
    let mut available = ChunkIndex::default();
    for (pack, entries) in &sound {
        available.add_pack(*pack, entries);
    }
    let mut salvage = Salvage {
        store,
        target: pack_target_size.max(1),
        data: PackBuilder::default(),
        lists: PackBuilder::default(),
        written: Vec::new(),
        bytes: 0,
    };
    let mut outcome: HashMap<PackId, (usize, usize)> = HashMap::new();
    let mut lost: HashSet<ChunkId> = HashSet::new();
    let mut salvaged: HashSet<ChunkId> = HashSet::new();
    // Full blobs first, so the deltas' second pass finds bases salvaged from other bad packs.
    for deltas in [false, true] {
        if deltas {
            salvage.flush(false).await?;
            salvage.flush(true).await?;
            for (pack, entries) in &salvage.written {
                available.add_pack(*pack, entries);
            }
        }
        for (id, _, entries) in &bad {
            let wanted: Vec<&PackEntry> = entries
                .iter()
                .filter(|e| e.base.is_some() == deltas)
                .collect();
            if wanted.is_empty() {
                continue;
            }
            let bytes = match store.get(&paths::pack(id)).await {
                Ok(b) => b,
                Err(e) => return Err(e.into()),
            };
            for e in wanted {
                if available.contains(&e.id) || salvaged.contains(&e.id) {
                    continue; // a sound copy exists elsewhere
                }
                let blob = (e.offset as usize)
                    .checked_add(e.length as usize)
                    .and_then(|end| bytes.get(e.offset as usize..end));
                let base = match e.base {
                    None => Ok(None),
                    Some(b) => fetch_blob(store, &available, key, b)
                        .await
                        .map(|(_, data)| Some(data))
                        .map_err(|_| ()),
                };
                let decoded = match (blob, base) {
                    (Some(blob), Ok(base)) => {
                        decode_blob_with_base(key, store.sealer(), e.id, blob, base.as_deref())
                            .ok()
                            .filter(|(_, data)| data.len() == e.raw_length as usize)
                            .map(|(kind, _)| (kind, blob))
                    }
                    _ => None,
                };
                let counts = outcome.entry(*id).or_default();
                match decoded {
                    Some((kind, blob)) => {
                        salvage.push(kind, e, blob).await?;
                        salvaged.insert(e.id);
                        lost.remove(&e.id);
                        counts.0 += 1;
                    }
                    None => {
                        lost.insert(e.id);
                        counts.1 += 1;
                    }
                }
            }
            if !hook(RepairStep::PackWritten) {
                return Ok(report);
            }
        }
    }
    salvage.flush(false).await?;
    salvage.flush(true).await?;
    let new_paths: Vec<Path> = salvage
        .written
        .iter()
        .map(|(p, _)| paths::pack(p))
        .collect();
    store.make_durable(&new_paths).await?;
    report.new_packs = salvage.written.len();
    report.bytes_written = salvage.bytes;
    for (id, reason, _) in &bad {
        let (ok, gone) = outcome.get(id).copied().unwrap_or_default();
        report.bad_packs.push(RepairedPack {
            pack_id: *id,
            reason: reason.clone(),
            chunks_salvaged: ok,
            chunks_lost: gone,
        });
    }
    report.chunks_salvaged = salvaged.len();
    // Chunks of missing packs are lost too, unless a copy lives elsewhere.
    for pack in &report.missing_packs {
        for e in old.get(pack).into_iter().flatten() {
            if !available.contains(&e.id) && !salvaged.contains(&e.id) {
                lost.insert(e.id);
            }
        }
    }
    report.chunks_lost = lost.len();

    // ---- index ----
    let mut packs: Vec<(PackId, Vec<PackEntry>)> = sound;
    packs.extend(salvage.written);
    let full: HashSet<ChunkId> = packs
        .iter()
        .flat_map(|(_, entries)| entries.iter().filter(|e| e.base.is_none()).map(|e| e.id))
        .collect();
    for (_, entries) in &mut packs {
        let before = entries.len();
        entries.retain(|e| e.base.is_none_or(|b| full.contains(&b)));
        report.dead_delta_entries_left_out += before - entries.len();
    }
    packs.sort_by_key(|(id, _)| id.0);
    let new_index = paths::index(&uuid::Uuid::new_v4().to_string());
    store
        .put(&new_index, encode_index(&packs, store.sealer()).into())
        .await?;
    store.make_durable(std::slice::from_ref(&new_index)).await?;
    if !hook(RepairStep::IndexWritten) {
        return Ok(report);
    }
    let mut repaired = ChunkIndex::default();
    for (pack, entries) in &packs {
        repaired.add_pack(*pack, entries);
    }

    // ---- delete: old index files, bad packs, the records dealt with ----
    for path in old_files.iter().filter(|p| **p != new_index) {
        ensure_held().await?;
        store.delete_if_present(path).await?;
        report.index_files_replaced += 1;
        if !hook(RepairStep::IndexDeleted) {
            return Ok(report);
        }
    }
    for (id, _, _) in &bad {
        ensure_held().await?;
        store.delete_if_present(&paths::pack(id)).await?;
        report.packs_deleted += 1;
        if !hook(RepairStep::PackDeleted) {
            return Ok(report);
        }
    }
    for path in &damage.records {
        ensure_held().await?;
        store.delete_if_present(path).await?;
        report.damage_records_cleared += 1;
    }

    report.damaged_recovery_points = damaged_points(store, &repaired, key, format).await?;
    report.finished = true;
    Ok(report)
}

/// The recovery points of `store` that `index` cannot restore whole, and what they lose.
pub async fn damaged_points(
    store: &VaultStore,
    index: &ChunkIndex,
    key: &[u8; 32],
    format: &dyn StreamFormat,
) -> Result<Vec<DamagedPoint>, StoreError> {
    let mut out = Vec::new();
    for path in store.list(&paths::recovery_points_root()).await? {
        let mut parts = path.parts().skip(1);
        let (Some(instance), Some(file)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Some(id) = file.as_ref().strip_suffix(".json").map(str::to_owned) else {
            continue;
        };
        let mut point = DamagedPoint {
            backup_instance_name: instance.as_ref().to_owned(),
            recovery_point_id: id,
            lost_chunks: 0,
            lost_bytes: 0,
            tables_lost: Vec::new(),
            unrestorable: None,
        };
        let manifest = match store.get(&path).await {
            Ok(bytes) => crate::manifest::open_manifest(store.sealer(), &bytes),
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e),
        };
        let m = match manifest {
            Ok(m) => m,
            Err(e) => {
                point.unrestorable = Some(format!("its manifest cannot be read: {e}"));
                out.push(point);
                continue;
            }
        };
        let usable = |id: &ChunkId| {
            index.contains(id) && index.base_of(id).is_none_or(|b| index.contains(&b))
        };
        let mut lost_ranges: Vec<(u64, u64)> = Vec::new();
        let mut lost_ids: BTreeSet<ChunkId> = BTreeSet::new();
        let mut offset = 0u64;
        for list in &m.stream.chunk_lists {
            let refs = match fetch_blob(store, index, key, *list).await {
                Ok((ChunkKind::ChunkList, bytes)) => decode_chunk_list(&bytes),
                _ => None,
            };
            let Some(refs) = refs else {
                lost_ids.insert(*list);
                point.unrestorable = Some(format!(
                    "chunk-list block {list} is lost: the order of its chunks is unknown"
                ));
                break;
            };
            for r in refs {
                let end = offset + u64::from(r.length);
                if !usable(&r.id) {
                    lost_ids.insert(r.id);
                    match lost_ranges.last_mut() {
                        Some(last) if last.1 == offset => last.1 = end,
                        _ => lost_ranges.push((offset, end)),
                    }
                }
                offset = end;
            }
        }
        if lost_ids.is_empty() {
            continue;
        }
        point.lost_chunks = lost_ids.len();
        point.lost_bytes = lost_ranges.iter().map(|(s, e)| e - s).sum();
        if let Some(layout) = m.archive.as_ref().and_then(|r| format.layout(r)) {
            let overlaps = |s: u64, e: u64| lost_ranges.iter().any(|(a, b)| *a < e && s < *b);
            if overlaps(layout.header.start, layout.header.end) && point.unrestorable.is_none() {
                point.unrestorable = Some(format!(
                    "the {}'s header and table of contents are lost",
                    format.name()
                ));
            }
            let tables: BTreeMap<String, ()> = layout
                .parts
                .into_iter()
                .filter(|(_, r)| overlaps(r.start, r.end))
                .map(|(name, _)| (name, ()))
                .collect();
            point.tables_lost = tables.into_keys().collect();
        }
        out.push(point);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::manifest::Manifest;
    use std::sync::Arc;

    use super::*;
    use crate::damage::{DamageNotes, load_backup_index};
    use crate::reader::{load_index, read_stream};
    use crate::testing::{KEY, archive, backup, flip_byte_in_blob, pack_chunks, packs};
    use crate::verify::verify_stream;

    async fn read(store: &VaultStore, m: &Manifest) -> Option<Vec<u8>> {
        let index = load_index(store).await.unwrap();
        let mut out = Vec::new();
        read_stream(store, &index, &KEY, &m.stream, &mut out, Arc::default())
            .await
            .ok()
            .map(|_| out)
    }

    /// A flipped byte (recorded by a verification), a truncated pack and a deleted pack:
    /// repair keeps every blob that verifies, drops the bad packs, lists the damaged point
    /// and the tables it loses; a backup afterwards stores the lost chunks again and the old
    /// point restores whole.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn repair_salvages_what_verifies_and_a_later_backup_heals_the_old_point() {
        let store = VaultStore::open("memory://").unwrap();
        let data = archive(12_000, 0);
        let rp1 = backup(&store, KEY, "db", "rp1", data.clone(), None).await;
        let index = load_index(&store).await.unwrap();
        let list_pack = index.get(&rp1.stream.chunk_lists[0]).unwrap().0;
        let data_packs: Vec<PackId> = packs(&store)
            .await
            .into_iter()
            .filter(|p| *p != list_pack)
            .collect();
        let (deleted, truncated, flipped) = (data_packs[0], data_packs[1], data_packs[2]);
        let flipped_chunks = pack_chunks(&store, &flipped).await;
        store.delete(&paths::pack(&deleted)).await.unwrap();
        let t = store.get(&paths::pack(&truncated)).await.unwrap();
        let truncated_chunks = pack_chunks(&store, &truncated).await;
        store
            .put(&paths::pack(&truncated), t.slice(..t.len() / 2))
            .await
            .unwrap();
        flip_byte_in_blob(&store, &flipped, flipped_chunks[0]).await;
        let v = verify_stream(
            &store,
            &index,
            &KEY,
            &rp1.stream,
            &crate::testing::TestArchive,
            rp1.archive.as_ref(),
        )
        .await;
        let mut notes = DamageNotes::default();
        for f in &v.corrupt_chunks {
            notes.note(f.pack_id.unwrap(), Some(f.chunk_id), "corrupt");
        }
        notes.record(&store, "test").await.unwrap();

        let r = repair(
            &store,
            &KEY,
            &crate::testing::TestArchive,
            64 << 10,
            false,
            None,
            |_| true,
        )
        .await
        .unwrap();
        assert!(r.finished);
        assert_eq!(r.missing_packs, [deleted]);
        let bad: HashSet<PackId> = r.bad_packs.iter().map(|b| b.pack_id).collect();
        assert_eq!(bad, HashSet::from([truncated, flipped]), "{r:#?}");
        // Of the flipped pack only one blob is lost; the truncated one keeps its first half.
        let f = r.bad_packs.iter().find(|b| b.pack_id == flipped).unwrap();
        assert_eq!(
            (f.chunks_salvaged, f.chunks_lost),
            (flipped_chunks.len() - 1, 1)
        );
        let t = r.bad_packs.iter().find(|b| b.pack_id == truncated).unwrap();
        assert!(t.chunks_salvaged > 0 && t.chunks_lost > 0, "{t:?}");
        assert_eq!(t.chunks_salvaged + t.chunks_lost, truncated_chunks.len());
        assert!(r.new_packs >= 1 && r.packs_deleted == 2 && r.damage_records_cleared == 1);
        let now = packs(&store).await;
        assert!(!now.contains(&truncated) && !now.contains(&flipped));
        assert_eq!(store.list(&paths::indexes()).await.unwrap().len(), 1);
        assert!(
            store
                .list(&paths::damage_records())
                .await
                .unwrap()
                .is_empty()
        );

        // The point stays damaged, and says what it loses.
        assert_eq!(r.damaged_recovery_points.len(), 1);
        let d = &r.damaged_recovery_points[0];
        assert_eq!(d.recovery_point_id, "rp1");
        assert_eq!(d.lost_chunks, r.chunks_lost);
        assert!(!d.tables_lost.is_empty(), "{d:?}");
        assert!(
            d.tables_lost.iter().all(|t| t.starts_with("public.")),
            "{d:?}"
        );
        assert_eq!(read(&store, &rp1).await, None);

        // A second repair finds nothing more to do.
        let again = repair(
            &store,
            &KEY,
            &crate::testing::TestArchive,
            64 << 10,
            true,
            None,
            |_| true,
        )
        .await
        .unwrap();
        assert!(
            again.bad_packs.is_empty() && again.missing_packs.is_empty(),
            "{again:#?}"
        );

        // The same data backed up again: lost chunks are stored again, and rp1 heals.
        let (known, excluded) = load_backup_index(&store).await.unwrap();
        assert_eq!(excluded, Default::default());
        drop(known);
        let rp2 = backup(&store, KEY, "db", "rp2", data.clone(), None).await;
        assert_eq!(read(&store, &rp2).await.as_deref(), Some(&data[..]));
        assert_eq!(read(&store, &rp1).await.as_deref(), Some(&data[..]));
        let index = load_index(&store).await.unwrap();
        assert!(
            damaged_points(&store, &index, &KEY, &crate::testing::TestArchive)
                .await
                .unwrap()
                .is_empty()
        );
    }

    /// A repair stopped after its index is written leaves every point as readable as before,
    /// and the next one finishes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_repair_stopped_midway_is_finished_by_the_next() {
        let store = VaultStore::open("memory://").unwrap();
        let rp = backup(&store, KEY, "db", "rp", archive(6_000, 0), None).await;
        let index = load_index(&store).await.unwrap();
        let list_pack = index.get(&rp.stream.chunk_lists[0]).unwrap().0;
        let victim = packs(&store)
            .await
            .into_iter()
            .find(|p| *p != list_pack)
            .unwrap();
        let chunks = pack_chunks(&store, &victim).await;
        flip_byte_in_blob(&store, &victim, chunks[0]).await;
        for stop in [RepairStep::IndexWritten, RepairStep::IndexDeleted] {
            let r = repair(
                &store,
                &KEY,
                &crate::testing::TestArchive,
                64 << 10,
                true,
                None,
                |s| s != stop,
            )
            .await
            .unwrap();
            assert!(!r.finished);
        }
        let r = repair(
            &store,
            &KEY,
            &crate::testing::TestArchive,
            64 << 10,
            true,
            None,
            |_| true,
        )
        .await
        .unwrap();
        assert!(r.finished);
        assert!(!packs(&store).await.contains(&victim));
        let d = &r.damaged_recovery_points;
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].lost_chunks, 1);
    }
}
