//! `recovery-point verify`: which recovery points would restore, and what is wrong with the
//! others.
//!
//! Every copy of a selected recovery point (one per tier holding its manifest) is checked by
//! [`crate::store::verify::verify_stream`] against that tier's index. Manifests are read here
//! rather than through [`Vault::recovery_points`], which stops at the first unreadable one:
//! a corrupt manifest is a result to report, not a reason to stop.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use object_store::path::Path;
use serde::Serialize;

use super::{Error, Result, Vault};
use crate::model::code::ErrorCode;
use crate::model::policy::DataStoreType;
use crate::postgres::archive::CustomArchive;
use crate::store::damage::{DamageNotes, load_readable_index};
use crate::store::manifest::Manifest;
use crate::store::verify::{StreamVerification, verify_stream};
use crate::store::{VaultStore, paths};

/// Which recovery points to verify.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PointSelection {
    One {
        instance: String,
        recovery_point_id: String,
    },
    /// Every recovery point of one backup instance.
    Instance(String),
    /// Every recovery point in the vault.
    All,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum VerifyStatus {
    #[serde(rename = "OK")]
    Ok,
    Damaged,
}

impl VerifyStatus {
    fn of(ok: bool) -> Self {
        if ok {
            VerifyStatus::Ok
        } else {
            VerifyStatus::Damaged
        }
    }
}

impl std::fmt::Display for VerifyStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            VerifyStatus::Ok => "OK",
            VerifyStatus::Damaged => "Damaged",
        })
    }
}

/// One tier's copy of a recovery point, verified.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TierVerification {
    pub data_store_type: DataStoreType,
    pub status: VerifyStatus,
    #[serde(flatten)]
    pub stream: StreamVerification,
}

/// One recovery point, verified in every tier that holds it. Shaped like Azure's results:
/// the recovery point's resource id and name, then what was found.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PointVerification {
    pub id: String,
    pub name: String,
    pub backup_instance_name: String,
    /// `None` when no tier's manifest could be read.
    pub recovery_point_time: Option<DateTime<Utc>>,
    pub status: VerifyStatus,
    pub data_stores: Vec<TierVerification>,
}

impl PointVerification {
    pub fn is_ok(&self) -> bool {
        self.status == VerifyStatus::Ok
    }
}

/// `recovery-points/<instance>/<id>.json` as (instance, id).
fn point_of(path: &Path) -> Option<(String, String)> {
    let mut parts = path.parts();
    if parts.next()?.as_ref() != "recovery-points" {
        return None;
    }
    let instance = parts.next()?.as_ref().to_owned();
    let id = parts.next()?.as_ref().strip_suffix(".json")?.to_owned();
    parts.next().is_none().then_some((instance, id))
}

/// The manifests of the selected points in one tier, read and checked, each as
/// (instance, id, manifest or why it cannot be read).
async fn manifests(
    store: &VaultStore,
    selection: &PointSelection,
) -> Result<Vec<(String, String, std::result::Result<Manifest, String>)>> {
    let paths = match selection {
        PointSelection::One {
            instance,
            recovery_point_id,
        } => {
            let path = paths::recovery_point(instance, recovery_point_id);
            if store.exists(&path).await? {
                vec![path]
            } else {
                Vec::new()
            }
        }
        PointSelection::Instance(instance) => store.list(&paths::recovery_points(instance)).await?,
        PointSelection::All => store.list(&paths::recovery_points_root()).await?,
    };
    let mut out = Vec::new();
    for path in paths {
        let Some((instance, id)) = point_of(&path) else {
            continue;
        };
        let manifest = match store.get(&path).await {
            Ok(bytes) => crate::store::manifest::open_manifest(store.sealer(), &bytes)
                .map_err(|e| format!("the manifest `{path}` cannot be read: {e}"))
                .and_then(|m| {
                    if m.backup_instance_name == instance && m.recovery_point_id == id {
                        Ok(m)
                    } else {
                        Err(format!(
                            "the manifest `{path}` describes recovery point `{}` of `{}`",
                            m.recovery_point_id, m.backup_instance_name
                        ))
                    }
                }),
            // Deleted since the listing (a user's deletion runs under a shared lock too).
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e.into()),
        };
        out.push((instance, id, manifest));
    }
    Ok(out)
}

