//! Damage records, and the dedup index a backup builds around known damage.
//!
//! A backup dedups: a chunk the vault already has is only referenced. If its bytes are bad or
//! its pack is gone, the new recovery point inherits the damage, and so does every later one.
//! So what `recovery-point verify`, `backup-vault check` and a restore find bad is written
//! down in the vault, and a backup leaves those packs out of its dedup index; the chunks they
//! held are stored again from the live stream.
//!
//! ```text
//! damage/<uuid>.json   {"formatVersion": 1, "foundBy": "...",
//!                       "packs": [{"packId": "<64 hex>", "reason": "...", "chunks": ["<64 hex>", ...]}]}
//! ```
//!
//! A record is written once per verification that found something, never rewritten (several
//! hosts may verify at once; each writes its own object). `backup-vault repair` reads them,
//! salvages what still verifies, and deletes the records it dealt with (see `repair`).
//!
//! The dedup index ([`load_backup_index`]) is the vault's index minus every chunk whose pack
//! is missing, shorter than its index entries need, or recorded bad, and minus every delta
//! whose base went with them. Missing and truncated packs are found by one listing of
//! `packs/` (it gives sizes), not by a request per chunk, so a backup pays one LIST for it.

use std::collections::{BTreeMap, HashMap, HashSet};

use object_store::path::Path;
use serde::{Deserialize, Serialize};

use super::chunk::ChunkId;
use super::pack::{ChunkIndex, PackId, decode_index};
use super::{StoreError, VaultStore, paths};

pub const DAMAGE_FORMAT: u32 = 1;

/// One pack found bad, and the chunks in it that failed (empty when the whole pack did: its
/// bytes no longer hash to its name, its trailer is unreadable, it is shorter than its index).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BadPack {
    pub pack_id: String,
    pub reason: String,
    #[serde(default)]
    pub chunks: Vec<String>,
}

/// `damage/<uuid>.json`: what one verification found bad.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DamageRecord {
    pub format_version: u32,
    /// `recovery-point verify`, `backup-vault check` or `restore`.
    pub found_by: String,
    pub packs: Vec<BadPack>,
}

/// Collects bad packs (and chunks in them) during one verification.
#[derive(Clone, Debug, Default)]
pub struct DamageNotes {
    packs: BTreeMap<[u8; 32], (String, Vec<ChunkId>)>,
}

impl DamageNotes {
    /// Notes that `pack` failed, because of `chunk` when one chunk is to blame.
    pub fn note(&mut self, pack: PackId, chunk: Option<ChunkId>, reason: impl Into<String>) {
        let entry = self
            .packs
            .entry(pack.0)
            .or_insert_with(|| (reason.into(), Vec::new()));
        if let Some(c) = chunk
            && !entry.1.contains(&c)
        {
            entry.1.push(c);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.packs.is_empty()
    }

    pub fn packs(&self) -> impl Iterator<Item = PackId> + '_ {
        self.packs.keys().map(|p| PackId(*p))
    }

    /// Writes the notes as one damage record, when there are any; returns its path.
    pub async fn record(
        &self,
        store: &VaultStore,
        found_by: &str,
    ) -> Result<Option<Path>, StoreError> {
        if self.packs.is_empty() {
            return Ok(None);
        }
        let record = DamageRecord {
            format_version: DAMAGE_FORMAT,
            found_by: found_by.to_owned(),
            packs: self
                .packs
                .iter()
                .map(|(pack, (reason, chunks))| BadPack {
                    pack_id: PackId(*pack).to_hex(),
                    reason: reason.clone(),
                    chunks: chunks.iter().map(ChunkId::to_hex).collect(),
                })
                .collect(),
        };
        let path = paths::damage_record(&uuid::Uuid::new_v4().to_string());
        store.put_record(&path, &record).await?;
        store.make_durable(std::slice::from_ref(&path)).await?;
        tracing::warn!(store = %store.url(), record = %path, packs = record.packs.len(), "damage recorded: backups will not dedup against these packs until `pgvault backup-vault repair` runs");
        Ok(Some(path))
    }
}

