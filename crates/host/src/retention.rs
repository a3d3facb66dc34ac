//! Retention as jobs: the sweep (archive moves, expiries, garbage collection) and the
//! deletions a user asks for.
//!
//! A sweep of a vault is one `RetentionSweep` job; each recovery point it moves is a
//! `MoveToArchive` job and each it deletes a `DeleteRecoveryPoint` job, all recorded at the
//! sweep's clock (`--at`), so `job list` shows what the policy did and when. Moves and
//! deletions run under shared vault locks (backups and restores may run meanwhile); garbage
//! collection then takes the exclusive lock and, when a backup or restore holds the vault, is
//! deferred to the next sweep rather than waited for.
//!
//! Sweeps, garbage collection and deletions also hold the vault's destructive-operation guard
//! (a blob lease on Blob Storage; see `pgvault_core::store::lease`) for their whole run, so
//! two hosts never expire or collect the same vault at once: the second is refused at once,
//! naming the first. Each deletion is preceded by a check that the guard is still held.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};

use pgvault_core::engine::sweep::{self, ActionKind, SweepAction, SweepPlan};
use pgvault_core::engine::vault::RECOVERY_POINT_DAMAGED;
use pgvault_core::engine::{Error, Result, Vault};
use pgvault_core::model::code::ErrorCode;
use pgvault_core::model::instance::PROTECTION_STOPPED;
use pgvault_core::model::job::{Job, JobFilter, JobStatus, NewJob, Operation};
use pgvault_core::model::policy::DataStoreType;
use pgvault_core::store::gc::{GcReport, Repack, collect_garbage_with};
use pgvault_core::store::lease::{BrokenLock, DestructiveGuard, break_destructive_lock};
use pgvault_core::store::lock::{LockError, LockKind, VaultLock};
use pgvault_core::store::writer::Progress;

use crate::alerts::{AlertEvent, AlertKind};
use crate::history::current_owner;
use crate::job_run::{
    Held, JobRun, guard_destructive, lock_tiers, release_all, release_guard, shielded,
};
use crate::security::Purged;
use crate::service::Pgvault;

/// A full garbage collection at least this often, even when a sweep deleted nothing: it also
/// removes what killed backups left behind.
pub const GC_AT_LEAST_EVERY: TimeDelta = TimeDelta::hours(20);

/// What garbage collection did to one tier.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TierGc {
    pub data_store_type: DataStoreType,
    /// The collection's report, or why it did not run (the vault was busy) or failed.
    pub outcome: std::result::Result<GcReport, String>,
}

/// One vault's sweep.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepOutcome {
    pub vault: String,
    pub plan: SweepPlan,
    /// The sweep's own job (none for a dry run).
    #[serde(skip)]
    pub job: Option<Job>,
    /// One job per action, in the plan's order (none for a dry run).
    #[serde(skip)]
    pub action_jobs: Vec<Job>,
    pub garbage_collection: Vec<TierGc>,
    /// What soft delete kept and the sweep purged (or, in a dry run, would purge).
    pub purged: Purged,
}

/// When garbage collection runs in a sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GcMode {
    /// Always (`retention sweep`).
    Always,
    /// When the sweep deleted something, or the last collection is older than
    /// [`GC_AT_LEAST_EVERY`] (`tick`, `serve`).
    WhenDue,
    Never,
}

/// One vault's part of a sweep over every vault: its outcome, or why it could not be swept.
#[derive(Debug)]
pub struct VaultSweep {
    pub vault: String,
    pub outcome: Result<SweepOutcome>,
}

