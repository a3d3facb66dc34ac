//! The retention sweep: recovery points move to the archive tier and expire as the policy
//! engine decides.
//!
//! [`plan_sweep`] compares, for every recovery point of every instance, the tiers that hold it
//! with the tiers [`retention::states_at`] says should hold it at the sweep's time (the very
//! function `backup-policy simulate` uses), and lists the actions that close the gap.
//! [`apply`] performs one. Each action is idempotent and ordered so that a sweep killed at any
//! point is finished by the next: a point is copied into the archive tier (data, then its
//! manifest) before its vault-tier manifest is deleted, so a point in both tiers after a crash
//! is simply "in the archive tier and still to be removed from the vault tier".
//!
//! Which instances: those protected or with backups suspended (Azure's "stop backup, retain
//! as per policy"); a `ProtectionStopped` instance's points are retained forever, as Azure's
//! "stop protection and retain data" does. The last remaining recovery point of an instance is
//! never deleted. Deleting a manifest leaves its chunks to garbage collection ([`crate::store::gc`]).
//!
//! An archive tier on Blob Storage keeps its data packs in the Archive (or Cold) access tier.
//! [`rehydrate`] then first brings the packs a point needs online with Set Blob Tier at the
//! job's rehydrate priority, waits for Azure to finish (hours), copies, and sends the packs
//! back to the archive's access tier.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::io::AsyncReadExt;

use super::vault::StoredPoint;
use super::{Error, Result, Vault};
use crate::model::code::ErrorCode;
use crate::model::instance::PROTECTION_STOPPED;
use crate::model::policy::DataStoreType;
use crate::model::resource;
use crate::model::retention::{Fate, policy_zone, retention_plan, states_at};
use crate::store::blob_rest::{BlobError, BlobProperties, BlobRest};
use crate::store::manifest::{
    Manifest, StreamInfo, decode_chunk_list, open_manifest, seal_manifest,
};
use crate::store::observe::{AnyBytes, StreamFormat as _};
use crate::store::pack::{ChunkIndex, PackId};
use crate::store::reader::{ReadError, fetch_blob, read_stream};
use crate::store::writer::{Progress, write_stream};
use crate::store::{ArchiveAccessTier, VaultStore, paths};

/// What one action does to one recovery point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ActionKind {
    /// Copy into the archive tier, keeping the vault-tier copy (an immediate or custom copy).
    CopyToArchive,
    /// Copy into the archive tier, then delete the vault-tier copy (copy on expiry).
    MoveToArchive,
    /// Delete the vault-tier copy; the archive tier still holds the point.
    DeleteFromVault,
    /// Delete the archive-tier copy; the vault tier still holds the point.
    DeleteFromArchive,
    /// Delete the point from every tier: it has expired.
    Delete,
}

/// One planned action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepAction {
    pub backup_instance_name: String,
    pub recovery_point_id: String,
    pub recovery_point_time: DateTime<Utc>,
    pub retention_tag_name: String,
    pub action: ActionKind,
    /// For a copy: when the archive tier's copy expires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive_expiry_time: Option<DateTime<Utc>>,
    /// Why, in words: the rule and its lifecycle.
    pub reason: String,
}

/// Everything a sweep at one time would do.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepPlan {
    pub actions: Vec<SweepAction>,
    /// What the sweep cannot do as the policy asks (no archive tier, an unreadable policy).
    pub warnings: Vec<String>,
}

