//! A vault's security settings (`vault.json`'s `securitySettings`) and what they keep:
//! soft-deleted backup instances and recovery points, and the immutability checks.
//!
//! **Soft-deleted instance.** `deleted-instances/<name>.json` holds the instance (protection
//! stopped) and Azure's `deletionInfo`; its recovery points stay where they are under
//! `recovery-points/<name>/`, so garbage collection keeps their data without knowing soft
//! delete exists, and the sweep leaves them (it sweeps only instances). The record is written
//! before the instance's file is removed, and an undelete writes the instance back before
//! removing the record: a crash in between leaves both, which every reader treats as "not
//! deleted" (a purge then only drops the record).
//!
//! **Soft-deleted recovery point.** Its manifest's stored bytes move unchanged (copy, then
//! delete) to `recovery-points/_deleted/<instance>/<id>.json` in each tier that holds it, where
//! garbage collection, `check` and `reindex` still read it; its `deletionInfo` is
//! `deleted-recovery-points/<instance>/<id>.json` in the vault tier, written first.
//!
//! **Purge.** [`Vault::purge_plan`] lists what is due at a time; the host purges it as jobs in
//! the retention sweep.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::vault::Vault;
use super::{Error, Result};
use crate::model::code::ErrorCode;
use crate::model::instance::{BackupInstanceRequest, PROTECTION_STOPPED, ProtectionStatus};
use crate::model::policy::DataStoreType;
use crate::model::resource::{self, envelope};
use crate::model::security::{
    DeletionInfo, ImmutabilityState, SecurityChange, SecurityError, SecuritySettings,
};
use crate::store::blob_rest::{BlobError, BlobRest, ImmutabilityPolicyMode};
use crate::store::immutability;
use crate::store::manifest::{StreamInfo, open_manifest};
use crate::store::pack::ChunkIndex;
use crate::store::{VaultStore, paths};
use object_store::path::Path;

fn blob_error(e: BlobError) -> Error {
    Error::from_storage(ErrorCode::VaultStorageError, e.message.clone(), e)
}

/// The state Azure shows a soft-deleted backup instance in.
pub const SOFT_DELETED: &str = "SoftDeleted";

impl From<SecurityError> for Error {
    fn from(e: SecurityError) -> Self {
        Error::new(e.code, e.message)
    }
}

/// `deleted-instances/<name>.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeletedInstance {
    pub deletion_info: DeletionInfo,
    /// The instance as it was stored, protection stopped.
    pub instance: BackupInstanceRequest,
}

/// `deleted-recovery-points/<instance>/<id>.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeletedPoint {
    pub backup_instance_name: String,
    pub recovery_point_id: String,
    pub deletion_info: DeletionInfo,
}

/// What a purge at some time removes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PurgePlan {
    pub instances: Vec<DeletedInstance>,
    pub points: Vec<DeletedPoint>,
}

impl PurgePlan {
    pub fn is_empty(&self) -> bool {
        self.instances.is_empty() && self.points.is_empty()
    }
}

impl Vault {
    /// The vault's soft-delete and immutability settings.
    pub fn security(&self) -> &SecuritySettings {
        &self.config.security_settings
    }

    /// `backup-vault create|update --soft-delete-state --retention-duration-in-days
    /// --immutability-state`, and the REST API's `securitySettings`: applies `change` under
    /// Azure's rules ([`SecuritySettings::apply`]) and records it in `vault.json`. Returns what
    /// the change weakened (soft delete turned off or shortened, immutability disabled), each
    /// also logged as a warning: the place alerts hook on.
    pub async fn set_security_settings(&mut self, change: &SecurityChange) -> Result<Vec<String>> {
        let (next, weakened) = self.security().apply(self.name(), change)?;
        if next != self.config.security_settings {
            let mut config = self.config.clone();
            config.security_settings = next;
            self.store.put_json(&paths::vault_config(), &config).await?;
            self.config = config;
        }
        for w in &weakened {
            tracing::warn!(vault = %self.name(), "security weakened: {w}");
        }
        Ok(weakened)
    }