impl Pgvault {
    /// Sweeps every registered vault at `at`, each on its own: a vault that cannot be swept
    /// (its folder missing, its disk unmounted, its storage failing) is reported with its
    /// error and the others are swept all the same. Fails only when the registry cannot be
    /// read. A periodic pass ([`GcMode::WhenDue`]) skips a vault another process is sweeping
    /// or collecting: that work is being done.
    pub async fn retention_sweep_all(
        &self,
        at: DateTime<Utc>,
        dry_run: bool,
        gc: GcMode,
    ) -> Result<Vec<VaultSweep>> {
        let mut out = Vec::new();
        for name in self.vault_names()? {
            let outcome = match self.retention_sweep(&name, at, dry_run, gc).await {
                Err(e) if gc == GcMode::WhenDue && e.code == DESTRUCTIVE_BUSY => {
                    tracing::info!(vault = %name, "retention sweep skipped: {}", e.message);
                    continue;
                }
                Err(e) => {
                    tracing::error!(vault = %name, code = %e.code, "retention sweep failed: {}", e.message);
                    Err(e)
                }
                Ok(outcome) => Ok(outcome),
            };
            out.push(VaultSweep {
                vault: name,
                outcome,
            });
        }
        Ok(out)
    }

    /// Sweeps one vault at `at`: applies the plan (unless `dry_run`), each action a job, then
    /// collects garbage as `gc` says. All of it under the vault's destructive-operation guard
    /// (a dry run needs none), planned under it too, so a sweep never plans what another is
    /// deleting.
    pub async fn retention_sweep(
        &self,
        vault_name: &str,
        at: DateTime<Utc>,
        dry_run: bool,
        gc: GcMode,
    ) -> Result<SweepOutcome> {
        let vault = self.vault(vault_name).await?;
        if dry_run {
            return self.sweep_guarded(&vault, None, at, gc).await;
        }
        let guard = guard_destructive(&vault, "retention sweep").await?;
        self.sweep_guarded(&vault, Some(guard), at, gc).await
    }

    /// [`Self::retention_sweep`] under `guard`, which the sweep's job holds and releases; a
    /// dry run when there is none.
    async fn sweep_guarded(
        &self,
        vault: &Vault,
        guard: Option<DestructiveGuard>,
        at: DateTime<Utc>,
        gc: GcMode,
    ) -> Result<SweepOutcome> {
        let plan = match sweep::plan_sweep(vault, at).await {
            Ok(plan) => plan,
            Err(e) => {
                if let Some(guard) = guard {
                    release_guard(guard).await;
                }
                return Err(e);
            }
        };
        for warning in &plan.warnings {
            tracing::warn!(vault = %vault.name(), "{warning}");
        }
        let purge = match vault.purge_plan(at).await {
            Ok(purge) => purge,
            Err(e) => {
                if let Some(guard) = guard {
                    release_guard(guard).await;
                }
                return Err(e);
            }
        };
        let mut outcome = SweepOutcome {
            vault: vault.name().to_owned(),
            plan,
            job: None,
            action_jobs: Vec::new(),
            garbage_collection: Vec::new(),
            purged: Purged::planned(&purge),
        };
        let Some(guard) = guard else {
            return Ok(outcome);
        };
        let last_gc = match self.last_sweep_with_gc(vault.name()) {
            Ok(last) => last,
            Err(e) => {
                release_guard(guard).await;
                return Err(e);
            }
        };
        let deletes = !purge.is_empty()
            || outcome
                .plan
                .actions
                .iter()
                .any(|a| a.action != ActionKind::CopyToArchive);
        let run_gc = match gc {
            GcMode::Always => true,
            GcMode::Never => false,
            GcMode::WhenDue => deletes || last_gc.is_none_or(|t| at - t >= GC_AT_LEAST_EVERY),
        };
        // A periodic pass with nothing to do leaves no job: an hourly timer would otherwise
        // fill the history with empty sweeps.
        if outcome.plan.actions.is_empty() && purge.is_empty() && !run_gc && gc != GcMode::Always {
            release_guard(guard).await;
            return Ok(outcome);
        }
        let mut new = NewJob::new(Operation::RetentionSweep, vault.name(), at, current_owner());
        new.is_user_triggered = gc == GcMode::Always;
        let run = JobRun::start(self.history(), &new, Held::nothing().guard(guard)).await?;
        let guard = run.guard().expect("the sweep's job holds the guard");

        let applied = self
            .apply_actions(vault, guard, &outcome.plan.actions, at)
            .await;
        let (jobs, failed) = match applied {
            Ok(jobs) => jobs,
            Err(e) => {
                let job = run.finish(Err(&e), 0, 0).await?;
                outcome.job = Some(job);
                return Err(e);
            }
        };
        outcome.action_jobs = jobs;
        let mut failed = failed;
        let mut planned = outcome.plan.actions.len();
        if !purge.is_empty() {
            match self.purge_soft_deleted(vault, guard, &purge, at).await {
                Ok((purged, jobs, purge_failed)) => {
                    planned += jobs.len();
                    failed += purge_failed;
                    outcome.purged = purged;
                    outcome.action_jobs.extend(jobs);
                }
                Err(e) => {
                    let job = run.finish(Err(&e), 0, 0).await?;
                    outcome.job = Some(job);
                    return Err(e);
                }
            }
        }
        let mut details = vec![
            ("Planned".to_owned(), planned.to_string()),
            ("Failed".to_owned(), failed.to_string()),
        ];
        if !outcome.purged.backup_instances.is_empty() || !outcome.purged.recovery_points.is_empty()
        {
            details.push((
                "Purged".to_owned(),
                outcome
                    .purged
                    .backup_instances
                    .iter()
                    .chain(&outcome.purged.recovery_points)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
            ));
        }
        if run_gc {
            for tier in [DataStoreType::VaultStore, DataStoreType::ArchiveStore] {
                if vault.tier_store(tier).is_none() {
                    continue;
                }
                let result = gc_tier(vault, tier, guard).await;
                let text = match &result {
                    Ok(r) => format!(
                        "{} packs deleted, {} repacked, {} bytes freed",
                        r.dead_packs, r.repacked_packs, r.bytes_freed
                    ),
                    Err(e) => e.clone(),
                };
                details.push((format!("GarbageCollection{tier}"), text));
                outcome.garbage_collection.push(TierGc {
                    data_store_type: tier,
                    outcome: result,
                });
            }
        }
        let result = if failed == 0 {
            Ok(())
        } else {
            Err(Error::new(
                ErrorCode::RetentionActionsFailed,
                format!("{failed} of {planned} retention actions failed; see their jobs"),
            ))
        };
        run.set_details(&details)?;
        outcome.job = Some(run.finish(result.as_ref().map(|_| None), 0, 0).await?);
        Ok(outcome)
    }