/// Plans the sweep of `vault` at `at`.
pub async fn plan_sweep(vault: &Vault, at: DateTime<Utc>) -> Result<SweepPlan> {
    let mut plan = SweepPlan::default();
    for instance in vault.list_instances().await? {
        let name = &instance.name;
        let state = instance
            .properties
            .current_protection_state
            .as_deref()
            .unwrap_or_default();
        if state == PROTECTION_STOPPED {
            continue;
        }
        let policy_name = resource::last_segment(&instance.properties.policy_info.policy_id);
        let policy = match vault.policy(policy_name).await {
            Ok(p) => p,
            Err(e) => {
                plan.warnings.push(format!(
                    "backup instance `{name}`: its policy `{policy_name}` cannot be read ({e}); its recovery points were left as they are"
                ));
                continue;
            }
        };
        let zone = match policy_zone(&policy) {
            Ok(z) => z,
            Err(e) => {
                plan.warnings.push(format!(
                    "backup instance `{name}`: policy `{policy_name}` has an invalid time zone ({e}); its recovery points were left as they are"
                ));
                continue;
            }
        };
        let points = vault.recovery_points(name).await?;
        let plans: Vec<_> = points
            .iter()
            .map(|p| {
                let m = p.manifest();
                retention_plan(&policy, zone, m.recovery_point_time, &m.retention_tag_name)
            })
            .collect();
        let states = states_at(&plans, at, true);
        for ((point, rplan), state) in points.iter().zip(&plans).zip(states) {
            if state.fate == Fate::NotYetTaken {
                continue;
            }
            // A rehydrated vault-tier copy stays until its rehydration ends, whatever the plan.
            let rehydrated = point
                .vault
                .as_ref()
                .and_then(|m| m.rehydration_expiry_time)
                .is_some_and(|until| at < until);
            let want = |tier| {
                state.stores.contains(&tier) || (rehydrated && tier == DataStoreType::VaultStore)
            };
            let reason = match state.fate {
                Fate::Deleted => format!("{}; expired", rplan.description),
                Fate::KeptAsLast => {
                    format!("{}; kept as the last recovery point", rplan.description)
                }
                _ => rplan.description.clone(),
            };
            let archive_until = rplan
                .spans
                .iter()
                .find(|s| s.data_store_type == DataStoreType::ArchiveStore)
                .and_then(|s| s.until);
            if let Some(kind) = action_for(
                point,
                want(DataStoreType::VaultStore),
                want(DataStoreType::ArchiveStore),
                vault.archive.is_some(),
            ) {
                if let Some(refused) = immutable_refusal(vault, point, kind, at) {
                    plan.warnings.push(refused);
                    continue;
                }
                let m = point.manifest();
                plan.actions.push(SweepAction {
                    backup_instance_name: name.clone(),
                    recovery_point_id: m.recovery_point_id.clone(),
                    recovery_point_time: m.recovery_point_time,
                    retention_tag_name: m.retention_tag_name.clone(),
                    action: kind,
                    archive_expiry_time: matches!(
                        kind,
                        ActionKind::CopyToArchive | ActionKind::MoveToArchive
                    )
                    .then_some(archive_until)
                    .flatten(),
                    reason,
                });
            } else if want(DataStoreType::ArchiveStore)
                && !point.in_tier(DataStoreType::ArchiveStore)
                && vault.archive.is_none()
            {
                plan.warnings.push(format!(
                    "recovery point `{}` of `{name}` is due in the archive tier, but vault `{}` has none; it stays in the vault tier (configure one with `backup-vault update --archive-storage-url`)",
                    point.manifest().recovery_point_id,
                    vault.name()
                ));
            }
        }
    }
    plan.actions.sort_by(|a, b| {
        (a.recovery_point_time, &a.backup_instance_name)
            .cmp(&(b.recovery_point_time, &b.backup_instance_name))
    });
    Ok(plan)
}

/// Why an immutable vault keeps what `kind` would remove of `point` at `at`: a tier's copy
/// whose manifest's expiry (a rehydrated copy's: its rehydration's end) has not passed. The
/// expiry recorded when the point was written is what counts, whatever the policy says now,
/// so no policy change shortens the life of an existing point on an immutable vault.
fn immutable_refusal(
    vault: &Vault,
    point: &StoredPoint,
    kind: ActionKind,
    at: DateTime<Utc>,
) -> Option<String> {
    let tiers: &[DataStoreType] = match kind {
        ActionKind::CopyToArchive | ActionKind::MoveToArchive => return None,
        ActionKind::DeleteFromVault => &[DataStoreType::VaultStore],
        ActionKind::DeleteFromArchive => &[DataStoreType::ArchiveStore],
        ActionKind::Delete => &[DataStoreType::VaultStore, DataStoreType::ArchiveStore],
    };
    for (tier, m) in point.tiers().filter(|(t, _)| tiers.contains(t)) {
        let expiry = m.rehydration_expiry_time.or(m.expiry_time);
        if let Err(e) = vault.check_immutable(
            "the retention sweep's deletion",
            &m.backup_instance_name,
            &m.recovery_point_id,
            tier,
            expiry,
            at,
        ) {
            return Some(e.message);
        }
    }
    None
}

/// The action that takes a point from the tiers holding it to the tiers wanted, if any. Without
/// an archive tier a point due there stays in the vault tier.
fn action_for(
    point: &StoredPoint,
    want_vault: bool,
    want_archive: bool,
    has_archive: bool,
) -> Option<ActionKind> {
    let (in_vault, in_archive) = (
        point.in_tier(DataStoreType::VaultStore),
        point.in_tier(DataStoreType::ArchiveStore),
    );
    if want_archive && !in_archive {
        return match (in_vault, has_archive, want_vault) {
            (true, true, true) => Some(ActionKind::CopyToArchive),
            (true, true, false) => Some(ActionKind::MoveToArchive),
            _ => None,
        };
    }
    match (in_vault && !want_vault, in_archive && !want_archive) {
        (true, true) => Some(ActionKind::Delete),
        (true, false) if !in_archive => Some(ActionKind::Delete),
        (true, false) => Some(ActionKind::DeleteFromVault),
        (false, true) if !in_vault => Some(ActionKind::Delete),
        (false, true) => Some(ActionKind::DeleteFromArchive),
        (false, false) => None,
    }
}

