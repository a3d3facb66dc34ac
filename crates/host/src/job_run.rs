//! One job lifecycle for every operation: [`JobRun`].
//!
//! Every operation the host records as a job (backups, restores, drills, protection and its
//! state changes, the retention sweep and each of its archive moves and deletions,
//! rehydrations, user deletions, script runs) goes through the same steps, written once here
//! so that no operation can forget one:
//!
//! 1. The caller takes what the operation must hold ([`Held`]: shared or exclusive vault
//!    locks, the instance's backup lock, the vault's destructive-operation guard) with the
//!    helpers at the end of this module, then [`JobRun::start`] records the job `InProgress`
//!    and takes ownership of them.
//! 2. The operation runs under [`JobRun::drive`], which refreshes the job's byte counters and
//!    turns a panic inside the operation into an `InternalError`, and reports its steps as
//!    sub-tasks through [`JobRun::steps`].
//! 3. [`JobRun::finish`] records `Completed` or `Failed`, releases what the job held, and
//!    tells the alerts (`crate::alerts::job_finished`): a failed backup, restore or drill
//!    raises its incident, a completed one resolves it.
//!
//! Every other way out ends the job too: a [`JobRun`] dropped before `finish` (its future was
//! dropped: Ctrl-C in the REPL, the host's shutdown, a script's wall time running out around a
//! binding) finishes the job as `Cancelled`; one dropped while a panic unwinds finishes it as
//! `Failed` with `InternalError`. Either way the locks it held are released by their own
//! `Drop`, from a task (a vault lock's object is removed, an instance lock's generation
//! marked released, a lease ended), so the next operation finds the vault free.
//!
//! A job's times are on the job's clock: it starts at the time the caller gives (the wall
//! clock, or a scheduler's `--at`), and ends that much later than it took.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use pgvault_core::engine::backup::{Step, Steps};
use pgvault_core::engine::drill::{DrillStep, DrillSteps};
use pgvault_core::engine::restore::{RestoreStep, RestoreSteps};
use pgvault_core::engine::{Error, Result, Vault};
use pgvault_core::model::code::ErrorCode;
use pgvault_core::model::job::{Job, JobError, JobId, JobOutcome, NewJob, TaskId, TaskOutcome};
use pgvault_core::model::policy::DataStoreType;
use pgvault_core::store::VaultStore;
use pgvault_core::store::lease::DestructiveGuard;
use pgvault_core::store::lock::{InstanceLock, LockError, LockKind, VaultLock};

use crate::history::JobHistory;
use crate::service::{LOCK_WAIT_ENV, history_err};

/// How often a running job's byte counters are written to the history.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// What a job holds while it runs; released when the job ends, however it ends.
#[derive(Debug, Default)]
pub(crate) struct Held {
    locks: Vec<VaultLock>,
    instance: Option<InstanceLock>,
    guard: Option<DestructiveGuard>,
}

impl Held {
    /// Nothing held.
    pub(crate) fn nothing() -> Self {
        Held::default()
    }

    /// Also a vault lock.
    pub(crate) fn lock(mut self, lock: VaultLock) -> Self {
        self.locks.push(lock);
        self
    }

    /// Also the instance's backup lock.
    pub(crate) fn instance(mut self, lock: InstanceLock) -> Self {
        self.instance = Some(lock);
        self
    }

    /// Also the vault's destructive-operation guard.
    pub(crate) fn guard(mut self, guard: DestructiveGuard) -> Self {
        self.guard = Some(guard);
        self
    }

    /// Releases everything now (rather than from a task, as `Drop` does).
    pub(crate) async fn release(self) {
        release_all(self.locks).await;
        if let Some(lock) = self.instance
            && let Err(e) = lock.release().await
        {
            tracing::warn!(error = %e, "could not release the instance's backup lock; it goes stale when this process ends");
        }
        if let Some(guard) = self.guard {
            release_guard(guard).await;
        }
    }
}

