//! `backup-vault check`: the consistency of a whole store (one tier), not of one stream.
//!
//! Where `recovery-point verify` reads one recovery point's bytes, the check looks at the
//! structure every recovery point relies on, and reads data only when asked:
//!
//! 1. **Indexes.** Every index file decodes; every pack an index names is in the store; every
//!    entry an index lists for a pack is in that pack's trailer, at the same place (the
//!    trailer may list more: garbage collection indexes only referenced entries).
//! 2. **Manifests.** Every manifest decodes with a good checksum; every chunk-list block
//!    reads back; every chunk the lists name, and the base of every delta among them, is in
//!    an index and its pack is in the store.
//! 3. **Data** (`--read-data`, or a sample of packs with `--read-data-subset`). Each pack
//!    read whole: its bytes hash to its name, and every blob the index lists decodes to
//!    bytes that hash to its id.
//! 4. **Garbage.** What no manifest references: chunks, packs, packs no index lists. This is
//!    what garbage collection would free.
//!
//! Nothing stops the check but a store that cannot be listed: every problem is a
//! [`Finding`]. Findings of severity [`Severity::Error`] are damage; a `Warning` is worth
//! knowing but loses no recovery point (corruption in unreferenced data, say).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::str::FromStr;

use object_store::path::Path;
use serde::Serialize;

use super::chunk::{ChunkId, ChunkKind, decode_blob, decode_blob_with_base};
use super::damage::DamageNotes;
use super::manifest::decode_chunk_list;
use super::pack::{ChunkIndex, PackEntry, PackId, decode_index};
use super::reader::{ReadError, fetch_blob, fetch_trailer};
use super::verify::{ChunkRole, blob_problem};
use super::{StoreError, VaultStore, paths};

/// A percentage in (0, 100], parsed from `10%` or `10`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Percent(f64);

impl Percent {
    pub fn value(self) -> f64 {
        self.0
    }
}

impl FromStr for Percent {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let number = s.trim().strip_suffix('%').unwrap_or(s.trim());
        match number.parse::<f64>() {
            Ok(p) if p > 0.0 && p <= 100.0 => Ok(Percent(p)),
            _ => Err(format!(
                "`{s}` is not a percentage of packs: give a number above 0 and at most 100, like 10%"
            )),
        }
    }
}

impl std::fmt::Display for Percent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}%", self.0)
    }
}

/// How much pack data a check reads.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ReadData {
    /// Only trailers and chunk-list blocks.
    Structure,
    /// Every indexed pack.
    All,
    /// A random sample of indexed packs, `percent` of them (at least one), chosen by hashing
    /// each pack id with `seed`: the same seed picks the same packs, a new seed per run
    /// eventually covers them all.
    Subset { percent: Percent, seed: u64 },
}

/// Where a pack falls in [0, 1) for a seed.
fn sample_point(seed: u64, pack: &PackId) -> f64 {
    let mut h = blake3::Hasher::new();
    h.update(&seed.to_le_bytes());
    h.update(&pack.0);
    let n = u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().expect("8 bytes"));
    (n >> 11) as f64 / (1u64 << 53) as f64
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum FindingKind {
    IndexUnreadable,
    /// An index names a pack that is not in the store.
    PackMissing,
    /// A pack's trailer cannot be read.
    PackUnreadable,
    IndexDisagreesWithTrailer,
    /// A pack's bytes do not hash to its name.
    PackCorrupt,
    ManifestUnreadable,
    ChunkMissing,
    ChunkCorrupt,
    UnreferencedChunkCorrupt,
    /// A completed backup job's recovery point is in no tier, and no job deleted it.
    BackupWithoutRecoveryPoint,
    /// A manifest no job in this host's history made or mentions.
    RecoveryPointWithoutJob,
    /// Packs `--read-data` could not read because they are in the Archive access tier.
    PacksArchived,
    /// A policy in the vault that does not parse or is not valid.
    PolicyUnreadable,
    /// A backup instance in the vault that does not parse.
    InstanceUnreadable,
}

