//! Drop-in scripts: the watched scripts folder, and every script run as a recorded, contained
//! `ScriptRun` job.
//!
//! A `.rhai` file that appears in the scripts folder (`--scripts-dir`, by default
//! `$PGVAULT_HOME/scripts`) runs once and then moves to `done/` or `failed/` with a `.log`
//! beside it; one whose leading comment lines carry `// schedule: R/2025-01-01T02:00:00+00:00/P1D`
//! (and optionally `// time-zone: Europe/Berlin`) is a recurring runbook instead: it stays where
//! it is and runs at each occurrence, with the scheduled backups' rules (the latest occurrence
//! due runs once; occurrences missed while the host was down run once, late).
//!
//! # The API the host's event loop calls
//!
//! ```text
//! let mut scripts = ScriptsDir::new(scripts_dir, DEFAULT_SETTLE);
//! let options = RunOptions::sandboxed(grants);   // the host's flags; plus `stop` for shutdown
//! // At start (and in `pgvault tick`, which has no earlier scan to compare with):
//! let ready = scripts.scan_at_startup(now, SystemTime::now());
//! // On each file-system event and at scripts.next_wakeup(now):
//! let ready = scripts.scan(now);
//! // And at each schedule deadline (`next_wakeup` includes them):
//! let due = scripts.recurring_due(&svc, now)?;
//! for script in ready.iter().chain(&due) {
//!     let ran = run_script_file(svc.clone(), script, &options, now).await?;
//! }
//! ```
//!
//! - [`ScriptsDir`] finds scripts and decides when they are ready; it reads the folder but
//!   never the clock: every `now` is the caller's, so tests (and `tick --at`) pin time.
//! - [`run_script_file`] runs one [`ReadyScript`] as a `ScriptRun` job and never fails because
//!   the script did: an error, a limit, a timeout or a panic in a binding all end as a `Failed`
//!   job (codes [`SCRIPT_ERROR`], [`SCRIPT_LIMIT_EXCEEDED`], [`SCRIPT_TIMED_OUT`],
//!   [`SCRIPT_PANICKED`]); it returns `Err` only when the job history cannot record the run.
//! - [`RunOptions`] says how: drop-ins (and `pgvault run --sandbox`) get
//!   [`SandboxLimits::default`], no `import` of files, no `eval`, and only what the host's
//!   [`Grants`] allow, narrowed by the script's header: destructive calls (deletions, sweeps
//!   at another time, suspending or stopping protection) with `--allow-destructive-scripts`,
//!   restores into `--script-restore-dir` folders and onto `--script-restore-server` servers,
//!   `env(..)` of `--script-env` variables, and never a new vault (see
//!   [`crate::script::sandbox`]); [`RunOptions::operator`] is `pgvault run`'s (every call
//!   allowed, no limits but generous sizes, the output echoed to stdout, the file left where
//!   it is). Every run's output and error have secret values replaced by `<redacted>`.
//!
//! # Decisions
//!
//! **Stable, not complete.** Nothing tells a reader that a writer has finished a file, so a
//! file is ready once scans have seen it unchanged (size and modification time) for the
//! settle time. A slow writer that pauses longer than that can still be caught half-way:
//! writers should write `name.rhai.tmp` or `.name.rhai` and rename it, which this module
//! ignores until the rename.
//!
//! **One clock, the caller's.** Scans compare what they see with what earlier scans saw at
//! the caller's `now`; the file-system clock only enters through
//! [`ScriptsDir::scan_at_startup`], which is told the file-system time explicitly.
//!
//! **Wall time on the real clock, through the REPL's interrupt.** A script's deadline is
//! kept by a thread of its own that raises the run's [`Interrupt`], the mechanism the REPL's
//! Ctrl-C uses: a Rhai loop stops at its next operation, and an operation the script waits
//! for (a backup) is dropped. A thread rather than a tokio timer, because a host test that
//! pauses tokio's clock would otherwise see every script time out at once.
//!
//! **A recurring script's protection start.** `crate::scheduler::due_backup` needs the time
//! the schedule began to apply: it is when this process first saw the file (or, at startup,
//! the file's modification time), or the script's latest job if that is earlier, so that a
//! restart does not forget the runbook existed and an occurrence missed while the host was
//! down still runs (once, late).

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, TimeDelta, Utc};
use rhai::{Engine, EvalAltResult, ParseErrorType};

use pgvault_core::engine::Result;
use pgvault_core::model::job::{
    Job, JobError, JobOutcome, JobStatus, NewJob, SCRIPT_OUTPUT_LIMIT, ScheduledRun,
};
use pgvault_core::model::schedule::{Schedule, ScheduleField};

use crate::history::current_owner;
use crate::job_run::{Held, JobRun};
use crate::scheduler::{DueBackup, due_backup};
use crate::script::sandbox::{Grants, Redactor, parse_narrowing};
use crate::script::{Interrupt, ScriptContext, describe_error, new_engine};
use crate::service::{Pgvault, history_err};

/// How long a file must stay unchanged before it runs.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(2);

/// Where run-once scripts go after a completed run, under the scripts folder.
pub const DONE_DIR: &str = "done";
/// Where run-once scripts go after a failed or cancelled run, or with a bad header.
pub const FAILED_DIR: &str = "failed";

/// A script error: it threw, called a function wrongly, failed to parse, or could not be read.
pub const SCRIPT_ERROR: &str = "ScriptError";
/// The script ran longer than its wall time.
pub const SCRIPT_TIMED_OUT: &str = "ScriptTimedOut";
/// The script went over one of its [`SandboxLimits`] (operations, call depth, sizes).
pub const SCRIPT_LIMIT_EXCEEDED: &str = "ScriptLimitExceeded";
/// pgvault itself panicked while running the script (a bug in a binding).
pub const SCRIPT_PANICKED: &str = "ScriptPanicked";

/// A script file larger than this is not run: a runbook is a page or two, so this is a file
/// dropped in the wrong folder, and reading it would cost the host its memory.
pub const MAX_SCRIPT_BYTES: u64 = 4 * 1024 * 1024;

/// The leading comment lines are read for a header within this many bytes of the start.
const HEADER_BYTES: u64 = 64 * 1024;

// ---- finding scripts ----

/// A script to run now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyScript {
    pub path: PathBuf,
    pub kind: ScriptKind,
}

impl ReadyScript {
    /// A script run as it is, whatever its header says (`pgvault run FILE`).
    pub fn run_once(path: impl Into<PathBuf>) -> Self {
        ReadyScript {
            path: path.into(),
            kind: ScriptKind::RunOnce,
        }
    }
}

/// Why a script runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptKind {
    /// A dropped file: it runs once, then moves to `done/` or `failed/`.
    RunOnce,
    /// An occurrence of a recurring runbook's schedule; the file stays.
    Recurring(DueBackup),
    /// A dropped file whose schedule header is wrong: it is not run but recorded as a failed
    /// job and moved to `failed/`, the message (`path:line: ...`) saying what to fix.
    BadHeader(String),
}

/// The scripts folder as scans have seen it.
#[derive(Debug)]
pub struct ScriptsDir {
    dir: PathBuf,
    settle: TimeDelta,
    /// By file name.
    files: BTreeMap<String, Tracked>,
}

/// What identifies a version of a file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
}

#[derive(Debug)]
struct Tracked {
    stamp: Stamp,
    /// When a scan first saw the file as it is now (the caller's clock).
    unchanged_since: DateTime<Utc>,
    /// When a file of this name was first seen (a recurring script's protection start).
    first_seen: DateTime<Utc>,
    state: FileState,
}

#[derive(Debug)]
enum FileState {
    /// Seen, not yet unchanged for the settle time.
    Settling,
    /// Returned by a scan as a run-once script (or a bad header); not again while it stays
    /// as it is. A file that changes or reappears is a new drop.
    HandedOut,
    Recurring {
        schedule: Schedule,
        /// The occurrence last returned by [`ScriptsDir::recurring_due`], so one that is due
        /// is returned once even before its job is recorded.
        handed_out: Option<DateTime<Utc>>,
    },
}