/// Every damage record of a store, merged.
#[derive(Clone, Debug, Default)]
pub struct RecordedDamage {
    /// Bad packs, with the reasons and chunks recorded for them.
    pub packs: HashMap<PackId, (Vec<String>, HashSet<ChunkId>)>,
    /// When each bad pack was last recorded bad. Packs are named by their content, so a
    /// later backup that writes the same bytes rewrites a bad pack whole: a pack written
    /// after its record is sound again.
    pub recorded_at: HashMap<PackId, chrono::DateTime<chrono::Utc>>,
    /// The record objects read (repair deletes them when done).
    pub records: Vec<Path>,
}

/// Reads every damage record. One that cannot be parsed is skipped with a warning: without
/// it a backup may dedup against what it named, as before records existed, and the next
/// verification records the damage again.
pub async fn load_damage(store: &VaultStore) -> Result<RecordedDamage, StoreError> {
    let mut out = RecordedDamage::default();
    for (path, _, written) in store.list_with_times(&paths::damage_records()).await? {
        let record: DamageRecord = match store.get_record(&path).await {
            Ok(r) => r,
            Err(e) if e.is_not_found() => continue,
            Err(e) => {
                tracing::warn!(record = %path, error = %e, "a damage record cannot be read; it is left for `pgvault backup-vault repair`");
                out.records.push(path);
                continue;
            }
        };
        for bad in &record.packs {
            let Some(pack) = PackId::from_hex(&bad.pack_id) else {
                continue;
            };
            let at = out.recorded_at.entry(pack).or_insert(written);
            *at = (*at).max(written);
            let entry = out.packs.entry(pack).or_default();
            if !entry.0.contains(&bad.reason) {
                entry.0.push(bad.reason.clone());
            }
            entry
                .1
                .extend(bad.chunks.iter().filter_map(|c| ChunkId::from_hex(c)));
        }
        out.records.push(path);
    }
    Ok(out)
}

/// Why packs were left out of a backup's dedup index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Excluded {
    pub missing: Vec<PackId>,
    pub truncated: Vec<PackId>,
    pub recorded_bad: Vec<PackId>,
    /// Index files that could not be read, each as "index file `<path>` cannot be read: ...".
    /// A backup stores their chunks again; a verification reports them beside a chunk that no
    /// index lists.
    pub unreadable_index_files: Vec<String>,
    pub chunks: usize,
}

/// The index a backup dedups against, and a restore or verification reads through (see the
/// module documentation): one LIST of `index/`, one of `packs/`, one of `damage/`, and the
/// index files. Entries in a missing, truncated or recorded-bad pack are skipped as they are
/// loaded, so a chunk that also lives in a sound pack (stored again by a later backup) is
/// found there.
pub async fn load_backup_index(store: &VaultStore) -> Result<(ChunkIndex, Excluded), StoreError> {
    load_index_around_damage(store, Around::Exclude).await
}

/// The index a restore or verification reads through: the same entries as
/// [`load_backup_index`] first, then those of every damaged pack (missing, truncated or
/// recorded bad). A chunk with a sound copy is read there; one that only a damaged pack holds
/// is looked for where the index says it is, so a verification names exactly that chunk and
/// its pack (`PackMissing`, corrupt) and a restore fails naming the pack, rather than with a
/// chunk that no index lists (or a delta whose base was dropped with its pack).
pub async fn load_readable_index(store: &VaultStore) -> Result<(ChunkIndex, Excluded), StoreError> {
    load_index_around_damage(store, Around::Defer).await
}

/// What an index built around damage does with the entries of damaged packs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Around {
    /// Leave them out (a backup's dedup index).
    Exclude,
    /// Add them after every sound pack (a read's index).
    Defer,
}