/// One thing a check found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub severity: Severity,
    pub kind: FindingKind,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pack_id: Option<PackId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunk_id: Option<ChunkId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<ChunkRole>,
    /// The recovery points (`instance/id`) that need what is missing or corrupt.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub recovery_points: Vec<String>,
}

impl Finding {
    pub fn new(severity: Severity, kind: FindingKind, message: impl Into<String>) -> Self {
        Finding {
            severity,
            kind,
            message: message.into(),
            pack_id: None,
            chunk_id: None,
            role: None,
            recovery_points: Vec::new(),
        }
    }

    fn error(kind: FindingKind, message: impl Into<String>) -> Self {
        Self::new(Severity::Error, kind, message)
    }

    fn in_pack(mut self, pack: PackId) -> Self {
        self.pack_id = Some(pack);
        self
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// What garbage collection would free.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Unreferenced {
    /// Indexed chunks no recovery point needs, and their stored bytes.
    pub chunks: usize,
    pub bytes: u64,
    /// Indexed packs none of whose chunks is needed, and their size.
    pub dead_packs: usize,
    pub dead_pack_bytes: u64,
    /// Packs no index lists (left by killed backups or interrupted collections).
    pub unindexed_packs: usize,
    pub unindexed_pack_bytes: u64,
}

/// A manifest found by the check, for comparing the vault with the job history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestRef {
    pub instance: String,
    pub recovery_point_id: String,
    /// The backup job that wrote it, when the manifest is readable.
    pub job_id: Option<String>,
}

/// The check of one store.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreCheck {
    pub recovery_points: usize,
    pub index_files: usize,
    pub packs: usize,
    pub pack_bytes: u64,
    pub indexed_chunks: usize,
    /// Chunks some recovery point needs (chunk-list blocks, data, delta bases).
    pub referenced_chunks: usize,
    pub packs_read: usize,
    pub blobs_verified: u64,
    /// Packs in the Archive access tier (an archive tier on Blob Storage): checked by their
    /// properties (present, large enough for every entry the index places in them), since
    /// their trailers and data can be read only after a rehydration.
    #[serde(skip_serializing_if = "is_zero")]
    pub archived_packs: usize,
    pub unreferenced: Unreferenced,
    pub findings: Vec<Finding>,
    #[serde(skip)]
    pub manifests: Vec<ManifestRef>,
}

impl StoreCheck {
    /// Whether anything found is damage.
    pub fn is_damaged(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Error)
    }
}

/// A delta base, as far as the data pass got with it.
enum Base {
    Read(Vec<u8>),
    /// Not in the index or its pack is gone.
    Missing,
    Corrupt(String),
}

/// A chunk a recovery point needs and cannot have, with every point that needs it.
struct Damage {
    role: ChunkRole,
    pack: Option<PackId>,
    kind: FindingKind,
    message: String,
    points: BTreeSet<String>,
}