/// Verifies the selected recovery points in every tier holding them, sorted by instance,
/// then newest first. The caller holds shared locks on the tiers, so garbage collection
/// cannot make chunks disappear under the verification.
pub async fn verify_recovery_points(
    vault: &Vault,
    selection: &PointSelection,
) -> Result<Vec<PointVerification>> {
    let key = vault.chunk_key();
    let mut points: BTreeMap<(String, String), PointVerification> = BTreeMap::new();
    for tier in [DataStoreType::VaultStore, DataStoreType::ArchiveStore] {
        let Some(store) = vault.tier_store(tier) else {
            continue;
        };
        let found = manifests(store, selection).await?;
        if found.is_empty() {
            continue;
        }
        // Chunks are read where a sound copy is; one that only a missing, truncated or
        // recorded-bad pack holds is looked for there, so its finding names that pack.
        let (index, excluded) = load_readable_index(store).await?;
        let index_problems = excluded.unreadable_index_files;
        // Packs found bad are recorded in the vault, so backups stop deduplicating against
        // them (see `store::damage`).
        let mut notes = DamageNotes::default();
        for (instance, id, manifest) in found {
            let (time, stream) = match &manifest {
                Ok(m) => {
                    let mut v = verify_stream(
                        store,
                        &index,
                        &key,
                        &m.stream,
                        &CustomArchive,
                        m.archive.as_ref(),
                    )
                    .await;
                    for f in &v.corrupt_chunks {
                        if let Some(pack) = f.pack_id {
                            notes.note(
                                pack,
                                Some(f.chunk_id),
                                format!("{:?}: {}", f.reason, f.detail),
                            );
                        }
                    }
                    if v.missing_chunks.iter().any(|f| f.pack_id.is_none()) {
                        v.problems.extend(index_problems.iter().cloned());
                    }
                    (Some(m.recovery_point_time), v)
                }
                Err(problem) => (
                    None,
                    StreamVerification::unreadable_manifest(problem.clone()),
                ),
            };
            let point = points
                .entry((instance.clone(), id.clone()))
                .or_insert_with(|| PointVerification {
                    id: vault.arm().recovery_point_id(&instance, &id),
                    name: id.clone(),
                    backup_instance_name: instance.clone(),
                    recovery_point_time: None,
                    status: VerifyStatus::Ok,
                    data_stores: Vec::new(),
                });
            point.recovery_point_time = point.recovery_point_time.or(time);
            point.data_stores.push(TierVerification {
                data_store_type: tier,
                status: VerifyStatus::of(stream.is_ok()),
                stream,
            });
        }
        if let Err(e) = notes.record(store, "recovery-point verify").await {
            tracing::warn!(vault = %vault.name(), %tier, error = %e, "the damage found could not be recorded in the vault; backups may deduplicate against it until it is");
        }
    }
    if points.is_empty()
        && let PointSelection::One {
            instance,
            recovery_point_id,
        } = selection
    {
        return Err(Error::new(
            ErrorCode::UserErrorRecoveryPointNotFound,
            format!(
                "backup instance `{instance}` has no recovery point `{recovery_point_id}` in vault `{}` (see `pgvault recovery-point list`)",
                vault.name()
            ),
        ));
    }
    if points.is_empty()
        && let PointSelection::Instance(instance) = selection
    {
        // An instance without recovery points verifies to nothing; an unknown one is an error.
        vault.instance(instance).await?;
    }
    let mut out: Vec<PointVerification> = points.into_values().collect();
    for p in &mut out {
        p.status = VerifyStatus::of(p.data_stores.iter().all(|t| t.stream.is_ok()));
    }
    out.sort_by(|a, b| {
        a.backup_instance_name
            .cmp(&b.backup_instance_name)
            .then(b.recovery_point_time.cmp(&a.recovery_point_time))
            .then(a.name.cmp(&b.name))
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::{archive, backup, packs};

    /// A point in both tiers whose archive copy lost its packs, and a point whose manifest is
    /// corrupt: each tier's copy is judged on its own, and a bad manifest is a result.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_tier_copy_is_verified_and_a_bad_manifest_is_a_result() {
        let store = VaultStore::open("memory://").unwrap();
        let mut vault = Vault::create(store, "V", &Default::default(), Utc::now(), None)
            .await
            .unwrap();
        vault.set_archive_storage("memory://").await.unwrap();
        let key = vault.chunk_key();
        let archive_store = vault.archive.clone().unwrap();
        for store in [&vault.store, &archive_store] {
            backup(store, key, "db", "a", archive(3_000, 0), None).await;
        }
        backup(&vault.store, key, "db", "b", archive(3_000, 1), None).await;

        let all = verify_recovery_points(&vault, &PointSelection::All)
            .await
            .unwrap();
        assert!(all.iter().all(|p| p.is_ok()), "{all:#?}");
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].data_stores.len() + all[1].data_stores.len(), 3);

        for pack in packs(&archive_store).await {
            archive_store.delete(&paths::pack(&pack)).await.unwrap();
        }
        let path = paths::recovery_point("db", "b");
        let text = String::from_utf8(vault.store.get(&path).await.unwrap().to_vec()).unwrap();
        let tampered = text.replacen("BackupWeekly", "BackupDaily!", 1);
        vault.store.put(&path, tampered.into()).await.unwrap();

        let all = verify_recovery_points(&vault, &PointSelection::Instance("db".into()))
            .await
            .unwrap();
        let json = serde_json::to_value(&all).unwrap();
        let (a, b) = (&json[0], &json[1]);
        assert_eq!(a["name"], "a", "{json:#}");
        assert_eq!(a["id"], vault.arm().recovery_point_id("db", "a"));
        assert!(
            a["id"]
                .as_str()
                .unwrap()
                .starts_with("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/")
        );
        assert_eq!(a["status"], "Damaged");
        assert_eq!(a["dataStores"][0]["dataStoreType"], "VaultStore");
        assert_eq!(a["dataStores"][0]["status"], "OK");
        assert_eq!(a["dataStores"][1]["dataStoreType"], "ArchiveStore");
        assert_eq!(a["dataStores"][1]["status"], "Damaged");
        let lost = a["dataStores"][1]["missingChunks"].as_array().unwrap();
        assert_eq!(lost[0]["role"], "ChunkList", "{a:#}");
        assert_eq!(lost[0]["reason"], "PackMissing");
        // Missing packs need no record (a backup's listing finds them); nothing was corrupt.
        assert!(
            crate::store::damage::load_damage(&archive_store)
                .await
                .unwrap()
                .records
                .is_empty()
        );
        assert_eq!(b["name"], "b");
        assert_eq!(b["status"], "Damaged");
        assert_eq!(b["recoveryPointTime"], serde_json::Value::Null);
        let problem = b["dataStores"][0]["problems"][0].as_str().unwrap();
        assert!(problem.contains("checksum"), "{problem}");

        let one = PointSelection::One {
            instance: "db".into(),
            recovery_point_id: "a".into(),
        };
        assert_eq!(verify_recovery_points(&vault, &one).await.unwrap().len(), 1);
        let missing = PointSelection::One {
            instance: "db".into(),
            recovery_point_id: "zzz".into(),
        };
        let err = verify_recovery_points(&vault, &missing).await.unwrap_err();
        assert_eq!(err.code.as_str(), "UserErrorRecoveryPointNotFound");
        let err = verify_recovery_points(&vault, &PointSelection::Instance("nope".into()))
            .await
            .unwrap_err();
        assert_eq!(err.code.as_str(), "UserErrorBackupInstanceNotFound");
    }
}