    /// Refuses `operation` removing recovery point `id` of `instance` (whose manifest in `tier`
    /// says when it expires) at `now` on an immutable vault before that expiry.
    pub fn check_immutable(
        &self,
        operation: &str,
        instance: &str,
        id: &str,
        tier: DataStoreType,
        expiry: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let what = format!("recovery point `{id}` of `{instance}` ({tier})");
        Ok(self
            .security()
            .check_removal(self.name(), operation, &what, expiry, now)?)
    }

    /// Refuses `operation` when any recovery point of `instance`, in any tier, is still
    /// within its expiry on an immutable vault (stop protection with delete, an instance's
    /// deletion). A damaged manifest, whose expiry cannot be read, is refused too.
    pub async fn check_immutable_instance(
        &self,
        operation: &str,
        instance: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        if !self.security().immutable() {
            return Ok(());
        }
        let (points, damaged) = self.recovery_points_and_damage(instance).await?;
        for point in &points {
            for (tier, m) in point.tiers() {
                self.check_immutable(
                    operation,
                    instance,
                    &m.recovery_point_id,
                    tier,
                    m.expiry_time,
                    now,
                )?;
            }
        }
        if let Some(d) = damaged.first() {
            self.check_immutable(operation, instance, &d.recovery_point_id, d.tier, None, now)?;
        }
        Ok(())
    }

    // ---- storage-enforced immutability (Blob Storage) ----

    /// The Blob client of `tier` and the retention mode its blobs get: `None` unless the vault
    /// is immutable and that tier is on Blob Storage (a local folder's guarantee is pgvault's
    /// own).
    fn blob_retention(
        &self,
        tier: DataStoreType,
    ) -> Option<(&VaultStore, &BlobRest, ImmutabilityPolicyMode)> {
        let mode = match self.security().immutability_settings.state {
            ImmutabilityState::Disabled => return None,
            ImmutabilityState::Unlocked => ImmutabilityPolicyMode::Unlocked,
            ImmutabilityState::Locked => ImmutabilityPolicyMode::Locked,
        };
        let store = self.tier_store(tier)?;
        Some((store, store.blob_rest()?, mode))
    }

    /// On an immutable vault on Blob Storage, makes every pack `stream` needs in `tier`
    /// undeletable until `until` (extending, never shortening, what a shared pack has). A
    /// backup (and a copy to the archive tier) calls it before writing the manifest. A point
    /// kept for ever (`until` `None`) gets none: Blob Storage's policies need a date.
    pub async fn retain_stream(
        &self,
        tier: DataStoreType,
        stream: &StreamInfo,
        until: Option<DateTime<Utc>>,
    ) -> Result<()> {
        let (Some((store, _, _)), Some(_)) = (self.blob_retention(tier), until) else {
            return Ok(());
        };
        let index = crate::store::reader::load_index(store).await?;
        self.retain_stream_with(tier, &index, stream, until).await
    }

    async fn retain_stream_with(
        &self,
        tier: DataStoreType,
        index: &ChunkIndex,
        stream: &StreamInfo,
        until: Option<DateTime<Utc>>,
    ) -> Result<()> {
        let (Some((store, rest, mode)), Some(until)) = (self.blob_retention(tier), until) else {
            return Ok(());
        };
        let key = self.config.chunk_key()?;
        let packs = immutability::packs_of(store, index, &key, stream)
            .await
            .map_err(|e| {
                Error::new(
                    ErrorCode::VaultStorageError,
                    format!("cannot list the packs a recovery point needs, to protect them: {e}"),
                )
            })?;
        let done = immutability::retain_until(rest, immutability::pack_blobs(&packs), until, mode)
            .await
            .map_err(blob_error)?;
        tracing::info!(vault = %self.name(), %tier, extended = done.extended, already = done.already, "packs retained until {until}");
        Ok(())
    }

    /// On an immutable vault on Blob Storage, makes the manifest at `path` in `tier`
    /// undeletable until `until`.
    pub async fn retain_manifest(
        &self,
        tier: DataStoreType,
        path: &Path,
        until: Option<DateTime<Utc>>,
    ) -> Result<()> {
        let (Some((_, rest, mode)), Some(until)) = (self.blob_retention(tier), until) else {
            return Ok(());
        };
        immutability::retain_until(rest, [path.to_string()], until, mode)
            .await
            .map_err(blob_error)?;
        Ok(())
    }

