//! The host's agenda: what is due now and when to look again, for `serve` and `tick` alike.
//!
//! One [`Agenda::turn`] at the caller's time yields every piece of work that is due (the
//! scheduled backups, the restore drills policies ask for, the retention sweep with history
//! pruning, drop-in scripts) and the time of the next thing to do. `serve` asks it at each
//! turn of its loop; `tick` asks it once ([`tick`]). So both see the same work for the same
//! vault at the same time, decided by the same code.
//!
//! What the turn reads from the vaults (every vault's instances, their policies' schedules
//! and drill settings, whether an instance has a recovery point to drill) is one scan,
//! cached until something may have changed it: a job finished ([`Agenda::invalidate`], which
//! `serve` calls for each finished job and each event, and a future REST API calls after a
//! change), or [`SCAN_MAX_AGE`] passed (another process, a `pgvault` command, may have
//! changed a vault; the loop sleeps at most that long anyway). What the job history says
//! (when an instance was protected, its last scheduled backup and drill) is read at every
//! turn: it is local SQLite, and it changes with every job.
//!
//! With [`Agenda::alerting`] (`serve` and `tick`), a turn also looks for backups overdue
//! (the pure [`overdue`]: no successful backup since the schedule's latest occurrence plus a
//! grace; the instance's alert is raised, once per missed occurrence) and for alert notices
//! due ([`Work::DeliverAlerts`]); the end of the next occurrence's grace and the next retry
//! of a notice are wake-ups.
//!
//! The agenda never reads the clock: every `now` is the caller's (`serve`'s `Clock`, `tick
//! --at`).

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};

use pgvault_core::engine::{Error, Result, Vault};
use pgvault_core::model::code::ErrorCode;
use pgvault_core::model::drill::{DrillHistory, RestoreDrillSettings, drill_due, next_drill_time};
use pgvault_core::model::duration::IsoDuration;
use pgvault_core::model::instance::{BackupInstanceRequest, PROTECTION_CONFIGURED};
use pgvault_core::model::job::{Job, JobFilter, JobStatus, Operation};
use pgvault_core::model::resource;
use pgvault_core::model::retention::schedule_trigger;
use pgvault_core::model::schedule::Schedule;

use crate::alerts::{AlertEvent, AlertKind};
use crate::drill::DueDrill;
use crate::dropin::{ReadyScript, RunOptions, ScriptsDir, run_script_file};
use crate::retention::{GcMode, VaultSweep};
use crate::scheduler::ScheduledWork;
use crate::scheduler::due_backup;
use crate::service::Pgvault;

/// The longest a scan of the vaults is used before it is read again.
pub const SCAN_MAX_AGE: TimeDelta = TimeDelta::hours(1);
/// How long after a scan that failed (a vault unreadable) the agenda asks to be turned again.
pub const RETRY_SCAN_AFTER: TimeDelta = TimeDelta::minutes(1);

/// One piece of due work.
#[derive(Debug, Clone)]
pub enum Work {
    Backup(ScheduledWork),
    Drill(DueDrill),
    /// The retention sweep of every vault, then the job history pruned of finished jobs
    /// older than this.
    Sweep(IsoDuration),
    Script(ReadyScript, Box<RunOptions>),
    /// Alert notices due: send them (see [`crate::alerts::deliver_due`]).
    DeliverAlerts,
}

impl Work {
    /// Two pieces of work with the same key never run at once.
    pub fn key(&self) -> String {
        match self {
            Work::Backup(w) => format!("backup/{}/{}", w.vault, w.instance),
            Work::Drill(d) => format!("drill/{}/{}", d.vault, d.instance),
            Work::Sweep(_) => SWEEP_KEY.to_owned(),
            Work::Script(s, _) => format!("script/{}", s.path.display()),
            Work::DeliverAlerts => ALERTS_KEY.to_owned(),
        }
    }
}

/// The key of [`Work::Sweep`].
pub const SWEEP_KEY: &str = "sweep";
/// The key of [`Work::DeliverAlerts`].
pub const ALERTS_KEY: &str = "alerts";
/// How long after a scheduled occurrence a backup may still be missing before it is
/// overdue (`serve --overdue-grace`).
pub const DEFAULT_OVERDUE_GRACE: TimeDelta = TimeDelta::hours(2);