impl ScriptsDir {
    /// The scripts folder `dir`, where a file runs once it stayed unchanged for `settle`.
    /// The folder need not exist yet: scans of a missing folder find nothing.
    pub fn new(dir: impl Into<PathBuf>, settle: Duration) -> Self {
        ScriptsDir {
            dir: dir.into(),
            settle: TimeDelta::from_std(settle).unwrap_or(TimeDelta::MAX),
            files: BTreeMap::new(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Looks at the folder at `now` and returns the run-once scripts that became ready: seen
    /// unchanged for the settle time by this and earlier scans. Each is returned once.
    /// Recurring scripts are registered here and returned by [`Self::recurring_due`].
    ///
    /// Only `DIR/*.rhai` counts: not subfolders (`done/`, `failed/`), not dotfiles, not
    /// `*.tmp` or any other name. A folder that cannot be read is logged and yields nothing.
    pub fn scan(&mut self, now: DateTime<Utc>) -> Vec<ReadyScript> {
        self.scan_with(now, None)
    }

    /// [`Self::scan`] for a process that has no earlier scan to compare with (`serve`
    /// starting, `pgvault tick`): a file first seen now whose modification time is at least
    /// the settle time before `fs_now` (the file system's clock, `SystemTime::now()`) counts as
    /// having been unchanged for that long, so it is ready at once; a file modified more
    /// recently settles as usual. A recurring script's protection start is then its
    /// modification time, so a runbook dropped while the host was down is not forgotten.
    pub fn scan_at_startup(&mut self, now: DateTime<Utc>, fs_now: SystemTime) -> Vec<ReadyScript> {
        self.scan_with(now, Some(fs_now))
    }

    fn scan_with(&mut self, now: DateTime<Utc>, fs_now: Option<SystemTime>) -> Vec<ReadyScript> {
        let listed = match list_scripts(&self.dir) {
            Ok(listed) => listed,
            Err(e) => {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(dir = %self.dir.display(), error = %e, "cannot read the scripts folder");
                }
                BTreeMap::new()
            }
        };
        // A file that left (moved to done/, deleted) is forgotten: if it comes back, it is a
        // new drop.
        self.files.retain(|name, _| listed.contains_key(name));
        let settle = self.settle;
        let mut ready = Vec::new();
        for (name, stamp) in listed {
            let tracked = self.files.entry(name.clone()).or_insert_with(|| {
                // The modification time, on the caller's clock.
                let since = match fs_age(fs_now, stamp.modified) {
                    Some(age) if age >= settle => now - age,
                    _ => now,
                };
                Tracked {
                    stamp,
                    unchanged_since: since,
                    first_seen: since,
                    state: FileState::Settling,
                }
            });
            if tracked.stamp != stamp {
                tracked.stamp = stamp;
                tracked.unchanged_since = now;
                tracked.state = FileState::Settling;
            }
            if !matches!(tracked.state, FileState::Settling)
                || now - tracked.unchanged_since < settle
            {
                continue;
            }
            let path = self.dir.join(&name);
            match read_header(&path) {
                Ok(Ok(None)) => {
                    tracked.state = FileState::HandedOut;
                    ready.push(ReadyScript::run_once(path));
                }
                Ok(Ok(Some(schedule))) => {
                    tracing::info!(script = %path.display(), "a recurring script was registered");
                    tracked.state = FileState::Recurring {
                        schedule,
                        handed_out: None,
                    };
                }
                Ok(Err(problems)) => {
                    tracked.state = FileState::HandedOut;
                    let message = problems
                        .iter()
                        .map(|(line, problem)| format!("{}:{line}: {problem}", path.display()))
                        .collect::<Vec<_>>()
                        .join("\n");
                    ready.push(ReadyScript {
                        path,
                        kind: ScriptKind::BadHeader(message),
                    });
                }
                // Gone between the listing and now: the next scan forgets it.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                // Unreadable (not UTF-8, no permission): the run records why, and files it.
                Err(_) => {
                    tracked.state = FileState::HandedOut;
                    ready.push(ReadyScript::run_once(path));
                }
            }
        }
        ready
    }

    /// The recurring scripts with an occurrence due at `now` that has not run: the latest
    /// occurrence at or before `now`, unless the script's latest `ScriptRun` job started at
    /// or after it (see [`crate::scheduler`]). Each occurrence is returned once.
    pub fn recurring_due(&mut self, svc: &Pgvault, now: DateTime<Utc>) -> Result<Vec<ReadyScript>> {
        let mut due = Vec::new();
        for (name, tracked) in &mut self.files {
            let FileState::Recurring {
                schedule,
                handed_out,
            } = &mut tracked.state
            else {
                continue;
            };
            let path = self.dir.join(name);
            let last = svc
                .history()
                .latest_script_run(&job_path(&path))
                .map_err(history_err)?;
            let since = last.map_or(tracked.first_seen, |l| l.min(tracked.first_seen));
            let Some(occurrence) = due_backup(schedule, Some(since), last, now) else {
                continue;
            };
            if *handed_out == Some(occurrence.due) {
                continue;
            }
            *handed_out = Some(occurrence.due);
            due.push(ReadyScript {
                path,
                kind: ScriptKind::Recurring(occurrence),
            });
        }
        Ok(due)
    }

    /// When the host should look again: the earliest time a settling file may become ready
    /// or a recurring script's next occurrence after `now`. `None` when nothing waits.
    pub fn next_wakeup(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.files
            .values()
            .filter_map(|tracked| match &tracked.state {
                FileState::Settling => tracked.unchanged_since.checked_add_signed(self.settle),
                FileState::HandedOut => None,
                FileState::Recurring { schedule, .. } => schedule.next_after(now),
            })
            .min()
    }
}

/// The `*.rhai` regular files directly in `dir`, by name, with their stamps.
fn list_scripts(dir: &Path) -> io::Result<BTreeMap<String, Stamp>> {
    let mut out = BTreeMap::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if !is_script_name(&name) {
            continue;
        }
        // Followed through a symbolic link; one that dangles, or a file gone since the
        // listing, is not there.
        let Ok(meta) = fs::metadata(entry.path()) else {
            continue;
        };
        if meta.is_file() {
            out.insert(
                name,
                Stamp {
                    len: meta.len(),
                    modified: meta.modified().ok(),
                },
            );
        }
    }
    Ok(out)
}

/// `name.rhai`, not a dotfile (editors' and writers' temporary files are dotfiles or
/// `*.tmp`, which end otherwise).
fn is_script_name(name: &str) -> bool {
    !name.starts_with('.') && name.len() > ".rhai".len() && name.ends_with(".rhai")
}

/// How long before `fs_now` a file was modified, on the file system's clock.
fn fs_age(fs_now: Option<SystemTime>, modified: Option<SystemTime>) -> Option<TimeDelta> {
    let age = fs_now?.duration_since(modified?).ok()?;
    TimeDelta::from_std(age).ok()
}

/// What a script's header says: no schedule (run once), a schedule, or what is wrong with
/// it as (line, problem) pairs.
type Header = std::result::Result<Option<Schedule>, Vec<(usize, String)>>;

/// The script's header, reading only its first lines.
fn read_header(path: &Path) -> io::Result<Header> {
    let file = fs::File::open(path)?;
    let mut lines = Vec::new();
    for line in io::BufReader::new(file.take(HEADER_BYTES)).lines() {
        let line = line?;
        let trimmed = line.trim();
        if !(trimmed.is_empty() || trimmed.starts_with("//") || trimmed.starts_with("#!")) {
            break;
        }
        lines.push(line);
    }
    Ok(parse_header(&lines))
}

/// The schedule a script's leading comment lines give, if any: `// schedule: <interval>`
/// (several lines for several intervals, as a policy's `repeatingTimeIntervals`) and at most
/// one `// time-zone: <IANA or Windows name>`. Only the comments before the first line of
/// code count; other comments (`// Author: ...`) are ignored. Errors are (line, problem).
fn parse_header<S: AsRef<str>>(lines: &[S]) -> Header {
    let mut intervals: Vec<(usize, String)> = Vec::new();
    let mut zone: Option<(usize, String)> = None;
    let mut problems = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        let number = index + 1;
        let line = line.as_ref().trim();
        if line.is_empty() || (number == 1 && line.starts_with("#!")) {
            continue;
        }
        let Some(comment) = line.strip_prefix("//") else {
            break;
        };
        let Some((key, value)) = comment.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key.trim().to_ascii_lowercase().as_str() {
            "schedule" if value.is_empty() => problems.push((
                number,
                "`// schedule:` names no repeating interval; write one such as \
                 `// schedule: R/2025-01-01T02:00:00+00:00/P1D`"
                    .to_owned(),
            )),
            "schedule" => intervals.push((number, value.to_owned())),
            "time-zone" | "timezone" | "time_zone" => match &zone {
                Some((first, _)) => problems.push((
                    number,
                    format!("a second `// time-zone:` line (the first is line {first}); keep one"),
                )),
                None => zone = Some((number, value.to_owned())),
            },
            _ => {}
        }
    }
    if intervals.is_empty() {
        if let Some((number, _)) = zone {
            problems.push((
                number,
                "`// time-zone:` without a `// schedule:` line; add the schedule, or remove the \
                 time zone to run the script once"
                    .to_owned(),
            ));
        }
        return if problems.is_empty() {
            Ok(None)
        } else {
            Err(problems)
        };
    }
    let texts: Vec<&str> = intervals.iter().map(|(_, text)| text.as_str()).collect();
    let parsed = Schedule::parse(&texts, zone.as_ref().map(|(_, name)| name.as_str()));
    if let Err(errors) = &parsed {
        for (field, error) in errors {
            problems.push(match field {
                ScheduleField::Interval(i) => {
                    let (number, text) = &intervals[*i];
                    (
                        *number,
                        format!("`{text}` is not a repeating interval: {error}"),
                    )
                }
                ScheduleField::TimeZone => {
                    let (number, name) = zone.as_ref().expect("a time zone error needs a zone");
                    (*number, format!("`{name}` is not a time zone: {error}"))
                }
            });
        }
    }
    problems.sort();
    match parsed {
        Ok(schedule) if problems.is_empty() => Ok(Some(schedule)),
        _ => Err(problems),
    }
}

/// The script path a job records and a recurring script's history is looked up by.
fn job_path(path: &Path) -> String {
    path.display().to_string()
}

// ---- running scripts ----

/// What a script may use. Rhai checks each limit as the script runs and stops it with an
/// error a `try` block cannot catch; 0 means no limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxLimits {
    /// Rhai operations (an expression, a statement, a loop iteration): 50 million is a few
    /// seconds of pure Rhai, far more than a runbook between its calls into pgvault.
    pub max_operations: u64,
    /// Nested function calls (recursion); each level costs the script's thread stack.
    pub max_call_levels: usize,
    /// Nesting of expressions at parse time; functions get half of it.
    pub max_expr_depth: usize,
    /// Bytes in one string.
    pub max_string_size: usize,
    /// Elements in one array.
    pub max_array_size: usize,
    /// Entries in one object map.
    pub max_map_size: usize,
    /// How long the script may run, its pgvault operations included; `None` for no limit.
    pub wall_time: Option<Duration>,
}

impl Default for SandboxLimits {
    /// The drop-in defaults, for unattended runbooks: generous for any real runbook (a
    /// backup of a large database fits in the hour), fatal to a runaway loop.
    fn default() -> Self {
        SandboxLimits {
            max_operations: 50_000_000,
            max_call_levels: 64,
            max_expr_depth: 128,
            max_string_size: 1024 * 1024,
            max_array_size: 100_000,
            max_map_size: 100_000,
            wall_time: Some(Duration::from_secs(60 * 60)),
        }
    }
}

impl SandboxLimits {
    /// The operator's own scripts (`pgvault run`): no limit on operations or time, and sizes
    /// generous for any real script but bounded, so that no script (a string doubled in a
    /// loop) can exhaust the process's memory and abort it with its job still InProgress.
    pub fn operator() -> Self {
        SandboxLimits {
            max_operations: 0,
            max_string_size: 64 * 1024 * 1024,
            max_array_size: 4_000_000,
            max_map_size: 1_000_000,
            wall_time: None,
            ..SandboxLimits::default()
        }
    }