async fn load_index_around_damage(
    store: &VaultStore,
    around: Around,
) -> Result<(ChunkIndex, Excluded), StoreError> {
    let mut deferred: Vec<(PackId, Vec<super::pack::PackEntry>)> = Vec::new();
    let damage = load_damage(store).await?;
    let mut sizes: HashMap<PackId, u64> = HashMap::new();
    // Recorded bad, but written again whole since (packs are named by their content, so a
    // later backup with the same bytes rewrites the pack): sound again.
    let mut rewritten: HashSet<PackId> = HashSet::new();
    for (path, size, written) in store.list_with_times(&Path::from("packs")).await? {
        let Some(id) = path.filename().and_then(PackId::from_hex) else {
            continue;
        };
        if paths::pack(&id) != path {
            continue;
        }
        if damage.recorded_at.get(&id).is_some_and(|at| written > *at) {
            rewritten.insert(id);
        }
        sizes.insert(id, size);
    }
    let mut excluded = Excluded::default();
    let mut bad: HashSet<PackId> = HashSet::new();
    let mut index = ChunkIndex::default();
    for path in store.list(&paths::indexes()).await? {
        let decoded = match store.get(&path).await {
            Ok(bytes) => decode_index(&bytes, store.sealer()).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let packs = match decoded {
            Ok(packs) => packs,
            Err(e) => {
                tracing::warn!(store = %store.url(), index = %path, error = %e, "an index file cannot be read: a backup stores the chunks it lists again; `pgvault backup-vault reindex` rebuilds the index");
                excluded
                    .unreadable_index_files
                    .push(format!("index file `{path}` cannot be read: {e}"));
                continue;
            }
        };
        for (pack, entries) in packs {
            let need = entries
                .iter()
                .map(|e| u64::from(e.offset) + u64::from(e.length))
                .max()
                .unwrap_or(0);
            let why = match sizes.get(&pack) {
                None => &mut excluded.missing,
                Some(size) if *size < need => &mut excluded.truncated,
                Some(_) if damage.packs.contains_key(&pack) && !rewritten.contains(&pack) => {
                    &mut excluded.recorded_bad
                }
                Some(_) => {
                    index.add_pack(pack, &entries);
                    continue;
                }
            };
            if bad.insert(pack) {
                why.push(pack);
            }
            excluded.chunks += entries.len();
            if around == Around::Defer {
                deferred.push((pack, entries));
            }
        }
    }
    for (pack, entries) in deferred {
        index.add_pack(pack, &entries);
    }
    // Deltas whose base went with a bad pack cannot be decoded.
    excluded.chunks += index.forget_packs(&HashSet::new());
    if !bad.is_empty() {
        tracing::warn!(
            store = %store.url(),
            missing = excluded.missing.len(),
            truncated = excluded.truncated.len(),
            recorded_bad = excluded.recorded_bad.len(),
            "packs left out of the index: their chunks are read from other copies or stored again from the dump; `pgvault backup-vault repair` heals the vault"
        );
    }
    Ok((index, excluded))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::reader::{load_index, read_stream};
    use crate::testing::{KEY, archive, backup, flip_byte_in_blob, pack_chunks, packs};
    use crate::verify::verify_stream;
    use crate::writer::{Progress, write_stream};

    /// A backup through the backup's own dedup index.
    async fn backup_avoiding_damage(
        store: &VaultStore,
        id: &str,
        data: Vec<u8>,
        previous: Option<&crate::manifest::Manifest>,
    ) -> crate::manifest::Manifest {
        let (known, _) = load_backup_index(store).await.unwrap();
        let out = write_stream(
            store,
            Arc::new(known),
            &crate::testing::config(KEY),
            std::io::Cursor::new(data),
            Arc::new(Progress::default()),
            previous.map(|m| m.stream.clone()),
            crate::testing::archive_observer(),
        )
        .await
        .unwrap();
        let m = crate::testing::manifest("db", id, out.stream, out.archive.ok());
        store
            .put(&paths::recovery_point("db", id), m.to_bytes().into())
            .await
            .unwrap();
        m
    }

    /// Reads through the index a verification uses: damaged packs last, so a chunk stored
    /// again is read from its sound copy whichever index file lists first.
    async fn verifies(store: &VaultStore, m: &crate::manifest::Manifest) -> bool {
        let (index, _) = load_readable_index(store).await.unwrap();
        verify_stream(
            store,
            &index,
            &KEY,
            &m.stream,
            &crate::testing::TestArchive,
            m.archive.as_ref(),
        )
        .await
        .is_ok()
    }

    /// The first finding: a pack deleted, one truncated, one with a flipped byte that a
    /// verification recorded. A backup that dedups against the plain index inherits the
    /// damage; one through the backup index stores those chunks again and verifies clean.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_backup_does_not_inherit_missing_truncated_or_recorded_bad_packs() {
        let store = VaultStore::open("memory://").unwrap();
        let data = archive(12_000, 0);
        let rp1 = backup(&store, KEY, "db", "rp1", data.clone(), None).await;
        let all = packs(&store).await;
        assert!(all.len() >= 4, "{} packs", all.len());
        // Three packs of data (the chunk-list pack is the last one written, kept intact).
        let index = load_index(&store).await.unwrap();
        let data_packs: Vec<PackId> = all
            .iter()
            .copied()
            .filter(|p| index.get(&rp1.stream.chunk_lists[0]).unwrap().0 != *p)
            .collect();
        let (deleted, truncated, flipped) = (data_packs[0], data_packs[1], data_packs[2]);
        store.delete(&paths::pack(&deleted)).await.unwrap();
        let t = store.get(&paths::pack(&truncated)).await.unwrap();
        store
            .put(&paths::pack(&truncated), t.slice(..t.len() / 2))
            .await
            .unwrap();
        let victim = pack_chunks(&store, &flipped).await[0];
        flip_byte_in_blob(&store, &flipped, victim).await;

        // Before: the plain index dedups against all three, and the new point is damaged.
        let inherited = backup(&store, KEY, "db", "inherited", data.clone(), None).await;
        assert!(!verifies(&store, &inherited).await);

        // Unrecorded, a flipped byte cannot be known without reading; once verify records it,
        // it is avoided too.
        let index = load_index(&store).await.unwrap();
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
            notes.note(
                f.pack_id.unwrap(),
                Some(f.chunk_id),
                format!("{:?}", f.reason),
            );
        }
        assert!(notes.packs().any(|p| p == flipped), "{v:?}");
        notes.record(&store, "test").await.unwrap();

        let (_, excluded) = load_backup_index(&store).await.unwrap();
        assert_eq!(excluded.missing, [deleted]);
        assert_eq!(excluded.truncated, [truncated]);
        assert!(excluded.recorded_bad.contains(&flipped));
        let healthy = backup_avoiding_damage(&store, "healthy", data.clone(), Some(&rp1)).await;
        assert!(verifies(&store, &healthy).await);
        let (index, _) = load_readable_index(&store).await.unwrap();
        let mut out = Vec::new();
        read_stream(
            &store,
            &index,
            &KEY,
            &healthy.stream,
            &mut out,
            Arc::default(),
        )
        .await
        .unwrap();
        assert!(out == data);
    }

    /// A pack that vanishes after the index was loaded (here: an index loaded without the
    /// listing) is met by the delta-base fetch: the write fails instead of referencing it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pack_vanishing_under_a_backup_fails_it() {
        let store = VaultStore::open("memory://").unwrap();
        let rp1 = backup(&store, KEY, "db", "rp1", archive(12_000, 0), None).await;
        let stale = Arc::new(load_index(&store).await.unwrap());
        for p in packs(&store).await {
            store.delete(&paths::pack(&p)).await.unwrap();
        }
        let err = write_stream(
            &store,
            stale,
            &crate::testing::config(KEY),
            std::io::Cursor::new(archive(12_000, 1)),
            Arc::new(Progress::default()),
            Some(rp1.stream.clone()),
            crate::testing::archive_observer(),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, crate::writer::WriteError::PackVanished(_)),
            "{err}"
        );
    }

    #[tokio::test]
    async fn records_round_trip_and_a_garbage_record_is_skipped() {
        let store = VaultStore::open("memory://").unwrap();
        let mut notes = DamageNotes::default();
        let (p, c) = (PackId([1; 32]), ChunkId([2; 32]));
        notes.note(p, Some(c), "HashMismatch");
        notes.note(p, Some(c), "HashMismatch");
        notes.record(&store, "recovery-point verify").await.unwrap();
        store
            .put(&paths::damage_record("junk"), b"{not json".to_vec().into())
            .await
            .unwrap();
        let d = load_damage(&store).await.unwrap();
        assert_eq!(d.records.len(), 2);
        assert_eq!(d.packs[&p].1, HashSet::from([c]));
        assert_eq!(d.packs[&p].0, ["HashMismatch"]);
    }
}