/// A job being run: recorded `InProgress` by [`JobRun::start`], ended by
/// [`JobRun::finish`], or, if dropped before that, ended as `Cancelled` (or `Failed` with
/// `InternalError` during a panic). See the module documentation.
pub(crate) struct JobRun<'a> {
    history: &'a JobHistory,
    job: Job,
    began: Instant,
    held: Held,
    steps: JobSteps<'a>,
    armed: bool,
}

impl std::fmt::Debug for JobRun<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobRun").field("job", &self.job.id).finish()
    }
}

impl<'a> JobRun<'a> {
    /// Records `new` as an `InProgress` job holding `held`. When the history cannot record
    /// it, nothing ran: `held` is released and the error returned.
    pub(crate) async fn start(
        history: &'a JobHistory,
        new: &NewJob,
        held: Held,
    ) -> Result<JobRun<'a>> {
        let mut new = new.clone();
        if let Some(id) = claim_job_id() {
            new.id = id;
        }
        if let Some(who) = initiator() {
            new.extended_details
                .insert(INITIATED_BY_DETAIL.to_owned(), who);
        }
        let job = match history.start(&new) {
            Ok(job) => job,
            Err(e) => {
                held.release().await;
                return Err(history_err(e));
            }
        };
        let began = Instant::now();
        Ok(JobRun {
            history,
            steps: JobSteps::new(history, &job, began),
            job,
            began,
            held,
            armed: true,
        })
    }

    pub(crate) fn id(&self) -> JobId {
        self.job.id
    }

    /// Where the operation reports its steps (sub-tasks of the job).
    pub(crate) fn steps(&self) -> &JobSteps<'a> {
        &self.steps
    }

    /// The destructive-operation guard the job holds, if it holds one.
    pub(crate) fn guard(&self) -> Option<&DestructiveGuard> {
        self.held.guard.as_ref()
    }

    /// Makes the job hold `locks` too (taken once the job had started).
    pub(crate) fn hold_locks(&mut self, locks: Vec<VaultLock>) {
        self.held.locks.extend(locks);
    }

    /// Now on the job's clock: its start plus the time elapsed since.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.job.state.start()
            + chrono::TimeDelta::from_std(self.began.elapsed()).unwrap_or_default()
    }

    /// Adds details to the job as it runs.
    pub(crate) fn set_details(&self, details: &[(String, String)]) -> Result<()> {
        if details.is_empty() {
            return Ok(());
        }
        self.history
            .set_details(self.job.id, details)
            .map_err(history_err)
    }

    /// Stores what a script printed.
    pub(crate) fn set_script_output(&self, output: &str) -> Result<()> {
        self.history
            .set_script_output(self.job.id, output)
            .map_err(history_err)
    }

    /// Drives `work`, refreshing the job's byte counters (`counters`: read, stored) every few
    /// seconds. A panic inside `work` ends it with an `InternalError`, so the job is finished
    /// as `Failed` (and its locks released) like any other failure, not left to unwinding.
    pub(crate) async fn drive<T>(
        &self,
        work: impl std::future::Future<Output = Result<T>>,
        counters: impl Fn() -> (u64, u64),
    ) -> Result<T> {
        let id = self.job.id;
        tokio::pin!(work);
        let mut work = std::future::poll_fn(move |cx| {
            let polled =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work.as_mut().poll(cx)));
            polled.unwrap_or_else(|panic| std::task::Poll::Ready(Err(panic_error(&*panic))))
        });
        let mut tick = tokio::time::interval(PROGRESS_EVERY);
        tick.tick().await;
        loop {
            tokio::select! {
                out = &mut work => return out,
                _ = tick.tick() => {
                    let (read, stored) = counters();
                    if let Err(e) = self.history.update_progress(id, read, stored) {
                        tracing::warn!(job = %id, error = %e, "could not record job progress");
                    }
                }
            }
        }
    }

    /// Ends the job as `Completed` (with the recovery point it made, if any) or `Failed`
    /// with the error's code and message, at [`Self::now`], and releases what it held.
    pub(crate) async fn finish(
        self,
        result: std::result::Result<Option<String>, &Error>,
        read: u64,
        stored: u64,
    ) -> Result<Job> {
        let outcome = match result {
            Ok(recovery_point_id) => JobOutcome::Completed { recovery_point_id },
            Err(e) => JobOutcome::Failed(JobError::new(e.code.clone(), e.message.clone())),
        };
        self.finish_as(&outcome, read, stored).await
    }

    /// [`Self::finish`] with an outcome of the caller's (a script stopped by the host is
    /// `Cancelled`).
    pub(crate) async fn finish_as(
        mut self,
        outcome: &JobOutcome,
        read: u64,
        stored: u64,
    ) -> Result<Job> {
        self.armed = false;
        let end = self.now();
        let recorded = self
            .history
            .finish(self.job.id, outcome, end, read, stored)
            .map_err(history_err);
        std::mem::take(&mut self.held).release().await;
        // A failed backup, restore or drill raises its alert; a completed one resolves it.
        if let Ok(job) = &recorded {
            crate::alerts::job_finished(self.history, job);
        }
        recorded
    }
}

