//! Trusting a vault: `recovery-point verify`, `backup-vault check` and `backup-vault
//! reindex` as service operations.
//!
//! None of them is a job: they change no recovery point, and a check that wrote to the
//! history it compares the vault with would be checking itself. Verify and check read
//! chunks, so they hold shared locks on every tier (garbage collection must not delete what
//! they are about to read, or they would report damage that is only a collection); reindex
//! replaces the index files and holds the exclusive ones.
//!
//! The check also compares the vault with this host's job history, which the core cannot
//! see: a completed backup whose recovery point is in no tier and that no deletion or archive
//! move explains, and a recovery point no job mentions. Both are findings, never damage: the
//! history is history, the vault is the source of truth (another host may write to it, and
//! old jobs are pruned).

use std::collections::HashSet;

use serde::Serialize;

use pgvault_core::engine::Result;
use pgvault_core::engine::vault::Vault;
use pgvault_core::engine::verify::{
    PointSelection, PointVerification, VerifyStatus, verify_recovery_points,
};
use pgvault_core::model::job::{Job, JobFilter, JobStatus, Operation};
use pgvault_core::model::policy::DataStoreType;
use pgvault_core::store::check::{
    Finding, FindingKind, ManifestRef, ReadData, Severity, StoreCheck, check_store,
};
use pgvault_core::store::lock::LockKind;
use pgvault_core::store::reindex::{ReindexReport, reindex};
use pgvault_core::store::repair::{RepairError, RepairReport, repair};
use pgvault_core::store::{StoreError, VaultStore, paths};

use crate::alerts::{AlertEvent, AlertKind};
use crate::job_run::{guard_destructive, lock_tiers, release_all, release_guard};
use crate::service::Pgvault;

/// One tier's check.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TierCheck {
    pub data_store_type: DataStoreType,
    pub status: VerifyStatus,
    #[serde(flatten)]
    pub check: StoreCheck,
}

/// `backup-vault check`: every tier, and the job history compared with the vault.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VaultCheck {
    pub vault_name: String,
    /// `Damaged` when any tier has an error-severity finding.
    pub status: VerifyStatus,
    /// `None`, `All`, or the percentage of packs sampled.
    pub read_data: String,
    pub data_stores: Vec<TierCheck>,
    /// Where this host's job history and the vault disagree (warnings only).
    pub job_history: Vec<Finding>,
    /// Policies and backup instances that do not read back (errors: the vault is damaged).
    pub configuration: Vec<Finding>,
}

/// `backup-vault repair` of one tier.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TierRepair {
    pub data_store_type: DataStoreType,
    #[serde(flatten)]
    pub report: RepairReport,
}

/// `backup-vault reindex` of one tier.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TierReindex {
    pub data_store_type: DataStoreType,
    #[serde(flatten)]
    pub report: ReindexReport,
}

impl Pgvault {
    /// `recovery-point verify`: reads the selected recovery points back in every tier that
    /// holds them (see `pgvault_core::engine::verify`).
    pub async fn verify_recovery_points(
        &self,
        vault_name: &str,
        selection: &PointSelection,
    ) -> Result<Vec<PointVerification>> {
        let vault = self.vault(vault_name).await?;
        let locks = lock_tiers(&vault, LockKind::Shared, "recovery point verification").await?;
        let result = verify_recovery_points(&vault, selection).await;
        release_all(locks).await;
        if let Ok(points) = &result {
            let damaged: Vec<String> = points
                .iter()
                .filter(|p| !p.is_ok())
                .map(|p| format!("{} of `{}`", p.name, p.backup_instance_name))
                .collect();
            if !damaged.is_empty() {
                self.damage_alert(
                    vault.name(),
                    format!(
                        "`recovery-point verify` found {} damaged recovery point(s) in vault `{}`: {}",
                        damaged.len(),
                        vault.name(),
                        damaged.join(", ")
                    ),
                );
            }
        }
        result
    }

    /// Raises (or adds to) the vault's damage alert; a failure to record it is logged.
    fn damage_alert(&self, vault: &str, description: String) {
        let event =
            AlertEvent::new(AlertKind::VaultDamage, description, self.now()).on(vault, None);
        if let Err(e) = self.raise_alert(&event) {
            tracing::error!(vault = %vault, error = %e, "could not record the damage alert");
        }
    }