/// One turn's answer.
#[derive(Debug, Default)]
pub struct Turn {
    /// What is due now: backups, then drills, then the sweep, then scripts.
    pub due: Vec<Work>,
    /// When something falls due next (a schedule occurrence, a drill, the sweep, a settling
    /// script, a retry of a failed scan).
    pub wake: Option<DateTime<Utc>>,
    /// Why part of the vaults could not be read this turn (the rest is in `due`).
    pub problems: Vec<Error>,
}

/// What one scan read about one protected instance.
#[derive(Debug, Clone)]
struct Scanned {
    vault: String,
    instance: String,
    /// Its policy's schedule, if the policy has one.
    schedule: Option<Schedule>,
    /// Its policy's drill settings, and whether it has a recovery point to drill.
    drill: Option<(RestoreDrillSettings, bool)>,
}

#[derive(Debug)]
struct Scan {
    at: DateTime<Utc>,
    instances: Arc<Vec<Scanned>>,
}

/// The sweep's timer.
#[derive(Debug, Clone)]
struct Sweeps {
    every: TimeDelta,
    keep_job_history: IsoDuration,
    next: Option<DateTime<Utc>>,
}

/// What is due, from one cached scan; see the module documentation.
#[derive(Debug, Default)]
pub struct Agenda {
    scan: Option<Scan>,
    scans: usize,
    sweeps: Option<Sweeps>,
    scripts: Option<(ScriptsDir, RunOptions)>,
    first_script_scan: bool,
    /// Alerts: overdue backups checked with this grace, and notices delivered when due.
    alerts: Option<TimeDelta>,
}

impl Agenda {
    /// Backups and drills only.
    pub fn new() -> Self {
        Agenda::default()
    }

    /// Also the retention sweep with history pruning (finished jobs older than
    /// `keep_job_history`): due at the first turn, then every `every`.
    pub fn sweeping(mut self, every: TimeDelta, keep_job_history: IsoDuration) -> Self {
        self.sweeps = Some(Sweeps {
            every,
            keep_job_history,
            next: None,
        });
        self
    }

    /// Also the drop-in scripts of `dir`, run with `options`. The first turn scans the folder
    /// as at startup (a file untouched for the settle time is ready at once).
    pub fn with_scripts(mut self, dir: ScriptsDir, options: RunOptions) -> Self {
        self.scripts = Some((dir, options));
        self.first_script_scan = true;
        self
    }

    /// Also alerts: a backup overdue by more than `grace` after its schedule's occurrence
    /// raises its alert, and notices due are delivered ([`Work::DeliverAlerts`]).
    pub fn alerting(mut self, grace: TimeDelta) -> Self {
        self.alerts = Some(grace);
        self
    }

    /// Forgets the scan: the next turn reads the vaults again. Called when a job finished, a
    /// file event arrived, or (the REST API) a vault, policy or instance was changed.
    pub fn invalidate(&mut self) {
        self.scan = None;
    }

    /// How many scans of the vaults this agenda has made (each lists the vaults, every
    /// vault's instances and their policies once).
    pub fn scans(&self) -> usize {
        self.scans
    }