    /// Puts every recovery point already in the vault (each tier, soft-deleted ones too) under
    /// Blob Storage retention until its expiry, in the vault's mode: what turning immutability
    /// on, or locking it, does to what was written before. Returns how many manifests it
    /// covered; nothing on a vault that is not immutable or not on Blob Storage.
    pub async fn retain_existing(&self) -> Result<usize> {
        let mut covered = 0;
        for tier in [DataStoreType::VaultStore, DataStoreType::ArchiveStore] {
            let Some((store, _, _)) = self.blob_retention(tier) else {
                continue;
            };
            let index = crate::store::reader::load_index(store).await?;
            for path in store.list(&paths::recovery_points_root()).await? {
                if !path.as_ref().ends_with(".json") {
                    continue;
                }
                // A damaged manifest cannot say its expiry; pgvault still refuses to remove it.
                let Ok(m) = open_manifest(store.sealer(), &store.get(&path).await?) else {
                    tracing::warn!(vault = %self.name(), manifest = %path, "a damaged manifest was not put under retention");
                    continue;
                };
                let until = m.rehydration_expiry_time.or(m.expiry_time);
                self.retain_stream_with(tier, &index, &m.stream, until)
                    .await?;
                self.retain_manifest(tier, &path, until).await?;
                covered += 1;
            }
        }
        Ok(covered)
    }

    // ---- soft-deleted instances ----

    /// Moves an instance to the soft-deleted ones at `now`, by job `activity`: protection
    /// stopped, its recovery points left in place until the purge.
    pub async fn soft_delete_instance(
        &self,
        name: &str,
        activity: &str,
        now: DateTime<Utc>,
    ) -> Result<DeletedInstance> {
        let mut instance = self.instance(name).await?;
        instance.properties.set_protection_state(PROTECTION_STOPPED);
        let deleted = DeletedInstance {
            deletion_info: DeletionInfo::new(self.security(), now, activity),
            instance,
        };
        self.store
            .put_json(&paths::deleted_instance(name), &deleted)
            .await?;
        self.delete_instance(name).await?;
        Ok(deleted)
    }