    /// Runs each action as its own job; returns the jobs and how many failed. Fails only when
    /// the vault cannot be locked, the history written, or `guard` was lost (it is checked
    /// before each action, so a sweep that lost it stops deleting).
    async fn apply_actions(
        &self,
        vault: &Vault,
        guard: &DestructiveGuard,
        actions: &[SweepAction],
        at: DateTime<Utc>,
    ) -> Result<(Vec<Job>, usize)> {
        if actions.is_empty() {
            return Ok((Vec::new(), 0));
        }
        let locks = lock_tiers(vault, LockKind::Shared, "retention sweep").await?;
        let mut jobs = Vec::new();
        let mut failed = 0;
        // Each instance read once, for its jobs' datasource type and friendly name.
        let mut instances = std::collections::BTreeMap::new();
        for action in actions {
            if let Err(e) = guard.ensure_held().await {
                release_all(locks).await;
                return Err(e.into());
            }
            let operation = match action.action {
                ActionKind::CopyToArchive | ActionKind::MoveToArchive => Operation::MoveToArchive,
                _ => Operation::DeleteRecoveryPoint,
            };
            let mut new = NewJob::new(operation, vault.name(), at, current_owner());
            new.is_user_triggered = false;
            new.backup_instance_name = Some(action.backup_instance_name.clone());
            let name = &action.backup_instance_name;
            if !instances.contains_key(name) {
                instances.insert(name.clone(), vault.instance(name).await.ok());
            }
            if let Some(Some(instance)) = instances.get(name) {
                new.describe_instance(&instance.properties);
            }
            new.recovery_point_id = Some(action.recovery_point_id.clone());
            new.retention_tag = Some(action.retention_tag_name.clone());
            new.extended_details
                .insert("Action".into(), format!("{:?}", action.action));
            new.extended_details
                .insert("Reason".into(), action.reason.clone());
            let run = JobRun::start(self.history(), &new, Held::nothing()).await?;
            let progress = Arc::new(Progress::default());
            let result = run
                .drive(sweep::apply(vault, action, progress.clone()), || (0, 0))
                .await;
            if let Err(e) = &result {
                failed += 1;
                tracing::error!(vault = %vault.name(), instance = %action.backup_instance_name, recovery_point = %action.recovery_point_id, error = %e, "a retention action failed");
            }
            jobs.push(run.finish(result.as_ref().map(|_| None), 0, 0).await?);
        }
        release_all(locks).await;
        Ok((jobs, failed))
    }

