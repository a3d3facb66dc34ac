//! `pgvault serve`: the long-running host, one closed event loop.
//!
//! Each turn of the loop asks the agenda ([`crate::agenda`], which `tick` asks too) what is
//! due at the clock's time (scheduled backups, the restore drills policies ask for, the daily
//! retention sweep with history pruning, dropped scripts), starts
//! what the concurrency bound allows, then sleeps until the earliest of: the next schedule
//! occurrence (from the policies, with their time zones), the next drill, the next sweep, a
//! script becoming stable, or a retry, unless an event
//! (a script dropped, a job finished, shutdown) wakes it first; an event and a finished job
//! also make the agenda read the vaults again. The loop's state is one struct, `Host`,
//! owned by the loop (mini-redis's `Listener`). Nothing polls at a fixed
//! interval; a sleep is capped at [`MAX_SLEEP`] only so that a wall-clock jump (a suspended
//! laptop, an NTP step) is noticed within the hour.
//!
//! Work runs as tasks on the runtime. At most one backup per instance runs (the service also
//! refuses a second, `UserErrorMaxConcurrentOperationLimitReached`), and at most
//! `max_concurrent_jobs` tasks of any kind. The sweep runs alone: it starts when nothing else
//! runs, and nothing starts beside it, because its garbage collection needs the vault's
//! exclusive lock (a long collection can therefore make a scheduled backup late; the job says
//! so). On shutdown the loop takes no new work, lets
//! running tasks finish for the grace period, then drops them: each operation's job is then
//! finished as `Cancelled` by its `JobRun` (see `job_run`), `pg_dump` is killed
//! with its process group, and a backup's recovery point, whose manifest is written last,
//! never appears.
//!
//! Alerts ride the same loop: each turn the agenda checks for overdue backups (raising their
//! alert) and for alert notices due, which run as work like any other
//! ([`Work::DeliverAlerts`]); the next overdue check and the next retry of a notice are
//! wake-ups like a schedule's occurrence.
//!
//! Time comes from a [`Clock`], so the tests run the loop on tokio's paused clock and watch
//! hours of schedules pass in milliseconds.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use pgvault_core::engine::Result;
use pgvault_core::model::duration::IsoDuration;
use pgvault_core::model::job::JobStatus;

use crate::agenda::{Agenda, DEFAULT_OVERDUE_GRACE, SWEEP_KEY, Work};
use crate::dropin::{RunOptions, ScriptsDir, run_script_file};
use crate::history::DEFAULT_JOB_HISTORY_RETENTION;
use crate::retention::GcMode;
use crate::script::Interrupt;
use crate::service::Pgvault;

/// The longest the loop sleeps without looking at the clock again.
pub const MAX_SLEEP: Duration = Duration::from_secs(3600);
/// How long work that could not start (the vault was locked, a policy unreadable) waits before
/// it is tried again.
pub const RETRY_AFTER: TimeDelta = TimeDelta::minutes(1);
/// After the shutdown grace, how long a told-to-stop script gets to record its cancellation.
pub const SCRIPT_STOP_GRACE: Duration = Duration::from_secs(5);

pub use crate::clock::{Clock, SystemClock, TokioClock};

/// What reaches the loop from outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Something changed in the scripts folder.
    ScriptsChanged,
    /// SIGTERM or Ctrl-C: stop taking work, finish or cancel what runs, return.
    Shutdown,
}

#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// At most this many jobs (backups, sweeps, scripts) at once.
    pub max_concurrent_jobs: usize,
    /// On shutdown, how long running jobs may take before they are cancelled.
    pub shutdown_grace: Duration,
    /// The retention sweep runs at start and then this often.
    pub sweep_every: TimeDelta,
    /// The watched scripts folder, if any.
    pub scripts: Option<ScriptsOptions>,
    /// Finished jobs older than this are pruned at each sweep.
    pub keep_job_history: IsoDuration,
    /// A scheduled backup still missing this long after its occurrence raises the overdue
    /// alert (see [`crate::alerts`]).
    pub overdue_grace: TimeDelta,
}