impl Drop for JobRun<'_> {
    /// The job's operation stopped before finishing it: its future was dropped (Cancelled) or
    /// a panic is unwinding through it (Failed, `InternalError`). The held locks are released
    /// by their own `Drop` right after this.
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (read, stored) = match self.history.get(self.job.id) {
            Ok(Some(job)) => (job.bytes_read, job.bytes_stored),
            _ => (0, 0),
        };
        let outcome = if std::thread::panicking() {
            let e = panic_error(&"see the log for the panic's message");
            JobOutcome::Failed(JobError::new(e.code, e.message))
        } else {
            JobOutcome::Cancelled
        };
        match self
            .history
            .finish(self.job.id, &outcome, self.now(), read, stored)
        {
            Ok(_) => {
                tracing::warn!(job = %self.job.id, status = ?outcome.status(), "job ended by its operation stopping")
            }
            Err(e) => {
                tracing::error!(job = %self.job.id, error = %e, "could not record the job as cancelled")
            }
        }
    }
}

/// The error an operation that panicked ends with: an internal error that names the panic.
pub(crate) fn panic_error(panic: &(dyn std::any::Any + Send)) -> Error {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into());
    Error::new(
        ErrorCode::InternalError,
        format!(
            "pgvault stopped the operation on an internal error (a panic: {what}); nothing was \
             completed. This is a bug: please report it with this message"
        ),
    )
}

/// The job detail naming who asked for an operation made through the REST API or the console
/// (`api-token:<name>`).
pub const INITIATED_BY_DETAIL: &str = "InitiatedBy";

/// Who asks for the operations run inside [`on_behalf`], and the id the first job they start
/// takes.
#[derive(Debug, Clone)]
pub struct OnBehalf {
    /// Recorded in the job's details as [`INITIATED_BY_DETAIL`].
    pub initiator: String,
    /// The id the first job started inside the scope takes, so that a caller can name the
    /// job (an ARM operation's `jobId`) before the operation has started it.
    pub job_id: JobId,
}

struct Scope {
    who: OnBehalf,
    claimed: std::sync::atomic::AtomicBool,
}

tokio::task_local! {
    static ON_BEHALF: Scope;
}

/// Runs `operation` on behalf of `who`: every job it starts records `who.initiator`, and the
/// first one takes `who.job_id`. The REST API runs each request's operation in such a scope
/// rather than threading a caller through every operation's signature (as tracing does with
/// spans); outside one, jobs are recorded as before.
pub async fn on_behalf<F: std::future::Future>(who: OnBehalf, operation: F) -> F::Output {
    let scope = Scope {
        who,
        claimed: std::sync::atomic::AtomicBool::new(false),
    };
    ON_BEHALF.scope(scope, operation).await
}