    /// `backup-vault check`: checks every tier (see `pgvault_core::store::check`), then
    /// compares the recovery points found with this host's job history.
    pub async fn check_vault(&self, vault_name: &str, read: ReadData) -> Result<VaultCheck> {
        let vault = self.vault(vault_name).await?;
        let key = vault.chunk_key();
        let locks = lock_tiers(&vault, LockKind::Shared, "vault check").await?;
        let checked = each_tier::<_, StoreError>(&vault, async |tier, store| {
            let check = check_store(store, &key, read).await?;
            Ok(TierCheck {
                data_store_type: tier,
                status: if check.is_damaged() {
                    VerifyStatus::Damaged
                } else {
                    VerifyStatus::Ok
                },
                check,
            })
        })
        .await;
        release_all(locks).await;
        let data_stores = checked?;
        let jobs = self.jobs(&JobFilter::default().vault(vault.name()))?;
        let manifests: Vec<&ManifestRef> = data_stores
            .iter()
            .flat_map(|t| &t.check.manifests)
            .collect();
        let job_history = compare_history(&jobs, &manifests);
        let configuration = check_configuration(&vault).await?;
        let damaged = data_stores
            .iter()
            .any(|t| t.status == VerifyStatus::Damaged)
            || configuration.iter().any(|f| f.severity == Severity::Error);
        // A damaged vault raises its alert; a whole check that finds it sound resolves it.
        if damaged {
            self.damage_alert(
                vault.name(),
                format!(
                    "`backup-vault check` found vault `{}` damaged; run `pgvault backup-vault check` for the findings, then `backup-vault repair`",
                    vault.name()
                ),
            );
        } else if let Err(e) = self.resolve_alerts(
            &[AlertKind::VaultDamage],
            Some(vault.name()),
            None,
            self.now(),
        ) {
            tracing::error!(vault = %vault.name(), error = %e, "could not resolve the damage alert");
        }
        Ok(VaultCheck {
            vault_name: vault.name().to_owned(),
            status: if damaged {
                VerifyStatus::Damaged
            } else {
                VerifyStatus::Ok
            },
            read_data: match read {
                ReadData::Structure => "None".into(),
                ReadData::All => "All".into(),
                ReadData::Subset { percent, .. } => percent.to_string(),
            },
            data_stores,
            job_history,
            configuration,
        })
    }

    /// `backup-vault repair` (and `reindex --repair`): every tier's unreadable packs dropped,
    /// what still verifies salvaged into new packs, the index rebuilt (see
    /// `pgvault_core::store::repair`). It deletes packs, so it holds the destructive-operation
    /// guard for its whole run, and each tier's exclusive lock while it repairs it.
    pub async fn repair_vault(&self, vault_name: &str, read_data: bool) -> Result<Vec<TierRepair>> {
        let vault = self.vault(vault_name).await?;
        let key = vault.chunk_key();
        let size = vault.config.pack_target_size as usize;
        let guard = guard_destructive(&vault, "repair").await?;
        let result = async {
            let locks = lock_tiers(&vault, LockKind::Exclusive, "repair").await?;
            let format = &pgvault_core::postgres::archive::CustomArchive;
            let repaired = each_tier::<_, RepairError>(&vault, async |tier, store| {
                let report = repair(store, &key, format, size, read_data, Some(&guard), |_| true).await?;
                tracing::info!(vault = %vault.name(), %tier, bad_packs = report.bad_packs.len(), missing_packs = report.missing_packs.len(), salvaged = report.chunks_salvaged, lost = report.chunks_lost, damaged_points = report.damaged_recovery_points.len(), "vault repaired");
                Ok(TierRepair {
                    data_store_type: tier,
                    report,
                })
            })
            .await;
            release_all(locks).await;
            repaired.map_err(|e| match e {
                RepairError::Store(e) => e.into(),
                RepairError::Guard(e) => e.into(),
            })
        }
        .await;
        release_guard(guard).await;
        result
    }

    /// `backup-vault reindex`: rebuilds every tier's index from its packs' trailers (see
    /// `pgvault_core::store::reindex`), under the exclusive locks.
    pub async fn reindex_vault(&self, vault_name: &str) -> Result<Vec<TierReindex>> {
        let vault = self.vault(vault_name).await?;
        let locks = lock_tiers(&vault, LockKind::Exclusive, "index rebuild").await?;
        let rebuilt = each_tier::<_, StoreError>(&vault, async |tier, store| {
            let report = reindex(store, |_| true).await?;
            tracing::info!(vault = %vault.name(), %tier, packs = report.packs_indexed, chunks = report.chunks_indexed, dead_deltas = report.dead_delta_entries_left_out, "index rebuilt");
            Ok(TierReindex {
                data_store_type: tier,
                report,
            })
        })
        .await;
        release_all(locks).await;
        Ok(rebuilt?)
    }
}