    /// What is due at `now`, and when to look again.
    pub async fn turn(&mut self, svc: &Pgvault, now: DateTime<Utc>) -> Turn {
        let mut turn = Turn::default();
        let wake = |turn: &mut Turn, t: DateTime<Utc>| {
            turn.wake = Some(turn.wake.map_or(t, |w: DateTime<Utc>| w.min(t)));
        };
        match self.instances(svc, now).await {
            Ok(instances) => {
                for scanned in instances.iter() {
                    if let Err(e) = self.instance_turn(svc, scanned, now, &mut turn) {
                        // One instance's history that cannot be read does not stop the others.
                        tracing::error!(vault = %scanned.vault, instance = %scanned.instance, code = %e.code, "{}", e.message);
                    }
                }
            }
            Err(e) => {
                tracing::error!(code = %e.code, "cannot read the vaults' schedules: {}", e.message);
                turn.problems.push(e);
                wake(&mut turn, now + RETRY_SCAN_AFTER);
            }
        }
        // Backups before drills: a drill due after a number of backups counts the ones due
        // now only once they ran, at a later turn.
        turn.due.sort_by_key(|w| matches!(w, Work::Drill(_)));
        if self.alerts.is_some() {
            match svc.next_alert_delivery() {
                Ok(Some(t)) if t <= now => turn.due.push(Work::DeliverAlerts),
                Ok(Some(t)) => wake(&mut turn, t),
                Ok(None) => {}
                Err(e) => tracing::error!(code = %e.code, "alert notices: {}", e.message),
            }
        }
        if let Some(sweeps) = &mut self.sweeps {
            if sweeps.next.is_none_or(|next| now >= next) {
                turn.due.push(Work::Sweep(sweeps.keep_job_history));
                sweeps.next = Some(now + sweeps.every);
            }
            if let Some(next) = sweeps.next {
                wake(&mut turn, next);
            }
        }
        if let Some((dir, options)) = &mut self.scripts {
            let mut ready = if std::mem::take(&mut self.first_script_scan) {
                dir.scan_at_startup(now, std::time::SystemTime::now())
            } else {
                dir.scan(now)
            };
            match dir.recurring_due(svc, now) {
                Ok(recurring) => ready.extend(recurring),
                Err(e) => tracing::error!(code = %e.code, "recurring scripts: {}", e.message),
            }
            turn.due.extend(
                ready
                    .into_iter()
                    .map(|s| Work::Script(s, Box::new(options.clone()))),
            );
            if let Some(t) = dir.next_wakeup(now) {
                wake(&mut turn, t);
            }
        }
        turn
    }

    /// The protected instances as the cached scan has them, scanning first if there is no
    /// scan or it is older than [`SCAN_MAX_AGE`].
    async fn instances(&mut self, svc: &Pgvault, now: DateTime<Utc>) -> Result<Arc<Vec<Scanned>>> {
        if let Some(scan) = &self.scan
            && now >= scan.at
            && now - scan.at < SCAN_MAX_AGE
        {
            return Ok(scan.instances.clone());
        }
        self.scan = None;
        self.scans += 1;
        let instances = Arc::new(scan(svc).await?);
        self.scan = Some(Scan {
            at: now,
            instances: instances.clone(),
        });
        Ok(instances)
    }