/// Checks one store (see the module documentation). The caller holds a shared lock, so no
/// garbage collection changes the store meanwhile; backups may add to it.
pub async fn check_store(
    store: &VaultStore,
    key: &[u8; 32],
    read: ReadData,
) -> Result<StoreCheck, StoreError> {
    let mut c = StoreCheck::default();
    // Manifests are listed first: a backup running meanwhile writes its index file before its
    // manifest, so every manifest listed here has its chunks in an index file listed below,
    // and every pack an index file names was written before it.
    let manifest_paths = store.list(&paths::recovery_points_root()).await?;

    // ---- index files ----
    let index_files = store.list(&paths::indexes()).await?;
    c.index_files = index_files.len();
    let mut index = ChunkIndex::default();
    let mut listed: BTreeMap<[u8; 32], (PackId, Vec<PackEntry>)> = BTreeMap::new();
    for path in &index_files {
        let decoded = match store.get(path).await {
            Ok(bytes) => decode_index(&bytes, store.sealer()).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match decoded {
            Ok(packs) => {
                for (pack, entries) in packs {
                    index.add_pack(pack, &entries);
                    listed.entry(pack.0).or_insert((pack, Vec::new())).1.extend(entries);
                }
            }
            Err(e) => c.findings.push(Finding::error(
                FindingKind::IndexUnreadable,
                format!(
                    "index file `{path}` cannot be read ({e}); `pgvault backup-vault reindex` rebuilds the index from the packs"
                ),
            )),
        }
    }
    for (_, entries) in listed.values_mut() {
        entries.sort_by_key(|e| e.id);
        entries.dedup();
    }
    c.indexed_chunks = index.chunk_count();

    // ---- packs in the store ----
    let mut present: HashMap<PackId, u64> = HashMap::new();
    for (path, size) in store.list_with_sizes(&Path::from("packs")).await? {
        c.pack_bytes += size;
        let id = path
            .filename()
            .and_then(PackId::from_hex)
            .filter(|id| paths::pack(id) == path);
        match id {
            Some(id) => {
                present.insert(id, size);
            }
            None => {
                c.unreferenced.unindexed_packs += 1;
                c.unreferenced.unindexed_pack_bytes += size;
            }
        }
    }
    c.packs = present.len();
    for (id, size) in &present {
        if !listed.contains_key(&id.0) {
            c.unreferenced.unindexed_packs += 1;
            c.unreferenced.unindexed_pack_bytes += size;
        }
    }

    // ---- every indexed pack is there and agrees with the index ----
    let mut readable: HashMap<PackId, Vec<PackEntry>> = HashMap::new();
    for (pack, entries) in listed.values() {
        let Some(size) = present.get(pack) else {
            c.findings.push(
                Finding::error(
                    FindingKind::PackMissing,
                    format!(
                        "pack {pack} is listed in the index ({} chunks) but is not in the store",
                        entries.len()
                    ),
                )
                .in_pack(*pack),
            );
            continue;
        };
        let trailer = match fetch_trailer(store, pack, *size).await {
            Ok(Ok(trailer)) => trailer,
            Ok(Err(e)) => {
                // Its blobs can still be read where the index places them.
                readable.insert(*pack, entries.clone());
                c.findings.push(
                    Finding::error(
                        FindingKind::PackUnreadable,
                        format!("the trailer of pack {pack} cannot be read: {e}"),
                    )
                    .in_pack(*pack),
                );
                continue;
            }
            Err(e) if e.is_archived() => {
                // What its properties can say: it is there, and long enough for its entries.
                c.archived_packs += 1;
                let end = entries
                    .iter()
                    .map(|e| u64::from(e.offset) + u64::from(e.length))
                    .max()
                    .unwrap_or(0);
                if end > *size {
                    c.findings.push(
                        Finding::error(
                            FindingKind::PackCorrupt,
                            format!(
                                "pack {pack} (in the Archive access tier) is {size} bytes, but the index places chunks up to byte {end}"
                            ),
                        )
                        .in_pack(*pack),
                    );
                }
                continue;
            }
            Err(e) => {
                c.findings.push(
                    Finding::error(
                        FindingKind::PackUnreadable,
                        format!("pack {pack} cannot be read: {e}"),
                    )
                    .in_pack(*pack),
                );
                continue;
            }
        };
        let trailer: HashSet<PackEntry> = trailer.into_iter().collect();
        let (agree, disagree): (Vec<&PackEntry>, Vec<&PackEntry>) =
            entries.iter().partition(|e| trailer.contains(e));
        // Data is read where index and trailer agree; a disagreement is reported once, here.
        readable.insert(*pack, agree.into_iter().copied().collect());
        if let Some(first) = disagree.first() {
            let mut f = Finding::error(
                FindingKind::IndexDisagreesWithTrailer,
                format!(
                    "{} of the {} entries the index lists for pack {pack} are not in its trailer as listed (the first: chunk {}); `pgvault backup-vault reindex` rebuilds the index from the trailers",
                    disagree.len(),
                    entries.len(),
                    first.id
                ),
            )
            .in_pack(*pack);
            f.chunk_id = Some(first.id);
            c.findings.push(f);
        }
    }
    let available = |id: &ChunkId| -> Result<PackId, (Option<PackId>, String)> {
        match index.get(id) {
            None => Err((None, "no index file lists it".into())),
            Some((pack, _)) if !present.contains_key(&pack) => {
                Err((Some(pack), format!("its pack {pack} is not in the store")))
            }
            Some((pack, _)) => Ok(pack),
        }
    };

    // ---- manifests and what they reference ----
    let mut referenced: HashSet<ChunkId> = HashSet::new();
    let mut damage: BTreeMap<ChunkId, Damage> = BTreeMap::new();
    let mut note = |id: ChunkId, role, pack, kind, message: String, point: &str| {
        damage
            .entry(id)
            .or_insert_with(|| Damage {
                role,
                pack,
                kind,
                message,
                points: BTreeSet::new(),
            })
            .points
            .insert(point.to_owned());
    };
    // Each readable point's chunk-list blocks: damage found in the pack data is traced back
    // to the points that need it (a second read of their lists, only when there is damage).
    let mut point_lists: Vec<(String, Vec<ChunkId>)> = Vec::new();
    for path in manifest_paths
        .iter()
        .filter(|p| p.as_ref().ends_with(".json"))
    {
        let mut parts = path.parts().skip(1);
        let instance = parts
            .next()
            .map(|p| p.as_ref().to_owned())
            .unwrap_or_default();
        let id = path
            .filename()
            .and_then(|f| f.strip_suffix(".json"))
            .unwrap_or_default()
            .to_owned();
        let point = format!("{instance}/{id}");
        let manifest = match store.get(path).await {
            Ok(bytes) => {
                crate::manifest::open_manifest(store.sealer(), &bytes).map_err(|e| e.to_string())
            }
            Err(e) if e.is_not_found() => continue,
            Err(e) => Err(e.to_string()),
        };
        c.recovery_points += 1;
        let manifest = match manifest {
            Ok(m) => m,
            Err(e) => {
                let mut f = Finding::error(
                    FindingKind::ManifestUnreadable,
                    format!("the manifest of recovery point {point} cannot be read: {e}"),
                );
                f.recovery_points.push(point);
                c.findings.push(f);
                c.manifests.push(ManifestRef {
                    instance,
                    recovery_point_id: id,
                    job_id: None,
                });
                continue;
            }
        };
        c.manifests.push(ManifestRef {
            instance,
            recovery_point_id: id,
            job_id: Some(manifest.job_id.clone()),
        });
        point_lists.push((point.clone(), manifest.stream.chunk_lists.clone()));
        for list in &manifest.stream.chunk_lists {
            referenced.insert(*list);
            if let Err((pack, why)) = available(list) {
                note(
                    *list,
                    ChunkRole::ChunkList,
                    pack,
                    FindingKind::ChunkMissing,
                    format!("chunk-list block {list} is missing: {why}"),
                    &point,
                );
                continue;
            }
            let refs = match fetch_blob(store, &index, key, *list).await {
                Ok((ChunkKind::ChunkList, bytes)) => decode_chunk_list(&bytes),
                Ok(_) => None,
                Err(e) => {
                    note(
                        *list,
                        ChunkRole::ChunkList,
                        index.get(list).map(|(p, _)| p),
                        FindingKind::ChunkCorrupt,
                        format!("chunk-list block {list} is corrupt: {e}"),
                        &point,
                    );
                    continue;
                }
            };
            let Some(refs) = refs else {
                note(
                    *list,
                    ChunkRole::ChunkList,
                    index.get(list).map(|(p, _)| p),
                    FindingKind::ChunkCorrupt,
                    format!("chunk {list} is not a readable chunk-list block"),
                    &point,
                );
                continue;
            };
            for r in refs {
                referenced.insert(r.id);
                if let Err((pack, why)) = available(&r.id) {
                    note(
                        r.id,
                        ChunkRole::Data,
                        pack,
                        FindingKind::ChunkMissing,
                        format!("chunk {} is missing: {why}", r.id),
                        &point,
                    );
                }
                if let Some(base) = index.base_of(&r.id) {
                    referenced.insert(base);
                    if let Err((pack, why)) = available(&base) {
                        note(
                            base,
                            ChunkRole::DeltaBase,
                            pack,
                            FindingKind::ChunkMissing,
                            format!(
                                "chunk {base}, the delta base of chunk {}, is missing: {why}",
                                r.id
                            ),
                            &point,
                        );
                    }
                }
            }
        }
    }
    c.referenced_chunks = referenced.len();

    // ---- pack data ----
    let mut read_damage: BTreeMap<ChunkId, Finding> = BTreeMap::new();
    let mut chosen: Vec<(PackId, &Vec<PackEntry>)> = listed
        .values()
        .filter_map(|(pack, _)| readable.get(pack).map(|entries| (*pack, entries)))
        .collect();
    if let ReadData::Subset { seed, percent } = read {
        // Exactly the share asked for (at least one pack): the packs that fall first for
        // this seed.
        let take = ((chosen.len() as f64 * percent.value() / 100.0).ceil() as usize)
            .clamp(1, chosen.len().max(1));
        chosen.sort_by(|a, b| sample_point(seed, &a.0).total_cmp(&sample_point(seed, &b.0)));
        chosen.truncate(take);
    } else if read == ReadData::Structure {
        chosen.clear();
    }
    // (chunk, the pack holding it, whether it decoded)
    let mut outcomes: Vec<(ChunkId, PackId, Result<(), String>)> = Vec::new();
    for (pack, entries) in chosen {
        let bytes = match store.get(&paths::pack(&pack)).await {
            Ok(bytes) => bytes,
            Err(e) => {
                c.findings.push(
                    Finding::error(
                        FindingKind::PackUnreadable,
                        format!("pack {pack} cannot be read: {e}"),
                    )
                    .in_pack(pack),
                );
                continue;
            }
        };
        c.packs_read += 1;
        if blake3::hash(&bytes).as_bytes() != &pack.0 {
            c.findings.push(
                Finding::error(
                    FindingKind::PackCorrupt,
                    format!("pack {pack}'s bytes no longer hash to its name: it changed after it was written"),
                )
                .in_pack(pack),
            );
        }
        // Bases first (they may lie in other packs), then every blob off the async threads.
        let mut bases: HashMap<ChunkId, Base> = HashMap::new();
        for base in entries.iter().filter_map(|e| e.base) {
            if bases.contains_key(&base) {
                continue;
            }
            let got = match index.get(&base) {
                Some((p, loc)) if p == pack => {
                    match bytes.get(loc.offset as usize..loc.offset as usize + loc.length as usize)
                    {
                        None => Base::Corrupt("the pack is shorter than the index says".into()),
                        Some(blob) => match decode_blob(key, store.sealer(), base, blob) {
                            Ok((_, data)) => Base::Read(data),
                            Err(e) => Base::Corrupt(blob_problem(&e)),
                        },
                    }
                }
                _ => match fetch_blob(store, &index, key, base).await {
                    Ok((_, data)) => Base::Read(data),
                    Err(ReadError::Corrupt(e)) => Base::Corrupt(blob_problem(&e)),
                    // Missing: named by the manifest pass when a recovery point needs it.
                    Err(_) => Base::Missing,
                },
            };
            if let (Base::Corrupt(why), Some((holder, _))) = (&got, index.get(&base)) {
                outcomes.push((base, holder, Err(why.clone())));
            }
            bases.insert(base, got);
        }
        let (key, entries_owned) = (*key, entries.clone());
        let sealer = store.sealer().cloned();
        let results = tokio::task::spawn_blocking(move || {
            entries_owned
                .iter()
                .filter_map(|e| {
                    let base = match e.base.map(|b| &bases[&b]) {
                        None => None,
                        Some(Base::Read(data)) => Some(data.as_slice()),
                        // Cannot be checked without its base, whose problem is its own.
                        Some(Base::Missing | Base::Corrupt(_)) => return None,
                    };
                    let result = match bytes
                        .get(e.offset as usize..(e.offset as usize + e.length as usize))
                    {
                        None => Err("the pack is shorter than the index says".to_string()),
                        Some(blob) => {
                            decode_blob_with_base(&key, sealer.as_ref(), e.id, blob, base)
                                .map(|_| ())
                                .map_err(|err| blob_problem(&err))
                        }
                    };
                    Some((e.id, pack, result))
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        outcomes.extend(results);
        for (id, pack, result) in outcomes.drain(..) {
            match result {
                Ok(()) => c.blobs_verified += 1,
                Err(why) => {
                    let live = referenced.contains(&id);
                    let (severity, kind) = if live {
                        (Severity::Error, FindingKind::ChunkCorrupt)
                    } else {
                        (Severity::Warning, FindingKind::UnreferencedChunkCorrupt)
                    };
                    let mut f = Finding::new(
                        severity,
                        kind,
                        format!(
                            "chunk {id} in pack {pack} is corrupt: {why}{}",
                            if live {
                                ""
                            } else {
                                " (no recovery point needs it)"
                            }
                        ),
                    )
                    .in_pack(pack);
                    f.chunk_id = Some(id);
                    read_damage.entry(id).or_insert(f);
                }
            }
        }
    }

    // ---- garbage ----
    let mut seen: HashSet<ChunkId> = HashSet::new();
    for (pack, entries) in listed.values() {
        let Some(size) = present.get(pack) else {
            continue;
        };
        let mut live = false;
        for e in entries {
            if referenced.contains(&e.id) {
                live = true;
            } else if seen.insert(e.id) {
                c.unreferenced.chunks += 1;
                c.unreferenced.bytes += u64::from(e.length);
            }
        }
        if !live {
            c.unreferenced.dead_packs += 1;
            c.unreferenced.dead_pack_bytes += size;
        }
    }

    for (id, d) in damage {
        let mut f = Finding::error(d.kind, d.message);
        f.pack_id = d.pack;
        f.chunk_id = Some(id);
        f.role = Some(d.role);
        f.recovery_points = d.points.into_iter().collect();
        c.findings.push(f);
    }
    name_points_needing(store, &index, key, &point_lists, &mut read_damage).await;
    c.findings.extend(read_damage.into_values());
    if read != ReadData::Structure && c.archived_packs > 0 {
        c.findings.push(Finding::new(
            Severity::Warning,
            FindingKind::PacksArchived,
            format!(
                "{} packs are in the Archive access tier and were checked by their properties only (present, large enough for their index entries): data in the Archive access tier can be read only after rehydration (`pgvault recovery-point rehydrate`)",
                c.archived_packs
            ),
        ));
    }
    c.findings.sort_by_key(|f| (f.severity, f.kind));
    // Packs that failed are recorded, so backups stop deduplicating against them. Corrupt
    // blobs no recovery point needs count too: a later backup could meet the same bytes.
    let mut notes = DamageNotes::default();
    for f in &c.findings {
        let bad = matches!(
            f.kind,
            FindingKind::PackCorrupt
                | FindingKind::PackUnreadable
                | FindingKind::IndexDisagreesWithTrailer
                | FindingKind::ChunkCorrupt
                | FindingKind::UnreferencedChunkCorrupt
        );
        if let (true, Some(pack)) = (bad, f.pack_id) {
            notes.note(pack, f.chunk_id, format!("{:?}", f.kind));
        }
    }
    if let Err(e) = notes.record(store, "backup-vault check").await {
        tracing::warn!(store = %store.url(), error = %e, "the damage found could not be recorded in the vault; backups may deduplicate against it until it is");
    }
    Ok(c)
}

/// Names, in each finding of `read_damage` about a chunk some point needs, the recovery points
/// that need it (directly, or as the base of a delta they need): the chunk lists are read again,
/// which costs nothing when nothing is damaged.
async fn name_points_needing(
    store: &VaultStore,
    index: &ChunkIndex,
    key: &[u8; 32],
    point_lists: &[(String, Vec<ChunkId>)],
    read_damage: &mut BTreeMap<ChunkId, Finding>,
) {
    if !read_damage
        .values()
        .any(|f| f.kind == FindingKind::ChunkCorrupt)
    {
        return;
    }
    for (point, lists) in point_lists {
        let mut hit: BTreeSet<ChunkId> = lists
            .iter()
            .filter(|l| read_damage.contains_key(l))
            .copied()
            .collect();
        for list in lists {
            let Ok((ChunkKind::ChunkList, bytes)) = fetch_blob(store, index, key, *list).await
            else {
                continue;
            };
            for r in decode_chunk_list(&bytes).unwrap_or_default() {
                if read_damage.contains_key(&r.id) {
                    hit.insert(r.id);
                }
                if let Some(base) = index.base_of(&r.id)
                    && read_damage.contains_key(&base)
                {
                    hit.insert(base);
                }
            }
        }
        for id in hit {
            if let Some(f) = read_damage.get_mut(&id) {
                f.recovery_points.push(point.clone());
            }
        }
    }
    for f in read_damage.values_mut() {
        if !f.recovery_points.is_empty() {
            f.message = format!(
                "{}; recovery points that need it: {}",
                f.message,
                f.recovery_points.join(", ")
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack::encode_index;
    use crate::testing::{KEY, archive, backup, flip_byte_in_blob, needed, pack_chunks, packs};

    fn kinds(c: &StoreCheck) -> Vec<FindingKind> {
        let mut k: Vec<FindingKind> = c.findings.iter().map(|f| f.kind).collect();
        k.dedup();
        k
    }

    /// Two generations; the first point deleted, as the retention sweep would.
    async fn vault() -> (VaultStore, crate::manifest::Manifest) {
        let store = VaultStore::open("memory://").unwrap();
        let rp1 = backup(&store, KEY, "db", "rp1", archive(8_000, 0), None).await;
        let rp2 = backup(&store, KEY, "db", "rp2", archive(9_000, 1), Some(&rp1)).await;
        store
            .delete(&paths::recovery_point("db", "rp1"))
            .await
            .unwrap();
        (store, rp2)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sound_vault_checks_clean_and_its_garbage_is_counted() {
        let (store, rp2) = vault().await;
        let c = check_store(&store, &KEY, ReadData::All).await.unwrap();
        assert!(c.findings.is_empty(), "{:#?}", c.findings);
        assert_eq!(c.recovery_points, 1);
        assert_eq!(c.index_files, 2);
        assert_eq!(c.packs, packs(&store).await.len());
        assert_eq!(c.packs_read, c.packs);
        assert_eq!(c.blobs_verified, c.indexed_chunks as u64);
        assert_eq!(c.referenced_chunks, needed(&store, &KEY, &rp2).await.len());
        // The deleted point's chunks that the second one does not share are garbage.
        assert_eq!(
            c.unreferenced.chunks,
            c.indexed_chunks - c.referenced_chunks
        );
        assert!(c.unreferenced.chunks > 0 && c.unreferenced.bytes > 0);
        assert_eq!(c.unreferenced.unindexed_packs, 0);

        let structure = check_store(&store, &KEY, ReadData::Structure)
            .await
            .unwrap();
        assert!(structure.findings.is_empty());
        assert_eq!((structure.packs_read, structure.blobs_verified), (0, 0));

        // A sample: the same seed reads the same packs; some, not all.
        let half = ReadData::Subset {
            percent: "50%".parse().unwrap(),
            seed: 42,
        };
        let a = check_store(&store, &KEY, half).await.unwrap();
        let b = check_store(&store, &KEY, half).await.unwrap();
        assert_eq!(
            (a.packs_read, a.blobs_verified),
            (b.packs_read, b.blobs_verified)
        );
        assert!(
            a.packs_read > 0 && a.packs_read < c.packs,
            "{} of {}",
            a.packs_read,
            c.packs
        );
        let tiny = ReadData::Subset {
            percent: "0.001".parse().unwrap(),
            seed: 42,
        };
        assert_eq!(check_store(&store, &KEY, tiny).await.unwrap().packs_read, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn damage_is_found_and_named_without_stopping() {
        let (store, rp2) = vault().await;
        let need = needed(&store, &KEY, &rp2).await;
        let index = crate::reader::load_index(&store).await.unwrap();
        // A pack the live point needs (none of its chunk lists), and one byte of a live full
        // chunk in another pack.
        let mut gone = None;
        let mut flipped = None;
        for p in packs(&store).await {
            let chunks = pack_chunks(&store, &p).await;
            let live: Vec<ChunkId> = chunks
                .iter()
                .filter(|c| need.contains(c))
                .copied()
                .collect();
            if live.is_empty() || chunks.iter().any(|c| rp2.stream.chunk_lists.contains(c)) {
                continue;
            }
            if gone.is_none() {
                gone = Some((p, live));
            } else if flipped.is_none()
                && let Some(c) = live.iter().find(|c| index.base_of(c).is_none())
            {
                flipped = Some((p, *c));
            }
        }
        let (gone, gone_live) = gone.unwrap();
        let (flipped_pack, flipped) = flipped.unwrap();
        store.delete(&paths::pack(&gone)).await.unwrap();
        flip_byte_in_blob(&store, &flipped_pack, flipped).await;
        // A corrupt manifest, an unreadable index file, and one that disagrees with a trailer.
        store
            .put(
                &paths::recovery_point("db", "broken"),
                b"{}".to_vec().into(),
            )
            .await
            .unwrap();
        store
            .put(
                &paths::index("garbage"),
                b"PGVIDX01 not zstd".to_vec().into(),
            )
            .await
            .unwrap();
        let mut entries = crate::reader::fetch_trailer(
            &store,
            &flipped_pack,
            store.get(&paths::pack(&flipped_pack)).await.unwrap().len() as u64,
        )
        .await
        .unwrap()
        .unwrap();
        entries.truncate(1);
        entries[0].offset += 1;
        store
            .put(
                &paths::index("wrong"),
                encode_index(&[(flipped_pack, entries)], None).into(),
            )
            .await
            .unwrap();

        let structure = check_store(&store, &KEY, ReadData::Structure)
            .await
            .unwrap();
        assert!(structure.is_damaged());
        assert_eq!(
            kinds(&structure),
            [
                FindingKind::IndexUnreadable,
                FindingKind::PackMissing,
                FindingKind::IndexDisagreesWithTrailer,
                FindingKind::ManifestUnreadable,
                FindingKind::ChunkMissing,
            ]
        );
        let missing: Vec<ChunkId> = structure
            .findings
            .iter()
            .filter(|f| f.kind == FindingKind::ChunkMissing)
            .map(|f| {
                assert_eq!(f.recovery_points, ["db/rp2"]);
                assert_eq!(f.pack_id, Some(gone));
                f.chunk_id.unwrap()
            })
            .collect();
        assert_eq!(missing, gone_live);
        let pack_missing = &structure.findings[1];
        assert_eq!(pack_missing.pack_id, Some(gone));

        // Reading the data finds the flipped byte: the pack's hash and the chunk.
        let all = check_store(&store, &KEY, ReadData::All).await.unwrap();
        let corrupt: Vec<&Finding> = all
            .findings
            .iter()
            .filter(|f| matches!(f.kind, FindingKind::PackCorrupt | FindingKind::ChunkCorrupt))
            .collect();
        assert_eq!(corrupt.len(), 2, "{corrupt:#?}");
        assert!(corrupt.iter().all(|f| f.pack_id == Some(flipped_pack)));
        assert_eq!(corrupt[1].chunk_id, Some(flipped));
        // What it found is recorded for backups and repair.
        let recorded = crate::damage::load_damage(&store).await.unwrap();
        assert!(recorded.packs[&flipped_pack].1.contains(&flipped));
    }

    #[test]
    fn percentages_parse_at_the_boundary() {
        assert_eq!("10%".parse::<Percent>().unwrap().value(), 10.0);
        assert_eq!(" 2.5 ".parse::<Percent>().unwrap().value(), 2.5);
        for bad in ["0%", "-1", "101%", "ten", ""] {
            assert!(bad.parse::<Percent>().is_err(), "{bad}");
        }
    }
}