/// Performs one action. Callers hold shared locks on the vault's stores.
pub async fn apply(vault: &Vault, action: &SweepAction, progress: Arc<Progress>) -> Result<()> {
    let (instance, id) = (&action.backup_instance_name, &action.recovery_point_id);
    match action.action {
        ActionKind::CopyToArchive | ActionKind::MoveToArchive => {
            let manifest = vault.recovery_point(instance, id).await?;
            copy_to_archive(vault, &manifest, action.archive_expiry_time, progress).await?;
            if action.action == ActionKind::MoveToArchive {
                vault
                    .delete_from(DataStoreType::VaultStore, instance, id)
                    .await?;
            }
        }
        ActionKind::DeleteFromVault => {
            vault
                .delete_from(DataStoreType::VaultStore, instance, id)
                .await?
        }
        ActionKind::DeleteFromArchive => {
            vault
                .delete_from(DataStoreType::ArchiveStore, instance, id)
                .await?
        }
        ActionKind::Delete => {
            // The archive copy goes first: a point half deleted is then still in the vault tier,
            // where the next sweep finds it.
            vault
                .delete_from(DataStoreType::ArchiveStore, instance, id)
                .await?;
            vault
                .delete_from(DataStoreType::VaultStore, instance, id)
                .await?;
        }
    }
    Ok(())
}

/// Copies a vault-tier recovery point into the archive tier: its stream is read from the vault
/// tier and written into the archive tier's store (deduplicated there against what the archive
/// already holds, with deltas against the instance's latest archived point), then its manifest,
/// carrying the archive tier's expiry, is written last.
pub async fn copy_to_archive(
    vault: &Vault,
    manifest: &Manifest,
    archive_expiry: Option<DateTime<Utc>>,
    progress: Arc<Progress>,
) -> Result<Manifest> {
    copy_between(
        vault,
        DataStoreType::VaultStore,
        DataStoreType::ArchiveStore,
        manifest,
        progress,
        |m| Manifest {
            expiry_time: archive_expiry,
            rehydration_expiry_time: None,
            ..m
        },
    )
    .await
}

/// Azure's rehydrate priority (`--rehydration-priority`), sent as `x-ms-rehydrate-priority`
/// with Set Blob Tier when an archive tier on Blob Storage holds packs in the Archive tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum RehydratePriority {
    Standard,
    High,
}

impl RehydratePriority {
    pub fn as_str(self) -> &'static str {
        match self {
            RehydratePriority::Standard => "Standard",
            RehydratePriority::High => "High",
        }
    }

    /// What Azure promises, for the job's progress.
    fn expectation(self) -> &'static str {
        match self {
            RehydratePriority::Standard => "priority Standard can take up to 15 hours",
            RehydratePriority::High => {
                "priority High usually takes under 1 hour for packs of this size"
            }
        }
    }

    /// How often a pending rehydration is polled: often enough not to waste much of a High
    /// one's hour, rarely enough not to spend a Standard one's 15 hours in requests.
    pub fn poll_interval(self) -> Duration {
        match self {
            RehydratePriority::Standard => Duration::from_secs(10 * 60),
            RehydratePriority::High => Duration::from_secs(60),
        }
    }

    /// How long to wait before giving up: twice what Azure says it may take. A rehydration
    /// given up on goes on in Azure; running the job again resumes waiting for it.
    fn patience(self) -> Duration {
        match self {
            RehydratePriority::Standard => Duration::from_secs(30 * 3600),
            RehydratePriority::High => Duration::from_secs(2 * 3600),
        }
    }
}

impl std::str::FromStr for RehydratePriority {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "standard" => Ok(RehydratePriority::Standard),
            "high" => Ok(RehydratePriority::High),
            _ => Err(Error::new(
                ErrorCode::UserErrorInvalidRehydrationPriority,
                format!("rehydration priority `{s}` is not Standard or High"),
            )),
        }
    }
}

/// `recovery-point rehydrate`: copies an archive-tier recovery point back into the vault tier,
/// where restores read, kept until `until` (the sweep then removes the copy; the archive tier
/// keeps its own).
///
/// On Blob Storage the packs the point needs are first brought online at `priority`, and
/// `status` hears how many are ("3 of 5 packs online; ..."). A rehydration killed while it
/// waits resumes when run again: packs already online are skipped, pending ones waited for.
pub async fn rehydrate(
    vault: &Vault,
    instance: &str,
    id: &str,
    until: DateTime<Utc>,
    priority: RehydratePriority,
    progress: Arc<Progress>,
    status: &(dyn Fn(String) + Send + Sync),
) -> Result<Manifest> {
    let point = vault.stored_point(instance, id).await?;
    let Some(archived) = &point.archive else {
        return Err(Error::new(
            ErrorCode::UserErrorRecoveryPointNotInArchiveTier,
            format!(
                "recovery point `{id}` of `{instance}` is not in the archive tier; it restores from the vault tier as it is"
            ),
        ));
    };
    if let Some(copy) = &point.vault
        && copy.rehydration_expiry_time.is_none()
    {
        return Err(Error::new(
            ErrorCode::UserErrorRecoveryPointAlreadyInVaultTier,
            format!(
                "recovery point `{id}` of `{instance}` is still in the vault tier (until {}); restore it from VaultStore",
                copy.expiry_time
                    .map_or_else(|| "kept".to_owned(), |t| t.to_rfc3339())
            ),
        ));
    }
    let tiered = vault
        .tier_store(DataStoreType::ArchiveStore)
        .and_then(|store| store.blob_rest().map(|rest| (store, rest)));
    let mut needed = HashSet::new();
    if let Some((store, rest)) = tiered {
        needed = bring_point_online(vault, store, rest, archived, priority, status).await?;
    }
    let copy = copy_between(
        vault,
        DataStoreType::ArchiveStore,
        DataStoreType::VaultStore,
        archived,
        progress,
        |m| Manifest {
            expiry_time: Some(until),
            rehydration_expiry_time: Some(until),
            ..m
        },
    )
    .await?;
    if let Some((store, rest)) = tiered
        && let Some(tier) = store.pack_tier()
        && let Err(e) = return_to_tier(store, rest, &needed, tier).await
    {
        // The copy is committed and restorable; only the archive's bill is wrong.
        tracing::warn!(recovery_point = id, "packs left online: {e}");
        status(format!(
            "rehydrated; returning the archive's packs to the {tier} access tier failed ({e}); they cost the online tier's price until `recovery-point rehydrate` of this point is run again"
        ));
    }
    Ok(copy)
}