/// The drop-in scripts folder the host watches (see [`crate::dropin`]).
#[derive(Debug, Clone)]
pub struct ScriptsOptions {
    pub dir: std::path::PathBuf,
    /// How long a dropped file must stay unchanged before it runs.
    pub settle: Duration,
    /// What drop-in scripts may do: `--allow-destructive-scripts`, `--script-restore-dir`,
    /// `--script-restore-server`, `--script-env`.
    pub grants: crate::script::sandbox::Grants,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            max_concurrent_jobs: 4,
            shutdown_grace: Duration::from_secs(60),
            sweep_every: TimeDelta::days(1),
            scripts: None,
            keep_job_history: DEFAULT_JOB_HISTORY_RETENTION,
            overdue_grace: DEFAULT_OVERDUE_GRACE,
        }
    }
}

/// How a task ended, for the log and for retries.
#[derive(Debug)]
enum Done {
    /// Ran (its job records how it went).
    Ran,
    /// Could not start; try again after [`RETRY_AFTER`].
    Refused(String),
}

/// What the host did while it ran, for its exit and the tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ServeSummary {
    pub started: usize,
    /// Tasks dropped at shutdown after the grace period.
    pub cancelled: usize,
    /// Turns of the loop.
    pub turns: usize,
    /// Scans of the vaults the agenda made (at most one a turn; fewer, as it keeps one until
    /// something changes).
    pub scans: usize,
}

/// Runs the host until [`Event::Shutdown`] arrives (or the event channel closes).
pub async fn serve(
    svc: Arc<Pgvault>,
    opts: ServeOptions,
    clock: Arc<dyn Clock>,
    mut events: mpsc::Receiver<Event>,
) -> Result<ServeSummary> {
    let mut host = Host::new(svc, opts, clock);
    tracing::info!(
        max_concurrent_jobs = host.opts.max_concurrent_jobs,
        scripts_dir = ?host.opts.scripts.as_ref().map(|s| &s.dir),
        "pgvault host started"
    );
    loop {
        let wake = host.turn().await;
        let sleep = wake
            .map(|w| (w - host.clock.now()).to_std().unwrap_or(Duration::ZERO))
            .unwrap_or(MAX_SLEEP)
            .min(MAX_SLEEP);
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            event = events.recv() => match event {
                Some(Event::ScriptsChanged) => host.agenda.invalidate(),
                Some(Event::Shutdown) | None => break,
            },
            Some(joined) = host.running.join_next_with_id(), if !host.running.is_empty() => {
                host.finished(joined);
            }
        }
    }
    host.shut_down().await;
    tracing::info!("pgvault host stopped");
    Ok(host.summary)
}

/// The host's state, owned by its loop: the agenda, the work waiting for a free slot, the
/// running tasks (each with the key of its work), and the work to retry later.
struct Host {
    svc: Arc<Pgvault>,
    opts: ServeOptions,
    clock: Arc<dyn Clock>,
    agenda: Agenda,
    queue: VecDeque<Work>,
    running: JoinSet<(String, Done)>,
    /// Each running task's work key, and its handle to cancel it.
    tasks: HashMap<tokio::task::Id, (String, tokio::task::AbortHandle)>,
    /// Work that could not start, and when it may be tried again.
    retry: HashMap<String, DateTime<Utc>>,
    /// Raised at the end of the shutdown grace: running scripts stop at their next operation.
    stop_scripts: Interrupt,
    summary: ServeSummary,
}

impl Host {
    fn new(svc: Arc<Pgvault>, opts: ServeOptions, clock: Arc<dyn Clock>) -> Self {
        let stop_scripts = Interrupt::new();
        let mut agenda = Agenda::new()
            .sweeping(opts.sweep_every, opts.keep_job_history)
            .alerting(opts.overdue_grace);
        if let Some(s) = &opts.scripts {
            let mut options = RunOptions::sandboxed(s.grants.clone());
            options.stop = Some(stop_scripts.clone());
            agenda = agenda.with_scripts(ScriptsDir::new(s.dir.clone(), s.settle), options);
        }
        Host {
            svc,
            opts,
            clock,
            agenda,
            queue: VecDeque::new(),
            running: JoinSet::new(),
            tasks: HashMap::new(),
            retry: HashMap::new(),
            stop_scripts,
            summary: ServeSummary::default(),
        }
    }