    /// When this vault's garbage was last collected: the start of its latest sweep job that
    /// records a collection.
    fn last_sweep_with_gc(&self, vault: &str) -> Result<Option<DateTime<Utc>>> {
        let sweeps = self.jobs(
            &JobFilter::default()
                .vault(vault)
                .operation(Operation::RetentionSweep)
                .limit(50),
        )?;
        Ok(sweeps
            .iter()
            .find(|j| {
                j.extended_details
                    .contains_key("GarbageCollectionVaultStore")
            })
            .map(|j| j.state.start()))
    }

    /// Garbage collection of every tier, on demand (`backup-vault gc`).
    pub async fn collect_vault_garbage(&self, vault_name: &str) -> Result<Vec<TierGc>> {
        let vault = self.vault(vault_name).await?;
        let guard = guard_destructive(&vault, "garbage collection").await?;
        let mut out = Vec::new();
        for tier in [DataStoreType::VaultStore, DataStoreType::ArchiveStore] {
            if vault.tier_store(tier).is_some() {
                out.push(TierGc {
                    data_store_type: tier,
                    outcome: gc_tier(&vault, tier, &guard).await,
                });
            }
        }
        release_guard(guard).await;
        Ok(out)
    }

    /// `backup-vault break-lock`: ends whoever holds the vault's destructive-operation guard
    /// (breaks the lease on Blob Storage, removes the lock object on a local vault), for an
    /// operator who knows the holder is gone. A live holder stops before its next deletion.
    pub async fn break_destructive_lock(&self, vault_name: &str) -> Result<BrokenLock> {
        let vault = self.vault(vault_name).await?;
        let broken = break_destructive_lock(&vault.store).await?;
        for holder in &broken.holders {
            tracing::warn!(vault = %vault.name(), holder = %holder.describe(), "destructive-operation {} broken", broken.mechanism);
        }
        Ok(broken)
    }

    /// Deletes one recovery point from every tier, as a `DeleteRecoveryPoint` job. Refused
    /// for the last recovery point of an instance that is still protected (backups configured
    /// or suspended): stop protection first, or delete the instance with its data.
    pub async fn delete_recovery_point(
        &self,
        vault_name: &str,
        instance: &str,
        recovery_point_id: &str,
    ) -> Result<Job> {
        let vault = self.vault(vault_name).await?;
        let guard = guard_destructive(&vault, "delete recovery point").await?;
        let job = self
            .delete_last_checked(&vault, &guard, instance, recovery_point_id)
            .await;
        release_guard(guard).await;
        if let Ok(job) = &job
            && job.status() == JobStatus::Completed
        {
            self.destructive_alert(
                vault.name(),
                instance,
                format!(
                    "Recovery point `{recovery_point_id}` of `{instance}` in vault `{}` was deleted{} (job {})",
                    vault.name(),
                    initiated_by(job),
                    job.id
                ),
            );
        }
        job
    }

    /// Raises the alert of a destructive operation on recovery points (Azure's "Delete
    /// Backup Data"); a failure to record it is logged.
    fn destructive_alert(&self, vault: &str, instance: &str, description: String) {
        let event = AlertEvent::new(AlertKind::DeleteBackupData, description, self.now())
            .on(vault, Some(instance));
        if let Err(e) = self.raise_alert(&event) {
            tracing::error!(vault = %vault, instance = %instance, error = %e, "could not record the deletion's alert");
        }
    }

