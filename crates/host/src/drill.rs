//! Restore drills as jobs: one `RestoreDrill` job per drill, on demand
//! (`backup-instance restore drill`) or because a policy's `pgvaultRestoreDrill` says one is
//! due (`tick`, `serve`).
//!
//! The job is the evidence. Its details carry the verdict (`DrillVerdict`: `Passed` or
//! `Failed`), the differences found (`DrillDifferences`), how long the restore took
//! (`TimeToRestore`, the recovery time to expect), what was checked and the scratch database
//! used; its sub-tasks show the restore, the comparison and the drop. A drill whose restore
//! differs from what the backup recorded fails with `RestoreDrillMismatch`, so
//! `job list --operation RestoreDrill --status Failed` lists the recovery points not to trust.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};

use pgvault_core::engine::drill::{
    CLEANUP_FAILED_CODE, DrillReport, DrillTarget, MISMATCH_CODE, RecoveryPointChoice, Verdict,
    choose_recovery_point, drill, scratch_database_name,
};
use pgvault_core::engine::{Error, Result, Vault};
use pgvault_core::model::drill::{
    DrillHistory, DrillReason, RestoreDrillSettings, drill_due, next_drill_time,
};
use pgvault_core::model::instance::{BackupInstanceRequest, PROTECTION_CONFIGURED};
use pgvault_core::model::job::{Job, JobFilter, JobStatus, NewJob, Operation, format_timespan};
use pgvault_core::model::resource;

use crate::history::current_owner;
use crate::job_run::{Held, JobRun};
use crate::service::Pgvault;

/// At most this many differences are spelled out in a job's details (the report has all).
const DIFFERENCES_IN_DETAILS: usize = 50;

/// A drill a policy asks for that is due.
#[derive(Debug, Clone)]
pub struct DueDrill {
    pub vault: String,
    pub instance: String,
    pub reason: DrillReason,
    pub target: DrillTarget,
}

/// What one drill pass did for one instance.
#[derive(Debug)]
pub struct DrillTickOutcome {
    pub drill: DueDrill,
    /// The drill's job (completed or failed), or why no job could start.
    pub job: Result<Job>,
}

impl Pgvault {
    /// `backup-instance restore drill`: restores `choice` into a scratch database on
    /// `target`, compares it with what the backup recorded, drops it, and records all of it
    /// as a `RestoreDrill` job. The job is returned whether the drill passed or not; a failed
    /// one carries the error (`RestoreDrillMismatch` for differences).
    pub async fn restore_drill(
        &self,
        vault_name: &str,
        instance: &str,
        choice: &RecoveryPointChoice,
        target: &DrillTarget,
    ) -> Result<(Job, Option<DrillReport>)> {
        self.drill_job(
            vault_name,
            instance,
            choice,
            target,
            Utc::now(),
            BTreeMap::new(),
            true,
        )
        .await
    }

    /// Runs one due drill of the instance's latest recovery point as a `RestoreDrill` job
    /// recorded at `now`.
    pub async fn run_drill(
        &self,
        due: &DueDrill,
        now: DateTime<Utc>,
    ) -> Result<(Job, Option<DrillReport>)> {
        let details = BTreeMap::from([("DrillReason".to_owned(), due.reason.to_string())]);
        self.drill_job(
            &due.vault,
            &due.instance,
            &RecoveryPointChoice::Latest,
            &due.target,
            now,
            details,
            false,
        )
        .await
    }

    /// One drill pass at `now`: every drill that is due (see [`Self::due_drills`]) runs, one
    /// after another. One failing drill does not stop the others: its job records the failure.
    pub async fn drill_tick(&self, now: DateTime<Utc>) -> Result<Vec<DrillTickOutcome>> {
        let mut outcomes = Vec::new();
        for due in self.due_drills(now).await? {
            let job = self.run_drill(&due, now).await.map(|(job, _)| job);
            outcomes.push(DrillTickOutcome { drill: due, job });
        }
        Ok(outcomes)
    }