    /// Every soft-deleted instance whose record reads (an instance also present again, left
    /// by an interrupted undelete, is not deleted and is left out).
    pub async fn deleted_instances(&self) -> Result<Vec<DeletedInstance>> {
        let mut out = Vec::new();
        for name in self
            .store
            .list_json_names(&paths::deleted_instances())
            .await?
        {
            match self.deleted_instance(&name).await {
                Ok(d) => out.push(d),
                Err(e) if e.code == ErrorCode::UserErrorDeletedBackupInstanceNotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// One soft-deleted instance.
    pub async fn deleted_instance(&self, name: &str) -> Result<DeletedInstance> {
        let not_found = || {
            Error::new(
                ErrorCode::UserErrorDeletedBackupInstanceNotFound,
                format!(
                    "vault `{}` has no soft-deleted backup instance `{name}` (see `pgvault backup-instance deleted list`)",
                    self.name()
                ),
            )
        };
        let record: DeletedInstance =
            match self.store.get_json(&paths::deleted_instance(name)).await {
                Ok(r) => r,
                Err(e) if e.is_not_found() => return Err(not_found()),
                Err(e) => return Err(e.into()),
            };
        if self.store.exists(&paths::instance(name)).await? {
            return Err(not_found());
        }
        Ok(record)
    }

    /// Whether an instance called `name` is soft-deleted (for refusing a new one of that name).
    pub async fn is_soft_deleted(&self, name: &str) -> Result<bool> {
        Ok(self.store.exists(&paths::deleted_instance(name)).await?)
    }

    /// Brings a soft-deleted instance back, as Azure does: protection stopped (resume it to
    /// back up again), its recovery points as they were.
    pub async fn undelete_instance(&self, name: &str) -> Result<BackupInstanceRequest> {
        let mut deleted = self.deleted_instance(name).await?;
        deleted
            .instance
            .properties
            .set_protection_state(PROTECTION_STOPPED);
        self.save_instance(&deleted.instance).await?;
        self.store
            .delete_if_present(&paths::deleted_instance(name))
            .await?;
        Ok(deleted.instance)
    }

    /// Removes a soft-deleted instance's record once its recovery points are purged.
    pub async fn drop_deleted_instance(&self, name: &str) -> Result<()> {
        Ok(self
            .store
            .delete_if_present(&paths::deleted_instance(name))
            .await?)
    }

    /// A soft-deleted instance as Azure's `deletedBackupInstances` resource: the instance's
    /// properties, `currentProtectionState` SoftDeleted, and `deletionInfo`.
    pub fn deleted_instance_json(&self, d: &DeletedInstance) -> Value {
        let mut shown = self.instance_json(&d.instance);
        let mut properties = shown["properties"].take();
        properties["currentProtectionState"] = json!(SOFT_DELETED);
        properties["protectionStatus"] = serde_json::to_value(ProtectionStatus {
            status: SOFT_DELETED.into(),
        })
        .expect("a status serializes");
        properties["deletionInfo"] = serde_json::to_value(&d.deletion_info).expect("serializes");
        properties["objectType"] = json!("DeletedBackupInstance");
        envelope(
            self.arm().deleted_instance_id(&d.instance.name),
            &d.instance.name,
            resource::DELETED_INSTANCE_TYPE,
            properties,
        )
    }

    // ---- soft-deleted recovery points ----

    /// Moves a recovery point to the soft-deleted ones at `now`, by job `activity`: its
    /// deletion record first, then in each tier its manifest's stored bytes, unchanged, to
    /// `recovery-points/_deleted/`, and only then the original removed.
    pub async fn soft_delete_point(
        &self,
        instance: &str,
        id: &str,
        activity: &str,
        now: DateTime<Utc>,
    ) -> Result<DeletedPoint> {
        let record = DeletedPoint {
            backup_instance_name: instance.to_owned(),
            recovery_point_id: id.to_owned(),
            deletion_info: DeletionInfo::new(self.security(), now, activity),
        };
        self.store
            .put_record(&paths::deleted_point_record(instance, id), &record)
            .await?;
        for tier in [DataStoreType::ArchiveStore, DataStoreType::VaultStore] {
            let Some(store) = self.tier_store(tier) else {
                continue;
            };
            let from = paths::recovery_point(instance, id);
            let bytes = match store.get(&from).await {
                Ok(bytes) => bytes,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            };
            store
                .put(&paths::deleted_point_manifest(instance, id), bytes)
                .await?;
            store.delete_if_present(&from).await?;
        }
        Ok(record)
    }

    /// Every soft-deleted recovery point's record.
    pub async fn deleted_points(&self) -> Result<Vec<DeletedPoint>> {
        let mut out = Vec::new();
        for path in self.store.list(&paths::deleted_point_records()).await? {
            if !path.as_ref().ends_with(".json") {
                continue;
            }
            out.push(self.store.get_record::<DeletedPoint>(&path).await?);
        }
        Ok(out)
    }

    /// Brings a soft-deleted recovery point back: its manifest's bytes to their place in each
    /// tier, then its record removed.
    pub async fn undelete_point(&self, instance: &str, id: &str) -> Result<()> {
        if !self
            .store
            .exists(&paths::deleted_point_record(instance, id))
            .await?
        {
            return Err(Error::new(
                ErrorCode::UserErrorRecoveryPointNotFound,
                format!(
                    "backup instance `{instance}` has no soft-deleted recovery point `{id}` in vault `{}`",
                    self.name()
                ),
            ));
        }
        for tier in [DataStoreType::VaultStore, DataStoreType::ArchiveStore] {
            let Some(store) = self.tier_store(tier) else {
                continue;
            };
            let from = paths::deleted_point_manifest(instance, id);
            let bytes = match store.get(&from).await {
                Ok(bytes) => bytes,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            };
            store
                .put(&paths::recovery_point(instance, id), bytes)
                .await?;
            store.delete_if_present(&from).await?;
        }
        Ok(self
            .store
            .delete_if_present(&paths::deleted_point_record(instance, id))
            .await?)
    }

    /// Refuses purging a soft-deleted recovery point at `at` on an immutable vault while any
    /// tier's copy is within its expiry (a manifest that does not read counts as unexpired).
    pub async fn check_purge_point(
        &self,
        instance: &str,
        id: &str,
        at: DateTime<Utc>,
    ) -> Result<()> {
        if !self.security().immutable() {
            return Ok(());
        }
        for tier in [DataStoreType::VaultStore, DataStoreType::ArchiveStore] {
            let Some(store) = self.tier_store(tier) else {
                continue;
            };
            let bytes = match store
                .get(&paths::deleted_point_manifest(instance, id))
                .await
            {
                Ok(bytes) => bytes,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            };
            let expiry = open_manifest(store.sealer(), &bytes)
                .ok()
                .and_then(|m| m.rehydration_expiry_time.or(m.expiry_time));
            self.check_immutable("the purge", instance, id, tier, expiry, at)?;
        }
        Ok(())
    }

    /// Removes a soft-deleted recovery point for good: its manifests, then its record.
    pub async fn purge_point(&self, instance: &str, id: &str) -> Result<()> {
        for tier in [DataStoreType::ArchiveStore, DataStoreType::VaultStore] {
            if let Some(store) = self.tier_store(tier) {
                store
                    .delete_if_present(&paths::deleted_point_manifest(instance, id))
                    .await?;
            }
        }
        Ok(self
            .store
            .delete_if_present(&paths::deleted_point_record(instance, id))
            .await?)
    }

    /// What is due for purging at `at`: soft-deleted instances and recovery points whose
    /// retention has ended.
    pub async fn purge_plan(&self, at: DateTime<Utc>) -> Result<PurgePlan> {
        Ok(PurgePlan {
            instances: self
                .deleted_instances()
                .await?
                .into_iter()
                .filter(|d| d.deletion_info.purge_due(at))
                .collect(),
            points: self
                .deleted_points()
                .await?
                .into_iter()
                .filter(|d| d.deletion_info.purge_due(at))
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::security::{ImmutabilityState, SoftDeleteState};
    use crate::store::VaultStore;
    use crate::store::testing::{archive, backup};

    async fn vault() -> Vault {
        let store = VaultStore::open("memory://").unwrap();
        Vault::create(store, "V", &Default::default(), Utc::now(), None)
            .await
            .unwrap()
    }

    /// Settings are kept in `vault.json` and shown as Azure's `securitySettings`; a refused
    /// change leaves them as they were.
    #[tokio::test]
    async fn settings_are_recorded_and_shown() {
        let mut v = vault().await;
        assert!(!v.security().soft_delete_on(), "a new vault's default");
        let weakened = v
            .set_security_settings(&SecurityChange {
                soft_delete_state: Some(SoftDeleteState::AlwaysOn),
                retention_duration_in_days: Some(30),
                immutability_state: Some(ImmutabilityState::Locked),
            })
            .await
            .unwrap();
        assert!(weakened.is_empty());
        let reopened = Vault::open(v.store.clone()).await.unwrap();
        assert_eq!(reopened.security(), v.security());
        let json = reopened.to_azure_json();
        assert_eq!(
            json["properties"]["securitySettings"],
            json!({"softDeleteSettings": {"state": "AlwaysOn", "retentionDurationInDays": 30},
                   "immutabilitySettings": {"state": "Locked"}})
        );
        let err = v
            .set_security_settings(&SecurityChange {
                immutability_state: Some(ImmutabilityState::Unlocked),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(
            err.code,
            ErrorCode::UserErrorUnsupportedVaultImmutabilityStateChange
        );
        let reopened = Vault::open(v.store.clone()).await.unwrap();
        assert_eq!(
            reopened.security().immutability_settings.state,
            ImmutabilityState::Locked
        );
    }

    /// Turning immutability on puts what the vault holds under Blob Storage retention (the
    /// double of the documented headers stands in for Blob Storage, which the emulator cannot):
    /// each pack until the latest expiry of the points needing it, each manifest until its own.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn turning_immutability_on_retains_existing_points_until_their_expiry() {
        use crate::store::azure::{AzureAuth, AzureLocation, EMULATOR_ACCOUNT_KEY};
        use crate::store::blob_rest::BlobRest;
        use crate::store::immutability::packs_of;
        use crate::store::reader::load_index;
        use crate::store::testing::immutability_double;

        let (port, _seen, blobs) = immutability_double(Utc::now()).await;
        let location = AzureLocation::parse("az://devstoreaccount1/vault")
            .unwrap()
            .unwrap();
        let rest = BlobRest::new(
            location,
            AzureAuth::Emulator {
                endpoint: format!("http://127.0.0.1:{port}"),
                key: EMULATOR_ACCOUNT_KEY.into(),
            },
        );
        let store = VaultStore::open("memory://").unwrap().with_blob_rest(rest);
        let mut v = Vault::create(store, "V", &Default::default(), Utc::now(), None)
            .await
            .unwrap();
        let key = v.config.chunk_key().unwrap();
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let (e1, e2) = (t("2031-01-01T00:00:00Z"), t("2032-01-01T00:00:00Z"));
        let mut m1 = backup(&v.store, key, "db", "p1", archive(4_000, 0), None).await;
        let mut m2 = backup(&v.store, key, "db", "p2", archive(4_000, 1), Some(&m1)).await;
        m1.expiry_time = Some(e1);
        m2.expiry_time = Some(e2);
        for m in [&m1, &m2] {
            v.store
                .put(
                    &paths::recovery_point("db", &m.recovery_point_id),
                    m.to_bytes().into(),
                )
                .await
                .unwrap();
        }
        assert_eq!(v.retain_existing().await.unwrap(), 0, "not immutable yet");
        assert!(blobs.lock().unwrap().values().all(|b| b.until.is_none()));

        v.set_security_settings(&SecurityChange {
            immutability_state: Some(ImmutabilityState::Unlocked),
            ..Default::default()
        })
        .await
        .unwrap();
        assert_eq!(v.retain_existing().await.unwrap(), 2);
        let index = load_index(&v.store).await.unwrap();
        let p1 = packs_of(&v.store, &index, &key, &m1.stream).await.unwrap();
        let p2 = packs_of(&v.store, &index, &key, &m2.stream).await.unwrap();
        assert!(
            p1.intersection(&p2).next().is_some(),
            "the second point dedups against the first's packs"
        );
        let held = blobs.lock().unwrap().clone();
        let until = |blob: String| held[&format!("/devstoreaccount1/vault/{blob}")].until;
        for pack in &p2 {
            assert_eq!(
                until(paths::pack(pack).to_string()),
                Some(e2),
                "shared or new"
            );
        }
        for pack in p1.difference(&p2) {
            assert_eq!(until(paths::pack(pack).to_string()), Some(e1));
        }
        assert_eq!(
            until(paths::recovery_point("db", "p1").to_string()),
            Some(e1)
        );
        assert_eq!(
            until(paths::recovery_point("db", "p2").to_string()),
            Some(e2)
        );
        assert!(
            held.values()
                .filter(|b| b.until.is_some())
                .all(|b| b.mode.as_deref() == Some("Unlocked"))
        );
    }

    /// A soft-deleted point's manifest bytes move unchanged and come back unchanged; while it
    /// is soft-deleted the point is not listed, and a purge removes it for good.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_soft_deleted_point_moves_unchanged_and_comes_back() {
        let v = vault().await;
        let key = v.config.chunk_key().unwrap();
        backup(&v.store, key, "db", "p1", archive(2_000, 0), None).await;
        let stored = v
            .store
            .get(&paths::recovery_point("db", "p1"))
            .await
            .unwrap();
        let now = Utc::now();
        let record = v.soft_delete_point("db", "p1", "job-1", now).await.unwrap();
        assert_eq!(record.deletion_info.delete_activity_id, "job-1");
        assert!(v.recovery_points("db").await.unwrap().is_empty());
        let moved = v
            .store
            .get(&paths::deleted_point_manifest("db", "p1"))
            .await
            .unwrap();
        assert_eq!(moved, stored, "the stored bytes move unchanged");
        assert_eq!(v.deleted_points().await.unwrap(), vec![record.clone()]);
        assert!(v.purge_plan(now).await.unwrap().is_empty());

        v.undelete_point("db", "p1").await.unwrap();
        assert_eq!(
            v.store
                .get(&paths::recovery_point("db", "p1"))
                .await
                .unwrap(),
            stored
        );
        assert!(v.deleted_points().await.unwrap().is_empty());

        v.soft_delete_point("db", "p1", "job-2", now).await.unwrap();
        let due = v
            .purge_plan(record.deletion_info.scheduled_purge_time)
            .await
            .unwrap();
        assert_eq!(due.points.len(), 1);
        v.purge_point("db", "p1").await.unwrap();
        assert!(
            !v.store
                .exists(&paths::deleted_point_manifest("db", "p1"))
                .await
                .unwrap()
        );
        assert!(v.deleted_points().await.unwrap().is_empty());
    }
}
