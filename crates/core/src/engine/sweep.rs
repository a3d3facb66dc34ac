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

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::io::AsyncReadExt;

use super::vault::StoredPoint;
use super::{Error, Result, Vault};
use crate::model::instance::PROTECTION_STOPPED;
use crate::model::policy::DataStoreType;
use crate::model::resource;
use crate::model::retention::{Fate, policy_zone, retention_plan, states_at};
use crate::store::manifest::Manifest;
use crate::store::paths;
use crate::store::reader::{load_index, read_stream};
use crate::store::writer::{Progress, write_stream};

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

/// `recovery-point rehydrate`: copies an archive-tier recovery point back into the vault tier,
/// where restores read, kept until `until` (the sweep then removes the copy; the archive tier
/// keeps its own).
pub async fn rehydrate(
    vault: &Vault,
    instance: &str,
    id: &str,
    until: DateTime<Utc>,
    progress: Arc<Progress>,
) -> Result<Manifest> {
    let point = vault.stored_point(instance, id).await?;
    let Some(archived) = &point.archive else {
        return Err(Error::new(
            "UserErrorRecoveryPointNotInArchiveTier",
            format!(
                "recovery point `{id}` of `{instance}` is not in the archive tier; it restores from the vault tier as it is"
            ),
        ));
    };
    if let Some(copy) = &point.vault
        && copy.rehydration_expiry_time.is_none()
    {
        return Err(Error::new(
            "UserErrorRecoveryPointAlreadyInVaultTier",
            format!(
                "recovery point `{id}` of `{instance}` is still in the vault tier (until {}); restore it from VaultStore",
                copy.expiry_time
                    .map_or_else(|| "kept".to_owned(), |t| t.to_rfc3339())
            ),
        ));
    }
    copy_between(
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
    .await
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
            "UserErrorArchiveTierNotConfigured",
            format!(
                "vault `{}` has no archive tier; configure one with `backup-vault update --archive-storage-url`",
                vault.name()
            ),
        )
    };
    let source = vault.tier_store(from).ok_or_else(not_configured)?;
    let target = vault.tier_store(to).ok_or_else(not_configured)?;
    let instance = &manifest.backup_instance_name;
    let index = load_index(source).await?;
    let known = Arc::new(load_index(target).await?);
    // Delta bases: the target tier's latest copy of this instance; a damaged one only costs
    // the deltas.
    let previous = match vault.latest_in(to, instance).await {
        Ok(latest) => latest.map(|m| m.stream),
        Err(e) if e.code == "RecoveryPointDamaged" => None,
        Err(e) => return Err(e),
    };
    let key = vault.config.chunk_key()?;
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
    let write = write_stream(target, known, &cfg, reader, progress, previous);
    let (read, written) = tokio::join!(read, write);
    read?;
    let written = written?;
    if written.stream.length != manifest.stream.length
        || written.stream.chunks_blake3 != manifest.stream.chunks_blake3
    {
        return Err(Error::new(
            "TierCopyMismatch",
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
    target
        .put(
            &paths::recovery_point(instance, &copy.recovery_point_id),
            copy.to_bytes().into(),
        )
        .await?;
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