/// The pre-assigned job id of the [`on_behalf`] scope, the first time it is asked for.
pub(crate) fn claim_job_id() -> Option<JobId> {
    ON_BEHALF
        .try_with(|s| {
            (!s.claimed.swap(true, std::sync::atomic::Ordering::SeqCst)).then_some(s.who.job_id)
        })
        .ok()
        .flatten()
}

fn initiator() -> Option<String> {
    ON_BEHALF.try_with(|s| s.who.initiator.clone()).ok()
}

/// Records an operation's steps as its job's sub-tasks (a backup's validate, dump, upload,
/// commit; a restore's validate, restore or write, apply owners, commit; a drill's restore,
/// compare, drop), at the job's clock: its start plus the time elapsed, as its end is.
pub(crate) struct JobSteps<'a> {
    history: &'a JobHistory,
    job: JobId,
    start: DateTime<Utc>,
    began: Instant,
    tasks: Mutex<HashMap<&'static str, TaskId>>,
}

impl<'a> JobSteps<'a> {
    fn new(history: &'a JobHistory, job: &Job, began: Instant) -> Self {
        JobSteps {
            history,
            job: job.id,
            start: job.state.start(),
            began,
            tasks: Default::default(),
        }
    }

    fn at(&self) -> DateTime<Utc> {
        self.start + chrono::TimeDelta::from_std(self.began.elapsed()).unwrap_or_default()
    }

    fn started_task(&self, name: &'static str) {
        match self.history.start_task(self.job, name, self.at()) {
            Ok(task) => {
                self.tasks
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(name, task);
            }
            Err(e) => tracing::warn!(job = %self.job, error = %e, "could not record a sub-task"),
        }
    }

    fn finished_task(&self, name: &'static str, result: std::result::Result<String, String>) {
        let task = self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        let Some(task) = task else { return };
        let (outcome, detail) = match &result {
            Ok(detail) => (TaskOutcome::Completed, detail),
            Err(detail) => (TaskOutcome::Failed, detail),
        };
        if let Err(e) = self
            .history
            .finish_task(self.job, task, outcome, Some(detail), self.at())
        {
            tracing::warn!(job = %self.job, error = %e, "could not record a sub-task's end");
        }
    }
}

impl Steps for JobSteps<'_> {
    fn started(&self, step: Step) {
        self.started_task(step.name());
    }

    fn finished(&self, step: Step, result: std::result::Result<String, String>) {
        self.finished_task(step.name(), result);
    }
}

impl DrillSteps for JobSteps<'_> {
    fn started(&self, step: DrillStep) {
        self.started_task(step.name());
    }

    fn finished(&self, step: DrillStep, result: std::result::Result<String, String>) {
        self.finished_task(step.name(), result);
    }
}

impl RestoreSteps for JobSteps<'_> {
    fn started(&self, step: RestoreStep) {
        self.started_task(step.name());
    }

    fn finished(&self, step: RestoreStep, result: std::result::Result<String, String>) {
        self.finished_task(step.name(), result);
    }
}

// ---- taking and releasing what a job holds ----

/// Takes a lock (`acquire`) on a task of its own, so that an operation dropped while it waits
/// for one leaves nothing behind. Taking a lock writes its object before it checks for
/// conflicts; a write already handed to a blocking thread finishes even when the future that
/// asked for it is dropped, and the object would then outlive the lock that never was,
/// holding the vault for as long as this process lives. On its own task the acquisition runs
/// to its end, and a lock nobody waits for any more is dropped there, which releases it.
/// `Err` only when the runtime is shutting down.
pub(crate) async fn shielded<T: Send + 'static>(
    acquire: impl std::future::Future<Output = T> + Send + 'static,
) -> Result<T> {
    match tokio::spawn(acquire).await {
        Ok(taken) => Ok(taken),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(Error::new(
            ErrorCode::OperationCancelled,
            "the lock could not be taken: pgvault is shutting down",
        )),
    }
}