    /// [`Self::delete_recovery_point`] under the guard.
    async fn delete_last_checked(
        &self,
        vault: &Vault,
        guard: &DestructiveGuard,
        instance: &str,
        recovery_point_id: &str,
    ) -> Result<Job> {
        let state = vault
            .instance(instance)
            .await?
            .properties
            .current_protection_state
            .unwrap_or_default();
        let points = vault.recovery_points(instance).await?;
        if state != PROTECTION_STOPPED
            && points.len() == 1
            && points[0].manifest().recovery_point_id == recovery_point_id
        {
            return Err(Error::new(
                ErrorCode::UserErrorLastRecoveryPoint,
                format!(
                    "recovery point `{recovery_point_id}` is the last one of `{instance}`, which is \
                     still protected; the last recovery point is never deleted. Run \
                     `backup-instance stop-protection` first, or `backup-instance delete` to \
                     delete the instance with its data"
                ),
            ));
        }
        // On an immutable vault a point goes only once every tier's copy has expired.
        let now = self.now();
        let tag = match vault.stored_point(instance, recovery_point_id).await {
            Ok(point) => {
                for (tier, m) in point.tiers() {
                    vault.check_immutable(
                        "deleting a recovery point",
                        instance,
                        recovery_point_id,
                        tier,
                        m.expiry_time,
                        now,
                    )?;
                }
                Some(point.manifest().retention_tag_name.clone())
            }
            Err(e) if e.code == RECOVERY_POINT_DAMAGED => {
                for tier in [DataStoreType::VaultStore, DataStoreType::ArchiveStore] {
                    vault.check_immutable(
                        "deleting a recovery point",
                        instance,
                        recovery_point_id,
                        tier,
                        None,
                        now,
                    )?;
                }
                None
            }
            Err(e) => return Err(e),
        };
        if vault.security().soft_delete_on() {
            return self
                .soft_delete_point(vault, guard, instance, recovery_point_id, tag)
                .await;
        }
        self.delete_point(
            vault,
            guard,
            instance,
            recovery_point_id,
            "deleted by a user",
        )
        .await
    }

    pub(crate) async fn delete_point(
        &self,
        vault: &Vault,
        guard: &DestructiveGuard,
        instance: &str,
        recovery_point_id: &str,
        reason: &str,
    ) -> Result<Job> {
        // A damaged manifest can still be deleted: it is the way out of it.
        let tag = match vault.stored_point(instance, recovery_point_id).await {
            Ok(point) => Some(point.manifest().retention_tag_name.clone()),
            Err(e) if e.code == RECOVERY_POINT_DAMAGED => None,
            Err(e) => return Err(e),
        };
        let now = self.now();
        let mut new = NewJob::new(
            Operation::DeleteRecoveryPoint,
            vault.name(),
            now,
            current_owner(),
        );
        new.backup_instance_name = Some(instance.to_owned());
        if let Ok(found) = vault.instance(instance).await {
            new.describe_instance(&found.properties);
        }
        new.recovery_point_id = Some(recovery_point_id.to_owned());
        new.retention_tag = tag;
        new.extended_details
            .insert("Action".into(), "Delete".into());
        new.extended_details.insert("Reason".into(), reason.into());
        let mut run = JobRun::start(self.history(), &new, Held::nothing()).await?;
        let result = match lock_tiers(vault, LockKind::Shared, "delete recovery point").await {
            Ok(locks) => {
                run.hold_locks(locks);
                let deletion = async {
                    let mut deleted = Ok(());
                    for tier in [DataStoreType::ArchiveStore, DataStoreType::VaultStore] {
                        if let Err(e) = guard.ensure_held().await {
                            deleted = Err(e.into());
                            break;
                        }
                        deleted =
                            deleted.and(vault.delete_from(tier, instance, recovery_point_id).await);
                    }
                    deleted
                };
                run.drive(deletion, || (0, 0)).await
            }
            Err(e) => Err(e),
        };
        run.finish(result.as_ref().map(|_| None), 0, 0).await
    }