/// How a pack's properties say it can be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PackState {
    Online,
    /// In Archive, with a rehydration under way (`x-ms-archive-status: rehydrate-pending-*`).
    Pending,
    /// In Archive, nothing under way.
    Archived,
}

fn pack_state(props: &BlobProperties) -> PackState {
    match (
        props.access_tier.as_deref(),
        props.archive_status.as_deref(),
    ) {
        (Some("Archive"), Some(s)) if s.starts_with("rehydrate-pending") => PackState::Pending,
        (Some("Archive"), _) => PackState::Archived,
        _ => PackState::Online,
    }
}

fn blob_error(e: BlobError) -> Error {
    Error::from_storage(ErrorCode::VaultStorageError, e.message.clone(), e)
}

/// Brings every pack `point` reads in the archive tier's store online: the packs of its
/// chunk-list blocks first when those are archived (they say which others it needs), then the
/// packs of its chunks and of their delta bases. Returns those packs.
async fn bring_point_online(
    vault: &Vault,
    store: &VaultStore,
    rest: &BlobRest,
    point: &Manifest,
    priority: RehydratePriority,
    status: &(dyn Fn(String) + Send + Sync),
) -> Result<HashSet<PackId>> {
    let key = vault.chunk_key();
    let index = tiering_index(store).await?;
    loop {
        let (needed, lists_archived) = packs_of(store, &index, &key, &point.stream).await?;
        if lists_archived.is_empty() {
            bring_online(rest, &needed, priority, status).await?;
            return Ok(needed);
        }
        bring_online(rest, &lists_archived, priority, status).await?;
    }
}

/// The index that says which packs a rehydration brings online (and returns to its tier):
/// the one the copy then reads through, damaged packs last. With the plain index a chunk
/// that a damaged pack and a sound one both hold could be brought online in the damaged
/// pack, and the copy, reading the sound one, would find it still archived.
async fn tiering_index(store: &VaultStore) -> Result<ChunkIndex> {
    Ok(crate::store::damage::load_readable_index(store).await?.0)
}

/// The packs a stream reads (its chunk-list blocks', its chunks', their delta bases'), and
/// those of its chunk-list blocks that cannot be read because they are archived (their
/// chunks are then not known yet).
async fn packs_of(
    store: &VaultStore,
    index: &ChunkIndex,
    key: &[u8; 32],
    stream: &StreamInfo,
) -> Result<(HashSet<PackId>, HashSet<PackId>)> {
    let (mut needed, mut archived) = (HashSet::new(), HashSet::new());
    let add = |id: &crate::store::chunk::ChunkId, needed: &mut HashSet<PackId>| {
        if let Some((pack, _)) = index.get(id) {
            needed.insert(pack);
        }
    };
    for list in &stream.chunk_lists {
        add(list, &mut needed);
        let block = match fetch_blob(store, index, key, *list).await {
            Ok((_, block)) => block,
            Err(ReadError::Store(e)) if e.is_archived() => {
                archived.extend(index.get(list).map(|(pack, _)| pack));
                continue;
            }
            // A damaged point fails in the copy, which names what is wrong.
            Err(_) => continue,
        };
        for r in decode_chunk_list(&block).unwrap_or_default() {
            add(&r.id, &mut needed);
            if let Some(base) = index.base_of(&r.id) {
                add(&base, &mut needed);
            }
        }
    }
    Ok((needed, archived))
}

/// Starts the rehydration (to Hot, at `priority`) of each of `packs` in the Archive tier,
/// then waits until all are online.
async fn bring_online(
    rest: &BlobRest,
    packs: &HashSet<PackId>,
    priority: RehydratePriority,
    status: &(dyn Fn(String) + Send + Sync),
) -> Result<()> {
    let mut waiting = Vec::new();
    for pack in packs {
        if !nudge_online(rest, *pack, priority).await? {
            waiting.push(*pack);
        }
    }
    wait_online(
        packs.len(),
        waiting,
        priority,
        |pack| nudge_online(rest, pack, priority),
        status,
    )
    .await
}

