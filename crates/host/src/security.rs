//! Soft delete and immutability as jobs: a vault's security settings changed, a backup
//! instance or recovery point soft-deleted (`DeleteBackupInstance`, `DeleteRecoveryPoint`
//! jobs whose ids are Azure's `deleteActivityID`), undeleted (`UndeleteBackupInstance`), and
//! purged by the retention sweep once the retention days have passed (one
//! `DeleteRecoveryPoint` job per point, reason "purged").
//!
//! **For alerts:** a weakening of soft delete or immutability passes through
//! [`security_weakened`]; every destructive operation on recovery points is a job of operation
//! `DeleteRecoveryPoint` or `DeleteBackupInstance` (user deletions, expiries, purges), recorded
//! through `JobRun` like every job.

use chrono::{DateTime, Utc};
use serde_json::Value;

use pgvault_core::engine::security::{DeletedInstance, DeletedPoint, PurgePlan};
use pgvault_core::engine::{Error, Result, Vault};
use pgvault_core::model::job::{Job, NewJob, Operation};
use pgvault_core::model::security::SecurityChange;
use pgvault_core::store::lease::DestructiveGuard;
use pgvault_core::store::lock::LockKind;

use crate::history::current_owner;
use crate::job_run::{Held, JobRun, guard_destructive, lock_tiers, release_guard};
use crate::service::Pgvault;

/// Called with what a settings change weakened (soft delete turned Off or its retention
/// shortened, immutability Disabled), each a sentence naming the vault: logs a warning and
/// raises a Security Setting Weakened alert for each (severity 0, never grouped). An alert
/// that cannot be recorded is logged; the change itself stands.
pub fn security_weakened(svc: &Pgvault, vault: &str, weakened: &[String]) {
    for w in weakened {
        tracing::warn!(vault = %vault, "security setting weakened: {w}");
        let event = crate::alerts::AlertEvent::new(
            crate::alerts::AlertKind::SecuritySettingWeakened,
            w.clone(),
            svc.now(),
        )
        .on(vault, None);
        if let Err(e) = svc.raise_alert(&event) {
            tracing::error!(vault = %vault, code = %e.code, "the alert for a weakened security setting could not be recorded: {}", e.message);
        }
    }
}

/// What a sweep purged, or would purge in a dry run.
#[derive(Debug, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Purged {
    /// Soft-deleted backup instances whose retention ended.
    pub backup_instances: Vec<String>,
    /// Soft-deleted recovery points (`<instance>/<id>`) whose retention ended.
    pub recovery_points: Vec<String>,
    /// What an immutable vault kept although its soft-delete retention ended.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kept: Vec<String>,
}

impl Purged {
    pub fn planned(plan: &PurgePlan) -> Self {
        Purged {
            backup_instances: plan
                .instances
                .iter()
                .map(|d| d.instance.name.clone())
                .collect(),
            recovery_points: plan
                .points
                .iter()
                .map(|p| format!("{}/{}", p.backup_instance_name, p.recovery_point_id))
                .collect(),
            kept: Vec::new(),
        }
    }
}

impl Pgvault {
    /// `backup-vault create|update --soft-delete-state --retention-duration-in-days
    /// --immutability-state` (and the REST API's `securitySettings`): the vault's JSON after
    /// the change. What it weakened goes to [`security_weakened`].
    pub async fn set_security_settings(
        &self,
        vault_name: &str,
        change: &SecurityChange,
    ) -> Result<Value> {
        let mut vault = self.vault(vault_name).await?;
        if !change.is_empty() {
            let weakened = vault.set_security_settings(change).await?;
            security_weakened(self, vault.name(), &weakened);
        }
        // Immutability named (turned on, locked, or given again to retry): what the vault
        // already holds goes under Blob Storage's retention too, in the vault's mode.
        if change.immutability_state.is_some() && vault.security().immutable() {
            let covered = vault.retain_existing().await.map_err(|e| {
                Error::new(
                    e.code.clone(),
                    format!(
                        "immutability of vault `{}` is set, but its existing recovery points could not all be put under Blob Storage retention: {}; give --immutability-state again to finish",
                        vault.name(),
                        e.message
                    ),
                )
            })?;
            if covered > 0 {
                tracing::info!(vault = %vault.name(), covered, "existing recovery points put under Blob Storage retention");
            }
        }
        Ok(vault.to_azure_json())
    }

    /// `backup-instance deleted list`: the vault's soft-deleted instances as Azure's JSON.
    pub async fn deleted_instances_json(&self, vault_name: &str) -> Result<Vec<Value>> {
        let vault = self.vault(vault_name).await?;
        Ok(vault
            .deleted_instances()
            .await?
            .iter()
            .map(|d| vault.deleted_instance_json(d))
            .collect())
    }