    fn apply(&self, engine: &mut Engine) {
        engine
            .set_max_operations(self.max_operations)
            .set_max_call_levels(self.max_call_levels)
            .set_max_expr_depths(self.max_expr_depth, self.max_expr_depth / 2)
            .set_max_string_size(self.max_string_size)
            .set_max_array_size(self.max_array_size)
            .set_max_map_size(self.max_map_size);
    }
}

/// How [`run_script_file`] runs a script.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub limits: SandboxLimits,
    /// The sandbox: what the script may do (the host's flags, narrowed by the script's
    /// header), no `import` of other files and no `eval` (a sandboxed script is the file that
    /// was dropped, nothing it names). `None` for the operator's own scripts, which may do
    /// anything. See [`crate::script::sandbox`].
    pub sandbox: Option<Grants>,
    /// Move a run-once script to `done/` or `failed/` with a log beside it.
    pub move_when_done: bool,
    /// Also write what the script prints to stdout, as `pgvault run` does.
    pub echo: bool,
    /// Raised by the host to stop the script (shutting down, Ctrl-C): the script and the
    /// operation it waits for stop, and its job ends `Cancelled`.
    pub stop: Option<Interrupt>,
}

impl RunOptions {
    /// A drop-in script's: the sandbox with `grants`, filed away when done.
    pub fn sandboxed(grants: Grants) -> Self {
        RunOptions {
            limits: SandboxLimits::default(),
            sandbox: Some(grants),
            move_when_done: true,
            echo: false,
            stop: None,
        }
    }

    /// A drop-in script's with no grants but, if `allow_destructive`, destructive calls.
    pub fn drop_in(allow_destructive: bool) -> Self {
        RunOptions::sandboxed(Grants {
            destructive: allow_destructive,
            ..Grants::default()
        })
    }

    /// `pgvault run`'s: the operator's own tool, so no limits but sizes (a wall time only if
    /// asked), `import` and every call allowed, output echoed, the file left where it is.
    pub fn operator() -> Self {
        RunOptions {
            limits: SandboxLimits::operator(),
            sandbox: None,
            move_when_done: false,
            echo: true,
            stop: None,
        }
    }
}

/// A finished run.
#[derive(Debug, Clone)]
pub struct RanScript {
    /// The `ScriptRun` job, finished.
    pub job: Job,
    /// Where the script was moved (`done/` or `failed/`), if it was.
    pub moved_to: Option<PathBuf>,
    /// The log written beside it, if one was.
    pub log: Option<PathBuf>,
}

/// Runs `script` as a `ScriptRun` job started at `now`, as `options` say; see the module
/// documentation. Returns once the script ended, however it ended: the job says how. `Err`
/// only when the job history fails: if the job could not be started, the script did not run;
/// if it could not be finished, the file stays in the folder.
pub async fn run_script_file(
    svc: Arc<Pgvault>,
    script: &ReadyScript,
    options: &RunOptions,
    now: DateTime<Utc>,
) -> Result<RanScript> {
    run_with(svc, script, options, now, |_, _| {}).await
}

/// [`run_script_file`] with `extend` registering more functions on the engine (the tests'
/// misbehaving bindings).
async fn run_with(
    svc: Arc<Pgvault>,
    script: &ReadyScript,
    options: &RunOptions,
    now: DateTime<Utc>,
    extend: impl FnOnce(&mut Engine, &ScriptContext) + Send + 'static,
) -> Result<RanScript> {
    let name = job_path(&script.path);
    let mut new = NewJob::script_run(name.clone(), now, current_owner());
    if let ScriptKind::Recurring(due) = &script.kind {
        new.is_user_triggered = false;
        new.scheduled = Some(ScheduledRun {
            due_time: due.due,
            late: due.late,
        });
        if due.missed > 0 {
            new.extended_details
                .insert("MissedOccurrences".to_owned(), due.missed.to_string());
        }
        if due.late {
            tracing::warn!(script = %name, due = %due.due, missed = due.missed, "running a recurring script late (the host was not running when it was due)");
        }
    }
    let run = JobRun::start(svc.history(), &new, Held::nothing()).await?;

    let (outcome, output) = match &script.kind {
        ScriptKind::BadHeader(message) => (failed(SCRIPT_ERROR, message.clone()), String::new()),
        ScriptKind::RunOnce | ScriptKind::Recurring(_) => match read_script(&script.path) {
            Err(message) => (failed(SCRIPT_ERROR, message), String::new()),
            Ok(source) => match narrowed(&name, &source, options.sandbox.as_ref()) {
                Err(message) => (failed(SCRIPT_ERROR, message), String::new()),
                Ok(grants) => evaluate(svc.clone(), &name, source, grants, options, extend).await,
            },
        },
    };
    if !output.is_empty() {
        run.set_script_output(&output)?;
    }
    let job = run.finish_as(&outcome, 0, 0).await?;
    if let Some(error) = job.state.error() {
        tracing::warn!(script = %name, job = %job.id, code = %error.code, "{}", error.message);
    }

    let mut ran = RanScript {
        job,
        moved_to: None,
        log: None,
    };
    if options.move_when_done && !matches!(script.kind, ScriptKind::Recurring(_)) {
        match file_away(&script.path, &ran.job, &output) {
            Ok((moved_to, log)) => {
                ran.moved_to = moved_to;
                ran.log = Some(log);
            }
            Err(e) => {
                tracing::error!(script = %name, error = %e, "cannot move the script out of the scripts folder; it stays there and does not run again until it changes");
            }
        }
    }
    Ok(ran)
}

/// The grants a sandboxed script runs with: the host's, narrowed by the script's header
/// (`// restore-dir:`, `// restore-server:`, `// env:`, `// destructive:`); an error naming
/// each wrong line (`path:line: ...`) when the header asks for more than the host allows.
/// The operator's scripts (`None`) ignore such lines.
fn narrowed(
    name: &str,
    source: &str,
    host: Option<&Grants>,
) -> std::result::Result<Option<Grants>, String> {
    let Some(host) = host else {
        return Ok(None);
    };
    let lines = leading_comments(source);
    let problems = match parse_narrowing(&lines) {
        Ok(narrowing) => match host.narrow(&narrowing) {
            Ok(grants) => return Ok(Some(grants)),
            Err(problems) => problems,
        },
        Err(problems) => problems,
    };
    Err(problems
        .iter()
        .map(|(line, problem)| format!("{name}:{line}: {problem}"))
        .collect::<Vec<_>>()
        .join("\n"))
}

/// The script's lines up to its first line of code (the header), as [`read_header`] reads
/// them.
fn leading_comments(source: &str) -> Vec<&str> {
    source
        .lines()
        .take_while(|line| {
            let t = line.trim();
            t.is_empty() || t.starts_with("//") || t.starts_with("#!")
        })
        .collect()
}

fn failed(code: &str, message: String) -> JobOutcome {
    JobOutcome::Failed(JobError::new(code, message))
}

fn read_script(path: &Path) -> std::result::Result<String, String> {
    // Bounded, and never blocked by a FIFO or fed by a device (see `pgvault_core::limits`).
    pgvault_core::limits::read_text(path, "script", MAX_SCRIPT_BYTES).map_err(|e| e.to_string())
}

/// Runs `source` on a blocking thread (bindings block on the runtime) within the options'
/// limits, and returns how it ended with what it printed.
async fn evaluate(
    svc: Arc<Pgvault>,
    name: &str,
    source: String,
    grants: Option<Grants>,
    options: &RunOptions,
    extend: impl FnOnce(&mut Engine, &ScriptContext) + Send + 'static,
) -> (JobOutcome, String) {
    let confined = grants.is_some();
    let mut ctx = ScriptContext::operator(svc, tokio::runtime::Handle::current());
    ctx.sandbox = grants.map(Arc::new);
    let redactor = ctx.redactor.clone();
    let interrupt = Interrupt::new();
    let timed_out = Arc::new(AtomicBool::new(false));
    let stopped = Arc::new(AtomicBool::new(false));

    let stop_watch = options.stop.clone().map(|stop| {
        let (interrupt, stopped) = (interrupt.clone(), stopped.clone());
        tokio::spawn(async move {
            stop.raised().await;
            stopped.store(true, Ordering::SeqCst);
            interrupt.raise_because("the host is stopping");
        })
    });

    let output = Arc::new(Mutex::new(Captured::default()));
    let thread = {
        let (limits, echo) = (options.limits.clone(), options.echo);
        let (output, interrupt, timed_out) = (output.clone(), interrupt.clone(), timed_out.clone());
        let redactor = redactor.clone();
        let name = name.to_owned();
        tokio::task::spawn_blocking(move || -> std::result::Result<(), Box<EvalAltResult>> {
            let mut engine = new_engine(ctx.clone());
            limits.apply(&mut engine);
            if confined {
                engine.set_module_resolver(rhai::module_resolvers::DummyModuleResolver::new());
                engine.disable_symbol("eval");
            }
            capture_output(&mut engine, output, echo, redactor);
            interrupt.stop_loops(&mut engine);
            extend(&mut engine, &ctx);
            let ast = engine.compile(&source)?;
            // The wall time is the script's: it starts now that the engine is ready.
            let _deadline = match limits.wall_time {
                Some(wall_time) => Some(keep_deadline(wall_time, &interrupt, &timed_out).map_err(
                    |e| {
                        crate::script::fail(format!(
                            "{name}: cannot start the thread that keeps the script's wall time: {e}"
                        ))
                    },
                )?),
                None => None,
            };
            interrupt.watch(|| engine.run_ast(&ast))
        })
    };
    // Dropped before the script ended (the caller stopped waiting), the script is stopped too,
    // rather than left running on its thread behind a job already ended as Cancelled.
    let stop_on_drop = StopOnDrop(Some(interrupt.clone()));
    let joined = thread.await;
    stop_on_drop.disarm();
    if let Some(watch) = stop_watch {
        watch.abort();
    }
    let output = output.lock().unwrap_or_else(PoisonError::into_inner).text();

    let outcome = match joined {
        Ok(Ok(())) => JobOutcome::Completed {
            recovery_point_id: None,
        },
        Ok(Err(_)) if stopped.load(Ordering::SeqCst) => JobOutcome::Cancelled,
        Ok(Err(e)) if timed_out.load(Ordering::SeqCst) => {
            let wall_time = options.limits.wall_time.unwrap_or_default();
            failed(
                SCRIPT_TIMED_OUT,
                located(
                    name,
                    &e,
                    &format!(
                        "the script ran longer than its wall time of {} and was stopped",
                        human(wall_time)
                    ),
                ),
            )
        }
        Ok(Err(e)) => classify(name, &e, &options.limits),
        Err(e) if e.is_panic() => {
            let payload = e.into_panic();
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".to_owned());
            tracing::error!(script = %name, panic = %what, "pgvault panicked while running a script; the host carries on");
            failed(
                SCRIPT_PANICKED,
                format!(
                    "{name}: pgvault panicked while running the script ({what}); this is a bug in \
                     pgvault, please report it with the script"
                ),
            )
        }
        // The runtime is shutting down and never started the thread.
        Err(_) => JobOutcome::Cancelled,
    };
    // A script can put a secret in its error (`throw`); the job, the log and the host's log
    // keep the error, so it is redacted as the output is.
    let outcome = match outcome {
        JobOutcome::Failed(error) => JobOutcome::Failed(JobError::new(
            error.code.clone(),
            redactor.redact(&error.message),
        )),
        other => other,
    };
    (outcome, output)
}