    /// Explains a recovery point that is not found when the job history knows it was deleted
    /// (expired by the sweep, or deleted by a user): the error then says when, why and by
    /// which job. Other errors pass through.
    pub fn explain_missing_point(
        &self,
        vault_name: &str,
        instance: &str,
        recovery_point_id: &str,
        error: Error,
    ) -> Error {
        if error.code != ErrorCode::UserErrorRecoveryPointNotFound {
            return error;
        }
        let deletions = self
            .jobs(
                &JobFilter::default()
                    .vault(vault_name)
                    .instance(instance)
                    .operation(Operation::DeleteRecoveryPoint)
                    .status(pgvault_core::model::job::JobStatus::Completed),
            )
            .unwrap_or_default();
        match deletions
            .iter()
            .find(|j| j.recovery_point_id.as_deref() == Some(recovery_point_id))
        {
            Some(job) => Error::new(
                ErrorCode::UserErrorRecoveryPointExpired,
                format!(
                    "recovery point `{recovery_point_id}` of `{instance}` was deleted on {} ({}; job {}); choose another with `pgvault recovery-point list`",
                    job.state.start().format("%Y-%m-%d %H:%M UTC"),
                    job.extended_details
                        .get("Reason")
                        .map_or("deleted", String::as_str),
                    job.id
                ),
            ),
            None => error,
        }
    }

    /// `recovery-point rehydrate`: copies an archive-tier recovery point back to the vault
    /// tier for `days` (10 to 30, as Azure allows), as a `Rehydrate` job, after which it
    /// restores with `--source-datastore ArchiveStore` until the sweep removes the copy.
    /// `priority` (Standard or High) is Azure's; a local archive tier has one speed.
    pub async fn rehydrate(
        &self,
        vault_name: &str,
        instance: &str,
        recovery_point_id: &str,
        days: u32,
        priority: &str,
    ) -> Result<Job> {
        if !(10..=30).contains(&days) {
            return Err(Error::new(
                ErrorCode::UserErrorInvalidRehydrationDuration,
                format!("a rehydration lasts 10 to 30 days, not {days}"),
            ));
        }
        let priority: sweep::RehydratePriority = priority.parse()?;
        let vault = self.vault(vault_name).await?;
        let point = vault.stored_point(instance, recovery_point_id).await?;
        let now = self.now();
        let until = now + TimeDelta::days(i64::from(days));
        let mut new = NewJob::new(Operation::Rehydrate, vault.name(), now, current_owner());
        new.backup_instance_name = Some(instance.to_owned());
        if let Ok(found) = vault.instance(instance).await {
            new.describe_instance(&found.properties);
        }
        new.recovery_point_id = Some(recovery_point_id.to_owned());
        new.retention_tag = Some(point.manifest().retention_tag_name.clone());
        new.extended_details
            .insert("RehydrationPriority".into(), priority.as_str().into());
        new.extended_details.insert(
            "RehydrationExpiryTime".into(),
            pgvault_core::model::job::azure_time(until),
        );
        let mut run = JobRun::start(self.history(), &new, Held::nothing()).await?;
        let progress = Arc::new(Progress::default());
        let result = match lock_tiers(&vault, LockKind::Shared, "rehydrate").await {
            Ok(locks) => {
                run.hold_locks(locks);
                // Progress while Blob Storage rehydrates archived packs, on the job as it runs.
                let status = |message: String| {
                    if let Err(e) = run.set_details(&[("RehydrationStatus".into(), message)]) {
                        tracing::warn!("cannot record the rehydration's progress: {}", e.message);
                    }
                };
                let copied = sweep::rehydrate(
                    &vault,
                    instance,
                    recovery_point_id,
                    until,
                    priority,
                    progress.clone(),
                    &status,
                );
                run.drive(copied, || (0, 0)).await.map(|_| ())
            }
            Err(e) => Err(e),
        };
        run.finish(result.as_ref().map(|_| None), 0, 0).await
    }

    /// Azure's "stop protection and delete data": stops protection (so no backup starts),
    /// deletes every recovery point of the instance (one `DeleteRecoveryPoint` job each), then
    /// the instance. Refused while one of its backups runs. The space returns at the next
    /// garbage collection.
    pub async fn delete_backup_instance(
        &self,
        vault_name: &str,
        instance: &str,
    ) -> Result<Vec<Job>> {
        let vault = self.vault(vault_name).await?;
        vault.instance(instance).await?;
        let guard = guard_destructive(&vault, "delete backup instance").await?;
        let jobs = self.delete_instance_guarded(&vault, &guard, instance).await;
        release_guard(guard).await;
        if let Ok(deleted) = &jobs {
            self.destructive_alert(
                vault.name(),
                instance,
                format!(
                    "Backup instance `{instance}` in vault `{}` was deleted with its data: {} recovery point(s){}",
                    vault.name(),
                    deleted.len(),
                    deleted.first().map(initiated_by).unwrap_or_default()
                ),
            );
        }
        jobs
    }