/// Whether `pack` is online; an archived one (not yet asked for, or returned to the archive
/// since) has its rehydration started, a pending one is left to finish.
async fn nudge_online(rest: &BlobRest, pack: PackId, priority: RehydratePriority) -> Result<bool> {
    let blob = paths::pack(&pack).to_string();
    let props = rest.properties(&blob).await.map_err(blob_error)?;
    match pack_state(&props) {
        PackState::Online => Ok(true),
        PackState::Pending => Ok(false),
        PackState::Archived => {
            start_rehydration(rest, &blob, priority).await?;
            Ok(false)
        }
    }
}

/// Set Blob Tier to Hot at `priority`. A rehydration already under way (409
/// `BlobBeingRehydrated`, started by a killed run of this job) is waited for like one started
/// now.
async fn start_rehydration(rest: &BlobRest, blob: &str, priority: RehydratePriority) -> Result<()> {
    match rest.set_tier(blob, "Hot", Some(priority.as_str())).await {
        Err(e) if !e.is("BlobBeingRehydrated") => Err(blob_error(e)),
        _ => Ok(()),
    }
}

/// Polls `probe` (is this pack online?) for the `waiting` packs, every
/// [`RehydratePriority::poll_interval`], telling `status` how many of `total` are online,
/// until none waits. Sleeps on tokio's clock, so tests run it on a paused one.
async fn wait_online<F, Fut>(
    total: usize,
    mut waiting: Vec<PackId>,
    priority: RehydratePriority,
    mut probe: F,
    status: &(dyn Fn(String) + Send + Sync),
) -> Result<()>
where
    F: FnMut(PackId) -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let give_up = tokio::time::Instant::now() + priority.patience();
    loop {
        let mut still = Vec::with_capacity(waiting.len());
        for pack in waiting {
            if !probe(pack).await? {
                still.push(pack);
            }
        }
        waiting = still;
        status(format!(
            "{} of {total} packs online; {}",
            total - waiting.len(),
            priority.expectation()
        ));
        if waiting.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= give_up {
            return Err(Error::new(
                ErrorCode::RehydrationTimedOut,
                format!(
                    "{} of {total} packs are still being rehydrated after {} hours; Azure goes on with it: run `recovery-point rehydrate` again to resume waiting",
                    waiting.len(),
                    priority.patience().as_secs() / 3600
                ),
            ));
        }
        tokio::time::sleep(priority.poll_interval()).await;
    }
}

/// Sends the rehydrated packs back to the archive's access tier, so the archive copy costs
/// what it should (moving a blob from Hot to Archive or Cold is immediate). Packs holding any
/// archived point's chunk-list blocks stay online: listing, planning and `check` read them.
async fn return_to_tier(
    store: &VaultStore,
    rest: &BlobRest,
    packs: &HashSet<PackId>,
    tier: ArchiveAccessTier,
) -> Result<()> {
    let index = tiering_index(store).await?;
    let mut list_packs = HashSet::new();
    for path in store.list(&paths::recovery_points_root()).await? {
        let Ok(manifest) = open_manifest(store.sealer(), &store.get(&path).await?) else {
            continue;
        };
        list_packs.extend(
            manifest
                .stream
                .chunk_lists
                .iter()
                .filter_map(|l| index.get(l).map(|(pack, _)| pack)),
        );
    }
    for pack in packs.difference(&list_packs) {
        let blob = paths::pack(pack).to_string();
        let props = rest.properties(&blob).await.map_err(blob_error)?;
        if props.access_tier.as_deref() != Some(tier.as_str()) {
            rest.set_tier(&blob, tier.as_str(), None)
                .await
                .map_err(blob_error)?;
        }
    }
    Ok(())
}