/// Raises its interrupt when dropped armed: the future waiting for the script was dropped.
struct StopOnDrop(Option<Interrupt>);

impl StopOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Some(interrupt) = self.0.take() {
            interrupt.raise_because("the script's run was cancelled");
        }
    }
}

/// Raises `interrupt` once `wall_time` has passed, from a thread of its own, unless the
/// returned guard was dropped first (the script ended, or its thread unwound).
fn keep_deadline(
    wall_time: Duration,
    interrupt: &Interrupt,
    timed_out: &Arc<AtomicBool>,
) -> io::Result<Sender<()>> {
    let (guard, finished) = channel::<()>();
    let (interrupt, timed_out) = (interrupt.clone(), timed_out.clone());
    std::thread::Builder::new()
        .name("script-deadline".into())
        .spawn(move || {
            if let Err(RecvTimeoutError::Timeout) = finished.recv_timeout(wall_time) {
                timed_out.store(true, Ordering::SeqCst);
                interrupt.raise_because(format!(
                    "the script's wall time of {} ran out",
                    human(wall_time)
                ));
            }
        })?;
    Ok(guard)
}

/// A failed run's outcome: a limit, or any other script error.
fn classify(name: &str, err: &EvalAltResult, limits: &SandboxLimits) -> JobOutcome {
    let mut inner = err;
    while let EvalAltResult::ErrorInFunctionCall(_, _, e, _) = inner {
        inner = e;
    }
    let limit = match inner {
        EvalAltResult::ErrorTooManyOperations(_) => {
            Some(format!("at most {} operations", limits.max_operations))
        }
        EvalAltResult::ErrorStackOverflow(_) => Some(format!(
            "at most {} nested function calls",
            limits.max_call_levels
        )),
        EvalAltResult::ErrorDataTooLarge(what, _) => Some(if what.contains("string") {
            format!("strings of at most {} bytes", limits.max_string_size)
        } else if what.contains("array") {
            format!("arrays of at most {} elements", limits.max_array_size)
        } else if what.contains("map") {
            format!("maps of at most {} entries", limits.max_map_size)
        } else {
            format!(
                "strings of at most {} bytes, arrays of {} elements, maps of {} entries",
                limits.max_string_size, limits.max_array_size, limits.max_map_size
            )
        }),
        EvalAltResult::ErrorTooManyVariables(_) | EvalAltResult::ErrorTooManyModules(_) => {
            Some("the engine's limits".to_owned())
        }
        EvalAltResult::ErrorParsing(ParseErrorType::ExprTooDeep, _) => Some(format!(
            "expressions nested at most {} deep",
            limits.max_expr_depth
        )),
        _ => None,
    };
    let described = describe_error(name, err);
    match limit {
        Some(limit) => failed(
            SCRIPT_LIMIT_EXCEEDED,
            format!("{described} (a script may use {limit})"),
        ),
        None => failed(SCRIPT_ERROR, described),
    }
}

/// `message` placed where `err` happened: `file:line:col: message`.
fn located(name: &str, err: &EvalAltResult, message: &str) -> String {
    let pos = err.position();
    match (pos.line(), pos.position()) {
        (Some(l), Some(c)) => format!("{name}:{l}:{c}: {message}"),
        (Some(l), None) => format!("{name}:{l}: {message}"),
        _ => format!("{name}: {message}"),
    }
}

/// `1h`, `90s`, `250ms`: a wall time as an operator wrote it.
fn human(d: Duration) -> String {
    let secs = d.as_secs();
    if d.subsec_nanos() != 0 || secs == 0 {
        format!("{}ms", d.as_millis())
    } else if secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else if secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

/// Sends `print` and `debug` to `output` (and stdout when echoing), one line each, with
/// every secret the redactor knows replaced by `<redacted>`.
fn capture_output(
    engine: &mut Engine,
    output: Arc<Mutex<Captured>>,
    echo: bool,
    redactor: Redactor,
) {
    let line = move |text: &str| {
        let text = &redactor.redact(text);
        output
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_line(text);
        if echo {
            // A closed stdout (`pgvault run | head`) must not stop the script.
            let _ = writeln!(io::stdout().lock(), "{text}");
        }
    };
    let print = line.clone();
    engine.on_print(move |text| print(text));
    // As Rhai's default: the position, then the value.
    engine.on_debug(move |text, _source, pos| {
        if pos.is_none() {
            line(text);
        } else {
            line(&format!("{pos:?} | {text}"));
        }
    });
}

/// What a script printed, in bounded memory: the first [`HEAD`] bytes and the last
/// [`TAIL`] to twice that, with a count of what was dropped between, so a script printing
/// in a loop cannot fill the host's memory. Sized so that the text with its note fits
/// [`SCRIPT_OUTPUT_LIMIT`] and the job keeps it as it is.
#[derive(Debug, Default)]
struct Captured {
    head: String,
    tail: String,
    dropped: usize,
}

const HEAD: usize = SCRIPT_OUTPUT_LIMIT / 8;
const TAIL: usize = SCRIPT_OUTPUT_LIMIT * 3 / 8;

impl Captured {
    fn push_line(&mut self, text: &str) {
        self.push(text);
        self.push("\n");
    }

    fn push(&mut self, mut text: &str) {
        if self.tail.is_empty() && self.head.len() < HEAD {
            let fits = floor_char_boundary(text, HEAD - self.head.len());
            self.head.push_str(&text[..fits]);
            text = &text[fits..];
        }
        self.tail.push_str(text);
        if self.tail.len() > 2 * TAIL {
            let cut = ceil_char_boundary(&self.tail, self.tail.len() - TAIL);
            self.dropped += cut;
            self.tail.drain(..cut);
        }
    }

    fn text(&self) -> String {
        if self.dropped == 0 {
            format!("{}{}", self.head, self.tail)
        } else {
            format!(
                "{}\n[... pgvault: {} bytes of output left out ...]\n{}",
                self.head, self.dropped, self.tail
            )
        }
    }
}

fn floor_char_boundary(s: &str, i: usize) -> usize {
    (0..=i.min(s.len()))
        .rev()
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0)
}

fn ceil_char_boundary(s: &str, i: usize) -> usize {
    (i..=s.len())
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(s.len())
}

// ---- filing run-once scripts ----