/// Every policy and backup instance of the vault read back as the scheduler and a backup read
/// them: one that does not parse (garbage, truncated, too large) or a policy that is no longer
/// valid stops its backups, so each is an error. Vault-tier objects only: the archive tier
/// holds no configuration.
async fn check_configuration(vault: &Vault) -> Result<Vec<Finding>> {
    let mut findings = Vec::new();
    for name in vault.store.list_json_names(&paths::policies()).await? {
        let problem = match vault.policy(&name).await {
            Ok(policy) => policy.validate().err().map(|errors| {
                let list: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                format!("is not a valid policy: {}", list.join("; "))
            }),
            Err(e) => Some(format!("cannot be read: {}", e.message)),
        };
        if let Some(problem) = problem {
            findings.push(Finding::new(
                Severity::Error,
                FindingKind::PolicyUnreadable,
                format!(
                    "policy `{name}` ({}) {problem}; restore the file from a copy, or create the policy again under a new name and move its instances to it",
                    paths::policy(&name)
                ),
            ));
        }
    }
    for name in vault.store.list_json_names(&paths::instances()).await? {
        if let Err(e) = vault.instance(&name).await {
            findings.push(Finding::new(
                Severity::Error,
                FindingKind::InstanceUnreadable,
                format!(
                    "backup instance `{name}` ({}) cannot be read: {}; its recovery points are kept, but it is not backed up until the file is restored from a copy",
                    paths::instance(&name),
                    e.message
                ),
            ));
        }
    }
    Ok(findings)
}

/// Where the job history and the vault's manifests (of every tier) disagree.
fn compare_history(jobs: &[Job], manifests: &[&ManifestRef]) -> Vec<Finding> {
    let key = |instance: &str, id: &str| (instance.to_owned(), id.to_owned());
    let in_vault: HashSet<(String, String)> = manifests
        .iter()
        .map(|m| key(&m.instance, &m.recovery_point_id))
        .collect();
    let point_of = |j: &Job| {
        j.backup_instance_name
            .as_deref()
            .zip(j.recovery_point_id.as_deref())
            .map(|(i, rp)| key(i, rp))
    };
    let removed: HashSet<(String, String)> = jobs
        .iter()
        .filter(|j| {
            matches!(
                j.operation,
                Operation::DeleteRecoveryPoint | Operation::MoveToArchive
            ) && j.status() == JobStatus::Completed
        })
        .filter_map(point_of)
        .collect();
    let mut findings = Vec::new();
    let mut reported = HashSet::new();
    for job in jobs.iter().filter(|j| {
        matches!(
            j.operation,
            Operation::OnDemandBackup | Operation::ScheduledBackup
        ) && j.status() == JobStatus::Completed
    }) {
        let Some(point) = point_of(job) else {
            continue;
        };
        if in_vault.contains(&point) || removed.contains(&point) || !reported.insert(point.clone())
        {
            continue;
        }
        let mut f = Finding::new(
            Severity::Warning,
            FindingKind::BackupWithoutRecoveryPoint,
            format!(
                "backup job {} ({}, started {}) completed recovery point {}/{}, which is in no tier of the vault, and no DeleteRecoveryPoint or MoveToArchive job removed it",
                job.id,
                job.operation,
                job.state.start().to_rfc3339(),
                point.0,
                point.1
            ),
        );
        f.recovery_points.push(format!("{}/{}", point.0, point.1));
        findings.push(f);
    }
    let job_ids: HashSet<String> = jobs.iter().map(|j| j.id.to_string()).collect();
    let mentioned: HashSet<(String, String)> = jobs.iter().filter_map(point_of).collect();
    let mut seen = HashSet::new();
    for m in manifests {
        let point = key(&m.instance, &m.recovery_point_id);
        let made_here = m.job_id.as_ref().is_some_and(|id| job_ids.contains(id));
        if made_here || mentioned.contains(&point) || !seen.insert(point.clone()) {
            continue;
        }
        let mut f = Finding::new(
            Severity::Warning,
            FindingKind::RecoveryPointWithoutJob,
            format!(
                "recovery point {}/{} is in the vault but no job in this host's history made or mentions it (a backup by another host, or its job was pruned)",
                point.0, point.1
            ),
        );
        f.recovery_points.push(format!("{}/{}", point.0, point.1));
        findings.push(f);
    }
    findings
}