/// [`VaultLock::acquire`], [`shielded`].
async fn acquire_lock(
    store: &VaultStore,
    kind: LockKind,
    operation: &str,
) -> Result<std::result::Result<VaultLock, LockError>> {
    let (store, operation) = (store.clone(), operation.to_owned());
    shielded(async move { VaultLock::acquire(&store, kind, &operation).await }).await
}

/// A lock of `kind` on `store`, retried while it is refused for `wait` (tokio's clock, so
/// tests run it on a paused one), then refused with how long it waited and how to wait longer.
pub(crate) async fn wait_for_lock(
    store: &VaultStore,
    kind: LockKind,
    operation: &str,
    wait: Duration,
) -> Result<VaultLock> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut pause = Duration::from_secs(1);
    let mut logged = false;
    loop {
        match acquire_lock(store, kind, operation).await? {
            Ok(lock) => return Ok(lock),
            Err(e @ LockError::Locked { .. }) => {
                let now = tokio::time::Instant::now();
                if now >= deadline {
                    let mut error = Error::from(e);
                    if !wait.is_zero() {
                        error.message = format!(
                            "{} (waited {} s for it; set {LOCK_WAIT_ENV} to wait longer)",
                            error.message,
                            wait.as_secs()
                        );
                    }
                    return Err(error);
                }
                if !logged {
                    tracing::warn!(operation, error = %e, wait_seconds = wait.as_secs(), "the vault is locked; waiting");
                    logged = true;
                }
                tokio::time::sleep(pause.min(deadline - now)).await;
                pause = (pause * 2).min(Duration::from_secs(15));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Locks every tier of the vault for `operation`; all or none.
pub(crate) async fn lock_tiers(
    vault: &Vault,
    kind: LockKind,
    operation: &str,
) -> Result<Vec<VaultLock>> {
    let mut locks = Vec::new();
    for tier in [DataStoreType::VaultStore, DataStoreType::ArchiveStore] {
        if let Some(store) = vault.tier_store(tier) {
            match acquire_lock(store, kind, operation)
                .await
                .and_then(|taken| Ok(taken?))
            {
                Ok(lock) => locks.push(lock),
                Err(e) => {
                    release_all(locks).await;
                    return Err(e);
                }
            }
        }
    }
    Ok(locks)
}

pub(crate) async fn release_all(locks: Vec<VaultLock>) {
    for lock in locks {
        release(lock).await;
    }
}

/// Takes the vault's destructive-operation guard (see `pgvault_core::store::lease`) for
/// `operation`: a retention sweep, garbage collection or a deletion. Refused at once, naming
/// the holder, while another process runs one on the same vault.
pub(crate) async fn guard_destructive(vault: &Vault, operation: &str) -> Result<DestructiveGuard> {
    let (store, name, operation) = (
        vault.store.clone(),
        vault.name().to_owned(),
        operation.to_owned(),
    );
    Ok(
        shielded(async move { DestructiveGuard::acquire(&store, &name, &operation).await })
            .await??,
    )
}

/// Releases the destructive-operation guard; one that cannot be released ends by itself (a
/// lease expires, a lock goes stale).
pub(crate) async fn release_guard(guard: DestructiveGuard) {
    if let Err(e) = guard.release().await {
        tracing::warn!(error = %e, "could not release the destructive-operation guard; it ends by itself");
    }
}

/// Releases a vault lock; one that cannot be removed goes stale when this process ends.
pub(crate) async fn release(lock: VaultLock) {
    if let Err(e) = lock.release().await {
        tracing::warn!(error = %e, "could not release a vault lock; it goes stale when this process ends");
    }
}