    /// Adds what `scanned` has due at `now` to `turn`, and when it has something next.
    fn instance_turn(
        &self,
        svc: &Pgvault,
        scanned: &Scanned,
        now: DateTime<Utc>,
        turn: &mut Turn,
    ) -> Result<()> {
        let mut wake = |t: DateTime<Utc>| {
            turn.wake = Some(turn.wake.map_or(t, |w| w.min(t)));
        };
        let latest = |operation: Operation| -> Result<Option<DateTime<Utc>>> {
            let mut filter = JobFilter::default()
                .vault(&scanned.vault)
                .instance(&scanned.instance)
                .operation(operation);
            filter.limit = Some(1);
            Ok(svc.jobs(&filter)?.first().map(|job| job.state.start()))
        };
        if let Some(schedule) = &scanned.schedule {
            let protected_since = latest(Operation::ConfigureBackup)?;
            let last_started = latest(Operation::ScheduledBackup)?;
            if let Some(due) = due_backup(schedule, protected_since, last_started, now) {
                turn.due.push(Work::Backup(ScheduledWork {
                    vault: scanned.vault.clone(),
                    instance: scanned.instance.clone(),
                    due,
                }));
            }
            if let Some(t) = schedule.next_after(now) {
                wake(t);
            }
            if let Some(grace) = self.alerts {
                let last_success = [Operation::OnDemandBackup, Operation::ScheduledBackup]
                    .into_iter()
                    .map(|operation| {
                        let mut filter = JobFilter::default()
                            .vault(&scanned.vault)
                            .instance(&scanned.instance)
                            .operation(operation)
                            .status(JobStatus::Completed);
                        filter.limit = Some(1);
                        Ok(svc.jobs(&filter)?.first().map(|job| job.state.start()))
                    })
                    .collect::<Result<Vec<_>>>()?
                    .into_iter()
                    .flatten()
                    .max();
                let check = overdue(schedule, protected_since, last_success, grace, now);
                // A backup still running is late, not missing: its end decides.
                let running = || -> Result<bool> {
                    let mut filter = JobFilter::default()
                        .vault(&scanned.vault)
                        .instance(&scanned.instance)
                        .status(JobStatus::InProgress);
                    filter.limit = Some(1);
                    Ok(!svc.jobs(&filter)?.is_empty())
                };
                if let Some(missed) = check.missed
                    && !running()?
                {
                    svc.backup_overdue(&scanned.vault, &scanned.instance, missed, grace, now)?;
                }
                if let Some(t) = check.next_check {
                    wake(t);
                }
            }
        }
        if let Some((settings, has_recovery_point)) = &scanned.drill {
            let last_drill = latest(Operation::RestoreDrill)?;
            let mut backups_since = 0;
            for operation in [Operation::OnDemandBackup, Operation::ScheduledBackup] {
                let mut completed = JobFilter::default()
                    .vault(&scanned.vault)
                    .instance(&scanned.instance)
                    .operation(operation)
                    .status(JobStatus::Completed);
                completed.started_after = last_drill;
                backups_since += svc.jobs(&completed)?.len() as u32;
            }
            let history = DrillHistory {
                last_drill,
                backups_since,
                has_recovery_point: *has_recovery_point,
            };
            if let Some(reason) = drill_due(settings.cadence(), &history, now) {
                turn.due.push(Work::Drill(DueDrill {
                    vault: scanned.vault.clone(),
                    instance: scanned.instance.clone(),
                    reason,
                    target: settings.target().clone(),
                }));
            }
            // Drills after a number of backups fall due when a backup finishes, which wakes
            // the host anyway.
            if let Some(t) = next_drill_time(settings.cadence(), &history)
                && t > now
            {
                wake(t);
            }
        }
        Ok(())
    }
}

/// Whether an instance's backup is overdue at `now`, and when to look again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverdueCheck {
    /// The schedule occurrence no successful backup followed within the grace.
    pub missed: Option<DateTime<Utc>>,
    /// When the next occurrence's grace ends (the next moment a backup can become overdue).
    pub next_check: Option<DateTime<Utc>>,
}

/// Pure: the latest occurrence of `schedule` whose grace has passed at `now` is missed when
/// the instance was protected before it and no successful backup started at or after it.
pub fn overdue(
    schedule: &Schedule,
    protected_since: Option<DateTime<Utc>>,
    last_success: Option<DateTime<Utc>>,
    grace: TimeDelta,
    now: DateTime<Utc>,
) -> OverdueCheck {
    let judged = now - grace;
    let missed = schedule.latest_at_or_before(judged).filter(|occurrence| {
        protected_since.is_some_and(|p| p <= *occurrence)
            && last_success.is_none_or(|s| s < *occurrence)
    });
    OverdueCheck {
        missed,
        next_check: schedule.next_after(judged).map(|t| t + grace),
    }
}

