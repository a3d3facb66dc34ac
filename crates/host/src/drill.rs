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

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};

use pgvault_core::engine::drill::{
    CLEANUP_FAILED_CODE, DrillReport, DrillTarget, MISMATCH_CODE, RecoveryPointChoice, Verdict,
    choose_recovery_point, drill, scratch_database_name,
};
use pgvault_core::engine::{Error, Result};
use pgvault_core::model::drill::DrillReason;
use pgvault_core::model::job::{
    Job, NewJob, Operation, RECOVERY_POINT_TIME_DETAIL, azure_time, format_timespan,
};
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
            self.now(),
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
        new.extended_details.insert(
            RECOVERY_POINT_TIME_DETAIL.into(),
            azure_time(manifest.recovery_point_time),
        );
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
        let verdict = match &result {
            Ok(report) if report.verdict == Verdict::Failed => Some(Error::new(
                MISMATCH_CODE,
                format!(
                    "the restore of recovery point {} differs from what its backup recorded ({} differences): {}",
                    report.recovery_point_id,
                    report.differences.len(),
                    report.differences_text(DIFFERENCES_IN_DETAILS)
                ),
            )),
            Ok(report) if !report.scratch_database_dropped => Some(Error::new(
                CLEANUP_FAILED_CODE,
                format!(
                    "the drill passed, but its scratch database {} on {} could not be dropped; drop it by hand",
                    report.scratch_database, report.target_server
                ),
            )),
            _ => None,
        };
        let outcome = match (&verdict, &result) {
            (Some(e), _) | (None, Err(e)) => Err(e),
            (None, Ok(_)) => Ok(None),
        };
        let job = run
            .finish(outcome, written.load(Ordering::Relaxed), 0)
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