/// Runs `op` on each tier of `vault` in order (the vault tier, then the archive tier if it has
/// one) and stops at the first error: what every tier gave, or that error. The caller holds
/// the tiers' locks around it and releases them whatever this returns.
async fn each_tier<T, E>(
    vault: &Vault,
    mut op: impl AsyncFnMut(DataStoreType, &VaultStore) -> std::result::Result<T, E>,
) -> std::result::Result<Vec<T>, E> {
    let mut out = Vec::new();
    for tier in [DataStoreType::VaultStore, DataStoreType::ArchiveStore] {
        if let Some(store) = vault.tier_store(tier) {
            out.push(op(tier, store).await?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::history::current_owner;
    use pgvault_core::engine::home::Home;
    use pgvault_core::model::job::{JobOutcome, NewJob};
    use pgvault_core::store::lock::VaultLock;
    use pgvault_core::store::manifest::{
        BackupStats, ChunkerParams, DatasourceInfo, MANIFEST_FORMAT, Manifest, PostgresInfo,
        StreamInfo,
    };
    use pgvault_core::store::paths;

    /// A manifest of an empty stream: enough for the structure check.
    fn manifest(id: &str, job_id: &str) -> Manifest {
        Manifest {
            format_version: MANIFEST_FORMAT,
            recovery_point_id: id.into(),
            backup_instance_name: "db1".into(),
            recovery_point_time: Utc::now(),
            policy_name: "P".into(),
            policy_rule_name: "BackupWeekly".into(),
            retention_tag_name: "Default".into(),
            expiry_time: None,
            rehydration_expiry_time: None,
            job_id: job_id.into(),
            datasource: DatasourceInfo {
                resource_id: "postgres://h/db1".into(),
                server: "h".into(),
                port: 5432,
                database: "db1".into(),
            },
            postgres: PostgresInfo {
                server_version: "17".into(),
                pg_dump_version: "17".into(),
                database_size: 0,
                username_used: "u".into(),
            },
            chunker: ChunkerParams {
                algorithm: "fastcdc-2020".into(),
                min_size: 1,
                avg_size: 2,
                max_size: 4,
            },
            stream: StreamInfo {
                length: 0,
                chunks_blake3: blake3::Hasher::new().finalize().to_hex().to_string(),
                chunk_count: 0,
                chunk_lists: Vec::new(),
            },
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

    /// Backups whose points are there, deleted by a job, or gone without one; and a point
    /// no job made. Only the last two are findings, and neither makes the vault damaged.
    #[tokio::test]
    async fn the_job_history_is_compared_with_the_vault() {
        let dir = tempfile::tempdir().unwrap();
        let svc = Pgvault::open(Home::at(dir.path().join("home"))).unwrap();
        let url = format!("file://{}", dir.path().join("vault").display());
        svc.create_vault("V", &Default::default(), Some(&url))
            .await
            .unwrap();
        let vault = svc.vault("V").await.unwrap();
        let job = |operation: Operation, rp: &str, outcome: JobOutcome| {
            let mut new = NewJob::new(operation, "V", Utc::now(), current_owner());
            new.backup_instance_name = Some("db1".into());
            new.recovery_point_id = Some(rp.into());
            let started = svc.history().start(&new).unwrap();
            svc.history()
                .finish(started.id, &outcome, Utc::now(), 0, 0)
                .unwrap()
        };
        let made = |rp: &str| JobOutcome::Completed {
            recovery_point_id: Some(rp.into()),
        };
        let kept = job(Operation::OnDemandBackup, "kept", made("kept"));
        job(Operation::ScheduledBackup, "deleted", made("deleted"));
        job(
            Operation::DeleteRecoveryPoint,
            "deleted",
            JobOutcome::Completed {
                recovery_point_id: None,
            },
        );
        let lost = job(Operation::OnDemandBackup, "lost", made("lost"));
        // A failed deletion explains nothing.
        job(
            Operation::DeleteRecoveryPoint,
            "lost",
            JobOutcome::Failed(pgvault_core::model::job::JobError::new("X", "y")),
        );
        for (id, job_id) in [
            ("kept", kept.id.to_string()),
            ("foreign", "elsewhere".into()),
        ] {
            vault
                .store
                .put(
                    &paths::recovery_point("db1", id),
                    manifest(id, &job_id).to_bytes().into(),
                )
                .await
                .unwrap();
        }

        let check = svc.check_vault("V", ReadData::All).await.unwrap();
        assert_eq!(check.status, VerifyStatus::Ok, "{check:#?}");
        assert_eq!(check.data_stores[0].check.recovery_points, 2);
        let found: Vec<(FindingKind, &str)> = check
            .job_history
            .iter()
            .map(|f| (f.kind, f.recovery_points[0].as_str()))
            .collect();
        assert_eq!(
            found,
            [
                (FindingKind::BackupWithoutRecoveryPoint, "db1/lost"),
                (FindingKind::RecoveryPointWithoutJob, "db1/foreign"),
            ]
        );
        assert!(check.job_history[0].message.contains(&lost.id.to_string()));
        assert!(
            check
                .job_history
                .iter()
                .all(|f| f.severity == Severity::Warning)
        );

        // Reindex takes the exclusive lock: refused while a shared one is held.
        let held = VaultLock::acquire(&vault.store, LockKind::Shared, "backup of db1")
            .await
            .unwrap();
        let err = svc.reindex_vault("V").await.unwrap_err();
        assert_eq!(err.code.as_str(), "UserErrorVaultLocked");
        held.release().await.unwrap();
        let tiers = svc.reindex_vault("V").await.unwrap();
        assert_eq!(tiers.len(), 1);
        assert!(tiers[0].report.finished);
    }
}