    /// `backup-instance deleted show`.
    pub async fn deleted_instance_json(&self, vault_name: &str, name: &str) -> Result<Value> {
        let vault = self.vault(vault_name).await?;
        let d = vault.deleted_instance(name).await?;
        Ok(vault.deleted_instance_json(&d))
    }

    /// `backup-instance deleted undelete`: brings a soft-deleted instance back with its
    /// recovery points, protection stopped (as Azure does: resume protection to back up
    /// again), as an `UndeleteBackupInstance` job. Under the destructive guard, so it never
    /// races the purge.
    pub async fn undelete_backup_instance(&self, vault_name: &str, name: &str) -> Result<Job> {
        let vault = self.vault(vault_name).await?;
        let deleted = vault.deleted_instance(name).await?;
        let guard = guard_destructive(&vault, "undelete backup instance").await?;
        let mut new = NewJob::new(
            Operation::UndeleteBackupInstance,
            vault.name(),
            self.now(),
            current_owner(),
        );
        new.backup_instance_name = Some(name.to_owned());
        new.describe_instance(&deleted.instance.properties);
        let run = JobRun::start(self.history(), &new, Held::nothing().guard(guard)).await?;
        let result = run.drive(vault.undelete_instance(name), || (0, 0)).await;
        run.finish(result.as_ref().map(|_| None), 0, 0).await
    }

    /// Soft-deletes an instance (its caller holds the vault's guard) as a `DeleteBackupInstance` job: protection
    /// stopped, the instance moved to the soft-deleted ones with its recovery points kept until
    /// the purge. The caller checked immutability and that no backup runs.
    pub(crate) async fn soft_delete_instance(&self, vault: &Vault, instance: &str) -> Result<Job> {
        let found = vault.instance(instance).await?;
        let mut new = NewJob::new(
            Operation::DeleteBackupInstance,
            vault.name(),
            self.now(),
            current_owner(),
        );
        new.backup_instance_name = Some(instance.to_owned());
        new.describe_instance(&found.properties);
        new.extended_details
            .insert("SoftDelete".into(), soft_delete_detail(vault));
        let run = JobRun::start(self.history(), &new, Held::nothing()).await?;
        let activity = run.id().to_string();
        let now = self.now();
        let result = run
            .drive(vault.soft_delete_instance(instance, &activity, now), || {
                (0, 0)
            })
            .await;
        if let Ok(d) = &result {
            run.set_details(&[(
                "ScheduledPurgeTime".into(),
                pgvault_core::model::job::azure_time(d.deletion_info.scheduled_purge_time),
            )])?;
        }
        run.finish(result.as_ref().map(|_| None), 0, 0).await
    }

    /// Soft-deletes one recovery point as a `DeleteRecoveryPoint` job (Action `SoftDelete`).
    pub(crate) async fn soft_delete_point(
        &self,
        vault: &Vault,
        guard: &DestructiveGuard,
        instance: &str,
        recovery_point_id: &str,
        tag: Option<String>,
    ) -> Result<Job> {
        let mut new = NewJob::new(
            Operation::DeleteRecoveryPoint,
            vault.name(),
            self.now(),
            current_owner(),
        );
        new.backup_instance_name = Some(instance.to_owned());
        if let Ok(found) = vault.instance(instance).await {
            new.describe_instance(&found.properties);
        }
        new.recovery_point_id = Some(recovery_point_id.to_owned());
        new.retention_tag = tag;
        new.extended_details
            .insert("Action".into(), "SoftDelete".into());
        new.extended_details
            .insert("Reason".into(), "deleted by a user".into());
        new.extended_details
            .insert("SoftDelete".into(), soft_delete_detail(vault));
        let mut run = JobRun::start(self.history(), &new, Held::nothing()).await?;
        let activity = run.id().to_string();
        let now = self.now();
        let result = match lock_tiers(vault, LockKind::Shared, "delete recovery point").await {
            Ok(locks) => {
                run.hold_locks(locks);
                let work = async {
                    guard.ensure_held().await?;
                    vault
                        .soft_delete_point(instance, recovery_point_id, &activity, now)
                        .await
                };
                run.drive(work, || (0, 0)).await
            }
            Err(e) => Err(e),
        };
        run.finish(result.as_ref().map(|_| None), 0, 0).await
    }