/// Moves the script to `done/` or `failed/` beside it (a name taken there gets the job's
/// start time as a prefix, `20261121T020000Z-name.rhai`) and writes `name.log` beside it.
/// Returns where the script went (`None` if it had already gone) and the log.
fn file_away(path: &Path, job: &Job, output: &str) -> io::Result<(Option<PathBuf>, PathBuf)> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let folder = dir.join(match job.status() {
        JobStatus::Completed => DONE_DIR,
        _ => FAILED_DIR,
    });
    fs::create_dir_all(&folder)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "script.rhai".to_owned());
    let stamp = job.state.start().format("%Y%m%dT%H%M%SZ");
    let candidates = [
        name.clone(),
        format!("{stamp}-{name}"),
        format!("{stamp}-{}-{name}", job.id),
    ];
    let free = |c: &&String| {
        let target = folder.join(c);
        !target.exists() && !target.with_extension("log").exists()
    };
    let chosen = candidates.iter().find(free).unwrap_or(&candidates[2]);
    let target = folder.join(chosen);
    let moved_to = match fs::rename(path, &target) {
        Ok(()) => Some(target.clone()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let log = target.with_extension("log");
    fs::write(&log, log_text(path, job, output))?;
    Ok((moved_to, log))
}

fn log_text(path: &Path, job: &Job, output: &str) -> String {
    let mut text = format!(
        "job:    {}\nscript: {}\nstatus: {}\nstart:  {}\n",
        job.id,
        path.display(),
        job.status(),
        job.state.start().to_rfc3339(),
    );
    if let Some(end) = job.state.end() {
        text.push_str(&format!("end:    {}\n", end.to_rfc3339()));
    }
    if let Some(error) = job.state.error() {
        text.push_str(&format!("error:  {}: {}\n", error.code, error.message));
    }
    text.push_str("\n--- output ---\n");
    text.push_str(output);
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::{CANCELLED, DESTRUCTIVE_REFUSED, RhaiResult, coded};
    use pgvault_core::engine::home::Home;

    fn t(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn secs(n: i64) -> TimeDelta {
        TimeDelta::seconds(n)
    }

    fn names(ready: &[ReadyScript]) -> Vec<String> {
        ready
            .iter()
            .map(|r| r.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    fn append(path: &Path, text: &str) {
        fs::OpenOptions::new()
            .append(true)
            .open(path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }

    // ---- detection ----

    #[test]
    fn a_file_runs_once_scans_saw_it_unchanged_for_the_settle_time() {
        let dir = tempfile::tempdir().unwrap();
        let mut scripts = ScriptsDir::new(dir.path(), Duration::from_secs(2));
        let t0 = t("2026-11-21T02:00:00Z");
        let path = dir.path().join("report.rhai");
        fs::write(&path, "print(\"half").unwrap();
        assert!(scripts.scan(t0).is_empty(), "just seen");
        assert_eq!(scripts.next_wakeup(t0), Some(t0 + secs(2)));
        append(&path, " of a script\");\n");
        // Changed since the last scan: the settle time starts again.
        assert!(scripts.scan(t0 + secs(1)).is_empty());
        assert!(
            scripts.scan(t0 + secs(2)).is_empty(),
            "unchanged for 1 s only"
        );
        assert_eq!(scripts.next_wakeup(t0 + secs(2)), Some(t0 + secs(3)));
        let ready = scripts.scan(t0 + secs(3));
        assert_eq!(ready, vec![ReadyScript::run_once(&path)]);
        assert!(scripts.scan(t0 + secs(60)).is_empty(), "returned once");
        assert_eq!(scripts.next_wakeup(t0 + secs(60)), None);
    }

    #[test]
    fn only_rhai_files_directly_in_the_folder_are_scripts() {
        let dir = tempfile::tempdir().unwrap();
        let mut scripts = ScriptsDir::new(dir.path().join("scripts"), Duration::ZERO);
        let t0 = t("2026-11-21T02:00:00Z");
        assert!(scripts.scan(t0).is_empty(), "a missing folder has nothing");
        let root = dir.path().join("scripts");
        for sub in ["done", "failed", "folder.rhai"] {
            fs::create_dir_all(root.join(sub)).unwrap();
        }
        for name in [
            "a.rhai",
            ".hidden.rhai",
            "b.rhai.tmp",
            "c.tmp",
            "notes.txt",
            ".rhai",
            "done/d.rhai",
            "failed/e.rhai",
        ] {
            fs::write(root.join(name), "1").unwrap();
        }
        assert_eq!(names(&scripts.scan(t0)), ["a.rhai"]);
        // The writer's rename makes it a script.
        fs::rename(root.join("b.rhai.tmp"), root.join("b.rhai")).unwrap();
        assert_eq!(names(&scripts.scan(t0 + secs(1))), ["b.rhai"]);
    }

    #[test]
    fn a_script_dropped_again_or_changed_runs_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut scripts = ScriptsDir::new(dir.path(), Duration::from_secs(2));
        let t0 = t("2026-11-21T02:00:00Z");
        let path = dir.path().join("x.rhai");
        fs::write(&path, "1").unwrap();
        scripts.scan(t0);
        assert_eq!(names(&scripts.scan(t0 + secs(2))), ["x.rhai"]);
        // Moved away after its run, then dropped again under the same name.
        fs::remove_file(&path).unwrap();
        assert!(scripts.scan(t0 + secs(3)).is_empty());
        fs::write(&path, "1").unwrap();
        assert!(scripts.scan(t0 + secs(4)).is_empty());
        assert_eq!(names(&scripts.scan(t0 + secs(6))), ["x.rhai"]);
        // Rewritten in place: a new version.
        fs::write(&path, "1 + 1").unwrap();
        assert!(scripts.scan(t0 + secs(7)).is_empty());
        assert_eq!(names(&scripts.scan(t0 + secs(9))), ["x.rhai"]);
    }

    #[test]
    fn at_startup_a_file_untouched_for_the_settle_time_is_ready_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut scripts = ScriptsDir::new(dir.path(), Duration::from_secs(2));
        let fs_now = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let old = dir.path().join("old.rhai");
        let fresh = dir.path().join("fresh.rhai");
        for (path, age) in [(&old, 3600), (&fresh, 1)] {
            let file = fs::File::create(path).unwrap();
            file.set_modified(fs_now - Duration::from_secs(age))
                .unwrap();
        }
        let t0 = t("2026-11-21T02:00:00Z");
        assert_eq!(names(&scripts.scan_at_startup(t0, fs_now)), ["old.rhai"]);
        assert_eq!(names(&scripts.scan(t0 + secs(2))), ["fresh.rhai"]);
    }

    #[test]
    fn schedule_headers() {
        type Case<'a> = (
            &'a str,
            std::result::Result<Option<(&'a [&'a str], &'a str)>, &'a [usize]>,
        );
        let daily: &[&str] = &["R/2025-01-01T02:00:00+00:00/P1D"];
        let cases: &[Case] = &[
            ("print(1);", Ok(None)),
            ("// A report.\n// Author: ops\nprint(1);", Ok(None)),
            (
                "// schedule: R/2025-01-01T02:00:00+00:00/P1D\nprint(1);",
                Ok(Some((daily, "UTC"))),
            ),
            (
                "#!/usr/bin/env pgvault\n\n// Nightly.\n//Schedule:R/2025-01-01T02:00:00+00:00/P1D\n// time-zone: Europe/Berlin\nx",
                Ok(Some((daily, "Europe/Berlin"))),
            ),
            (
                "// schedule: R/2025-01-01T02:00:00+00:00/P1D\n// schedule: R/2025-01-01T14:00:00+00:00/P1D\n// time-zone: W. Europe Standard Time",
                Ok(Some((
                    &[
                        "R/2025-01-01T02:00:00+00:00/P1D",
                        "R/2025-01-01T14:00:00+00:00/P1D",
                    ],
                    "Europe/Berlin",
                ))),
            ),
            // After the first line of code, a schedule comment is just a comment.
            (
                "print(1);\n// schedule: R/2025-01-01T02:00:00+00:00/P1D",
                Ok(None),
            ),
            ("// schedule: every night\n", Err(&[1])),
            ("// schedule:\n", Err(&[1])),
            (
                "// schedule: R/2025-01-01T02:00:00+00:00/P1D\n// time-zone: Mars/Olympus",
                Err(&[2]),
            ),
            ("// time-zone: UTC\nprint(1);", Err(&[1])),
            (
                "// schedule: nope\n// time-zone: UTC\n// time-zone: UTC",
                Err(&[1, 3]),
            ),
        ];
        for (text, expected) in cases {
            let lines: Vec<&str> = text.lines().collect();
            let got = parse_header(&lines);
            match (expected, &got) {
                (Ok(None), Ok(None)) => {}
                (Ok(Some((intervals, zone))), Ok(Some(schedule))) => {
                    assert_eq!(
                        schedule,
                        &Schedule::parse(intervals, Some(zone)).unwrap(),
                        "{text}"
                    );
                }
                (Err(lines), Err(problems)) => {
                    let got: Vec<usize> = problems.iter().map(|(line, _)| *line).collect();
                    assert_eq!(&got, lines, "{text}: {problems:?}");
                }
                _ => panic!("{text}: expected {expected:?}, got {got:?}"),
            }
        }
        let problems = parse_header(&["// schedule: every night"]).unwrap_err();
        assert!(
            problems[0]
                .1
                .contains("`every night` is not a repeating interval"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_bad_header_is_returned_with_its_explanation() {
        let dir = tempfile::tempdir().unwrap();
        let mut scripts = ScriptsDir::new(dir.path(), Duration::ZERO);
        let path = dir.path().join("nightly.rhai");
        fs::write(
            &path,
            "// Nightly.\n// schedule: R/2025-13-01T02:00:00Z/P1D\nprint(1);",
        )
        .unwrap();
        let ready = scripts.scan(t("2026-11-21T02:00:00Z"));
        let [
            ReadyScript {
                path: got,
                kind: ScriptKind::BadHeader(message),
            },
        ] = ready.as_slice()
        else {
            panic!("{ready:?}");
        };
        assert_eq!(got, &path);
        assert!(
            message.starts_with(&format!(
                "{}:2: `R/2025-13-01T02:00:00Z/P1D`",
                path.display()
            )),
            "{message}"
        );
    }

    fn service() -> (tempfile::TempDir, Arc<Pgvault>) {
        let dir = tempfile::tempdir().unwrap();
        let svc = Pgvault::open(Home::at(dir.path().join("home"))).unwrap();
        (dir, Arc::new(svc))
    }

    /// Records a `ScriptRun` job for `path` started at `at`, as an earlier run would have.
    fn record_run(svc: &Pgvault, path: &Path, at: DateTime<Utc>) {
        let new = NewJob::script_run(job_path(path), at, current_owner());
        svc.history().start(&new).unwrap();
        svc.history()
            .finish(
                new.id,
                &JobOutcome::Completed {
                    recovery_point_id: None,
                },
                at + secs(1),
                0,
                0,
            )
            .unwrap();
    }

    #[test]
    fn a_recurring_script_is_due_at_each_occurrence_once() {
        let (home, svc) = service();
        let dir = home.path().join("scripts");
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("nightly.rhai");
        fs::write(
            &path,
            "// Nightly report.\n// schedule: R/2026-01-01T02:00:00+01:00/P1D\n// time-zone: Europe/Berlin\nprint(1);",
        )
        .unwrap();
        let mut scripts = ScriptsDir::new(&dir, Duration::from_secs(2));
        let seen = t("2026-11-20T12:00:00Z");
        assert!(scripts.scan(seen).is_empty());
        assert!(
            scripts.scan(seen + secs(2)).is_empty(),
            "recurring, not run once"
        );
        // Its first occurrence after it was dropped: 02:00 in Berlin is 01:00 UTC in November.
        assert_eq!(
            scripts.next_wakeup(seen + secs(2)),
            Some(t("2026-11-21T01:00:00Z"))
        );
        assert!(
            scripts
                .recurring_due(&svc, seen + secs(3))
                .unwrap()
                .is_empty(),
            "the occurrence before it was dropped does not run"
        );
        let on_time = t("2026-11-21T01:00:30Z");
        let due = scripts.recurring_due(&svc, on_time).unwrap();
        let expected = DueBackup {
            due: t("2026-11-21T01:00:00Z"),
            late: false,
            missed: 0,
        };
        assert_eq!(
            due,
            vec![ReadyScript {
                path: path.clone(),
                kind: ScriptKind::Recurring(expected)
            }]
        );
        assert!(
            scripts.recurring_due(&svc, on_time).unwrap().is_empty(),
            "returned once, even before its job is recorded"
        );
        record_run(&svc, &path, on_time);
        assert!(
            scripts
                .recurring_due(&svc, t("2026-11-21T20:00:00Z"))
                .unwrap()
                .is_empty()
        );

        // The host is down for three nights; a new process sees the file again at startup.
        let mut restarted = ScriptsDir::new(&dir, Duration::from_secs(2));
        let back = t("2026-11-24T09:00:00Z");
        restarted.scan(back);
        restarted.scan(back + secs(2));
        let due = restarted.recurring_due(&svc, back + secs(2)).unwrap();
        assert_eq!(
            due[0].kind,
            ScriptKind::Recurring(DueBackup {
                due: t("2026-11-24T01:00:00Z"),
                late: true,
                missed: 2,
            }),
            "the latest occurrence runs once, late; the two before it are counted as missed"
        );
    }

    // ---- running ----

    async fn run(svc: &Arc<Pgvault>, path: &Path, options: &RunOptions) -> RanScript {
        run_script_file(
            svc.clone(),
            &ReadyScript::run_once(path),
            options,
            t("2026-11-21T02:00:00Z"),
        )
        .await
        .unwrap()
    }

    /// Writes `source` as `name` in a scripts folder under `home`.
    fn drop_script(home: &tempfile::TempDir, name: &str, source: &str) -> PathBuf {
        let dir = home.path().join("scripts");
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        fs::write(&path, source).unwrap();
        path
    }

    fn error_of(ran: &RanScript) -> &JobError {
        ran.job
            .state
            .error()
            .unwrap_or_else(|| panic!("expected a failed job: {:?}", ran.job.state))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_completed_script_keeps_its_output_and_moves_to_done() {
        let (home, svc) = service();
        let path = drop_script(&home, "report.rhai", "print(\"3 vaults\");\ndebug(42);\n");
        // A script of this name already ran once: the new one gets a timestamp.
        let done = home.path().join("scripts/done");
        fs::create_dir_all(&done).unwrap();
        fs::write(done.join("report.rhai"), "earlier").unwrap();

        let ran = run(&svc, &path, &RunOptions::drop_in(false)).await;
        assert_eq!(
            ran.job.status(),
            JobStatus::Completed,
            "{:?}",
            ran.job.state
        );
        let output = "3 vaults\n2:1 | 42\n";
        let stored = svc.history().get(ran.job.id).unwrap().unwrap();
        assert_eq!(stored.script_output.as_deref(), Some(output));
        assert_eq!(stored.script_path.as_deref(), Some(path.to_str().unwrap()));
        assert_eq!(stored.state.start(), t("2026-11-21T02:00:00Z"));

        let moved = done.join("20261121T020000Z-report.rhai");
        assert_eq!(ran.moved_to.as_deref(), Some(moved.as_path()));
        assert!(!path.exists() && moved.is_file());
        assert_eq!(
            fs::read_to_string(done.join("report.rhai")).unwrap(),
            "earlier"
        );
        let log = fs::read_to_string(ran.log.as_ref().unwrap()).unwrap();
        assert_eq!(ran.log, Some(done.join("20261121T020000Z-report.log")));
        for part in [
            &format!("job:    {}", ran.job.id),
            "status: Completed",
            "start:  2026-11-21T02:00:00+00:00",
            output,
        ] {
            assert!(log.contains(part), "{part:?} not in\n{log}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_script_fails_its_job_with_the_position_and_moves_to_failed() {
        let (home, svc) = service();
        let path = drop_script(
            &home,
            "broken.rhai",
            "print(\"starting\");\nlet v = vault(\"NoSuchVault\");\n",
        );
        let ran = run(&svc, &path, &RunOptions::drop_in(false)).await;
        let error = error_of(&ran);
        assert_eq!(error.code, SCRIPT_ERROR);
        assert!(
            error.message.starts_with(&format!("{}:2:", path.display()))
                && error.message.contains("UserErrorVaultNotFound"),
            "{}",
            error.message
        );
        let moved = home.path().join("scripts/failed/broken.rhai");
        assert_eq!(ran.moved_to, Some(moved.clone()));
        let log = fs::read_to_string(moved.with_extension("log")).unwrap();
        assert!(log.contains("status: Failed"), "{log}");
        assert!(
            log.contains(&format!("error:  ScriptError: {}", error.message)),
            "{log}"
        );
        assert!(log.ends_with("--- output ---\nstarting\n"), "{log}");

        // A syntax error is a script error too, placed where the parser stopped.
        let path = drop_script(&home, "syntax.rhai", "let x = ;\n");
        let ran = run(&svc, &path, &RunOptions::drop_in(false)).await;
        assert_eq!(error_of(&ran).code, SCRIPT_ERROR);
        assert!(
            error_of(&ran)
                .message
                .starts_with(&format!("{}:1:", path.display())),
            "{}",
            error_of(&ran).message
        );
    }

    /// Runs `source` as a drop-in with `limits`, returning the failed job's error.
    async fn fails_within(limits: SandboxLimits, source: &str) -> JobError {
        let (home, svc) = service();
        let path = drop_script(&home, "limits.rhai", source);
        let options = RunOptions {
            limits,
            ..RunOptions::drop_in(false)
        };
        let ran = run(&svc, &path, &options).await;
        assert!(
            home.path().join("scripts/failed/limits.rhai").is_file(),
            "filed under failed/"
        );
        error_of(&ran).clone()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runaway_scripts_end_as_failed_jobs() {
        let few_operations = SandboxLimits {
            max_operations: 10_000,
            ..SandboxLimits::default()
        };
        let error = fails_within(few_operations, "let n = 0;\nloop { n += 1; }").await;
        assert_eq!(error.code, SCRIPT_LIMIT_EXCEEDED, "{error:?}");
        assert!(
            error.message.contains("at most 10000 operations"),
            "{error:?}"
        );

        // `try` cannot catch a limit.
        let error = fails_within(
            SandboxLimits::default(),
            "let s = \"x\";\ntry { loop { s += s; } } catch { print(\"caught\"); }",
        )
        .await;
        assert_eq!(error.code, SCRIPT_LIMIT_EXCEEDED, "{error:?}");
        assert!(error.message.contains(":2:"), "{error:?}");

        let error = fails_within(
            SandboxLimits::default(),
            "let a = [];\nfor i in 0..1000000 { a.push(i); }",
        )
        .await;
        assert_eq!(error.code, SCRIPT_LIMIT_EXCEEDED, "{error:?}");

        let error = fails_within(
            SandboxLimits::default(),
            "fn deeper(n) { deeper(n + 1) }\ndeeper(0);",
        )
        .await;
        assert_eq!(error.code, SCRIPT_LIMIT_EXCEEDED, "{error:?}");
        assert!(
            error.message.contains("at most 64 nested function calls"),
            "{error:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_script_past_its_wall_time_is_stopped() {
        let unlimited_but_brief = SandboxLimits {
            wall_time: Some(Duration::from_millis(50)),
            ..SandboxLimits::operator()
        };
        let error = fails_within(unlimited_but_brief, "print(\"on it\");\nloop { }").await;
        assert_eq!(error.code, SCRIPT_TIMED_OUT, "{error:?}");
        assert!(
            error.message.contains("longer than its wall time of 50ms"),
            "{error:?}"
        );
    }

    /// Registers `wait_forever()`, a pgvault call that never finishes (a backup of an
    /// endless database), and `boom()`, a binding that panics.
    fn misbehaving(engine: &mut Engine, ctx: &ScriptContext) {
        let c = ctx.clone();
        engine.register_fn("wait_forever", move || -> RhaiResult<()> {
            c.block_on(std::future::pending::<Result<()>>())
                .map_err(coded)
        });
        engine.register_fn("boom", || -> i64 { panic!("a binding went wrong") });
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pgvault_call_past_the_wall_time_is_cancelled() {
        let (home, svc) = service();
        let path = drop_script(
            &home,
            "slow.rhai",
            "print(\"backing up\");\nwait_forever();\nprint(\"after\");",
        );
        let options = RunOptions {
            limits: SandboxLimits {
                wall_time: Some(Duration::from_millis(50)),
                ..SandboxLimits::default()
            },
            ..RunOptions::drop_in(false)
        };
        // What the endless call returned, seen from inside the binding.
        let returned = Arc::new(Mutex::new(None));
        let seen = returned.clone();
        let extend = move |engine: &mut Engine, ctx: &ScriptContext| {
            let c = ctx.clone();
            engine.register_fn("wait_forever", move || -> RhaiResult<()> {
                let result = c.block_on(std::future::pending::<Result<()>>());
                *seen.lock().unwrap() = Some(
                    result
                        .as_ref()
                        .err()
                        .map(|e| format!("{}: {}", e.code, e.message)),
                );
                result.map_err(coded)
            });
        };
        // A guard, not a wait: the run ends in milliseconds unless cancelling is broken.
        let ran = tokio::time::timeout(
            Duration::from_secs(60),
            run_with(
                svc.clone(),
                &ReadyScript::run_once(&path),
                &options,
                t("2026-11-21T02:00:00Z"),
                extend,
            ),
        )
        .await
        .expect("the endless call was not cancelled")
        .unwrap();
        let error = error_of(&ran);
        assert_eq!(error.code, SCRIPT_TIMED_OUT);
        assert!(
            error.message.starts_with(&format!("{}:2:", path.display())),
            "stopped at the call: {error:?}"
        );
        let returned = returned
            .lock()
            .unwrap()
            .clone()
            .flatten()
            .unwrap_or_default();
        assert!(
            returned.contains(CANCELLED)
                && returned.contains("the script's wall time of 50ms ran out"),
            "{returned}"
        );
        assert_eq!(ran.job.script_output.as_deref(), Some("backing up\n"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panic_in_a_binding_fails_the_job_not_the_host() {
        let (home, svc) = service();
        let path = drop_script(&home, "panics.rhai", "print(\"before\");\nboom();\n");
        let ran = run_with(
            svc.clone(),
            &ReadyScript::run_once(&path),
            &RunOptions::drop_in(false),
            t("2026-11-21T02:00:00Z"),
            misbehaving,
        )
        .await
        .unwrap();
        let error = error_of(&ran);
        assert_eq!(error.code, SCRIPT_PANICKED);
        assert!(error.message.contains("a binding went wrong"), "{error:?}");
        let stored = svc.history().get(ran.job.id).unwrap().unwrap();
        assert_eq!(stored.script_output.as_deref(), Some("before\n"));
        assert!(home.path().join("scripts/failed/panics.rhai").is_file());
        // The host carries on: the next script runs.
        let next = drop_script(&home, "next.rhai", "1 + 1");
        let ran = run(&svc, &next, &RunOptions::drop_in(false)).await;
        assert_eq!(ran.job.status(), JobStatus::Completed);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_host_stopping_cancels_the_script() {
        let (home, svc) = service();
        let path = drop_script(&home, "long.rhai", "wait_forever();");
        let stop = Interrupt::new();
        stop.raise();
        let options = RunOptions {
            stop: Some(stop),
            ..RunOptions::drop_in(false)
        };
        // A guard, not a wait: the run ends at once unless stopping is broken.
        let ran = tokio::time::timeout(
            Duration::from_secs(60),
            run_with(
                svc.clone(),
                &ReadyScript::run_once(&path),
                &options,
                t("2026-11-21T02:00:00Z"),
                misbehaving,
            ),
        )
        .await
        .expect("the stop did not reach the endless call")
        .unwrap();
        assert_eq!(ran.job.status(), JobStatus::Cancelled);
        assert!(home.path().join("scripts/failed/long.rhai").is_file());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn drop_ins_cannot_import_files_or_eval() {
        let (home, svc) = service();
        // Outside the scripts folder, by its full path (without `.rhai`, as Rhai imports).
        let helper = home.path().join("helper.rhai");
        fs::write(&helper, "fn helped() { 41 }").unwrap();
        let import = format!(
            "import \"{}\" as h;\nprint(h::helped() + 1);",
            helper.with_extension("").display()
        );
        let cases = [
            ("importing.rhai", import.as_str(), "helper"),
            ("evaluating.rhai", "print(eval(\"40 + 2\"));", "eval"),
        ];
        for (name, source, named) in cases {
            let path = drop_script(&home, name, source);
            let ran = run(&svc, &path, &RunOptions::drop_in(true)).await;
            let error = error_of(&ran);
            assert_eq!(error.code, SCRIPT_ERROR, "{name}");
            assert!(
                error.message.starts_with(&format!("{}:", path.display()))
                    && error.message.contains(named),
                "{name}: {error:?}"
            );
            assert_eq!(ran.job.script_output, None, "{name} did not run");
            // The operator's own scripts may.
            let path = drop_script(&home, name, source);
            let ran = run(&svc, &path, &RunOptions::operator()).await;
            assert_eq!(
                ran.job.script_output.as_deref(),
                Some("42\n"),
                "{name}: {:?}",
                ran.job.state
            );
            assert!(path.is_file(), "the operator's file stays where it is");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn drop_ins_read_only_the_variables_the_host_allows() {
        let (home, svc) = service();
        // PATH is always set; a drop-in may not read it, nor any PGVAULT_* variable, unless
        // the host lists it (the README keeps a restore secret in PGVAULT_RESTORE_SECRET).
        for name in ["PATH", "PGVAULT_SURELY_UNSET_SETTING"] {
            let path = drop_script(&home, "nosy.rhai", &format!("print(env(\"{name}\"));"));
            let ran = run(&svc, &path, &RunOptions::drop_in(true)).await;
            let error = error_of(&ran);
            assert!(
                error.message.contains(&format!(
                    "UserErrorScriptNotAllowed: a script may read only the environment \
                     variables the host allows, and `{name}` is not one"
                )),
                "{error:?}"
            );
            assert_eq!(ran.job.script_output, None);
        }
        let allowed = RunOptions::sandboxed(Grants {
            env: vec!["PGVAULT_SURELY_*".into()],
            ..Grants::default()
        });
        let path = drop_script(
            &home,
            "config.rhai",
            "print(env(\"PGVAULT_SURELY_UNSET_SETTING\") ?? \"default\");",
        );
        let ran = run(&svc, &path, &allowed).await;
        assert_eq!(ran.job.script_output.as_deref(), Some("default\n"));
        // The header narrows: this script gives the allowed variables up.
        let path = drop_script(
            &home,
            "narrow.rhai",
            "// env: PGVAULT_SURELY_OTHER\nprint(env(\"PGVAULT_SURELY_UNSET_SETTING\"));",
        );
        let ran = run(&svc, &path, &allowed).await;
        assert!(
            error_of(&ran).message.contains("is not one"),
            "{:?}",
            ran.job.state
        );
        // And cannot widen: a header asking for more fails before the script runs.
        let path = drop_script(&home, "wide.rhai", "// env: PATH\nprint(1);");
        let ran = run(&svc, &path, &allowed).await;
        let error = error_of(&ran);
        assert!(
            error.message.starts_with(&format!(
                "{}:1: `PATH` is not an environment variable the host allows",
                path.display()
            )),
            "{error:?}"
        );
        assert_eq!(ran.job.script_output, None, "not run");
        // The operator's own scripts read anything.
        let path = drop_script(&home, "nosy.rhai", "print(env(\"PATH\") != ());");
        let ran = run(&svc, &path, &RunOptions::operator()).await;
        assert_eq!(ran.job.script_output.as_deref(), Some("true\n"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn secrets_are_redacted_from_output_and_errors() {
        let (home, svc) = service();
        let secret = home.path().join("db.secret");
        fs::write(&secret, "Server=db;User Id=u;Password=Pa55-word-x;").unwrap();
        // A script that hands pgvault a file: reference, then tries to show its password.
        let source = format!(
            r#"try {{ server_databases(#{{ datasource_type: "AzureDatabaseForPostgreSQLFlexibleServer",
    datasource_id: "postgres://127.0.0.1:1/postgres", secret_store_type: "File",
    secret_store_uri: "file://{}" }}); }} catch {{ }}
print("pw Pa55-word-x");
throw "Pa55-word-x";"#,
            secret.display()
        );
        for options in [RunOptions::drop_in(false), RunOptions::operator()] {
            let path = drop_script(&home, "leak.rhai", &source);
            let options = RunOptions {
                echo: false,
                ..options
            };
            let ran = run(&svc, &path, &options).await;
            assert_eq!(ran.job.script_output.as_deref(), Some("pw <redacted>\n"));
            let error = error_of(&ran);
            assert!(
                error.message.contains("<redacted>") && !error.message.contains("Pa55"),
                "{error:?}"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sweeps_at_another_time_are_destructive() {
        let (home, svc) = service();
        let root = vault_with_points(&home, &svc, &["rp1", "rp2", "rp3"]).await;
        let sweep = r#"vault("V").retention_sweep(#{ at: "2099-01-01" });"#;
        let path = drop_script(&home, "sweep.rhai", sweep);
        let ran = run(&svc, &path, &RunOptions::drop_in(false)).await;
        assert!(
            error_of(&ran).message.contains(&format!(
                "{DESTRUCTIVE_REFUSED}: retention_sweep with `at` deletes recovery points a \
                 sweep now would keep"
            )),
            "{:?}",
            ran.job.state
        );
        for id in ["rp1", "rp2", "rp3"] {
            assert!(
                root.join(format!("recovery-points/db1/{id}.json"))
                    .is_file()
            );
        }
        // A plan at any time, and a sweep now, are allowed.
        let path = drop_script(
            &home,
            "plan.rhai",
            r#"let v = vault("V");
v.retention_sweep(#{ at: "2099-01-01", dry_run: true });
v.retention_sweep();"#,
        );
        let ran = run(&svc, &path, &RunOptions::drop_in(false)).await;
        assert_eq!(
            ran.job.status(),
            JobStatus::Completed,
            "{:?}",
            ran.job.state
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn drop_ins_make_no_vaults() {
        let (home, svc) = service();
        let elsewhere = home.path().join("elsewhere");
        let path = drop_script(
            &home,
            "vault.rhai",
            &format!(
                r#"new_vault("X", #{{ storage_url: "file://{}" }});"#,
                elsewhere.display()
            ),
        );
        let ran = run(&svc, &path, &RunOptions::drop_in(true)).await;
        assert!(
            error_of(&ran)
                .message
                .contains("UserErrorScriptNotAllowed: new_vault is refused to drop-in scripts"),
            "{:?}",
            ran.job.state
        );
        assert!(!elsewhere.exists());
        assert!(svc.vault_names().unwrap().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn operator_scripts_have_bounded_strings() {
        let (home, svc) = service();
        let path = drop_script(&home, "double.rhai", "let s = \"x\";\nloop { s += s; }");
        let ran = run(
            &svc,
            &path,
            &RunOptions {
                echo: false,
                ..RunOptions::operator()
            },
        )
        .await;
        let error = error_of(&ran);
        assert_eq!(error.code, SCRIPT_LIMIT_EXCEEDED);
        assert!(
            error
                .message
                .ends_with("(a script may use strings of at most 67108864 bytes)"),
            "{error:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bad_header_fails_without_running() {
        let (home, svc) = service();
        let path = drop_script(
            &home,
            "nightly.rhai",
            "// schedule: nightly\nprint(\"ran\");",
        );
        let mut scripts = ScriptsDir::new(home.path().join("scripts"), Duration::ZERO);
        let ready = scripts.scan(t("2026-11-21T02:00:00Z"));
        let ran = run_script_file(
            svc.clone(),
            &ready[0],
            &RunOptions::drop_in(false),
            t("2026-11-21T02:00:00Z"),
        )
        .await
        .unwrap();
        let error = error_of(&ran);
        assert_eq!(error.code, SCRIPT_ERROR);
        assert!(
            error
                .message
                .starts_with(&format!("{}:1: `nightly`", path.display())),
            "{error:?}"
        );
        assert_eq!(ran.job.script_output, None, "not run");
        let log = fs::read_to_string(home.path().join("scripts/failed/nightly.log")).unwrap();
        assert!(log.contains("is not a repeating interval"), "{log}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_recurring_run_records_its_occurrence_and_stays() {
        let (home, svc) = service();
        let path = drop_script(
            &home,
            "nightly.rhai",
            "// schedule: R/2026-01-01T02:00:00+00:00/P1D\nprint(\"ran\");",
        );
        let due = DueBackup {
            due: t("2026-11-21T02:00:00Z"),
            late: true,
            missed: 3,
        };
        let ran = run_script_file(
            svc.clone(),
            &ReadyScript {
                path: path.clone(),
                kind: ScriptKind::Recurring(due),
            },
            &RunOptions::drop_in(false),
            t("2026-11-21T09:00:00Z"),
        )
        .await
        .unwrap();
        assert_eq!(ran.job.status(), JobStatus::Completed);
        assert_eq!(
            ran.job.scheduled,
            Some(ScheduledRun {
                due_time: due.due,
                late: true
            })
        );
        assert_eq!(ran.job.extended_details["MissedOccurrences"], "3");
        assert!(!ran.job.is_user_triggered);
        assert!(path.is_file() && ran.moved_to.is_none() && ran.log.is_none());
        assert_eq!(
            svc.history().latest_script_run(&job_path(&path)).unwrap(),
            Some(t("2026-11-21T09:00:00Z"))
        );
    }

    /// A vault `V` with one backup instance `db1` holding the recovery points `ids`, written
    /// as the vault stores them (taking real backups needs PostgreSQL; deleting does not).
    async fn vault_with_points(home: &tempfile::TempDir, svc: &Pgvault, ids: &[&str]) -> PathBuf {
        use pgvault_core::engine::protect::{InitializeArgs, initialize_instance};
        use pgvault_core::store::manifest::{
            BackupStats, ChunkerParams, DatasourceInfo, MANIFEST_FORMAT, Manifest, PostgresInfo,
            StreamInfo,
        };
        let root = home.path().join("vault");
        svc.create_vault("V", Some(&format!("file://{}", root.display())))
            .await
            .unwrap();
        let vault = svc.vault("V").await.unwrap();
        let mut instance = initialize_instance(&InitializeArgs {
            datasource_type: "AzureDatabaseForPostgreSQLFlexibleServer".into(),
            datasource_id: "postgres://db:5432/db1".into(),
            policy_id: "P".into(),
            secret_store_type: "Environment".into(),
            secret_store_uri: "env:DB1".into(),
            location: None,
        })
        .unwrap();
        instance.name = "db1".into();
        fs::create_dir_all(root.join("instances")).unwrap();
        fs::write(
            root.join("instances/db1.json"),
            serde_json::to_vec(&vault.instance_json(&instance)).unwrap(),
        )
        .unwrap();
        fs::create_dir_all(root.join("recovery-points/db1")).unwrap();
        for id in ids {
            let manifest = Manifest {
                format_version: MANIFEST_FORMAT,
                recovery_point_id: (*id).into(),
                backup_instance_name: "db1".into(),
                recovery_point_time: t("2026-11-20T02:00:00Z"),
                policy_name: "P".into(),
                policy_rule_name: "BackupDaily".into(),
                retention_tag_name: "Default".into(),
                expiry_time: None,
                rehydration_expiry_time: None,
                job_id: String::new(),
                datasource: DatasourceInfo {
                    resource_id: "postgres://db:5432/db1".into(),
                    server: "db".into(),
                    port: 5432,
                    database: "db1".into(),
                },
                postgres: PostgresInfo {
                    server_version: "17.0".into(),
                    pg_dump_version: "17.0".into(),
                    database_size: 0,
                    username_used: "backup".into(),
                },
                chunker: ChunkerParams {
                    algorithm: "fastcdc".into(),
                    min_size: 1,
                    avg_size: 2,
                    max_size: 4,
                },
                stream: StreamInfo {
                    length: 0,
                    chunks_blake3: String::new(),
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
            };
            fs::write(
                root.join(format!("recovery-points/db1/{id}.json")),
                manifest.to_bytes(),
            )
            .unwrap();
        }
        root
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn destructive_calls_need_the_hosts_permission() {
        let (home, svc) = service();
        let root = vault_with_points(&home, &svc, &["rp1", "rp2", "rp3"]).await;
        let point = |id: &str| root.join(format!("recovery-points/db1/{id}.json"));
        let cases = [
            (
                "delete_recovery_point",
                r#"vault("V").delete_recovery_point("db1", "rp1")"#,
            ),
            (
                "delete_backup_instance",
                r#"vault("V").delete_backup_instance("db1")"#,
            ),
        ];
        for (function, call) in cases {
            let path = drop_script(&home, "delete.rhai", &format!("let jobs = {call};"));
            let ran = run(&svc, &path, &RunOptions::drop_in(false)).await;
            let error = error_of(&ran);
            assert_eq!(error.code, SCRIPT_ERROR);
            assert!(
                error.message.starts_with(&format!("{}:1:", path.display()))
                    && error.message.contains(&format!(
                        "{DESTRUCTIVE_REFUSED}: {function} deletes backup data and is refused to \
                         drop-in scripts; start the host with --allow-destructive-scripts to allow it"
                    )),
                "{error:?}"
            );
        }
        assert!(
            ["rp1", "rp2", "rp3"].iter().all(|id| point(id).is_file()),
            "nothing deleted"
        );

        // Allowed: one point, then the instance with the rest.
        let path = drop_script(
            &home,
            "delete.rhai",
            r#"let job = vault("V").delete_recovery_point("db1", "rp1");
print(`${job.properties.operation} ${job.properties.status}`);
let jobs = vault("V").delete_backup_instance("db1");
print(jobs.len());"#,
        );
        let ran = run(&svc, &path, &RunOptions::drop_in(true)).await;
        assert_eq!(
            ran.job.status(),
            JobStatus::Completed,
            "{:?}",
            ran.job.state
        );
        assert_eq!(
            ran.job.script_output.as_deref(),
            Some("DeleteRecoveryPoint Completed\n2\n")
        );
        assert!(!point("rp1").exists() && !point("rp2").exists() && !point("rp3").exists());
        assert!(!root.join("instances/db1.json").exists());
        let deletions = svc
            .jobs(
                &pgvault_core::model::job::JobFilter::default()
                    .operation(pgvault_core::model::job::Operation::DeleteRecoveryPoint),
            )
            .unwrap();
        assert_eq!(deletions.len(), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn scripts_suspend_stop_and_resume_protection() {
        let (home, svc) = service();
        vault_with_points(&home, &svc, &["rp1"]).await;
        let path = drop_script(
            &home,
            "states.rhai",
            r#"let v = vault("V");
print(v.suspend_backups("db1").properties.currentProtectionState);
print(v.stop_protection(v.instances()[0]).properties.currentProtectionState);
print(v.resume_protection("db1").properties.currentProtectionState);
v.stop_protection("db1");
v.suspend_backups("nope");"#,
        );
        // Suspending and stopping end backups: a drop-in needs the host's permission.
        let refused = run(&svc, &path, &RunOptions::drop_in(false)).await;
        let error = error_of(&refused);
        assert!(
            error.message.starts_with(&format!("{}:2:", path.display()))
                && error.message.contains(&format!(
                    "{DESTRUCTIVE_REFUSED}: suspend_backups stops the backups of an instance"
                )),
            "{error:?}"
        );
        let path = drop_script(
            &home,
            "states.rhai",
            &fs::read_to_string(home.path().join("scripts/failed/states.rhai")).unwrap(),
        );
        let ran = run(&svc, &path, &RunOptions::drop_in(true)).await;
        assert_eq!(
            ran.job.script_output.as_deref(),
            Some("BackupsSuspended\nProtectionStopped\nProtectionConfigured\n")
        );
        let error = error_of(&ran);
        assert!(
            error.message.starts_with(&format!("{}:6:", path.display()))
                && error.message.contains("UserErrorBackupInstanceNotFound"),
            "{error:?}"
        );
        let instance = svc.vault("V").await.unwrap().instance("db1").await.unwrap();
        assert_eq!(
            instance.properties.current_protection_state.as_deref(),
            Some(pgvault_core::model::instance::PROTECTION_STOPPED)
        );
        assert!(
            home.path()
                .join("vault/recovery-points/db1/rp1.json")
                .is_file(),
            "recovery points are kept"
        );
    }

    #[test]
    fn captured_output_keeps_its_head_and_tail_in_bounded_memory() {
        let mut out = Captured::default();
        out.push_line("FIRST");
        for i in 0..200_000 {
            out.push_line(&format!("line {i} é"));
            assert!(out.head.len() + out.tail.len() <= HEAD + 2 * TAIL + 32);
        }
        out.push_line("LAST");
        let text = out.text();
        assert!(text.len() <= SCRIPT_OUTPUT_LIMIT, "{}", text.len());
        assert!(text.starts_with("FIRST\nline 0 é\n"), "{}", &text[..40]);
        assert!(text.ends_with("line 199999 é\nLAST\n"));
        let total: usize = 6
            + (0..200_000)
                .map(|i| format!("line {i} é\n").len())
                .sum::<usize>()
            + 5;
        let note = format!(
            "\n[... pgvault: {} bytes of output left out ...]\n",
            out.dropped
        );
        assert!(text.contains(&note));
        assert_eq!(
            text.len() - note.len(),
            total - out.dropped,
            "nothing else lost"
        );
        assert_eq!(
            pgvault_core::model::job::cap_text(&text, SCRIPT_OUTPUT_LIMIT),
            text
        );
    }
}