/// One scan: every vault's protected instances with their policy's schedule and drill
/// settings, each policy read once per vault. A vault that cannot be opened (its disk gone,
/// an encrypted vault whose key this host lacks) or a policy that cannot be read or has an
/// invalid schedule is logged and skipped, so it does not stop the others' backups.
async fn scan(svc: &Pgvault) -> Result<Vec<Scanned>> {
    let mut out = Vec::new();
    for vault_name in svc.vault_names()? {
        let vault = match svc.vault(&vault_name).await {
            Ok(vault) => {
                if let Err(e) = svc.resolve_alerts(
                    &[AlertKind::VaultUnavailable],
                    Some(&vault_name),
                    None,
                    svc.now(),
                ) {
                    tracing::error!(vault = %vault_name, code = %e.code, "{}", e.message);
                }
                vault
            }
            Err(e) => {
                tracing::error!(vault = %vault_name, code = %e.code, "the vault cannot be opened, so none of its scheduled backups can run: {}", e.message);
                let event = AlertEvent::new(
                    AlertKind::VaultUnavailable,
                    format!(
                        "Vault `{vault_name}` cannot be opened, so none of its scheduled backups can run: {} ({})",
                        e.message, e.code
                    ),
                    svc.now(),
                )
                .on(&vault_name, None);
                if let Err(e) = svc.raise_alert(&event) {
                    tracing::error!(vault = %vault_name, code = %e.code, "{}", e.message);
                }
                continue;
            }
        };
        let mut policies: HashMap<String, Option<Policy>> = HashMap::new();
        for instance in vault.list_instances().await? {
            if instance.properties.current_protection_state.as_deref()
                != Some(PROTECTION_CONFIGURED)
            {
                continue;
            }
            let policy_name =
                resource::last_segment(&instance.properties.policy_info.policy_id).to_owned();
            if !policies.contains_key(&policy_name) {
                let policy = read_policy(&vault, &policy_name).await;
                if let Err(e) = &policy {
                    tracing::error!(vault = %vault_name, policy = %policy_name, code = %e.code, "{}", e.message);
                }
                policies.insert(policy_name.clone(), policy.ok());
            }
            let Some(policy) = &policies[&policy_name] else {
                continue;
            };
            out.push(scanned(&vault, &instance, policy).await);
        }
    }
    Ok(out)
}

/// What the agenda needs of a policy.
#[derive(Debug, Clone)]
struct Policy {
    schedule: Option<Schedule>,
    drill: Option<RestoreDrillSettings>,
}

async fn read_policy(vault: &Vault, name: &str) -> Result<Policy> {
    let policy = vault.policy(name).await?;
    let schedule = match schedule_trigger(&policy) {
        None => None,
        Some(trigger) => Some(
            Schedule::parse(
                &trigger.schedule.repeating_time_intervals,
                trigger.schedule.time_zone.as_deref(),
            )
            .map_err(|errors| {
                Error::new(
                    ErrorCode::UserErrorInvalidPolicy,
                    format!("policy `{name}` has an invalid schedule: {}", errors[0].1),
                )
            })?,
        ),
    };
    Ok(Policy {
        schedule,
        drill: policy.pgvault_restore_drill,
    })
}

async fn scanned(vault: &Vault, instance: &BackupInstanceRequest, policy: &Policy) -> Scanned {
    let drill = match &policy.drill {
        None => None,
        Some(settings) => match vault.latest_recovery_point(&instance.name).await {
            Ok(point) => Some((settings.clone(), point.is_some())),
            Err(e) => {
                tracing::error!(vault = %vault.name(), instance = %instance.name, code = %e.code, "{}", e.message);
                None
            }
        },
    };
    Scanned {
        vault: vault.name().to_owned(),
        instance: instance.name.clone(),
        schedule: policy.schedule.clone(),
        drill,
    }
}

/// What one `tick` did with one piece of due work.
#[derive(Debug)]
pub enum Ticked {
    /// A scheduled backup or a drill: its job, or why it could not start.
    Job { work: Work, job: Result<Job> },
    /// The sweep: each vault's outcome, and how many finished jobs were pruned (or why the
    /// history could not be pruned).
    Sweep {
        vaults: Result<Vec<VaultSweep>>,
        pruned: Result<usize>,
    },
    /// A drop-in script's run (its job), or why the job history could not record it.
    Script { work: Work, job: Result<Job> },
    /// Alert notices sent (or why the history could not be read).
    Alerts(Result<crate::alerts::Delivered>),
}