/// Copies a recovery point's stream from one tier's store into the other's and writes the
/// manifest `describe` makes of it, last.
async fn copy_between(
    vault: &Vault,
    from: DataStoreType,
    to: DataStoreType,
    manifest: &Manifest,
    progress: Arc<Progress>,
    describe: impl FnOnce(Manifest) -> Manifest,
) -> Result<Manifest> {
    let not_configured = || {
        Error::new(
            ErrorCode::UserErrorArchiveTierNotConfigured,
            format!(
                "vault `{}` has no archive tier; configure one with `backup-vault update --archive-storage-url`",
                vault.name()
            ),
        )
    };
    let source = vault.tier_store(from).ok_or_else(not_configured)?;
    let target = vault.tier_store(to).ok_or_else(not_configured)?;
    let instance = &manifest.backup_instance_name;
    let index = crate::store::damage::load_readable_index(source).await?.0;
    // The copy never dedups against the target's missing, truncated or recorded-bad packs.
    let known = Arc::new(crate::store::damage::load_backup_index(target).await?.0);
    // Delta bases: the target tier's latest copy of this instance; a damaged one only costs
    // the deltas. Not in the Archive access tier: a delta is encoded against its base read
    // back, and archived packs cannot be read.
    let previous = match vault.latest_in(to, instance).await {
        _ if target
            .pack_tier()
            .is_some_and(ArchiveAccessTier::is_offline) =>
        {
            None
        }
        Ok(latest) => latest.map(|m| m.stream),
        Err(e) if e.code == ErrorCode::RecoveryPointDamaged => None,
        Err(e) => return Err(e),
    };
    let key = vault.chunk_key();
    let cfg = vault.writer_config()?;
    let (mut tx, rx) = tokio::io::duplex(1 << 20);
    let reader = BlockingReader {
        inner: rx,
        runtime: tokio::runtime::Handle::current(),
    };
    let read = async move {
        let out = read_stream(
            source,
            &index,
            &key,
            &manifest.stream,
            &mut tx,
            Arc::new(AtomicU64::new(0)),
        )
        .await;
        // Dropping the writer ends the reader's stream, on success or failure.
        drop(tx);
        out
    };
    // A copy of a stream already judged whole at its backup: its bytes are checked against the
    // manifest below, not its format.
    let write = write_stream(
        target,
        known,
        &cfg,
        reader,
        progress,
        previous,
        AnyBytes.observer(),
    );
    let (read, written) = tokio::join!(read, write);
    read?;
    let written = written?;
    if written.stream.length != manifest.stream.length
        || written.stream.chunks_blake3 != manifest.stream.chunks_blake3
    {
        return Err(Error::new(
            ErrorCode::TierCopyMismatch,
            format!(
                "the {to:?} copy of recovery point `{}` does not match the {from:?} one; the copy was not committed",
                manifest.recovery_point_id
            ),
        ));
    }
    let copy = describe(Manifest {
        stream: written.stream,
        ..manifest.clone()
    });
    // On an immutable vault on Blob Storage the copy's data is under retention until the copy
    // expires (a rehydrated copy: until its rehydration ends) before the copy exists.
    let until = copy.rehydration_expiry_time.or(copy.expiry_time);
    vault.retain_stream(to, &copy.stream, until).await?;
    let path = paths::recovery_point(instance, &copy.recovery_point_id);
    target
        .put(
            &path,
            seal_manifest(target.sealer(), copy.to_bytes()).into(),
        )
        .await?;
    if let Err(e) = vault.retain_manifest(to, &path, until).await {
        tracing::error!(%instance, recovery_point = %copy.recovery_point_id, "the {to:?} copy's manifest could not be put under retention: {}", e.message);
    }
    Ok(copy)
}

/// A synchronous reader over an async one, for the writer's chunker thread (which is not a
/// runtime thread, so it may block on the runtime).
struct BlockingReader {
    inner: tokio::io::DuplexStream,
    runtime: tokio::runtime::Handle,
}