    fn is_busy(&self, key: &str) -> bool {
        self.tasks.values().any(|(k, _)| k == key)
    }

    /// One turn: cleans leftovers, queues what the agenda says is due, starts what the bound
    /// allows; returns when to turn again.
    async fn turn(&mut self) -> Option<DateTime<Utc>> {
        let now = self.clock.now();
        self.retry.retain(|_, at| *at > now);
        // What killed restores and drills left behind (a drop that failed is retried here).
        self.svc.clean_leftovers().await;

        // What is due, from the agenda (one scan of the vaults, kept until a job finishes or
        // an event arrives).
        let turn = self.agenda.turn(&self.svc, now).await;
        self.summary.turns += 1;
        self.summary.scans = self.agenda.scans();
        for work in turn.due {
            let key = work.key();
            if !self.is_busy(&key)
                && !self.retry.contains_key(&key)
                && !self.queue.iter().any(|q| q.key() == key)
            {
                self.queue.push_back(work);
            }
        }
        self.start_what_fits();

        // The next thing to do: the agenda's, or a retry.
        let mut wake = turn.wake;
        for t in self.retry.values().copied() {
            wake = Some(wake.map_or(t, |w| w.min(t)));
        }
        wake
    }

    /// Starts queued work while the bound allows. The sweep runs alone: its garbage
    /// collection needs the vault to itself, and a backup started beside it would find the
    /// vault locked.
    fn start_what_fits(&mut self) {
        while self.running.len() < self.opts.max_concurrent_jobs.max(1) {
            let sweeping = self.is_busy(SWEEP_KEY);
            let idle = self.tasks.is_empty();
            let Some(at) = self.queue.iter().position(|w| match w {
                Work::Sweep(_) => idle,
                // Sending notices touches no vault: it does not wait for the sweep.
                Work::DeliverAlerts => true,
                _ => !sweeping,
            }) else {
                break;
            };
            let work = self.queue.remove(at).expect("the position is in the queue");
            let key = work.key();
            self.summary.started += 1;
            let (svc, clock) = (self.svc.clone(), self.clock.clone());
            let task_key = key.clone();
            let task = self.running.spawn(async move {
                let done = run(&svc, &work, clock.now()).await;
                (task_key, done)
            });
            self.tasks.insert(task.id(), (key, task));
        }
    }

    /// A task ended: its work is free again (or retried later if it could not start), and
    /// the agenda reads the vaults again, since the job may have changed what is due (a
    /// backup taken, an instance a script protected or suspended).
    fn finished(&mut self, joined: Joined) {
        let now = self.clock.now();
        match joined {
            Ok((id, (key, done))) => {
                self.tasks.remove(&id);
                if let Done::Refused(why) = done {
                    tracing::warn!(work = %key, "could not start; trying again in a minute: {why}");
                    self.retry.insert(key, now + RETRY_AFTER);
                }
            }
            // A panic in one job is that job's failure, not the host's: its work is retried
            // later.
            Err(e) => {
                tracing::error!(error = %e, "a job's task ended abnormally");
                if let Some((key, _)) = self.tasks.remove(&e.id()) {
                    self.retry.insert(key, now + RETRY_AFTER);
                }
            }
        }
        self.agenda.invalidate();
    }