    /// Purges, under `guard`, what soft delete kept and whose retention ended at `at`: each
    /// point a `DeleteRecoveryPoint` job (reason "purged"), then the instance's record. On an
    /// immutable vault a point still within its expiry is kept (and named). Returns what was
    /// purged, the jobs, and how many failed.
    pub(crate) async fn purge_soft_deleted(
        &self,
        vault: &Vault,
        guard: &DestructiveGuard,
        plan: &PurgePlan,
        at: DateTime<Utc>,
    ) -> Result<(Purged, Vec<Job>, usize)> {
        let mut purged = Purged::default();
        let mut jobs = Vec::new();
        let mut failed = 0;
        for DeletedInstance {
            deletion_info,
            instance,
        } in &plan.instances
        {
            let name = &instance.name;
            let reason = purge_reason(deletion_info.deletion_time, "backup instance");
            let (points, damaged) = vault.recovery_points_and_damage(name).await?;
            let mut ids = Vec::new();
            let mut kept = false;
            for point in &points {
                let m = point.manifest();
                let refused = point.tiers().find_map(|(tier, tm)| {
                    vault
                        .check_immutable(
                            "the purge",
                            name,
                            &m.recovery_point_id,
                            tier,
                            tm.expiry_time,
                            at,
                        )
                        .err()
                });
                match refused {
                    Some(e) => {
                        tracing::warn!(vault = %vault.name(), "{}", e.message);
                        purged.kept.push(format!("{name}/{}", m.recovery_point_id));
                        kept = true;
                    }
                    None => ids.push(m.recovery_point_id.clone()),
                }
            }
            if vault.security().immutable() && !damaged.is_empty() {
                kept = true;
                purged.kept.extend(
                    damaged
                        .iter()
                        .map(|d| format!("{name}/{}", d.recovery_point_id)),
                );
            } else {
                ids.extend(damaged.into_iter().map(|d| d.recovery_point_id));
            }
            let mut all_gone = !kept;
            for id in ids {
                let job = self.delete_point(vault, guard, name, &id, &reason).await?;
                if job.state.error().is_some() {
                    failed += 1;
                    all_gone = false;
                }
                jobs.push(job);
            }
            if all_gone {
                guard.ensure_held().await?;
                vault.drop_deleted_instance(name).await?;
                purged.backup_instances.push(name.clone());
            }
        }
        for DeletedPoint {
            backup_instance_name: instance,
            recovery_point_id: id,
            deletion_info,
        } in &plan.points
        {
            if let Err(e) = vault.check_purge_point(instance, id, at).await {
                if e.code != pgvault_core::model::code::ErrorCode::UserErrorImmutableVaultOperationNotAllowed {
                    return Err(e);
                }
                tracing::warn!(vault = %vault.name(), "{}", e.message);
                purged.kept.push(format!("{instance}/{id}"));
                continue;
            }
            let job = self
                .purge_point_job(vault, guard, instance, id, deletion_info.deletion_time)
                .await?;
            if job.state.error().is_some() {
                failed += 1;
            } else {
                purged.recovery_points.push(format!("{instance}/{id}"));
            }
            jobs.push(job);
        }
        Ok((purged, jobs, failed))
    }

    async fn purge_point_job(
        &self,
        vault: &Vault,
        guard: &DestructiveGuard,
        instance: &str,
        id: &str,
        deleted: DateTime<Utc>,
    ) -> Result<Job> {
        let mut new = NewJob::new(
            Operation::DeleteRecoveryPoint,
            vault.name(),
            self.now(),
            current_owner(),
        );
        new.backup_instance_name = Some(instance.to_owned());
        new.recovery_point_id = Some(id.to_owned());
        new.extended_details.insert("Action".into(), "Purge".into());
        new.extended_details
            .insert("Reason".into(), purge_reason(deleted, "recovery point"));
        let run = JobRun::start(self.history(), &new, Held::nothing()).await?;
        let work = async {
            guard.ensure_held().await?;
            vault.purge_point(instance, id).await
        };
        let result = run.drive(work, || (0, 0)).await;
        run.finish(result.as_ref().map(|_| None), 0, 0).await
    }

    /// The vault's soft-deleted recovery points (`recovery-point` records), as JSON.
    pub async fn deleted_points(&self, vault_name: &str) -> Result<Vec<DeletedPoint>> {
        self.vault(vault_name).await?.deleted_points().await
    }

    /// Brings a soft-deleted recovery point back, under the destructive guard.
    pub async fn undelete_recovery_point(
        &self,
        vault_name: &str,
        instance: &str,
        id: &str,
    ) -> Result<()> {
        let vault = self.vault(vault_name).await?;
        let guard = guard_destructive(&vault, "undelete recovery point").await?;
        let result = vault.undelete_point(instance, id).await;
        release_guard(guard).await;
        result
    }
}

/// The job detail saying how long soft delete keeps what the job deleted.
fn soft_delete_detail(vault: &Vault) -> String {
    let s = vault.security().soft_delete_settings;
    format!(
        "{} ({} days)",
        s.state.as_str(),
        s.retention_duration_in_days
    )
}

fn purge_reason(deleted: DateTime<Utc>, what: &str) -> String {
    format!(
        "purged: the {what} was soft-deleted on {} and its soft-delete retention ended",
        deleted.format("%Y-%m-%d %H:%M UTC")
    )
}