impl std::io::Read for BlockingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.runtime.block_on(self.inner.read(buf))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use bytes::Bytes;

    use super::*;
    use crate::store::azure::{AzureAuth, AzureLocation, EMULATOR_ACCOUNT_KEY};

    fn statuses() -> (Arc<Mutex<Vec<String>>>, impl Fn(String) + Send + Sync) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        (seen, move |s| sink.lock().unwrap().push(s))
    }

    /// A rehydration brings online the packs the copy will read: with a chunk in a pack
    /// recorded bad and again in a sound one (a later backup stored it anew), the sound one,
    /// whatever order the index files list in.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rehydration_brings_online_the_sound_copy_of_a_chunk() {
        use crate::store::damage::{DamageNotes, load_backup_index};
        use crate::store::testing::{self, KEY};

        let store = VaultStore::open("memory://").unwrap();
        let data = testing::archive(6_000, 0);
        let rp1 = testing::backup(&store, KEY, "db", "rp1", data.clone(), None).await;
        let mut notes = DamageNotes::default();
        for pack in &testing::packs(&store).await {
            notes.note(*pack, None, "test: recorded bad");
        }
        notes.record(&store, "test").await.unwrap();
        // A backup that avoids the damage stores every chunk again, in new packs (a new first
        // chunk shifts what goes in which pack, so they are not byte for byte the old ones).
        let (known, _) = load_backup_index(&store).await.unwrap();
        let mut again = b"a new first row\n".repeat(2_000);
        again.extend_from_slice(&data);
        write_stream(
            &store,
            Arc::new(known),
            &testing::config(KEY),
            std::io::Cursor::new(again),
            Arc::new(Progress::default()),
            None,
            AnyBytes.observer(),
        )
        .await
        .unwrap();

        // Still bad: recorded, and not written again whole since. `sound` holds the rest.
        let (sound, excluded) = load_backup_index(&store).await.unwrap();
        assert!(!excluded.recorded_bad.is_empty());
        let index = tiering_index(&store).await.unwrap();
        let (needed, archived) = packs_of(&store, &index, &KEY, &rp1.stream).await.unwrap();
        assert!(archived.is_empty() && !needed.is_empty());
        // Every chunk of the point that a sound pack holds is brought online there (its
        // chunk-list blocks and a first chunk only it has are in bad packs alone).
        let mut ids = rp1.stream.chunk_lists.clone();
        for list in &rp1.stream.chunk_lists {
            let (_, block) = fetch_blob(&store, &index, &KEY, *list).await.unwrap();
            ids.extend(decode_chunk_list(&block).unwrap().iter().map(|r| r.id));
        }
        let mut with_sound_copy = 0;
        for id in ids.iter().filter(|id| sound.get(id).is_some()) {
            with_sound_copy += 1;
            let (pack, _) = index.get(id).unwrap();
            assert!(
                !excluded.recorded_bad.contains(&pack),
                "chunk {id:?} would be brought online in a pack recorded bad"
            );
        }
        assert!(
            with_sound_copy > ids.len() / 2,
            "{with_sound_copy} of {}",
            ids.len()
        );
    }

    /// Three packs pending; one comes online per poll. The wait polls on tokio's (paused)
    /// clock at the priority's interval, reports each round and ends when none is pending.
    #[tokio::test(start_paused = true)]
    async fn waiting_polls_at_the_priority_interval_until_every_pack_is_online() {
        let packs: Vec<PackId> = (1..=3u8).map(|i| PackId([i; 32])).collect();
        let polls = Arc::new(Mutex::new(0usize));
        let (seen, status) = statuses();
        let start = tokio::time::Instant::now();
        let probes = polls.clone();
        wait_online(
            4,
            packs.clone(),
            RehydratePriority::Standard,
            |pack| {
                let polls = probes.clone();
                async move {
                    *polls.lock().unwrap() += 1;
                    // Pack i is online from round i on.
                    let round = (start.elapsed().as_secs() / 600) as u8 + 1;
                    Ok(pack.0[0] <= round)
                }
            },
            &status,
        )
        .await
        .unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(2 * 600));
        assert_eq!(*polls.lock().unwrap(), 3 + 2 + 1);
        assert_eq!(
            *seen.lock().unwrap(),
            [2, 3, 4]
                .map(|n| format!(
                    "{n} of 4 packs online; priority Standard can take up to 15 hours"
                ))
                .to_vec()
        );
    }

    /// A pack that never comes online ends the wait with an error saying how to resume, after
    /// twice what Azure promises for the priority, not before.
    #[tokio::test(start_paused = true)]
    async fn a_rehydration_that_never_ends_is_given_up_with_a_resumable_error() {
        let (_, status) = statuses();
        let start = tokio::time::Instant::now();
        let err = wait_online(
            1,
            vec![PackId([1; 32])],
            RehydratePriority::High,
            |_| async { Ok(false) },
            &status,
        )
        .await
        .unwrap_err();
        assert_eq!(err.code.as_str(), "RehydrationTimedOut");
        assert!(
            err.message.contains("run `recovery-point rehydrate` again"),
            "{err:?}"
        );
        assert_eq!(start.elapsed(), Duration::from_secs(2 * 3600));
    }

    #[test]
    fn priorities_parse_at_the_boundary() {
        assert_eq!(
            "high".parse::<RehydratePriority>().unwrap(),
            RehydratePriority::High
        );
        assert_eq!(
            "Standard".parse::<RehydratePriority>().unwrap(),
            RehydratePriority::Standard
        );
        let err = "Urgent".parse::<RehydratePriority>().unwrap_err();
        assert_eq!(err.code.as_str(), "UserErrorInvalidRehydrationPriority");
    }

    #[test]
    fn pack_states_follow_the_tier_and_archive_status() {
        let props = |tier: Option<&str>, status: Option<&str>| BlobProperties {
            access_tier: tier.map(str::to_owned),
            archive_status: status.map(str::to_owned),
            ..Default::default()
        };
        assert_eq!(pack_state(&props(Some("Hot"), None)), PackState::Online);
        assert_eq!(pack_state(&props(None, None)), PackState::Online);
        assert_eq!(pack_state(&props(Some("Cold"), None)), PackState::Online);
        assert_eq!(
            pack_state(&props(Some("Archive"), None)),
            PackState::Archived
        );
        assert_eq!(
            pack_state(&props(Some("Archive"), Some("rehydrate-pending-to-hot"))),
            PackState::Pending
        );
    }

    /// Forwards connections to `upstream`, keeping every byte the client sent: the requests
    /// as they went to Blob Storage.
    async fn recording_proxy(upstream: u16) -> (u16, Arc<Mutex<Vec<u8>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let record = sent.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = tokio::net::TcpStream::connect(("127.0.0.1", upstream))
                    .await
                    .unwrap();
                let record = record.clone();
                tokio::spawn(async move {
                    use tokio::io::AsyncWriteExt;
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let up = async {
                        let mut buf = vec![0u8; 64 << 10];
                        loop {
                            let n = client_read.read(&mut buf).await.unwrap_or(0);
                            if n == 0 {
                                break;
                            }
                            record.lock().unwrap().extend_from_slice(&buf[..n]);
                            if server_write.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        let _ = server_write.shutdown().await;
                    };
                    let down = tokio::io::copy(&mut server_read, &mut client_write);
                    let _ = tokio::join!(up, down);
                });
            }
        });
        (port, sent)
    }

    /// Against Azurite, through a proxy that records the requests: an archived pack is
    /// rehydrated with Set Blob Tier to Hot carrying the job's priority, a pack already online
    /// is left alone, and both are online afterwards.
    #[tokio::test]
    async fn rehydration_sends_set_blob_tier_with_the_priority() {
        let azurite = pgvault_testkit::Azurite::start();
        let (port, sent) = recording_proxy(azurite.port()).await;
        let location = AzureLocation::parse("az://devstoreaccount1/rehydrate-test/archive")
            .unwrap()
            .unwrap();
        let rest = BlobRest::new(
            location,
            AzureAuth::Emulator {
                endpoint: format!("http://127.0.0.1:{port}"),
                key: EMULATOR_ACCOUNT_KEY.into(),
            },
        );
        rest.create_container().await.unwrap();
        let (archived, online) = (PackId([0xa1; 32]), PackId([0xb2; 32]));
        for pack in [archived, online] {
            rest.put_blob(
                paths::pack(&pack).as_ref(),
                Bytes::from_static(b"pack"),
                &[],
            )
            .await
            .unwrap();
        }
        let archived_blob = paths::pack(&archived).to_string();
        rest.set_tier(&archived_blob, "Archive", None)
            .await
            .unwrap();
        sent.lock().unwrap().clear();

        let (seen, status) = statuses();
        let packs: HashSet<PackId> = [archived, online].into();
        bring_online(&rest, &packs, RehydratePriority::High, &status)
            .await
            .unwrap();

        let requests = String::from_utf8_lossy(&sent.lock().unwrap()).to_ascii_lowercase();
        let set_tier: Vec<&str> = requests
            .split("\r\n\r\n")
            .filter(|head| head.starts_with("put ") && head.contains("comp=tier"))
            .collect();
        assert_eq!(
            set_tier.len(),
            1,
            "one Set Blob Tier, for the archived pack: {requests}"
        );
        assert!(set_tier[0].contains(&archived.to_hex()), "{}", set_tier[0]);
        assert!(
            set_tier[0].contains("x-ms-access-tier: hot"),
            "{}",
            set_tier[0]
        );
        assert!(
            set_tier[0].contains("x-ms-rehydrate-priority: high"),
            "{}",
            set_tier[0]
        );
        assert_eq!(
            seen.lock().unwrap().last().unwrap(),
            "2 of 2 packs online; priority High usually takes under 1 hour for packs of this size"
        );
        let props = rest.properties(&archived_blob).await.unwrap();
        assert_ne!(props.access_tier.as_deref(), Some("Archive"));
    }
}