    /// Shutdown: no new work; running jobs get the grace period, then are cancelled.
    async fn shut_down(&mut self) {
        if !self.running.is_empty() {
            tracing::info!(
                running = self.running.len(),
                grace = ?self.opts.shutdown_grace,
                "shutting down: waiting for running jobs"
            );
        }
        let grace = tokio::time::sleep(self.opts.shutdown_grace);
        tokio::pin!(grace);
        let mut stopping = false;
        while !self.running.is_empty() {
            tokio::select! {
                _ = &mut grace => {
                    if stopping {
                        tracing::warn!(remaining = self.running.len(), "scripts did not stop in time: dropping them");
                        self.running.abort_all();
                        while self.running.join_next().await.is_some() {}
                        continue;
                    }
                    // Scripts are told to stop (their jobs end Cancelled and their files go
                    // to failed/) and get a moment for it; every other job is dropped now, its
                    // job finished as Cancelled by its `JobRun`.
                    stopping = true;
                    self.summary.cancelled = self.running.len();
                    tracing::warn!(cancelled = self.running.len(), "grace period over: cancelling running jobs");
                    self.stop_scripts.raise_because("the host is shutting down");
                    grace.as_mut().reset(tokio::time::Instant::now() + SCRIPT_STOP_GRACE);
                    for (key, handle) in self.tasks.values() {
                        if !key.starts_with("script/") {
                            handle.abort();
                        }
                    }
                }
                Some(joined) = self.running.join_next_with_id() => {
                    self.finished(joined);
                }
            }
        }
    }
}

async fn run(svc: &Arc<Pgvault>, work: &Work, now: DateTime<Utc>) -> Done {
    match work {
        Work::Backup(w) => {
            tracing::info!(vault = %w.vault, instance = %w.instance, due = %w.due.due, "scheduled backup starting");
            let ran = svc.run_scheduled(w, now).await;
            match ran {
                Ok((job, _)) => {
                    match job.status() {
                        JobStatus::Completed => {
                            tracing::info!(vault = %w.vault, instance = %w.instance, job = %job.id, "scheduled backup completed")
                        }
                        status => {
                            let error = job
                                .state
                                .error()
                                .map(|e| format!("{}: {}", e.code, e.message));
                            tracing::error!(vault = %w.vault, instance = %w.instance, job = %job.id, %status, error = error.as_deref().unwrap_or(""), "scheduled backup did not complete")
                        }
                    }
                    Done::Ran
                }
                Err(e) => Done::Refused(format!("{}: {}", e.code, e.message)),
            }
        }
        Work::Drill(d) => {
            tracing::info!(vault = %d.vault, instance = %d.instance, reason = %d.reason, "restore drill starting");
            match svc.run_drill(d, now).await {
                Ok((job, _)) => {
                    match job.state.error() {
                        None => {
                            tracing::info!(vault = %d.vault, instance = %d.instance, job = %job.id, status = %job.status(), "restore drill finished")
                        }
                        Some(e) => {
                            tracing::error!(vault = %d.vault, instance = %d.instance, job = %job.id, status = %job.status(), error = %format!("{}: {}", e.code, e.message), "restore drill did not pass")
                        }
                    }
                    Done::Ran
                }
                Err(e) => Done::Refused(format!("{}: {}", e.code, e.message)),
            }
        }
        Work::Script(script, options) => {
            match run_script_file(svc.clone(), script, options, now).await {
                Ok(ran) => {
                    tracing::info!(script = %script.path.display(), job = %ran.job.id, status = %ran.job.status(), moved_to = ?ran.moved_to, "script ran");
                    Done::Ran
                }
                Err(e) => Done::Refused(format!("{}: {}", e.code, e.message)),
            }
        }
        Work::DeliverAlerts => match crate::alerts::deliver_due(svc, now).await {
            Ok(d) => {
                if d.delivered + d.failed > 0 {
                    tracing::info!(delivered = d.delivered, failed = d.failed, next = ?d.next, "alert notices sent");
                }
                Done::Ran
            }
            Err(e) => Done::Refused(format!("{}: {}", e.code, e.message)),
        },
        Work::Sweep(keep) => {
            match svc.prune_history(now, keep) {
                Ok(0) => {}
                Ok(n) => tracing::info!(pruned = n, older_than = %keep, "job history pruned"),
                Err(e) => tracing::error!(code = %e.code, "pruning the job history: {}", e.message),
            }
            match svc.retention_sweep_all(now, false, GcMode::WhenDue).await {
                Ok(_) => Done::Ran,
                Err(e) => Done::Refused(format!("{}: {}", e.code, e.message)),
            }
        }
    }
}

type Joined = std::result::Result<(tokio::task::Id, (String, Done)), tokio::task::JoinError>;