    /// [`Self::delete_backup_instance`] under the guard.
    async fn delete_instance_guarded(
        &self,
        vault: &Vault,
        guard: &DestructiveGuard,
        instance: &str,
    ) -> Result<Vec<Job>> {
        self.check_no_backup_running(vault.name(), instance)?;
        vault
            .check_immutable_instance(
                "deleting the backup instance with its data",
                instance,
                self.now(),
            )
            .await?;
        if vault.security().soft_delete_on() {
            return Ok(vec![self.soft_delete_instance(vault, instance).await?]);
        }
        vault
            .set_protection_state(instance, PROTECTION_STOPPED)
            .await?;
        let mut jobs = Vec::new();
        let (points, damaged) = vault.recovery_points_and_damage(instance).await?;
        let ids = points
            .iter()
            .map(|p| p.manifest().recovery_point_id.clone())
            .chain(damaged.into_iter().map(|d| d.recovery_point_id))
            .collect::<std::collections::BTreeSet<String>>();
        for id in ids {
            let job = self
                .delete_point(
                    vault,
                    guard,
                    instance,
                    &id,
                    "the backup instance was deleted",
                )
                .await?;
            if let Some(e) = job.state.error() {
                return Err(Error::new(
                    e.code.clone(),
                    format!(
                        "{} (the instance is now ProtectionStopped; {} recovery points were deleted before this one; run the deletion again to finish)",
                        e.message,
                        jobs.len()
                    ),
                ));
            }
            jobs.push(job);
        }
        vault.delete_instance(instance).await?;
        Ok(jobs)
    }
}

/// The error code of a destructive operation refused because another holds the vault.
const DESTRUCTIVE_BUSY: ErrorCode = ErrorCode::UserErrorDestructiveOperationInProgress;

/// Collects one tier's garbage under its exclusive lock and `guard`; a busy vault defers it.
async fn gc_tier(
    vault: &Vault,
    tier: DataStoreType,
    guard: &DestructiveGuard,
) -> std::result::Result<GcReport, String> {
    let store = vault
        .tier_store(tier)
        .expect("the caller checked the tier exists");
    guard.ensure_held().await.map_err(|e| e.to_string())?;
    let taken = {
        let store = store.clone();
        shielded(async move {
            VaultLock::acquire(&store, LockKind::Exclusive, "garbage collection").await
        })
        .await
        .map_err(|e| e.message)?
    };
    let lock = match taken {
        Ok(lock) => lock,
        Err(e @ LockError::Locked { .. }) => {
            tracing::info!(vault = %vault.name(), %tier, "garbage collection deferred: {e}");
            return Err(format!("deferred to the next sweep: {e}"));
        }
        Err(e) => return Err(e.to_string()),
    };
    let key = vault.chunk_key();
    let size = vault.config.pack_target_size as usize;
    // An immutable vault never rewrites a pack that holds a live point's data.
    let repack = if vault.security().immutable() {
        Repack::Never
    } else {
        Repack::Sparse
    };
    let result = collect_garbage_with(store, &key, size, Some(guard), repack, |_| true)
        .await
        .map_err(|e| e.to_string());
    if let Err(e) = lock.release().await {
        tracing::warn!(error = %e, "could not release the vault lock; it will go stale");
    }
    if let Ok(r) = &result {
        tracing::info!(vault = %vault.name(), %tier, dead_packs = r.dead_packs, repacked = r.repacked_packs, bytes_freed = r.bytes_freed, "garbage collected");
    }
    result
}

/// ` by <who>` when the job says who asked (the REST API's and the console's token).
fn initiated_by(job: &Job) -> String {
    job.extended_details
        .get(crate::INITIATED_BY_DETAIL)
        .map(|who| format!(" by {who}"))
        .unwrap_or_default()
}