#[cfg(test)]
mod immutability_tests {
    use super::*;
    use crate::model::security::{ImmutabilityState, SecurityChange};
    use crate::store::testing::{archive, backup};

    /// On an immutable vault the sweep keeps a copy whose recorded expiry has not passed,
    /// whatever the policy now says (a shortened retention), and lets it go once it has; a
    /// rehydrated copy counts until its rehydration ends. Tier moves are never refused.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_immutable_vault_keeps_what_has_not_expired_whatever_the_policy_says() {
        let store = VaultStore::open("memory://").unwrap();
        let mut vault = Vault::create(store, "V", &Default::default(), Utc::now(), None)
            .await
            .unwrap();
        let key = vault.config.chunk_key().unwrap();
        let mut m = backup(&vault.store, key, "db", "p1", archive(2_000, 0), None).await;
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        m.expiry_time = Some(t("2031-01-01T00:00:00Z"));
        let point = StoredPoint {
            vault: Some(m.clone()),
            archive: None,
        };
        let before = t("2030-06-01T00:00:00Z");
        let after = t("2031-01-01T00:00:00Z");
        assert_eq!(
            immutable_refusal(&vault, &point, ActionKind::Delete, before),
            None,
            "a vault that is not immutable refuses nothing"
        );
        vault
            .set_security_settings(&SecurityChange {
                immutability_state: Some(ImmutabilityState::Unlocked),
                ..Default::default()
            })
            .await
            .unwrap();
        let refused = immutable_refusal(&vault, &point, ActionKind::Delete, before).unwrap();
        assert!(
            refused.contains("immutabilityState Unlocked") && refused.contains("2031-01-01"),
            "{refused}"
        );
        assert_eq!(
            immutable_refusal(&vault, &point, ActionKind::Delete, after),
            None
        );
        assert_eq!(
            immutable_refusal(&vault, &point, ActionKind::MoveToArchive, before),
            None
        );
        // A rehydrated vault-tier copy goes when its rehydration ends, the archive copy stays.
        let mut copy = m.clone();
        copy.rehydration_expiry_time = Some(t("2030-05-01T00:00:00Z"));
        let rehydrated = StoredPoint {
            vault: Some(copy),
            archive: Some(m.clone()),
        };
        assert_eq!(
            immutable_refusal(&vault, &rehydrated, ActionKind::DeleteFromVault, before),
            None
        );
        assert!(
            immutable_refusal(&vault, &rehydrated, ActionKind::DeleteFromArchive, before).is_some()
        );
    }
}