    /// The drills due at `now`: protected instances whose policy has `pgvaultRestoreDrill`,
    /// a recovery point to drill, and a cadence that says it is time (see
    /// [`pgvault_core::model::drill::drill_due`]).
    pub async fn due_drills(&self, now: DateTime<Utc>) -> Result<Vec<DueDrill>> {
        let mut due = Vec::new();
        self.for_each_drilled_instance(|vault, instance, settings, history| {
            if let Some(reason) = drill_due(settings.cadence(), history, now) {
                due.push(DueDrill {
                    vault: vault.to_owned(),
                    instance: instance.to_owned(),
                    reason,
                    target: settings.target().clone(),
                });
            }
        })
        .await?;
        Ok(due)
    }

    /// The earliest time after `now` a drill falls due by the clock (drills after a number of
    /// backups fall due when a backup finishes, which wakes the host anyway).
    pub async fn next_drill(&self, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>> {
        let mut next: Option<DateTime<Utc>> = None;
        self.for_each_drilled_instance(|_, _, settings, history| {
            if let Some(t) = next_drill_time(settings.cadence(), history)
                && t > now
            {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        })
        .await?;
        Ok(next)
    }

    /// Calls `f` with every protected instance whose policy asks for drills, its settings and
    /// its drill history. An instance whose policy cannot be read is logged and skipped, so it
    /// does not stop the others' drills.
    async fn for_each_drilled_instance(
        &self,
        mut f: impl FnMut(&str, &str, &RestoreDrillSettings, &DrillHistory),
    ) -> Result<()> {
        for vault_name in self.vault_names()? {
            let vault = self.vault(&vault_name).await?;
            let mut policies: HashMap<String, Option<RestoreDrillSettings>> = HashMap::new();
            for instance in vault.list_instances().await? {
                if instance.properties.current_protection_state.as_deref()
                    != Some(PROTECTION_CONFIGURED)
                {
                    continue;
                }
                let policy_name =
                    resource::last_segment(&instance.properties.policy_info.policy_id).to_owned();
                if !policies.contains_key(&policy_name) {
                    let settings = match vault.policy(&policy_name).await {
                        Ok(policy) => policy.pgvault_restore_drill,
                        Err(e) => {
                            tracing::error!(vault = %vault_name, policy = %policy_name, code = %e.code, "{}", e.message);
                            None
                        }
                    };
                    policies.insert(policy_name.clone(), settings);
                }
                let Some(settings) = &policies[&policy_name] else {
                    continue;
                };
                match self.drill_history(&vault, &instance).await {
                    Ok(history) => f(&vault_name, &instance.name, settings, &history),
                    Err(e) => {
                        tracing::error!(vault = %vault_name, instance = %instance.name, code = %e.code, "{}", e.message)
                    }
                }
            }
        }
        Ok(())
    }

    /// The instance's last drill, the backups completed since, and whether it has a recovery
    /// point to drill.
    async fn drill_history(
        &self,
        vault: &Vault,
        instance: &BackupInstanceRequest,
    ) -> Result<DrillHistory> {
        let filter = || {
            JobFilter::default()
                .vault(vault.name())
                .instance(&instance.name)
        };
        let mut last = filter().operation(Operation::RestoreDrill);
        last.limit = Some(1);
        let last_drill = self.jobs(&last)?.first().map(|job| job.state.start());
        let mut backups_since = 0;
        for operation in [Operation::OnDemandBackup, Operation::ScheduledBackup] {
            let mut completed = filter().operation(operation).status(JobStatus::Completed);
            completed.started_after = last_drill;
            backups_since += self.jobs(&completed)?.len() as u32;
        }
        Ok(DrillHistory {
            last_drill,
            backups_since,
            has_recovery_point: vault.latest_recovery_point(&instance.name).await?.is_some(),
        })
    }

    /// A drill as a job; see [`Self::restore_drill`].
    #[allow(clippy::too_many_arguments)]
    async fn drill_job(
        &self,
        vault_name: &str,
        instance: &str,
        choice: &RecoveryPointChoice,
        target: &DrillTarget,
        now: DateTime<Utc>,
        details: BTreeMap<String, String>,
        user_triggered: bool,
    ) -> Result<(Job, Option<DrillReport>)> {
        let vault = self.vault(vault_name).await?;
        let manifest = choose_recovery_point(&vault, instance, choice).await?;
        let inst = vault.instance(instance).await?;
        // Garbage collection must not delete a chunk the restore is about to read.
        let lock = self
            .shared_lock(&vault.store, &format!("restore drill of {instance}"))
            .await?;
        let scratch = scratch_database_name();
        let mut new = NewJob::new(Operation::RestoreDrill, vault.name(), now, current_owner());
        new.is_user_triggered = user_triggered;
        new.backup_instance_name = Some(instance.to_owned());
        new.describe_instance(&inst.properties);
        new.policy_name =
            Some(resource::last_segment(&inst.properties.policy_info.policy_id).to_owned());
        new.recovery_point_id = Some(manifest.recovery_point_id.clone());
        new.extended_details
            .insert("RestoreTarget".into(), target.server.server_url());
        new.extended_details
            .insert("DrillDatabase".into(), scratch.clone());
        new.extended_details.extend(details);
        let run = JobRun::start(self.history(), &new, Held::nothing().lock(lock)).await?;
        let written = Arc::new(AtomicU64::new(0));
        let result = run
            .drive(
                drill(
                    &vault,
                    &manifest,
                    target,
                    &scratch,
                    written.clone(),
                    run.steps(),
                    &self.leftovers(),
                ),
                || (written.load(Ordering::Relaxed), 0),
            )
            .await;
        run.set_details(&report_details(&result))?;
        let outcome = match &result {
            Ok(report) if report.verdict == Verdict::Failed => Err(Error::new(
                MISMATCH_CODE,
                format!(
                    "the restore of recovery point {} differs from what its backup recorded ({} differences): {}",
                    report.recovery_point_id,
                    report.differences.len(),
                    report.differences_text(DIFFERENCES_IN_DETAILS)
                ),
            )),
            Ok(report) if !report.scratch_database_dropped => Err(Error::new(
                CLEANUP_FAILED_CODE,
                format!(
                    "the drill passed, but its scratch database {} on {} could not be dropped; drop it by hand",
                    report.scratch_database, report.target_server
                ),
            )),
            Ok(_) => Ok(None),
            Err(e) => Err(e.clone()),
        };
        let job = run
            .finish(
                outcome.as_ref().cloned(),
                written.load(Ordering::Relaxed),
                0,
            )
            .await?;
        Ok((job, result.ok()))
    }
}

/// The job details a drill's outcome adds.
fn report_details(result: &Result<DrillReport>) -> Vec<(String, String)> {
    let Ok(report) = result else {
        return vec![("DrillVerdict".into(), Verdict::Failed.as_str().into())];
    };
    let mut details = vec![
        ("DrillVerdict".into(), report.verdict.as_str().into()),
        (
            "TimeToRestore".into(),
            format_timespan(
                chrono::TimeDelta::from_std(report.time_to_restore).unwrap_or_default(),
            ),
        ),
        (
            "ContentsRecorded".into(),
            report.contents_recorded.to_string(),
        ),
        ("TablesChecked".into(), report.tables_checked.to_string()),
        (
            "RowCountsChecked".into(),
            report.row_counts_checked.to_string(),
        ),
        (
            "ScratchDatabaseDropped".into(),
            report.scratch_database_dropped.to_string(),
        ),
    ];
    if !report.differences.is_empty() {
        details.push((
            "DrillDifferences".into(),
            report.differences_text(DIFFERENCES_IN_DETAILS),
        ));
    }
    details
}