/// `pgvault tick`: one turn of the agenda at `now`, everything due run one after another in
/// the turn's order (backups, drills, the sweep with history pruning, scripts). Fails when
/// the vaults cannot be read (the registry, or a vault's instances), as `tick` always did;
/// nothing is run then.
pub async fn tick(
    svc: &Arc<Pgvault>,
    agenda: &mut Agenda,
    now: DateTime<Utc>,
) -> Result<Vec<Ticked>> {
    let turn = agenda.turn(svc, now).await;
    if let Some(problem) = turn.problems.into_iter().next() {
        return Err(problem);
    }
    let (backups, mut rest): (Vec<Work>, Vec<Work>) = turn
        .due
        .into_iter()
        .partition(|w| matches!(w, Work::Backup(_)));
    let mut out = Vec::new();
    for work in backups {
        out.push(run_once(svc, work, now).await);
    }
    // A drill due after a number of backups counts the ones just taken: the drills are asked
    // again once they ran, as `serve`'s next turn does when their jobs finish.
    if !out.is_empty() {
        agenda.invalidate();
        let again = agenda.turn(svc, now).await;
        rest.retain(|w| !matches!(w, Work::Drill(_)));
        let (drills, more): (Vec<Work>, Vec<Work>) = again
            .due
            .into_iter()
            .filter(|w| !matches!(w, Work::Backup(_)))
            .partition(|w| matches!(w, Work::Drill(_)));
        rest.splice(0..0, drills);
        rest.extend(more);
    }
    for work in rest {
        out.push(run_once(svc, work, now).await);
    }
    Ok(out)
}

/// Runs one piece of work at `now`; what `tick` does with each (and `serve` through its own
/// tasks).
async fn run_once(svc: &Arc<Pgvault>, work: Work, now: DateTime<Utc>) -> Ticked {
    match &work {
        Work::Backup(w) => {
            let job = svc.run_scheduled(w, now).await.map(|(job, _)| job);
            Ticked::Job { work, job }
        }
        Work::Drill(d) => {
            let job = svc.run_drill(d, now).await.map(|(job, _)| job);
            Ticked::Job { work, job }
        }
        Work::Sweep(keep) => {
            let pruned = svc.prune_history(now, keep);
            let vaults = svc.retention_sweep_all(now, false, GcMode::WhenDue).await;
            Ticked::Sweep { vaults, pruned }
        }
        Work::Script(script, options) => {
            let job = run_script_file(svc.clone(), script, options, now)
                .await
                .map(|ran| ran.job);
            Ticked::Script { work, job }
        }
        Work::DeliverAlerts => Ticked::Alerts(crate::alerts::deliver_due(svc, now).await),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// One row per case: protected since, last successful backup start, now; the occurrence
    /// found missed, and when to look next. Hourly at :00, a grace of 30 minutes.
    #[test]
    fn a_backup_is_overdue_once_its_occurrence_and_grace_passed_without_success() {
        let hourly = Schedule::parse(&["R/2030-01-01T00:00:00+00:00/PT1H"], Some("UTC")).unwrap();
        let grace = TimeDelta::minutes(30);
        type Case<'a> = (&'a str, Option<&'a str>, &'a str, Option<&'a str>, &'a str);
        let cases: &[Case] = &[
            // Within the grace of 01:00: not yet.
            ("00:30", None, "01:29", None, "01:30"),
            // At the end of the grace: missed.
            ("00:30", None, "01:30", Some("01:00"), "02:30"),
            // A success at the occurrence (or after) is enough.
            ("00:30", Some("01:00"), "01:45", None, "02:30"),
            // A success before the occurrence is not.
            ("00:30", Some("00:45"), "01:45", Some("01:00"), "02:30"),
            // Protected after the occurrence: that one was never due.
            ("01:10", None, "01:45", None, "02:30"),
            // The latest occurrence past its grace is the one named.
            ("00:30", Some("01:00"), "03:31", Some("03:00"), "04:30"),
        ];
        for (protected, success, now, missed, next) in cases {
            let at = |hm: &str| t(&format!("2030-01-01T{hm}:00Z"));
            let check = overdue(
                &hourly,
                Some(at(protected)),
                success.map(at),
                grace,
                at(now),
            );
            assert_eq!(
                check,
                OverdueCheck {
                    missed: missed.map(at),
                    next_check: Some(at(next)),
                },
                "protected {protected}, success {success:?}, now {now}"
            );
        }
    }
}
